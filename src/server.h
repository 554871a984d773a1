/*-------------------------------------------------------------------------
 *
 * server.h
 *	  Declarations shared by the files of the worker's server: one peer's
 *	  connection from accept to close, its HTTP request, its WebSocket
 *	  frames, and the broadcast that feeds it.
 *
 *	conn.c		a connection's life: accounting and limits, the protocol
 *				callback, deadlines, keepalive, the polite close
 *	http.c		the HTTP/1.1 request: parsing, routing, answers, upgrade
 *	metrics.c	GET /health and GET /metrics
 *	ws.c		RFC 6455 frames: reading the peer's, writing control frames
 *	sse.c		the text/event-stream of GET /events: its head, its lines
 *	console.c	the console page answered on GET / (http.c routes to it)
 *	broadcast.c	the message log and what each subscriber is sent
 *	worker.c	the process, its listening sockets and its loop
 *
 * Who may subscribe, and what it may receive, is auth.c's (auth.h): http.c
 * asks it at the upgrade and ws.c for auth messages; the grant it makes is
 * kept with the connection, and broadcast.c filters by it.
 *
 * A subscriber is a subscriber whatever its framing: /ws/'s WebSocket
 * frames or /events' Server-Sent Events lines (PgWsFraming).  broadcast.c
 * decides what each one is sent and frames each message once per framing
 * in use; a framing's file says how the bytes look (PgWsFramingOps).
 *
 * Sockets are adopted into libwebsockets as raw sockets (with TLS when
 * configured): libwebsockets runs the poll loop, the TLS layer and the
 * buffering of partial writes, and pg_ws reads and writes HTTP and
 * WebSocket bytes itself, so that every answer, close code and limit is
 * its own (libwebsockets 4.1's ws role accepts unmasked client frames and
 * answers upgrades it refuses with HTTP/1.0).  Only the worker includes
 * this file; backends never touch libwebsockets.
 *
 * src/server.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_WS_SERVER_H
#define PG_WS_SERVER_H

#include "pg_ws.h"
#include "auth.h"

#include <libwebsockets.h>
#include <sys/socket.h>

#include "lib/ilist.h"
#include "utils/timestamp.h"

/* a peer's address, as accounted per address */
typedef struct PgWsPeerKey
{
	sa_family_t family;
	uint8		addr[16];		/* IPv4 in the first 4 bytes, or IPv6 */
} PgWsPeerKey;

/* What accept() decided about a new socket, handed to its adoption */
typedef struct PgWsAccept
{
	PgWsPeerKey key;
	char		peer[64];		/* the address as text, for the log */
	int			port;			/* the peer's port */
	const char *refusal;		/* over a limit: answer 503 with this */
} PgWsAccept;

/*
 * How a subscriber's messages are written: each framing is a file of its
 * own, and broadcast.c frames a message once per framing, the first time
 * a subscriber of that framing is handed it.  The WebSocket frame is also
 * where a message's JSON is kept (broadcast.c), so it is always made.
 */
typedef enum PgWsFraming
{
	PGWS_FRAMING_WS,			/* RFC 6455 text frames: /ws/ (ws.c) */
	PGWS_FRAMING_WS_DEFLATE,	/* the same, compressed: /ws/ with
								 * permessage-deflate (deflate.c) */
	PGWS_FRAMING_SSE,			/* text/event-stream: /events (sse.c) */
	PGWS_NUM_FRAMINGS
} PgWsFraming;

typedef enum PgWsConnState
{
	CONN_REQUEST,				/* reading the HTTP request */
	CONN_ANSWERED,				/* final bytes queued; half-close once sent */
	CONN_LINGER,				/* half-closed: discard input until the peer
								 * closes or the deadline */
	CONN_OPEN					/* a subscriber, of either framing */
} PgWsConnState;

