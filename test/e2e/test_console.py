#!/usr/bin/python3
"""End-to-end tests of the console page pg_ws serves on GET /.

This file owns the console's suite: the HTTP answer on a raw socket (its
headers, a Content-Security-Policy whose hashes match the page's inline
script and style, the installed file as body), pg_ws.console (off; auto
with a non-loopback listen address; on), a page file that cannot be read,
and the page itself in headless Chromium (Debian's chromium, driven over
the DevTools protocol with python-websockets): rows inserted over SQL
appear, images load, markup in values stays text, the page reconnects and
resumes with since/epoch after the worker is terminated (nothing missed,
nothing twice), and with pg_ws.auth = jwt it prompts for a token, says
when one is refused or expires, and connects with a good one.

PG_WS_CONSOLE_SCREENSHOT=path makes the browser test save a 1280x800
screenshot of the page with its rows there (scripts/console_screenshot.sh
makes docs/console.png so).

Run as root: /usr/bin/python3 test/e2e/test_console.py   (TAP output)
"""

import asyncio
import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jwt_tools as jt  # noqa: E402
import rawws  # noqa: E402
from harness import ws_connect  # noqa: E402
from harness import (PGBIN, Cluster, ClusterKinds, Ctx, Fail, asql, check,  # noqa: E402
                     run_tap, short, worker_row)
from test_browser import CHROMIUM, Browser  # noqa: E402

SECRET = 'console-secret-' + secrets.token_hex(24)
PAGE_FILE = 'pg_ws_console.html'
SCREENSHOT = os.environ.get('PG_WS_CONSOLE_SCREENSHOT')


def sharedir(pgbin=PGBIN):
    return subprocess.run([os.path.join(pgbin, 'pg_config'), '--sharedir'], check=True,
                          capture_output=True, text=True).stdout.strip()


def installed_page():
    with open(os.path.join(sharedir(), 'extension', PAGE_FILE), 'rb') as f:
        return f.read()


def get(port, path='/', method='GET', host=None):
    """(status, headers, body, status line) of one request on a raw socket."""
    raw = '%s %s HTTP/1.1\r\nHost: %s\r\n\r\n' % (method, path, host or '127.0.0.1:%d' % port)
    status, headers, body, line, closed = rawws.http_exchange(port, raw.encode())
    check(closed, '%s %s: the connection stayed open after the answer' % (method, path))
    return status, headers, body, line


