/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  Who may subscribe: the anonymous default (which hosts and origins a
 *	  request without a token may come with), pg_ws.allowed_origins,
 *	  pg_ws.auth and the token policy (where a token travels, exp with
 *	  leeway, nbf, aud, iss, and the events claim that narrows what a
 *	  subscriber receives).  Runs in the worker only; see auth.h for what
 *	  the transport must do.
 *
 * This file owns decisions and the worker's copy of the keys.  It must not
 * touch sockets, parse HTTP or libwebsockets (the transport hands it
 * header values), verify signatures (jwt.c), or log per request: the
 * transport logs refusals, rate-limited, with the reasons returned here.
 * No reason and no log line ever contains a token or the secret.
 *
 * Authentication decides who receives, never what is queued: a grant is a
 * filter over events the worker has anyway.
 *
 * Per-request allocations go to a context reset when the decision is made,
 * so a subscriber's upgrade leaves nothing behind but its grant.
 *
 * src/auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "auth.h"
#include "jwt.h"
#include "server.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>

#include <json-c/json.h>

#include "utils/memutils.h"
#include "utils/varlena.h"

/* an auth message is a small JSON object; anything larger is not one */
#define AUTH_MESSAGE_MAX_LEN	(PGWS_JWT_MAX_TOKEN_LEN + 1024)

/* more patterns than this in an events claim is not a subscription */
#define MAX_EVENT_PATTERNS		64

/* reasons; static, so that the transport may keep the pointer */
static const char reason_no_token[] = "token required";
static const char reason_malformed[] = "token is malformed";
static const char reason_claims[] = "token claims are malformed";
static const char reason_events[] = "token events claim is malformed";
static const char reason_filters[] = "token filters claim is malformed";
static const char reason_no_exp[] = "token has no expiry (exp)";
static const char reason_expired[] = "token expired";
static const char reason_not_yet[] = "token is not yet valid";
static const char reason_audience[] = "token audience is not accepted";
static const char reason_issuer[] = "token issuer is not accepted";
static const char reason_origin[] = "origin is not allowed";
static const char reason_own_origin[] = "origin is not allowed: without a token only pg_ws's own pages may subscribe (list other origins in pg_ws.allowed_origins)";
static const char reason_host[] = "host is not allowed: without a token pg_ws answers only requests for localhost, 127.x.x.x or [::1] (see pg_ws.allow_anonymous)";

/* the keys, as pgws_auth_reload() last read them */
static bool loaded = false;
static StringInfoData secret;	/* in TopMemoryContext; wiped when replaced */
static bool have_secret = false;
static struct evp_pkey_st *public_key = NULL;
static const char *public_key_alg = NULL;

static MemoryContext auth_context = NULL;

/* ------------------------------------------------------------------- keys */

/*
 * (Re)load the secret and the public key from the settings now in force.
 * What cannot be loaded is dropped, not kept from before: an operator who
 * removes a key expects its tokens to stop working.
 */