/* The reader of the peer's WebSocket frames (ws.c) */
typedef struct PgWsFrameReader
{
	uint8		head[14];		/* the frame header, as it arrives */
	int			head_len;		/* bytes of it so far */
	int			head_need;		/* bytes it will have (2 until known) */
	uint8		opcode;			/* of the current frame */
	bool		fin;
	uint8		mask[4];
	uint64		payload_left;	/* of the current frame */
	uint64		payload_pos;	/* into the current frame, for the mask */
	uint8		msg_opcode;		/* text or binary while a message is
								 * fragmented; 0 between messages */
	uint8		utf8_need;		/* continuation bytes still expected */
	uint8		utf8_lo;		/* range of the next continuation byte */
	uint8		utf8_hi;
	uint8		control[125];	/* payload of a control frame */
	uint8		control_len;
	bool		rsv1;			/* the current frame has RSV1 set */
	bool		compressed;		/* the message is compressed (RSV1 on its
								 * first frame; permessage-deflate) */
	StringInfo	message;		/* a data message being collected */
} PgWsFrameReader;

/* A /ws/ subscriber's place in the message log (broadcast.c) */
/* a hexadecimal digit's value, or -1 (percent-encoding, JSON's \u escapes) */
static inline int
pgws_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* a ?filter= of values (filter.c) */
typedef struct PgWsValueFilter PgWsValueFilter;

extern const char *pgws_value_filter_parse(const char *text,
										   PgWsValueFilter **filter);
extern const char *pgws_value_filter_field(const PgWsValueFilter *filter,
										   int i);
extern bool pgws_value_filter_matches(const PgWsValueFilter *filter,
									  const char *json, uint32 len,
									  const char *row, uint32 row_len);
extern int	pgws_value_filter_index_keys(const PgWsValueFilter *filter,
										 const char **field, uint64 **keys);
extern int	pgws_value_event_keys(const char *field, const char *json,
								  uint32 len, const char *row, uint32 row_len,
								  uint64 *keys);

/* where an idle filtered subscriber waits (broadcast.c) */
typedef struct PgWsFilterIndexSpot PgWsFilterIndexSpot;

typedef struct PgWsSubscriber
{
	PgWsFraming framing;		/* how its messages are written */
	dlist_node	node;			/* in broadcast.c's list, while subscribed
								 * and not in its filter index */
	bool		subscribed;
	bool		culled;			/* disconnected for falling behind */
	uint64		next_idx;		/* next message of the log to hand to
								 * libwebsockets */
	uint64		sent_idx;		/* messages before this have left
								 * libwebsockets' buffer */
	uint64		after_seq;		/* it has every event up to this position */
	bool		resume;			/* it asked for ?since=&epoch= */
	TimestampTz future_until;	/* a standby waits for replay to reach
								 * since until then; 0 if not */
	bool		epoch_matches;	/* and the epoch was ours */
	uint64		since;			/* the position it asked for */
	TimeLineID	since_tli;		/* the timeline since was made on; 0 if
								 * its epoch does not say (pg_ws 1.3) */
	bool		timeline_wait;	/* a standby waits until future_until for
								 * its timeline to reach since_tli */
	uint64		fork;			/* resync_required names this fork point;
								 * 0 if none */
	bool		snapshot;		/* since came from pg_ws_position(): the
								 * events its snapshot saw are not sent */
	PgWsSnapshotPosition position;	/* then that position (xids in cxt) */
	uint8	   *notice;			/* resync_required frame, sent first */
	int			notice_len;
	struct PgWsCatchup *catchup;	/* the shared reader it takes its
									 * events from the WAL from, before it
									 * joins the log (broadcast.c) */
	dlist_node	ride_node;		/* in that reader's list of riders */
	uint64		ride_idx;		/* the next of the reader's messages to
								 * hand to libwebsockets */
	bool		catchup_queued; /* waits for catch-up memory to read them
								 * (in broadcast.c's list of those) */
	bool		resuming;		/* behind since it resumed: its writes wait
								 * for turns (broadcast.c) until it has been
								 * sent everything once */
	int			turn;			/* PgWsTurn: waiting for a turn, given one */
	dlist_node	turn_node;		/* in broadcast.c's line for turns */
	TimestampTz progress_at;	/* when it last was caught up or sent_seq
								 * moved */
	TimestampTz holding_since;	/* since when it holds the oldest message
								 * while a writer waits; 0 if not */
	PgWsGrant	grant;			/* what it may receive, until when (auth.c) */
	PgWsEventSet filter;		/* its ?events=; every event without one.
								 * Patterns in the connection's cxt */
	char	   *filter_text;	/* its ?events= as given, unless "*" (conn->cxt) */
	PgWsValueFilter *values;	/* its ?filter= (conn->cxt); NULL if none */
	char	   *values_text;	/* and as given, for pg_ws_connections */
	PgWsFilterIndexSpot *index_spot;		/* its keys, once it first waited (cxt);
								 * NULL before, or if it cannot wait */
	bool		indexed;			/* waits in broadcast.c's index */
	bool		unindexable;		/* its filter has no key to wait under */
	uint64		messages_sent;	/* messages handed to its socket */
	uint64		bytes_sent;		/* bytes of their frames */
} PgWsSubscriber;

