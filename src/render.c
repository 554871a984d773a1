/*-------------------------------------------------------------------------
 *
 * render.c
 *	  The row trigger pg_ws_row_event() and the rendering of each changed
 *	  row as the JSON event of the event document.
 *
 * This file owns what an event looks like: its name, its keys in the
 * document's order, and how every value is written; and which rows may
 * become events at all: those of the extension's own four tables, each
 * under its own name.  It hands the finished bytes to pending.c and must
 * not know what happens to them afterwards.
 *
 * Events are rendered here, once, in the writing backend, so the worker
 * only ever copies bytes.  We render with StringInfo and escape_json rather
 * than building a json-c object tree: everything is palloc'd in the
 * trigger's memory context, so an error anywhere (an invalid byte, a
 * missing column) leaks nothing, and there is no tree to build and free.
 * Separators and escaping follow Python's json.dumps defaults, which the
 * Django Channels server used: ", " and ": ", and every non-ASCII character
 * as \uXXXX, so frames are plain ASCII whatever the database encoding.
 *
 * Rules (see README.md, "Events"):
 *	- timestamps in UTC: 2023-12-10T10:00:00Z, with six fraction digits only
 *	  when the microseconds are not zero;
 *	- integers as JSON numbers, float8 in PostgreSQL's shortest exact form
 *	  (95, 95.5); NaN and infinities, which JSON cannot carry, as null;
 *	- device_id always a JSON string;
 *	- image: NULL or empty is null, http:// and https:// URLs are sent as
 *	  stored, a relative path is percent-encoded and appended to
 *	  pg_ws.media_url as Django's FileSystemStorage.url() does, and any
 *	  other URI (data:, file:, ...) is null, so that a face photo stored
 *	  inline is never broadcast;
 *	- SQL NULL is null; text in any database encoding is sent as JSON
 *	  \u escapes of its characters;
 *	- visit_histories: the newest pg_ws.max_visit_histories visits, oldest
 *	  first.
 *
 * src/render.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include <math.h>

#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* the tables whose rows become events, named by the trigger's argument */
typedef enum WsTable
{
	WS_CLIENT,
	WS_VISIT_HISTORY,
	WS_EMPLOYEE,
	WS_ATTENDANCE
} WsTable;

#define WS_NUM_TABLES (WS_ATTENDANCE + 1)

/* each table's name: the trigger's argument and the table's own name */
static const char *const ws_table_names[WS_NUM_TABLES] = {
	[WS_CLIENT] = "client",
	[WS_VISIT_HISTORY] = "visit_history",
	[WS_EMPLOYEE] = "employee",
	[WS_ATTENDANCE] = "attendance",
};

/* an event being written: the buffer, the row, and whether a key came yet */
typedef struct EventWriter
{
	StringInfo	buf;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	bool		first_key;
} EventWriter;

const char *const pgws_event_names[PGWS_NUM_EVENT_KINDS] = {
	[PGWS_CLIENT_CREATE] = "client_create",
	[PGWS_CLIENT_UPDATE] = "client_update",
	[PGWS_CLIENT_DELETE] = "client_delete",
	[PGWS_CLIENT_VISIT_CREATE] = "client_visit_create",
	[PGWS_CLIENT_VISIT_UPDATE] = "client_visit_update",
	[PGWS_CLIENT_VISIT_DELETE] = "client_visit_delete",
	[PGWS_EMPLOYEE_CREATE] = "employee_create",
	[PGWS_EMPLOYEE_UPDATE] = "employee_update",
	[PGWS_EMPLOYEE_DELETE] = "employee_delete",
	[PGWS_EMPLOYEE_ATTENDANCE] = "employee_attendance",
	[PGWS_EMPLOYEE_ATTENDANCE_DELETE] = "employee_attendance_delete",
};

/* every event begins with these bytes, then its name and a quote */
#define EVENT_PREFIX "{\"event\": \""

/*
 * The kind of a rendered event, read back from its first bytes; -1 when
 * they do not name one of the document's events.
 */
