/*-------------------------------------------------------------------------
 *
 * walread.c
 *	  Reading pg_ws's events back from pg_wal: for subscribers that resume
 *	  from an old position, after a restart of the worker or the server,
 *	  and on hot standbys, which have no queue of their own and (in
 *	  PostgreSQL 15) no logical decoding.
 *
 * This file owns the walk through the WAL, the pairing of pg_ws's
 * messages with their transactions' ends, and the order in which events
 * are handed over.  It must not write WAL (that is pre-commit's job), nor
 * know about subscribers or sockets: it hands events to a callback.
 *
 * It runs in the background worker only, which serves many sockets, so it
 * never raises an ERROR for WAL that is missing, removed under it, or
 * unreadable: the page and segment callbacks below record what went wrong
 * instead of ereport()ing the way xlogutils.c's read_local_xlog_page and
 * wal_segment_open do, and the caller is told GONE or WAIT.
 *
 * What is read.  At pre-commit a transaction with events writes one pg_ws
 * record (walrecord.c: a resource manager of pg_ws's own, which nothing but
 * pg_ws can write) whose payload is its events as JSON lines.  Line i
 * (from 0) of the record that starts at LSN L is the event with seq L + i.
 * A record is only worth handing over once its transaction's commit
 * record has been read, and on a primary once the transaction has also
 * left the ProcArray, as the live path waits for it to (queue.c): until
 * then it is not visible, and with synchronous replication not confirmed
 * by the synchronous standbys either.  An abort record drops it.  Events
 * go out in seq order, that is in record order rather than commit order,
 * so a committed record waits behind an earlier one that is not yet
 * resolved.  A transaction that ends without any record of it (the server
 * crashed) is known to be over when a shutdown checkpoint (which is also
 * what crash recovery ends with) or an end-of-recovery record is read, or
 * when a running-xacts record's oldestRunningXid has passed it (one that
 * covers the cluster: 19 also writes some for a single database): a
 * transaction leaves the ProcArray only after its commit record is in the
 * WAL, so a running-xacts record always follows the commit record of every
 * transaction it shows as finished.  A prepared transaction is not over at
 * a shutdown: its record waits for COMMIT PREPARED or ROLLBACK PREPARED
 * (pg_ws refuses to PREPARE a transaction with events, so this is defence).
 *
 * What is not read.  Logical messages with pg_ws's old prefix "pg_ws"
 * (what pg_ws wrote up to 1.2, and what pg_logical_emit_message() lets
 * any role that may call it write), pg_ws records of another database and
 * pg_ws records that do not parse are ignored: counted by reason for
 * pg_ws_stats, once each however many readers pass them, and logged
 * rate-limited.
 *
 * Memory.  The xlogreader's buffer for records that span pages is given
 * back after a record larger than READER_KEPT_RECORD_BUF.  Records wait in
 * the reader until they can be handed over; their payloads are kept up to
 * READER_PAYLOAD_BUDGET bytes, and past it only where each record starts
 * is kept, its payload read again from the WAL when its turn comes.  And past READER_MAX_HELD waiting records the
 * reader keeps only those up to the first unresolved one, reads on only to
 * learn how that one ends, and then reads the WAL after it again: what one
 * reader holds is bounded, however long a transaction takes to end.
 *
 * src/walread.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "walread.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/rmgr.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "catalog/pg_control.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/message.h"
#include "storage/procarray.h"
#include "storage/fd.h"
#include "storage/pmsignal.h"
#include "storage/standbydefs.h"
#include "utils/memutils.h"

/* the prefix of pg_ws's logical messages up to 1.2, with its NUL */
#define PGWS_OLD_MESSAGE_PREFIX "pg_ws"

/*
 * Records read by one pgws_walread_next at most, so that a stretch of WAL
 * without events (bulk loads, vacuum) does not hold the worker's loop up:
 * about a millisecond's worth.
 */
#define RECORDS_PER_CALL 10000

/*
 * Payload bytes one reader keeps of the records it waits to hand over,
 * besides the one it is handing over
 */
#define READER_PAYLOAD_BUDGET (1024 * 1024)

/* records one reader keeps waiting before it reads the WAL again instead */
#define READER_MAX_HELD 10000

/*
 * The xlogreader assembles a record that spans pages in a buffer it keeps,
 * as large as the largest record read so far: a reader keeps it only up to
 * this size, so that one huge record (anybody's: a logical message can be
 * a gigabyte) is not held for as long as the reader lives.
 */
#define READER_KEPT_RECORD_BUF (1024 * 1024)

/* one pg_ws record whose events are not all handed over yet */
typedef struct WalMessage
{
	dlist_node	node;
	TransactionId xid;			/* of the transaction that wrote it */
	XLogRecPtr	lsn;			/* where the record starts: seq of line 0 */
	bool		committed;		/* its commit record was read */
	bool		prepared;		/* its PREPARE TRANSACTION was read */
	uint64		next_seq;		/* seq of the line at data + off */
	uint32		off;
	uint32		len;			/* payload bytes, held or not */
	char	   *data;			/* the payload; NULL: read again at lsn */
} WalMessage;

