/* pg_ws--1.4.0.sql: the tables pg_ws broadcasts, their triggers, and SQL API */

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

-- While a restore loads the rows of pg_ws's own tables that reference
-- another (visit_history, attendance), their foreign keys are not checked
-- (render.c): pg_restore --jobs loads the data of an extension's tables in
-- any order.  BEFORE and AFTER INSERT FOR EACH STATEMENT, ENABLE ALWAYS.
CREATE FUNCTION @extschema@.pg_ws_restore_statement() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pg_ws_restore_statement' LANGUAGE C;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_restore_statement() FROM PUBLIC;

-- watched tables (watch)
--
-- Tables pg_ws broadcasts besides its own: a Django app's tables, attached
-- as one of the four kinds, and any table as kind 'row'.  Only
-- pg_ws_watch() writes this catalog and creates the trigger pg_ws_event on
-- a watched table; pg_dump dumps the rows (and the triggers with their
-- tables, their ENABLE ALWAYS included), so a restored table is still
-- watched as it was.
--
-- A 'row' table's event names are fixed when it is watched: event_prefix
-- is always stored, the table's name at that moment unless one was given,
-- so that renaming the table changes nothing subscribers see.  The check
-- is the rules for event names (eventname.c) applied to <prefix>_create,
-- _update and _delete; watch.c checks them again when it loads a watch.
--
-- filter_columns (1.3.1) names columns that travel with every event of
-- the table for ?filter= and a token's filters, never sent to subscribers
-- (render.c writes them after a tab, as the row beside a delete).  A dump
-- of 1.3.0 names the columns it has, so its rows restore with none.
CREATE TABLE @extschema@.pg_ws_watched (
	relation pg_catalog.regclass PRIMARY KEY,
	kind pg_catalog.text NOT NULL
		CHECK (kind IN ('client', 'visit_history', 'employee', 'attendance', 'row')),
	columns pg_catalog.name[],			-- row: the columns sent (NULL: all)
	visit_table pg_catalog.regclass,	-- client: visit_histories' table
	event_prefix pg_catalog.text,		-- row: <prefix>_create ...
	replicated boolean NOT NULL DEFAULT false,	-- broadcast replicated rows too
	filter_columns pg_catalog.name[],	-- travel with the events for ?filter=
	CONSTRAINT pg_ws_watched_event_prefix_check CHECK (
		CASE WHEN kind = 'row'
			 THEN event_prefix IS NOT NULL
				  AND event_prefix ~ '^[a-z][a-z0-9_]{0,55}$'
				  AND event_prefix NOT IN ('client', 'client_visit', 'employee', 'employee_attendance')
				  AND event_prefix !~ '^pg_ws'
			 ELSE event_prefix IS NULL END)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pg_ws_watched', '');
REVOKE ALL ON @extschema@.pg_ws_watched FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_watched TO pg_monitor;

-- A row without an event_prefix (a dump made by pg_ws 1.2 or older, which
-- stored none for a table watched under its own name) takes the table's
-- name as it is when the row is restored.
CREATE FUNCTION @extschema@.pg_ws_watched_fill_prefix() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $body$
BEGIN
	IF NEW.kind = 'row' AND NEW.event_prefix IS NULL THEN
		NEW.event_prefix := (SELECT c.relname FROM pg_catalog.pg_class c
							 WHERE c.oid = NEW.relation::pg_catalog.oid);
	END IF;
	RETURN NEW;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_watched_fill_prefix() FROM PUBLIC;
CREATE TRIGGER pg_ws_fill_prefix
	BEFORE INSERT OR UPDATE ON @extschema@.pg_ws_watched
	FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_ws_watched_fill_prefix();

-- Whether the replicated rows of pg_ws's own four tables are broadcast
-- too, as pg_ws_watch(..., replicated => ...) on one of them set it (no
-- row: they are not).  pg_dump does not dump the triggers of an
-- extension's tables, so this catalog keeps the choice: its rows are
-- dumped, and its trigger sets pg_ws_event's firing from them whenever
-- they are written, pg_restore's COPY included.
CREATE TABLE @extschema@.pg_ws_own_tables (
	relation pg_catalog.regclass PRIMARY KEY,
	replicated boolean NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pg_ws_own_tables', '');
REVOKE ALL ON @extschema@.pg_ws_own_tables FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_own_tables TO pg_monitor;

CREATE FUNCTION @extschema@.pg_ws_own_tables_apply() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $body$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE TRIGGER pg_ws_event', OLD.relation);
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
					   JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
					   WHERE e.extname = 'pg_ws' AND d.deptype = 'e'
						 AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
						 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
						 AND d.objid = NEW.relation::pg_catalog.oid) THEN
			RAISE EXCEPTION 'table "%" is not one of pg_ws''s own tables', NEW.relation
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Watch it with pg_ws_watch(), which records it in pg_ws_watched.';
		END IF;
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE %s TRIGGER pg_ws_event',
								  NEW.relation, CASE WHEN NEW.replicated THEN 'ALWAYS' ELSE '' END);
	END IF;
	RETURN NULL;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_own_tables_apply() FROM PUBLIC;
