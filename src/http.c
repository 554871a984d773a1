/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP/1.1 request of a new connection: reading and parsing it,
 *	  routing it, answering what is not served, the WebSocket upgrade of
 *	  /ws/ and the event stream of /events.
 *
 * This file owns what pg_ws says over HTTP.  It must not keep connections
 * (conn.c does: the bytes it answers with go through pgws_conn_finish, a
 * subscriber's first answer through pgws_conn_subscribe) nor decide who
 * may be served (it asks auth.c).  A request goes one way: its head is
 * read (bounded), parsed, routed to an endpoint (the console, /health and
 * /metrics, /ws/, /events), the endpoint decides, and the connection acts
 * on the answer.
 *
 * Every request gets a real HTTP/1.1 answer: a status line, a content
 * length and Connection: close, so that any client reports what went
 * wrong.  The request head may be at most pg_ws.max_header_size bytes
 * (431 beyond); the whole request must arrive within
 * pg_ws.handshake_timeout (conn.c), however slowly its bytes come.  GET
 * and HEAD of / are the console page while pg_ws.console serves it
 * (console.c answers them; other methods on / get 405).  Otherwise only
 * GET is served (405), only /ws/ (404), only an Upgrade to websocket with
 * version 13 (400, 426), never h2c or HTTP/2 (400, 505), and never with a
 * body (400).  The checks run in that order, then the Host and the origin
 * (403), the subprotocol (400, only "pg_ws"), the token (401), and the
 * query's since/epoch, events and filter (400; a filter field pg_ws may
 * not know yet: 503, filtercols.c), and last whether a since that reads
 * the WAL is one too many for its address (503 with Retry-After,
 * pg_ws.max_wal_resumes_per_address).  GET /health and GET /metrics are
 * metrics.c's.  Every refusal is counted and logged by its reason,
 * rate-limited (conn.c).
 *
 * GET /events (Server-Sent Events, sse.c) is decided as /ws/ is, but for
 * what is the WebSocket handshake's: no body (400), the Host and the
 * origin (403), the token (401), the query (400, 503), the WAL resumes
 * of its address (503); a reconnecting EventSource's Last-Event-ID, when
 * it sends one, says where it resumes, in place of ?since=.
 *
 * The parse follows RFC 9112 where a lenient reading would let a peer slip
 * something past a check: a NUL anywhere in the head, a missing or
 * repeated Host, a malformed Host, Content-Length or Transfer-Encoding
 * where no body may be are 400s; empty lines before the request line are
 * ignored (2.2); an absolute-form target (http://host/ws/) is routed by
 * its path and its authority stands for the Host (3.2.2).
 *
 * Memory: a connection holds at most pg_ws.max_header_size bytes of its
 * head while it arrives.  Everything parsing and deciding allocates goes
 * to one context reset as soon as the answer is queued, and repeated
 * headers are joined by appending, each into one buffer, so a request
 * costs a small multiple of its head while it is handled and nothing once
 * answered: a refused connection lingers with no trace of its request, and
 * a subscriber keeps only its grant and its filter (conn.c copies them).
 *
 * src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include <openssl/evp.h>

#include "common/base64.h"
#include "utils/memutils.h"

/* RFC 6455 4.2.2: the GUID appended to the key for Sec-WebSocket-Accept */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* more patterns than this in ?events= is not a subscription */
#define MAX_FILTER_PATTERNS 64
/* the first allocation of a request head; it grows to max_header_size */
#define REQUEST_INITIAL_SIZE 1024

/*
 * Where parsing and deciding a request allocate: reset once it is answered
 * (pgws_http_request), so that nothing of a request outlives its answer
 * but what pgws_conn_subscribe copies into a subscriber's own context.
 */
static MemoryContext request_context = NULL;

/* the headers pg_ws reads; lists are joined with ", ", cookies with "; " */
typedef struct HttpRequest
{
	char	   *method;
	char	   *target;
	char	   *version;
	char	   *path;
	char	   *query;			/* after '?', or NULL */
	char	   *authority;		/* what the request is for: an absolute-form
								 * target's authority, else Host (NULL
								 * without one, in HTTP/1.0 only) */
	char	   *host;
	char	   *upgrade;
	char	   *connection;
	char	   *ws_key;
	char	   *ws_version;
	char	   *ws_protocol;
	char	   *ws_extensions;
	char	   *origin;
	char	   *authorization;
	char	   *cookie;
	char	   *content_length;
	char	   *transfer_encoding;
	char	   *last_event_id;	/* an EventSource's, reconnecting */
} HttpRequest;

typedef enum HeaderKind
{
	HEADER_SINGLE,				/* a second one is an error */
	HEADER_LIST,				/* comma-separated, may repeat */
	HEADER_COOKIE				/* may repeat, joined with "; " */
} HeaderKind;

/*
 * What RFC 9110 says of each when repeated: Host (RFC 9112 3.2), Origin
 * (RFC 6454 7.3), Content-Length (RFC 9112 6.3) and the WebSocket key and
 * version are single values; Upgrade, Connection, Transfer-Encoding and
 * Sec-WebSocket-Protocol are lists (5.3), so repeats join with ", ";
 * cookies join with "; " (RFC 6265 5.4).  Authorization is single too:
 * two credentials are two answers to one question, and Last-Event-ID two
 * places to resume from.
 */
static const struct
{
	const char *name;
	size_t		offset;
	HeaderKind	kind;
}			known_headers[] =
{
	{"host", offsetof(HttpRequest, host), HEADER_SINGLE},
	{"upgrade", offsetof(HttpRequest, upgrade), HEADER_LIST},
	{"connection", offsetof(HttpRequest, connection), HEADER_LIST},
	{"sec-websocket-key", offsetof(HttpRequest, ws_key), HEADER_SINGLE},
	{"sec-websocket-version", offsetof(HttpRequest, ws_version), HEADER_SINGLE},
	{"sec-websocket-protocol", offsetof(HttpRequest, ws_protocol), HEADER_LIST},
	{"sec-websocket-extensions", offsetof(HttpRequest, ws_extensions), HEADER_LIST},
	{"origin", offsetof(HttpRequest, origin), HEADER_SINGLE},
	{"authorization", offsetof(HttpRequest, authorization), HEADER_SINGLE},
	{"cookie", offsetof(HttpRequest, cookie), HEADER_COOKIE},
	{"content-length", offsetof(HttpRequest, content_length), HEADER_SINGLE},
	{"transfer-encoding", offsetof(HttpRequest, transfer_encoding), HEADER_LIST},
	{"last-event-id", offsetof(HttpRequest, last_event_id), HEADER_SINGLE},
};

static const char *
status_text(int status)
{
	switch (status)
	{
		case 200:
			return "OK";
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 426:
			return "Upgrade Required";
		case 431:
			return "Request Header Fields Too Large";
		case 503:
			return "Service Unavailable";
		case 505:
			return "HTTP Version Not Supported";
	}
	return "Error";
}

/* the reason a refusal with this status is counted under */
static PgWsRefusal
refusal_reason(int status)
{
	switch (status)
	{
		case 400:
			return PGWS_REFUSAL_BAD_REQUEST;
		case 401:
			return PGWS_REFUSAL_UNAUTHORIZED;
		case 403:
			return PGWS_REFUSAL_FORBIDDEN;
		case 404:
			return PGWS_REFUSAL_NOT_FOUND;
		case 405:
			return PGWS_REFUSAL_METHOD;
		case 426:
			return PGWS_REFUSAL_WS_VERSION;
		case 431:
			return PGWS_REFUSAL_HEADER_TOO_LARGE;
		case 505:
			return PGWS_REFUSAL_HTTP_VERSION;
	}
	return PGWS_REFUSAL_OTHER;
}

/*
 * Answer with status and a one-line body, and close.  extra_headers, if
 * any, are whole header lines ending in CRLF.
 */
void
pgws_http_refuse(PgWsConn *conn, int status, const char *extra_headers,
				 const char *body)
{
	char		buf[LWS_PRE + 1024];
	int			n;

	n = snprintf(buf + LWS_PRE, sizeof(buf) - LWS_PRE,
				 "HTTP/1.1 %d %s\r\n"
				 "Content-Type: text/plain; charset=utf-8\r\n"
				 "Content-Length: %zu\r\n"
				 "Connection: close\r\n"
				 "%s"
				 "\r\n"
				 "%s\n",
				 status, status_text(status), strlen(body) + 1,
				 extra_headers ? extra_headers : "", body);
	if (n >= (int) (sizeof(buf) - LWS_PRE))
		n = sizeof(buf) - LWS_PRE - 1;	/* bodies are short: never */
	/* a refusal at accept (503) was counted and logged when it was decided */
	if (conn->refusal == NULL && pgws_conn_refused(refusal_reason(status)))
		ereport(LOG,
				(errmsg("pg_ws refused a request from %s: %d %s: %s",
						conn->peer, status, status_text(status), body)));
	pgws_conn_finish(conn, (uint8 *) buf + LWS_PRE, n);
}

static bool
is_tchar(char c)
{
	return c != '\0' &&
		(isalnum((unsigned char) c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* is token one of the comma-separated elements of list (ignoring case)? */
static bool
list_has_token(const char *list, const char *token, bool ignore_case)
{
	size_t		tlen = strlen(token);
	const char *p = list;

	while (p && *p)
	{
		const char *end;
		const char *e;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		e = end;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t) (e - p) == tlen &&
			(ignore_case ? pg_strncasecmp(p, token, tlen) == 0 :
			 strncmp(p, token, tlen) == 0))
			return true;
		p = end;
	}
	return false;
}

/* split off one line (LF or CRLF); NULL at the end */
static char *
next_line(char **cursor)
{
	char	   *line = *cursor;
	char	   *nl;

	if (line == NULL)
		return NULL;
	nl = strchr(line, '\n');
	if (nl)
	{
		*nl = '\0';
		*cursor = nl + 1;
	}
	else
		*cursor = NULL;
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	return line;
}

/*
 * Is s[0..len) an authority as Host carries it (RFC 9110 7.2, RFC 3986
 * 3.2.2): a host (a reg-name, an IPv4 address or a bracketed IPv6 one),
 * not empty, and an optional port of digits?  No userinfo.
 */
static bool
authority_valid(const char *s, size_t len)
{
	const char *p = s;
	const char *end = s + len;

	if (len == 0 || len > 255)
		return false;
	if (*p == '[')
	{
		for (p++; p < end && *p != ']'; p++)
			if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.')
				return false;
		if (p >= end || p == s + 1)
			return false;
		p++;
	}
	else
	{
		const char *host = p;

		for (; p < end && *p != ':'; p++)
			if (!isalnum((unsigned char) *p) && strchr("-._~%!$&'()*+,;=", *p) == NULL)
				return false;
		if (p == host)
			return false;
	}
	if (p < end)
	{
		if (*p++ != ':' || end - p > 5)
			return false;
		for (; p < end; p++)
			if (!isdigit((unsigned char) *p))
				return false;
	}
	return true;
}

/*
 * An absolute-form request target (RFC 9112 3.2.2), http://host[:port]
 * followed by the path and query: its authority stands for the Host, and
 * the rest is routed as an origin-form target would be.  Returns false
 * for a target of another scheme or with a malformed authority.
 */
static bool
split_absolute_target(HttpRequest *req)
{
	char	   *t = req->target;
	char	   *authority;
	char	   *rest;

	if (pg_strncasecmp(t, "http://", 7) == 0)
		authority = t + 7;
	else if (pg_strncasecmp(t, "https://", 8) == 0)
		authority = t + 8;
	else
		return false;
	rest = authority + strcspn(authority, "/?#");
	if (!authority_valid(authority, rest - authority))
		return false;
	req->authority = pnstrdup(authority, rest - authority);
	/* an empty path is "/" (RFC 9112 3.2.1) */
	req->target = *rest == '/' ? rest : psprintf("/%s", rest);
	return true;
}

/*
 * Parse the request head (head_len bytes, without its final empty line,
 * NUL-terminated) in place.  Returns 0, or the status to refuse with and
 * *error.  Allocates in the current memory context (request_context), a
 * bounded amount: repeated headers are appended each to one buffer, never
 * copied per occurrence.
 */
static int
parse_request(char *head, size_t head_len, HttpRequest *req, const char **error)
{
	char	   *cursor = head;
	char	   *line;
	char	   *sp1;
	char	   *sp2;
	char	   *p;
	StringInfoData joined[lengthof(known_headers)];
	bool		repeated[lengthof(known_headers)];
	int			i;

	memset(req, 0, sizeof(*req));
	memset(repeated, 0, sizeof(repeated));

	/*
	 * Lines are C strings from here on: a NUL in the head would end one
	 * early and hide whatever follows it from every check.
	 */
	if (memchr(head, '\0', head_len) != NULL)
	{
		*error = "NUL byte in the request head";
		return 400;
	}

	/* request-line = method SP request-target SP HTTP-version */
	line = next_line(&cursor);
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL ||
		sp1 == line || sp2 == sp1 + 1)
	{
		*error = "malformed request line";
		return 400;
	}
	*sp1 = *sp2 = '\0';
	req->method = line;
	req->target = sp1 + 1;
	req->version = sp2 + 1;
	for (p = req->method; *p; p++)
		if (!is_tchar(*p))
		{
			*error = "malformed request method";
			return 400;
		}
	for (p = req->target; *p; p++)
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7F)
		{
			*error = "malformed request target";
			return 400;
		}
	if (strncmp(req->version, "HTTP/", 5) != 0 || strlen(req->version) != 8 ||
		!isdigit((unsigned char) req->version[5]) || req->version[6] != '.' ||
		!isdigit((unsigned char) req->version[7]))
	{
		*error = "malformed HTTP version";
		return 400;
	}
	if (strcmp(req->version, "HTTP/1.1") != 0 &&
		strcmp(req->version, "HTTP/1.0") != 0)
	{
		*error = "pg_ws speaks HTTP/1.1 only";
		return 505;
	}

	while ((line = next_line(&cursor)) != NULL)
	{
		char	   *colon = strchr(line, ':');
		char	   *value;
		char	   *end;

		if (colon == NULL || colon == line)
		{
			*error = "malformed header line";
			return 400;
		}
		*colon = '\0';
		for (p = line; *p; p++)
			if (!is_tchar(*p))
			{
				/* this also refuses obsolete line folding */
				*error = "malformed header name";
				return 400;
			}
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		end = value + strlen(value);
		while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		for (p = value; *p; p++)
			if (((unsigned char) *p < 0x20 && *p != '\t') || *p == 0x7F)
			{
				*error = "control character in a header";
				return 400;
			}

		for (i = 0; i < lengthof(known_headers); i++)
		{
			char	  **field;

			if (pg_strcasecmp(line, known_headers[i].name) != 0)
				continue;
			field = (char **) ((char *) req + known_headers[i].offset);
			if (*field == NULL)
				*field = value;
			else if (known_headers[i].kind == HEADER_SINGLE)
			{
				*error = pg_strcasecmp(line, "host") == 0 ?
					"more than one Host header" :
					"a header that may appear once appears twice";
				return 400;
			}
			else
			{
				/* one buffer per header, appended to: linear in the head */
				if (!repeated[i])
				{
					initStringInfo(&joined[i]);
					appendStringInfoString(&joined[i], *field);
					repeated[i] = true;
				}
				appendStringInfoString(&joined[i],
									   known_headers[i].kind == HEADER_COOKIE ? "; " : ", ");
				appendStringInfoString(&joined[i], value);
				*field = joined[i].data;
			}
			break;
		}
	}

	/*
	 * RFC 9112 3.2: an HTTP/1.1 request without Host, or with a malformed
	 * one, is a 400; Host says which server the request is for, and the
	 * anonymous default (auth.c) decides by it.
	 */
	if (req->host == NULL && strcmp(req->version, "HTTP/1.1") == 0)
	{
		*error = "an HTTP/1.1 request needs a Host header";
		return 400;
	}
	if (req->host != NULL && !authority_valid(req->host, strlen(req->host)))
	{
		*error = "malformed Host header";
		return 400;
	}
	req->authority = req->host;

	/* RFC 9112 6.3: a Content-Length that is not a number cannot be read */
	if (req->content_length != NULL &&
		(req->content_length[0] == '\0' ||
		 strspn(req->content_length, "0123456789") != strlen(req->content_length)))
	{
		*error = "malformed Content-Length";
		return 400;
	}
	/* both at once is how requests are smuggled past proxies (6.1) */
	if (req->content_length != NULL && req->transfer_encoding != NULL)
	{
		*error = "Content-Length and Transfer-Encoding together";
		return 400;
	}

	/* origin-form, or absolute-form: its authority stands for the Host */
	if (req->target[0] != '/' && strstr(req->target, "://") != NULL &&
		!split_absolute_target(req))
	{
		*error = "malformed request target: pg_ws serves http:// and https:// targets only";
		return 400;
	}
	req->path = req->target;
	p = strchr(req->target, '?');
	if (p)
	{
		req->path = pnstrdup(req->target, p - req->target);
		req->query = p + 1;
	}
	return 0;
}

/* Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 4.2.1) */
static bool
ws_key_valid(const char *key)
{
	pgws_b64_byte raw[32];
	int			keylen = strlen(key);

	if (keylen != 24)
		return false;
	return pg_b64_decode(key, keylen, raw, sizeof(raw)) == 16;
}

/* base64(SHA-1(key + GUID)): 28 characters and a NUL */
static bool
ws_accept(const char *key, char *accept, size_t size)
{
	char	   *input = psprintf("%s%s", key, WS_GUID);
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	int			n;

	if (!EVP_Digest(input, strlen(input), digest, &dlen, EVP_sha1(), NULL))
		return false;
	n = pg_b64_encode((pgws_b64_byte *) digest, (int) dlen, accept, (int) size - 1);
	if (n < 0)
		return false;
	accept[n] = '\0';
	return true;
}

static const char malformed_since[] =
"since must be the seq of a pg_ws event (a decimal number) or a position pg_ws_position() returned";
static const char malformed_last_event_id[] =
"Last-Event-ID must be the id of a pg_ws event (SEQ@EPOCH) or a position pg_ws_position() returned";
static const char malformed_after[] =
"after must be the seq of the last pg_ws event received (a decimal number, with epoch=, or SEQ@EPOCH)";

/*
 * A position to resume after: SEQ with epoch (NULL if none came), SEQ@E
 * (an /events id: its epoch is E and epoch is not looked at), or P from
 * pg_ws_position(), which carries its epoch too.  bad is what a malformed
 * one is refused with.  Returns false, having refused the request, when
 * it makes no sense.
 */
