/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  One peer's connection from accept to close: the limits that decide
 *	  whether it is served, the libwebsockets callback that drives it, its
 *	  deadlines and keepalive, and the polite way it ends.
 *
 * This file owns the connection's state and accounting.  It must not
 * parse HTTP (http.c) or frames (ws.c, sse.c), nor choose what a
 * subscriber is sent (broadcast.c); it hands bytes to them by state, and
 * a subscriber's to its framing (PgWsFramingOps).
 *
 * Every socket a peer holds counts, whatever its state: pg_ws.max_connections
 * bounds the sockets served (requests in progress included), and
 * pg_ws.max_connections_per_address those of one address.  A connection
 * past a limit is still accepted, into one of a few refusal slots, so that
 * it gets a clean 503 rather than a reset; when those are taken too, the
 * worker stops accepting (the kernel's backlog holds the rest) until a
 * socket is freed.
 *
 * Nothing a peer does holds a socket without a bound: the request must be
 * complete within pg_ws.handshake_timeout; a /ws/ subscriber that does
 * not answer a ping within pg_ws.ping_interval is dropped; a subscriber
 * whose token expires is closed with 4001; and the last bytes of a
 * connection (an HTTP answer, a close frame, an event stream's closing
 * comment) are followed by a half-close and a short linger, reading and
 * discarding what the peer still sends, so that the peer reads our answer
 * instead of a reset.  An /events subscriber cannot answer pings: it is
 * sent a heartbeat comment once it has been sent nothing for
 * pg_ws.ping_interval, so that proxies keep a quiet stream open, and a
 * peer that vanished is found when those writes fail (or by TCP
 * keepalive).
 *
 * Refusals and drops are counted by reason (pgws_conn_refused,
 * pgws_conn_dropped) for pg_ws_stats and /metrics, and the log lines they
 * cause are rate-limited per reason (loglimit.c).  Other lines a peer can
 * cause go through pgws_peer_log_allowed(kind), limited the same way.
 * Opening and closing are logged at DEBUG1.  No line carries a token: reasons are static texts
 * and subjects are printable ASCII (auth.c).
 *
 * Each connection has a memory context for what it keeps: its request head
 * while it arrives (http.c frees it once answered, whatever the answer),
 * and a subscriber's grant and filter, which pgws_conn_subscribe copies in
 * from the request's own memory.  A connection that lingers after its
 * answer keeps nothing of its request.
 *
 * For pg_ws_connections and pg_ws_disconnect (connections.c), every
 * connection has an id that is never reused, and pgws_conn_snapshot()
 * describes them all.
 *
 * src/conn.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <time.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

/* a refused peer has this long to send its request and read our 503 */
#define REFUSAL_WAIT_MS		2000
/* the last bytes of a connection have this long to leave */
#define CLOSE_WAIT_MS		5000
/* after the half-close, how long we read and discard */
#define LINGER_MS			2000

/* what is rate-limited on its own: the kinds, then refusals, then drops */
#define PEER_LOG_TOPICS		(PEER_LOG_KINDS + PGWS_NUM_REFUSALS + PGWS_NUM_DROPS)
#define REFUSAL_TOPIC(r)	(PEER_LOG_KINDS + (int) (r))
#define DROP_TOPIC(d)		(PEER_LOG_KINDS + PGWS_NUM_REFUSALS + (int) (d))

typedef struct PeerCount
{
	PgWsPeerKey key;			/* hash key: must be first */
	int			count;
} PeerCount;

static MemoryContext conns_context = NULL;
static dlist_head all_conns = DLIST_STATIC_INIT(all_conns);
static int	nconns = 0;			/* sockets held, every state */
static int	nrefusing = 0;		/* of them, in a refusal slot */
static HTAB *peer_counts = NULL;

/*
 * Housekeeping looks at a connection only when something about it may be
 * due: the wheel has a slot per second, and every connection waits in the
 * slot of the second it is next looked at (conn_look_at), so that an idle
 * worker with a hundred thousand subscribers does not walk them all every
 * second.  What can fall due sooner than the look planned for it is
 * planned anew where it changes: a deadline set, a token renewed, the
 * settings reloaded.  What only moves a due time later (a frame heard, a
 * pong) is left to the look, which finds it not due yet and plans the
 * next.  A connection planned more than a turn of the wheel ahead waits
 * in its slot for turns that are not its own.
 */
#define WHEEL_SLOTS			64
static dlist_head wheel[WHEEL_SLOTS];
static int64 wheel_done_sec;	/* the last second whose slot was looked at */

/* the latest a look is planned: a turn of the wheel from now */
static inline TimestampTz
latest_look(TimestampTz now)
{
	return now + (WHEEL_SLOTS - 1) * USECS_PER_SEC;
}

/* the log lines of each topic (loglimit.c) */
static PgWsLogLimit peer_log[PEER_LOG_TOPICS];

static const char *const peer_log_what[PEER_LOG_KINDS] = {
	[PEER_LOG_REFUSED] = "not accepting connections",
	[PEER_LOG_DROPPED] = "connections that could not be accepted",
};

void
pgws_conn_init(void)
{
	HASHCTL		ctl;

	conns_context = AllocSetContextCreate(TopMemoryContext,
										  "pg_ws connections",
										  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(PgWsPeerKey);
	ctl.entrysize = sizeof(PeerCount);
	ctl.hcxt = conns_context;
	peer_counts = hash_create("pg_ws peers", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < WHEEL_SLOTS; i++)
		dlist_init(&wheel[i]);
	wheel_done_sec = GetCurrentTimestamp() / USECS_PER_SEC - 1;
}

size_t
pgws_conn_size(void)
{
	return sizeof(PgWsConn);
}

int
pgws_conn_count(void)
{
	return nconns;
}

/* every served socket is taken and so is every refusal slot */
bool
pgws_conn_at_capacity(void)
{
	return nconns - nrefusing >= pgws_max_connections &&
		nrefusing >= PGWS_REFUSAL_SLOTS;
}

static int
peer_count(const PgWsPeerKey *key)
{
	PeerCount  *pc = hash_search(peer_counts, key, HASH_FIND, NULL);

	return pc ? pc->count : 0;
}

/*
 * Is this new socket served, or refused (acc->refusal)?  Returns false
 * when it cannot even be answered: the refusal slots are taken by peers
 * over their address limit; the caller then closes it at once.
 */
bool
pgws_conn_decide(PgWsAccept *acc)
{
	acc->refusal = NULL;
	if (nconns - nrefusing >= pgws_max_connections)
		acc->refusal = "too many connections: pg_ws.max_connections reached";
	else if (pgws_max_connections_per_address > 0 &&
			 peer_count(&acc->key) >= pgws_max_connections_per_address)
		acc->refusal = "too many connections from this address: pg_ws.max_connections_per_address reached";
	if (acc->refusal == NULL)
		return true;
	if (pgws_conn_refused(nconns - nrefusing >= pgws_max_connections ?
						  PGWS_REFUSAL_MAX_CONNECTIONS :
						  PGWS_REFUSAL_MAX_PER_ADDRESS))
		ereport(LOG,
				(errmsg("pg_ws refused a connection from %s: %s",
						acc->peer, acc->refusal)));
	return nrefusing < PGWS_REFUSAL_SLOTS;
}

/* what a topic's summary line says its lines were about */
static void
peer_log_topic_name(int topic, char *buf, size_t size)
{
	if (topic < PEER_LOG_KINDS)
		strlcpy(buf, peer_log_what[topic], size);
	else if (topic < PEER_LOG_KINDS + PGWS_NUM_REFUSALS)
		snprintf(buf, size, "refused requests (%s)",
				 pgws_refusal_names[topic - PEER_LOG_KINDS]);
	else
		snprintf(buf, size, "dropped connections (%s)",
				 pgws_drop_names[topic - PEER_LOG_KINDS - PGWS_NUM_REFUSALS]);
}

/* may a log line of this topic be written now? */
static bool
peer_log_topic_allowed(int topic)
{
	char		what[96];

	peer_log_topic_name(topic, what, sizeof(what));
	return pgws_log_limit_allowed(&peer_log[topic], what);
}

bool
pgws_peer_log_allowed(PgWsPeerLog kind)
{
	return peer_log_topic_allowed((int) kind);
}

/* a connection was refused for reason: count it; may its line be logged? */
bool
pgws_conn_refused(PgWsRefusal reason)
{
	pgws_worker_stats.refusals[reason]++;
	return peer_log_topic_allowed(REFUSAL_TOPIC(reason));
}

/* a connection is dropped for reason: count it; may its line be logged? */
bool
pgws_conn_dropped(PgWsDrop reason)
{
	pgws_worker_stats.drops[reason]++;
	return peer_log_topic_allowed(DROP_TOPIC(reason));
}

/* the summaries of windows that ended, without waiting for their topics */
static void
peer_log_summaries(TimestampTz now)
{
	int			topic;

	for (topic = 0; topic < PEER_LOG_TOPICS; topic++)
		if (peer_log[topic].suppressed > 0)
		{
			char		what[96];

			peer_log_topic_name(topic, what, sizeof(what));
			pgws_log_limit_summary(&peer_log[topic], what, now);
		}
}

/*
 * When housekeeping must next look at the connection (see the wheel
 * above): its deadline, and an open subscriber's token expiry and ping.
 * An /events subscriber is looked at every second, as before the wheel:
 * its heartbeat counts from the last look that saw it sent something, and
 * a look planned at its heartbeat would see a send long after it was
 * made.  Never later than a turn of the wheel.
 */
static TimestampTz
next_look(const PgWsConn *conn, TimestampTz now)
{
	TimestampTz ping_us = (TimestampTz) pgws_ping_interval_s * USECS_PER_SEC;
	TimestampTz due = latest_look(now);

	if (conn->deadline != 0)
		due = Min(due, conn->deadline);
	if (conn->state != CONN_OPEN || conn->close_due)
		return due;
	/*
	 * pgws_grant_expired: after the second it expires in.  Compared in
	 * seconds first: a token may expire past what a TimestampTz holds.
	 */
	if (conn->sub.grant.expires_at != 0)
	{
		int64		expires_at = conn->sub.grant.expires_at;

		if (expires_at < (int64) timestamptz_to_time_t(now))
			due = now;
		else if (expires_at < (int64) timestamptz_to_time_t(due))
			due = Min(due, time_t_to_timestamptz((pg_time_t) expires_at + 1));
	}
	if (ping_us == 0)
		return due;
	if (conn->sub.framing == PGWS_FRAMING_SSE)
		due = Min(due, now + USECS_PER_SEC);
	else if (conn->ping_sent_at != 0)
		due = Min(due, conn->ping_sent_at + ping_us);
	else
		due = Min(due, conn->last_heard + ping_us);
	return due;
}

/*
 * Put the connection in the slot of the second due falls in, or of the
 * next second housekeeping has not looked at yet if that is later.
 */
static void
conn_look_at(PgWsConn *conn, TimestampTz due)
{
	int64		sec = Max(due / USECS_PER_SEC, wheel_done_sec + 1);

	if (conn->in_wheel)
		dlist_delete(&conn->wheel_node);
	conn->look_sec = sec;
	conn->in_wheel = true;
	dlist_push_tail(&wheel[sec % WHEEL_SLOTS], &conn->wheel_node);
}

/* something that may be due sooner than planned has changed */
void
pgws_conn_look_again(PgWsConn *conn)
{
	if (conn->adopted)
		conn_look_at(conn, next_look(conn, GetCurrentTimestamp()));
}

static void
conn_adopt(PgWsConn *conn, struct lws *wsi, const PgWsAccept *acc)
{
	bool		found;
	PeerCount  *pc;

	conn->wsi = wsi;
	conn->state = CONN_REQUEST;
	conn->id = pgws_mailbox_next_conn_id();
	conn->connected_since = GetCurrentTimestamp();
	conn->tls = lws_is_ssl(wsi) != 0;
	conn->key = acc->key;
	strlcpy(conn->peer, acc->peer, sizeof(conn->peer));
	conn->peer_port = acc->port;
	conn->sub.framing = PGWS_FRAMING_WS;
	conn->sub.filter_text = NULL;
	conn->sub.values = NULL;
	conn->sub.values_text = NULL;
	conn->sub.index_spot = NULL;
	conn->sub.indexed = false;
	conn->sub.unindexable = false;
	conn->sub.messages_sent = 0;
	conn->sub.bytes_sent = 0;
	conn->refusal = acc->refusal;
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 acc->refusal ? REFUSAL_WAIT_MS :
												 pgws_handshake_timeout_s * 1000);
	conn->cxt = AllocSetContextCreate(conns_context, "pg_ws connection",
									  ALLOCSET_SMALL_SIZES);
	dlist_push_tail(&all_conns, &conn->all_node);
	conn->in_wheel = false;
	conn_look_at(conn, conn->deadline);
	nconns++;
	if (conn->refusal)
		nrefusing++;
	pc = hash_search(peer_counts, &conn->key, HASH_ENTER, &found);
	pc->count = found ? pc->count + 1 : 1;
	conn->adopted = true;
	pgws_worker_stats.connections_total++;
	ereport(DEBUG1,
			(errmsg_internal("pg_ws connection %llu from %s, port %d%s",
							 (unsigned long long) conn->id, conn->peer,
							 conn->peer_port, conn->tls ? ", TLS" : "")));
}

static void
conn_release(PgWsConn *conn)
{
	PeerCount  *pc;

	conn->adopted = false;
	dlist_delete(&conn->all_node);
	if (conn->in_wheel)
		dlist_delete(&conn->wheel_node);
	conn->in_wheel = false;
	nconns--;
	if (conn->refusal)
		nrefusing--;
	pc = hash_search(peer_counts, &conn->key, HASH_FIND, NULL);
	if (pc && --pc->count <= 0)
		hash_search(peer_counts, &conn->key, HASH_REMOVE, NULL);
	pgws_subscriber_close(conn);
	MemoryContextDelete(conn->cxt);
	conn->cxt = NULL;
	conn->request = NULL;
	conn->request_len = 0;
	conn->request_cap = 0;
	conn->reader.message = NULL;
	ereport(DEBUG1,
			(errmsg_internal("pg_ws connection %llu from %s closed",
							 (unsigned long long) conn->id, conn->peer)));
}

/* close the socket at once (at the next turn of the loop) */
static void
conn_kill(PgWsConn *conn)
{
	conn->deadline = 0;
	lws_set_timeout(conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/*
 * Queue the last bytes of the connection (an HTTP answer); once they have
 * left, we half-close and linger.
 */
void
pgws_conn_finish(PgWsConn *conn, const uint8 *bytes, int len)
{
	conn->state = CONN_ANSWERED;
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 CLOSE_WAIT_MS);
	conn_look_at(conn, conn->deadline);
	if (lws_write(conn->wsi, (uint8 *) bytes, len, LWS_WRITE_RAW) != len)
	{
		conn_kill(conn);
		return;
	}
	lws_callback_on_writable(conn->wsi);
}

/*
 * Our last bytes have left: tell the peer we are done (TLS close_notify,
 * then FIN) and read whatever it still sends until it closes too, so that
 * closing never turns into a reset that would destroy our answer.
 */
static void
half_close(PgWsConn *conn)
{
	SSL		   *ssl = lws_get_ssl(conn->wsi);

	if (ssl != NULL)
	{
		(void) SSL_shutdown(ssl);
		ERR_clear_error();
	}
	(void) shutdown(lws_get_socket_fd(conn->wsi), SHUT_WR);
	conn->state = CONN_LINGER;
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 LINGER_MS);
	conn_look_at(conn, conn->deadline);
}

/*
 * The answer that makes the connection a subscriber (101 to /ws/, 200 to
 * /events): from now on it is sent messages in up->framing.  What the
 * request decided is copied into the connection's context, the only
 * memory of the request it keeps (http.c frees the rest).
 */
void
pgws_conn_subscribe(PgWsConn *conn, const uint8 *answer, int len,
					const PgWsSubscription *up)
{
	MemoryContext old;

	if (lws_write(conn->wsi, (uint8 *) answer, len, LWS_WRITE_RAW) != len)
	{
		conn_kill(conn);
		return;
	}
	conn->state = CONN_OPEN;
	conn->deadline = 0;
	conn->last_heard = GetCurrentTimestamp();
	conn->quiet_since = conn->last_heard;
	conn->heartbeat_mark = 0;
	conn->heartbeat_due = false;
	conn->sub.framing = up->framing;

	old = MemoryContextSwitchTo(conn->cxt);
	conn->sub.grant = up->grant;
	pgws_event_set_copy(&conn->sub.grant.events, &up->grant.events);
	pgws_grant_copy_filters(&conn->sub.grant, &up->grant);
	pgws_event_set_copy(&conn->sub.filter, &up->filter);
	conn->sub.filter_text = up->filter_text ? pstrdup(up->filter_text) : NULL;
	conn->sub.values_text = up->values_text ? pstrdup(up->values_text) : NULL;
	if (up->values_text != NULL &&
		pgws_value_filter_parse(up->values_text, &conn->sub.values) != NULL)
	{
		/* http.c parsed the same text: never, but never unfiltered either */
		MemoryContextSwitchTo(old);
		conn_kill(conn);
		return;
	}
	conn->sub.resume = up->resume;
	conn->sub.since = up->since;
	conn->sub.since_tli = up->since_tli;
	conn->sub.epoch_matches = up->epoch_matches;
	conn->sub.snapshot = up->snapshot;
	if (up->snapshot)
	{
		conn->sub.position = up->position;
		conn->sub.position.xids = palloc(Max(up->position.nxids, 1) *
										 sizeof(TransactionId));
		memcpy(conn->sub.position.xids, up->position.xids,
			   up->position.nxids * sizeof(TransactionId));
	}
	ereport(DEBUG1,
			(errmsg_internal("pg_ws connection %llu from %s subscribed",
							 (unsigned long long) conn->id, conn->peer)));
	conn_look_at(conn, next_look(conn, GetCurrentTimestamp()));
	pgws_subscriber_open(conn);
	MemoryContextSwitchTo(old);
}

/*
 * A subscriber's socket takes bytes: its control frames first (a pong, the
 * close that ends it), then its events.  -1 when the connection is broken.
 */
static int
subscriber_write(PgWsConn *conn)
{
	int			rc = pgws_framing_ops(conn->sub.framing)->write_control(conn);

	if (rc < 0)
		return -1;
	if (rc > 0)
	{
		/* the last words went out: nothing may follow */
		conn->state = CONN_ANSWERED;
		lws_callback_on_writable(conn->wsi);
		return 0;
	}
	return pgws_subscriber_writable(conn);
}

/*
 * Events have arrived for a subscriber that was sent everything before:
 * write them now, as its writable callback would, when libwebsockets holds
 * none of its bytes (so the socket took everything it was handed).  That
 * spares a live event two changes of the loop's interest in the socket and
 * a turn of the loop, most of what a delivery costs the worker besides the
 * send itself.  Otherwise, or when the socket is full, libwebsockets calls
 * back once it can take more.
 */
void
pgws_conn_write_now(PgWsConn *conn)
{
	if (conn->state != CONN_OPEN || lws_partial_buffered(conn->wsi))
		lws_callback_on_writable(conn->wsi);
	else if (subscriber_write(conn) < 0)
		conn_kill(conn);
}

/*
 * Close a subscriber: a /ws/ one with a close frame (code 0 sends one
 * without a status, the answer to a peer's empty close frame), an /events
 * one with a comment that says the same.  Nothing more is sent to it, and
 * it no longer holds queued events.  Callers log what deserves it.
 */
void
pgws_conn_close(PgWsConn *conn, uint16 code, const char *reason)
{
	if (conn->state != CONN_OPEN || conn->close_due)
		return;
	conn->close_due = true;
	conn->close_code = code;
	strlcpy(conn->close_reason, reason ? reason : "", sizeof(conn->close_reason));
	pgws_subscriber_close(conn);
	conn->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 CLOSE_WAIT_MS);
	conn_look_at(conn, conn->deadline);
	lws_callback_on_writable(conn->wsi);
}

