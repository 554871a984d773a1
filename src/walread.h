/*-------------------------------------------------------------------------
 *
 * walread.h
 *	  pg_ws's events in the WAL: the record that holds them (walrecord.c),
 *	  reading them back from pg_wal (walread.c), and the replication slot
 *	  that keeps that WAL around (retention.c).
 *
 * Records are written by committing backends; reading and the slot run in
 * the background worker only.  Neither raises an ERROR for
 * WAL that is missing or unreadable, nor for a slot that cannot be made:
 * they say so in their result, or log a WARNING, and the worker carries on.
 *
 * src/walread.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_WS_WALREAD_H
#define PG_WS_WALREAD_H

#include "postgres.h"
#include "compat.h"

#include "access/xlogdefs.h"
#include "access/xlogreader.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/*
 * pg_ws's custom WAL resource manager (walrecord.c): its id may never
 * change, since WAL written with it must stay readable.
 */
#define PGWS_RMGR_ID	155
#define PGWS_RMGR_NAME	"pg_ws"

/* what a pg_ws record holds */
typedef struct PgWsWalEvents
{
	Oid			database;		/* whose rows the events are */
	uint32		nevents;
	const char *payload;		/* the events as JSON Lines */
	uint32		len;			/* bytes of payload */
} PgWsWalEvents;

extern void pgws_wal_register_rmgr(void);
extern XLogRecPtr pgws_wal_log_events(const char *payload, uint32 len,
									  int nevents);
extern bool pgws_wal_record_events(XLogReaderState *record,
								   PgWsWalEvents *events);

/*
 * A position in the stream of events ("seq"): event i (from 0) of the
 * pg_ws message written at LSN L has seq L + i.  A message's record is
 * longer than its number of events, so seqs never collide.
 */

typedef struct PgWsWalReader PgWsWalReader;

/*
 * One committed event: its seq, its transaction's id and its JSON (not
 * NUL-terminated, no '\n'); the sink returns false to have no more handed
 * over in this call.
 */
typedef bool (*pgws_wal_event_sink) (void *arg, uint64 seq, TransactionId xid,
									 const char *json, uint32 len);

typedef enum PgWsWalStatus
{
	PGWS_WAL_MORE,				/* handed over max_events, or read a batch of
								 * records: call again */
	PGWS_WAL_WAIT,				/* reached the end of readable WAL with nothing
								 * more to hand over now */
	PGWS_WAL_DONE,				/* every event with seq < stop_seq has been
								 * handed over */
	PGWS_WAL_GONE				/* WAL needed for after_seq is no longer in
								 * pg_wal (or never was), or cannot be read */
} PgWsWalStatus;

/*
 * Hand over, in seq order, every committed event of the database with
 * after_seq < seq < stop_seq (stop_seq = PG_UINT64_MAX: follow for ever).
 * The reader lives in a memory context of its own, a child of the caller's
 * CurrentMemoryContext, which pgws_walread_end deletes.  After GONE the
 * reader only ever answers GONE again.
 */
extern PgWsWalReader *pgws_walread_begin(Oid database, uint64 after_seq,
										 uint64 stop_seq);
extern PgWsWalStatus pgws_walread_next(PgWsWalReader *r, int max_events,
									   pgws_wal_event_sink sink, void *arg);
extern void pgws_walread_end(PgWsWalReader *r);
extern uint64 pgws_walread_memory(PgWsWalReader *r);
extern bool pgws_walread_other_database_seen(PgWsWalReader *r);
extern void pgws_walread_set_database(PgWsWalReader *r, Oid database);

/*
 * Append the events of the pg_ws record at lsn to out (the worker's queue
 * reads back what it parked without its payload); false when it cannot be
 * read.
 */
extern bool pgws_walread_record_payload(XLogRecPtr lsn, StringInfo out);

/* the oldest LSN whose WAL is still in pg_wal */
extern XLogRecPtr pgws_walread_oldest(void);

/* the oldest position a reader can resume after (see walread.c) */
extern uint64 pgws_walread_oldest_resumable(void);

/* the summaries of log lines about ignored records (worker housekeeping) */
extern void pgws_walread_log_summaries(TimestampTz now);

/* the end of readable WAL: flushed on a primary, replayed in recovery */
extern XLogRecPtr pgws_walread_end_of_wal(void);

/*
 * pg_ws.history_retention (retention.c): how much WAL the "pg_ws"
 * replication slot keeps, as a time ('1d', '90min') or a size ('2GB');
 * '0' keeps none and drops the slot.  pg_ws.c defines the string GUC with
 * these two hooks, so the setting is parsed where it is used.
 */
extern bool pgws_check_history_retention(char **newval, void **extra,
										 GucSource source);
extern void pgws_assign_history_retention(const char *newval, void *extra);

/*
 * Called by the worker once a second; cheap.  wal_on is pg_ws.wal: when it
 * is off the slot is dropped as if the retention were 0.
 */
extern void pgws_retention_tick(TimestampTz now, bool wal_on);

/* the slot's restart_lsn as last seen, or InvalidXLogRecPtr */
extern XLogRecPtr pgws_retention_floor(void);

#endif							/* PG_WS_WALREAD_H */
