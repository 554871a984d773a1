#!/usr/bin/python3
"""End-to-end tests of pg_ws against a real WebSocket client.

This file owns the event-delivery end-to-end suite: it starts a throw-away
PostgreSQL 15 cluster with pg_ws preloaded (harness.Cluster; the shared
machinery is in harness.py), installs the extension, changes rows of
client, visit_history, employee and attendance, and checks what real
`websockets` subscribers of ws://127.0.0.1:PORT/ws/ receive: every event of
the event document byte for byte, fan-out to several subscribers, nothing
from rolled-back work, exactly-once and commit order under concurrent
writers, resuming after a worker restart, and the HTTP routing.  It does not
cover what the pg_regress suite covers (rendering edge cases one by one),
nor what test_operations.py covers (configuration, the queue-full path,
reloads, connection limits, slow subscribers, pg_dump).

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_e2e.py

Needs Debian's python3-websockets (10.4) and python3-psycopg2, and pg_ws
installed (make && make install).  Environment: PG_WS_E2E_PGPORT and
PG_WS_E2E_WSPORT pick the ports (default: free ones).  Output is TAP; the
exit status is 0 only if every test passed.
"""

import asyncio
import http.client
import json
import os
import random
import socket
import sys
import time

import psycopg2
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ws_connect  # noqa: E402
from harness import (Cluster, Ctx, Fail, asql, check, check_positions,  # noqa: E402
                     compare_idents, resume_path, without_position,
                     ident, port_open, run_tap, run_threads, short, worker_row)

WATCHDOG_SECONDS = 280          # the whole run, setup and clean-up included


# ---------------------------------------------------------------- helpers

def ev(name, **data):
    """An event as pg_ws renders it; keyword order is the document's."""
    return {'event': name, 'data': data}


def compare(got, expected, who):
    """Compare raw messages with expected events: count, JSON and bytes."""
    problems = []
    if len(got) != len(expected):
        problems.append('%s: expected %d messages, got %d'
                        % (who, len(expected), len(got)))
    check_positions(got, who)
    for i, (raw, exp) in enumerate(zip(got, expected)):
        want = json.dumps(exp)      # separators ', ' and ': ', document order
        raw = without_position(raw)
        if raw == want:
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        kind = ('same JSON value, different bytes (key order or number format)'
                if parsed == exp else 'different JSON value')
        problems.append('%s message %d: %s' % (who, i, kind))
        problems.append('  expected: ' + want)
        problems.append('  got:      ' + raw)
    for raw in got[len(expected):]:
        problems.append('  extra: ' + short(raw))
    for exp in expected[len(got):]:
        problems.append('  missing: ' + json.dumps(exp))
    check(not problems, *problems[:40])


# ------------------------------------------------------------------ tests

