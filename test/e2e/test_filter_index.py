#!/usr/bin/python3
"""End-to-end tests of the worker's ?filter= index (broadcast.c): an idle
subscriber whose filter has a term field=eq.v or field=in.(...) waits in
an index under the values of that term, and is woken only by the events
that carry one of them, so that an event costs nothing for the
subscribers it is not for.

  a. on a primary, about a hundred subscribers, one per device
     (device_id=eq.cam-N) and a few with other indexable terms (a number
     written as 7.0, ids past 2^53, in.() lists, a timestamp in another
     zone, a string that reads as a number, a term after a range), and a
     few that cannot wait in the index (neq, like, not.): every one
     receives exactly the events its filter holds for, in stream order,
     byte for byte as an unfiltered subscriber gets them, deletes
     included, through bursts for one device and while a third of the
     indexed subscribers close mid-stream.  /metrics counts the
     subscribers waiting in the index (pg_ws_subscribers_indexed): all the
     indexable ones while nothing is sent, and all of them again once the
     stream is over (a count of 0 means no index: the test fails without
     it);
  b. the same on a hot standby, whose events come from replay;
  c. a token's filters claim whose every pattern has such a term waits in
     the index under each pattern's field and values (one field or
     several), one whose claim has a pattern without one does not: each
     gets exactly what its claim allows; an auth message with a token of
     another claim moves the subscriber to the new claim's place in the
     index, and it gets exactly the new claim's events.

The expected events are computed by test_filter.py's evaluator from the
unfiltered subscriber's stream.

Clusters: a primary and a streaming standby, and (c) a primary with
pg_ws.auth = jwt, started by the suite.

Run as root: /usr/bin/python3 test/e2e/test_filter_index.py   (TAP output)
"""

import asyncio
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Ctx, asql, check, run_tap, short  # noqa: E402
import jwt_tools  # noqa: E402
import rawws  # noqa: E402
# the same clusters: a primary, its standby and a primary with tokens
from test_filter import (NODES, SECRET, claim_allows, compare,  # noqa: E402
                         done, expected, path, rows_of, setup)

WATCHDOG_SECONDS = 400

DEVICES = 80
BIG = 9007199254740993

# filters that can wait in the index, besides one per device
INDEXABLE = [
    'client=eq.7.0',
    'client=in.(3,5,%d)' % BIG,
    'id=eq.%d' % BIG,
    'datetime=eq.2023-12-10T15:30:00+05:30',
    'device_id=eq.007',
    'device_id=eq.7',
    'device_id=in.(cam-1,"cam,x",cam-2)',
    'age=gte.30&gender=eq.female',
    'device_id=eq.cam-4&score=gte.90',
    'email=eq.a@example.com',
]
# filters that cannot: they are asked about every event
NOT_INDEXABLE = [
    'device_id=neq.cam-1',
    'device_id=like.cam-1*',
    'device_id=not.eq.cam-2',
    'age=gte.30',
]


