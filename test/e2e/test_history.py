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
  d. resync_required when the epoch is not ours (or names a timeline this
     node never had), then the live stream (WAL that is gone: f); 1.3's
     epoch, without a timeline, still resumes;
  e. a since that is not a position, or without an epoch, is answered 400;
     empty values are a fresh start; a 1.1 configuration still loads;
  f. pg_ws.history_retention keeps the WAL with the slot "pg_ws": without
     it a checkpoint removes the WAL a subscriber needs (resync_required),
     with it the subscriber resumes; the slot goes when the setting does;
  g. pg_ws.wal = off writes no WAL message, still numbers the events, and
     a restart of the server changes the epoch.

Clusters (harness.Cluster), started on first use on free ports, all with
fsync and synchronous_commit on:

    logical   wal_level logical                                     (a)
    small     pg_ws.history_size 0: every resume reads the WAL      (b)
    big       the default history: resumes come from memory; the
              obsolete pg_ws.reconnect_grace set, as a 1.1
              configuration has it                                  (b, c, d, e)
    retain    small WAL (min_wal_size 32MB, max_wal_size 64MB), so
              that checkpoints remove it                            (f)
    memonly   pg_ws.wal off                                         (g)

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
                     check_positions, epoch_timeline, position, resume_path,
                     run_tap, short, sql, without_position)
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
    'memonly': dict(conf=['pg_ws.wal = off']),
    # asynchronous commits stay unflushed for up to 10 s (wal_writer_delay)
    'async': dict(conf=["wal_writer_delay = '10s'"]),
    'twodb': dict(database='db_a'),
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


PGWS_RMGR = 'custom155'     # pg_ws's WAL resource manager, as pg_waldump names it
WAL_PAGE = 8192
WAL_SEGMENT = 16 << 20


def lsn_int(text):
    hi, lo = text.split('/')
    return int(hi, 16) << 32 | int(lo, 16)