async def wait_get(port, status, timeout, what):
    """Wait until GET / answers status (after a reload); the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(get, port)
        if got[0] == status:
            return got
        check(time.monotonic() < deadline, '%s: GET / still answers %r after %.0f s'
              % (what, got[3], timeout))
        await asyncio.sleep(0.2)


async def reload_with(conn, **settings):
    """ALTER SYSTEM the pg_ws settings (None resets one) and reload."""
    for name, value in settings.items():
        if value is None:
            await asql(conn, 'ALTER SYSTEM RESET pg_ws.%s' % name)
        else:
            await asql(conn, "ALTER SYSTEM SET pg_ws.%s = '%s'" % (name, value))
    await asql(conn, 'SELECT pg_reload_conf()')


def inline_hashes(page, tag):
    """The CSP sources a browser would compute for the page's <tag>s."""
    html = re.sub(r'<!--.*?-->', '', page.decode(), flags=re.S)
    return ["'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            for text in re.findall(r'<%s>(.*?)</%s>' % (tag, tag), html, flags=re.S)]


# ------------------------------------------------------------- a browser

class Page:
    """The console in headless Chromium, driven over the DevTools protocol:
    evaluate() runs JavaScript in it; problems collects (source, text) of
    what the browser logged as errors (a CSP violation, a failed script, a
    refused connection) and the page's uncaught exceptions."""

    def __init__(self, url, extra_args=()):
        self.url = url
        self.browser = Browser('about:blank', ['--remote-debugging-port=0',
                                               '--window-size=1280,800', '--hide-scrollbars',
                                               *extra_args])
        self.ws = None
        self.reader = None
        self.next_id = 0
        self.waiting = {}
        self.problems = []

    async def open(self, timeout=60):
        # Chromium writes the port it chose into its profile
        active = os.path.join(self.browser.profile, 'DevToolsActivePort')
        deadline = time.monotonic() + timeout
        target = None
        while target is None:
            check(time.monotonic() < deadline, 'Chromium offered no DevTools page target')
            await asyncio.sleep(0.1)
            try:
                with open(active) as f:
                    port = int(f.read().split()[0])
                listing = await asyncio.to_thread(
                    lambda: urllib.request.urlopen('http://127.0.0.1:%d/json/list' % port, timeout=5).read())
            except (OSError, ValueError, IndexError):
                continue
            target = next((t for t in json.loads(listing) if t.get('type') == 'page'), None)
        self.ws = await ws_connect(target['webSocketDebuggerUrl'], max_size=None,
                                           ping_interval=None, open_timeout=10)
        self.reader = asyncio.create_task(self._read())
        await self.call('Runtime.enable')
        await self.call('Log.enable')
        await self.call('Page.enable')
        # the window's size, exactly (the window has chrome around it)
        await self.call('Emulation.setDeviceMetricsOverride', width=1280, height=800,
                        deviceScaleFactor=1, mobile=False)
        # load the console only now, so that every message about it is seen
        await self.call('Page.navigate', url=self.url)
        await self.wait('location.href === %s && document.readyState === "complete"' % json.dumps(self.url),
                        60, 'the console page loaded')
        return self

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if 'id' in msg:
                fut = self.waiting.pop(msg['id'], None)
                if fut and not fut.done():
                    fut.set_result(msg)
            elif msg.get('method') == 'Log.entryAdded':
                entry = msg['params']['entry']
                if entry.get('level') == 'error' and '/favicon.ico' not in entry.get('url', ''):
                    self.problems.append((entry.get('source'), entry.get('text')))
            elif msg.get('method') == 'Runtime.exceptionThrown':
                d = msg['params']['exceptionDetails']
                self.problems.append(('exception', d.get('exception', {}).get('description', d.get('text'))))

    async def call(self, method, **params):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = fut
        await self.ws.send(json.dumps({'id': self.next_id, 'method': method, 'params': params}))
        msg = await asyncio.wait_for(fut, 30)
        if 'error' in msg:
            raise Fail('DevTools %s: %s' % (method, msg['error']))
        return msg['result']

    async def evaluate(self, expression):
        r = await self.call('Runtime.evaluate', expression=expression, returnByValue=True,
                            awaitPromise=True)
        if 'exceptionDetails' in r:
            raise Fail('the page could not evaluate %s: %s' % (short(expression, 80),
                                                                short(r['exceptionDetails'])))
        return r['result'].get('value')

    async def wait(self, expression, timeout, what):
        """Wait until expression is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise Fail('%s: not so after %.0f s' % (what, timeout),
                           'page: ' + short(json.dumps(await self.state()), 1500),
                           *['browser: %s: %s' % (src, short(text)) for src, text in self.problems[-5:]])
            await asyncio.sleep(0.1)

    async def state(self):
        return await self.evaluate(STATE_JS)

    def check_problems(self, allowed_network=()):
        """No error but network ones whose text has one of allowed_network
        (a refused connection the test provoked)."""
        bad = [(src, text) for src, text in self.problems
               if not (src == 'network' and any(a in text for a in allowed_network))]
        check(not bad, 'the browser reported: %s' % ['%s: %s' % (src, short(t)) for src, t in bad[:5]])

    async def screenshot(self, path):
        r = await self.call('Page.captureScreenshot', format='png')
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(base64.b64decode(r['data']))

    async def close(self):
        if self.reader:
            self.reader.cancel()
        if self.ws:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except Exception:
                pass
        self.browser.close()


# what the page shows, as the tests read it
STATE_JS = r"""(() => {
  const rows = (id) => [...document.querySelectorAll('#' + id + ' tr[data-key]')].map((tr) => ({
    key: tr.dataset.key, cells: [...tr.cells].map((td) => td.textContent),
    images: [...tr.querySelectorAll('img')].map((i) => ({src: i.src, loaded: i.complete && i.naturalWidth > 0})),
  }));
  return {
    state: document.getElementById('state').dataset.state,
    stateText: document.getElementById('state').textContent,
    prompt: !document.getElementById('token-form').hidden,
    promptWhy: document.getElementById('token-why').textContent,
    clients: rows('clients'), employees: rows('employees'), attendance: rows('attendance'),
    log: [...document.querySelectorAll('#log li')].map((li) => ({
      seq: li.dataset.seq ? Number(li.dataset.seq) : null, event: li.dataset.event || null,
      text: li.textContent})),
    images: document.querySelectorAll('img').length,
  };
})()"""


def row_js(table, key, prefix=False):
    """Does the table show a row of this key (or one starting with it)?"""
    return ("[...document.querySelectorAll('#%s tr[data-key]')].some((tr) => tr.dataset.key%s)"
            % (table, ('.startsWith(%s)' if prefix else ' === %s') % json.dumps(str(key))))


def log_has_js(needle):
    return ("[...document.querySelectorAll('#log li')].some((li) => li.textContent.includes(%s))"
            % json.dumps(needle))


STATE_IS = "document.getElementById('state').dataset.state === %s"
PROMPT_SAYS = ("!document.getElementById('token-form').hidden &&"
               " document.getElementById('token-why').textContent.includes(%s)")


async def enter_token(page, token):
    """Type a token into the prompt and submit it, as a user would."""
    await page.evaluate("document.getElementById('token-input').value = %s;"
                        " document.getElementById('token-form').requestSubmit(); true"
                        % json.dumps(token))


class Images:
    """A small image server standing in for pg_ws.media_url's host: every
    path is a coloured SVG face."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hue = int(hashlib.sha256(self.path.encode()).hexdigest()[:4], 16) % 360
                body = ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                        '<rect width="64" height="64" fill="hsl(%d,55%%,55%%)"/>'
                        '<circle cx="32" cy="26" r="12" fill="#fff"/>'
                        '<ellipse cx="32" cy="58" rx="20" ry="16" fill="#fff"/></svg>' % hue).encode()
                self.send_response(200)
                self.send_header('content-type', 'image/svg+xml')
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/media/' % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------- clusters

