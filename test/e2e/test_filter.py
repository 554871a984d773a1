#!/usr/bin/python3
"""End-to-end tests of value filters, /ws/?filter= (PostgREST's operator
syntax over the fields of the row an event is about):

  a. one writer makes clients, visits, employees and attendance, updates
     and deletes them; twelve subscribers, each with its own filter
     (eq, neq, gt/gte/lt/lte, like, ilike, in, is, not., several terms),
     each receive exactly the events whose row the filter holds for, in
     stream order, byte for byte as an unfiltered subscriber gets them:
     deletes included, which are matched by the deleted row's values
     although client_delete and employee_delete carry only the id.  The
     expected events are computed here, by an evaluator of this file's own,
     from the unfiltered subscriber's stream;
  b. the same filters resuming from a snapshot position taken before the
     writes: from the worker's memory, from the WAL after a worker
     restart, and on a hot standby; pg_ws_connections.row_filter shows
     each as given;
  c. values compare as the row's types: 1 and 1.0, ids past 2^53,
     timestamps in other zones, null (only is.null takes it; neq and not.
     do not), non-ASCII text, like on numbers (never);
  d. a filter that is not one is refused with 400 and the reason, before
     the upgrade: an unknown operator, a malformed value, a field no event
     the connection may receive has, more than 16 terms, more than 1024
     bytes, in.() with more than 64 values, given twice;
  e. the same filters in a token's filters claim, one per event pattern
     (the most specific pattern that matches an event's name decides; an
     event no pattern matches is never sent): a subscriber gets exactly
     what its claim allows, deletes included, live and resumed, ?filter=
     narrows it and never widens it, an auth message with a new token
     brings the new claim's filters, and a claim that does not parse is
     refused with 401;
  f. filter columns (pg_ws_watch(..., filter_columns => '{site_id}')): a
     Django app's four tables and a 'row' table carry a site_id that their
     events never show; ?filter=site_id=eq.7, and a token whose claim
     scopes every pattern to site 7, get exactly site 7's events, deletes
     included (computed here from what was written), live, from memory,
     the WAL and a standby, and no subscriber ever sees "site_id"; a field
     pg_ws does not know yet is answered 503 with Retry-After until pg_ws
     has read its filter columns: a declared column is then taken (101), a
     misspelt one refused (400).

Clusters: a primary and a streaming standby, and (e) a primary with
pg_ws.auth = jwt, started by the suite.

Run as root: /usr/bin/python3 test/e2e/test_filter.py   (TAP output)
"""

import asyncio
import json
import os
import re
import sys
import urllib.parse
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, Ctx, Fail, Standby, asql, check,  # noqa: E402
                     restart_worker, run_tap, short, upgrade_status)
import jwt_tools  # noqa: E402
import rawws  # noqa: E402

WATCHDOG_SECONDS = 360

SECRET = 'filter-test-secret-0123456789-abcdefghijklmnop'

NODES = {}

# (filter as written, what it means here)
FILTERS = [
    'device_id=eq.cam-7',
    'gender=eq.female&age=gte.30',
    'email=is.null',
    'first_name=like.Jo*',
    'client=in.(1,2,3)',
    'score=gte.90',
    'age=not.lt.30',
    'datetime=gte.2023-12-10T12:00:00+02:00',
    'id=eq.9007199254740993',
    'score=eq.95.0',
    'first_name=ilike.jos\u00e9',
    'device_id=not.in.(cam-7,"cam,8")&score=lt.95',
    'email=neq.a@example.com',
    'last_name=like.%_e',
]


async def setup():
    primary = Cluster(name='primary')
    await asyncio.to_thread(primary.start)
    await primary.install()
    NODES['primary'] = primary
    standby = Standby(primary, 'standby')
    await asyncio.to_thread(standby.start)
    await standby.wait_listening(standby.wsport, 60)
    NODES['standby'] = standby
    jwt = Cluster(name='jwt', conf=["pg_ws.auth = 'jwt'", "pg_ws.jwt_secret = '%s'" % SECRET])
    await asyncio.to_thread(jwt.start)
    await jwt.install()
    NODES['jwt'] = jwt


# ------------------------------------------------------------ the writes

