#!/usr/bin/python3
"""The README's examples, run as they are written.

This file owns the check that what README.md tells a newcomer to type
works: the five postgresql.conf lines that put pg_ws on the internet
(wss://, tokens, origins), the SQL that mints a token for an application
role, the openssl one-liner that mints one without PostgreSQL, and the
configuration table, which must list every parameter the server defines
with its built-in default and context.  The blocks are read from
README.md itself (after their "test_readme" marker), so that the README
and this test cannot drift apart.  The features behind
them are tested in depth by test_tls.py and test_auth.py.

It also runs the section "A page's rows, then live": the endpoint's SQL
(rows and pg_ws_position() in one REPEATABLE READ transaction) answers
the page's /api/clients, and the page's code runs in headless Chromium,
as written but for its first line (PG_WS, here the test cluster's plain
ws://).  Clients are inserted, updated and deleted while the page loads
and after, and more are committed between the endpoint's snapshot and
its answer, so that only a subscription that starts exactly at the
position makes the page's clients end equal to the table's.  The deep
test of positions is test_snapshot.py's.

And the SQL that declares a Django app's filter columns ("Filter
columns"): on the Django tables of test/django, with a table of its own
for the 'row' watch, a subscriber with the README's ?filter=site_id=eq.7
gets exactly site 7's events, deletes included, with no site_id in them.

And the Django view that mints a site's token with a filters claim ("In
a token: filters"), run as written with stand-ins for the two Django
modules it imports: its token, for devices whose names need quoting,
receives exactly those devices' visits and attendance.

The five lines listen on '*' (every address of this machine) with
pg_ws.auth = jwt, on a free port, for the few seconds the test runs.

Run as root: /usr/bin/python3 test/e2e/test_readme.py   (TAP output)
"""

import asyncio
import base64
import http.server
import json
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
import types

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ws_connect  # noqa: E402
from harness import (Cluster, Ctx, Fail, Subscriber, asql, check, free_port,  # noqa: E402
                     run_tap, short, sql)
from test_browser import CHROMIUM, Browser  # noqa: E402
from test_tls import Pki, TlsCluster, client_ctx, install, key_pem, pem  # noqa: E402

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'README.md')
ORIGIN = 'https://app.example.com'

_state = {}


def readme_block(marker):
    """The fenced block that follows <!-- test_readme: marker --> in the
    README."""
    with open(README) as f:
        text = f.read()
    m = re.search(r'<!-- test_readme: %s -->\s*```[a-z]*\n(.*?)```' % re.escape(marker),
                  text, re.S)
    if m is None:
        raise Fail('README.md has no block marked "test_readme: %s"' % marker)
    return m.group(1)


async def wss(cl, query='', origin=ORIGIN, headers=()):
    ws = await ws_connect('wss://127.0.0.1:%d/ws/%s' % (cl.wsport, query),
                                  ssl=client_ctx(_state['ca']), server_hostname='localhost',
                                  origin=origin, extra_headers=list(headers),
                                  ping_interval=None, open_timeout=10, close_timeout=1)
    return Subscriber(ws)


async def receives(ctx, sub, eid):
    ctx.subs.append(sub)
    conn = await ctx.aconn()
    await asql(conn, ("INSERT INTO employee (id, first_name, last_name) VALUES (%s, 'readme', 'x')",
                      (eid,)))
    await sub.wait_until(lambda m: any('"id": %d,' % eid in x for x in m), 15,
                         'the event %d' % eid)


async def refused_with(coro, status, what):
    try:
        ws = await coro
        await ws.ws.close()
    except websockets.InvalidStatusCode as e:
        check(e.status_code == status, '%s: HTTP %d, expected %d' % (what, e.status_code, status))
        return
    raise Fail('%s was accepted' % what)


