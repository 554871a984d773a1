--
-- How values are written: timestamps, numbers, strings, NULL and images.
--
TRUNCATE client, employee CASCADE;

-- timestamps are UTC whatever the session's time zone, with six fraction
-- digits only when there are microseconds
SET timezone = 'Asia/Kolkata';
SET datestyle = 'German';
BEGIN;
INSERT INTO client (id, first_seen, last_seen) VALUES
    (1, '2023-12-10 15:30:00+05:30', '2023-12-10 10:00:00.25+00'),
    (2, '2023-12-10 10:00:00.000001+00', '2023-12-10 10:00:00.123456+00'),
    (3, '0001-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00'),
    (4, '0001-12-31 23:59:59+00 BC', '12345-01-01 00:00:00+00'),
    (7, '0002-06-01 00:00:00+00 BC', '2023-06-01 12:00:00+02'),
    (5, 'infinity', '-infinity'),
    (6, NULL, NULL);
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
RESET timezone;
RESET datestyle;

-- score: PostgreSQL's shortest float8 form whatever extra_float_digits is;
-- JSON has no NaN or Infinity, so those are null
SET extra_float_digits = -3;
BEGIN;
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'a', 'b');
INSERT INTO attendance (id, employee_id, device_id, datetime, score) VALUES
    (1, 1, 'd', '2023-12-10 08:00:00+00', 95),
    (2, 1, 'd', '2023-12-10 08:00:00+00', 95.5),
    (3, 1, 'd', '2023-12-10 08:00:00+00', 0.1),
    (4, 1, 'd', '2023-12-10 08:00:00+00', 1e100),
    (5, 1, 'd', '2023-12-10 08:00:00+00', -1.5e-7),
    (6, 1, 'd', '2023-12-10 08:00:00+00', 'NaN'),
    (7, 1, 'd', '2023-12-10 08:00:00+00', 'Infinity'),
    (8, 1, 'd', '2023-12-10 08:00:00+00', NULL);
SELECT * FROM pg_ws_pending_events() OFFSET 1;
ROLLBACK;
RESET extra_float_digits;

-- device_id is always a string; text is escaped as JSON; NULL is null
BEGIN;
INSERT INTO client (id) VALUES (1);
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (1, 1, '2023-12-10 10:00:00+00', '007'),
    (2, 1, '2023-12-10 10:00:00+00', '42'),
    (3, 1, '2023-12-10 10:00:00+00', 'quote " backslash \ slash /'),
    (4, 1, '2023-12-10 10:00:00+00', E'tab\tnewline\ncontrol\x01'),
    (5, 1, '2023-12-10 10:00:00+00', 'ünïcödé ✓ 😀'),
    (6, 1, '2023-12-10 10:00:00+00', '');
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'Zoë', 'O''Brien "The Hat"');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- images: a stored path is appended to pg_ws.media_url (percent-encoded,
-- as Django's storage does); http(s) URLs are sent as stored; NULL and ''
-- are null; other URIs (such as an inline data: photo) are never sent
BEGIN;
INSERT INTO client (id, image) VALUES
    (1, 'client_images/image.jpg'),
    (2, 'https://cdn.example.com/client_images/a.jpg'),
    (3, 'HTTP://EXAMPLE.COM/A.JPG'),
    (4, NULL),
    (5, ''),
    (6, 'client_images/my photo (1).jpg'),
    (7, '/client_images/leading-slash.jpg'),
    (8, 'client_images\windows.jpg'),
    (9, 'client_images/çà?#&%.jpg'),
    (10, 'data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ=='),
    (11, 'file:///etc/passwd'),
    (12, 'ftp://example.com/x.jpg');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

SET pg_ws.media_url = 'https://example.com/media/';
BEGIN;
INSERT INTO employee (id, first_name, last_name, image) VALUES
    (1, 'a', 'b', 'employee_images/john_doe.jpg');
INSERT INTO attendance (id, employee_id, device_id, image, datetime) VALUES
    (1, 1, '123ABC', 'attendance_images/attendance.jpg', '2023-12-10 08:00:00+00');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
SET pg_ws.media_url = '';
BEGIN;
INSERT INTO client (id, image) VALUES (1, 'client_images/image.jpg');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
RESET pg_ws.media_url;

-- visit_histories: oldest first, ties in insertion order, as of the
-- statement, and readable by a role that may write clients but not read
-- visits
CREATE ROLE ws_writer;
GRANT SELECT, UPDATE ON client TO ws_writer;
BEGIN;
INSERT INTO client (id) VALUES (1), (2);
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (1, 1, '2023-12-10 12:00:00+00', 'late'),
    (2, 1, '2023-12-10 09:00:00+00', 'early'),
    (3, 1, '2023-12-10 09:00:00+00', 'tie'),
    (4, 2, '2023-12-10 09:00:00+00', 'other client');
WITH moved AS (
    UPDATE visit_history SET datetime = '2023-12-10 08:00:00+00' WHERE id = 1
)
UPDATE client SET visit_count = 3 WHERE id = 1;
SELECT * FROM pg_ws_pending_events() OFFSET 6;
SET ROLE ws_writer;
SAVEPOINT s;
SELECT count(*) FROM visit_history;
ROLLBACK TO SAVEPOINT s;
UPDATE client SET visit_count = 4 WHERE id = 1;
RESET ROLE;
SELECT * FROM pg_ws_pending_events() OFFSET 8;
ROLLBACK;
DROP ROLE ws_writer;

-- a column pg_ws needs has been dropped: a clear error, and no write
BEGIN;
ALTER TABLE employee DROP COLUMN phone_number;
INSERT INTO employee (id, first_name, last_name) VALUES (1, 'a', 'b');
ROLLBACK;
