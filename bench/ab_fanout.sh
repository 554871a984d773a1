#!/usr/bin/env bash
# bench/ab_fanout.sh: two builds of pg_ws side by side on the live fan-out.
#
#   bash bench/ab_fanout.sh PGBIN_A PGBIN_B     (as root)
#
# PGBIN_A and PGBIN_B are the bin directories of two PostgreSQL
# installations of the same major version, each with its own build of
# pg_ws installed (make PG_CONFIG=$PGBIN_X/pg_config install; a copy of
# /usr/lib/postgresql and /usr/share/postgresql under a temp directory
# does).  One throw-away cluster (fsync and synchronous_commit on, libev)
# is started by each in turn, BENCH_AB_ROUNDS (2) rounds alternated: N
# (BENCH_AB_SUBS, 9000) ws_fast subscribers, then pgbench --rate
# BENCH_AB_RATE (10) single-row commits for BENCH_AB_SECONDS (10) to all of
# them.  Per round: the worker's CPU per delivered message (utime + stime
# of the worker over the stream, over the messages), commit-to-receive p50
# and p99, and the p99 of each event's last delivery.  With
# BENCH_AB_MODE=drop, no stream: the worker's CPU while the N connect, and
# while they all leave at once (the clients killed, as a network blip or a
# proxy's restart would), until pg_ws_stats shows no connection.  Loopback
# only; the cluster is stopped and removed when it ends.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# = 2 ] || { echo "usage: $0 PGBIN_A PGBIN_B" >&2; exit 2; }
A=$1
B=$2
SUBS=${BENCH_AB_SUBS:-9000}
RATE=${BENCH_AB_RATE:-10}
SECONDS_=${BENCH_AB_SECONDS:-10}
ROUNDS=${BENCH_AB_ROUNDS:-2}
MODE=${BENCH_AB_MODE:-stream}	# stream or drop
NOFILE=$((SUBS + 1000))
[ -x "$HERE/ws_fast" ] || make -s -C "$HERE" ws_fast >/dev/null

