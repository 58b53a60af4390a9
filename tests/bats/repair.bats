#!/usr/bin/env bats
# rekeyfs-rekey --verify --repair: files a crash left with an unreadable
# tail are cut after their last good block and report what was lost;
# files with bad blocks in the middle and busy files are left alone.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
}

teardown() {
	[ -n "${HOLDER:-}" ] && kill "$HOLDER" 2>/dev/null
	rk_teardown
}

json_get() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# torn_tail FILE: what a crash during an append can leave: the old final
# block, zeros to the end of its slot, then a block and a half of junk.
torn_tail() {
	truncate -s $((32 + 3 * 4136)) "$1"
	head -c 6000 /dev/urandom >>"$1"
}

@test "repair: a torn tail is cut after the last good block; damage and busy files are left alone" {
	rk_keyring "$KR" "" 1
	rk_mount
	head -c 9000 /dev/urandom >"$MNT/tail"
	head -c 20000 /dev/urandom >"$MNT/middle"
	head -c 9000 /dev/urandom >"$MNT/busy"
	head -c 10000 /dev/urandom >"$MNT/good"
	cp "$MNT/tail" "$RK_TMP/tail.orig"
	cp "$MNT/good" "$RK_TMP/good.orig"
	cp "$MNT/busy" "$RK_TMP/busy.orig"
	rk_unmount

	torn_tail "$BACK/tail"
	torn_tail "$BACK/busy"
	printf 'XXXXXXXXXX' | dd of="$BACK/middle" bs=1 seek=$((32 + 2 * 4136 + 50)) conv=notrunc status=none
	head -c 10 /dev/urandom >>"$BACK/middle"
	mid_sum=$(sha256sum <"$BACK/middle")
	busy_sum=$(sha256sum <"$BACK/busy")

	run "$REKEYFS_REKEY" --verify -q --keyring "$KR" "$BACK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"FAILED: tail: block 2 fails"* ]]

	run "$REKEYFS_REKEY" --repair -q --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--repair only goes with --verify"* ]]

	# a mount (or anyone) holding the file: busy, never repaired
	(exec 9<"$BACK/busy" && flock -s 9 && exec sleep 60) &
	HOLDER=$!
	sleep 0.2
	run "$REKEYFS_REKEY" --verify --repair --json -q --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(echo "$output" | json_get 'len(d["repaired_files"])')" = 1 ]
	[ "$(echo "$output" | json_get 'd["repaired_files"][0]["path"]')" = tail ]
	reason=$(echo "$output" | json_get 'd["repaired_files"][0]["reason"]')
	# stat said 18208 bytes: 4 whole slots and 1864 bytes of a fifth
	[ "$reason" = "kept 9000 of 18208 bytes, lost 9208; blocks 3-4 dropped (bytes 9000-18208)" ]
	[ "$(echo "$output" | json_get 'd["failed_files"][0]["path"]')" = middle ]
	[[ "$(echo "$output" | json_get 'd["failed_files"][0]["reason"]')" == *"not repaired: block 2 is bad"* ]]
	[ "$(echo "$output" | json_get 'd["busy_files"][0]["path"]')" = busy ]
	[ "$(sha256sum <"$BACK/middle")" = "$mid_sum" ]
	[ "$(sha256sum <"$BACK/busy")" = "$busy_sum" ]
	kill "$HOLDER"
	wait "$HOLDER" 2>/dev/null || true
	HOLDER=

	# the repaired file verifies and reads back whole
	run "$REKEYFS_REKEY" --verify --json -q --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(echo "$output" | json_get 'sorted(f["path"] for f in d["failed_files"])')" = "['busy', 'middle']" ]
	rk_mount
	[ "$(stat -c %s "$MNT/tail")" = 9000 ]
	cmp "$MNT/tail" "$RK_TMP/tail.orig"
	cmp "$MNT/good" "$RK_TMP/good.orig"
	# the unrepaired one: its whole blocks read; the page of its old
	# final block holds unreadable bytes too (nothing after it
	# authenticates), so it waits for the repair
	head -c 8192 "$MNT/busy" | cmp - <(head -c 8192 "$RK_TMP/busy.orig")
	run head -c 9000 "$MNT/busy"
	[ "$status" -ne 0 ]
	rk_unmount
}
