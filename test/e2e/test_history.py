#!/usr/bin/python3
"""End-to-end tests of pg_ws's positions: events in the WAL, and resuming.

  a. every message's seq is its WAL position: the LSN of its
     transaction's pg_ws logical message (as logical decoding reports it)
     plus its index there, and the message's payload is the events as
     JSON Lines;
  b. ?since=&epoch= under concurrent writers: from memory and from the
     WAL (a history too small to hold the events), every event after the
     position exactly once, in order, with no seam between the resumed
     part and the live stream;
  c. a server crash restart (a backend killed with SIGKILL): a subscriber
     that resumes gets everything committed before and after the crash
     once, and nothing of a transaction the crash cut short, even one
     whose pg_ws message was already in the WAL;
  d. resync_required when the epoch is not ours, then the live stream
     (WAL that is gone: f);
  e. a since that is not a position, or without an epoch, is answered 400;
     empty values are a fresh start; a 1.1 configuration still loads;
  f. pg_ws.history_retention keeps the WAL with the slot "pg_ws": without
     it a checkpoint removes the WAL a subscriber needs (resync_required),
     with it the subscriber resumes; the slot goes when the setting does;
  g. pg_ws.wal = off writes no WAL message, still numbers the events, and
     a restart of the server changes the epoch.

Clusters (harness.Cluster), started on first use on free ports, all with
fsync and synchronous_commit on:

    logical   wal_level logical (for test_decoding)                 (a, g)
    small     pg_ws.history_size 0: every resume reads the WAL      (b)
    big       the default history: resumes come from memory; the
              obsolete pg_ws.reconnect_grace set, as a 1.1
              configuration has it                                  (b, c, d, e)
    retain    small WAL (min_wal_size 32MB, max_wal_size 64MB), so
              that checkpoints remove it                            (f)
    memonly   pg_ws.wal off, wal_level logical                      (g)

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_history.py

Output is TAP; the exit status is 0 only if every test passed.
"""

import asyncio
import json
import os
import re
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, PGBIN, Cluster, Ctx, Fail, asql, check,  # noqa: E402
                     check_positions, position, resume_path, run_tap,
                     short, sql, without_position)
import rawws  # noqa: E402

WATCHDOG_SECONDS = 420          # the whole run, setup and clean-up included

CLUSTERS = {
    'logical': dict(conf=['wal_level = logical']),
    'small': dict(conf=["pg_ws.history_size = 0"]),
    # and a 1.1 configuration: the obsolete reconnect_grace still loads
    'big': dict(conf=["pg_ws.reconnect_grace = '10s'"]),
    'retain': dict(conf=["pg_ws.history_size = 0",
                         "min_wal_size = '32MB'", "max_wal_size = '64MB'",
                         "checkpoint_timeout = '1h'"]),
    'memonly': dict(conf=['pg_ws.wal = off', 'wal_level = logical']),
}

_kinds = ClusterKinds(lambda kind: Cluster(name=kind, **CLUSTERS[kind]))


async def cluster(ctx, kind):
    return await _kinds.get(ctx, kind)


EMP = "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'h', 'h')"


def emp_id(raw):
    return json.loads(raw)['data']['id']


async def marker(ctx, conn, ident):
    """Commit one employee_create and return it as a live subscriber sees
    it: a position to resume after."""
    sub = await ctx.sub()
    await asql(conn, EMP % ident)
    got = await sub.expect(1, 15, 'marker %d' % ident, settle=0)
    check(emp_id(got[0]) == ident, 'marker: %s' % short(got[0]))
    await sub.close()           # it no longer keeps anything in memory
    return got[0]


