#!/usr/bin/python3
"""End-to-end tests of who may subscribe: tokens, origins, pg_ws_sign_token.

This file owns the authentication end-to-end suite.  It checks what a
client sees, so that it holds whatever the transport underneath: which
upgrades are answered with a real HTTP/1.1 401 or 403 and which are
accepted, where a token may travel (Authorization: Bearer, the cookie
named by pg_ws.jwt_cookie, the token query parameter, in that order),
HS256, RS256 and ES256 with generated keys and what must be refused (alg
none, the HS/RS confusion, wrong keys, crit, expiry, nbf, aud, iss,
malformed anything), the events claim narrowing what a subscriber is sent,
live expiry closing with 4001, auth messages that extend or narrow a
connection or close it, pg_ws.allowed_origins, tokens minted by
pg_ws_sign_token() in SQL, a reload that turns authentication on, and
finally that neither the secrets nor any token reached the server log.
It does not cover what sql/tokens.sql covers (pg_ws_sign_token's output,
errors and privileges in detail).

Clusters (harness.Cluster, started on first use, on free ports):

    jwt    pg_ws.auth jwt; HS256 secret in pg_ws.jwt_secret_file (with a
           trailing newline) and an RSA public key; aud, iss, cookie
           pgws_token, allowed_origins, jwt_leeway 10s
    ec     pg_ws.auth jwt; only a P-256 public key (no secret); a cookie
           name but no allowed_origins (which the worker warns about)
    none   pg_ws.auth none; allowed_origins; an inline pg_ws.jwt_secret,
           and later a reload to pg_ws.auth jwt

Tokens and keys come from jwt_tools.py.  Run as root:

    /usr/bin/python3 test/e2e/test_auth.py

Needs Debian's python3-websockets (10.4), python3-psycopg2 and
python3-cryptography, and pg_ws installed.  Output is TAP.
"""

import asyncio
import hashlib
import json
import os
import pwd
import secrets
import socket
import sys
import time
import urllib.parse

import psycopg2
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jwt_tools as jt  # noqa: E402
import rawws  # noqa: E402
from harness import ws_connect  # noqa: E402
from harness import (ClusterKinds, Cluster, Ctx, Fail, Subscriber, asql, check,  # noqa: E402
                     run_tap, short)

WATCHDOG_SECONDS = 280

SECRET = 'e2e-file-secret-' + secrets.token_hex(16)
INLINE_SECRET = 'e2e-inline-secret-' + secrets.token_hex(16)
AUDIENCE = 'pg_ws-e2e'
ISSUER = 'https://auth.example.com'
COOKIE = 'pgws_token'
LEEWAY = 10
RSA_KEY = jt.rsa_key()
EC_KEY = jt.ec_key()

SQL_TOKENS = []         # tokens minted by pg_ws_sign_token, for the log check


def write_owned(cl, name, data, mode=0o600):
    """A file in the cluster's directory that only postgres can read."""
    path = os.path.join(cl.dir, name)
    with open(path, 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    pw = pwd.getpwnam('postgres')
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)
    return path


def configure(kind, cl):
    """postgresql.conf lines of each kind of cluster (files written here)."""
    conf = ["pg_ws.auth = 'jwt'"]
    if kind == 'jwt':
        # the trailing newline must be stripped, or no HS256 token would verify
        secret = write_owned(cl, 'jwt_secret', SECRET + '\n')
        pem = write_owned(cl, 'rsa_public.pem', jt.public_pem(RSA_KEY), 0o644)
        conf += ["pg_ws.jwt_secret_file = '%s'" % secret,
                 "pg_ws.jwt_public_key_file = '%s'" % pem,
                 "pg_ws.jwt_audience = '%s'" % AUDIENCE,
                 "pg_ws.jwt_issuer = '%s'" % ISSUER,
                 "pg_ws.jwt_cookie = '%s'" % COOKIE,
                 "pg_ws.jwt_leeway = '%ds'" % LEEWAY,
                 "pg_ws.allowed_origins = 'https://app.example.com, http://localhost:3000'"]
    elif kind == 'ec':
        pem = write_owned(cl, 'ec_public.pem', jt.public_pem(EC_KEY), 0o644)
        # a cookie without allowed origins: the worker must warn
        conf += ["pg_ws.jwt_public_key_file = '%s'" % pem,
                 "pg_ws.jwt_cookie = '%s'" % COOKIE]
    elif kind == 'none':
        conf = ["pg_ws.auth = 'none'",
                "pg_ws.jwt_secret = '%s'" % INLINE_SECRET,
                "pg_ws.allowed_origins = 'https://app.example.com'"]
    return conf


def configured_cluster(kind):
    cl = Cluster(name=kind)
    cl.conf = configure(kind, cl)
    return cl


_kinds = ClusterKinds(configured_cluster)


async def cluster(ctx, kind):
    """The cluster of this kind, started on first use; ctx's cluster."""
    return await _kinds.get(ctx, kind)


# ---------------------------------------------------------------- tokens

def good(ttl=300, **extra):
    """Claims the jwt cluster accepts: its aud and iss, exp ttl from now."""
    c = jt.claims(ttl, aud=AUDIENCE, iss=ISSUER)
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def hs(ttl=300, **extra):
    return jt.hs256(good(ttl, **extra), SECRET)


# ------------------------------------------------------------- connecting

