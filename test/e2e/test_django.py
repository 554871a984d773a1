"""pg_ws over a Django project's own tables (README.md, "Moving from Django
Channels"), end to end:

  (a) the tables Django 3.2's migration makes (test/django/0001_initial.sql),
      watched in one call, send the frontends exactly the events pg_ws's own
      tables send for the same writes, in the same order;
  (b) kind 'row': any table's changes as <table>_create/_update/_delete;
  (c) pg_dump and pg_restore keep the watch: a restored database, once it
      is the one broadcast, sends the same events;
  (d) the columns pg_ws renders stay: dropping or renaming the client
      table's visit_count (or a 'row' table's listed column) is refused,
      and the tables go on sending their events.

Run by test/run_tests.sh; prints TAP.
"""
import asyncio
import json
import os
import sys

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ClusterKinds, PGBIN, Cluster, Ctx, asql, check,  # noqa: E402
                     poll, port_open, run_tap, short, worker_row)

WATCHDOG_SECONDS = 240

DJANGO_SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          '..', 'django', '0001_initial.sql')

_kinds = ClusterKinds(lambda kind: Cluster(name=kind, database='djangoapp'))


async def django_cluster(ctx):
    """A cluster broadcasting database djangoapp, where the Django app's
    tables are made and watched (once)."""
    cl = await _kinds.get(ctx, 'django')
    conn = await ctx.aconn()
    if not (await asql(conn, "SELECT to_regclass('app_client') IS NOT NULL"))[0][0]:
        with open(DJANGO_SQL) as f:
            await asql(conn, f.read())
        watched = await asql(conn, "SELECT watched::text, kind FROM pg_ws_watch_django('app')")
        check(sorted(watched) == sorted([('app_visithistory', 'visit_history'),
                                         ('app_client', 'client'),
                                         ('app_employee', 'employee'),
                                         ('app_attendance', 'attendance')]),
              'pg_ws_watch_django() watched %r' % (watched,))
    return cl


def writes(client, visit, employee, attendance):
    """What the Django app does: a client seen, a visit, the client's
    counters, an employee and an attendance, then everything deleted (the
    visits before the client, as Django's cascade does)."""
    return [
        "BEGIN",
        "INSERT INTO %s (id, first_seen, last_seen, visit_count, gender, age, image)"
        " VALUES (41, '2023-12-10 10:00:00+00', '2023-12-10 10:00:00+00', 0, 'female', 29,"
        " 'client_images/a b.jpg')" % client,
        "COMMIT",
        "BEGIN",
        "INSERT INTO %s (datetime, device_id, client_id)"
        " VALUES ('2023-12-10 12:00:00+00', 'XYZ789', 41)" % visit,
        "UPDATE %s SET visit_count = visit_count + 1, last_seen = '2023-12-10 12:00:00+00'"
        " WHERE id = 41" % client,
        "COMMIT",
        "INSERT INTO %s (id, first_name, last_name, email, phone_number, image,"
        " working_graphic_id) VALUES (42, 'John', 'Doe', 'john.doe@example.com',"
        " '1234567890', 'employee_images/john_doe.jpg', NULL)" % employee,
        "INSERT INTO %s (device_id, image, datetime, score, employee_id)"
        " VALUES ('1', NULL, '2023-12-10 09:00:00+00', 95, 42)" % attendance,
        "UPDATE %s SET first_name = 'Jöhn' WHERE id = 42" % employee,
        "BEGIN",
        "DELETE FROM %s" % attendance,
        "DELETE FROM %s WHERE id = 42" % employee,
        "DELETE FROM %s WHERE client_id = 41" % visit,
        "DELETE FROM %s WHERE id = 41" % client,
        "COMMIT",
    ]


DJANGO_TABLES = ('app_client', 'app_visithistory', 'app_employee', 'app_attendance')
OWN_TABLES = ('client', 'visit_history', 'employee', 'attendance')


def event_and_data(raw):
    """The part of a frame the event document defines."""
    m = json.loads(raw)
    return {'event': m['event'], 'data': m['data']}


