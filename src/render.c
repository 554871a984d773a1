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
 * Rows a restore loads are not events.  pg_dump dumps the rows of
 * pg_ws's own tables, whose triggers CREATE EXTENSION makes before the
 * restore loads them (a watched table's trigger comes after its rows):
 * broadcasting them would send every restored row again, and a table
 * larger than the queue would fail the restore.  See loaded_by_restore(),
 * and pg_ws_restore_statement(), which lets a restore load pg_ws's own
 * tables in the order pg_restore --jobs takes them.
 *
 * Events are rendered here, once, in the writing backend, so the worker
 * only ever copies bytes.  We render into a StringInfo rather than building
 * a json-c object tree: everything is palloc'd in the trigger's memory
 * context, so an error anywhere (an invalid byte, a missing column) leaks
 * nothing, and there is no tree to build and free.  Rendering is on every
 * write's path, so values are written without format strings where that
 * is simple (keys, integers, timestamps), text is escaped straight from
 * the datum, and each relation's column numbers are looked up once.
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
 *	  first;
 *	- a table's filter columns (watch.c) travel with each of its events,
 *	  after a tab as a delete's deleted row does, for filters only: a table
 *	  without them renders as if they did not exist.
 *
 * src/render.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include <math.h>

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/*
 * The columns events read, by name.  A key of the event is not always its
 * column's name (client is client_id), so render_* name both.
 */
typedef enum WsColumn
{
	COL_ID,
	COL_FIRST_SEEN,
	COL_LAST_SEEN,
	COL_VISIT_COUNT,
	COL_GENDER,
	COL_AGE,
	COL_IMAGE,
	COL_DATETIME,
	COL_DEVICE_ID,
	COL_CLIENT_ID,
	COL_FIRST_NAME,
	COL_LAST_NAME,
	COL_EMAIL,
	COL_PHONE_NUMBER,
	COL_WORKING_GRAPHIC_ID,
	COL_EMPLOYEE_ID,
	COL_SCORE
} WsColumn;

#define WS_NUM_COLUMNS (COL_SCORE + 1)

static const char *const ws_column_names[WS_NUM_COLUMNS] = {
	[COL_ID] = "id",
	[COL_FIRST_SEEN] = "first_seen",
	[COL_LAST_SEEN] = "last_seen",
	[COL_VISIT_COUNT] = "visit_count",
	[COL_GENDER] = "gender",
	[COL_AGE] = "age",
	[COL_IMAGE] = "image",
	[COL_DATETIME] = "datetime",
	[COL_DEVICE_ID] = "device_id",
	[COL_CLIENT_ID] = "client_id",
	[COL_FIRST_NAME] = "first_name",
	[COL_LAST_NAME] = "last_name",
	[COL_EMAIL] = "email",
	[COL_PHONE_NUMBER] = "phone_number",
	[COL_WORKING_GRAPHIC_ID] = "working_graphic_id",
	[COL_EMPLOYEE_ID] = "employee_id",
	[COL_SCORE] = "score",
};

/*
 * A relation's attribute numbers of the columns above live in its watch
 * (watch.c's per-relation cache, render_attnums), looked up by name on
 * first use: nothing here may assume where a table keeps its columns.
 * watch.c zeroes them whenever it reloads the watch, which it does after
 * every invalidation of the relation's relcache entry (a column dropped,
 * renamed, added).  Entries are never freed, so a render may hold its
 * watch across the visit_histories query.
 */
StaticAssertDecl(WS_NUM_COLUMNS == PGWS_RENDER_COLUMNS,
				 "PGWS_RENDER_COLUMNS must count render.c's columns");

/*
 * An event being written: the buffer, the row, whether a key came yet, and
 * whether any non-ASCII byte went in (only strings can bring one).
 */
typedef struct EventWriter
{
	StringInfo	buf;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	PgWsWatchedTable *watch;	/* the table's watch, from watch.c */
	bool		first_key;
	bool		non_ascii;
	bool		scratch;		/* may use render_scratch's visit rows */
} EventWriter;

/*
 * The buffers an event is rendered in, kept from one event to the next.
 * A client with 1,000 visits renders an event of about 60 kB; with its
 * buffers palloc'd and freed on every event, the freed chunks joined the
 * top of glibc's heap, which glibc then gave back to the kernel, and the
 * next event took it back: brk(), a page fault per page and, on shrinking,
 * a TLB shootdown on every CPU, half of such a transaction's CPU.  Kept
 * here, in a context of their own, they stay mapped; past
 * RENDER_SCRATCH_KEEP after an event, one is freed rather than keep a
 * backend's rare outsized event's memory for its whole life.
 *
 * An event may be rendered while another is (a type's output function
 * that writes a broadcast table): only the outermost uses these buffers,
 * in_use says one does, and the others palloc their own.
 */
#define RENDER_SCRATCH_KEEP (1024 * 1024)

static struct
{
	MemoryContext context;
	bool		in_use;
	StringInfoData event;		/* the event */
	StringInfoData rows;		/* a client event's visits, newest first */
	int		   *ends;			/* where each of rows ends */
	int			maxends;
} render_scratch;

/*
 * The kind of a rendered event, read back from its first bytes; -1 when
 * they do not name one of the document's events.
 */
int
pgws_event_kind_of(const char *json, size_t len)
{
	size_t		prefix = sizeof(PGWS_EVENT_PREFIX) - 1;
	int			kind;

	if (len <= prefix || memcmp(json, PGWS_EVENT_PREFIX, prefix) != 0)
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

/*
 * The name of a rendered event, read back from its first bytes: where it
 * is in json, and *name_len; NULL when json does not begin as an event
 * does, or its name holds an escape (no valid name needs one).
 */
const char *
pgws_event_name_of(const char *json, size_t len, size_t *name_len)
{
	size_t		prefix = sizeof(PGWS_EVENT_PREFIX) - 1;
	const char *name = json + prefix;
	const char *quote;

	if (len <= prefix || memcmp(json, PGWS_EVENT_PREFIX, prefix) != 0)
		return NULL;
	quote = memchr(name, '"', len - prefix);
	if (quote == NULL || memchr(name, '\\', quote - name) != NULL)
		return NULL;
	*name_len = quote - name;
	return name;
}

/* appends a string literal without strlen() or format parsing */
#define APPEND_LITERAL(buf, lit) \
	appendBinaryStringInfo((buf), (lit), sizeof(lit) - 1)

static void
begin_event(EventWriter *w, PgWsEventKind kind)
{
	APPEND_LITERAL(w->buf, PGWS_EVENT_PREFIX);
	appendStringInfoString(w->buf, pgws_event_names[kind]);
	APPEND_LITERAL(w->buf, "\", \"data\": {");
	w->first_key = true;
}

static void
end_event(EventWriter *w)
{
	APPEND_LITERAL(w->buf, "}}");
}

/* keys are our own ASCII literals: no escaping needed */
static void
append_key(EventWriter *w, const char *key)
{
	if (!w->first_key)
		APPEND_LITERAL(w->buf, ", ");
	w->first_key = false;
	appendStringInfoCharMacro(w->buf, '"');
	appendStringInfoString(w->buf, key);
	APPEND_LITERAL(w->buf, "\": ");
}

/*
 * Attribute number of a column the event needs, or a clear error.  A
 * missing column is not remembered, so the error comes again (only) when
 * an event needs that column, as without the cache.
 */
static int
column_attnum(EventWriter *w, WsColumn column)
{
	AttrNumber *attnum = &w->watch->render_attnums[column];

	if (*attnum == 0)
	{
		int			found = SPI_fnumber(w->desc, ws_column_names[column]);

		if (found <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("pg_ws cannot render a row of table \"%s\": column \"%s\" does not exist",
							RelationGetRelationName(w->rel),
							ws_column_names[column]),
					 errhint("pg_ws broadcasts the columns of the tables CREATE EXTENSION pg_ws made; do not drop or rename them.")));
		*attnum = (AttrNumber) found;
	}
	return *attnum;
}

static Datum
column_value(EventWriter *w, WsColumn column, bool *isnull, Oid *type)
{
	int			attnum = column_attnum(w, column);

	*type = TupleDescAttr(w->desc, attnum - 1)->atttypid;
	return heap_getattr(w->tuple, attnum, w->desc, isnull);
}

/*
 * The string types' output functions (textout, varcharout, bpcharout) all
 * return the value's bytes as they are, bpchar's padding included; we
 * take the bytes directly instead of calling them through fmgr.
 */
static inline bool
is_string_type(Oid type)
{
	return type == TEXTOID || type == VARCHAROID || type == BPCHAROID;
}

static char *
output_string(Datum value, Oid type)
{
	Oid			typoutput;
	bool		typisvarlena;

	if (is_string_type(type))
		return TextDatumGetCString(value);
	getTypeOutputInfo(type, &typoutput, &typisvarlena);
	return OidOutputFunctionCall(typoutput, value);
}

/*
 * str[0 .. len) as a JSON string, byte for byte what escape_json() writes
 * for it: short escapes for \b \f \n \r \t " and \, \u00XX for the other
 * control characters, everything else as is; like escape_json() on a C
 * string, it ends at a NUL byte (text cannot hold one).  It takes a length,
 * so a text datum need not be copied into a C string, appends runs of
 * plain bytes at once, and notes non-ASCII bytes so that an all-ASCII
 * event can skip the conversion pass in pg_ws_row_event().
 */
static void
append_json_string(EventWriter *w, const char *str, int len)
{
	static const char hex[] = "0123456789abcdef";
	StringInfo	buf = w->buf;
	const unsigned char *p = (const unsigned char *) str;
	const unsigned char *end = p + len;
	const unsigned char *run = p;
	unsigned char high = 0;

	appendStringInfoCharMacro(buf, '"');
	for (; p < end; p++)
	{
		unsigned char c = *p;

		high |= c;
		if (c >= ' ' && c != '"' && c != '\\')
			continue;
		if (c == '\0')
			break;
		appendBinaryStringInfo(buf, (const char *) run, p - run);
		run = p + 1;
		switch (c)
		{
			case '\b':
				APPEND_LITERAL(buf, "\\b");
				break;
			case '\f':
				APPEND_LITERAL(buf, "\\f");
				break;
			case '\n':
				APPEND_LITERAL(buf, "\\n");
				break;
			case '\r':
				APPEND_LITERAL(buf, "\\r");
				break;
			case '\t':
				APPEND_LITERAL(buf, "\\t");
				break;
			case '"':
				APPEND_LITERAL(buf, "\\\"");
				break;
			case '\\':
				APPEND_LITERAL(buf, "\\\\");
				break;
			default:
				/* the other control characters, as "\\u%04x" */
				APPEND_LITERAL(buf, "\\u00");
				appendStringInfoCharMacro(buf, hex[c >> 4]);
				appendStringInfoCharMacro(buf, hex[c & 0xF]);
				break;
		}
	}
	appendBinaryStringInfo(buf, (const char *) run, p - run);
	appendStringInfoCharMacro(buf, '"');
	if (IS_HIGHBIT_SET(high))
		w->non_ascii = true;
}

/* a value of any type as a JSON string, by its output function */
static void
append_string_value(EventWriter *w, Datum value, Oid type)
{
	if (is_string_type(type))
	{
		text	   *t = DatumGetTextPP(value);

		append_json_string(w, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		if ((Pointer) t != DatumGetPointer(value))
			pfree(t);
	}
	else
	{
		char	   *str = output_string(value, type);

		append_json_string(w, str, strlen(str));
		pfree(str);
	}
}

/*
 * 2023-12-10T10:00:00Z or 2023-12-10T10:00:00.250000Z, always in UTC.  The
 * digits are written by hand into a stack buffer: a client event has two
 * timestamps per visit, and snprintf's format parsing was most of their
 * cost.
 */
static void
append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	/* "+294276-12-31T23:59:59.999999Z", quoted, is the longest */
	char		str[48];
	char	   *p = str;

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

	/*
	 * ISO 8601 years: 0000 is 1 BC, and years past 9999 carry a sign.
	 * pg_ultostr_zeropad writes at least that many digits, as %04d would.
	 */
	*p++ = '"';
	if (tm.tm_year < 0)
	{
		*p++ = '-';
		p = pg_ultostr_zeropad(p, (uint32) -tm.tm_year, 4);
	}
	else if (tm.tm_year > 9999)
	{
		*p++ = '+';
		p = pg_ultostr(p, (uint32) tm.tm_year);
	}
	else
		p = pg_ultostr_zeropad(p, (uint32) tm.tm_year, 4);
	*p++ = '-';
	p = pg_ultostr_zeropad(p, (uint32) tm.tm_mon, 2);
	*p++ = '-';
	p = pg_ultostr_zeropad(p, (uint32) tm.tm_mday, 2);
	*p++ = 'T';
	p = pg_ultostr_zeropad(p, (uint32) tm.tm_hour, 2);
	*p++ = ':';
	p = pg_ultostr_zeropad(p, (uint32) tm.tm_min, 2);
	*p++ = ':';
	p = pg_ultostr_zeropad(p, (uint32) tm.tm_sec, 2);
	/* timestamp2tm's fsec is in [0, 999999] */
	if (fsec != 0)
	{
		*p++ = '.';
		p = pg_ultostr_zeropad(p, (uint32) fsec, 6);
	}
	*p++ = 'Z';
	*p++ = '"';
	Assert(p - str <= sizeof(str));
	appendBinaryStringInfo(buf, str, p - str);
}

/*
 * A json or jsonb value, embedded as JSON.  json is sent as it was stored
 * (it is valid JSON), but for its line breaks, which become spaces: an
 * event is one line of the queue's and the WAL's JSON Lines, and a line
 * break can only be whitespace between a json value's tokens (JSON
 * strings escape theirs), so the value means the same.  jsonb as its
 * output function writes it, with the separators of every other event.
 * Either may bring non-ASCII bytes.
 */
static void
append_json_value(EventWriter *w, Datum value, Oid type)
{
	char	   *str = output_string(value, type);
	char	   *p;

	for (p = str; *p; p++)
	{
		if (IS_HIGHBIT_SET(*p))
			w->non_ascii = true;
		else if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
	appendStringInfoString(w->buf, str);
	pfree(str);
}

/* a value as JSON, by its SQL type */
static void
append_value(EventWriter *w, Datum value, bool isnull, Oid type)
{
	StringInfo	buf = w->buf;
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
			appendBinaryStringInfo(buf, digits,
								   pg_itoa(DatumGetInt16(value), digits));
			break;
		case INT4OID:
			appendBinaryStringInfo(buf, digits,
								   pg_ltoa(DatumGetInt32(value), digits));
			break;
		case INT8OID:
			appendBinaryStringInfo(buf, digits,
								   pg_lltoa(DatumGetInt64(value), digits));
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
		case DATEOID:
			/* ISO 8601 whatever DateStyle says, as to_json() writes it */
			if (DATE_NOT_FINITE(DatumGetDateADT(value)))
				appendStringInfoString(buf, "null");
			else
			{
				struct pg_tm tm;
				char		date[MAXDATELEN + 1];

				j2date(DatumGetDateADT(value) + POSTGRES_EPOCH_JDATE,
					   &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
				EncodeDateOnly(&tm, USE_XSD_DATES, date);
				appendStringInfoCharMacro(buf, '"');
				appendStringInfoString(buf, date);
				appendStringInfoCharMacro(buf, '"');
			}
			break;
		case JSONOID:
		case JSONBOID:
			/* JSON already ('row' tables): as it is, jsonb in its ", " form */
			append_json_value(w, value, type);
			break;
		default:
			append_string_value(w, value, type);
			break;
	}
}

/* "key": value, the value rendered by its type */
static void
append_column(EventWriter *w, const char *key, WsColumn column)
{
	bool		isnull;
	Oid			type;
	Datum		value = column_value(w, column, &isnull, &type);

	append_key(w, key);
	append_value(w, value, isnull, type);
}

/* "key": "value", a JSON string whatever the column's type */
static void
append_string_column(EventWriter *w, const char *key, WsColumn column)
{
	bool		isnull;
	Oid			type;
	Datum		value = column_value(w, column, &isnull, &type);

	append_key(w, key);
	if (isnull)
		APPEND_LITERAL(w->buf, "null");
	else
		append_string_value(w, value, type);
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
append_image_column(EventWriter *w, const char *key, WsColumn column)
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
		append_json_string(w, path, strlen(path));
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
	append_json_string(w, url.data, url.len);
	pfree(url.data);
}

/*
 * The visits arrive newest first (visits.c).  Each is rendered as it
 * arrives into rows, remembering where each ends, and
 * append_visit_histories() copies them out in reverse, oldest first.
 * rows and ends are render_scratch's when the event is (scratch), and
 * kept there as they grow, so that an error midway leaves no dangling
 * pointer behind.
 */
typedef struct VisitRows
{
	EventWriter visit;			/* writes into *rows */
	StringInfo	rows;			/* the rendered rows, newest first */
	int		   *ends;			/* offset in rows after each row */
	int			nrows;
	int			maxrows;
	bool		scratch;
} VisitRows;

/*
 * {"datetime": ..., "device_id": "..."}, rendered as append_column and
 * append_string_column would.
 */
static void
render_visit(void *arg,
			 Datum datetime, bool datetime_null, Oid datetime_type,
			 Datum device_id, bool device_id_null, Oid device_id_type)
{
	VisitRows  *r = (VisitRows *) arg;
	EventWriter *v = &r->visit;

	v->first_key = true;
	appendStringInfoCharMacro(v->buf, '{');
	append_key(v, "datetime");
	append_value(v, datetime, datetime_null, datetime_type);
	append_key(v, "device_id");
	if (device_id_null)
		APPEND_LITERAL(v->buf, "null");
	else
		append_string_value(v, device_id, device_id_type);
	appendStringInfoCharMacro(v->buf, '}');

	if (r->nrows == r->maxrows)
	{
		r->maxrows *= 2;
		r->ends = repalloc(r->ends, r->maxrows * sizeof(int));
		if (r->scratch)
		{
			render_scratch.ends = r->ends;
			render_scratch.maxends = r->maxrows;
		}
	}
	r->ends[r->nrows++] = v->buf->len;
}

/*
 * "visit_histories": the client's newest pg_ws.max_visit_histories visits,
 * oldest first, as the statement left them.  The bound keeps a client with
 * a long history updatable: without it the event grows with every visit
 * until it no longer fits in the queue.  They are read as the owner of
 * the client table (visits.c), so a role allowed to write clients need
 * not be allowed to read visits.
 */
static void
append_visit_histories(EventWriter *w, const char *key)
{
	bool		isnull;
	Oid			client_id_type;
	Datum		client_id;
	VisitRows	r;
	StringInfoData own_rows;
	Oid			visit_relid = w->watch->visit_relid;
	int			row;

	client_id = column_value(w, COL_ID, &isnull, &client_id_type);

	append_key(w, key);
	if (isnull || pgws_max_visit_histories == 0 || !OidIsValid(visit_relid))
	{
		APPEND_LITERAL(w->buf, "[]");
		return;
	}

	memset(&r, 0, sizeof(r));
	r.scratch = w->scratch;
	if (r.scratch)
	{
		r.rows = &render_scratch.rows;
		resetStringInfo(r.rows);
		r.ends = render_scratch.ends;
		r.maxrows = render_scratch.maxends;
	}
	else
	{
		initStringInfo(&own_rows);
		r.rows = &own_rows;
		r.maxrows = 16;
		r.ends = palloc(r.maxrows * sizeof(int));
	}
	r.visit.buf = r.rows;
	r.visit.rel = w->rel;
	r.visit.watch = w->watch;

	pgws_read_visits(visit_relid, w->rel->rd_rel->relowner, client_id,
					 client_id_type, (int64) pgws_max_visit_histories,
					 render_visit, &r);

	/* the rows came newest first */
	appendStringInfoCharMacro(w->buf, '[');
	enlargeStringInfo(w->buf, r.rows->len + 2 * r.nrows + 1);
	for (row = r.nrows; row-- > 0;)
	{
		int			start = row > 0 ? r.ends[row - 1] : 0;

		if (row < r.nrows - 1)
			APPEND_LITERAL(w->buf, ", ");
		appendBinaryStringInfo(w->buf, r.rows->data + start,
							   r.ends[row] - start);
	}
	appendStringInfoCharMacro(w->buf, ']');
	if (r.visit.non_ascii)
		w->non_ascii = true;

	if (!r.scratch)
	{
		pfree(own_rows.data);
		pfree(r.ends);
	}
}

/* client_delete and employee_delete carry only the id */
static void
render_id_only(EventWriter *w, PgWsEventKind kind)
{
	begin_event(w, kind);
	append_column(w, "id", COL_ID);
	end_event(w);
}

/* a column name as a key: any identifier, so escaped */
static void
append_column_key(EventWriter *w, Form_pg_attribute att)
{
	if (!w->first_key)
		APPEND_LITERAL(w->buf, ", ");
	w->first_key = false;
	append_json_string(w, NameStr(att->attname), strlen(NameStr(att->attname)));
	APPEND_LITERAL(w->buf, ": ");
}

/* a column of the row by attribute number, its name as the key */
static void
append_attnum(EventWriter *w, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(w->desc, attnum - 1);
	bool		isnull;
	Datum		value;

	if (att->attisdropped)
		return;
	value = heap_getattr(w->tuple, attnum, w->desc, &isnull);
	append_column_key(w, att);
	append_value(w, value, isnull, att->atttypid);
}

/*
 * The deleted row beside a delete whose data does not carry it, so that
 * ?filter= can match the delete by the row's values (filter.c): after a
 * tab, which JSON text never holds, a JSON object with the fields a create
 * would carry.  The worker never sends it; images and visit histories
 * are left out (no filter compares them, and a face photo's URL has no
 * business in the WAL twice).
 */
static void
begin_deleted_row(EventWriter *w)
{
	APPEND_LITERAL(w->buf, "\t{");
	w->first_key = true;
}

static void
end_deleted_row(EventWriter *w)
{
	appendStringInfoChar(w->buf, '}');
}

/*
 * The watch's filter columns (watch.c) of the row, the new one of an
 * update and the deleted one of a delete, for ?filter= and a token's
 * filters only: inside the deleted row beside a delete that carries one.
 */
static void
append_filter_columns(EventWriter *w)
{
	int			i;

	for (i = 0; i < w->watch->nfilter_columns; i++)
		append_attnum(w, w->watch->filter_columns[i]);
}

/*
 * Every other event of a table with filter columns carries them after a
 * tab, as the deleted row is carried; the worker never sends them.  A
 * table without any renders as before, byte for byte.
 */
static void
append_filter_row(EventWriter *w)
{
	if (w->watch->nfilter_columns == 0)
		return;
	begin_deleted_row(w);
	append_filter_columns(w);
	end_deleted_row(w);
}

/* a client's own columns, but its image: in its events and beside a delete */
static void
append_client_columns(EventWriter *w)
{
	append_column(w, "id", COL_ID);
	append_column(w, "first_seen", COL_FIRST_SEEN);
	append_column(w, "last_seen", COL_LAST_SEEN);
	append_column(w, "visit_count", COL_VISIT_COUNT);
	append_column(w, "gender", COL_GENDER);
	append_column(w, "age", COL_AGE);
}

static void
render_client(EventWriter *w, TriggerEvent op)
{
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		render_id_only(w, PGWS_CLIENT_DELETE);
		begin_deleted_row(w);
		append_client_columns(w);
		append_filter_columns(w);
		end_deleted_row(w);
		return;
	}
	begin_event(w, TRIGGER_FIRED_BY_INSERT(op) ? PGWS_CLIENT_CREATE : PGWS_CLIENT_UPDATE);
	append_client_columns(w);
	append_image_column(w, "image", COL_IMAGE);
	append_visit_histories(w, "visit_histories");
	end_event(w);
	append_filter_row(w);
}

static void
render_visit_history(EventWriter *w, TriggerEvent op)
{
	begin_event(w, TRIGGER_FIRED_BY_INSERT(op) ? PGWS_CLIENT_VISIT_CREATE :
				TRIGGER_FIRED_BY_UPDATE(op) ? PGWS_CLIENT_VISIT_UPDATE :
				PGWS_CLIENT_VISIT_DELETE);
	append_column(w, "datetime", COL_DATETIME);
	append_string_column(w, "device_id", COL_DEVICE_ID);
	append_column(w, "client", COL_CLIENT_ID);
	end_event(w);
	/* a delete's data is the row already */
	append_filter_row(w);
}

/* an employee's columns before its image: in its events and beside a delete */
static void
append_employee_names(EventWriter *w)
{
	append_column(w, "id", COL_ID);
	append_column(w, "first_name", COL_FIRST_NAME);
	append_column(w, "last_name", COL_LAST_NAME);
	append_column(w, "email", COL_EMAIL);
	append_column(w, "phone_number", COL_PHONE_NUMBER);
}

static void
render_employee(EventWriter *w, TriggerEvent op)
{
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		render_id_only(w, PGWS_EMPLOYEE_DELETE);
		begin_deleted_row(w);
		append_employee_names(w);
		append_column(w, "working_graphic", COL_WORKING_GRAPHIC_ID);
		append_filter_columns(w);
		end_deleted_row(w);
		return;
	}
	begin_event(w, TRIGGER_FIRED_BY_INSERT(op) ? PGWS_EMPLOYEE_CREATE : PGWS_EMPLOYEE_UPDATE);
	append_employee_names(w);
	append_image_column(w, "image", COL_IMAGE);
	append_column(w, "working_graphic", COL_WORKING_GRAPHIC_ID);
	end_event(w);
	append_filter_row(w);
}

