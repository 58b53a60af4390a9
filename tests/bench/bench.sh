#!/usr/bin/env bash
# make bench: rekeyfs side by side with a plain directory, libfuse's
# passthrough_ll example (FUSE without crypto: the ceiling for any FUSE
# filesystem), gocryptfs and securefs, in one run.  Every round runs every
# row on every target, so noise from the rest of the machine hits all of
# them alike; the table shows medians over the rounds.  A benchmark, not a
# test: it exits non-zero only when a measurement could not be taken.
#
# Environment:
#   REKEYFS_BUILD   build directory with the rekeyfs daemon (make sets it)
#   BENCH_ROUNDS    rounds (default 5, 1 with BENCH_QUICK)
#   BENCH_SIZE_MB   sequential file size in MiB (default 512)
#   BENCH_RAND_MB   random-I/O file size in MiB (default 256)
#   BENCH_RUNTIME   seconds per random-I/O run (default 10)
#   BENCH_FILES     small files per round (default 5000)
#   BENCH_TREE_FILES files in the untar tree (default 5500): the first
#                   regular files of /usr/include in path order, repeated
#                   in numbered copies when it holds fewer
#   BENCH_TARGETS   subset of "plain passthrough_ll rekeyfs gocryptfs
#                   securefs"; passthrough_ll is compiled into
#                   $REKEYFS_BUILD/bench from the example source that
#                   libfuse3-dev ships, and left out when that is missing
#   BENCH_ROWS      subset of the rows, in this order by default:
#                     seq_write      dd 1 MiB blocks + fsync (MiB/s)
#                     seq_read       the same file, cold (MiB/s)
#                     rand_read      fio 4 KiB random reads (IOPS)
#                     rand_write     fio 4 KiB random writes (IOPS)
#                     rand_write_2j  the same with 2 jobs, a file each (IOPS)
#                     small_create   create small files (files/s)
#                     small_stat     stat them, cold (files/s)
#                     small_read     read them, cold (files/s)
#                     small_delete   unlink them (files/s)
#                     untar          tar -xf of the tree (files/s)
#                     ls_lr          ls -lR of the tree, cold (files/s)
#                     rm_rf          rm -rf of the tree (files/s)
#                   seq_read needs seq_write, small_stat, small_read and
#                   small_delete need small_create, ls_lr and rm_rf need
#                   untar
#   BENCH_DIR       where backing directories go (default /var/tmp)
#   BENCH_QUICK=1   tiny sizes: a smoke run of the whole pipeline
#   BENCH_KEEP=1    keep the work directory (it is printed)

set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
BUILD=${REKEYFS_BUILD:-$TOP/build}
LIB=$HERE/benchlib.py

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-1}
	SIZE_MB=${BENCH_SIZE_MB:-16}
	RAND_MB=${BENCH_RAND_MB:-8}
	RUNTIME=${BENCH_RUNTIME:-1}
	NFILES=${BENCH_FILES:-200}
	TREE_FILES=${BENCH_TREE_FILES:-300}
else
	ROUNDS=${BENCH_ROUNDS:-5}
	SIZE_MB=${BENCH_SIZE_MB:-512}
	RAND_MB=${BENCH_RAND_MB:-256}
	RUNTIME=${BENCH_RUNTIME:-10}
	NFILES=${BENCH_FILES:-5000}
	TREE_FILES=${BENCH_TREE_FILES:-5500}
fi
ALL_TARGETS="plain passthrough_ll rekeyfs gocryptfs securefs"
TARGETS=${BENCH_TARGETS:-$ALL_TARGETS}
BASE=${BENCH_DIR:-/var/tmp}
PASS=bench

die() {
	echo "bench: $*" >&2
	exit 1
}

for v in ROUNDS SIZE_MB RAND_MB RUNTIME NFILES TREE_FILES; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, not '${!v}'"
done
for t in $TARGETS; do
	case $t in
	plain | passthrough_ll | rekeyfs | gocryptfs | securefs) ;;
	*) die "unknown target '$t' in BENCH_TARGETS ($ALL_TARGETS)" ;;
	esac