static bool
read_position(PgWsConn *conn, const char *since, const char *epoch,
			  const char *bad, PgWsSubscription *up)
{
	char	   *end;
	uint64		value;

	up->since_tli = 0;
	if (!isdigit((unsigned char) since[0]))
	{
		char		position_epoch[PGWS_EPOCH_LEN];
		TimeLineID	ignored;

		if (!pgws_position_decode(since, &up->position))
		{
			pgws_http_refuse(conn, 400, NULL, bad);
			return false;
		}
		snprintf(position_epoch, sizeof(position_epoch), UINT64_FORMAT "-%u",
				 up->position.sysid, up->position.database);
		up->resume = true;
		up->snapshot = true;
		up->since = up->position.after;
		up->since_tli = up->position.tli;
		up->epoch_matches = pgws_broadcast_epoch_matches(position_epoch, &ignored);
		return true;
	}

	errno = 0;
	value = strtou64(since, &end, 10);
	if (*end == '@')
		epoch = end + 1;
	else if (*end != '\0')
		errno = EINVAL;
	if (errno != 0)
	{
		pgws_http_refuse(conn, 400, NULL, bad);
		return false;
	}
	if (epoch == NULL || epoch[0] == '\0')
	{
		pgws_http_refuse(conn, 400, NULL,
						 "since needs the epoch of the event it was taken from (&epoch=)");
		return false;
	}
	up->resume = true;
	up->since = value;
	up->epoch_matches = pgws_broadcast_epoch_matches(epoch, &up->since_tli);
	return true;
}

