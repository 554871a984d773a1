/*-------------------------------------------------------------------------
 *
 * console.c
 *	  The live console page: whether GET / serves it (pg_ws.console), the
 *	  installed HTML file it is, and the HTTP answer that carries it.
 *
 * This file owns the page and its answer.  It must not route requests
 * (http.c does, and hands GET / and HEAD / here only while
 * pgws_console_served() and, without tokens, only for a loopback Host, as
 * auth.c decides), write answers or keep connections (it says what the
 * answer is, a PgWsAnswer; http.c writes it), or decide who may
 * subscribe: the page is
 * static and holds no data; it subscribes to /ws/ like any other client,
 * with a token when pg_ws.auth asks for one (auth.c decides).
 *
 * The page is console/pg_ws_console.html, installed with the extension
 * into SHAREDIR/extension/.  The worker reads it on the first request
 * after it starts or reloads and keeps it; a file it cannot read is
 * logged once and answered with 503, and read again on the next request.
 *
 * The page's inline <script> and <style> elements run under a strict
 * Content-Security-Policy that names them by their SHA-256 hashes,
 * computed here from the file as read, so that an edited file still works
 * and nothing else inline (injected markup, event handler attributes)
 * ever does.  Each element must be written exactly "<script>" or
 * "<style>", without attributes.  Images may come from wherever events
 * point (pg_ws.media_url): img-src allows http: and https:.
 *
 * A browser's WebSocket never tells the page why an upgrade failed (a 401
 * and a server that is down look the same), so the answer also says
 * whether tokens are required, in a header, Pg-Ws-Auth: jwt or none: the
 * page asks with HEAD / when it could not connect, and then prompts for a
 * token rather than retrying for ever.
 *
 * src/console.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/base64.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#define CONSOLE_FILE_NAME	"pg_ws_console.html"
/* the page is a few tens of kB; anything this large is not it */
#define CONSOLE_MAX_SIZE	(1024 * 1024)
/* at most this many inline elements of each kind get a hash */
#define MAX_INLINE_ELEMENTS 8

/* the page as last read, in console_context */
static MemoryContext console_context = NULL;
static char *page = NULL;
static size_t page_len = 0;
static char *script_hashes = NULL;	/* "'sha256-...' ..." or "'none'" */
static char *style_hashes = NULL;

/* the last read error logged, so that a missing file is logged once */
static char *logged_error = NULL;
static int	read_errno = 0;		/* errno of the last failed read, for the
								 * log's errcode */

/* what pgws_console_report() last said: -1 nothing yet, else served */
static int	reported_served = -1;

/*
 * Is GET / the console page now?  pg_ws.console = auto: while every
 * address the worker listens on is loopback (worker.c).
 */
bool
pgws_console_served(void)
{
	switch ((PgWsConsoleMode) pgws_console_mode)
	{
		case PGWS_CONSOLE_ON:
			return true;
		case PGWS_CONSOLE_OFF:
			return false;
		case PGWS_CONSOLE_AUTO:
			break;
	}
	return pgws_worker_listens_on_loopback_only();
}

/*
 * Log whether the page is served when that changes: at start, after a
 * reload, when the listening sockets move.  An administrator who opens
 * the port in a browser and gets 404 finds the reason here.
 */
void
pgws_console_report(void)
{
	bool		served = pgws_console_served();

	if (reported_served == (int) served)
		return;
	if (served)
		ereport(LOG,
				(errmsg("pg_ws serves its console page on GET /"),
				 errdetail(pgws_console_mode == PGWS_CONSOLE_ON ?
						   "pg_ws.console is on." :
						   "pg_ws.console is auto and pg_ws listens on loopback addresses only.")));
	else if (pgws_console_mode == PGWS_CONSOLE_AUTO)
		ereport(LOG,
				(errmsg("pg_ws does not serve its console page: it listens on an address that is not loopback"),
				 errhint("Set pg_ws.console = on to serve it anyway.")));
	else if (reported_served != -1)
		ereport(LOG,
				(errmsg("pg_ws no longer serves its console page: pg_ws.console is off")));
	reported_served = served;
}

/* after a reload: read the file again on the next request */
void
pgws_console_reload(void)
{
	if (console_context != NULL)
		MemoryContextReset(console_context);
	page = NULL;
	page_len = 0;
	script_hashes = NULL;
	style_hashes = NULL;
	pgws_console_report();
}

/*
 * The CSP sources of the page's inline elements <tag>...</tag>: their
 * SHA-256 hashes, as browsers compute them, over the element's text after
 * HTML's newline normalisation (CR LF and lone CR become LF).  'none' when
 * the page has none.
 */
static char *
inline_hashes(const char *tag)
{
	char	   *open_tag = psprintf("<%s>", tag);
	char	   *close_tag = psprintf("</%s>", tag);
	StringInfoData out;
	const char *p = page;
	const char *end = page + page_len;
	int			n = 0;

	initStringInfo(&out);
	while (n < MAX_INLINE_ELEMENTS && (p = strchr(p, '<')) != NULL)
	{
		const char *text;
		const char *stop;
		StringInfoData normal;
		unsigned char digest[EVP_MAX_MD_SIZE];
		unsigned int dlen = 0;
		char		b64[64];
		int			blen;
		const char *q;

		/* a comment may mention the tags: skip it, as the browser does */
		if (strncmp(p, "<!--", 4) == 0)
		{
			stop = strstr(p + 4, "-->");
			if (stop == NULL)
				break;
			p = stop + 3;
			continue;
		}
		if (strncmp(p, open_tag, strlen(open_tag)) != 0)
		{
			p++;
			continue;
		}
		text = p + strlen(open_tag);
		stop = strstr(text, close_tag);
		if (stop == NULL)
			stop = end;
		initStringInfo(&normal);
		for (q = text; q < stop; q++)
		{
			if (*q == '\r')
			{
				appendStringInfoChar(&normal, '\n');
				if (q + 1 < stop && q[1] == '\n')
					q++;
			}
			else
				appendStringInfoChar(&normal, *q);
		}
		if (EVP_Digest(normal.data, normal.len, digest, &dlen, EVP_sha256(), NULL) &&
			(blen = pg_b64_encode((pgws_b64_byte *) digest, (int) dlen, b64, sizeof(b64) - 1)) > 0)
		{
			b64[blen] = '\0';
			appendStringInfo(&out, "%s'sha256-%s'", n > 0 ? " " : "", b64);
			n++;
		}
		pfree(normal.data);
		p = stop;
	}
	if (n == 0)
		appendStringInfoString(&out, "'none'");
	return out.data;
}

