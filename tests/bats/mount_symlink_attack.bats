#!/usr/bin/env bats
# A root mount shared with allow_other: a user owns the backing objects of
# what they create, so they can replace their backing file or directory by a
# symlink between the kernel's lookup (a stat through the mount) and the
# operation.  Whatever the operation then does (fail, or act on the symlink
# itself), nothing outside the vault and nothing of another user inside it
# may change: mode, owner, times, size, link count, content and listing are
# compared before and after.

load helpers

setup() {
	rk_setup
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	getent group nogroup >/dev/null || skip "no group nogroup"
	command -v setpriv >/dev/null || skip "no setpriv"
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other
	# the mount root is the backing root: world-writable and sticky, so
	# the attacker can create there and reach their own backing objects
	chmod 1777 "$MNT"
	# a supplementary group of the attacker for chgrp
	XGID=$(getent group users | cut -d: -f3)
	XGID=${XGID:-100}

	# root's things outside the vault
	OUT=$RK_TMP/out
	mkdir -m 755 "$OUT" "$OUT/dir" "$OUT/dir/sub"
	printf 'root secret\n' >"$OUT/secret"
	chmod 600 "$OUT/secret"
	printf 'keep me\n' >"$OUT/dir/keep"
	chmod 644 "$OUT/dir/keep"
	# times in the past, atime before mtime: any read updates atime
	find "$OUT" -exec touch -h -m -d '2001-02-03 04:05:06' {} +
	find "$OUT" -exec touch -h -a -d '2000-01-01 00:00:00' {} +
	SUMS=$(cd "$OUT" && sha256sum secret dir/keep)
	BEFORE=$(snapshot "$OUT")

	# the attacker's own tree, created through the mount
	as_attacker "
		set -e
		mkdir '$MNT/a' '$MNT/a/d' '$MNT/a/d/sub' '$MNT/a/m' '$MNT/a/m/dir'
		mkdir '$MNT/a/x'
		for i in \$(seq 1 20); do mkdir '$MNT/a/x/'e\$i; done
		echo mine > '$MNT/a/f'
		echo other > '$MNT/a/g'
		echo mine > '$MNT/a/d/keep'
		echo mine > '$MNT/a/m/dir/keep'
	"
	[ "$(stat -c %U "$BACK/a/f")" = nobody ]
	[ "$(stat -c %U "$BACK/a/d")" = nobody ]
	F=$MNT/a/f
	D=$MNT/a/d
}

teardown() {
	rk_teardown
}

as_attacker() {
	setpriv --reuid=nobody --regid=nogroup --groups="$XGID" -- \
		/bin/sh -c "umask 022; $1"
}

as_root() {
	/bin/sh -c "umask 022; $1"
}

# snapshot DIR: everything about DIR's tree that an operation could change
# (without reading a file, which would change its atime).
snapshot() {
	find "$1" -printf '%p %y %m %U %G %T@ %C@ %s %n %l\n' | sort
	find "$1" -type f -printf '%p atime %A@\n' | sort
}

# cache: stat every name of the attacker's tree through the mount, so the
# kernel holds the dentries and inodes.  Creating a file in each of 20
# other directories first pushes the attacker's directories out of any
# small cache of directory fds a daemon may keep by path, so the operation
# resolves the backing path afresh.
cache() {
	as_attacker "for i in \$(seq 1 20); do : > '$MNT/a/x/'e\$i/t; done"
	find "$MNT/a" -exec stat -c '%n %F %i' {} + >/dev/null
}

# swap_file: the attacker's backing a/f becomes a symlink to root's secret
swap_file() {
	as_attacker "cd '$BACK/a' && mv f f.orig && ln -s '$OUT/secret' f"
}

# swap_dir: the attacker's backing a/d becomes a symlink to root's directory
swap_dir() {
	as_attacker "cd '$BACK/a' && mv d d.orig && ln -s '$OUT/dir' d"
}

# swap_mid: a/m (a middle component of a/m/dir/keep) becomes a symlink to OUT
swap_mid() {
	as_attacker "cd '$BACK/a' && mv m m.orig && ln -s '$OUT' m"
}

# untouched: nothing outside the vault changed
untouched() {
	local after
	after=$(snapshot "$OUT")
	if [ "$after" != "$BEFORE" ]; then
		echo "outside the vault changed:" >&2
		diff <(echo "$BEFORE") <(echo "$after") >&2
		return 1
	fi
	[ "$(cd "$OUT" && sha256sum secret dir/keep)" = "$SUMS" ]
}

# attack SWAP WHO CMD: cache, swap, run CMD as WHO (attacker or root); the
# result of CMD does not matter, only that nothing outside changed.
attack() {
	cache
	"$1"
	run "as_$2" "$3"
	echo "# $2: $3 -> status $status: $output"
	untouched
}

