#!/usr/bin/python3
"""End-to-end tests of positions across failovers: a position says on which
timeline it was made, and a node honours it only where that timeline's
history and its own agree (README "Failover and timelines").

One history is played through, the tests in order:

  a. divergence: an asynchronous standby S is cut off from the primary P,
     a subscriber of P receives events S never gets, P dies, S is promoted
     (timeline 2) and writes other events at the same positions.  Resuming
     on S after an event S never had gets resync_required naming the fork
     point (the switch point in S's timeline history file), then the live
     stream; resuming after an event from before the fork gets exactly S's
     events after it.  (Without timelines in positions the first resumes
     silently and skips S's events up to its position.)
  b. a standby R, cut off from P before S was, is still on timeline 1 when
     a subscriber resumes on it with a position of timeline 2: it waits
     for R to follow S (R is pointed at S meanwhile) and then resumes
     exactly; a position past the fork gets resync_required there too,
     also one of timeline 1 that R was waiting to replay as it followed S.
  c. a dead branch: the dead P restarted as a standby before pg_rewind
     serves its own WAL while it knows of nothing newer (a subscriber
     resuming there gets batch B again); once pointed at S its WAL
     receiver fetches timeline 2's history, and P closes that subscriber
     with 1013, answers 503 to /health and to new subscribers, and the
     subscriber resuming on S gets resync_required at the fork;
  d. pg_rewind and several promotions: the dead P is brought back with
     pg_rewind as a standby of S, then a planned switchover promotes it
     (timeline 3) and R follows it: on P as a standby, on P promoted and
     on R, positions of timeline 1 before the fork and of timeline 2
     resume exactly, and one past the first fork gets resync_required
     naming it; a cascading standby of R sends the same messages, and
     positions made on P or R resume on it.
  e. synchronous replication (synchronous_commit = remote_apply): the
     primary is killed while a writer runs and its synchronous standby is
     promoted: every subscriber resumes there with its last position, needs
     no resync and misses nothing;
  f. a commit waiting for a synchronous standby when the postmaster is
     killed stops waiting and ends locally (PostgreSQL lets it, visible on
     that node only): no subscriber is sent it.

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_failover.py

Output is TAP; the exit status is 0 only if every test passed.
"""

import asyncio
import json
import os
import shutil
import sys
import threading

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, Ctx, Standby, check,  # noqa: E402
                     check_positions, epoch_timeline, poll, position, run_tap,
                     short, sql, upgrade_status)
import rawws  # noqa: E402

WATCHDOG_SECONDS = 400

EMP = "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'f', 'f')"

NODES = {}
SEEN = {}           # what the story's subscribers received, by name


def make_standby(upstream, name):
    return Standby(upstream, name)


async def setup():
    # wal_log_hints: pg_rewind brings the dead primary back in (c)
    p = Cluster(name='P', conf=['wal_log_hints = on', "wal_keep_size = '1GB'",
                                "wal_retrieve_retry_interval = '200ms'"])
    await asyncio.to_thread(p.start)
    await p.install()
    NODES['P'] = p
    for name in ('S', 'R'):
        st = make_standby(p, name)
        await asyncio.to_thread(st.start)
        await st.wait_listening(st.wsport, 60)
        NODES[name] = st


def run(node, *stmts):
    conn = node.connect()
    try:
        return sql(conn, *stmts)
    finally:
        conn.close()


def write(node, ids):
    """One transaction per id, each committed."""
    conn = node.connect()
    try:
        for i in ids:
            sql(conn, EMP % i)
    finally:
        conn.close()


def lsn_int(text):
    hi, lo = text.split('/')
    return (int(hi, 16) << 32) | int(lo, 16)


async def replayed(node, upstream):
    """Until node has replayed everything upstream has flushed."""
    target = run(upstream, "SELECT pg_current_wal_flush_lsn()")[0][0]

    async def probe():
        return run(node, "SELECT pg_last_wal_replay_lsn() >= '%s'" % target)[0][0]
    await poll('%s to replay %s' % (node.name, target), probe, timeout=60)


async def cut_off(node):
    """The standby stops receiving WAL (its upstream keeps running)."""
    run(node, "ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()")

    async def probe():
        return run(node, "SELECT count(*) FROM pg_stat_wal_receiver")[0][0] == 0
    await poll('%s to stop receiving' % node.name, probe)


def follow(node, upstream):
    run(node, "ALTER SYSTEM SET primary_conninfo = 'host=%s port=%d user=postgres'"
        % (upstream.dir, upstream.pgport), "SELECT pg_reload_conf()")