/* returns false for updates, which the event document does not announce */
static bool
render_attendance(EventWriter *w, TriggerEvent op)
{
	if (TRIGGER_FIRED_BY_INSERT(op))
	{
		begin_event(w, PGWS_EMPLOYEE_ATTENDANCE);
		append_column(w, "employee_id", COL_EMPLOYEE_ID);
		append_string_column(w, "device_id", COL_DEVICE_ID);
		append_image_column(w, "image", COL_IMAGE);
		append_column(w, "datetime", COL_DATETIME);
		append_column(w, "score", COL_SCORE);
		end_event(w);
		append_filter_row(w);
		return true;
	}
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		begin_event(w, PGWS_EMPLOYEE_ATTENDANCE_DELETE);
		append_column(w, "employee_id", COL_EMPLOYEE_ID);
		append_column(w, "datetime", COL_DATETIME);
		end_event(w);
		begin_deleted_row(w);
		append_column(w, "employee_id", COL_EMPLOYEE_ID);
		append_string_column(w, "device_id", COL_DEVICE_ID);
		append_column(w, "datetime", COL_DATETIME);
		append_column(w, "score", COL_SCORE);
		append_filter_columns(w);
		end_deleted_row(w);
		return true;
	}
	return false;
}

/*
 * A 'row' table's event: <prefix>_create and _update carry the row (its
 * watched columns, or all), _delete its primary key (and, beside it for
 * ?filter=, the deleted row's watched columns and filter columns).  The
 * prefix is the one stored when the table was watched, never the table's
 * current name, and watch.c checked it against the rules for event names
 * when it loaded the watch; it is written as a JSON string all the same,
 * so that nothing a catalog holds can ever end the name early.
 */
