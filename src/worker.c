/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pg_ws background worker: its life (signals, reload, postmaster
 *	  death), its libwebsockets loop, its listening sockets and the HTTP
 *	  routing of /ws/.
 *
 * This file owns the process and its file descriptors.  What is sent to
 * whom lives in broadcast.c; this file only tells it about connections.
 *
 * One poll loop, no timers for events.  libwebsockets' own poll() waits on
 * everything: the listening sockets, the subscribers, the queue's eventfd
 * (written by committing backends and by our own signal handlers) and the
 * postmaster's death pipe, all adopted as raw file descriptors.  A commit
 * therefore wakes the worker at once, and SIGTERM, SIGHUP and postmaster
 * death do too.  Timers only keep house: the end of the reconnect grace,
 * listen retries, a once-a-second postmaster check behind the death pipe,
 * the bound on saying goodbye at exit, and each subscriber's token expiry
 * (auth glue, below).
 *
 * We bind the listening sockets ourselves rather than letting
 * libwebsockets do it, so that pg_ws.listen_addresses takes a list of
 * addresses and host names the way PostgreSQL's listen_addresses does, and
 * so that a reload can move them without dropping any subscriber.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "auth.h"

#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/procsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#define MAX_LISTEN_SOCKETS		64
#define LISTEN_BACKLOG			128
#define LISTEN_RETRY_SECONDS	5

/* what a raw descriptor adopted into the loop is for */
typedef enum WatchKind
{
	WATCH_WAKEUP,				/* the queue's eventfd */
	WATCH_POSTMASTER,			/* readable when the postmaster dies */
	WATCH_LISTEN				/* a listening socket */
} WatchKind;

typedef struct Watch
{
	WatchKind	kind;
	int			fd;
	struct lws *wsi;
} Watch;

static volatile sig_atomic_t got_sigterm = false;

static struct lws_context *context = NULL;
static struct lws_vhost *vhost = NULL;

static Watch wakeup_watch = {WATCH_WAKEUP, -1, NULL};
static Watch postmaster_watch = {WATCH_POSTMASTER, -1, NULL};
static Watch listen_watches[MAX_LISTEN_SOCKETS];
static int	nlisten = 0;

/* the settings the listening sockets were bound with */
static char *bound_addresses = NULL;
static int	bound_port = 0;

static lws_sorted_usec_list_t listen_retry_sul;
static lws_sorted_usec_list_t grace_sul;

static int	fd_limit = 0;

/*
 * Signal handlers: note the signal, then wake our poll() through the
 * eventfd, which is the one thing libwebsockets waits on that we can write
 * from a signal handler.
 */
static void
wake_self(void)
{
	uint64		one = 1;
	ssize_t		rc;

	rc = write(pgws_queue_wakeup_fd(), &one, sizeof(one));
	(void) rc;
}

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	wake_self();
	SetLatch(MyLatch);
	errno = save_errno;
}

/* procsignals (barriers, memory context logging...) set our latch, which
 * libwebsockets does not watch: wake it too */
static void
handle_sigusr1(SIGNAL_ARGS)
{
	int			save_errno = errno;

	procsignal_sigusr1_handler(postgres_signal_arg);
	wake_self();
	errno = save_errno;
}

static void
handle_sighup(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ConfigReloadPending = true;
	wake_self();
	SetLatch(MyLatch);
	errno = save_errno;
}

/* libwebsockets' errors and warnings go to the server log */
static void
log_lws(int level, const char *line)
{
	int			len = strlen(line);

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	ereport(LOG,
			(errmsg_internal("pg_ws: libwebsockets: %.*s", len, line)));
}

static bool
adopt_watch(Watch *watch)
{
	lws_sock_file_fd_type desc;

	desc.filefd = watch->fd;
	watch->wsi = lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_RAW_FILE_DESC,
											desc, "pg_ws-fd", NULL);
	if (watch->wsi == NULL)
		return false;
	lws_set_opaque_user_data(watch->wsi, watch);
	return true;
}

static void close_listeners(void);
static void open_listeners(void);

static void
listen_retry(lws_sorted_usec_list_t *sul)
{
	if (nlisten == 0)
		open_listeners();
}

