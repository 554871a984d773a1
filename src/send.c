/*-------------------------------------------------------------------------
 *
 * send.c
 *	  pg_ws_send(event, data): an event the application names, queued in
 *	  the current transaction like a changed row's.
 *
 * This file owns the SQL function and what a custom event looks like:
 * {"event": "NAME", "data": DATA}, written in the row events' style (the
 * separators ", " and ": ", every non-ASCII character as \uXXXX), so that
 * a subscriber parses and resumes them alike.  It hands the bytes to
 * pending.c, which owns the rest of their way (savepoints, rollback,
 * pre-commit into the queue and the WAL, commit); it must not touch the
 * queue itself, nor decide which names are acceptable (eventname.c).
 *
 * Who may send: EXECUTE is revoked from PUBLIC, because every subscriber
 * trusts what it is sent; a superuser grants it to the application's role.
 *
 * Where: not in parallel mode.  pg_ws_send() is PARALLEL UNSAFE, but a
 * function that calls it may be mislabelled PARALLEL SAFE and run in a
 * parallel worker, whose events would die with the worker's transaction
 * (only the leader commits): it is refused there, as PostgreSQL refuses
 * writes, rather than dropped without a word.
 *
 * src/send.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

/* does s[0 .. len) hold a byte that is not ASCII? */
static bool
has_non_ascii(const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
		if (IS_HIGHBIT_SET(s[i]))
			return true;
	return false;
}

/*
 * pg_ws_send(event text, data jsonb DEFAULT NULL) returns void
 *
 * Queue {"event": event, "data": data} in the current transaction: it is
 * sent at commit, in order with the transaction's row events, and dropped
 * with a rollback of the transaction or of the savepoint it was sent in.
 * A NULL data is sent as JSON null (the function is not STRICT: a STRICT
 * one would silently send nothing); a NULL event is an error.
 */
PG_FUNCTION_INFO_V1(pg_ws_send);

Datum
pg_ws_send(PG_FUNCTION_ARGS)
{
	text	   *event;
	const char *name;
	int			name_len;
	StringInfoData buf;

	/*
	 * In the leader too, as PostgreSQL's "cannot execute INSERT during a
	 * parallel operation": whether a worker or the leader evaluates the
	 * call is the planner's choice, and the answer must not depend on it.
	 */
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot call pg_ws_send() during a parallel operation"),
				 errdetail("The event of a parallel worker would be lost with the worker's transaction."),
				 errhint("Mark the function that calls pg_ws_send() PARALLEL UNSAFE.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pg_ws_send() needs an event name, not NULL")));
	event = PG_GETARG_TEXT_PP(0);
	name = VARDATA_ANY(event);
	name_len = VARSIZE_ANY_EXHDR(event);
	pgws_check_custom_event_name(name, name_len);

	/*
	 * Elsewhere than pg_ws.database the row triggers do nothing, so that
	 * removing pg_ws from shared_preload_libraries does not break writes;
	 * an explicit call, though, means to send something, and dropping its
	 * event without a word would hide the mistake.
	 */
	if (!pgws_is_broadcast_database())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws_send() sends events only in database \"%s\"",
						pgws_database),
				 errdetail("This is database \"%s\"; pg_ws broadcasts the events of the database pg_ws.database names.",
						   get_database_name(MyDatabaseId)),
				 errhint("Call pg_ws_send() in database \"%s\", or change pg_ws.database and reload the configuration.",
						 pgws_database)));
	pgws_require_preload();
	pgws_check_not_table_event(name, name_len);

	/*
	 * The event goes to the WAL with the transaction: a standby cannot write
	 * it, and a read-only transaction promised not to.
	 */
	PreventCommandDuringRecovery("pg_ws_send()");
	PreventCommandIfReadOnly("pg_ws_send()");

	initStringInfo(&buf);
	appendStringInfoString(&buf, PGWS_EVENT_PREFIX);
	appendBinaryStringInfo(&buf, name, name_len);
	appendStringInfoString(&buf, "\", \"data\": ");
	if (PG_ARGISNULL(1))
		appendStringInfoString(&buf, "null");
	else
	{
		Jsonb	   *data = PG_GETARG_JSONB_P(1);

		/* jsonb's text: ", " and ": " already, and never a raw newline */
		(void) JsonbToCString(&buf, &data->root, VARSIZE(data));
	}
	appendStringInfoChar(&buf, '}');

	/* as render.c does: to UTF-8, then every non-ASCII character escaped */
	if (has_non_ascii(buf.data, buf.len))
	{
		char	   *utf8 = pg_server_to_any(buf.data, buf.len, PG_UTF8);
		int			utf8_len = utf8 == buf.data ? buf.len : (int) strlen(utf8);
		StringInfoData ascii;

		initStringInfo(&ascii);
		pgws_append_ascii_escaped(&ascii, utf8, utf8_len);
		pfree(buf.data);
		buf = ascii;
	}

	/*
	 * One event larger than the whole queue could never be sent: say so
	 * about this event (pending.c would say it about the transaction).
	 */
	if (pgws_queue_entry_size((uint64) buf.len + 1) > pgws_queue_capacity())
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pg_ws event \"%.*s\" is too large for the event queue",
						name_len, name),
				 errdetail("The event takes %d bytes; pg_ws.queue_size is %llu bytes.",
						   buf.len, (unsigned long long) pgws_queue_capacity()),
				 errhint("Send less data in one event, or increase the configuration parameter \"pg_ws.queue_size\".")));

	pgws_pending_add(buf.data, buf.len);
	pfree(buf.data);
	PG_RETURN_VOID();
}
