#!/usr/bin/env bash
# Run pg_ws's whole test command on another Debian release, in a chroot
# made here with debootstrap from Debian's own packages.
#
#   bash test/platform.sh trixie      Debian 13, PostgreSQL 17
#   bash test/platform.sh forky       Debian testing, PostgreSQL 18
#   bash test/platform.sh bookworm    Debian 12, PostgreSQL 15, as the host
#                                     (CI runs that one on the host itself)
#   bash test/platform.sh SUITE -- CMD...
#                                     run CMD (as root, in the copy of the
#                                     tree) instead of test/run_tests.sh
#
# This file owns making, entering and cleaning up those systems; what runs
# inside is the same test/run_tests.sh as on the host (which installs the
# release's packages with scripts/install_deps.sh).  It must not change the
# host: nothing is installed on it but debootstrap, and every mount and
# process it starts is gone when it exits, whether the tests passed, failed
# or it was interrupted.
#
#   1. debootstrap --variant=minbase SUITE into $PG_WS_CHROOT_DIR/SUITE
#      (default /var/tmp/pg_ws-chroots), unless a finished one is there
#      already (a development convenience: CI's machine starts without);
#      forky is made with the sid script, and its apt is told to accept a
#      Release file past its Valid-Until date (the registry's is);
#   2. proc, sys, dev, dev/pts and a private /dev/shm (PostgreSQL's
#      shared memory, Chromium) are mounted; resolv.conf is copied in, and
#      the host's CA bundle, which npm inside trusts (on a network whose
#      proxy presents its own CA for https, as the host's npm does);
#   3. the tree, without build products, is copied to /pg_ws in it
#      (a build for PostgreSQL 15 here must not meet one for 17 there;
#      clients/js's node_modules, which the host's npm ci may be writing,
#      is made there by its own);
#   4. inside: scripts/install_deps.sh with the network, then the tests in
#      a network namespace of their own (unshare --net: loopback, and a
#      veth pair for an address that is not loopback), so that their
#      servers cannot collide with the host's or another platform's, which
#      may run at the same time;
#   5. on exit: every process whose root is the chroot is killed, and the
#      mounts are undone, deepest first.
#
# Prints the test command's output; its last line is that platform's
# "N passed, M failed", and the exit status is the test command's.
set -uo pipefail

# the whole script is read before any of it runs: editing this file while a
# platform runs (they take minutes) must not change what that run does
main() {

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=${PG_WS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=${PG_WS_CHROOT_DIR:-/var/tmp/pg_ws-chroots}

usage() { echo "usage: $0 trixie|forky|bookworm [-- CMD...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
SUITE=$1; shift
case "$SUITE" in
	bookworm|trixie) script=$SUITE ;;
	forky) script=sid ;;	# bookworm's debootstrap knows forky as sid
	*) usage ;;
