#!/usr/bin/env bash
# bench/ab_visits.sh: two builds of pg_ws side by side on the visit path,
# the UPDATE of a client whose client_update lists its visits.
#
#   bash bench/ab_visits.sh PGBIN_A PGBIN_B     (as root)
#
# PGBIN_A and PGBIN_B are the bin directories of two PostgreSQL
# installations of the same major version, each with its own build of
# pg_ws installed (make PG_CONFIG=$PGBIN_X/pg_config install; a copy of
# /usr/lib/postgresql and /usr/share/postgresql under a temp directory
# does).  One throw-away cluster (fsync and synchronous_commit on unless
# BENCH_AB_SYNC=off) is started by each in turn.  For each number of
# visits in BENCH_AB_VISITS ("100 1000") and of pgbench clients in
# BENCH_AB_CLIENTS ("1 8"), BENCH_AB_ROUNDS (3) rounds alternate A and B
# and, within each, plain (the client table's pg_ws trigger disabled) and
# ws: pgbench -n -M prepared -T BENCH_AB_SECONDS (5), each pgbench client
# updating a client of its own that has that many visits, as run_bench.sh's
# write part does.  Per run: tps, the CPU of the pgbench connections'
# backends per transaction (utime + stime, read from /proc while pgbench
# runs), and WAL bytes per transaction.  Then medians, ws / plain for each
# build, and B / A.  Loopback only; the cluster is stopped and removed
# when it ends.
set -euo pipefail

