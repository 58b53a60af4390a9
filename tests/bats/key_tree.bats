#!/usr/bin/env bats
# rekeyfs-key against a backing tree: check --source (wrong keyring),
# disable/destroy refusing while files use a generation (header scan).

load helpers

setup() {
	rk_setup
	K=$REKEYFS_KEY
	[ -x "$K" ] || skip "rekeyfs-key not built"
	"$K" init --keyring "$KR" >/dev/null
}

teardown() {
	rk_teardown
}

# fails STATUS CMD...: must fail with STATUS and leave the keyring as it was.
fails() {
	local want=$1
	shift
	cp -p "$KR" "$RK_TMP/kr.before"
	run "$@"
	echo "status $status: $output"
	[ "$status" -eq "$want" ]
	cmp "$KR" "$RK_TMP/kr.before"
}

# a tree with files on generations 1 and 2 (2 primary)
two_gen_tree() {
	rk_mount
	mkdir -p "$MNT/docs/deep"
	echo one > "$MNT/docs/a"
	echo one > "$MNT/docs/deep/b"
	echo one > "$MNT/c"
	: > "$MNT/empty"	# a header alone: also generation 1
	rk_unmount
	"$K" add --primary --keyring "$KR" >/dev/null
	rk_mount
	echo two > "$MNT/d"
	rk_unmount
	[ "$(rk_header_gen "$BACK/docs/deep/b")" -eq 1 ]
	[ "$(rk_header_gen "$BACK/d")" -eq 2 ]
}

@test "check: the keyring fits its tree" {
	two_gen_tree
	run "$K" check --source "$BACK" --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"generation 1: ok"* ]]
	[[ "$output" == *"generation 2: ok"* ]]
	[[ "$output" == *"fits $BACK"* ]]
}

@test "check: a wrong keyring is refused naming the generation; mount and rekey refuse it too" {
	two_gen_tree
	local other=$RK_TMP/other.keyring
	"$K" init --keyring "$other"
	cp -p "$other" "$RK_TMP/other.before"
	run "$K" check --source "$BACK" --keyring "$other"
	[ "$status" -eq 1 ]
	[[ "$output" == *"wrong keyring: its generation 1 is not the key that wrote this tree's generation-1 files"* ]]
	cmp "$other" "$RK_TMP/other.before"
	# the daemon refuses it
	run timeout 20 "$REKEYFS" -f --keyring "$other" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"generation 1 is not the key"* ]]
	! mountpoint -q "$MNT" || false
	# and so does the rekey tool
	if [ -x "$REKEYFS_REKEY" ]; then
		run "$REKEYFS_REKEY" --keyring "$other" "$BACK"
		[ "$status" -ne 0 ]
		[[ "$output" == *"generation 1 is not the key"* ]]
	fi
	# generation 2 wrong only
	"$K" add --keyring "$other"
	cp "$KR" "$RK_TMP/mixed"
	awk -v k="$(awk '/^\[generation 2\]/{s=1} s && $1 == "key" {print $3; exit}' "$other")" '
		/^\[generation 2\]/ { s = 1 }
		s && $1 == "key" { $0 = "key = " k }
		s && $1 == "check" { next }
		{ print }' "$KR" > "$RK_TMP/mixed"
	chmod 600 "$RK_TMP/mixed"
	run "$K" check --source "$BACK" --keyring "$RK_TMP/mixed"
	[ "$status" -eq 1 ]
	[[ "$output" == *"generation 1: ok"* ]]
	[[ "$output" == *"its generation 2 is not the key"* ]]
}

@test "check: not a backing directory, missing --source" {
	fails 2 "$K" check --source "$RK_TMP" --keyring "$KR"
	[[ "$output" == *"not a rekeyfs backing directory"* ]]
	fails 2 "$K" check --keyring "$KR"
	[[ "$output" == *"--source"* ]]
	printf '[mount]\nkeyring = vault.keyring\nbacking = back\n' > "$RK_TMP/m.conf"
	rk_mount
	rk_unmount
	run "$K" check --config "$RK_TMP/m.conf"
	[ "$status" -eq 0 ]
}

@test "disable/destroy --source refuse while files use the generation, naming them" {
	two_gen_tree
	fails 1 "$K" disable 1 --source "$BACK" --keyring "$KR"
	[[ "$output" == *"4 files still use generation 1:"* ]]
	[[ "$output" == *" empty"* ]]
	[[ "$output" == *"docs/deep/b"* ]]
	[[ "$output" == *"docs/a"* ]]
	[[ "$output" == *" c"* ]]
	[[ "$output" == *"refusing to disable generation 1"* ]]
	fails 1 "$K" destroy 1 --source "$BACK" --keyring "$KR"
	[[ "$output" == *"4 files still use generation 1"* ]]
	# the primary is refused before any scan, even with --force
	fails 1 "$K" destroy 2 --force --source "$BACK" --keyring "$KR"
	[[ "$output" == *"is the primary"* ]]
	# --force overrides the scan
	run "$K" disable 1 --force --source "$BACK" --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"--force"* ]]
}

@test "the scan names at most a few files and says how many" {
	rk_mount
	local i
	for i in $(seq 1 12); do echo x > "$MNT/f$i"; done
	rk_unmount
	"$K" add --primary --keyring "$KR"
	fails 1 "$K" destroy 1 --source "$BACK" --keyring "$KR"
	[[ "$output" == *"12 files still use generation 1:"*" ..."* ]]
	[ "$(grep -o ' f[0-9]\+' <<<"$output" | wc -l)" -eq 5 ]
}

@test "the scan skips .rekeyfs names and does not follow symlinks" {
	rk_mount
	echo x > "$MNT/only"
	rk_unmount
	"$K" add --primary --keyring "$KR"
	# a generation-1 file elsewhere, reachable only through symlinks
	mkdir -p "$RK_TMP/outside"
	cp "$BACK/only" "$RK_TMP/outside/f"
	ln -s "$RK_TMP/outside" "$BACK/linkdir"
	ln -s "$RK_TMP/outside/f" "$BACK/linkfile"
	# a rekey temp file on generation 1
	cp "$BACK/only" "$BACK/.rekeyfs-tmp.abc"
	rm "$BACK/only"
	run "$K" destroy 1 --source "$BACK" --keyring "$KR"
	[ "$status" -eq 0 ]
	run "$K" list --keyring "$KR"
	[[ "${lines[1]}" =~ ^1\ +destroyed ]]
}

@test "after a rekey, disable and destroy go through" {
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
	two_gen_tree
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	run "$K" disable 1 --source "$BACK" --keyring "$KR"
	[ "$status" -eq 0 ]
	run "$K" destroy 1 --source "$BACK" --keyring "$KR"
	[ "$status" -eq 0 ]
	rk_mount
	[ "$(cat "$MNT/docs/deep/b")" = one ]
	[ "$(cat "$MNT/d")" = two ]
}
