/*-------------------------------------------------------------------------
 *
 * pg_ws.h
 *	  Declarations shared by the files of pg_ws.
 *
 * pg_ws turns committed row changes of four tables into WebSocket events:
 *
 *	render.c	row triggers render each changed row as one JSON event
 *	visits.c	a client's newest visits, for render.c's visit_histories
 *	watch.c		which tables are broadcast: the extension's own and those
 *				pg_ws_watch() attached it to (pg_ws_watched)
 *	send.c		pg_ws_send(): an event the application names, rendered
 *				and queued like a row's
 *	pending.c	events wait in backend memory until the transaction commits
 *	queue.c		pre-commit appends them to a ring in shared memory and
 *				writes them to the WAL; the commit marks them visible
 *				and wakes the worker
 *	worker.c	the background worker: its life, its sockets, HTTP and /ws/
 *	broadcast.c	the worker drains the ring in commit order into a log of
 *				messages, rendered once, sent to every /ws/ subscriber
 *	pg_ws.c		_PG_init, the GUCs and the worker's registration
 *	stats.c		pg_ws_stats(): the queue's and the worker's figures for SQL
 *	connections.c	pg_ws_connections() and pg_ws_disconnect(): what the
 *				worker's connections are, asked of the worker through a
 *				mailbox in shared memory
 *	metrics.c	GET /health and GET /metrics (Prometheus), in the worker
 *	tls.c		wss://: the certificate the worker serves, reloaded on
 *				SIGHUP, and the OpenSSL settings of its SSL_CTX
 *	walrecord.c	pg_ws's own WAL resource manager and the record of a
 *				transaction's events, which nothing but pg_ws can write
 *	walread.c	pg_ws's events read back from the WAL: for subscribers
 *				that resume from before the worker's history, and on hot
 *				standbys, which follow replay
 *	loglimit.c	the rate limit of log lines others can cause
 *	filtercols.c	the watched tables' filter column names, read for the
 *				worker by a short-lived background worker
 *	retention.c	the replication slot "pg_ws" that keeps that WAL for
 *				pg_ws.history_retention
 *	console.c	the live console page the worker serves on GET /
 *	eventname.c	what an event may be called, and which names a pattern
 *				of events matches
 *
 * and who may subscribe (see auth.h):
 *
 *	auth.c		the worker's policy: origins, where a token travels, its
 *				claims, and what a subscriber may receive
 *	jwt.c		the token format and its cryptography, and the backend
 *				function pg_ws_sign_token()
 *
 * src/pg_ws.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_WS_H
#define PG_WS_H

#include "postgres.h"
#include "compat.h"
#include "access/attnum.h"
#include "access/xlogdefs.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

/* GUC variables (pg_ws.c) */
extern char *pgws_listen_addresses;
extern int	pgws_port;
extern char *pgws_database;
extern int	pgws_queue_size_kb;
extern int	pgws_queue_full_timeout_ms;
extern int	pgws_max_connections;
/* its maximum, and that of pg_ws.max_connections_per_address */
#define PGWS_MAX_CONNECTIONS_LIMIT	1000000
extern int	pgws_max_subscriber_lag_kb;
extern int	pgws_reconnect_grace_ms;
extern int	pgws_history_size_kb;
extern int	pgws_catchup_memory_kb;
extern bool pgws_wal;
extern char *pgws_history_retention;

/* the worker's event loop (pg_ws.event_loop, worker.c) */
typedef enum PgWsEventLoop
{
	PGWS_EVENT_LOOP_POLL,		/* libwebsockets' own poll() loop */
	PGWS_EVENT_LOOP_LIBEV		/* libev (epoll), through its plugin */
} PgWsEventLoop;

extern int	pgws_event_loop;
extern char *pgws_media_url;
extern int	pgws_max_connections_per_address;
extern int	pgws_max_wal_resumes_per_address;
extern int	pgws_ping_interval_s;
extern bool pgws_compression;
extern int	pgws_compression_min_size;
extern int	pgws_handshake_timeout_s;
extern int	pgws_max_header_size;
extern int	pgws_max_visit_histories;

/* whether GET / serves the console page (pg_ws.console, console.c) */
typedef enum PgWsConsoleMode
{
	PGWS_CONSOLE_AUTO,			/* while the worker listens on loopback only */
	PGWS_CONSOLE_ON,
	PGWS_CONSOLE_OFF
} PgWsConsoleMode;