def token_headers(token, via):
    """Headers and query string that carry token the way via says."""
    if token is None:
        return {}, ''
    if via == 'bearer':
        return {'Authorization': 'Bearer ' + token}, ''
    if via == 'cookie':
        return {'Cookie': 'theme=dark; %s=%s; lang=en' % (COOKIE, token)}, ''
    if via == 'query':
        # a percent-encoded dot: the server must decode the parameter
        return {}, '?x=1&token=' + urllib.parse.quote(token, safe='').replace('.', '%2E', 1)
    raise ValueError(via)


async def subscribe(ctx, token=None, via='bearer', origin=None, headers=None,
                    extra_query=None):
    """A subscriber of ctx's cluster, or the websockets exception."""
    hdrs, query = token_headers(token, via)
    hdrs.update(headers or {})
    if extra_query:
        query += ('&' if query else '?') + extra_query
    ws = await ws_connect(ctx.cl.url + '/ws/' + query, extra_headers=hdrs,
                                  origin=origin, ping_interval=None, max_size=None,
                                  max_queue=None, close_timeout=1, open_timeout=10)
    s = Subscriber(ws)
    ctx.subs.append(s)
    return s


async def refused(ctx, status, token=None, via='bearer', origin=None, headers=None):
    """Check that the websockets client is refused with HTTP status."""
    try:
        await subscribe(ctx, token, via, origin, headers)
    except websockets.InvalidStatusCode as e:
        check(e.status_code == status, 'refused with HTTP %d, expected %d'
              % (e.status_code, status))
        return
    raise Fail('a subscriber (%s, origin %s) was accepted; expected HTTP %d'
               % (via, origin, status))


class RawResponse:
    def __init__(self, sock, status, headers, body):
        self.sock, self.status, self.headers, self.body = sock, status, headers, body

    def rest(self):
        """Whatever else the server sent (a refused client must get nothing)."""
        self.sock.setblocking(False)
        data = b''
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (BlockingIOError, OSError):
            pass
        return data

    def close(self):
        self.sock.close()


def raw_upgrade(port, headers=None, query='', keep=False):
    """Send a WebSocket upgrade of /ws/ by hand; the response as sent."""
    lines = ['GET /ws/%s HTTP/1.1' % query, 'Host: 127.0.0.1:%d' % port,
             'Upgrade: websocket', 'Connection: Upgrade',
             'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13']
    lines += ['%s: %s' % kv for kv in (headers or {}).items()]
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    s.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode())
    data = rawws.read_head(s)
    head, _, body = data.partition(b'\r\n\r\n')
    head_lines = head.decode(errors='replace').split('\r\n')
    hdrs = {}
    for line in head_lines[1:]:
        k, _, v = line.partition(':')
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get('content-length', '0') or 0)
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    r = RawResponse(s, head_lines[0], hdrs, body.decode(errors='replace'))
    if not keep:
        r.close()
    return r


async def raw(ctx, token=None, via='bearer', origin=None, keep=False):
    hdrs, query = token_headers(token, via)
    if origin:
        hdrs['Origin'] = origin
    return await asyncio.to_thread(raw_upgrade, ctx.cl.wsport, hdrs, query, keep)


