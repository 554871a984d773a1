/*-------------------------------------------------------------------------
 *
 * eventname.c
 *	  What an event may be called, and which names a pattern of events
 *	  (a ?events= filter, a token's events claim) matches.
 *
 * This file owns the rules for event names and the language of patterns,
 * in one place, for backends (pg_ws_send() checks a name before it queues
 * anything, pg_ws_watch() a 'row' table's names) and for the worker
 * (filters and grants).  It must not render,
 * queue or send events, nor decide who may subscribe (auth.c): it only
 * says whether a name is acceptable and whether a set of patterns takes it.
 *
 * Names.  The event document names eleven events (pgws_event_names,
 * rendered by render.c).  Any other
 * event, one an application sends with pg_ws_send() or one of a table
 * watched with kind 'row' (watch.c), is called by a name that
 *	- is a lower-case ASCII letter followed by lower-case letters, digits
 *	  and underscores: it needs no escaping in JSON, a URL or a log line,
 *	  and a pattern's '*' can never be part of it;
 *	- is at most PGWS_EVENT_NAME_MAXLEN (63) bytes, the length of an SQL
 *	  identifier: a name fits wherever an identifier does (a column of type
 *	  name, a table's), and a subscriber's 64 patterns stay small;
 *	- is not one of the document's eleven: every subscriber trusts those
 *	  to come from the extension's tables, so a custom one of the same name
 *	  would be a forgery;
 *	- does not begin with "pg_ws" and is not "resync_required": those are
 *	  pg_ws's own messages, now (resync_required) and to come.
 *
 * Patterns.  A pattern is an event name, a prefix of one followed by '*'
 * (client_* takes client_visit_* too), or "*" for every event.  A set of
 * patterns keeps a bit mask of the document's events, so that the common
 * case costs one test, and the patterns that can match any other name.
 * Patterns match names, whatever made the event: client_* also takes a
 * custom client_note, while an exact document name (client_create) takes
 * only that event.
 *
 * src/eventname.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

/* the event document's eleven events, by kind (render.c renders them) */
const char *const pgws_event_names[PGWS_NUM_EVENT_KINDS] = {
	[PGWS_CLIENT_CREATE] = "client_create",
	[PGWS_CLIENT_UPDATE] = "client_update",
	[PGWS_CLIENT_DELETE] = "client_delete",
	[PGWS_CLIENT_VISIT_CREATE] = "client_visit_create",
	[PGWS_CLIENT_VISIT_UPDATE] = "client_visit_update",
	[PGWS_CLIENT_VISIT_DELETE] = "client_visit_delete",
	[PGWS_EMPLOYEE_CREATE] = "employee_create",
	[PGWS_EMPLOYEE_UPDATE] = "employee_update",
	[PGWS_EMPLOYEE_DELETE] = "employee_delete",
	[PGWS_EMPLOYEE_ATTENDANCE] = "employee_attendance",
	[PGWS_EMPLOYEE_ATTENDANCE_DELETE] = "employee_attendance_delete",
};

/* the first byte of a name, and the others */
static inline bool
name_start_char(char c)
{
	return c >= 'a' && c <= 'z';
}

static inline bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* do name[0 .. len) follow the spelling of an event name (any name)? */
bool
pgws_event_name_valid(const char *name, size_t len)
{
	size_t		i;

	if (len == 0 || len > PGWS_EVENT_NAME_MAXLEN || !name_start_char(name[0]))
		return false;
	for (i = 1; i < len; i++)
		if (!name_char(name[i]))
			return false;
	return true;
}

/* the document's kind called name[0 .. len), or -1 */
int
pgws_document_event_kind(const char *name, size_t len)
{
	int			kind;

	for (kind = 0; kind < PGWS_NUM_EVENT_KINDS; kind++)
		if (strlen(pgws_event_names[kind]) == len &&
			memcmp(pgws_event_names[kind], name, len) == 0)
			return kind;
	return -1;
}

/* why a name may not be a custom event's, one reason per problem */
typedef enum NameProblem
{
	NAME_OK,
	NAME_BAD_START,				/* empty, or not a lower-case letter first */
	NAME_BAD_CHAR,
	NAME_TOO_LONG,
	NAME_DOCUMENT,				/* one of the eleven */
	NAME_PG_WS,					/* pg_ws's own: "pg_ws..." */
	NAME_RESYNC					/* pg_ws's own: resync_required */
} NameProblem;