WRITES = [
    "INSERT INTO client (id, gender, age, visit_count) VALUES"
    " (1, 'female', 34, 0), (2, 'male', 30, 0), (3, 'female', 29, 0),"
    " (4, NULL, NULL, 0), (9007199254740993, 'female', 41, 0)",
    "INSERT INTO visit_history (client_id, datetime, device_id) VALUES"
    " (1, '2023-12-10 09:59:59+00', 'cam-7'), (2, '2023-12-10 10:00:00+00', 'cam-7'),"
    " (3, '2023-12-10 10:00:01+00', 'cam,8'), (4, '2023-12-10 12:00:00+00', 'cam-9'),"
    " (9007199254740993, '2023-12-10 08:00:00+00', 'cam-7')",
    "UPDATE client SET age = age + 1 WHERE id IN (3, 4)",
    "UPDATE visit_history SET device_id = 'cam-7' WHERE client_id = 3",
    "INSERT INTO employee (id, first_name, last_name, email) VALUES"
    " (10, 'John', 'Doe', NULL), (11, 'Jos\u00e9', 'Pe', 'a@example.com'),"
    " (12, 'Ann', 'Lee', 'b@example.com'), (13, 'JOSÉ', 'Ore', NULL)",
    "INSERT INTO attendance (employee_id, device_id, datetime, score) VALUES"
    " (10, 'cam-7', '2023-12-10 10:00:00+00', 95), (11, 'cam,8', '2023-12-10 11:00:00+00', 89.5),"
    " (12, 'cam-9', '2023-12-10 07:00:00+00', 90), (13, 'cam-7', '2023-12-10 13:00:00+00', NULL)",
    "UPDATE employee SET email = NULL WHERE id = 12",
    # deletes: their events carry only keys, the filters see the rows
    "DELETE FROM attendance WHERE employee_id IN (10, 11)",
    "DELETE FROM employee WHERE id IN (12, 13)",
    "DELETE FROM visit_history WHERE client_id = 2",
    "DELETE FROM client WHERE id IN (1, 3, 9007199254740993)",
    "SELECT pg_ws_send('filter_done')",
]


# --------------------------------------------------- this file's evaluator

def parse_time(s):
    s = s.replace('Z', '+00:00')
    t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t


def is_time(s):
    try:
        parse_time(s)
        return len(s) >= 10
    except ValueError:
        return False


def cmp(value, given):
    """-1, 0, 1, or None when unknown."""
    if value is None:
        return None
    if isinstance(value, bool):
        if given not in ('true', 'false'):
            return None
        return (value > (given == 'true')) - (value < (given == 'true'))
    if isinstance(value, (int, float)):
        try:
            from decimal import Decimal
            a, b = Decimal(str(value)), Decimal(given)
        except Exception:
            return None
        return (a > b) - (a < b)
    if isinstance(value, str):
        if is_time(value) and is_time(given):
            a, b = parse_time(value), parse_time(given)
            return (a > b) - (a < b)
        a, b = value.encode(), given.encode()
        return (a > b) - (a < b)
    return None


def like(value, pattern, fold):
    if not isinstance(value, str):
        return None
    pat = pattern.replace('%', '*')
    rx = ''.join('.*' if c == '*' else '.' if c == '_' else
                 ('[%s%s]' % (c.lower(), c.upper()) if fold and c.isascii() and c.isalpha()
                  else re.escape(c)) for c in pat)
    return re.fullmatch(rx, value, re.S) is not None


def split_in(text):
    items, cur, i = [], '', 0
    body = text[1:-1]
    while i < len(body):
        c = body[i]
        if c == '"' and not cur:
            j = body.index('"', i + 1)
            cur = body[i + 1:j]
            i = j + 1
            continue
        if c == ',':
            items.append(cur)
            cur = ''
        else:
            cur += c
        i += 1
    items.append(cur)
    return items


def term_holds(term, row):
    field, rest = term.split('=', 1)
    negate = rest.startswith('not.')
    if negate:
        rest = rest[4:]
    op, given = rest.split('.', 1)
    if field not in row:
        return False
    value = row[field]
    if op == 'is':
        r = {'null': value is None, 'true': value is True, 'false': value is False}[given]
        return not r if negate else r
    if value is None or isinstance(value, (dict, list)):
        return False
    if op in ('like', 'ilike'):
        r = like(value, given, op == 'ilike')
    elif op == 'in':
        r = any(cmp(value, g) == 0 for g in split_in(given))
    else:
        c = cmp(value, given)
        if c is None:
            return False
        r = {'eq': c == 0, 'neq': c != 0, 'gt': c > 0, 'gte': c >= 0,
             'lt': c < 0, 'lte': c <= 0}[op]
    if r is None:
        return False
    return not r if negate else r


