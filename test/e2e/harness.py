"""Shared machinery of pg_ws's end-to-end suites (test/e2e/test_*.py).

Not a test itself (test/run_tests.sh runs test_*.py only).  It provides:

  - Cluster: a throw-away PostgreSQL cluster (PG_WS_PGBIN's) run by the postgres user on
    free ports, with pg_ws preloaded or not and extra postgresql.conf
    lines, and install() to create the extension and wait for the worker;
  - ClusterKinds: a suite's clusters by kind, each started on first use;
  - sql()/asql(): statements on a psycopg2 connection, blocking or from a
    thread so that asyncio subscribers keep reading meanwhile;
  - Subscriber and Ctx: /ws/ clients that record what they are sent, and
    what one test opened, closed even when the test fails;
  - ident()/compare_idents(), worker_row(), port_open(): small checks;
  - restart_worker(): a new pg_ws worker, the old one's memory gone;
  - upgrade_status(): the status an upgrade request gets;
  - run_tap(): the TAP runner with per-test timeouts, a watchdog over the
    whole run, and clean-up of every cluster made.

Every test is an `async def test(ctx)` that raises Fail (or anything) to
fail and may return a one-line note.
"""

import asyncio
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import warnings

import psycopg2

# websockets 14 made a new implementation websockets.connect and deprecated
# the one these suites are written against (extra_headers=,
# InvalidStatusCode, response_headers); Debian 12's 10.4 and Debian 13's
# 15 and testing's 17 all still have it as websockets.legacy.client, so
# every suite connects with ws_connect, that one, and its deprecation
# warnings are not printed into the TAP output
warnings.filterwarnings('ignore', category=DeprecationWarning, message=r'.*websockets')
import websockets  # noqa: E402
from websockets.legacy.client import connect as ws_connect  # noqa: E402,F401

# the PostgreSQL binaries: test/run_tests.sh passes those of its PG_CONFIG,
# so that a relocated copy of PostgreSQL (a sandbox) can be tested too; run
# by hand, the release's own (scripts/install_deps.sh --pg-major)
def _release_pgbin():
    deps = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                        'scripts', 'install_deps.sh')
    major = subprocess.run(['bash', deps, '--pg-major'], stdout=subprocess.PIPE,
                           text=True, check=True).stdout.strip()
    return '/usr/lib/postgresql/%s/bin' % major


PGBIN = os.environ.get('PG_WS_PGBIN') or _release_pgbin()


class Fail(Exception):
    """A test's expectation not met; its lines become TAP diagnostics."""

    def __init__(self, *lines):
        super().__init__('\n'.join(lines))


class Skip(Exception):
    """A test that cannot run here: reported as "ok N - name # skip why",
    which test/run_tests.sh counts as skipped, neither passed nor failed."""


def check(cond, *lines):
    if not cond:
        raise Fail(*lines)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def short(s, n=300):
    s = str(s)
    return s if len(s) <= n else s[:n] + '...(%d chars)' % len(s)


# ---------------------------------------------------------------- cluster

# PG_WS_E2E_EVENT_LOOP=libev runs a suite's clusters with that event loop
EVENT_LOOP = os.environ.get('PG_WS_E2E_EVENT_LOOP', '')


