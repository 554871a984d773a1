/*-------------------------------------------------------------------------
 *
 * broadcast.c
 *	  The worker's message log and its subscribers: every event drained from
 *	  the shared queue becomes one message, rendered once, whose bytes every
 *	  subscriber is sent from the same buffer.
 *
 * This file owns sequence numbers, per-subscriber progress, culling of
 * subscribers that fall too far behind and freeing messages everyone has.
 * It runs only in the worker.  It must not accept connections or route
 * HTTP (worker.c), nor know how events were rendered or queued.
 *
 * A message keeps its space in the shared queue until every subscriber has
 * been sent it (see queue.c).  A subscriber whose socket stops taking data
 * is disconnected once it is pg_ws.max_subscriber_lag behind, or as soon as
 * it holds up a committing transaction that waits for room: writers never
 * wait for a slow reader.
 *
 * The log is a ring of message pointers indexed by sequence number, as in
 * libwebsockets' ws-server-ring example: a subscriber is just the sequence
 * number of the next message it needs.  Messages are freed once every
 * subscriber has passed them, except during pg_ws.reconnect_grace after the
 * worker restarts: then everything is kept, and a subscriber that connects
 * starts from the first message of this worker's life, so clients that
 * reconnect after a worker restart also get what was committed while it
 * was down.  The first worker after the server starts has nobody to
 * reconnect and no grace period.
 *
 * src/broadcast.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include <libwebsockets.h>

#include "lib/ilist.h"
#include "utils/memutils.h"

typedef struct WsMessage
{
	uint64		entry_pos;		/* its transaction's entry in the queue */
	uint64		offset;			/* bytes of all messages before this one */
	uint32		len;
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* LWS_PRE headroom, then the
												 * JSON */
} WsMessage;

struct PgWsSubscriber
{
	dlist_node	node;
	struct lws *wsi;
	uint64		next_seq;		/* next message this subscriber needs */
	bool		culled;			/* fell too far behind; closing */
};

/* most frames one subscriber is sent before the others get a turn */
#define MESSAGES_PER_WRITABLE 64

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

/* pgws_queue_drain's sink: a new message at the end of the log */
static char *
append_message(void *arg, uint32 len, uint64 entry_pos)
{
	WsMessage  *msg;

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
							 offsetof(WsMessage, data) + LWS_PRE + len);
	msg->entry_pos = entry_pos;
	msg->offset = bytes_total;
	msg->len = len;
	message_log[next_seq & (log_cap - 1)] = msg;
	next_seq++;
	bytes_total += len;
	return msg->data + LWS_PRE;
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
	{
		struct PgWsSubscriber *sub = dlist_container(struct PgWsSubscriber, node, iter.cur);

		min_seq = Min(min_seq, sub->next_seq);
	}

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
held_seq(struct PgWsSubscriber *sub)
{
	return Max(sub->next_seq, released_seq);
}

/* bytes of messages this subscriber still holds in the shared queue */
static uint64
queue_lag(struct PgWsSubscriber *sub)
{
	uint64		seq = held_seq(sub);

	return seq < next_seq ? bytes_total - message_at(seq)->offset : 0;
}

static void
cull(struct PgWsSubscriber *sub, uint64 lag)
{
	ereport(LOG,
			(errmsg("pg_ws is disconnecting a subscriber that fell %llu bytes behind",
					(unsigned long long) lag),
			 errhint("Consider increasing the configuration parameter \"pg_ws.max_subscriber_lag\".")));
	sub->culled = true;
	dlist_delete(&sub->node);
	nsubscribers--;
	/* close with a reason when it can take one, or without after 5 seconds */
	lws_set_timeout(sub->wsi, PENDING_TIMEOUT_USER_OK, 5);
	lws_callback_on_writable(sub->wsi);
}

/*
 * Move every committed event from the shared queue into the log and arm the
 * subscribers that now have something to send.  Returns how many events
 * arrived.
 */