async def test_django_tables(ctx):
    """(a) Django's tables, watched in one call, send what pg_ws's own send."""
    cl = await django_cluster(ctx)
    conn = await ctx.aconn()
    sub = await ctx.sub()
    await asql(conn, *writes(*DJANGO_TABLES))
    await asql(conn, "INSERT INTO app_workinggraphic (id, name, start_time, end_time)"
                     " VALUES (1, 'marker', '09:00', '18:00')")   # not watched: no event
    await asql(conn, *writes(*OWN_TABLES))
    # 10 events each way (attendance updates are not announced)
    msgs = await sub.expect(20, 30, 'events of both table sets')
    check(len(msgs) == 20, '%d events, expected 20' % len(msgs), *sub.last_lines(25))
    django, own = [event_and_data(m) for m in msgs[:10]], [event_and_data(m) for m in msgs[10:]]
    names = [e['event'] for e in django]
    check(names == ['client_create', 'client_visit_create', 'client_update',
                    'employee_create', 'employee_attendance', 'employee_update',
                    'employee_attendance_delete', 'employee_delete',
                    'client_visit_delete', 'client_delete'],
          'Django tables sent %s' % names)
    diffs = ['%d: %s\n   own: %s' % (i, short(json.dumps(a)), short(json.dumps(b)))
             for i, (a, b) in enumerate(zip(django, own)) if a != b]
    check(not diffs, 'the Django tables and pg_ws\'s own tables sent different events', *diffs)
    update = django[2]['data']
    check(update['visit_histories'] == [{'datetime': '2023-12-10T12:00:00Z',
                                         'device_id': 'XYZ789'}]
          and update['image'] == '/media/client_images/a%20b.jpg',
          'client_update from Django tables: %s' % short(json.dumps(update)))
    return '%d events from each table set, identical: %s' % (len(django), ', '.join(names))


async def test_row_tables(ctx):
    """(b) kind 'row': <table>_create/_update/_delete with the row as data."""
    cl = await django_cluster(ctx)
    conn = await ctx.aconn()
    await asql(conn, "CREATE TABLE app_device (id integer PRIMARY KEY, name text,"
                     " location jsonb, secret text)",
               "SELECT pg_ws_watch('app_device', 'row', columns => '{id,name,location}')")
    sub = await ctx.sub()
    await asql(conn, "INSERT INTO app_device VALUES (7, 'gate', '{\"floor\": 2}', 'k')",
               "UPDATE app_device SET name = 'main gate'",
               "DELETE FROM app_device")
    msgs = await sub.expect(3, 30, 'row events')
    got = [event_and_data(m) for m in msgs]
    want = [{'event': 'app_device_create',
             'data': {'id': 7, 'name': 'gate', 'location': {'floor': 2}}},
            {'event': 'app_device_update',
             'data': {'id': 7, 'name': 'main gate', 'location': {'floor': 2}}},
            {'event': 'app_device_delete', 'data': {'id': 7}}]
    check(got == want, 'row events: %s' % got)
    check(all('secret' not in m for m in msgs), 'an unlisted column was sent')
    await asql(conn, "SELECT pg_ws_unwatch('app_device')", "DROP TABLE app_device")
    return ', '.join(e['event'] for e in got)


async def test_dump_restore(ctx):
    """(c) pg_dump/pg_restore: the restored tables are still watched."""
    cl = await django_cluster(ctx)
    conn = await ctx.aconn()
    await asql(conn, "INSERT INTO app_client (id, visit_count) VALUES (50, 1)",
               "INSERT INTO app_visithistory (datetime, device_id, client_id)"
               " VALUES ('2023-12-11 08:00:00+00', 'D1', 50)")
    dump = os.path.join(cl.dir, 'djangoapp.dump')
    r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_dump', '-Fc', '-h', cl.dir,
                                '-p', str(cl.pgport), '-U', 'postgres', '-d', 'djangoapp',
                                '-f', dump, check=False)
    check(r.returncode == 0, 'pg_dump failed: %s' % short(r.stdout, 1000))
    admin = await ctx.aconn(dbname='postgres')
    await asql(admin, "CREATE DATABASE restored")
    r = await asyncio.to_thread(cl.as_postgres, PGBIN + '/pg_restore', '--exit-on-error',
                                '-h', cl.dir, '-p', str(cl.pgport), '-U', 'postgres',
                                '-d', 'restored', dump, check=False)
    check(r.returncode == 0, 'pg_restore failed: %s' % short(r.stdout, 2000))
    dst = await ctx.aconn(dbname='restored')
    watched = await asql(dst, "SELECT relation::text, kind FROM pg_ws_watched ORDER BY 1")
    check(watched == [('app_attendance', 'attendance'), ('app_client', 'client'),
                      ('app_employee', 'employee'), ('app_visithistory', 'visit_history')],
          'pg_ws_watched after the restore: %r' % (watched,))
    triggers = await asql(dst, "SELECT tgrelid::regclass::text FROM pg_trigger"
                               " WHERE tgname = 'pg_ws_event' AND tgrelid::regclass::text"
                               " LIKE 'app\\_%' ORDER BY 1")
    check([t for (t,) in triggers] == sorted(DJANGO_TABLES),
          'pg_ws_event triggers after the restore: %r' % (triggers,))

    # broadcast the restored database: a new worker serves it
    since = cl.log_size()
    pid = (await worker_row(admin))[0]
    await asql(admin, "ALTER SYSTEM SET pg_ws.database = 'restored'", "SELECT pg_reload_conf()",
               ("SELECT pg_terminate_backend(%s)", (pid,)))
    await cl.wait_listening(cl.wsport, 60, since)
    sub = await ctx.sub()
    await asql(dst, "UPDATE app_client SET visit_count = 2 WHERE id = 50")
    msgs = await sub.expect(1, 30, 'an event from the restored database')
    got = event_and_data(msgs[0])
    check(got['event'] == 'client_update' and got['data']['id'] == 50
          and got['data']['visit_histories'] == [{'datetime': '2023-12-11T08:00:00Z',
                                                  'device_id': 'D1'}],
          'from the restored database: %s' % short(msgs[0]))
    since = cl.log_size()
    await asql(admin, "ALTER SYSTEM RESET pg_ws.database", "SELECT pg_reload_conf()")
    await worker_back(cl, since, 'djangoapp')
    return 'restored: 4 tables watched, client_update with its visit sent'


