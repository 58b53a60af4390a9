# rekeyfs — one Makefile for the core library, the daemon, the tools and tests.
#
#   make                 build/rekeyfs, build/rekeyfs-rekey, build/rekeyfs-key
#   make check           unit tests, then the bats end-to-end suite (needs root + /dev/fuse)
#   make asan            the whole check under ASan+UBSan (separate build dir)
#   make stress          longer randomized and crash runs
#   make bench           side-by-side benchmark against a plain dir, gocryptfs and securefs
#   make bench-rekey     rekeyfs-rekey against cp -a + sync, and against a base commit
#   make deps            install the Debian packages needed (as root; skipped if present)
#   make demo            build, then mount a demo vault, rotate its key and rekey it
#   make install PREFIX=/usr/local
#   WERROR=1             turn warnings into errors (CI sets it)

PKGS    := fuse3 libsodium inih
BUILD   ?= build
PREFIX  ?= /usr/local
CC      ?= cc
CFLAGS  ?= -g -O2

# Asked of pkg-config on first use, not at parse time, so that
# `make deps check` on a fresh machine sees the packages deps installed.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)

# CI (CI=true) builds with warnings as errors.
ifeq ($(CI),true)
WERROR ?= 1
endif

WARN := -Wall -Wextra -Wmissing-declarations -Wstrict-prototypes \
        -Wwrite-strings -Wformat=2 -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2
ifneq ($(SANITIZE),)
HARDEN := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
endif

ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -DFUSE_USE_VERSION=35 -pthread \
              -Iinclude $(PKG_CFLAGS) $(WARN) $(HARDEN) $(CFLAGS)
ALL_LDFLAGS := -pthread -Wl,-z,relro,-z,now $(HARDEN) $(LDFLAGS)

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
ALL_CFLAGS += -DRKFS_VERSION='"$(VERSION)"'

CORE_SRC  := $(filter-out src/fuse_%.c,$(wildcard src/*.c))
FUSE_SRC  := $(wildcard src/fuse_*.c)
TOOL_SRC  := $(wildcard tools/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
TPROG_SRC := $(wildcard tests/prog/*.c)

CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
FUSE_OBJ  := $(FUSE_SRC:%.c=$(BUILD)/obj/%.o)
LIBCORE   := $(BUILD)/librekeyfs.a
DAEMON    := $(BUILD)/rekeyfs
TOOLS     := $(TOOL_SRC:tools/%.c=$(BUILD)/%)
UNITS     := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TPROGS    := $(TPROG_SRC:tests/prog/%.c=$(BUILD)/tests/%)

BATS      ?= bats
BATS_JOBS ?= 1

.PHONY: all check check-unit check-bats asan stress bench install uninstall \
        clean lint format fixtures deps demo
.DELETE_ON_ERROR:

all: $(DAEMON) $(TOOLS) $(UNITS) $(TPROGS)

$(BUILD)/obj/%.o: %.c $(wildcard include/rekeyfs/*.h) $(wildcard src/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBCORE): $(CORE_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(DAEMON): $(FUSE_OBJ) $(LIBCORE)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(PKG_LIBS)

$(BUILD)/%: $(BUILD)/obj/tools/%.o $(LIBCORE)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBCORE)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/prog/%.o $(LIBCORE)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(PKG_LIBS)

check: check-unit check-bats

check-unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

check-bats: all
	REKEYFS_BUILD=$(abspath $(BUILD)) $(BATS) --jobs $(BATS_JOBS) tests/bats

asan:
	$(MAKE) BUILD=build-asan SANITIZE=address,undefined CFLAGS="-g -O1" check

stress: all
	REKEYFS_BUILD=$(abspath $(BUILD)) REKEYFS_STRESS=1 $(BATS) tests/bats

bench: all
	REKEYFS_BUILD=$(abspath $(BUILD)) bash tests/bench/bench.sh

# rekeyfs-rekey against cp -a + sync and against a base commit (BENCH_BASE,
# default the merge-base with main); see tests/bench/bench_rekey.sh.
.PHONY: bench-rekey
bench-rekey: all
	REKEYFS_BUILD=$(abspath $(BUILD)) bash tests/bench/bench_rekey.sh

# Debian packages needed to build, run the tests and the demo.
DEB_PKGS := gcc make pkg-config libfuse3-dev fuse3 libsodium-dev libinih-dev \
            bats attr python3 util-linux

deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || echo $$p; \
	done); \
	if [ -z "$$missing" ]; then echo "deps: all packages present"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "deps: missing Debian packages:" $$missing >&2; \
		echo "deps: run 'make deps' as root, or: apt-get install" $$missing >&2; \
		exit 1; \
	fi; \
	echo "deps: installing" $$missing; \
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing

demo: all
	REKEYFS_BUILD=$(abspath $(BUILD)) bash tools/demo.sh

install: $(DAEMON) $(TOOLS)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(DAEMON) $(TOOLS) $(DESTDIR)$(PREFIX)/bin/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/rekeyfs $(TOOLS:$(BUILD)/%=$(DESTDIR)$(PREFIX)/bin/%)



# Only the FUSE layer may speak FUSE; key buffers are never memset/memcmp'd;
# renames live in fsio.c (and the daemon's rename op); the daemon's backing
# calls never follow a symlink nor take a path of several components, and
# hold no format knowledge (tests/lint_daemon.py, checked against a file of
# known violations so that it cannot pass by finding nothing).
lint:
	@! grep -n '#include <fuse' $(CORE_SRC) $(TOOL_SRC) include/rekeyfs/*.h
	@! grep -nE "\bmemcmp\(" src/*.c tools/*.c | grep -v "not secret"
	@! grep -nE '\b(sprintf|strncpy|strtok|gets)\(' src/*.c tools/*.c
	@! grep -nE '(^|[^a-z_])rename(at2?)?\(' $(filter-out src/fsio.c,$(CORE_SRC)) $(TOOL_SRC)
	@python3 tests/lint_daemon.py $(FUSE_SRC)
	@n=$$(python3 tests/lint_daemon.py tests/lint_bad_fuse.c 2>&1 | grep -c ':'); \
	  [ "$$n" -ge 6 ] || { echo "lint: tests/lint_daemon.py missed violations ($$n of 6)" >&2; exit 1; }
	@echo "lint: ok"

format:
	clang-format -i $(CORE_SRC) $(FUSE_SRC) $(TOOL_SRC) $(UNIT_SRC) $(TPROG_SRC) include/rekeyfs/*.h

clean:
	rm -rf build build-asan