def metrics_indexed(port):
    """pg_ws_subscribers_indexed from GET /metrics."""
    raw = ('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % port).encode()
    code, _, body, _, _ = rawws.http_exchange(port, raw)
    check(code == 200, 'GET /metrics: %s' % code)
    m = re.search(rb'^pg_ws_subscribers_indexed (\d+)$', body, re.M)
    check(m is not None, '/metrics has no pg_ws_subscribers_indexed')
    return int(m.group(1))


async def wait_indexed(node, want, what):
    """Wait (state, not time: up to 30 s) until /metrics counts want."""
    got = None
    for _ in range(300):
        got = await asyncio.to_thread(metrics_indexed, node.wsport)
        if got == want:
            return
        await asyncio.sleep(0.1)
    check(False, '%s: pg_ws_subscribers_indexed is %s, expected %d' % (what, got, want))


def writes():
    """Transactions of every kind of event, most of them visits spread
    over the devices, with bursts for one device in one transaction."""
    rnd = random.Random(17)
    out = [
        "TRUNCATE client, employee CASCADE",
        "INSERT INTO client (id, gender, age, visit_count) SELECT i,"
        " CASE WHEN i % 2 = 0 THEN 'female' ELSE 'male' END, 20 + i, 0"
        " FROM generate_series(1, 30) i",
        "INSERT INTO client (id, gender, age, visit_count) VALUES (%d, 'female', 41, 0)" % BIG,
        # every device has a visit
        "INSERT INTO visit_history (client_id, datetime, device_id)"
        " SELECT 1 + i %% 30, '2023-12-10 09:00:00+00', 'cam-' || i"
        " FROM generate_series(0, %d) i" % (DEVICES - 1),
    ]
    for t in range(40):
        rows = []
        for _ in range(rnd.randint(1, 12)):
            dev = rnd.choice(['cam-%d' % rnd.randrange(DEVICES)] * 8 + ['007', '7', 'cam,x'])
            client = rnd.choice(list(range(1, 31)) + [BIG])
            when = rnd.choice(['2023-12-10 10:00:00+00', '2023-12-10 10:00:01+00',
                               '2023-12-10 15:30:00+00'])
            rows.append("(%d, '%s', '%s')" % (client, when, dev))
        out.append("INSERT INTO visit_history (client_id, datetime, device_id) VALUES "
                   + ', '.join(rows))
        if t == 20:
            # a burst for one device, in one transaction
            out.append("INSERT INTO visit_history (client_id, datetime, device_id)"
                       " SELECT 1 + i % 30, '2023-12-10 11:00:00+00', 'cam-3'"
                       " FROM generate_series(1, 60) i")
    out += [
        "UPDATE client SET age = age + 1 WHERE id % 3 = 0",
        "INSERT INTO employee (id, first_name, last_name, email) VALUES"
        " (10, 'John', 'Doe', NULL), (11, 'Ann', 'Pe', 'a@example.com')",
        "INSERT INTO attendance (employee_id, device_id, datetime, score) VALUES"
        " (10, 'cam-4', '2023-12-10 10:00:00+00', 95), (11, 'cam-4', '2023-12-10 11:00:00+00', 89.5),"
        " (10, 'cam-5', '2023-12-10 12:00:00+00', 99)",
        "DELETE FROM attendance WHERE score < 90",
        "DELETE FROM employee WHERE id = 11",
        "DELETE FROM visit_history WHERE device_id IN ('cam-1', '7')",
        "DELETE FROM client WHERE id IN (3, 7, %d)" % BIG,
        "SELECT pg_ws_send('filter_done')",
    ]
    return out


async def run_writes(node, statements, half_done=None):
    conn = await asyncio.to_thread(node.connect)
    try:
        for i, w in enumerate(statements):
            await asql(conn, w)
            if half_done is not None and i == len(statements) // 2:
                await half_done()
    finally:
        conn.close()


async def filtered_stream(ctx, node, devices, writer):
    """Subscribers on node, the writes on the primary; returns a summary."""
    url = node.url
    ref = await ctx.sub('/ws/', url=url)
    indexable = ['device_id=eq.cam-%d' % i for i in range(devices)] + INDEXABLE
    subs = {f: await ctx.sub(path(f), url=url) for f in indexable + NOT_INDEXABLE}
    await wait_indexed(node, len(indexable), 'all connected, nothing sent')

    # a third of the indexed ones leave mid-stream
    leaving = indexable[::3]

    async def leave():
        for f in leaving:
            await subs[f].close()

    await run_writes(writer, writes(), leave)
    await ref.wait_until(done, 60, 'the unfiltered subscriber')
    rows = rows_of(ref.msgs)
    staying = [f for f in subs if f not in leaving]
    matched = 0
    for f in staying:
        want = expected(rows, f)
        check(len(want) > 0 and len(want) < len(rows) - 1,
              'filter %s selects %d of %d events here: a test that cannot fail'
              % (f, len(want), len(rows)))
        await subs[f].wait_until(lambda m, n=len(want): len(m) >= n, 30,
                                 '?filter=%s on %s' % (f, node.name))
        matched += len(want)
    await asyncio.sleep(0.3)
    for f in staying:
        compare(subs[f].msgs, expected(rows, f), '?filter=%s on %s' % (f, node.name))
    for f in leaving:
        # what it got before it left is a prefix of its events
        want = expected(rows, f)
        got = subs[f].msgs
        check(got == want[:len(got)], '?filter=%s on %s, closed mid-stream: %s' % (
            f, node.name, short(str(got[-1:]))))
    await wait_indexed(node, len([f for f in indexable if f not in leaving]),
                       'after the stream, the ones still connected')
    return '%d events, %d filtered subscribers (%d indexable, %d left mid-stream),' \
        ' %d deliveries' % (len(rows), len(subs), len(indexable), len(leaving), matched)


async def test_primary(ctx):
    """a. on a primary."""
    p = ctx.use(NODES['primary'])
    return await filtered_stream(ctx, p, DEVICES, p)


async def test_standby(ctx):
    """b. on a standby: its events come from replay."""
    p, st = NODES['primary'], NODES['standby']
    ctx.use(p)
    ctx.use(st)
    return await filtered_stream(ctx, st, 30, p)


def device_claim(n):
    """A device's screen: its visits and attendance."""
    return {'client_visit_*': 'device_id=eq.cam-%d' % n,
            'employee_attendance*': 'device_id=in.(cam-%d,"cam,x")' % n}


def token(claim, subject):
    return jwt_tools.hs256(jwt_tools.claims(sub=subject, filters=claim), SECRET)


async def subjects(node):
    conn = await asyncio.to_thread(node.connect)
    try:
        return {r[0] for r in await asql(conn, "SELECT subject FROM pg_ws_connections"
                                               " WHERE subject IS NOT NULL")}
    finally:
        conn.close()


async def test_claims(ctx):
    """c. a token's filters claim in the index, renewed by an auth message."""
    j = ctx.use(NODES['jwt'])
    everything = await ctx.sub('/ws/?token=' + jwt_tools.hs256(jwt_tools.claims(), SECRET))
    claims = {'device-%d' % n: device_claim(n) for n in range(30)}
    # several fields: female clients and one device's visits
    for n in range(5):
        claims['female-%d' % n] = dict(device_claim(n), **{'client_*': 'gender=eq.female'})
    indexable = len(claims)
    # a pattern whose filter has no eq or in term: asked about every event
    claims['like-1'] = {'client_visit_*': 'device_id=like.cam-1*'}
    claims['null'] = dict(device_claim(2), **{'employee_*': 'email=is.null'})
    subs = {who: await ctx.sub('/ws/?token=' + token(c, who)) for who, c in claims.items()}
    await wait_indexed(j, indexable, 'claims, nothing sent')

    batch = writes()
    await run_writes(j, batch)
    await everything.wait_until(done, 60, 'the unclaimed subscriber')
    rows = rows_of(everything.msgs)
    for who, c in claims.items():
        want = [raw for raw, row in rows if claim_allows(c, raw, row)]
        check(0 < len(want) < len(rows) - 1,
              '%s: the claim takes %d of %d events here' % (who, len(want), len(rows)))
        await subs[who].wait_until(lambda m, n=len(want): len(m) >= n, 30, who)
    await asyncio.sleep(0.3)
    for who, c in claims.items():
        compare(subs[who].msgs, [raw for raw, row in rows if claim_allows(c, raw, row)], who)
    await wait_indexed(j, indexable, 'claims, after the stream')

    # five screens move to other devices with an auth message each
    moved = {'device-%d' % n: ('moved-%d' % n, device_claim(n + 40)) for n in range(5)}
    for who, (subject, c) in moved.items():
        await subs[who].ws.send(json.dumps({'type': 'auth', 'token': token(c, subject)}))
    for _ in range(300):
        if {s for s, _ in moved.values()} <= await subjects(j):
            break
        await asyncio.sleep(0.1)
    else:
        check(False, 'the auth messages were not taken: %s' % sorted(await subjects(j)))
    await wait_indexed(j, indexable, 'claims, after the auth messages')
    marks = {who: len(subs[who].msgs) for who in moved}
    mark = len(everything.msgs)
    await run_writes(j, batch)
    await everything.wait_until(lambda m: len(m) > mark and done(m), 60, 'the second round')
    rows2 = rows_of(everything.msgs)[mark:]
    for who, (subject, c) in moved.items():
        want = [raw for raw, row in rows2 if claim_allows(c, raw, row)]
        check(len(want) > 0, '%s: the new claim takes no event here' % who)
        await subs[who].wait_until(lambda m, n=marks[who] + len(want): len(m) >= n, 30, who)
    await asyncio.sleep(0.3)
    for who, (subject, c) in moved.items():
        compare(subs[who].msgs[marks[who]:],
                [raw for raw, row in rows2 if claim_allows(c, raw, row)],
                '%s after its auth message' % who)
    return '%d claims, %d indexable, %d events; 5 renewed to other devices' % (
        len(claims), indexable, len(rows))


TESTS = [
    ('(a) indexed ?filter= subscribers on a primary get exactly their events and'
     ' wait in the index between them', test_primary, 150),
    ('(b) the same on a hot standby', test_standby, 150),
    ('(c) a token\'s filters claim waits in the index under each pattern\'s values;'
     ' an auth message with another claim moves it', test_claims, 150),
]

if __name__ == '__main__':
    run_tap(TESTS, Ctx, setup=setup, watchdog_seconds=WATCHDOG_SECONDS)
