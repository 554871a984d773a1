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
 * Auth glue (issue 5; redone with the new transport): each subscriber
 * keeps the grant auth.c gave it at the upgrade.  It is sent only the
 * messages its grant allows (each message is tagged with its event kind
 * once, when it is drained), nothing once its token has expired, and is
 * closed with 4001 at expiry, on a rejected auth message, or when a reload
 * makes pg_ws.auth require a token it lacks.  Filtered messages are
 * skipped, not sent: a subscriber passes them as quickly as it passes any.
 *
 * src/broadcast.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "auth.h"

#include <libwebsockets.h>
#include <time.h>

#include "lib/ilist.h"
#include "utils/memutils.h"

typedef struct WsMessage
{
	uint64		entry_pos;		/* its transaction's entry in the queue */
	uint64		offset;			/* bytes of all messages before this one */
	uint32		len;
	int			kind;			/* pgws_event_kind_of(), for grants */
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* LWS_PRE headroom, then the
												 * JSON */
} WsMessage;

struct PgWsSubscriber
{
	dlist_node	node;
	struct lws *wsi;
	uint64		next_seq;		/* next message this subscriber needs */
	bool		culled;			/* out of the list, closing with: */
	uint16		close_code;
	const char *close_reason;
	PgWsGrant	grant;			/* what it may receive, until when */
	StringInfo	rx;				/* a text message arriving in pieces */
	bool		rx_skip;		/* ... too long to be an auth message */
};

/* a text message longer than this is not an auth message: skipped */
#define MAX_RECEIVED_MESSAGE 16384

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

/*
 * Take a subscriber out of the list and close it with code and reason at
 * its next writable, or without them after 5 seconds if it never is.
 */
static void
detach_and_close(struct PgWsSubscriber *sub, uint16 code, const char *reason)
{
	if (sub->culled)
		return;
	sub->culled = true;
	sub->close_code = code;
	sub->close_reason = reason;
	dlist_delete(&sub->node);
	nsubscribers--;
	lws_set_timeout(sub->wsi, PENDING_TIMEOUT_USER_OK, 5);
	lws_callback_on_writable(sub->wsi);
}

static void
cull(struct PgWsSubscriber *sub, uint64 lag)
{
	ereport(LOG,
			(errmsg("pg_ws is disconnecting a subscriber that fell %llu bytes behind",
					(unsigned long long) lag),
			 errhint("Consider increasing the configuration parameter \"pg_ws.max_subscriber_lag\".")));
	detach_and_close(sub, LWS_CLOSE_STATUS_POLICY_VIOLATION,
					 "subscriber fell too far behind");
}

/*
 * Move every committed event from the shared queue into the log and arm the
 * subscribers that now have something to send.  Returns how many events
 * arrived.
 */
