#!/usr/bin/env bats
# rekeyfs-rekey end to end: rotation, idempotence, status, dry-run, verify,
# JSON, bad files, lock and usage errors.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
}

teardown() {
	rk_teardown
}

# backing_files: regular backing files, rekeyfs' own names excluded.
backing_files() {
	find "$BACK" -type f ! -name '.rekeyfs*' -print0 | sort -z
}

# all_headers_on N: every backing file with a header is on generation N.
all_headers_on() {
	local f g bad=0
	while IFS= read -r -d '' f; do
		[ -s "$f" ] || continue
		g=$(rk_header_gen "$f")
		if [ "$g" != "$1" ]; then
			echo "header of $f is generation $g, not $1" >&2
			bad=1
		fi
	done < <(backing_files)
	return $bad
}

# snapshot DIR: names, inode numbers, link counts, modes, mtimes, hashes
# (the tree lock file left by an earlier locking run is not content).
snapshot() {
	(cd "$1" && find . ! -name .rekeyfs.lock -printf '%p %i %n %m %T@ %s %y\n' | sort &&
		find . -type f ! -name .rekeyfs.lock -exec sha256sum {} + | sort -k2)
}

json_get() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

make_tree() {
	local m=$MNT
	: >"$m/empty"
	printf x >"$m/one"
	head -c 4095 /dev/urandom >"$m/f4095"
	head -c 4096 /dev/urandom >"$m/f4096"
	head -c 4097 /dev/urandom >"$m/f4097"
	head -c $((5 * 1024 * 1024 + 123)) /dev/urandom >"$m/big"
	truncate -s 64M "$m/sparse"
	printf 'middle' | dd of="$m/sparse" bs=1 seek=$((20 * 1024 * 1024)) conv=notrunc status=none
	printf 'end' >>"$m/sparse"
	mkdir -p "$m/sub/deeper"
	printf 'linked pair\n' >"$m/pair1"
	ln "$m/pair1" "$m/sub/pair2"
	printf 'with attrs' >"$m/attrs"
	setfattr -n user.x -v y "$m/attrs"
	setfattr -n user.other -v 'second value' "$m/attrs"
	printf 'space' >"$m/sub/with space"
	printf 'unicode' >"$m/sub/ünïcødé ☃"
	printf 'dash' >"$m/sub/deeper/-leading-dash"
	chmod 640 "$m/one"
	chown 1234:5678 "$m/f4096"
	chmod 4755 "$m/f4095"
	touch -m -d '2001-02-03 04:05:06' "$m/f4097"
	ln -s one "$m/link"
	mkfifo "$m/fifo"
}

# meta_list DIR: per regular file: path, mode, mtime, link count, sha256.
meta_list() {
	(cd "$1" && find . -type f -printf '%p %m %T@ %n\n' | sort &&
		find . -type f -exec sha256sum {} + | sort -k2)
}

