/*-------------------------------------------------------------------------
 *
 * walrecord.c
 *	  pg_ws's own WAL record: each committing transaction's events, written
 *	  with a custom resource manager of pg_ws's so that nothing but pg_ws
 *	  can write a record its WAL reader accepts.
 *
 * This file owns the resource manager (its id, its name, what replay and
 * pg_waldump make of a record), the record's layout, writing it and
 * taking one apart.  It must not decide when a record is written (that is
 * pre-commit's, queue.c) nor what happens to the events read back
 * (walread.c).
 *
 * Why a resource manager of our own.  Up to 1.2 the events went to the WAL
 * as a transactional logical message with prefix "pg_ws", the record
 * pg_logical_emit_message() writes.  That function is executable by
 * PUBLIC in PostgreSQL 15, and whoever an administrator grants it to in
 * later releases can write any message under any prefix: the reader could
 * not tell pg_ws's events from a forgery.  A record of a custom resource
 * manager can only be written by code loaded into the server, that is by
 * pg_ws itself, whatever SQL grants: the reader takes events from these
 * records only, and ignores (and counts) logical messages with pg_ws's old
 * prefix.
 *
 * The price: replaying a pg_ws record needs the resource manager, so a
 * server (or a standby) that has pg_ws records to replay must have pg_ws in
 * shared_preload_libraries; without it recovery stops with PostgreSQL's
 * own error, "resource manager with ID 155 not registered", and its hint to
 * load the module.  Replay changes no page: it only tells snapshot
 * positions which transaction wrote the record (position.c).
 *
 * The id.  Custom resource managers take an id from 128 to 255, which
 * extensions are asked to register on the PostgreSQL wiki
 * (CustomWALResourceManagers); two preloaded modules that claim the same
 * id make the server refuse to start, naming both.  pg_ws uses
 * PGWS_RMGR_ID, and it may never change: the WAL written with it must stay
 * readable.
 *
 * The record: a small fixed header (the database whose rows the events
 * are, and how many there are), then the events as JSON Lines, exactly the
 * bytes of the transaction's queue entry.  Its info byte says the format,
 * so that a later release can write another and still read this one.
 *
 * src/walrecord.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "walread.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xloginsert.h"
#include "access/xlogreader.h"
#include "miscadmin.h"

/*
 * The events of one transaction.  Format 1 (1.2.1 to 1.2.2): JSON Lines.
 * Format 2 (1.3): a line may go on, after a tab, with the row an event
 * carries for ?filter= (a delete's deleted row; from 1.3.1 any event of a
 * table with filter columns), which is never sent: a release that reads
 * only format 1 stops at it rather than send that row to subscribers.
 */
#define XLOG_PGWS_EVENTS_V1		0x10
#define XLOG_PGWS_EVENTS_V2		0x20
#define PGWS_RECORD_INFO_KNOWN(info) \
	((info) == XLOG_PGWS_EVENTS_V1 || (info) == XLOG_PGWS_EVENTS_V2)

typedef struct xl_pgws_events
{
	Oid			database;		/* the database whose rows these are */
	uint32		nevents;		/* lines of the payload */
	/* the events as JSON Lines follow */
} xl_pgws_events;

#define SizeOfPgWsEvents	(offsetof(xl_pgws_events, nevents) + sizeof(uint32))

/*
 * Replay: the record changes no page, it only carries the events; what
 * replay notes is which transaction wrote it where, for snapshot
 * positions taken on a standby (position.c).
 */
static void
pgws_rmgr_redo(XLogReaderState *record)
{
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;

	if (!PGWS_RECORD_INFO_KNOWN(info))
		elog(PANIC, "pg_ws_redo: unknown op code %u", info);
	pgws_position_note(XLogRecGetXid(record), record->ReadRecPtr);
}

/* replay begins: positions learn from which transaction on it saw all */
static void
pgws_rmgr_startup(void)
{
	pgws_position_recovery_started();
}

/* pg_waldump and errors during replay: what the record holds */
static void
pgws_rmgr_desc(StringInfo buf, XLogReaderState *record)
{
	PgWsWalEvents events;

	if (pgws_wal_record_events(record, &events))
		appendStringInfo(buf, "%u events of database %u, %u bytes",
						 events.nevents, events.database, events.len);
}

static const char *
pgws_rmgr_identify(uint8 info)
{
	if ((info & ~XLR_INFO_MASK) == XLOG_PGWS_EVENTS_V1)
		return "EVENTS";
	if ((info & ~XLR_INFO_MASK) == XLOG_PGWS_EVENTS_V2)
		return "EVENTS_V2";
	return NULL;
}

static RmgrData pgws_rmgr = {
	.rm_name = PGWS_RMGR_NAME,
	.rm_redo = pgws_rmgr_redo,
	.rm_desc = pgws_rmgr_desc,
	.rm_identify = pgws_rmgr_identify,
	.rm_startup = pgws_rmgr_startup,
	.rm_cleanup = NULL,
	.rm_mask = NULL,
	.rm_decode = NULL			/* logical decoding skips the record */
};

/* from _PG_init, while shared_preload_libraries is being processed */
void
pgws_wal_register_rmgr(void)
{
	RegisterCustomRmgr(PGWS_RMGR_ID, &pgws_rmgr);
}

/*
 * Write this transaction's events, payload (len bytes, nevents JSON Lines),
 * as one pg_ws record; returns where it starts, which is the position of
 * its first event.  The caller has given the transaction an xid, so that
 * the record carries it and readers pair it with the commit or abort.
 */
XLogRecPtr
pgws_wal_log_events(const char *payload, uint32 len, int nevents)
{
	xl_pgws_events xlrec;

	Assert(TransactionIdIsValid(GetTopTransactionIdIfAny()));
	xlrec.database = MyDatabaseId;
	xlrec.nevents = (uint32) nevents;

	XLogBeginInsert();
	XLogRegisterData((char *) &xlrec, SizeOfPgWsEvents);
	XLogRegisterData(unconstify(char *, payload), len);
	(void) XLogInsert(PGWS_RMGR_ID, XLOG_PGWS_EVENTS_V2);
	return ProcLastRecPtr;
}

/*
 * Is this record pg_ws's events?  If so, say what they are: the database,
 * the number of events and the payload, which points into the reader's
 * decoded record and lives as long as it does.  A record of our resource
 * manager that does not parse (a format this release does not know, or
 * damage the CRC missed) is not: the caller counts it as malformed.
 */
bool
pgws_wal_record_events(XLogReaderState *record, PgWsWalEvents *events)
{
	xl_pgws_events *xlrec;
	uint32		data_len;

	if (XLogRecGetRmid(record) != PGWS_RMGR_ID ||
		!PGWS_RECORD_INFO_KNOWN(XLogRecGetInfo(record) & ~XLR_INFO_MASK))
		return false;
	data_len = XLogRecGetDataLen(record);
	if (data_len < SizeOfPgWsEvents)
		return false;
	xlrec = (xl_pgws_events *) XLogRecGetData(record);
	events->database = xlrec->database;
	events->nevents = xlrec->nevents;
	events->payload = XLogRecGetData(record) + SizeOfPgWsEvents;
	events->len = data_len - SizeOfPgWsEvents;
	/* one newline per event: anything else is not what pre-commit wrote */
	if (events->nevents == 0 || events->len < events->nevents ||
		events->payload[events->len - 1] != '\n')
		return false;
	return true;
}
