--
-- pg_ws_watch(): pg_ws's events from tables it did not make.  A Django
-- project's tables (the SQL Django 3.2's migration makes) watched in one
-- call send the same events as pg_ws's own tables; kind 'row' sends
-- <table>_create/_update/_delete for any table; columns are checked, names
-- validated, and only pg_ws_watch() makes a trigger that may send.
--
CREATE SCHEMA django;
SET search_path = django, public;
\i test/django/0001_initial.sql
RESET search_path;

-- one call watches the app's four tables
SELECT * FROM pg_ws_watch_django('app', 'django');
SELECT relation, kind, columns, visit_table, event_prefix
FROM pg_ws_watched ORDER BY relation::text;
SELECT tgrelid::regclass, pg_get_triggerdef(oid)
FROM pg_trigger WHERE tgname = 'pg_ws_event' AND tgrelid::regclass::text LIKE 'django.%'
ORDER BY 1;

-- the same events as pg_ws's own tables, visit_histories from the app's
-- visit table, image URLs and all
BEGIN;
INSERT INTO django.app_client (id, first_seen, last_seen, visit_count, gender, age, image)
VALUES (1, '2023-12-10 10:00:00+00', '2023-12-10 15:00:00+00', 5, 'male', 30,
        'client_images/image.jpg');
INSERT INTO django.app_visithistory (datetime, device_id, client_id)
VALUES ('2023-12-10 10:30:00+00', '1', 1);
UPDATE django.app_client SET visit_count = 6 WHERE id = 1;
INSERT INTO django.app_workinggraphic (id, name, start_time, end_time)
VALUES (2, 'day', '09:00', '18:00');
INSERT INTO django.app_employee (id, first_name, last_name, email, phone_number, image, working_graphic_id)
VALUES (1, 'John', 'Doe', 'john.doe@example.com', '1234567890', NULL, 2);
INSERT INTO django.app_attendance (device_id, image, datetime, score, employee_id)
VALUES ('XYZ789', NULL, '2023-12-10 09:00:00+00', 95.5, 1);
UPDATE django.app_attendance SET score = 96;
DELETE FROM django.app_attendance;
DELETE FROM django.app_visithistory;
DELETE FROM django.app_client;
DELETE FROM django.app_employee;
SELECT * FROM pg_ws_pending_events();
-- byte for byte what pg_ws's own tables send for the same rows
SELECT string_agg(e, E'\n') AS django_events FROM pg_ws_pending_events() e \gset
ROLLBACK;

-- columns are checked, each missing or mistyped one named
CREATE TABLE half_client (id bigint PRIMARY KEY, first_seen date, gender integer, image text);
SELECT pg_ws_watch('half_client', 'client');
CREATE TABLE no_columns ();
SELECT pg_ws_watch('no_columns', 'attendance');
SELECT pg_ws_watch('half_client', 'customer');
SELECT pg_ws_watch('half_client', 'client', columns => '{id}');
SELECT pg_ws_watch('half_client', 'row', visit_table => 'django.app_visithistory');
-- a domain over text is a string; a view is not a table
CREATE DOMAIN email_address AS varchar(254);
CREATE TABLE staff (id integer PRIMARY KEY, first_name text, last_name text,
                    email email_address, phone_number char(20), image text,
                    working_graphic_id smallint);
SELECT pg_ws_watch('staff', 'employee');
CREATE VIEW staff_view AS SELECT * FROM staff;
SELECT pg_ws_watch('staff_view', 'employee');
-- pg_ws's own tables are always watched, as their kind: pg_ws_watch() sets
-- only whether their replicated rows are broadcast (watch_integrity)
SELECT pg_ws_watch('client', 'client');
SELECT pg_ws_watch('client', 'employee');
SELECT pg_ws_unwatch('client');

-- a trigger made by hand, not by pg_ws_watch(), is refused when it fires
CREATE TABLE lookalike (LIKE staff);
CREATE TRIGGER pg_ws_event AFTER INSERT ON lookalike
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('employee');
INSERT INTO lookalike (id) VALUES (1);
-- and one naming another kind than the table's watch
CREATE TRIGGER forge AFTER INSERT ON staff
    FOR EACH ROW EXECUTE FUNCTION pg_ws_row_event('client');
INSERT INTO staff (id) VALUES (1);
DROP TRIGGER forge ON staff;

-- unwatching drops the trigger and the catalog row; again: false
SELECT pg_ws_unwatch('staff');
SELECT pg_ws_unwatch('staff');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'staff'::regclass;
BEGIN;
INSERT INTO staff (id, first_name, last_name) VALUES (2, 'a', 'b');
SELECT count(*) FROM pg_ws_pending_events();
ROLLBACK;

-- kind 'row': any table with a primary key
CREATE TABLE "order" (id bigint PRIMARY KEY, customer text, total numeric,
                      paid boolean, lines jsonb, note json, tags text[],
                      placed timestamptz, secret text);
