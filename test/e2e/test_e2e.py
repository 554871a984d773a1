#!/usr/bin/python3
"""End-to-end tests of pg_ws against a real WebSocket client.

This file owns the end-to-end suite: it starts a throw-away PostgreSQL 15
cluster with pg_ws preloaded, installs the extension, changes rows of
client, visit_history, employee and attendance, and checks what real
`websockets` subscribers of ws://127.0.0.1:PORT/ws/ receive: every event of
the event document byte for byte, fan-out to several subscribers, nothing
from rolled-back work, exactly-once and commit order under concurrent
writers, replay after a worker restart, and the HTTP routing.  It does not
cover what the pg_regress suite covers (rendering edge cases one by one,
the queue-full path).

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
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import psycopg2
import websockets

PGBIN = '/usr/lib/postgresql/15/bin'
WATCHDOG_SECONDS = 280          # the whole run, setup and clean-up included


class Fail(Exception):
    """A test's expectation not met; its lines become TAP diagnostics."""

    def __init__(self, *lines):
        super().__init__('\n'.join(lines))


def check(cond, *lines):
    if not cond:
        raise Fail(*lines)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def short(s, n=300):
    s = str(s)
    return s if len(s) <= n else s[:n] + '...(%d chars)' % len(s)


# ---------------------------------------------------------------- cluster

class Cluster:
    """A temporary PostgreSQL 15 cluster run by the postgres user."""

    def __init__(self):
        self.pgport = int(os.environ.get('PG_WS_E2E_PGPORT') or free_port())
        self.wsport = int(os.environ.get('PG_WS_E2E_WSPORT') or free_port())
        while self.wsport == self.pgport:
            self.wsport = free_port()
        self.dir = tempfile.mkdtemp(prefix='pg_ws_e2e.')
        self.data = os.path.join(self.dir, 'data')
        self.log = os.path.join(self.dir, 'server.log')
        self.started = False
        pw = pwd.getpwnam('postgres')
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _as_postgres(self, *args):
        r = subprocess.run(['runuser', '-u', 'postgres', '--', *args],
                           cwd=self.dir, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError('%s failed (%d):\n%s'
                               % (os.path.basename(args[0]), r.returncode, r.stdout))

    def start(self):
        self._as_postgres(PGBIN + '/initdb', '-D', self.data, '-U', 'postgres',
                          '--auth=trust', '-E', 'UTF8', '--no-locale')
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write(f"""
# pg_ws end-to-end test cluster
shared_preload_libraries = 'pg_ws'
listen_addresses = ''
unix_socket_directories = '{self.dir}'
port = {self.pgport}
pg_ws.port = {self.wsport}
pg_ws.listen_addresses = '127.0.0.1'
pg_ws.database = 'postgres'
# a throw-away cluster: no need to wait for the disk
fsync = off
synchronous_commit = off
log_line_prefix = '%m [%p] %b '
""")
        self.started = True
        self._as_postgres(PGBIN + '/pg_ctl', '-D', self.data, '-l', self.log,
                          '-w', '-t', '60', 'start')

    def stop(self):
        if self.started:
            self.started = False
            try:
                self._as_postgres(PGBIN + '/pg_ctl', '-D', self.data,
                                  '-m', 'immediate', '-w', 'stop')
            except Exception as e:          # keep cleaning up
                print('# could not stop the cluster: %s' % e)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=60):
        try:
            with open(self.log, errors='replace') as f:
                return f.readlines()[-n:]
        except OSError as e:
            return ['(no server log: %s)\n' % e]

    def connect(self, autocommit=True, timezone=None):
        opts = '-c statement_timeout=60s'
        if timezone:
            opts += ' -c TimeZone=' + timezone
        conn = psycopg2.connect(host=self.dir, port=self.pgport, user='postgres',
                                dbname='postgres', options=opts)
        conn.autocommit = autocommit
        return conn

    @property
    def url(self):
        return 'ws://127.0.0.1:%d' % self.wsport


def sql(conn, *stmts):
    """Run statements on conn (blocking); return the last one's rows, if any."""
    rows = None
    with conn.cursor() as cur:
        for s in stmts:
            if isinstance(s, tuple):
                cur.execute(*s)
            else:
                cur.execute(s)
            rows = cur.fetchall() if cur.description else None
    return rows


async def asql(conn, *stmts):
    """sql() in a thread, so that subscribers keep reading meanwhile."""
    return await asyncio.to_thread(sql, conn, *stmts)


