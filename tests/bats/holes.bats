#!/usr/bin/env bats
# Integrity gaps of the format, end to end: holes are authenticated (a
# block zeroed or punched out of a file that never had a hole reads as EIO,
# is logged, and --verify names it; sparse files still read their holes as
# zeros), the rekey copy carries the hole flag, and what stays undetected
# by design behaves as the README's threat model says (truncation to the
# header or to nothing is an empty file; a file moved between trees that
# share a keyring reads in both).

load helpers

setup() {
	rk_setup
	DATA=$RK_TMP/data
	rk_keyring "$KR" "" 1
	head -c 20000 /dev/urandom >"$DATA"
}

teardown() {
	rk_teardown
}

CB=4136 # ciphertext block: nonce 24 + 4096 + tag 16

# boff K: backing offset of block K.
boff() {
	echo $((32 + $1 * CB))
}

# zero_block FILE K: overwrite block K of a backing file with zeros.
zero_block() {
	dd if=/dev/zero of="$1" bs=$CB count=1 seek="$(boff "$2")" \
		oflag=seek_bytes conv=notrunc status=none
}

# flags FILE: the header's flags word (bytes 28..31) as a number.
flags() {
	od -An -tu1 -j28 -N4 "$1" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}'
}

# eio CMD...: CMD fails with EIO.
eio() {
	run "$@"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
}

logged() {
	grep -E -- "$1" "$LOG" || {
		echo "no log line matching '$1'; log:" >&2
		cat "$LOG" >&2
		return 1
	}
}

@test "holes: a zeroed block of a file that never had a hole is EIO, logged, and not healed by a partial write" {
	rk_mount
	cp "$DATA" "$MNT/victim"
	cp "$DATA" "$MNT/punched"
	rk_unmount
	[ "$(flags "$BACK/victim")" -eq 1 ]
	zero_block "$BACK/victim" 1
	# a range punched out of the backing file reads as zeros too
	fallocate -p -o "$(boff 2)" -l $((2 * CB)) "$BACK/punched"
	rk_mount
	eio dd if="$MNT/victim" of=/dev/null bs=4096 skip=1 count=1 status=none
	logged "victim: block 1 fails authentication"
	cmp <(dd if="$MNT/victim" bs=4096 count=1 status=none) \
		<(head -c 4096 "$DATA")
	cmp <(dd if="$MNT/victim" bs=4096 skip=2 status=none) \
		<(tail -c +8193 "$DATA")
	eio cat "$MNT/punched"
	# A partial write into the zeroed block needs its old content: EIO,
	# and the zeros are still refused afterwards.
	eio dd if=/dev/urandom of="$MNT/victim" bs=100 count=1 seek=45 \
		conv=notrunc status=none
	eio dd if="$MNT/victim" of=/dev/null bs=4096 skip=1 count=1 status=none
	# Overwriting the whole block replaces it.
	dd if="$DATA" of="$MNT/victim" bs=4096 skip=1 seek=1 count=1 \
		conv=notrunc status=none
	cmp "$MNT/victim" "$DATA"
}

@test "holes: sparse files read their holes as zeros, across remounts" {
	local ref=$RK_TMP/ref
	mkdir "$ref"
	rk_mount
	local d
	for d in "$MNT" "$ref"; do
		# a write past the end, truncate and fallocate growing a file
		dd if="$DATA" of="$d/seek" bs=4096 count=2 seek=10 status=none
		cp "$DATA" "$d/grown"
		truncate -s 1M "$d/grown"
		dd if="$DATA" of="$d/grown" bs=1000 count=3 seek=500 \
			conv=notrunc status=none
		head -c 100 "$DATA" >"$d/alloc"
		fallocate -l 300000 "$d/alloc"
		truncate -s 50000 "$d/only-hole"
	done
	for d in seek grown alloc only-hole; do
		cmp "$MNT/$d" "$ref/$d"
	done
	rk_unmount
	[ "$(flags "$BACK/seek")" -eq 1 ]
	rk_mount
	for d in seek grown alloc only-hole; do
		cmp "$MNT/$d" "$ref/$d"
	done
	# writes to a sparse file after a remount keep its holes readable
	echo tail >>"$MNT/seek"
	echo tail >>"$ref/seek"
	dd if="$DATA" of="$MNT/grown" bs=4096 count=1 seek=3 conv=notrunc status=none
	dd if="$DATA" of="$ref/grown" bs=4096 count=1 seek=3 conv=notrunc status=none
	rk_unmount
	rk_mount
	cmp "$MNT/seek" "$ref/seek"
	cmp "$MNT/grown" "$ref/grown"
	rk_unmount
	run "$REKEYFS_REKEY" --verify -q --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
}