void
pgws_auth_reload(void)
{
	MemoryContext old;
	PgWsSecretStatus st;
	const char *alg = NULL;
	char	   *why = NULL;

	if (auth_context == NULL)
		auth_context = AllocSetContextCreate(TopMemoryContext, "pg_ws auth",
											 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (secret.data == NULL)
		initStringInfo(&secret);
	/* the secret grows where it was made; the rest is reset below */
	MemoryContextSwitchTo(auth_context);

	st = pgws_jwt_load_secret(&secret);
	have_secret = (st == PGWS_SECRET_OK);
	if (st == PGWS_SECRET_UNREADABLE)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("pg_ws could not read pg_ws.jwt_secret_file \"%s\": %m",
						pgws_jwt_secret_file),
				 errdetail("HS256 tokens are refused until it can be read and the configuration is reloaded.")));
	else if (st == PGWS_SECRET_TOO_SHORT)
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_ws.jwt_secret_file \"%s\" holds fewer than %d bytes",
						pgws_jwt_secret_file, PGWS_JWT_MIN_SECRET_LEN),
				 errdetail("HS256 tokens are refused until it holds a longer secret and the configuration is reloaded.")));
	if (pgws_jwt_secret_file[0] != '\0' && pgws_jwt_secret[0] != '\0')
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_ws.jwt_secret is ignored because pg_ws.jwt_secret_file is set")));

	if (public_key != NULL)
		pgws_jwt_free_public_key(public_key);
	public_key = NULL;
	public_key_alg = NULL;
	if (pgws_jwt_public_key_file[0] != '\0')
	{
		public_key = pgws_jwt_read_public_key(pgws_jwt_public_key_file, &alg, &why);
		if (public_key == NULL)
		{
			ereport(LOG,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("pg_ws cannot use pg_ws.jwt_public_key_file \"%s\": %s",
							pgws_jwt_public_key_file, why),
					 errdetail("RS256 and ES256 tokens are refused until it holds a usable key and the configuration is reloaded.")));
		}
		public_key_alg = alg;
	}

	if (pgws_auth_mode == PGWS_AUTH_JWT)
	{
		if (!have_secret && public_key == NULL)
			ereport(LOG,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("pg_ws.auth is jwt but pg_ws has no usable key: every subscriber will be refused"),
					 errhint("Set pg_ws.jwt_secret_file (or pg_ws.jwt_secret) for HS256 tokens, or pg_ws.jwt_public_key_file for RS256 or ES256 tokens, and reload the configuration.")));
		else
			ereport(LOG,
					(errmsg("pg_ws requires subscribers' tokens signed with %s%s%s",
							have_secret ? "HS256" : "",
							have_secret && public_key ? " or " : "",
							public_key ? public_key_alg : "")));

		/*
		 * A browser sends cookies with a WebSocket upgrade whichever site's
		 * page opens it: only the Origin check stops another site from
		 * subscribing as the user.
		 */
		if (pgws_jwt_cookie[0] != '\0' && pgws_allowed_origins[0] == '\0')
			ereport(WARNING,
					(errmsg("pg_ws.jwt_cookie is set but pg_ws.allowed_origins is empty"),
					 errdetail("A page on any web site a user visits can subscribe with that user's cookie."),
					 errhint("List the origins of your application's pages in pg_ws.allowed_origins.")));
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(auth_context);
	loaded = true;
}

/* ------------------------------------------------------- hosts, origins */

/*
 * Is authority (host[:port], syntax checked by the transport) a loopback
 * name?  Literal addresses as browsers write them (127.0.0.1, [::1]; any
 * 127.x.x.x, and IPv4-mapped ones), "localhost" (with or without its
 * final dot: RFC 6761 6.3 keeps it off DNS, so no other site can take
 * it), and, when listen_names, the names of pg_ws.listen_addresses (the
 * worker listens there only because they resolve to loopback addresses;
 * a site of someone else's cannot be one of them).
 */
