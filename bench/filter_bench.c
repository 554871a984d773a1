/*-------------------------------------------------------------------------
 *
 * filter_bench.c
 *	  What a subscriber's ?events= filter costs the worker per event: the
 *	  matcher of src/eventname.c (linked as it is built into pg_ws) against
 *	  pg_ws 1.2's, which compared the name with every pattern in turn.
 *
 * The worker asks every subscriber's filter (and token grant) about every
 * event it sends (broadcast.c, subscriber_wants): the document's events by
 * one bit test, every other event by its name.  This program times that
 * question, pgws_event_set_has(), for events that are not the document's,
 * with no filter, one short pattern, and 64 long patterns (the most
 * ?events= takes) sharing a 40-byte stem, so that every comparison reads
 * far into both strings: the worst case, not a typical one.  It also
 * checks, for every name it asks about, that both matchers answer alike.
 *
 *   make -C bench filter_bench PG_CONFIG=...   (needs PostgreSQL's server
 *   headers; pg_ws's palloc and ereport are stubbed here)
 *   bench/filter_bench [iterations]
 *
 * bench/filter_bench.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* port.h maps these to libpgport's, which this program does not link */
#undef printf
#undef fprintf
#undef snprintf

/* ------------------------------------------------ what eventname.c needs */

void *
palloc(Size size)
{
	return malloc(size);
}

void *
repalloc(void *pointer, Size size)
{
	return realloc(pointer, size);
}

void
pfree(void *pointer)
{
	free(pointer);
}

bool
errstart(int elevel, const char *domain)
{
	abort();
}

bool
errstart_cold(int elevel, const char *domain)
{
	abort();
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	abort();
}

int
errcode(int sqlerrcode)
{
	return 0;
}

int
errmsg(const char *fmt,...)
{
	return 0;
}

int
errdetail(const char *fmt,...)
{
	return 0;
}

int
errhint(const char *fmt,...)
{
	return 0;
}

/* -------------------------------------------------- pg_ws 1.2's matcher */

/*
 * 1.2's set kept the patterns for other names NUL-terminated, back to
 * back, in the order given, and compared a name with each in turn.
 */
typedef struct LinearSet
{
	int			npatterns;
	int			patterns_len;
	char		patterns[64 * 64];
} LinearSet;

static void
linear_add(LinearSet *set, const char *pattern)
{
	size_t		len = strlen(pattern);

	memcpy(set->patterns + set->patterns_len, pattern, len + 1);
	set->patterns_len += len + 1;
	set->npatterns++;
}

/* not inlined: in pg_ws, as here, the worker calls it in another file */
static pg_noinline bool
linear_matches(const LinearSet *set, const char *name, size_t len)
{
	const char *p = set->patterns;
	int			i;

	for (i = 0; i < set->npatterns; i++)
	{
		size_t		plen = strlen(p);

		if (p[plen - 1] == '*' ?
			len >= plen - 1 && memcmp(name, p, plen - 1) == 0 :
			len == plen && memcmp(name, p, len) == 0)
			return true;
		p += plen + 1;
	}
	return false;
}

/* ------------------------------------------------------------ the bench */

#define NNAMES 256
#define STEM "tenant_0042_region_europe_west_orders_"	/* 38 bytes */

static char names[NNAMES][PGWS_EVENT_NAME_MAXLEN + 1];
static size_t name_lens[NNAMES];

static double
seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ns per question for the new matcher (linear == NULL) or 1.2's */
static double
time_set(const PgWsEventSet *set, const LinearSet *linear, long iterations,
		 long *taken)
{
	double		t0 = seconds();
	long		i;
	long		n = 0;

	for (i = 0; i < iterations; i++)
	{
		int			k = i & (NNAMES - 1);

		if (linear != NULL ?
			linear_matches(linear, names[k], name_lens[k]) :
			pgws_event_set_has(set, -1, names[k], name_lens[k]))
			n++;
	}
	*taken = n;
	return (seconds() - t0) * 1e9 / iterations;
}

