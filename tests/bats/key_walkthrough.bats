#!/usr/bin/env bats
# The README's "Rotating keys" walk-through, run verbatim: every ```sh block
# of its "### Walk-through" part, in order, in an empty directory with the
# built programs on PATH and a live mount.  Checks run between the blocks.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_KEY" ] || skip "rekeyfs-key not built"
	README=$BATS_TEST_DIRNAME/../../README.md
	W=$RK_TMP/walk
	mkdir "$W"
	# blocks/1.sh, blocks/2.sh, ...
	mkdir "$RK_TMP/blocks"
	awk -v out="$RK_TMP/blocks" '
		/^## Rotating keys/ { in_sec = 1; next }
		in_sec && /^### Walk-through/ { in_walk = 1; next }
		in_walk && /^##/ { exit }
		in_walk && /^```sh$/ { n++; in_code = 1; next }
		in_code && /^```$/ { in_code = 0; next }
		in_code { print > (out "/" n ".sh") }' "$README"
}

teardown() {
	rk_teardown
}

# block N: run README block N verbatim in the walk-through directory.
block() {
	(cd "$W" && PATH=$RK_BUILD:$PATH bash -e "$RK_TMP/blocks/$1.sh")
}

wait_for() {
	local i
	for i in $(seq 1 60); do
		"$@" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "timed out waiting for: $*" >&2
	return 1
}

new_file_gen_is() {
	local f=probe.$RANDOM$RANDOM g
	echo probe > "$W/vault/$f" || return 1
	g=$(rk_header_gen "$W/vault.enc/$f")
	rm "$W/vault/$f" || return 1
	[ "$g" -eq "$1" ]
}

@test "README walk-through: init, add, promote, snippet, rekey, status, destroy" {
	[ "$(ls "$RK_TMP/blocks" | wc -l)" -eq 5 ]
	grep -q 'rekeyfs-key init' "$RK_TMP/blocks/1.sh"

	run block 1
	echo "$output"
	[ "$status" -eq 0 ]
	mountpoint -q "$W/vault"
	[ "$(stat -c %a "$W/vault.keyring")" = 600 ]
	[ "$(rk_header_gen "$W/vault.enc/old.txt")" -eq 1 ]

	run block 2
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"generation 2 is now primary"* ]]
	[[ "${lines[-1]}" =~ ^2\ +enabled\ +yes ]]
	wait_for new_file_gen_is 2

	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built: the rekey step cannot run"

	run block 3
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(stat -c %a "$W/vault-3.key")" = 600 ]
	grep -qx "key_file = $W/vault-3.key" "$W/vault.keyring"
	wait_for new_file_gen_is 3

	run block 4
	echo "$output"
	[ "$status" -eq 0 ]
	local f
	for f in "$W"/vault.enc/*; do
		[ "$(rk_header_gen "$f")" -eq 3 ]
	done

	run block 5
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"generation 1 destroyed"* ]]
	[[ "$output" == *"generation 2 destroyed"* ]]
	[[ "$output" == *"written under generation 1"* ]]
	! mountpoint -q "$W/vault" || false
	run "$REKEYFS_KEY" list --json --keyring "$W/vault.keyring"
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
s = {g["generation"]: g["state"] for g in d["generations"]}
assert s == {1: "destroyed", 2: "destroyed", 3: "enabled"}, s
assert d["primary"] == 3
' "$output"
	# the tree still fits the keyring and reads back after a remount
	run "$REKEYFS_KEY" check --source "$W/vault.enc" --keyring "$W/vault.keyring"
	[ "$status" -eq 0 ]
}
