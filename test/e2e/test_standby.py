#!/usr/bin/python3
"""End-to-end tests of pg_ws on hot standbys: a primary and two streaming
standbys (pg_basebackup -R), each with its own pg_ws worker on its own
port, all on 127.0.0.1.

  a. 8 writers on the primary; subscribers on all three nodes each get
     every committed event once, in order, byte for byte the same messages
     (so equal seq and epoch for equal events); one subscriber hops from
     node to node with ?since= while the writers run and misses nothing;
  b. custom events (pg_ws_send on the primary) reach the standbys' subscribers
     byte for byte as the primary's, filtered by ?events= by their names;
     pg_ws_send on a standby is refused;
  c. the primary is stopped while writers run and a standby is promoted:
     the writers carry on there, and subscribers of the old primary resume
     on the promoted node with their last seq and miss nothing;
  d. a role that may only log in writes logical messages with prefix
     pg_ws on the primary (60 MB of them in a transaction it keeps open):
     the standbys never send them, keep serving the events committed
     meanwhile, count them, and their workers' heaps stay flat;
  e. a standby waits for a position it has not replayed yet (from a node
     ahead of it) and resumes exactly there; one that no node reaches gets
     resync_required within 10 seconds;
  f. a subscriber joins a standby whose worker (re)starts while a
     transaction's event record is replayed and its commit record is not
     yet: it gets that transaction's events once the commit is replayed;
  g. /health for a balancer: each node's role, /health/primary and
     /health/standby answer 503 on the other role; a standby whose replay
     is paused answers 503 once it is pg_ws.health_max_replay_lag behind
     the WAL it received (and /metrics' pg_ws_standby_* gauges say so, on
     standbys only), and one whose upstream is gone once it has
     received nothing for that long; both 200 again when they recover.
  (c runs last: it stops the primary.)

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_standby.py

Output is TAP; the exit status is 0 only if every test passed.
"""

import asyncio
import json
import os
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PGBIN, Cluster, Ctx, Fail, Standby, check,  # noqa: E402
                     check_positions, poll, position, restart_worker, run_tap,
                     short, sql)
import rawws  # noqa: E402

WATCHDOG_SECONDS = 420

EMP = "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 's', 's')"


NODES = {}


async def setup():
    # no autovacuum: (f)'s standby delays every commit record, and one of
    # autoanalyze's would hold up the replay of the record (f) waits for
    primary = Cluster(name='primary', conf=['autovacuum = off'])
    await asyncio.to_thread(primary.start)
    await primary.install()
    NODES['primary'] = primary
    for name in ('standby1', 'standby2'):
        st = Standby(primary, name)
        await asyncio.to_thread(st.start)
        await st.wait_listening(st.wsport, 60)
        NODES[name] = st


def ids_of(msgs):
    return [json.loads(m)['data']['id'] for m in msgs]


def write(node, first, ntx, stop=None, done=None):
    """Insert employees first, first+1 ... two per transaction, retrying the
    connection (it may move); the ids whose COMMIT returned."""
    committed = []
    conn = None
    i = 0
    while i < ntx and not (stop and stop.is_set()):
        try:
            if conn is None:
                conn = node().connect()
            n = first + 2 * i
            sql(conn, "BEGIN", EMP % n, EMP % (n + 1), "COMMIT")
            committed += [n, n + 1]
            i += 1
        except psycopg2.Error:
            conn = None
            time.sleep(0.05)
    if done is not None:
        done.extend(committed)
    return committed


async def wait_ids(sub, last, timeout, who):
    await sub.wait_until(lambda m: any('"id": %d,' % last in x for x in m[-20:]),
                         timeout, who)


