# rekeyfs — one Makefile for the core library, the daemon, the tools and tests.
#
#   make                 build/rekeyfs, build/rekeyfs-rekey, build/rekeyfs-key
#   make check           unit tests, then the bats end-to-end suite (needs root + /dev/fuse)
#   make asan            the whole check under ASan+UBSan (separate build dir)
#   make fuzz            each libFuzzer harness FUZZ_SECONDS (30) under ASan+UBSan
#   make stress          longer randomized and crash runs
#   make bench           side-by-side benchmark against a plain dir, passthrough_ll, gocryptfs and securefs
#   make bench-rekey     rekeyfs-rekey against cp -a + sync, and against a base commit
#   make deps            install the Debian packages needed (as root; skipped if present)
#   make demo            build, then mount a demo vault, rotate its key and rekey it
#   make install PREFIX=/usr/local   (also DESTDIR=; make uninstall likewise)
#   make deb             an installable Debian package in build/
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
            bats attr python3 util-linux clang strace

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

# ---- install, uninstall, Debian package ------------------------------------
#
#   make install [PREFIX=/usr/local] [DESTDIR=stage] [INSTALL_DEBUG=0]
#
# installs the three programs (debug info split off into DEBUGDIR, as
# gdb looks for it, unless INSTALL_DEBUG=0), the man pages, the examples
# under share/doc/rekeyfs, the systemd unit(s) from etc/ and bash
# completion.  `make uninstall` with the same variables removes exactly
# that.  mount -t fuse.rekeyfs needs no helper of its own: mount.fuse3
# (package fuse3) runs "rekeyfs BACKING MOUNTPOINT -o OPTIONS".
#
#   make deb             build/rekeyfs_VERSION_ARCH.deb (dpkg-deb of a staged
#                        make install with PREFIX=/usr)

BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/rekeyfs
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
UNITDIR     ?= $(PREFIX)/lib/systemd/system
DEBUGDIR    ?= /usr/lib/debug
INSTALL_DEBUG ?= 1