esac
if [ $# -gt 0 ]; then
	[ "$1" = -- ] || usage
	shift
fi
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (debootstrap, mount, chroot)" >&2; exit 2; }

DIR=$BASE/$SUITE
log() { echo "platform $SUITE: $*"; }
fail() { log "$*" >&2; echo "0 passed, 1 failed"; exit 1; }

# one run per chroot at a time: another's cleanup would kill this one's
# processes and undo its mounts
mkdir -p "$BASE"
exec 9>"$BASE/$SUITE.lock"
flock -n 9 || { log "another run is using $DIR (see fuser $BASE/$SUITE.lock)" >&2; exit 2; }

mounts=()
cleanup() {
	local pid root i
	# processes started in the chroot (a server left by a failed test)
	for i in 1 2 3; do
		for pid in $(ls /proc | grep -E '^[0-9]+$'); do
			root=$(readlink "/proc/$pid/root" 2>/dev/null) || continue
			case "$root" in "$DIR"|"$DIR"/*) kill -9 "$pid" 2>/dev/null ;; esac
		done
		sleep 0.2
	done
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}" 2>/dev/null
	done
	# anything mounted below the chroot that was not ours (should be none)
	grep -o " $DIR/[^ ]*" /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mnt() {	# mnt TARGET ARGS...: mount, remembering it for cleanup
	local target=$DIR/$1; shift
	mkdir -p "$target"
	mount "$@" "$target" || fail "mount $* $target failed"
	mounts+=("$target")
}

command -v debootstrap >/dev/null || {
	log "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
		debootstrap >/dev/null || fail "apt-get install debootstrap failed"
}

if [ ! -f "$DIR/.pg_ws-debootstrap-done" ]; then
	rm -rf "$DIR"
	mkdir -p "$DIR"
	log "debootstrap $SUITE into $DIR"
	debootstrap --variant=minbase "$SUITE" "$DIR" "$MIRROR" \
		"/usr/share/debootstrap/scripts/$script" >"$BASE/$SUITE.debootstrap.log" 2>&1 ||
		{ tail -n 20 "$BASE/$SUITE.debootstrap.log" >&2; fail "debootstrap failed"; }
	echo "deb $MIRROR $SUITE main" >"$DIR/etc/apt/sources.list"
	# the registry's forky Release file is past its Valid-Until date
	echo 'Acquire::Check-Valid-Until "false";' >"$DIR/etc/apt/apt.conf.d/99pg_ws-valid-until"
	# no daemon a package installs starts inside the chroot (postgresql's
	# main cluster): the tests start their own
	printf '#!/bin/sh\nexit 101\n' >"$DIR/usr/sbin/policy-rc.d"
	chmod 755 "$DIR/usr/sbin/policy-rc.d"
	touch "$DIR/.pg_ws-debootstrap-done"
fi
cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
# npm's https (npm ci in clients/js) trusts what the host trusts
npm_ca=()
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
	cp -L /etc/ssl/certs/ca-certificates.crt "$DIR/etc/pg_ws-host-ca.crt"
	npm_ca=(npm_config_cafile=/etc/pg_ws-host-ca.crt)
fi

mnt proc -t proc proc
mnt sys -t sysfs sys
mnt dev --bind /dev
# private, so that the pts and shm mounted below it never propagate to the
# host's /dev where mounts are shared (systemd makes them so)
mount --make-private "$DIR/dev" || fail "mount --make-private $DIR/dev failed"
mnt dev/pts -t devpts devpts -o newinstance,ptmxmode=0666
mnt dev/shm -t tmpfs shm -o mode=1777

# the tree without build products, owned by root like the host's
log "copying the tree to $DIR/pg_ws"
rm -rf "$DIR/pg_ws"
mkdir -p "$DIR/pg_ws"
(cd "$ROOT" && tar -c --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	--exclude=./deb-build --exclude='*.deb' --exclude=./results \
	--exclude=./tmp_check --exclude=./log --exclude=./.platforms --exclude=__pycache__ \
	--exclude=./clients/js/node_modules --exclude=./clients/js/dist .) |
	tar -x -C "$DIR/pg_ws" || fail "copying the tree failed"

in_chroot() { chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root LANG=C.UTF-8 TERM=dumb "$@"; }

log "installing the test command's packages"
in_chroot "${npm_ca[@]}" bash /pg_ws/scripts/install_deps.sh || fail "install_deps.sh failed"

# pass on the knobs a developer gives the host's test command
pass=()
for v in PG_WS_SKIP_DEB SKIP_E2E KEEP_WORK PG_WS_E2E_ONLY PG_WS_OTHER_MAJOR_SO; do
	[ -n "${!v:-}" ] && pass+=("$v=${!v}")
done
[ $# -gt 0 ] || set -- bash /pg_ws/test/run_tests.sh
# the namespace's network: loopback, and a non-loopback address as a
# machine has one (test_observe.py listens on it), on a veth pair whose
# both ends are in the namespace; nothing leaves it
NETWORK='ip link set lo up || { echo "platform: no loopback" >&2; exit 1; }
	ip link add pgws0 type veth peer name pgws1 &&
	ip addr add 10.87.0.1/24 dev pgws0 && ip addr add 10.87.0.2/24 dev pgws1 &&
	ip link set pgws0 up && ip link set pgws1 up &&
	ip route add default via 10.87.0.2 dev pgws0 ||
	echo "platform: no non-loopback address in the namespace" >&2'
log "running: $*"
# in the background, so that a signal to this script is handled (and the
# chroot's processes killed) at once, not when the tests end
unshare --net -- chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root LANG=C.UTF-8 TERM=dumb PG_WS_PLATFORM="$SUITE" "${pass[@]}" \
	bash -c "$NETWORK"$'\n''cd /pg_ws && exec "$@"' \
	bash "$@" &
wait $!
}

main "$@"
