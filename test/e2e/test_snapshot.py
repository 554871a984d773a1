#!/usr/bin/python3
"""End-to-end tests of snapshot positions: a frontend reads its initial rows
and pg_ws_position() in one REPEATABLE READ transaction, subscribes with
/ws/?since=<position>, and applies every event it is sent to its rows.

  a. on a primary: 8 writers insert, update and delete clients, visits,
     employees, attendance and notes (with pg_ws_send) in transactions of
     mixed lengths, some holding their transaction open a while, some with
     savepoints rolled back, some rolled back whole, while 50 readers each
     take a snapshot and a position at a random moment (the position before
     or after their rows) and subscribe with it.  Every row carries a
     version that each change raises by one, so that each event a reader
     is sent must be the next change of its row: an event whose change the
     reader's rows already show, or a missing one, breaks the chain.  At the
     end every reader's rows, with its events applied, equal the tables;
  b. the same with the readers on a hot standby (snapshot and /ws/ both on
     the standby, the writers on the primary);
  c. positions that are not ones: bad text is refused with 400 before the
     upgrade; READ COMMITTED is refused with SQLSTATE 25000 and a hint; a
     position of another epoch (another database) gets resync_required;
  d. positions move between nodes: 20 readers take their rows and
     positions on the primary and subscribe on the standby;
  e. positions older than the worker's memory: 20 readers take theirs
     while the writers run but subscribe only after the worker has been
     restarted, so that their events are read back from the WAL;
  f. 30 readers reconnect after their first event, with their position
     and the event's (?since=<position>&after=<seq>): events their
     snapshot saw that follow that event must still be skipped.

Clusters (harness.Cluster), fsync and synchronous_commit on, started by
the suite: a primary and a streaming standby of it, a synchronous one for
the half of the writers that wait for it to apply their commits (so that
transactions become visible in another order than their events' order).

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_snapshot.py

Output is TAP; the exit status is 0 only if every test passed.
"""

import asyncio
import json
import os
import random
import sys
import threading
import time
from datetime import datetime

import psycopg2
import psycopg2.errors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, Ctx, Fail, Standby, asql, check,  # noqa: E402
                     position, restart_worker, run_tap, short, sql, upgrade_status)

WATCHDOG_SECONDS = 400

WRITERS = 8
READERS = 50
WRITE_SECONDS = 12

NODES = {}


async def setup():
    # (e)'s 20 readers resume from the WAL at once from one address: no
    # per-address bound here (test_catchup.py (f) tests it)
    primary = Cluster(name='primary', conf=['pg_ws.max_wal_resumes_per_address = 0'])
    await asyncio.to_thread(primary.start)
    await primary.install()
    conn = primary.connect()
    sql(conn, "CREATE TABLE snap_note (id bigint PRIMARY KEY)")
    conn.close()
    NODES['primary'] = primary
    standby = Standby(primary, 'standby')
    await asyncio.to_thread(standby.start)
    await standby.wait_listening(standby.wsport, 60)
    NODES['standby'] = standby
    # half the writers wait for the standby to apply their commits, the
    # others do not: the waiting ones are still in their commit paths
    # (their rows invisible) while later ones become visible, so that
    # snapshots see transactions in another order than the stream has them
    conn = primary.connect()
    sql(conn, "ALTER SYSTEM SET synchronous_standby_names = 'standby'",
        "SELECT pg_reload_conf()")
    conn.close()
    # and the standby applies commits a while after they arrive, so that
    # the waiting ones stay in their commit paths long enough to matter
    conn = standby.connect()
    sql(conn, "ALTER SYSTEM SET recovery_min_apply_delay = '100ms'",
        "SELECT pg_reload_conf()")
    conn.close()


# ------------------------------------------------------------ the rows

EPOCH_2000 = 946684800          # 2000-01-01 00:00:00 UTC


def seconds(text):
    """An event's timestamp ("2000-01-01T00:00:05Z") as seconds since 1970."""
    return int(datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp())