[ $# = 2 ] || { echo "usage: $0 PGBIN_A PGBIN_B" >&2; exit 2; }
A=$1
B=$2
VISITS=${BENCH_AB_VISITS:-"100 1000"}
CLIENTS=${BENCH_AB_CLIENTS:-"1 8"}
SECONDS_=${BENCH_AB_SECONDS:-5}
ROUNDS=${BENCH_AB_ROUNDS:-3}
SYNC=${BENCH_AB_SYNC:-on}
maxc=$(tr ' ' '\n' <<<"$CLIENTS" | sort -n | tail -1)
maxv=$(tr ' ' '\n' <<<"$VISITS" | sort -n | tail -1)

TMP=$(mktemp -d /tmp/pg_ws_abv.XXXXXX)
chown postgres: "$TMP"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port)
WSPORT=$(free_port)
RUNNING=""
cleanup() {
	[ -n "$RUNNING" ] && runuser -u postgres -- "$RUNNING/pg_ctl" -D "$TMP/data" -m immediate -w stop >/dev/null 2>&1
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
pg_ws.max_visit_histories = $maxv
shared_buffers = 256MB
max_wal_size = 8GB
autovacuum = off
fsync = $SYNC
synchronous_commit = $SYNC
EOF
cat >"$TMP/update_client.sql" <<'EOS'
\set cid :client_id + 2
UPDATE client SET visit_count = visit_count + 1 WHERE id = :cid;
EOS
chmod 644 "$TMP/update_client.sql"

psql_() { "$1/psql" -X -q -At -h "$TMP" -p "$PGPORT" -U postgres -d postgres -c "$2"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# utime + stime of the backends of pgbench's connections, in clock ticks
backend_ticks() {
	local total=0 pid
	for pid in $(psql_ "$1" "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'"); do
		[ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
	done
	echo "$total"
}
start() {
	runuser -u postgres -- "$1/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w start >/dev/null
	RUNNING=$1
}
stop() {
	runuser -u postgres -- "$1/pg_ctl" -D "$TMP/data" -w stop >/dev/null
	RUNNING=""
}

echo "# pg_ws A/B of the visit path  $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A: $A ($(md5sum <"$("$A/pg_config" --pkglibdir)/pg_ws.so" | cut -c1-12))"
echo "# B: $B ($(md5sum <"$("$B/pg_config" --pkglibdir)/pg_ws.so" | cut -c1-12))"
echo "# UPDATE client SET visit_count = visit_count + 1 WHERE id = <the pgbench client's own>; pgbench -n -M prepared -T $SECONDS_; fsync and synchronous_commit $SYNC"
hz=$(getconf CLK_TCK)
declare -A TPS CPU WAL
start "$A"
psql_ "$A" "CREATE EXTENSION pg_ws" >/dev/null
stop "$A"
for v in $VISITS; do
	start "$A"
	psql_ "$A" "TRUNCATE client CASCADE" >/dev/null
	psql_ "$A" "ALTER TABLE client DISABLE TRIGGER pg_ws_event" >/dev/null 2>&1
	psql_ "$A" "ALTER TABLE visit_history DISABLE TRIGGER pg_ws_event" >/dev/null 2>&1
	psql_ "$A" "INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age, image)
		SELECT 1 + i, '2026-01-01', '2026-01-02', 0, 'female', 30, 'client_images/c' || i || '.jpg'
		FROM generate_series(1, $maxc) i" >/dev/null
	psql_ "$A" "INSERT INTO visit_history (client_id, datetime, device_id)
		SELECT 1 + i, '2026-01-01'::timestamptz + g * interval '1 minute', 'd' || g
		FROM generate_series(1, $maxc) i, generate_series(1, $v) g" >/dev/null
	psql_ "$A" "ALTER TABLE visit_history ENABLE TRIGGER pg_ws_event" >/dev/null
	psql_ "$A" "VACUUM ANALYZE client, visit_history" >/dev/null
	event=$(psql_ "$A" "BEGIN; ALTER TABLE client ENABLE TRIGGER pg_ws_event;
		UPDATE client SET visit_count = visit_count + 1 WHERE id = 2;
		SELECT length(e) FROM pg_ws_pending_events() e; ROLLBACK" | tail -1)
	stop "$A"
	echo "## $v visits: client_update of $event bytes"
	for c in $CLIENTS; do
		for ((round = 1; round <= ROUNDS; round++)); do
			for b in A B; do
				bin=${!b}
				start "$bin"
				for variant in plain ws; do
					if [ "$variant" = plain ]; then
						psql_ "$bin" "ALTER TABLE client DISABLE TRIGGER pg_ws_event" >/dev/null 2>&1
					else
						psql_ "$bin" "ALTER TABLE client ENABLE TRIGGER pg_ws_event" >/dev/null
					fi
					psql_ "$bin" "VACUUM client" >/dev/null
					psql_ "$bin" "CHECKPOINT" >/dev/null
					lsn0=$(psql_ "$bin" "SELECT pg_current_wal_lsn()")
					PGAPPNAME=pgbench "$bin/pgbench" -n -M prepared -h "$TMP" -p "$PGPORT" -U postgres \
						-c "$c" -j $((c < 2 ? c : 2)) -T "$SECONDS_" -f "$TMP/update_client.sql" postgres \
						>"$TMP/pgbench.out" 2>&1 &
					pgb=$!
					# the connections' backends, over the run's middle
					sleep 1
					x0=$(psql_ "$bin" "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
					k0=$(backend_ticks "$bin")
					sleep $((SECONDS_ - 2))
					k1=$(backend_ticks "$bin")
					x1=$(psql_ "$bin" "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
					wait "$pgb"
					lsn1=$(psql_ "$bin" "SELECT pg_current_wal_lsn()")
					tps=$(grep -oP 'tps = \K[0-9.]+' "$TMP/pgbench.out" | head -1)
					tx=$(grep -oP 'processed: \K[0-9]+' "$TMP/pgbench.out")
					cpu=$(awk -v k=$((k1 - k0)) -v x=$((x1 - x0)) -v hz="$hz" 'BEGIN {printf "%.1f", (x > 0) ? k / hz * 1e6 / x : 0}')
					wal=$(psql_ "$bin" "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / $tx)")
					key="$v,$c,$b,$variant"
					TPS[$key]="${TPS[$key]:-} $tps"
					CPU[$key]="${CPU[$key]:-} $cpu"
					WAL[$key]="${WAL[$key]:-} $wal"
					printf '  %5d visits  -c %d  round %d  %s %-5s  tps %7.0f  backend CPU %6s us/tx  WAL %6s B/tx\n' \
						"$v" "$c" "$round" "$b" "$variant" "$tps" "$cpu" "$wal"
				done
				stop "$bin"
			done
		done
	done
done

echo
echo "| visits | clients | build | plain tps | ws tps | ws / plain | plain CPU/tx | ws CPU/tx | ws WAL/tx |"
echo "|--:|--:|---|--:|--:|--:|--:|--:|--:|"
for v in $VISITS; do
	for c in $CLIENTS; do
		for b in A B; do
			pt=$(median <<<"${TPS[$v,$c,$b,plain]}")
			wt=$(median <<<"${TPS[$v,$c,$b,ws]}")
			printf '| %d | %d | %s | %.0f | %.0f | %.2f | %.1f us | %.1f us | %.0f B |\n' "$v" "$c" "$b" "$pt" "$wt" \
				"$(awk -v a="$wt" -v b="$pt" 'BEGIN {print a / b}')" \
				"$(median <<<"${CPU[$v,$c,$b,plain]}")" "$(median <<<"${CPU[$v,$c,$b,ws]}")" \
				"$(median <<<"${WAL[$v,$c,$b,ws]}")"
		done
	done
done
echo "(medians of $ROUNDS rounds; plain's WAL/tx is the UPDATE's own)"
