#!/usr/bin/env bats
# Mounting the way Linux mounts: explicit set-up (rekeyfs --init), options
# parsed as fstab and mount.fuse3 pass them, /etc/fstab and
# mount -t fuse.rekeyfs, checks before anything is touched, -o idle, and
# systemd's readiness notification and credentials.

load helpers

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
	SBIN_LINK=
}

teardown() {
	rk_teardown
	# the link made for mount.fuse3 (see sbin_link), if it is still ours
	if [ -n "$SBIN_LINK" ] && [ -L "$SBIN_LINK" ] &&
		[ "$(readlink "$SBIN_LINK")" = "$REKEYFS" ]; then
		rm -f "$SBIN_LINK"
	fi
}

# wait_mounted [MNT]: wait until MNT (default MNT) is a mount point.
wait_mounted() {
	local m=${1:-$MNT} i
	for i in $(seq 1 100); do
		mountpoint -q "$m" && return 0
		sleep 0.05
	done
	cat "$LOG" >&2
	return 1
}

# wait_unmounted SECONDS [MNT]
wait_unmounted() {
	local i
	for i in $(seq 1 $(($1 * 20))); do
		mountpoint -q "${2:-$MNT}" || return 0
		sleep 0.05
	done
	cat "$LOG" >&2
	return 1
}

# snapshot DIR: names, modes, sizes, times and contents of DIR.
snapshot() {
	(cd "$1" && find . -printf '%p %m %s %T@ %C@\n' | sort &&
		find . -type f -exec sha256sum {} + | sort)
}

# mount.fuse3 runs the program named by the type's subtype ("rekeyfs")
# through /bin/sh, and mount(8) calls it without PATH, so the shell's
# default path applies: link the build into its first directory for the
# test.  Skips when an installed rekeyfs is there already.
sbin_link() {
	command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ] || skip "no mount.fuse3"
	local l=/usr/local/sbin/rekeyfs
	if [ -e "$l" ] || [ -L "$l" ]; then
		[ "$(readlink "$l")" = "$REKEYFS" ] || skip "$l exists (an installed rekeyfs)"
	else
		mkdir -p /usr/local/sbin
		ln -s "$REKEYFS" "$l"
	fi
	SBIN_LINK=$l
}

# daemon_of MNT: pid of the rekeyfs whose command line names MNT.
daemon_of() {
	pgrep -f "rekeyfs .*$1" | head -1
}

@test "a mount never sets up a directory; rekeyfs --init does, once" {
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 3 ]
	[[ "$output" == *"not a rekeyfs backing directory"* ]]
	[[ "$output" == *"rekeyfs --init --keyring $KR $BACK"* ]]
	! mountpoint -q "$MNT" || false
	[ -z "$(ls -A "$BACK")" ]
	chmod 755 "$BACK"

	run "$REKEYFS" --init --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	[[ "$output" == *"set up $BACK"* ]]
	[ -f "$BACK/.rekeyfs.conf" ]
	[ "$(stat -c %a "$BACK")" = 700 ]
	grep -q '^\[generation 1\]' "$BACK/.rekeyfs.conf"
	cp "$BACK/.rekeyfs.conf" "$RK_TMP/meta"

	# again: nothing to do, not an error; another keyring: refused
	run "$REKEYFS" --init --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	[[ "$output" == *"already set up"* ]]
	rk_keyring "$RK_TMP/other.keyring" "" 1
	run "$REKEYFS" --init --keyring "$RK_TMP/other.keyring" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"wrong keyring"* ]]
	cmp "$RK_TMP/meta" "$BACK/.rekeyfs.conf"

	# a non-empty directory is never set up
	mkdir "$RK_TMP/full"
	echo plain > "$RK_TMP/full/x"
	run "$REKEYFS" --init --keyring "$KR" "$RK_TMP/full"
	[ "$status" -eq 3 ]
	[[ "$output" == *"not empty"* ]]
	[ ! -e "$RK_TMP/full/.rekeyfs.conf" ]
	# usage
	run "$REKEYFS" --init --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 1 ]
	run "$REKEYFS" --init "$BACK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"rekeyfs-key init"* ]]

	rk_mount
	echo hello > "$MNT/f"
	rk_unmount
	[ "$(head -c 6 "$BACK/f")" = RKEYFS ]
}

