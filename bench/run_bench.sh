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
#  1. write path (pgbench -n -M prepared, -T BENCH_WRITE_DURATION, one
#     INSERT into visit_history per transaction), four variants:
#        plain      visit_history with pg_ws's trigger disabled (ALTER
#                   TABLE ... DISABLE TRIGGER; pg_ws still loaded)
#        ws         pg_ws's trigger, pg_ws.wal = on
#        ws_waloff  the same on a second, identical cluster with
#                   pg_ws.wal = off (a postmaster setting)
#        notify     pg_ws's trigger disabled, a plpgsql AFTER INSERT
#                   trigger that sends the same JSON with pg_notify()
#     x BENCH_WRITE_CLIENTS (1 and 8) x BENCH_WRITE_SYNC: on (fsync=on
#     synchronous_commit=on, durable) and off (both off).
#     BENCH_WRITE_ROUNDS short rounds, the variants' order rotated every
#     round: median tps, per-round tps and CPU/tx ratios vs plain (median
#     [min..max]), server CPU per transaction (every process of the
#     cluster, the pg_ws worker included), WAL bytes per transaction;
#     pg_walinspect's breakdown of 1000 transactions with pg_ws.wal on and
#     off; a perf profile of the -c 1 backend, plain vs ws
#     (BENCH_WRITE_PROFILE); then client_update: each pgbench client updates
#     a client of its own that has BENCH_UPDATE_VISITS visits, plain / ws
#     (client_update with visit_histories) / notify (the same JSON built
#     with json_agg).  "walwrite" is an old name of this part.
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
#  4. resume: 100 000 events (transactions of 100 rows) replayed to a
#     subscriber connecting with ?since=&epoch=, from the worker's memory
#     (large pg_ws.history_size) and from the WAL (64kB).
#  5. standby (only when named in BENCH_PARTS): 100 subscribers at
#     BENCH_RATE events/s on the primary alone vs spread over the primary
#     and 2 streaming standbys.
#  6. scale (only when named in BENCH_PARTS): on a cluster of its own
#     started under prlimit --nofile, 1 000 and then BENCH_SCALE_SUBS
#     (10 000) idle subscribers: the time to connect them, the worker's
#     memory per connection (pg_ws_stats().worker_memory_bytes and VmRSS),
#     its CPU while they are idle, then commit-to-receive latency of a
#     BENCH_SCALE_RATE (100) events/s stream to all of them.
#  8. delivery (issue 7): pgbench --rate BENCH_RATE (1000) -c
#     BENCH_WRITER_CLIENTS single-row transactions for BENCH_DELIVERY_SECONDS
#     (10) to BENCH_DELIVERY_SUBS ("1 100 1000") subscribers, over
#     BENCH_DELIVERY_TRANSPORTS ("ws wss"), BENCH_DELIVERY_ROUNDS (2)
#     rounds: p50/p99/max commit-to-receive, loss, the worker's and the
#     client's CPU per delivered message, the worker's run-queue wait and how
#     idle the machine was.  On clusters of their own, started under
#     prlimit --nofile (BENCH_DELIVERY_NOFILE, default twice the most
#     subscribers + 4096) with pg_ws.max_connections for twice the most
#     subscribers; wss:// on a second one with a self-signed certificate
#     (openssl, pg_ws.ssl_cert_file/ssl_key_file).  The wss rows are skipped
#     when the client has no --tls.
#  9. maxrate: the highest single-row rate with no loss and p99 under
#     BENCH_MAXRATE_P99_MS (100) at BENCH_MAXRATE_SUBS ("1 100")
#     subscribers: pgbench -c BENCH_MAXRATE_CLIENTS (8) --rate stepped
#     through BENCH_MAXRATE_STEPS for BENCH_MAXRATE_SECONDS (5) each until
#     a step fails, BENCH_MAXRATE_ROUNDS (2) sweeps; a step fails when
#     pgbench achieved < 95% of the rate (the writer), a delivery was lost,
#     or p99 was too high (delivery), and the script says which.
# 10. rows100: BENCH_ROWS100_TX (200) transactions of BENCH_ROWS100_ROWS
#     (100) rows, committed back to back by one session, to
#     BENCH_ROWS100_SUBS ("100 1000") subscribers in BENCH_ROWS100_PROCS (4)
#     client processes, BENCH_ROWS100_ROUNDS (2) rounds: delivered msgs/s
#     (first to last message), worker vs client CPU.
#     Parts 8-10 use the client BENCH_CLIENT (ws_fast, or ws_sub: a program
#     in bench/ with ws_sub's options) with --lean (BENCH_CLIENT_LEAN=1) and
#     -j BENCH_CLIENT_PROCS (2).  After delivery or rows100, delivery.dat,
#     delivery.gp and, with gnuplot, delivery_msgs_per_s.png and
#     delivery_p99.png (against subscribers) go to BENCH_PLOT_DIR
#     (bench/results).
# 12. storm (only when named in BENCH_PARTS): on a cluster of its own,
#     BENCH_STORM_SUBS (1000) subscribers (BENCH_CLIENT) resume at once
#     with ?since= after the same BENCH_STORM_EVENTS (20000) events, from
#     the worker's memory (pg_ws.history_size = BENCH_RESUME_BIG_HISTORY)
#     and from the WAL (pg_ws.history_size = 0), alternated in each of
#     BENCH_STORM_ROUNDS (2) rounds: the time until every one has them all,
#     the worker's CPU (/proc/<worker pid>/stat) and reads (rchar), every
#     subscriber's count; and the p99 of BENCH_STORM_LIVE (10) live
#     subscribers at BENCH_STORM_RATE (200) events/s alone and with the
#     storm in their stream.  The storm's client runs under SCHED_IDLE
#     (chrt --idle) unless BENCH_STORM_CLIENT_IDLE=0: its 1,000 subscribers
#     stand for remote machines, and on two cores it otherwise takes the
#     CPU the committing backend and the live subscribers wait for.
#     BENCH_STORM_VARIANTS ("memory wal") may add "connect": the same
#     subscribers connecting at once without resuming anything, which tells
#     what of the live p99 during a storm the handshakes alone cost.
# 11. filtered (only when named in BENCH_PARTS): BENCH_FILTERED_SUBS
#     ("100 10000") subscribers, each with a filter of its own device
#     (/ws/?filter=device_id=eq.dN), while pgbench --rate
#     BENCH_FILTERED_RATE (1000) inserts rows of a random device into a
#     watched 'row' table for BENCH_FILTERED_SECONDS (10): each event goes
#     to one subscriber.  The worker's CPU per event, commit-to-receive
#     latency, loss, and how many subscribers waited in the filter index
#     (pg_ws_subscribers_indexed), the subscriber counts alternated in each
#     of BENCH_FILTERED_ROUNDS (3) rounds on the delivery cluster.
#
# 13. compression (only when named in BENCH_PARTS): BENCH_COMPRESSION_SUBS
#     (100) ws_fast subscribers with --deflate (permessage-deflate) and
#     without, alternated in BENCH_COMPRESSION_ROUNDS (3) rounds with
#     pg_ws.compression = on: a transaction of BENCH_COMPRESSION_EVENTS
#     (10000) visit_history inserts (single events, about 175 bytes: under
#     pg_ws.compression_min_size, sent plain) and one of
#     BENCH_COMPRESSION_UPDATES (1000) updates of a client with
#     BENCH_UPDATE_VISITS (100) visits (client_update, about 7.4 kB): bytes
#     on the wire and worker CPU per delivered message, and the messages'
#     own bytes.
# 14. kinds (only when named in BENCH_PARTS): the write path of every
#     event kind (the eleven of the event document, pg_ws_send() in a
#     transaction that inserts a row and alone, an insert into a watched
#     'row' table), one pgbench script per kind whose transaction makes
#     exactly that event, plain (pg_ws's trigger pg_ws_event of the kind's
#     table disabled; for pg_ws_send the same transaction without the call)
#     against ws, fsync and synchronous_commit on, at BENCH_KINDS_CLIENTS
#     ("1 8"), BENCH_KINDS_SECONDS (2) per run, BENCH_KINDS_ROUNDS (3)
#     rounds, the two variants' order swapped every round; client_update's
#     client has BENCH_KINDS_VISITS (10) visits; each delete deletes a row
#     of a pool of BENCH_KINDS_POOL (20000 x BENCH_KINDS_SECONDS) rows made
#     before the run; BENCH_KINDS picks kinds (default all).  First the
#     events one transaction of each kind queues (pg_ws_pending_events()),
#     then per kind: tps ws / plain at each client count (median
#     [min..max] of the rounds), WAL bytes per transaction of each variant,
#     events per transaction counted by pg_ws_stats().events_queued.
#     About 10 minutes with the defaults.
#
# BENCH_PARTS picks parts (default "write broadcast burst resume delivery
# maxrate rows100"; wakeup, standby, scale, storm, filtered, compression and
# kinds run only when named; walwrite is an old name of write).  Loopback only.  The clusters, ws_sub and the
# temp dir are always cleaned up (BENCH_KEEP=1 keeps the temp dir with the
# server logs).  About 20 minutes with the defaults (write: 8; delivery,
# maxrate and rows100: 7); every BENCH_* variable below can be overridden
# from the environment.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# the write-path part; its defaults take about 8 minutes
WRITE_DURATION=${BENCH_WRITE_DURATION:-2}	# seconds per pgbench run
WRITE_ROUNDS=${BENCH_WRITE_ROUNDS:-7}	# rounds, the variants' order rotated
WRITE_CLIENTS=${BENCH_WRITE_CLIENTS:-"1 8"}
WRITE_SYNC=${BENCH_WRITE_SYNC:-"on off"}	# on: fsync + synchronous_commit on
WRITE_VARIANTS=${BENCH_WRITE_VARIANTS:-"plain ws ws_waloff notify"}
WRITE_PROFILE=${BENCH_WRITE_PROFILE:-1}	# perf record the -c 1 backend, plain vs ws
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-5}
PROFILE_SYNC=${BENCH_PROFILE_SYNC:-off}	# off: more transactions per sample
PROFILE_FREQ=${BENCH_PROFILE_FREQ:-1999}	# perf record -F
PROFILE_CALLGRAPH=${BENCH_PROFILE_CALLGRAPH:-dwarf}	# perf record --call-graph (fp: lighter, chains less reliable)
UPDATE_VISITS=${BENCH_UPDATE_VISITS:-100}	# visits of each updated client (0: skip)
UPDATE_CLIENTS=${BENCH_UPDATE_CLIENTS:-"1 8"}
UPDATE_SYNC=${BENCH_UPDATE_SYNC:-on}
UPDATE_ROUNDS=${BENCH_UPDATE_ROUNDS:-$WRITE_ROUNDS}
SUBS=${BENCH_SUBS:-"1 10 100"}
RATE=${BENCH_RATE:-1000}			# events/s during the broadcast runs
BCAST_SECONDS=${BENCH_BCAST_SECONDS:-10}
BCAST_ROUNDS=${BENCH_BCAST_ROUNDS:-2}
BURST_ROWS=${BENCH_BURST_ROWS:-20000}
BURST_SUBS=${BENCH_BURST_SUBS:-"1 10 100"}
WRITER_CLIENTS=${BENCH_WRITER_CLIENTS:-2}	# pgbench clients for --rate
SUB_PROCS=${BENCH_SUB_PROCS:-1}		# ws_sub processes per subscriber set
# which parts run, in this order whatever the order given
PARTS=${BENCH_PARTS:-"write broadcast burst resume delivery maxrate rows100"}
PARTS=${PARTS//walwrite/write}		# the old name of the WAL runs, now in write
RESUME_EVENTS=${BENCH_RESUME_EVENTS:-100000}
RESUME_BATCH=${BENCH_RESUME_BATCH:-100}	# rows per transaction
RESUME_ROUNDS=${BENCH_RESUME_ROUNDS:-2}
RESUME_BIG_HISTORY=${BENCH_RESUME_BIG_HISTORY:-256MB}	# all of them in memory
RESUME_SMALL_HISTORY=${BENCH_RESUME_SMALL_HISTORY:-64kB}	# read back from the WAL
STANDBY_SUBS=${BENCH_STANDBY_SUBS:-100}	# "standby" (not run by default)
STANDBY_ROUNDS=${BENCH_STANDBY_ROUNDS:-2}
SCALE_SUBS=${BENCH_SCALE_SUBS:-19000}	# "scale" (not run by default)
SCALE_SMALL=${BENCH_SCALE_SMALL:-1000}	# the smaller set measured first
SCALE_RATE=${BENCH_SCALE_RATE:-10}	# events/s of the stream
SCALE_SECONDS=${BENCH_SCALE_SECONDS:-30}	# length of the stream
SCALE_TRANSPORTS=${BENCH_SCALE_TRANSPORTS:-"ws wss"}
# worker CPU with no events, over one pg_ws.ping_interval (30 s by
# default): every subscriber is pinged once in it, whenever it connected
SCALE_IDLE_SECONDS=${BENCH_SCALE_IDLE_SECONDS:-30}
# pg_ws.ping_interval of the scale clusters ("": the default, 30 s; 0: no
# pings, so that idle CPU is what idle subscribers cost without them)
SCALE_PING_INTERVAL=${BENCH_SCALE_PING_INTERVAL:-}
SCALE_PROCS=${BENCH_SCALE_PROCS:-4}	# client processes (BENCH_CLIENT)
# the client's --max-pending, per process (0: all at once); 4 x 25 in flight
# stay far under pg_ws's listen backlog (4096, capped by somaxconn), whose
# overflow costs a 1 s SYN retry
SCALE_PENDING=${BENCH_SCALE_PENDING:-25}
# ws_fast --sources: loopback source addresses, 20,000 connections each
# (one address has about 28,000 ephemeral ports)
SCALE_SOURCES=${BENCH_SCALE_SOURCES:-$(((SCALE_SUBS + 19999) / 20000))}
SCALE_LEAN=${BENCH_SCALE_LEAN:-1}	# the client's --lean (ws_sub: no json-c)
SCALE_PERF=${BENCH_SCALE_PERF:-1}	# perf record the worker during the streams
EVENT_LOOP=${BENCH_EVENT_LOOP:-poll}		# pg_ws.event_loop of every cluster
WAKEUP_SECONDS=${BENCH_WAKEUP_SECONDS:-10}	# "wakeup": pgbench seconds per load
# prlimit --nofile for the cluster and the client: the worker needs one per
# connection (pg_ws.max_connections = subscribers + 200) and about 100 more
SCALE_NOFILE=${BENCH_SCALE_NOFILE:-$((SCALE_SUBS + 1000))}
# the delivery parts (delivery, maxrate, rows100)
BENCH_CLIENT=${BENCH_CLIENT:-ws_fast}	# their subscriber program in bench/: ws_fast (lean, raw epoll) or ws_sub
CLIENT_LEAN=${BENCH_CLIENT_LEAN:-1}	# 1: the client's --lean (no json-c)
CLIENT_PROCS=${BENCH_CLIENT_PROCS:-2}	# client processes (-j) of delivery and maxrate
DL_SUBS=${BENCH_DELIVERY_SUBS:-"1 100 1000"}
DL_SECONDS=${BENCH_DELIVERY_SECONDS:-10}	# length of each stream at BENCH_RATE
DL_ROUNDS=${BENCH_DELIVERY_ROUNDS:-2}
DL_TRANSPORTS=${BENCH_DELIVERY_TRANSPORTS:-"ws wss"}
MR_SUBS=${BENCH_MAXRATE_SUBS:-"1 100"}
MR_STEPS=${BENCH_MAXRATE_STEPS:-"1000 2000 4000 6000 8000 10000 12000 16000 20000 24000"}	# events/s
MR_SECONDS=${BENCH_MAXRATE_SECONDS:-5}	# per step
MR_CLIENTS=${BENCH_MAXRATE_CLIENTS:-8}	# pgbench clients
MR_ROUNDS=${BENCH_MAXRATE_ROUNDS:-2}
MR_P99_MS=${BENCH_MAXRATE_P99_MS:-100}	# a step passes with p99 under this
R100_SUBS=${BENCH_ROWS100_SUBS:-"100 1000"}
R100_TX=${BENCH_ROWS100_TX:-200}	# transactions per run
R100_ROWS=${BENCH_ROWS100_ROWS:-100}	# rows per transaction
R100_ROUNDS=${BENCH_ROWS100_ROUNDS:-2}
R100_PROCS=${BENCH_ROWS100_PROCS:-4}	# client processes (-j)
FI_SUBS=${BENCH_FILTERED_SUBS:-"100 10000"}
FI_RATE=${BENCH_FILTERED_RATE:-1000}	# events/s, each for one subscriber
FI_SECONDS=${BENCH_FILTERED_SECONDS:-10}
FI_ROUNDS=${BENCH_FILTERED_ROUNDS:-3}
# each subscriber's request, {i} its number (ws_fast, ws_sub --path)
FI_PATH=${BENCH_FILTERED_PATH:-'/ws/?filter=device_id%3Deq.d{i}'}
ST_SUBS=${BENCH_STORM_SUBS:-1000}	# "storm" (only when named): resuming subscribers
ST_EVENTS=${BENCH_STORM_EVENTS:-20000}	# the events each resumes across
ST_BATCH=${BENCH_STORM_BATCH:-100}	# rows per transaction
ST_ROUNDS=${BENCH_STORM_ROUNDS:-2}
ST_LIVE=${BENCH_STORM_LIVE:-10}	# live subscribers, alone and during the storm
ST_RATE=${BENCH_STORM_RATE:-200}	# their events/s
ST_LIVE_SECONDS=${BENCH_STORM_LIVE_SECONDS:-8}
ST_CLIENT_IDLE=${BENCH_STORM_CLIENT_IDLE:-1}	# the storm's client under SCHED_IDLE
ST_VARIANTS=${BENCH_STORM_VARIANTS:-"memory wal"}	# and connect: the same subscribers, no resume
ST_NOFILE=${BENCH_STORM_NOFILE:-$((4 * ST_SUBS + 4096))}
CM_SUBS=${BENCH_COMPRESSION_SUBS:-100}	# "compression" (only when named)
CM_ROUNDS=${BENCH_COMPRESSION_ROUNDS:-3}
CM_EVENTS=${BENCH_COMPRESSION_EVENTS:-10000}	# single events, one transaction
CM_UPDATES=${BENCH_COMPRESSION_UPDATES:-1000}	# client_updates, one transaction
KINDS_LIST=${BENCH_KINDS:-"client_create client_update client_delete client_visit_create client_visit_update client_visit_delete employee_create employee_update employee_delete employee_attendance employee_attendance_delete send send_alone row_create"}	# "kinds" (only when named)
KINDS_SECONDS=${BENCH_KINDS_SECONDS:-2}	# seconds per pgbench run
KINDS_ROUNDS=${BENCH_KINDS_ROUNDS:-3}	# rounds, plain and ws swapped every round
KINDS_CLIENTS=${BENCH_KINDS_CLIENTS:-"1 8"}
KINDS_VISITS=${BENCH_KINDS_VISITS:-10}	# visits of each client client_update updates
KINDS_POOL=${BENCH_KINDS_POOL:-$((20000 * KINDS_SECONDS))}	# rows made for each delete run
PLOT_DIR=${BENCH_PLOT_DIR:-$HERE/results}	# PNGs and their .dat of delivery and rows100

has_part() { [[ " $PARTS " == *" $1 "* ]]; }
for p in $PARTS; do
	case "$p" in
		write | broadcast | burst | resume | storm | wakeup | standby | scale | delivery | maxrate | rows100 | filtered | compression | kinds) ;;
		*) echo "run_bench.sh: unknown part \"$p\" in BENCH_PARTS" >&2; exit 1 ;;
	esac
done

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
CLIENT="$HERE/$BENCH_CLIENT"
if has_part delivery || has_part maxrate || has_part rows100 || has_part scale || has_part filtered || has_part storm; then
	[ "$BENCH_CLIENT" = ws_sub ] || make -s -C "$HERE" "$BENCH_CLIENT" >/dev/null
	[ -x "$CLIENT" ] || { echo "run_bench.sh: BENCH_CLIENT: $CLIENT is not a program" >&2; exit 1; }
fi

# ---------------------------------------------------------------- set-up

TMP=$(mktemp -d /tmp/pg_ws_bench.XXXXXX)
chown postgres: "$TMP"
chmod 755 "$TMP"
DATA="$TMP/data"
LOG="$TMP/server.log"
CLUSTERS=""		# data directories of the clusters started, for cleanup
SUB_PID=""		# the running ws_sub, if any
PGB_PID=""		# the running pgbench, if any

