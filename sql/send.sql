--
-- pg_ws_send(event, data): custom events, queued in the transaction like
-- row events, under names of their own, by roles granted EXECUTE.
--
TRUNCATE client, employee CASCADE;

-- names: a lower-case letter, then lower-case letters, digits and
-- underscores, at most 63 bytes
SELECT pg_ws_send('', '{}');
SELECT pg_ws_send(repeat('a', 64), '{}');
SELECT pg_ws_send('Order_paid', '{}');
SELECT pg_ws_send('9lives', '{}');
SELECT pg_ws_send('_order', '{}');
SELECT pg_ws_send('order-paid', '{}');
SELECT pg_ws_send('order paid', '{}');
SELECT pg_ws_send('order_paid*', '{}');
SELECT pg_ws_send('caf' || chr(233), '{}');
SELECT pg_ws_send(NULL, '{}');
-- the document's eleven cannot be forged, nor pg_ws's own messages sent
SELECT pg_ws_send('client_create', '{"id": 1}');
SELECT pg_ws_send('employee_attendance_delete', '{}');
SELECT pg_ws_send('resync_required', '{}');
SELECT pg_ws_send('pg_ws', '{}');
SELECT pg_ws_send('pg_ws_ping', '{}');
SELECT pg_ws_send('pg_wsx', '{}');
-- nothing was queued by the refused calls
BEGIN;
SELECT pg_ws_send('', '{}');
ROLLBACK;

-- what is accepted, rendered as the row events are: ", " and ": ", and
-- every non-ASCII character as \uXXXX (a surrogate pair above U+FFFF)
BEGIN;
SELECT pg_ws_send('order_paid', '{"order": 7, "total": 12.50, "items": [1, 2], "paid": true}');
SELECT pg_ws_send(repeat('a', 63), '{}');
SELECT pg_ws_send('client_created_note', '"a string"');
SELECT pg_ws_send('pgws_is_not_reserved', '[]');
SELECT pg_ws_send('b2', '42');
SELECT pg_ws_send('quotes', E'{"say": "\\"hi\\"\\n\\ttab\\\\ \\u0001"}');
SELECT pg_ws_send('accents', jsonb_build_object('name', 'Zo' || chr(235), 'emoji', chr(128512)));
-- data NULL (or left out) is sent as null; a JSON null as null too
SELECT pg_ws_send('no_data', NULL);
SELECT pg_ws_send('no_data');
SELECT pg_ws_send('no_data', 'null');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- in order with the row events of the same transaction; a rolled-back
-- savepoint and a caught exception drop exactly their own
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'a', 'b');
SELECT pg_ws_send('step', '{"n": 1}');
SAVEPOINT s;
SELECT pg_ws_send('step', '{"n": 2}');
INSERT INTO employee (id, first_name, last_name) VALUES (2, 'c', 'd');
ROLLBACK TO SAVEPOINT s;
SELECT pg_ws_send('step', '{"n": 3}');
SAVEPOINT t;
SELECT pg_ws_send('step', '{"n": 4}');
RELEASE SAVEPOINT t;
DO $$
BEGIN
	PERFORM pg_ws_send('step', '{"n": 5}');
	BEGIN
		PERFORM pg_ws_send('step', '{"n": 6}');
		RAISE EXCEPTION 'caught';
	EXCEPTION WHEN raise_exception THEN NULL;
	END;
END $$;
DELETE FROM employee WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
-- and a rollback drops them all
SELECT count(*) AS pending_after_rollback FROM pg_ws_pending_events();

-- a transaction that sent an event cannot be prepared, as with row events
BEGIN;
SELECT pg_ws_send('prepared', '{}');
PREPARE TRANSACTION 'pg_ws_send';

-- not in a read-only transaction: the event is written to the WAL
BEGIN READ ONLY;
SELECT pg_ws_send('read_only', '{}');
ROLLBACK;

-- sizes: an event larger than the whole queue (pg_ws.queue_size = 64kB
-- here) fails at once, saying so; events that fit one by one but not
-- together fail in the call that overflows the transaction
SELECT pg_ws_send('too_big', jsonb_build_object('blob', repeat('x', 70000)));
BEGIN;
SELECT pg_ws_send('big', jsonb_build_object('blob', repeat('x', 30000)));
SELECT pg_ws_send('big', jsonb_build_object('blob', repeat('x', 30000)));
SELECT pg_ws_send('big', jsonb_build_object('blob', repeat('x', 30000)));
ROLLBACK;

-- privileges: nobody may send until granted EXECUTE
CREATE ROLE regress_pg_ws_app;
SELECT has_function_privilege('public', 'pg_ws_send(text, jsonb)', 'EXECUTE')
	AS public_may_send;
SET ROLE regress_pg_ws_app;
SELECT pg_ws_send('order_paid', '{}');
RESET ROLE;
GRANT EXECUTE ON FUNCTION pg_ws_send(text, jsonb) TO regress_pg_ws_app;
BEGIN;
SET LOCAL ROLE regress_pg_ws_app;
SELECT pg_ws_send('order_paid', '{"by": "app"}');
RESET ROLE;
SELECT * FROM pg_ws_pending_events();
COMMIT;
REVOKE EXECUTE ON FUNCTION pg_ws_send(text, jsonb) FROM regress_pg_ws_app;
DROP ROLE regress_pg_ws_app;

-- only in pg_ws.database: elsewhere an explicit call is an error, not
-- an event lost without a word
CREATE DATABASE regress_pg_ws_elsewhere;
\c regress_pg_ws_elsewhere
SET client_min_messages = error;
CREATE EXTENSION pg_ws;
RESET client_min_messages;
SELECT pg_ws_send('order_paid', '{}');
\c contrib_regression
DROP DATABASE regress_pg_ws_elsewhere;

-- nor the events of a watched 'row' table: subscribers trust them to be
-- its rows' changes
CREATE TABLE invoice (id integer PRIMARY KEY);
CREATE TABLE shipment (id integer PRIMARY KEY);
SELECT pg_ws_watch('invoice', 'row');
SELECT pg_ws_watch('shipment', 'row', event_prefix => 'parcel');
SELECT pg_ws_send('invoice_create', '{"id": 1}');
SELECT pg_ws_send('parcel_delete', '{"id": 1}');
BEGIN;
SELECT pg_ws_send('shipment_create', '{"id": 1}');   -- not its events' name
SELECT pg_ws_send('invoice_created', '{}');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
DROP TABLE invoice, shipment;
SELECT pg_ws_send('invoice_create', '{"id": 1}');     -- no longer watched