def wal_record_data(cl, lsn):
    """The main data of the WAL record at lsn, read from pg_wal's segment
    file byte by byte (record header, block headers, page headers of the
    pages it crosses): what the record really holds, not what any pg_ws
    code says it holds."""
    segno = lsn // WAL_SEGMENT
    name = '%08X%08X%08X' % (1, segno // 0x100, segno % 0x100)   # timeline 1
    path = os.path.join(cl.data, 'pg_wal', name)
    with open(path, 'rb') as f:
        seg = f.read()
    off = lsn % WAL_SEGMENT
    total = int.from_bytes(seg[off:off + 4], 'little')
    rec = b''
    while len(rec) < total:
        if off % WAL_PAGE == 0:
            off += 40 if off == 0 else 24          # long or short page header
        take = min(total - len(rec), WAL_PAGE - off % WAL_PAGE)
        rec += seg[off:off + take]
        off += take
    rmid = rec[17]
    pos = 24                                        # SizeOfXLogRecord
    while True:
        block = rec[pos]
        if block == 255:                            # XLR_BLOCK_ID_DATA_SHORT
            length = rec[pos + 1]
            pos += 2
            break
        if block == 254:                            # XLR_BLOCK_ID_DATA_LONG
            length = int.from_bytes(rec[pos + 1:pos + 5], 'little')
            pos += 5
            break
        if block == 253:                            # XLR_BLOCK_ID_ORIGIN
            pos += 3
        elif block == 252:                          # XLR_BLOCK_ID_TOPLEVEL_XID
            pos += 5
        else:
            raise Fail('the record at %X/%X has block references' % (lsn >> 32, lsn & 0xffffffff))
    return rmid, rec[pos:pos + length]


async def test_positions_are_wal(ctx):
    """a. seq = the LSN of the transaction's pg_ws record + index."""
    cl = await cluster(ctx, 'logical')
    conn = await ctx.aconn()
    start = (await asql(conn, "SELECT pg_current_wal_insert_lsn()::text"))[0][0]
    oid = (await asql(conn, "SELECT oid FROM pg_database WHERE datname = current_database()"))[0][0]
    sub = await ctx.sub()
    await asql(conn, EMP % 100)
    await asql(conn, "BEGIN", EMP % 101, EMP % 102, EMP % 103, "COMMIT")
    await asql(conn, "BEGIN", EMP % 104, "SAVEPOINT s", EMP % 105,
               "ROLLBACK TO s", EMP % 106, "COMMIT")
    got = await sub.expect(6, 15, 'subscriber')
    check([emp_id(m) for m in got] == [100, 101, 102, 103, 104, 106],
          'events: %s' % [emp_id(m) for m in got])
    check_positions(got, 'subscriber')
    end = (await asql(conn, "SELECT pg_current_wal_flush_lsn()::text"))[0][0]
    # where each record of pg_ws's resource manager starts, as pg_waldump reads it
    dump = await asyncio.to_thread(
        cl.as_postgres, PGBIN + '/pg_waldump', '-p', os.path.join(cl.data, 'pg_wal'),
        '-s', start, '-e', end, '-r', PGWS_RMGR)
    starts = [lsn_int(m.group(1)) for m in
              re.finditer(r'rmgr: %s .* lsn: ([0-9A-F]+/[0-9A-F]+),' % PGWS_RMGR, dump.stdout)]
    check(len(starts) == 3, 'expected 3 pg_ws records in the WAL, pg_waldump shows %d:\n%s'
          % (len(starts), short(dump.stdout, 600)))
    expected = []
    for lsn in starts:
        rmid, data = wal_record_data(cl, lsn)
        check(rmid == 155, 'the record at %x is of resource manager %d' % (lsn, rmid))
        database = int.from_bytes(data[0:4], 'little')
        nevents = int.from_bytes(data[4:8], 'little')
        payload = data[8:].decode()
        lines = payload.split('\n')
        check(database == oid and nevents == len(lines) - 1 and lines[-1] == '',
              'record at %x: database %d (expected %d), %d events, payload %s'
              % (lsn, database, oid, nevents, short(payload)))
        expected += [(lsn + i, line) for i, line in enumerate(lines[:-1])]
    got_pairs = [(position(m)[0], without_position(m)) for m in got]
    check(got_pairs == expected, 'the messages are not the WAL\'s events at their LSNs',
          *['  got %s, WAL %s' % (g[0], w[0]) for g, w in zip(got_pairs, expected)
            if g != w][:4])
    return 'seq of 6 events = LSN of 3 pg_ws records + index; payload = the same JSON Lines'


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


async def wait_for_wait(conn, pid, event, timeout=30):
    """Until backend pid waits on wait_event event."""
    deadline = time.monotonic() + timeout
    while not await asql(conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %d"
                               " AND wait_event = '%s'" % (pid, event)):
        check(time.monotonic() < deadline, 'backend %d does not wait on %s' % (pid, event))
        await asyncio.sleep(0.05)


async def test_crash_restart(ctx):
    """c. a crash restart loses nothing and replays nothing twice."""
    cl = await cluster(ctx, 'big')
    conn = await ctx.aconn()
    last_seen = await marker(ctx, conn, 500000)
    # committed while nobody listens, before the crash
    await asql(conn, "BEGIN", EMP % 500001, EMP % 500002, "COMMIT")
    await asql(conn, EMP % 500003)
    # a transaction cut short between its pg_ws record and its commit
    # record: after its pre-commit wrote the record it waits for the NOTIFY
    # lock, which a transaction waiting for a synchronous standby that never
    # comes holds; the crash ends it there
    await asql(conn, "CREATE TABLE IF NOT EXISTS holder (x int)",
               "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
               "SELECT pg_reload_conf()")
    try:
        # the checkpointer applies the setting a moment after the reload:
        # until a commit waits, try again
        for attempt in range(20):
            holder = await asyncio.to_thread(cl.connect, autocommit=False)
            holder_pid = (await asql(holder, "SELECT pg_backend_pid()"))[0][0]
            # (a commit waits for the standby only if it wrote WAL)
            await asql(holder, "INSERT INTO holder VALUES (1)", "NOTIFY pg_ws_test")
            holding = asyncio.ensure_future(asql(holder, "COMMIT"))
            try:
                await wait_for_wait(conn, holder_pid, 'SyncRep', timeout=2)
                break
            except Fail:
                check(holding.done() and attempt < 19,
                      'the COMMIT waits, but not for the synchronous standby')
        victim = await asyncio.to_thread(cl.connect, autocommit=False)
        pid = (await asql(victim, "SELECT pg_backend_pid()"))[0][0]
        await asql(victim, "SET synchronous_commit = local", EMP % 500900,
                   "SELECT pg_ws_send('cut_short')", "NOTIFY pg_ws_test")
        cut = asyncio.ensure_future(asql(victim, "COMMIT"))
        await wait_for_wait(conn, pid, 'object')
        mark = cl.log_size()
        os.kill(pid, 9)
        for task in (holding, cut):
            try:
                await task
            except psycopg2.Error:
                pass            # the crash ended both sessions
        deadline = time.monotonic() + 60
        while 'database system is ready to accept connections' not in '\n'.join(cl.log_since(mark)):
            check(time.monotonic() < deadline, 'the server did not restart after the crash')
            await asyncio.sleep(0.1)
    finally:
        conn = await ctx.aconn(options='-c synchronous_commit=local')
        await asql(conn, "ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()")
    # pg_reload_conf() only signals the postmaster: a session forked before
    # it has reloaded would still wait for the standby nobody runs
    deadline = time.monotonic() + 30
    while True:
        conn = await ctx.aconn()
        if (await asql(conn, "SHOW synchronous_standby_names"))[0][0] == '':
            break
        check(time.monotonic() < deadline, 'synchronous_standby_names was not reset')
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
    base, tli = epoch_timeline(epoch)
    check(tli == 1, 'the epoch %s names timeline 1' % epoch)
    cases = [('another epoch', '/ws/?since=%d&epoch=%s' % (seq, 'x' + epoch)),
             ('a timeline this node never had', '/ws/?since=%d&epoch=%s-7' % (seq, base)),
             ('a malformed timeline', '/ws/?since=%d&epoch=%s-01' % (seq, base))]
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
    # resuming after the notice's seq: what came after it, no other notice;
    # pg_ws 1.3's epoch, without the timeline, resumes as before
    again = await ctx.sub(resume_path(sub.msgs[0]))
    old = await ctx.sub('/ws/?since=%d&epoch=%s' % (seq, base))
    await asql(conn, EMP % 600009)
    got = await again.expect(2, 15, 'resumed after the notice')
    check([emp_id(m) for m in got] == [600003, 600009],
          'after the notice: %s' % [short(m, 60) for m in got])
    got = await old.expect(4, 15, "resumed with 1.3's epoch")
    check([emp_id(m) for m in got] == [600001, 600002, 600003, 600009],
          "after 1.3's epoch: %s" % [short(m, 60) for m in got])
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


async def resync_once_wal_gone(ctx, conn, ref, what):
    """Checkpoints remove the WAL from ref on (the events after it with
    it): a subscriber resuming after ref is told resync_required, with an
    oldest position above ref."""
    await churn_wal(conn)
    check(await oldest_wal_lsn(conn) > position(ref)[0],
          '%s: the checkpoints did not remove the WAL (oldest %x)'
          % (what, await oldest_wal_lsn(conn)))
    sub = await ctx.sub(resume_path(ref))
    await sub.wait_until(lambda m: len(m) >= 1, 15, 'resume ' + what)
    notice = json.loads(sub.msgs[0])
    check(notice['event'] == 'resync_required' and notice['data']['oldest'] > position(ref)[0],
          'resumed %s: %s' % (what, short(sub.msgs[0])))
    await sub.close()


async def test_retention(ctx):
    """f. the slot keeps what a subscriber needs; without it, resync."""
    cl = await cluster(ctx, 'retain')
    conn = await ctx.aconn()
    # without retention the WAL after the position goes with checkpoints
    lost = await marker(ctx, conn, 800000)
    await asql(conn, EMP % 800001)
    await resync_once_wal_gone(ctx, conn, lost, 'without retention')

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
    start = (await asql(conn, "SELECT pg_current_wal_insert_lsn()::text"))[0][0]
    ref = await marker(ctx, conn, 900000)
    sub = await ctx.sub(resume_path(ref))
    await asql(conn, "BEGIN", EMP % 900001, EMP % 900002, "COMMIT")
    got = await sub.expect(2, 15, 'resume from memory')
    check([emp_id(m) for m in got] == [900001, 900002], 'resumed: %s' % got)
    check_positions([ref] + got, 'wal off')
    end = (await asql(conn, "SELECT pg_current_wal_flush_lsn()::text"))[0][0]
    dump = await asyncio.to_thread(
        cl.as_postgres, PGBIN + '/pg_waldump', '-p', os.path.join(cl.data, 'pg_wal'),
        '-s', start, '-e', end, check=False)
    check('rmgr: Transaction' in dump.stdout and PGWS_RMGR not in dump.stdout,
          'pg_ws records in the WAL with pg_ws.wal = off (or no WAL read):\n%s'
          % short(dump.stdout, 600))
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


async def stats_row(conn, cols):
    return (await asql(conn, "SELECT %s FROM pg_ws_stats" % cols))[0]


async def wait_stats(conn, cols, pred, timeout, what):
    """pg_ws_stats' cols until pred(row) (the worker publishes once a
    second)."""
    deadline = time.monotonic() + timeout
    while True:
        row = await stats_row(conn, cols)
        if pred(row):
            return row
        check(time.monotonic() < deadline, '%s: pg_ws_stats %s = %s' % (what, cols, row))
        await asyncio.sleep(0.2)


FORGERIES = [
    "pg_logical_emit_message(true, 'pg_ws', '{\"event\": \"client_delete\", \"data\": {\"id\": 1}}' || E'\\n')",
    "pg_logical_emit_message(true, 'pg_ws', '{\"event\": \"resync_required\", \"data\": "
    "{\"since\": 1, \"oldest\": 1, \"epoch\": \"x\"}}' || E'\\n')",
    "pg_logical_emit_message(true, 'pg_ws', E'not json\\n')",
    "pg_logical_emit_message(true, 'pg_ws', '\\xff7b226576656e74223a20226a756e6b227d0a'::bytea)",
    "pg_logical_emit_message(false, 'pg_ws', '{\"event\": \"employee_attendance\", \"data\": {}}' || E'\\n')",
]


async def test_forged_messages(ctx):
    """h. a role that may only log in writes logical messages with pg_ws's
    old prefix between real events: resuming from the WAL gets the real
    events only, byte for byte the live ones, and is not closed; the
    messages are counted once in pg_ws_stats and logged."""
    cl = await cluster(ctx, 'small')
    conn = await ctx.aconn()
    await asql(conn, "DROP ROLE IF EXISTS forger", "CREATE ROLE forger LOGIN")
    forger = await asyncio.to_thread(
        psycopg2.connect, host=cl.dir, port=cl.pgport, user='forger', dbname='postgres')
    ctx.conns.append(forger)
    forger.autocommit = True
    before = (await stats_row(conn, "COALESCE((to_jsonb(pg_ws_stats)->'ignored_records'"
                                    "->>'logical_message')::int, 0)"))[0]
    first = await marker(ctx, conn, 1000000)
    live = await ctx.sub()
    mark = cl.log_size()
    await asql(forger, "BEGIN", *["SELECT %s" % f for f in FORGERIES[:2]], "COMMIT")
    await asql(conn, EMP % 1000001)
    await asql(forger, *["SELECT %s" % f for f in FORGERIES[2:]])
    await asql(conn, EMP % 1000002)
    got = await live.expect(2, 15, 'live')
    # with nobody left to send to, the worker's history (none: history_size
    # is 0) ends after the second event, so resuming reads all of it from
    # the WAL, forgeries included
    await live.close()
    deadline = time.monotonic() + 10
    while (await asql(conn, "SELECT count(*) FROM pg_ws_connections"))[0][0] > 0:
        check(time.monotonic() < deadline, 'the worker still has the live subscriber')
        await asyncio.sleep(0.05)
    resumed = []
    for k in range(2):
        sub = await ctx.sub(resume_path(first))
        resumed.append(sub)
        back = await sub.expect(2, 15, 'resumed from the WAL (%d)' % k, settle=0.5)
        check(back == got, 'resumed %d: %s, live %s' % (k, [short(m, 80) for m in back],
                                                      [short(m, 80) for m in got]))
    await asql(conn, EMP % 1000003)
    for k, sub in enumerate(resumed):
        more = await sub.expect(3, 15, 'resumed (%d), still open' % k)
        check(emp_id(more[2]) == 1000003 and sub.close_info is None,
              'resumed %d after the forgeries: %s, closed %s'
              % (k, short(more[2]), sub.close_info))
    row = await wait_stats(conn, "(ignored_records->>'logical_message')::int",
                           lambda r: r[0] >= before + len(FORGERIES), 10, 'counted')
    await asyncio.sleep(1.5)    # another second's publication: counted once
    row = await stats_row(conn, "(ignored_records->>'logical_message')::int")
    check(row[0] == before + len(FORGERIES),
          'ignored_records.logical_message = %d after two resumes, expected %d'
          % (row[0], before + len(FORGERIES)))
    logged = [line for line in cl.log_since(mark) if 'pg_ws ignored the WAL record at' in line]
    check(len(logged) == len(FORGERIES), 'log lines about ignored records: %s' % logged[:6])
    return '%d forged messages ignored, counted once and logged; resumes got the 2 real events' % (
        len(FORGERIES))


async def test_async_commit(ctx):
    """i. synchronous_commit = off: an event is sent only once its commit is
    flushed, so a crash never takes back an event a subscriber saw and
    positions never go backwards."""
    cl = await cluster(ctx, 'async')
    conn = await ctx.aconn()
    last = await marker(ctx, conn, 1100000)
    live = await ctx.sub()
    lazy = await ctx.aconn(options='-c synchronous_commit=off')
    unflushed = None
    for attempt in range(5):
        n = 1100001 + attempt
        # where the WAL ended before the commit: its commit record ends past
        # it, so while the WAL is written (and so flushed) to less, the
        # commit is not even written (the end of the WAL after the commit
        # may hold others' records; the WAL writer writes and flushes each
        # page a commit fills at once)
        before = (await asql(lazy, "BEGIN", EMP % n,
                             "SELECT pg_current_wal_insert_lsn()::text"))[0][0]
        await asql(lazy, "COMMIT")
        unwritten_sql = "SELECT '%s'::pg_lsn > pg_current_wal_lsn()" % before
        if not (await asql(conn, unwritten_sql))[0][0]:
            continue            # something wrote it already: try again
        await asyncio.sleep(1.5)
        if (await asql(conn, unwritten_sql))[0][0]:
            check(all(emp_id(m) != n for m in live.msgs),
                  'an event whose commit was not flushed was sent: %s' % short(live.msgs[-1:]))
            unflushed = n
            break
    check(unflushed is not None, 'the WAL writer wrote every try within 1.5 s')
    # a crash takes back what was not written by then: the unwritten try,
    # unless the WAL writer wrote it in the moment since
    mark = cl.log_size()
    await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_ctl', '-D', cl.data, '-m', 'immediate',
                            '-w', 'stop')
    await asyncio.wait_for(live.closed.wait(), 15)
    sent = [emp_id(m) for m in live.msgs]
    await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_ctl', '-D', cl.data, '-l', cl.log,
                            '-w', '-t', '60', 'start')
    await cl.wait_listening(cl.wsport, 30, since=mark)
    conn = await ctx.aconn()
    kept = {r[0] for r in await asql(conn, "SELECT id FROM employee"
                                           " WHERE id BETWEEN 1100001 AND 1100005")}
    # the promise: every event a subscriber saw survived the crash
    check(set(sent) <= kept and sent == sorted(sent),
          'the subscriber was sent %s; the crash kept %s' % (sent, sorted(kept)))
    taken_back = unflushed not in kept
    # resumed after the last event seen: what the crash kept that nobody
    # saw, then what comes next, at higher positions
    seen = live.msgs[-1] if live.msgs else last
    back = await ctx.sub(resume_path(seen))
    await asql(conn, EMP % 1100010)
    want = sorted(kept - set(sent)) + [1100010]
    got = await back.expect(len(want), 15, 'resumed after the crash', settle=0.5)
    check([emp_id(m) for m in got] == want, 'after the crash: %s, expected %s'
          % ([short(m, 80) for m in got], want))
    check(position(got[0])[0] > position(seen)[0], 'positions went backwards: %s after %s'
          % (position(got[0])[0], position(seen)[0]))
    # and an asynchronous commit's event goes out once something flushes it
    lazy = await ctx.aconn(options='-c synchronous_commit=off')
    await asql(lazy, EMP % 1100011)
    await asql(conn, "CREATE TABLE IF NOT EXISTS flusher (x int)", "INSERT INTO flusher VALUES (1)")
    got = await back.expect(len(want) + 1, 15, 'the asynchronous commit, once flushed')
    check(emp_id(got[-1]) == 1100011, 'after the flush: %s' % short(got[-1]))
    return 'commit %d unflushed, %s; every event sent survived the crash; resumed with higher' \
        ' positions' % (unflushed, 'not sent and gone after the crash' if taken_back
                        else 'written just before the crash')


