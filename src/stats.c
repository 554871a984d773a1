/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  pg_ws_stats(): what pg_ws is doing, as one row for SQL, and the shared
 *	  memory into which the worker publishes the figures only it knows.
 *
 * This file owns the statistics struct in shared memory and the SQL
 * function that reports it.  It reads the queue's figures through queue.c's
 * accessor and must not touch the ring itself; it must not know how the
 * worker counts what it publishes, nor ever make a writer or the worker
 * wait for a reader of statistics: the worker's figures are copied under a
 * spinlock, the queue's under the queue lock held shared for a few loads.
 *
 * Privileges: the SQL function and the pg_ws_stats view over it are
 * revoked from PUBLIC and granted to pg_monitor, as PostgreSQL does for its
 * own monitoring functions (sql/pg_ws--1.1.sql).
 *
 * src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

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
 * The worker publishes its own figures here, whenever they change or on a
 * timer as it prefers; a copy under a spinlock, so cheap enough to call
 * from its loop.  It publishes zeros before it exits.
 */
void
pgws_stats_publish_worker(const PgWsWorkerStats *worker)
{
	SpinLockAcquire(&stats->mutex);
	stats->worker = *worker;
	SpinLockRelease(&stats->mutex);
}

/*
 * pg_ws_stats(OUT worker_pid integer, OUT queue_bytes_used bigint,
 *			   OUT queue_bytes_capacity bigint, OUT writers_waiting integer,
 *			   OUT connections integer, OUT subscribers integer,
 *			   OUT worker_memory_bytes bigint)
 *
 * One row: the worker's process id (NULL while no worker runs), the bytes of
 * the queue holding events not yet sent to every subscriber, the queue's
 * size, the committing transactions waiting for room in it, and what the
 * worker last published (once a second): the sockets peers hold, the
 * subscribers among them, and the bytes its heap holds.
 */
PG_FUNCTION_INFO_V1(pg_ws_stats);

Datum
pg_ws_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	PgWsQueueStats queue;
	PgWsWorkerStats worker;
	Datum		values[7];
	bool		nulls[7];

	pgws_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != lengthof(values))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws_stats() is declared with %d columns but the pg_ws library returns %d",
						tupdesc->natts, (int) lengthof(values)),
				 errhint("Run ALTER EXTENSION pg_ws UPDATE.")));

	pgws_queue_get_stats(&queue);
	SpinLockAcquire(&stats->mutex);
	worker = stats->worker;
	SpinLockRelease(&stats->mutex);

	memset(nulls, 0, sizeof(nulls));
	if (queue.worker_pid != 0)
		values[0] = Int32GetDatum((int32) queue.worker_pid);
	else
		nulls[0] = true;
	values[1] = Int64GetDatum((int64) queue.bytes_used);
	values[2] = Int64GetDatum((int64) queue.bytes_capacity);
	values[3] = Int32GetDatum((int32) queue.writers_waiting);
	/* the worker's own figures mean nothing while no worker runs */
	values[4] = Int32GetDatum(worker.connections);
	values[5] = Int32GetDatum(worker.subscribers);
	values[6] = Int64GetDatum((int64) worker.memory_bytes);
	nulls[4] = nulls[5] = nulls[6] = (queue.worker_pid == 0);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