async def promote(node):
    mark = node.log_size()
    await asyncio.to_thread(node.as_postgres, node.pgbin + '/pg_ctl', '-D', node.data,
                            '-w', 'promote')
    await node.wait_listening(node.wsport, 60, since=mark)


async def start_standby(node, conninfo, mode):
    """Start node's data directory as a standby with primary_conninfo
    conninfo ('' for no upstream), written into postgresql.auto.conf
    (mode 'a' adds it, 'w' replaces the file), and wait for pg_ws."""
    with open(os.path.join(node.data, 'postgresql.auto.conf'), mode) as f:
        f.write("primary_conninfo = '%s'\n" % conninfo)
    open(os.path.join(node.data, 'standby.signal'), 'w').close()
    shutil.chown(os.path.join(node.data, 'standby.signal'), 'postgres', 'postgres')
    mark = node.log_size()
    node.started = True
    await asyncio.to_thread(node.as_postgres, node.pgbin + '/pg_ctl', '-D', node.data,
                            '-l', node.log, '-w', '-t', '60', 'start')
    await node.wait_listening(node.wsport, 60, since=mark)


def fork_point(node, tli):
    """Where timeline tli - 1 ends in node's history file of tli."""
    text = run(node, "SELECT pg_read_file('pg_wal/%08X.history')" % tli)[0][0]
    parent, lsn = text.strip().splitlines()[-1].split('\t')[:2]
    check(int(parent) == tli - 1, 'history of %d: %s' % (tli, text))
    return lsn_int(lsn)


def ids_of(msgs):
    return [json.loads(m)['data']['id'] for m in msgs]


def since_path(msg):
    return '/ws/?since=%d&epoch=%s' % position(msg)


async def expect_ids(sub, ids, who):
    """sub receives exactly the events of ids, in order, and nothing else."""
    await sub.wait_until(lambda m: len(m) >= len(ids), 60, who)
    await asyncio.sleep(0.3)
    got = ids_of(sub.msgs)
    check(got == ids, '%s: got ids %s, want %s' % (who, got, ids))
    check_positions(sub.msgs, who)


async def expect_resync(sub, fork, since, who):
    """sub's first message is resync_required naming fork, then live."""
    await sub.wait_until(lambda m: len(m) >= 1, 30, who)
    first = json.loads(sub.msgs[0])
    check(first['event'] == 'resync_required', '%s: first message %s'
          % (who, short(sub.msgs[0])))
    check(first['data'].get('fork') == fork and first['data']['since'] == since,
          '%s: resync_required names fork %s since %s, want %s and %s'
          % (who, first['data'].get('fork'), first['data']['since'], fork, since))
    return first


async def test_divergence(ctx):
    """a. an event S never had: resync_required at the fork on S."""
    p, s, r = NODES['P'], NODES['S'], NODES['R']
    for node in (s, r, p):
        ctx.use(node)
    on_p = await ctx.sub(url=p.url)
    await asyncio.to_thread(write, p, range(1, 11))
    await on_p.wait_until(lambda m: len(m) >= 10, 30, 'P subscriber, batch A')
    await replayed(r, p)
    await replayed(s, p)
    # R first, so that it has replayed no more than S: it can follow S later
    await cut_off(r)
    await cut_off(s)
    await asyncio.to_thread(write, p, range(11, 21))
    await on_p.wait_until(lambda m: len(m) >= 20, 30, 'P subscriber, batch B')
    check(ids_of(on_p.msgs) == list(range(1, 21)), 'P: %s' % ids_of(on_p.msgs))
    p.stop()                    # dies: what S never received is lost
    await promote(s)
    fork = fork_point(s, 2)
    await asyncio.to_thread(write, s, range(21, 31))

    last_a, last_b = on_p.msgs[9], on_p.msgs[19]
    seq_a, epoch_a = position(last_a)
    seq_b, _ = position(last_b)
    check(epoch_timeline(epoch_a)[1] == 1, 'P labels timeline 1: %s' % epoch_a)
    check(seq_a < fork <= position(on_p.msgs[10])[0],
          'the fork %d lies between batch A (last %d) and batch B (first %d)'
          % (fork, seq_a, position(on_p.msgs[10])[0]))

    after_b = await ctx.sub(since_path(last_b), url=s.url)
    first = await expect_resync(after_b, fork, seq_b, 'after an event S never had')
    check(epoch_timeline(first['epoch'])[1] == 2, 'S is on timeline 2: %s' % first['epoch'])
    after_a = await ctx.sub(since_path(last_a), url=s.url)
    await expect_ids(after_a, list(range(21, 31)), 'after batch A, on S')
    await asyncio.to_thread(write, s, [31])
    await after_b.wait_until(lambda m: len(m) >= 2, 30, 'live after the resync')
    check(ids_of(after_b.msgs[1:]) == [31], 'after the resync: %s'
          % [short(m) for m in after_b.msgs])
    await expect_ids(after_a, list(range(21, 32)), 'after batch A, on S')
    SEEN.update(a=last_a, b=last_b, fork=fork, s_msgs=list(after_a.msgs))
    return 'fork at %d; batch B at %d..%d resynced, batch A resumed' % (
        fork, position(on_p.msgs[10])[0], seq_b)