def rows_of(ref):
    """For each message of the unfiltered stream, the row a filter sees:
    its data, or for a delete whose data has only keys, the row as the
    stream last showed it."""
    clients, employees, attendance = {}, {}, {}
    out = []
    for raw in ref:
        m = json.loads(raw)
        ev, d = m['event'], m['data']
        row = dict(d or {})
        if ev in ('client_create', 'client_update'):
            clients[d['id']] = d
        elif ev == 'employee_create' or ev == 'employee_update':
            employees[d['id']] = d
        elif ev == 'employee_attendance':
            attendance[(d['employee_id'], d['datetime'])] = d
        elif ev == 'client_delete':
            row = {k: v for k, v in clients[d['id']].items()
                   if k not in ('image', 'visit_histories')}
        elif ev == 'employee_delete':
            row = {k: v for k, v in employees[d['id']].items() if k != 'image'}
        elif ev == 'employee_attendance_delete':
            row = {k: v for k, v in attendance[(d['employee_id'], d['datetime'])].items()
                   if k != 'image'}
        out.append((raw, row))
    return out


def expected(rows, text):
    terms = text.split('&')
    return [raw for raw, row in rows if all(term_holds(t, row) for t in terms)]


def path(text, since=None):
    q = 'filter=' + urllib.parse.quote(text, safe='')
    if since:
        q = 'since=' + since + '&' + q
    return '/ws/?' + q


def done(msgs):
    return bool(msgs) and '"filter_done"' in msgs[-1]


async def received(sub, want, who):
    """Wait for as many messages as expected (the end marker is filtered
    out too), and a little longer for any extra one."""
    await sub.wait_until(lambda m: len(m) >= len(want), 30, who)
    await asyncio.sleep(0.3)
    compare(sub.msgs, want, who)


async def position(node):
    conn = await asyncio.to_thread(node.connect, autocommit=False)
    try:
        conn.set_session(isolation_level='REPEATABLE READ')
        return (await asql(conn, "SELECT pg_ws_position()"))[0][0]
    finally:
        conn.close()


def compare(got, want, who):
    if got == want:
        return
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    raise Fail('%s: %d messages, expected %d; first difference at %d' % (who, len(got), len(want), i),
               '  expected: %s' % (short(want[i], 160) if i < len(want) else '(none)'),
               '  got:      %s' % (short(got[i], 160) if i < len(got) else '(none)'))


async def run_sql(node, stmts):
    conn = await asyncio.to_thread(node.connect)
    try:
        for stmt in stmts:
            await asql(conn, stmt)
    finally:
        conn.close()


async def write_all(node):
    await run_sql(node, ["TRUNCATE client, employee CASCADE"] + WRITES)


async def test_live_and_resumed(ctx):
    """a, b. every filter, live and resumed from memory, the WAL, a standby."""
    p, st = NODES['primary'], NODES['standby']
    ctx.use(p)
    ctx.use(st)
    since = await position(p)
    ref = await ctx.sub('/ws/', url=p.url)
    live = {f: await ctx.sub(path(f), url=p.url) for f in FILTERS}
    # pg_ws_connections shows each connection's filter as given
    conn = await asyncio.to_thread(p.connect)
    try:
        shown = sorted(r[0] for r in await asql(
            conn, "SELECT row_filter FROM pg_ws_connections WHERE row_filter IS NOT NULL"))
    finally:
        conn.close()
    check(shown == sorted(FILTERS), 'pg_ws_connections.row_filter: %s' % shown)
    await write_all(p)
    await ref.wait_until(done, 30, 'the unfiltered subscriber')
    rows = rows_of(ref.msgs)
    matched = 0
    for f, sub in live.items():
        want = expected(rows, f)
        check(len(want) > 0 and len(want) < len(rows) - 1,
              'filter %s selects %d of %d events here: a test that cannot fail'
              % (f, len(want), len(rows)))
        await received(sub, want, 'live ?filter=%s' % f)
        matched += len(want)
    deletes = [raw for raw, _ in rows if '_delete"' in raw[:40]]
    check(any(raw in expected(rows, f) for f in FILTERS for raw in deletes
              if '"client_delete"' in raw) and
          any(raw in expected(rows, f) for f in FILTERS for raw in deletes
              if '"employee_delete"' in raw) and
          any(raw in expected(rows, f) for f in FILTERS for raw in deletes
              if '"employee_attendance_delete"' in raw),
          'the filters take no client, employee or attendance delete')

    # from the worker's memory, with a snapshot position from before
    for f in FILTERS:
        sub = await ctx.sub(path(f, since), url=p.url)
        await received(sub, expected(rows, f), 'resumed from memory, ?filter=%s' % f)
    # on the standby
    for f in FILTERS:
        sub = await ctx.sub(path(f, since), url=st.url)
        await received(sub, expected(rows, f), 'on the standby, ?filter=%s' % f)
    # from the WAL, once the worker that had them in memory is gone
    await restart_worker(p)
    for f in FILTERS:
        sub = await ctx.sub(path(f, since), url=p.url)
        await received(sub, expected(rows, f), 'resumed from the WAL, ?filter=%s' % f)
    return '%d filters, %d events of %d matched, live, from memory, the WAL and a standby' % (
        len(FILTERS), matched, len(rows))