CREATE TRIGGER pg_ws_apply
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.pg_ws_own_tables
	FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_ws_own_tables_apply();

-- replicated: also broadcast the rows logical replication (or anything
-- else running with session_replication_role = replica) writes, by making
-- the table's trigger ENABLE ALWAYS; without it, as every trigger, only
-- ordinary writes.  filter_columns: columns that travel with every event
-- of the table for ?filter= and a token's filters only, never sent.
CREATE FUNCTION @extschema@.pg_ws_watch(tbl pg_catalog.regclass,
										kind pg_catalog.text,
										columns pg_catalog.name[] DEFAULT NULL,
										visit_table pg_catalog.regclass DEFAULT NULL,
										event_prefix pg_catalog.text DEFAULT NULL,
										replicated boolean DEFAULT false,
										filter_columns pg_catalog.name[] DEFAULT NULL)
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

REVOKE ALL ON FUNCTION @extschema@.pg_ws_watch(pg_catalog.regclass, pg_catalog.text, pg_catalog.name[], pg_catalog.regclass, pg_catalog.text, boolean, pg_catalog.name[]) FROM PUBLIC;
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
	CREATE TRIGGER pg_ws_restore_start
		BEFORE INSERT ON @extschema@.visit_history
		FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pg_ws_restore_statement();
	CREATE TRIGGER pg_ws_restore_end
		AFTER INSERT ON @extschema@.visit_history
		FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pg_ws_restore_statement();
	ALTER TABLE @extschema@.visit_history ENABLE ALWAYS TRIGGER pg_ws_restore_start,
		ENABLE ALWAYS TRIGGER pg_ws_restore_end;
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
	CREATE TRIGGER pg_ws_restore_start
		BEFORE INSERT ON @extschema@.attendance
		FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pg_ws_restore_statement();
	CREATE TRIGGER pg_ws_restore_end
		AFTER INSERT ON @extschema@.attendance
		FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pg_ws_restore_statement();
	ALTER TABLE @extschema@.attendance ENABLE ALWAYS TRIGGER pg_ws_restore_start,
		ENABLE ALWAYS TRIGGER pg_ws_restore_end;
ELSE
	PERFORM @extschema@.pg_ws_watch('@extschema@.attendance', 'attendance');
END IF;
END
$install$;

