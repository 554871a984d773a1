#!/usr/bin/python3
"""The JavaScript client, clients/js (npm package pg-ws-client), against
real pg_ws servers.

This file owns running the client's own tests where the test command
runs: it builds the package (tsc, from clients/js/node_modules, which
scripts/install_deps.sh fills with `npm ci`), starts two clusters (one
with pg_ws.auth = none whose allowed origin is the browser page's, one
with pg_ws.auth = jwt and pg_ws.jwt_leeway = 0), and reports as TAP:

  - the types: `tsc --noEmit` over the sources and test/types.ts, which
    uses the typed API and asserts what must not compile;
  - each clients/js/test/*.test.mjs, run with `node --test` against
    the clusters (their addresses and psql command lines in the
    environment, see clients/js/test/helpers.mjs): worker restarts,
    token expiry and renewal, resync, snapshot positions, ?events= and
    ?filter=, and all of it over SSE (sse.test.mjs, with the eventsource
    package, a devDependency, as Node's EventSource);
  - headless Chromium running the README's frontend on the client (the
    block after <!-- test_js_client: frontend -->) with the built ES
    module served beside it: the eleven events, then a worker restart
    with rows committed while it was down, each once; over WebSocket,
    and again with transport "sse" on the browser's own EventSource;
  - `npm pack`, the tarball installed with `npm install --offline` into a
    fresh project that imports the package, type-checks against its
    .d.ts and receives an event.

Node 20.10 or later runs the client (Node 20 with
--experimental-websocket, Node 22 has a WebSocket of its own); where
there is none, every test is skipped with the reason.

Run as root: /usr/bin/python3 test/e2e/test_js_client.py   (TAP output)
"""

import asyncio
import glob
import http.server
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Ctx, Fail, Skip, asql, check, free_port, run_tap, short  # noqa: E402
from test_browser import CHROMIUM, Browser  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
JS = os.path.join(ROOT, 'clients', 'js')
README = os.path.join(ROOT, 'README.md')
SECRET = 'pg_ws js client test secret, 32 bytes or more'

PAGE_PORT = free_port()
PAGE_ORIGIN = 'http://127.0.0.1:%d' % PAGE_PORT

state = {}      # 'plain', 'jwt': clusters; 'node': [argv]; 'skip': why not


def node_command():
    """The node command line that has a global WebSocket, or a Skip."""
    node = shutil.which('node')
    if node is None:
        raise Skip('no node here (scripts/install_deps.sh installs it where Debian has Node 20 or later)')
    version = subprocess.run([node, '--version'], stdout=subprocess.PIPE, text=True).stdout.strip()
    m = re.match(r'v(\d+)\.(\d+)', version)
    major, minor = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if shutil.which('npm') is None:
        raise Skip('no npm here (scripts/install_deps.sh installs it with nodejs where Debian has Node 20)')
    if major >= 22:
        return [node]
    if (major, minor) >= (20, 10):
        return [node, '--experimental-websocket']
    raise Skip('node %s has no WebSocket (Node 20.10 or later needed)' % version)


def run(args, timeout=120, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, **kw)
    return r


def psql_argv(cl):
    return [os.path.join(cl.pgbin, 'psql'), '-h', cl.dir, '-p', str(cl.pgport), '-U', 'postgres',
            '-d', cl.database]


def node_env():
    env = dict(os.environ)
    env.update(PGWS_URL=state['plain'].url, PGWS_PSQL=json.dumps(psql_argv(state['plain'])),
               PGWS_JWT_URL=state['jwt'].url, PGWS_JWT_PSQL=json.dumps(psql_argv(state['jwt'])))
    return env


def need_setup():
    if 'skip' in state:
        raise Skip(state['skip'])


# ------------------------------------------------------------------ types

async def test_types(ctx):
    """tsc --noEmit over the sources and test/types.ts."""
    need_setup()
    r = await asyncio.to_thread(run, ['npm', 'run', '--silent', 'check'], cwd=JS)
    check(r.returncode == 0, 'tsc --noEmit failed:', *r.stdout.splitlines()[-40:])
    return 'the sources and test/types.ts type-check'


