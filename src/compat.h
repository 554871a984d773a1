/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  What differs between the PostgreSQL releases pg_ws builds against:
 *	  15, 16, 17 and 18 (and 19's headers as far as they were checked).
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
 * 19 no longer includes these headers indirectly (through lsyscache.h,
 * pgstat.h and funcapi.h); including them on every release is harmless.
 */
#include "commands/dbcommands.h"	/* get_database_name() */
#include "utils/hsearch.h"
#include "utils/wait_event.h"

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
 * to standbys, not ours: false, false).
 */
#if PG_VERSION_NUM >= 170000
#define pgws_slot_create_physical(name) \
	ReplicationSlotCreate((name), false, RS_PERSISTENT, false, false, false)
#else
#define pgws_slot_create_physical(name) \
	ReplicationSlotCreate((name), false, RS_PERSISTENT, false)
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
 * pg_b64_encode()/pg_b64_decode(): 18 takes the binary side as uint8 *
 * (was char *) and marks both pg_nodiscard.
 */
#if PG_VERSION_NUM >= 180000
typedef uint8 pgws_b64_byte;
#else
typedef char pgws_b64_byte;
#endif

#endif							/* PG_WS_COMPAT_H */