class Cluster:
    """A temporary PostgreSQL 15 cluster run by the postgres user.

    preload:  put pg_ws in shared_preload_libraries (and set pg_ws.*);
    conf:     extra postgresql.conf lines, written after the defaults, so
              they override them;
    database: the database pg_ws.database names, created by install() when
              it is not 'postgres';
    pgbin:    the PostgreSQL binaries to run (default PGBIN), for a suite
              that needs an installation of its own.
    Every cluster made is remembered in Cluster.instances, so that run_tap()
    and its watchdog stop and remove them whatever happens.
    """

    instances = []

    def __init__(self, conf=(), preload=True, pgport=None, wsport=None,
                 database='postgres', name='cluster', pgbin=None):
        self.name = name
        self.pgbin = pgbin or PGBIN
        self.preload = preload
        self.conf = list(conf)
        self.database = database
        self.pgport = int(pgport or free_port())
        self.wsport = int(wsport or free_port())
        while self.wsport == self.pgport:
            self.wsport = free_port()
        self.dir = tempfile.mkdtemp(prefix='pg_ws_e2e.')
        self.data = os.path.join(self.dir, 'data')
        self.log = os.path.join(self.dir, 'server.log')
        self.started = False
        self.nofile = None      # (soft, hard) limit on open files, if set
        pw = pwd.getpwnam('postgres')
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        Cluster.instances.append(self)

    def as_postgres(self, *args, timeout=120, check=True):
        """Run a command as postgres in the cluster's directory; its
        CompletedProcess (stdout and stderr together in .stdout)."""
        r = subprocess.run(['runuser', '-u', 'postgres', '--', *args],
                           cwd=self.dir, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError('%s failed (%d):\n%s'
                               % (os.path.basename(args[0]), r.returncode, r.stdout))
        return r

    def start(self):
        self.as_postgres(self.pgbin + '/initdb', '-D', self.data, '-U', 'postgres',
                         '--auth=trust', '-E', 'UTF8', '--no-locale')
        lines = ['', '# pg_ws end-to-end test cluster (%s)' % self.name]
        if self.preload:
            lines += ["shared_preload_libraries = 'pg_ws'",
                      'pg_ws.port = %d' % self.wsport,
                      "pg_ws.listen_addresses = '127.0.0.1'",
                      "pg_ws.database = '%s'" % self.database]
        lines += ["listen_addresses = ''",
                  "unix_socket_directories = '%s'" % self.dir,
                  'port = %d' % self.pgport,
                  # as production runs: a commit is durable before it
                  # returns, so the window between pg_ws's pre-commit and
                  # the commit record is as long as it really is
                  'fsync = on',
                  'synchronous_commit = on',
                  "log_line_prefix = '%m [%p] %b '"]
        if self.preload and EVENT_LOOP:
            lines += ["pg_ws.event_loop = '%s'" % EVENT_LOOP]
        if self.conf:
            lines += ['# this suite\'s settings'] + self.conf
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write('\n'.join(lines) + '\n')
        self.started = True
        limit = ['prlimit', '--nofile=%d:%d' % self.nofile, '--'] if self.nofile else []
        self.as_postgres(*limit, self.pgbin + '/pg_ctl', '-D', self.data, '-l', self.log,
                         '-w', '-t', '60', 'start')

    def stop(self):
        if self.started:
            self.started = False
            try:
                self.as_postgres(self.pgbin + '/pg_ctl', '-D', self.data,
                                 '-m', 'immediate', '-w', 'stop')
            except Exception as e:          # keep cleaning up
                print('# could not stop the cluster: %s' % e)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def cleanup_all(cls):
        for cl in cls.instances:
            cl.stop()
            cl.remove()

    def log_tail(self, n=60):
        try:
            with open(self.log, errors='replace') as f:
                return f.readlines()[-n:]
        except OSError as e:
            return ['(no server log: %s)\n' % e]

    def log_size(self):
        """Where the server log ends now, for log_since()."""
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, offset=0):
        """The server log's lines from byte offset on."""
        try:
            with open(self.log, 'rb') as f:
                f.seek(offset)
                return f.read().decode(errors='replace').splitlines()
        except OSError:
            return []

    def connect(self, autocommit=True, timezone=None, dbname=None, options=''):
        opts = '-c statement_timeout=60s'
        if timezone:
            opts += ' -c TimeZone=' + timezone
        if options:
            opts += ' ' + options
        conn = psycopg2.connect(host=self.dir, port=self.pgport, user='postgres',
                                dbname=dbname or self.database, options=opts)
        conn.autocommit = autocommit
        return conn

    @property
    def url(self):
        return 'ws://127.0.0.1:%d' % self.wsport

    async def install(self):
        """Create pg_ws.database if needed and the extension in it, and wait
        for the worker to listen on our port.  The first worker of a server
        has no reconnect grace period, so a new subscriber starts at the
        newest event."""
        if self.database != 'postgres':
            conn = await asyncio.to_thread(self.connect, dbname='postgres')
            try:
                await asql(conn, 'CREATE DATABASE "%s"' % self.database)
            finally:
                conn.close()
        conn = await asyncio.to_thread(self.connect)
        try:
            await asql(conn, "CREATE EXTENSION pg_ws")
            deadline = time.monotonic() + 30
            while await worker_row(conn) is None:
                check(time.monotonic() < deadline, 'the pg_ws worker did not start')
                await asyncio.sleep(0.1)
            # the port must be ours: another server may hold a port set by hand
            await self.wait_listening(self.wsport, 30)
            if EVENT_LOOP:
                # the worker really runs on that loop, not on poll() with
                # the setting ignored
                want = {'libev': 'Event loop: libev (epoll).'}.get(EVENT_LOOP,
                                                                  'Event loop: poll.')
                check(any(want in line for line in self.log_since(0)),
                      'pg_ws.event_loop = %s, but the log never says "%s"'
                      % (EVENT_LOOP, want))
        finally:
            conn.close()

    async def wait_listening(self, port, timeout, since=0):
        """Wait until the log (from byte since on) says the worker listens on
        127.0.0.1:port and the port accepts connections."""
        deadline = time.monotonic() + timeout
        mine = 'pg_ws listening on 127.0.0.1, port %d,' % port
        while True:
            lines = self.log_since(since)
            if any(mine in line for line in lines):
                break
            refused = [line for line in lines if 'pg_ws could not listen' in line]
            check(not refused and time.monotonic() < deadline,
                  'the pg_ws worker is not listening on port %d' % port, *refused[-3:])
            await asyncio.sleep(0.1)
        await port_open(port, max(1.0, deadline - time.monotonic()))


