/* pg_ws--1.1--1.2.sql: from 1.1 to 1.2 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.2'" to load this file. \quit

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

-- monitoring (observe): pg_ws_stats has new columns, so the view and the
-- function are made again
DROP VIEW @extschema@.pg_ws_stats;
DROP FUNCTION @extschema@.pg_ws_stats();

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
