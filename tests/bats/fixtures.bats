#!/usr/bin/env bats
# Golden fixtures through a real mount: a copy of every committed backing
# tree (tests/fixtures/vN) mounts and reads back exactly what its MANIFEST
# and SYMLINKS record.  See tests/fixtures/README.md.

load helpers

setup() {
	rk_setup
	if [ -z "$RK_FIXTURES" ] || [ ! -d "$RK_FIXTURES/v1" ]; then
		echo "fixtures missing: $RK_FIXTURES/v1" >&2
		return 1
	fi
}

teardown() {
	rk_teardown
}

# no_corruption_logged: the daemon reported no damaged file.
no_corruption_logged() {
	if grep -E 'fails authentication|invalid|not in the keyring' "$LOG"; then
		return 1
	fi
}

# fixture_copy V: copy fixture V to BACK and its keyring to KR at mode 0600
# (git does not keep 0600, and rekeyfs refuses a readable keyring).
fixture_copy() {
	rmdir "$BACK"
	cp -a "$RK_FIXTURES/$1/backing" "$BACK"
	cp "$RK_FIXTURES/$1/keyring" "$KR"
	chmod 600 "$KR"
	FIX=$RK_FIXTURES/$1
}

# backing_sums: sha256 of every backing file, for "nothing changed" checks.
backing_sums() {
	(cd "$BACK" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

# check_tree: the mounted tree is exactly MANIFEST + SYMLINKS.
check_tree() {
	(cd "$MNT" && sha256sum --strict -c "$FIX/MANIFEST")
	diff <(cd "$MNT" && find . -type f | sort) \
		<(sed 's/^[0-9a-f]*  //' "$FIX/MANIFEST" | sort)
	diff <(cd "$MNT" && find . -type l | sort) \
		<(sed 's/ -> .*//' "$FIX/SYMLINKS" | sort)
	local path target
	while IFS= read -r line; do
		path=${line%% -> *}
		target=${line#* -> }
		[ "$(readlink "$MNT/$path")" = "$target" ]
	done <"$FIX/SYMLINKS"
	# Nothing of rekeyfs' own shows in the mount.
	local n
	for n in "$MNT"/.rekeyfs*; do
		[ ! -e "$n" ]
	done
	[ ! -e "$MNT/.rekeyfs.conf" ]
}

@test "fixtures v1: a read-only mount reads every file as recorded" {
	fixture_copy v1
	local before
	before=$(backing_sums)
	rk_mount -o ro
	check_tree
	[ "$(sha256sum <"$MNT/sub/link-up" | cut -d' ' -f1)" = \
		"$(grep ' ./b4096$' "$FIX/MANIFEST" | cut -d' ' -f1)" ]
	[ "$(stat -c %s "$MNT/sparse")" -eq $((7 * 4096 + 100)) ]
	[ "$(stat -c %s "$MNT/empty")" -eq 0 ]
	[ "$(stat -c %s "$MNT/empty-noheader")" -eq 0 ]
	[ "$(stat -c %s "$MNT/b4097")" -eq 4097 ]
	run bash -c "echo x >'$MNT/newfile'"
	[ "$status" -ne 0 ]
	rk_unmount
	[ "$(backing_sums)" = "$before" ]
	no_corruption_logged
}

@test "fixtures v1: the tree holds generations 1 and 2 side by side" {
	fixture_copy v1
	local f name g1=0 g2=0
	while IFS= read -r f; do
		[ "$(stat -c %s "$f")" -gt 0 ] || continue
		name=${f##*/}
		if [[ $name == g1-* ]]; then
			[ "$(rk_header_gen "$f")" -eq 1 ]
			g1=$((g1 + 1))
		else
			[ "$(rk_header_gen "$f")" -eq 2 ]
			g2=$((g2 + 1))
		fi
	done < <(find "$BACK" -type f ! -name '.rekeyfs*')
	[ "$g1" -ge 3 ]
	[ "$g2" -ge 3 ]
}

@test "fixtures v1: a read-write mount keeps old files readable and writes with the primary" {
	fixture_copy v1
	rk_mount
	check_tree
	# Appending to a generation-1 file keeps it in generation 1.
	cp "$MNT/g1-b4097" "$RK_TMP/expect"
	printf 'appended' >>"$MNT/g1-b4097"
	printf 'appended' >>"$RK_TMP/expect"
	echo "new file" >"$MNT/fresh"
	rk_unmount
	[ "$(rk_header_gen "$BACK/g1-b4097")" -eq 1 ]
	[ "$(rk_header_gen "$BACK/fresh")" -eq 2 ]
	rk_mount -o ro
	cmp "$MNT/g1-b4097" "$RK_TMP/expect"
	[ "$(cat "$MNT/fresh")" = "new file" ]
	[ "$(sha256sum <"$MNT/g1-big-100k" | cut -d' ' -f1)" = \
		"$(grep ' ./g1-big-100k$' "$FIX/MANIFEST" | cut -d' ' -f1)" ]
}

@test "fixtures v1: the wrong keyring is refused up front" {
	fixture_copy v1
	rk_keyring "$KR" "" 1 2
	# (A daemon that wrongly mounts is stopped by timeout: status 124.)
	run timeout 10 "$REKEYFS" -f --keyring "$KR" "$BACK" "$MNT"
	echo "$output"
	[ "$status" -ne 0 ]
	[ "$status" -ne 124 ]
	[[ "$output" == *"generation 1"* ]]
}

@test "fixtures v1-holeauth: a read-only mount reads every file as recorded" {
	fixture_copy v1-holeauth
	local before f
	before=$(backing_sums)
	# every file with a header carries the hole flag (header byte 31)
	while IFS= read -r f; do
		[ "$(stat -c %s "$f")" -gt 0 ] || continue
		[ "$(od -An -tu1 -j31 -N1 "$f" | tr -d ' ')" -eq 1 ]
	done < <(find "$BACK" -type f ! -name '.rekeyfs*')
	rk_mount -o ro
	check_tree
	[ "$(stat -c %s "$MNT/sparse")" -eq $((7 * 4096 + 100)) ]
	rk_unmount
	[ "$(backing_sums)" = "$before" ]
	no_corruption_logged
}