/*
 * A subscriber that started from a snapshot position P and has received
 * events since resumes after the last of them (event, its position SEQ
 * with its epoch) and still skips what P's snapshot saw: until P's until,
 * events of transactions the snapshot saw are in the rows it loaded, and
 * a plain position would send them again.  P names the same database of
 * the same system as the event's position, or it is not looked at.
 */
static void
keep_snapshot(PgWsSubscription *up, const PgWsSnapshotPosition *p)
{
	char		epoch[PGWS_EPOCH_LEN];
	TimeLineID	ignored;

	snprintf(epoch, sizeof(epoch), UINT64_FORMAT "-%u", p->sysid, p->database);
	if (!up->epoch_matches || !pgws_broadcast_epoch_matches(epoch, &ignored) ||
		up->since >= p->until)
		return;
	up->position = *p;
	up->snapshot = true;
	up->since = Max(up->since, p->after);
}

/*
 * ?since=SEQ&epoch=E, ?since=SEQ@E or ?since=P with P from
 * pg_ws_position(): where a resuming subscriber starts (broadcast.c); an
 * EventSource's Last-Event-ID, when it reconnects, in place of them.
 * Empty values count as absent, so that a client can always send both.
 * A snapshot position carries its epoch; an epoch= beside it is not
 * needed and not looked at.  ?since=P with &after=SEQ (and its epoch=),
 * or with a Last-Event-ID, resumes after that event and keeps P's
 * snapshot (keep_snapshot).  Returns false, having refused the request,
 * when they make no sense.
 */
static bool
read_resume(PgWsConn *conn, const char *query, const char *last_event_id,
			PgWsSubscription *up)
{
	char	   *since;
	char	   *epoch;
	char	   *after;
	bool		bad_since;
	bool		bad_epoch;
	bool		bad_after;
	PgWsSnapshotPosition snapshot;

	up->resume = false;
	up->snapshot = false;
	since = query ? pgws_query_param(query, "since", &bad_since) : NULL;
	epoch = query ? pgws_query_param(query, "epoch", &bad_epoch) : NULL;
	after = query ? pgws_query_param(query, "after", &bad_after) : NULL;
	if (query == NULL)
		bad_since = bad_epoch = bad_after = false;
	if (bad_after)
	{
		pgws_http_refuse(conn, 400, NULL, malformed_after);
		return false;
	}

	/* the snapshot a subscriber started from, kept past its first event */
	if (!bad_since && since != NULL && since[0] != '\0' && !isdigit((unsigned char) since[0]) &&
		((after != NULL && after[0] != '\0') ||
		 (last_event_id != NULL && last_event_id[0] != '\0')))
	{
		if (!read_position(conn, since, NULL, malformed_since, up))
			return false;
		snapshot = up->position;
		up->snapshot = false;
		if (last_event_id != NULL && last_event_id[0] != '\0')
		{
			if (!read_position(conn, last_event_id, NULL, malformed_last_event_id, up))
				return false;
		}
		else if (!read_position(conn, after, bad_epoch ? NULL : epoch, malformed_after, up))
			return false;
		if (up->snapshot)
		{
			/* after= and Last-Event-ID are an event's position */
			pgws_http_refuse(conn, 400, NULL, malformed_after);
			return false;
		}
		keep_snapshot(up, &snapshot);
		return true;
	}
	if (after != NULL && after[0] != '\0')
	{
		pgws_http_refuse(conn, 400, NULL,
						 "after is the last event a subscriber that started from a pg_ws_position() received: it goes with since=<that position>");
		return false;
	}

	if (last_event_id != NULL && last_event_id[0] != '\0')
		return read_position(conn, last_event_id, NULL, malformed_last_event_id,
							 up);
	if (query == NULL)
		return true;
	if (!bad_since && (since == NULL || since[0] == '\0'))
		return true;			/* a fresh start; any epoch is moot */
	if (bad_since)
	{
		pgws_http_refuse(conn, 400, NULL, malformed_since);
		return false;
	}
	return read_position(conn, since, bad_epoch ? NULL : epoch,
						 malformed_since, up);
}

