/*-------------------------------------------------------------------------
 *
 * filtercols.c
 *	  The names of the watched tables' filter columns, for the worker's
 *	  check of a ?filter= field: a small set in shared memory, and the
 *	  "pg_ws catalog reader", a dynamic background worker that fills it
 *	  from pg_ws_watched.
 *
 * This file owns the set, the reader, and when a read is started.  http.c
 * asks it whether a field is a filter column and answers the request
 * itself; this file must not answer requests, nor render or match events.
 *
 * Why a process of its own: the pg_ws worker is connected to no database
 * (worker.c), so it cannot read pg_ws_watched, and a filter column may be
 * declared at any moment (on a standby, replayed from the primary).  The
 * reader connects to pg_ws.database, reads the distinct names (none when
 * the extension is not installed there), stores them with the time its
 * read began, and exits.  It only reads, so it runs on hot standbys too.
 *
 * When.  The worker starts a reader when it starts, and again when a
 * request names a field that is neither the document's nor in the set:
 * the worker notes the field as asked for, and the request is answered 503
 * with Retry-After: 1 (http.c).  A field is refused (400) only once a read
 * that began after it was asked for has completed without it, and is then
 * forgotten.  So a column declared while the worker runs is known on the
 * retry of the first request that names it; a misspelt field is refused on
 * the retry; and whatever peers ask, one reader runs at a time, started at
 * most once per START_INTERVAL_MS.  (A rule by the age of the last read
 * instead would race with the retry: a read one second old at the retry
 * either refuses a column declared since, or starts another read, for
 * ever.)  At most ASKED_FIELDS fields wait for a read; a new one takes the
 * place of the oldest, which is then asked for again on its retry.
 *
 * Bounds: at most FILTER_COLUMN_NAMES names; a catalog with more
 * overflows the set, and every field is then accepted, as it is when no
 * reader can be started (no free max_worker_processes slot).  Accepting a
 * field no event has costs nothing: the filter matches no event.
 *
 * src/filtercols.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define FILTER_COLUMN_NAMES 64
#define START_INTERVAL_MS 1000
#define ASKED_FIELDS 16

typedef struct PgWsFilterColumns
{
	LWLock	   *lock;
	bool		loaded;			/* a read has completed */
	bool		overflow;		/* it found more names than fit */
	TimestampTz read_started;	/* when the last completed read began */
	int			nnames;
	NameData	names[FILTER_COLUMN_NAMES];
} PgWsFilterColumns;

static PgWsFilterColumns *filter_columns = NULL;

/* the worker's own: the reader it started last, and when */
static BackgroundWorkerHandle *reader = NULL;
static TimestampTz reader_started = 0;
static PgWsLogLimit start_failures;

/* fields requests named that the set lacked, and when they were first */
typedef struct AskedField
{
	NameData	name;
	TimestampTz asked;			/* 0: a free entry */
} AskedField;

static AskedField asked_fields[ASKED_FIELDS];

void
pgws_filter_columns_request_shmem(void)
{
	RequestAddinShmemSpace(sizeof(PgWsFilterColumns));
	RequestNamedLWLockTranche("pg_ws_filter_columns", 1);
}

void
pgws_filter_columns_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	filter_columns = ShmemInitStruct("pg_ws filter columns",
									 sizeof(PgWsFilterColumns), &found);
	if (!found)
	{
		filter_columns->lock = &(GetNamedLWLockTranche("pg_ws_filter_columns"))->lock;
		filter_columns->loaded = false;
		filter_columns->overflow = false;
		filter_columns->read_started = 0;
		filter_columns->nnames = 0;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* is the reader the worker started last still starting or reading? */
static bool
reader_running(void)
{
	pid_t		pid;

	if (reader == NULL)
		return false;
	switch (GetBackgroundWorkerPid(reader, &pid))
	{
		case BGWH_NOT_YET_STARTED:
		case BGWH_STARTED:
			return true;
		case BGWH_STOPPED:
		case BGWH_POSTMASTER_DIED:
			break;
	}
	pfree(reader);
	reader = NULL;
	return false;
}

/*
 * Start a reader, unless one is running or one was started less than
 * START_INTERVAL_MS ago.  False when none can be (no free slot), logged
 * with a rate limit.  The worker calls it (bgw_notify_pid is the worker).
 */
bool
pgws_filter_columns_read(void)
{
	BackgroundWorker worker;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext oldcxt;
	bool		started;

	if (reader_running() ||
		!TimestampDifferenceExceeds(reader_started, now, START_INTERVAL_MS))
		return true;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;	/* hot standbys too */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_ws");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_ws_filter_columns_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_ws catalog reader");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_ws catalog reader");
	worker.bgw_notify_pid = MyProcPid;

	/* the handle outlives the request that asked for the read */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, &reader);
	MemoryContextSwitchTo(oldcxt);
	if (!started)
	{
		reader = NULL;
		if (pgws_log_limit_allowed(&start_failures, "starting the pg_ws catalog reader"))
			ereport(LOG,
					(errmsg("pg_ws could not start its catalog reader: every ?filter= field is accepted until it can"),
					 errhint("Raise max_worker_processes: pg_ws needs one more slot for a moment to read its watched tables' filter columns.")));
		return false;
	}
	reader_started = now;
	return true;
}

