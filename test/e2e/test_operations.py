#!/usr/bin/python3
"""End-to-end tests of how pg_ws behaves in operation.

Where test_e2e.py checks what subscribers are sent, this file checks pg_ws
as an operator meets it: installing it without shared_preload_libraries,
a full event queue (bounded wait, a clear error, no committed event lost),
transactions too big for the queue, moving the listener with a reload,
pg_ws.max_connections, DROP DATABASE while the worker runs, a pg_dump
round trip of the four tables, a subscriber too slow to keep up, and the
worker's row in pg_stat_activity.

Each group of tests gets its own throw-away cluster (harness.Cluster),
started on first use on free ports and listening on 127.0.0.1 only:

    plain   without shared_preload_libraries                     (a)
    queue   pg_ws.queue_size 64kB, pg_ws.queue_full_timeout 1s,
            synchronous_standby_names naming a standby that never
            connects, so that a synchronous commit stays in progress (b, c)
    reload  defaults                                              (d, n)
    conns   pg_ws.max_connections 2                               (e, f, i)
    appdb   pg_ws.database 'appdb', pg_ws.queue_size 256kB,
            pg_ws.queue_full_timeout 2s                           (g, h)

Every cluster runs with fsync and
synchronous_commit on (harness default), as production does; the queue
tests set synchronous_commit per session where they need a commit to wait
for a standby or not.

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_operations.py

Needs Debian's python3-websockets (10.4) and python3-psycopg2, and pg_ws
installed (make && make install).  Output is TAP; the exit status is 0
only if every test passed.
"""

import asyncio
import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time

import psycopg2
import psycopg2.errors
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, PGBIN, Cluster, Ctx, Fail, asql, check,  # noqa: E402
                     compare_idents, free_port, ident, resume_path, run_tap,
                     process_rss, run_threads, short, worker_row)
import rawws  # noqa: E402

WATCHDOG_SECONDS = 400          # the whole run, setup and clean-up included

CLUSTERS = {
    'plain': dict(preload=False),
    # a full queue behind a commit that waits for a standby: without the
    # WAL the worker parks only four queues' worth out of it (queue.c),
    # and past that writers wait for room
    'queue': dict(conf=["pg_ws.queue_size = '64kB'",
                        "pg_ws.queue_full_timeout = '1s'",
                        "pg_ws.wal = off",
                        "synchronous_standby_names = 'nonexistent'",
                        # durable locally; only the session that must wait
                        # for the standby that never comes sets it to on
                        "synchronous_commit = local"]),
    'reload': dict(),
    'conns': dict(conf=['pg_ws.max_connections = 2']),
    # history large enough that resuming needs no WAL
    'inflight': dict(conf=["pg_ws.queue_size = '64MB'",
                           "pg_ws.history_size = '64MB'"]),
    'doomed': dict(),
    'keepup': dict(conf=["pg_ws.queue_size = '2MB'",
                         "pg_ws.queue_full_timeout = '10s'"]),
    'partial': dict(conf=["pg_ws.queue_size = '64MB'",
                          "pg_ws.history_size = '64MB'",
                          "pg_ws.max_subscriber_lag = '64MB'",
                          'pg_ws.ping_interval = 0']),
    'appdb': dict(conf=["pg_ws.queue_size = '256kB'",
                        "pg_ws.queue_full_timeout = '2s'"],
                  database='appdb'),
}



_kinds = ClusterKinds(lambda kind: Cluster(name=kind, **CLUSTERS[kind]))


async def cluster(ctx, kind):
    """The cluster of this kind, started on first use; ctx's cluster."""
    return await _kinds.get(ctx, kind)


def emp(i, first='e', last='t'):
    """An INSERT of one employee row (one employee_create event)."""
    return ("INSERT INTO employee (id, first_name, last_name) VALUES (%s, %s, %s)",
            (i, first, last))


def pg_error(e):
    """A psycopg2 error as one line: SQLSTATE, message, detail, hint."""
    d = e.diag
    return 'SQLSTATE %s: %s | detail: %s | hint: %s' % (
        e.pgcode, d.message_primary, d.message_detail, d.message_hint)


async def wait_log(cl, since, text, timeout):
    """The server log lines (from byte since on) containing text, waiting
    up to timeout seconds for the first."""
    deadline = time.monotonic() + timeout
    while True:
        hits = [line for line in cl.log_since(since) if text in line]
        if hits or time.monotonic() > deadline:
            return hits
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------ tests

