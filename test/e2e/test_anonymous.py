#!/usr/bin/python3
"""End-to-end tests of what pg_ws serves without a token (issue 15 item 4).

This file owns the anonymous default: with pg_ws.auth = none, and neither
pg_ws.allowed_origins nor pg_ws.allow_anonymous set (scripts/run_server.sh
runs so), pg_ws answers only requests for a loopback name (Host localhost,
127.x.x.x, [::1], or a name of pg_ws.listen_addresses) and lets subscribe
only pages of its own origin (no Origin, or http(s)://HOST of the request).
A page of any other site open in a browser on the machine could otherwise
read every event, and through DNS rebinding (its own name resolved to
127.0.0.1) the console, /health and /metrics too.

  - raw requests (rawws.py): which Host names are served on /ws/, /,
    /health and /metrics, which Origins may subscribe, what an
    absolute-form target's authority counts as, how each refusal is
    answered (403 with the reason), counted (forbidden) and logged;
  - what configuration widens: pg_ws.allowed_origins (then exactly those
    origins), pg_ws.allow_anonymous = on (any Host, pages of their own
    origin), tokens (any Host and origin; pg_ws.monitoring = local still
    wants a loopback Host);
  - headless Chromium: a page served from another origin (127.0.0.2)
    cannot subscribe; a page whose name is mapped to 127.0.0.1 (the
    browser's --host-resolver-rules, as a DNS rebinding would) can read
    neither the console nor /ws/; the console itself still connects and
    shows a row inserted over SQL.

Run as root: /usr/bin/python3 test/e2e/test_anonymous.py   (TAP output)
"""

import asyncio
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jwt_tools as jt  # noqa: E402
import rawws  # noqa: E402
from harness import ClusterKinds, Cluster, Ctx, asql, check, poll, run_tap, short  # noqa: E402
from test_browser import CHROMIUM, Browser, PageServer  # noqa: E402
from test_console import STATE_IS, Page, row_js  # noqa: E402

SECRET = 'anonymous-suite-' + secrets.token_hex(24)
EVIL = 'evil.example'


def make_cluster(kind):
    if kind == 'none':
        return Cluster(name='anonymous')
    if kind == 'jwt':
        return Cluster(name='anonymous-jwt', conf=["pg_ws.auth = 'jwt'",
                                                   "pg_ws.jwt_secret = '%s'" % SECRET])
    raise ValueError(kind)


KINDS = ClusterKinds(make_cluster)


# ---------------------------------------------------------------- helpers

def request(port, path='/ws/', host=None, origin=None, extra=(), target=None,
            http='HTTP/1.1'):
    """(status, body) of one request on a raw socket: an upgrade for /ws/,
    a plain GET otherwise; host None is 127.0.0.1:port, '' none at all."""
    host = '127.0.0.1:%d' % port if host is None else host
    if path.startswith('/ws/'):
        lines = ['GET %s %s' % (target or path, http), 'Upgrade: websocket',
                 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
                 'Sec-WebSocket-Version: 13']
    else:
        lines = ['GET %s %s' % (target or path, http)]
    if host:
        lines.append('Host: ' + host)
    if origin:
        lines.append('Origin: ' + origin)
    lines += list(extra)
    s = rawws.connect(port)
    try:
        s.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode())
        data = rawws.read_head(s)
        if not data.startswith(b'HTTP/1.1 101 '):
            more, _ = rawws.read_until_closed(s, 10)
            data += more
    finally:
        s.close()
    status, _, _, body, line = rawws.parse_response(data)
    return status, body.decode(errors='replace').strip() or line


async def statuses(port, cases):
    """Each (what, kwargs of request(), expected status): the ones whose
    answer differs, as lines."""
    wrong = []
    for what, kw, want in cases:
        status, body = await asyncio.to_thread(request, port, **kw)
        if status != want:
            wrong.append('%s: %s %s, expected %d' % (what, status, short(body, 120), want))
    return wrong


async def forbidden_count(conn, port=None):
    """refusals.forbidden; as of now when port is given (a /health request
    makes the worker publish its figures)."""
    if port is not None:
        status, _ = await asyncio.to_thread(request, port, path='/health')
        check(status == 200, '/health: %s' % status)
    return (await asql(conn, "SELECT refusals->>'forbidden' FROM pg_ws_stats"))[0][0]