async def test_positions_are_wal(ctx):
    """a. seq = the LSN of the transaction's pg_ws message + index."""
    cl = await cluster(ctx, 'logical')
    conn = await ctx.aconn()
    await asql(conn, "SELECT pg_create_logical_replication_slot('h_a', 'test_decoding')")
    start = (await asql(conn, "SELECT pg_current_wal_insert_lsn()::text"))[0][0]
    try:
        sub = await ctx.sub()
        await asql(conn, EMP % 100)
        await asql(conn, "BEGIN", EMP % 101, EMP % 102, EMP % 103, "COMMIT")
        await asql(conn, "BEGIN", EMP % 104, "SAVEPOINT s", EMP % 105,
                   "ROLLBACK TO s", EMP % 106, "COMMIT")
        got = await sub.expect(6, 15, 'subscriber')
        check([emp_id(m) for m in got] == [100, 101, 102, 103, 104, 106],
              'events: %s' % [emp_id(m) for m in got])
        check_positions(got, 'subscriber')
        rows = await asql(conn, "SELECT data FROM pg_logical_slot_peek_changes("
                                "'h_a', NULL, NULL) WHERE data LIKE 'message:%'")
        end = (await asql(conn, "SELECT pg_current_wal_flush_lsn()::text"))[0][0]
    finally:
        await asql(conn, "SELECT pg_drop_replication_slot('h_a')")
    # where each message's record starts, as pg_waldump reads it
    dump = await asyncio.to_thread(
        cl.as_postgres, PGBIN + '/pg_waldump', '-p', os.path.join(cl.data, 'pg_wal'),
        '-s', start, '-e', end, '-r', 'LogicalMessage')
    starts = [int(m.group(1), 16) << 32 | int(m.group(2), 16)
              for m in re.finditer(r'lsn: ([0-9A-F]+)/([0-9A-F]+),.*prefix "pg_ws"',
                                   dump.stdout)]
    check(len(rows) == 3 and len(starts) == 3,
          'expected 3 pg_ws messages in the WAL, decoded %d, pg_waldump %d: %s'
          % (len(rows), len(starts), [short(r[0], 100) for r in rows]))
    expected = []
    for start, (data,) in zip(starts, rows):
        check('transactional: 1 prefix: pg_ws,' in data, 'message: ' + short(data))
        lines = data.split('content:', 1)[1].split('\n')
        check(lines[-1] == '', 'the payload does not end with a newline: ' + short(data))
        expected += [(start + i, line) for i, line in enumerate(lines[:-1])]
    got_pairs = [(position(m)[0], without_position(m)) for m in got]
    check(got_pairs == expected, 'the messages are not the WAL\'s events at their LSNs',
          *['  got %s, WAL %s' % (g[0], w[0]) for g, w in zip(got_pairs, expected)
            if g != w][:4])
    return 'seq of 6 events = LSN of 3 messages + index; payload = the same JSON Lines'


async def resume_under_writers(ctx, kind):
    cl = await cluster(ctx, kind)
    conn = await ctx.aconn()
    base = {'small': 300000, 'big': 400000}[kind]
    first = await marker(ctx, conn, base)
    live = await ctx.sub()
    stop = threading.Event()
    counts = [0] * 4

    def writer(k):
        c = cl.connect()
        try:
            i = 0
            while not stop.is_set() and i < 3000:
                n = base + 1 + k * 10000 + i
                sql(c, "BEGIN", EMP % n, EMP % (n + 5000), "COMMIT")
                i += 1
                counts[k] = i
        finally:
            c.close()

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    # resume while the writers run: the seam is in the middle of their work
    await live.wait_until(lambda m: len(m) >= 2000, 60, 'live subscriber')
    early = await ctx.sub(resume_path(first))
    middle_at = live.msgs[1000]
    middle = await ctx.sub(resume_path(middle_at))
    await asyncio.sleep(1.0)
    stop.set()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.05)
    end = base + 99999
    await asql(conn, EMP % end)
    for s, who in ((live, 'live'), (early, 'from the first marker'),
                   (middle, 'from the middle')):
        await s.wait_until(lambda m: any(emp_id(x) == end for x in m[-5:]), 60, who)
    await asyncio.sleep(0.3)
    check_positions(live.msgs, 'live')
    all_ids = [emp_id(m) for m in live.msgs]
    check(len(set(all_ids)) == len(all_ids) == 2 * sum(counts) + 1,
          'live: %d messages, %d distinct, %d committed'
          % (len(all_ids), len(set(all_ids)), 2 * sum(counts) + 1))
    k = live.msgs.index(middle_at)
    check(early.msgs == live.msgs,
          'resumed from the first marker: %d messages, live %d; first difference at %s'
          % (len(early.msgs), len(live.msgs),
             next((i for i, (a, b) in enumerate(zip(early.msgs, live.msgs)) if a != b), None)))
    check(middle.msgs == live.msgs[k + 1:],
          'resumed from the middle: %d messages, expected %d'
          % (len(middle.msgs), len(live.msgs) - k - 1))
    return '%d events by 4 writers; resumed from before all of them and from the middle' % (
        len(live.msgs))