class CopiedTree:
    """The PostgreSQL installation under test, hard-linked (or copied) into
    a directory of its own, so that a test may remove the console page from
    it without touching the installation every other test uses."""

    def __init__(self):
        version_dir = os.path.dirname(PGBIN.rstrip('/'))
        share = sharedir()
        common = os.path.commonpath([version_dir, share])
        self.root = tempfile.mkdtemp(prefix='pg_ws_tree.')
        os.chmod(self.root, 0o755)
        for path in (version_dir, share):
            dest = os.path.join(self.root, os.path.relpath(path, common))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            for parent in self._parents(dest):
                os.chmod(parent, 0o755)
            if subprocess.run(['cp', '-al', path, dest], capture_output=True).returncode != 0:
                shutil.rmtree(dest, ignore_errors=True)
                subprocess.run(['cp', '-a', path, dest], check=True)
        self.pgbin = os.path.join(self.root, os.path.relpath(PGBIN.rstrip('/'), common))
        self.page = os.path.join(self.root, os.path.relpath(share, common), 'extension', PAGE_FILE)
        self.original = os.path.join(share, 'extension', PAGE_FILE)

    def _parents(self, dest):
        p = os.path.dirname(dest)
        while p.startswith(self.root) and p != self.root:
            yield p
            p = os.path.dirname(p)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


class NoPageCluster(Cluster):
    """A cluster run from a CopiedTree without the console page; the tree
    goes when the cluster is removed (run_tap removes every cluster)."""

    def __init__(self, **kw):
        self.tree = CopiedTree()
        os.unlink(self.tree.page)
        super().__init__(pgbin=self.tree.pgbin, **kw)

    def remove(self):
        super().remove()
        self.tree.remove()


def make_cluster(kind):
    if kind == 'console':
        return Cluster(name='console')
    if kind == 'jwt':
        return Cluster(name='console-jwt', conf=["pg_ws.auth = 'jwt'",
                                                 "pg_ws.jwt_secret = '%s'" % SECRET,
                                                 'pg_ws.jwt_leeway = 0'])
    if kind == 'nopage':
        return NoPageCluster(name='console-nopage')
    raise ValueError(kind)


KINDS = ClusterKinds(make_cluster)


# ------------------------------------------------------------- tests