done

# --- tools ------------------------------------------------------------------

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have fio || need_pkgs+=(fio)
have python3 || need_pkgs+=(python3)
have fusermount3 || need_pkgs+=(fuse3)
[[ " $TARGETS " == *" gocryptfs "* ]] && ! have gocryptfs && need_pkgs+=(gocryptfs)
[[ " $TARGETS " == *" securefs "* ]] && ! have securefs && need_pkgs+=(securefs)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${need_pkgs[*]}; install them (apt-get install ${need_pkgs[*]}) or run as root"
	echo "bench: installing ${need_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}" >/dev/null ||
		die "apt-get install ${need_pkgs[*]} failed"
fi
[ -c /dev/fuse ] || die "/dev/fuse is missing; FUSE targets cannot be mounted"

CAN_DROP=0
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
	CAN_DROP=1
else
	echo "bench: not root: caches cannot be dropped, 'cold' rows are warm" >&2
fi

drop_caches() {
	sync
	[ $CAN_DROP = 1 ] && echo 3 >/proc/sys/vm/drop_caches
	return 0
}

# --- work directory, mounts, cleanup ---------------------------------------

WORK=$(mktemp -d "$BASE/rekeyfs-bench.XXXXXX") || die "cannot create a directory in $BASE"
chmod 700 "$WORK"
# Each target's directories in block groups of their own.  All targets
# share one filesystem, and ext4 without a journal skips inodes freed in
# the last minutes when it allocates (recently_deleted(): 60 s, 360 s while
# their inode-table block is dirty), rescanning them on every create.  In
# one block group, the files a target just deleted would slow the next
# target's creates (measured: 5,000 creates after 5,000 deletes in a
# sibling directory, 1,700 files/s; in another group, 44,000).  The
# directory flag that makes ext4 spread subdirectories across groups keeps
# the targets apart; ext4 with a journal has no such effect to avoid.
SPREAD="no (not ext2/3/4)"
chattr +T "$WORK" 2>/dev/null && SPREAD=yes
MOUNTS=()
PIDS=()