async def reload_with(conn, port, probe, **settings):
    """ALTER SYSTEM the pg_ws settings (None resets one), reload, and wait
    until probe() (a request's expected outcome) holds."""
    for name, value in settings.items():
        if value is None:
            await asql(conn, 'ALTER SYSTEM RESET pg_ws.%s' % name)
        else:
            await asql(conn, "ALTER SYSTEM SET pg_ws.%s = '%s'" % (name, value))
    await asql(conn, 'SELECT pg_reload_conf()')

    async def settled():
        # a reload that changes whether pg_ws listens on loopback only
        # moves its listening sockets: a connection still in the old
        # one's backlog is reset, and the next try reaches the new one
        try:
            return await probe()
        except (ConnectionResetError, ConnectionRefusedError):
            return False

    await poll('the reload of %s' % settings, settled, timeout=20, every=0.2)


# ------------------------------------------------------------------ tests

async def test_host(ctx):
    """Without a token only loopback names are served, on every path that
    serves something: a page whose own name a DNS rebinding points at
    127.0.0.1 asks for that name, and gets 403 on /ws/, /, /health and
    /metrics.  Each refusal says why, is counted as forbidden and logged."""
    cl = await KINDS.get(ctx, 'none')
    conn = await ctx.aconn()
    port = cl.wsport
    before = await forbidden_count(conn, port)
    refused = []
    for path in ('/ws/', '/', '/health', '/metrics'):
        for host in ('%s:%d' % (EVIL, port), EVIL, '0.0.0.0:%d' % port,
                     '127.0.0.1.%s:%d' % (EVIL, port), 'localhost.%s' % EVIL,
                     '2130706433:%d' % port, '[::2]:%d' % port):
            refused.append(('%s for Host %s' % (path, host), {'path': path, 'host': host}, 403))
    served = []
    for path, ok in (('/ws/', 101), ('/', 200), ('/health', 200), ('/metrics', 200)):
        for host in ('127.0.0.1:%d' % port, 'localhost:%d' % port, 'LocalHost', 'localhost.:%d' % port,
                     '[::1]:%d' % port, '127.0.0.2:%d' % port, '[::ffff:127.0.0.1]:%d' % port,
                     '127.255.0.1'):
            served.append(('%s for Host %s' % (path, host), {'path': path, 'host': host}, ok))
    others = [
        # nothing served there, nothing to refuse: the same 404 as ever
        ('/elsewhere for Host %s' % EVIL, {'path': '/elsewhere', 'host': EVIL}, 404),
        # an absolute-form target's authority is the Host (RFC 9112 3.2.2)
        ('an absolute-form target for %s' % EVIL,
         {'target': 'http://%s:%d/ws/' % (EVIL, port)}, 403),
        ('an absolute-form target for localhost, Host %s' % EVIL,
         {'target': 'http://localhost:%d/ws/' % port, 'host': EVIL}, 101),
    ]
    wrong = await statuses(port, refused + served + others)
    check(not wrong, *wrong)
    status, body = await asyncio.to_thread(request, port, host=EVIL)
    check('host is not allowed' in body, 'the 403 does not say why: %r' % body)

    n = sum(1 for c in refused + others if c[2] == 403) + 1

    async def counted():
        return int(await forbidden_count(conn)) - int(before) >= n
    await poll('the 403s counted as forbidden', counted, timeout=10)
    check(int(await forbidden_count(conn)) - int(before) == n, 'forbidden did not grow by %d' % n)
    said = [x for x in cl.log_since(0) if '403 Forbidden: host is not allowed' in x]
    check(said, 'the log does not say why a Host was refused')
    return '%d refused, %d served; %s' % (len(refused), len(served), said[0].split('LOG:  ')[-1])


