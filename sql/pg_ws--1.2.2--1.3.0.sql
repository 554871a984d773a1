/* pg_ws--1.2.2--1.3.0.sql: from 1.2.2 to 1.3.0 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.3.0'" to load this file. \quit

-- snapshot positions (1.3): where the calling transaction's snapshot stands
-- in the event stream.  Read in the REPEATABLE READ transaction that reads a
-- page's rows, it lets /ws/?since= send exactly the events those rows do
-- not show.  Executable by everyone, like pg_current_snapshot(), which
-- shows the same transaction ids.
CREATE FUNCTION @extschema@.pg_ws_position() RETURNS pg_catalog.text
	AS 'MODULE_PATHNAME', 'pg_ws_position'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.pg_ws_position() IS
	'where this REPEATABLE READ transaction''s snapshot stands in the pg_ws event stream, for /ws/?since=';
