#!/usr/bin/env bash
# Make docs/console.png, the README's picture of the console.  The page
# shows only what arrives after it has loaded, so a plain
# "chromium --headless --screenshot" would catch it empty: this runs
# test/e2e/test_console.py, whose browser test commits rows while the page
# watches and then saves a 1280x800 screenshot over the DevTools protocol.
# Run as root after make install; PG_CONFIG picks the installation, as for
# test/run_tests.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
mkdir -p "$ROOT/docs"
PG_WS_PGBIN=$("$PG_CONFIG" --bindir) PG_WS_CONSOLE_SCREENSHOT="$ROOT/docs/console.png" \
	/usr/bin/python3 "$ROOT/test/e2e/test_console.py"
echo "wrote $ROOT/docs/console.png"
