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

-- more timestamps: before 1970, the first and last that PostgreSQL takes,
-- and microseconds that need leading zeros
BEGIN;
INSERT INTO client (id, first_seen, last_seen) VALUES
    (1, '1969-12-31 23:59:59.999999+00', '1970-01-01 00:00:00.000001+00'),
    (2, '1900-02-28 12:34:56.00001+00', '1899-12-31 23:59:59+00'),
    (3, '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00'),
    (4, '0001-01-01 00:00:00.5+00 BC', '10000-01-01 00:00:00.1+00');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- every control character class escape_json knows, DEL (sent as is),
-- quotes and backslashes next to each other, and non-ASCII in
-- visit_histories
BEGIN;
INSERT INTO client (id, gender) VALUES (1, E'\b\f\n\r\t\x01\x1b\x1f\x7f"\\/""\\\\ end');
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (1, 1, '2023-12-10 10:00:00+00', E'\x1f'),
    (2, 1, '2023-12-10 10:00:01.5+00', 'ünï ✓ 😀'),
    (3, 1, '2023-12-10 10:00:02+00', '');
UPDATE client SET age = 1 WHERE id = 1;
SELECT * FROM pg_ws_pending_events() OFFSET 4;
ROLLBACK;

-- columns of other types than CREATE EXTENSION made: char(n) keeps its
-- padding, varchar, a domain over text, smallint and integer bounds,
-- numeric and real scores, a NULL visit, timestamp without time zone
CREATE DOMAIN regress_text AS text;
BEGIN;
ALTER TABLE visit_history ALTER device_id TYPE char(6),
    ALTER datetime DROP NOT NULL, ALTER device_id DROP NOT NULL;
ALTER TABLE client ALTER gender TYPE varchar(20), ALTER age TYPE smallint;
ALTER TABLE employee ALTER first_name TYPE regress_text,
    ALTER last_name TYPE char(8), ALTER image TYPE varchar;
ALTER TABLE attendance ALTER score TYPE numeric,
    ALTER device_id TYPE integer USING 0;
INSERT INTO client (id, gender, age) VALUES (1, 'm ü  ', -32768), (2, NULL, 32767);
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (1, 1, '2020-01-01 00:00:00+00', 'ab '),
    (2, 1, '2020-01-02 00:00:00+00', 'ü'),
    (3, 1, NULL, NULL);
UPDATE client SET age = 1 WHERE id = 1;
INSERT INTO employee (id, first_name, last_name, image) VALUES
    (1, 'é "x"', 'x', 'p/q r.jpg');
INSERT INTO attendance (id, employee_id, device_id, datetime, score) VALUES
    (1, 1, 2147483647, '2020-01-01 00:00:00+00', 1.50),
    (2, 1, -2147483648, '2020-01-01 00:00:00+00', 'NaN'),
    (3, 1, 0, '2020-01-01 00:00:00+00', 123456789.000000001);
ALTER TABLE attendance ALTER score TYPE real;
INSERT INTO attendance (id, employee_id, device_id, datetime, score) VALUES
    (4, 1, 8, '2020-01-01 00:00:00+00', 0.1),
    (5, 1, 9, '2020-01-01 00:00:00+00', 'Infinity');
ALTER TABLE visit_history ALTER datetime TYPE timestamp;
INSERT INTO visit_history (id, client_id, datetime, device_id) VALUES
    (4, 1, '1999-01-01 01:02:03.4', 'z');
UPDATE client SET age = 2 WHERE id = 1;
SELECT * FROM pg_ws_pending_events();
ROLLBACK;
DROP DOMAIN regress_text;

-- a column dropped and added back (in one command: pg_ws refuses to let
-- its own tables lose a column) moves: events find it where it is now
BEGIN;
INSERT INTO employee (id, first_name, last_name, email) VALUES (1, 'a', 'b', 'old');
ALTER TABLE employee DROP COLUMN email, ADD COLUMN email text;
DELETE FROM employee WHERE id = 1;
INSERT INTO employee (id, first_name, last_name, email) VALUES (2, 'a', 'b', 'moved');
SELECT * FROM pg_ws_pending_events();
ROLLBACK;

-- a column pg_ws needs cannot be dropped (more in watch_columns)
ALTER TABLE employee DROP COLUMN phone_number;
