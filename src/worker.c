/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pg_ws background worker: its life (signals, reload, postmaster
 *	  death), its libwebsockets loop, its listening sockets and how new
 *	  connections are accepted.
 *
 * This file owns the process and its descriptors.  What happens on a
 * connection after accept lives in conn.c (and http.c, ws.c); what is sent
 * to whom in broadcast.c.
 *
 * One poll loop, no timers for events.  libwebsockets' own poll() waits on
 * everything: the listening sockets, the connections, the queue's eventfd
 * (written by committing backends and by our own signal handlers) and the
 * postmaster's death pipe, all adopted as raw descriptors.  A commit
 * therefore wakes the worker at once, and SIGTERM, SIGHUP and postmaster
 * death do too.  Timers only keep house: once a second the connections'
 * deadlines, pings and token expiry and the subscribers' progress are
 * checked and the postmaster's life is looked at behind the death pipe;
 * and there are listen retries and the bound on saying goodbye at exit.
 *
 * Two libwebsockets vhosts keep what a peer can reach apart from what
 * only we use: the public one has a single protocol, "pg_ws", to which
 * every accepted socket is bound as a raw socket; the internal one holds
 * the descriptor watchers, which no peer can name.  While wss:// is on, new
 * connections go to a third, the TLS vhost, whose SSL_CTX tls.c sets up;
 * the glue is marked "wss:// glue" below, and tls.c owns the rest.
 *
 * We bind the listening sockets ourselves rather than letting
 * libwebsockets do it, so that pg_ws.listen_addresses takes a list of
 * addresses and host names the way PostgreSQL's listen_addresses does, so
 * that a reload can move them without dropping any subscriber, and so that
 * accept() sees every connection first, to count it against the limits.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"
#include "walread.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "utils/snapmgr.h"
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
/* descriptors the worker needs besides its connections */
#define FD_RESERVE				64
/*
 * libwebsockets sizes its descriptor tables once, when the worker starts:
 * for pg_ws.max_connections then, and never for fewer than this many, so
 * that a reload can raise the setting this far without a restart.
 */
#define MIN_TABLE_CONNECTIONS	10000
/* TCP keepalive, for peers that vanish before they are subscribers */
#define KEEPALIVE_IDLE_S		60
#define KEEPALIVE_INTERVAL_S	10
#define KEEPALIVE_COUNT			3
/*
 * A burst of connects waits in the kernel's accept queue, not in a
 * client's SYN retry a second later (the kernel caps it at somaxconn).
 */
#define LISTEN_BACKLOG			4096
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

/* with pg_ws.event_loop = libev: the loop libwebsockets runs on */
static struct ev_loop *event_loop = NULL;
static void *foreign_loops[1];

/* what the event loop really is, for the log */
static const char *
event_loop_name(void)
{
	if (event_loop == NULL)
		return "poll";
	switch (ev_backend(event_loop))
	{
		case EVBACKEND_EPOLL:
			return "libev (epoll)";
		case EVBACKEND_POLL:
			return "libev (poll)";
		case EVBACKEND_SELECT:
			return "libev (select)";
		default:
			return "libev";
	}
}

/*
 * One turn of the event loop: wait for something to happen (a descriptor,
 * a timer) and handle it, then return to pg_ws_worker_main's checks.
 */
static void
service_once(void)
{
	if (event_loop != NULL)
		ev_run(event_loop, EVRUN_ONCE);
	else
		lws_service(context, 0);
}
static struct lws_vhost *internal_vhost = NULL;	/* descriptor watchers */
static struct lws_vhost *public_vhost = NULL;	/* connections */

/* wss:// glue: connections over TLS; made when TLS is first usable, kept */
static struct lws_vhost *tls_vhost = NULL;
static struct lws_vhost *connection_vhost(void);

static Watch wakeup_watch = {WATCH_WAKEUP, -1, NULL};
static Watch postmaster_watch = {WATCH_POSTMASTER, -1, NULL};
static Watch listen_watches[MAX_LISTEN_SOCKETS];
static int	nlisten = 0;

/* the settings the listening sockets were bound with */
static char *bound_addresses = NULL;
static int	bound_port = 0;
static bool bound_loopback_only = false;	/* listening was allowed only on
											 * loopback addresses */
static bool listening_publicly = false; /* a listening socket is bound to an
										 * address that is not loopback */

static lws_sorted_usec_list_t listen_retry_sul;

/* libwebsockets' descriptor table size: no descriptor may reach it */
static int	fd_table_size = 0;

/* accept() is paused while every socket we may hold is taken */
static bool listeners_paused = false;

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

	procsignal_sigusr1_handler(PGWS_SIGNAL_ARGS_PASS);
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
	watch->wsi = lws_adopt_descriptor_vhost(internal_vhost, LWS_ADOPT_RAW_FILE_DESC,
											desc, "pg_ws-fd", NULL);
	if (watch->wsi == NULL)
		return false;
	lws_set_opaque_user_data(watch->wsi, watch);
	return true;
}