async def test_answer(ctx):
    """GET / is the installed page with the headers the issue asks for;
    HEAD / the same head; other methods on / get 405; other paths 404."""
    cl = await KINDS.get(ctx, 'console')
    page = installed_page()
    status, h, body, line = await asyncio.to_thread(get, cl.wsport)
    check(status == 200, 'GET / answered %r' % line)
    check(body == page, 'GET / is not the installed %s (%d bytes, the file has %d)'
          % (PAGE_FILE, len(body), len(page)))
    check(h.get('content-type') == 'text/html; charset=utf-8', 'Content-Type: %r' % h.get('content-type'))
    check(h.get('content-length') == str(len(page)), 'Content-Length: %r' % h.get('content-length'))
    for name, want in [('x-content-type-options', 'nosniff'), ('cache-control', 'no-store'),
                       ('referrer-policy', 'no-referrer'), ('pg-ws-auth', 'none')]:
        check(h.get(name) == want, '%s: %r, expected %r' % (name, h.get(name), want))

    csp = dict((d.strip().split(' ', 1) + [''])[:2] for d in h.get('content-security-policy', '').split(';'))
    check(csp.get('default-src') == "'none'", 'CSP default-src: %r' % csp.get('default-src'))
    for tag in ('script', 'style'):
        want = inline_hashes(page, tag)
        check(len(want) == 1 and csp.get(tag + '-src') == want[0],
              'CSP %s-src %r, but the page\'s %s hashes to %s' % (tag, csp.get(tag + '-src'), tag, want))
    check(set(csp.get('img-src', '').split()) >= {'http:', 'https:'}, 'CSP img-src: %r' % csp.get('img-src'))
    host = '127.0.0.1:%d' % cl.wsport
    check(csp.get('connect-src', '').split() == ["'self'", 'ws://' + host, 'wss://' + host],
          'CSP connect-src: %r' % csp.get('connect-src'))
    for d in ('base-uri', 'form-action', 'frame-ancestors'):
        check(csp.get(d) == "'none'", 'CSP %s: %r' % (d, csp.get(d)))
    check(not any(bad in h.get('content-security-policy', '') for bad in ("'unsafe-inline'", "'unsafe-eval'")),
          'the CSP allows unsafe-*: %s' % h.get('content-security-policy'))
    check(not re.search(rb'(src|href)\s*=\s*["\']?(https?:)?//', page),
          'the page refers to an external URL')

    # a Host that is not a host and port is a 400; without a token one that
    # is not loopback is a 403 (test_anonymous.py).  Where the page is
    # served for any Host (with tokens), one that is not a plain host:port
    # is left out of the policy
    status, _, _, line = await asyncio.to_thread(get, cl.wsport, host="evil'; script-src *")
    check(status == 400, 'GET / with Host "evil\'; script-src *": %r' % line)
    status, _, _, line = await asyncio.to_thread(get, cl.wsport, host="evil';script-src")
    check(status == 403, 'GET / with Host "evil\';script-src" and no token: %r' % line)
    jwt = await KINDS.get(ctx, 'jwt')
    status, h2, _, line = await asyncio.to_thread(get, jwt.wsport, host="evil';script-src")
    check(status == 200 and 'evil' not in h2.get('content-security-policy', '') and
          "connect-src 'self';" in h2.get('content-security-policy', ''),
          'a strange Host reached the CSP: %r %s' % (line, h2.get('content-security-policy')))

    status, hh, body, line = await asyncio.to_thread(get, cl.wsport, method='HEAD')
    check(status == 200 and body == b'' and hh == h, 'HEAD /: %r, body %d bytes, headers %s'
          % (line, len(body), 'equal' if hh == h else 'differ: %s' % hh))
    status, hp, _, line = await asyncio.to_thread(get, cl.wsport, method='POST')
    check(status == 405 and hp.get('allow') == 'GET, HEAD', 'POST /: %r, Allow %r' % (line, hp.get('allow')))
    for path in ('/index.html', '/console', '/ws'):
        status, _, _, line = await asyncio.to_thread(get, cl.wsport, path)
        check(status == 404, 'GET %s: %r' % (path, line))
    status, _, _, line = await asyncio.to_thread(get, cl.wsport, '/?since=1')
    check(status == 200, 'GET /?since=1: %r' % line)
    return 'page of %d bytes; CSP %s' % (len(page), h['content-security-policy'][:60] + '...')