# ------------------------------------------------------------ subscribers

class Subscriber:
    """A /ws/ client that records every text message it is sent."""

    def __init__(self, ws):
        self.ws = ws
        self.msgs = []
        self.close_info = None
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url, path='/ws/'):
        # no pings: the test measures pg_ws, not keepalive timing
        ws = await websockets.connect(url + path, ping_interval=None,
                                      max_size=None, max_queue=None,
                                      close_timeout=1, open_timeout=10)
        return cls(ws)

    async def _read(self):
        try:
            async for m in self.ws:
                self.msgs.append(m)
        except websockets.ConnectionClosed as e:
            self.close_info = e
        except Exception as e:
            self.close_info = e
        finally:
            self.closed.set()

    async def wait_until(self, pred, timeout, what):
        """Wait until pred(msgs) holds; Fail if the connection closes first."""
        deadline = time.monotonic() + timeout
        while not pred(self.msgs):
            if self.closed.is_set():
                raise Fail('%s: connection closed (%s) after %d messages'
                           % (what, self.close_info, len(self.msgs)),
                           *self.last_lines())
            if time.monotonic() > deadline:
                raise Fail('%s: not there after %.0f s; %d messages arrived'
                           % (what, timeout, len(self.msgs)), *self.last_lines())
            await asyncio.sleep(0.02)

    async def expect(self, n, timeout, what, settle=0.3):
        """Wait for n messages, then a little longer to catch extra ones."""
        await self.wait_until(lambda m: len(m) >= n, timeout, what)
        await asyncio.sleep(settle)
        return list(self.msgs)

    def last_lines(self, k=5):
        return ['  last: ' + short(m) for m in self.msgs[-k:]]

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass
        self.task.cancel()


class Ctx:
    """What one test opened, so that it is closed even when the test fails."""

    def __init__(self, cluster):
        self.cl = cluster
        self.subs = []
        self.conns = []

    async def sub(self, path='/ws/'):
        s = await Subscriber.connect(self.cl.url, path)
        self.subs.append(s)
        return s

    def conn(self, **kw):
        c = self.cl.connect(**kw)
        self.conns.append(c)
        return c

    async def aconn(self, **kw):
        c = await asyncio.to_thread(self.cl.connect, **kw)
        self.conns.append(c)
        return c

    async def cleanup(self):
        for s in self.subs:
            await s.close()
        for c in self.conns:
            # a thread may still be inside a query on c (after a timeout):
            # cancel it first, and close without blocking the event loop
            try:
                c.cancel()
            except Exception:
                pass
            try:
                await asyncio.wait_for(asyncio.to_thread(c.close), 5)
            except Exception:
                pass


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
    for i, (raw, exp) in enumerate(zip(got, expected)):
        want = json.dumps(exp)      # separators ', ' and ': ', document order
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


def ident(raw):
    """A short identity of an event, to compare sequences compactly."""
    m = json.loads(raw)
    d = m['data']
    if m['event'].startswith('client_visit'):
        return (m['event'], d['device_id'])
    if m['event'] in ('client_create', 'client_update'):
        return (m['event'], d['id'], d['visit_count'])
    if m['event'].startswith('employee_attendance'):
        return (m['event'], d['employee_id'], d['datetime'])
    return (m['event'], d['id'])


def compare_idents(got, expected, who):
    ids = [ident(m) for m in got]
    if ids == expected:
        return
    i = next((k for k, (a, b) in enumerate(zip(ids, expected)) if a != b),
             min(len(ids), len(expected)))
    raise Fail('%s: %d messages, expected %d; first difference at %d'
               % (who, len(ids), len(expected), i),
               '  expected: %s' % (expected[i:i + 5],),
               '  got:      %s' % (ids[i:i + 5],))


async def worker_row(conn):
    """(pid, seconds since the pg_ws worker started), or None."""
    rows = await asql(conn, "SELECT pid, extract(epoch FROM clock_timestamp() - backend_start)"
                            " FROM pg_stat_activity WHERE backend_type = 'pg_ws'")
    return (rows[0][0], float(rows[0][1])) if rows else None


