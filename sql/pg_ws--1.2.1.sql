/* pg_ws--1.2.1.sql: the tables pg_ws broadcasts, their triggers, and SQL API */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_ws" to load this file. \quit

-- Refuse to install without shared_preload_libraries, and warn when this
-- database is not the one pg_ws.database names.
CREATE FUNCTION @extschema@.pg_ws_check_install() RETURNS void
	AS 'MODULE_PATHNAME', 'pg_ws_check_install' LANGUAGE C;
SELECT @extschema@.pg_ws_check_install();
DROP FUNCTION @extschema@.pg_ws_check_install();

-- The row trigger: renders each changed row as one event of the
-- transaction, sent when (and only if) it commits.
CREATE FUNCTION @extschema@.pg_ws_row_event() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pg_ws_row_event' LANGUAGE C;

-- watched tables (watch)
--
-- Tables pg_ws broadcasts besides its own: a Django app's tables, attached
-- as one of the four kinds, and any table as kind 'row'.  Only
-- pg_ws_watch() writes this catalog and creates the trigger pg_ws_event on
-- a watched table; pg_dump dumps the rows (and the triggers with their
-- tables), so a restored table is still watched.
CREATE TABLE @extschema@.pg_ws_watched (
	relation pg_catalog.regclass PRIMARY KEY,
	kind pg_catalog.text NOT NULL
		CHECK (kind IN ('client', 'visit_history', 'employee', 'attendance', 'row')),
	columns pg_catalog.name[],			-- row: the columns sent (NULL: all)
	visit_table pg_catalog.regclass,	-- client: visit_histories' table
	event_prefix pg_catalog.text		-- row: <prefix>_create ... (NULL: the table's name)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pg_ws_watched', '');
REVOKE ALL ON @extschema@.pg_ws_watched FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_watched TO pg_monitor;

CREATE FUNCTION @extschema@.pg_ws_watch(tbl pg_catalog.regclass,
										kind pg_catalog.text,
										columns pg_catalog.name[] DEFAULT NULL,
										visit_table pg_catalog.regclass DEFAULT NULL,
										event_prefix pg_catalog.text DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pg_ws_watch' LANGUAGE C VOLATILE;
CREATE FUNCTION @extschema@.pg_ws_unwatch(tbl pg_catalog.regclass)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'pg_ws_unwatch' LANGUAGE C STRICT VOLATILE;

-- A Django app's four tables in one call: <app>_client, <app>_visithistory,
-- <app>_employee and <app>_attendance (Django's default db_table names),
-- the visit table first so that the client table finds it.
CREATE FUNCTION @extschema@.pg_ws_watch_django(app_label pg_catalog.text,
											   schema pg_catalog.name DEFAULT pg_catalog.current_schema())
	RETURNS TABLE (watched pg_catalog.regclass, kind pg_catalog.text)
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $body$
DECLARE
	model record;
	missing pg_catalog.text[] := '{}';
	rel pg_catalog.regclass;
BEGIN
	FOR model IN SELECT * FROM (VALUES (1, 'visithistory', 'visit_history'),
									   (2, 'client', 'client'),
									   (3, 'employee', 'employee'),
									   (4, 'attendance', 'attendance')) m (n, model, kind)
				 ORDER BY n
	LOOP
		IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, app_label || '_' || model.model)) IS NULL THEN
			missing := missing || pg_catalog.format('%I.%I', schema, app_label || '_' || model.model);
		END IF;
	END LOOP;
	IF pg_catalog.cardinality(missing) > 0 THEN
		RAISE EXCEPTION 'Django app "%" has no table %', app_label,
			pg_catalog.array_to_string(missing, ', ')
			USING ERRCODE = 'undefined_table',
				  HINT = 'pg_ws_watch_django() watches the tables Django names <app_label>_client, _visithistory, _employee and _attendance; watch tables named otherwise with pg_ws_watch().';
	END IF;
	FOR model IN SELECT * FROM (VALUES (1, 'visithistory', 'visit_history'),
									   (2, 'client', 'client'),
									   (3, 'employee', 'employee'),
									   (4, 'attendance', 'attendance')) m (n, model, kind)
				 ORDER BY n
	LOOP
		rel := pg_catalog.format('%I.%I', schema, app_label || '_' || model.model)::pg_catalog.regclass;
		PERFORM @extschema@.pg_ws_watch(rel, model.kind);
		watched := rel;
		kind := model.kind;
		RETURN NEXT;
	END LOOP;
END
$body$;

REVOKE ALL ON FUNCTION @extschema@.pg_ws_watch(pg_catalog.regclass, pg_catalog.text, pg_catalog.name[], pg_catalog.regclass, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_unwatch(pg_catalog.regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_watch_django(pg_catalog.text, pg_catalog.name) FROM PUBLIC;

-- A dropped table is no longer watched; a client table whose visit table
-- is dropped takes its schema's again.
CREATE FUNCTION @extschema@.pg_ws_forget_dropped() RETURNS event_trigger
	LANGUAGE plpgsql
	-- any role may drop its own watched table; only pg_ws may edit the catalog
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $body$
BEGIN
	-- DROP EXTENSION pg_ws drops the catalog too
	IF pg_catalog.to_regclass('@extschema@.pg_ws_watched') IS NULL THEN
		RETURN;
	END IF;
	DELETE FROM @extschema@.pg_ws_watched w
		USING pg_catalog.pg_event_trigger_dropped_objects() d
		WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		  AND d.objsubid = 0 AND d.objid = w.relation::pg_catalog.oid;
	UPDATE @extschema@.pg_ws_watched w SET visit_table = NULL
		FROM pg_catalog.pg_event_trigger_dropped_objects() d
		WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		  AND d.objsubid = 0 AND d.objid = w.visit_table::pg_catalog.oid;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_forget_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER pg_ws_forget_dropped ON sql_drop
	WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
	EXECUTE FUNCTION @extschema@.pg_ws_forget_dropped();

-- The tables, named and shaped as a Django app names and shapes them.
-- When a table of one of these names exists already (a Django app with
-- db_table set to it), pg_ws watches it instead, after checking its
-- columns (pg_ws_watch() says what is missing).
--
-- Events follow the order rows change: deleting a client sends
-- client_delete, then a client_visit_delete for each visit the foreign key
-- cascade removes.
DO $install$
DECLARE
	client_exists boolean := pg_catalog.to_regclass('@extschema@.client') IS NOT NULL;
BEGIN
IF NOT client_exists THEN
	CREATE TABLE @extschema@.client (
		id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		first_seen timestamptz,
		last_seen timestamptz,
		visit_count integer NOT NULL DEFAULT 0,
		gender text,
		age integer,
		image text
	);
	-- pg_dump keeps its rows and its identity counter
	PERFORM pg_catalog.pg_extension_config_dump('@extschema@.client', '');
	PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.client', 'id')::pg_catalog.regclass, '');
	CREATE TRIGGER pg_ws_event
		AFTER INSERT OR UPDATE OR DELETE ON @extschema@.client
		FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_ws_row_event('client');
END IF;

IF pg_catalog.to_regclass('@extschema@.visit_history') IS NULL THEN
	CREATE TABLE @extschema@.visit_history (
		id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		client_id bigint NOT NULL
			REFERENCES @extschema@.client (id) ON DELETE CASCADE,
		datetime timestamptz NOT NULL DEFAULT now(),
		device_id text NOT NULL
	);
	-- serves client events' visit_histories and the cascade from client
	CREATE INDEX visit_history_client_id_idx
		ON @extschema@.visit_history (client_id, datetime, id);
	PERFORM pg_catalog.pg_extension_config_dump('@extschema@.visit_history', '');
	PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.visit_history', 'id')::pg_catalog.regclass, '');
	CREATE TRIGGER pg_ws_event
		AFTER INSERT OR UPDATE OR DELETE ON @extschema@.visit_history
		FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_ws_row_event('visit_history');
ELSE
	PERFORM @extschema@.pg_ws_watch('@extschema@.visit_history', 'visit_history');
END IF;

-- after visit_history, whose watch it reads visits from
IF client_exists THEN
	PERFORM @extschema@.pg_ws_watch('@extschema@.client', 'client');
END IF;

IF pg_catalog.to_regclass('@extschema@.employee') IS NULL THEN
	CREATE TABLE @extschema@.employee (
		id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		first_name text NOT NULL,
		last_name text NOT NULL,
		email text,
		phone_number text,
		image text,
		working_graphic_id bigint
	);
	PERFORM pg_catalog.pg_extension_config_dump('@extschema@.employee', '');
	PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.employee', 'id')::pg_catalog.regclass, '');
	CREATE TRIGGER pg_ws_event
		AFTER INSERT OR UPDATE OR DELETE ON @extschema@.employee
		FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_ws_row_event('employee');
ELSE
	PERFORM @extschema@.pg_ws_watch('@extschema@.employee', 'employee');
END IF;

IF pg_catalog.to_regclass('@extschema@.attendance') IS NULL THEN
	CREATE TABLE @extschema@.attendance (
		id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		employee_id bigint NOT NULL
			REFERENCES @extschema@.employee (id) ON DELETE CASCADE,
		device_id text NOT NULL,
		image text,
		datetime timestamptz NOT NULL DEFAULT now(),
		score double precision
	);
	CREATE INDEX attendance_employee_id_idx
		ON @extschema@.attendance (employee_id);
	PERFORM pg_catalog.pg_extension_config_dump('@extschema@.attendance', '');
	PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.attendance', 'id')::pg_catalog.regclass, '');
	-- attendance updates are not announced by the event document
	CREATE TRIGGER pg_ws_event
		AFTER INSERT OR DELETE ON @extschema@.attendance
		FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_ws_row_event('attendance');
ELSE
	PERFORM @extschema@.pg_ws_watch('@extschema@.attendance', 'attendance');
END IF;
END
$install$;

-- The events the current transaction has queued so far, exactly as they
-- will be sent if it commits.
CREATE FUNCTION @extschema@.pg_ws_pending_events() RETURNS SETOF text
	AS 'MODULE_PATHNAME', 'pg_ws_pending_events'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- privileges (db)
--
-- Only the extension's own triggers may call pg_ws_row_event(): CREATE
-- TRIGGER needs EXECUTE on it, firing a trigger does not, so every role
-- allowed to write the tables still produces events.  The function also
-- refuses to run on any table but the extension's own of its kind and
-- those pg_ws_watch() attached it to as that kind.
REVOKE ALL ON FUNCTION @extschema@.pg_ws_row_event() FROM PUBLIC;

-- The pending events show rendered rows, visit_histories included, which
-- are read with the table owner's rights: for monitoring roles only.
REVOKE ALL ON FUNCTION @extschema@.pg_ws_pending_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_pending_events() TO pg_monitor;

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

-- custom events (send)
--
-- An event the application names, queued in the current transaction and
-- sent at commit in order with its row events: {"event": event, "data":
-- data}.  A NULL data is sent as null.  Every subscriber trusts what it is
-- sent, so nobody may send until a superuser grants EXECUTE to the
-- application's role.
CREATE FUNCTION @extschema@.pg_ws_send(event pg_catalog.text,
									   data pg_catalog.jsonb DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pg_ws_send'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_send(pg_catalog.text, pg_catalog.jsonb)
	FROM PUBLIC;

-- monitoring (observe): pg_ws_stats, pg_ws_connections, pg_ws_disconnect
--
-- What pg_ws is doing, one row: the worker, its connections, the queue,
-- what was sent, refused and dropped, and where subscribers can resume.
CREATE FUNCTION @extschema@.pg_ws_stats(
	OUT worker_pid integer,
	OUT worker_started pg_catalog.timestamptz,
	OUT worker_memory_bytes bigint,
	OUT connections integer,
	OUT subscribers integer,
	OUT connections_total bigint,
	OUT queue_bytes_used bigint,
	OUT queue_bytes_capacity bigint,
	OUT writers_waiting integer,
	OUT oldest_unsent_age pg_catalog.interval,
	OUT events_queued bigint,
	OUT events_sent bigint,
	OUT messages_sent bigint,
	OUT bytes_sent bigint,
	OUT refusals pg_catalog.jsonb,
	OUT drops pg_catalog.jsonb,
	OUT ignored_records pg_catalog.jsonb,
	OUT history_first_position bigint,
	OUT history_last_position bigint,
	OUT history_in_wal boolean)
	RETURNS record
	AS 'MODULE_PATHNAME', 'pg_ws_stats'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.pg_ws_stats AS
	SELECT * FROM @extschema@.pg_ws_stats();

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
	OUT messages_sent bigint,
	OUT bytes_sent bigint,
	OUT bytes_pending bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'pg_ws_connections'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW @extschema@.pg_ws_connections AS
	SELECT * FROM @extschema@.pg_ws_connections();

-- Close one connection (a subscriber gets close code 1008 first); true
-- when a connection with that id existed.
CREATE FUNCTION @extschema@.pg_ws_disconnect(id bigint)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'pg_ws_disconnect'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- for superusers and pg_monitor members only, as PostgreSQL's own
-- monitoring functions
REVOKE ALL ON FUNCTION @extschema@.pg_ws_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_stats() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_stats FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_stats TO pg_monitor;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_connections() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_connections() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_connections FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_connections TO pg_monitor;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_disconnect(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_disconnect(bigint) TO pg_monitor;