async def test_five_lines(ctx):
    """The five lines: wss:// with PostgreSQL's own certificate, tokens
    from pg_ws_sign_token, the allowed origin; no token gets 401, another
    origin 403, plain ws:// nothing."""
    cl = ctx.use(_state['cluster'])
    conn = await ctx.aconn()
    token = (await asql(conn, "SELECT pg_ws_sign_token('{\"sub\": \"user-42\"}', '15 minutes')"))[0][0]
    sub = await wss(cl, '?token=' + token)
    await receives(ctx, sub, 900001)
    await refused_with(wss(cl), 401, 'a subscriber without a token')
    await refused_with(wss(cl, '?token=' + token, origin='https://evil.example.net'), 403,
                       'a page of another origin')
    try:
        ws = await ws_connect('ws://127.0.0.1:%d/ws/?token=%s' % (cl.wsport, token),
                                      open_timeout=5)
        await ws.close()
        raise Fail('plain ws:// was served')
    except (websockets.InvalidHandshake, OSError, asyncio.TimeoutError, EOFError):
        pass
    return 'the README lines: %s' % '; '.join(
        x.split('#')[0].strip() for x in readme_block('five lines').splitlines() if x.strip())


async def test_sign_token_grant(ctx):
    """The README's GRANT lets the application's role mint tokens; a role
    without it cannot."""
    cl = ctx.use(_state['cluster'])
    conn = await ctx.aconn()
    await asql(conn, "CREATE ROLE app_backend LOGIN", "CREATE ROLE stranger LOGIN",
               "GRANT EXECUTE ON FUNCTION pg_ws_sign_token(jsonb, interval) TO app_backend")
    app = await ctx.aconn(options='-c role=app_backend')
    token = (await asql(app, "SELECT pg_ws_sign_token('{\"sub\": \"user-42\"}', '15 minutes')"))[0][0]
    sub = await wss(cl, '?token=' + token)
    await receives(ctx, sub, 900002)
    other = await ctx.aconn(options='-c role=stranger')
    try:
        await asql(other, "SELECT pg_ws_sign_token('{}', '1 minute')")
        raise Fail('a role without the grant minted a token')
    except Exception as e:
        check('permission denied' in str(e), 'unexpected error: %s' % short(e))


async def test_openssl_token(ctx):
    """The README's openssl one-liner mints a token the worker accepts
    (here with the test cluster's secret file)."""
    cl = ctx.use(_state['cluster'])
    line = readme_block('openssl token').strip()
    check('/var/lib/postgresql/pg_ws/pg_ws_jwt_secret' in line,
          'the one-liner no longer reads the secret file this test substitutes')
    line = line.replace('/var/lib/postgresql/pg_ws/pg_ws_jwt_secret',
                        os.path.join(cl.data, 'pg_ws_jwt_secret'))
    r = await asyncio.to_thread(subprocess.run, ['bash', '-c', line], capture_output=True,
                                text=True, timeout=30)
    check(r.returncode == 0, 'the one-liner failed: %s' % short(r.stderr))
    token = r.stdout.strip()
    check(token.count('.') == 2, 'the one-liner printed %r' % short(token))
    sub = await wss(cl, headers=[('Authorization', 'Bearer ' + token)])
    await receives(ctx, sub, 900003)
    return 'token of %d characters accepted' % len(token)


def readme_section(title):
    """The text of the README section "## title", up to the next one."""
    with open(README) as f:
        text = f.read()
    m = re.search(r'^## %s\n(.*?)(?=^## )' % re.escape(title), text, re.S | re.M)
    if m is None:
        raise Fail('README.md has no section "%s"' % title)
    return m.group(1)