static bool
host_is_loopback(const char *authority, bool listen_names)
{
	char		name[256];
	size_t		len;

	if (authority[0] == '[')
	{
		const char *close = strchr(authority, ']');
		struct in6_addr a6;

		if (close == NULL || (len = close - authority - 1) >= sizeof(name))
			return false;
		memcpy(name, authority + 1, len);
		name[len] = '\0';
		if (inet_pton(AF_INET6, name, &a6) != 1)
			return false;
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
			(IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	}
	len = strcspn(authority, ":");
	if (len == 0 || len >= sizeof(name))
		return false;
	memcpy(name, authority, len);
	name[len] = '\0';
	{
		struct in_addr a4;

		if (inet_pton(AF_INET, name, &a4) == 1)
			return (ntohl(a4.s_addr) >> 24) == 127;
	}
	if (name[len - 1] == '.')
		name[--len] = '\0';
	if (pg_strcasecmp(name, "localhost") == 0)
		return true;
	if (listen_names && len > 0)
	{
		char	   *raw = pstrdup(pgws_listen_addresses);
		List	   *list;
		ListCell   *lc;
		bool		found = false;

		if (SplitGUCList(raw, ',', &list))
			foreach(lc, list)
			{
				const char *listen = (const char *) lfirst(lc);

				if (strcmp(listen, "*") != 0 && pg_strcasecmp(listen, name) == 0)
				{
					found = true;
					break;
				}
			}
		list_free(list);
		pfree(raw);
		return found;
	}
	return false;
}

/*
 * No name at all (HTTP/1.0) is not a browser, whose requests a web page
 * can make, and so asks for this machine as much as a loopback name does.
 */
bool
pgws_auth_local_host(const PgWsAuthRequest *req)
{
	return req->host == NULL ||
		host_is_loopback(req->host, req->listen_names_are_loopback);
}

bool
pgws_auth_anonymous_host(const PgWsAuthRequest *req, const char **reason)
{
	/* with tokens, or anonymous by choice, any name may be asked for */
	if (pgws_auth_mode != PGWS_AUTH_NONE || pgws_allow_anonymous)
		return true;
	if (pgws_auth_local_host(req))
		return true;
	*reason = reason_host;
	return false;
}

/*
 * May a browser on this origin subscribe?  Origins are compared whole and
 * case-insensitively (scheme and host are case-insensitive; browsers send
 * them lower case anyway).  The Origin header is what stops another web
 * site from subscribing with the cookies of a user who visits it, and,
 * without a token, from reading every event through the user's browser.
 *
 * pg_ws.allowed_origins, when set, lists them.  Otherwise, without tokens,
 * only the server's own origin: a page pg_ws served (the console) or one
 * served from the very host and port the request is for, which is pg_ws
 * or the proxy in front of it; with tokens, any origin (the token decides).
 */
static bool
origin_allowed(const char *origin, const char *host)
{
	char	   *raw;
	List	   *list;
	ListCell   *lc;
	bool		found = false;
	size_t		len;

	while (*origin == ' ' || *origin == '\t')
		origin++;
	len = strlen(origin);
	while (len > 0 && (origin[len - 1] == ' ' || origin[len - 1] == '\t'))
		len--;

	if (pgws_allowed_origins[0] == '\0')
	{
		size_t		scheme;

		if (pgws_auth_mode != PGWS_AUTH_NONE)
			return true;
		if (host == NULL)
			return false;
		if (pg_strncasecmp(origin, "http://", 7) == 0)
			scheme = 7;
		else if (pg_strncasecmp(origin, "https://", 8) == 0)
			scheme = 8;
		else
			return false;		/* "null" too: a sandboxed or file: page */
		return len - scheme == strlen(host) &&
			pg_strncasecmp(origin + scheme, host, len - scheme) == 0;
	}

	raw = pstrdup(pgws_allowed_origins);
	if (!SplitGUCList(raw, ',', &list))
		return false;			/* the check hook refused this already */
	foreach(lc, list)
	{
		const char *allowed = (const char *) lfirst(lc);

		if (strlen(allowed) == len && pg_strncasecmp(allowed, origin, len) == 0)
		{
			found = true;
			break;
		}
	}
	return found;
}

/* ------------------------------------------------------------ finding it */

/* percent-decode s[0..len) ('+' is a space, as in forms); NULL if invalid */
static char *
percent_decode(const char *s, size_t len)
{
	char	   *out = palloc(len + 1);
	size_t		n = 0;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		if (s[i] == '%')
		{
			if (i + 2 >= len || pgws_hex_digit(s[i + 1]) < 0 || pgws_hex_digit(s[i + 2]) < 0)
				return NULL;
			out[n++] = (char) (pgws_hex_digit(s[i + 1]) * 16 + pgws_hex_digit(s[i + 2]));
			i += 2;
		}
		else if (s[i] == '+')
			out[n++] = ' ';
		else
			out[n++] = s[i];
	}
	out[n] = '\0';
	/* a NUL would cut the token short where it is compared as a C string */
	if (memchr(out, '\0', n) != NULL)
		return NULL;
	return out;
}

/*
 * The token of a request, looked for in this order: Authorization: Bearer,
 * the cookie named by pg_ws.jwt_cookie, the query parameter "token".  The
 * first place that has one is the token, valid or not: a bad bearer token
 * is not rescued by a good cookie.  NULL, with *reason, when there is none
 * or it cannot be decoded.
 */