async def first_message(ctx, path, what):
    sub = await ctx.sub(path)
    await sub.wait_until(lambda m: len(m) >= 1, 15, what)
    return sub, json.loads(sub.msgs[0])


async def test_future_since(ctx):
    """j. a since past the end of this primary's history (the flushed WAL)
    gets resync_required at once, never silence."""
    await cluster(ctx, 'big')
    conn = await ctx.aconn()
    ref = await marker(ctx, conn, 1200000)
    seq, epoch = position(ref)
    flushed = "SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn"
    # the flushed end itself is past the history only while no WAL is
    # written meanwhile (autovacuum, a standby snapshot): the flushed end
    # must be the same once the subscriber is in, or the try is no test
    for attempt in range(20):
        flush = int((await asql(conn, flushed))[0][0])
        sub = await ctx.sub('/ws/?since=%d&epoch=%s' % (flush, epoch))
        if int((await asql(conn, flushed))[0][0]) == flush:
            break
        await sub.close()
    else:
        raise Fail('the flushed end of the WAL moved during each of 20 subscriptions')
    await sub.wait_until(lambda m: len(m) >= 1, 15, 'the flushed end of the WAL')
    first = json.loads(sub.msgs[0])
    check(first['event'] == 'resync_required' and first['data']['since'] == flush and
          first['seq'] < flush, 'the flushed end of the WAL: first message %s' % short(sub.msgs[0]))
    notes = ['the flushed end of the WAL']
    for what, since in (('a year of WAL ahead', flush + (1 << 40)),):
        sub, first = await first_message(ctx, '/ws/?since=%d&epoch=%s' % (since, epoch), what)
        check(first['event'] == 'resync_required' and first['data']['since'] == since and
              first['seq'] < since, '%s: first message %s' % (what, short(sub.msgs[0])))
        notes.append(what)
    # a position that is ours (after the newest event, below the end) resumes
    sub = await ctx.sub(resume_path(ref))
    await asql(conn, EMP % 1200001)
    got = await sub.expect(1, 15, 'resumed after the newest event')
    check(emp_id(got[0]) == 1200001, 'resumed: %s' % short(got[0]))
    return 'resync_required for %s; the newest event\'s position resumes' % ' and '.join(notes)