struct PgWsWalReader
{
	MemoryContext cxt;
	Oid			database;		/* whose messages are handed over */
	XLogReaderState *xlr;
	uint64		after_seq;
	uint64		stop_seq;

	bool		positioned;		/* found the record to start from */
	bool		reposition;		/* XLogBeginRead(next_lsn) before reading */
	bool		gone;			/* GONE was answered: it stays so */
	XLogRecPtr	next_lsn;		/* where the next record starts */

	dlist_head	messages;		/* WalMessage, in record order */
	int			nheld;			/* how many */
	uint64		held_bytes;		/* of their payloads kept in memory */
	bool		skimming;		/* READER_MAX_HELD reached: reading only to
								 * resolve what is held ... */
	XLogRecPtr	rescan_lsn;		/* ... then reading again from here */
	XLogReaderState *rexlr;		/* reads a record's payload again */
	TransactionId horizon;		/* on a primary: xids before it have left
								 * the ProcArray (this call's look) */
	bool		other_database_seen;	/* a record of another database
										 * since last asked */

	/* what the callbacks saw during the last read */
	bool		end_of_wal;		/* asked for WAL not yet flushed/replayed */
	bool		missing;		/* a segment is not in pg_wal */
	bool		read_failed;	/* a read or open failed otherwise */
	int			read_errno;
	XLogSegNo	read_segno;
	TimeLineID	read_tli;
};

static int	walread_page_read(XLogReaderState *xlr, XLogRecPtr page,
							  int req_len, XLogRecPtr rec, char *buf);
static void walread_segment_open(XLogReaderState *xlr, XLogSegNo segno,
								 TimeLineID *tli_p);
static void walread_segment_close(XLogReaderState *xlr);
static void walread_clear_flags(PgWsWalReader *r);
static void walread_trim_record_buffer(XLogReaderState *xlr);

/* XLogReaderAllocate copies it */
static XLogReaderRoutine walread_routine = {
	.page_read = walread_page_read,
	.segment_open = walread_segment_open,
	.segment_close = walread_segment_close
};

/* the first record of a cluster's WAL is in segment 1 (BootStrapXLOG) */
static XLogRecPtr
first_wal_position(void)
{
	XLogRecPtr	first;

	XLogSegNoOffsetToRecPtr(1, 0, wal_segment_size, first);
	return first;
}

/*
 * The oldest LSN still in pg_wal: the start of the oldest segment file,
 * but never one the checkpointer has already removed (it may be half way
 * through removing them).  Recycled segments are renamed to future names,
 * so they do not pull the answer back.
 */
XLogRecPtr
pgws_walread_oldest(void)
{
	XLogSegNo	oldest = 0;
	XLogSegNo	removed = XLogGetLastRemovedSegno();
	DIR		   *dir;
	struct dirent *de;
	XLogRecPtr	result;

	dir = AllocateDir(XLOGDIR);
	/* DEBUG1: a failure here is reported, not raised, and we fall back */
	while ((de = ReadDirExtended(dir, XLOGDIR, DEBUG1)) != NULL)
	{
		TimeLineID	tli;
		XLogSegNo	segno;

		if (!IsXLogFileName(de->d_name))
			continue;
		XLogFromFileName(de->d_name, &tli, &segno, wal_segment_size);
		if (oldest == 0 || segno < oldest)
			oldest = segno;
	}
	if (dir != NULL)
		FreeDir(dir);

	if (oldest <= removed)
		oldest = removed + 1;
	XLogSegNoOffsetToRecPtr(oldest, 0, wal_segment_size, result);
	return result;
}

/*
 * Read the pg_ws record at lsn with xlr (one of r's): false when it cannot
 * be read or is not one.  events points into xlr's decoded record.
 */
static bool
walread_record_at(PgWsWalReader *r, XLogReaderState *xlr, XLogRecPtr lsn,
				  PgWsWalEvents *events)
{
	char	   *errormsg = NULL;

	walread_clear_flags(r);
	XLogBeginRead(xlr, lsn);
	return XLogReadRecord(xlr, &errormsg) != NULL && xlr->ReadRecPtr == lsn &&
		pgws_wal_record_events(xlr, events);
}

bool
pgws_walread_record_payload(XLogRecPtr lsn, StringInfo out)
{
	static PgWsWalReader *r = NULL;
	PgWsWalEvents events;
	MemoryContext old;
	bool		ok;

	if (r == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		r = pgws_walread_begin(InvalidOid, 0, 0);
		MemoryContextSwitchTo(old);
	}
	old = MemoryContextSwitchTo(r->cxt);
	ok = walread_record_at(r, r->xlr, lsn, &events);
	if (ok)
		appendBinaryStringInfo(out, events.payload, events.len);
	(void) XLogReleasePreviousRecord(r->xlr);
	walread_trim_record_buffer(r->xlr);
	MemoryContextSwitchTo(old);
	return ok;
}

/*
 * The oldest position one can resume after: every s at or above it works,
 * because the first record that starts in the oldest segment still in
 * pg_wal, R, can be read and no event of an earlier record has a position
 * above R - 1 (see walread_position).  0 while the cluster's first segment
 * is still there.  Reading R's position costs a page or two of WAL, so it
 * is remembered for as long as the oldest segment stays the same.
 */