/*
 * ?events=client_create,employee_*,order_*: the connection receives only
 * those events (patterns as in a token's events claim, see eventname.c),
 * and never more than its grant allows.  Absent or empty: everything the
 * grant allows.  A pattern may name events pg_ws does not know yet (an
 * application's own, pg_ws_send()'s), but one no event name could match
 * (an empty one, Client_*, a-b) or a misplaced '*' is refused with a 400,
 * so that a typo of that kind does not quietly subscribe to nothing.
 */
static bool
read_events_filter(PgWsConn *conn, const char *query, PgWsSubscription *up)
{
	static const char bad_filter[] =
		"events must list at most 64 event names or prefixes ending in '*', separated by commas (as in events=client_create,employee_*); a name is a lower-case letter followed by lower-case letters, digits and underscores";
	bool		malformed;
	char	   *filter;
	char	   *p;
	int			npatterns = 0;
	PgWsEventSet set;

	/* in the request's memory: pgws_conn_subscribe copies what it keeps */
	pgws_event_set_init(&up->filter, true);
	up->filter_text = NULL;
	if (query == NULL)
		return true;
	filter = pgws_query_param(query, "events", &malformed);
	if (!malformed && (filter == NULL || filter[0] == '\0'))
		return true;
	pgws_event_set_init(&set, false);
	for (p = malformed ? NULL : filter; p != NULL;)
	{
		char	   *comma = strchr(p, ',');
		size_t		len = comma ? (size_t) (comma - p) : strlen(p);
		PgWsPatternResult result = pgws_event_set_add(&set, p, len);

		if (result == PGWS_PATTERN_MALFORMED ||
			result == PGWS_PATTERN_NO_NAME ||
			++npatterns > MAX_FILTER_PATTERNS)
		{
			malformed = true;
			break;
		}
		p = comma ? comma + 1 : NULL;
	}
	if (malformed)
	{
		pgws_event_set_free(&set);
		pgws_http_refuse(conn, 400, NULL, bad_filter);
		return false;
	}
	up->filter = set;
	/* for pg_ws_connections */
	up->filter_text = set.all ? NULL : filter;
	return true;
}

/* the fields of the event document's rows, which ?filter= may name */
static const char *const document_fields[] = {
	"id", "first_seen", "last_seen", "visit_count", "gender", "age", "image",
	"datetime", "device_id", "client", "first_name", "last_name", "email",
	"phone_number", "working_graphic", "employee_id", "score", NULL
};

/* may this set take an event that is not the document's? */
static bool
takes_other_events(const PgWsEventSet *set)
{
	return set->all || set->npatterns > 0;
}

/*
 * ?filter=device_id=eq.cam-7&score=gte.90 (URL-encoded as one value): the
 * connection receives only the events whose row the filter holds for
 * (filter.c).  A filter that does not parse, or names a field no event the
 * connection may receive has, is refused with a 400 that says why: the
 * document's fields are known, and the watched tables' filter columns
 * (filtercols.c); others (a watched table's columns, pg_ws_send()'s data)
 * only where the connection takes events other than the document's.  While
 * pg_ws reads its filter columns, a field it does not know yet is answered
 * 503 with Retry-After, so that a column declared a moment ago is known on
 * the retry.
 */
static bool
read_value_filter(PgWsConn *conn, const char *query, PgWsSubscription *up)
{
	bool		malformed;
	char	   *text;
	PgWsValueFilter *filter;
	const char *why;
	const char *field;

	up->values_text = NULL;
	if (query == NULL)
		return true;
	text = pgws_query_param(query, "filter", &malformed);
	if (!malformed && (text == NULL || text[0] == '\0'))
		return true;
	if (malformed || pgws_query_param_repeated(query, "filter"))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "filter must be given once, URL-encoded, as in filter=device_id%3Deq.cam-7");
		return false;
	}
	why = pgws_value_filter_parse(text, &filter);
	if (why != NULL)
	{
		pgws_http_refuse(conn, 400, NULL, psprintf("filter: %s", why));
		return false;
	}
	for (int i = 0; (field = pgws_value_filter_field(filter, i)) != NULL; i++)
	{
		bool		known = false;

		for (int k = 0; document_fields[k] != NULL && !known; k++)
			known = strcmp(field, document_fields[k]) == 0;
		if (known || (takes_other_events(&up->filter) &&
					  takes_other_events(&up->grant.events)))
			continue;
		switch (pgws_filter_column_known(field))
		{
			case PGWS_FILTER_COLUMN_KNOWN:
				continue;
			case PGWS_FILTER_COLUMN_READING:
				pgws_http_refuse(conn, 503, "Retry-After: 1\r\n",
								 "filter: pg_ws is reading its watched tables' filter columns; try again in a second");
				return false;
			case PGWS_FILTER_COLUMN_UNKNOWN:
				break;
		}
		pgws_http_refuse(conn, 400, NULL,
						 psprintf("filter: no event this connection may receive has a field \"%s\"",
								  field));
		return false;
	}
	up->values_text = text;
	return true;
}

