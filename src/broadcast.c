/*-------------------------------------------------------------------------
 *
 * broadcast.c
 *	  The worker's message log and its subscribers: every event drained from
 *	  the shared queue becomes one message, framed once per framing in use,
 *	  whose bytes every subscriber allowed to see it is sent from the same
 *	  buffer.
 *
 * This file owns the log, the recent history kept in it, where a
 * subscriber starts (live, or resuming after a position), per-subscriber
 * progress, filtering by a subscriber's grant, ?events= and ?filter=, the
 * index where idle filtered subscribers wait (see below), culling of
 * subscribers that fall behind and freeing messages nobody needs.  It
 * runs only in the worker.  It must not accept connections or speak HTTP
 * (conn.c, http.c), nor know how events were rendered or queued, nor how
 * a framing writes a message (ws.c, sse.c).
 *
 * Framings.  A subscriber is one of /ws/ (WebSocket frames) or of /events
 * (Server-Sent Events lines); everything here is the same for both but
 * the bytes it is handed.  A message's WebSocket frame is made when it
 * arrives: it is where its JSON is kept, behind a header of at most ten
 * bytes.  Its frame of another framing is made the first time a
 * subscriber of that framing is handed it, from that JSON, once for all
 * of them, into blocks of that framing's own (below); a message no such
 * subscriber takes is never framed so.  Progress, lag and culling count
 * the JSON's bytes, whatever the framing; pg_ws.history_size and a
 * catch-up reader's window count the frames of every framing, so that
 * SSE subscribers cost the history room, not memory beyond its bound.
 *
 * Positions.  Every event carries its position in the stream ("seq") and
 * the epoch in which positions compare (queue.c gives both); the message
 * is the event's JSON with "seq" and "epoch" added after "data".  A
 * subscriber that connects with ?since=SEQ&epoch=E gets every event after
 * SEQ first, then the live stream, from the same log.  When the events
 * after SEQ are no longer here, or E is not our epoch, it gets one
 * resync_required message first and then the live stream: never a gap it
 * cannot see.  A subscriber that connects with a snapshot position from
 * pg_ws_position() (?since=P) resumes after the position's "after" the
 * same way, and is not sent the events, below its "until", of the
 * transactions its snapshot saw (position.c): every message keeps its
 * transaction's id for that.
 *
 * Where the events come from.  On a primary, from the shared queue; on a
 * hot standby, from the WAL as it is replayed (walread.c, "following"),
 * with the same positions.  A subscriber resuming from before the log's
 * history floor first takes its events from the WAL ("catching up"), with
 * a reader shared by those resuming from about the same place that frames
 * each event once (see "Shared catch-up readers" below), then joins the
 * log where the reader's floor was; its riders pin the log's messages from
 * there on, and not the shared queue.  Readers hold memory (a
 * transaction's events, up to pg_ws.queue_size, while they hand them over,
 * and a window of frames), so only as many read at once as
 * pg_ws.catchup_memory holds at twice pg_ws.queue_size each; a resumer
 * that can ride none waits in line, holding nothing.  How many
 * connections of one address may resume from the WAL at once is asked
 * here (pgws_broadcast_wal_resumes_from) and decided by http.c.
 *
 * A message keeps its space in the shared queue until every subscriber has
 * been sent it (see queue.c), and "sent" means it has left libwebsockets'
 * buffer: a frame libwebsockets holds for a full socket is not sent yet,
 * so a worker that dies then finds it again in the queue.  Its memory here
 * is kept longer, as history, up to pg_ws.history_size.
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
 * Subscribers who are up to date come first.  One that resumed and is
 * still behind (from the WAL or from the log) is written to only in its
 * turn: when libwebsockets calls it writable it lines up, and each pass of
 * the worker's event loop gives a few turns to those that have waited
 * longest (pgws_broadcast_before_pass), so a storm of resumers costs the
 * live stream at most a slice of a pass.  A resumer lines up only from a
 * writable callback, so one in line has taken everything it was sent:
 * waiting for its turn is progress as far as culling goes.
 *
 * The log is a ring of message pointers indexed by a running index, as in
 * libwebsockets' ws-server-ring example: a subscriber is just the index of
 * the next message it needs.  The index is this worker's; the position
 * (seq) is the stream's.  The frames themselves are written back to back
 * into blocks, a chain of them per framing, so a subscriber's pending
 * messages are mostly one run of bytes: it is sent a whole span with one
 * write, and a message its grant filters out only ends the span.
 *
 * What is counted for pg_ws_stats (pgws_worker_stats): an event is sent
 * once the queue's room for it is freed, that is once every subscriber
 * then connected has been sent it (or none was connected); a message is
 * sent, to one subscriber, when its frame is handed to libwebsockets, with
 * the frame's bytes.  Counting costs an increment per message of a span.
 *
 * src/broadcast.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"
#include "walread.h"

#include <time.h>

#include "access/xlog.h"
#include "access/xlogrecovery.h"

#include "utils/memutils.h"

/*
 * Frames are written one after another into blocks, so that the frames of
 * consecutive messages are consecutive bytes: a subscriber is sent a span
 * of them with one write.  A frame larger than a block gets a block of its
 * own.  Blocks are freed in order, once their last message is.  Frames of
 * a framing made on first use are written in the order subscribers reach
 * their messages, not always the log's: a block is freed once every
 * message framed in it is (the newest of them, last_idx), and a block
 * whose newest message is still kept keeps the newer blocks too, until it
 * goes.
 */
typedef struct FrameBlock
{
	struct FrameBlock *next;	/* the next newer block */
	uint64		last_idx;		/* the newest message with a frame here */
	uint32		size;
	uint32		used;
	uint8		bytes[FLEXIBLE_ARRAY_MEMBER];
} FrameBlock;

#define FRAME_BLOCK_SIZE (32 * 1024)

typedef struct WsMessage
{
	uint64		seq;			/* the event's position */
	uint64		entry_pos;		/* its transaction's entry in the queue */
	uint64		offset;			/* bytes of all messages before this one */
	uint32		len;			/* of the JSON as sent */
	int			kind;			/* PgWsEventKind, or -1 */
	TransactionId xid;			/* its transaction, for snapshot positions */
	uint32		name_len;		/* kind -1: its name, in the frame, to */
	const char *name;			/* match filters with; NULL if it has none */
	uint8	   *frame[PGWS_NUM_FRAMINGS];	/* in its framing's blocks; the
											 * WebSocket one (header, JSON)
											 * always, others once made */
	uint32		frame_len[PGWS_NUM_FRAMINGS];
	char	   *row;			/* the row beside the event, for filters
								 * only: never sent; NULL if none */
	uint32		row_len;
} WsMessage;

/* room for ', "seq": N, "epoch": "E"' after the event's own JSON */
#define POSITION_ROOM (48 + PGWS_EPOCH_LEN)

/*
 * Bytes one subscriber is handed per writable callback before the others
 * get a turn; one write is at most a block (or one larger frame), within
 * the protocol's tx_packet_size, so libwebsockets never splits it.
 */
#define BYTES_PER_WRITABLE (256 * 1024)

/*
 * Turns for resumers.  A subscriber that is behind because it resumed (from
 * the WAL or from the log) is not written to whenever its socket can take
 * bytes: it lines up for a turn, and each pass of the event loop gives at
 * most TURNS_PER_PASS turns of up to BYTES_PER_TURN each, first come first
 * served.  So a pass hands resumers at most about 1 MB however many resume
 * at once, and the worker is soon back in its loop to serve the writable
 * callbacks of subscribers who are up to date: a storm of a thousand
 * resumers otherwise hands out 256 kB to each before the live ones' turn
 * comes (150 ms and more on two cores), and libwebsockets serves callbacks
 * in its own order.  Waiting for a turn is the worker's doing, not the
 * subscriber's: it counts as progress (check_progress).
 */
#define BYTES_PER_TURN (64 * 1024)
#define TURNS_PER_PASS 16

typedef enum PgWsTurn
{
	TURN_NONE = 0,				/* writes when its socket is writable */
	TURN_WAITING,				/* in turn_line */
	TURN_GIVEN					/* armed: its next callback writes */
} PgWsTurn;

static dlist_head turn_line = DLIST_STATIC_INIT(turn_line);
static int	nturns_given = 0;

/* no progress for this long is no progress */
#define STALL_MS 250

static MemoryContext broadcast_context = NULL;

/* messages [first_idx, next_idx) are held in log[idx & (log_cap - 1)] */
static WsMessage **message_log = NULL;
static uint64 log_cap = 0;
static uint64 first_idx = 0;
static uint64 next_idx = 0;
static uint64 bytes_total = 0;

/*
 * Blocks of frames, oldest first, a chain per framing, and the heap they
 * and their messages hold: the log's, and each shared catch-up reader's
 * window (below).
 */
typedef struct FrameChain
{
	FrameBlock *oldest;
	FrameBlock *newest;
} FrameChain;

typedef struct FrameBlocks
{
	MemoryContext cxt;
	FrameChain	chain[PGWS_NUM_FRAMINGS];
	uint64		heap;			/* blocks, messages, rows */
} FrameBlocks;

/* the log's frames (its context is broadcast_context) */
static FrameBlocks log_blocks;

/*
 * May this subscriber be sent an event of this kind?  Events of the
 * document are told by their kind (a bit), any other (kind -1) by its name
 * (NULL when it has none: then only a subscriber of every event).  Its
 * token's grant bounds it, and its ?events= filter narrows it further; a
 * new token (an auth message) replaces the grant, never the filter.
 */
static inline bool
subscriber_wants(const PgWsSubscriber *sub, int kind, const char *name,
				 size_t name_len)
{
	return pgws_grant_allows(&sub->grant, kind, name, name_len) &&
		pgws_event_set_has(&sub->filter, kind, name, name_len);
}

/*
 * Has a subscriber that resumed from a snapshot position the change of
 * this event in its rows already?  Then it is not sent (position.c).
 */
static inline bool
snapshot_saw(const PgWsSubscriber *sub, uint64 seq, TransactionId xid)
{
	return sub->snapshot && pgws_position_saw(&sub->position, seq, xid);
}

/*
 * Do its ?filter= and its token's filters claim take this event?  row is
 * what pg_ws carries beside it: a deleted row, filter columns (filter.c).
 */
