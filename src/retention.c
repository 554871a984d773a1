/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  How long pg_ws's events stay readable from WAL: the physical
 *	  replication slot "pg_ws", which the worker creates, moves forward
 *	  and drops according to pg_ws.history_retention.
 *
 * This file owns that slot and the parsing of the setting.  It must not
 * read WAL (walread.c) nor decide what a subscriber is told when its
 * history is gone; and it must never raise an ERROR out of the worker for
 * a slot it cannot have: it logs a WARNING, once per problem, and the
 * worker goes on without retention.
 *
 * The setting is a time ('1d', '90min') or a size ('2GB').  A size keeps
 * that much WAL behind the end of WAL.  A time needs to know where the end
 * of WAL was back then, which WAL itself does not say cheaply, so the
 * worker notes (time, end of WAL) every minute or so and moves the slot to
 * the newest note older than the retention.  The notes live in the worker
 * only: after a restart the slot stays where it was until new notes are
 * old enough, keeping up to one retention period more than asked.
 *
 * A physical slot holds WAL on a hot standby too (restartpoints honour
 * it), and the end of WAL there is the replay position.
 *
 * src/retention.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "walread.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/memutils.h"

#define PGWS_SLOT_NAME "pg_ws"

/* how often the slot is looked after, and the end of WAL noted at most */
#define HOUSEKEEPING_INTERVAL_MS	(10 * 1000)
#define SAMPLE_INTERVAL_MIN_S		60
/* notes kept at most: a long retention gets notes further apart */
#define MAX_SAMPLES					1024

typedef enum RetentionKind
{
	RETAIN_NOTHING,
	RETAIN_TIME,
	RETAIN_SIZE
} RetentionKind;

typedef struct RetentionSetting
{
	RetentionKind kind;
	int			amount;			/* seconds, or megabytes */
} RetentionSetting;

/* the problems we warn about, each once until it changes */
typedef enum RetentionProblem
{
	PROBLEM_NONE,
	PROBLEM_NO_SLOTS,
	PROBLEM_WAL_LEVEL,
	PROBLEM_SLOTS_FULL,
	PROBLEM_NOT_OURS,
	PROBLEM_BUSY,
	PROBLEM_FAILED
} RetentionProblem;

typedef struct EndOfWalSample
{
	TimestampTz time;
	XLogRecPtr	lsn;
} EndOfWalSample;

static RetentionSetting setting = {RETAIN_NOTHING, 0};

static TimestampTz next_housekeeping = 0;
static RetentionProblem last_problem = PROBLEM_NONE;
static XLogRecPtr floor_lsn = InvalidXLogRecPtr;

/* a ring of notes, oldest first */
static EndOfWalSample samples[MAX_SAMPLES];
static int	samples_head = 0;
static int	samples_count = 0;

/*
 * Check hook of pg_ws.history_retention: '0' (or empty) for none, else a
 * time or a size with its unit.  A bare number is refused rather than
 * guessed at.
 */
bool
pgws_check_history_retention(char **newval, void **extra, GucSource source)
{
	RetentionSetting parsed = {RETAIN_NOTHING, 0};
	RetentionSetting *result;
	const char *value = *newval ? *newval : "";
	const char *hint = NULL;
	int			amount;

	while (*value == ' ')
		value++;
	if (*value == '\0' || strcmp(value, "0") == 0)
		parsed.kind = RETAIN_NOTHING;
	else if (parse_int(value, &amount, 0, NULL))
	{
		GUC_check_errdetail("A retention needs a unit.");
		GUC_check_errhint("Write a time such as '12h' or '7d', a size such as '2GB', or 0 for none.");
		return false;
	}
	else if (parse_int(value, &amount, GUC_UNIT_S, &hint))
	{
		parsed.kind = RETAIN_TIME;
		parsed.amount = amount;
	}
	else if (parse_int(value, &amount, GUC_UNIT_MB, &hint))
	{
		parsed.kind = RETAIN_SIZE;
		parsed.amount = amount;
	}
	else
	{
		GUC_check_errdetail("\"%s\" is neither a time nor a size.", value);
		GUC_check_errhint("Write a time such as '12h' or '7d', a size such as '2GB', or 0 for none.");
		return false;
	}

	if (parsed.kind != RETAIN_NOTHING && parsed.amount <= 0)
	{
		GUC_check_errdetail("A retention must be at least one second or one megabyte.");
		return false;
	}

	/* PostgreSQL frees extra itself, so it comes from its allocator */
	result = pgws_guc_extra_alloc(sizeof(RetentionSetting));
	if (result == NULL)
		return false;
	*result = parsed;
	*extra = result;
	return true;
}