async def worker_cpu_seconds(conn, seconds):
    """CPU seconds the pg_ws worker used over the next seconds."""
    rows = await asql(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'")
    check(rows, 'no pg_ws worker in pg_stat_activity')

    def ticks():
        with open('/proc/%d/stat' % rows[0][0]) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return int(fields[11]) + int(fields[12])        # utime + stime
    before = ticks()
    await asyncio.sleep(seconds)
    return (ticks() - before) / os.sysconf('SC_CLK_TCK')


def emp(i, first='e', last='auth'):
    return ("INSERT INTO employee (id, first_name, last_name) VALUES (%s, %s, %s)",
            (i, first, last))


def events_of(sub):
    return [json.loads(m)['event'] for m in sub.msgs]


def ids_of(sub):
    return [json.loads(m)['data'].get('id') for m in sub.msgs]


async def wait_closed(sub, timeout, what):
    try:
        await asyncio.wait_for(sub.closed.wait(), timeout)
    except asyncio.TimeoutError:
        raise Fail('%s: still open after %d s' % (what, timeout))
    return sub.ws.close_code, sub.ws.close_reason


# ------------------------------------------------------------------ tests

async def test_transports(ctx):
    """A valid token in each of the three places is accepted, and its
    subscriber receives events."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    subs = {via: await subscribe(ctx, hs(sub='via-' + via), via)
            for via in ('bearer', 'cookie', 'query')}
    # the scheme is case-insensitive (RFC 6750)
    subs['bearer-lower'] = await subscribe(ctx, headers={'Authorization': 'bearer ' + hs()})
    await asql(conn, emp(1001))
    for via, s in subs.items():
        await s.wait_until(lambda m: len(m) >= 1, 15, 'subscriber with a token in ' + via)
        check(ids_of(s) == [1001], '%s: got %s' % (via, [short(m) for m in s.msgs]))


async def test_precedence(ctx):
    """The first place that has a token decides: Bearer, then the cookie,
    then the query; another Authorization scheme is not a token."""
    await cluster(ctx, 'jwt')
    ok, bad = hs(), jt.hs256(good(), 'not-the-secret-' + 'x' * 32)
    both = lambda bearer, cookie, query: {        # noqa: E731
        'Authorization': 'Bearer ' + bearer if bearer else None,
        'Cookie': '%s=%s' % (COOKIE, cookie) if cookie else None}
    cases = [
        ('valid Bearer, bad cookie', both(ok, bad, None), '', 101),
        ('bad Bearer, valid cookie', both(bad, ok, None), '', 401),
        ('valid cookie, bad query', both(None, ok, None), '?token=' + bad, 101),
        ('bad cookie, valid query', both(None, bad, None), '?token=' + ok, 401),
        ('Basic credentials, valid query',
         {'Authorization': 'Basic dXNlcjpwYXNz'}, '?token=' + ok, 101),
        ('valid token in a cookie of another name',
         {'Cookie': 'other_token=%s' % ok}, '', 401),
    ]
    problems = []
    for name, headers, query, want in cases:
        headers = {k: v for k, v in headers.items() if v}
        r = await asyncio.to_thread(raw_upgrade, ctx.cl.wsport, headers, query)
        got = int(r.status.split()[1]) if len(r.status.split()) > 1 else 0
        if got != want:
            problems.append('%s: %r, expected %d (%s)' % (name, r.status, want, short(r.body)))
    check(not problems, *problems)


def refusal_cases():
    """(name, token, via, reason in the body) the jwt cluster answers 401."""
    other = jt.rsa_key()
    pem = jt.public_pem(RSA_KEY)
    c = good()
    sig = jt.hs256(c, SECRET).split('.')[2]
    h = jt.part({'alg': 'HS256', 'typ': 'JWT'})
    p = jt.part(c)
    return [
        ('no token at all', None, 'bearer', 'token required'),
        ('an empty Bearer token', '', 'bearer', 'token is malformed'),
        ('not a JWS', 'garbage', 'bearer', 'token is malformed'),
        ('two parts', h + '.' + p, 'bearer', 'token is malformed'),
        ('four parts', jt.raw(h, p, sig + '.' + sig), 'bearer', 'token is malformed'),
        ('bad base64url', jt.raw(h[:-2] + '!!', p, sig), 'bearer', 'token is malformed'),
        ('base64 padding', jt.raw(h, p, sig + '='), 'query', 'token is malformed'),
        ('header not JSON', jt.raw(jt.b64url('{"alg":"HS256"'), p, sig), 'bearer',
         'token is malformed'),
        ('payload not an object', jt.hs256([1, 2], SECRET), 'bearer', 'token is malformed'),
        ('payload not JSON', jt.hs256('{"exp": 1,}', SECRET), 'cookie', 'token is malformed'),
        # json-c takes these even in strict mode; JSON does not
        ('single-quoted header', jt.raw(jt.b64url("{'alg':'HS256'}"), p, sig), 'bearer',
         'token is malformed'),
        ('NaN in signed claims', jt.hs256(json.dumps(c)[:-1] + ', "x": NaN}', SECRET), 'bearer',
         'token is malformed'),
        ('wrong secret', jt.hs256(c, 'another-secret-' + 'y' * 32), 'bearer',
         'token signature is invalid'),
        ('tampered claims', jt.raw(h, jt.part(dict(c, sub='admin')), sig), 'bearer',
         'token signature is invalid'),
        ('alg none, no signature', jt.unsigned(c), 'bearer', 'token algorithm is not accepted'),
        ('alg none, a signature', jt.unsigned(c, signature=sig), 'bearer',
         'token algorithm is not accepted'),
        ('alg HS512 with the secret', jt.hs256(c, SECRET, alg='HS512', digest=hashlib.sha512),
         'bearer', 'token algorithm is not accepted'),
        ('alg hs256 (lower case)', jt.hs256(c, SECRET, alg='hs256'), 'bearer',
         'token algorithm is not accepted'),
        ('HS/RS confusion: HS256 keyed with the RSA public key PEM', jt.hs256(c, pem),
         'bearer', 'token signature is invalid'),
        ('RS256 by another RSA key', jt.rs256(c, other), 'bearer', 'token signature is invalid'),
        ('ES256 where only RSA and the secret are configured', jt.es256(c, EC_KEY), 'bearer',
         'token algorithm is not accepted'),
        ('a crit header', jt.hs256(c, SECRET, header={'crit': ['exp']}), 'bearer',
         'critical header'),
        ('expired beyond the leeway', hs(ttl=-LEEWAY - 60), 'bearer', 'token expired'),
        ('expired beyond the leeway, in a cookie', hs(ttl=-LEEWAY - 60), 'cookie', 'token expired'),
        ('not yet valid (nbf)', hs(nbf=int(time.time()) + LEEWAY + 120), 'bearer',
         'token is not yet valid'),
        ('no exp', jt.hs256({k: v for k, v in c.items() if k != 'exp'}, SECRET), 'bearer',
         'token has no expiry'),
        ('exp a string', hs(exp=str(int(time.time()) + 300)), 'bearer', 'token claims are malformed'),
        ('nbf a boolean', hs(nbf=True), 'bearer', 'token claims are malformed'),
        ('sub a number', hs(sub=42), 'bearer', 'token claims are malformed'),
        ('wrong aud', hs(aud='someone-else'), 'bearer', 'token audience is not accepted'),
        ('aud list without ours', hs(aud=['a', 'b']), 'bearer', 'token audience is not accepted'),
        ('no aud', jt.hs256({k: v for k, v in c.items() if k != 'aud'}, SECRET), 'bearer',
         'token audience is not accepted'),
        ('aud a number', hs(aud=7), 'bearer', 'token claims are malformed'),
        ('wrong iss', hs(iss='https://evil.example.com'), 'bearer', 'token issuer is not accepted'),
        ('no iss', jt.hs256({k: v for k, v in c.items() if k != 'iss'}, SECRET), 'query',
         'token issuer is not accepted'),
        ('events a string', hs(events='employee_create'), 'bearer', 'events claim is malformed'),
        ('events with a number', hs(events=['employee_create', 1]), 'bearer',
         'events claim is malformed'),
        ('events with a star inside', hs(events=['employee_*_delete']), 'bearer',
         'events claim is malformed'),
    ]


async def test_refusals(ctx):
    """Missing, malformed, forged, expired... tokens: a real HTTP/1.1 401
    with WWW-Authenticate and a reason, no upgrade, and nothing sent."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    problems = []
    kept = []
    try:
        for name, token, via, reason in refusal_cases():
            hdrs, query = token_headers(token, via)
            r = await asyncio.to_thread(raw_upgrade, ctx.cl.wsport, hdrs, query, True)
            kept.append((name, r))
            if r.status != 'HTTP/1.1 401 Unauthorized':
                problems.append('%s: %r (%s)' % (name, r.status, short(r.body)))
            elif not r.headers.get('www-authenticate', '').startswith('Bearer realm="pg_ws"'):
                problems.append('%s: WWW-Authenticate %r' % (name, r.headers.get('www-authenticate')))
            elif reason not in r.body:
                problems.append('%s: reason %r, expected %r' % (name, r.body.strip(), reason))
            elif token and token in r.body:
                problems.append('%s: the response quotes the token' % name)
        # the websockets client sees a refusal too, not a connection
        await refused(ctx, 401, hs(ttl=-LEEWAY - 60))
        # a committed event reaches a valid subscriber, and none of them
        good_sub = await subscribe(ctx, hs())
        await asql(conn, emp(1101))
        await good_sub.wait_until(lambda m: len(m) >= 1, 15, 'the valid subscriber')
        await asyncio.sleep(0.5)
        for name, r in kept:
            rest = await asyncio.to_thread(r.rest)
            if rest:
                problems.append('%s: the refused client was sent %s' % (name, short(rest)))
    finally:
        for _, r in kept:
            r.close()
    check(not problems, '%d of %d cases wrong' % (len(problems), len(kept)), *problems)
    return '%d refusals checked' % len(kept)


async def test_rs256(ctx):
    """RS256 with a generated 2048-bit key; the RSA public key's owner
    signs, the server verifies with the PEM."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    s = await subscribe(ctx, jt.rs256(good(sub='rs'), RSA_KEY))
    await asql(conn, emp(1201))
    await s.wait_until(lambda m: len(m) >= 1, 15, 'RS256 subscriber')


async def test_es256(ctx):
    """ES256 (P-256, raw r||s) on a server with only an EC key: accepted;
    DER signatures, other keys, RS256 and any HS256 are refused;
    pg_ws_sign_token has no secret to sign with; and a token cookie without
    allowed origins is warned about."""
    cl = await cluster(ctx, 'ec')
    conn = await ctx.aconn()
    c = jt.claims(300)
    s = await subscribe(ctx, jt.es256(c, EC_KEY))
    h, p, _ = jt.es256(c, EC_KEY).split('.')
    der = EC_KEY.sign((h + '.' + p).encode(), jt.ec.ECDSA(jt.hashes.SHA256()))
    cases = [
        ('ES256 by another P-256 key', jt.es256(c, jt.ec_key()), 'token signature is invalid'),
        ('ES256 with a DER signature', jt.raw(h, p, jt.b64url(der)), 'token signature is invalid'),
        ('RS256', jt.rs256(c, RSA_KEY), 'token algorithm is not accepted'),
        ('HS/EC confusion: HS256 keyed with the EC public key PEM',
         jt.hs256(c, jt.public_pem(EC_KEY)), 'token algorithm is not accepted'),
        ('HS256 with any secret', jt.hs256(c, SECRET), 'token algorithm is not accepted'),
    ]
    problems = []
    for name, token, reason in cases:
        r = await raw(ctx, token)
        if r.status != 'HTTP/1.1 401 Unauthorized' or reason not in r.body:
            problems.append('%s: %r %r' % (name, r.status, r.body.strip()))
    await asql(conn, emp(1301))
    await s.wait_until(lambda m: len(m) >= 1, 15, 'ES256 subscriber')
    try:
        await asql(conn, "SELECT pg_ws_sign_token('{}', '1 minute')")
        problems.append('pg_ws_sign_token signed without a secret')
    except psycopg2.Error as e:
        if e.pgcode != '55000' or not e.diag.message_hint:
            problems.append('pg_ws_sign_token without a secret: %s %s (hint %s)'
                            % (e.pgcode, e.diag.message_primary, e.diag.message_hint))
    if not any('WARNING:  pg_ws.jwt_cookie is set but pg_ws.allowed_origins is empty' in line
               for line in cl.log_since(0)):
        problems.append('no warning about a token cookie without allowed origins')
    check(not problems, *problems)


def send(event, data=None):
    """pg_ws_send(event, data) as a statement."""
    return ("SELECT pg_ws_send(%s, %s::jsonb)",
            (event, None if data is None else json.dumps(data)))


async def test_events_filter(ctx):
    """The events claim narrows what a connection receives (names,
    prefixes, "*", nothing), custom events (pg_ws_send) by their names
    like the document's: a claim of document events only takes no custom
    event but one its patterns match; an unfiltered one receives
    everything; a ?events= filter narrows it further, never beyond the
    claim."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    subs = {
        'all': await subscribe(ctx, hs()),
        'star': await subscribe(ctx, hs(events=['*']), 'cookie'),
        'employee_create': await subscribe(ctx, hs(events=['employee_create'])),
        'client_*': await subscribe(ctx, hs(events=['client_*']), 'query'),
        'attendance, not its delete': await subscribe(ctx, hs(events=['employee_attendance'])),
        'deletes': await subscribe(ctx, hs(events=['client_delete', 'employee_delete',
                                                  'no_such_event'])),
        'nothing': await subscribe(ctx, hs(events=[])),
        # ?events= narrows within the claim, never beyond it
        'claim client_*, ?events=client_delete,employee_*': await subscribe(
            ctx, hs(events=['client_*']), extra_query='events=client_delete,employee_*'),
        'no claim, ?events=employee_delete': await subscribe(
            ctx, hs(), 'query', extra_query='events=employee_delete'),
        # custom events: by name, never beyond the claim
        'order_*': await subscribe(ctx, hs(events=['order_*'])),
        'claim order_*, ?events=order_paid,invoice_*': await subscribe(
            ctx, hs(events=['order_*']), extra_query='events=order_paid,invoice_*'),
        'claim client_*, ?events=order_*': await subscribe(
            ctx, hs(events=['client_*']), extra_query='events=order_*'),
        'no claim, ?events=invoice_paid': await subscribe(
            ctx, hs(), extra_query='events=invoice_paid'),
    }
    await asql(conn,
               "INSERT INTO client (id, visit_count) VALUES (1401, 0)",
               send('order_paid', {'order': 1401}),
               "INSERT INTO visit_history (client_id, device_id) VALUES (1401, 'd1')",
               "UPDATE client SET age = 30 WHERE id = 1401",
               send('invoice_paid', {'invoice': 1401}),
               emp(1401),
               "UPDATE employee SET first_name = 'x' WHERE id = 1401",
               send('client_note', {'client': 1401}),
               "INSERT INTO attendance (employee_id, device_id) VALUES (1401, 'a1')",
               "DELETE FROM attendance WHERE employee_id = 1401",
               "DELETE FROM employee WHERE id = 1401",
               "DELETE FROM client WHERE id = 1401")
    everything = ['client_create', 'order_paid', 'client_visit_create', 'client_update',
                  'invoice_paid', 'employee_create', 'employee_update', 'client_note',
                  'employee_attendance', 'employee_attendance_delete',
                  'employee_delete', 'client_delete', 'client_visit_delete']
    # the marker: once the unfiltered subscribers have it, all have theirs
    await asql(conn, emp(1402))
    for k in ('all', 'star'):
        await subs[k].wait_until(lambda m: len(m) >= len(everything) + 1, 15, k)
    await asyncio.sleep(0.5)
    want = {
        'all': everything + ['employee_create'],
        'star': everything + ['employee_create'],
        'employee_create': ['employee_create', 'employee_create'],
        # a prefix takes the application's events of that prefix too
        'client_*': ['client_create', 'client_visit_create', 'client_update', 'client_note',
                     'client_delete', 'client_visit_delete'],
        'attendance, not its delete': ['employee_attendance'],
        'deletes': ['employee_delete', 'client_delete'],
        'nothing': [],
        'claim client_*, ?events=client_delete,employee_*': ['client_delete'],
        'no claim, ?events=employee_delete': ['employee_delete'],
        'order_*': ['order_paid'],
        'claim order_*, ?events=order_paid,invoice_*': ['order_paid'],
        'claim client_*, ?events=order_*': [],
        'no claim, ?events=invoice_paid': ['invoice_paid'],
    }
    problems = ['%s: got %s, expected %s' % (k, events_of(s), want[k])
                for k, s in subs.items() if events_of(s) != want[k]]
    problems += ['%s: closed (%s)' % (k, s.close_info) for k, s in subs.items() if s.closed.is_set()]
    check(not problems, *problems)