/*
 * The death pipe wakes us when the postmaster dies; this once-a-second look
 * is only the fallback should that wake-up ever be missed.
 */
#define POSTMASTER_CHECK_SECONDS 1

static lws_sorted_usec_list_t postmaster_sul;

static void
postmaster_check(lws_sorted_usec_list_t *sul)
{
	if (!PostmasterIsAlive())
		proc_exit(1);
	lws_sul_schedule(context, 0, &postmaster_sul, postmaster_check,
					 (lws_usec_t) POSTMASTER_CHECK_SECONDS * LWS_US_PER_SEC);
}

static void
grace_over(lws_sorted_usec_list_t *sul)
{
	pgws_broadcast_end_grace();
}

/* bind one listening socket, or log why not */
static void
listen_on(struct addrinfo *addr, const char *name)
{
	char		host[NI_MAXHOST];
	int			fd;
	int			one = 1;
	Watch	   *watch;

	if (nlisten >= MAX_LISTEN_SOCKETS)
		return;
	if (getnameinfo(addr->ai_addr, addr->ai_addrlen, host, sizeof(host),
					NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(host, name, sizeof(host));

	fd = socket(addr->ai_family, addr->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				addr->ai_protocol);
	if (fd < 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("pg_ws could not create a socket for address \"%s\": %m", host)));
		return;
	}
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ai_family == AF_INET6)
		(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, addr->ai_addr, addr->ai_addrlen) < 0 ||
		listen(fd, LISTEN_BACKLOG) < 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("pg_ws could not listen on address \"%s\", port %d: %m",
						host, pgws_port),
				 errhint("Is another server already running on port %d? Change pg_ws.port or pg_ws.listen_addresses.",
						 pgws_port)));
		close(fd);
		return;
	}

	watch = &listen_watches[nlisten];
	watch->kind = WATCH_LISTEN;
	watch->fd = fd;
	if (!adopt_watch(watch))
	{
		ereport(LOG,
				(errmsg("pg_ws could not watch its listening socket on \"%s\"", host)));
		return;					/* libwebsockets closed fd */
	}
	nlisten++;
	ereport(LOG,
			(errmsg("pg_ws listening on %s, port %d, path /ws/", host, pgws_port)));
}

/* bind every address of pg_ws.listen_addresses */
static void
open_listeners(void)
{
	char	   *rawstring = pstrdup(pgws_listen_addresses);
	char		port[16];
	List	   *names;
	ListCell   *lc;

	snprintf(port, sizeof(port), "%d", pgws_port);
	if (!SplitGUCList(rawstring, ',', &names))
		names = NIL;			/* the check hook has already refused this */

	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		struct addrinfo hints;
		struct addrinfo *addrs;
		struct addrinfo *addr;
		int			rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		rc = getaddrinfo(strcmp(name, "*") == 0 ? NULL : name, port, &hints, &addrs);
		if (rc != 0)
		{
			ereport(LOG,
					(errmsg("pg_ws could not resolve \"%s\" in pg_ws.listen_addresses: %s",
							name, gai_strerror(rc))));
			continue;
		}
		for (addr = addrs; addr != NULL; addr = addr->ai_next)
			listen_on(addr, name);
		freeaddrinfo(addrs);
	}
	list_free(names);
	pfree(rawstring);

	if (bound_addresses)
		pfree(bound_addresses);
	bound_addresses = MemoryContextStrdup(TopMemoryContext, pgws_listen_addresses);
	bound_port = pgws_port;

	if (nlisten == 0 && pgws_listen_addresses[0] != '\0')
	{
		ereport(WARNING,
				(errmsg("pg_ws is not listening on any address; retrying every %d seconds",
						LISTEN_RETRY_SECONDS),
				 errdetail("Events are still drained from the queue, so writers are not held up.")));
		lws_sul_schedule(context, 0, &listen_retry_sul, listen_retry,
						 (lws_usec_t) LISTEN_RETRY_SECONDS * LWS_US_PER_SEC);
	}
}

static void
close_listeners(void)
{
	int			i;

	/* closing the wsi closes the socket; subscribers stay connected */
	for (i = 0; i < nlisten; i++)
		lws_set_timeout(listen_watches[i].wsi, PENDING_TIMEOUT_USER_OK,
						LWS_TO_KILL_SYNC);
	nlisten = 0;
}

