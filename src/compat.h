/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  What differs between the PostgreSQL releases pg_ws builds against:
 *	  15, 16, 17 and 18, and 19 as its headers stood in April 2026
 *	  (19devel, after feature freeze).
 *
 * This file owns every PG_VERSION_NUM test of pg_ws: a call whose
 * signature or meaning changed between releases is made through a macro
 * or inline function here, each with a comment naming the release and the
 * change, so that the .c files read the same on every release.  It must
 * not hold anything that is not a version difference.
 *
 * src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_WS_COMPAT_H
#define PG_WS_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "pg_ws supports PostgreSQL 15, 16, 17 and 18: build it with such a release's pg_config (make PG_CONFIG=...)"
#endif

/*
 * 19 no longer includes these headers indirectly: nodes/execnodes.h
 * (reached through catalog/index.h and funcapi.h) drops hsearch.h and
 * tuplestore.h, pgstat.h drops wait_event.h.  Including them on every
 * release is harmless.
 */
#include "utils/hsearch.h"
#include "utils/tuplestore.h"
#include "utils/wait_event.h"

/* get_database_name(): 19 moved it from commands/dbcommands.h to lsyscache.h */
#if PG_VERSION_NUM >= 190000
#include "utils/lsyscache.h"
#else
#include "commands/dbcommands.h"
#endif

/*
 * This backend's local transaction id: 17 moved PGPROC.lxid into
 * PGPROC.vxid.lxid.
 */
#if PG_VERSION_NUM >= 170000
#define PGWS_MY_LXID	(MyProc->vxid.lxid)
#else
#define PGWS_MY_LXID	(MyProc->lxid)
#endif

/*
 * This process's index in ProcGlobal->allProcs (backends first, so below
 * MaxBackends for a backend): PGPROC.pgprocno up to 16, replaced in 17 by
 * the global MyProcNumber.
 */
#if PG_VERSION_NUM >= 170000
#define PGWS_MY_PROCNO	((int) MyProcNumber)
#else
#define PGWS_MY_PROCNO	(MyProc->pgprocno)
#endif

/*
 * A GUC check hook's *extra is freed by PostgreSQL: with free() up to 15,
 * with guc_free() (a pfree() in GUC's memory context) from 16, which also
 * exports guc_malloc() for it.  malloc()ed extra on 16 and later corrupts
 * memory at the next change of the setting.
 */
#if PG_VERSION_NUM >= 160000
#define pgws_guc_extra_alloc(size)	guc_malloc(LOG, (size))
#else
#define pgws_guc_extra_alloc(size)	malloc(size)
#endif

/*
 * Whether a replication slot was invalidated (its WAL or rows removed, or
 * in 18 idle past idle_replication_slot_timeout): 16 says why in
 * data.invalidated; 15 only clears restart_lsn, and notes where in
 * data.invalidated_at.  18 keeps restart_lsn of a slot invalidated for
 * being idle, so restart_lsn is no test on 16 and later.  Call with the
 * slot's mutex held.
 */
#if PG_VERSION_NUM >= 160000
#define pgws_slot_invalidated(slot) \
	((slot)->data.invalidated != RS_INVAL_NONE)
#else
#define pgws_slot_invalidated(slot) \
	(XLogRecPtrIsInvalid((slot)->data.restart_lsn))
#endif

/* why, for the log: 16 and later know */
#if PG_VERSION_NUM >= 180000
#define pgws_slot_invalidation_cause(slot) \
	(((slot)->data.invalidated == RS_INVAL_WAL_REMOVED) ? "wal_removed" : \
	 ((slot)->data.invalidated == RS_INVAL_IDLE_TIMEOUT) ? "idle_timeout" : \
	 "other")
#elif PG_VERSION_NUM >= 160000
#define pgws_slot_invalidation_cause(slot) \
	(((slot)->data.invalidated == RS_INVAL_WAL_REMOVED) ? "wal_removed" : "other")
#else
#define pgws_slot_invalidation_cause(slot)	"wal_removed"
#endif

/*
 * ReplicationSlotCreate(): 17 adds "failover" and "synced" (slots synced
 * to standbys, not ours: false, false); 19 adds "repack" before them (a
 * slot from the pool kept for REPACK, not ours: false).
 */
#if PG_VERSION_NUM >= 190000
#define pgws_slot_create_physical(name) \
	ReplicationSlotCreate((name), false, RS_PERSISTENT, false, false, false, false)
#elif PG_VERSION_NUM >= 170000
#define pgws_slot_create_physical(name) \
	ReplicationSlotCreate((name), false, RS_PERSISTENT, false, false, false)
#else
#define pgws_slot_create_physical(name) \
	ReplicationSlotCreate((name), false, RS_PERSISTENT, false)
#endif

/*
 * index_beginscan(): 18 adds "instrument", where EXPLAIN ANALYZE counts an
 * index scan's searches (NULL: none is counted).
 */
