#!/usr/bin/python3
"""End-to-end tests of observing pg_ws: pg_ws_stats, pg_ws_connections,
pg_ws_disconnect(), GET /health, GET /metrics and the log.

A newcomer's questions, each a test: who is connected (peer, token
subject, filter, what each was sent); can I end one connection; do the
counters count exactly what was sent; does /health say 503 when pg_ws
cannot serve; does a Prometheus scrape of /metrics parse (with Debian's
python3-prometheus-client, the parser Prometheus' own Python client
uses) and agree with pg_ws_stats; who may read /metrics; are refusals and
drops logged with the peer and the reason, rate-limited per reason and
counted exactly; are openings and closings at DEBUG1; does a token ever
reach the log.

Clusters (harness.Cluster, on free ports, listening on 127.0.0.1):

    plain    defaults (pg_ws.auth none, pg_ws.monitoring local)
    auth     pg_ws.auth jwt with an inline secret
    nodb     pg_ws.database names a database that does not exist yet
    stuck    pg_ws.queue_size 64kB, a synchronous standby that never comes,
             pg_ws.queue_full_timeout 60s: a commit holds the queue's head
             and the next writers wait for room, for as long as the test
             wants
    access   also listening on a non-loopback address of this machine,
             pg_ws.allow_anonymous on, to see pg_ws.monitoring refuse it

No assertion depends on timing: every figure the worker publishes (once a
second) is waited for with a generous timeout, and the rate limit is
checked by exact accounting (lines written plus lines said to be
suppressed equals requests made).

Run as root:  /usr/bin/python3 test/e2e/test_observe.py
"""

import asyncio
import json
import os
import secrets
import socket
import sys
import threading
import time

import psycopg2
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ws_connect  # noqa: E402
from harness import (ClusterKinds, Cluster, Ctx, Fail, Subscriber, asql, check,  # noqa: E402
                     poll, run_tap, short)
import jwt_tools as jt  # noqa: E402
import rawws  # noqa: E402
from rawws import OP_BINARY, OP_TEXT, RawWs  # noqa: E402

WATCHDOG_SECONDS = 400
SECRET = 'e2e-observe-secret-' + secrets.token_hex(16)
LEEWAY = 30                      # pg_ws.jwt_leeway's default


def public_address():
    """An IPv4 address of this machine that is not loopback, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(('192.0.2.1', 9))         # TEST-NET: no packet is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith('127.') or addr == '0.0.0.0' else addr


PUBLIC = public_address()

CLUSTERS = {
    'plain': dict(),
    'auth': dict(conf=["pg_ws.auth = 'jwt'", "pg_ws.jwt_secret = '%s'" % SECRET]),
    'nodb': dict(database='pg_ws_later'),
    # without the WAL, what is parked out of the queue stays in the worker's
    # memory, up to 4 queues' worth: past it writers wait for room
    'stuck': dict(conf=["pg_ws.queue_size = '64kB'",
                        "pg_ws.wal = off",
                        "pg_ws.queue_full_timeout = '60s'",
                        "synchronous_standby_names = 'nonexistent'",
                        "synchronous_commit = local"]),
    'access': dict(conf=["pg_ws.allow_anonymous = on"]),
}

_kinds = ClusterKinds(lambda kind: Cluster(name=kind, **CLUSTERS[kind]))


async def cluster(ctx, kind):
    return await _kinds.get(ctx, kind)


# ---------------------------------------------------------------- helpers

def emp(i, first='e', last='t'):
    return ("INSERT INTO employee (id, first_name, last_name) VALUES (%s, %s, %s)",
            (i, first, last))


def http_get(port, path, host='127.0.0.1'):
    """(status, headers, body as text) of GET path."""
    raw = ('GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n' % (path, host, port)).encode()
    s = rawws.connect(port, host=host)
    try:
        s.sendall(raw)
        data, closed = rawws.read_until_closed(s, 10)
    finally:
        s.close()
    status, _, headers, body, line = rawws.parse_response(data)
    check(status is not None, 'GET %s: no answer (%r)' % (path, short(data)))
    check(closed, 'GET %s: the connection was not closed after the answer' % path)
    check(int(headers.get('content-length', -1)) == len(body),
          'GET %s: Content-Length %s but %d bytes' % (path, headers.get('content-length'),
                                                     len(body)))
    return status, headers, body.decode()


async def aget(port, path, host='127.0.0.1'):
    return await asyncio.to_thread(http_get, port, path, host)


STATS_COLUMNS = None


async def stats(conn):
    """pg_ws_stats as a dict."""
    global STATS_COLUMNS
    with conn.cursor() as cur:
        await asyncio.to_thread(cur.execute, 'SELECT * FROM pg_ws_stats')
        row = cur.fetchone()
        STATS_COLUMNS = [d[0] for d in cur.description]
    return dict(zip(STATS_COLUMNS, row))


async def connections(conn):
    """pg_ws_connections as dicts, by id."""
    with conn.cursor() as cur:
        await asyncio.to_thread(cur.execute, 'SELECT * FROM pg_ws_connections ORDER BY id')
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


async def wait_stats(conn, what, pred, timeout=30):
    """Poll pg_ws_stats until pred(stats) holds; the stats then."""
    deadline = time.monotonic() + timeout
    while True:
        s = await stats(conn)
        if pred(s):
            return s
        check(time.monotonic() < deadline, '%s: not after %d s; pg_ws_stats: %s'
              % (what, timeout, short(s, 900)))
        await asyncio.sleep(0.1)


def frame_bytes(text):
    """Bytes of the server's (unmasked) text frame carrying text."""
    n = len(text.encode())
    return n + (2 if n < 126 else 4 if n <= 0xFFFF else 10)


