/*-------------------------------------------------------------------------
 *
 * visits.c
 *	  Reading a client's newest visits for client_update's and
 *	  client_create's visit_histories.
 *
 * This file owns how the visits are read, and nothing of how they are
 * written: it hands each visit's datetime and device_id, newest first, to
 * the caller's function (render.c's), and must not know what an event
 * looks like.
 *
 * What is read is always the answer to one query, run as the owner of the
 * client table:
 *
 *	SELECT datetime, device_id FROM <visit table>
 *	 WHERE client_id = $1 ORDER BY datetime DESC, id DESC LIMIT $2
 *
 * Every visit of a client makes a client_update, so this read is on the
 * most frequent write of the system the event document describes, and
 * the query's fixed cost (SPI, the executor's start and end, a plan the
 * planner may make a bitmap scan and a sort of) was most of it.  Where
 * the visit table has a btree index on (client_id, datetime, id) whose
 * order is the query's, and nothing can make the query's answer differ
 * from that index's (row-level security, inheritance, a privilege the
 * owner lacks), we read the index backwards ourselves and stop after the
 * limit; anywhere else we run the query through SPI, which also gives
 * every error the query would.  Both ways see the rows the query would:
 * a new command id and the transaction's snapshot, as SPI takes them.
 *
 * src/visits.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "compat.h"

/*
 * What this backend knows of the visit table it read last: the prepared
 * query, and the index that can stand in for it (InvalidOid: none) with
 * the columns the scan reads.  stale when the table's relcache entry was
 * invalidated (altered, renamed, dropped, an index made or dropped, a
 * privilege or a policy changed): both are then found again.
 */
typedef struct VisitTableCache
{
	Oid			relid;
	bool		stale;
	SPIPlanPtr	plan;			/* NULL until the query first runs */
	bool		index_looked_up;
	Oid			index_relid;	/* InvalidOid: no index can stand in */
	Oid			client_id_type; /* the scan key's type, the index's own */
	AttrNumber	datetime_attno;
	AttrNumber	device_id_attno;
} VisitTableCache;

static VisitTableCache visit_table = {InvalidOid, false, NULL, false, InvalidOid};
static bool visit_table_callback_registered = false;

static void
forget_visit_table(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == visit_table.relid)
		visit_table.stale = true;
}

/*
 * Whether column i (0-based) of index sorts the way ORDER BY sorts heap
 * column attno: ascending, nulls last, by the default btree operator
 * family of the column's type, in the column's collation.  A backward
 * scan then gives ORDER BY ... DESC's order, nulls first.
 */
static bool
index_column_sorts_as_order_by(Relation index, int i, Relation heap,
							   AttrNumber attno)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(heap), attno - 1);
	Oid			opclass;

	if (index->rd_index->indkey.values[i] != attno)
		return false;
	if (index->rd_indoption[i] != 0)
		return false;
	opclass = GetDefaultOpClass(att->atttypid, BTREE_AM_OID);
	if (!OidIsValid(opclass) ||
		get_opclass_family(opclass) != index->rd_opfamily[i] ||
		get_opclass_input_type(opclass) != index->rd_opcintype[i])
		return false;
	return index->rd_indcollation[i] == att->attcollation;
}

/*
 * An index of the visit table that hands out a client's visits in the
 * query's order, or InvalidOid.  client_id_type is the type the query's
 * parameter has (the client table's id): the index's first column must
 * have it too, so that its equality is the query's "=" (InvalidOid: any
 * type, for pgws_visit_index_fits()).
 */