/*
 * A descriptor kept in reserve: when accept() fails for lack of descriptors
 * the pending connection would keep the listening socket readable and spin
 * the loop, so we free the reserve, accept and close it, and take the
 * reserve back.
 */
static int	reserve_fd = -1;

/* accept every pending connection and hand it to libwebsockets as HTTP */
static void
accept_connections(Watch *watch)
{
	for (;;)
	{
		int			fd = accept4(watch->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int			save_errno = errno;
		int			one = 1;

		if (fd < 0)
		{
			if (save_errno == ECONNABORTED || save_errno == EINTR)
				continue;
			if (save_errno == EAGAIN || save_errno == EWOULDBLOCK)
				return;
			errno = save_errno;
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("pg_ws could not accept a connection: %m")));
			if ((save_errno == EMFILE || save_errno == ENFILE) && reserve_fd >= 0)
			{
				close(reserve_fd);
				fd = accept4(watch->fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					close(fd);
				reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			}
			return;
		}
		/* libwebsockets indexes its tables by descriptor number */
		if (fd >= fd_limit)
		{
			ereport(LOG,
					(errmsg("pg_ws is refusing a connection: too many open descriptors")));
			close(fd);
			continue;
		}
		(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (lws_adopt_socket_vhost(vhost, fd) == NULL)
			ereport(LOG,
					(errmsg("pg_ws could not take over an accepted connection")));
	}
}

/* protocol "pg_ws-fd": the raw descriptors we watch */
static int
callback_fd(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	Watch	   *watch;

	if (reason != LWS_CALLBACK_RAW_RX_FILE && reason != LWS_CALLBACK_RAW_CLOSE_FILE)
		return 0;
	watch = (Watch *) lws_get_opaque_user_data(wsi);
	if (watch == NULL)
		return 0;

	switch (watch->kind)
	{
		case WATCH_WAKEUP:
			if (reason == LWS_CALLBACK_RAW_RX_FILE)
				pgws_broadcast_drain_queue();
			break;
		case WATCH_POSTMASTER:
			if (!PostmasterIsAlive())
				proc_exit(1);
			break;
		case WATCH_LISTEN:
			if (reason == LWS_CALLBACK_RAW_RX_FILE)
				accept_connections(watch);
			break;
	}
	return 0;
}

static bool
is_ws_path(struct lws *wsi)
{
	char		uri[64];

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0)
		return false;
	return strcmp(uri, "/ws/") == 0;
}

/*
 * libwebsockets drops, without a word, a client that asks for subprotocols
 * none of which is ours ("pg_ws").  Find those first, to refuse them with
 * an answer that says why.
 */
static bool
subprotocol_acceptable(struct lws *wsi)
{
	char		list[256];
	char	   *tok;
	char	   *save;
	int			len = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);

	if (len <= 0)
		return true;
	if (len >= (int) sizeof(list) ||
		lws_hdr_copy(wsi, list, sizeof(list), WSI_TOKEN_PROTOCOL) < 0)
		return false;
	for (tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
		if (strcmp(tok, "pg_ws") == 0)
			return true;
	return false;
}

