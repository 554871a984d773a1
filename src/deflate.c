/*-------------------------------------------------------------------------
 *
 * deflate.c
 *	  permessage-deflate (RFC 7692): the offer a subscriber makes, the
 *	  compression of a message once for every subscriber that accepted it,
 *	  and the bounded inflation of what such a subscriber sends.
 *
 * This file owns the negotiation of the extension, the two zlib streams
 * of the worker (one to compress, one to inflate) and the framing of a
 * subscriber that accepted compression (pgws_ws_deflate_framing: RFC 6455
 * frames whose payload is compressed, RSV1 set; what its peer sends and
 * its control frames are ws.c's).  It must not decide who may subscribe
 * (http.c asks it whether an offer is accepted) nor what a subscriber is
 * sent (broadcast.c).
 *
 * Why "no context takeover" on both sides.  A compressor that keeps its
 * sliding window from one message to the next (the default) compresses
 * each message for one connection only: 10,000 subscribers would cost
 * 10,000 compressions and 10,000 windows of 32 kB.  pg_ws answers every
 * offer with server_no_context_takeover (RFC 7692 7.1.1.1 lets a server
 * add it unasked), so a message is compressed once, from an empty
 * window, and the same bytes go to every subscriber that accepted
 * compression; and with client_no_context_takeover, so that what a
 * subscriber sends (its auth messages) is inflated from an empty window
 * too, with one stream for all and no memory kept per connection.  An
 * offer that limits the server's window below 32 kB
 * (server_max_window_bits < 15) is declined: it would need bytes of its
 * own.
 *
 * Small messages.  A message shorter than pg_ws.compression_min_size, or
 * one that would not shrink, goes in a plain frame (RSV1 clear), which RFC
 * 7692 allows per message: compressing 200 bytes of JSON costs more worker
 * time than the bytes it saves are worth.
 *
 * Bounds.  A subscriber's compressed message is inflated at most to the
 * size its uncompressed form may have (the caller's max): a
 * decompression bomb stops there, having cost that much memory, and the
 * caller closes with 1009.
 *
 * src/deflate.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include <zlib.h>

#include "utils/memutils.h"

/* what every message is compressed with: speed first, JSON compresses well */
#define DEFLATE_LEVEL		Z_BEST_SPEED
#define DEFLATE_MEM_LEVEL	8
#define DEFLATE_WINDOW_BITS 15

/* the empty stored block a sync flush ends with, removed on the wire */
static const uint8 flush_tail[4] = {0x00, 0x00, 0xFF, 0xFF};

static z_stream deflater;
static bool deflater_ready = false;
static z_stream inflater;
static bool inflater_ready = false;

/* a message compressed, before its frame header is known */
static StringInfo scratch = NULL;