uint64
pgws_walread_oldest_resumable(void)
{
	static XLogRecPtr cached_oldest = InvalidXLogRecPtr;
	static uint64 cached_result = 0;
	XLogRecPtr	oldest = pgws_walread_oldest();
	PgWsWalReader *r;
	XLogRecPtr	found;

	if (oldest <= first_wal_position())
		return 0;
	if (oldest == cached_oldest)
		return cached_result;

	r = pgws_walread_begin(InvalidOid, 0, 0);
	walread_clear_flags(r);
	found = pgws_find_next_record(r->xlr, oldest);
	pgws_walread_end(r);
	if (XLogRecPtrIsInvalid(found))
		return oldest;			/* nothing readable yet: no promise below it */
	cached_oldest = oldest;
	cached_result = found - 1;
	return cached_result;
}

XLogRecPtr
pgws_walread_end_of_wal(void)
{
	if (RecoveryInProgress())
		return GetXLogReplayRecPtr(NULL);
	return GetFlushRecPtr(NULL);
}

/*
 * Open segment segno of timeline tli as the reader's current segment.
 * Unlike wal_segment_open this never raises an error: a segment that is
 * not there is the ordinary way of learning that WAL is gone.
 */
static bool
walread_open(XLogReaderState *xlr, XLogSegNo segno, TimeLineID tli)
{
	PgWsWalReader *r = (PgWsWalReader *) xlr->private_data;
	char		path[MAXPGPATH];

	XLogFilePath(path, tli, segno, xlr->segcxt.ws_segsize);
	xlr->seg.ws_file = BasicOpenFile(path, O_RDONLY | PG_BINARY);
	xlr->seg.ws_segno = segno;
	xlr->seg.ws_tli = tli;
	if (xlr->seg.ws_file >= 0)
		return true;

	r->read_errno = errno;
	r->read_segno = segno;
	r->read_tli = tli;
	if (errno == ENOENT)
		r->missing = true;
	else
		r->read_failed = true;
	return false;
}

/*
 * XLogReaderRoutine->segment_open.  WALRead only calls it for a segment
 * page_read has not opened already, which does not happen; if it ever
 * did, a failure leaves ws_file at -1 and WALRead's read then fails.
 */
static void
walread_segment_open(XLogReaderState *xlr, XLogSegNo segno,
					 TimeLineID *tli_p)
{
	(void) walread_open(xlr, segno, *tli_p);
}

static void
walread_segment_close(XLogReaderState *xlr)
{
	if (xlr->seg.ws_file >= 0)
		close(xlr->seg.ws_file);
	xlr->seg.ws_file = -1;
}

/*
 * XLogReaderRoutine->page_read: read_local_xlog_page_no_wait's logic,
 * with failures recorded in the reader rather than raised.  We never read
 * past the end of flushed WAL (replayed WAL in recovery), and keep the
 * current segment open from page to page.
 */
static int
walread_page_read(XLogReaderState *xlr, XLogRecPtr page, int req_len,
				  XLogRecPtr rec, char *buf)
{
	PgWsWalReader *r = (PgWsWalReader *) xlr->private_data;
	XLogRecPtr	read_upto;
	TimeLineID	current_tli;
	TimeLineID	tli;
	XLogSegNo	segno;
	WALReadError errinfo;

	if (RecoveryInProgress())
		read_upto = GetXLogReplayRecPtr(&current_tli);
	else
		read_upto = GetFlushRecPtr(&current_tli);

	/*
	 * Pages before a promotion (ours or, on a cascading standby, an
	 * upstream's) are read from the newest timeline holding their segment;
	 * this rereads the history file only on random access or on entering
	 * a segment where a timeline ends.
	 */
	XLogReadDetermineTimeline(xlr, page, req_len, current_tli);
	if (xlr->currTLI == current_tli)
		tli = current_tli;
	else
	{
		/* a historical timeline is readable up to where it ended */
		read_upto = xlr->currTLIValidUntil;
		tli = xlr->currTLI;
	}

	if (page + req_len > read_upto)
	{
		r->end_of_wal = true;
		return -1;
	}

	/* a page never straddles segments: open its segment here, not in WALRead */
	XLByteToSeg(page, segno, xlr->segcxt.ws_segsize);
	if (xlr->seg.ws_file < 0 || xlr->seg.ws_segno != segno ||
		xlr->seg.ws_tli != tli)
	{
		walread_segment_close(xlr);
		if (!walread_open(xlr, segno, tli))
			return -1;
	}

	if (!WALRead(xlr, buf, page, XLOG_BLCKSZ, tli, &errinfo))
	{
		r->read_failed = true;
		r->read_errno = errinfo.wre_errno;
		r->read_segno = segno;
		r->read_tli = tli;
		return -1;
	}

	return (int) Min((XLogRecPtr) XLOG_BLCKSZ, read_upto - page);
}

static void
walread_clear_flags(PgWsWalReader *r)
{
	r->end_of_wal = false;
	r->missing = false;
	r->read_failed = false;
	r->read_errno = 0;
}

/*
 * After a failed read: was it only that the WAL is gone?  A segment the
 * checkpointer recycled while we had it open reads as garbage, not as
 * missing, so a failure at or below the last removed segment counts as
 * removal too.
 */