async def test_oldest_is_resumable(ctx):
    """k. the oldest position pg_ws_stats and resync_required report can be
    resumed after, and so can the one above it; the one below cannot."""
    await cluster(ctx, 'retain')
    conn = await ctx.aconn()
    await churn_wal(conn)
    await asql(conn, "BEGIN", EMP % 1300001, EMP % 1300002, "COMMIT")
    ref = await marker(ctx, conn, 1300003)
    seq, epoch = position(ref)
    # once the worker has published what it has now
    first = (await wait_stats(conn, 'history_first_position, history_last_position',
                              lambda r: r[1] is not None and r[1] >= seq, 10,
                              'history_last_position'))[0]
    oldest = await oldest_wal_lsn(conn)
    check(oldest <= first < seq and first - oldest < 16 << 20,
          'history_first_position %d is not in the oldest segment (%d) before the events (%d)'
          % (first, oldest, seq))
    # what resync_required says is the same
    sub, notice = await first_message(ctx, '/ws/?since=1&epoch=%s' % epoch, 'since=1')
    check(notice['event'] == 'resync_required' and notice['data']['oldest'] == first,
          'resync_required from 1: %s, pg_ws_stats says %d' % (short(sub.msgs[0]), first))
    for at in (first, first + 1):
        sub = await ctx.sub('/ws/?since=%d&epoch=%s' % (at, epoch))
        await sub.wait_until(lambda m: any(emp_id(x) == 1300003 for x in m
                                           if '"employee_create"' in x) or
                             any('resync_required' in x for x in m), 15,
                             'resume after %d' % at)
        check(not any('resync_required' in x for x in sub.msgs),
              'resuming after %d (history_first_position%s) got %s'
              % (at, '' if at == first else ' + 1', short(sub.msgs[0])))
        ids = [emp_id(x) for x in sub.msgs]
        check(ids[-3:] == [1300001, 1300002, 1300003],
              'resuming after %d: %s' % (at, ids[-6:]))
    sub, below = await first_message(ctx, '/ws/?since=%d&epoch=%s' % (first - 1, epoch),
                                     'below the oldest')
    check(below['event'] == 'resync_required' and below['data']['oldest'] == first,
          'resuming after %d (one below): %s' % (first - 1, short(sub.msgs[0])))
    return 'oldest %d (segment at %d): resumable, +1 too, -1 resync_required' % (first, oldest)


