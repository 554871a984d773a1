/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP/1.1 request of a new connection: reading and parsing it,
 *	  routing it, answering what is not served, and the WebSocket upgrade
 *	  of /ws/.
 *
 * This file owns what pg_ws says over HTTP.  It must not keep connections
 * (conn.c does: the bytes it answers with go through pgws_conn_finish) nor
 * decide who may subscribe (it asks auth.c).
 *
 * Every request gets a real HTTP/1.1 answer: a status line, a content
 * length and Connection: close, so that any client reports what went
 * wrong.  The request head may be at most pg_ws.max_header_size bytes
 * (431 beyond); the whole request must arrive within
 * pg_ws.handshake_timeout (conn.c), however slowly its bytes come.  GET
 * and HEAD of / are the console page while pg_ws.console serves it
 * (console.c answers them; other methods on / get 405).  Otherwise only
 * GET is served (405), only /ws/ (404), only an Upgrade to websocket with
 * version 13 (400, 426), never h2c or HTTP/2 (400, 505).  The checks run
 * in that order, then the origin (403), the subprotocol (400, only "pg_ws"),
 * the token (401), and the query's since/epoch and events (400).  GET
 * /health and GET /metrics are metrics.c's.  Every refusal is counted and
 * logged by its reason, rate-limited (conn.c).
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

/* the headers pg_ws reads; lists are joined with ", ", cookies with "; " */
typedef struct HttpRequest
{
	char	   *method;
	char	   *target;
	char	   *version;
	char	   *path;
	char	   *query;			/* after '?', or NULL */
	char	   *host;
	char	   *upgrade;
	char	   *connection;
	char	   *ws_key;
	char	   *ws_version;
	char	   *ws_protocol;
	char	   *origin;
	char	   *authorization;
	char	   *cookie;
} HttpRequest;

typedef enum HeaderKind
{
	HEADER_SINGLE,				/* a second one is an error */
	HEADER_LIST,				/* comma-separated, may repeat */
	HEADER_COOKIE				/* may repeat, joined with "; " */
} HeaderKind;

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
	{"origin", offsetof(HttpRequest, origin), HEADER_SINGLE},
	{"authorization", offsetof(HttpRequest, authorization), HEADER_SINGLE},
	{"cookie", offsetof(HttpRequest, cookie), HEADER_COOKIE},
};

static const char *
status_text(int status)
{
	switch (status)
	{
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
 * Parse the request head (NUL-terminated, without its final empty line).
 * Returns 0, or the status to refuse with and *error.
 */
static int
parse_request(char *head, HttpRequest *req, const char **error)
{
	char	   *cursor = head;
	char	   *line = next_line(&cursor);
	char	   *sp1;
	char	   *sp2;
	char	   *p;

	memset(req, 0, sizeof(*req));

	/* request-line = method SP request-target SP HTTP-version */
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
		int			i;

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
				*error = "a header that may appear once appears twice";
				return 400;
			}
			else
				*field = psprintf("%s%s%s", *field,
								  known_headers[i].kind == HEADER_COOKIE ? "; " : ", ",
								  value);
			break;
		}
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
	char		raw[32];
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
	n = pg_b64_encode((char *) digest, (int) dlen, accept, (int) size - 1);
	if (n < 0)
		return false;
	accept[n] = '\0';
	return true;
}

/*
 * ?since=SEQ&epoch=E: where a resuming subscriber starts (broadcast.c).
 * Empty values count as absent, so that a client can always send both.
 * Returns false, having refused the request, when they make no sense.
 */