static bool
walread_failure_is_removal(PgWsWalReader *r, XLogRecPtr at)
{
	XLogSegNo	segno;

	if (r->missing)
		return true;
	XLByteToSeg(at, segno, wal_segment_size);
	return segno <= XLogGetLastRemovedSegno();
}

/* say why WAL that should be there could not be read, then GONE */
static PgWsWalStatus
walread_broken(PgWsWalReader *r, XLogRecPtr at, const char *errormsg)
{
	if (walread_failure_is_removal(r, at))
		ereport(DEBUG1,
				(errmsg_internal("pg_ws: WAL at %X/%X has been removed",
								 LSN_FORMAT_ARGS(at))));
	else if (r->read_failed)
	{
		char		fname[MAXFNAMELEN];

		XLogFileName(fname, r->read_tli, r->read_segno, wal_segment_size);
		errno = r->read_errno;
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("pg_ws could not read WAL segment \"%s\" near %X/%X: %m",
						fname, LSN_FORMAT_ARGS(at)),
				 errdetail("Subscribers resuming from before that point are told their history is gone.")));
	}
	else
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pg_ws could not read the WAL record at %X/%X: %s",
						LSN_FORMAT_ARGS(at),
						errormsg ? errormsg : "invalid record"),
				 errdetail("Subscribers resuming from before that point are told their history is gone.")));
	r->gone = true;
	return PGWS_WAL_GONE;
}

/*
 * Find a record to start reading from for the events after after_seq, and
 * position the reader there.  Any record that starts at or before
 * after_seq + 1 will do: the events of an earlier record have positions
 * below its end, which is at or before where the next record starts, so
 * none of them is after after_seq.  XLogFindNextRecord(P) gives the first
 * record starting at or after P; we step back from after_seq's page,
 * doubling the step, until that record starts early enough.
 *
 * If we have to go below the oldest segment in pg_wal without finding
 * such a record, some event after after_seq may be in WAL that is gone:
 * GONE, unless the oldest segment is the cluster's first, which nothing
 * precedes.  pgws_walread_oldest_resumable() says where that line is.
 */
static PgWsWalStatus
walread_position(PgWsWalReader *r)
{
	XLogRecPtr	oldest = pgws_walread_oldest();
	XLogRecPtr	from;
	uint64		step = XLOG_BLCKSZ;

	from = r->after_seq - r->after_seq % XLOG_BLCKSZ;
	for (;;)
	{
		bool		at_oldest = false;
		XLogRecPtr	found;

		if (from <= oldest)
		{
			from = oldest;
			at_oldest = true;
		}

		walread_clear_flags(r);
		found = pgws_find_next_record(r->xlr, from);

		if (XLogRecPtrIsInvalid(found))
		{
			if (r->missing)
			{
				/* removed since we looked: look again, or give up */
				XLogRecPtr	now_oldest = pgws_walread_oldest();

				if (now_oldest > oldest)
				{
					oldest = now_oldest;
					continue;
				}
				return walread_broken(r, from, NULL);
			}
			/*
			 * No whole record after from yet, or none on from's page: the
			 * pages after an XLOG_SWITCH record hold none.  Step back; what
			 * really is broken is reported when we read it forward.
			 */
			if (at_oldest)
				return r->end_of_wal ? PGWS_WAL_WAIT :
					walread_broken(r, from, NULL);
		}
		else if (found <= r->after_seq + 1 ||
				 (at_oldest && oldest == first_wal_position()))
		{
			r->positioned = true;
			r->reposition = true;
			r->next_lsn = found;
			return PGWS_WAL_MORE;
		}
		else if (at_oldest)
		{
			r->gone = true;
			return PGWS_WAL_GONE;
		}

		/* step back; from > oldest here, so this does not wrap */
		from = (from - oldest > step) ? from - step : oldest;
		step *= 2;
	}
}

/*
 * What the readers ignored, counted for pg_ws_stats once per record
 * however many readers pass it: the worker's readers all read forward, so
 * a record at or before the last one counted was counted already (or is
 * older than anything this worker counted, which is as good).
 */
static XLogRecPtr ignored_counted_through = InvalidXLogRecPtr;

/* log lines about ignored records, limited per reason */
static PgWsLogLimit ignored_log_limit[PGWS_NUM_IGNORED];

/* what the summary of suppressed lines calls a reason's lines */
static void
ignored_topic(PgWsIgnored reason, char *buf, size_t size)
{
	snprintf(buf, size, "ignored WAL records (%s)", pgws_ignored_names[reason]);
}

static void
walread_ignore(XLogReaderState *xlr, PgWsIgnored reason, const char *why)
{
	XLogRecPtr	lsn = xlr->ReadRecPtr;
	char		topic[64];

	if (lsn <= ignored_counted_through)
		return;
	ignored_counted_through = lsn;
	pgws_worker_stats.ignored[reason]++;
	ignored_topic(reason, topic, sizeof(topic));
	if (pgws_log_limit_allowed(&ignored_log_limit[reason], topic))
		ereport(LOG,
				(errmsg("pg_ws ignored the WAL record at %X/%X: %s",
						LSN_FORMAT_ARGS(lsn), why),
				 errdetail("Its content is never sent to subscribers.")));
}

