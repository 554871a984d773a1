#!/usr/bin/env bash
# bench/run_bench.sh: pg_ws benchmarks, side by side in one run.
#
#   bash bench/run_bench.sh          (as root; pg_ws built and installed
#                                     first: make && make install)
#
# Starts a throw-away PostgreSQL 15 cluster as the postgres user (unix
# socket in a temp dir, PostgreSQL and pg_ws on free 127.0.0.1 ports,
# shared_preload_libraries = 'pg_ws'), then measures
#
#  1. write path: pgbench (-n, custom script, -T BENCH_DURATION) inserting
#     one row per transaction into
#        ws      visit_history, with the pg_ws row trigger
#        plain   an identical table (same columns, identity, index, foreign
#                key) without any trigger
#        notify  an identical table whose plpgsql AFTER INSERT row trigger
#                sends the same JSON with pg_notify() (the NOTIFY baseline)
#     with 1 and 8 clients, BENCH_ROUNDS rounds with the variants' order
#     rotated every round: median tps, median of the per-round tps ratios vs
#     plain, and the server's CPU time per transaction (all PostgreSQL
#     processes, the pg_ws worker included).
#  2. broadcast: 1, 10, 100 subscribers (bench/ws_sub) while pgbench
#     --rate commits BENCH_RATE visit_history inserts/s for
#     BENCH_BCAST_SECONDS, BENCH_BCAST_ROUNDS rounds: delivered msgs/s and
#     commit-to-receive latency.  Each row's device_id is the writer's
#     clock_timestamp() in microseconds; ws_sub subtracts it from its
#     receive time.  A final 'END' row tells ws_sub to stop, and the count
#     of rows tells what each subscriber should have got.
#  3. burst fan-out: one transaction of BENCH_BURST_ROWS inserts sent to 1,
#     10 and 100 subscribers: the delivery rate when the worker has a
#     backlog to send.
#
# Loopback only.  The cluster, ws_sub and the temp dir are always cleaned
# up (BENCH_KEEP=1 keeps the temp dir with the server log).  About 4.5
# minutes with the defaults; every BENCH_* variable below can be overridden
# from the environment.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

DURATION=${BENCH_DURATION:-10}		# seconds per write-path pgbench run
ROUNDS=${BENCH_ROUNDS:-3}			# write-path rounds
CLIENTS=${BENCH_CLIENTS:-"1 8"}
SUBS=${BENCH_SUBS:-"1 10 100"}
RATE=${BENCH_RATE:-1000}			# events/s during the broadcast runs
BCAST_SECONDS=${BENCH_BCAST_SECONDS:-10}
BCAST_ROUNDS=${BENCH_BCAST_ROUNDS:-2}
BURST_ROWS=${BENCH_BURST_ROWS:-20000}
BURST_SUBS=${BENCH_BURST_SUBS:-"1 10 100"}
WRITER_CLIENTS=${BENCH_WRITER_CLIENTS:-2}	# pgbench clients for --rate
SUB_PROCS=${BENCH_SUB_PROCS:-1}		# ws_sub processes per subscriber set

if [ "$(id -u)" -ne 0 ]; then
	echo "run_bench.sh: run as root (PostgreSQL runs as the postgres user)" >&2
	exit 1
fi
for f in "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/psql" "$PGBIN/pgbench"; do
	[ -x "$f" ] || { echo "run_bench.sh: $f not found" >&2; exit 1; }
done
PKGLIB=$("$PGBIN/pg_config" --pkglibdir)
if [ ! -f "$PKGLIB/pg_ws.so" ]; then
	echo "run_bench.sh: pg_ws is not installed: cd $REPO && make && make install" >&2
	exit 1
fi

make -s -C "$HERE" ws_sub >/dev/null
WS_SUB="$HERE/ws_sub"

# ---------------------------------------------------------------- set-up

TMP=$(mktemp -d /tmp/pg_ws_bench.XXXXXX)
chown postgres: "$TMP"
chmod 755 "$TMP"
DATA="$TMP/data"
LOG="$TMP/server.log"
STARTED=0
SUB_PID=""		# the running ws_sub, if any
PGB_PID=""		# the running pgbench, if any

