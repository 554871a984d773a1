/*-------------------------------------------------------------------------
 *
 * loglimit.c
 *	  Rate limits for the worker's log lines that others can cause: peers
 *	  (refused requests, dropped connections) and whoever writes to the WAL
 *	  (records the WAL reader ignores).
 *
 * This file owns the limit itself: a burst of LOG_LIMIT_BURST lines per
 * LOG_LIMIT_WINDOW_MS for each topic, then one line saying how many more
 * were suppressed, so that a flood of one kind neither fills the log nor
 * hides the others.  It must not count anything for pg_ws_stats: callers
 * count every occurrence themselves, logged or not.
 *
 * src/loglimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include "utils/timestamp.h"

#define LOG_LIMIT_WINDOW_MS	10000
#define LOG_LIMIT_BURST		20

/*
 * The topic's window is over at now: say how many of its lines were
 * suppressed, if any.  True when it is.
 */
static bool
window_over(PgWsLogLimit *limit, const char *about, TimestampTz now)
{
	if (now - limit->window < (TimestampTz) LOG_LIMIT_WINDOW_MS * 1000)
		return false;
	if (limit->suppressed > 0)
		ereport(LOG,
				(errmsg("pg_ws suppressed %d log lines about %s in the last %d seconds",
						limit->suppressed, about, LOG_LIMIT_WINDOW_MS / 1000)));
	limit->suppressed = 0;
	return true;
}

/*
 * May a line of this topic be written now?  about names the topic's lines
 * in the summary of suppressed ones.
 */
bool
pgws_log_limit_allowed(PgWsLogLimit *limit, const char *about)
{
	TimestampTz now = GetCurrentTimestamp();

	if (window_over(limit, about, now))
	{
		limit->window = now;
		limit->lines = 0;
	}
	if (limit->lines >= LOG_LIMIT_BURST)
	{
		limit->suppressed++;
		return false;
	}
	limit->lines++;
	return true;
}

/*
 * The summary of a window that ended, written without waiting for the next
 * line of its topic (the window itself starts again at that line).
 */
void
pgws_log_limit_summary(PgWsLogLimit *limit, const char *about,
					   TimestampTz now)
{
	if (limit->suppressed > 0)
		(void) window_over(limit, about, now);
}
