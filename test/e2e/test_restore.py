"""Restoring a dump into the broadcast database (issue 15, item 7; README.md,
"Tables"), end to end, with far more rows than pg_ws.queue_size (64kB)
holds:

  (a) pg_restore -d of a custom-format dump;
  (b) pg_restore -j 4, the data loaded by parallel connections;
  (c) psql -f of a plain dump;
      each into database app of a new cluster, the database pg_ws.database
      names, made empty: the restore succeeds, every row is there, no restored row
      is sent (pg_ws_stats.events_queued does not move, a subscriber
      connected throughout gets nothing), the server log says which
      tables' rows were not broadcast, and afterwards writes to pg_ws's own
      tables, a Django app's watched tables and a 'row' table are events
      again, the first a subscriber gets;
  (d) an application's COPY ... FROM STDIN is not a restore: as a
      superuser in an ordinary session, or as a role that is not a
      superuser with pg_dump's settings, its rows are events; only a
      superuser with pg_dump's settings (search_path '' and
      check_function_bodies off) loads rows without events.

pg_ws 1.2 failed (a) to (c) with "pg_ws events of this transaction do
not fit in the event queue", leaving client empty, and sent (d)'s last
rows.

Run by test/run_tests.sh; prints TAP.
"""
import asyncio
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, PGBIN, Cluster, Ctx, asql, check,  # noqa: E402
                     run_tap, short)

WATCHDOG_SECONDS = 420

ROWS = 60000

DJANGO_SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          '..', 'django', '0001_initial.sql')

_kinds = ClusterKinds(lambda kind: Cluster(name=kind, database='app',
                                           conf=['pg_ws.queue_size = 64kB']))

# the tables restored, and the rows each holds
TABLES = {'client': ROWS, 'visit_history': ROWS, 'employee': 100, 'attendance': 1000,
          'app_client': ROWS, 'app_visithistory': ROWS, 'device': ROWS}

# one write to each kind of table, and the event each makes
MARKERS = [
    ("INSERT INTO client (id, visit_count) VALUES (%d, 1)" % (ROWS + 1),
     ('client_create', ROWS + 1)),
    ("INSERT INTO app_client (id, visit_count) VALUES (%d, 2)" % (ROWS + 1),
     ('client_create', ROWS + 1)),
    ("INSERT INTO device (id, name) VALUES (%d, 'marker')" % (ROWS + 1),
     ('device_create', ROWS + 1)),
]


async def source(ctx):
    """The cluster, its database app filled (once) and dumped both ways:
    (custom dump, plain dump).  The rows are written with
    session_replication_role = replica, which pg_ws's triggers do not fire
    for, so that making them costs no events."""
    cl = await _kinds.get(ctx, 'source')
    custom = os.path.join(cl.dir, 'app.dump')
    plain = os.path.join(cl.dir, 'app.sql')
    if os.path.exists(plain):
        return cl, custom, plain
    conn = await ctx.aconn()
    with open(DJANGO_SQL) as f:
        await asql(conn, f.read())
    await asql(conn,
               "SELECT * FROM pg_ws_watch_django('app')",
               "CREATE TABLE device (id integer PRIMARY KEY, name text, secret text)",
               "SELECT pg_ws_watch('device', 'row', columns => '{id,name}')",
               "SET session_replication_role = replica",
               "INSERT INTO client (first_seen, last_seen, visit_count, gender, age, image)"
               " SELECT now(), now(), g %% 9, 'female', 20 + g %% 50, 'client_images/' || g || '.jpg'"
               " FROM generate_series(1, %d) g" % ROWS,
               "INSERT INTO visit_history (client_id, datetime, device_id)"
               " SELECT id, now(), 'dev' || id FROM client",
               "INSERT INTO employee (first_name, last_name) SELECT 'e', g::text"
               " FROM generate_series(1, 100) g",
               "INSERT INTO attendance (employee_id, device_id, score)"
               " SELECT e.id, 'd' || g, 90 FROM employee e, generate_series(1, 10) g",
               "INSERT INTO app_client (first_seen, visit_count, gender, age, image)"
               " SELECT now(), 1, 'male', 40, 'client_images/x.jpg' FROM generate_series(1, %d)" % ROWS,
               "INSERT INTO app_visithistory (datetime, device_id, client_id)"
               " SELECT now(), 'dev', id FROM app_client",
               "INSERT INTO device SELECT g, 'device ' || g, 's' FROM generate_series(1, %d) g" % ROWS,
               "RESET session_replication_role")
    for t, n in TABLES.items():
        got = (await asql(conn, "SELECT count(*) FROM %s" % t))[0][0]
        check(got == n, 'set-up: %s has %d rows, expected %d' % (t, got, n))
    for fmt, path in (('-Fc', custom), ('-Fp', plain)):
        r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_dump', fmt, '-h', cl.dir,
                                    '-p', str(cl.pgport), '-U', 'postgres', '-d', 'app',
                                    '-f', path, check=False)
        check(r.returncode == 0, 'pg_dump %s failed: %s' % (fmt, short(r.stdout, 1000)))
    return cl, custom, plain