async def test_document_events(ctx):
    """1. every event of the document, byte for byte."""
    sub = await ctx.sub()
    # a session time zone other than UTC: events must still be in UTC
    conn = await ctx.aconn(timezone='Asia/Tashkent')       # UTC+5, no DST
    steps = [
        # client_create: timestamps with and without microseconds, relative image
        "INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age, image)"
        " VALUES (1, '2023-12-10 15:00:00', '2023-12-10 20:00:00.25', 5, 'male', 30,"
        " 'client_images/a.jpg')",
        "INSERT INTO visit_history (id, client_id, datetime, device_id)"
        " VALUES (1, 1, '2023-12-10 10:30:00+00', '1')",
        # older than the first visit: visit_histories must list it first
        "INSERT INTO visit_history (id, client_id, datetime, device_id)"
        " VALUES (2, 1, '2023-12-10 09:00:00.000001+00', '007')",
        "UPDATE client SET age = 31, gender = NULL,"
        " image = 'https://cdn.example.com/c/1.jpg' WHERE id = 1",
        "UPDATE visit_history SET device_id = 'XYZ789' WHERE id = 1",
        "DELETE FROM visit_history WHERE id = 2",
        "INSERT INTO employee (id, first_name, last_name, email, phone_number, image,"
        " working_graphic_id) VALUES (1, 'John', 'Do\"e\\', 'john.doe@example.com', NULL,"
        " 'http://example.com/media/employee_images/john_doe.jpg', 2)",
        "UPDATE employee SET phone_number = '1234567890', image = '',"
        " working_graphic_id = NULL WHERE id = 1",
        "INSERT INTO attendance (id, employee_id, device_id, image, datetime, score)"
        " VALUES (1, 1, '123ABC', 'attendance_images/attendance.jpg',"
        " '2023-12-10 08:00:00+00', 95)",
        "INSERT INTO attendance (id, employee_id, device_id, image, datetime, score)"
        " VALUES (2, 1, '42', NULL, '2023-12-10 08:00:00.5+00', 95.5)",
        "UPDATE attendance SET score = 1 WHERE id = 1",        # sends nothing
        "DELETE FROM attendance WHERE id = 1",
        # the cascade: employee_delete, then its remaining attendance
        "DELETE FROM employee WHERE id = 1",
        "DELETE FROM client WHERE id = 1",
    ]
    for s in steps:                     # each its own (autocommit) transaction
        await asql(conn, s)

    v1 = {'datetime': '2023-12-10T10:30:00Z', 'device_id': '1'}
    v2 = {'datetime': '2023-12-10T09:00:00.000001Z', 'device_id': '007'}
    expected = [
        ev('client_create', id=1, first_seen='2023-12-10T10:00:00Z',
           last_seen='2023-12-10T15:00:00.250000Z', visit_count=5, gender='male',
           age=30, image='/media/client_images/a.jpg', visit_histories=[]),
        ev('client_visit_create', **v1, client=1),
        ev('client_visit_create', **v2, client=1),
        ev('client_update', id=1, first_seen='2023-12-10T10:00:00Z',
           last_seen='2023-12-10T15:00:00.250000Z', visit_count=5, gender=None,
           age=31, image='https://cdn.example.com/c/1.jpg', visit_histories=[v2, v1]),
        ev('client_visit_update', datetime='2023-12-10T10:30:00Z',
           device_id='XYZ789', client=1),
        ev('client_visit_delete', **v2, client=1),
        ev('employee_create', id=1, first_name='John', last_name='Do"e\\',
           email='john.doe@example.com', phone_number=None,
           image='http://example.com/media/employee_images/john_doe.jpg',
           working_graphic=2),
        ev('employee_update', id=1, first_name='John', last_name='Do"e\\',
           email='john.doe@example.com', phone_number='1234567890', image=None,
           working_graphic=None),
        ev('employee_attendance', employee_id=1, device_id='123ABC',
           image='/media/attendance_images/attendance.jpg',
           datetime='2023-12-10T08:00:00Z', score=95),
        ev('employee_attendance', employee_id=1, device_id='42', image=None,
           datetime='2023-12-10T08:00:00.500000Z', score=95.5),
        ev('employee_attendance_delete', employee_id=1, datetime='2023-12-10T08:00:00Z'),
        ev('employee_delete', id=1),
        ev('employee_attendance_delete', employee_id=1,
           datetime='2023-12-10T08:00:00.500000Z'),
        ev('client_delete', id=1),
        ev('client_visit_delete', datetime='2023-12-10T10:30:00Z',
           device_id='XYZ789', client=1),
    ]
    # every one of the eleven events of the document is exercised
    assert len({e['event'] for e in expected}) == 11
    got = await sub.expect(len(expected), 15, 'document events')
    # client_create by parsed value and key order too, so that a failure
    # says which of value and bytes is wrong
    first = json.loads(got[0])
    check({k: first[k] for k in ('event', 'data')} == expected[0],
          'client_create parsed: ' + got[0])
    check(list(first) == ['event', 'data', 'seq', 'epoch'],
          'client_create top-level keys: %s' % list(first))
    check(list(first['data']) == list(expected[0]['data']),
          'client_create key order: %s' % list(first['data']))
    compare(got, expected, 'subscriber')


