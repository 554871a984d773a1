#!/usr/bin/python3
"""End-to-end tests of pg_ws with synchronous replication: a primary whose
synchronous_standby_names names its one streaming standby, and that
standby stopped.

  a. a transaction that commits with synchronous_commit = on waits for the
     stopped standby; its events, and those of every transaction after it
     (synchronous_commit = local ones too), are not sent while it waits:
     they follow it in position order, and it is not visible yet.  The
     writers after it commit all the same, 4 times as many events as the
     queue holds, none waiting for room nor failing: their entries are
     parked out of the queue.  A subscriber resuming from the WAL is not
     sent them either.  /health says 503 once the events have waited longer
     than pg_ws.queue_full_timeout, and pg_ws_stats.oldest_unsent_age
     shows it.  When the standby is back, the waiting transaction's event
     and then all the others reach the live and the resuming subscriber,
     once each, in order;
  b. the same with pg_ws.queue_size so small that the parked events do
     not fit in the worker's memory either: the rest is read back from the
     WAL, exactly;
  c. the worker is terminated while events are parked: subscribers that
     resume (from before all of them) get every event once, in order, when
     the standby is back.

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_syncrep.py

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
from harness import (PGBIN, Cluster, Ctx, Standby, check, check_positions,  # noqa: E402
                     poll, resume_path, run_tap, short, sql)
import rawws  # noqa: E402

WATCHDOG_SECONDS = 300

EMP = ("INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'w', repeat('x', %d))")


def ids_of(msgs):
    return [json.loads(m)['data']['id'] for m in msgs]


async def make_pair(ctx, name, conf):
    """A primary with conf and a synchronous standby called name."""
    primary = ctx.use(Cluster(name=name + '_primary', conf=[
        "pg_ws.queue_full_timeout = '2s'"] + conf))
    await asyncio.to_thread(primary.start)
    await primary.install()
    standby = ctx.use(Standby(primary, name))
    await asyncio.to_thread(standby.start)
    await standby.wait_listening(standby.wsport, 60)
    conn = primary.connect()
    ctx.conns.append(conn)
    # synchronous once the standby streams (or CREATE EXTENSION would wait)
    sql(conn, "ALTER SYSTEM SET synchronous_standby_names = '%s'" % name,
        "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 30
    while not sql(conn, "SELECT 1 FROM pg_stat_replication WHERE application_name = '%s'"
                        " AND sync_state = 'sync'" % name):
        check(time.monotonic() < deadline, 'the standby %s never became synchronous' % name)
        await asyncio.sleep(0.1)
    ctx.use(primary)
    return primary, standby, conn


async def health(port):
    raw = ('GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % port).encode()
    status, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, port, raw)
    return status, body.decode(errors="replace") if isinstance(body, bytes) else body


async def stopped_standby(ctx, name, conf, base, writes, size, from_wal, restart=False):
    primary, standby, conn = await make_pair(ctx, name, conf)
    mark = primary.log_size()
    # a position before everything, to resume from the WAL later
    marker = await ctx.sub()
    await asyncio.to_thread(sql, conn, EMP % (base, 1))
    first = (await marker.expect(1, 15, 'marker'))[0]
    await marker.close()
    live = await ctx.sub()

    await asyncio.to_thread(standby.as_postgres, PGBIN + '/pg_ctl', '-D', standby.data,
                            '-m', 'fast', '-w', 'stop')
    standby.started = False

    # the transaction that waits for the standby
    holder = primary.connect(autocommit=False)
    ctx.conns.append(holder)
    holder_pid = holder.get_backend_pid()
    sql(holder, "SET synchronous_commit = on", EMP % (base + 1, 10))
    done = {}

    def commit():
        try:
            holder.commit()
            done['holder'] = True
        except Exception as e:
            done['holder'] = e
    threading.Thread(target=commit, daemon=True).start()
    await poll('the commit waits for the standby', lambda: asyncio.to_thread(
        sql, conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %d AND wait_event = 'SyncRep'"
        % holder_pid))

    # writers after it, committing locally: 4 times what the queue holds
    writer = primary.connect()
    ctx.conns.append(writer)
    t0 = time.monotonic()
    failures = []

    def k_done():
        return sql(conn, "SELECT count(*) FROM employee WHERE id > %d" % (base + 1))[0][0]

    def write():
        sql(writer, "SET synchronous_commit = local")
        for k in range(writes):
            try:
                sql(writer, EMP % (base + 2 + k, size))
            except psycopg2.Error as e:
                failures.append(str(e).strip())
                break
    await asyncio.to_thread(write)
    took = time.monotonic() - t0
    check(not failures, 'a writer failed after %d of %d commits: %s'
          % (k_done(), writes, failures[:1]))
    check(done.get('holder') is None, 'the synchronous commit ended: %s' % done.get('holder'))
    stats = sql(conn, "SELECT writers_waiting, queue_bytes_capacity FROM pg_ws_stats")[0]

    if restart:
        # the worker ends with everything parked: the next one finds the
        # events in the WAL, and the outcomes in the backends' slots
        mark = primary.log_size()
        sql(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE backend_type = 'pg_ws'")
        await asyncio.wait_for(live.closed.wait(), 15)
        await primary.wait_listening(primary.wsport, 30, since=mark)
        live = await ctx.sub(resume_path(first))

    # nothing is sent while the first transaction waits: not live, not from the WAL
    resumed = await ctx.sub(resume_path(first))
    if not restart:
        # (a new worker does not know what its predecessor parked)
        status, body = await poll('/health 503', lambda: _health_503(primary.wsport))
        check('behind a transaction that is still committing' in body,
              '/health while the events wait: %s' % body)
        age = sql(conn, "SELECT extract(epoch FROM oldest_unsent_age) FROM pg_ws_stats")[0][0]
        check(age is not None and age >= 2, 'oldest_unsent_age %s' % age)
    else:
        await asyncio.sleep(1)
    check(not live.msgs and not resumed.msgs,
          'sent while the first transaction waits for the standby: live %s, resumed %s'
          % ([short(m, 60) for m in live.msgs[:2]], [short(m, 60) for m in resumed.msgs[:2]]))

    # the standby comes back: everything goes out, the waiting one first
    await asyncio.to_thread(standby.as_postgres, PGBIN + '/pg_ctl', '-D', standby.data,
                            '-l', standby.log, '-w', '-t', '60', 'start')
    standby.started = True
    await poll('the synchronous commit ends', lambda: asyncio.sleep(0, done.get('holder')))
    check(done['holder'] is True, 'the synchronous commit: %s' % done['holder'])
    expected = [base + 1] + [base + 2 + k for k in range(writes)]
    for sub, who in ((live, 'live'), (resumed, 'resumed from the WAL')):
        got = await sub.expect(len(expected), 60, who, settle=0.5)
        check(ids_of(got) == expected, '%s: %d events, first %s, expected %d'
              % (who, len(got), ids_of(got)[:3], len(expected)))
        check_positions(got, who)
    check(resumed.msgs == live.msgs, 'the resumed subscriber got other messages than the live one')
    log = primary.log_since(mark)
    if restart:
        # the events came to both subscribers from the WAL; a worker that
        # meets an entry parked by its predecessor, in the ring still, sends
        # it from there, its outcome taken from the backend's slot
        return '%d writers after the waiting commit committed in %.1f s; the worker was' \
            ' terminated with them parked; all %d events sent once, in order, after it' % (
                writes, took, len(expected))
    parked = [line for line in log if 'pg_ws is parking queued events' in line]
    sent = [line for line in log if 'that were parked out of the queue' in line]
    check(len(parked) == 1 and len(sent) == 1, 'the log about parking: %s' % (parked + sent))
    n_wal = int(sent[0].split(' of them read back')[0].rsplit(', ', 1)[1])
    check((n_wal > 0) == from_wal, 'parked events read back from the WAL: %s' % sent[0])
    await poll('/health 200 again', lambda: _health_200(primary.wsport))
    age = sql(conn, "SELECT oldest_unsent_age FROM pg_ws_stats")[0][0]
    check(age is None, 'oldest_unsent_age after all was sent: %s' % age)
    return '%d writers after the waiting commit committed in %.1f s (queue %d bytes, %d waiting' \
        ' for room then); all %d events sent in order once the standby was back; %s' % (
            writes, took, stats[1], stats[0], len(expected), sent[0].split('LOG:  ')[-1])


async def _health_503(port):
    status, body = await health(port)
    return (status, body) if status == 503 else None


async def _health_200(port):
    status, _ = await health(port)
    return status == 200


async def test_stopped_standby(ctx):
    """a. parked in memory."""
    return await stopped_standby(ctx, 'sync_a', ["pg_ws.queue_size = '64kB'"],
                                 100000, 200, 1000, False)


async def test_parked_from_wal(ctx):
    """b. parked beyond the worker's memory: read back from the WAL."""
    return await stopped_standby(ctx, 'sync_b', ["pg_ws.queue_size = '64kB'"],
                                 200000, 300, 3000, True)


async def test_worker_restart_parked(ctx):
    """c. the worker ends while events are parked."""
    return await stopped_standby(ctx, 'sync_c', ["pg_ws.queue_size = '64kB'"],
                                 300000, 200, 1000, False, restart=True)


TESTS = [
    ('(a) a stopped synchronous standby holds the events after the commit that waits for it;'
     ' the writers after it neither wait nor fail; all sent in order once it is back',
     test_stopped_standby, 120),
    ('(b) the same past the worker\'s memory for parked events: read back from the WAL',
     test_parked_from_wal, 120),
    ('(c) the worker ends while events are parked: subscribers that resume get all of them,'
     ' once, in order, when the standby is back', test_worker_restart_parked, 120),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
