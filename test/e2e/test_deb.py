#!/usr/bin/python3
"""The Debian package: built with dpkg-buildpackage, installed with apt, run.

This file owns the check that debian/ builds the package of this platform's
PostgreSQL, that Debian's own checks accept it, and that it installs with
apt and works by itself.  N is the PostgreSQL major version the tests run
against (scripts/install_deps.sh --pg-major: 15 on Debian 12, 17 on 13, 18
on testing); nothing here assumes one.

  1. `make deb` (dpkg-buildpackage -b with pg_buildext, from a clean copy of
     the tree) builds postgresql-N-pg-ws_V_ARCH.deb and its -dbgsym package,
     V being debian/changelog's version, whose upstream part is
     pg_ws.control's default_version and META.json's version; the compiler
     warns about nothing (the Makefile builds with -Wall -Wextra).  The
     control file names the package, section and priority; its Depends
     names postgresql-N, libwebsockets-evlib-ev (dlopen()ed for
     pg_ws.event_loop = libev) and the package of every library pg_ws.so
     links against, found here with readelf, ldd and dpkg -S, independently
     of the dpkg-shlibdeps the build uses.  Every file is owned by root,
     directories 0755 and files 0644; the copyright file is debian/copyright
     (License: PostgreSQL).  The versions are kept apart: pg_ws.so is
     /usr/lib/postgresql/N/lib/pg_ws.so and nothing is installed for
     another major version, so that a server of another version never
     finds it (and PostgreSQL's magic block would refuse it if it did);
  2. lintian on the .changes (which covers the .debs and the .buildinfo)
     reports no error (E:); its warnings are printed as TAP comments;
  3. pg_ws's files that an earlier `make install` left are removed (and the
     package, if installed: apt keeps an installed package of the same
     version), so that the package alone must provide them, as on a
     machine where make install never ran; then `apt-get install
     ./postgresql-N-pg-ws_V_ARCH.deb`; `dpkg -L` lists pg_ws.so,
     pg_ws.control and every file of the Makefile's DATA, and `dpkg
     --verify` finds them as packaged;
  4. from those installed files: a new cluster with pg_ws preloaded,
     CREATE EXTENSION, a subscriber on /ws/, an INSERT INTO client, and
     its client_create event; the worker has the packaged pg_ws.so mapped,
     and GET / serves the console, an installed DATA file;
  5. the package's autopkgtest, debian/tests/installcheck (`pg_buildext
     installcheck`: a pg_virtualenv cluster with test/regress.conf), runs
     the whole pg_regress suite against the installed PostgreSQL N and
     package, from a copy of the tree (pg_buildext cleans up behind it).

It installs into Debian's PostgreSQL (/usr/lib/postgresql/N), so
test/run_tests.sh runs it last, and leaves the package installed: the same
files make install put there, now owned by the package (`apt-get remove
postgresql-N-pg-ws` removes them).  It is skipped (`ok 1 # skip`) when
not run as root or when PG_WS_SKIP_DEB=1.

A development run leaves the system alone: with PG_WS_DEB_ROOT=DIR, or when
PG_WS_PGBIN (which test/run_tests.sh sets from its PG_CONFIG) is a
relocated copy of PostgreSQL, DIR/usr/lib/postgresql/N/bin, the package
is unpacked into DIR with dpkg -x instead of apt, its files checked against
its md5sums, and the cluster run from DIR.  That checks the package's
files, not apt's installation of it: the test names say which of the two
ran.

Run as root: /usr/bin/python3 test/e2e/test_deb.py   (TAP output)
"""

import asyncio
import glob
import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
WATCHDOG_SECONDS = 1200     # a clean build with bitcode, lintian, apt, one cluster


def pg_major():
    """The PostgreSQL major version the tests run against: the one
    install_deps.sh installs for this release."""
    r = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'install_deps.sh'), '--pg-major'],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    major = r.stdout.strip()
    if r.returncode != 0 or not re.fullmatch(r'[1-9][0-9]*', major):
        sys.exit('test_deb.py: scripts/install_deps.sh --pg-major said %r (exit %d)'
                 % (major, r.returncode))
    return major