async def test_resume_from_wal(ctx):
    """b. with no history in memory, resuming reads the WAL."""
    return await resume_under_writers(ctx, 'small')


async def test_resume_from_memory(ctx):
    """b. with the default history, resuming reads memory."""
    return await resume_under_writers(ctx, 'big')


async def test_crash_restart(ctx):
    """c. a crash restart loses nothing and replays nothing twice."""
    cl = await cluster(ctx, 'big')
    conn = await ctx.aconn()
    last_seen = await marker(ctx, conn, 500000)
    # committed while nobody listens, before the crash
    await asql(conn, "BEGIN", EMP % 500001, EMP % 500002, "COMMIT")
    await asql(conn, EMP % 500003)
    # a transaction cut short: its pg_ws message is in the WAL already (as a
    # pre-commit that the crash interrupts would leave it), its commit never
    victim = await asyncio.to_thread(cl.connect, autocommit=False)
    await asql(victim, EMP % 500900,
               "SELECT pg_logical_emit_message(true, 'pg_ws', "
               "'{\"event\": \"employee_create\", \"data\": {\"id\": 500901}}' || E'\\n')",
               "SELECT pg_current_wal_flush_lsn()")
    pid = (await asql(victim, "SELECT pg_backend_pid()"))[0][0]
    mark = cl.log_size()
    os.kill(pid, 9)
    deadline = time.monotonic() + 60
    while 'database system is ready to accept connections' not in '\n'.join(cl.log_since(mark)):
        check(time.monotonic() < deadline, 'the server did not restart after the crash')
        await asyncio.sleep(0.1)
    await cl.wait_listening(cl.wsport, 30, since=mark)
    conn = await ctx.aconn()
    await asql(conn, EMP % 500004)
    await asql(conn, "BEGIN", EMP % 500005, EMP % 500006, "COMMIT")
    back = await ctx.sub(resume_path(last_seen))
    got = await back.expect(6, 20, 'resumed after the crash')
    ids = [emp_id(m) for m in got]
    check(ids == [500001, 500002, 500003, 500004, 500005, 500006],
          'after the crash: %s' % ids)
    check_positions([last_seen] + got, 'resumed')
    return 'events before and after the crash once each; the cut transaction never'


async def first_frames(ctx, path, n, timeout=15):
    sub = await ctx.sub(path)
    return await sub.expect(n, timeout, path, settle=0.3)