COUNTERS = ('connections_total', 'events_queued', 'events_sent', 'messages_sent', 'bytes_sent')


def delta(after, before, key):
    return after[key] - before[key]


async def quiet(conn):
    """Wait until nothing is in flight: every connection closed, every event
    sent and freed; the stats then."""
    return await wait_stats(conn, 'the worker to be idle', lambda s:
                            s['connections'] == 0 and s['queue_bytes_used'] == 0 and
                            s['events_sent'] == s['events_queued'])


def log_lines(cl, since, *texts):
    return [x for x in cl.log_since(since) if all(t in x for t in texts)]


async def token_sub(ctx, token, path='/ws/'):
    """A subscriber presenting token in the Authorization header."""
    ws = await ws_connect(ctx.cl.url + path, ping_interval=None, max_size=None,
                                  max_queue=None, close_timeout=1, open_timeout=10,
                                  extra_headers=[('Authorization', 'Bearer ' + token)])
    s = Subscriber(ws)
    ctx.subs.append(s)
    return s


# ------------------------------------------------------------------ tests

async def test_connections_rows(ctx):
    """pg_ws_connections: one row per subscriber with its peer and port, its
    token's subject and expiry (never the token), its ?events= filter, and
    exactly the messages and bytes it was sent."""
    cl = await cluster(ctx, 'auth')
    conn = await ctx.aconn()
    exp = int(time.time()) + 600
    alice_token = jt.hs256(jt.claims(600, sub='alice', exp=exp), SECRET)
    bob_token = jt.hs256(jt.claims(600, sub='bob', exp=exp), SECRET)
    alice = await token_sub(ctx, alice_token, '/ws/?events=employee_*,client_create')
    bob = await token_sub(ctx, bob_token)
    for i in range(1, 6):
        await asql(conn, emp(i, 'x' * (i * 40)))
    await asql(conn, "INSERT INTO client (id, gender) VALUES (1, 'female')",
               "UPDATE client SET age = 30 WHERE id = 1")
    await alice.wait_until(lambda m: len(m) >= 6, 15, 'alice: 5 employees, 1 client_create')
    await bob.wait_until(lambda m: len(m) >= 7, 15, 'bob: every event')

    async def rows_settled():
        rows = await connections(conn)
        mine = {r['subject']: r for r in rows if r['subject'] in ('alice', 'bob')}
        if len(mine) == 2 and all(r['bytes_pending'] == 0 for r in mine.values()):
            return rows, mine
        return None
    rows, mine = await poll('alice and bob in pg_ws_connections', rows_settled)
    ports = {'alice': alice.ws.local_address[1], 'bob': bob.ws.local_address[1]}
    for who, sub, filt in (('alice', alice, ['employee_*', 'client_create']), ('bob', bob, None)):
        r = mine[who]
        want = dict(state='subscribed', peer='127.0.0.1', peer_port=ports[who], tls=False,
                    filter=filt, messages_sent=len(sub.msgs),
                    bytes_sent=sum(frame_bytes(m) for m in sub.msgs), bytes_pending=0)
        got = {k: r[k] for k in want}
        check(got == want, '%s: %s, expected %s' % (who, got, want))
        check(int(r['token_expires'].timestamp()) == exp + LEEWAY,
              '%s: token_expires %s, expected exp %d + pg_ws.jwt_leeway %d'
              % (who, r['token_expires'], exp, LEEWAY))
        check(abs(r['connected_since'].timestamp() - time.time()) < 300,
              '%s: connected_since %s' % (who, r['connected_since']))
    check(len(alice.msgs) == 6 and len(bob.msgs) == 7,
          'alice got %d messages, bob %d' % (len(alice.msgs), len(bob.msgs)))
    text = repr(rows)
    for token in (alice_token, bob_token):
        check(token not in text and token.split('.')[-1] not in text,
              'pg_ws_connections shows a token: %s' % short(text))
    ids = [r['id'] for r in rows]
    check(len(set(ids)) == len(ids) and all(i > 0 for i in ids), 'ids: %s' % ids)
    return 'alice (filtered) %d messages, bob %d; ids %s' % (len(alice.msgs), len(bob.msgs), ids)


async def test_ids_never_reused(ctx):
    """Connection ids only grow: a connection made after another closed
    gets a larger id."""
    await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    first = await ctx.sub()
    rows = await poll('the first subscriber', lambda: connections(conn))
    id1 = max(r['id'] for r in rows)
    await first.close()
    await poll('the first subscriber gone', lambda: _gone(conn, id1))
    second = await ctx.sub()
    rows = await poll('the second subscriber', lambda: _present(conn))
    id2 = max(r['id'] for r in rows)
    check(id2 > id1, 'the second connection has id %d, the first had %d' % (id2, id1))
    await second.close()
    return 'ids %d then %d' % (id1, id2)


async def _gone(conn, cid):
    return all(r['id'] != cid for r in await connections(conn))


async def _present(conn):
    rows = await connections(conn)
    return [r for r in rows if r['state'] == 'subscribed']