async def test_standby_follows(ctx):
    """b. R on timeline 1 waits for timeline 2, then resumes exactly."""
    s, r = NODES['S'], NODES['R']
    ctx.use(s)
    ctx.use(r)
    check('s_msgs' in SEEN, 'needs (a)')
    last_c = SEEN['s_msgs'][-1]
    check(epoch_timeline(position(last_c)[1])[1] == 2, 'S labels timeline 2')
    waiting = await ctx.sub(since_path(last_c), url=r.url)
    # a position of timeline 1 past the fork, and past what R replayed: R
    # waits for replay to reach it, which it does on timeline 2
    waiting_b = await ctx.sub(since_path(SEEN['b']), url=r.url)
    await asyncio.sleep(0.5)
    check(not waiting.msgs, 'R sent %s before following S' % [short(m) for m in waiting.msgs])
    check(not waiting_b.msgs, 'R sent %s before following S, past the fork'
          % [short(m) for m in waiting_b.msgs])
    follow(r, s)
    await asyncio.to_thread(write, s, range(32, 36))
    await expect_ids(waiting, list(range(32, 36)), 'on R, after following S')
    await expect_resync(waiting_b, SEEN['fork'], position(SEEN['b'])[0],
                        'on R, waiting past the fork while R followed S')
    after_b = await ctx.sub(since_path(SEEN['b']), url=r.url)
    await expect_resync(after_b, SEEN['fork'], position(SEEN['b'])[0], 'on R, past the fork')
    after_a = await ctx.sub(since_path(SEEN['a']), url=r.url)
    await expect_ids(after_a, list(range(21, 36)), 'on R, after batch A')
    SEEN['c'] = last_c
    return 'R waited for timeline 2 and resumed there'


async def health(node):
    """(status, the JSON body) of node's /health."""
    raw = ('GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % node.wsport).encode()
    status, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, node.wsport, raw)
    return status, json.loads(body)


def close_code(sub):
    """The close code sub's connection ended with, or None."""
    e = sub.close_info
    rcvd = getattr(e, 'rcvd', None)
    return rcvd.code if rcvd is not None else getattr(e, 'code', None)


async def test_dead_branch(ctx):
    """c. the dead P as a standby before pg_rewind: it stops serving."""
    p, s = NODES['P'], NODES['S']
    ctx.use(s)
    ctx.use(p)
    check('fork' in SEEN, 'needs (a)')

    # P restarts as a standby of no one: its WAL runs to the end of batch B
    await start_standby(p, '', 'a')

    # knowing of no newer timeline, its history is its own: batch B again
    on_p = await ctx.sub(since_path(SEEN['a']), url=p.url)
    await expect_ids(on_p, list(range(11, 21)), 'on P before it hears of timeline 2')
    status, body = await health(p)
    check('forked off' not in body.get('reason', ''), 'P /health: %s %s' % (status, body))

    # pointed at S, its WAL receiver fetches timeline 2's history file
    follow(p, s)
    async def closed():
        return on_p.closed.is_set()
    await poll('P to close its subscriber', closed, timeout=30)
    check(close_code(on_p) == 1013, 'P closed its subscriber with %r, want 1013'
          % (on_p.close_info,))
    status, body = await health(p)
    check(status == 503 and 'forked off' in body.get('reason', '') and
          'timeline 2' in body['reason'], 'P /health: %s %s' % (status, body))
    for path in ('/ws/', since_path(SEEN['a'])):
        got = await upgrade_status(p.url, path)
        check(got == 503, 'a subscriber of P at %s got %s, want 503' % (path, got))

    # what P sent past the fork is on no live history: S says so
    moved = await ctx.sub(since_path(on_p.msgs[-1]), url=s.url)
    await expect_resync(moved, SEEN['fork'], position(on_p.msgs[-1])[0],
                        'after P\'s dead branch, on S')
    await asyncio.to_thread(p.as_postgres, p.pgbin + '/pg_ctl', '-D', p.data, '-m', 'fast',
                            '-w', 'stop')
    p.started = False
    return 'P refused to serve its dead branch once it heard of timeline 2'