async def test_database_change(ctx):
    """l. a reload that points pg_ws.database at another database, and a
    database dropped and made again under the name, change the epoch: a
    subscriber resuming across either is told resync_required."""
    cl = await cluster(ctx, 'twodb')
    a = await ctx.aconn()
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, 'CREATE DATABASE db_b')
    b = await ctx.aconn(dbname='db_b')
    await asql(b, 'SET client_min_messages = error', 'CREATE EXTENSION pg_ws')
    ref = await marker(ctx, a, 1400000)
    seq, epoch_a = position(ref)
    live = await ctx.sub()
    await asql(b, EMP % 1400001)                    # not broadcast
    await asql(a, EMP % 1400002)
    got = await live.expect(1, 15, 'db_a live')
    check(emp_id(got[0]) == 1400002, 'db_a: %s' % short(got[0]))
    # a transaction of db_a that commits after the change: not db_b's events
    late = await ctx.aconn(autocommit=False)
    await asql(late, EMP % 1400009)
    mark = cl.log_size()
    await asql(admin, "ALTER SYSTEM SET pg_ws.database = 'db_b'", "SELECT pg_reload_conf()")
    await asyncio.wait_for(live.closed.wait(), 15)
    check(live.ws.close_code == 1001, 'closed with %s' % live.ws.close_code)
    await cl.wait_listening(cl.wsport, 30, since=mark)
    check(any('pg_ws worker restarting: pg_ws.database "db_b"' in line
              for line in cl.log_since(mark)), 'no log line about the change')
    sub, first = await first_message(ctx, resume_path(got[0]), 'resumed across the change')
    epoch_b = first['epoch']
    check(first['event'] == 'resync_required' and epoch_b != epoch_a,
          'after the change: %s' % short(sub.msgs[0]))
    await asql(late, "COMMIT")
    await asql(b, EMP % 1400003)
    more = await sub.expect(2, 15, 'db_b live')
    check(len(more) == 2 and emp_id(more[1]) == 1400003 and position(more[1])[1] == epoch_b,
          'db_b: %s' % [short(m, 80) for m in more[1:]])
    await wait_stats(b, "(ignored_records->>'other_database')::int", lambda r: r[0] == 1,
                     10, "db_a's late transaction")
    # db_b dropped and made again: another OID, another epoch
    b.close()
    mark = cl.log_size()
    await asql(admin, 'DROP DATABASE db_b WITH (FORCE)', 'CREATE DATABASE db_b')
    b = await ctx.aconn(dbname='db_b')
    await asql(b, 'SET client_min_messages = error', 'CREATE EXTENSION pg_ws')
    await asql(b, EMP % 1400004)
    await cl.wait_listening(cl.wsport, 30, since=mark)
    sub2, again = await first_message(ctx, resume_path(more[1]), 'resumed across the new db_b')
    check(again['event'] == 'resync_required' and again['epoch'] not in (epoch_a, epoch_b),
          'after db_b was made again: %s' % short(sub2.msgs[0]))
    await asql(admin, "ALTER SYSTEM RESET pg_ws.database", "SELECT pg_reload_conf()")
    return 'epochs %s, %s, %s' % (epoch_a, epoch_b, again['epoch'])