static const char *
skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static bool
is_token_char(char c)
{
	return c != '\0' && c > 0x20 && c < 0x7F && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* a token at *p into buf (cut to size); false if there is none */
static bool
read_token(const char **p, char *buf, size_t size)
{
	size_t		n = 0;

	while (is_token_char(**p))
	{
		if (n + 1 < size)
			buf[n++] = **p;
		(*p)++;
	}
	buf[n] = '\0';
	return n > 0;
}

/* a parameter's value: a token or a quoted string (RFC 7692 7.1) */
static bool
read_value(const char **p, char *buf, size_t size)
{
	size_t		n = 0;

	if (**p != '"')
		return read_token(p, buf, size);
	(*p)++;
	while (**p != '"')
	{
		if (**p == '\0')
			return false;
		if (**p == '\\' && (*p)[1] != '\0')
			(*p)++;
		if (n + 1 < size)
			buf[n++] = **p;
		(*p)++;
	}
	(*p)++;
	buf[n] = '\0';
	return true;
}

/* a window size parameter's value: 8 to 15, written as digits only */
static int
window_bits(const char *value)
{
	if (strlen(value) == 1 && value[0] == '8')
		return 8;
	if (strlen(value) == 1 && value[0] == '9')
		return 9;
	if (strlen(value) == 2 && value[0] == '1' && value[1] >= '0' && value[1] <= '5')
		return 10 + (value[1] - '0');
	return 0;
}

/*
 * The Sec-WebSocket-Extensions a client sent (every such header, joined
 * with commas): when it offers permessage-deflate with parameters pg_ws
 * can honour, the first such offer is accepted and *response is the
 * header value to answer with (a static string).  Other extensions and
 * offers pg_ws cannot honour are passed over; a header that does not
 * parse accepts nothing.
 */
bool
pgws_deflate_accept_offer(const char *extensions, const char **response)
{
	const char *p = extensions;

	*response = NULL;
	if (p == NULL)
		return false;
	for (;;)
	{
		char		name[64];
		bool		ok;
		bool		seen_snct = false,
					seen_cnct = false,
					seen_smwb = false,
					seen_cmwb = false;
		bool		server_window_15 = false;

		p = skip_ows(p);
		if (*p == ',')
		{
			p++;
			continue;
		}
		if (*p == '\0')
			return false;
		if (!read_token(&p, name, sizeof(name)))
			return false;
		ok = strcmp(name, "permessage-deflate") == 0;
		for (;;)
		{
			char		param[64];
			char		value[64];
			bool		has_value = false;

			p = skip_ows(p);
			if (*p != ';')
				break;
			p = skip_ows(p + 1);
			if (!read_token(&p, param, sizeof(param)))
				return false;
			p = skip_ows(p);
			if (*p == '=')
			{
				p = skip_ows(p + 1);
				if (!read_value(&p, value, sizeof(value)))
					return false;
				has_value = true;
			}
			if (!ok)
				continue;		/* an offer passed over: its parameters too */
			if (strcmp(param, "server_no_context_takeover") == 0 && !has_value && !seen_snct)
				seen_snct = true;
			else if (strcmp(param, "client_no_context_takeover") == 0 && !has_value &&
					 !seen_cnct)
				seen_cnct = true;
			else if (strcmp(param, "server_max_window_bits") == 0 && has_value &&
					 !seen_smwb && window_bits(value) != 0)
			{
				seen_smwb = true;
				server_window_15 = window_bits(value) == 15;
				if (!server_window_15)
					ok = false; /* a window of its own: declined */
			}
			else if (strcmp(param, "client_max_window_bits") == 0 && !seen_cmwb &&
					 (!has_value || window_bits(value) != 0))
				seen_cmwb = true;	/* any: we inflate with the largest */
			else
				ok = false;		/* unknown, repeated or malformed */
		}
		if (*p != ',' && *p != '\0')
			return false;
		if (ok)
		{
			/* an offer that names server_max_window_bits gets it back */
			*response = server_window_15 ?
				"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15" :
				"permessage-deflate; server_no_context_takeover; client_no_context_takeover";
			return true;
		}
	}
}

/* the worker's one compressor, made on first use and kept */
static void
deflater_init(void)
{
	if (deflater_ready)
		return;
	memset(&deflater, 0, sizeof(deflater));
	if (deflateInit2(&deflater, DEFLATE_LEVEL, Z_DEFLATED, -DEFLATE_WINDOW_BITS,
					 DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_ws could not set up compression: %s",
						deflater.msg ? deflater.msg : "out of memory")));
	deflater_ready = true;
}

/*
 * Compress one whole message from an empty window into out (reset first):
 * the bytes a frame with RSV1 carries (RFC 7692 7.2.1: a sync flush, its
 * empty stored block removed).
 */
static void
deflate_message(const char *msg, size_t len, StringInfo out)
{
	int			rc;

	deflater_init();
	(void) deflateReset(&deflater);

	resetStringInfo(out);
	deflater.next_in = (Bytef *) msg;
	deflater.avail_in = (uInt) len;
	do
	{
		/* deflateBound() is for Z_FINISH; a sync flush adds its block */
		enlargeStringInfo(out, (int) deflateBound(&deflater, deflater.avail_in) + 16);
		deflater.next_out = (Bytef *) out->data + out->len;
		deflater.avail_out = (uInt) (out->maxlen - out->len - 1);
		rc = deflate(&deflater, Z_SYNC_FLUSH);
		out->len = (char *) deflater.next_out - out->data;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			elog(ERROR, "pg_ws: deflate failed: %d", rc);
	} while (deflater.avail_in > 0 || deflater.avail_out == 0);

	Assert(out->len >= 4 && memcmp(out->data + out->len - 4, flush_tail, 4) == 0);
	out->len -= 4;
	out->data[out->len] = '\0';
}