static char *
find_token(const PgWsAuthRequest *req, const char **reason)
{
	*reason = reason_no_token;

	/* RFC 6750, 2.1: the scheme is case-insensitive */
	if (req->authorization != NULL)
	{
		const char *p = req->authorization;

		while (*p == ' ' || *p == '\t')
			p++;
		if (pg_strncasecmp(p, "Bearer", 6) == 0 &&
			(p[6] == ' ' || p[6] == '\t' || p[6] == '\0'))
		{
			size_t		len;

			p += 6;
			while (*p == ' ' || *p == '\t')
				p++;
			len = strlen(p);
			while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
				len--;
			return pnstrdup(p, len);
		}
		/* another scheme is someone else's (a proxy's Basic): look on */
	}

	/* RFC 6265, 5.4: name=value pairs separated by "; " */
	if (req->cookie != NULL && pgws_jwt_cookie[0] != '\0')
	{
		size_t		name_len = strlen(pgws_jwt_cookie);
		const char *p = req->cookie;

		while (*p != '\0')
		{
			const char *end = strchr(p, ';');
			const char *eq;

			if (end == NULL)
				end = p + strlen(p);
			while (p < end && (*p == ' ' || *p == '\t'))
				p++;
			eq = memchr(p, '=', end - p);
			if (eq != NULL && (size_t) (eq - p) == name_len &&
				memcmp(p, pgws_jwt_cookie, name_len) == 0)
			{
				const char *v = eq + 1;
				const char *vend = end;

				while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
					vend--;
				if (vend - v >= 2 && *v == '"' && vend[-1] == '"')
				{
					v++;
					vend--;
				}
				return pnstrdup(v, vend - v);
			}
			p = *end ? end + 1 : end;
		}
	}

	if (req->query != NULL)
	{
		bool		malformed;
		char	   *token = pgws_query_param(req->query, "token", &malformed);

		if (malformed)
			*reason = reason_malformed;
		return token;
	}
	return NULL;
}

/*
 * The next parameter named name in the query string from *p on: where its
 * value starts (or NULL without '='), and its end; *p moves past it.  NULL
 * when there is none.
 */
static const char *
next_param(const char **p, const char *name, const char **value,
		   const char **end)
{
	while (**p != '\0')
	{
		const char *start = *p;
		const char *e = strchr(start, '&');
		const char *eq;
		char	   *pname;

		if (e == NULL)
			e = start + strlen(start);
		*p = *e ? e + 1 : e;
		eq = memchr(start, '=', e - start);
		pname = percent_decode(start, (eq ? eq : e) - start);
		if (pname != NULL && strcmp(pname, name) == 0)
		{
			*value = eq ? eq + 1 : NULL;
			*end = e;
			return start;
		}
	}
	return NULL;
}

/*
 * The value of a query parameter, percent-decoded ("" when it has no '='),
 * or NULL when absent or, with *malformed set, when the first parameter of
 * that name cannot be decoded.  http.c reads ?since= and ?epoch= with it.
 */
char *
pgws_query_param(const char *query, const char *name, bool *malformed)
{
	const char *p = query;
	const char *value;
	const char *end;
	char	   *decoded;

	*malformed = false;
	if (next_param(&p, name, &value, &end) == NULL)
		return NULL;
	decoded = value ? percent_decode(value, end - value) : pstrdup("");
	*malformed = decoded == NULL;
	return decoded;
}

/* does the query name parameter name more than once? */
bool
pgws_query_param_repeated(const char *query, const char *name)
{
	const char *p = query;
	const char *value;
	const char *end;

	return next_param(&p, name, &value, &end) != NULL &&
		next_param(&p, name, &value, &end) != NULL;
}

/* ------------------------------------------------------------------ claims */

/*
 * A NumericDate (RFC 7519, 2): a JSON number of seconds, possibly with a
 * fraction, which is dropped.  Far-off values are clamped so that adding
 * the leeway cannot overflow.
 */