cleanup() {
	local m pid i
	for m in "${MOUNTS[@]}"; do
		if mountpoint -q "$m"; then
			fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null ||
				umount -l "$m" 2>/dev/null
		fi
	done
	for pid in "${PIDS[@]}"; do
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$pid" 2>/dev/null
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_mount MNT PID LOG: wait up to 15 s for MNT to be a mount point.
wait_mount() {
	local mnt=$1 pid=$2 log=$3 i
	for i in $(seq 1 150); do
		mountpoint -q "$mnt" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "bench: daemon for $mnt exited; its log:" >&2
			sed 's/^/  /' "$log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "bench: $mnt did not come up" >&2
	return 1
}

# start_daemon MNT LOG CMD...: run a foreground FUSE daemon in the background.
start_daemon() {
	local mnt=$1 log=$2
	shift 2
	"$@" >"$log" 2>&1 </dev/null &
	local pid=$!
	PIDS+=("$pid")
	MOUNTS+=("$mnt")
	wait_mount "$mnt" "$pid" "$log"
}

# build_passthrough_ll: compile libfuse's passthrough_ll example (shipped as
# documentation by libfuse3-dev, possibly gzipped) into $BUILD/bench, so the
# binary always matches the installed libfuse.  Sets PTLL; returns 1 with a
# note when the source or a compiler is missing.
PTLL_SRC=/usr/share/doc/libfuse3-dev/examples
PTLL=
build_passthrough_ll() {
	local src=$WORK/passthrough_ll.src f
	[ -n "$PTLL" ] && return 0
	mkdir -p "$src"
	for f in passthrough_ll.c passthrough_helpers.h; do
		if [ -f "$PTLL_SRC/$f" ]; then
			cp "$PTLL_SRC/$f" "$src/$f"
		elif [ -f "$PTLL_SRC/$f.gz" ]; then
			gzip -dc "$PTLL_SRC/$f.gz" >"$src/$f"
		else
			echo "bench: $PTLL_SRC/$f is missing (package libfuse3-dev, or a" \
				"dpkg path-exclude for /usr/share/doc); passthrough_ll skipped" >&2
			return 1
		fi
	done
	if ! have cc || ! have pkg-config; then
		echo "bench: cc or pkg-config is missing; passthrough_ll skipped" >&2
		return 1
	fi
	mkdir -p "$BUILD/bench"
	# shellcheck disable=SC2046 # pkg-config prints several words
	cc -O2 -w -I"$src" -o "$BUILD/bench/passthrough_ll" "$src/passthrough_ll.c" \
		$(pkg-config --cflags --libs fuse3) >"$WORK/passthrough_ll.cc.log" 2>&1 || {
		echo "bench: passthrough_ll did not compile; passthrough_ll skipped:" >&2
		sed 's/^/  /' "$WORK/passthrough_ll.cc.log" >&2
		return 1
	}
	PTLL=$BUILD/bench/passthrough_ll
}

# setup_target T: create and mount T; set DIR_T (the directory to measure).
declare -A DIR
setup_target() {
	local t=$1 back=$WORK/$1.back mnt=$WORK/$1.mnt log=$WORK/$1.log
	mkdir -p "$back" "$mnt"
	case $t in
	plain)
		DIR[$t]=$back
		return 0
		;;
	passthrough_ll)
		build_passthrough_ll || return 1
		# default options, like every other target: multithreaded,
		# attribute and entry timeouts of 1 s, no writeback cache
		start_daemon "$mnt" "$log" "$PTLL" -f -o source="$back" "$mnt" || return 1
		;;
	rekeyfs)
		[ -x "$BUILD/rekeyfs" ] || {
			echo "bench: $BUILD/rekeyfs is not built; rekeyfs skipped" >&2
			return 1
		}
		local kr=$WORK/bench.keyring
		(
			umask 077
			printf '[keyring]\nprimary = 1\n\n[generation 1]\nstate = enabled\ncreated = %s\nkey = base64:%s\n' \
				"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(head -c 32 /dev/urandom | base64 -w0)" >"$kr"
		)
		[ -e "$back/.rekeyfs.conf" ] ||
			"$BUILD/rekeyfs" --init --keyring "$kr" "$back" >>"$log" 2>&1 || return 1
		start_daemon "$mnt" "$log" "$BUILD/rekeyfs" -f --keyring "$kr" "$back" "$mnt" || return 1
		;;
	gocryptfs)
		gocryptfs -q -init -extpass "echo $PASS" -scryptn 10 "$back" >"$log" 2>&1 ||
			{ cat "$log" >&2; return 1; }
		start_daemon "$mnt" "$log" gocryptfs -f -q -extpass "echo $PASS" "$back" "$mnt" || return 1
		;;
	securefs)
		securefs create --pass "$PASS" "$back" >"$log" 2>&1 ||
			{ cat "$log" >&2; return 1; }
		start_daemon "$mnt" "$log" securefs mount --pass "$PASS" "$back" "$mnt" || return 1
		;;
	esac
	DIR[$t]=$mnt
}

# --- measurements: each prints one number, higher is better ----------------