@test "holes: --verify names an all-zero block of a file that may not have holes" {
	rk_mount
	cp "$DATA" "$MNT/victim"
	cp "$DATA" "$MNT/fine"
	dd if="$DATA" of="$MNT/sparse" bs=4096 count=1 seek=5 status=none
	rk_unmount
	zero_block "$BACK/victim" 2
	run "$REKEYFS_REKEY" --verify --keyring "$KR" "$BACK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"victim"*"block 2 is all zero in a file that may not have holes"* ]]
	[[ "$output" != *"fine"* ]]
	[[ "$output" != *"sparse:"* ]]
	# rekey refuses to copy it too, and leaves it as it was
	rk_add_gen 2
	cp "$BACK/victim" "$RK_TMP/before"
	run "$REKEYFS_REKEY" -q --keyring "$KR" "$BACK"
	[ "$status" -eq 1 ]
	cmp "$BACK/victim" "$RK_TMP/before"
}

@test "holes: the rekey copy carries the flag, and files without it keep reading and gain it" {
	if [ -z "$RK_FIXTURES" ] || [ ! -d "$RK_FIXTURES/v1" ]; then
		skip "fixtures missing"
	fi
	rmdir "$BACK"
	cp -a "$RK_FIXTURES/v1/backing" "$BACK"
	cp "$RK_FIXTURES/v1/keyring" "$KR"
	chmod 600 "$KR"
	# v1 files were written without the flag; their holes still read
	[ "$(flags "$BACK/sparse")" -eq 0 ]
	rk_mount -o ro
	(cd "$MNT" && sha256sum --strict -c "$RK_FIXTURES/v1/MANIFEST")
	rk_unmount
	rk_add_gen 3
	sed -i 's/^primary = 2$/primary = 3/' "$KR"
	run "$REKEYFS_REKEY" -q --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	local f
	for f in sparse sparse-grown b4097 g1-big-100k; do
		[ "$(rk_header_gen "$BACK/$f")" -eq 3 ]
		[ "$(flags "$BACK/$f")" -eq 1 ]
	done
	rk_mount
	(cd "$MNT" && sha256sum --strict -c "$RK_FIXTURES/v1/MANIFEST")
	rk_unmount
	# after the rekey, a zeroed block of a file without holes is caught
	zero_block "$BACK/b8192" 0
	run "$REKEYFS_REKEY" --verify --keyring "$KR" "$BACK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"b8192"*"block 0 is all zero"* ]]
}

@test "holes: truncation to the header or to nothing is an empty file (documented, not detected)" {
	rk_mount
	cp "$DATA" "$MNT/to-header"
	cp "$DATA" "$MNT/to-zero"
	cp "$DATA" "$MNT/to-block"
	rk_unmount
	truncate -s 32 "$BACK/to-header"
	truncate -s 0 "$BACK/to-zero"
	truncate -s "$(boff 2)" "$BACK/to-block"
	rk_mount
	[ "$(stat -c %s "$MNT/to-header")" -eq 0 ]
	[ "$(stat -c %s "$MNT/to-zero")" -eq 0 ]
	[ -z "$(cat "$MNT/to-header" "$MNT/to-zero")" ]
	# any cut that leaves a block is detected
	eio cat "$MNT/to-block"
	rk_unmount
	run "$REKEYFS_REKEY" --verify --keyring "$KR" "$BACK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"to-block"* ]]
	[[ "$output" != *"to-header"* ]]
	[[ "$output" != *"to-zero"* ]]
	# and --verify says what it cannot see
	run "$REKEYFS_REKEY" --help
	[[ "$output" == *"Cannot tell a file cut"* ]]
	[[ "$output" == *"to 0 bytes or to its 32-byte header"* ]]
}

@test "holes: a file moved to another tree that shares the keyring reads there (documented, not detected)" {
	local back2=$RK_TMP/back2 mnt2=$RK_TMP/mnt2
	mkdir "$back2" "$mnt2"
	rk_mount
	cp "$DATA" "$MNT/moved"
	rk_unmount
	rk_mount_at "$back2" "$mnt2" --keyring "$KR"
	echo other >"$mnt2/other"
	rk_unmount "$mnt2"
	cp "$BACK/moved" "$back2/moved"
	rk_mount_at "$back2" "$mnt2" --keyring "$KR"
	cmp "$mnt2/moved" "$DATA"
	rk_unmount "$mnt2"
	# the trees have different ids; a keyring per tree is what separates
	# them (a fresh keyring cannot read the moved file)
	! cmp -s "$BACK/.rekeyfs.conf" "$back2/.rekeyfs.conf"
}

@test "holes: the hole flag cannot be taken off a file's header" {
	rk_mount
	cp "$DATA" "$MNT/victim"
	rk_unmount
	printf '\0' | dd of="$BACK/victim" bs=1 seek=31 conv=notrunc status=none
	[ "$(flags "$BACK/victim")" -eq 0 ]
	zero_block "$BACK/victim" 1
	rk_mount
	eio cat "$MNT/victim"
	eio dd if="$MNT/victim" of=/dev/null bs=4096 count=1 status=none
	logged "victim: block 0 fails authentication"
}
