/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The shared event queue: a byte ring in shared memory, written by
 *	  committing backends and read by the pg_ws background worker, plus the
 *	  eventfd that wakes the worker.
 *
 * This file owns the ring's layout and its two ends.  It must not render
 * events (render.c) nor know about subscribers (broadcast.c).
 *
 * Ordering without a lock across the commit record.  NOTIFY (async.c) holds
 * a cluster-wide lock from pre-commit until after its commit record is
 * flushed so that queue order equals commit order; every committing writer
 * queues behind it.  pg_ws instead appends a transaction's events at
 * pre-commit in one short critical section and marks the entry PENDING.
 * After the commit record is written and the transaction has left the
 * ProcArray (XACT_EVENT_COMMIT), the backend flips the entry to COMMITTED;
 * if the transaction aborts instead, to ABORTED.  The worker reads entries
 * in append order, skips ABORTED ones and stops at the first PENDING one.
 *
 * Append order can differ from commit order only between transactions that
 * were concurrently in their commit paths, i.e. ones no client can order:
 * a transaction that saw another's rows took its snapshot after the other
 * left the ProcArray, and one that waited for another's row lock resumed
 * only after the other ended; both happen after the other's pre-commit, so
 * the dependent transaction always appends, and is sent, later.
 *
 * Flipping the state after commit only stores a few words under the
 * backend's slot spinlock and writes to an eventfd: nothing that can fail
 * or allocate runs after the commit record.  A COMMITTED entry also says
 * where its commit record ends, and the worker sends it only once the WAL
 * is flushed that far: with synchronous_commit = off that is when the WAL
 * writer flushes it, so a crash never takes back an event that was sent.
 *
 * Synchronous replication.  A transaction that waits for a synchronous
 * standby stays PENDING while it waits: it has not left the ProcArray, no
 * other session sees its rows, and a failover to that standby would take
 * it back.  Everything appended after it waits behind it, whatever the
 * other sessions' synchronous_commit: sending them first would put higher
 * positions before lower ones, and a subscriber that resumed after the
 * higher one would never get the lower one.  What a waiting transaction
 * must not do is hold up the writers after it: see "Parking".
 *
 * Parking.  When writers wait for room and the worker cannot read on
 * because the next entry is still PENDING, the worker takes the entries
 * from there on out of the ring, into its own memory (park_entries), and
 * frees their room.  A PENDING entry's backend would later write its
 * outcome into room that may hold other entries by then, so each backend
 * has a slot in shared memory: the worker marks the entry parked there
 * under the slot's spinlock, and the backend, under the same lock, writes
 * its outcome to the slot instead of the ring.  Payloads are kept up to a
 * bound and read back from the WAL past it.  Parked entries are sent, in
 * order, before anything still in the ring.  A worker that dies with
 * entries parked leaves its successor a history floor past their events,
 * so that a subscriber still lacking them resumes from the WAL (or, without
 * it, is told resync_required); whatever worker finds a PENDING header in
 * the ring looks at its slot, where an earlier worker may have parked it.
 *
 * Positions.  In the same critical section that reserves the entry, the
 * transaction's events are written to the WAL as one pg_ws record
 * (walrecord.c: the events as JSON Lines), so that queue order is WAL
 * order: the n events of an entry are at positions (seq) start, start + 1,
 * ... start + n - 1, where start is the record's LSN.
 * A record is longer than its number of events, so positions never
 * collide, and they mean the same on every node that replays this WAL.
 * With pg_ws.wal = off a counter in shared memory stands in for the LSN,
 * and its epoch changes with every life of shared memory.
 *
 * The worker reads entries as they commit but frees their space only once
 * every subscriber has been sent their events (pgws_queue_release), so a
 * worker that dies with events in flight finds them again when it restarts.
 * Subscribers cannot hold writers up: broadcast.c disconnects a subscriber
 * that has stopped reading as soon as a writer waits for the room it holds.
 *
 * The wake-up.  Debian's libwebsockets cannot watch a PostgreSQL latch, so
 * the postmaster creates an eventfd while it sets up shared memory; every
 * backend inherits it and the worker adopts it into its libwebsockets loop.
 * The wakeup_pending flag coalesces wake-ups: only the first commit after
 * the worker last looked writes to the eventfd.  And while the worker has
 * no subscriber, commits do not wake it at all unless the queue is half
 * full: it drains once a second, and before it takes its first subscriber.
 * The eventfd is a doorbell for more than commits (pg_ws_connections'
 * mailbox, signals, writers waiting for room): only the worker's handler
 * of it answers it (pgws_queue_answer_doorbell), and then serves all it
 * stands for.  A drain made for another reason (the WAL flushed, the
 * once-a-second look) leaves it ringing, so that a request posted in the
 * meantime is not taken for heard.
 *
 * src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "walread.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* states of a queue entry */
#define ENTRY_PENDING	0
#define ENTRY_COMMITTED 1
#define ENTRY_ABORTED	2

/*
 * Every entry starts at a multiple of 16 in a ring whose size is a multiple
 * of 16, so each 16-byte part of its header below is whole at its place
 * (though a later part may be at the ring's start); the payload after them
 * may wrap.
 */
typedef struct QueueEntryHeader
{
	pg_atomic_uint32 state;
	uint32		payload_len;
	uint64		first_seq;		/* position of its first event */
} QueueEntryHeader;

/* bytes 16-31: when it was appended, and where its commit record ends */
typedef struct QueueEntryTimes
{
	TimestampTz appended_at;	/* for pg_ws_stats' oldest_unsent_age */
	XLogRecPtr	commit_end;		/* set before the state says COMMITTED;
								 * invalid when no commit record was
								 * written (no xid) */
} QueueEntryTimes;