void
pgws_walread_log_summaries(TimestampTz now)
{
	int			i;

	for (i = 0; i < PGWS_NUM_IGNORED; i++)
		if (ignored_log_limit[i].suppressed > 0)
		{
			char		topic[64];

			ignored_topic((PgWsIgnored) i, topic, sizeof(topic));
			pgws_log_limit_summary(&ignored_log_limit[i], topic, now);
		}
}

/*
 * A logical message: ignored, but one with pg_ws's old prefix is counted,
 * since it is what pg_ws wrote up to 1.2 (WAL of before an upgrade) or
 * what pg_logical_emit_message() writes for whoever may call it (a
 * forgery).
 */
static void
walread_logical_message(PgWsWalReader *r, XLogReaderState *xlr)
{
	xl_logical_message *msg = (xl_logical_message *) XLogRecGetData(xlr);
	uint32		data_len = XLogRecGetDataLen(xlr);

	if (data_len >= SizeOfLogicalMessage &&
		msg->prefix_size == sizeof(PGWS_OLD_MESSAGE_PREFIX) &&
		msg->prefix_size <= data_len - SizeOfLogicalMessage &&
		memcmp(msg->message, PGWS_OLD_MESSAGE_PREFIX,
			   sizeof(PGWS_OLD_MESSAGE_PREFIX)) == 0)
		walread_ignore(xlr, PGWS_IGNORED_LOGICAL_MESSAGE,
					   "a logical message with prefix \"pg_ws\", which pg_ws does not write since 1.2.1 (pg_logical_emit_message() writes them)");
}

/* keep a record's payload in memory, or note that it is to be read again */
static void
walread_hold_payload(PgWsWalReader *r, WalMessage *m, const char *payload)
{
	if (r->held_bytes + m->len > READER_PAYLOAD_BUDGET && r->nheld > 0)
	{
		m->data = NULL;
		return;
	}
	m->data = MemoryContextAllocHuge(r->cxt, Max(m->len, 1));
	memcpy(m->data, payload, m->len);
	r->held_bytes += m->len;
}

static void
walread_forget(PgWsWalReader *r, WalMessage *m)
{
	dlist_delete(&m->node);
	r->nheld--;
	if (m->data != NULL)
	{
		r->held_bytes -= m->len;
		pfree(m->data);
	}
	pfree(m);
}

/*
 * Too many records wait behind one that is not resolved: keep them up to
 * the first unresolved one, and read the WAL after it again once it is
 * (see the file header).
 */
static void
walread_start_skimming(PgWsWalReader *r)
{
	dlist_mutable_iter iter;
	bool		unresolved_seen = false;

	dlist_foreach_modify(iter, &r->messages)
	{
		WalMessage *m = dlist_container(WalMessage, node, iter.cur);

		if (unresolved_seen)
		{
			if (!r->skimming)
			{
				r->skimming = true;
				r->rescan_lsn = m->lsn;
			}
			walread_forget(r, m);
		}
		else if (!m->committed)
			unresolved_seen = true;
	}
}

/*
 * A pg_ws record: keep its events after after_seq and before stop_seq
 * until its transaction ends.
 */
static void
walread_message(PgWsWalReader *r, XLogReaderState *xlr)
{
	PgWsWalEvents events;
	XLogRecPtr	lsn = xlr->ReadRecPtr;
	const char *payload;
	uint64		len;
	uint64		seq = lsn;
	WalMessage *m;

	if (!pgws_wal_record_events(xlr, &events))
	{
		walread_ignore(xlr, PGWS_IGNORED_MALFORMED,
					   "a pg_ws record this release cannot read");
		return;
	}
	if (events.database != r->database)
	{
		walread_ignore(xlr, PGWS_IGNORED_OTHER_DATABASE,
					   "pg_ws events of another database than pg_ws.database");
		r->other_database_seen = true;
		return;
	}
	if (r->skimming || !TransactionIdIsValid(XLogRecGetXid(xlr)) ||
		lsn >= r->stop_seq)
		return;

	payload = events.payload;
	len = events.len;

	/* lines already handed over: only where the reader started */
	while (seq <= r->after_seq && len > 0)
	{
		const char *nl = memchr(payload, '\n', len);
		uint64		line = nl ? (nl - payload) + 1 : len;

		payload += line;
		len -= line;
		seq++;
	}
	if (len == 0)
		return;

	m = MemoryContextAlloc(r->cxt, sizeof(WalMessage));
	m->xid = XLogRecGetXid(xlr);
	m->lsn = lsn;
	m->committed = false;
	m->prepared = false;
	m->next_seq = seq;
	m->off = 0;
	m->len = (uint32) len;
	walread_hold_payload(r, m, payload);
	dlist_push_tail(&r->messages, &m->node);
	r->nheld++;
	if (r->nheld > READER_MAX_HELD)
		walread_start_skimming(r);
}

/* does the transaction ending as xid with these subxacts own m? */
static bool
walread_owns(WalMessage *m, TransactionId xid, int nsubxacts,
			 TransactionId *subxacts)
{
	int			i;

	if (m->xid == xid)
		return true;
	for (i = 0; i < nsubxacts; i++)
		if (m->xid == subxacts[i])
			return true;
	return false;
}