int
pgws_event_kind_of(const char *json, size_t len)
{
	size_t		prefix = sizeof(EVENT_PREFIX) - 1;
	int			kind;

	if (len <= prefix || memcmp(json, EVENT_PREFIX, prefix) != 0)
		return -1;
	for (kind = 0; kind < PGWS_NUM_EVENT_KINDS; kind++)
	{
		size_t		n = strlen(pgws_event_names[kind]);

		if (len > prefix + n && json[prefix + n] == '"' &&
			memcmp(json + prefix, pgws_event_names[kind], n) == 0)
			return kind;
	}
	return -1;
}

/* the visit_histories query, prepared once per backend and schema */
static SPIPlanPtr visit_plan = NULL;
static Oid	visit_plan_namespace = InvalidOid;

static void
begin_event(EventWriter *w, PgWsEventKind kind)
{
	appendStringInfo(w->buf, EVENT_PREFIX "%s\", \"data\": {",
					 pgws_event_names[kind]);
	w->first_key = true;
}

static void
end_event(EventWriter *w)
{
	appendStringInfoString(w->buf, "}}");
}

static void
append_key(EventWriter *w, const char *key)
{
	if (!w->first_key)
		appendStringInfoString(w->buf, ", ");
	w->first_key = false;
	appendStringInfo(w->buf, "\"%s\": ", key);
}

/* attribute number of a column the event needs, or a clear error */
static int
column_attnum(EventWriter *w, const char *column)
{
	int			attnum = SPI_fnumber(w->desc, column);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("pg_ws cannot render a row of table \"%s\": column \"%s\" does not exist",
						RelationGetRelationName(w->rel), column),
				 errhint("pg_ws broadcasts the columns of the tables CREATE EXTENSION pg_ws made; do not drop or rename them.")));
	return attnum;
}

static Datum
column_value(EventWriter *w, const char *column, bool *isnull, Oid *type)
{
	int			attnum = column_attnum(w, column);

	*type = TupleDescAttr(w->desc, attnum - 1)->atttypid;
	return heap_getattr(w->tuple, attnum, w->desc, isnull);
}

static char *
output_string(Datum value, Oid type)
{
	Oid			typoutput;
	bool		typisvarlena;

	getTypeOutputInfo(type, &typoutput, &typisvarlena);
	return OidOutputFunctionCall(typoutput, value);
}

/* 2023-12-10T10:00:00Z or 2023-12-10T10:00:00.250000Z, always in UTC */
static void
append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_IS_NOBEGIN(ts))
	{
		appendStringInfoString(buf, "\"-infinity\"");
		return;
	}
	if (TIMESTAMP_IS_NOEND(ts))
	{
		appendStringInfoString(buf, "\"infinity\"");
		return;
	}
	/* no time zone argument: the broken-down time is UTC */
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));

	/* ISO 8601 years: 0000 is 1 BC, and years past 9999 carry a sign */
	if (tm.tm_year < 0)
		appendStringInfo(buf, "\"-%04d", -tm.tm_year);
	else if (tm.tm_year > 9999)
		appendStringInfo(buf, "\"+%d", tm.tm_year);
	else
		appendStringInfo(buf, "\"%04d", tm.tm_year);
	appendStringInfo(buf, "-%02d-%02dT%02d:%02d:%02d",
					 tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (fsec != 0)
		appendStringInfo(buf, ".%06d", (int) fsec);
	appendStringInfoString(buf, "Z\"");
}

/* a value as JSON, by its SQL type */
static void
append_value(StringInfo buf, Datum value, bool isnull, Oid type)
{
	char		digits[32];
	double		d;

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}

	switch (type)
	{
		case INT2OID:
			appendStringInfo(buf, "%d", (int) DatumGetInt16(value));
			break;
		case INT4OID:
			appendStringInfo(buf, "%d", DatumGetInt32(value));
			break;
		case INT8OID:
			appendStringInfo(buf, INT64_FORMAT, DatumGetInt64(value));
			break;
		case FLOAT4OID:
		case FLOAT8OID:
			/* shortest exact digits, whatever extra_float_digits says */
			if (type == FLOAT4OID)
			{
				float		f = DatumGetFloat4(value);

				d = f;
				if (isfinite(d))
					float_to_shortest_decimal_buf(f, digits);
			}
			else
			{
				d = DatumGetFloat8(value);
				if (isfinite(d))
					double_to_shortest_decimal_buf(d, digits);
			}
			appendStringInfoString(buf, isfinite(d) ? digits : "null");
			break;
		case NUMERICOID:
			if (numeric_is_nan(DatumGetNumeric(value)) ||
				numeric_is_inf(DatumGetNumeric(value)))
				appendStringInfoString(buf, "null");
			else
				appendStringInfoString(buf, output_string(value, type));
			break;
		case BOOLOID:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			break;
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
			append_timestamp(buf, DatumGetTimestampTz(value));
			break;
		default:
			escape_json(buf, output_string(value, type));
			break;
	}
}