/*
 * The request's parts auth.c decides by.  The names in
 * pg_ws.listen_addresses count as loopback names only while the worker
 * listens on loopback addresses alone (it checked what they resolve to).
 */
static void
auth_request(const HttpRequest *req, PgWsAuthRequest *areq)
{
	areq->origin = req->origin;
	areq->authorization = req->authorization;
	areq->cookie = req->cookie;
	areq->query = req->query;
	areq->host = req->authority;
	areq->listen_names_are_loopback = pgws_worker_listens_on_loopback_only();
}

/*
 * An endpoint other than /ws/ under the anonymous default: the Host must be
 * a loopback name (auth.c), so that a page of another site that a DNS
 * rebinding pointed at 127.0.0.1 reads nothing.  Returns false, having
 * refused the request, when it is not.
 */
static bool
host_allowed(PgWsConn *conn, const HttpRequest *req)
{
	PgWsAuthRequest areq;
	const char *reason;

	auth_request(req, &areq);
	if (pgws_auth_anonymous_host(&areq, &reason))
		return true;
	pgws_http_refuse(conn, 403, NULL, reason);
	return false;
}

/* a request without a valid token: 401, with the challenge that says why */
static void
refuse_unauthorized(PgWsConn *conn, const char *error)
{
	char		challenge[256];
	char		header[300];

	pgws_auth_challenge(error, challenge, sizeof(challenge));
	snprintf(header, sizeof(header), "WWW-Authenticate: %s\r\n", challenge);
	pgws_http_refuse(conn, 401, header, error);
}

/*
 * Who may subscribe (auth.c), for /ws/ and /events alike: the Host and
 * the origin, then the token; the grant it makes goes with the
 * subscription.  A 403 is refused here.  Returns 0, 403, or 401 (no valid
 * token, *error why), which the caller refuses with refuse_unauthorized()
 * after its own checks, so that a request /ws/ cannot take is told that
 * first.
 */
static int
authorize(PgWsConn *conn, const HttpRequest *req, PgWsSubscription *up,
		  const char **error)
{
	PgWsAuthRequest areq;
	int			status;

	*error = NULL;
	auth_request(req, &areq);
	status = pgws_auth_upgrade(&areq, (int64) time(NULL), &up->grant, error);
	if (status == 403)
		pgws_http_refuse(conn, 403, NULL, *error);
	return status;
}

/* does the request announce a body (which no subscription has)? */
static bool
has_body(const HttpRequest *req)
{
	return req->transfer_encoding != NULL ||
		(req->content_length != NULL &&
		 strspn(req->content_length, "0") != strlen(req->content_length));
}

/*
 * What /ws/ and /events decide alike once the token is good: whether this
 * node serves at all (not on a dead branch), where the subscriber starts
 * (?since=, or last_event_id), its ?events= and ?filter=, and whether its
 * address may make the worker read the WAL for one more.  Returns false,
 * having refused the request, when not.
 */
static bool
read_subscription(PgWsConn *conn, const HttpRequest *req,
				  const char *last_event_id, PgWsSubscription *up)
{
	char	   *diverged;

	/* a standby on a dead branch serves nobody (timeline.c) */
	if ((diverged = pgws_timeline_diverged()) != NULL)
	{
		pgws_http_refuse(conn, 503, "Retry-After: 5\r\n",
						 psprintf("%s; connect to another node", diverged));
		return false;
	}

	if (!read_resume(conn, req->query, last_event_id, up) ||
		!read_events_filter(conn, req->query, up) ||
		!read_value_filter(conn, req->query, up))
		return false;

	/*
	 * What one address may make the worker read from the WAL at once
	 * (broadcast.c knows where a since lies): past it, a refusal the
	 * client can retry, before anything is held for it.
	 */
	if (up->resume && pgws_max_wal_resumes_per_address > 0 &&
		pgws_broadcast_resume_reads_wal(up->since, up->epoch_matches) &&
		pgws_broadcast_wal_resumes_from(&conn->key) >=
		pgws_max_wal_resumes_per_address)
	{
		pgws_worker_stats.resumes_refused++;
		pgws_http_refuse(conn, 503, "Retry-After: 1\r\n",
						 "too many connections from this address resuming from the WAL: pg_ws.max_wal_resumes_per_address reached; try again in a second");
		return false;
	}
	return true;
}

