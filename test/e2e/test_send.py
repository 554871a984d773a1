#!/usr/bin/python3
"""End-to-end tests of custom events: pg_ws_send(event, data).

This file owns what a subscriber sees of events an application sends with
pg_ws_send(): they arrive at commit, byte for byte as
pg_ws_pending_events() showed them, in order with the row events of the
same transaction and with positions like theirs (a transaction's events
are at consecutive positions); nothing arrives from rolled-back work or a
rolled-back savepoint; a subscriber that resumes with ?since= gets them
again from the worker's memory and, after the worker restarted, from the
WAL; ?events= takes them, and a 'row' table's events, by name (order_*,
a name pg_ws does not know), 64 long patterns and overlapping ones exactly
as a pattern-by-pattern reading of them does;
and the README's example runs as written, by a role granted EXECUTE as
the README says, and sends what the README shows.  It does not cover what sql/send.sql covers (names, privileges, errors),
test_e2e.py (?events= for the document's events), test_auth.py (the
events claim, custom names included) nor test_standby.py (standbys serve
custom events too).

Run as root (PostgreSQL itself runs as the postgres user):

    /usr/bin/python3 test/e2e/test_send.py

Needs Debian's python3-websockets and python3-psycopg2, and pg_ws
installed.  Output is TAP; the exit status is 0 only if every test passed.
"""

import asyncio
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Cluster, Ctx, asql, check, check_positions,  # noqa: E402
                     port_open, position, resume_path, run_tap, short,
                     without_position, worker_row)

WATCHDOG_SECONDS = 240

EMP = "INSERT INTO employee (id, first_name, last_name) VALUES (%d, 'e', 'send')"


def send(event, data):
    """pg_ws_send(event, data) as a statement; data None is SQL NULL."""
    return ("SELECT pg_ws_send(%s, %s::jsonb)",
            (event, None if data is None else json.dumps(data)))


def name_of(raw):
    return json.loads(raw)['event']


def names(msgs):
    return [name_of(m) for m in msgs]


async def marker(sub, conn, i, what):
    """Commit employee i and wait until sub has it: once it has arrived,
    everything committed before it has too."""
    await asql(conn, EMP % i)
    await sub.wait_until(lambda m: any('"id": %d,' % i in x for x in m), 15, what)
    await asyncio.sleep(0.3)
    return list(sub.msgs)


# ------------------------------------------------------------------ tests

async def test_at_commit_in_order(ctx):
    """1. custom events arrive at commit, byte for byte as pending, in
    order with the row events of their transaction at consecutive
    positions; never from a rollback or a rolled-back savepoint."""
    sub = await ctx.sub()
    conn = await ctx.aconn(autocommit=False)
    pending = await asql(conn, EMP % 101,
                         send('order_paid', {'order': 1, 'note': 'Zoë ✓ 😀'}),
                         EMP % 102,
                         "SAVEPOINT s", send('order_paid', {'order': 'dropped'}),
                         "ROLLBACK TO SAVEPOINT s",
                         send('order_shipped', None),
                         "DELETE FROM employee WHERE id = 101",
                         "SELECT * FROM pg_ws_pending_events()")
    await asyncio.to_thread(conn.commit)
    first = [r[0] for r in pending]
    # a rolled-back transaction sends nothing, even one with only custom events
    await asql(conn, send('order_paid', {'order': 'rolled back'}), EMP % 103)
    await asyncio.to_thread(conn.rollback)
    # a transaction whose only event is a custom one
    conn.autocommit = True
    await asql(conn, send('invoice_paid', {'n': 3}))
    got = await marker(sub, conn, 104, 'marker 104')

    check(len(first) == 5, 'pending before COMMIT: %s' % first)
    want = first + ['{"event": "invoice_paid", "data": {"n": 3}}']
    got_events = [without_position(m) for m in got[:-1]]
    check(got_events == want, 'sent:', *['  ' + short(m) for m in got_events],
          'expected:', *['  ' + short(m) for m in want])
    check(names(got) == ['employee_create', 'order_paid', 'employee_create',
                         'order_shipped', 'employee_delete', 'invoice_paid',
                         'employee_create'], 'events: %s' % names(got))
    check(all(m.isascii() for m in got), 'a frame is not ASCII')
    paid = json.loads(got[1])
    check(paid['data'] == {'order': 1, 'note': 'Zoë ✓ 😀'},
          'order_paid data: %r' % (paid['data'],))
    check(json.loads(got[3])['data'] is None, 'order_shipped data: %s' % short(got[3]))
    check_positions(got, 'subscriber')
    seqs = [position(m)[0] for m in got]
    check(seqs[:5] == list(range(seqs[0], seqs[0] + 5)),
          'the first transaction\'s events are not at consecutive positions: %s' % seqs)