@test "rekey: rotation keeps content, metadata, xattrs, links and holes" {
	rk_keyring "$KR" "" 1
	rk_mount
	make_tree
	local before nfiles
	before=$(meta_list "$MNT")
	nfiles=$(backing_files | tr -cd '\0' | wc -c)
	[ "$nfiles" -eq 13 ] # pair counted once per name here
	local ino_pair1 ino_pair2
	ino_pair1=$(stat -c %i "$BACK/pair1")
	[ "$(stat -c %i "$BACK/sub/pair2")" = "$ino_pair1" ]
	all_headers_on 1

	rk_add_gen 2
	rk_reload_to 2
	local times
	times=$(cd "$BACK" && find . -type f ! -name '.rekeyfs*' -printf '%p %A@ %T@ %U:%G\n' | sort)
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	# backing atime, mtime and owner kept exactly (nanoseconds)
	[ "$(cd "$BACK" && find . -type f ! -name '.rekeyfs*' -printf '%p %A@ %T@ %U:%G\n' | sort)" = "$times" ]
	# 13 names, one of them a second link: 12 files
	[ "$(echo "$output" | json_get 'd["migrated"]')" = 12 ]
	[ "$(echo "$output" | json_get 'd["failed"]+d["busy"]')" = 0 ]
	[ "$(echo "$output" | json_get '[(g["generation"],g["files"]) for g in d["after"]]')" = "[(2, 12)]" ]

	all_headers_on 2
	# same metadata, same content, through the mount
	[ "$(meta_list "$MNT")" = "$before" ]
	[ "$(getfattr --only-values -n user.x "$MNT/attrs")" = y ]
	[ "$(getfattr --only-values -n user.other "$MNT/attrs")" = 'second value' ]
	[ "$(getfattr --only-values -n user.x "$BACK/attrs")" = y ]
	# hard links: still one inode with two names
	[ "$(stat -c %i "$BACK/pair1")" = "$ino_pair1" ]
	[ "$(stat -c %i "$BACK/sub/pair2")" = "$ino_pair1" ]
	[ "$(stat -c %h "$BACK/pair1")" = 2 ]
	[ "$(cat "$MNT/sub/pair2")" = 'linked pair' ]
	# setuid bit and mode survive
	[ "$(stat -c %a "$BACK/f4095")" = 4755 ]
	[ "$(stat -c %a "$BACK/one")" = 640 ]
	[ "$(stat -c %u:%g "$BACK/f4096")" = 1234:5678 ]
	# the sparse file stays sparse in the backing
	[ "$(stat -c %b "$BACK/sparse")" -lt 2048 ]
	[ "$(tail -c 3 "$MNT/sparse")" = end ]
	# symlink and fifo untouched
	[ -L "$BACK/link" ] && [ "$(readlink "$BACK/link")" = one ]
	[ -p "$BACK/fifo" ]
	[ "$(cat "$MNT/link")" = x ]
	# no leftovers in the backing or the mount
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	[ -z "$(ls -A "$MNT" | grep rekeyfs || true)" ]
}

@test "rekey: a second run rewrites nothing (inode numbers unchanged)" {
	rk_keyring "$KR" "" 1
	rk_mount
	make_tree
	rk_add_gen 2
	rk_reload_to 2
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	[ "$status" -eq 0 ]
	local snap
	snap=$(cd "$BACK" && find . -printf '%p %i %T@ %s\n' | sort)
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["migrated"]')" = 0 ]
	[ "$(echo "$output" | json_get 'd["current"]')" = 12 ]
	[ "$(echo "$output" | json_get 'd["bytes_rewritten"]')" = 0 ]
	[ "$(cd "$BACK" && find . -printf '%p %i %T@ %s\n' | sort)" = "$snap" ]
}

@test "rekey: --status counts files and bytes per generation; --generation lists them" {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'aaaa' >"$MNT/a"
	mkdir "$MNT/d"
	printf 'bbbbbbbb' >"$MNT/d/b"
	rk_add_gen 2
	rk_reload_to 2
	printf 'cc' >"$MNT/c"
	: >"$MNT/e"
	run "$REKEYFS_REKEY" --status --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"primary generation: 2"* ]]
	echo "$output" | grep -E '^  1 +enabled +2 +12$'
	echo "$output" | grep -E '^  2 +enabled, primary +2 +2$'
	[[ "$output" == *"not on the primary: 2"* ]]
	run "$REKEYFS_REKEY" --status --generation 1 --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	[ "$output" = "$(printf 'a\nd/b')" ] || [ "$output" = "$(printf 'd/b\na')" ]
	# JSON form, and no keyring needed at all
	run "$REKEYFS_REKEY" --status --json "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get '[(g["generation"],g["files"],g["bytes"]) for g in d["before"]]')" = "[(1, 2, 12), (2, 2, 2)]" ]
	# a keyring whose key_file is unreadable still works for --status
	local kf="$RK_TMP/missing.key"
	printf '[keyring]\nprimary = 1\n[generation 1]\nstate = enabled\nkey_file = %s\n' "$kf" >"$RK_TMP/kf.keyring"
	chmod 600 "$RK_TMP/kf.keyring"
	run "$REKEYFS_REKEY" --status --keyring "$RK_TMP/kf.keyring" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	# status writes nothing: not even the lock file
	[ ! -e "$BACK/.rekeyfs.lock" ]
}

