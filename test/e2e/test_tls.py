#!/usr/bin/python3
"""End-to-end tests of wss:// on the pg_ws listener.

This file owns the TLS suite: it checks, as a client sees it, that
pg_ws.ssl_cert_file / pg_ws.ssl_key_file (or pg_ws.ssl = on with
PostgreSQL's own ssl_cert_file / ssl_key_file) turn the listener into
wss://, and nothing else: real TLS clients (python's ssl, websockets,
pyOpenSSL, headless Chromium) connect, and only what they observe counts
(the certificate they are shown, the protocol version and ALPN they get,
the events they receive, whether a connection is refused), plus the server
log where an operator would look.  It knows nothing of how the worker
adopts its sockets, so it holds across transport rewrites.

Certificates are made here with python3-cryptography: a root CA, an
intermediate CA and server certificates for localhost / 127.0.0.1, EC
P-256.  Files are installed the way certbot does it: the configured paths
are symlinks, and a renewal points them at new files.

Each group of tests gets its own throw-away cluster (harness.Cluster):

    tls      pg_ws.ssl_cert_file / pg_ws.ssl_key_file; the server runs with
             an openssl.cnf that allows TLS 1.0, SECLEVEL 0 and client
             renegotiation, so that refusing them is pg_ws's doing; the
             handshake timeout is short                          (a-e, j, l)
    badkey   started with a key file of mode 0644                   (f, k)
    toggle   started plain; TLS turned on and off by reloads           (g)
    pgssl    pg_ws.ssl = on with PostgreSQL's ssl_cert_file and
             ssl_key_file, relative to the data directory              (h)
    chain    a server certificate issued by an intermediate CA        (i)

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_tls.py

Needs Debian's python3-websockets, python3-psycopg2, python3-cryptography,
python3-openssl and chromium, and pg_ws installed.  Output is TAP; the exit
status is 0 only if every test passed.
"""

import asyncio
import base64
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import pwd
import select
import socket
import ssl
import sys
import tempfile
import threading
import time

import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ws_connect  # noqa: E402
from harness import (ClusterKinds, Cluster, Ctx, Fail, Subscriber, asql, check,  # noqa: E402
                     compare_idents, run_tap, short, worker_row)
import test_browser as browser_suite  # noqa: E402

# test (c) asks for TLS 1.0 and 1.1 on purpose
warnings.filterwarnings('ignore', message='ssl.TLSVersion.TLSv1', category=DeprecationWarning)

WATCHDOG_SECONDS = 330          # the whole run, setup and clean-up included

# An openssl.cnf as lax as OpenSSL allows: the tls cluster's server runs
# with it, so that TLS 1.0/1.1 and renegotiation are refused by pg_ws's own
# settings, not by the system's defaults.
LAX_OPENSSL_CNF = """\
openssl_conf = pgws_lax_init

[pgws_lax_init]
ssl_conf = pgws_lax_ssl

[pgws_lax_ssl]
system_default = pgws_lax_defaults

[pgws_lax_defaults]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
Options = ClientRenegotiation
"""


# ---------------------------------------------------------- certificates

class Pki:
    """A root CA, an intermediate CA, and server certificates for
    localhost and 127.0.0.1 signed by either."""

    def __init__(self):
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._cert('pg_ws test root CA', self.root_key.public_key(),
                               None, self.root_key, ca=True)
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = self._cert('pg_ws test intermediate CA',
                                self.inter_key.public_key(), self.root,
                                self.root_key, ca=True, path_length=0)

    @staticmethod
    def _cert(cn, public_key, issuer, issuer_key, ca=False, path_length=None):
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder()
             .subject_name(name)
             .issuer_name(issuer.subject if issuer else name)
             .public_key(public_key)
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                            critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
        else:
            b = (b.add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName('localhost'),
                     x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                    critical=False)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                critical=False))
        return b.sign(issuer_key, hashes.SHA256())

    def server(self, cn='localhost', by_intermediate=False, key_type='ec'):
        """(certificate, key) of a new server certificate."""
        if key_type == 'rsa':
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        if by_intermediate:
            cert = self._cert(cn, key.public_key(), self.inter, self.inter_key)
        else:
            cert = self._cert(cn, key.public_key(), self.root, self.root_key)
        return cert, key


def pem(*certs):
    return b''.join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(cert_or_der):
    der = (cert_or_der if isinstance(cert_or_der, bytes)
           else cert_or_der.public_bytes(serialization.Encoding.DER))
    return hashlib.sha256(der).hexdigest()