async def test_setting(ctx):
    """pg_ws.console: off makes GET / a 404 (reload); auto stops serving it
    when pg_ws listens on a non-loopback address ('*'), and on serves it
    there anyway; each change is logged.  pg_ws.allowed_origins refuses
    the console's own origin unless it is listed."""
    cl = await KINDS.get(ctx, 'console')
    conn = await ctx.aconn()
    rows = await asql(conn, "SELECT setting, context FROM pg_settings WHERE name = 'pg_ws.console'")
    check(rows == [('auto', 'sighup')], 'pg_ws.console in pg_settings: %s' % rows)
    check(any('pg_ws serves its console page on GET /' in x for x in cl.log_since(0)),
          'the log does not say the page is served')
    mark = cl.log_size()
    try:
        await reload_with(conn, console='off')
        _, _, body, _ = await wait_get(cl.wsport, 404, 20, 'pg_ws.console = off')
        check(b'/ws/' in body, '404 body: %r' % body)
        await reload_with(conn, console=None)
        await wait_get(cl.wsport, 200, 20, 'pg_ws.console back to auto')

        # every address: auto does not serve the page, on does
        await reload_with(conn, listen_addresses='*', allow_anonymous='on')
        deadline = time.monotonic() + 20
        while not any('does not serve its console page' in x for x in cl.log_since(mark)):
            check(time.monotonic() < deadline, 'no log line says the page is not served on "*"')
            await asyncio.sleep(0.1)
        await wait_get(cl.wsport, 404, 20, "pg_ws.listen_addresses = '*' with auto")
        await reload_with(conn, console='on')
        await wait_get(cl.wsport, 200, 20, "pg_ws.listen_addresses = '*' with on")
    finally:
        await reload_with(conn, console=None, listen_addresses=None, allow_anonymous=None)
    await wait_get(cl.wsport, 200, 20, 'the settings restored')

    # pg_ws.allowed_origins applies to the console's own upgrade too
    own = 'http://127.0.0.1:%d' % cl.wsport

    def upgrade_status():
        raw = rawws.upgrade_request(cl.wsport, extra=['Origin: ' + own])
        return rawws.http_exchange(cl.wsport, raw, timeout=3)[0]
    try:
        await reload_with(conn, allowed_origins='https://app.example.com')
        deadline = time.monotonic() + 20
        while (status := await asyncio.to_thread(upgrade_status)) != 403:
            check(time.monotonic() < deadline, 'the console origin was not refused: %s' % status)
            await asyncio.sleep(0.2)
        await reload_with(conn, allowed_origins='https://app.example.com, ' + own)
        deadline = time.monotonic() + 20
        while (status := await asyncio.to_thread(upgrade_status)) != 101:
            check(time.monotonic() < deadline, 'the console origin listed, yet: %s' % status)
            await asyncio.sleep(0.2)
    finally:
        await reload_with(conn, allowed_origins=None)
    lines = [x.split('LOG:  ')[-1] for x in cl.log_since(mark) if 'console page' in x]
    check(any('no longer serves its console page: pg_ws.console is off' in x for x in lines),
          'no log line about pg_ws.console = off: %s' % lines)
    return '; '.join(lines[:3])


async def test_missing_page(ctx):
    """Without the installed page file GET / answers 503 with a clear body,
    the log says why once, the worker keeps serving /ws/; once the file is
    back the next GET / serves it, and an edited file is served after a
    reload."""
    cl = await KINDS.get(ctx, 'nopage')
    conn = await ctx.aconn()
    pid = (await worker_row(conn))[0]
    for _ in range(3):
        status, _, body, line = await asyncio.to_thread(get, cl.wsport)
        check(status == 503 and b'console page' in body, 'GET / without the file: %r %r' % (line, body))
    why = [x for x in cl.log_since(0) if 'cannot serve its console page' in x]
    check(len(why) == 1 and 'could not open file' in why[0] and PAGE_FILE in why[0],
          'the log says, for 3 requests: %s' % why)
    sub = await ctx.sub()
    await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (1, 'still', 'served')")
    await sub.wait_until(lambda m: any('"still"' in x for x in m), 15, 'an event after the 503s')
    check((await worker_row(conn))[0] == pid, 'the worker restarted')
    os.link(cl.tree.original, cl.tree.page)
    status, _, body, line = await asyncio.to_thread(get, cl.wsport)
    check(status == 200 and body == installed_page(), 'GET / with the file back: %r' % line)

    # the worker keeps what it read until a reload (the file is replaced by
    # a rename: it is a link to the installation's own)
    edited = installed_page().replace(b'<title>pg_ws console</title>', b'<title>edited console</title>')
    with open(cl.tree.page + '.new', 'wb') as f:
        f.write(edited)
    os.chmod(cl.tree.page + '.new', 0o644)
    os.replace(cl.tree.page + '.new', cl.tree.page)
    status, _, body, line = await asyncio.to_thread(get, cl.wsport)
    check(body == installed_page(), 'the worker read the file again without a reload')
    await asql(conn, 'SELECT pg_reload_conf()')
    deadline = time.monotonic() + 20
    while (await asyncio.to_thread(get, cl.wsport))[2] != edited:
        check(time.monotonic() < deadline, 'the edited file is not served after a reload')
        await asyncio.sleep(0.2)
    return why[0].split('LOG:  ')[-1]


