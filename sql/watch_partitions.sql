--
-- A watched partitioned table's partitions (issue 15, item 8): each
-- partition's rows are sent with the watched table's key and columns,
-- mapped by name, whatever the partition's own column order, dropped
-- columns and indexes.  A table made apart and attached with its own
-- UNIQUE index (which becomes its part of the primary key, but is no
-- primary key itself) sent _delete events with empty data in 1.2.
--
CREATE TABLE sale (id integer, region text, amount integer, note text,
				   PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE sale_eu PARTITION OF sale FOR VALUES IN ('eu');
SELECT pg_ws_watch('sale', 'row');

-- made apart: other column order, a dropped column first, the key's
-- columns last, and a UNIQUE constraint rather than a primary key, which
-- ATTACH PARTITION takes as the partition's part of the primary key
-- (up to 16; 17 makes the partition a primary key index of its own
-- beside it, and expected/watch_partitions_1.out is that output: the
-- events are the same)
CREATE TABLE sale_us (gone integer, note text, amount integer,
					  region text NOT NULL, id integer NOT NULL);
ALTER TABLE sale_us DROP COLUMN gone;
ALTER TABLE sale_us ADD CONSTRAINT sale_us_key UNIQUE (id, region);
ALTER TABLE sale ATTACH PARTITION sale_us FOR VALUES IN ('us');
SELECT i.indrelid::regclass AS partition, c.relname, i.indisprimary,
	   (SELECT p.inhparent::regclass FROM pg_inherits p WHERE p.inhrelid = i.indexrelid) AS part_of
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid IN ('sale_eu'::regclass, 'sale_us'::regclass) ORDER BY 1, 2;
SELECT attname, attnum FROM pg_attribute
WHERE attrelid = 'sale_us'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

-- _delete carries the watched table's key, the other events its columns
-- in its order, from either partition
BEGIN;
INSERT INTO sale VALUES (1, 'eu', 10, 'a'), (2, 'us', 20, 'b');
INSERT INTO sale_us (id, region, amount) VALUES (3, 'us', 30);
UPDATE sale SET amount = amount + 1 WHERE id IN (1, 2);
UPDATE sale SET region = 'us' WHERE id = 1;   -- moves to sale_us
DELETE FROM sale;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- listed columns too, by name
SELECT pg_ws_watch('sale', 'row', columns => '{amount,id}');
BEGIN;
INSERT INTO sale VALUES (4, 'us', 40, 'x'), (5, 'eu', 50, 'y');
DELETE FROM sale WHERE id = 4;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- two levels: a sub-partitioned partition attached with its own columns'
-- order; its leaves send the top table's key and columns
CREATE TABLE sale_asia (amount integer, id integer NOT NULL, note text,
						region text NOT NULL) PARTITION BY HASH (id);
ALTER TABLE sale_asia ADD UNIQUE (id, region);
CREATE TABLE sale_asia_0 (note text, region text NOT NULL, id integer NOT NULL,
						  amount integer);
ALTER TABLE sale_asia_0 ADD UNIQUE (id, region);
ALTER TABLE sale_asia ATTACH PARTITION sale_asia_0 FOR VALUES WITH (MODULUS 1, REMAINDER 0);
ALTER TABLE sale ATTACH PARTITION sale_asia FOR VALUES IN ('asia');
SELECT i.indrelid::regclass AS partition, i.indisprimary
FROM pg_index i WHERE i.indrelid = 'sale_asia_0'::regclass;
SELECT pg_ws_watch('sale', 'row');
BEGIN;
INSERT INTO sale VALUES (6, 'asia', 60, 'z');
DELETE FROM sale WHERE id = 6;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a partition watched itself is watched as itself, with its own key
CREATE TABLE lone (b text, a integer PRIMARY KEY);
SELECT pg_ws_watch('lone', 'row');
BEGIN;
INSERT INTO lone VALUES ('x', 1);
DELETE FROM lone;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

SELECT pg_ws_unwatch('sale'), pg_ws_unwatch('lone');
DROP TABLE sale, lone;