@test "symlink attack: chmod by the owner" {
	attack swap_file attacker "chmod 4777 '$F'"
}

@test "symlink attack: chmod by root" {
	attack swap_file root "chmod 4777 '$F'"
}

@test "symlink attack: chown by root" {
	attack swap_file root "chown 1234:1234 '$F'"
}

@test "symlink attack: chgrp by the owner" {
	attack swap_file attacker "chgrp $XGID '$F'"
}

@test "symlink attack: utimens by the owner" {
	attack swap_file attacker "touch -d '2020-01-01 00:00:00' '$F'"
}

@test "symlink attack: utimens (now) by the owner" {
	attack swap_file attacker "touch '$F'"
}

@test "symlink attack: utimens by root" {
	attack swap_file root "touch -d '2020-01-01 00:00:00' '$F'"
}

@test "symlink attack: truncate by the owner" {
	attack swap_file attacker "truncate -s 0 '$F'"
}

@test "symlink attack: truncate by root" {
	attack swap_file root "truncate -s 3 '$F'"
}

@test "symlink attack: setxattr by the owner" {
	command -v setfattr >/dev/null || skip "no setfattr"
	attack swap_file attacker "setfattr -n user.x -v 1 '$F'"
}

@test "symlink attack: setxattr by root" {
	command -v setfattr >/dev/null || skip "no setfattr"
	attack swap_file root "setfattr -n user.x -v 1 '$F'"
}

@test "symlink attack: removexattr by root" {
	command -v setfattr >/dev/null || skip "no setfattr"
	attack swap_file root "setfattr -x user.y '$F'"
}

@test "symlink attack: open for append by the owner" {
	attack swap_file attacker "echo evil >> '$F'"
}

@test "symlink attack: open with O_TRUNC by the owner" {
	attack swap_file attacker "echo evil > '$F'"
}

@test "symlink attack: open for write by root" {
	attack swap_file root "echo evil 1<> '$F'"
}

@test "symlink attack: open for read by the owner" {
	attack swap_file attacker "cat '$F'"
}

@test "symlink attack: link from a swapped file" {
	attack swap_file attacker "ln '$F' '$MNT/a/hl'"
	[ "$(stat -c %h "$OUT/secret")" = 1 ]
}

@test "symlink attack: create in a swapped directory" {
	attack swap_dir attacker "echo evil > '$D/new'"
	[ ! -e "$OUT/dir/new" ]
}

@test "symlink attack: create by root in a swapped directory" {
	attack swap_dir root "echo evil > '$D/new'"
	[ ! -e "$OUT/dir/new" ]
}

@test "symlink attack: open for write in a swapped directory" {
	attack swap_dir attacker "echo evil >> '$D/keep'"
}

@test "symlink attack: mkdir in a swapped directory" {
	attack swap_dir attacker "mkdir '$D/newdir'"
}

@test "symlink attack: mknod (fifo) in a swapped directory" {
	attack swap_dir attacker "mkfifo '$D/fifo'"
}

@test "symlink attack: symlink in a swapped directory" {
	attack swap_dir attacker "ln -s /etc/shadow '$D/sl'"
}

@test "symlink attack: link into a swapped directory" {
	attack swap_dir attacker "ln '$MNT/a/g' '$D/hl'"
}

@test "symlink attack: unlink in a swapped directory" {
	attack swap_dir attacker "rm -f '$D/keep'"
}

@test "symlink attack: unlink by root in a swapped directory" {
	attack swap_dir root "rm -f '$D/keep'"
}

@test "symlink attack: rmdir in a swapped directory" {
	attack swap_dir attacker "rmdir '$D/sub'"
}

@test "symlink attack: rename within a swapped directory" {
	attack swap_dir attacker "mv '$D/keep' '$D/moved'"
}

@test "symlink attack: rename out of a swapped directory" {
	attack swap_dir attacker "mv '$D/keep' '$MNT/a/stolen'"
}

@test "symlink attack: rename over a name in a swapped directory" {
	attack swap_dir attacker "mv '$MNT/a/g' '$D/keep'"
}

@test "symlink attack: mkdir by root in a swapped directory" {
	attack swap_dir root "mkdir '$D/newdir'"
}

@test "symlink attack: mknod and symlink by root in a swapped directory" {
	attack swap_dir root "mkfifo '$D/fifo'; ln -s /etc/shadow '$D/sl'"
}

@test "symlink attack: link by root into a swapped directory" {
	attack swap_dir root "ln '$MNT/a/g' '$D/hl'"
}

@test "symlink attack: rmdir by root in a swapped directory" {
	attack swap_dir root "rmdir '$D/sub'"
}

