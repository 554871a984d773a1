#!/usr/bin/python3
"""End-to-end tests of what subscribers that resume from the WAL may make
the worker hold and read: readers shared by those resuming from about the
same place, each holding a transaction's events while it hands them over
and a window of frames for its riders.

  a. one that stops reading while it resumes from before a transaction of
     60,000 events is culled by pg_ws.max_subscriber_lag, its reader's
     memory counted as lag (1.2 counted only the log, and kept it);
  b. 100 that stop reading (small receive buffers, never a recv) while
     they resume from ever older positions inside it, so that none can
     ride another's reader: only as many read the WAL at once as
     pg_ws.catchup_memory holds, the others wait in line (pg_ws_connections
     says "waiting", pg_ws_stats counts them), the one that makes no
     progress gives its place up; the worker's heap stays within the
     budget, and is back at its baseline once they are gone;
  c. 40 that read, resuming at once from before it: each gets every event
     once, in order, the same as a live subscriber got;
  d. 60 resumers from the same position share one reader: the worker
     reads (rchar of /proc/PID/io) less than twice what one resumer makes
     it read, where a reader each read it 60 times, and each gets exactly
     the live subscriber's bytes;
  e. one that stops reading among 20 that read, all resuming from the
     same position, and one from an older position: the 20 are not held
     back by it (the stalled one steps off the shared reader once it holds
     up a full window), the older one is not starved, and each gets
     exactly its events; filters (?events=, ?filter=) apply to events read
     from the WAL as to the live ones;
  f. pg_ws.max_wal_resumes_per_address: past it a resume from the WAL is
     answered 503 with Retry-After before the upgrade, counted in
     pg_ws_stats.resumes_refused and /metrics; a resume from memory is
     not;
  h. a resumer from a later position than a stalled one's joins their
     reader before it has read that far (the window holds fewer events
     than lie between them): it gets exactly the events after its own
     position, none before;
  i. commits while 40 resumers take their turns: the live subscriber and
     every resumer get exactly their events, in order (how soon is
     bench/'s storm part's to measure; it adds events of its own: only g
     follows);
  g. 1,000 rounds of a resumer that connects, reads a little and goes:
     the heap is back at its baseline (last: it adds events of its own).

The worker's heap is pg_ws_stats.worker_memory_bytes (what its malloc
holds); no assertion depends on timing.

Run as root:  /usr/bin/python3 test/e2e/test_catchup.py
"""

import asyncio
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, Cluster, Ctx, Fail, asql, check, poll,  # noqa: E402
                     position, resume_path, run_tap, short)
import rawws  # noqa: E402

WATCHDOG_SECONDS = 400

MB = 1024 * 1024
QUEUE = 16 * MB
# two readers at once: each may hold twice the queue and 2 MB
BUDGET = 2 * (2 * QUEUE + 2 * MB)
BIG = 60000

