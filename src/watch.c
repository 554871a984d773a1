/*-------------------------------------------------------------------------
 *
 * watch.c
 *	  Which tables pg_ws broadcasts: its own four, and the tables
 *	  pg_ws_watch() attaches it to (a Django app's tables, or any table
 *	  with kind 'row'), kept in the catalog table pg_ws_watched; the SQL
 *	  functions pg_ws_watch() and pg_ws_unwatch(); and the lookup
 *	  render.c's trigger makes before it renders a row.
 *
 * This file owns what a table of each kind must have to be watched (its
 * columns and their types), the trigger pg_ws attaches and the catalog
 * rows.  It must not render anything: render.c decides what an event
 * looks like; this file only guarantees it the columns it reads (the
 * regression test "watch" renders every event from tables that have
 * exactly these columns, so a column render.c reads but this file does not
 * check fails there).
 *
 * Why a catalog table and a check in the trigger: subscribers trust every
 * event, so a trigger that calls pg_ws_row_event() on a table pg_ws was
 * not told about would forge events.  The trigger refuses to run unless
 * its table is one of the extension's own or has a row in pg_ws_watched of
 * the trigger's kind.  pg_ws_watched is an extension configuration table,
 * so pg_dump dumps its rows, and the triggers on watched tables (which are
 * not extension members) are dumped with their tables: after a restore a
 * watched table is still watched.
 *
 * A 'row' table's event names are fixed when it is watched: pg_ws_watch()
 * always stores the prefix (the table's name at that moment unless one is
 * given), and the trigger never looks at the table's current name, so that
 * whoever owns the table cannot rename it into another table's events or
 * into JSON.  The prefix is checked against the rules for event names
 * when it is stored, by pg_ws_watched's CHECK, and again here whenever a
 * watch is loaded; render.c writes it escaped all the same.
 *
 * pg_ws's own four tables are broadcast as the kind their name says (and
 * an event trigger of pg_ws--1.2.1.sql keeps them from being renamed or
 * moved); a client table's visit table is the visit_history table of its
 * schema only when that is pg_ws's own or a watched one.  pg_ws_watch() on
 * one of them sets only whether its replicated rows are broadcast
 * (pg_ws_own_tables).
 *
 * A partition's rows fire the trigger its watched ancestor's watch cloned
 * onto it, and are sent as that table's: with its event names, its
 * primary key on delete and its columns, mapped to the partition's by
 * name (load_row_watch).
 *
 * A watched table may name filter columns (pg_ws_watched.filter_columns,
 * 1.3.1): columns that travel with every event of the table, after a tab
 * (render.c), for ?filter= and a token's filters only, never sent.  pg_ws's
 * own tables take none: a column added to an extension's table is not
 * dumped by pg_dump, so the filters would break after a restore.
 *
 * While a table is broadcast, the columns its events are rendered from
 * (and its filter columns) stay: pg_ws_check_columns(), which pg_ws's
 * event triggers call after every ALTER TABLE and every command that drops
 * a column or a constraint (pg_ws--1.2.2.sql), refuses the command that
 * would make the table's writes fail.  It checks what this file checks
 * when a table is watched.
 *
 * Each backend remembers what it looked up per relation and forgets it
 * when the relation's relcache entry is invalidated.  pg_ws_watch() and
 * pg_ws_unwatch() invalidate every relcache entry at commit, since a
 * client table's visit table may be another table's watch.
 *
 * src/watch.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/catalog.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/deparse_utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

const char *const pgws_table_kind_names[PGWS_NUM_TABLE_KINDS] = {
	[PGWS_TABLE_CLIENT] = "client",
	[PGWS_TABLE_VISIT_HISTORY] = "visit_history",
	[PGWS_TABLE_EMPLOYEE] = "employee",
	[PGWS_TABLE_ATTENDANCE] = "attendance",
	[PGWS_TABLE_ROW] = "row",
};

/* what a column's type may be, for render.c to write it as documented */
typedef enum ColumnType
{
	TYPE_INTEGER,				/* smallint, integer, bigint */
	TYPE_NUMBER,				/* an integer, real, double precision, numeric */
	TYPE_TIMESTAMP,				/* timestamp with or without time zone */
	TYPE_STRING,				/* text, varchar, char */
	TYPE_ANY					/* written as a JSON string whatever it is */
} ColumnType;

static const char *const column_type_names[] = {
	[TYPE_INTEGER] = "an integer type (smallint, integer or bigint)",
	[TYPE_NUMBER] = "a number type (an integer type, real, double precision or numeric)",
	[TYPE_TIMESTAMP] = "timestamp with time zone or timestamp",
	[TYPE_STRING] = "a string type (text, varchar or char)",
	[TYPE_ANY] = "any type",
};

typedef struct RequiredColumn
{
	PgWsTableKind kind;
	const char *name;
	ColumnType	type;
} RequiredColumn;

/*
 * The columns render.c reads for each kind, with Django's names (a
 * ForeignKey "client" is the column client_id), and the types it writes as
 * the event document shows them.
 */
static const RequiredColumn required_columns[] = {
	{PGWS_TABLE_CLIENT, "id", TYPE_INTEGER},
	{PGWS_TABLE_CLIENT, "first_seen", TYPE_TIMESTAMP},
	{PGWS_TABLE_CLIENT, "last_seen", TYPE_TIMESTAMP},
	{PGWS_TABLE_CLIENT, "visit_count", TYPE_INTEGER},
	{PGWS_TABLE_CLIENT, "gender", TYPE_STRING},
	{PGWS_TABLE_CLIENT, "age", TYPE_INTEGER},
	{PGWS_TABLE_CLIENT, "image", TYPE_STRING},
	{PGWS_TABLE_VISIT_HISTORY, "id", TYPE_INTEGER},
	{PGWS_TABLE_VISIT_HISTORY, "client_id", TYPE_INTEGER},
	{PGWS_TABLE_VISIT_HISTORY, "datetime", TYPE_TIMESTAMP},
	{PGWS_TABLE_VISIT_HISTORY, "device_id", TYPE_ANY},
	{PGWS_TABLE_EMPLOYEE, "id", TYPE_INTEGER},
	{PGWS_TABLE_EMPLOYEE, "first_name", TYPE_STRING},
	{PGWS_TABLE_EMPLOYEE, "last_name", TYPE_STRING},
	{PGWS_TABLE_EMPLOYEE, "email", TYPE_STRING},
	{PGWS_TABLE_EMPLOYEE, "phone_number", TYPE_STRING},
	{PGWS_TABLE_EMPLOYEE, "image", TYPE_STRING},
	{PGWS_TABLE_EMPLOYEE, "working_graphic_id", TYPE_INTEGER},
	{PGWS_TABLE_ATTENDANCE, "employee_id", TYPE_INTEGER},
	{PGWS_TABLE_ATTENDANCE, "device_id", TYPE_ANY},
	{PGWS_TABLE_ATTENDANCE, "image", TYPE_STRING},
	{PGWS_TABLE_ATTENDANCE, "datetime", TYPE_TIMESTAMP},
	{PGWS_TABLE_ATTENDANCE, "score", TYPE_NUMBER},
};

/*
 * The keys of each kind's events (render.c) and of the row beside a
 * delete.  A filter column of one of these names would add nothing a
 * filter does not see already (filter.c looks a field up in the row the
 * event carries, then in its data), so pg_ws_watch() refuses it.
 */
typedef struct EventField
{
	PgWsTableKind kind;
	const char *key;
} EventField;