N = pg_major()
PKG = 'postgresql-%s-pg-ws' % N
SYSTEM_BIN = '/usr/lib/postgresql/%s/bin' % N
PKGLIBDIR = '/usr/lib/postgresql/%s/lib' % N
EXTDIR = '/usr/share/postgresql/%s/extension' % N

_state = {}


def run(*args, check_rc=True, env=None, timeout=900):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       cwd=ROOT, env=env, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise Fail('%s failed (%d):' % (' '.join(args), r.returncode),
                   *r.stdout.splitlines()[-20:])
    return r.stdout


def where():
    """(None, why) to skip; ('', None) for apt into the system; (DIR, None)
    for a development run into DIR."""
    if os.environ.get('PG_WS_SKIP_DEB'):
        return None, 'PG_WS_SKIP_DEB is set'
    if os.geteuid() != 0:
        return None, 'not root: apt cannot install the package'
    root = os.environ.get('PG_WS_DEB_ROOT', '')
    if not root:
        pgbin = os.path.realpath(os.environ.get('PG_WS_PGBIN', SYSTEM_BIN))
        if pgbin != SYSTEM_BIN:
            if not pgbin.endswith(SYSTEM_BIN):
                return None, ('PG_WS_PGBIN=%s is neither Debian\'s PostgreSQL %s nor a '
                              'relocated copy of it (DIR%s)' % (pgbin, N, SYSTEM_BIN))
            root = pgbin[:-len(SYSTEM_BIN)]
    if root:
        root = os.path.realpath(root)
        if root == '/':
            return '', None
        if not os.path.isdir(root + PKGLIBDIR):
            return None, 'PG_WS_DEB_ROOT=%s has no %s' % (root, PKGLIBDIR)
    return root, None


DEST, SKIP = where()
HOW = ('dpkg -x into %s (a development run, not apt)' % DEST) if DEST else 'apt'
if DEST is None and __name__ == '__main__':
    # before the harness's imports, which a skipped run does not need
    print('1..1')
    print('ok 1 - the Debian package # skip %s' % SKIP)
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Ctx, Fail, Skip, asql, check, run_tap, short, worker_row  # noqa: E402


def data_files():
    """The Makefile's DATA: what make install puts beside pg_ws.control."""
    return [os.path.basename(f) for f in run('make', '-s', 'print-data').split()]


def default_version():
    with open(os.path.join(ROOT, 'pg_ws.control')) as f:
        m = re.search(r"^default_version\s*=\s*'([^']+)'", f.read(), re.M)
    check(m is not None, 'no default_version in pg_ws.control')
    return m.group(1)


