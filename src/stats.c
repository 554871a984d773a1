/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  pg_ws_stats(): what pg_ws is doing, as one row for SQL, and the shared
 *	  memory into which the worker publishes the figures only it knows.
 *
 * This file owns the statistics struct in shared memory, the consistent
 * look at it that pg_ws_stats() and the worker's /metrics (metrics.c) both
 * take, the names of the reasons for refusals and drops, and the SQL
 * function.  It reads the queue's figures through queue.c's accessor and
 * must not touch the ring itself; it must not know how the worker counts
 * what it publishes, nor ever make a writer or the worker wait for a
 * reader of statistics: the worker's figures are copied under a spinlock,
 * the queue's under the queue lock held shared for a few loads, and
 * committing writers count their events with one atomic add (queue.c).
 *
 * Counters are totals since shared memory was set up (server start, or
 * the restart after a crash), across restarts of the worker: each worker
 * starts from what the one before it published, and publishes once a
 * second, whenever /metrics is read, and before it exits.
 *
 * Privileges: the SQL function and the pg_ws_stats view over it are
 * revoked from PUBLIC and granted to pg_monitor, as PostgreSQL does for its
 * own monitoring functions (sql/pg_ws--1.2.sql).
 *
 * src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "walread.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* the keys of pg_ws_stats' refusals and drops, and /metrics' labels */
const char *const pgws_refusal_names[PGWS_NUM_REFUSALS] = {
	[PGWS_REFUSAL_BAD_REQUEST] = "bad_request",
	[PGWS_REFUSAL_UNAUTHORIZED] = "unauthorized",
	[PGWS_REFUSAL_FORBIDDEN] = "forbidden",
	[PGWS_REFUSAL_NOT_FOUND] = "not_found",
	[PGWS_REFUSAL_METHOD] = "method_not_allowed",
	[PGWS_REFUSAL_WS_VERSION] = "websocket_version",
	[PGWS_REFUSAL_HEADER_TOO_LARGE] = "header_too_large",
	[PGWS_REFUSAL_HTTP_VERSION] = "http_version",
	[PGWS_REFUSAL_MAX_CONNECTIONS] = "max_connections",
	[PGWS_REFUSAL_MAX_PER_ADDRESS] = "max_connections_per_address",
	[PGWS_REFUSAL_DESCRIPTOR_LIMIT] = "descriptor_limit",
	[PGWS_REFUSAL_TLS] = "tls",
	[PGWS_REFUSAL_OTHER] = "other",
};

const char *const pgws_drop_names[PGWS_NUM_DROPS] = {
	[PGWS_DROP_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[PGWS_DROP_PING_TIMEOUT] = "ping_timeout",
	[PGWS_DROP_LAGGING] = "lagging",
	[PGWS_DROP_PROTOCOL_ERROR] = "protocol_error",
	[PGWS_DROP_UNSUPPORTED_DATA] = "unsupported_data",
	[PGWS_DROP_INVALID_DATA] = "invalid_data",
	[PGWS_DROP_POLICY] = "policy",
	[PGWS_DROP_MESSAGE_TOO_BIG] = "message_too_big",
	[PGWS_DROP_TOKEN_EXPIRED] = "token_expired",
	[PGWS_DROP_TOKEN_REJECTED] = "token_rejected",
	[PGWS_DROP_AUTH_REQUIRED] = "auth_required",
	[PGWS_DROP_DISCONNECTED] = "disconnected",
};

const char *const pgws_ignored_names[PGWS_NUM_IGNORED] = {
	[PGWS_IGNORED_LOGICAL_MESSAGE] = "logical_message",
	[PGWS_IGNORED_MALFORMED] = "malformed",
	[PGWS_IGNORED_OTHER_DATABASE] = "other_database",
};

PgWsWorkerStats pgws_worker_stats;

typedef struct PgWsStatsShared
{
	slock_t		mutex;			/* protects worker */
	PgWsWorkerStats worker;		/* as the worker last published it */
} PgWsStatsShared;

static PgWsStatsShared *stats = NULL;

void
pgws_stats_request_shmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PgWsStatsShared)));
}

