#!/usr/bin/python3
"""End-to-end tests of pg_ws's database side that need a running server.

The pg_regress suite checks the database side one statement at a time
(sql/security.sql, search_path.sql, visits.sql, upgrade.sql); this file
checks what needs several sessions, a subscriber or a restart:

  a. writers_waiting in pg_ws_stats goes back to 0 however a writer that
     waited for queue room ends: terminated (FATAL), canceled (ERROR) or
     timed out;
  b. a role that may only INSERT into client produces events a subscriber
     receives, and cannot make a table of its own produce any;
  c. with pg_ws removed from shared_preload_libraries, writes succeed in a
     database that is not pg_ws.database and fail clearly in the one that
     is.

Clusters (harness.Cluster), started on first use on free ports:

    queue   pg_ws.queue_size 64kB, synchronous_standby_names naming a
            standby that never connects, so that a synchronous commit
            stays in progress and the queue behind it fills up      (a)
    appdb   pg_ws.database 'appdb'; (c) restarts it without the preload,
            so it runs last                                          (b, c)

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_db.py

Needs Debian's python3-websockets (10.4) and python3-psycopg2, and pg_ws
installed (make && make install).  Output is TAP; the exit status is 0
only if every test passed.
"""

import asyncio
import os
import sys
import threading

import psycopg2
import psycopg2.errors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, PGBIN, Cluster, Ctx, Fail, asql, check,  # noqa: E402
                     compare_idents, poll, run_tap, short, worker_row)

WATCHDOG_SECONDS = 200          # the whole run, setup and clean-up included

CLUSTERS = {
    # a full queue behind a commit that waits for a standby: without the
    # WAL the worker parks only four queues' worth out of it (queue.c),
    # and past that writers wait for room
    'queue': dict(conf=["pg_ws.queue_size = '64kB'",
                        "pg_ws.wal = off",
                        "synchronous_standby_names = 'nonexistent'",
                        # durable locally; only the session that must wait
                        # for the standby that never comes sets it to on
                        "synchronous_commit = local"]),
    'appdb': dict(database='appdb'),
}



_kinds = ClusterKinds(lambda kind: Cluster(name=kind, **CLUSTERS[kind]))


async def cluster(ctx, kind):
    """The cluster of this kind, started on first use; ctx's cluster."""
    return await _kinds.get(ctx, kind)


def pg_error(e):
    """A psycopg2 error as one line: SQLSTATE, message, detail, hint."""
    d = e.diag
    return 'SQLSTATE %s: %s | detail: %s | hint: %s' % (
        e.pgcode, d.message_primary, d.message_detail, d.message_hint)


async def stats(conn):
    """pg_ws_stats as a dict."""
    rows = await asql(conn, "SELECT worker_pid, queue_bytes_used, queue_bytes_capacity,"
                            " writers_waiting FROM pg_ws_stats")
    check(len(rows) == 1, 'pg_ws_stats returned %d rows' % len(rows))
    return dict(zip(('worker_pid', 'used', 'capacity', 'writers_waiting'), rows[0]))


def in_thread(fn):
    """Run fn() in a thread; a dict that gets 'ok' (its result) or 'error'."""
    result = {}

    def run():
        try:
            result['ok'] = fn()
        except Exception as e:
            result['error'] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    result['thread'] = t
    return result


# ------------------------------------------------------------------ tests