async def test_disconnect(ctx):
    """pg_ws_disconnect(id) closes exactly that connection, with 1008 and a
    reason, counts it, logs it; false for an id that is not (or no longer)
    a connection."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    before = await quiet(conn)
    subs = [await ctx.sub() for _ in range(3)]
    rows = await poll('three subscribers', lambda: _n_subscribed(conn, 3))
    by_port = {r['peer_port']: r['id'] for r in rows}
    victim = by_port[subs[1].ws.local_address[1]]
    mark = cl.log_size()
    r = await asql(conn, ('SELECT pg_ws_disconnect(%s)', (victim,)))
    check(r == [(True,)], 'pg_ws_disconnect(%d) returned %s' % (victim, r))
    await asyncio.wait_for(subs[1].closed.wait(), 15)
    info = subs[1].close_info
    check(getattr(info, 'code', None) == 1008 and
          getattr(info, 'reason', None) == 'disconnected by an administrator',
          'the disconnected subscriber got %r' % (info,))
    await asql(conn, emp(100))
    for k in (0, 2):
        await subs[k].wait_until(lambda m: len(m) >= 1, 15, 'subscriber %d after the disconnect' % k)
    await poll('the disconnected connection gone', lambda: _gone(conn, victim))
    again = await asql(conn, ('SELECT pg_ws_disconnect(%s)', (victim,)))
    unknown = await asql(conn, ('SELECT pg_ws_disconnect(%s)', (max(by_port.values()) + 1000,)))
    check(again == [(False,)] and unknown == [(False,)],
          'a closed id returned %s, an unknown one %s' % (again, unknown))
    after = await wait_stats(conn, 'the disconnect counted',
                             lambda s: s['drops']['disconnected'] >= before['drops']['disconnected'] + 1)
    check(after['drops']['disconnected'] == before['drops']['disconnected'] + 1,
          'drops.disconnected went from %d to %d' % (before['drops']['disconnected'],
                                                      after['drops']['disconnected']))
    logged = log_lines(cl, mark, 'pg_ws_disconnect(%d) was called' % victim, '127.0.0.1')
    check(logged, 'the disconnect was not logged with the peer')

    # a connection still in its handshake (it sent nothing) is closed at once
    silent = await asyncio.to_thread(rawws.connect, cl.wsport)
    try:
        port = silent.getsockname()[1]

        async def handshaking():
            rows = await connections(conn)
            return [r for r in rows if r['peer_port'] == port and r['state'] == 'handshake']
        row = (await poll('the silent connection in its handshake', handshaking))[0]
        r = await asql(conn, ('SELECT pg_ws_disconnect(%s)', (row['id'],)))
        data, closed = await asyncio.to_thread(rawws.read_until_closed, silent, 10)
        check(r == [(True,)] and closed and data == b'',
              'the silent connection: pg_ws_disconnect returned %s, closed %s, sent %r'
              % (r, closed, data))
    finally:
        silent.close()
    return logged[0].split('LOG:  ')[-1]


async def _n_subscribed(conn, n):
    rows = await _present(conn)
    return rows if len(rows) == n else None


async def test_counters_exact(ctx):
    """N events to K subscribers: events_queued and events_sent grow by N,
    messages_sent by N*K, bytes_sent by the bytes of the frames the
    subscribers received, connections_total by K."""
    await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    before = await quiet(conn)
    k_subs, n_events = 3, 20
    subs = [await ctx.sub() for _ in range(k_subs)]
    await poll('the subscribers', lambda: _n_subscribed(conn, k_subs))
    for t in range(4):                   # 4 transactions of 5 events
        await asql(conn, ("INSERT INTO employee (id, first_name, last_name)"
                          " SELECT g, 'n' || g, 'counted' FROM generate_series(%s, %s) g",
                          (1000 + 5 * t, 1004 + 5 * t)))
    for s in subs:
        await s.wait_until(lambda m: len(m) >= n_events, 15, 'a subscriber')
    await asyncio.sleep(0.3)
    received = sum(len(s.msgs) for s in subs)
    check(received == n_events * k_subs, 'the subscribers got %d messages' % received)
    frames = sum(frame_bytes(m) for s in subs for m in s.msgs)
    after = await wait_stats(conn, 'the figures published', lambda s:
                             delta(s, before, 'messages_sent') >= n_events * k_subs and
                             delta(s, before, 'events_sent') >= n_events)
    got = {key: delta(after, before, key) for key in COUNTERS}
    want = dict(connections_total=k_subs, events_queued=n_events, events_sent=n_events,
                messages_sent=n_events * k_subs, bytes_sent=frames)
    check(got == want, 'the counters moved by %s, expected %s' % (got, want))
    check(after['subscribers'] == k_subs and after['connections'] == k_subs,
          'subscribers %s, connections %s' % (after['subscribers'], after['connections']))
    return ', '.join('%s +%d' % kv for kv in got.items())


async def test_counted_resync_and_wal(ctx):
    """Every message a subscriber is written counts, however it was made: a
    resync_required notice, and events read back from the WAL by a
    subscriber resuming from before the worker's memory."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    await asql(conn, "ALTER SYSTEM SET pg_ws.history_size = 0", 'SELECT pg_reload_conf()')
    try:
        await poll('the reload', lambda: _setting(conn, 'pg_ws.history_size', '0'))
        live = await ctx.sub()
        await poll('a subscriber', lambda: _n_subscribed(conn, 1))
        for i in range(5):
            await asql(conn, emp(7000 + i, 'resumed'))
        await live.wait_until(lambda m: len(m) >= 5, 15, 'the live subscriber')
        first = json.loads(live.msgs[0])
        await live.close()
        # once its last subscriber is gone the worker, keeping no history,
        # has freed them: those five are only in the WAL now
        before = await quiet(conn)
        resumer = await ctx.sub('/ws/?since=%d&epoch=%s' % (first['seq'] - 1, first['epoch']))
        stranger = await ctx.sub('/ws/?since=1&epoch=not-this-cluster')
        await resumer.wait_until(lambda m: len(m) >= 5, 15, 'the resuming subscriber')
        await stranger.wait_until(lambda m: len(m) >= 1, 15, 'the resync notice')
        await asyncio.sleep(0.3)
        check([json.loads(m)['data']['id'] for m in resumer.msgs] == list(range(7000, 7005)),
              'the resuming subscriber got %s' % [short(m, 60) for m in resumer.msgs])
        check(json.loads(stranger.msgs[0])['event'] == 'resync_required' and
              len(stranger.msgs) == 1, 'the stranger got %s' % stranger.msgs)
        frames = sum(frame_bytes(m) for m in resumer.msgs + stranger.msgs)
        after = await wait_stats(conn, 'the figures published',
                                 lambda s: delta(s, before, 'messages_sent') >= 6)
        got = (delta(after, before, 'messages_sent'), delta(after, before, 'bytes_sent'))
        check(got == (6, frames), 'messages and bytes moved by %s, expected %s'
              % (got, (6, frames)))
        rows = {r['peer_port']: r for r in await connections(conn)}
        mine = rows[resumer.ws.local_address[1]]
        check(mine['messages_sent'] == 5, 'the resuming row: %s' % mine)
    finally:
        await asql(conn, 'ALTER SYSTEM RESET pg_ws.history_size', 'SELECT pg_reload_conf()')
    return '5 events from the WAL and 1 resync notice: +6 messages, +%d bytes' % frames


