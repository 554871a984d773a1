#!/usr/bin/python3
"""End-to-end tests of pg_ws against hostile peers.

This file owns the hostile-peer suite: requests the server does not route,
request heads framed to slip past a check (a NUL, no Host, a body on an
upgrade) and the ones RFC 9112 says to serve (absolute-form targets,
leading empty lines), heads of repeated headers and what they cost the
worker held open and over a thousand rounds, peers that send nothing or a
byte at a time, connection limits, keepalive, and every kind of broken
WebSocket frame, each sent by an independent raw-socket client (rawws.py,
no libwebsockets) that checks the exact HTTP status or close code.  After every test a fresh subscriber must still be
served, and the worker's memory (pg_ws_stats.worker_memory_bytes, what its
malloc heap holds) must come back to the baseline its cluster measured
after a warm-up (take_baseline).  Each test repeats its attack many times, and the flood test
makes a thousand hostile connections, so that a leak of a few dozen bytes
per connection shows above the slack.

It does not cover tokens and origins (test_auth.py) or TLS (test_tls.py).

One cluster, on 127.0.0.1 with short deadlines so that the bounds are
quick to reach: pg_ws.handshake_timeout 2s, pg_ws.ping_interval 2s,
pg_ws.max_header_size 16kB.  The limit tests, and the one that holds a
hundred connections open, get clusters of their own, each with its own
baseline.

Run as root: /usr/bin/python3 test/e2e/test_hostile.py   (TAP output)
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, Ctx, Fail, asql, check, poll, process_rss, restart_worker,  # noqa: E402
                     run_tap, short)
import rawws  # noqa: E402
from rawws import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,  # noqa: E402
                   OP_TEXT, RawWs, Rejected)

WATCHDOG_SECONDS = 900

HANDSHAKE_TIMEOUT_S = 2
PING_INTERVAL_S = 2

# the worker's heap may grow this much over the baseline and still count as
# back: glibc's per-thread cache keeps up to 7 freed chunks of each small
# size, which mallinfo2() counts as in use (a connection frees a handful of
# sizes, about 25 kB when full); not room for a leak repeated per attack
MEMORY_SLACK = 64 * 1024
# connections the flood test makes
FLOOD = 1000
# how many times each attack is repeated
REPEAT = 40

BASE_CONF = ["pg_ws.handshake_timeout = '%ds'" % HANDSHAKE_TIMEOUT_S,
             "pg_ws.ping_interval = '%ds'" % PING_INTERVAL_S,
             "pg_ws.max_header_size = '16kB'"]

_main = {}              # 'cluster': the cluster most tests share
_baselines = {}         # Cluster -> the worker's heap after its warm-up
_event_id = [0]


# ---------------------------------------------------------------- helpers

async def worker_memory(conn):
    rows = await asql(conn, "SELECT worker_memory_bytes FROM pg_ws_stats")
    return rows[0][0] if rows and rows[0][0] is not None else None


async def settle_memory(conn, target=None, timeout=20):
    """Wait until the worker's heap is at most target (or stops shrinking
    when target is None); its last figure."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        mem = await worker_memory(conn)
        if mem is not None and target is not None and mem <= target:
            return mem
        if target is None and mem is not None and mem == last:
            return mem
        if time.monotonic() > deadline:
            return mem
        last = mem
        await asyncio.sleep(1.1)    # the worker publishes once a second


async def connections_gone(conn, timeout=20):
    """Wait until the worker holds no connection (it notices closes
    asynchronously, and publishes its figures once a second)."""
    deadline = time.monotonic() + timeout
    while (await asql(conn, "SELECT connections FROM pg_ws_stats"))[0][0] != 0:
        check(time.monotonic() < deadline, 'the worker still holds connections after %d s' % timeout)
        await asyncio.sleep(0.2)


async def still_serving(ctx, what):
    """A fresh subscriber is served: it gets the next event; and the
    worker's memory comes back to its baseline."""
    cl = ctx.cl
    sub = await ctx.sub()
    conn = await ctx.aconn()
    _event_id[0] += 1
    eid = 700000 + _event_id[0]
    await asql(conn, ("INSERT INTO employee (id, first_name, last_name) VALUES (%s, 'fresh', %s)",
                      (eid, what)))
    await sub.wait_until(lambda m: any('"id": %d,' % eid in x for x in m), 15,
                         'a fresh subscriber after %s' % what)
    await sub.close()
    baseline = _baselines.get(cl)
    if baseline is None:
        return None         # the warm-up itself
    mem = await settle_memory(conn, baseline + MEMORY_SLACK)
    check(mem is not None and mem <= baseline + MEMORY_SLACK,
          'after %s the worker holds %s bytes, baseline %d (+%d allowed)'
          % (what, mem, baseline, MEMORY_SLACK))
    return mem - baseline