/* bytes 32-47: whose events they are */
typedef struct QueueEntryOrigin
{
	Oid			database;		/* the backend's database */
	int32		procno;			/* the backend's PGPROC number, its slot */
	pg_atomic_uint32 written;	/* the payload is all in the ring: until
								 * then the entry may not be parked */
	uint32		nevents;		/* lines of the payload */
} QueueEntryOrigin;

/* bytes 48-63: whose transaction, for snapshot positions (position.c) */
typedef struct QueueEntryXact
{
	TransactionId xid;			/* the top transaction's id; invalid with no
								 * xid (pg_ws.wal = off) */
	uint32		unused[3];
} QueueEntryXact;

/*
 * A backend's slot (see "Parking" in the file header): where it writes the
 * outcome of its entry once the worker has parked it, the ring's room
 * being given to others meanwhile.
 */
typedef struct QueueSlot
{
	slock_t		mutex;			/* the backend's finish against parking */
	bool		parked;			/* the entry at parked_pos is parked */
	uint64		parked_pos;
	uint32		parked_state;	/* its state, once the backend finished */
	XLogRecPtr	parked_commit_end;
} QueueSlot;

#define ENTRY_ALIGN 16
#define ENTRY_PAYLOAD_OFFSET (sizeof(QueueEntryHeader) + \
							  sizeof(QueueEntryTimes) + sizeof(QueueEntryOrigin) + \
							  sizeof(QueueEntryXact))

StaticAssertDecl(sizeof(QueueEntryHeader) == ENTRY_ALIGN &&
				 sizeof(QueueEntryTimes) == ENTRY_ALIGN &&
				 sizeof(QueueEntryOrigin) == ENTRY_ALIGN &&
				 sizeof(QueueEntryXact) == ENTRY_ALIGN,
				 "each part of a queue entry's header must be one aligned block");

/* while the queue is full, how often a waiting writer wakes the worker */
#define QUEUE_FULL_REWAKE_MS 100

typedef struct PgWsQueue
{
	LWLock	   *lock;			/* protects head, tail and worker_pid */
	uint64		head;			/* logical offset where the next entry goes */
	uint64		tail;			/* first logical offset not yet consumed */
	uint64		size;			/* bytes in the ring, a multiple of 8 */
	pid_t		worker_pid;		/* attached worker, or 0 */
	uint32		worker_starts;	/* workers attached since shared memory was
								 * set up */
	ConditionVariable space_cv; /* broadcast whenever tail advances */
	pg_atomic_uint32 wakeup_pending;	/* eventfd written, worker not yet
										 * looked */
	pg_atomic_uint32 writers_waiting;	/* committing backends waiting for
										 * room */
	pg_atomic_uint32 wakeups_wanted;	/* the worker has subscribers */
	uint64		next_counter_seq;	/* pg_ws.wal = off: next position */
	TimestampTz created_at;		/* this life of shared memory */
	bool		released_valid; /* released_through is known */
	uint64		released_through;	/* every event up to this position has
									 * been released by a worker */
	pg_atomic_uint64 events_queued; /* events of committed entries, for
									 * pg_ws_stats */
	int			nslots;			/* MaxBackends */
	QueueSlot	slots[FLEXIBLE_ARRAY_MEMBER];	/* by PGPROC number */
} PgWsQueue;

#define RING_OFFSET(nslots) \
	MAXALIGN(offsetof(PgWsQueue, slots) + (nslots) * sizeof(QueueSlot))

static PgWsQueue *queue = NULL;
static Size ring_offset = 0;	/* RING_OFFSET(queue->nslots) */

/* inherited from the postmaster; the same number in every process */
static int	wakeup_fd = -1;

/* this backend's entry, appended at pre-commit and not yet finished */
static bool entry_appended = false;
static uint64 entry_pos = 0;
static int	entry_nevents = 0;
static bool entry_has_xid = false;	/* so its commit writes a record */

static inline char *
ring_base(void)
{
	return (char *) queue + ring_offset;
}

static Size
queue_shmem_size(void)
{
	Size		ring = (Size) pgws_queue_size_kb * 1024;

	/* a slot for each backend: MaxBackends is known by now */
	return add_size(RING_OFFSET(MaxBackends), TYPEALIGN(ENTRY_ALIGN, ring));
}

void
pgws_queue_request_shmem(void)
{
	RequestAddinShmemSpace(queue_shmem_size());
	RequestNamedLWLockTranche("pg_ws", 1);
}

/*
 * Attach to (and in the postmaster, create) the queue; in the postmaster
 * also create the wake-up eventfd, replacing the one of a previous life
 * after a crash restart.
 */
void
pgws_queue_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("pg_ws queue", queue_shmem_size(), &found);
	if (!found)
	{
		queue->lock = &(GetNamedLWLockTranche("pg_ws"))->lock;
		queue->head = 0;
		queue->tail = 0;
		queue->size = TYPEALIGN(ENTRY_ALIGN, (uint64) pgws_queue_size_kb * 1024);
		queue->worker_pid = 0;
		queue->worker_starts = 0;
		ConditionVariableInit(&queue->space_cv);
		pg_atomic_init_u32(&queue->wakeup_pending, 0);
		pg_atomic_init_u32(&queue->writers_waiting, 0);
		pg_atomic_init_u32(&queue->wakeups_wanted, 0);
		queue->next_counter_seq = 1;
		queue->created_at = GetCurrentTimestamp();
		queue->released_valid = false;
		queue->released_through = 0;
		pg_atomic_init_u64(&queue->events_queued, 0);
		queue->nslots = MaxBackends;
		for (int i = 0; i < MaxBackends; i++)
		{
			SpinLockInit(&queue->slots[i].mutex);
			queue->slots[i].parked = false;
		}
	}
	LWLockRelease(AddinShmemInitLock);
	ring_offset = RING_OFFSET(queue->nslots);

	if (!IsUnderPostmaster)
	{
		if (wakeup_fd >= 0)
			close(wakeup_fd);
		wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (wakeup_fd < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create the pg_ws wake-up eventfd: %m")));
	}
}

