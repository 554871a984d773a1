#!/usr/bin/python3
"""End-to-end test of pg_ws with a real browser as the subscriber.

This file owns the browser suite: headless Chromium (Debian's chromium
package) opens a page that subscribes to ws://127.0.0.1:PORT/ws/ with the
browser's own WebSocket, as the frontends do, parses every frame with
JSON.parse and posts it back to a small HTTP server run by this script.
The browser must see the same frames, in the same order, as a Python
subscriber connected at the same time, and nothing of rolled-back work.

The page comes from another origin than pg_ws's (another port), which
pg_ws lets subscribe only when pg_ws.allowed_origins names it (issue 15):
its port is chosen before the cluster starts (PAGE_PORT), and the cluster
lists PAGE_ORIGIN.  test_tls.py uses the same page, server and origin;
test_anonymous.py checks that a page of an origin not listed cannot
subscribe.

Run as root: /usr/bin/python3 test/e2e/test_browser.py   (TAP output)
"""

import asyncio
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Ctx, Fail, asql, check, free_port, run_tap, short  # noqa: E402

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'

# where PageServer serves the page unless told otherwise, and so the origin
# a cluster lists in pg_ws.allowed_origins for it
PAGE_PORT = free_port()
PAGE_ORIGIN = 'http://127.0.0.1:%d' % PAGE_PORT

# The page: connect, then report every frame (with its index, since the
# POSTs themselves may arrive in any order) and how the socket ends.
PAGE = """<!doctype html><meta charset="utf-8"><title>pg_ws</title><script>
const url = new URLSearchParams(location.search).get('ws');
const report = (what, body) => fetch('/' + what, {method: 'POST', body});
let n = 0;
const ws = new WebSocket(url);
ws.onopen = () => report('open', '');
ws.onmessage = (e) => {
  let parsed;
  try { parsed = JSON.parse(e.data); } catch (err) { parsed = {event: 'UNPARSABLE'}; }
  report('message', JSON.stringify({i: n++, event: parsed.event, raw: e.data}));
};
ws.onerror = () => report('error', '');
ws.onclose = (e) => report('close', String(e.code));
</script>"""


class PageServer:
    """Serves PAGE (on host:port, by default PAGE_ORIGIN's) and collects
    what the page posts, in a queue."""

    def __init__(self, host='127.0.0.1', port=None):
        self.posts = queue.Queue()
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = PAGE.encode()
                self.send_response(200)
                self.send_header('content-type', 'text/html; charset=utf-8')
                self.send_header('content-length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get('content-length') or 0)
                posts.put((self.path.lstrip('/'), self.rfile.read(n).decode()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            (host, PAGE_PORT if port is None else port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Browser:
    """Headless Chromium showing one page; killed and cleaned up on close.
    extra_args: more command-line switches (test_tls.py pins its
    certificate's key with one)."""

    def __init__(self, url, extra_args=()):
        self.profile = tempfile.mkdtemp(prefix='pg_ws_chromium.')
        self.proc = subprocess.Popen(
            [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
             '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync',
             '--user-data-dir=' + self.profile, *extra_args, url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def close(self):
        # every process of the browser, not only the first: its helpers
        # would write to the profile after it is removed
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(self.profile, ignore_errors=True)


async def next_post(server, kinds, timeout):
    """The next post of one of kinds (others, like 'error', fail the test)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        check(left > 0, 'the browser posted no %s within %.0f s' % ('/'.join(kinds), timeout))
        try:
            kind, body = await asyncio.to_thread(server.posts.get, True, min(left, 0.5))
        except queue.Empty:
            continue
        if kind in kinds:
            return kind, body
        raise Fail('the browser reported %s %s while waiting for %s'
                   % (kind, short(body), '/'.join(kinds)))


async def test_browser_receives_events(ctx):
    """A browser gets the frames a Python subscriber gets, and parses them."""
    check(os.access(CHROMIUM, os.X_OK), 'chromium is not installed (scripts/install_deps.sh)')
    server = PageServer()
    browser = Browser('http://127.0.0.1:%d/?ws=%s/ws/' % (server.port, ctx.cl.url))
    try:
        await next_post(server, ['open'], 60)
        python_sub = await ctx.sub()
        conn = await ctx.aconn()
        await asql(conn,
                   "INSERT INTO client (id, first_seen, gender, age, image) VALUES"
                   " (1, '2023-12-10 10:00:00.25+00', 'female', 31, 'client_images/a b.jpg')",
                   "INSERT INTO visit_history (client_id, datetime, device_id)"
                   " VALUES (1, '2023-12-10 10:30:00+00', '1')",
                   "BEGIN",
                   "INSERT INTO employee (id, first_name, last_name) VALUES (99, 'rolled', 'back')",
                   "ROLLBACK",
                   "INSERT INTO employee (id, first_name, last_name, email)"
                   " VALUES (1, 'Zoë', 'Doe \"Ω\"', NULL)",
                   "INSERT INTO attendance (employee_id, device_id, datetime, score)"
                   " VALUES (1, '123ABC', '2023-12-10 08:00:00+00', 95.5)",
                   "UPDATE client SET visit_count = 1 WHERE id = 1",
                   "DELETE FROM employee WHERE id = 1",
                   "DELETE FROM client WHERE id = 1")
        expected = await python_sub.expect(9, 20, 'python subscriber')
        check(len(expected) == 9, 'python subscriber: %d messages, expected 9' % len(expected))

        got = {}
        while len(got) < len(expected):
            _, body = await next_post(server, ['message'], 20)
            m = json.loads(body)
            got[m['i']] = m
        await asyncio.sleep(0.5)
        check(server.posts.empty(), 'the browser got more than %d messages' % len(expected))

        for i, raw in enumerate(expected):
            check(got[i]['raw'] == raw,
                  'frame %d differs' % i, '  browser: ' + short(got[i]['raw']),
                  '  python:  ' + short(raw))
            check(got[i]['event'] == json.loads(raw)['event'],
                  'frame %d: JSON.parse gave event %r' % (i, got[i]['event']))
        events = [got[i]['event'] for i in range(len(expected))]
        check(events == ['client_create', 'client_visit_create', 'employee_create',
                         'employee_attendance', 'client_update', 'employee_delete',
                         'employee_attendance_delete', 'client_delete', 'client_visit_delete'],
              'unexpected events: %s' % events)
        return '%d frames, identical in Chromium and python-websockets' % len(expected)
    finally:
        browser.close()
        server.close()


TESTS = [
    ('headless Chromium receives and parses every event, as python-websockets does',
     test_browser_receives_events, 120),
]


def main():
    clusters = []

    async def setup():
        cl = Cluster(name='browser', conf=["pg_ws.allowed_origins = '%s'" % PAGE_ORIGIN])
        clusters.append(cl)
        cl.start()
        await cl.install()

    run_tap(TESTS, lambda: Ctx(clusters[0]), setup=setup, watchdog_seconds=240)


if __name__ == '__main__':
    main()
