#!/usr/bin/python3
"""End-to-end tests of permessage-deflate on /ws/ (RFC 7692, issue 19).

This file owns the compression suite: with pg_ws.compression on, a /ws/
subscriber that offers permessage-deflate is answered with
server_no_context_takeover and client_no_context_takeover, and is sent
the same messages as one that does not offer it (byte for byte once
inflated); messages of pg_ws.compression_min_size bytes or more are
compressed, once for every such subscriber, shorter ones go in plain
frames; an offer pg_ws cannot honour (a server window under 32 kB) is
declined and the next one taken; what a subscriber sends compressed is
inflated with a bound (a decompression bomb closes with 1009, data that
is not DEFLATE with 1007), RSV1 where it does not belong with 1002, and
everyone else keeps being served; with pg_ws.compression off nothing is
compressed.  Headless Chromium's WebSocket and Node's ws (clients/js's
devDependency) negotiate it and get a plain subscriber's messages.

Clusters (harness.ClusterKinds):
    on    pg_ws.compression = on (pg_ws.compression_min_size 512, the
          default), pg_ws.allowed_origins the browser page's origin
    off   the default: pg_ws.compression = off
    wal   pg_ws.compression = on, pg_ws.history_size = 0: every resume
          reads the WAL

Run as root: /usr/bin/python3 test/e2e/test_compression.py   (TAP output)
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawws  # noqa: E402
from harness import (Cluster, ClusterKinds, Ctx, Skip, asql, check,  # noqa: E402
                     poll, resume_path, run_tap, short, ws_connect)
import test_browser  # noqa: E402
from test_browser import CHROMIUM, PAGE_ORIGIN, Browser, PageServer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_WS = os.path.join(ROOT, 'clients', 'js', 'node_modules', 'ws')

ACCEPTED = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'
OFFER = 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits'
VISITS = 100


def make_cluster(kind):
    conf = {'on': ["pg_ws.compression = on",
                   "pg_ws.allowed_origins = '%s'" % PAGE_ORIGIN],
            'off': [],
            'wal': ["pg_ws.compression = on", "pg_ws.history_size = 0"]}[kind]
    return Cluster(name=kind, conf=conf)


KINDS = ClusterKinds(make_cluster)


def deflate(data):
    """RFC 7692 7.2.1: raw DEFLATE, a sync flush, its empty block removed."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b'\x00\x00\xff\xff')
    return out[:-4]


def inflate(data):
    d = zlib.decompressobj(-15)
    return d.decompress(data + b'\x00\x00\xff\xff')


class RawSubscriber:
    """A subscriber on a raw socket that keeps every frame as it came:
    (rsv1, payload on the wire, the message's text)."""

    def __init__(self, port, extensions=OFFER):
        self.ws = rawws.RawWs(port, extra=[extensions] if extensions else [])
        self.frames = []

    def extension(self):
        return self.ws.headers.get('sec-websocket-extensions')

    def read(self, n, timeout=30):
        """Read until n text messages came."""
        while len(self.frames) < n:
            b0, op, payload = self._frame(timeout)
            if op == rawws.OP_TEXT:
                rsv1 = bool(b0 & 0x40)
                text = inflate(payload) if rsv1 else payload
                self.frames.append((rsv1, payload, text.decode()))
        return self.frames

    def _frame(self, timeout):
        # rawws.recv_frame drops the first byte's reserved bits: read the
        # header here to keep RSV1
        end = time.monotonic() + timeout
        b0, b1 = self.ws._need(2, end)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self.ws._need(2, end), 'big')
        elif n == 127:
            n = int.from_bytes(self.ws._need(8, end), 'big')
        return b0, b0 & 0x0F, self.ws._need(n, end)

    def close(self):
        self.ws.close()


async def metric(cl, name):
    raw = ('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % cl.wsport).encode()
    status, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, cl.wsport, raw)
    check(status == 200, '/metrics: %s' % status)
    text = body.decode() if isinstance(body, bytes) else body
    for line in text.splitlines():
        if line.startswith(name + ' '):
            return int(float(line.split()[1]))
    raise AssertionError('no %s in /metrics' % name)


async def client_with_visits(conn, cid):
    """A client with VISITS visits; returns after the UPDATE whose
    client_update carries them all (about 6 kB)."""
    await asql(conn, "INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age,"
                     " image) VALUES (%d, now(), now(), 0, 'female', 40, 'client_images/%d.jpg')"
               % (cid, cid),
               "INSERT INTO visit_history (client_id, datetime, device_id)"
               " SELECT %d, now() - g * interval '1 minute', 'device-' || g"
               " FROM generate_series(1, %d) g" % (cid, VISITS),
               "UPDATE client SET visit_count = %d WHERE id = %d" % (VISITS, cid))