def needed_packages(so):
    """{soname: the package that provides it here} for each library so
    links against (its NEEDED entries; ldd for their paths, dpkg -S for
    their packages)."""
    needed = re.findall(r'\(NEEDED\)\s+Shared library: \[([^\]]+)\]',
                        run('readelf', '-d', so))
    check(needed, 'readelf finds no NEEDED libraries in %s' % so)
    paths = dict(re.findall(r'^\s*(\S+) => (/\S+)', run('ldd', so), re.M))
    out = {}
    for soname in needed:
        check(soname in paths, 'ldd does not resolve %s' % soname)
        p = paths[soname]
        alt = p[4:] if p.startswith('/usr/') else '/usr' + p     # merged /usr
        r = None
        for cand in (p, alt, os.path.realpath(p)):
            r = subprocess.run(['dpkg', '-S', cand], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            if r.returncode == 0:
                break
        check(r.returncode == 0, 'no package owns %s (%s)' % (soname, p))
        # "libssl3:amd64: /usr/lib/..." (a diversion line would come first)
        out[soname] = r.stdout.strip().splitlines()[-1].split(':')[0].strip()
    return out


def compiler_warnings(log):
    """The compiler's warnings in dpkg-buildpackage's output: gcc's and
    clang's (the bitcode) "FILE:LINE:COL: warning: ..." lines."""
    return [line for line in log.splitlines()
            if re.match(r'^\S+:\d+:(\d+:)? warning: ', line)]


async def test_build(ctx):
    """make deb; the versions, the packages, their control fields, Depends,
    files, modes and copyright."""
    work = tempfile.mkdtemp(prefix='pg_ws_deb.')
    _state['work'] = work
    build = os.path.join(work, 'build')
    env = dict(os.environ, DEB_BUILD_DIR=build)
    t0 = time.monotonic()
    out = await asyncio.to_thread(run, 'make', '-s', 'deb', env=env)
    took = time.monotonic() - t0

    upstream = default_version()
    version = run('dpkg-parsechangelog', '-l', 'debian/changelog', '-S', 'Version').strip()
    check(version.rsplit('-', 1)[0] == upstream,
          'debian/changelog is at %s, pg_ws.control at %s' % (version, upstream))
    with open(os.path.join(ROOT, 'META.json')) as f:
        meta = json.load(f)
    check(meta.get('version') == upstream and meta.get('license') == 'postgresql',
          'META.json: version %r, license %r; expected %r and postgresql'
          % (meta.get('version'), meta.get('license'), upstream))

    arch = run('dpkg', '--print-architecture').strip()
    deb = os.path.join(build, '%s_%s_%s.deb' % (PKG, version, arch))
    dbgsym = os.path.join(build, '%s-dbgsym_%s_%s.deb' % (PKG, version, arch))
    # the -dbgsym package unless DEB_BUILD_OPTIONS has noddebs
    printed = [line for line in out.splitlines() if line.endswith('.deb')]
    check(deb in printed and set(printed) <= {deb, dbgsym} and os.path.isfile(deb),
          'make deb printed %s; expected %s and %s (the platform\'s PostgreSQL is %s: '
          'install_deps.sh --pg-major)' % (printed, deb, dbgsym, N),
          *out.splitlines()[-5:])
    changes = os.path.join(build, 'pg-ws_%s_%s.changes' % (version, arch))
    check(os.path.isfile(changes), 'no %s' % changes)
    with open(os.path.join(build, 'build.log'), errors='replace') as f:
        log = f.read()
    warned = compiler_warnings(log)
    check(not warned, 'the compiler warns (%d lines):' % len(warned), *warned[:10])
    # dpkg's and debhelper's warnings (an undefined substvar, a useless
    # dependency): shown, not fatal, as lintian's are
    for line in log.splitlines():
        if re.match(r'^(dpkg-\S+|dh\S*): warning: ', line):
            print('# build: ' + line)

    f = dict(re.findall(r'^(\S+): (.*)$', run('dpkg-deb', '-f', deb), re.M))
    for k, want in (('Package', PKG), ('Source', 'pg-ws'), ('Version', version),
                    ('Architecture', arch), ('Section', 'database'), ('Priority', 'optional')):
        check(f.get(k) == want, '%s: %r, expected %r' % (k, f.get(k), want))
    check(re.match(r'.+ <[^@ ]+@[^> ]+>$', f.get('Maintainer', '')),
          'Maintainer: %r' % f.get('Maintainer'))
    check(f.get('Description'), 'no Description')

    # the packaged pg_ws.so, unpacked here, for what it links against
    unpacked = os.path.join(work, 'unpacked')
    run('dpkg-deb', '-x', deb, unpacked)
    so = unpacked + PKGLIBDIR + '/pg_ws.so'
    check(os.path.isfile(so), 'the package has no %s' % (PKGLIBDIR + '/pg_ws.so'))
    libs = needed_packages(so)
    depends = {d.strip().split()[0] for d in f.get('Depends', '').split(',') if d.strip()}
    want = {'postgresql-' + N, 'libwebsockets-evlib-ev'} | set(libs.values())
    check(want <= depends, 'Depends: %s' % f.get('Depends'),
          'misses %s (pg_ws.so needs %s)' % (sorted(want - depends), libs))

    bad, names = [], []
    for line in run('dpkg-deb', '-c', deb).splitlines():
        mode, owner, _, _, _, name = line.split(None, 5)
        name = name.split(' -> ')[0]
        names.append(name[1:].rstrip('/'))
        ok = owner == 'root/root' and (mode == 'drwxr-xr-x' if mode[0] == 'd'
                                       else mode == '-rw-r--r--')
        if not ok:
            bad.append(line)
    check(not bad, 'files not owned by root or with other modes:', *bad[:5])

    # the versions kept apart: everything under N's directories or the
    # package's documentation, and pg_ws.so in N's pkglibdir only
    mine = ('/usr/lib/postgresql/%s/' % N, '/usr/share/postgresql/%s/' % N,
            '/usr/share/doc/%s/' % PKG)
    stray = [n for n in names if os.path.isfile(unpacked + n)
             and not n.startswith(mine)]
    check(not stray, 'files outside PostgreSQL %s\'s directories and the documentation:' % N,
          *stray[:5])
    sos = [n for n in names if n.endswith('/pg_ws.so')]
    check(sos == [PKGLIBDIR + '/pg_ws.so'], 'pg_ws.so in the package: %s' % sos)
    others = [n for n in names if re.match(r'/usr/(lib|share)/postgresql/(\d+)/', n)
              and not n.startswith(mine)]
    check(not others, 'files for another PostgreSQL:', *others[:5])

    doc = unpacked + '/usr/share/doc/%s/' % PKG
    with open(doc + 'copyright') as g, open(os.path.join(ROOT, 'debian', 'copyright')) as h:
        copyright_text = g.read()
        check(copyright_text == h.read(), 'the packaged copyright is not debian/copyright')
    check(re.search(r'^License: PostgreSQL$', copyright_text, re.M),
          'the copyright file names no "License: PostgreSQL"')
    with gzip.open(doc + 'changelog.Debian.gz', 'rt') as g:
        first = g.readline()
    check(first.startswith('pg-ws (%s)' % version), 'changelog.Debian.gz: %r' % first)

    _state['deb'] = deb
    _state['changes'] = changes
    _state['version'] = version
    return '%s in %.0f s; Depends: %s' % (os.path.basename(deb), took, f['Depends'])


async def test_lintian(ctx):
    """lintian on the .changes: no errors; warnings as comments."""
    check('changes' in _state, 'no package: make deb failed')
    r = await asyncio.to_thread(
        subprocess.run, ['lintian', _state['changes']], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600)
    tags = [line for line in r.stdout.splitlines() if re.match(r'^[EWIPXCO]: ', line)]
    errors = [line for line in tags if line.startswith('E: ')]
    warnings = [line for line in tags if line.startswith('W: ')]
    # lintian exits 1 for tags at or above --fail-on (errors by default)
    # and 2 when it could not check at all
    check(r.returncode in (0, 1), 'lintian failed (%d):' % r.returncode,
          *r.stdout.splitlines()[-10:])
    check(not errors and r.returncode == 0,
          'lintian reports %d errors (exit %d):' % (len(errors), r.returncode),
          *(errors + warnings)[:20])
    for line in warnings:
        print('# lintian: ' + line)
    lintian_version = run('lintian', '--version').strip()
    return '%s: no errors, %d warnings' % (lintian_version, len(warnings))


def pg_ws_files(prefix):
    """pg_ws's files that a make install or the package put under prefix."""
    data = [os.path.join(prefix + EXTDIR, f) for f in data_files()]
    return sorted(set(
        [prefix + PKGLIBDIR + '/pg_ws.so', prefix + PKGLIBDIR + '/bitcode/pg_ws.index.bc',
         prefix + PKGLIBDIR + '/bitcode/pg_ws', prefix + EXTDIR + '/pg_ws.control']
        + glob.glob(prefix + EXTDIR + '/pg_ws--*.sql') + data))


def remove(paths):
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.unlink(p)


async def test_install(ctx):
    """Remove pg_ws's files, install the package, and list its files."""
    try:
        check('deb' in _state, 'no package: make deb failed')
        deb = _state['deb']
        expected = [PKGLIBDIR + '/pg_ws.so', EXTDIR + '/pg_ws.control'] + \
            [EXTDIR + '/' + f for f in data_files()]
        if DEST:
            remove(pg_ws_files(DEST))
            run('dpkg', '-x', deb, DEST)
            listed = {n[1:].rstrip('/').split(' -> ')[0] for n in
                      (line.split(None, 5)[5] for line in run('dpkg-deb', '-c', deb).splitlines())}
            sums = run('dpkg-deb', '--info', deb, 'md5sums')
            changed = []
            for line in sums.splitlines():
                digest, name = line.split(None, 1)
                r = subprocess.run(['md5sum', os.path.join(DEST, name)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
                if r.stdout.split()[:1] != [digest]:
                    changed.append('/' + name)
            check(not changed, 'files not as packaged:', *changed[:5])
        else:
            if subprocess.run(['dpkg', '-s', PKG], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                await asyncio.to_thread(run, 'dpkg', '-r', PKG)
            remove(pg_ws_files(''))
            left = [p for p in pg_ws_files('') if os.path.lexists(p)]
            check(not left, 'still there before the installation:', *left[:5])
            env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
            await asyncio.to_thread(run, 'apt-get', 'install', '-y', '-q',
                                    '-o', 'DPkg::Lock::Timeout=300', deb, env=env)
            status = run('dpkg-query', '-W', '-f', '${Status} ${Version}', PKG)
            check(status == 'install ok installed %s' % _state['version'],
                  'dpkg-query: %r' % status)
            listed = set(run('dpkg', '-L', PKG).splitlines())
            verify = run('dpkg', '--verify', PKG, check_rc=False)
            check(not verify.strip(), 'dpkg --verify %s:' % PKG, *verify.splitlines()[:5])
            _state['installed'] = True
        missing = [p for p in expected if p not in listed]
        check(not missing, 'the package does not list:', *missing)
        absent = [p for p in expected if not os.path.isfile((DEST or '') + p)]
        check(not absent, 'not installed:', *absent)
        return '%d files' % len([n for n in listed if os.path.isfile((DEST or '') + n)])
    finally:
        if 'work' in _state and not os.environ.get('KEEP_WORK'):
            shutil.rmtree(_state['work'], ignore_errors=True)


async def test_e2e(ctx):
    """From the installed files: preload, CREATE EXTENSION, a subscriber,
    INSERT INTO client, client_create."""
    check('version' in _state, 'no package: make deb failed')
    cl = ctx.use(Cluster(name='deb', pgbin=(DEST or '') + SYSTEM_BIN))
    await asyncio.to_thread(cl.start)
    await cl.install()
    conn = await ctx.aconn()
    rows = await asql(conn, "SELECT extversion, current_setting('server_version_num')::int / 10000"
                            " FROM pg_extension WHERE extname = 'pg_ws'")
    check(rows == [(default_version(), int(N))],
          '(extversion, PostgreSQL major): %s, expected %s' % (rows, (default_version(), N)))
    pid, _ = await worker_row(conn)
    with open('/proc/%d/maps' % pid) as f:
        mapped = {line.split(None, 5)[5].strip() for line in f
                  if line.rstrip().endswith('/pg_ws.so')}
    want = (DEST or '') + PKGLIBDIR + '/pg_ws.so'
    check(mapped == {want}, 'the worker maps %s, expected %s' % (sorted(mapped), want))
    sub = await ctx.sub()
    rows = await asql(conn, "INSERT INTO client (gender, age, image) VALUES "
                            "('female', 31, 'client_images/deb.jpg') RETURNING id")
    cid = rows[0][0]

    def created(msgs):
        for m in msgs:
            j = json.loads(m)
            if j['event'] == 'client_create' and j['data']['id'] == cid:
                return True
        return False
    await sub.wait_until(created, 15, 'client_create of client %d' % cid)
    # the console, a DATA file, is served from the installed files too
    status, ctype, body = await asyncio.to_thread(http_get, cl.wsport, '/')
    check(status == 200 and ctype.startswith('text/html') and b'<html' in body.lower(),
          'GET /: %s %s, %d bytes' % (status, ctype, len(body)))
    return 'client_create of client %d from %s; GET / served the console (%d bytes)' % (
        cid, short(want), len(body))


async def test_installcheck(ctx):
    """debian/tests/installcheck: the pg_regress suite against the
    installed package, on pg_buildext's pg_virtualenv cluster."""
    if DEST:
        raise Skip('pg_virtualenv runs the system\'s PostgreSQL, not %s' % DEST)
    check(_state.get('installed'), 'the package is not installed: apt failed')
    # a copy of what make installcheck reads, which postgres (the server,
    # which includes test/regress.conf) can read
    work = tempfile.mkdtemp(prefix='pg_ws_installcheck.')
    try:
        os.chmod(work, 0o755)
        for name in ('Makefile', 'pg_ws.control', 'sql', 'expected', 'test', 'debian'):
            src = os.path.join(ROOT, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(work, name))
        r = await asyncio.to_thread(
            subprocess.run, [os.path.join(work, 'debian', 'tests', 'installcheck'), work],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, cwd=work)
        lines = r.stdout.splitlines()
        # pg_regress of 15: "test NAME ... ok"; of 16 and later, TAP:
        # "ok 1 - NAME" ("+ NAME" in a parallel group), "not ok 2 - NAME"
        passed = [ln for ln in lines if re.match(r'^(test | +)?[a-z_]+ +\.\.\. ok', ln)
                  or re.match(r'^ok \d+\s+[-+] [a-z_]+', ln)]
        failed = [ln for ln in lines if re.search(r'\.\.\. (FAILED|failed)', ln)
                  or re.match(r'^not ok \d+', ln)]
        want = run('make', '-s', 'print-regress').split()
        diffs = []
        if r.returncode != 0:
            for d in glob.glob(os.path.join(work, 'regression.diffs')):
                with open(d, errors='replace') as f:
                    diffs = f.read().splitlines()[:40]
        check(r.returncode == 0 and not failed,
              'installcheck failed (exit %d): %s' % (r.returncode, failed or lines[-5:]),
              *diffs)
        check('### PostgreSQL %s installcheck ###' % N in lines,
              'installcheck did not run for PostgreSQL %s:' % N, *lines[:5])
        check(len(passed) == len(want),
              'installcheck passed %d tests, the Makefile has %d' % (len(passed), len(want)),
              *lines[-5:])
        return '%d pg_regress tests passed against %s' % (len(passed), PKG)
    finally:
        if not os.environ.get('KEEP_WORK'):
            shutil.rmtree(work, ignore_errors=True)


def http_get(port, path):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request('GET', path)
        r = conn.getresponse()
        return r.status, r.getheader('Content-Type', ''), r.read()
    finally:
        conn.close()


TESTS = [
    ('make deb (dpkg-buildpackage) builds %s_V_ARCH.deb: versions, control, Depends, '
     'files for PostgreSQL %s only, modes, copyright' % (PKG, N), test_build, 900),
    ('lintian %s: no errors' % PKG, test_lintian, 600),
    ('%s: the package installs; it lists pg_ws.so, pg_ws.control and every DATA file' % HOW,
     test_install, 600),
    ('from the installed files (%s, PostgreSQL %s): CREATE EXTENSION, /ws/ gets '
     'client_create, GET / the console' % (HOW, N),
     test_e2e, 120),
    ('%s: the package\'s autopkgtest (debian/tests/installcheck), the pg_regress suite '
     'against PostgreSQL %s' % (HOW, N), test_installcheck, 600),
]

if __name__ == '__main__':
    run_tap(TESTS, Ctx, watchdog_seconds=WATCHDOG_SECONDS)