uint64
pgws_queue_capacity(void)
{
	pgws_require_preload();
	return queue->size;
}

uint64
pgws_queue_entry_size(uint64 payload_len)
{
	return TYPEALIGN(ENTRY_ALIGN, ENTRY_PAYLOAD_OFFSET + payload_len);
}

/* this backend's slot; NULL for a process without one (never a backend) */
static inline QueueSlot *
my_slot(void)
{
	if (MyProc == NULL || PGWS_MY_PROCNO < 0 ||
		PGWS_MY_PROCNO >= queue->nslots)
		return NULL;
	return &queue->slots[PGWS_MY_PROCNO];
}

static inline QueueEntryHeader *
entry_header(uint64 pos)
{
	return (QueueEntryHeader *) (ring_base() + pos % queue->size);
}

static inline QueueEntryTimes *
entry_times(uint64 pos)
{
	return (QueueEntryTimes *) (ring_base() +
								(pos + sizeof(QueueEntryHeader)) % queue->size);
}

static inline QueueEntryOrigin *
entry_origin(uint64 pos)
{
	return (QueueEntryOrigin *) (ring_base() +
								 (pos + sizeof(QueueEntryHeader) +
								  sizeof(QueueEntryTimes)) % queue->size);
}

static inline QueueEntryXact *
entry_xact(uint64 pos)
{
	return (QueueEntryXact *) (ring_base() +
							   (pos + sizeof(QueueEntryHeader) +
								sizeof(QueueEntryTimes) +
								sizeof(QueueEntryOrigin)) % queue->size);
}

/* copy n bytes into the ring at logical offset pos, wrapping at the end */
static void
ring_write(uint64 pos, const char *src, uint64 n)
{
	uint64		off = pos % queue->size;
	uint64		first = Min(n, queue->size - off);

	memcpy(ring_base() + off, src, first);
	if (first < n)
		memcpy(ring_base(), src + first, n - first);
}

/* copy n bytes out of the ring from logical offset pos */
static void
ring_read(uint64 pos, char *dst, uint64 n)
{
	uint64		off = pos % queue->size;
	uint64		first = Min(n, queue->size - off);

	memcpy(dst, ring_base() + off, first);
	if (first < n)
		memcpy(dst + first, ring_base(), n - first);
}

/*
 * writers_waiting counts the backends waiting in pgws_queue_append, and
 * while it is non-zero the worker disconnects subscribers that hold the
 * room they wait for.  A count left behind would make it do so for ever, so
 * every way out of the wait gives ours back: finding room, timing out, an
 * ERROR (the transaction's abort calls pgws_queue_finish) and the end of
 * the process (a FATAL such as pg_terminate_backend does not unwind to any
 * PG_CATCH, but does run the before_shmem_exit callbacks).
 */
static bool counted_as_waiting = false;
static bool waiting_exit_callback_registered = false;

static void
stop_waiting(void)
{
	if (!counted_as_waiting)
		return;
	counted_as_waiting = false;
	pg_atomic_fetch_sub_u32(&queue->writers_waiting, 1);
}

static void
stop_waiting_at_exit(int code, Datum arg)
{
	stop_waiting();
}

static void
start_waiting(void)
{
	Assert(!counted_as_waiting);
	if (!waiting_exit_callback_registered)
	{
		before_shmem_exit(stop_waiting_at_exit, (Datum) 0);
		waiting_exit_callback_registered = true;
	}
	counted_as_waiting = true;
	pg_atomic_fetch_add_u32(&queue->writers_waiting, 1);
}

/* sleep until tail moves or timeout_ms pass */
static void
wait_for_room(long timeout_ms)
{
	(void) ConditionVariableTimedSleep(&queue->space_cv, timeout_ms,
									   PG_WAIT_EXTENSION);
}

/*
 * Append one transaction's events as a PENDING entry.  Runs at pre-commit,
 * the last point where the transaction can still fail: when the ring has no
 * room we wait up to pg_ws.queue_full_timeout for the worker to drain it and
 * then raise an error, which aborts the transaction; a committed event is
 * never dropped.
 */