@test "symlink attack: rename by root in a swapped directory" {
	attack swap_dir root "mv '$D/keep' '$MNT/a/stolen'"
}

@test "symlink attack: open for write by root in a swapped directory" {
	attack swap_dir root "echo evil >> '$D/keep'"
}

@test "symlink attack: chmod of a swapped directory" {
	attack swap_dir attacker "chmod 777 '$D'"
}

@test "symlink attack: chown by root of a swapped directory" {
	attack swap_dir root "chown 1234 '$D'"
}

@test "symlink attack: utimens and setxattr on a swapped directory" {
	command -v setfattr >/dev/null || skip "no setfattr"
	attack swap_dir attacker "touch -d '2020-01-01' '$D'; setfattr -n user.x -v 1 '$D'"
}

@test "symlink attack: chmod by root of a swapped directory" {
	attack swap_dir root "chmod 777 '$D'"
}

@test "symlink attack: utimens and setxattr by root on a swapped directory" {
	command -v setfattr >/dev/null || skip "no setfattr"
	attack swap_dir root "touch -d '2020-01-01' '$D'; setfattr -n user.x -v 1 '$D'"
}

@test "symlink attack: a middle component swapped" {
	attack swap_mid attacker "
		chmod 666 '$MNT/a/m/dir/keep'
		echo evil >> '$MNT/a/m/dir/keep'
		touch '$MNT/a/m/dir/new'
		mkdir '$MNT/a/m/dir/newdir'
		rm -f '$MNT/a/m/dir/keep'
	"
}

@test "symlink attack: a middle component swapped, root operating" {
	attack swap_mid root "
		chmod 666 '$MNT/a/m/dir/keep'
		echo evil >> '$MNT/a/m/dir/keep'
		touch '$MNT/a/m/dir/new'
		mkdir '$MNT/a/m/dir/newdir'
		rm -f '$MNT/a/m/dir/keep'
	"
}

# Another user's files inside the vault: the attacker points their backing
# directory at the victim's backing directory.
victim_case() {
	local who=$1 vuser=$2
	# the victim's tree, created through the mount
	local make="
		set -e
		mkdir '$MNT/v' '$MNT/v/sub'
		echo victim > '$MNT/v/keep'
		chmod 644 '$MNT/v/keep'
		chmod 755 '$MNT/v'
	"
	if [ "$vuser" = root ]; then
		as_root "$make"
	else
		setpriv --reuid="$vuser" --regid="$vuser" --clear-groups -- \
			/bin/sh -c "umask 022; $make"
	fi
	local vsum vbefore
	vsum=$(sha256sum <"$MNT/v/keep")
	find "$BACK/v" -exec touch -h -m -d '2001-02-03 04:05:06' {} +
	find "$BACK/v" -exec touch -h -a -d '2000-01-01 00:00:00' {} +
	vbefore=$(snapshot "$BACK/v")
	cache
	as_attacker "cd '$BACK/a' && mv d d.orig && ln -s ../v d"
	run as_attacker "
		chmod 666 '$D/keep'
		chgrp $XGID '$D/keep'
		touch -d 2020-01-01 '$D/keep'
		setfattr -n user.x -v 1 '$D/keep'
		truncate -s 1 '$D/keep'
		echo evil >> '$D/keep'
		echo evil > '$D/new'
		mkdir '$D/newdir'
		mkfifo '$D/fifo'
		ln -s x '$D/sl'
		ln '$MNT/a/g' '$D/hl'
		mv '$D/keep' '$D/moved'
		mv '$MNT/a/g' '$D/keep'
		rm -f '$D/keep' '$D/moved'
		rmdir '$D/sub'
		chmod 777 '$D'
	"
	echo "# $output"
	local vafter
	vafter=$(snapshot "$BACK/v")
	if [ "$vafter" != "$vbefore" ]; then
		echo "the victim's backing files changed:" >&2
		diff <(echo "$vbefore") <(echo "$vafter") >&2
		return 1
	fi
	[ "$(sha256sum <"$BACK/v/keep" | cut -c1-8)" != "" ]
	# and through the mount, fresh (no cached view)
	rk_unmount
	rk_mount -o allow_other
	[ "$(sha256sum <"$MNT/v/keep")" = "$vsum" ]
	[ "$(ls -A "$MNT/v" | tr '\n' ' ')" = "keep sub " ]
	untouched
}

@test "symlink attack: a directory swapped for another user's directory" {
	local u=rkvictim$$
	useradd -M -N -g nogroup -s /usr/sbin/nologin "$u" 2>/dev/null ||
		skip "cannot add a user"
	run victim_case attacker "$u"
	userdel "$u" 2>/dev/null
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "symlink attack: a directory swapped for root's directory in the vault" {
	victim_case attacker root
}
