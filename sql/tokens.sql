--
-- pg_ws_sign_token(): HS256 tokens minted in SQL, signed with the secret
-- of test/regress.conf
--

-- base64url (no padding) to bytea, and a token's part as jsonb
CREATE FUNCTION pg_temp.b64url(t text) RETURNS bytea LANGUAGE sql AS $$
  SELECT pg_catalog.decode(pg_catalog.rpad(pg_catalog.translate(t, '-_', '+/'),
                           (pg_catalog.length(t) + 3) / 4 * 4, '='), 'base64')
$$;
CREATE FUNCTION pg_temp.part(token text, n int) RETURNS jsonb LANGUAGE sql AS $$
  SELECT pg_catalog.convert_from(pg_temp.b64url(pg_catalog.split_part(token, '.', n)), 'UTF8')::jsonb
$$;
-- the SQLSTATE a call fails with
CREATE FUNCTION pg_temp.sqlstate_of(claims jsonb, ttl interval) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_ws_sign_token(claims, ttl);
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END
$$;

-- nobody may call it until a superuser grants it
SELECT pg_catalog.has_function_privilege('public', 'pg_ws_sign_token(jsonb, interval)',
                                         'EXECUTE') AS public_may_execute;
CREATE ROLE regress_pg_ws_app;
SET ROLE regress_pg_ws_app;
SELECT pg_ws_sign_token('{"sub": "alice"}', '1 minute');
RESET ROLE;
GRANT EXECUTE ON FUNCTION pg_ws_sign_token(jsonb, interval) TO regress_pg_ws_app;
SET ROLE regress_pg_ws_app;
SELECT pg_ws_sign_token('{"sub": "alice"}', '1 minute') IS NOT NULL AS app_may_execute;
RESET ROLE;

-- a token: three base64url parts without padding, a 32-byte signature
CREATE TEMP TABLE t AS
SELECT pg_ws_sign_token('{"sub": "alice", "events": ["employee_*", "client_create"],
                          "exp": 1, "iat": 2, "n": 1.50, "big": 12345678901234567890,
                          "name": "Zoë \"Z\" \u00e9"}', '10 minutes') AS token;
SELECT token ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$' AS compact_jws FROM t;
SELECT pg_temp.part(token, 1) AS header FROM t;
-- the caller's claims, exactly; iat and exp replaced, exp = iat + ttl; iss
-- and aud added from pg_ws.jwt_issuer and pg_ws.jwt_audience
SELECT pg_temp.part(token, 2) - 'iat' - 'exp' AS claims,
       (pg_temp.part(token, 2)->>'exp')::bigint
         - (pg_temp.part(token, 2)->>'iat')::bigint AS lifetime,
       abs((pg_temp.part(token, 2)->>'iat')::bigint
           - extract(epoch FROM clock_timestamp())::bigint) < 300 AS iat_is_now
FROM t;
-- the signature, checked independently with pgcrypto's hmac()
CREATE EXTENSION pgcrypto;
SELECT pg_catalog.split_part(token, '.', 3) =
       pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(
         hmac(pg_catalog.split_part(token, '.', 1) || '.' || pg_catalog.split_part(token, '.', 2),
              'regress-secret-0123456789-abcdefghijklmnop', 'sha256'),
         'base64'), '+/', '-_'), '=') AS signature_valid
FROM t;
-- ... and it is not a signature whatever the key
SELECT pg_catalog.split_part(token, '.', 3) <>
       pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(
         hmac(pg_catalog.split_part(token, '.', 1) || '.' || pg_catalog.split_part(token, '.', 2),
              'another-secret-0123456789-abcdefghijklmnop', 'sha256'),
         'base64'), '+/', '-_'), '=') AS other_key_differs
FROM t;
DROP EXTENSION pgcrypto;

-- iss and aud of the caller are kept; a fraction of a second rounds up
SELECT pg_temp.part(tok, 2) - 'iat' - 'exp' AS claims,
       (pg_temp.part(tok, 2)->>'exp')::bigint - (pg_temp.part(tok, 2)->>'iat')::bigint AS lifetime
FROM pg_ws_sign_token('{"iss": "me", "aud": ["a", "b"]}', '1.5 seconds') AS tok;
-- a ttl in days and months counts as extract(epoch FROM ttl) does
SELECT (pg_temp.part(tok, 2)->>'exp')::bigint - (pg_temp.part(tok, 2)->>'iat')::bigint AS lifetime
FROM pg_ws_sign_token('{}', '1 day 1 hour') AS tok;

-- what it refuses, and with which SQLSTATE
SELECT pg_ws_sign_token('[1, 2]', '1 minute');
SELECT pg_ws_sign_token('"alice"', '1 minute');
SELECT pg_ws_sign_token('{}', '0');
SELECT pg_ws_sign_token('{}', '-1 minute');
SELECT pg_ws_sign_token('{}', '10000 years');
SELECT pg_temp.sqlstate_of('[]', '1 minute') AS not_an_object,
       pg_temp.sqlstate_of('{}', '-1 second') AS not_positive,
       pg_temp.sqlstate_of('{}', '1 second') AS fine;
SELECT pg_ws_sign_token(NULL, '1 minute') IS NULL AS strict;

-- the secret is never shown, not even to a superuser
SHOW pg_ws.jwt_secret;
SELECT setting FROM pg_catalog.pg_settings WHERE name = 'pg_ws.jwt_secret';
-- nor where it is kept to a role without pg_read_all_settings (the
-- message's wording changed in 16: its SQLSTATE is what is checked)
SET ROLE regress_pg_ws_app;
DO $$
BEGIN
	RAISE NOTICE 'shown: %', current_setting('pg_ws.jwt_secret_file');
EXCEPTION WHEN insufficient_privilege THEN
	RAISE NOTICE 'refused: %', SQLSTATE;
END $$;
RESET ROLE;
-- a secret too short is refused without being printed
ALTER SYSTEM SET pg_ws.jwt_secret = 'too short to be a secret';
-- origins are scheme://host[:port], cookie names RFC 6265 tokens
ALTER SYSTEM SET pg_ws.allowed_origins = 'https://app.example.com/';
ALTER SYSTEM SET pg_ws.allowed_origins = 'https://app.example.com, app.example.com';
ALTER SYSTEM SET pg_ws.jwt_cookie = 'my token';
ALTER SYSTEM SET pg_ws.auth = 'basic';
-- they are reloadable settings, not session ones
SET pg_ws.auth = 'jwt';

-- an update from 1.0 brings the function with the same privileges
CREATE DATABASE pg_ws_upgrade;
\c pg_ws_upgrade
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.0';
ALTER EXTENSION pg_ws UPDATE TO '1.1';
RESET client_min_messages;
SELECT pg_catalog.has_function_privilege('public', 'pg_ws_sign_token(jsonb, interval)',
                                         'EXECUTE') AS public_may_execute;
\c contrib_regression
DROP DATABASE pg_ws_upgrade;

REVOKE EXECUTE ON FUNCTION pg_ws_sign_token(jsonb, interval) FROM regress_pg_ws_app;
DROP ROLE regress_pg_ws_app;
