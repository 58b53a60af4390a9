# Shared helpers for the rekeyfs end-to-end tests.
#
# Every test gets its own directory under /tmp (RK_TMP) with a backing
# directory, a mountpoint and a keyring, and rk_teardown always unmounts
# whatever the test mounted, even after a failure.

RK_BUILD=${REKEYFS_BUILD:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/build}
REKEYFS=$RK_BUILD/rekeyfs
REKEYFS_REKEY=$RK_BUILD/rekeyfs-rekey
REKEYFS_KEY=$RK_BUILD/rekeyfs-key
RK_FIXTURES=$(cd "$BATS_TEST_DIRNAME/../fixtures" 2>/dev/null && pwd)

# rk_setup: make RK_TMP with back/, mnt/ and an empty keyring path.
rk_setup() {
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	[ -x "$REKEYFS" ] || skip "rekeyfs not built ($REKEYFS)"
	rk_setup_dirs
}

# rk_setup_tools: like rk_setup, for tests that only run rekeyfs-key and
# do not mount (they run even where the daemon is missing).
rk_setup_tools() {
	[ -x "$REKEYFS_KEY" ] || skip "rekeyfs-key not built ($REKEYFS_KEY)"
	rk_setup_dirs
}

rk_setup_dirs() {
	# Set up twice (in setup() and again in the test): keep the first
	# directory, which rk_teardown removes, and what points into it.
	if [ -n "${RK_TMP:-}" ] && [ -d "$RK_TMP" ]; then
		BACK=$RK_TMP/back MNT=$RK_TMP/mnt
		KR=$RK_TMP/vault.keyring LOG=$RK_TMP/daemon.log
		mkdir -p "$BACK" "$MNT"
		return 0
	fi
	RK_TMP=$(mktemp -d "/tmp/rekeyfs-test.${RK_RUN_TAG:-0}.XXXXXX")
	chmod 755 "$RK_TMP"
	BACK=$RK_TMP/back
	MNT=$RK_TMP/mnt
	KR=$RK_TMP/vault.keyring
	LOG=$RK_TMP/daemon.log
	mkdir -p "$BACK" "$MNT"
	RK_PIDS=()
}

# rk_teardown: unmount everything below RK_TMP, stop daemons, remove RK_TMP.
rk_teardown() {
	[ -n "${RK_TMP:-}" ] || return 0
	local m
	while read -r m; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done < <(awk -v p="$RK_TMP" '$2 ~ "^"p {print $2}' /proc/mounts | sort -r)
	local pid
	for pid in "${RK_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${RK_PIDS[@]}"; do
		timeout 5 tail -s 0.05 --pid="$pid" -f /dev/null 2>/dev/null
	done
	rm -rf "$RK_TMP"
}

# rk_genkey: print a fresh key as base64:...
rk_genkey() {
	printf 'base64:%s\n' "$(head -c 32 /dev/urandom | base64 -w0)"
}

# rk_keyring FILE PRIMARY GEN...: write a keyring with inline fresh keys for
# each GEN (mode 0600).  PRIMARY may be "" for the default (highest).
rk_keyring() {
	local file=$1 primary=$2 g
	shift 2
	{
		echo "[keyring]"
		[ -n "$primary" ] && echo "primary = $primary"
		for g in "$@"; do
			printf '\n[generation %s]\nstate = enabled\ncreated = 2026-11-01T00:00:00Z\nkey = %s\n' "$g" "$(rk_genkey)"
		done
	} > "$file"
	chmod 600 "$file"
}

# rk_mount [ARGS...]: mount BACK on MNT with KR in the foreground (logging to
# LOG) and wait until the mount is up.  Extra ARGS go to rekeyfs.
rk_mount() {
	rk_mount_at "$BACK" "$MNT" --keyring "$KR" "$@"
}

# rk_mount_at BACK MNT ARGS...: like rk_mount for any pair of directories.
# A mount never sets up a backing directory, so an empty BACK without
# .rekeyfs.conf is set up first with rekeyfs --init and the same ARGS
# (mount-only options are ignored there); tests of set-up itself call
# rekeyfs directly.
rk_mount_at() {
	local back=$1 mnt=$2
	shift 2
	if [ ! -e "$back/.rekeyfs.conf" ] && [ -z "$(ls -A "$back" 2>/dev/null)" ]; then
		if ! "$REKEYFS" --init "$@" "$back" >>"$LOG" 2>&1 </dev/null; then
			echo "rekeyfs --init failed; log:" >&2
			cat "$LOG" >&2
			return 1
		fi
	fi
	"$REKEYFS" -f "$@" "$back" "$mnt" >>"$LOG" 2>&1 &
	local pid=$!
	RK_PIDS+=("$pid")
	local i
	for i in $(seq 1 100); do
		if mountpoint -q "$mnt"; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "rekeyfs exited early; log:" >&2
			cat "$LOG" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "mount did not come up; log:" >&2
	cat "$LOG" >&2
	return 1
}

# rk_unmount [MNT]: unmount and wait for the daemon to exit.
rk_unmount() {
	local mnt=${1:-$MNT}
	fusermount3 -u "$mnt"
	local i
	for i in $(seq 1 100); do
		mountpoint -q "$mnt" || break
		sleep 0.05
	done
	! mountpoint -q "$mnt"
}

# rk_daemon_pid [MNT]: pid of the rekeyfs serving MNT (most recent rk_mount).
rk_daemon_pid() {
	echo "${RK_PIDS[-1]}"
}

# rk_header_gen FILE: the key generation recorded in a backing file's header.
rk_header_gen() {
	od -An -tu1 -j8 -N4 "$1" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}'
}

# rk_add_gen N [STATE]: append generation N (default state enabled) with a
# fresh inline key to KR; the keyring stays mode 0600.
rk_add_gen() {
	printf '\n[generation %s]\nstate = %s\ncreated = 2026-11-02T00:00:00Z\nkey = %s\n' \
		"$1" "${2:-enabled}" "$(rk_genkey)" >>"$KR"
	chmod 600 "$KR"
}

# rk_reload_to N: SIGHUP the daemon and wait until it reports primary N.
rk_reload_to() {
	kill -HUP "$(rk_daemon_pid)"
	local i
	for i in $(seq 1 100); do
		grep -q "primary generation $1 " "$LOG" && return 0
		sleep 0.05
	done
	echo "daemon did not reload to generation $1" >&2
	cat "$LOG" >&2
	return 1
}