@test "--init from a config file" {
	printf '[mount]\nbacking = %s\nmountpoint = %s\nkeyring = %s\n' "$BACK" "$MNT" "$KR" > "$RK_TMP/m.conf"
	run "$REKEYFS" --init --config "$RK_TMP/m.conf"
	[ "$status" -eq 0 ]
	[ -f "$BACK/.rekeyfs.conf" ]
	! mountpoint -q "$MNT" || false
}

@test "options before and after the paths, in every spelling" {
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	"$REKEYFS" "$BACK" -o default_permissions "$MNT" -f --keyring="$KR" >>"$LOG" 2>&1 &
	RK_PIDS+=("$!")
	wait_mounted
	grep " $MNT " /proc/mounts | grep -q default_permissions
	echo one > "$MNT/f"
	rk_unmount
	# every [mount] setting as -o, fstab's own words ignored
	"$REKEYFS" "$BACK" "$MNT" -f -o "keyring=$KR,x-systemd.automount,x-systemd.requires=a.service,nofail,_netdev,noauto,comment=x,defaults" >>"$LOG" 2>&1 &
	RK_PIDS+=("$!")
	wait_mounted
	[ "$(cat "$MNT/f")" = one ]
	rk_unmount
	mkdir "$RK_TMP/etc"
	printf '[mount]\nkeyring = %s\n' "$KR" > "$RK_TMP/etc/k.conf"
	"$REKEYFS" -o "config=$RK_TMP/etc/k.conf" "$BACK" "$MNT" -f >>"$LOG" 2>&1 &
	RK_PIDS+=("$!")
	wait_mounted
	[ "$(cat "$MNT/f")" = one ]
}

@test "option errors are found before anything is touched" {
	# an empty directory stays empty, an initialised one unchanged
	run timeout 10 "$REKEYFS" -f --keyring "$KR" -o no_such_option "$BACK" "$MNT"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no_such_option"* ]]
	[ -z "$(ls -A "$BACK")" ]
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	snapshot "$BACK" > "$RK_TMP/before"
	sleep 0.05
	for bad in "-o no_such_option" "-o idle=soon" "-o idle=5x" "--bogus" \
		"-o keyring" "--keyring"; do
		# shellcheck disable=SC2086
		run timeout 10 "$REKEYFS" -f $bad "$BACK" "$MNT" --keyring "$KR"
		echo "$bad: $status: $output"
		[ "$status" -eq 1 ]
		! mountpoint -q "$MNT" || false
	done
	run timeout 10 "$REKEYFS" -f "$BACK" "$MNT" "$RK_TMP" --keyring "$KR"
	[ "$status" -eq 1 ]
	[[ "$output" == *"unexpected argument"* ]]
	snapshot "$BACK" > "$RK_TMP/after"
	diff "$RK_TMP/before" "$RK_TMP/after"
}

@test "a mountpoint equal to, inside or above the backing directory is refused" {
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	snapshot "$BACK" > "$RK_TMP/before"
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$BACK"
	[ "$status" -eq 4 ]
	[[ "$output" == *"is the backing directory itself"* ]]
	mkdir "$BACK/inner"
	snapshot "$BACK" > "$RK_TMP/before"
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$BACK/inner"
	[ "$status" -eq 4 ]
	[[ "$output" == *"inside the backing directory"* ]]
	# through a symlink too
	ln -s "$BACK" "$RK_TMP/alias"
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$RK_TMP/alias/inner"
	[ "$status" -eq 4 ]
	[[ "$output" == *"inside the backing directory"* ]]
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$RK_TMP"
	[ "$status" -eq 4 ]
	[[ "$output" == *"above the backing directory"* ]]
	! mountpoint -q "$RK_TMP" || false
	snapshot "$BACK" > "$RK_TMP/after"
	diff "$RK_TMP/before" "$RK_TMP/after"
}