async def write_mix(ctx, base):
    """Events of both sizes: an employee row (about 250 bytes), a client,
    its 100 visits and the client_update carrying them. Returns how many
    messages a subscriber of everything gets."""
    conn = await ctx.aconn()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'a', 'b')"
               % base)
    await client_with_visits(conn, base)
    await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'END', 'b')"
               % (base + 1))
    return 1 + 1 + VISITS + 1 + 1


async def test_negotiation(ctx):
    """a. the answer to an offer, offers declined, compression off."""
    cl = await KINDS.get(ctx, 'on')
    for offer, want in [
        (OFFER, ACCEPTED),
        ('Sec-WebSocket-Extensions: permessage-deflate', ACCEPTED),
        (None, None),
        # a window of its own for the server: declined, the next offer taken
        ('Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10,'
         ' permessage-deflate; server_max_window_bits=15',
         ACCEPTED + '; server_max_window_bits=15'),
        ('Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10', None),
        # unknown parameters, other extensions: passed over
        ('Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; foo=1', None),
        ('Sec-WebSocket-Extensions: x-other\r\nSec-WebSocket-Extensions: permessage-deflate',
         ACCEPTED),
    ]:
        sub = await asyncio.to_thread(RawSubscriber, cl.wsport, offer)
        try:
            got = sub.extension()
        finally:
            sub.close()
        check(got == want, 'offer %r: answered %r, want %r' % (offer, got, want))
    # python-websockets negotiates it by default
    ws = await ws_connect(cl.url + '/ws/', ping_interval=None)
    try:
        check(ws.response_headers.get('Sec-WebSocket-Extensions') == ACCEPTED,
              'python-websockets: %s' % ws.response_headers)
    finally:
        await ws.close()
    off = await KINDS.get(ctx, 'off')
    sub = await asyncio.to_thread(RawSubscriber, off.wsport, OFFER)
    try:
        check(sub.extension() is None, 'compression off, answered %r' % sub.extension())
    finally:
        sub.close()
    return 'accepted with both no_context_takeover; declined when it cannot be honoured'


async def test_same_messages(ctx):
    """b. compressed and plain subscribers get the same messages, once compressed."""
    cl = await KINDS.get(ctx, 'on')
    plain = await asyncio.to_thread(RawSubscriber, cl.wsport, None)
    raws = [await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER) for _ in range(4)]
    py = await ctx.sub()                       # python-websockets, compression on
    check(py.ws.response_headers.get('Sec-WebSocket-Extensions') == ACCEPTED,
          'python-websockets did not negotiate compression')
    before = await metric(cl, 'pg_ws_messages_compressed_total')
    n = await write_mix(ctx, 100)
    want = await asyncio.to_thread(plain.read, n)
    texts = [t for _, _, t in want]
    check(not any(r for r, _, _ in want), 'the plain subscriber got a compressed frame')
    big = [t for t in texts if len(t.encode()) >= 512]
    check(len(big) >= 1 and any(json.loads(t)['event'] == 'client_update' and
                                len(json.loads(t)['data']['visit_histories']) == VISITS
                                for t in big), 'no client_update with %d visits' % VISITS)
    for i, sub in enumerate(raws):
        got = await asyncio.to_thread(sub.read, n)
        check([t for _, _, t in got] == texts, 'compressed subscriber %d differs' % i)
        for rsv1, payload, text in got:
            check(rsv1 == (len(text.encode()) >= 512),
                  'a message of %d bytes went %s' % (len(text.encode()),
                                                      'compressed' if rsv1 else 'plain'))
    await py.wait_until(lambda m: len(m) >= n, 30, 'python-websockets subscriber')
    check(py.msgs == texts, 'python-websockets subscriber differs')
    # each large message was compressed once, for the five of them
    after = await metric(cl, 'pg_ws_messages_compressed_total')
    check(after - before == len(big), 'compressed %d times for %d large messages and 5'
          ' subscribers' % (after - before, len(big)))
    update = [(p, t) for r, p, t in raws[0].frames
              if r and json.loads(t)['event'] == 'client_update']
    wire, full = len(update[-1][0]), len(update[-1][1].encode())
    check(wire * 4 <= full, 'client_update with %d visits: %d bytes on the wire for %d'
          % (VISITS, wire, full))
    for s in [plain] + raws:
        s.close()
    return ('%d messages alike; %d compressed once each; client_update with %d visits'
            ' %d -> %d bytes' % (n, len(big), VISITS, full, wire))


async def expect_close(sub, code, what):
    got, reason, _ = await asyncio.to_thread(sub.ws.read_close, 15)
    check(got == code, '%s: closed with %s (%s), want %d' % (what, got, reason, code))
    return reason