/* the errdetail of each problem (pg_ws_watch() shows these for 'row' tables) */
static const char *const name_problem_text[] = {
	[NAME_OK] = NULL,
	[NAME_BAD_START] = "An event name starts with a lower-case letter (a-z).",
	[NAME_BAD_CHAR] = "An event name holds lower-case letters, digits and underscores only.",
	[NAME_TOO_LONG] = "An event name is at most 63 bytes long.",
	[NAME_DOCUMENT] = "The event document's events are sent by pg_ws's own tables only.",
	[NAME_PG_WS] = "Names starting with \"pg_ws\" are reserved for pg_ws.",
	[NAME_RESYNC] = "\"resync_required\" is pg_ws's own message.",
};

static NameProblem
name_problem(const char *name, size_t len)
{
	static const char own_prefix[] = "pg_ws";
	static const char resync[] = "resync_required";
	size_t		i;

	if (len == 0 || !name_start_char(name[0]))
		return NAME_BAD_START;
	for (i = 1; i < len; i++)
		if (!name_char(name[i]))
			return NAME_BAD_CHAR;
	if (len > PGWS_EVENT_NAME_MAXLEN)
		return NAME_TOO_LONG;
	if (pgws_document_event_kind(name, len) >= 0)
		return NAME_DOCUMENT;
	if (len >= sizeof(own_prefix) - 1 &&
		memcmp(name, own_prefix, sizeof(own_prefix) - 1) == 0)
		return NAME_PG_WS;
	if (len == sizeof(resync) - 1 && memcmp(name, resync, len) == 0)
		return NAME_RESYNC;
	return NAME_OK;
}

const char *
pgws_event_name_problem(const char *name)
{
	return name_problem_text[name_problem(name, strlen(name))];
}

#define NAME_RULE_DETAIL \
	"An event name is a lower-case letter followed by lower-case letters, digits and underscores, at most %d bytes."

/*
 * Raise an error unless name[0 .. len), in the database's encoding, may
 * name an event that is not one of the document's: spelled as an event
 * name (ERRCODE_INVALID_PARAMETER_VALUE), neither one of the eleven nor
 * one of pg_ws's own (ERRCODE_RESERVED_NAME).
 */
void
pgws_check_custom_event_name(const char *name, size_t len)
{
	NameProblem problem = name_problem(name, len);

	switch (problem)
	{
		case NAME_OK:
			return;
		case NAME_BAD_START:
		case NAME_BAD_CHAR:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 len == 0 ?
					 errmsg("pg_ws event name must not be empty") :
					 errmsg("invalid pg_ws event name \"%.*s\"", (int) len, name),
					 errdetail(NAME_RULE_DETAIL, PGWS_EVENT_NAME_MAXLEN)));
			break;
		case NAME_TOO_LONG:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pg_ws event name is too long (%zu bytes)", len),
					 errdetail(NAME_RULE_DETAIL, PGWS_EVENT_NAME_MAXLEN)));
			break;
		case NAME_DOCUMENT:
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("pg_ws event name \"%.*s\" is reserved for the event document",
							(int) len, name),
					 errdetail("%s", name_problem_text[problem]),
					 errhint("Choose a name of your own, such as \"app_%.*s\".",
							 (int) len, name)));
			break;
		case NAME_PG_WS:
		case NAME_RESYNC:
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("pg_ws event name \"%.*s\" is reserved", (int) len, name),
					 errdetail("%s", name_problem_text[problem]),
					 errhint("Choose another name.")));
			break;
	}
}

/* ------------------------------------------------------------ patterns */

/*
 * How a set keeps the patterns for names beyond the document's: in one
 * array, the names sorted first, then the prefixes sorted, each a fixed
 * slot of 64 bytes, with nothing that another pattern already covers (a
 * name or a prefix a shorter prefix takes).  A name is then taken when it
 * is among the names, found by binary search, or when the greatest prefix
 * not above it is a prefix of it: if any prefix p of the name is in the
 * set, no prefix q of the set lies between p and the name (q is no
 * extension of p, so it differs from p, and so from the name, at a byte
 * below p's length, where it is greater), so p is that greatest one.
 * Matching costs about 2 log2(n) comparisons of at most 63 bytes instead
 * of n: with 64 long patterns, about 12 instead of 64, 25 ns per event and
 * subscriber instead of 300 (bench/filter_bench.c).  The slots cost a
 * filter of 64 patterns 4 kB, about what 1.2's strings did for long ones.
 */

