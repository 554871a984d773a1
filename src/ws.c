/*-------------------------------------------------------------------------
 *
 * ws.c
 *	  RFC 6455 frames: reading what a subscriber sends, and writing the
 *	  control frames (ping, pong, close) pg_ws answers with.
 *
 * This file owns the WebSocket framing of one connection after the
 * upgrade.  It must not decide who may subscribe (auth.c) nor what events
 * are sent (broadcast.c); it only frames them (pgws_ws_frame_header, and
 * pgws_ws_framing for what broadcast.c frames through PgWsFramingOps).
 *
 * Subscribers have almost nothing to say, so the reader is strict and
 * small.  Every violation fails the connection with the close code RFC
 * 6455 gives it, as soon as the frame header shows it, without reading a
 * payload that is not wanted:
 *	1002  unmasked frames, reserved bits (RSV1 is allowed on the first
 *		  frame of a message once permessage-deflate was agreed), unknown
 *		  opcodes, fragmented or oversized (over 125 bytes) control frames,
 *		  continuation errors, invalid close frames;
 *	1007  text that is not UTF-8, checked as the bytes arrive (a
 *		  compressed message's once inflated, deflate.c), and compressed
 *		  data that is not DEFLATE;
 *	1009  messages over the bound (a text message may be as large as an
 *		  auth message may be; anything else is small);
 *	1003  binary messages, which pg_ws never accepts;
 *	1008  text messages other than {"type": "auth", ...}.
 * Pings are answered with pongs, and any pong counts as a sign of life.
 *
 * src/ws.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include "utils/memutils.h"

/* messages other than the auth message: a little room, no more */
#define SMALL_MESSAGE_MAX		256
/* an auth message carries a token, which may be as large as a header */
#define AUTH_MESSAGE_MAX		16384

/* the reason a close code gives a drop, for pg_ws_stats and the log */
static PgWsDrop
drop_reason(uint16 code)
{
	switch (code)
	{
		case WS_CLOSE_UNSUPPORTED:
			return PGWS_DROP_UNSUPPORTED_DATA;
		case WS_CLOSE_INVALID_DATA:
			return PGWS_DROP_INVALID_DATA;
		case WS_CLOSE_POLICY:
			return PGWS_DROP_POLICY;
		case WS_CLOSE_TOO_BIG:
			return PGWS_DROP_MESSAGE_TOO_BIG;
		case WS_CLOSE_TOKEN:
			return PGWS_DROP_TOKEN_REJECTED;
		default:
			return PGWS_DROP_PROTOCOL_ERROR;
	}
}

/* fail the connection for something the peer did, and say so in the log */
static void
ws_fail(PgWsConn *conn, uint16 code, const char *reason)
{
	if (pgws_conn_dropped(drop_reason(code)))
		ereport(LOG,
				(errmsg("pg_ws is closing the connection of %s with code %d: %s",
						conn->peer, code, reason)));
	pgws_conn_close(conn, code, reason);
}

/* write the header of an unmasked, final frame; returns its length */
int
pgws_ws_frame_header(uint8 *hdr, uint8 opcode, uint64 len)
{
	int			i;

	hdr[0] = 0x80 | opcode;
	if (len < 126)
	{
		hdr[1] = (uint8) len;
		return 2;
	}
	if (len <= 0xFFFF)
	{
		hdr[1] = 126;
		hdr[2] = (uint8) (len >> 8);
		hdr[3] = (uint8) len;
		return 4;
	}
	hdr[1] = 127;
	for (i = 0; i < 8; i++)
		hdr[2 + i] = (uint8) (len >> (56 - 8 * i));
	return 10;
}

static void
reader_next_frame(PgWsFrameReader *r)
{
	r->head_len = 0;
	r->head_need = 2;
	r->payload_left = 0;
	r->payload_pos = 0;
	r->control_len = 0;
}

/*
 * Check the UTF-8 of text as it arrives, across frames: the state is the
 * number of continuation bytes still expected and the range the next one
 * must fall in (which excludes overlong forms, surrogates and code points
 * above U+10FFFF).  Returns false at the first invalid byte.
 */