extern int	pgws_console_mode;

/* who may read /health and /metrics (pg_ws.monitoring, metrics.c) */
typedef enum PgWsMonitoring
{
	PGWS_MONITORING_OFF,		/* nobody: 404, as any unknown path */
	PGWS_MONITORING_LOCAL,		/* loopback peers only; others get 403 */
	PGWS_MONITORING_ON			/* every peer that reaches the port */
} PgWsMonitoring;

extern int	pgws_monitoring;
extern int	pgws_health_max_replay_lag_ms;

/*
 * GUC variables of who may subscribe (pg_ws.c; read by auth.c and jwt.c).
 * The secret is only ever read through pgws_jwt_load_secret().
 */
typedef enum PgWsAuthMode
{
	PGWS_AUTH_NONE,				/* everyone may subscribe to everything */
	PGWS_AUTH_JWT				/* a valid token is required */
} PgWsAuthMode;

extern int	pgws_auth_mode;
extern bool pgws_allow_anonymous;
extern char *pgws_jwt_secret;
extern char *pgws_jwt_secret_file;
extern char *pgws_jwt_public_key_file;
extern int	pgws_jwt_leeway_s;
extern char *pgws_jwt_audience;
extern char *pgws_jwt_issuer;
extern char *pgws_jwt_cookie;
extern char *pgws_allowed_origins;

/* true when the library was loaded through shared_preload_libraries */
extern bool pgws_preloaded;

extern void pgws_require_preload(void);
extern bool pgws_is_broadcast_database(void);

/*
 * Shared queue (queue.c).
 *
 * One queue entry holds all events of one committing transaction as JSON
 * Lines: each event's UTF-8 JSON followed by a newline.  The same bytes are
 * the payload of the transaction's WAL record (walrecord.c).  Every event
 * has a position (seq): with pg_ws.wal = on, the record's LSN plus the
 * event's index in it.
 */
#define PGWS_EPOCH_LEN 64

extern void pgws_queue_request_shmem(void);
extern void pgws_queue_startup(void);
extern uint64 pgws_queue_capacity(void);
extern uint64 pgws_queue_entry_size(uint64 payload_len);
extern void pgws_queue_append(const char *payload, uint32 len, int nevents);
extern void pgws_queue_finish(bool committed);
extern void pgws_queue_want_wakeups(bool want);
extern void pgws_queue_wake_worker(void);
extern int	pgws_queue_wakeup_fd(void);
extern void pgws_queue_answer_doorbell(void);
extern uint64 pgws_queue_worker_attach(bool *restart);
extern void pgws_queue_worker_detach(void);
extern void pgws_queue_epoch(char *buf, size_t size, Oid database);
extern XLogRecPtr pgws_queue_appended_through(void);

/*
 * Snapshot positions (position.c): what pg_ws_position() returns and
 * ?since= accepts.  Its subscriber is sent every event with seq > after,
 * except those with seq < until of a transaction the snapshot saw: an id
 * before xmax and not among xids (ascending).
 */
typedef struct PgWsSnapshotPosition
{
	uint64		sysid;			/* the epoch: the system identifier */
	Oid			database;		/* and the database */
	TimeLineID	tli;			/* the timeline it was made on; 0 for a
								 * position of 1.3, which does not say */
	uint64		after;
	uint64		until;
	TransactionId xmax;
	int			nxids;
	TransactionId *xids;
} PgWsSnapshotPosition;

/*
 * Timelines (timeline.c): which history a position belongs to, and where
 * a position's timeline and this node's history part.
 */
extern TimeLineID pgws_timeline_current(void);
extern uint64 pgws_timeline_fork(TimeLineID tli);
extern char *pgws_timeline_diverged(void);

extern void pgws_position_request_shmem(void);
extern void pgws_position_startup(void);
extern void pgws_position_note(TransactionId xid, XLogRecPtr lsn);
extern void pgws_position_recovery_started(void);
extern XLogRecPtr pgws_position_follow_from(void);
extern bool pgws_position_decode(const char *text, PgWsSnapshotPosition *pos);
extern bool pgws_position_saw(const PgWsSnapshotPosition *pos, uint64 seq,
							  TransactionId xid);

/*
 * pgws_queue_drain hands each committed event to the worker through this
 * callback: its JSON (len bytes, no newline), its position, its
 * transaction's id (for snapshot positions, position.c), and the
 * transaction's entry, for pgws_queue_release.
 */