static inline bool
values_match(const PgWsSubscriber *sub, int kind, const char *name,
			 size_t name_len, const char *json, uint32 len,
			 const char *row, uint32 row_len)
{
	return (sub->values == NULL ||
			pgws_value_filter_matches(sub->values, json, len, row, row_len)) &&
		pgws_grant_filter_allows(&sub->grant, kind, name, name_len, json, len,
								 row, row_len);
}

/*
 * An event as the queue and the WAL hold it: its JSON, then, for a delete
 * whose data has only the key or an event of a table with filter columns,
 * a tab and the row filters look at (render.c).  JSON text never holds a
 * raw tab.
 */
static inline void
split_line(const char *line, uint32 len, uint32 *json_len,
		   const char **row, uint32 *row_len)
{
	const char *tab = memchr(line, '\t', len);

	*json_len = tab ? (uint32) (tab - line) : len;
	*row = tab ? tab + 1 : NULL;
	*row_len = tab ? len - *json_len - 1 : 0;
}

/*
 * Every event with a position above history_floor is in the log (or yet to
 * come); the ones at or below it are not here any more.
 */
static uint64 history_floor = 0;

/*
 * The epoch positions compare in (queue.c), which positions in the WAL
 * follow with the timeline they were made on (timeline.c): "SYSID-DB-TLI".
 * Positions of pg_ws.wal = off's counter have no timeline.
 */
static char epoch[PGWS_EPOCH_LEN];
static bool epoch_has_timeline = false;
static char epoch_labelled[PGWS_EPOCH_LEN];	/* with the timeline, for ... */
static TimeLineID epoch_labelled_tli = 0;	/* ... this one */

/* the queue holds messages from released_idx on, until all have them */
static uint64 released_idx = 0;
/* a subscriber closed since trim_log() last ran (pgws_subscriber_close) */
static bool closed_since_trim = false;

static dlist_head subscribers = DLIST_STATIC_INIT(subscribers);
static int	nsubscribers = 0;	/* those waiting to catch up too */
static uint64 subscribers_listed = 0;	/* pushes onto that list, ever */

/*
 * When check_progress() last found every subscriber of the list sent
 * everything, in no state that time alone changes (waiting for a
 * timeline, for a position, to catch up, for its turn), nothing but a new
 * message or a subscriber newly listed can give the next pass anything to
 * do: the once-a-second pass is skipped until then, so that an idle worker
 * does no work per subscriber.  settled_idx is next_idx then (UINT64_MAX:
 * not settled), settled_listed subscribers_listed.  trim_log() likewise
 * remembers what it saw when it freed all it could (trimmed).
 */
static uint64 settled_idx = UINT64_MAX;
static uint64 settled_listed = 0;

typedef struct TrimSeen
{
	uint64		idx;			/* next_idx; UINT64_MAX: it could not free all */
	uint64		read_pos;		/* the queue's (0 on a standby) */
	uint64		history;		/* pg_ws.history_size in bytes */
	uint64		heap;			/* log_blocks.heap */
} TrimSeen;

static TrimSeen trimmed = {UINT64_MAX, 0, 0, 0};

/* subscribers waiting for catch-up memory, first come first served */
static dlist_head waiting_resumers = DLIST_STATIC_INIT(waiting_resumers);
static int	ncatchups = 0;		/* reading the WAL now */

/*
 * A catching-up subscriber that makes no progress for this long while
 * others wait to catch up gives its place to them
 */
#define CATCHUP_STALL_MS 1000
static bool shutting_down = false;

/* the database whose events are in the WAL (pg_ws.database) */
static Oid	events_database = InvalidOid;

/* the queue's first committed entry waits for its commit to be flushed */
static bool queue_waits_for_flush = false;

/* on a hot standby: the reader that follows replay */
static PgWsWalReader *follower = NULL;

static bool beyond_history(uint64 seq);
static void go_live(PgWsConn *conn, bool resync);
static void place_subscriber(PgWsConn *conn);
static bool past_fork(PgWsSubscriber *sub, uint64 *fork);
static void step_off(PgWsConn *conn);
static void end_catchup(PgWsSubscriber *sub);
static void start_waiting_resumers(void);

/* events a catching-up subscriber reads from the WAL per writable call */
#define CATCHUP_EVENTS 256

/*
 * Shared catch-up readers.  Subscribers resuming from before the log's
 * history floor ("riders") share one WAL reader per stretch of the WAL:
 * it reads the events after its floor up to the log's floor when it began,
 * frames each once into a window of its own (the log's blocks and
 * message layout, see frame_message), and every rider is sent spans of
 * that window, filtered by message_for() as the log's messages are.  A
 * resumer joins a reader whose window has not moved past its position
 * (every event after the window's floor is in it or still to be read), or
 * begins one of its own when pg_ws.catchup_memory has room for one more;
 * otherwise it waits in line, holding nothing.  So a storm of resumes from
 * about the same place reads the WAL once, and one from far older
 * positions reads on its own without holding the others back.
 *
 * The window holds at most window_limit() bytes: the reader reads on only
 * while there is room, and a message is freed once every rider has been
 * handed it (libwebsockets copies what a full socket cannot take, so no
 * frame of a window is referenced after lws_write).  A rider that holds
 * the window's first message while the window is full, and has made no
 * progress for CATCHUP_STALL_MS, steps off: it resumes anew after what it
 * has (another reader, its own, or the line), and the others go on.  When
 * a rider has been handed the window's end and the reader is done, it
 * joins the log where the floor was; the log's messages from there on are
 * pinned meanwhile (each rider's sent_idx), and not the shared queue.
 */
typedef struct PgWsCatchup
{
	dlist_node	node;			/* in catchups */
	MemoryContext cxt;			/* the reader's and the window's */
	PgWsWalReader *reader;
	PgWsWalStatus status;		/* the reader's last answer */
	uint64		floor;			/* every event after this is in the window
								 * or still to be read */
	uint64		log_idx;		/* where its riders join the log: the first
								 * message after the floor it read up to */
	WsMessage **window;			/* [first, next) in window[idx & (cap - 1)] */
	uint64		cap;
	uint64		first;
	uint64		next;
	uint64		bytes_total;	/* of every message framed, for offsets */
	FrameBlocks blocks;
	dlist_head	riders;			/* PgWsSubscriber.ride_node */
	int			nriders;
} PgWsCatchup;

static dlist_head catchups = DLIST_STATIC_INIT(catchups);

static bool catchup_read(PgWsCatchup *g);
static void catchup_trim(PgWsCatchup *g);
static uint64 window_lag(PgWsSubscriber *sub);
static uint64 window_limit(void);

static inline WsMessage *
message_at(uint64 idx)
{
	Assert(idx >= first_idx && idx < next_idx);
	return message_log[idx & (log_cap - 1)];
}

/* the event's JSON in its frame: after the header, before ", \"seq\"..." */
static bool
message_matches(const PgWsSubscriber *sub, const WsMessage *msg)
{
	const char *json = (const char *) msg->frame[PGWS_FRAMING_WS] +
		(msg->frame_len[PGWS_FRAMING_WS] - msg->len);

	return values_match(sub, msg->kind, msg->name, msg->name_len, json,
						msg->len, msg->row, msg->row_len);
}

/* is this message to be sent to this subscriber, by every filter it has? */
static inline bool
message_for(const PgWsSubscriber *sub, const WsMessage *msg)
{
	return msg->seq > sub->after_seq &&
		subscriber_wants(sub, msg->kind, msg->name, msg->name_len) &&
		!snapshot_saw(sub, msg->seq, msg->xid) &&
		((sub->values == NULL && sub->grant.nfilters == 0) ||
		 message_matches(sub, msg));
}

/*
 * Step a subscriber that has been sent everything before its next message
 * over the messages it does not take, as its writable callback would:
 * one that takes none of the new ones needs no callback at all.
 */
static void
skip_unwanted(PgWsSubscriber *sub)
{
	if (sub->sent_idx != sub->next_idx || sub->notice != NULL ||
		sub->catchup != NULL || sub->catchup_queued)
		return;
	while (sub->next_idx < next_idx && !message_for(sub, message_at(sub->next_idx)))
		sub->next_idx++;
	sub->sent_idx = sub->next_idx;
}

static inline PgWsConn *
subscriber_conn(dlist_node *node)
{
	return dlist_container(PgWsConn, sub.node, node);
}

/* a rider of a catch-up reader, by its node in the reader's list */
static inline PgWsConn *
rider_conn(dlist_node *node)
{
	return dlist_container(PgWsConn, sub.ride_node, node);
}

/*
 * Idle filtered subscribers wait in an index, not in the list of
 * subscribers, so that an event costs nothing for those it does not go
 * to.  A subscriber whose ?filter= has a term field=eq.v or field=in.(...)
 * can only want events whose value of that field equals one of the
 * term's; once it has been sent everything, it waits in the index under the
 * keys of those values (filter.c), by field, and the events that arrive
 * look up their own value of each field that has subscribers waiting
 * under it.  An event that finds it wakes it at that event: every event
 * in between failed its term, so it had them all.  Woken, it is a
 * subscriber like any other, asked its whole filter, grant and ?events=,
 * and it waits in the index again once it has been sent everything.
 *
 * An indexed subscriber holds nothing (neither the queue nor the log's
 * history) and is looked at by nothing that runs per event or per
 * second here; its next_idx and sent_idx are stale, and mean "all".
 * A subscriber without a ?filter= that can be indexed, whose token has a
 * filters claim, is indexed by the claim when every pattern's filter has
 * such a term: an event is sent only when the filter of the most specific
 * pattern that matches its name holds, so it waits under each pattern's
 * field and values, and an event no pattern matches is never sent.
 * Subscribers with neither (no filter, not., ranges, like, a claim with a
 * pattern that has no such term) stay in the list and are asked about
 * every event.  A token renewed by an auth message brings other keys:
 * the subscriber leaves the index and finds its place again.
 */
#define INDEX_MAX_FIELDS 32

typedef struct IndexBucket
{
	uint64		key;			/* hash key */
	dlist_head	waiting;		/* IndexEntry */
} IndexBucket;

typedef struct IndexField
{
	char		name[NAMEDATALEN];
	HTAB	   *buckets;
	int			nentries;		/* of subscribers waiting under it */
} IndexField;

typedef struct IndexEntry
{
	dlist_node	node;
	PgWsConn   *conn;
	IndexField *field;
	uint64		key;
	IndexBucket *bucket;
} IndexEntry;

