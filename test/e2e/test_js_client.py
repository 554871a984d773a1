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
    ?filter=;
  - headless Chromium running the README's frontend on the client (the
    block after <!-- test_js_client: frontend -->) with the built ES
    module served beside it: the eleven events, then a worker restart
    with rows committed while it was down, each once;
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


TESTS = [('tsc --noEmit: the sources and the typed API (test/types.ts)', test_types, 120)]
TESTS += node_tests()


def main():
    run_tap(TESTS, lambda: Ctx(state.get('plain')), setup=setup, watchdog_seconds=600)


if __name__ == '__main__':
    main()