uint64
pgws_broadcast_drain_queue(void)
{
	uint64		before = next_seq;
	uint64		n = pgws_queue_drain(append_message, NULL);
	uint64		seq;
	uint64		max_lag = (uint64) pgws_max_subscriber_lag_kb * 1024;
	bool		writers_waiting = pgws_queue_writers_waiting();
	uint64		holding_seq = next_seq;
	dlist_iter	iter;
	dlist_mutable_iter miter;

	/* auth glue: the kind each grant is checked against, found once */
	for (seq = before; seq < next_seq; seq++)
	{
		WsMessage  *msg = message_at(seq);

		msg->kind = pgws_event_kind_of(msg->data + LWS_PRE, msg->len);
	}

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

/*
 * Auth glue: wake up when the grant expires, if it does.  A timer armed
 * for a grant since replaced by one that never expires is left to fire
 * once, harmlessly: libwebsockets 4.1's lws_set_timer_usecs() does not
 * cancel, LWS_SET_TIMER_USEC_CANCEL would fire at once.
 */
static void
arm_expiry(struct PgWsSubscriber *sub)
{
	int64		left;

	if (sub->grant.expires_at == 0)
		return;
	/* expired once the clock passes expires_at: a second after it */
	left = sub->grant.expires_at + 1 - (int64) time(NULL);
	lws_set_timer_usecs(sub->wsi, (lws_usec_t) Max(left, 0) * LWS_US_PER_SEC);
}

static inline bool
grant_expired(struct PgWsSubscriber *sub)
{
	return sub->grant.expires_at != 0 && (int64) time(NULL) > sub->grant.expires_at;
}

/*
 * A /ws/ connection is established; sub is its zeroed per-session memory,
 * grant what auth.c allowed its upgrade.
 */
void
pgws_subscriber_open(struct lws *wsi, struct PgWsSubscriber *sub,
					 const struct PgWsGrant *grant)
{
	sub->wsi = wsi;
	sub->culled = false;
	sub->grant = *grant;
	arm_expiry(sub);
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
		lws_close_reason(wsi, sub->close_code,
						 (unsigned char *) sub->close_reason,
						 strlen(sub->close_reason));
		return -1;
	}
	if (shutting_down)
	{
		static const char reason[] = "pg_ws is restarting or shutting down";

		lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY,
						 (unsigned char *) reason, sizeof(reason) - 1);
		return -1;
	}
	/* auth glue: nothing more once the token has expired, whatever timers */
	if (grant_expired(sub))
	{
		static const char reason[] = "token expired";

		lws_close_reason(wsi, PGWS_CLOSE_AUTH,
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

		/* auth glue: what its token does not allow, it is never sent */
		if (!pgws_grant_allows(&sub->grant, msg->kind))
		{
			sub->next_seq++;
			continue;
		}
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
	if (sub->rx != NULL)
	{
		pfree(sub->rx->data);
		pfree(sub->rx);
		sub->rx = NULL;
	}
	if (sub->wsi == NULL || sub->culled)
		return;
	dlist_delete(&sub->node);
	nsubscribers--;
	sub->wsi = NULL;
	trim_log();
}

/* ------------------------------------------------ auth glue (issue 5) */

/* the expiry timer armed by arm_expiry() fired */
void
pgws_subscriber_timer(struct lws *wsi, struct PgWsSubscriber *sub)
{
	if (sub->wsi == NULL || sub->culled)
		return;
	if (grant_expired(sub))
		detach_and_close(sub, PGWS_CLOSE_AUTH, "token expired");
	else
		arm_expiry(sub);		/* early, or the grant was extended (or
								 * made endless: then nothing) */
}

static void
received_message(struct PgWsSubscriber *sub, const char *msg, size_t len)
{
	const char *reason = NULL;

	switch (pgws_auth_message(msg, len, (int64) time(NULL), &sub->grant, &reason))
	{
		case AUTH_MSG_NOT_AUTH:
			break;				/* what else subscribers say is ignored */
		case AUTH_MSG_ACCEPTED:
			arm_expiry(sub);
			break;
		case AUTH_MSG_REJECTED:
			detach_and_close(sub, PGWS_CLOSE_AUTH, reason);
			break;
	}
}

/*
 * Data from a subscriber: a text message, whole or in pieces, may be an
 * auth message.  Pieces are gathered up to MAX_RECEIVED_MESSAGE.
 */
void
pgws_subscriber_receive(struct lws *wsi, struct PgWsSubscriber *sub,
						const char *in, size_t len)
{
	bool		complete = lws_is_final_fragment(wsi) &&
		lws_remaining_packet_payload(wsi) == 0;

	if (sub->wsi == NULL || sub->culled)
		return;
	if (lws_frame_is_binary(wsi))
		sub->rx_skip = true;
	if (complete && sub->rx == NULL && !sub->rx_skip)
	{
		received_message(sub, in, len);
		return;
	}
	if (!sub->rx_skip)
	{
		if (sub->rx == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(broadcast_context);

			sub->rx = makeStringInfo();
			MemoryContextSwitchTo(old);
		}
		if (sub->rx->len + len > MAX_RECEIVED_MESSAGE)
			sub->rx_skip = true;
		else
			appendBinaryStringInfo(sub->rx, in, len);
	}
	if (complete)
	{
		if (!sub->rx_skip && sub->rx != NULL)
			received_message(sub, sub->rx->data, sub->rx->len);
		if (sub->rx != NULL)
			resetStringInfo(sub->rx);
		sub->rx_skip = false;
	}
}

/*
 * After a reload: close the subscribers whose grant the settings now in
 * force refuse (let in without a token before pg_ws.auth became jwt).
 */
void
pgws_broadcast_reauthorize(void)
{
	dlist_mutable_iter miter;

	dlist_foreach_modify(miter, &subscribers)
	{
		struct PgWsSubscriber *sub = dlist_container(struct PgWsSubscriber, node, miter.cur);
		const char *reason;

		if (!pgws_auth_grant_current(&sub->grant, &reason))
			detach_and_close(sub, PGWS_CLOSE_AUTH, reason);
	}
}
