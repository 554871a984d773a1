#!/usr/bin/python3
"""pg_ws on the stack people run PostgreSQL on: three nodes managed by
Patroni, a single-node etcd as its store, HAProxy in front.

Everything runs on loopback on free ports, started by this suite and
stopped by it whatever happens (every process it started, by process
group and by its directory); PostgreSQL and Patroni run as the postgres
user, with the binaries of PG_WS_PGBIN (Patroni's postgresql.bin_dir).
Every node has pg_ws in shared_preload_libraries, fsync and
synchronous_commit on, and Patroni in synchronous mode with both standbys
synchronous (synchronous_node_count: 2): see the README's "Running on a
cluster" for why both.  HAProxy has two frontends:

  - serving: pg_ws's WebSocket port of every node whose GET /health
    answers 200 (primary or standby), least connections first;
  - writer: PostgreSQL's port of the primary only, checked through
    Patroni's REST API GET /primary (the leader lock, not only "not in
    recovery": a primary that lost the lock is demoted).

A writer commits one row at a time through the writer port for the whole
run, and 200 subscribers connected through the serving port resume with
their last seq and epoch whenever they are disconnected.  Then:

  a. routing: the writer port reaches the primary, the serving port every
     node, each node's /health says its role;
  b. a planned `patronictl switchover`;
  c. SIGKILL of the primary's postmaster: Patroni fails over
     (primary_start_timeout: 0); 30 subscribers are first put on the
     primary (they resume on its own pg_ws port), as HAProxy's leastconn
     may have left none there, and every one of them must resume;
  d. the old primary rejoins as a standby (use_pg_rewind) and serves;
  e. SIGKILL of a standby's postmaster: Patroni starts it again;
  f. asynchronous replication (PATCH /config: synchronous_mode false,
     synchronous_commit local): 30 other subscribers put on the primary,
     its walsenders stopped (SIGSTOP) once the standbys have every row
     committed so far, rows committed that only the primary's subscribers
     see, then SIGKILL of its postmaster (and of the stopped walsenders):
     Patroni fails over to a standby that lacks them.  Every subscriber
     resumes exactly or got one resync_required past the fork naming it
     (the switch point of the new timeline's history file; a standby still
     on the old timeline after its 10 s wait for replay knows no fork yet
     and names none), after which its stream is
     the new primary's history from that message's seq on; every one of
     the 30 got it, some committed rows are lost (else the scenario proved
     nothing), and the old primary rejoins with pg_rewind.  Then
     synchronous mode again, the cluster whole;
  g. the figures of every scenario.

(a) to (e) run in synchronous mode, (f) after them.  After each, every
subscriber's stream is compared with the authority, the current primary's
history (a fresh subscriber resuming on it from before the first
subscriber's first event): each equals its slice of it exactly, nothing
lost, doubled or reordered, no resync_required (synchronous mode; in (f)
as said there); every row whose COMMIT returned is in it (in (f): but
those committed on the old primary after its standbys were cut off), and
every event of it is a row of the table.  Each test reports how long
subscribers were without a stream (from losing their connection to their first event after
resuming) and how many resumed.  Nothing waits for a fixed time: each
step polls for its condition.

Run as root: /usr/bin/python3 test/e2e/test_cluster.py   (TAP output)
"""

import asyncio
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg2
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PGBIN, Cluster, Ctx, check, free_port, poll,  # noqa: E402
                     position, run_tap, short, ws_connect)
import websockets  # noqa: E402

WATCHDOG_SECONDS = 300
SUBSCRIBERS = 200
# subscribers a failover scenario puts on the primary first
MOVED = 30
NODES = ('node1', 'node2', 'node3')
EMP = "INSERT INTO employee (id, first_name, last_name) VALUES (%s, 'c', 'c')"


def patroni_config(stack, node):
    """The patroni.yml of node (README: "Running on a cluster")."""
    return {
        'scope': 'pg_ws_test',
        'namespace': '/pg_ws_test/',
        'name': node.name,
        'restapi': {'listen': '127.0.0.1:%d' % node.restport,
                    'connect_address': '127.0.0.1:%d' % node.restport},
        'etcd3': {'hosts': ['127.0.0.1:%d' % stack.etcd_port]},
        'bootstrap': {
            'dcs': {
                'ttl': 20, 'loop_wait': 1, 'retry_timeout': 5,
                # a crashed primary is not restarted in place: fail over
                'primary_start_timeout': 0,
                'synchronous_mode': True,
                # every standby synchronous: see the README
                'synchronous_node_count': 2,
                'postgresql': {
                    'use_pg_rewind': True,
                    'use_slots': True,
                    'parameters': {
                        'shared_preload_libraries': 'pg_ws',
                        'synchronous_commit': 'on',
                        'fsync': 'on',
                        'wal_keep_size': '1GB',
                        'hot_standby': 'on',
                        'pg_ws.max_connections': 500,
                        # behind HAProxy every subscriber has its address
                        'pg_ws.max_wal_resumes_per_address': 0,
                    },
                },
            },
            'initdb': [{'encoding': 'UTF8'}, {'locale': 'C'}],
        },
        'postgresql': {
            'listen': '127.0.0.1:%d' % node.pgport,
            'connect_address': '127.0.0.1:%d' % node.pgport,
            'data_dir': node.data,
            'bin_dir': PGBIN,
            'pgpass': os.path.join(node.dir, 'pgpass'),
            'authentication': {
                'superuser': {'username': 'postgres', 'password': 'pg_ws'},
                'replication': {'username': 'replicator', 'password': 'pg_ws'},
            },
            'parameters': {
                'unix_socket_directories': node.dir,
                'pg_ws.port': node.wsport,
                'pg_ws.listen_addresses': '127.0.0.1',
                'logging_collector': 'on',
                'log_directory': node.dir,
                'log_filename': 'postgresql.log',
                'log_line_prefix': '%m [%p] %b ',
            },
            'pg_hba': ['local all all trust',
                       'host all all 127.0.0.1/32 trust',
                       'host replication all 127.0.0.1/32 trust'],
        },
    }