async def test_counters_survive_worker_restart(ctx):
    """The counters are totals while the server runs: a new worker goes on
    from what the last one published, and worker_started moves."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    sub = await ctx.sub()
    await poll('a subscriber', lambda: _n_subscribed(conn, 1))
    await asql(conn, emp(6000, 'before', 'restart'))
    await sub.wait_until(lambda m: len(m) >= 1, 15, 'the event')
    await sub.close()
    before = await quiet(conn)
    check(before['messages_sent'] > 0, 'nothing was sent: %s' % before)
    mark = cl.log_size()
    await asql(conn, ('SELECT pg_terminate_backend(%s)', (before['worker_pid'],)))
    after = await wait_stats(conn, 'a new worker', lambda s: s['worker_pid'] not in
                             (None, before['worker_pid']), timeout=30)
    for key in COUNTERS + ('refusals', 'drops'):
        check(after[key] == before[key], '%s was %s before the restart, %s after'
              % (key, short(before[key]), short(after[key])))
    check(after['worker_started'] > before['worker_started'],
          'worker_started %s, before %s' % (after['worker_started'], before['worker_started']))
    await cl.wait_listening(cl.wsport, 30, since=mark)
    return 'messages_sent %d across the restart' % after['messages_sent']


async def test_drops_by_reason(ctx):
    """What a subscriber does wrong is counted under its own reason,
    exactly: a binary message (1003), an unmasked frame (1002), a text
    message that is not an auth message (1008)."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    before = await quiet(conn)
    port = cl.wsport

    def misbehave():
        for act in (lambda w: w.send_frame(OP_BINARY, b'\x01\x02'),
                    lambda w: w.send_frame(OP_TEXT, b'hello', mask=False),
                    lambda w: w.send_text('{"type": "hello"}'),
                    lambda w: w.send_frame(OP_BINARY, b'\x03')):
            w = RawWs(port)
            try:
                act(w)
                w.read_close(10)
            finally:
                w.close()
    await asyncio.to_thread(misbehave)
    want = {'unsupported_data': 2, 'protocol_error': 1, 'policy': 1}
    after = await wait_stats(conn, 'the drops counted', lambda s: all(
        s['drops'][k] - before['drops'][k] >= v for k, v in want.items()))
    got = {k: after['drops'][k] - before['drops'][k] for k in after['drops']}
    check(got == dict({k: 0 for k in got}, **want), 'drops moved by %s' % got)
    return 'drops: %s' % want