static void
render_row(EventWriter *w, TriggerEvent op)
{
	const PgWsWatchedTable *watch = w->watch;
	const char *suffix;
	char		name[NAMEDATALEN + sizeof("_create")];
	int			len;
	int			i;

	if (TRIGGER_FIRED_BY_INSERT(op))
		suffix = "_create";
	else if (TRIGGER_FIRED_BY_UPDATE(op))
		suffix = "_update";
	else
		suffix = "_delete";
	len = snprintf(name, sizeof(name), "%s%s", watch->event_prefix, suffix);
	APPEND_LITERAL(w->buf, "{\"event\": ");
	append_json_string(w, name, Min(len, (int) sizeof(name) - 1));
	APPEND_LITERAL(w->buf, ", \"data\": {");
	w->first_key = true;

	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		for (i = 0; i < watch->nkeys; i++)
			append_attnum(w, watch->keys[i]);
		end_event(w);
		begin_deleted_row(w);
	}
	if (watch->ncolumns > 0)
	{
		for (i = 0; i < watch->ncolumns; i++)
			append_attnum(w, watch->columns[i]);
	}
	else
	{
		for (i = 1; i <= w->desc->natts; i++)
			append_attnum(w, (AttrNumber) i);
	}
	if (TRIGGER_FIRED_BY_DELETE(op))
	{
		append_filter_columns(w);
		end_deleted_row(w);
	}
	else
	{
		end_event(w);
		append_filter_row(w);
	}
}