void
pgws_assign_history_retention(const char *newval, void *extra)
{
	setting = *(RetentionSetting *) extra;
	/* look after the slot at the next tick */
	next_housekeeping = 0;
}

/* log a slot problem at WARNING, unless it was the last one we logged */
#define retention_problem(problem, ...) \
	do { \
		if (last_problem != (problem)) \
			ereport(WARNING, __VA_ARGS__); \
		last_problem = (problem); \
	} while (0)

/*
 * Undo what an ERROR from slot.c left behind: its lock on slot allocation
 * or on a slot's I/O, our hold on the slot.  The worker holds no lock of
 * its own while it ticks, so releasing all of them is safe here.
 */
static void
retention_recover(void)
{
	ErrorData  *edata;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	edata = CopyErrorData();
	FlushErrorState();
	MemoryContextSwitchTo(old);
	pgstat_report_wait_end();
	ConditionVariableCancelSleep();
	LWLockReleaseAll();
	if (MyReplicationSlot != NULL)
		ReplicationSlotRelease();

	retention_problem(PROBLEM_FAILED,
					  (errcode(edata->sqlerrcode),
					   errmsg("pg_ws could not look after its replication slot: %s",
							  edata->message),
					   errdetail("Events stay readable from WAL only as long as the server keeps WAL anyway.")));
	FreeErrorData(edata);
}

/* is there a slot free for us?  Racy, but ReplicationSlotCreate decides */
static bool
retention_free_slot_exists(void)
{
	bool		found = false;
	int			i;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots && !found; i++)
		found = !ReplicationSlotCtl->replication_slots[i].in_use;
	LWLockRelease(ReplicationSlotControlLock);
	return found;
}

/* create the slot, holding WAL from the last redo point (replay: restartpoint) */
static void
retention_create_slot(void)
{
	if (max_replication_slots == 0)
	{
		retention_problem(PROBLEM_NO_SLOTS,
						  (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						   errmsg("pg_ws.history_retention needs a replication slot, and max_replication_slots is 0"),
						   errhint("Set max_replication_slots to at least 1 and restart the server, or set pg_ws.history_retention to 0.")));
		return;
	}
	if (wal_level < WAL_LEVEL_REPLICA)
	{
		retention_problem(PROBLEM_WAL_LEVEL,
						  (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						   errmsg("pg_ws.history_retention needs wal_level \"replica\" or higher")));
		return;
	}
	if (!retention_free_slot_exists())
	{
		retention_problem(PROBLEM_SLOTS_FULL,
						  (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						   errmsg("pg_ws.history_retention needs a replication slot, and all are in use"),
						   errhint("Free one or increase max_replication_slots.")));
		return;
	}

	PG_TRY();
	{
		pgws_slot_create_physical(PGWS_SLOT_NAME);
		ReplicationSlotReserveWal();
		ReplicationSlotMarkDirty();
		ReplicationSlotSave();
		floor_lsn = MyReplicationSlot->data.restart_lsn;
		ReplicationSlotRelease();
		ereport(LOG,
				(errmsg("pg_ws created replication slot \"%s\" to keep WAL from %X/%X",
						PGWS_SLOT_NAME, LSN_FORMAT_ARGS(floor_lsn))));
		last_problem = PROBLEM_NONE;
	}
	PG_CATCH();
	{
		retention_recover();
	}
	PG_END_TRY();
}

