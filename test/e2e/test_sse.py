#!/usr/bin/python3
"""End-to-end tests of GET /events, pg_ws's Server-Sent Events (issue 19).

This file owns the SSE suite: a subscriber of /events must be sent, as
"data:" lines, exactly the messages a /ws/ subscriber gets, with "event:"
the event's name and "id:" its position (SEQ@EPOCH); resume after
Last-Event-ID (across a worker restart) or ?since= with no gap and no
double, resync_required included; take ?events=, ?filter=, tokens by
?token=, header and cookie, and be refused as /ws/ is (401, 403, 503),
with the HTTP statuses; get heartbeat comments while quiet; be culled
when it stops reading; and work through curl -N, HAProxy, nginx (the
README's server block, /ws/ through it too) and headless Chromium's own
EventSource, which must reconnect after a worker restart and resume
exactly.

Clusters (harness.ClusterKinds):
    main     anonymous, pg_ws.allowed_origins = the browser page's origin,
             pg_ws.ping_interval 1 s (heartbeats), max_subscriber_lag 1MB
    jwt      pg_ws.auth jwt, an inline HS256 secret, a cookie, no leeway,
             allowed_origins https://app.example.com
    limited  anonymous, max_connections_per_address 2

Run as root: /usr/bin/python3 test/e2e/test_sse.py   (TAP output)
"""

import asyncio
import datetime
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jwt_tools as jt  # noqa: E402
import rawws  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from harness import (Cluster, ClusterKinds, Ctx, Fail, asql, check,  # noqa: E402
                     free_port, ident, poll, position, restart_worker,
                     resume_path, run_tap, short)
import test_browser  # noqa: E402
from test_browser import CHROMIUM, PAGE_ORIGIN, Browser, PageServer  # noqa: E402

SECRET = 'sse-test-secret-0123456789abcdef-0123456789'
COOKIE = 'pgws_token'
APP_ORIGIN = 'https://app.example.com'


def make_cluster(kind):
    conf = {
        'main': ["pg_ws.allowed_origins = '%s'" % PAGE_ORIGIN,
                 "pg_ws.ping_interval = '1s'",
                 "pg_ws.max_subscriber_lag = '1MB'"],
        'jwt': ["pg_ws.auth = 'jwt'",
                "pg_ws.jwt_secret = '%s'" % SECRET,
                "pg_ws.jwt_cookie = '%s'" % COOKIE,
                "pg_ws.jwt_leeway = '0s'",
                "pg_ws.allowed_origins = '%s'" % APP_ORIGIN],
        'limited': ["pg_ws.max_connections_per_address = 2"],
    }[kind]
    return Cluster(name=kind, conf=conf)


KINDS = ClusterKinds(make_cluster)


def token(ttl=300, **claims):
    return jt.hs256(jt.claims(ttl=ttl, **claims), SECRET)


# ------------------------------------------------------------ the client

def sse_id(raw):
    """The id /events gives a /ws/ message: its position, SEQ@EPOCH."""
    seq, epoch = position(raw)
    return '%d@%s' % (seq, epoch)


def parse_stream(text):
    """Events and comments of an event stream (the parts of it that end
    with an empty line), as the SSE specification reads them: events as
    dicts {event, data, id, raw}, comments as their text after ':'."""
    events, comments = [], []
    blocks = text.split('\n\n')
    for block in blocks[:-1]:
        ev = {'event': None, 'data': None, 'id': None, 'raw': block}
        for line in block.split('\n'):
            if line.startswith(':'):
                comments.append(line[1:].strip())
                continue
            field, _, value = line.partition(':')
            if value.startswith(' '):
                value = value[1:]
            if field == 'data':
                ev['data'] = value if ev['data'] is None else ev['data'] + '\n' + value
            elif field in ('event', 'id'):
                ev[field] = value
        if ev['data'] is not None:
            events.append(ev)
    return events, comments, blocks[-1]