static bool
read_resume(PgWsConn *conn, const char *query)
{
	char	   *since;
	char	   *epoch;
	bool		bad_since;
	bool		bad_epoch;
	char	   *end;
	uint64		value;

	conn->sub.resume = false;
	if (query == NULL)
		return true;
	since = pgws_query_param(query, "since", &bad_since);
	epoch = pgws_query_param(query, "epoch", &bad_epoch);
	if (!bad_since && (since == NULL || since[0] == '\0'))
		return true;			/* a fresh start; any epoch is moot */

	errno = 0;
	value = bad_since ? 0 : strtou64(since, &end, 10);
	if (bad_since || !isdigit((unsigned char) since[0]) || *end != '\0' ||
		errno != 0)
	{
		pgws_http_refuse(conn, 400, NULL,
						 "since must be the seq of a pg_ws event (a decimal number)");
		return false;
	}
	if (bad_epoch || epoch == NULL || epoch[0] == '\0')
	{
		pgws_http_refuse(conn, 400, NULL,
						 "since needs the epoch of the event it was taken from (&epoch=)");
		return false;
	}
	conn->sub.resume = true;
	conn->sub.since = value;
	conn->sub.epoch_matches = strcmp(epoch, pgws_broadcast_epoch()) == 0;
	return true;
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
read_events_filter(PgWsConn *conn, const char *query)
{
	static const char bad_filter[] =
		"events must list at most 64 event names or prefixes ending in '*', separated by commas (as in events=client_create,employee_*); a name is a lower-case letter followed by lower-case letters, digits and underscores";
	bool		malformed;
	char	   *filter;
	char	   *p;
	int			npatterns = 0;
	PgWsEventSet set;

	/* in the connection's context: the filter lives as long as it */
	pgws_event_set_init(&conn->sub.filter, true);
	conn->sub.filter_text = NULL;
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
	conn->sub.filter = set;
	/* for pg_ws_connections; in the connection's context, as filter is */
	conn->sub.filter_text = set.all ? NULL : filter;
	return true;
}

/* route a complete request: an answer, or the upgrade of /ws/ */
static void
route(PgWsConn *conn, char *head)
{
	HttpRequest req;
	const char *error = NULL;
	int			status;
	char		accept[64];
	char		buf[LWS_PRE + 512];
	bool		with_protocol;
	PgWsAuthRequest areq;
	int			n;

	status = parse_request(head, &req, &error);
	if (status != 0)
	{
		pgws_http_refuse(conn, status, NULL, error);
		return;
	}
	/* the console page (console.c); with pg_ws.console off, / is a 404 */
	if (strcmp(req.path, "/") == 0 && pgws_console_served())
	{
		if (strcmp(req.method, "GET") == 0 || strcmp(req.method, "HEAD") == 0)
			pgws_console_answer(conn, strcmp(req.method, "HEAD") == 0, req.host);
		else
			pgws_http_refuse(conn, 405, "Allow: GET, HEAD\r\n",
							 "method not allowed: / is the pg_ws console page (GET)");
		return;
	}
	if (strcmp(req.method, "GET") != 0)
	{
		pgws_http_refuse(conn, 405, "Allow: GET\r\n",
						 "method not allowed: pg_ws serves GET /ws/ (a WebSocket upgrade)");
		return;
	}
	if (pgws_metrics_route(conn, req.path))
		return;
	if (strcmp(req.path, "/ws/") != 0)
	{
		pgws_http_refuse(conn, 404, NULL, "not found: the pg_ws endpoint is /ws/");
		return;
	}
	if (req.upgrade == NULL)
	{
		pgws_http_refuse(conn, 400, NULL,
						 "/ws/ is a WebSocket endpoint: connect with a WebSocket client");
		return;
	}
	if (!list_has_token(req.upgrade, "websocket", true))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "pg_ws upgrades only to websocket (Upgrade: websocket)");
		return;
	}
	if (strcmp(req.version, "HTTP/1.1") != 0)
	{
		pgws_http_refuse(conn, 400, NULL, "a WebSocket upgrade needs HTTP/1.1");
		return;
	}
	if (req.connection == NULL || !list_has_token(req.connection, "upgrade", true))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "a WebSocket upgrade needs Connection: Upgrade");
		return;
	}
	if (req.ws_version == NULL || strcmp(req.ws_version, "13") != 0)
	{
		pgws_http_refuse(conn, 426, "Sec-WebSocket-Version: 13\r\n",
						 "pg_ws speaks WebSocket version 13 (RFC 6455)");
		return;
	}
	if (req.ws_key == NULL || !ws_key_valid(req.ws_key))
	{
		pgws_http_refuse(conn, 400, NULL, "missing or malformed Sec-WebSocket-Key");
		return;
	}

	/*
	 * Who may subscribe (auth.c): the origin (403), then the token (401).
	 * The grant it makes goes with the connection.
	 */
	areq.origin = req.origin;
	areq.authorization = req.authorization;
	areq.cookie = req.cookie;
	areq.query = req.query;
	status = pgws_auth_upgrade(&areq, (int64) time(NULL), &conn->sub.grant, &error);
	if (status == 403)
	{
		pgws_http_refuse(conn, 403, NULL, error);
		return;
	}

	/*
	 * Only "pg_ws" may be selected.  libwebsockets dropped connections
	 * asking for others; we say why instead.
	 */
	with_protocol = req.ws_protocol != NULL;
	if (with_protocol && !list_has_token(req.ws_protocol, "pg_ws", false))
	{
		pgws_http_refuse(conn, 400, NULL,
						 "unsupported WebSocket subprotocol: connect without Sec-WebSocket-Protocol, or ask for \"pg_ws\"");
		return;
	}
	if (status == 401)
	{
		char		challenge[256];
		char		header[300];

		pgws_auth_challenge(error, challenge, sizeof(challenge));
		snprintf(header, sizeof(header), "WWW-Authenticate: %s\r\n", challenge);
		pgws_http_refuse(conn, 401, header, error);
		return;
	}
	Assert(status == 0);

	if (!read_resume(conn, req.query) || !read_events_filter(conn, req.query))
		return;

	if (!ws_accept(req.ws_key, accept, sizeof(accept)))
	{
		pgws_http_refuse(conn, 400, NULL, "could not compute Sec-WebSocket-Accept");
		return;
	}
	n = snprintf(buf + LWS_PRE, sizeof(buf) - LWS_PRE,
				 "HTTP/1.1 101 Switching Protocols\r\n"
				 "Upgrade: websocket\r\n"
				 "Connection: Upgrade\r\n"
				 "Sec-WebSocket-Accept: %s\r\n"
				 "%s"
				 "\r\n",
				 accept, with_protocol ? "Sec-WebSocket-Protocol: pg_ws\r\n" : "");
	pgws_conn_upgrade(conn, (uint8 *) buf + LWS_PRE, n);
}