async def test_bad_filters(ctx):
    """d. what is not a filter gets a 400 that says why."""
    p = ctx.use(NODES['primary'])
    bad = {
        'device_id=equals.cam-7': 'unknown operator',
        'device_id': 'field=operator.value',
        'device_id=eq': 'field=operator.value',
        'client=in.1,2': 'in takes a list',
        'client=in.("1,2)': 'unterminated',
        'email=is.nothing': 'is takes null, true or false',
        'Device=eq.x': 'field name',
        'colour=eq.red': 'no event this connection may receive has a field "colour"',
        '&'.join(['age=gt.%d' % i for i in range(17)]): 'at most 16 terms',
        'device_id=eq.' + 'x' * 1100: 'at most 1024 bytes',
        'client=in.(%s)' % ','.join(str(i) for i in range(65)): 'at most 64 values',
        'age=gt.': 'needs a value',
        'first_name=like.' + 'a' * 257: 'at most 256 bytes',
    }
    for text, why in bad.items():
        # colour may be a filter column: 503 until pg_ws has read them (f)
        code = await upgraded(p.url, path(text) + ('&events=client_create'
                                                   if 'colour' in text else ''))
        check(code == 400, '?filter=%s: %s, expected 400' % (short(text, 60), code))
    # the reason is in the answer
    raw = rawws.upgrade_request(p.wsport, path('device_id=equals.cam-7'))
    code, _, body, _, _ = await asyncio.to_thread(rawws.http_exchange, p.wsport, raw)
    check(code == 400 and b'unknown operator' in body,
          'the 400 does not say why: %s %s' % (code, short(body.decode(errors='replace'))))
    # twice
    code = await upgrade_status(p.url, '/ws/?filter=age%3Dgt.1&filter=age%3Dlt.9')
    check(code == 400, 'filter given twice: %s, expected 400' % code)
    # a field of other events is accepted where the connection takes them
    code = await upgrade_status(p.url, path('colour=eq.red'))
    check(code == 101, 'colour=eq.red with every event: %s, expected 101' % code)
    return '%d malformed filters refused with 400' % (len(bad) + 1)


# a site's token: visits and attendance of its devices, female clients,
# employees without an email; nothing else (no pattern takes filter_done)
CLAIM = {
    'client_visit_*': 'device_id=in.(cam-7,"cam,8")',
    'employee_attendance*': 'device_id=in.(cam-7,"cam,8")',
    'client_*': 'gender=eq.female',
    'employee_*': 'email=is.null',
}
# the one an auth message brings instead
CLAIM2 = {'employee_attendance*': 'score=gte.90', 'employee*': 'first_name=ilike.j*'}


def claim_allows(claim, raw, row):
    """The most specific pattern that matches the event's name decides."""
    name = json.loads(raw)['event']
    best = None
    for pat in claim:
        stem = pat[:-1] if pat.endswith('*') else pat
        if (name.startswith(stem) if pat.endswith('*') else name == pat):
            rank = (1, 0) if not pat.endswith('*') else (0, len(stem))
            if best is None or rank > best[0]:
                best = (rank, pat)
    return best is not None and all(term_holds(t, row) for t in claim[best[1]].split('&'))


def token(claim, ttl=300):
    return jwt_tools.hs256(jwt_tools.claims(ttl=ttl, sub='site-7', filters=claim), SECRET)