class SseStream:
    """An /events client on a plain socket: the answer's status and
    headers, then every event and comment as they arrive."""

    def __init__(self, reader, writer, status, headers, body):
        self.reader, self.writer = reader, writer
        self.status, self.headers = status, headers
        self.events, self.comments = [], []
        self.buf = body
        self.closed = asyncio.Event()
        self._absorb()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port, path='/events', headers=(), host='127.0.0.1', ssl=None):
        """Send the request (over TLS with the ssl context given); the stream
        if it was answered 200, else (status, headers, body) of the
        refusal."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl), 10)
        req = ['GET %s HTTP/1.1' % path, 'Host: %s:%d' % (host, port),
               'Accept: text/event-stream', *headers, '', '']
        writer.write('\r\n'.join(req).encode())
        head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), 10)
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            if ':' in line:
                k, v = line.split(':', 1)
                hdrs[k.strip().lower()] = v.strip()
        if status != 200:
            body = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return status, hdrs, body.decode(errors='replace')
        return cls(reader, writer, status, hdrs, '')

    def _absorb(self):
        events, comments, self.buf = parse_stream(self.buf)
        self.events += events
        self.comments += comments

    async def _read(self):
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                self.buf += chunk.decode()
                self._absorb()
        except Exception:
            pass
        finally:
            self.closed.set()

    def data(self):
        return [e['data'] for e in self.events]

    async def wait_until(self, pred, timeout, what, allow_close=False):
        deadline = time.monotonic() + timeout
        while not pred(self):
            if self.closed.is_set() and not allow_close:
                raise Fail('%s: the stream closed after %d events' % (what, len(self.events)),
                           *['  comment: ' + c for c in self.comments[-3:]])
            check(time.monotonic() < deadline, '%s: not after %.0f s; %d events, comments %s'
                  % (what, timeout, len(self.events), self.comments[-3:]))
            await asyncio.sleep(0.02)

    async def expect(self, n, timeout, what, settle=0.3):
        await self.wait_until(lambda s: len(s.events) >= n, timeout, what)
        await asyncio.sleep(settle)
        return list(self.events)

    async def close(self):
        self.writer.close()
        self.task.cancel()


async def open_sse(ctx, path='/events', headers=(), port=None, host='127.0.0.1', ssl=None):
    """An /events stream of ctx's cluster, closed with ctx; Fail unless 200."""
    r = await SseStream.open(port or ctx.cl.wsport, path, headers, host, ssl)
    if not isinstance(r, SseStream):
        raise Fail('GET %s was answered %d: %s' % (path, r[0], short(r[2])))
    ctx.closers.append(r.close)
    return r


async def refused(ctx, path='/events', headers=()):
    """(status, headers, body) of a request to /events pg_ws must refuse."""
    r = await SseStream.open(ctx.cl.wsport, path, headers)
    if isinstance(r, SseStream):
        await r.close()
        raise Fail('GET %s with %s was answered 200, not refused' % (path, list(headers)))
    return r


class SseCtx(Ctx):
    def __init__(self):
        super().__init__()
        self.closers = []

    async def cleanup(self):
        for c in self.closers:
            try:
                await c()
            except Exception:
                pass
        await super().cleanup()


# ------------------------------------------------------------ events

NEXT_ID = [1000]


def batch_sql(n=5):
    """Statements that make n events of several kinds (rows of the
    document's tables and a custom event with non-ASCII data)."""
    stmts = []
    NEXT_ID[0] = (NEXT_ID[0] + 3) // 4 * 4     # a visit's client comes first
    for _ in range(n):
        i = NEXT_ID[0]
        NEXT_ID[0] += 1
        k = i % 4
        if k == 0:
            stmts.append("INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'Zoë', 'x\"y')" % i)
        elif k == 1:
            stmts.append("INSERT INTO client (id, first_seen, gender, age) VALUES"
                         " (%d, '2023-12-10 10:00:00+00', 'female', 31)" % i)
        elif k == 2:
            stmts.append("INSERT INTO visit_history (client_id, datetime, device_id)"
                         " VALUES (%d, '2023-12-10 10:30:00+00', 'cam-%d')" % (i - 1, i % 3))
        else:
            stmts.append("SELECT pg_ws_send('order_paid', jsonb_build_object('id', %d,"
                         " 'note', E'line\\nbreak \u03a9'))" % i)
    return stmts


async def make_events(ctx, n=5):
    conn = await ctx.aconn()
    await asql(conn, *batch_sql(n))


def check_same(events, msgs, who):
    """The stream's events are the /ws/ messages, byte for byte, each named
    as its message and with its position as id."""
    check(len(events) == len(msgs), '%s: %d events, /ws/ got %d messages'
          % (who, len(events), len(msgs)),
          *['  sse: ' + short(e['data'], 120) for e in events[-3:]],
          *['  ws:  ' + short(m, 120) for m in msgs[-3:]])
    for i, (e, m) in enumerate(zip(events, msgs)):
        check(e['data'] == m, '%s: event %d differs from /ws/' % (who, i),
              '  sse: ' + short(e['data']), '  ws:  ' + short(m))
        check(e['event'] == json.loads(m)['event'], '%s: event %d is named %r, not %r'
              % (who, i, e['event'], json.loads(m)['event']))
        check(e['id'] == sse_id(m), '%s: event %d has id %r, not %r'
              % (who, i, e['id'], sse_id(m)))


