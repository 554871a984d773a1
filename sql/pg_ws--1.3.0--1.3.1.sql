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
