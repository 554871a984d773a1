--
-- Only what commits is sent: savepoints, rollbacks, caught exceptions and
-- failed statements drop exactly their own events.
--
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'kept', 'one');
SAVEPOINT a;
INSERT INTO employee (id, first_name, last_name) VALUES (2, 'rolled', 'back');
SAVEPOINT b;
INSERT INTO employee (id, first_name, last_name) VALUES (3, 'rolled', 'back');
ROLLBACK TO SAVEPOINT a;
INSERT INTO employee (id, first_name, last_name) VALUES (4, 'kept', 'two');
SAVEPOINT c;
INSERT INTO employee (id, first_name, last_name) VALUES (5, 'released', 'three');
SAVEPOINT d;
INSERT INTO employee (id, first_name, last_name) VALUES (6, 'released', 'four');
RELEASE SAVEPOINT c;
SAVEPOINT e;
INSERT INTO employee (id, first_name, last_name) VALUES (7, 'rolled', 'back');
ROLLBACK TO SAVEPOINT e;
SELECT * FROM pg_ws_pending_events();
-- a rolled-back savepoint can be used again, and queue again
INSERT INTO employee (id, first_name, last_name) VALUES (8, 'kept', 'five');
ROLLBACK TO SAVEPOINT e;
INSERT INTO employee (id, first_name, last_name) VALUES (9, 'kept', 'six');
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- savepoints whose parents queued nothing
BEGIN;
SAVEPOINT a;
SAVEPOINT b;
INSERT INTO employee (id, first_name, last_name) VALUES (10, 'deep', 'kept');
RELEASE SAVEPOINT b;
SAVEPOINT c;
INSERT INTO employee (id, first_name, last_name) VALUES (11, 'deep', 'dropped');
ROLLBACK TO SAVEPOINT c;
RELEASE SAVEPOINT a;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a rolled-back transaction queues nothing for the next one
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (12, 'never', 'sent');
ROLLBACK;
BEGIN;
SELECT count(*) FROM pg_ws_pending_events();
COMMIT;

-- an exception caught in PL/pgSQL drops the block's events only
BEGIN;
DO $$
BEGIN
    INSERT INTO employee (id, first_name, last_name) VALUES (13, 'before', 'block');
    BEGIN
        INSERT INTO employee (id, first_name, last_name) VALUES (14, 'in', 'block');
        INSERT INTO employee (id, first_name, last_name) VALUES (1, 'duplicate', 'key');
    EXCEPTION WHEN unique_violation THEN
        INSERT INTO employee (id, first_name, last_name) VALUES (15, 'in', 'handler');
    END;
END
$$;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- a failing statement aborts the transaction and all its events
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (16, 'doomed', 'one');
INSERT INTO employee (id, first_name, last_name) VALUES (17, 'doomed', 'two'), (1, 'dup', 'key');
COMMIT;
-- a failing statement in a savepoint drops only its own rows' events
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (18, 'kept', 'seven');
SAVEPOINT s;
INSERT INTO employee (id, first_name, last_name) VALUES (19, 'gone', 'one'), (1, 'dup', 'key');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- a deferred constraint that fails at commit: nothing is sent
CREATE TABLE deferred_check (id int REFERENCES employee (id) DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (20, 'deferred', 'doom');
INSERT INTO deferred_check VALUES (-1);
COMMIT;
DROP TABLE deferred_check;
SELECT id FROM employee ORDER BY id;

-- PREPARE TRANSACTION is refused while events are pending, as NOTIFY does
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (21, 'two', 'phase');
PREPARE TRANSACTION 'pg_ws_2pc';
SELECT count(*) FROM employee WHERE id = 21;
-- and allowed when a transaction queued nothing
BEGIN;
UPDATE employee SET email = NULL WHERE id = -1;
PREPARE TRANSACTION 'pg_ws_2pc_empty';
COMMIT PREPARED 'pg_ws_2pc_empty';