# ------------------------------------------------------------ tests

async def test_events_as_ws(ctx):
    """data: is /ws/'s message byte for byte; event: its name, id: its
    position; the answer is a stream closed by the server."""
    await KINDS.get(ctx, 'main')
    ws = await ctx.sub()
    sse = await open_sse(ctx)
    h = sse.headers
    check(h.get('content-type', '').startswith('text/event-stream'), 'content-type %r' % h)
    check(h.get('cache-control') == 'no-cache' and h.get('connection') == 'close' and
          h.get('x-accel-buffering') == 'no', 'headers: %s' % h)
    check('content-length' not in h and 'transfer-encoding' not in h,
          'a stream has neither Content-Length nor Transfer-Encoding: %s' % h)
    await make_events(ctx, 8)
    msgs = await ws.expect(8, 30, '/ws/')
    events = await sse.expect(8, 30, '/events')
    check_same(events, msgs, '/events')
    check(all(e['raw'].count('data:') == 1 for e in events),
          'a message is one data: line', *[e['raw'] for e in events][:3])
    return '%d events, identical to /ws/; %s' % (len(events), events[-1]['id'])


async def test_events_and_filter(ctx):
    """?events= and ?filter= choose as on /ws/."""
    await KINDS.get(ctx, 'main')
    queries = ['?events=client_*,order_paid',
               '?filter=' + urllib.parse.quote('device_id=eq.cam-1', safe='')]
    pairs = [(await ctx.sub('/ws/' + q), await open_sse(ctx, '/events' + q)) for q in queries]
    everything = await ctx.sub()
    await make_events(ctx, 12)
    await everything.expect(12, 30, 'every event')
    takes = [lambda e: e['event'].startswith('client_') or e['event'] == 'order_paid',
             lambda e: e['data'].get('device_id') == 'cam-1']
    for q, (ws, sse), take in zip(queries, pairs, takes):
        want = [m for m in everything.msgs if take(json.loads(m))]
        check(want, 'the batch had nothing for %s' % q)
        msgs = await ws.expect(len(want), 30, '/ws/' + q)
        check(msgs == want, '/ws/%s got %d messages, expected %d' % (q, len(msgs), len(want)))
        check_same(await sse.expect(len(want), 30, '/events' + q), msgs, '/events' + q)
    status, _, body = await refused(ctx, '/events?events=Bad-Name')
    check(status == 400 and 'events must list' in body, 'a malformed ?events=: %d %s' % (status, body))
    status, _, body = await refused(ctx, '/events?filter=nofield%3Dxx.1')
    check(status == 400, 'a malformed ?filter=: %d %s' % (status, body))
    return 'two queries, same as /ws/; malformed ones 400'


async def test_since_and_resync(ctx):
    """?since=SEQ&epoch=E and ?since=SEQ@E resume as /ws/ does; a position
    of another epoch gets resync_required as an SSE event."""
    await KINDS.get(ctx, 'main')
    ws = await ctx.sub()
    await make_events(ctx, 6)
    msgs = await ws.expect(6, 30, '/ws/')
    seq, epoch = position(msgs[1])
    for q in ('?since=%d&epoch=%s' % (seq, epoch), '?since=%d@%s' % (seq, epoch)):
        sse = await open_sse(ctx, '/events' + q)
        check_same(await sse.expect(4, 30, '/events' + q), msgs[2:], '/events' + q)
        await sse.close()
    other = '1234-5-1'
    sse = await open_sse(ctx, '/events?since=%d&epoch=%s' % (seq, other))
    ws2 = await ctx.sub('/ws/?since=%d&epoch=%s' % (seq, other))
    notice = (await ws2.expect(1, 30, '/ws/ resync'))[0]
    check(json.loads(notice)['event'] == 'resync_required', '/ws/ first message: %s' % notice)
    first = (await sse.expect(1, 30, '/events resync'))[0]
    check(first['event'] == 'resync_required' and first['id'] == sse_id(notice) and
          json.loads(first['data'])['data'] == json.loads(notice)['data'],
          'resync_required as an SSE event: %s' % first, '  /ws/: ' + notice)
    await make_events(ctx, 2)
    live = await ws2.expect(3, 30, '/ws/ after resync')
    check_same((await sse.expect(3, 30, '/events after resync'))[1:], live[1:], 'after resync')
    for hdr, why in ((['Last-Event-ID: 12x'], 'Last-Event-ID must be'),
                     (['Last-Event-ID: 12'], 'needs the epoch')):
        status, _, body = await refused(ctx, '/events', hdr)
        check(status == 400 and why in body, '%s: %d %s' % (hdr, status, body))
    status, _, body = await refused(ctx, '/events?since=12')
    check(status == 400 and 'needs the epoch' in body, '?since=12: %d %s' % (status, body))
    return 'both forms of since resume exactly; resync_required %s' % first['id']


