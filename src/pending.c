/*-------------------------------------------------------------------------
 *
 * pending.c
 *	  Events of the current transaction, held in backend memory until it
 *	  commits, and the transaction callbacks that hand them to the queue.
 *
 * This file owns what happens to an event between its row trigger (or
 * pg_ws_send(), send.c) and the shared queue: savepoints, rollbacks,
 * PREPARE, pre-commit and commit.  Every event takes the same way, whoever
 * rendered it.  It must not render events (render.c, send.c) nor touch the
 * ring (queue.c).
 *
 * async.c keeps one list per subtransaction level and concatenates lists
 * on subcommit.  Events here only ever grow at the end of one buffer, so a
 * simpler shape does the same job: one buffer in TopTransactionContext plus
 * a stack of marks, one per open subtransaction level that added events,
 * each remembering where that level's events start.  Subabort truncates the
 * buffer back to its mark; subcommit hands its events to the parent by
 * relabelling or dropping its mark.  Both are O(1).
 *
 * src/pending.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/xact.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

typedef struct PendingMark
{
	int			nest_level;		/* subtransaction level that owns the events
								 * from here on */
	int			offset;			/* where they start in pending_events */
	int			nevents;		/* events before offset */
} PendingMark;

/*
 * All live in TopTransactionContext; the pointers are reset at every
 * transaction end, never freed one by one.
 */
static StringInfo pending_events = NULL;	/* JSON Lines: json\n json\n ... */
static int	pending_count = 0;
static PendingMark *marks = NULL;
static int	nmarks = 0;
static int	max_marks = 0;

static void
pending_reset(void)
{
	pending_events = NULL;
	pending_count = 0;
	marks = NULL;
	nmarks = 0;
	max_marks = 0;
}

/*
 * Queue one rendered event (UTF-8 JSON) for the current (sub)transaction.
 * Fails at once when this transaction's events could never fit in the
 * shared queue, instead of at commit after all the work.
 */
void
pgws_pending_add(const char *json, int len)
{
	int			level = GetCurrentTransactionNestLevel();
	uint64		payload;

	/*
	 * A parallel worker's events would be discarded with its transaction:
	 * only the leader's commit queues anything.  pg_ws_send() says so in
	 * its own words; row triggers never fire there (PostgreSQL refuses
	 * writes in parallel mode before any trigger runs), so this is the
	 * guard for whatever else may ever call us there.
	 */
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot queue pg_ws events during a parallel operation")));

	if (pending_events == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		pending_events = makeStringInfo();
		max_marks = 4;
		marks = palloc(max_marks * sizeof(PendingMark));
		MemoryContextSwitchTo(old);
	}

	payload = (uint64) pending_events->len + len + 1;
	if (pgws_queue_entry_size(payload) > pgws_queue_capacity())
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pg_ws events of this transaction do not fit in the event queue"),
				 errdetail("%d events need more than %llu bytes, the size of pg_ws.queue_size.",
						   pending_count + 1,
						   (unsigned long long) pgws_queue_capacity()),
				 errhint("Consider increasing the configuration parameter \"pg_ws.queue_size\", or change fewer rows per transaction.")));

	if (level > 1 && (nmarks == 0 || marks[nmarks - 1].nest_level < level))
	{
		if (nmarks == max_marks)
		{
			max_marks *= 2;
			marks = repalloc(marks, max_marks * sizeof(PendingMark));
		}
		marks[nmarks].nest_level = level;
		marks[nmarks].offset = pending_events->len;
		marks[nmarks].nevents = pending_count;
		nmarks++;
	}

	/* JSON Lines: the renderer never writes a raw newline (escape_json) */
	Assert(memchr(json, '\n', len) == NULL);
	appendBinaryStringInfo(pending_events, json, len);
	appendStringInfoChar(pending_events, '\n');
	pending_count++;
}

static void
pgws_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pending_count > 0)
				pgws_queue_append(pending_events->data, pending_events->len,
								  pending_count);
			break;
		case XACT_EVENT_COMMIT:
			pgws_queue_finish(true);
			pending_reset();
			break;
		case XACT_EVENT_ABORT:
			pgws_queue_finish(false);
			pending_reset();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (pending_count > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has queued pg_ws events"),
						 errdetail("The transaction changed rows of tables that pg_ws broadcasts, or called pg_ws_send().")));
			break;
		case XACT_EVENT_PREPARE:
			pending_reset();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/*
			 * A parallel worker never has events: row triggers do not fire
			 * there, and pgws_pending_add() refuses in parallel mode.
			 */
			Assert(pending_count == 0);
			pending_reset();
			break;
	}
}

static void
pgws_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (nmarks == 0 || marks[nmarks - 1].nest_level != level)
		return;					/* this subtransaction added no events */

	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			/* the parent owns these events now */
			if (level - 1 <= 1 ||
				(nmarks > 1 && marks[nmarks - 2].nest_level == level - 1))
				nmarks--;
			else
				marks[nmarks - 1].nest_level = level - 1;
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			pending_events->len = marks[nmarks - 1].offset;
			pending_events->data[pending_events->len] = '\0';
			pending_count = marks[nmarks - 1].nevents;
			nmarks--;
			break;
		default:
			break;
	}
}

void
pgws_register_xact_callbacks(void)
{
	RegisterXactCallback(pgws_xact_callback, NULL);
	RegisterSubXactCallback(pgws_subxact_callback, NULL);
}

/*
 * pg_ws_pending_events() returns setof text
 *
 * The events the current transaction has queued so far, in order, exactly
 * as they will be sent but for their position ("seq" and "epoch"), which
 * they get at commit (and without the row an event carries for filters,
 * after a tab, which is never sent).
 */
PG_FUNCTION_INFO_V1(pg_ws_pending_events);

Datum
pg_ws_pending_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			off = 0;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	while (pending_events != NULL && off < pending_events->len)
	{
		char	   *src = pending_events->data + off;
		char	   *nl = memchr(src, '\n', pending_events->len - off);
		int			line_len = nl - src;
		char	   *tab = memchr(src, '\t', line_len);
		int			len = tab ? tab - src : line_len;
		char	   *json;
		Datum		value;
		bool		isnull = false;

		/* events are UTF-8; show them in the database's encoding */
		json = pg_any_to_server(src, len, PG_UTF8);
		value = PointerGetDatum(cstring_to_text_with_len(json,
														 json == src ? len : strlen(json)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		off += line_len + 1;
	}
	return (Datum) 0;
}
