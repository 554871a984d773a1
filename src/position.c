/*-------------------------------------------------------------------------
 *
 * position.c
 *	  Snapshot positions: where a transaction's snapshot stands in the event
 *	  stream, so that a frontend that read its rows in that transaction can
 *	  subscribe with pg_ws_position() and receive exactly the events its
 *	  rows do not show, then the live stream.
 *
 * This file owns the shared table of recent event transactions (which
 * transaction wrote the pg_ws record at which LSN), pg_ws_position(), and a
 * position's text form.  It must not write or read WAL records
 * (walrecord.c, walread.c), nor decide what a subscriber is sent
 * (broadcast.c applies the position decoded here).
 *
 * What a position says.  A snapshot sees a transaction when the
 * transaction's id precedes the snapshot's xmax and is not among the ids
 * the snapshot saw running.  A position is four things: after, until, xmax
 * and a few xids; its subscriber receives every event with a position
 * (seq) above after, except those below until whose transaction id
 * precedes xmax and is not among the xids: the transactions the snapshot
 * saw.  The WAL order of pg_ws records (which is the stream's order) and
 * the order in which transactions became visible differ only for
 * transactions that were in their commit paths together, which is why a
 * position is more than one number.
 *
 *  - until: every pg_ws record of a transaction the snapshot sees lies
 *    below it.  On a primary it is the WAL insert position when
 *    pg_ws_position() runs, read while no record is being appended (every
 *    transaction the snapshot sees committed before, and its pg_ws record
 *    precedes its commit record); on a standby, the end of replay.
 *  - after: just before the first record below until of a transaction the
 *    snapshot does not see.  Such a transaction was running when the
 *    snapshot was taken (a record written before then is one in its commit
 *    path, since pre-commit writes it), or it began afterwards (its id is
 *    at or past xmax).
 *  - xids: the running ones among them (those before xmax).
 *
 * The table.  Every pg_ws record is noted here with its transaction's id,
 * in WAL order: by the committing backend in the critical section that
 * writes it (under the queue's lock, queue.c), and on a standby, or in
 * crash recovery, by its replay (walrecord.c).  pg_ws_position() reads it
 * backwards from the newest entry and stops as soon as no older entry can
 * matter: each entry carries the greatest id noted up to it, and once that
 * precedes xmax and every running id it still looks for, nothing older is
 * a transaction begun after the snapshot or one it looks for.  It looks
 * only for running ids that wrote a record: a bit per transaction id over
 * the last POSITION_XID_WINDOW ids says which did, so that a long
 * transaction that wrote no event (a batch job on other tables) does not
 * make it read further back.
 *
 * When that cannot be decided (the table, a ring of POSITION_RING_SIZE
 * entries, no longer reaches back far enough; a running id is older than
 * the bits' window; on a standby, a running id older than where replay
 * began, whose record this standby may never have read), pg_ws_position()
 * fails with a serialization failure, which applications already retry.
 *
 * The text form is base64url of a versioned binary layout that carries the
 * epoch too (system identifier, database and timeline), so that ?since=
 * needs nothing else.
 *
 * src/position.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "jwt.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

/* pg_ws records the table remembers, newest first */
#define POSITION_RING_SIZE 65536

/* transaction ids whose "wrote a record" bit is kept, and its step */
#define POSITION_XID_WINDOW (UINT32_C(1) << 23)
#define POSITION_XID_CHUNK (UINT32_C(1) << 16)

/*
 * A position's binary layout before its list of xids: version 2 carries
 * the timeline after the database; version 1 (pg_ws 1.3) did not, and is
 * still read, as a position that does not say its timeline.
 */
#define POSITION_VERSION 2
#define POSITION_FIXED_LEN_V1 (1 + 8 + 4 + 8 + 8 + 4)
#define POSITION_FIXED_LEN (POSITION_FIXED_LEN_V1 + 4)

/* running ids a position can list: more than any server runs at once */
#define POSITION_MAX_XIDS 65536

typedef struct PositionEntry
{
	XLogRecPtr	lsn;			/* where the record starts */
	TransactionId xid;			/* the transaction that wrote it */
	TransactionId max_xid;		/* the greatest xid noted up to here */
} PositionEntry;

typedef struct PgWsPositions
{
	LWLock	   *lock;
	uint64		count;			/* entries ever noted; the ring holds the
								 * last POSITION_RING_SIZE */
	TransactionId max_xid;		/* of every entry noted; valid once count > 0 */
	bool		bits_valid;		/* bits_base is set */
	TransactionId bits_base;	/* bits cover [bits_base, + WINDOW) */
	TransactionId recovery_from;	/* next xid when replay began (the records
									 * of older ones may precede what was
									 * replayed); invalid if never */
	PositionEntry ring[POSITION_RING_SIZE];
	uint64		bits[POSITION_XID_WINDOW / 64];
} PgWsPositions;