static const EventField event_fields[] = {
	{PGWS_TABLE_CLIENT, "id"},
	{PGWS_TABLE_CLIENT, "first_seen"},
	{PGWS_TABLE_CLIENT, "last_seen"},
	{PGWS_TABLE_CLIENT, "visit_count"},
	{PGWS_TABLE_CLIENT, "gender"},
	{PGWS_TABLE_CLIENT, "age"},
	{PGWS_TABLE_CLIENT, "image"},
	{PGWS_TABLE_CLIENT, "visit_histories"},
	{PGWS_TABLE_VISIT_HISTORY, "datetime"},
	{PGWS_TABLE_VISIT_HISTORY, "device_id"},
	{PGWS_TABLE_VISIT_HISTORY, "client"},
	{PGWS_TABLE_EMPLOYEE, "id"},
	{PGWS_TABLE_EMPLOYEE, "first_name"},
	{PGWS_TABLE_EMPLOYEE, "last_name"},
	{PGWS_TABLE_EMPLOYEE, "email"},
	{PGWS_TABLE_EMPLOYEE, "phone_number"},
	{PGWS_TABLE_EMPLOYEE, "image"},
	{PGWS_TABLE_EMPLOYEE, "working_graphic"},
	{PGWS_TABLE_ATTENDANCE, "employee_id"},
	{PGWS_TABLE_ATTENDANCE, "device_id"},
	{PGWS_TABLE_ATTENDANCE, "image"},
	{PGWS_TABLE_ATTENDANCE, "datetime"},
	{PGWS_TABLE_ATTENDANCE, "score"},
};

/* the suffixes of a 'row' table's events */
static const char *const row_event_suffixes[] = {"_create", "_update", "_delete"};

/* what each backend knows about a relation's watch; see the file header */
static HTAB *watched_tables = NULL;

int
pgws_table_kind_from_name(const char *name)
{
	int			kind;

	for (kind = 0; kind < PGWS_NUM_TABLE_KINDS; kind++)
		if (strcmp(name, pgws_table_kind_names[kind]) == 0)
			return kind;
	return -1;
}

static void
forget_watched_table(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	PgWsWatchedTable *entry;

	if (watched_tables == NULL)
		return;
	hash_seq_init(&status, watched_tables);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->relid == relid ||
			entry->visit_relid == relid)
			entry->valid = false;
}

static Oid
pg_ws_extension_oid(void);

/*
 * The schema pg_ws is installed in.  PostgreSQL 15 keeps its own
 * get_extension_schema() static, so we read pg_extension as it does.
 */
static Oid
pg_ws_extension_schema(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			schema = InvalidOid;
	Oid			extension = pg_ws_extension_oid();

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extension));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		schema = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(schema))
		elog(ERROR, "pg_ws: extension's schema not found");
	return schema;
}

static Oid
pg_ws_extension_oid(void)
{
	Oid			extension = get_extension_oid("pg_ws", true);

	if (!OidIsValid(extension))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_ws\" is not installed in this database")));
	return extension;
}

/* the qualified name of pg_ws's catalog table, for queries */
static char *
watched_catalog_name(void)
{
	Oid			schema = pg_ws_extension_schema();

	return psprintf("%s.pg_ws_watched",
					quote_identifier(get_namespace_name(schema)));
}

/*
 * pg_ws_watched's filter_columns in a query's select list: NULL while the
 * catalog is 1.3.0's, which has no such column (the library may be newer
 * than the catalog until ALTER EXTENSION pg_ws UPDATE).
 */
static const char *
filter_columns_expr(void)
{
	Oid			catalog = get_relname_relid("pg_ws_watched", pg_ws_extension_schema());

	return get_attnum(catalog, "filter_columns") != InvalidAttrNumber ?
		"filter_columns" : "NULL::pg_catalog.name[]";
}

/* is relid one of the tables CREATE EXTENSION pg_ws made? */
static bool
is_extension_table(Oid relid)
{
	Oid			extension = get_extension_oid("pg_ws", true);

	return OidIsValid(extension) &&
		getExtensionOfObject(RelationRelationId, relid) == extension;
}

/*
 * Run a read-only query of pg_ws_watched as the catalog's owner: the
 * trigger reads it on behalf of whichever role writes a watched table, and
 * pg_ws_send() on behalf of the application's role, neither of which may
 * read the catalog itself.  search_path cannot redirect the queries: they
 * qualify every name.  An error restores the user (transaction or
 * subtransaction abort does).
 */
static void
read_catalog(const char *query, int nargs, Oid *argtypes, Datum *args,
			 long tcount)
{
	Oid			catalog = get_relname_relid("pg_ws_watched", pg_ws_extension_schema());
	HeapTuple	tuple;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int			rc;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(catalog));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "pg_ws: pg_ws_watched not found");
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	rc = SPI_execute_with_args(query, nargs, argtypes, args, NULL, true, tcount);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_ws: query of pg_ws_watched failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * The watched visit table of a namespace: the one row of kind
 * visit_history among the watched tables there, InvalidOid when there is
 * none; *count says how many there are.
 */
static Oid
namespace_visit_table(Oid nsp, int *count)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	char	   *query;
	Oid			result = InvalidOid;

	args[0] = ObjectIdGetDatum(nsp);
	query = psprintf("SELECT w.relation::pg_catalog.oid FROM %s w "
					 "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) w.relation::pg_catalog.oid "
					 "WHERE w.kind OPERATOR(pg_catalog.=) 'visit_history' "
					 "AND c.relnamespace OPERATOR(pg_catalog.=) $1",
					 watched_catalog_name());
	read_catalog(query, 1, argtypes, args, 0);
	*count = (int) SPI_processed;
	if (SPI_processed == 1)
	{
		bool		isnull;

		result = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1,
												&isnull));
	}
	return result;
}

/* attnum of a column by name, 0 when there is none */
static AttrNumber
column_number(TupleDesc desc, const char *name)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return 0;
}

/* the primary key's columns of a relation, in key order; 0 without one */
static int
primary_key_columns(Relation rel, AttrNumber **keys)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	int			nkeys = 0;

	*keys = NULL;
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index index;
		int			i;

		if (!HeapTupleIsValid(tuple))
			continue;
		index = (Form_pg_index) GETSTRUCT(tuple);
		if (index->indisprimary)
		{
			nkeys = index->indnkeyatts;
			*keys = palloc(nkeys * sizeof(AttrNumber));
			for (i = 0; i < nkeys; i++)
				(*keys)[i] = index->indkey.values[i];
		}
		ReleaseSysCache(tuple);
		if (nkeys > 0)
			break;
	}
	list_free(indexes);
	return nkeys;
}

/*
 * The watch of one of pg_ws's own tables: the kind its name says (a table
 * renamed to something else is no kind, so its trigger refuses to run).
 * A client table's visit table is its schema's visit_history when that is
 * pg_ws's own too; otherwise the caller looks for the schema's watched one.
 */
static void
load_own_watch(Relation rel, PgWsWatchedTable *entry)
{
	int			kind = pgws_table_kind_from_name(RelationGetRelationName(rel));
	Oid			visit;

	entry->own = true;
	if (kind < 0 || kind == PGWS_TABLE_ROW)
		return;
	entry->watched = true;
	entry->kind = (PgWsTableKind) kind;
	if (kind != PGWS_TABLE_CLIENT)
		return;

	/*
	 * Not a table someone made under that name after a superuser renamed
	 * pg_ws's away.
	 */
	visit = get_relname_relid("visit_history", RelationGetNamespace(rel));
	if (OidIsValid(visit) && is_extension_table(visit))
		entry->visit_relid = visit;
}

/*
 * Error unless <prefix>_create, _update and _delete are valid names for
 * application events (eventname.c): pg_ws_watch() refuses such a prefix,
 * and a stored one that is not (stored) makes the trigger refuse to render.
 */