def shown(boot_val, unit):
    """A parameter's built-in default as SHOW writes it (8MB, 10s, on)."""
    if unit in ('B', 'kB', 'MB', '8kB') and boot_val.lstrip('-').isdigit():
        b = int(boot_val) * {'B': 1, 'kB': 1024, 'MB': 1 << 20, '8kB': 8192}[unit]
        for name, size in (('TB', 1 << 40), ('GB', 1 << 30), ('MB', 1 << 20), ('kB', 1 << 10)):
            if b and b % size == 0:
                return '%d%s' % (b // size, name)
        return '%dB' % b
    if unit in ('s', 'ms', 'min') and boot_val.lstrip('-').isdigit():
        ms = int(boot_val) * {'ms': 1, 's': 1000, 'min': 60000}[unit]
        for name, size in (('d', 86400000), ('h', 3600000), ('min', 60000), ('s', 1000)):
            if ms and ms % size == 0:
                return '%d%s' % (ms // size, name)
        return '%dms' % ms
    return boot_val


async def test_configuration_table(ctx):
    """README's "Configuration" lists every pg_ws parameter the server
    defines, with its built-in default and when a change takes effect."""
    cl = ctx.use(_state['cluster'])
    conn = await ctx.aconn()
    rows = await asql(conn, "SELECT name, boot_val, unit, context FROM pg_settings"
                            " WHERE name LIKE 'pg\\_ws.%' ORDER BY name")
    documented = {}
    for line in readme_section('Configuration').splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) < 4 or not cells[0].startswith('`pg_ws.'):
            continue
        for name in re.findall(r'`(pg_ws\.[a-z_]+)`', cells[0]):
            documented[name] = (cells[1].strip('`'), cells[2], cells[3])
    problems = []
    contexts = {'postmaster': 'restart', 'sighup': 'reload', 'superuser': 'superuser',
                'user': 'user'}
    for name, boot_val, unit, context in rows:
        if name not in documented:
            problems.append('%s is not in the table' % name)
            continue
        default, when, meaning = documented.pop(name)
        if 'obsolete' in meaning:
            continue
        want = shown(boot_val or '', unit)
        if default != want:
            problems.append('%s: the table says default "%s", the server "%s"'
                            % (name, default, want))
        if contexts.get(context, context) not in when:
            problems.append('%s: the table says "%s", the server\'s context is %s'
                            % (name, when, context))
    # an obsolete parameter is still accepted, but hidden from pg_settings
    problems += ['%s is in the table but the server has no such parameter' % n
                 for n, (_, _, meaning) in documented.items() if 'obsolete' not in meaning]
    check(not problems, *problems)
    return '%d parameters, each with its default and context' % len(rows)


# The snapshot page: the README's code after a render() that posts the
# clients it is given back to the page server (numbered, since the POSTs
# may arrive in any order), and anything the page throws.
SNAPSHOT_PAGE = """<!doctype html><meta charset="utf-8"><title>pg_ws</title><script>
const report = (what, body) => fetch('/' + what, {method: 'POST', body});
window.addEventListener('error', (e) => report('error', String(e.message)));
window.addEventListener('unhandledrejection', (e) => report('error', String(e.reason)));
let renders = 0;
function render(clients) {
  const rows = [...clients.values()].map((c) => [c.id, c.age, c.visit_count, c.gender]);
  rows.sort((a, b) => a[0] - b[0]);
  report('render', JSON.stringify({n: renders++, rows}));
}
%s
</script>"""

# client ids: 1..20 are there before the page loads; the writer changes
# 1..10 and the ones it inserts (WRITER_IDS on), the endpoint's hand-off
# 11..20 and the ones it inserts (HANDOFF_IDS on), so that a later change
# of the writer's never repairs a hand-off change the page missed
INITIAL_CLIENTS = 20
HANDOFF_IDS = 500
WRITER_IDS = 1000


def clients_state(conn):
    """The client table as the page reports it: id -> [age, visit_count,
    gender]."""
    return {r[0]: list(r[1:]) for r in
            sql(conn, "SELECT id, age, visit_count, gender FROM client ORDER BY id")}


class SnapshotServer:
    """The page's origin: serves SNAPSHOT_PAGE at /, answers /api/clients
    with the README's SQL, and keeps what the page posts.  Each answer
    first has another session commit changes of clients after the
    snapshot was taken (its "hand-off"), and waits a little while the
    writer commits more: the page gets none of them in its rows, only
    from its subscription."""

    def __init__(self, cl, port, page, statements):
        self.renders = {}       # n -> rows, as render() posted them
        self.errors = []        # what the page threw, or the endpoint
        self.loads = []         # per /api/clients: (position, rows, hand-off)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, kind = 200, 'text/html; charset=utf-8'
                if self.path == '/':
                    body = page.encode()
                elif self.path == '/api/clients':
                    kind = 'application/json'
                    try:
                        body = json.dumps(server.api_clients(cl, statements), default=str).encode()
                    except Exception as e:
                        server.errors.append('/api/clients: %s' % short(e))
                        status, body = 500, b'{}'
                else:
                    status, body = 404, b''
                self.send_response(status)
                self.send_header('content-type', kind)
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get('content-length') or 0)
                body = self.rfile.read(n).decode()
                if self.path == '/render':
                    m = json.loads(body)
                    server.renders[m['n']] = m['rows']
                else:
                    server.errors.append('the page reported %s: %s'
                                         % (self.path.lstrip('/'), short(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def api_clients(self, cl, statements):
        # the block's own BEGIN and COMMIT make the transaction: psycopg2
        # must not open one of its own before them (its BEGIN would make
        # the block's a no-op, and READ COMMITTED), hence autocommit
        conn = cl.connect()
        other = cl.connect()
        try:
            answer = {}
            with conn.cursor() as cur:
                for stmt in statements:
                    if stmt.upper() == 'COMMIT':
                        handoff = self.handoff(other)
                        time.sleep(0.3)
                    cur.execute(stmt)
                    if cur.description is None:
                        continue
                    names = [d.name for d in cur.description]
                    if names == ['position']:
                        answer['position'] = cur.fetchone()[0]
                    else:
                        answer['clients'] = [dict(zip(names, r)) for r in cur.fetchall()]
            check('position' in answer and 'clients' in answer,
                  'the README\'s SQL gave no position or no clients: %s' % sorted(answer))
            self.loads.append((answer['position'], len(answer['clients']), handoff))
            return answer
        finally:
            conn.close()
            other.close()

    def handoff(self, conn):
        """Commit, after the snapshot, changes of clients the writer leaves
        alone: two inserted, two updated, one deleted."""
        k = HANDOFF_IDS + 10 * len(self.loads)
        ids = [r[0] for r in sql(conn, ("SELECT id FROM client WHERE id > %s AND id < %s"
                                        " ORDER BY random() LIMIT 3",
                                        (INITIAL_CLIENTS // 2, WRITER_IDS)))]
        sql(conn, ("INSERT INTO client (id, gender, age) VALUES (%s, 'female', 40),"
                   " (%s, 'male', 41)", (k, k + 1)))
        for i in ids[:2]:
            sql(conn, ("UPDATE client SET age = age + 100, visit_count = visit_count + 1"
                       " WHERE id = %s", (i,)))
        if ids[2:]:
            sql(conn, ("DELETE FROM client WHERE id = %s", (ids[2],)))
        return 'inserted %d, %d; updated %s; deleted %s' % (k, k + 1, ids[:2], ids[2:])

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ClientWriter:
    """A thread that inserts, updates (age + 1) and deletes clients
    1..INITIAL_CLIENTS/2 and its own, one statement at a time or a few in a
    transaction held open a moment, until stop()."""

    def __init__(self, cl):
        self.cl = cl
        self.stopping = threading.Event()
        self.error = None
        self.count = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        rnd = random.Random()
        ids = list(range(1, INITIAL_CLIENTS // 2 + 1))
        next_id = WRITER_IDS
        try:
            conn = self.cl.connect()
        except Exception as e:
            self.error = e
            return
        try:
            while not self.stopping.is_set():
                stmts = []
                for _ in range(rnd.choice([1, 1, 1, 3])):
                    op = rnd.random()
                    if op < 0.35 or len(ids) < 3:
                        stmts.append(("INSERT INTO client (id, first_seen, gender, age)"
                                      " VALUES (%s, now(), 'male', 20)", (next_id,)))
                        ids.append(next_id)
                        next_id += 1
                    elif op < 0.75:
                        stmts.append(("UPDATE client SET age = age + 1, last_seen = now()"
                                      " WHERE id = %s", (rnd.choice(ids),)))
                    else:
                        i = ids.pop(rnd.randrange(len(ids)))
                        stmts.append(("DELETE FROM client WHERE id = %s", (i,)))
                if len(stmts) == 1:
                    sql(conn, *stmts)
                else:
                    sql(conn, 'BEGIN', *stmts)
                    time.sleep(0.05)
                    sql(conn, 'COMMIT')
                self.count += 1
                time.sleep(rnd.uniform(0.005, 0.03))
        except Exception as e:
            self.error = e
        finally:
            conn.close()

    def stop(self):
        self.stopping.set()
        self.thread.join(10)


def state_diff(page, table):
    """How the page's clients differ from the table's, a line each."""
    lines = ['client %s: on the page %s, in the table %s' % (i, page.get(i), table.get(i))
             for i in sorted(set(page) | set(table)) if page.get(i) != table.get(i)]
    return ['%d clients differ (id: [age, visit_count, gender]):' % len(lines)] + \
        ['  ' + x for x in lines[:12]] + (['  ...'] if len(lines) > 12 else [])


async def test_snapshot_page(ctx):
    """The README's endpoint SQL and page code: while clients change, the
    page's clients (its rows, then every event applied) end equal to the
    table, although changes were committed between its snapshot and its
    subscription."""
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    statements = [x.strip() for x in readme_block('snapshot rows').split(';') if x.strip()]
    check(len(statements) == 4 and statements[0].upper().startswith('BEGIN')
          and statements[-1].upper() == 'COMMIT'
          and 'pg_ws_position()' in statements[1] and 'FROM client' in statements[2],
          'the "snapshot rows" block is no longer BEGIN; position; rows; COMMIT:',
          *statements)
    first, _, code = readme_block('snapshot page').partition('\n')
    check(first.startswith('const PG_WS ='),
          'the "snapshot page" block does not begin with const PG_WS: %s' % first)

    # the page comes from its own origin, which the cluster must allow
    page_port = free_port()
    cl = ctx.use(Cluster(name='readme-snapshot', conf=[
        "pg_ws.allowed_origins = 'http://127.0.0.1:%d'" % page_port]))
    await asyncio.to_thread(cl.start)
    await cl.install()
    conn = await ctx.aconn()
    await asql(conn, ("INSERT INTO client (id, first_seen, gender, age)"
                      " SELECT g, now(), 'female', 20 + g FROM generate_series(1, %s) g",
                      (INITIAL_CLIENTS,)))

    page = SNAPSHOT_PAGE % ('const PG_WS = "%s";\n%s' % (cl.url, code))
    server = SnapshotServer(cl, page_port, page, statements)
    writer = browser = None
    try:
        # the writer runs before the page loads, while it loads (snapshots
        # then see transactions still open) and 2 s after it subscribed
        writer = ClientWriter(cl)
        await asyncio.sleep(0.5)
        browser = Browser('http://127.0.0.1:%d/' % page_port)
        deadline = time.monotonic() + 60
        while not server.renders:
            check(not server.errors, *server.errors)
            check(writer.error is None, 'the writer failed: %s' % short(writer.error))
            check(time.monotonic() < deadline, 'the page rendered nothing within 60 s')
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        await asyncio.to_thread(writer.stop)
        check(writer.error is None, 'the writer failed: %s' % short(writer.error))

        table = await asyncio.to_thread(clients_state, conn)
        deadline = time.monotonic() + 30
        while True:
            check(not server.errors, *server.errors)
            latest = server.renders[max(server.renders)]
            shown = {r[0]: r[1:] for r in latest}
            if shown == table:
                break
            if time.monotonic() > deadline:
                raise Fail('the page\'s clients are not the table\'s 30 s after the writes'
                           ' (%d renders, loads: %s)' % (len(server.renders), server.loads),
                           *state_diff(shown, table))
            await asyncio.sleep(0.2)
        # the rows alone cannot be it: the page applied events it was sent
        check(len(server.renders) > len(server.loads),
              'the page rendered only its loads (%d), no event' % len(server.renders))
        return ('%d clients equal; %d writer transactions, %d renders, %d load(s); hand-off: %s'
                % (len(table), writer.count, len(server.renders), len(server.loads),
                   server.loads[0][2]))
    finally:
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if browser is not None:
            browser.close()
        server.close()


async def test_filter_columns(ctx):
    """The README's filter columns: site 7's events, and no site_id."""
    cl = ctx.use(Cluster(name='readme-sites'))
    await asyncio.to_thread(cl.start)
    await cl.install()
    conn = await asyncio.to_thread(cl.connect)
    try:
        with open(os.path.join(os.path.dirname(README), 'test', 'django', '0001_initial.sql')) as f:
            await asql(conn, f.read())
        await asql(conn, "CREATE TABLE gates (id integer PRIMARY KEY, name text, site_id integer)")
        await asql(conn, readme_block('filter columns'))
        site7 = await ctx.sub('/ws/?filter=site_id%3Deq.7', url=cl.url)
        everything = await ctx.sub('/ws/', url=cl.url)
        await asql(conn, "INSERT INTO app_client (id, visit_count, site_id) VALUES (1, 0, 7), (2, 0, 8)",
                   "INSERT INTO app_visithistory (datetime, device_id, client_id, site_id)"
                   " VALUES (now(), 'cam-7', 1, 7), (now(), 'cam-8', 2, 8)",
                   "INSERT INTO gates VALUES (1, 'north', 7), (2, 'south', 8)",
                   "DELETE FROM app_visithistory", "DELETE FROM app_client", "DELETE FROM gates",
                   "SELECT pg_ws_send('readme_done')")
    finally:
        conn.close()
    await everything.wait_until(lambda m: m and 'readme_done' in m[-1], 30, 'every event')
    await asyncio.sleep(0.3)
    got = [(json.loads(m)['event'], json.loads(m)['data'].get('id', json.loads(m)['data'].get('client')))
           for m in site7.msgs]
    check(got == [('client_create', 1), ('client_visit_create', 1), ('gates_create', 1),
                  ('client_visit_delete', 1), ('client_delete', 1), ('gates_delete', 1)],
          'site 7\'s subscriber got %s' % got)
    check(not any('site_id' in m for m in site7.msgs + everything.msgs),
          'a message carries site_id')
    return 'site 7: %s' % ', '.join(e for e, _ in got)


def run_django_view(code, conn, devices):
    """The README's view, with django.db.connection our connection and
    JsonResponse a dict; the token it answers for a user with devices."""
    django = types.ModuleType('django')
    db = types.ModuleType('django.db')
    db.connection = conn
    http = types.ModuleType('django.http')
    http.JsonResponse = dict
    saved = {k: sys.modules.get(k) for k in ('django', 'django.db', 'django.http')}
    sys.modules.update({'django': django, 'django.db': db, 'django.http': http})
    try:
        ns = {}
        exec(code, ns)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v

    class Devices:
        def values_list(self, field, flat=False):
            check(field == 'device_id' and flat, 'values_list(%r, flat=%r)' % (field, flat))
            return list(devices)
    request = types.SimpleNamespace(user=types.SimpleNamespace(
        pk=42, site=types.SimpleNamespace(devices=Devices())))
    return ns['pg_ws_token'](request)['token']


async def test_django_token(ctx):
    """The README's Django view mints a token whose filters claim gives a
    site's screen its devices' visits and attendance, and nothing else."""
    cl = ctx.use(_state['cluster'])
    code = textwrap.dedent(readme_block('django token'))
    devices = ['cam-7', 'cam,8 "north"']
    conn = await ctx.aconn()
    token = await asyncio.to_thread(run_django_view, code, conn, devices)
    sub = await wss(cl, '?token=' + token)
    ctx.subs.append(sub)
    await asql(conn, "INSERT INTO client (id, visit_count) VALUES (950001, 0)",
               "INSERT INTO employee (id, first_name, last_name) VALUES (950001, 'a', 'b')")
    for dev in devices + ['cam-9', 'cam']:
        await asql(conn, ("INSERT INTO visit_history (client_id, datetime, device_id)"
                          " VALUES (950001, now(), %s)", (dev,)),
                   ("INSERT INTO attendance (employee_id, device_id, datetime, score)"
                    " VALUES (950001, %s, now(), 90)", (dev,)))
    await asql(conn, "DELETE FROM attendance WHERE employee_id = 950001",
               "DELETE FROM employee WHERE id = 950001",
               "DELETE FROM client WHERE id = 950001")
    want = [(e, d) for d in devices for e in ('client_visit_create', 'employee_attendance')] + \
        [('employee_attendance_delete', None)] * 2 + [('client_visit_delete', d) for d in devices]
    await sub.wait_until(lambda m: len(m) >= len(want), 15, 'the site token\'s events')
    await asyncio.sleep(0.3)
    got = [(json.loads(m)['event'], json.loads(m)['data'].get('device_id')) for m in sub.msgs]
    check(got == want, 'the site token got %s, expected %s' % (got, want))
    return 'token for %s: %d events' % (devices, len(got))


TESTS = [
    ('the README\'s five lines: wss://, tokens, origins', test_five_lines, 60),
    ('the README\'s GRANT lets the application role mint tokens', test_sign_token_grant, 30),
    ('the README\'s openssl one-liner mints an accepted token', test_openssl_token, 30),
    ('the README\'s configuration table: every parameter, its default and context',
     test_configuration_table, 30),
    ('the README\'s snapshot page: its rows, then events, equal the table while it changes',
     test_snapshot_page, 120),
    ('the README\'s filter columns scope a Django app\'s events to a site', test_filter_columns, 60),
    ('the README\'s Django view mints a site token that scopes its events', test_django_token, 60),
]


def main():
    async def setup():
        pki = Pki()
        cert, key = pki.server()
        _state['ca'] = pem(pki.root)
        secret = base64.b64encode(os.urandom(48)) + b'\n'

        def prepare(cl):
            # PostgreSQL's own server.crt and server.key, and the secret,
            # in the data directory, as the README says
            install(os.path.join(cl.data, 'server.crt'), pem(cert), 0o644)
            install(os.path.join(cl.data, 'server.key'), key_pem(key), 0o600)
            install(os.path.join(cl.data, 'pg_ws_jwt_secret'), secret, 0o600)

        lines = [x for x in readme_block('five lines').splitlines() if x.strip()]
        cl = TlsCluster(name='readme', conf=lines, prepare=prepare)
        _state['cluster'] = cl
        await asyncio.to_thread(cl.start)
        conn = await asyncio.to_thread(cl.connect)
        try:
            mark = 0
            await asql(conn, "CREATE EXTENSION pg_ws")
            deadline = time.monotonic() + 30
            while not any('pg_ws listening on' in x for x in cl.log_since(mark)):
                check(time.monotonic() < deadline, 'pg_ws did not listen with the five lines')
                await asyncio.sleep(0.1)
        finally:
            conn.close()

    run_tap(TESTS, lambda: Ctx(_state['cluster']), setup=setup, watchdog_seconds=320)


if __name__ == '__main__':
    main()