static PgWsPositions *positions = NULL;

void
pgws_position_request_shmem(void)
{
	RequestAddinShmemSpace(sizeof(PgWsPositions));
	RequestNamedLWLockTranche("pg_ws_positions", 1);
}

void
pgws_position_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	positions = ShmemInitStruct("pg_ws positions", sizeof(PgWsPositions),
								&found);
	if (!found)
	{
		positions->lock = &(GetNamedLWLockTranche("pg_ws_positions"))->lock;
		positions->count = 0;
		positions->max_xid = InvalidTransactionId;
		positions->bits_valid = false;
		positions->bits_base = InvalidTransactionId;
		positions->recovery_from = InvalidTransactionId;
		memset(positions->bits, 0, sizeof(positions->bits));
	}
	LWLockRelease(AddinShmemInitLock);
}

/* the word and bit of xid's "wrote a record" flag */
static inline uint64 *
xid_bit(TransactionId xid, uint64 *mask)
{
	uint32		i = xid % POSITION_XID_WINDOW;

	*mask = UINT64_C(1) << (i % 64);
	return &positions->bits[i / 64];
}

/* clear the flags of the chunk of ids starting at base (chunk-aligned) */
static void
clear_chunk(TransactionId base)
{
	uint32		i = base % POSITION_XID_WINDOW;

	memset(&positions->bits[i / 64], 0, POSITION_XID_CHUNK / 8);
}

/* flag xid as having written a record; call with the lock held */
static void
note_bit(TransactionId xid)
{
	uint32		gap;
	uint64		mask;

	if (!positions->bits_valid)
	{
		/*
		 * The window ends a chunk past the first id noted, so that the
		 * older transactions that commit after it fit in it.
		 */
		positions->bits_base = (xid + POSITION_XID_CHUNK - POSITION_XID_WINDOW) &
			~(POSITION_XID_CHUNK - 1);
		positions->bits_valid = true;
	}
	else if (TransactionIdPrecedes(xid, positions->bits_base))
		return;					/* older than the window: "unknown" */

	gap = xid - positions->bits_base;
	if (gap >= POSITION_XID_WINDOW)
	{
		uint32		advance = (gap - POSITION_XID_WINDOW + POSITION_XID_CHUNK) &
			~(POSITION_XID_CHUNK - 1);

		if (advance >= POSITION_XID_WINDOW)
			memset(positions->bits, 0, sizeof(positions->bits));
		else
			for (uint32 off = 0; off < advance; off += POSITION_XID_CHUNK)
				clear_chunk(positions->bits_base + off);
		positions->bits_base += advance;
	}
	*xid_bit(xid, &mask) |= mask;
}

/*
 * The pg_ws record at lsn was written by transaction xid: by the committing
 * backend, in the critical section that wrote it (with the queue's lock
 * held, so that records are noted in WAL order), or by its replay.  Must
 * not fail, and does not.
 */
void
pgws_position_note(TransactionId xid, XLogRecPtr lsn)
{
	PositionEntry *e;

	if (positions == NULL || !TransactionIdIsNormal(xid))
		return;
	LWLockAcquire(positions->lock, LW_EXCLUSIVE);
	if (positions->count == 0 ||
		TransactionIdFollows(xid, positions->max_xid))
		positions->max_xid = xid;
	e = &positions->ring[positions->count % POSITION_RING_SIZE];
	e->lsn = lsn;
	e->xid = xid;
	e->max_xid = positions->max_xid;
	positions->count++;
	note_bit(xid);
	LWLockRelease(positions->lock);
}

/*
 * Replay begins (the resource manager's startup): records of transactions
 * with older ids may lie before the WAL replayed from here.
 */
void
pgws_position_recovery_started(void)
{
	if (positions == NULL)
		return;
	LWLockAcquire(positions->lock, LW_EXCLUSIVE);
	positions->recovery_from = ReadNextTransactionId();
	LWLockRelease(positions->lock);
}

/*
 * Where a hot standby's worker starts reading the WAL it follows: where
 * replay stands now, or the oldest pg_ws record of a transaction still in
 * its commit path (its record replayed, its commit record not yet), so
 * that a subscriber who joins now also gets that transaction's events
 * when it commits, however much later.  The lock keeps replay from noting
 * records meanwhile, so every record not looked at lies at or past the
 * end of replay read last; a transaction judged over had its commit
 * replayed before that end.  Reads up to the whole table, once per
 * worker start.
 *
 * A transaction whose record lies before the WAL this standby replayed
 * (its commit path spanned the checkpoint replay began from) is not in
 * the table: README's Known limits says so.
 */