async def test_size(ctx):
    """The minified size the READMEs state is the build's (npm run size:
    esbuild from package-lock.json)."""
    need_setup()
    r = await asyncio.to_thread(run, ['npm', 'run', '--silent', 'size'], cwd=JS)
    check(r.returncode == 0 and r.stdout.strip().isdigit(), 'npm run size failed:',
          *r.stdout.splitlines()[-10:])
    size = int(r.stdout.strip())
    with open(os.path.join(JS, 'README.md')) as f:
        m = re.search(r'\*\*([\d,]+) bytes\s+minified\*\*', f.read())
    check(m, 'clients/js/README.md states no "**N bytes minified**"')
    stated = int(m.group(1).replace(',', ''))
    with open(README) as f:
        m = re.search(r'([\d.]+) kB\s+minified', f.read())
    check(m, 'README.md states no "N kB minified"')
    check(stated == size and float(m.group(1)) == round(size / 1000, 1),
          'the READMEs say %d bytes and %s kB; npm run size says %d' % (stated, m.group(1), size))
    return '%d bytes minified' % size


# ------------------------------------------------------------- node:test

def node_file_test(path):
    async def fn(ctx):
        need_setup()
        r = await asyncio.to_thread(
            run, state['node'] + ['--test', '--test-reporter=tap', path],
            timeout=170, cwd=JS, env=node_env())
        lines = r.stdout.splitlines()
        ok = [line.strip() for line in lines if re.match(r'\s*ok \d+ ', line)]
        if r.returncode != 0 or not ok:
            raise Fail('node --test %s exited with %d:' % (os.path.relpath(path, JS), r.returncode),
                       *[short(line, 400) for line in lines[-60:]])
        return '; '.join(ok)
    return fn


def node_tests():
    """(name, fn, timeout) per clients/js/test/*.test.mjs, named by the
    file and its first test()'s title."""
    tests = []
    for path in sorted(glob.glob(os.path.join(JS, 'test', '*.test.mjs'))):
        with open(path) as f:
            m = re.search(r'^test\("([^"]+)"', f.read(), re.M)
        title = m.group(1) if m else ''
        tests.append(('node %s: %s' % (os.path.basename(path), title), node_file_test(path), 180))
    return tests


# ---------------------------------------------------------------- browser

# The page: an import map that names the served build as the package, a
# WebSocket that reports its opens and closes (the client uses the global
# one), the functions the README's frontend calls, reporting what they are
# given, and then the README's block (its PG_WS line the test cluster's).
FRONTEND_PAGE = """<!doctype html><meta charset="utf-8"><title>pg_ws client</title>
<script type="importmap">{"imports": {"pg-ws-client": "/pg-ws-client/index.js"}}</script>
<script>
const report = (what, body) => fetch('/' + what, {method: 'POST', body: JSON.stringify(body)});
window.addEventListener('error', (e) => report('error', String(e.message)));
window.addEventListener('unhandledrejection', (e) => report('error', String(e.reason)));
window.WebSocket = class extends WebSocket {
  constructor(url) {
    super(url);
    this.addEventListener('open', () => report('open', url));
    this.addEventListener('close', (e) => report('close', e.code));
  }
};
// the same for the EventSource of transport "sse": its error is its end
window.EventSource = class extends EventSource {
  constructor(url, init) {
    super(url, init);
    this.addEventListener('open', () => report('open', url));
    this.addEventListener('error', () => report('close', this.readyState));
  }
};
let n = 0;
window.handle = (msg) => report('handle', {i: n++, msg});
window.showClient = (c) => report('typed', ['show', c.id, c.visit_histories.length]);
window.removeClient = (id) => report('typed', ['remove', id]);
window.reloadEverything = () => report('error', 'resync_required');
</script>
<script type="module">
%s
</script>"""


