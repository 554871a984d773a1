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

-- monitoring: pg_ws_connections gains row_filter, the connection's
-- ?filter= (1.3)
DROP VIEW @extschema@.pg_ws_connections;
DROP FUNCTION @extschema@.pg_ws_connections();

-- One row per socket the worker holds: subscribers and connections still
-- in their handshake, with the token's subject (never the token).
CREATE FUNCTION @extschema@.pg_ws_connections(
	OUT id bigint,
	OUT state pg_catalog.text,
	OUT peer pg_catalog.inet,
	OUT peer_port integer,
	OUT tls boolean,
	OUT connected_since pg_catalog.timestamptz,
	OUT subject pg_catalog.text,
	OUT token_expires pg_catalog.timestamptz,
	OUT filter pg_catalog.text[],
	OUT row_filter pg_catalog.text,
	OUT messages_sent bigint,
	OUT bytes_sent bigint,
	OUT bytes_pending bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'pg_ws_connections'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW @extschema@.pg_ws_connections AS
	SELECT * FROM @extschema@.pg_ws_connections();

REVOKE ALL ON FUNCTION @extschema@.pg_ws_connections() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_connections() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_connections FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_connections TO pg_monitor;
