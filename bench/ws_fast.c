/*
 * ws_fast.c - a lean benchmark subscriber for pg_ws, built not to be the
 * bottleneck.
 *
 * It measures what ws_sub measures, with the same options (those the
 * scripts use) and the same final "RESULT key=value ..." line, so that
 * run_bench.sh can run either.  What differs is the cost per message:
 * ws_sub is a libwebsockets client and parses with json-c (or, --lean,
 * with a handful of string searches); at some 400 000 messages/s it uses
 * a whole core.  ws_fast instead
 *
 *   - speaks RFC 6455 itself on non-blocking sockets and one epoll set per
 *     process: a hand-made handshake (random Sec-WebSocket-Key, a 101 and
 *     the right Sec-WebSocket-Accept, checked with OpenSSL's SHA-1), and
 *     optionally TLS (--tls: wss://, any certificate accepted);
 *   - reads up to 256 kB per read() and takes the clock once per read:
 *     that time is the receive time of every frame in it;
 *   - parses frames in place, strictly (server frames unmasked, no
 *     reserved bits, known opcodes, final control frames of at most 125
 *     bytes, lengths in their shortest form, continuations only inside a
 *     fragmented message); a frame that breaks a rule counts as bad and
 *     ends its connection.  Pings are answered with a masked pong;
 *   - checks a message with a few comparisons at the places pg_ws writes
 *     things ({"event": "...", "data": {...}, "seq": N, "epoch": "E"}),
 *     falling back to ws_sub --lean's string searches when they are not
 *     there: "event" must be a string and "data" an object, the stamp
 *     field (-f, default device_id, else first_name) a decimal string;
 *   - with --deflate, offers permessage-deflate (RFC 7692) as browsers do,
 *     inflates compressed messages (zlib, no context takeover, as pg_ws
 *     answers) before checking them, and counts the bytes it read off the
 *     wire (wire_bytes) beside the messages' (bytes);
 *   - keeps latencies in a histogram of 1 us buckets up to 1 s (values
 *     outside it are kept one by one, so every percentile is exact), and,
 *     per event (per stamp), the lowest and highest latency for "first"
 *     and "spread"; only -s keeps every sample.
 *
 * Exit status, like ws_sub: 0 every subscriber finished and every message
 * was valid; 2 timeout, a subscriber closed/failed early, or invalid
 * messages or frames; 1 usage or set-up error.
 *
 * Build: make -C bench   (OpenSSL 3 for SHA-1, base64, random and TLS)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#include <zlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#define READ_SIZE (256 * 1024)	/* bytes asked of one read() */
#define BIG_FRAME (READ_SIZE / 2)	/* a partial frame past this is read
									 * straight into its own buffer */
#define MAX_MESSAGE (64 * 1024 * 1024)	/* a bigger message is bad */
#ifndef HIST_US
#define HIST_US 1000000			/* histogram of 1 us buckets, 0 .. 1 s */
#endif
#define RESPONSE_MAX 8192		/* the server's HTTP answer to the upgrade */

enum
{
	ST_TCP,						/* TCP connect in progress */
	ST_TLS,						/* TLS handshake */
	ST_RESPONSE,				/* upgrade request sent, reading the answer */
	ST_OPEN,					/* WebSocket frames */
	ST_CLOSED
};

typedef struct Sub
{
	int			index;
	int			fd;
	int			state;
	int			connected;		/* handshake done */
	int			closed;			/* connection ended (or never came up) */
	int			finished;		/* got what it waited for */
	uint32_t	events;			/* epoll interest now */
	int			tls_want_write; /* the last TLS call wants to write */
	SSL		   *ssl;
	uint64_t	count;			/* valid messages */
	uint64_t	last_seq;		/* position of its last message */
	char		accept[32];		/* the Sec-WebSocket-Accept we expect */
	/* bytes read but not yet parsed: a frame split across reads */
	uint8_t    *pend;
	size_t		pend_len;
	size_t		pend_cap;
	size_t		need;			/* whole size of that frame, 0: unknown */
	/* a fragmented message being put together */
	char	   *msg;
	size_t		msg_len;
	size_t		msg_cap;
	int			msg_opcode;		/* 0: none in progress */
	int			msg_compressed; /* its first frame had RSV1 */
	int			deflate;		/* permessage-deflate was agreed */
	/* bytes to send (request, pongs, close) */
	char	   *out;
	size_t		out_len;
	size_t		out_cap;
} Sub;

/* per event (stamp): the lowest and highest latency of its deliveries */
typedef struct EventLat
{
	int64_t		stamp;			/* 0: empty slot */
	int64_t		min;
	int64_t		max;
} EventLat;

/* what one process measured; children send it to the parent (as ws_sub) */
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
	uint64_t	nsamples;		/* deliveries with a stamp */
	uint64_t	nover;			/* of them outside the histogram */
	uint64_t	nevents;		/* distinct stamps */
	uint64_t	nkept;			/* full samples kept (-s) */
	uint64_t	wire_bytes;		/* read off the sockets, frames and all */
	uint64_t	deflated;		/* subscribers that agreed permessage-deflate */
	uint64_t	compressed;		/* messages that came compressed */
} Totals;

/* options */

/* the server's address, resolved once */
static struct sockaddr_storage server_addr;
static socklen_t server_addrlen;
static int	host_is_name;		/* send SNI */
static char request_head[1024]; /* the upgrade request up to the key */
static int	path_index_at = -1;	/* where "{i}" is in it, or -1 */

/* this process's share of the subscribers */
static Sub *subs;
static int	nsubs;
static int	next_connect = 0;
static int	pending = 0;
static int	first_index = 0;
static int	epfd = -1;
static SSL_CTX *ssl_ctx;
static uint8_t *rbuf;			/* shared by every connection */
static uint64_t mask_state;		/* xorshift for frame masks */

static volatile sig_atomic_t stop_signal = 0;
static int	stop = 0;
static int64_t start_us = 0;
static Totals tot;

/* latencies */
static uint32_t *hist;			/* HIST_US buckets */
static int64_t *over;			/* latencies outside the histogram */
static size_t nover = 0;
static size_t capover = 0;
static EventLat *evtab;			/* open addressing on the stamp */
static size_t evcap = 0;		/* a power of two */
static size_t nevents = 0;
static Sample *kept;			/* -s only */
static size_t nkept = 0;
static size_t capkept = 0;


/* ------------------------------------------------------------ latencies */

static size_t
ev_slot(int64_t stamp, size_t cap)
{
	/*
	 * The stamp itself: events close in time land close in the table, and
	 * a read brings a run of consecutive events.
	 */
	return (size_t) stamp & (cap - 1);
}