static bool
numeric_date(struct json_object *v, int64 *out)
{
	const int64 limit = INT64CONST(1) << 60;

	if (json_object_is_type(v, json_type_int))
	{
		int64		i = json_object_get_int64(v);

		*out = Max(Min(i, limit), -limit);
		return true;
	}
	if (json_object_is_type(v, json_type_double))
	{
		double		d = json_object_get_double(v);

		if (!isfinite(d))
			return false;
		d = floor(d);
		*out = d >= (double) limit ? limit : d <= (double) -limit ? -limit : (int64) d;
		return true;
	}
	return false;
}

static bool
is_string(struct json_object *v)
{
	return json_object_is_type(v, json_type_string) &&
		(size_t) json_object_get_string_len(v) == strlen(json_object_get_string(v));
}

/* aud (RFC 7519, 4.1.3): a string or an array of strings */
static bool
audience_valid(struct json_object *aud)
{
	size_t		i;

	if (is_string(aud))
		return true;
	if (!json_object_is_type(aud, json_type_array))
		return false;
	for (i = 0; i < json_object_array_length(aud); i++)
		if (!is_string(json_object_array_get_idx(aud, i)))
			return false;
	return true;
}

static bool
audience_contains(struct json_object *aud, const char *want)
{
	size_t		i;

	if (is_string(aud))
		return strcmp(json_object_get_string(aud), want) == 0;
	for (i = 0; i < json_object_array_length(aud); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(aud, i)), want) == 0)
			return true;
	return false;
}

/*
 * The events claim: an array of patterns (eventname.c): event names,
 * prefixes ending in '*', "*".  The document's events and every other
 * name (pg_ws_send()'s) alike: a claim that names only document events
 * allows no other.  A pattern no event name can match (Client_Create)
 * matches nothing rather than refusing the token, so that a token minted
 * for another version of pg_ws still works here; a misplaced '*' is
 * malformed.
 */
static bool
events_grant(struct json_object *events, PgWsGrant *grant)
{
	size_t		n;
	size_t		i;

	if (!json_object_is_type(events, json_type_array))
		return false;
	n = json_object_array_length(events);
	if (n > MAX_EVENT_PATTERNS)
		return false;
	pgws_event_set_init(&grant->events, false);
	for (i = 0; i < n; i++)
	{
		struct json_object *v = json_object_array_get_idx(events, i);

		if (!is_string(v) ||
			pgws_event_set_add(&grant->events, json_object_get_string(v),
							   json_object_get_string_len(v)) ==
			PGWS_PATTERN_MALFORMED)
			return false;
	}
	return true;
}

/* entries a filters claim may have, as patterns an events claim */
#define MAX_FILTER_CLAIMS 64

/* a filters claim's pattern: "*", a name, or a name's prefix and '*' */
static bool
filter_pattern_valid(const char *pattern, size_t len)
{
	if (len == 1 && pattern[0] == '*')
		return true;
	if (len > 0 && pattern[len - 1] == '*')
		len--;
	return len > 0 && pgws_event_name_valid(pattern, len);
}

/*
 * Build grant's filters, in a new context under the current one, from
 * patterns and texts (n of each) that have been checked: parsing them
 * again cannot fail.
 */
static void
build_filters(PgWsGrant *grant, int n, char *const *patterns,
			  char *const *texts)
{
	MemoryContext cxt;
	MemoryContext old;

	grant->nfilters = 0;
	grant->filters = NULL;
	grant->filters_cxt = NULL;
	if (n == 0)
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_ws token filters",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	grant->filters = palloc0(n * sizeof(PgWsGrantFilter));
	for (int i = 0; i < n; i++)
	{
		PgWsGrantFilter *f = &grant->filters[i];
		size_t		len = strlen(patterns[i]);

		f->pattern = pstrdup(patterns[i]);
		f->prefix = patterns[i][len - 1] == '*';
		f->stem_len = f->prefix ? len - 1 : len;
		f->text = pstrdup(texts[i]);
		if (pgws_value_filter_parse(f->text, &f->filter) != NULL)
			elog(ERROR, "a checked pg_ws filter did not parse again");
	}
	grant->nfilters = n;
	grant->filters_cxt = cxt;
	MemoryContextSwitchTo(old);
}