async def test_origin(ctx):
    """Without a token only pages of pg_ws's own origin may subscribe:
    no Origin (not a browser), or http(s)://HOST for the request's HOST;
    another port, host or scheme, and "null", get 403 before anything
    else is looked at."""
    cl = await KINDS.get(ctx, 'none')
    port = cl.wsport
    own = '127.0.0.1:%d' % port
    cases = [
        ('no Origin', {}, 101),
        ('its own origin', {'origin': 'http://' + own}, 101),
        ('its own origin over https (a proxy in front)', {'origin': 'https://' + own}, 101),
        ('its own origin, upper case', {'origin': 'HTTP://' + own.upper()}, 101),
        ('localhost, asked for as localhost', {'host': 'localhost:%d' % port,
                                               'origin': 'http://localhost:%d' % port}, 101),
        ('[::1], asked for as [::1]', {'host': '[::1]:%d' % port,
                                       'origin': 'http://[::1]:%d' % port}, 101),
        ('a page of localhost asking for 127.0.0.1', {'origin': 'http://localhost:%d' % port}, 403),
        ('another port', {'origin': 'http://127.0.0.1:%d' % (port + 1)}, 403),
        ('no port', {'origin': 'http://127.0.0.1'}, 403),
        ('another loopback address', {'origin': 'http://127.0.0.2:%d' % port}, 403),
        ('a longer host', {'origin': 'http://%s.%s' % (own, EVIL)}, 403),
        ('another site', {'origin': 'https://' + EVIL}, 403),
        ('another scheme', {'origin': 'ws://' + own}, 403),
        ('"null" (a sandboxed or file: page)', {'origin': 'null'}, 403),
    ]
    wrong = await statuses(port, cases)
    check(not wrong, *wrong)
    status, body = await asyncio.to_thread(request, port, origin='https://' + EVIL)
    check('origin is not allowed' in body and 'pg_ws.allowed_origins' in body,
          'the 403 does not say why: %r' % body)
    return '%d origins: %s' % (len(cases), body)


async def test_configured(ctx):
    """What configuration widens.  pg_ws.allowed_origins lists exactly the
    origins that may subscribe (its own too, then), and lifts nothing for
    Host; pg_ws.allow_anonymous = on serves any Host, and still only pages
    of the origin they ask for (no Origin, or their own)."""
    cl = await KINDS.get(ctx, 'none')
    conn = await ctx.aconn()
    port = cl.wsport
    own = 'http://127.0.0.1:%d' % port
    other = 'http://127.0.0.2:9999'
    try:
        await reload_with(conn, port, lambda: asyncio.to_thread(
            lambda: request(port, origin=other)[0] == 101), allowed_origins=other)
        wrong = await statuses(port, [
            ('a listed origin', {'origin': other}, 101),
            ('its own origin, not listed', {'origin': own}, 403),
            ('no Origin', {}, 101),
            ('a listed origin for Host %s' % EVIL, {'origin': other, 'host': EVIL}, 403),
            ('the console for Host %s' % EVIL, {'path': '/', 'host': EVIL}, 403),
        ])
        check(not wrong, 'pg_ws.allowed_origins = %s:' % other, *wrong)

        await reload_with(conn, port, lambda: asyncio.to_thread(
            lambda: request(port, host=EVIL)[0] == 101), allowed_origins=None, allow_anonymous='on')
        wrong = await statuses(port, [
            ('Host %s without Origin' % EVIL, {'host': EVIL}, 101),
            ('a page of %s asking for %s' % (EVIL, EVIL), {'host': EVIL, 'origin': 'http://' + EVIL}, 101),
            ('a page of %s asking for 127.0.0.1' % EVIL, {'origin': 'https://' + EVIL}, 403),
            ('its own origin', {'origin': own}, 101),
            ('the console for Host %s' % EVIL, {'path': '/', 'host': EVIL}, 200),
            ('/health for Host %s (pg_ws.monitoring = local)' % EVIL, {'path': '/health', 'host': EVIL}, 403),
        ])
        check(not wrong, 'pg_ws.allow_anonymous = on:', *wrong)
    finally:
        await reload_with(conn, port, lambda: asyncio.to_thread(
            lambda: request(port, host=EVIL)[0] == 403), allowed_origins=None, allow_anonymous=None)
    return 'allowed_origins: exactly its list; allow_anonymous: any Host, own-origin pages'


async def test_tokens(ctx):
    """With tokens the token decides: any Host and any Origin (without
    pg_ws.allowed_origins) subscribe with a valid one; the console is
    served for any Host (it holds no data); /health and /metrics under
    pg_ws.monitoring = local still want a loopback Host."""
    cl = await KINDS.get(ctx, 'jwt')
    port = cl.wsport
    token = jt.hs256({'sub': 'anonymous-suite', 'exp': int(time.time()) + 600}, SECRET)
    bearer = ['Authorization: Bearer ' + token]
    wrong = await statuses(port, [
        ('a token, Host %s' % EVIL, {'host': EVIL, 'extra': bearer}, 101),
        ('a token, a page of %s' % EVIL, {'origin': 'https://' + EVIL, 'extra': bearer}, 101),
        ('no token, Host %s' % EVIL, {'host': EVIL}, 401),
        ('the console for Host %s' % EVIL, {'path': '/', 'host': EVIL}, 200),
        ('/metrics for Host %s' % EVIL, {'path': '/metrics', 'host': EVIL}, 403),
        ('/health for Host localhost', {'path': '/health', 'host': 'localhost:%d' % port}, 200),
        ('/health without Host (HTTP/1.0, not a browser)',
         {'path': '/health', 'host': '', 'http': 'HTTP/1.0'}, 200),
    ])
    check(not wrong, *wrong)
    status, body = await asyncio.to_thread(request, port, path='/metrics', host=EVIL)
    check('pg_ws.monitoring = local' in body, '/metrics for Host %s says %r' % (EVIL, body))
    return body