static void close_listeners(void);
static void open_listeners(void);
static bool is_loopback(const struct sockaddr *sa);
static void pause_listeners(bool pause);

static void
listen_retry(lws_sorted_usec_list_t *sul)
{
	if (nlisten == 0)
		open_listeners();
}

/*
 * Once a second: the connections' deadlines, pings and token expiry, the
 * subscribers' progress, and the postmaster's life (the death pipe wakes
 * us when it dies; this look is only the fallback should that wake-up ever
 * be missed).
 */
#define HOUSEKEEPING_SECONDS 1

static lws_sorted_usec_list_t housekeeping_sul;

/*
 * Callbacks and reloads the worker has served: the heap changes only with
 * them, with events moved, and with what its timers do.
 */
uint64		pgws_worker_served = 0;

/*
 * The heap figure walks malloc's free lists (mallinfo2), which cost an
 * idle worker with thousands of TLS subscribers more than all else it did
 * (0.5% of a core at 19,000, bench/README.md): it is taken again only
 * after a second in which the worker served something or moved an event,
 * and at least once a minute for what its timers do.
 */
#define MEMORY_LOOK_MAX_AGE_S	60

/*
 * What only the worker knows, for pg_ws_stats and /metrics: the counters
 * the other files keep in pgws_worker_stats, and the figures of now taken
 * here.  The heap figure is what malloc holds in use (palloc,
 * libwebsockets and OpenSSL all allocate there), so a leak shows in it
 * whoever made it.
 */
void
pgws_worker_publish_stats(void)
{
	static uint64 looked_at_work = 0;
	static TimestampTz looked_at = 0;
	PgWsWorkerStats *stats = &pgws_worker_stats;
	uint64		work = pgws_worker_served + stats->events_sent + stats->messages_sent;
	TimestampTz now = GetCurrentTimestamp();

	stats->connections = pgws_conn_count();
	stats->subscribers = pgws_subscriber_count();
	stats->subscribers_indexed = pgws_subscriber_indexed_count();
	if (looked_at == 0 || work != looked_at_work ||
		now - looked_at >= MEMORY_LOOK_MAX_AGE_S * USECS_PER_SEC || now < looked_at)
	{
		struct mallinfo2 heap = mallinfo2();

		stats->memory_bytes = heap.uordblks + heap.hblkhd;
		looked_at_work = work;
		looked_at = now;
	}
	pgws_broadcast_history(&stats->history_floor, &stats->history_last,
						   &stats->history_in_wal);
	stats->parked_since = pgws_queue_parked_since(&stats->parked_entries,
												  &stats->blocked_since);
	pgws_stats_publish_worker(stats);
}

/*
 * The WAL is looked at on a short timer, not woken by replay: on a hot
 * standby to follow replay, and anywhere while a resuming subscriber waits
 * for WAL to be flushed.  A promotion ends the worker: the next one serves
 * the promoted server from the queue, and subscribers resume there.
 */
#define WAL_POLL_MS 5

static lws_sorted_usec_list_t wal_poll_sul;
static bool wal_poll_scheduled = false;
static bool following = false;	/* on a hot standby */

static void
wal_poll(lws_sorted_usec_list_t *sul)
{
	wal_poll_scheduled = false;
	if (following && !RecoveryInProgress())
	{
		/* what replay reached before the promotion goes out first */
		while (pgws_broadcast_follow_wal())
			;
		ereport(LOG,
				(errmsg("pg_ws worker restarting: this server was promoted"),
				 errdetail("Subscribers resume on it with ?since= from their last event.")));
		got_sigterm = true;
		return;
	}
	if (pgws_broadcast_poll_wal())
		pgws_worker_poll_wal_soon();
}

void
pgws_worker_poll_wal_soon(void)
{
	if (wal_poll_scheduled)
		return;
	wal_poll_scheduled = true;
	lws_sul_schedule(context, 0, &wal_poll_sul, wal_poll,
					 (lws_usec_t) WAL_POLL_MS * LWS_US_PER_MS);
}

/*
 * pg_ws.database's OID, whose events the WAL holds, or InvalidOid when no
 * database has that name; read from the shared catalog pg_database, since
 * the worker is connected to no database.
 */