/*
 * Every subscriber (/ws/ or /events) is closed with code and reason; with
 * drop_requests, connections still sending their request are dropped too
 * (the worker is exiting: subscribers get 1001, the rest are closed).
 */
void
pgws_conn_close_all(uint16 code, const char *reason, bool drop_requests)
{
	dlist_iter	iter;

	dlist_foreach(iter, &all_conns)
	{
		PgWsConn   *conn = dlist_container(PgWsConn, all_node, iter.cur);

		if (conn->state == CONN_OPEN)
			pgws_conn_close(conn, code, reason);
		else if (drop_requests && conn->state != CONN_ANSWERED)
			conn_kill(conn);
	}
}

/* housekeeping's look at one connection; false when it is being dropped */
static bool
conn_look(PgWsConn *conn, TimestampTz now, int64 now_unix)
{
	TimestampTz ping_ms = (TimestampTz) pgws_ping_interval_s * 1000;

	if (conn->deadline != 0 && now >= conn->deadline)
	{
		if (conn->state == CONN_REQUEST && conn->refusal == NULL &&
			pgws_conn_dropped(PGWS_DROP_HANDSHAKE_TIMEOUT))
			ereport(LOG,
					(errmsg("pg_ws dropped a connection from %s: no complete request within pg_ws.handshake_timeout",
							conn->peer)));
		conn_kill(conn);
		return false;
	}
	if (conn->state != CONN_OPEN || conn->close_due)
		return true;

	if (pgws_grant_expired(&conn->sub.grant, now_unix))
	{
		if (pgws_conn_dropped(PGWS_DROP_TOKEN_EXPIRED))
			ereport(LOG,
					(errmsg("pg_ws is closing the connection of %s: its token expired",
							conn->peer),
					 conn->sub.grant.subject[0] ?
					 errdetail("The token's subject is \"%s\".",
							   conn->sub.grant.subject) : 0));
		pgws_conn_close(conn, WS_CLOSE_TOKEN, "token expired");
		return true;
	}

	if (ping_ms == 0)
		return true;
	if (conn->sub.framing == PGWS_FRAMING_SSE)
	{
		/* a comment once nothing was sent for ping_ms (sse.c) */
		if (conn->sub.bytes_sent != conn->heartbeat_mark)
		{
			conn->heartbeat_mark = conn->sub.bytes_sent;
			conn->quiet_since = now;
		}
		else if ((now - conn->quiet_since) / 1000 >= ping_ms)
		{
			conn->heartbeat_due = true;
			conn->quiet_since = now;
			lws_callback_on_writable(conn->wsi);
		}
		return true;
	}
	if (conn->ping_sent_at != 0)
	{
		if ((now - conn->ping_sent_at) / 1000 >= ping_ms)
		{
			if (pgws_conn_dropped(PGWS_DROP_PING_TIMEOUT))
				ereport(LOG,
						(errmsg("pg_ws dropped the connection of %s: no answer to a ping within pg_ws.ping_interval",
								conn->peer)));
			conn_kill(conn);
			return false;
		}
	}
	else if ((now - conn->last_heard) / 1000 >= ping_ms)
	{
		conn->ping_due = true;
		conn->ping_sent_at = now;
		lws_callback_on_writable(conn->wsi);
	}
	return true;
}