def install(path, data, mode, owner='postgres'):
    """Write a file as certbot's archive would hold it: new file, then
    chmod/chown, never rewritten in place.  The group is postgres's, so
    that a root-owned 0640 key is readable, as with Debian's ssl-cert."""
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.chown(tmp, pwd.getpwnam(owner).pw_uid, pwd.getpwnam('postgres').pw_gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def point(link, target):
    """Atomically point symlink link at target, as certbot renews live/."""
    tmp = link + '.new'
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


class Tls:
    """One cluster's certificate directory, laid out like certbot's:
    archive/certN.pem, archive/privkeyN.pem, ... and live/*.pem symlinks."""

    def __init__(self, base):
        self.dir = os.path.join(base, 'tls')
        self.archive = os.path.join(self.dir, 'archive')
        self.live = os.path.join(self.dir, 'live')
        for d in (self.dir, self.archive, self.live):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        self.n = 0
        self.cert_path = os.path.join(self.live, 'cert.pem')
        self.fullchain_path = os.path.join(self.live, 'fullchain.pem')
        self.chain_path = os.path.join(self.live, 'chain.pem')
        self.key_path = os.path.join(self.live, 'privkey.pem')

    def deploy(self, cert, key, chain=(), key_mode=0o600, key_owner='postgres'):
        """A new version of every file, then the live/ links moved to it."""
        self.n += 1
        n = self.n
        files = {'cert': pem(cert), 'fullchain': pem(cert, *chain),
                 'chain': pem(*chain)}
        for name, data in files.items():
            path = os.path.join(self.archive, '%s%d.pem' % (name, n))
            install(path, data, 0o644)
            point(os.path.join(self.live, name + '.pem'), path)
        path = os.path.join(self.archive, 'privkey%d.pem' % n)
        install(path, key_pem(key), key_mode, key_owner)
        point(self.key_path, path)


def write_lax_openssl_cnf(cl):
    path = os.path.join(cl.dir, 'lax-openssl.cnf')
    with open(path, 'w') as f:
        f.write(LAX_OPENSSL_CNF)
    os.chmod(path, 0o644)
    return path


class TlsCluster(Cluster):
    """A Cluster whose server gets extra environment variables (env) and
    whose data directory prepare(cluster) may fill between initdb and the
    server's start."""

    def __init__(self, *args, env=None, prepare=None, **kw):
        super().__init__(*args, **kw)
        self.env = dict(env or {})
        self.prepare = prepare

    def as_postgres(self, *args, **kw):
        # the server's start (Cluster.start may put prlimit before pg_ctl)
        if 'start' in args and any(os.path.basename(a) == 'pg_ctl' for a in args):
            if self.prepare is not None:
                self.prepare(self)
            args = ('env', *['%s=%s' % kv for kv in self.env.items()], *args)
        return super().as_postgres(*args, **kw)

    @property
    def wss_url(self):
        return 'wss://127.0.0.1:%d' % self.wsport


# ------------------------------------------------------------- clients

PKI = None                  # made once, by setup()


def client_ctx(cafile_pem=None, verify=True, alpn=None, min_version=None,
               max_version=None, ciphers=None):
    """A client SSLContext trusting only cafile_pem (PEM bytes)."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        c.load_verify_locations(cadata=(cafile_pem or pem(PKI.root)).decode())
    else:
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
    if alpn:
        c.set_alpn_protocols(alpn)
    if ciphers:
        c.set_ciphers(ciphers)
    if min_version:
        c.minimum_version = min_version
    if max_version:
        c.maximum_version = max_version
    return c


def _handshake(port, ctx, server_hostname):
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
            return {'version': s.version(), 'alpn': s.selected_alpn_protocol(),
                    'compression': s.compression(), 'cipher': s.cipher()[0],
                    'fingerprint': fingerprint(s.getpeercert(binary_form=True))}


async def handshake(port, ctx, server_hostname='localhost'):
    """A TLS handshake with 127.0.0.1:port (SNI server_hostname): what the
    client saw, or the exception that ended it."""
    try:
        return await asyncio.to_thread(_handshake, port, ctx, server_hostname)
    except (OSError, ssl.SSLError) as e:
        return e


async def wss_sub(ctx, cl, cafile_pem=None, server_hostname='localhost'):
    """A /ws/ subscriber over wss://, verifying the server certificate
    against cafile_pem (default: the test root CA)."""
    ws = await ws_connect(cl.wss_url + '/ws/', ssl=client_ctx(cafile_pem),
                                  server_hostname=server_hostname,
                                  ping_interval=None, max_size=None, max_queue=None,
                                  close_timeout=1, open_timeout=10)
    s = Subscriber(ws)
    ctx.subs.append(s)
    return s


async def refused(coro_fn, what):
    """Fail unless coro_fn() raises (a connection that does not work)."""
    try:
        r = await coro_fn()
    except Exception as e:
        return '%s: %s' % (type(e).__name__, short(e, 120))
    if hasattr(r, 'close'):
        await r.close()
    raise Fail('%s succeeded' % what)


async def plain_refused(cl):
    """A plain ws:// client of the pg_ws port does not get a subscription."""
    return await refused(lambda: ws_connect(cl.url + '/ws/', open_timeout=10,
                                                    close_timeout=1),
                         'a plain ws:// connection to %s' % cl.url)


def emp(i):
    return ("INSERT INTO employee (id, first_name, last_name) VALUES (%s, 'e', 't')", (i,))


async def wait_log(cl, since, text, timeout=20):
    """The server log lines (from byte since on) containing text; Fail if
    none appears within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        hits = [line for line in cl.log_since(since) if text in line]
        if hits:
            return hits
        check(time.monotonic() < deadline,
              'the server log does not say %r within %d s' % (text, timeout),
              *['  log: ' + line for line in cl.log_since(since)[-8:]])
        await asyncio.sleep(0.1)


def log_with_detail(cl, since, text):
    """The log line containing text and the DETAIL/HINT lines after it."""
    lines = cl.log_since(since)
    for k, line in enumerate(lines):
        if text in line:
            out = [line]
            for more in lines[k + 1:k + 4]:
                if 'DETAIL:' in more or 'HINT:' in more:
                    out.append(more)
                else:
                    break
            return out
    return []


async def wait_fingerprint(cl, want, timeout=20, ctx=None):
    """Wait until a new handshake shows the certificate whose fingerprint
    is want; the last handshake's result."""
    deadline = time.monotonic() + timeout
    while True:
        r = await handshake(cl.wsport, ctx or client_ctx())
        if isinstance(r, dict) and r['fingerprint'] == want:
            return r
        check(time.monotonic() < deadline,
              'new connections are not shown certificate %s... within %d s; last: %s'
              % (want[:16], timeout, short(r)))
        await asyncio.sleep(0.2)


async def wait_plain_serving(cl, timeout=20):
    """Wait until a plain ws:// subscriber can connect."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Subscriber.connect(cl.url)
        except Exception as e:
            check(time.monotonic() < deadline,
                  'plain ws:// is not served within %d s: %s' % (timeout, short(e)))
            await asyncio.sleep(0.2)


# ------------------------------------------------------------ clusters



def _tls_conf(t):
    return ["pg_ws.ssl_cert_file = '%s'" % t.cert_path,
            "pg_ws.ssl_key_file = '%s'" % t.key_path]


_kinds = ClusterKinds(lambda kind: make_cluster(kind))  # defined below


async def cluster(ctx, kind):
    """The cluster of this kind, started on first use; ctx's cluster."""
    return await _kinds.get(ctx, kind)


def make_cluster(kind):
    if kind == 'tls':
        # test_browser's page comes from another origin: listed (issue 15)
        cl = TlsCluster(name=kind, conf=["pg_ws.handshake_timeout = '2s'",
                                         "pg_ws.allowed_origins = '%s'" % browser_suite.PAGE_ORIGIN])
        cl.tls = Tls(cl.dir)
        cl.tls.deploy(*PKI.server())
        cl.conf += _tls_conf(cl.tls)
        cl.env['OPENSSL_CONF'] = write_lax_openssl_cnf(cl)
    elif kind == 'badkey':
        cl = TlsCluster(name=kind, conf=[])
        cl.tls = Tls(cl.dir)
        cl.tls.deploy(*PKI.server(), key_mode=0o644)
        cl.conf += _tls_conf(cl.tls)
    elif kind == 'toggle':
        cl = TlsCluster(name=kind, conf=[])
        cl.tls = Tls(cl.dir)
    elif kind == 'pgssl':
        cert, key = PKI.server()
        cl = TlsCluster(name=kind, conf=['pg_ws.ssl = on', 'ssl = on',
                                         "ssl_cert_file = 'server.crt'",
                                         "ssl_key_file = 'server.key'"])
        cl.tls_cert = cert

        def prepare(c):
            install(os.path.join(c.data, 'server.crt'), pem(cert), 0o644)
            install(os.path.join(c.data, 'server.key'), key_pem(key), 0o600)
        cl.prepare = prepare
    elif kind == 'chain':
        cl = TlsCluster(name=kind, conf=[])
        cl.tls = Tls(cl.dir)
        cl.tls_cert, key = PKI.server(by_intermediate=True)
        cl.tls.deploy(cl.tls_cert, key, chain=[PKI.inter])
        cl.conf += ["pg_ws.ssl_cert_file = '%s'" % cl.tls.cert_path,
                    "pg_ws.ssl_key_file = '%s'" % cl.tls.key_path,
                    "pg_ws.ssl_ca_file = '%s'" % cl.tls.chain_path]
    else:
        raise ValueError(kind)
    return cl


# ------------------------------------------------------------------ tests

async def test_wss_events(ctx):
    """a. wss:// subscribers receive the events; plain ws:// fails."""
    cl = await cluster(ctx, 'tls')
    # one client sends SNI (localhost), one does not (an IP address)
    by_name = await wss_sub(ctx, cl)
    by_ip = await wss_sub(ctx, cl, server_hostname='127.0.0.1')
    conn = await ctx.aconn()
    await asql(conn, emp(1), "BEGIN", emp(2), emp(3), "COMMIT")
    want = [('employee_create', i) for i in (1, 2, 3)]
    compare_idents(await by_name.expect(3, 15, 'wss:// subscriber (SNI localhost)'),
                   want, 'wss:// subscriber (SNI localhost)')
    compare_idents(await by_ip.expect(3, 15, 'wss:// subscriber (no SNI)'),
                   want, 'wss:// subscriber (no SNI)')
    how = await plain_refused(cl)
    # HTTP answers arrive whole over TLS too
    answers = []
    for path in ('/ws/', '/nope'):
        status, body = await asyncio.to_thread(https_get, cl.wsport, path)
        check(status in (400, 404) and body, 'GET %s over TLS: %s %r' % (path, status, body))
        answers.append('GET %s: %d' % (path, status))
    # pg_ws_connections says they came over wss://, and /health answers over TLS
    rows = await asql(conn, "SELECT tls FROM pg_ws_connections WHERE state = 'subscribed'")
    check(rows == [(True,), (True,)], 'pg_ws_connections.tls of the wss:// subscribers: %s' % rows)
    status, body = await asyncio.to_thread(https_get, cl.wsport, '/health')
    check(status == 200 and b'"status": "ok"' in body, 'GET /health over TLS: %s %r' % (status, body))
    r = await handshake(cl.wsport, client_ctx())
    check(isinstance(r, dict), 'TLS handshake failed: %s' % short(r))
    return '3 events to both wss:// subscribers (%s, %s); %s; ws:// refused (%s)' % (
        r['version'], r['cipher'], ', '.join(answers), how)


def https_get(port, path):
    """A plain HTTPS GET: (status, body)."""
    c = http.client.HTTPSConnection('127.0.0.1', port, timeout=10,
                                    context=client_ctx())
    try:
        c.request('GET', path, headers={'Host': 'localhost'})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


async def test_renewal(ctx):
    """b. a renewed certificate reaches new connections at the reload;
    connected subscribers stay and keep receiving; bad files keep the old."""
    cl = await cluster(ctx, 'tls')
    conn = await ctx.aconn()
    before = await wait_fingerprint(cl, fingerprint(load_live_cert(cl)))
    old = await wss_sub(ctx, cl)
    await asql(conn, emp(100))
    await old.expect(1, 15, 'subscriber before the renewal', settle=0)

    cert, key = PKI.server()
    cl.tls.deploy(cert, key)
    await asql(conn, "SELECT pg_reload_conf()")
    after = await wait_fingerprint(cl, fingerprint(cert))
    check(after['fingerprint'] != before['fingerprint'], 'the certificate did not change')
    new = await wss_sub(ctx, cl)
    check(not old.closed.is_set(),
          'the subscriber connected before the reload was disconnected: %s' % old.close_info)
    await asql(conn, emp(101), "BEGIN", emp(102), emp(103), "COMMIT")
    later = [('employee_create', i) for i in (101, 102, 103)]
    compare_idents(await old.expect(4, 15, 'subscriber from before the renewal'),
                   [('employee_create', 100)] + later, 'subscriber from before the renewal')
    compare_idents(await new.expect(3, 15, 'subscriber after the renewal'),
                   later, 'subscriber after the renewal')

    # a broken renewal: a key that does not match.  New connections keep
    # the last good certificate, and the log says which file and why.
    mark = cl.log_size()
    other_cert, _ = PKI.server()
    _, wrong_key = PKI.server()
    cl.tls.deploy(other_cert, wrong_key)
    await asql(conn, "SELECT pg_reload_conf()")
    await wait_log(cl, mark, 'pg_ws keeps serving wss:// with the certificate it loaded before')
    why = log_with_detail(cl, mark, 'does not match server certificate file')
    check(why and cl.tls.key_path in why[0],
          'no log line names the key file that does not match the certificate',
          *cl.log_since(mark)[-6:])
    r = await handshake(cl.wsport, client_ctx())
    check(isinstance(r, dict) and r['fingerprint'] == fingerprint(cert),
          'after a bad renewal new connections do not get the last good certificate: %s'
          % short(r))
    await asql(conn, emp(104))
    await old.expect(5, 15, 'subscriber from before, after the bad renewal')

    # a renewal that changes the key type (certbot 2 moved from RSA to
    # ECDSA): new connections get the new certificate, not the old one
    # of the other type
    rsa_cert, rsa_key = await asyncio.to_thread(PKI.server, key_type='rsa')
    cl.tls.deploy(rsa_cert, rsa_key)
    await asql(conn, "SELECT pg_reload_conf()")
    await wait_fingerprint(cl, fingerprint(rsa_cert))
    cert, key = PKI.server()
    cl.tls.deploy(cert, key)
    await asql(conn, "SELECT pg_reload_conf()")
    await wait_fingerprint(cl, fingerprint(cert))
    await asql(conn, emp(105))
    await old.expect(6, 15, 'subscriber from before, after three renewals')
    check(not old.closed.is_set(), 'the first subscriber was disconnected')
    return 'fingerprint %s -> %s; bad key refused: %s; EC -> RSA -> EC renewals served' % (
        before['fingerprint'][:12], after['fingerprint'][:12],
        why[0].split('LOG:  ')[-1])


def load_live_cert(cl):
    with open(cl.tls.cert_path, 'rb') as f:
        return x509.load_pem_x509_certificate(f.read())


class TlsServer:
    """A throw-away TLS server of this machine's OpenSSL, as lax as the tls
    cluster's: proof that the client side of test (c) really can speak
    TLS 1.0/1.1, so that pg_ws refusing it means something."""

    def __init__(self, cert, key):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.minimum_version = ssl.TLSVersion.TLSv1
        c.set_ciphers('DEFAULT@SECLEVEL=0')
        with tempfile.NamedTemporaryFile('wb', delete=False) as f:
            f.write(pem(cert) + key_pem(key))
            self.pemfile = f.name
        c.load_cert_chain(self.pemfile)
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.ctx = c
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(s, server_side=True) as t:
                    t.settimeout(5)
                    t.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.sock.close()
        os.unlink(self.pemfile)


def _pump(raw, op, deadline):
    """op() on a pyOpenSSL connection over the non-blocking socket raw,
    waiting (until deadline) whenever OpenSSL wants to read or write."""
    while True:
        try:
            return op()
        except SSL.WantReadError:
            want = ([raw], [])
        except SSL.WantWriteError:
            want = ([], [raw])
        left = deadline - time.monotonic()
        if left <= 0 or not any(select.select(*want, [], left)):
            raise TimeoutError('no answer from the server within the deadline')


def renegotiate(port):
    """A TLS 1.2 handshake, then a client-initiated renegotiation: the
    first handshake's version and the renegotiation's outcome."""
    c = SSL.Context(SSL.TLS_METHOD)
    c.set_min_proto_version(SSL.TLS1_2_VERSION)
    c.set_max_proto_version(SSL.TLS1_2_VERSION)
    c.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    deadline = time.monotonic() + 15
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        raw.setblocking(False)
        conn = SSL.Connection(c, raw)
        conn.set_connect_state()
        _pump(raw, conn.do_handshake, deadline)
        first = conn.get_protocol_version_name()
        try:
            if not conn.renegotiate():
                return first, 'not started'
            _pump(raw, conn.do_handshake, deadline)
            # then a request, whose answer comes after the new handshake
            _pump(raw, lambda: conn.send(b'GET /ws/ HTTP/1.1\r\nHost: localhost\r\n\r\n'),
                  deadline)
            data = _pump(raw, lambda: conn.recv(4096), deadline)
            return first, 'accepted (%d renegotiations; answer %r)' % (
                conn.total_renegotiations(), data[:20])
        except (SSL.Error, OSError) as e:
            return first, 'refused: %s' % (e,)


async def test_protocols(ctx):
    """c. TLS 1.0/1.1 refused, 1.2 and 1.3 accepted, no compression, no
    renegotiation."""
    cl = await cluster(ctx, 'tls')
    legacy = dict(verify=False, ciphers='DEFAULT@SECLEVEL=0',
                  min_version=ssl.TLSVersion.TLSv1)

    # the client can speak TLS 1.1 where a server allows it
    probe = TlsServer(*PKI.server())
    try:
        r = await handshake(probe.port, client_ctx(max_version=ssl.TLSVersion.TLSv1_1,
                                                   **legacy))
    finally:
        probe.close()
    check(isinstance(r, dict) and r['version'] == 'TLSv1.1',
          'this machine\'s OpenSSL cannot make a TLS 1.1 connection even to a lax server'
          ' (%s): the refusal below would prove nothing' % short(r))

    notes = []
    for top in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        r = await handshake(cl.wsport, client_ctx(max_version=top, **legacy))
        check(not isinstance(r, dict), 'a client capped at %s connected: %s' % (top.name, r))
        notes.append('%s refused' % top.name)
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        r = await handshake(cl.wsport, client_ctx(min_version=v, max_version=v))
        check(isinstance(r, dict), 'a %s client was refused: %s' % (v.name, short(r)))
        check(r['version'] == v.name.replace('_', '.'),
              'asked for %s, got %s' % (v.name, r['version']))
        check(r['compression'] is None, '%s with compression %s' % (v.name, r['compression']))
        notes.append('%s ok (%s)' % (r['version'], r['cipher']))
    first, outcome = await asyncio.to_thread(renegotiate, cl.wsport)
    check(first == 'TLSv1.2', 'the renegotiation test did not get TLS 1.2 but %s' % first)
    check(outcome.startswith('refused'), 'client renegotiation was %s' % outcome)
    notes.append('renegotiation %s' % outcome)
    return '; '.join(notes)


async def test_alpn(ctx):
    """d. ALPN: http/1.1 only, never h2."""
    cl = await cluster(ctx, 'tls')
    both = await handshake(cl.wsport, client_ctx(alpn=['h2', 'http/1.1']))
    check(isinstance(both, dict), 'handshake with ALPN h2,http/1.1 failed: %s' % short(both))
    check(both['alpn'] == 'http/1.1', 'offered h2 and http/1.1, got %r' % both['alpn'])
    h2 = await handshake(cl.wsport, client_ctx(alpn=['h2']))
    check(not (isinstance(h2, dict) and h2['alpn'] == 'h2'), 'h2 was negotiated')
    check(isinstance(h2, dict) and h2['alpn'] is None,
          'offered only h2: expected a handshake without ALPN, got %s' % short(h2))
    # a WebSocket client that offers h2 first still subscribes over http/1.1
    c = client_ctx(alpn=['h2', 'http/1.1'])
    ws = await ws_connect(cl.wss_url + '/ws/', ssl=c, server_hostname='localhost',
                                  ping_interval=None, open_timeout=10, close_timeout=1)
    sub = Subscriber(ws)
    ctx.subs.append(sub)
    conn = await ctx.aconn()
    await asql(conn, emp(200))
    compare_idents(await sub.expect(1, 15, 'subscriber offering h2'),
                   [('employee_create', 200)], 'subscriber offering h2')
    return 'h2,http/1.1 -> %s; h2 -> %s' % (both['alpn'], h2['alpn'])


async def test_bad_key_mode(ctx):
    """f. a key file with mode 0644: refused with PostgreSQL's message,
    and neither wss:// nor plain ws:// is served."""
    cl = await cluster(ctx, 'badkey')
    why = log_with_detail(cl, 0, 'has group or world access')
    check(why, 'the server log does not say the key file has group or world access',
          *cl.log_tail(10))
    check('private key file "%s" has group or world access' % cl.tls.key_path in why[0],
          'the log line does not name the key file: %s' % why[0])
    check(any('0600' in line and '0640' in line for line in why[1:]),
          'no DETAIL with the rule: %s' % why)
    refusing = [line for line in cl.log_since(0) if 'pg_ws is refusing connections' in line]
    check(refusing, 'the log does not say pg_ws is refusing connections')
    how_plain = await plain_refused(cl)
    r = await handshake(cl.wsport, client_ctx())
    check(not isinstance(r, dict), 'a wss:// handshake succeeded with the refused key: %s' % r)

    # 0600 and a reload: served
    os.chmod(os.path.realpath(cl.tls.key_path), 0o600)
    conn = await ctx.aconn()
    await asql(conn, "SELECT pg_reload_conf()")
    await wait_fingerprint(cl, fingerprint(load_live_cert(cl)))
    sub = await wss_sub(ctx, cl)
    await asql(conn, emp(300))
    await sub.expect(1, 15, 'subscriber after the key was fixed')
    return '%s; ws:// %s' % (why[0].split('LOG:  ')[-1], how_plain)


async def test_toggle(ctx):
    """g. TLS turned on and off by reload, for new connections only; one of
    cert/key alone is refused; a root-owned 0640 key is accepted."""
    cl = await cluster(ctx, 'toggle')
    conn = await ctx.aconn()
    plain = await ctx.sub()
    notes = []

    # only the certificate: a configuration error, and nothing served
    cert, key = PKI.server()
    cl.tls.deploy(cert, key, key_mode=0o640, key_owner='root')
    mark = cl.log_size()
    await asql(conn, "ALTER SYSTEM SET pg_ws.ssl_cert_file = '%s'" % cl.tls.cert_path,
               "SELECT pg_reload_conf()")
    await wait_log(cl, mark, 'pg_ws is refusing connections')
    check(log_with_detail(cl, mark, 'pg_ws.ssl_cert_file is set but pg_ws.ssl_key_file is not'),
          'no log line says pg_ws.ssl_key_file is missing', *cl.log_since(mark)[-5:])
    await plain_refused(cl)
    notes.append('cert alone: refused')

    # both (key owned by root, 0640): wss:// for new connections
    await asql(conn, "ALTER SYSTEM SET pg_ws.ssl_key_file = '%s'" % cl.tls.key_path,
               "SELECT pg_reload_conf()")
    await wait_fingerprint(cl, fingerprint(cert))
    secure = await wss_sub(ctx, cl)
    await plain_refused(cl)
    notes.append('root-owned 0640 key: wss://')

    # off again: new connections are plain, the wss:// subscriber stays
    await asql(conn, "ALTER SYSTEM RESET pg_ws.ssl_cert_file",
               "ALTER SYSTEM RESET pg_ws.ssl_key_file", "SELECT pg_reload_conf()")
    plain2 = await wait_plain_serving(cl)
    ctx.subs.append(plain2)
    r = await handshake(cl.wsport, client_ctx())
    check(not isinstance(r, dict), 'TLS is off but a handshake succeeded: %s' % short(r))
    await asql(conn, emp(400), emp(401))
    want = [('employee_create', 400), ('employee_create', 401)]
    for who, s in (('plain subscriber from the start', plain),
                   ('wss:// subscriber from while TLS was on', secure),
                   ('plain subscriber after TLS was turned off', plain2)):
        check(not s.closed.is_set(), '%s was disconnected: %s' % (who, s.close_info))
        compare_idents(await s.expect(2, 15, who), want, who)
    notes.append('off: ws:// again, all 3 subscribers kept')
    return '; '.join(notes)


async def test_postgres_files(ctx):
    """h. pg_ws.ssl = on uses PostgreSQL's ssl_cert_file and ssl_key_file,
    relative to the data directory."""
    cl = await cluster(ctx, 'pgssl')
    r = await wait_fingerprint(cl, fingerprint(cl.tls_cert))
    sub = await wss_sub(ctx, cl)
    conn = await ctx.aconn()
    await asql(conn, emp(500))
    compare_idents(await sub.expect(1, 15, 'wss:// subscriber'),
                   [('employee_create', 500)], 'wss:// subscriber')
    await plain_refused(cl)
    return 'server.crt from the data directory served (%s)' % r['version']


async def test_chain(ctx):
    """i. an intermediate CA: sent from pg_ws.ssl_ca_file or from the
    certificate file; a client trusting only the root verifies."""
    cl = await cluster(ctx, 'chain')
    conn = await ctx.aconn()
    root_only = pem(PKI.root)
    fp = fingerprint(cl.tls_cert)

    r = await handshake(cl.wsport, client_ctx(root_only))
    check(isinstance(r, dict) and r['fingerprint'] == fp,
          'with the intermediate in pg_ws.ssl_ca_file, a client trusting the root'
          ' could not verify: %s' % short(r))
    sub = await wss_sub(ctx, cl, root_only)
    await asql(conn, emp(600))
    await sub.expect(1, 15, 'subscriber verifying through the intermediate')
    notes = ['intermediate from pg_ws.ssl_ca_file: verified']

    # the leaf alone: a client trusting only the root cannot verify (so
    # the intermediate it verified through above came from pg_ws)
    await asql(conn, "ALTER SYSTEM SET pg_ws.ssl_ca_file = ''", "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 20
    while isinstance(r := await handshake(cl.wsport, client_ctx(root_only)), dict):
        check(time.monotonic() < deadline,
              'without the intermediate a root-only client still verifies (did it reload?)')
        await asyncio.sleep(0.2)
    check('certificate verify failed' in str(r),
          'without the intermediate the handshake failed, but not on verification: %s'
          % short(r))
    notes.append('leaf alone: %s' % short(r, 60))

    # fullchain.pem alone, as certbot's
    await asql(conn, "ALTER SYSTEM SET pg_ws.ssl_cert_file = '%s'" % cl.tls.fullchain_path,
               "SELECT pg_reload_conf()")
    await wait_fingerprint(cl, fp, ctx=client_ctx(root_only))
    sub2 = await wss_sub(ctx, cl, root_only)
    await asql(conn, emp(601))
    await sub2.expect(1, 15, 'subscriber verifying through fullchain.pem')
    check(not sub.closed.is_set(), 'the first subscriber was disconnected by the reloads')
    notes.append('fullchain.pem: verified')
    return '; '.join(notes)


async def test_browser(ctx):
    """e. headless Chromium subscribes over wss:// and parses the events."""
    cl = await cluster(ctx, 'tls')
    check(os.access(browser_suite.CHROMIUM, os.X_OK),
          'chromium is not installed (scripts/install_deps.sh)')
    # trust exactly our certificate's public key, as a pinned key
    with open(cl.tls.cert_path, 'rb') as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    server = browser_suite.PageServer()
    browser = browser_suite.Browser(
        'http://127.0.0.1:%d/?ws=wss://127.0.0.1:%d/ws/' % (server.port, cl.wsport),
        extra_args=['--ignore-certificate-errors-spki-list=' + pin])
    try:
        await browser_suite.next_post(server, ['open'], 60)
        python_sub = await wss_sub(ctx, cl)
        conn = await ctx.aconn()
        await asql(conn, emp(700), "BEGIN", emp(701), emp(702), "COMMIT",
                   "DELETE FROM employee WHERE id = 700")
        expected = await python_sub.expect(4, 20, 'python wss:// subscriber')
        got = {}
        while len(got) < len(expected):
            _, body = await browser_suite.next_post(server, ['message'], 20)
            m = json.loads(body)
            got[m['i']] = m
        for i, raw in enumerate(expected):
            check(got[i]['raw'] == raw, 'frame %d differs' % i,
                  '  browser: ' + short(got[i]['raw']), '  python:  ' + short(raw))
        return '%d frames over wss:// identical in Chromium and python-websockets' % len(expected)
    finally:
        browser.close()
        server.close()


def stalled_peer_dropped(port, complete_handshake, timeout):
    """Open a connection and send nothing (not even a ClientHello, or
    nothing after the handshake): seconds until the server closes it."""
    t0 = time.monotonic()
    raw = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    try:
        s = client_ctx().wrap_socket(raw, server_hostname='localhost') \
            if complete_handshake else raw
        s.settimeout(timeout)
        try:
            data = s.recv(1)
        except socket.timeout:
            return None
        except (OSError, ssl.SSLError):
            data = b''
        return time.monotonic() - t0 if not data else None
    finally:
        raw.close()


async def test_stalled_peers(ctx):
    """l. a peer that never sends its ClientHello, or nothing after the
    handshake, does not hold its socket forever."""
    cl = await cluster(ctx, 'tls')
    notes = []
    for complete in (False, True):
        took = await asyncio.to_thread(stalled_peer_dropped, cl.wsport, complete, 40)
        check(took is not None, 'a peer that %s was still connected after 40 s'
              % ('completed the handshake and sent nothing' if complete
                 else 'sent no ClientHello'))
        notes.append('%s: closed' % ('silent after handshake' if complete else 'no ClientHello'))
    return '; '.join(notes)


async def test_bad_files(ctx):
    """k. each kind of bad file is named in the log with the reason, and
    new connections keep the last good certificate; no key is logged."""
    cl = await cluster(ctx, 'badkey')
    conn = await ctx.aconn()
    good = fingerprint(load_live_cert(cl))
    await wait_fingerprint(cl, good)
    t = cl.tls
    cert_target = os.path.realpath(t.cert_path)
    key_target = os.path.realpath(t.key_path)
    junk = os.path.join(t.archive, 'junk.pem')
    install(junk, b'this is not a certificate\n', 0o644)
    other = os.path.join(t.archive, 'other-owner.pem')
    with open(key_target, 'rb') as f:
        install(other, f.read(), 0o600, owner='nobody')
    os.chmod(other, 0o644)          # readable, so that the owner is what fails
    encrypted = os.path.join(t.archive, 'encrypted.pem')
    _, k = PKI.server()
    install(encrypted, k.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b'secret')),
            0o600)
    a_dir = os.path.join(t.archive, 'a-directory')
    os.makedirs(a_dir, exist_ok=True)

    cases = [   # (link, target, text the log must show after the path)
        (t.cert_path, os.path.join(t.archive, 'missing.pem'),
         'could not open server certificate file "%s": No such file or directory'),
        (t.cert_path, junk, 'could not load server certificate file "%s": no start line'),
        (t.key_path, encrypted, 'private key file "%s" requires a passphrase'),
        (t.key_path, other, 'private key file "%s" must be owned by the database user or root'),
        (t.key_path, a_dir, 'private key file "%s" is not a regular file'),
    ]
    notes = []
    for link, target, text in cases:
        point(link, target)
        mark = cl.log_size()
        await asql(conn, "SELECT pg_reload_conf()")
        await wait_log(cl, mark, 'pg_ws keeps serving wss:// with the certificate it loaded before')
        want = text % link
        check(any(want in line for line in cl.log_since(mark)),
              'the log does not say: %s' % want, *cl.log_since(mark)[-5:])
        r = await handshake(cl.wsport, client_ctx())
        check(isinstance(r, dict) and r['fingerprint'] == good,
              'after "%s" new connections did not get the last good certificate: %s'
              % (want, short(r)))
        notes.append(want.replace('"%s"' % link, '...'))
        point(t.cert_path, cert_target)
        point(t.key_path, key_target)
    with open(key_target, 'rb') as f:
        key_lines = f.read().decode().splitlines()[1:-1]     # the base64 body
    leaked = [line for line in cl.log_since(0)
              if 'PRIVATE KEY' in line or any(k in line for k in key_lines)]
    check(not leaked, 'the log shows key material: %s' % short(leaked))
    return '; '.join(notes)


