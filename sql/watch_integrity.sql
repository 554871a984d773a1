--
-- No forged event, no silent gap (issue 14, items 2 and 8).
--
-- A 'row' table's event names are fixed when it is watched: renaming the
-- table, which its owner may do without any privilege of pg_ws's, changes
-- nothing subscribers see.  Replicated rows (session_replication_role =
-- replica, as logical replication applies them) are broadcast when the
-- watch asks for them.  pg_ws's trigger on a table it broadcasts cannot be
-- dropped, renamed or replaced; disabling it warns; pg_ws_watch_status
-- shows every broadcast table whose trigger would not fire.
--
TRUNCATE client, employee CASCADE;
CREATE SCHEMA s;
CREATE ROLE regress_watch_owner;
CREATE ROLE regress_watch_monitor IN ROLE pg_monitor;
GRANT USAGE, CREATE ON SCHEMA s TO regress_watch_owner;

--
-- (2) the event name is fixed when the table is watched
--
CREATE TABLE s.orders (id integer PRIMARY KEY, status text);
SELECT pg_ws_watch('s.orders', 'row');
-- the table's name is stored, not looked up again
SELECT relation, kind, event_prefix, replicated FROM pg_ws_watched;
ALTER TABLE s.orders OWNER TO regress_watch_owner;

-- its owner renames it to a name of the event document ...
SET ROLE regress_watch_owner;
ALTER TABLE s.orders RENAME TO client;
RESET ROLE;
BEGIN;
SET LOCAL ROLE regress_watch_owner;
INSERT INTO s.client VALUES (1, 'new');
UPDATE s.client SET status = 'paid';
DELETE FROM s.client;
RESET ROLE;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- ... and to a name that would put a second "event" key on the wire
SET ROLE regress_watch_owner;
ALTER TABLE s.client RENAME TO "x"", ""event"": ""client_delete"", ""q"": """;
RESET ROLE;
BEGIN;
SET LOCAL ROLE regress_watch_owner;
INSERT INTO s."x"", ""event"": ""client_delete"", ""q"": """ VALUES (2, 'new');
RESET ROLE;
SELECT * FROM pg_ws_pending_events();
-- one "event" key, as a JSON parser that keeps the last of duplicates sees it
SELECT e::json->>'event' AS event,
       (SELECT count(*) FROM json_object_keys(e::json) k WHERE k = 'event') AS event_keys
FROM pg_ws_pending_events() e;
ROLLBACK;
SELECT relation, events, problem FROM pg_ws_watch_status WHERE NOT own;

-- pg_ws_send() refuses the names the table's events have, whatever the
-- table is called now, and no longer those of its current name
GRANT EXECUTE ON FUNCTION pg_ws_send(text, jsonb) TO regress_watch_owner;
SET ROLE regress_watch_owner;
ALTER TABLE s."x"", ""event"": ""client_delete"", ""q"": """ RENAME TO invoices;
BEGIN;
SELECT pg_ws_send('orders_create');
ROLLBACK;
BEGIN;
SELECT pg_ws_send('invoices_create');
ROLLBACK;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION pg_ws_send(text, jsonb) FROM regress_watch_owner;
ALTER TABLE s.invoices RENAME TO orders;

-- pg_ws_watched takes only valid names, even from a superuser
UPDATE pg_ws_watched SET event_prefix = 'x", "event": "client_delete'
WHERE relation = 's.orders'::regclass;
UPDATE pg_ws_watched SET event_prefix = 'client_visit'
WHERE relation = 's.orders'::regclass;
UPDATE pg_ws_watched SET event_prefix = 'pg_ws_orders'
WHERE relation = 's.orders'::regclass;
UPDATE pg_ws_watched SET event_prefix = repeat('o', 57)
WHERE relation = 's.orders'::regclass;
UPDATE pg_ws_watched SET event_prefix = repeat('o', 56)
WHERE relation = 's.orders'::regclass;
UPDATE pg_ws_watched SET event_prefix = 'orders' WHERE relation = 's.orders'::regclass;
-- and one that gets past the catalog all the same is refused when the
-- trigger loads the watch, not sent
BEGIN;
ALTER TABLE pg_ws_watched DROP CONSTRAINT pg_ws_watched_event_prefix_check;
UPDATE pg_ws_watched SET event_prefix = 'x", "event": "client_delete'
WHERE relation = 's.orders'::regclass;
INSERT INTO s.orders VALUES (3, 'new');
ROLLBACK;

