/*
 * common.c - what ws_fast and ws_sub share (see common.h): the options and
 * their parser, and the small helpers of the fan-out and the report.
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *progname = "bench";
const char *opt_host = "127.0.0.1";
int			opt_port = 8765;
const char *opt_path = "/ws/";
const char *opt_since = NULL;
const char *opt_epoch = NULL;
int			opt_subs = 1;
int			opt_procs = 1;
uint64_t	opt_expect = 0;
const char *opt_end = NULL;
size_t		opt_end_len = 0;
double		opt_timeout = 30.0;
const char *opt_field = NULL;
const char *opt_ready = NULL;
const char *opt_samples = NULL;
int			opt_quiet = 0;
int			opt_max_pending = 0;
int			opt_lean = 0;
int			opt_tls = 0;
int			opt_deflate = 0;
int			opt_sources = 1;

pid_t		bench_children[MAX_PROCS];
int			bench_nchildren = 0;
int			bench_ready_fd = -1;

static void
usage(FILE *f, const char *extra)
{
	fprintf(f,
			"usage: %s [options]\n"
			"  -H, --host HOST       server address (127.0.0.1)\n"
			"  -p, --port PORT       pg_ws.port (8765)\n"
			"      --path PATH       request path (/ws/); {i} in it stands for the\n"
			"                        subscriber's number, from 0 across processes\n"
			"  -S, --since SEQ       resume after position SEQ (with --epoch):\n"
			"                        requests /ws/?since=SEQ&epoch=E\n"
			"  -x, --epoch E         the epoch SEQ was taken in\n"
			"  -n, --subscribers N   WebSocket connections (1)\n"
			"  -j, --procs P         spread them over P processes (1)\n"
			"  -e, --expect COUNT    stop when every subscriber got COUNT messages\n"
			"  -E, --end MARKER      stop when every subscriber got an event whose\n"
			"                        stamp field equals MARKER (not counted)\n"
			"  -t, --timeout SEC     give up after SEC seconds from start (30; 0: never)\n"
			"  -f, --field NAME      key in \"data\" holding the microsecond stamp\n"
			"                        (default: device_id, else first_name)\n"
			"  -r, --ready-file PATH create PATH once all subscribers are connected\n"
			"  -s, --samples PATH    write every sample to PATH as lines of\n"
			"                        \"receive_us subscriber latency_us\"\n"
			"  -q, --quiet           only the summary line\n"
			"  -m, --max-pending N   at most N connections in their handshakes at\n"
			"                        once, per process (0: all at once)\n"
			"      --sources N       connect from N loopback addresses, 127.0.0.1 to\n"
			"                        127.0.0.N, subscriber i from the (i mod N)th:\n"
			"                        past the 28,000 ports one address has (1)\n"
			"%s",
			progname, extra);
}

int
bench_options(int argc, char **argv, const char *name, const char *extra_usage)
{
	static const struct option longopts[] = {
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'p'},
		{"path", required_argument, NULL, 'P'},
		{"since", required_argument, NULL, 'S'},
		{"epoch", required_argument, NULL, 'x'},
		{"subscribers", required_argument, NULL, 'n'},
		{"procs", required_argument, NULL, 'j'},
		{"expect", required_argument, NULL, 'e'},
		{"end", required_argument, NULL, 'E'},
		{"timeout", required_argument, NULL, 't'},
		{"field", required_argument, NULL, 'f'},
		{"ready-file", required_argument, NULL, 'r'},
		{"samples", required_argument, NULL, 's'},
		{"quiet", no_argument, NULL, 'q'},
		{"max-pending", required_argument, NULL, 'm'},
		{"lean", no_argument, NULL, 'L'},
		{"tls", no_argument, NULL, 'T'},
		{"deflate", no_argument, NULL, 'Z'},
		{"sources", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	progname = name;
	while ((c = getopt_long(argc, argv, "H:p:n:j:e:E:t:f:r:s:qhS:x:m:LT", longopts, NULL)) != -1)
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
			case 'S':
				opt_since = optarg;
				break;
			case 'x':
				opt_epoch = optarg;
				break;
			case 'n':
				opt_subs = atoi(optarg);
				break;
			case 'j':
				opt_procs = atoi(optarg);
				break;
			case 'e':
				opt_expect = strtoull(optarg, NULL, 10);
				break;
			case 'E':
				opt_end = optarg;
				opt_end_len = strlen(optarg);
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
			case 's':
				opt_samples = optarg;
				break;
			case 'q':
				opt_quiet = 1;
				break;
			case 'm':
				opt_max_pending = atoi(optarg);
				break;
			case 'L':
				opt_lean = 1;
				break;
			case 'T':
				opt_tls = 1;
				break;
			case 'Z':
				opt_deflate = 1;
				break;
			case 'A':
				opt_sources = atoi(optarg);
				break;
			case 'h':
				usage(stdout, extra_usage);
				return 0;
			default:
				usage(stderr, extra_usage);
				return 1;
		}
	}
	if (optind < argc || opt_subs < 1 || opt_port < 1 || opt_port > 65535 ||
		opt_procs < 1 || opt_procs > MAX_PROCS || opt_sources < 1 || opt_sources > 254)
	{
		usage(stderr, extra_usage);
		return 1;
	}
	if (opt_procs > opt_subs)
		opt_procs = opt_subs;
	if (opt_since || opt_epoch)
	{
		static char path[512];

		if (opt_since == NULL || opt_epoch == NULL ||
			strspn(opt_since, "0123456789") != strlen(opt_since) ||
			strspn(opt_epoch, "0123456789abcdefghijklmnopqrstuvwxyz"
				   "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.") != strlen(opt_epoch))
		{
			fprintf(stderr, "%s: --since needs a decimal SEQ and --epoch its epoch\n", progname);
			return 1;
		}
		snprintf(path, sizeof(path), "%s%sepoch=%s&since=%s", opt_path,
				 strchr(opt_path, '?') ? "&" : "?", opt_epoch, opt_since);
		opt_path = path;
	}
	return -1;
}

int64_t
now_realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void *
xrealloc(void *p, size_t n)
{
	void	   *q = realloc(p, n);

	if (q == NULL && n > 0)
	{
		fprintf(stderr, "%s: out of memory\n", progname);
		exit(1);
	}
	return q;
}

/* the whole buffer to fd (a child's report to its parent); -1 on error */
int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0)
	{
		ssize_t		n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t) n;
	}
	return 0;
}