/*
 * Once a second: deadlines, token expiry, pings, for the connections in
 * the slots of the seconds since the last time (the wheel above).  Also
 * lets the peer log say what it suppressed even when no peer writes
 * anything more.
 */
void
pgws_conn_housekeeping(TimestampTz now)
{
	int64		now_unix = (int64) timestamptz_to_time_t(now);
	int64		now_sec = now / USECS_PER_SEC;
	int64		from_sec;

	peer_log_summaries(now);

	if (now_sec < wheel_done_sec - 1)
	{
		dlist_iter	iter;

		/* the clock went back: every look is planned anew from now */
		wheel_done_sec = now_sec - 1;
		dlist_foreach(iter, &all_conns)
			pgws_conn_look_again(dlist_container(PgWsConn, all_node, iter.cur));
	}
	if (now_sec <= wheel_done_sec)
		return;
	/* after a stall longer than a turn, one look at every slot is enough */
	from_sec = Max(wheel_done_sec + 1, now_sec - WHEEL_SLOTS + 1);
	/* from here on, what is planned goes to a later slot than these */
	wheel_done_sec = now_sec;
	for (int64 sec = from_sec; sec <= now_sec; sec++)
	{
		dlist_head	slot;
		dlist_mutable_iter iter;

		/* what is planned again goes to another slot: off this one first */
		dlist_init(&slot);
		while (!dlist_is_empty(&wheel[sec % WHEEL_SLOTS]))
			dlist_push_tail(&slot, dlist_pop_head_node(&wheel[sec % WHEEL_SLOTS]));
		dlist_foreach_modify(iter, &slot)
		{
			PgWsConn   *conn = dlist_container(PgWsConn, wheel_node, iter.cur);

			dlist_delete(&conn->wheel_node);
			conn->in_wheel = false;
			if (conn->look_sec > now_sec || conn_look(conn, now, now_unix))
				conn_look_at(conn, conn->look_sec > now_sec ?
							 conn->look_sec * USECS_PER_SEC : next_look(conn, now));
			else
				conn_look_at(conn, latest_look(now));
		}
	}
}