-- a dump made by 1.2 has no event_prefix for a table watched under its own
-- name: the restored row takes the table's name as it is then
CREATE TABLE s.parcel (id integer PRIMARY KEY);
COPY pg_ws_watched (relation, kind, columns, visit_table, event_prefix) FROM stdin;
s.parcel	row	\N	\N	\N
\.
CREATE TRIGGER pg_ws_event AFTER INSERT OR DELETE OR UPDATE ON s.parcel
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('row');
SELECT relation, event_prefix FROM pg_ws_watched WHERE relation = 's.parcel'::regclass;
BEGIN;
INSERT INTO s.parcel VALUES (1);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- (a data-only restore with --disable-triggers disables that trigger too:
-- the row is refused, not stored without a name)
BEGIN;
DELETE FROM pg_ws_watched WHERE relation = 's.parcel'::regclass;
ALTER TABLE pg_ws_watched DISABLE TRIGGER ALL;
COPY pg_ws_watched (relation, kind, columns, visit_table, event_prefix) FROM stdin;
s.parcel	row	\N	\N	\N
\.
ROLLBACK;

--
-- (8) replicated rows: as PostgreSQL does for every trigger, not by default
--
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO s.orders VALUES (4, 'replicated');
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'R', 'Eplica');
SELECT count(*) AS queued FROM pg_ws_pending_events();
ROLLBACK;
-- replicated => true: the trigger fires for them too (ENABLE ALWAYS), and
-- pg_ws_watched records it, which pg_dump keeps
SELECT pg_ws_watch('s.orders', 'row', replicated => true);
-- pg_ws's own tables: pg_ws_own_tables records it (pg_dump keeps its rows;
-- it does not dump the triggers of an extension's tables)
SELECT pg_ws_watch('employee', 'employee', replicated => true);
SELECT relation, event_prefix, replicated FROM pg_ws_watched ORDER BY relation::text;
SELECT * FROM pg_ws_own_tables;
SELECT tgrelid::regclass, tgenabled FROM pg_trigger
WHERE tgname = 'pg_ws_event' ORDER BY tgrelid::regclass::text;
SELECT 'pg_ws_own_tables'::regclass IN (SELECT unnest(extconfig) FROM pg_extension
                                        WHERE extname = 'pg_ws') AS dumped;
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO s.orders VALUES (4, 'replicated');
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'R', 'Eplica');
INSERT INTO client (id) VALUES (1);
INSERT INTO s.parcel VALUES (4);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- what pg_restore does with pg_ws_own_tables' rows sets the trigger again
BEGIN;
DELETE FROM pg_ws_own_tables;
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'employee'::regclass AND tgname = 'pg_ws_event';
COPY pg_ws_own_tables (relation, replicated) FROM stdin;
employee	t
\.
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'employee'::regclass AND tgname = 'pg_ws_event';
ROLLBACK;
INSERT INTO pg_ws_own_tables VALUES ('s.orders', true);
-- and back
SELECT pg_ws_watch('employee', 'employee');
SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'employee'::regclass AND tgname = 'pg_ws_event';
SELECT pg_ws_watch('s.orders', 'row', replicated => NULL);
-- a partitioned table: its partitions follow, the ones made later too
CREATE TABLE s.reading (id integer, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE s.reading_2023 PARTITION OF s.reading FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
SELECT pg_ws_watch('s.reading', 'row', replicated => true);
CREATE TABLE s.reading_2024 PARTITION OF s.reading FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT tgrelid::regclass, tgenabled FROM pg_trigger
WHERE tgname = 'pg_ws_event' AND tgrelid::regclass::text LIKE 's.reading%' ORDER BY 1;
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO s.reading VALUES (1, '2023-05-01'), (2, '2024-05-01');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

--
-- (8) pg_ws's trigger stays: its table's owner cannot drop, rename or
-- replace it ...
--
SET ROLE regress_watch_owner;
DROP TRIGGER pg_ws_event ON s.orders;
ALTER TRIGGER pg_ws_event ON s.orders RENAME TO quiet;
CREATE FUNCTION s.nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE OR REPLACE TRIGGER pg_ws_event AFTER INSERT OR UPDATE OR DELETE ON s.orders
    FOR EACH ROW EXECUTE FUNCTION s.nothing();
-- its other triggers are its business
CREATE TRIGGER audit AFTER INSERT ON s.orders FOR EACH ROW EXECUTE FUNCTION s.nothing();
ALTER TRIGGER audit ON s.orders RENAME TO audit2;
DROP TRIGGER audit2 ON s.orders;
DROP FUNCTION s.nothing();
RESET ROLE;
-- nor may a superuser, with a WHEN clause, a column list or fewer events
CREATE OR REPLACE TRIGGER pg_ws_event AFTER INSERT OR UPDATE OR DELETE ON s.orders
    FOR EACH ROW WHEN (false) EXECUTE FUNCTION pg_ws_row_event('row');
CREATE OR REPLACE TRIGGER pg_ws_event AFTER INSERT OR UPDATE OF status OR DELETE ON s.orders
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('row');
CREATE OR REPLACE TRIGGER pg_ws_event AFTER INSERT ON s.orders
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('row');
-- nor drop the trigger of one of pg_ws's own tables, nor rename or move
-- one, even with session_replication_role = replica
BEGIN;
SET LOCAL session_replication_role = replica;
DROP TRIGGER pg_ws_event ON employee;
ROLLBACK;
ALTER TABLE employee RENAME TO staff;
ALTER TABLE employee SET SCHEMA s;
-- pg_ws_watch() and pg_ws_unwatch() replace and drop it as before
SELECT pg_ws_watch('s.parcel', 'row');
SELECT pg_ws_unwatch('s.parcel');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 's.parcel'::regclass;

-- nor make it broadcast less than the watch asks
SET ROLE regress_watch_owner;
ALTER TABLE s.orders DISABLE TRIGGER pg_ws_event;
ALTER TABLE s.orders DISABLE TRIGGER USER;
ALTER TABLE s.orders DISABLE TRIGGER ALL;
ALTER TABLE s.orders ENABLE REPLICA TRIGGER pg_ws_event;
ALTER TABLE s.orders ENABLE TRIGGER pg_ws_event;     -- replicated => true
RESET ROLE;

--
-- ... but a superuser may disable it, as pg_restore --disable-triggers
-- does: a WARNING, and pg_ws_watch_status shows it for as long as it lasts
--
ALTER TABLE s.orders DISABLE TRIGGER pg_ws_event;
-- the owner's other changes to the table go on, with the WARNING
SET ROLE regress_watch_owner;
ALTER TABLE s.orders ADD COLUMN note text;
RESET ROLE;
BEGIN;
INSERT INTO s.orders VALUES (5, 'lost');
SELECT count(*) AS queued FROM pg_ws_pending_events();
ROLLBACK;
SELECT relation, trigger_enabled, fires, fires_replicated, problem
FROM pg_ws_watch_status WHERE relation = 's.orders'::regclass;
-- ENABLE REPLICA fires for replicated rows only
ALTER TABLE s.orders ENABLE REPLICA TRIGGER pg_ws_event;
-- ENABLE TRIGGER ALL, which ends pg_restore --disable-triggers, makes it
-- fire for ordinary writes only, whatever the watch asks
ALTER TABLE s.orders DISABLE TRIGGER ALL;
ALTER TABLE s.orders ENABLE TRIGGER ALL;
SELECT relation, trigger_enabled, fires, fires_replicated, problem
FROM pg_ws_watch_status WHERE relation = 's.orders'::regclass;
ALTER TABLE s.orders ENABLE ALWAYS TRIGGER pg_ws_event;
-- ENABLE ALWAYS on a table whose watch does not ask for replicated rows
SELECT pg_ws_watch('s.parcel', 'row');
ALTER TABLE s.parcel ENABLE ALWAYS TRIGGER pg_ws_event;
ALTER TABLE s.parcel ENABLE TRIGGER pg_ws_event;
-- a partition of its own
ALTER TABLE s.reading_2024 DISABLE TRIGGER pg_ws_event;
ALTER TABLE s.reading_2024 ENABLE TRIGGER pg_ws_event;
SELECT relation, trigger_enabled, fires, fires_replicated, problem
FROM pg_ws_watch_status WHERE relation = 's.reading'::regclass;
ALTER TABLE s.reading ENABLE ALWAYS TRIGGER pg_ws_event;
-- pg_ws's own tables alike
ALTER TABLE attendance DISABLE TRIGGER USER;
ALTER TABLE attendance ENABLE TRIGGER USER;

--
-- pg_ws_watch_status: one row per broadcast table
--
-- a trigger gone before 1.2.1 (or with pg_ws's event triggers disabled):
-- nothing stops the table's other ALTER TABLEs (pg_restore makes a table's
-- constraints before its triggers), and the view says so
ALTER EVENT TRIGGER pg_ws_refuse_trigger_drop DISABLE;
DROP TRIGGER pg_ws_event ON s.parcel;
ALTER EVENT TRIGGER pg_ws_refuse_trigger_drop ENABLE ALWAYS;
ALTER TABLE s.parcel ADD COLUMN note text;
ALTER TABLE s.reading_2024 DISABLE TRIGGER pg_ws_event;
SELECT relation, kind, own, events, replicated, trigger_enabled, fires, fires_replicated, problem
FROM pg_ws_watch_status ORDER BY own DESC, relation::text;
-- pg_monitor may read it, others may not
SET ROLE regress_watch_monitor;
SELECT count(*) FROM pg_ws_watch_status;
SELECT count(*) FROM pg_ws_own_tables;
SET ROLE regress_watch_owner;
SELECT count(*) FROM pg_ws_watch_status;
RESET ROLE;
-- watching it again mends it
SELECT pg_ws_watch('s.parcel', 'row');
ALTER TABLE s.reading ENABLE ALWAYS TRIGGER pg_ws_event;
SELECT count(*) AS problems FROM pg_ws_watch_status WHERE problem IS NOT NULL;

-- dropping a watched table forgets it, its trigger with it
DROP TABLE s.parcel;
SELECT pg_ws_unwatch('s.reading');
DROP SCHEMA s CASCADE;
SELECT * FROM pg_ws_watched;
DELETE FROM pg_ws_own_tables;
DROP ROLE regress_watch_owner;
DROP ROLE regress_watch_monitor;

--
-- ALTER EXTENSION pg_ws UPDATE from 1.2: a 'row' table that 1.2 watched
-- under its own name (no event_prefix) keeps the name it has then; one
-- whose name makes no valid event name stops the update, named
--
CREATE DATABASE pg_ws_watch_from_1_2;
\c pg_ws_watch_from_1_2
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.2';
RESET client_min_messages;
CREATE TABLE orders (id integer PRIMARY KEY);
CREATE TABLE "Parcel" (id integer PRIMARY KEY);
-- 1.2's pg_ws_watch() with this library stores the name already
SELECT pg_ws_watch('orders', 'row');
-- as 1.2's library left them
INSERT INTO pg_ws_watched (relation, kind) VALUES ('"Parcel"', 'row');
CREATE TRIGGER pg_ws_event AFTER INSERT OR UPDATE OR DELETE ON "Parcel"
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('row');
SELECT relation, event_prefix FROM pg_ws_watched ORDER BY relation::text;
-- this library does not take the name anew: writes wait for the update
INSERT INTO "Parcel" VALUES (1);
-- (without the error's context: 18 adds the update script's text to it)
\set SHOW_CONTEXT never
SET client_min_messages = error;
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
\set SHOW_CONTEXT errors
ALTER TABLE "Parcel" RENAME TO parcel;
SET client_min_messages = error;
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT relation, event_prefix, replicated FROM pg_ws_watched ORDER BY relation::text;
ALTER TABLE parcel RENAME TO shipment;
INSERT INTO shipment VALUES (1);
SELECT relation, events, replicated, trigger_enabled, problem
FROM pg_ws_watch_status WHERE NOT own ORDER BY relation::text;
\c contrib_regression
DROP DATABASE pg_ws_watch_from_1_2;
