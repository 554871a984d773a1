--
-- Filter columns (issue 17, step 4): columns of a watched table that
-- travel with every event of the table for ?filter= and a token's filters,
-- never sent.  pg_ws_watch() checks them and pg_ws_watched keeps them; the
-- events pg_ws_pending_events() shows (what subscribers are sent) are
-- those of a table without them; the columns cannot be dropped or renamed
-- while the table is watched; pg_ws's own tables take none.
--
CREATE SCHEMA sites;
SET search_path = sites, public;
\i test/django/0001_initial.sql
RESET search_path;
ALTER TABLE sites.app_client ADD COLUMN site_id integer;
ALTER TABLE sites.app_visithistory ADD COLUMN site_id integer;
ALTER TABLE sites.app_employee ADD COLUMN site_id integer, ADD COLUMN region text;
ALTER TABLE sites.app_attendance ADD COLUMN site_id integer;
CREATE TABLE sites.device (id integer PRIMARY KEY, name text, site_id integer,
						   "Zone ""A""" text);

-- the document's kinds and a 'row' table, with their filter columns
SELECT pg_ws_watch('sites.app_visithistory', 'visit_history', filter_columns => '{site_id}');
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{site_id}');
SELECT pg_ws_watch('sites.app_employee', 'employee', filter_columns => '{site_id,region}');
SELECT pg_ws_watch('sites.app_attendance', 'attendance', filter_columns => '{site_id}');
SELECT pg_ws_watch('sites.device', 'row', columns => '{id,name}',
				   filter_columns => '{site_id,"Zone \"A\""}');
SELECT relation, kind, columns, filter_columns FROM pg_ws_watched
WHERE relation::text LIKE 'sites.%' ORDER BY relation::text;

-- what subscribers are sent: no filter column in any event
BEGIN;
INSERT INTO sites.app_client (id, first_seen, last_seen, visit_count, gender, age, image, site_id)
VALUES (1, '2023-12-10 10:00:00+00', '2023-12-10 15:00:00+00', 5, 'male', 30, NULL, 7);
INSERT INTO sites.app_visithistory (datetime, device_id, client_id, site_id)
VALUES ('2023-12-10 10:30:00+00', '1', 1, 7);
UPDATE sites.app_client SET visit_count = 6 WHERE id = 1;
INSERT INTO sites.app_employee (id, first_name, last_name, email, phone_number, image, working_graphic_id, site_id, region)
VALUES (1, 'John', 'Doe', 'j@example.com', '1', NULL, NULL, 8, 'north');
INSERT INTO sites.app_attendance (device_id, image, datetime, score, employee_id, site_id)
VALUES ('cam', NULL, '2023-12-10 09:00:00+00', 95.5, 1, 8);
INSERT INTO sites.device VALUES (1, 'gate', 7, 'a');
UPDATE sites.device SET name = 'door';
DELETE FROM sites.device;
DELETE FROM sites.app_attendance;
DELETE FROM sites.app_employee;
DELETE FROM sites.app_visithistory;
DELETE FROM sites.app_client;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- refused: a column the table does not have, a system column, one named
-- twice, more than 8, none
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{site}');
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{ctid}');
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{site_id,site_id}');
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => ARRAY[NULL]::name[]);
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{}');
ALTER TABLE sites.device ADD COLUMN c1 int, ADD COLUMN c2 int, ADD COLUMN c3 int,
	ADD COLUMN c4 int, ADD COLUMN c5 int, ADD COLUMN c6 int, ADD COLUMN c7 int,
	ADD COLUMN c8 int;
SELECT pg_ws_watch('sites.device', 'row', columns => '{id}',
				   filter_columns => '{site_id,c1,c2,c3,c4,c5,c6,c7,c8}');
SELECT pg_ws_watch('sites.device', 'row', columns => '{id}',
				   filter_columns => '{c1,c2,c3,c4,c5,c6,c7,c8}');
SELECT filter_columns FROM pg_ws_watched WHERE relation = 'sites.device'::regclass;
SELECT pg_ws_watch('sites.device', 'row', columns => '{id,name}',
				   filter_columns => '{site_id,"Zone \"A\""}');
-- a column the events carry already: a 'row' table's sent columns (all,
-- without columns), a field of the document's events
SELECT pg_ws_watch('sites.device', 'row', columns => '{id,name}', filter_columns => '{name}');
SELECT pg_ws_watch('sites.device', 'row', filter_columns => '{site_id}');
SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{gender}');
SELECT pg_ws_watch('sites.app_employee', 'employee', filter_columns => '{email}');
-- pg_ws's own tables: not dumped with the column, so none
ALTER TABLE client ADD COLUMN site_id integer;
SELECT pg_ws_watch('client', 'client', filter_columns => '{site_id}');
ALTER TABLE client DROP COLUMN site_id;
-- every refusal left the watches as they were
SELECT relation, kind, columns, filter_columns FROM pg_ws_watched
WHERE relation::text LIKE 'sites.%' ORDER BY relation::text;

-- a filter column stays while the table is watched: not dropped, not
-- renamed, whatever kind; its type may change
ALTER TABLE sites.app_client DROP COLUMN site_id;
ALTER TABLE sites.app_employee RENAME COLUMN region TO area;
ALTER TABLE sites.device DROP COLUMN site_id;
ALTER TABLE sites.device RENAME COLUMN "Zone ""A""" TO zone;
ALTER TABLE sites.device DROP COLUMN name;
ALTER TABLE sites.app_client ALTER COLUMN site_id TYPE bigint;
BEGIN;
INSERT INTO sites.app_client (id, visit_count, site_id) VALUES (2, 1, 9);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- watched again without them: the columns may go, and the events are
-- still the same
SELECT pg_ws_watch('sites.app_employee', 'employee', filter_columns => '{site_id}');
ALTER TABLE sites.app_employee RENAME COLUMN region TO area;
SELECT pg_ws_watch('sites.app_client', 'client');
ALTER TABLE sites.app_client DROP COLUMN site_id;
SELECT relation, kind, columns, filter_columns FROM pg_ws_watched
WHERE relation::text LIKE 'sites.%' ORDER BY relation::text;
BEGIN;
INSERT INTO sites.app_client (id, visit_count) VALUES (3, 1);
INSERT INTO sites.app_employee (id, first_name, last_name, site_id, area)
VALUES (2, 'Ann', 'Lee', 7, 'south');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- unwatched, a table's filter columns go with its watch
SELECT pg_ws_unwatch('sites.device');
ALTER TABLE sites.device DROP COLUMN site_id;
SELECT pg_ws_watch('sites.device', 'row', columns => '{id,name}');
BEGIN;
INSERT INTO sites.device (id, name) VALUES (2, 'lift');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
SELECT relation, filter_columns FROM pg_ws_watched WHERE relation = 'sites.device'::regclass;

DROP SCHEMA sites CASCADE;