async def worker_back(cl, since, dbname):
    """After a reload that points pg_ws.database back at dbname: the worker
    restarts under it (since 1.2.1; 1.2's went on), wait until the next one
    listens, so that the next test's subscribers find it."""
    restart = 'pg_ws worker restarting: pg_ws.database "%s"' % dbname
    listening = 'pg_ws listening on 127.0.0.1, port %d,' % cl.wsport
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        lines = cl.log_since(since)
        at = next((i for i, line in enumerate(lines) if restart in line), None)
        if at is not None:
            async def listens():
                return any(listening in line for line in cl.log_since(since)[at:])
            await poll('the worker back on %s' % dbname, listens, 60)
            break
        await asyncio.sleep(0.1)
    await port_open(cl.wsport, 30)


async def test_columns_stay(ctx):
    """(d) the columns pg_ws renders stay while it watches the tables:
    dropping or renaming app_client.visit_count, or a 'row' table's listed
    column, is refused with SQLSTATE 2BP01 naming the watch, and the
    tables go on sending their events (1.2 let the DDL through, and every
    later write to the table failed)."""
    cl = await django_cluster(ctx)
    conn = await ctx.aconn()
    await asql(conn, "CREATE TABLE app_gate (id integer PRIMARY KEY, name text, secret text)",
               "SELECT pg_ws_watch('app_gate', 'row', columns => '{id,name}')")
    refused = []
    for ddl in ["ALTER TABLE app_client DROP COLUMN visit_count",
                "ALTER TABLE app_client RENAME COLUMN visit_count TO visits",
                "ALTER TABLE app_visithistory DROP COLUMN device_id",
                "ALTER TABLE app_gate DROP COLUMN name",
                "ALTER TABLE app_gate RENAME COLUMN name TO label"]:
        try:
            await asql(conn, ddl)
            refused.append('%s: not refused' % ddl)
        except psycopg2.Error as e:
            if e.pgcode != '2BP01' or 'pg_ws' not in (e.diag.message_detail or ''):
                refused.append('%s: %s %s / %s' % (ddl, e.pgcode, e.pgerror.strip(),
                                                   e.diag.message_detail))
    check(not refused, *refused)
    # an unlisted column may go
    await asql(conn, "ALTER TABLE app_gate DROP COLUMN secret")
    sub = await ctx.sub()
    await asql(conn, "INSERT INTO app_client (id, visit_count) VALUES (60, 3)",
               "INSERT INTO app_visithistory (datetime, device_id, client_id)"
               " VALUES ('2023-12-12 08:00:00+00', 'G1', 60)",
               "INSERT INTO app_gate VALUES (1, 'north')")
    msgs = await sub.expect(3, 30, 'events after the refused DDL')
    got = [event_and_data(m) for m in msgs]
    check([g['event'] for g in got] == ['client_create', 'client_visit_create', 'app_gate_create']
          and got[0]['data']['visit_count'] == 3
          and got[2]['data'] == {'id': 1, 'name': 'north'},
          'after the refused DDL: %s' % short(json.dumps(got)))
    await asql(conn, "DELETE FROM app_visithistory WHERE client_id = 60",
               "DELETE FROM app_client WHERE id = 60",
               "SELECT pg_ws_unwatch('app_gate')", "DROP TABLE app_gate")
    return 'refused with 2BP01: %d commands; then %s' % (5, ', '.join(g['event'] for g in got))


TESTS = [
    ('(a) a Django app\'s tables, watched in one call, send what pg_ws\'s own tables send',
     test_django_tables, 60),
    ('(b) kind \'row\': <table>_create/_update/_delete with the watched columns',
     test_row_tables, 40),
    ('(c) pg_dump/pg_restore keep the watch: the restored database sends the same events',
     test_dump_restore, 90),
    ('(d) columns pg_ws renders cannot be dropped or renamed while watched; events go on',
     test_columns_stay, 40),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
