#!/usr/bin/env bats
# Randomized differential runs of tests/prog/fsx: the same operations on a
# rekeyfs mount and on a plain directory must give the same results, sizes
# and contents, also after a remount.  REKEYFS_STRESS=1 (make stress) runs
# far more operations.

load helpers

setup() {
	# Tests of fsx itself need no mount and run without FUSE.
	if [[ "$BATS_TEST_DESCRIPTION" == "fsx self-test:"* ]]; then
		rk_setup_dirs
	else
		rk_setup
	fi
	FSX=$RK_BUILD/tests/fsx
	[ -x "$FSX" ] || {
		echo "fsx not built ($FSX)" >&2
		return 1
	}
	REF=$RK_TMP/ref
	mkdir -p "$REF"
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

# fsx_mount_run SEED OPS [ARGS...]: run fsx on MNT against REF, then
# remount and check every file still matches its reference.
fsx_mount_run() {
	local seed=$1 ops=$2
	shift 2
	rk_keyring "$KR" "" 1
	rk_mount
	run "$FSX" -q -s "$seed" -n "$ops" "$@" "$MNT" "$REF"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"seed $seed: $ops ops ok"* ]]
	rk_unmount
	rk_mount
	local f n=0
	for f in "$REF"/fsx.*; do
		cmp "$MNT/${f##*/}" "$f"
		n=$((n + 1))
	done
	[ "$n" -ge 1 ]
	# Nothing was reported as corrupt along the way.
	no_corruption_logged
}

@test "fsx self-test: -X corrupting the reference makes it fail" {
	mkdir "$RK_TMP/a" "$RK_TMP/b"
	run "$FSX" -s 42 -n 400 -X 150 "$RK_TMP/a" "$RK_TMP/b"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"MISMATCH at op 150"* ]]
	[[ "$output" == *"first difference at byte"* ]]
	[[ "$output" == *"last operations:"* ]]
	[[ "$output" == *"corrupting ref"* ]]
	# The same seed without -X passes on the same kind of directories.
	rm -rf "$RK_TMP/a" "$RK_TMP/b"
	mkdir "$RK_TMP/a" "$RK_TMP/b"
	run "$FSX" -s 42 -n 400 "$RK_TMP/a" "$RK_TMP/b"
	[ "$status" -eq 0 ]
	[[ "$output" == *"fsx: seed 42"* ]]
	[[ "$output" == *"400 ops ok"* ]]
}

@test "fsx self-test: corruption right after the first op, and bad arguments" {
	mkdir "$RK_TMP/a" "$RK_TMP/b"
	# Corrupted right after the first operation: the reference then
	# differs in size (it was empty) or in content, and -c 1 compares.
	run "$FSX" -s 7 -n 50 -X 1 -c 1 "$RK_TMP/a" "$RK_TMP/b"
	[ "$status" -eq 1 ]
	[[ "$output" == *"MISMATCH at op 1"* ]]
	run "$FSX" -s 7 -n 10 "$RK_TMP/a" "$RK_TMP/nonexistent"
	[ "$status" -eq 2 ]
	run "$FSX" -n notanumber "$RK_TMP/a" "$RK_TMP/b"
	[ "$status" -eq 2 ]
	[[ "$output" == *"usage"* ]]
}

@test "fsx: 3000 ops on a mount, seed 1" {
	fsx_mount_run 1 3000
}

@test "fsx: 3000 ops on a mount, seed 2, two files, large sizes" {
	fsx_mount_run 2 3000 -N 2 -S 2097152
}

@test "fsx: 3000 ops on a mount, fresh seed" {
	local seed
	seed=$(od -An -tu4 -N4 /dev/urandom | tr -d ' ')
	echo "seed $seed"
	fsx_mount_run "$seed" 3000
}

@test "fsx: one file against one file, full compare after every op" {
	rk_keyring "$KR" "" 1
	rk_mount
	run "$FSX" -q -s 3 -n 1500 -c 1 -S 65536 "$MNT/single" "$REF/single"
	echo "$output"
	[ "$status" -eq 0 ]
	rk_unmount
	rk_mount
	cmp "$MNT/single" "$REF/single"
}