/*
 * A commit, abort or prepare record; COMMIT PREPARED and ROLLBACK PREPARED
 * name the prepared transaction they end.
 */
static void
walread_xact(PgWsWalReader *r, XLogReaderState *xlr)
{
	uint8		info = XLogRecGetInfo(xlr) & XLOG_XACT_OPMASK;
	TransactionId xid = XLogRecGetXid(xlr);
	int			nsubxacts = 0;
	TransactionId *subxacts = NULL;
	bool		committed;
	bool		prepared = false;
	dlist_mutable_iter iter;

	if (info == XLOG_XACT_COMMIT || info == XLOG_XACT_COMMIT_PREPARED)
	{
		xl_xact_parsed_commit parsed;

		ParseCommitRecord(XLogRecGetInfo(xlr),
						  (xl_xact_commit *) XLogRecGetData(xlr), &parsed);
		nsubxacts = parsed.nsubxacts;
		subxacts = parsed.subxacts;
		if (info == XLOG_XACT_COMMIT_PREPARED)
			xid = parsed.twophase_xid;
		committed = true;
	}
	else if (info == XLOG_XACT_ABORT || info == XLOG_XACT_ABORT_PREPARED)
	{
		xl_xact_parsed_abort parsed;

		ParseAbortRecord(XLogRecGetInfo(xlr),
						 (xl_xact_abort *) XLogRecGetData(xlr), &parsed);
		nsubxacts = parsed.nsubxacts;
		subxacts = parsed.subxacts;
		if (info == XLOG_XACT_ABORT_PREPARED)
			xid = parsed.twophase_xid;
		committed = false;
	}
	else if (info == XLOG_XACT_PREPARE)
	{
		committed = false;
		prepared = true;
	}
	else
		return;

	dlist_foreach_modify(iter, &r->messages)
	{
		WalMessage *m = dlist_container(WalMessage, node, iter.cur);

		if (m->committed || !walread_owns(m, xid, nsubxacts, subxacts))
			continue;
		if (prepared)
			m->prepared = true;
		else if (committed)
			m->committed = true;
		else
			walread_forget(r, m);
	}
}

/*
 * Drop the unresolved records of transactions known to be over without a
 * record: all of them (oldest_running invalid), or those of xids before
 * oldest_running; a prepared transaction survives both.
 */
static void
walread_drop_unfinished(PgWsWalReader *r, TransactionId oldest_running)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &r->messages)
	{
		WalMessage *m = dlist_container(WalMessage, node, iter.cur);

		if (m->committed || m->prepared)
			continue;
		if (TransactionIdIsValid(oldest_running) &&
			!TransactionIdPrecedes(m->xid, oldest_running))
			continue;
		walread_forget(r, m);
	}
}

static void
walread_record(PgWsWalReader *r, XLogReaderState *xlr)
{
	uint8		info = XLogRecGetInfo(xlr) & ~XLR_INFO_MASK;

	switch (XLogRecGetRmid(xlr))
	{
		case PGWS_RMGR_ID:
			walread_message(r, xlr);
			break;
		case RM_LOGICALMSG_ID:
			if (info == XLOG_LOGICAL_MESSAGE)
				walread_logical_message(r, xlr);
			break;
		case RM_XACT_ID:
			if (!dlist_is_empty(&r->messages))
				walread_xact(r, xlr);
			break;
		case RM_XLOG_ID:
			/* after these no transaction of before is still running */
			if (info == XLOG_CHECKPOINT_SHUTDOWN ||
				info == XLOG_END_OF_RECOVERY)
				walread_drop_unfinished(r, InvalidTransactionId);
			break;
		case RM_STANDBY_ID:
			if (info == XLOG_RUNNING_XACTS && !dlist_is_empty(&r->messages))
			{
				xl_running_xacts *running;

				running = (xl_running_xacts *) XLogRecGetData(xlr);
				if (pgws_running_xacts_cover_cluster(running) &&
					TransactionIdIsValid(running->oldestRunningXid))
					walread_drop_unfinished(r, running->oldestRunningXid);
			}
			break;
		default:
			break;
	}
}

/*
 * May m's events go out?  Its commit record was read; on a primary its
 * transaction must also have left the ProcArray, as the live path's
 * entries do before they are sent (see the file header).  On a standby
 * replay of the commit record is what makes it visible there.
 */
static bool
walread_visible(PgWsWalReader *r, WalMessage *m)
{
	if (!m->committed)
		return false;

	/*
	 * On a primary whose postmaster died, a transaction may have stopped
	 * waiting for its synchronous standbys and ended locally only (see
	 * pgws_queue_finish): nothing more is visible; the worker exits soon.
	 */
	if (TransactionIdIsValid(r->horizon) && !PostmasterIsAlive())
		return false;
	if (!TransactionIdIsValid(r->horizon) ||
		TransactionIdPrecedes(m->xid, r->horizon))
		return true;
	return !TransactionIdIsInProgress(m->xid);
}

/*
 * A record whose payload was not kept: read it again.  False when that
 * fails (the WAL was removed meanwhile).
 */
