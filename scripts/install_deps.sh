#!/usr/bin/env bash
# Install, from Debian 12's apt, what building, running and testing pg_ws
# needs.  Run as root.  Installs only what is missing, so it is cheap to
# run again; --always updates and installs (upgrades) them all, as CI does.
set -euo pipefail

PACKAGES=(
	build-essential pkg-config
	postgresql-15 postgresql-server-dev-15	# the server and PGXS
	libwebsockets-dev libjson-c-dev			# the worker's server; tokens' JSON
	libev-dev								# pg_ws.event_loop = libev (epoll)
	libssl-dev								# tokens' signatures (OpenSSL 3)
	python3-websockets python3-psycopg2		# the end-to-end tests' client
	python3-cryptography python3-openssl	# test_tls.py: certificates, renegotiation
	chromium								# the browser end-to-end test
	iproute2								# ss: the keepalive test looks at sockets
	curl									# watching /ws/ by hand
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${1:-}" = "--always" ] && missing=("${PACKAGES[@]}")
if [ ${#missing[@]} -gt 0 ]; then
	echo "pg_ws: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi
