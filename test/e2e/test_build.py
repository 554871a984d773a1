#!/usr/bin/python3
"""Building pg_ws: warnings, and the PostgreSQL releases it refuses.

This file owns the checks of the build itself, on whatever platform runs
it (test/run_tests.sh on Debian 12, 13 and testing):

  1. a clean copy of the tree builds with the release's pg_config
     (PG_WS_PGBIN's) with -Wall -Wextra in every compiler command and not
     one warning, for gcc and for the clang that makes the bitcode;
  2. against PostgreSQL 14 (a copy of this release's PGXS whose version
     says 14.11, as postgresql-server-dev-14 would) make stops at once with
     a message naming the supported releases, before compiling anything.

Not an end-to-end test; it lives here because test/run_tests.sh runs
test/e2e/test_*.py.  Changes nothing outside a temporary directory.

Run: /usr/bin/python3 test/e2e/test_build.py   (TAP output)
"""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PGBIN, Ctx, check, run_tap, short  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
PG_CONFIG = os.path.join(PGBIN, 'pg_config')


def clean_copy(dest):
    """The tree without build products, as test/platform.sh copies it."""
    tar = subprocess.run(
        ['tar', '-c', '-C', ROOT, '--exclude=*.o', '--exclude=*.so', '--exclude=*.bc',
         '--exclude=./.git', '--exclude=./deb-build', '--exclude=*.deb', '--exclude=__pycache__',
         '--exclude=./clients/js/node_modules', '--exclude=./clients/js/dist', '.'],
        stdout=subprocess.PIPE, check=True).stdout
    os.makedirs(dest)
    subprocess.run(['tar', '-x', '-C', dest], input=tar, check=True)


def make(tree, *args):
    return subprocess.run(['make', '-C', tree, '-j2', *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


async def test_no_warnings(ctx):
    """1. a clean build: -Wall -Wextra everywhere, no warning."""
    tmp = tempfile.mkdtemp(prefix='pg_ws_build.')
    try:
        tree = os.path.join(tmp, 'src')
        clean_copy(tree)
        r = await asyncio.to_thread(make, tree, 'PG_CONFIG=' + PG_CONFIG)
        check(r.returncode == 0, 'make failed (%d):' % r.returncode, *r.stdout.splitlines()[-15:])
        compiles = [line for line in r.stdout.splitlines()
                    if re.search(r'\s-c\s', line) and re.search(r'\.c(\s|$)', line)]
        gcc = [c for c in compiles if '-emit-llvm' not in c]
        clang = [c for c in compiles if '-emit-llvm' in c]
        check(gcc, 'no compiler command in make\'s output:', *r.stdout.splitlines()[:5])
        lax = [c for c in gcc if not ('-Wall' in c.split() and '-Wextra' in c.split())]
        check(not lax, 'compiled without -Wall -Wextra: %s' % short(lax[0] if lax else '', 300))
        warnings = [line for line in r.stdout.splitlines() if re.search(r'warning:', line)]
        check(not warnings, '%d warnings:' % len(warnings), *warnings[:10])
        check(os.path.exists(os.path.join(tree, 'pg_ws.so')), 'no pg_ws.so')
        version = subprocess.run([PG_CONFIG, '--version'], stdout=subprocess.PIPE,
                                 text=True).stdout.strip()
        return '%s: %d files by the compiler, %d to bitcode, no warning' % (
            version, len(gcc), len(clang))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fake_pg14(tmp):
    """A pg_config that answers as PostgreSQL 14.11 would: this release's
    PGXS copied with its version lines changed, every other question
    answered by the real pg_config."""
    real_pgxs = subprocess.run([PG_CONFIG, '--pgxs'], stdout=subprocess.PIPE, text=True,
                               check=True).stdout.strip()
    pgxs_root = os.path.normpath(os.path.join(os.path.dirname(real_pgxs), '..', '..'))
    copy = os.path.join(tmp, 'pgxs')
    shutil.copytree(pgxs_root, copy)
    glob_mk = os.path.join(copy, 'src', 'Makefile.global')
    with open(glob_mk) as f:
        text = f.read()
    for name, value in (('VERSION', '14.11'), ('MAJORVERSION', '14'), ('VERSION_NUM', '140011')):
        text, n = re.subn(r'^%s = .*$' % name, '%s = %s' % (name, value), text, flags=re.M)
        check(n == 1, 'no "%s = " line in %s' % (name, glob_mk))
    with open(glob_mk, 'w') as f:
        f.write(text)
    fake = os.path.join(tmp, 'pg_config')
    with open(fake, 'w') as f:
        f.write('#!/bin/sh\n'
                'case "$1" in\n'
                '  --pgxs) echo %s ;;\n'
                '  --version) echo "PostgreSQL 14.11" ;;\n'
                '  *) exec %s "$@" ;;\n'
                'esac\n' % (os.path.join(copy, 'src', 'makefiles', 'pgxs.mk'), PG_CONFIG))
    os.chmod(fake, 0o755)
    return fake


async def test_old_release_refused(ctx):
    """2. PostgreSQL 14: make stops at once, naming what is supported."""
    tmp = tempfile.mkdtemp(prefix='pg_ws_build.')
    try:
        tree = os.path.join(tmp, 'src')
        clean_copy(tree)
        fake = fake_pg14(tmp)
        r = await asyncio.to_thread(make, tree, 'PG_CONFIG=' + fake)
        check(r.returncode != 0, 'make against PostgreSQL 14 succeeded:', *r.stdout.splitlines()[-5:])
        said = r.stdout.strip().splitlines()
        message = [line for line in said
                   if re.search(r'supports PostgreSQL 15, 16, 17 and 18', line)
                   and 'PostgreSQL 14.11' in line]
        check(message, 'not the message naming the supported releases:', *said[-5:])
        built = [n for d, _, files in os.walk(tree) for n in files if n.endswith(('.o', '.bc'))]
        check(not built, 'it compiled %d files first: %s' % (len(built), built[:5]))
        check(not any(re.search(r'\s-c\s', line) for line in said),
              'a compiler ran:', *[line for line in said if ' -c ' in line][:3])
        return short(message[0], 200)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


TESTS = [
    ('a clean build with the release\'s pg_config: -Wall -Wextra, not one warning',
     test_no_warnings, 600),
    ('against PostgreSQL 14 make stops at once, naming the supported releases',
     test_old_release_refused, 120),
]


if __name__ == '__main__':
    run_tap(TESTS, Ctx, watchdog_seconds=900)