async def test_three_nodes(ctx):
    """a. every node serves every event, with the same positions."""
    p, s1, s2 = NODES['primary'], NODES['standby1'], NODES['standby2']
    for node in (s1, s2, p):
        ctx.use(node)           # their log tails if it fails
    subs = {}
    for name, node in (('primary', p), ('standby1', s1), ('standby2', s2)):
        subs[name] = await ctx.sub(url=node.url)
    hopper = await ctx.sub(url=p.url)
    hops = [('primary', 0)]
    results = [[] for _ in range(8)]
    threads = [threading.Thread(target=lambda k=k: results[k].extend(
        write(lambda: p, 1000000 + k * 100000, 150)), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    received = []               # the hopper's messages, over all its nodes
    order = [s1, s2, p, s2, s1]
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.3)
        if order and len(hopper.msgs) >= 50:
            received += hopper.msgs
            await hopper.close()
            node = order.pop(0)
            seq, epoch = position(received[-1])
            hopper = await ctx.sub('/ws/?since=%d&epoch=%s' % (seq, epoch), url=node.url)
            hops.append((node.name, len(received)))
    sql_conn = p.connect()
    sql(sql_conn, EMP % 1999999)
    sql_conn.close()
    for name, sub in subs.items():
        await wait_ids(sub, 1999999, 60, name)
    await wait_ids(hopper, 1999999, 60, 'hopper')
    await asyncio.sleep(0.3)
    received += hopper.msgs
    committed = sorted(sum(results, [])) + [1999999]
    ref = subs['primary'].msgs
    check_positions(ref, 'primary')
    check(sorted(ids_of(ref)) == committed,
          'primary subscriber: %d messages, %d committed' % (len(ref), len(committed)))
    for name in ('standby1', 'standby2'):
        check(subs[name].msgs == ref,
              '%s: %d messages, primary %d; first difference at %s' % (
                  name, len(subs[name].msgs), len(ref),
                  next((i for i, (a, b) in enumerate(zip(subs[name].msgs, ref)) if a != b),
                       None)))
    check(received == ref, 'the hopper (%s) got %d messages, the primary %d; first'
          ' difference at %s' % (hops, len(received), len(ref),
                                  next((i for i, (a, b) in enumerate(zip(received, ref))
                                        if a != b), None)))
    return '%d events, identical on 3 nodes; the hopper moved %s' % (
        len(ref), ' -> '.join('%s@%d' % h for h in hops))


async def test_custom_events(ctx):
    """b. custom events are served by the standbys like row events."""
    p, s1, s2 = NODES['primary'], NODES['standby1'], NODES['standby2']
    for node in (s1, s2, p):
        ctx.use(node)
    subs = [await ctx.sub(url=node.url) for node in (p, s1, s2)]
    orders = await ctx.sub('/ws/?events=order_*', url=s2.url)
    conn = p.connect()
    try:
        sql(conn, "BEGIN", EMP % 2000001,
            "SELECT pg_ws_send('order_paid', '{\"order\": 1, \"who\": \"Zo\u00eb\"}')",
            "COMMIT")
        sql(conn, "SELECT pg_ws_send('invoice_paid', NULL)")
        sql(conn, "SELECT pg_ws_send('order_shipped', '[1, 2]')")
    finally:
        conn.close()
    for sub, who in zip(subs, ('primary', 'standby1', 'standby2')):
        await sub.expect(4, 30, who)
    check(subs[1].msgs == subs[0].msgs and subs[2].msgs == subs[0].msgs,
          'the nodes sent different messages:', *[short(m) for m in subs[0].msgs],
          *[short(m) for m in subs[1].msgs + subs[2].msgs])
    names = [json.loads(m)['event'] for m in subs[0].msgs]
    check(names == ['employee_create', 'order_paid', 'invoice_paid', 'order_shipped'],
          'events: %s' % names)
    check_positions(subs[0].msgs, 'primary')
    got = await orders.expect(2, 30, 'standby2 ?events=order_*')
    check(got == [subs[0].msgs[1], subs[0].msgs[3]],
          'standby2 with ?events=order_*: %s' % [short(m) for m in got])
    # a standby cannot send: the event would have to be written to the WAL
    conn = s1.connect()
    try:
        sql(conn, "SELECT pg_ws_send('order_paid', '{}')")
        raise Fail('pg_ws_send() worked on a standby')
    except psycopg2.Error as e:
        check('during recovery' in str(e), 'pg_ws_send() on a standby: %s' % e)
    finally:
        conn.close()


async def test_promotion(ctx):
    """c. the primary stops, a standby is promoted, nothing is missed."""
    p, s1 = NODES['primary'], NODES['standby1']
    ctx.use(s1)
    ctx.use(p)
    on_p = await ctx.sub(url=p.url)
    on_s1 = await ctx.sub(url=s1.url)
    target = {'node': p}
    stop = threading.Event()
    done = []
    writer = threading.Thread(target=write, args=(lambda: target['node'], 3000000, 400,
                                                  stop, done), daemon=True)
    writer.start()
    await on_p.wait_until(lambda m: len(m) >= 100, 30, 'primary subscriber')
    # the old primary goes; what it committed reached the standby (a fast
    # shutdown sends the WAL to the standbys first)
    await asyncio.to_thread(p.as_postgres, PGBIN + '/pg_ctl', '-D', p.data, '-m', 'fast',
                            '-w', 'stop')
    p.started = False
    mark = s1.log_size()
    await asyncio.to_thread(s1.as_postgres, PGBIN + '/pg_ctl', '-D', s1.data, '-w',
                            'promote')
    target['node'] = s1
    await s1.wait_listening(s1.wsport, 60, since=mark)
    await asyncio.wait_for(on_p.closed.wait(), 30)
    moved = await ctx.sub('/ws/?since=%d&epoch=%s' % position(on_p.msgs[-1]), url=s1.url)
    await asyncio.wait_for(on_s1.closed.wait(), 30)     # its worker restarted
    moved_s1 = await ctx.sub('/ws/?since=%d&epoch=%s' % position(on_s1.msgs[-1]),
                             url=s1.url)
    while writer.is_alive():
        await asyncio.sleep(0.1)
    conn = s1.connect()
    last = sql(conn, "SELECT max(id) FROM employee WHERE id BETWEEN 3000000 AND 3999999")[0][0]
    rows = [r[0] for r in sql(conn, "SELECT id FROM employee WHERE id BETWEEN 3000000"
                                    " AND 3999999 ORDER BY id")]
    conn.close()
    for sub, who in ((moved, 'moved from the old primary'), (moved_s1, 'moved on standby1')):
        await wait_ids(sub, last, 60, who)
    await asyncio.sleep(0.3)
    for before, sub, who in ((on_p, moved, 'old primary, then promoted'),
                             (on_s1, moved_s1, 'standby1, then promoted')):
        msgs = before.msgs + sub.msgs
        check_positions(msgs, who)
        got = ids_of(msgs)
        check(sorted(got) == rows and len(set(got)) == len(got),
              '%s: %d events (%d distinct), the promoted node has %d rows'
              % (who, len(got), len(set(got)), len(rows)))
    return '%d events; %d before the switch on the old primary' % (len(rows), len(on_p.msgs))


def stats(node, cols):
    conn = node.connect()
    try:
        return sql(conn, "SELECT %s FROM pg_ws_stats" % cols)[0]
    finally:
        conn.close()


async def wait_replayed(node, lsn, timeout=30):
    """Until the standby has replayed the WAL up to lsn (text)."""
    deadline = time.monotonic() + timeout
    conn = node.connect()
    try:
        while not sql(conn, "SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % lsn)[0][0]:
            check(time.monotonic() < deadline, '%s has not replayed %s' % (node.name, lsn))
            await asyncio.sleep(0.05)
    finally:
        conn.close()


FORGED = ("SELECT pg_logical_emit_message(%s, 'pg_ws', '{\"event\": \"client_delete\", "
          "\"data\": {\"id\": 1}}' || E'\\n' || repeat('x', %d) || E'\\n')")


async def test_forged(ctx):
    """d. a role that may only log in writes logical messages with pg_ws's
    old prefix on the primary, 60 MB of them in a transaction it keeps
    open: the standbys never send them, keep sending the real events
    committed meanwhile, and their workers' heaps do not grow by them."""
    p, s1 = NODES['primary'], NODES['standby1']
    ctx.use(s1)
    ctx.use(p)
    admin = p.connect()
    sql(admin, "DROP ROLE IF EXISTS forger", "CREATE ROLE forger LOGIN")
    forger = psycopg2.connect(host=p.dir, port=p.pgport, user='forger', dbname='postgres')
    ctx.conns += [admin, forger]
    on_p = await ctx.sub(url=p.url)
    on_s1 = await ctx.sub(url=s1.url)
    sql(admin, EMP % 4000001)
    await on_s1.expect(1, 30, 'standby1, before')
    heap_before = stats(s1, 'worker_memory_bytes')[0]
    ignored_before = stats(s1, "COALESCE((to_jsonb(pg_ws_stats)->'ignored_records'"
                               "->>'logical_message')::int, 0)")[0]
    # the open transaction, with three 20 MB messages
    await asyncio.to_thread(sql, forger, *[FORGED % ('true', 20 << 20)] * 3)
    await asyncio.to_thread(sql, forger, FORGED % ('false', 100))
    sql(admin, EMP % 4000002)
    lsn = sql(admin, "SELECT pg_current_wal_flush_lsn()::text")[0][0]
    await wait_replayed(s1, lsn)
    got = await on_s1.expect(2, 30, 'standby1, a real event after the open transaction\'s messages')
    check(ids_of(got) == [4000001, 4000002], 'standby1: %s' % [short(m, 80) for m in got])
    await asyncio.sleep(1.2)        # the worker's figures, published again
    heap_open = stats(s1, 'worker_memory_bytes')[0]
    await asyncio.to_thread(sql, forger, "COMMIT")
    sql(admin, EMP % 4000003)
    for sub, who in ((on_p, 'primary'), (on_s1, 'standby1')):
        got = await sub.expect(3, 30, who, settle=0.5)
        check(ids_of(got) == [4000001, 4000002, 4000003], '%s: %s' % (who, [short(m, 80) for m in got]))
    check(on_s1.msgs == on_p.msgs, 'standby1 and the primary sent different messages')
    check(heap_open - heap_before < 10 << 20,
          'standby1\'s worker heap grew by %d bytes with 60 MB of forged messages in an open'
          ' transaction' % (heap_open - heap_before))
    await asyncio.sleep(1.2)
    ignored = stats(s1, "(ignored_records->>'logical_message')::int")[0]
    check(ignored == ignored_before + 4, 'standby1 ignored_records.logical_message: %d, expected %d'
          % (ignored, ignored_before + 4))
    return 'real events only, heap +%d bytes while 60 MB of messages stayed open; %d ignored' % (
        heap_open - heap_before, ignored - ignored_before)


async def test_future_position(ctx):
    """e. a standby waits for a position it has not replayed yet and
    resumes there once replay reaches it; a position no node has reached
    gets resync_required within 10 seconds, never silence."""
    p, s2 = NODES['primary'], NODES['standby2']
    ctx.use(s2)
    ctx.use(p)
    on_p = await ctx.sub(url=p.url)
    admin = p.connect()
    st = s2.connect()
    ctx.conns += [admin, st]
    sql(st, "SELECT pg_wal_replay_pause()")
    sql(admin, EMP % 4100001)
    sql(admin, EMP % 4100002)
    got = await on_p.expect(2, 30, 'primary')
    seq, epoch = position(got[0])
    ahead = await ctx.sub('/ws/?since=%d&epoch=%s' % (seq, epoch), url=s2.url)
    await asyncio.sleep(1.0)
    check(not ahead.msgs, 'standby2 sent %s before replaying' % short(ahead.msgs[:1]))
    sql(st, "SELECT pg_wal_replay_resume()")
    back = await ahead.expect(1, 30, 'standby2 after replay resumed', settle=0.5)
    check(back == got[1:], 'standby2: %s' % [short(m, 80) for m in back])
    future = seq + (1 << 40)
    t0 = time.monotonic()
    far = await ctx.sub('/ws/?since=%d&epoch=%s' % (future, epoch), url=s2.url)
    await far.wait_until(lambda m: len(m) >= 1, 30, 'a position far ahead')
    first = json.loads(far.msgs[0])
    check(first['event'] == 'resync_required' and first['data']['since'] == future,
          'far ahead: %s' % short(far.msgs[0]))
    return 'waited for replay, then resumed; far ahead: resync_required after %.1f s' % (
        time.monotonic() - t0)


async def test_join_while_committing(ctx):
    """f. a transaction between its pg_ws record and its commit record on a
    standby while the standby's worker starts: a subscriber who joins then
    gets its events when the commit is replayed, then the next ones."""
    p = NODES['primary']
    ctx.use(p)
    # a standby of its own that applies commit records only after a delay
    # (other records at once), set before it starts: the transaction's
    # record is replayed, its commit waits until the delay is lifted
    s3 = Standby(p, 'standby3')
    s3.conf = ["recovery_min_apply_delay = '1h'"]
    ctx.use(s3)
    await asyncio.to_thread(s3.start)
    await s3.wait_listening(s3.wsport, 60)
    on_p = await ctx.sub(url=p.url)
    admin = p.connect()
    st = s3.connect()
    ctx.conns += [admin, st]
    try:
        sql(admin, "BEGIN", EMP % 4300001, EMP % 4300002, "COMMIT")
        got = await on_p.expect(2, 30, 'primary')
        seq = position(got[0])[0]
        deadline = time.monotonic() + 30
        while sql(st, "SELECT pg_last_wal_replay_lsn() - '0/0' <= %d" % seq)[0][0]:
            check(time.monotonic() < deadline, 'standby3 did not replay the event record')
            await asyncio.sleep(0.05)
        await restart_worker(s3)
        check(sql(st, "SELECT count(*) FROM employee WHERE id = 4300001")[0][0] == 0,
              'the commit was replayed before the worker started')
        joined = await ctx.sub(url=s3.url)
        sql(admin, EMP % 4300003)
        await on_p.expect(3, 30, 'primary')
    finally:
        sql(st, "ALTER SYSTEM SET recovery_min_apply_delay = 0", "SELECT pg_reload_conf()")
    back = await joined.expect(3, 30, 'joined standby3 while the transaction committed')
    check(back == on_p.msgs, 'the subscriber who joined standby3 got %s'
          % [short(m, 80) for m in back])
    s3.stop()
    return 'the committing transaction\'s 2 events, then the next'


async def health(node, path='/health'):
    """(status, the JSON body) of a GET of path on node's pg_ws port."""
    raw = ('GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % (path, node.wsport)).encode()
    status, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, node.wsport, raw)
    return status, json.loads(body)


async def standby_gauges(node):
    """The pg_ws_standby_* samples of node's /metrics, by name."""
    raw = ('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % node.wsport).encode()
    status, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, node.wsport, raw)
    check(status == 200, '%s /metrics: %s' % (node.name, status))
    text = body.decode() if isinstance(body, bytes) else body
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith('pg_ws_standby_')}


async def test_health(ctx):
    """g. /health: role, role-only paths, replay lag and a lost upstream."""
    p, s2 = NODES['primary'], NODES['standby2']
    ctx.use(s2)
    ctx.use(p)
    admin = p.connect()
    st = s2.connect()
    ctx.conns += [admin, st]
    for node, role, other in ((p, 'primary', 'standby'), (s2, 'standby', 'primary')):
        status, body = await health(node)
        check(status == 200 and body['role'] == role, '%s /health: %d %s' % (role, status, body))
        status, body = await health(node, '/health/' + role)
        check(status == 200, '%s /health/%s: %d %s' % (role, role, status, body))
        status, body = await health(node, '/health/' + other)
        check(status == 503 and body['reason'].startswith('this node is'),
              '%s /health/%s: %d %s' % (role, other, status, body))
    status, body = await health(p)
    check('replay_lag_bytes' not in body, 'the primary reports a replay lag: %s' % body)

    async def standby_health(want_status, want_reason='', receiving=False):
        status, body = await health(s2)
        if status == want_status and want_reason in body.get('reason', '') and \
                (not receiving or body.get('receiving') is True):
            return body
        return None

    # caught up and streaming
    body = await poll('standby2 streaming, no replay lag',
                      lambda: standby_health(200, receiving=True))
    check(body['receiving'] is True and body['replay_lag_bytes'] == 0,
          'standby2 caught up: %s' % body)

    sql(st, "ALTER SYSTEM SET pg_ws.health_max_replay_lag = '1s'", "SELECT pg_reload_conf()")
    conninfo = sql(st, "SHOW primary_conninfo")[0][0]
    try:
        # replay paused while the primary writes: received, not replayed
        sql(st, "SELECT pg_wal_replay_pause()")
        sql(admin, EMP % 4200001)
        lagging = await poll('standby2 503 for its replay lag',
                             lambda: standby_health(503, 'replay is'), timeout=30)
        check(lagging['replay_lag_bytes'] > 0 and lagging['replay_lag_seconds'] > 1
              and lagging['receiving'] is True, 'standby2 lagging: %s' % lagging)
        # and /metrics says the same, on the standby only
        gauges = await standby_gauges(s2)
        check(gauges.get('pg_ws_standby_receiving') == 1 and
              gauges.get('pg_ws_standby_replay_lag_bytes', 0) > 0 and
              gauges.get('pg_ws_standby_replay_lag_seconds', 0) > 1,
              'standby2 /metrics while lagging: %s' % gauges)
        check(await standby_gauges(p) == {}, 'the primary\'s /metrics has standby gauges')
        sql(st, "SELECT pg_wal_replay_resume()")
        body = await poll('standby2 200 once replay caught up', lambda: standby_health(200))
        check(body['replay_lag_bytes'] == 0, 'standby2 caught up: %s' % body)

        # its upstream gone: nothing to replay, but nothing new either
        sql(st, ("ALTER SYSTEM SET primary_conninfo = %s",
                 ('host=127.0.0.1 port=1 user=postgres connect_timeout=1',)),
            "SELECT pg_reload_conf()")
        orphan = await poll('standby2 503 without an upstream',
                            lambda: standby_health(503, 'no WAL received'), timeout=30)
        check(orphan['receiving'] is False, 'standby2 without upstream: %s' % orphan)
    finally:
        sql(st, "SELECT pg_wal_replay_resume()",
            ("ALTER SYSTEM SET primary_conninfo = %s", (conninfo,)),
            "ALTER SYSTEM RESET pg_ws.health_max_replay_lag", "SELECT pg_reload_conf()")
    # (its WAL receiver starts again within wal_retrieve_retry_interval)
    body = await poll('standby2 200 once it streams again',
                      lambda: standby_health(200, receiving=True))
    check(body['receiving'] is True, 'standby2 back: %s' % body)
    return 'lagging: %.1f s, %d bytes behind; without upstream: %s' % (
        lagging['replay_lag_seconds'], lagging['replay_lag_bytes'], orphan['reason'])


TESTS = [
    ('(a) primary and 2 standbys: 8 writers, every event once everywhere with equal seq;'
     ' a subscriber hops between nodes with since=', test_three_nodes, 150),
    ('(b) custom events: the standbys serve them byte for byte, filtered by name;'
     ' pg_ws_send() is refused on a standby', test_custom_events, 60),
    ('(d) logical messages with prefix pg_ws, 60 MB in an open transaction: never sent,'
     ' delivery goes on, the standby\'s heap stays flat', test_forged, 90),
    ('(e) a standby waits for a position it has not replayed; one no node has reached'
     ' gets resync_required', test_future_position, 60),
    ('(f) a subscriber joins a standby whose worker starts while a transaction is between'
     ' its event record and its commit: it gets that transaction\'s events',
     test_join_while_committing, 90),
    ('(g) /health: role, /health/primary and /health/standby, 503 for a replay lag and for'
     ' a lost upstream, 200 again after', test_health, 90),
    ('(c) promotion while writers run: subscribers resume on the promoted standby'
     ' and miss nothing', test_promotion, 120),
]


def main():
    run_tap(TESTS, Ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