def haproxy_config(stack):
    """haproxy.cfg (README: "Running on a cluster")."""
    serving = '\n'.join('    server %s 127.0.0.1:%d check' % (n.name, n.wsport)
                        for n in stack.nodes)
    writer = '\n'.join('    server %s 127.0.0.1:%d check port %d' % (n.name, n.pgport, n.restport)
                       for n in stack.nodes)
    return '''global
    maxconn 4000

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 2s
    # a server that fails its check is out at once, its sessions closed:
    # subscribers resume elsewhere
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions

# WebSocket subscribers: any node whose pg_ws serves
frontend serving
    bind 127.0.0.1:%(serving)d
    default_backend pg_ws
backend pg_ws
    balance leastconn
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
%(serving_servers)s

# writers: PostgreSQL on the primary only (Patroni's REST API)
frontend writer
    bind 127.0.0.1:%(writer)d
    default_backend primary
backend primary
    option httpchk
    http-check send meth GET uri /primary ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
%(writer_servers)s
''' % {'serving': stack.serving_port, 'writer': stack.writer_port,
       'serving_servers': serving, 'writer_servers': writer}


class Node:
    def __init__(self, stack, name):
        self.name = name
        self.dir = os.path.join(stack.dir, name)
        self.data = os.path.join(self.dir, 'data')
        self.pgport, self.wsport, self.restport = stack.ports(3)
        self.config = os.path.join(self.dir, 'patroni.yml')
        self.proc = None

    @property
    def url(self):
        return 'ws://127.0.0.1:%d' % self.wsport

    def connect(self, timeout=3):
        c = psycopg2.connect(host='127.0.0.1', port=self.pgport, user='postgres',
                             dbname='postgres', connect_timeout=timeout,
                             options='-c statement_timeout=30s')
        c.autocommit = True
        return c

    def query(self, q, *args):
        """q's first row on this node, or None when it does not answer."""
        try:
            c = self.connect()
        except psycopg2.Error:
            return None
        try:
            with c.cursor() as cur:
                cur.execute(q, args)
                return cur.fetchone()
        except psycopg2.Error:
            return None
        finally:
            c.close()

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, 'postmaster.pid')) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None