static bool
utf8_check(PgWsFrameReader *r, const uint8 *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		uint8		c = s[i];

		if (r->utf8_need > 0)
		{
			if (c < r->utf8_lo || c > r->utf8_hi)
				return false;
			r->utf8_lo = 0x80;
			r->utf8_hi = 0xBF;
			r->utf8_need--;
			continue;
		}
		if (c < 0x80)
			continue;
		r->utf8_lo = 0x80;
		r->utf8_hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF)
			r->utf8_need = 1;
		else if (c >= 0xE0 && c <= 0xEF)
		{
			r->utf8_need = 2;
			if (c == 0xE0)
				r->utf8_lo = 0xA0;
			else if (c == 0xED)
				r->utf8_hi = 0x9F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			r->utf8_need = 3;
			if (c == 0xF0)
				r->utf8_lo = 0x90;
			else if (c == 0xF4)
				r->utf8_hi = 0x8F;
		}
		else
			return false;
	}
	return true;
}

/* close codes a peer may send (RFC 6455 7.4, and the registry since) */
static bool
close_code_valid(uint16 code)
{
	return (code >= 1000 && code <= 1003) ||
		(code >= 1007 && code <= 1014) ||
		(code >= 3000 && code <= 4999);
}


/*
 * The frame header is complete: check it, and get ready for its payload.
 * Returns false when the connection was failed.
 */
