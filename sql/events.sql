--
-- The eleven events of the event document, byte for byte, as queued by the
-- current transaction (pg_ws_pending_events) before it commits.
--

-- client: create, update (with its visits, oldest first), delete
BEGIN;
INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age, image)
VALUES (1, '2023-12-10 10:00:00+00', '2023-12-10 15:00:00+00', 5, 'male', 30,
        'client_images/image.jpg');
SELECT * FROM pg_ws_pending_events();
COMMIT;

BEGIN;
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (1, 1, '2023-12-10 12:00:00+00', 'XYZ789'),
    (2, 1, '2023-12-10 10:30:00+00', '1');
UPDATE client SET visit_count = visit_count + 1 WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- visit_history: update and delete
BEGIN;
UPDATE visit_history SET device_id = 'ABC' WHERE id = 1;
DELETE FROM visit_history WHERE id = 2;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- deleting a client: client_delete, then the cascade's visit deletes
BEGIN;
DELETE FROM client WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- employee: create, update, delete
BEGIN;
INSERT INTO employee (id, first_name, last_name, email, phone_number, image, working_graphic_id)
VALUES (1, 'John', 'Doe', 'john.doe@example.com', '1234567890',
        'http://example.com/media/employee_images/john_doe.jpg', 2);
UPDATE employee SET phone_number = NULL, working_graphic_id = NULL WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- attendance: create and delete; updates are not announced
BEGIN;
INSERT INTO attendance (id, employee_id, device_id, image, datetime, score)
VALUES (1, 1, '123ABC', 'attendance_images/attendance.jpg', '2023-12-10 08:00:00+00', 95);
UPDATE attendance SET score = 96 WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
DELETE FROM attendance WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- deleting an employee cascades to its attendance
BEGIN;
INSERT INTO attendance (id, employee_id, device_id, datetime, score)
VALUES (2, 1, '123ABC', '2023-12-11 08:00:00+00', 99.5);
DELETE FROM employee WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- one event per row, in the order the rows changed, across statements
BEGIN;
INSERT INTO client (id, gender) SELECT g, 'female' FROM generate_series(10, 12) g;
DELETE FROM client WHERE id = 11;
UPDATE client SET age = 20 WHERE id IN (10, 12);
SELECT * FROM pg_ws_pending_events();
COMMIT;

-- a transaction that changes nothing queues nothing
BEGIN;
UPDATE client SET age = 1 WHERE id = -1;
SELECT count(*) FROM pg_ws_pending_events();
COMMIT;

-- TRUNCATE is not a row change and sends nothing
BEGIN;
TRUNCATE client CASCADE;
SELECT count(*) FROM pg_ws_pending_events();
COMMIT;

-- outside a transaction block there is nothing pending
SELECT count(*) FROM pg_ws_pending_events();