/* exactly len bytes from fd; -1 on error or end of file */
int
read_all(int fd, void *buf, size_t len)
{
	char	   *p = buf;

	while (len > 0)
	{
		ssize_t		n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t) n;
	}
	return 0;
}

/* open files for this process's share of the subscribers, if allowed */
void
raise_fd_limit(void)
{
	struct rlimit rlim;
	rlim_t		need = (rlim_t) opt_subs / (rlim_t) opt_procs + 1 + 256;

	if (getrlimit(RLIMIT_NOFILE, &rlim) != 0 || rlim.rlim_cur >= need)
		return;
	rlim.rlim_cur = rlim.rlim_max < need ? rlim.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rlim) != 0 || rlim.rlim_cur < need)
		fprintf(stderr, "%s: cannot raise the limit on open files to %llu (hard limit %llu): "
				"some connections will fail; raise it with ulimit -n or prlimit --nofile\n",
				progname, (unsigned long long) need, (unsigned long long) rlim.rlim_max);
}

int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/* samples in the order of their stamps, then latencies */
int
cmp_sample(const void *a, const void *b)
{
	const Sample *x = a;
	const Sample *y = b;

	if (x->stamp != y->stamp)
		return (x->stamp > y->stamp) - (x->stamp < y->stamp);
	return (x->lat > y->lat) - (x->lat < y->lat);
}

void
bench_signal_children(int sig)
{
	int			i;

	for (i = 0; i < bench_nchildren; i++)
		kill(bench_children[i], sig);
}

int
bench_fan_out(const BenchFanOut *f)
{
	int			result_fds[MAX_PROCS];
	int			ready_pipe[2];
	int			k;
	int			nready = 0;
	int			failed = 0;
	char		c;

	if (pipe(ready_pipe) < 0)
	{
		fprintf(stderr, "%s: pipe: %s\n", progname, strerror(errno));
		return 1;
	}
	for (k = 0; k < opt_procs; k++)
	{
		int			first = (int) ((int64_t) opt_subs * k / opt_procs);
		int			count = (int) ((int64_t) opt_subs * (k + 1) / opt_procs) - first;
		int			fds[2];
		pid_t		pid;

		if (pipe(fds) < 0)
		{
			fprintf(stderr, "%s: pipe: %s\n", progname, strerror(errno));
			return 1;
		}
		fflush(NULL);
		pid = fork();
		if (pid < 0)
		{
			fprintf(stderr, "%s: fork: %s\n", progname, strerror(errno));
			return 1;
		}
		if (pid == 0)
		{
			int			j;

			bench_nchildren = 0;
			close(fds[0]);
			close(ready_pipe[0]);
			for (j = 0; j < k; j++)
				close(result_fds[j]);
			bench_ready_fd = ready_pipe[1];
			if (f->run_share(first, count) != 0)
				_exit(1);

			/*
			 * A child that never got all its subscribers connected still
			 * holds the ready pipe: close it, or the parent would wait
			 * there while we wait for it to read our report (megabytes).
			 */
			if (bench_ready_fd >= 0)
				close(bench_ready_fd);
			bench_ready_fd = -1;
			if (f->send_report(fds[1]) != 0)
				_exit(1);
			_exit(0);
		}
		bench_children[bench_nchildren++] = pid;
		close(fds[1]);
		result_fds[k] = fds[0];
	}
	close(ready_pipe[1]);

	/* every child that got all its subscribers connected writes one byte */
	while (nready < opt_procs && read(ready_pipe[0], &c, 1) == 1)
		nready++;
	close(ready_pipe[0]);
	if (nready == opt_procs)
	{
		bench_ready_fd = -1;
		f->all_connected();
	}

	if (f->begin_reports() != 0)
		return 1;
	for (k = 0; k < opt_procs; k++)
	{
		if (f->receive_report(result_fds[k]) != 0)
		{
			fprintf(stderr, "%s: subscriber process %d did not report\n", progname, k);
			failed = 1;
		}
		close(result_fds[k]);
	}
	f->end_reports();
	for (k = 0; k < bench_nchildren; k++)
		waitpid(bench_children[k], NULL, 0);
	bench_nchildren = 0;
	return failed;
}