-- whether each broadcast table's trigger fires (watch)
--
-- One row per table pg_ws broadcasts, its own and the watched ones: the
-- events it makes, how its trigger pg_ws_event is enabled, whether that
-- fires for ordinary writes and for replicated rows (session_replication_role
-- = replica, as logical replication applies them), and what is wrong, if
-- anything.  A trigger is pg_ws's when it calls pg_ws_row_event() with the
-- table's kind, AFTER INSERT OR UPDATE OR DELETE (attendance: INSERT OR
-- DELETE) FOR EACH ROW, with no WHEN, no column list and no constraint; a
-- partitioned table's partitions must all have theirs, enabled alike.
CREATE VIEW @extschema@.pg_ws_watch_status AS
WITH broadcast AS (
	-- pg_ws's own tables: the extension's tables but its two catalogs;
	-- their kind is their trigger's, which CREATE EXTENSION made
	SELECT c.oid::pg_catalog.regclass AS relation,
		   COALESCE((SELECT pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), E'\\000', 1)
					 FROM pg_catalog.pg_trigger t
					 WHERE t.tgrelid = c.oid AND t.tgname = 'pg_ws_event' AND t.tgnargs = 1
					   AND t.tgfoid = '@extschema@.pg_ws_row_event()'::pg_catalog.regprocedure),
					c.relname::pg_catalog.text) AS kind,
		   true AS own,
		   NULL::pg_catalog.text AS event_prefix,
		   COALESCE(o.replicated, false) AS replicated
	FROM pg_catalog.pg_depend d
	JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_ws'
	JOIN pg_catalog.pg_class c ON c.oid = d.objid
	LEFT JOIN @extschema@.pg_ws_own_tables o ON o.relation::pg_catalog.oid = c.oid
	WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	  AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
	  AND d.deptype = 'e' AND c.relkind = 'r'
	  AND c.oid NOT IN ('@extschema@.pg_ws_watched'::pg_catalog.regclass,
						'@extschema@.pg_ws_own_tables'::pg_catalog.regclass)
  UNION ALL
	SELECT w.relation, w.kind, false, w.event_prefix, w.replicated
	FROM @extschema@.pg_ws_watched w
), members AS (
	-- the table, and a partitioned table's partitions, with the firing of
	-- their trigger pg_ws_event: NULL when there is none or it is not pg_ws's
	SELECT b.relation, p.relid, p.level, t.oid IS NOT NULL AS present,
		   CASE WHEN t.tgfoid = '@extschema@.pg_ws_row_event()'::pg_catalog.regprocedure
					 AND t.tgnargs = 1
					 AND pg_catalog.encode(t.tgargs, 'escape') = b.kind || E'\\000'
					 AND t.tgtype = CASE b.kind WHEN 'attendance' THEN 13 ELSE 29 END
					 AND t.tgqual IS NULL AND t.tgconstraint = 0
					 AND pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) = 0
				THEN t.tgenabled END AS enabled
	FROM (SELECT b.relation, b.relation AS relid, 0 AS level FROM broadcast b
		  UNION ALL
		  SELECT b.relation, t.relid, t.level
		  FROM broadcast b
		  JOIN pg_catalog.pg_class c ON c.oid = b.relation::pg_catalog.oid AND c.relkind = 'p'
		  CROSS JOIN LATERAL pg_catalog.pg_partition_tree(b.relation) t
		  WHERE t.level > 0) p
	JOIN broadcast b ON b.relation::pg_catalog.oid = p.relation::pg_catalog.oid
	LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = p.relid::pg_catalog.oid AND t.tgname = 'pg_ws_event'
), firing AS (
	-- per table: whether every one fires for ordinary writes and for
	-- replicated rows, the table's own trigger, and the first partition
	-- whose trigger fires otherwise than the table's
	SELECT m.relation,
		   pg_catalog.bool_and(COALESCE(m.enabled IN ('O', 'A'), false)) AS fires,
		   pg_catalog.bool_and(COALESCE(m.enabled IN ('R', 'A'), false)) AS fires_replicated,
		   pg_catalog.bool_or(m.level = 0 AND m.present) AS present,
		   pg_catalog.min(m.enabled::pg_catalog.text) FILTER (WHERE m.level = 0) AS enabled,
		   (pg_catalog.array_agg(m.relid ORDER BY m.level, m.relid::pg_catalog.text)
				FILTER (WHERE m.level > 0 AND m.enabled IS DISTINCT FROM r.enabled))[1] AS partition
	FROM members m
	JOIN members r ON r.relation::pg_catalog.oid = m.relation::pg_catalog.oid AND r.level = 0
	GROUP BY m.relation
), partitions AS (
	SELECT f.relation, m.relid, m.present, m.enabled::pg_catalog.text AS enabled
	FROM firing f
	JOIN members m ON m.relation::pg_catalog.oid = f.relation::pg_catalog.oid
				  AND m.relid::pg_catalog.oid = f.partition::pg_catalog.oid
)
SELECT b.relation, b.kind, b.own,
	   CASE b.kind
		   WHEN 'client' THEN '{client_create,client_update,client_delete}'::pg_catalog.text[]
		   WHEN 'visit_history' THEN '{client_visit_create,client_visit_update,client_visit_delete}'
		   WHEN 'employee' THEN '{employee_create,employee_update,employee_delete}'
		   WHEN 'attendance' THEN '{employee_attendance,employee_attendance_delete}'
		   WHEN 'row' THEN ARRAY[b.event_prefix || '_create', b.event_prefix || '_update',
								 b.event_prefix || '_delete']
	   END AS events,
	   b.replicated,
	   CASE f.enabled WHEN 'O' THEN 'origin' WHEN 'A' THEN 'always'
					  WHEN 'R' THEN 'replica' WHEN 'D' THEN 'disabled' END AS trigger_enabled,
	   COALESCE(f.fires AND NOT x.moved, false) AS fires,
	   COALESCE(f.fires_replicated AND NOT x.moved, false) AS fires_replicated,
	   CASE
		   WHEN NOT COALESCE(f.present, false) THEN
			   'no trigger pg_ws_event: its changes are not broadcast'
		   WHEN f.enabled IS NULL THEN
			   pg_catalog.format('trigger pg_ws_event is not pg_ws_row_event(''%s'') AFTER %s FOR EACH ROW: its changes are not all broadcast',
								 b.kind, CASE b.kind WHEN 'attendance' THEN 'INSERT OR DELETE'
													 ELSE 'INSERT OR UPDATE OR DELETE' END)
		   WHEN x.moved THEN
			   pg_catalog.format('pg_ws''s own table of kind "%s" was renamed or moved: its writes fail until it is %s.%I again',
								 b.kind, '@extschema@'::pg_catalog.regnamespace, b.kind)
		   WHEN f.enabled = 'D' THEN
			   'trigger pg_ws_event is disabled: its changes are not broadcast'
		   WHEN f.enabled = 'R' THEN
			   'trigger pg_ws_event fires only for replicated rows (ENABLE REPLICA): ordinary writes are not broadcast'
		   WHEN p.relid IS NOT NULL THEN
			   pg_catalog.format('partition %s: %s', p.relid,
								 CASE WHEN NOT p.present THEN 'no trigger pg_ws_event: its rows are not broadcast'
									  WHEN p.enabled IS NULL THEN 'trigger pg_ws_event is not its table''s: its rows are not all broadcast'
									  WHEN p.enabled = 'D' THEN 'trigger pg_ws_event is disabled: its rows are not broadcast'
									  WHEN p.enabled = 'R' THEN 'trigger pg_ws_event fires only for replicated rows (ENABLE REPLICA)'
									  WHEN p.enabled = 'O' THEN 'trigger pg_ws_event fires for ordinary writes only (ENABLE), unlike its table''s'
									  ELSE 'trigger pg_ws_event also fires for replicated rows (ENABLE ALWAYS), unlike its table''s' END)
		   WHEN b.replicated AND f.enabled = 'O' THEN
			   'replicated rows are asked for, but trigger pg_ws_event fires for ordinary writes only (ENABLE rather than ENABLE ALWAYS)'
		   WHEN NOT b.replicated AND f.enabled = 'A' THEN
			   'trigger pg_ws_event also fires for replicated rows (ENABLE ALWAYS), which the watch does not ask for (replicated is false)'
	   END AS problem