class Standby(Cluster):
    """A streaming standby of primary, made with pg_basebackup -R.  Its
    cluster_name is its name, which is also the application_name it
    connects to the primary with (synchronous_standby_names can name it).
    conf, set before start(), is written after the primary's settings."""

    def __init__(self, primary, name):
        super().__init__(name=name)
        self.primary = primary

    def start(self):
        self.as_postgres(self.pgbin + '/pg_basebackup', '-D', self.data, '-R', '-X', 'stream',
                         '-c', 'fast', '-d', 'host=%s port=%d user=postgres'
                         % (self.primary.dir, self.primary.pgport))
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write('\n# standby %s\nport = %d\nunix_socket_directories = \'%s\'\n'
                    'pg_ws.port = %d\nhot_standby_feedback = on\ncluster_name = \'%s\'\n'
                    % (self.name, self.pgport, self.dir, self.wsport, self.name))
            if self.conf:
                f.write('\n'.join(self.conf) + '\n')
        self.started = True
        self.as_postgres(self.pgbin + '/pg_ctl', '-D', self.data, '-l', self.log,
                         '-w', '-t', '60', 'start')


class ClusterKinds:
    """Clusters of named kinds for one suite: each is made by make(kind)
    and started (pg_ws installed when preloaded) on its first use, then
    shared by the tests that ask for it; a kind that could not be set up
    fails every test that asks for it, with the reason."""

    def __init__(self, make):
        self.make = make
        self.clusters = {}      # kind -> a started Cluster, or why not

    async def get(self, ctx, kind):
        """The cluster of this kind, which becomes ctx's cluster."""
        if kind not in self.clusters:
            try:
                cl = ctx.use(self.make(kind))
                await asyncio.to_thread(cl.start)
                if cl.preload:
                    await cl.install()
            except Exception as e:
                self.clusters[kind] = e
                raise
            self.clusters[kind] = cl
        cl = self.clusters[kind]
        if isinstance(cl, Exception):
            raise Fail('the %s cluster could not be set up: %s' % (kind, short(cl)))
        return ctx.use(cl)


