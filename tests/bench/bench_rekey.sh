#!/usr/bin/env bash
# make bench-rekey: rekeyfs-rekey against `cp -a` + `sync` of the same
# backing tree, and the build of a base commit against this one, side by
# side in one run.  Page caches are dropped before every timed command
# (echo 3 > /proc/sys/vm/drop_caches; needs root).  Rows:
#
#   big      one large file rewritten (BENCH_BIG_MB MiB)
#   small    BENCH_SMALL_FILES files of BENCH_SMALL_SIZE bytes, 1000 a directory
#   status   --status over a cold tree of BENCH_STATUS_FILES header-only files
#   mem      peak RSS of a rekey run (files already on the primary: a walk
#            and a header read each) and of --status, for every count in
#            BENCH_MEM_FILES, all in one directory
#   latency  a live mount's open+read+close of a small file and 4 KiB
#            write+fsync, idle and during a full-speed rekey of the small
#            tree (the new build), p50/p99/max
#
# A rekey alternates the tree between generations 1 and 2, so every run
# rewrites every file.  The defaults run in several minutes on a 2-core
# VM, most of it creating the 10^6 files of the mem row (about a minute)
# and the base build's walks of them; BENCH_MEM_FILES="10000 200000" is
# quicker.  The mem table ends with the growth from the smallest to the
# largest count (the target: within 10%).
#
# Environment:
#   REKEYFS_BUILD      this build (make sets it)
#   BENCH_BASE         git revision to compare with, built in a scratch
#                      worktree under /tmp (default: merge-base of HEAD and
#                      main; "none" to skip)
#   BENCH_DIR          where trees go (default /var/tmp)
#   BENCH_ROUNDS       rounds of the big and small rows (default 2; the
#                      table shows the best of each)
#   BENCH_BIG_MB BENCH_SMALL_FILES BENCH_SMALL_SIZE BENCH_STATUS_FILES
#   BENCH_MEM_FILES    see above (defaults 1024, 10000, 4096, 100000,
#                      "10000 1000000")
#   BENCH_ROWS         subset of "big small status mem latency"
#   BENCH_QUICK=1      tiny sizes: a smoke run of the whole script

set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${REKEYFS_BUILD:-$TOP/build}
BASE_DIR=${BENCH_DIR:-/var/tmp}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	: "${BENCH_BIG_MB:=32}" "${BENCH_SMALL_FILES:=500}" \
		"${BENCH_STATUS_FILES:=2000}" "${BENCH_MEM_FILES:=1000 5000}" \
		"${BENCH_ROUNDS:=1}"
fi
BIG_MB=${BENCH_BIG_MB:-1024}
SMALL_FILES=${BENCH_SMALL_FILES:-10000}
SMALL_SIZE=${BENCH_SMALL_SIZE:-4096}
STATUS_FILES=${BENCH_STATUS_FILES:-100000}
MEM_FILES=${BENCH_MEM_FILES:-10000 1000000}
ROUNDS=${BENCH_ROUNDS:-2}
ROWS=${BENCH_ROWS:-big small status mem latency}

