/*
 * ws_sub.c - benchmark subscriber for pg_ws.
 *
 * Opens N WebSocket connections to ws://HOST:PORT/ws/ (wss:// with --tls,
 * accepting a self-signed certificate for any host name; from one
 * libwebsockets service loop, or from P processes with --procs), parses
 * every message with json-c (each must be an object with a string "event"
 * and an object "data"), and reports
 *
 *   - how many messages arrived, and the rate across all subscribers
 *     (first to last message received by any subscriber);
 *   - commit-to-receive latency: the writer puts its CLOCK_REALTIME time
 *     in microseconds since the epoch, as a decimal string, in a column of
 *     the row (visit_history.device_id or employee.first_name; see
 *     --field), e.g. with
 *         (extract(epoch from clock_timestamp()) * 1000000)::bigint::text
 *     and ws_sub records receive_time - stamp for every message that
 *     carries one.  Both ends read the same clock on the same host.
 *     Besides the distribution over all deliveries it reports, per event,
 *     the latency of the first subscriber to get it ("first") and how much
 *     later the last one got it ("spread"), which separates waking the
 *     server from fanning out.
 *
 * Every pg_ws 1.2 message also carries "seq" (its position) and "epoch":
 * ws_sub reports the first and last seq it saw, the epoch, and how often a
 * subscriber saw a seq that did not increase.  --since SEQ --epoch E
 * resume from a position (?since=SEQ&epoch=E); a "resync_required" notice
 * is counted apart from the events, and "done_s" (from start, connecting
 * included, to the moment the last subscriber finished) times a replay.
 *
 * It stops when every subscriber has got --expect messages, or has seen the
 * --end marker (a message whose stamp field equals the marker; it is not
 * counted), or when --timeout expires, or on SIGINT/SIGTERM.  The last line
 * of stdout is one line of key=value pairs, for scripts.
 *
 * Many connections: ws_sub raises its soft limit on open files to what
 * they need (up to the hard limit; raise that with ulimit -n or prlimit),
 * --max-pending N keeps at most N connections per process in their TCP and
 * WebSocket handshakes at once (0, the default: all at once), and the time until all
 * were connected is reported as connect_s (and written to --ready-file).
 * --lean skips json-c: a message is checked only for its "event" and
 * "data" keys, and the stamp, seq and epoch are found by string search
 * (cheaper, for fan-out to thousands of subscribers from one core).
 *
 * Exit status: 0 every subscriber finished and every message was valid;
 * 2 timeout, a subscriber closed/failed early, or invalid messages;
 * 1 usage or set-up error.
 *
 * Build: make -C bench   (libwebsockets 4.1, json-c 0.16)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#include <json-c/json.h>
#include <libwebsockets.h>


typedef struct Sub
{
	int			index;
	struct lws *wsi;
	int			connected;		/* handshake done */
	int			closed;			/* connection ended (or never came up) */
	int			finished;		/* got what it waited for */
	uint64_t	count;			/* valid messages */
	uint64_t	last_seq;		/* position of its last message */
	char	   *buf;			/* a message being reassembled */
	size_t		len;
	size_t		cap;
} Sub;

/* what one process measured; children send it to the parent */
typedef struct Totals
{
	int32_t		subs;
	int32_t		connected;
	int32_t		errors;
	int32_t		finished;
	int32_t		timed_out;
	int32_t		pad;
	uint64_t	msgs;
	uint64_t	bad;
	uint64_t	nostamp;
	uint64_t	bytes;
	uint64_t	min_count;
	uint64_t	max_count;
	int64_t		first_rx;
	int64_t		last_rx;
	int64_t		all_connected;
	int64_t		done_us;		/* when the last subscriber finished */
	uint64_t	first_seq;		/* lowest seq of a first message */
	uint64_t	last_seq;		/* highest seq seen */
	uint64_t	seq_backwards;	/* messages whose seq did not increase */
	uint64_t	resync;			/* resync_required notices */
	char		epoch[48];		/* of the first message with one */
	uint64_t	nsamples;
} Totals;

/* options */

/* this process's share of the subscribers */
static Sub *subs;
static int	nsubs;
static int	next_connect = 0;	/* the next subscriber to start connecting */
static int	pending = 0;		/* connections started, not yet up or failed */
static int	first_index = 0;
static char hostport[300];
static struct lws_context *context;
static lws_sorted_usec_list_t tick_sul;
static json_tokener *tokener;