CLUSTERS = {
    'catchup': dict(conf=["pg_ws.history_size = 0",       # every resume reads the WAL
                          "pg_ws.queue_size = '%dkB'" % (QUEUE // 1024),
                          "pg_ws.catchup_memory = '%dkB'" % (BUDGET // 1024),
                          "pg_ws.max_wal_resumes_per_address = 0"]),
}

_kinds = ClusterKinds(lambda kind: Cluster(name=kind, **CLUSTERS[kind]))
STATE = {}


async def setup_big(ctx):
    """The cluster, a marker event and then one transaction of BIG events,
    as a live subscriber got them; done once."""
    cl = await _kinds.get(ctx, 'catchup')
    if 'marker' in STATE:
        return cl, STATE['marker'], STATE['events']
    conn = await ctx.aconn()
    live = await ctx.sub()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (1, 'm', 'm')")
    await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                     " SELECT g, 'x', 'y' FROM generate_series(2, %d) g" % (BIG + 1))
    got = await live.expect(BIG + 1, 120, 'live', settle=0.5)
    await live.close()
    STATE['marker'], STATE['events'] = got[0], got[1:]
    return cl, got[0], got[1:]


async def heap(conn):
    return (await asql(conn, "SELECT worker_memory_bytes FROM pg_ws_stats"))[0][0]


async def settled_heap(conn):
    """The heap once the worker has published it again (once a second)."""
    await asyncio.sleep(1.2)
    return await heap(conn)


def stalled_resumer(port, path):
    """A subscriber that resumes and never reads: a 4 kB receive buffer,
    no recv() after the request."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', port))
    s.sendall(rawws.upgrade_request(port, path))
    return s


async def test_lag_counts_reader(ctx):
    """a. a stalled resumer's reader counts as its lag."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    mark = cl.log_size()
    await asql(conn, "ALTER SYSTEM SET pg_ws.max_subscriber_lag = '4MB'", "SELECT pg_reload_conf()")
    try:
        s = await asyncio.to_thread(stalled_resumer, cl.wsport, resume_path(marker))
        try:
            culled = await poll('the stalled resumer culled', lambda: asyncio.sleep(0, [
                line for line in cl.log_since(mark)
                if 'stopped reading while catching up and exceeded' in line]),
                timeout=30)
        finally:
            s.close()
    finally:
        await asql(conn, "ALTER SYSTEM RESET pg_ws.max_subscriber_lag", "SELECT pg_reload_conf()")
    return culled[0].split('LOG:  ')[-1]


async def test_stalled_resumers(ctx):
    """b. 100 stalled resumers: two read, the others wait; bounded heap."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    base = await settled_heap(conn)
    waited0 = await _waited(conn)
    socks = []
    seq0, epoch = position(marker)
    try:
        # each from before the last: no reader has its position still ahead
        for k in range(100):
            since = position(events[BIG - 1 - 500 * k])[0] if k < BIG // 500 else seq0 - k
            socks.append(await asyncio.to_thread(stalled_resumer, cl.wsport,
                                                 '/ws/?since=%d&epoch=%s' % (since, epoch)))
        # (a stalled reader gives its place up after a second: count early)
        states = await poll('most of the 100 waiting', lambda: _states(conn, 90), timeout=30,
                            every=0.05)
        peak = base
        for _ in range(5):
            peak = max(peak, await settled_heap(conn))
        check(peak - base <= BUDGET + 8 * MB,
              'the heap grew by %d bytes with 100 stalled resumers, the budget is %d'
              % (peak - base, BUDGET))
        waited = await _waited(conn) - waited0
    finally:
        for s in socks:
            s.close()
    check(waited >= 90, 'pg_ws_stats.resumes_waited grew by %d' % waited)
    after = await poll('the heap back at its baseline', lambda: _heap_near(conn, base, 2 * MB),
                       timeout=30)
    return 'base %d, peak +%d (budget %d), after +%d; %s; %d waited' % (
        base, peak - base, BUDGET, after - base, states, waited)


async def _waited(conn):
    return (await asql(conn, "SELECT COALESCE((to_jsonb(s)->>'resumes_waited')::bigint, 0)"
                             " FROM pg_ws_stats s"))[0][0]


async def _states(conn, waiting):
    rows = await asql(conn, "SELECT state, count(*) FROM pg_ws_connections GROUP BY 1")
    states = dict(rows)
    return states if states.get('waiting', 0) >= waiting else None


async def _heap_near(conn, base, slack):
    h = await settled_heap(conn)
    return h if h - base <= slack else None


async def test_reading_resumers(ctx):
    """c. 40 reading resumers: all get everything, exactly."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    base = await settled_heap(conn)
    subs = [await ctx.sub(resume_path(marker)) for _ in range(40)]
    peak = base
    for sub in subs:
        await sub.wait_until(lambda m: len(m) >= BIG, 120, 'a resumer')
        peak = max(peak, await heap(conn))
    await asyncio.sleep(0.3)
    for k, sub in enumerate(subs):
        check(sub.msgs == events, 'resumer %d: %d messages, the live subscriber got %d'
              % (k, len(sub.msgs), len(events)))
    return '40 resumers got all %d events each; heap peak +%d' % (BIG, peak - base)


async def test_rounds(ctx):
    """g. 1,000 rounds of a resumer that reads a little and goes."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    # a smaller transaction to resume across, so that a round is quick
    await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                     " SELECT g, 'r', 'r' FROM generate_series(900001, 901000) g")
    base = await settled_heap(conn)
    seq, epoch = position(events[-1])
    path = '/ws/?since=%d&epoch=%s' % (seq, epoch)
    for k in range(1000):
        s = await asyncio.to_thread(rawws.connect, cl.wsport)
        try:
            s.sendall(rawws.upgrade_request(cl.wsport, path))
            await asyncio.to_thread(s.recv, 4096)
        finally:
            s.close()
    after = await poll('the heap back at its baseline', lambda: _heap_near(conn, base, 2 * MB),
                       timeout=30)
    return '1000 rounds: base %d, after +%d bytes' % (base, after - base)


async def test_live_between_turns(ctx):
    """i. Commits while 40 resumers take their turns: exactly their events
    to the subscriber that is up to date and to each resumer."""
    await setup_big(ctx)
    conn = await ctx.aconn()
    live = await ctx.sub()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (950000, 's', 's')")
    start = (await live.expect(1, 30, 'the start'))[0]
    await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                     " SELECT g, 'x', 'y' FROM generate_series(1000001, %d) g" % (1000000 + BIG))
    await live.wait_until(lambda m: len(m) >= 1 + BIG, 60, 'the batch, live')
    subs = await asyncio.gather(*[ctx.sub(resume_path(start)) for _ in range(40)])
    # one event per transaction while the resumers are handed the batch
    behind = []
    for k in range(200):
        await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                         " VALUES (%d, 'l', 'l')" % (980000 + k))
        behind.append([len(sub.msgs) < BIG for sub in subs].count(True))
    await live.wait_until(lambda m: len(m) >= 1 + BIG + 200, 60, 'the live subscriber')
    after = live.msgs[1:]
    for sub in subs:
        await sub.wait_until(lambda m: len(m) >= len(after), 180, 'a resumer')
    await asyncio.sleep(0.3)
    check(len(live.msgs) == 1 + BIG + 200 and
          all(json.loads(m)['data']['id'] == 980000 + k for k, m in enumerate(after[-200:])),
          'the live subscriber: %d messages, the last 200 not the commits in order'
          % len(live.msgs))
    for k, sub in enumerate(subs):
        check(sub.msgs == after, 'resumer %d: %d messages, the live subscriber got %d'
              % (k, len(sub.msgs), len(after)))
    return '40 resumers and the live subscriber got exactly their events; resumers still' \
           ' in the batch after the first, 100th and last commit: %d, %d, %d' \
           % (behind[0], behind[99], behind[-1])


def worker_read(pid):
    """Bytes the worker has read (rchar: files and sockets alike)."""
    with open('/proc/%d/io' % pid) as f:
        for line in f:
            if line.startswith('rchar:'):
                return int(line.split()[1])
    raise Fail('no rchar in /proc/%d/io' % pid)


async def _worker_pid(conn):
    return (await asql(conn, "SELECT worker_pid FROM pg_ws_stats"))[0][0]


async def test_shared_reader(ctx):
    """d. 60 resumers from one position read the WAL about once."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    pid = await _worker_pid(conn)
    after = events

    async def storm(n):
        r0 = await asyncio.to_thread(worker_read, pid)
        # at once, as a storm comes: each arrives before the reader's window
        # has moved past the position
        subs = await asyncio.gather(*[ctx.sub(resume_path(marker)) for _ in range(n)])
        for sub in subs:
            await sub.wait_until(lambda m: len(m) >= len(after), 180, 'a resumer')
        await asyncio.sleep(0.3)
        read = await asyncio.to_thread(worker_read, pid) - r0
        for k, sub in enumerate(subs):
            check(sub.msgs == after, 'resumer %d of %d: %d messages, not the live %d'
                  % (k, n, len(sub.msgs), len(events)))
            await sub.close()
        return read

    one = await storm(1)
    many = await storm(60)
    check(many < 2 * one + 4 * MB,
          'the worker read %d bytes for 60 resumers from one position, %d for one:'
          ' they do not share a reader' % (many, one))
    return 'worker read %.1f MB for one resumer, %.1f MB for 60' % (one / MB, many / MB)


async def test_stalled_rider(ctx):
    """e. a stalled rider holds nobody back; an older resumer is not starved."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    seq0, epoch = position(marker)
    after = events
    mark = cl.log_size()
    # this one Python process reads 22 connections: one it leaves unread
    # for a quarter of a second must not count as stalled with the 60,000
    # events' record (twice over, decoding) in its reader's hands
    await asql(conn, "ALTER SYSTEM SET pg_ws.max_subscriber_lag = '64MB'", "SELECT pg_reload_conf()")
    stalled = await asyncio.to_thread(stalled_resumer, cl.wsport, resume_path(marker))
    try:
        # the stalled one first, so that it rides the reader the others join
        await poll('the stalled resumer reading', lambda: _states(conn, 0), timeout=10)
        readers = [await ctx.sub(resume_path(marker)) for _ in range(20)]
        older = await ctx.sub('/ws/?since=%d&epoch=%s' % (seq0 - 1, epoch))
        # the same events, filtered as the live path filters them
        named = await ctx.sub(resume_path(marker).replace('/ws/?', '/ws/?events=client_create&'))
        valued = await ctx.sub(resume_path(marker).replace(
            '/ws/?', '/ws/?filter=id%3Din.(7,70,700,7000)&'))
        for sub in readers:
            await sub.wait_until(lambda m: len(m) >= len(after), 180,
                                 'a reader beside a stalled one')
        await older.wait_until(lambda m: len(m) >= len(after) + 1, 180, 'the older resumer')
        await valued.wait_until(lambda m: len(m) >= 4, 180, 'the filtered resumer')
        await asyncio.sleep(0.5)
        for k, sub in enumerate(readers):
            check(sub.msgs == after, 'reader %d: %d messages, the live subscribers got %d'
                  % (k, len(sub.msgs), len(after)))
        check(older.msgs == [marker] + after, 'the older resumer: %d messages, expected %d'
              % (len(older.msgs), len(after) + 1))
        check(named.msgs == [], 'an ?events= resumer got %d employee events' % len(named.msgs))
        want = [m for m in after if json.loads(m)['data']['id'] in (7, 70, 700, 7000)]
        check(valued.msgs == want, 'the ?filter= resumer got %s, expected %s'
              % ([json.loads(m)['data']['id'] for m in valued.msgs],
                 [json.loads(m)['data']['id'] for m in want]))
        steps = [line for line in cl.log_since(mark) if 'stopped reading' in line]
    finally:
        stalled.close()
        await asql(conn, "ALTER SYSTEM RESET pg_ws.max_subscriber_lag", "SELECT pg_reload_conf()")
    return '20 readers and an older one got every event beside a stalled one; %d log lines' % len(steps)


async def test_join_ahead(ctx):
    """h. a resumer from a later position joins a reader that has not read
    that far yet: it gets exactly the events after its own position."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    live = await ctx.sub()
    # more than a window (pg_ws.queue_size) of frames, in 10 transactions
    for t in range(10):
        await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                         " SELECT g, 'j', 'k' FROM generate_series(%d, %d) g"
                   % (200000 + t * 10000, 200000 + t * 10000 + 9999))
    new = await live.expect(100000, 180, 'live', settle=0.5)
    await live.close()
    mid = 95000
    # the stalled one makes the reader and holds its window; the other comes
    # at once, from a position the reader reaches only later
    stalled = await asyncio.to_thread(stalled_resumer, cl.wsport, resume_path(new[0]))
    try:
        ahead = await ctx.sub(resume_path(new[mid]))
        await ahead.wait_until(lambda m: len(m) >= len(new) - mid - 1, 180, 'the resumer ahead')
        await asyncio.sleep(0.5)
        check(ahead.msgs == new[mid + 1:],
              'the resumer ahead got %d messages, expected %d; first %s'
              % (len(ahead.msgs), len(new) - mid - 1, short(ahead.msgs[0]) if ahead.msgs else None))
    finally:
        stalled.close()
    return 'exactly its %d events' % len(ahead.msgs)


