/*
 * ws_sub.c - benchmark subscriber for pg_ws.
 *
 * Opens N WebSocket connections to ws://HOST:PORT/ws/ from one
 * libwebsockets service loop, parses every message with json-c (each must
 * be an object with a string "event" and an object "data"), and reports
 *
 *   - how many messages arrived, and the rate across all subscribers
 *     (first to last message received, any subscriber);
 *   - commit-to-receive latency: the writer puts its CLOCK_REALTIME time
 *     in microseconds since the epoch, as a decimal string, in a column of
 *     the row (visit_history.device_id or employee.first_name; see
 *     --field), e.g. with
 *         (extract(epoch from clock_timestamp()) * 1000000)::bigint::text
 *     and ws_sub records receive_time - stamp for every message that
 *     carries one.  Both ends read the same clock on the same host.
 *
 * It stops when every subscriber has got --expect messages, or has seen the
 * --end marker (a message whose stamp field equals the marker; it is not
 * counted), or when --timeout expires, or on SIGINT/SIGTERM.  The last line
 * of stdout is one line of key=value pairs, for scripts.
 *
 * Exit status: 0 all subscribers finished; 2 timeout or a subscriber was
 * closed/failed before finishing; 1 usage or set-up error.
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
#include <time.h>
#include <unistd.h>

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
	char	   *buf;			/* a message being reassembled */
	size_t		len;
	size_t		cap;
} Sub;

/* options */
static const char *opt_host = "127.0.0.1";
static int	opt_port = 8765;
static const char *opt_path = "/ws/";
static int	opt_subs = 1;
static uint64_t opt_expect = 0;		/* messages per subscriber, 0: none */
static const char *opt_end = NULL;	/* end marker in the stamp field */
static double opt_timeout = 30.0;	/* seconds, from start */
static const char *opt_field = NULL;	/* stamp field in "data"; NULL: auto */
static const char *opt_ready = NULL;	/* file created once all connected */
static int	opt_quiet = 0;

static Sub *subs;
static struct lws_context *context;
static lws_sorted_usec_list_t tick_sul;
static json_tokener *tokener;

static volatile sig_atomic_t stop_signal = 0;
static int	stop = 0;
static int	timed_out = 0;

static int	nconnected = 0;
static int	nclosed = 0;
static int	nfinished = 0;
static int	nerrors = 0;
static int	ready_written = 0;

static uint64_t total_msgs = 0;
static uint64_t bad_msgs = 0;		/* not JSON, or no "event"/"data" */
static uint64_t nostamp_msgs = 0;	/* valid, but no parseable stamp */
static uint64_t total_bytes = 0;
static int64_t first_rx_us = 0;
static int64_t last_rx_us = 0;
static int64_t start_us = 0;
static int64_t all_connected_us = 0;

static int64_t *lat;				/* latency samples, microseconds */
static size_t nlat = 0;
static size_t caplat = 0;

static int64_t
now_realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *
xrealloc(void *p, size_t n)
{
	void	   *q = realloc(p, n);

	if (q == NULL)
	{
		fprintf(stderr, "ws_sub: out of memory\n");
		exit(1);
	}
	return q;
}

static void
add_latency(int64_t us)
{
	if (nlat == caplat)
	{
		caplat = caplat ? caplat * 2 : 65536;
		lat = xrealloc(lat, caplat * sizeof(*lat));
	}
	lat[nlat++] = us;
}

/* stop once every subscriber has finished or is gone */
static void
check_done(void)
{
	int			i;

	for (i = 0; i < opt_subs; i++)
		if (!subs[i].finished && !subs[i].closed)
			return;
	stop = 1;
}

static void
sub_finished(Sub *s)
{
	if (!s->finished)
	{
		s->finished = 1;
		nfinished++;
		/* a finished subscriber that closes later is not "closed early" */
		check_done();
	}
}

/* a decimal string of microseconds, or -1 */
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

