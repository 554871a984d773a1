/* pg_ws--1.0--1.1.sql: from 1.0 to 1.1 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.1'" to load this file. \quit

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
