"""No forged event, no silent gap (issue 14, items 2 and 8), end to end, as
subscribers see it (README.md, "Watching tables you already have"):

  (a) a watched 'row' table that its owner renames, to a name of the event
      document and to one that is JSON, still sends its events under the
      name it was watched with: one "event" key, nothing a client_* filter
      takes;
  (b) rows written with session_replication_role = replica are broadcast
      for the tables watched with replicated => true (pg_ws's own client
      table included) and not for the others;
  (c) the same for rows logical replication applies (a subscription of
      this cluster to another database of it);
  (d) pg_dump/pg_restore keep the choice: the restored database's triggers
      fire for replicated rows where the original's did, and it broadcasts
      them once it is pg_ws.database; and a watch's filter columns, which
      still scope its events there, and are still not sent;
  (e) a data-only pg_restore --disable-triggers works, and says (and
      pg_ws_watch_status shows) which tables' triggers it left firing for
      ordinary writes only.

Run by test/run_tests.sh; prints TAP.
"""
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, PGBIN, Cluster, Ctx, Fail, asql, check,  # noqa: E402
                     run_tap, short, worker_row)

WATCHDOG_SECONDS = 300

# wal_level = logical for (c)'s subscription
_kinds = ClusterKinds(lambda kind: Cluster(name=kind, database='watchapp',
                                           conf=['wal_level = logical']))

JSON_NAME = '"x"", ""event"": ""client_delete"", ""q"": """'


async def watch_cluster(ctx):
    return await _kinds.get(ctx, 'watch')


def parse_once(raw):
    """The message as a JSON parser reads it, failing on a key that comes
    twice (JSON.parse would keep the last one)."""
    def pairs(items):
        names = [k for k, _ in items]
        if len(names) != len(set(names)):
            raise Fail('a key comes twice, %s: %s' % (names, short(raw)))
        return dict(items)
    return json.loads(raw, object_pairs_hook=pairs)


def named(msgs):
    """(event, data's id) of each message."""
    out = []
    for m in msgs:
        e = parse_once(m)
        out.append((e['event'], e['data'].get('id')))
    return out


async def test_rename(ctx):
    """(a) renaming a watched table changes nothing subscribers see."""
    cl = await watch_cluster(ctx)
    conn = await ctx.aconn()
    await asql(conn, "CREATE SCHEMA shop",
               "CREATE ROLE shop_owner",
               "GRANT USAGE, CREATE ON SCHEMA shop TO shop_owner",
               "CREATE TABLE shop.orders (id integer PRIMARY KEY, status text)",
               "SELECT pg_ws_watch('shop.orders', 'row')",
               "ALTER TABLE shop.orders OWNER TO shop_owner")
    sub = await ctx.sub()
    clients = await ctx.sub('/ws/?events=client_*')
    owner = await ctx.aconn()
    # the table's owner, who holds no privilege of pg_ws's
    await asql(owner, "SET ROLE shop_owner",
               "ALTER TABLE shop.orders RENAME TO client",
               "INSERT INTO shop.client VALUES (1, 'new')",
               "ALTER TABLE shop.client RENAME TO %s" % JSON_NAME,
               "INSERT INTO shop.%s VALUES (2, 'new')" % JSON_NAME,
               "UPDATE shop.%s SET status = 'paid' WHERE id = 2" % JSON_NAME,
               "DELETE FROM shop.%s WHERE id = 1" % JSON_NAME)
    # a real client event after them: what the client_* subscriber gets first
    await asql(conn, "INSERT INTO client (id, visit_count) VALUES (7001, 0)")
    msgs = await sub.expect(5, 30, 'the renamed table\'s events and a client_create')
    got = named(msgs)
    check(got == [('orders_create', 1), ('orders_create', 2), ('orders_update', 2),
                  ('orders_delete', 1), ('client_create', 7001)],
          'events: %s' % got, *sub.last_lines(6))
    check(all(m.startswith('{"event": "orders_') for m in msgs[:4]),
          'frames do not begin with the watched name', *sub.last_lines(6))
    cmsgs = await clients.expect(1, 30, 'the client_* subscriber\'s event')
    check(named(cmsgs) == [('client_create', 7001)],
          'the client_* subscriber got %s' % named(cmsgs), *clients.last_lines())
    status = await asql(conn, "SELECT relation::text, events, problem FROM pg_ws_watch_status"
                              " WHERE NOT own")
    check(status == [('shop.%s' % JSON_NAME,
                      ['orders_create', 'orders_update', 'orders_delete'], None)],
          'pg_ws_watch_status: %r' % (status,))
    await asql(conn, "DROP SCHEMA shop CASCADE", "DROP ROLE shop_owner",
               "DELETE FROM client WHERE id = 7001")
    return 'renamed to client and to JSON: %s' % ', '.join(e for e, _ in got[:4])