async def test_resync(ctx):
    """d. a wrong epoch: resync_required, then live."""
    cl = await cluster(ctx, 'big')
    conn = await ctx.aconn()
    ref = await marker(ctx, conn, 600000)
    seq, epoch = position(ref)
    cases = [('another epoch', '/ws/?since=%d&epoch=%s' % (seq, 'x' + epoch))]
    notes = []
    for k, (what, path) in enumerate(cases):
        sub = await ctx.sub(path)
        await sub.wait_until(lambda m: len(m) >= 1, 15, what)
        first = json.loads(sub.msgs[0])
        check(first['event'] == 'resync_required', '%s: first message %s'
              % (what, short(sub.msgs[0])))
        check(list(first) == ['event', 'data', 'seq', 'epoch'] and
              list(first['data']) == ['since', 'oldest', 'epoch'],
              '%s: keys %s' % (what, short(sub.msgs[0])))
        d = first['data']
        check(d['since'] == seq and d['epoch'] == epoch and
              first['epoch'] == epoch and first['seq'] >= seq,
              '%s: %s' % (what, short(sub.msgs[0])))
        await asql(conn, EMP % (600001 + k))
        got = await sub.expect(2, 15, what)
        check(emp_id(got[1]) == 600001 + k and len(got) == 2,
              '%s: after the notice %s' % (what, [short(m, 80) for m in got[1:]]))
        notes.append('%s: resync_required (oldest %s)' % (what, d['oldest']))
    # resuming after the notice's seq: what came after it, no other notice
    again = await ctx.sub(resume_path(sub.msgs[0]))
    await asql(conn, EMP % 600009)
    got = await again.expect(2, 15, 'resumed after the notice')
    check([emp_id(m) for m in got] == [600001, 600009],
          'after the notice: %s' % [short(m, 60) for m in got])
    return '; '.join(notes)


async def test_bad_since(ctx):
    """e. malformed resume parameters are refused with 400."""
    cl = await cluster(ctx, 'big')
    conn = await ctx.aconn()
    ref = await marker(ctx, conn, 700000)
    seq, epoch = position(ref)
    for query in ('since=abc&epoch=%s' % epoch, 'since=-1&epoch=%s' % epoch,
                  'since=%d' % seq, 'since=%d&epoch=' % seq,
                  'since=%d0000000000000000000&epoch=%s' % (seq, epoch),
                  'since=%%2B%d&epoch=%s' % (seq, epoch)):
        raw = rawws.upgrade_request(cl.wsport, '/ws/?' + query)
        status, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, cl.wsport, raw)
        check(status == 400, '?%s: HTTP %s %s' % (query, status, short(body)))
    # (the cluster's obsolete pg_ws.reconnect_grace was accepted silently)
    complaints = [line for line in cl.log_since(0) if 'reconnect_grace' in line]
    check(not complaints, 'the server complained about pg_ws.reconnect_grace:',
          *complaints[:3])
    # empty values: a fresh start
    sub = await ctx.sub('/ws/?since=&epoch=')
    await asql(conn, EMP % 700001)
    got = await sub.expect(1, 15, 'empty since')
    check([emp_id(m) for m in got] == [700001], 'empty since: %s' % got)
    return 'six malformed queries answered 400; empty values start live'


async def slot_rows(conn):
    return await asql(conn, "SELECT slot_type, restart_lsn IS NOT NULL"
                            " FROM pg_replication_slots WHERE slot_name = 'pg_ws'")


async def wait_slot(conn, present, timeout=40):
    deadline = time.monotonic() + timeout
    while bool(await slot_rows(conn)) != present:
        check(time.monotonic() < deadline, 'the slot pg_ws is %s after %d s'
              % ('missing' if present else 'still there', timeout))
        await asyncio.sleep(0.2)


async def churn_wal(conn):
    """Make checkpoints remove the WAL written so far."""
    for _ in range(6):
        await asql(conn, "SELECT pg_switch_wal()", "CREATE TEMP TABLE IF NOT EXISTS t(x int)",
                   "INSERT INTO t SELECT generate_series(1, 1000)", "CHECKPOINT")


async def oldest_wal_lsn(conn):
    name = (await asql(conn, "SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'"))[0][0]
    seg = (int(name[8:16], 16) << 32) // (16 << 20) + int(name[16:24], 16)
    return seg * (16 << 20)