/*
 * Inflate a compressed message a subscriber sent (its frames' payloads,
 * joined) into out, from an empty window.  NULL when it is whole and at
 * most max bytes; otherwise why not, and *too_big says whether it was
 * only too large (1009) rather than not DEFLATE data (1007).  Never holds
 * more than max + 1 bytes of output, whatever the ratio.
 */
const char *
pgws_deflate_inflate(const uint8 *in, size_t len, size_t max, StringInfo out,
					 bool *too_big)
{
	int			pass;

	*too_big = false;
	if (!inflater_ready)
	{
		memset(&inflater, 0, sizeof(inflater));
		if (inflateInit2(&inflater, -DEFLATE_WINDOW_BITS) != Z_OK)
			return "pg_ws could not set up decompression";
		inflater_ready = true;
	}
	else
		(void) inflateReset(&inflater);

	resetStringInfo(out);
	enlargeStringInfo(out, (int) max + 1);
	inflater.next_out = (Bytef *) out->data;
	inflater.avail_out = (uInt) (max + 1);

	/* the payload, then the empty stored block its sender removed */
	for (pass = 0; pass < 2; pass++)
	{
		int			rc;

		inflater.next_in = (Bytef *) (pass == 0 ? in : flush_tail);
		inflater.avail_in = (uInt) (pass == 0 ? len : sizeof(flush_tail));
		while (inflater.avail_in > 0)
		{
			rc = inflate(&inflater, Z_SYNC_FLUSH);
			if (inflater.avail_out == 0)
			{
				*too_big = true;
				return "message too big";
			}
			if (rc == Z_STREAM_END)
			{
				inflater.avail_in = 0;	/* a final block: nothing follows */
				pass = 2;
				break;
			}
			if (rc == Z_BUF_ERROR)
				break;			/* needs input it does not have */
			if (rc != Z_OK)
				return "invalid compressed data";
		}
	}
	out->len = (int) (max + 1 - inflater.avail_out);
	out->data[out->len] = '\0';
	return NULL;
}

/* the bytes a message's frame may take: a plain one's, or a compressed one's */
static uint32
deflate_size(const PgWsMessageText *m)
{
	deflater_init();
	/* deflateBound() is for Z_FINISH; a sync flush adds an empty block */
	return PGWS_WS_MAX_HEADER + Max(m->len, (uint32) deflateBound(&deflater, m->len) + 16);
}

/*
 * The frame of a message for every subscriber that accepted compression,
 * made once (broadcast.c): its JSON compressed, RSV1 set; or, when it is
 * short or would not shrink, the plain frame.
 */
static uint32
deflate_write(uint8 *dst, const PgWsMessageText *m)
{
	int			hlen = 0;

	if (m->len >= (uint32) pgws_compression_min_size)
	{
		uint32		clen;

		if (scratch == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			scratch = makeStringInfo();
			MemoryContextSwitchTo(old);
		}
		deflate_message(m->json, m->len, scratch);
		pgws_worker_stats.messages_compressed++;
		clen = (uint32) scratch->len;
		if (clen < m->len)
		{
			hlen = pgws_ws_frame_header(dst, WS_OP_TEXT, clen);
			dst[0] |= WS_RSV1;
			memcpy(dst + hlen, scratch->data, clen);
		}
		/* a long message leaves no long buffer behind */
		if (scratch->maxlen > 64 * 1024)
		{
			pfree(scratch->data);
			pfree(scratch);
			scratch = NULL;
		}
		if (clen < m->len)
			return hlen + clen;
	}
	hlen = pgws_ws_frame_header(dst, WS_OP_TEXT, m->len);
	memcpy(dst + hlen, m->json, m->len);
	return hlen + m->len;
}

const PgWsFramingOps pgws_ws_deflate_framing = {
	.size = deflate_size,
	.write = deflate_write,
	.read = pgws_ws_read,
	.write_control = pgws_ws_write_control,
};