async def test_no_preload(ctx):
    """a. CREATE EXTENSION without shared_preload_libraries: 55000."""
    await cluster(ctx, 'plain')
    conn = await ctx.aconn()
    try:
        await asql(conn, "CREATE EXTENSION pg_ws")
        raise Fail('CREATE EXTENSION pg_ws succeeded without shared_preload_libraries')
    except psycopg2.Error as e:
        err = e
    check(err.pgcode == '55000', 'expected SQLSTATE 55000, got ' + pg_error(err))
    check(err.diag.message_primary == 'pg_ws must be loaded via shared_preload_libraries',
          'unexpected message: ' + pg_error(err))
    hint = err.diag.message_hint or ''
    check('shared_preload_libraries' in hint and 'restart' in hint,
          'the hint does not say to add pg_ws to shared_preload_libraries and'
          ' restart: ' + pg_error(err))
    rows = await asql(conn, "SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'pg_ws'),"
                            " to_regclass('client') IS NULL,"
                            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_ws')")
    check(rows == [(0, True, 0)],
          'after the failed CREATE EXTENSION: (pg_ws extensions, no client table,'
          ' pg_ws workers) = %s, expected (0, True, 0)' % (rows,))


async def test_queue_full(ctx):
    """b. a full queue: bounded wait, a clear error, nothing committed lost."""
    cl = await cluster(ctx, 'queue')
    sub = await ctx.sub()
    mon = await ctx.aconn()
    await asql(mon, "SET synchronous_commit = local")
    # A: a synchronous commit that waits for a standby that never comes
    a = await ctx.aconn(autocommit=False)
    a_pid = a.get_backend_pid()
    await asql(a, "SET synchronous_commit = on", emp(1, 'A', 'sync'))
    a_result = {}

    def a_commit():
        t = time.monotonic()
        try:
            a.commit()
            a_result['ok'] = time.monotonic() - t
        except Exception as e:
            a_result['error'] = e

    a_thread = threading.Thread(target=a_commit, daemon=True)
    a_thread.start()
    deadline = time.monotonic() + 10
    while True:
        rows = await asql(mon, ("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                (a_pid,)))
        if rows == [('SyncRep',)]:
            break
        check(a_thread.is_alive(),
              'A committed without waiting for the standby (%s): the test set-up'
              ' no longer works' % (a_result,))
        check(time.monotonic() < deadline,
              'A is not waiting for synchronous replication after 10 s: %s' % (rows,))
        await asyncio.sleep(0.05)

    # B: transactions of two ~2 kB events each until one finds no room
    bs = []
    for _ in range(2):
        c = await ctx.aconn(autocommit=False)
        await asql(c, "SET synchronous_commit = local")
        await asyncio.to_thread(c.commit)
        bs.append(c)
    big = 'b' * 2000
    committed, commit_times = [], []
    failure = None
    for k in range(100):
        c = bs[k % 2]
        ids = [100 + 2 * k, 101 + 2 * k]
        await asql(c, ("INSERT INTO employee (id, first_name, last_name)"
                       " VALUES (%s, %s, 'b'), (%s, %s, 'b')", (ids[0], big, ids[1], big)))
        t = time.monotonic()
        try:
            await asyncio.to_thread(c.commit)
        except psycopg2.Error as e:
            failure = (e, time.monotonic() - t, ids)
            await asyncio.to_thread(c.rollback)
            break
        commit_times.append(time.monotonic() - t)
        committed += ids
    check(failure is not None,
          'no COMMIT failed after %d transactions of ~4 kB in a 64 kB queue' % (len(committed) // 2))
    err, took, failed_ids = failure
    summary = ('%d transactions committed (slowest %.3f s), then COMMIT failed after %.2f s'
               % (len(committed) // 2, max(commit_times, default=0), took))
    check(err.pgcode == '54000', summary, 'expected SQLSTATE 54000, got ' + pg_error(err))
    check(err.diag.message_primary == 'pg_ws event queue is full', summary,
          'unexpected message: ' + pg_error(err))
    check('pg_ws.queue_size' in (err.diag.message_hint or ''), summary,
          'the hint does not mention pg_ws.queue_size: ' + pg_error(err))
    check(took >= 0.9, summary, 'the failing COMMIT did not wait out'
          ' pg_ws.queue_full_timeout (1 s)')
    check(took < 10, summary, 'the wait was not bounded by pg_ws.queue_full_timeout (1 s)')
    check(len(committed) >= 20, summary, 'the queue was full after only %d events'
          % len(committed))
    rows = await asql(mon, ("SELECT id FROM employee WHERE id = ANY(%s)", (failed_ids,)))
    check(rows == [], summary, 'rows of the failed transaction are in the table: %s' % rows)
    check(sub.msgs == [], summary, 'the subscriber was sent events while A was in progress:',
          *sub.last_lines())

    # cancel A's wait: it commits locally, and the worker can go on
    rows = await asql(mon, ("SELECT pg_cancel_backend(%s)", (a_pid,)))
    check(rows == [(True,)], 'pg_cancel_backend(A) returned %s' % rows)
    await asyncio.to_thread(a_thread.join, 10)
    check('ok' in a_result, summary, "A's COMMIT did not complete after the cancel: %s"
          % (a_result or 'still waiting'))
    notices = ''.join(a.notices)
    check('canceling wait for synchronous replication' in notices, summary,
          "A's COMMIT did not warn about the canceled wait; notices: %s" % short(notices))
    await asql(mon, emp(9999, 'marker', 'b'))
    rows = await asql(mon, "SELECT id FROM employee ORDER BY id")
    check([r[0] for r in rows] == sorted([1, 9999] + committed), summary,
          'employee ids %s, expected A, the committed B rows and the marker'
          % short([r[0] for r in rows]))
    # the subscriber connected before all this: A's event, then every
    # committed B event in commit order, then the marker
    expected = ([('employee_create', 1)] + [('employee_create', i) for i in committed]
                + [('employee_create', 9999)])
    try:
        await sub.wait_until(lambda m: any('"id": 9999' in x for x in m), 15, 'marker 9999')
    except Fail as e:
        raise Fail(summary, str(e), *await wait_log(cl, 0, 'pg_ws is disconnecting', 0))
    await asyncio.sleep(0.3)
    compare_idents(sub.msgs, expected, 'subscriber')
    return summary


async def test_never_fits(ctx):
    """c. events that could never fit fail at once, not after the timeout."""
    await cluster(ctx, 'queue')
    sub = await ctx.sub()
    conn = await ctx.aconn(autocommit=False)
    # a long timeout, so that "at once" and "after the timeout" differ
    await asql(conn, "SET synchronous_commit = local",
               "SET pg_ws.queue_full_timeout = '30s'")
    await asyncio.to_thread(conn.commit)
    cases = [
        ('100 events of ~1 kB in one statement',
         "INSERT INTO employee (id, first_name, last_name)"
         " SELECT g, repeat('c', 1000), 'c' FROM generate_series(2000, 2099) g"),
        ('one event of ~70 kB',
         "INSERT INTO employee (id, first_name, last_name) VALUES (2100, repeat('c', 70000), 'c')"),
        ('many statements of ~4 kB each',
         "DO $$ BEGIN FOR i IN 2200..2230 LOOP INSERT INTO employee (id, first_name, last_name)"
         " VALUES (i, repeat('c', 4000), 'c'); END LOOP; END $$"),
    ]
    notes = []
    for what, stmt in cases:
        t = time.monotonic()
        try:
            await asql(conn, stmt)
            await asyncio.to_thread(conn.commit)
            raise Fail('%s: the transaction committed in a 64 kB queue' % what)
        except psycopg2.Error as e:
            err = e
        took = time.monotonic() - t
        await asyncio.to_thread(conn.rollback)
        check(err.pgcode == '54000', '%s: expected SQLSTATE 54000, got %s' % (what, pg_error(err)))
        check('do not fit' in (err.diag.message_primary or ''),
              "%s: the message does not say 'do not fit': %s" % (what, pg_error(err)))
        check(took < 3, '%s: failed only after %.1f s (pg_ws.queue_full_timeout is 30 s)'
              % (what, took))
        notes.append('%s: %.3f s' % (what, took))
    rows = await asql(conn, "SELECT count(*) FROM employee WHERE id BETWEEN 2000 AND 2299")
    await asyncio.to_thread(conn.commit)
    check(rows == [(0,)], 'rows of the failed transactions are in the table: %s' % rows)
    # the queue still works, and nothing of the failed transactions was sent
    await asql(conn, emp(2999, 'marker', 'c'))
    await asyncio.to_thread(conn.commit)
    await sub.wait_until(lambda m: any('"id": 2999' in x for x in m), 15, 'marker 2999')
    await asyncio.sleep(0.3)
    compare_idents(sub.msgs, [('employee_create', 2999)], 'subscriber')
    return '; '.join(notes)


async def test_reload_port(ctx):
    """d. a reload moves the listener; connected subscribers stay."""
    cl = await cluster(ctx, 'reload')
    old_port = cl.wsport
    old = await ctx.sub()
    conn = await ctx.aconn()
    await asql(conn, emp(400))
    await old.expect(1, 10, 'event before the reload', settle=0)
    new_port = free_port()
    while new_port in (old_port, cl.pgport):
        new_port = free_port()
    mark = cl.log_size()
    await asql(conn, "ALTER SYSTEM SET pg_ws.port = %d" % new_port)
    await asql(conn, "SELECT pg_reload_conf()")
    await cl.wait_listening(new_port, 15, since=mark)
    new = await ctx.sub(url='ws://127.0.0.1:%d' % new_port)

    def refuses(port):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True

    deadline = time.monotonic() + 3
    while not await asyncio.to_thread(refuses, old_port):
        check(time.monotonic() < deadline,
              'the old port %d still accepts connections 3 s after the worker'
              ' listens on %d' % (old_port, new_port))
        await asyncio.sleep(0.1)
    check(not old.closed.is_set(),
          'the subscriber connected before the reload was disconnected: %s' % old.close_info)
    await asql(conn, emp(401))
    await asql(conn, "BEGIN", emp(402), emp(403), "COMMIT")
    after = [('employee_create', i) for i in (401, 402, 403)]
    got_new = await new.expect(3, 10, 'subscriber on the new port')
    got_old = await old.expect(4, 10, 'subscriber connected before the reload')
    compare_idents(got_old, [('employee_create', 400)] + after, 'old subscriber')
    compare_idents(got_new, after, 'new subscriber')
    moved = [line for line in cl.log_since(mark) if 'pg_ws is moving its listening' in line]
    return 'port %d -> %d; %s' % (old_port, new_port,
                                   moved[0].split(' LOG:  ')[-1] if moved else '')


async def test_max_connections(ctx):
    """e. pg_ws.max_connections = 2: the third is refused with 503."""
    cl = await cluster(ctx, 'conns')
    conn = await ctx.aconn()
    s1, s2 = await ctx.sub(), await ctx.sub()
    mark = cl.log_size()
    try:
        await ctx.sub()
        raise Fail('a third concurrent subscriber was accepted with pg_ws.max_connections = 2')
    except websockets.InvalidStatusCode as e:
        check(e.status_code == 503, 'the third subscriber: HTTP %d, expected 503' % e.status_code)
    refused = await wait_log(cl, mark, 'too many connections: pg_ws.max_connections reached', 5)
    check(refused, 'the refusal was not logged')
    check(not s1.closed.is_set() and not s2.closed.is_set(),
          'a connected subscriber was closed by the refusal')
    # after one disconnects, a new one is accepted (the server notices the
    # close asynchronously: allow it a moment)
    await s1.close()
    deadline = time.monotonic() + 5
    refusals = 0
    while True:
        try:
            s3 = await ctx.sub()
            break
        except websockets.InvalidStatusCode as e:
            check(e.status_code == 503, 'after a disconnect: HTTP %d' % e.status_code)
            refusals += 1
            check(time.monotonic() < deadline,
                  'still refused (503) 5 s after a subscriber disconnected')
            await asyncio.sleep(0.1)
    await asql(conn, emp(500))
    for who, s in (('second', s2), ('new', s3)):
        got = await s.expect(1, 10, who + ' subscriber')
        compare_idents(got, [('employee_create', 500)], who + ' subscriber')
    check(s1.msgs == [], 'the closed subscriber got %s' % s1.msgs)
    return '%d refusal(s) before the new subscriber was accepted' % refusals


async def test_drop_database(ctx):
    """f. DROP DATABASE is not held up by the worker (ProcSignalBarrier)."""
    await cluster(ctx, 'conns')
    conn = await ctx.aconn()
    before = await worker_row(conn)
    check(before is not None, 'no pg_ws worker in pg_stat_activity')
    times = []
    sub = None
    for rnd in range(2):
        await asql(conn, "CREATE DATABASE pg_ws_dropme")
        other = await ctx.aconn(dbname='pg_ws_dropme')
        await asql(other, "CREATE TABLE t AS SELECT 1 AS x")
        await asyncio.to_thread(other.close)
        if rnd == 1:
            # the second time with a subscriber connected and events flowing
            sub = await ctx.sub()
            await asql(conn, emp(600))
        t = time.monotonic()
        try:
            await asql(conn, "SET statement_timeout = '20s'", "DROP DATABASE pg_ws_dropme",
                       "RESET statement_timeout")
        except psycopg2.errors.QueryCanceled:
            raise Fail('DROP DATABASE (round %d) did not finish within 20 s' % (rnd + 1))
        times.append(time.monotonic() - t)
        check(times[-1] < 10, 'DROP DATABASE (round %d) took %.1f s' % (rnd + 1, times[-1]))
    rows = await asql(conn, "SELECT count(*) FROM pg_database WHERE datname = 'pg_ws_dropme'")
    check(rows == [(0,)], 'the database is still there')
    after = await worker_row(conn)
    check(after is not None and after[0] == before[0],
          'the pg_ws worker changed (pid %s before, %s after): it died instead of'
          ' absorbing the barrier' % (before[0], after and after[0]))
    await asql(conn, emp(601))
    got = await sub.expect(2, 10, 'subscriber connected across DROP DATABASE')
    compare_idents(got, [('employee_create', 600), ('employee_create', 601)], 'subscriber')
    return 'DROP DATABASE took %s' % ', '.join('%.2f s' % x for x in times)


TABLES = ('client', 'visit_history', 'employee', 'attendance')


async def test_pg_dump(ctx):
    """g. pg_dump of pg_ws.database, restored into another database."""
    cl = await cluster(ctx, 'appdb')
    sub = await ctx.sub()
    src = await ctx.aconn()                         # appdb, the broadcast database
    await asql(src, "BEGIN",
               "INSERT INTO client (first_seen, last_seen, visit_count, gender, age, image)"
               " VALUES ('2023-12-10 10:00:00+00', '2023-12-10 11:00:00.5+00', 2, 'male', 30,"
               " 'client_images/a.jpg'), (now(), now(), 0, NULL, NULL, NULL),"
               " ('2023-01-01 00:00:00+00', NULL, 7, 'female', 41, 'https://x.example/i.jpg')",
               "INSERT INTO visit_history (client_id, datetime, device_id)"
               " SELECT c.id, '2023-12-10 10:30:00+00'::timestamptz + n * interval '1 min', 'dev' || n"
               " FROM client c, generate_series(1, 2) n",
               "INSERT INTO employee (first_name, last_name, email, phone_number, image,"
               " working_graphic_id) VALUES ('John', 'Doe', 'j@example.com', '123', NULL, 2),"
               " ('Jane', 'Ro\"e\\', NULL, NULL, 'employee_images/j.jpg', NULL),"
               " ('Ivan', 'Иванов', NULL, NULL, NULL, 5)",
               "INSERT INTO attendance (employee_id, device_id, image, datetime, score)"
               " SELECT e.id, 'A' || e.id, NULL, '2023-12-10 08:00:00+00', 95.5 FROM employee e",
               "COMMIT")
    # identity counters ahead of the largest id: next ids must follow the
    # counter, not max(id)
    await asql(src, "DELETE FROM attendance WHERE id = (SELECT max(id) FROM attendance)",
               "DELETE FROM client WHERE id = (SELECT max(id) FROM client)")
    # markers take identity ids too, so that max(id) stays what the counters
    # made (test h, later on this cluster, uses explicit ids far above)
    marker = "INSERT INTO employee (first_name, last_name) VALUES ('marker', 'g') RETURNING id"
    m1 = (await asql(src, marker))[0][0]
    await sub.wait_until(lambda m: ('employee_create', m1) in map(ident, m), 15, 'marker 1')
    await asyncio.sleep(0.3)
    n_before = len(sub.msgs)

    dump = os.path.join(cl.dir, 'appdb.sql')
    r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_dump', '-h', cl.dir,
                                '-p', str(cl.pgport), '-U', 'postgres', '-d', 'appdb',
                                '-f', dump, check=False)
    check(r.returncode == 0, 'pg_dump failed (%d): %s' % (r.returncode, short(r.stdout, 1000)))
    with open(dump) as f:
        text = f.read()
    check('CREATE EXTENSION IF NOT EXISTS pg_ws' in text, 'the dump does not create pg_ws')
    missing = [t for t in TABLES if 'COPY public.%s ' % t not in text]
    check(not missing, 'the dump has no data for %s' % missing)
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, "CREATE DATABASE restored")
    r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/psql', '-X', '-q',
                                '-v', 'ON_ERROR_STOP=1', '-h', cl.dir, '-p', str(cl.pgport),
                                '-U', 'postgres', '-d', 'restored', '-f', dump, check=False)
    check(r.returncode == 0, 'the restore failed (%d): %s' % (r.returncode, short(r.stdout, 2000)))
    restore_out = r.stdout

    dst = await ctx.aconn(dbname='restored')
    problems, notes = [], []
    for t in TABLES:
        q = "SELECT * FROM %s ORDER BY id" % t
        a, b = await asql(src, q), await asql(dst, q)
        if not a:
            problems.append('%s: no rows in appdb (test set-up)' % t)
        if a != b:
            problems.append('%s: %d rows in appdb, %d restored; first difference: %s'
                            % (t, len(a), len(b),
                               next(((x, y) for x, y in zip(a, b) if x != y), None)))
        sq = ("SELECT last_value, is_called FROM %s"
              % (await asql(src, "SELECT pg_get_serial_sequence('%s', 'id')" % t))[0][0])
        sa, sb = await asql(src, sq), await asql(dst, sq)
        if sa != sb:
            problems.append('%s: identity sequence (last_value, is_called) %s in appdb,'
                            ' %s restored' % (t, sa[0], sb[0]))
        notes.append('%s %d rows, sequence at %s' % (t, len(a), sa[0][0]))
    check(not problems, *problems)

    # the next id inserted in the restored database follows the counter
    cid = (await asql(dst, "INSERT INTO client (visit_count) VALUES (1) RETURNING id"))[0][0]
    inserts = {
        'client': cid,
        'visit_history': (await asql(dst, ("INSERT INTO visit_history (client_id, device_id)"
                                           " VALUES (%s, 'new') RETURNING id", (cid,))))[0][0],
        'employee': (await asql(dst, "INSERT INTO employee (first_name, last_name)"
                                     " VALUES ('new', 'g') RETURNING id"))[0][0],
    }
    inserts['attendance'] = (await asql(dst, ("INSERT INTO attendance (employee_id, device_id)"
                                              " VALUES (%s, 'new') RETURNING id",
                                              (inserts['employee'],))))[0][0]
    for t in TABLES:
        last, called = (await asql(src, "SELECT last_value, is_called FROM %s"
                                   % (await asql(src, "SELECT pg_get_serial_sequence('%s', 'id')"
                                                 % t))[0][0]))[0]
        want = last + 1 if called else last
        top = (await asql(src, "SELECT max(id) FROM %s" % t))[0][0]
        if inserts[t] != want or inserts[t] <= top:
            problems.append('%s: the next id in the restored database is %s; expected %s'
                            ' (max id in appdb %s)' % (t, inserts[t], want, top))
    check(not problems, *problems)

    # restoring fired the triggers in "restored", which broadcasts nothing:
    # the subscriber was sent nothing since the marker but the next marker
    m2 = (await asql(src, marker))[0][0]
    await sub.wait_until(lambda m: ('employee_create', m2) in map(ident, m), 15, 'marker 2')
    await asyncio.sleep(0.3)
    compare_idents(sub.msgs[n_before:], [('employee_create', m2)],
                   'subscriber since the dump')
    warned = 'will not broadcast the events of database "restored"' in restore_out
    return '; '.join(notes) + ('; restore warned that "restored" is not broadcast'
                               if warned else '')


def raw_ws_connect(port, rcvbuf=4096):
    """A WebSocket handshake by hand on a socket with a small receive
    buffer; reads exactly the 101 response, nothing after it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(('127.0.0.1', port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(('GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n'
                   'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
                   'Sec-WebSocket-Version: 13\r\n\r\n' % (port, key)).encode())
        head = b''
        while not head.endswith(b'\r\n\r\n'):
            c = s.recv(1)           # byte by byte: never read past the headers
            if not c:
                raise Fail('the server closed the slow subscriber during the handshake: %r' % head)
            head += c
        text = head.decode(errors='replace')
        accept = base64.b64encode(hashlib.sha1(
            (key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest()).decode()
        if not text.startswith('HTTP/1.1 101') or accept.lower() not in text.lower():
            raise Fail('bad handshake answer: %r' % text)
        return s
    except BaseException:
        s.close()
        raise


def read_to_eof(s, timeout):
    """Read s until the server closes it; (bytes read, closed?)."""
    data, closed = rawws.read_until_closed(s, timeout)
    return len(data), closed


async def test_slow_subscriber(ctx):
    """h. a subscriber that never reads is disconnected, writers never wait."""
    cl = await cluster(ctx, 'appdb')
    normal = await ctx.sub()
    slow = await asyncio.to_thread(raw_ws_connect, cl.wsport)
    try:
        return await slow_subscriber_body(ctx, cl, normal, slow)
    finally:
        slow.close()


async def slow_subscriber_body(ctx, cl, normal, slow):
    mark = cl.log_size()
    writers, per_tx, total_bytes = 2, 4, 6 << 20
    body = 's' * 1000
    event_bytes = len('{"event": "employee_create", "data": {"id": 1000000, "first_name": "",'
                      ' "last_name": "h0", "email": null, "phone_number": null, "image": null,'
                      ' "working_graphic": null}}') + len(body)
    n_tx = total_bytes // (event_bytes * per_tx * writers) + 1
    conns = [ctx.conn(autocommit=False) for _ in range(writers)]
    results = [None] * writers          # per writer: list of commit times, or an error

    def write(w):
        cur = conns[w].cursor()
        times = []
        try:
            for k in range(n_tx):
                base = 1000000 * (w + 1) + k * per_tx
                cur.execute("INSERT INTO employee (id, first_name, last_name)"
                            " SELECT g, %s, %s FROM generate_series(%s, %s) g",
                            (body, 'h%d' % w, base, base + per_tx - 1))
                t = time.monotonic()
                conns[w].commit()
                times.append(time.monotonic() - t)
            results[w] = times
        except Exception as e:
            results[w] = e

    t_write = await run_threads(write, writers)
    errors = [r for r in results if not isinstance(r, list)]
    check(not errors, 'writer errors: %s' % [short(e) for e in errors])
    slowest = max(max(r) for r in results)
    n_events = writers * n_tx * per_tx
    summary = ('%d writers committed %d transactions, %d events (%.1f MB) in %.1f s;'
               ' slowest COMMIT %.3f s' % (writers, writers * n_tx, n_events,
                                            n_events * event_bytes / 1e6, t_write, slowest))
    check(slowest < 1.0, summary, 'a COMMIT waited %.2f s for room (pg_ws.queue_full_timeout'
          ' is 2 s): the slow subscriber held the writers up' % slowest)
    culled = await wait_log(cl, mark, 'pg_ws is disconnecting a subscriber that fell', 5)
    check(culled, summary, 'the server log does not say the slow subscriber was disconnected')
    # the slow one really is gone: reading it now ends in the close
    n, closed = await asyncio.to_thread(read_to_eof, slow, 20)
    check(closed, summary, *culled, 'the slow subscriber is still connected'
          ' (%d bytes were waiting for it)' % n)

    # the normal subscriber got every event, each writer's in commit order
    try:
        got = await normal.expect(n_events, 60, 'normal subscriber')
    except Fail as e:
        raise Fail(summary, str(e), *culled)
    seen, last, problems = set(), {}, []
    for raw in got:
        e, i = ident(raw)
        w, k = divmod(i, 1000000)
        if e != 'employee_create' or w not in (1, 2) or i in seen:
            problems.append('unexpected or repeated: %s' % short(raw, 120))
            continue
        if k <= last.get(w, -1):
            problems.append('writer %d: %d after %d' % (w, k, last[w]))
        seen.add(i)
        last[w] = k
    want = {1000000 * (w + 1) + j for w in range(writers) for j in range(n_tx * per_tx)}
    missing = sorted(want - seen)
    if missing:
        problems.append('%d events missing, e.g. %s' % (len(missing), missing[:5]))
    check(not problems, summary, *problems[:20])
    check(not normal.closed.is_set(), summary, 'the normal subscriber was disconnected: %s'
          % normal.close_info, *culled)
    check(len(culled) == 1, summary, 'more than one subscriber was disconnected:', *culled)
    return summary + '; %d bytes were waiting for the slow subscriber; ' % n \
        + culled[0].split(' LOG:  ')[-1]


async def test_pg_stat_activity(ctx):
    """i. the worker in pg_stat_activity: backend_type pg_ws, waiting on Extension."""
    await cluster(ctx, 'conns')
    conn = await ctx.aconn()
    samples = []
    for _ in range(10):
        samples.append(await asql(conn, "SELECT pid, backend_type, wait_event_type, wait_event,"
                                        " datname FROM pg_stat_activity"
                                        " WHERE backend_type = 'pg_ws'"))
        await asyncio.sleep(0.05)
    bad = [s for s in samples
           if len(s) != 1 or s[0][2] != 'Extension' or s[0][3] != 'Extension']
    check(not bad, 'expected one pg_ws row waiting on (Extension, Extension);'
          ' %d of 10 samples differ, e.g. %s' % (len(bad), bad[:3]))
    check(len({s[0][0] for s in samples}) == 1, 'the worker pid changed: %s' % samples)
    return 'pid %d, wait_event_type %s, database %s' % (samples[0][0][0], samples[0][0][2],
                                                       samples[0][0][4])


async def terminate_behind_slow_subscriber(ctx, cl, letter, body_len, first, per_tx,
                                           n_tx, exit_timeout):
    """Commit n_tx transactions of per_tx employees (ids from first on, a
    first_name of body_len bytes) while a raw subscriber with a small
    receive buffer reads nothing, then terminate the worker.  The
    subscriber reads only once the worker is gone: had it left first,
    nobody would be owed its events, and what libwebsockets still held for
    it went with the worker.  Returns the text frames it got whole, the
    bytes of a cut frame after them, the last id committed and where the
    server log was before the termination."""
    conn = await ctx.aconn()
    slow = await asyncio.to_thread(raw_ws_connect, cl.wsport)
    try:
        body = letter * body_len
        for k in range(n_tx):
            await asql(conn, ("INSERT INTO employee (id, first_name, last_name)"
                              " SELECT g, %s, %s FROM generate_series(%s, %s) g",
                              (body, letter, first + k * per_tx,
                               first + (k + 1) * per_tx - 1)))
        pid, _ = await worker_row(conn)
        mark = cl.log_size()
        await asql(conn, ("SELECT pg_terminate_backend(%s)", (pid,)))
        deadline = time.monotonic() + exit_timeout
        while (row := await worker_row(conn)) is not None and row[0] == pid:
            check(time.monotonic() < deadline, 'the worker did not exit')
            await asyncio.sleep(0.05)
        frames, cut = await asyncio.to_thread(read_frames, slow, 30)
    finally:
        slow.close()
    return frames, cut, first + n_tx * per_tx - 1, mark


async def test_inflight_survives_restart(ctx):
    """j. events a subscriber was not sent yet when the worker is terminated
    reach it when it resumes after the last one it got whole: the queue
    keeps them until sent, and since= picks up exactly there."""
    cl = await cluster(ctx, 'inflight')
    # ~10 MB: more than the slow subscriber's socket buffers can absorb,
    # less than pg_ws.max_subscriber_lag, so it is not disconnected
    first, per_tx, n_tx = 2000000, 10, 1000
    frames, _, last, mark = await terminate_behind_slow_subscriber(
        ctx, cl, 'j', 1000, first, per_tx, n_tx, exit_timeout=20)
    check(frames, 'the slow subscriber got no whole frame before the restart')
    before = [json.loads(f)['data']['id'] for f in frames]
    await cl.wait_listening(cl.wsport, 20, since=mark)
    sub = await ctx.sub(resume_path(frames[-1].decode()))
    await sub.wait_until(lambda m: any('"id": %d,' % last in x for x in m), 30,
                         'the last event, after the restart')
    await asyncio.sleep(0.3)            # anything extra would come now
    ids = before + [json.loads(m)['data']['id'] for m in sub.msgs]
    check(ids == list(range(first, last + 1)),
          'before and after the restart are not every event exactly once:'
          ' %d + %d messages, from id %d' % (len(before), len(sub.msgs), ids[0]))
    check(len(sub.msgs) > per_tx,
          'only %d events resumed: the slow subscriber was not behind' % len(sub.msgs))
    return '%d of %d events had not reached the slow subscriber and were resumed' % (
        len(sub.msgs), n_tx * per_tx)


async def test_postmaster_death(ctx):
    """k. the worker exits by itself when the postmaster dies."""
    cl = await cluster(ctx, 'doomed')
    conn = await ctx.aconn()
    pid, _ = await worker_row(conn)
    conn.close()
    with open(os.path.join(cl.data, 'postmaster.pid')) as f:
        postmaster = int(f.readline())
    os.kill(postmaster, 9)
    deadline = time.monotonic() + 10
    while os.path.exists('/proc/%d' % pid):
        with open('/proc/%d/stat' % pid) as f:
            if f.read().split(')')[-1].split()[0] == 'Z':
                break               # exited, not yet reaped
        check(time.monotonic() < deadline,
              'the worker (pid %d) still runs 10 s after the postmaster died' % pid)
        await asyncio.sleep(0.05)
    cl.started = False              # nothing left to stop
    return 'worker exited %.2f s after the postmaster was killed' % (
        10 - (deadline - time.monotonic()))


async def test_fast_reader_not_culled(ctx):
    """l. a subscriber that keeps up is never culled, even though every
    frame is larger than libwebsockets hands the kernel at once (so it
    always holds part of one for a moment) and every burst of commits waits
    for room in a small queue: it is judged by its progress, not by one
    look at its socket."""
    cl = await cluster(ctx, 'keepup')
    mark = cl.log_size()
    reader = await ctx.sub()
    writers, bursts = 4, 25
    conns = [ctx.conn() for _ in range(writers)]
    body = 'k' * 1200000            # over 1 MB; two do not fit the 2 MB queue
    waits = []
    next_id = [3000000]

    def burst_writer(w):
        t = time.monotonic()
        with conns[w].cursor() as cur:
            cur.execute("INSERT INTO employee (id, first_name, last_name) VALUES (%s, %s, 'keepup')",
                        (next_id[0] + w, body))
        waits.append(time.monotonic() - t)

    for _ in range(bursts):
        await run_threads(burst_writer, writers)
        next_id[0] += writers
        await asyncio.sleep(0.3)    # the writers' average stays below the reader's
    n = bursts * writers
    got = await reader.expect(n, 60, 'the reader')
    ids = sorted(json.loads(m)['data']['id'] for m in got)
    check(ids == list(range(3000000, 3000000 + n)),
          'the reader got %d events, not all %d' % (len(ids), n))
    check(not reader.closed.is_set(), 'the reader was disconnected: %s' % reader.close_info)
    culled = await wait_log(cl, mark, 'pg_ws is disconnecting a subscriber', 0)
    check(not culled, 'a subscriber that kept up was culled:', *culled)
    check(max(waits) > 0.005, 'no commit waited for room (test set-up)')
    return '%d bursts of %d concurrent 1.2 MB commits into a 2 MB queue; slowest commit %.3f s' % (
        bursts, writers, max(waits))


def read_frames(s, timeout):
    """Read a raw socket until the server closes it; the text frames that
    arrived whole, and how many bytes of a last, cut frame came after."""
    data, _ = rawws.read_until_closed(s, timeout)
    frames, pos = [], 0
    while pos + 2 <= len(data):
        n = data[pos + 1] & 0x7F
        head = 2
        if n == 126:
            n, head = int.from_bytes(data[pos + 2:pos + 4], 'big'), 4
        elif n == 127:
            n, head = int.from_bytes(data[pos + 2:pos + 10], 'big'), 10
        if pos + head + n > len(data):
            break
        if data[pos] & 0x0F == 1:
            frames.append(data[pos + head:pos + head + n])
        pos += head + n
    return frames, len(data) - pos


async def test_partial_frame_not_sent(ctx):
    """m. a frame libwebsockets holds partly unsent is not counted as sent:
    when the worker is terminated, what a slow subscriber received whole
    and what it is sent when it resumes after it add up to every event
    exactly once, with no gap at the frame that was cut."""
    cl = await cluster(ctx, 'partial')
    # frames larger than libwebsockets hands the kernel at once (1 MB), so
    # that it always holds the rest of one; far more than the socket
    # buffers hold; one per transaction so that the queue keeps exactly
    # what was not sent
    first, per_tx, n_tx = 4000000, 1, 20
    frames, cut, last, mark = await terminate_behind_slow_subscriber(
        ctx, cl, 'p', 1200007, first, per_tx, n_tx, exit_timeout=30)
    got_before = [json.loads(f)['data']['id'] for f in frames]
    check(got_before == list(range(first, first + len(got_before))),
          'the slow subscriber got %d frames, not in order' % len(got_before))
    check(frames, 'the slow subscriber got no whole frame before the restart')
    await cl.wait_listening(cl.wsport, 30, since=mark)
    again = await ctx.sub(resume_path(frames[-1].decode()))
    await again.wait_until(lambda m: any('"id": %d,' % last in x for x in m), 60,
                           'the last event after the restart')
    await asyncio.sleep(0.3)            # anything extra would come now
    replay = [json.loads(m)['data']['id'] for m in again.msgs]
    next_needed = first + len(got_before)
    check(replay == list(range(next_needed, last + 1)),
          'the slow subscriber got up to %d whole (and %d bytes of the next frame);'
          ' resuming after it gave %d events from %s, expected exactly %d..%d'
          % (next_needed - 1, cut, len(replay), replay[:1], next_needed, last))
    return ('%d frames whole and %d bytes of the next before the restart; replay from %d'
            % (len(got_before), cut, replay[0]))


async def test_retention_reloads(ctx):
    """n. 1,000 reloads, each changing pg_ws.history_retention: the
    postmaster and the worker keep running, with flat memory, and events
    still arrive.  (On 16 and later PostgreSQL frees a GUC's extra with
    guc_free(): extra from malloc() corrupts memory at the next change.)"""
    cl = await cluster(ctx, 'reload')
    conn = await ctx.aconn()
    with open(os.path.join(cl.data, 'postmaster.pid')) as f:
        postmaster = int(f.readline())
    worker = (await worker_row(conn))[0]

    async def reloads(first, n):
        for i in range(first, first + n):
            value = '%dMB' % (i + 1) if i % 2 else '%dmin' % (i + 1)
            await asql(conn, "ALTER SYSTEM SET pg_ws.history_retention = '%s'" % value,
                       "SELECT pg_reload_conf()")
            # this backend has it too once SHOW says so; the others in turn
            deadline = time.monotonic() + 10
            while (await asql(conn, "SHOW pg_ws.history_retention"))[0][0] != value:
                check(time.monotonic() < deadline, 'reload %d (%s) not taken in 10 s' % (i, value))
                await asyncio.sleep(0.002)

    await reloads(0, 100)       # first allocations, the slot made
    before = process_rss(postmaster)[0], process_rss(worker)[0]
    await reloads(100, 1000)
    row = await worker_row(conn)
    check(row and row[0] == worker, 'the worker %d is gone (now %s): a crash restarted the server'
          % (worker, row))
    after = process_rss(postmaster)[0], process_rss(worker)[0]
    grew = [b - a for a, b in zip(before, after)]
    check(max(grew) <= 1 << 20, 'resident memory grew over 1,000 reloads: postmaster %+d, '
          'worker %+d bytes' % tuple(grew))
    sub = await ctx.sub()
    await asql(conn, emp(1400))
    compare_idents(await sub.expect(1, 10, 'event after the reloads'),
                   [('employee_create', 1400)], 'subscriber')
    await asql(conn, "ALTER SYSTEM RESET pg_ws.history_retention", "SELECT pg_reload_conf()")
    return 'postmaster %+d, worker %+d bytes of resident memory over 1,000 reloads' % tuple(grew)


TESTS = [
    ('(a) without shared_preload_libraries CREATE EXTENSION fails with 55000 and a hint',
     test_no_preload, 30),
    ('(b) a full queue: bounded wait, SQLSTATE 54000, no committed event lost',
     test_queue_full, 60),
    ('(c) events that could never fit fail at once with 54000 "do not fit"',
     test_never_fits, 30),
    ('(d) a reload moves the listener; connected subscribers keep receiving',
     test_reload_port, 40),
    ('(e) pg_ws.max_connections = 2: the third subscriber gets 503, a later one is accepted',
     test_max_connections, 30),
    ('(f) DROP DATABASE completes promptly while the worker runs',
     test_drop_database, 60),
    ('(g) pg_dump round trip keeps rows and identity counters',
     test_pg_dump, 60),
    ('(h) a subscriber that never reads is disconnected; writers never wait',
     test_slow_subscriber, 100),
    ('(i) pg_stat_activity shows the worker as pg_ws waiting on Extension',
     test_pg_stat_activity, 30),
    ('(j) events not yet sent when the worker is terminated reach the subscriber that resumes',
     test_inflight_survives_restart, 90),
    ('(k) the worker exits when the postmaster dies',
     test_postmaster_death, 40),
    ('(l) a subscriber that keeps up is not culled when frames are large and writers wait',
     test_fast_reader_not_culled, 90),
    ('(m) a frame left partly in libwebsockets is resumed after a worker restart',
     test_partial_frame_not_sent, 120),
    ('(n) 1,000 reloads changing pg_ws.history_retention: server up, memory flat',
     test_retention_reloads, 240),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