static Oid
lookup_events_database(void)
{
	Oid			database = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	/*
	 * A plain scan, as the autovacuum launcher's: get_database_oid() would
	 * use an index, which needs pg_class, which needs a database.
	 */
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (strcmp(NameStr(db->datname), pgws_database) == 0)
		{
			database = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return database;
}

/*
 * After a reload, or when events of another database turn up, or while
 * the database does not exist: does pg_ws.database still name the
 * database we serve?  Positions are those of one database's events (the
 * epoch names it), so when it names another one now (a reload changed it,
 * or it was dropped and made again) this worker ends, and the next one
 * serves the new database under a new epoch: subscribers resume there and
 * are told resync_required, never fed another database's events as if
 * they followed theirs.  A database that did not exist had no events, so
 * once it is made it is simply served from then on.
 */
bool
pgws_worker_database_moved(void)
{
	static bool moved = false;
	Oid			database;
	Oid			served = pgws_broadcast_database();

	if (moved)
		return true;			/* ending already */
	database = lookup_events_database();
	if (database == served)
		return false;
	if (!OidIsValid(served))
	{
		ereport(LOG,
				(errmsg("pg_ws.database \"%s\" exists now: pg_ws broadcasts its events",
						pgws_database)));
		pgws_broadcast_set_database(database);
		return false;
	}
	ereport(LOG,
			(errmsg("pg_ws worker restarting: pg_ws.database \"%s\" is now database %u, was %u",
					pgws_database, database, served),
			 errdetail("Positions of one database's events mean nothing in another; subscribers resume under a new epoch and are told resync_required.")));
	moved = true;
	got_sigterm = true;
	return true;
}

/*
 * A standby that learnt it replayed past where a newer timeline forked off
 * its own (timeline.c) closes its subscribers, which resume elsewhere, and
 * refuses new ones (http.c) until pg_rewind brings it back: what it could
 * send them past the fork is on no live history, and it will never replay
 * anything more.  Said once in the log.
 */
static void
leave_dead_branch(void)
{
	static bool said = false;
	char	   *diverged = pgws_timeline_diverged();

	if (diverged == NULL)
	{
		said = false;
		return;
	}
	if (!said)
		ereport(LOG,
				(errmsg("pg_ws stops serving: %s", diverged),
				 errhint("Bring this node back as a standby of the new primary with pg_rewind; subscribers are closed with 1013 and resume on another node.")));
	said = true;
	pgws_conn_close_all(WS_CLOSE_TRY_AGAIN,
						"this standby's WAL left the live timeline: resume on another node",
						false);
	pfree(diverged);
}

/*
 * The queue's eventfd rang (queue.c): commits, pg_ws_connections' and
 * pg_ws_disconnect()'s mailbox (connections.c), writers waiting for room.
 * Answered first, so that a ring after it is heard again; then all it
 * stands for is served, which is why nothing else answers it.
 */
static void
answer_doorbell(void)
{
	pgws_queue_answer_doorbell();
	pgws_broadcast_drain_queue();
	pgws_mailbox_serve();
}

static void
housekeeping(lws_sorted_usec_list_t *sul)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!PostmasterIsAlive())
		proc_exit(1);
	pgws_conn_housekeeping(now);
	/* a pg_ws.database that did not exist: made since? */
	if (!OidIsValid(pgws_broadcast_database()))
		(void) pgws_worker_database_moved();
	if (following)
		leave_dead_branch();
	pgws_broadcast_check_progress(now);
	pgws_walread_log_summaries(now);
	pgws_retention_tick(now, pgws_wal || following);
	/* also the fallback, should a ring ever go unheard */
	answer_doorbell();
	pgws_worker_publish_stats();
	lws_sul_schedule(context, 0, &housekeeping_sul, housekeeping,
					 (lws_usec_t) HOUSEKEEPING_SECONDS * LWS_US_PER_SEC);
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
	if (!is_loopback(addr->ai_addr))
		listening_publicly = true;
	ereport(LOG,
			(errmsg("pg_ws listening on %s, port %d, path /ws/", host, pgws_port),
			 errdetail("Event loop: %s.", event_loop_name())));
}

/*
 * Without authentication, only loopback peers may subscribe unless the
 * administrator said otherwise: anyone who reaches a public address would
 * read every event (the faces, names and phone numbers of the tables).
 */
static bool
loopback_only_required(void)
{
	return pgws_auth_mode == PGWS_AUTH_NONE && !pgws_allow_anonymous;
}

/* a peer's address, as conn.c keeps it, is loopback (metrics.c asks) */
bool
pgws_peer_is_loopback(const PgWsPeerKey *key)
{
	static const uint8 v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8 v6loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

	if (key->family == AF_INET)
		return key->addr[0] == 127;
	if (key->family == AF_INET6)
		return memcmp(key->addr, v6loopback, 16) == 0 ||
			(memcmp(key->addr, v4mapped, 12) == 0 && key->addr[12] == 127);
	return false;
}

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
			(IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/*
 * The first address of pg_ws.listen_addresses that is not loopback, as
 * text in buf; false when all are ("*" is every address, so it is not).
 */
static bool
find_public_address(List *names, const char *port, char *buf, size_t size)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		struct addrinfo hints;
		struct addrinfo *addrs;
		struct addrinfo *addr;
		bool		found = false;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		if (getaddrinfo(strcmp(name, "*") == 0 ? NULL : name, port, &hints, &addrs) != 0)
			continue;			/* open_listeners says why */
		for (addr = addrs; addr != NULL && !found; addr = addr->ai_next)
			if (!is_loopback(addr->ai_addr))
			{
				if (getnameinfo(addr->ai_addr, addr->ai_addrlen, buf, size,
								NULL, 0, NI_NUMERICHOST) != 0)
					strlcpy(buf, name, size);
				found = true;
			}
		freeaddrinfo(addrs);
		if (found)
			return true;
	}
	return false;
}

