/*-------------------------------------------------------------------------
 *
 * connections.c
 *	  pg_ws_connections() and pg_ws_disconnect(): the worker's connections
 *	  as rows for SQL, and the way to end one; and the mailbox in shared
 *	  memory through which a backend asks the worker for them.
 *
 * This file owns the mailbox and the backend side.  It must not know what
 * a connection is made of (conn.c describes and closes them, in the
 * worker), nor touch sockets or libwebsockets.
 *
 * Only the worker knows its connections, and it must never wait for a
 * backend, nor a backend for ever for it.  So a backend posts a request in
 * one of a few slots (a spinlock guards them), wakes the worker through the
 * queue's eventfd, and sleeps on a condition variable for at most
 * MAILBOX_TIMEOUT_MS; the worker answers from its loop the next time it
 * wakes (pgws_mailbox_serve), copying what it was asked for and going on.
 * Nothing is published while nobody asks, so nothing costs the worker
 * anything per message.
 *
 * A snapshot of the connections travels in a DSM segment the backend makes
 * (its own resource owner frees it, whatever happens): the worker attaches
 * to it, writes the rows if they fit, says how many bytes they need, and
 * detaches.  Rows that did not fit are asked for again in a segment of the
 * size needed.  A backend that gives up (timeout, cancel, or being
 * terminated: a FATAL unwinds to no PG_CATCH, so a before_shmem_exit
 * callback gives the slot back then) takes its request back if the worker
 * has not taken it yet, and otherwise marks it abandoned for the worker to
 * free; a worker that exits with a request taken answers it as failed.
 *
 * Connection ids come from a counter here, so they are unique while shared
 * memory lives, across restarts of the worker, and never reused.
 *
 * Privileges: both functions are revoked from PUBLIC and granted to
 * pg_monitor (sql/pg_ws--1.2.sql): the rows show peers' addresses and
 * tokens' subjects (never a token), and a disconnect is as much as a
 * monitoring role may do, like pg_monitor's own view of other sessions.
 *
 * src/connections.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"

/* how long a backend waits for the worker's answer */
#define MAILBOX_TIMEOUT_MS	10000
/* requests that may be in flight at once */
#define MAILBOX_SLOTS		8
/* a snapshot asked for again in a larger segment, at most this often */
#define SNAPSHOT_ATTEMPTS	4

typedef enum SlotState
{
	SLOT_FREE,
	SLOT_FILLING,				/* a backend's, being filled in */
	SLOT_POSTED,				/* waiting for the worker */
	SLOT_TAKEN,					/* the worker is answering it */
	SLOT_DONE,					/* answered, for its backend to read */
	SLOT_ABANDONED				/* taken, but its backend gave up */
} SlotState;

typedef enum RequestKind
{
	REQUEST_SNAPSHOT,
	REQUEST_DISCONNECT
} RequestKind;

typedef struct MailboxSlot
{
	SlotState	state;
	RequestKind kind;
	uint64		conn_id;		/* disconnect: which */
	dsm_handle	segment;		/* snapshot: where to write the rows */
	Size		segment_size;

	/* the answer */
	bool		failed;			/* the worker exited while answering */
	bool		found;			/* disconnect: the connection existed */
	Size		needed;			/* snapshot: bytes the rows take */
	int32		nrows;			/* snapshot: rows written (if they fit) */
} MailboxSlot;

typedef struct PgWsMailbox
{
	slock_t		mutex;			/* protects slots */
	ConditionVariable changed;	/* an answer came, or a slot was freed */
	pg_atomic_uint32 posted;	/* requests wait: the worker looks */
	pg_atomic_uint64 next_conn_id;
	MailboxSlot slots[MAILBOX_SLOTS];
} PgWsMailbox;

static PgWsMailbox *mailbox = NULL;

void
pgws_mailbox_request_shmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PgWsMailbox)));
}

void
pgws_mailbox_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	mailbox = ShmemInitStruct("pg_ws mailbox", sizeof(PgWsMailbox), &found);
	if (!found)
	{
		SpinLockInit(&mailbox->mutex);
		ConditionVariableInit(&mailbox->changed);
		pg_atomic_init_u32(&mailbox->posted, 0);
		pg_atomic_init_u64(&mailbox->next_conn_id, 1);
		memset(mailbox->slots, 0, sizeof(mailbox->slots));
	}
	LWLockRelease(AddinShmemInitLock);
}

/* the worker: an id for a new connection */
uint64
pgws_mailbox_next_conn_id(void)
{
	return pg_atomic_fetch_add_u64(&mailbox->next_conn_id, 1);
}

/* ------------------------------------------------------------ the worker */

/*
 * Answer every posted request; called when the worker wakes (after it has
 * cleared its wake-up, so that a request posted meanwhile wakes it again)
 * and once a second.  One snapshot serves every snapshot request of the
 * round.
 */