typedef void (*pgws_event_sink) (void *arg, const char *json, uint32 len,
								 uint64 seq, TransactionId xid,
								 uint64 entry_pos);
extern uint64 pgws_queue_drain(pgws_event_sink sink, void *arg, Oid database,
							   bool *waits_for_flush, Oid *other_database);
extern void pgws_queue_skip_entry(void);
extern TimestampTz pgws_queue_parked_since(uint64 *count,
											TimestampTz *blocked_since);
extern uint64 pgws_queue_read_pos(void);
extern uint64 pgws_queue_next_counter_position(void);
extern bool pgws_queue_writers_waiting(void);
extern void pgws_queue_release(uint64 pos);

/* the queue's figures, for pg_ws_stats (stats.c) */
typedef struct PgWsQueueStats
{
	pid_t		worker_pid;		/* the attached worker, or 0 */
	uint64		bytes_used;		/* entries not yet released by the worker */
	uint64		bytes_capacity; /* the ring's size */
	uint32		writers_waiting;	/* committing backends waiting for room */
	uint64		events_queued;	/* events of committed transactions put in
								 * the queue since shared memory was set up */
	TimestampTz oldest_queued_at;	/* when the oldest entry still in the
									 * queue was appended; 0 if none */
} PgWsQueueStats;
extern void pgws_queue_get_stats(PgWsQueueStats *stats);

/*
 * The events of the event document, named by render.c.  Sets of events
 * (PgWsEventSet, below) take these by a bit mask over their kinds; any
 * other event (pg_ws_send()'s) is of kind -1 and taken by its name.
 */
typedef enum PgWsEventKind
{
	PGWS_CLIENT_CREATE,
	PGWS_CLIENT_UPDATE,
	PGWS_CLIENT_DELETE,
	PGWS_CLIENT_VISIT_CREATE,
	PGWS_CLIENT_VISIT_UPDATE,
	PGWS_CLIENT_VISIT_DELETE,
	PGWS_EMPLOYEE_CREATE,
	PGWS_EMPLOYEE_UPDATE,
	PGWS_EMPLOYEE_DELETE,
	PGWS_EMPLOYEE_ATTENDANCE,
	PGWS_EMPLOYEE_ATTENDANCE_DELETE,
	PGWS_NUM_EVENT_KINDS
} PgWsEventKind;

#define PGWS_ALL_EVENTS ((uint32) ((1U << PGWS_NUM_EVENT_KINDS) - 1))

extern const char *const pgws_event_names[PGWS_NUM_EVENT_KINDS];
extern int	pgws_event_kind_of(const char *json, size_t len);
extern const char *pgws_event_name_of(const char *json, size_t len,
									  size_t *name_len);

/*
 * The tables pg_ws broadcasts (watch.c): its own four, and those
 * pg_ws_watch() attached it to, by kind.  The kind is also the argument of
 * the trigger pg_ws_row_event().
 */
typedef enum PgWsTableKind
{
	PGWS_TABLE_CLIENT,
	PGWS_TABLE_VISIT_HISTORY,
	PGWS_TABLE_EMPLOYEE,
	PGWS_TABLE_ATTENDANCE,
	PGWS_TABLE_ROW,				/* any table: <prefix>_create/_update/_delete */
	PGWS_NUM_TABLE_KINDS
} PgWsTableKind;

/*
 * At most this many filter columns per watched table: each travels with
 * every event of the table, in the queue and the WAL (watch.c, render.c).
 */
#define PGWS_MAX_FILTER_COLUMNS 8

/* how many columns render.c reads by name (its WsColumn) */
#define PGWS_RENDER_COLUMNS 17

typedef struct PgWsWatchedTable
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once its relcache entry is invalidated */
	bool		watched;		/* may its rows become events at all? */
	bool		own;			/* one of the tables CREATE EXTENSION made */
	PgWsTableKind kind;
	Oid			visit_relid;	/* client: where visit_histories come from */
	char		event_prefix[NAMEDATALEN];	/* row: the events' name prefix, as
												 * stored when the table was
												 * watched and checked */
	int			ncolumns;		/* row: the columns sent; 0: all */
	AttrNumber *columns;
	int			nkeys;			/* row: the primary key, sent on delete */
	AttrNumber *keys;
	int			nfilter_columns;	/* carried for ?filter=, never sent */
	AttrNumber *filter_columns;

	/*
	 * render.c's attribute numbers of the columns it reads, 0 until it
	 * looks one up; zeroed at each load, so after every invalidation.
	 */
	AttrNumber	render_attnums[PGWS_RENDER_COLUMNS];
} PgWsWatchedTable;