uint64
pgws_broadcast_drain_queue(void)
{
	uint64		n = pgws_queue_drain(append_message, NULL);
	uint64		max_lag = (uint64) pgws_max_subscriber_lag_kb * 1024;
	bool		writers_waiting = pgws_queue_writers_waiting();
	uint64		holding_seq = next_seq;
	dlist_iter	iter;
	dlist_mutable_iter miter;

	/* the oldest message a subscriber holds in the queue */
	dlist_foreach(iter, &subscribers)
	{
		struct PgWsSubscriber *sub = dlist_container(struct PgWsSubscriber, node, iter.cur);

		holding_seq = Min(holding_seq, held_seq(sub));
	}

	/*
	 * A subscriber is slow only if its socket will not take more: a burst
	 * the worker has not sent yet is not the subscriber's fault.  A slow one
	 * is disconnected when it is too far behind, or when it holds the oldest
	 * message while a committing transaction waits for room.
	 */
	dlist_foreach_modify(miter, &subscribers)
	{
		struct PgWsSubscriber *sub = dlist_container(struct PgWsSubscriber, node, miter.cur);
		uint64		lag;

		if (sub->next_seq == next_seq)
			continue;
		lag = queue_lag(sub);
		if ((lag > max_lag ||
			 (writers_waiting && held_seq(sub) == holding_seq)) &&
			lws_send_pipe_choked(sub->wsi))
			cull(sub, lag);
		else
			lws_callback_on_writable(sub->wsi);
	}
	trim_log();
	return n;
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
	dlist_iter	iter;

	trim_log();
	shutting_down = true;

	/* say goodbye (1001, going away) at each one's next writable */
	dlist_foreach(iter, &subscribers)
	{
		struct PgWsSubscriber *sub = dlist_container(struct PgWsSubscriber, node, iter.cur);

		lws_callback_on_writable(sub->wsi);
	}
}

size_t
pgws_subscriber_size(void)
{
	return sizeof(struct PgWsSubscriber);
}

int
pgws_subscriber_count(void)
{
	return nsubscribers;
}

/* a /ws/ connection is established; sub is its zeroed per-session memory */
void
pgws_subscriber_open(struct lws *wsi, struct PgWsSubscriber *sub)
{
	sub->wsi = wsi;
	sub->culled = false;
	/* during the grace period everything since start-up is still here */
	sub->next_seq = in_grace ? first_seq : next_seq;
	dlist_push_tail(&subscribers, &sub->node);
	nsubscribers++;
	if (sub->next_seq < next_seq)
		lws_callback_on_writable(wsi);
}

/*
 * The socket can take frames: send this subscriber's next messages while
 * it takes them, up to a batch, then let the others have their turn.
 * Returns -1 to close the connection.
 */
int
pgws_subscriber_writable(struct lws *wsi, struct PgWsSubscriber *sub)
{
	uint64		first = sub->next_seq;

	if (sub->culled)
	{
		static const char reason[] = "subscriber fell too far behind";

		lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
						 (unsigned char *) reason, sizeof(reason) - 1);
		return -1;
	}
	if (shutting_down)
	{
		static const char reason[] = "pg_ws is restarting or shutting down";

		lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY,
						 (unsigned char *) reason, sizeof(reason) - 1);
		return -1;
	}

	/*
	 * Several writes per callback are allowed as long as none of them was
	 * left partly buffered by libwebsockets (the socket is full then); that
	 * check costs no system call, unlike lws_send_pipe_choked().
	 */
	while (sub->next_seq < next_seq &&
		   sub->next_seq - first < MESSAGES_PER_WRITABLE)
	{
		WsMessage  *msg = message_at(sub->next_seq);

		if (lws_write(wsi, (unsigned char *) msg->data + LWS_PRE, msg->len,
					  LWS_WRITE_TEXT) < (int) msg->len)
			return -1;
		sub->next_seq++;
		if (lws_partial_buffered(wsi))
			break;
	}
	if (sub->next_seq < next_seq)
		lws_callback_on_writable(wsi);

	/* this subscriber may have been holding up a waiting writer */
	if (first <= released_seq && sub->next_seq > first &&
		pgws_queue_writers_waiting())
		trim_log();
	return 0;
}

void
pgws_subscriber_close(struct PgWsSubscriber *sub)
{
	if (sub->wsi == NULL || sub->culled)
		return;
	dlist_delete(&sub->node);
	nsubscribers--;
	sub->wsi = NULL;
	trim_log();
}
