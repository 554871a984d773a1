/*-------------------------------------------------------------------------
 *
 * pg_ws.c
 *	  Module entry point: _PG_init, the pg_ws.* configuration parameters,
 *	  the shared memory hooks and the registration of the worker.
 *
 * This file owns configuration and start-up.  It must not render, queue or
 * send events; it only wires the other files in (see pg_ws.h for the map).
 *
 * src/pg_ws.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"
#include "walread.h"
#include "jwt.h"

#include <limits.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

PG_MODULE_MAGIC;

/* GUC variables */
char	   *pgws_listen_addresses = NULL;
int			pgws_port = 8765;
char	   *pgws_database = NULL;
int			pgws_queue_size_kb = 8192;
int			pgws_queue_full_timeout_ms = 10000;
int			pgws_max_connections = 100;
int			pgws_max_subscriber_lag_kb = 16384;
int			pgws_reconnect_grace_ms = 0;	/* obsolete since 1.2, ignored */
int			pgws_history_size_kb = 8192;
int			pgws_catchup_memory_kb = 262144;
bool		pgws_wal = true;
char	   *pgws_history_retention = NULL;
int			pgws_event_loop = PGWS_EVENT_LOOP_POLL;
char	   *pgws_media_url = NULL;
int			pgws_max_connections_per_address = 0;
int			pgws_max_wal_resumes_per_address = 10;
int			pgws_ping_interval_s = 30;
bool		pgws_compression = false;
int			pgws_compression_min_size = 512;
int			pgws_handshake_timeout_s = 10;
int			pgws_max_header_size = 16384;
int			pgws_max_visit_histories = 1000;
int			pgws_console_mode = PGWS_CONSOLE_AUTO;
int			pgws_monitoring = PGWS_MONITORING_LOCAL;
int			pgws_health_max_replay_lag_ms = 30000;

/* GUC variables of wss:// (used by tls.c) */
bool		pgws_ssl = false;
char	   *pgws_ssl_cert_file = NULL;
char	   *pgws_ssl_key_file = NULL;
char	   *pgws_ssl_ca_file = NULL;

/* GUC variables of who may subscribe (auth.c, jwt.c) */
int			pgws_auth_mode = PGWS_AUTH_NONE;
bool		pgws_allow_anonymous = false;
char	   *pgws_jwt_secret = NULL;
char	   *pgws_jwt_secret_file = NULL;
char	   *pgws_jwt_public_key_file = NULL;
int			pgws_jwt_leeway_s = 30;
char	   *pgws_jwt_audience = NULL;
char	   *pgws_jwt_issuer = NULL;
char	   *pgws_jwt_cookie = NULL;
char	   *pgws_allowed_origins = NULL;

static const struct config_enum_entry event_loop_options[] = {
	{"poll", PGWS_EVENT_LOOP_POLL, false},
	{"libev", PGWS_EVENT_LOOP_LIBEV, false},
	{NULL, 0, false}
};

static const struct config_enum_entry monitoring_options[] = {
	{"off", PGWS_MONITORING_OFF, false},
	{"local", PGWS_MONITORING_LOCAL, false},
	{"on", PGWS_MONITORING_ON, false},
	{NULL, 0, false}
};

static const struct config_enum_entry auth_mode_options[] = {
	{"none", PGWS_AUTH_NONE, false},
	{"jwt", PGWS_AUTH_JWT, false},
	{NULL, 0, false}
};

/*
 * pg_ws.console: the issue asks for "on | off, default on only on
 * loopback".  A boolean cannot have a default that depends on where the
 * worker listens, so it is an enum with a third value, auto, the default:
 * the page is served while every address the worker listens on is a
 * loopback address.  on and off say what they say (off: GET / is a 404
 * like any other path), and the spellings PostgreSQL accepts for booleans
 * are accepted too, hidden, as for synchronous_commit.
 */
static const struct config_enum_entry console_mode_options[] = {
	{"auto", PGWS_CONSOLE_AUTO, false},
	{"on", PGWS_CONSOLE_ON, false},
	{"off", PGWS_CONSOLE_OFF, false},
	{"true", PGWS_CONSOLE_ON, true},
	{"false", PGWS_CONSOLE_OFF, true},
	{"yes", PGWS_CONSOLE_ON, true},
	{"no", PGWS_CONSOLE_OFF, true},
	{"1", PGWS_CONSOLE_ON, true},
	{"0", PGWS_CONSOLE_OFF, true},
	{NULL, 0, false}
};