void
pgws_queue_append(const char *payload, uint32 len, int nevents)
{
	uint64		need = pgws_queue_entry_size(len);
	TimestampTz deadline = 0;
	TimestampTz appended_at;
	uint64		pos;
	QueueEntryHeader *hdr;

	pgws_require_preload();
	Assert(!entry_appended);

	/*
	 * The WAL record belongs to the transaction: make sure it has an xid
	 * now, outside the critical section (this can wait, or fail).  Without
	 * the WAL a transaction that changed no row (pg_ws_send() alone) has
	 * none, and then writes no commit record to wait for.
	 */
	if (pgws_wal)
		(void) GetCurrentTransactionId();
	entry_has_xid = TransactionIdIsValid(GetTopTransactionIdIfAny());
	/* for pg_ws_stats' oldest_unsent_age; read outside the lock */
	appended_at = GetCurrentTimestamp();

	if (need > queue->size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pg_ws events of this transaction do not fit in the event queue"),
				 errdetail("%d events need %llu bytes; pg_ws.queue_size is %llu bytes.",
						   nevents, (unsigned long long) need,
						   (unsigned long long) queue->size),
				 errhint("Consider increasing the configuration parameter \"pg_ws.queue_size\", or change fewer rows per transaction.")));

	for (;;)
	{
		pid_t		worker_pid;
		TimestampTz now;

		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		if (queue->size - (queue->head - queue->tail) >= need)
		{
			uint64		first_seq;

			/*
			 * The WAL record and the entry in one critical section, so that
			 * queue order is WAL order.  An error in XLogInsert leaves the
			 * queue untouched, and the transaction aborts.
			 */
			if (pgws_wal)
			{
				first_seq = pgws_wal_log_events(payload, len, nevents);
				/* noted in WAL order: we hold the lock (position.c) */
				pgws_position_note(GetTopTransactionIdIfAny(), first_seq);
			}
			else
			{
				first_seq = queue->next_counter_seq;
				queue->next_counter_seq += nevents;
			}
			pos = queue->head;
			hdr = entry_header(pos);
			pg_atomic_init_u32(&hdr->state, ENTRY_PENDING);
			hdr->payload_len = len;
			hdr->first_seq = first_seq;
			entry_times(pos)->appended_at = appended_at;
			entry_times(pos)->commit_end = InvalidXLogRecPtr;
			entry_origin(pos)->database = MyDatabaseId;
			entry_origin(pos)->procno = PGWS_MY_PROCNO;
			pg_atomic_init_u32(&entry_origin(pos)->written, 0);
			entry_origin(pos)->nevents = (uint32) nevents;
			entry_xact(pos)->xid = GetTopTransactionIdIfAny();
			queue->head += need;
			LWLockRelease(queue->lock);
			break;
		}
		worker_pid = queue->worker_pid;
		LWLockRelease(queue->lock);

		/* tell the worker room is wanted, then wait for it */
		now = GetCurrentTimestamp();
		if (deadline == 0)
		{
			start_waiting();
			deadline = TimestampTzPlusMilliseconds(now, pgws_queue_full_timeout_ms);
		}
		pgws_queue_wake_worker();
		if (now >= deadline)
		{
			ConditionVariableCancelSleep();
			stop_waiting();
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("pg_ws event queue is full"),
					 worker_pid == 0 ?
					 errdetail("%d events (%llu bytes) found no room within pg_ws.queue_full_timeout (%d ms); the pg_ws background worker is not running.",
							   nevents, (unsigned long long) need,
							   pgws_queue_full_timeout_ms) :
					 errdetail("%d events (%llu bytes) found no room within pg_ws.queue_full_timeout (%d ms).",
							   nevents, (unsigned long long) need,
							   pgws_queue_full_timeout_ms),
					 errhint("Consider increasing the configuration parameter \"pg_ws.queue_size\".")));
		}
		/* wake the worker again now and then: room may need a cull */
		wait_for_room(Min(TimestampDifferenceMilliseconds(now, deadline),
						  QUEUE_FULL_REWAKE_MS));
	}
	ConditionVariableCancelSleep();
	stop_waiting();

	/*
	 * The worker will not read past a PENDING header, nor park an entry
	 * before it is written, so the payload can be copied without the lock.
	 */
	ring_write(pos + ENTRY_PAYLOAD_OFFSET, payload, len);
	pg_write_barrier();
	pg_atomic_write_u32(&entry_origin(pos)->written, 1);
	entry_pos = pos;
	entry_nevents = nevents;
	entry_appended = true;
}

/*
 * Mark this backend's entry, if any, as committed or aborted, and wake the
 * worker.  Called after the commit record (or during abort, also after an
 * error while waiting for room, which is why it stops our wait too): it
 * must not fail, and does not.
 */
void
pgws_queue_finish(bool committed)
{
	QueueEntryHeader *hdr;
	QueueSlot  *slot;
	uint32		state;
	XLogRecPtr	commit_end = InvalidXLogRecPtr;

	stop_waiting();
	if (!entry_appended)
		return;
	entry_appended = false;

	/*
	 * A commit that stopped waiting for its synchronous standbys because the
	 * postmaster died (SyncRepWaitForLSN gives up then, and the transaction
	 * ends locally, visible here and nowhere else) is not confirmed: its
	 * entry stays PENDING, so that it is never sent, and a failover to a
	 * standby that never had it takes back nothing a subscriber saw.  The
	 * server is going down; after a restart the WAL says what committed.
	 */
	if (committed && !PostmasterIsAlive())
		return;

	hdr = entry_header(entry_pos);
	state = committed ? ENTRY_COMMITTED : ENTRY_ABORTED;

	/*
	 * Where our commit record ends: the worker sends nothing before the WAL
	 * is flushed that far (see pgws_queue_drain).  XactLastCommitEnd is
	 * that of this transaction, which wrote one since it has an xid.
	 */
	if (committed && entry_has_xid)
		commit_end = XactLastCommitEnd;

	/*
	 * If the worker parked our entry, its room in the ring may hold others'
	 * entries now: the outcome goes to our slot instead.  The slot's lock
	 * makes parking and this one or the other.
	 */
	slot = my_slot();
	if (slot != NULL)
		SpinLockAcquire(&slot->mutex);
	if (slot != NULL && slot->parked && slot->parked_pos == entry_pos)
	{
		slot->parked_commit_end = commit_end;
		slot->parked_state = state;
	}
	else
	{
		entry_times(entry_pos)->commit_end = commit_end;
		pg_write_barrier();		/* payload and commit_end before state */
		pg_atomic_write_u32(&hdr->state, state);
	}
	if (slot != NULL)
		SpinLockRelease(&slot->mutex);
	if (committed)
		pg_atomic_fetch_add_u64(&queue->events_queued, entry_nevents);

	/*
	 * With nobody to send to, the worker need not look at every commit:
	 * it drains once a second, when the queue is half full, and before it
	 * takes a subscriber (pgws_queue_want_wakeups).  The barrier pairs with
	 * the one there: either we see wakeups_wanted set, or the worker's
	 * drain sees our state.
	 */
	pg_memory_barrier();
	if (pg_atomic_read_u32(&queue->wakeups_wanted) != 0 ||
		queue->head - queue->tail > queue->size / 2)
		pgws_queue_wake_worker();
}

/*
 * The worker says whether it has subscribers, so whether every commit
 * should wake it.  Call before draining: see pgws_queue_finish.
 */
