#!/usr/bin/env bash
# `make deb`: build the Debian packages of pg_ws with dpkg-buildpackage from
# debian/, for the PostgreSQL this Debian release supports
# (postgresql-15-pg-ws on Debian 12, postgresql-17-pg-ws on 13,
# postgresql-18-pg-ws on testing; debian/rules says how).
#
# This file owns only what dpkg-buildpackage does not: building from a
# clean copy of the tree, and debian/control for this platform.
#
#   1. the tree is copied, without build products, to DEB_BUILD_DIR/pg-ws-V
#      (a make in the tree may have been against another PostgreSQL, and
#      dpkg-buildpackage writes its packages beside the directory it builds);
#   2. debian/changelog's upstream version must be pg_ws.control's
#      default_version, so that the package is named for the version it
#      installs;
#   3. `pg_buildext updatecontrol` makes debian/control from
#      debian/control.in for this platform's PostgreSQL;
#   4. dpkg-buildpackage -us -uc -b: binary packages only (no source
#      package, so no orig tarball), unsigned; its output goes to
#      DEB_BUILD_DIR/build.log, whose last lines are shown if it fails.
#
# Environment (make deb passes them on):
#   DEB_BUILD_DIR    where the copy is built and the packages, the .changes and
#                    .buildinfo end up (default: deb-build/ in the tree, which
#                    .gitignore ignores); what an earlier make deb left there
#                    is removed first
#   DEB_BUILD_OPTIONS  as dpkg-buildpackage reads it (parallel=N, noddebs ...)
# Prints the path of each .deb built, one a line, as its last lines (the
# package, and its -dbgsym package of debugging symbols).
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${DEB_BUILD_DIR:-$ROOT/deb-build}

die() { echo "make deb: $*" >&2; exit 1; }
command -v dpkg-buildpackage >/dev/null ||
	die "dpkg-buildpackage is missing (apt-get install dpkg-dev; or bash scripts/install_deps.sh)"
command -v pg_buildext >/dev/null ||
	die "pg_buildext is missing (apt-get install postgresql-server-dev-all; or bash scripts/install_deps.sh)"

# 2. (first: it needs only the tree)
UPSTREAM=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$ROOT/pg_ws.control")
[ -n "$UPSTREAM" ] || die "no default_version in pg_ws.control"
VERSION=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version) ||
	die "cannot read the version of debian/changelog"
[ "${VERSION%-*}" = "$UPSTREAM" ] ||
	die "debian/changelog is at $VERSION but pg_ws.control's default_version is $UPSTREAM:" \
		"add a changelog entry (dch -v $UPSTREAM-1)"

# 1. (what an earlier make deb left there is removed, and nothing else:
# DEB_BUILD_DIR may be a directory of the developer's)
BUILD=$(realpath -m -- "$BUILD")
case "$ROOT/" in
	"${BUILD%/}/"*) die "DEB_BUILD_DIR=$BUILD holds the tree itself" ;;
esac
SRC=$BUILD/pg-ws-$UPSTREAM
mkdir -p "$BUILD"
rm -rf "$BUILD"/pg-ws-[0-9]*/ "$BUILD"/pg-ws_* "$BUILD"/postgresql-*-pg-ws*_*.deb \
	"$BUILD/build.log"
mkdir -p "$SRC"
tar -C "$ROOT" --exclude=./.git --exclude=./deb-build --exclude='*.deb' \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./results \
	--exclude=./tmp_check --exclude=./log --exclude=./.platforms --exclude=__pycache__ \
	--exclude=./clients/js/node_modules --exclude=./clients/js/dist \
	--exclude=./debian/.debhelper --exclude=./debian/debhelper-build-stamp \
	--exclude=./debian/files --exclude='./debian/*.substvars' \
	--exclude='./debian/postgresql-*-pg-ws' -cf - . | tar -C "$SRC" -xf -

# 3.
(cd "$SRC" && pg_buildext updatecontrol) || die "pg_buildext updatecontrol failed"
PACKAGES=$(sed -n 's/^Package: //p' "$SRC/debian/control" | tr '\n' ' ')
echo "make deb: building ${PACKAGES% } $VERSION with dpkg-buildpackage in $SRC"

# 4.
if ! (cd "$SRC" && dpkg-buildpackage -us -uc -b) >"$BUILD/build.log" 2>&1; then
	tail -n 40 "$BUILD/build.log" >&2
	die "dpkg-buildpackage failed (all of its output: $BUILD/build.log)"
fi
CHANGES=$BUILD/pg-ws_${VERSION}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
[ -f "$CHANGES" ] || die "dpkg-buildpackage made no $CHANGES"
echo "make deb: $CHANGES"
# the .debs the .changes lists (its Files: lines end in the file's name)
debs=$(awk '/^Files:/ { f = 1; next } /^[^ ]/ { f = 0 } f && $NF ~ /\.deb$/ { print $NF }' "$CHANGES")
[ -n "$debs" ] || die "$CHANGES lists no .deb"
for d in $debs; do
	echo "$BUILD/$d"
done