static void
check_row_event_names(Relation rel, const char *prefix, bool stored)
{
	int			i;

	for (i = 0; i < lengthof(row_event_suffixes); i++)
	{
		char	   *name = psprintf("%s%s", prefix, row_event_suffixes[i]);
		const char *problem = pgws_event_name_problem(name);

		if (problem == NULL)
			continue;
		if (stored)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_ws cannot send the events of table \"%s\": its event name \"%s\" is not allowed",
							RelationGetRelationName(rel), name),
					 errdetail("%s", problem),
					 errhint("Watch the table again with a valid name: SELECT pg_ws_watch('%s', 'row', event_prefix => '...').",
							 RelationGetRelationName(rel))));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" cannot be watched as kind \"row\": its event name \"%s\" is not allowed",
						RelationGetRelationName(rel), name),
				 errdetail("%s", problem),
				 errhint("Pass another name: SELECT pg_ws_watch('%s', 'row', event_prefix => '...').",
						 RelationGetRelationName(rel))));
	}
}

/*
 * The attribute number in rel of the column called name, which rel must
 * have: a partition has every column of its partitioned table, by name.
 */
static AttrNumber
partition_column(Relation rel, const char *name)
{
	AttrNumber	attnum = column_number(RelationGetDescr(rel), name);

	if (attnum == 0)
		elog(ERROR, "pg_ws: partition \"%s\" has no column \"%s\" of its watched table",
			 RelationGetRelationName(rel), name);
	return attnum;
}

/*
 * The attribute numbers in rel, by name, of the columns a name[] of
 * pg_ws_watched lists (array), into *attnums in CacheMemoryContext, where
 * the watch keeps them; error naming the first column rel lacks.  watched
 * is the table whose watch it is, rel's ancestor when rel is a partition.
 */
static int
load_column_names(Relation rel, const char *watched, PgWsTableKind kind,
				  Datum array, AttrNumber **attnums)
{
	TupleDesc	reldesc = RelationGetDescr(rel);
	Datum	   *names;
	bool	   *nulls;
	int			n;
	int			i;
	MemoryContext oldcxt;

	deconstruct_array(DatumGetArrayTypeP(array), NAMEOID, NAMEDATALEN,
					  false, TYPALIGN_CHAR, &names, &nulls, &n);
	oldcxt = MemoryContextSwitchTo(CacheMemoryContext);
	*attnums = palloc(Max(n, 1) * sizeof(AttrNumber));
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < n; i++)
	{
		AttrNumber	attnum = nulls[i] ? 0 :
			column_number(reldesc, NameStr(*DatumGetName(names[i])));

		if (attnum == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("pg_ws cannot render a row of table \"%s\": column \"%s\" does not exist",
							RelationGetRelationName(rel),
							nulls[i] ? "" : NameStr(*DatumGetName(names[i]))),
					 errhint("Watch the table again with the columns it has: SELECT pg_ws_watch('%s', '%s', ...).",
							 watched, pgws_table_kind_names[kind])));
		(*attnums)[i] = attnum;
	}
	return n;
}

/*
 * A 'row' watch from its pg_ws_watched row (tuple, desc: the query of
 * load_catalog_watch): the event prefix, the columns sent and the key a
 * _delete carries, as attribute numbers of rel, the table whose trigger
 * fires.
 *
 * When rel is a partition of the watched table (watched_relid), the
 * columns and the key are the watched table's, mapped to rel by name:
 * a partition made apart and attached (ATTACH PARTITION) may keep its
 * columns in another order or at other attribute numbers (dropped
 * columns), and its own index of the key is a UNIQUE index, not a primary
 * key, so rel's own primary key says nothing.  Every partition's rows are
 * thus sent alike: the watched table's key on delete, and, when the watch
 * lists no columns, all the watched table's columns in its order.
 */
static void
load_row_watch(Relation rel, Oid watched_relid, HeapTuple tuple,
			   TupleDesc desc, PgWsWatchedTable *entry)
{
	char	   *prefix = SPI_getvalue(tuple, desc, 4);
	Relation	watched = rel;
	TupleDesc	watched_desc;
	AttrNumber *keys;
	int			nkeys;
	bool		isnull;
	Datum		value;
	MemoryContext oldcxt;
	int			i;

	/*
	 * Stored by pg_ws_watch() and checked by pg_ws_watched's CHECK; checked
	 * once more, since every subscriber trusts it.
	 */
	if (prefix == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws cannot send the events of table \"%s\": its watch names no events",
						RelationGetRelationName(rel)),
				 errdetail("pg_ws 1.2 named them after the table's current name; pg_ws 1.2.1 stores the name."),
				 errhint("ALTER EXTENSION pg_ws UPDATE stores the table's name, or watch the table again: SELECT pg_ws_watch('%s', 'row', event_prefix => '...').",
						 RelationGetRelationName(rel))));
	check_row_event_names(rel, prefix, true);
	strlcpy(entry->event_prefix, prefix, sizeof(entry->event_prefix));

	/* as the executor holds its partitioned tables: until the end */
	if (watched_relid != RelationGetRelid(rel))
		watched = table_open(watched_relid, AccessShareLock);
	watched_desc = RelationGetDescr(watched);

	value = SPI_getbinval(tuple, desc, 2, &isnull);
	if (!isnull)
		entry->ncolumns = load_column_names(rel, RelationGetRelationName(watched),
											PGWS_TABLE_ROW, value,
											&entry->columns);
	else if (watched != rel)
	{
		/* all the watched table's columns, in its order */
		int			n = 0;

		oldcxt = MemoryContextSwitchTo(CacheMemoryContext);
		entry->columns = palloc(Max(watched_desc->natts, 1) * sizeof(AttrNumber));
		MemoryContextSwitchTo(oldcxt);
		for (i = 0; i < watched_desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(watched_desc, i);

			if (!att->attisdropped)
				entry->columns[n++] = partition_column(rel, NameStr(att->attname));
		}
		entry->ncolumns = n;
	}

	nkeys = primary_key_columns(watched, &keys);
	if (nkeys > 0)
	{
		oldcxt = MemoryContextSwitchTo(CacheMemoryContext);
		entry->keys = palloc(nkeys * sizeof(AttrNumber));
		MemoryContextSwitchTo(oldcxt);
		for (i = 0; i < nkeys; i++)
			entry->keys[i] = watched == rel ? keys[i] :
				partition_column(rel, NameStr(TupleDescAttr(watched_desc, keys[i] - 1)->attname));
		entry->nkeys = nkeys;
	}
	if (watched != rel)
		table_close(watched, NoLock);
}

/*
 * The watch pg_ws_watched records for a relation, or for its nearest
 * watched ancestor when it is a partition; returns the relation whose row
 * it is.  SPI must be connected.
 */
static Oid
load_catalog_watch(Relation rel, PgWsWatchedTable *entry)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			watched_relid = relid;
	List	   *ancestors;
	ListCell   *ancestor;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	char	   *query;

	query = psprintf("SELECT kind, columns, visit_table::pg_catalog.oid, event_prefix, %s "
					 "FROM %s WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
					 filter_columns_expr(), watched_catalog_name());

	/*
	 * A partition's rows fire the trigger its partitioned table's watch
	 * cloned onto it: the partition is watched as its nearest watched
	 * ancestor, with that table's event names.
	 */
	ancestors = rel->rd_rel->relispartition ? get_partition_ancestors(relid) : NIL;
	ancestor = list_head(ancestors);
	for (;;)
	{
		args[0] = ObjectIdGetDatum(watched_relid);
		read_catalog(query, 1, argtypes, args, 0);
		if (SPI_processed > 0 || ancestor == NULL)
			break;
		watched_relid = lfirst_oid(ancestor);
		ancestor = lnext(ancestors, ancestor);
	}
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *kind_name = SPI_getvalue(tuple, desc, 1);
		int			kind = kind_name ? pgws_table_kind_from_name(kind_name) : -1;
		bool		isnull;
		Datum		value;

		if (kind < 0)
			elog(ERROR, "pg_ws_watched names kind \"%s\" for table \"%s\"",
				 kind_name ? kind_name : "", RelationGetRelationName(rel));
		entry->watched = true;
		entry->kind = (PgWsTableKind) kind;

		if (kind == PGWS_TABLE_CLIENT)
		{
			value = SPI_getbinval(tuple, desc, 3, &isnull);
			if (!isnull)
				entry->visit_relid = DatumGetObjectId(value);
		}
		if (kind == PGWS_TABLE_ROW)
			load_row_watch(rel, watched_relid, tuple, desc, entry);

		/* a partition's by name, as a 'row' watch's columns */
		value = SPI_getbinval(tuple, desc, 5, &isnull);
		if (!isnull)
			entry->nfilter_columns = load_column_names(rel, get_rel_name(watched_relid),
													   entry->kind, value,
													   &entry->filter_columns);
	}

	return watched_relid;
}

