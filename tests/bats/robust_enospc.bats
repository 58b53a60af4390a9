#!/usr/bin/env bats
# A full backing filesystem: writers get ENOSPC (never EIO, never a silent
# short write), and nothing written before is lost or becomes unreadable.
# The backing directory lives on a 4 MiB tmpfs; its space is counted in
# whole pages, so "exactly N pages free" is easy to arrange with a plain
# filler file next to the backing directory.

load helpers

setup() {
	rk_setup
	SMALL=$RK_TMP/small
	mkdir "$SMALL"
	mount -t tmpfs -o size=4m,mode=755 tmpfs "$SMALL"
	BACK=$SMALL/back
	mkdir "$BACK"
	REF=$RK_TMP/ref
	mkdir "$REF"
	rk_keyring "$KR" "" 1
}

teardown() {
	if [ -n "${RK_TMP:-}" ]; then
		mountpoint -q "$MNT" && fusermount3 -u "$MNT" 2>/dev/null
		local pid
		for pid in "${RK_PIDS[@]}"; do
			timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null
		done
		mountpoint -q "$SMALL" && umount "$SMALL"
	fi
	rk_teardown
}

# fill_backing [FREE_PAGES]: fill the tmpfs with a plain file next to the
# backing directory until it is full, then give back FREE_PAGES pages.
fill_backing() {
	local free=${1:-0}
	dd if=/dev/zero of="$SMALL/filler" bs=4k oflag=append conv=notrunc \
		2>/dev/null || true
	truncate -s "$(($(stat -c %s "$SMALL/filler") / 4096 * 4096))" \
		"$SMALL/filler"
	while [ "$(stat -f -c %a "$SMALL")" -lt "$free" ]; do
		truncate -s -4096 "$SMALL/filler"
	done
	while [ "$(stat -f -c %a "$SMALL")" -gt "$free" ]; do
		head -c 4096 /dev/zero >>"$SMALL/filler"
	done
	[ "$(stat -f -c %a "$SMALL")" -eq "$free" ]
}

# check_readable FILE: read FILE through the mount completely (no EIO)
# and check it is as long as stat says.
check_readable() {
	cat "$1" >"$RK_TMP/readback"
	[ "$(stat -c %s "$RK_TMP/readback")" -eq "$(stat -c %s "$1")" ]
}

# pywrite FILE OFFSET LEN DATA [append]: write LEN random bytes at OFFSET
# (or appended), print "ok N" or "err ERRNONAME"; the bytes go to DATA.
pywrite() {
	python3 - "$@" <<'EOF'
import errno, os, sys
path, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
app = len(sys.argv) > 5
data = os.urandom(n)
open(sys.argv[4], "wb").write(data)
fl = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if app else 0)
fd = os.open(path, fl, 0o644)
try:
    w = os.write(fd, data) if app else os.pwrite(fd, data, off)
    print("ok", w)
except OSError as e:
    print("err", errno.errorcode[e.errno])
finally:
    os.close(fd)
EOF
}

@test "a full disk gives ENOSPC and loses nothing written before" {
	rk_mount
	local i
	for i in 1 2 3 4; do
		head -c $((200000 + i * 1000)) /dev/urandom >"$REF/f$i"
		cp "$REF/f$i" "$MNT/f$i"
	done
	# Append 64 KiB chunks until the disk is full.
	: >"$REF/grow.all"
	local out status_line=""
	for i in $(seq 1 200); do
		out=$(pywrite "$MNT/grow" 0 65536 "$REF/chunk" append)
		cat "$REF/chunk" >>"$REF/grow.all"
		status_line=$out
		[ "$out" = "ok 65536" ] || break
	done
	echo "last append: $status_line"
	[ "$status_line" = "err ENOSPC" ]
	# Every earlier file reads back in full.
	for i in 1 2 3 4; do
		cmp "$MNT/f$i" "$REF/f$i"
	done
	# The appended file is a consistent prefix of what was written.
	check_readable "$MNT/grow"
	local sz
	sz=$(stat -c %s "$MNT/grow")
	[ "$sz" -gt 0 ]
	[ $((sz % 65536)) -eq 0 ]
	head -c "$sz" "$REF/grow.all" | cmp - "$MNT/grow"
	# Small writes and new files on the full disk: ENOSPC or success,
	# never EIO, and the result reads back.
	for i in 1 2 3; do
		out=$(pywrite "$MNT/small$i" 0 3000 "$REF/small$i")
		[ "$out" = "ok 3000" ] || [ "$out" = "err ENOSPC" ]
		check_readable "$MNT/small$i"
		if [ "$out" = "ok 3000" ]; then
			cmp "$MNT/small$i" "$REF/small$i"
		fi
	done
	# Overwriting existing data in place still works.
	head -c 4096 /dev/urandom >"$REF/patch"
	dd if="$REF/patch" of="$MNT/f2" bs=4096 seek=10 conv=notrunc \
		status=none
	dd if="$REF/patch" of="$REF/f2" bs=4096 seek=10 conv=notrunc \
		status=none
	cmp "$MNT/f2" "$REF/f2"
	# Freeing space makes writes work again.
	rm "$MNT/f1"
	head -c 150000 /dev/urandom >"$REF/after"
	cp "$REF/after" "$MNT/after"
	cmp "$MNT/after" "$REF/after"
	# All of it survives a remount (no cached state).
	rk_unmount
	rk_mount
	for i in 2 3 4; do
		cmp "$MNT/f$i" "$REF/f$i"
	done
	head -c "$sz" "$REF/grow.all" | cmp - "$MNT/grow"
	cmp "$MNT/after" "$REF/after"
	! grep -qi "authentication\|invalid" "$LOG" || false
}

