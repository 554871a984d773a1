--
-- pg_ws_send() in parallel mode (issue 15, item 10): a function that calls
-- it, mislabelled PARALLEL SAFE, runs in a parallel worker under
-- force_parallel_mode (16 renamed it debug_parallel_query); the worker's
-- transaction never commits, so its event would be lost.  pg_ws_send()
-- refuses there, as PostgreSQL refuses writes.
--
CREATE FUNCTION send_from(n integer) RETURNS integer
	LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
	PERFORM pg_ws_send('parallel_note', jsonb_build_object('n', n));
	RETURN n;
END $$;

SELECT CASE WHEN current_setting('server_version_num')::integer >= 160000
			THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END AS parallel_guc \gset
SELECT set_config(:'parallel_guc', 'on', false);
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET max_parallel_workers_per_gather = 2;

-- the call really runs in a parallel worker: the plan is a single-copy Gather
EXPLAIN (COSTS OFF) SELECT send_from(1);

-- refused, not dropped (1.2 returned 1 here, and had nothing pending)
BEGIN;
SELECT send_from(1);
SELECT count(*) AS pending FROM pg_ws_pending_events();
COMMIT;

-- in the leader too, where a parallel plan runs it there (no worker
-- could be started): whoever evaluates the call, the answer is the same
SET max_parallel_workers = 0;
BEGIN;
SELECT send_from(3);
ROLLBACK;
RESET max_parallel_workers;

-- row triggers never fire in parallel mode: PostgreSQL refuses the write
-- before any trigger runs
CREATE FUNCTION insert_from(n integer) RETURNS integer
	LANGUAGE plpgsql PARALLEL SAFE AS $$
BEGIN
	INSERT INTO employee (first_name, last_name) VALUES ('parallel', n::text);
	RETURN n;
END $$;
SELECT insert_from(1);

-- labelled PARALLEL UNSAFE, the same function sends its event
ALTER FUNCTION send_from(integer) PARALLEL UNSAFE;
BEGIN;
SELECT send_from(4);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

SELECT set_config(:'parallel_guc', 'off', false);
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET max_parallel_workers_per_gather;
DROP FUNCTION send_from(integer);
DROP FUNCTION insert_from(integer);