void
pgws_queue_want_wakeups(bool want)
{
	pg_atomic_write_u32(&queue->wakeups_wanted, want ? 1 : 0);
	pg_memory_barrier();
}

/*
 * Wake the worker unless a wake-up is already on its way.  The exchange is a
 * full barrier, so whatever we stored before is visible to the worker once
 * it has cleared the flag (pgws_queue_answer_doorbell, before the drain).
 */
void
pgws_queue_wake_worker(void)
{
	if (queue == NULL || wakeup_fd < 0)
		return;
	if (pg_atomic_exchange_u32(&queue->wakeup_pending, 1) == 0)
	{
		uint64		one = 1;
		ssize_t		rc;

		/* can only fail on counter overflow, which the flag prevents */
		rc = write(wakeup_fd, &one, sizeof(one));
		(void) rc;
	}
}

int
pgws_queue_wakeup_fd(void)
{
	return wakeup_fd;
}

/*
 * The worker's handler of the eventfd, before it serves what the doorbell
 * stands for: reset it, so that whoever rings after this is heard again.
 * EAGAIN just means nobody wrote since last time.
 */
void
pgws_queue_answer_doorbell(void)
{
	uint64		counter;
	ssize_t		rc;

	rc = read(wakeup_fd, &counter, sizeof(counter));
	(void) rc;
	pg_atomic_exchange_u32(&queue->wakeup_pending, 0);
}

/*
 * Worker side.  The worker reads from read_pos, its own cursor, but frees
 * space (moves tail) only when broadcast.c says every subscriber has been
 * sent those events: a worker that dies in between is restarted at tail and
 * reads them again, so events in flight are not lost with it.
 */
static uint64 read_pos = 0;
static uint64 released_pos = 0;	/* queue->tail as this worker last set it */
static uint64 read_through = 0;	/* highest position read so far */
static StringInfo drain_buffer = NULL;	/* one entry's payload, copied out */

/*
 * Entries taken out of the ring before they could be sent (see "Parking"
 * in the file header), in ring order: their events, or where the WAL has
 * them, and for one still in progress its slot, where its backend writes
 * the outcome.
 */
typedef struct ParkedEntry
{
	struct ParkedEntry *next;
	uint64		pos;			/* where it was in the ring: its slot's key */
	int32		procno;			/* its backend's slot */
	uint32		state;
	XLogRecPtr	commit_end;
	uint64		first_seq;
	TransactionId xid;
	Oid			database;
	TimestampTz appended_at;
	uint32		payload_len;
	char	   *payload;		/* NULL: read again from the WAL */
} ParkedEntry;

/*
 * Parked entries at most, and how many times pg_ws.queue_size their kept
 * payloads may take
 */
#define PARKED_MAX 1000000
#define PARKED_PAYLOAD_QUEUES 4

/*
 * How long the next entry must have been in progress before what follows
 * it is parked (at most a quarter of pg_ws.queue_full_timeout, so that
 * writers are let in long before they would fail)
 */
#define PARK_AFTER_MS 1000

static MemoryContext parked_context = NULL;
static ParkedEntry *parked_head = NULL;
static ParkedEntry *parked_tail = NULL;
static uint64 nparked = 0;
static uint64 parked_bytes = 0;	/* of the payloads kept */
static ParkedEntry **parked_pending = NULL;	/* by slot: its entry in
											 * progress, if parked */

/* since the parked list was last empty, for the log */
static TimestampTz stall_began = 0;
static uint64 stall_entries = 0;	/* parked */
static uint64 stall_from_wal = 0;	/* of them, sent from the WAL */

/*
 * Attach as the queue's worker.  Returns the history floor: every event
 * with a position above it is still in the queue or yet to come, and the
 * events at or below it were released by an earlier worker (sent to every
 * subscriber it had) or were committed before this life of shared memory,
 * that is before a crash restart.  *restart says whether a worker ran
 * before us on this queue.
 */
uint64
pgws_queue_worker_attach(bool *restart)
{
	uint64		floor;

	if (drain_buffer == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		drain_buffer = makeStringInfo();
		parked_context = AllocSetContextCreate(TopMemoryContext,
											   "pg_ws parked entries",
											   ALLOCSET_DEFAULT_SIZES);
		parked_pending = palloc0(queue->nslots * sizeof(ParkedEntry *));
		MemoryContextSwitchTo(old);
	}

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->worker_pid = MyProcPid;
	*restart = queue->worker_starts++ > 0;
	pg_atomic_write_u32(&queue->wakeups_wanted, 0);	/* no subscriber yet */
	read_pos = released_pos = queue->tail;
	if (queue->released_valid)
		floor = queue->released_through;
	else if (queue->head > queue->tail)
		floor = entry_header(queue->tail)->first_seq - 1;
	else if (RecoveryInProgress())
		floor = 0;				/* a standby follows the WAL instead */
	else if (pgws_wal)
		floor = GetXLogInsertRecPtr() - 1;	/* the next record starts here */
	else
		floor = queue->next_counter_seq - 1;
	LWLockRelease(queue->lock);
	read_through = floor;
	return floor;
}

void
pgws_queue_worker_detach(void)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->worker_pid = 0;
	LWLockRelease(queue->lock);
}

/*
 * The epoch of this queue's positions for the events of database: the
 * system identifier, which every node of a replication cluster shares and
 * initdb changes, and the database's OID, since a position means the
 * events of one database (pg_ws.database names it, and a reload may name
 * another); with pg_ws.wal = off also this life of shared memory, since
 * the counter starts again.
 */
void
pgws_queue_epoch(char *buf, size_t size, Oid database)
{
	uint64		sysid = GetSystemIdentifier();

	if (pgws_wal || RecoveryInProgress())
		snprintf(buf, size, UINT64_FORMAT "-%u", sysid, database);
	else
		snprintf(buf, size, UINT64_FORMAT "-%u-m" INT64_FORMAT, sysid,
				 database, (int64) queue->created_at);
}