async def test_fanout(ctx):
    """2. three subscribers, the same sequence, in commit order."""
    subs = [await ctx.sub() for _ in range(3)]
    conns = [await ctx.aconn(autocommit=False) for _ in range(3)]
    expected = []
    await asql(conns[0], "INSERT INTO client (id, visit_count) VALUES (2000, 0)")
    await asyncio.to_thread(conns[0].commit)
    expected.append(('client_create', 2000, 0))
    n = 0
    for i in range(24):
        # transactions from three sessions, one after another: commit order
        # is the order below
        c = conns[i % 3]
        stmts = []
        for _ in range(1 + i % 3):
            stmts.append(("INSERT INTO visit_history (client_id, device_id) VALUES (2000, %s)",
                          ('t2-%03d' % n,)))
            expected.append(('client_visit_create', 't2-%03d' % n))
            n += 1
        if i % 4 == 0:
            stmts.append("UPDATE client SET visit_count = visit_count + 1 WHERE id = 2000")
            expected.append(('client_update', 2000, i // 4 + 1))
        await asql(c, *stmts)
        await asyncio.to_thread(c.commit)
    got = [await s.expect(len(expected), 15, 'subscriber %d' % k) for k, s in enumerate(subs)]
    for k, g in enumerate(got):
        compare_idents(g, expected, 'subscriber %d' % k)
    check(got[0] == got[1] == got[2], 'subscribers were sent different bytes')


async def test_rollbacks(ctx):
    """3. nothing from rolled-back work; the committed parts, in order."""
    sub = await ctx.sub()
    conn = await ctx.aconn(autocommit=False)

    def emp(i):
        return "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'e%d', 't3')" % (i, i)

    def pending():
        return "SELECT count(*) FROM pg_ws_pending_events()"

    async def tx(*stmts, commit=True):
        rows = await asql(conn, *stmts)
        await asyncio.to_thread(conn.commit if commit else conn.rollback)
        return rows

    await tx(emp(301))
    # a rolled-back transaction; its event was queued (pending) before
    rows = await tx(emp(302), pending(), commit=False)
    check(rows == [(1,)], 'employee 302 queued no pending event: %s' % rows)
    # savepoints: what a rolled-back savepoint did, released ones included,
    # is dropped; the rest commits
    rows = await tx(emp(303),
                    "SAVEPOINT a", emp(304),
                    "SAVEPOINT b", emp(305), "RELEASE b",
                    pending(), "ROLLBACK TO SAVEPOINT a",
                    emp(306), "RELEASE a",
                    "SAVEPOINT c", "SAVEPOINT d", emp(307), "RELEASE d", "RELEASE c",
                    pending())
    check(rows == [(3,)], 'pending events before COMMIT: %s, expected 3' % rows)
    # a PL/pgSQL block whose exception was caught rolls back its subtransaction
    conn.autocommit = True
    await asql(conn, """DO $$ BEGIN
        %s;
        BEGIN
            %s;
            RAISE EXCEPTION 'caught';
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
        %s;
    END $$""" % (emp(308), emp(309), emp(310)))
    # failed statements: one whose trigger had run, one failing in a transaction
    try:
        await asql(conn, "DO $$ BEGIN %s; RAISE EXCEPTION 'uncaught'; END $$" % emp(311))
        raise Fail('the uncaught exception did not fail the statement')
    except psycopg2.errors.RaiseException:
        pass
    conn.autocommit = False
    try:
        await asql(conn, emp(312), emp(301))            # duplicate key
        raise Fail('the duplicate key did not fail the statement')
    except psycopg2.errors.UniqueViolation:
        await asyncio.to_thread(conn.rollback)
    # a transaction that fails in COMMIT itself, after pg_ws queued its
    # events: SERIALIZABLE write skew, where the second committer is
    # "canceled on identification as a pivot, during commit attempt"
    a, b = await ctx.aconn(autocommit=False), await ctx.aconn(autocommit=False)
    for c in (a, b):
        c.set_session(isolation_level='SERIALIZABLE')
    await asql(a, "SELECT count(*) FROM employee WHERE last_name = 'ssi'")
    await asql(b, "SELECT count(*) FROM employee WHERE last_name = 'ssi'")
    await asql(a, emp(320).replace("'t3'", "'ssi'"))
    await asql(b, emp(321).replace("'t3'", "'ssi'"))
    await asyncio.to_thread(a.commit)
    try:
        await asyncio.to_thread(b.commit)
        raise Fail('the write skew did not fail at COMMIT (test set-up no longer works)')
    except psycopg2.errors.SerializationFailure:
        pass
    # the marker: once it has arrived, everything before it has too
    await tx(emp(399))
    await sub.wait_until(lambda m: any('"id": 399' in x for x in m), 15, 'marker 399')
    await asyncio.sleep(0.3)
    expected = [('employee_create', i) for i in (301, 303, 306, 307, 308, 310, 320, 399)]
    compare_idents(sub.msgs, expected, 'subscriber')


async def test_concurrency(ctx):
    """4. 8 writers, 10,000 events, 2 subscribers: exactly once, in order."""
    writers, total, shared = 8, 10000, 4000
    subs = [await ctx.sub() for _ in range(2)]
    setup = await ctx.aconn()
    await asql(setup, "INSERT INTO client (id, visit_count) SELECT g, 0"
                      " FROM generate_series(%d, %d) g" % (shared, shared + writers))
    seed = random.randrange(1 << 30)
    results = [None] * writers          # per writer: (visits, updates) or an error
    conns = [ctx.conn(autocommit=False) for _ in range(writers)]

    def write(w):
        rng = random.Random(seed + w)
        cur = conns[w].cursor()
        seq = updates = 0
        left = total // writers + (1 if w < total % writers else 0)
        try:
            while left:
                k = min(left, rng.randint(1, 6))
                # about a third of the transactions also bump the shared row
                upd_at = rng.randrange(k) if rng.random() < 0.35 else -1
                for j in range(k):
                    if j == upd_at:
                        cur.execute("UPDATE client SET visit_count = visit_count + 1"
                                    " WHERE id = %s", (shared,))
                    else:
                        cur.execute("INSERT INTO visit_history (client_id, device_id)"
                                    " VALUES (%s, %s)", (shared + 1 + w, 'w%d-%06d' % (w, seq)))
                        seq += 1
                conns[w].commit()
                left -= k
                updates += upd_at >= 0
            results[w] = (seq, updates)
        except Exception as e:
            results[w] = e

    t0 = time.monotonic()
    t_write = await run_threads(write, writers)
    errors = [r for r in results if not isinstance(r, tuple)]
    check(not errors, 'seed %d; writer errors: %s' % (seed, errors[:3]))
    n_updates = sum(u for _, u in results)
    expect_n = (writers + 1) + total
    got = [await s.expect(expect_n, 60, 'subscriber %d' % k) for k, s in enumerate(subs)]
    problems = []
    for k, msgs in enumerate(got):
        who = 'subscriber %d' % k
        if len(msgs) != expect_n:
            problems.append('%s: %d messages, expected %d' % (who, len(msgs), expect_n))
        seen = {}                           # device_id -> count
        last = [-1] * writers               # per writer: last sequence number
        counts = []                         # visit_count of the shared row, in order
        disorder = []                       # a writer's event after a later one
        for raw in msgs:
            m = json.loads(raw)
            e, d = m['event'], m['data']
            if e == 'client_visit_create':
                dev = d['device_id']
                seen[dev] = seen.get(dev, 0) + 1
                w, s = dev[1:].split('-')
                w, s = int(w), int(s)
                if s <= last[w]:
                    disorder.append('%s after w%d-%06d' % (dev, w, last[w]))
                last[w] = s
            elif e == 'client_update' and d['id'] == shared:
                counts.append(d['visit_count'])
            elif not (e == 'client_create' and shared <= d['id'] <= shared + writers):
                problems.append('%s: unexpected %s' % (who, short(raw)))
        if disorder:
            problems.append('%s: %d events out of writer order, e.g. %s'
                            % (who, len(disorder), disorder[:3]))
        dups = [d for d, c in seen.items() if c > 1]
        if dups:
            problems.append('%s: %d events arrived more than once, e.g. %s' % (who, len(dups), dups[:3]))
        want = {'w%d-%06d' % (w, s) for w in range(writers) for s in range(results[w][0])}
        missing = sorted(want - set(seen))
        if missing:
            problems.append('%s: %d events missing, e.g. %s' % (who, len(missing), missing[:3]))
        bad = [(a, b) for a, b in zip(counts, counts[1:]) if b <= a]
        if bad:
            problems.append('%s: shared client_update visit_count not increasing: %s'
                            % (who, bad[:5]))
        if sorted(counts) != list(range(1, n_updates + 1)):
            problems.append('%s: %d shared client_update events, %d committed'
                            % (who, len(counts), n_updates))
    if got[0] != got[1]:
        problems.append('the two subscribers were sent different sequences')
    summary = ('seed %d, %d shared updates, writers took %.1f s, all delivered after %.1f s'
               % (seed, n_updates, t_write, time.monotonic() - t0))
    check(not problems, summary, *problems[:30])
    return summary


async def test_worker_restart(ctx):
    """5. a subscriber that resumes after its last event gets what was
    committed while the worker was down, exactly once."""
    conn = await ctx.aconn()
    emp = "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'e', 't5')"
    old = await ctx.sub()
    await asql(conn, emp % 500)
    await old.expect(1, 10, 'live event before the restart', settle=0)
    before = await worker_row(conn)
    check(before is not None, 'no pg_ws worker in pg_stat_activity')

    rows = await asql(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE backend_type = 'pg_ws'")
    check(rows == [(True,)], 'pg_terminate_backend returned %s' % rows)
    try:
        await asyncio.wait_for(old.closed.wait(), 10)
    except asyncio.TimeoutError:
        raise Fail('the subscriber was not disconnected within 10 s')
    # a clean goodbye: 1001 going away, not a dropped connection (1006)
    check(old.ws.close_code == 1001, 'the worker closed the subscriber with code %r (%r),'
          ' expected 1001' % (old.ws.close_code, old.ws.close_reason))
    # at once, while the worker is down: three transactions, five events
    await asql(conn, emp % 501)
    await asql(conn, "BEGIN", emp % 502, emp % 503, "COMMIT")
    await asql(conn, "BEGIN", emp % 504, emp % 505, "COMMIT")
    row = await worker_row(conn)
    check(row is None or row[0] == before[0],
          'the worker was back (pid %s) before the events were committed' % (row,))

    await port_open(ctx.cl.wsport, 20)
    row = await worker_row(conn)
    check(row is not None and row[0] != before[0], 'no new pg_ws worker: %s' % (row,))
    # the old subscriber comes back after its last event; a new one starts live
    back = await ctx.sub(resume_path(old.msgs[-1]))
    new = await ctx.sub()
    await asql(conn, emp % 506)
    await asql(conn, "BEGIN", emp % 507, emp % 508, "COMMIT")
    expected = [('employee_create', i) for i in range(501, 509)]
    got = await back.expect(len(expected), 15, 'resumed subscriber')
    compare_idents(got, expected, 'resumed subscriber')
    check_positions(old.msgs[-1:] + got, 'old and resumed subscriber')
    got = await new.expect(3, 15, 'new subscriber')
    compare_idents(got, expected[-3:], 'new subscriber')
    check(old.msgs == [old.msgs[0]] and ident(old.msgs[0]) == ('employee_create', 500),
          'old subscriber got %s' % [short(m) for m in old.msgs])


async def test_http(ctx):
    """6. plain HTTP and wrong paths are answered, not served."""
    def get(path):
        c = http.client.HTTPConnection('127.0.0.1', ctx.cl.wsport, timeout=5)
        try:
            c.request('GET', path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    status, body = await asyncio.to_thread(get, '/ws/')
    check(status == 400, 'GET /ws/ without upgrade: %s %s' % (status, short(body)))
    status, body = await asyncio.to_thread(get, '/other')
    check(status == 404, 'GET /other: %s %s' % (status, short(body)))
    # /ws/ itself upgrades (so the rejections below are not a dead server)
    await ctx.sub('/ws/')
    try:
        await ctx.sub('/other')
        raise Fail('WebSocket upgrade to /other was accepted')
    except websockets.InvalidStatusCode as e:
        check(e.status_code == 404, 'upgrade to /other: HTTP %d, expected 404' % e.status_code)
    except websockets.InvalidMessage as e:
        # the client could not even read the answer: show what it was
        line = await asyncio.to_thread(upgrade_status_line, ctx.cl.wsport, '/other')
        raise Fail('upgrade to /other: the websockets client rejected the answer (%s: %s)'
                   % (e, e.__cause__),
                   'the server answered %r to an HTTP/1.1 upgrade request' % line)


def upgrade_status_line(port, path):
    """The status line the server answers a WebSocket upgrade of path with."""
    with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
        s.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'
                   'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
                   'Sec-WebSocket-Version: 13\r\n\r\n' % path).encode())
        return s.makefile('rb').readline().decode(errors='replace').rstrip()


async def test_only_after_connect(ctx):
    """A subscriber without ?since= gets what commits after it connected,
    not before."""
    conn = await ctx.aconn()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                     " VALUES (900001, 'before', 'connect')")
    sub = await ctx.sub()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                     " VALUES (900002, 'after', 'connect')",
               "DELETE FROM employee WHERE id IN (900001, 900002)")
    got = await sub.expect(3, 10, 'subscriber')
    compare_idents(got, [('employee_create', 900002), ('employee_delete', 900001),
                         ('employee_delete', 900002)], 'subscriber')