/* bind every address of pg_ws.listen_addresses */
static void
open_listeners(void)
{
	char	   *rawstring = pstrdup(pgws_listen_addresses);
	char		port[16];
	char		public_address[NI_MAXHOST];
	List	   *names;
	ListCell   *lc;

	snprintf(port, sizeof(port), "%d", pgws_port);
	if (!SplitGUCList(rawstring, ',', &names))
		names = NIL;			/* the check hook has already refused this */

	if (bound_addresses)
		pfree(bound_addresses);
	bound_addresses = MemoryContextStrdup(TopMemoryContext, pgws_listen_addresses);
	bound_port = pgws_port;
	bound_loopback_only = loopback_only_required();

	if (bound_loopback_only &&
		find_public_address(names, port, public_address, sizeof(public_address)))
	{
		ereport(WARNING,
				(errmsg("pg_ws is not listening: pg_ws.listen_addresses includes \"%s\", which is not a loopback address, and pg_ws.auth is none",
						public_address),
				 errdetail("Anyone who could reach that address would read every event."),
				 errhint("Set pg_ws.auth = 'jwt' to require tokens, or pg_ws.allow_anonymous = on if every peer that can reach the port may read every event, and reload the configuration.")));
		list_free(names);
		pfree(rawstring);
		return;
	}

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

	/* new sockets wait like the old ones did while we are full */
	if (listeners_paused)
		pause_listeners(true);

	if (nlisten == 0 && pgws_listen_addresses[0] != '\0')
	{
		ereport(WARNING,
				(errmsg("pg_ws is not listening on any address; retrying every %d seconds",
						LISTEN_RETRY_SECONDS),
				 errdetail("Events are still drained from the queue, so writers are not held up.")));
		lws_sul_schedule(context, 0, &listen_retry_sul, listen_retry,
						 (lws_usec_t) LISTEN_RETRY_SECONDS * LWS_US_PER_SEC);
	}

	/* with pg_ws.console = auto, where we listen decides about the page */
	pgws_console_report();
}

/*
 * pg_ws.console = auto serves the console page only while this holds: the
 * page itself holds no data, but an administration page has no business
 * on a public address unless someone asked for it.
 */
bool
pgws_worker_listens_on_loopback_only(void)
{
	return !listening_publicly;
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
	listening_publicly = false;
}

/*
 * A descriptor kept in reserve: when accept() fails for lack of descriptors
 * the pending connection would keep the listening socket readable and spin
 * the loop, so we free the reserve, accept and close it, and take the
 * reserve back.  (pg_ws raises its descriptor limit for every socket it may
 * hold, so this happens only when the hard limit is lower than that.)
 */
static int	reserve_fd = -1;

/* stop or resume accepting: the kernel's backlog holds what waits */
static void
pause_listeners(bool pause)
{
	int			i;
	int			flags = LWS_RXFLOW_REASON_USER_BOOL | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW |
		(pause ? LWS_RXFLOW_REASON_APPLIES_DISABLE : LWS_RXFLOW_REASON_APPLIES_ENABLE);

	for (i = 0; i < nlisten; i++)
		lws_rx_flow_control(listen_watches[i].wsi, flags);
	listeners_paused = pause;
	if (pause && pgws_peer_log_allowed(PEER_LOG_REFUSED))
		ereport(LOG,
				(errmsg("pg_ws stopped accepting connections: pg_ws.max_connections (%d) are served and every refusal slot is taken",
						pgws_max_connections),
				 errhint("Consider increasing the configuration parameter \"pg_ws.max_connections\".")));
}

/* the peer's address, as a key and as text */
static void
describe_peer(const struct sockaddr_storage *addr, PgWsAccept *acc)
{
	memset(&acc->key, 0, sizeof(acc->key));
	acc->key.family = addr->ss_family;
	if (addr->ss_family == AF_INET)
	{
		const struct sockaddr_in *in4 = (const struct sockaddr_in *) addr;

		memcpy(acc->key.addr, &in4->sin_addr, 4);
		inet_ntop(AF_INET, &in4->sin_addr, acc->peer, sizeof(acc->peer));
		acc->port = ntohs(in4->sin_port);
	}
	else if (addr->ss_family == AF_INET6)
	{
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) addr;

		memcpy(acc->key.addr, &in6->sin6_addr, 16);
		inet_ntop(AF_INET6, &in6->sin6_addr, acc->peer, sizeof(acc->peer));
		acc->port = ntohs(in6->sin6_port);
	}
	else
	{
		/* pg_ws_connections shows it as an inet: one that parses */
		strlcpy(acc->peer, "0.0.0.0", sizeof(acc->peer));
		acc->port = 0;
	}
}