/* a subscriber's keys, one per field and value, none twice */
struct PgWsFilterIndexSpot
{
	int			nentries;
	IndexEntry *entries;
};

static IndexField index_fields[INDEX_MAX_FIELDS];
static int	nindex_fields = 0;
static int	nindexed = 0;

/* the index of a field, made on first use; NULL once there are too many */
static IndexField *
index_field(const char *name)
{
	HASHCTL		ctl;
	IndexField *f;

	for (int i = 0; i < nindex_fields; i++)
		if (strcmp(index_fields[i].name, name) == 0)
			return &index_fields[i];
	if (nindex_fields == INDEX_MAX_FIELDS)
		return NULL;
	f = &index_fields[nindex_fields++];
	strlcpy(f->name, name, sizeof(f->name));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(IndexBucket);
	ctl.hcxt = broadcast_context;
	f->buckets = hash_create("pg_ws filter index", 1024, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	f->nentries = 0;
	return f;
}

static int
entry_cmp(const void *a, const void *b)
{
	const IndexEntry *x = a;
	const IndexEntry *y = b;

	if (x->field != y->field)
		return x->field < y->field ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key ? 1 : 0;
}

/*
 * Add a value filter's keys to spot (its entries sized for them); false
 * when the filter has no term to wait under, or its field no index.
 */
static bool
add_filter_keys(PgWsFilterIndexSpot *spot, const PgWsValueFilter *filter)
{
	const char *name;
	uint64	   *keys;
	int			nkeys = pgws_value_filter_index_keys(filter, &name, &keys);
	IndexField *field = nkeys > 0 ? index_field(name) : NULL;

	if (field == NULL)
		return false;
	spot->entries = repalloc(spot->entries,
							 (spot->nentries + nkeys) * sizeof(IndexEntry));
	for (int i = 0; i < nkeys; i++)
	{
		IndexEntry *e = &spot->entries[spot->nentries++];

		memset(e, 0, sizeof(IndexEntry));
		e->field = field;
		e->key = keys[i];
	}
	pfree(keys);
	return true;
}

/*
 * Where this subscriber waits in the index: under its ?filter=, or else
 * its token's filters claim; worked out once (until its token is
 * renewed), in its connection's memory.  NULL if it cannot wait there.
 */
static PgWsFilterIndexSpot *
index_spot_of(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;
	PgWsFilterIndexSpot *spot;
	MemoryContext old;
	bool		ok;
	int			n = 0;

	if (sub->index_spot != NULL || sub->unindexable)
		return sub->index_spot;
	old = MemoryContextSwitchTo(conn->cxt);
	spot = palloc(sizeof(PgWsFilterIndexSpot));
	spot->nentries = 0;
	spot->entries = palloc(sizeof(IndexEntry));
	ok = sub->values != NULL && add_filter_keys(spot, sub->values);
	if (!ok && sub->grant.nfilters > 0)
	{
		spot->nentries = 0;
		ok = true;
		for (int i = 0; i < sub->grant.nfilters && ok; i++)
			ok = add_filter_keys(spot, pgws_grant_filter_at(&sub->grant, i));
	}
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		pfree(spot->entries);
		pfree(spot);
		sub->unindexable = true;
		return NULL;
	}
	/* one entry per field and key: a bucket lists a subscriber once */
	qsort(spot->entries, spot->nentries, sizeof(IndexEntry), entry_cmp);
	for (int i = 0; i < spot->nentries; i++)
		if (n == 0 || entry_cmp(&spot->entries[n - 1], &spot->entries[i]) != 0)
			spot->entries[n++] = spot->entries[i];
	spot->nentries = n;
	sub->index_spot = spot;
	return spot;
}

/*
 * Index a subscriber that has been sent everything, when its filter lets
 * it and nothing else is due for it (a notice, a catch-up, a wait for
 * replay).  Called while it is in the list of subscribers.
 */
static void
index_subscriber(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;
	PgWsFilterIndexSpot *p;

	if (sub->indexed || sub->unindexable || shutting_down ||
		(sub->values == NULL && sub->grant.nfilters == 0) ||
		sub->notice != NULL ||
		sub->catchup != NULL || sub->catchup_queued ||
		sub->future_until != 0 || sub->next_idx != next_idx ||
		sub->sent_idx != next_idx || lws_partial_buffered(conn->wsi))
		return;
	p = index_spot_of(conn);
	if (p == NULL)
		return;
	for (int i = 0; i < p->nentries; i++)
	{
		IndexEntry *e = &p->entries[i];
		bool		found;

		e->conn = conn;
		e->bucket = hash_search(e->field->buckets, &e->key, HASH_ENTER,
								&found);
		if (!found)
			dlist_init(&e->bucket->waiting);
		dlist_push_tail(&e->bucket->waiting, &e->node);
		e->field->nentries++;
	}
	/* in no list while it waits: its entries are where it is */
	dlist_delete(&sub->node);
	sub->indexed = true;
	nindexed++;
}

/*
 * Take a subscriber out of the index, caught up to just before
 * message idx (next_idx when it closes); the caller puts it in the list
 * of subscribers again, or closes it.  Buckets left empty are removed,
 * but for keep, the one the caller is going through.
 */
static void
unindex_subscriber(PgWsConn *conn, uint64 idx, IndexBucket *keep)
{
	PgWsSubscriber *sub = &conn->sub;
	PgWsFilterIndexSpot *p = sub->index_spot;

	Assert(sub->indexed);
	for (int i = 0; i < p->nentries; i++)
	{
		IndexEntry *e = &p->entries[i];

		dlist_delete(&e->node);
		e->field->nentries--;
		if (e->bucket != keep && dlist_is_empty(&e->bucket->waiting))
			hash_search(e->field->buckets, &e->key, HASH_REMOVE, NULL);
	}
	sub->indexed = false;
	nindexed--;
	sub->next_idx = sub->sent_idx = idx;
	sub->progress_at = GetCurrentTimestamp();
	sub->holding_since = 0;
}

/*
 * A message has arrived at idx: wake the indexed subscribers it may be
 * for, into the list of subscribers, where check_progress() arms them.
 */
static void
wake_indexed(uint64 idx, const char *json, uint32 len, const char *row,
			uint32 row_len)
{
	for (int i = 0; i < nindex_fields; i++)
	{
		IndexField *f = &index_fields[i];
		uint64		keys[2];
		int			nkeys;

		if (f->nentries == 0)
			continue;
		nkeys = pgws_value_event_keys(f->name, json, len, row, row_len, keys);
		for (int k = 0; k < nkeys; k++)
		{
			IndexBucket *b = hash_search(f->buckets, &keys[k], HASH_FIND, NULL);
			dlist_mutable_iter iter;

			if (b == NULL)
				continue;
			dlist_foreach_modify(iter, &b->waiting)
			{
				PgWsConn   *conn = dlist_container(IndexEntry, node, iter.cur)->conn;

				unindex_subscriber(conn, idx, b);
				dlist_push_tail(&subscribers, &conn->sub.node);
				subscribers_listed++;
			}
			hash_search(f->buckets, &keys[k], HASH_REMOVE, NULL);
		}
	}
}

/*
 * floor: queue.c's history floor, the position after which this worker
 * has every event.
 */
void
pgws_broadcast_init(uint64 floor)
{
	broadcast_context = AllocSetContextCreate(TopMemoryContext,
											  "pg_ws broadcast",
											  ALLOCSET_DEFAULT_SIZES);
	log_cap = 1024;
	message_log = MemoryContextAllocZero(broadcast_context,
										 log_cap * sizeof(WsMessage *));
	log_blocks.cxt = broadcast_context;
	history_floor = floor;
	pgws_queue_epoch(epoch, sizeof(epoch), InvalidOid);
	epoch_has_timeline = pgws_wal || RecoveryInProgress();
	epoch_labelled[0] = '\0';
}

/*
 * On a hot standby: take events from the WAL as it is replayed, after the
 * position floor (the end of replay now, or before the record of a
 * transaction still committing: position.c), instead of from the queue.
 * Positions are WAL positions there, whatever pg_ws.wal says: the primary
 * wrote them.
 */
void
pgws_broadcast_follow(uint64 floor)
{
	MemoryContext old = MemoryContextSwitchTo(broadcast_context);

	history_floor = floor;
	follower = pgws_walread_begin(events_database, floor, PG_UINT64_MAX);
	MemoryContextSwitchTo(old);
}

/*
 * pg_ws.database's OID: whose events are taken from the queue and the WAL,
 * and part of the epoch.  Set at start, and once more if the database did
 * not exist then and is made later; a worker whose database changes
 * otherwise restarts (worker.c).
 */
void
pgws_broadcast_set_database(Oid database)
{
	events_database = database;
	pgws_queue_epoch(epoch, sizeof(epoch), database);
	epoch_has_timeline = pgws_wal || RecoveryInProgress();
	epoch_labelled[0] = '\0';
	if (follower != NULL)
		pgws_walread_set_database(follower, database);
}

/*
 * Is given, as a subscriber gives it back, the epoch of our positions?
 * Then *tli is the timeline it names, or 0 when it names none: pg_ws 1.3's
 * epochs did not, and their positions are taken as on this node's history.
 */
