#!/usr/bin/python3
"""A pg_ws built for another PostgreSQL major version is refused.

This file owns the check that a pg_ws.so made for another major version
is refused before any of it runs, and the server goes on serving: `LOAD`
fails either in the dynamic loader (a symbol of the other release that
this one does not have: 17's build in 18 needs heap_datum_check) or, when
every symbol resolves, at PostgreSQL's magic block ("incompatible
library", naming both versions).  The package layout keeps the versions
apart (test_deb.py: a package's pg_ws.so is in its major's directory only);
this is what happens when one is put where it does not belong anyway.

The other version's library comes from another platform's build:
.ci/run gives the Debian testing platform (PostgreSQL 18) the pg_ws.so its
Debian 13 run (PostgreSQL 17) built, with PG_WS_OTHER_MAJOR_SO naming it.
Without it (test/run_tests.sh on one platform) the test is skipped.

Run: PG_WS_OTHER_MAJOR_SO=/path/pg_ws.so /usr/bin/python3 test/e2e/test_magic.py
"""

import asyncio
import os
import re
import shutil
import sys

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Ctx, Skip, asql, check, run_tap, short  # noqa: E402

OTHER = os.environ.get('PG_WS_OTHER_MAJOR_SO')


async def test_other_major_refused(ctx):
    """LOAD of another major's pg_ws.so: refused, naming both versions."""
    if not OTHER:
        raise Skip('PG_WS_OTHER_MAJOR_SO is not set (.ci/run sets it on Debian testing)')
    cl = Cluster(name='magic', preload=False)
    ctx.use(cl)
    await asyncio.to_thread(cl.start)
    # where the postgres user can read it
    lib = os.path.join(cl.dir, 'pg_ws_other.so')
    shutil.copy(OTHER, lib)
    os.chmod(lib, 0o755)
    conn = await ctx.aconn()
    server = int((await asql(conn, "SHOW server_version_num"))[0][0]) // 10000
    try:
        await asql(conn, "LOAD '%s'" % lib)
        raise AssertionError('unreachable')
    except psycopg2.Error as e:
        message = '%s %s' % (e.pgerror or '', e.diag.message_detail or '')
    if 'incompatible library' in message:
        versions = re.search(r'Server is version (\d+), library is version (\d+)', message)
        check(versions and int(versions.group(1)) == server and int(versions.group(2)) != server,
              'the magic block refused it, but not naming the versions: %s' % short(message, 300))
    else:
        check(re.search(r'could not load library .*undefined symbol', message),
              'LOAD of the other version\'s pg_ws.so: %s' % short(message, 300))
    conn = await ctx.aconn()
    check((await asql(conn, "SELECT 1"))[0][0] == 1, 'the server no longer serves')
    return short(' '.join(message.split()), 200)


TESTS = [
    ('a pg_ws.so of another PostgreSQL major is refused at LOAD; the server serves on',
     test_other_major_refused, 60),
]


if __name__ == '__main__':
    run_tap(TESTS, Ctx)