FROM broadcast b
LEFT JOIN pg_catalog.pg_class cls ON cls.oid = b.relation::pg_catalog.oid
LEFT JOIN firing f ON f.relation::pg_catalog.oid = b.relation::pg_catalog.oid
LEFT JOIN partitions p ON p.relation::pg_catalog.oid = b.relation::pg_catalog.oid
CROSS JOIN LATERAL (SELECT b.own AND (cls.relname::pg_catalog.text IS DISTINCT FROM b.kind
									  OR cls.relnamespace IS DISTINCT FROM '@extschema@'::pg_catalog.regnamespace::pg_catalog.oid)
					AS moved) x;
REVOKE ALL ON @extschema@.pg_ws_watch_status FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_watch_status TO pg_monitor;

-- Whether an ALTER TABLE's command enables or disables pg_ws_event (by
-- name, or all or the user triggers of the table), run by a role that is
-- not a superuser (watch.c).
CREATE FUNCTION @extschema@.pg_ws_role_changes_trigger(cmd pg_catalog.pg_ddl_command)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'pg_ws_role_changes_trigger'
	LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_role_changes_trigger(pg_catalog.pg_ddl_command) FROM PUBLIC;

-- pg_ws's trigger on a table it broadcasts cannot be dropped, renamed or
-- replaced by one that is not pg_ws's (whoever owns the table could do
-- that, silencing its events); pg_ws_unwatch() drops it.  Its owner may
-- not make it broadcast less than the watch asks (disable it, ENABLE
-- REPLICA, or ENABLE when replicated rows are asked for) either; a
-- superuser may (pg_restore --disable-triggers, which needs one, disables
-- triggers around the rows it loads), with a WARNING, and any other ALTER
-- TABLE of a table whose trigger fires otherwise than pg_ws_watch() set it
-- warns too; pg_ws_watch_status shows it for as long as it lasts.  pg_ws's
-- own tables keep their names and their schema.  An ALTER TABLE of a table
-- whose trigger is missing says nothing: pg_restore alters tables before it
-- creates their triggers.
CREATE FUNCTION @extschema@.pg_ws_check_trigger_change() RETURNS event_trigger
	LANGUAGE plpgsql
	-- the table's owner runs the command; pg_ws_watch_status is pg_ws's
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $body$
DECLARE
	cmd record;
	rel pg_catalog.oid;
	s record;
	cls record;