async def slot_invalidations(conn):
    return (await asql(conn, "SELECT history_slot_invalidations FROM pg_ws_stats"))[0][0]


async def wait_invalidated_and_made_anew(ctx, cl, conn, before, mark, cause):
    """The worker saw the slot invalidated, counted and logged it with its
    cause, and the slot pg_ws is there again, holding WAL."""
    deadline = time.monotonic() + 60
    while True:
        n = await slot_invalidations(conn)
        fresh = await asql(conn, "SELECT wal_status FROM pg_replication_slots"
                                 " WHERE slot_name = 'pg_ws' AND restart_lsn IS NOT NULL"
                                 " AND wal_status IN ('reserved', 'extended')")
        log = '\n'.join(cl.log_since(mark))
        if n > before and fresh and 'was invalidated (%s)' % cause in log:
            return n
        check(time.monotonic() < deadline,
              'after 60 s: history_slot_invalidations %d (was %d), slot %s, log: %s'
              % (n, before, await asql(conn, "SELECT * FROM pg_replication_slots"),
                 short(log[-600:], 600)))
        await asyncio.sleep(0.3)


async def test_slot_invalidated(ctx):
    """m. PostgreSQL invalidates the slot pg_ws: the worker says so (log,
    pg_ws_stats), drops it and makes it anew, and a subscriber resuming from
    before is told resync_required; on 18 also when the slot is invalidated
    for being idle, which keeps its restart_lsn."""
    cl = await cluster(ctx, 'retain')
    conn = await ctx.aconn()
    version = int((await asql(conn, "SHOW server_version_num"))[0][0])
    before = await slot_invalidations(conn)
    await asql(conn, "ALTER SYSTEM SET pg_ws.history_retention = '1GB'",
               "SELECT pg_reload_conf()")
    await wait_slot(conn, True)
    kept = await marker(ctx, conn, 1500000)
    # an event after it, which the slot was to keep for a resume from kept
    # (resuming from the newest event needs no WAL at all)
    await asql(conn, EMP % 1500001)
    mark = cl.log_size()
    # the slot may keep at most 1 MB: the checkpoints take its WAL
    await asql(conn, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
               "SELECT pg_reload_conf()")
    await churn_wal(conn)
    await asql(conn, "ALTER SYSTEM RESET max_slot_wal_keep_size", "SELECT pg_reload_conf()")
    after = await wait_invalidated_and_made_anew(ctx, cl, conn, before, mark, 'wal_removed')
    # what the new slot does not hold goes with the next checkpoints
    await resync_once_wal_gone(ctx, conn, kept, 'across the invalidation')
    what = 'wal_removed: counted %d -> %d, logged, made anew, resync_required' % (before, after)

    if version >= 180000:
        # idle_replication_slot_timeout invalidates at a checkpoint a slot
        # nobody acquired for that long, and leaves its restart_lsn
        mark = cl.log_size()
        await asql(conn, "ALTER SYSTEM SET idle_replication_slot_timeout = '1s'",
                   "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        while await slot_invalidations(conn) == after:
            check(time.monotonic() < deadline, 'the idle slot was not invalidated in 60 s')
            await asyncio.sleep(1.5)
            await asql(conn, "CHECKPOINT")
        await asql(conn, "ALTER SYSTEM RESET idle_replication_slot_timeout",
                   "SELECT pg_reload_conf()")
        again = await wait_invalidated_and_made_anew(ctx, cl, conn, after, mark, 'idle_timeout')
        what += '; idle_timeout: counted %d -> %d, logged, made anew' % (after, again)
    else:
        what += '; no idle_replication_slot_timeout before 18'

    await asql(conn, "ALTER SYSTEM RESET pg_ws.history_retention", "SELECT pg_reload_conf()")
    await wait_slot(conn, False)
    return what


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
    ('(g) pg_ws.wal = off: no WAL record, positions in memory, new epoch on restart',
     test_wal_off, 90),
    ('(h) logical messages with prefix pg_ws by a LOGIN-only role: never sent, counted once',
     test_forged_messages, 90),
    ('(i) synchronous_commit = off: sent only once flushed; a crash takes back nothing sent',
     test_async_commit, 120),
    ('(j) a since past the flushed end of the WAL gets resync_required', test_future_since, 60),
    ('(k) history_first_position and resync_required\'s oldest are resumable; below is not',
     test_oldest_is_resumable, 90),
    ('(l) pg_ws.database changed or made again: new epoch, resync_required across it',
     test_database_change, 90),
    ('(m) an invalidated slot pg_ws is logged, counted and made anew; resume gets resync_required',
     test_slot_invalidated, 150),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