/* drop the slot: no retention wanted, or it was invalidated */
static void
retention_drop_slot(void)
{
	PG_TRY();
	{
		ReplicationSlotDrop(PGWS_SLOT_NAME, true);
		ereport(LOG,
				(errmsg("pg_ws dropped replication slot \"%s\"", PGWS_SLOT_NAME)));
	}
	PG_CATCH();
	{
		retention_recover();
	}
	PG_END_TRY();
	floor_lsn = InvalidXLogRecPtr;
}

/* move the slot's restart_lsn forward to target, never back */
static bool
retention_advance(XLogRecPtr target)
{
	volatile bool ok = false;

	PG_TRY();
	{
		pgws_slot_acquire(PGWS_SLOT_NAME);
		SpinLockAcquire(&MyReplicationSlot->mutex);
		if (MyReplicationSlot->data.restart_lsn < target)
			MyReplicationSlot->data.restart_lsn = target;
		floor_lsn = MyReplicationSlot->data.restart_lsn;
		SpinLockRelease(&MyReplicationSlot->mutex);
		/* on disk at the next checkpoint, as pg_replication_slot_advance */
		ReplicationSlotMarkDirty();
		ReplicationSlotRelease();
		ReplicationSlotsComputeRequiredLSN();
		ok = true;
	}
	PG_CATCH();
	{
		retention_recover();
	}
	PG_END_TRY();
	return ok;
}

/* note where WAL ends now, if the last note is old enough */
static void
retention_sample(TimestampTz now, XLogRecPtr end)
{
	int64		spacing_s = SAMPLE_INTERVAL_MIN_S;
	EndOfWalSample *last;

	/* notes over twice the retention, at most MAX_SAMPLES of them */
	if (setting.kind == RETAIN_TIME)
		spacing_s = Max(spacing_s, 2 * (int64) setting.amount / MAX_SAMPLES + 1);

	if (samples_count > 0)
	{
		last = &samples[(samples_head + samples_count - 1) % MAX_SAMPLES];
		if (now - last->time < spacing_s * USECS_PER_SEC && end >= last->lsn)
			return;
		/* WAL went back (a new timeline from an older point): start over */
		if (end < last->lsn)
			samples_count = 0;
	}
	if (samples_count == MAX_SAMPLES)
	{
		samples_head = (samples_head + 1) % MAX_SAMPLES;
		samples_count--;
	}
	samples[(samples_head + samples_count) % MAX_SAMPLES] =
		(EndOfWalSample) {now, end};
	samples_count++;
}

/*
 * The newest note older than the retention, or Invalid; the notes before
 * it are of no more use.
 */
static XLogRecPtr
retention_time_target(TimestampTz now)
{
	TimestampTz cutoff = now - (int64) setting.amount * USECS_PER_SEC;

	if (samples_count == 0 || samples[samples_head].time > cutoff)
		return InvalidXLogRecPtr;
	while (samples_count > 1 &&
		   samples[(samples_head + 1) % MAX_SAMPLES].time <= cutoff)
	{
		samples_head = (samples_head + 1) % MAX_SAMPLES;
		samples_count--;
	}
	return samples[samples_head].lsn;
}

/* what state is the slot in, by a look at shared memory */
typedef enum SlotState
{
	SLOT_ABSENT,
	SLOT_OURS,					/* physical, idle, holding WAL */
	SLOT_INVALIDATED,			/* PostgreSQL invalidated it: it holds nothing */
	SLOT_BUSY,					/* someone streams from it */
	SLOT_LOGICAL				/* someone else's slot of that name */
} SlotState;