async def test_last_event_id_restart(ctx):
    """Across a worker restart, Last-Event-ID (over a stale ?since=)
    resumes with no gap and no double."""
    cl = await KINDS.get(ctx, 'main')
    ws = await ctx.sub()
    await make_events(ctx, 3)
    first = await ws.expect(3, 30, '/ws/ first')
    start = '?since=%d&epoch=%s' % position(first[0])
    sse = await open_sse(ctx, '/events' + start)
    await make_events(ctx, 4)
    msgs = await ws.expect(7, 30, '/ws/')
    got = await sse.expect(6, 30, '/events before the restart')
    check_same(got, msgs[1:], 'before the restart')
    last_id = got[-1]['id']
    await restart_worker(cl)
    await sse.wait_until(lambda s: s.closed.is_set(), 30, 'the stream ends with the worker',
                         allow_close=True)
    check(any(c.startswith('close 1001') for c in sse.comments),
          'the stream ended without its close comment: %s' % sse.comments[-3:])
    await make_events(ctx, 4)
    resumed = await open_sse(ctx, '/events' + start, ['Last-Event-ID: ' + last_id])
    ws2 = await ctx.sub(resume_path(msgs[-1]))
    after = await ws2.expect(4, 30, '/ws/ resumed')
    check_same(await resumed.expect(4, 30, '/events resumed', settle=1.0), after, 'resumed')
    check([ident(e['data']) for e in got + resumed.events] ==
          [ident(m) for m in msgs[1:] + after], 'gap or double across the restart')
    return 'resumed after %s: %d events, none twice' % (last_id, len(resumed.events))


async def test_heartbeat(ctx):
    """A quiet stream gets comment heartbeats (pg_ws.ping_interval)."""
    await KINDS.get(ctx, 'main')
    sse = await open_sse(ctx)
    await sse.wait_until(lambda s: s.comments.count('heartbeat') >= 2, 30, 'two heartbeats')
    check(not sse.events, 'events on a quiet stream: %s' % sse.events[:2])
    return 'comments: %s' % sse.comments[:3]