async def target(ctx, kind):
    """A new cluster for one restore: pg_ws preloaded, pg_ws.database app,
    which is made empty (the restore creates the extension in it), and its
    worker listening."""
    cl = ctx.use(Cluster(name=kind, database='app', conf=['pg_ws.queue_size = 64kB']))
    await asyncio.to_thread(cl.start)
    postgres = await ctx.aconn(dbname='postgres')
    await asql(postgres, 'CREATE DATABASE app')
    await cl.wait_listening(cl.wsport, 60)
    return cl


def ident(raw):
    m = json.loads(raw)
    return (m['event'], m['data'].get('id'))


async def restore_into_broadcast_db(ctx, kind, command):
    """Restore with command (a list, given the target cluster and the
    dumps) into database app of a new cluster, the database pg_ws
    broadcasts; check what the docstring of this file says for (a) to (c)."""
    src, custom, plain = await source(ctx)
    cl = await target(ctx, kind)
    try:
        return await restore_and_check(ctx, cl, command(cl, custom, plain))
    finally:
        await ctx.cleanup()         # its connections, before the server stops
        await asyncio.to_thread(cl.stop)


async def restore_and_check(ctx, cl, args):
    sub = await ctx.sub()
    r = await asyncio.to_thread(cl.as_postgres, *args, timeout=240, check=False)
    check(r.returncode == 0, '%s failed (%d): %s' % (os.path.basename(args[0]),
                                                     r.returncode, short(r.stdout, 2000)))
    dst = await ctx.aconn()
    queued = (await asql(dst, "SELECT events_queued FROM pg_ws_stats"))[0][0]
    counts = {t: (await asql(dst, "SELECT count(*) FROM %s" % t))[0][0] for t in TABLES}
    check(counts == TABLES, 'rows after the restore: %s, expected %s' % (counts, TABLES))
    check(queued == 0, 'the restore queued %d events' % queued)
    logged = sorted({line.split('into table ')[1].strip('"')
                     for line in cl.log_since(0)
                     if 'pg_ws does not broadcast the rows a restore loads' in line})
    check(logged == ['attendance', 'client', 'employee', 'visit_history'],
          'the log names the tables %s' % logged)
    unchecked = sorted({line.split('into table ')[1].strip('"')
                        for line in cl.log_since(0)
                        if 'pg_ws does not check the foreign keys of the rows' in line})
    check(unchecked == ['attendance', 'visit_history'],
          'the log names the tables whose foreign keys were not checked: %s' % unchecked)
    await asyncio.sleep(0.5)
    check(not sub.msgs, 'a subscriber was sent %d restored rows' % len(sub.msgs),
          *sub.last_lines(3))

    # afterwards writes are events again, the first ones sent
    await asql(dst, *[w for w, _ in MARKERS])
    msgs = await sub.expect(len(MARKERS), 30, 'events after the restore')
    got = [ident(m) for m in msgs]
    check(got == [e for _, e in MARKERS], 'after the restore: %s' % got)
    return ('%d rows restored (%s), no event queued by the restore, then %s'
            % (sum(counts.values()), os.path.basename(args[0]),
               ', '.join(e for e, _ in got)))


