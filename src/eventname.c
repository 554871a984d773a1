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
 * Names.  The event document names eleven events (render.c).  Any other
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

/* a set that takes every event (all) or none, holding no pattern */
void
pgws_event_set_init(PgWsEventSet *set, bool all)
{
	set->all = all;
	set->mask = all ? PGWS_ALL_EVENTS : 0;
	set->npatterns = 0;
	set->patterns_len = 0;
	set->patterns = NULL;
}

/*
 * Add one pattern, pattern[0 .. len), to a set: an event name, a prefix
 * of one followed by '*', or "*".  A '*' anywhere but at the end is
 * malformed.  A pattern spelled so that no event name could match it
 * (Client_*, a-b, an empty one) adds nothing: the caller decides whether
 * that is an error (?events=, where it is surely a mistake) or not (a
 * token's claim, which may have been minted for another version).  The
 * patterns kept for names beyond the document's are allocated in the
 * context of the set's first pattern, or CurrentMemoryContext.
 */
PgWsPatternResult
pgws_event_set_add(PgWsEventSet *set, const char *pattern, size_t len)
{
	bool		prefix = len > 0 && pattern[len - 1] == '*';
	size_t		stem = prefix ? len - 1 : len;
	int			kind;

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

	if (set->patterns == NULL)
		set->patterns = palloc(len + 1);
	else
		set->patterns = repalloc(set->patterns, set->patterns_len + len + 1);
	memcpy(set->patterns + set->patterns_len, pattern, len);
	set->patterns[set->patterns_len + len] = '\0';
	set->patterns_len += len + 1;
	set->npatterns++;
	return PGWS_PATTERN_OK;
}

/* *dst = *src, with dst's own copy of the patterns in CurrentMemoryContext */
void
pgws_event_set_copy(PgWsEventSet *dst, const PgWsEventSet *src)
{
	*dst = *src;
	if (src->patterns != NULL)
	{
		dst->patterns = palloc(src->patterns_len);
		memcpy(dst->patterns, src->patterns, src->patterns_len);
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
	const char *p = set->patterns;
	int			i;

	for (i = 0; i < set->npatterns; i++)
	{
		size_t		plen = strlen(p);

		if (p[plen - 1] == '*' ?
			len >= plen - 1 && memcmp(name, p, plen - 1) == 0 :
			len == plen && memcmp(name, p, len) == 0)
			return true;
		p += plen + 1;
	}
	return false;
}