/* GET /ws/: the WebSocket upgrade, or why not */
static void
upgrade(PgWsConn *conn, const HttpRequest *req)
{
	const char *error = NULL;
	int			status;
	char		accept[64];
	char		buf[LWS_PRE + 512];
	bool		with_protocol;
	PgWsSubscription up;
	int			n;
	const char *extensions = NULL;

	if (req->upgrade == NULL)
	{
		pgws_http_refuse(conn, 400, NULL,
						 "/ws/ is a WebSocket endpoint: connect with a WebSocket client");
		return;
	}
	if (!list_has_token(req->upgrade, "websocket", true))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "pg_ws upgrades only to websocket (Upgrade: websocket)");
		return;
	}
	if (strcmp(req->version, "HTTP/1.1") != 0)
	{
		pgws_http_refuse(conn, 400, NULL, "a WebSocket upgrade needs HTTP/1.1");
		return;
	}
	if (req->connection == NULL || !list_has_token(req->connection, "upgrade", true))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "a WebSocket upgrade needs Connection: Upgrade");
		return;
	}
	if (req->ws_version == NULL || strcmp(req->ws_version, "13") != 0)
	{
		pgws_http_refuse(conn, 426, "Sec-WebSocket-Version: 13\r\n",
						 "pg_ws speaks WebSocket version 13 (RFC 6455)");
		return;
	}
	if (req->ws_key == NULL || !ws_key_valid(req->ws_key))
	{
		pgws_http_refuse(conn, 400, NULL, "missing or malformed Sec-WebSocket-Key");
		return;
	}

	/*
	 * Bytes after the head are WebSocket frames once upgraded: a body
	 * announced with the upgrade would be read as frames (RFC 6455 4.1: the
	 * handshake is a GET without one).
	 */
	if (has_body(req))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "a WebSocket upgrade has no body (no Content-Length or Transfer-Encoding)");
		return;
	}

	/* who may subscribe: 403 here, 401 after the subprotocol */
	status = authorize(conn, req, &up, &error);
	if (status == 403)
		return;

	/*
	 * Only "pg_ws" may be selected.  libwebsockets dropped connections
	 * asking for others; we say why instead.
	 */
	with_protocol = req->ws_protocol != NULL;
	if (with_protocol && !list_has_token(req->ws_protocol, "pg_ws", false))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "unsupported WebSocket subprotocol: connect without Sec-WebSocket-Protocol, or ask for \"pg_ws\"");
		return;
	}
	if (status == 401)
	{
		refuse_unauthorized(conn, error);
		return;
	}
	Assert(status == 0);

	/* compressed messages, when allowed and offered (deflate.c) */
	up.framing = PGWS_FRAMING_WS;
	if (pgws_compression &&
		pgws_deflate_accept_offer(req->ws_extensions, &extensions))
		up.framing = PGWS_FRAMING_WS_DEFLATE;
	if (!read_subscription(conn, req, NULL, &up))
		return;

	if (!ws_accept(req->ws_key, accept, sizeof(accept)))
	{
		pgws_http_refuse(conn, 400, NULL, "could not compute Sec-WebSocket-Accept");
		return;
	}
	n = snprintf(buf + LWS_PRE, sizeof(buf) - LWS_PRE,
				 "HTTP/1.1 101 Switching Protocols\r\n"
				 "Upgrade: websocket\r\n"
				 "Connection: Upgrade\r\n"
				 "Sec-WebSocket-Accept: %s\r\n"
				 "%s%s%s%s"
				 "\r\n",
				 accept, with_protocol ? "Sec-WebSocket-Protocol: pg_ws\r\n" : "",
				 extensions ? "Sec-WebSocket-Extensions: " : "",
				 extensions ? extensions : "", extensions ? "\r\n" : "");
	pgws_conn_subscribe(conn, (uint8 *) buf + LWS_PRE, n, &up);
}

/*
 * GET /events: the event stream (sse.c), or why not, with the statuses
 * /ws/ refuses with.  Only a page whose origin auth.c allowed gets here
 * with an Origin; it may read with its cookies only where
 * pg_ws.allowed_origins lists origins: without it, tokens let any page
 * subscribe, by what it carries, not by a user's cookie.
 */
static void
events_stream(PgWsConn *conn, const HttpRequest *req)
{
	const char *error = NULL;
	int			status;
	PgWsSubscription up;
	char	   *head;
	int			len;

	/* a subscriber's request has nothing to say after its head */
	if (has_body(req))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "GET /events has no body (no Content-Length or Transfer-Encoding)");
		return;
	}
	status = authorize(conn, req, &up, &error);
	if (status == 403)
		return;
	if (status == 401)
	{
		refuse_unauthorized(conn, error);
		return;
	}
	Assert(status == 0);

	up.framing = PGWS_FRAMING_SSE;
	if (!read_subscription(conn, req, req->last_event_id, &up))
		return;
	head = pgws_sse_head(req->origin, pgws_allowed_origins[0] != '\0', &len);
	pgws_conn_subscribe(conn, (uint8 *) head, len, &up);
}

/*
 * Write what an endpoint decided (console.c, metrics.c): a refusal as
 * every refusal, or the status line, its headers and the body; the
 * connection ends once it is sent.
 */
static void
send_answer(PgWsConn *conn, const PgWsAnswer *a)
{
	StringInfoData out;
	size_t		body_len = a->head_only ? 0 : a->body_len;

	if (a->content_type == NULL)
	{
		pgws_http_refuse(conn, a->status, a->headers, a->body);
		return;
	}
	initStringInfo(&out);
	appendStringInfoSpaces(&out, LWS_PRE);
	appendStringInfo(&out,
					 "HTTP/1.1 %d %s\r\n"
					 "Content-Type: %s\r\n"
					 "Content-Length: %zu\r\n"
					 "%s"
					 "Connection: close\r\n"
					 "\r\n",
					 a->status, status_text(a->status), a->content_type,
					 a->body_len, a->headers ? a->headers : "");
	if (body_len > 0)
		appendBinaryStringInfo(&out, a->body, (int) body_len);
	pgws_conn_finish(conn, (uint8 *) out.data + LWS_PRE, out.len - LWS_PRE);
}