async def test_browser_shows_rows(ctx):
    """Chromium opens the console; rows inserted over SQL appear in its
    tables and log, images load, markup in values stays text, the state
    reads connected, and the browser reports no CSP violation or error."""
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    cl = await KINDS.get(ctx, 'console')
    images = Images()
    page = await Page('http://127.0.0.1:%d/' % cl.wsport).open()
    try:
        await page.wait(STATE_IS % '"connected"', 60, 'the console connected')
        conn = await ctx.aconn()
        await asql(conn, "SET pg_ws.media_url = '%s'" % images.url,
                   "INSERT INTO client (id, first_seen, last_seen, gender, age, image) VALUES"
                   " (101, now() - interval '2 hours', now(), 'female', 31, 'client_images/101.jpg'),"
                   " (102, now() - interval '1 day', now() - interval '3 hours', 'male', 45,"
                   "  'client_images/102.jpg')",
                   "INSERT INTO visit_history (client_id, datetime, device_id) VALUES (101, now(), 'gate-1')",
                   "UPDATE client SET visit_count = visit_count + 1, last_seen = now() WHERE id = 101",
                   "INSERT INTO employee (id, first_name, last_name, email, phone_number, image) VALUES"
                   " (201, 'Ada', 'Lovelace', 'ada@example.com', '555-0101', 'employee_images/ada.jpg'),"
                   " (202, '<img src=x onerror=alert(1)>', 'Hopper', NULL, NULL, 'employee_images/grace.jpg')",
                   "INSERT INTO attendance (employee_id, device_id, image, datetime, score) VALUES"
                   " (201, 'door-A', 'attendance_images/ada.jpg', now(), 97.5),"
                   " (202, 'door-B', 'attendance_images/grace.jpg', now(), 88)",
                   "INSERT INTO client (id, gender, age, image)"
                   " VALUES (103, 'female', 27, 'client_images/103.jpg')")
        await page.wait(row_js('clients', 103), 20, 'client 103 in the table')
        await page.wait(row_js('attendance', '202|', prefix=True), 20, 'the attendance of employee 202')
        s = await page.state()
        clients = {r['key']: r for r in s['clients']}
        check(set(clients) == {'101', '102', '103'}, 'clients shown: %s' % sorted(clients))
        c = clients['101']['cells']
        check(c[0] == '101' and c[1] == '1' and 'gate-1' in c[3] and c[4] == 'female, 31',
              'client 101 shows %s' % c)
        emps = {r['key']: r for r in s['employees']}
        check(emps['201']['cells'][1:4] == ['Ada Lovelace', 'ada@example.com', '555-0101'],
              'employee 201 shows %s' % emps['201']['cells'])
        check(emps['202']['cells'][1] == '<img src=x onerror=alert(1)> Hopper',
              'employee 202 shows %s' % emps['202']['cells'])
        att = [r['cells'] for r in s['attendance']]
        check(len(att) == 2 and att[0][1] in ('door-A', 'door-B') and
              {a[1] for a in att} == {'door-A', 'door-B'} and
              any(a[0].startswith('Ada Lovelace') and a[3] == '97.5' for a in att),
              "today's attendance shows %s" % att)
        events = [e['event'] for e in s['log'] if e['seq'] is not None]
        check(sorted(events) == sorted(['client_create'] * 3 + ['client_visit_create', 'client_update'] +
                                       ['employee_create'] * 2 + ['employee_attendance'] * 2),
              'the log shows %s' % events)
        seqs = [e['seq'] for e in s['log'] if e['seq'] is not None]
        check(seqs == sorted(seqs, reverse=True), 'the log is not newest first: %s' % seqs)
        # every row's image, and only those: no <img> came from a value
        rows = s['clients'] + s['employees'] + s['attendance']
        check(s['images'] == len(rows) and all(len(r['images']) == 1 for r in rows),
              '%d images for %d rows' % (s['images'], len(rows)))
        await page.wait("[...document.querySelectorAll('img')].every((i) => i.complete && i.naturalWidth > 0)",
                        20, 'every image loaded from %s' % images.url)
        check(all(r['images'][0]['src'].startswith(images.url) for r in rows),
              'image sources: %s' % [r['images'][0]['src'] for r in rows])

        # deletes take rows away: the employee and, by the cascade, the
        # attendance
        await asql(conn, "SET pg_ws.media_url = '%s'" % images.url,
                   "DELETE FROM employee WHERE id = 202",
                   "INSERT INTO employee (id, first_name, last_name, email, phone_number, image) VALUES"
                   " (203, 'Grace', 'Hopper', 'grace@example.com', '555-0199', 'employee_images/grace.jpg')",
                   "INSERT INTO attendance (employee_id, device_id, image, datetime, score) VALUES"
                   " (203, 'door-B', 'attendance_images/grace.jpg', now(), 92.25)",
                   "INSERT INTO visit_history (client_id, datetime, device_id) VALUES (102, now(), 'gate-2')",
                   "UPDATE client SET visit_count = visit_count + 1, last_seen = now() WHERE id = 102")
        await page.wait(row_js('attendance', '203|', prefix=True), 20, 'the attendance of employee 203')
        await page.wait('!(%s) && !(%s)' % (row_js('employees', 202), row_js('attendance', '202|', prefix=True)),
                        20, 'employee 202 and its attendance gone')
        s = await page.state()
        check(sorted(r['key'] for r in s['employees']) == ['201', '203'],
              'employees shown: %s' % [r['key'] for r in s['employees']])
        check(any(e['event'] == 'employee_attendance_delete' for e in s['log']) and
              any(e['event'] == 'employee_delete' for e in s['log']), 'the deletes are not in the log')
        await page.wait("[...document.querySelectorAll('img')].every((i) => i.complete && i.naturalWidth > 0)",
                        20, 'every image loaded')
        page.check_problems()
        if SCREENSHOT:
            await page.screenshot(SCREENSHOT)
        return '%d clients, %d employees, %d attendances, %d log entries%s' % (
            len(s['clients']), len(s['employees']), len(s['attendance']), len(s['log']),
            '; screenshot ' + SCREENSHOT if SCREENSHOT else '')
    finally:
        await page.close()
        images.close()