static bool
walread_reload(PgWsWalReader *r, WalMessage *m)
{
	PgWsWalEvents events;
	uint64		skip;
	const char *payload;
	uint32		len;

	if (r->rexlr == NULL)
	{
		r->rexlr = XLogReaderAllocate(wal_segment_size, NULL,
									  &walread_routine, r);
		if (r->rexlr == NULL)
			return false;
	}
	if (!walread_record_at(r, r->rexlr, m->lsn, &events))
		return false;

	/* the lines before next_seq were skipped when it was first read */
	payload = events.payload;
	len = events.len;
	for (skip = m->next_seq - m->lsn; skip > 0 && len > 0; skip--)
	{
		const char *nl = memchr(payload, '\n', len);
		uint32		line = nl ? (uint32) (nl - payload) + 1 : len;

		payload += line;
		len -= line;
	}
	if (len < m->len - m->off)
		return false;
	m->data = MemoryContextAllocHuge(r->cxt, Max(m->len, 1));
	memcpy(m->data + m->off, payload, m->len - m->off);
	r->held_bytes += m->len;
	(void) XLogReleasePreviousRecord(r->rexlr);
	walread_trim_record_buffer(r->rexlr);
	return true;
}

/*
 * Hand over visible events from the head of the list, up to max; stop at
 * the first record whose transaction has not ended (or is not visible)
 * yet.  -1 when a record could not be read again.
 */
static int
walread_deliver(PgWsWalReader *r, int max, pgws_wal_event_sink sink,
				void *arg)
{
	int			n = 0;

	while (n < max && !dlist_is_empty(&r->messages))
	{
		WalMessage *m = dlist_head_element(WalMessage, node, &r->messages);

		if (!walread_visible(r, m))
			break;
		if (m->data == NULL && !walread_reload(r, m))
			return -1;
		while (n < max && m->off < m->len && m->next_seq < r->stop_seq)
		{
			const char *line = m->data + m->off;
			uint32		rest = m->len - m->off;
			const char *nl = memchr(line, '\n', rest);
			uint32		line_len = nl ? (uint32) (nl - line) : rest;
			uint64		seq = m->next_seq;

			m->off += nl ? line_len + 1 : line_len;
			m->next_seq++;
			/* an empty line holds a position but no event */
			if (line_len > 0)
			{
				n++;
				if (!sink(arg, seq, m->xid, line, line_len))
					max = n;	/* the sink has enough for now */
			}
		}
		if (m->off < m->len && m->next_seq < r->stop_seq)
			break;				/* max reached inside this record */
		walread_forget(r, m);
	}

	/* what was held up to the first unresolved record is out: read on */
	if (r->skimming && dlist_is_empty(&r->messages))
	{
		r->skimming = false;
		r->next_lsn = r->rescan_lsn;
		r->reposition = true;
	}
	return n;
}

/* every event before stop_seq handed over? */
static bool
walread_done(PgWsWalReader *r)
{
	return r->positioned && r->stop_seq != PG_UINT64_MAX &&
		r->next_lsn >= r->stop_seq && dlist_is_empty(&r->messages) &&
		!r->skimming;
}

/*
 * Nothing to read on for: the first record waiting is committed but not
 * visible yet (a primary's transaction between its commit record and its
 * leaving the ProcArray, such as one waiting for a synchronous standby).
 * Reading further would only hold more records behind it.
 */
static bool
walread_waits_for_visibility(PgWsWalReader *r)
{
	WalMessage *m;

	if (dlist_is_empty(&r->messages))
		return false;
	m = dlist_head_element(WalMessage, node, &r->messages);
	return m->committed && !walread_visible(r, m);
}

/* a position XLogBeginRead accepts: past the header of a page start */
static XLogRecPtr
walread_record_start(XLogRecPtr lsn)
{
	if (XLogSegmentOffset(lsn, wal_segment_size) == 0)
		return lsn + SizeOfXLogLongPHD;
	if (lsn % XLOG_BLCKSZ == 0)
		return lsn + SizeOfXLogShortPHD;
	return lsn;
}

/*
 * Give back the buffer a large record was assembled in (see
 * READER_KEPT_RECORD_BUF) for one of the size XLogReaderAllocate gives it:
 * the xlogreader counts on room for a couple of pages there, and the
 * decoded record does not point into it.  Runs in the reader's context.
 */
static void
walread_trim_record_buffer(XLogReaderState *xlr)
{
	uint32		initial = 5 * Max(BLCKSZ, XLOG_BLCKSZ);

	if (xlr->readRecordBufSize <= READER_KEPT_RECORD_BUF)
		return;
	pfree(xlr->readRecordBuf);
	xlr->readRecordBuf = palloc(initial);
	xlr->readRecordBufSize = initial;
}

/* read the next record into the reader; MORE if one was read */
static PgWsWalStatus
walread_read_one(PgWsWalReader *r)
{
	XLogRecord *record;
	char	   *errormsg = NULL;

	if (r->reposition)
	{
		XLogBeginRead(r->xlr, walread_record_start(r->next_lsn));
		r->reposition = false;
	}
	walread_clear_flags(r);
	record = XLogReadRecord(r->xlr, &errormsg);
	if (record == NULL)
	{
		r->reposition = true;
		if (r->end_of_wal)
			return PGWS_WAL_WAIT;
		return walread_broken(r, r->next_lsn, errormsg);
	}
	r->next_lsn = r->xlr->EndRecPtr;
	walread_record(r, r->xlr);
	/* nothing points into the decoded record any more: free it now */
	(void) XLogReleasePreviousRecord(r->xlr);
	walread_trim_record_buffer(r->xlr);
	return PGWS_WAL_MORE;
}