/* One peer's socket, from accept to close: libwebsockets' per-session data */
typedef struct PgWsConn
{
	dlist_node	all_node;		/* in conn.c's list of every connection */
	dlist_node	wheel_node;		/* in the slot of housekeeping's next look */
	int64		look_sec;		/* that look's second, TimestampTz / 1 s */
	bool		in_wheel;
	bool		adopted;		/* set up by conn.c (not all closes are) */
	struct lws *wsi;
	PgWsConnState state;
	uint64		id;				/* pg_ws_connections' id, never reused */
	TimestampTz connected_since;
	bool		tls;
	PgWsPeerKey key;
	char		peer[64];
	int			peer_port;
	const char *refusal;		/* over a limit: answer 503 */
	TimestampTz deadline;		/* of the request, the linger; 0 = none */
	MemoryContext cxt;			/* everything this connection keeps */
	char	   *request;		/* the HTTP request head while it arrives
								 * (in cxt, at most pg_ws.max_header_size
								 * and its blank line); NULL once answered */
	int			request_len;
	int			request_cap;

	/* WebSocket, once upgraded */
	PgWsFrameReader reader;
	bool		pong_due;
	uint8		pong_len;
	uint8		pong_data[125];
	bool		close_due;		/* our close frame is to be written */
	uint16		close_code;
	char		close_reason[124];
	bool		hard_close;		/* do not wait for the peer's close frame */
	TimestampTz last_heard;		/* the peer's last frame */
	TimestampTz ping_sent_at;	/* an unanswered ping; 0 = none */
	bool		ping_due;

	/* Server-Sent Events: a comment when nothing was sent for a while */
	bool		heartbeat_due;
	uint64		heartbeat_mark; /* sub.bytes_sent when last looked at */
	TimestampTz quiet_since;	/* since when it has not moved */

	PgWsSubscriber sub;
} PgWsConn;

/*
 * What an accepted subscription (a /ws/ upgrade, an /events stream) hands
 * to its connection: http.c decides, pgws_conn_subscribe acts.  The
 * grant's and the filter's patterns and filter_text are in the request's
 * memory, which is reset once the request is answered: conn.c copies them
 * into the connection's.
 */
typedef struct PgWsSubscription
{
	PgWsFraming framing;		/* of its messages from now on */
	PgWsGrant	grant;			/* what its token allows (auth.c) */
	PgWsEventSet filter;		/* its ?events=; every event without one */
	const char *filter_text;	/* ?events= as given; NULL without one */
	bool		resume;			/* ?since=&epoch=, or ?since= a snapshot
								 * position */
	uint64		since;
	TimeLineID	since_tli;		/* its timeline; 0 if it does not say */
	bool		epoch_matches;
	const char *values_text;	/* ?filter=, checked; NULL without one */
	bool		snapshot;		/* since is a snapshot position's after */
	PgWsSnapshotPosition position;	/* xids in the request's memory */
} PgWsSubscription;

/*
 * A message as a framing is handed it to frame: the whole JSON message
 * /ws/ sends, the event's name and its position as one string,
 * SEQ@EPOCH, which ?since= and Last-Event-ID take back.
 */
