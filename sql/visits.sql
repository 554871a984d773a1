--
-- pg_ws.max_visit_histories: a client event lists the client's newest
-- visits, oldest first, so a client with a long history stays updatable
-- (pg_ws.queue_size is 64kB in test/regress.conf).
--
TRUNCATE client CASCADE;
INSERT INTO client (id) VALUES (1), (2);
-- ids not in time order, and two visits at the same time (id breaks ties)
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (10, 1, '2023-12-10 10:05:00+00', 'e'),
    (11, 1, '2023-12-10 10:01:00+00', 'a'),
    (12, 1, '2023-12-10 10:03:00+00', 'c'),
    (13, 1, '2023-12-10 10:02:00+00', 'b'),
    (15, 1, '2023-12-10 10:04:00+00', 'd2'),
    (14, 1, '2023-12-10 10:04:00+00', 'd1');

-- the newest three, oldest first
SET pg_ws.max_visit_histories = 3;
BEGIN;
UPDATE client SET visit_count = 6 WHERE id = 1;
SELECT (e::json)->'data'->'visit_histories' AS visit_histories
FROM pg_ws_pending_events() e;
ROLLBACK;
-- the newest one
SET pg_ws.max_visit_histories = 1;
BEGIN;
UPDATE client SET visit_count = 6 WHERE id = 1;
SELECT (e::json)->'data'->'visit_histories' AS visit_histories
FROM pg_ws_pending_events() e;
ROLLBACK;
-- 0: none, without looking
SET pg_ws.max_visit_histories = 0;
BEGIN;
UPDATE client SET visit_count = 6 WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- more than there are: all of them
SET pg_ws.max_visit_histories = 100;
BEGIN;
UPDATE client SET visit_count = 6 WHERE id = 1;
SELECT (e::json)->'data'->'visit_histories' AS visit_histories
FROM pg_ws_pending_events() e;
ROLLBACK;
RESET pg_ws.max_visit_histories;

-- bounds, and only a superuser may change it
SET pg_ws.max_visit_histories = -1;
CREATE ROLE regress_pg_ws_user;
SET ROLE regress_pg_ws_user;
SET pg_ws.max_visit_histories = 5;
RESET ROLE;
DROP ROLE regress_pg_ws_user;

-- a client with 2,000 visits (about 116 kB of visit_histories in all) is
-- updated with the default bound: its event lists the newest 1,000 (the
-- visits themselves are inserted without events, which would not fit in one
-- transaction either)
SET session_replication_role = replica;
INSERT INTO visit_history (id, client_id, datetime, device_id)
SELECT 1000 + g, 2, '2023-12-10 00:00:00+00'::timestamptz + g * interval '1 minute', 'd' || g
FROM generate_series(1, 2000) g;
RESET session_replication_role;
SHOW pg_ws.max_visit_histories;
BEGIN;
UPDATE client SET visit_count = 2000 WHERE id = 2;
SELECT json_array_length(v) AS listed, v->0 AS oldest_listed, v->-1 AS newest,
       length(e) AS event_bytes
FROM pg_ws_pending_events() e, json_extract_path((e::json), 'data', 'visit_histories') v;
COMMIT;
SELECT visit_count FROM client WHERE id = 2;

-- the lookup reads the index on (client_id, datetime, id) backwards and
-- stops at the bound (the same query, planned as pg_ws plans it)
PREPARE visits(bigint, bigint) AS
    SELECT datetime, device_id FROM public.visit_history
    WHERE client_id OPERATOR(pg_catalog.=) $1
    ORDER BY datetime DESC, id DESC LIMIT $2;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE visits(2, 1000);
RESET plan_cache_mode;
DEALLOCATE visits;

-- an event that still does not fit fails its own transaction only, at
-- the statement, and the next one goes through
SET pg_ws.max_visit_histories = 2000;
BEGIN;
UPDATE client SET visit_count = 2001 WHERE id = 2;
ROLLBACK;
SELECT visit_count FROM client WHERE id = 2;
RESET pg_ws.max_visit_histories;
UPDATE client SET visit_count = 2002 WHERE id = 2;
SELECT visit_count FROM client WHERE id = 2;

-- The visits are read through the index on (client_id, datetime, id) when
-- that gives what the query would, and through the query otherwise; each
-- case below must list what the query lists.
INSERT INTO client (id) VALUES (3);
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (30, 3, '2023-12-10 10:01:00+00', 'a'),
    (31, 3, '2023-12-10 10:02:00+00', 'b'),
    (32, 3, '2023-12-10 10:03:00+00', 'c');
SET pg_ws.max_visit_histories = 2;
CREATE FUNCTION visits_of_3() RETURNS json LANGUAGE plpgsql AS $$
DECLARE v json;
BEGIN
    UPDATE client SET visit_count = visit_count + 1 WHERE id = 3;
    SELECT (e::json)->'data'->'visit_histories' INTO v
    FROM pg_ws_pending_events() e OFFSET (SELECT count(*) - 1 FROM pg_ws_pending_events());
    RETURN v;
END $$;
-- a visit the same transaction inserts
BEGIN;
INSERT INTO visit_history (id, client_id, datetime, device_id)
    VALUES (33, 3, '2023-12-10 10:04:00+00', 'd');
