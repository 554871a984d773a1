/* pg_ws--1.3.0--1.3.1.sql: from 1.3.0 to 1.3.1 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.3.1'" to load this file. \quit

-- filter columns (1.3.1): columns of a watched table that travel with its
-- events for ?filter= and a token's filters, never sent to subscribers.
-- Last, as in a fresh install, so that both have the same columns in the
-- same order; the rows of a 1.3.0 dump name theirs and restore with none.
ALTER TABLE @extschema@.pg_ws_watched
	ADD COLUMN filter_columns pg_catalog.name[];

-- pg_ws_watch() takes them as its last argument: a new signature, so the
-- function is made anew, with the privileges the install script gives it.
-- EXECUTE granted on the old one to another role is not carried over, since
-- a GRANT run here would count as one of the extension's initial
-- privileges, which pg_dump leaves out: the role is named so that it can be
-- granted again after the update.
DO $do$
DECLARE
	grantee pg_catalog.text;
BEGIN
	FOR grantee IN
		SELECT DISTINCT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee))
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid = '@extschema@.pg_ws_watch(pg_catalog.regclass, pg_catalog.text, pg_catalog.name[], pg_catalog.regclass, pg_catalog.text, boolean)'::pg_catalog.regprocedure
		  AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0
		  AND a.grantee <> p.proowner
	LOOP
		RAISE WARNING 'role % may no longer call pg_ws_watch(), whose arguments changed', grantee
			USING HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION %s.pg_ws_watch(regclass, text, name[], regclass, text, boolean, name[]) TO %s;',
										   pg_catalog.quote_ident('@extschema@'), grantee);
	END LOOP;
END
$do$;

DROP FUNCTION @extschema@.pg_ws_watch(pg_catalog.regclass, pg_catalog.text,
									  pg_catalog.name[], pg_catalog.regclass,
									  pg_catalog.text, boolean);

-- replicated: also broadcast the rows logical replication (or anything
-- else running with session_replication_role = replica) writes, by making
-- the table's trigger ENABLE ALWAYS; without it, as every trigger, only
-- ordinary writes.  filter_columns: columns that travel with every event
-- of the table for ?filter= and a token's filters only, never sent.
CREATE FUNCTION @extschema@.pg_ws_watch(tbl pg_catalog.regclass,
										kind pg_catalog.text,
										columns pg_catalog.name[] DEFAULT NULL,
										visit_table pg_catalog.regclass DEFAULT NULL,
										event_prefix pg_catalog.text DEFAULT NULL,
										replicated boolean DEFAULT false,
										filter_columns pg_catalog.name[] DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pg_ws_watch' LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION @extschema@.pg_ws_watch(pg_catalog.regclass, pg_catalog.text, pg_catalog.name[], pg_catalog.regclass, pg_catalog.text, boolean, pg_catalog.name[]) FROM PUBLIC;

-- pg_ws_stats gains subscribers_indexed, the subscribers waiting in the
-- worker's ?filter= index (the library answers the old columns too, until
-- this runs).  The view and its function are made anew with the
-- privileges the install script gives them; a role an administrator had
-- granted them to is named, as for pg_ws_watch() above.
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
	OUT subscribers_indexed integer)
	RETURNS record
	AS 'MODULE_PATHNAME', 'pg_ws_stats'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.pg_ws_stats AS
	SELECT * FROM @extschema@.pg_ws_stats();

REVOKE ALL ON FUNCTION @extschema@.pg_ws_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_stats() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_stats FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_stats TO pg_monitor;