/* answer a plain HTTP request with a status and a one-line body */
static int
http_status(struct lws *wsi, unsigned int status, const char *body)
{
	if (lws_return_http_status(wsi, status, body))
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/*
 * Refuse a WebSocket upgrade with an HTTP status.  lws_return_http_status()
 * would answer an upgrade request as HTTP/1.0, which strict clients reject
 * as malformed, so the response is written here.  extra_headers is "" or
 * header lines each ending in CRLF.  Returns 1: "we answered".
 */
static int
refuse_upgrade_with(struct lws *wsi, const char *status_line,
					const char *extra_headers, const char *body)
{
	char		buf[LWS_PRE + 1024];
	int			n;

	n = snprintf(buf + LWS_PRE, sizeof(buf) - LWS_PRE,
				 "HTTP/1.1 %s\r\n"
				 "%s"
				 "content-type: text/plain; charset=utf-8\r\n"
				 "content-length: %zu\r\n"
				 "connection: close\r\n"
				 "\r\n%s",
				 status_line, extra_headers, strlen(body), body);
	if (n < 0 || n >= (int) sizeof(buf) - LWS_PRE)
		return -1;
	if (lws_write(wsi, (unsigned char *) buf + LWS_PRE, n,
				  LWS_WRITE_HTTP_HEADERS) != n)
		return -1;
	return 1;
}

static int
refuse_upgrade(struct lws *wsi, const char *status_line, const char *body)
{
	return refuse_upgrade_with(wsi, status_line, "", body);
}

/* ----------------------------------------------------------------------
 * Auth glue (issue 5).  Marked because it is redone with the new
 * transport: what lasts is auth.h's interface.  Here libwebsockets' view
 * of an upgrade request becomes a PgWsAuthRequest, a refusal becomes a
 * real HTTP/1.1 401 or 403, and the grant is handed from the upgrade to
 * the established connection.
 * ---------------------------------------------------------------------- */

/* refusals are logged at most once per this many seconds, with a count */
#define REFUSAL_LOG_SECONDS 10

static MemoryContext upgrade_context = NULL;

/*
 * libwebsockets frees and reallocates the per-session memory between
 * HTTP_CONFIRM_UPGRADE and ESTABLISHED (it binds the protocol anew), but
 * calls both in one go for one connection: the grant waits here.
 */
static struct lws *granted_wsi = NULL;
static PgWsGrant granted;

static char *
copy_header(struct lws *wsi, enum lws_token_indexes h)
{
	int			len = lws_hdr_total_length(wsi, h);
	char	   *buf;

	if (len <= 0)
		return NULL;
	buf = palloc(len + 1);
	if (lws_hdr_copy(wsi, buf, len + 1, h) < 0)
		return NULL;
	return buf;
}

/*
 * Every Cookie header, joined with "; ".  lws_hdr_copy() would join them
 * with nothing at all.
 */
static char *
copy_cookies(struct lws *wsi)
{
	int			len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COOKIE);
	StringInfoData out;
	char	   *frag;
	int			i;

	if (len <= 0)
		return NULL;
	initStringInfo(&out);
	frag = palloc(len + 1);
	for (i = 0; lws_hdr_copy_fragment(wsi, frag, len + 1, WSI_TOKEN_HTTP_COOKIE, i) >= 0; i++)
	{
		if (i > 0)
			appendStringInfoString(&out, "; ");
		appendStringInfoString(&out, frag);
	}
	return out.data;
}

static void
append_percent_encoded(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(out, c);
		else
			appendStringInfo(out, "%%%02X", c);
	}
}

/*
 * The query string, percent-encoded again: libwebsockets hands over its
 * arguments split at '&' and already decoded, and auth.c wants the query
 * as it was sent.
 */
static char *
copy_query(struct lws *wsi)
{
	int			len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
	StringInfoData out;
	char	   *frag;
	int			i;

	if (len <= 0)
		return NULL;
	initStringInfo(&out);
	frag = palloc(len + 1);
	for (i = 0; lws_hdr_copy_fragment(wsi, frag, len + 1, WSI_TOKEN_HTTP_URI_ARGS, i) >= 0; i++)
	{
		char	   *eq = strchr(frag, '=');

		if (i > 0)
			appendStringInfoChar(&out, '&');
		if (eq != NULL)
			*eq = '\0';
		append_percent_encoded(&out, frag);
		if (eq != NULL)
		{
			appendStringInfoChar(&out, '=');
			append_percent_encoded(&out, eq + 1);
		}
	}
	return out.data;
}

/* one LOG line per REFUSAL_LOG_SECONDS, so that a flood cannot fill the log */
static void
log_refusal(int status, const char *reason)
{
	static time_t last = 0;
	static int	suppressed = 0;
	time_t		now = time(NULL);

	if (last != 0 && now - last < REFUSAL_LOG_SECONDS)
	{
		suppressed++;
		return;
	}
	ereport(LOG,
			(errmsg("pg_ws refused a subscriber with HTTP %d: %s", status, reason),
			 suppressed > 0 ?
			 errdetail("%d more subscribers were refused since the previous such message.",
					   suppressed) : 0));
	last = now;
	suppressed = 0;
}