/* a pattern's text against name[0 .. len), bytewise, the shorter first */
static inline int
pattern_cmp(const PgWsEventPattern *p, const char *name, size_t len)
{
	int			r;

	/* most differ at the first byte: no call for them */
	if (p->len > 0 && len > 0 && p->text[0] != name[0])
		return (unsigned char) p->text[0] - (unsigned char) name[0];
	r = memcmp(p->text, name, Min((size_t) p->len, len));
	if (r != 0)
		return r;
	return (p->len > len) - (p->len < len);
}

/* is the pattern's text a prefix of name[0 .. len)? */
static inline bool
pattern_prefixes(const PgWsEventPattern *p, const char *name, size_t len)
{
	return p->len <= len && memcmp(p->text, name, p->len) == 0;
}

/* the first of patterns [lo, hi) whose text is above name (upper bound) */
static int
pattern_upper(const PgWsEventPattern *patterns, int lo, int hi,
			  const char *name, size_t len)
{
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (pattern_cmp(&patterns[mid], name, len) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Is name[0 .. len) one of the names, or does one of the prefixes take it?
 * Two binary searches, one comparison (at most one memcmp) a step.  The
 * prefix search looks for the greatest prefix not above the name, which
 * it compares on its way; it can stop at the first prefix it meets that
 * is the name's (the only one: no prefix of the set is another's).
 */
static bool
set_takes(const PgWsEventSet *set, const char *name, size_t len)
{
	const PgWsEventPattern *patterns = set->patterns;
	int			lo = 0;
	int			hi = set->nnames;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			r = pattern_cmp(&patterns[mid], name, len);

		if (r == 0)
			return true;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}

	lo = set->nnames;
	hi = set->npatterns;
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		const PgWsEventPattern *p = &patterns[mid];
		int			r;

		if (p->len > 0 && len > 0 && p->text[0] != name[0])
			r = (unsigned char) p->text[0] - (unsigned char) name[0];
		else if ((r = memcmp(p->text, name, Min((size_t) p->len, len))) == 0)
		{
			if (p->len <= len)
				return true;	/* the name begins with the prefix */
			r = 1;				/* the prefix is the longer: above */
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* insert text[0 .. len) at position at of the set's array */
static void
set_insert(PgWsEventSet *set, int at, const char *text, size_t len)
{
	PgWsEventPattern *p;

	if (set->npatterns == set->capacity)
	{
		set->capacity = set->capacity == 0 ? 4 : set->capacity * 2;
		set->patterns = set->patterns == NULL ?
			palloc(set->capacity * sizeof(PgWsEventPattern)) :
			repalloc(set->patterns, set->capacity * sizeof(PgWsEventPattern));
	}
	p = &set->patterns[at];
	memmove(p + 1, p, (set->npatterns - at) * sizeof(PgWsEventPattern));
	p->len = (uint8) len;
	memcpy(p->text, text, len);
	set->npatterns++;
}

/* remove the patterns of [lo, hi) that the prefix stem[0 .. len) takes */
static int
set_remove_taken(PgWsEventSet *set, int lo, int hi, const char *stem, size_t len)
{
	int			kept = lo;
	int			removed;
	int			i;

	for (i = lo; i < hi; i++)
	{
		const PgWsEventPattern *p = &set->patterns[i];

		if (p->len < len || memcmp(p->text, stem, len) != 0)
			set->patterns[kept++] = *p;
	}
	removed = hi - kept;
	memmove(&set->patterns[kept], &set->patterns[hi],
			(set->npatterns - hi) * sizeof(PgWsEventPattern));
	set->npatterns -= removed;
	return removed;
}

/* a set that takes every event (all) or none, holding no pattern */
void
pgws_event_set_init(PgWsEventSet *set, bool all)
{
	set->all = all;
	set->mask = all ? PGWS_ALL_EVENTS : 0;
	set->npatterns = 0;
	set->nnames = 0;
	set->capacity = 0;
	set->patterns = NULL;
}

/*
 * Add one pattern, pattern[0 .. len), to a set: an event name, a prefix
 * of one followed by '*', or "*".  A '*' anywhere but at the end is
 * malformed.  A pattern spelled so that no event name could match it
 * (Client_*, a-b, an empty one) adds nothing: the caller decides whether
 * that is an error (?events=, where it is surely a mistake) or not (a
 * token's claim, which may have been minted for another version).  A
 * pattern the set takes already adds nothing either, and a prefix drops
 * the patterns it takes: the set takes the same names either way.  The
 * patterns kept for names beyond the document's are allocated in the
 * context of the set's first pattern, or CurrentMemoryContext.
 */
PgWsPatternResult
pgws_event_set_add(PgWsEventSet *set, const char *pattern, size_t len)
{
	bool		prefix = len > 0 && pattern[len - 1] == '*';
	size_t		stem = prefix ? len - 1 : len;
	int			kind;
	int			at;

	if (memchr(pattern, '*', stem) != NULL)
		return PGWS_PATTERN_MALFORMED;
	if (prefix && stem == 0)
	{
		set->all = true;
		set->mask = PGWS_ALL_EVENTS;
		return PGWS_PATTERN_ALL;
	}
	/* a prefix is spelled as a name is: it may be the whole name */
	if (!pgws_event_name_valid(pattern, stem))
		return PGWS_PATTERN_NO_NAME;

	for (kind = 0; kind < PGWS_NUM_EVENT_KINDS; kind++)
	{
		const char *name = pgws_event_names[kind];
		size_t		name_len = strlen(name);

		if (prefix ? name_len >= stem && memcmp(name, pattern, stem) == 0 :
			name_len == len && memcmp(name, pattern, len) == 0)
			set->mask |= 1U << kind;
	}

	/* no other event has a document event's name: the mask says it all */
	if (!prefix && pgws_document_event_kind(pattern, len) >= 0)
		return PGWS_PATTERN_OK;

	/* taken already: a name of the set, or a prefix of the set takes it */
	at = pattern_upper(set->patterns, set->nnames, set->npatterns, pattern, stem);
	if (at > set->nnames && pattern_prefixes(&set->patterns[at - 1], pattern, stem))
		return PGWS_PATTERN_OK;
	if (!prefix)
	{
		at = pattern_upper(set->patterns, 0, set->nnames, pattern, len);
		if (at > 0 && pattern_cmp(&set->patterns[at - 1], pattern, len) == 0)
			return PGWS_PATTERN_OK;
		set_insert(set, at, pattern, len);
		set->nnames++;
		return PGWS_PATTERN_OK;
	}

	/* a new prefix: the names and prefixes it takes go */
	set->nnames -= set_remove_taken(set, 0, set->nnames, pattern, stem);
	(void) set_remove_taken(set, set->nnames, set->npatterns, pattern, stem);
	at = pattern_upper(set->patterns, set->nnames, set->npatterns, pattern, stem);
	set_insert(set, at, pattern, stem);
	return PGWS_PATTERN_OK;
}

/* *dst = *src, with dst's own copy of the patterns in CurrentMemoryContext */
void
pgws_event_set_copy(PgWsEventSet *dst, const PgWsEventSet *src)
{
	*dst = *src;
	dst->capacity = src->npatterns;
	dst->patterns = NULL;
	if (src->npatterns > 0)
	{
		dst->patterns = palloc(src->npatterns * sizeof(PgWsEventPattern));
		memcpy(dst->patterns, src->patterns,
			   src->npatterns * sizeof(PgWsEventPattern));
	}
}

/* free what a set holds; it then takes nothing */
void
pgws_event_set_free(PgWsEventSet *set)
{
	if (set->patterns != NULL)
		pfree(set->patterns);
	pgws_event_set_init(set, false);
}

/*
 * Does one of the set's patterns take the event called name[0 .. len), an
 * event that is not one of the document's?  Any bytes may be given: a
 * name no pattern could match is simply not taken.
 */
bool
pgws_event_set_matches_name(const PgWsEventSet *set, const char *name,
							size_t len)
{
	return set->npatterns > 0 && set_takes(set, name, len);
}