/* keepalive finds peers that vanished while nothing is being sent */
static void
set_socket_options(int fd)
{
	int			one = 1;
	int			idle = KEEPALIVE_IDLE_S;
	int			interval = KEEPALIVE_INTERVAL_S;
	int			count = KEEPALIVE_COUNT;

	(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
	(void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

/*
 * Accept every pending connection and hand it to libwebsockets as a raw
 * socket (TLS when configured) bound to conn.c, with what the limits
 * decided about it.
 */
static void
accept_connections(Watch *watch)
{
	while (!listeners_paused)
	{
		struct sockaddr_storage addr;
		socklen_t	addrlen = sizeof(addr);
		int			fd = accept4(watch->fd, (struct sockaddr *) &addr, &addrlen,
								 SOCK_NONBLOCK | SOCK_CLOEXEC);
		int			save_errno = errno;
		PgWsAccept	acc;
		lws_adopt_desc_t desc;

		if (fd < 0)
		{
			if (save_errno == ECONNABORTED || save_errno == EINTR)
				continue;
			if (save_errno == EAGAIN || save_errno == EWOULDBLOCK)
				return;
			errno = save_errno;
			if (pgws_peer_log_allowed(PEER_LOG_DROPPED))
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
		describe_peer(&addr, &acc);
		/* libwebsockets indexes its tables by descriptor number */
		if (fd >= fd_table_size)
		{
			if (pgws_conn_refused(PGWS_REFUSAL_DESCRIPTOR_LIMIT))
				ereport(LOG,
						(errmsg("pg_ws refused a connection from %s: descriptor %d is beyond its table of %d",
								acc.peer, fd, fd_table_size)));
			close(fd);
			continue;
		}
		memset(&desc, 0, sizeof(desc));
		/* wss:// glue: TLS asked for but unusable means refused, never ws:// */
		if ((desc.vh = connection_vhost()) == NULL)
		{
			(void) pgws_conn_refused(PGWS_REFUSAL_TLS);	/* tls.c says why */
			close(fd);
			continue;
		}
		if (!pgws_conn_decide(&acc))
		{
			close(fd);			/* over a limit, and no slot to say so */
			continue;
		}
		set_socket_options(fd);

		desc.type = LWS_ADOPT_SOCKET | LWS_ADOPT_ALLOW_SSL;
		desc.fd.sockfd = fd;
		desc.vh_prot_name = "pg_ws";
		desc.opaque = &acc;
		if (lws_adopt_descriptor_vhost_via_info(&desc) == NULL)
		{
			/*
			 * wss:// glue: adoption starts the TLS handshake, and fails at
			 * once when the peer's first bytes are not TLS (say, plain
			 * ws://): the peer's mistake, not ours.
			 */
			if (desc.vh == tls_vhost)
			{
				(void) pgws_conn_refused(PGWS_REFUSAL_TLS);
				ereport(DEBUG1,
						(errmsg_internal("pg_ws: TLS handshake with %s failed", acc.peer)));
			}
			else if (pgws_peer_log_allowed(PEER_LOG_DROPPED))
				ereport(LOG,
						(errmsg("pg_ws could not take over a connection from %s", acc.peer)));
		}

		if (pgws_conn_at_capacity())
			pause_listeners(true);
	}
}

/* protocol "pg_ws-fd" of the internal vhost: the raw descriptors we watch */
static int
callback_fd(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	Watch	   *watch;

	if (reason != LWS_CALLBACK_RAW_RX_FILE && reason != LWS_CALLBACK_RAW_CLOSE_FILE)
		return 0;
	pgws_worker_served++;
	watch = (Watch *) lws_get_opaque_user_data(wsi);
	if (watch == NULL)
		return 0;

	switch (watch->kind)
	{
		case WATCH_WAKEUP:
			if (reason == LWS_CALLBACK_RAW_RX_FILE)
			{
				answer_doorbell();
			}
			break;
		case WATCH_POSTMASTER:

			/*
			 * Our copy of the pipe hangs up only when the postmaster is gone:
			 * libwebsockets then closes it, which is why it watches a copy
			 * (below, where it is adopted).
			 */
			if (reason == LWS_CALLBACK_RAW_CLOSE_FILE || !PostmasterIsAlive())
				proc_exit(1);
			break;
		case WATCH_LISTEN:
			if (reason == LWS_CALLBACK_RAW_RX_FILE)
				accept_connections(watch);
			break;
	}
	return 0;
}

/*
 * A larger write than this is split by libwebsockets, and what the socket
 * does not take is copied; frames are written whole.
 */
#define TX_PACKET_SIZE (1024 * 1024)

static struct lws_protocols public_protocols[] = {
	{"pg_ws", pgws_conn_callback, 0, 0, 0, NULL, TX_PACKET_SIZE},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static struct lws_protocols internal_protocols[] = {
	{"pg_ws-fd", callback_fd, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * wss:// glue: the TLS vhost's protocol is conn.c's, plus one case.
 * libwebsockets creates the vhost's SSL_CTX (CREATE_VHOST_SSL_CTX and no
 * certificate paths) and hands it to protocols[0] as user in
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS; tls.c sets it up
 * there, with a certificate callback that serves what it loaded last.
 */
static int
callback_tls(struct lws *wsi, enum lws_callback_reasons reason,
			 void *user, void *in, size_t len)
{
	if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS)
		return pgws_tls_setup_ctx((SSL_CTX *) user) ? 0 : 1;
	return pgws_conn_callback(wsi, reason, user, in, len);
}

static struct lws_protocols tls_protocols[] = {
	{"pg_ws", callback_tls, 0, 0, 0, NULL, TX_PACKET_SIZE},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * wss:// glue: load the TLS settings (at start and after every reload) and
 * make the TLS vhost the first time they are usable.  It then lives as
 * long as the worker: a renewal needs no new vhost, and the public one
 * stays for when TLS is turned off.  ALPN offers http/1.1 only: h2 would
 * turn our raw sockets into libwebsockets' HTTP/2 role.
 */
static void
tls_reconfigure(void)
{
	struct lws_context_creation_info info;

	if (pgws_tls_configure() != PGWS_TLS_READY || tls_vhost != NULL)
		return;

	tls_protocols[0].per_session_data_size = pgws_conn_size();
	memset(&info, 0, sizeof(info));
	info.vhost_name = "pg_ws-tls";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = tls_protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX;
	info.alpn = PGWS_TLS_ALPN;
	tls_vhost = lws_create_vhost(context, &info);
	if (tls_vhost == NULL)
		ereport(LOG,
				(errmsg("pg_ws could not set up wss:// and is refusing connections"),
				 errhint("The reason is logged above; reload the configuration to try again.")));
}

/* wss:// glue: the vhost a new connection joins, or NULL to refuse it */
static struct lws_vhost *
connection_vhost(void)
{
	switch (pgws_tls_state())
	{
		case PGWS_TLS_OFF:
			return public_vhost;
		case PGWS_TLS_READY:
			return tls_vhost;
		case PGWS_TLS_UNUSABLE:
			break;
	}
	return NULL;
}

/*
 * Say so when the hard limit on open descriptors is below what
 * pg_ws.max_connections needs (every served socket, the refusal slots and
 * our own): the connections past it will be refused when accepted, not
 * answered with a clean 503.  server_start() sets the soft limit.
 */
static void
check_fd_limit(void)
{
	struct rlimit rlim;
	rlim_t		need = (rlim_t) pgws_max_connections + PGWS_REFUSAL_SLOTS + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rlim) != 0 || rlim.rlim_max >= need)
		return;
	ereport(LOG,
			(errmsg("pg_ws could not raise its limit on open files to %llu for pg_ws.max_connections = %d",
					(unsigned long long) need, pgws_max_connections),
			 errdetail("The hard limit is %llu; connections beyond about %llu will be refused when they are accepted.",
					   (unsigned long long) rlim.rlim_max,
					   (unsigned long long) (rlim.rlim_max > FD_RESERVE ?
											 rlim.rlim_max - FD_RESERVE : 0)),
			 errhint("Raise the hard limit on open files of the PostgreSQL server (ulimit -n, LimitNOFILE).")));
}

/*
 * After a reload: say so when pg_ws.max_connections now needs more than
 * the tables the worker sized when it started (accept() refuses, and
 * counts as descriptor_limit, the connections beyond them).
 */
static void
warn_fd_table(void)
{
	static int	warned_for = 0;
	struct rlimit rlim;
	int			need = pgws_max_connections + PGWS_REFUSAL_SLOTS + FD_RESERVE;

	if (need <= fd_table_size || warned_for == pgws_max_connections ||
		(getrlimit(RLIMIT_NOFILE, &rlim) == 0 && rlim.rlim_max <= (rlim_t) fd_table_size))
		return;					/* the hard limit is the bound: check_fd_limit() said so */
	warned_for = pgws_max_connections;
	ereport(LOG,
			(errmsg("pg_ws serves at most about %d connections until its worker starts again, not pg_ws.max_connections = %d",
					fd_table_size - PGWS_REFUSAL_SLOTS - FD_RESERVE, pgws_max_connections),
			 errdetail("The worker sized its descriptor tables for the setting it started with."),
			 errhint("Restart PostgreSQL, or end the worker with pg_terminate_backend(); it starts again within a second, and its subscribers resume where they were.")));
}

#if defined(LWS_WITH_SYS_STATE)
/*
 * libwebsockets 4.3 built with LWS_WITH_NETLINK (Debian 13 and later; 4.1
 * has no such thing) keeps a copy of the routing table and, whenever a
 * route or an address changes, closes without a word every connection
 * whose peer it finds no route to in that copy, which it parses only in
 * part: a default route without a gateway, or an address added to an
 * IPv6 interface, and subscribers on working routes were cut off.  It
 * does so only once its system state has reached IFACE_COLDPLUG.  pg_ws
 * uses none of the states past INITIALIZED (DHCP, NTP, captive portals,
 * secure streams), so it keeps libwebsockets short of them; protocols are
 * still initialized, by the first service.  Nonzero refuses a change.
 */
static int
hold_lws_system_state(struct lws_state_manager *mgr,
					  struct lws_state_notify_link *link, int current, int target)
{
	return target >= LWS_SYSTATE_IFACE_COLDPLUG && target <= LWS_SYSTATE_OPERATIONAL;
}

static lws_state_notify_link_t hold_lws_state_link = {
	.notify_cb = hold_lws_system_state,
	.name = "pg_ws",
};
static lws_state_notify_link_t *const lws_state_notifiers[] = {
	&hold_lws_state_link, NULL
};
#endif

static void
server_start(void)
{
	struct lws_context_creation_info info;
	struct rlimit rlim;

	lws_set_log_level(LLL_ERR | LLL_WARN, log_lws);

	check_fd_limit();
	/* libwebsockets sizes its descriptor tables by this, once */
	fd_table_size = Max(pgws_max_connections, MIN_TABLE_CONNECTIONS) +
		PGWS_REFUSAL_SLOTS + FD_RESERVE;
	if (getrlimit(RLIMIT_NOFILE, &rlim) == 0)
	{
		if (rlim.rlim_max < (rlim_t) fd_table_size)
			fd_table_size = (int) rlim.rlim_max;

		/*
		 * libwebsockets finds a socket's connection in a table indexed by
		 * descriptor, as large as our soft limit, unless told to make it
		 * smaller (fd_limit_per_thread below that limit): then it searches
		 * the table from the start for every event, accept and close.  A
		 * server started with a soft limit above the table (systemd's
		 * LimitNOFILE, a container's 1048576) made a connect cost 2.5 times
		 * and a close 3 times what they do: the soft limit is the table's
		 * size, lowered or raised to it, so that the table is an index.
		 */
		if (rlim.rlim_cur != (rlim_t) fd_table_size)
		{
			rlim.rlim_cur = (rlim_t) fd_table_size;
			if (setrlimit(RLIMIT_NOFILE, &rlim) != 0)
				ereport(WARNING,
						(errcode_for_file_access(),
						 errmsg("pg_ws could not set its limit on open files to %d: %m",
								fd_table_size)));
		}
	}

	pgws_conn_init();
	public_protocols[0].per_session_data_size = pgws_conn_size();

	memset(&info, 0, sizeof(info));
	/* wss:// glue: OpenSSL is set up even while TLS is off, for a reload */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
		LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.fd_limit_per_thread = fd_table_size;
	/* a TLS handshake must end in this time too */
	info.timeout_secs = pgws_handshake_timeout_s;
	info.gid = -1;
	info.uid = -1;
#if defined(LWS_WITH_SYS_STATE)
	info.register_notifier_list = lws_state_notifiers;
#endif
	if (pgws_event_loop == PGWS_EVENT_LOOP_LIBEV)
	{
		/*
		 * Our own libev loop, lent to libwebsockets, so that one turn of it
		 * is ours to run (service_once) like lws_service(): signals, the
		 * latch's work and postmaster death stay as with poll().  libev
		 * must leave the signal mask to PostgreSQL (EVFLAG_NOSIGMASK).
		 */
		event_loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
		if (event_loop == NULL)
			ereport(ERROR,
					(errmsg("pg_ws could not create its libev event loop")));
		foreign_loops[0] = event_loop;
		info.foreign_loops = foreign_loops;
		info.options |= LWS_SERVER_OPTION_LIBEV;
	}
	context = lws_create_context(&info);
	if (context == NULL)
		ereport(ERROR,
				(errmsg("pg_ws could not create its libwebsockets context")));

	memset(&info, 0, sizeof(info));
	info.vhost_name = "pg_ws-internal";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = internal_protocols;
	internal_vhost = lws_create_vhost(context, &info);

	memset(&info, 0, sizeof(info));
	info.vhost_name = "pg_ws";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = public_protocols;
	public_vhost = lws_create_vhost(context, &info);
	if (internal_vhost == NULL || public_vhost == NULL)
		ereport(ERROR,
				(errmsg("pg_ws could not create its libwebsockets vhosts")));
	tls_reconfigure();			/* wss:// glue */

	wakeup_watch.fd = pgws_queue_wakeup_fd();

	/*
	 * The loop watches a duplicate of the postmaster death pipe, never the
	 * descriptor PostmasterIsAlive() reads: when the postmaster dies the
	 * pipe hangs up and libwebsockets closes what it watches, and a
	 * connection accepted next would reuse that number.  PostmasterIsAlive()
	 * would then read a peer's socket: "unexpected data" (FATAL), or
	 * nothing to read, which it takes for a live postmaster, and the worker
	 * would go on serving (/health 200) for a server that is gone.
	 */
	postmaster_watch.fd = fcntl(postmaster_alive_fds[POSTMASTER_FD_WATCH],
								F_DUPFD_CLOEXEC, 0);
	if (postmaster_watch.fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("pg_ws could not duplicate the postmaster death pipe: %m")));
	if (!adopt_watch(&wakeup_watch) || !adopt_watch(&postmaster_watch))
		ereport(ERROR,
				(errmsg("pg_ws could not watch its wake-up descriptors")));

	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	open_listeners();
	housekeeping(&housekeeping_sul);
}

/* after a reload: move the listening sockets if their settings changed */
static void
server_reconfigure(void)
{
	/* descriptors past the tables would be refused: the limit stays */
	check_fd_limit();
	warn_fd_table();
	tls_reconfigure();			/* wss:// glue */
	if (bound_port == pgws_port &&
		strcmp(bound_addresses, pgws_listen_addresses) == 0 &&
		bound_loopback_only == loopback_only_required())
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
	/* nothing to do: firing made service_once() return */
}

static void
close_subscribers(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   SHUTDOWN_CLOSE_MS);

	pgws_conn_close_all(WS_CLOSE_GOING_AWAY, "pg_ws is restarting or shutting down", true);
	/* the timer only makes service_once() return by the deadline */
	lws_sul_schedule(context, 0, &close_sul, close_wait_over,
					 (lws_usec_t) SHUTDOWN_CLOSE_MS * LWS_US_PER_MS);
	while (pgws_conn_count() > 0 && GetCurrentTimestamp() < deadline &&
		   PostmasterIsAlive())
		service_once();
}

/*
 * The counters as they are at the end, for the next worker to go on from;
 * the figures of now mean nothing without a worker.
 */
static void
worker_shmem_exit(int code, Datum arg)
{
	PgWsWorkerStats last = pgws_worker_stats;

	last.connections = 0;
	last.subscribers = 0;
	last.subscribers_indexed = 0;
	last.memory_bytes = 0;
	last.started_at = 0;
	pgws_stats_publish_worker(&last);
	pgws_mailbox_worker_exit();
	pgws_queue_worker_detach();
}

void
pg_ws_worker_main(Datum main_arg)
{
	bool		restart;
	uint64		history_floor;

	pqsignal(SIGTERM, handle_sigterm);
	pqsignal(SIGHUP, handle_sighup);
	pqsignal(SIGUSR1, handle_sigusr1);
	/* there is no query to cancel: pg_cancel_backend() must not stop us */
	pqsignal(SIGINT, PGWS_SIG_IGN);
	BackgroundWorkerUnblockSignals();

	/* no database: this makes us visible in pg_stat_activity */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	/* published before worker_pid is: its start shows with it */
	pgws_stats_restore_counters(&pgws_worker_stats);
	pgws_worker_stats.started_at = MyStartTimestamp;
	pgws_stats_publish_worker(&pgws_worker_stats);
	history_floor = pgws_queue_worker_attach(&restart);
	before_shmem_exit(worker_shmem_exit, (Datum) 0);

	pgws_broadcast_init(history_floor);
	pgws_broadcast_set_database(lookup_events_database());
	following = RecoveryInProgress();
	if (following)
		pgws_broadcast_follow(pgws_position_follow_from() - 1);
	pgws_auth_reload();
	server_start();
	/* the filter columns ?filter= may name, known before most requests */
	(void) pgws_filter_columns_read();
	if (following)
		pgws_worker_poll_wal_soon();

	/* what was committed before we started, or while we were down */
	pgws_broadcast_drain_queue();

	while (!got_sigterm)
	{
		/* e.g. DROP DATABASE waits for every process to absorb a barrier */
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			pgws_worker_served++;
			ProcessConfigFile(PGC_SIGHUP);
			(void) pgws_worker_database_moved();
			server_reconfigure();
			pgws_console_reload();
			pgws_auth_reload();
			pgws_conn_settings_reloaded();
		}
		if (!PostmasterIsAlive())
			proc_exit(1);

		/* what closed subscribers held; what resumers may be handed */
		pgws_broadcast_before_pass();
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		service_once();
		pgstat_report_wait_end();

		if (listeners_paused && !pgws_conn_at_capacity())
			pause_listeners(false);
	}

	/*
	 * Keep the queue's space for what subscribers have not been sent: the
	 * next worker sends it to those that reconnect.  Exit code 1 so that the
	 * postmaster restarts us unless it is stopping.
	 */
	pgws_broadcast_shutdown();
	close_subscribers();
	lws_context_destroy(context);
	if (event_loop != NULL)
		ev_loop_destroy(event_loop);
	proc_exit(1);
}