def pg_restore(jobs):
    def command(cl, custom, plain):
        return [PGBIN + '/pg_restore', '--exit-on-error', *jobs, '-h', cl.dir,
                '-p', str(cl.pgport), '-U', 'postgres', '-d', 'app', custom]
    return command


def psql_f(cl, custom, plain):
    return [PGBIN + '/psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cl.dir,
            '-p', str(cl.pgport), '-U', 'postgres', '-d', 'app', '-f', plain]


async def test_pg_restore(ctx):
    """(a) pg_restore -d of a custom-format dump."""
    return await restore_into_broadcast_db(ctx, 'restore_a', pg_restore([]))


async def test_pg_restore_jobs(ctx):
    """(b) pg_restore -j 4."""
    return await restore_into_broadcast_db(ctx, 'restore_b', pg_restore(['-j', '4']))


async def test_psql_plain(ctx):
    """(c) psql -f of a plain dump."""
    return await restore_into_broadcast_db(ctx, 'restore_c', psql_f)


async def test_application_copy(ctx):
    """(d) an application's COPY FROM STDIN sends its rows."""
    cl, _, _ = await source(ctx)
    admin = await ctx.aconn()
    await asql(admin, "DROP ROLE IF EXISTS loader", "CREATE ROLE loader LOGIN",
               "GRANT INSERT, SELECT ON client TO loader")
    sub = await ctx.sub()
    base = 200000
    rows = 50

    def copy(options, start, user=None):
        conn = cl.connect(options=options)
        ctx.conns.append(conn)
        if user:
            with conn.cursor() as cur:
                cur.execute("SET ROLE %s" % user)
        data = ''.join('%d\t%d\n' % (start + i, i) for i in range(rows))
        with conn.cursor() as cur:
            cur.copy_expert("COPY public.client (id, visit_count) FROM STDIN", io.StringIO(data))

    restore_settings = "-c search_path= -c check_function_bodies=off -c row_security=off"
    # an ordinary session of a superuser; pg_dump's settings as another role
    await asyncio.to_thread(copy, '', base)
    await asyncio.to_thread(copy, restore_settings, base + 1000, 'loader')
    msgs = await sub.expect(2 * rows, 30, 'the applications\' rows')
    ids = sorted(ident(m)[1] for m in msgs)
    want = sorted(list(range(base, base + rows)) + list(range(base + 1000, base + 1000 + rows)))
    check(ids == want, 'COPY rows sent: %d of %d' % (len(set(ids) & set(want)), len(want)))

    # a superuser with pg_dump's settings: a restore, no events
    n = len(sub.msgs)
    await asyncio.to_thread(copy, restore_settings, base + 2000)
    await asql(admin, "INSERT INTO client (id) VALUES (%d)" % (base + 3000))
    await sub.wait_until(lambda m: len(m) > n, 30, 'the marker')
    await asyncio.sleep(0.3)
    late = [ident(m) for m in sub.msgs[n:]]
    check(late == [('client_create', base + 3000)],
          'after a superuser\'s COPY with pg_dump\'s settings: %s' % short(late))
    await asql(admin, "DELETE FROM client WHERE id >= %d" % base,
               "REVOKE ALL ON client FROM loader", "DROP ROLE loader")
    return ('%d + %d rows sent (superuser, ordinary session; loader with pg_dump\'s'
            ' settings); %d not (superuser with pg_dump\'s settings)' % (rows, rows, rows))


TESTS = [
    ('(a) pg_restore into the broadcast database: %d clients with a 64kB queue, nothing sent'
     % ROWS, test_pg_restore, 150),
    ('(b) pg_restore -j 4 into the broadcast database: nothing sent', test_pg_restore_jobs, 120),
    ('(c) psql -f of a plain dump into the broadcast database: nothing sent', test_psql_plain, 120),
    ('(d) an application\'s COPY FROM STDIN sends its rows; only a superuser\'s with pg_dump\'s'
     ' settings does not', test_application_copy, 60),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