async def test_claims(ctx):
    """e. a token's filters claim, narrowed by ?filter=, renewed by an auth message."""
    j = ctx.use(NODES['jwt'])
    tok = token(CLAIM)
    since = await position(j)
    everything = await ctx.sub('/ws/?token=' + jwt_tools.hs256(jwt_tools.claims(), SECRET))
    site = await ctx.sub('/ws/?token=' + tok)
    narrowed = await ctx.sub(path('age=gte.30') + '&token=' + tok)
    await write_all(j)
    await everything.wait_until(done, 30, 'the unclaimed subscriber')
    rows = rows_of(everything.msgs)
    want = [raw for raw, row in rows if claim_allows(CLAIM, raw, row)]
    check(0 < len(want) < len(rows) - 1 and
          any('"client_delete"' in r for r in want) and
          any('"employee_delete"' in r for r in want) and
          any('"employee_attendance_delete"' in r for r in want),
          'the claim takes %d of %d events, or no delete of each kind' % (len(want), len(rows)))
    await received(site, want, 'the site token')
    want_narrowed = [raw for raw, row in rows
                     if claim_allows(CLAIM, raw, row) and term_holds('age=gte.30', row)]
    check(0 < len(want_narrowed) < len(want), 'age=gte.30 narrows nothing here')
    await received(narrowed, want_narrowed, 'the site token with ?filter=age=gte.30')
    # a ?filter= that the claim does not allow stays unallowed: never wider
    wider = await ctx.sub(path('gender=eq.male') + '&token=' + tok + '&since=' + since)
    await received(wider, [], 'the site token with ?filter=gender=eq.male')
    # resumed from a position before the writes
    resumed = await ctx.sub('/ws/?since=%s&token=%s' % (since, tok))
    await received(resumed, want, 'the site token resumed')

    # an auth message with another claim: its filters from then on
    renewed = await ctx.sub('/ws/?token=' + tok)
    await renewed.ws.send(json.dumps({'type': 'auth', 'token': token(CLAIM2)}))
    await asyncio.sleep(0.5)
    mark = len(everything.msgs)
    await write_all(j)
    await everything.wait_until(lambda m: len(m) > mark and done(m), 30, 'the second round')
    rows2 = rows_of(everything.msgs)[mark:]
    want2 = [raw for raw, row in rows2 if claim_allows(CLAIM2, raw, row)]
    check(0 < len(want2) < len(rows2) - 1, 'the second claim takes %d of %d' % (len(want2), len(rows2)))
    await received(renewed, want2, 'after an auth message with another claim')

    # claims that do not parse: 401
    for bad in ({'client_*': 'gender=equals.female'}, {'Client*': 'age=eq.1'},
                {'client_*': 42}, ['client_*'], {'client_*': 'colour'}):
        t = jwt_tools.hs256(jwt_tools.claims(filters=bad), SECRET)
        code = await upgrade_status(j.url, '/ws/?token=' + t)
        check(code == 401, 'filters claim %r: %s, expected 401' % (bad, code))
    return '%d of %d events allowed by the claim, %d with ?filter= too, %d after renewal' % (
        len(want), len(rows), len(want_narrowed), len(want2))


# ------------------------------------------------- (f) filter columns