BEGIN
	IF pg_catalog.to_regclass('@extschema@.pg_ws_watch_status') IS NULL THEN
		RETURN;
	END IF;
	FOR cmd IN SELECT c.classid, c.objid,
					  @extschema@.pg_ws_role_changes_trigger(c.command) AS by_role
			   FROM pg_catalog.pg_event_trigger_ddl_commands() c
	LOOP
		rel := NULL;
		IF cmd.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND TG_TAG = 'ALTER TABLE' THEN
			rel := cmd.objid;
		ELSIF cmd.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
			SELECT t.tgrelid INTO rel FROM pg_catalog.pg_trigger t
			WHERE t.oid = cmd.objid
			  AND (t.tgname = 'pg_ws_event'
				   OR t.tgfoid = '@extschema@.pg_ws_row_event()'::pg_catalog.regprocedure);
		END IF;
		CONTINUE WHEN rel IS NULL;
		-- the table, or the partitioned tables it is a partition of
		FOR s IN SELECT st.* FROM @extschema@.pg_ws_watch_status st
				 WHERE st.relation::pg_catalog.oid = rel
					OR st.relation IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(rel) a)
		LOOP
			SELECT c.relname, c.relnamespace INTO cls FROM pg_catalog.pg_class c
			WHERE c.oid = s.relation::pg_catalog.oid;
			IF s.own AND (cls.relname::pg_catalog.text <> s.kind
						  OR cls.relnamespace <> '@extschema@'::pg_catalog.regnamespace::pg_catalog.oid) THEN
				RAISE EXCEPTION 'table "%" belongs to extension pg_ws and keeps its name and schema', s.relation
					USING ERRCODE = 'object_not_in_prerequisite_state',
						  DETAIL = pg_catalog.format('pg_ws broadcasts its own table of kind "%s" as %s.%I.',
													 s.kind, '@extschema@'::pg_catalog.regnamespace, s.kind);
			ELSIF TG_TAG IN ('CREATE TRIGGER', 'ALTER TRIGGER') AND s.trigger_enabled IS NULL THEN
				RAISE EXCEPTION 'table "%" must keep pg_ws''s trigger "pg_ws_event"', s.relation
					USING ERRCODE = 'invalid_object_definition',
						  DETAIL = pg_catalog.format('%s%s.', pg_catalog.upper(pg_catalog.left(s.problem, 1)),
													 pg_catalog.substr(s.problem, 2)),
						  HINT = CASE WHEN s.own THEN 'pg_ws always broadcasts its own tables.'
									  ELSE pg_catalog.format('SELECT pg_ws_unwatch(%L) stops broadcasting the table and drops its trigger.',
															 s.relation::pg_catalog.text) END;
			ELSIF s.trigger_enabled IS NOT NULL AND s.problem IS NOT NULL THEN
				IF cmd.by_role AND (NOT s.fires OR (s.replicated AND NOT s.fires_replicated)) THEN
					RAISE EXCEPTION 'permission denied to change how trigger "pg_ws_event" of table "%" fires', s.relation
						USING ERRCODE = 'insufficient_privilege',
							  DETAIL = pg_catalog.format('%s%s.', pg_catalog.upper(pg_catalog.left(s.problem, 1)),
														 pg_catalog.substr(s.problem, 2)),
							  HINT = pg_catalog.format('pg_ws broadcasts the table''s changes through it: only a superuser may make it broadcast less (pg_restore --disable-triggers runs as one); SELECT pg_ws_unwatch(%L) stops broadcasting the table.',
													   s.relation::pg_catalog.text);
				END IF;
				RAISE WARNING 'trigger "pg_ws_event" of table "%" does not fire as pg_ws_watch() set it', s.relation
					USING DETAIL = pg_catalog.format('%s%s.', pg_catalog.upper(pg_catalog.left(s.problem, 1)),
													 pg_catalog.substr(s.problem, 2)),
						  HINT = CASE WHEN NOT s.replicated AND s.trigger_enabled = 'always'
										   AND s.problem LIKE 'trigger pg_ws_event also fires%' THEN
										  pg_catalog.format('Watch the table again with replicated => true to broadcast its replicated rows, or ALTER TABLE %s ENABLE TRIGGER pg_ws_event not to.', s.relation)
									  ELSE pg_catalog.format('ALTER TABLE %s ENABLE %sTRIGGER pg_ws_event makes it fire as pg_ws_watch() set it.',
															 s.relation, CASE WHEN s.replicated THEN 'ALWAYS ' ELSE '' END) END;
			END IF;
		END LOOP;
	END LOOP;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_check_trigger_change() FROM PUBLIC;