@test "a backing directory mounted twice is warned about" {
	mkdir "$RK_TMP/mnt2"
	rk_mount
	rk_mount_at "$BACK" "$RK_TMP/mnt2" --keyring "$KR"
	grep -q "already mounted on $MNT" "$LOG"
}

@test "ro and rw resolve as the kernel sees them: the last one wins" {
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	printf '[mount]\nbacking = %s\nmountpoint = %s\nkeyring = %s\noptions = ro\n' \
		"$BACK" "$MNT" "$KR" > "$RK_TMP/m.conf"
	# the config says ro: a read-only mount
	"$REKEYFS" -f --config "$RK_TMP/m.conf" >>"$LOG" 2>&1 &
	RK_PIDS+=("$!")
	wait_mounted
	grep " $MNT " /proc/mounts | grep -q ' ro,'
	run touch "$MNT/x"
	[ "$status" -ne 0 ]
	rk_unmount
	# rw on the command line comes after the config's ro
	"$REKEYFS" -f --config "$RK_TMP/m.conf" -o rw >>"$LOG" 2>&1 &
	RK_PIDS+=("$!")
	wait_mounted
	grep " $MNT " /proc/mounts | grep -q ' rw,'
	echo w > "$MNT/x"
	rk_unmount
	# on the command line alone, the last one too
	"$REKEYFS" -f --keyring "$KR" -o rw,ro "$BACK" "$MNT" >>"$LOG" 2>&1 &
	RK_PIDS+=("$!")
	wait_mounted
	grep " $MNT " /proc/mounts | grep -q ' ro,'
	[ "$(cat "$MNT/x")" = w ]
	run sh -c "echo more >> '$MNT/x'"
	[ "$status" -ne 0 ]
}

@test "mount -t fuse.rekeyfs and umount" {
	sbin_link
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	run mount -t fuse.rekeyfs "$BACK" "$MNT" -o "keyring=$KR,allow_other,x-systemd.automount"
	echo "$output"
	[ "$status" -eq 0 ]
	mountpoint -q "$MNT"
	grep " $MNT fuse.rekeyfs " /proc/mounts | grep -q default_permissions
	pid=$(daemon_of "$MNT")
	[ -n "$pid" ]
	echo "via mount" > "$MNT/f"
	umount "$MNT"
	! mountpoint -q "$MNT" || false
	for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	! kill -0 "$pid" 2>/dev/null || false
	[ "$(head -c 6 "$BACK/f")" = RKEYFS ]
	# an uninitialised directory fails the mount command
	mkdir "$RK_TMP/empty"
	run mount -t fuse.rekeyfs "$RK_TMP/empty" "$MNT" -o "keyring=$KR"
	[ "$status" -ne 0 ]
	! mountpoint -q "$MNT" || false
	[ -z "$(ls -A "$RK_TMP/empty")" ]
}

@test "an /etc/fstab line: mount -T FILE MOUNTPOINT, then umount" {
	sbin_link
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	# the documented example, with this test's paths
	grep -E '^[^#].*fuse\.rekeyfs' "$BATS_TEST_DIRNAME/../../etc/fstab.example" | head -1 |
		awk -v b="$BACK" -v m="$MNT" -v k="$KR" '{
			gsub(/keyring=[^,]*/, "keyring=" k, $4); $1 = b; $2 = m; print }' > "$RK_TMP/fstab"
	cat "$RK_TMP/fstab"
	grep -q x-systemd.automount "$RK_TMP/fstab"
	run mount -T "$RK_TMP/fstab" "$MNT"
	echo "$output"
	[ "$status" -eq 0 ]
	mountpoint -q "$MNT"
	echo "via fstab" > "$MNT/g"
	[ "$(cat "$MNT/g")" = "via fstab" ]
	umount "$MNT"
	! mountpoint -q "$MNT" || false
	# a read-only line
	printf '%s %s fuse.rekeyfs ro,keyring=%s,noauto 0 0\n' "$BACK" "$MNT" "$KR" > "$RK_TMP/fstab"
	mount -T "$RK_TMP/fstab" "$MNT"
	grep " $MNT " /proc/mounts | grep -q ' ro,'
	[ "$(cat "$MNT/g")" = "via fstab" ]
	umount "$MNT"
}

