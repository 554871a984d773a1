/*-------------------------------------------------------------------------
 *
 * sse.c
 *	  Server-Sent Events: the text/event-stream GET /events answers, and
 *	  the lines each message, heartbeat and close is written as.
 *
 * This file owns the SSE framing of a subscriber (pgws_sse_framing): the
 * answer's head, a message as "event:", "data:" and "id:" lines, the
 * comment lines that keep proxies from timing a quiet stream out, and the
 * comment that ends it.  It must not decide who may subscribe (auth.c,
 * http.c) nor what a subscriber is sent, nor when (broadcast.c, conn.c).
 *
 * A message is
 *		event: client_create
 *		data: {"event": "client_create", "data": {...}, "seq": N, "epoch": "E"}
 *		id: N@E
 * and an empty line: data is byte for byte the message /ws/ sends, and
 * the id its position, which a reconnecting EventSource sends back as
 * Last-Event-ID (http.c takes it as ?since=).  pg_ws's JSON is one line
 * (the queue and the WAL hold events as JSON Lines); should a message
 * ever hold a line break (JSON allows one between tokens), each line gets
 * its own "data:" field, so that nothing in a message can end it early
 * or add a field (an "id:" of its own).  An
 * event without a name (only pg_logical_emit_message() could make one)
 * has no "event:" line, and an EventSource sees it as "message".
 *
 * The stream has no Content-Length and no chunked encoding: it is an
 * HTTP/1.1 answer with Connection: close that ends when pg_ws closes the
 * socket (RFC 9112 6.3, item 8).  What the peer sends after its request
 * is read and ignored: an EventSource sends nothing more.  Nothing can
 * be said back to a subscriber that renews its token (/ws/'s auth
 * message), so one whose token expires is closed like any other; its
 * EventSource reconnects with what the page gives it then.
 *
 * src/sse.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

/*
 * The answer that opens the stream.  Cache-Control keeps caches from
 * storing it; X-Accel-Buffering: no tells nginx not to buffer it (the
 * README's proxy settings say the same for the proxy as a whole).  A
 * browser's request from another origin (an EventSource is a CORS
 * request) carries Origin, which auth.c has allowed by now: the page may
 * read the stream, and with credentials (http.c says when) with its
 * cookies, when it asked withCredentials.  The
 * first comment lets a client see the stream open before any event.
 * Returns the head in the current memory context (the request's), and
 * its length in *len.
 */
char *
pgws_sse_head(const char *origin, bool credentials, int *len)
{
	char	   *head;

	head = psprintf("HTTP/1.1 200 OK\r\n"
					"Content-Type: text/event-stream; charset=utf-8\r\n"
					"Cache-Control: no-cache\r\n"
					"Connection: close\r\n"
					"X-Accel-Buffering: no\r\n"
					"%s%s%s"
					"\r\n"
					": pg_ws events\n\n",
					origin ? "Access-Control-Allow-Origin: " : "",
					origin ? origin : "",
					!origin ? "" : credentials ?
					"\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n" :
					"\r\nVary: Origin\r\n");
	*len = (int) strlen(head);
	return head;
}

/* the length of the line break at s (CRLF, CR or LF), or 0 */
static inline int
line_break(const char *s, const char *end)
{
	if (*s == '\n')
		return 1;
	if (*s == '\r')
		return s + 1 < end && s[1] == '\n' ? 2 : 1;
	return 0;
}

/* may the name go in an "event:" line as it is? */
static bool
name_fits(const PgWsMessageText *m)
{
	if (m->name == NULL || m->name_len == 0)
		return false;
	for (uint32 i = 0; i < m->name_len; i++)
		if ((unsigned char) m->name[i] < 0x20 || m->name[i] == 0x7F)
			return false;
	return true;
}

#define EVENT_FIELD "event: "
#define DATA_FIELD "data: "
#define ID_FIELD "id: "

/* exactly the bytes sse_write writes */
static uint32
sse_size(const PgWsMessageText *m)
{
	const char *p = m->json;
	const char *end = m->json + m->len;
	uint32		lines = 1;
	uint32		breaks = 0;
	uint32		size;

	while (p < end)
	{
		const char *cr = memchr(p, '\r', end - p);
		const char *lf = memchr(p, '\n', end - p);
		const char *b = cr == NULL ? lf : lf == NULL ? cr : Min(cr, lf);
		int			n;

		if (b == NULL)
			break;
		n = line_break(b, end);
		lines++;
		breaks += n;
		p = b + n;
	}
	size = lines * (strlen(DATA_FIELD) + 1) + m->len - breaks;
	if (name_fits(m))
		size += strlen(EVENT_FIELD) + m->name_len + 1;
	size += strlen(ID_FIELD) + m->position_len + 1 + 1;
	return size;
}

static uint32
sse_write(uint8 *dst, const PgWsMessageText *m)
{
	uint8	   *d = dst;
	const char *p = m->json;
	const char *end = m->json + m->len;

#define PUT(s, n) (memcpy(d, (s), (n)), d += (n))
	if (name_fits(m))
	{
		PUT(EVENT_FIELD, strlen(EVENT_FIELD));
		PUT(m->name, m->name_len);
		*d++ = '\n';
	}
	for (;;)
	{
		const char *b = p;
		int			n = 0;

		while (b < end && (n = line_break(b, end)) == 0)
			b++;
		PUT(DATA_FIELD, strlen(DATA_FIELD));
		PUT(p, b - p);
		*d++ = '\n';
		if (b >= end)
			break;
		p = b + n;
	}
	PUT(ID_FIELD, strlen(ID_FIELD));
	PUT(m->position, m->position_len);
	*d++ = '\n';
	*d++ = '\n';
#undef PUT
	Assert((uint32) (d - dst) == sse_size(m));
	return (uint32) (d - dst);
}

/*
 * What the peer sends once the stream is open: ignored.  It may not
 * pipeline another request (the answer says Connection: close), and
 * reading on is how its close is noticed.
 */
static void
sse_read(PgWsConn *conn, const uint8 *data, size_t len)
{
}

static bool
write_bytes(PgWsConn *conn, const char *text, int len)
{
	return lws_write(conn->wsi, (uint8 *) text, len, LWS_WRITE_RAW) == len;
}

/*
 * Before any message: the last words of a close, a comment with the code
 * and reason /ws/ would close with (a client reading the stream by hand
 * sees why it ended; an EventSource reconnects), or a heartbeat.
 */
static int
sse_write_control(PgWsConn *conn)
{
	if (conn->close_due)
	{
		char		buf[200];
		int			n;

		conn->close_due = false;
		n = snprintf(buf, sizeof(buf), ": close %u %s\n\n",
					 (unsigned) conn->close_code, conn->close_reason);
		if (!write_bytes(conn, buf, Min(n, (int) sizeof(buf) - 1)))
			return -1;
		return 1;
	}
	if (conn->heartbeat_due)
	{
		static const char heartbeat[] = ": heartbeat\n\n";

		conn->heartbeat_due = false;
		if (!write_bytes(conn, heartbeat, strlen(heartbeat)))
			return -1;
	}
	return 0;
}

const PgWsFramingOps pgws_sse_framing = {
	.size = sse_size,
	.write = sse_write,
	.read = sse_read,
	.write_control = sse_write_control,
};