async def test_refusals_rate_limited(ctx):
    """Refusals are logged at LOG with the peer and the reason, at most 20
    lines per reason per 10 seconds, then a line saying how many more were
    suppressed: 41 refused requests of one reason make lines plus
    suppressed = 41 exactly, and at most 2 windows' worth of lines; another
    reason is still logged meanwhile; pg_ws_stats counts all 41."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    port = cl.wsport
    before = await quiet(conn)
    mark = cl.log_size()
    n = 41

    def flood():
        for _ in range(n):
            rawws.http_exchange(port, b'BREW /ws/ HTTP/1.1\r\nHost: x\r\n\r\n')
        rawws.http_exchange(port, b'GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n')
    await asyncio.to_thread(flood)
    what = 'refused requests (method_not_allowed)'

    async def summaries():
        found = log_lines(cl, mark, 'pg_ws suppressed', what)
        lines = log_lines(cl, mark, 'pg_ws refused a request from 127.0.0.1: 405')
        suppressed = sum(int(x.split('pg_ws suppressed ')[1].split()[0]) for x in found)
        return (lines, found) if found and len(lines) + suppressed >= n else None
    lines, found = await poll('the "suppressed" line', summaries, timeout=40)
    suppressed = sum(int(x.split('pg_ws suppressed ')[1].split()[0]) for x in found)
    check(len(lines) + suppressed == n, '%d lines and %d suppressed for %d refusals'
          % (len(lines), suppressed, n), *found)
    check(20 <= len(lines) <= 40, '%d lines for %d refusals of one reason' % (len(lines), n))
    check(all('LOG:' in x and '405 Method Not Allowed' in x for x in lines),
          'a refusal line without its level or reason: %s' % short(lines[0]))
    other = log_lines(cl, mark, 'pg_ws refused a request from 127.0.0.1: 404')
    check(other, 'the 404 after the flood was not logged')
    after = await wait_stats(conn, 'the refusals counted', lambda s:
                             s['refusals']['method_not_allowed'] -
                             before['refusals']['method_not_allowed'] >= n)
    got = {k: after['refusals'][k] - before['refusals'][k] for k in after['refusals']}
    check(got == dict({k: 0 for k in got}, method_not_allowed=n, not_found=1),
          'refusals moved by %s' % got)
    return '%d lines, then: %s' % (len(lines), found[0].split('LOG:  ')[-1])


async def test_health_ok(ctx):
    """GET /health: 200 and a small JSON object while the worker serves."""
    cl = await cluster(ctx, 'plain')
    status, headers, body = await aget(cl.wsport, '/health')
    check(status == 200, 'GET /health: %d %s' % (status, body))
    check(headers.get('content-type') == 'application/json', 'Content-Type %s'
          % headers.get('content-type'))
    doc = json.loads(body)
    check(doc.get('status') == 'ok' and doc.get('role') == 'primary' and
          doc.get('writers_waiting') == 0 and 'reason' not in doc, 'body: %s' % body)
    return body.strip()


async def test_health_no_database(ctx):
    """/health is 503, with the reason, while pg_ws.database does not exist
    (nothing can ever be broadcast), and 200 once it does, without a
    reload: the worker looks again every second, and a worker that serves
    the new database takes over."""
    cl = Cluster(name='nodb', **CLUSTERS['nodb'])
    ctx.use(cl)
    await asyncio.to_thread(cl.start)
    await cl.wait_listening(cl.wsport, 30)
    status, _, body = await aget(cl.wsport, '/health')
    doc = json.loads(body)
    check(status == 503 and doc.get('status') == 'unavailable' and
          doc.get('reason') == 'pg_ws.database "pg_ws_later" does not exist',
          'GET /health without the database: %d %s' % (status, body))
    conn = await asyncio.to_thread(cl.connect, dbname='postgres')
    ctx.conns.append(conn)
    await asql(conn, 'CREATE DATABASE pg_ws_later')

    async def healthy():
        try:
            s, _, b = await aget(cl.wsport, '/health')
        except OSError:
            return None         # between the two workers
        return (s, b) if s == 200 else None
    s, b = await poll('/health 200 after CREATE DATABASE', healthy)
    return '503 %s, then 200' % doc['reason']


async def test_health_writers_waiting(ctx):
    """A commit that holds the queue's head (waiting for a synchronous
    standby) keeps the queue from draining: oldest_unsent_age grows, and
    once the writers after it have filled the queue and what the worker
    parks in its memory (pg_ws.wal = off: no WAL to read back from), they
    wait for room, /health says 503 and /metrics shows them; once the
    commit ends, /health is 200 again and the age is NULL."""
    cl = await cluster(ctx, 'stuck')
    mon = await ctx.aconn()
    await wait_stats(mon, 'an empty queue', lambda s: s['oldest_unsent_age'] is None and
                     s['queue_bytes_used'] == 0)
    holder = await ctx.aconn(autocommit=False)
    holder_pid = holder.get_backend_pid()
    await asql(holder, "SET synchronous_commit = on", emp(1, 'holder'))
    done = {}

    def run(name, fn):
        try:
            done[name] = fn()
        except Exception as e:
            done[name] = e
    threading.Thread(target=run, args=('holder', holder.commit), daemon=True).start()
    s = await wait_stats(mon, 'the held entry aged a second', lambda s:
                         s['oldest_unsent_age'] is not None and
                         s['oldest_unsent_age'].total_seconds() >= 1)

    writer = await ctx.aconn(autocommit=False)

    def fill():
        for k in range(200):
            with writer.cursor() as cur:
                cur.execute("INSERT INTO employee (id, first_name, last_name)"
                            " VALUES (%s, %s, 'fill')", (100 + k, 'f' * 3000))
            writer.commit()
        return 200
    threading.Thread(target=run, args=('writer', fill), daemon=True).start()
    await wait_stats(mon, 'a writer waiting for room', lambda s: s['writers_waiting'] >= 1)
    status, _, body = await aget(cl.wsport, '/health')
    doc = json.loads(body)
    check(status == 503 and doc['status'] == 'unavailable' and
          'waiting for room in the queue' in doc.get('reason', ''),
          'GET /health with a writer waiting: %d %s' % (status, body))
    _, _, text = await aget(cl.wsport, '/metrics')
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    waiting = fams['pg_ws_queue_writers_waiting'].samples[0].value
    age = fams['pg_ws_queue_oldest_unsent_age_seconds'].samples[0].value
    check(waiting >= 1 and age >= 1, '/metrics: writers waiting %s, oldest age %s'
          % (waiting, age))

    await asql(mon, ('SELECT pg_cancel_backend(%s)', (holder_pid,)))

    async def recovered():
        st, _, b = await aget(cl.wsport, '/health')
        return st == 200 and 'writer' in done
    await poll('/health 200 once the holder committed', recovered, timeout=40)
    check(done.get('writer') == 200, 'the writer: %s' % (done.get('writer'),))
    await wait_stats(mon, 'the queue empty again', lambda s: s['oldest_unsent_age'] is None)
    return '503 "%s"; oldest unsent %.1f s in /metrics' % (doc['reason'], age)


async def test_metrics_scrape(ctx):
    """GET /metrics parses as the Prometheus text format with Debian's
    python3-prometheus-client: HELP and TYPE for every family, counters
    named _total, reasons as labels; and its figures are pg_ws_stats'."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    await quiet(conn)
    sub = await ctx.sub()
    await poll('a subscriber', lambda: _n_subscribed(conn, 1))
    await asql(conn, emp(5000, 'scraped'))
    await sub.wait_until(lambda m: len(m) >= 1, 15, 'the event')
    await wait_stats(conn, 'the event sent', lambda s: s['events_sent'] == s['events_queued'])
    status, headers, text = await aget(cl.wsport, '/metrics')
    check(status == 200, 'GET /metrics: %d %s' % (status, short(text)))
    check(headers.get('content-type') == 'text/plain; version=0.0.4; charset=utf-8',
          'Content-Type: %s' % headers.get('content-type'))
    s = await stats(conn)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    helps = [line.split()[2] for line in text.splitlines() if line.startswith('# HELP ')]
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith('# TYPE '))
    check(set(helps) == set(types), 'HELP and TYPE differ: %s / %s' % (helps, sorted(types)))
    check(all(n.startswith('pg_ws_') for n in types), 'names: %s' % sorted(types))
    for name, typ in types.items():
        check((typ == 'counter') == name.endswith('_total'),
              '%s is a %s' % (name, typ))

    def value(name, **labels):
        fam = fams[name[:-len('_total')] if name.endswith('_total') else name]
        hits = [x.value for x in fam.samples if x.name == name and x.labels == labels]
        check(len(hits) == 1, '%s%s: %d samples' % (name, labels, len(hits)))
        return hits[0]
    pairs = [('pg_ws_events_queued_total', s['events_queued']),
             ('pg_ws_events_sent_total', s['events_sent']),
             ('pg_ws_messages_sent_total', s['messages_sent']),
             ('pg_ws_sent_bytes_total', s['bytes_sent']),
             ('pg_ws_connections_accepted_total', s['connections_total']),
             ('pg_ws_subscribers', s['subscribers']),
             ('pg_ws_subscribers_indexed', s['subscribers_indexed']),
             ('pg_ws_resumes_refused_total', s['resumes_refused']),
             ('pg_ws_queue_capacity_bytes', s['queue_bytes_capacity']),
             ('pg_ws_queue_used_bytes', s['queue_bytes_used']),
             ('pg_ws_queue_writers_waiting', s['writers_waiting']),
             ('pg_ws_history_last_position', s['history_last_position']),
             ('pg_ws_worker_start_time_seconds', s['worker_started'].timestamp())]
    wrong = [(n, value(n), v) for n, v in pairs if abs(value(n) - float(v)) > 1e-3]
    for reason, count in s['refusals'].items():
        if value('pg_ws_refusals_total', reason=reason) != count:
            wrong.append(('refusals', reason, count))
    for reason, count in s['drops'].items():
        if value('pg_ws_drops_total', reason=reason) != count:
            wrong.append(('drops', reason, count))
    check(not wrong, '/metrics and pg_ws_stats disagree (metric, scraped, SQL): %s' % wrong)
    check(value('pg_ws_connections') >= 1, 'the scrape does not count itself')
    check(value('pg_ws_history_first_position') <= value('pg_ws_history_last_position'),
          'the history range is upside down')
    check(s['events_queued'] > 0 and s['messages_sent'] > 0, 'nothing to compare: %s' % s)
    return '%d families, %d samples agree with pg_ws_stats' % (
        len(fams), sum(len(f.samples) for f in fams.values()))


