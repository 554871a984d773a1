--
-- CREATE EXTENSION: the tables, their triggers, pg_dump and the warnings
--
CREATE EXTENSION pg_ws;

-- the four tables with Django's column names
SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull, a.attidentity
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relname IN ('client', 'visit_history', 'employee', 'attendance')
ORDER BY c.relname, a.attnum;

-- one trigger per table; attendance updates are not announced
SELECT tgrelid::regclass AS table_name, tgname,
       pg_catalog.pg_get_triggerdef(oid) AS definition
FROM pg_catalog.pg_trigger
WHERE NOT tgisinternal
ORDER BY 1;

-- pg_dump keeps the rows and the identity counters of all four tables
SELECT unnest(extconfig)::regclass AS dumped
FROM pg_catalog.pg_extension WHERE extname = 'pg_ws'
ORDER BY 1;

-- the SQL API
SELECT p.proname, pg_catalog.pg_get_function_result(p.oid) AS result
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_ws'
ORDER BY 1;

-- the configuration parameters and their defaults
SELECT name, setting, unit, context
FROM pg_catalog.pg_settings WHERE name LIKE 'pg\_ws.%'
ORDER BY name;

-- media_url is a prefix, like Django's MEDIA_URL
SET pg_ws.media_url = '/media';
SET pg_ws.media_url = 'https://example.com/media/';
RESET pg_ws.media_url;
-- pg_ws.* names are reserved
SET pg_ws.no_such_setting = 1;
-- the queue's size is fixed at server start
SET pg_ws.queue_size = '1MB';

-- the trigger function is only a trigger
SELECT pg_ws_row_event();
CREATE TABLE not_ours (id int);
CREATE TRIGGER bad AFTER INSERT ON not_ours
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event();
INSERT INTO not_ours VALUES (1);
DROP TRIGGER bad ON not_ours;
CREATE TRIGGER bad BEFORE INSERT ON not_ours
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('client');
INSERT INTO not_ours VALUES (1);
DROP TABLE not_ours;

-- another database: installs with a warning, and queues nothing
CREATE DATABASE pg_ws_other;
\c pg_ws_other
CREATE EXTENSION pg_ws;
BEGIN;
INSERT INTO client (id, gender) VALUES (1, 'male');
SELECT count(*) AS queued FROM pg_ws_pending_events();
COMMIT;
\c contrib_regression
DROP DATABASE pg_ws_other;