/*
 * Where the WAL insert position stands once every pg_ws record before it
 * has been appended, and so noted for snapshot positions: records are
 * written only with the lock held exclusively (pgws_queue_append).  At a
 * page boundary the insert position points past the next page's header,
 * which nothing may have been written to: the boundary itself is returned,
 * so that it can be flushed.
 */
XLogRecPtr
pgws_queue_appended_through(void)
{
	XLogRecPtr	lsn;

	pgws_require_preload();
	LWLockAcquire(queue->lock, LW_SHARED);
	lsn = GetXLogInsertRecPtr();
	LWLockRelease(queue->lock);
	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	return lsn;
}

/*
 * The state of the ring entry at pos, whose header says PENDING.  If this
 * worker or an earlier one parked it, its backend writes the outcome to its
 * slot instead of the header: take it from there (and its commit_end).
 * Call with the slot's lock held.
 */
static uint32
slot_state(QueueSlot *slot, uint64 pos, XLogRecPtr *commit_end)
{
	if (!slot->parked || slot->parked_pos != pos)
		return ENTRY_PENDING;
	*commit_end = slot->parked_commit_end;
	return slot->parked_state;
}

/* the slot of the entry at pos, NULL when it has none */
static QueueSlot *
entry_slot(uint64 pos)
{
	int32		procno = entry_origin(pos)->procno;

	if (procno < 0 || procno >= queue->nslots)
		return NULL;
	return &queue->slots[procno];
}

/*
 * A parked entry still in progress: has its backend written the outcome to
 * its slot meanwhile?
 */
static void
parked_resolve(ParkedEntry *e)
{
	QueueSlot  *slot = &queue->slots[e->procno];

	SpinLockAcquire(&slot->mutex);
	e->state = slot_state(slot, e->pos, &e->commit_end);
	SpinLockRelease(&slot->mutex);
	if (e->state != ENTRY_PENDING && parked_pending[e->procno] == e)
		parked_pending[e->procno] = NULL;
}

static void
parked_pop(void)
{
	ParkedEntry *e = parked_head;

	parked_head = e->next;
	if (parked_head == NULL)
		parked_tail = NULL;
	if (parked_pending[e->procno] == e)
		parked_pending[e->procno] = NULL;
	nparked--;
	if (e->payload != NULL)
	{
		parked_bytes -= e->payload_len;
		pfree(e->payload);
	}
	pfree(e);
}

/*
 * Writers wait for room, and the next entry to send is still in progress
 * (its backend waits for a synchronous standby, say): take the entries from
 * read_pos on out of the ring, into the worker's memory, so that their room
 * is freed.  Their payloads are kept up to PARKED_PAYLOAD_QUEUES times
 * pg_ws.queue_size bytes; past that, with pg_ws.wal = on, where the WAL
 * has them (without the WAL, the rest stays in the ring, and writers wait
 * as for a full queue); and at most PARKED_MAX entries.  An entry in progress is marked parked in its
 * backend's slot, under the slot's lock, so that its backend writes the
 * outcome there from then on (pgws_queue_finish).  Aborted entries need
 * no place.
 */
static void
park_entries(uint64 head)
{
	MemoryContext old = MemoryContextSwitchTo(parked_context);

	if (parked_head == NULL && read_pos < head)
	{
		stall_began = GetCurrentTimestamp();
		stall_entries = stall_from_wal = 0;
		ereport(LOG,
				(errmsg("pg_ws is parking queued events out of the queue: a transaction before them is still committing, and writers wait for room"),
				 errdetail("A transaction that waits for a synchronous standby holds back the events committed after it; they are sent in order once it ends.")));
	}
	while (read_pos < head && nparked < PARKED_MAX)
	{
		QueueEntryHeader *hdr = entry_header(read_pos);
		QueueEntryOrigin *origin = entry_origin(read_pos);
		uint32		state = pg_atomic_read_u32(&hdr->state);
		bool		keep = parked_bytes + hdr->payload_len <=
			PARKED_PAYLOAD_QUEUES * queue->size;
		XLogRecPtr	commit_end = InvalidXLogRecPtr;
		bool		in_slot = false;	/* state and commit_end from its slot */
		ParkedEntry *e;

		if (!keep && !pgws_wal)
			break;
		if (state == ENTRY_PENDING)
		{
			QueueSlot  *slot = entry_slot(read_pos);
			ParkedEntry *before;

			/* its backend may still be copying the payload into its room */
			if (slot == NULL || pg_atomic_read_u32(&origin->written) == 0)
				break;
			before = parked_pending[origin->procno];

			/*
			 * The backend finished its entry parked before (it could not
			 * have appended this one otherwise): that outcome is in the
			 * slot, which this entry takes over.
			 */
			if (before != NULL)
				parked_resolve(before);
			if (parked_pending[origin->procno] != NULL)
			{
				Assert(false);
				break;			/* its outcome would be lost: it stays */
			}
			SpinLockAcquire(&slot->mutex);
			state = pg_atomic_read_u32(&hdr->state);
			if (state == ENTRY_PENDING)
			{
				/* parked by an earlier worker already: its outcome may be there */
				state = slot_state(slot, read_pos, &commit_end);
				in_slot = true;
				if (!slot->parked || slot->parked_pos != read_pos)
				{
					slot->parked = true;
					slot->parked_pos = read_pos;
					slot->parked_state = ENTRY_PENDING;
				}
			}
			SpinLockRelease(&slot->mutex);
		}
		pg_read_barrier();		/* state before payload and commit_end */
		if (state == ENTRY_COMMITTED && !in_slot)
			commit_end = entry_times(read_pos)->commit_end;

		if (state != ENTRY_ABORTED)
		{
			e = palloc(sizeof(ParkedEntry));
			e->next = NULL;
			e->pos = read_pos;
			e->procno = origin->procno;
			e->state = state;
			e->commit_end = commit_end;
			e->first_seq = hdr->first_seq;
			e->xid = entry_xact(read_pos)->xid;
			e->database = origin->database;
			e->appended_at = entry_times(read_pos)->appended_at;
			e->payload_len = hdr->payload_len;
			e->payload = NULL;
			if (keep)
			{
				e->payload = MemoryContextAllocHuge(parked_context,
													Max(e->payload_len, 1));
				ring_read(read_pos + ENTRY_PAYLOAD_OFFSET, e->payload,
						  e->payload_len);
				parked_bytes += e->payload_len;
			}
			if (parked_tail != NULL)
				parked_tail->next = e;
			else
				parked_head = e;
			parked_tail = e;
			nparked++;
			stall_entries++;
			if (state == ENTRY_PENDING)
				parked_pending[e->procno] = e;
		}
		/* its events are past what a new worker would find in the queue */
		read_through = hdr->first_seq + origin->nevents - 1;
		read_pos += pgws_queue_entry_size(hdr->payload_len);
	}
	MemoryContextSwitchTo(old);
}

