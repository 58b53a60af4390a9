#!/usr/bin/env bash
# make bench: rekeyfs side by side with a plain directory, gocryptfs and
# securefs, in one run.  Every round runs every row on every target, so
# noise from the rest of the machine hits all of them alike; the table shows
# medians over the rounds.  A benchmark, not a test: it exits non-zero only
# when a measurement could not be taken.
#
# Environment:
#   REKEYFS_BUILD   build directory with the rekeyfs daemon (make sets it)
#   BENCH_ROUNDS    rounds (default 5, 1 with BENCH_QUICK)
#   BENCH_SIZE_MB   sequential file size in MiB (default 512)
#   BENCH_RAND_MB   random-I/O file size in MiB (default 256)
#   BENCH_RUNTIME   seconds per random-I/O run (default 10)
#   BENCH_FILES     small files per round (default 5000)
#   BENCH_TARGETS   subset of "plain rekeyfs gocryptfs securefs"
#   BENCH_ROWS      subset of the rows (seq_write seq_read rand_read
#                   rand_write small_create small_stat small_read
#                   small_delete); seq_read needs seq_write, the small_*
#                   rows need small_create
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
else
	ROUNDS=${BENCH_ROUNDS:-5}
	SIZE_MB=${BENCH_SIZE_MB:-512}
	RAND_MB=${BENCH_RAND_MB:-256}
	RUNTIME=${BENCH_RUNTIME:-10}
	NFILES=${BENCH_FILES:-5000}
fi
TARGETS=${BENCH_TARGETS:-plain rekeyfs gocryptfs securefs}
BASE=${BENCH_DIR:-/var/tmp}
PASS=bench

die() {
	echo "bench: $*" >&2
	exit 1
}

for v in ROUNDS SIZE_MB RAND_MB RUNTIME NFILES; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, not '${!v}'"
done
for t in $TARGETS; do
	case $t in
	plain | rekeyfs | gocryptfs | securefs) ;;
	*) die "unknown target '$t' in BENCH_TARGETS (plain rekeyfs gocryptfs securefs)" ;;
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

m_fio() {
	local d=$1 rw=$2 kind=$3 out=$WORK/fio.json
	drop_caches
	fio --name=bench --filename="$d/rand.dat" --rw="$rw" --bs=4k \
		--size="${RAND_MB}M" --runtime="$RUNTIME" --time_based \
		--ioengine=psync --direct=0 --end_fsync=1 \
		--output-format=json --output="$out" >/dev/null 2>"$WORK/fio.err" ||
		{ cat "$WORK/fio.err" >&2; return 1; }
	python3 "$LIB" fio-iops "$out" "$kind"
}
m_rand_read() { m_fio "$1" randread read; }
m_rand_write() { m_fio "$1" randwrite write; }

m_small_create() { python3 "$LIB" small create "$1" "$NFILES"; }
m_small_stat() { drop_caches; python3 "$LIB" small stat "$1" "$NFILES"; }
m_small_read() { drop_caches; python3 "$LIB" small read "$1" "$NFILES"; }
m_small_delete() { python3 "$LIB" small delete "$1" "$NFILES"; }

ALL_ROWS="seq_write seq_read rand_read rand_write small_create small_stat small_read small_delete"
ROWS=${BENCH_ROWS:-$ALL_ROWS}
for row in $ROWS; do
	[[ " $ALL_ROWS " == *" $row "* ]] || die "unknown row '$row' in BENCH_ROWS ($ALL_ROWS)"
done

# --- run ---------------------------------------------------------------------

echo "rekeyfs bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "  rounds $ROUNDS; sequential $SIZE_MB MiB; random 4 KiB on $RAND_MB MiB for ${RUNTIME}s; $NFILES small files"
echo "  backing directories in $WORK ($(findmnt -n -o FSTYPE -T "$WORK"))"
echo "  versions: $(gocryptfs -version 2>/dev/null | cut -d';' -f1); securefs $(dpkg-query -W -f "\${Version}" securefs 2>/dev/null); fio $(fio --version)"

ACTIVE=()
for t in $TARGETS; do
	if setup_target "$t"; then
		ACTIVE+=("$t")
		# the file the random-I/O rows work on
		dd if=/dev/zero of="${DIR[$t]}/rand.dat" bs=1M count="$RAND_MB" conv=fsync status=none ||
			die "$t: cannot create the random-I/O file"
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
		line="round $r/$ROUNDS  $(printf '%-9s' "$t")"
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