/*
 * Read the page into console_context.  Returns NULL, or why not (for the
 * log; the peer gets a generic 503).  Plain read(2): the worker is not in
 * a transaction, and nothing here may raise an error halfway.
 */
static char *
read_page(void)
{
	char		share[MAXPGPATH];
	char		path[MAXPGPATH];
	struct stat st;
	int			fd;
	char	   *buf;
	size_t		done = 0;
	MemoryContext old;

	get_share_path(my_exec_path, share);
	snprintf(path, sizeof(path), "%s/extension/%s", share, CONSOLE_FILE_NAME);

	read_errno = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		read_errno = errno;
		return psprintf("could not open file \"%s\": %m", path);
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CONSOLE_MAX_SIZE)
	{
		char	   *why;

		if (fstat(fd, &st) < 0)
		{
			read_errno = errno;
			why = psprintf("could not stat file \"%s\": %m", path);
		}
		else if (!S_ISREG(st.st_mode))
			why = psprintf("\"%s\" is not a regular file", path);
		else
			why = psprintf("file \"%s\" is larger than %d bytes", path, CONSOLE_MAX_SIZE);
		close(fd);
		return why;
	}

	if (console_context == NULL)
		console_context = AllocSetContextCreate(TopMemoryContext, "pg_ws console",
												ALLOCSET_DEFAULT_SIZES);
	buf = MemoryContextAlloc(console_context, st.st_size + 1);
	while (done < (size_t) st.st_size)
	{
		ssize_t		n = read(fd, buf + done, st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			char	   *why;

			read_errno = n < 0 ? errno : 0;
			why = n < 0 ?
				psprintf("could not read file \"%s\": %m", path) :
				psprintf("file \"%s\" shrank while it was read", path);

			close(fd);
			MemoryContextReset(console_context);
			return why;
		}
		done += n;
	}
	close(fd);
	buf[done] = '\0';

	page = buf;
	page_len = done;
	old = MemoryContextSwitchTo(console_context);
	script_hashes = inline_hashes("script");
	style_hashes = inline_hashes("style");
	MemoryContextSwitchTo(old);
	return NULL;
}

/*
 * The Host header as a CSP host-source, for connect-src: browsers that do
 * not yet let 'self' match ws: and wss: need the host named.  Only what a
 * host and port may contain; anything else is left out ('self' remains).
 */
static bool
host_is_plain(const char *host)
{
	const char *p;

	if (host == NULL || host[0] == '\0' || strlen(host) > 255)
		return false;
	for (p = host; *p; p++)
		if (!isalnum((unsigned char) *p) && strchr(".-:[]", *p) == NULL)
			return false;
	return true;
}

/* GET / or HEAD /: the page, or 503 when it cannot be read */
void
pgws_console_answer(bool head_only, const char *host, PgWsAnswer *a)
{
	StringInfoData headers;

	memset(a, 0, sizeof(*a));
	if (page == NULL)
	{
		char	   *why = read_page();

		if (why != NULL)
		{
			if (logged_error == NULL || strcmp(logged_error, why) != 0)
			{
				errno = read_errno;
				ereport(LOG,
						(read_errno != 0 ? errcode_for_file_access() :
						 errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("pg_ws cannot serve its console page: %s", why),
						 errhint("The page is installed with the extension (make install); GET / answers 503 until it can be read.")));
				if (logged_error)
					pfree(logged_error);
				logged_error = MemoryContextStrdup(TopMemoryContext, why);
			}
			pfree(why);
			a->status = 503;
			a->headers = "Cache-Control: no-store\r\n";
			a->body = "the pg_ws console page is not installed or cannot be read (see the server log)";
			return;
		}
		if (logged_error)
		{
			pfree(logged_error);
			logged_error = NULL;
		}
	}

	initStringInfo(&headers);
	appendStringInfo(&headers,
					 "Content-Security-Policy: default-src 'none'; script-src %s; style-src %s; "
					 "img-src http: https: data:; connect-src 'self'",
					 script_hashes, style_hashes);
	if (host_is_plain(host))
		appendStringInfo(&headers, " ws://%s wss://%s", host, host);
	appendStringInfo(&headers,
					 "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
					 "X-Content-Type-Options: nosniff\r\n"
					 "Cache-Control: no-store\r\n"
					 "Referrer-Policy: no-referrer\r\n"
					 "Pg-Ws-Auth: %s\r\n",
					 pgws_auth_mode == PGWS_AUTH_JWT ? "jwt" : "none");
	a->status = 200;
	a->content_type = "text/html; charset=utf-8";
	a->headers = headers.data;
	a->body = page;
	a->body_len = page_len;
	a->head_only = head_only;
}