/* 0 to go on with the upgrade, or what the callback must return */
static int
authorize_upgrade(struct lws *wsi)
{
	PgWsAuthRequest req;
	PgWsGrant	grant;
	const char *reason = NULL;
	MemoryContext old;
	int			status;
	int			rc = 0;

	if (upgrade_context == NULL)
		upgrade_context = AllocSetContextCreate(TopMemoryContext,
												"pg_ws upgrade",
												ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(upgrade_context);
	req.authorization = copy_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	req.cookie = copy_cookies(wsi);
	req.query = copy_query(wsi);
	req.origin = copy_header(wsi, WSI_TOKEN_ORIGIN);
	status = pgws_auth_upgrade(&req, (int64) time(NULL), &grant, &reason);
	if (status == 0)
	{
		granted = grant;
		granted_wsi = wsi;
	}
	else
	{
		char		challenge[256];
		char	   *headers;
		char	   *body = psprintf("%s\n", reason);

		log_refusal(status, reason);
		if (status == 401)
		{
			pgws_auth_challenge(reason, challenge, sizeof(challenge));
			headers = psprintf("www-authenticate: %s\r\n", challenge);
			rc = refuse_upgrade_with(wsi, "401 Unauthorized", headers, body);
		}
		else
			rc = refuse_upgrade_with(wsi, "403 Forbidden", "", body);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(upgrade_context);
	return rc;
}

/* ------------------------------------------------- end of the auth glue */

/* protocol "pg_ws": HTTP requests and /ws/ subscribers */
static int
callback_ws(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	struct PgWsSubscriber *sub = (struct PgWsSubscriber *) user;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			/* a plain request: only upgrades are served */
			if (is_ws_path(wsi))
				return http_status(wsi, HTTP_STATUS_BAD_REQUEST,
								   "/ws/ is a WebSocket endpoint: connect with a WebSocket client");
			return http_status(wsi, HTTP_STATUS_NOT_FOUND, "not found: the pg_ws endpoint is /ws/");

		case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
			if (!is_ws_path(wsi))
				return refuse_upgrade(wsi, "404 Not Found",
									  "not found: the pg_ws endpoint is /ws/\n");
			if (!subprotocol_acceptable(wsi))
				return refuse_upgrade(wsi, "400 Bad Request",
									  "unsupported WebSocket subprotocol: connect without Sec-WebSocket-Protocol, or ask for \"pg_ws\"\n");
			{
				int			rc = authorize_upgrade(wsi);	/* auth glue */

				if (rc != 0)
					return rc;
			}
			if (pgws_subscriber_count() >= pgws_max_connections)
			{
				ereport(LOG,
						(errmsg("pg_ws is refusing a subscriber: pg_ws.max_connections (%d) reached",
								pgws_max_connections)));
				return refuse_upgrade(wsi, "503 Service Unavailable",
									  "too many subscribers: pg_ws.max_connections reached\n");
			}
			return 0;

		case LWS_CALLBACK_ESTABLISHED:
			/* auth glue: no grant for this connection, no subscription */
			if (granted_wsi != wsi)
				return -1;
			granted_wsi = NULL;
			pgws_subscriber_open(wsi, sub, &granted);
			return 0;

		case LWS_CALLBACK_SERVER_WRITEABLE:
			return pgws_subscriber_writable(wsi, sub);

		case LWS_CALLBACK_RECEIVE:
			/* auth glue: an auth message extends the grant; the rest is ignored */
			pgws_subscriber_receive(wsi, sub, (const char *) in, len);
			return 0;

		case LWS_CALLBACK_TIMER:
			/* auth glue: the grant's expiry */
			pgws_subscriber_timer(wsi, sub);
			return 0;

		case LWS_CALLBACK_CLOSED:
			pgws_subscriber_close(sub);
			return 0;

		default:
			return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static struct lws_protocols protocols[] = {
	{"pg_ws", callback_ws, 0, 0, 0, NULL, 0},
	{"pg_ws-fd", callback_fd, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static void
server_start(bool restart)
{
	struct lws_context_creation_info info;
	struct rlimit rlim;

	lws_set_log_level(LLL_ERR | LLL_WARN, log_lws);

	/* libwebsockets sizes its descriptor tables by this */
	fd_limit = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rlim) == 0 && rlim.rlim_cur < (rlim_t) fd_limit)
		fd_limit = (int) rlim.rlim_cur;

	protocols[0].per_session_data_size = pgws_subscriber_size();

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.fd_limit_per_thread = fd_limit;
	info.gid = -1;
	info.uid = -1;
	context = lws_create_context(&info);
	if (context == NULL)
		ereport(ERROR,
				(errmsg("pg_ws could not create its libwebsockets context")));

	memset(&info, 0, sizeof(info));
	info.vhost_name = "pg_ws";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.server_string = "pg_ws";
	vhost = lws_create_vhost(context, &info);
	if (vhost == NULL)
		ereport(ERROR,
				(errmsg("pg_ws could not create its libwebsockets vhost")));

	wakeup_watch.fd = pgws_queue_wakeup_fd();
	postmaster_watch.fd = postmaster_alive_fds[POSTMASTER_FD_WATCH];
	if (!adopt_watch(&wakeup_watch) || !adopt_watch(&postmaster_watch))
		ereport(ERROR,
				(errmsg("pg_ws could not watch its wake-up descriptors")));

	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	open_listeners();
	postmaster_check(&postmaster_sul);

	if (restart && pgws_reconnect_grace_ms > 0)
		lws_sul_schedule(context, 0, &grace_sul, grace_over,
						 (lws_usec_t) pgws_reconnect_grace_ms * LWS_US_PER_MS);
}

/* after a reload: move the listening sockets if their settings changed */
static void
server_reconfigure(void)
{
	if (bound_port == pgws_port &&
		strcmp(bound_addresses, pgws_listen_addresses) == 0)
		return;
	ereport(LOG,
			(errmsg("pg_ws is moving its listening sockets to pg_ws.listen_addresses '%s', pg_ws.port %d",
					pgws_listen_addresses, pgws_port)));
	lws_sul_cancel(&listen_retry_sul);
	close_listeners();
	open_listeners();
}

/*
 * Give subscribers their close frame (pgws_broadcast_shutdown asked for
 * it), but wait no more than SHUTDOWN_CLOSE_MS for them: the postmaster may
 * be stopping, and a subscriber that does not read never takes its frame.
 */
#define SHUTDOWN_CLOSE_MS 500

static lws_sorted_usec_list_t close_sul;

static void
close_wait_over(lws_sorted_usec_list_t *sul)
{
	/* nothing to do: firing made lws_service() return */
}

static void
close_subscribers(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   SHUTDOWN_CLOSE_MS);

	/* the timer only makes lws_service() return by the deadline */
	lws_sul_schedule(context, 0, &close_sul, close_wait_over,
					 (lws_usec_t) SHUTDOWN_CLOSE_MS * LWS_US_PER_MS);
	while (pgws_subscriber_count() > 0 && GetCurrentTimestamp() < deadline &&
		   PostmasterIsAlive())
		lws_service(context, 0);
}

static void
worker_shmem_exit(int code, Datum arg)
{
	pgws_queue_worker_detach();
}

void
pg_ws_worker_main(Datum main_arg)
{
	bool		restart;

	pqsignal(SIGTERM, handle_sigterm);
	pqsignal(SIGHUP, handle_sighup);
	pqsignal(SIGUSR1, handle_sigusr1);
	/* there is no query to cancel: pg_cancel_backend() must not stop us */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	/* no database: this makes us visible in pg_stat_activity */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	restart = pgws_queue_worker_attach();
	before_shmem_exit(worker_shmem_exit, (Datum) 0);

	pgws_broadcast_init(restart);
	pgws_auth_reload();
	server_start(restart);

	/* what was committed before we started, or while we were down */
	pgws_broadcast_drain_queue();

	while (!got_sigterm)
	{
		/* e.g. DROP DATABASE waits for every process to absorb a barrier */
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			server_reconfigure();
			pgws_auth_reload();
			pgws_broadcast_reauthorize();
		}
		if (!PostmasterIsAlive())
			proc_exit(1);

		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		lws_service(context, 0);
		pgstat_report_wait_end();
	}

	/*
	 * Keep the queue's space for what subscribers have not been sent: the
	 * next worker sends it to those that reconnect.  Exit code 1 so that the
	 * postmaster restarts us unless it is stopping.
	 */
	pgws_broadcast_shutdown();
	close_subscribers();
	lws_context_destroy(context);
	proc_exit(1);
}
