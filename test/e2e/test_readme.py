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

The five lines listen on '*' (every address of this machine) with
pg_ws.auth = jwt, on a free port, for the few seconds the test runs.

Run as root: /usr/bin/python3 test/e2e/test_readme.py   (TAP output)
"""

import asyncio
import base64
import os
import re
import subprocess
import sys
import time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ws_connect  # noqa: E402
from harness import Ctx, Fail, Subscriber, asql, check, run_tap, short  # noqa: E402
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


TESTS = [
    ('the README\'s five lines: wss://, tokens, origins', test_five_lines, 60),
    ('the README\'s GRANT lets the application role mint tokens', test_sign_token_grant, 30),
    ('the README\'s openssl one-liner mints an accepted token', test_openssl_token, 30),
    ('the README\'s configuration table: every parameter, its default and context',
     test_configuration_table, 30),
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

    run_tap(TESTS, lambda: Ctx(_state['cluster']), setup=setup, watchdog_seconds=200)


if __name__ == '__main__':
    main()