class FrontendServer:
    """Serves FRONTEND_PAGE at / and clients/js/dist/ at /pg-ws-client/,
    and collects what the page posts: reports in order of kind."""

    def __init__(self, page):
        self.posts = []
        self.lock = threading.Lock()
        server = self
        dist = os.path.join(JS, 'dist')

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, kind, body = 200, 'text/html; charset=utf-8', None
                if self.path == '/':
                    body = page.encode()
                elif re.fullmatch(r'/pg-ws-client/[a-z]+\.js', self.path):
                    try:
                        with open(os.path.join(dist, self.path.split('/')[-1]), 'rb') as f:
                            body = f.read()
                        kind = 'text/javascript'
                    except OSError:
                        pass
                if body is None:
                    status, body = 404, b''
                self.send_response(status)
                self.send_header('content-type', kind)
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get('content-length') or 0)
                body = json.loads(self.rfile.read(n).decode() or 'null')
                with server.lock:
                    server.posts.append((self.path.lstrip('/'), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', PAGE_PORT), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def of(self, kind):
        with self.lock:
            return [b for k, b in self.posts if k == kind]

    def handled(self):
        """The messages handle() was given, in the page's order."""
        got = {p['i']: p['msg'] for p in self.of('handle')}
        return [got[i] for i in sorted(got)]

    async def wait(self, what, cond, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            errors = self.of('error')
            check(not errors, 'the page reported: %s' % short(errors))
            if cond():
                return
            if time.monotonic() > deadline:
                raise Fail('%s: not within %d s' % (what, timeout),
                           'opens %s, closes %s, %d handled, last: %s'
                           % (self.of('open'), self.of('close'), len(self.handled()),
                              short(self.handled()[-3:])))
            await asyncio.sleep(0.05)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def readme_frontend():
    with open(README) as f:
        m = re.search(r'<!-- test_js_client: frontend -->\s*```js\n(.*?)```', f.read(), re.S)
    check(m, 'README.md has no block marked "test_js_client: frontend"')
    code = m.group(1)
    check(re.search(r'^const PG_WS = .*$', code, re.M), 'the frontend block has no const PG_WS line')
    return code


# the SQL that makes each of the eleven events once, in this order
ELEVEN = [
    ("INSERT INTO client (id, first_seen, gender, age, image) VALUES"
     " (%(c)s, '2023-12-10 10:00:00.25+00', 'female', 31, 'client_images/a b.jpg')",
     'client_create'),
    ("INSERT INTO visit_history (client_id, datetime, device_id)"
     " VALUES (%(c)s, '2023-12-10 10:30:00+00', '1')", 'client_visit_create'),
    ("UPDATE visit_history SET device_id = '2' WHERE client_id = %(c)s", 'client_visit_update'),
    ("INSERT INTO employee (id, first_name, last_name, email)"
     " VALUES (%(e)s, 'Zoë', 'Doe \"Ω\"', NULL)", 'employee_create'),
    ("UPDATE employee SET phone_number = '1234567890' WHERE id = %(e)s", 'employee_update'),
    ("INSERT INTO attendance (employee_id, device_id, datetime, score)"
     " VALUES (%(e)s, '123ABC', '2023-12-10 08:00:00+00', 95.5)", 'employee_attendance'),
    ("UPDATE client SET visit_count = 1 WHERE id = %(c)s", 'client_update'),
    ("DELETE FROM attendance WHERE employee_id = %(e)s", 'employee_attendance_delete'),
    ("DELETE FROM employee WHERE id = %(e)s", 'employee_delete'),
    ("DELETE FROM visit_history WHERE client_id = %(c)s", 'client_visit_delete'),
    ("DELETE FROM client WHERE id = %(c)s", 'client_delete'),
]


async def test_browser_frontend(ctx):
    """The README's frontend in Chromium: the eleven events as a Python
    subscriber gets them, then a worker restart with rows committed while
    it was down, each once."""
    return await browser_frontend(ctx, None, 9100000)


async def test_browser_frontend_sse(ctx):
    """The same with transport "sse" added to the README's frontend: the
    browser's own EventSource on GET /events."""
    return await browser_frontend(ctx, 'sse', 9400000)


async def browser_frontend(ctx, transport, base):
    need_setup()
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    cl = state['plain']
    code = re.sub(r'^const PG_WS = .*$', lambda m: 'const PG_WS = "%s";' % cl.url,
                  readme_frontend(), count=1, flags=re.M)
    if transport:
        code, n = re.subn(r'new PgWsClient\(\{', lambda m: m.group(0) + ' transport: "%s",' % transport,
                          code, count=1)
        check(n == 1, 'the frontend block has no new PgWsClient({')
    server = FrontendServer(FRONTEND_PAGE % code)
    browser = None
    try:
        browser = Browser('http://127.0.0.1:%d/' % PAGE_PORT)
        await server.wait('the page connecting', lambda: server.of('open'))
        path = '/events' if transport == 'sse' else '/ws/'
        check(all(path in u for u in server.of('open')), 'the page opened %s' % server.of('open'))
        python_sub = await ctx.sub()
        conn = await ctx.aconn()
        ids = {'c': base + 1, 'e': base + 1}
        await asql(conn, *[stmt % ids for stmt, _ in ELEVEN])
        expected = await python_sub.expect(len(ELEVEN), 30, 'python subscriber')
        await server.wait('the eleven events in the page',
                          lambda: len(server.handled()) >= len(expected))
        got = server.handled()
        check([m['event'] for m in got] == [e for _, e in ELEVEN],
              'events: %s' % [m['event'] for m in got])
        for i, raw in enumerate(expected):
            check(got[i] == json.loads(raw), 'message %d differs' % i,
                  '  page:   ' + short(json.dumps(got[i])), '  python: ' + short(raw))
        await server.wait('the typed handlers', lambda: len(server.of('typed')) >= 3)
        typed = sorted(map(tuple, server.of('typed')))
        check(typed == [('remove', base + 1), ('show', base + 1, 0), ('show', base + 1, 1)],
              'showClient/removeClient were called with %s' % typed)

        # the worker restarts; rows committed while it is down arrive
        conn_pid = (await asql(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'"))[0][0]
        await asql(conn, ('SELECT pg_terminate_backend(%s)', (conn_pid,)))
        await server.wait('the page\'s connection closing', lambda: server.of('close'))
        await asql(conn, "INSERT INTO client (id, first_seen) SELECT g, now()"
                         " FROM generate_series(%d, %d) g" % (base + 11, base + 15))
        await server.wait('the page reconnecting', lambda: len(server.of('open')) >= 2)
        await asql(conn, "INSERT INTO client (id, first_seen) SELECT g, now()"
                         " FROM generate_series(%d, %d) g" % (base + 16, base + 20))
        await server.wait('the rows after the restart',
                          lambda: any(m['data'].get('id') == base + 20 for m in server.handled()))
        after = [m for m in server.handled()[len(expected):]]
        check([(m['event'], m['data']['id']) for m in after]
              == [('client_create', i) for i in range(base + 11, base + 21)],
              'after the restart: %s' % [(m['event'], m['data'].get('id')) for m in after])
        seqs = [m['seq'] for m in server.handled()]
        check(seqs == sorted(set(seqs)), 'positions not increasing: %s' % seqs)
        return ('%s: the eleven events as python-websockets got them; %d opens; 10 rows across the'
                ' restart, 5 of them committed while the worker was down'
                % (path, len(server.of('open'))))
    finally:
        if browser is not None:
            browser.close()
        server.close()

# ------------------------------------------------------------------ pack

CONSUMER_JS = """import { PgWsClient } from "pg-ws-client";
const client = new PgWsClient({
  url: process.env.PGWS_URL, events: ["client_create"],
  onOpen: () => console.log("open"),
  onError: (e) => console.log("error " + e),
});
client.on("client_create", (data, msg) => {
  console.log("event " + JSON.stringify(msg));
  client.close();
});
"""

# compiled against the installed package's .d.ts the way a project with
# "moduleResolution": "nodenext" finds it (the exports map's types), with
# the DOM's WebSocket passed as the constructor
CONSUMER_TS = """import { PgWsClient, type ClientData, type Message } from "pg-ws-client";
const client = new PgWsClient({ url: "ws://127.0.0.1:1", WebSocket });
client.on("client_create", (data: ClientData, msg: Message<"client_create", ClientData>) =>
  data.visit_histories.map((v) => v.device_id + msg.seq));
// @ts-expect-error: not a field of client_delete
client.on("client_delete", (data) => data.visit_count);
"""


async def test_pack(ctx):
    """npm pack; npm install of the tarball into a fresh project, offline;
    its types compile there, and it receives an event."""
    need_setup()
    tmp = tempfile.mkdtemp(prefix='pg_ws_js_pack.')
    proc = None
    try:
        r = await asyncio.to_thread(run, ['npm', 'pack', '--pack-destination', tmp], cwd=JS)
        tgz = [f for f in os.listdir(tmp) if f.endswith('.tgz')]
        check(r.returncode == 0 and len(tgz) == 1, 'npm pack failed (%d):' % r.returncode,
              *r.stdout.splitlines()[-20:])
        tgz = os.path.join(tmp, tgz[0])
        listing = sorted(run(['tar', 'tzf', tgz]).stdout.split())
        want = {'package/package.json', 'package/README.md', 'package/dist/index.js',
                'package/dist/index.d.ts', 'package/dist/client.js', 'package/dist/transport.js'}
        check(want <= set(listing), 'the tarball lacks %s: %s' % (sorted(want - set(listing)), listing))
        extra = [f for f in listing if not re.fullmatch(r'package/(package\.json|README\.md|dist/\w+\.(js|d\.ts))', f)]
        check(not extra, 'the tarball has more than the package: %s' % extra)

        app = os.path.join(tmp, 'app')
        os.mkdir(app)
        with open(os.path.join(app, 'package.json'), 'w') as f:
            json.dump({'name': 'app', 'version': '1.0.0', 'private': True, 'type': 'module'}, f)
        r = await asyncio.to_thread(run, ['npm', 'install', '--offline', '--no-audit', '--no-fund',
                                          tgz], cwd=app)
        check(r.returncode == 0, 'npm install of the tarball failed:', *r.stdout.splitlines()[-20:])
        with open(os.path.join(app, 'package.json')) as f:
            deps = json.load(f).get('dependencies', {})
        check('pg-ws-client' in deps, 'package.json does not depend on it: %s' % deps)
        check(sorted(os.listdir(os.path.join(app, 'node_modules'))) == ['.package-lock.json', 'pg-ws-client'],
              'node_modules has more than the package: %s' % os.listdir(os.path.join(app, 'node_modules')))

        with open(os.path.join(app, 'check.ts'), 'w') as f:
            f.write(CONSUMER_TS)
        tsc = os.path.join(JS, 'node_modules', '.bin', 'tsc')
        r = await asyncio.to_thread(run, [tsc, '--noEmit', '--strict', '--module', 'nodenext',
                                          '--moduleResolution', 'nodenext', '--lib', 'es2020,dom',
                                          'check.ts'], cwd=app)
        check(r.returncode == 0, 'the installed package\'s types do not compile:', *r.stdout.splitlines()[-20:])

        with open(os.path.join(app, 'main.mjs'), 'w') as f:
            f.write(CONSUMER_JS)
        env = dict(os.environ, PGWS_URL=state['plain'].url)
        proc = await asyncio.create_subprocess_exec(
            *state['node'], 'main.mjs', cwd=app, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        lines = []

        async def line(what):
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            check(raw, '%s: the program ended: %s' % (what, lines))
            lines.append(raw.decode().rstrip())
            return lines[-1]

        check(await line('open') == 'open', 'the program said %s' % lines)
        conn = await ctx.aconn()
        await asql(conn, "INSERT INTO client (id, first_seen, gender) VALUES (9200001, now(), 'male')")
        said = await line('the event')
        check(said.startswith('event '), 'the program said %s' % lines)
        msg = json.loads(said[6:])
        check(msg['event'] == 'client_create' and msg['data']['id'] == 9200001
              and isinstance(msg['seq'], int), 'the program got %s' % said)
        check(await asyncio.wait_for(proc.wait(), 30) == 0, 'the program exited with %s' % proc.returncode)
        proc = None
        return '%s: %d files; installed offline, types compile, event received' % (
            os.path.basename(tgz), len(listing))
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- setup

def make_clusters():
    plain = Cluster(name='js-plain', conf=["pg_ws.allowed_origins = '%s'" % PAGE_ORIGIN])
    jwt = Cluster(name='js-jwt')
    secret = os.path.join(jwt.dir, 'jwt_secret')
    with open(secret, 'w') as f:
        f.write(SECRET + '\n')
    pw = pwd.getpwnam('postgres')
    os.chown(secret, pw.pw_uid, pw.pw_gid)
    os.chmod(secret, 0o600)
    jwt.conf += ["pg_ws.auth = 'jwt'", "pg_ws.jwt_secret_file = '%s'" % secret,
                 "pg_ws.jwt_leeway = 0"]
    return plain, jwt


async def setup():
    try:
        state['node'] = node_command()
    except Skip as e:
        state['skip'] = str(e)
        return
    if not os.path.isdir(os.path.join(JS, 'node_modules', 'typescript')):
        raise Fail('clients/js/node_modules has no typescript: run scripts/install_deps.sh'
                   ' (it runs npm ci there)')
    r = await asyncio.to_thread(run, ['npm', 'run', '--silent', 'build'], cwd=JS)
    check(r.returncode == 0, 'npm run build failed: ' + ' | '.join(r.stdout.splitlines()[-20:]))
    plain, jwt = make_clusters()
    for cl in (plain, jwt):
        await asyncio.to_thread(cl.start)
        await cl.install()
    state['plain'], state['jwt'] = plain, jwt


TESTS = [('tsc --noEmit: the sources and the typed API (test/types.ts)', test_types, 120),
         ('the minified size the READMEs state is npm run size\'s', test_size, 60)]
TESTS += node_tests()
TESTS += [('headless Chromium: the README\'s frontend on the client gets the eleven events and'
           ' resumes across a worker restart', test_browser_frontend, 150),
          ('headless Chromium: the same frontend with transport "sse", on the browser\'s own'
           ' EventSource', test_browser_frontend_sse, 150),
          ('npm pack: a fresh project installs the tarball offline, compiles against its types and'
           ' receives an event', test_pack, 150)]


def main():
    run_tap(TESTS, lambda: Ctx(state.get('plain')), setup=setup, watchdog_seconds=600)


if __name__ == '__main__':
    main()