async def test_subprotocols(ctx):
    """A client asking for a subprotocol we lack gets a clear 400, not a
    dropped connection; asking for "pg_ws" works."""
    try:
        ws = await ws_connect(ctx.cl.url + '/ws/', subprotocols=['chat'],
                                      open_timeout=5)
        await ws.close()
        raise Fail('a subscriber asking for subprotocol "chat" was accepted')
    except websockets.InvalidStatusCode as e:
        check(e.status_code == 400, 'subprotocol "chat": HTTP %d, expected 400' % e.status_code)
    except websockets.InvalidMessage as e:
        raise Fail('subprotocol "chat": no valid HTTP answer (%s)' % e)
    ws = await ws_connect(ctx.cl.url + '/ws/', subprotocols=['x', 'pg_ws'],
                                  open_timeout=5)
    try:
        check(ws.subprotocol == 'pg_ws', 'negotiated subprotocol %r' % ws.subprotocol)
    finally:
        await ws.close()


async def test_events_filter(ctx):
    """?events= narrows a connection to the events it names: names and
    prefixes ending in '*' (percent-encoded or not); "*" and an empty value
    mean everything; a name pg_ws does not know (a typo, or an
    application's own event) takes only events of that name; a malformed
    pattern (a misplaced '*', one no event name can match, an empty item,
    more than 64) is a 400; a resuming connection replays only what its
    filter lets through."""
    for bad in ('client*x', '**', 'Client_create', 'client-create', '9lives', '_x',
                'x' * 64, 'client_create,', ',', 'client_%20create',
                ','.join(['client_create'] * 65)):
        try:
            await ctx.sub('/ws/?events=' + bad)
            raise Fail('?events=%s was accepted' % short(bad))
        except websockets.InvalidStatusCode as e:
            check(e.status_code == 400, '?events=%s: HTTP %d, expected 400'
                  % (short(bad), e.status_code))
    everything = await ctx.sub('/ws/')
    star = await ctx.sub('/ws/?events=*')
    empty = await ctx.sub('/ws/?events=')
    some = await ctx.sub('/ws/?events=client_create,employee_*')
    visits = await ctx.sub('/ws/?since=&events=client_visit_%2A')
    # names of no document event: accepted, and they take only their own
    typo = await ctx.sub('/ws/?events=client_creat,' + 'x' * 63)
    conn = await ctx.aconn()
    for stmt in [
            "INSERT INTO client (id, visit_count) VALUES (3001, 0)",
            "INSERT INTO visit_history (client_id, device_id) VALUES (3001, 'f1')",
            "UPDATE visit_history SET device_id = 'f1b' WHERE client_id = 3001",
            "UPDATE client SET visit_count = 1 WHERE id = 3001",
            "INSERT INTO employee (id, first_name, last_name) VALUES (3001, 'f', 'g')",
            "UPDATE employee SET first_name = 'h' WHERE id = 3001",
            "INSERT INTO attendance (employee_id, device_id, datetime, score)"
            " VALUES (3001, 'd', '2024-01-01 08:00:00+00', 1)",
            "DELETE FROM employee WHERE id = 3001",
            "DELETE FROM client WHERE id = 3001",
            # last: each filtered subscriber's final event, so that nothing
            # it should not have had can hide behind the count
            "INSERT INTO client (id, visit_count) VALUES (3002, 0)",
            "INSERT INTO visit_history (client_id, device_id) VALUES (3002, 'f2')"]:
        await asql(conn, stmt)
    all_msgs = await everything.expect(13, 15, 'unfiltered subscriber')
    names = [json.loads(m)['event'] for m in all_msgs]
    check(len(set(names)) == 11, 'the writes should make all eleven events: %s' % names)

    def only(pred):
        return [m for m in all_msgs if pred(json.loads(m)['event'])]

    for sub, want, who in [
            (star, all_msgs, 'events=*'),
            (empty, all_msgs, 'events= (empty)'),
            (some, only(lambda e: e == 'client_create' or e.startswith('employee_')),
             'events=client_create,employee_*'),
            (visits, only(lambda e: e.startswith('client_visit_')),
             'events=client_visit_%2A')]:
        got = await sub.expect(len(want), 15, who)
        check(got == want, '%s: got %s, expected %s'
              % (who, [json.loads(m)['event'] for m in got],
                 [json.loads(m)['event'] for m in want]))
    # none of the document's events reached the subscriber of unknown
    # names; an event of the name it asked for does
    await asql(conn, "SELECT pg_ws_send('client_creat', '{\"n\": 1}')")
    got = await typo.expect(1, 15, 'events=client_creat,xxx...')
    check([json.loads(m)['event'] for m in got] == ['client_creat'],
          'events=client_creat,xxx...: got %s' % [short(m, 80) for m in got])
    # resuming after the first event replays only what the filter lets
    # through, from the worker's history
    resumed = await ctx.sub(resume_path(all_msgs[0]) + '&events=employee_*')
    want = only(lambda e: e.startswith('employee_'))
    got = await resumed.expect(len(want), 15, 'resumed with events=employee_*')
    check(got == want, 'resumed with events=employee_*: got %s, expected %s'
          % ([json.loads(m)['event'] for m in got], [json.loads(m)['event'] for m in want]))