def slow_sse_socket(port, rcvbuf=4096):
    """/events on a socket with a small receive buffer that reads the
    answer's head and then nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(('127.0.0.1', port))
    s.sendall(b'GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    head = b''
    while not head.endswith(b'\r\n\r\n'):
        c = s.recv(1)
        if not c:
            raise Fail('closed before the head: %r' % head)
        head += c
    check(head.startswith(b'HTTP/1.1 200'), 'slow reader: %r' % head)
    return s


async def stats(conn):
    return (await asql(conn, 'SELECT to_jsonb(s) FROM pg_ws_stats() s'))[0][0]


async def test_slow_reader(ctx):
    """A stream that stops reading is culled as a /ws/ subscriber is, and
    counted under drops.lagging; a reading one gets everything."""
    cl = await KINDS.get(ctx, 'main')
    conn = await ctx.aconn()
    before = (await stats(conn))['drops']['lagging']
    normal = await open_sse(ctx)
    slow = await asyncio.to_thread(slow_sse_socket, cl.wsport)
    try:
        # events until it lags past pg_ws.max_subscriber_lag (1MB) beyond
        # what the kernel's buffers took (their size is the kernel's:
        # several MB on loopback at times)
        n = 0
        for _ in range(40):
            await asql(conn, "SELECT pg_ws_send('bulk', jsonb_build_object('i', g, 's', repeat('x', 2000)))"
                             " FROM generate_series(1, 250) g")
            n += 250
            if n >= 1500 and await _lagging_above(conn, before):
                break
            await asyncio.sleep(0.3)
        await poll('drops.lagging to count the slow reader',
                   lambda: _lagging_above(conn, before), timeout=60)
        data, closed = await asyncio.to_thread(rawws.read_until_closed, slow, 30)
        check(closed, 'the slow reader is still connected (%d bytes read)' % len(data))
    finally:
        slow.close()
    got = await normal.expect(n, 60, 'the reading stream')
    check(len(got) == n, 'the reading stream: %d events of %d' % (len(got), n))
    return 'culled; %d events to the one that reads' % n


async def _lagging_above(conn, before):
    return (await stats(conn))['drops']['lagging'] > before


async def test_curl(ctx):
    """curl -N receives the events as /ws/ does."""
    cl = await KINDS.get(ctx, 'main')
    curl = shutil.which('curl')
    check(curl, 'curl is not installed (scripts/install_deps.sh)')
    ws = await ctx.sub()
    proc = await asyncio.create_subprocess_exec(
        curl, '-N', '-s', '-H', 'Accept: text/event-stream',
        'http://127.0.0.1:%d/events' % cl.wsport, stdout=subprocess.PIPE)
    out = ''
    try:
        async def started():
            nonlocal out
            chunk = await asyncio.wait_for(proc.stdout.read(100), 10)
            out += chunk.decode()
            return ': pg_ws events' in out
        await poll('curl to print the stream', started, timeout=30)
        await make_events(ctx, 5)
        msgs = await ws.expect(5, 30, '/ws/')
        deadline = time.monotonic() + 30
        while len(parse_stream(out)[0]) < 5:
            check(time.monotonic() < deadline, 'curl printed: %s' % short(out, 600))
            try:
                out += (await asyncio.wait_for(proc.stdout.read(4096), 1)).decode()
            except asyncio.TimeoutError:
                pass
        check_same(parse_stream(out)[0], msgs, 'curl')
    finally:
        proc.kill()
        await proc.wait()
    return 'curl -N: %d events' % len(msgs)


HAPROXY_CFG = """global
    maxconn 100
defaults
    mode http
    timeout connect 2s
    timeout client %(timeout)ds
    timeout server %(timeout)ds
frontend sse
    bind %(host)s:%(port)d
    default_backend pg_ws
backend pg_ws
    server pg_ws 127.0.0.1:%(wsport)d
