--
-- Who may make events and who may read them: only the extension's own
-- tables produce events, whoever may write them; pg_ws_pending_events(),
-- pg_ws_stats, pg_ws_connections and pg_ws_disconnect() are for
-- pg_monitor.
--
TRUNCATE client, employee CASCADE;
CREATE ROLE regress_pg_ws_writer;
CREATE ROLE regress_pg_ws_monitor IN ROLE pg_monitor;
GRANT INSERT ON client TO regress_pg_ws_writer;

-- a role that may only INSERT into client still fires the extension's
-- trigger: firing needs no EXECUTE on pg_ws_row_event()
BEGIN;
SET LOCAL ROLE regress_pg_ws_writer;
INSERT INTO client (id, gender) VALUES (1, 'female');
RESET ROLE;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- but it cannot make a table of its own produce events
SET ROLE regress_pg_ws_writer;
CREATE TEMP TABLE forged (id bigint, first_name text, last_name text);
CREATE TRIGGER forge AFTER INSERT ON forged
    FOR EACH ROW EXECUTE FUNCTION public.pg_ws_row_event('employee');
-- nor see the events of its transaction, nor the statistics
BEGIN;
INSERT INTO client (id) VALUES (2);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
SELECT * FROM pg_ws_stats;
SELECT * FROM pg_ws_stats();
-- nor the connections, nor end one
SELECT * FROM pg_ws_connections;
SELECT * FROM pg_ws_connections();
SELECT pg_ws_disconnect(1);
DROP TABLE forged;
RESET ROLE;

-- a member of pg_monitor may
SET ROLE regress_pg_ws_monitor;
SELECT worker_pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws')
           AS is_the_worker,
       queue_bytes_used BETWEEN 0 AND queue_bytes_capacity AS used_in_range,
       queue_bytes_capacity, writers_waiting
FROM pg_ws_stats;
SELECT (SELECT count(*) FROM pg_ws_stats()) AS rows,
       (SELECT count(*) FROM pg_ws_pending_events()) AS pending;
-- the worker's figures: its start, counters that agree with each other,
-- every reason of a refusal or a drop, where subscribers can resume
SELECT worker_started <= now() AS started_before_now,
       connections BETWEEN 0 AND connections_total AS connections_counted,
       subscribers BETWEEN 0 AND connections AS subscribers_counted,
       events_sent <= events_queued AS sent_after_queued,
       messages_sent >= 0 AND bytes_sent >= 0 AS sent_counted,
       oldest_unsent_age IS NULL OR oldest_unsent_age >= '0' AS age_ok,
       history_first_position <= history_last_position AS history_in_order,
       history_in_wal
FROM pg_ws_stats;
SELECT 'refusal' AS kind, key FROM pg_ws_stats, jsonb_object_keys(refusals) key
UNION ALL
SELECT 'drop', key FROM pg_ws_stats, jsonb_object_keys(drops) key
ORDER BY 1, 2;
SELECT (SELECT jsonb_typeof(refusals) FROM pg_ws_stats) AS refusals,
       (SELECT bool_and(jsonb_typeof(value) = 'number')
        FROM pg_ws_stats, jsonb_each(refusals || drops)) AS all_numbers;
-- pg_ws_connections' columns, and what it shows (nobody is connected to
-- this worker: whatever another server does on its port)
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = 'pg_ws_connections'::regclass AND a.attnum > 0
ORDER BY a.attnum;
SELECT count(*) >= 0 AS answered FROM pg_ws_connections;
-- ids are positive and never reused: an unknown one is no connection
SELECT pg_ws_disconnect(0) AS zero, pg_ws_disconnect(-1) AS negative,
       pg_ws_disconnect(9223372036854775807) AS unknown;
RESET ROLE;

-- triggers a superuser adds by mistake fail, with a clear error: on a table
-- that is not the extension's ...
CREATE TABLE not_ours (id bigint, first_name text, last_name text);
CREATE TRIGGER forge AFTER INSERT ON not_ours
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('employee');
INSERT INTO not_ours VALUES (1, 'forged', 'event');
DROP TABLE not_ours;
-- ... on a look-alike of the same name in another schema ...
CREATE SCHEMA lookalike;
CREATE TABLE lookalike.employee (LIKE public.employee);
CREATE TRIGGER forge AFTER INSERT ON lookalike.employee
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('employee');
INSERT INTO lookalike.employee (id, first_name, last_name) VALUES (1, 'forged', 'event');
DROP SCHEMA lookalike CASCADE;
-- ... and on one of the extension's tables, naming another kind
CREATE TRIGGER forge AFTER INSERT ON employee
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('client');
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'forged', 'event');
DROP TRIGGER forge ON employee;

-- the extension's tables keep working, every one of them
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'a', 'b');
INSERT INTO attendance (id, employee_id, device_id, datetime)
    VALUES (1, 1, 'd', '2023-12-10 08:00:00+00');
INSERT INTO visit_history (id, client_id, datetime, device_id)
    VALUES (1, 1, '2023-12-10 08:00:00+00', 'd');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- pg_ws's own tables keep their names and their schema (an event trigger
-- refuses the rename) ...
ALTER TABLE client RENAME TO client_renamed;
-- ... and one renamed all the same, by a superuser who disabled that
-- event trigger, is no longer the one its trigger names, even in a backend
-- that has already seen it under its name (its relcache entry is
-- invalidated, and with it what the backend remembered)
BEGIN;
ALTER EVENT TRIGGER pg_ws_check_trigger_change DISABLE;
ALTER TABLE client RENAME TO client_renamed;
UPDATE client_renamed SET age = 30 WHERE id = 1;
ROLLBACK;
BEGIN;
UPDATE client SET age = 31 WHERE id = 1;
SELECT count(*) AS queued FROM pg_ws_pending_events();
ROLLBACK;

-- the privileges, as the extension sets them
SELECT p.oid::regprocedure AS function, a.privilege_type,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC'
            WHEN a.grantee = p.proowner THEN 'owner'
            ELSE pg_get_userbyid(a.grantee) END AS grantee
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.proname LIKE 'pg\_ws\_%'
ORDER BY 1, 3;
SELECT c.oid::regclass AS view, a.privilege_type,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC'
            WHEN a.grantee = c.relowner THEN 'owner'
            ELSE pg_get_userbyid(a.grantee) END AS grantee
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relname IN ('pg_ws_stats', 'pg_ws_connections', 'pg_ws_watch_status') AND a.grantee <> c.relowner
ORDER BY 1, 3;

TRUNCATE client CASCADE;
DROP OWNED BY regress_pg_ws_writer;
DROP ROLE regress_pg_ws_writer;
DROP ROLE regress_pg_ws_monitor;