async def test_rewind_and_switchover(ctx):
    """d. P back with pg_rewind, then a switchover to it: timeline 3."""
    p, s, r = NODES['P'], NODES['S'], NODES['R']
    for node in (s, r, p):
        ctx.use(node)
    check('c' in SEEN, 'needs (b)')

    # P comes back as a standby of S: pg_rewind takes S's files, its
    # configuration included, so P's own is put back
    conf = os.path.join(p.data, 'postgresql.conf')
    with open(conf) as f:
        own_conf = f.read()
    done = await asyncio.to_thread(
        p.as_postgres, p.pgbin + '/pg_rewind', '-D', p.data, '--source-server',
        'host=%s port=%d user=postgres dbname=postgres' % (s.dir, s.pgport), check=False,
        timeout=180)
    check(done.returncode == 0, 'pg_rewind failed:', *done.stdout.splitlines()[-10:])
    with open(conf, 'w') as f:
        f.write(own_conf)
    await start_standby(p, 'host=%s port=%d user=postgres' % (s.dir, s.pgport), 'w')
    await asyncio.to_thread(write, s, range(36, 38))
    await replayed(p, s)

    async def check_node(node, tli, ids_after_a, ids_after_c):
        who = '%s on timeline %d' % (node.name, tli)
        after_b = await ctx.sub(since_path(SEEN['b']), url=node.url)
        await expect_resync(after_b, SEEN['fork'], position(SEEN['b'])[0],
                            who + ', past the fork')
        after_a = await ctx.sub(since_path(SEEN['a']), url=node.url)
        await expect_ids(after_a, ids_after_a, who + ', after batch A')
        after_c = await ctx.sub(since_path(SEEN['c']), url=node.url)
        await expect_ids(after_c, ids_after_c, who + ', after timeline 2')

    await check_node(p, 2, list(range(21, 38)), list(range(32, 38)))

    # a planned switchover back to P: S stops cleanly, P has all of it
    await replayed(r, s)
    await asyncio.to_thread(s.as_postgres, s.pgbin + '/pg_ctl', '-D', s.data, '-m', 'fast',
                            '-w', 'stop')
    s.started = False
    await promote(p)
    fork2 = fork_point(p, 3)
    check(position(SEEN['s_msgs'][-1])[0] < fork2,
          'the second fork %d follows timeline 2\'s events' % fork2)
    follow(r, p)
    await asyncio.to_thread(write, p, range(38, 41))
    await replayed(r, p)
    for node in (p, r):
        await check_node(node, 3, list(range(21, 41)), list(range(32, 41)))

    # a cascading standby of R: positions made on any node resume on any
    # other, and every node sends the same messages
    c = make_standby(r, 'C')
    ctx.use(c)
    await asyncio.to_thread(c.start)
    await c.wait_listening(c.wsport, 60)
    live = [await ctx.sub(url=node.url) for node in (p, r, c)]
    await asyncio.to_thread(write, p, range(41, 44))
    for sub, node in zip(live, (p, r, c)):
        await expect_ids(sub, list(range(41, 44)), 'live on %s' % node.name)
    check(live[1].msgs == live[0].msgs and live[2].msgs == live[0].msgs,
          'P, R and C sent different messages')
    await check_node(c, 3, list(range(21, 44)), list(range(32, 44)))
    for made_on, sub in zip((p, r), live[:2]):
        moved = await ctx.sub(since_path(sub.msgs[0]), url=c.url)
        await expect_ids(moved, [42, 43], 'on C, after a position made on %s' % made_on.name)
    return ('timelines 1 -> 2 at %d -> 3 at %d; P rewound, then promoted; R followed;'
            ' a cascading standby agrees' % (SEEN['fork'], fork2))