static SlotState
retention_slot_state(XLogRecPtr *restart_lsn, const char **cause)
{
	ReplicationSlot *slot;
	SlotState	state = SLOT_ABSENT;

	*restart_lsn = InvalidXLogRecPtr;
	if (max_replication_slots == 0)
		return SLOT_ABSENT;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(PGWS_SLOT_NAME, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		*restart_lsn = slot->data.restart_lsn;
		if (SlotIsLogical(slot))
			state = SLOT_LOGICAL;
		else if (pgws_slot_active_elsewhere(slot))
			state = SLOT_BUSY;
		else if (pgws_slot_invalidated(slot))
		{
			state = SLOT_INVALIDATED;
			*cause = pgws_slot_invalidation_cause(slot);
		}
		else
			state = SLOT_OURS;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return state;
}

void
pgws_retention_tick(TimestampTz now, bool wal_on)
{
	bool		wanted = wal_on && setting.kind != RETAIN_NOTHING;
	XLogRecPtr	restart_lsn;
	XLogRecPtr	end;
	XLogRecPtr	target = InvalidXLogRecPtr;
	const char *cause = NULL;

	if (now < next_housekeeping)
		return;
	next_housekeeping = now + HOUSEKEEPING_INTERVAL_MS * (int64) 1000;

	switch (retention_slot_state(&restart_lsn, &cause))
	{
		case SLOT_ABSENT:
			floor_lsn = InvalidXLogRecPtr;
			if (wanted)
				retention_create_slot();
			return;
		case SLOT_LOGICAL:
			floor_lsn = InvalidXLogRecPtr;
			if (wanted)
				retention_problem(PROBLEM_NOT_OURS,
								  (errcode(ERRCODE_DUPLICATE_OBJECT),
								   errmsg("pg_ws cannot keep WAL: replication slot \"%s\" is a logical slot", PGWS_SLOT_NAME),
								   errhint("Drop that slot, or set pg_ws.history_retention to 0.")));
			return;
		case SLOT_BUSY:
			floor_lsn = restart_lsn;
			retention_problem(PROBLEM_BUSY,
							  (errcode(ERRCODE_OBJECT_IN_USE),
							   errmsg("pg_ws cannot move its replication slot \"%s\": it is in use by another process", PGWS_SLOT_NAME),
							   errhint("Replication slot \"%s\" belongs to pg_ws; do not stream from it.", PGWS_SLOT_NAME)));
			return;
		case SLOT_INVALIDATED:
			/* it holds no WAL, whatever its restart_lsn says */
			floor_lsn = InvalidXLogRecPtr;
			pgws_worker_stats.slot_invalidations++;
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replication slot \"%s\" that keeps WAL for pg_ws.history_retention was invalidated (%s)",
							PGWS_SLOT_NAME, cause),
					 errdetail("Events older than the end of WAL at that moment may no longer be readable; subscribers resuming from before it are told resync_required."),
					 errhint("Increase max_slot_wal_keep_size (and idle_replication_slot_timeout, where set), or lower pg_ws.history_retention.")));
			retention_drop_slot();
			if (wanted)
				retention_create_slot();
			return;
		case SLOT_OURS:
			floor_lsn = restart_lsn;
			if (!wanted)
			{
				retention_drop_slot();
				samples_count = 0;
				return;
			}
			break;
	}

	end = pgws_walread_end_of_wal();
	retention_sample(now, end);
	if (setting.kind == RETAIN_SIZE)
	{
		uint64		keep = (uint64) setting.amount * 1024 * 1024;

		if (end > keep)
			target = end - keep;
	}
	else
		target = retention_time_target(now);

	if (!XLogRecPtrIsInvalid(target) && target > restart_lsn && target <= end)
	{
		if (!retention_advance(target))
			return;
	}
	/* all is well again: warn anew if something goes wrong later */
	last_problem = PROBLEM_NONE;
}

XLogRecPtr
pgws_retention_floor(void)
{
	return floor_lsn;
}