async def poll(what, probe, timeout=30, every=0.1):
    """Await probe() until it returns something true, and return that;
    Fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        check(time.monotonic() < deadline, '%s: not after %d s' % (what, timeout))
        await asyncio.sleep(every)


def sql(conn, *stmts):
    """Run statements on conn (blocking); return the last one's rows, if any."""
    rows = None
    with conn.cursor() as cur:
        for s in stmts:
            if isinstance(s, tuple):
                cur.execute(*s)
            else:
                cur.execute(s)
            rows = cur.fetchall() if cur.description else None
    return rows


async def run_threads(target, n):
    """Run target(0) .. target(n - 1) in threads until all return, keeping
    the event loop (and so the subscribers) going; the seconds it took."""
    threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def asql(conn, *stmts):
    """sql() in a thread, so that subscribers keep reading meanwhile."""
    return await asyncio.to_thread(sql, conn, *stmts)


# ------------------------------------------------------------ subscribers

class Subscriber:
    """A /ws/ client that records every text message it is sent."""

    def __init__(self, ws):
        self.ws = ws
        self.msgs = []
        self.close_info = None
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url, path='/ws/', ssl=None):
        # no pings: the test measures pg_ws, not keepalive timing; ssl:
        # the context of a wss:// url (the default one's when None)
        ws = await ws_connect(url + path, ping_interval=None,
                                      max_size=None, max_queue=None,
                                      close_timeout=1, open_timeout=10,
                                      **({'ssl': ssl} if ssl else {}))
        return cls(ws)

    async def _read(self):
        try:
            async for m in self.ws:
                self.msgs.append(m)
        except websockets.ConnectionClosed as e:
            self.close_info = e
        except Exception as e:
            self.close_info = e
        finally:
            self.closed.set()

    async def wait_until(self, pred, timeout, what):
        """Wait until pred(msgs) holds; Fail if the connection closes first."""
        deadline = time.monotonic() + timeout
        while not pred(self.msgs):
            if self.closed.is_set():
                raise Fail('%s: connection closed (%s) after %d messages'
                           % (what, self.close_info, len(self.msgs)),
                           *self.last_lines())
            if time.monotonic() > deadline:
                raise Fail('%s: not there after %.0f s; %d messages arrived'
                           % (what, timeout, len(self.msgs)), *self.last_lines())
            await asyncio.sleep(0.02)

    async def expect(self, n, timeout, what, settle=0.3):
        """Wait for n messages, then a little longer to catch extra ones."""
        await self.wait_until(lambda m: len(m) >= n, timeout, what)
        await asyncio.sleep(settle)
        return list(self.msgs)

    def last_lines(self, k=5):
        return ['  last: ' + short(m) for m in self.msgs[-k:]]

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass
        self.task.cancel()


class Ctx:
    """What one test opened, so that it is closed even when the test fails.

    cl is the cluster sub(), conn() and aconn() use; use() switches to
    another one.  clusters lists every cluster the test used, whose server
    log tails the runner shows when the test fails."""

    def __init__(self, cluster=None):
        self.cl = None
        self.clusters = []
        self.subs = []
        self.conns = []
        if cluster is not None:
            self.use(cluster)

    def use(self, cluster):
        self.cl = cluster
        if cluster not in self.clusters:
            self.clusters.append(cluster)
        return cluster

    async def sub(self, path='/ws/', url=None, ssl=None):
        s = await Subscriber.connect(url or self.cl.url, path, ssl)
        self.subs.append(s)
        return s

    def conn(self, **kw):
        c = self.cl.connect(**kw)
        self.conns.append(c)
        return c

    async def aconn(self, **kw):
        c = await asyncio.to_thread(self.cl.connect, **kw)
        self.conns.append(c)
        return c

    async def cleanup(self):
        for s in self.subs:
            await s.close()
        for c in self.conns:
            # a thread may still be inside a query on c (after a timeout):
            # cancel it first, and close without blocking the event loop
            try:
                c.cancel()
            except Exception:
                pass
            try:
                await asyncio.wait_for(asyncio.to_thread(c.close), 5)
            except Exception:
                pass


