#!/usr/bin/env bats
# Tampering with the backing files of a real mount: every damaged region
# reads as EIO (never as wrong data), undamaged blocks and files still read
# correctly, the daemon logs the file and block, and it keeps serving.

load helpers

setup() {
	rk_setup
	DATA=$RK_TMP/data
}

teardown() {
	rk_teardown
}

CB=4136 # ciphertext block: nonce 24 + 4096 + tag 16

# boff K: backing offset of block K.
boff() {
	echo $((32 + $1 * CB))
}

# flip_byte FILE OFFSET: xor one byte with 0x10 in place.
flip_byte() {
	local v
	v=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
	[ -n "$v" ]
	printf "\\$(printf %o $((v ^ 16)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# put_byte FILE OFFSET VALUE
put_byte() {
	printf "\\$(printf %o "$3")" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# copy_bytes SRC SOFF DST DOFF LEN: overwrite DST[DOFF..] with SRC[SOFF..].
copy_bytes() {
	dd if="$1" of="$3" bs="$5" count=1 skip="$2" seek="$4" \
		iflag=skip_bytes oflag=seek_bytes conv=notrunc status=none
}

# read_block FILE K: plaintext block K of FILE.
read_block() {
	dd if="$1" bs=4096 skip="$2" count=1 status=none
}

# block_ok NAME K: block K of MNT/NAME matches the data it was written with.
block_ok() {
	cmp <(read_block "$MNT/$1" "$2") <(read_block "$DATA" "$2")
}

# block_eio NAME K: reading block K of MNT/NAME fails with EIO.
block_eio() {
	run dd if="$MNT/$1" of=/dev/null bs=4096 skip="$2" count=1 status=none
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
}

# whole_eio NAME: cat fails with EIO.
whole_eio() {
	run cat "$MNT/$1"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
}

# logged PATTERN: the daemon log has a line matching PATTERN.
logged() {
	grep -E -- "$1" "$LOG" || {
		echo "no log line matching '$1'; log:" >&2
		cat "$LOG" >&2
		return 1
	}
}

# serving: the mount still answers, reads and writes.
serving() {
	mountpoint -q "$MNT"
	echo "still here" >"$MNT/after-tamper"
	[ "$(cat "$MNT/after-tamper")" = "still here" ]
	cmp "$MNT/bystander" "$DATA"
}

# tamper_setup NAME...: write DATA (4 full blocks + 3616 bytes) to each
# NAME and to "bystander" through a mount, then unmount.
tamper_setup() {
	local n
	[ -s "$KR" ] || rk_keyring "$KR" "" 1
	head -c 20000 /dev/urandom >"$DATA"
	rk_mount
	for n in "$@" bystander; do
		cp "$DATA" "$MNT/$n"
	done
	rk_unmount
	for n in "$@" bystander; do
		[ "$(stat -c %s "$BACK/$n")" -eq $((32 + 4 * CB + 3616 + 40)) ]
	done
}

@test "tamper: a flipped bit in nonce, ciphertext or tag of one block" {
	tamper_setup v-nonce v-ct v-tag
	flip_byte "$BACK/v-nonce" $(($(boff 1) + 5))
	flip_byte "$BACK/v-ct" $(($(boff 1) + 24 + 1000))
	flip_byte "$BACK/v-tag" $(($(boff 1) + CB - 3))
	rk_mount
	local v
	for v in v-nonce v-ct v-tag; do
		block_eio "$v" 1
		block_ok "$v" 0
		block_ok "$v" 2
		block_ok "$v" 3
		block_ok "$v" 4
		whole_eio "$v"
		logged "$v: block 1 fails authentication"
	done
	serving
}

@test "tamper: two blocks swapped" {
	tamper_setup victim
	cp "$BACK/victim" "$RK_TMP/orig"
	copy_bytes "$RK_TMP/orig" "$(boff 1)" "$BACK/victim" "$(boff 2)" $CB
	copy_bytes "$RK_TMP/orig" "$(boff 2)" "$BACK/victim" "$(boff 1)" $CB
	rk_mount
	block_eio victim 1
	block_eio victim 2
	block_ok victim 0
	block_ok victim 3
	logged "victim: block [12] fails authentication"
	serving
}

@test "tamper: a block copied from another file at the same index" {
	tamper_setup victim other
	copy_bytes "$BACK/other" "$(boff 2)" "$BACK/victim" "$(boff 2)" $CB
	rk_mount
	block_eio victim 2
	block_ok victim 1
	block_ok victim 3
	block_ok victim 4
	cmp "$MNT/other" "$DATA"
	logged "victim: block 2 fails authentication"
	serving
}

@test "tamper: header generation changed to another generation of the keyring" {
	rk_keyring "$KR" 1 1 2
	tamper_setup victim
	[ "$(rk_header_gen "$BACK/victim")" -eq 1 ]
	put_byte "$BACK/victim" 11 2
	[ "$(rk_header_gen "$BACK/victim")" -eq 2 ]
	rk_mount
	whole_eio victim
	block_eio victim 3
	logged "victim: block [0-9]+ fails authentication"
	serving
}

@test "tamper: file id edited" {
	tamper_setup victim
	flip_byte "$BACK/victim" 20
	rk_mount
	whole_eio victim
	block_eio victim 0
	block_eio victim 4
	logged "victim: block [0-9]+ fails authentication"
	serving
}

@test "tamper: magic, version or flags of the header replaced" {
	tamper_setup v-magic v-version v-flags
	put_byte "$BACK/v-magic" 0 120
	put_byte "$BACK/v-version" 6 2
	put_byte "$BACK/v-flags" 31 3 # an unknown flag bit
	rk_mount
	local v
	for v in v-magic v-version v-flags; do
		whole_eio "$v"
		block_eio "$v" 2
		logged "$v: header or size is invalid"
	done
	serving
}

@test "tamper: truncated at a block boundary (final block dropped)" {
	tamper_setup victim
	truncate -s "$(boff 4)" "$BACK/victim"
	rk_mount
	[ "$(stat -c %s "$MNT/victim")" -eq 16384 ]
	block_ok victim 0
	block_ok victim 2
	block_eio victim 3
	whole_eio victim
	logged "victim: block 3 fails authentication"
	serving
}

@test "tamper: truncated mid-block, to a possible and an impossible size" {
	tamper_setup v-short v-impossible
	truncate -s $(($(boff 4) + 1000)) "$BACK/v-short"
	truncate -s $(($(boff 4) + 20)) "$BACK/v-impossible"
	rk_mount
	block_ok v-short 0
	block_ok v-short 3
	block_eio v-short 4
	logged "v-short: block 4 fails authentication"
	# a size no file has reads like a torn tail: the whole blocks before
	# it read, the last one (not sealed as final) does not
	[ "$(stat -c %s "$MNT/v-impossible")" -eq 16384 ]
	block_ok v-impossible 0
	block_ok v-impossible 2
	block_eio v-impossible 3
	whole_eio v-impossible
	logged "v-impossible: block 3 fails authentication"
	serving
}

@test "tamper: garbage appended, a few bytes or a whole block" {
	tamper_setup v-few v-block
	head -c 100 /dev/urandom >>"$BACK/v-few"
	head -c $CB /dev/urandom >>"$BACK/v-block"
	rk_mount
	block_ok v-few 0
	block_ok v-few 3
	block_eio v-few 4
	logged "v-few: block 4 fails authentication"
	block_ok v-block 3
	block_eio v-block 4
	block_eio v-block 5
	whole_eio v-block
	logged "v-block: block [45] fails authentication"
	serving
}

@test "tamper: final block zeroed, or a zero block appended" {
	tamper_setup v-zero v-append
	local fsz
	fsz=$(stat -c %s "$BACK/v-zero")
	dd if=/dev/zero of="$BACK/v-zero" bs=1 count=$((fsz - $(boff 4))) \
		seek="$(boff 4)" conv=notrunc status=none
	head -c $CB /dev/zero >>"$BACK/v-append"
	rk_mount
	block_ok v-zero 3
	block_eio v-zero 4
	logged "v-zero: block 4 fails authentication"
	block_eio v-append 5
	block_eio v-append 4
	block_ok v-append 0
	logged "v-append: block [45] fails authentication"
	serving
}

@test "tamper: a bad block is logged once, not on every read" {
	tamper_setup victim
	flip_byte "$BACK/victim" $(($(boff 2) + 100))
	rk_mount
	block_eio victim 2
	block_eio victim 2
	block_eio victim 2
	logged "victim: block 2 fails authentication"
	[ "$(grep -c 'victim: block 2 fails authentication' "$LOG")" -eq 1 ]
	serving
}

@test "tamper: a generation missing from the keyring gives EIO and changes nothing" {
	tamper_setup victim
	put_byte "$BACK/victim" 11 9
	[ "$(rk_header_gen "$BACK/victim")" -eq 9 ]
	local before
	before=$(sha256sum <"$BACK/victim")
	rk_mount
	whole_eio victim
	block_eio victim 1
	logged "victim: generation 9 is not in the keyring"
	# Writes fail too and leave the backing file alone.
	run dd if=/dev/zero of="$MNT/victim" bs=100 count=1 seek=3 conv=notrunc status=none
	[ "$status" -ne 0 ]
	run bash -c "echo more >>'$MNT/victim'"
	[ "$status" -ne 0 ]
	run truncate -s 5000 "$MNT/victim"
	[ "$status" -ne 0 ]
	# Its size is still known from the backing size alone.
	[ "$(stat -c %s "$MNT/victim")" -eq 20000 ]
	serving
	rk_unmount
	[ "$(sha256sum <"$BACK/victim")" = "$before" ]
}

@test "tamper: a name with a newline cannot forge a log line" {
	rk_keyring "$KR" "" 1
	rk_mount
	local name
	name=$(printf 'evil\nrekeyfs: forged line')
	head -c 10000 /dev/urandom >"$MNT/$name"
	rk_unmount
	flip_byte "$BACK/$name" $(($(boff 1) + 100))
	rk_mount
	run cat "$MNT/$name"
	[ "$status" -ne 0 ]
	grep -qF 'evil\012rekeyfs: forged line: block 1 fails authentication' "$LOG"
	! grep -q '^rekeyfs: forged line' "$LOG"
}