async def replicated_tables(conn):
    """s.mirror watched with replicated => true, s.plain without, and pg_ws's
    own client table with it (once)."""
    if (await asql(conn, "SELECT to_regclass('s.mirror') IS NOT NULL"))[0][0]:
        return
    await asql(conn, "CREATE SCHEMA s",
               "CREATE TABLE s.mirror (id integer PRIMARY KEY, v text)",
               "CREATE TABLE s.plain (id integer PRIMARY KEY, v text)",
               "SELECT pg_ws_watch('s.mirror', 'row', replicated => true)",
               "SELECT pg_ws_watch('s.plain', 'row')",
               "SELECT pg_ws_watch('client', 'client', replicated => true)")


async def firing(conn):
    """{table: (tgenabled, fires, fires_replicated, problem)}"""
    rows = await asql(conn, "SELECT s.relation::text, t.tgenabled, s.fires, s.fires_replicated,"
                            " s.problem FROM pg_ws_watch_status s"
                            " JOIN pg_trigger t ON t.tgrelid = s.relation"
                            " AND t.tgname = 'pg_ws_event' ORDER BY 1")
    return {r[0]: tuple(r[1:]) for r in rows}


EXPECTED_FIRING = {
    'attendance': ('O', True, False, None),
    'client': ('A', True, True, None),
    'employee': ('O', True, False, None),
    'visit_history': ('O', True, False, None),
    's.mirror': ('A', True, True, None),
    's.plain': ('O', True, False, None),
}


async def replica_writes(ctx, conn, sub, base):
    """Rows written as replication writes them, then an ordinary one: only
    the tables that asked for replicated rows send theirs."""
    rep = await ctx.aconn(dbname=conn.info.dbname,
                          options='-c session_replication_role=replica')
    await asql(rep, "INSERT INTO s.plain VALUES (%d, 'replicated')" % base,
               "INSERT INTO s.mirror VALUES (%d, 'replicated')" % base,
               "INSERT INTO client (id, visit_count) VALUES (%d, 0)" % base,
               "INSERT INTO s.plain VALUES (%d, 'replicated')" % (base + 1))
    await asql(conn, "INSERT INTO s.plain VALUES (%d, 'ordinary')" % (base + 2))
    msgs = await sub.expect(3, 30, 'the replicated rows\' events')
    got = named(msgs)
    check(got == [('mirror_create', base), ('client_create', base),
                  ('plain_create', base + 2)],
          'events: %s (s.plain\'s replicated rows must send none)' % got, *sub.last_lines())
    applied = await asql(conn, "SELECT count(*) FROM s.plain WHERE id IN (%d, %d)"
                               % (base, base + 1))
    check(applied[0][0] == 2, 'the replicated rows of s.plain were not written')
    return got


async def test_replica_role(ctx):
    """(b) session_replication_role = replica: broadcast when asked."""
    cl = await watch_cluster(ctx)
    conn = await ctx.aconn()
    await replicated_tables(conn)
    got_firing = await firing(conn)
    check(got_firing == EXPECTED_FIRING, 'triggers: %r' % (got_firing,))
    sub = await ctx.sub()
    got = await replica_writes(ctx, conn, sub, 100)
    return ', '.join('%s %s' % e for e in got)


