--
-- DROP COLUMN, RENAME COLUMN and column types of broadcast tables (issue
-- 15, item 9).  A column a watch lists, or one the event document's kinds
-- render, cannot be dropped, renamed or retyped while pg_ws broadcasts the
-- table: in 1.2 the command succeeded and every later write to the table
-- failed (column "a" does not exist) until pg_ws_watch() ran again.  Each
-- refused command is followed by a write that shows the table still sends
-- its events.
--
CREATE TABLE item (id integer PRIMARY KEY, name text, price numeric,
				   secret text, extra text);
SELECT pg_ws_watch('item', 'row', columns => '{id,name,price}');

-- a listed column: refused, naming the watch and the call that changes it
ALTER TABLE item DROP COLUMN price;
ALTER TABLE item RENAME COLUMN name TO title;
ALTER TABLE item DROP COLUMN name, DROP COLUMN extra;
BEGIN;
INSERT INTO item VALUES (1, 'pen', 2.5, 's', 'e');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a column the watch does not list may go, and a listed one change type
ALTER TABLE item DROP COLUMN extra;
ALTER TABLE item RENAME COLUMN secret TO hidden;
ALTER TABLE item ALTER COLUMN price TYPE real;
BEGIN;
INSERT INTO item VALUES (1, 'pen', 2.5, 's');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- renaming a listed column: watch the table without it, rename it, watch
-- it again with its new name, all in one transaction
BEGIN;
SELECT pg_ws_watch('item', 'row', columns => '{id,price}');
ALTER TABLE item RENAME COLUMN name TO title;
SELECT pg_ws_watch('item', 'row', columns => '{id,title,price}');
COMMIT;
SELECT columns FROM pg_ws_watched WHERE relation = 'item'::regclass;
BEGIN;
INSERT INTO item VALUES (2, 'ink', 1);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- the primary key, which _delete sends: not dropped, alone or with its
-- column, but replaced in one command
ALTER TABLE item DROP CONSTRAINT item_pkey;
ALTER TABLE item DROP COLUMN id CASCADE;
ALTER TABLE item DROP CONSTRAINT item_pkey, ADD PRIMARY KEY (title);
BEGIN;
INSERT INTO item VALUES (3, 'cap', 4);
DELETE FROM item;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a type dropped with CASCADE would drop a listed column
CREATE DOMAIN label AS text;
ALTER TABLE item ADD COLUMN tag label;
SELECT pg_ws_watch('item', 'row', columns => '{id,title,tag}');
DROP DOMAIN label CASCADE;
SELECT attname FROM pg_attribute WHERE attrelid = 'item'::regclass AND attname = 'tag';

-- whoever runs it: the table's owner, and session_replication_role =
-- replica, under which pg_ws's event triggers fire too
CREATE ROLE item_owner;
ALTER TABLE item OWNER TO item_owner;
SET ROLE item_owner;
ALTER TABLE item DROP COLUMN tag;
RESET ROLE;
SET session_replication_role = replica;
ALTER TABLE item RENAME COLUMN title TO name;
RESET session_replication_role;

-- a 'row' table watched without columns sends whatever columns it has
SELECT pg_ws_watch('item', 'row');
ALTER TABLE item DROP COLUMN tag;
ALTER TABLE item RENAME COLUMN hidden TO secret;
BEGIN;
INSERT INTO item VALUES (4, 'nib', 3, 's');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a watched partitioned table: its columns, not its partitions'
CREATE TABLE part_item (id integer, at date, amount integer, PRIMARY KEY (id, at))
	PARTITION BY RANGE (at);
CREATE TABLE part_item_2024 PARTITION OF part_item
	FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT pg_ws_watch('part_item', 'row', columns => '{id,amount}');
ALTER TABLE part_item DROP COLUMN amount;
ALTER TABLE part_item RENAME COLUMN amount TO total;

-- the event document's kinds: the columns render.c reads, of the types it
-- writes (a Django app's client table here)
CREATE TABLE app_client (id bigint PRIMARY KEY, first_seen timestamptz,
						 last_seen timestamptz, visit_count integer NOT NULL DEFAULT 0,
						 gender varchar(10), age integer, image varchar(100),
						 note text);
SELECT pg_ws_watch('app_client', 'client');
ALTER TABLE app_client DROP COLUMN visit_count;
ALTER TABLE app_client RENAME COLUMN last_seen TO seen;
ALTER TABLE app_client ALTER COLUMN age TYPE text;
ALTER TABLE app_client ALTER COLUMN gender TYPE text;		-- still a string
ALTER TABLE app_client DROP COLUMN note;					-- not rendered
BEGIN;
INSERT INTO app_client (id, visit_count, gender) VALUES (1, 2, 'f');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
SELECT pg_ws_unwatch('app_client');
ALTER TABLE app_client DROP COLUMN visit_count;

-- pg_ws's own tables too
ALTER TABLE client DROP COLUMN visit_count;
ALTER TABLE visit_history RENAME COLUMN device_id TO device;
ALTER TABLE attendance ALTER COLUMN score TYPE text;
ALTER TABLE employee ADD COLUMN nickname text;
ALTER TABLE employee DROP COLUMN nickname;

-- dropping the whole table is not refused
DROP TABLE item, part_item, app_client;
DROP DOMAIN label;
DROP ROLE item_owner;
SELECT count(*) FROM pg_ws_watched WHERE relation::text IN ('item', 'part_item', 'app_client');