extern const char *const pgws_table_kind_names[PGWS_NUM_TABLE_KINDS];
extern int	pgws_table_kind_from_name(const char *name);
struct RelationData;
extern PgWsWatchedTable *pgws_watched_table(struct RelationData *rel);
extern void pgws_check_not_table_event(const char *name, int len);

/*
 * A client's newest visits (visits.c), handed one at a time, newest
 * first, to the caller's function: each visit's datetime and device_id
 * with their types.
 */
typedef void (*PgWsVisitFn) (void *arg,
							 Datum datetime, bool datetime_null, Oid datetime_type,
							 Datum device_id, bool device_id_null, Oid device_id_type);
extern void pgws_read_visits(Oid visit_relid, Oid owner, Datum client_id,
							 Oid client_id_type, int64 limit,
							 PgWsVisitFn fn, void *arg);
extern bool pgws_visit_index_fits(struct RelationData *visit);

/* UTF-8 JSON with every non-ASCII character as \uXXXX (render.c) */
extern void pgws_append_ascii_escaped(StringInfo out, const char *s, int len);

/* every rendered event begins with these bytes, then its name and a quote */
#define PGWS_EVENT_PREFIX "{\"event\": \""

/*
 * Event names (eventname.c): [a-z][a-z0-9_]*, at most
 * PGWS_EVENT_NAME_MAXLEN bytes, the length of an SQL identifier.
 */
#define PGWS_EVENT_NAME_MAXLEN (NAMEDATALEN - 1)

extern bool pgws_event_name_valid(const char *name, size_t len);
extern int	pgws_document_event_kind(const char *name, size_t len);
extern void pgws_check_custom_event_name(const char *name, size_t len);

/*
 * Why a name is refused for an event that is not one of the document's
 * (pg_ws_send()'s, a 'row' table's), as an errdetail; NULL when it may be.
 */
extern const char *pgws_event_name_problem(const char *name);

/*
 * A set of events, as patterns (a ?events= filter, a token's events claim)
 * select them (eventname.c): the document's events by a bit mask, so that
 * they cost one test, and every other name by the patterns that can match
 * it (names and prefixes ending in '*'), kept sorted so that a name is
 * looked up in as many comparisons as the log of their number, however
 * many and long they are.
 */
typedef struct PgWsEventPattern
{
	uint8		len;
	char		text[PGWS_EVENT_NAME_MAXLEN];	/* a name, or a prefix without
												 * its '*'; no NUL */
} PgWsEventPattern;

typedef struct PgWsEventSet
{
	bool		all;			/* "*": every event, whatever its name */
	uint32		mask;			/* bit k = pgws_event_names[k] taken */
	int			npatterns;		/* patterns for other names: */
	int			nnames;			/* [0, nnames) names, sorted, and
								 * [nnames, npatterns) prefixes, sorted, none
								 * a prefix of another nor of a name */
	int			capacity;
	PgWsEventPattern *patterns; /* NULL when none */
} PgWsEventSet;

/* what pgws_event_set_add() made of one pattern */
typedef enum PgWsPatternResult
{
	PGWS_PATTERN_OK,			/* added */
	PGWS_PATTERN_ALL,			/* "*": the set takes every event now */
	PGWS_PATTERN_MALFORMED,		/* a '*' elsewhere than at the end */
	PGWS_PATTERN_NO_NAME		/* no event name can match it; not added */
} PgWsPatternResult;

extern void pgws_event_set_init(PgWsEventSet *set, bool all);
extern PgWsPatternResult pgws_event_set_add(PgWsEventSet *set,
											const char *pattern, size_t len);
extern void pgws_event_set_copy(PgWsEventSet *dst, const PgWsEventSet *src);
extern void pgws_event_set_free(PgWsEventSet *set);
extern bool pgws_event_set_matches_name(const PgWsEventSet *set,
										const char *name, size_t len);

/*
 * Does the set take this event?  kind from pgws_event_kind_of(); for -1,
 * the name from pgws_event_name_of() (NULL: only a set of every event
 * takes it).
 */