/* hand a payload's events to the sink; returns how many */
static uint64
drain_payload(pgws_event_sink sink, void *arg, char *payload, uint32 len,
			  uint64 seq, TransactionId xid, uint64 entry_pos)
{
	char	   *line = payload;
	char	   *end = payload + len;
	uint64		n = 0;

	while (line < end)
	{
		char	   *nl = memchr(line, '\n', end - line);
		uint32		line_len = (nl ? nl : end) - line;

		sink(arg, line, line_len, seq, xid, entry_pos);
		line += line_len + 1;
		seq++;
		n++;
	}
	return n;
}

/*
 * Hand every event of every committed entry past read_pos (the parked ones
 * first), in queue order, to the sink, up to the first entry still in
 * progress, or whose commit record is not yet flushed, or that holds
 * events of another database than database.
 *
 * An event is sent only once its transaction is durable, even when it
 * committed with synchronous_commit off, so that a crash never takes back
 * an event a subscriber has seen and positions never go backwards (the WAL
 * writer flushes such commits within wal_writer_delay; *waits_for_flush
 * asks the caller to look again soon).
 *
 * An entry of another database (a backend whose pg_ws.database was not yet
 * reloaded, or a database dropped and made again under the name) stops
 * the drain with *other_database set to its database: the caller decides
 * whether it is ours after all (then a new worker serves it) or is to be
 * skipped (pgws_queue_skip_entry).
 *
 * When the drain stops at an entry in progress while writers wait for
 * room, the entries from read_pos on are parked (park_entries).
 *
 * The doorbell is the caller's to answer, before it drains (see the file
 * header), so that a commit racing with this drain rings again.  Returns
 * the number of events handed over.
 */
uint64
pgws_queue_drain(pgws_event_sink sink, void *arg, Oid database,
				 bool *waits_for_flush, Oid *other_database)
{
	uint64		head;
	uint64		nevents = 0;
	XLogRecPtr	flushed = InvalidXLogRecPtr;
	bool		in_progress = false;

	*waits_for_flush = false;
	*other_database = InvalidOid;

	LWLockAcquire(queue->lock, LW_SHARED);
	head = queue->head;
	LWLockRelease(queue->lock);

	/* the parked entries come first: they were the ring's oldest */
	while (parked_head != NULL)
	{
		ParkedEntry *e = parked_head;
		uint64		n;

		if (e->state == ENTRY_PENDING)
			parked_resolve(e);
		if (e->state == ENTRY_PENDING)
		{
			in_progress = true;
			break;
		}
		if (e->state == ENTRY_COMMITTED)
		{
			if (e->commit_end > flushed)
				flushed = GetFlushRecPtr(NULL);
			if (e->commit_end > flushed)
			{
				*waits_for_flush = true;
				break;
			}
			if (e->database != database)
			{
				*other_database = e->database;
				break;
			}
			resetStringInfo(drain_buffer);
			if (e->payload != NULL)
				appendBinaryStringInfo(drain_buffer, e->payload, e->payload_len);
			else if (pgws_walread_record_payload(e->first_seq, drain_buffer))
				stall_from_wal++;
			else
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("pg_ws could not read back the events at %X/%X from the WAL",
								LSN_FORMAT_ARGS(e->first_seq)),
						 errdetail("They were parked out of the queue while a transaction before them was still committing, and their WAL is gone."),
						 errhint("The worker restarts; subscribers resume and are told resync_required.")));

			/*
			 * Their room in the ring is free already: the messages hold
			 * the ring from read_pos on, as the next entry's would.
			 */
			n = drain_payload(sink, arg, drain_buffer->data,
							  drain_buffer->len, e->first_seq, e->xid,
							  read_pos);
			nevents += n;
			read_through = Max(read_through, e->first_seq + n - 1);
		}
		parked_pop();
		if (parked_head == NULL)
			ereport(LOG,
					(errmsg("pg_ws sent the events of %llu transactions that were parked out of the queue for %.1f s, %llu of them read back from the WAL",
							(unsigned long long) stall_entries,
							(double) (GetCurrentTimestamp() - stall_began) / USECS_PER_SEC,
							(unsigned long long) stall_from_wal)));
	}

	while (parked_head == NULL && read_pos < head)
	{
		QueueEntryHeader *hdr = entry_header(read_pos);
		uint32		state = pg_atomic_read_u32(&hdr->state);
		uint64		seq = hdr->first_seq;
		XLogRecPtr	commit_end = InvalidXLogRecPtr;

		if (state == ENTRY_PENDING)
		{
			/* an earlier worker may have parked it: see slot_state */
			QueueSlot  *slot = entry_slot(read_pos);

			if (slot != NULL)
			{
				SpinLockAcquire(&slot->mutex);
				state = slot_state(slot, read_pos, &commit_end);
				SpinLockRelease(&slot->mutex);
			}
			if (state == ENTRY_PENDING)
			{
				in_progress = true;
				break;
			}
		}
		else
		{
			pg_read_barrier();	/* state before payload and commit_end */
			commit_end = entry_times(read_pos)->commit_end;
		}

		if (state == ENTRY_COMMITTED)
		{
			uint64		n;

			/* the flush position, read again only when it matters */
			if (commit_end > flushed)
				flushed = GetFlushRecPtr(NULL);
			if (commit_end > flushed)
			{
				*waits_for_flush = true;
				break;
			}
			if (entry_origin(read_pos)->database != database)
			{
				*other_database = entry_origin(read_pos)->database;
				break;
			}

			resetStringInfo(drain_buffer);
			enlargeStringInfo(drain_buffer, hdr->payload_len);
			ring_read(read_pos + ENTRY_PAYLOAD_OFFSET, drain_buffer->data,
					  hdr->payload_len);
			n = drain_payload(sink, arg, drain_buffer->data,
							  hdr->payload_len, seq, entry_xact(read_pos)->xid,
							  read_pos);
			nevents += n;
			read_through = seq + n - 1;
		}
		else
			read_through = seq; /* an aborted entry: no event has it */
		read_pos += pgws_queue_entry_size(hdr->payload_len);
	}

	/*
	 * Park only behind an entry that has been in progress for a while: most
	 * end within a commit's flush, and parking is for the ones that wait
	 * for something else (a synchronous standby); once some are parked,
	 * what comes after them is parked at once.
	 */
	if (in_progress && pgws_queue_writers_waiting() &&
		(parked_head != NULL ||
		 GetCurrentTimestamp() - entry_times(read_pos)->appended_at >=
		 (TimestampTz) Min(PARK_AFTER_MS, pgws_queue_full_timeout_ms / 4) * 1000))
		park_entries(head);
	return nevents;
}