static volatile sig_atomic_t stop_signal = 0;
static int	stop = 0;
static int64_t start_us = 0;
static Totals tot;

static Sample *samples;
static size_t nsamples = 0;
static size_t capsamples = 0;

/* parent with --procs */

static void
add_sample(int64_t stamp, int64_t lat, int sub)
{
	if (nsamples == capsamples)
	{
		capsamples = capsamples ? capsamples * 2 : 65536;
		samples = xrealloc(samples, capsamples * sizeof(*samples));
	}
	samples[nsamples].stamp = stamp;
	samples[nsamples].lat = lat;
	samples[nsamples].sub = sub;
	samples[nsamples].pad = 0;
	nsamples++;
}

/* stop once every subscriber has finished or is gone */
static void
check_done(void)
{
	int			i;

	for (i = 0; i < nsubs; i++)
		if (!subs[i].finished && !subs[i].closed)
			return;
	stop = 1;
	if (tot.done_us == 0)
		tot.done_us = now_realtime_us();
}

static void
sub_finished(Sub *s)
{
	if (!s->finished)
	{
		s->finished = 1;
		tot.finished++;
		check_done();
	}
}

/* a decimal string (or JSON integer) of microseconds, or -1 */
static int64_t
parse_stamp(json_object *v)
{
	const char *str;
	char	   *end;
	long long	n;

	if (v == NULL)
		return -1;
	if (json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	if (!json_object_is_type(v, json_type_string))
		return -1;
	str = json_object_get_string(v);
	if (*str < '0' || *str > '9')
		return -1;
	errno = 0;
	n = strtoll(str, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	return n;
}

static json_object *
stamp_field(json_object *data)
{
	json_object *v = NULL;

	if (opt_field)
	{
		json_object_object_get_ex(data, opt_field, &v);
		return v;
	}
	if (json_object_object_get_ex(data, "device_id", &v))
		return v;
	if (json_object_object_get_ex(data, "first_name", &v))
		return v;
	return NULL;
}

/*
 * A message a subscriber received (either parser): count it, take its
 * commit-to-receive latency when it carries a stamp (stamp > 0), and
 * finish the subscriber at -e messages.
 */
static void
count_message(Sub *s, size_t len, int64_t rx_us, int64_t stamp)
{
	if (tot.first_rx == 0)
		tot.first_rx = rx_us;
	tot.last_rx = rx_us;
	tot.msgs++;
	tot.bytes += len;
	s->count++;

	if (stamp > 0)
		add_sample(stamp, rx_us - stamp, s->index);
	else
		tot.nostamp++;

	if (opt_expect && s->count >= opt_expect)
		sub_finished(s);
}

/*
 * The value after "KEY": (and any blanks) in a JSON text (no json-c: no
 * key of ours appears inside a value before the real one).
 * Returns a pointer to the value, or NULL.
 */
static const char *
lean_find(const char *msg, size_t len, const char *key)
{
	char		pat[80];
	size_t		n;
	const char *p;

	n = (size_t) snprintf(pat, sizeof(pat), "\"%s\":", key);
	if (n >= sizeof(pat))
		return NULL;
	p = memmem(msg, len, pat, n);
	if (p == NULL)
		return NULL;
	p += n;
	while (p < msg + len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p < msg + len ? p : NULL;
}

/* digits of a JSON integer or of a decimal string, at p; -1 if neither */
static int64_t
lean_number(const char *p, const char *end)
{
	int64_t		n = 0;
	int			digits = 0;

	if (p == NULL)
		return -1;
	if (p < end && *p == '"')
		p++;
	while (p < end && *p >= '0' && *p <= '9' && digits < 19)
	{
		n = n * 10 + (*p++ - '0');
		digits++;
	}
	if (digits == 0 || (p < end && *p != '"' && *p != ',' && *p != '}'))
		return -1;
	return n;
}

/* --lean: one complete message, without json-c */
static void
handle_message_lean(Sub *s, const char *msg, size_t len, int64_t rx_us)
{
	const char *end = msg + len;
	const char *event;
	const char *sf = NULL;
	const char *v;
	int64_t		stamp;
	int64_t		seq;

	event = lean_find(msg, len, "event");
	if (len < 2 || msg[0] != '{' || event == NULL || *event != '"' ||
		(v = lean_find(msg, len, "data")) == NULL || *v != '{')
	{
		if (tot.bad++ < 5)
			fprintf(stderr, "ws_sub: subscriber %d: not a pg_ws event: %.*s\n",
					s->index, (int) (len > 200 ? 200 : len), msg);
		return;
	}
	seq = lean_number(lean_find(msg, len, "seq"), end);
	if (seq > 0)
	{
		if (s->last_seq != 0 && (uint64_t) seq <= s->last_seq)
			tot.seq_backwards++;
		if (s->last_seq == 0 && (tot.first_seq == 0 || (uint64_t) seq < tot.first_seq))
			tot.first_seq = seq;
		s->last_seq = seq;
		if ((uint64_t) seq > tot.last_seq)
			tot.last_seq = seq;
	}
	if (tot.epoch[0] == '\0' && (v = lean_find(msg, len, "epoch")) != NULL && *v == '"')
	{
		const char *q = memchr(v + 1, '"', end - v - 1);

		if (q && q - v - 1 < (ptrdiff_t) sizeof(tot.epoch))
		{
			memcpy(tot.epoch, v + 1, q - v - 1);
			tot.epoch[q - v - 1] = '\0';
		}
	}
	if (strncmp(event, "\"resync_required\"", 17) == 0)
	{
		tot.resync++;
		return;
	}

	if (opt_field)
		sf = lean_find(msg, len, opt_field);
	else if ((sf = lean_find(msg, len, "device_id")) == NULL)
		sf = lean_find(msg, len, "first_name");
	if (opt_end && sf && *sf == '"')
	{
		size_t		n = strlen(opt_end);

		if (sf + 1 + n < end && memcmp(sf + 1, opt_end, n) == 0 && sf[1 + n] == '"')
		{
			sub_finished(s);
			return;
		}
	}

	stamp = (sf && *sf == '"' && sf[1] >= '0' && sf[1] <= '9') ? lean_number(sf, end) :
		(sf && *sf >= '0' && *sf <= '9') ? lean_number(sf, end) : -1;
	count_message(s, len, rx_us, stamp);
}

/* one complete message */
static void
handle_message(Sub *s, const char *msg, size_t len, int64_t rx_us)
{
	json_object *obj;
	json_object *event;
	json_object *data;
	json_object *sf;
	json_object *v;
	int64_t		stamp;

	if (opt_lean)
	{
		handle_message_lean(s, msg, len, rx_us);
		return;
	}
	json_tokener_reset(tokener);
	obj = json_tokener_parse_ex(tokener, msg, (int) len);
	if (obj == NULL || json_tokener_get_error(tokener) != json_tokener_success ||
		!json_object_is_type(obj, json_type_object) ||
		!json_object_object_get_ex(obj, "event", &event) ||
		!json_object_is_type(event, json_type_string) ||
		!json_object_object_get_ex(obj, "data", &data) ||
		!json_object_is_type(data, json_type_object))
	{
		if (tot.bad++ < 5)
			fprintf(stderr, "ws_sub: subscriber %d: not a pg_ws event: %.*s\n",
					s->index, (int) (len > 200 ? 200 : len), msg);
		if (obj)
			json_object_put(obj);
		return;
	}

	if (json_object_object_get_ex(obj, "seq", &v) &&
		json_object_is_type(v, json_type_int))
	{
		uint64_t	seq = json_object_get_uint64(v);

		if (s->last_seq != 0 && seq <= s->last_seq)
			tot.seq_backwards++;
		if (s->last_seq == 0 && (tot.first_seq == 0 || seq < tot.first_seq))
			tot.first_seq = seq;
		s->last_seq = seq;
		if (seq > tot.last_seq)
			tot.last_seq = seq;
	}
	if (tot.epoch[0] == '\0' && json_object_object_get_ex(obj, "epoch", &v) &&
		json_object_is_type(v, json_type_string))
		snprintf(tot.epoch, sizeof(tot.epoch), "%s", json_object_get_string(v));
	if (strcmp(json_object_get_string(event), "resync_required") == 0)
	{
		tot.resync++;
		json_object_put(obj);
		return;
	}

	sf = stamp_field(data);
	if (opt_end && sf && json_object_is_type(sf, json_type_string) &&
		strcmp(json_object_get_string(sf), opt_end) == 0)
	{
		json_object_put(obj);
		sub_finished(s);
		return;
	}

	stamp = parse_stamp(sf);
	json_object_put(obj);
	count_message(s, len, rx_us, stamp);
}

static void
all_connected(void)
{
	FILE	   *f;
	char		one = 1;
	ssize_t		rc;

	tot.all_connected = now_realtime_us();
	if (bench_ready_fd >= 0)
	{
		/* a child: the parent creates the file once all children are here */
		rc = write(bench_ready_fd, &one, 1);
		(void) rc;
		close(bench_ready_fd);
		bench_ready_fd = -1;
		return;
	}
	if (!opt_quiet)
		fprintf(stderr, "ws_sub: %d subscribers connected in %.3f s\n",
				tot.connected, (tot.all_connected - start_us) / 1e6);
	if (opt_ready == NULL)
		return;
	f = fopen(opt_ready, "w");
	if (f == NULL)
	{
		fprintf(stderr, "ws_sub: cannot create %s: %s\n", opt_ready, strerror(errno));
		return;
	}
	fprintf(f, "%d %.3f\n", opt_subs, (tot.all_connected - start_us) / 1e6);
	fclose(f);
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		 void *in, size_t len)
{
	Sub		   *s = (Sub *) lws_get_opaque_user_data(wsi);
	int64_t		rx_us;

	(void) user;
	if (s == NULL)
		return 0;

	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			s->connected = 1;
			pending--;
			tot.connected++;
			if (tot.connected == nsubs)
				all_connected();
			break;

		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			fprintf(stderr, "ws_sub: subscriber %d: connection error: %s\n",
					s->index, in ? (const char *) in : "(unknown)");
			s->wsi = NULL;
			if (!s->connected)
				pending--;
			if (!s->closed)
			{
				s->closed = 1;
				tot.errors++;
			}
			check_done();
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE:
			rx_us = now_realtime_us();
			if (lws_is_first_fragment(wsi))
				s->len = 0;
			if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0 &&
				s->len == 0)
			{
				/* the usual case: the whole message in one piece */
				handle_message(s, (const char *) in, len, rx_us);
				break;
			}
			if (s->len + len > s->cap)
			{
				s->cap = (s->len + len) * 2;
				s->buf = xrealloc(s->buf, s->cap);
			}
			memcpy(s->buf + s->len, in, len);
			s->len += len;
			if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
			{
				handle_message(s, s->buf, s->len, rx_us);
				s->len = 0;
			}
			break;

		case LWS_CALLBACK_CLIENT_CLOSED:
			s->wsi = NULL;
			if (!s->closed)
			{
				s->closed = 1;
				if (!s->finished && !stop)
					fprintf(stderr, "ws_sub: subscriber %d closed by the server after %" PRIu64 " messages\n",
							s->index, s->count);
			}
			check_done();
			break;

		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"ws-sub", callback, 0, 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* every 20 ms: signals and the deadline */
static void
tick(lws_sorted_usec_list_t *sul)
{
	if (stop_signal)
		stop = 1;
	if (opt_timeout > 0 && now_realtime_us() - start_us > (int64_t) (opt_timeout * 1e6))
	{
		tot.timed_out = 1;
		stop = 1;
	}
	if (!stop)
		lws_sul_schedule(context, 0, sul, tick, 20 * LWS_US_PER_MS);
}

static void
on_signal(int sig)
{
	stop_signal = 1;
	bench_signal_children(sig);
	if (context)
		lws_cancel_service(context);
}

/* --path, with {i} replaced by the subscriber's number (kept until exit) */
static const char *
subscriber_path(int index)
{
	const char *at = strstr(opt_path, "{i}");
	char	   *path;

	if (at == NULL)
		return opt_path;
	path = malloc(strlen(opt_path) + 16);
	if (path == NULL)
		return opt_path;
	sprintf(path, "%.*s%d%s", (int) (at - opt_path), opt_path, index, at + 3);
	return path;
}

/* start connecting the next subscribers, up to --max-pending at once */
static void
start_connects(void)
{
	while (next_connect < nsubs &&
		   (opt_max_pending <= 0 || pending < opt_max_pending))
	{
		struct lws_client_connect_info ci;
		Sub		   *s = &subs[next_connect++];

		s->index = first_index + (int) (s - subs);
		memset(&ci, 0, sizeof(ci));
		ci.context = context;
		ci.address = opt_host;
		ci.port = opt_port;
		ci.path = subscriber_path(s->index);
		ci.host = hostport;
		ci.origin = hostport;
		ci.protocol = NULL;		/* pg_ws serves its default protocol */
		ci.local_protocol_name = "ws-sub";
		ci.ietf_version_or_minus_one = -1;
		/* a benchmark of the server's TLS, not of certificate checking */
		if (opt_tls)
			ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED |
				LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_EXPIRED;
		ci.opaque_user_data = s;
		ci.pwsi = &s->wsi;
		pending++;
		if (lws_client_connect_via_info(&ci) == NULL && !s->closed)
		{
			fprintf(stderr, "ws_sub: subscriber %d: could not start connecting\n",
					s->index);
			pending--;
			s->closed = 1;
			tot.errors++;
		}
	}
}

/*
 * Run subscribers [first, first + count) in this process until they are
 * done; fills tot and samples.
 */
static int
run_subscribers(int first, int count)
{
	struct lws_context_creation_info info;
	int			i;

	nsubs = count;
	memset(&tot, 0, sizeof(tot));
	tot.subs = count;
	tot.min_count = UINT64_MAX;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.fd_limit_per_thread = (unsigned int) count + 64;
	if (opt_tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	context = lws_create_context(&info);
	if (context == NULL)
	{
		fprintf(stderr, "ws_sub: lws_create_context failed\n");
		return 1;
	}
	tokener = json_tokener_new();
	subs = calloc((size_t) count, sizeof(Sub));
	if (tokener == NULL || subs == NULL)
	{
		fprintf(stderr, "ws_sub: out of memory\n");
		return 1;
	}

	snprintf(hostport, sizeof(hostport), "%s:%d", opt_host, opt_port);
	first_index = first;
	next_connect = 0;
	pending = 0;
	start_connects();
	check_done();

	lws_sul_schedule(context, 0, &tick_sul, tick, 20 * LWS_US_PER_MS);
	while (!stop)
	{
		if (lws_service(context, 0) < 0)
			break;
		if (next_connect < nsubs)
			start_connects();
		if (stop_signal)
			stop = 1;
	}
	lws_sul_cancel(&tick_sul);

	for (i = 0; i < count; i++)
	{
		if (subs[i].count < tot.min_count)
			tot.min_count = subs[i].count;
		if (subs[i].count > tot.max_count)
			tot.max_count = subs[i].count;
	}
	tot.nsamples = nsamples;

	lws_context_destroy(context);
	context = NULL;
	json_tokener_free(tokener);
	for (i = 0; i < count; i++)
		free(subs[i].buf);
	free(subs);
	return 0;
}

/* add a child's totals to the parent's */
static void
merge(Totals *t)
{
	tot.subs += t->subs;
	tot.connected += t->connected;
	tot.errors += t->errors;
	tot.finished += t->finished;
	tot.timed_out |= t->timed_out;
	tot.msgs += t->msgs;
	tot.bad += t->bad;
	tot.nostamp += t->nostamp;
	tot.bytes += t->bytes;
	if (t->min_count < tot.min_count)
		tot.min_count = t->min_count;
	if (t->max_count > tot.max_count)
		tot.max_count = t->max_count;
	if (t->first_rx && (tot.first_rx == 0 || t->first_rx < tot.first_rx))
		tot.first_rx = t->first_rx;
	if (t->last_rx > tot.last_rx)
		tot.last_rx = t->last_rx;
	if (t->all_connected > tot.all_connected)
		tot.all_connected = t->all_connected;
	if (t->done_us > tot.done_us)
		tot.done_us = t->done_us;
	if (t->first_seq && (tot.first_seq == 0 || t->first_seq < tot.first_seq))
		tot.first_seq = t->first_seq;
	if (t->last_seq > tot.last_seq)
		tot.last_seq = t->last_seq;
	tot.seq_backwards += t->seq_backwards;
	tot.resync += t->resync;
	if (tot.epoch[0] == '\0')
		memcpy(tot.epoch, t->epoch, sizeof(tot.epoch));
}

/* the fan-out (common.c): a child's report is its tot and its samples */
static int
fan_send(int fd)
{
	if (write_all(fd, &tot, sizeof(tot)) != 0 ||
		write_all(fd, samples, nsamples * sizeof(*samples)) != 0)
		return -1;
	return 0;
}

static void
fan_all_connected(void)
{
	tot.connected = opt_subs;	/* for the message only */
	all_connected();
}

static int
fan_begin(void)
{
	memset(&tot, 0, sizeof(tot));
	tot.min_count = UINT64_MAX;
	return 0;
}

static int
fan_receive(int fd)
{
	Totals		t;

	if (read_all(fd, &t, sizeof(t)) != 0)
		return -1;
	samples = xrealloc(samples, (nsamples + t.nsamples) * sizeof(*samples));
	if (read_all(fd, samples + nsamples, t.nsamples * sizeof(*samples)) != 0)
		return -1;
	nsamples += t.nsamples;
	merge(&t);
	return 0;
}

static void
fan_end(void)
{
}

static const BenchFanOut fan_out = {
	.run_share = run_subscribers,
	.send_report = fan_send,
	.all_connected = fan_all_connected,
	.begin_reports = fan_begin,
	.receive_report = fan_receive,
	.end_reports = fan_end,
};

/* nearest-rank percentile of n sorted values */
static int64_t
pct(const int64_t *v, size_t n, double p)
{
	size_t		rank;

	if (n == 0)
		return -1;
	rank = (size_t) (p / 100.0 * n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

int
main(int argc, char **argv)
{
	size_t		i;
	double		window;
	int			status;
	struct rusage ru;
	struct rusage ruc;
	double		cpu_s;
	int64_t    *lat;
	int64_t    *first;
	int64_t    *spread;
	size_t		nevents = 0;

	int			rc;

	rc = bench_options(argc, argv, "ws_sub", "  -L, --lean            no json-c: check and read messages by string\n"
							 "                        search (cheaper for very many subscribers)\n"
							 "      --tls             wss://: TLS, any certificate (self-signed,\n"
							 "                        expired, for another host name) accepted\n");
	if (rc >= 0)
		return rc;
	if (opt_deflate || opt_sources > 1)
	{
		fprintf(stderr, "ws_sub: --deflate and --sources are ws_fast's\n");
		return 1;
	}

	raise_fd_limit();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);

	start_us = now_realtime_us();
	if (opt_procs == 1)
		status = run_subscribers(0, opt_subs);
	else
		status = bench_fan_out(&fan_out);
	if (status != 0 && tot.subs == 0)
		return 1;

	getrusage(RUSAGE_SELF, &ru);
	getrusage(RUSAGE_CHILDREN, &ruc);
	cpu_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6 +
		ruc.ru_utime.tv_sec + ruc.ru_utime.tv_usec / 1e6 +
		ruc.ru_stime.tv_sec + ruc.ru_stime.tv_usec / 1e6;
	window = (tot.last_rx > tot.first_rx) ? (tot.last_rx - tot.first_rx) / 1e6 : 0.0;

	/* per event: the first delivery, and how much later the last one */
	qsort(samples, nsamples, sizeof(*samples), cmp_sample);
	lat = malloc((nsamples + 1) * sizeof(int64_t));
	first = malloc((nsamples + 1) * sizeof(int64_t));
	spread = malloc((nsamples + 1) * sizeof(int64_t));
	if (lat == NULL || first == NULL || spread == NULL)
	{
		fprintf(stderr, "ws_sub: out of memory\n");
		return 1;
	}
	for (i = 0; i < nsamples; i++)
	{
		lat[i] = samples[i].lat;
		if (i == 0 || samples[i].stamp != samples[i - 1].stamp)
		{
			first[nevents] = samples[i].lat;
			spread[nevents] = 0;
			nevents++;
		}
		else
			spread[nevents - 1] = samples[i].lat - first[nevents - 1];
	}
	if (opt_samples)
	{
		FILE	   *f = fopen(opt_samples, "w");

		if (f == NULL)
			fprintf(stderr, "ws_sub: cannot create %s: %s\n", opt_samples, strerror(errno));
		else
		{
			for (i = 0; i < nsamples; i++)
				fprintf(f, "%" PRId64 " %d %" PRId64 "\n",
						samples[i].stamp + samples[i].lat, samples[i].sub, samples[i].lat);
			fclose(f);
		}
	}
	qsort(lat, nsamples, sizeof(int64_t), cmp_i64);
	qsort(first, nevents, sizeof(int64_t), cmp_i64);
	qsort(spread, nevents, sizeof(int64_t), cmp_i64);
	if (tot.min_count == UINT64_MAX)
		tot.min_count = 0;

	if (!opt_quiet)
	{
		printf("subscribers      %d in %d process(es) (connected %d, errors %d, finished %d)\n",
			   opt_subs, opt_procs, tot.connected, tot.errors, tot.finished);
		printf("messages         %" PRIu64 " (per subscriber min %" PRIu64 " max %" PRIu64 "), bad %" PRIu64 ", no stamp %" PRIu64 "\n",
			   tot.msgs, tot.min_count, tot.max_count, tot.bad, tot.nostamp);
		printf("rate             %.0f msgs/s over %.3f s (first to last message), %.1f MB/s\n",
			   window > 0 ? tot.msgs / window : 0.0, window,
			   window > 0 ? tot.bytes / window / 1e6 : 0.0);
		if (nsamples)
		{
			printf("latency (us)     p50 %" PRId64 "  p90 %" PRId64 "  p99 %" PRId64 "  p99.9 %" PRId64 "  max %" PRId64 "  min %" PRId64 " (%zu deliveries)\n",
				   pct(lat, nsamples, 50), pct(lat, nsamples, 90), pct(lat, nsamples, 99),
				   pct(lat, nsamples, 99.9), lat[nsamples - 1], lat[0], nsamples);
			printf("first delivery   p50 %" PRId64 "  p99 %" PRId64 "  max %" PRId64 " (%zu events)\n",
				   pct(first, nevents, 50), pct(first, nevents, 99), first[nevents - 1], nevents);
			printf("spread (last-first) p50 %" PRId64 "  p99 %" PRId64 "  max %" PRId64 "\n",
				   pct(spread, nevents, 50), pct(spread, nevents, 99), spread[nevents - 1]);
		}
		printf("positions        seq %" PRIu64 " .. %" PRIu64 ", epoch %s, %" PRIu64 " not increasing, %" PRIu64 " resync_required\n",
			   tot.first_seq, tot.last_seq, tot.epoch[0] ? tot.epoch : "-",
			   tot.seq_backwards, tot.resync);
		printf("ws_sub CPU       %.2f s\n", cpu_s);
		if (tot.timed_out)
			printf("timed out after %.1f s\n", opt_timeout);
	}
	printf("RESULT subs=%d connected=%d errors=%d finished=%d msgs=%" PRIu64
		   " per_sub_min=%" PRIu64 " per_sub_max=%" PRIu64 " bad=%" PRIu64
		   " window_s=%.3f msgs_per_s=%.0f lat_n=%zu p50_us=%" PRId64
		   " p90_us=%" PRId64 " p99_us=%" PRId64 " max_us=%" PRId64
		   " events=%zu first_p50_us=%" PRId64 " first_p99_us=%" PRId64
		   " spread_p50_us=%" PRId64 " spread_p99_us=%" PRId64
		   " cpu_s=%.2f timeout=%d done_s=%.3f first_seq=%" PRIu64
		   " last_seq=%" PRIu64 " epoch=%s seq_backwards=%" PRIu64
		   " resync=%" PRIu64 " connect_s=%.3f\n",
		   opt_subs, tot.connected, tot.errors, tot.finished, tot.msgs,
		   tot.min_count, tot.max_count, tot.bad,
		   window, window > 0 ? tot.msgs / window : 0.0, nsamples,
		   pct(lat, nsamples, 50), pct(lat, nsamples, 90), pct(lat, nsamples, 99),
		   nsamples ? lat[nsamples - 1] : -1,
		   nevents, pct(first, nevents, 50), pct(first, nevents, 99),
		   pct(spread, nevents, 50), pct(spread, nevents, 99),
		   cpu_s, tot.timed_out,
		   tot.done_us ? (tot.done_us - start_us) / 1e6 : -1.0,
		   tot.first_seq, tot.last_seq, tot.epoch[0] ? tot.epoch : "-",
		   tot.seq_backwards, tot.resync,
		   tot.all_connected ? (tot.all_connected - start_us) / 1e6 : -1.0);
	fflush(stdout);

	if (status == 0 && (tot.finished != opt_subs || tot.bad != 0))
		status = 2;
	free(lat);
	free(first);
	free(spread);
	free(samples);
	return status;
}
