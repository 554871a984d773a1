/* pg_ws--1.0--1.1.sql: from 1.0 to 1.1 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.1'" to load this file. \quit

-- privileges, statistics (db)
--
-- Only the extension's own triggers may call pg_ws_row_event(): CREATE
-- TRIGGER needs EXECUTE on it, firing a trigger does not, so every role
-- allowed to write the tables still produces events.  The function also
-- refuses to run on any table but the extension's own of its kind.
REVOKE ALL ON FUNCTION @extschema@.pg_ws_row_event() FROM PUBLIC;

-- The pending events show rendered rows, visit_histories included, which
-- are read with the table owner's rights: for monitoring roles only.
REVOKE ALL ON FUNCTION @extschema@.pg_ws_pending_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_pending_events() TO pg_monitor;

-- What pg_ws is doing, one row: the worker, the queue, waiting writers.
CREATE FUNCTION @extschema@.pg_ws_stats(
	OUT worker_pid integer,
	OUT queue_bytes_used bigint,
	OUT queue_bytes_capacity bigint,
	OUT writers_waiting integer,
	OUT connections integer,
	OUT subscribers integer,
	OUT worker_memory_bytes bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'pg_ws_stats'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.pg_ws_stats AS
	SELECT * FROM @extschema@.pg_ws_stats();

REVOKE ALL ON FUNCTION @extschema@.pg_ws_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_stats() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_stats FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_stats TO pg_monitor;

-- tokens (auth)

-- An HS256 token for subscribers, signed with pg_ws.jwt_secret_file (or
-- pg_ws.jwt_secret): iat and exp (now + ttl) replace any in claims; iss
-- and aud come from pg_ws.jwt_issuer and pg_ws.jwt_audience unless claims
-- has them.  Whoever may call it may subscribe as anyone, so nobody may
-- until a superuser grants EXECUTE to the application's role.
CREATE FUNCTION @extschema@.pg_ws_sign_token(claims pg_catalog.jsonb,
											 ttl pg_catalog.interval)
	RETURNS pg_catalog.text
	AS 'MODULE_PATHNAME', 'pg_ws_sign_token'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_sign_token(pg_catalog.jsonb, pg_catalog.interval)
	FROM PUBLIC;