static inline bool
pgws_event_set_has(const PgWsEventSet *set, int kind, const char *name,
				   size_t name_len)
{
	if (set->all)
		return true;
	if (kind >= 0)
		return (set->mask & (1U << kind)) != 0;
	return set->npatterns > 0 && name != NULL &&
		pgws_event_set_matches_name(set, name, name_len);
}

/* Pending events of the current transaction (pending.c) */
extern void pgws_pending_add(const char *json, int len);
extern void pgws_register_xact_callbacks(void);

/* The worker's message log (broadcast.c; the rest is in server.h) */
extern void pgws_broadcast_init(uint64 history_floor);
extern bool pgws_broadcast_epoch_matches(const char *given, TimeLineID *tli);
extern void pgws_broadcast_set_database(Oid database);
extern void pgws_broadcast_follow(uint64 floor);
extern bool pgws_broadcast_follow_wal(void);
extern bool pgws_broadcast_poll_wal(void);
extern uint64 pgws_broadcast_drain_queue(void);
extern void pgws_broadcast_shutdown(void);
extern int	pgws_subscriber_count(void);
extern int	pgws_subscriber_indexed_count(void);
extern void pgws_broadcast_history(uint64 *floor, uint64 *last, bool *in_wal);
extern Oid	pgws_broadcast_database(void);
extern bool pgws_broadcast_following(void);

/*
 * Why the worker refused a connection before it became a subscriber (an
 * HTTP error answer, or a socket closed at accept), and why it ended one
 * (a drop).  Counted by reason in pg_ws_stats and /metrics, and logged
 * rate-limited per reason; the names (stats.c) are the keys and labels.
 */
typedef enum PgWsRefusal
{
	PGWS_REFUSAL_BAD_REQUEST,	/* 400 */
	PGWS_REFUSAL_UNAUTHORIZED,	/* 401: no valid token */
	PGWS_REFUSAL_FORBIDDEN,		/* 403: the origin, a Host not served
								 * without a token, or pg_ws.monitoring */
	PGWS_REFUSAL_NOT_FOUND,		/* 404 */
	PGWS_REFUSAL_METHOD,		/* 405 */
	PGWS_REFUSAL_WS_VERSION,	/* 426 */
	PGWS_REFUSAL_HEADER_TOO_LARGE,	/* 431 */
	PGWS_REFUSAL_HTTP_VERSION,	/* 505 */
	PGWS_REFUSAL_MAX_CONNECTIONS,	/* 503, or closed: no slot left */
	PGWS_REFUSAL_MAX_PER_ADDRESS,	/* the same, per address */
	PGWS_REFUSAL_DESCRIPTOR_LIMIT,	/* closed: descriptor beyond the table */
	PGWS_REFUSAL_TLS,			/* closed: TLS handshake failed or TLS
								 * unusable */
	PGWS_REFUSAL_OTHER,			/* another HTTP error */
	PGWS_NUM_REFUSALS
} PgWsRefusal;

typedef enum PgWsDrop
{
	PGWS_DROP_HANDSHAKE_TIMEOUT,	/* no complete request in time */
	PGWS_DROP_PING_TIMEOUT,		/* no answer to a ping */
	PGWS_DROP_LAGGING,			/* fell too far behind (1008) */
	PGWS_DROP_PROTOCOL_ERROR,	/* 1002 */
	PGWS_DROP_UNSUPPORTED_DATA, /* 1003: binary messages */
	PGWS_DROP_INVALID_DATA,		/* 1007: text that is not UTF-8 */
	PGWS_DROP_POLICY,			/* 1008: messages other than auth */
	PGWS_DROP_MESSAGE_TOO_BIG,	/* 1009 */
	PGWS_DROP_TOKEN_EXPIRED,	/* 4001 at the token's exp */
	PGWS_DROP_TOKEN_REJECTED,	/* 4001: an auth message's bad token */
	PGWS_DROP_AUTH_REQUIRED,	/* 4001: a reload made tokens required */
	PGWS_DROP_DISCONNECTED,		/* pg_ws_disconnect() */
	PGWS_NUM_DROPS
} PgWsDrop;

/*
 * Why the WAL reader passed over a record it might have taken for events
 * (walread.c), counted once per record.
 */
typedef enum PgWsIgnored
{
	PGWS_IGNORED_LOGICAL_MESSAGE,	/* a logical message with prefix
									 * "pg_ws": 1.2's, or forged */
	PGWS_IGNORED_MALFORMED,		/* a pg_ws record that does not parse */
	PGWS_IGNORED_OTHER_DATABASE,	/* events of another database than
									 * pg_ws.database (also from the queue) */
	PGWS_NUM_IGNORED
} PgWsIgnored;