async def test_synchronous_failover(ctx):
    """e. remote_apply: killing the primary loses nothing a subscriber saw."""
    p = Cluster(name='syncP', conf=["synchronous_commit = remote_apply"])
    ctx.use(p)
    await asyncio.to_thread(p.start)
    await p.install()
    s = make_standby(p, 'syncS')
    ctx.use(s)
    await asyncio.to_thread(s.start)
    await s.wait_listening(s.wsport, 60)
    run(p, "ALTER SYSTEM SET synchronous_standby_names = 'syncS'", "SELECT pg_reload_conf()")

    async def synchronous():
        return run(p, "SELECT count(*) FROM pg_stat_replication"
                      " WHERE application_name = 'syncS' AND sync_state = 'sync'")[0][0] == 1
    await poll('syncS to be the synchronous standby', synchronous)
    subs = [await ctx.sub(url=p.url) for _ in range(5)]
    stop = threading.Event()

    def writer():
        conn = p.connect()
        i = 100
        try:
            while not stop.is_set():
                sql(conn, EMP % i)
                i += 1
        except psycopg2.Error:
            pass                # the primary died under it
        finally:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    await subs[-1].wait_until(lambda m: len(m) >= 200, 60, 'events before the kill')
    p.stop()                    # immediate: a crash
    stop.set()
    th.join(10)
    await promote(s)
    fork = fork_point(s, 2)
    await asyncio.to_thread(write, s, range(100000, 100010))
    rows = [r[0] for r in run(s, "SELECT id FROM employee ORDER BY id")]
    resumed = []
    for k, before in enumerate(subs):
        await asyncio.wait_for(before.closed.wait(), 30)
        check(before.msgs and position(before.msgs[-1])[0] < fork,
              'subscriber %d saw an event past the fork %d' % (k, fork))
        after = await ctx.sub(since_path(before.msgs[-1]), url=s.url)
        await after.wait_until(lambda m: m and '"id": 100009,' in m[-1], 60,
                               'subscriber %d after the failover' % k)
        await asyncio.sleep(0.2)
        msgs = before.msgs + after.msgs
        check(not any('resync_required' in m for m in msgs),
              'subscriber %d needed a resync' % k)
        check_positions(msgs, 'subscriber %d' % k)
        check(sorted(ids_of(msgs)) == rows and len(set(ids_of(msgs))) == len(msgs),
              'subscriber %d: %d events, the new primary has %d rows' % (k, len(msgs), len(rows)))
        resumed.append(len(before.msgs))
    return '%d rows; 5 subscribers resumed exactly after %s events' % (len(rows), resumed)


async def test_killed_while_waiting(ctx):
    """f. a commit waiting for its synchronous standby when the postmaster
    is killed ends locally (PostgreSQL lets it): it is never sent."""
    p = Cluster(name='waitP')
    ctx.use(p)
    await asyncio.to_thread(p.start)
    await p.install()
    # a synchronous standby that never comes: commits wait for it
    run(p, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'", "SELECT pg_reload_conf()")
    subs = [await ctx.sub(url=p.url) for _ in range(20)]
    conns = [p.connect() for _ in range(16)]

    def commit(k):
        try:
            sql(conns[k], EMP % (900000 + k))     # waits for 'nobody' for ever
        except psycopg2.Error:
            pass                                  # the server went away under it
    threads = [threading.Thread(target=commit, args=(k,), daemon=True) for k in range(16)]
    for th in threads:
        th.start()

    async def waiting():
        return run(p, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")[0][0] == 16
    await poll('16 commits to wait for their synchronous standby', waiting)
    with open(os.path.join(p.data, 'postmaster.pid')) as f:
        pid = int(f.readline())
    os.kill(pid, 9)
    for k, sub in enumerate(subs):
        await asyncio.wait_for(sub.closed.wait(), 30)
        check(sub.msgs == [], 'subscriber %d was sent commits no standby confirmed: %s'
              % (k, [short(m) for m in sub.msgs]))
    for th in threads:
        th.join(10)
    p.started = False
    # what is left of the server goes; its directory is removed at the end
    await asyncio.to_thread(p.as_postgres, 'pkill', '-9', '-f', p.data, check=False)
    return 'nothing sent of the commit that stopped waiting'


TESTS = [
    ('(a) divergence: a position past the fork gets resync_required naming it; one before'
     ' it resumes exactly on the promoted node', test_divergence, 120),
    ('(b) a standby still on the old timeline waits for the new one, then resumes exactly',
     test_standby_follows, 90),
    ('(c) the old primary restarted as a standby before pg_rewind stops serving once it'
     ' hears of the new timeline: its subscribers resync on the new primary',
     test_dead_branch, 90),
    ('(d) the old primary back with pg_rewind, then a switchover to it (timeline 3):'
     ' positions of every timeline resume exactly, or resync at the fork',
     test_rewind_and_switchover, 180),
    ('(e) synchronous_commit = remote_apply: after killing the primary, subscribers resume on'
     ' the promoted standby with no resync and miss nothing', test_synchronous_failover, 120),
    ('(f) a commit waiting for its synchronous standby when the postmaster is killed ends'
     ' locally: it is never sent', test_killed_while_waiting, 60),
]


def main():
    run_tap(TESTS, Ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
