--
-- A hostile search_path changes nothing in the events: a schema searched
-- before pg_catalog with its own visit_history table, an "=" that is always
-- true, reversed "<" and ">" and its own now().  The first client event of
-- this session is rendered under that path, so the visit_histories query
-- is also prepared under it.
--
TRUNCATE client CASCADE;
CREATE SCHEMA evil;
CREATE TABLE evil.visit_history (id bigint, client_id bigint,
                                 datetime timestamptz, device_id text);
INSERT INTO evil.visit_history VALUES (1, 1, '2000-01-01 00:00:00+00', 'evil');
CREATE FUNCTION evil.always(bigint, bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.always);
CREATE FUNCTION evil.later(timestamptz, timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT $1 > $2';
CREATE FUNCTION evil.earlier(timestamptz, timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT $1 < $2';
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.later);
CREATE OPERATOR evil.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.earlier);
CREATE FUNCTION evil.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::timestamptz$$;

SET search_path = evil, pg_catalog, public;
-- the path is in force: unqualified names find the evil objects
SELECT device_id FROM visit_history;
SELECT 1::bigint = 2::bigint AS one_equals_two, now() AS now;

BEGIN;
INSERT INTO public.client (id) VALUES (1), (2);
INSERT INTO public.visit_history (id, client_id, datetime, device_id) VALUES
    (1, 1, '2023-12-10 12:00:00+00', 'late'),
    (2, 1, '2023-12-10 09:00:00+00', 'early'),
    (3, 2, '2023-12-10 10:00:00+00', 'other client');
-- a default of pg_catalog.now(), not evil.now()
INSERT INTO public.visit_history (id, client_id, device_id) VALUES (4, 2, 'now');
SELECT datetime OPERATOR(pg_catalog.=) pg_catalog.now() AS default_is_pg_catalog_now
FROM public.visit_history WHERE id OPERATOR(pg_catalog.=) 4;
UPDATE public.client SET visit_count = 2 WHERE id OPERATOR(pg_catalog.=) 1;
SELECT * FROM public.pg_ws_pending_events() OFFSET 6;
COMMIT;

RESET search_path;
TRUNCATE client CASCADE;
DROP SCHEMA evil CASCADE;