# ---------------------------------------------------------------- helpers

def ident(raw):
    """A short identity of an event, to compare sequences compactly."""
    m = json.loads(raw)
    d = m['data']
    if m['event'].startswith('client_visit'):
        return (m['event'], d['device_id'])
    if m['event'] in ('client_create', 'client_update'):
        return (m['event'], d['id'], d['visit_count'])
    if m['event'].startswith('employee_attendance'):
        return (m['event'], d['employee_id'], d['datetime'])
    return (m['event'], d['id'])


POSITION = re.compile(r', "seq": (\d+), "epoch": "([^"\\]*)"\}$')


def position(raw):
    """(seq, epoch) of a message: its last two keys, after event and data."""
    m = POSITION.search(raw)
    if m is None:
        raise Fail('no "seq" and "epoch" at the end of a message: ' + short(raw))
    return int(m.group(1)), m.group(2)


def without_position(raw):
    """The message as the event document describes it: seq and epoch cut."""
    position(raw)
    return POSITION.sub('}', raw)


def resume_path(raw):
    """The /ws/ path that resumes after the event raw."""
    seq, epoch = position(raw)
    return '/ws/?since=%d&epoch=%s' % (seq, epoch)


def epoch_timeline(epoch):
    """(the epoch without its timeline, the timeline): "SYSID-DB-TLI" is a
    position of timeline TLI; pg_ws.wal = off's epochs have none (0)."""
    base, _, tli = epoch.rpartition('-')
    if base.count('-') == 1 and tli.isdigit():
        return base, int(tli)
    return epoch, 0


def check_positions(msgs, who):
    """Every message has a position, strictly increasing, in one epoch
    whose timeline (after a promotion) only goes up."""
    pos = [position(m) for m in msgs]
    bases = {epoch_timeline(e)[0] for _, e in pos}
    check(len(bases) <= 1, '%s: several epochs: %s' % (who, sorted(bases)))
    tlis = [epoch_timeline(e)[1] for _, e in pos]
    check(tlis == sorted(tlis), '%s: the timeline went back: %s' % (who, tlis))
    bad = [i for i in range(1, len(pos)) if pos[i][0] <= pos[i - 1][0]]
    check(not bad, '%s: seq not increasing at message %s: %s'
          % (who, bad[:3], [pos[i - 1:i + 1] for i in bad[:3]]))


def compare_idents(got, expected, who):
    ids = [ident(m) for m in got]
    if ids == expected:
        return
    i = next((k for k, (a, b) in enumerate(zip(ids, expected)) if a != b),
             min(len(ids), len(expected)))
    raise Fail('%s: %d messages, expected %d; first difference at %d'
               % (who, len(ids), len(expected), i),
               '  expected: %s' % (expected[i:i + 5],),
               '  got:      %s' % (ids[i:i + 5],))


def process_rss(pid):
    """(VmRSS, VmHWM) of a process, in bytes: its resident memory now and
    at its peak since the peak was last reset."""
    got = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            name, _, value = line.partition(':')
            if name in ('VmRSS', 'VmHWM'):
                got[name] = int(value.split()[0]) * 1024
    return got['VmRSS'], got['VmHWM']


async def worker_row(conn):
    """(pid, seconds since the pg_ws worker started), or None."""
    rows = await asql(conn, "SELECT pid, extract(epoch FROM clock_timestamp() - backend_start)"
                            " FROM pg_stat_activity WHERE backend_type = 'pg_ws'")
    return (rows[0][0], float(rows[0][1])) if rows else None


async def upgrade_status(url, path):
    """The HTTP status an upgrade to path gets: 101 (the connection is
    closed at once), or what it was refused with (its text if none)."""
    try:
        ws = await ws_connect(url + path, open_timeout=10)
    except Exception as e:
        return getattr(e, 'status_code', None) or str(e)
    await ws.close()
    return 101