typedef struct PgWsMessageText
{
	const char *json;
	uint32		len;
	const char *name;			/* NULL if the event has none */
	uint32		name_len;
	const char *position;
	uint32		position_len;
} PgWsMessageText;

/* what a framing does (ws.c, sse.c) */
typedef struct PgWsFramingOps
{
	/* bytes a message takes framed, at most */
	uint32		(*size) (const PgWsMessageText *m);
	/* frame it at dst; returns the bytes written */
	uint32		(*write) (uint8 *dst, const PgWsMessageText *m);
	/* bytes the peer of an open connection sent */
	void		(*read) (PgWsConn *conn, const uint8 *data, size_t len);
	/*
	 * at a writable callback, before any message: the framing's own bytes
	 * (keepalive, the last words of a close).  -1 when the connection is
	 * broken, 1 when the last words went out, 0 otherwise
	 */
	int			(*write_control) (PgWsConn *conn);
} PgWsFramingOps;

extern const PgWsFramingOps pgws_ws_framing;
extern const PgWsFramingOps pgws_ws_deflate_framing;
extern const PgWsFramingOps pgws_sse_framing;

static inline const PgWsFramingOps *
pgws_framing_ops(PgWsFraming framing)
{
	switch (framing)
	{
		case PGWS_FRAMING_SSE:
			return &pgws_sse_framing;
		case PGWS_FRAMING_WS_DEFLATE:
			return &pgws_ws_deflate_framing;
		default:
			return &pgws_ws_framing;
	}
}

/* deflate.c: permessage-deflate (RFC 7692) */
extern bool pgws_deflate_accept_offer(const char *extensions,
									  const char **response);
extern const char *pgws_deflate_inflate(const uint8 *in, size_t len, size_t max,
										StringInfo out, bool *too_big);

/* the longest position string SEQ@EPOCH, and its NUL */
#define PGWS_POSITION_TEXT_LEN (21 + PGWS_EPOCH_LEN)

/* conn.c */
extern void pgws_conn_init(void);
/* beyond the limits, sockets accepted only to be answered 503 */
#define PGWS_REFUSAL_SLOTS 16

extern int	pgws_conn_count(void);
extern bool pgws_conn_at_capacity(void);
extern bool pgws_conn_decide(PgWsAccept *acc);
extern int	pgws_conn_callback(struct lws *wsi, enum lws_callback_reasons reason,
							   void *user, void *in, size_t len);
extern void pgws_conn_housekeeping(TimestampTz now);
extern void pgws_conn_close_all(uint16 code, const char *reason,
								bool drop_requests);
extern void pgws_conn_finish(PgWsConn *conn, const uint8 *bytes, int len);
extern void pgws_conn_subscribe(PgWsConn *conn, const uint8 *answer, int len,
								const PgWsSubscription *up);
extern void pgws_conn_close(PgWsConn *conn, uint16 code, const char *reason);
extern void pgws_conn_write_now(PgWsConn *conn);

/*
 * Log lines a peer can cause are rate-limited (conn.c), each reason of a
 * refusal or a drop on its own, and these other kinds on their own too.
 * pgws_conn_refused() and pgws_conn_dropped() also count the refusal or
 * drop (pg_ws_stats, /metrics), every time, and say whether to log it.
 */
typedef enum PgWsPeerLog
{
	PEER_LOG_REFUSED,			/* not accepting connections at all */
	PEER_LOG_DROPPED,			/* sockets that could not be taken over */
	PEER_LOG_KINDS
} PgWsPeerLog;

extern bool pgws_peer_log_allowed(PgWsPeerLog kind);
extern bool pgws_conn_refused(PgWsRefusal reason);
extern bool pgws_conn_dropped(PgWsDrop reason);
extern size_t pgws_conn_size(void);

extern void pgws_conn_settings_reloaded(void);
extern void pgws_conn_look_again(PgWsConn *conn);

/* http.c */
extern size_t pgws_http_request(PgWsConn *conn, const uint8 *data, size_t len);
extern void pgws_http_refuse(PgWsConn *conn, int status, const char *extra_headers,
							 const char *body);

