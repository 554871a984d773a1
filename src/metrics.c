/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  GET /health and GET /metrics on the worker's port: whether pg_ws
 *	  serves, for load balancers, and its figures in the Prometheus text
 *	  format, for scrapers.
 *
 * This file owns what those two answers say.  It must not parse requests
 * or write or keep connections (http.c routes here and writes the
 * PgWsAnswer this file fills in), nor keep figures of its own: it shows
 * pg_ws_stats' (stats.c), published fresh by the worker just before, so
 * that a scrape and the SQL view agree.
 *
 * /health answers 200 with a small JSON object while the worker serves and
 * the queue drains, and 503 with the reason otherwise:
 *	- pg_ws.database names no database, so no event can ever be queued
 *	  (the worker serves again once it exists and the configuration is
 *	  reloaded);
 *	- committing transactions wait for room in the queue: it does not
 *	  drain as fast as it fills;
 *	- on a standby, replay lags more than pg_ws.health_max_replay_lag
 *	  behind the WAL received, or no WAL has been received from an
 *	  upstream for that long (its primary is gone: what it serves is
 *	  getting stale), so that a balancer takes it out.
 * The worker itself not running needs no answer: nothing listens then.
 * /health/primary and /health/standby answer the same, and 503 on a node
 * of the other role, for a balancer that must reach one role only.
 *
 * Who may read them is pg_ws.monitoring: off (404, as for any other path),
 * local (loopback peers asking for a loopback Host; 403 for others) or on.
 * Under the anonymous default (auth.c) a Host that is not loopback is
 * refused before it gets here, whatever pg_ws.monitoring says.  They show operational
 * figures only, never rows, tokens or subjects; but how many people are
 * connected and how many events flow is the application's business, so
 * the default is local.
 *
 * src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "replication/walreceiver.h"
#include "storage/spin.h"
#include "utils/json.h"

/* an answer of status with body; figures are never cached */
static void
answer(PgWsAnswer *a, int status, const char *content_type, StringInfo body)
{
	a->status = status;
	a->content_type = content_type;
	a->headers = "Cache-Control: no-store\r\n";
	a->body = body->data;
	a->body_len = body->len;
	a->head_only = false;
}

/* how far behind a standby is, as /health reports it */
typedef struct ReplayLag
{
	bool		standby;		/* in recovery; nothing below is set if not */
	bool		receiving;		/* a WAL receiver streams from an upstream */
	uint64		bytes;			/* WAL received, not replayed yet */
	double		seconds;		/* how long replay has been behind that */
	double		not_receiving;	/* seconds without an upstream */
} ReplayLag;

/*
 * How long replay has been behind, in this worker's memory.  PostgreSQL
 * keeps no shared record of when each piece of WAL arrived on a standby
 * (pg_stat_replication's replay_lag is the primary's bookkeeping), and the
 * time since the last replayed commit measures how idle the primary was as
 * much as how late the standby is.  So each look (a balancer's check) notes
 * where the WAL receiver stands and when it was seen there, and the lag is
 * the age of the oldest note replay has not passed: exact to the interval
 * between looks, and only this machine's clock is read.  When the notes
 * are full the newest moves forward, so the oldest ones stay exact.
 */
#define LAG_NOTES 64

typedef struct LagNote
{
	XLogRecPtr	lsn;			/* received up to here ... */
	TimestampTz at;				/* ... when first seen */
} LagNote;

static LagNote lag_notes[LAG_NOTES];
static int	lag_first = 0;
static int	lag_count = 0;
static TimestampTz not_receiving_since = 0;