extern const char *const pgws_refusal_names[PGWS_NUM_REFUSALS];
extern const char *const pgws_drop_names[PGWS_NUM_DROPS];
extern const char *const pgws_ignored_names[PGWS_NUM_IGNORED];

/*
 * The watched tables' filter columns by name, for the worker's check of a
 * ?filter= field (filtercols.c): a set in shared memory that the "pg_ws
 * catalog reader", a dynamic background worker, fills from pg_ws_watched.
 */
typedef enum PgWsFilterColumnAnswer
{
	PGWS_FILTER_COLUMN_KNOWN,	/* a filter column (or the set cannot tell) */
	PGWS_FILTER_COLUMN_UNKNOWN, /* not one, as of a read a moment ago */
	PGWS_FILTER_COLUMN_READING	/* being read: ask again in a second */
} PgWsFilterColumnAnswer;

extern void pgws_filter_columns_request_shmem(void);
extern void pgws_filter_columns_startup(void);
extern bool pgws_filter_columns_read(void);
extern PgWsFilterColumnAnswer pgws_filter_column_known(const char *field);
extern PGDLLEXPORT void pg_ws_filter_columns_main(Datum main_arg);

/*
 * Log lines others can cause, limited per topic (loglimit.c): a burst per
 * window, then one line saying how many were suppressed.
 */
typedef struct PgWsLogLimit
{
	TimestampTz window;			/* when the current window began */
	int			lines;			/* lines written in it */
	int			suppressed;		/* lines not written in it */
} PgWsLogLimit;

extern bool pgws_log_limit_allowed(PgWsLogLimit *limit, const char *about);
extern void pgws_log_limit_summary(PgWsLogLimit *limit, const char *about,
								   TimestampTz now);

/*
 * Shared statistics (stats.c), shown by pg_ws_stats() and /metrics.  The
 * worker keeps what only it knows in pgws_worker_stats and publishes a copy
 * with pgws_stats_publish_worker().  The counters are totals since shared
 * memory was set up: a new worker starts from what the last one published
 * (pgws_stats_restore_counters), and every worker publishes before it
 * exits, so they only ever grow.
 */
typedef struct PgWsWorkerStats
{
	/* figures of now, meaningless while no worker runs */
	int32		connections;	/* sockets peers hold, every state */
	int32		subscribers;	/* of them, /ws/ subscribers */
	int32		subscribers_indexed;	/* of them, in broadcast.c's filter
										 * index */
	uint64		memory_bytes;	/* what the worker's heap holds */
	TimestampTz started_at;		/* when the worker started */
	uint64		history_floor;	/* the log has every event after this */
	uint64		history_last;	/* position of the newest event (or the
								 * floor) */
	bool		history_in_wal; /* older positions are read from the WAL */
	TimestampTz parked_since;	/* the oldest parked entry's append time
								 * (queue.c), or 0 */
	uint64		parked_entries; /* entries parked out of the queue */
	TimestampTz blocked_since;	/* since when the next entry to send is in
								 * progress, holding up the rest; 0 if not */

	/* counters */
	uint64		connections_total;	/* sockets accepted and served */
	uint64		events_sent;	/* events sent to every subscriber then
								 * connected: freed from the queue */
	uint64		messages_sent;	/* messages written to subscribers */
	uint64		bytes_sent;		/* bytes of their frames */
	uint64		refusals[PGWS_NUM_REFUSALS];
	uint64		drops[PGWS_NUM_DROPS];
	uint64		ignored[PGWS_NUM_IGNORED];
	uint64		resumes_waited; /* resumes that waited for catch-up memory */
	uint64		resumes_refused;	/* upgrades refused: their address had
									 * pg_ws.max_wal_resumes_per_address
									 * resuming from the WAL */
	uint64		slot_invalidations; /* times the "pg_ws" slot was found
									 * invalidated, and dropped */
	uint64		messages_compressed;	/* messages compressed once for the
										 * subscribers with
										 * permessage-deflate */
} PgWsWorkerStats;

/* the worker's own live figures; no other process uses this */
extern PgWsWorkerStats pgws_worker_stats;

