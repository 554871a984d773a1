#!/usr/bin/env bash
# Install what is missing, build and install pg_ws, and run every test:
#   1. the pg_regress suite (sql/, expected/) on a temporary instance with
#      pg_ws preloaded (settings in test/regress.conf);
#   2. the end-to-end suites (test/e2e/*.py): real WebSocket clients
#      against a running server; four of them once more with
#      pg_ws.event_loop = libev;
#   3. last, test/e2e/test_deb.py: `make deb`, the package installed with
#      apt into Debian's PostgreSQL (left installed: the same files make
#      install put there), and an event from the installed files.  Skipped
#      with PG_WS_SKIP_DEB=1; with a relocated PG_CONFIG it unpacks the
#      package into that copy instead (see the test).
# Run as root from anywhere: PostgreSQL's own processes run as postgres.
# Ends with one line "N passed, M failed" over all suites (a test that
# reports "ok ... # skip" is neither, and counted on the line before) and
# exits non-zero if anything failed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

"$ROOT/scripts/install_deps.sh" || exit 1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$("$ROOT/scripts/install_deps.sh" --pg-major)/bin/pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
export PG_WS_PGBIN="$BINDIR"	# the end-to-end suites use the same PostgreSQL
make -s PG_CONFIG="$PG_CONFIG" >/dev/null && make -s PG_CONFIG="$PG_CONFIG" install >/dev/null || {
	echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

# PostgreSQL refuses to run as root: work in a directory postgres owns
WORK=$(mktemp -d /tmp/pg_ws_test.XXXXXX)
cp -r sql expected test "$WORK"/
chown -R postgres: "$WORK"
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

passed=0
failed=0
skipped=0

echo "== pg_regress"
# from $WORK, which postgres can read: sql/watch.sql includes test/django/
regress_tests=$(make -s print-regress)
(cd "$WORK" && runuser -u postgres -- "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
	--temp-instance="$WORK/tmp_check" --temp-config="$WORK/test/regress.conf" \
	--inputdir="$WORK" --outputdir="$WORK" --bindir="$BINDIR" \
	--dbname=contrib_regression \
	$regress_tests) > "$WORK/regress.log" 2>&1
cat "$WORK/regress.log"
# 15 prints "test name ... ok" / "... FAILED"; 16 and later print TAP,
# "ok 1 - name" / "not ok 2 - name"
p=$(grep -cE '^(test | +)?[a-z_]+ +\.\.\. ok|^ok [0-9]+ +(- )?[a-z_]' "$WORK/regress.log")
f=$(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ ' "$WORK/regress.log")
if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; fi	# pg_regress did not run
[ -f "$WORK/regression.diffs" ] && cat "$WORK/regression.diffs"
passed=$((passed + p)); failed=$((failed + f))

shopt -s nullglob
e2e=()
for t in test/e2e/test_*.py; do
	[ "$t" = test/e2e/test_deb.py ] || e2e+=("$t")
done
# and again on the libev (epoll) event loop: delivery, hostile peers,
# operations and standbys
libev=(test/e2e/test_e2e.py test/e2e/test_hostile.py test/e2e/test_operations.py
	test/e2e/test_standby.py)
# the package last: it installs into Debian's PostgreSQL
last=(test/e2e/test_deb.py)
[ -n "${SKIP_E2E:-}" ] && e2e=() && libev=() && last=()	# for quick runs while developing
for t in "${e2e[@]}" "${libev[@]/#/libev:}" "${last[@]}"; do
	loop=
	case "$t" in libev:*) loop=libev; t=${t#libev:} ;; esac
	echo "== $t${loop:+ (pg_ws.event_loop = $loop)}"
	PG_WS_E2E_EVENT_LOOP=$loop /usr/bin/python3 "$t" 2>&1 | tee "$WORK/e2e.log"
	rc=${PIPESTATUS[0]}
	p=$(grep -E '^ok ' "$WORK/e2e.log" | grep -cviE ' # skip( |$)')
	s=$(grep -E '^ok ' "$WORK/e2e.log" | grep -ciE ' # skip( |$)')
	f=$(grep -cE '^not ok ' "$WORK/e2e.log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi	# died before reporting
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done

[ "$skipped" -gt 0 ] && echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