/*
 * Load a relation's watch: the extension's own tables by their name, the
 * others from pg_ws_watched.  Runs inside the trigger, which may use SPI.
 */
static void
load_watched_table_guts(Relation rel, PgWsWatchedTable *entry)
{
	Oid			watched_relid = RelationGetRelid(rel);
	bool		connected = false;

	if (entry->columns != NULL)
		pfree(entry->columns);
	if (entry->keys != NULL)
		pfree(entry->keys);
	if (entry->filter_columns != NULL)
		pfree(entry->filter_columns);
	entry->columns = NULL;
	entry->keys = NULL;
	entry->filter_columns = NULL;
	entry->ncolumns = 0;
	entry->nkeys = 0;
	entry->nfilter_columns = 0;
	entry->watched = false;
	entry->own = false;
	entry->kind = PGWS_TABLE_ROW;
	entry->visit_relid = InvalidOid;
	entry->event_prefix[0] = '\0';
	memset(entry->render_attnums, 0, sizeof(entry->render_attnums));

	if (is_extension_table(watched_relid))
		load_own_watch(rel, entry);
	else
	{
		if (!OidIsValid(get_extension_oid("pg_ws", true)))
			return;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		connected = true;
		watched_relid = load_catalog_watch(rel, entry);
	}

	/* a client table without its own visit table takes its schema's */
	if (entry->watched && entry->kind == PGWS_TABLE_CLIENT &&
		!OidIsValid(entry->visit_relid))
	{
		int			count;

		if (!connected && SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		connected = true;
		entry->visit_relid = namespace_visit_table(get_rel_namespace(watched_relid),
												   &count);
		if (count > 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_ws cannot tell which visit table serves client table \"%s\"",
							RelationGetRelationName(rel)),
					 errdetail("Schema \"%s\" has %d watched visit_history tables.",
							   get_namespace_name(RelationGetNamespace(rel)), count),
					 errhint("Name it: SELECT pg_ws_watch('%s', 'client', visit_table => '...').",
							 RelationGetRelationName(rel))));
	}
	if (connected)
		SPI_finish();
}

/*
 * Load an entry, valid from the start: an invalidation that arrives while
 * the queries run (they may process invalidations) clears it again, so the
 * next trigger loads afresh instead of trusting what may be stale.  An
 * error leaves it invalid, never half loaded.
 */
static void
load_watched_table(Relation rel, PgWsWatchedTable *entry)
{
	entry->valid = true;
	PG_TRY();
	{
		load_watched_table_guts(rel, entry);
	}
	PG_CATCH();
	{
		entry->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * What pg_ws knows about a relation: whether (and as what) it is watched.
 * The entry stays valid until the relation's relcache entry is invalidated.
 */
PgWsWatchedTable *
pgws_watched_table(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	PgWsWatchedTable *entry;
	bool		found;

	if (watched_tables == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(PgWsWatchedTable);
		ctl.hcxt = CacheMemoryContext;
		watched_tables = hash_create("pg_ws watched tables", 8, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

		/*
		 * On first use rather than in _PG_init, as ri_triggers.c does: the
		 * trigger also runs where pg_ws is not preloaded.
		 */
		CacheRegisterRelcacheCallback(forget_watched_table, (Datum) 0);
	}
	entry = hash_search(watched_tables, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) entry) + sizeof(Oid), 0,
			   sizeof(PgWsWatchedTable) - sizeof(Oid));
		entry->valid = false;
	}
	if (!entry->valid)
		load_watched_table(rel, entry);
	return entry;
}

/* does a column's type fit the kind of value render.c writes? */
static bool
column_type_fits(Oid type, ColumnType want)
{
	/*
	 * render.c writes a domain's value with its output function, as a JSON
	 * string: right for a domain over a string type only.
	 */
	if (want == TYPE_STRING)
		type = getBaseType(type);
	switch (want)
	{
		case TYPE_INTEGER:
			return type == INT2OID || type == INT4OID || type == INT8OID;
		case TYPE_NUMBER:
			return type == INT2OID || type == INT4OID || type == INT8OID ||
				type == FLOAT4OID || type == FLOAT8OID || type == NUMERICOID;
		case TYPE_TIMESTAMP:
			return type == TIMESTAMPTZOID || type == TIMESTAMPOID;
		case TYPE_STRING:
			return type == TEXTOID || type == VARCHAROID || type == BPCHAROID;
		case TYPE_ANY:
			return true;
	}
	return false;
}

/*
 * Error unless rel has every column a table of this kind needs, of a type
 * render.c can write: one error naming every missing column and every
 * column of the wrong type.
 */
static void
check_kind_columns(Relation rel, PgWsTableKind kind, const char *role)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData missing;
	StringInfoData wrong;
	int			i;

	initStringInfo(&missing);
	initStringInfo(&wrong);
	for (i = 0; i < lengthof(required_columns); i++)
	{
		const RequiredColumn *col = &required_columns[i];
		AttrNumber	attnum;
		Oid			type;

		if (col->kind != kind)
			continue;
		attnum = column_number(desc, col->name);
		if (attnum == 0)
		{
			appendStringInfo(&missing, "%s%s", missing.len ? ", " : "",
							 col->name);
			continue;
		}
		type = TupleDescAttr(desc, attnum - 1)->atttypid;
		if (!column_type_fits(type, col->type))
			appendStringInfo(&wrong, "%scolumn \"%s\" is %s, expected %s",
							 wrong.len ? "; " : "", col->name,
							 format_type_be(type), column_type_names[col->type]);
	}
	if (missing.len > 0 || wrong.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" cannot be %s of kind \"%s\"",
						RelationGetRelationName(rel), role,
						pgws_table_kind_names[kind]),
				 missing.len > 0 && wrong.len > 0 ?
				 errdetail("Missing columns: %s.  Wrong types: %s.",
						   missing.data, wrong.data) :
				 missing.len > 0 ?
				 errdetail("Missing columns: %s.", missing.data) :
				 errdetail("Wrong types: %s.", wrong.data),
				 errhint("A table of kind \"%s\" needs the columns Django's model gives it (see README.md, \"Moving from Django Channels\").",
						 pgws_table_kind_names[kind])));
}

/* is name among the columns a name[] lists? */
static bool
names_column(ArrayType *columns, const char *name)
{
	Datum	   *names;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(columns, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &names, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i] && strcmp(NameStr(*DatumGetName(names[i])), name) == 0)
			return true;
	return false;
}

/*
 * Error unless filter (pg_ws_watch()'s filter_columns) names at most
 * PGWS_MAX_FILTER_COLUMNS columns of rel, each once, none of which the
 * table's events carry already: a 'row' table's sent columns (columns, or
 * every one when NULL), the fields of the document's kinds' events.
 */
