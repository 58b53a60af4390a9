#!/usr/bin/env bats
# A non-root user on an allow_other,default_permissions mount run by root:
# the whole life cycle of their own files, and root's private files stay
# private.

load helpers

setup() {
	rk_setup
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	getent group nogroup >/dev/null || skip "no group nogroup"
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other,default_permissions
	chmod 1777 "$MNT"
}

teardown() {
	rk_teardown
}

as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- /bin/sh -c "umask 022; $1"
}

@test "a non-root user creates, writes, renames, chmods and deletes own files" {
	as_nobody "
		set -e
		mkdir '$MNT/home'
		head -c 100000 /dev/urandom > '$MNT/home/a'
		cp '$MNT/home/a' /tmp/robust_users_ref.\$\$
		echo more >> '$MNT/home/a'
		echo more >> /tmp/robust_users_ref.\$\$
		cmp '$MNT/home/a' /tmp/robust_users_ref.\$\$
		rm /tmp/robust_users_ref.\$\$
		mv '$MNT/home/a' '$MNT/home/b'
		mkdir '$MNT/home/sub'
		mv '$MNT/home/b' '$MNT/home/sub/c'
		chmod 600 '$MNT/home/sub/c'
		truncate -s 5000 '$MNT/home/sub/c'
		echo new > '$MNT/home/t'
		: > '$MNT/home/t'
		echo again > '$MNT/home/t'
	"
	[ "$(stat -c '%U:%G %a %s' "$MNT/home/sub/c")" = "nobody:nogroup 600 5000" ]
	[ "$(stat -c '%U:%G %a' "$BACK/home/sub/c")" = "nobody:nogroup 600" ]
	[ "$(stat -c '%U:%G' "$BACK/home/t")" = "nobody:nogroup" ]
	[ "$(stat -c '%U:%G' "$BACK/home/sub")" = "nobody:nogroup" ]
	[ "$(as_nobody "cat '$MNT/home/t'")" = again ]
	[ "$(as_nobody "cat '$MNT/home/sub/c' | wc -c")" -eq 5000 ]
	# A rekey run keeps owner and mode of the user's files.
	rk_keyring "$RK_TMP/kr2" "" 2
	{
		cat "$KR"
		sed -n '/^\[generation 2\]/,$p' "$RK_TMP/kr2"
	} >"$RK_TMP/kr.new"
	chmod 600 "$RK_TMP/kr.new"
	mv "$RK_TMP/kr.new" "$KR"
	kill -HUP "$(rk_daemon_pid)"
	"$REKEYFS_REKEY" -q --keyring "$KR" "$BACK"
	[ "$(rk_header_gen "$BACK/home/sub/c")" -eq 2 ]
	[ "$(stat -c '%U:%G %a' "$BACK/home/sub/c")" = "nobody:nogroup 600" ]
	[ "$(as_nobody "cat '$MNT/home/sub/c' | wc -c")" -eq 5000 ]
	# Root's private file in the user's reach stays closed to them.
	echo secret >"$MNT/home/rootfile"
	chmod 600 "$MNT/home/rootfile"
	run as_nobody "cat '$MNT/home/rootfile'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	run as_nobody "truncate -s 0 '$MNT/home/rootfile'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	[ "$(cat "$MNT/home/rootfile")" = secret ]
	rm "$MNT/home/rootfile"
	# Deleting everything of their own.
	as_nobody "rm '$MNT/home/sub/c' '$MNT/home/t' && rmdir '$MNT/home/sub' '$MNT/home'"
	[ ! -e "$BACK/home" ]
}

@test "allow_other alone still enforces permissions (default_permissions implied)" {
	rk_unmount
	rk_mount -o allow_other
	chmod 1777 "$MNT"
	echo secret >"$MNT/rootonly"
	chmod 600 "$MNT/rootonly"
	run as_nobody "cat '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	run as_nobody "echo x >> '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	run as_nobody "truncate -s 0 '$MNT/rootonly'"
	[ "$status" -ne 0 ]
	[ "$(cat "$MNT/rootonly")" = secret ]
	grep " $MNT " /proc/mounts | grep -q default_permissions
	# the user's own files still work
	as_nobody "echo mine > '$MNT/own' && cat '$MNT/own' >/dev/null && rm '$MNT/own'"
}