async def test_browser_resumes(ctx):
    """The worker is terminated under the page: the page sees the close,
    reconnects by itself and resumes with since/epoch, so rows committed
    while no worker ran appear, and no event is shown twice.  A position
    the server cannot resume from gets resync_required: the tables are
    cleared and the live stream goes on.  The log keeps the newest 200."""
    cl = await KINDS.get(ctx, 'console')
    page = await Page('http://127.0.0.1:%d/' % cl.wsport).open()
    try:
        await page.wait(STATE_IS % '"connected"', 60, 'the console connected')
        conn = await ctx.aconn()
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (301, 'before', 'restart')")
        await page.wait(row_js('employees', 301), 20, 'employee 301')
        before = [e for e in (await page.state())['log'] if e['seq'] is not None]

        pid = (await worker_row(conn))[0]
        await asql(conn, 'SELECT pg_terminate_backend(%d)' % pid)
        await page.wait(log_has_js('connection closed (1001'), 20, 'the page saw the worker go')
        deadline = time.monotonic() + 20
        while (row := await worker_row(conn)) is not None and row[0] == pid:
            check(time.monotonic() < deadline, 'the worker did not exit')
            await asyncio.sleep(0.02)
        # committed while the page has no connection (the worker is
        # restarted a second after it exits)
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (302, 'while', 'down')",
                   "INSERT INTO attendance (employee_id, device_id, datetime, score)"
                   " VALUES (302, 'door-C', now(), 91)")
        state_then = (await page.state())['state']
        await page.wait(STATE_IS % '"connected"', 60, 'the console reconnected')
        await page.wait(row_js('employees', 302), 20, 'employee 302, committed while disconnected')
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (303, 'after', 'restart')")
        await page.wait(row_js('employees', 303), 20, 'employee 303, after the reconnect')

        s = await page.state()
        after = [e for e in s['log'] if e['seq'] is not None]
        seqs = [e['seq'] for e in after]
        check(len(seqs) == len(set(seqs)), 'an event is in the log twice: %s' % seqs)
        check(seqs == sorted(seqs, reverse=True), 'the log is out of order: %s' % seqs)
        check([e['event'] for e in after[:3]] == ['employee_create', 'employee_attendance', 'employee_create']
              and len(after) == len(before) + 3,
              'after the restart the log has %s' % [(e['event'], e['seq']) for e in after[:5]])
        check(any(r['key'].startswith('302|') for r in s['attendance']), 'no attendance of 302 shown')
        check((await worker_row(conn))[0] != pid, 'the worker was not restarted')

        # a position the server cannot resume from (another epoch): the
        # page gets resync_required, clears its tables, and goes on live
        await page.evaluate("last = {seq: 1, epoch: 'another-cluster'}; socket.close(); true")
        await page.wait(log_has_js('resync_required'), 30, 'the resync_required notice')
        await page.wait("document.querySelectorAll('#employees tr[data-key]').length === 0", 10,
                        'the tables cleared')
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (304, 'after', 'resync')")
        await page.wait(row_js('employees', 304), 20, 'employee 304, after the resync')

        # the log keeps the newest 200 entries
        await asql(conn, "INSERT INTO employee (id, first_name, last_name)"
                         " SELECT 1000 + i, 'bulk', i::text FROM generate_series(1, 250) i")
        await page.wait(row_js('employees', 1250), 30, 'the last of 250 employees')
        s = await page.state()
        check(len(s['log']) == 200 and s['log'][0]['text'].find('"last_name":"250"') > 0,
              'the log holds %d entries, the newest: %s' % (len(s['log']), short(s['log'][0]['text'])))
        # while the worker was down: its port refused connections
        page.check_problems(allowed_network=['ERR_CONNECTION_REFUSED'])
        return 'page state when the rows were committed: %s; %d events, none twice' % (state_then, len(after))
    finally:
        await page.close()