/*
 * Copy valid UTF-8 JSON with every non-ASCII character written as \uXXXX
 * (a surrogate pair above U+FFFF), as Python's json.dumps does by default.
 * Outside strings JSON is ASCII already, so no parsing is needed.  Also
 * pg_ws_send()'s (send.c), so that every event is escaped alike.
 */
void
pgws_append_ascii_escaped(StringInfo out, const char *s, int len)
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

static PgWsTableKind
trigger_table_kind(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	const char *name = trigger->tgnargs == 1 ? trigger->tgargs[0] : "";
	int			kind = pgws_table_kind_from_name(name);

	if (kind < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pg_ws_row_event() needs one argument naming its table's kind: client, visit_history, employee, attendance or row"),
				 errdetail("Trigger \"%s\" on table \"%s\" passed \"%s\".",
						   trigger->tgname,
						   RelationGetRelationName(trigdata->tg_relation), name)));
	return (PgWsTableKind) kind;
}

/*
 * Only the extension's own tables and the tables pg_ws_watch() attached it
 * to may produce events, each as its own kind: every subscriber trusts
 * what it is sent, so a trigger on any other table, or naming another
 * kind, would forge events.  EXECUTE on pg_ws_row_event() is revoked from
 * PUBLIC, so only a superuser can create such a trigger at all; this check
 * catches the ones made by hand instead of by pg_ws_watch(), and triggers
 * left on tables that stopped being watched.  watch.c remembers the answer
 * per relation until the relation's relcache entry is invalidated.
 *
 * Limitation: ALTER EXTENSION pg_ws DROP TABLE (superuser only) does not
 * invalidate the table's relcache entry, so a backend that verified the
 * table before keeps accepting its trigger until something else
 * invalidates the entry; new backends refuse it at once.
 */