class Stack:
    """etcd, three Patroni nodes and HAProxy, all under one directory.
    It stands in Cluster.instances, so that run_tap() and its watchdog stop
    it and show its logs as they do for a Cluster."""

    def __init__(self):
        self.name = 'patroni cluster'
        self.dir = tempfile.mkdtemp(prefix='pg_ws_cluster.')
        self.taken = set()
        self.etcd_port, self.etcd_peer, self.serving_port, self.writer_port = self.ports(4)
        self.nodes = [Node(self, n) for n in NODES]
        self.procs = []
        self.started = True
        Cluster.instances.append(self)

    def ports(self, n):
        got = []
        while len(got) < n:
            p = free_port()
            if p not in self.taken:
                self.taken.add(p)
                got.append(p)
        return got

    def spawn(self, name, args, as_postgres=True):
        log = open(os.path.join(self.dir, name + '.log'), 'ab')
        if as_postgres:
            args = ['runuser', '-u', 'postgres', '--'] + args
        p = subprocess.Popen(args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self):
        pw = pwd.getpwnam('postgres')
        for d in [self.dir] + [n.dir for n in self.nodes]:
            os.makedirs(d, exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.spawn('etcd', [
            'etcd', '--name', 'etcd1', '--data-dir', os.path.join(self.dir, 'etcd'),
            '--listen-client-urls', 'http://127.0.0.1:%d' % self.etcd_port,
            '--advertise-client-urls', 'http://127.0.0.1:%d' % self.etcd_port,
            '--listen-peer-urls', 'http://127.0.0.1:%d' % self.etcd_peer,
            '--initial-advertise-peer-urls', 'http://127.0.0.1:%d' % self.etcd_peer,
            '--initial-cluster', 'etcd1=http://127.0.0.1:%d' % self.etcd_peer,
            '--initial-cluster-state', 'new'])
        for n in self.nodes:
            with open(n.config, 'w') as f:
                yaml.safe_dump(patroni_config(self, n), f, default_flow_style=False)
            os.chown(n.config, pw.pw_uid, pw.pw_gid)
        cfg = os.path.join(self.dir, 'haproxy.cfg')
        with open(cfg, 'w') as f:
            f.write(haproxy_config(self))
        self.spawn('haproxy', ['haproxy', '-db', '-f', cfg])

    def start_patroni(self, node):
        node.proc = self.spawn(node.name + '.patroni', ['patroni', node.config])

    def stop(self):
        if not self.started:
            return
        self.started = False
        # Patroni first, so that it starts nothing again
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        for n in self.nodes:
            pid = n.postmaster_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        # anything else started from this directory (postmasters whose
        # pid file Patroni had replaced; their children follow them)
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmd = f.read()
            except OSError:
                continue
            if self.dir.encode() in cmd:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except Exception:
                pass

    def remove(self):
        # KEEP_WORK=1 (as test/run_tests.sh's) keeps the logs to read
        if not os.environ.get('KEEP_WORK'):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=60):
        lines = []
        logs = ['etcd.log', 'haproxy.log'] + ['%s.patroni.log' % x.name for x in self.nodes] + \
            ['%s/postgresql.log' % x.name for x in self.nodes]
        for name in logs:
            try:
                with open(os.path.join(self.dir, name), errors='replace') as f:
                    tail = f.readlines()[-(n // 3):]
            except OSError:
                continue
            lines += ['--- %s\n' % name] + tail
        return lines

    def patronictl(self, *args):
        r = subprocess.run(['runuser', '-u', 'postgres', '--', 'patronictl', '-c',
                            self.nodes[0].config, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        check(r.returncode == 0, 'patronictl %s failed:' % ' '.join(args), *r.stdout.splitlines()[-10:])
        return r.stdout

    def writer_connect(self):
        c = psycopg2.connect(host='127.0.0.1', port=self.writer_port, user='postgres',
                             dbname='postgres', connect_timeout=3,
                             options='-c statement_timeout=30s')
        c.autocommit = True
        return c

    def roles(self):
        """{name: 'primary' | 'standby' | None (not answering)}."""
        got = {}
        for n in self.nodes:
            r = n.query('SELECT pg_is_in_recovery()')
            got[n.name] = None if r is None else ('standby' if r[0] else 'primary')
        return got

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)


def http_get(port, path):
    """(status, JSON body or None) of GET path on 127.0.0.1:port."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=3) as r:
            return r.status, json.loads(r.read() or b'null')
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b'null')
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


def patroni_config_patch(node, change):
    """PATCH /config of Patroni's REST API on node: the cluster's dynamic
    configuration (as patronictl edit-config does)."""
    req = urllib.request.Request('http://127.0.0.1:%d/config' % node.restport,
                                 data=json.dumps(change).encode(), method='PATCH',
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=10) as r:
        check(r.status == 200, 'PATCH /config %s: %s' % (change, r.status))


def lsn_int(text):
    hi, lo = text.split('/')
    return (int(hi, 16) << 32) | int(lo, 16)


# ------------------------------------------------------------ the load

class Writer(threading.Thread):
    """Commits one row at a time through the writer port, reconnecting
    whenever the connection goes; committed lists the ids whose COMMIT
    returned."""

    def __init__(self, stack, first):
        super().__init__(daemon=True)
        self.stack = stack
        self.next = first
        self.committed = []
        self.ports = []             # the PostgreSQL port each committed on
        self.errors = 0
        self.stop = threading.Event()

    def run(self):
        conn = None
        port = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.stack.writer_connect()
                    with conn.cursor() as cur:
                        cur.execute('SELECT inet_server_port()')
                        port = cur.fetchone()[0]
                with conn.cursor() as cur:
                    cur.execute(EMP, (self.next,))
                self.ports.append(port)
                self.committed.append(self.next)
                self.next += 1
                self.stop.wait(0.03)
            except psycopg2.Error:
                # the row may or may not be there: not counted, never reused
                self.next += 1
                self.errors += 1
                try:
                    conn and conn.close()
                except Exception:
                    pass
                conn = None
                self.stop.wait(0.1)


class Resumer:
    """A subscriber through the serving port that resumes with its last
    seq and epoch whenever it is disconnected, as the README's client does.
    got: (seq, id) of every event; resyncs: (how many events it had got
    then, the message) of each resync_required; outages: seconds from
    losing a connection to the first event after resuming.  move_to(url)
    makes it resume once at url (a node's own pg_ws port) rather than
    through the serving port: the failover scenarios put subscribers on
    the primary so, as HAProxy's leastconn may leave none there."""

    def __init__(self, url):
        self.url = url
        self.got = []
        self.resyncs = []
        self.last = None
        self.connects = 0
        self.outages = []
        self.down_since = None
        self.stopping = False
        self.ws = None
        self.next_url = None
        self.at = None              # the URL of the connection, once it has an event
        self.task = asyncio.create_task(self.run())

    async def move_to(self, url):
        self.next_url = url
        self.at = None
        if self.ws is not None:
            await self.ws.close()

    async def run(self):
        while not self.stopping:
            path = '/ws/' if self.last is None else '/ws/?since=%d&epoch=%s' % self.last
            url, self.next_url = self.next_url or self.url, None
            try:
                ws = await ws_connect(url + path, ping_interval=None, max_size=None,
                                      max_queue=None, close_timeout=1, open_timeout=5)
            except Exception:
                if self.down_since is None:
                    self.down_since = time.monotonic()
                await asyncio.sleep(0.2)
                continue
            self.connects += 1
            self.ws = ws
            try:
                async for m in ws:
                    seq, epoch = position(m)
                    ev = json.loads(m)
                    if ev['event'] == 'resync_required':
                        self.resyncs.append((len(self.got), ev))
                    else:
                        self.got.append((seq, ev['data']['id']))
                    self.at = url
                    if self.down_since is not None:
                        self.outages.append(time.monotonic() - self.down_since)
                        self.down_since = None
                    self.last = (seq, epoch)
            except websockets.ConnectionClosed:
                pass
            except Exception:
                pass
            finally:
                self.ws = None
                self.at = None
                await ws.close()
            if self.down_since is None:
                self.down_since = time.monotonic()

    async def close(self):
        self.stopping = True
        self.task.cancel()


STATE = {}


async def setup():
    stack = Stack()
    STATE['stack'] = stack
    await asyncio.to_thread(stack.start)
    for n in stack.nodes:
        stack.start_patroni(n)

    async def one_primary():
        roles = await asyncio.to_thread(stack.roles)
        prim = [k for k, v in roles.items() if v == 'primary']
        return prim[0] if len(prim) == 1 and list(roles.values()).count('standby') == 2 else None

    leader = await poll('Patroni bootstraps a primary and two standbys', one_primary, timeout=120,
                        every=0.5)
    conn = await asyncio.to_thread(stack.writer_connect)
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE EXTENSION pg_ws')
    finally:
        conn.close()

    async def all_sync():
        r = await asyncio.to_thread(stack.node(leader).query,
                                    "SELECT count(*) FROM pg_stat_replication"
                                    " WHERE sync_state IN ('sync', 'quorum')")
        return r and r[0] == 2

    await poll('both standbys synchronous', all_sync, timeout=60, every=0.3)

    async def serving():
        st = [await asyncio.to_thread(http_get, n.wsport, '/health') for n in stack.nodes]
        return all(s == 200 for s, _ in st)

    await poll('pg_ws serves on every node', serving, timeout=60, every=0.3)
    STATE['leader'] = leader


async def current_primary(stack, other_than=None):
    """The one primary once it is settled and the writer port reaches it."""
    async def settled():
        roles = await asyncio.to_thread(stack.roles)
        prim = [k for k, v in roles.items() if v == 'primary']
        if len(prim) != 1 or prim[0] == other_than:
            return None
        try:
            c = await asyncio.to_thread(stack.writer_connect)
        except psycopg2.Error:
            return None
        try:
            with c.cursor() as cur:
                cur.execute('SELECT inet_server_port(), pg_is_in_recovery()')
                port, rec = cur.fetchone()
        except psycopg2.Error:
            return None
        finally:
            c.close()
        node = stack.node(prim[0])
        if port != node.pgport or rec:
            return None
        status, _ = await asyncio.to_thread(http_get, node.wsport, '/health/primary')
        return node if status == 200 else None

    return await poll('one primary, reached through the writer port, its pg_ws serving', settled, timeout=90,
                      every=0.3)


async def settled(stack):
    """Wait until the cluster is whole again: one primary that the writer
    port reaches, both standbys streaming from it as synchronous standbys
    (so that Patroni may fail over to either), pg_ws serving on all three."""
    primary = await current_primary(stack)

    async def whole():
        r = await asyncio.to_thread(primary.query,
                                    "SELECT count(*) FROM pg_stat_replication WHERE"
                                    " state = 'streaming' AND sync_state IN ('sync', 'quorum')")
        if not (r and r[0] == 2):
            return None
        # and Patroni knows it: a switchover's candidate must be a
        # synchronous standby in its eyes, or it is refused
        _, cl = await asyncio.to_thread(http_get, primary.restport, '/cluster')
        if not cl or sum(1 for m in cl.get('members', ())
                         if m.get('role') == 'sync_standby'
                         and m.get('state') in ('running', 'streaming')) != 2:
            return None
        st = [await asyncio.to_thread(http_get, n.wsport, '/health') for n in stack.nodes]
        return all(s == 200 for s, _ in st)

    await poll('both standbys synchronous again and pg_ws serving everywhere', whole,
               timeout=90, every=0.3)
    return primary


async def first_event(url, path='/ws/', timeout=30):
    """The first event a fresh subscriber gets: (seq, epoch, id)."""
    ws = await ws_connect(url + path, ping_interval=None, max_size=None, open_timeout=5)
    try:
        m = await asyncio.wait_for(ws.recv(), timeout)
    finally:
        await ws.close()
    seq, epoch = position(m)
    return seq, epoch, json.loads(m)['data']['id']


async def authority(stack, primary, upto):
    """The primary's history after the start, up to position upto:
    [(seq, id)], read by a fresh subscriber resuming from the start."""
    seq0, epoch0 = STATE['start']
    ws = await ws_connect(primary.url + '/ws/?since=%d&epoch=%s' % (seq0, epoch0),
                          ping_interval=None, max_size=None, max_queue=None, open_timeout=5)
    got = []
    try:
        while not got or got[-1][0] < upto:
            m = await asyncio.wait_for(ws.recv(), 30)
            seq, _ = position(m)
            ev = json.loads(m)
            check(ev['event'] != 'resync_required',
                  'the authority (a fresh subscriber resuming on the primary from the start) got'
                  ' %s' % short(m))
            got.append((seq, ev['data']['id']))
    finally:
        await ws.close()
    return [g for g in got if g[0] <= upto]


def slice_of(hist, mine):
    """None when mine is hist from mine's first event on; else what
    differs."""
    index = {seq: k for k, (seq, _) in enumerate(hist)}
    start = index.get(mine[0][0]) if mine else None
    if start is not None and hist[start:] == mine:
        return None
    d = next((j for j, (a, b) in enumerate(zip(hist[start or 0:], mine)) if a != b),
             min(len(hist) - (start or 0), len(mine)))
    return ('%d events, its slice of the history %s; first difference at %d: got %s,'
            ' history %s' % (len(mine), 'missing its first event' if start is None
                             else 'has %d' % (len(hist) - start),
                             d, mine[d:d + 3], hist[(start or 0) + d:(start or 0) + d + 3]))


def resynced_right(hist, s, fork, parent):
    """None when s had events past fork that the primary's history hist
    does not hold, got one resync_required after the last of them, and its
    stream is otherwise hist's: before the fork its slice of it, after the
    resync's seq all of it; else what is wrong.  The resync_required names
    the fork, or was sent by a standby still on the old timeline parent
    (its epoch says so) that had waited its 10 seconds for replay to reach
    the subscriber's position (README "Positions and resuming"): that one
    knows no fork yet."""
    if len(s.resyncs) != 1:
        return '%d resync_required: %s' % (len(s.resyncs), [short(r) for _, r in s.resyncs][:2])
    n, ev = s.resyncs[0]
    d = ev['data']
    before = s.got[:n]
    if d.get('fork') != fork and not ('fork' not in d and
                                      int(ev['epoch'].split('-')[2]) == parent):
        return ('resync_required names fork %s, the history file %d (from timeline %d): %s'
                % (d.get('fork'), fork, parent, short(ev)))
    if not before or d['since'] != before[-1][0] or d['since'] < fork:
        return ('resync_required since %s, its last event before it %s: want that, past the'
                ' fork %d' % (d['since'], before[-1:], fork))
    ids = {i for _, i in hist}
    gone = [g for g in before if g[0] >= fork]
    if any(i in ids for _, i in gone):
        return 'events past the fork %d that the primary has: %s' % (fork, gone[:5])
    kept = [g for g in before if g[0] < fork]
    if kept:
        wrong = slice_of([h for h in hist if h[0] < fork], kept)
        if wrong:
            return 'before the fork: ' + wrong
    after = [g for g in s.got[n:] if g[0] <= hist[-1][0]]
    want = [h for h in hist if h[0] > ev['seq']]
    if after != want:
        return ('after the resync (seq %d): %d events, the history has %d after it; first %s,'
                ' history %s' % (ev['seq'], len(after), len(want), after[:3], want[:3]))
    return None


async def verify(stack, what, t0, fork=None, parent=None, lost_ok=()):
    """Every subscriber's stream is its slice of the primary's history; the
    figures of the scenario that began at t0 (monotonic).  With fork (the
    switch point of an asynchronous failover's new timeline, which forked
    off timeline parent), a subscriber that had events past it may instead
    have got one resync_required there, after which its stream is the
    history from that message's seq on (resynced_right); lost_ok: committed
    rows that may be missing (committed on the old primary after its
    standbys were cut off)."""
    primary = await current_primary(stack)
    subs = STATE['subs']
    writer = STATE['writer']
    committed_before = set(writer.committed) - set(lost_ok)
    # the primary's newest position now, past every event any subscriber
    # has (events of the old primary that it lacks included): every
    # subscriber must reach it
    seen = max((g[0] for s in subs for g in s.got), default=0)

    async def newest():
        try:
            seq, _, _ = await first_event(primary.url)
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
            # a promoted node's worker restarts once it sees the promotion:
            # its subscribers are closed, and this one tries again
            return None
        return seq if seq > seen else None

    upto = await poll('the primary\'s positions pass %d' % seen, newest, timeout=30, every=0)

    async def all_caught_up():
        return all(s.got and s.got[-1][0] >= upto for s in subs)

    try:
        await poll('all %d subscribers reach the primary\'s position %d' % (len(subs), upto),
                   all_caught_up, timeout=60, every=0.2)
    except Exception:
        behind = [s for s in subs if not (s.got and s.got[-1][0] >= upto)]
        raise AssertionError('%d subscribers behind position %d; e.g. last %s, %d connects, '
                             'down since %s' % (len(behind), upto, behind[0].got[-1:],
                                               behind[0].connects, behind[0].down_since))
    hist = await authority(stack, primary, upto)
    hist_ids = [i for _, i in hist]
    STATE['hist'] = hist
    check(len(set(hist_ids)) == len(hist_ids), '%s: the primary\'s history has an id twice' % what)
    # nothing lost: every COMMIT that returned before upto was chosen
    lost = sorted(i for i in committed_before if i not in set(hist_ids))
    check(not lost, '%s: %d committed rows have no event in the primary\'s history: %s'
          % (what, len(lost), lost[:10]))
    # no phantom: every event is a row of the table
    r = await asyncio.to_thread(primary.query, 'SELECT count(*) FROM employee WHERE id = ANY(%s)',
                                hist_ids)
    check(r is not None and r[0] == len(hist_ids), '%s: %s of %d events are rows of the table'
          % (what, r and r[0], len(hist_ids)))
    bad = []
    for k, s in enumerate(subs):
        if s.resyncs and fork is None:
            wrong = 'got resync_required: %s' % short(s.resyncs[0][1])
        elif s.resyncs:
            wrong = resynced_right(hist, s, fork, parent)
        else:
            wrong = slice_of(hist, [g for g in s.got if g[0] <= upto])
        if wrong:
            bad.append('subscriber %d: %s' % (k, wrong))
    check(not bad, '%s: %d of %d subscribers differ from the primary\'s history'
          % (what, len(bad), len(subs)), *bad[:5])
    # the figures since t0
    resumed = [s for s in subs if s.outages and STATE['outages_seen'].get(id(s), 0) < len(s.outages)]
    resynced = [s for s in subs if s.resyncs and id(s) not in STATE['resynced']]
    STATE['resynced'].update(id(s) for s in resynced)
    STATE['resumed'] = {id(s) for s in resumed}
    outages = []
    for s in subs:
        seen = STATE['outages_seen'].get(id(s), 0)
        outages += s.outages[seen:]
        STATE['outages_seen'][id(s)] = len(s.outages)
    fig = {'what': what, 'resumed': len(resumed), 'exact': len(resumed) - len(resynced),
           'resynced': len(resynced),
           'resynced_without_fork': sum(1 for s in resynced if 'fork' not in s.resyncs[0][1]['data']),
           'subscribers': len(subs), 'events': len(hist),
           'outage_median': statistics.median(outages) if outages else 0.0,
           'outage_max': max(outages) if outages else 0.0,
           'took': time.monotonic() - t0, 'primary': primary.name}
    STATE['figures'].append(fig)
    if fork is None:
        return ('%(resumed)d of %(subscribers)d subscribers resumed, every one exactly (no'
                ' resync); without a stream for %(outage_median).1f s median, %(outage_max).1f s'
                ' at most; %(events)d events in the history; primary %(primary)s' % fig)
    return ('%(resumed)d of %(subscribers)d subscribers resumed: %(exact)d exactly,'
            ' %(resynced)d with resync_required (%(resynced_without_fork)d of them from a standby'
            ' that had not followed the new timeline yet, without the fork); without a stream for'
            ' %(outage_median).1f s median, %(outage_max).1f s at most; %(events)d events in the'
            ' history; primary %(primary)s' % fig)


async def put_on_primary(stack, primary, subs):
    """subs resume directly on the primary's pg_ws port (they are on it
    when this returns): HAProxy's leastconn may have left none there, and a
    failover must touch some.  Their move is not counted in the next
    scenario's figures."""
    for s in subs:
        await s.move_to(primary.url)

    async def there():
        return all(s.at == primary.url for s in subs)

    await poll('%d subscribers on the primary %s' % (len(subs), primary.name), there,
               timeout=30, every=0.1)
    for s in subs:
        STATE['outages_seen'][id(s)] = len(s.outages)


# ------------------------------------------------------------ the tests

async def test_routing(ctx):
    """a. the writer port reaches the primary, the serving port every node."""
    stack = STATE['stack']
    primary = await current_primary(stack)
    for n in stack.nodes:
        role = 'primary' if n is primary else 'standby'
        status, body = await asyncio.to_thread(http_get, n.wsport, '/health')
        check(status == 200 and body['role'] == role, '%s /health: %s %s' % (n.name, status, body))
        status, _ = await asyncio.to_thread(http_get, n.wsport, '/health/primary')
        check(status == (200 if role == 'primary' else 503),
              '%s /health/primary: %s' % (n.name, status))
    # the start: a position before every subscriber's first event
    ws = await ws_connect(primary.url + '/ws/', ping_interval=None, open_timeout=5)
    try:
        conn = await asyncio.to_thread(stack.writer_connect)
        try:
            with conn.cursor() as cur:
                cur.execute(EMP, (1,))
        finally:
            conn.close()
        m = await asyncio.wait_for(ws.recv(), 30)
    finally:
        await ws.close()
    STATE['start'] = position(m)
    writer = Writer(stack, 1000)
    STATE['writer'] = writer
    STATE['figures'] = []
    STATE['outages_seen'] = {}
    STATE['resynced'] = set()
    writer.start()
    url = 'ws://127.0.0.1:%d' % stack.serving_port
    STATE['subs'] = [Resumer(url) for _ in range(SUBSCRIBERS)]

    async def spread():
        counts = []
        for n in stack.nodes:
            _, body = await asyncio.to_thread(http_get, n.wsport, '/health')
            counts.append(body['subscribers'] if body else 0)
        return counts if sum(counts) >= SUBSCRIBERS and min(counts) > 0 else None

    counts = await poll('the serving port spreads the subscribers over every node', spread,
                        timeout=60, every=0.3)
    await verify(stack, 'routing', time.monotonic())
    return 'subscribers per node %s; writes reach %s' % (counts, primary.name)


async def test_switchover(ctx):
    """b. patronictl switchover."""
    stack = STATE['stack']
    old = await settled(stack)
    cand = next(n for n in stack.nodes if n is not old)
    t0 = time.monotonic()
    out = await asyncio.to_thread(stack.patronictl, 'switchover', '--leader', old.name,
                                  '--candidate', cand.name, '--force')
    check('Successfully' in out, 'patronictl switchover:', *out.splitlines()[-5:])
    new = await current_primary(stack, other_than=old.name)
    check(new is cand, 'switchover to %s, but %s is the primary' % (cand.name, new.name))
    STATE['switch_took'] = time.monotonic() - t0
    return await verify(stack, 'switchover %s -> %s' % (old.name, new.name), t0)


async def test_failover(ctx):
    """c. SIGKILL of the primary's postmaster."""
    stack = STATE['stack']
    old = await settled(stack)
    moved = STATE['subs'][:MOVED]
    await put_on_primary(stack, old, moved)
    pid = old.postmaster_pid()
    check(pid, 'no postmaster.pid on %s' % old.name)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    new = await current_primary(stack, other_than=old.name)
    STATE['killed_primary'] = old
    STATE['failover_took'] = time.monotonic() - t0
    note = await verify(stack, 'failover %s -> %s' % (old.name, new.name), t0)
    stayed = [k for k, s in enumerate(moved) if id(s) not in STATE['resumed']]
    check(not stayed, '%d of the %d subscribers on the primary did not resume'
          % (len(stayed), MOVED))
    return note


async def rejoined(stack, old, primary, log_at=0):
    """Wait until the old primary streams from primary again and its pg_ws
    serves as a standby; whether Patroni ran pg_rewind for it (its log from
    byte log_at on says so)."""
    async def streaming():
        r = await asyncio.to_thread(primary.query,
                                    "SELECT count(*) FROM pg_stat_replication WHERE"
                                    " application_name = %s AND state = 'streaming'", old.name)
        if not (r and r[0] == 1):
            return None
        status, body = await asyncio.to_thread(http_get, old.wsport, '/health')
        return body if status == 200 and body['role'] == 'standby' else None

    await poll('%s streams from %s again and its pg_ws serves' % (old.name, primary.name),
               streaming, timeout=90, every=0.3)
    with open(os.path.join(stack.dir, old.name + '.patroni.log'), errors='replace') as f:
        f.seek(log_at)
        return any('pg_rewind' in line and 'running' in line.lower() for line in f)


async def test_rejoin(ctx):
    """d. the old primary rejoins as a standby and serves."""
    stack = STATE['stack']
    old = STATE.get('killed_primary')
    check(old is not None, 'no primary was killed (test c failed)')
    t0 = time.monotonic()
    primary = await current_primary(stack)

    rewound = await rejoined(stack, old, primary)
    # some subscribers move to it: kill theirs on the busiest other standby?
    # no: resuming subscribers spread by least connections already reach it
    note = await verify(stack, '%s rejoined' % old.name, t0)
    return '%s rejoined (%s) in %.1f s; %s' % (old.name, 'pg_rewind ran' if rewound
                                                else 'no pg_rewind needed',
                                                time.monotonic() - t0, note)


async def test_standby_kill(ctx):
    """e. SIGKILL of a standby's postmaster: Patroni starts it again."""
    stack = STATE['stack']
    primary = await settled(stack)
    # the standby with the most subscribers
    load = {}
    for n in stack.nodes:
        if n is not primary:
            _, body = await asyncio.to_thread(http_get, n.wsport, '/health')
            load[n.name] = body['subscribers'] if body else 0
    victim = stack.node(max(load, key=load.get))
    pid = victim.postmaster_pid()
    check(pid, 'no postmaster.pid on %s' % victim.name)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    async def back():
        status, body = await asyncio.to_thread(http_get, victim.wsport, '/health')
        r = await asyncio.to_thread(victim.query, 'SELECT pg_postmaster_start_time() > now() - '
                                    "interval '5 min', pg_is_in_recovery()")
        return status == 200 and victim.postmaster_pid() != pid and r and r[1]

    await poll('%s restarted by Patroni, serving' % victim.name, back, timeout=90, every=0.3)
    return await verify(stack, 'standby %s killed' % victim.name, t0)


async def test_async_failover(ctx):
    """f. asynchronous replication: the standbys cut off, events past them
    seen by subscribers on the primary, the primary killed."""
    stack = STATE['stack']
    writer = STATE['writer']
    old = await settled(stack)
    await asyncio.to_thread(patroni_config_patch, old, {
        'synchronous_mode': False,
        'postgresql': {'parameters': {'synchronous_commit': 'local'}}})

    async def asynchronous():
        r = await asyncio.to_thread(
            old.query, "SELECT current_setting('synchronous_commit'),"
            " current_setting('synchronous_standby_names'), (SELECT count(*)"
            " FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'async')")
        return r == ('local', '', 2)

    await poll('Patroni turns to asynchronous replication', asynchronous, timeout=30, every=0.2)
    moved = STATE['subs'][MOVED:2 * MOVED]
    await put_on_primary(stack, old, moved)
    standbys = [n for n in stack.nodes if n is not old]
    # the standbys have every row committed so far...
    mark = len(writer.committed)
    flushed = lsn_int(old.query('SELECT pg_current_wal_flush_lsn()::text')[0])

    def received():
        got = [n.query('SELECT pg_last_wal_receive_lsn()::text') for n in standbys]
        return [lsn_int(r[0]) if r and r[0] else 0 for r in got]

    async def caught_up():
        return min(await asyncio.to_thread(received)) >= flushed

    await poll('the standbys receive %d' % flushed, caught_up, timeout=30, every=0.05)
    # ...and no more: the primary's walsenders stopped (SIGSTOP), so what
    # it commits now only its own subscribers see
    pids = old.query('SELECT array_agg(pid) FROM pg_stat_replication')[0]
    check(pids and len(pids) == 2, 'walsenders on %s: %s' % (old.name, pids))
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        stopped = len(writer.committed)

        async def seen_past():
            if len(writer.committed) < stopped + 3:
                return None
            newer = writer.committed[stopped + 2]
            rec = max(await asyncio.to_thread(received))
            return all(s.got and s.got[-1][0] >= rec and s.got[-1][1] >= newer for s in moved)

        await poll('the subscribers on %s get events its standbys do not have' % old.name,
                   seen_past, timeout=30, every=0.05)
        pid = old.postmaster_pid()
        check(pid, 'no postmaster.pid on %s' % old.name)
        log = os.path.join(stack.dir, old.name + '.patroni.log')
        log_at = os.path.getsize(log)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    new = await current_primary(stack, other_than=old.name)
    # the new timeline's switch point, in its history file
    _, epoch, _ = await first_event(new.url)
    tli = int(epoch.split('-')[2])
    text = new.query("SELECT pg_read_file('pg_wal/%08X.history')" % tli)[0]
    parent, lsn = text.strip().splitlines()[-1].split('\t')[:2]
    check(int(parent) == tli - 1, 'history of timeline %d on %s: %s' % (tli, new.name, text))
    fork = lsn_int(lsn)
    parent = int(parent)
    # rows committed on the old primary after the standbys' last may be gone
    lost_ok = [i for i, port in zip(writer.committed[mark:], writer.ports[mark:])
               if port == old.pgport]
    note = await verify(stack, 'asynchronous failover %s -> %s' % (old.name, new.name), t0,
                        fork=fork, parent=parent, lost_ok=lost_ok)
    ids = {i for _, i in STATE['hist']}
    lost = [i for i in lost_ok if i not in ids]
    check(lost, 'no committed row was lost: the scenario proved nothing')
    fig = STATE['figures'][-1]
    fig['lost_rows'] = len(lost)
    missed = [k for k, s in enumerate(moved) if not s.resyncs]
    check(not missed, '%d of the %d subscribers that had events past the fork got no'
          ' resync_required' % (len(missed), MOVED))
    # the old primary rejoins: pg_rewind (its WAL went past the fork)
    t1 = time.monotonic()
    rewound = await rejoined(stack, old, new, log_at)
    check(rewound, '%s rejoined without pg_rewind' % old.name)
    fig['rejoin_took'] = time.monotonic() - t1
    again = await verify(stack, '%s rejoined after the asynchronous failover' % old.name, t1,
                         fork=fork, parent=parent, lost_ok=lost)
    # synchronous mode again, the cluster whole, for whatever follows
    await asyncio.to_thread(patroni_config_patch, new, {
        'synchronous_mode': True,
        'postgresql': {'parameters': {'synchronous_commit': 'on'}}})
    await settled(stack)
    return ('fork at %d (timeline %d); %d rows committed on %s lost; %s; %s rejoined with'
            ' pg_rewind in %.1f s: %s' % (fork, tli, len(lost), old.name, note, old.name,
                                           fig['rejoin_took'], again))


async def test_figures(ctx):
    """The figures of every scenario (README "Running on a cluster")."""
    writer = STATE['writer']
    writer.stop.set()
    figs = STATE['figures']
    check(figs, 'no scenario ran')
    print('# figures: ' + json.dumps([{k: (round(v, 2) if isinstance(v, float) else v)
                                       for k, v in f.items()} for f in figs]))
    print('# writer: %d rows committed, %d commits failed' % (len(writer.committed), writer.errors))


TESTS = [
    ('(a) the writer port reaches the primary only, the serving port every node;'
     ' 200 subscribers spread over them', test_routing, 120),
    ('(b) patronictl switchover under load: every subscriber resumes exactly', test_switchover, 120),
    ('(c) SIGKILL of the primary\'s postmaster, Patroni fails over: every subscriber resumes'
     ' exactly, no resync', test_failover, 150),
    ('(d) the old primary rejoins as a standby (use_pg_rewind) and serves: streams still exact',
     test_rejoin, 120),
    ('(e) SIGKILL of a standby\'s postmaster, Patroni restarts it: streams still exact',
     test_standby_kill, 120),
    # (f) turns the cluster asynchronous and back: it comes after every
    # synchronous scenario, and leaves the cluster whole and synchronous
    ('(f) asynchronous replication, the standbys cut off, the primary killed: every subscriber'
     ' resumes exactly or gets resync_required at the fork, and the old primary rejoins'
     ' (pg_rewind)', test_async_failover, 180),
    ('(g) the figures', test_figures, 30),
]


def make_ctx():
    ctx = Ctx()
    if 'stack' in STATE:
        ctx.clusters.append(STATE['stack'])
    return ctx


def main():
    run_tap(TESTS, make_ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
