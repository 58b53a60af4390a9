#!/usr/bin/env bats
# rekeyfs mount: the daemon side of the online-rekey protocol.  flock(1)
# on backing files and directories stands in for rekeyfs-rekey.

load helpers

PY=/usr/bin/python3

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
	rk_mount
}

teardown() {
	rk_teardown
}

# hold_lock MODE PATH: take flock MODE (-x/-s) on PATH in the background
# until $RK_TMP/release exists; prints nothing, sets HOLDER.
hold_lock() {
	rm -f "$RK_TMP/release" "$RK_TMP/held"
	flock "$1" "$2" sh -c "touch '$RK_TMP/held'; while [ ! -e '$RK_TMP/release' ]; do sleep 0.05; done" &
	HOLDER=$!
	local i
	for i in $(seq 1 100); do [ -e "$RK_TMP/held" ] && return 0; sleep 0.05; done
	return 1
}

release_lock() {
	touch "$RK_TMP/release"
	wait "$HOLDER"
}

# still_running PID: the process has not finished after a short grace
still_running() {
	sleep 0.5
	kill -0 "$1" 2>/dev/null
}

finishes() {
	timeout 10 tail --pid="$1" -f /dev/null
	! kill -0 "$1" 2>/dev/null || false
}

@test "open holds LOCK_SH on the backing file while open" {
	echo data > "$MNT/f"
	exec 5< "$MNT/f"
	# an exclusive non-blocking lock (what rekey takes) fails while open
	run flock -x -n "$BACK/f" true
	[ "$status" -ne 0 ]
	# a shared one is fine
	flock -s -n "$BACK/f" true
	exec 5<&-
	# released with the last close (release is asynchronous)
	for i in $(seq 1 100); do flock -x -n "$BACK/f" true && break; sleep 0.05; done
	flock -x -n "$BACK/f" true
}

@test "opening blocks while the backing file is locked exclusively" {
	echo data > "$MNT/f"
	hold_lock -x "$BACK/f"
	cat "$MNT/f" > "$RK_TMP/out" &
	reader=$!
	still_running "$reader"
	[ ! -s "$RK_TMP/out" ]
	release_lock
	finishes "$reader"
	[ "$(cat "$RK_TMP/out")" = data ]
}

@test "path truncate blocks on the file lock too" {
	echo data > "$MNT/f"
	hold_lock -x "$BACK/f"
	truncate -s 2 "$MNT/f" &
	t=$!
	still_running "$t"
	release_lock
	finishes "$t"
	[ "$(cat "$MNT/f")" = da ]
}

@test "create, rename, unlink, link, mkdir and chmod wait for the directory lock" {
	echo a > "$MNT/a"
	mkdir "$MNT/sub"
	local op
	for op in "touch $MNT/new" "mv $MNT/a $MNT/b" "rm $MNT/b" "mkdir $MNT/d2" \
		"ln -s x $MNT/sl" "chmod 600 $MNT/new" \
		"$PY -c 'import os; os.utime(\"$MNT/new\", (946684800, 946684800))'" \
		"setfattr -n user.x -v 1 $MNT/new" "ln $MNT/new $MNT/sub/hl" "mv $MNT/new $MNT/sub/moved"; do
		hold_lock -x "$BACK"
		sh -c "$op" &
		p=$!
		if ! still_running "$p"; then
			release_lock
			echo "not blocked: $op" >&2
			return 1
		fi
		release_lock
		finishes "$p"
		wait "$p"
	done
	[ -e "$MNT/sub/moved" ] && [ -e "$MNT/sub/hl" ] && [ -d "$MNT/d2" ] && [ -L "$MNT/sl" ]
	[ "$(stat -c %a "$MNT/sub/moved")" = 600 ]
	# a lock on another directory does not block the root
	hold_lock -x "$BACK/sub"
	timeout 10 touch "$MNT/free"
	release_lock
}

@test "metadata changes to an open file do not wait for the directory lock" {
	# Its handle's LOCK_SH keeps a rekey from rewriting it, so there is
	# no copy of its metadata in flight to race with.
	echo data > "$MNT/f"
	exec 5< "$MNT/f"
	hold_lock -x "$BACK"
	timeout 10 chmod 600 "$MNT/f"
	timeout 10 touch -d 2000-01-01 "$MNT/f"
	timeout 10 setfattr -n user.x -v 1 "$MNT/f"
	release_lock
	exec 5<&-
	[ "$(stat -c %a "$MNT/f")" = 600 ]
	[ "$(stat -c %Y "$MNT/f")" = 946684800 ]
	[ "$(getfattr --only-values -n user.x "$MNT/f")" = 1 ]
}

@test "reads keep going while another directory operation waits" {
	echo data > "$MNT/f"
	exec 5< "$MNT/f"
	hold_lock -x "$BACK"
	touch "$MNT/blocked" &
	p=$!
	still_running "$p"
	# an open file keeps working
	[ "$("$PY" -c 'import os; print(os.pread(5, 4, 0).decode())')" = data ]
	release_lock
	finishes "$p"
	exec 5<&-
}

@test "a backing file replaced by rename is reopened (new inode)" {
	echo "old content" > "$MNT/f"
	echo "new content" > "$MNT/g"
	sleep 1.1 # let the kernel's attribute cache of f expire
	old_ino=$(stat -c %i "$BACK/f")
	# what rekey does: a valid file of the same tree renamed over the name
	cp -p "$BACK/g" "$BACK/.rekeyfs-tmp.1"
	mv "$BACK/.rekeyfs-tmp.1" "$BACK/f"
	[ "$(stat -c %i "$BACK/f")" != "$old_ino" ]
	[ "$(cat "$MNT/f")" = "new content" ]
}

@test "replace while an opener waits for the lock: it reads the new file" {
	echo "old content" > "$MNT/f"
	echo "new content!" > "$MNT/g"
	sleep 1.1
	hold_lock -x "$BACK/f"
	"$PY" -c 'import sys; print(open(sys.argv[1]).read(), end="")' "$MNT/f" > "$RK_TMP/out" &
	reader=$!
	still_running "$reader"
	# the tool renames a new version over the name, then unlocks the old
	cp -p "$BACK/g" "$BACK/.rekeyfs-tmp.2"
	mv "$BACK/.rekeyfs-tmp.2" "$BACK/f"
	release_lock
	finishes "$reader"
	[ "$(cat "$RK_TMP/out")" = "new content!" ]
}