/* fold one (stamp, min, max) into the table of events */
static void
ev_add(int64_t stamp, int64_t min, int64_t max)
{
	size_t		i;

	if ((nevents + 1) * 2 > evcap)
	{
		size_t		oldcap = evcap;
		EventLat   *old = evtab;
		size_t		k;

		evcap = evcap ? evcap * 2 : 65536;
		evtab = calloc(evcap, sizeof(EventLat));
		if (evtab == NULL)
		{
			fprintf(stderr, "ws_fast: out of memory\n");
			exit(1);
		}
		for (k = 0; k < oldcap; k++)
		{
			if (old[k].stamp == 0)
				continue;
			i = ev_slot(old[k].stamp, evcap);
			while (evtab[i].stamp != 0)
				i = (i + 1) & (evcap - 1);
			evtab[i] = old[k];
		}
		free(old);
	}
	i = ev_slot(stamp, evcap);
	while (evtab[i].stamp != 0 && evtab[i].stamp != stamp)
		i = (i + 1) & (evcap - 1);
	if (evtab[i].stamp == 0)
	{
		evtab[i].stamp = stamp;
		evtab[i].min = min;
		evtab[i].max = max;
		nevents++;
		return;
	}
	if (min < evtab[i].min)
		evtab[i].min = min;
	if (max > evtab[i].max)
		evtab[i].max = max;
}

static void
add_over(int64_t lat)
{
	if (nover == capover)
	{
		capover = capover ? capover * 2 : 4096;
		over = xrealloc(over, capover * sizeof(*over));
	}
	over[nover++] = lat;
}

static void
add_sample(int64_t stamp, int64_t lat, int sub)
{
	tot.nsamples++;
	if (lat >= 0 && lat < HIST_US)
		hist[lat]++;
	else
		add_over(lat);
	ev_add(stamp, lat, lat);
	if (opt_samples)
	{
		if (nkept == capkept)
		{
			capkept = capkept ? capkept * 2 : 65536;
			kept = xrealloc(kept, capkept * sizeof(*kept));
		}
		kept[nkept].stamp = stamp;
		kept[nkept].lat = lat;
		kept[nkept].sub = sub;
		kept[nkept].pad = 0;
		nkept++;
	}
}

/* ----------------------------------------------------------- subscribers */

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

/* end a connection; error: it never got to ST_OPEN (ws_sub's connection error) */
static void
sub_close(Sub *s, int error)
{
	if (s->fd >= 0)
	{
		if (s->ssl)
		{
			SSL_free(s->ssl);
			s->ssl = NULL;
		}
		close(s->fd);			/* also leaves the epoll set */
		s->fd = -1;
	}
	if (s->state != ST_OPEN && s->state != ST_CLOSED)
		pending--;
	s->state = ST_CLOSED;
	if (!s->closed)
	{
		s->closed = 1;
		if (error)
			tot.errors++;
	}
	free(s->pend);
	s->pend = NULL;
	s->pend_len = s->pend_cap = s->need = 0;
	free(s->msg);
	s->msg = NULL;
	s->msg_len = s->msg_cap = 0;
	free(s->out);
	s->out = NULL;
	s->out_len = s->out_cap = 0;
	check_done();
}

/* a broken frame or handshake: count it as bad and end the connection */
static void
sub_bad(Sub *s, const char *why)
{
	if (tot.bad++ < 5)
		fprintf(stderr, "ws_fast: subscriber %d: %s\n", s->index, why);
	sub_close(s, 0);
}

static void
set_events(Sub *s, uint32_t ev)
{
	struct epoll_event e;

	if (s->events == ev || s->fd < 0)
		return;
	e.events = ev;
	e.data.ptr = s;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &e) == 0)
		s->events = ev;
}

/*
 * Read into buf up to len bytes: n > 0, 0 at the end of the stream, -1
 * nothing there now, -2 an error.  With TLS it reads records until len is
 * full or none is left.
 */
static ssize_t
sub_read(Sub *s, uint8_t *buf, size_t len)
{
	ssize_t		n;

	if (s->ssl == NULL)
	{
		n = read(s->fd, buf, len);
		if (n >= 0)
			return n;
		return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : -2;
	}
	else
	{
		size_t		got = 0;

		s->tls_want_write = 0;
		while (got < len)
		{
			int			r = SSL_read(s->ssl, buf + got,
									 (int) (len - got > INT32_MAX ? INT32_MAX : len - got));

			if (r > 0)
			{
				got += (size_t) r;
				continue;
			}
			switch (SSL_get_error(s->ssl, r))
			{
				case SSL_ERROR_WANT_WRITE:
					s->tls_want_write = 1;
					/* fall through */
				case SSL_ERROR_WANT_READ:
					return got ? (ssize_t) got : -1;
				case SSL_ERROR_ZERO_RETURN:
					return got ? (ssize_t) got : 0;
				default:
					ERR_clear_error();
					return got ? (ssize_t) got : -2;
			}
		}
		return (ssize_t) got;
	}
}