bool
pgws_broadcast_epoch_matches(const char *given, TimeLineID *tli)
{
	size_t		len = strlen(epoch);
	const char *p = given + len;
	uint64		value = 0;

	*tli = 0;
	if (strncmp(given, epoch, len) != 0)
		return false;
	if (*p == '\0')
		return true;
	if (!epoch_has_timeline || *p++ != '-' || *p < '1' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9' && value <= PG_UINT32_MAX; p++)
		value = value * 10 + (*p - '0');
	if (*p != '\0' || value > PG_UINT32_MAX)
		return false;
	*tli = (TimeLineID) value;
	return true;
}

/* our epoch with the timeline positions are made on now */
static const char *
epoch_now(void)
{
	TimeLineID	tli = epoch_has_timeline ? pgws_timeline_current() : 0;

	if (tli != epoch_labelled_tli || epoch_labelled[0] == '\0')
	{
		if (epoch_has_timeline)
			snprintf(epoch_labelled, sizeof(epoch_labelled), "%s-%u", epoch, tli);
		else
			strlcpy(epoch_labelled, epoch, sizeof(epoch_labelled));
		epoch_labelled_tli = tli;
	}
	return epoch_labelled;
}

/*
 * Write the position that replaces an event's closing brace at buf (room
 * for POSITION_ROOM bytes and a NUL): , "seq": N, "epoch": "E"}.  Returns
 * its length.  The event's record has been read (or queued) by now, so the
 * timeline in E is one it is on (timeline.c).
 */
static int
position_suffix(char *buf, uint64 seq)
{
	int			n = snprintf(buf, POSITION_ROOM + 1,
							 ", \"seq\": " UINT64_FORMAT ", \"epoch\": \"%s\"}",
							 seq, epoch_now());

	Assert(n <= POSITION_ROOM);
	return n;
}

/*
 * room for a frame of at most need bytes after the newest frame of fb's
 * chain of this framing; frame_used() then says how much it took
 */
static uint8 *
frame_room(FrameBlocks *fb, PgWsFraming framing, uint32 need)
{
	FrameChain *chain = &fb->chain[framing];
	FrameBlock *block = chain->newest;

	if (block == NULL || block->size - block->used < need)
	{
		uint32		size = Max(need, FRAME_BLOCK_SIZE);

		block = MemoryContextAllocHuge(fb->cxt,
									   offsetof(FrameBlock, bytes) + size);
		block->next = NULL;
		block->last_idx = 0;
		block->size = size;
		block->used = 0;
		if (chain->newest != NULL)
			chain->newest->next = block;
		else
			chain->oldest = block;
		chain->newest = block;
		fb->heap += offsetof(FrameBlock, bytes) + size;
	}
	return block->bytes + block->used;
}

/* the frame of message idx took used bytes of the room frame_room() gave */
static inline void
frame_used(FrameBlocks *fb, PgWsFraming framing, uint64 idx, uint32 used)
{
	FrameBlock *block = fb->chain[framing].newest;

	block->used += used;
	block->last_idx = Max(block->last_idx, idx);
}

/*
 * An event as a message numbered idx, framed after the newest frame of fb
 * with its position in place of its closing brace: {"event": ...,
 * "data": {...}, "seq": N, "epoch": "E"}.  The log and every catch-up
 * reader frame alike, so that a subscriber gets the same bytes from
 * either.  NULL for a payload that is not a JSON object (only a
 * superuser's own pg_logical_emit_message could write one): it is
 * dropped.  The caller sets offset and entry_pos.
 */
static WsMessage *
frame_message(FrameBlocks *fb, uint64 idx, const char *line, uint32 line_len,
			  uint64 seq, TransactionId xid)
{
	WsMessage  *msg;
	char		suffix[POSITION_ROOM + 1];
	int			slen;
	uint32		final_len;
	uint8	   *frame;
	int			hlen;
	const char *json = line;
	uint32		len;
	const char *row;
	uint32		row_len;

	split_line(line, line_len, &len, &row, &row_len);
	if (len < 2 || json[0] != '{' || json[len - 1] != '}')
		return NULL;

	slen = position_suffix(suffix, seq);
	final_len = len - 1 + slen;
	frame = frame_room(fb, PGWS_FRAMING_WS, PGWS_WS_MAX_HEADER + final_len);
	hlen = pgws_ws_frame_header(frame, WS_OP_TEXT, final_len);
	memcpy(frame + hlen, json, len - 1);
	memcpy(frame + hlen + len - 1, suffix, slen);
	frame_used(fb, PGWS_FRAMING_WS, idx, hlen + final_len);

	msg = MemoryContextAlloc(fb->cxt, sizeof(WsMessage));
	msg->seq = seq;
	msg->entry_pos = 0;
	msg->offset = 0;
	msg->xid = xid;
	msg->len = final_len;
	msg->kind = pgws_event_kind_of(json, len);
	msg->name = NULL;
	msg->name_len = 0;
	if (msg->kind < 0)
	{
		size_t		name_len;
		const char *name = pgws_event_name_of(json, len, &name_len);

		/* the frame's copy, which lives as long as the message */
		if (name != NULL)
		{
			msg->name = (const char *) frame + hlen + (name - json);
			msg->name_len = (uint32) name_len;
		}
	}
	memset(msg->frame, 0, sizeof(msg->frame));
	memset(msg->frame_len, 0, sizeof(msg->frame_len));
	msg->frame[PGWS_FRAMING_WS] = frame;
	msg->frame_len[PGWS_FRAMING_WS] = hlen + final_len;
	msg->row = NULL;
	msg->row_len = 0;
	if (row != NULL)
	{
		msg->row = MemoryContextAlloc(fb->cxt, row_len + 1);
		memcpy(msg->row, row, row_len);
		msg->row[row_len] = '\0';
		msg->row_len = row_len;
		fb->heap += row_len + 1;
	}
	fb->heap += sizeof(WsMessage);
	return msg;
}

/*
 * Free a message of fb, and then the blocks that hold only messages before
 * first (the next message kept).
 */
static void
free_message(FrameBlocks *fb, WsMessage *msg, uint64 first)
{
	fb->heap -= sizeof(WsMessage);
	if (msg->row != NULL)
	{
		fb->heap -= msg->row_len + 1;
		pfree(msg->row);
	}
	pfree(msg);
	for (int f = 0; f < PGWS_NUM_FRAMINGS; f++)
	{
		FrameChain *chain = &fb->chain[f];

		while (chain->oldest != NULL && chain->oldest->last_idx < first)
		{
			FrameBlock *block = chain->oldest;

			chain->oldest = block->next;
			if (chain->oldest == NULL)
				chain->newest = NULL;
			fb->heap -= offsetof(FrameBlock, bytes) + block->size;
			pfree(block);
		}
	}
}

/*
 * A message's frame in this framing, made now if it is the first
 * subscriber of the framing to be handed it (see "Framings" above): from
 * the JSON in its WebSocket frame, with the position it carries there,
 * SEQ@EPOCH, epoch as position_suffix() wrote it when it arrived.
 */
static inline void
frame_for(FrameBlocks *fb, WsMessage *msg, uint64 idx, PgWsFraming framing)
{
	const PgWsFramingOps *ops;
	PgWsMessageText text;
	char		position[PGWS_POSITION_TEXT_LEN];
	const char *epoch_end;
	const char *epoch_start;
	uint8	   *frame;
	int			n;

	if (likely(msg->frame[framing] != NULL))
		return;
	ops = pgws_framing_ops(framing);
	text.json = (const char *) msg->frame[PGWS_FRAMING_WS] +
		(msg->frame_len[PGWS_FRAMING_WS] - msg->len);
	text.len = msg->len;
	text.name = msg->kind >= 0 ? pgws_event_names[msg->kind] : msg->name;
	text.name_len = msg->kind >= 0 ? strlen(text.name) : msg->name_len;
	/* ..., "epoch": "E"}: E has no quote */
	epoch_end = text.json + text.len - 2;
	epoch_start = epoch_end;
	while (epoch_start > text.json && epoch_start[-1] != '"')
		epoch_start--;
	n = snprintf(position, sizeof(position), UINT64_FORMAT "@%.*s", msg->seq,
				 (int) (epoch_end - epoch_start), epoch_start);
	Assert(n < sizeof(position));
	text.position = position;
	text.position_len = Min(n, sizeof(position) - 1);
	frame = frame_room(fb, framing, ops->size(&text));
	msg->frame_len[framing] = ops->write(frame, &text);
	msg->frame[framing] = frame;
	frame_used(fb, framing, idx, msg->frame_len[framing]);
}

/* a ring of message pointers twice as large, for [first, next) */
static WsMessage **
grow_ring(MemoryContext cxt, WsMessage **ring, uint64 *cap, uint64 first,
		  uint64 next)
{
	WsMessage **bigger;

	bigger = MemoryContextAllocHuge(cxt, 2 * *cap * sizeof(WsMessage *));
	for (uint64 idx = first; idx < next; idx++)
		bigger[idx & (2 * *cap - 1)] = ring[idx & (*cap - 1)];
	pfree(ring);
	*cap *= 2;
	return bigger;
}

/*
 * pgws_queue_drain's sink, and the follower's: a new message at the end of
 * the log, framed at once after the previous one.
 */
static void
append_message(void *arg, const char *line, uint32 line_len, uint64 seq,
			   TransactionId xid, uint64 entry_pos)
{
	WsMessage  *msg;

	msg = frame_message(&log_blocks, next_idx, line, line_len, seq, xid);
	if (msg == NULL)
		return;
	if (next_idx - first_idx == log_cap)
		message_log = grow_ring(broadcast_context, message_log, &log_cap,
								first_idx, next_idx);
	msg->entry_pos = entry_pos;
	msg->offset = bytes_total;
	bytes_total += msg->len;
	message_log[next_idx & (log_cap - 1)] = msg;
	next_idx++;
	if (nindexed > 0)
	{
		uint32		len;
		const char *row;
		uint32		row_len;

		split_line(line, line_len, &len, &row, &row_len);
		wake_indexed(next_idx - 1, line, len, row, row_len);
	}
}

/*
 * Free what every subscriber has been sent: its space in the shared queue
 * at once, its memory here once pg_ws.history_size does not keep it.
 */
static void
trim_log(void)
{
	uint64		min_idx = next_idx;
	uint64		min_queue_idx = next_idx;
	uint64		release_idx;
	uint64		history_bytes = (uint64) pgws_history_size_kb * 1024;
	dlist_iter	iter;

	if (shutting_down)
		return;
	/* it freed all it could, and nothing has come or gone since */
	if (trimmed.idx == next_idx && trimmed.history == history_bytes &&
		trimmed.heap == log_blocks.heap &&
		trimmed.read_pos == (follower != NULL ? 0 : pgws_queue_read_pos()))
		return;
	dlist_foreach(iter, &subscribers)
	{
		PgWsSubscriber *sub = &subscriber_conn(iter.cur)->sub;

		min_idx = Min(min_idx, sub->sent_idx);
		if (sub->catchup == NULL)
			min_queue_idx = Min(min_queue_idx, sub->sent_idx);
	}

	/* a subscriber replaying history does not hold the queue */
	release_idx = Max(min_queue_idx, released_idx);
	pgws_worker_stats.events_sent += release_idx - released_idx;
	if (follower != NULL)
		;						/* a standby's queue is never written */
	else if (release_idx < next_idx)
		pgws_queue_release(message_at(release_idx)->entry_pos);
	else
		pgws_queue_release(pgws_queue_read_pos());
	released_idx = release_idx;

	while (first_idx < min_idx && log_blocks.heap > history_bytes)
	{
		WsMessage  *msg = message_at(first_idx);

		history_floor = msg->seq;
		first_idx++;
		free_message(&log_blocks, msg, first_idx);
	}

	/* every subscriber has everything: only what comes can change that */
	trimmed.idx = min_idx == next_idx ? next_idx : UINT64_MAX;
	trimmed.read_pos = follower != NULL ? 0 : pgws_queue_read_pos();
	trimmed.history = history_bytes;
	trimmed.heap = log_blocks.heap;
}

/*
 * The oldest message this subscriber holds in the shared queue: one it is
 * replaying from the grace period was released already.
 */
static inline uint64
held_idx(PgWsSubscriber *sub)
{
	return Max(sub->sent_idx, released_idx);
}

/* bytes of messages this subscriber still holds in the shared queue */
static uint64
queue_lag(PgWsSubscriber *sub)
{
	uint64		idx = held_idx(sub);

	return idx < next_idx ? bytes_total - message_at(idx)->offset : 0;
}

static void
cull(PgWsConn *conn, uint64 lag, const char *why)
{
	if (pgws_conn_dropped(PGWS_DROP_LAGGING))
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
 * the writable callback of those with something to send.  arrived_idx is
 * the first message that has just arrived: a subscriber that had
 * everything before it was keeping up until now.
 */
static void
check_progress(TimestampTz now, uint64 arrived_idx)
{
	uint64		max_lag = (uint64) pgws_max_subscriber_lag_kb * 1024;
	bool		writers_waiting = pgws_queue_writers_waiting();
	uint64		holding_idx = next_idx;
	TimestampTz grace_us = (TimestampTz) Min(1000, pgws_queue_full_timeout_ms / 2) * 1000;
	uint64		listed = subscribers_listed;
	bool		settled = true;
	dlist_iter	iter;
	dlist_mutable_iter miter;

	dlist_foreach(iter, &subscribers)
	{
		PgWsSubscriber *sub = &subscriber_conn(iter.cur)->sub;

		skip_unwanted(sub);
		holding_idx = Min(holding_idx, held_idx(sub));
	}

	dlist_foreach_modify(miter, &subscribers)
	{
		PgWsConn   *conn = subscriber_conn(miter.cur);
		PgWsSubscriber *sub = &conn->sub;
		bool		holds;
		bool		stalled;
		uint64		lag;

		/* time alone moves these on, or they have something to send */
		if (sub->timeline_wait || sub->future_until != 0 ||
			sub->turn != TURN_NONE || sub->catchup != NULL ||
			sub->notice != NULL || sub->sent_idx != next_idx)
			settled = false;
		if (sub->timeline_wait)
		{
			uint64		fork;
			bool		past = past_fork(sub, &fork);

			/*
			 * Replay followed its timeline, or it waited long enough: it is
			 * placed again, which resyncs it if it is still past the fork.
			 */
			if (!past || now >= sub->future_until)
			{
				sub->timeline_wait = past;
				sub->future_until = 0;
				dlist_delete(&sub->node);
				place_subscriber(conn);
				if (sub->notice != NULL)
					lws_callback_on_writable(conn->wsi);
			}
			continue;
		}
		if (sub->future_until != 0)
		{
			uint64		fork;

			/*
			 * Replay followed a promotion meanwhile, to a timeline that
			 * parts from the position's before the position: what it
			 * replays now past the fork is another history's.
			 */
			if (past_fork(sub, &fork))
			{
				sub->future_until = 0;
				sub->fork = fork;
				go_live(conn, true);
				lws_callback_on_writable(conn->wsi);
				continue;
			}
			/* replay has reached its position, or it waited long enough */
			if (!beyond_history(sub->since))
				sub->future_until = 0;
			else if (now >= sub->future_until)
			{
				sub->future_until = 0;
				go_live(conn, true);
				lws_callback_on_writable(conn->wsi);
				continue;
			}
		}
		/* one waiting for its turn waits for us, not we for it */
		if (sub->turn != TURN_NONE)
			sub->progress_at = now;
		if (sub->catchup != NULL)
		{
			PgWsCatchup *g = sub->catchup;
			bool		stuck = now - sub->progress_at >=
				(TimestampTz) CATCHUP_STALL_MS * 1000;

			/*
			 * It holds the log, not the queue, and what its reader holds
			 * for it: its part of the window, and the reader's own memory
			 * when it rides alone (a reader shared is nobody's lag: one
			 * that holds up the others steps off below, and then rides
			 * alone).
			 */
			lag = (sub->sent_idx < next_idx ?
				   bytes_total - message_at(sub->sent_idx)->offset : 0) +
				window_lag(sub) +
				(g->nriders == 1 ? pgws_walread_memory(g->reader) : 0);
			/*
			 * One that has all its reader has, which cannot read on for now
			 * (the WAL is not readable yet, or a slower rider holds the full
			 * window), is waiting, not lagging.
			 */
			if (sub->ride_idx == g->next &&
				(g->status == PGWS_WAL_WAIT || g->blocks.heap >= window_limit()))
				sub->progress_at = now;
			if (now - sub->progress_at >= (TimestampTz) STALL_MS * 1000 &&
				lag > max_lag)
				cull(conn, lag, "stopped reading while catching up and exceeded pg_ws.max_subscriber_lag");
			else if (stuck && g->nriders > 1 && sub->ride_idx == g->first &&
					 g->blocks.heap >= window_limit())
				step_off(conn);
			else if (stuck && g->nriders == 1 &&
					 !dlist_is_empty(&waiting_resumers))
				cull(conn, lag, "stopped reading while catching up, and others waited to resume");
			continue;
		}
		if (sub->sent_idx >= arrived_idx)
			sub->progress_at = now;
		if (sub->sent_idx == next_idx)
		{
			sub->holding_since = 0;
			index_subscriber(conn);
			/* one that could wait in the index is tried again next time */
			if (!sub->indexed && !sub->unindexable &&
				(sub->values != NULL || sub->grant.nfilters != 0))
				settled = false;
			continue;
		}
		holds = writers_waiting && held_idx(sub) == holding_idx;
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
		else if (sub->next_idx < next_idx && sub->sent_idx >= arrived_idx &&
				 !sub->resuming && sub->turn == TURN_NONE)
			pgws_conn_write_now(conn);	/* it was up to date: at once */
		else if (sub->next_idx < next_idx)
			lws_callback_on_writable(conn->wsi);
	}
	settled_idx = settled ? next_idx : UINT64_MAX;
	settled_listed = listed;
}

/*
 * Move every committed event from the shared queue into the log and arm
 * the subscribers that now have something to send.  Returns how many events
 * arrived.
 */
uint64
pgws_broadcast_drain_queue(void)
{
	uint64		arrived_idx = next_idx;
	uint64		n = 0;

	/*
	 * Events of another database: pg_ws.database may name a database made
	 * anew (the worker then ends, and the next one sends them under a new
	 * epoch), or the backend had not reloaded a change of pg_ws.database
	 * yet (they are not ours: skipped, counted).
	 */
	for (;;)
	{
		Oid			other_database;

		n += pgws_queue_drain(append_message, NULL, events_database,
							  &queue_waits_for_flush, &other_database);
		if (!OidIsValid(other_database) || pgws_worker_database_moved())
			break;
		if (other_database == events_database)
			continue;			/* the database we now know it by */
		pgws_queue_skip_entry();
		pgws_worker_stats.ignored[PGWS_IGNORED_OTHER_DATABASE]++;
	}
	/* an asynchronous commit: look again once the WAL writer has flushed */
	if (queue_waits_for_flush)
		pgws_worker_poll_wal_soon();

	if (n > 0 || pgws_queue_writers_waiting())
		check_progress(GetCurrentTimestamp(), arrived_idx);
	trim_log();
	return n;
}

/* the follower's sink: a replayed event at the end of the log */
static bool
follow_sink(void *arg, uint64 seq, TransactionId xid, const char *json,
			uint32 len)
{
	append_message(arg, json, len, seq, xid, 0);
	return true;
}

/*
 * On a hot standby: move the events replay has reached into the log.
 * Returns true while the follower has more to read at once.  Missing WAL
 * (removed before we read it) leaves a gap we cannot bridge for live
 * subscribers: the worker restarts, and they resume or are told to resync.
 */
bool
pgws_broadcast_follow_wal(void)
{
	uint64		arrived_idx = next_idx;
	PgWsWalStatus status;

	if (follower == NULL)
		return false;
	status = pgws_walread_next(follower, 4096, follow_sink, NULL);
	/* events of another database: is pg_ws.database one made anew? */
	if (pgws_walread_other_database_seen(follower))
		(void) pgws_worker_database_moved();
	if (status == PGWS_WAL_GONE)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pg_ws could not read the WAL it follows on this standby"),
				 errhint("The WAL was removed or is unreadable; the worker restarts, and subscribers resume from the WAL that is left.")));
	if (next_idx > arrived_idx)
		check_progress(GetCurrentTimestamp(), arrived_idx);
	trim_log();
	return status == PGWS_WAL_MORE;
}