void
pgws_mailbox_serve(void)
{
	MailboxSlot taken[MAILBOX_SLOTS];
	int			which[MAILBOX_SLOTS];
	int			ntaken = 0;
	StringInfoData rows;
	int			nrows = 0;
	bool		have_rows = false;
	int			i;

	if (mailbox == NULL || pg_atomic_exchange_u32(&mailbox->posted, 0) == 0)
		return;

	SpinLockAcquire(&mailbox->mutex);
	for (i = 0; i < MAILBOX_SLOTS; i++)
		if (mailbox->slots[i].state == SLOT_POSTED)
		{
			mailbox->slots[i].state = SLOT_TAKEN;
			taken[ntaken] = mailbox->slots[i];
			which[ntaken++] = i;
		}
	SpinLockRelease(&mailbox->mutex);

	for (i = 0; i < ntaken; i++)
	{
		MailboxSlot *req = &taken[i];
		dsm_segment *seg;

		req->failed = false;
		if (req->kind == REQUEST_DISCONNECT)
		{
			req->found = pgws_conn_disconnect_id(req->conn_id);
			continue;
		}
		if (!have_rows)
		{
			initStringInfo(&rows);
			nrows = pgws_conn_snapshot(&rows);
			have_rows = true;
		}
		req->needed = rows.len;
		req->nrows = nrows;
		/* NULL: the backend gave up and its segment is gone */
		seg = dsm_attach(req->segment);
		if (seg == NULL)
			continue;
		if ((Size) rows.len <= req->segment_size)
			memcpy(dsm_segment_address(seg), rows.data, rows.len);
		dsm_detach(seg);
	}
	if (have_rows)
		pfree(rows.data);

	SpinLockAcquire(&mailbox->mutex);
	for (i = 0; i < ntaken; i++)
	{
		MailboxSlot *slot = &mailbox->slots[which[i]];

		if (slot->state == SLOT_ABANDONED)
			slot->state = SLOT_FREE;
		else
		{
			slot->found = taken[i].found;
			slot->needed = taken[i].needed;
			slot->nrows = taken[i].nrows;
			slot->failed = false;
			slot->state = SLOT_DONE;
		}
	}
	SpinLockRelease(&mailbox->mutex);
	if (ntaken > 0)
		ConditionVariableBroadcast(&mailbox->changed);
}

/*
 * The worker is exiting: a request it took and did not answer is answered
 * as failed (the next worker answers those still posted).
 */
void
pgws_mailbox_worker_exit(void)
{
	int			i;
	bool		any = false;

	if (mailbox == NULL)
		return;
	SpinLockAcquire(&mailbox->mutex);
	for (i = 0; i < MAILBOX_SLOTS; i++)
	{
		MailboxSlot *slot = &mailbox->slots[i];

		if (slot->state == SLOT_TAKEN)
		{
			slot->failed = true;
			slot->state = SLOT_DONE;
			any = true;
		}
		else if (slot->state == SLOT_ABANDONED)
			slot->state = SLOT_FREE;
	}
	SpinLockRelease(&mailbox->mutex);
	if (any)
		ConditionVariableBroadcast(&mailbox->changed);
}

/* ----------------------------------------------------------- a backend */

/* the slot this backend's request is in, -1 when none */
static int	my_slot = -1;
static bool exit_callback_registered = false;

/*
 * Give this backend's slot back: a request the worker has taken is marked
 * abandoned (the worker frees it), any other is free at once.
 */
static void
give_back_slot(void)
{
	MailboxSlot *slot;

	if (my_slot < 0)
		return;
	slot = &mailbox->slots[my_slot];
	SpinLockAcquire(&mailbox->mutex);
	slot->state = slot->state == SLOT_TAKEN ? SLOT_ABANDONED : SLOT_FREE;
	SpinLockRelease(&mailbox->mutex);
	my_slot = -1;
	ConditionVariableBroadcast(&mailbox->changed);
}

/* a backend terminated while it waits must not keep its slot */
static void
give_back_slot_at_exit(int code, Datum arg)
{
	give_back_slot();
}

static void
timed_out(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the pg_ws worker did not answer %s within %d seconds",
					what, MAILBOX_TIMEOUT_MS / 1000),
			 errhint("The worker may be busy or stuck; pg_ws_stats and the server log say more.")));
}