class State:
    """A reader's rows, each with its version:
        clients     id -> age (the version)
        visits      device_id -> (client, datetime in seconds: the version)
        employees   id -> working_graphic (the version)
        attendance  (employee_id, datetime in seconds)
        notes       id
    """

    def __init__(self):
        self.clients = {}
        self.visits = {}
        self.employees = {}
        self.attendance = set()
        self.notes = set()

    def as_tuple(self):
        return (self.clients, self.visits, self.employees, self.attendance, self.notes)


def read_rows(cur):
    st = State()
    cur.execute("SELECT id, age FROM client")
    st.clients = dict(cur.fetchall())
    cur.execute("SELECT device_id, client_id, extract(epoch FROM datetime)::bigint"
                " FROM visit_history")
    st.visits = {d: (c, t) for d, c, t in cur.fetchall()}
    cur.execute("SELECT id, working_graphic_id FROM employee")
    st.employees = dict(cur.fetchall())
    cur.execute("SELECT employee_id, extract(epoch FROM datetime)::bigint FROM attendance")
    st.attendance = set(cur.fetchall())
    cur.execute("SELECT id FROM snap_note")
    st.notes = {r[0] for r in cur.fetchall()}
    return st


def apply(st, raw, who):
    """Apply one message to st; Fail if it is not the next change of its row."""
    m = json.loads(raw)
    ev, d = m['event'], m['data']

    def bad(why):
        raise Fail('%s: %s: %s' % (who, why, short(raw, 200)))

    if ev == 'client_create':
        if d['id'] in st.clients:
            bad('a create of a client its rows have')
        st.clients[d['id']] = d['age']
    elif ev == 'client_update':
        if st.clients.get(d['id']) is None or d['age'] != st.clients[d['id']] + 1:
            bad('not the next version of client %s (rows: %s)'
                % (d['id'], st.clients.get(d['id'])))
        st.clients[d['id']] = d['age']
    elif ev == 'client_delete':
        if st.clients.pop(d['id'], None) is None:
            bad('a delete of a client its rows do not have')
    elif ev == 'client_visit_create':
        if d['device_id'] in st.visits:
            bad('a create of a visit its rows have')
        st.visits[d['device_id']] = (d['client'], seconds(d['datetime']))
    elif ev == 'client_visit_update':
        old = st.visits.get(d['device_id'])
        if old is None or seconds(d['datetime']) != old[1] + 1:
            bad('not the next version of visit %s (rows: %s)' % (d['device_id'], old))
        st.visits[d['device_id']] = (d['client'], seconds(d['datetime']))
    elif ev == 'client_visit_delete':
        if st.visits.pop(d['device_id'], None) is None:
            bad('a delete of a visit its rows do not have')
    elif ev == 'employee_create':
        if d['id'] in st.employees:
            bad('a create of an employee its rows have')
        st.employees[d['id']] = d['working_graphic']
    elif ev == 'employee_update':
        if st.employees.get(d['id']) is None or \
                d['working_graphic'] != st.employees[d['id']] + 1:
            bad('not the next version of employee %s (rows: %s)'
                % (d['id'], st.employees.get(d['id'])))
        st.employees[d['id']] = d['working_graphic']
    elif ev == 'employee_delete':
        if st.employees.pop(d['id'], None) is None:
            bad('a delete of an employee its rows do not have')
    elif ev == 'employee_attendance':
        key = (d['employee_id'], seconds(d['datetime']))
        if key in st.attendance:
            bad('a create of an attendance its rows have')
        st.attendance.add(key)
    elif ev == 'employee_attendance_delete':
        key = (d['employee_id'], seconds(d['datetime']))
        if key not in st.attendance:
            bad('a delete of an attendance its rows do not have')
        st.attendance.discard(key)
    elif ev == 'snap_note':
        if d['id'] in st.notes:
            bad('a note its rows have')
        st.notes.add(d['id'])
    elif ev == 'snap_done':
        pass
    else:
        bad('an event this test never makes')