die() {
	echo "bench-rekey: $*" >&2
	exit 1
}
note() { echo "# $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (drop_caches, mounts)"
for b in rekeyfs rekeyfs-rekey tests/mkbenchtree; do
	[ -x "$BUILD/$b" ] || die "$BUILD/$b missing: run make first"
done
MKTREE=$BUILD/tests/mkbenchtree

W=$(mktemp -d "$BASE_DIR/rekeyfs-bench-rekey.XXXXXX") || die "mktemp"
BASEWT=""
MNTS=()
cleanup() {
	local m
	for m in "${MNTS[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	if [ -n "$BASEWT" ]; then
		git -C "$TOP" worktree remove --force "$BASEWT" 2>/dev/null
		rm -rf "$BASEWT"
	fi
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds ---------------------------------------------------------------

declare -A REKEY
REKEY[new]=$BUILD/rekeyfs-rekey
IMPLS="new"
base_rev=${BENCH_BASE:-$(git -C "$TOP" merge-base HEAD main 2>/dev/null)}
if [ -n "$base_rev" ] && [ "$base_rev" != none ]; then
	base_sha=$(git -C "$TOP" rev-parse --verify "$base_rev^{commit}") ||
		die "BENCH_BASE=$base_rev is not a commit"
	if [ "$base_sha" = "$(git -C "$TOP" rev-parse HEAD)" ] &&
		git -C "$TOP" diff --quiet HEAD; then
		note "base $base_rev is this tree: set BENCH_BASE to compare"
	else
		BASEWT=$(mktemp -d /tmp/rekeyfs-bench-base.XXXXXX)
		rmdir "$BASEWT"
		note "building base ${base_sha:0:12} in $BASEWT"
		git -C "$TOP" worktree add --detach "$BASEWT" "$base_sha" >/dev/null 2>&1 ||
			die "git worktree add failed"
		make -C "$BASEWT" -j2 build/rekeyfs-rekey >"$W/base-build.log" 2>&1 ||
			die "base build failed (see $W/base-build.log)"
		REKEY[base]=$BASEWT/build/rekeyfs-rekey
		IMPLS="base new"
	fi
fi

# --- helpers --------------------------------------------------------------

drop() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# keyrings with the same two keys, primary 1 and primary 2
k1=$(head -c 32 /dev/urandom | base64 -w0)
k2=$(head -c 32 /dev/urandom | base64 -w0)
for p in 1 2; do
	{
		printf '[keyring]\nprimary = %s\n' "$p"
		printf '\n[generation 1]\nstate = enabled\nkey = base64:%s\n' "$k1"
		printf '\n[generation 2]\nstate = enabled\nkey = base64:%s\n' "$k2"
	} >"$W/kr$p"
	chmod 600 "$W/kr$p"
done

# run_timed OUT CMD...: run CMD, write "seconds maxrss_kib" to OUT
run_timed() {
	local out=$1
	shift
	/usr/bin/time -f '%e %M' -o "$out.t" "$@" >"$out.log" 2>&1
	local rc=$?
	[ "$rc" -le 1 ] || {
		cat "$out.log" >&2
		die "failed ($rc): $*"
	}
	python3 - "$out.t" "$@" >"$out" <<'EOF'
import sys
# /usr/bin/time -o keeps its own lines last; the last one is ours
print(open(sys.argv[1]).read().split("\n")[-2])
EOF
}

# Ratios and rows are computed by one small Python printer at the end;
# results go to $W/results as "row impl seconds maxrss".
R=$W/results
: >"$R"
record() { echo "$1 $2 $(cat "$3")" >>"$R"; }

# gen_of TREE: the generation the tree's files are on now (1 or 2)
declare -A GEN

rekey_round() { # ROW TREE IMPL
	local row=$1 tree=$2 impl=$3 to
	to=$((3 - GEN[$tree]))
	drop
	run_timed "$W/$row.$impl" "${REKEY[$impl]}" -q --keyring "$W/kr$to" "$tree"
	grep -q '"remaining":0' "$W/$row.$impl.log" 2>/dev/null ||
		"${REKEY[new]}" --status --json --keyring "$W/kr$to" "$tree" |
		grep -q '"remaining":0' || die "$impl left files behind in $tree"
	GEN[$tree]=$to
	record "$row" "$impl" "$W/$row.$impl"
}

cp_round() { # ROW TREE
	local row=$1 tree=$2
	drop
	run_timed "$W/$row.cp" sh -c 'cp -a "$1" "$2" && sync' sh "$tree" "$W/cp-dst"
	record "$row" cp "$W/$row.cp"
	rm -rf "$W/cp-dst"
}

# --- rows -----------------------------------------------------------------

has_row() { [[ " $ROWS " == *" $1 "* ]]; }

if has_row big; then
	note "big: creating one file of $BIG_MB MiB"
	"$MKTREE" "$W/kr1" "$W/big" 1 1 $((BIG_MB * 1024 * 1024)) || die mkbenchtree
	GEN[$W/big]=1
	for r in $(seq 1 "$ROUNDS"); do
		cp_round big "$W/big"
		for i in $IMPLS; do rekey_round big "$W/big" "$i"; done
	done
fi

if has_row small || has_row latency; then
	note "small: creating $SMALL_FILES files of $SMALL_SIZE bytes"
	"$MKTREE" "$W/kr1" "$W/small" 1 "$SMALL_FILES" "$SMALL_SIZE" 1000 || die mkbenchtree
	GEN[$W/small]=1
fi
if has_row small; then
	for r in $(seq 1 "$ROUNDS"); do
		cp_round small "$W/small"
		for i in $IMPLS; do rekey_round small "$W/small" "$i"; done
	done
fi

if has_row status; then
	note "status: creating $STATUS_FILES header-only files"
	"$MKTREE" "$W/kr1" "$W/status" 1 "$STATUS_FILES" 0 1000 || die mkbenchtree
	for i in $IMPLS; do
		drop
		run_timed "$W/status.$i" "${REKEY[$i]}" --status "$W/status"
		record status "$i" "$W/status.$i"
	done
	rm -rf "$W/status"
fi

if has_row mem; then
	for n in $MEM_FILES; do
		note "mem: creating $n header-only files in one directory"
		"$MKTREE" "$W/kr1" "$W/mem" 1 "$n" 0 0 || die mkbenchtree
		for i in $IMPLS; do
			drop
			run_timed "$W/mem$n.$i" "${REKEY[$i]}" -q --keyring "$W/kr1" "$W/mem"
			record "mem-rekey-$n" "$i" "$W/mem$n.$i"
			drop
			run_timed "$W/mems$n.$i" "${REKEY[$i]}" --status "$W/mem"
			record "mem-status-$n" "$i" "$W/mems$n.$i"
		done
		rm -rf "$W/mem"
	done
fi

if has_row latency; then
	mkdir -p "$W/mnt"
	"$BUILD/rekeyfs" -f --keyring "$W/kr$((3 - GEN[$W/small]))" "$W/small" "$W/mnt" \
		>"$W/daemon.log" 2>&1 &
	MNTS+=("$W/mnt")
	for _ in $(seq 1 100); do
		mountpoint -q "$W/mnt" && break
		sleep 0.05
	done
	mountpoint -q "$W/mnt" || die "mount failed: $(cat "$W/daemon.log")"
	probe() { # LABEL SECONDS: stops early when $W/stop exists
		python3 - "$W/mnt" "$2" "$1" "$W/stop" <<'PY' >>"$W/latency"
import os, random, sys, time
mnt, secs, label, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
dirs = sorted(d for d in os.listdir(mnt) if d.startswith("d"))
files = [os.path.join(mnt, d, f) for d in dirs for f in os.listdir(os.path.join(mnt, d))]
rd, wr = [], []
wpath = os.path.join(mnt, "probe-%s" % label)
wfd = os.open(wpath, os.O_RDWR | os.O_CREAT, 0o644)
buf = os.urandom(4096)
end = time.monotonic() + secs
while time.monotonic() < end and not os.path.exists(stop):
    t = time.perf_counter()
    fd = os.open(random.choice(files), os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)
    rd.append(time.perf_counter() - t)
    t = time.perf_counter()
    os.pwrite(wfd, buf, random.randrange(256) * 4096)
    os.fsync(wfd)
    wr.append(time.perf_counter() - t)
    time.sleep(0.002)
os.close(wfd)
os.unlink(wpath)
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000
for name, v in (("open+read+close", rd), ("write+fsync 4 KiB", wr)):
    print("%s|%s|%d|%.2f|%.2f|%.2f" % (label, name, len(v), q(v, .5), q(v, .99), max(v) * 1000))
PY
	}
	: >"$W/latency"
	rm -f "$W/stop"
	probe idle 3
	to=$((3 - GEN[$W/small]))
	drop
	probe during-rekey 3600 &
	ppid=$!
	run_timed "$W/lat-rekey" "${REKEY[new]}" -q --keyring "$W/kr$to" "$W/small"
	touch "$W/stop"
	wait "$ppid"
	note "latency: the rekey took $(cut -d' ' -f1 "$W/lat-rekey") s with the probe running"
	GEN[$W/small]=$to
	fusermount3 -u "$W/mnt"
	MNTS=()
fi

# --- table ----------------------------------------------------------------

python3 - "$R" "$W/latency" "$IMPLS" "$BIG_MB" "$SMALL_FILES" "$SMALL_SIZE" \
	"$STATUS_FILES" <<'EOF'
import os, sys
res, lat, impls, big_mb, nsmall, ssize, nstatus = sys.argv[1:8]
impls = impls.split()
best = {}
rss = {}
for line in open(res):
    row, impl, sec, kib = line.split()
    sec, kib = float(sec), int(kib)
    k = (row, impl)
    if k not in best or sec < best[k]:
        best[k] = sec
    rss[k] = max(rss.get(k, 0), kib)

def cell(row, impl, unit):
    s = best.get((row, impl))
    if s is None:
        return "-"
    if unit == "MiB/s":
        return "%.2f s (%.0f MiB/s)" % (s, int(big_mb) / max(s, 1e-3))
    return "%.2f s (%.0f files/s)" % (s, unit / max(s, 1e-3))

print()
print("| tree | " + " | ".join("rekeyfs-rekey %s" % i for i in impls) +
      " | `cp -a` + `sync` | " +
      " | ".join("ratio %s" % i for i in impls) + " |")
print("|---|" + "---:|" * (2 * len(impls) + 1))
rows = [("big", "one %s MiB file" % big_mb, "MiB/s"),
        ("small", "%s files of %s B" % (nsmall, ssize), int(nsmall)),
        ("status", "`--status`, %s files, cold" % nstatus, int(nstatus))]
for row, title, unit in rows:
    if not any((row, i) in best for i in impls):
        continue
    cp = best.get((row, "cp"))
    ratios = []
    for i in impls:
        s = best.get((row, i))
        ratios.append("%.2f×" % (cp / s) if cp and s else "")
    print("| %s | %s | %s | %s |" % (
        title, " | ".join(cell(row, i, unit) for i in impls),
        cell(row, "cp", unit) if cp else "", " | ".join(ratios)))
memrows = sorted({r for r, _ in rss if r.startswith("mem-")},
                 key=lambda r: (r.split("-")[1], int(r.split("-")[2])))
if memrows:
    print()
    print("| peak RSS | " + " | ".join(impls) + " |")
    print("|---|" + "---:|" * len(impls))
    for r in memrows:
        _, what, n = r.split("-")
        print("| %s, %s files in one directory | %s |" % (
            "rekey (all current)" if what == "rekey" else "`--status`",
            n, " | ".join("%.1f MiB (%.1f s)" % (rss[(r, i)] / 1024, best[(r, i)])
                          if (r, i) in rss else "-" for i in impls)))
    for what in ("rekey", "status"):
        ns = sorted(int(r.split("-")[2]) for r in memrows
                    if r.split("-")[1] == what)
        if len(ns) < 2:
            continue
        lo, hi = "mem-%s-%d" % (what, ns[0]), "mem-%s-%d" % (what, ns[-1])
        print("| %s growth, %d -> %d files | %s |" % (
            "rekey" if what == "rekey" else "`--status`", ns[0], ns[-1],
            " | ".join("%+.0f%%" % (100.0 * rss[(hi, i)] / rss[(lo, i)] - 100)
                       if (lo, i) in rss and (hi, i) in rss else "-"
                       for i in impls)))
for row in ("big", "small"):
    if any((row, i) in rss for i in impls):
        print("peak RSS, %s row: %s" % (row, ", ".join(
            "%s %.1f MiB" % (i, rss[(row, i)] / 1024)
            for i in impls if (row, i) in rss)))
if os.path.exists(lat) and os.path.getsize(lat):
    print()
    print("| mount latency (ms) | ops | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for line in open(lat):
        label, name, n, p50, p99, mx = line.strip().split("|")
        print("| %s, %s | %s | %s | %s | %s |" % (name, label, n, p50, p99, mx))
EOF