int
main(int argc, char **argv)
{
	long		iterations = argc > 1 ? atol(argv[1]) : 20000000L;
	PgWsEventSet none;
	PgWsEventSet one;
	PgWsEventSet many;
	LinearSet one_linear = {0};
	LinearSet many_linear = {0};
	long		taken_none,
				taken_one,
				taken_one_linear,
				taken_many,
				taken_many_linear;
	double		ns_none,
				ns_one,
				ns_one_linear,
				ns_many,
				ns_many_linear;
	int			i;
	int			disagree = 0;

	/*
	 * 64 patterns of 60 bytes or so: 32 names and 32 prefixes under one
	 * 38-byte stem, differing only in their last bytes.
	 */
	pgws_event_set_init(&none, true);
	pgws_event_set_init(&one, false);
	pgws_event_set_init(&many, false);
	pgws_event_set_add(&one, "order_*", 7);
	linear_add(&one_linear, "order_*");
	for (i = 0; i < 64; i++)
	{
		char		pattern[PGWS_EVENT_NAME_MAXLEN + 2];

		if (i % 2 == 0)
			snprintf(pattern, sizeof(pattern), STEM "status_changed_%02d_x", i);
		else
			snprintf(pattern, sizeof(pattern), STEM "shipment_%02d_*", i);
		if (pgws_event_set_add(&many, pattern, strlen(pattern)) != PGWS_PATTERN_OK)
		{
			fprintf(stderr, "pattern %s refused\n", pattern);
			return 1;
		}
		linear_add(&many_linear, pattern);
	}

	/*
	 * The names asked about: a quarter taken by a name, a quarter by a
	 * prefix, a quarter just missing (the stem, one byte off at the end),
	 * a quarter of other applications' events.
	 */
	for (i = 0; i < NNAMES; i++)
	{
		switch (i % 4)
		{
			case 0:
				snprintf(names[i], sizeof(names[i]), STEM "status_changed_%02d_x", (i / 4) % 64 & ~1);
				break;
			case 1:
				snprintf(names[i], sizeof(names[i]), STEM "shipment_%02d_sent_%d", ((i / 4) % 64) | 1, i);
				break;
			case 2:
				snprintf(names[i], sizeof(names[i]), STEM "status_changed_%02d_y", (i / 4) % 64);
				break;
			case 3:
				snprintf(names[i], sizeof(names[i]), "order_paid_%d", i);
				break;
		}
		name_lens[i] = strlen(names[i]);
		if (pgws_event_set_has(&many, -1, names[i], name_lens[i]) !=
			linear_matches(&many_linear, names[i], name_lens[i]) ||
			pgws_event_set_has(&one, -1, names[i], name_lens[i]) !=
			linear_matches(&one_linear, names[i], name_lens[i]))
		{
			fprintf(stderr, "the matchers disagree on %s\n", names[i]);
			disagree++;
		}
	}

	ns_none = time_set(&none, NULL, iterations, &taken_none);
	ns_one = time_set(&one, NULL, iterations, &taken_one);
	ns_one_linear = time_set(NULL, &one_linear, iterations, &taken_one_linear);
	ns_many = time_set(&many, NULL, iterations, &taken_many);
	ns_many_linear = time_set(NULL, &many_linear, iterations, &taken_many_linear);

	printf("ns per event and subscriber, %ld events not of the document (%d distinct names, %.0f%% taken by the 64 patterns)\n",
		   iterations, NNAMES, 100.0 * taken_many / iterations);
	printf("%-34s %10s %10s\n", "filter", "1.2", "1.2.2");
	printf("%-34s %10s %10.1f\n", "none (every event)", "", ns_none);
	printf("%-34s %10.1f %10.1f\n", "1 short prefix (order_*)", ns_one_linear, ns_one);
	printf("%-34s %10.1f %10.1f\n", "64 long patterns (~60 bytes)", ns_many_linear, ns_many);
	printf("64 long patterns against none: 1.2 %.1fx, 1.2.2 %.1fx\n",
		   ns_many_linear / ns_none, ns_many / ns_none);
	if (taken_one != taken_one_linear || taken_many != taken_many_linear || disagree)
	{
		printf("the matchers disagree\n");
		return 1;
	}
	printf("both matchers took the same events\n");
	return 0;
}
