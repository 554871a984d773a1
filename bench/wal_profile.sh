#!/usr/bin/env bash
# bench/wal_profile.sh: where pg_ws.wal = on spends its time, pgbench -c 8
# (one-row visit_history INSERTs), SYNC=on (default: fsync and
# synchronous_commit on) or SYNC=off.  Two throw-away clusters, pg_ws.wal
# on and off: 2 rounds of wait events sampled from pg_stat_activity every
# 5 ms, then a system-wide perf profile (perf record -a -g) of the wal = on
# cluster.  Run as root; needs perf (Debian: linux-perf).
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
TMP=$(mktemp -d /tmp/pg_ws_probe.XXXXXX); chown postgres: "$TMP"
fp() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DIRS=""
trap 'for d in $DIRS; do runuser -u postgres -- $PGBIN/pg_ctl -D $d -m immediate stop >/dev/null 2>&1 || true; done; rm -rf $TMP' EXIT
mk() {
	local name=$1 wal=$2 port=$3 wsport=$4
	(cd $TMP && runuser -u postgres -- $PGBIN/initdb -D $TMP/$name -U postgres --auth=trust >/dev/null)
	cat >>$TMP/$name/postgresql.conf <<EOF
shared_preload_libraries = 'pg_ws'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TMP'
port = $port
pg_ws.port = $wsport
pg_ws.database = 'postgres'
pg_ws.wal = $wal
fsync = ${SYNC:-on}
synchronous_commit = ${SYNC:-on}
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off
EOF
	DIRS="$DIRS $TMP/$name"
	(cd $TMP && runuser -u postgres -- $PGBIN/pg_ctl -D $TMP/$name -l $TMP/$name.log -w start >/dev/null)
	$PGBIN/psql -X -q -h $TMP -p $port -U postgres -c "CREATE EXTENSION pg_ws" -c "INSERT INTO client (id, visit_count) VALUES (1, 0)" -c "CREATE TABLE ws_waits (t text, e text)"
}
P1=$(fp); W1=$(fp); P2=$(fp); W2=$(fp)
mk on on $P1 $W1
mk off off $P2 $W2
echo "INSERT INTO visit_history (client_id, device_id) VALUES (1, 'x');" > $TMP/ins.sql
for round in 1 2; do
for v in on off; do
	port=$P1; [ $v = off ] && port=$P2
	$PGBIN/psql -X -q -h $TMP -p $port -U postgres -c "TRUNCATE visit_history, ws_waits" -c CHECKPOINT
	$PGBIN/pgbench -n -h $TMP -p $port -U postgres -c 8 -j 2 -T 6 -f $TMP/ins.sql postgres >$TMP/pgb.$v 2>&1 &
	pgb=$!
	sleep 0.5
	$PGBIN/psql -X -q -h $TMP -p $port -U postgres -c "DO \$\$ BEGIN FOR i IN 1..800 LOOP
		PERFORM pg_stat_clear_snapshot();
		INSERT INTO ws_waits SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running') FROM pg_stat_activity
			WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state = 'active';
		PERFORM pg_sleep(0.005); END LOOP; END \$\$"
	wait $pgb
	echo "== round $round pg_ws.wal = $v: $(grep '^tps' $TMP/pgb.$v)"
	$PGBIN/psql -X -q -At -F ' ' -h $TMP -p $port -U postgres -c "SELECT t, e, count(*), round(100.0 * count(*) / sum(count(*)) over (), 1) FROM ws_waits GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 8"
done
done
# a profile of the wal = on cluster
$PGBIN/psql -X -q -h $TMP -p $P1 -U postgres -c "TRUNCATE visit_history" -c CHECKPOINT
$PGBIN/pgbench -n -h $TMP -p $P1 -U postgres -c 8 -j 2 -T 6 -f $TMP/ins.sql postgres >$TMP/pgb.perf 2>&1 &
pgb=$!
sleep 0.5
perf record -q -F 999 -a -g -o $TMP/perf.data -- sleep 5 >/dev/null 2>&1
wait $pgb
echo "== perf, pg_ws.wal = on: $(grep '^tps' $TMP/pgb.perf)"
perf report -i $TMP/perf.data --no-children --sort comm,dso,sym --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -30 || true
echo "== callers (children) of interest"
perf report -i $TMP/perf.data --children --sort sym -g none --stdio 2>/dev/null | grep -E '^ +[0-9.]+%.*(pgws_|LogLogicalMessage|XLogInsert|XLogFlush|LWLockAcquire|CommitTransaction|PreCommit|pg_ws|issue_xlog_fsync|CRC|finish_xact)' | head -25 || true