async def test_live_expiry(ctx):
    """A connection is closed with 4001 and a reason when its token (plus
    the leeway) expires; it receives events until then."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    # accepted thanks to the leeway, expiring about 5 s from now
    s = await subscribe(ctx, hs(ttl=-LEEWAY + 5))
    await asql(conn, emp(1501))
    await s.wait_until(lambda m: len(m) >= 1, 10, 'event before expiry')
    code, reason = await wait_closed(s, 30, 'a subscriber whose token expired')
    check(code == 4001 and reason == 'token expired',
          'closed with %r %r, expected 4001 "token expired"' % (code, reason))


async def test_auth_message_extends(ctx):
    """{"type": "auth", "token": ...} with a fresh token keeps a connection
    open past its first token's expiry."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    short_lived = hs(ttl=-LEEWAY + 5)
    control = await subscribe(ctx, short_lived)
    extended = await subscribe(ctx, short_lived, 'cookie')
    await extended.ws.send(json.dumps({'type': 'auth', 'token': hs(ttl=300)}))
    code, reason = await wait_closed(control, 30, 'the subscriber that did not renew')
    check(code == 4001, 'control closed with %r %r' % (code, reason))
    # past the first token's end (the control is gone): still served
    await asyncio.sleep(1.5)
    await asql(conn, emp(1601))
    await extended.wait_until(lambda m: 1601 in ids_of_msgs(m), 15,
                              'the renewed subscriber after the first token expired')
    check(not extended.closed.is_set(), 'the renewed subscriber was closed')