/* send what is queued; -1 on a broken connection */
static int
sub_flush(Sub *s)
{
	while (s->out_len > 0)
	{
		ssize_t		n;

		if (s->ssl == NULL)
		{
			n = write(s->fd, s->out, s->out_len);
			if (n < 0)
			{
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				return -1;
			}
		}
		else
		{
			int			r = SSL_write(s->ssl, s->out, (int) s->out_len);

			if (r <= 0)
			{
				int			e = SSL_get_error(s->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				ERR_clear_error();
				return -1;
			}
			n = r;
		}
		memmove(s->out, s->out + n, s->out_len - (size_t) n);
		s->out_len -= (size_t) n;
	}
	if (s->state != ST_CLOSED)
		set_events(s, EPOLLIN | (s->out_len > 0 ? EPOLLOUT : 0));
	return 0;
}

static void
sub_queue(Sub *s, const void *data, size_t len)
{
	if (s->out_len + len > s->out_cap)
	{
		s->out_cap = (s->out_len + len) * 2;
		s->out = xrealloc(s->out, s->out_cap);
	}
	memcpy(s->out + s->out_len, data, len);
	s->out_len += len;
}

/* queue a masked control frame (client frames are always masked) */
static void
sub_control(Sub *s, int opcode, const uint8_t *payload, size_t len)
{
	uint8_t		frame[6 + 125];
	uint32_t	mask;
	size_t		i;

	mask_state ^= mask_state << 13;
	mask_state ^= mask_state >> 7;
	mask_state ^= mask_state << 17;
	mask = (uint32_t) mask_state;
	frame[0] = 0x80 | opcode;
	frame[1] = 0x80 | (uint8_t) len;
	memcpy(frame + 2, &mask, 4);
	for (i = 0; i < len; i++)
		frame[6 + i] = payload[i] ^ frame[2 + (i & 3)];
	sub_queue(s, frame, 6 + len);
}

/* ------------------------------------------------------------- messages */

/* a key to look for, as "KEY": */
typedef struct KeyPat
{
	char		s[80];
	size_t		n;
} KeyPat;

static KeyPat key_event;
static KeyPat key_data;
static KeyPat key_seq;
static KeyPat key_epoch;
static KeyPat key_field;		/* -f, or device_id */
static KeyPat key_field2;		/* without -f: first_name */

static int
key_pat(KeyPat *k, const char *key)
{
	k->n = (size_t) snprintf(k->s, sizeof(k->s), "\"%s\":", key);
	return k->n < sizeof(k->s) ? 0 : -1;
}

/*
 * ws_sub --lean's search: the value after "KEY": (and any blanks) in
 * [msg, msg + len), or NULL.  The first occurrence, as memmem() would find
 * it, but by hopping from quote to quote: cheaper on short messages.
 */
static const char *
lean_find(const char *msg, size_t len, const KeyPat *k)
{
	const char *end = msg + len;
	const char *p = msg;

	while ((p = memchr(p, '"', end - p)) != NULL)
	{
		if ((size_t) (end - p) < k->n)
			return NULL;
		if (p[1] == k->s[1] && memcmp(p, k->s, k->n) == 0)
			break;
		p++;
	}
	if (p == NULL)
		return NULL;
	p += k->n;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p < end ? p : NULL;
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

/*
 * pg_ws ends every message with , "seq": N, "epoch": "E"}: read them from
 * the end.  Returns 0 if the message does not end that way.
 */
static int
position_suffix(const char *msg, size_t len, int64_t *seq,
				const char **epoch, size_t *epoch_len)
{
	const char *end = msg + len;
	const char *q;
	const char *d;
	int64_t		n = 0;
	int64_t		scale = 1;

	if (len < 32 || end[-1] != '}' || end[-2] != '"')
		return 0;
	q = memrchr(msg, '"', len - 2);
	if (q == NULL || q - msg < 24 || memcmp(q - 9, "\"epoch\": \"", 10) != 0 ||
		q[-11] != ',' || q[-10] != ' ')
		return 0;
	*epoch = q + 1;
	*epoch_len = (size_t) (end - 2 - (q + 1));
	d = q - 12;
	while (d > msg && *d >= '0' && *d <= '9' && scale <= INT64_C(100000000000000000))
	{
		n += (*d - '0') * scale;
		scale *= 10;
		d--;
	}
	if (d == q - 12 || d - msg < 6 || memcmp(d - 6, "\"seq\": ", 7) != 0)
		return 0;
	*seq = n;
	return 1;
}

/* one complete message */
static void
handle_message(Sub *s, const char *msg, size_t len, int64_t rx_us)
{
	const char *end = msg + len;
	const char *event = NULL;
	const char *data = NULL;
	const char *sf;
	const char *v;
	const char *epoch = NULL;
	size_t		epoch_len = 0;
	int64_t		seq = -1;
	int64_t		stamp;

	/* pg_ws writes {"event": "NAME", "data": {...: try there first */
	if (len >= 11 && memcmp(msg, "{\"event\": \"", 11) == 0)
	{
		const char *q = memchr(msg + 11, '"', len - 11);

		event = msg + 10;
		if (q && end - q > 12 && memcmp(q, "\", \"data\": {", 12) == 0)
			data = q + 11;
	}
	else if (len >= 2 && msg[0] == '{')
		event = lean_find(msg, len, &key_event);
	if (data == NULL && event != NULL)
		data = lean_find(msg, len, &key_data);
	if (len < 2 || msg[0] != '{' || event == NULL || *event != '"' ||
		data == NULL || *data != '{')
	{
		if (tot.bad++ < 5)
			fprintf(stderr, "ws_fast: subscriber %d: not a pg_ws event: %.*s\n",
					s->index, (int) (len > 200 ? 200 : len), msg);
		return;
	}

	if (!position_suffix(msg, len, &seq, &epoch, &epoch_len))
	{
		seq = lean_number(lean_find(msg, len, &key_seq), end);
		if ((v = lean_find(msg, len, &key_epoch)) != NULL && *v == '"')
		{
			const char *q = memchr(v + 1, '"', end - v - 1);

			if (q)
			{
				epoch = v + 1;
				epoch_len = (size_t) (q - v - 1);
			}
		}
	}
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
	if (tot.epoch[0] == '\0' && epoch && epoch_len < sizeof(tot.epoch))
	{
		memcpy(tot.epoch, epoch, epoch_len);
		tot.epoch[epoch_len] = '\0';
	}
	if (end - event >= 17 && memcmp(event, "\"resync_required\"", 17) == 0)
	{
		tot.resync++;
		return;
	}

	/* the stamp field, inside "data" */
	if ((sf = lean_find(data, end - data, &key_field)) == NULL && !opt_field)
		sf = lean_find(data, end - data, &key_field2);
	if (opt_end && sf && *sf == '"' &&
		sf + 1 + opt_end_len < end && memcmp(sf + 1, opt_end, opt_end_len) == 0 &&
		sf[1 + opt_end_len] == '"')
	{
		sub_finished(s);
		return;
	}
	stamp = (sf && *sf == '"' && sf[1] >= '0' && sf[1] <= '9') ? lean_number(sf, end) :
		(sf && *sf >= '0' && *sf <= '9') ? lean_number(sf, end) : -1;

	/* count it (ws_sub's count_message) */
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

/* ---------------------------------------------------------------- frames */

/*
 * Parse the frames in p[0, n), all received at rx_us.  Returns how many
 * bytes were used (the rest is the start of a frame; s->need is then its
 * whole size if its header is complete), or -1 if the connection ended.
 */
/*
 * A compressed message (RSV1): inflated from an empty window (pg_ws agrees
 * no context takeover), then checked as any other.  One stream and one
 * buffer per process.
 */
static void
handle_compressed(Sub *s, const uint8_t *payload, size_t len, int64_t rx_us)
{
	static z_stream zs;
	static int	zs_ready = 0;
	static uint8_t *out = NULL;
	static size_t out_cap = 0;
	static const uint8_t tail[4] = {0x00, 0x00, 0xFF, 0xFF};
	size_t		out_len = 0;
	int			pass;

	if (!zs_ready)
	{
		if (inflateInit2(&zs, -15) != Z_OK)
		{
			sub_bad(s, "inflateInit2 failed");
			return;
		}
		zs_ready = 1;
	}
	else
		inflateReset(&zs);
	for (pass = 0; pass < 2; pass++)
	{
		zs.next_in = (Bytef *) (pass == 0 ? payload : tail);
		zs.avail_in = (uInt) (pass == 0 ? len : sizeof(tail));
		while (zs.avail_in > 0)
		{
			int			rc;

			if (out_cap - out_len < 65536)
			{
				out_cap = out_cap ? out_cap * 2 : 1024 * 1024;
				if (out_cap > MAX_MESSAGE + 65536)
				{
					sub_bad(s, "a compressed message over 64 MB");
					return;
				}
				out = xrealloc(out, out_cap);
			}
			zs.next_out = out + out_len;
			zs.avail_out = (uInt) (out_cap - out_len);
			rc = inflate(&zs, Z_SYNC_FLUSH);
			out_len = out_cap - zs.avail_out;
			if (rc == Z_STREAM_END)
				break;
			if (rc != Z_OK && rc != Z_BUF_ERROR)
			{
				sub_bad(s, "a compressed message that does not inflate");
				return;
			}
			if (rc == Z_BUF_ERROR && zs.avail_out > 0)
				break;
		}
	}
	tot.compressed++;
	handle_message(s, (const char *) out, out_len, rx_us);
}

static ssize_t
parse_frames(Sub *s, uint8_t *p, size_t n, int64_t rx_us)
{
	size_t		off = 0;

	s->need = 0;
	while (s->state == ST_OPEN && n - off >= 2)
	{
		uint8_t		b0 = p[off];
		uint8_t		b1 = p[off + 1];
		int			fin = (b0 & 0x80) != 0;
		int			opcode = b0 & 0x0F;
		uint64_t	plen = b1 & 0x7F;
		size_t		hdr = 2;
		uint8_t    *payload;

		int			rsv1 = (b0 & 0x40) != 0;

		if (rsv1 && s->deflate && (opcode == 1 || opcode == 2))
			b0 &= ~0x40;		/* a compressed message's first frame */
		if (b0 & 0x70)
			return sub_bad(s, "frame with reserved bits set"), -1;
		if (b1 & 0x80)
			return sub_bad(s, "masked frame from the server"), -1;
		if (opcode >= 3 && opcode <= 7)
			return sub_bad(s, "frame with a reserved data opcode"), -1;
		if (opcode > 0xA)
			return sub_bad(s, "frame with a reserved control opcode"), -1;
		if (opcode >= 8 && (!fin || plen > 125))
			return sub_bad(s, "fragmented or oversized control frame"), -1;
		if (opcode == 0 && s->msg_opcode == 0)
			return sub_bad(s, "continuation frame outside a fragmented message"), -1;
		if ((opcode == 1 || opcode == 2) && s->msg_opcode != 0)
			return sub_bad(s, "new message inside a fragmented one"), -1;
		if (plen == 126)
		{
			if (n - off < 4)
				break;
			plen = ((uint64_t) p[off + 2] << 8) | p[off + 3];
			hdr = 4;
			if (plen < 126)
				return sub_bad(s, "frame length not in its shortest form"), -1;
		}
		else if (plen == 127)
		{
			int			k;

			if (n - off < 10)
				break;
			plen = 0;
			for (k = 0; k < 8; k++)
				plen = (plen << 8) | p[off + 2 + k];
			hdr = 10;
			if (plen >> 63)
				return sub_bad(s, "frame length with its top bit set"), -1;
			if (plen <= 0xFFFF)
				return sub_bad(s, "frame length not in its shortest form"), -1;
		}
		if (plen > MAX_MESSAGE || s->msg_len + plen > MAX_MESSAGE)
			return sub_bad(s, "message over 64 MB"), -1;
		if (n - off < hdr + plen)
		{
			s->need = hdr + (size_t) plen;
			break;
		}
		payload = p + off + hdr;
		off += hdr + (size_t) plen;

		switch (opcode)
		{
			case 0x1:			/* text */
			case 0x2:			/* binary: checked like text (never valid) */
				s->msg_compressed = rsv1;
				if (fin)
				{
					if (s->msg_compressed)
						handle_compressed(s, payload, (size_t) plen, rx_us);
					else
						handle_message(s, (const char *) payload, (size_t) plen, rx_us);
					break;
				}
				s->msg_opcode = opcode;
				s->msg_len = 0;
				/* fall through */
			case 0x0:			/* continuation */
				if (s->msg_len + plen > s->msg_cap)
				{
					s->msg_cap = (s->msg_len + plen) * 2;
					s->msg = xrealloc(s->msg, s->msg_cap);
				}
				memcpy(s->msg + s->msg_len, payload, (size_t) plen);
				s->msg_len += (size_t) plen;
				if (fin)
				{
					s->msg_opcode = 0;
					if (s->msg_compressed)
						handle_compressed(s, (uint8_t *) s->msg, s->msg_len, rx_us);
					else
						handle_message(s, s->msg, s->msg_len, rx_us);
					s->msg_len = 0;
				}
				break;
			case 0x8:			/* close: answer it and hang up */
				if (plen == 1)
					return sub_bad(s, "close frame with a 1-byte payload"), -1;
				sub_control(s, 0x8, payload, plen >= 2 ? 2 : 0);
				(void) sub_flush(s);
				if (!s->finished && !stop)
					fprintf(stderr, "ws_fast: subscriber %d closed by the server after %" PRIu64 " messages\n",
							s->index, s->count);
				sub_close(s, 0);
				return -1;
			case 0x9:			/* ping */
				sub_control(s, 0xA, payload, (size_t) plen);
				if (sub_flush(s) != 0)
				{
					sub_close(s, 0);
					return -1;
				}
				break;
			case 0xA:			/* pong: nothing to do */
				break;
		}
	}
	return s->state == ST_OPEN ? (ssize_t) off : -1;
}

/* keep the unparsed tail p[used, n) for the next read */
static void
keep_tail(Sub *s, const uint8_t *p, size_t used, size_t n)
{
	size_t		rest = n - used;

	s->pend_len = rest;
	if (rest == 0)
		return;
	if (rest > s->pend_cap)
	{
		s->pend_cap = rest > 4096 ? rest : 4096;
		free(s->pend);
		s->pend = xrealloc(NULL, s->pend_cap);
	}
	memmove(s->pend, p + used, rest);
	s->pend_len = rest;
}

/* the socket of an open connection is readable */
static void
on_readable_open(Sub *s)
{
	do
	{
		ssize_t		n;
		ssize_t		used;
		int64_t		rx_us;

		if (s->pend_len > 0 && s->need > BIG_FRAME)
		{
			/* the rest of a big frame, straight into its own buffer */
			if (s->pend_cap < s->need)
			{
				s->pend_cap = s->need;
				s->pend = xrealloc(s->pend, s->pend_cap);
			}
			n = sub_read(s, s->pend + s->pend_len, s->need - s->pend_len);
			if (n <= 0)
				goto not_read;
			tot.wire_bytes += (uint64_t) n;
			s->pend_len += (size_t) n;
			if (s->pend_len < s->need)
				continue;
			rx_us = now_realtime_us();
			used = parse_frames(s, s->pend, s->pend_len, rx_us);
			if (used < 0)
				return;
			keep_tail(s, s->pend, (size_t) used, s->pend_len);
			continue;
		}

		/* the usual case: a partial frame (if any), then one big read */
		memcpy(rbuf, s->pend, s->pend_len);
		n = sub_read(s, rbuf + s->pend_len, READ_SIZE);
		if (n <= 0)
			goto not_read;
		tot.wire_bytes += (uint64_t) n;
		rx_us = now_realtime_us();
		used = parse_frames(s, rbuf, s->pend_len + (size_t) n, rx_us);
		if (used < 0)
			return;
		keep_tail(s, rbuf, (size_t) used, s->pend_len + (size_t) n);
		continue;

not_read:
		if (n == 0 || n == -2)
		{
			if (!s->finished && !stop)
				fprintf(stderr, "ws_fast: subscriber %d: connection %s after %" PRIu64 " messages\n",
						s->index, n == 0 ? "closed by the server" : "failed", s->count);
			sub_close(s, 0);
		}
		else if (s->ssl)
			set_events(s, EPOLLIN | (s->tls_want_write || s->out_len ? EPOLLOUT : 0));
		return;
	} while (s->ssl && SSL_has_pending(s->ssl) && s->state == ST_OPEN);
}

/* ------------------------------------------------------------- handshake */

static void
all_connected(void)
{
	FILE	   *f;
	char		one = 1;
	ssize_t		rc;

	tot.all_connected = now_realtime_us();
	if (bench_ready_fd >= 0)
	{
		rc = write(bench_ready_fd, &one, 1);
		(void) rc;
		close(bench_ready_fd);
		bench_ready_fd = -1;
		return;
	}
	if (!opt_quiet)
		fprintf(stderr, "ws_fast: %d subscribers connected in %.3f s\n",
				tot.connected, (tot.all_connected - start_us) / 1e6);
	if (opt_ready == NULL)
		return;
	f = fopen(opt_ready, "w");
	if (f == NULL)
	{
		fprintf(stderr, "ws_fast: cannot create %s: %s\n", opt_ready, strerror(errno));
		return;
	}
	fprintf(f, "%d %.3f\n", opt_subs, (tot.all_connected - start_us) / 1e6);
	fclose(f);
}

/* a connection that did not come up (ws_sub: a connection error) */
static void
sub_fail(Sub *s, const char *why)
{
	fprintf(stderr, "ws_fast: subscriber %d: connection error: %s\n", s->index, why);
	sub_close(s, 1);
}

/* queue the upgrade request with a fresh key, and remember its answer */
static void
send_request(Sub *s)
{
	unsigned char raw[16];
	char		key[32];
	char		buf[sizeof(request_head) + 96];
	unsigned char digest[SHA_DIGEST_LENGTH];
	char		cat[96];
	int			n;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
	{
		sub_fail(s, "no random bytes for Sec-WebSocket-Key");
		return;
	}
	EVP_EncodeBlock((unsigned char *) key, raw, sizeof(raw));
	snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	SHA1((unsigned char *) cat, strlen(cat), digest);
	EVP_EncodeBlock((unsigned char *) s->accept, digest, sizeof(digest));
	if (path_index_at >= 0)
		n = snprintf(buf, sizeof(buf), "%.*s%d%sSec-WebSocket-Key: %s\r\n\r\n",
					 path_index_at, request_head, s->index,
					 request_head + path_index_at + 3, key);
	else
		n = snprintf(buf, sizeof(buf), "%sSec-WebSocket-Key: %s\r\n\r\n",
					 request_head, key);
	sub_queue(s, buf, (size_t) n);
	s->state = ST_RESPONSE;
	if (sub_flush(s) != 0)
		sub_fail(s, "cannot send the upgrade request");
}

/* the value of header NAME in the head of an HTTP answer, or NULL */
static const char *
find_header(const char *head, const char *name, size_t *vlen)
{
	const char *p = strstr(head, "\r\n");
	size_t		nlen = strlen(name);

	while (p && p[2] != '\r' && p[2] != '\0')
	{
		const char *line = p + 2;
		const char *eol = strstr(line, "\r\n");

		if (eol == NULL)
			return NULL;
		if ((size_t) (eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
			line[nlen] == ':')
		{
			const char *v = line + nlen + 1;
			const char *e = eol;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*vlen = (size_t) (e - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

/* read the server's answer to the upgrade; frames may follow it at once */
static void
on_readable_response(Sub *s)
{
	ssize_t		n;
	char	   *head;
	char	   *eoh;
	const char *v;
	size_t		vlen;
	size_t		used;

	if (s->pend_cap < RESPONSE_MAX + 1)
	{
		s->pend_cap = RESPONSE_MAX + 1;
		s->pend = xrealloc(s->pend, s->pend_cap);
	}
	n = sub_read(s, s->pend + s->pend_len, RESPONSE_MAX - s->pend_len);
	if (n == -1)
	{
		if (s->ssl)
			set_events(s, EPOLLIN | (s->tls_want_write || s->out_len ? EPOLLOUT : 0));
		return;
	}
	if (n <= 0)
	{
		sub_fail(s, "the server closed the connection during the upgrade");
		return;
	}
	s->pend_len += (size_t) n;
	s->pend[s->pend_len] = '\0';
	head = (char *) s->pend;
	eoh = memmem(head, s->pend_len, "\r\n\r\n", 4);
	if (eoh == NULL)
	{
		if (s->pend_len >= RESPONSE_MAX)
			sub_fail(s, "the answer to the upgrade is too long");
		return;
	}
	eoh[2] = '\0';				/* keep the last header's \r\n */
	if (strncmp(head, "HTTP/1.1 101", 12) != 0 || (head[12] != ' ' && head[12] != '\r'))
	{
		char		line[200];
		char	   *e = strstr(head, "\r\n");

		snprintf(line, sizeof(line), "upgrade refused: %.*s", (int) (e ? e - head : 100), head);
		sub_fail(s, line);
		return;
	}
	v = find_header(head, "Sec-WebSocket-Accept", &vlen);
	if (v == NULL || vlen != strlen(s->accept) || memcmp(v, s->accept, vlen) != 0)
	{
		sub_fail(s, "missing or wrong Sec-WebSocket-Accept");
		return;
	}
	v = find_header(head, "Sec-WebSocket-Extensions", &vlen);
	if (v != NULL)
	{
		/* what we offered, with no context takeover (all we inflate) */
		if (!opt_deflate || vlen < 18 || memcmp(v, "permessage-deflate", 18) != 0 ||
			memmem(v, vlen, "server_no_context_takeover", 26) == NULL)
		{
			sub_fail(s, "an extension we cannot use was agreed");
			return;
		}
		s->deflate = 1;
		tot.deflated++;
	}

	s->state = ST_OPEN;
	s->connected = 1;
	pending--;
	tot.connected++;
	if (tot.connected == nsubs)
		all_connected();

	/* frames that came with the answer */
	used = (size_t) (eoh + 4 - head);
	memmove(s->pend, s->pend + used, s->pend_len - used);
	s->pend_len -= used;
	if (s->pend_len > 0)
	{
		ssize_t		u;

		memcpy(rbuf, s->pend, s->pend_len);
		u = parse_frames(s, rbuf, s->pend_len, now_realtime_us());
		if (u < 0)
			return;
		keep_tail(s, rbuf, (size_t) u, s->pend_len);
	}
	/* TLS may hold more records than the socket shows */
	if (s->ssl && SSL_has_pending(s->ssl))
		on_readable_open(s);
}

static void
tls_step(Sub *s)
{
	int			r = SSL_connect(s->ssl);

	if (r == 1)
	{
		send_request(s);
		return;
	}
	switch (SSL_get_error(s->ssl, r))
	{
		case SSL_ERROR_WANT_READ:
			set_events(s, EPOLLIN);
			break;
		case SSL_ERROR_WANT_WRITE:
			set_events(s, EPOLLOUT);
			break;
		default:
			{
				char		why[256];

				snprintf(why, sizeof(why), "TLS handshake failed: %s",
						 ERR_reason_error_string(ERR_peek_last_error()) ?
						 ERR_reason_error_string(ERR_peek_last_error()) : "connection closed");
				ERR_clear_error();
				sub_fail(s, why);
			}
	}
}

/* the TCP connection is up (or failed) */
static void
on_connected(Sub *s)
{
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
	{
		sub_fail(s, strerror(err ? err : errno));
		return;
	}
	if (!opt_tls)
	{
		send_request(s);
		return;
	}
	s->ssl = SSL_new(ssl_ctx);
	if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1 ||
		(host_is_name && SSL_set_tlsext_host_name(s->ssl, opt_host) != 1))
	{
		sub_fail(s, "cannot set up TLS");
		return;
	}
	s->state = ST_TLS;
	tls_step(s);
}

/*
 * --sources: bind subscriber s to 127.0.0.(1 + index mod N) before its
 * connect.  One source address has the ephemeral ports (32768-60999) for
 * about 28,000 connections to the server's one address and port; the port
 * is picked at connect(), per destination (IP_BIND_ADDRESS_NO_PORT).
 */
static int
bind_source(Sub *s)
{
	struct sockaddr_in src;
	int			one = 1;

	if (server_addr.ss_family != AF_INET)
	{
		errno = EAFNOSUPPORT;
		return -1;
	}
	memset(&src, 0, sizeof(src));
	src.sin_family = AF_INET;
	src.sin_addr.s_addr = htonl(0x7f000001 + (uint32_t) (s->index % opt_sources));
	setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	return bind(s->fd, (struct sockaddr *) &src, sizeof(src));
}

static void
start_connects(void)
{
	while (next_connect < nsubs &&
		   (opt_max_pending <= 0 || pending < opt_max_pending))
	{
		Sub		   *s = &subs[next_connect++];
		struct epoll_event e;
		int			one = 1;

		s->index = first_index + (int) (s - subs);
		s->state = ST_TCP;
		pending++;
		s->fd = socket(server_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (s->fd < 0)
		{
			sub_fail(s, strerror(errno));
			continue;
		}
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (opt_sources > 1 && bind_source(s) != 0)
		{
			sub_fail(s, strerror(errno));
			continue;
		}
		e.events = EPOLLOUT;
		e.data.ptr = s;
		s->events = EPOLLOUT;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &e) != 0)
		{
			sub_fail(s, strerror(errno));
			continue;
		}
		if (connect(s->fd, (struct sockaddr *) &server_addr, server_addrlen) != 0 &&
			errno != EINPROGRESS)
			sub_fail(s, strerror(errno));
	}
}

static void
on_event(Sub *s, uint32_t ev)
{
	switch (s->state)
	{
		case ST_TCP:
			on_connected(s);
			break;
		case ST_TLS:
			tls_step(s);
			break;
		case ST_RESPONSE:
			if ((ev & EPOLLOUT) && s->out_len && sub_flush(s) != 0)
			{
				sub_fail(s, "cannot send the upgrade request");
				break;
			}
			if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
				on_readable_response(s);
			break;
		case ST_OPEN:
			if ((ev & EPOLLOUT) && s->out_len && sub_flush(s) != 0)
			{
				sub_close(s, 0);
				break;
			}
			if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP) ||
				(s->tls_want_write && (ev & EPOLLOUT)))
				on_readable_open(s);
			break;
		default:
			break;
	}
}

static void
on_signal(int sig)
{
	stop_signal = 1;
	bench_signal_children(sig);
}

/*
 * Run subscribers [first, first + count) in this process until they are
 * done; fills tot and the latency tables.
 */
static int
run_subscribers(int first, int count)
{
	struct epoll_event *evs;
	int			maxev = 1024;
	int			i;

	nsubs = count;
	memset(&tot, 0, sizeof(tot));
	tot.subs = count;
	tot.min_count = UINT64_MAX;
	first_index = first;
	next_connect = 0;
	pending = 0;

	if (RAND_bytes((unsigned char *) &mask_state, sizeof(mask_state)) != 1 || mask_state == 0)
		mask_state = (uint64_t) now_realtime_us() | 1;
	subs = calloc((size_t) count, sizeof(Sub));
	hist = calloc(HIST_US, sizeof(uint32_t));
	rbuf = malloc(READ_SIZE + BIG_FRAME + 16);
	evs = malloc(maxev * sizeof(*evs));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (subs == NULL || hist == NULL || rbuf == NULL || evs == NULL || epfd < 0)
	{
		fprintf(stderr, "ws_fast: out of memory or no epoll\n");
		return 1;
	}
	for (i = 0; i < count; i++)
		subs[i].fd = -1;
	if (opt_tls)
	{
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (ssl_ctx == NULL)
		{
			fprintf(stderr, "ws_fast: cannot create a TLS context\n");
			return 1;
		}
		/* a benchmark of a local server: any certificate, self-signed too */
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
						 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		SSL_CTX_set_read_ahead(ssl_ctx, 1);
	}

	start_connects();
	check_done();
	while (!stop)
	{
		int			nev = epoll_wait(epfd, evs, maxev, 20);

		if (nev < 0 && errno != EINTR)
		{
			perror("ws_fast: epoll_wait");
			break;
		}
		for (i = 0; i < nev; i++)
		{
			Sub		   *s = evs[i].data.ptr;

			if (s->state != ST_CLOSED)
				on_event(s, evs[i].events);
		}
		if (next_connect < nsubs)
			start_connects();
		if (stop_signal)
			stop = 1;
		if (opt_timeout > 0 && now_realtime_us() - start_us > (int64_t) (opt_timeout * 1e6))
		{
			tot.timed_out = 1;
			stop = 1;
		}
	}

	for (i = 0; i < count; i++)
	{
		if (subs[i].count < tot.min_count)
			tot.min_count = subs[i].count;
		if (subs[i].count > tot.max_count)
			tot.max_count = subs[i].count;
		if (subs[i].fd >= 0)
		{
			subs[i].closed = 1; /* stopping: no message, no error */
			sub_close(&subs[i], 0);
		}
	}
	tot.nover = nover;
	tot.nevents = nevents;
	tot.nkept = nkept;
	close(epfd);
	free(evs);
	free(rbuf);
	free(subs);
	if (ssl_ctx)
		SSL_CTX_free(ssl_ctx);
	return 0;
}

/* -------------------------------------------------------- several procs */

/* a child's report: its totals, histogram, outliers, events, samples */
static int
send_report(int fd)
{
	size_t		k;

	if (write_all(fd, &tot, sizeof(tot)) != 0 ||
		write_all(fd, hist, HIST_US * sizeof(uint32_t)) != 0 ||
		write_all(fd, over, nover * sizeof(*over)) != 0 ||
		write_all(fd, kept, nkept * sizeof(*kept)) != 0)
		return -1;
	for (k = 0; k < evcap; k++)
		if (evtab[k].stamp != 0 && write_all(fd, &evtab[k], sizeof(EventLat)) != 0)
			return -1;
	return 0;
}

/* add a child's totals to the parent's (as ws_sub's merge) */
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
	tot.nsamples += t->nsamples;
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
	tot.wire_bytes += t->wire_bytes;
	tot.deflated += t->deflated;
	tot.compressed += t->compressed;
	if (tot.epoch[0] == '\0')
		memcpy(tot.epoch, t->epoch, sizeof(tot.epoch));
}

/* read one child's report after its totals t */
static int
read_report(int fd, Totals *t, uint32_t *h)
{
	size_t		k;

	if (read_all(fd, h, HIST_US * sizeof(uint32_t)) != 0)
		return -1;
	for (k = 0; k < HIST_US; k++)
		hist[k] += h[k];
	if (nover + t->nover > capover)
	{
		capover = nover + t->nover;
		over = xrealloc(over, capover * sizeof(*over));
	}
	if (read_all(fd, over + nover, t->nover * sizeof(*over)) != 0)
		return -1;
	nover += t->nover;
	if (nkept + t->nkept > capkept)
	{
		capkept = nkept + t->nkept;
		kept = xrealloc(kept, capkept * sizeof(*kept));
	}
	if (read_all(fd, kept + nkept, t->nkept * sizeof(*kept)) != 0)
		return -1;
	nkept += t->nkept;
	for (k = 0; k < t->nevents; k++)
	{
		EventLat	e;

		if (read_all(fd, &e, sizeof(e)) != 0)
			return -1;
		ev_add(e.stamp, e.min, e.max);
	}
	return 0;
}

/* the fan-out's parent side (common.c): reports into tot and hist */
static uint32_t *report_hist;

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
	hist = calloc(HIST_US, sizeof(uint32_t));
	report_hist = malloc(HIST_US * sizeof(uint32_t));
	if (hist == NULL || report_hist == NULL)
	{
		fprintf(stderr, "ws_fast: out of memory\n");
		return 1;
	}
	return 0;
}

static int
fan_receive(int fd)
{
	Totals		t;

	if (read_all(fd, &t, sizeof(t)) != 0 || read_report(fd, &t, report_hist) != 0)
		return -1;
	merge(&t);
	return 0;
}

static void
fan_end(void)
{
	free(report_hist);
}

static const BenchFanOut fan_out = {
	.run_share = run_subscribers,
	.send_report = send_report,
	.all_connected = fan_all_connected,
	.begin_reports = fan_begin,
	.receive_report = fan_receive,
	.end_reports = fan_end,
};

/* ---------------------------------------------------------------- report */

/* the nearest rank of percentile p among n values (as ws_sub), 1-based */
static size_t
rank_of(size_t n, double p)
{
	size_t		rank = (size_t) (p / 100.0 * n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return rank;
}

/*
 * The rank-th smallest latency (1-based) over the sorted outliers (those
 * below 0 first) and the histogram; -1 if there is none.
 */
static int64_t
lat_at(size_t rank)
{
	size_t		nneg = 0;
	size_t		k;
	uint64_t	seen;

	if (rank == 0 || rank > tot.nsamples)
		return -1;
	while (nneg < nover && over[nneg] < 0)
		nneg++;
	if (rank <= nneg)
		return over[rank - 1];
	seen = nneg;
	for (k = 0; k < HIST_US; k++)
	{
		seen += hist[k];
		if (seen >= rank)
			return (int64_t) k;
	}
	return over[nneg + (rank - seen) - 1];
}

static int64_t
pct_lat(double p)
{
	return tot.nsamples ? lat_at(rank_of(tot.nsamples, p)) : -1;
}

static int64_t
pct(const int64_t *v, size_t n, double p)
{
	return n ? v[rank_of(n, p) - 1] : -1;
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
	int64_t    *first;
	int64_t    *spread;
	int64_t    *last;
	size_t		nev = 0;
	struct addrinfo hints;
	struct addrinfo *ai;
	struct in6_addr a6;
	char		hostport[300];
	int			rc;

	rc = bench_options(argc, argv, "ws_fast", "  -L, --lean            accepted for ws_sub's sake; ws_fast is always lean\n"
							 "  -T, --tls             wss:// (any server certificate is accepted)\n"
							 "      --deflate         offer permessage-deflate and inflate what comes\n"
							 "                        compressed (RESULT: wire_bytes, deflated, compressed)\n");
	if (rc >= 0)
		return rc;

	if (key_pat(&key_field, opt_field ? opt_field : "device_id") != 0)
	{
		fprintf(stderr, "ws_fast: --field is too long\n");
		return 1;
	}
	key_pat(&key_field2, "first_name");
	key_pat(&key_event, "event");
	key_pat(&key_data, "data");
	key_pat(&key_seq, "seq");
	key_pat(&key_epoch, "epoch");

	/* the address, once for every connection */
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(hostport, sizeof(hostport), "%d", opt_port);
	rc = getaddrinfo(opt_host, hostport, &hints, &ai);
	if (rc != 0)
	{
		fprintf(stderr, "ws_fast: cannot resolve %s: %s\n", opt_host, gai_strerror(rc));
		return 1;
	}
	memcpy(&server_addr, ai->ai_addr, ai->ai_addrlen);
	server_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	host_is_name = inet_pton(AF_INET, opt_host, &a6) != 1 &&
		inet_pton(AF_INET6, opt_host, &a6) != 1;
	if (strchr(opt_host, ':'))
		snprintf(hostport, sizeof(hostport), "[%s]:%d", opt_host, opt_port);
	else
		snprintf(hostport, sizeof(hostport), "%s:%d", opt_host, opt_port);
	if ((size_t) snprintf(request_head, sizeof(request_head),
						  "GET %s HTTP/1.1\r\n"
						  "Host: %s\r\n"
						  "Upgrade: websocket\r\n"
						  "Connection: Upgrade\r\n"
						  "Sec-WebSocket-Version: 13\r\n%s",
						  opt_path, hostport,
						  opt_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "")
		>= sizeof(request_head))
	{
		fprintf(stderr, "ws_fast: --path is too long\n");
		return 1;
	}
	if (strstr(request_head, "{i}") != NULL)
		path_index_at = (int) (strstr(request_head, "{i}") - request_head);

	raise_fd_limit();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

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

	/* latencies: outliers sorted; per event, the first and the spread */
	if (nover > 0)
		qsort(over, nover, sizeof(*over), cmp_i64);
	first = malloc((nevents + 1) * sizeof(int64_t));
	spread = malloc((nevents + 1) * sizeof(int64_t));
	last = malloc((nevents + 1) * sizeof(int64_t));
	if (first == NULL || spread == NULL || last == NULL)
	{
		fprintf(stderr, "ws_fast: out of memory\n");
		return 1;
	}
	for (i = 0; i < evcap; i++)
		if (evtab[i].stamp != 0)
		{
			first[nev] = evtab[i].min;
			spread[nev] = evtab[i].max - evtab[i].min;
			last[nev] = evtab[i].max;
			nev++;
		}
	qsort(first, nev, sizeof(int64_t), cmp_i64);
	qsort(spread, nev, sizeof(int64_t), cmp_i64);
	qsort(last, nev, sizeof(int64_t), cmp_i64);
	if (opt_samples)
	{
		FILE	   *f = fopen(opt_samples, "w");

		if (nkept > 0)
			qsort(kept, nkept, sizeof(*kept), cmp_sample);
		if (f == NULL)
			fprintf(stderr, "ws_fast: cannot create %s: %s\n", opt_samples, strerror(errno));
		else
		{
			for (i = 0; i < nkept; i++)
				fprintf(f, "%" PRId64 " %d %" PRId64 "\n",
						kept[i].stamp + kept[i].lat, kept[i].sub, kept[i].lat);
			fclose(f);
		}
	}
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
		if (tot.nsamples)
		{
			printf("latency (us)     p50 %" PRId64 "  p90 %" PRId64 "  p99 %" PRId64 "  p99.9 %" PRId64 "  max %" PRId64 "  min %" PRId64 " (%" PRIu64 " deliveries)\n",
				   pct_lat(50), pct_lat(90), pct_lat(99), pct_lat(99.9),
				   lat_at(tot.nsamples), lat_at(1), tot.nsamples);
			printf("first delivery   p50 %" PRId64 "  p99 %" PRId64 "  max %" PRId64 " (%zu events)\n",
				   pct(first, nev, 50), pct(first, nev, 99), first[nev - 1], nev);
			printf("spread (last-first) p50 %" PRId64 "  p99 %" PRId64 "  max %" PRId64 "\n",
				   pct(spread, nev, 50), pct(spread, nev, 99), spread[nev - 1]);
			printf("last delivery    p50 %" PRId64 "  p99 %" PRId64 "  max %" PRId64 "\n",
				   pct(last, nev, 50), pct(last, nev, 99), last[nev - 1]);
		}
		printf("positions        seq %" PRIu64 " .. %" PRIu64 ", epoch %s, %" PRIu64 " not increasing, %" PRIu64 " resync_required\n",
			   tot.first_seq, tot.last_seq, tot.epoch[0] ? tot.epoch : "-",
			   tot.seq_backwards, tot.resync);
		printf("ws_fast CPU      %.2f s\n", cpu_s);
		if (tot.timed_out)
			printf("timed out after %.1f s\n", opt_timeout);
	}
	printf("RESULT subs=%d connected=%d errors=%d finished=%d msgs=%" PRIu64
		   " per_sub_min=%" PRIu64 " per_sub_max=%" PRIu64 " bad=%" PRIu64
		   " window_s=%.3f msgs_per_s=%.0f lat_n=%" PRIu64 " p50_us=%" PRId64
		   " p90_us=%" PRId64 " p99_us=%" PRId64 " max_us=%" PRId64
		   " events=%zu first_p50_us=%" PRId64 " first_p99_us=%" PRId64
		   " spread_p50_us=%" PRId64 " spread_p99_us=%" PRId64
		   " last_p50_us=%" PRId64 " last_p99_us=%" PRId64 " last_max_us=%" PRId64
		   " cpu_s=%.2f timeout=%d done_s=%.3f first_seq=%" PRIu64
		   " last_seq=%" PRIu64 " epoch=%s seq_backwards=%" PRIu64
		   " resync=%" PRIu64 " connect_s=%.3f bytes=%" PRIu64
		   " wire_bytes=%" PRIu64 " deflated=%" PRIu64 " compressed=%" PRIu64 "\n",
		   opt_subs, tot.connected, tot.errors, tot.finished, tot.msgs,
		   tot.min_count, tot.max_count, tot.bad,
		   window, window > 0 ? tot.msgs / window : 0.0, tot.nsamples,
		   pct_lat(50), pct_lat(90), pct_lat(99),
		   tot.nsamples ? lat_at(tot.nsamples) : -1,
		   nev, pct(first, nev, 50), pct(first, nev, 99),
		   pct(spread, nev, 50), pct(spread, nev, 99),
		   pct(last, nev, 50), pct(last, nev, 99), nev ? last[nev - 1] : -1,
		   cpu_s, tot.timed_out,
		   tot.done_us ? (tot.done_us - start_us) / 1e6 : -1.0,
		   tot.first_seq, tot.last_seq, tot.epoch[0] ? tot.epoch : "-",
		   tot.seq_backwards, tot.resync,
		   tot.all_connected ? (tot.all_connected - start_us) / 1e6 : -1.0,
		   tot.bytes, tot.wire_bytes, tot.deflated, tot.compressed);
	fflush(stdout);

	if (status == 0 && (tot.finished != opt_subs || tot.bad != 0))
		status = 2;
	free(first);
	free(spread);
	return status;
}