/*
 * The filters claim: an object whose keys are event patterns and whose
 * values are filters (?filter='s language, filter.c):
 *
 *		"filters": {"client_visit_*": "device_id=in.(cam-7,cam-8)",
 *					"employee_attendance*": "device_id=in.(cam-7,cam-8)"}
 *
 * With it, an event is allowed only when the most specific of these
 * patterns that matches its name (the name itself, then the longest
 * prefix, then "*") has a filter that holds for its row; events no
 * pattern matches are never sent.  It narrows what the events claim
 * allows.  Checked here; built into grant by decide_token.
 */
static bool
filters_claim_valid(struct json_object *filters)
{
	int			n = 0;
	struct json_object_iter it;

	if (!json_object_is_type(filters, json_type_object))
		return false;
	json_object_object_foreachC(filters, it)
	{
		PgWsValueFilter *parsed;

		if (++n > MAX_FILTER_CLAIMS ||
			!filter_pattern_valid(it.key, strlen(it.key)) ||
			!is_string(it.val) ||
			pgws_value_filter_parse(json_object_get_string(it.val), &parsed) != NULL)
			return false;
	}
	return true;
}

void
pgws_grant_copy_filters(PgWsGrant *dst, const PgWsGrant *src)
{
	char	  **patterns = palloc(Max(src->nfilters, 1) * sizeof(char *));
	char	  **texts = palloc(Max(src->nfilters, 1) * sizeof(char *));

	for (int i = 0; i < src->nfilters; i++)
	{
		patterns[i] = src->filters[i].pattern;
		texts[i] = src->filters[i].text;
	}
	build_filters(dst, src->nfilters, patterns, texts);
	pfree(patterns);
	pfree(texts);
}

bool
pgws_grant_filter_allows(const PgWsGrant *grant, int kind, const char *name,
						 size_t name_len, const char *json, uint32 len,
						 const char *row, uint32 row_len)
{
	const PgWsGrantFilter *best = NULL;

	if (grant->nfilters == 0)
		return true;
	if (kind >= 0)
	{
		name = pgws_event_names[kind];
		name_len = strlen(name);
	}
	if (name == NULL)
		return false;
	for (int i = 0; i < grant->nfilters; i++)
	{
		const PgWsGrantFilter *f = &grant->filters[i];
		bool		matches = f->prefix ?
			(name_len >= f->stem_len && memcmp(name, f->pattern, f->stem_len) == 0) :
			(name_len == f->stem_len && memcmp(name, f->pattern, name_len) == 0);

		/* a name beats every prefix, a longer prefix a shorter one */
		if (matches &&
			(best == NULL ||
			 (best->prefix && (!f->prefix || f->stem_len > best->stem_len))))
			best = f;
	}
	return best != NULL &&
		pgws_value_filter_matches(best->filter, json, len, row, row_len);
}

const PgWsValueFilter *
pgws_grant_filter_at(const PgWsGrant *grant, int i)
{
	Assert(i >= 0 && i < grant->nfilters);
	return grant->filters[i].filter;
}