/* "key": value, the value rendered by its type */
static void
append_column(EventWriter *w, const char *key, const char *column)
{
	bool		isnull;
	Oid			type;
	Datum		value = column_value(w, column, &isnull, &type);

	append_key(w, key);
	append_value(w->buf, value, isnull, type);
}

/* "key": "value", a JSON string whatever the column's type */
static void
append_string_column(EventWriter *w, const char *key, const char *column)
{
	bool		isnull;
	Oid			type;
	Datum		value = column_value(w, column, &isnull, &type);

	append_key(w, key);
	if (isnull)
		appendStringInfoString(w->buf, "null");
	else
		escape_json(w->buf, output_string(value, type));
}

/* does str start with an RFC 3986 scheme ("data:", "file:", ...)? */
static bool
has_uri_scheme(const char *str)
{
	const char *p = str;

	if (!isalpha((unsigned char) *p))
		return false;
	while (isalnum((unsigned char) *p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	return *p == ':';
}

/*
 * The image URL, as Django's FileSystemStorage.url() builds it:
 * MEDIA_URL + quote(path.replace("\\", "/").lstrip("/"), safe="/~!*()'").
 */
static void
append_image_column(EventWriter *w, const char *key, const char *column)
{
	bool		isnull;
	Oid			type;
	Datum		value = column_value(w, column, &isnull, &type);
	char	   *path;
	StringInfoData url;

	append_key(w, key);
	path = isnull ? NULL : output_string(value, type);
	if (path == NULL || path[0] == '\0')
	{
		appendStringInfoString(w->buf, "null");
		return;
	}
	if (pg_strncasecmp(path, "http://", 7) == 0 ||
		pg_strncasecmp(path, "https://", 8) == 0)
	{
		escape_json(w->buf, path);
		return;
	}
	if (has_uri_scheme(path))
	{
		appendStringInfoString(w->buf, "null");
		return;
	}

	/* percent-encode the UTF-8 bytes of the path */
	path = pg_server_to_any(path, strlen(path), PG_UTF8);
	initStringInfo(&url);
	appendStringInfoString(&url, pgws_media_url);
	while (*path == '/' || *path == '\\')
		path++;
	for (; *path; path++)
	{
		unsigned char c = (unsigned char) *path;

		if (c == '\\')
			appendStringInfoChar(&url, '/');
		else if (isalnum(c) || strchr("_.-~/!*()'", c) != NULL)
			appendStringInfoChar(&url, (char) c);
		else
			appendStringInfo(&url, "%%%02X", c);
	}
	escape_json(w->buf, url.data);
	pfree(url.data);
}

/*
 * "visit_histories": the client's newest pg_ws.max_visit_histories visits,
 * oldest first, as the statement left them.  The bound keeps a client with
 * a long history updatable: without it the event grows with every visit
 * until it no longer fits in the queue.  The query reads the index on
 * (client_id, datetime, id) backwards and stops after the bound; we then
 * write the rows in reverse, oldest first.
 *
 * The lookup runs as the owner of the client table, so a role allowed to
 * write clients need not be allowed to read visits, and with a
 * schema-qualified table and operator (ORDER BY takes the types' default
 * btree operators, found without a name lookup), so that search_path
 * cannot redirect it.
 */
static void
append_visit_histories(EventWriter *w, const char *key)
{
	bool		isnull;
	Oid			argtypes[2];
	Datum		args[2];
	Oid			nsp = RelationGetNamespace(w->rel);
	Oid			save_userid;
	int			save_sec_context;
	uint64		row;

	args[0] = column_value(w, "id", &isnull, &argtypes[0]);
	args[1] = Int64GetDatum((int64) pgws_max_visit_histories);
	argtypes[1] = INT8OID;

	append_key(w, key);
	if (isnull || pgws_max_visit_histories == 0)
	{
		appendStringInfoString(w->buf, "[]");
		return;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (visit_plan == NULL || visit_plan_namespace != nsp)
	{
		char	   *query;
		SPIPlanPtr	plan;

		query = psprintf("SELECT datetime, device_id FROM %s.visit_history "
						 "WHERE client_id OPERATOR(pg_catalog.=) $1 "
						 "ORDER BY datetime DESC, id DESC LIMIT $2",
						 quote_identifier(get_namespace_name(nsp)));
		plan = SPI_prepare(query, 2, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare(\"%s\") failed: %s",
				 query, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		if (visit_plan != NULL)
			SPI_freeplan(visit_plan);
		visit_plan = plan;
		visit_plan_namespace = nsp;
	}

	/* on error, transaction abort restores the user */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(w->rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_execute_plan(visit_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "visit_histories query failed: %s",
			 SPI_result_code_string(SPI_result));
	SetUserIdAndSecContext(save_userid, save_sec_context);

	/* the rows came newest first */
	appendStringInfoChar(w->buf, '[');
	for (row = SPI_processed; row-- > 0;)
	{
		EventWriter visit = {
			.buf = w->buf,
			.rel = w->rel,
			.desc = SPI_tuptable->tupdesc,
			.tuple = SPI_tuptable->vals[row],
			.first_key = true
		};

		if (row < SPI_processed - 1)
			appendStringInfoString(w->buf, ", ");
		appendStringInfoChar(w->buf, '{');
		append_column(&visit, "datetime", "datetime");
		append_string_column(&visit, "device_id", "device_id");
		appendStringInfoChar(w->buf, '}');
	}
	appendStringInfoChar(w->buf, ']');

	SPI_finish();
}

/* client_delete and employee_delete carry only the id */
static void
render_id_only(EventWriter *w, PgWsEventKind kind)
{
	begin_event(w, kind);
	append_column(w, "id", "id");
	end_event(w);
}

static void
render_client(EventWriter *w, TriggerEvent op)
{
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		render_id_only(w, PGWS_CLIENT_DELETE);
		return;
	}
	begin_event(w, TRIGGER_FIRED_BY_INSERT(op) ? PGWS_CLIENT_CREATE : PGWS_CLIENT_UPDATE);
	append_column(w, "id", "id");
	append_column(w, "first_seen", "first_seen");
	append_column(w, "last_seen", "last_seen");
	append_column(w, "visit_count", "visit_count");
	append_column(w, "gender", "gender");
	append_column(w, "age", "age");
	append_image_column(w, "image", "image");
	append_visit_histories(w, "visit_histories");
	end_event(w);
}

static void
render_visit_history(EventWriter *w, TriggerEvent op)
{
	begin_event(w, TRIGGER_FIRED_BY_INSERT(op) ? PGWS_CLIENT_VISIT_CREATE :
				TRIGGER_FIRED_BY_UPDATE(op) ? PGWS_CLIENT_VISIT_UPDATE :
				PGWS_CLIENT_VISIT_DELETE);
	append_column(w, "datetime", "datetime");
	append_string_column(w, "device_id", "device_id");
	append_column(w, "client", "client_id");
	end_event(w);
}

static void
render_employee(EventWriter *w, TriggerEvent op)
{
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		render_id_only(w, PGWS_EMPLOYEE_DELETE);
		return;
	}
	begin_event(w, TRIGGER_FIRED_BY_INSERT(op) ? PGWS_EMPLOYEE_CREATE : PGWS_EMPLOYEE_UPDATE);
	append_column(w, "id", "id");
	append_column(w, "first_name", "first_name");
	append_column(w, "last_name", "last_name");
	append_column(w, "email", "email");
	append_column(w, "phone_number", "phone_number");
	append_image_column(w, "image", "image");
	append_column(w, "working_graphic", "working_graphic_id");
	end_event(w);
}

/* returns false for updates, which the event document does not announce */
static bool
render_attendance(EventWriter *w, TriggerEvent op)
{
	if (TRIGGER_FIRED_BY_INSERT(op))
	{
		begin_event(w, PGWS_EMPLOYEE_ATTENDANCE);
		append_column(w, "employee_id", "employee_id");
		append_string_column(w, "device_id", "device_id");
		append_image_column(w, "image", "image");
		append_column(w, "datetime", "datetime");
		append_column(w, "score", "score");
		end_event(w);
		return true;
	}
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		begin_event(w, PGWS_EMPLOYEE_ATTENDANCE_DELETE);
		append_column(w, "employee_id", "employee_id");
		append_column(w, "datetime", "datetime");
		end_event(w);
		return true;
	}
	return false;
}

static bool
is_ascii(const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
		if (IS_HIGHBIT_SET(s[i]))
			return false;
	return true;
}

/*
 * Copy valid UTF-8 JSON with every non-ASCII character written as \uXXXX
 * (a surrogate pair above U+FFFF), as Python's json.dumps does by default.
 * Outside strings JSON is ASCII already, so no parsing is needed.
 */
static void
append_ascii_escaped(StringInfo out, const char *s, int len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;

	while (p < end)
	{
		pg_wchar	c;

		if (!IS_HIGHBIT_SET(*p))
		{
			appendStringInfoChar(out, (char) *p++);
			continue;
		}
		c = utf8_to_unicode(p);
		p += pg_utf_mblen(p);
		if (c > 0xFFFF)
		{
			c -= 0x10000;
			appendStringInfo(out, "\\u%04x\\u%04x",
							 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
		}
		else
			appendStringInfo(out, "\\u%04x", c);
	}
}

static WsTable
trigger_table(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	const char *name = trigger->tgnargs == 1 ? trigger->tgargs[0] : "";
	int			table;

	for (table = 0; table < WS_NUM_TABLES; table++)
		if (strcmp(name, ws_table_names[table]) == 0)
			return (WsTable) table;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("pg_ws_row_event() needs one argument naming its table: client, visit_history, employee or attendance"),
			 errdetail("Trigger \"%s\" on table \"%s\" passed \"%s\".",
					   trigger->tgname,
					   RelationGetRelationName(trigdata->tg_relation), name)));
	pg_unreachable();
}

/*
 * Only the extension's own tables may produce events: every subscriber
 * trusts what it is sent, so a trigger on any other table, or on one of ours
 * but naming another kind, would forge events.  EXECUTE on pg_ws_row_event()
 * is revoked from PUBLIC, so only a superuser can create such a trigger at
 * all; this check catches the ones a superuser creates by mistake, and
 * triggers left on tables that stopped being ours.
 *
 * The trigger fires once per row on the write path, so each backend
 * remembers, per kind, the relation it last verified, and forgets it when
 * that relation's relcache entry is invalidated (it is dropped, renamed,
 * altered).  The relation cannot change while we look: the statement that
 * fires the trigger holds a lock on it.  We register the callback on first
 * use, as ri_triggers.c does, rather than in _PG_init: this check also runs
 * where pg_ws is not preloaded, and _PG_init registers callbacks only when
 * it is.
 *
 * Limitation: ALTER EXTENSION pg_ws DROP TABLE (superuser only) does not
 * invalidate the table's relcache entry, so a backend that verified the
 * table before keeps accepting its trigger until something else
 * invalidates the entry; new backends refuse it at once.
 */
static Oid	verified_relid[WS_NUM_TABLES];
static bool verified_callback_registered = false;

static void
forget_verified_relation(Datum arg, Oid relid)
{
	int			table;

	for (table = 0; table < WS_NUM_TABLES; table++)
		if (relid == InvalidOid || verified_relid[table] == relid)
			verified_relid[table] = InvalidOid;
}

static void
check_trigger_relation(TriggerData *trigdata, WsTable table)
{
	Relation	rel = trigdata->tg_relation;
	Oid			relid = RelationGetRelid(rel);
	Oid			extension;

	if (verified_relid[table] == relid)
		return;

	if (!verified_callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_verified_relation, (Datum) 0);
		verified_callback_registered = true;
	}

	extension = get_extension_oid("pg_ws", true);
	if (!OidIsValid(extension) ||
		getExtensionOfObject(RelationRelationId, relid) != extension ||
		strcmp(RelationGetRelationName(rel), ws_table_names[table]) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s.%s\" is not the pg_ws table \"%s\"",
						get_namespace_name(RelationGetNamespace(rel)),
						RelationGetRelationName(rel), ws_table_names[table]),
				 errdetail("Trigger \"%s\" calls pg_ws_row_event('%s'), which only the \"%s\" table that CREATE EXTENSION pg_ws made may do.",
						   trigdata->tg_trigger->tgname, ws_table_names[table],
						   ws_table_names[table]),
				 errhint("Drop the trigger: pg_ws broadcasts the rows of its own tables only.")));

	verified_relid[table] = relid;
}