static void
check_filter_columns(Relation rel, PgWsTableKind kind, ArrayType *columns,
					 ArrayType *filter)
{
	const char *table = RelationGetRelationName(rel);
	Datum	   *names;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(filter, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &names, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("filter_columns must name at least one column"),
				 errhint("Pass NULL for none.")));
	if (n > PGWS_MAX_FILTER_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("table \"%s\" may have at most %d filter columns, not %d",
						table, PGWS_MAX_FILTER_COLUMNS, n),
				 errdetail("Each travels with every event of the table, in pg_ws's queue and in the WAL.")));
	for (i = 0; i < n; i++)
	{
		const char *name = nulls[i] ? NULL : NameStr(*DatumGetName(names[i]));
		const char *carried = NULL;
		int			j;

		if (name == NULL || column_number(RelationGetDescr(rel), name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of table \"%s\" does not exist",
							name ? name : "NULL", table)));
		for (j = 0; j < i; j++)
			if (strcmp(name, NameStr(*DatumGetName(names[j]))) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("filter_columns names column \"%s\" twice", name)));
		if (kind == PGWS_TABLE_ROW && columns == NULL)
			carried = "A watch without columns sends every column of the table.";
		else if (kind == PGWS_TABLE_ROW && names_column(columns, name))
			carried = "The watch's columns send it.";
		for (j = 0; j < lengthof(event_fields) && carried == NULL; j++)
			if (event_fields[j].kind == kind &&
				strcmp(event_fields[j].key, name) == 0)
				carried = psprintf("Events of kind \"%s\" carry a field \"%s\".",
								   pgws_table_kind_names[kind], name);
		if (carried != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" of table \"%s\" cannot be a filter column: its events carry it already",
							name, table),
					 errdetail("%s", carried),
					 errhint("Filters already see the fields the events carry; leave it out of filter_columns.")));
	}
}

/* run a utility or DML statement through SPI, or fail */
static void
spi_exec(const char *query, int nargs, Oid *argtypes, Datum *args,
		 const char *nulls, int expect)
{
	int			rc = nargs > 0 ?
		SPI_execute_with_args(query, nargs, argtypes, args, nulls, false, 0) :
		SPI_execute(query, false, 0);

	if (rc != expect)
		elog(ERROR, "pg_ws: \"%s\" failed: %s", query, SPI_result_code_string(rc));
}

/* drop the trigger pg_ws_event of a table, when it has one */
static void
drop_watch_trigger(Oid relid, const char *qualified)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];

	args[0] = ObjectIdGetDatum(relid);
	spi_exec("SELECT 1 FROM pg_catalog.pg_trigger "
			 "WHERE tgrelid OPERATOR(pg_catalog.=) $1 AND tgname OPERATOR(pg_catalog.=) 'pg_ws_event'",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		spi_exec(psprintf("DROP TRIGGER pg_ws_event ON %s", qualified),
				 0, NULL, NULL, NULL, SPI_OK_UTILITY);
}

/*
 * How many client tables of a namespace take its visit table implicitly.
 */
static int
implicit_client_tables(Oid nsp)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	char	   *query;

	args[0] = ObjectIdGetDatum(nsp);
	query = psprintf("SELECT 1 FROM %s w "
					 "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) w.relation::pg_catalog.oid "
					 "WHERE w.kind OPERATOR(pg_catalog.=) 'client' AND w.visit_table IS NULL "
					 "AND c.relnamespace OPERATOR(pg_catalog.=) $1",
					 watched_catalog_name());
	read_catalog(query, 1, argtypes, args, 0);
	return (int) SPI_processed;
}

/*
 * pg_ws_watch() on one of pg_ws's own tables: only whether its replicated
 * rows are broadcast may be set.  pg_ws_own_tables records it, and its
 * trigger makes pg_ws_event ENABLE ALWAYS or ENABLE (pg_ws--1.2.1.sql).
 */
static void
watch_own_table(Relation rel, int kind, bool other_options, bool replicated)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			argtypes[2] = {REGCLASSOID, BOOLOID};
	Datum		args[2];
	int			own_kind = pgws_table_kind_from_name(RelationGetRelationName(rel));

	if (kind != own_kind || other_options)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" belongs to extension pg_ws, which always watches it",
						RelationGetRelationName(rel)),
				 own_kind >= 0 ?
				 errhint("Only whether its replicated rows are broadcast may be set: SELECT pg_ws_watch('%s', '%s', replicated => true).",
						 RelationGetRelationName(rel), pgws_table_kind_names[own_kind]) : 0));

	/* ALTER TABLE refuses a table this backend holds open; the lock stays */
	table_close(rel, NoLock);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = ObjectIdGetDatum(relid);
	args[1] = BoolGetDatum(replicated);
	spi_exec(psprintf("INSERT INTO %s.pg_ws_own_tables (relation, replicated) VALUES ($1, $2) "
					  "ON CONFLICT (relation) DO UPDATE SET replicated = EXCLUDED.replicated",
					  quote_identifier(get_namespace_name(pg_ws_extension_schema()))),
			 2, argtypes, args, NULL, SPI_OK_INSERT);
	SPI_finish();
}

/*
 * Every client event reads its client's newest visits: through an index on
 * (client_id, datetime, id) when the visit table has one, by a query
 * otherwise (visits.c).  Django's ForeignKey indexes client_id alone.
 */
static void
notice_without_visit_index(Relation visit)
{
	if (!pgws_visit_index_fits(visit))
		ereport(NOTICE,
				(errmsg("visit table \"%s\" has no index on (client_id, datetime, id)",
						RelationGetRelationName(visit)),
				 errdetail("Each client event then finds its client's newest visits with a query, which costs the writer more than reading such an index."),
				 errhint("CREATE INDEX ON %s (client_id, datetime, id);",
						 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(visit)),
													RelationGetRelationName(visit)))));
}

/*
 * pg_ws_watch(tbl regclass, kind text, columns name[] DEFAULT NULL,
 *			   visit_table regclass DEFAULT NULL,
 *			   event_prefix text DEFAULT NULL,
 *			   replicated boolean DEFAULT false,
 *			   filter_columns name[] DEFAULT NULL) returns void
 *
 * Attach pg_ws's events to an existing table: check its columns, record it
 * in pg_ws_watched and create the trigger pg_ws_event on it, ENABLE ALWAYS
 * when replicated rows are to be broadcast too.  filter_columns travel
 * with every event of the table for ?filter=, never sent.  A 'row'
 * table's events are named after event_prefix, or the table's name now:
 * either is stored, so that a later rename changes nothing.  Watching a
 * watched table again replaces its watch.  EXECUTE is not granted to
 * PUBLIC, and the function needs INSERT on pg_ws_watched and EXECUTE on
 * pg_ws_row_event(): superusers only, unless granted all three.
 */
PG_FUNCTION_INFO_V1(pg_ws_watch);