#if PG_VERSION_NUM >= 180000
#define pgws_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define pgws_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * ReplicationSlotAcquire(): 18 adds "error_if_invalid".  We acquire our
 * slot only after seeing it valid, and move it forward even if it was
 * invalidated in between (the next look drops and recreates it): false.
 */
#if PG_VERSION_NUM >= 180000
#define pgws_slot_acquire(name) ReplicationSlotAcquire((name), true, false)
#else
#define pgws_slot_acquire(name) ReplicationSlotAcquire((name), true)
#endif

/*
 * Whether a process other than this one has the slot acquired: 19 replaces
 * ReplicationSlot.active_pid (0 when none) by active_proc, a ProcNumber
 * (INVALID_PROC_NUMBER when none).  Call with the slot's mutex held.
 */
#if PG_VERSION_NUM >= 190000
#define pgws_slot_active_elsewhere(slot) \
	((slot)->active_proc != INVALID_PROC_NUMBER && \
	 (slot)->active_proc != MyProcNumber)
#else
#define pgws_slot_active_elsewhere(slot) \
	((slot)->active_pid != 0 && (slot)->active_pid != MyProcPid)
#endif

/*
 * XLogFindNextRecord(): 19 adds "errormsg", set to why no record was found.
 * Our callers tell why from their page reader's flags, as they did before
 * 19 when the message was not given out: it is dropped.
 */
#if PG_VERSION_NUM >= 190000
#define pgws_find_next_record(state, from) \
	XLogFindNextRecord((state), (from), &(char *) {NULL})
#else
#define pgws_find_next_record(state, from) \
	XLogFindNextRecord((state), (from))
#endif

/*
 * GetOldestActiveTransactionId(): 19 adds "inCommitOnly" and "allDbs".
 * Before 19 it looked at every transaction of every database: false, true.
 */
#if PG_VERSION_NUM >= 190000
#define pgws_oldest_active_xid()	GetOldestActiveTransactionId(false, true)
#else
#define pgws_oldest_active_xid()	GetOldestActiveTransactionId()
#endif

/*
 * Whether a running-xacts record speaks for the whole cluster: 19 also logs
 * records for one database (dbid valid: logical decoding in that database
 * starts sooner), whose oldestRunningXid says nothing of other databases'
 * transactions; standby_redo() skips them too.  Before 19 every one does.
 */
#if PG_VERSION_NUM >= 190000
#define pgws_running_xacts_cover_cluster(running) \
	(!OidIsValid((running)->dbid))
#else
#define pgws_running_xacts_cover_cluster(running)	true
#endif

/*
 * Signal handlers: 19 adds "const pg_signal_info *pg_siginfo" to
 * SIGNAL_ARGS, so a handler that hands its signal on to another (such as
 * procsignal_sigusr1_handler()) passes both; and pqsignal() takes a
 * pqsigfunc, which SIG_IGN is not: PG_SIG_IGN is (new in 19).
 */
#if PG_VERSION_NUM >= 190000
#define PGWS_SIGNAL_ARGS_PASS	postgres_signal_arg, pg_siginfo
#define PGWS_SIG_IGN	PG_SIG_IGN
#else
#define PGWS_SIGNAL_ARGS_PASS	postgres_signal_arg
#define PGWS_SIG_IGN	SIG_IGN
#endif

/*
 * Building a jsonb value with pushJsonbValue(): 19 builds into a zeroed
 * JsonbInState, leaves the finished value in its "result" and returns
 * nothing; up to 18 it takes a JsonbParseState ** (NULL to start) and
 * returns the value so far, the finished one after the last WJB_END_*.
 * Declare a pgws_jsonb_build = PGWS_JSONB_BUILD_INIT, push into its
 * address, and end with pgws_jsonb_finish(), which gives the value.
 */
#if PG_VERSION_NUM >= 190000
typedef struct JsonbInState pgws_jsonb_build;
#define PGWS_JSONB_BUILD_INIT	{0}
#define pgws_jsonb_push(build, seq, jbval) \
	pushJsonbValue((build), (seq), (jbval))
#define pgws_jsonb_finish(build, seq) \
	(pushJsonbValue((build), (seq), NULL), (build)->result)
#else
typedef struct JsonbParseState *pgws_jsonb_build;
#define PGWS_JSONB_BUILD_INIT	NULL
#define pgws_jsonb_push(build, seq, jbval) \
	((void) pushJsonbValue((build), (seq), (jbval)))
#define pgws_jsonb_finish(build, seq) \
	pushJsonbValue((build), (seq), NULL)
#endif

/*
 * pg_b64_encode()/pg_b64_decode(): 18 takes the binary side as uint8 *
 * (was char *) and marks both pg_nodiscard.
 */
#if PG_VERSION_NUM >= 180000
typedef uint8 pgws_b64_byte;
#else
typedef char pgws_b64_byte;
#endif

#endif							/* PG_WS_COMPAT_H */