async def test_monitoring_access(ctx):
    """pg_ws.monitoring: local (the default) serves loopback peers and
    answers 403 to others; on serves everyone; off answers 404 like any
    unknown path."""
    if PUBLIC is None:
        raise Fail('this machine has no non-loopback IPv4 address to test from')
    cl = Cluster(name='access', conf=CLUSTERS['access']['conf'] +
                 ["pg_ws.listen_addresses = '127.0.0.1,%s'" % PUBLIC])
    ctx.use(cl)
    await asyncio.to_thread(cl.start)
    await cl.install()
    conn = await ctx.aconn()
    port = cl.wsport
    st, _, _ = await aget(port, '/metrics')
    check(st == 200, 'loopback /metrics with local: %d' % st)
    st, _, body = await aget(port, '/metrics', host=PUBLIC)
    check(st == 403 and 'pg_ws.monitoring' in body, '%s /metrics with local: %d %s'
          % (PUBLIC, st, body))
    st, _, _ = await aget(port, '/health', host=PUBLIC)
    check(st == 403, '%s /health with local: %d' % (PUBLIC, st))
    s = await wait_stats(conn, 'the 403s counted', lambda s: s['refusals']['forbidden'] >= 2)
    check(s['refusals']['forbidden'] == 2, 'refusals.forbidden %d' % s['refusals']['forbidden'])

    async def status_after(setting, host, path, want):
        async def probe():
            st, _, _ = await aget(port, path, host=host)
            return st == want
        await poll('%s %s with pg_ws.monitoring = %s' % (host, path, setting), probe)
    await asql(conn, "ALTER SYSTEM SET pg_ws.monitoring = 'on'", 'SELECT pg_reload_conf()')
    await status_after('on', PUBLIC, '/metrics', 200)
    await asql(conn, "ALTER SYSTEM SET pg_ws.monitoring = 'off'", 'SELECT pg_reload_conf()')
    await status_after('off', '127.0.0.1', '/metrics', 404)
    st, _, body = await aget(port, '/health')
    check(st == 404 and 'not found' in body, 'loopback /health with off: %d %s' % (st, body))
    return 'from %s: 403, then 200; off: 404' % PUBLIC


