--
-- Who may make events and who may read them: only the extension's own
-- tables produce events, whoever may write them; pg_ws_pending_events()
-- and pg_ws_stats are for pg_monitor.
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

-- a renamed table is no longer the one its trigger names, even in a
-- backend that has already seen it under its name (its relcache entry is
-- invalidated, and with it what the backend remembered)
BEGIN;
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
WHERE c.relname = 'pg_ws_stats' AND a.grantee <> c.relowner
ORDER BY 1, 3;

TRUNCATE client CASCADE;
DROP OWNED BY regress_pg_ws_writer;
DROP ROLE regress_pg_ws_writer;
DROP ROLE regress_pg_ws_monitor;