async def test_logical_replication(ctx):
    """(c) rows a subscription applies are broadcast when asked."""
    cl = await watch_cluster(ctx)
    conn = await ctx.aconn()
    await replicated_tables(conn)
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, "CREATE DATABASE upstream")
    up = await ctx.aconn(dbname='upstream')
    await asql(up, "CREATE SCHEMA s",
               "CREATE TABLE s.mirror (id integer PRIMARY KEY, v text)",
               "CREATE TABLE s.plain (id integer PRIMARY KEY, v text)",
               "CREATE TABLE public.client (id bigint PRIMARY KEY, first_seen timestamptz,"
               " last_seen timestamptz, visit_count integer NOT NULL DEFAULT 0, gender text,"
               " age integer, image text)",
               "CREATE PUBLICATION watch_pub FOR TABLE s.mirror, s.plain, public.client",
               # a subscription to the same cluster cannot create its slot
               "SELECT pg_create_logical_replication_slot('watch_sub', 'pgoutput')")
    await asql(conn, "CREATE SUBSCRIPTION watch_sub CONNECTION 'host=%s port=%d dbname=upstream"
                     " user=postgres' PUBLICATION watch_pub WITH (create_slot = false,"
                     " slot_name = 'watch_sub', copy_data = false)" % (cl.dir, cl.pgport))
    try:
        sub = await ctx.sub()
        # one transaction each, applied in commit order
        await asql(up, "INSERT INTO s.plain VALUES (200, 'applied')",
                   "INSERT INTO s.mirror VALUES (200, 'applied')",
                   "INSERT INTO public.client (id, visit_count) VALUES (200, 3)",
                   "INSERT INTO s.plain VALUES (201, 'applied')",
                   "INSERT INTO s.mirror VALUES (201, 'applied')")
        msgs = await sub.expect(3, 60, 'events of the rows the subscription applied')
        got = named(msgs)
        check(got == [('mirror_create', 200), ('client_create', 200), ('mirror_create', 201)],
              'events: %s (s.plain\'s applied rows must send none)' % got, *sub.last_lines())
        check(parse_once(msgs[1])['data']['visit_count'] == 3,
              'client_create: %s' % short(msgs[1]))
        applied = await asql(conn, "SELECT count(*) FROM s.plain WHERE id IN (200, 201)")
        check(applied[0][0] == 2, 'the subscription did not apply s.plain\'s rows')
    finally:
        # this database is dumped next: no subscription in it
        await asql(conn, "ALTER SUBSCRIPTION watch_sub DISABLE",
                   "ALTER SUBSCRIPTION watch_sub SET (slot_name = NONE)",
                   "DROP SUBSCRIPTION watch_sub")
        deadline = time.monotonic() + 30
        while True:
            try:
                await asql(up, "SELECT pg_drop_replication_slot('watch_sub')")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    return ', '.join('%s %s' % e for e in got) + ' (s.plain: none)'


async def serve_database(cl, admin, name):
    """Make the worker broadcast database name."""
    since = cl.log_size()
    pid = (await worker_row(admin))[0]
    await asql(admin, "ALTER SYSTEM SET pg_ws.database = '%s'" % name,
               "SELECT pg_reload_conf()", ("SELECT pg_terminate_backend(%s)", (pid,)))
    await cl.wait_listening(cl.wsport, 60, since)


async def test_dump_restore(ctx):
    """(d) pg_dump/pg_restore keep replicated => true, for watched tables
    (the trigger's ENABLE ALWAYS and pg_ws_watched) and for pg_ws's own
    (pg_ws_own_tables).  A watch's filter columns are kept too."""
    cl = await watch_cluster(ctx)
    conn = await ctx.aconn()
    await replicated_tables(conn)
    if not (await asql(conn, "SELECT to_regclass('s.scoped') IS NOT NULL"))[0][0]:
        await asql(conn, "CREATE TABLE s.scoped (id integer PRIMARY KEY, v text, site integer)",
                   "SELECT pg_ws_watch('s.scoped', 'row', columns => '{id,v}',"
                   " filter_columns => '{site}')")
    dump = os.path.join(cl.dir, 'watchapp.dump')
    r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_dump', '-Fc', '-h', cl.dir,
                                '-p', str(cl.pgport), '-U', 'postgres', '-d', 'watchapp',
                                '-f', dump, check=False)
    check(r.returncode == 0, 'pg_dump failed: %s' % short(r.stdout, 1000))
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, "CREATE DATABASE restored")
    r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_restore', '--exit-on-error',
                                '-h', cl.dir, '-p', str(cl.pgport), '-U', 'postgres',
                                '-d', 'restored', dump, check=False)
    check(r.returncode == 0, 'pg_restore failed: %s' % short(r.stdout, 2000))
    noise = [line for line in r.stdout.splitlines() if 'pg_ws_event' in line]
    check(not noise, 'pg_restore said:', *noise)
    dst = await ctx.aconn(dbname='restored')
    watched = await asql(dst, "SELECT relation::text, event_prefix, replicated FROM pg_ws_watched"
                              " ORDER BY 1")
    check(watched == [('s.mirror', 'mirror', True), ('s.plain', 'plain', False),
                      ('s.scoped', 'scoped', False)],
          'pg_ws_watched after the restore: %r' % (watched,))
    scoped = await asql(dst, "SELECT filter_columns::text[] FROM pg_ws_watched"
                             " WHERE relation = 's.scoped'::regclass")
    check(scoped == [(['site'],)], 's.scoped\'s filter columns after the restore: %r' % (scoped,))
    own = await asql(dst, "SELECT relation::text, replicated FROM pg_ws_own_tables")
    check(own == [('client', True)], 'pg_ws_own_tables after the restore: %r' % (own,))
    got_firing = await firing(dst)
    check(got_firing == dict(EXPECTED_FIRING, **{'s.scoped': ('O', True, False, None)}),
          'triggers after the restore: %r' % (got_firing,))

    await serve_database(cl, admin, 'restored')
    try:
        sub = await ctx.sub()
        site7 = await ctx.sub('/ws/?filter=site%3Deq.7')
        got = await replica_writes(ctx, dst, sub, 300)
        await asql(dst, "INSERT INTO s.scoped VALUES (1, 'seven', 7), (2, 'eight', 8)",
                   "UPDATE s.scoped SET v = 'seven!' WHERE id = 1",
                   "DELETE FROM s.scoped")
        msgs = await site7.expect(3, 30, 'site 7\'s events of s.scoped')
        check([(e, d) for e, d in ((json.loads(m)['event'], json.loads(m)['data']) for m in msgs)]
              == [('scoped_create', {'id': 1, 'v': 'seven'}),
                  ('scoped_update', {'id': 1, 'v': 'seven!'}),
                  ('scoped_delete', {'id': 1})],
              'site 7\'s events of s.scoped in the restored database:', *site7.last_lines())
    finally:
        await asql(admin, "ALTER SYSTEM RESET pg_ws.database", "SELECT pg_reload_conf()")
    return 'restored: client and s.mirror ENABLE ALWAYS, s.plain not; ' + \
        ', '.join('%s %s' % e for e in got)