@test "fsx: files written under generation 1 keep working after a switch to generation 2" {
	rk_keyring "$KR" 1 1 2
	rk_mount
	run "$FSX" -q -s 11 -n 1000 "$MNT" "$REF"
	[ "$status" -eq 0 ]
	rk_unmount
	# Same keys, primary moved to 2: old files stay readable and writable.
	sed -i 's/^primary = 1$/primary = 2/' "$KR"
	grep -q '^primary = 2$' "$KR"
	rk_mount
	local f
	for f in "$REF"/fsx.*; do
		cmp "$MNT/${f##*/}" "$f"
	done
	# Keep going on the same files (fsx recreates them with O_TRUNC, so
	# they move to generation 2).
	run "$FSX" -q -s 12 -n 1000 "$MNT" "$REF"
	[ "$status" -eq 0 ]
	for f in "$BACK"/fsx.*; do
		[ "$(stat -c %s "$f")" -eq 0 ] || [ "$(rk_header_gen "$f")" -eq 2 ]
	done
}

@test "fsx: a new primary generation and rekey runs during the workload" {
	rk_keyring "$KR" "" 1
	rk_mount
	mkdir "$MNT/a" "$MNT/b" "$REF/a" "$REF/b"
	# Phase 1: files in a/ written under generation 1, then closed.
	run "$FSX" -q -s 31 -n 2000 -N 4 "$MNT/a" "$REF/a"
	[ "$status" -eq 0 ]
	# Rotate: generation 2 appears (generation 1 keeps its key) and is
	# the default primary; the daemon reloads on SIGHUP.
	cp "$KR" "$RK_TMP/kr.new"
	printf '\n[generation 2]\nstate = enabled\nkey = %s\n' "$(rk_genkey)" \
		>>"$RK_TMP/kr.new"
	chmod 600 "$RK_TMP/kr.new"
	mv "$RK_TMP/kr.new" "$KR"
	kill -HUP "$(rk_daemon_pid)"
	# Phase 2: fsx works in b/ while rekey rewrites a/ underneath the
	# live mount (b/'s open files are busy and skipped: status 1).
	"$FSX" -q -s 32 -n 4000 -N 4 "$MNT/b" "$REF/b" >"$RK_TMP/fsx.out" 2>&1 &
	local fsx_pid=$! i rc f
	for i in $(seq 1 40); do
		kill -0 "$fsx_pid" 2>/dev/null || break
		rc=0
		"$REKEYFS_REKEY" --keyring "$KR" "$BACK" \
			>>"$RK_TMP/rekey.out" 2>&1 || rc=$?
		[ "$rc" -le 1 ] || {
			cat "$RK_TMP/rekey.out"
			false
		}
		# a/ is read through the mount while it is being rekeyed.
		for f in "$REF"/a/fsx.*; do
			cmp "$MNT/a/${f##*/}" "$f"
		done
		sleep 0.1
	done
	rc=0
	wait "$fsx_pid" || rc=$?
	cat "$RK_TMP/fsx.out"
	[ "$rc" -eq 0 ]
	grep -q "seed 32: 4000 ops ok" "$RK_TMP/fsx.out"
	# a/ was rewritten to generation 2 while fsx ran.
	grep -qE "migrated: +[1-9]" "$RK_TMP/rekey.out"
	# Nothing is open now: one more run leaves everything on generation 2.
	"$REKEYFS_REKEY" -q --keyring "$KR" "$BACK"
	for f in "$REF"/a/fsx.* "$REF"/b/fsx.*; do
		f=${f#"$REF"/}
		cmp "$MNT/$f" "$REF/$f"
		[ "$(stat -c %s "$BACK/$f")" -eq 0 ] ||
			[ "$(rk_header_gen "$BACK/$f")" -eq 2 ]
	done
	rk_unmount
	rk_mount
	for f in "$REF"/a/fsx.* "$REF"/b/fsx.*; do
		f=${f#"$REF"/}
		cmp "$MNT/$f" "$REF/$f"
	done
	no_corruption_logged
}

@test "fsx stress: 100000 ops (REKEYFS_STRESS=1)" {
	[ "${REKEYFS_STRESS:-0}" = 1 ] || skip "set REKEYFS_STRESS=1 (make stress)"
	fsx_mount_run 1001 100000 -N 4
}

@test "fsx stress: more seeds, 20000 ops each (REKEYFS_STRESS=1)" {
	[ "${REKEYFS_STRESS:-0}" = 1 ] || skip "set REKEYFS_STRESS=1 (make stress)"
	local s
	rk_keyring "$KR" "" 1
	rk_mount
	for s in 2001 2002 2003 2004 2005; do
		rm -f "$REF"/fsx.* "$MNT"/fsx.*
		run "$FSX" -q -s "$s" -n 20000 "$MNT" "$REF"
		echo "$output"
		[ "$status" -eq 0 ]
	done
}