void
pgws_stats_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats = ShmemInitStruct("pg_ws stats", sizeof(PgWsStatsShared), &found);
	if (!found)
	{
		SpinLockInit(&stats->mutex);
		memset(&stats->worker, 0, sizeof(stats->worker));
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The worker publishes its own figures here, once a second, when /metrics
 * is read and before it exits; a copy under a spinlock, so cheap enough to
 * call from its loop.
 */
void
pgws_stats_publish_worker(const PgWsWorkerStats *worker)
{
	SpinLockAcquire(&stats->mutex);
	stats->worker = *worker;
	SpinLockRelease(&stats->mutex);
}

/*
 * A new worker's counters: where the last one left them, so that they
 * only ever grow while shared memory lives.  The figures of now start at
 * zero.
 */
void
pgws_stats_restore_counters(PgWsWorkerStats *worker)
{
	PgWsWorkerStats last;

	SpinLockAcquire(&stats->mutex);
	last = stats->worker;
	SpinLockRelease(&stats->mutex);

	memset(worker, 0, sizeof(*worker));
	worker->connections_total = last.connections_total;
	worker->events_sent = last.events_sent;
	worker->messages_sent = last.messages_sent;
	worker->bytes_sent = last.bytes_sent;
	memcpy(worker->refusals, last.refusals, sizeof(worker->refusals));
	memcpy(worker->drops, last.drops, sizeof(worker->drops));
	memcpy(worker->ignored, last.ignored, sizeof(worker->ignored));
	worker->resumes_waited = last.resumes_waited;
	worker->resumes_refused = last.resumes_refused;
	worker->slot_invalidations = last.slot_invalidations;
	worker->messages_compressed = last.messages_compressed;
}

/*
 * Everything pg_ws_stats shows, at one moment.  The oldest position one
 * can resume after is the worker's history floor or, when older events are
 * read back from the WAL, the first record still in pg_wal, which any
 * process can look up (a directory read and a page of WAL, so only here
 * and not every second).
 */
void
pgws_stats_snapshot(PgWsStatsSnapshot *snap)
{
	pgws_require_preload();
	pgws_queue_get_stats(&snap->queue);
	SpinLockAcquire(&stats->mutex);
	snap->worker = stats->worker;
	SpinLockRelease(&stats->mutex);
	snap->now = GetCurrentTimestamp();

	/*
	 * Entries parked out of the queue (queue.c) are unsent events too:
	 * the oldest of them may be older than the queue's oldest.
	 */
	if (snap->queue.worker_pid != 0 && snap->worker.parked_since != 0 &&
		(snap->queue.oldest_queued_at == 0 ||
		 snap->worker.parked_since < snap->queue.oldest_queued_at))
		snap->queue.oldest_queued_at = snap->worker.parked_since;

	snap->history_first = snap->worker.history_floor;
	if (snap->queue.worker_pid != 0 && snap->worker.history_in_wal)
		snap->history_first = Min(snap->history_first,
								  pgws_walread_oldest_resumable());
}

/* {"reason": count, ...} for every reason, in the order of the enum */
static Datum
counts_jsonb(const char *const *names, const uint64 *counts, int n)
{
	pgws_jsonb_build build = PGWS_JSONB_BUILD_INIT;
	JsonbValue *result;
	int			i;

	pgws_jsonb_push(&build, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < n; i++)
	{
		JsonbValue	key;
		JsonbValue	value;

		key.type = jbvString;
		key.val.string.val = (char *) names[i];
		key.val.string.len = strlen(names[i]);
		pgws_jsonb_push(&build, WJB_KEY, &key);
		value.type = jbvNumeric;
		value.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric,
																Int64GetDatum((int64) counts[i])));
		pgws_jsonb_push(&build, WJB_VALUE, &value);
	}
	result = pgws_jsonb_finish(&build, WJB_END_OBJECT);
	return JsonbPGetDatum(JsonbValueToJsonb(result));
}