async def test_worker_restart(ctx):
    """j. a worker restart: wss:// subscribers get a clean 1001 goodbye
    over TLS, and the new worker serves wss:// again."""
    cl = await cluster(ctx, 'tls')
    conn = await ctx.aconn()
    sub = await wss_sub(ctx, cl)
    await asql(conn, emp(800))
    await sub.expect(1, 15, 'subscriber before the restart', settle=0)
    pid, _ = await worker_row(conn)
    mark = cl.log_size()
    await asql(conn, ("SELECT pg_terminate_backend(%s)", (pid,)))
    deadline = time.monotonic() + 15
    while not sub.closed.is_set():
        check(time.monotonic() < deadline, 'the subscriber was not closed by the restart')
        await asyncio.sleep(0.05)
    check(sub.ws.close_code == 1001, 'the worker closed the wss:// subscriber with code %r,'
          ' expected 1001' % sub.ws.close_code)
    await cl.wait_listening(cl.wsport, 30, since=mark)
    again = await wss_sub(ctx, cl)
    await asql(conn, emp(801))
    compare_idents(await again.expect(1, 15, 'wss:// subscriber after the restart'),
                   [('employee_create', 801)], 'wss:// subscriber after the restart')
    return 'closed with 1001; wss:// served again by worker %d' % (await worker_row(conn))[0]


