/*-------------------------------------------------------------------------
 *
 * broadcast.c
 *	  The worker's message log and its subscribers: every event drained from
 *	  the shared queue becomes one message, framed once, whose bytes every
 *	  subscriber allowed to see it is sent from the same buffer.
 *
 * This file owns sequence numbers, per-subscriber progress, filtering by
 * a subscriber's grant, culling of subscribers that fall behind and freeing
 * messages everyone has.  It runs only in the worker.  It must not accept
 * connections or speak HTTP (conn.c, http.c), nor know how events were
 * rendered or queued.
 *
 * A message keeps its space in the shared queue until every subscriber has
 * been sent it (see queue.c), and "sent" means it has left libwebsockets'
 * buffer: a frame libwebsockets holds for a full socket is not sent yet,
 * so a worker that dies then finds it again in the queue.
 *
 * Subscribers are judged by their progress over time, never by one look
 * at their socket (libwebsockets holds part of any large frame or burst
 * for a moment even for the fastest reader).  A subscriber is disconnected
 * (close code 1008) when it has made no progress for STALL_MS and is more
 * than pg_ws.max_subscriber_lag behind, or when a committing transaction
 * waits for room it holds and it either made no progress for STALL_MS or
 * has held that room for the grace time (half pg_ws.queue_full_timeout,
 * at most a second): writers never wait long for a slow reader, and a
 * reader that keeps up is never culled.
 *
 * The log is a ring of message pointers indexed by sequence number, as in
 * libwebsockets' ws-server-ring example: a subscriber is just the sequence
 * number of the next message it needs.  Messages are freed once every
 * subscriber has been sent them, except during pg_ws.reconnect_grace after
 * the worker restarts: then everything is kept, and a subscriber that
 * connects starts from the first message of this worker's life, so clients
 * that reconnect after a worker restart also get what was committed while
 * it was down.  The first worker after the server starts has nobody to
 * reconnect and no grace period.
 *
 * src/broadcast.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include <time.h>

#include "utils/memutils.h"

typedef struct WsMessage
{
	uint64		entry_pos;		/* its transaction's entry in the queue */
	uint64		offset;			/* bytes of all messages before this one */
	uint32		len;			/* of the JSON */
	int			kind;			/* PgWsEventKind, or -1 */
	uint8	   *frame;			/* the frame: header, then the JSON */
	uint32		frame_len;
	uint8		data[FLEXIBLE_ARRAY_MEMBER];	/* room for the header, then
												 * the JSON */
} WsMessage;

/* most frames one subscriber is sent before the others get a turn */
#define MESSAGES_PER_WRITABLE 64

/* no progress for this long is no progress */
#define STALL_MS 250

static MemoryContext broadcast_context = NULL;

/* messages [first_seq, next_seq) are held in log[seq & (log_cap - 1)] */
static WsMessage **message_log = NULL;
static uint64 log_cap = 0;
static uint64 first_seq = 0;
static uint64 next_seq = 0;
static uint64 bytes_total = 0;

/* the queue holds messages from released_seq on, until all have them */
static uint64 released_seq = 0;

static dlist_head subscribers = DLIST_STATIC_INIT(subscribers);
static int	nsubscribers = 0;
static bool in_grace = false;
static bool shutting_down = false;

static inline WsMessage *
message_at(uint64 seq)
{
	Assert(seq >= first_seq && seq < next_seq);
	return message_log[seq & (log_cap - 1)];
}

static inline PgWsConn *
subscriber_conn(dlist_node *node)
{
	return dlist_container(PgWsConn, sub.node, node);
}

/* restart: a worker ran before us, so subscribers are about to reconnect */
void
pgws_broadcast_init(bool restart)
{
	broadcast_context = AllocSetContextCreate(TopMemoryContext,
											  "pg_ws broadcast",
											  ALLOCSET_DEFAULT_SIZES);
	log_cap = 1024;
	message_log = MemoryContextAllocZero(broadcast_context,
										 log_cap * sizeof(WsMessage *));
	in_grace = restart && pgws_reconnect_grace_ms > 0;
}

/*
 * pgws_queue_drain's sink: a new message at the end of the log, framed
 * now (the length is known) and filled by the caller.
 */
