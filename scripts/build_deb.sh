#!/usr/bin/env bash
# `make deb`: build postgresql-15-pg-ws_VERSION_ARCH.deb, a Debian 12
# package of pg_ws for Debian's own PostgreSQL 15, from this tree.
#
# Built with dpkg-deb and dpkg-shlibdeps alone (dpkg, and dpkg-dev, which
# build-essential depends on), not dpkg-buildpackage: that would need a
# debian/ directory with rules, debhelper and postgresql-server-dev-all's
# pg_buildext on top of what building pg_ws already needs, to end up
# running the same `make install`.  Here:
#
#   1. the tree is copied, without build products, to a scratch directory
#      and built there from clean with Debian's pg_config (a make in the
#      tree itself may have been against another PostgreSQL);
#   2. `make install DESTDIR=` puts the files where PGXS puts them: the
#      library and its bitcode in pkglibdir, pg_ws.control and every file of
#      the Makefile's DATA in sharedir/extension, so a file added to DATA is
#      packaged without a change here;
#   3. a control file: Version from pg_ws.control's default_version plus a
#      Debian revision (1.2 -> 1.2-1); Depends from dpkg-shlibdeps (the
#      libraries pg_ws.so links against), postgresql-15, and
#      libwebsockets-evlib-ev, the plugin libwebsockets loads with dlopen()
#      for pg_ws.event_loop = libev, which no linker records;
#   4. dpkg-deb --root-owner-group: every file owned by root, whoever
#      builds; directories 0755, files 0644 (as Debian ships PostgreSQL's
#      own modules), md5sums for dpkg --verify, a copyright file and
#      changelog.Debian.gz.
#
# Environment (make deb passes them on):
#   DEB_PG_CONFIG    Debian's pg_config (default /usr/lib/postgresql/15/bin/pg_config);
#                    a relocated copy of PostgreSQL would put the files under its prefix
#   DEB_OUT_DIR      where the .deb goes (default: the top of the tree)
#   DEB_BUILD_DIR    the scratch directory, emptied first (default: deb-build/ in the tree)
#   DEB_REVISION     the Debian revision (default 1)
#   DEB_MAINTAINER   "Name <email>" (default: git's user.name and user.email)
# Prints the path of the .deb as its last line.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${DEB_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
OUT=${DEB_OUT_DIR:-$ROOT}
BUILD=${DEB_BUILD_DIR:-$ROOT/deb-build}
REVISION=${DEB_REVISION:-1}
PKG=postgresql-15-pg-ws

die() { echo "make deb: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install build-essential)"
done
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG is missing (apt-get install postgresql-server-dev-15)"
case "$("$PG_CONFIG" --version)" in
	"PostgreSQL 15."*) ;;
	*) die "$PG_CONFIG is not PostgreSQL 15's" ;;
esac
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
[ "$PKGLIBDIR" = /usr/lib/postgresql/15/lib ] && [ "$SHAREDIR" = /usr/share/postgresql/15 ] ||
	die "$PG_CONFIG installs into $PKGLIBDIR, not Debian's /usr/lib/postgresql/15/lib"

UPSTREAM=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$ROOT/pg_ws.control")
[ -n "$UPSTREAM" ] || die "no default_version in pg_ws.control"
VERSION=$UPSTREAM-$REVISION
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
DEB=$OUT/${PKG}_${VERSION}_${ARCH}.deb

if [ -z "${DEB_MAINTAINER:-}" ]; then
	name=$(git -C "$ROOT" config user.name 2>/dev/null || true)
	email=$(git -C "$ROOT" config user.email 2>/dev/null || true)
	DEB_MAINTAINER="${name:-pg_ws maintainers} <${email:-root@localhost}>"
fi
# the commit's time for the changelog and the files' times, so that a
# rebuild of the same commit gives the same package
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
DIRTY=
[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && DIRTY=", with uncommitted changes"

# 1. a clean copy of the tree, built with Debian's PostgreSQL
rm -rf "$BUILD"
mkdir -p "$BUILD/src" "$OUT"
tar -C "$ROOT" --exclude=./.git --exclude=./deb-build --exclude='*.deb' \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./results \
	--exclude=./tmp_check --exclude=./log -cf - . | tar -C "$BUILD/src" -xf -
echo "make deb: building pg_ws $UPSTREAM with $PG_CONFIG"
make -s -C "$BUILD/src" PG_CONFIG="$PG_CONFIG" >/dev/null

# 2. the files, where make install puts them
STAGE=$BUILD/debian/$PKG
make -s -C "$BUILD/src" PG_CONFIG="$PG_CONFIG" install DESTDIR="$STAGE" >/dev/null
[ -f "$STAGE$PKGLIBDIR/pg_ws.so" ] || die "make install put no pg_ws.so in $STAGE$PKGLIBDIR"

DOC=$STAGE/usr/share/doc/$PKG
mkdir -p "$DOC"
cat > "$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pg_ws
Comment: Built by \`make deb\` (scripts/build_deb.sh) from the pg_ws source
 tree at commit $COMMIT.

Files: *
Copyright: the pg_ws authors
License: unstated
 The pg_ws source tree carries no license statement.  Ask its maintainers
 before redistributing this package.
EOF
cat > "$DOC/changelog.Debian" <<EOF
$PKG ($VERSION) bookworm; urgency=medium

  * Built by \`make deb\` from the pg_ws tree at commit $COMMIT$DIRTY.

 -- $DEB_MAINTAINER  $(date -R -u -d "@$SOURCE_DATE_EPOCH")
EOF
gzip -9n "$DOC/changelog.Debian"

# 4. (before the control file, which lists their checksums and size)
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod 0644 {} +
find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# 3. the control file; dpkg-shlibdeps reads debian/control in its working
# directory and wants the library where the package stages it
mkdir -p "$STAGE/DEBIAN"
printf 'Source: pg-ws\n\nPackage: %s\nArchitecture: any\n' "$PKG" > "$BUILD/debian/control"
SHLIBS=$(cd "$BUILD" && dpkg-shlibdeps -O "debian/$PKG$PKGLIBDIR/pg_ws.so")
SHLIBS=${SHLIBS#shlibs:Depends=}
[ -n "$SHLIBS" ] || die "dpkg-shlibdeps found no libraries"
(cd "$STAGE" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"
cat > "$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Source: pg-ws
Version: $VERSION
Architecture: $ARCH
Maintainer: $DEB_MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
Depends: postgresql-15, libwebsockets-evlib-ev, $SHLIBS
Section: database
Priority: optional
Description: committed row changes as live WebSocket events for PostgreSQL 15
 pg_ws is a PostgreSQL 15 extension that turns committed row changes into
 live WebSocket events, served by a background worker inside the database:
 ws:// and wss://, tokens, origins, resuming from a position, standbys.
 .
 Put pg_ws in shared_preload_libraries, restart, and CREATE EXTENSION pg_ws
 in the database pg_ws.database names.
EOF
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
