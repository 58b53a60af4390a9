#!/usr/bin/env bats
# A shared mount (-o allow_other, root daemon) whose users can reach their
# own backing files: a user who owns a backing directory can rename other
# users' backing files inside it at any moment.  None of that may let them
# read, change or take another user's file through the mount, and nothing
# a mount does may lose a write to a file a rekey replaced.

load helpers

A=2001 # the attacker
B=2002 # the victim

setup() {
	rk_setup
	command -v setpriv >/dev/null || skip "no setpriv"
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other
	# the mount root is the backing root: users may create there and
	# reach their own backing objects
	chmod 1777 "$MNT"
	as "$A" "mkdir '$MNT/shared' && chmod 1777 '$MNT/shared'"
	[ "$(stat -c %u "$BACK/shared")" = "$A" ]
}

teardown() {
	rk_teardown
}

# as UID CMD: run CMD as UID (group UID, no other groups).
as() {
	setpriv --reuid="$1" --regid="$1" --clear-groups -- /bin/sh -c "umask 022; $2"
}

@test "shared: a node is not moved to another user's file renamed over its name" {
	as "$B" "printf 'B SECRET\n' > '$MNT/shared/bfile' && chmod 600 '$MNT/shared/bfile'"
	as "$A" "printf 'mine\n' > '$MNT/shared/afile' && stat '$MNT/shared/afile' >/dev/null"
	# A owns the backing directory: swap B's file in under A's name
	as "$A" "rm '$BACK/shared/afile' && mv '$BACK/shared/bfile' '$BACK/shared/afile'"
	run as "$A" "cat '$MNT/shared/afile'"
	[[ "$output" != *"B SECRET"* ]]
	run as "$A" "chmod 666 '$MNT/shared/afile'"
	[ "$status" -ne 0 ]
	[ "$(stat -c '%a %u' "$BACK/shared/afile")" = "600 $B" ]
	run as "$A" "printf 'overwritten\n' >> '$MNT/shared/afile'"
	[ "$status" -ne 0 ]
	# B still reads their file, unchanged, at its new name
	[ "$(as "$B" "cat '$MNT/shared/afile'")" = "B SECRET" ]
}

@test "shared: O_CREAT on a name another user's file reappears at opens it only if the caller may" {
	as "$B" "printf 'B SECRET\n' > '$MNT/shared/s3' && chmod 600 '$MNT/shared/s3'"
	as "$A" "mv '$BACK/shared/s3' '$BACK/shared/s3.aside'"
	ls "$MNT/shared" >/dev/null
	# hold the daemon's create in its directory lock, after the kernel's
	# negative lookup, while the file goes back
	exec 9<"$BACK/shared"
	flock -x 9
	as "$A" "python3 -c \"
import os
try:
    fd = os.open('$MNT/shared/s3', os.O_CREAT | os.O_RDWR, 0o644)
    print('OPENED', os.read(fd, 100))
except OSError as e:
    print('ERR', e.errno)
\"" >"$RK_TMP/out" 2>&1 &
	local pid=$!
	sleep 1
	as "$A" "mv '$BACK/shared/s3.aside' '$BACK/shared/s3'"
	flock -u 9
	exec 9<&-
	wait "$pid"
	cat "$RK_TMP/out"
	! grep -q "B SECRET" "$RK_TMP/out"
	grep -q "ERR 13" "$RK_TMP/out"
	[ "$(stat -c '%a %u %s' "$BACK/shared/s3")" = "600 $B $(stat -c %s "$BACK/shared/s3")" ]
	[ "$(as "$B" "cat '$MNT/shared/s3'")" = "B SECRET" ]
}

@test "shared: new objects belong to their maker from the start" {
	as "$A" "mkdir '$MNT/shared/d' && mkfifo '$MNT/shared/p' && ln -s t '$MNT/shared/l' && printf x > '$MNT/shared/f'"
	local o
	for o in d p l f; do
		[ "$(stat -c %u:%g "$BACK/shared/$o")" = "$A:$A" ]
	done
}

@test "unlinking one hard link, then a rekey: writes through the other name are kept" {
	printf 'original\n' >"$MNT/g2"
	ln "$MNT/g2" "$MNT/f2"
	rm "$MNT/f2"
	rk_add_gen 2
	rk_reload_to 2
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/g2")" = 2 ]
	printf 'appended\n' >>"$MNT/g2"
	[ "$(cat "$MNT/g2")" = "$(printf 'original\nappended')" ]
	rk_unmount
	rk_mount -o allow_other
	[ "$(cat "$MNT/g2")" = "$(printf 'original\nappended')" ]
}