/* ws.c */
#define PGWS_WS_MAX_HEADER 10
extern int	pgws_ws_frame_header(uint8 *hdr, uint8 opcode, uint64 len);
extern void pgws_ws_read(PgWsConn *conn, const uint8 *data, size_t len);
extern int	pgws_ws_write_control(PgWsConn *conn);

#define WS_OP_CONTINUATION	0x0
#define WS_OP_TEXT			0x1
#define WS_OP_BINARY		0x2
#define WS_OP_CLOSE			0x8
#define WS_OP_PING			0x9
#define WS_OP_PONG			0xA
#define WS_RSV1				0x40	/* first byte: a compressed message
									 * (RFC 7692), once negotiated */

/* close codes (RFC 6455 7.4.1, and ours) */
#define WS_CLOSE_GOING_AWAY		1001
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_UNSUPPORTED	1003
#define WS_CLOSE_INVALID_DATA	1007
#define WS_CLOSE_POLICY			1008
#define WS_CLOSE_TOO_BIG		1009
#define WS_CLOSE_TRY_AGAIN		1013
#define WS_CLOSE_TOKEN			4001

/* sse.c */
extern char *pgws_sse_head(const char *origin, bool credentials, int *len);

/* broadcast.c (the rest is in pg_ws.h) */
extern void pgws_subscriber_open(PgWsConn *conn);
extern int	pgws_subscriber_writable(PgWsConn *conn);
extern void pgws_subscriber_close(PgWsConn *conn);
extern void pgws_subscriber_grant_renewed(PgWsConn *conn);
extern uint64 pgws_subscriber_pending_bytes(PgWsConn *conn);
extern void pgws_broadcast_check_progress(TimestampTz now);
extern void pgws_broadcast_before_pass(void);
extern bool pgws_broadcast_resume_reads_wal(uint64 since, bool epoch_matches);
extern int	pgws_broadcast_wal_resumes_from(const PgWsPeerKey *key);

/*
 * What an endpoint that answers a request (console.c, metrics.c) decides
 * it gets: http.c writes it, and the connection ends once it is sent.
 * The endpoints see neither the connection nor the HTTP layer.  A refusal
 * (content_type NULL) is written as http.c writes every refusal: its
 * body a line of plain text, counted and logged.
 */
typedef struct PgWsAnswer
{
	int			status;			/* 200, 403, 503 ... */
	const char *content_type;	/* of body; NULL: a refusal, body its text */
	const char *headers;		/* header lines, each ending "\r\n"; or NULL */
	const char *body;
	size_t		body_len;
	bool		head_only;		/* HEAD: the head alone */
} PgWsAnswer;

/*
 * metrics.c: is path /health or /metrics, served while pg_ws.monitoring
 * is not off?  Then pgws_metrics_answer() answers it (or refuses it,
 * pg_ws.monitoring = local, to a peer or a Host that is not loopback).
 */
extern bool pgws_metrics_path(const char *path);
extern void pgws_metrics_answer(const PgWsPeerKey *peer, const char *path,
								const PgWsAuthRequest *areq, PgWsAnswer *answer);

/*
 * worker.c: does pg_ws.database name another database than the one served
 * now?  Then the worker is ending (true).
 */
extern bool pgws_worker_database_moved(void);

/* worker.c: call pgws_broadcast_poll_wal() again shortly */
extern void pgws_worker_poll_wal_soon(void);
/* worker.c: is every socket the worker listens on a loopback address? */
extern bool pgws_worker_listens_on_loopback_only(void);

/* console.c */
extern bool pgws_console_served(void);
extern void pgws_console_answer(bool head_only, const char *host, PgWsAnswer *answer);
extern void pgws_console_reload(void);
extern void pgws_console_report(void);

/* worker.c: publish pgws_worker_stats now (pg_ws_stats, /metrics) */
extern void pgws_worker_publish_stats(void);
extern uint64 pgws_worker_served;	/* callbacks and reloads served */
/* worker.c: is this peer a loopback address? */
extern bool pgws_peer_is_loopback(const PgWsPeerKey *key);

#endif							/* PG_WS_SERVER_H */