static PgWsWatchedTable *
check_trigger_relation(TriggerData *trigdata, PgWsTableKind kind)
{
	Relation	rel = trigdata->tg_relation;
	PgWsWatchedTable *watch = pgws_watched_table(rel);

	if (!watch->watched || watch->kind != kind)
	{
		char	   *qualified =
			quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									   RelationGetRelationName(rel));

		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s.%s\" is not watched by pg_ws as kind \"%s\"",
						get_namespace_name(RelationGetNamespace(rel)),
						RelationGetRelationName(rel), pgws_table_kind_names[kind]),
				 errdetail("Trigger \"%s\" calls pg_ws_row_event('%s'), which only the tables CREATE EXTENSION pg_ws made and those pg_ws_watch() attached may do.",
						   trigdata->tg_trigger->tgname, pgws_table_kind_names[kind]),
				 watch->own && !watch->watched ?
				 errhint("The table belongs to extension pg_ws, which broadcasts its own tables under their own names.") :
				 watch->watched ?
				 errhint("Drop the trigger: pg_ws watches this table as kind \"%s\" already.",
						 pgws_table_kind_names[watch->kind]) :
				 errhint("Drop the trigger, and attach pg_ws with SELECT pg_ws_watch('%s', '%s').",
						 qualified, pgws_table_kind_names[kind])));
	}
	return watch;
}