async def test_per_address(ctx):
    """f. pg_ws.max_wal_resumes_per_address refuses with 503 past it."""
    cl, marker, events = await setup_big(ctx)
    conn = await ctx.aconn()
    refused0 = (await asql(conn, "SELECT resumes_refused FROM pg_ws_stats"))[0][0]
    await asql(conn, "ALTER SYSTEM SET pg_ws.max_wal_resumes_per_address = 2",
               "SELECT pg_reload_conf()")
    socks = []
    try:
        await poll('the setting reloaded', lambda: asql(
            conn, "SELECT 1 WHERE current_setting('pg_ws.max_wal_resumes_per_address') = '2'"),
            timeout=10)
        await asyncio.sleep(0.5)             # the worker reloads too
        for _ in range(2):
            socks.append(await asyncio.to_thread(stalled_resumer, cl.wsport, resume_path(marker)))
        await poll('two resuming', lambda: _resuming(conn, 2), timeout=10)
        s = await asyncio.to_thread(rawws.connect, cl.wsport)
        try:
            s.sendall(rawws.upgrade_request(cl.wsport, resume_path(marker)))
            head = (await asyncio.to_thread(rawws.read_head, s)).decode('latin-1')
        finally:
            s.close()
        check(head.startswith('HTTP/1.1 503 ') and '\r\nRetry-After: 1\r\n' in head
              and 'max_wal_resumes_per_address' in head,
              'the third resume from the WAL got: ' + short(head))
        # a resume from the worker's memory (after the newest event) is served
        last = (await asql(conn, "SELECT history_last_position FROM pg_ws_stats"))[0][0]
        live = await ctx.sub('/ws/?since=%d&epoch=%s' % (last, position(marker)[1]))
        await live.close()
        # the worker publishes its figures once a second
        refused = await poll('resumes_refused counted', lambda: _refused_since(conn, refused0),
                             timeout=10)
        check(refused == 1, 'pg_ws_stats.resumes_refused grew by %d' % refused)
        metrics = await asyncio.to_thread(_get, cl.wsport, '/metrics')
        check('\npg_ws_resumes_refused_total %d\n' % (refused0 + 1) in metrics,
              '/metrics has no pg_ws_resumes_refused_total %d' % (refused0 + 1))
    finally:
        for s in socks:
            s.close()
        await asql(conn, "ALTER SYSTEM RESET pg_ws.max_wal_resumes_per_address",
                   "SELECT pg_reload_conf()")
    return head.split('\r\n')[0] + '; resumes_refused +1'