/*
 * Pass over the committed entry pgws_queue_drain stopped at for holding
 * another database's events: none of them is sent.
 */
void
pgws_queue_skip_entry(void)
{
	QueueEntryHeader *hdr;

	if (parked_head != NULL)
	{
		parked_pop();
		return;
	}
	hdr = entry_header(read_pos);
	read_through = hdr->first_seq;
	read_pos += pgws_queue_entry_size(hdr->payload_len);
}

/*
 * How many parked entries wait, and since when the oldest does (0 when
 * none), for pg_ws_stats' oldest_unsent_age: their room in the ring is
 * free, but their events are not sent yet.  And since when the next entry
 * to send has been in progress, holding up every one after it (0 when it
 * is not), for /health.
 */
TimestampTz
pgws_queue_parked_since(uint64 *count, TimestampTz *blocked_since)
{
	*count = nparked;
	*blocked_since = 0;
	if (parked_head != NULL && parked_head->state == ENTRY_PENDING)
		*blocked_since = parked_head->appended_at;
	else if (parked_head == NULL && read_pos < queue->head &&
			 pg_atomic_read_u32(&entry_header(read_pos)->state) == ENTRY_PENDING)
		*blocked_since = entry_times(read_pos)->appended_at;
	return parked_head != NULL ? parked_head->appended_at : 0;
}

/* is a committing backend waiting for the worker to free room? */
bool
pgws_queue_writers_waiting(void)
{
	return pg_atomic_read_u32(&queue->writers_waiting) > 0;
}

/* the queue's figures for pg_ws_stats (stats.c) */
void
pgws_queue_get_stats(PgWsQueueStats *stats)
{
	pgws_require_preload();
	LWLockAcquire(queue->lock, LW_SHARED);
	stats->worker_pid = queue->worker_pid;
	stats->bytes_used = queue->head - queue->tail;
	stats->bytes_capacity = queue->size;
	/* the stamp is written with the header, under the lock held exclusively */
	stats->oldest_queued_at = queue->head > queue->tail ?
		entry_times(queue->tail)->appended_at : 0;
	LWLockRelease(queue->lock);
	stats->writers_waiting = pg_atomic_read_u32(&queue->writers_waiting);
	stats->events_queued = pg_atomic_read_u64(&queue->events_queued);
}

/* pg_ws.wal = off: the position the next event will have */
uint64
pgws_queue_next_counter_position(void)
{
	uint64		next;

	LWLockAcquire(queue->lock, LW_SHARED);
	next = queue->next_counter_seq;
	LWLockRelease(queue->lock);
	return next;
}

/* where the next entry the worker has not read yet starts */
uint64
pgws_queue_read_pos(void)
{
	return read_pos;
}

/*
 * Free the queue up to pos (an entry start at or before read_pos).  Only
 * the worker moves tail, so it knows without the lock whether this would.
 */
void
pgws_queue_release(uint64 pos)
{
	uint64		through;

	Assert(pos <= read_pos);
	if (pos <= released_pos)
		return;
	/* what the next worker will not find in the queue */
	through = pos < read_pos ? entry_header(pos)->first_seq - 1 : read_through;


	/*
	 * Parked entries die with this worker: read_through is past their
	 * events, so that a subscriber still lacking them resumes from below
	 * the next worker's floor, which reads them from the WAL (without the
	 * WAL, tells it resync_required).  Those whose room is not freed yet
	 * the next worker finds in the ring, their outcome in their slots.
	 */
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	queue->tail = released_pos = pos;
	queue->released_through = through;
	queue->released_valid = true;
	LWLockRelease(queue->lock);
	ConditionVariableBroadcast(&queue->space_cv);
}