async def test_resume(ctx):
    """2. ?since= replays custom events: from the worker's memory, and
    after a worker restart from the WAL (the new worker has none of them
    in memory), filtered by ?events= on both ways; what was sent while
    the worker was down follows."""
    conn = await ctx.aconn()
    live = await ctx.sub()
    before = await marker(live, conn, 200, 'marker 200')
    start = before[-1]
    await asql(conn, "BEGIN", EMP % 201, send('order_paid', {'order': 201}),
               send('invoice_paid', {'invoice': 201}), "COMMIT")
    await asql(conn, send('order_refunded', {'order': 201}))
    got = await marker(live, conn, 202, 'marker 202')
    events = got[len(before):]
    check(names(events) == ['employee_create', 'order_paid', 'invoice_paid',
                            'order_refunded', 'employee_create'],
          'live: %s' % names(events))

    # from memory: the same bytes
    mem = await ctx.sub(resume_path(start))
    mem_orders = await ctx.sub(resume_path(start) + '&events=order_*')
    got = await mem.expect(len(events), 15, 'resumed from memory')
    check(got == events, 'resumed from memory: %s' % names(got))
    orders = [m for m in events if name_of(m).startswith('order_')]
    got = await mem_orders.expect(len(orders), 15, 'resumed from memory, events=order_*')
    check(got == orders, 'resumed from memory with events=order_*: %s' % names(got))

    # the worker restarts: its memory is gone, the events are in the WAL
    old = await worker_row(conn)
    check(old is not None, 'no pg_ws worker in pg_stat_activity')
    await asql(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE backend_type = 'pg_ws'")
    await asyncio.wait_for(live.closed.wait(), 15)
    # sent while it is down (before or after the new one starts)
    await asql(conn, send('order_paid', {'order': 203}))
    deadline = time.monotonic() + 30
    while (row := await worker_row(conn)) is None or row[0] == old[0]:
        check(time.monotonic() < deadline, 'no new pg_ws worker')
        await asyncio.sleep(0.1)
    await port_open(ctx.cl.wsport, 20)
    wal = await ctx.sub(resume_path(start))
    wal_orders = await ctx.sub(resume_path(start) + '&events=order_*')
    got = await wal.expect(len(events) + 1, 20, 'resumed from the WAL')
    check(got[:len(events)] == events,
          'resumed from the WAL: %s, expected %s' % (names(got), names(events)))
    check(json.loads(got[len(events)])['data'] == {'order': 203},
          'after the restart: %s' % short(got[len(events)]))
    check_positions(got, 'resumed from the WAL')
    got = await wal_orders.expect(len(orders) + 1, 20, 'resumed from the WAL, events=order_*')
    check(names(got) == names(orders) + ['order_paid'] and got[:len(orders)] == orders,
          'resumed from the WAL with events=order_*: %s' % names(got))


async def test_filters(ctx):
    """3. ?events= takes custom events, and a 'row' table's events, by
    name: order_* all order events and nothing else, a name pg_ws does not
    know exactly that event, a document name or prefix none of the
    application's but those whose names it matches, "*" and no filter
    everything."""
    conn = await ctx.aconn()
    await asql(conn, "CREATE TABLE invoice (id integer PRIMARY KEY, total numeric)",
               "SELECT pg_ws_watch('invoice', 'row')")
    subs = {
        'none': await ctx.sub('/ws/'),
        '*': await ctx.sub('/ws/?events=*'),
        'order_*': await ctx.sub('/ws/?events=order_*'),
        'order_paid,invoice_*': await ctx.sub('/ws/?events=order_paid,invoice_*'),
        'nosuch_event': await ctx.sub('/ws/?events=nosuch_event'),
        'employee_create': await ctx.sub('/ws/?events=employee_create'),
        'client_*': await ctx.sub('/ws/?events=client_%2A'),
    }
    for stmt in [EMP % 301,
                 send('order_paid', {'order': 301}),
                 send('order_shipped', {'order': 301}),
                 send('invoice_paid', {'invoice': 301}),
                 "INSERT INTO invoice VALUES (301, 12.5)",
                 send('orders_digest', {}),
                 send('client_note', {'client': 301}),
                 "INSERT INTO client (id, visit_count) VALUES (301, 0)",
                 send('nosuch_event', {'at': 'last'})]:
        await asql(conn, stmt)
    everything = ['employee_create', 'order_paid', 'order_shipped', 'invoice_paid',
                  'invoice_create', 'orders_digest', 'client_note', 'client_create',
                  'nosuch_event']
    all_msgs = await subs['none'].expect(len(everything), 15, 'unfiltered')
    check(names(all_msgs) == everything, 'unfiltered: %s' % names(all_msgs))
    want = {
        'none': everything,
        '*': everything,
        'order_*': ['order_paid', 'order_shipped'],
        'order_paid,invoice_*': ['order_paid', 'invoice_paid', 'invoice_create'],
        'nosuch_event': ['nosuch_event'],
        'employee_create': ['employee_create'],
        'client_*': ['client_note', 'client_create'],
    }
    # the last event of the writes goes to the unfiltered ones and to
    # nosuch_event: once they have it, every subscriber has had its own
    await subs['nosuch_event'].wait_until(lambda m: len(m) >= 1, 15, 'nosuch_event')
    await asyncio.sleep(0.5)
    problems = []
    for k, sub in subs.items():
        expected = [m for m in all_msgs if name_of(m) in want[k]]
        if names(sub.msgs) != want[k] or sub.msgs != expected:
            problems.append('events=%s: got %s, expected %s' % (k, names(sub.msgs), want[k]))
    check(not problems, *problems)


def reference_takes(patterns, name):
    """Whether ?events= patterns take a name: pg_ws 1.2's reading, one
    pattern after the other (a prefix ending in '*', or the whole name)."""
    return any(name.startswith(p[:-1]) if p.endswith('*') else name == p
               for p in patterns)


def near_names(stem):
    """Names around a pattern's stem in every direction a sorted matcher
    could get wrong: the stem, one byte shorter, longer, and one byte above
    or below at its end (all valid names of at most 63 bytes)."""
    alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789_'
    out = {stem, stem[:-1], stem + 'a', stem + '_z', stem + '0'}
    last = alphabet.index(stem[-1]) if stem[-1] in alphabet else 0
    for k in (last - 1, last + 1):
        if 0 <= k < len(alphabet):
            out.add(stem[:-1] + alphabet[k])
            out.add(stem[:-1] + alphabet[k] + 'tail')
    return {n for n in out if re.fullmatch(r'[a-z][a-z0-9_]{0,62}', n)}


async def test_many_patterns(ctx):
    """5. filters of up to 64 long, overlapping patterns take exactly the
    custom events a pattern-by-pattern reading takes (1.2's matcher): the
    same events pass whatever order the patterns come in, however they
    cover each other (a name a prefix takes, a prefix a shorter one
    takes, duplicates), and near their edges in sort order."""
    stem = 'tenant_0042_region_europe_west_orders_'       # 38 bytes
    long64 = ([stem + 'status_changed_%02d_x' % i for i in range(0, 64, 2)]
              + [stem + 'shipment_%02d_*' % i for i in range(1, 64, 2)])
    filters = {
        '64 long': long64,
        '64 long, reversed': list(reversed(long64)),
        'overlapping': ['order_paid', 'order_*', 'order_pa*', 'order_paid_late',
                        'invoice_x', 'invoice_x*', 'invoice_*', 'invoice_x_y',
                        'a_b*', 'a_b', 'a_bc', 'a_*', 'zeta*', 'zeta', 'zeta*',
                        'client_*', 'employee_create', 'b_c_d_e_f_g_h*', 'b_c_d*'],
        'adjacent': ['m_a*', 'm_b', 'm_ab*', 'm_c*', 'm_b_*', 'm_bb', 'm_a_z',
                     'm_az', 'm_b0*', 'm_b9', 'm__*'],
    }
    names_sent = set()
    for patterns in filters.values():
        for p in patterns:
            names_sent |= near_names(p.rstrip('*'))
    names_sent |= {'order_paid_%d' % i for i in range(5)} | {'unrelated', 'client_note'}
    names_sent = sorted(n for n in names_sent if not re.match(
        r'^(client_(create|update|delete|visit_(create|update|delete))|employee_(create|update|'
        r'delete|attendance|attendance_delete)|resync_required|pg_ws.*)$', n))

    subs = {}
    for k, patterns in filters.items():
        check(len(patterns) <= 64, '%s: %d patterns' % (k, len(patterns)))
        subs[k] = await ctx.sub('/ws/?events=' + ','.join(patterns))
    everyone = await ctx.sub('/ws/')
    conn = await ctx.aconn()
    await asql(conn, "BEGIN", *[send(n, {'n': i}) for i, n in enumerate(names_sent)],
               send('zz_last', None), "COMMIT")
    await everyone.wait_until(lambda m: len(m) >= len(names_sent) + 1, 30, 'every event')
    await asyncio.sleep(0.5)
    check(names(everyone.msgs)[:-1] == names_sent, 'unfiltered: %d events' % len(everyone.msgs))
    problems = []
    for k, patterns in filters.items():
        want = [n for n in names_sent if reference_takes(patterns, n)]
        got = names(subs[k].msgs)
        if got != want:
            problems.append('%s: %d events, expected %d; extra %s, missing %s'
                            % (k, len(got), len(want), sorted(set(got) - set(want))[:5],
                               sorted(set(want) - set(got))[:5]))
    check(not problems, *problems)
    return '%d names, %s taken' % (len(names_sent), ', '.join(
        '%s %d' % (k, len(subs[k].msgs)) for k in filters))


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'README.md')