TMP=$(mktemp -d /tmp/pg_ws_ab.XXXXXX)
chown postgres: "$TMP"
# free ports, as wal_profile.sh finds them: a random pair could be taken
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port)
WSPORT=$(free_port)
RUNNING=""
cleanup() {
	[ -n "$RUNNING" ] && runuser -u postgres -- "$RUNNING/pg_ctl" -D "$TMP/data" -m immediate -w stop >/dev/null 2>&1
	pkill -f "ws_fast -H 127.0.0.1 -p $WSPORT " 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

runuser -u postgres -- "$A/initdb" -D "$TMP/data" -U postgres --auth=trust >/dev/null
cat >>"$TMP/data/postgresql.conf" <<EOF
shared_preload_libraries = 'pg_ws'
listen_addresses = ''
unix_socket_directories = '$TMP'
port = $PGPORT
pg_ws.port = $WSPORT
pg_ws.listen_addresses = '127.0.0.1'
pg_ws.database = 'postgres'
pg_ws.max_connections = $((SUBS + 200))
pg_ws.event_loop = 'libev'
fsync = on
synchronous_commit = on
autovacuum = off
EOF
echo "INSERT INTO visit_history (client_id, device_id) VALUES (1, (extract(epoch from clock_timestamp()) * 1000000)::bigint::text);" >"$TMP/insert.sql"

psql_() { "$1/psql" -X -q -At -h "$TMP" -p "$PGPORT" -U postgres -d postgres -c "$2"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }

echo "# pg_ws A/B of the live fan-out  $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A: $A ($(md5sum <"$("$A/pg_config" --pkglibdir)/pg_ws.so" | cut -c1-12))"
echo "# B: $B ($(md5sum <"$("$B/pg_config" --pkglibdir)/pg_ws.so" | cut -c1-12))"
if [ "$MODE" = drop ]; then
	echo "# $SUBS subscribers (ws_fast -j 4 --lean) connect, then all leave at once; libev"
else
	echo "# $SUBS subscribers (ws_fast -j 4 --lean), pgbench --rate $RATE for ${SECONDS_}s, fsync and synchronous_commit on, libev"
fi
first=1
for ((round = 1; round <= ROUNDS; round++)); do
	for v in A B; do
		bin=${!v}
		prlimit --nofile="$NOFILE:$NOFILE" runuser -u postgres -- "$bin/pg_ctl" -D "$TMP/data" \
			-l "$TMP/server.log" -w start >/dev/null
		RUNNING=$bin
		if [ "$first" = 1 ]; then
			psql_ "$bin" "CREATE EXTENSION pg_ws" >/dev/null
			psql_ "$bin" "INSERT INTO client (id, visit_count) VALUES (1, 0)" >/dev/null
			first=0
		fi
		rm -f "$TMP/ready"
		worker=$(psql_ "$bin" "SELECT worker_pid FROM pg_ws_stats")
		c0=$(ticks "$worker")
		prlimit --nofile="$NOFILE:$NOFILE" "$HERE/ws_fast" -H 127.0.0.1 -p "$WSPORT" -n "$SUBS" -j 4 -m 25 \
			--lean -r "$TMP/ready" -E END -q -t 300 >"$TMP/sub.out" 2>"$TMP/sub.err" &
		sub=$!
		for ((i = 0; i < 600; i++)); do
			[ -s "$TMP/ready" ] && break
			sleep 0.1
		done
		[ -s "$TMP/ready" ] || { echo "ab_fanout.sh: $SUBS subscribers did not connect in 60 s" >&2; exit 1; }
		c1=$(ticks "$worker")
		sleep 2
		if [ "$MODE" = drop ]; then
			d0=$(ticks "$worker")
			s0=$(date +%s.%N)
			kill -9 "$sub"
			pkill -9 -f "ws_fast -H 127.0.0.1 -p $WSPORT " || true
			wait "$sub" 2>/dev/null || true
			until [ "$(psql_ "$bin" "SELECT connections FROM pg_ws_stats")" = 0 ]; do sleep 0.1; done
			d1=$(ticks "$worker")
			printf 'round %d %s: connect %s s, worker %.2f s; all leave: worker %.2f s (gone from pg_ws_stats, published once a second, after %.1f s)\n' \
				"$round" "$v" "$(cut -d' ' -f2 "$TMP/ready")" "$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz}')" \
				"$(awk -v t=$((d1 - d0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz}')" \
				"$(echo "$(date +%s.%N) - $s0" | bc)"
			runuser -u postgres -- "$bin/pg_ctl" -D "$TMP/data" -w stop >/dev/null
			RUNNING=""
			continue
		fi
		t0=$(ticks "$worker")
		"$bin/pgbench" -n -h "$TMP" -p "$PGPORT" -U postgres -c 1 -R "$RATE" -T "$SECONDS_" \
			-f "$TMP/insert.sql" postgres >/dev/null 2>&1
		t1=$(ticks "$worker")
		psql_ "$bin" "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		wait "$sub"
		res=$(grep '^RESULT' "$TMP/sub.out")
		msgs=$(field "$res" msgs)
		rows=$(psql_ "$bin" "SELECT count(*) FROM visit_history WHERE device_id <> 'END'")
		psql_ "$bin" "TRUNCATE visit_history"
		printf 'round %d %s: worker %.2f us per message (%d ticks, %s messages, %s)  p50 %.1f ms  p99 %.1f ms  each event to its last subscriber p99 %.1f ms\n' \
			"$round" "$v" "$(awk -v t=$((t1 - t0)) -v m="$msgs" -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz * 1e6 / m}')" \
			$((t1 - t0)) "$msgs" "$([ "$msgs" = $((rows * SUBS)) ] && echo "all delivered" || echo "NOT all $((rows * SUBS))")" \
			"$(awk -v x="$(field "$res" p50_us)" 'BEGIN {print x / 1000}')" \
			"$(awk -v x="$(field "$res" p99_us)" 'BEGIN {print x / 1000}')" \
			"$(awk -v x="$(field "$res" last_p99_us)" 'BEGIN {print x / 1000}')"
		runuser -u postgres -- "$bin/pg_ctl" -D "$TMP/data" -w stop >/dev/null
		RUNNING=""
	done
done