/*
 * Bytes of a connection still reading its request.  The request is kept
 * until its head is complete (or too large), then routed; bytes after the
 * head go to the WebSocket reader once upgraded.
 */
void
pgws_http_request(PgWsConn *conn, const uint8 *data, size_t len)
{
	StringInfo	req;
	int			old_len;
	int			search_from;
	int			max_head = pgws_max_header_size;
	char	   *end = NULL;
	int			head_len;
	MemoryContext old;

	old = MemoryContextSwitchTo(conn->cxt);
	if (conn->request == NULL)
		conn->request = makeStringInfo();
	req = conn->request;

	/* never keep more than the largest head allowed, and its blank line */
	old_len = req->len;
	appendBinaryStringInfo(req, (const char *) data,
						   (int) Min(len, (size_t) (max_head + 4 - old_len)));

	/* the blank line ending the head: CRLF CRLF or, leniently, LF LF */
	search_from = Max(old_len - 3, 0);
	for (head_len = search_from; head_len < req->len; head_len++)
	{
		char		c = req->data[head_len];

		if (c != '\n')
			continue;
		if (head_len >= 1 && req->data[head_len - 1] == '\n')
		{
			end = req->data + head_len + 1;
			break;
		}
		if (head_len >= 3 && req->data[head_len - 1] == '\r' &&
			req->data[head_len - 2] == '\n' && req->data[head_len - 3] == '\r')
		{
			end = req->data + head_len + 1;
			break;
		}
	}

	if (end == NULL || end - req->data > max_head)
	{
		if (req->len > max_head)
			pgws_http_refuse(conn, 431, NULL,
							 "request header fields too large: pg_ws.max_header_size exceeded");
		MemoryContextSwitchTo(old);
		return;
	}

	{
		char	   *head = req->data;
		/* the bytes of this chunk after the head: frames sent eagerly */
		size_t		rest = len - ((end - req->data) - old_len);

		/* cut the final empty line; skip empty lines before the request */
		head_len = end - req->data;
		while (head_len > 0 && (head[head_len - 1] == '\n' || head[head_len - 1] == '\r'))
			head_len--;
		while (head_len > 0 && (*head == '\r' || *head == '\n'))
		{
			head++;
			head_len--;
		}
		head[head_len] = '\0';
		route(conn, head);
		if (conn->state == CONN_OPEN && rest > 0)
			pgws_ws_read(conn, data + len - rest, rest);
	}
	MemoryContextSwitchTo(old);
}
