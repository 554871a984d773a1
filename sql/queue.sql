--
-- The shared queue's limits (pg_ws.queue_size is 64kB in test/regress.conf)
--

-- events that could never fit fail at once, in the statement that makes
-- them, with a hint; nothing of the transaction is kept
BEGIN;
INSERT INTO client (id, gender) SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g;
ROLLBACK;
SELECT count(*) FROM client;

-- one large event that fits commits normally, and so do many small
-- transactions: the worker drains the queue as they commit
BEGIN;
INSERT INTO client (id, gender) VALUES (1, repeat('x', 40000));
SELECT length(e) FROM pg_ws_pending_events() e;
COMMIT;
DO $$
BEGIN
    FOR i IN 2..301 LOOP
        INSERT INTO client (id, gender) VALUES (i, repeat('y', 1000));
        COMMIT;
    END LOOP;
END
$$;
SELECT count(*) FROM client;
