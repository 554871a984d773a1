#!/usr/bin/python3
"""What the README's two commands install.

This file owns the check that scripts/run_server.sh, the README's run
command, installs only what the server needs: scripts/install_deps.sh
--server, and what apt pulls in with it, includes none of the test tools
that test/run_tests.sh and .ci/run install (install_deps.sh without
--server).  It is not an end-to-end test; it lives here because
test/run_tests.sh runs test/e2e/test_*.py.

  1. the scripts: run_server.sh installs with --server and runs no test
     tool; run_tests.sh and .ci/run install everything; the server list
     names none of the test tools;
  2. apt's answer: every package apt would install for --server on a
     machine that has none yet (install_deps.sh --simulate-fresh: apt-get
     -s against an empty dpkg status, from the local package lists, so it
     does not depend on the network), which has none of the test tools but
     has what the server needs to be built and run; for the full list the
     same simulation has them, so that the check can fail.

Without apt's package lists (apt-get update never ran) the second test is
skipped.  Needs no cluster and changes nothing.

Run: /usr/bin/python3 test/e2e/test_deps.py   (TAP output)
"""

import asyncio
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Ctx, Fail, Skip, check, run_tap  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
DEPS = os.path.join(ROOT, 'scripts', 'install_deps.sh')

# test tools whatever install_deps.sh says: the checks below stay meaningful
# if one of them moves into the server's list by mistake
KNOWN_TEST_TOOLS = {'python3-websockets', 'python3-psycopg2', 'python3-cryptography',
                    'python3-openssl', 'chromium', 'curl', 'iproute2'}
# what building and running the server needs, as apt names it on this
# release: the compiler, the clang PGXS builds bitcode with, the server and
# psql of the release's PostgreSQL, the packages of the libraries pg_ws.so
# links against and the libev plugin of libwebsockets (server_needs())
FIXED_NEEDS = {'gcc', 'make', 'libwebsockets-evlib-ev', 'dpkg-dev'}
LINKED = ('libwebsockets', 'libev', 'libjson-c', 'libssl')


def server_needs():
    """FIXED_NEEDS and what differs by release, found here: the release's
    PostgreSQL major, the clang its PGXS names, and the packages owning the
    libraries the built pg_ws.so links against (libwebsockets17 on Debian
    12, libwebsockets19t64 on 13, ...)."""
    major = deps('--pg-major')[0]
    pg_config = '/usr/lib/postgresql/%s/bin/pg_config' % major
    needs = FIXED_NEEDS | {'postgresql-' + major, 'postgresql-client-' + major,
                           'postgresql-server-dev-' + major}
    pgxs = subprocess.run([pg_config, '--pgxs'], stdout=subprocess.PIPE, text=True,
                          check=True).stdout.strip()
    with open(os.path.join(os.path.dirname(pgxs), '..', 'Makefile.global')) as f:
        clang = re.search(r'^CLANG\s*=\s*(\S+)', f.read(), re.M)
    if clang:
        needs.add(os.path.basename(clang.group(1)))
    so = os.path.join(ROOT, 'pg_ws.so')
    if not os.path.exists(so):
        raise Fail('pg_ws.so is not built in %s (test/run_tests.sh builds it first)' % ROOT)
    ldd = subprocess.run(['ldd', so], stdout=subprocess.PIPE, text=True, check=True).stdout
    for lib in LINKED:
        m = re.search(r'^\s*%s\.so\S* => (\S+)' % re.escape(lib), ldd, re.M)
        check(m, 'pg_ws.so does not link against %s: %s' % (lib, ldd))
        owner = subprocess.run(['dpkg', '-S', os.path.realpath(m.group(1))],
                               stdout=subprocess.PIPE, text=True, check=True).stdout
        needs.add(owner.split(':')[0])
    return needs


def deps(*args):
    r = subprocess.run(['bash', DEPS, *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    if r.returncode != 0:
        raise Fail('install_deps.sh %s failed (%d):' % (' '.join(args), r.returncode),
                   *r.stderr.splitlines()[-10:])
    return r.stdout.split()


def commands(path):
    """A script's lines without comments and without its here-documents."""
    out, heredoc = [], None
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            if heredoc:
                if line.strip() == heredoc:
                    heredoc = None
                continue
            m = re.search(r'<<-?\s*[\'"]?(\w+)', line)
            if m:
                heredoc = m.group(1)
            out.append(re.sub(r'(^|\s)#.*', '', line))
    return out


async def test_scripts(ctx):
    """run_server.sh installs with --server and runs no test tool; the
    tests and CI install everything; the lists."""
    server, full = set(deps('--server', '--print')), set(deps('--print'))
    tools = full - server
    check(server < full, 'the server list is not part of the full one: %s' % sorted(server - full))
    check(KNOWN_TEST_TOOLS <= tools, 'test tools in the server list: %s'
          % sorted(KNOWN_TEST_TOOLS & server), 'or missing from the full one: %s'
          % sorted(KNOWN_TEST_TOOLS - full))
    run_server = commands('scripts/run_server.sh')
    # the calls that install (--pg-major only prints the release's PostgreSQL)
    calls = [line.strip() for line in run_server
             if 'install_deps.sh' in line and '--pg-major' not in line]
    check(calls and all('--server' in c for c in calls),
          'run_server.sh runs install_deps.sh as: %s' % calls)
    used = sorted({w for line in run_server
                   for w in re.findall(r'(?<![\w./-])(curl|python3|chromium|ss|websocat)(?![\w.-])',
                                       line)})
    check(not used, 'run_server.sh runs test tools: %s' % used)
    for path in ('test/run_tests.sh', '.ci/run'):
        calls = [line.strip() for line in commands(path) if 'install_deps.sh' in line]
        check(calls and not any('--server' in c for c in calls),
              '%s runs install_deps.sh as: %s' % (path, calls))
    return 'server: %d packages; test tools: %s' % (len(server), ' '.join(sorted(tools)))


async def test_simulated(ctx):
    """apt-get -s on an empty machine: --server pulls in no test tool and
    everything the server needs; the full list pulls them in."""
    r = subprocess.run(['apt-cache', 'policy', 'postgresql-' + deps('--pg-major')[0]],
                       stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if not re.search(r'Candidate: (?!\(none\))', r.stdout):
        raise Skip('no apt package lists here (apt-get update has not run)')
    server_list, full_list = set(deps('--server', '--print')), set(deps('--print'))
    tools = (full_list - server_list) | KNOWN_TEST_TOOLS
    server = set(await asyncio.to_thread(deps, '--server', '--simulate-fresh'))
    full = set(await asyncio.to_thread(deps, '--simulate-fresh'))
    check(not (server & tools), 'install_deps.sh --server would install test tools: %s'
          % sorted(server & tools))
    needs = server_needs()
    check(needs <= server, 'install_deps.sh --server would not install %s'
          % sorted(needs - server))
    check(tools <= full, 'the simulation of the full list lacks %s: it shows nothing'
          % sorted(tools - full))
    return ('on an empty machine --server installs %d packages, none of the %d test tools; '
            'the full list %d' % (len(server), len(tools), len(full)))


TESTS = [
    ('run_server.sh installs with --server and runs no test tool; tests and CI install all',
     test_scripts, 30),
    ('apt-get -s on an empty machine: --server pulls in no test tool', test_simulated, 120),
]


if __name__ == '__main__':
    run_tap(TESTS, Ctx)