/*
 * Read on with the catch-up readers that had reached the end of readable
 * WAL, once each, and arm their riders that were waiting at the end of
 * the window.  Returns whether some still wait.
 */
static bool
catchups_read_on(void)
{
	bool		waiting = false;
	dlist_iter	iter;

	dlist_foreach(iter, &catchups)
	{
		PgWsCatchup *g = dlist_container(PgWsCatchup, node, iter.cur);
		uint64		end = g->next;
		dlist_iter	riter;

		if (g->status != PGWS_WAL_WAIT)
			continue;
		g->status = PGWS_WAL_MORE;
		(void) catchup_read(g);
		if (g->status == PGWS_WAL_WAIT && g->next == end)
		{
			waiting = true;
			continue;
		}
		dlist_foreach(riter, &g->riders)
		{
			PgWsConn   *conn = rider_conn(riter.cur);

			if (conn->sub.ride_idx >= end)
				lws_callback_on_writable(conn->wsi);
		}
		waiting |= g->status == PGWS_WAL_WAIT;
	}
	return waiting;
}

/*
 * Look at the WAL again: follow replay, drain the queue when its next entry
 * waited for its commit to be flushed, and wake subscribers whose catching
 * up had reached the end of readable WAL.  Returns true when it wants to
 * be called again soon.
 */