CREATE EVENT TRIGGER pg_ws_check_trigger_change ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
	EXECUTE FUNCTION @extschema@.pg_ws_check_trigger_change();

CREATE FUNCTION @extschema@.pg_ws_refuse_trigger_drop() RETURNS event_trigger
	LANGUAGE plpgsql
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $body$
DECLARE
	dropped record;
	s record;
BEGIN
	IF pg_catalog.to_regclass('@extschema@.pg_ws_watch_status') IS NULL THEN
		RETURN;
	END IF;
	FOR dropped IN SELECT d.address_names FROM pg_catalog.pg_event_trigger_dropped_objects() d
				   WHERE d.object_type = 'trigger' AND d.original
					 AND d.address_names[3] = 'pg_ws_event'
	LOOP
		FOR s IN SELECT st.* FROM @extschema@.pg_ws_watch_status st
				 WHERE st.relation::pg_catalog.oid =
					   pg_catalog.to_regclass(pg_catalog.format('%I.%I', dropped.address_names[1],
																dropped.address_names[2]))::pg_catalog.oid
		LOOP
			RAISE EXCEPTION 'cannot drop trigger "pg_ws_event" of table "%"', s.relation
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = 'pg_ws broadcasts the table''s changes through it.',
					  HINT = CASE WHEN s.own THEN 'pg_ws always broadcasts its own tables; DROP EXTENSION pg_ws drops them.'
								  ELSE pg_catalog.format('SELECT pg_ws_unwatch(%L) stops broadcasting the table and drops its trigger.',
														 s.relation::pg_catalog.text) END;
		END LOOP;
	END LOOP;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_refuse_trigger_drop() FROM PUBLIC;
CREATE EVENT TRIGGER pg_ws_refuse_trigger_drop ON sql_drop
	WHEN TAG IN ('DROP TRIGGER')
	EXECUTE FUNCTION @extschema@.pg_ws_refuse_trigger_drop();

