#!/usr/bin/env bash
# Install, from Debian's apt, what pg_ws needs.  Run as root.  The
# release decides the PostgreSQL: Debian 12 (bookworm) 15, Debian 13
# (trixie) 17, testing (forky) 18; PG_WS_PG_MAJOR=N chooses another one
# its apt has (postgresql-N, postgresql-server-dev-N).
#
#   install_deps.sh            building, running and testing pg_ws: the
#                              server's packages and the test tools
#                              (test/run_tests.sh, .ci/run), and the
#                              JavaScript client's tools from the npm
#                              registry (`npm ci` in clients/js)
#   install_deps.sh --server   building and running it only, without
#                              recommended packages (scripts/run_server.sh)
#   --always                   update and install (upgrade) them all, as CI
#                              does; otherwise only what is missing
#   --print                    print the mode's packages, one per line, and
#                              install nothing
#   --pg-major                 print the PostgreSQL major version this
#                              release builds and tests pg_ws against
#                              (test/run_tests.sh), and install nothing
#   --simulate-fresh           print, one per line, every package apt would
#                              install for the mode on a machine that has
#                              none yet (apt-get -s against an empty dpkg
#                              status, from the local package lists: no
#                              network), and install nothing
#                              (test/e2e/test_deps.py)
#
# While apt works it prints its progress, a line every few per cent of the
# download and of the installation, so that a plain pipe (CI's log) shows it
# too; apt's own output goes to a log that is shown if apt fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

codename() {
	[ -r /etc/os-release ] && (. /etc/os-release && echo "${VERSION_CODENAME:-}")
	return 0
}

# the release's PostgreSQL
pg_major() {
	case "$(codename)" in
		bookworm) echo 15 ;;
		trixie) echo 17 ;;
		forky|sid|"") echo 18 ;;	# testing's os-release may carry no codename
		*) echo 18 ;;
	esac
}
PG_MAJOR=${PG_WS_PG_MAJOR:-$(pg_major)}

# building and running pg_ws
SERVER=(
	build-essential
	postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR	# the server and PGXS
	libwebsockets-dev libjson-c-dev			# the worker's server; tokens' JSON
	libev-dev								# pg_ws.event_loop = libev (epoll)
	libssl-dev								# tokens' signatures (OpenSSL 3)
	zlib1g-dev								# permessage-deflate (deflate.c)
)
# testing it, on top of those
TEST_TOOLS=(
	python3-websockets python3-psycopg2		# the end-to-end tests' client
	python3-cryptography python3-openssl	# test_tls.py: certificates, renegotiation
	python3-prometheus-client				# test_observe.py: parses /metrics
	chromium								# the browser end-to-end tests (WebSocket, EventSource)
	iproute2								# ss: the keepalive test looks at sockets
	curl									# watching /events by hand; test_sse.py's curl -N
	pkg-config								# bench/Makefile's clients
	debhelper postgresql-server-dev-all		# make deb: dpkg-buildpackage, pg_buildext
	lintian									# test_deb.py checks the packages
	patroni etcd-server haproxy				# test_cluster.py: Patroni, its store, a balancer; test_sse.py: a proxy
	nginx									# test_sse.py: the README's nginx server block in front of /ws/ and /events
	python3-etcd							# Patroni's etcd3 store (13 and testing satisfy its dependency with consul)
)
# the JavaScript client's (clients/js): Node 20.10 or later, and npm, which
# then installs its package-lock.json's typescript and esbuild from the npm
# registry (js_client_deps below).  Debian 13 has nodejs 20, testing 24;
# Debian 12's is 18, which has no WebSocket: there the machine's own Node
# (20 in CI's image) is used, and without one test_js_client.py skips
case "$(codename)" in
	bookworm) ;;
	*) TEST_TOOLS+=(nodejs npm) ;;
esac
# daemons those packages start on a machine run by systemd, which no test
# uses (test_cluster.py starts its own on free ports): stopped and disabled
# when they are installed here, so that nothing is left listening
UNUSED_SERVICES=(etcd.service haproxy.service nginx.service)