TESTS = [
    ('a subscriber gets only what commits after it connects', test_only_after_connect, 20),
    ('all eleven document events arrive byte for byte', test_document_events, 30),
    ('three subscribers get every event in commit order', test_fanout, 30),
    ('nothing from rolled-back work; committed parts in order', test_rollbacks, 30),
    ('8 writers, 10000 events, 2 subscribers: exactly once, in order', test_concurrency, 90),
    ('after a worker restart a resuming subscriber gets what was committed meanwhile',
     test_worker_restart, 45),
    ('HTTP: 400 on /ws/ without upgrade, 404 elsewhere', test_http, 20),
    ('subprotocols: 400 for one we lack, "pg_ws" accepted', test_subprotocols, 20),
    ('?events= filters: names and prefixes, "*" and empty for all, unknown names'
     ' take only their own events, 400 for malformed patterns', test_events_filter, 30),
]


# ------------------------------------------------------------------- main

def main():
    clusters = []

    async def setup():
        cl = Cluster(pgport=os.environ.get('PG_WS_E2E_PGPORT'),
                     wsport=os.environ.get('PG_WS_E2E_WSPORT'))
        clusters.append(cl)
        await asyncio.to_thread(cl.start)
        await cl.install()

    run_tap(TESTS, lambda: Ctx(clusters[0]), setup=setup,
            watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