bool		pgws_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* this backend's database name, looked up once */
static char *my_database_name = NULL;

void		_PG_init(void);

static void
pgws_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	pgws_queue_request_shmem();
	pgws_stats_request_shmem();
	pgws_mailbox_request_shmem();
	pgws_position_request_shmem();
	pgws_filter_columns_request_shmem();
}

static void
pgws_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	pgws_queue_startup();
	pgws_stats_startup();
	pgws_mailbox_startup();
	pgws_position_startup();
	pgws_filter_columns_startup();
}

/* pg_ws.listen_addresses: a comma-separated list of host names or addresses */
static bool
check_listen_addresses(char **newval, void **extra, GucSource source)
{
	char	   *rawstring = pstrdup(*newval);
	List	   *elemlist;
	bool		ok = SplitGUCList(rawstring, ',', &elemlist);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(elemlist);
	pfree(rawstring);
	return ok;
}

/* pg_ws.media_url is a prefix: like Django's MEDIA_URL it ends with a slash */
static bool
check_media_url(char **newval, void **extra, GucSource source)
{
	size_t		len = strlen(*newval);

	if (len > 0 && (*newval)[len - 1] != '/')
	{
		GUC_check_errdetail("pg_ws.media_url must be empty or end with a slash, as in '/media/' or 'https://example.com/media/'.");
		return false;
	}
	return true;
}

/*
 * pg_ws.jwt_secret: at least 32 bytes.  The message is our own because
 * PostgreSQL's default one, invalid value for parameter "..": "<value>",
 * would print the secret.
 */
static bool
check_jwt_secret(char **newval, void **extra, GucSource source)
{
	size_t		len = strlen(*newval);

	if (len > 0 && len < PGWS_JWT_MIN_SECRET_LEN)
	{
		GUC_check_errmsg("pg_ws.jwt_secret must be at least %d bytes long",
						 PGWS_JWT_MIN_SECRET_LEN);
		GUC_check_errhint("Generate one with \"openssl rand -base64 48\", and prefer pg_ws.jwt_secret_file, which keeps it out of the server log.");
		return false;
	}
	return true;
}

/* SHOW and pg_settings do not print the secret, even to superusers */
static const char *
show_jwt_secret(void)
{
	return (pgws_jwt_secret != NULL && pgws_jwt_secret[0] != '\0') ? "********" : "";
}

/*
 * pg_ws.allowed_origins: origins as browsers send them, scheme://host or
 * scheme://host:port, without a path or a trailing slash (one would never
 * match, refusing every browser without saying why).
 */
static bool
check_allowed_origins(char **newval, void **extra, GucSource source)
{
	char	   *rawstring = pstrdup(*newval);
	List	   *elemlist;
	ListCell   *lc;
	bool		ok = SplitGUCList(rawstring, ',', &elemlist);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	else
		foreach(lc, elemlist)
		{
			const char *origin = (const char *) lfirst(lc);
			const char *sep = strstr(origin, "://");
			const char *p;

			ok = sep != NULL && sep > origin && sep[3] != '\0';
			for (p = origin; ok && p < sep; p++)
				ok = isalnum((unsigned char) *p) || *p == '+' || *p == '-' || *p == '.';
			for (p = sep ? sep + 3 : origin; ok && *p; p++)
				ok = *p > ' ' && *p < 0x7f && *p != '/' && *p != '?' && *p != '#';
			if (!ok)
			{
				GUC_check_errdetail("\"%s\" is not an origin: write scheme://host or scheme://host:port, without a path or a trailing slash, as in https://app.example.com.",
									origin);
				break;
			}
		}
	list_free(elemlist);
	pfree(rawstring);
	return ok;
}

/* pg_ws.jwt_cookie: a cookie name is an RFC 6265 token */
static bool
check_jwt_cookie(char **newval, void **extra, GucSource source)
{
	const char *p;

	for (p = *newval; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p) != NULL)
		{
			GUC_check_errdetail("A cookie name is letters, digits and !#$%%&'*+-.^_`|~ only.");
			return false;
		}
	return true;
}