PROGS     := rekeyfs $(TOOLS:$(BUILD)/%=%)
MAN_SRC   := $(wildcard doc/man/*.[0-9])
MAN_OUT   := $(MAN_SRC:doc/man/%=$(BUILD)/man/%)
EXAMPLES  := $(wildcard etc/*.example)
UNITS_SD  := $(wildcard etc/*.service)
DOCS      := README.md $(wildcard doc/*.md) $(EXAMPLES)
INST_DIRS := $(BINDIR) $(MANDIR)/man5 $(MANDIR)/man8 $(DOCDIR) $(BASHCOMPDIR)
INST_DIRS += $(if $(UNITS_SD),$(UNITDIR))
ifeq ($(INSTALL_DEBUG),1)
INST_DIRS += $(DEBUGDIR)$(BINDIR)
endif

DEB_PKGS += mandoc dpkg-dev binutils

.PHONY: man lint-man deb
# Kept, so that install does not relink the tools every time.
.SECONDARY: $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
lint: lint-man

man: $(MAN_OUT)

$(BUILD)/man/%: doc/man/% VERSION
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/g' $< > $@

# A stripped program with its debug info beside it (.debug, linked by
# .gnu_debuglink so gdb finds it in DEBUGDIR).
$(BUILD)/stripped/%: $(BUILD)/%
	@mkdir -p $(dir $@)
	objcopy --only-keep-debug $< $@.debug
	objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=$@.debug $< $@

install: $(PROGS:%=$(BUILD)/stripped/%) $(MAN_OUT)
	install -d $(addprefix $(DESTDIR),$(INST_DIRS))
	install -m 0755 $(PROGS:%=$(BUILD)/stripped/%) $(DESTDIR)$(BINDIR)/
ifeq ($(INSTALL_DEBUG),1)
	install -m 0644 $(PROGS:%=$(BUILD)/stripped/%.debug) $(DESTDIR)$(DEBUGDIR)$(BINDIR)/
endif
	install -m 0644 $(filter %.5,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(filter %.8,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	$(if $(UNITS_SD),install -m 0644 $(UNITS_SD) $(DESTDIR)$(UNITDIR)/)
	for p in $(PROGS); do \
		install -m 0644 contrib/bash-completion/rekeyfs $(DESTDIR)$(BASHCOMPDIR)/$$p || exit 1; \
	done

# Removes what install put there, then the directories it leaves empty
# (only below DESTDIR, when one is given: a live system keeps its tree).
uninstall:
	rm -f $(PROGS:%=$(DESTDIR)$(BINDIR)/%) \
	      $(PROGS:%=$(DESTDIR)$(BASHCOMPDIR)/%) \
	      $(PROGS:%=$(DESTDIR)$(DEBUGDIR)$(BINDIR)/%.debug) \
	      $(patsubst $(BUILD)/man/%.5,$(DESTDIR)$(MANDIR)/man5/%.5,$(filter %.5,$(MAN_OUT))) \
	      $(patsubst $(BUILD)/man/%.8,$(DESTDIR)$(MANDIR)/man8/%.8,$(filter %.8,$(MAN_OUT))) \
	      $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(DOCS))) \
	      $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS_SD)))
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null
	@if [ -n "$(DESTDIR)" ]; then \
		for d in $(addprefix $(DESTDIR),$(INST_DIRS) $(DEBUGDIR)$(BINDIR)); do \
			while [ "$$d" != "$(DESTDIR)" ] && [ "$$d" != / ]; do \
				[ ! -e "$$d" ] || rmdir "$$d" 2>/dev/null || break; \
				d=$$(dirname "$$d"); \
			done; \
		done; \
	fi

# Every man page through mandoc's linter (warnings are errors) and man's.
lint-man: $(MAN_OUT)
	@for m in $(MAN_OUT); do \
		mandoc -T lint -W warning $$m || exit 1; \
		out=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l $$m 2>&1 >/dev/null); \
		[ -z "$$out" ] || { echo "$$m: $$out" >&2; exit 1; }; \
	done

DEB_ARCH  = $(shell dpkg --print-architecture)
DEB_STAGE = $(BUILD)/deb/root
DEB_FILE  = $(BUILD)/rekeyfs_$(VERSION)_$(DEB_ARCH).deb

deb: $(PROGS:%=$(BUILD)/stripped/%) $(MAN_OUT)
	rm -rf $(BUILD)/deb
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_STAGE)) \
		PREFIX=/usr INSTALL_DEBUG=0
	gzip -9n $(DEB_STAGE)/usr/share/man/man*/*
	mkdir -p $(DEB_STAGE)/DEBIAN $(BUILD)/deb/src/debian
	printf 'Source: rekeyfs\n\nPackage: rekeyfs\nArchitecture: any\n' \
		> $(BUILD)/deb/src/debian/control
	cd $(BUILD)/deb/src && dpkg-shlibdeps -O \
		$(PROGS:%=-e$(abspath $(DEB_STAGE))/usr/bin/%) \
		| sed -n 's/^shlibs:Depends=//p' > ../depends
	{ echo "Package: rekeyfs"; \
	  echo "Version: $(VERSION)"; \
	  echo "Architecture: $(DEB_ARCH)"; \
	  echo "Maintainer: rekeyfs developers <rekeyfs@localhost>"; \
	  echo "Installed-Size: $$(du -sk --exclude=DEBIAN $(DEB_STAGE) | cut -f1)"; \
	  echo "Depends: $$(cat $(BUILD)/deb/depends), fuse3"; \
	  echo "Section: admin"; \
	  echo "Priority: optional"; \
	  echo "Description: encrypted FUSE filesystem with online key rotation"; \
	  echo " rekeyfs keeps files encrypted in a backing directory and shows them"; \
	  echo " decrypted at a mount point.  Keys come in numbered generations:"; \
	  echo " rekeyfs-key adds and retires them while the filesystem stays"; \
	  echo " mounted, and rekeyfs-rekey rewrites old files to the newest key."; \
	} > $(DEB_STAGE)/DEBIAN/control
	cd $(DEB_STAGE) && find usr -type f -exec md5sum {} + > DEBIAN/md5sums
	dpkg-deb --root-owner-group -Zxz --build $(DEB_STAGE) $(DEB_FILE)
	@echo "deb: $(DEB_FILE)"



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

# libFuzzer harnesses (tests/fuzz/fuzz_*.c), built with clang and the core
# under ASan+UBSan in their own build dir, each run FUZZ_SECONDS on a
# scratch copy of its seed corpus (tests/fuzz/corpus/NAME: runs never grow
# the committed one).  Any crash, leak, sanitizer report or failed check
# fails; each harness prints "fuzz_NAME: 1 passed, 0 failed" (or 0, 1).
FUZZ_SECONDS ?= 30
FUZZ_BUILD   := build-fuzz
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all

.PHONY: fuzz fuzz-build fuzz-seeds

fuzz: fuzz-build
	@fail=0; scratch=$$(mktemp -d /tmp/rekeyfs-fuzz.XXXXXX); \
	for n in $(FUZZ_NAMES); do \
		mkdir -p $$scratch/$$n/corpus $$scratch/$$n/out; \
		cp tests/fuzz/corpus/$$n/* $$scratch/$$n/corpus/; \
		echo "== fuzz_$$n: $(FUZZ_SECONDS)s"; \
		if $(FUZZ_BUILD)/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
			-timeout=10 -rss_limit_mb=2048 -max_len=65536 \
			-print_final_stats=1 \
			-artifact_prefix=$$scratch/$$n/out/ \
			$$scratch/$$n/corpus >$$scratch/$$n/log 2>&1; then \
			tail -n 12 $$scratch/$$n/log | grep '^stat::' ; \
			echo "fuzz_$$n: 1 passed, 0 failed"; \
		else \
			tail -n 60 $$scratch/$$n/log; \
			mkdir -p $(FUZZ_BUILD)/artifacts; \
			cp $$scratch/$$n/out/* $(FUZZ_BUILD)/artifacts/ 2>/dev/null; \
			echo "fuzz_$$n: failing input kept in $(FUZZ_BUILD)/artifacts/"; \
			echo "fuzz_$$n: 0 passed, 1 failed"; fail=1; \
		fi; \
	done; rm -rf $$scratch; exit $$fail

fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SANITIZE=fuzzer-no-link,address,undefined \
		CFLAGS="-g -O1 -fno-sanitize-recover=all" \
		$(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz/fuzz_%)

$(FUZZ_BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(LIBCORE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIBCORE) \
		$(ALL_LDFLAGS) -fsanitize=fuzzer $(PKG_LIBS)

# The seeds that take keys to make (see tests/fuzz/README.md).
fuzz-seeds: $(LIBCORE)
	@mkdir -p $(BUILD)/fuzz
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $(BUILD)/fuzz/mkseeds tests/fuzz/mkseeds.c \
		$(LIBCORE) $(ALL_LDFLAGS) $(PKG_LIBS)
	$(BUILD)/fuzz/mkseeds $(BUILD)/fuzz/seeds

format:
	clang-format -i $(CORE_SRC) $(FUSE_SRC) $(TOOL_SRC) $(UNIT_SRC) $(TPROG_SRC) include/rekeyfs/*.h

clean:
	rm -rf build build-asan build-fuzz