static bool
header_complete(PgWsConn *conn)
{
	PgWsFrameReader *r = &conn->reader;
	uint8		len7 = r->head[1] & 0x7F;
	uint64		len = len7;
	int			i;

	if (len7 == 126)
		len = ((uint64) r->head[2] << 8) | r->head[3];
	else if (len7 == 127)
	{
		if (r->head[2] & 0x80)
		{
			ws_fail(conn, WS_CLOSE_PROTOCOL_ERROR, "frame length out of range");
			return false;
		}
		len = 0;
		for (i = 0; i < 8; i++)
			len = (len << 8) | r->head[2 + i];
	}
	memcpy(r->mask, r->head + r->head_need - 4, 4);
	r->payload_left = len;
	r->payload_pos = 0;

	if (r->opcode & 0x08)
		return true;			/* control: 125 bytes at most, checked */

	/* a data frame: the first of a message decides what the message is */
	if (r->opcode != WS_OP_CONTINUATION)
	{
		r->msg_opcode = r->opcode;
		r->compressed = r->rsv1;
		r->utf8_need = 0;
		if (r->message)
			resetStringInfo(r->message);
	}
	if (r->msg_opcode == WS_OP_BINARY)
	{
		if (len > SMALL_MESSAGE_MAX)
			ws_fail(conn, WS_CLOSE_TOO_BIG, "message too big");
		else
			ws_fail(conn, WS_CLOSE_UNSUPPORTED,
							"pg_ws accepts no binary messages");
		return false;
	}
	/* a text message may be an auth message, which carries a token */
	if ((r->message ? (uint64) r->message->len : 0) + len > AUTH_MESSAGE_MAX)
	{
		ws_fail(conn, WS_CLOSE_TOO_BIG, "message too big");
		return false;
	}
	if (r->message == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(conn->cxt);

		r->message = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	return true;
}

/*
 * The first two bytes of a frame: everything wrong with a frame that its
 * header can show is refused here, before any payload is read.
 */
static bool
header_start(PgWsConn *conn)
{
	PgWsFrameReader *r = &conn->reader;
	uint8		b0 = r->head[0];
	uint8		b1 = r->head[1];
	uint8		len7 = b1 & 0x7F;
	const char *error = NULL;

	r->fin = (b0 & 0x80) != 0;
	r->opcode = b0 & 0x0F;
	r->rsv1 = (b0 & WS_RSV1) != 0;

	/*
	 * RSV1 marks a compressed message once permessage-deflate was agreed
	 * (deflate.c), on a message's first frame only (RFC 7692 6.1).
	 */
	if (r->rsv1 && conn->sub.framing == PGWS_FRAMING_WS_DEFLATE &&
		(r->opcode == WS_OP_TEXT || r->opcode == WS_OP_BINARY))
		b0 &= ~WS_RSV1;
	if (b0 & 0x70)
		error = "reserved bits set";
	else if (r->opcode != WS_OP_CONTINUATION && r->opcode != WS_OP_TEXT &&
			 r->opcode != WS_OP_BINARY && r->opcode != WS_OP_CLOSE &&
			 r->opcode != WS_OP_PING && r->opcode != WS_OP_PONG)
		error = "unknown opcode";
	else if ((r->opcode & 0x08) && !r->fin)
		error = "fragmented control frame";
	else if ((r->opcode & 0x08) && len7 > 125)
		error = "control frame longer than 125 bytes";
	else if (r->opcode == WS_OP_CONTINUATION && r->msg_opcode == 0)
		error = "continuation frame outside a message";
	else if ((r->opcode == WS_OP_TEXT || r->opcode == WS_OP_BINARY) &&
			 r->msg_opcode != 0)
		error = "new message inside a fragmented message";
	else if (!(b1 & 0x80))
		error = "client frame not masked";
	if (error)
	{
		ws_fail(conn, WS_CLOSE_PROTOCOL_ERROR, error);
		return false;
	}
	r->head_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
	return true;
}

/* a complete text message from the subscriber */
static void
text_message(PgWsConn *conn, const char *msg, size_t len)
{
	const char *reason = NULL;
	MemoryContext old;
	PgWsAuthMessageResult result;

	/*
	 * auth.c renews the connection's grant from a valid token; the grant's
	 * patterns live in the connection's context
	 */
	old = MemoryContextSwitchTo(conn->cxt);
	result = pgws_auth_message(msg, len, (int64) time(NULL), &conn->sub.grant,
							   &reason);
	MemoryContextSwitchTo(old);
	switch (result)
	{
		case AUTH_MSG_ACCEPTED:
			/* its filters claim may be another, and with it its place */
			pgws_subscriber_grant_renewed(conn);
			/* and its token may expire sooner than the last one */
			pgws_conn_look_again(conn);
			return;
		case AUTH_MSG_REJECTED:
			ws_fail(conn, WS_CLOSE_TOKEN, reason);
			return;
		case AUTH_MSG_NOT_AUTH:
			break;
	}
	/* only the auth message may be larger than a small message */
	if (len > SMALL_MESSAGE_MAX)
		ws_fail(conn, WS_CLOSE_TOO_BIG, "message too big");
	else
		ws_fail(conn, WS_CLOSE_POLICY,
						"pg_ws accepts only {\"type\": \"auth\", \"token\": ...} messages");
}

/*
 * A whole compressed text message: inflated (deflate.c) to at most the
 * size an uncompressed one may have, so that a decompression bomb costs
 * that much and closes with 1009; then checked and taken as any other.
 */
static void
inflated_message(PgWsConn *conn)
{
	PgWsFrameReader *r = &conn->reader;
	static StringInfo text = NULL;
	const char *error;
	bool		too_big;

	if (text == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		text = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	error = pgws_deflate_inflate((const uint8 *) r->message->data, r->message->len,
								 AUTH_MESSAGE_MAX, text, &too_big);
	resetStringInfo(r->message);
	if (error != NULL)
	{
		ws_fail(conn, too_big ? WS_CLOSE_TOO_BIG : WS_CLOSE_INVALID_DATA, error);
		return;
	}
	r->utf8_need = 0;
	if (!utf8_check(r, (const uint8 *) text->data, text->len) || r->utf8_need != 0)
	{
		ws_fail(conn, WS_CLOSE_INVALID_DATA, "text is not UTF-8");
		return;
	}
	text_message(conn, text->data, text->len);
}

/* the peer's close frame: check it, and answer with the same code */
static void
peer_close(PgWsConn *conn)
{
	PgWsFrameReader *r = &conn->reader;
	uint16		code;

	if (r->control_len == 0)
	{
		pgws_conn_close(conn, 0, NULL);
		return;
	}
	if (r->control_len == 1)
	{
		ws_fail(conn, WS_CLOSE_PROTOCOL_ERROR, "close frame with a one-byte payload");
		return;
	}
	code = ((uint16) r->control[0] << 8) | r->control[1];
	if (!close_code_valid(code))
	{
		ws_fail(conn, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
		return;
	}
	r->utf8_need = 0;
	if (!utf8_check(r, r->control + 2, r->control_len - 2) || r->utf8_need != 0)
	{
		ws_fail(conn, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
		return;
	}
	pgws_conn_close(conn, code, NULL);
}

static void
frame_complete(PgWsConn *conn)
{
	PgWsFrameReader *r = &conn->reader;

	switch (r->opcode)
	{
		case WS_OP_PING:
			/* answer the latest ping; RFC 6455 allows skipping older ones */
			conn->pong_due = true;
			conn->pong_len = r->control_len;
			memcpy(conn->pong_data, r->control, r->control_len);
			lws_callback_on_writable(conn->wsi);
			break;
		case WS_OP_PONG:
			conn->ping_sent_at = 0;
			break;
		case WS_OP_CLOSE:
			peer_close(conn);
			break;
		default:
			if (!r->fin)
				break;
			/* a whole text message (binary ones never get this far) */
			r->msg_opcode = 0;
			if (r->compressed)
			{
				inflated_message(conn);
				break;
			}
			if (r->utf8_need != 0)
			{
				ws_fail(conn, WS_CLOSE_INVALID_DATA, "text is not UTF-8");
				break;
			}
			text_message(conn, r->message->data, r->message->len);
			resetStringInfo(r->message);
			break;
	}
	reader_next_frame(r);
}

/*
 * Bytes from the peer of an open WebSocket connection.  Stops at the first
 * error (the connection is then closing and what follows is ignored).
 */
void
pgws_ws_read(PgWsConn *conn, const uint8 *data, size_t len)
{
	PgWsFrameReader *r = &conn->reader;

	if (r->head_need == 0)
		reader_next_frame(r);
	if (len > 0)
		conn->last_heard = GetCurrentTimestamp();

	while (len > 0 && conn->state == CONN_OPEN && !conn->close_due)
	{
		size_t		n;
		size_t		i;
		uint8	   *dst;

		if (r->head_len < r->head_need)
		{
			r->head[r->head_len++] = *data++;
			len--;
			if (r->head_len == 2 && !header_start(conn))
				return;
			if (r->head_len == r->head_need)
			{
				if (!header_complete(conn))
					return;
				if (r->payload_left == 0)
					frame_complete(conn);
			}
			continue;
		}

		/* payload: unmask it into the control buffer or the message */
		n = Min(len, r->payload_left);
		if (r->opcode & 0x08)
			dst = r->control + r->control_len;
		else
		{
			enlargeStringInfo(r->message, (int) n);
			dst = (uint8 *) r->message->data + r->message->len;
		}
		for (i = 0; i < n; i++)
			dst[i] = data[i] ^ r->mask[(r->payload_pos + i) & 3];
		if (r->opcode & 0x08)
			r->control_len += n;
		else
		{
			r->message->len += n;
			r->message->data[r->message->len] = '\0';
			/* a compressed message's text is checked once inflated */
			if (!r->compressed && !utf8_check(r, dst, n))
			{
				ws_fail(conn, WS_CLOSE_INVALID_DATA, "text is not UTF-8");
				return;
			}
		}
		r->payload_left -= n;
		r->payload_pos += n;
		data += n;
		len -= n;
		if (r->payload_left == 0)
			frame_complete(conn);
	}
}

/* write one control frame; false when the connection is broken */
static bool
write_control(PgWsConn *conn, uint8 opcode, const uint8 *payload, int len)
{
	uint8		buf[LWS_PRE + 2 + 125];
	uint8	   *frame = buf + LWS_PRE;
	int			n;

	Assert(len <= 125);
	n = pgws_ws_frame_header(frame, opcode, len);
	memcpy(frame + n, payload, len);
	return lws_write(conn->wsi, frame, n + len, LWS_WRITE_RAW) == n + len;
}

/*
 * At a writable callback, before any data: the close frame, a pong, a
 * ping.  Returns -1 when the connection is broken, 1 when the close frame
 * went out (nothing may follow it), 0 otherwise.
 */
int
pgws_ws_write_control(PgWsConn *conn)
{
	if (conn->close_due)
	{
		uint8		payload[125];
		int			len = 0;

		conn->close_due = false;
		if (conn->close_code != 0)
		{
			size_t		rlen = strlen(conn->close_reason);

			payload[0] = (uint8) (conn->close_code >> 8);
			payload[1] = (uint8) conn->close_code;
			memcpy(payload + 2, conn->close_reason, rlen);
			len = 2 + (int) rlen;
		}
		if (!write_control(conn, WS_OP_CLOSE, payload, len))
			return -1;
		return 1;
	}
	if (conn->pong_due)
	{
		conn->pong_due = false;
		if (!write_control(conn, WS_OP_PONG, conn->pong_data, conn->pong_len))
			return -1;
	}
	if (conn->ping_due)
	{
		conn->ping_due = false;
		if (!write_control(conn, WS_OP_PING, (const uint8 *) "pg_ws", 5))
			return -1;
	}
	return 0;
}

/* a message's frame: header, then the JSON */
static uint32
ws_size(const PgWsMessageText *m)
{
	return PGWS_WS_MAX_HEADER + m->len;
}

static uint32
ws_write(uint8 *dst, const PgWsMessageText *m)
{
	int			hlen = pgws_ws_frame_header(dst, WS_OP_TEXT, m->len);

	memcpy(dst + hlen, m->json, m->len);
	return hlen + m->len;
}

const PgWsFramingOps pgws_ws_framing = {
	.size = ws_size,
	.write = ws_write,
	.read = pgws_ws_read,
	.write_control = pgws_ws_write_control,
};
