#!/usr/bin/env bash
# Install what the server needs (not the test tools), build and install
# pg_ws, and start a local PostgreSQL (the release's: 15 on Debian 12, 17 on
# Debian 13, 18 on testing) with pg_ws preloaded, leaving
# http://127.0.0.1:8765/ (the console) and ws://127.0.0.1:8765/ws/ running.
# Run as root; the server runs as the postgres user.  Running it again
# rebuilds and restarts the same server, keeping its data.  It ends by
# printing the console's URL and a psql line that makes an event.
#
#   PGWS_DATA    data directory        (default /var/lib/postgresql/pg_ws)
#   PGWS_PGPORT  PostgreSQL port       (default 5433, unix socket only)
#   PGWS_WSPORT  WebSocket port        (default 8765)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${PGWS_DATA:-/var/lib/postgresql/pg_ws}
PGPORT=${PGWS_PGPORT:-5433}
WSPORT=${PGWS_WSPORT:-8765}
BIN=/usr/lib/postgresql/$("$ROOT/scripts/install_deps.sh" --pg-major)/bin
SOCKDIR=/var/run/postgresql

"$ROOT/scripts/install_deps.sh" --server
echo "pg_ws: building"
make -s -C "$ROOT" PG_CONFIG="$BIN/pg_config" >/dev/null
echo "pg_ws: installing into $("$BIN/pg_config" --pkglibdir)"
make -s -C "$ROOT" PG_CONFIG="$BIN/pg_config" install >/dev/null

mkdir -p "$SOCKDIR" && chown postgres: "$SOCKDIR"
# from /: postgres may not enter the clone's directory (under /root, say)
as_pg() { (cd / && runuser -u postgres -- "$@"); }

if [ ! -s "$DATA/PG_VERSION" ]; then
	echo "pg_ws: creating the cluster in $DATA"
	mkdir -p "$DATA" && chown postgres: "$DATA"
	as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=peer --auth-local=trust \
		-E UTF8 >/dev/null
	cat >> "$DATA/postgresql.conf" <<CONF

# pg_ws (scripts/run_server.sh)
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$SOCKDIR'
shared_preload_libraries = 'pg_ws'
pg_ws.database = 'postgres'
pg_ws.listen_addresses = 'localhost'
pg_ws.port = $WSPORT
CONF
fi

echo "pg_ws: starting PostgreSQL (port $PGPORT)"
if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
	as_pg "$BIN/pg_ctl" -D "$DATA" -w -m fast restart -l "$DATA/server.log" >/dev/null
else
	as_pg "$BIN/pg_ctl" -D "$DATA" -w start -l "$DATA/server.log" >/dev/null
fi
PGOPTIONS="-c client_min_messages=warning" as_pg "$BIN/psql" -h "$SOCKDIR" -p "$PGPORT" -d postgres -X -q \
	-c "CREATE EXTENSION IF NOT EXISTS pg_ws" >/dev/null

# wait for the worker to listen (bash's /dev/tcp: no test tool needed)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$WSPORT") 2>/dev/null && break
	sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$WSPORT") 2>/dev/null; then
	echo "pg_ws: the worker is not listening on port $WSPORT; the end of $DATA/server.log:" >&2
	tail -n 20 "$DATA/server.log" >&2
	exit 1
fi

cat <<MSG

pg_ws is running.
  console:     http://127.0.0.1:$WSPORT/        (open it in a browser: it shows the events)
  WebSocket:   ws://127.0.0.1:$WSPORT/ws/
  PostgreSQL:  psql -h $SOCKDIR -p $PGPORT -U postgres postgres
  server log:  $DATA/server.log

Make an event (the console shows it as client_create):
  psql -h $SOCKDIR -p $PGPORT -U postgres postgres -c "INSERT INTO client (gender, age, image) VALUES ('female', 31, 'client_images/a.jpg')"

Stop:  runuser -u postgres -- $BIN/pg_ctl -D $DATA stop
MSG