/*
 * Run one step of reading (positioning, or reading a record) with a net
 * under it: the worker has no error recovery of its own, and what can
 * raise an ERROR here (a damaged timeline history file, running out of
 * memory) is no reason to drop every other subscriber.  Nothing in these
 * steps holds a lock or a buffer; the wait event WALRead may have left set
 * is cleared.
 */
static PgWsWalStatus
walread_step(PgWsWalReader *r, bool position)
{
	volatile PgWsWalStatus status = PGWS_WAL_GONE;
	MemoryContext old = CurrentMemoryContext;

	PG_TRY();
	{
		status = position ? walread_position(r) : walread_read_one(r);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(r->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		pgstat_report_wait_end();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("pg_ws could not read WAL: %s", edata->message),
				 errdetail("Subscribers resuming from WAL are told their history is gone.")));
		FreeErrorData(edata);
		r->gone = true;
		status = PGWS_WAL_GONE;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return status;
}

PgWsWalReader *
pgws_walread_begin(Oid database, uint64 after_seq, uint64 stop_seq)
{
	MemoryContext cxt;
	MemoryContext old;
	PgWsWalReader *r;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_ws WAL reader",
								ALLOCSET_DEFAULT_SIZES);
	r = MemoryContextAllocZero(cxt, sizeof(PgWsWalReader));
	r->cxt = cxt;
	r->database = database;
	r->after_seq = after_seq;
	r->stop_seq = stop_seq;
	dlist_init(&r->messages);

	old = MemoryContextSwitchTo(cxt);
	r->xlr = XLogReaderAllocate(wal_segment_size, NULL, &walread_routine, r);
	MemoryContextSwitchTo(old);
	if (r->xlr == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while allocating a WAL reading processor.")));
	return r;
}

PgWsWalStatus
pgws_walread_next(PgWsWalReader *r, int max_events,
				  pgws_wal_event_sink sink, void *arg)
{
	int			handed = 0;
	int			records = 0;
	MemoryContext old;
	PgWsWalStatus status = PGWS_WAL_MORE;

	if (r->gone)
		return PGWS_WAL_GONE;

	/*
	 * On a primary, which transactions may still be in the ProcArray: one
	 * look per call, so that most records need no look of their own.
	 */
	r->horizon = RecoveryInProgress() ? InvalidTransactionId :
		pgws_oldest_active_xid();

	/* what the xlogreader allocates as it reads is the reader's too */
	old = MemoryContextSwitchTo(r->cxt);
	if (!r->positioned)
		status = walread_step(r, true);
	while (status == PGWS_WAL_MORE)
	{
		int			n = walread_deliver(r, max_events - handed, sink, arg);

		if (n < 0)
		{
			status = walread_broken(r, r->next_lsn, NULL);
			break;
		}
		handed += n;
		if (handed >= max_events)
		{
			status = PGWS_WAL_MORE;
			break;
		}
		if (walread_done(r))
		{
			status = PGWS_WAL_DONE;
			break;
		}
		if (walread_waits_for_visibility(r))
		{
			status = PGWS_WAL_WAIT;
			break;
		}
		if (records++ >= RECORDS_PER_CALL)
		{
			status = PGWS_WAL_MORE;
			break;
		}
		status = walread_step(r, false);
	}
	MemoryContextSwitchTo(old);
	return status;
}

/* the database made since the reader began: its events from now on */
void
pgws_walread_set_database(PgWsWalReader *r, Oid database)
{
	r->database = database;
}

/*
 * Did the reader pass a record of another database since last asked?  A
 * standby's worker then looks pg_ws.database up again: the database may
 * have been made anew on the primary.
 */
bool
pgws_walread_other_database_seen(PgWsWalReader *r)
{
	bool		seen = r->other_database_seen;

	r->other_database_seen = false;
	return seen;
}

/*
 * The heap this reader holds: the payloads of the records it waits to hand
 * over, and its xlogreaders' buffers (a page, the assembly buffer, the
 * decode buffer).  A record being decoded may take its own size more for
 * a moment.
 */
uint64
pgws_walread_memory(PgWsWalReader *r)
{
	uint64		bytes = r->held_bytes + sizeof(PgWsWalReader);
	XLogReaderState *readers[2] = {r->xlr, r->rexlr};

	for (int i = 0; i < 2; i++)
		if (readers[i] != NULL)
			bytes += XLOG_BLCKSZ + readers[i]->readRecordBufSize +
				readers[i]->decode_buffer_size;
	return bytes;
}

void
pgws_walread_end(PgWsWalReader *r)
{
	if (r == NULL)
		return;
	/* closes the segment through our callback */
	XLogReaderFree(r->xlr);
	if (r->rexlr != NULL)
		XLogReaderFree(r->rexlr);
	MemoryContextDelete(r->cxt);
}