async def port_open(port, timeout):
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', port), 1)
            w.close()
            return
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise Fail('port %d still refuses connections after %.0f s' % (port, timeout))
            await asyncio.sleep(0.05)


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
    check(first == expected[0], 'client_create parsed: ' + got[0])
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

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(writers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.05)
    t_write = time.monotonic() - t0
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
    """5. events committed while the worker is down reach a new subscriber."""
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
    new = await ctx.sub()
    # live events after the replayed ones
    await asql(conn, emp % 506)
    await asql(conn, "BEGIN", emp % 507, emp % 508, "COMMIT")
    expected = [('employee_create', i) for i in range(501, 509)]
    got = await new.expect(len(expected), 15, 'new subscriber')
    compare_idents(got, expected, 'new subscriber')
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


TESTS = [
    ('all eleven document events arrive byte for byte', test_document_events, 30),
    ('three subscribers get every event in commit order', test_fanout, 30),
    ('nothing from rolled-back work; committed parts in order', test_rollbacks, 30),
    ('8 writers, 10000 events, 2 subscribers: exactly once, in order', test_concurrency, 90),
    ('after a worker restart a new subscriber gets what was committed meanwhile',
     test_worker_restart, 45),
    ('HTTP: 400 on /ws/ without upgrade, 404 elsewhere', test_http, 20),
]


# ------------------------------------------------------------------- main

async def setup(cl):
    """Install the extension, wait for the worker, and outwait its grace
    period, so that a new subscriber starts at the newest event, not at the
    first one of the worker's life."""
    conn = await asyncio.to_thread(cl.connect)
    try:
        await asql(conn, "CREATE EXTENSION pg_ws")
        deadline = time.monotonic() + 30
        while (row := await worker_row(conn)) is None:
            check(time.monotonic() < deadline, 'the pg_ws worker did not start')
            await asyncio.sleep(0.1)
        # the port must be ours: another server may hold a port set by hand
        deadline = time.monotonic() + 30
        mine = 'pg_ws listening on 127.0.0.1, port %d,' % cl.wsport
        while not any(mine in line for line in cl.log_tail(1000)):
            refused = [line for line in cl.log_tail(1000) if 'pg_ws could not listen' in line]
            check(not refused and time.monotonic() < deadline,
                  'the pg_ws worker is not listening on port %d' % cl.wsport, *refused)
            await asyncio.sleep(0.1)
        await port_open(cl.wsport, 30)
        grace = int((await asql(conn, "SELECT setting FROM pg_settings"
                                      " WHERE name = 'pg_ws.reconnect_grace'"))[0][0])
        await asyncio.sleep(max(0.0, grace / 1000 - row[1]) + 0.5)
    finally:
        conn.close()


async def run_tests(cl):
    failed = 0
    for k, (name, fn, timeout) in enumerate(TESTS, 1):
        ctx = Ctx(cl)
        diag, note = [], None
        try:
            note = await asyncio.wait_for(fn(ctx), timeout)
        except Fail as e:
            diag = str(e).splitlines()
        except asyncio.TimeoutError:
            diag = ['timed out after %d s' % timeout]
        except Exception:
            diag = traceback.format_exc().splitlines()
        finally:
            await ctx.cleanup()
        failed += bool(diag)
        print('%s %d - %s' % ('not ok' if diag else 'ok', k, name))
        for line in diag or ([note] if note else []):
            print('# ' + line)
        sys.stdout.flush()
    return failed


def main():
    print('1..%d' % len(TESTS))
    sys.stdout.flush()
    cl = Cluster()
    done = threading.Event()

    def watchdog():
        # a last resort against a hang no per-test timeout could break
        if not done.wait(WATCHDOG_SECONDS):
            print('Bail out! the run took longer than %d s' % WATCHDOG_SECONDS)
            for line in cl.log_tail():
                print('# ' + line.rstrip())
            sys.stdout.flush()
            cl.stop()
            cl.remove()
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    status = 1
    t0 = time.monotonic()
    try:
        cl.start()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(setup(cl))
        except Exception as e:
            print('Bail out! setup failed: %s' % str(e).replace('\n', ' | '))
            raise SystemExit
        failed = loop.run_until_complete(run_tests(cl))
        print('# %d of %d tests failed; %.1f s' % (failed, len(TESTS), time.monotonic() - t0))
        status = 1 if failed else 0
    except SystemExit:
        pass
    except Exception:
        print('Bail out! %s' % traceback.format_exc().replace('\n', ' | '))
    finally:
        if status != 0:
            print('# server log tail:')
            for line in cl.log_tail():
                print('#   ' + line.rstrip())
        cl.stop()
        cl.remove()
        done.set()
        sys.stdout.flush()
    # worker threads of a timed-out test may still be blocked; do not wait
    os._exit(status)


if __name__ == '__main__':
    main()