SITE_DDL = [
    "CREATE SCHEMA sites",
    "CREATE TABLE sites.app_client (id bigint PRIMARY KEY, first_seen timestamptz,"
    " last_seen timestamptz, visit_count integer NOT NULL DEFAULT 0, gender varchar(10),"
    " age integer, image varchar(100), site_id integer)",
    "CREATE TABLE sites.app_visithistory (id bigserial PRIMARY KEY, datetime timestamptz NOT NULL,"
    " device_id varchar(255) NOT NULL, client_id bigint NOT NULL, site_id integer)",
    "CREATE TABLE sites.app_employee (id bigint PRIMARY KEY, first_name varchar(100) NOT NULL,"
    " last_name varchar(100) NOT NULL, email varchar(254), phone_number varchar(20),"
    " image varchar(100), working_graphic_id bigint, site_id integer)",
    "CREATE TABLE sites.app_attendance (id bigserial PRIMARY KEY, device_id varchar(255) NOT NULL,"
    " image varchar(100), datetime timestamptz NOT NULL, score double precision,"
    " employee_id bigint NOT NULL, site_id integer)",
    "CREATE TABLE sites.gate (id integer PRIMARY KEY, name text, site_id integer)",
]
SITE_WATCHES = [
    "SELECT pg_ws_watch('sites.app_visithistory', 'visit_history', filter_columns => '{site_id}')",
    "SELECT pg_ws_watch('sites.app_client', 'client', filter_columns => '{site_id}')",
    "SELECT pg_ws_watch('sites.app_employee', 'employee', filter_columns => '{site_id}')",
    "SELECT pg_ws_watch('sites.app_attendance', 'attendance', filter_columns => '{site_id}')",
    "SELECT pg_ws_watch('sites.gate', 'row', columns => '{id,name}', filter_columns => '{site_id}')",
]
# which site each row is of: the test knows, the events do not say
CLIENT_SITE = {21: 7, 22: 8, 23: 7}
EMPLOYEE_SITE = {31: 7, 32: 8}
GATE_SITE = {41: 7, 42: 8}
SITE_WRITES = [
    "INSERT INTO sites.app_client (id, gender, age, site_id) VALUES"
    " (21, 'female', 30, 7), (22, 'male', 40, 8), (23, NULL, NULL, 7)",
    "INSERT INTO sites.app_visithistory (client_id, datetime, device_id, site_id) VALUES"
    " (21, '2023-12-10 10:00:00+00', 'cam-7', 7), (22, '2023-12-10 11:00:00+00', 'cam-8', 8),"
    " (23, '2023-12-10 12:00:00+00', 'cam-7', 7)",
    "UPDATE sites.app_client SET age = 31 WHERE id IN (21, 22)",
    "UPDATE sites.app_visithistory SET device_id = 'cam-x'",
    "INSERT INTO sites.app_employee (id, first_name, last_name, site_id) VALUES"
    " (31, 'Ann', 'Lee', 7), (32, 'Bob', 'Ray', 8)",
    "INSERT INTO sites.app_attendance (employee_id, device_id, datetime, score, site_id) VALUES"
    " (31, 'cam-7', '2023-12-10 09:00:00+00', 90, 7), (32, 'cam-8', '2023-12-10 09:30:00+00', 80, 8)",
    "UPDATE sites.app_employee SET email = 'x@example.com'",
    "INSERT INTO sites.gate VALUES (41, 'north', 7), (42, 'south', 8)",
    "UPDATE sites.gate SET name = name || '!'",
    "DELETE FROM sites.gate",
    "DELETE FROM sites.app_attendance",
    "DELETE FROM sites.app_employee",
    "DELETE FROM sites.app_visithistory WHERE client_id IN (21, 22)",
    "DELETE FROM sites.app_client WHERE id IN (21, 22)",
    "SELECT pg_ws_send('sites_done')",
]
# a connection that takes only the document's events: its ?filter= fields
# must be the document's or filter columns pg_ws has read (filtercols.c)
DOCUMENT_EVENTS = ('client_create,client_update,client_delete,client_visit_create,'
                   'client_visit_update,client_visit_delete,employee_create,employee_update,'
                   'employee_delete,employee_attendance,employee_attendance_delete')


def site_of(raw):
    """The site of the row an event of the unfiltered stream is about,
    from what SITE_WRITES wrote; None for events of no site."""
    m = json.loads(raw)
    ev, d = m['event'], m['data'] or {}
    if ev.startswith('client_visit'):
        return CLIENT_SITE[d['client']]
    if ev.startswith('client_'):
        return CLIENT_SITE[d['id']]
    if ev.startswith('employee_attendance'):
        return EMPLOYEE_SITE[d['employee_id']]
    if ev.startswith('employee_'):
        return EMPLOYEE_SITE[d['id']]
    if ev.startswith('gate_'):
        return GATE_SITE[d['id']]
    return None


def sites_done(msgs):
    return bool(msgs) and '"sites_done"' in msgs[-1]


async def upgraded(url, p, deadline=15):
    """Retry an upgrade answered 503 until it is not; its last status."""
    end = asyncio.get_running_loop().time() + deadline
    while True:
        code = await upgrade_status(url, p)
        if code != 503 or asyncio.get_running_loop().time() > end:
            return code
        await asyncio.sleep(1)


async def site_sub(ctx, node, text, since=None, events=None, token=None):
    q = path(text, since) + ('&events=' + events if events else '') + \
        ('&token=' + token if token else '')
    code = await upgraded(node.url, q)
    check(code == 101, '%s: %s, expected 101' % (q, code))
    return await ctx.sub(q, url=node.url)