static Oid
find_visit_index(Relation heap, Oid client_id_type,
				 AttrNumber *datetime_attno, AttrNumber *device_id_attno)
{
	AttrNumber	client_id_attno = get_attnum(RelationGetRelid(heap), "client_id");
	AttrNumber	id_attno = get_attnum(RelationGetRelid(heap), "id");
	List	   *indexes;
	ListCell   *lc;
	Oid			found = InvalidOid;

	*datetime_attno = get_attnum(RelationGetRelid(heap), "datetime");
	*device_id_attno = get_attnum(RelationGetRelid(heap), "device_id");
	if (client_id_attno <= 0 || id_attno <= 0 ||
		*datetime_attno <= 0 || *device_id_attno <= 0)
		return InvalidOid;
	if (OidIsValid(client_id_type) &&
		TupleDescAttr(RelationGetDescr(heap), client_id_attno - 1)->atttypid !=
		client_id_type)
		return InvalidOid;

	indexes = RelationGetIndexList(heap);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;
		bool		fits;

		fits = index->rd_rel->relam == BTREE_AM_OID &&
			form->indisvalid && form->indisready && form->indislive &&
			form->indnkeyatts >= 3 &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			index_column_sorts_as_order_by(index, 0, heap, client_id_attno) &&
			index_column_sorts_as_order_by(index, 1, heap, *datetime_attno) &&
			index_column_sorts_as_order_by(index, 2, heap, id_attno);
		index_close(index, AccessShareLock);
		if (fits)
		{
			found = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	return found;
}

/*
 * Whether the visit table has an index the lookup can read instead of
 * running the query, for pg_ws_watch() to say so when it has none.
 */
bool
pgws_visit_index_fits(Relation visit)
{
	AttrNumber	datetime_attno;
	AttrNumber	device_id_attno;

	return OidIsValid(find_visit_index(visit, InvalidOid, &datetime_attno,
									   &device_id_attno));
}

/*
 * Whether reading the index gives what the query would give the client
 * table's owner now.  Checked on every read, as the query's own checks
 * would be: a privilege can come from a role the owner is a member of,
 * which invalidates nothing we could cache against.
 */
static bool
index_read_matches_query(Relation heap, Oid owner)
{
	return heap->rd_rel->relkind == RELKIND_RELATION &&
		!heap->rd_rel->relhassubclass &&
		pg_class_aclcheck(RelationGetRelid(heap), owner, ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(RelationGetRelid(heap), owner, true) == RLS_NONE;
}

/*
 * The index read: client_id = the client's id, backwards from its newest
 * (datetime, id), at most limit rows.
 */
static void
read_visit_index(Relation heap, Datum client_id, int64 limit,
				 PgWsVisitFn fn, void *arg)
{
	Relation	index = index_open(visit_table.index_relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(heap);
	Oid			datetime_type = TupleDescAttr(desc, visit_table.datetime_attno - 1)->atttypid;
	Oid			device_id_type = TupleDescAttr(desc, visit_table.device_id_attno - 1)->atttypid;
	Oid			eq_opr;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		nrows = 0;

	eq_opr = get_opfamily_member(index->rd_opfamily[0],
								 index->rd_opcintype[0], index->rd_opcintype[0],
								 BTEqualStrategyNumber);
	if (!OidIsValid(eq_opr))
		elog(ERROR, "pg_ws: no equality operator in the operator family of index \"%s\"",
			 RelationGetRelationName(index));
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber,
						   index->rd_opcintype[0], index->rd_indcollation[0],
						   get_opcode(eq_opr), client_id);

	/*
	 * What SPI does before a query that is not read-only: the rows of the
	 * statement so far are visible, under the transaction's snapshot (a
	 * new one per statement in READ COMMITTED, its first in REPEATABLE
	 * READ, whose command id is brought up to now).
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	CommandCounterIncrement();
	UpdateActiveSnapshotCommandId();

	slot = table_slot_create(heap, NULL);
	scan = pgws_index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (nrows < limit &&
		   index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		Datum		datetime;
		Datum		device_id;
		bool		datetime_null;
		bool		device_id_null;

		datetime = slot_getattr(slot, visit_table.datetime_attno, &datetime_null);
		device_id = slot_getattr(slot, visit_table.device_id_attno, &device_id_null);
		fn(arg, datetime, datetime_null, datetime_type,
		   device_id, device_id_null, device_id_type);
		nrows++;
		CHECK_FOR_INTERRUPTS();
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	PopActiveSnapshot();
	/* like the executor, keep the lock until the transaction ends */
	index_close(index, NoLock);
}

/* the query's rows, handed to fn as they come */
typedef struct VisitReceiver
{
	DestReceiver pub;
	PgWsVisitFn fn;
	void	   *arg;
} VisitReceiver;

static bool
visit_receive(TupleTableSlot *slot, DestReceiver *self)
{
	VisitReceiver *r = (VisitReceiver *) self;
	TupleDesc	desc = slot->tts_tupleDescriptor;
	Datum		datetime;
	Datum		device_id;
	bool		datetime_null;
	bool		device_id_null;

	/* the select list's order: datetime, device_id */
	datetime = slot_getattr(slot, 1, &datetime_null);
	device_id = slot_getattr(slot, 2, &device_id_null);
	r->fn(r->arg, datetime, datetime_null, TupleDescAttr(desc, 0)->atttypid,
		  device_id, device_id_null, TupleDescAttr(desc, 1)->atttypid);
	return true;
}

static void
visit_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
visit_shutdown(DestReceiver *self)
{
}

static void
visit_destroy(DestReceiver *self)
{
}

/*
 * The query, through SPI, prepared once per backend for the visit table
 * read last, with a schema-qualified table and operator (ORDER BY takes
 * the types' default btree operators, found without a name lookup), so
 * that search_path cannot redirect it.
 */
static void
run_visit_query(Oid visit_relid, Datum client_id, Oid client_id_type,
				int64 limit, PgWsVisitFn fn, void *arg)
{
	Oid			argtypes[2] = {client_id_type, INT8OID};
	ParamListInfo params;
	SPIExecuteOptions options;
	VisitReceiver r;
	int			rc;

	/* in the caller's context, not SPI's, which SPI_finish frees */
	params = makeParamList(2);
	params->params[0].value = client_id;
	params->params[0].isnull = false;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = argtypes[0];
	params->params[1].value = Int64GetDatum(limit);
	params->params[1].isnull = false;
	params->params[1].pflags = PARAM_FLAG_CONST;
	params->params[1].ptype = argtypes[1];

	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = visit_receive;
	r.pub.rStartup = visit_startup;
	r.pub.rShutdown = visit_shutdown;
	r.pub.rDestroy = visit_destroy;
	/* none of the built-in kinds; SPI reports SPI_OK_UTILITY for it */
	r.pub.mydest = DestNone;
	r.fn = fn;
	r.arg = arg;

	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = false;
	options.tcount = 0;
	options.dest = &r.pub;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (visit_table.plan == NULL)
	{
		char	   *query;
		SPIPlanPtr	plan;
		char	   *relname = get_rel_name(visit_relid);

		if (relname == NULL)
			elog(ERROR, "pg_ws: visit table %u does not exist", visit_relid);

		/* visit_receive() relies on the order of the select list */
		query = psprintf("SELECT datetime, device_id FROM %s "
						 "WHERE client_id OPERATOR(pg_catalog.=) $1 "
						 "ORDER BY datetime DESC, id DESC LIMIT $2",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(visit_relid)),
													relname));
		plan = SPI_prepare(query, 2, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare(\"%s\") failed: %s",
				 query, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		visit_table.plan = plan;
	}

	rc = SPI_execute_plan_extended(visit_table.plan, &options);
	if (rc < 0)
		elog(ERROR, "visit_histories query failed: %s",
			 SPI_result_code_string(rc));

	SPI_finish();
	pfree(params);
}

/*
 * Hands fn the newest limit visits of the client whose id is client_id (of
 * type client_id_type), newest first, as the query above run by owner
 * would.
 */
void
pgws_read_visits(Oid visit_relid, Oid owner, Datum client_id,
				 Oid client_id_type, int64 limit, PgWsVisitFn fn, void *arg)
{
	Relation	heap;
	Oid			save_userid;
	int			save_sec_context;

	/*
	 * On first use rather than in _PG_init, as ri_triggers.c does: the
	 * trigger also runs where pg_ws is not preloaded.
	 */
	if (!visit_table_callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_visit_table, (Datum) 0);
		visit_table_callback_registered = true;
	}

	/*
	 * As the owner: the query's privilege checks and anything a type's
	 * comparison or output function runs are the owner's, so a role
	 * allowed to write clients need not be allowed to read visits.  On
	 * error, transaction abort restores the user.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	/* locking it takes in the invalidations that may make the cache stale */
	heap = try_table_open(visit_relid, AccessShareLock);
	if (heap == NULL)
		elog(ERROR, "pg_ws: visit table %u does not exist", visit_relid);
	if (visit_table.relid != visit_relid || visit_table.stale ||
		(visit_table.index_looked_up &&
		 visit_table.client_id_type != client_id_type))
	{
		if (visit_table.plan != NULL)
			SPI_freeplan(visit_table.plan);
		visit_table.plan = NULL;
		visit_table.relid = visit_relid;
		visit_table.stale = false;
		visit_table.index_looked_up = false;
	}
	if (!visit_table.index_looked_up)
	{
		visit_table.index_relid =
			find_visit_index(heap, client_id_type,
							 &visit_table.datetime_attno,
							 &visit_table.device_id_attno);
		visit_table.client_id_type = client_id_type;
		visit_table.index_looked_up = true;
	}
	if (OidIsValid(visit_table.index_relid) &&
		index_read_matches_query(heap, owner))
		read_visit_index(heap, client_id, limit, fn, arg);
	else
		run_visit_query(visit_relid, client_id, client_id_type, limit, fn, arg);
	table_close(heap, NoLock);

	SetUserIdAndSecContext(save_userid, save_sec_context);
}
