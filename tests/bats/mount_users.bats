#!/usr/bin/env bats
# rekeyfs mount as root with allow_other: other users' files belong to
# them, modes are exactly what they asked for, permissions are enforced.

load helpers

setup() {
	rk_setup
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other,default_permissions
	chmod 1777 "$MNT"
}

teardown() {
	rk_teardown
}

# as_nobody CMD: run a shell command as nobody:nogroup with umask 022
as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- /bin/sh -c "umask 022; $1"
}

@test "files, directories, symlinks and fifos belong to the caller" {
	as_nobody "echo mine > '$MNT/f' && mkdir '$MNT/d' && ln -s f '$MNT/l' && mkfifo '$MNT/p'"
	local x
	for x in f d l p; do
		[ "$(stat -c %U:%G "$MNT/$x")" = nobody:nogroup ]
		[ "$(stat -c %U:%G "$BACK/$x")" = nobody:nogroup ]
	done
	[ "$(stat -c %a "$MNT/f")" = 644 ]
	[ "$(stat -c %a "$MNT/d")" = 755 ]
	[ "$(stat -c %a "$MNT/p")" = 644 ]
	[ "$(as_nobody "cat '$MNT/f'")" = mine ]
	# files created through O_CREAT of an open(2) too
	as_nobody "/usr/bin/python3 -c 'import os; os.umask(0); os.close(os.open(\"$MNT/exact\", os.O_CREAT | os.O_WRONLY, 0o4710))'"
	[ "$(stat -c '%U %a' "$MNT/exact")" = "nobody 4710" ]
}

@test "modes exactly as requested, no forced owner bits" {
	as_nobody "umask 077; : > '$MNT/private'; umask 0; mkdir -m 0 '$MNT/none'; : > '$MNT/open'; chmod 0 '$MNT/open'"
	[ "$(stat -c %a "$MNT/private")" = 600 ]
	[ "$(stat -c %a "$MNT/none")" = 0 ]
	[ "$(stat -c %a "$MNT/open")" = 0 ]
	[ "$(stat -c %a "$BACK/open")" = 0 ]
}

@test "setgid directories pass on their group (and setgid to subdirectories)" {
	mkdir "$MNT/shared"
	chgrp 4242 "$MNT/shared"
	chmod 2777 "$MNT/shared"
	as_nobody "echo x > '$MNT/shared/f' && mkdir '$MNT/shared/sub'"
	[ "$(stat -c %u:%g "$MNT/shared/f")" = 65534:4242 ]
	[ "$(stat -c %u:%g "$MNT/shared/sub")" = 65534:4242 ]
	[ "$(stat -c %a "$MNT/shared/sub")" = 2755 ]
	[ "$(stat -c %a "$MNT/shared/f")" = 644 ]
}

@test "permissions are enforced for other users" {
	echo secret > "$MNT/rootonly"
	chmod 600 "$MNT/rootonly"
	run as_nobody "cat '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	run as_nobody "echo x >> '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	mkdir -m 755 "$MNT/rootdir"
	run as_nobody "touch '$MNT/rootdir/f'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	run as_nobody "chmod 777 '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	run as_nobody "chown nobody '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	# the sticky root: nobody cannot remove root's file
	run as_nobody "rm -f '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	[ -e "$MNT/rootonly" ]
	[ "$(cat "$MNT/rootonly")" = secret ]
}

@test "without allow_other other users are kept out" {
	rk_unmount
	rk_mount
	run as_nobody "ls '$MNT'"
	[ "$status" -ne 0 ]
}