async def test_open_close_debug1(ctx):
    """Opening and closing a connection are logged at DEBUG1, and not at
    the default log level."""
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    check(not log_lines(cl, 0, 'pg_ws connection '),
          'openings or closings logged at LOG: %s' % log_lines(cl, 0, 'pg_ws connection ')[:2])
    await asql(conn, "ALTER SYSTEM SET log_min_messages = 'debug1'", 'SELECT pg_reload_conf()')
    try:
        await poll('the reload', lambda: _setting(conn, 'log_min_messages', 'debug1'))
        mark = cl.log_size()

        async def none_subscribed():
            return len(await _present(conn)) == 0

        # The worker takes the reload on its own SIGHUP, which it may serve
        # after this backend has: a connection it opened before that is
        # logged at the old level.  Open and close connections until one
        # of them is logged, opening and closing.
        async def one_logged():
            await poll('no subscriber', none_subscribed)
            sub = await ctx.sub()
            port = sub.ws.local_address[1]
            rows = await poll('the subscriber', lambda: _n_subscribed(conn, 1))
            cid = rows[0]['id']
            await sub.close()

            async def both():
                opened = log_lines(cl, mark, 'DEBUG:', 'pg_ws connection %d from 127.0.0.1, port %d'
                                   % (cid, port))
                closed = log_lines(cl, mark, 'DEBUG:', 'pg_ws connection %d from 127.0.0.1 closed'
                                   % cid)
                return (opened, closed) if opened and closed else None
            try:
                return await poll('the DEBUG1 lines of connection %d' % cid, both, timeout=3)
            except Fail:
                return None
        opened, closed = await poll('a connection logged at DEBUG1', one_logged)
    finally:
        await asql(conn, 'ALTER SYSTEM RESET log_min_messages', 'SELECT pg_reload_conf()')
    return '%s | %s' % (opened[0].split('DEBUG:  ')[-1], closed[0].split('DEBUG:  ')[-1])


async def _setting(conn, name, value):
    # the worker reloads on the same SIGHUP; any backend shows the new value
    rows = await asql(conn, ('SELECT setting FROM pg_settings WHERE name = %s', (name,)))
    return rows == [(value,)]


async def test_no_token_in_log(ctx):
    """Refused tokens are logged as a reason with the peer, never as
    themselves: neither a bad token sent in the query nor one in the
    Authorization header, nor a good token, reaches the log or
    pg_ws_connections."""
    cl = await cluster(ctx, 'auth')
    conn = await ctx.aconn()
    mark = cl.log_size()
    bad_sig = jt.hs256(jt.claims(600, sub='mallory'), 'not-the-secret-' + secrets.token_hex(16))
    garbage = 'garbage-' + secrets.token_hex(24)
    expired = jt.hs256(jt.claims(-3600, sub='late'), SECRET)
    good = jt.hs256(jt.claims(600, sub='carol'), SECRET)
    port = cl.wsport
    answers = []
    for tok in (bad_sig, garbage, expired):
        for extra, path in (([], '/ws/?token=' + tok), (['Authorization: Bearer ' + tok], '/ws/')):
            st, _, _, _, _ = await asyncio.to_thread(
                rawws.http_exchange, port, rawws.upgrade_request(port, path=path, extra=extra))
            answers.append(st)
    check(answers == [401] * 6, 'answers: %s' % answers)
    s = await token_sub(ctx, good, '/ws/?token=' + good)
    await poll('carol subscribed', lambda: _n_subscribed(conn, 1))
    rows = await connections(conn)
    lines = await poll('the refusals logged', lambda: _refusals_logged(cl, mark, 6))
    text = '\n'.join(cl.log_since(0)) + repr(rows)
    leaked = [t for t in (bad_sig, garbage, expired, good)
              if t in text or t.split('.')[-1] in text]
    check(not leaked, 'tokens in the log or pg_ws_connections: %s' % [short(t, 40) for t in leaked])
    check(any('carol' == r['subject'] for r in rows), 'carol not in %s' % rows)
    await s.close()
    return lines[0].split('LOG:  ')[-1]


