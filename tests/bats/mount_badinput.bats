#!/usr/bin/env bats
# rekeyfs mount: command line, config file and bad input.  Every refusal
# exits non-zero with a message saying what is wrong, and mounts nothing.

load helpers

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
}

teardown() {
	rk_teardown
}

# try ARGS...: run rekeyfs in the foreground; it must fail before mounting
try() {
	run timeout 10 "$REKEYFS" -f "$@"
	! mountpoint -q "$MNT" || false
}

@test "--help and --version" {
	run "$REKEYFS" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"usage: rekeyfs"* ]]
	[[ "$output" == *"--keyring"* ]]
	run "$REKEYFS" -V
	[ "$status" -eq 0 ]
	[[ "$output" == "rekeyfs $(cat "$BATS_TEST_DIRNAME/../../VERSION")"* ]]
	[[ "$output" == *libfuse* ]]
}

@test "usage errors" {
	try
	[ "$status" -eq 1 ]
	[[ "$output" == *"expected BACKING and MOUNTPOINT"* ]]
	try "$BACK" "$MNT"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no keyring"* ]]
	try --bogus "$BACK" "$MNT"
	[ "$status" -eq 1 ]
}

@test "missing keyring" {
	try --keyring "$RK_TMP/nope" "$BACK" "$MNT"
	[ "$status" -eq 2 ]
	[[ "$output" == *"$RK_TMP/nope"* ]]
	[ ! -e "$BACK/.rekeyfs.conf" ]
}

@test "malformed keyring names file:line" {
	printf '[keyring]\n\n[generation 1]\nstate = maybe\nkey = %s\n' "$(rk_genkey)" > "$KR"
	chmod 600 "$KR"
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 2 ]
	[[ "$output" == *"vault.keyring:4"* ]]
	[ ! -e "$BACK/.rekeyfs.conf" ]
}

@test "group/world-readable keyring is refused" {
	chmod 644 "$KR"
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 2 ]
	[[ "$output" == *"vault.keyring"* ]]
	[ ! -e "$BACK/.rekeyfs.conf" ]
}

@test "wrong keyring for a tree is refused naming the generation" {
	rk_mount
	echo x > "$MNT/f"
	rk_unmount
	cp "$BACK/.rekeyfs.conf" "$RK_TMP/meta"
	rk_keyring "$RK_TMP/other.keyring" "" 1
	try --keyring "$RK_TMP/other.keyring" "$BACK" "$MNT"
	[ "$status" -eq 2 ]
	[[ "$output" == *"generation 1"* ]]
	[[ "$output" == *"wrong keyring"* ]]
	cmp "$RK_TMP/meta" "$BACK/.rekeyfs.conf"
}

@test "backing directory that is missing or not a directory" {
	try --keyring "$KR" "$RK_TMP/nope" "$MNT"
	[ "$status" -eq 3 ]
	[[ "$output" == *"$RK_TMP/nope"*"No such file"* ]]
	: > "$RK_TMP/file"
	try --keyring "$KR" "$RK_TMP/file" "$MNT"
	[ "$status" -eq 3 ]
	[[ "$output" == *"not a directory"* ]]
}

@test "backing directory without metadata is refused, empty or not" {
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 3 ]
	[[ "$output" == *"not a rekeyfs backing directory"*"rekeyfs --init"* ]]
	[ -z "$(ls -A "$BACK")" ]
	echo plain > "$BACK/existing"
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 3 ]
	[[ "$output" == *"not a rekeyfs backing directory"* ]]
	[ ! -e "$BACK/.rekeyfs.conf" ]
	# and --init sets up only an empty one
	run "$REKEYFS" --init --keyring "$KR" "$BACK"
	[ "$status" -eq 3 ]
	[[ "$output" == *"not empty"* ]]
	[ ! -e "$BACK/.rekeyfs.conf" ]
}