static void
replay_lag(ReplayLag *lag, TimestampTz now)
{
	XLogRecPtr	replayed;
	XLogRecPtr	received;
	WalRcvState state;

	memset(lag, 0, sizeof(*lag));
	lag->standby = RecoveryInProgress();
	if (!lag->standby)
	{
		lag_count = 0;
		not_receiving_since = 0;
		return;
	}
	replayed = GetXLogReplayRecPtr(NULL);
	received = GetWalRcvFlushRecPtr(NULL, NULL);
	SpinLockAcquire(&WalRcv->mutex);
	state = WalRcv->walRcvState;
	SpinLockRelease(&WalRcv->mutex);

	while (lag_count > 0 && lag_notes[lag_first].lsn <= replayed)
	{
		lag_first = (lag_first + 1) % LAG_NOTES;
		lag_count--;
	}
	if (received > replayed)
	{
		LagNote    *newest = lag_count > 0 ?
			&lag_notes[(lag_first + lag_count - 1) % LAG_NOTES] : NULL;

		if (newest == NULL || received > newest->lsn)
		{
			if (lag_count == LAG_NOTES)
				newest->lsn = received;
			else
			{
				newest = &lag_notes[(lag_first + lag_count) % LAG_NOTES];
				newest->lsn = received;
				newest->at = now;
				lag_count++;
			}
		}
		lag->bytes = received - replayed;
		lag->seconds = (double) Max(now - lag_notes[lag_first].at, 0) / USECS_PER_SEC;
	}

	/*
	 * A receiver that is starting, waiting or restarting has no upstream:
	 * the primary is gone, or this standby cannot reach it.  Replay has
	 * then caught up with all it has, so the lag above says nothing.
	 */
	lag->receiving = (state == WALRCV_STREAMING);
	if (lag->receiving)
		not_receiving_since = 0;
	else
	{
		if (not_receiving_since == 0)
			not_receiving_since = now;
		lag->not_receiving = (double) (now - not_receiving_since) / USECS_PER_SEC;
	}
}

/* why pg_ws does not serve now, or NULL */
static char *
unavailable_reason(const PgWsStatsSnapshot *snap, const ReplayLag *lag,
				   const char *role_wanted)
{
	double		max_lag = (double) pgws_health_max_replay_lag_ms / 1000.0;
	char	   *diverged;

	if (role_wanted != NULL &&
		strcmp(role_wanted, lag->standby ? "standby" : "primary") != 0)
		return psprintf("this node is %s", lag->standby ? "a standby" : "the primary");
	if (lag->standby && (diverged = pgws_timeline_diverged()) != NULL)
		return diverged;

	/*
	 * Promoted, and this worker still follows replay: it ends within
	 * milliseconds and the next one serves the primary.  A balancer that
	 * routed subscribers here now would see them dropped.
	 */
	if (!lag->standby && pgws_broadcast_following())
		return pstrdup("this server was promoted a moment ago: pg_ws restarts to serve it as the primary");
	if (!OidIsValid(pgws_broadcast_database()))
		return psprintf("pg_ws.database \"%s\" does not exist", pgws_database);
	if (snap->queue.writers_waiting > 0)
		return psprintf("committing transactions are waiting for room in the queue (%u)",
						snap->queue.writers_waiting);
	if (snap->worker.blocked_since != 0 &&
		snap->now - snap->worker.blocked_since >
		(TimestampTz) pgws_queue_full_timeout_ms * 1000)
		return psprintf("events have waited %.0f s behind a transaction that is still committing (for a synchronous standby?)",
						(double) (snap->now - snap->worker.blocked_since) / USECS_PER_SEC);
	if (lag->standby && pgws_health_max_replay_lag_ms > 0)
	{
		if (lag->seconds > max_lag)
			return psprintf("replay is %.1f s behind the WAL received (" UINT64_FORMAT " bytes; pg_ws.health_max_replay_lag is %.1f s)",
							lag->seconds, lag->bytes, max_lag);
		if (!lag->receiving && lag->not_receiving > max_lag)
			return psprintf("no WAL received from an upstream for %.1f s (pg_ws.health_max_replay_lag is %.1f s)",
							lag->not_receiving, max_lag);
	}
	return NULL;
}

/* /health, or /health/primary and /health/standby: role_wanted */
static void
health(PgWsAnswer *a, const char *role_wanted)
{
	PgWsStatsSnapshot snap;
	ReplayLag	lag;
	StringInfoData body;
	char	   *reason;

	pgws_worker_publish_stats();
	pgws_stats_snapshot(&snap);
	replay_lag(&lag, snap.now);
	reason = unavailable_reason(&snap, &lag, role_wanted);

	initStringInfo(&body);
	appendStringInfo(&body, "{\"status\": \"%s\"", reason ? "unavailable" : "ok");
	if (reason)
	{
		appendStringInfoString(&body, ", \"reason\": ");
		escape_json(&body, reason);
	}
	appendStringInfo(&body,
					 ", \"role\": \"%s\", \"connections\": %d, \"subscribers\": %d"
					 ", \"queue_bytes_used\": " UINT64_FORMAT
					 ", \"queue_bytes_capacity\": " UINT64_FORMAT
					 ", \"writers_waiting\": %u",
					 lag.standby ? "standby" : "primary",
					 snap.worker.connections, snap.worker.subscribers,
					 snap.queue.bytes_used, snap.queue.bytes_capacity,
					 snap.queue.writers_waiting);
	if (lag.standby)
		appendStringInfo(&body,
						 ", \"receiving\": %s, \"replay_lag_bytes\": " UINT64_FORMAT
						 ", \"replay_lag_seconds\": %.3f",
						 lag.receiving ? "true" : "false", lag.bytes, lag.seconds);
	appendStringInfoString(&body, "}\n");
	answer(a, reason ? 503 : 200, "application/json", &body);
}