def readme_block(marker):
    """The fenced block after <!-- test_readme: marker --> in README.md."""
    with open(README) as f:
        m = re.search(r'<!-- test_readme: %s -->\s*```[a-z]*\n(.*?)```' % re.escape(marker),
                      f.read(), re.S)
    check(m is not None, 'README.md has no block marked "test_readme: %s"' % marker)
    return m.group(1)


def readme_event(name):
    """The README's example message of the event called name."""
    with open(README) as f:
        lines = [x for x in f.read().splitlines()
                 if x.startswith('{"event": "%s"' % name)]
    check(len(lines) == 1, 'README.md has %d examples of %s' % (len(lines), name))
    return lines[0]


async def test_readme(ctx):
    """4. the README's example, as a role granted EXECUTE as it says:
    the row's event, then the custom one, as the README shows it."""
    conn = await ctx.aconn()
    await asql(conn, "DROP ROLE IF EXISTS app", "CREATE ROLE app",
               "GRANT SELECT, UPDATE ON employee TO app",
               EMP.replace('%d', '1'), readme_block('pg_ws_send grant'))
    sub = await ctx.sub()
    app = await ctx.aconn(options='-c role=app')
    await asql(app, *[x for x in readme_block('pg_ws_send').split(';\n') if x.strip()])
    got = await sub.expect(2, 15, 'the README example')
    check(names(got) == ['employee_update', 'shift_changed'], 'events: %s' % names(got))
    check(without_position(got[1]) == without_position(readme_event('shift_changed')),
          'sent:   ' + got[1], 'README: ' + readme_event('shift_changed'))
    check(position(got[1])[0] == position(got[0])[0] + 1,
          'not at consecutive positions: %s' % got)


TESTS = [
    ('custom events at commit, in order with row events, never from rollbacks',
     test_at_commit_in_order, 30),
    ('since= replays custom events from memory and, after a worker restart, from the WAL',
     test_resume, 60),
    ("?events= takes custom events and a 'row' table's by name", test_filters, 30),
    ("the README's example, as a role granted EXECUTE", test_readme, 30),
    ('?events= of 64 long, overlapping patterns takes what a pattern-by-pattern reading takes',
     test_many_patterns, 40),
]


# ------------------------------------------------------------------- main

def main():
    clusters = []

    async def setup():
        cl = Cluster(name='send')
        clusters.append(cl)
        await asyncio.to_thread(cl.start)
        await cl.install()

    run_tap(TESTS, lambda: Ctx(clusters[0]), setup=setup,
            watchdog_seconds=WATCHDOG_SECONDS)


if __name__ == '__main__':
    main()