async def test_browser_token(ctx):
    """With pg_ws.auth = jwt the page prompts for a token; a bad one brings
    the prompt back saying it was refused; one that expires closes the
    connection (4001) and the prompt says so; a good one connects and
    events appear."""
    cl = await KINDS.get(ctx, 'jwt')
    status, h, _, line = await asyncio.to_thread(get, cl.wsport)
    check(status == 200 and h.get('pg-ws-auth') == 'jwt', 'GET /: %r, Pg-Ws-Auth %r' % (line, h.get('pg-ws-auth')))
    page = await Page('http://127.0.0.1:%d/' % cl.wsport).open()
    try:
        await page.wait(PROMPT_SAYS % '"requires a token"', 60, 'the token prompt')
        check((await page.state())['state'] == 'token', 'the state is not "token"')

        await enter_token(page, jt.hs256({'sub': 'console', 'exp': int(time.time()) + 3600},
                                         'not-the-secret-' + 'x' * 32))
        await page.wait(PROMPT_SAYS % '"refused this token"', 30, 'the prompt after a forged token')

        await enter_token(page, jt.hs256({'sub': 'console', 'exp': int(time.time()) + 3}, SECRET))
        await page.wait(PROMPT_SAYS % '"token expired"', 30, 'the prompt after the token expired')

        good = jt.hs256({'sub': 'console', 'exp': int(time.time()) + 3600}, SECRET)
        await enter_token(page, good)
        await page.wait(STATE_IS % '"connected"', 30, 'the console connected with a good token')
        conn = await ctx.aconn()
        await asql(conn, "INSERT INTO employee (id, first_name, last_name) VALUES (401, 'with', 'token')")
        await page.wait(row_js('employees', 401), 20, 'employee 401 with the token')
        s = await page.state()
        check(not s['prompt'], 'the prompt is still shown')
        check(await page.evaluate("sessionStorage.getItem('pg_ws_console_token')") == good,
              'the token is not kept in the tab\'s sessionStorage')
        # the refused upgrades, as the browser reports them
        page.check_problems(allowed_network=['HTTP Authentication failed'])
        return 'prompted, refused a forged token, noticed expiry, connected'
    finally:
        await page.close()


TESTS = [
    ('GET / serves the installed page with a strict CSP and the right headers', test_answer, 60),
    ('pg_ws.console: off, auto on a public address, on', test_setting, 120),
    ('a missing page file: 503, logged once, the worker keeps serving', test_missing_page, 90),
    ('Chromium: rows inserted over SQL appear in the console', test_browser_shows_rows, 150),
    ('Chromium: the console reconnects and resumes after a worker restart', test_browser_resumes, 150),
    ('Chromium: the token prompt with pg_ws.auth = jwt', test_browser_token, 150),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=600)


if __name__ == '__main__':
    main()
