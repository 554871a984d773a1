--
-- pg_ws_position(): where a REPEATABLE READ or SERIALIZABLE transaction's
-- snapshot stands in the event stream (test/e2e/test_snapshot.py checks
-- what a subscriber then receives).
--

-- READ COMMITTED: every statement has a snapshot of its own
SELECT pg_ws_position();
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT pg_ws_position();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- an opaque, URL-safe text, in both isolation levels that keep a snapshot
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_ws_position() ~ '^[A-Za-z0-9_-]{44,}$' AS url_safe;
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE;
SELECT pg_ws_position() ~ '^[A-Za-z0-9_-]{44,}$' AS url_safe;
COMMIT;

-- everyone may call it, as pg_current_snapshot(), which shows as much
CREATE ROLE position_reader;
SET ROLE position_reader;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_ws_position() IS NOT NULL AS called;
COMMIT;
RESET ROLE;
DROP ROLE position_reader;

-- in a transaction that has written rows itself (its own events are not
-- queued yet: the subscriber gets them once it commits)
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO client (id, age) VALUES (424242, 1);
SELECT pg_ws_position() IS NOT NULL AS called;
ROLLBACK;

-- only in the database pg_ws broadcasts: elsewhere there are no events to
-- place the snapshot among
CREATE DATABASE pg_ws_position_elsewhere;
\c pg_ws_position_elsewhere
SET client_min_messages = error;
CREATE EXTENSION pg_ws;
RESET client_min_messages;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_ws_position();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
\c contrib_regression
DROP DATABASE pg_ws_position_elsewhere;