/*
 * After a reload, for every connection: its look is planned anew
 * (pg_ws.ping_interval may have changed; token expiry is housekeeping's),
 * and a subscriber the settings now in force refuse (let in without a
 * token before pg_ws.auth became jwt) is closed.
 */
void
pgws_conn_settings_reloaded(void)
{
	dlist_iter	iter;

	dlist_foreach(iter, &all_conns)
	{
		PgWsConn   *conn = dlist_container(PgWsConn, all_node, iter.cur);
		const char *reason;

		pgws_conn_look_again(conn);
		if (conn->state != CONN_OPEN || conn->close_due)
			continue;
		if (!pgws_auth_grant_current(&conn->sub.grant, &reason))
		{
			if (pgws_conn_dropped(PGWS_DROP_AUTH_REQUIRED))
				ereport(LOG,
						(errmsg("pg_ws is closing the connection of %s: %s",
								conn->peer, reason)));
			pgws_conn_close(conn, WS_CLOSE_TOKEN, reason);
		}
	}
}

/* where a connection is, as pg_ws_connections shows it */
static PgWsConnInfoState
info_state(const PgWsConn *conn)
{
	switch (conn->state)
	{
		case CONN_REQUEST:
			return conn->refusal ? PGWS_CONN_INFO_REFUSED : PGWS_CONN_INFO_HANDSHAKE;
		case CONN_OPEN:
			return conn->close_due ? PGWS_CONN_INFO_CLOSING :
				conn->sub.catchup_queued ? PGWS_CONN_INFO_WAITING :
				PGWS_CONN_INFO_SUBSCRIBED;
		case CONN_ANSWERED:
		case CONN_LINGER:
			break;
	}
	return PGWS_CONN_INFO_CLOSING;
}

