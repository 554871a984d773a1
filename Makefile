# pg_ws: committed row changes as WebSocket events, served from a background
# worker.  Built with PGXS:  make && make install
#
# The tests: test/run_tests.sh (see README.md), which runs the pg_regress
# suite below against a temporary instance with pg_ws preloaded, then the
# end-to-end suite in test/e2e/ against a real WebSocket client.

MODULE_big = pg_ws
OBJS = \
	src/pg_ws.o \
	src/render.o \
	src/visits.o \
	src/watch.o \
	src/eventname.o \
	src/send.o \
	src/pending.o \
	src/queue.o \
	src/position.o \
	src/timeline.o \
	src/stats.o \
	src/connections.o \
	src/broadcast.o \
	src/filter.o \
	src/filtercols.o \
	src/loglimit.o \
	src/conn.o \
	src/http.o \
	src/metrics.o \
	src/ws.o \
	src/deflate.o \
	src/sse.o \
	src/tls.o \
	src/jwt.o \
	src/auth.o \
	src/walrecord.o \
	src/walread.o \
	src/retention.o \
	src/console.o \
	src/worker.o

EXTENSION = pg_ws
DATA = sql/pg_ws--1.0.sql sql/pg_ws--1.1.sql sql/pg_ws--1.2.sql \
	sql/pg_ws--1.2.1.sql sql/pg_ws--1.2.2.sql sql/pg_ws--1.3.0.sql \
	sql/pg_ws--1.3.1.sql sql/pg_ws--1.4.0.sql \
	sql/pg_ws--1.0--1.1.sql sql/pg_ws--1.1--1.2.sql sql/pg_ws--1.2--1.2.1.sql \
	sql/pg_ws--1.2.1--1.2.2.sql sql/pg_ws--1.2.2--1.3.0.sql \
	sql/pg_ws--1.3.0--1.3.1.sql sql/pg_ws--1.3.1--1.4.0.sql \
	console/pg_ws_console.html
PGFILEDESC = "pg_ws - committed row changes as live WebSocket events"

REGRESS = install events savepoints rendering queue security search_path visits tokens watch watch_integrity watch_partitions watch_columns watch_filter_columns send send_parallel restore position upgrade
REGRESS_OPTS = --temp-config=test/regress.conf

# -Wextra minus the three warnings PostgreSQL's own headers and callback
# signatures trip over (its configure turns off the same ones)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
SHLIB_LINK = -lwebsockets -lev -lssl -lcrypto -ljson-c -lz

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PostgreSQL 15 and later only (src/compat.h): an older pg_config stops the
# build here, before any file is compiled, naming what is supported
PG_WS_SUPPORTED = 15, 16, 17 and 18
ifneq ($(shell test "$(VERSION_NUM)" -ge 150000 2>/dev/null && echo ok),ok)
$(error pg_ws supports PostgreSQL $(PG_WS_SUPPORTED); $(PG_CONFIG) is PostgreSQL $(VERSION). Install postgresql-server-dev-15 or later and build with make PG_CONFIG=/usr/lib/postgresql/N/bin/pg_config)
endif

# the pg_regress test names, for test/run_tests.sh
print-regress:
	@echo $(REGRESS)

# the files make install puts in sharedir/extension besides pg_ws.control,
# for test/e2e/test_deb.py
print-data:
	@echo $(DATA)

# postgresql-N-pg-ws_VERSION_ARCH.deb for this Debian release's PostgreSQL N,
# built with dpkg-buildpackage from debian/ in a clean copy of this tree
# (scripts/build_deb.sh says how); prints the .deb paths
deb:
	@bash scripts/build_deb.sh

.PHONY: print-regress print-data deb