async def _refused_since(conn, refused0):
    n = (await asql(conn, "SELECT resumes_refused FROM pg_ws_stats"))[0][0] - refused0
    return n if n > 0 else None


async def _resuming(conn, n):
    rows = await asql(conn, "SELECT count(*) FROM pg_ws_connections WHERE state IN"
                            " ('subscribed', 'waiting')")
    return rows[0][0] if rows[0][0] >= n else None


def _get(port, path):
    s = rawws.connect(port)
    try:
        s.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % (path, port)).encode())
        return rawws.read_until_closed(s, 10)[0].decode('latin-1')
    finally:
        s.close()


TESTS = [
    ('(a) a resumer that stops reading is culled by pg_ws.max_subscriber_lag, its reader'
     ' counted', test_lag_counts_reader, 90),
    ('(b) 100 stalled resumers: only what pg_ws.catchup_memory holds reads the WAL, the others'
     ' wait; the heap stays within it and comes back', test_stalled_resumers, 120),
    ('(c) 40 reading resumers each get every event once, in order',
     test_reading_resumers, 180),
    ('(d) 60 resumers from one position share one reader: the WAL is read about once,'
     ' each gets the live bytes', test_shared_reader, 240),
    ('(e) a stalled resumer holds back none of the 20 beside it, an older one is not starved,'
     ' filters apply', test_stalled_rider, 240),
    ('(f) pg_ws.max_wal_resumes_per_address: 503 with Retry-After past it, counted',
     test_per_address, 90),
    ('(h) a resumer joins a reader that has not reached its position yet: exactly its events',
     test_join_ahead, 240),
    ('(i) commits while 40 resumers take their turns: exactly their events to the live'
     ' subscriber and each resumer', test_live_between_turns, 240),
    ('(g) 1,000 rounds of a resumer that reads a little: the heap comes back to its baseline',
     test_rounds, 180),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