/*
 * Describe every connection into out, as rows PgWsConnInfo each followed
 * by its ?events= patterns and its ?filter=, and padded to MAXALIGN
 * (connections.c reads them).  Returns the number of rows.  Costs nothing
 * until asked.
 */
int
pgws_conn_snapshot(StringInfo out)
{
	dlist_iter	iter;
	int			n = 0;

	dlist_foreach(iter, &all_conns)
	{
		PgWsConn   *conn = dlist_container(PgWsConn, all_node, iter.cur);
		PgWsConnInfo info;
		bool		open = conn->state == CONN_OPEN;
		const char *filter = open ? conn->sub.filter_text : NULL;
		const char *row_filter = open ? conn->sub.values_text : NULL;
		static const char zeros[MAXIMUM_ALIGNOF];
		int			len;

		memset(&info, 0, sizeof(info));
		info.id = conn->id;
		info.state = info_state(conn);
		info.tls = conn->tls;
		strlcpy(info.peer, conn->peer, sizeof(info.peer));
		info.peer_port = conn->peer_port;
		info.connected_since = conn->connected_since;
		if (open)
		{
			/* never the token: its subject and expiry only */
			strlcpy(info.subject, conn->sub.grant.subject, sizeof(info.subject));
			info.token_expires = conn->sub.grant.expires_at;
			info.filtered = filter != NULL;
			info.messages_sent = conn->sub.messages_sent;
			info.bytes_sent = conn->sub.bytes_sent;
			info.bytes_pending = pgws_subscriber_pending_bytes(conn);
		}
		info.filter_len = filter ? strlen(filter) : 0;
		info.row_filter_len = row_filter ? strlen(row_filter) : 0;
		appendBinaryStringInfo(out, (const char *) &info, sizeof(info));
		if (filter)
			appendBinaryStringInfo(out, filter, info.filter_len);
		if (row_filter)
			appendBinaryStringInfo(out, row_filter, info.row_filter_len);
		len = sizeof(info) + info.filter_len + info.row_filter_len;
		appendBinaryStringInfo(out, zeros, MAXALIGN(len) - len);
		n++;
	}
	return n;
}

