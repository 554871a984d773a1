/* pg_ws--1.3.1--1.4.0.sql: from 1.3.1 to 1.4.0 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.4.0'" to load this file. \quit

-- pg_ws_stats gains resumes_refused, the connections refused because
-- their address had pg_ws.max_wal_resumes_per_address resuming from the
-- WAL already (the library answers the old columns too, until this runs).
-- The view and its function are made anew with the privileges the install
-- script gives them; a role an administrator had granted them to is named,
-- since a GRANT run here would count as one of the extension's initial
-- privileges, which pg_dump leaves out.
DO $do$
DECLARE
	grantee pg_catalog.text;
BEGIN
	FOR grantee IN
		SELECT DISTINCT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee))
		FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid = '@extschema@.pg_ws_stats'::pg_catalog.regclass
		  AND a.privilege_type = 'SELECT' AND a.grantee <> 0
		  AND a.grantee <> c.relowner
		  AND a.grantee <> 'pg_monitor'::pg_catalog.regrole
	LOOP
		RAISE WARNING 'role % may no longer read pg_ws_stats, which gained a column', grantee
			USING HINT = pg_catalog.format('GRANT SELECT ON %s.pg_ws_stats TO %s;',
										   pg_catalog.quote_ident('@extschema@'), grantee);
	END LOOP;
END
$do$;

DROP VIEW @extschema@.pg_ws_stats;
DROP FUNCTION @extschema@.pg_ws_stats();

CREATE FUNCTION @extschema@.pg_ws_stats(
	OUT worker_pid integer,
	OUT worker_started pg_catalog.timestamptz,
	OUT worker_memory_bytes bigint,
	OUT connections integer,
	OUT subscribers integer,
	OUT connections_total bigint,
	OUT queue_bytes_used bigint,
	OUT queue_bytes_capacity bigint,
	OUT writers_waiting integer,
	OUT oldest_unsent_age pg_catalog.interval,
	OUT events_queued bigint,
	OUT events_sent bigint,
	OUT messages_sent bigint,
	OUT bytes_sent bigint,
	OUT refusals pg_catalog.jsonb,
	OUT drops pg_catalog.jsonb,
	OUT ignored_records pg_catalog.jsonb,
	OUT resumes_waited bigint,
	OUT history_first_position bigint,
	OUT history_last_position bigint,
	OUT history_in_wal boolean,
	OUT history_slot_invalidations bigint,
	OUT subscribers_indexed integer,
	OUT resumes_refused bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'pg_ws_stats'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.pg_ws_stats AS
	SELECT * FROM @extschema@.pg_ws_stats();

REVOKE ALL ON FUNCTION @extschema@.pg_ws_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_stats() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_stats FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_stats TO pg_monitor;