SELECT pg_ws_watch('"order"', 'row', columns => '{id,customer,total,paid,lines,note,tags,placed}');
BEGIN;
INSERT INTO "order" VALUES (7, 'Zoë "Z"', 12.50, true, '{"sku": "a", "n": [1, 2]}',
                            '{"free":  "form"}', '{x,y}', '2023-12-10 10:00:00.25+00', 's3cret');
UPDATE "order" SET total = 'NaN', customer = NULL;
DELETE FROM "order";
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- json keeps its text, but for line breaks between its tokens: an event is
-- one line (JSON strings escape theirs)
BEGIN;
INSERT INTO "order" (id, note) VALUES (8, E'{"a":\n1,\r\n "b": "x\\ny"}');
SELECT e, (e::json->'data'->'note'->>'b') = E'x\ny' AS same FROM pg_ws_pending_events() e;
ROLLBACK;
-- every column without a list; a composite key on delete; a chosen name
CREATE TABLE line (order_id bigint, n integer, sku text, PRIMARY KEY (order_id, n));
SELECT pg_ws_watch('line', 'row', event_prefix => 'order_line');
BEGIN;
INSERT INTO line VALUES (7, 1, 'a');
DELETE FROM line;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- names events cannot have, and tables without a key
CREATE TABLE "Invoice" (id integer PRIMARY KEY);
SELECT pg_ws_watch('"Invoice"', 'row');
SELECT pg_ws_watch('"Invoice"', 'row', event_prefix => 'client');
SELECT pg_ws_watch('"Invoice"', 'row', event_prefix => 'pg_ws_invoice');
SELECT pg_ws_watch('"Invoice"', 'row', event_prefix => 'invoice');
CREATE TABLE keyless (a integer);
SELECT pg_ws_watch('keyless', 'row');
SELECT pg_ws_watch('line', 'row', columns => '{sku,nope}');
-- a dropped column is not sent, an added one is (no column list)
ALTER TABLE line DROP COLUMN sku, ADD COLUMN qty integer;
BEGIN;
INSERT INTO line VALUES (7, 2, 3);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- a listed column cannot be dropped (more in watch_columns)
ALTER TABLE "order" DROP COLUMN tags;
BEGIN;
INSERT INTO "order" (id) VALUES (8);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a partitioned table: its partitions' rows are its events, under its name
CREATE TABLE reading (id bigint, at date, value real, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE reading_2023 PARTITION OF reading FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
SELECT pg_ws_watch('reading', 'row');
CREATE TABLE reading_2024 PARTITION OF reading FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
BEGIN;
INSERT INTO reading VALUES (1, '2023-05-01', 0.5), (2, '2024-05-01', 1.5);
UPDATE reading SET at = '2024-06-01' WHERE id = 1;   -- moves to another partition
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
DROP TABLE reading;

-- a dropped table is no longer watched, even when its owner (not a
-- superuser, who may not touch pg_ws_watched) drops it
CREATE ROLE watch_owner;
ALTER TABLE "Invoice" OWNER TO watch_owner;
SET ROLE watch_owner;
DROP TABLE "Invoice";
RESET ROLE;
SELECT count(*) FROM pg_ws_watched WHERE event_prefix = 'invoice';
DROP ROLE watch_owner;
-- EXECUTE is not PUBLIC's
CREATE ROLE watch_nobody;
SET ROLE watch_nobody;
SELECT pg_ws_watch('line', 'row');
SELECT pg_ws_unwatch('line');
SELECT * FROM pg_ws_watched;
RESET ROLE;
DROP ROLE watch_nobody;

-- a role that may write the watched tables, and nothing of pg_ws's,
-- still makes their events (the trigger reads pg_ws_watched as its owner)
CREATE ROLE watch_writer;
GRANT USAGE ON SCHEMA django TO watch_writer;
GRANT INSERT, SELECT ON django.app_client, django.app_visithistory TO watch_writer;
\c contrib_regression
BEGIN;
SET LOCAL ROLE watch_writer;
INSERT INTO django.app_visithistory (id, datetime, device_id, client_id)
VALUES (9, '2023-12-10 10:30:00+00', '1', 5);
INSERT INTO django.app_client (id, visit_count) VALUES (5, 1);
RESET ROLE;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
REVOKE ALL ON django.app_client, django.app_visithistory FROM watch_writer;
REVOKE ALL ON SCHEMA django FROM watch_writer;
DROP ROLE watch_writer;

-- visit_histories: the schema's watched visit table, or one named
CREATE SCHEMA shop;
CREATE TABLE shop.customer (LIKE django.app_client INCLUDING ALL);
SELECT pg_ws_watch('shop.customer', 'client');   -- no visit table yet
CREATE TABLE shop.visit_a (LIKE django.app_visithistory INCLUDING ALL);
CREATE TABLE shop.visit_b (LIKE django.app_visithistory INCLUDING ALL);
SELECT pg_ws_watch('shop.visit_a', 'visit_history');
SELECT pg_ws_watch('shop.visit_b', 'visit_history');  -- which one would customer read?
SELECT pg_ws_watch('shop.customer', 'client', visit_table => 'shop.visit_a');
SELECT pg_ws_watch('shop.visit_b', 'visit_history');
-- with the index the notice asks for, and one that does not serve (its
-- datetime descending), no notice, and one
CREATE INDEX ON shop.visit_b (client_id, datetime, id);
SELECT pg_ws_watch('shop.visit_b', 'visit_history');
CREATE INDEX ON shop.visit_a (client_id, datetime DESC, id);
SELECT pg_ws_watch('shop.customer', 'client', visit_table => 'shop.visit_a');
BEGIN;
INSERT INTO shop.visit_a (datetime, device_id, client_id) VALUES ('2023-12-10 10:00+00', 'a', 1);
INSERT INTO shop.visit_b (datetime, device_id, client_id) VALUES ('2023-12-10 11:00+00', 'b', 1);
INSERT INTO shop.customer (id, visit_count) VALUES (1, 1);
SELECT e::json->'data'->'visit_histories' FROM pg_ws_pending_events() e
WHERE e LIKE '{"event": "client_create"%';
ROLLBACK;
-- dropping the named visit table: the customer table takes its schema's
DROP TABLE shop.visit_a;
SELECT relation, visit_table FROM pg_ws_watched WHERE relation = 'shop.customer'::regclass;
DROP SCHEMA shop CASCADE;

-- the Django tables, compared with pg_ws's own for the same rows
BEGIN;
INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age, image)
VALUES (1, '2023-12-10 10:00:00+00', '2023-12-10 15:00:00+00', 5, 'male', 30,
        'client_images/image.jpg');