TESTS = [
    ('(a) wss:// subscribers receive the events; plain ws:// to the TLS port fails',
     test_wss_events, 60),
    ('(b) a renewed certificate reaches new connections at reload; subscribers stay;'
     ' bad files keep the last good certificate', test_renewal, 60),
    ('(c) TLS 1.0/1.1 refused, 1.2 and 1.3 accepted, no compression, no renegotiation',
     test_protocols, 40),
    ('(d) ALPN offers http/1.1 only: h2,http/1.1 gets http/1.1, h2 alone gets none',
     test_alpn, 30),
    ('(e) headless Chromium subscribes over wss://', test_browser, 90),
    ('(f) a key file with group or world access is refused, and nothing is served',
     test_bad_key_mode, 60),
    ('(g) reloads turn TLS on and off for new connections; cert without key refused;'
     ' root-owned 0640 key accepted', test_toggle, 60),
    ('(h) pg_ws.ssl = on serves PostgreSQL\'s ssl_cert_file/ssl_key_file',
     test_postgres_files, 60),
    ('(i) a chain through an intermediate CA, from pg_ws.ssl_ca_file or fullchain.pem',
     test_chain, 60),
    ('(j) a worker restart closes wss:// subscribers with 1001 and serves wss:// again',
     test_worker_restart, 60),
    ('(k) bad files are named in the log with the reason; the last good certificate stays',
     test_bad_files, 60),
    ('(l) a TLS peer that stalls before or after the handshake is dropped',
     test_stalled_peers, 100),
]


def main():
    async def setup():
        global PKI
        PKI = await asyncio.to_thread(Pki)

    run_tap(TESTS, Ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
