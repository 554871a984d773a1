/*-------------------------------------------------------------------------
 *
 * timeline.c
 *	  Which history a position belongs to: the timeline it was made on,
 *	  and where that timeline's history and this node's part.
 *
 * This file owns the timeline an event's position is labelled with and
 * the comparison of a position's timeline with this node's history, read
 * from PostgreSQL's timeline history files.  It must not decide what a
 * subscriber is sent (broadcast.c does, with the fork point given here),
 * nor read or write WAL records.
 *
 * Why.  A position (seq) is a WAL position, the same on every node that
 * replayed the same WAL.  After a failover with asynchronous replication
 * the new primary's timeline forks off the old one where its replay
 * ended: the old primary may have written (and pg_ws sent) events past
 * that point that the new primary never had, and the new primary writes
 * other events at the same positions.  So a position also says on which
 * timeline it was made (the epoch's last part), and a node honours it
 * only if that timeline's history and its own agree up to the position.
 *
 * The label.  An event is labelled with the timeline the node is on when
 * it frames the event: on a primary the timeline it inserts WAL on; on a
 * standby the one it has replayed up to now, read after the event's
 * record was read.  Either contains every record the node has read so
 * far (a standby can only switch to a timeline that forks off at or after
 * what it replayed), so the label is always a history the event is on.
 *
 * The fork.  Given a position's timeline T, pgws_timeline_fork() returns
 * the first WAL position at which T's history and this node's differ:
 * the end of T in this node's history when T is one of its ancestors
 * (PG_UINT64_MAX when T is its current timeline), or, when T's history
 * file is here (T is newer, and this node is its ancestor or a sibling),
 * the end of the newest timeline the two histories share, whichever of
 * them ended it first.  0 when nothing links them: every position of T is
 * then past the fork.
 *
 * A dead branch.  A standby learns of a newer timeline when its WAL
 * receiver fetches that timeline's history file from its upstream.  If
 * the standby has replayed past where the newer timeline forked off its
 * own (an old primary restarted as a standby before pg_rewind, or a
 * standby that received more from a dead primary than the one promoted),
 * what it holds past the fork is on no live history and it can never
 * follow: pgws_timeline_diverged() says so, and the worker stops serving
 * until pg_rewind brings the node back.
 *
 * src/timeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/timeline.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "nodes/pg_list.h"
#include "utils/memutils.h"

/* this node's history, read for the timeline it was on then */
static TimeLineID own_tli = 0;
static List *own_history = NIL;
static MemoryContext timeline_context = NULL;

/*
 * The timeline this node's positions are labelled with now: the one WAL
 * is inserted on, or in recovery the one replayed up to now.
 */
TimeLineID
pgws_timeline_current(void)
{
	TimeLineID	tli;

	if (RecoveryInProgress())
		(void) GetXLogReplayRecPtr(&tli);
	else
		tli = GetWALInsertionTimeLine();
	return tli;
}

/* where timeline tli ends in history (PG_UINT64_MAX: it has not); 0 if absent */
static uint64
end_in(List *history, TimeLineID tli)
{
	ListCell   *lc;

	foreach(lc, history)
	{
		TimeLineHistoryEntry *e = (TimeLineHistoryEntry *) lfirst(lc);

		if (e->tli == tli)
			return XLogRecPtrIsInvalid(e->end) ? PG_UINT64_MAX : e->end;
	}
	return 0;
}

/*
 * This node's history, read again when its timeline changed (a standby
 * that followed a promotion).  Kept in a context of its own.
 */
static List *
own_timeline_history(void)
{
	TimeLineID	tli = pgws_timeline_current();

	if (tli != own_tli || own_history == NIL)
	{
		MemoryContext old;

		if (timeline_context == NULL)
			timeline_context = AllocSetContextCreate(TopMemoryContext,
													 "pg_ws timelines",
													 ALLOCSET_SMALL_SIZES);
		MemoryContextReset(timeline_context);
		old = MemoryContextSwitchTo(timeline_context);
		own_history = readTimeLineHistory(tli);
		MemoryContextSwitchTo(old);
		own_tli = tli;
	}
	return own_history;
}

/*
 * The first WAL position at which timeline tli's history and this node's
 * part (see the file header): positions of tli below it are on this
 * node's history, those at or past it are not, or not yet.
 */
uint64
pgws_timeline_fork(TimeLineID tli)
{
	List	   *ours = own_timeline_history();
	uint64		fork = 0;
	uint64		end = end_in(ours, tli);
	MemoryContext cxt;
	MemoryContext old;
	List	   *theirs;
	ListCell   *lc;

	if (end != 0)
		return end;				/* tli is ours, or one of our ancestors */
	if (tli == 0 || !existsTimeLineHistory(tli))
		return 0;				/* a timeline this node knows nothing of */

	/* the newest timeline both histories hold, and who ended it first */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_ws timeline",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	theirs = readTimeLineHistory(tli);
	foreach(lc, theirs)
	{
		TimeLineHistoryEntry *e = (TimeLineHistoryEntry *) lfirst(lc);
		uint64		our_end = end_in(ours, e->tli);

		if (our_end != 0)
		{
			uint64		their_end = XLogRecPtrIsInvalid(e->end) ?
				PG_UINT64_MAX : e->end;

			fork = Min(our_end, their_end);
			break;				/* histories list the newest first */
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return fork;
}

/*
 * Has this standby replayed past the point where the newest timeline it
 * knows of forked off its own (see "A dead branch" above)?  Then why it
 * cannot serve, in words for /health, a refusal and the log (palloc'd);
 * otherwise NULL.  Never on a primary: what it writes is the live history
 * by definition, even when an older primary's history files lie around.
 */
char *
pgws_timeline_diverged(void)
{
	TimeLineID	tli;
	TimeLineID	newest;
	XLogRecPtr	replayed;
	uint64		fork;

	if (!RecoveryInProgress())
		return NULL;
	replayed = GetXLogReplayRecPtr(&tli);
	newest = findNewestTimeLine(tli);
	if (newest <= tli)
		return NULL;
	fork = pgws_timeline_fork(newest);
	if (replayed <= fork)
		return NULL;
	return psprintf("this standby replayed timeline %u up to %X/%X, past where timeline %u forked off it at %X/%X: what it holds past the fork is on no live history (pg_rewind brings it back)",
					tli, LSN_FORMAT_ARGS(replayed), newest,
					LSN_FORMAT_ARGS((XLogRecPtr) fork));
}