/* take a free slot, waiting for one until deadline */
static int
take_slot(TimestampTz deadline, const char *what)
{
	for (;;)
	{
		int			i;
		long		left;

		if (!exit_callback_registered)
		{
			before_shmem_exit(give_back_slot_at_exit, (Datum) 0);
			exit_callback_registered = true;
		}
		SpinLockAcquire(&mailbox->mutex);
		for (i = 0; i < MAILBOX_SLOTS; i++)
			if (mailbox->slots[i].state == SLOT_FREE)
			{
				memset(&mailbox->slots[i], 0, sizeof(MailboxSlot));
				mailbox->slots[i].state = SLOT_FILLING;
				my_slot = i;
				SpinLockRelease(&mailbox->mutex);
				ConditionVariableCancelSleep();
				return i;
			}
		SpinLockRelease(&mailbox->mutex);
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
		{
			ConditionVariableCancelSleep();
			timed_out(what);
		}
		(void) ConditionVariableTimedSleep(&mailbox->changed, left,
										   PG_WAIT_EXTENSION);
	}
}

/*
 * Post the request in slot i (filled in by the caller, state still ours)
 * and wait for the answer, copied into *answer.  Raises an error when the
 * worker does not answer by the deadline; the slot is given back on every
 * way out, an error or a cancel included.
 */
static void
ask_worker(int i, TimestampTz deadline, const char *what, MailboxSlot *answer)
{
	MailboxSlot *slot = &mailbox->slots[i];
	volatile bool answered = false;

	SpinLockAcquire(&mailbox->mutex);
	slot->state = SLOT_POSTED;
	SpinLockRelease(&mailbox->mutex);
	pg_atomic_write_u32(&mailbox->posted, 1);
	pgws_queue_wake_worker();

	PG_TRY();
	{
		for (;;)
		{
			long		left;

			SpinLockAcquire(&mailbox->mutex);
			if (slot->state == SLOT_DONE)
			{
				*answer = *slot;
				answered = true;
			}
			SpinLockRelease(&mailbox->mutex);
			if (answered)
				break;
			left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (left <= 0)
				break;
			(void) ConditionVariableTimedSleep(&mailbox->changed, Min(left, 1000),
											   PG_WAIT_EXTENSION);
			/* a wake-up may have been coalesced with the worker's own */
			if (!answered)
				pgws_queue_wake_worker();
		}
		ConditionVariableCancelSleep();
	}
	PG_CATCH();
	{
		give_back_slot();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* posted and not taken: take it back; taken: the worker frees it */
	SpinLockAcquire(&mailbox->mutex);
	if (!answered && slot->state == SLOT_DONE)
	{
		*answer = *slot;
		answered = true;
	}
	SpinLockRelease(&mailbox->mutex);
	give_back_slot();
	if (!answered)
		timed_out(what);
	if (answer->failed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pg_ws worker exited while answering %s", what),
				 errhint("Try again once it has restarted.")));
}

static bool
worker_running(void)
{
	PgWsQueueStats queue;

	pgws_queue_get_stats(&queue);
	return queue.worker_pid != 0;
}

static const char *
state_name(int32 state)
{
	switch ((PgWsConnInfoState) state)
	{
		case PGWS_CONN_INFO_HANDSHAKE:
			return "handshake";
		case PGWS_CONN_INFO_REFUSED:
			return "refused";
		case PGWS_CONN_INFO_SUBSCRIBED:
			return "subscribed";
		case PGWS_CONN_INFO_WAITING:
			return "waiting";
		case PGWS_CONN_INFO_CLOSING:
			return "closing";
	}
	return "unknown";
}

/* ?events= as given, split at commas, as text[] */
static Datum
filter_array(const char *text, uint32 len)
{
	ArrayBuildState *astate = NULL;
	const char *p = text;
	const char *end = text + len;

	while (p <= end)
	{
		const char *comma = memchr(p, ',', end - p);
		const char *stop = comma ? comma : end;

		astate = accumArrayResult(astate,
								  PointerGetDatum(cstring_to_text_with_len(p, stop - p)),
								  false, TEXTOID, CurrentMemoryContext);
		p = stop + 1;
	}
	return makeArrayResult(astate, CurrentMemoryContext);
}

#define PG_WS_CONNECTIONS_COLS 13

/*
 * A token's expiry, Unix seconds (auth.c clamps exp to 2^60), as
 * timestamptz.  time_t_to_timestamptz() multiplies without a check, so a
 * far exp (1e13, year 318857) wrapped around to a date in 1970: past what
 * timestamptz holds (the year 294276) it is 'infinity', which is what
 * such a token means.
 */
static Datum
expiry_datum(int64 unix_seconds)
{
	int64		pg_seconds = unix_seconds -
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	TimestampTz ts;

	if (pg_seconds >= END_TIMESTAMP / USECS_PER_SEC)
		TIMESTAMP_NOEND(ts);
	else if (pg_seconds < MIN_TIMESTAMP / USECS_PER_SEC)
		TIMESTAMP_NOBEGIN(ts);
	else
		ts = pg_seconds * USECS_PER_SEC;
	return TimestampTzGetDatum(ts);
}