def no_filter_columns(subs, who):
    for sub in subs:
        for raw in sub.msgs:
            check('site_id' not in raw and '\t' not in raw,
                  '%s: a message carries the filter column: %s' % (who, short(raw, 160)))


async def test_filter_columns_declared(ctx):
    """f. a field pg_ws does not know: 503 until read, then 101 or 400."""
    p = ctx.use(NODES['primary'])
    before = path('site_id=eq.7') + '&events=' + DOCUMENT_EVENTS
    typo = path('site_idd=eq.7') + '&events=' + DOCUMENT_EVENTS
    # not declared yet: the first request starts a read and gets 503 with
    # Retry-After, the retry the read's answer, 400
    raw = rawws.upgrade_request(p.wsport, before)
    code, headers, body, _, _ = await asyncio.to_thread(rawws.http_exchange, p.wsport, raw)
    check(code == 503 and headers.get('retry-after') == '1' and b'filter columns' in body,
          'a field not declared yet: %s %s %s, expected 503 with Retry-After: 1'
          % (code, headers, short(body.decode(errors='replace'))))
    code = await upgraded(p.url, before)
    check(code == 400, 'a field not declared, once read: %s, expected 400' % code)
    # declared: the next request that names it is taken, after a 503 at most
    await run_sql(p, SITE_DDL + SITE_WATCHES)
    code = await upgrade_status(p.url, before)
    check(code in (503, 101), 'a field just declared: %s, expected 503 or 101' % code)
    code = await upgraded(p.url, before)
    check(code == 101, 'a declared field, retried: %s, expected 101' % code)
    # on the standby too, once the declaration is replayed
    st = ctx.use(NODES['standby'])
    code = await upgraded(st.url, before, deadline=30)
    check(code == 101, 'a declared field on the standby: %s, expected 101' % code)
    # a misspelt field: 503, then 400
    first = await upgrade_status(p.url, typo)
    check(first == 503, 'a misspelt field, first: %s, expected 503' % first)
    code = await upgraded(p.url, typo)
    check(code == 400, 'a misspelt field, retried: %s, expected 400' % code)
    return 'undeclared: 503 then 400; declared: 101 (primary and standby); misspelt: 503 then 400'


async def test_no_reader_slot(ctx):
    """f. with no free max_worker_processes slot for the catalog reader,
    every field is taken (a filter on a field no event has matches
    nothing), and the log says how to mend it."""
    # PostgreSQL's logical replication launcher and pg_ws's worker
    cl = Cluster(name='noslot', conf=['max_worker_processes = 2'])
    await asyncio.to_thread(cl.start)
    await cl.install()
    ctx.use(cl)
    q = path('site_id=eq.7') + '&events=' + DOCUMENT_EVENTS
    code = await upgrade_status(cl.url, q)
    check(code == 101, 'a field pg_ws cannot look up: %s, expected 101' % code)
    sub = await ctx.sub(q, url=cl.url)
    everything = await ctx.sub('/ws/', url=cl.url)
    conn = await asyncio.to_thread(cl.connect)
    try:
        await asql(conn, "INSERT INTO client (id, visit_count) VALUES (1, 0)",
                   "SELECT pg_ws_send('filter_done')")
    finally:
        conn.close()
    await everything.wait_until(done, 30, 'the unfiltered subscriber')
    await asyncio.sleep(0.3)
    check(sub.msgs == [], 'site_id=eq.7 took events no row of which has a site_id: %s'
          % short(str(sub.msgs)))
    log = '\n'.join(await asyncio.to_thread(cl.log_since))
    check('could not start its catalog reader' in log and 'max_worker_processes' in log,
          'the log does not say the catalog reader could not start')
    return 'taken with 101, matched nothing, logged'