async def test_auth_message_shortens(ctx):
    """An auth message with a token that expires sooner than the first
    one's closes the connection at the new token's expiry, not the old's:
    housekeeping looks at a connection when something about it falls due
    (conn.c's wheel), and a renewed token plans that look anew.  The
    cluster's pg_ws.ping_interval is its default of 30 s, so no ping's look
    comes first."""
    await cluster(ctx, 'jwt')
    long_lived = await subscribe(ctx, hs(ttl=300))
    s = await subscribe(ctx, hs(ttl=300))
    # accepted thanks to the leeway, expiring about 4 s from now
    await s.ws.send(json.dumps({'type': 'auth', 'token': hs(ttl=-LEEWAY + 4)}))
    code, reason = await wait_closed(s, 20, 'the subscriber whose renewed token expires sooner')
    check(code == 4001 and reason == 'token expired',
          'closed with %r %r, expected 4001 "token expired"' % (code, reason))
    check(not long_lived.closed.is_set(), 'the subscriber that did not renew was closed')


def ids_of_msgs(msgs):
    return [json.loads(m)['data'].get('id') for m in msgs]


async def test_auth_message_narrows(ctx):
    """The new token's claims replace the old ones: an auth message with an
    events claim narrows an unfiltered connection."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    s = await subscribe(ctx, hs())
    await s.ws.send(json.dumps({'type': 'auth', 'token': hs(events=['employee_delete'])}))
    # the message and the events race through the worker: repeat a create
    # and delete until a delete arrives alone, then nothing else may
    narrowed_at = None
    for i in range(1700, 1720):
        await asql(conn, "BEGIN", emp(i), "DELETE FROM employee WHERE id = %d" % i, "COMMIT")
        await s.wait_until(lambda m: ('employee_delete', i) in pairs(m), 15, 'delete %d' % i)
        if ('employee_create', i) not in pairs(s.msgs):
            narrowed_at = len(s.msgs)
            break
    check(narrowed_at is not None, 'the auth message never narrowed the subscription',
          *s.last_lines())
    await asql(conn, emp(1750), "INSERT INTO client (id) VALUES (1750)",
               "DELETE FROM employee WHERE id = 1750")
    await s.wait_until(lambda m: ('employee_delete', 1750) in pairs(m), 15, 'delete 1750')
    await asyncio.sleep(0.3)
    after = pairs(s.msgs[narrowed_at:])
    check(after == [('employee_delete', 1750)], 'after narrowing: %s' % after)


def pairs(msgs):
    return [(json.loads(m)['event'], json.loads(m)['data'].get('id')) for m in msgs]


async def test_auth_message_custom_claims(ctx):
    """An auth message replaces a claim of custom names by another: from
    then on the connection takes the new names, not the old ones."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    s = await subscribe(ctx, hs(events=['order_*', 'refund_issued']))
    await asql(conn, send('order_paid', {'id': 1}), send('invoice_paid', {'id': 1}))
    await s.wait_until(lambda m: ('order_paid', 1) in pairs(m), 15, 'order_paid 1')
    await s.ws.send(json.dumps({'type': 'auth', 'token': hs(events=['invoice_*'])}))
    # as in the test above: repeat until an invoice arrives without its order
    narrowed_at = None
    for i in range(2, 22):
        await asql(conn, "BEGIN", send('order_paid', {'id': i}),
                   send('invoice_paid', {'id': i}), "COMMIT")
        # the old claim takes the order, the new one the invoice
        await s.wait_until(lambda m: ('invoice_paid', i) in pairs(m) or
                           ('order_paid', i) in pairs(m), 15, 'pair %d' % i)
        if ('order_paid', i) not in pairs(s.msgs):
            narrowed_at = len(s.msgs)
            break
    check(narrowed_at is not None, 'the auth message never replaced the claim',
          *s.last_lines())
    check(pairs(s.msgs[:1]) == [('order_paid', 1)], 'before: %s' % pairs(s.msgs))
    await asql(conn, send('refund_issued', {'id': 50}), send('order_paid', {'id': 50}),
               send('invoice_paid', {'id': 50}))
    await s.wait_until(lambda m: ('invoice_paid', 50) in pairs(m), 15, 'invoice 50')
    await asyncio.sleep(0.3)
    after = pairs(s.msgs[narrowed_at:])
    check(after == [('invoice_paid', 50)], 'after the auth message: %s' % after)