/* the entry of an asked field, or the one a new field takes */
static AskedField *
asked_field(const char *field, bool *found)
{
	AskedField *oldest = &asked_fields[0];

	for (int i = 0; i < ASKED_FIELDS; i++)
	{
		AskedField *a = &asked_fields[i];

		if (a->asked != 0 && strcmp(NameStr(a->name), field) == 0)
		{
			*found = true;
			return a;
		}
		if (a->asked < oldest->asked)
			oldest = a;
	}
	*found = false;
	return oldest;
}

/*
 * Is field one of the watched tables' filter columns?  The worker asks for
 * a field a request names: PGWS_FILTER_COLUMN_READING while no read that
 * began after the field was first asked for has completed (the request
 * should be made again in a second), PGWS_FILTER_COLUMN_UNKNOWN once one
 * has, without it.  A set that overflowed, or that no reader can fill,
 * takes every field.
 */
PgWsFilterColumnAnswer
pgws_filter_column_known(const char *field)
{
	bool		known;
	bool		found;
	TimestampTz read_started;
	AskedField *a;

	LWLockAcquire(filter_columns->lock, LW_SHARED);
	read_started = filter_columns->loaded ? filter_columns->read_started : 0;
	known = filter_columns->overflow;
	for (int i = 0; i < filter_columns->nnames && !known; i++)
		known = strcmp(NameStr(filter_columns->names[i]), field) == 0;
	LWLockRelease(filter_columns->lock);
	if (known)
		return PGWS_FILTER_COLUMN_KNOWN;

	a = asked_field(field, &found);
	if (found && read_started > a->asked)
	{
		a->asked = 0;
		return PGWS_FILTER_COLUMN_UNKNOWN;
	}
	if (!found)
	{
		namestrcpy(&a->name, field);
		a->asked = GetCurrentTimestamp();
	}
	if (!pgws_filter_columns_read())
		return PGWS_FILTER_COLUMN_KNOWN;
	return PGWS_FILTER_COLUMN_READING;
}

/*
 * The reader's one query: the distinct filter column names of
 * pg_ws_watched, one more than fit (to tell an overflow); nothing when
 * pg_ws is not installed here, or its catalog is 1.3.0's, without them.
 * Every name is qualified: the reader runs as the bootstrap superuser.
 */
static int
read_names(NameData *names, bool *overflow)
{
	char	   *schema = NULL;
	int			n = 0;

	if (SPI_execute("SELECT pg_catalog.quote_ident(n.nspname) "
					"FROM pg_catalog.pg_extension e "
					"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
					"JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid "
					"AND c.relname OPERATOR(pg_catalog.=) 'pg_ws_watched' "
					"JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid "
					"AND a.attname OPERATOR(pg_catalog.=) 'filter_columns' AND NOT a.attisdropped "
					"WHERE e.extname OPERATOR(pg_catalog.=) 'pg_ws'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_ws: reading pg_extension failed");
	if (SPI_processed == 1)
		schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*overflow = false;
	if (schema == NULL)
		return 0;

	if (SPI_execute(psprintf("SELECT DISTINCT f.name::pg_catalog.text "
							 "FROM %s.pg_ws_watched w, pg_catalog.unnest(w.filter_columns) f (name) "
							 "WHERE f.name IS NOT NULL",
							 schema),
					true, FILTER_COLUMN_NAMES + 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_ws: reading pg_ws_watched failed");
	*overflow = SPI_processed > FILTER_COLUMN_NAMES;
	for (n = 0; n < (int) SPI_processed && n < FILTER_COLUMN_NAMES; n++)
		namestrcpy(&names[n], SPI_getvalue(SPI_tuptable->vals[n],
										   SPI_tuptable->tupdesc, 1));
	return n;
}

/*
 * The pg_ws catalog reader: read the names in one read-only transaction,
 * store them unless a read that began later stored its own, and exit.
 */
void
pg_ws_filter_columns_main(Datum main_arg)
{
	NameData	names[FILTER_COLUMN_NAMES];
	bool		overflow;
	int			n;
	TimestampTz started;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(pgws_database, NULL, 0);

	started = GetCurrentTimestamp();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reading pg_ws_watched's filter columns");
	n = read_names(names, &overflow);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	LWLockAcquire(filter_columns->lock, LW_EXCLUSIVE);
	if (!filter_columns->loaded || filter_columns->read_started <= started)
	{
		memcpy(filter_columns->names, names, n * sizeof(NameData));
		filter_columns->nnames = n;
		filter_columns->overflow = overflow;
		filter_columns->read_started = started;
		filter_columns->loaded = true;
	}
	LWLockRelease(filter_columns->lock);
	proc_exit(0);
}