cleanup() {
	local rc=$?
	local p d
	trap - EXIT INT TERM
	for p in $SUB_PID $PGB_PID; do
		kill "$p" 2>/dev/null || true
	done
	for d in $CLUSTERS; do
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop \
			>/dev/null 2>&1 || true
	done
	# pg_ws.so rewritten in place during a run crashed a cluster's backend
	# (signal 11): say so, the results are not of one build
	if [ -n "${SO_MD5:-}" ] && [ "$(md5sum <"$PKGLIB/pg_ws.so" | cut -c1-12)" != "$SO_MD5" ]; then
		echo "# WARNING: $PKGLIB/pg_ws.so changed during the run (md5 $SO_MD5 at the start, $(md5sum <"$PKGLIB/pg_ws.so" | cut -c1-12) now): these results, and any crash, are not of one build"
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

USED_PORTS=" "
free_port() {
	local p
	while :; do
		p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		case "$USED_PORTS" in *" $p "*) continue ;; esac
		USED_PORTS="$USED_PORTS$p "
		echo "$p"
		return
	done
}

as_pg() { (cd "$TMP" && runuser -u postgres -- "$@"); }

# tls_settings: the pg_ws settings of a wss:// cluster, with a self-signed
# P-256 certificate (as a certbot ECDSA one would be), made once
tls_settings() {
	if [ ! -f "$TMP/tls/server.crt" ]; then
		mkdir -p "$TMP/tls"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-days 2 -subj "/CN=127.0.0.1" -keyout "$TMP/tls/server.key" \
			-out "$TMP/tls/server.crt" >"$TMP/tls/openssl.log" 2>&1 ||
			{ cat "$TMP/tls/openssl.log" >&2; exit 1; }
		chown -R postgres: "$TMP/tls"
		chmod 600 "$TMP/tls/server.key"
	fi
	printf "pg_ws.ssl_cert_file = '%s'\npg_ws.ssl_key_file = '%s'\n" "$TMP/tls/server.crt" "$TMP/tls/server.key"
}

# start_cluster DATADIR LOGFILE PGPORT WSPORT EXTRA_CONF: a throw-away
# cluster with pg_ws preloaded; every cluster of this script gets the same
# settings apart from EXTRA_CONF
start_cluster() {
	local data=$1 log=$2 port=$3 wsport=$4 extra=$5
	as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale \
		>"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log"; exit 1; }
	cat >>"$data/postgresql.conf" <<EOF
# pg_ws benchmark cluster
shared_preload_libraries = 'pg_ws'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TMP'
port = $port
max_connections = 50
pg_ws.port = $wsport
pg_ws.listen_addresses = '127.0.0.1'
pg_ws.database = 'postgres'
# room for a subscriber set that is still closing while the next connects
pg_ws.max_connections = 200
# a throw-away cluster: measure CPU work, not the disk (the WAL part turns
# fsync and synchronous_commit on for its sync-commit table)
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
# tables are truncated before every run instead
autovacuum = off
log_line_prefix = '%m [%p] %b '
# BENCH_EVENT_LOOP: the worker's event loop (poll or libev)
pg_ws.event_loop = '$EVENT_LOOP'
$extra
EOF
	CLUSTERS="$CLUSTERS $data"
	# CLUSTER_NOFILE: the postmaster's (so the worker's) limit on open files
	if [ -n "${CLUSTER_NOFILE:-}" ]; then
		(cd "$TMP" && prlimit --nofile="$CLUSTER_NOFILE:$CLUSTER_NOFILE" \
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null)
	else
		as_pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null
	fi
}

PGPORT=$(free_port)
WSPORT=$(free_port)
start_cluster "$DATA" "$LOG" "$PGPORT" "$WSPORT" ""

psql_q() {
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP" -p "$PGPORT" \
		-U postgres -d postgres "$@"
}
# psql_at PORT ...: the same on another cluster
psql_at() {
	local port=$1
	shift
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP" -p "$port" \
		-U postgres -d postgres "$@"
}

# the bench tables, on the cluster at port $1
setup_schema() {
psql_at "$1" <<'EOF'
CREATE EXTENSION pg_ws;
INSERT INTO client (id, visit_count) VALUES (1, 0);

-- The NOTIFY baseline of the write-path part: plpgsql row triggers that
-- send the event pg_ws would send with pg_notify() (json_build_object
-- writes timestamps as 2026-01-01T00:00:00+00:00, not ...Z, and the image as
-- stored; otherwise the same keys and values).  Created disabled: the part
-- enables one trigger or the other per run (ALTER TABLE ... ENABLE TRIGGER).
CREATE FUNCTION bench_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('pg_ws_bench',
		json_build_object('event', 'client_visit_create',
			'data', json_build_object('datetime', NEW.datetime,
				'device_id', NEW.device_id, 'client', NEW.client_id))::text);
	RETURN NULL;
END
$$;
CREATE TRIGGER bench_notify AFTER INSERT ON visit_history
	FOR EACH ROW EXECUTE FUNCTION bench_notify_event();
ALTER TABLE visit_history DISABLE TRIGGER bench_notify;

-- client_update with visit_histories: the client's newest
-- pg_ws.max_visit_histories visits, oldest first, with json_agg
CREATE FUNCTION bench_client_event(c client) RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN json_build_object('event', 'client_update',
		'data', json_build_object('id', c.id, 'first_seen', c.first_seen,
			'last_seen', c.last_seen, 'visit_count', c.visit_count,
			'gender', c.gender, 'age', c.age, 'image', c.image,
			'visit_histories', coalesce((
				SELECT json_agg(json_build_object('datetime', v.datetime,
						'device_id', v.device_id) ORDER BY v.datetime, v.id)
				FROM (SELECT h.datetime, h.device_id, h.id FROM visit_history h
					WHERE h.client_id = c.id ORDER BY h.datetime DESC, h.id DESC
					LIMIT current_setting('pg_ws.max_visit_histories')::int) v),
				'[]'::json)));
END
$$;
CREATE FUNCTION bench_notify_client() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('pg_ws_bench', bench_client_event(NEW)::text);
	RETURN NULL;
END
$$;
CREATE TRIGGER bench_notify AFTER UPDATE ON client
	FOR EACH ROW EXECUTE FUNCTION bench_notify_client();
ALTER TABLE client DISABLE TRIGGER bench_notify;
EOF
}
setup_schema "$PGPORT"