Datum
pg_ws_watch(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *kind_name;
	int			kind;
	Relation	rel;
	Oid			nsp;
	Oid			visit_relid = InvalidOid;
	char	   *prefix = NULL;
	ArrayType  *columns = NULL;
	ArrayType  *filter = NULL;
	bool		replicated;
	bool		catalog_1_2_1;
	bool		catalog_1_3_1;
	Oid			extschema;
	char	   *qualified;
	char	   *catalog;
	char	   *query;
	Oid			argtypes[7] = {REGCLASSOID, TEXTOID, NAMEARRAYOID, REGCLASSOID,
	TEXTOID, BOOLOID, NAMEARRAYOID};
	Datum		args[7];
	char		nulls[7] = {' ', ' ', 'n', 'n', 'n', ' ', 'n'};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pg_ws_watch() needs a table and a kind")));
	relid = PG_GETARG_OID(0);
	kind_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	kind = pgws_table_kind_from_name(kind_name);
	if (kind < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown pg_ws table kind \"%s\"", kind_name),
				 errhint("The kinds are client, visit_history, employee, attendance and row.")));
	if (!PG_ARGISNULL(2))
		columns = PG_GETARG_ARRAYTYPE_P(2);
	if (!PG_ARGISNULL(3))
		visit_relid = PG_GETARG_OID(3);
	if (!PG_ARGISNULL(4))
		prefix = text_to_cstring(PG_GETARG_TEXT_PP(4));

	/*
	 * pg_ws 1.2's pg_ws_watch() has no replicated, nor its pg_ws_watched
	 * the column: a database not yet updated (ALTER EXTENSION pg_ws UPDATE)
	 * is watched as 1.2 did, but for the event names, stored all the same.
	 */
	catalog_1_2_1 = PG_NARGS() > 5;
	if (catalog_1_2_1 && PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("replicated must be true or false, not NULL")));
	replicated = catalog_1_2_1 && PG_GETARG_BOOL(5);
	/* and 1.3.0's neither filter_columns */
	catalog_1_3_1 = PG_NARGS() > 6;
	if (catalog_1_3_1 && !PG_ARGISNULL(6))
		filter = PG_GETARG_ARRAYTYPE_P(6);

	if (kind != PGWS_TABLE_ROW && (columns != NULL || prefix != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("columns and event_prefix apply to kind \"row\" only"),
				 errdetail("A table of kind \"%s\" makes the event document's events.",
						   kind_name)));
	if (kind != PGWS_TABLE_CLIENT && OidIsValid(visit_relid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("visit_table applies to kind \"client\" only")));

	extschema = pg_ws_extension_schema();

	/* as CREATE TRIGGER locks it: writes wait, reads go on */
	rel = table_open(relid, ShareRowExclusiveLock);
	nsp = RelationGetNamespace(rel);
	qualified = quote_qualified_identifier(get_namespace_name(nsp),
										   RelationGetRelationName(rel));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("pg_ws watches tables and partitioned tables.")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP ||
		IsCatalogRelationOid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_ws cannot watch temporary tables or system catalogs")));
	if (is_extension_table(relid) && filter != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_ws's own table \"%s\" takes no filter columns",
						RelationGetRelationName(rel)),
				 errdetail("A column added to an extension's table is not dumped by pg_dump."),
				 errhint("Watch an application table (for example a Django app's, with pg_ws_watch()) to scope events by its columns.")));
	if (is_extension_table(relid) && catalog_1_2_1)
	{
		watch_own_table(rel, kind,
						columns != NULL || prefix != NULL || OidIsValid(visit_relid),
						replicated);
		PG_RETURN_VOID();
	}
	if (is_extension_table(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" belongs to extension pg_ws, which always watches it",
						RelationGetRelationName(rel))));

	if (kind == PGWS_TABLE_ROW)
	{
		AttrNumber *keys;
		TupleDesc	desc = RelationGetDescr(rel);

		if (primary_key_columns(rel, &keys) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("table \"%s\" cannot be watched as kind \"row\": it has no primary key",
							RelationGetRelationName(rel)),
					 errdetail("A %s_delete event carries the deleted row's primary key.",
							   prefix ? prefix : RelationGetRelationName(rel)),
					 errhint("Add a primary key to the table.")));
		if (columns != NULL)
		{
			Datum	   *names;
			bool	   *anynull;
			int			n,
						i;

			deconstruct_array(columns, NAMEOID, NAMEDATALEN, false,
							  TYPALIGN_CHAR, &names, &anynull, &n);
			if (n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("columns must name at least one column"),
						 errhint("Pass NULL for every column.")));
			for (i = 0; i < n; i++)
				if (anynull[i] ||
					column_number(desc, NameStr(*DatumGetName(names[i]))) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column \"%s\" of table \"%s\" does not exist",
									anynull[i] ? "NULL" : NameStr(*DatumGetName(names[i])),
									RelationGetRelationName(rel))));
		}
		/* the name it has now, kept whatever it is renamed to later */
		if (prefix == NULL)
			prefix = pstrdup(RelationGetRelationName(rel));
		check_row_event_names(rel, prefix, false);
	}
	else
		check_kind_columns(rel, (PgWsTableKind) kind, "watched as a table");
	if (filter != NULL)
		check_filter_columns(rel, (PgWsTableKind) kind, columns, filter);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	catalog = watched_catalog_name();

	if (kind == PGWS_TABLE_CLIENT)
	{
		if (OidIsValid(visit_relid))
		{
			Relation	visit = table_open(visit_relid, AccessShareLock);

			check_kind_columns(visit, PGWS_TABLE_VISIT_HISTORY,
							   "the visit table");
			/* the visit_histories query runs as the client table's owner */
			if (pg_class_aclcheck(visit_relid, rel->rd_rel->relowner,
								  ACL_SELECT) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("the owner of table \"%s\" may not read visit table \"%s\"",
								RelationGetRelationName(rel),
								RelationGetRelationName(visit)),
						 errdetail("visit_histories is read with the client table owner's rights.")));
			notice_without_visit_index(visit);
			table_close(visit, AccessShareLock);
		}
		else
		{
			int			count;

			(void) namespace_visit_table(nsp, &count);
			if (count > 1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("schema \"%s\" has %d watched visit_history tables",
								get_namespace_name(nsp), count),
						 errhint("Name the one that serves this client table: visit_table => '...'.")));
			if (count == 0)
				ereport(NOTICE,
						(errmsg("client events of \"%s\" carry an empty visit_histories until a visit_history table of schema \"%s\" is watched",
								RelationGetRelationName(rel),
								get_namespace_name(nsp))));
		}
	}
	if (kind == PGWS_TABLE_VISIT_HISTORY)
	{
		int			count;
		Oid			current = namespace_visit_table(nsp, &count);

		if (count > 0 && current != relid && implicit_client_tables(nsp) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("schema \"%s\" already has a watched visit_history table that its client tables read",
							get_namespace_name(nsp)),
					 errhint("Watch those client tables again with visit_table => '...' first.")));
		notice_without_visit_index(rel);
	}

	/*
	 * Replace any earlier watch: its catalog row, then its trigger, then
	 * the new trigger (attendance updates are not in the event document)
	 * and last the new row, so that pg_ws's event trigger, which guards the
	 * trigger of a table pg_ws_watched lists, never sees the table between
	 * the two (pg_ws--1.2.1.sql, pg_ws_check_trigger_change).  ALTER TABLE
	 * refuses a table this backend holds open: close it, keeping the lock.
	 */
	table_close(rel, NoLock);
	args[0] = ObjectIdGetDatum(relid);
	query = psprintf("DELETE FROM %s WHERE relation OPERATOR(pg_catalog.=) $1::pg_catalog.oid::pg_catalog.regclass",
					 catalog);
	spi_exec(query, 1, argtypes, args, NULL, SPI_OK_DELETE);
	drop_watch_trigger(relid, qualified);
	query = psprintf("CREATE TRIGGER pg_ws_event AFTER INSERT OR %sDELETE ON %s "
					 "FOR EACH ROW EXECUTE FUNCTION %s.pg_ws_row_event(%s)",
					 kind == PGWS_TABLE_ATTENDANCE ? "" : "UPDATE OR ",
					 qualified, quote_identifier(get_namespace_name(extschema)),
					 quote_literal_cstr(kind_name));
	spi_exec(query, 0, NULL, NULL, NULL, SPI_OK_UTILITY);
	/* replicated rows too; a partitioned table's partitions follow it */
	if (replicated)
		spi_exec(psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER pg_ws_event", qualified),
				 0, NULL, NULL, NULL, SPI_OK_UTILITY);

	args[1] = CStringGetTextDatum(kind_name);
	if (columns != NULL)
	{
		args[2] = PointerGetDatum(columns);
		nulls[2] = ' ';
	}
	if (OidIsValid(visit_relid))
	{
		args[3] = ObjectIdGetDatum(visit_relid);
		nulls[3] = ' ';
	}
	if (prefix != NULL)
	{
		args[4] = CStringGetTextDatum(prefix);
		nulls[4] = ' ';
	}
	args[5] = BoolGetDatum(replicated);
	if (filter != NULL)
	{
		args[6] = PointerGetDatum(filter);
		nulls[6] = ' ';
	}
	query = psprintf("INSERT INTO %s (relation, kind, columns, visit_table, event_prefix%s%s) "
					 "VALUES ($1, $2, $3, $4, $5%s%s)", catalog,
					 catalog_1_2_1 ? ", replicated" : "",
					 catalog_1_3_1 ? ", filter_columns" : "",
					 catalog_1_2_1 ? ", $6" : "", catalog_1_3_1 ? ", $7" : "");
	spi_exec(query, catalog_1_3_1 ? 7 : catalog_1_2_1 ? 6 : 5, argtypes, args,
			 nulls, SPI_OK_INSERT);
	SPI_finish();

	/* client tables may take their visit table from this watch */
	CacheInvalidateRelcacheAll();
	PG_RETURN_VOID();
}