async def hold_queue(ctx, mon):
    """A synchronous commit that waits for a standby that never comes: its
    queue entry stays in progress and the worker cannot pass it, so
    everything committed after it stays in the queue (or parked in the
    worker, four queues' worth at most without the WAL).  Returns A's pid."""
    a = await ctx.aconn(autocommit=False)
    a_pid = a.get_backend_pid()
    await asql(a, "SET synchronous_commit = on",
               "INSERT INTO employee (id, first_name, last_name) VALUES (1, 'A', 'sync')")
    a_commit = in_thread(a.commit)

    async def a_waits():
        check('error' not in a_commit and a_commit['thread'].is_alive(),
              'A committed without waiting for the standby (%s): the test set-up'
              ' no longer works' % a_commit)
        rows = await asql(mon, ("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                (a_pid,)))
        return rows == [('SyncRep',)]
    await poll('A waiting for synchronous replication', timeout=30, probe=a_waits)
    return a_pid, a_commit


async def waiting_writer(ctx, mon, timeout_setting, first_id, observe=True):
    """A writer that commits transactions of two ~2 kB events until its
    commit waits for room; returns its connection, pid and the thread's
    result, once pg_ws_stats counts it if observe (a writer with a short
    timeout may be done waiting before we look)."""
    w = await ctx.aconn(autocommit=False)
    pid = w.get_backend_pid()
    await asql(w, "SET synchronous_commit = local",
               "SET pg_ws.queue_full_timeout = '%s'" % timeout_setting)
    await asyncio.to_thread(w.commit)
    big = 'w' * 2000

    def fill():
        cur = w.cursor()
        for k in range(200):
            cur.execute("INSERT INTO employee (id, first_name, last_name)"
                        " VALUES (%s, %s, 'w'), (%s, %s, 'w')",
                        (first_id + 2 * k, big, first_id + 2 * k + 1, big))
            w.commit()
        return 'committed 200 transactions without waiting'
    result = in_thread(fill)
    if not observe:
        return w, pid, result

    async def counted():
        check('ok' not in result, 'the writer never waited: %s' % result.get('ok'))
        check('error' not in result, 'the writer failed before it waited: %s'
              % (pg_error(result['error']) if isinstance(result.get('error'), psycopg2.Error)
                 else result.get('error')))
        s = await stats(mon)
        rows = await asql(mon, ("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                (pid,)))
        return s if s['writers_waiting'] == 1 and rows == [('Extension',)] else None
    s = await poll('pg_ws_stats counting the waiting writer', timeout=60, probe=counted)
    check(s['used'] > s['capacity'] - 8192,
          'a writer of ~4 kB waits, but pg_ws_stats says %d of %d bytes are used'
          % (s['used'], s['capacity']))
    return w, pid, result


async def test_writers_waiting(ctx):
    """a. writers_waiting goes back to 0 however a waiting writer ends."""
    cl = await cluster(ctx, 'queue')
    mon = await ctx.aconn()
    await asql(mon, "SET synchronous_commit = local")
    worker = await worker_row(mon)
    s = await stats(mon)
    check(worker is not None and s['worker_pid'] == worker[0],
          'pg_ws_stats.worker_pid %s, the worker in pg_stat_activity %s'
          % (s['worker_pid'], worker))
    check(s['writers_waiting'] == 0 and s['capacity'] == 65536,
          'before anything waits: %s' % s)
    a_pid, a_commit = await hold_queue(ctx, mon)
    notes = []

    # terminated while waiting: a FATAL, which unwinds no PG_CATCH
    w, pid, result = await waiting_writer(ctx, mon, '300s', 100000)
    await asql(mon, ("SELECT pg_terminate_backend(%s)", (pid,)))

    async def gone():
        rows = await asql(mon, ("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)))
        return rows == [(0,)]
    await poll('the terminated writer leaving pg_stat_activity', timeout=30, probe=gone)
    s = await stats(mon)
    check(s['writers_waiting'] == 0,
          'after the waiting writer was terminated, pg_ws_stats.writers_waiting is %d'
          % s['writers_waiting'])
    notes.append('terminated: 1 -> 0')

    # canceled while waiting: an ERROR; its transaction aborts
    w, pid, result = await waiting_writer(ctx, mon, '300s', 200000)
    await asql(mon, ("SELECT pg_cancel_backend(%s)", (pid,)))
    await asyncio.to_thread(result['thread'].join, 30)
    err = result.get('error')
    check(isinstance(err, psycopg2.errors.QueryCanceled),
          'the canceled COMMIT: %s' % (pg_error(err) if isinstance(err, psycopg2.Error)
                                       else result))
    s = await stats(mon)
    check(s['writers_waiting'] == 0,
          'after the waiting writer was canceled, pg_ws_stats.writers_waiting is %d'
          % s['writers_waiting'])
    notes.append('canceled: 1 -> 0')

    # timed out: pg_ws.queue_full_timeout; the error says it waited
    w, pid, result = await waiting_writer(ctx, mon, '1s', 300000, observe=False)
    await asyncio.to_thread(result['thread'].join, 30)
    err = result.get('error')
    check(isinstance(err, psycopg2.Error) and err.pgcode == '54000' and
          err.diag.message_primary == 'pg_ws event queue is full',
          'the COMMIT that found no room: %s' % (pg_error(err) if isinstance(err, psycopg2.Error)
                                                 else result))
    s = await stats(mon)
    check(s['writers_waiting'] == 0,
          'after the waiting writer timed out, pg_ws_stats.writers_waiting is %d'
          % s['writers_waiting'])
    notes.append('timed out: 1 -> 0')

    # let A commit: the worker drains the queue and frees it
    await asql(mon, ("SELECT pg_cancel_backend(%s)", (a_pid,)))
    await asyncio.to_thread(a_commit['thread'].join, 30)
    check('ok' in a_commit, "A's COMMIT did not complete after the cancel: %s" % a_commit)

    async def drained():
        s = await stats(mon)
        return s if s['used'] == 0 else None
    await poll('the queue drained after A committed', timeout=30, probe=drained)
    return '; '.join(notes) + '; the queue drained to 0 bytes'


async def test_unprivileged_writer(ctx):
    """b. INSERT-only role: its rows reach subscribers; no forged trigger."""
    cl = await cluster(ctx, 'appdb')
    admin = await ctx.aconn()
    await asql(admin, "DROP ROLE IF EXISTS regress_pg_ws_writer",
               "CREATE ROLE regress_pg_ws_writer LOGIN",
               "GRANT INSERT ON client TO regress_pg_ws_writer")
    sub = await ctx.sub()

    def connect():
        c = psycopg2.connect(host=cl.dir, port=cl.pgport, user='regress_pg_ws_writer',
                             dbname=cl.database, options='-c statement_timeout=60s')
        c.autocommit = True
        return c
    writer = await asyncio.to_thread(connect)
    ctx.conns.append(writer)
    await asql(writer, "INSERT INTO client (gender) VALUES ('from the writer')")

    # its own table cannot produce events: CREATE TRIGGER needs EXECUTE
    try:
        await asql(writer, "CREATE TEMP TABLE forged (id bigint, first_name text,"
                           " last_name text)",
                   "CREATE TRIGGER forge AFTER INSERT ON forged FOR EACH ROW"
                   " EXECUTE FUNCTION public.pg_ws_row_event('employee')",
                   "INSERT INTO forged VALUES (666, 'forged', 'event')")
        raise Fail('an unprivileged role created a trigger calling pg_ws_row_event()')
    except psycopg2.Error as e:
        check(e.pgcode == '42501' and 'pg_ws_row_event' in (e.diag.message_primary or ''),
              'expected permission denied for function pg_ws_row_event, got ' + pg_error(e))
    # nor read the statistics
    try:
        await asql(writer, "SELECT * FROM pg_ws_stats")
        raise Fail('an unprivileged role read pg_ws_stats')
    except psycopg2.Error as e:
        check(e.pgcode == '42501', 'pg_ws_stats: expected 42501, got ' + pg_error(e))

    marker = (await asql(admin, "INSERT INTO employee (first_name, last_name)"
                                " VALUES ('marker', 'b') RETURNING id"))[0][0]
    cid = (await asql(admin, "SELECT id FROM client WHERE gender = 'from the writer'"))[0][0]
    got = await sub.expect(2, 15, 'subscriber')
    compare_idents(got, [('client_create', cid, 0), ('employee_create', marker)], 'subscriber')
    await asyncio.to_thread(writer.close)
    await asql(admin, "DROP OWNED BY regress_pg_ws_writer", "DROP ROLE regress_pg_ws_writer")


async def test_without_preload(ctx):
    """c. without the preload: other databases write, pg_ws.database refuses."""
    cl = await cluster(ctx, 'appdb')
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, "CREATE DATABASE otherdb")
    other = await ctx.aconn(dbname='otherdb')
    await asql(other, "CREATE EXTENSION pg_ws")
    notices = ''.join(other.notices)
    check('will not broadcast the events of database "otherdb"' in notices,
          'CREATE EXTENSION in otherdb did not warn: %s' % short(notices))
    for c in (admin, other):
        await asyncio.to_thread(c.close)

    # restart with pg_ws no longer preloaded (pg_ws.database stays 'appdb')
    with open(os.path.join(cl.data, 'postgresql.conf'), 'a') as f:
        f.write("# test_db.py (c): pg_ws removed from the preload\n"
                "shared_preload_libraries = ''\n")
    mark = cl.log_size()
    await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_ctl', '-D', cl.data, '-l', cl.log,
                            '-m', 'fast', '-w', '-t', '60', 'restart')

    # otherdb: every kind of write succeeds, and does nothing more
    other = await ctx.aconn(dbname='otherdb')
    try:
        await asql(other,
                   "INSERT INTO client (id, gender) VALUES (1, 'female')",
                   "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'd')",
                   "UPDATE client SET visit_count = 1 WHERE id = 1",
                   "INSERT INTO employee (id, first_name, last_name) VALUES (1, 'a', 'b')",
                   "INSERT INTO attendance (employee_id, device_id) VALUES (1, 'd')",
                   "DELETE FROM client WHERE id = 1",
                   "DELETE FROM employee WHERE id = 1")
    except psycopg2.Error as e:
        raise Fail('a write in otherdb failed without the preload: ' + pg_error(e))
    rows = await asql(other, "SELECT (SELECT count(*) FROM client), (SELECT count(*) FROM employee)")
    check(rows == [(0, 0)], 'otherdb after the writes: %s' % rows)

    # appdb, the broadcast database: a write fails with 55000 and a hint
    app = await ctx.aconn()
    try:
        await asql(app, "INSERT INTO employee (id, first_name, last_name)"
                        " VALUES (9000, 'a', 'b')")
        raise Fail('a write in the broadcast database succeeded without the preload:'
                   ' its events were lost')
    except psycopg2.Error as e:
        err = e
    check(err.pgcode == '55000' and
          err.diag.message_primary == 'pg_ws must be loaded via shared_preload_libraries',
          'the write in appdb: ' + pg_error(err))
    check('shared_preload_libraries' in (err.diag.message_hint or ''),
          'the hint does not say to preload pg_ws: ' + pg_error(err))
    rows = await asql(app, "SELECT count(*) FROM employee WHERE id = 9000")
    check(rows == [(0,)], 'the failed write left its row in appdb')
    check(await worker_row(app) is None, 'a pg_ws worker runs without the preload')
    warnings = [line for line in cl.log_since(mark) if 'WARNING' in line]
    return 'writes in otherdb succeeded; appdb refused with 55000%s' % (
        '; server log warnings: %s' % warnings[:3] if warnings else '')


TESTS = [
    ('(a) pg_ws_stats.writers_waiting returns to 0 after a waiting writer is'
     ' terminated, canceled or times out', test_writers_waiting, 120),
    ('(b) an INSERT-only role produces events; it cannot create a trigger calling'
     ' pg_ws_row_event() nor read pg_ws_stats', test_unprivileged_writer, 40),
    ('(c) without the preload: writes succeed in another database, fail with 55000'
     ' in pg_ws.database', test_without_preload, 60),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