/* one complete message */
static void
handle_message(Sub *s, const char *msg, size_t len, int64_t rx_us)
{
	json_object *obj;
	json_object *event;
	json_object *data;
	json_object *sf;
	int64_t		stamp;

	json_tokener_reset(tokener);
	obj = json_tokener_parse_ex(tokener, msg, (int) len);
	if (obj == NULL || json_tokener_get_error(tokener) != json_tokener_success ||
		!json_object_is_type(obj, json_type_object) ||
		!json_object_object_get_ex(obj, "event", &event) ||
		!json_object_is_type(event, json_type_string) ||
		!json_object_object_get_ex(obj, "data", &data) ||
		!json_object_is_type(data, json_type_object))
	{
		if (bad_msgs++ < 5)
			fprintf(stderr, "ws_sub: subscriber %d: not a pg_ws event: %.*s\n",
					s->index, (int) (len > 200 ? 200 : len), msg);
		if (obj)
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

	if (first_rx_us == 0)
		first_rx_us = rx_us;
	last_rx_us = rx_us;
	total_msgs++;
	total_bytes += len;
	s->count++;

	stamp = parse_stamp(sf);
	if (stamp > 0)
		add_latency(rx_us - stamp);
	else
		nostamp_msgs++;
	json_object_put(obj);

	if (opt_expect && s->count >= opt_expect)
		sub_finished(s);
}

static void
write_ready_file(void)
{
	FILE	   *f;

	if (ready_written)
		return;
	ready_written = 1;
	all_connected_us = now_realtime_us();
	if (!opt_quiet)
		fprintf(stderr, "ws_sub: %d subscribers connected in %.3f s\n",
				nconnected, (all_connected_us - start_us) / 1e6);
	if (opt_ready == NULL)
		return;
	f = fopen(opt_ready, "w");
	if (f == NULL)
	{
		fprintf(stderr, "ws_sub: cannot create %s: %s\n", opt_ready, strerror(errno));
		return;
	}
	fprintf(f, "%d\n", nconnected);
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
			nconnected++;
			if (nconnected == opt_subs)
				write_ready_file();
			break;

		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			fprintf(stderr, "ws_sub: subscriber %d: connection error: %s\n",
					s->index, in ? (const char *) in : "(unknown)");
			s->wsi = NULL;
			if (!s->closed)
			{
				s->closed = 1;
				nerrors++;
				nclosed++;
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
				nclosed++;
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
		timed_out = 1;
		stop = 1;
	}
	if (!stop)
		lws_sul_schedule(context, 0, sul, tick, 20 * LWS_US_PER_MS);
}

static void
on_signal(int sig)
{
	(void) sig;
	stop_signal = 1;
	if (context)
		lws_cancel_service(context);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of the sorted samples */
static int64_t
pct(double p)
{
	size_t		rank;

	if (nlat == 0)
		return -1;
	rank = (size_t) (p / 100.0 * nlat + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > nlat)
		rank = nlat;
	return lat[rank - 1];
}

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: ws_sub [options]\n"
			"  -H, --host HOST       server address (127.0.0.1)\n"
			"  -p, --port PORT       pg_ws.port (8765)\n"
			"      --path PATH       request path (/ws/)\n"
			"  -n, --subscribers N   WebSocket connections (1)\n"
			"  -e, --expect COUNT    stop when every subscriber got COUNT messages\n"
			"  -E, --end MARKER      stop when every subscriber got an event whose\n"
			"                        stamp field equals MARKER (not counted)\n"
			"  -t, --timeout SEC     give up after SEC seconds from start (30; 0: never)\n"
			"  -f, --field NAME      key in \"data\" holding the microsecond stamp\n"
			"                        (default: device_id, else first_name)\n"
			"  -r, --ready-file PATH create PATH once all subscribers are connected\n"
			"  -q, --quiet           only the summary line\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'p'},
		{"path", required_argument, NULL, 'P'},
		{"subscribers", required_argument, NULL, 'n'},
		{"expect", required_argument, NULL, 'e'},
		{"end", required_argument, NULL, 'E'},
		{"timeout", required_argument, NULL, 't'},
		{"field", required_argument, NULL, 'f'},
		{"ready-file", required_argument, NULL, 'r'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	struct lws_context_creation_info info;
	char		hostport[300];
	int			c;
	int			i;
	double		window;
	uint64_t	min_count = UINT64_MAX;
	uint64_t	max_count = 0;
	int			status;

	while ((c = getopt_long(argc, argv, "H:p:n:e:E:t:f:r:qh", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'H':
				opt_host = optarg;
				break;
			case 'p':
				opt_port = atoi(optarg);
				break;
			case 'P':
				opt_path = optarg;
				break;
			case 'n':
				opt_subs = atoi(optarg);
				break;
			case 'e':
				opt_expect = strtoull(optarg, NULL, 10);
				break;
			case 'E':
				opt_end = optarg;
				break;
			case 't':
				opt_timeout = atof(optarg);
				break;
			case 'f':
				opt_field = optarg;
				break;
			case 'r':
				opt_ready = optarg;
				break;
			case 'q':
				opt_quiet = 1;
				break;
			case 'h':
				usage(stdout);
				return 0;
			default:
				usage(stderr);
				return 1;
		}
	}
	if (optind < argc || opt_subs < 1 || opt_port < 1 || opt_port > 65535)
	{
		usage(stderr);
		return 1;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.fd_limit_per_thread = (unsigned int) opt_subs + 64;
	context = lws_create_context(&info);
	if (context == NULL)
	{
		fprintf(stderr, "ws_sub: lws_create_context failed\n");
		return 1;
	}
	tokener = json_tokener_new();
	subs = calloc((size_t) opt_subs, sizeof(Sub));
	if (tokener == NULL || subs == NULL)
	{
		fprintf(stderr, "ws_sub: out of memory\n");
		return 1;
	}

	start_us = now_realtime_us();
	snprintf(hostport, sizeof(hostport), "%s:%d", opt_host, opt_port);
	for (i = 0; i < opt_subs; i++)
	{
		struct lws_client_connect_info ci;

		subs[i].index = i;
		memset(&ci, 0, sizeof(ci));
		ci.context = context;
		ci.address = opt_host;
		ci.port = opt_port;
		ci.path = opt_path;
		ci.host = hostport;
		ci.origin = hostport;
		ci.protocol = NULL;		/* pg_ws serves its default protocol */
		ci.local_protocol_name = "ws-sub";
		ci.ietf_version_or_minus_one = -1;
		ci.opaque_user_data = &subs[i];
		ci.pwsi = &subs[i].wsi;
		if (lws_client_connect_via_info(&ci) == NULL && !subs[i].closed)
		{
			fprintf(stderr, "ws_sub: subscriber %d: could not start connecting\n", i);
			subs[i].closed = 1;
			nerrors++;
			nclosed++;
		}
	}
	check_done();

	lws_sul_schedule(context, 0, &tick_sul, tick, 20 * LWS_US_PER_MS);
	while (!stop)
	{
		if (lws_service(context, 0) < 0)
			break;
		if (stop_signal)
			stop = 1;
	}
	lws_sul_cancel(&tick_sul);

	for (i = 0; i < opt_subs; i++)
	{
		if (subs[i].count < min_count)
			min_count = subs[i].count;
		if (subs[i].count > max_count)
			max_count = subs[i].count;
	}

	window = (last_rx_us > first_rx_us) ? (last_rx_us - first_rx_us) / 1e6 : 0.0;
	qsort(lat, nlat, sizeof(*lat), cmp_i64);

	if (!opt_quiet)
	{
		printf("subscribers      %d (connected %d, errors %d, finished %d)\n",
			   opt_subs, nconnected, nerrors, nfinished);
		printf("messages         %" PRIu64 " (per subscriber min %" PRIu64 " max %" PRIu64 "), bad %" PRIu64 ", no stamp %" PRIu64 "\n",
			   total_msgs, min_count, max_count, bad_msgs, nostamp_msgs);
		printf("rate             %.0f msgs/s over %.3f s (first to last message), %.1f MB/s\n",
			   window > 0 ? total_msgs / window : 0.0, window,
			   window > 0 ? total_bytes / window / 1e6 : 0.0);
		if (nlat)
			printf("latency (us)     p50 %" PRId64 "  p90 %" PRId64 "  p99 %" PRId64 "  p99.9 %" PRId64 "  max %" PRId64 "  min %" PRId64 " (%zu samples)\n",
				   pct(50), pct(90), pct(99), pct(99.9), lat[nlat - 1], lat[0], nlat);
		if (timed_out)
			printf("timed out after %.1f s\n", opt_timeout);
	}
	printf("RESULT subs=%d connected=%d errors=%d finished=%d msgs=%" PRIu64
		   " per_sub_min=%" PRIu64 " per_sub_max=%" PRIu64 " bad=%" PRIu64
		   " window_s=%.3f msgs_per_s=%.0f lat_n=%zu p50_us=%" PRId64
		   " p90_us=%" PRId64 " p99_us=%" PRId64 " max_us=%" PRId64 " timeout=%d\n",
		   opt_subs, nconnected, nerrors, nfinished, total_msgs,
		   min_count == UINT64_MAX ? 0 : min_count, max_count, bad_msgs,
		   window, window > 0 ? total_msgs / window : 0.0, nlat,
		   pct(50), pct(90), pct(99), nlat ? lat[nlat - 1] : -1, timed_out);
	fflush(stdout);

	status = (nfinished == opt_subs && bad_msgs == 0) ? 0 : 2;
	lws_context_destroy(context);
	json_tokener_free(tokener);
	for (i = 0; i < opt_subs; i++)
		free(subs[i].buf);
	free(subs);
	free(lat);
	return status;
}