@test "rekey: --dry-run lists what would be rewritten and changes nothing" {
	rk_keyring "$KR" "" 1
	rk_mount
	make_tree
	rk_add_gen 2
	rk_reload_to 2
	printf 'new' >"$MNT/already-new"
	rk_unmount
	local snap
	snap=$(snapshot "$BACK")
	run "$REKEYFS_REKEY" --dry-run --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"would rewrite:   12"* ]]
	[[ "$output" == *"already current: 1"* ]]
	[[ "$output" == *"would rewrite: sub/ünïcødé ☃: generation 1 -> 2"* ]]
	[[ "$output" != *"already-new"* ]]
	run "$REKEYFS_REKEY" -n --json --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'len(d["would_rewrite_files"])')" = 12 ]
	[ "$(snapshot "$BACK")" = "$snap" ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*' -o -name .rekeyfs.lock)" ]
}

@test "rekey: tampered and missing-generation files are reported and left byte-for-byte" {
	# generation 1 is later dropped from the keyring; 2 stays; 3 is new
	local k1 k2
	k1=$(rk_genkey)
	k2=$(rk_genkey)
	printf '[keyring]\nprimary = 1\n[generation 1]\nstate = enabled\nkey = %s\n[generation 2]\nstate = enabled\nkey = %s\n' "$k1" "$k2" >"$KR"
	chmod 600 "$KR"
	rk_mount
	printf 'orphan' >"$MNT/orphan"
	printf '[keyring]\nprimary = 2\n[generation 1]\nstate = enabled\nkey = %s\n[generation 2]\nstate = enabled\nkey = %s\n' "$k1" "$k2" >"$KR"
	rk_reload_to 2
	head -c 20000 /dev/urandom >"$MNT/tampered"
	head -c 9000 /dev/urandom >"$MNT/good"
	rk_unmount
	# flip one bit in block 2 of "tampered"
	local off=$((32 + 2 * 4136 + 100)) byte
	byte=$(od -An -tu1 -j$off -N1 "$BACK/tampered" | tr -d ' ')
	printf "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$BACK/tampered" bs=1 seek=$off conv=notrunc status=none
	cp -a "$BACK/tampered" "$RK_TMP/tampered.orig"
	cp -a "$BACK/orphan" "$RK_TMP/orphan.orig"
	local ino_t ino_o
	ino_t=$(stat -c %i "$BACK/tampered")
	ino_o=$(stat -c %i "$BACK/orphan")
	# drop generation 1, add 3 as primary
	printf '[keyring]\n[generation 2]\nstate = enabled\nkey = %s\n[generation 3]\nstate = enabled\nkey = %s\n' "$k2" "$(rk_genkey)" >"$KR"
	chmod 600 "$KR"
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"FAILED: tampered: block 2 fails authentication"* ]]
	[[ "$output" == *"FAILED: orphan: generation 1 is not in the keyring"* ]]
	[[ "$output" == *"migrated:        1 "* ]]
	cmp "$BACK/tampered" "$RK_TMP/tampered.orig"
	cmp "$BACK/orphan" "$RK_TMP/orphan.orig"
	[ "$(stat -c %i "$BACK/tampered")" = "$ino_t" ]
	[ "$(stat -c %i "$BACK/orphan")" = "$ino_o" ]
	[ "$(rk_header_gen "$BACK/good")" = 3 ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	# JSON carries the same
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	[ "$status" -eq 1 ]
	[ "$(echo "$output" | json_get 'sorted(f["path"] for f in d["failed_files"])')" = "['orphan', 'tampered']" ]
	[ "$(echo "$output" | json_get 'd["exit_status"]')" = 1 ]
	# --verify finds the tampered block too and rewrites nothing
	run "$REKEYFS_REKEY" --verify --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"FAILED: tampered: block 2 fails authentication"* ]]
	[[ "$output" == *"verified:        1"* ]]
	cmp "$BACK/tampered" "$RK_TMP/tampered.orig"
}

@test "rekey: --verify authenticates every file and exits 0 on a clean tree" {
	rk_keyring "$KR" "" 1
	rk_mount
	make_tree
	rk_unmount
	# verify takes the tree lock; its lock file is its only write
	: >"$BACK/.rekeyfs.lock"
	local snap
	snap=$(snapshot "$BACK")
	run "$REKEYFS_REKEY" --verify --json -q --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	# 12 files, one of them empty (header only, nothing to verify is still verified)
	[ "$(echo "$output" | json_get 'd["verified"]')" = 12 ]
	[ "$(echo "$output" | json_get 'd["mode"]')" = verify ]
	[ "$(snapshot "$BACK")" = "$snap" ]
}