-- pg_ws's event triggers fire with session_replication_role = replica too
ALTER EVENT TRIGGER pg_ws_forget_dropped ENABLE ALWAYS;
ALTER EVENT TRIGGER pg_ws_check_trigger_change ENABLE ALWAYS;
ALTER EVENT TRIGGER pg_ws_refuse_trigger_drop ENABLE ALWAYS;

-- operations: DDL that would break a watch is refused (issue 15, item 9)
--
-- Dropping, renaming or retyping a column a broadcast table's events are
-- rendered from (a 'row' watch's listed columns; the columns of the event
-- document's kinds, pg_ws's own tables included), or dropping a 'row'
-- table's primary key, would make every later write to the table fail
-- until it is watched again.  The command is refused instead, naming the
-- watch and the call that changes it first.  ddl_command_end sees ALTER
-- TABLE's renames and type changes; sql_drop sees the columns and keys
-- any command drops (ALTER TABLE, DROP TYPE ... CASCADE, ...), and only it
-- checks the key: pg_restore alters a table before it adds its primary
-- key.
CREATE FUNCTION @extschema@.pg_ws_check_columns(tbl pg_catalog.oid, need_key boolean)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pg_ws_check_columns'
	LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_check_columns(pg_catalog.oid, boolean) FROM PUBLIC;

CREATE FUNCTION @extschema@.pg_ws_refuse_column_change() RETURNS event_trigger
	LANGUAGE plpgsql
	-- the table's owner runs the command; pg_ws_watched is pg_ws's
	SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $body$
DECLARE
	rel pg_catalog.oid;
BEGIN
	-- DROP EXTENSION pg_ws drops the catalog too
	IF pg_catalog.to_regclass('@extschema@.pg_ws_watched') IS NULL THEN
		RETURN;
	END IF;
	IF TG_EVENT = 'ddl_command_end' THEN
		FOR rel IN SELECT DISTINCT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
				   WHERE c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
		LOOP
			PERFORM @extschema@.pg_ws_check_columns(rel, false);
		END LOOP;
	ELSE
		-- the tables whose columns or constraints were dropped
		FOR rel IN SELECT DISTINCT t.relid
				   FROM pg_catalog.pg_event_trigger_dropped_objects() d
				   CROSS JOIN LATERAL (SELECT CASE
						WHEN d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid <> 0
							THEN d.objid
						WHEN d.object_type = 'table constraint'
							THEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', d.address_names[1],
																		  d.address_names[2]))::pg_catalog.oid
						END AS relid) t
				   WHERE t.relid IS NOT NULL
		LOOP
			PERFORM @extschema@.pg_ws_check_columns(rel, true);
		END LOOP;
	END IF;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_refuse_column_change() FROM PUBLIC;
CREATE EVENT TRIGGER pg_ws_refuse_column_change ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION @extschema@.pg_ws_refuse_column_change();
CREATE EVENT TRIGGER pg_ws_refuse_column_drop ON sql_drop
	EXECUTE FUNCTION @extschema@.pg_ws_refuse_column_change();
ALTER EVENT TRIGGER pg_ws_refuse_column_change ENABLE ALWAYS;
ALTER EVENT TRIGGER pg_ws_refuse_column_drop ENABLE ALWAYS;

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
	OUT resumes_waited bigint,
	OUT history_first_position bigint,
	OUT history_last_position bigint,
	OUT history_in_wal boolean,
	OUT history_slot_invalidations bigint,
	OUT subscribers_indexed integer,
	OUT resumes_refused bigint)
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
	OUT row_filter pg_catalog.text,
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

-- snapshot positions (1.3): where the calling transaction's snapshot stands
-- in the event stream.  Read in the REPEATABLE READ transaction that reads a
-- page's rows, it lets /ws/?since= send exactly the events those rows do
-- not show.  Executable by everyone, like pg_current_snapshot(), which
-- shows the same transaction ids.
CREATE FUNCTION @extschema@.pg_ws_position() RETURNS pg_catalog.text
	AS 'MODULE_PATHNAME', 'pg_ws_position'
	LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.pg_ws_position() IS
	'where this REPEATABLE READ transaction''s snapshot stands in the pg_ws event stream, for /ws/?since=';