mode=all always= print= simulate=
for arg in "$@"; do
	case "$arg" in
		--server) mode=server ;;
		--always) always=1 ;;
		--print) print=1 ;;
		--pg-major) echo "$PG_MAJOR"; exit 0 ;;
		--simulate-fresh) simulate=1 ;;
		*) echo "usage: $0 [--server] [--always] [--print | --simulate-fresh | --pg-major]" >&2; exit 2 ;;
	esac
done
PACKAGES=("${SERVER[@]}")
apt_opts=()
if [ "$mode" = server ]; then
	apt_opts+=(--no-install-recommends)
else
	PACKAGES+=("${TEST_TOOLS[@]}")
fi
if [ -n "$print" ]; then
	printf '%s\n' "${PACKAGES[@]}"
	exit 0
fi
if [ -n "$simulate" ]; then
	apt-get install -s "${apt_opts[@]}" -o Dir::State::status=/dev/null "${PACKAGES[@]}" |
		awk '$1 == "Inst" { print $2 }'
	exit "${PIPESTATUS[0]}"
fi

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ -n "$always" ] && missing=("${PACKAGES[@]}")

# clients/js's build and test tools, as its package-lock.json has them:
# `npm ci` when node_modules is missing or older than the lock file (always
# with --always); not for --server
js_client_deps() {
	local js=$ROOT/clients/js log
	[ "$mode" = server ] && return 0
	if ! command -v npm >/dev/null; then
		echo "pg_ws: no npm here: the JavaScript client's tests will be skipped"
		return 0
	fi
	if [ -z "$always" ] && [ "$js/node_modules/.package-lock.json" -nt "$js/package-lock.json" ]; then
		return 0
	fi
	echo "pg_ws: npm ci in clients/js"
	log=$(mktemp /tmp/pg_ws_npm.XXXXXX)
	if ! (cd "$js" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
		echo "pg_ws: npm ci in clients/js failed; its last lines:" >&2
		tail -n 30 "$log" >&2
		rm -f "$log"
		exit 1
	fi
	rm -f "$log"
}

if [ ${#missing[@]} -eq 0 ]; then
	js_client_deps
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp /tmp/pg_ws_apt.XXXXXX)
trap 'rm -f "$LOG"' EXIT
# wait for another apt (unattended-upgrades on a new machine) rather than fail
apt_opts+=(-y -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)

# apt's output on failure
failed() {
	echo "pg_ws: $1 failed; its last lines:" >&2
	tail -n 30 "$LOG" >&2
	exit 1
}

echo "pg_ws: apt-get update"
apt-get update -q -o DPkg::Lock::Timeout=600 >"$LOG" 2>&1 || failed "apt-get update"

n=$(apt-get install -s "${apt_opts[@]}" "${missing[@]}" 2>/dev/null | grep -c '^Inst ' || true)
echo "pg_ws: installing ${missing[*]}: $n packages (this can take a few minutes)"

# APT::Status-Fd reports "dlstatus:FILE:PERCENT:WHAT" while downloading and
# "pmstatus:PACKAGE[:ARCH]:PERCENT:WHAT" while installing: print a line each
# time the percentage passes the next multiple of 5
set +e
apt-get install "${apt_opts[@]}" -o APT::Status-Fd=3 "${missing[@]}" 3>&1 >"$LOG" 2>&1 |
	awk -F: '
		$1 == "dlstatus" { phase = "downloading"; i = 3 }
		$1 == "pmstatus" { phase = "installing"; for (i = 3; i < NF && $i !~ /^[0-9.]+$/; i++) ; }
		$1 != "dlstatus" && $1 != "pmstatus" { next }
		{
			pct = int($i); what = $(i + 1)
			for (k = i + 2; k <= NF; k++) what = what ":" $k
			step = int(pct / 5)
			if (phase != last || step > shown) {
				printf "pg_ws:   %s %3d%%  %s\n", phase, pct, what
				fflush()
				last = phase; shown = step
			}
		}'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || failed "apt-get install"
case " ${missing[*]} " in
	*" etcd-server "*|*" haproxy "*|*" nginx "*)
		if command -v systemctl >/dev/null &&
			[ "$(systemctl is-system-running 2>/dev/null)" != offline ]; then
			systemctl disable --now "${UNUSED_SERVICES[@]}" >>"$LOG" 2>&1 || true
		fi ;;
esac
echo "pg_ws: installed"
js_client_deps