static char *
append_message(void *arg, uint32 len, uint64 entry_pos)
{
	WsMessage  *msg;
	uint8		header[PGWS_WS_MAX_HEADER];
	int			hlen;

	if (next_seq - first_seq == log_cap)
	{
		WsMessage **bigger;
		uint64		seq;

		bigger = MemoryContextAllocHuge(broadcast_context,
										2 * log_cap * sizeof(WsMessage *));
		for (seq = first_seq; seq < next_seq; seq++)
			bigger[seq & (2 * log_cap - 1)] = message_log[seq & (log_cap - 1)];
		pfree(message_log);
		message_log = bigger;
		log_cap *= 2;
	}

	msg = MemoryContextAlloc(broadcast_context,
							 offsetof(WsMessage, data) + PGWS_WS_MAX_HEADER + len);
	msg->entry_pos = entry_pos;
	msg->offset = bytes_total;
	msg->len = len;
	msg->kind = -1;
	hlen = pgws_ws_frame_header(header, WS_OP_TEXT, len);
	msg->frame = msg->data + PGWS_WS_MAX_HEADER - hlen;
	memcpy(msg->frame, header, hlen);
	msg->frame_len = hlen + len;
	message_log[next_seq & (log_cap - 1)] = msg;
	next_seq++;
	bytes_total += len;
	return (char *) msg->data + PGWS_WS_MAX_HEADER;
}

/*
 * Free what every subscriber has been sent: its space in the shared queue,
 * and, once the grace period is over, its memory here.
 */
static void
trim_log(void)
{
	uint64		min_seq = next_seq;
	uint64		release_seq;
	dlist_iter	iter;

	if (shutting_down)
		return;
	dlist_foreach(iter, &subscribers)
		min_seq = Min(min_seq, subscriber_conn(iter.cur)->sub.sent_seq);

	/* a subscriber replaying the grace period does not hold the queue */
	release_seq = Max(min_seq, released_seq);
	if (release_seq < next_seq)
		pgws_queue_release(message_at(release_seq)->entry_pos);
	else
		pgws_queue_release(pgws_queue_read_pos());
	released_seq = release_seq;

	if (in_grace)
		return;
	while (first_seq < min_seq)
	{
		pfree(message_at(first_seq));
		first_seq++;
	}
}

/*
 * The oldest message this subscriber holds in the shared queue: one it is
 * replaying from the grace period was released already.
 */
static inline uint64
held_seq(PgWsSubscriber *sub)
{
	return Max(sub->sent_seq, released_seq);
}

/* bytes of messages this subscriber still holds in the shared queue */
static uint64
queue_lag(PgWsSubscriber *sub)
{
	uint64		seq = held_seq(sub);

	return seq < next_seq ? bytes_total - message_at(seq)->offset : 0;
}

static void
cull(PgWsConn *conn, uint64 lag, const char *why)
{
	if (pgws_peer_log_allowed(PEER_LOG_CULLED))
		ereport(LOG,
				(errmsg("pg_ws is disconnecting a subscriber that fell %llu bytes behind",
						(unsigned long long) lag),
				 errdetail("Subscriber %s %s.", conn->peer, why),
				 errhint("Consider increasing the configuration parameter \"pg_ws.max_subscriber_lag\".")));
	conn->sub.culled = true;
	pgws_conn_close(conn, WS_CLOSE_POLICY, "subscriber fell too far behind");
}

/*
 * Judge every subscriber by its progress (see the file header), and arm
 * the writable callback of those with something to send.  arrived_from is
 * the first message that has just arrived: a subscriber that had
 * everything before it was keeping up until now.
 */
static void
check_progress(TimestampTz now, uint64 arrived_from)
{
	uint64		max_lag = (uint64) pgws_max_subscriber_lag_kb * 1024;
	bool		writers_waiting = pgws_queue_writers_waiting();
	uint64		holding_seq = next_seq;
	TimestampTz grace_us = (TimestampTz) Min(1000, pgws_queue_full_timeout_ms / 2) * 1000;
	dlist_iter	iter;
	dlist_mutable_iter miter;

	dlist_foreach(iter, &subscribers)
		holding_seq = Min(holding_seq, held_seq(&subscriber_conn(iter.cur)->sub));

	dlist_foreach_modify(miter, &subscribers)
	{
		PgWsConn   *conn = subscriber_conn(miter.cur);
		PgWsSubscriber *sub = &conn->sub;
		bool		holds;
		bool		stalled;
		uint64		lag;

		if (sub->sent_seq >= arrived_from)
			sub->progress_at = now;
		if (sub->sent_seq == next_seq)
		{
			sub->holding_since = 0;
			continue;
		}
		holds = writers_waiting && held_seq(sub) == holding_seq;
		if (!holds)
			sub->holding_since = 0;
		else if (sub->holding_since == 0)
			sub->holding_since = now;
		stalled = now - sub->progress_at >= (TimestampTz) STALL_MS * 1000;
		lag = queue_lag(sub);

		if (stalled && lag > max_lag)
			cull(conn, lag, "stopped reading and exceeded pg_ws.max_subscriber_lag");
		else if (holds && stalled)
			cull(conn, lag, "stopped reading while a committing transaction waited for the room it held");
		else if (holds && now - sub->holding_since >= grace_us)
			cull(conn, lag, "held up a committing transaction that waited for room");
		else if (sub->next_seq < next_seq)
			lws_callback_on_writable(conn->wsi);
	}
}