async def _refusals_logged(cl, mark, n):
    lines = log_lines(cl, mark, 'pg_ws refused a request from 127.0.0.1: 401 Unauthorized: token')
    return lines if len(lines) >= n else None


async def test_stopped_worker(ctx):
    """A worker that cannot answer (stopped with SIGSTOP) does not hang a
    backend: pg_ws_connections and pg_ws_disconnect fail after 10 seconds
    with a clear error, pg_ws_stats still answers, and once the worker runs
    again both work (the requests given up were taken back)."""
    import signal
    await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    pid = (await stats(conn))['worker_pid']
    os.kill(pid, signal.SIGSTOP)
    try:
        errors = []
        for q in ('SELECT count(*) FROM pg_ws_connections', 'SELECT pg_ws_disconnect(1)'):
            t = time.monotonic()
            try:
                await asql(conn, q)
                errors.append((q, 'no error', time.monotonic() - t))
            except psycopg2.Error as e:
                errors.append((q, e.diag.message_primary, time.monotonic() - t))
        s = await stats(conn)
    finally:
        os.kill(pid, signal.SIGCONT)
    for q, msg, took in errors:
        check(msg.startswith('the pg_ws worker did not answer') and 'within 10 seconds' in msg,
              '%s with the worker stopped: %s' % (q, msg))
    check(s['worker_pid'] == pid, 'pg_ws_stats with the worker stopped: %s' % short(s))
    rows = await connections(conn)
    r = await asql(conn, 'SELECT pg_ws_disconnect(9223372036854775807)')
    check(r == [(False,)], 'pg_ws_disconnect after SIGCONT: %s' % r)
    return '%s (after %.1f s); then %d rows' % (errors[0][1], errors[0][2], len(rows))


async def test_terminated_askers(ctx):
    """Backends terminated while they wait for the worker's answer (8 of
    them, as many as the mailbox has slots, the worker stopped meanwhile)
    give their slots back: once the worker runs again, pg_ws_connections
    and pg_ws_disconnect answer at once, not after 10 seconds of waiting
    for a slot that never frees."""
    import signal
    cl = await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    pid = (await stats(conn))['worker_pid']
    askers = [cl.connect() for _ in range(8)]
    pids = [a.get_backend_pid() for a in askers]
    os.kill(pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=lambda a=a: _ignore(sql_quiet, a,
                   'SELECT count(*) FROM pg_ws_connections'), daemon=True) for a in askers]
        for t in threads:
            t.start()
        await poll('8 backends waiting for the worker', lambda: _count_waiting(conn, pids),
                   timeout=20)
        await asql(conn, ('SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid',
                          (pids,)))
        await poll('the terminated backends gone', lambda: _all_gone(conn, pids), timeout=20)
    finally:
        os.kill(pid, signal.SIGCONT)
    t = time.monotonic()
    rows = await connections(conn)
    r = await asql(conn, 'SELECT pg_ws_disconnect(9223372036854775807)')
    took = time.monotonic() - t
    check(r == [(False,)], 'pg_ws_disconnect after the terminated askers: %s' % r)
    return '8 askers terminated; then %d rows and a disconnect in %.2f s' % (len(rows), took)


def sql_quiet(conn, q):
    with conn.cursor() as cur:
        cur.execute(q)


def _ignore(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass                    # terminated: that is the test


async def _count_waiting(conn, pids):
    rows = await asql(conn, ("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
                             " AND wait_event_type = 'Extension'", (pids,)))
    return rows[0][0] == len(pids)


async def _all_gone(conn, pids):
    rows = await asql(conn, ("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                             (pids,)))
    return rows[0][0] == 0


TESTS = [
    ('pg_ws_connections: peer, port, subject, expiry, filter, messages and bytes sent',
     test_connections_rows, 60),
    ('connection ids are never reused', test_ids_never_reused, 30),
    ('pg_ws_disconnect closes exactly that connection with 1008; false for unknown ids',
     test_disconnect, 60),
    ('N events to K subscribers move the counters by exactly N, N*K and the frames\' bytes',
     test_counters_exact, 60),
    ('resync notices and events read back from the WAL are counted too',
     test_counted_resync_and_wal, 60),
    ('the counters go on across a restart of the worker', test_counters_survive_worker_restart, 60),
    ('drops are counted by reason, exactly', test_drops_by_reason, 45),
    ('refusals are logged with peer and reason, rate-limited per reason, counted exactly',
     test_refusals_rate_limited, 90),
    ('GET /health: 200 and JSON while serving', test_health_ok, 30),
    ('GET /health: 503 while pg_ws.database does not exist, 200 once it does',
     test_health_no_database, 60),
    ('GET /health: 503 while writers wait for room; oldest_unsent_age', test_health_writers_waiting,
     120),
    ('a Prometheus scrape of /metrics parses and agrees with pg_ws_stats', test_metrics_scrape, 60),
    ('pg_ws.monitoring: local, on, off', test_monitoring_access, 60),
    ('opening and closing are logged at DEBUG1 only', test_open_close_debug1, 45),
    ('no token reaches the log or pg_ws_connections', test_no_token_in_log, 45),
    ('a stopped worker makes pg_ws_connections and pg_ws_disconnect fail in 10 s, not hang',
     test_stopped_worker, 60),
    ('backends terminated while they wait for the worker give their mailbox slots back',
     test_terminated_askers, 60),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