@test "rekey: JSON escapes odd names and reports every field" {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'q' >"$MNT/quo\"te"
	printf 'b' >"$MNT/back\\slash"
	printf 'n' >"$MNT/$(printf 'new\nline')" || skip "mount refuses newlines in names"
	printf 't' >"$MNT/$(printf 'tab\there')"
	rk_add_gen 2
	rk_reload_to 2
	run "$REKEYFS_REKEY" --json -q --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in ("mode", "backing", "target_generation", "migrated", "current", "busy",
          "failed", "skipped", "bytes_rewritten", "elapsed_seconds", "before",
          "after", "failed_files", "busy_files", "temps_removed", "interrupted"):
    assert k in d, k
assert d["mode"] == "rekey" and d["target_generation"] == 2
assert d["migrated"] == 4 and d["bytes_rewritten"] == 4, d
assert d["before"] == [{"generation": 1, "state": "enabled", "primary": False, "files": 4, "bytes": 4}], d["before"]
assert d["after"] == [{"generation": 2, "state": "enabled", "primary": True, "files": 4, "bytes": 4}], d["after"]
'
	run "$REKEYFS_REKEY" --status --generation 2 --json --keyring "$KR" "$BACK"
	[ "$status" -eq 0 ]
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert sorted(d["listed_files"]) == sorted(["quo\"te", "back\\slash", "new\nline", "tab\there"]), d
'
}

@test "rekey: a second concurrent run is refused with exit 2" {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'x' >"$MNT/x"
	rk_unmount
	# hold the tree lock as a running rekey would
	exec 9>"$BACK/.rekeyfs.lock"
	flock -n 9
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK"
	exec 9>&-
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"another rekeyfs-rekey is running on this tree"* ]]
	[ "$(rk_header_gen "$BACK/x")" = 1 ]
	# with --json the refusal is also a JSON object on stdout
	exec 9>"$BACK/.rekeyfs.lock"
	flock -n 9
	local js
	js=$("$REKEYFS_REKEY" --json --keyring "$KR" "$BACK" 2>/dev/null) && false
	exec 9>&-
	echo "$js" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["exit_status"] == 2 and "another rekeyfs-rekey" in d["error"], d
'
	# --verify takes the lock too; --status does not need it
	exec 9>"$BACK/.rekeyfs.lock"
	flock -n 9
	run "$REKEYFS_REKEY" --verify --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	run "$REKEYFS_REKEY" --status --keyring "$KR" "$BACK"
	exec 9>&-
	[ "$status" -eq 0 ]
}

@test "rekey: usage, keyring and tree errors exit 2 with a clear message" {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'x' >"$MNT/x"
	rk_unmount
	run "$REKEYFS_REKEY" --keyring "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"no backing directory given"* ]]
	run "$REKEYFS_REKEY" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--keyring FILE (or --config FILE) is required"* ]]
	run "$REKEYFS_REKEY" --bogus --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"unknown option '--bogus'"* ]]
	run "$REKEYFS_REKEY" --jobs 0 --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--jobs must be at least 1"* ]]
	run "$REKEYFS_REKEY" --wait soon --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--wait needs a number of seconds, not 'soon'"* ]]
	run "$REKEYFS_REKEY" --status --verify --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"exclude each other"* ]]
	run "$REKEYFS_REKEY" --generation 1 --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--generation only goes with --status"* ]]
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK" extra
	[ "$status" -eq 2 ]
	[[ "$output" == *"unexpected argument 'extra'"* ]]
	# a wrong keyring (other key for generation 1) is refused, nothing changes
	local snap
	snap=$(snapshot "$BACK")
	rk_keyring "$RK_TMP/wrong.keyring" "" 1 2
	run "$REKEYFS_REKEY" --keyring "$RK_TMP/wrong.keyring" "$BACK"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"generation 1"* ]]
	[ "$(snapshot "$BACK")" = "$snap" ]
	# malformed keyring: file:line
	printf '[keyring]\n[generation 1]\nstate = sideways\n' >"$RK_TMP/bad.keyring"
	chmod 600 "$RK_TMP/bad.keyring"
	run "$REKEYFS_REKEY" --keyring "$RK_TMP/bad.keyring" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"bad.keyring:3"* ]]
	# not a rekeyfs tree
	mkdir "$RK_TMP/plain"
	run "$REKEYFS_REKEY" --keyring "$KR" "$RK_TMP/plain"
	[ "$status" -eq 2 ]
	[[ "$output" == *"not a rekeyfs backing directory"* ]]
	# --help documents the exit codes
	run "$REKEYFS_REKEY" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"Exit status:"* ]]
	[[ "$output" == *"1  partial"* ]]
}