# the pid of the pg_ws worker of the cluster at port $1, waiting up to 10 s
# for it to start (fcc407d's worker failed until a backend had written the
# relcache init file; 19e966e fixed that, but a restarting worker can
# still be missed by a single look)
worker_pid() {
	local i pid=""
	for ((i = 0; i < 100; i++)); do
		pid=$(psql_at "$1" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'")
		[ -n "$pid" ] && break
		sleep 0.1
	done
	echo "$pid"
}
WORKER_PID=$(worker_pid "$PGPORT")
if [ -z "$WORKER_PID" ]; then
	echo "run_bench.sh: the pg_ws worker is not running" >&2
	tail -20 "$LOG" >&2
	exit 1
fi

# one INSERT per transaction; device_id is the writer's clock in microseconds
STAMP="(extract(epoch from clock_timestamp()) * 1000000)::bigint::text"
echo "INSERT INTO visit_history (client_id, device_id) VALUES (1, $STAMP);" >"$TMP/insert_ws.sql"

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# rchar of /proc/PID/io: bytes the process read (the WAL, for a reader)
read_bytes() { awk '/^rchar:/ {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
# microseconds as milliseconds, "-" for none
ms() { awk -v x="$1" 'BEGIN {if (x == "" || x == "nan" || x < 0) print "-"; else printf "%.1f", x / 1000}'; }
PM_PID=$(head -1 "$DATA/postmaster.pid")
# CPU ticks of the whole cluster: the postmaster with its reaped children
# (backends that have exited), plus every live child (the pg_ws worker,
# walwriter, checkpointer, ...)
# (of the main cluster, or of the cluster whose postmaster is $1)
cluster_ticks() {
	local t c pm=${1:-$PM_PID}
	t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
	for c in $(pgrep -P "$pm"); do
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
# its output goes to the file $1; PGB_PORT picks another cluster than main
run_pgbench() {
	local out=$1 rc=0
	shift
	"$PGBIN/pgbench" -n -h "$TMP" -p "${PGB_PORT:-$PGPORT}" -U postgres "$@" postgres >"$out" 2>&1 &
	PGB_PID=$!
	wait "$PGB_PID" || rc=$?
	PGB_PID=""
	if [ "$rc" != 0 ]; then
		cat "$out" >&2
		exit 1
	fi
}

reset_tables() {
	psql_q -c "TRUNCATE visit_history" -c "CHECKPOINT"
}

# ---------------------------------------------------------------- header

NPROC=$(nproc)
echo "# pg_ws benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "# host: $NPROC CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $("$PGBIN/postgres" --version), libwebsockets $(dpkg-query -W -f '${Version}' libwebsockets-dev 2>/dev/null || pkg-config --modversion libwebsockets), json-c $(pkg-config --modversion json-c)"
SO_MD5=$(md5sum <"$PKGLIB/pg_ws.so" | cut -c1-12)
SO_TIME=$(date -u -r "$PKGLIB/pg_ws.so" '+%Y-%m-%d %H:%M:%S UTC')
if git -C "$REPO" rev-parse --short HEAD >/dev/null 2>&1; then
	# the last commit that changed the extension, not bench/'s own
	echo "# pg_ws source: $(git -C "$REPO" log -1 --format='%h %s' -- src sql Makefile pg_ws.control | cut -c1-90)$(git -C "$REPO" diff --quiet HEAD -- src sql 2>/dev/null || echo ' + uncommitted changes in src/ or sql/') (checkout at $(git -C "$REPO" rev-parse --short HEAD))"
fi
echo "# pg_ws measured: $PKGLIB/pg_ws.so md5 $SO_MD5, installed $SO_TIME"
SO_EPOCH=$(date -r "$PKGLIB/pg_ws.so" +%s)
for f in "$REPO"/src/*.c "$REPO"/src/*.h; do
	# an unmodified file dates from its last commit, not from its checkout
	# (a fresh worktree would otherwise look newer than everything)
	t=$(date -r "$f" +%s)
	if git -C "$REPO" diff --quiet HEAD -- "$f" 2>/dev/null; then
		t=$(git -C "$REPO" log -1 --format=%ct -- "$f" 2>/dev/null || echo "$t")
		[ -n "$t" ] || t=$(date -r "$f" +%s)
	fi
	if [ "$t" -gt "$SO_EPOCH" ]; then
		echo "# WARNING: $f is newer than the installed pg_ws.so: run make && make install"
	fi
done
echo "# cluster: fsync=off synchronous_commit=off full_page_writes=off autovacuum=off (unless a part says otherwise); pg_ws.event_loop=$EVENT_LOOP; pgbench over the unix socket; tables truncated + CHECKPOINT before each run"
echo "# parts: $PARTS"
# the command, with every BENCH_* setting it was given
echo "# command: $(env | grep '^BENCH_' | sort | tr '\n' ' ')bash bench/run_bench.sh"
echo

# ---------------------------------------------------------------- write-path helpers

# The write and kinds parts: pgbench runs of a variant, plain against pg_ws's
# trigger, on the main cluster, and ratios of their rounds.
# variant -> cluster (port, postmaster, worker): everything on the main
# cluster (pg_ws.wal = on) but ws_waloff, which needs a cluster of its own
# because pg_ws.wal is a postmaster setting (the write part adds it)
declare -A V_PORT=([plain]=$PGPORT [ws]=$PGPORT [notify]=$PGPORT)
declare -A V_PM=([plain]=$PM_PID [ws]=$PM_PID [notify]=$PM_PID)
declare -A V_WORKER=([plain]=$WORKER_PID [ws]=$WORKER_PID [notify]=$WORKER_PID)
SYNC_PORTS=$PGPORT

# set_sync on|off: fsync and synchronous_commit (both reloadable) on every
# cluster of this part; off is how the clusters start
set_sync() {
	local port
	for port in $SYNC_PORTS; do
		psql_at "$port" -c "ALTER SYSTEM SET fsync = $1" \
			-c "ALTER SYSTEM SET synchronous_commit = $1" \
			-c "SELECT pg_reload_conf()" >/dev/null
	done
	sleep 0.5
	for port in $SYNC_PORTS; do
		if [ "$(psql_at "$port" -c 'SHOW fsync')" != "$1" ] ||
			[ "$(psql_at "$port" -c 'SHOW synchronous_commit')" != "$1" ]; then
			echo "run_bench.sh: fsync/synchronous_commit did not become $1" >&2
			exit 1
		fi
	done
}

# set_triggers VARIANT TABLE: which row trigger of TABLE fires on the main
# cluster: pg_ws's (ws), the NOTIFY one (notify) or neither (plain); the
# ws_waloff cluster keeps pg_ws's enabled throughout.  Only the tables of
# NOTIFY_TABLES have setup_schema's bench_notify trigger.  pg_ws warns
# that a disabled pg_ws_event does not fire as pg_ws_watch() set it (1.4):
# meant here, so neither said nor logged.
NOTIFY_TABLES="visit_history client"
set_triggers() {
	local ws=DISABLE nf=DISABLE alter
	case "$1" in
		ws) ws=ENABLE ;;
		notify) nf=ENABLE ;;
		ws_waloff) return 0 ;;
	esac
	if [[ " $NOTIFY_TABLES " == *" $2 "* ]]; then
		alter="ALTER TABLE $2 $ws TRIGGER pg_ws_event, $nf TRIGGER bench_notify"
	elif [ "$1" = notify ]; then
		echo "run_bench.sh: table $2 has no NOTIFY baseline" >&2
		exit 1
	else
		alter="ALTER TABLE $2 $ws TRIGGER pg_ws_event"
	fi
	psql_q -c "SET client_min_messages = error" -c "SET log_min_messages = error" -c "$alter"
}

# rotated R WORD...: the words, the first R mod their number moved to the
# end: the order of the variants in round R
rotated() {
	local r=$1
	shift
	local -a w=("$@")
	local k
	for ((k = 0; k < ${#w[@]}; k++)); do
		echo "${w[$(((k + r) % ${#w[@]}))]}"
	done
}

# one_run VARIANT CLIENTS SCRIPT [SECONDS]: a pgbench -M prepared run of
# SECONDS (WRITE_DURATION) on the variant's cluster; sets RUN_TPS,
# RUN_FAILED, RUN_NTX (transactions), RUN_CPX (server CPU us/tx: all
# processes of that cluster, the pg_ws worker included), RUN_BPX (WAL
# bytes/tx) and RUN_WCPU (the worker's CPU, %)
one_run() {
	local v=$1 c=$2 script=$3 secs=${4:-$WRITE_DURATION} port=${V_PORT[$1]} j=$2 lsn0 bytes w0 w1 s0 s1 ntx
	[ "$j" -gt "$NPROC" ] && j=$NPROC
	lsn0=$(psql_at "$port" -c "SELECT pg_current_wal_lsn()")
	w0=$(cpu_ticks "${V_WORKER[$v]}")
	s0=$(cluster_ticks "${V_PM[$v]}")
	PGB_PORT=$port run_pgbench "$TMP/pgbench.out" -M prepared -c "$c" -j "$j" \
		-T "$secs" -f "$script"
	w1=$(cpu_ticks "${V_WORKER[$v]}")
	bytes=$(psql_at "$port" -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')")
	sleep 0.3	# let the postmaster reap the backends
	s1=$(cluster_ticks "${V_PM[$v]}")
	RUN_TPS=$(awk '/^tps = / {print $3; exit}' "$TMP/pgbench.out")
	RUN_FAILED=$(awk '/number of failed transactions/ {print $5; exit}' "$TMP/pgbench.out")
	ntx=$(awk '/number of transactions actually processed/ {print $6; exit}' "$TMP/pgbench.out")
	RUN_CPX=$(awk -v a="$s0" -v b="$s1" -v t="$CLK_TCK" -v n="$ntx" \
		'BEGIN {printf "%.1f", (b - a) / t / n * 1e6}')
	RUN_BPX=$(awk -v b="$bytes" -v n="$ntx" 'BEGIN {printf "%.0f", b / n}')
	RUN_NTX=$ntx
	RUN_WCPU=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v d="$secs" \
		'BEGIN {printf "%.0f", (b - a) / t / d * 100}')
}

# per-round ratios of the list $1 to the list $2 (same length, same rounds)
ratios() {
	local xs ys i
	read -ra xs <<<"$1"
	read -ra ys <<<"$2"
	for ((i = 0; i < ${#xs[@]}; i++)); do
		awk -v x="${xs[$i]}" -v y="${ys[$i]}" 'BEGIN {printf "%.4f\n", x / y}'
	done
}
# "median [min..max]" of the per-round ratios of $1 to $2
ratio_summary() {
	local r
	mapfile -t r < <(ratios "$1" "$2")
	printf '%.3f %s' "$(median "${r[@]}")" \
		"$(printf '%s\n' "${r[@]}" | awk 'NR == 1 || $1 < lo {lo = $1} NR == 1 || $1 > hi {hi = $1}
			END {printf "[%.2f..%.2f]", lo, hi}')"
}
# the median alone
ratio_median() {
	local r
	mapfile -t r < <(ratios "$1" "$2")
	median "${r[@]}"
}

# tps_target CLIENTS: issue 20's least ws / plain tps with sync on, for
# one-row transactions at -c 1 and -c 8 (nothing for other counts)
tps_target() {
	case "$1" in 1) echo 0.95 ;; 8) echo 0.90 ;; esac
}

# ---------------------------------------------------------------- write path

if has_part write; then

read -ra W_VARIANTS <<<"$WRITE_VARIANTS"
[[ " $WRITE_VARIANTS " == *" plain "* ]] ||
	{ echo "run_bench.sh: BENCH_WRITE_VARIANTS must include plain (the ratios are against it)" >&2; exit 1; }
for v in "${W_VARIANTS[@]}"; do
	case "$v" in plain | ws | ws_waloff | notify) ;;
		*) echo "run_bench.sh: unknown write variant \"$v\"" >&2; exit 1 ;;
	esac
done
if [[ " $WRITE_VARIANTS " == *" ws_waloff "* ]]; then
	NW_DATA="$TMP/data_nowal"
	NW_PORT=$(free_port)
	NW_WSPORT=$(free_port)
	start_cluster "$NW_DATA" "$TMP/server_nowal.log" "$NW_PORT" "$NW_WSPORT" "pg_ws.wal = off"
	setup_schema "$NW_PORT" >/dev/null
	NW_PM_PID=$(head -1 "$NW_DATA/postmaster.pid")
	NW_WORKER_PID=$(worker_pid "$NW_PORT")
	[ -n "$NW_WORKER_PID" ] || { echo "run_bench.sh: the pg_ws worker of the pg_ws.wal = off cluster is not running" >&2; exit 1; }
	if [ "$(psql_at "$NW_PORT" -c 'SHOW pg_ws.wal')" != off ] || [ "$(psql_q -c 'SHOW pg_ws.wal')" != on ]; then
		echo "run_bench.sh: pg_ws.wal is not on/off on the two clusters" >&2
		exit 1
	fi
	V_PORT[ws_waloff]=$NW_PORT
	V_PM[ws_waloff]=$NW_PM_PID
	V_WORKER[ws_waloff]=$NW_WORKER_PID
	SYNC_PORTS="$PGPORT $NW_PORT"
fi

# profile_pair LABEL SCRIPT TABLE COUNT_SQL: where a ws backend's extra time
# goes.  pgbench -M prepared -c 1 runs SCRIPT with TABLE's triggers as in
# plain, then as in ws; perf record samples its one backend for
# PROFILE_SECONDS.  COUNT_SQL returns a number that grows by one per
# transaction, read before and after the window.
profile_pair() {
	local label=$1 script=$2 table=$3 count_sql=$4 v bpid i n0 n1 t0 t1
	local -A p_cpx p_res
	set_sync "$PROFILE_SYNC"
	echo "## profile, $label: the backend of pgbench -M prepared -c 1, perf record --call-graph $PROFILE_CALLGRAPH -F $PROFILE_FREQ for ${PROFILE_SECONDS}s, plain then ws, sync $PROFILE_SYNC"
	echo "# backend CPU/tx: /proc/PID/stat utime+stime over the window / the transactions in it; us/tx of a symbol: its share of the samples x backend CPU/tx"
	for v in plain ws; do
		set_triggers "$v" "$table"
		psql_q -c "CHECKPOINT"
		# the backend of the previous run may still be exiting
		for ((i = 0; i < 50; i++)); do
			[ "$(psql_q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" = 0 ] && break
			sleep 0.1
		done
		"$PGBIN/pgbench" -n -h "$TMP" -p "$PGPORT" -U postgres -M prepared -c 1 -j 1 \
			-T $((PROFILE_SECONDS + 4)) -f "$script" postgres >"$TMP/pgbench_prof.out" 2>&1 &
		PGB_PID=$!
		bpid=""
		for ((i = 0; i < 50; i++)); do
			# not pgbench's first connection, which only looks at the server
			bpid=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND query ~* '^[[:space:]]*(insert|update)' LIMIT 1")
			[ -n "$bpid" ] && break
			sleep 0.1
		done
		[ -n "$bpid" ] || { echo "run_bench.sh: no pgbench backend to profile" >&2; exit 1; }
		sleep 0.5
		n0=$(psql_q -c "$count_sql")
		t0=$(cpu_ticks "$bpid")
		perf record -q --call-graph "$PROFILE_CALLGRAPH" -F "$PROFILE_FREQ" -p "$bpid" \
			-o "$TMP/perf_$label.$v.data" -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1 || true
		t1=$(cpu_ticks "$bpid")
		n1=$(psql_q -c "$count_sql")
		wait "$PGB_PID" || { cat "$TMP/pgbench_prof.out" >&2; exit 1; }
		PGB_PID=""
		p_cpx[$v]=$(awk -v a="$t0" -v b="$t1" -v t="$CLK_TCK" -v n=$((n1 - n0)) \
			'BEGIN {printf "%.1f", (b - a) / t / n * 1e6}')
		# what one sample stands for, in us/tx
		p_res[$v]=$(awk -v a="$t0" -v b="$t1" -v t="$CLK_TCK" -v f="$PROFILE_FREQ" -v c="${p_cpx[$v]}" \
			'BEGIN {printf "%.2f", c / ((b - a) / t * f)}')
		# "symbol share%", self time and inclusive time
		perf report -i "$TMP/perf_$label.$v.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
			awk '/^ +[0-9.]+%/ {p = $1; sub(/%/, "", p); print $3, p}' >"$TMP/self_$label.$v" || true
		perf report -i "$TMP/perf_$label.$v.data" --children --sort symbol --stdio -g none 2>/dev/null |
			awk '/^ +[0-9.]+%/ {p = $1; sub(/%/, "", p); print $4, p}' >"$TMP/incl_$label.$v" || true
		echo
		echo "### $label, $v: $((n1 - n0)) transactions in ${PROFILE_SECONDS}s under perf, backend CPU ${p_cpx[$v]} us/tx (one sample: ${p_res[$v]} us/tx)"
		echo "self time by DSO:"
		perf report -i "$TMP/perf_$label.$v.data" --no-children --sort dso --stdio -g none 2>/dev/null |
			awk '/^ +[0-9.]+%/ && n++ < 6 {printf "    %-45s %7s  %6.1f us/tx\n", $2, $1, $1 * c / 100}' c="${p_cpx[$v]}" || true
		echo "self time, top 20 symbols (perf report --no-children --sort symbol):"
		awk 'n++ < 20 {printf "    %-45s %6.2f%%  %6.1f us/tx\n", $1, $2, $2 * c / 100}' c="${p_cpx[$v]}" "$TMP/self_$label.$v"
		if [ "$v" = ws ]; then
			echo "pg_ws.so, self time by symbol:"
			perf report -i "$TMP/perf_$label.$v.data" --no-children --dsos pg_ws.so --sort symbol --stdio -g none 2>/dev/null |
				awk '/^ +[0-9.]+%/ && n++ < 15 {printf "    %-45s %7s  %6.2f us/tx\n", $3, $1, $1 * c / 100}' c="${p_cpx[$v]}" || true
		fi
	done
	set_triggers ws "$table"
	echo
	echo "- backend CPU/tx under perf: plain ${p_cpx[plain]} us, ws ${p_cpx[ws]} us: $(awk -v a="${p_cpx[ws]}" -v b="${p_cpx[plain]}" 'BEGIN {printf "%+.1f us (%+.0f%%)", a - b, (a / b - 1) * 100}') per transaction"
	echo "- inclusive time (perf report --children) of pg_ws's functions and of the transaction's main steps, us/tx:"
	awk -v cp="${p_cpx[plain]}" -v cw="${p_cpx[ws]}" '
		FNR == NR {p[$1] = $2 * cp / 100; next}
		$1 ~ /^(pgws_|render_|append_|column_)/ || $1 ~ /^(pg_ws_row_event|output_string|LogLogicalMessage|XLogInsert|XLogInsertRecord|SPI_execute_plan|SPI_connect|SPI_finish|SPI_fnumber|LWLockAcquire|escape_json|OidOutputFunctionCall|timestamp2tm|pg_server_to_any|is_ascii|AfterTriggerEndQuery|ExecCallTriggerFunc|RI_FKey_check_ins|CommitTransactionCommand|CommitTransaction|CallXactCallbacks|XLogFlush|exec_execute_message|exec_bind_message|ExecutorStart|ExecutorRun|heap_insert|heap_update|pq_getbyte|secure_read|WaitEventSetWait)$/ {
			printf "%s %.2f %.2f\n", $1, p[$1], $2 * cw / 100}' "$TMP/incl_$label.plain" "$TMP/incl_$label.ws" |
		sort -k3,3gr | awk '{printf "    %-45s plain %6.2f  ws %6.2f\n", $1, $2, $3}' || true
	echo "- the symbols whose self time grew most, ws minus plain, us/tx:"
	awk -v cp="${p_cpx[plain]}" -v cw="${p_cpx[ws]}" '
		FNR == NR {p[$1] = $2 * cp / 100; next}
		{w[$1] = $2 * cw / 100}
		END {
			for (s in w) d[s] = w[s] - p[s]
			for (s in p) if (!(s in w)) d[s] = -p[s]
			for (s in d) printf "%s %.2f %.2f %.2f\n", s, p[s], w[s], d[s]
		}' "$TMP/self_$label.plain" "$TMP/self_$label.ws" | sort -k4,4gr | awk 'n++ < 15 {
			printf "    %-45s plain %6.2f  ws %6.2f  diff %+6.2f\n", $1, $2, $3, $4}' || true
	echo
}

# 1. the matrix: one INSERT into visit_history per transaction
echo "## write path: one INSERT into visit_history per transaction; pgbench -n -M prepared -T $WRITE_DURATION; $WRITE_ROUNDS rounds, variant order rotated every round"
echo "# plain: visit_history with pg_ws's trigger disabled (ALTER TABLE ... DISABLE TRIGGER pg_ws_event; pg_ws stays loaded); ws: pg_ws's trigger, pg_ws.wal = on;"
echo "# ws_waloff: the same on a second, identical cluster with pg_ws.wal = off; notify: pg_ws's trigger disabled, a plpgsql AFTER INSERT trigger sends the same JSON with pg_notify() (no listener)"
echo "# sync on: fsync=on synchronous_commit=on (durable); sync off: fsync=off synchronous_commit=off; both: full_page_writes=off, wal_level=replica, TRUNCATE + CHECKPOINT before every run"
declare -A WT WX WB WW
t_part=$SECONDS
for sync in $WRITE_SYNC; do
	set_sync "$sync"
	# a discarded second of each cluster after the switch
	for v in "${W_VARIANTS[@]}"; do
		[ "$v" = ws ] || [ "$v" = ws_waloff ] || continue
		PGB_PORT=${V_PORT[$v]} run_pgbench "$TMP/pgbench.out" -M prepared -c 2 -j 2 -T 1 \
			-f "$TMP/insert_ws.sql"
	done
	for ((r = 0; r < WRITE_ROUNDS; r++)); do
		for c in $WRITE_CLIENTS; do
			for v in $(rotated "$r" "${W_VARIANTS[@]}"); do
				set_triggers "$v" visit_history
				psql_at "${V_PORT[$v]}" -c "TRUNCATE visit_history" -c "CHECKPOINT"
				one_run "$v" "$c" "$TMP/insert_ws.sql"
				WT[$sync,$c,$v]="${WT[$sync,$c,$v]:-} $RUN_TPS"
				WX[$sync,$c,$v]="${WX[$sync,$c,$v]:-} $RUN_CPX"
				WB[$sync,$c,$v]="${WB[$sync,$c,$v]:-} $RUN_BPX"
				WW[$sync,$c,$v]="${WW[$sync,$c,$v]:-} $RUN_WCPU"
				printf '  sync %-3s  round %d  -c %d  %-9s  tps %7.0f  failed %s  WAL %4s B/tx  server CPU %6s us/tx  pg_ws worker CPU %s%%\n' \
					"$sync" $((r + 1)) "$c" "$v" "$RUN_TPS" "${RUN_FAILED:-0}" "$RUN_BPX" "$RUN_CPX" "$RUN_WCPU"
			done
		done
	done
done
set_triggers ws visit_history
echo "# matrix: $((SECONDS - t_part)) s"
echo
echo "Ratios vs plain are per round (a round's runs are adjacent in time): median [min..max] over the $WRITE_ROUNDS rounds."
echo "server CPU/tx: CPU time of every process of the variant's cluster (backends, walwriter, the pg_ws worker, ...) over its transactions."
echo
echo "| sync commit | clients | variant | median tps | tps vs plain | runs (tps) | server CPU/tx | CPU/tx vs plain | WAL bytes/tx | pg_ws worker CPU |"
echo "|---|--:|---|--:|---|---|--:|---|--:|--:|"
for sync in $WRITE_SYNC; do
	for c in $WRITE_CLIENTS; do
		for v in "${W_VARIANTS[@]}"; do
			# shellcheck disable=SC2086
			printf '| %s | %d | %s | %.0f | %s | %s | %.1f us | %s | %.0f | %s%% |\n' "$sync" "$c" "$v" \
				"$(median ${WT[$sync,$c,$v]})" \
				"$(ratio_summary "${WT[$sync,$c,$v]}" "${WT[$sync,$c,plain]}")" \
				"$(printf '%.0f ' ${WT[$sync,$c,$v]} | sed 's/ $//')" \
				"$(median ${WX[$sync,$c,$v]})" \
				"$(ratio_summary "${WX[$sync,$c,$v]}" "${WX[$sync,$c,plain]}")" \
				"$(median ${WB[$sync,$c,$v]})" "$(median ${WW[$sync,$c,$v]})"
		done
	done
done
echo
# the issue's targets, and the WAL record's own cost
if [[ " $WRITE_VARIANTS " == *" ws "* ]]; then
	for sync in $WRITE_SYNC; do
		for c in $WRITE_CLIENTS; do
			target=""
			if [ "$sync" = on ]; then
				target=$(tps_target "$c")
			fi
			line="sync $sync, -c $c: ws / plain tps $(ratio_summary "${WT[$sync,$c,ws]}" "${WT[$sync,$c,plain]}")"
			if [ -n "$target" ]; then
				line="$line, target >= $target: $(awk -v m="$(ratio_median "${WT[$sync,$c,ws]}" "${WT[$sync,$c,plain]}")" -v t="$target" \
					'BEGIN {print (m >= t) ? "met (median)" : "NOT met (median)"}')"
			fi
			[ -n "${WT[$sync,$c,ws_waloff]:-}" ] &&
				line="$line; ws / ws_waloff (the WAL record) $(ratio_summary "${WT[$sync,$c,ws]}" "${WT[$sync,$c,ws_waloff]}")"
			echo "- $line"
		done
	done
	echo
fi

# what the WAL record is: the WAL of 1000 single-row transactions, by
# resource manager (pg_walinspect), with pg_ws.wal on and off
if [[ " $WRITE_VARIANTS " == *" ws_waloff "* ]]; then
	echo "## WAL of 1000 one-row visit_history transactions, by record type (pg_walinspect; record sizes without alignment padding and page headers)"
	echo
	echo "| pg_ws.wal | record type | records | record bytes | FPI bytes | bytes per transaction |"
	echo "|---|---|--:|--:|--:|--:|"
	for v in ws ws_waloff; do
		port=${V_PORT[$v]}
		wal=on
		[ "$v" = ws_waloff ] && wal=off
		psql_at "$port" -c "CREATE EXTENSION IF NOT EXISTS pg_walinspect" -c "CHECKPOINT" >/dev/null
		lsn0=$(psql_at "$port" -c "SELECT pg_current_wal_lsn()")
		psql_at "$port" -c "DO \$\$ BEGIN FOR i IN 1..1000 LOOP
			INSERT INTO visit_history (client_id, device_id) VALUES (1, 'walinspect'); COMMIT;
			END LOOP; END \$\$"
		lsn1=$(psql_at "$port" -c "SELECT pg_current_wal_lsn()")
		psql_at "$port" -c "CHECKPOINT"		# pg_walinspect reads only flushed WAL
		psql_at "$port" -F ' ' -c "SELECT \"resource_manager/record_type\", count, record_size, fpi_size
			FROM pg_get_wal_stats('$lsn0', '$lsn1', true) WHERE count > 0 ORDER BY record_size DESC" |
		while read -r rm n rs fs; do
			printf '| %s | %s | %s | %s | %s | %.1f |\n' "$wal" "$rm" "$n" "$rs" "$fs" \
				"$(awk -v b="$rs" -v f="$fs" 'BEGIN {print (b + f) / 1000}')"
		done
		printf '| %s | total (LSN difference) | | | | %.1f |\n' "$wal" \
			"$(psql_at "$port" -c "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0') / 1000")"
	done
	echo
fi

# 2. where a ws backend's extra time goes, for one INSERT per transaction
if [ "$WRITE_PROFILE" = 1 ] && command -v perf >/dev/null 2>&1; then
	psql_q -c "TRUNCATE visit_history"
	profile_pair insert "$TMP/insert_ws.sql" visit_history "SELECT last_value FROM visit_history_id_seq"
fi

# 3. client_update with visit_histories: each pgbench client updates a
# client of its own that has UPDATE_VISITS visits
if [ "$UPDATE_VISITS" -gt 0 ]; then
	U_VARIANTS=(plain ws notify)
	maxc=$(tr ' ' '\n' <<<"$UPDATE_CLIENTS" | sort -n | tail -1)
	psql_q -c "TRUNCATE visit_history" -c "DELETE FROM client WHERE id > 1" \
		-c "INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age, image)
			SELECT 1 + i, '2026-01-01', '2026-01-02', 0, 'female', 30, 'client_images/c' || i || '.jpg'
			FROM generate_series(1, $maxc) i" \
		-c "INSERT INTO visit_history (client_id, datetime, device_id)
			SELECT 1 + i, '2026-01-01'::timestamptz + v * interval '1 minute', 'd' || v
			FROM generate_series(1, $maxc) i, generate_series(1, $UPDATE_VISITS) v" \
		-c "VACUUM ANALYZE client, visit_history"
	# the event each variant sends for one update
	set_triggers ws client
	ws_event=$(psql_q -c "BEGIN" -c "UPDATE client SET visit_count = visit_count + 1 WHERE id = 2" \
		-c "SELECT length(e) || ' bytes, ' || json_array_length((e::json)->'data'->'visit_histories') || ' visits' FROM pg_ws_pending_events() e" \
		-c "ROLLBACK")
	nf_event=$(psql_q -c "SELECT length(j::text) || ' bytes, ' || json_array_length(j->'data'->'visit_histories') || ' visits' FROM client c, bench_client_event(c) j WHERE id = 2")
	cat >"$TMP/update_client.sql" <<'EOS'
\set cid :client_id + 2
UPDATE client SET visit_count = visit_count + 1 WHERE id = :cid;
EOS
	echo "## client_update with visit_histories: each pgbench client updates its own client (UPDATE client SET visit_count = visit_count + 1), which has $UPDATE_VISITS visits; pgbench -n -M prepared -T $WRITE_DURATION; $UPDATE_ROUNDS rounds, order rotated"
	echo "# plain: client's pg_ws trigger disabled; ws: pg_ws's trigger renders client_update with visit_histories (pg_ws.max_visit_histories = $(psql_q -c 'SHOW pg_ws.max_visit_histories')); notify: pg_ws's trigger disabled, a plpgsql AFTER UPDATE trigger builds the same event with json_agg and pg_notify()s it"
	echo "# the event: ws $ws_event; notify $nf_event"
	declare -A UT UX
	t_part=$SECONDS
	for sync in $UPDATE_SYNC; do
		set_sync "$sync"
		for ((r = 0; r < UPDATE_ROUNDS; r++)); do
			for c in $UPDATE_CLIENTS; do
				for v in $(rotated "$r" "${U_VARIANTS[@]}"); do
					set_triggers "$v" client
					psql_q -c "VACUUM client" -c "CHECKPOINT"
					one_run "$v" "$c" "$TMP/update_client.sql"
					UT[$sync,$c,$v]="${UT[$sync,$c,$v]:-} $RUN_TPS"
					UX[$sync,$c,$v]="${UX[$sync,$c,$v]:-} $RUN_CPX"
					printf '  sync %-3s  round %d  -c %d  %-6s  tps %7.0f  failed %s  WAL %5s B/tx  server CPU %6s us/tx  pg_ws worker CPU %s%%\n' \
						"$sync" $((r + 1)) "$c" "$v" "$RUN_TPS" "${RUN_FAILED:-0}" "$RUN_BPX" "$RUN_CPX" "$RUN_WCPU"
				done
			done
		done
	done
	set_triggers ws client
	echo "# client_update: $((SECONDS - t_part)) s"
	echo
	echo "| sync commit | clients | variant | median tps | tps vs plain | runs (tps) | server CPU/tx | CPU/tx vs plain |"
	echo "|---|--:|---|--:|---|---|--:|---|"
	for sync in $UPDATE_SYNC; do
		for c in $UPDATE_CLIENTS; do
			for v in "${U_VARIANTS[@]}"; do
				# shellcheck disable=SC2086
				printf '| %s | %d | %s | %.0f | %s | %s | %.1f us | %s |\n' "$sync" "$c" "$v" \
					"$(median ${UT[$sync,$c,$v]})" \
					"$(ratio_summary "${UT[$sync,$c,$v]}" "${UT[$sync,$c,plain]}")" \
					"$(printf '%.0f ' ${UT[$sync,$c,$v]} | sed 's/ $//')" \
					"$(median ${UX[$sync,$c,$v]})" \
					"$(ratio_summary "${UX[$sync,$c,$v]}" "${UX[$sync,$c,plain]}")"
			done
		done
	done
	echo
	if [ "$WRITE_PROFILE" = 1 ] && command -v perf >/dev/null 2>&1; then
		profile_pair client_update "$TMP/update_client.sql" client "SELECT visit_count FROM client WHERE id = 2"
	fi
	psql_q -c "TRUNCATE visit_history" -c "DELETE FROM client WHERE id > 1"
fi
set_sync off
fi

# ---------------------------------------------------------------- kinds

if has_part kinds; then
# The write path of every event kind, sync on: one pgbench script per kind
# whose transaction makes exactly that event, plain (pg_ws's trigger
# pg_ws_event of the kind's table disabled, as in the write part; pg_ws_send:
# the same transaction without the call) against ws.
KM=1
for c in $KINDS_CLIENTS; do
	[ "$c" -gt "$KM" ] && KM=$c
done
[ "$KINDS_VISITS" -ge 1 ] ||
	{ echo "run_bench.sh: BENCH_KINDS_VISITS must be at least 1 (client_visit_update updates each client's first visit)" >&2; exit 1; }

# kind -> the table whose pg_ws_event plain disables (none: pg_ws_send),
# its transaction in pgbench's syntax (:client_id is 0 .. clients - 1, so
# that each pgbench client updates a row of its own), and plain's
# transaction where it differs.  A delete deletes the next row of a pool
# made before the run (bench_kinds_victim hands out its ids; the subquery
# makes nextval() an InitPlan, so the delete is an index scan on the key).
declare -A K_TABLE K_SQL K_PLAIN
NEXT_VICTIM="(SELECT nextval('bench_kinds_victim'))"
K_TABLE=([client_create]=client [client_update]=client [client_delete]=client
	[client_visit_create]=visit_history [client_visit_update]=visit_history
	[client_visit_delete]=visit_history [employee_create]=employee
	[employee_update]=employee [employee_delete]=employee
	[employee_attendance]=attendance [employee_attendance_delete]=attendance
	[send]="" [send_alone]="" [row_create]=bench_orders)
K_SQL=(
	[client_create]="INSERT INTO client (first_seen, last_seen, visit_count, gender, age, image) VALUES (now(), now(), 1, 'female', 31, 'client_images/new.jpg');"
	[client_update]="UPDATE client SET visit_count = visit_count + 1, last_seen = now() WHERE id = :client_id + 1;"
	[client_delete]="DELETE FROM client WHERE id = $NEXT_VICTIM;"
	[client_visit_create]="INSERT INTO visit_history (client_id, device_id) VALUES (:client_id + 1, 'cam-1');"
	[client_visit_update]="UPDATE visit_history SET device_id = 'cam-2' WHERE id = :client_id * $KINDS_VISITS + 1;"
	[client_visit_delete]="DELETE FROM visit_history WHERE id = $NEXT_VICTIM;"
	[employee_create]="INSERT INTO employee (first_name, last_name, email, phone_number, image, working_graphic_id) VALUES ('Ada', 'Lovelace', 'ada@example.com', '+44 20 7946 0000', 'employee_images/ada.jpg', 1);"
	[employee_update]="UPDATE employee SET working_graphic_id = working_graphic_id + 1 WHERE id = :client_id + 1;"
	[employee_delete]="DELETE FROM employee WHERE id = $NEXT_VICTIM;"
	[employee_attendance]="INSERT INTO attendance (employee_id, device_id, image, score) VALUES (:client_id + 1, 'cam-1', 'attendance_images/a.jpg', 95.5);"
	[employee_attendance_delete]="DELETE FROM attendance WHERE id = $NEXT_VICTIM;"
	[send]="WITH n AS (INSERT INTO bench_notes (employee_id, note) VALUES (:client_id + 1, 'shift changed') RETURNING id, employee_id) SELECT pg_ws_send('shift_changed', jsonb_build_object('note', id, 'employee', employee_id, 'graphic', 7)) FROM n;"
	[send_alone]="SELECT pg_ws_send('shift_changed', jsonb_build_object('employee', :client_id + 1, 'graphic', 7));"
	[row_create]="INSERT INTO bench_orders (customer, status, total) VALUES (:client_id + 1, 'new', 12.50);")
K_PLAIN=(
	[send]="WITH n AS (INSERT INTO bench_notes (employee_id, note) VALUES (:client_id + 1, 'shift changed') RETURNING id, employee_id) SELECT jsonb_build_object('note', id, 'employee', employee_id, 'graphic', 7) FROM n;"
	[send_alone]="SELECT jsonb_build_object('employee', :client_id + 1, 'graphic', 7);")
for k in $KINDS_LIST; do
	[ -n "${K_SQL[$k]:-}" ] || { echo "run_bench.sh: unknown kind \"$k\" in BENCH_KINDS" >&2; exit 1; }
	echo "${K_SQL[$k]}" >"$TMP/kind_$k.ws.sql"
	echo "${K_PLAIN[$k]:-${K_SQL[$k]}}" >"$TMP/kind_$k.plain.sql"
done

# a watched 'row' table, an unwatched one for pg_ws_send's transaction,
# and the delete pools' sequence
psql_q <<'SQL' >/dev/null
CREATE TABLE bench_orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	customer bigint NOT NULL, status text NOT NULL, total numeric(10, 2),
	placed_at timestamptz NOT NULL DEFAULT now());
SELECT pg_ws_watch('bench_orders', 'row');
CREATE TABLE bench_notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	employee_id bigint NOT NULL, note text NOT NULL,
	created timestamptz NOT NULL DEFAULT now());
CREATE SEQUENCE bench_kinds_victim;
SQL

# kinds_reset KIND: KIND's tables as each of its runs starts.  Written
# without events (session_replication_role = replica: neither pg_ws's
# triggers nor the foreign keys' fire), then VACUUM ANALYZE and CHECKPOINT:
# KM clients with KINDS_VISITS visits each (the client kinds), KM
# employees (the employee kinds), and for a delete KINDS_POOL more rows to
# delete, the first of which (K_FIRST) bench_kinds_victim hands out next:
# clients and employees with no visit or attendance (so that a delete
# makes one event and cascades to nothing), visits and attendances of the
# KM others.
declare -A K_FIRST
kinds_reset() {
	local k=$1 sql="" tables first=0 employees=$KM
	case "$k" in
		client_*)
			tables="client, visit_history"
			sql="INSERT INTO client (first_seen, last_seen, visit_count, gender, age, image)
				SELECT '2026-01-01', '2026-01-02', $KINDS_VISITS, 'female', 30, 'client_images/c' || i || '.jpg'
				FROM generate_series(1, $KM) i;
				INSERT INTO visit_history (client_id, datetime, device_id)
				SELECT i, '2026-01-01'::timestamptz + v * interval '1 minute', 'cam-' || v
				FROM generate_series(1, $KM) i, generate_series(1, $KINDS_VISITS) v ORDER BY i, v;"
			case "$k" in
				client_delete)
					first=$((KM + 1))
					sql="$sql INSERT INTO client (first_seen, last_seen, visit_count, gender, age, image)
						SELECT '2026-01-01', '2026-01-02', 0, 'male', 40, 'client_images/p' || n || '.jpg'
						FROM generate_series(1, $KINDS_POOL) n;" ;;
				client_visit_delete)
					first=$((KM * KINDS_VISITS + 1))
					sql="$sql INSERT INTO visit_history (client_id, datetime, device_id)
						SELECT 1 + n % $KM, '2026-01-02'::timestamptz + n * interval '1 second', 'cam-' || n % 4
						FROM generate_series(1, $KINDS_POOL) n;" ;;
			esac ;;
		employee_*)
			tables="employee, attendance"
			[ "$k" = employee_delete ] && { first=$((KM + 1)); employees=$((KM + KINDS_POOL)); }
			sql="INSERT INTO employee (first_name, last_name, email, phone_number, image, working_graphic_id)
				SELECT 'First' || i, 'Last' || i, 'e' || i || '@example.com', '+1 555 0100', 'employee_images/e' || i || '.jpg', 1
				FROM generate_series(1, $employees) i;"
			if [ "$k" = employee_attendance_delete ]; then
				first=1
				sql="$sql INSERT INTO attendance (employee_id, device_id, image, datetime, score)
					SELECT 1 + n % $KM, 'cam-' || n % 4, 'attendance_images/a' || n || '.jpg',
						'2026-01-02'::timestamptz + n * interval '1 second', 90 + n % 10
					FROM generate_series(1, $KINDS_POOL) n;"
			fi ;;
		send | send_alone) tables=bench_notes ;;
		row_create) tables=bench_orders ;;
	esac
	K_FIRST[$k]=$first
	local -a fill=()
	[ -z "$sql" ] || fill=(-c "$sql")
	psql_q -c "TRUNCATE $tables RESTART IDENTITY" -c "SET session_replication_role = replica" \
		"${fill[@]}" -c "SELECT setval('bench_kinds_victim', $((first > 0 ? first : 1)), false)" \
		-c "VACUUM ANALYZE $tables" -c "CHECKPOINT" >/dev/null
}
# kinds_left KIND: whether the last run of KIND left rows of its pool (past
# its end, a transaction would have deleted nothing)
kinds_left() {
	psql_q -c "SELECT last_value < ${K_FIRST[$1]} + $KINDS_POOL - 1 FROM bench_kinds_victim"
}
# kinds_events KIND: the events one transaction of KIND queues (ws), as
# pg_ws_pending_events() shows them before its ROLLBACK
kinds_events() {
	psql_q -v client_id=0 -c "BEGIN" -c '\o /dev/null' -f "$TMP/kind_$1.ws.sql" -c '\o' \
		-c "SELECT coalesce(string_agg(format('%s (%s bytes)', e::json->>'event', length(e)), ', '), 'none') FROM pg_ws_pending_events() e" \
		-c "ROLLBACK"
}
events_queued() { psql_q -c "SELECT events_queued FROM pg_ws_stats()"; }

set_sync on
echo "## kinds: the write path of each event kind, one event per transaction; pgbench -n -M prepared -T $KINDS_SECONDS, -c $KINDS_CLIENTS; $KINDS_ROUNDS rounds, plain and ws swapped every round; fsync=on synchronous_commit=on"
echo "# plain: the kind's table with pg_ws's trigger pg_ws_event disabled (pg_ws stays loaded); pg_ws_send: the same transaction without the call; ws: pg_ws's trigger, pg_ws.wal = on"
echo "# before every run: the kind's tables truncated and refilled without events ($KM clients with $KINDS_VISITS visits each; $KM employees; for a delete $KINDS_POOL more rows to delete), VACUUM ANALYZE, CHECKPOINT"
echo "# each kind's transaction (:client_id is pgbench's client number) and the events one of them queues (pg_ws_pending_events(), client_id 0):"
for k in $KINDS_LIST; do
	kinds_reset "$k"
	echo "  $k: ${K_SQL[$k]}"
	[ -z "${K_PLAIN[$k]:-}" ] || echo "    plain: ${K_PLAIN[$k]}"
	echo "    -> $(kinds_events "$k")"
done
declare -A KT KX KB KE
t_part=$SECONDS
for ((r = 0; r < KINDS_ROUNDS; r++)); do
	for c in $KINDS_CLIENTS; do
		for k in $KINDS_LIST; do
			for v in $(rotated "$r" plain ws); do
				kinds_reset "$k"
				[ -z "${K_TABLE[$k]}" ] || set_triggers "$v" "${K_TABLE[$k]}"
				e0=$(events_queued)
				one_run "$v" "$c" "$TMP/kind_$k.$v.sql" "$KINDS_SECONDS"
				epx=$(awk -v a="$e0" -v b="$(events_queued)" -v n="$RUN_NTX" 'BEGIN {printf "%.3f", (b - a) / n}')
				if [[ "$k" == *_delete ]] && [ "$(kinds_left "$k")" != t ]; then
					echo "run_bench.sh: $k, $v, -c $c: $RUN_NTX transactions used up the pool of $KINDS_POOL rows: raise BENCH_KINDS_POOL" >&2
					exit 1
				fi
				KT[$k,$c,$v]="${KT[$k,$c,$v]:-} $RUN_TPS"
				KX[$k,$c,$v]="${KX[$k,$c,$v]:-} $RUN_CPX"
				KB[$k,$v]="${KB[$k,$v]:-} $RUN_BPX"
				KE[$k,$v]="${KE[$k,$v]:-} $epx"
				printf '  round %d  -c %d  %-26s  %-5s  tps %7.0f  failed %s  WAL %5s B/tx  server CPU %6s us/tx  events/tx %s\n' \
					$((r + 1)) "$c" "$k" "$v" "$RUN_TPS" "${RUN_FAILED:-0}" "$RUN_BPX" "$RUN_CPX" "$epx"
			done
		done
	done
done
echo "# kinds: $((SECONDS - t_part)) s"
echo
echo "tps ws / plain: per round (a round's two runs are adjacent), median [min..max] over the $KINDS_ROUNDS rounds; WAL bytes/tx: median of all runs of the variant, every client count; events/tx: pg_ws_stats().events_queued over the run / pgbench's transactions, median of ws and largest of plain."
echo
C1=${KINDS_CLIENTS%% *}
hdr="| kind | events/tx ws; plain |"
sep="|---|---|"
for c in $KINDS_CLIENTS; do
	hdr="$hdr tps ws / plain, -c $c |"
	sep="$sep---|"
done
echo "$hdr median tps plain, -c ${KINDS_CLIENTS// / \/ } | WAL B/tx plain | WAL B/tx ws | server CPU/tx plain -> ws, -c $C1 |"
echo "$sep--:|--:|--:|---|"
slow=""
for k in $KINDS_LIST; do
	# shellcheck disable=SC2086
	line="| $k | $(printf '%.3f' "$(median ${KE[$k,ws]})"); $(printf '%s\n' ${KE[$k,plain]} | sort -g | tail -1) |"
	plain_tps=""
	for c in $KINDS_CLIENTS; do
		line="$line $(ratio_summary "${KT[$k,$c,ws]}" "${KT[$k,$c,plain]}") |"
		# shellcheck disable=SC2086
		plain_tps="$plain_tps${plain_tps:+ / }$(printf '%.0f' "$(median ${KT[$k,$c,plain]})")"
		target=$(tps_target "$c")
		if [ -n "$target" ] && awk -v m="$(ratio_median "${KT[$k,$c,ws]}" "${KT[$k,$c,plain]}")" -v t="$target" 'BEGIN {exit !(m < t)}'; then
			slow="$slow $k (-c $c)"
		fi
	done
	# shellcheck disable=SC2086
	printf '%s %s | %.0f | %.0f | %.1f -> %.1f us |\n' "$line" "$plain_tps" \
		"$(median ${KB[$k,plain]})" "$(median ${KB[$k,ws]})" \
		"$(median ${KX[$k,$C1,plain]})" "$(median ${KX[$k,$C1,ws]})"
done
echo
echo "- below issue 20's one-row targets (ws / plain >= 0.95 at -c 1, >= 0.90 at -c 8, medians):${slow:- none}"
echo
# the main cluster as the other parts expect it: every trigger enabled,
# client 1 alone, no visit, no employee
for t in client visit_history employee attendance; do
	set_triggers ws "$t"
done
psql_q -c "DROP TABLE bench_orders, bench_notes" -c "DROP SEQUENCE bench_kinds_victim" \
	-c "TRUNCATE client, visit_history, employee, attendance RESTART IDENTITY" \
	-c "SET session_replication_role = replica" -c "INSERT INTO client (id, visit_count) VALUES (1, 0)" >/dev/null
set_sync off
fi

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

if has_part broadcast; then

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
fi

# ---------------------------------------------------------------- burst

if has_part burst; then

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
fi

# ---------------------------------------------------------------- compression

if has_part compression; then

make -s -C "$HERE" ws_fast >/dev/null
echo "## compression: $CM_SUBS subscribers with permessage-deflate (ws_fast --deflate) and without, pg_ws.compression = on, $CM_ROUNDS rounds alternated; single events: one transaction of $CM_EVENTS visit_history inserts; client_update: one transaction of $CM_UPDATES updates of a client with $UPDATE_VISITS visits"
psql_q -c "ALTER SYSTEM SET pg_ws.compression = on" -c "SELECT pg_reload_conf()" >/dev/null
psql_q -c "TRUNCATE client CASCADE" \
	-c "INSERT INTO client (id, first_seen, last_seen, visit_count, gender, age, image)
		VALUES (7, now(), now(), 0, 'female', 40, 'client_images/7.jpg')" \
	-c "INSERT INTO visit_history (client_id, datetime, device_id)
		SELECT 7, now() - v * interval '1 minute', 'device-' || v FROM generate_series(1, $UPDATE_VISITS) v"
sleep 1
declare -A CM_CPU CM_WIRE CM_BYTES CM_OK
for ((r = 0; r < CM_ROUNDS; r++)); do
	for load in single update; do
		for k in 0 1; do
			if (((k + r) % 2 == 0)); then v=plain; else v=deflate; fi
			opt=()
			[ "$v" = deflate ] && opt=(--deflate)
			if [ "$load" = single ]; then n_ev=$CM_EVENTS; else n_ev=$CM_UPDATES; fi
			rm -f "$TMP/cm_ready"
			"$HERE/ws_fast" -H 127.0.0.1 -p "$WSPORT" -n "$CM_SUBS" -j "$SUB_PROCS" -r "$TMP/cm_ready" \
				"${opt[@]}" --path "/ws/?events=$([ "$load" = single ] && echo client_visit_create || echo client_update)" \
				-e "$n_ev" -q -t 120 >"$TMP/cm.out" 2>"$TMP/cm.err" &
			SUB_PID=$!
			for ((i = 0; i < 200; i++)); do [ -f "$TMP/cm_ready" ] && break; sleep 0.1; done
			sleep 0.5
			w0=$(cpu_ticks "$WORKER_PID")
			if [ "$load" = single ]; then
				psql_q -c "INSERT INTO visit_history (client_id, device_id)
					SELECT 7, 'single' FROM generate_series(1, $n_ev)" \
					-c "DELETE FROM visit_history WHERE device_id = 'single'"
			else
				psql_q -c "DO \$\$ BEGIN FOR i IN 1..$n_ev LOOP
					UPDATE client SET visit_count = visit_count + 1 WHERE id = 7; END LOOP; END \$\$"
			fi
			rc=0
			wait "$SUB_PID" || rc=$?
			SUB_PID=""
			w1=$(cpu_ticks "$WORKER_PID")
			res=$(grep '^RESULT' "$TMP/cm.out" || true)
			msgs=$(field "$res" msgs)
			ok=yes
			[ "$rc" = 0 ] && [ "$msgs" = $((n_ev * CM_SUBS)) ] && [ "$(field "$res" bad)" = 0 ] || ok="NO (rc $rc)"
			[ "$v" = plain ] || [ "$(field "$res" deflated)" = "$CM_SUBS" ] || ok="NO (not negotiated)"
			cpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v m="$msgs" 'BEGIN {printf "%.3f", (b - a) / t * 1e6 / m}')
			wire=$(awk -v w="$(field "$res" wire_bytes)" -v m="$msgs" 'BEGIN {printf "%.0f", w / m}')
			bytes=$(awk -v w="$(field "$res" bytes)" -v m="$msgs" 'BEGIN {printf "%.0f", w / m}')
			CM_CPU[$load,$v]="${CM_CPU[$load,$v]:-} $cpu"
			CM_WIRE[$load,$v]="${CM_WIRE[$load,$v]:-} $wire"
			CM_BYTES[$load,$v]="${CM_BYTES[$load,$v]:-} $bytes"
			[ "$ok" = yes ] || CM_OK[$load,$v]="$ok"
			printf '  round %d  %-6s %-7s  %s msgs %-3s  worker %s us/msg  wire %s B/msg (messages %s B, %s compressed)\n' \
				$((r + 1)) "$load" "$v" "$msgs" "$ok" "$cpu" "$wire" "$bytes" "$(field "$res" compressed)"
			[ "$ok" = yes ] || sed 's/^/    client: /' "$TMP/cm.err" | head -5
		done
	done
done
psql_q -c "ALTER SYSTEM RESET pg_ws.compression" -c "SELECT pg_reload_conf()" >/dev/null
echo
echo "Medians. worker: utime+stime of the pg_ws worker from the transaction's commit to the last delivery, per delivered message; wire: bytes read off the sockets per message (frames, with the handshake's few hundred bytes per subscriber); messages: the JSON's bytes."
echo
echo "| events | subscribers | compression | messages (B) | on the wire (B/msg) | wire vs plain | worker us/msg | worker vs plain | all delivered |"
echo "|---|--:|---|--:|--:|--:|--:|--:|---|"
for load in single update; do
	for v in plain deflate; do
		printf '| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n' \
			"$([ "$load" = single ] && echo "visit_history insert" || echo "client_update, $UPDATE_VISITS visits")" \
			"$CM_SUBS" "$([ "$v" = plain ] && echo off || echo "permessage-deflate")" \
			"$(median ${CM_BYTES[$load,$v]})" "$(median ${CM_WIRE[$load,$v]})" \
			"$(awk -v a="$(median ${CM_WIRE[$load,$v]})" -v b="$(median ${CM_WIRE[$load,plain]})" 'BEGIN {printf "%.3f", a / b}')" \
			"$(median ${CM_CPU[$load,$v]})" \
			"$(awk -v a="$(median ${CM_CPU[$load,$v]})" -v b="$(median ${CM_CPU[$load,plain]})" 'BEGIN {printf "%.2f", a / b}')" \
			"${CM_OK[$load,$v]:-yes}"
	done
done
echo
fi

# ---------------------------------------------------------------- resume

if has_part resume; then
echo "## resume: replay $RESUME_EVENTS events (transactions of $RESUME_BATCH rows) to one subscriber with ?since=&epoch=, $RESUME_ROUNDS rounds"
echo "# main cluster (pg_ws.wal = on, fsync=off synchronous_commit=off); memory: pg_ws.history_size = $RESUME_BIG_HISTORY; wal: pg_ws.history_size = $RESUME_SMALL_HISTORY"
declare -A R_SEC R_RATE R_WCPU R_READ R_SCPU R_OK
R_VARIANTS=(memory wal)
declare -A R_HIST=([memory]=$RESUME_BIG_HISTORY [wal]=$RESUME_SMALL_HISTORY)
ntx=$((RESUME_EVENTS / RESUME_BATCH))
events=$((ntx * RESUME_BATCH))
for ((r = 0; r < RESUME_ROUNDS; r++)); do
	for ((k = 0; k < ${#R_VARIANTS[@]}; k++)); do
		v=${R_VARIANTS[$(((k + r) % ${#R_VARIANTS[@]}))]}
		psql_q -c "ALTER SYSTEM SET pg_ws.history_size = '${R_HIST[$v]}'" \
			-c "SELECT pg_reload_conf()" >/dev/null
		psql_q -c "TRUNCATE visit_history" -c "CHECKPOINT"
		sleep 0.5
		# a live subscriber: the MARK event's seq is where the replay starts,
		# and it has received everything (so the worker has it) before the
		# replaying subscriber connects
		run_subscribers 1 "$TMP/ready" "$TMP/live.out" -E END -q -t 600
		psql_q -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'MARK')"
		psql_q -c "DO \$\$ BEGIN FOR i IN 1..$ntx LOOP
			INSERT INTO visit_history (client_id, device_id)
				SELECT 1, 'resume' FROM generate_series(1, $RESUME_BATCH);
			COMMIT; END LOOP; END \$\$"
		psql_q -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		rc=0
		wait "$SUB_PID" || rc=$?
		SUB_PID=""
		live=$(grep '^RESULT' "$TMP/live.out" || true)
		since=$(field "$live" first_seq)
		epoch=$(field "$live" epoch)
		if [ "$rc" != 0 ] || [ "$(field "$live" msgs)" != $((events + 1)) ]; then
			echo "run_bench.sh: the live subscriber got $(field "$live" msgs) of $((events + 1)) (rc $rc)" >&2
			exit 1
		fi
		sleep 0.5
		w0=$(cpu_ticks "$WORKER_PID")
		b0=$(read_bytes "$WORKER_PID")
		rc=0
		"$WS_SUB" -H 127.0.0.1 -p "$WSPORT" -n 1 -S "$since" -x "$epoch" -E END -q -t 600 \
			>"$TMP/resume.out" 2>"$TMP/resume.err" || rc=$?
		w1=$(cpu_ticks "$WORKER_PID")
		b1=$(read_bytes "$WORKER_PID")
		res=$(grep '^RESULT' "$TMP/resume.out" || true)
		msgs=$(field "$res" msgs)
		ok=yes
		[ "$rc" = 0 ] && [ "$msgs" = "$events" ] && [ "$(field "$res" resync)" = 0 ] &&
			[ "$(field "$res" seq_backwards)" = 0 ] || ok="NO (rc $rc)"
		sec=$(field "$res" done_s)
		rate=$(awk -v n="$msgs" -v s="$sec" 'BEGIN {printf "%.0f", n / s}')
		wcpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
		rmb=$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.1f", (b - a) / 1048576}')
		R_SEC[$v]="${R_SEC[$v]:-} $sec"
		R_RATE[$v]="${R_RATE[$v]:-} $rate"
		R_WCPU[$v]="${R_WCPU[$v]:-} $wcpu"
		R_READ[$v]="${R_READ[$v]:-} $rmb"
		R_SCPU[$v]="${R_SCPU[$v]:-} $(field "$res" cpu_s)"
		[ "$ok" = yes ] || R_OK[$v]="$ok"
		printf '  round %d  %-6s  history_size %-6s  since %s  delivered %s/%s %-3s in %s s (%s events/s)  resync %s  seq not increasing %s  worker CPU %s s, read %s MB  ws_sub CPU %s s\n' \
			$((r + 1)) "$v" "${R_HIST[$v]}" "$since" "$msgs" "$events" "$ok" "$sec" "$rate" \
			"$(field "$res" resync)" "$(field "$res" seq_backwards)" "$wcpu" "$rmb" "$(field "$res" cpu_s)"
		if [ "$ok" != yes ]; then
			sed 's/^/    ws_sub: /' "$TMP/resume.err" | head -5
		fi
	done
done
psql_q -c "ALTER SYSTEM RESET pg_ws.history_size" -c "SELECT pg_reload_conf()" >/dev/null
echo
echo "seconds: from ws_sub's start (connecting included) to the END event after the last of them; worker read: rchar of the pg_ws worker (the WAL it read back). Medians."
echo
echo "| replayed from | pg_ws.history_size | events | seconds | events/s | all delivered, in order | pg_ws worker CPU | worker read | ws_sub CPU |"
echo "|---|---|--:|--:|--:|---|--:|--:|--:|"
for v in memory wal; do
	# shellcheck disable=SC2086
	printf '| %s | %s | %d | %.3f | %.0f | %s | %.2f s | %.1f MB | %.2f s |\n' "$v" "${R_HIST[$v]}" "$events" \
		"$(median ${R_SEC[$v]})" "$(median ${R_RATE[$v]})" "${R_OK[$v]:-yes}" \
		"$(median ${R_WCPU[$v]})" "$(median ${R_READ[$v]})" "$(median ${R_SCPU[$v]})"
done
echo
fi

# ---------------------------------------------------------------- storm

if has_part storm; then
echo "## storm: $ST_SUBS subscribers resume at once after the same $ST_EVENTS events (transactions of $ST_BATCH rows), from the worker's memory and from the WAL, $ST_ROUNDS rounds alternated; $ST_LIVE live subscribers at $ST_RATE events/s alone and during each storm"
ST_DATA="$TMP/data_storm"
ST_LOG="$TMP/server_storm.log"
ST_PORT=$(free_port)
ST_WSPORT=$(free_port)
CLUSTER_NOFILE=$ST_NOFILE start_cluster "$ST_DATA" "$ST_LOG" "$ST_PORT" "$ST_WSPORT" \
	"pg_ws.max_connections = $((2 * ST_SUBS + 2 * ST_LIVE + 100))
pg_ws.max_wal_resumes_per_address = 0
synchronous_commit = on"
setup_schema "$ST_PORT" >/dev/null
psql_at "$ST_PORT" -c "CREATE SEQUENCE storm_employee"
ST_WORKER=$(worker_pid "$ST_PORT")
[ -n "$ST_WORKER" ] || { echo "run_bench.sh: the storm cluster's worker is not running" >&2; tail -20 "$ST_LOG" >&2; exit 1; }
echo "# storm cluster: pg_ws.max_connections = $((2 * ST_SUBS + 2 * ST_LIVE + 100)), pg_ws.max_wal_resumes_per_address = 0, synchronous_commit = on (fsync off), under prlimit --nofile=$ST_NOFILE; memory: pg_ws.history_size = $RESUME_BIG_HISTORY; wal: pg_ws.history_size = 0; client $BENCH_CLIENT -j $CLIENT_PROCS$([ "$ST_CLIENT_IDLE" = 0 ] || echo ', the storm client under SCHED_IDLE')"
echo "# the resumed events are visit_history rows (the resumers ask for ?events=client_visit_create), the live stream employee rows stamped in first_name (?events=employee_create): each set gets exactly its own"
echo "INSERT INTO employee (id, first_name, last_name) VALUES (nextval('storm_employee'), $STAMP, 'live');" >"$TMP/storm_insert.sql"
declare -A S_SEC S_WCPU S_READ S_OK S_P99 S_P99B
read -r -a S_VARIANTS <<<"$ST_VARIANTS"
declare -A S_HIST=([memory]=$RESUME_BIG_HISTORY [wal]=0 [connect]=$RESUME_BIG_HISTORY)
ntx=$((ST_EVENTS / ST_BATCH))
st_events=$((ntx * ST_BATCH))
# st_live_start MARKER SECONDS: ST_LIVE live subscribers that stop at
# MARKER and pgbench --rate ST_RATE for SECONDS, in the background;
# st_live_end MARKER waits for pgbench, commits MARKER and waits for the
# subscribers, whose RESULT line is then in $TMP/st_live.out
st_live_start() {
	rm -f "$TMP/st_live.ready"
	"$CLIENT" -H 127.0.0.1 -p "$ST_WSPORT" -n "$ST_LIVE" -j 1 -r "$TMP/st_live.ready" \
		--path '/ws/?events=employee_create' -f first_name \
		-E "$1" -q -L -t 600 >"$TMP/st_live.out" 2>"$TMP/st_live.err" &
	ST_LIVE_PID=$!
	for ((i = 0; i < 200; i++)); do
		[ -f "$TMP/st_live.ready" ] && break
		sleep 0.1
	done
	"$PGBIN/pgbench" -n -h "$TMP" -p "$ST_PORT" -U postgres -c 1 -R "$ST_RATE" -T "$2" \
		-f "$TMP/storm_insert.sql" postgres >"$TMP/st_pgb.out" 2>&1 &
	ST_PGB_PID=$!
}
st_live_end() {
	wait "$ST_PGB_PID" || { cat "$TMP/st_pgb.out" >&2; exit 1; }
	psql_at "$ST_PORT" -c "INSERT INTO employee (id, first_name, last_name) VALUES (nextval('storm_employee'), '$1', 'live')"
	wait "$ST_LIVE_PID" || { echo "run_bench.sh: live subscribers failed" >&2; cat "$TMP/st_live.err" >&2; exit 1; }
}
for ((r = 0; r < ST_ROUNDS; r++)); do
	for ((k = 0; k < ${#S_VARIANTS[@]}; k++)); do
		v=${S_VARIANTS[$(((k + r) % ${#S_VARIANTS[@]}))]}
		psql_at "$ST_PORT" -c "ALTER SYSTEM SET pg_ws.history_size = '${S_HIST[$v]}'" \
			-c "SELECT pg_reload_conf()" >/dev/null
		psql_at "$ST_PORT" -c "SET client_min_messages = warning" -c "TRUNCATE visit_history, employee CASCADE" -c "CHECKPOINT" >/dev/null
		sleep 0.5
		# the history: MARK, the events, END; one live subscriber gives MARK's seq
		rm -f "$TMP/st_ready"
		"$CLIENT" -H 127.0.0.1 -p "$ST_WSPORT" -n 1 -r "$TMP/st_ready" -E END -q -L -t 600 \
			--path '/ws/?events=client_visit_create' \
			>"$TMP/st_mark.out" 2>&1 &
		SUB_PID=$!
		for ((i = 0; i < 200; i++)); do [ -f "$TMP/st_ready" ] && break; sleep 0.1; done
		psql_at "$ST_PORT" -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'MARK')"
		psql_at "$ST_PORT" -c "DO \$\$ BEGIN FOR i IN 1..$ntx LOOP
			INSERT INTO visit_history (client_id, device_id)
				SELECT 1, 'storm' FROM generate_series(1, $ST_BATCH);
			COMMIT; END LOOP; END \$\$"
		psql_at "$ST_PORT" -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		wait "$SUB_PID" || true
		SUB_PID=""
		mark=$(grep '^RESULT' "$TMP/st_mark.out" || true)
		since=$(field "$mark" first_seq)
		epoch=$(field "$mark" epoch)
		# the live stream alone
		st_live_start ENDA "$ST_LIVE_SECONDS"
		st_live_end ENDA
		base=$(grep '^RESULT' "$TMP/st_live.out" || true)
		# the live stream with the storm in its middle
		st_live_start ENDB "$ST_LIVE_SECONDS"
		sleep 1
		w0=$(cpu_ticks "$ST_WORKER")
		b0=$(read_bytes "$ST_WORKER")
		rc=0
		st_sched=()
		[ "$ST_CLIENT_IDLE" = 0 ] || st_sched=(chrt --idle 0)
		if [ "$v" = connect ]; then
			# the same connections without a resume: they wait for ENDC,
			# committed once all have connected
			rm -f "$TMP/st_cready"
			"${st_sched[@]}" "$CLIENT" -H 127.0.0.1 -p "$ST_WSPORT" -n "$ST_SUBS" -j "$CLIENT_PROCS" -m 50 \
				--path '/ws/?events=client_visit_create' -r "$TMP/st_cready" \
				-E ENDC -q -L -t 600 \
				>"$TMP/st_storm.out" 2>"$TMP/st_storm.err" &
			st_storm_pid=$!
			for ((i = 0; i < 600; i++)); do [ -f "$TMP/st_cready" ] && break; sleep 0.1; done
			psql_at "$ST_PORT" -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'ENDC')"
			wait "$st_storm_pid" || rc=$?
		else
			"${st_sched[@]}" "$CLIENT" -H 127.0.0.1 -p "$ST_WSPORT" -n "$ST_SUBS" -j "$CLIENT_PROCS" -m 50 \
				--path '/ws/?events=client_visit_create' \
				-S "$since" -x "$epoch" -E END -q -L -t 600 \
				>"$TMP/st_storm.out" 2>"$TMP/st_storm.err" || rc=$?
		fi
		w1=$(cpu_ticks "$ST_WORKER")
		b1=$(read_bytes "$ST_WORKER")
		st_live_end ENDB
		during=$(grep '^RESULT' "$TMP/st_live.out" || true)
		res=$(grep '^RESULT' "$TMP/st_storm.out" || true)
		ok=yes
		[ "$rc" = 0 ] && [ "$(field "$res" finished)" = "$ST_SUBS" ] &&
			[ "$(field "$res" per_sub_min)" = "$([ "$v" = connect ] && echo 0 || echo "$st_events")" ] &&
			[ "$(field "$res" per_sub_max)" = "$([ "$v" = connect ] && echo 0 || echo "$st_events")" ] &&
			[ "$(field "$res" resync)" = 0 ] && [ "$(field "$res" seq_backwards)" = 0 ] &&
			[ "$(field "$res" bad)" = 0 ] || ok="NO (rc $rc)"
		sec=$(field "$res" done_s)
		wcpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
		rmb=$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.1f", (b - a) / 1048576}')
		S_SEC[$v]="${S_SEC[$v]:-} $sec"
		S_WCPU[$v]="${S_WCPU[$v]:-} $wcpu"
		S_READ[$v]="${S_READ[$v]:-} $rmb"
		S_P99B[$v]="${S_P99B[$v]:-} $(field "$base" p99_us)"
		S_P99[$v]="${S_P99[$v]:-} $(field "$during" p99_us)"
		[ "$ok" = yes ] || S_OK[$v]="$ok"
		printf '  round %d  %-6s  %d x %d events %-3s in %s s  worker CPU %s s, read %s MB  msgs %s (per subscriber %s..%s)  live p99 %s us alone, %s us during the storm (live messages per subscriber: %s, %s)\n' \
			$((r + 1)) "$v" "$ST_SUBS" "$([ "$v" = connect ] && echo 0 || echo "$st_events")" "$ok" "$sec" "$wcpu" "$rmb" "$(field "$res" msgs)" \
			"$(field "$res" per_sub_min)" "$(field "$res" per_sub_max)" \
			"$(field "$base" p99_us)" "$(field "$during" p99_us)" \
			"$(field "$base" per_sub_min)/$(field "$base" per_sub_max)" "$(field "$during" per_sub_min)/$(field "$during" per_sub_max)"
		[ "$ok" = yes ] || sed 's/^/    client: /' "$TMP/st_storm.err" | head -5
	done
done
echo
echo "seconds: from the client's start (connecting $ST_SUBS included) to the END event after the $ST_EVENTS, in every subscriber; worker CPU: utime+stime of /proc/<worker pid>/stat over that time; worker read: its rchar (the WAL it read back, and its sockets). Live p99: commit-to-receive of $ST_LIVE subscribers at $ST_RATE events/s over ${ST_LIVE_SECONDS} s, alone and with the storm in it. Medians."
echo
echo "| resumed from | subscribers x events | seconds | worker CPU | worker read | all delivered once, in order | live p99 alone | live p99 during the storm |"
echo "|---|--:|--:|--:|--:|---|--:|--:|"
for v in "${S_VARIANTS[@]}"; do
	# shellcheck disable=SC2086
	printf '| %s | %d x %d | %.2f | %.2f s | %.1f MB | %s | %s ms | %s ms |\n' "$v" "$ST_SUBS" "$([ "$v" = connect ] && echo 0 || echo "$st_events")" \
		"$(median ${S_SEC[$v]})" "$(median ${S_WCPU[$v]})" "$(median ${S_READ[$v]})" "${S_OK[$v]:-yes}" \
		"$(ms "$(median ${S_P99B[$v]})")" "$(ms "$(median ${S_P99[$v]})")"
done
# shellcheck disable=SC2086
[ -n "${S_SEC[wal]:-}" ] && [ -n "${S_SEC[memory]:-}" ] &&
awk -v a="$(median ${S_SEC[wal]})" -v b="$(median ${S_SEC[memory]})" -v c="$(median ${S_WCPU[wal]})" -v d="$(median ${S_WCPU[memory]})" \
	'BEGIN {printf "\nWAL / memory: %.2fx the time, %.2fx the worker CPU\n\n", a / b, (d > 0 ? c / d : 0)}'
fi

# ---------------------------------------------------------------- standbys

if has_part standby; then
# two streaming standbys of the main cluster, each with its own pg_ws
# worker (it follows replay); the same subscribers and event rate served
# by the primary alone, or spread over the primary and the standbys
echo "## standbys: $STANDBY_SUBS subscribers at pgbench --rate $RATE -c $WRITER_CLIENTS for ${BCAST_SECONDS}s, on the primary alone vs spread over the primary and 2 streaming standbys, $STANDBY_ROUNDS rounds"
echo "# synchronous_commit=on on the primary for this part (fsync=off): with it off, the walsender sends WAL only when walwriter flushes it (wal_writer_delay = 200ms)"
psql_q -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
SB_PORTS=()
SB_WSPORTS=()
SB_WORKERS=()
for i in 1 2; do
	d="$TMP/standby$i"
	# a slot each: the next base backup's checkpoint must not remove WAL
	# the first standby has not streamed yet
	as_pg "$PGBIN/pg_basebackup" -R -C -S "bench_standby$i" -D "$d" \
		-d "host=$TMP port=$PGPORT user=postgres" -X stream \
		>"$TMP/basebackup$i.log" 2>&1 || { cat "$TMP/basebackup$i.log" >&2; exit 1; }
	p=$(free_port)
	wp=$(free_port)
	cat >>"$d/postgresql.conf" <<EOF
# standby $i of the benchmark cluster
port = $p
pg_ws.port = $wp
EOF
	CLUSTERS="$CLUSTERS $d"
	as_pg "$PGBIN/pg_ctl" -D "$d" -l "$TMP/standby$i.log" -w -t 60 start >/dev/null
	[ "$(psql_at "$p" -c 'SELECT pg_is_in_recovery()')" = t ] ||
		{ echo "run_bench.sh: standby $i is not in recovery" >&2; exit 1; }
	wpid=$(worker_pid "$p")
	[ -n "$wpid" ] || { echo "run_bench.sh: no pg_ws worker on standby $i" >&2; tail -20 "$TMP/standby$i.log" >&2; exit 1; }
	SB_PORTS+=("$p")
	SB_WSPORTS+=("$wp")
	SB_WORKERS+=("$wpid")
done

# percentiles of column 3 (latency) of the sample files given
sample_pct() {
	cat "$@" | awk '{print $3}' | sort -n | awk '{v[NR] = $1} END {
		if (NR == 0) { print "- - -"; exit }
		r50 = int(0.50 * NR + 0.999999); r99 = int(0.99 * NR + 0.999999);
		print v[r50], v[r99], v[NR] }'
}

declare -A S_RATE S_P50 S_P99 S_MAX S_OK S_CPU
LAYOUTS=(primary standbys)
for ((r = 0; r < STANDBY_ROUNDS; r++)); do
	for ((k = 0; k < ${#LAYOUTS[@]}; k++)); do
		lay=${LAYOUTS[$(((k + r) % ${#LAYOUTS[@]}))]}
		psql_q -c "TRUNCATE visit_history"
		if [ "$lay" = primary ]; then
			nodes=("$WSPORT")
			counts=("$STANDBY_SUBS")
			procs=3		# as many client processes as with the standbys
		else
			nodes=("$WSPORT" "${SB_WSPORTS[@]}")
			a=$((STANDBY_SUBS / 3))
			counts=($((STANDBY_SUBS - 2 * a)) "$a" "$a")
			procs=1
		fi
		pids=()
		rm -f "$TMP"/samples*
		for ((i = 0; i < ${#nodes[@]}; i++)); do
			rm -f "$TMP/ready$i" "$TMP/samples$i"
			"$WS_SUB" -H 127.0.0.1 -p "${nodes[$i]}" -n "${counts[$i]}" -j "$procs" -r "$TMP/ready$i" \
				-s "$TMP/samples$i" -E END -q -t $((BCAST_SECONDS + 60)) \
				>"$TMP/sb_sub$i.out" 2>"$TMP/sb_sub$i.err" &
			pids+=($!)
		done
		SUB_PID="${pids[*]}"
		for ((i = 0; i < ${#nodes[@]}; i++)); do
			for ((t = 0; t < 200; t++)); do
				[ -f "$TMP/ready$i" ] && break
				sleep 0.1
			done
			[ -f "$TMP/ready$i" ] || { echo "run_bench.sh: subscribers on node $i did not connect" >&2; cat "$TMP/sb_sub$i.err" >&2; exit 1; }
		done
		sleep 0.5
		c0=0
		for pid in "$WORKER_PID" "${SB_WORKERS[@]}"; do c0=$((c0 + $(cpu_ticks "$pid"))); done
		run_pgbench "$TMP/pgbench.out" -c "$WRITER_CLIENTS" -j "$WRITER_CLIENTS" \
			-R "$RATE" -T "$BCAST_SECONDS" -f "$TMP/insert_ws.sql"
		c1=0
		for pid in "$WORKER_PID" "${SB_WORKERS[@]}"; do c1=$((c1 + $(cpu_ticks "$pid"))); done
		psql_q -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		ok=yes
		for pid in "${pids[@]}"; do
			wait "$pid" || ok="NO"
		done
		SUB_PID=""
		rows=$(psql_q -c "SELECT count(*) FROM visit_history WHERE device_id <> 'END'")
		msgs=0
		rate=0
		per=""
		for ((i = 0; i < ${#nodes[@]}; i++)); do
			res=$(grep '^RESULT' "$TMP/sb_sub$i.out" || true)
			msgs=$((msgs + $(field "$res" msgs)))
			rate=$((rate + $(field "$res" msgs_per_s)))
			per="$per node$i p50/p99 $(field "$res" p50_us)/$(field "$res" p99_us) us;"
		done
		[ "$msgs" = $((rows * STANDBY_SUBS)) ] || ok="NO"
		read -r p50 p99 pmax <<<"$(sample_pct "$TMP"/samples*)"
		wcpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v d="$BCAST_SECONDS" \
			'BEGIN {printf "%.0f", (b - a) / t / d * 100}')
		S_RATE[$lay]="${S_RATE[$lay]:-} $rate"
		S_P50[$lay]="${S_P50[$lay]:-} $p50"
		S_P99[$lay]="${S_P99[$lay]:-} $p99"
		S_MAX[$lay]="${S_MAX[$lay]:-} $pmax"
		S_CPU[$lay]="${S_CPU[$lay]:-} $wcpu"
		[ "$ok" = yes ] || S_OK[$lay]="$ok"
		printf '  round %d  %-8s  subs %s  events %d  delivered %d/%d %-3s  %d msgs/s  p50 %s us  p99 %s us  max %s us  (%s)  pg_ws workers CPU %s%%\n' \
			$((r + 1)) "$lay" "${counts[*]}" "$rows" "$msgs" $((rows * STANDBY_SUBS)) "$ok" "$rate" \
			"$p50" "$p99" "$pmax" "${per% ;}" "$wcpu"
	done
done
psql_q -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null
echo
echo "Medians over the rounds; latency = subscriber receive time - clock_timestamp() in the INSERT on the primary, over all deliveries of all nodes; CPU: the pg_ws workers of all nodes, % of one CPU."
echo
echo "| layout | subscribers (primary, standby 1, standby 2) | delivered msgs/s | p50 latency | p99 latency | max latency | all delivered | pg_ws workers CPU |"
echo "|---|---|--:|--:|--:|--:|---|--:|"
a=$((STANDBY_SUBS / 3))
for lay in primary standbys; do
	if [ "$lay" = primary ]; then lc="$STANDBY_SUBS, -, -"; else lc="$((STANDBY_SUBS - 2 * a)), $a, $a"; fi
	# shellcheck disable=SC2086
	printf '| %s | %s | %.0f | %.0f us | %.0f us | %.0f us | %s | %s%% |\n' "$lay" "$lc" \
		"$(median ${S_RATE[$lay]})" "$(median ${S_P50[$lay]})" "$(median ${S_P99[$lay]})" \
		"$(median ${S_MAX[$lay]})" "${S_OK[$lay]:-yes}" "$(median ${S_CPU[$lay]})"
done
echo
fi

# ---------------------------------------------------------------- wake-ups

if has_part wakeup; then

echo "## wake-ups: pgbench -c 8 one INSERT per transaction, ${WAKEUP_SECONDS}s each: as fast as it goes, and --rate 20000; no subscriber, then one (ws_sub --lean)"
echo "# commits per wake-up = committed transactions / the worker's poll()/epoll_wait() calls (perf stat); eventfd reads = wake-ups by commits; worker CPU from /proc"
echo
echo "| subscribers | load | tps | worker wake-ups/s | commits per wake-up | eventfd reads/s | commits per eventfd read | worker CPU |"
echo "|--:|---|--:|--:|--:|--:|--:|--:|"
for subs in 0 1; do
for mode in max 20000; do
	reset_tables
	if [ "$subs" -gt 0 ]; then
		run_subscribers "$subs" "$TMP/ready" "$TMP/sub.out" --lean -q -t $((WAKEUP_SECONDS + 60))
		sleep 0.5
	fi
	rate=()
	[ "$mode" != max ] && rate=(-R "$mode")
	if command -v perf >/dev/null 2>&1; then
		perf stat -x, -e syscalls:sys_enter_poll,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_read \
			-p "$WORKER_PID" -o "$TMP/perfstat_wakeup.txt" -- sleep "$WAKEUP_SECONDS" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	w0=$(cpu_ticks "$WORKER_PID")
	run_pgbench "$TMP/pgbench.out" -c 8 -j "$NPROC" "${rate[@]}" -T "$WAKEUP_SECONDS" \
		-f "$TMP/insert_ws.sql"
	w1=$(cpu_ticks "$WORKER_PID")
	[ -n "${perf_pid:-}" ] && { wait "$perf_pid" 2>/dev/null || true; }
	if [ "$subs" -gt 0 ]; then
		kill -TERM "$SUB_PID" 2>/dev/null || true
		wait "$SUB_PID" 2>/dev/null || true
		SUB_PID=""
	fi
	ntx=$(awk '/number of transactions actually processed/ {print $6; exit}' "$TMP/pgbench.out")
	tps=$(awk '/^tps = / {printf "%.0f", $3; exit}' "$TMP/pgbench.out")
	polls=$(awk -F, '/sys_enter_poll|sys_enter_epoll_wait/ {n += $1} END {print n + 0}' "$TMP/perfstat_wakeup.txt" 2>/dev/null || echo 0)
	reads=$(awk -F, '/sys_enter_read/ {print $1 + 0}' "$TMP/perfstat_wakeup.txt" 2>/dev/null || echo 0)
	cpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v d="$WAKEUP_SECONDS" 'BEGIN {printf "%.1f", (b - a) / t / d * 100}')
	printf '| %s | %s | %s | %.0f | %s | %.0f | %s | %s%% |\n' "$subs" \
		"$([ "$mode" = max ] && echo "as fast as it goes" || echo "--rate $mode")" \
		"$tps" "$(awk -v p="$polls" -v d="$WAKEUP_SECONDS" 'BEGIN {print p / d}')" \
		"$(awk -v n="$ntx" -v p="$polls" 'BEGIN {if (p > 0) printf "%.1f", n / p; else print "n/a (no perf)"}')" \
		"$(awk -v r="$reads" -v d="$WAKEUP_SECONDS" 'BEGIN {print r / d}')" \
		"$(awk -v n="$ntx" -v r="$reads" 'BEGIN {if (r > 0) printf "%.1f", n / r; else print "n/a"}')" "$cpu"
done
done
echo
fi

# ---------------------------------------------------------------- scale

if has_part scale; then
# idle subscribers by the thousand on clusters of their own, ws:// and then
# wss://, whose postmaster (hence the worker) runs with a high limit on open
# files; the worker raises its soft limit to what pg_ws.max_connections needs
SC_MAXCONN=$((SCALE_SUBS + 200))
if ! prlimit --nofile="$SCALE_NOFILE:$SCALE_NOFILE" true 2>/dev/null; then
	echo "run_bench.sh: scale needs a limit of $SCALE_NOFILE open files (BENCH_SCALE_NOFILE) for the worker; this shell's hard limit is $(ulimit -Hn), and raising it needs CAP_SYS_RESOURCE (root outside a container that drops it): lower BENCH_SCALE_SUBS to $(($(ulimit -Hn) - 1000)) or less" >&2
	exit 1
fi
SC_SIZES="$SCALE_SMALL $SCALE_SUBS"
[ "$SCALE_SMALL" -ge "$SCALE_SUBS" ] && SC_SIZES=$SCALE_SUBS
LEAN_OPT=()
[ "$SCALE_LEAN" = 1 ] && LEAN_OPT=(--lean)
[ "$SCALE_SOURCES" -gt 1 ] && LEAN_OPT+=(--sources "$SCALE_SOURCES")
HAVE_PERF=0
[ "$SCALE_PERF" = 1 ] && command -v perf >/dev/null 2>&1 && HAVE_PERF=1

# worker_memory_bytes connections subscribers culled of pg_ws_stats(), as
# the worker last published them (once a second); culled: subscribers
# dropped for falling too far behind
sc_stats() {
	psql_at "$SC_PORT" -F ' ' -c "SELECT worker_memory_bytes, connections, subscribers, coalesce((drops->>'lagging')::bigint, 0) FROM pg_ws_stats()"
}
# wait (up to $2 s) until the worker has published $1 connections
sc_wait_conns() {
	local want=$1 i st
	for ((i = 0; i < $2 * 10; i++)); do
		st=$(sc_stats)
		[ "$(echo "$st" | cut -d' ' -f2)" = "$want" ] && { sleep 1.1; return 0; }
		sleep 0.1
	done
	echo "  (the worker still reports $(echo "$st" | cut -d' ' -f2) connections, not $want)"
	return 1
}
rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# the kernel's TCP buffers, host-wide, in kB (/proc/net/sockstat's pages)
tcp_mem_kb() { awk -v pg="$(getconf PAGESIZE)" '$1 == "TCP:" {for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) * pg / 1024}' /proc/net/sockstat; }
# log lines of the scale cluster since line $1, minus noise
sc_log_since() { tail -n +"$(($1 + 1))" "$SC_LOG" | grep -v 'checkpoint\|statement:' || true; }
us_ms() { awk -v x="$1" 'BEGIN {printf "%.1f", x / 1000}'; }

declare -A C_CONN C_M0 C_M1 C_R1 C_R0 C_K0 C_K1 C_IDLE C_CPU C_OK C_P50 C_P99 C_MAX C_L99 C_LMAX C_CULL C_SCPU C_ROWS C_MSGS C_PERF
SC_DONE=""
for tr in $SCALE_TRANSPORTS; do
	TLS_OPT=()
	if [ "$tr" = wss ]; then
		"$CLIENT" --help 2>&1 | grep -q -- '--tls' || { echo "## scale, wss: skipped ($BENCH_CLIENT has no --tls)"; continue; }
		TLS_OPT=(--tls)
	fi
	SC_DATA="$TMP/data_scale_$tr"
	SC_LOG="$TMP/server_scale_$tr.log"
	SC_PORT=$(free_port)
	SC_WSPORT=$(free_port)
	# durable commits: an event goes out once its commit is flushed, which
	# with synchronous_commit = off waits for the WAL writer (200 ms)
	extra="pg_ws.max_connections = $SC_MAXCONN
fsync = on
synchronous_commit = on"
	[ -n "$SCALE_PING_INTERVAL" ] && extra="$extra
pg_ws.ping_interval = '$SCALE_PING_INTERVAL'"
	[ "$tr" = wss ] && extra="$extra
$(tls_settings)"
	CLUSTER_NOFILE=$SCALE_NOFILE start_cluster "$SC_DATA" "$SC_LOG" "$SC_PORT" "$SC_WSPORT" "$extra"
	setup_schema "$SC_PORT" >/dev/null
	SC_WORKER=$(worker_pid "$SC_PORT")
	[ -n "$SC_WORKER" ] || { echo "run_bench.sh: the pg_ws worker of the $tr scale cluster is not running" >&2; tail -20 "$SC_LOG" >&2; exit 1; }

	echo "## scale, $tr: $SC_SIZES idle subscribers ($BENCH_CLIENT -j $SCALE_PROCS ${LEAN_OPT[*]} ${TLS_OPT[*]}, --max-pending $SCALE_PENDING), then pgbench --rate $SCALE_RATE -c 1 for ${SCALE_SECONDS}s to all of them"
	echo "# a cluster of its own: pg_ws.max_connections = $SC_MAXCONN, pg_ws.ping_interval = ${SCALE_PING_INTERVAL:-30s (default)}, postmaster and the client under prlimit --nofile=$SCALE_NOFILE; worker limits: $(awk '/Max open files/ {print "soft " $4 ", hard " $5}' "/proc/$SC_WORKER/limits")$([ "$tr" = wss ] && echo "; self-signed P-256 certificate")"

	for n in $SC_SIZES; do
		k="$tr $n"
		psql_at "$SC_PORT" -c "TRUNCATE visit_history"
		sc_wait_conns 0 30 || true
		read -r m0 _ _ cull0 <<<"$(sc_stats)"
		r0=$(rss_kb "$SC_WORKER" VmRSS)
		k0=$(tcp_mem_kb)
		logl=$(wc -l <"$SC_LOG")
		rm -f "$TMP/sc_ready"
		ovf0=$(nstat -az TcpExtListenOverflows 2>/dev/null | awk '$1 == "TcpExtListenOverflows" {print $2}' || true)
		prlimit --nofile="$SCALE_NOFILE:$SCALE_NOFILE" "$CLIENT" -H 127.0.0.1 -p "$SC_WSPORT" -n "$n" \
			-j "$SCALE_PROCS" -m "$SCALE_PENDING" "${LEAN_OPT[@]}" "${TLS_OPT[@]}" -r "$TMP/sc_ready" -E END -q \
			-t $((SCALE_SECONDS + SCALE_IDLE_SECONDS + 300)) >"$TMP/sc_sub.out" 2>"$TMP/sc_sub.err" &
		SUB_PID=$!
		for ((i = 0; i < 1200; i++)); do		# up to 120 s
			[ -f "$TMP/sc_ready" ] && [ -s "$TMP/sc_ready" ] && break
			kill -0 "$SUB_PID" 2>/dev/null || break
			sleep 0.1
		done
		if [ ! -s "$TMP/sc_ready" ]; then
			echo "run_bench.sh: $n subscribers did not connect in 120 s" >&2
			head -20 "$TMP/sc_sub.err" >&2
			sc_log_since "$logl" | head -20 >&2
			exit 1
		fi
		conn_s=$(awk '{print $2}' "$TMP/sc_ready")
		ovf1=$(nstat -az TcpExtListenOverflows 2>/dev/null | awk '$1 == "TcpExtListenOverflows" {print $2}' || true)
		ovf="?"
		[ -n "$ovf0" ] && [ -n "$ovf1" ] && ovf=$((ovf1 - ovf0))
		sc_wait_conns "$n" 30 || true
		read -r m1 conns subsc _ <<<"$(sc_stats)"
		r1=$(rss_kb "$SC_WORKER" VmRSS)
		k1=$(tcp_mem_kb)
		# idle: subscribers connected, no events
		idle_perf=""
		if [ "$HAVE_PERF" = 1 ]; then
			perf record -q -g -F 999 -p "$SC_WORKER" -o "$TMP/perf_idle.data" -- sleep "$SCALE_IDLE_SECONDS" \
				>/dev/null 2>&1 &
			idle_perf=$!
		fi
		w0=$(cpu_ticks "$SC_WORKER")
		sleep "$SCALE_IDLE_SECONDS"
		w1=$(cpu_ticks "$SC_WORKER")
		for p in $idle_perf; do wait "$p" 2>/dev/null || true; done
		idle=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v d="$SCALE_IDLE_SECONDS" 'BEGIN {printf "%.1f", (b - a) / t / d * 100}')
		# the stream
		perf_pid=""
		if [ "$HAVE_PERF" = 1 ]; then
			perf record -q -g -F 499 -p "$SC_WORKER" -o "$TMP/perf.data" -- sleep "$SCALE_SECONDS" \
				>/dev/null 2>&1 &
			perf_pid=$!
		fi
		w0=$(cpu_ticks "$SC_WORKER")
		PGB_PORT=$SC_PORT run_pgbench "$TMP/pgbench.out" -c 1 -j 1 -R "$SCALE_RATE" \
			-T "$SCALE_SECONDS" -f "$TMP/insert_ws.sql"
		w1=$(cpu_ticks "$SC_WORKER")
		psql_at "$SC_PORT" -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		for p in $perf_pid; do wait "$p" 2>/dev/null || true; done
		rc=0
		wait "$SUB_PID" || rc=$?
		SUB_PID=""
		res=$(grep '^RESULT' "$TMP/sc_sub.out" || true)
		rows=$(psql_at "$SC_PORT" -c "SELECT count(*) FROM visit_history WHERE device_id <> 'END'")
		msgs=$(field "$res" msgs)
		sleep 1.1						# pg_ws_stats is published once a second
		read -r _ _ _ cull1 <<<"$(sc_stats)"
		ok=yes
		[ "$rc" = 0 ] && [ "$msgs" = $((rows * n)) ] || ok="NO (rc $rc)"
		cpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" -v d="$SCALE_SECONDS" 'BEGIN {printf "%.1f", (b - a) / t / d * 100}')
		C_CONN[$k]=$conn_s; C_M0[$k]=$m0; C_M1[$k]=$m1; C_R0[$k]=$r0; C_R1[$k]=$r1; C_K0[$k]=$k0; C_K1[$k]=$k1
		C_IDLE[$k]=$idle; C_CPU[$k]=$cpu; C_OK[$k]=$ok; C_ROWS[$k]=$rows; C_MSGS[$k]=$msgs; C_CULL[$k]=$((cull1 - cull0))
		C_P50[$k]=$(field "$res" p50_us); C_P99[$k]=$(field "$res" p99_us); C_MAX[$k]=$(field "$res" max_us)
		C_L99[$k]=$(field "$res" last_p99_us); C_LMAX[$k]=$(field "$res" last_max_us)
		C_SCPU[$k]=$(field "$res" cpu_s)
		SC_DONE="$SC_DONE $tr:$n"
		printf '  %s %6d  connected in %s s (%.0f/s; listen queue overflows %s, host-wide)  worker reports %s connections, %s subscribers  worker_memory_bytes %s -> %s (%.0f B/conn)  VmRSS %s -> %s kB (%.1f kB/conn)  kernel TCP memory %s -> %s kB (host-wide)\n' \
			"$tr" "$n" "$conn_s" "$(awk -v n="$n" -v s="$conn_s" 'BEGIN {print n / s}')" "$ovf" "$conns" "$subsc" "$m0" "$m1" \
			"$(awk -v a="$m0" -v b="$m1" -v n="$n" 'BEGIN {print (b - a) / n}')" "$r0" "$r1" \
			"$(awk -v a="$r0" -v b="$r1" -v n="$n" 'BEGIN {print (b - a) / n}')" "$k0" "$k1"
		printf '  %s %6d  idle worker CPU %s%%  stream: events %d (%.0f/s)  delivered %s/%s %-3s culled %s  p50 %s us  p99 %s us  max %s us  each event to its last subscriber: p99 %s us, max %s us  worker CPU %s%%  client CPU %s s\n' \
			"$tr" "$n" "$idle" "$rows" "$(awk -v x="$rows" -v d="$SCALE_SECONDS" 'BEGIN {print x / d}')" "$msgs" $((rows * n)) "$ok" \
			"${C_CULL[$k]}" "${C_P50[$k]}" "${C_P99[$k]}" "${C_MAX[$k]}" "${C_L99[$k]}" "${C_LMAX[$k]}" "$cpu" "${C_SCPU[$k]}"
		if [ "$ok" != yes ] || [ -s "$TMP/sc_sub.err" ]; then
			sort "$TMP/sc_sub.err" | sed 's/subscriber [0-9]*/subscriber N/' | uniq -c | sort -rn | awk 'n++ < 5 {print "    client: " $0}' || true
		fi
		sc_log_since "$logl" | sed 's/^[^]]*\] //' | sort | uniq -c | sort -rn | awk 'n++ < 8 {print "    server log: " $0}' || true
		if [ "$HAVE_PERF" = 1 ] && [ -f "$TMP/perf_idle.data" ]; then
			echo "    perf (worker, ${SCALE_IDLE_SECONDS}s idle, top symbols; samples at 999 Hz: $(perf report -i "$TMP/perf_idle.data" --stdio 2>/dev/null | awk '/^# Samples/ {print $3; exit}')):"
			perf report -i "$TMP/perf_idle.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
				awk '!/^#/ && NF && n++ < 12 {print "      " $0}' || true
			rm -f "$TMP/perf_idle.data"
		fi
		if [ "$HAVE_PERF" = 1 ] && [ -f "$TMP/perf.data" ]; then
			echo "    perf (worker, ${SCALE_SECONDS}s of the stream, top symbols):"
			perf report -i "$TMP/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
				awk '!/^#/ && NF && n++ < 12 {print "      " $0}' || true
			rm -f "$TMP/perf.data"
		fi
	done
	# its descriptors and memory back before the next transport's cluster
	as_pg "$PGBIN/pg_ctl" -D "$SC_DATA" -m fast -w stop >/dev/null
done

echo
echo "connect: from the client's start until every subscriber had its WebSocket handshake done; memory: the worker's worker_memory_bytes (malloc in use, pg_ws_stats) and VmRSS before and after they connected, over the subscribers, and the kernel's TCP buffers (host-wide, both ends of loopback); idle CPU: ${SCALE_IDLE_SECONDS}s with the subscribers connected and no event, their pings and pongs included (pg_ws.ping_interval ${SCALE_PING_INTERVAL:-30s}); stream: $SCALE_RATE events/s for ${SCALE_SECONDS}s, latency = receive time - clock_timestamp() in the INSERT; last subscriber: per event, the latency of its last delivery; culled: subscribers pg_ws dropped for lagging."
echo
echo "| transport | subscribers | connect time | worker memory / conn (malloc) | VmRSS / conn | kernel TCP memory / conn | worker CPU idle | events | delivered | culled | p50 | p99 | each event to its last subscriber, p99 / max | worker CPU (stream) | client CPU ($BENCH_CLIENT) |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|"
for d in $SC_DONE; do
	tr=${d%%:*}
	n=${d#*:}
	k="$tr $n"
	printf '| %s | %d | %.2f s | %.0f B | %.1f kB | %.1f kB | %s%% | %s | %s/%s %s | %s | %s ms | %s ms | %s / %s ms | %s%% | %s s |\n' \
		"$tr" "$n" "${C_CONN[$k]}" \
		"$(awk -v a="${C_M0[$k]}" -v b="${C_M1[$k]}" -v n="$n" 'BEGIN {print (b - a) / n}')" \
		"$(awk -v a="${C_R0[$k]}" -v b="${C_R1[$k]}" -v n="$n" 'BEGIN {print (b - a) / n}')" \
		"$(awk -v a="${C_K0[$k]}" -v b="${C_K1[$k]}" -v n="$n" 'BEGIN {print (b - a) / n}')" \
		"${C_IDLE[$k]}" "${C_ROWS[$k]}" "${C_MSGS[$k]}" $((C_ROWS[$k] * n)) "${C_OK[$k]}" "${C_CULL[$k]}" \
		"$(us_ms "${C_P50[$k]}")" "$(us_ms "${C_P99[$k]}")" "$(us_ms "${C_L99[$k]}")" "$(us_ms "${C_LMAX[$k]}")" \
		"${C_CPU[$k]}" "${C_SCPU[$k]}"
done
echo
fi

# ---------------------------------------------------------------- delivery, maxrate, rows100

# The delivery parts (issue 7) run on clusters of their own, started under
# prlimit --nofile with room for DL_MAXSUBS subscribers: "ws" for all three
# parts, and "wss" (the same, with a self-signed certificate) for the wss
# rows of "delivery".  Their subscribers are BENCH_CLIENT processes.
if has_part delivery || has_part maxrate || has_part rows100 || has_part filtered; then

declare -A DLC_PORT DLC_WSPORT DLC_WORKER DLC_LOG
DL_MAXSUBS=1
for n in $DL_SUBS $MR_SUBS $R100_SUBS $(has_part filtered && echo "$FI_SUBS"); do
	[ "$n" -gt "$DL_MAXSUBS" ] && DL_MAXSUBS=$n
done
# a set still closing may overlap the next (dl_wait_idle waits for it)
DL_NOFILE=${BENCH_DELIVERY_NOFILE:-$((2 * DL_MAXSUBS + 4096))}
DL_MAXCONN=$((2 * DL_MAXSUBS + 200))
# no more than the worker's descriptors can serve
[ "$DL_MAXCONN" -gt $((DL_NOFILE - 300)) ] && DL_MAXCONN=$((DL_NOFILE - 300))
CLIENT_HAS_TLS=0
"$CLIENT" --help 2>&1 | grep -q -- '--tls' && CLIENT_HAS_TLS=1

# dl_cluster ws|wss: start that cluster unless it runs
dl_cluster() {
	local tr=$1 extra d p wp
	[ -n "${DLC_PORT[$tr]:-}" ] && return 0
	d="$TMP/data_delivery_$tr"
	p=$(free_port)
	wp=$(free_port)
	extra="pg_ws.max_connections = $DL_MAXCONN"
	[ "$tr" = wss ] && extra="$extra
$(tls_settings)"
	DLC_LOG[$tr]="$TMP/server_delivery_$tr.log"
	CLUSTER_NOFILE=$DL_NOFILE start_cluster "$d" "${DLC_LOG[$tr]}" "$p" "$wp" "$extra"
	setup_schema "$p" >/dev/null
	DLC_WORKER[$tr]=$(worker_pid "$p")
	[ -n "${DLC_WORKER[$tr]}" ] ||
		{ echo "run_bench.sh: the pg_ws worker of the $tr delivery cluster is not running" >&2; tail -20 "${DLC_LOG[$tr]}" >&2; exit 1; }
	DLC_PORT[$tr]=$p
	DLC_WSPORT[$tr]=$wp
	echo "# $tr cluster: pg_ws.max_connections = $DL_MAXCONN, postmaster and clients under prlimit --nofile=$DL_NOFILE; worker limits: $(awk '/Max open files/ {print "soft " $4 ", hard " $5}' "/proc/${DLC_WORKER[$tr]}/limits")$([ "$tr" = wss ] && echo "; self-signed P-256 certificate (pg_ws.ssl_cert_file, pg_ws.ssl_key_file)")"
}

# dl_wait_idle ws|wss: wait (up to 15 s) until the worker reports no
# connection, so that a closing set does not share the next measurement
dl_wait_idle() {
	local i c=""
	for ((i = 0; i < 150; i++)); do
		c=$(psql_at "${DLC_PORT[$1]}" -c "SELECT connections FROM pg_ws_stats()")
		[ "$c" = 0 ] && return 0
		sleep 0.1
	done
	echo "  (the $1 worker still reports $c connections)"
}

# jiffies of the whole machine: "busy idle" from /proc/stat (idle includes iowait)
host_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' /proc/stat; }
# idle_pct "BUSY0 IDLE0" "BUSY1 IDLE1": % of the machine idle in between
idle_pct() { echo "$1 $2" | awk '{b = $3 - $1; i = $4 - $2; printf "%.0f", (b + i > 0) ? i / (b + i) * 100 : 0}'; }
# nanoseconds a process has waited in the run queue (schedstat)
runq_ns() { awk '{print $2}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }

# client CPU ticks so far: the client and its -j children
client_ticks() {
	local t c
	t=$(cpu_ticks "$1")
	for c in $(pgrep -P "$1"); do
		t=$((t + $(cpu_ticks "$c")))
	done
	echo "$t"
}

# dl_clients ws|wss N PROCS OUT [options]: N BENCH_CLIENT subscribers in
# the background (SUB_PID), returning once they are all connected
dl_clients() {
	local tr=$1 n=$2 procs=$3 out=$4 i
	shift 4
	local opts=(-H 127.0.0.1 -p "${DLC_WSPORT[$tr]}" -n "$n" -j "$procs" -r "$out.ready" -q)
	[ "$tr" = wss ] && opts+=(--tls)
	[ "$CLIENT_LEAN" = 1 ] && opts+=(--lean)
	rm -f "$out.ready"
	prlimit --nofile="$DL_NOFILE:$DL_NOFILE" "$CLIENT" "${opts[@]}" "$@" >"$out" 2>"$out.err" &
	SUB_PID=$!
	for ((i = 0; i < 1200; i++)); do		# up to 120 s
		[ -s "$out.ready" ] && return 0
		kill -0 "$SUB_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "run_bench.sh: $n $tr subscribers did not connect:" >&2
	head -20 "$out.err" >&2
	exit 1
}

# dl_stream ws|wss N RATE SECONDS WRITERS PROCS: N subscribers connect,
# pgbench --rate RATE commits one stamped visit_history row per transaction
# for SECONDS, an END row follows; sets the ST_* results
dl_stream() {
	local tr=$1 n=$2 evrate=$3 secs=$4 writers=$5 procs=$6
	local port=${DLC_PORT[$tr]} w0 w1 c0 t0 t1 rc j logl wout q0 q1 h0 h1
	psql_at "$port" -c "TRUNCATE visit_history" -c "CHECKPOINT"
	dl_wait_idle "$tr"
	logl=$(wc -l <"${DLC_LOG[$tr]}")
	# enough time to drain a backlog at 100 000 deliveries/s
	dl_clients "$tr" "$n" "$procs" "$TMP/dl_sub.out" -E END \
		-t $((secs + 60 + n * evrate * secs / 100000))
	sleep 0.5
	j=$writers
	[ "$j" -gt "$NPROC" ] && j=$NPROC
	w0=$(cpu_ticks "${DLC_WORKER[$tr]}")
	q0=$(runq_ns "${DLC_WORKER[$tr]}")
	h0=$(host_jiffies)
	c0=$(client_ticks "$SUB_PID")
	t0=$(date +%s.%N)
	PGB_PORT=$port run_pgbench "$TMP/pgbench.out" -c "$writers" -j "$j" -R "$evrate" \
		-T "$secs" -f "$TMP/insert_ws.sql"
	wout=$(cat "$TMP/pgbench.out")
	psql_at "$port" -c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
	rc=0
	wait "$SUB_PID" || rc=$?
	SUB_PID=""
	t1=$(date +%s.%N)
	w1=$(cpu_ticks "${DLC_WORKER[$tr]}")
	q1=$(runq_ns "${DLC_WORKER[$tr]}")
	h1=$(host_jiffies)
	ST_RES=$(grep '^RESULT' "$TMP/dl_sub.out" || true)
	ST_RC=$rc
	ST_ROWS=$(psql_at "$port" -c "SELECT count(*) FROM visit_history WHERE device_id <> 'END'")
	ST_EXP=$((ST_ROWS * n))
	ST_MSGS=$(field "$ST_RES" msgs)
	ST_MSGS=${ST_MSGS:-0}
	ST_LOST=$((ST_EXP - ST_MSGS))
	ST_TIMEOUT=$(field "$ST_RES" timeout)
	ST_TPS=$(echo "$wout" | awk '/^tps = / {printf "%.0f", $3; exit}')
	# "rate limit schedule lag: avg 0.248 (max 6.815) ms"
	ST_LAG=$(echo "$wout" | awk '/rate limit schedule lag/ {gsub(/[()]/, ""); print $6 "/" $8; exit}')
	ST_LAGAVG=${ST_LAG%%/*}
	ST_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
	ST_WCPU=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
	ST_WPCT=$(awk -v c="$ST_WCPU" -v s="$ST_SECS" 'BEGIN {printf "%.0f", c / s * 100}')
	ST_WUS=$(awk -v c="$ST_WCPU" -v m="$ST_MSGS" 'BEGIN {if (m > 0) printf "%.2f", c / m * 1e6; else print "nan"}')
	# the client's CPU from the start of the stream (connecting excluded)
	ST_CCPU=$(awk -v a="$c0" -v c="$(field "$ST_RES" cpu_s)" -v t="$CLK_TCK" 'BEGIN {x = c - a / t; printf "%.2f", x < 0 ? 0 : x}')
	ST_CPCT=$(awk -v c="$ST_CCPU" -v s="$ST_SECS" 'BEGIN {printf "%.0f", c / s * 100}')
	ST_CUS=$(awk -v c="$ST_CCPU" -v m="$ST_MSGS" 'BEGIN {if (m > 0) printf "%.2f", c / m * 1e6; else print "nan"}')
	# how long the worker was runnable but waited for a CPU, and how idle
	# the machine was (all processes, other tenants' included)
	ST_WRUNQ=$(awk -v a="$q0" -v b="$q1" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
	ST_IDLE=$(idle_pct "$h0" "$h1")
	ST_CULLED=$(tail -n +"$((logl + 1))" "${DLC_LOG[$tr]}" | grep -c 'disconnecting a subscriber' || true)
	ST_OK=yes
	[ "$rc" = 0 ] && [ "$ST_LOST" = 0 ] || ST_OK=NO
}

# ms with one decimal from us
# pretty-print the ST_* of a run
st_line() {
	printf 'events %6d (%5.0f/s, pgbench tps %s, lag avg/max %s ms)  delivered %s/%s (lost %s%s)  %s msgs/s  p50 %s us  p99 %s us  max %s us  first p50/p99 %s/%s us  spread p50/p99 %s/%s us  worker %s CPU-s = %s%%, %s us/msg, waited for a CPU %s s  client %s CPU-s = %s%%, %s us/msg  machine idle %s%%  %ss\n' \
		"$ST_ROWS" "$(awk -v x="$ST_ROWS" -v d="$1" 'BEGIN {print x / d}')" "${ST_TPS:-?}" "${ST_LAG:-?}" \
		"$ST_MSGS" "$ST_EXP" "$ST_LOST" \
		"$([ "$ST_TIMEOUT" = 1 ] && echo ', client timed out')$([ "$ST_CULLED" != 0 ] && echo ", $ST_CULLED culled")$([ "$ST_RC" != 0 ] && echo ", client rc $ST_RC")" \
		"$(field "$ST_RES" msgs_per_s)" "$(field "$ST_RES" p50_us)" "$(field "$ST_RES" p99_us)" \
		"$(field "$ST_RES" max_us)" "$(field "$ST_RES" first_p50_us)" "$(field "$ST_RES" first_p99_us)" \
		"$(field "$ST_RES" spread_p50_us)" "$(field "$ST_RES" spread_p99_us)" \
		"$ST_WCPU" "$ST_WPCT" "$ST_WUS" "$ST_WRUNQ" "$ST_CCPU" "$ST_CPCT" "$ST_CUS" "$ST_IDLE" "$ST_SECS"
	if [ "$ST_OK" != yes ]; then
		sort "$TMP/dl_sub.out.err" | sed 's/subscriber [0-9]*/subscriber N/' | uniq -c | sort -rn |
			awk 'n++ < 3 {print "    client: " $0}' || true
	fi
}

echo "## delivery parts: client $CLIENT$([ "$CLIENT_LEAN" = 1 ] && echo ' --lean'), $([ "$CLIENT_HAS_TLS" = 1 ] && echo 'has --tls' || echo 'no --tls')"
dl_cluster ws
if has_part delivery && [[ " $DL_TRANSPORTS " == *" wss "* ]]; then
	if [ "$CLIENT_HAS_TLS" = 1 ]; then
		dl_cluster wss
	else
		echo "# $CLIENT has no --tls: the wss rows of part delivery are skipped"
	fi
fi
echo
fi

if has_part delivery; then
echo "## delivery: pgbench --rate $RATE -c $WRITER_CLIENTS for ${DL_SECONDS}s (one stamped INSERT per transaction) to $DL_SUBS subscribers ($CLIENT_PROCS client processes at most), over $DL_TRANSPORTS, $DL_ROUNDS rounds"
echo "# worker/client CPU: from pgbench's start until the client had every event (the client's connecting excluded); us/msg = CPU time / messages delivered"
DL_TR=""
for tr in $DL_TRANSPORTS; do
	[ "$tr" = wss ] && [ "$CLIENT_HAS_TLS" != 1 ] && continue
	DL_TR="$DL_TR $tr"
done
declare -A D_RATE D_P50 D_P99 D_MAX D_F50 D_F99 D_S50 D_S99 D_LOST D_EXP D_WPCT D_WUS D_CPCT D_CUS D_EPS D_RUNQ D_IDLE
for ((r = 0; r < DL_ROUNDS; r++)); do
	for n in $DL_SUBS; do
		for tr in $DL_TR; do
			procs=$CLIENT_PROCS
			[ "$procs" -gt "$n" ] && procs=$n
			dl_stream "$tr" "$n" "$RATE" "$DL_SECONDS" "$WRITER_CLIENTS" "$procs"
			D_RATE[$tr,$n]="${D_RATE[$tr,$n]:-} $(field "$ST_RES" msgs_per_s)"
			D_EPS[$tr,$n]="${D_EPS[$tr,$n]:-} $(awk -v x="$ST_ROWS" -v d="$DL_SECONDS" 'BEGIN {print x / d}')"
			D_P50[$tr,$n]="${D_P50[$tr,$n]:-} $(field "$ST_RES" p50_us)"
			D_P99[$tr,$n]="${D_P99[$tr,$n]:-} $(field "$ST_RES" p99_us)"
			D_MAX[$tr,$n]="${D_MAX[$tr,$n]:-} $(field "$ST_RES" max_us)"
			D_F50[$tr,$n]="${D_F50[$tr,$n]:-} $(field "$ST_RES" first_p50_us)"
			D_F99[$tr,$n]="${D_F99[$tr,$n]:-} $(field "$ST_RES" first_p99_us)"
			D_S50[$tr,$n]="${D_S50[$tr,$n]:-} $(field "$ST_RES" spread_p50_us)"
			D_S99[$tr,$n]="${D_S99[$tr,$n]:-} $(field "$ST_RES" spread_p99_us)"
			D_WPCT[$tr,$n]="${D_WPCT[$tr,$n]:-} $ST_WPCT"
			D_WUS[$tr,$n]="${D_WUS[$tr,$n]:-} $ST_WUS"
			D_CPCT[$tr,$n]="${D_CPCT[$tr,$n]:-} $ST_CPCT"
			D_CUS[$tr,$n]="${D_CUS[$tr,$n]:-} $ST_CUS"
			D_RUNQ[$tr,$n]="${D_RUNQ[$tr,$n]:-} $ST_WRUNQ"
			D_IDLE[$tr,$n]="${D_IDLE[$tr,$n]:-} $ST_IDLE"
			D_LOST[$tr,$n]=$((${D_LOST[$tr,$n]:-0} + ST_LOST))
			D_EXP[$tr,$n]=$((${D_EXP[$tr,$n]:-0} + ST_EXP))
			printf '  round %d  %-3s  subs %4d  ' $((r + 1)) "$tr" "$n"
			st_line "$DL_SECONDS"
		done
	done
done
echo
echo "Medians over the rounds; latency = receive time - clock_timestamp() in the INSERT; lost: expected deliveries (events x subscribers) not received, all rounds; CPU in % of one CPU ($NPROC CPUs) and per delivered message; worker run-queue wait: time the worker was runnable but not running; machine idle: all CPUs, other processes included."
echo
echo "| transport | subscribers | events/s | delivered msgs/s | p50 | p99 | max | first p50 / p99 | spread p50 / p99 | lost | pg_ws worker CPU | worker us/msg | worker run-queue wait | client CPU | client us/msg | machine idle |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for tr in $DL_TR; do
	for n in $DL_SUBS; do
		# shellcheck disable=SC2086
		printf '| %s | %d | %.0f | %.0f | %s ms | %s ms | %s ms | %s / %s ms | %s / %s ms | %s of %s | %s%% | %s | %s s | %s%% | %s | %s%% |\n' \
			"$tr" "$n" "$(median ${D_EPS[$tr,$n]})" "$(median ${D_RATE[$tr,$n]})" \
			"$(ms "$(median ${D_P50[$tr,$n]})")" "$(ms "$(median ${D_P99[$tr,$n]})")" \
			"$(ms "$(median ${D_MAX[$tr,$n]})")" \
			"$(ms "$(median ${D_F50[$tr,$n]})")" "$(ms "$(median ${D_F99[$tr,$n]})")" \
			"$(ms "$(median ${D_S50[$tr,$n]})")" "$(ms "$(median ${D_S99[$tr,$n]})")" \
			"${D_LOST[$tr,$n]}" "${D_EXP[$tr,$n]}" "$(median ${D_WPCT[$tr,$n]})" \
			"$(median ${D_WUS[$tr,$n]})" "$(median ${D_RUNQ[$tr,$n]})" \
			"$(median ${D_CPCT[$tr,$n]})" "$(median ${D_CUS[$tr,$n]})" "$(median ${D_IDLE[$tr,$n]})"
	done
done
[ "$CLIENT_HAS_TLS" = 1 ] || [[ " $DL_TRANSPORTS " != *" wss "* ]] ||
	echo "| wss | - | skipped: $CLIENT has no --tls | | | | | | | | | | | | | |"
echo
# issue 7's target: 1 000 events/s to 100 subscribers, p50 <= 0.3 ms, p99 <= 1 ms, nothing lost
for tr in $DL_TR; do
	[[ " $DL_SUBS " == *" 100 "* ]] && [ "$RATE" = 1000 ] || continue
	# shellcheck disable=SC2086
	p50=$(median ${D_P50[$tr,100]})
	# shellcheck disable=SC2086
	p99=$(median ${D_P99[$tr,100]})
	printf 'target (%s, 1 000 events/s to 100 subscribers: p50 <= 0.3 ms, p99 <= 1 ms, nothing lost): p50 %s ms, p99 %s ms, lost %s: %s\n' \
		"$tr" "$(ms "$p50")" "$(ms "$p99")" "${D_LOST[$tr,100]}" \
		"$(awk -v a="$p50" -v b="$p99" -v l="${D_LOST[$tr,100]}" 'BEGIN {print (a <= 300 && b <= 1000 && l == 0) ? "met" : "not met"}')"
done
echo
fi

if has_part maxrate; then
echo "## maxrate: single-row transactions, pgbench --rate stepped up ($MR_STEPS) -c $MR_CLIENTS for ${MR_SECONDS}s each, to $MR_SUBS subscribers (ws), $MR_ROUNDS round(s)"
echo "# a step passes when pgbench achieved >= 95% of the rate, every subscriber got every event and p99 < $MR_P99_MS ms; the sweep stops at the first step that fails"
declare -A M_BEST M_NEXT
for ((r = 0; r < MR_ROUNDS; r++)); do
	for n in $MR_SUBS; do
		procs=$CLIENT_PROCS
		[ "$procs" -gt "$n" ] && procs=$n
		best=0
		bestline="none"
		next="none: every step passed (raise BENCH_MAXRATE_STEPS)"
		for step in $MR_STEPS; do
			dl_stream ws "$n" "$step" "$MR_SECONDS" "$MR_CLIENTS" "$procs"
			p99=$(field "$ST_RES" p99_us)
			why=""
			awk -v t="$ST_TPS" -v r="$step" 'BEGIN {exit !(t < 0.95 * r)}' &&
				why="writer: $ST_TPS tps of $step (lag avg $ST_LAGAVG ms, machine idle $ST_IDLE%); "
			[ "$ST_LOST" != 0 ] && why="${why}lost $ST_LOST of $ST_EXP$([ "$ST_TIMEOUT" = 1 ] && echo ' (client timed out: still behind)')$([ "$ST_CULLED" != 0 ] && echo " ($ST_CULLED subscribers culled)"); "
			[ "$ST_RC" != 0 ] && [ "$ST_LOST" = 0 ] && why="${why}client rc $ST_RC; "
			awk -v p="${p99:--1}" -v m="$MR_P99_MS" 'BEGIN {exit !(p < 0 || p >= m * 1000)}' &&
				why="${why}delivery lag: p99 $(ms "$p99") ms (first p99 $(ms "$(field "$ST_RES" first_p99_us)"), spread p99 $(ms "$(field "$ST_RES" spread_p99_us)") ms, worker $ST_WPCT% and waited for a CPU $ST_WRUNQ s, client $ST_CPCT%, machine idle $ST_IDLE%); "
			printf '  round %d  subs %3d  rate %5d  %-4s ' $((r + 1)) "$n" "$step" "$([ -z "$why" ] && echo pass || echo FAIL)"
			st_line "$MR_SECONDS"
			if [ -n "$why" ]; then
				next="$step failed: ${why%; }"
				break
			fi
			best=$step
			bestline="$ST_TPS tps, p99 $(ms "$p99") ms, worker $ST_WPCT%, client $ST_CPCT%, machine idle $ST_IDLE%"
		done
		M_BEST[$n]="${M_BEST[$n]:-} $best"
		printf '  round %d  subs %3d  highest passing: %s (%s); next step: %s\n' $((r + 1)) "$n" "$best" "$bestline" "$next"
		M_NEXT[$n]="${M_NEXT[$n]:-}round $((r + 1)): $best ($bestline); next step: $next<br>"
	done
done
echo
echo "| subscribers | highest passing rate (median of rounds) | per round, and what failed at the next step |"
echo "|--:|--:|---|"
for n in $MR_SUBS; do
	# shellcheck disable=SC2086
	printf '| %d | %.0f events/s | %s |\n' "$n" "$(median ${M_BEST[$n]})" "${M_NEXT[$n]%<br>}"
done
echo
fi

if has_part rows100; then
R100_EVENTS=$((R100_TX * R100_ROWS))
echo "## rows100: $R100_TX transactions of $R100_ROWS rows (INSERT ... SELECT generate_series, one stamp per row) committed back to back by one session, to $R100_SUBS subscribers (ws, $R100_PROCS client processes), $R100_ROUNDS rounds"
echo "# msgs/s: the client's, first to last message received; CPU: from the first commit until the client had every event, as % of that time (the client's connecting excluded)"
declare -A H_RATE H_P50 H_P99 H_WIN H_WPCT H_WUS H_CPCT H_CUS H_LOST H_EXP H_COMMIT H_RUNQ H_IDLE
for ((r = 0; r < R100_ROUNDS; r++)); do
	for n in $R100_SUBS; do
		procs=$R100_PROCS
		[ "$procs" -gt "$n" ] && procs=$n
		psql_at "${DLC_PORT[ws]}" -c "TRUNCATE visit_history" -c "CHECKPOINT"
		dl_wait_idle ws
		logl=$(wc -l <"${DLC_LOG[ws]}")
		dl_clients ws "$n" "$procs" "$TMP/dl_sub.out" -E END -t $((60 + n * R100_EVENTS / 50000))
		sleep 0.5
		w0=$(cpu_ticks "${DLC_WORKER[ws]}")
		q0=$(runq_ns "${DLC_WORKER[ws]}")
		h0=$(host_jiffies)
		c0=$(client_ticks "$SUB_PID")
		t0=$(date +%s.%N)
		psql_at "${DLC_PORT[ws]}" -c "DO \$\$ BEGIN FOR i IN 1..$R100_TX LOOP
			INSERT INTO visit_history (client_id, device_id)
				SELECT 1, $STAMP FROM generate_series(1, $R100_ROWS);
			COMMIT; END LOOP; END \$\$" \
			-c "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'END')"
		tc=$(date +%s.%N)
		rc=0
		wait "$SUB_PID" || rc=$?
		SUB_PID=""
		t1=$(date +%s.%N)
		w1=$(cpu_ticks "${DLC_WORKER[ws]}")
		q1=$(runq_ns "${DLC_WORKER[ws]}")
		h1=$(host_jiffies)
		res=$(grep '^RESULT' "$TMP/dl_sub.out" || true)
		msgs=$(field "$res" msgs)
		msgs=${msgs:-0}
		exp=$((R100_EVENTS * n))
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
		wcpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
		ccpu=$(awk -v a="$c0" -v c="$(field "$res" cpu_s)" -v t="$CLK_TCK" 'BEGIN {x = c - a / t; printf "%.2f", x < 0 ? 0 : x}')
		culled=$(tail -n +"$((logl + 1))" "${DLC_LOG[ws]}" | grep -c 'disconnecting a subscriber' || true)
		H_RATE[$n]="${H_RATE[$n]:-} $(field "$res" msgs_per_s)"
		H_WIN[$n]="${H_WIN[$n]:-} $(field "$res" window_s)"
		H_P50[$n]="${H_P50[$n]:-} $(field "$res" p50_us)"
		H_P99[$n]="${H_P99[$n]:-} $(field "$res" p99_us)"
		H_COMMIT[$n]="${H_COMMIT[$n]:-} $(awk -v a="$t0" -v b="$tc" 'BEGIN {printf "%.2f", b - a}')"
		H_WPCT[$n]="${H_WPCT[$n]:-} $(awk -v c="$wcpu" -v s="$secs" 'BEGIN {printf "%.0f", c / s * 100}')"
		H_WUS[$n]="${H_WUS[$n]:-} $(awk -v c="$wcpu" -v m="$msgs" 'BEGIN {if (m > 0) printf "%.2f", c / m * 1e6; else print "nan"}')"
		H_CPCT[$n]="${H_CPCT[$n]:-} $(awk -v c="$ccpu" -v s="$secs" 'BEGIN {printf "%.0f", c / s * 100}')"
		H_CUS[$n]="${H_CUS[$n]:-} $(awk -v c="$ccpu" -v m="$msgs" 'BEGIN {if (m > 0) printf "%.2f", c / m * 1e6; else print "nan"}')"
		H_LOST[$n]=$((${H_LOST[$n]:-0} + exp - msgs))
		H_RUNQ[$n]="${H_RUNQ[$n]:-} $(awk -v a="$q0" -v b="$q1" 'BEGIN {printf "%.2f", (b - a) / 1e9}')"
		H_IDLE[$n]="${H_IDLE[$n]:-} $(idle_pct "$h0" "$h1")"
		H_EXP[$n]=$((${H_EXP[$n]:-0} + exp))
		printf '  round %d  subs %4d  delivered %s/%s%s%s  %s msgs/s over %s s (commits took %s s)  p50 %s us  p99 %s us  worker %s CPU-s in %s s (%s us/msg, waited for a CPU %s s)  client %s CPU-s (%s us/msg)  machine idle %s%%\n' \
			$((r + 1)) "$n" "$msgs" "$exp" "$([ "$rc" != 0 ] && echo " (client rc $rc$([ "$(field "$res" timeout)" = 1 ] && echo ', timed out'))")" \
			"$([ "$culled" != 0 ] && echo ", $culled culled")" "$(field "$res" msgs_per_s)" "$(field "$res" window_s)" \
			"$(awk -v a="$t0" -v b="$tc" 'BEGIN {printf "%.2f", b - a}')" "$(field "$res" p50_us)" "$(field "$res" p99_us)" \
			"$wcpu" "$secs" "${H_WUS[$n]##* }" "${H_RUNQ[$n]##* }" "$ccpu" "${H_CUS[$n]##* }" "${H_IDLE[$n]##* }"
		if [ "$rc" != 0 ]; then
			sort "$TMP/dl_sub.out.err" | sed 's/subscriber [0-9]*/subscriber N/' | uniq -c | sort -rn |
				awk 'n++ < 3 {print "    client: " $0}' || true
		fi
	done
done
echo
echo "Medians over the rounds. Target (issue 7): >= 2 000 000 delivered msgs/s. CPU in % of one CPU ($NPROC CPUs), from the first commit until the client had every event; with the machine not idle, whoever is near 100% per process is the limit."
echo
echo "| subscribers | deliveries per round | delivered msgs/s | seconds (first to last message) | commits took | p50 | p99 | lost | pg_ws worker CPU | worker us/msg | worker run-queue wait | client CPU ($R100_PROCS processes) | client us/msg | machine idle |"
echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for n in $R100_SUBS; do
	# shellcheck disable=SC2086
	printf '| %d | %d | %.0f | %.2f | %.2f s | %s ms | %s ms | %s of %s | %s%% | %s | %s s | %s%% | %s | %s%% |\n' "$n" $((R100_EVENTS * n)) \
		"$(median ${H_RATE[$n]})" "$(median ${H_WIN[$n]})" "$(median ${H_COMMIT[$n]})" \
		"$(ms "$(median ${H_P50[$n]})")" "$(ms "$(median ${H_P99[$n]})")" "${H_LOST[$n]}" "${H_EXP[$n]}" \
		"$(median ${H_WPCT[$n]})" "$(median ${H_WUS[$n]})" "$(median ${H_RUNQ[$n]})" \
		"$(median ${H_CPCT[$n]})" "$(median ${H_CUS[$n]})" "$(median ${H_IDLE[$n]})"
done
echo
fi

if has_part filtered; then
FP=${DLC_PORT[ws]}
echo "## filtered: $FI_SUBS subscribers, each with a filter of its own device ($FI_PATH, {i} its number), while pgbench --rate $FI_RATE -c $WRITER_CLIENTS inserts one row of a random device per transaction for ${FI_SECONDS}s into a watched 'row' table (each event for one subscriber), $FI_ROUNDS rounds, the subscriber counts alternated"
echo "# worker CPU per event: its CPU from the first commit until the last row was delivered / the events; indexed: pg_ws_stats.subscribers_indexed with every subscriber connected, before the stream"
# with synchronous_commit off an event waits for the WAL writer's flush
# (wal_writer_delay), which would be all the latency measured here
echo "# synchronous_commit = on on the delivery cluster for this part (fsync off): events go out once their commit is flushed"
psql_at "$FP" -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
psql_at "$FP" -c "CREATE TABLE IF NOT EXISTS bench_visit (id bigserial PRIMARY KEY, device_id text NOT NULL, stamp text NOT NULL)" \
	-c "SELECT pg_ws_watch('bench_visit', 'row')" >/dev/null
cat >"$TMP/insert_filtered.sql" <<'SQL'
\set d random(0, :nsubs - 1)
INSERT INTO bench_visit (device_id, stamp) VALUES ('d' || :d, (extract(epoch from clock_timestamp()) * 1000000)::bigint::text);
SQL
# pg_ws_stats.subscribers_indexed ("?" before 1.3.1; over SQL, since
# the subscribers may take every one of pg_ws.max_connections)
fi_indexed() {
	psql_at "$FP" -c "SELECT subscribers_indexed FROM pg_ws_stats" 2>/dev/null || echo "?"
}
declare -A F_WUS F_P50 F_P99 F_MAX F_LOST F_EXP F_IDX F_WPCT F_IDLE
for ((r = 0; r < FI_ROUNDS; r++)); do
	order=$FI_SUBS
	[ $((r % 2)) = 1 ] && order=$(echo "$FI_SUBS" | tr ' ' '\n' | tac | tr '\n' ' ')
	for n in $order; do
		procs=$CLIENT_PROCS
		[ "$procs" -gt "$n" ] && procs=$n
		psql_at "$FP" -c "TRUNCATE bench_visit" -c "CHECKPOINT"
		dl_wait_idle ws
		logl=$(wc -l <"${DLC_LOG[ws]}")
		dl_clients ws "$n" "$procs" "$TMP/dl_sub.out" -E END -f stamp \
			--path "$FI_PATH" -t $((FI_SECONDS + 120))
		sleep 1
		idx=$(fi_indexed)
		w0=$(cpu_ticks "${DLC_WORKER[ws]}")
		h0=$(host_jiffies)
		t0=$(date +%s.%N)
		PGB_PORT=$FP run_pgbench "$TMP/pgbench.out" -c "$WRITER_CLIENTS" -j "$WRITER_CLIENTS" -R "$FI_RATE" \
			-T "$FI_SECONDS" -D nsubs="$n" -f "$TMP/insert_filtered.sql"
		# until the last row is out (a delivery takes milliseconds)
		sleep 0.5
		w1=$(cpu_ticks "${DLC_WORKER[ws]}")
		h1=$(host_jiffies)
		t1=$(date +%s.%N)
		rows=$(psql_at "$FP" -c "SELECT count(*) FROM bench_visit")
		# one END per device, after the measured window
		psql_at "$FP" -c "INSERT INTO bench_visit (device_id, stamp) SELECT 'd' || i, 'END' FROM generate_series(0, $n - 1) i"
		rc=0
		wait "$SUB_PID" || rc=$?
		SUB_PID=""
		res=$(grep '^RESULT' "$TMP/dl_sub.out" || true)
		msgs=$(field "$res" msgs)
		msgs=${msgs:-0}
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
		wcpu=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
		culled=$(tail -n +"$((logl + 1))" "${DLC_LOG[ws]}" | grep -c 'disconnecting a subscriber' || true)
		F_WUS[$n]="${F_WUS[$n]:-} $(awk -v c="$wcpu" -v m="$rows" 'BEGIN {if (m > 0) printf "%.2f", c / m * 1e6; else print "nan"}')"
		F_WPCT[$n]="${F_WPCT[$n]:-} $(awk -v c="$wcpu" -v s="$secs" 'BEGIN {printf "%.1f", c / s * 100}')"
		F_P50[$n]="${F_P50[$n]:-} $(field "$res" p50_us)"
		F_P99[$n]="${F_P99[$n]:-} $(field "$res" p99_us)"
		F_MAX[$n]="${F_MAX[$n]:-} $(field "$res" max_us)"
		F_LOST[$n]=$((${F_LOST[$n]:-0} + rows - msgs))
		F_EXP[$n]=$((${F_EXP[$n]:-0} + rows))
		F_IDX[$n]="${F_IDX[$n]:-} ${idx:-?}"
		F_IDLE[$n]="${F_IDLE[$n]:-} $(idle_pct "$h0" "$h1")"
		printf '  round %d  subs %5d  indexed %s  events %d (%s/s)  delivered %s%s%s  p50 %s us  p99 %s us  max %s us  worker %s CPU-s in %s s (%s%%, %s us/event)  machine idle %s%%\n' \
			$((r + 1)) "$n" "${idx:-?}" "$rows" "$(awk -v x="$rows" -v s="$FI_SECONDS" 'BEGIN {printf "%.0f", x / s}')" "$msgs" \
			"$([ "$rc" != 0 ] && echo " (client rc $rc$([ "$(field "$res" timeout)" = 1 ] && echo ', timed out'))")" \
			"$([ "$culled" != 0 ] && echo ", $culled culled")" "$(field "$res" p50_us)" "$(field "$res" p99_us)" "$(field "$res" max_us)" \
			"$wcpu" "$secs" "${F_WPCT[$n]##* }" "${F_WUS[$n]##* }" "${F_IDLE[$n]##* }"
		if [ "$rc" != 0 ]; then
			sort "$TMP/dl_sub.out.err" | sed 's/subscriber [0-9]*/subscriber N/' | uniq -c | sort -rn |
				awk 'n++ < 3 {print "    client: " $0}' || true
		fi
	done
done
echo
echo "Medians over the rounds. Targets (issue 17): worker CPU per event at the most subscribers at most 1.5x that at the fewest; p99 at most 2 ms; nothing lost."
echo
echo "| subscribers | indexed | events | lost | worker CPU | worker us/event | p50 | p99 | max | machine idle |"
echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for n in $FI_SUBS; do
	# shellcheck disable=SC2086
	printf '| %d | %s | %d | %d | %s%% | %s | %s ms | %s ms | %s ms | %s%% |\n' "$n" "$(median ${F_IDX[$n]})" "${F_EXP[$n]}" "${F_LOST[$n]}" \
		"$(median ${F_WPCT[$n]})" "$(median ${F_WUS[$n]})" "$(ms "$(median ${F_P50[$n]})")" \
		"$(ms "$(median ${F_P99[$n]})")" "$(ms "$(median ${F_MAX[$n]})")" "$(median ${F_IDLE[$n]})"
done
set -- $FI_SUBS
first=$1
last=${*: -1}
echo
echo "worker us/event at $last subscribers / at $first: $(awk -v a="$(median ${F_WUS[$first]})" -v b="$(median ${F_WUS[$last]})" 'BEGIN {if (a > 0) printf "%.2f", b / a; else print "nan"}')x"
psql_at "$FP" -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null
echo
fi

# plots of delivered msgs/s and p99 against subscribers, with their data
if has_part delivery || has_part rows100; then
mkdir -p "$PLOT_DIR"
{
	echo "# pg_ws delivery, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), pg_ws.so md5 $SO_MD5; medians; ? = not measured"
	echo "# subscribers ws_msgs_per_s ws_p50_us ws_p99_us wss_msgs_per_s wss_p50_us wss_p99_us rows100_msgs_per_s rows100_p99_us"
	PL_SUBS=""
	has_part delivery && PL_SUBS="$DL_SUBS"
	has_part rows100 && PL_SUBS="$PL_SUBS $R100_SUBS"
	# shellcheck disable=SC2086
	for n in $(printf '%s\n' $PL_SUBS | sort -nu); do
		line="$n"
		for tr in ws wss; do
			if has_part delivery && [ -n "${D_RATE[$tr,$n]:-}" ]; then
				# shellcheck disable=SC2086
				line="$line $(median ${D_RATE[$tr,$n]}) $(median ${D_P50[$tr,$n]}) $(median ${D_P99[$tr,$n]})"
			else
				line="$line ? ? ?"
			fi
		done
		if has_part rows100 && [ -n "${H_RATE[$n]:-}" ]; then
			# shellcheck disable=SC2086
			line="$line $(median ${H_RATE[$n]}) $(median ${H_P99[$n]})"
		else
			line="$line ? ?"
		fi
		echo "$line"
	done
} >"$PLOT_DIR/delivery.dat"
# one series per measured column (gnuplot stops at a series with no point)
dl_series() {
	local what=$1 col=$2 title=$3
	if awk -v c="$col" '!/^#/ && $c != "?" {found = 1} END {exit !found}' "$PLOT_DIR/delivery.dat"; then
		printf '"%s" using 1:(column(%d)%s) with linespoints title "%s", ' \
			"$PLOT_DIR/delivery.dat" "$col" "$what" "$title"
	fi
}
PL_RATE="$(dl_series "" 2 "ws://, $RATE events/s")$(dl_series "" 5 "wss://, $RATE events/s")$(dl_series "" 8 "ws://, transactions of $R100_ROWS rows")"
PL_P99="$(dl_series /1000 4 "ws://, $RATE events/s")$(dl_series /1000 7 "wss://, $RATE events/s")$(dl_series /1000 9 "ws://, transactions of $R100_ROWS rows")"
PL_X=$(awk '!/^#/ {if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1}
	END {printf "%g:%g", min / 1.6, max * 1.6}' "$PLOT_DIR/delivery.dat")
cat >"$PLOT_DIR/delivery.gp" <<GP
# gnuplot $PLOT_DIR/delivery.gp (written by bench/run_bench.sh)
set terminal pngcairo size 800,500 font ",10" noenhanced
set datafile missing "?"
set logscale xy
set xrange [$PL_X]
set xlabel "subscribers"
set grid
set key top left
set xtics (1, 10, 100, 1000, 10000)
set format y "%.0s%c"
set output "$PLOT_DIR/delivery_msgs_per_s.png"
set title "pg_ws: delivered messages/s ($NPROC CPUs, loopback, pg_ws.so $SO_MD5)"
set ylabel "delivered msgs/s"
plot ${PL_RATE}2000000 with lines dt 2 lc "gray" title "target: 2M msgs/s (100-row transactions)"
set output "$PLOT_DIR/delivery_p99.png"
set title "pg_ws: p99 commit-to-receive latency ($NPROC CPUs, loopback, pg_ws.so $SO_MD5)"
set ylabel "p99 latency (ms)"
set format y "%g"
set yrange [0.1:*]
plot ${PL_P99}1 with lines dt 2 lc "gray" title "target: 1 ms (1 000 events/s to 100)"
GP
if command -v gnuplot >/dev/null 2>&1; then
	if gnuplot "$PLOT_DIR/delivery.gp" 2>"$TMP/gnuplot.err"; then
		echo "# plots: $PLOT_DIR/delivery_msgs_per_s.png, $PLOT_DIR/delivery_p99.png (data $PLOT_DIR/delivery.dat, script delivery.gp)"
	else
		echo "# gnuplot failed: $(head -3 "$TMP/gnuplot.err" | tr '\n' ' ')"
	fi
else
	echo "# no plots: gnuplot is not installed (apt-get install gnuplot-nox); data in $PLOT_DIR/delivery.dat"
fi
echo
fi

for f in "$LOG" "$TMP/server_nowal.log" "$TMP/standby1.log" "$TMP/standby2.log" "$TMP/server_scale.log" \
	"$TMP/server_delivery_ws.log" "$TMP/server_delivery_wss.log"; do
	if [ -f "$f" ] && grep -q 'disconnecting a subscriber\|ERROR\|FATAL\|PANIC\|WARNING' "$f"; then
		echo "## server log $(basename "$f"): errors or disconnected subscribers"
		grep 'disconnecting a subscriber\|ERROR\|FATAL\|PANIC\|WARNING' "$f" | head -20
	fi
done
# the library must not change under a run: a reinstall mixes two builds in
# one table, and writing over the mapped file crashes backends (SIGBUS)
if [ "$(md5sum <"$PKGLIB/pg_ws.so" | cut -c1-12)" != "$SO_MD5" ]; then
	echo "# WARNING: $PKGLIB/pg_ws.so changed during the run (md5 $SO_MD5 at the start, $(md5sum <"$PKGLIB/pg_ws.so" | cut -c1-12) now, installed $(date -u -r "$PKGLIB/pg_ws.so" '+%H:%M:%S UTC')): the results mix builds"
fi
echo "# done in ${SECONDS}s, load $(cut -d" " -f1-3 /proc/loadavg)"