async def test_data_only_restore(ctx):
    """(e) a data-only restore with --disable-triggers, as a superuser: it
    succeeds, warns that the tables watched with replicated => true fire
    for ordinary writes only afterwards (ENABLE TRIGGER ALL), and
    pg_ws_watch_status shows them until ENABLE ALWAYS mends them."""
    cl = await watch_cluster(ctx)
    conn = await ctx.aconn()
    await replicated_tables(conn)
    dump = os.path.join(cl.dir, 'watchapp.dump')
    if not os.path.exists(dump):
        r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_dump', '-Fc', '-h', cl.dir,
                                    '-p', str(cl.pgport), '-U', 'postgres', '-d', 'watchapp',
                                    '-f', dump, check=False)
        check(r.returncode == 0, 'pg_dump failed: %s' % short(r.stdout, 1000))
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, "CREATE DATABASE data_only")
    restore = [PGBIN + '/pg_restore', '--exit-on-error', '-h', cl.dir, '-p', str(cl.pgport),
               '-U', 'postgres', '-d', 'data_only']
    r = await asyncio.to_thread(cl.as_postgres, *restore, '--schema-only', dump, check=False)
    check(r.returncode == 0, 'pg_restore --schema-only failed: %s' % short(r.stdout, 2000))
    # --verbose: pg_restore shows the server's notices only then
    r = await asyncio.to_thread(cl.as_postgres, *restore, '--data-only', '--disable-triggers',
                                '--verbose', dump, check=False)
    check(r.returncode == 0, 'pg_restore --data-only --disable-triggers failed: %s'
          % short(r.stdout, 2000))
    warned = sorted({line.split('of table ')[1].split(' ')[0].strip('"')
                     for line in r.stdout.splitlines()
                     if 'does not fire as pg_ws_watch() set it' in line})
    check('s.mirror' in warned and 'public.client' in warned,
          'pg_restore warned about %s' % warned, *r.stdout.splitlines()[-20:])
    dst = await ctx.aconn(dbname='data_only')
    problems = await asql(dst, "SELECT relation::text, fires_replicated, problem FROM pg_ws_watch_status"
                               " WHERE problem IS NOT NULL ORDER BY 1")
    check([p[:2] for p in problems] == [('client', False), ('s.mirror', False)]
          and all(p[2].startswith('replicated rows are asked for') for p in problems),
          'pg_ws_watch_status after the data-only restore: %r' % (problems,))
    await asql(dst, "ALTER TABLE client ENABLE ALWAYS TRIGGER pg_ws_event",
               "ALTER TABLE s.mirror ENABLE ALWAYS TRIGGER pg_ws_event")
    left = await asql(dst, "SELECT count(*) FROM pg_ws_watch_status WHERE problem IS NOT NULL")
    check(left[0][0] == 0, '%d problems left after ENABLE ALWAYS' % left[0][0])
    return 'warned about %s; shown, then mended' % ', '.join(warned)


TESTS = [
    ('(a) a watched table renamed by its owner, to client and to JSON, keeps its events\' name',
     test_rename, 60),
    ('(b) session_replication_role = replica: rows broadcast for replicated => true only',
     test_replica_role, 60),
    ('(c) rows a logical replication subscription applies: broadcast for replicated => true only',
     test_logical_replication, 90),
    ('(d) pg_dump/pg_restore keep replicated => true, for watched and for pg_ws\'s own tables',
     test_dump_restore, 120),
    ('(e) pg_restore --data-only --disable-triggers: restored, warned, shown in pg_ws_watch_status',
     test_data_only_restore, 120),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