async def test_filter_columns(ctx):
    """f. site 7's events by a column no event carries."""
    p, st = NODES['primary'], NODES['standby']
    ctx.use(p)
    ctx.use(st)
    since = await position(p)
    ref = await ctx.sub('/ws/', url=p.url)
    live = [await site_sub(ctx, p, 'site_id=eq.7'),
            await site_sub(ctx, p, 'site_id=eq.7', events=DOCUMENT_EVENTS)]
    await run_sql(p, SITE_WRITES)
    await ref.wait_until(sites_done, 30, 'the unfiltered subscriber')
    events = [raw for raw in ref.msgs if site_of(raw) is not None]
    want = [raw for raw in events if site_of(raw) == 7]
    want_doc = [raw for raw in want if not raw.startswith('{"event": "gate_')]
    kinds = {json.loads(raw)['event'] for raw in want}
    check(kinds == {'client_create', 'client_update', 'client_delete', 'client_visit_create',
                    'client_visit_update', 'client_visit_delete', 'employee_create',
                    'employee_update', 'employee_delete', 'employee_attendance',
                    'employee_attendance_delete', 'gate_create', 'gate_update', 'gate_delete'}
          and len(want) < len(events),
          'site 7 has %d of %d events, of kinds %s: a test that cannot fail'
          % (len(want), len(events), sorted(kinds)))
    await received(live[0], want, 'live ?filter=site_id=eq.7')
    await received(live[1], want_doc, 'live ?filter=site_id=eq.7, the document only')
    subs = [ref] + live
    # from the worker's memory, on the standby, from the WAL
    for node, who in ((p, 'resumed from memory'), (st, 'on the standby')):
        sub = await site_sub(ctx, node, 'site_id=eq.7', since=since)
        await received(sub, want, '%s, ?filter=site_id=eq.7' % who)
        doc = await site_sub(ctx, node, 'site_id=eq.7', since=since, events=DOCUMENT_EVENTS)
        await received(doc, want_doc, '%s, the document only' % who)
        subs += [sub, doc]
    await restart_worker(p)
    sub = await site_sub(ctx, p, 'site_id=eq.7', since=since)
    await received(sub, want, 'resumed from the WAL, ?filter=site_id=eq.7')
    doc = await site_sub(ctx, p, 'site_id=eq.7', since=since, events=DOCUMENT_EVENTS)
    await received(doc, want_doc, 'resumed from the WAL, the document only')
    subs += [sub, doc]
    no_filter_columns(subs, 'primary and standby')
    return '%d of %d events of site 7, live, from memory, the WAL and a standby' % (
        len(want), len(events))


SITE_CLAIM = {'client_*': 'site_id=eq.7', 'employee*': 'site_id=eq.7', 'gate_*': 'site_id=eq.7'}


async def test_filter_columns_claim(ctx):
    """f. a token's filters claim scoping to site 7 by its filter column."""
    j = ctx.use(NODES['jwt'])
    await run_sql(j, SITE_DDL + SITE_WATCHES)
    tok = token(SITE_CLAIM)
    since = await position(j)
    everything = await ctx.sub('/ws/?token=' + jwt_tools.hs256(jwt_tools.claims(), SECRET))
    site = await ctx.sub('/ws/?token=' + tok)
    await run_sql(j, SITE_WRITES)
    await everything.wait_until(sites_done, 30, 'the unclaimed subscriber')
    want = [raw for raw in everything.msgs if site_of(raw) == 7]
    check(any('"client_delete"' in r for r in want) and any('"gate_delete"' in r for r in want)
          and any('"employee_attendance_delete"' in r for r in want),
          'the claim takes no delete of some kind')
    await received(site, want, 'the site 7 token')
    resumed = await ctx.sub('/ws/?since=%s&token=%s' % (since, tok))
    await received(resumed, want, 'the site 7 token resumed')
    no_filter_columns([everything, site, resumed], 'the jwt cluster')
    return '%d of %d events allowed by a claim on site_id' % (len(want), len(everything.msgs))


TESTS = [
    ('(d) a filter that is not one gets 400 with the reason', test_bad_filters, 60),
    ('(a, b, c) 14 filters get exactly their events, deletes by their rows, live,'
     ' from memory, the WAL and a standby', test_live_and_resumed, 200),
    ('(e) a token\'s filters claim: per event pattern, narrowed by ?filter=, renewed'
     ' by an auth message; a bad claim gets 401', test_claims, 120),
    ('(f) with no worker slot for the catalog reader every field is taken, and the log says so',
     test_no_reader_slot, 60),
    ('(f) a field pg_ws does not know yet gets 503 with Retry-After until it has read'
     ' its filter columns: then 101 when declared, 400 when misspelt',
     test_filter_columns_declared, 90),
    ('(f) filter columns scope events by a column no event carries: site 7\'s events,'
     ' deletes included, live, from memory, the WAL and a standby', test_filter_columns, 150),
    ('(f) a token\'s filters claim scopes by a filter column', test_filter_columns_claim, 90),
]

if __name__ == '__main__':
    run_tap(TESTS, Ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)