static void
define_gucs(void)
{
	DefineCustomStringVariable("pg_ws.listen_addresses",
							   "Addresses the pg_ws WebSocket server listens on.",
							   "A comma-separated list of host names or IP addresses; '*' means all.",
							   &pgws_listen_addresses,
							   "localhost",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_listen_addresses, NULL, NULL);
	DefineCustomIntVariable("pg_ws.port",
							"TCP port of the pg_ws WebSocket server.",
							NULL,
							&pgws_port,
							8765, 1, 65535,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.database",
							   "Database whose row changes pg_ws broadcasts.",
							   "Triggers in other databases queue nothing.",
							   &pgws_database,
							   "postgres",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.queue_full_timeout",
							"How long a committing transaction waits for room in a full pg_ws queue before it fails.",
							NULL,
							&pgws_queue_full_timeout_ms,
							10000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.health_max_replay_lag",
							"How far behind a standby may be before its /health answers 503.",
							"Replay behind the WAL received for this long, or no WAL received from an upstream for this long; 0 never takes a standby out for its lag.",
							&pgws_health_max_replay_lag_ms,
							30000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.max_connections",
							"Maximum number of connections the pg_ws server serves at once.",
							"Every socket a peer holds counts, requests in progress included; more get HTTP 503.",
							&pgws_max_connections,
							100, 1, PGWS_MAX_CONNECTIONS_LIMIT,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("pg_ws.console",
							 "Whether the pg_ws server serves its live console page on GET /.",
							 "auto serves it while every address pg_ws listens on is a loopback address; off answers GET / with 404.",
							 &pgws_console_mode,
							 PGWS_CONSOLE_AUTO, console_mode_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	/* the transport: limits and deadlines a peer cannot exceed */
	DefineCustomIntVariable("pg_ws.max_connections_per_address",
							"Maximum number of connections from one IP address.",
							"0 means no limit (many browsers may share one NAT address).",
							&pgws_max_connections_per_address,
							0, 0, PGWS_MAX_CONNECTIONS_LIMIT,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.max_wal_resumes_per_address",
							"Maximum number of connections from one IP address resuming from the WAL at once.",
							"Past it, a request whose ?since= lies before the worker's memory is answered 503 with Retry-After; 0 means no limit (raise it behind a proxy, whose clients share its address).",
							&pgws_max_wal_resumes_per_address,
							10, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.ping_interval",
							"How often a silent subscriber is pinged, and how long it has to answer.",
							"A subscriber that does not answer a ping within this time is dropped; 0 turns pings off.",
							&pgws_ping_interval_s,
							30, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("pg_ws.compression",
							 "Whether /ws/ subscribers that offer permessage-deflate get compressed messages.",
							 "Each message is compressed once for all of them (no context takeover). Off by default: it costs worker CPU, and a compressed length says something about the content (a message that carries both a secret and what another user wrote).",
							 &pgws_compression,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.compression_min_size",
							"Messages shorter than this are sent uncompressed to subscribers with compression.",
							NULL,
							&pgws_compression_min_size,
							512, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.handshake_timeout",
							"How long a new connection has to complete its TLS handshake and HTTP request.",
							NULL,
							&pgws_handshake_timeout_s,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.max_header_size",
							"Largest HTTP request head (request line and headers) pg_ws reads.",
							"Larger requests get HTTP 431.",
							&pgws_max_header_size,
							16384, 1024, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.max_subscriber_lag",
							"How far a subscriber that has stopped reading may fall behind before it is disconnected.",
							"Bytes of events not yet sent to it. A subscriber that holds up a committing transaction is disconnected sooner.",
							&pgws_max_subscriber_lag_kb,
							16384, 64, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	/*
	 * Kept so that configurations written for 1.0 and 1.1 still load:
	 * resuming with ?since= replaced it.
	 */
	DefineCustomIntVariable("pg_ws.reconnect_grace",
							"Obsolete since pg_ws 1.2 and ignored: subscribers resume with ?since=.",
							NULL,
							&pgws_reconnect_grace_ms,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.history_retention",
							   "How much WAL pg_ws keeps for subscribers that resume, as a time ('7d') or a size ('2GB').",
							   "Kept with the replication slot \"pg_ws\", which the worker creates, advances and drops; 0 keeps no slot.",
							   &pgws_history_retention,
							   "0",
							   PGC_SIGHUP, 0,
							   pgws_check_history_retention,
							   pgws_assign_history_retention, NULL);
	DefineCustomIntVariable("pg_ws.history_size",
							"Memory the worker keeps its most recent events in, for subscribers that resume with ?since=.",
							"Older positions are read back from the WAL.",
							&pgws_history_size_kb,
							8192, 0, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.catchup_memory",
							"Memory the subscribers that resume from the WAL may hold together.",
							"Each holds up to about twice pg_ws.queue_size; past this, a new resume waits for one to finish.",
							&pgws_catchup_memory_kb,
							262144, 1024, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.media_url",
							   "URL prefix for image paths in events, like Django's MEDIA_URL.",
							   NULL,
							   &pgws_media_url,
							   "/media/",
							   PGC_SUSET, 0,
							   check_media_url, NULL, NULL);

	/*
	 * GET /health and GET /metrics (metrics.c): operational figures only,
	 * but figures about an application's activity, so by default only for
	 * peers on this machine.
	 */
	DefineCustomEnumVariable("pg_ws.monitoring",
							 "Who may read /health and /metrics on the pg_ws port.",
							 "off: nobody (404); local: loopback peers only, others get 403; on: every peer that reaches the port.",
							 &pgws_monitoring,
							 PGWS_MONITORING_LOCAL, monitoring_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	/* the database side: what client events carry */
	DefineCustomIntVariable("pg_ws.max_visit_histories",
							"Maximum number of visits listed in a client event's visit_histories.",
							"The client's newest visits are listed, oldest first. 0 lists none and skips the lookup.",
							&pgws_max_visit_histories,
							1000, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	/*
	 * wss:// (tls.c).  All reloadable: a reload applies to new connections,
	 * and subscribers already connected keep theirs.  Relative paths are
	 * relative to the data directory, like PostgreSQL's own ssl_cert_file.
	 */
	DefineCustomBoolVariable("pg_ws.ssl",
							 "Serve wss:// with PostgreSQL's own ssl_cert_file and ssl_key_file.",
							 "pg_ws.ssl_cert_file and pg_ws.ssl_key_file, when set, turn on wss:// by themselves and take precedence.",
							 &pgws_ssl,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.ssl_cert_file",
							   "Certificate file (PEM) of the pg_ws wss:// listener.",
							   "Setting it and pg_ws.ssl_key_file turns on wss://. It may hold the chain after the server certificate, as certbot's fullchain.pem does.",
							   &pgws_ssl_cert_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.ssl_key_file",
							   "Private key file (PEM) of the pg_ws wss:// listener.",
							   "Like PostgreSQL's ssl_key_file: mode 0600 or less if owned by the database user, 0640 or less if owned by root.",
							   &pgws_ssl_key_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.ssl_ca_file",
							   "Intermediate certificates (PEM) sent after the pg_ws server certificate.",
							   "For a chain the certificate file does not hold.",
							   &pgws_ssl_ca_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	/*
	 * Who may subscribe (auth.c, jwt.c).  All reloadable: the worker
	 * re-reads the key files on SIGHUP.  The secret settings are superuser
	 * only, and pg_ws.jwt_secret is masked in SHOW and pg_settings.
	 */
	DefineCustomEnumVariable("pg_ws.auth",
							 "Whether /ws/ subscribers must present a token.",
							 "none lets everyone subscribe to every event; jwt requires a valid JSON Web Token.",
							 &pgws_auth_mode,
							 PGWS_AUTH_NONE, auth_mode_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("pg_ws.allow_anonymous",
							 "Lets pg_ws listen on addresses other than loopback with pg_ws.auth = none.",
							 "Without it, a non-loopback address in pg_ws.listen_addresses and no authentication keep pg_ws from listening at all: anyone who reaches the port would read every event.",
							 &pgws_allow_anonymous,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.jwt_secret",
							   "Secret that HS256 subscriber tokens are signed with.",
							   "At least 32 bytes. A reload that changes it logs the new value: prefer pg_ws.jwt_secret_file.",
							   &pgws_jwt_secret,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_jwt_secret, NULL, show_jwt_secret);
	DefineCustomStringVariable("pg_ws.jwt_secret_file",
							   "File holding the secret that HS256 subscriber tokens are signed with.",
							   "Trailing newlines are stripped; at least 32 bytes. Takes precedence over pg_ws.jwt_secret. The worker reads it at start and on reload.",
							   &pgws_jwt_secret_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.jwt_public_key_file",
							   "PEM file with the public key of RS256 (RSA) or ES256 (P-256) subscriber tokens.",
							   NULL,
							   &pgws_jwt_public_key_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pg_ws.jwt_leeway",
							"Clock skew allowed when checking the exp and nbf of subscriber tokens.",
							NULL,
							&pgws_jwt_leeway_s,
							30, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.jwt_audience",
							   "Audience (aud) that subscriber tokens must name.",
							   "Empty: tokens must carry no aud.",
							   &pgws_jwt_audience,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.jwt_issuer",
							   "Issuer (iss) that subscriber tokens must name.",
							   "Empty: iss is not checked.",
							   &pgws_jwt_issuer,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_ws.jwt_cookie",
							   "Name of the cookie that carries a subscriber's token.",
							   "Empty: cookies are not consulted.",
							   &pgws_jwt_cookie,
							   "",
							   PGC_SIGHUP, 0,
							   check_jwt_cookie, NULL, NULL);
	DefineCustomStringVariable("pg_ws.allowed_origins",
							   "Origins whose web pages may subscribe.",
							   "A comma-separated list such as https://app.example.com; empty: any. Requests without an Origin header are not affected.",
							   &pgws_allowed_origins,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_allowed_origins, NULL, NULL);

	/*
	 * Fixed when shared memory is set up: the ring's size, and what the
	 * positions in it are (switching between WAL positions and a counter
	 * changes the epoch, which only a restart may do).
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomBoolVariable("pg_ws.wal",
								 "Writes every transaction's events to the WAL before its commit record.",
								 "Positions (seq) are then WAL positions, valid across restarts and on every node; off keeps events in memory only.",
								 &pgws_wal,
								 true,
								 PGC_POSTMASTER, 0,
								 NULL, NULL, NULL);
		DefineCustomEnumVariable("pg_ws.event_loop",
								 "The worker's event loop: poll, or libev (epoll).",
								 "poll looks at every connection on every wake-up; libev's epoll only at those with something to do.",
								 &pgws_event_loop,
								 PGWS_EVENT_LOOP_POLL, event_loop_options,
								 PGC_POSTMASTER, 0,
								 NULL, NULL, NULL);
		DefineCustomIntVariable("pg_ws.queue_size",
								"Size of the shared memory queue of committed events not yet sent.",
								NULL,
								&pgws_queue_size_kb,
								8192, 64, 1024 * 1024,
								PGC_POSTMASTER, GUC_UNIT_KB,
								NULL, NULL, NULL);
	}

	MarkGUCPrefixReserved("pg_ws");
}

static void
register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;	/* hot standbys too */
	/* restarted a second after any exit: it holds no state of its own */
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_ws");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_ws_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_ws websocket server");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_ws");
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	define_gucs();

	if (!process_shared_preload_libraries_in_progress)
		return;
	pgws_preloaded = true;

	/* before recovery can meet a pg_ws record: see walrecord.c */
	pgws_wal_register_rmgr();
	pgws_register_xact_callbacks();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pgws_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pgws_shmem_startup;

	register_worker();
}

void
pgws_require_preload(void)
{
	if (!pgws_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_ws must be loaded via shared_preload_libraries"),
				 errhint("Add pg_ws to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* is this the database named by pg_ws.database? */
bool
pgws_is_broadcast_database(void)
{
	if (my_database_name == NULL)
	{
		char	   *name = get_database_name(MyDatabaseId);

		my_database_name = MemoryContextStrdup(TopMemoryContext, name);
		pfree(name);
	}
	return strcmp(my_database_name, pgws_database) == 0;
}

/*
 * pg_ws_check_install() returns void
 *
 * Run by CREATE EXTENSION: refuse to install where nothing could be
 * broadcast, and warn when this database is not the one pg_ws.database
 * names.
 */
PG_FUNCTION_INFO_V1(pg_ws_check_install);

Datum
pg_ws_check_install(PG_FUNCTION_ARGS)
{
	pgws_require_preload();
	if (!pgws_is_broadcast_database())
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("pg_ws will not broadcast the events of database \"%s\"",
						my_database_name),
				 errdetail("pg_ws.database is \"%s\".", pgws_database),
				 errhint("Set pg_ws.database = '%s' in postgresql.conf and reload the configuration.",
						 my_database_name)));
	PG_RETURN_VOID();
}