/*
 * pg_ws_unwatch(tbl regclass) returns boolean
 *
 * Detach pg_ws from a table pg_ws_watch() attached it to: drop its trigger
 * and its catalog row.  False when the table was not watched.
 */
PG_FUNCTION_INFO_V1(pg_ws_unwatch);

Datum
pg_ws_unwatch(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	Relation	rel;
	char	   *query;
	bool		watched;

	(void) pg_ws_extension_oid();
	rel = table_open(relid, ShareRowExclusiveLock);
	if (is_extension_table(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" belongs to extension pg_ws, which always watches it",
						RelationGetRelationName(rel)),
				 errhint("DROP EXTENSION pg_ws drops it.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = ObjectIdGetDatum(relid);
	query = psprintf("DELETE FROM %s WHERE relation OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
					 watched_catalog_name());
	spi_exec(query, 1, argtypes, args, NULL, SPI_OK_DELETE);
	watched = SPI_processed > 0;
	if (watched)
	{
		drop_watch_trigger(relid,
						   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													  RelationGetRelationName(rel)));
	}
	SPI_finish();
	table_close(rel, NoLock);
	CacheInvalidateRelcacheAll();
	PG_RETURN_BOOL(watched);
}

/* a column of pg_ws_watched (every version has those asked for here) */
static AttrNumber
catalog_attnum(Oid catalog, const char *column)
{
	AttrNumber	att = get_attnum(catalog, column);

	if (att == InvalidAttrNumber)
		elog(ERROR, "pg_ws: pg_ws_watched has no column \"%s\"", column);
	return att;
}

/*
 * Error if a watched 'row' table makes events of this name: whoever may
 * call pg_ws_send() may send application events, not forge a table's.
 * The names are the stored ones, which a rename does not change.
 *
 * pg_ws_send() calls this for every event, so it costs a name that ends
 * in none of the three suffixes nothing, and reads pg_ws_watched (a few
 * rows) with a plain scan otherwise: a query through SPI, parsed and
 * planned on each call, took more of pg_ws_send() than all the rest.  The
 * scan sees what the calling statement sees (its active snapshot), as that
 * query did.
 */
void
pgws_check_not_table_event(const char *name, int len)
{
	static const char *const suffixes[] = {"_create", "_update", "_delete"};
	const int	suffix_len = 7;
	int			prefix_len = len - suffix_len;
	Oid			catalog;
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	relation_att,
				kind_att,
				prefix_att;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			forged = InvalidOid;
	int			i;

	if (prefix_len < 1)
		return;
	for (i = 0; i < lengthof(suffixes); i++)
		if (memcmp(name + prefix_len, suffixes[i], suffix_len) == 0)
			break;
	if (i == lengthof(suffixes))
		return;

	catalog = get_relname_relid("pg_ws_watched", pg_ws_extension_schema());
	if (!OidIsValid(catalog))
		elog(ERROR, "pg_ws: pg_ws_watched not found");
	rel = table_open(catalog, AccessShareLock);
	desc = RelationGetDescr(rel);
	relation_att = catalog_attnum(catalog, "relation");
	kind_att = catalog_attnum(catalog, "kind");
	prefix_att = catalog_attnum(catalog, "event_prefix");
	scan = systable_beginscan(rel, InvalidOid, false,
							  ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot(),
							  0, NULL);
	while ((tuple = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		kind = heap_getattr(tuple, kind_att, desc, &isnull);
		Datum		prefix;
		text	   *p;

		if (isnull || strcmp(TextDatumGetCString(kind), "row") != 0)
			continue;
		prefix = heap_getattr(tuple, prefix_att, desc, &isnull);
		if (isnull)
			continue;
		p = DatumGetTextPP(prefix);
		if (VARSIZE_ANY_EXHDR(p) == prefix_len &&
			memcmp(VARDATA_ANY(p), name, prefix_len) == 0)
		{
			forged = DatumGetObjectId(heap_getattr(tuple, relation_att, desc, &isnull));
			break;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (OidIsValid(forged))
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("pg_ws event name \"%.*s\" is the watched table %s's", len, name,
						DatumGetCString(DirectFunctionCall1(regclassout,
															ObjectIdGetDatum(forged)))),
				 errdetail("Subscribers trust a table's events to be its rows' changes."),
				 errhint("Choose another name for the application's event.")));
}

/*
 * pg_ws_role_changes_trigger(cmd pg_ddl_command) returns boolean
 *
 * For pg_ws's event trigger (pg_ws--1.2.1.sql, pg_ws_check_trigger_change):
 * whether cmd, one of the commands an ALTER TABLE ran, enables or disables
 * the trigger pg_ws_event (by its name, or all the table's triggers, or its
 * user triggers), and the role that ran it is not a superuser.  A table's
 * owner may not make pg_ws's trigger broadcast less than its watch asks; a
 * superuser may (pg_restore --disable-triggers, which needs one, disables
 * triggers around the rows it loads).  The role is the outer one (SET ROLE
 * counts), since the event trigger runs as SECURITY DEFINER.
 */
PG_FUNCTION_INFO_V1(pg_ws_role_changes_trigger);

Datum
pg_ws_role_changes_trigger(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	ListCell   *lc;

	if (cmd == NULL || cmd->type != SCT_AlterTable ||
		superuser_arg(GetOuterUserId()))
		PG_RETURN_BOOL(false);
	foreach(lc, cmd->d.alterTable.subcmds)
	{
		CollectedATSubcmd *sub = (CollectedATSubcmd *) lfirst(lc);
		AlterTableCmd *at = (AlterTableCmd *) sub->parsetree;

		if (!IsA(at, AlterTableCmd))
			continue;
		switch (at->subtype)
		{
			case AT_EnableTrig:
			case AT_EnableAlwaysTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
				if (at->name != NULL && strcmp(at->name, "pg_ws_event") == 0)
					PG_RETURN_BOOL(true);
				break;
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				PG_RETURN_BOOL(true);
			default:
				break;
		}
	}
	PG_RETURN_BOOL(false);
}

/*
 * The error of pg_ws_check_columns() for a table of the event document's
 * kinds (pg_ws's own or a watched one) that lost a column render.c reads,
 * or whose column's type it can no longer write; nothing when it has them
 * all.
 */
static void
check_kind_columns_kept(Relation rel, PgWsTableKind kind, bool own)
{
	TupleDesc	desc = RelationGetDescr(rel);
	const char *table = RelationGetRelationName(rel);
	char	   *qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													   table);
	int			i;

	for (i = 0; i < lengthof(required_columns); i++)
	{
		const RequiredColumn *col = &required_columns[i];
		AttrNumber	attnum;
		Oid			type;

		if (col->kind != kind)
			continue;
		attnum = column_number(desc, col->name);
		if (attnum == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop or rename column \"%s\" of table \"%s\"",
							col->name, table),
					 errdetail("pg_ws broadcasts %s \"%s\" as kind \"%s\", whose events are rendered from its column \"%s\".",
							   own ? "its own table" : "table", table,
							   pgws_table_kind_names[kind], col->name),
					 own ?
					 errhint("pg_ws's own tables keep the columns CREATE EXTENSION pg_ws made them with.") :
					 errhint("Stop broadcasting the table first: SELECT pg_ws_unwatch('%s').",
							 qualified)));
		type = TupleDescAttr(desc, attnum - 1)->atttypid;
		if (!column_type_fits(type, col->type))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("cannot change the type of column \"%s\" of table \"%s\" to %s",
							col->name, table, format_type_be(type)),
					 errdetail("pg_ws broadcasts %s \"%s\" as kind \"%s\", whose column \"%s\" must be %s.",
							   own ? "its own table" : "table", table,
							   pgws_table_kind_names[kind], col->name,
							   column_type_names[col->type]),
					 own ?
					 errhint("pg_ws's own tables keep the columns CREATE EXTENSION pg_ws made them with.") :
					 errhint("Stop broadcasting the table first: SELECT pg_ws_unwatch('%s').",
							 qualified)));
	}
}

