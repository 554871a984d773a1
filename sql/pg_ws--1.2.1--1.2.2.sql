/* pg_ws--1.2.1--1.2.2.sql: from 1.2.1 to 1.2.2 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.2.2'" to load this file. \quit

-- operations: restoring a dump into the broadcast database (issue 15,
-- item 7)
--
-- Rows a restore loads are not broadcast (render.c), and the foreign keys
-- of pg_ws's own visit_history and attendance are not checked while a
-- restore loads them: pg_restore --jobs loads the data of an extension's
-- tables in any order.  The triggers that do it on those two tables, when
-- they are pg_ws's own (not a Django app's tables of those names, which
-- pg_ws watches and pg_dump dumps with their foreign keys after their
-- rows).
CREATE FUNCTION @extschema@.pg_ws_restore_statement() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pg_ws_restore_statement' LANGUAGE C;
REVOKE ALL ON FUNCTION @extschema@.pg_ws_restore_statement() FROM PUBLIC;
DO $restore$
DECLARE
	tbl pg_catalog.regclass;
BEGIN
	FOR tbl IN SELECT c.oid::pg_catalog.regclass
			   FROM pg_catalog.pg_depend d
			   JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
			   JOIN pg_catalog.pg_class c ON c.oid = d.objid
			   WHERE e.extname = 'pg_ws' AND d.deptype = 'e'
				 AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
				 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
				 AND c.relnamespace = '@extschema@'::pg_catalog.regnamespace
				 AND c.relname IN ('visit_history', 'attendance')
			   ORDER BY c.relname DESC
	LOOP
		EXECUTE pg_catalog.format('CREATE TRIGGER pg_ws_restore_start BEFORE INSERT ON %s '
								  'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pg_ws_restore_statement()', tbl);
		EXECUTE pg_catalog.format('CREATE TRIGGER pg_ws_restore_end AFTER INSERT ON %s '
								  'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pg_ws_restore_statement()', tbl);
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pg_ws_restore_start, '
								  'ENABLE ALWAYS TRIGGER pg_ws_restore_end', tbl);
	END LOOP;
END
$restore$;

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
-- monitoring (observe): pg_ws_stats gains resumes_waited, the subscribers
-- that waited for catch-up memory (pg_ws.catchup_memory) before resuming
DROP VIEW @extschema@.pg_ws_stats;
DROP FUNCTION @extschema@.pg_ws_stats();

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
	OUT history_slot_invalidations bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'pg_ws_stats'
	LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE VIEW @extschema@.pg_ws_stats AS
	SELECT * FROM @extschema@.pg_ws_stats();

REVOKE ALL ON FUNCTION @extschema@.pg_ws_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pg_ws_stats() TO pg_monitor;
REVOKE ALL ON @extschema@.pg_ws_stats FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_ws_stats TO pg_monitor;