async def test_auth_message_rejected(ctx):
    """An auth message with a bad token closes the connection with 4001
    and the reason."""
    await cluster(ctx, 'jwt')
    cases = [
        ('garbage', {'type': 'auth', 'token': 'garbage'}, 'token is malformed'),
        ('no token', {'type': 'auth'}, 'token is malformed'),
        ('wrong secret', {'type': 'auth', 'token': jt.hs256(good(), 'z' * 40)},
         'token signature is invalid'),
        ('expired', {'type': 'auth', 'token': hs(ttl=-LEEWAY - 60)}, 'token expired'),
        ('alg none', {'type': 'auth', 'token': jt.unsigned(good())},
         'token algorithm is not accepted'),
    ]
    subs = []
    for name, msg, reason in cases:
        s = await subscribe(ctx, hs())
        await s.ws.send(json.dumps(msg))
        subs.append((name, s, reason))
    problems = []
    for name, s, reason in subs:
        code, got = await wait_closed(s, 15, name)
        if (code, got) != (4001, reason):
            problems.append('%s: closed with %r %r, expected 4001 %r' % (name, code, got, reason))
    check(not problems, *problems)


async def test_origins(ctx):
    """pg_ws.allowed_origins: a listed origin (any case) is allowed, any
    other gets 403 before the token is even looked at; requests without
    Origin are not affected."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    ok = hs()
    cases = [
        ('foreign origin, valid token', ok, 'https://evil.example.com', 'HTTP/1.1 403 Forbidden'),
        ('foreign origin, no token', None, 'https://evil.example.com', 'HTTP/1.1 403 Forbidden'),
        ('a longer host', ok, 'https://app.example.com.evil.com', 'HTTP/1.1 403 Forbidden'),
        ('another scheme', ok, 'http://app.example.com', 'HTTP/1.1 403 Forbidden'),
        ('another port', ok, 'https://app.example.com:8443', 'HTTP/1.1 403 Forbidden'),
        ('"null"', ok, 'null', 'HTTP/1.1 403 Forbidden'),
        ('listed origin, no token', None, 'https://app.example.com', 'HTTP/1.1 401 Unauthorized'),
    ]
    problems = []
    for name, token, origin, want in cases:
        r = await raw(ctx, token, origin=origin)
        if r.status != want:
            problems.append('%s: %r, expected %r (%s)' % (name, r.status, want, r.body.strip()))
        elif want.startswith('HTTP/1.1 403') and 'origin is not allowed' not in r.body:
            problems.append('%s: body %r' % (name, r.body))
    await refused(ctx, 403, ok, origin='https://evil.example.com')
    subs = [await subscribe(ctx, ok, origin='https://app.example.com'),
            await subscribe(ctx, ok, origin='HTTPS://APP.Example.COM'),
            await subscribe(ctx, ok, origin='http://localhost:3000'),
            await subscribe(ctx, ok)]                # no Origin
    await asql(conn, emp(1801))
    for k, s in enumerate(subs):
        await s.wait_until(lambda m: len(m) >= 1, 15, 'allowed subscriber %d' % k)
    check(not problems, *problems)


async def test_sign_token_sql(ctx):
    """A token minted by pg_ws_sign_token() in SQL, by a role granted
    EXECUTE, is accepted (iss and aud come from the settings), and its
    events claim is enforced."""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn()
    await asql(conn, "DROP ROLE IF EXISTS app_backend", "CREATE ROLE app_backend",
               "GRANT EXECUTE ON FUNCTION pg_ws_sign_token(jsonb, interval) TO app_backend")
    rows = await asql(conn, "SET ROLE app_backend",
                      "SELECT pg_ws_sign_token(jsonb_build_object('sub', 'user-42',"
                      " 'events', jsonb_build_array('employee_*')), '5 minutes')",
                      )
    await asql(conn, "RESET ROLE")
    token = rows[0][0]
    SQL_TOKENS.append(token)
    claims = jt.decode_payload(token)
    check(claims.get('iss') == ISSUER and claims.get('aud') == AUDIENCE
          and claims.get('sub') == 'user-42', 'claims: %s' % claims)
    s = await subscribe(ctx, token)
    await asql(conn, "INSERT INTO client (id) VALUES (1901)", emp(1901))
    await s.wait_until(lambda m: len(m) >= 1, 15, 'subscriber with an SQL-minted token')
    await asyncio.sleep(0.3)
    check(events_of(s) == ['employee_create'], 'got %s' % events_of(s))


async def test_token_expires_far(ctx):
    """pg_ws_connections.token_expires is exp plus pg_ws.jwt_leeway for
    every exp a token may carry: the right date as far as timestamptz
    goes (the year 294276), 'infinity' past it.  (1.2 multiplied without
    a check, and exp 1e13 showed a date in 1970.)"""
    await cluster(ctx, 'jwt')
    conn = await ctx.aconn(timezone='UTC')
    # the last minute timestamptz holds, as Unix seconds
    edge = int((await asql(conn, "SELECT extract(epoch FROM '294276-12-31 23:59:00+00'::timestamptz)"))[0][0])
    cases = [
        ('exp 2100', 4102444800, '2100-01-01 00:00:10+00'),
        ('exp 1e11', 10 ** 11, '5138-11-16 09:46:50+00'),
        ('exp at the edge', edge - LEEWAY, '294276-12-31 23:59:00+00'),
        ('exp past the edge', edge + 60, 'infinity'),
        ('exp 1e13', 10 ** 13, 'infinity'),
        ('exp 2^62', 2 ** 62, 'infinity'),
        ('exp 1e300, a float', 1e300, 'infinity'),
    ]
    for k, (what, exp, _) in enumerate(cases):
        await subscribe(ctx, hs(exp=exp, sub='far-%d' % k))
    rows = dict(await asql(conn, "SELECT subject, token_expires::text FROM pg_ws_connections"
                                 " WHERE subject LIKE 'far-%'"))
    wrong = ['%s: token_expires %r, expected %r' % (what, rows.get('far-%d' % k), want)
             for k, (what, exp, want) in enumerate(cases) if rows.get('far-%d' % k) != want]
    check(not wrong, *wrong)
    return ', '.join('%s: %s' % (what, want) for what, _, want in cases[2:5])


async def test_reload_turns_auth_on(ctx):
    """With pg_ws.auth none everyone may subscribe (origins still apply);
    a reload to jwt closes those without a token (4001), refuses new ones
    (401), accepts tokens signed with the inline secret, and logs what is
    wrong with a bad key file."""
    cl = await cluster(ctx, 'none')
    conn = await ctx.aconn()
    anon = await subscribe(ctx)
    await refused(ctx, 403, origin='https://evil.example.com')
    allowed = await subscribe(ctx, origin='https://app.example.com')
    await asql(conn, emp(2001))
    for s in (anon, allowed):
        await s.wait_until(lambda m: len(m) >= 1, 15, 'subscriber without a token')
    # grants that never expire arm no timer: the worker idles
    cpu = await worker_cpu_seconds(conn, 3.0)
    check(cpu < 0.5, 'the worker used %.2f s of CPU in 3 s with idle subscribers' % cpu)

    bad_pem = write_owned(cl, 'not_a_key.pem', 'this is not a key\n', 0o644)
    since = cl.log_size()
    await asql(conn, "ALTER SYSTEM SET pg_ws.auth = 'jwt'",
               "ALTER SYSTEM SET pg_ws.jwt_public_key_file = '%s'" % bad_pem,
               "SELECT pg_reload_conf()")
    code, reason = await wait_closed(anon, 20, 'the subscriber without a token after the reload')
    check((code, reason) == (4001, 'token required'),
          'closed with %r %r, expected 4001 "token required"' % (code, reason))
    deadline = time.monotonic() + 20
    while (r := await raw(ctx)).status != 'HTTP/1.1 401 Unauthorized':
        check(time.monotonic() < deadline, 'no token still gets %r after the reload' % r.status)
        await asyncio.sleep(0.2)
    s = await subscribe(ctx, jt.hs256(jt.claims(300, sub='after-reload'), INLINE_SECRET))
    await asql(conn, emp(2002))
    await s.wait_until(lambda m: len(m) >= 1, 15, 'subscriber with a token after the reload')
    logged = [line for line in cl.log_since(since)
              if 'pg_ws.jwt_public_key_file' in line and bad_pem in line]
    check(logged, 'the bad public key file was not logged with its path')


async def test_no_secrets_in_log(ctx):
    """After all that, neither secret nor any token (nor a token's
    signature) is in any server log; the refusals are."""
    problems = []
    refusals = 0
    tokens = [t for t in jt.MINTED + SQL_TOKENS if t and len(t) > 20]
    sigs = [t.split('.')[-1] for t in tokens if len(t.split('.')[-1]) >= 20]
    for kind, cl in _kinds.clusters.items():
        if isinstance(cl, Exception):
            continue
        ctx.use(cl)
        lines = cl.log_since(0)
        text = '\n'.join(lines)
        refusals += sum('refused' in line and '401' in line for line in lines)
        for name, secret in (('file secret', SECRET), ('inline secret', INLINE_SECRET)):
            if secret in text:
                problems.append('%s log contains the %s' % (kind, name))
        leaked = [t for t in tokens if t in text] + [s for s in sigs if s in text]
        if leaked:
            problems.append('%s log contains %d tokens or signatures, e.g. %s'
                            % (kind, len(leaked), short(leaked[0], 60)))
    check(refusals > 0, 'no refusal was logged at all')
    check(not problems, *problems)
    return '%d tokens and 2 secrets looked for in %d logs' % (len(tokens), len(_kinds.clusters))


TESTS = [
    ('a valid token in Authorization, a cookie or the query is accepted', test_transports, 60),
    ('precedence: Bearer, then cookie, then query', test_precedence, 30),
    ('bad tokens get a real HTTP/1.1 401 with a reason, and nothing is sent', test_refusals, 60),
    ('RS256 with a generated key is accepted', test_rs256, 20),
    ('ES256 with a generated P-256 key; no secret, no HS256', test_es256, 60),
    ('the events claim narrows what a subscriber receives; ?events= narrows within it', test_events_filter, 30),
    ('a connection is closed with 4001 when its token expires', test_live_expiry, 45),
    ('an auth message with a fresh token extends the connection', test_auth_message_extends, 45),
    ('an auth message with a token that expires sooner closes at its expiry',
     test_auth_message_shortens, 45),
    ('an auth message replaces the claims (narrowing events)', test_auth_message_narrows, 45),
    ('an auth message replaces a claim of custom event names', test_auth_message_custom_claims,
     45),
    ('an auth message with a bad token closes with 4001', test_auth_message_rejected, 30),
    ('allowed_origins: 403 for others, before the token; no Origin is fine', test_origins, 30),
    ('a token minted by pg_ws_sign_token() in SQL is accepted', test_sign_token_sql, 30),
    ('pg_ws_connections.token_expires: far exp values, then infinity past timestamptz',
     test_token_expires_far, 30),
    ('a reload to pg_ws.auth jwt closes and refuses subscribers without a token',
     test_reload_turns_auth_on, 60),
    ('the secrets and the tokens never reach the server log', test_no_secrets_in_log, 20),
]


def main():
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