def compare(st, final, who):
    names = ('clients', 'visits', 'employees', 'attendance', 'notes')
    for name, got, want in zip(names, st.as_tuple(), final.as_tuple()):
        if got != want:
            if isinstance(got, dict):
                diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                lines = ['  %r: reader %r, tables %r' % (k, got.get(k), want.get(k))
                         for k in diff[:5]]
            else:
                lines = ['  only the reader: %s' % sorted(got - want)[:5],
                         '  only the tables: %s' % sorted(want - got)[:5]]
            raise Fail('%s: its %s with its events applied differ from the tables '
                       '(%d rows there)' % (who, name, len(want)), *lines)


# ------------------------------------------------------------ the writers

class Writer:
    """One session that changes only rows of its own, so that writers never
    wait for each other's locks: the ids, device ids and attendance times
    it makes are its own."""

    def __init__(self, node, w, seed, run):
        self.node = node
        self.base = (run * 100 + w + 1) * 1000000
        self.error = None
        self.rng = random.Random(seed)
        self.next_n = 0
        self.model = {'clients': set(), 'visits': {}, 'employees': set(),
                      'attendance': set()}
        self.transactions = 0

    def n(self):
        self.next_n += 1
        return self.base + self.next_n

    def op(self, cur):
        rng, md = self.rng, self.model
        choices = ['client+', 'employee+', 'note']
        if md['clients']:
            choices += ['client~', 'client~', 'client-', 'visit+', 'visit+']
        if md['visits']:
            choices += ['visit~', 'visit-']
        if md['employees']:
            choices += ['employee~', 'employee-', 'attendance+', 'attendance+']
        if md['attendance']:
            choices += ['attendance-']
        what = rng.choice(choices)
        if what == 'client+':
            i = self.n()
            cur.execute("INSERT INTO client (id, age) VALUES (%s, 0)", (i,))
            md['clients'].add(i)
        elif what == 'client~':
            cur.execute("UPDATE client SET age = age + 1 WHERE id = %s",
                        (rng.choice(sorted(md['clients'])),))
        elif what == 'client-':
            i = rng.choice(sorted(md['clients']))
            cur.execute("DELETE FROM client WHERE id = %s", (i,))
            md['clients'].discard(i)
            md['visits'] = {d: c for d, c in md['visits'].items() if c != i}
        elif what == 'visit+':
            c = rng.choice(sorted(md['clients']))
            d = 'v%d' % self.n()
            cur.execute("INSERT INTO visit_history (client_id, datetime, device_id)"
                        " VALUES (%s, '2000-01-01 00:00:00+00', %s)", (c, d))
            md['visits'][d] = c
        elif what == 'visit~':
            cur.execute("UPDATE visit_history SET datetime = datetime + interval '1 second'"
                        " WHERE device_id = %s", (rng.choice(sorted(md['visits'])),))
        elif what == 'visit-':
            d = rng.choice(sorted(md['visits']))
            cur.execute("DELETE FROM visit_history WHERE device_id = %s", (d,))
            del md['visits'][d]
        elif what == 'employee+':
            i = self.n()
            cur.execute("INSERT INTO employee (id, first_name, last_name, working_graphic_id)"
                        " VALUES (%s, 'f', 'l', 0)", (i,))
            md['employees'].add(i)
        elif what == 'employee~':
            cur.execute("UPDATE employee SET working_graphic_id = working_graphic_id + 1"
                        " WHERE id = %s", (rng.choice(sorted(md['employees'])),))
        elif what == 'employee-':
            i = rng.choice(sorted(md['employees']))
            cur.execute("DELETE FROM employee WHERE id = %s", (i,))
            md['employees'].discard(i)
            md['attendance'] = {a for a in md['attendance'] if a[0] != i}
        elif what == 'attendance+':
            e = rng.choice(sorted(md['employees']))
            t = self.n()
            cur.execute("INSERT INTO attendance (employee_id, device_id, datetime, score)"
                        " VALUES (%s, 'a', to_timestamp(%s), 90)", (e, EPOCH_2000 + t))
            md['attendance'].add((e, t))
        elif what == 'attendance-':
            e, t = rng.choice(sorted(md['attendance']))
            cur.execute("DELETE FROM attendance WHERE employee_id = %s"
                        " AND datetime = to_timestamp(%s)", (e, EPOCH_2000 + t))
            md['attendance'].discard((e, t))
        else:
            i = self.n()
            cur.execute("INSERT INTO snap_note (id) VALUES (%s)", (i,))
            cur.execute("SELECT pg_ws_send('snap_note', jsonb_build_object('id', %s::bigint))",
                        (i,))

    def copy_model(self):
        return {k: (dict(v) if isinstance(v, dict) else set(v)) for k, v in self.model.items()}

    def transaction(self, conn):
        rng = self.rng
        before = self.copy_model()
        with conn.cursor() as cur:
            for _ in range(rng.choice((1, 1, 2, 3, 5, 8))):
                self.op(cur)
            if rng.random() < 0.2:
                # changes in a savepoint that is rolled back: never sent
                kept = self.copy_model()
                cur.execute("SAVEPOINT s")
                for _ in range(rng.randint(1, 3)):
                    self.op(cur)
                cur.execute("ROLLBACK TO SAVEPOINT s")
                self.model = kept
                self.op(cur)
            if rng.random() < 0.1:
                # a long transaction, committing well after snapshots that
                # do not see it
                time.sleep(rng.uniform(0.1, 1.0))
        if rng.random() < 0.05:
            conn.rollback()
            self.model = before
        else:
            conn.commit()
        self.transactions += 1

    def run(self, stop):
        conn = self.node.connect(autocommit=False, options='-c synchronous_commit=%s'
                                 % ('remote_apply' if self.base // 1000000 % 2 else 'local'))
        try:
            while not stop.is_set():
                self.transaction(conn)
        except Exception as e:
            self.error = e
        finally:
            conn.close()


# ------------------------------------------------------------ the readers

def take_snapshot(node, rng):
    """Rows and a position from one REPEATABLE READ transaction: the
    position first or last, as an application may do either."""
    conn = node.connect(autocommit=False)
    try:
        conn.set_session(isolation_level='REPEATABLE READ')
        with conn.cursor() as cur:
            first = rng.random() < 0.5
            if first:
                cur.execute("SELECT pg_ws_position()")
                pos = cur.fetchone()[0]
            st = read_rows(cur)
            if not first:
                cur.execute("SELECT pg_ws_position()")
                pos = cur.fetchone()[0]
        conn.commit()
        return st, pos
    finally:
        conn.close()


class Rejoined:
    """A reader's stream over two connections: what the first one got,
    then the second's."""

    def __init__(self, first, second):
        self.first, self.second = list(first.msgs), second

    @property
    def msgs(self):
        return self.first + self.second.msgs

    async def wait_until(self, pred, timeout, what):
        await self.second.wait_until(lambda m: pred(self.first + m), timeout, what)


async def reader(ctx, snap_node, ws_node, k, rng, start_at, out, later, reconnect=False):
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    st, pos = await asyncio.to_thread(take_snapshot, snap_node, rng)
    sub = None if later else await ctx.sub('/ws/?since=' + pos, url=ws_node.url)
    if reconnect:
        # after its first event it reconnects, from that event, with its
        # snapshot: events the snapshot saw must still be skipped
        await sub.wait_until(lambda m: len(m) >= 1, 60, 'reader %d, first event' % k)
        await sub.close()
        seq, epoch = position(sub.msgs[-1])
        sub = Rejoined(sub, await ctx.sub('/ws/?since=%s&after=%d&epoch=%s' % (pos, seq, epoch),
                                          url=ws_node.url))
    out[k] = (st, pos, sub)


async def handoff(ctx, reader_node, ws_node=None, nreaders=READERS, run=None,
                  later=False, reconnect=False):
    """Writers on the primary; readers take their rows and positions on
    reader_node and subscribe on ws_node (the same node by default): at
    once, or (later) only once the writers are done and ws_node's worker
    has been restarted, so that their events come back from the WAL."""
    p = NODES['primary']
    ws_node = ws_node or reader_node
    ctx.use(p)
    for node in (reader_node, ws_node):
        if node is not p:
            ctx.use(node)
    stop = threading.Event()
    run = run or (1 if reader_node is p else 2)
    writers = [Writer(p, w, 1000 * w + run, run) for w in range(WRITERS)]
    threads = [threading.Thread(target=wr.run, args=(stop,), daemon=True) for wr in writers]
    for t in threads:
        t.start()
    rng = random.Random(7)
    t0 = time.monotonic()
    readers = {}
    tasks = [asyncio.create_task(reader(ctx, reader_node, ws_node, k, random.Random(k),
                                        t0 + rng.uniform(0.5, WRITE_SECONDS - 1), readers,
                                        later, reconnect))
             for k in range(nreaders)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), WRITE_SECONDS + 60)
        while time.monotonic() < t0 + WRITE_SECONDS:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.05)
    errors = ['writer %d: %s' % (wr.base, wr.error) for wr in writers if wr.error]
    check(not errors, 'writers failed', *errors)
    if later:
        await restart_worker(ws_node)
        for k, (st, pos, _) in sorted(readers.items()):
            readers[k] = (st, pos, await ctx.sub('/ws/?since=' + pos, url=ws_node.url))
    conn = await asyncio.to_thread(p.connect)
    try:
        await asql(conn, "SELECT pg_ws_send('snap_done')")
    finally:
        conn.close()
    for k, (st, pos, sub) in sorted(readers.items()):
        await sub.wait_until(lambda m: m and '"snap_done"' in m[-1], 60,
                             'reader %d' % k)
    # the tables as the node the readers subscribed to has them by now
    ctx.use(ws_node)
    rconn = await ctx.aconn(autocommit=False)
    rconn.set_session(isolation_level='REPEATABLE READ')
    final = await asyncio.to_thread(lambda: read_rows(rconn.cursor()))
    await asyncio.to_thread(rconn.commit)
    events = 0
    for k, (st, pos, sub) in sorted(readers.items()):
        for raw in sub.msgs:
            apply(st, raw, 'reader %d (position %s)' % (k, pos))
        events += len(sub.msgs)
        compare(st, final, 'reader %d (position %s)' % (k, pos))
    check(sum(wr.transactions for wr in writers) > 100,
          'the writers made only %d transactions' % sum(wr.transactions for wr in writers))
    check(len(final.clients) + len(final.employees) > 50, 'hardly any rows were left')
    return ('%d transactions by %d writers; %d readers applied %d events to their rows '
            'and reached the tables\' %d clients, %d visits, %d employees, %d attendance, '
            '%d notes' % (sum(wr.transactions for wr in writers), WRITERS, nreaders, events,
                          len(final.clients), len(final.visits), len(final.employees),
                          len(final.attendance), len(final.notes)))