XLogRecPtr
pgws_position_follow_from(void)
{
	XLogRecPtr	from = InvalidXLogRecPtr;
	XLogRecPtr	replayed;
	uint64		oldest;

	LWLockAcquire(positions->lock, LW_SHARED);
	oldest = positions->count > POSITION_RING_SIZE ?
		positions->count - POSITION_RING_SIZE : 0;
	for (uint64 i = positions->count; i > oldest; i--)
	{
		PositionEntry *e = &positions->ring[(i - 1) % POSITION_RING_SIZE];

		if ((XLogRecPtrIsInvalid(from) || e->lsn < from) &&
			TransactionIdIsInProgress(e->xid))
			from = e->lsn;
	}
	replayed = GetXLogReplayRecPtr(NULL);
	LWLockRelease(positions->lock);
	return XLogRecPtrIsInvalid(from) ? replayed : Min(from, replayed);
}

typedef enum XidRecord
{
	XID_NO_RECORD,				/* wrote no pg_ws record (yet) */
	XID_HAS_RECORD,				/* wrote one: it is in the table */
	XID_UNKNOWN,				/* older than the bits: look for it */
	XID_BEFORE_REPLAY			/* may have written one before replay began */
} XidRecord;

/* did running transaction xid write a record?  Call with the lock held. */
static XidRecord
xid_record(TransactionId xid, bool in_recovery)
{
	uint64		mask;

	if (in_recovery && TransactionIdIsValid(positions->recovery_from) &&
		TransactionIdPrecedes(xid, positions->recovery_from))
		return XID_BEFORE_REPLAY;
	if (!positions->bits_valid)
		return XID_NO_RECORD;	/* none was ever written */
	if (TransactionIdPrecedes(xid, positions->bits_base))
		return XID_UNKNOWN;
	if ((uint32) (xid - positions->bits_base) >= POSITION_XID_WINDOW)
		return XID_NO_RECORD;	/* newer than any noted */
	return (*xid_bit(xid, &mask) & mask) ? XID_HAS_RECORD : XID_NO_RECORD;
}