async def posts_until(server, kinds, timeout):
    """What the page posted until one of kinds, in order."""
    seen = []
    deadline = time.monotonic() + timeout
    while not any(k in kinds for k, _ in seen):
        left = deadline - time.monotonic()
        check(left > 0, 'the browser posted %s, no %s within %.0f s' % (seen, '/'.join(kinds), timeout))
        try:
            seen.append(await asyncio.to_thread(server.posts.get, True, min(left, 0.5)))
        except Exception:
            continue
    return seen


async def test_chromium(ctx):
    """Headless Chromium: a page served from another origin (127.0.0.2)
    cannot subscribe to ws://127.0.0.1:PORT/ws/; one whose name is mapped
    to 127.0.0.1, as a DNS rebinding would, can read neither the console
    nor /ws/ under that name; the console itself connects and shows a row
    inserted over SQL."""
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    cl = await KINDS.get(ctx, 'none')
    port = cl.wsport
    conn = await ctx.aconn()
    notes = []

    # another origin: the page of 127.0.0.2:X
    before = int(await forbidden_count(conn, port))
    server = PageServer(host='127.0.0.2', port=0)
    browser = Browser('http://127.0.0.2:%d/?ws=ws://127.0.0.1:%d/ws/' % (server.port, port))
    try:
        seen = await posts_until(server, ['close', 'open'], 60)
        check(not any(k == 'open' for k, _ in seen),
              'a page of http://127.0.0.2:%d subscribed: %s' % (server.port, seen))
        check(('close', '1006') in seen, 'the page saw %s' % seen)
        notes.append('127.0.0.2 page: %s' % ', '.join(k + (' ' + b if b else '') for k, b in seen))
    finally:
        browser.close()
        server.close()

    async def counted():
        return int(await forbidden_count(conn)) > before
    await poll('the page\'s upgrade counted as forbidden', counted, timeout=10)

    # DNS rebinding: evil.example is 127.0.0.1 for this browser
    rule = ['--host-resolver-rules=MAP %s 127.0.0.1' % EVIL]
    server = PageServer(port=0)
    browser = Browser('http://%s:%d/?ws=ws://%s:%d/ws/' % (EVIL, server.port, EVIL, port),
                      extra_args=rule)
    try:
        seen = await posts_until(server, ['close', 'open'], 60)
        check(not any(k == 'open' for k, _ in seen),
              'a page of %s mapped to 127.0.0.1 subscribed: %s' % (EVIL, seen))
        notes.append('rebound page: %s' % ', '.join(k + (' ' + b if b else '') for k, b in seen))
    finally:
        browser.close()
        server.close()
    page = await Page('http://%s:%d/' % (EVIL, port), extra_args=rule).open()
    try:
        text = await page.evaluate('document.body ? document.body.innerText : ""')
        check('host is not allowed' in text and not await page.evaluate(
            "!!document.getElementById('state')"),
            'the console under the name %s shows %r' % (EVIL, short(text)))
        notes.append('rebound console: %r' % short(text, 40))
    finally:
        await page.close()

    # the console, of its own origin, still subscribes
    page = await Page('http://127.0.0.1:%d/' % port).open()
    try:
        await page.wait(STATE_IS % '"connected"', 60, 'the console connected')
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (501, 'own', 'origin')")
        await page.wait(row_js('employees', 501), 20, 'employee 501 in the console')
        page.check_problems()
        notes.append('console: connected, row shown')
    finally:
        await page.close()
    return '; '.join(notes)


TESTS = [
    ('without a token only loopback Host names are served (/ws/, /, /health, /metrics)', test_host, 60),
    ('without a token only pages of pg_ws\'s own origin may subscribe', test_origin, 60),
    ('pg_ws.allowed_origins and pg_ws.allow_anonymous widen it, explicitly', test_configured, 90),
    ('with tokens any Host and origin; monitoring = local still wants a loopback Host', test_tokens, 60),
    ('Chromium: another origin and a rebound name cannot subscribe; the console can', test_chromium, 240),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=600)


if __name__ == '__main__':
    main()