/*
 * Is the row that fired the trigger one a restore loads?  That is, is the
 * statement running now a COPY ... FROM STDIN into the trigger's table
 * (or a partitioned table it is a partition of: pg_dump
 * --load-via-partition-root), run by a superuser in a session set up the
 * way every pg_dump script and every pg_restore connection sets it up:
 * search_path empty and check_function_bodies off (pg_dump's
 * _doSetFixedOutputState; psql -f of a plain dump runs the same SET
 * lines)?  Then it sends no event.
 *
 * Why these signs: COPY FROM STDIN is how pg_restore and psql load a
 * dump's rows, and how applications bulk-load too, so COPY alone must not
 * be enough.  No application runs with an empty search_path and
 * check_function_bodies off by accident; a superuser who sets both
 * impersonates a restore, and may silence pg_ws anyway (ALTER TABLE ...
 * DISABLE TRIGGER).  A role that is not a superuser cannot skip events
 * this way, as it cannot disable pg_ws's trigger.  session_replication_role
 * is no sign: a plain restore does not set it.  Rows a restore writes with
 * INSERT (pg_dump --inserts) are not recognized: they are events, each
 * transaction a few rows.
 *
 * Ordinary writes pay one test of a bool.  The server log says once per
 * table and transaction that rows were not broadcast, so that an operator
 * who wonders can find out.
 */