now() { echo "$EPOCHREALTIME"; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f\n", n / (b - a) }'; }

m_seq_write() {
	local d=$1 t0 t1
	rm -f "$d/seq.dat"
	sync
	t0=$(now)
	dd if=/dev/zero of="$d/seq.dat" bs=1M count="$SIZE_MB" conv=fsync status=none || return 1
	t1=$(now)
	rate "$SIZE_MB" "$t0" "$t1"
}

m_seq_read() {
	local d=$1 t0 t1 n
	drop_caches
	t0=$(now)
	n=$(dd if="$d/seq.dat" bs=1M status=none | wc -c) || return 1
	t1=$(now)
	[ "$n" = $((SIZE_MB * 1048576)) ] || { echo "bench: read $n bytes of $d/seq.dat" >&2; return 1; }
	rate "$SIZE_MB" "$t0" "$t1"
}

# m_fio DIR RW KIND [FIO OPTION...]: one fio run, prints the IOPS summed
# over its jobs.  The default file is DIR/rand.dat, made at setup.
m_fio() {
	local d=$1 rw=$2 kind=$3 out=$WORK/fio.json
	shift 3
	[ $# -gt 0 ] || set -- --filename="$d/rand.dat" --size="${RAND_MB}M"
	drop_caches
	fio --name=bench "$@" --rw="$rw" --bs=4k \
		--runtime="$RUNTIME" --time_based \
		--ioengine=psync --direct=0 --end_fsync=1 \
		--output-format=json --output="$out" >/dev/null 2>"$WORK/fio.err" ||
		{ cat "$WORK/fio.err" >&2; return 1; }
	python3 "$LIB" fio-iops "$out" "$kind"
}
m_rand_read() { m_fio "$1" randread read; }
m_rand_write() { m_fio "$1" randwrite write; }
# two writers at once, each on its own half-size file (rand2.0.dat and
# rand2.1.dat, made at setup), so the data set is that of rand_write
RAND2_MB=$(((RAND_MB + 1) / 2))
m_rand_write_2j() {
	# shellcheck disable=SC2016 # $jobnum is fio's, not the shell's
	m_fio "$1" randwrite write --numjobs=2 --directory="$1" \
		--filename_format='rand2.$jobnum.dat' --size="${RAND2_MB}M"
}

m_small_create() { python3 "$LIB" small create "$1" "$NFILES"; }
m_small_stat() { drop_caches; python3 "$LIB" small stat "$1" "$NFILES"; }
m_small_read() { drop_caches; python3 "$LIB" small read "$1" "$NFILES"; }
m_small_delete() { python3 "$LIB" small delete "$1" "$NFILES"; }

# The tree: TREE_TAR holds TREE_FILES regular files (made once per run, see
# BENCH_TREE_FILES); untar extracts it into DIR/tree as a user would (no
# chown), without a sync, ls_lr lists it cold, rm_rf removes it.
TREE_TAR=
m_untar() {
	local d=$1 t0 t1
	if [ -e "$d/tree" ]; then
		rm -rf "$d/tree" || return 1
	fi
	mkdir "$d/tree" || return 1
	cat "$TREE_TAR" >/dev/null # the tarball itself comes from the page cache
	t0=$(now)
	tar -C "$d/tree" --no-same-owner -xf "$TREE_TAR" || return 1
	t1=$(now)
	rate "$TREE_FILES" "$t0" "$t1"
}
m_ls_lr() {
	local d=$1 t0 t1 n
	[ -d "$d/tree" ] || { echo "bench: $d/tree is missing (ls_lr needs untar)" >&2; return 1; }
	drop_caches
	t0=$(now)
	ls -lR "$d/tree" >/dev/null || return 1
	t1=$(now)
	n=$(find "$d/tree" -type f | wc -l)
	[ "$n" = "$TREE_FILES" ] || { echo "bench: $d/tree holds $n of $TREE_FILES files" >&2; return 1; }
	rate "$TREE_FILES" "$t0" "$t1"
}
m_rm_rf() {
	local d=$1 t0 t1
	[ -d "$d/tree" ] || { echo "bench: $d/tree is missing (rm_rf needs untar)" >&2; return 1; }
	t0=$(now)
	rm -rf "$d/tree" || return 1
	t1=$(now)
	[ ! -e "$d/tree" ] || return 1
	rate "$TREE_FILES" "$t0" "$t1"
}

ALL_ROWS="seq_write seq_read rand_read rand_write rand_write_2j small_create small_stat small_read small_delete untar ls_lr rm_rf"
ROWS=${BENCH_ROWS:-$ALL_ROWS}
for row in $ROWS; do
	[[ " $ALL_ROWS " == *" $row "* ]] || die "unknown row '$row' in BENCH_ROWS ($ALL_ROWS)"
done
# rows that work on what an earlier row left behind
for dep in seq_read:seq_write small_stat:small_create small_read:small_create \
	small_delete:small_create ls_lr:untar rm_rf:untar; do
	row=${dep%%:*} first=${dep#*:}
	[[ " $ROWS " != *" $row "* || " $ROWS " == *" $first "*"$row "* ]] ||
		die "BENCH_ROWS: $row needs $first before it"
done

# --- run ---------------------------------------------------------------------

if [[ " $ROWS " == *" untar "* ]]; then
	TREE_TAR=$WORK/tree.tar
	tree_info=$(python3 "$LIB" mktree "$TREE_TAR" /usr/include "$TREE_FILES") ||
		die "cannot build the untar tree from /usr/include"
else
	tree_info="not built"
fi
echo "rekeyfs bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "  rounds $ROUNDS; sequential $SIZE_MB MiB; random 4 KiB on $RAND_MB MiB for ${RUNTIME}s; $NFILES small files"
echo "  untar tree: $tree_info"
echo "  backing directories in $WORK ($(findmnt -n -o FSTYPE -T "$WORK"); a block group per target: $SPREAD)"
echo "  versions: libfuse $(pkg-config --modversion fuse3 2>/dev/null); $(gocryptfs -version 2>/dev/null | cut -d';' -f1); securefs $(dpkg-query -W -f "\${Version}" securefs 2>/dev/null); fio $(fio --version)"

ACTIVE=()
for t in $TARGETS; do
	if setup_target "$t"; then
		ACTIVE+=("$t")
		# the files the random-I/O rows work on
		files=
		case " $ROWS " in
		*" rand_read "* | *" rand_write "*) files="rand.dat:$RAND_MB" ;;
		esac
		[[ " $ROWS " == *" rand_write_2j "* ]] &&
			files+=" rand2.0.dat:$RAND2_MB rand2.1.dat:$RAND2_MB"
		for f in $files; do
			dd if=/dev/zero of="${DIR[$t]}/${f%%:*}" bs=1M count="${f#*:}" conv=fsync status=none ||
				die "$t: cannot create the random-I/O file ${f%%:*}"
		done
	else
		echo "bench: $t could not be set up; left out of the table" >&2
	fi
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no target could be set up"

RES=$WORK/results.tsv
: >"$RES"
FAILS=0
n=${#ACTIVE[@]}
for r in $(seq 1 "$ROUNDS"); do
	# rotate the order each round so no target always runs first
	for i in $(seq 0 $((n - 1))); do
		t=${ACTIVE[$(((i + r - 1) % n))]}
		line="round $r/$ROUNDS  $(printf '%-14s' "$t")"
		for row in $ROWS; do
			if v=$("m_$row" "${DIR[$t]}") && [ -n "$v" ]; then
				:
			else
				v=fail
				FAILS=$((FAILS + 1))
				echo "bench: $t $row failed" >&2
			fi
			echo "$r $t $row $v" >>"$RES"
			line+="  $row=$v"
		done
		echo "$line"
	done
done

echo
python3 "$LIB" table "$RES" | tee "$WORK/table.md"
status=$?
mkdir -p "$BUILD" && cp "$RES" "$BUILD/bench-results.tsv" && cp "$WORK/table.md" "$BUILD/bench-table.md" &&
	echo "raw results: $BUILD/bench-results.tsv, table: $BUILD/bench-table.md"
[ $FAILS = 0 ] && [ $status = 0 ] || exit 1
exit 0