/*
 * pg_ws_disconnect(): close connection id, a subscriber with a close frame
 * first.  Returns whether it existed.
 */
bool
pgws_conn_disconnect_id(uint64 id)
{
	dlist_iter	iter;

	dlist_foreach(iter, &all_conns)
	{
		PgWsConn   *conn = dlist_container(PgWsConn, all_node, iter.cur);

		if (conn->id != id)
			continue;
		if (pgws_conn_dropped(PGWS_DROP_DISCONNECTED))
			ereport(LOG,
					(errmsg("pg_ws is closing the connection of %s: pg_ws_disconnect(%llu) was called",
							conn->peer, (unsigned long long) id)));
		if (conn->state == CONN_OPEN && !conn->close_due)
			pgws_conn_close(conn, WS_CLOSE_POLICY, "disconnected by an administrator");
		else if (conn->state == CONN_REQUEST)
			conn_kill(conn);
		/* an answer or a close frame already on its way finishes as it is */
		return true;
	}
	return false;
}

/* libwebsockets' callback for every connection of the public vhost */
int
pgws_conn_callback(struct lws *wsi, enum lws_callback_reasons reason,
				   void *user, void *in, size_t len)
{
	PgWsConn   *conn = (PgWsConn *) user;

	pgws_worker_served++;
	switch (reason)
	{
		case LWS_CALLBACK_RAW_ADOPT:
			{
				PgWsAccept *acc = lws_get_opaque_user_data(wsi);

				if (acc == NULL || conn == NULL)
					return -1;
				lws_set_opaque_user_data(wsi, NULL);
				conn_adopt(conn, wsi, acc);
				return 0;
			}

		case LWS_CALLBACK_RAW_RX:
			if (conn == NULL || !conn->adopted)
				return -1;
			switch (conn->state)
			{
				case CONN_REQUEST:
					/* our deadline, not libwebsockets' TLS one, from now on */
					lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
					if (conn->refusal)
						pgws_http_refuse(conn, 503, "Retry-After: 5\r\n", conn->refusal);
					else
					{
						size_t		took = pgws_http_request(conn, in, len);

						/* what followed the head is the new subscriber's */
						if (conn->state == CONN_OPEN && took < len)
							pgws_framing_ops(conn->sub.framing)->read(conn,
																	  (uint8 *) in + took,
																	  len - took);
					}
					break;
				case CONN_OPEN:
					pgws_framing_ops(conn->sub.framing)->read(conn, in, len);
					break;
				case CONN_ANSWERED:
				case CONN_LINGER:
					break;		/* discarded */
			}
			return 0;

		case LWS_CALLBACK_RAW_WRITEABLE:
			if (conn == NULL || !conn->adopted)
				return -1;
			switch (conn->state)
			{
				case CONN_ANSWERED:
					half_close(conn);
					return 0;
				case CONN_OPEN:
					return subscriber_write(conn);
				default:
					return 0;
			}

		case LWS_CALLBACK_RAW_CLOSE:
			/* also for sockets whose TLS handshake failed before adoption */
			if (conn != NULL && conn->adopted)
				conn_release(conn);
			return 0;

		default:
			return 0;
	}
}