@test "mountpoint missing, not a directory, or busy" {
	try --keyring "$KR" "$BACK" "$RK_TMP/nomnt"
	[ "$status" -eq 4 ]
	[[ "$output" == *"$RK_TMP/nomnt"* ]]
	: > "$RK_TMP/mfile"
	try --keyring "$KR" "$BACK" "$RK_TMP/mfile"
	[ "$status" -eq 4 ]
	[[ "$output" == *"not a directory"* ]]
	rk_mount
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 4 ]
	[[ "$output" == *"already mounted"* ]]
	# the first mount still works
	echo ok > "$MNT/f"
	[ "$(cat "$MNT/f")" = ok ]
}

@test "bad FUSE option is refused before anything is touched" {
	try --keyring "$KR" -o no_such_option "$BACK" "$MNT"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no_such_option"* ]]
	[ -z "$(ls -A "$BACK")" ]
}

@test "--config: [mount] section, relative paths, CLI overrides" {
	mkdir "$RK_TMP/etc"
	cp "$KR" "$RK_TMP/etc/k.keyring"
	chmod 600 "$RK_TMP/etc/k.keyring"
	cat > "$RK_TMP/etc/m.conf" <<EOF
[mount]
backing = ../back
mountpoint = ../mnt
keyring = k.keyring
options = default_permissions
EOF
	"$REKEYFS" --init --config "$RK_TMP/etc/m.conf"
	"$REKEYFS" -f --config "$RK_TMP/etc/m.conf" >> "$LOG" 2>&1 &
	RK_PIDS+=("$!")
	for i in $(seq 1 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
	mountpoint -q "$MNT"
	echo hi > "$MNT/f"
	grep " $MNT " /proc/mounts | grep -q default_permissions
	rk_unmount
	# a config with an error names file:line
	printf '[mount]\nbacking = %s\nbogus = 1\n' "$BACK" > "$RK_TMP/bad.conf"
	try --config "$RK_TMP/bad.conf"
	[ "$status" -eq 1 ]
	[[ "$output" == *"bad.conf:3"* ]]
	# the documented example parses
	sed -e "s|^backing = .*|backing = $BACK|" -e "s|^mountpoint = .*|mountpoint = $MNT|" \
		-e "s|^keyring = .*|keyring = $KR|" -e '/^passphrase/d' -e 's|^options = .*|options = default_permissions|' \
		"$BATS_TEST_DIRNAME/../../etc/rekeyfs.conf.example" > "$RK_TMP/ex.conf"
	"$REKEYFS" -f --config "$RK_TMP/ex.conf" >> "$LOG" 2>&1 &
	RK_PIDS+=("$!")
	for i in $(seq 1 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
	[ "$(cat "$MNT/f")" = hi ]
}

@test "daemonises without -f and unmounts cleanly" {
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	run "$REKEYFS" --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -eq 0 ]
	for i in $(seq 1 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
	mountpoint -q "$MNT"
	echo bg > "$MNT/f"
	pid=$(pgrep -f -x "$REKEYFS --keyring $KR $BACK $MNT")
	[ -n "$pid" ]
	# core dumps are off
	grep -q '^Max core file size *0 *0' /proc/"$pid"/limits
	rk_unmount
	for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	! kill -0 "$pid" 2>/dev/null || false
	[ "$(head -c 6 "$BACK/f")" = RKEYFS ]
}

@test "-s (single-threaded) and -d (debug) mounts work" {
	rk_mount -s
	head -c 3000000 /dev/urandom > "$RK_TMP/src"
	cp "$RK_TMP/src" "$MNT/f"
	ln "$MNT/f" "$MNT/g"
	cmp "$RK_TMP/src" "$MNT/g"
	rk_unmount
	rk_mount -d
	cmp "$RK_TMP/src" "$MNT/f"
	dd if=/dev/zero of="$MNT/h" bs=1M count=2 status=none
	rk_unmount
	# debug output shows the negotiated 1 MiB writes
	grep -q "max_write=0x00100000" "$LOG"
	# a WRITE request carrying 1 MiB (+ 80 bytes of headers)
	grep -qE "opcode: WRITE \(16\), nodeid: [0-9]+, insize: 1048656" "$LOG"
}