/* route a parsed request to its endpoint, which answers or subscribes */
static void
route(PgWsConn *conn, const HttpRequest *req)
{
	PgWsAnswer answer;

	/* the console page (console.c); with pg_ws.console off, / is a 404 */
	if (strcmp(req->path, "/") == 0 && pgws_console_served())
	{
		if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
			pgws_http_refuse(conn, 405, "Allow: GET, HEAD\r\n",
							 "method not allowed: / is the pg_ws console page (GET)");
		else if (host_allowed(conn, req))
		{
			pgws_console_answer(strcmp(req->method, "HEAD") == 0, req->authority,
								&answer);
			send_answer(conn, &answer);
		}
		return;
	}
	if (strcmp(req->method, "GET") != 0)
	{
		pgws_http_refuse(conn, 405, "Allow: GET\r\n",
						 "method not allowed: pg_ws serves GET /ws/ (a WebSocket upgrade) and GET /events (Server-Sent Events)");
		return;
	}
	if (pgws_metrics_path(req->path))
	{
		if (host_allowed(conn, req))
		{
			PgWsAuthRequest areq;

			auth_request(req, &areq);
			pgws_metrics_answer(&conn->key, req->path, &areq, &answer);
			send_answer(conn, &answer);
		}
		return;
	}
	if (strcmp(req->path, "/events") == 0)
	{
		events_stream(conn, req);
		return;
	}
	if (strcmp(req->path, "/ws/") != 0)
	{
		pgws_http_refuse(conn, 404, NULL,
						 "not found: the pg_ws endpoints are /ws/ (WebSocket) and /events (Server-Sent Events)");
		return;
	}
	upgrade(conn, req);
}

/*
 * RFC 9112 2.2: empty lines before the request line are ignored.  Returns
 * how many bytes of data start with them (and drops a CR the previous
 * chunk ended with, when this one brings its LF).  Skipped bytes are never
 * kept, so a peer that sends nothing else holds no memory, only its socket
 * until pg_ws.handshake_timeout.
 */
static size_t
skip_empty_lines(PgWsConn *conn, const uint8 *data, size_t len)
{
	size_t		i = 0;

	if (conn->request_len == 1 && conn->request[0] == '\r' && len > 0 &&
		data[0] == '\n')
	{
		conn->request_len = 0;
		i = 1;
	}
	if (conn->request_len != 0)
		return i;
	while (i < len)
	{
		if (data[i] == '\n')
			i++;
		else if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			i += 2;
		else
			break;
	}
	return i;
}

/*
 * Keep n more bytes of the head, in the connection's context.  The buffer
 * grows by doubling up to limit bytes, never beyond, so that a connection
 * reading its request holds at most pg_ws.max_header_size and a little.
 */
static void
request_append(PgWsConn *conn, const uint8 *data, int n, int limit)
{
	if (conn->request_len + n > conn->request_cap)
	{
		int			cap = Max(conn->request_cap, REQUEST_INITIAL_SIZE);

		while (cap < conn->request_len + n)
			cap *= 2;
		cap = Min(cap, limit);
		if (conn->request == NULL)
			conn->request = MemoryContextAlloc(conn->cxt, cap);
		else
			conn->request = repalloc(conn->request, cap);
		conn->request_cap = cap;
	}
	memcpy(conn->request + conn->request_len, data, n);
	conn->request_len += n;
}

/* the head has been answered: nothing of it stays with the connection */
static void
request_done(PgWsConn *conn)
{
	if (conn->request != NULL)
		pfree(conn->request);
	conn->request = NULL;
	conn->request_len = 0;
	conn->request_cap = 0;
	MemoryContextReset(request_context);
}

/*
 * Bytes of a connection still reading its request.  The head is kept
 * until it is complete (or too large), then parsed, routed and answered.
 * Returns how many of the bytes were the request's: those after its head
 * are the subscriber's once it has subscribed (a WebSocket client's
 * frames sent eagerly), and conn.c hands them to its framing.
 */
size_t
pgws_http_request(PgWsConn *conn, const uint8 *data, size_t len)
{
	int			max_head = pgws_max_header_size;
	int			limit = max_head + 4;	/* the head and its blank line */
	int			old_len;
	int			take;
	int			search_from;
	int			end = -1;
	int			i;
	size_t		skipped;
	size_t		rest;
	HttpRequest req;
	const char *error = NULL;
	int			status;
	MemoryContext old;

	if (request_context == NULL)
		request_context = AllocSetContextCreate(TopMemoryContext,
												"pg_ws request",
												ALLOCSET_DEFAULT_SIZES);

	skipped = skip_empty_lines(conn, data, len);
	data += skipped;
	len -= skipped;
	if (len == 0)
		return skipped;

	/* never keep more than the largest head allowed, and its blank line */
	old_len = conn->request_len;
	take = old_len >= limit ? 0 : (int) Min(len, (size_t) (limit - old_len));
	request_append(conn, data, take, limit);

	/*
	 * The empty line ending the head: CRLF, or LF alone, right after the
	 * last header line's own CRLF or LF (RFC 9112 2.2 lets a recipient take
	 * a lone LF for a line's end; then it does so everywhere).
	 */
	search_from = Max(old_len - 2, 0);
	for (i = search_from; i < conn->request_len; i++)
	{
		const char *r = conn->request;

		if (r[i] != '\n')
			continue;
		if ((i >= 1 && r[i - 1] == '\n') ||
			(i >= 2 && r[i - 1] == '\r' && r[i - 2] == '\n'))
		{
			end = i + 1;
			break;
		}
	}

	if (end < 0 || end > max_head)
	{
		if (end > max_head || conn->request_len > max_head)
		{
			pgws_http_refuse(conn, 431, NULL,
							 "request header fields too large: pg_ws.max_header_size exceeded");
			request_done(conn);
		}
		return skipped + len;
	}

	/* the bytes of this chunk after the head: frames sent eagerly */
	rest = len - (size_t) (end - old_len);

	/* parse, route and decide in the request's memory */
	old = MemoryContextSwitchTo(request_context);
	{
		char	   *head = conn->request;
		int			head_len = end;

		/* cut the final empty line */
		while (head_len > 0 && (head[head_len - 1] == '\n' || head[head_len - 1] == '\r'))
			head_len--;
		head[head_len] = '\0';
		status = parse_request(head, head_len, &req, &error);
		if (status != 0)
			pgws_http_refuse(conn, status, NULL, error);
		else
			route(conn, &req);
	}
	MemoryContextSwitchTo(old);
	request_done(conn);
	return skipped + len - rest;
}