async def test_inbound(ctx):
    """c. what a subscriber sends compressed: inflated with a bound."""
    cl = await KINDS.get(ctx, 'on')
    bystander = await ctx.sub()

    # a compressed message inflates: the text is read (1008: not auth)
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
    s.ws.send_frame(rawws.OP_TEXT, deflate(b'{"type": "hello"}'), rsv=4)
    reason = await expect_close(s, 1008, 'a compressed message that is not auth')
    check('auth' in reason, 'reason: %s' % reason)
    s.close()

    # a bomb: about 10 kB on the wire, 10 MB inflated
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
    bomb = deflate(b' ' * (10 * 1024 * 1024))
    check(len(bomb) < 16384, 'the bomb is %d bytes' % len(bomb))
    s.ws.send_frame(rawws.OP_TEXT, bomb, rsv=4)
    await expect_close(s, 1009, 'a decompression bomb')
    s.close()

    # not DEFLATE data
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
    s.ws.send_frame(rawws.OP_TEXT, b'\xff\xff\xff\xff not deflate', rsv=4)
    await expect_close(s, 1007, 'RSV1 on data that is not DEFLATE')
    s.close()

    # invalid UTF-8 once inflated
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
    s.ws.send_frame(rawws.OP_TEXT, deflate(b'{"type": "\xc3\x28"}'), rsv=4)
    await expect_close(s, 1007, 'compressed text that is not UTF-8')
    s.close()

    # RSV1 where it does not belong: without the extension, on a
    # continuation, on a control frame
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, None)
    s.ws.send_frame(rawws.OP_TEXT, deflate(b'{}'), rsv=4)
    await expect_close(s, 1002, 'RSV1 without permessage-deflate')
    s.close()
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
    s.ws.send_frame(rawws.OP_TEXT, b'{"ty', fin=False)
    s.ws.send_frame(0x0, b'pe": 1}', rsv=4)
    await expect_close(s, 1002, 'RSV1 on a continuation frame')
    s.close()
    s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
    s.ws.send_frame(0x9, b'ping', rsv=4)
    await expect_close(s, 1002, 'RSV1 on a ping')
    s.close()

    # the others were served all along
    conn = await ctx.aconn()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (900, 'x', 'y')")
    await bystander.wait_until(lambda m: any(json.loads(x)['data'].get('id') == 900
                                             for x in m), 30, 'the bystander')
    return 'inflated within the bound; 1009, 1007 and 1002 as they should be'


async def test_min_size(ctx):
    """d. pg_ws.compression_min_size: below it, plain frames."""
    cl = await KINDS.get(ctx, 'on')
    conn = await ctx.aconn()
    await asql(conn, "ALTER SYSTEM SET pg_ws.compression_min_size = 0",
               "SELECT pg_reload_conf()")

    async def reloaded():
        return (await asql(conn, "SELECT current_setting('pg_ws.compression_min_size')"))[0][0] == '0'
    await poll('the setting', reloaded, timeout=10)
    await asyncio.sleep(0.5)                    # the worker reloads too
    try:
        s = await asyncio.to_thread(RawSubscriber, cl.wsport, OFFER)
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (901, 'x', 'y')")
        got = await asyncio.to_thread(s.read, 1)
        s.close()
        check(got[0][0], 'with compression_min_size 0 a %d-byte message went plain: %s'
              % (len(got[0][2]), short(got[0][2])))
    finally:
        await asql(conn, "ALTER SYSTEM RESET pg_ws.compression_min_size",
                   "SELECT pg_reload_conf()")
    return 'a %d-byte message compressed with pg_ws.compression_min_size = 0' % len(got[0][2])


async def test_resume(ctx):
    """g. resuming from memory and from the WAL, compressed as live."""
    results = []
    for kind in ('on', 'wal'):
        cl = await KINDS.get(ctx, kind)
        first = await asyncio.to_thread(RawSubscriber, cl.wsport, None)
        n = await write_mix(ctx, 400)
        live = [t for _, _, t in await asyncio.to_thread(first.read, n)]
        first.close()
        path = resume_path(live[0])
        subs = []
        for ext in (None, OFFER):
            s = RawSubscriber.__new__(RawSubscriber)
            s.ws = await asyncio.to_thread(rawws.RawWs, cl.wsport, path,
                                           [ext] if ext else [])
            s.frames = []
            subs.append(s)
        got = [[t for _, _, t in await asyncio.to_thread(s.read, n - 1)] for s in subs]
        check(got[0] == live[1:], '%s: the plain resumer differs from the live stream' % kind)
        check(got[1] == live[1:], '%s: the compressed resumer differs from the live stream'
              % kind)
        check(any(r for r, _, _ in subs[1].frames), '%s: nothing came compressed' % kind)
        for s in subs:
            s.close()
        results.append('%s: %d' % (kind, n - 1))
    return 'resumed alike, compressed and plain (%s)' % ', '.join(results)