async def test_retention(ctx):
    """f. the slot keeps what a subscriber needs; without it, resync."""
    cl = await cluster(ctx, 'retain')
    conn = await ctx.aconn()
    # without retention the WAL after the position goes with checkpoints
    lost = await marker(ctx, conn, 800000)
    await asql(conn, EMP % 800001)
    await churn_wal(conn)
    check(await oldest_wal_lsn(conn) > position(lost)[0],
          'the checkpoints did not remove the WAL (oldest %x)' % await oldest_wal_lsn(conn))
    sub = await ctx.sub(resume_path(lost))
    await sub.wait_until(lambda m: len(m) >= 1, 15, 'resume without retention')
    notice = json.loads(sub.msgs[0])
    check(notice['event'] == 'resync_required' and
          notice['data']['oldest'] > position(lost)[0],
          'without retention: %s' % short(sub.msgs[0]))

    await asql(conn, "ALTER SYSTEM SET pg_ws.history_retention = '1GB'",
               "SELECT pg_reload_conf()")
    await wait_slot(conn, True)
    kept = await marker(ctx, conn, 800010)
    await asql(conn, "BEGIN", EMP % 800011, EMP % 800012, "COMMIT")
    await churn_wal(conn)
    back = await ctx.sub(resume_path(kept))
    got = await back.expect(2, 20, 'resume with retention')
    check([emp_id(m) for m in got] == [800011, 800012],
          'with retention: %s' % [short(m, 80) for m in got])

    await asql(conn, "ALTER SYSTEM RESET pg_ws.history_retention", "SELECT pg_reload_conf()")
    await wait_slot(conn, False)
    return 'resync without the slot; resumed across 6 checkpoints with it; slot dropped after'


async def test_wal_off(ctx):
    """g. pg_ws.wal = off: no WAL message, positions from memory, and a new
    epoch after a restart."""
    cl = await cluster(ctx, 'memonly')
    conn = await ctx.aconn()
    await asql(conn, "SELECT pg_create_logical_replication_slot('h_g', 'test_decoding')")
    ref = await marker(ctx, conn, 900000)
    sub = await ctx.sub(resume_path(ref))
    await asql(conn, "BEGIN", EMP % 900001, EMP % 900002, "COMMIT")
    got = await sub.expect(2, 15, 'resume from memory')
    check([emp_id(m) for m in got] == [900001, 900002], 'resumed: %s' % got)
    check_positions([ref] + got, 'wal off')
    rows = await asql(conn, "SELECT count(*) FROM pg_logical_slot_get_changes('h_g', NULL, NULL)"
                            " WHERE data LIKE 'message:%'")
    await asql(conn, "SELECT pg_drop_replication_slot('h_g')")
    check(rows[0][0] == 0, '%d pg_ws messages in the WAL with pg_ws.wal = off' % rows[0][0])
    seq, epoch = position(ref)
    mark = cl.log_size()
    await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_ctl', '-D', cl.data, '-l', cl.log,
                            '-w', '-m', 'fast', 'restart')
    await cl.wait_listening(cl.wsport, 30, since=mark)
    conn = await ctx.aconn()
    after = await ctx.sub(resume_path(got[-1]))
    await after.wait_until(lambda m: len(m) >= 1, 15, 'resume after a restart')
    first = json.loads(after.msgs[0])
    check(first['event'] == 'resync_required' and first['epoch'] != epoch,
          'after a restart with pg_ws.wal = off: %s' % short(after.msgs[0]))
    return 'epoch %s, then %s after the restart' % (epoch, first['epoch'])


TESTS = [
    ('(a) seq is the WAL position of the event\'s pg_ws message plus its index',
     test_positions_are_wal, 60),
    ('(b) resuming from the WAL under 4 writers: every later event once, no seam',
     test_resume_from_wal, 120),
    ('(b) resuming from memory under 4 writers: every later event once, no seam',
     test_resume_from_memory, 120),
    ('(c) after a crash restart a resuming subscriber gets every committed event once',
     test_crash_restart, 120),
    ('(d) resync_required for another epoch, then live; resuming after it works',
     test_resync, 60),
    ('(e) malformed since/epoch: 400; empty values start live', test_bad_since, 60),
    ('(f) pg_ws.history_retention keeps the WAL with the slot pg_ws, and drops it',
     test_retention, 120),
    ('(g) pg_ws.wal = off: no WAL message, positions in memory, new epoch on restart',
     test_wal_off, 90),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