async def test_primary(ctx):
    """a. the handoff on the primary."""
    return await handoff(ctx, NODES['primary'])


async def test_standby(ctx):
    """b. the handoff on a hot standby."""
    return await handoff(ctx, NODES['standby'])


async def test_across_nodes(ctx):
    """d. rows and positions from the primary, subscribed on the standby."""
    return await handoff(ctx, NODES['primary'], NODES['standby'], nreaders=20, run=3)


async def test_from_wal(ctx):
    """e. positions older than the worker's memory: events from the WAL."""
    return await handoff(ctx, NODES['primary'], nreaders=20, run=4, later=True)


async def test_reconnect(ctx):
    """f. readers that reconnect after their first event keep their snapshot."""
    return await handoff(ctx, NODES['primary'], nreaders=30, run=5, reconnect=True)


async def test_bad_positions(ctx):
    """c. what is not a position is refused; READ COMMITTED is refused; a
    position of another epoch resyncs."""
    p = ctx.use(NODES['primary'])
    conn = await ctx.aconn(autocommit=False)
    conn.set_session(isolation_level='REPEATABLE READ')
    pos = (await asql(conn, "SELECT pg_ws_position()"))[0][0]
    await asyncio.to_thread(conn.commit)
    check(pos and all(c.isalnum() or c in '-_' for c in pos),
          'the position is not URL-safe: %r' % pos)
    for bad in ('abc', pos[:-3], pos + 'AAAA', pos.replace('A', '+', 1), 'A' * 44,
                '-' + pos[1:]):
        got = await upgrade_status(p.url, '/ws/?since=' + bad)
        check(got == 400, '?since=%s: %s, expected 400' % (bad, got))

    conn.set_session(isolation_level='READ COMMITTED')
    try:
        await asql(conn, "SELECT pg_ws_position()")
        raise Fail('pg_ws_position() in READ COMMITTED returned')
    except psycopg2.Error as e:
        await asyncio.to_thread(conn.rollback)
        check(e.pgcode == '25000' and 'REPEATABLE READ' in (e.diag.message_hint or ''),
              'READ COMMITTED: SQLSTATE %s, %s, hint %s'
              % (e.pgcode, e.diag.message_primary, e.diag.message_hint))

    # the same position with another database's OID: another epoch
    import base64
    raw = bytearray(base64.urlsafe_b64decode(pos + '=' * (-len(pos) % 4)))
    raw[12] ^= 1
    other = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')
    sub = await ctx.sub('/ws/?since=' + other)
    await sub.wait_until(lambda m: len(m) >= 1, 10, 'another epoch')
    check(json.loads(sub.msgs[0])['event'] == 'resync_required',
          'a position of another epoch: %s' % short(sub.msgs[0]))
    # it carries its timeline (layout 2): one this node never had resyncs
    check(raw[0] == 2 and int.from_bytes(raw[13:17], 'big') == 1,
          'layout %d, timeline %d' % (raw[0], int.from_bytes(raw[13:17], 'big')))
    raw[12] ^= 1
    raw[13:17] = (5).to_bytes(4, 'big')
    unknown = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')
    sub = await ctx.sub('/ws/?since=' + unknown)
    await sub.wait_until(lambda m: len(m) >= 1, 10, 'another timeline')
    check(json.loads(sub.msgs[0])['event'] == 'resync_required',
          'a position of timeline 5: %s' % short(sub.msgs[0]))
    # pg_ws 1.3's layout 1, without the timeline, is still a position
    old = base64.urlsafe_b64encode(bytes([1]) + bytes(raw[1:13]) + bytes(raw[17:]))
    # and the position itself resumes quietly: nothing was written since
    subs = [await ctx.sub('/ws/?since=' + pos),
            await ctx.sub('/ws/?since=' + old.decode().rstrip('='))]
    await asyncio.sleep(0.5)
    check(subs[0].msgs == [] and subs[1].msgs == [],
          'a fresh position was sent %s' % (subs[0].msgs[:2] + subs[1].msgs[:2]))
    w = await ctx.aconn()
    await asql(w, "INSERT INTO employee (id, first_name, last_name) VALUES (990001, 'p', 'p')")
    for sub, what in zip(subs, ('layout 2', 'layout 1')):
        got = await sub.expect(1, 15, what)
        check(len(got) == 1 and '"id": 990001,' in got[0], '%s: %s' % (what, got))
    check(subs[0].msgs == subs[1].msgs, 'the two layouts were sent different messages')


TESTS = [
    ('(c) a bad position is refused with 400, READ COMMITTED with 25000, another epoch'
     ' resyncs', test_bad_positions, 60),
    ('(a) primary: 8 writers, 50 readers with rows and a position each reach the'
     ' tables, every event the next change of its row', test_primary, 150),
    ('(b) standby: the same with snapshots and /ws/ on a hot standby', test_standby, 150),
    ('(d) 20 readers take rows and positions on the primary and subscribe on the'
     ' standby', test_across_nodes, 150),
    ('(e) 20 readers subscribe after a worker restart: their events come back from'
     ' the WAL, filtered alike', test_from_wal, 150),
    ('(f) 30 readers reconnect after their first event with since=<position>&after=<seq>:'
     ' what their snapshot saw is still skipped', test_reconnect, 150),
]

if __name__ == '__main__':
    run_tap(TESTS, Ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)