/* one metric without labels: HELP, TYPE and its sample */
static void
metric(StringInfo out, const char *name, const char *type, const char *help,
	   const char *value)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n%s %s\n",
					 name, help, name, type, name, value);
}

static void
metric_u64(StringInfo out, const char *name, const char *type, const char *help,
		   uint64 value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), UINT64_FORMAT, value);
	metric(out, name, type, help, buf);
}

/* a counter with a reason label, every reason listed (zeros too) */
static void
metric_reasons(StringInfo out, const char *name, const char *help,
			   const char *const *names, const uint64 *counts, int n)
{
	int			i;

	appendStringInfo(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (i = 0; i < n; i++)
		appendStringInfo(out, "%s{reason=\"%s\"} " UINT64_FORMAT "\n",
						 name, names[i], counts[i]);
}

/*
 * The Prometheus text exposition format, version 0.0.4: the figures of
 * pg_ws_stats, counters with _total, reasons as labels.
 */
static void
metrics(PgWsAnswer *a)
{
	PgWsStatsSnapshot snap;
	PgWsWorkerStats *w = &snap.worker;
	ReplayLag	lag;
	StringInfoData out;
	char		buf[64];

	pgws_worker_publish_stats();
	pgws_stats_snapshot(&snap);
	initStringInfo(&out);

	snprintf(buf, sizeof(buf), "%.6f",
			 (double) timestamptz_to_time_t(w->started_at) +
			 (double) (w->started_at % USECS_PER_SEC) / USECS_PER_SEC);
	metric(&out, "pg_ws_worker_start_time_seconds", "gauge",
		   "When the pg_ws worker started, in seconds since the Unix epoch.", buf);
	metric_u64(&out, "pg_ws_worker_memory_bytes", "gauge",
			   "Bytes the pg_ws worker's heap holds.", w->memory_bytes);
	metric_u64(&out, "pg_ws_connections", "gauge",
			   "Sockets peers hold now, in every state.", (uint64) w->connections);
	metric_u64(&out, "pg_ws_subscribers", "gauge",
			   "Of them, /ws/ subscribers.", (uint64) w->subscribers);
	metric_u64(&out, "pg_ws_subscribers_indexed", "gauge",
			   "Of them, those waiting in the ?filter= index: an event costs nothing for those it is not for.",
			   (uint64) w->subscribers_indexed);
	metric_u64(&out, "pg_ws_connections_accepted_total", "counter",
			   "Sockets accepted and served.", w->connections_total);
	metric_u64(&out, "pg_ws_queue_used_bytes", "gauge",
			   "Bytes of the queue holding events not yet sent to every subscriber.",
			   snap.queue.bytes_used);
	metric_u64(&out, "pg_ws_queue_capacity_bytes", "gauge",
			   "Size of the queue (pg_ws.queue_size).", snap.queue.bytes_capacity);
	metric_u64(&out, "pg_ws_queue_writers_waiting", "gauge",
			   "Committing transactions waiting for room in the queue.",
			   (uint64) snap.queue.writers_waiting);
	snprintf(buf, sizeof(buf), "%.6f", snap.queue.oldest_queued_at == 0 ? 0.0 :
			 (double) Max(snap.now - snap.queue.oldest_queued_at, 0) / USECS_PER_SEC);
	metric(&out, "pg_ws_queue_oldest_unsent_age_seconds", "gauge",
		   "How long the oldest entry still in the queue has waited; 0 when none.", buf);
	metric_u64(&out, "pg_ws_events_queued_total", "counter",
			   "Events of committed transactions put in the queue.",
			   snap.queue.events_queued);
	metric_u64(&out, "pg_ws_events_sent_total", "counter",
			   "Events sent to every subscriber connected at the time.", w->events_sent);
	metric_u64(&out, "pg_ws_messages_sent_total", "counter",
			   "Messages written to subscribers (one per event per subscriber).",
			   w->messages_sent);
	metric_u64(&out, "pg_ws_sent_bytes_total", "counter",
			   "Bytes of the WebSocket frames of those messages.", w->bytes_sent);
	metric_reasons(&out, "pg_ws_refusals_total",
				   "Connections refused before they subscribed, by reason.",
				   pgws_refusal_names, w->refusals, PGWS_NUM_REFUSALS);
	metric_reasons(&out, "pg_ws_drops_total",
				   "Connections pg_ws ended, by reason.",
				   pgws_drop_names, w->drops, PGWS_NUM_DROPS);
	metric_reasons(&out, "pg_ws_ignored_total",
				   "Records that looked like events but were not sent, by reason.",
				   pgws_ignored_names, w->ignored, PGWS_NUM_IGNORED);
	metric_u64(&out, "pg_ws_resumes_waited_total", "counter",
			   "Subscribers that waited for catch-up memory before resuming from the WAL.",
			   w->resumes_waited);
	metric_u64(&out, "pg_ws_resumes_refused_total", "counter",
			   "Upgrades refused (503) because their address had pg_ws.max_wal_resumes_per_address connections resuming from the WAL.",
			   w->resumes_refused);
	metric_u64(&out, "pg_ws_history_slot_invalidations_total", "counter",
			   "Times the replication slot \"pg_ws\" was found invalidated (its WAL removed, or idle too long) and recreated.",
			   w->slot_invalidations);
	metric_u64(&out, "pg_ws_messages_compressed_total", "counter",
			   "Messages compressed for subscribers with permessage-deflate: once each, for all of them (pg_ws.compression).",
			   w->messages_compressed);
	metric_u64(&out, "pg_ws_history_first_position", "gauge",
			   "The oldest position (seq) a subscriber can resume after.",
			   snap.history_first);
	metric_u64(&out, "pg_ws_history_last_position", "gauge",
			   "The position (seq) of the newest event.", w->history_last);

	/* a standby's replay, as /health judges it (a scrape takes a note too) */
	replay_lag(&lag, snap.now);
	if (lag.standby)
	{
		metric_u64(&out, "pg_ws_standby_receiving", "gauge",
				   "1 while this standby streams WAL from an upstream.",
				   lag.receiving ? 1 : 0);
		metric_u64(&out, "pg_ws_standby_replay_lag_bytes", "gauge",
				   "WAL this standby has received but not replayed yet.", lag.bytes);
		snprintf(buf, sizeof(buf), "%.3f", lag.seconds);
		metric(&out, "pg_ws_standby_replay_lag_seconds", "gauge",
			   "How long replay has been behind the WAL received, as seen at /health checks and scrapes; 0 when it is not.",
			   buf);
	}
	answer(a, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
}

bool
pgws_metrics_path(const char *path)
{
	if (strcmp(path, "/health") != 0 && strcmp(path, "/metrics") != 0 &&
		strcmp(path, "/health/primary") != 0 &&
		strcmp(path, "/health/standby") != 0)
		return false;
	/* off: not found, like any other path */
	return pgws_monitoring != PGWS_MONITORING_OFF;
}

void
pgws_metrics_answer(const PgWsPeerKey *peer, const char *path,
					const PgWsAuthRequest *areq, PgWsAnswer *a)
{
	/*
	 * local: this machine's peers, asking for a loopback name.  A browser on
	 * this machine is a loopback peer too, and a page of another site can
	 * make it ask for its own name resolved to 127.0.0.1 (DNS rebinding):
	 * the Host tells those apart.
	 */
	if (pgws_monitoring == PGWS_MONITORING_LOCAL &&
		(!pgws_peer_is_loopback(peer) || !pgws_auth_local_host(areq)))
	{
		memset(a, 0, sizeof(*a));
		a->status = 403;
		a->body = "forbidden: /health and /metrics are served to loopback peers asking for a loopback host name only (pg_ws.monitoring = local)";
		return;
	}
	if (strcmp(path, "/health") == 0)
		health(a, NULL);
	else if (strcmp(path, "/health/primary") == 0)
		health(a, "primary");
	else if (strcmp(path, "/health/standby") == 0)
		health(a, "standby");
	else
		metrics(a);
}