/*
 * Move every committed event from the shared queue into the log and arm
 * the subscribers that now have something to send.  Returns how many events
 * arrived.
 */
uint64
pgws_broadcast_drain_queue(void)
{
	uint64		arrived_from = next_seq;
	uint64		n = pgws_queue_drain(append_message, NULL);
	uint64		seq;

	for (seq = arrived_from; seq < next_seq; seq++)
	{
		WsMessage  *msg = message_at(seq);

		msg->kind = pgws_event_kind_of((char *) msg->frame + (msg->frame_len - msg->len),
									   msg->len);
	}
	if (n > 0 || pgws_queue_writers_waiting())
		check_progress(GetCurrentTimestamp(), arrived_from);
	trim_log();
	return n;
}

/* once a second: stalls are noticed even when nothing arrives */
void
pgws_broadcast_check_progress(TimestampTz now)
{
	check_progress(now, next_seq);
	trim_log();
}

/* pg_ws.reconnect_grace is over: keep only what subscribers still need */
void
pgws_broadcast_end_grace(void)
{
	in_grace = false;
	trim_log();
}

/*
 * The worker is exiting: free what every subscriber has been sent, and then
 * nothing more, so that the next worker sends exactly what some subscriber
 * has not received yet to those that reconnect.
 */
void
pgws_broadcast_shutdown(void)
{
	trim_log();
	shutting_down = true;
}

int
pgws_subscriber_count(void)
{
	return nsubscribers;
}

/* a connection was upgraded to /ws/: it receives from now on */
void
pgws_subscriber_open(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;

	/* during the grace period everything since start-up is still here */
	sub->next_seq = sub->sent_seq = in_grace ? first_seq : next_seq;
	sub->progress_at = GetCurrentTimestamp();
	sub->holding_since = 0;
	sub->culled = false;
	sub->subscribed = true;
	dlist_push_tail(&subscribers, &sub->node);
	nsubscribers++;
	if (sub->next_seq < next_seq)
		lws_callback_on_writable(conn->wsi);
}

/*
 * The socket can take bytes: everything handed to libwebsockets before has
 * left its buffer (it calls us only then), so that is sent; then hand over
 * the next frames this subscriber may see, until one is left partly
 * buffered (the socket is full) or the batch is done.  Returns -1 to close
 * the connection.
 */
int
pgws_subscriber_writable(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;
	uint64		first = sub->sent_seq;
	int			written = 0;

	if (!sub->subscribed)
		return 0;
	sub->sent_seq = sub->next_seq;
	/* past its token's end it gets nothing; conn.c closes it within a second */
	if (pgws_grant_expired(&sub->grant, (int64) time(NULL)))
		return 0;

	while (sub->next_seq < next_seq && written < MESSAGES_PER_WRITABLE)
	{
		WsMessage  *msg = message_at(sub->next_seq);

		sub->next_seq++;
		if (!pgws_grant_allows(&sub->grant, msg->kind))
		{
			sub->sent_seq = sub->next_seq;
			continue;
		}
		if (lws_write(conn->wsi, msg->frame, msg->frame_len,
					  LWS_WRITE_RAW) < (int) msg->frame_len)
			return -1;
		written++;
		/* costs no system call, unlike lws_send_pipe_choked() */
		if (lws_partial_buffered(conn->wsi))
			break;				/* libwebsockets calls us when it is out */
		sub->sent_seq = sub->next_seq;
	}
	if (sub->sent_seq > first || sub->sent_seq == next_seq)
		sub->progress_at = GetCurrentTimestamp();
	if (sub->next_seq < next_seq && !lws_partial_buffered(conn->wsi))
		lws_callback_on_writable(conn->wsi);

	/* this subscriber may have been holding up a waiting writer */
	if (first <= released_seq && sub->sent_seq > first &&
		pgws_queue_writers_waiting())
		trim_log();
	return 0;
}

/* the connection stops receiving (closing, or gone) */
void
pgws_subscriber_close(PgWsConn *conn)
{
	if (!conn->sub.subscribed)
		return;
	dlist_delete(&conn->sub.node);
	nsubscribers--;
	conn->sub.subscribed = false;
	trim_log();
}