/* errors while rendering say which row of which table was being sent */
static void
render_error_context(void *arg)
{
	TriggerData *trigdata = (TriggerData *) arg;

	errcontext("pg_ws event for a row of table \"%s\"",
			   RelationGetRelationName(trigdata->tg_relation));
}

/*
 * pg_ws_row_event() returns trigger
 *
 * AFTER INSERT/UPDATE/DELETE FOR EACH ROW: render the changed row as one
 * event and queue it for the current transaction.
 */
PG_FUNCTION_INFO_V1(pg_ws_row_event);

Datum
pg_ws_row_event(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent op;
	WsTable		table;
	StringInfoData buf;
	EventWriter w;
	bool		rendered = true;
	ErrorContextCallback errcallback;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_ws_row_event() must be called as a trigger")));
	op = trigdata->tg_event;
	if (!TRIGGER_FIRED_AFTER(op) || !TRIGGER_FIRED_FOR_ROW(op))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_ws_row_event() must be fired AFTER ... FOR EACH ROW")));
	table = trigger_table(trigdata);
	check_trigger_relation(trigdata, table);

	/*
	 * Elsewhere than pg_ws.database the trigger does nothing, preloaded or
	 * not, so that removing pg_ws from shared_preload_libraries does not
	 * break writes in every database that has it installed.  In the
	 * broadcast database a write without the preload fails: its events
	 * would be lost.
	 */
	if (!pgws_is_broadcast_database())
		return PointerGetDatum(NULL);
	pgws_require_preload();

	errcallback.callback = render_error_context;
	errcallback.arg = trigdata;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	initStringInfo(&buf);
	w.buf = &buf;
	w.rel = trigdata->tg_relation;
	w.desc = RelationGetDescr(trigdata->tg_relation);
	w.tuple = TRIGGER_FIRED_BY_UPDATE(op) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	w.first_key = true;

	switch (table)
	{
		case WS_CLIENT:
			render_client(&w, op);
			break;
		case WS_VISIT_HISTORY:
			render_visit_history(&w, op);
			break;
		case WS_EMPLOYEE:
			render_employee(&w, op);
			break;
		case WS_ATTENDANCE:
			rendered = render_attendance(&w, op);
			break;
	}

	if (rendered)
	{
		/* to UTF-8 (SQL_ASCII text is validated), then to ASCII */
		char	   *utf8 = pg_server_to_any(buf.data, buf.len, PG_UTF8);
		int			utf8_len = utf8 == buf.data ? buf.len : (int) strlen(utf8);
		StringInfoData ascii;

		if (is_ascii(utf8, utf8_len))
			pgws_pending_add(utf8, utf8_len);
		else
		{
			initStringInfo(&ascii);
			append_ascii_escaped(&ascii, utf8, utf8_len);
			pgws_pending_add(ascii.data, ascii.len);
			pfree(ascii.data);
		}
	}
	pfree(buf.data);
	error_context_stack = errcallback.previous;
	return PointerGetDatum(NULL);
}