SELECT visits_of_3();
ROLLBACK;
-- and one inserted after a REPEATABLE READ transaction took its snapshot
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM visit_history WHERE client_id = 3;
INSERT INTO visit_history (id, client_id, datetime, device_id)
    VALUES (33, 3, '2023-12-10 10:04:00+00', 'd');
SELECT visits_of_3();
ROLLBACK;
-- and one the same statement inserts
BEGIN;
WITH v AS (
    INSERT INTO visit_history (id, client_id, datetime, device_id)
    VALUES (33, 3, '2023-12-10 10:04:00+00', 'd') RETURNING client_id)
UPDATE client SET visit_count = visit_count + 1 WHERE id IN (SELECT client_id FROM v);
SELECT (e::json)->'data'->'visit_histories' AS visit_histories
FROM pg_ws_pending_events() e WHERE e LIKE '{"event": "client_update"%';
ROLLBACK;
-- an index in another order serves nothing: the query's order still holds
DROP INDEX visit_history_client_id_idx;
CREATE INDEX visit_history_desc_idx
    ON visit_history (client_id, datetime DESC, id);
BEGIN;
SELECT visits_of_3();
ROLLBACK;
-- and the index made again serves again
DROP INDEX visit_history_desc_idx;
CREATE INDEX visit_history_client_id_idx
    ON visit_history (client_id, datetime, id);
BEGIN;
SELECT visits_of_3();
ROLLBACK;
-- an owner of the client table who is not a superuser: without SELECT on
-- the visits, the query's own error, index or not; with it, the visits;
-- and with row-level security on the visits, which applies to that owner,
-- not the rows its policy hides
CREATE ROLE regress_pg_ws_owner;
GRANT ALL ON SCHEMA public TO regress_pg_ws_owner;
BEGIN;
ALTER TABLE client OWNER TO regress_pg_ws_owner;
UPDATE client SET visit_count = visit_count + 1 WHERE id = 3;
ROLLBACK;
GRANT SELECT ON visit_history TO regress_pg_ws_owner;
BEGIN;
ALTER TABLE client OWNER TO regress_pg_ws_owner;
SELECT visits_of_3();
ROLLBACK;
ALTER TABLE visit_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_c ON visit_history USING (device_id <> 'c');
BEGIN;
ALTER TABLE client OWNER TO regress_pg_ws_owner;
SELECT visits_of_3();
ROLLBACK;
DROP POLICY not_c ON visit_history;
ALTER TABLE visit_history DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON visit_history FROM regress_pg_ws_owner;
REVOKE ALL ON SCHEMA public FROM regress_pg_ws_owner;
DROP ROLE regress_pg_ws_owner;
-- rows of an inheritance child, which the query reads too
CREATE TABLE visit_history_extra () INHERITS (visit_history);
INSERT INTO visit_history_extra (id, client_id, datetime, device_id)
    VALUES (34, 3, '2023-12-10 10:05:00+00', 'e');
BEGIN;
SELECT visits_of_3();
ROLLBACK;
DROP TABLE visit_history_extra;
-- (relhassubclass stays set until an ANALYZE finds no child)
ANALYZE visit_history;
DROP FUNCTION visits_of_3();
RESET pg_ws.max_visit_histories;
DELETE FROM client WHERE id = 3;

-- every visit's datetime as SQL writes it in UTC, over many days, across
-- midnights, before 2000 and 1970, with and without fractions: a day's
-- date is kept from one timestamp to the next, and must not outlive it
INSERT INTO client (id) VALUES (4);
SET session_replication_role = replica;
INSERT INTO visit_history (id, client_id, datetime, device_id)
SELECT 5000 + g, 4, t, 'd'
FROM generate_series(1, 600) g,
     LATERAL (SELECT CASE g % 4
         WHEN 0 THEN '1999-12-31 23:59:59.5+00'::timestamptz + g * interval '7 hours 13 minutes'
         WHEN 1 THEN '1969-12-31 22:00:00+00'::timestamptz + g * interval '1 hour 1 second'
         WHEN 2 THEN '1900-02-27 23:59:00+00'::timestamptz + g * interval '1 day 17 minutes 0.000001 seconds'
         ELSE '2024-02-28 23:30:00.123456+00'::timestamptz + g * interval '3 minutes' END AS t) x;
RESET session_replication_role;
SET pg_ws.max_visit_histories = 1000;
BEGIN;
UPDATE client SET visit_count = 600 WHERE id = 4;
SELECT count(*) AS listed,
       count(*) FILTER (WHERE v->>'datetime' <>
           to_char(h.datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') ||
           CASE WHEN extract(microseconds FROM h.datetime)::bigint % 1000000 = 0 THEN ''
                ELSE '.' || to_char(extract(microseconds FROM h.datetime)::bigint % 1000000, 'FM000000') END ||
           'Z') AS differ
FROM pg_ws_pending_events() e,
     json_array_elements((e::json)->'data'->'visit_histories') WITH ORDINALITY AS a(v, n),
     (SELECT datetime, row_number() OVER (ORDER BY datetime, id) AS n
      FROM visit_history WHERE client_id = 4) h
WHERE h.n = a.n;
ROLLBACK;
RESET pg_ws.max_visit_histories;
SET session_replication_role = replica;
DELETE FROM client WHERE id = 4;
RESET session_replication_role;

TRUNCATE client CASCADE;