static bool
loaded_by_restore(Relation rel)
{
	static LocalTransactionId logged_lxid = InvalidLocalTransactionId;
	static Oid	logged_relid = InvalidOid;
	PlannedStmt *stmt;
	CopyStmt   *copy;
	Oid			target;

	if (check_function_bodies || namespace_search_path == NULL ||
		namespace_search_path[0] != '\0' || ActivePortal == NULL)
		return false;
	stmt = PortalGetPrimaryStmt(ActivePortal);
	if (stmt == NULL || stmt->commandType != CMD_UTILITY ||
		stmt->utilityStmt == NULL || !IsA(stmt->utilityStmt, CopyStmt))
		return false;
	copy = (CopyStmt *) stmt->utilityStmt;
	if (!copy->is_from || copy->is_program || copy->filename != NULL ||
		copy->relation == NULL || !superuser())
		return false;

	/* COPY holds its table locked: no lock to take */
	target = RangeVarGetRelid(copy->relation, NoLock, true);
	if (target != RelationGetRelid(rel) &&
		!(rel->rd_rel->relispartition &&
		  list_member_oid(get_partition_ancestors(RelationGetRelid(rel)), target)))
		return false;

	if ((logged_lxid != PGWS_MY_LXID || logged_relid != RelationGetRelid(rel)) &&
		pgws_is_broadcast_database())
	{
		logged_lxid = PGWS_MY_LXID;
		logged_relid = RelationGetRelid(rel);
		ereport(LOG,
				(errmsg("pg_ws does not broadcast the rows a restore loads into table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("They are loaded by COPY ... FROM stdin in a session with pg_dump's settings (search_path '' and check_function_bodies off), run by superuser \"%s\".",
						   GetUserNameFromId(GetUserId(), false))));
	}
	return true;
}

/*
 * pg_ws_restore_statement() returns trigger
 *
 * BEFORE and AFTER INSERT FOR EACH STATEMENT on pg_ws's own tables that
 * reference another (visit_history, attendance): while a restore loads
 * their rows (loaded_by_restore), their foreign keys are not checked, as
 * pg_restore --disable-triggers would not check them.  pg_dump orders the
 * data of an extension's tables by their foreign keys, but records no
 * such order in the archive, so pg_restore --jobs loads visit_history
 * while client is still being loaded, and its check of the first row
 * fails the restore.  The rows come from a consistent dump.
 *
 * The means is PostgreSQL's own: session_replication_role = replica, under
 * which the foreign keys' triggers do not fire, set LOCAL before the COPY's
 * first row and set back after its last (this trigger is ENABLE ALWAYS),
 * or by the abort of its transaction.  pg_ws's own triggers fire or not as
 * usual under it: either way the restored rows are not sent.
 */
static LocalTransactionId restore_role_lxid = InvalidLocalTransactionId;
static Oid	restore_role_relid = InvalidOid;
static int	restore_role_saved = SESSION_REPLICATION_ROLE_ORIGIN;

PG_FUNCTION_INFO_V1(pg_ws_restore_statement);