@test "-o idle unmounts after that long without use, not while a file is open" {
	rk_mount -o idle=1s
	echo data > "$MNT/f"
	pid=$(rk_daemon_pid)
	# a reader that holds the file open without a request for 3 s
	sleep 30 <"$MNT/f" &
	holder=$!
	RK_PIDS+=("$holder")
	sleep 3
	mountpoint -q "$MNT"
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	wait_unmounted 10
	for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	! kill -0 "$pid" 2>/dev/null || false
	grep -q "unmounting $MNT" "$LOG"
	grep -q "unmounted $BACK from $MNT" "$LOG"
	# requests keep it mounted
	rk_mount --idle 2
	for i in $(seq 1 8); do
		cat "$MNT/f" >/dev/null
		sleep 0.5
	done
	mountpoint -q "$MNT"
	wait_unmounted 10
}

@test "systemd: READY=1 on the notify socket once mounted, STOPPING=1 at the end" {
	sock=$RK_TMP/notify.sock
	python3 - "$sock" "$RK_TMP/notified" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        msg = s.recv(4096)
        out.write(msg + b"\n--\n")
        if b"STOPPING=1" in msg:
            break
PY
	RK_PIDS+=("$!")
	for i in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	NOTIFY_SOCKET=$sock rk_mount
	for i in $(seq 1 100); do grep -q READY=1 "$RK_TMP/notified" 2>/dev/null && break; sleep 0.05; done
	grep -q '^READY=1$' "$RK_TMP/notified"
	grep -q "^MAINPID=$(rk_daemon_pid)$" "$RK_TMP/notified"
	# the mount was up when READY=1 was sent
	mountpoint -q "$MNT"
	rk_unmount
	for i in $(seq 1 100); do grep -q STOPPING=1 "$RK_TMP/notified" && break; sleep 0.05; done
	grep -q '^STOPPING=1$' "$RK_TMP/notified"
	# in the foreground, the log is stderr: the unmount is there
	grep -q "unmounted $BACK from $MNT" "$LOG"
}

@test "systemd: a sealed keyring's passphrase from \$CREDENTIALS_DIRECTORY" {
	export REKEYFS_KDF_OPS=1 REKEYFS_KDF_MEM=8M
	creds=$RK_TMP/creds
	mkdir -m 700 "$creds"
	printf 'correct horse battery staple\n' > "$creds/passphrase"
	chmod 400 "$creds/passphrase"
	rm -f "$KR"
	"$REKEYFS_KEY" init --passphrase --passphrase-file "$creds/passphrase" --keyring "$KR"
	CREDENTIALS_DIRECTORY=$creds rk_mount
	echo sealed > "$MNT/f"
	rk_unmount
	# without it, and no terminal, the mount cannot get the passphrase
	run timeout 10 setsid "$REKEYFS" -f --keyring "$KR" "$BACK" "$MNT" </dev/null
	[ "$status" -ne 0 ]
	! mountpoint -q "$MNT" || false
}

@test "the unit template runs the daemon in the foreground with a config" {
	unit=$BATS_TEST_DIRNAME/../../etc/rekeyfs@.service
	[ -f "$unit" ]
	grep -q '^Type=notify$' "$unit"
	grep -qE '^ExecStart=.*rekeyfs -f --config /etc/rekeyfs/%i\.conf' "$unit"
	if command -v systemd-analyze >/dev/null; then
		cp "$unit" "$RK_TMP/rekeyfs@.service"
		run systemd-analyze verify "$RK_TMP/rekeyfs@.service"
		echo "$output"
		! grep -qi "unknown\|invalid" <<<"$output" || false
	fi
}