/*
 * pg_ws_stats(): one row, see sql/pg_ws--1.4.0.sql for the columns and the
 * README's "Monitoring" for what each means.  The worker's figures of now
 * are NULL while no worker runs; its counters are not.
 *
 * Columns are only ever added at the end, so that a library newer than
 * the extension's SQL (a package upgraded, ALTER EXTENSION UPDATE not run
 * yet) still answers with the columns the SQL declares: 1.2.2 and 1.3.0
 * declare all but subscribers_indexed and resumes_refused, 1.3.1 all but
 * resumes_refused.  The tuple is formed from the first natts values.
 */
#define PG_WS_STATS_COLS 24
#define PG_WS_STATS_COLS_1_3_1 23
#define PG_WS_STATS_COLS_1_2_2 22

PG_FUNCTION_INFO_V1(pg_ws_stats);

Datum
pg_ws_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	PgWsStatsSnapshot snap;
	PgWsWorkerStats *w = &snap.worker;
	Datum		values[PG_WS_STATS_COLS];
	bool		nulls[PG_WS_STATS_COLS];
	bool		running;
	int			i = 0;

	pgws_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != lengthof(values) &&
		tupdesc->natts != PG_WS_STATS_COLS_1_3_1 &&
		tupdesc->natts != PG_WS_STATS_COLS_1_2_2)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws_stats() is declared with %d columns but the pg_ws library returns %d",
						tupdesc->natts, (int) lengthof(values)),
				 errhint("Run ALTER EXTENSION pg_ws UPDATE.")));

	pgws_stats_snapshot(&snap);
	running = snap.queue.worker_pid != 0;
	memset(nulls, 0, sizeof(nulls));

	/* the worker */
	nulls[i] = !running;
	values[i++] = Int32GetDatum((int32) snap.queue.worker_pid);
	nulls[i] = !running || w->started_at == 0;
	values[i++] = TimestampTzGetDatum(w->started_at);
	nulls[i] = !running;
	values[i++] = Int64GetDatum((int64) w->memory_bytes);

	/* connections */
	nulls[i] = !running;
	values[i++] = Int32GetDatum(w->connections);
	nulls[i] = !running;
	values[i++] = Int32GetDatum(w->subscribers);
	values[i++] = Int64GetDatum((int64) w->connections_total);

	/* the queue */
	values[i++] = Int64GetDatum((int64) snap.queue.bytes_used);
	values[i++] = Int64GetDatum((int64) snap.queue.bytes_capacity);
	values[i++] = Int32GetDatum((int32) snap.queue.writers_waiting);
	if (snap.queue.oldest_queued_at == 0)
		nulls[i++] = true;
	else
	{
		Interval   *age = palloc(sizeof(Interval));
		TimestampTz diff = Max(snap.now - snap.queue.oldest_queued_at, 0);

		/* microseconds, in the time part only, as clock_timestamp() - t */
		age->month = 0;
		age->day = 0;
		age->time = diff;
		values[i++] = IntervalPGetDatum(age);
	}

	/* what was sent */
	values[i++] = Int64GetDatum((int64) snap.queue.events_queued);
	values[i++] = Int64GetDatum((int64) w->events_sent);
	values[i++] = Int64GetDatum((int64) w->messages_sent);
	values[i++] = Int64GetDatum((int64) w->bytes_sent);

	/* what was refused or dropped, by reason */
	values[i++] = counts_jsonb(pgws_refusal_names, w->refusals, PGWS_NUM_REFUSALS);
	values[i++] = counts_jsonb(pgws_drop_names, w->drops, PGWS_NUM_DROPS);
	values[i++] = counts_jsonb(pgws_ignored_names, w->ignored, PGWS_NUM_IGNORED);
	values[i++] = Int64GetDatum((int64) w->resumes_waited);

	/* where subscribers can resume */
	nulls[i] = !running;
	values[i++] = Int64GetDatum((int64) snap.history_first);
	nulls[i] = !running;
	values[i++] = Int64GetDatum((int64) w->history_last);
	nulls[i] = !running;
	values[i++] = BoolGetDatum(w->history_in_wal);
	values[i++] = Int64GetDatum((int64) w->slot_invalidations);
	nulls[i] = !running;
	values[i++] = Int32GetDatum(w->subscribers_indexed);
	values[i++] = Int64GetDatum((int64) w->resumes_refused);

	Assert(i == PG_WS_STATS_COLS);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
