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

/*
 * Parse argv into the options above, for program name (in messages),
 * printing its usage (common part, then extra) on -h or a mistake.
 * Returns -1 to go on, or the exit status.  A --since with --epoch
 * becomes part of opt_path.
 */
extern int	bench_options(int argc, char **argv, const char *name, const char *extra_usage);

extern int64_t now_realtime_us(void);
extern void *xrealloc(void *p, size_t n);
extern int	write_all(int fd, const void *buf, size_t len);
extern int	read_all(int fd, void *buf, size_t len);
extern void raise_fd_limit(void);
extern int	cmp_i64(const void *a, const void *b);
extern int	cmp_sample(const void *a, const void *b);

#endif