# the page: report the negotiated extensions, then every message
PAGE = """<!doctype html><meta charset="utf-8"><title>pg_ws</title><script>
const url = new URLSearchParams(location.search).get('ws');
const report = (what, body) => fetch('/' + what, {method: 'POST', body});
let n = 0;
const ws = new WebSocket(url);
ws.onopen = () => report('open', ws.extensions);
ws.onmessage = (e) => report('message', JSON.stringify({i: n++, raw: e.data}));
ws.onerror = () => report('error', '');
ws.onclose = (e) => report('close', String(e.code));
</script>"""
test_browser.PAGE = PAGE


async def test_chromium(ctx):
    """e. Chromium's WebSocket: compression negotiated, the same messages."""
    cl = await KINDS.get(ctx, 'on')
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    plain = await asyncio.to_thread(RawSubscriber, cl.wsport, None)
    server = PageServer()
    browser = Browser('http://127.0.0.1:%d/?ws=%s' % (
        server.port, urllib.parse.quote('ws://127.0.0.1:%d/ws/' % cl.wsport, safe='')))
    try:
        posts = []

        async def collect(until, timeout):
            deadline = time.monotonic() + timeout
            while not until():
                left = deadline - time.monotonic()
                check(left > 0, 'Chromium posted %s' % [(k, short(b, 60)) for k, b in posts[-5:]])
                try:
                    posts.append(await asyncio.to_thread(server.posts.get, True, min(left, 0.5)))
                except Exception:
                    pass
        await collect(lambda: any(k == 'open' for k, _ in posts), 60)
        ext = [b for k, b in posts if k == 'open'][0]
        check(ext == ACCEPTED, 'Chromium negotiated %r' % ext)
        n = await write_mix(ctx, 200)
        want = [t for _, _, t in await asyncio.to_thread(plain.read, n)]

        def messages():
            got = {}
            for k, b in posts:
                if k == 'message':
                    m = json.loads(b)
                    got[m['i']] = m['raw']
            return [got[i] for i in sorted(got)]
        await collect(lambda: len(messages()) >= n, 60)
        check(messages() == want, 'Chromium got other messages than a plain subscriber')
    finally:
        browser.close()
        server.close()
        plain.close()
    return 'Chromium: %s; %d messages alike' % (ext, n)


NODE_SCRIPT = r"""
const WebSocket = require(process.argv[1]);
const n = Number(process.argv[3]);
const ws = new WebSocket(process.argv[2]);
const got = [];
ws.on('open', () => console.log(JSON.stringify({open: ws.extensions})));
ws.on('message', (data) => {
  got.push(data.toString());
  if (got.length === n) { console.log(JSON.stringify({messages: got})); ws.close(); }
});
ws.on('error', (e) => { console.log(JSON.stringify({error: String(e)})); process.exit(1); });
"""


async def test_node_ws(ctx):
    """f. Node's ws: compression negotiated, the same messages."""
    cl = await KINDS.get(ctx, 'on')
    node = shutil.which('node')
    if node is None or not os.path.isdir(NODE_WS):
        raise Skip('no node, or no clients/js/node_modules/ws (scripts/install_deps.sh)')
    plain = await asyncio.to_thread(RawSubscriber, cl.wsport, None)
    n = 1 + 1 + VISITS + 1 + 1
    proc = await asyncio.create_subprocess_exec(
        node, '-e', NODE_SCRIPT, NODE_WS, 'ws://127.0.0.1:%d/ws/' % cl.wsport, str(n),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        opened = json.loads(line)
        # ws names the extensions it uses, without their parameters
        check(opened.get('open') == 'permessage-deflate', 'Node ws: %s' % opened)
        await write_mix(ctx, 300)
        want = [t for _, _, t in await asyncio.to_thread(plain.read, n)]
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        got = json.loads(line).get('messages')
        check(got == want, 'Node ws got other messages than a plain subscriber')
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        plain.close()
    return 'Node ws: %s; %d messages alike' % (opened['open'], n)


TESTS = [
    ('(a) negotiation: both no_context_takeover, offers it cannot honour declined, off by'
     ' default', test_negotiation, 60),
    ('(b) compressed subscribers get what a plain one gets, each large message compressed'
     ' once for all, client_update with 100 visits in a quarter of its bytes',
     test_same_messages, 90),
    ('(c) compressed messages from a subscriber: inflated with a bound (1009), 1007 and 1002'
     ' where due, the others served', test_inbound, 90),
    ('(d) pg_ws.compression_min_size', test_min_size, 60),
    ('(e) headless Chromium negotiates it and gets a plain subscriber\'s messages',
     test_chromium, 120),
    ('(f) Node\'s ws negotiates it and gets a plain subscriber\'s messages', test_node_ws, 90),
    ('(g) resumes from memory and from the WAL are compressed as the live stream',
     test_resume, 90),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=400)


if __name__ == '__main__':
    main()