@test "growing past a short final block with one page free" {
	rk_mount
	head -c 1000 /dev/urandom >"$REF/g"
	cp "$REF/g" "$MNT/g"
	cp "$REF/g" "$MNT/t"
	fill_backing 1
	# Block 2 fits in the free page, but block 0 must be re-sealed as a
	# full block, which needs a second page.
	local out
	out=$(python3 -c '
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    print("ok", os.pwrite(fd, b"0123456789", 8192))
except OSError as e:
    print("err", errno.errorcode[e.errno])
' "$MNT/g")
	echo "write: $out"
	[ "$out" = "ok 10" ] || [ "$out" = "err ENOSPC" ]
	check_readable "$MNT/g"
	if [ "$out" = "err ENOSPC" ]; then
		cmp "$MNT/g" "$REF/g"
	else
		[ "$(stat -c %s "$MNT/g")" -eq 8202 ]
		head -c 1000 "$MNT/g" | cmp - "$REF/g"
	fi
	# The same through truncate (grow).
	run truncate -s 8202 "$MNT/t"
	echo "truncate: $status $output"
	[ "$status" -eq 0 ] || [[ "$output" == *"No space left"* ]]
	check_readable "$MNT/t"
	head -c 1000 "$MNT/t" | cmp - "$REF/g"
	# Remount: what is on disk is consistent, not just the cache.
	rk_unmount
	rk_mount
	check_readable "$MNT/g"
	check_readable "$MNT/t"
	head -c 1000 "$MNT/g" | cmp - "$REF/g"
	head -c 1000 "$MNT/t" | cmp - "$REF/g"
}

# pw FILE OFFSET DATA: pwrite DATA (a Python bytes expression) at OFFSET,
# print "ok N" or "err ERRNONAME"
pw() {
	python3 -c '
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
try:
    print("ok", os.pwrite(fd, eval(sys.argv[3]), int(sys.argv[2])))
except OSError as e:
    print("err", errno.errorcode[e.errno])
' "$@"
}

@test "a write at the block after a short final block, on a full disk" {
	rk_mount
	# 100 bytes: the final block ends early in the backing file's first
	# page.  A write at the next block's start re-seals block 0 as a full
	# block, which reaches into the second page: with no page free that
	# fails, and the file must end where it did.
	head -c 100 /dev/urandom >"$REF/g"
	cp "$REF/g" "$MNT/g"
	fill_backing 0
	local out
	out=$(pw "$MNT/g" 4096 'b"x" * 100')
	echo "write: $out"
	[ "$out" = "err ENOSPC" ]
	[ "$(stat -c %s "$BACK/g")" -eq 172 ]
	check_readable "$MNT/g"
	cmp "$MNT/g" "$REF/g"
	rk_unmount
	rk_mount
	cmp "$MNT/g" "$REF/g"
}

@test "a growing write over holes in the old data, on a nearly full disk" {
	rk_mount
	# block 0 data, blocks 1-3 holes, block 4 short and final
	pw "$MNT/s" 0 'b"a" * 100' >/dev/null
	truncate -s $((4 * 4096 + 100)) "$MNT/s"
	pw "$MNT/s" $((4 * 4096)) 'b"e" * 100' >/dev/null
	cp "$MNT/s" "$REF/s"
	# One page free: enough for the part past the old end, not for the
	# holes the write also fills.  It must fail before anything old is
	# overwritten: the holes still read as zeros.
	fill_backing 1
	local out
	out=$(pw "$MNT/s" 4096 'b"z" * (4 * 4096 + 200)')
	echo "write: $out"
	[ "$out" = "err ENOSPC" ]
	check_readable "$MNT/s"
	cmp "$MNT/s" "$REF/s"
	rk_unmount
	rk_mount
	cmp "$MNT/s" "$REF/s"
}

@test "shrinking into a hole on a full disk keeps the file readable" {
	rk_mount
	head -c 100 /dev/urandom >"$REF/s"
	cp "$REF/s" "$MNT/s"
	# Final block 50 sits inside one backing page; blocks 1..49 are holes.
	truncate -s $((50 * 4096 + 100)) "$MNT/s"
	fill_backing 0
	# The new final block 20 spans two unallocated backing pages.
	run truncate -s $((20 * 4096 + 4000)) "$MNT/s"
	echo "truncate: $status $output"
	[ "$status" -eq 0 ] || [[ "$output" == *"No space left"* ]]
	check_readable "$MNT/s"
	head -c 100 "$MNT/s" | cmp - "$REF/s"
	rk_unmount
	rk_mount
	check_readable "$MNT/s"
	local sz
	sz=$(stat -c %s "$MNT/s")
	[ "$sz" -eq $((50 * 4096 + 100)) ] || [ "$sz" -eq $((20 * 4096 + 4000)) ]
}

@test "create, O_TRUNC and truncate to zero work on a full disk" {
	rk_mount
	head -c 50000 /dev/urandom >"$REF/z"
	cp "$REF/z" "$MNT/z"
	cp "$REF/z" "$MNT/z2"
	fill_backing 0
	# Creating an empty file needs no data space: it works, and the file
	# is a valid empty file (its first write then reports ENOSPC).
	touch "$MNT/empty"
	[ "$(stat -c %s "$MNT/empty")" -eq 0 ]
	[ "$(cat "$MNT/empty" | wc -c)" -eq 0 ]
	run bash -c "echo hello >'$MNT/empty'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"No space left"* ]]
	check_readable "$MNT/empty"
	# O_TRUNC of the empty file and truncate to zero of a full one.
	: >"$MNT/empty"
	truncate -s 0 "$MNT/z"
	[ "$(stat -c %s "$MNT/z")" -eq 0 ]
	: >"$MNT/z2"
	[ "$(stat -c %s "$MNT/z2")" -eq 0 ]
	# The space is back: writes work.
	echo hello >"$MNT/empty"
	[ "$(cat "$MNT/empty")" = hello ]
	rk_unmount
	rk_mount
	[ "$(cat "$MNT/empty")" = hello ]
	[ "$(stat -c %s "$MNT/z")" -eq 0 ]
}

@test "rekey on a nearly full tree fails cleanly for files it cannot rewrite" {
	rk_mount
	local i
	for i in 1 2 3 4 5 6; do
		# r6 is larger than the space left for its temp copy.
		head -c $((i == 6 ? 1200000 : 200000)) /dev/urandom >"$REF/r$i"
		cp "$REF/r$i" "$MNT/r$i"
	done
	rk_unmount
	# Generation 2 becomes primary; the keyring lives outside the tmpfs.
	rk_keyring "$RK_TMP/kr2" "" 2
	{
		cat "$KR"
		sed -n '/^\[generation 2\]/,$p' "$RK_TMP/kr2"
	} >"$RK_TMP/kr.new"
	chmod 600 "$RK_TMP/kr.new"
	mv "$RK_TMP/kr.new" "$KR"
	# Room for a rewrite of each small file (each needs a full temp
	# copy next to the file), not of r6.
	fill_backing 150
	run "$REKEYFS_REKEY" -q -j 1 --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"No space left"* ]]
	# No temp files left anywhere.
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	rk_mount
	for i in 1 2 3 4 5 6; do
		cmp "$MNT/r$i" "$REF/r$i"
	done
	rk_unmount
	# With space back, a second run finishes the job.
	rm -f "$SMALL/filler"
	"$REKEYFS_REKEY" -q --keyring "$KR" "$BACK"
	for i in 1 2 3 4 5 6; do
		[ "$(rk_header_gen "$BACK/r$i")" -eq 2 ]
	done
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	rk_mount
	for i in 1 2 3 4 5 6; do
		cmp "$MNT/r$i" "$REF/r$i"
	done
}