/* sub, truncated and with only printable ASCII, safe for a log line */
static void
copy_subject(struct json_object *sub, PgWsGrant *grant)
{
	const char *s = json_object_get_string(sub);
	size_t		i;

	for (i = 0; i < sizeof(grant->subject) - 1 && s[i] != '\0'; i++)
	{
		unsigned char c = (unsigned char) s[i];

		grant->subject[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
	}
	grant->subject[i] = '\0';
}

/*
 * The policy over a verified token's claims.  exp is required: a
 * connection lives as long as its token, so a token without an end would
 * make one that never has to prove itself again.  aud, when present, must
 * name us even if pg_ws.jwt_audience is not set (RFC 7519, 4.1.3), so that
 * a token minted for another service with a shared key is not accepted
 * here.
 */
static bool
check_claims(struct json_object *claims, int64 now, PgWsGrant *grant,
			 const char **reason)
{
	struct json_object *v;
	struct json_object *aud = NULL;
	int64		exp;
	int64		nbf = 0;
	int64		iat;
	bool		has_nbf = false;
	int64		leeway = pgws_jwt_leeway_s;

	memset(grant, 0, sizeof(*grant));
	pgws_event_set_init(&grant->events, true);

	/* the types first: a malformed claim is malformed whatever the time */
	if (!json_object_object_get_ex(claims, "exp", &v))
	{
		*reason = reason_no_exp;
		return false;
	}
	if (!numeric_date(v, &exp) ||
		(json_object_object_get_ex(claims, "nbf", &v) &&
		 !(has_nbf = numeric_date(v, &nbf))) ||
		(json_object_object_get_ex(claims, "iat", &v) && !numeric_date(v, &iat)) ||
		(json_object_object_get_ex(claims, "sub", &v) && !is_string(v)) ||
		(json_object_object_get_ex(claims, "iss", &v) && !is_string(v)) ||
		(json_object_object_get_ex(claims, "aud", &aud) && !audience_valid(aud)))
	{
		*reason = reason_claims;
		return false;
	}
	if (json_object_object_get_ex(claims, "events", &v) && !events_grant(v, grant))
	{
		*reason = reason_events;
		return false;
	}
	if (json_object_object_get_ex(claims, "filters", &v) &&
		!filters_claim_valid(v))
	{
		*reason = reason_filters;
		return false;
	}

	if (now > exp + leeway)
	{
		*reason = reason_expired;
		return false;
	}
	if (has_nbf && now + leeway < nbf)
	{
		*reason = reason_not_yet;
		return false;
	}
	if (pgws_jwt_issuer[0] != '\0' &&
		!(json_object_object_get_ex(claims, "iss", &v) &&
		  strcmp(json_object_get_string(v), pgws_jwt_issuer) == 0))
	{
		*reason = reason_issuer;
		return false;
	}
	if (pgws_jwt_audience[0] != '\0' ?
		!(aud != NULL && audience_contains(aud, pgws_jwt_audience)) :
		aud != NULL)
	{
		*reason = reason_audience;
		return false;
	}

	grant->authenticated = true;
	grant->expires_at = exp + leeway;
	if (json_object_object_get_ex(claims, "sub", &v))
		copy_subject(v, grant);
	return true;
}

/*
 * Verify a token and apply the policy; *grant is set only on success, its
 * event patterns allocated in keep (the work is done in auth_context,
 * which is reset after every decision).
 */
static bool
decide_token(const char *token, size_t len, int64 now, PgWsGrant *grant,
			 MemoryContext keep, const char **reason)
{
	PgWsJwtKeys keys;
	struct json_object *claims;
	PgWsJwtStatus st;
	PgWsGrant g;
	bool		ok;

	if (len == 0)
	{
		*reason = reason_malformed;
		return false;
	}
	keys.secret = have_secret ? (const unsigned char *) secret.data : NULL;
	keys.secret_len = have_secret ? secret.len : 0;
	keys.public_key = public_key;
	st = pgws_jwt_verify(token, len, &keys, &claims);
	if (st != PGWS_JWT_OK)
	{
		*reason = pgws_jwt_status_text(st);
		return false;
	}
	ok = check_claims(claims, now, &g, reason);
	if (ok)
	{
		MemoryContext old = MemoryContextSwitchTo(keep);
		struct json_object *filters;
		int			n = 0;
		char	  **patterns = NULL;
		char	  **texts = NULL;

		*grant = g;
		pgws_event_set_copy(&grant->events, &g.events);
		if (json_object_object_get_ex(claims, "filters", &filters))
		{
			struct json_object_iter it;

			patterns = palloc(MAX_FILTER_CLAIMS * sizeof(char *));
			texts = palloc(MAX_FILTER_CLAIMS * sizeof(char *));
			json_object_object_foreachC(filters, it)
			{
				patterns[n] = it.key;
				texts[n++] = unconstify(char *, json_object_get_string(it.val));
			}
		}
		build_filters(grant, n, patterns, texts);
		MemoryContextSwitchTo(old);
	}
	json_object_put(claims);
	return ok;
}

static void
grant_everything(PgWsGrant *grant)
{
	memset(grant, 0, sizeof(*grant));
	pgws_event_set_init(&grant->events, true);
}

/* ------------------------------------------------------------- interface */

int
pgws_auth_upgrade(const PgWsAuthRequest *req, int64 now, PgWsGrant *grant,
				  const char **reason)
{
	MemoryContext old;
	int			status = 0;

	if (!loaded)
		pgws_auth_reload();
	old = MemoryContextSwitchTo(auth_context);

	/* before the token: a page on a foreign site is refused outright */
	if (!pgws_auth_anonymous_host(req, reason))
		status = 403;
	else if (req->origin != NULL && !origin_allowed(req->origin, req->host))
	{
		*reason = pgws_allowed_origins[0] == '\0' ? reason_own_origin : reason_origin;
		status = 403;
	}
	else if (pgws_auth_mode == PGWS_AUTH_NONE)
		grant_everything(grant);
	else
	{
		char	   *token = find_token(req, reason);

		if (token == NULL ||
			!decide_token(token, strlen(token), now, grant, old, reason))
			status = 401;
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(auth_context);
	return status;
}

void
pgws_auth_challenge(const char *reason, char *buf, size_t size)
{
	/* RFC 6750, 3.1: no error code when the request had no token at all */
	if (reason == reason_no_token)
		snprintf(buf, size, "Bearer realm=\"pg_ws\"");
	else
		snprintf(buf, size,
				 "Bearer realm=\"pg_ws\", error=\"invalid_token\", error_description=\"%s\"",
				 reason);
}

PgWsAuthMessageResult
pgws_auth_message(const char *msg, size_t len, int64 now, PgWsGrant *grant,
				  const char **reason)
{
	MemoryContext old;
	struct json_object *obj;
	struct json_object *token;
	PgWsAuthMessageResult result;
	PgWsEventSet replaced = grant->events;
	MemoryContext replaced_filters = grant->filters_cxt;

	if (len == 0 || len > AUTH_MESSAGE_MAX_LEN)
		return AUTH_MSG_NOT_AUTH;
	if (!loaded)
		pgws_auth_reload();
	obj = pgws_json_parse_object(msg, len);
	if (obj == NULL)
		return AUTH_MSG_NOT_AUTH;
	if (!json_object_object_get_ex(obj, "type", &token) ||
		!is_string(token) || strcmp(json_object_get_string(token), "auth") != 0)
	{
		json_object_put(obj);
		return AUTH_MSG_NOT_AUTH;
	}

	old = MemoryContextSwitchTo(auth_context);
	if (!json_object_object_get_ex(obj, "token", &token) || !is_string(token))
	{
		*reason = reason_malformed;
		result = AUTH_MSG_REJECTED;
	}
	else if (pgws_auth_mode == PGWS_AUTH_NONE)
	{
		/* everyone may subscribe: whatever the token, nothing is narrowed */
		grant_everything(grant);
		result = AUTH_MSG_ACCEPTED;
	}
	else if (decide_token(json_object_get_string(token),
						  json_object_get_string_len(token), now, grant, old,
						  reason))
		result = AUTH_MSG_ACCEPTED;
	else
		result = AUTH_MSG_REJECTED;
	json_object_put(obj);
	MemoryContextSwitchTo(old);
	MemoryContextReset(auth_context);
	/* the grant replaced held patterns and filters of its own */
	if (result == AUTH_MSG_ACCEPTED)
	{
		pgws_event_set_free(&replaced);
		if (replaced_filters != NULL)
			MemoryContextDelete(replaced_filters);
	}
	return result;
}

bool
pgws_auth_grant_current(const PgWsGrant *grant, const char **reason)
{
	if (pgws_auth_mode == PGWS_AUTH_JWT && !grant->authenticated)
	{
		*reason = reason_no_token;
		return false;
	}
	return true;
}