cleanup() {
	local rc=$?
	local p
	trap - EXIT INT TERM
	for p in $SUB_PID $PGB_PID; do
		kill "$p" 2>/dev/null || true
	done
	if [ "$STARTED" = 1 ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop \
			>/dev/null 2>&1 || true
	fi
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "# kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PGPORT=$(free_port)
WSPORT=$(free_port)
while [ "$WSPORT" = "$PGPORT" ]; do WSPORT=$(free_port); done

as_pg() { (cd "$TMP" && runuser -u postgres -- "$@"); }

as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale \
	>"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log"; exit 1; }
cat >>"$DATA/postgresql.conf" <<EOF
# pg_ws benchmark cluster
shared_preload_libraries = 'pg_ws'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TMP'
port = $PGPORT
max_connections = 50
pg_ws.port = $WSPORT
pg_ws.listen_addresses = '127.0.0.1'
pg_ws.database = 'postgres'
# subscribers start at "now", not at the worker's start-up
pg_ws.reconnect_grace = 0
# room for a subscriber set that is still closing while the next connects
pg_ws.max_connections = 200
# a throw-away cluster: measure CPU work, not the disk
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
# tables are truncated before every run instead
autovacuum = off
log_line_prefix = '%m [%p] %b '
EOF
STARTED=1
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null

psql_q() {
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP" -p "$PGPORT" \
		-U postgres -d postgres "$@"
}

psql_q <<'EOF'
CREATE EXTENSION pg_ws;
INSERT INTO client (id, visit_count) VALUES (1, 0);

-- the same table without any trigger
CREATE TABLE bench_plain (LIKE visit_history INCLUDING ALL);
ALTER TABLE bench_plain ADD FOREIGN KEY (client_id)
	REFERENCES client (id) ON DELETE CASCADE;

-- the same table with a NOTIFY trigger sending the same JSON event
CREATE TABLE bench_notify (LIKE visit_history INCLUDING ALL);
ALTER TABLE bench_notify ADD FOREIGN KEY (client_id)
	REFERENCES client (id) ON DELETE CASCADE;
CREATE FUNCTION bench_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('pg_ws_bench',
		json_build_object('event', 'client_visit_create',
			'data', json_build_object('datetime', NEW.datetime,
				'device_id', NEW.device_id, 'client', NEW.client_id))::text);
	RETURN NULL;
END
$$;
CREATE TRIGGER bench_notify AFTER INSERT ON bench_notify
	FOR EACH ROW EXECUTE FUNCTION bench_notify_event();
EOF

WORKER_PID=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'")
if [ -z "$WORKER_PID" ]; then
	echo "run_bench.sh: the pg_ws worker is not running" >&2
	tail -20 "$LOG" >&2
	exit 1
fi

# one INSERT per transaction; device_id is the writer's clock in microseconds
STAMP="(extract(epoch from clock_timestamp()) * 1000000)::bigint::text"
declare -A TABLE=([ws]=visit_history [plain]=bench_plain [notify]=bench_notify)
for v in ws plain notify; do
	echo "INSERT INTO ${TABLE[$v]} (client_id, device_id) VALUES (1, $STAMP);" \
		>"$TMP/insert_$v.sql"
done

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
PM_PID=$(head -1 "$DATA/postmaster.pid")
# CPU ticks of the whole cluster: the postmaster with its reaped children
# (backends that have exited), plus every live child (the pg_ws worker,
# walwriter, checkpointer, ...)
cluster_ticks() {
	local t c
	t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$PM_PID/stat")
	for c in $(pgrep -P "$PM_PID"); do
		t=$((t + $(cpu_ticks "$c")))
	done
	echo "$t"
}

# median of the arguments (mean of the middle two for an even count)
median() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
		if (NR == 0) print "nan";
		else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# pgbench in the background, so that INT/TERM are handled at once;
# its output goes to the file $1
run_pgbench() {
	local out=$1 rc=0
	shift
	"$PGBIN/pgbench" -n -h "$TMP" -p "$PGPORT" -U postgres "$@" postgres >"$out" 2>&1 &
	PGB_PID=$!
	wait "$PGB_PID" || rc=$?
	PGB_PID=""
	if [ "$rc" != 0 ]; then
		cat "$out" >&2
		exit 1
	fi
}

reset_tables() {
	psql_q -c "TRUNCATE visit_history, bench_plain, bench_notify" -c "CHECKPOINT"
}

# ---------------------------------------------------------------- header

NPROC=$(nproc)
echo "# pg_ws benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "# host: $NPROC CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $("$PGBIN/postgres" --version), libwebsockets $(dpkg-query -W -f '${Version}' libwebsockets-dev 2>/dev/null || pkg-config --modversion libwebsockets), json-c $(pkg-config --modversion json-c)"
SO_MD5=$(md5sum <"$PKGLIB/pg_ws.so" | cut -c1-12)
SO_TIME=$(date -u -r "$PKGLIB/pg_ws.so" '+%Y-%m-%d %H:%M:%S UTC')
if git -C "$REPO" rev-parse --short HEAD >/dev/null 2>&1; then
	echo "# pg_ws source: $(git -C "$REPO" log -1 --format='%h %s' | cut -c1-90)$(git -C "$REPO" diff --quiet HEAD -- src sql 2>/dev/null || echo ' + uncommitted changes in src/ or sql/')"
fi
echo "# pg_ws measured: $PKGLIB/pg_ws.so md5 $SO_MD5, installed $SO_TIME"
for f in "$REPO"/src/*.c "$REPO"/src/*.h; do
	if [ "$f" -nt "$PKGLIB/pg_ws.so" ]; then
		echo "# WARNING: $f is newer than the installed pg_ws.so: run make && make install"
	fi
done
echo "# cluster: fsync=off synchronous_commit=off autovacuum=off; pgbench over the unix socket; tables truncated + CHECKPOINT before each run"
echo

# ---------------------------------------------------------------- write path

echo "## write path: one INSERT per transaction, pgbench -n -T $DURATION, $ROUNDS rounds (order rotated)"
VARIANTS=(plain ws notify)
declare -A TPS
declare -A WCPU
declare -A CPX
for ((r = 0; r < ROUNDS; r++)); do
	for c in $CLIENTS; do
		j=$c
		[ "$j" -gt "$NPROC" ] && j=$NPROC
		for ((k = 0; k < ${#VARIANTS[@]}; k++)); do
			v=${VARIANTS[$(((k + r) % ${#VARIANTS[@]}))]}
			reset_tables
			w0=$(cpu_ticks "$WORKER_PID")
			s0=$(cluster_ticks)
			run_pgbench "$TMP/pgbench.out" -c "$c" -j "$j" -T "$DURATION" \
				-f "$TMP/insert_$v.sql"
			out=$(cat "$TMP/pgbench.out")
			w1=$(cpu_ticks "$WORKER_PID")
			sleep 0.3	# let the postmaster reap the backends
			s1=$(cluster_ticks)
			tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
			ntx=$(echo "$out" | awk '/number of transactions actually processed/ {print $6; exit}')
			failed=$(echo "$out" | awk '/number of failed transactions/ {print $5; exit}')
			# server CPU (all PostgreSQL processes, the pg_ws worker included) per transaction
			cpx=$(awk -v a="$s0" -v b="$s1" -v t="$CLK_TCK" -v n="$ntx" \
				'BEGIN {printf "%.1f", (b - a) / t / n * 1e6}')
			wcpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v d="$DURATION" \
				'BEGIN {printf "%.0f", (b - a) / t / d * 100}')
			TPS[$v,$c]="${TPS[$v,$c]:-} $tps"
			WCPU[$v,$c]="${WCPU[$v,$c]:-} $wcpu"
			CPX[$v,$c]="${CPX[$v,$c]:-} $cpx"
			printf '  round %d  clients %d  %-6s  tps %9.0f  failed %s  server CPU %6s us/tx  pg_ws worker CPU %s%%\n' \
				$((r + 1)) "$c" "$v" "$tps" "${failed:-0}" "$cpx" "$wcpu"
		done
	done
done
echo
echo "tps ratio: median of the per-round ratios (each round's three runs are adjacent in time);"
echo "server CPU: CPU time of all PostgreSQL processes (pg_ws worker included) per transaction."
echo
echo "| clients | variant | median tps | tps ratio vs plain | runs (tps) | server CPU/tx (median) | CPU/tx ratio vs plain | pg_ws worker CPU |"
echo "|--------:|---------|-----------:|-------------------:|------------|-----------------------:|----------------------:|-----------------:|"
for c in $CLIENTS; do
	# shellcheck disable=SC2086
	plaincpx=$(median ${CPX[plain,$c]:-})
	for v in plain ws notify; do
		# shellcheck disable=SC2086
		m=$(median ${TPS[$v,$c]:-})
		# shellcheck disable=SC2086
		wc=$(median ${WCPU[$v,$c]:-})
		# per-round ratios, then their median: each round's runs were adjacent
		ratios=()
		read -ra a <<<"${TPS[$v,$c]:-}"
		read -ra b <<<"${TPS[plain,$c]:-}"
		for ((i = 0; i < ${#a[@]}; i++)); do
			ratios+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN {printf "%.4f", x / y}')")
		done
		# shellcheck disable=SC2086
		cx=$(median ${CPX[$v,$c]:-})
		# shellcheck disable=SC2086
		printf '| %d | %s | %.0f | %.2f | %s | %.1f us | %.2f | %s%% |\n' "$c" "$v" "$m" \
			"$(median "${ratios[@]}")" \
			"$(printf '%.0f ' ${TPS[$v,$c]:-} | sed 's/ $//')" \
			"$cx" "$(awk -v x="$cx" -v y="$plaincpx" 'BEGIN {print x / y}')" "$wc"
	done
done
echo

# ---------------------------------------------------------------- broadcast

run_subscribers() {
	# $1 subscribers, $2 ready file, $3 output file, rest: extra ws_sub options
	local n=$1 ready=$2 out=$3
	shift 3
	rm -f "$ready"
	"$WS_SUB" -H 127.0.0.1 -p "$WSPORT" -n "$n" -j "$SUB_PROCS" -r "$ready" "$@" \
		>"$out" 2>"$out.err" &
	SUB_PID=$!
	local i
	for ((i = 0; i < 200; i++)); do		# up to 20 s
		[ -f "$ready" ] && return 0
		kill -0 "$SUB_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "run_bench.sh: $n subscribers did not connect:" >&2
	cat "$out.err" >&2
	return 1
}

field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2; exit}'; }

echo "## broadcast: pgbench --rate $RATE -c $WRITER_CLIENTS for ${BCAST_SECONDS}s, $BCAST_ROUNDS rounds; latency = subscriber receive time - clock_timestamp() taken in the INSERT"
declare -A B_RATE B_P50 B_P99 B_MAX B_OK B_WCPU B_F50 B_F99 B_S50 B_S99
for ((r = 0; r < BCAST_ROUNDS; r++)); do
	for n in $SUBS; do
		psql_q -c "TRUNCATE visit_history"
		run_subscribers "$n" "$TMP/ready" "$TMP/sub.out" -E END -q \
			-t $((BCAST_SECONDS + 60))
		sleep 0.5
		w0=$(cpu_ticks "$WORKER_PID")
		run_pgbench "$TMP/pgbench.out" -c "$WRITER_CLIENTS" -j "$WRITER_CLIENTS" \
			-R "$RATE" -T "$BCAST_SECONDS" -f "$TMP/insert_ws.sql"
		wout=$(cat "$TMP/pgbench.out")
		w1=$(cpu_ticks "$WORKER_PID")
		psql_q -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		rc=0
		wait "$SUB_PID" || rc=$?
		SUB_PID=""
		res=$(grep '^RESULT' "$TMP/sub.out" || true)
		rows=$(psql_q -c "SELECT count(*) FROM visit_history WHERE device_id <> 'END'")
		# "rate limit schedule lag: avg 0.248 (max 6.815) ms"
		lag=$(echo "$wout" | awk '/rate limit schedule lag/ {gsub(/[()]/, ""); print $6 "/" $8; exit}')
		msgs=$(field "$res" msgs)
		expected=$((rows * n))
		ok=yes
		[ "$rc" = 0 ] && [ "$msgs" = "$expected" ] || ok="NO (rc $rc)"
		wcpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v d="$BCAST_SECONDS" \
			'BEGIN {printf "%.0f", (b - a) / t / d * 100}')
		B_RATE[$n]="${B_RATE[$n]:-} $(field "$res" msgs_per_s)"
		B_P50[$n]="${B_P50[$n]:-} $(field "$res" p50_us)"
		B_P99[$n]="${B_P99[$n]:-} $(field "$res" p99_us)"
		B_MAX[$n]="${B_MAX[$n]:-} $(field "$res" max_us)"
		B_WCPU[$n]="${B_WCPU[$n]:-} $wcpu"
		B_F50[$n]="${B_F50[$n]:-} $(field "$res" first_p50_us)"
		B_F99[$n]="${B_F99[$n]:-} $(field "$res" first_p99_us)"
		B_S50[$n]="${B_S50[$n]:-} $(field "$res" spread_p50_us)"
		B_S99[$n]="${B_S99[$n]:-} $(field "$res" spread_p99_us)"
		[ "$ok" = yes ] || B_OK[$n]="$ok"
		printf '  round %d  subs %3d  events %6d (%.0f/s)  delivered %7s/%-7s %-3s %7s msgs/s  p50 %5s us  p99 %6s us  max %6s us  first p50/p99 %s/%s us  spread p50/p99 %s/%s us  writer lag avg/max %s ms  worker CPU %s%%  ws_sub CPU %s s\n' \
			$((r + 1)) "$n" "$rows" "$(awk -v x="$rows" -v d="$BCAST_SECONDS" 'BEGIN {print x / d}')" \
			"$msgs" "$expected" "$ok" "$(field "$res" msgs_per_s)" \
			"$(field "$res" p50_us)" "$(field "$res" p99_us)" "$(field "$res" max_us)" \
			"$(field "$res" first_p50_us)" "$(field "$res" first_p99_us)" \
			"$(field "$res" spread_p50_us)" "$(field "$res" spread_p99_us)" \
			"${lag:-?}" "$wcpu" "$(field "$res" cpu_s)"
		if [ "$ok" != yes ]; then
			sed 's/^/    ws_sub: /' "$TMP/sub.out.err" | head -5
		fi
	done
done
echo
echo "Medians over the rounds; \"first\" is, per event, the latency of the first subscriber to get it, \"spread\" how much later the last one got it."
echo
echo "| subscribers | delivered msgs/s | p50 latency | p99 latency | max latency | first p50 / p99 | spread p50 / p99 | all delivered | pg_ws worker CPU |"
echo "|------------:|-----------------:|------------:|------------:|------------:|----------------:|-----------------:|---------------|-----------------:|"
for n in $SUBS; do
	# shellcheck disable=SC2086
	printf '| %d | %.0f | %.0f us | %.0f us | %.0f us | %.0f / %.0f us | %.0f / %.0f us | %s | %s%% |\n' "$n" \
		"$(median ${B_RATE[$n]})" "$(median ${B_P50[$n]})" "$(median ${B_P99[$n]})" \
		"$(median ${B_MAX[$n]})" "$(median ${B_F50[$n]})" "$(median ${B_F99[$n]})" \
		"$(median ${B_S50[$n]})" "$(median ${B_S99[$n]})" \
		"${B_OK[$n]:-yes}" "$(median ${B_WCPU[$n]})"
done
echo

# ---------------------------------------------------------------- burst

echo "## burst fan-out: one transaction of $BURST_ROWS visit_history inserts"
echo
echo "| subscribers | deliveries | delivered msgs/s | seconds | all delivered | pg_ws worker CPU | ws_sub CPU |"
echo "|------------:|-----------:|-----------------:|--------:|---------------|-----------------:|-----------:|"
for n in $BURST_SUBS; do
	psql_q -c "TRUNCATE visit_history"
	run_subscribers "$n" "$TMP/ready" "$TMP/sub.out" -e "$BURST_ROWS" -q -t 60
	sleep 0.5
	w0=$(cpu_ticks "$WORKER_PID")
	t0=$(date +%s.%N)
	psql_q -c "INSERT INTO visit_history (client_id, device_id)
		SELECT 1, 'burst' FROM generate_series(1, $BURST_ROWS)"
	rc=0
	wait "$SUB_PID" || rc=$?
	SUB_PID=""
	t1=$(date +%s.%N)
	w1=$(cpu_ticks "$WORKER_PID")
	res=$(grep '^RESULT' "$TMP/sub.out" || true)
	msgs=$(field "$res" msgs)
	ok=yes
	[ "$rc" = 0 ] && [ "$msgs" = $((BURST_ROWS * n)) ] || ok="NO (rc $rc)"
	printf '| %d | %s | %.0f | %.2f | %s | %s%% | %s%% |\n' "$n" "$msgs" "$(field "$res" msgs_per_s)" \
		"$(field "$res" window_s)" "$ok" \
		"$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v s="$t0" -v e="$t1" \
			'BEGIN {printf "%.0f", (b - a) / t / (e - s) * 100}')" \
		"$(awk -v c="$(field "$res" cpu_s)" -v s="$t0" -v e="$t1" \
			'BEGIN {printf "%.0f", c / (e - s) * 100}')"
done
echo

if grep -q 'disconnecting a subscriber\|ERROR\|FATAL\|PANIC' "$LOG"; then
	echo "## server log: errors or disconnected subscribers"
	grep 'disconnecting a subscriber\|ERROR\|FATAL\|PANIC' "$LOG" | head -20
fi
echo "# done in ${SECONDS}s, load $(cut -d" " -f1-3 /proc/loadavg)"