/*
 * The same for a 'row' table: every column its watch lists (pg_ws_watched
 * .columns, by name) is still there, and, when need_key, it still has a
 * primary key, whose columns its _delete events carry.  The hint is the
 * call that watches the table without the missing columns.
 */
static void
check_row_columns_kept(Relation rel, HeapTuple tuple, TupleDesc desc,
					   bool need_key)
{
	TupleDesc	reldesc = RelationGetDescr(rel);
	const char *table = RelationGetRelationName(rel);
	char	   *qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													   table);
	char	   *prefix = SPI_getvalue(tuple, desc, 3);
	bool		isnull;
	bool		replicated = DatumGetBool(SPI_getbinval(tuple, desc, 4, &isnull)) && !isnull;
	char	   *filter = SPI_getvalue(tuple, desc, 5);
	Datum		value = SPI_getbinval(tuple, desc, 2, &isnull);
	AttrNumber *keys;

	if (prefix == NULL)
		prefix = pstrdup(table);
	if (!isnull)
	{
		Datum	   *names;
		bool	   *nulls;
		int			n,
					i;
		const char *missing = NULL;
		StringInfoData kept;

		deconstruct_array(DatumGetArrayTypeP(value), NAMEOID, NAMEDATALEN,
						  false, TYPALIGN_CHAR, &names, &nulls, &n);
		initStringInfo(&kept);
		for (i = 0; i < n; i++)
		{
			const char *name = nulls[i] ? "" : NameStr(*DatumGetName(names[i]));

			if (column_number(reldesc, name) == 0)
			{
				if (missing == NULL)
					missing = name;
				continue;
			}
			appendStringInfo(&kept, "%s%s", kept.len > 0 ? "," : "",
							 quote_identifier(name));
		}
		if (missing != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop or rename column \"%s\" of table \"%s\"",
							missing, table),
					 errdetail("pg_ws's watch of table \"%s\" (pg_ws_watched) lists the column among those its events %s_create and %s_update send.",
							   table, prefix, prefix),
					 kept.len > 0 ?
					 errhint("Watch the table again without it first, and after a rename again with its new name, in the same transaction: SELECT pg_ws_watch('%s', 'row', columns => '{%s}', event_prefix => '%s'%s%s%s%s).",
							 qualified, kept.data, prefix,
							 replicated ? ", replicated => true" : "",
							 filter ? ", filter_columns => '" : "",
							 filter ? filter : "", filter ? "'" : "") :
					 errhint("Watch the table again with other columns first, or stop broadcasting it: SELECT pg_ws_unwatch('%s').",
							 qualified)));
	}
	if (need_key && primary_key_columns(rel, &keys) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop the primary key of table \"%s\"", table),
				 errdetail("pg_ws's watch of table \"%s\" (pg_ws_watched) sends the primary key in its %s_delete events.",
						   table, prefix),
				 errhint("Replace the key in the same command (ALTER TABLE ... DROP CONSTRAINT ..., ADD PRIMARY KEY (...)), or stop broadcasting the table first: SELECT pg_ws_unwatch('%s').",
						 qualified)));
}

/*
 * The same for a watched table's filter columns (pg_ws_watched
 * .filter_columns, by name, column 5 of tuple): each must stay, or every
 * later write to the table would fail.  Their types may change: render.c
 * writes a value of any type.
 */
static void
check_filter_columns_kept(Relation rel, HeapTuple tuple, TupleDesc desc)
{
	const char *table = RelationGetRelationName(rel);
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, desc, 5, &isnull);
	Datum	   *names;
	bool	   *nulls;
	int			n;
	int			i;

	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(value), NAMEOID, NAMEDATALEN,
					  false, TYPALIGN_CHAR, &names, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		const char *name = nulls[i] ? "" : NameStr(*DatumGetName(names[i]));

		if (column_number(RelationGetDescr(rel), name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop or rename column \"%s\" of table \"%s\"",
							name, table),
					 errdetail("pg_ws's watch of table \"%s\" (pg_ws_watched) carries the column with every event of the table, for subscribers' filters.",
							   table),
					 errhint("Watch the table again without it in filter_columns first, and after a rename again with its new name, in the same transaction; or stop broadcasting it: SELECT pg_ws_unwatch('%s').",
							 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
														table))));
	}
}

/*
 * pg_ws_check_columns(tbl oid, need_key boolean) returns void
 *
 * For pg_ws's event triggers (pg_ws--1.2.2.sql, pg_ws_refuse_column_change):
 * error unless the table, if pg_ws broadcasts it as its own table or as a
 * watched one, still has every column its events are rendered from (the
 * event document's kinds: those render.c reads, of types it can write; a
 * 'row' table: the columns its watch lists; any watched table: its filter
 * columns), and, when need_key, a 'row' table its primary key.  Without
 * them every later write to the table would fail (column "x" does not
 * exist) until the table is watched again, so the command that drops,
 * renames or retypes them is refused instead.
 * A table that does not exist (dropped by the same command), that pg_ws
 * does not broadcast, or a partition (whose columns and key are its
 * partitioned table's) passes.
 */
PG_FUNCTION_INFO_V1(pg_ws_check_columns);

Datum
pg_ws_check_columns(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	bool		need_key = PG_GETARG_BOOL(1);
	Relation	rel;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];

	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		PG_RETURN_VOID();
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
	{
		relation_close(rel, AccessShareLock);
		PG_RETURN_VOID();
	}

	if (is_extension_table(relid))
	{
		int			kind = pgws_table_kind_from_name(RelationGetRelationName(rel));

		/* one renamed away is pg_ws_check_trigger_change's to refuse */
		if (kind >= 0 && kind != PGWS_TABLE_ROW)
			check_kind_columns_kept(rel, (PgWsTableKind) kind, true);
		relation_close(rel, AccessShareLock);
		PG_RETURN_VOID();
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = ObjectIdGetDatum(relid);
	read_catalog(psprintf("SELECT kind, columns, event_prefix, replicated, %s FROM %s "
						  "WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
						  filter_columns_expr(), watched_catalog_name()),
				 1, argtypes, args, 1);
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *kind_name = SPI_getvalue(tuple, desc, 1);
		int			kind = kind_name ? pgws_table_kind_from_name(kind_name) : -1;

		if (kind == PGWS_TABLE_ROW)
			check_row_columns_kept(rel, tuple, desc, need_key);
		else if (kind >= 0)
			check_kind_columns_kept(rel, (PgWsTableKind) kind, false);
		check_filter_columns_kept(rel, tuple, desc);
	}
	SPI_finish();
	relation_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}
