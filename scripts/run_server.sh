#!/usr/bin/env bash
# Install what is missing, build and install pg_ws, and start a local
# PostgreSQL 15 with pg_ws preloaded, leaving ws://127.0.0.1:8765/ws/
# running.  Run as root; the server runs as the postgres user.  Running it
# again rebuilds and restarts the same server, keeping its data.
#
#   PGWS_DATA    data directory        (default /var/lib/postgresql/pg_ws)
#   PGWS_PGPORT  PostgreSQL port       (default 5433, unix socket only)
#   PGWS_WSPORT  WebSocket port        (default 8765)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${PGWS_DATA:-/var/lib/postgresql/pg_ws}
PGPORT=${PGWS_PGPORT:-5433}
WSPORT=${PGWS_WSPORT:-8765}
BIN=/usr/lib/postgresql/15/bin
SOCKDIR=/var/run/postgresql

"$ROOT/scripts/install_deps.sh"
make -s -C "$ROOT" PG_CONFIG="$BIN/pg_config" >/dev/null
make -s -C "$ROOT" PG_CONFIG="$BIN/pg_config" install >/dev/null

mkdir -p "$SOCKDIR" && chown postgres: "$SOCKDIR"
as_pg() { runuser -u postgres -- "$@"; }

if [ ! -s "$DATA/PG_VERSION" ]; then
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

if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
	as_pg "$BIN/pg_ctl" -D "$DATA" -w -m fast restart -l "$DATA/server.log" >/dev/null
else
	as_pg "$BIN/pg_ctl" -D "$DATA" -w start -l "$DATA/server.log" >/dev/null
fi
PGOPTIONS="-c client_min_messages=warning" as_pg "$BIN/psql" -h "$SOCKDIR" -p "$PGPORT" -d postgres -X -q \
	-c "CREATE EXTENSION IF NOT EXISTS pg_ws" >/dev/null

# wait for the worker to listen
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$WSPORT/ws/" && break
	sleep 0.1
done

cat <<MSG
pg_ws is running.
  WebSocket endpoint:  ws://127.0.0.1:$WSPORT/ws/   (plain HTTP GET answers 400)
  Console:             http://127.0.0.1:$WSPORT/    (open it in a browser)
  PostgreSQL:          psql -h $SOCKDIR -p $PGPORT -U postgres postgres
  server log:          $DATA/server.log

Watch events (in one terminal):
  /usr/bin/python3 -m websockets ws://127.0.0.1:$WSPORT/ws/

Make some (in another):
  psql -h $SOCKDIR -p $PGPORT -U postgres postgres -c \\
    "INSERT INTO client (gender, age, image) VALUES ('female', 31, 'client_images/a.jpg')"

Stop:  runuser -u postgres -- $BIN/pg_ctl -D $DATA stop
MSG