extern void pgws_stats_request_shmem(void);
extern void pgws_stats_startup(void);
extern void pgws_stats_publish_worker(const PgWsWorkerStats *worker);
extern void pgws_stats_restore_counters(PgWsWorkerStats *worker);

/* everything pg_ws_stats shows, as one consistent look (stats.c) */
typedef struct PgWsStatsSnapshot
{
	PgWsQueueStats queue;
	PgWsWorkerStats worker;		/* as last published */
	uint64		history_first;	/* the oldest position one can resume
								 * after */
	TimestampTz now;
} PgWsStatsSnapshot;

extern void pgws_stats_snapshot(PgWsStatsSnapshot *snap);

/*
 * pg_ws_connections() and pg_ws_disconnect() (connections.c): a backend
 * posts a request in a mailbox in shared memory and wakes the worker,
 * which answers from its loop (pgws_mailbox_serve).  A snapshot of the
 * connections travels in a DSM segment the backend makes, as rows
 * PgWsConnInfo, each followed by filter_len bytes of ?events= patterns and
 * row_filter_len bytes of ?filter=, and padded to MAXALIGN.
 */
typedef enum PgWsConnInfoState
{
	PGWS_CONN_INFO_HANDSHAKE,	/* its HTTP request is being read */
	PGWS_CONN_INFO_REFUSED,		/* over a limit, being answered 503 */
	PGWS_CONN_INFO_SUBSCRIBED,	/* a /ws/ subscriber */
	PGWS_CONN_INFO_WAITING,		/* a subscriber that waits to resume from
								 * the WAL (pg_ws.catchup_memory) */
	PGWS_CONN_INFO_CLOSING		/* answered, or its close frame sent */
} PgWsConnInfoState;

typedef struct PgWsConnInfo
{
	uint64		id;				/* unique while shared memory lives */
	int32		state;			/* PgWsConnInfoState */
	bool		tls;
	bool		filtered;		/* it asked for ?events= (not "*") */
	int32		peer_port;
	char		peer[64];		/* the address, as text */
	TimestampTz connected_since;
	char		subject[64];	/* the token's sub; "" when none */
	int64		token_expires;	/* Unix seconds; 0: no expiry */
	uint64		messages_sent;
	uint64		bytes_sent;
	uint64		bytes_pending;	/* of events it still has to be sent */
	uint32		filter_len;		/* bytes of patterns after this row */
	uint32		row_filter_len; /* bytes of ?filter= after them; 0: none */
} PgWsConnInfo;

extern void pgws_mailbox_request_shmem(void);
extern void pgws_mailbox_startup(void);
extern uint64 pgws_mailbox_next_conn_id(void);
extern void pgws_mailbox_serve(void);
extern void pgws_mailbox_worker_exit(void);

/* conn.c, in the worker: what the mailbox's requests need */
extern int	pgws_conn_snapshot(StringInfo out);
extern bool pgws_conn_disconnect_id(uint64 id);

/*
 * wss:// (tls.c), in the worker only.  The GUCs live in pg_ws.c.
 *
 * pgws_tls_configure() reads the settings and loads the files at start and
 * after each reload; pgws_tls_state() then says how new connections are
 * served.  PGWS_TLS_UNUSABLE: TLS is asked for but nothing usable is
 * loaded, so connections are refused, never served as plain ws://.
 * pgws_tls_setup_ctx() configures the TLS vhost's SSL_CTX; PGWS_TLS_ALPN is
 * the only ALPN protocol to offer (h2 would bypass our HTTP/1.1 framing).
 */
extern bool pgws_ssl;
extern char *pgws_ssl_cert_file;
extern char *pgws_ssl_key_file;
extern char *pgws_ssl_ca_file;

typedef enum PgWsTlsState
{
	PGWS_TLS_OFF,				/* serve plain ws:// */
	PGWS_TLS_READY,				/* serve wss:// */
	PGWS_TLS_UNUSABLE			/* TLS asked for, nothing to serve: refuse */
} PgWsTlsState;

#define PGWS_TLS_ALPN "http/1.1"

struct ssl_ctx_st;
extern PgWsTlsState pgws_tls_configure(void);
extern PgWsTlsState pgws_tls_state(void);
extern bool pgws_tls_setup_ctx(struct ssl_ctx_st *ctx);

/* Background worker and WebSocket server (worker.c) */
extern PGDLLEXPORT void pg_ws_worker_main(Datum main_arg);

#endif							/* PG_WS_H */