bool
pgws_broadcast_poll_wal(void)
{
	bool		more = pgws_broadcast_follow_wal();
	bool		catching_up;

	if (queue_waits_for_flush)
		pgws_broadcast_drain_queue();
	catching_up = catchups_read_on();
	return more || follower != NULL || catching_up || queue_waits_for_flush;
}

/*
 * Once a second: stalls are noticed even when nothing arrives.  (What was
 * committed while nobody listened, when no commit woke us, is drained by
 * the worker's housekeeping as it answers the doorbell.)
 */
void
pgws_broadcast_check_progress(TimestampTz now)
{
	/* unless nothing can have changed since every subscriber had all */
	if (settled_idx != next_idx || settled_listed != subscribers_listed ||
		pgws_queue_writers_waiting())
		check_progress(now, next_idx);
	/* a reader may have begun that some in line can ride */
	start_waiting_resumers();
	trim_log();
}

/*
 * Before each pass of the event loop: free what the subscribers that
 * closed in the last pass held (the log, room in the queue), once for all
 * of them; and give the next resumers in line their turns, so that this
 * pass hands them at most TURNS_PER_PASS turns' worth (turns given before
 * and not used yet count).  The one who has waited longest goes first.
 */
void
pgws_broadcast_before_pass(void)
{
	if (closed_since_trim)
	{
		closed_since_trim = false;
		trim_log();
	}
	while (nturns_given < TURNS_PER_PASS && !dlist_is_empty(&turn_line))
	{
		PgWsConn   *conn = dlist_container(PgWsConn, sub.turn_node,
										   dlist_pop_head_node(&turn_line));

		conn->sub.turn = TURN_GIVEN;
		nturns_given++;
		lws_callback_on_writable(conn->wsi);
	}
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

/* of them, those waiting in the filter index */
int
pgws_subscriber_indexed_count(void)
{
	return nindexed;
}

/*
 * Bytes of events this subscriber has not been sent yet, whether or not
 * its filter wants them: what pg_ws.max_subscriber_lag is compared with.
 */
uint64
pgws_subscriber_pending_bytes(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;

	if (!sub->subscribed || sub->catchup_queued || sub->indexed)
		return 0;				/* waiting in line or in the index holds nothing */
	if (sub->catchup != NULL)
		return (sub->sent_idx < next_idx ?
				bytes_total - message_at(sub->sent_idx)->offset : 0) +
			window_lag(sub);
	return queue_lag(sub);
}

/* the database whose events the WAL holds; InvalidOid if it does not exist */
Oid
pgws_broadcast_database(void)
{
	return events_database;
}

/* does this worker follow replay (it started on a standby)? */
bool
pgws_broadcast_following(void)
{
	return follower != NULL;
}

/*
 * Where subscribers can resume, for pg_ws_stats: every event after *floor
 * is in the log, *last is the newest one's position (the floor while the
 * log is empty), and with *in_wal older ones are read back from the WAL
 * (the oldest WAL left is looked up by whoever shows it: stats.c).
 */
void
pgws_broadcast_history(uint64 *floor, uint64 *last, bool *in_wal)
{
	*floor = history_floor;
	*last = next_idx > first_idx ? message_at(next_idx - 1)->seq : history_floor;
	*in_wal = pgws_wal || follower != NULL;
}

/*
 * The oldest position a subscriber can resume after: the history floor, or
 * with the events in the WAL, the oldest WAL still in pg_wal.
 */
static uint64
oldest_resumable(void)
{
	if (!pgws_wal && follower == NULL)
		return history_floor;
	return Min(history_floor, pgws_walread_oldest_resumable());
}

/*
 * The subscriber cannot resume where it asked: tell it, with the position
 * the stream continues after, so that it reloads its state and can resume
 * from there next time.
 */
static void
prepare_resync(PgWsConn *conn, uint64 continue_after)
{
	PgWsSubscriber *sub = &conn->sub;
	const PgWsFramingOps *ops = pgws_framing_ops(sub->framing);
	char		json[256 + PGWS_EPOCH_LEN * 2];
	char		fork[64] = "";
	char		position[PGWS_POSITION_TEXT_LEN];
	PgWsMessageText text;
	int			n;

	/* its position's history parted from ours there (timeline.c) */
	if (sub->fork != 0)
		snprintf(fork, sizeof(fork), ", \"fork\": " UINT64_FORMAT, sub->fork);
	text.json = json;
	text.len = snprintf(json, sizeof(json),
						"{\"event\": \"resync_required\", \"data\": {\"since\": " UINT64_FORMAT
						", \"oldest\": " UINT64_FORMAT ", \"epoch\": \"%s\"%s}"
						", \"seq\": " UINT64_FORMAT ", \"epoch\": \"%s\"}",
						sub->since, oldest_resumable(), epoch_now(), fork,
						continue_after, epoch_now());
	text.name = "resync_required";
	text.name_len = strlen(text.name);
	n = snprintf(position, sizeof(position), UINT64_FORMAT "@%s",
				 continue_after, epoch_now());
	text.position = position;
	text.position_len = Min(n, sizeof(position) - 1);
	/* framed for this subscriber alone, in its framing */
	sub->notice = MemoryContextAlloc(conn->cxt, ops->size(&text));
	sub->notice_len = ops->write(sub->notice, &text);
}

/*
 * A standby waits this long for replay to reach a position it has not
 * replayed yet (one a subscriber got from a node ahead of it) before it
 * says resync_required.
 */
#define FUTURE_WAIT_MS 10000

/*
 * Is seq at or past the end of this node's history, so that no event it
 * has sent or will send for the WAL it has can be there?  On a primary an
 * event goes out only once its commit is flushed (queue.c), so every event
 * sent lies below the flushed end of the WAL (without the WAL, below the
 * counter's next position); on a standby, below the end of replay.
 */
static bool
beyond_history(uint64 seq)
{
	if (follower != NULL)
		return seq >= pgws_walread_end_of_wal();
	if (pgws_wal)
		return seq >= GetFlushRecPtr(NULL);
	return seq >= pgws_queue_next_counter_position();
}

/*
 * The subscriber takes the live stream from here: everything after the
 * newest message in the log (or the floor, with the log empty); told
 * first, with resync, that it cannot have what it asked for.
 */
static void
go_live(PgWsConn *conn, bool resync)
{
	PgWsSubscriber *sub = &conn->sub;
	uint64		live_after = next_idx > first_idx ?
		message_at(next_idx - 1)->seq : history_floor;

	if (resync)
	{
		prepare_resync(conn, live_after);
		/* it reloads its rows: a snapshot's events are no longer its own */
		sub->snapshot = false;
	}
	sub->next_idx = sub->sent_idx = next_idx;
	sub->after_seq = live_after;
}

/* the first message in the log after position seq (next_idx if none) */
static uint64
first_after(uint64 seq)
{
	uint64		lo = first_idx;
	uint64		hi = next_idx;

	while (lo < hi)
	{
		uint64		mid = lo + (hi - lo) / 2;

		if (message_at(mid)->seq <= seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * A connection was upgraded to /ws/: it receives from now on, from the live
 * stream or, when it asked with ?since=, from the first event after that
 * position.
 */
void
pgws_subscriber_open(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;

	/*
	 * The first subscriber: from now on every commit wakes us; and what
	 * was committed before it came, not drained while nobody listened, is
	 * before its start.
	 */
	if (nsubscribers == 0 && follower == NULL)
	{
		pgws_queue_want_wakeups(true);
		pgws_broadcast_drain_queue();
	}
	sub->notice = NULL;
	sub->notice_len = 0;
	sub->catchup = NULL;
	sub->catchup_queued = false;
	sub->future_until = 0;
	sub->timeline_wait = false;
	sub->fork = 0;
	sub->culled = false;
	sub->resuming = false;
	sub->turn = TURN_NONE;
	sub->subscribed = true;
	nsubscribers++;
	place_subscriber(conn);
}

/*
 * Would a subscriber resuming after since (with its epoch ours or not)
 * read its first events from the WAL?  http.c asks before the upgrade, to
 * bound what one address may make the worker read
 * (pg_ws.max_wal_resumes_per_address); place_subscriber() decides alike.
 */
bool
pgws_broadcast_resume_reads_wal(uint64 since, bool epoch_matches)
{
	return epoch_matches && since < history_floor &&
		(pgws_wal || follower != NULL);
}

/*
 * How many connections from this address resume from the WAL now: reading
 * it, or waiting in line to.  Looked at once per such upgrade, so a walk
 * of those lists costs little beside the reading it guards.
 */
int
pgws_broadcast_wal_resumes_from(const PgWsPeerKey *key)
{
	dlist_head *lists[2] = {&subscribers, &waiting_resumers};
	int			n = 0;

	for (int i = 0; i < 2; i++)
	{
		dlist_iter	iter;

		dlist_foreach(iter, lists[i])
		{
			PgWsConn   *conn = subscriber_conn(iter.cur);

			if ((conn->sub.catchup != NULL || conn->sub.catchup_queued) &&
				memcmp(&conn->key, key, sizeof(PgWsPeerKey)) == 0)
				n++;
		}
	}
	return n;
}


/*
 * How many readers may read the WAL at once: a reader holds up to a
 * transaction's events (at most pg_ws.queue_size) and about as much again
 * while it decodes a record, and a little more; its window fits in the
 * second share.
 */
static int
max_catchups(void)
{
	uint64		each = 2 * (uint64) pgws_queue_size_kb * 1024 + 2 * 1024 * 1024;

	return (int) Max(1, (uint64) pgws_catchup_memory_kb * 1024 / each);
}

/*
 * Is the subscriber's position past the point where its timeline's history
 * parts from ours (timeline.c)?  Then *fork is that point (0: unknown).
 * An event's position is on our history when it lies below the fork; a
 * snapshot position's when every record its snapshot could see does, that
 * is when its until does not pass the fork.  A position that does not say
 * its timeline (pg_ws 1.3's) is taken as ours.
 */
static bool
past_fork(PgWsSubscriber *sub, uint64 *fork)
{
	uint64		extent = sub->snapshot ? sub->position.until : sub->since + 1;

	*fork = 0;
	if (sub->since_tli == 0 || !epoch_has_timeline)
		return false;
	*fork = pgws_timeline_fork(sub->since_tli);
	return extent > *fork;
}

/*
 * Bytes of frames a reader's window holds at most: the second share of its
 * budget (max_catchups).  Messages every rider has been handed stay in
 * it until room is needed, so that resumers arriving a little later, from
 * the same place, can still ride it.
 */
static uint64
window_limit(void)
{
	return (uint64) pgws_queue_size_kb * 1024;
}

static inline WsMessage *
window_at(PgWsCatchup *g, uint64 idx)
{
	Assert(idx >= g->first && idx < g->next);
	return g->window[idx & (g->cap - 1)];
}

/* the first message of the window after position seq (next if none) */
static uint64
window_after(PgWsCatchup *g, uint64 seq)
{
	uint64		lo = g->first;
	uint64		hi = g->next;

	while (lo < hi)
	{
		uint64		mid = lo + (hi - lo) / 2;

		if (window_at(g, mid)->seq <= seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* the bytes of a rider's window not handed to it yet */
static uint64
window_lag(PgWsSubscriber *sub)
{
	PgWsCatchup *g = sub->catchup;

	return sub->ride_idx < g->next ?
		g->bytes_total - window_at(g, sub->ride_idx)->offset : 0;
}

/* a reader's sink: frame the event once, for every rider */
static bool
catchup_sink(void *arg, uint64 seq, TransactionId xid, const char *line,
			 uint32 line_len)
{
	PgWsCatchup *g = (PgWsCatchup *) arg;
	WsMessage  *msg = frame_message(&g->blocks, g->next, line, line_len, seq,
									xid);

	if (msg != NULL)
	{
		if (g->next - g->first == g->cap)
			g->window = grow_ring(g->cxt, g->window, &g->cap, g->first,
								  g->next);
		msg->offset = g->bytes_total;
		g->bytes_total += msg->len;
		g->window[g->next & (g->cap - 1)] = msg;
		g->next++;
	}
	return g->blocks.heap < window_limit();
}

/*
 * Read on into the window while it has room: true when it got messages.
 * A reader at the end of readable WAL (WAIT) is read again when the WAL is
 * looked at again (pgws_broadcast_poll_wal), once for all its riders.
 */
static bool
catchup_read(PgWsCatchup *g)
{
	uint64		before = g->next;

	catchup_trim(g);
	if (g->status == PGWS_WAL_MORE && g->blocks.heap < window_limit())
		g->status = pgws_walread_next(g->reader, CATCHUP_EVENTS, catchup_sink, g);
	if (g->status == PGWS_WAL_WAIT)
		pgws_worker_poll_wal_soon();
	return g->next > before;
}

/*
 * A full window makes room: it frees the messages every rider has been
 * handed, down to half of it, and arms the riders that were at its end
 * waiting for room.
 */
static void
catchup_trim(PgWsCatchup *g)
{
	uint64		min_idx = g->next;
	bool		was_full = g->blocks.heap >= window_limit();
	dlist_iter	iter;

	if (!was_full && g->nriders > 0)
		return;
	dlist_foreach(iter, &g->riders)
		min_idx = Min(min_idx, rider_conn(iter.cur)->sub.ride_idx);
	while (g->first < min_idx && g->blocks.heap >= window_limit() / 2)
	{
		WsMessage  *msg = window_at(g, g->first);

		g->floor = msg->seq;
		g->first++;
		free_message(&g->blocks, msg, g->first);
	}
	if (!was_full || g->blocks.heap >= window_limit())
		return;
	dlist_foreach(iter, &g->riders)
	{
		PgWsConn   *conn = rider_conn(iter.cur);

		if (conn->sub.ride_idx == g->next)
			lws_callback_on_writable(conn->wsi);
	}
}

/* the reader a resumer after since can ride: its window has not passed since */
static PgWsCatchup *
catchup_for(uint64 since)
{
	PgWsCatchup *best = NULL;
	dlist_iter	iter;

	dlist_foreach(iter, &catchups)
	{
		PgWsCatchup *g = dlist_container(PgWsCatchup, node, iter.cur);

		if (g->status != PGWS_WAL_GONE && g->floor <= since &&
			(best == NULL || g->floor > best->floor))
			best = g;
	}
	return best;
}

/* a reader of the events after since, up to the log's floor */
static PgWsCatchup *
catchup_begin(uint64 since)
{
	MemoryContext cxt;
	MemoryContext old;
	PgWsCatchup *g;

	cxt = AllocSetContextCreate(broadcast_context, "pg_ws catch-up",
								ALLOCSET_DEFAULT_SIZES);
	g = MemoryContextAllocZero(cxt, sizeof(PgWsCatchup));
	g->cxt = cxt;
	g->blocks.cxt = cxt;
	g->floor = since;
	g->cap = 1024;
	g->window = MemoryContextAlloc(cxt, g->cap * sizeof(WsMessage *));
	g->status = PGWS_WAL_MORE;
	dlist_init(&g->riders);
	old = MemoryContextSwitchTo(cxt);
	g->reader = pgws_walread_begin(events_database, since, history_floor + 1);
	MemoryContextSwitchTo(old);
	g->log_idx = first_after(history_floor);
	dlist_push_tail(&catchups, &g->node);
	ncatchups++;
	return g;
}

/* a rider of g from since on */
static void
catchup_join(PgWsSubscriber *sub, PgWsCatchup *g)
{
	sub->catchup = g;
	sub->ride_idx = window_after(g, sub->since);
	dlist_push_tail(&g->riders, &sub->ride_node);
	g->nriders++;
	sub->next_idx = g->log_idx;
	sub->after_seq = sub->since;
}

/*
 * Where the subscriber starts: the live stream or, when it asked with
 * ?since=, the first event after that position, from the log or, for one
 * from before the log's history floor, from the WAL first: with a reader
 * others resuming from before it read with, or one of its own when there
 * is memory for one more (otherwise it waits in line, holding nothing,
 * until there is).
 */
static void
place_subscriber(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;
	uint64		fork;
	bool		from_wal = sub->resume &&
		pgws_broadcast_resume_reads_wal(sub->since, sub->epoch_matches);
	PgWsCatchup *g = from_wal ? catchup_for(sub->since) : NULL;

	if (!sub->resume)
		go_live(conn, false);
	else if (!sub->epoch_matches || (sub->since < history_floor && !from_wal))
		go_live(conn, true);
	else if (past_fork(sub, &fork))
	{
		if (follower != NULL && sub->since_tli > pgws_timeline_current() &&
			!sub->timeline_wait)
		{
			/*
			 * A standby waits a while for replay to follow a promotion it
			 * has not followed yet, holding nothing and sent nothing: the
			 * events it has past the fork may be another history's.
			 */
			sub->timeline_wait = true;
			sub->future_until =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), FUTURE_WAIT_MS);
			sub->next_idx = next_idx;
			sub->after_seq = PG_UINT64_MAX;	/* takes nothing meanwhile */
		}
		else
		{
			sub->timeline_wait = false;
			sub->future_until = 0;
			sub->fork = fork;
			go_live(conn, true);
		}
	}
	else if (from_wal && g == NULL && ncatchups >= max_catchups())
	{
		if (!sub->catchup_queued)
			pgws_worker_stats.resumes_waited++;
		sub->catchup_queued = true;
		dlist_push_tail(&waiting_resumers, &sub->node);
		return;
	}
	else if (from_wal)
	{
		/*
		 * From the WAL up to the reader's floor, then from the log: it holds
		 * the log's messages from there on meanwhile.
		 */
		catchup_join(sub, g != NULL ? g : catchup_begin(sub->since));
	}
	else if (beyond_history(sub->since) && follower == NULL)
	{
		/*
		 * A position this primary never gave: from before a crash that
		 * took back events pg_ws 1.2 had sent, or from another history.
		 * Nothing we send could follow it without a gap it cannot see.
		 */
		go_live(conn, true);
	}
	else
	{
		/*
		 * A standby waits a while for a position it has not replayed yet
		 * (one from a node ahead of it); after_seq keeps what it has from
		 * being sent again.
		 */
		sub->next_idx = first_after(sub->since);
		sub->after_seq = sub->since;
		if (beyond_history(sub->since))
			sub->future_until =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), FUTURE_WAIT_MS);
	}
	sub->catchup_queued = false;
	sub->sent_idx = sub->next_idx;
	/* behind from the start: it takes turns until it has everything */
	sub->resuming = sub->catchup != NULL || sub->next_idx < next_idx;
	sub->progress_at = GetCurrentTimestamp();
	sub->holding_since = 0;
	dlist_push_tail(&subscribers, &sub->node);
	subscribers_listed++;
	if (sub->next_idx < next_idx || sub->notice != NULL || sub->catchup != NULL)
		lws_callback_on_writable(conn->wsi);
	else
		index_subscriber(conn);
}

/*
 * A reader ended, or a second passed: subscribers waiting in line ride a
 * reader that has not passed them, or begin theirs, first come first
 * served.
 */
static void
start_waiting_resumers(void)
{
	dlist_mutable_iter iter;

	if (shutting_down)
		return;
	dlist_foreach_modify(iter, &waiting_resumers)
	{
		PgWsSubscriber *sub = &subscriber_conn(iter.cur)->sub;

		/* its since may be in the log by now, too */
		if (ncatchups < max_catchups() ||
			!pgws_broadcast_resume_reads_wal(sub->since, sub->epoch_matches) ||
			catchup_for(sub->since) != NULL)
		{
			dlist_delete(iter.cur);
			place_subscriber(subscriber_conn(iter.cur));
		}
	}
}

/* msgs messages of len bytes in all were handed to this subscriber */
static inline void
count_sent(PgWsSubscriber *sub, uint64 msgs, uint64 len)
{
	sub->messages_sent += msgs;
	sub->bytes_sent += len;
	pgws_worker_stats.messages_sent += msgs;
	pgws_worker_stats.bytes_sent += len;
}

/*
 * The rider leaves its reader (done, gone, closing, or stepping off); the
 * last one out ends it, and those in line may start.
 */
static void
end_catchup(PgWsSubscriber *sub)
{
	PgWsCatchup *g = sub->catchup;

	dlist_delete(&sub->ride_node);
	sub->catchup = NULL;
	if (--g->nriders > 0)
	{
		catchup_trim(g);
		return;
	}
	dlist_delete(&g->node);
	pgws_walread_end(g->reader);
	MemoryContextDelete(g->cxt);
	ncatchups--;
	start_waiting_resumers();
}

/*
 * A rider that held up a full window steps off: it resumes anew after
 * what it has been handed, with another reader, one of its own or in line.
 */
static void
step_off(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;

	end_catchup(sub);
	dlist_delete(&sub->node);
	sub->since = sub->after_seq;
	place_subscriber(conn);
}

/*
 * A run of consecutive frames a subscriber is handed with one write: a
 * message it may not see, a frame that is not right after the last one
 * (another block), or the block size ends it.
 */
typedef struct FrameSpan
{
	uint8	   *start;
	uint32		len;
	uint32		msgs;
} FrameSpan;

/* may msg's frame in this framing go in the same write as the span's? */
static inline bool
span_takes(const FrameSpan *span, const WsMessage *msg, PgWsFraming framing)
{
	return span->len == 0 ||
		(msg->frame[framing] == span->start + span->len &&
		 span->len + msg->frame_len[framing] <= FRAME_BLOCK_SIZE);
}

static inline void
span_add(FrameSpan *span, const WsMessage *msg, PgWsFraming framing)
{
	if (span->len == 0)
		span->start = msg->frame[framing];
	span->len += msg->frame_len[framing];
	span->msgs++;
}

/*
 * Hand the span to libwebsockets, count it, add its bytes to *written and
 * empty it: -1 when the connection is broken, 1 when part of it is left in
 * libwebsockets' buffer (the socket is full), 0 when it all went to the
 * kernel.
 */
static int
span_write(PgWsConn *conn, FrameSpan *span, uint64 *written)
{
	uint32		len = span->len;

	if (lws_write(conn->wsi, span->start, len, LWS_WRITE_RAW) < (int) len)
		return -1;
	count_sent(&conn->sub, span->msgs, len);
	*written += len;
	span->len = 0;
	span->msgs = 0;
	/* costs no system call, unlike lws_send_pipe_choked() */
	return lws_partial_buffered(conn->wsi) ? 1 : 0;
}

/*
 * Hand a rider its next frames from its reader's window, spans of
 * consecutive frames with one write each, reading on when it reaches the
 * window's end, until about budget bytes are written.  Returns -1 to close
 * the connection, 1 while it is still riding, 0 once it has joined the log.
 */
static int
catch_up(PgWsConn *conn, uint64 budget)
{
	PgWsSubscriber *sub = &conn->sub;
	PgWsCatchup *g = sub->catchup;
	PgWsFraming framing = sub->framing;
	uint64		start = sub->ride_idx;
	uint64		written = 0;
	FrameSpan	span = {0};
	bool		full = false;

	for (;;)
	{
		bool		at_end = sub->ride_idx == g->next;
		WsMessage  *msg = at_end ? NULL : window_at(g, sub->ride_idx);
		bool		skip = !at_end && !message_for(sub, msg);

		if (!at_end && !skip)
			frame_for(&g->blocks, msg, sub->ride_idx, framing);

		/*
		 * The span ends here; at the window's end, before reading on, which
		 * may free what the span is in.
		 */
		if (span.len > 0 &&
			(at_end || skip || !span_takes(&span, msg, framing)))
		{
			int			rc = span_write(conn, &span, &written);

			if (rc < 0)
				return -1;
			if (rc > 0 || written >= budget)
			{
				full = rc > 0;
				break;
			}
		}
		if (at_end)
		{
			if (!catchup_read(g))
				break;
			continue;
		}
		sub->ride_idx++;
		/* one that joined before the reader reached its since keeps it */
		if (msg->seq > sub->after_seq)
			sub->after_seq = msg->seq;
		if (skip)
			continue;
		span_add(&span, msg, framing);
	}
	if (span.len > 0)
	{
		int			rc = span_write(conn, &span, &written);

		if (rc < 0)
			return -1;
		full = rc > 0;
	}
	if (sub->ride_idx > start)
	{
		sub->progress_at = GetCurrentTimestamp();
		if (start == g->first)
			catchup_trim(g);
	}
	if (sub->ride_idx < g->next)
	{
		/* the turn is over: libwebsockets calls again once it is out */
		if (!full)
			lws_callback_on_writable(conn->wsi);
		return 1;
	}
	switch (g->status)
	{
		case PGWS_WAL_MORE:
			/* armed by catchup_trim() once the window has room */
			if (!full && g->blocks.heap < window_limit())
				lws_callback_on_writable(conn->wsi);
			return 1;
		case PGWS_WAL_WAIT:
			/* armed when the WAL is looked at again */
			return 1;
		case PGWS_WAL_DONE:
			end_catchup(sub);
			/* everything up to the floor it joins at has been handed over */
			return full ? 1 : 0;
		case PGWS_WAL_GONE:
			break;
	}

	/* its events are gone from the WAL: it must reload, then goes live */
	end_catchup(sub);
	go_live(conn, true);
	lws_callback_on_writable(conn->wsi);
	return 1;
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
	uint64		first = sub->sent_idx;
	bool		given = sub->turn == TURN_GIVEN;
	uint64		budget = given ? BYTES_PER_TURN : BYTES_PER_WRITABLE;
	uint64		written = 0;
	FrameSpan	span = {0};

	/* a turn given is used up by the callback it was armed for */
	if (given)
	{
		sub->turn = TURN_NONE;
		nturns_given--;
	}
	if (!sub->subscribed || sub->catchup_queued || sub->indexed)
		return 0;
	sub->sent_idx = sub->next_idx;
	/* past its token's end it gets nothing; conn.c closes it within a second */
	if (pgws_grant_expired(&sub->grant, (int64) time(NULL)))
		return 0;

	/*
	 * A resumer writes only in its turn (see TURNS_PER_PASS): its socket
	 * takes bytes, so it lines up, and is armed again when its turn comes.
	 * Everything handed to libwebsockets before has left its buffer, so it
	 * holds nothing there meanwhile.  Only here: one that lined up at the
	 * end of its turn might find the kernel's buffer full, never be called
	 * back, and keep its turn (and look like progress) for ever.
	 */
	if (sub->resuming && !given)
	{
		if (sub->turn == TURN_NONE)
		{
			sub->turn = TURN_WAITING;
			dlist_push_tail(&turn_line, &sub->turn_node);
		}
		sub->progress_at = GetCurrentTimestamp();
		return 0;
	}

	if (sub->notice != NULL)
	{
		if (lws_write(conn->wsi, sub->notice, sub->notice_len,
					  LWS_WRITE_RAW) < sub->notice_len)
			return -1;
		count_sent(sub, 1, sub->notice_len);
		pfree(sub->notice);
		sub->notice = NULL;
		if (lws_partial_buffered(conn->wsi))
			return 0;			/* libwebsockets calls us when it is out */
	}
	if (sub->catchup != NULL)
	{
		int			rc = catch_up(conn, budget);

		if (rc != 0)
			return rc < 0 ? -1 : 0;
		first = sub->sent_idx;
	}

	/*
	 * Hand over spans of consecutive frames, one write each; a message it
	 * may not see, or the end of a block, ends a span.  A span left partly
	 * buffered ends the turn: libwebsockets calls us again once it is out.
	 */
	while (sub->next_idx < next_idx)
	{
		WsMessage  *msg = message_at(sub->next_idx);
		bool		skip = !message_for(sub, msg);

		if (!skip)
			frame_for(&log_blocks, msg, sub->next_idx, sub->framing);
		if (span.len > 0 && (skip || !span_takes(&span, msg, sub->framing)))
		{
			int			rc = span_write(conn, &span, &written);

			if (rc < 0)
				return -1;
			if (rc > 0)
				break;
			sub->sent_idx = sub->next_idx;
			if (written >= budget)
				break;
		}
		sub->next_idx++;
		if (skip)
		{
			sub->sent_idx = sub->next_idx;
			continue;
		}
		span_add(&span, msg, sub->framing);
	}
	if (span.len > 0)
	{
		int			rc = span_write(conn, &span, &written);

		if (rc < 0)
			return -1;
		if (rc == 0)
			sub->sent_idx = sub->next_idx;
	}
	if (sub->sent_idx > first || sub->sent_idx == next_idx)
		sub->progress_at = GetCurrentTimestamp();
	/* it has been sent everything once: from now on it is up to date */
	if (sub->sent_idx == next_idx)
		sub->resuming = false;
	if (sub->next_idx < next_idx && !lws_partial_buffered(conn->wsi))
		lws_callback_on_writable(conn->wsi);

	/* this subscriber may have been holding up a waiting writer */
	if (first <= released_idx && sub->sent_idx > first &&
		pgws_queue_writers_waiting())
		trim_log();
	index_subscriber(conn);
	return 0;
}

/*
 * An auth message renewed the connection's token: its filters claim, and
 * so where it waits in the index (above), may be another.  It leaves the
 * index, caught up, and finds its place again once it has been sent
 * everything.
 */
void
pgws_subscriber_grant_renewed(PgWsConn *conn)
{
	PgWsSubscriber *sub = &conn->sub;

	if (sub->indexed)
	{
		unindex_subscriber(conn, next_idx, NULL);
		dlist_push_tail(&subscribers, &sub->node);
		subscribers_listed++;
	}
	if (sub->index_spot != NULL)
	{
		pfree(sub->index_spot->entries);
		pfree(sub->index_spot);
		sub->index_spot = NULL;
	}
	sub->unindexable = false;
}

/* the connection stops receiving (closing, or gone) */
void
pgws_subscriber_close(PgWsConn *conn)
{
	if (!conn->sub.subscribed)
		return;
	if (conn->sub.indexed)
		unindex_subscriber(conn, next_idx, NULL);
	else
		dlist_delete(&conn->sub.node);	/* from the subscribers or the line */
	if (conn->sub.catchup != NULL)
		end_catchup(&conn->sub);
	conn->sub.catchup_queued = false;
	if (conn->sub.turn == TURN_WAITING)
		dlist_delete(&conn->sub.turn_node);
	else if (conn->sub.turn == TURN_GIVEN)
		nturns_given--;
	conn->sub.turn = TURN_NONE;
	conn->sub.resuming = false;
	nsubscribers--;
	if (nsubscribers == 0)
		pgws_queue_want_wakeups(false);
	conn->sub.subscribed = false;

	/*
	 * What it held is freed before the next pass: trimming here, a walk of
	 * every subscriber, made 19,000 subscribers that left at once (a
	 * network blip, a proxy restarting) cost the worker 19,000 walks.
	 */
	closed_since_trim = true;
}