"""


async def test_haproxy(ctx):
    """Through HAProxy (README's settings): the events, and a quiet stream
    kept open past the proxy's timeouts by heartbeats."""
    cl = await KINDS.get(ctx, 'main')
    haproxy = shutil.which('haproxy') or '/usr/sbin/haproxy'
    check(os.access(haproxy, os.X_OK), 'haproxy is not installed (scripts/install_deps.sh)')
    host, port, timeout = '127.0.0.2', free_port(), 6
    d = tempfile.mkdtemp(prefix='pg_ws_haproxy.')
    cfg = os.path.join(d, 'haproxy.cfg')
    with open(cfg, 'w') as f:
        f.write(HAPROXY_CFG % dict(timeout=timeout, host=host, port=port, wsport=cl.wsport))
    proc = subprocess.Popen([haproxy, '-db', '-f', cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        async def listening():
            try:
                _, w = await asyncio.open_connection(host, port)
                w.close()
                return True
            except OSError:
                check(proc.poll() is None, 'haproxy exited with %s' % proc.returncode)
                return False
        await poll('haproxy to listen', listening, timeout=20)
        ws = await ctx.sub()
        sse = await open_sse(ctx, port=port, host=host)
        await make_events(ctx, 4)
        check_same(await sse.expect(4, 30, 'through haproxy'), await ws.expect(4, 30, '/ws/'),
                   'through haproxy')
        # quiet for twice the proxy's timeouts: heartbeats keep it open
        beats = sse.comments.count('heartbeat')
        await sse.wait_until(lambda s: s.comments.count('heartbeat') >= beats + 2 * timeout,
                             90, 'heartbeats through haproxy')
        await make_events(ctx, 1)
        check_same(await sse.expect(5, 30, 'after a quiet while'), await ws.expect(5, 30, '/ws/'),
                   'through haproxy after a quiet while')
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return 'events and %d heartbeats through haproxy' % sse.comments.count('heartbeat')


def readme_nginx_server():
    """The README's nginx server block: the ```nginx block with /ws/."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                           'README.md')) as f:
        blocks = re.findall(r'```nginx\n(.*?)```', f.read(), re.S)
    found = [b for b in blocks if 'location /ws/' in b]
    check(len(found) == 1, 'the README has %d nginx blocks with location /ws/' % len(found))
    return found[0]


def replaced(text, old, new, count, what):
    """text with old replaced by new, which must occur count times."""
    check(text.count(old) == count, "the README's nginx block has %d of %r (%s), not %d"
          % (text.count(old), old, what, count))
    return text.replace(old, new)


def self_signed(host):
    """(certificate PEM, key PEM) for the IP address host."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


NGINX_CONF = """daemon off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events {}
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
%(servers)s
}
"""


async def test_nginx(ctx):
    """Through nginx over TLS, the README's server block as it is written
    but for its port, certificate and pg_ws's port: /ws/, a resume and
    /events are what pg_ws's own port sends, byte for byte; and /events
    with proxy_buffering off taken out too (X-Accel-Buffering: no)."""
    cl = await KINDS.get(ctx, 'main')
    nginx = shutil.which('nginx') or '/usr/sbin/nginx'
    check(os.access(nginx, os.X_OK), 'nginx is not installed (scripts/install_deps.sh)')
    host, port, port_buffering = '127.0.0.2', free_port(), free_port()
    d = tempfile.mkdtemp(prefix='pg_ws_nginx.')
    os.chmod(d, 0o755)
    cert, key = self_signed(host)
    for name, data in (('cert.pem', cert), ('key.pem', key)):
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
    block = readme_nginx_server()
    block = replaced(block, 'http://127.0.0.1:8765', 'http://127.0.0.1:%d' % cl.wsport, 2,
                     "pg_ws's port")
    block = re.sub(r'ssl_certificate( +)\S+;', r'ssl_certificate\g<1>%s/cert.pem;' % d, block)
    block = re.sub(r'ssl_certificate_key( +)\S+;', r'ssl_certificate_key\g<1>%s/key.pem;' % d,
                   block)
    servers = [replaced(block, 'listen 443 ssl;', 'listen %s:%d ssl;' % (host, p), 1,
                        'its port') for p in (port, port_buffering)]
    # the second server: nginx buffers /events unless pg_ws's header says not to
    servers[1] = re.sub(r'\n *proxy_buffering off;[^\n]*', '', servers[1])
    check('proxy_buffering' not in servers[1], 'proxy_buffering is still in the second server')
    with open(os.path.join(d, 'nginx.conf'), 'w') as f:
        f.write(NGINX_CONF % dict(d=d, servers='\n'.join(servers)))
    subprocess.run(['chown', '-R', 'postgres:', d], check=True)
    proc = subprocess.Popen(['runuser', '-u', 'postgres', '--', nginx, '-e', d + '/error.log',
                             '-p', d, '-c', d + '/nginx.conf'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    tls = ssl.create_default_context(cadata=cert.decode())
    try:
        async def listening():
            try:
                for p in (port, port_buffering):
                    _, w = await asyncio.open_connection(host, p)
                    w.close()
                return True
            except OSError:
                if proc.poll() is not None:
                    with open(d + '/error.log', errors='replace') as f:
                        raise Fail('nginx exited with %s' % proc.returncode,
                                   *['  ' + line.rstrip() for line in f.readlines()[-5:]])
                return False
        await poll('nginx to listen', listening, timeout=20)
        direct = await ctx.sub()
        through = 'wss://%s:%d' % (host, port)
        proxied = await ctx.sub(url=through, ssl=tls)
        streams = [await open_sse(ctx, port=p, host=host, ssl=tls)
                   for p in (port, port_buffering)]
        await make_events(ctx, 4)
        msgs = await direct.expect(4, 30, "pg_ws's own port")
        check((await proxied.expect(4, 30, '/ws/ through nginx')) == msgs,
              '/ws/ through nginx: not the messages of pg_ws\'s own port',
              *['  %s' % short(m, 120) for m in proxied.msgs])
        for s, what in zip(streams, ('/events through nginx',
                                     '/events through nginx, proxy_buffering on')):
            check_same(await s.expect(4, 30, what), msgs, what)
        resumed = await ctx.sub(resume_path(msgs[1]), url=through, ssl=tls)
        check((await resumed.expect(2, 30, 'a resume through nginx')) == msgs[2:],
              'a resume through nginx: not the two messages after its position',
              *['  %s' % short(m, 120) for m in resumed.msgs])
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return '/ws/, a resume and /events through nginx over TLS, as pg_ws sent them'


async def test_tokens(ctx):
    """Tokens by ?token=, Authorization and cookie; refusals as /ws/'s."""
    await KINDS.get(ctx, 'jwt')
    t = token(sub='sse-user')
    ways = [('/events?token=' + t, []),
            ('/events', ['Authorization: Bearer ' + t]),
            ('/events', ['Cookie: other=1; %s=%s' % (COOKIE, t)])]
    streams = [await open_sse(ctx, p, h) for p, h in ways]
    await make_events(ctx, 2)
    for (p, h), s in zip(ways, streams):
        await s.expect(2, 30, 'token by %s' % (h[0].split(':')[0] if h else '?token='))
    check(len({tuple(s.data()) for s in streams}) == 1, 'the three streams differ')
    status, hdrs, body = await refused(ctx)
    check(status == 401 and hdrs.get('www-authenticate', '').startswith('Bearer'),
          'no token: %d %s %s' % (status, hdrs, body))
    status, hdrs, body = await refused(ctx, '/events?token=' + token(ttl=-60))
    check(status == 401 and 'expired' in body, 'an expired token: %d %s' % (status, body))
    status, hdrs, body = await refused(ctx, '/events', ['Authorization: Bearer ' + t + 'x'])
    check(status == 401, 'a bad signature: %d %s' % (status, body))
    status, _, body = await refused(ctx, '/events?token=' + t, ['Origin: https://evil.example'])
    check(status == 403, 'another origin with a token: %d %s' % (status, body))
    s = await open_sse(ctx, '/events?token=' + t, ['Origin: ' + APP_ORIGIN])
    check(s.headers.get('access-control-allow-origin') == APP_ORIGIN and
          s.headers.get('access-control-allow-credentials') == 'true',
          'an allowed origin may read the stream: %s' % s.headers)
    return '?token=, header and cookie; 401, 401, 401, 403 refused'


async def test_token_expiry(ctx):
    """A stream whose token expires is closed, saying why, and counted."""
    cl = await KINDS.get(ctx, 'jwt')
    conn = await ctx.aconn()
    before = (await stats(conn))['drops']['token_expired']
    s = await open_sse(ctx, '/events?token=' + token(ttl=6))
    await s.wait_until(lambda s: s.closed.is_set(), 30, 'the stream closed at expiry',
                       allow_close=True)
    check('close 4001 token expired' in s.comments, 'comments: %s' % s.comments)
    after = (await stats(conn))['drops']['token_expired']
    check(after > before, 'drops.token_expired %d -> %d' % (before, after))
    return 'closed: %s' % s.comments[-1]


async def test_origins(ctx):
    """Origins and Host as /ws/: 403 for a page of another site."""
    await KINDS.get(ctx, 'main')
    status, _, body = await refused(ctx, '/events', ['Origin: http://evil.example'])
    check(status == 403 and 'origin' in body, 'another origin: %d %s' % (status, body))
    r = await SseStream.open(ctx.cl.wsport, '/events', ['Origin: ' + PAGE_ORIGIN])
    check(isinstance(r, SseStream), 'the allowed origin: %s' % (r,))
    await r.close()
    check(r.headers.get('access-control-allow-origin') == PAGE_ORIGIN, 'CORS: %s' % r.headers)
    reader, writer = await asyncio.open_connection('127.0.0.1', ctx.cl.wsport)
    writer.write(b'GET /events HTTP/1.1\r\nHost: attacker.example\r\n\r\n')
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    check(data.startswith(b'HTTP/1.1 403'), 'a foreign Host: %r' % data[:200])
    return '403 for another origin and a foreign Host'


async def test_limits(ctx):
    """Over max_connections_per_address: 503 with Retry-After."""
    cl = await KINDS.get(ctx, 'limited')
    conn = await ctx.aconn()
    await open_sse(ctx)
    await open_sse(ctx)

    async def held():
        return (await asql(conn, "SELECT count(*) FROM pg_ws_connections()"
                                 " WHERE state = 'subscribed'"))[0][0] >= 2
    await poll('two streams in pg_ws_connections', held, timeout=30)
    status, hdrs, body = await refused(ctx)
    check(status == 503 and hdrs.get('retry-after') and 'max_connections_per_address' in body,
          'the third stream: %d %s %s' % (status, hdrs, body))
    return '503 Retry-After: %s' % hdrs.get('retry-after')


EVENT_NAMES = ['client_create', 'client_update', 'client_delete', 'client_visit_create',
               'employee_create', 'order_paid', 'resync_required']

ES_PAGE = """<!doctype html><meta charset="utf-8"><title>pg_ws sse</title><script>
const url = new URLSearchParams(location.search).get('sse');
const report = (what, body) => fetch('/' + what, {method: 'POST', body});
let n = 0;
const es = new EventSource(url);
es.onopen = () => report('open', '');
es.onerror = () => report('error', String(es.readyState));
for (const name of %s)
  es.addEventListener(name, (e) => report('message',
    JSON.stringify({i: n++, type: e.type, id: e.lastEventId, raw: e.data})));
</script>""" % json.dumps(EVENT_NAMES)


async def browser_posts(server, timeout, until):
    """Collect the page's posts until until(posts) holds."""
    deadline = time.monotonic() + timeout
    posts = []
    while not until(posts):
        left = deadline - time.monotonic()
        check(left > 0, 'the browser did not get there within %.0f s; it posted %s'
              % (timeout, [(k, short(b, 80)) for k, b in posts[-6:]]))
        try:
            posts.append(await asyncio.to_thread(server.posts.get, True, min(left, 0.5)))
        except Exception:
            pass
    return posts


def messages_of(posts):
    got = {}
    for kind, body in posts:
        if kind == 'message':
            m = json.loads(body)
            got[m['i']] = m
    return [got[i] for i in sorted(got)]


async def test_chromium(ctx):
    """Chromium's EventSource gets /ws/'s messages, and after a worker
    restart reconnects with Last-Event-ID and resumes exactly."""
    cl = await KINDS.get(ctx, 'main')
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    server = PageServer()
    browser = Browser('http://127.0.0.1:%d/?sse=%s' % (
        server.port, urllib.parse.quote('http://127.0.0.1:%d/events' % cl.wsport, safe='')))
    try:
        await browser_posts(server, 60, lambda p: ('open', '') in p)
        ws = await ctx.sub()
        await make_events(ctx, 4)
        msgs = await ws.expect(4, 30, '/ws/')
        posts = await browser_posts(server, 30, lambda p: len(messages_of(p)) >= 4)
        before = messages_of(posts)
        check([(m['raw'], m['type'], m['id']) for m in before] ==
              [(m, json.loads(m)['event'], sse_id(m)) for m in msgs],
              'Chromium got other messages than /ws/:',
              *['  %s' % short(m, 120) for m in before])
        await restart_worker(cl)
        await make_events(ctx, 4)
        ws2 = await ctx.sub(resume_path(msgs[-1]))
        after = await ws2.expect(4, 30, '/ws/ resumed')
        more = await browser_posts(server, 90, lambda p: len(messages_of(posts + p)) >= 8)
        await asyncio.sleep(1.0)
        while not server.posts.empty():
            more.append(server.posts.get())
        got = messages_of(posts + more)
        check([m['raw'] for m in got] == msgs + after,
              'Chromium across the restart: %d messages, expected %d' % (len(got), len(msgs + after)),
              *['  %s' % short(m['raw'], 120) for m in got[3:]])
        errors = [b for k, b in more if k == 'error']
        opens = [b for k, b in more if k == 'open']
        check(opens, 'the EventSource did not open again')
    finally:
        browser.close()
        server.close()
    return '%d messages, resumed after the restart (%d error events, readyState %s)' % (
        len(got), len(errors), errors[:3])


TESTS = [
    ('data: is /ws/\'s message byte for byte, event: its name, id: its position',
     test_events_as_ws, 90),
    ('?events= and ?filter= as on /ws/', test_events_and_filter, 90),
    ('?since= (both forms) resumes; another epoch gets resync_required as an event',
     test_since_and_resync, 90),
    ('Last-Event-ID resumes across a worker restart, no gap, no double',
     test_last_event_id_restart, 120),
    ('a quiet stream gets heartbeat comments', test_heartbeat, 60),
    ('a stream that stops reading is culled and counted', test_slow_reader, 150),
    ('curl -N receives the stream', test_curl, 60),
    ('through HAProxy, kept open by heartbeats', test_haproxy, 120),
    ('through nginx over TLS, the README\'s server block: /ws/, a resume and /events',
     test_nginx, 90),
    ('tokens by ?token=, header and cookie; 401 and 403', test_tokens, 90),
    ('a stream whose token expires is closed', test_token_expiry, 60),
    ('origins and Host: 403', test_origins, 60),
    ('past max_connections_per_address: 503 with Retry-After', test_limits, 60),
    ('Chromium\'s EventSource resumes exactly after a worker restart', test_chromium, 200),
]


# PageServer serves test_browser.PAGE: this suite's page is the EventSource one
test_browser.PAGE = ES_PAGE


def main():
    run_tap(TESTS, SseCtx, watchdog_seconds=600)


if __name__ == '__main__':
    main()
