--
-- Restores (issue 15, item 7): rows a restore loads into the tables pg_ws
-- broadcasts are not events.  A restore is told by how pg_restore and psql
-- -f of a plain dump load rows: COPY ... FROM stdin into the table, by a
-- superuser, in a session with pg_dump's settings (search_path '' and
-- check_function_bodies off).  Here 2,000 clients, more than
-- pg_ws.queue_size (64kB) holds as events: 1.2 failed such a restore.
-- The foreign keys of pg_ws's own visit_history and attendance are not
-- checked while a restore loads them (pg_restore --jobs loads tables in
-- any order).  An application's COPY, and a restore's rows written with
-- INSERT, are events.
--
CREATE ROLE restore_loader;
GRANT INSERT, SELECT ON client, visit_history TO restore_loader;
GRANT USAGE ON SCHEMA public TO restore_loader;
GRANT EXECUTE ON FUNCTION pg_ws_pending_events() TO restore_loader;

-- a restore: no events, however many rows
BEGIN;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL check_function_bodies = false;
-- (psql's \copy sends COPY ... FROM STDIN, as pg_restore does; the rows are
-- made by a program rather than written out here)
\copy public.client (id, visit_count, image) FROM PROGRAM 'awk ''BEGIN { for (i = 0; i < 2000; i++) printf "%d\t%d\tclient_images/%d.jpg\n", 100000 + i, i % 7, i }'''
SELECT count(*) AS restored, (SELECT count(*) FROM public.pg_ws_pending_events()) AS events
FROM public.client WHERE id >= 100000;
-- visits of a client not loaded yet (as pg_restore --jobs may load them)
COPY public.visit_history (id, client_id, datetime, device_id) FROM stdin;
900001	999999	2023-12-10 10:00:00+00	d1
900002	100000	2023-12-10 10:00:00+00	d2
\.
SELECT count(*) AS visits FROM public.visit_history WHERE id > 900000;
-- afterwards: foreign keys checked again, and writes are events
SHOW session_replication_role;
SAVEPOINT s;
INSERT INTO public.visit_history (id, client_id, datetime, device_id)
	VALUES (900003, 999998, now(), 'd3');
ROLLBACK TO SAVEPOINT s;
INSERT INTO public.client (id) VALUES (99999);
SELECT * FROM public.pg_ws_pending_events();
ROLLBACK;

-- the same COPY without pg_dump's settings: an application's bulk load,
-- whose events do not fit in the queue
BEGIN;
\copy client (id, visit_count, image) FROM PROGRAM 'awk ''BEGIN { for (i = 0; i < 2000; i++) printf "%d\t%d\tclient_images/%d.jpg\n", 100000 + i, i % 7, i }'''
ROLLBACK;

-- with only one of the two settings: not a restore
BEGIN;
SET LOCAL check_function_bodies = false;
COPY client (id, visit_count, image) FROM stdin;
100000	1	a.jpg
\.
SELECT count(*) AS events FROM pg_ws_pending_events();
ROLLBACK;

-- with pg_dump's settings, but by a role that is not a superuser (which
-- may not silence pg_ws's triggers either): events
BEGIN;
SET LOCAL ROLE restore_loader;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL check_function_bodies = false;
COPY public.client (id, visit_count, image) FROM stdin;
100000	1	a.jpg
100001	2	b.jpg
\.
SELECT count(*) AS events FROM public.pg_ws_pending_events();
COPY public.visit_history (id, client_id, datetime, device_id) FROM stdin;
900001	999999	2023-12-10 10:00:00+00	d1
\.
ROLLBACK;

-- rows a restore writes with INSERT (pg_dump --inserts): events
BEGIN;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL check_function_bodies = false;
INSERT INTO public.client (id, visit_count) VALUES (100000, 1);
SELECT count(*) AS events FROM public.pg_ws_pending_events();
ROLLBACK;

-- a restore's COPY of one table does not silence another written in the
-- same statement's triggers: only the COPY's own table (or the partitioned
-- table it loads through) is restored
CREATE TABLE restore_log (id integer PRIMARY KEY);
CREATE FUNCTION restore_log_client() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.employee (first_name, last_name) VALUES ('log', NEW.id::text);
	RETURN NULL;
END $$;
CREATE TRIGGER log_client AFTER INSERT ON restore_log
	FOR EACH ROW EXECUTE FUNCTION restore_log_client();
BEGIN;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL check_function_bodies = false;
COPY public.restore_log (id) FROM stdin;
1
\.
SELECT regexp_replace(e, '"id": [0-9]+', '"id": N') AS events FROM public.pg_ws_pending_events() e;
ROLLBACK;

DROP TABLE restore_log;
DROP FUNCTION restore_log_client();
REVOKE ALL ON client, visit_history FROM restore_loader;
REVOKE ALL ON SCHEMA public FROM restore_loader;
REVOKE ALL ON FUNCTION pg_ws_pending_events() FROM restore_loader;
DROP ROLE restore_loader;