static int
xid_cmp(const void *a, const void *b)
{
	TransactionId x = *(const TransactionId *) a;
	TransactionId y = *(const TransactionId *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* a running transaction pg_ws_position() looks for in the table */
typedef struct WantedXid
{
	TransactionId xid;
	XidRecord	kind;
	bool		found;
} WantedXid;

static int
wanted_cmp(const void *a, const void *b)
{
	return xid_cmp(&((const WantedXid *) a)->xid, &((const WantedXid *) b)->xid);
}

/* the oldest of the wanted ids not found yet (any id when none is left) */
static TransactionId
oldest_unfound_xid(const WantedXid *wanted, int nwanted)
{
	TransactionId oldest = InvalidTransactionId;

	for (int k = 0; k < nwanted; k++)
		if (!wanted[k].found &&
			(!TransactionIdIsValid(oldest) ||
			 TransactionIdPrecedes(wanted[k].xid, oldest)))
			oldest = wanted[k].xid;
	return oldest;
}

static void
put_be(uint8 *p, uint64 v, int n)
{
	for (int i = n - 1; i >= 0; i--)
	{
		p[i] = (uint8) (v & 0xff);
		v >>= 8;
	}
}

static uint64
get_be(const uint8 *p, int n)
{
	uint64		v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* v in 7-bit groups, low first, the high bit on all but the last; past it */
static uint8 *
write_varint(uint8 *p, uint32 v)
{
	for (;; v >>= 7)
	{
		*p++ = (uint8) ((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			return p;
	}
}

/* the text form of a position (see the file header) */
static char *
position_encode(const PgWsSnapshotPosition *pos)
{
	uint8	   *buf = palloc(POSITION_FIXED_LEN + 5 + pos->nxids * 5);
	uint8	   *p = buf;

	*p++ = POSITION_VERSION;
	put_be(p, pos->sysid, 8);
	p += 8;
	put_be(p, pos->database, 4);
	p += 4;
	put_be(p, pos->tli, 4);
	p += 4;
	put_be(p, pos->after, 8);
	p += 8;
	put_be(p, pos->until, 8);
	p += 8;
	put_be(p, pos->xmax, 4);
	p += 4;

	/* how many, then each id's distance below xmax, nearest first */
	p = write_varint(p, (uint32) pos->nxids);
	for (int i = pos->nxids - 1; i >= 0; i--)
		p = write_varint(p, pos->xmax - pos->xids[i]);
	return pgws_base64url_encode(buf, p - buf);
}

static bool
read_varint(const uint8 **p, const uint8 *end, uint32 *out)
{
	uint64		v = 0;

	for (int shift = 0; shift < 35; shift += 7)
	{
		if (*p >= end)
			return false;
		v |= (uint64) (**p & 0x7f) << shift;
		if ((*(*p)++ & 0x80) == 0)
		{
			if (v > PG_UINT32_MAX)
				return false;
			*out = (uint32) v;
			return true;
		}
	}
	return false;
}

/*
 * A position's text form, as ?since= gives it, into *pos (xids palloc'd in
 * the current memory context, in ascending order); false when it is not
 * one.  Runs in the worker.
 */
bool
pgws_position_decode(const char *text, PgWsSnapshotPosition *pos)
{
	size_t		len;
	uint8	   *buf = pgws_base64url_decode(text, strlen(text), &len);
	const uint8 *p;
	const uint8 *end;
	uint32		n;

	if (buf == NULL || len < POSITION_FIXED_LEN_V1 + 1 ||
		(buf[0] != POSITION_VERSION && buf[0] != 1) ||
		(buf[0] == POSITION_VERSION && len < POSITION_FIXED_LEN + 1))
		return false;
	p = buf + 1;
	end = buf + len;
	pos->sysid = get_be(p, 8);
	p += 8;
	pos->database = (Oid) get_be(p, 4);
	p += 4;
	pos->tli = 0;
	if (buf[0] == POSITION_VERSION)
	{
		pos->tli = (TimeLineID) get_be(p, 4);
		p += 4;
		if (pos->tli == 0)
			return false;
	}
	pos->after = get_be(p, 8);
	p += 8;
	pos->until = get_be(p, 8);
	p += 8;
	pos->xmax = (TransactionId) get_be(p, 4);
	p += 4;
	if (!read_varint(&p, end, &n) || n > POSITION_MAX_XIDS ||
		pos->after >= pos->until || !TransactionIdIsNormal(pos->xmax))
		return false;
	pos->nxids = (int) n;
	pos->xids = palloc(Max(n, 1) * sizeof(TransactionId));
	for (int i = (int) n - 1; i >= 0; i--)
	{
		uint32		distance;

		if (!read_varint(&p, end, &distance) || distance == 0)
			return false;
		pos->xids[i] = pos->xmax - distance;
	}
	if (p != end)
		return false;
	qsort(pos->xids, pos->nxids, sizeof(TransactionId), xid_cmp);
	return true;
}

/*
 * Did the snapshot of position pos see the transaction xid, whose event is
 * at seq?  Then its subscriber has the change in its rows already.
 */
bool
pgws_position_saw(const PgWsSnapshotPosition *pos, uint64 seq,
				  TransactionId xid)
{
	if (seq >= pos->until || !TransactionIdIsNormal(xid) ||
		!TransactionIdPrecedes(xid, pos->xmax))
		return false;
	return bsearch(&xid, pos->xids, pos->nxids, sizeof(TransactionId),
				   xid_cmp) == NULL;
}

static void
cannot_place(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("pg_ws cannot place this transaction's snapshot in the event stream"),
			 errdetail_internal("%s", detail),
			 errhint("Retry the transaction, and call pg_ws_position() early in it.")));
}

PG_FUNCTION_INFO_V1(pg_ws_position);

/*
 * pg_ws_position() RETURNS text: where this transaction's snapshot stands
 * in the event stream, for ?since=.
 */
Datum
pg_ws_position(PG_FUNCTION_ARGS)
{
	Snapshot	snap;
	bool		in_recovery = RecoveryInProgress();
	TransactionId *running;
	int			nrunning;
	WantedXid  *wanted;
	int			nwanted = 0;
	int			nunfound;
	TransactionId oldest_unfound;
	PgWsSnapshotPosition pos;
	XLogRecPtr	first;
	uint64		oldest;
	uint64		i;
	bool		stopped = false;
	Oid			events_database;

	pgws_require_preload();
	if (!IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("pg_ws_position() must be called in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("In READ COMMITTED each statement takes a snapshot of its own, so no position stands for the rows the transaction reads."),
				 errhint("Begin the transaction with BEGIN ISOLATION LEVEL REPEATABLE READ and read the rows and pg_ws_position() in it.")));
	if (!pgws_wal)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_ws_position() needs pg_ws.wal = on"),
				 errdetail("Without the WAL, positions are a counter that says nothing about snapshots.")));
	events_database = get_database_oid(pgws_database, true);
	if (events_database != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws_position() must be called in the database pg_ws serves"),
				 errdetail("pg_ws.database is \"%s\".", pgws_database)));

	snap = GetTransactionSnapshot();
	/* on a standby every id that may be running is in subxip */
	if (snap->takenDuringRecovery)
	{
		running = snap->subxip;
		nrunning = snap->subxcnt;
	}
	else
	{
		running = snap->xip;
		nrunning = snap->xcnt;
	}
	wanted = palloc(Max(nrunning, 1) * sizeof(WantedXid));

	memset(&pos, 0, sizeof(pos));
	pos.sysid = GetSystemIdentifier();
	pos.database = MyDatabaseId;
	pos.xmax = snap->xmax;
	pos.xids = palloc(Max(nrunning, 1) * sizeof(TransactionId));

	/*
	 * until first: every record below it is noted by the time it is read
	 * (see the file header), records noted afterwards lie at or above it.
	 * Its timeline is the one replayed up to it, or the one a primary
	 * inserts on (timeline.c).
	 */
	if (in_recovery)
		pos.until = GetXLogReplayRecPtr(&pos.tli);
	else
	{
		pos.until = pgws_queue_appended_through();
		pos.tli = GetWALInsertionTimeLine();
	}
	first = pos.until;

	LWLockAcquire(positions->lock, LW_SHARED);
	for (int k = 0; k < nrunning; k++)
	{
		XidRecord	kind = xid_record(running[k], in_recovery);

		if (kind == XID_NO_RECORD)
			continue;
		wanted[nwanted].xid = running[k];
		wanted[nwanted].kind = kind;
		wanted[nwanted++].found = false;
	}
	qsort(wanted, nwanted, sizeof(WantedXid), wanted_cmp);
	nunfound = nwanted;
	oldest_unfound = oldest_unfound_xid(wanted, nwanted);

	oldest = positions->count > POSITION_RING_SIZE ?
		positions->count - POSITION_RING_SIZE : 0;
	for (i = positions->count; i > oldest; i--)
	{
		PositionEntry *e = &positions->ring[(i - 1) % POSITION_RING_SIZE];
		bool		unseen = false;

		/* nothing from here back began after the snapshot or is wanted */
		if (TransactionIdPrecedes(e->max_xid, pos.xmax) &&
			(nunfound == 0 ||
			 TransactionIdPrecedes(e->max_xid, oldest_unfound)))
		{
			stopped = true;
			break;
		}

		if (TransactionIdFollowsOrEquals(e->xid, pos.xmax))
			unseen = true;
		else if (nunfound > 0)
		{
			WantedXid	key = {.xid = e->xid};
			WantedXid  *w = bsearch(&key, wanted, nwanted, sizeof(WantedXid),
								   wanted_cmp);

			if (w != NULL && !w->found)
			{
				w->found = true;
				nunfound--;
				oldest_unfound = oldest_unfound_xid(wanted, nwanted);
				unseen = true;
				if (e->lsn < pos.until)
					pos.xids[pos.nxids++] = e->xid;
			}
		}
		if (unseen && e->lsn < first)
			first = e->lsn;
	}
	LWLockRelease(positions->lock);

	if (!stopped && oldest > 0)
		cannot_place("The transactions it did not see go back further than pg_ws remembers.");
	for (int k = 0; k < nwanted && nunfound > 0; k++)
	{
		if (wanted[k].found)
			continue;
		if (wanted[k].kind == XID_BEFORE_REPLAY)
			cannot_place(psprintf("Transaction %u was running when replay began on this standby, and its events may lie before the WAL it replayed.",
								  wanted[k].xid));
		if (wanted[k].kind == XID_HAS_RECORD)
			cannot_place(psprintf("The events of transaction %u are no longer in pg_ws's table.",
								  wanted[k].xid));
		/* XID_UNKNOWN and not found back to before it began: none */
	}
	pos.after = first - 1;

	/*
	 * On a primary, make what the snapshot saw durable, and until with it:
	 * a subscriber is sent only durable events, and a position past the
	 * flushed WAL would be one this primary cannot vouch for.
	 */
	if (!in_recovery)
		XLogFlush(pos.until);

	qsort(pos.xids, pos.nxids, sizeof(TransactionId), xid_cmp);
	PG_RETURN_TEXT_P(cstring_to_text(position_encode(&pos)));
}