Datum
pg_ws_restore_statement(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pg_ws_restore_statement() must be fired FOR EACH STATEMENT")));
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BEFORE(trigdata->tg_event))
	{
		if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA ||
			!loaded_by_restore(rel))
			return PointerGetDatum(NULL);
		restore_role_saved = SessionReplicationRole;
		restore_role_lxid = PGWS_MY_LXID;
		restore_role_relid = RelationGetRelid(rel);
		(void) set_config_option("session_replication_role", "replica",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
		ereport(LOG,
				(errmsg("pg_ws does not check the foreign keys of the rows a restore loads into table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("pg_restore --jobs may load them before the rows they reference: pg_dump records no order between the data of an extension's tables.")));
	}
	else if (restore_role_lxid == PGWS_MY_LXID &&
			 restore_role_relid == RelationGetRelid(rel))
	{
		restore_role_lxid = InvalidLocalTransactionId;
		restore_role_relid = InvalidOid;
		(void) set_config_option("session_replication_role",
								 restore_role_saved == SESSION_REPLICATION_ROLE_LOCAL ?
								 "local" : "origin",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	}
	return PointerGetDatum(NULL);
}

/* errors while rendering say which row of which table was being sent */
static void
render_error_context(void *arg)
{
	TriggerData *trigdata = (TriggerData *) arg;

	errcontext("pg_ws event for a row of table \"%s\"",
			   RelationGetRelationName(trigdata->tg_relation));
}

/* render_scratch's buffers, small, in its context */
static void
fresh_render_scratch(void)
{
	MemoryContext old = MemoryContextSwitchTo(render_scratch.context);

	initStringInfo(&render_scratch.event);
	initStringInfo(&render_scratch.rows);
	render_scratch.maxends = 16;
	render_scratch.ends = palloc(render_scratch.maxends * sizeof(int));
	MemoryContextSwitchTo(old);
}

/* render_scratch's context and buffers, made on a backend's first event */
static void
take_render_scratch(void)
{
	render_scratch.context = AllocSetContextCreate(TopMemoryContext,
												   "pg_ws render scratch",
												   ALLOCSET_DEFAULT_SIZES);
	fresh_render_scratch();
}

/* after an event: give back what grew past RENDER_SCRATCH_KEEP */
static void
trim_render_scratch(void)
{
	if (render_scratch.event.maxlen <= RENDER_SCRATCH_KEEP &&
		render_scratch.rows.maxlen <= RENDER_SCRATCH_KEEP &&
		render_scratch.maxends * sizeof(int) <= RENDER_SCRATCH_KEEP)
		return;
	MemoryContextReset(render_scratch.context);
	fresh_render_scratch();
}

/* renders the row's event into w->buf and hands it to pending.c */
static void
render_and_add(EventWriter *w, PgWsTableKind kind, TriggerEvent op)
{
	bool		rendered = true;

	switch (kind)
	{
		case PGWS_TABLE_CLIENT:
			render_client(w, op);
			break;
		case PGWS_TABLE_VISIT_HISTORY:
			render_visit_history(w, op);
			break;
		case PGWS_TABLE_EMPLOYEE:
			render_employee(w, op);
			break;
		case PGWS_TABLE_ATTENDANCE:
			rendered = render_attendance(w, op);
			break;
		case PGWS_TABLE_ROW:
		case PGWS_NUM_TABLE_KINDS:
			render_row(w, op);
			break;
	}
	if (!rendered)
		return;

	/*
	 * Only strings can bring non-ASCII bytes, and append_json_string notes
	 * them.  ASCII is the same in every server encoding and in UTF-8, and
	 * the rendering holds no NUL byte, so an all-ASCII event is sent as it
	 * is: conversion and escaping would leave it unchanged.
	 */
	if (!w->non_ascii)
		pgws_pending_add(w->buf->data, w->buf->len);
	else
	{
		/* to UTF-8 (SQL_ASCII text is validated), then to ASCII */
		char	   *utf8 = pg_server_to_any(w->buf->data, w->buf->len, PG_UTF8);
		int			utf8_len = utf8 == w->buf->data ? w->buf->len : (int) strlen(utf8);
		StringInfoData ascii;

		initStringInfo(&ascii);
		pgws_append_ascii_escaped(&ascii, utf8, utf8_len);
		pgws_pending_add(ascii.data, ascii.len);
		pfree(ascii.data);
		if (utf8 != w->buf->data)
			pfree(utf8);
	}
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
	PgWsTableKind kind;
	PgWsWatchedTable *watch;
	EventWriter w;
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
	kind = trigger_table_kind(trigdata);
	watch = check_trigger_relation(trigdata, kind);

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
	if (loaded_by_restore(trigdata->tg_relation))
		return PointerGetDatum(NULL);

	errcallback.callback = render_error_context;
	errcallback.arg = trigdata;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	w.rel = trigdata->tg_relation;
	w.desc = RelationGetDescr(trigdata->tg_relation);
	w.tuple = TRIGGER_FIRED_BY_UPDATE(op) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	w.watch = watch;
	w.first_key = true;
	w.non_ascii = false;

	if (render_scratch.in_use)
	{
		/* an event rendered while another is: buffers of its own */
		StringInfoData buf;

		initStringInfo(&buf);
		w.buf = &buf;
		w.scratch = false;
		render_and_add(&w, kind, op);
		pfree(buf.data);
	}
	else
	{
		if (render_scratch.context == NULL)
			take_render_scratch();
		render_scratch.in_use = true;
		w.buf = &render_scratch.event;
		w.scratch = true;
		resetStringInfo(w.buf);
		PG_TRY();
		{
			render_and_add(&w, kind, op);
		}
		PG_FINALLY();
		{
			render_scratch.in_use = false;
			trim_render_scratch();
		}
		PG_END_TRY();
	}

	error_context_stack = errcallback.previous;
	return PointerGetDatum(NULL);
}