/* one row of the snapshot into the tuplestore */
static void
put_row(ReturnSetInfo *rsinfo, const PgWsConnInfo *c, const char *filter)
{
	Datum		values[PG_WS_CONNECTIONS_COLS];
	bool		nulls[PG_WS_CONNECTIONS_COLS];
	int			i = 0;

	memset(nulls, 0, sizeof(nulls));
	values[i++] = Int64GetDatum((int64) c->id);
	values[i++] = CStringGetTextDatum(state_name(c->state));
	/* the address as inet_ntop wrote it: never anything inet refuses */
	values[i++] = DirectFunctionCall1(inet_in, CStringGetDatum(c->peer));
	values[i++] = Int32GetDatum(c->peer_port);
	values[i++] = BoolGetDatum(c->tls);
	values[i++] = TimestampTzGetDatum(c->connected_since);
	nulls[i] = c->subject[0] == '\0';
	values[i++] = CStringGetTextDatum(c->subject);
	nulls[i] = c->token_expires == 0;
	values[i++] = expiry_datum(c->token_expires);
	nulls[i] = !c->filtered;
	values[i++] = c->filtered ? filter_array(filter, c->filter_len) : (Datum) 0;
	nulls[i] = c->row_filter_len == 0;
	values[i++] = c->row_filter_len == 0 ? (Datum) 0 :
		PointerGetDatum(cstring_to_text_with_len(filter + c->filter_len,
												 c->row_filter_len));
	values[i++] = Int64GetDatum((int64) c->messages_sent);
	values[i++] = Int64GetDatum((int64) c->bytes_sent);
	values[i++] = Int64GetDatum((int64) c->bytes_pending);
	Assert(i == PG_WS_CONNECTIONS_COLS);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * pg_ws_connections(): one row per socket the worker holds; see
 * sql/pg_ws--1.2.sql for the columns.  No rows while no worker runs (it
 * holds every socket).
 */
PG_FUNCTION_INFO_V1(pg_ws_connections);

Datum
pg_ws_connections(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz deadline;
	PgWsStatsSnapshot snap;
	Size		size;
	int			attempt;

	pgws_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != PG_WS_CONNECTIONS_COLS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws_connections() is declared with %d columns but the pg_ws library returns %d",
						rsinfo->setDesc->natts, PG_WS_CONNECTIONS_COLS),
				 errhint("Run ALTER EXTENSION pg_ws UPDATE.")));
	if (!worker_running())
		return (Datum) 0;

	/* room for the connections of the last second, and more */
	pgws_stats_snapshot(&snap);
	size = (Size) (Max(snap.worker.connections, 0) + 64) *
		(sizeof(PgWsConnInfo) + 128);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), MAILBOX_TIMEOUT_MS);

	for (attempt = 0; attempt < SNAPSHOT_ATTEMPTS; attempt++)
	{
		dsm_segment *seg = dsm_create(size, 0);
		MailboxSlot answer;
		int			i = take_slot(deadline, "pg_ws_connections()");
		const char *p;
		int			n;

		mailbox->slots[i].kind = REQUEST_SNAPSHOT;
		mailbox->slots[i].segment = dsm_segment_handle(seg);
		mailbox->slots[i].segment_size = size;
		ask_worker(i, deadline, "pg_ws_connections()", &answer);
		if (answer.needed > size)
		{
			/* more connections than room: again, with room for them */
			dsm_detach(seg);
			size = answer.needed + answer.needed / 4 + 4096;
			continue;
		}
		p = dsm_segment_address(seg);
		for (n = 0; n < answer.nrows; n++)
		{
			PgWsConnInfo info;

			memcpy(&info, p, sizeof(info));
			put_row(rsinfo, &info, p + sizeof(info));
			p += MAXALIGN(sizeof(info) + info.filter_len + info.row_filter_len);
		}
		dsm_detach(seg);
		return (Datum) 0;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the pg_ws worker's connections kept outgrowing the room made for them"),
			 errhint("Try again.")));
	return (Datum) 0;
}

/*
 * pg_ws_disconnect(id bigint) returns boolean
 *
 * Asks the worker to close connection id: a subscriber gets a close frame
 * (1008, "disconnected by an administrator") and then its socket is
 * closed; a connection still in its handshake is closed at once.  True
 * when a connection with that id existed.
 */
PG_FUNCTION_INFO_V1(pg_ws_disconnect);

Datum
pg_ws_disconnect(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	TimestampTz deadline;
	MailboxSlot answer;
	int			i;

	pgws_require_preload();
	if (id <= 0 || !worker_running())
		PG_RETURN_BOOL(false);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), MAILBOX_TIMEOUT_MS);
	i = take_slot(deadline, "pg_ws_disconnect()");
	mailbox->slots[i].kind = REQUEST_DISCONNECT;
	mailbox->slots[i].conn_id = (uint64) id;
	ask_worker(i, deadline, "pg_ws_disconnect()", &answer);
	PG_RETURN_BOOL(answer.found);
}