async def take_baseline(ctx, sockets):
    """Warm up what a cluster's worker allocates once (a first request, a
    first subscriber, a first event, and PostgreSQL's cache of up to 100
    deleted memory contexts: each connection has one, so sockets silent
    connections at once), then measure its heap: the baseline its tests
    come back to."""
    cl = ctx.cl
    port = cl.wsport
    await asyncio.to_thread(exchange_many, port,
                            b'GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % port, 5)
    for _, act, _ in FRAME_CASES[:3]:
        await asyncio.to_thread(frame_case, port, act)
    conn = await ctx.aconn()
    socks = [await asyncio.to_thread(rawws.connect, port) for _ in range(sockets)]
    deadline = time.monotonic() + 20
    while (await asql(conn, "SELECT connections FROM pg_ws_stats"))[0][0] < sockets:
        check(time.monotonic() < deadline, 'the warm-up connections were not accepted')
        await asyncio.sleep(0.2)
    for sock in socks:
        sock.close()
    await connections_gone(conn)
    await still_serving(ctx, 'the warm-up')
    baseline = await settle_memory(conn)
    check(baseline is not None, 'pg_ws_stats has no worker memory figure')
    _baselines[cl] = baseline


def exchange_many(port, raw, n=REPEAT, timeout=10):
    """Send the same request n times; the answers (status, status line,
    body, closed?) seen."""
    seen = set()
    for _ in range(n):
        status, headers, body, line, closed = rawws.http_exchange(port, raw, timeout=timeout)
        seen.add((status, line, body, closed))
    return seen


def expect_one_answer(seen, status, what):
    check(len(seen) == 1, '%s: different answers: %s' % (what, sorted(map(str, seen))[:4]))
    got_status, line, body, closed = next(iter(seen))
    check(got_status == status and line.startswith('HTTP/1.1 %d ' % status),
          '%s: answered %r (%s), expected HTTP/1.1 %d' % (what, line, short(body), status))
    check(closed, '%s: the connection was not closed after the answer' % what)
    return line, body


# ------------------------------------------------------------------ tests

async def test_unrouted_requests(ctx):
    """CONNECT, other methods, raw bytes, h2c, HTTP/2, wrong paths: each a
    real HTTP/1.1 answer and a closed connection."""
    port = ctx.cl.wsport
    cases = [
        ('CONNECT', b'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405),
        ('POST', b'POST /ws/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc', 405),
        ('PUT', b'PUT /ws/ HTTP/1.1\r\nHost: x\r\n\r\n', 405),
        ('DELETE', b'DELETE /ws/ HTTP/1.1\r\nHost: x\r\n\r\n', 405),
        ('OPTIONS *', b'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', 405),
        ('HEAD', b'HEAD /ws/ HTTP/1.1\r\nHost: x\r\n\r\n', 405),
        ('raw bytes', b'\x00\x01\x02\xff\xfe garbage \r\n\r\n', 400),
        ('a header without a colon', b'GET /ws/ HTTP/1.1\r\nHost x\r\n\r\n', 400),
        ('obsolete line folding', b'GET /ws/ HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n', 400),
        ('Upgrade: h2c', b'GET /ws/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n'
                         b'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n', 400),
        ('the HTTP/2 preface', b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505),
        ('GET / (the console page, test_console.py)',
         b'GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % port, 200),
        ('GET /index.html', b'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n', 404),
        ('PUT /', b'PUT / HTTP/1.1\r\nHost: x\r\n\r\n', 405),
        ('GET /ws/ without upgrade', b'GET /ws/ HTTP/1.1\r\nHost: x\r\n\r\n', 400),
        ('WebSocket version 8', rawws.upgrade_request(port, version='8'), 426),
        ('a malformed key', rawws.upgrade_request(port, key='short'), 400),
        ('an upgrade over HTTP/1.0', rawws.upgrade_request(port, http='HTTP/1.0'), 400),
    ]
    notes = []
    for what, raw, status in cases:
        seen = await asyncio.to_thread(exchange_many, port, raw, REPEAT // 4)
        line, _ = expect_one_answer(seen, status, what)
        notes.append('%s: %s' % (what, line[9:]))
    s, headers, _, line, _ = await asyncio.to_thread(
        rawws.http_exchange, port, b'DELETE /ws/ HTTP/1.1\r\nHost: x\r\n\r\n')
    check(headers.get('allow') == 'GET', '405 without "Allow: GET": %s' % headers)
    s, headers, _, line, _ = await asyncio.to_thread(
        rawws.http_exchange, port, rawws.upgrade_request(port, version='8'))
    check(headers.get('sec-websocket-version') == '13', '426 without the version: %s' % headers)
    grown = await still_serving(ctx, 'unrouted requests')
    return '%d kinds, %d times each; heap %+d bytes' % (len(cases), REPEAT // 4, grown or 0)


def silent_peers(port, n, timeout):
    """Open n connections that send nothing; how long until each closed."""
    socks = [rawws.connect(port) for _ in range(n)]
    t0 = time.monotonic()
    waits = []
    try:
        for s in socks:
            data, closed = rawws.read_until_closed(s, max(0.1, timeout - (time.monotonic() - t0)))
            if not closed:
                return None, data
            waits.append(time.monotonic() - t0)
    finally:
        for s in socks:
            s.close()
    return max(waits), b''


def slow_loris(port, interval, timeout):
    """Send a request a byte every interval seconds; (seconds until the
    server closed, bytes sent) or None if it never did."""
    s = rawws.connect(port)
    raw = rawws.upgrade_request(port, extra=['X-Padding: ' + 'x' * 200])
    t0 = time.monotonic()
    try:
        s.settimeout(interval)
        for i, b in enumerate(raw):
            if time.monotonic() - t0 > timeout:
                return None
            try:
                s.send(bytes([b]))
            except OSError:
                return time.monotonic() - t0, i
            try:
                if s.recv(4096) == b'':
                    return time.monotonic() - t0, i + 1
            except socket.timeout:
                pass
            except OSError:
                return time.monotonic() - t0, i + 1
        return None
    finally:
        s.close()


async def test_silent_and_slow(ctx):
    """Peers that send nothing, a TLS hello to a plain port, and a
    slow-loris sending a header byte at a time are closed within
    pg_ws.handshake_timeout (plus the once-a-second check)."""
    port = ctx.cl.wsport
    bound = HANDSHAKE_TIMEOUT_S + 1.5
    took, data = await asyncio.to_thread(silent_peers, port, REPEAT, bound + 10)
    check(took is not None, 'a silent peer was not closed within %.0f s (it got %r)'
          % (bound + 10, data[:60]))
    # a TLS ClientHello to the plain port never ends a request head
    hello = bytes.fromhex('16030100a5010000a10303') + os.urandom(32) + b'\x00' * 60
    status, _, _, line, closed = await asyncio.to_thread(rawws.http_exchange, port, hello, bound + 10)
    check(closed, 'a TLS hello on the plain port was not closed (%r)' % line)
    # byte by byte: the deadline counts from accept, not from the last byte
    res = await asyncio.to_thread(slow_loris, port, 0.5, bound + 20)
    check(res is not None, 'the slow-loris was still connected after %.0f s' % (bound + 20))
    check(res[1] < 200, 'the slow-loris got to send %d bytes' % res[1])
    grown = await still_serving(ctx, 'silent and slow peers')
    return ('%d silent peers closed after %.1f s at most; slow-loris closed after %.1f s'
            ' and %d bytes; heap %+d bytes' % (REPEAT, took, res[0], res[1], grown or 0))


async def test_header_size(ctx):
    """A request head over pg_ws.max_header_size (16kB here) gets 431; a
    browser with big cookies under it is served."""
    port = ctx.cl.wsport
    cookie = 'Cookie: session=' + 'c' * 12000
    w = await asyncio.to_thread(RawWs, port, '/ws/', [cookie, 'Cookie: b=' + 'd' * 2000])
    w.close()
    big = rawws.upgrade_request(port, extra=['Cookie: session=' + 'c' * 17000])
    seen = await asyncio.to_thread(exchange_many, port, big, REPEAT // 2)
    expect_one_answer(seen, 431, 'a 17 kB request head')
    # one long line with no end at all
    seen = await asyncio.to_thread(exchange_many, port, b'GET /' + b'a' * 40000, REPEAT // 4)
    expect_one_answer(seen, 431, 'a 40 kB request line')
    grown = await still_serving(ctx, 'oversized requests')
    return '14 kB of cookies served, 17 kB refused with 431; heap %+d bytes' % (grown or 0)


async def test_subprotocols(ctx):
    """Only "pg_ws" may be selected: the internal descriptor watchers'
    protocol name is not reachable."""
    port = ctx.cl.wsport
    for offer in ('pg_ws-fd', 'chat', 'pg_ws-fd, chat'):
        try:
            w = await asyncio.to_thread(RawWs, port, '/ws/', ['Sec-WebSocket-Protocol: ' + offer])
            w.close()
            raise Fail('an upgrade offering %r was accepted (selected %r)'
                       % (offer, w.headers.get('sec-websocket-protocol')))
        except Rejected as e:
            check(e.status == 400, 'offering %r: %s' % (offer, e.line))
    w = await asyncio.to_thread(RawWs, port, '/ws/', ['Sec-WebSocket-Protocol: pg_ws-fd, pg_ws'])
    selected = w.headers.get('sec-websocket-protocol')
    w.close()
    check(selected == 'pg_ws', 'offering "pg_ws-fd, pg_ws" selected %r' % selected)
    await still_serving(ctx, 'subprotocols')


def frame_case(port, act, timeout=10):
    """Open a WebSocket, do act(ws), return (close code, reason, closed?)."""
    w = RawWs(port)
    try:
        act(w)
        code, reason, _ = w.read_close(timeout)
        return code, reason, w.closed_by_server(timeout)
    finally:
        w.close()


FRAME_CASES = [
    ('an unmasked frame', lambda w: w.send_frame(OP_TEXT, b'hello', mask=False), 1002),
    ('reserved bit 1', lambda w: w.send_frame(OP_TEXT, b'hi', rsv=4), 1002),
    ('reserved bit 3', lambda w: w.send_frame(OP_PING, b'hi', rsv=1), 1002),
    ('a fragmented ping', lambda w: w.send_frame(OP_PING, b'x', fin=False), 1002),
    ('a 126-byte ping', lambda w: w.send_frame(OP_PING, b'x' * 126), 1002),
    ('a 200-byte close', lambda w: w.send_frame(OP_CLOSE, b'\x03\xe8' + b'x' * 198), 1002),
    ('opcode 3', lambda w: w.send_frame(3, b'x'), 1002),
    ('opcode 11', lambda w: w.send_frame(11, b'x'), 1002),
    ('a continuation without a message', lambda w: w.send_frame(OP_CONT, b'x'), 1002),
    ('a new message inside a fragmented one',
     lambda w: (w.send_frame(OP_TEXT, b'{"a', fin=False), w.send_frame(OP_TEXT, b'b')), 1002),
    ('a 64-bit length with its top bit set',
     lambda w: w.send_frame(OP_TEXT, b'', declared_len=1 << 63), 1002),
    ('a close with a one-byte payload', lambda w: w.send_frame(OP_CLOSE, b'\x03'), 1002),
    ('a close with code 1005', lambda w: w.send_frame(OP_CLOSE, b'\x03\xed'), 1002),
    ('a close with code 999', lambda w: w.send_frame(OP_CLOSE, b'\x03\xe7'), 1002),
    ('invalid UTF-8', lambda w: w.send_frame(OP_TEXT, b'\xc3\x28'), 1007),
    ('a surrogate in UTF-8', lambda w: w.send_frame(OP_TEXT, b'\xed\xa0\x80'), 1007),
    ('an overlong UTF-8 form', lambda w: w.send_frame(OP_TEXT, b'\xc0\xaf'), 1007),
    ('UTF-8 cut at the end of a message', lambda w: w.send_frame(OP_TEXT, b'ok \xe2\x82'), 1007),
    ('invalid UTF-8 split across fragments',
     lambda w: (w.send_frame(OP_TEXT, b'\xe2', fin=False), w.send_frame(OP_CONT, b'(\xa1')), 1007),
    ('a close reason that is not UTF-8', lambda w: w.send_frame(OP_CLOSE, b'\x03\xe8\xff'), 1007),
    ('a 1 kB text message', lambda w: w.send_text('x' * 1024), 1009),
    ('a 1 MB text message declared, not sent',
     lambda w: w.send_frame(OP_TEXT, b'', declared_len=1 << 20), 1009),
    ('a text message over the bound in fragments',
     lambda w: [w.send_frame(OP_TEXT if i == 0 else OP_CONT, b'y' * 4000, fin=False)
                for i in range(5)], 1009),
    ('a 1 kB binary message', lambda w: w.send_frame(OP_BINARY, b'\x00' * 1024), 1009),
    ('a small binary message', lambda w: w.send_frame(OP_BINARY, b'\x01\x02'), 1003),
    ('a small text message other than auth', lambda w: w.send_text('hello'), 1008),
    ('JSON other than auth', lambda w: w.send_text('{"type": "subscribe"}'), 1008),
]


async def test_client_frames(ctx):
    """Every kind of bad frame closes with its RFC 6455 code and the
    server then closes the TCP connection."""
    port = ctx.cl.wsport
    problems = []
    for what, act, want in FRAME_CASES:
        for _ in range(3):
            code, reason, closed = await asyncio.to_thread(frame_case, port, act)
            if code != want or not closed:
                problems.append('%s: close code %s (%r), TCP %s; expected %d'
                                % (what, code, reason, 'closed' if closed else 'open', want))
                break
    check(not problems, *problems)
    grown = await still_serving(ctx, 'bad frames')
    return '%d kinds of bad frames, 3 times each; heap %+d bytes' % (len(FRAME_CASES), grown or 0)


async def test_control_frames(ctx):
    """A ping is answered with a pong carrying its payload; a close is
    answered with the same code; the connection serves events meanwhile."""
    port = ctx.cl.wsport
    conn = await ctx.aconn()

    def ping_then_event():
        w = RawWs(port)
        try:
            w.send_frame(OP_PING, b'are you there')
            fin, op, payload = w.recv_frame(10)
            if (op, payload) != (OP_PONG, b'are you there'):
                return 'a ping was answered with opcode %d %r' % (op, payload)
            # a fragmented text message with a ping between its fragments
            # is fine as long as it is... not a message we accept: 1008
            w.send_frame(OP_TEXT, b'{"type"', fin=False)
            w.send_frame(OP_PING, b'mid')
            fin, op, payload = w.recv_frame(10)
            if (op, payload) != (OP_PONG, b'mid'):
                return 'a ping between fragments was answered with %d %r' % (op, payload)
            w.send_frame(OP_CONT, b': "x"}')
            code, reason, _ = w.read_close(10)
            if code != 1008:
                return 'the message after the interleaved ping closed with %s' % code
            return None
        finally:
            w.close()

    problem = await asyncio.to_thread(ping_then_event)
    check(problem is None, problem)

    def close_echo(payload, want):
        w = RawWs(port)
        try:
            w.send_frame(OP_CLOSE, payload)
            code, reason, _ = w.read_close(10)
            return code == want and w.closed_by_server(10)
        finally:
            w.close()

    for payload, want in ((b'\x03\xe8bye', 1000), (b'\x03\xe9', 1001), (b'\x0f\xa0', 4000),
                          (b'', 1005)):
        check(await asyncio.to_thread(close_echo, payload, want),
              'a close frame %r was not answered with code %d and a close' % (payload, want))

    # an open raw subscriber receives events as frames the second client
    # parses; with pg_ws.auth none, an auth message as large as a real token
    # is accepted and changes nothing, so clients may send tokens before
    # the server requires them
    w = await asyncio.to_thread(RawWs, port)
    try:
        await asyncio.to_thread(w.send_text, json.dumps({'type': 'auth', 'token': 'e30.' + 'x' * 900 + '.sig'}))
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (800001, 'raw', 'peer')")
        fin, op, payload = await asyncio.to_thread(w.recv_frame, 10)
        check(fin and op == OP_TEXT and json.loads(payload)['data']['id'] == 800001,
              'the raw subscriber got %r' % payload[:100])
    finally:
        w.close()
    await still_serving(ctx, 'control frames')


async def test_keepalive(ctx):
    """A subscriber that never answers pings is dropped after about two
    pg_ws.ping_interval; one that answers (python-websockets) stays; and
    the server's sockets have TCP keepalive on."""
    port = ctx.cl.wsport
    mark = ctx.cl.log_size()
    good = await ctx.sub()      # its library answers pings

    # TCP keepalive too, for peers that vanish while nothing is sent: the
    # kernel shows a keepalive timer on the server's side of the socket
    out = await asyncio.to_thread(subprocess.run,
                                  ['ss', '-tnoH', 'state', 'established',
                                   '( sport = :%d )' % port],
                                  capture_output=True, text=True, timeout=10)
    check('timer:(keepalive' in out.stdout,
          'no TCP keepalive timer on the server side of a subscriber: %r' % out.stdout)

    def vanished():
        w = RawWs(port)
        t0 = time.monotonic()
        pings = 0
        try:
            while time.monotonic() - t0 < 30:
                try:
                    fin, op, payload = w.recv_frame(30)
                except EOFError:
                    return time.monotonic() - t0, pings
                pings += op == OP_PING
            return None, pings
        finally:
            w.close()

    took, pings = await asyncio.to_thread(vanished)
    check(took is not None, 'a peer that never answers pings was still connected after 30 s')
    check(pings >= 1, 'the peer was dropped without being pinged')
    check(not good.closed.is_set(), 'the subscriber that answers pings was dropped too: %s'
          % good.close_info)
    dropped = [line for line in ctx.cl.log_since(mark) if 'no answer to a ping' in line]
    check(dropped, 'the drop was not logged')
    await still_serving(ctx, 'keepalive')
    return 'dropped after %.1f s and %d ping(s); %s' % (took, pings, dropped[0].split('LOG:  ')[-1])


async def test_log_rate_limit(ctx):
    """Log lines a peer can cause are rate-limited: 200 bad requests in a
    row write at most two bursts of lines (the flood may straddle a
    window), then a line says how many were suppressed, and the next
    window logs again."""
    port = ctx.cl.wsport
    mark = ctx.cl.log_size()
    await asyncio.to_thread(exchange_many, port, b'BREW /ws/ HTTP/1.1\r\nHost: x\r\n\r\n', 200)
    # the summary is written once the window is over (housekeeping)
    deadline = time.monotonic() + 30
    while True:
        lines = ctx.cl.log_since(mark)
        summary = [x for x in lines if 'pg_ws suppressed' in x and 'refused requests' in x]
        if summary or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    check(summary, 'no "suppressed" line after 200 bad requests')
    before = lines[:next(i for i, x in enumerate(lines) if 'pg_ws suppressed' in x)]
    refusals = [x for x in before if 'pg_ws refused a request' in x and 'BREW' not in x]
    brews = [x for x in before if 'pg_ws refused a request' in x]
    check(len(brews) <= 40, '%d refusal lines for 200 bad requests' % len(brews))
    # a new window: the next refusal is logged again
    mark2 = ctx.cl.log_size()
    await asyncio.to_thread(exchange_many, port, b'GET /after-the-flood HTTP/1.1\r\nHost: x\r\n\r\n', 1)
    deadline = time.monotonic() + 10
    while not any('/after' in x or '404' in x for x in ctx.cl.log_since(mark2)):
        check(time.monotonic() < deadline, 'the first refusal of a new window was not logged')
        await asyncio.sleep(0.2)
    await still_serving(ctx, 'a log flood')
    return '%d lines for 200 bad requests, then: %s' % (
        len(brews) + len(refusals), summary[0].split('LOG:  ')[-1])


async def test_mixed_flood(ctx):
    """Hundreds of hostile connections of every kind, then the worker's
    heap is back at its baseline and a subscriber is served."""
    port = ctx.cl.wsport
    attacks = [lambda: rawws.http_exchange(port, b'CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n'),
               lambda: rawws.http_exchange(port, rawws.upgrade_request(port, extra=['Cookie: ' + 'z' * 20000])),
               lambda: frame_case(port, lambda w: w.send_frame(OP_TEXT, b'x', mask=False)),
               lambda: frame_case(port, lambda w: w.send_text('{"type": "hello", "pad": "%s"}' % ('x' * 300))),
               lambda: frame_case(port, lambda w: [w.send_frame(OP_TEXT if i == 0 else OP_CONT, b'q' * 3000,
                                                                fin=False) for i in range(6)]),
               lambda: frame_case(port, lambda w: w.send_frame(OP_CLOSE, b'\x03\xe8'))]

    def flood():
        for i in range(FLOOD):
            attacks[i % len(attacks)]()

    t0 = time.monotonic()
    await asyncio.to_thread(flood)
    took = time.monotonic() - t0
    grown = await still_serving(ctx, 'a flood of hostile connections')
    return '%d hostile connections in %.1f s; heap %+d bytes over the baseline' % (
        FLOOD, took, grown or 0)


# ------------------------------------------------- request heads (issue 15)

# Issue 15 item 1: repeated headers were joined into the connection's
# memory with one new copy per occurrence, kept until the connection
# closed: the head of 1,340 "Cookie:xxxx" lines (16,080 bytes, LF
# line ends, under the 16 kB pg_ws.max_header_size) cost 5.26 MB.  Now a
# request may cost at most a small multiple of pg_ws.max_header_size while
# it is read and parsed, and nothing once it is answered.
MAX_HEADER = 16384
# what each connection held open may add to the worker's heap: its head
# while it arrives (at most max_header_size and its blank line) plus what
# every connection costs (libwebsockets' and pg_ws's own, under 3 kB)
HELD_BOUND = MAX_HEADER + 4096
HELD = 100
ROUNDS = 1000
# what the worker's resident memory may grow by, at its peak, over a
# thousand such requests: parsing one costs a small multiple of
# max_header_size, given back at once (1.2's grew by megabytes)
RSS_SLACK = 1024 * 1024

# (header, value): each repeated until the head is as large as allowed;
# Cookie joins with "; ", the lists with ", "
REPEATED = [('Cookie', 'xxxx'), ('Connection', 'Upgrade'), ('Upgrade', 'websocket'),
            ('Sec-WebSocket-Protocol', 'pg_ws')]


def repeated_head(port, name, value, path='/ws/', count=None):
    """An upgrade request whose head repeats name: value (LF-terminated,
    as many times as fit in MAX_HEADER, or count), and its count."""
    base = rawws.upgrade_request(port, path=path)[:-2]      # without the blank line
    line = ('%s:%s\n' % (name, value)).encode()
    n = count if count is not None else (MAX_HEADER - len(base) - 1) // len(line)
    raw = base + line * n + b'\n'
    assert len(raw) <= MAX_HEADER, len(raw)
    return raw, n


def send_head(port, raw, keep=False, timeout=10):
    """Send raw; the answer's status line (101: read up to its head, else
    until the server closes), and the socket if keep (else closed)."""
    s = rawws.connect(port, timeout=timeout)
    try:
        s.sendall(raw)
        data = rawws.read_head(s)
        line = data.split(b'\r\n', 1)[0].decode('latin-1')
        if not line.startswith('HTTP/1.1 101 '):
            more, _ = rawws.read_until_closed(s, timeout)
            data += more
        if keep:
            return line, data, s
        s.close()
        return line, data, None
    except BaseException:
        s.close()
        raise


def heap_now(port):
    """The worker's heap as /metrics publishes it, fresh for the scrape."""
    raw = b'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % port
    status, _, body, line, _ = rawws.http_exchange(port, raw)
    check(status == 200, '/metrics: %r' % line)
    for x in body.decode().splitlines():
        if x.startswith('pg_ws_worker_memory_bytes '):
            return int(x.split()[1])
    raise Fail('/metrics has no pg_ws_worker_memory_bytes')


async def test_repeated_headers_held(ctx):
    """A hundred connections held open at once, each with a head of
    repeated headers (the issue's 1,340 Cookie lines, and Connection,
    Upgrade and Sec-WebSocket-Protocol repeated as often as fit): as
    subscribers, then refused (a malformed ?events=, answered only after
    everything is parsed) and lingering, then still reading their heads
    (all but the blank line sent).  While they are held the worker's heap
    grows by at most pg_ws.max_header_size (and what any connection
    costs) per connection, measured every ten connections; once they are
    gone it is back at its baseline."""
    cl = await limits_cluster(ctx, 'heads', ['pg_ws.max_connections = 150',
                                             "pg_ws.handshake_timeout = '30s'",
                                             'pg_ws.ping_interval = 0'], warm=120)
    conn = await ctx.aconn()
    port = cl.wsport
    baseline = _baselines[cl]
    notes = []
    for mode, path, want in (('subscribed', '/ws/', 'HTTP/1.1 101 '),
                             ('refused', '/ws/?events=Bad', 'HTTP/1.1 400 '),
                             ('reading', '/ws/', None)):
        held = []
        peak = 0
        try:
            for i in range(HELD):
                name, value = REPEATED[i % len(REPEATED)]
                raw, _ = repeated_head(port, name, value, path)
                if want is None:
                    # the head without its blank line: the worker keeps it
                    sock = await asyncio.to_thread(rawws.connect, port)
                    held.append(sock)
                    await asyncio.to_thread(sock.sendall, raw[:-1])
                    if (i + 1) % 10 == 0:
                        await asyncio.sleep(0.3)    # for the worker to read them
                else:
                    line, data, sock = await asyncio.to_thread(send_head, port, raw, True)
                    held.append(sock)
                    check(line.startswith(want), '%s, %s repeated: %r %s'
                          % (mode, name, line, short(data)))
                if (i + 1) % 10 == 0:
                    mem = await asyncio.to_thread(heap_now, port)
                    peak = max(peak, mem)
                    check(mem - baseline <= (i + 1) * HELD_BOUND,
                          'with %d %s connections held the worker\'s heap is %d bytes over its'
                          ' baseline %d: more than %d (pg_ws.max_header_size) per connection'
                          % (i + 1, mode, mem - baseline, baseline, HELD_BOUND))
            if want is None:
                # the heads are held indeed: the test measures what it says
                check(peak - baseline >= HELD * (MAX_HEADER - 1024),
                      'with %d heads of %d bytes being read the heap is only %d bytes over'
                      ' its baseline' % (HELD, MAX_HEADER, peak - baseline))
        finally:
            for sock in held:
                sock.close()
        await connections_gone(conn)
        after = await settle_memory(conn, baseline + MEMORY_SLACK)
        check(after <= baseline + MEMORY_SLACK,
              'after the %s connections closed the worker holds %d bytes, baseline %d'
              ' (+%d allowed)' % (mode, after, baseline, MEMORY_SLACK))
        notes.append('%d %s: baseline %d, peak %+d (%d per connection), after %+d'
                     % (HELD, mode, baseline, peak - baseline, (peak - baseline) // HELD,
                        after - baseline))
    await still_serving(ctx, 'connections with repeated headers')
    return '; '.join(notes)


worker_rss = process_rss


async def test_repeated_headers_rounds(ctx):
    """A thousand connections in turn, each with a head of repeated
    headers, subscribed or refused: the worker's resident memory did not
    grow by more than RSS_SLACK even at its peak (reset before, read from
    /proc after), and its heap is back at its baseline."""
    port = ctx.cl.wsport
    conn = await ctx.aconn()
    pid = (await asql(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'"))[0][0]
    heads = []
    for name, value in REPEATED:
        for path, want in (('/ws/', 'HTTP/1.1 101 '), ('/ws/?events=Bad', 'HTTP/1.1 400 ')):
            raw, n = repeated_head(port, name, value, path)
            heads.append((name, n, raw, want))

    def rounds():
        for i in range(ROUNDS):
            name, n, raw, want = heads[i % len(heads)]
            line, data, _ = send_head(port, raw)
            if not line.startswith(want):
                return '%s repeated %d times: %r %s' % (name, n, line, short(data))
        return None

    # the peak resident memory starts from now (proc(5): clear_refs)
    with open('/proc/%d/clear_refs' % pid, 'w') as f:
        f.write('5')
    rss0, _ = worker_rss(pid)
    t0 = time.monotonic()
    problem = await asyncio.to_thread(rounds)
    check(problem is None, problem)
    took = time.monotonic() - t0
    rss1, peak = worker_rss(pid)
    check(peak - rss0 <= RSS_SLACK,
          'over %d heads of repeated headers the worker\'s resident memory peaked %d bytes'
          ' over where it was (%d), and is %+d now: more than %d'
          % (ROUNDS, peak - rss0, rss0, rss1 - rss0, RSS_SLACK))
    grown = await still_serving(ctx, '%d heads of repeated headers' % ROUNDS)
    return '%d connections in %.1f s (%s); resident memory %d, peak %+d, after %+d;' \
        ' heap %+d bytes over the baseline' % (
            ROUNDS, took, ', '.join('%s x%d' % (h[0], h[1]) for h in heads[::2]),
            rss0, peak - rss0, rss1 - rss0, grown or 0)


async def test_request_framing(ctx):
    """Issue 15 item 5, checked by the raw-socket client: a NUL byte in the
    head, a missing, repeated or malformed Host, a body announced on an
    upgrade (Content-Length twice or above 0, Transfer-Encoding) are 400s;
    an absolute-form target is routed by its path (and its authority
    stands for the Host); empty lines before the request line are ignored.
    Each 400 is counted as bad_request and logged."""
    port = ctx.cl.wsport
    conn = await ctx.aconn()
    host = 'Host: 127.0.0.1:%d' % port

    def up(path='/ws/', extra=(), drop_host=False, prefix=b'', body=b''):
        raw = rawws.upgrade_request(port, path=path, extra=extra)
        if drop_host:
            raw = raw.replace((host + '\r\n').encode(), b'')
        return prefix + raw + body

    cases = [
        # the Origin after the NUL was never checked: 1.2 answered 101
        ('a NUL byte in a header, an Origin after it',
         up(extra=['X: a\x00', 'Origin: https://evil.example']), 400),
        ('a NUL byte at the end of the request line',
         up().replace(b' HTTP/1.1\r\n', b' HTTP/1.1\x00\r\n', 1), 400),
        ('no Host', up(drop_host=True), 400),
        ('two Host headers', up(extra=[host]), 400),
        ('a Host with a path', up(drop_host=True, extra=['Host: 127.0.0.1:%d/ws/' % port]), 400),
        ('an empty Host', up(drop_host=True, extra=['Host:']), 400),
        ('Content-Length twice', up(extra=['Content-Length: 0', 'Content-Length: 0']), 400),
        ('Content-Length: 5 and a body', up(extra=['Content-Length: 5'], body=b'\x81\x85abcd'), 400),
        ('a malformed Content-Length', up(extra=['Content-Length: 1x']), 400),
        ('Transfer-Encoding: chunked', up(extra=['Transfer-Encoding: chunked'], body=b'0\r\n\r\n'), 400),
        ('Content-Length and Transfer-Encoding',
         up(extra=['Content-Length: 0', 'Transfer-Encoding: chunked']), 400),
        ('an absolute-form target of another scheme', up(path='ftp://127.0.0.1:%d/ws/' % port), 400),
        ('an absolute-form target with userinfo', up(path='http://u@127.0.0.1:%d/ws/' % port), 400),
        ('Content-Length: 0 on an upgrade', up(extra=['Content-Length: 0']), 101),
        ('an absolute-form target', up(path='http://127.0.0.1:%d/ws/' % port), 101),
        ('an absolute-form target with a query',
         up(path='HTTP://127.0.0.1:%d/ws/?events=client_*' % port), 101),
        ('an absolute-form target for another host (its authority is the Host)',
         up(path='http://evil.example:%d/ws/' % port), 403),
        ('an absolute-form GET of the console',
         b'GET http://localhost:%d HTTP/1.1\r\n%s\r\n\r\n' % (port, host.encode()), 200),
        ('two empty lines before the request line', up(prefix=b'\r\n\r\n'), 101),
        ('an LF and a CRLF before the request line', up(prefix=b'\n\r\n'), 101),
        ('a CR alone before the request line', up(prefix=b'\r'), 400),
    ]
    # a scrape publishes the worker's figures: the count starts from now
    await asyncio.to_thread(heap_now, port)
    before = (await asql(conn, "SELECT refusals FROM pg_ws_stats"))[0][0]
    problems = []
    n400 = 0
    for what, raw, want in cases:
        for _ in range(3):
            line, data, _ = await asyncio.to_thread(send_head, port, raw)
            if not line.startswith('HTTP/1.1 %d ' % want):
                problems.append('%s: %r %s, expected %d' % (what, line, short(data, 120), want))
                break
            n400 += want == 400
    check(not problems, *problems)

    # the empty lines may come in pieces: a CR at the end of one write
    def split_crlf():
        s = rawws.connect(port)
        try:
            s.sendall(b'\r')
            time.sleep(0.2)
            s.sendall(b'\n\r\n' + up())
            return s.recv(4096).split(b'\r\n', 1)[0]
        finally:
            s.close()
    line = await asyncio.to_thread(split_crlf)
    check(line.startswith(b'HTTP/1.1 101 '), 'empty lines in two writes: %r' % line)

    async def counted():
        after = (await asql(conn, "SELECT refusals FROM pg_ws_stats"))[0][0]
        return after['bad_request'] - before['bad_request'] >= n400 and after
    after = await poll('the 400s counted', counted, timeout=10)
    check(after['bad_request'] - before['bad_request'] == n400,
          'bad_request grew by %d, expected %d' % (after['bad_request'] - before['bad_request'], n400))

    # logged too, rate-limited with the other 400s: within a window or two
    async def logged():
        await asyncio.to_thread(send_head, port, cases[0][1])
        return [x for x in ctx.cl.log_since(0)
                if '400 Bad Request: NUL byte in the request head' in x]
    said = await poll('a log line saying why the NUL was refused', logged, timeout=25, every=1)
    await still_serving(ctx, 'requests framed to slip past checks')
    return '%d kinds, 3 times each; %s' % (len(cases), said[0].split('LOG:  ')[-1])


# ----------------------------------------------------------- limit tests

async def limits_cluster(ctx, name, conf, nofile=None, warm=0):
    """A cluster of its own (started under a limit on open files when
    nofile is (soft, hard)), warmed up with warm silent connections and its
    heap's baseline taken, holding no connection yet (install() probes the
    port, and the worker notices that probe's close asynchronously)."""
    cl = Cluster(name=name, conf=BASE_CONF + conf)
    ctx.use(cl)
    cl.nofile = nofile
    await asyncio.to_thread(cl.start)
    await cl.install()
    await connections_gone(await ctx.aconn())
    await take_baseline(ctx, warm)
    return cl


async def test_max_connections_counts_handshakes(ctx):
    """pg_ws.max_connections counts every socket a peer holds: with 3 held
    by peers that send nothing, the next upgrade gets a clean 503 (not a
    reset), and once they are gone a subscriber is served."""
    cl = await limits_cluster(ctx, 'limits', ['pg_ws.max_connections = 3',
                                              "pg_ws.handshake_timeout = '30s'"])
    port = cl.wsport
    held = [await asyncio.to_thread(rawws.connect, port) for _ in range(3)]
    try:
        # the server has accepted them when a refusal shows in the log, or
        # the 503 below comes: nothing to wait for but the answer
        seen = await asyncio.to_thread(exchange_many, port, rawws.upgrade_request(port), 10)
        line, body = expect_one_answer(seen, 503, 'an upgrade while 3 silent sockets are held')
        check(b'max_connections' in body, 'the 503 does not say which limit: %r' % body)
        try:
            await ctx.sub()
            raise Fail('a subscriber was served while 3 silent sockets were held')
        except websockets.InvalidStatusCode as e:
            check(e.status_code == 503, 'python-websockets saw HTTP %d' % e.status_code)
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            await ctx.sub()
            break
        except websockets.InvalidStatusCode:
            check(time.monotonic() < deadline, 'still refused 10 s after the silent peers left')
            await asyncio.sleep(0.2)
    await still_serving(ctx, 'the connection limit')
    return 'the fourth socket got: %s' % line


async def test_max_connections_per_address(ctx):
    """pg_ws.max_connections_per_address = 2: a third connection from
    127.0.0.1 gets 503 while 127.0.0.2, another peer, is served."""
    cl = await limits_cluster(ctx, 'per-address', ['pg_ws.max_connections_per_address = 2',
                                                   "pg_ws.listen_addresses = '127.0.0.1'"])
    port = cl.wsport
    a = [await asyncio.to_thread(RawWs, port) for _ in range(2)]
    try:
        try:
            w = await asyncio.to_thread(RawWs, port)
            w.close()
            raise Fail('a third connection from 127.0.0.1 was served')
        except Rejected as e:
            check(e.status == 503 and b'per_address' in e.body,
                  'the third from 127.0.0.1: %s %r' % (e.line, e.body))
        other = await asyncio.to_thread(RawWs, port, '/ws/', (), '127.0.0.2')
        other.close()
        # pg_ws_stats (published once a second) shows the two held, so that
        # connections_gone() sees them go rather than a count from before
        conn = await ctx.aconn()

        async def shown():
            return (await asql(conn, "SELECT connections FROM pg_ws_stats"))[0][0] >= 2
        await poll('pg_ws_stats to show the two connections', shown)
    finally:
        for w in a:
            w.close()
    await connections_gone(await ctx.aconn())
    await still_serving(ctx, 'the per-address limit')


async def test_descriptor_limit(ctx):
    """The worker raises its soft limit on open files to what
    pg_ws.max_connections needs: the server started with a soft limit of
    100 (PostgreSQL itself needs about 60), it still serves 200 connections
    and answers the 201st with 503, not a reset."""
    cl = await limits_cluster(ctx, 'nofile', ['pg_ws.max_connections = 200',
                                               "pg_ws.handshake_timeout = '60s'",
                                               'pg_ws.ping_interval = 0'],
                              nofile=(100, 4096), warm=110)
    conn = await ctx.aconn()
    port = cl.wsport
    held = []
    try:
        for _ in range(200):
            held.append(await asyncio.to_thread(RawWs, port))
        seen = await asyncio.to_thread(exchange_many, port, rawws.upgrade_request(port), 3)
        expect_one_answer(seen, 503, 'the 201st connection')

        # pg_ws_stats shows them (it is published once a second), so that
        # connections_gone() below sees them go rather than a count from
        # before they came
        async def shown():
            return (await asql(conn, "SELECT connections FROM pg_ws_stats"))[0][0] >= 200
        await poll('pg_ws_stats to show the 200 connections', shown)
        # the worker's own limit, as the kernel shows it
        pid = (await asql(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'"))[0][0]
        with open('/proc/%d/limits' % pid) as f:
            limit = [x for x in f if x.startswith('Max open files')][0].split()
    finally:
        for w in held:
            w.close()
    await connections_gone(conn)
    await still_serving(ctx, 'the descriptor limit')
    return 'worker soft limit %s (server started with 100); 200 served, the 201st got 503' % limit[3]


async def test_descriptor_limit_too_low(ctx):
    """When the hard limit on open files is below what
    pg_ws.max_connections needs, the worker says so in the log (and still
    serves what it can)."""
    cl = await limits_cluster(ctx, 'nofile-hard', ['pg_ws.max_connections = 500'],
                              nofile=(100, 150))
    said = [x for x in cl.log_since(0) if 'could not raise its limit on open files' in x]
    check(said, 'the worker did not say it could not raise its limit on open files')
    await still_serving(ctx, 'a hard limit too low')
    return said[0].split('LOG:  ')[-1]


async def test_max_connections_past_the_tables(ctx):
    """pg_ws.max_connections goes past 1.3's maximum of 10,000 (to
    1,000,000). The worker sizes libwebsockets' descriptor tables once,
    when it starts, for at least 10,000, and sets its soft limit on open
    files to their size, lowering one that the server started with above
    it (libwebsockets otherwise searches its table for each event instead
    of indexing it). A reload past the tables says the worker serves no
    more until it starts again; the worker that starts then sizes them for
    the new setting."""
    cl = await limits_cluster(ctx, 'tables', [], nofile=(16000, 16000))
    conn = await ctx.aconn()
    text = 'until its worker starts again, not pg_ws.max_connections = 12000'

    async def worker_pid():
        rows = await asql(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'")
        return rows[0][0] if rows else None

    def soft_limit(pid):
        with open('/proc/%d/limits' % pid) as f:
            return int([x for x in f if x.startswith('Max open files')][0].split()[3])

    old = await worker_pid()
    check(soft_limit(old) == 10000 + 80,
          'the worker started with a soft limit of 16,000 kept %d, not its tables\' 10,080'
          % soft_limit(old))
    mark = cl.log_size()
    await asql(conn, "ALTER SYSTEM SET pg_ws.max_connections = 12000", "SELECT pg_reload_conf()")

    async def said():
        return [x for x in cl.log_since(mark) if text in x]
    line = (await poll('the log to say the tables are too small for 12000', said, timeout=20))[0]
    check(soft_limit(old) == 10000 + 80, 'the reload changed the soft limit: %d' % soft_limit(old))
    await restart_worker(cl)
    new = await worker_pid()
    await still_serving(ctx, 'a worker restarted for pg_ws.max_connections')
    mark2 = cl.log_size()
    await asql(conn, "SELECT pg_reload_conf()")
    await asyncio.sleep(1)
    check(soft_limit(new) == 12000 + 80, 'the new worker\'s soft limit: %d' % soft_limit(new))
    check(not [x for x in cl.log_since(mark2) if text in x],
          'the worker started with 12000 still says its tables are too small')
    return line.split('LOG:  ')[-1]


async def test_public_address_needs_auth(ctx):
    """With pg_ws.auth none, a listen address that is not loopback keeps
    pg_ws from listening at all (and the log says why) unless
    pg_ws.allow_anonymous = on; a reload applies either way."""
    cl = Cluster(name='public', conf=BASE_CONF + ["pg_ws.listen_addresses = '*'"])
    ctx.use(cl)
    await asyncio.to_thread(cl.start)
    conn = await ctx.aconn()
    await asql(conn, "CREATE EXTENSION pg_ws")
    port = cl.wsport

    async def log_says(text, since, timeout=20):
        deadline = time.monotonic() + timeout
        while not any(text in x for x in cl.log_since(since)):
            check(time.monotonic() < deadline, 'the log does not say %r' % text)
            await asyncio.sleep(0.1)
        return next(x for x in cl.log_since(since) if text in x)

    def refused():
        try:
            rawws.connect(port, timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True

    warning = await log_says('pg_ws is not listening: pg_ws.listen_addresses includes', 0)
    check(await asyncio.to_thread(refused), 'pg_ws listens on * with pg_ws.auth none')
    mark = cl.log_size()
    await asql(conn, "ALTER SYSTEM SET pg_ws.allow_anonymous = on", "SELECT pg_reload_conf()")
    await log_says('pg_ws listening on', mark)
    deadline = time.monotonic() + 20
    while await asyncio.to_thread(refused):
        check(time.monotonic() < deadline, 'not listening after pg_ws.allow_anonymous = on')
        await asyncio.sleep(0.1)
    await still_serving(ctx, 'pg_ws.allow_anonymous = on')
    mark = cl.log_size()
    await asql(conn, "ALTER SYSTEM RESET pg_ws.allow_anonymous", "SELECT pg_reload_conf()")
    await log_says('pg_ws is not listening', mark)
    deadline = time.monotonic() + 20
    while not await asyncio.to_thread(refused):
        check(time.monotonic() < deadline, 'still listening after pg_ws.allow_anonymous was reset')
        await asyncio.sleep(0.1)
    return warning.split('WARNING:  ')[-1]


TESTS = [
    ('unrouted requests (CONNECT, other methods, raw bytes, h2c, HTTP/2) get HTTP/1.1 answers',
     test_unrouted_requests, 120),
    ('a peer that never answers pings is dropped; one that answers stays',
     test_keepalive, 60),
    ('silent peers, a TLS hello on the plain port and a slow-loris are closed in bounded time',
     test_silent_and_slow, 120),
    ('a head over pg_ws.max_header_size gets 431; big cookies under it are served',
     test_header_size, 60),
    ('only the subprotocol pg_ws may be selected; internal protocol names are unreachable',
     test_subprotocols, 30),
    ('bad client frames close with 1002, 1003, 1007, 1008 or 1009 (raw-socket client)',
     test_client_frames, 120),
    ('pings get pongs, closes are echoed, a raw subscriber gets events',
     test_control_frames, 30),
    ('log lines a peer can cause are rate-limited', test_log_rate_limit, 60),
    ('a flood of hostile connections leaves the worker at its memory baseline',
     test_mixed_flood, 180),
    ('repeated headers: 100 connections held cost at most max_header_size each, then nothing',
     test_repeated_headers_held, 240),
    ('repeated headers: 1,000 connections peak within 1 MB of resident memory and leave the heap'
     ' at its baseline', test_repeated_headers_rounds, 180),
    ('a NUL, no Host, bodies on upgrades are 400s; absolute-form targets and leading empty lines'
     ' are served', test_request_framing, 90),
    ('pg_ws.max_connections counts handshakes; the next socket gets a clean 503',
     test_max_connections_counts_handshakes, 60),
    ('pg_ws.max_connections_per_address refuses a third from one address, not another peer',
     test_max_connections_per_address, 60),
    ('the worker raises its descriptor limit for pg_ws.max_connections',
     test_descriptor_limit, 90),
    ('the worker says so when the hard limit on open files is too low for pg_ws.max_connections',
     test_descriptor_limit_too_low, 60),
    ('pg_ws.max_connections past 10,000: the soft limit is the tables\' size; a reload past them'
     ' says so; the next start sizes them', test_max_connections_past_the_tables, 90),
    ('a non-loopback listen address without auth is refused unless pg_ws.allow_anonymous',
     test_public_address_needs_auth, 60),
]


def main():
    async def setup():
        cl = Cluster(name='hostile', conf=BASE_CONF)
        _main['cluster'] = cl
        await asyncio.to_thread(cl.start)
        await cl.install()
        ctx = Ctx(cl)
        try:
            await take_baseline(ctx, 110)
        finally:
            await ctx.cleanup()

    run_tap(TESTS, lambda: Ctx(_main['cluster']), setup=setup,
            watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