@test "rekey: --config supplies the keyring and the backing directory" {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'x' >"$MNT/x"
	rk_add_gen 2
	rk_reload_to 2
	printf '[mount]\nbacking = %s\nmountpoint = %s\nkeyring = %s\n' "$BACK" "$MNT" "$KR" >"$RK_TMP/vault.conf"
	run "$REKEYFS_REKEY" --config "$RK_TMP/vault.conf" -q
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/x")" = 2 ]
	[ "$(cat "$MNT/x")" = x ]
}

@test "rekey: a large file split across threads and a batch of small files read back; --max-rate caps the rate; throughput is reported" {
	rk_keyring "$KR" "" 1
	rk_mount
	head -c $((20 * 1024 * 1024 + 4097)) /dev/urandom >"$MNT/large"
	truncate -s 40M "$MNT/sparse-large"
	printf 'mid' | dd of="$MNT/sparse-large" bs=1 seek=$((17 * 1024 * 1024)) conv=notrunc status=none
	mkdir "$MNT/many"
	local i
	for i in $(seq 1 300); do
		head -c $((i * 37)) /dev/urandom >"$MNT/many/f$i"
	done
	local want
	want=$(cd "$MNT" && find . -type f -exec sha256sum {} + | sort -k2)
	rk_add_gen 2
	rk_reload_to 2
	run "$REKEYFS_REKEY" --keyring "$KR" --jobs 2 --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["migrated"]')" = 302 ]
	[ "$(echo "$output" | json_get 'd["files_per_second"] > 0')" = True ]
	[ "$(echo "$output" | json_get 'd["bytes_per_second"] > 0')" = True ]
	all_headers_on 2
	[ "$(cd "$MNT" && find . -type f -exec sha256sum {} + | sort -k2)" = "$want" ]
	[ "$(stat -c %b "$BACK/sparse-large")" -lt 4096 ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	# 4 MiB at 2 MiB/s: two seconds at least (half a second of credit)
	rk_add_gen 3
	rk_reload_to 3
	rm -rf "$MNT/many" "$MNT/large"
	head -c $((4 * 1024 * 1024)) /dev/urandom >"$MNT/capped"
	rk_add_gen 4
	rk_reload_to 4
	local t0 t1
	t0=$(date +%s.%N)
	run "$REKEYFS_REKEY" --keyring "$KR" --max-rate 2M "$BACK"
	t1=$(date +%s.%N)
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"throughput:"* ]]
	python3 -c "import sys; sys.exit(0 if $t1 - $t0 >= 1.4 else 1)"
	run "$REKEYFS_REKEY" --keyring "$KR" --max-rate 0 "$BACK"
	[ "$status" -eq 2 ]
}

@test "rekey: batches of small files stay inside a low descriptor limit" {
	rk_keyring "$KR" "" 1
	rk_mount
	mkdir "$MNT/many"
	local i
	for i in $(seq 1 400); do
		printf 'file %s\n' "$i" >"$MNT/many/f$i"
	done
	local want
	want=$(cd "$MNT" && find . -type f -exec sha256sum {} + | sort -k2)
	rk_add_gen 2
	rk_reload_to 2
	# 400 temps of one directory open at once would not fit in 96
	run bash -c 'ulimit -n 96 && exec "$0" --keyring "$1" --jobs 2 --json -q "$2"' \
		"$REKEYFS_REKEY" "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["migrated"]')" = 400 ]
	[ "$(echo "$output" | json_get 'd["failed"]')" = 0 ]
	all_headers_on 2
	[ "$(cd "$MNT" && find . -type f -exec sha256sum {} + | sort -k2)" = "$want" ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
}