INSERT INTO visit_history (datetime, device_id, client_id)
VALUES ('2023-12-10 10:30:00+00', '1', 1);
UPDATE client SET visit_count = 6 WHERE id = 1;
INSERT INTO employee (id, first_name, last_name, email, phone_number, image, working_graphic_id)
VALUES (1, 'John', 'Doe', 'john.doe@example.com', '1234567890', NULL, 2);
INSERT INTO attendance (device_id, image, datetime, score, employee_id)
VALUES ('XYZ789', NULL, '2023-12-10 09:00:00+00', 95.5, 1);
UPDATE attendance SET score = 96;
DELETE FROM attendance;
DELETE FROM visit_history;
DELETE FROM client;
DELETE FROM employee;
SELECT count(*) AS events, string_agg(e, E'\n') = :'django_events' AS identical
FROM pg_ws_pending_events() e;
ROLLBACK;

DROP VIEW staff_view;
DROP TABLE lookalike, staff, "order", line, keyless, half_client, no_columns;
DROP DOMAIN email_address;
-- DROP EXTENSION would drop the triggers on watched tables: it says so
BEGIN;
DROP EXTENSION pg_ws;
ROLLBACK;
SELECT pg_ws_unwatch(relation) FROM pg_ws_watched ORDER BY relation::text;
DROP SCHEMA django CASCADE;
SELECT count(*) FROM pg_ws_watched;

-- CREATE EXTENSION over tables of pg_ws's names that exist already (a
-- Django app with db_table = 'client', ...): it watches them, after
-- checking their columns, instead of failing or making its own
CREATE DATABASE pg_ws_django;
\c pg_ws_django
\i test/django/0001_initial.sql
ALTER TABLE app_client RENAME TO client;
ALTER TABLE app_visithistory RENAME TO visit_history;
ALTER TABLE app_employee RENAME TO employee;
-- one table of the wrong shape: nothing is installed, and it says why
CREATE TABLE attendance (id bigserial PRIMARY KEY, employee_id bigint, device_id text);
-- (without the error's context: 18 adds the extension script's text to it)
\set SHOW_CONTEXT never
SET client_min_messages = error;
CREATE EXTENSION pg_ws;
RESET client_min_messages;
\set SHOW_CONTEXT errors
SELECT count(*) FROM pg_extension WHERE extname = 'pg_ws';
DROP TABLE attendance;
-- now attendance is missing: pg_ws makes its own, watches the other three
SET client_min_messages = error;
CREATE EXTENSION pg_ws;
RESET client_min_messages;
SELECT relation, kind FROM pg_ws_watched ORDER BY relation::text;
SELECT pg_describe_object(classid, objid, 0) AS member
FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_ws')
  AND deptype = 'e' AND classid = 'pg_class'::regclass
ORDER BY 1;
SELECT tgrelid::regclass, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2;
\c contrib_regression
DROP DATABASE pg_ws_django;