async def restart_worker(node):
    """Terminate node's pg_ws worker and wait until the next one listens,
    so that what the old one held in memory is gone."""
    conn = await asyncio.to_thread(node.connect)
    try:
        pid = (await worker_row(conn))[0]
        mark = node.log_size()
        await asql(conn, ("SELECT pg_terminate_backend(%s)", (pid,)))

        async def next_worker():
            row = await worker_row(conn)
            return row if row and row[0] != pid else None

        await poll('a new pg_ws worker', next_worker, timeout=30)
        await node.wait_listening(node.wsport, 30, since=mark)
    finally:
        conn.close()


async def port_open(port, timeout):
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', port), 1)
            w.close()
            return
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise Fail('port %d still refuses connections after %.0f s' % (port, timeout))
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------- TAP

async def _run_tests(tests, make_ctx, failed_clusters):
    failed = 0
    for k, (name, fn, timeout) in enumerate(tests, 1):
        ctx = make_ctx()
        diag, note, skip = [], None, None
        try:
            note = await asyncio.wait_for(fn(ctx), timeout)
        except Skip as e:
            skip = str(e)
        except Fail as e:
            diag = str(e).splitlines()
        except asyncio.TimeoutError:
            diag = ['timed out after %d s' % timeout]
        except Exception:
            diag = traceback.format_exc().splitlines()
        finally:
            await ctx.cleanup()
        if diag:
            failed += 1
            failed_clusters.extend(c for c in ctx.clusters if c not in failed_clusters)
        print('%s %d - %s%s' % ('not ok' if diag else 'ok', k, name,
                                ' # skip ' + skip if skip else ''))
        for line in diag or ([note] if note else []):
            print('# ' + line)
        sys.stdout.flush()
    return failed


def _print_log_tails(clusters, n=60):
    for cl in clusters:
        print('# server log tail (%s, %s):' % (cl.name, cl.dir))
        for line in cl.log_tail(n):
            print('#   ' + line.rstrip())


def run_tap(tests, make_ctx, setup=None, watchdog_seconds=280):
    """Run tests, a list of (name, async fn(ctx), timeout in seconds), as
    TAP and exit: 0 only if every test passed.  make_ctx() makes each
    test's Ctx; setup, an async function, runs first, and its failure bails
    out.  Every Cluster made is stopped and removed at the end, and by the
    watchdog if the whole run outlasts watchdog_seconds."""
    print('1..%d' % len(tests))
    sys.stdout.flush()
    done = threading.Event()

    def watchdog():
        # a last resort against a hang no per-test timeout could break
        if not done.wait(watchdog_seconds):
            print('Bail out! the run took longer than %d s' % watchdog_seconds)
            _print_log_tails(Cluster.instances)
            sys.stdout.flush()
            Cluster.cleanup_all()
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    status = 1
    failed_clusters = []
    t0 = time.monotonic()
    try:
        loop = asyncio.new_event_loop()
        if setup is not None:
            try:
                loop.run_until_complete(setup())
            except Exception as e:
                print('Bail out! setup failed: %s' % str(e).replace('\n', ' | '))
                failed_clusters = list(Cluster.instances)
                raise SystemExit
        failed = loop.run_until_complete(_run_tests(tests, make_ctx, failed_clusters))
        print('# %d of %d tests failed; %.1f s' % (failed, len(tests), time.monotonic() - t0))
        status = 1 if failed else 0
    except SystemExit:
        pass
    except Exception:
        print('Bail out! %s' % traceback.format_exc().replace('\n', ' | '))
        failed_clusters = list(Cluster.instances)
    finally:
        if status != 0:
            _print_log_tails(failed_clusters)
        Cluster.cleanup_all()
        done.set()
        sys.stdout.flush()
    # worker threads of a timed-out test may still be blocked; do not wait
    os._exit(status)
