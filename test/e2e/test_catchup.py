#!/usr/bin/python3
"""End-to-end tests of what subscribers that resume from the WAL may make
the worker hold: a reader of their own, holding a transaction's events
while it hands them over.

  a. one that stops reading while it resumes from before a transaction of
     60,000 events is culled by pg_ws.max_subscriber_lag, its reader's
     memory counted as lag (1.2 counted only the log, and kept it);
  b. 100 that stop reading (small receive buffers, never a recv) while
     they resume from before it: only as many read the WAL at once as
     pg_ws.catchup_memory holds, the others wait in line (pg_ws_connections
     says "waiting", pg_ws_stats counts them), the one that makes no
     progress gives its place up; the worker's heap stays within the
     budget, and is back at its baseline once they are gone;
  c. 40 that read, resuming at once from before it: each gets every event
     once, in order, the same as a live subscriber got, though most of
     them waited their turn;
  d. 1,000 rounds of a resumer that connects, reads a little and goes:
     the heap is back at its baseline.

The worker's heap is pg_ws_stats.worker_memory_bytes (what its malloc
holds); no assertion depends on timing.

Run as root:  /usr/bin/python3 test/e2e/test_catchup.py
"""

import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, Cluster, Ctx, asql, check, poll,  # noqa: E402
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
                          "pg_ws.catchup_memory = '%dkB'" % (BUDGET // 1024)]),
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
    try:
        for _ in range(100):
            socks.append(await asyncio.to_thread(stalled_resumer, cl.wsport, resume_path(marker)))
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
    check(waited >= 98, 'pg_ws_stats.resumes_waited grew by %d' % waited)
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
    """c. 40 reading resumers, most of them waiting their turn: all get
    everything, exactly."""
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
    """d. 1,000 rounds of a resumer that reads a little and goes."""
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


TESTS = [
    ('(a) a resumer that stops reading is culled by pg_ws.max_subscriber_lag, its reader'
     ' counted', test_lag_counts_reader, 90),
    ('(b) 100 stalled resumers: only what pg_ws.catchup_memory holds reads the WAL, the others'
     ' wait; the heap stays within it and comes back', test_stalled_resumers, 120),
    ('(c) 40 reading resumers, most waiting their turn, each get every event once, in order',
     test_reading_resumers, 180),
    ('(d) 1,000 rounds of a resumer that reads a little: the heap comes back to its baseline',
     test_rounds, 180),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
