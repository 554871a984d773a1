/*
 * common.h - what the two benchmark subscribers, ws_fast and ws_sub, share:
 * their options (one parser, so that run_bench.sh can run either with the
 * same command line), the since/epoch request path, the small helpers of
 * their multi-process fan-out (whole reads and writes on the report
 * pipes, the open-files limit) and of their report (clocks, sorting,
 * samples).  Each program keeps what differs: how it speaks WebSocket, how
 * it checks a message, what its totals hold and its RESULT line's extra
 * fields.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#define MAX_PROCS 64

/* one delivery of a stamped event, kept only for -s */
typedef struct Sample
{
	int64_t		stamp;			/* writer's clock, us */
	int64_t		lat;			/* receive time - stamp, us */
	int32_t		sub;
	int32_t		pad;
} Sample;

/* the options, as bench_options() set them */
extern const char *progname;
extern const char *opt_host;
extern int	opt_port;
extern const char *opt_path;
extern const char *opt_since;
extern const char *opt_epoch;
extern int	opt_subs;
extern int	opt_procs;
extern uint64_t opt_expect;
extern const char *opt_end;
extern size_t opt_end_len;
extern double opt_timeout;
extern const char *opt_field;
extern const char *opt_ready;
extern const char *opt_samples;
extern int	opt_quiet;
extern int	opt_max_pending;
extern int	opt_lean;
extern int	opt_tls;
extern int	opt_deflate;
extern int	opt_sources;

/*
 * Parse argv into the options above, for program name (in messages),
 * printing its usage (common part, then extra) on -h or a mistake.
 * Returns -1 to go on, or the exit status.  A --since with --epoch
 * becomes part of opt_path.
 */
extern int	bench_options(int argc, char **argv, const char *name, const char *extra_usage);

/*
 * The multi-process fan-out: opt_procs child processes, each running its
 * share of the subscribers, then sending its report to the parent over a
 * pipe; the parent learns over another pipe when every child has all its
 * subscribers connected, then reads and merges the reports.  What a share
 * is, what a report holds and how reports merge are the program's.
 */
typedef struct BenchFanOut
{
	/* child: run subscribers [first, first + count); 0 when it went well */
	int			(*run_share) (int first, int count);
	/* child: write its report to fd; 0 when it went well */
	int			(*send_report) (int fd);
	/* parent: every child has all its subscribers connected */
	void		(*all_connected) (void);
	/* parent: before the first report; 0 when it went well */
	int			(*begin_reports) (void);
	/* parent: read one child's report from fd and merge it; 0 if it came */
	int			(*receive_report) (int fd);
	/* parent: after the last report */
	void		(*end_reports) (void);
} BenchFanOut;

/* the children, for a signal to reach them */
extern pid_t bench_children[MAX_PROCS];
extern int	bench_nchildren;
/* child: the pipe to write one byte to once all its subscribers are in */
extern int	bench_ready_fd;

/* run the fan-out; returns 0, or 1 when a child did not report */
extern int	bench_fan_out(const BenchFanOut *f);
/* pass sig on to every child */
extern void bench_signal_children(int sig);

extern int64_t now_realtime_us(void);
extern void *xrealloc(void *p, size_t n);
extern int	write_all(int fd, const void *buf, size_t len);
extern int	read_all(int fd, void *buf, size_t len);
extern void raise_fd_limit(void);
extern int	cmp_i64(const void *a, const void *b);
extern int	cmp_sample(const void *a, const void *b);

#endif
