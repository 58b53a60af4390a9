#!/usr/bin/env bats
# rekeyfs-rekey while the mount is in use: appenders keep files open (busy),
# another process renames, unlinks and creates files.  Nothing is lost,
# nothing comes back, nothing new is clobbered; a later run finishes.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
}

teardown() {
	# stop background writers before unmounting
	[ -n "${RK_TMP:-}" ] && : >"$RK_TMP/stop" 2>/dev/null
	local p
	for p in ${BG_PIDS:-}; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rk_teardown
}

# appender N: keep $MNT/log$N open and append checksummed records until
# $RK_TMP/stop exists (at most 20000 records); the count goes to count$N.
appender() {
	local n=$1 i=0
	exec 3>>"$MNT/log$n"
	while [ ! -e "$RK_TMP/stop" ] && [ $i -lt 20000 ]; do
		i=$((i + 1))
		printf 'rec %d %d\n' "$i" $(((i * 7919 + n) % 1000003)) >&3
	done
	exec 3>&-
	echo "$i" >"$RK_TMP/count$n"
}

# churn: rename, unlink and create files while the rekey holds its lock.
churn() {
	local i
	# wait for the rekey to start (a fresh tree has no lock file yet)
	for i in $(seq 1 200); do
		[ -e "$BACK/.rekeyfs.lock" ] && break
		sleep 0.01
	done
	local during=0
	for i in $(seq 1 60); do
		mv "$MNT/r$i" "$MNT/r$i.moved"
		rm "$MNT/u$i"
		printf 'created %d\n' "$i" >"$MNT/r$i"
		printf 'fresh %d\n' "$i" >"$MNT/c$i"
		[ -e "$RK_TMP/rekey.done" ] || during=$((during + 1))
	done
	echo "$during" >"$RK_TMP/churn.done"
}

@test "rekey online: busy files are reported, no write lost, nothing resurrected" {
	rk_keyring "$KR" "" 1
	rk_mount
	local i
	mkdir "$MNT/bulk"
	for i in $(seq 1 60); do
		printf 'rename me %d\n' "$i" >"$MNT/r$i"
		printf 'unlink me %d\n' "$i" >"$MNT/u$i"
	done
	# enough work that the run takes a moment with --jobs 1
	for i in $(seq 1 400); do
		head -c 8192 /dev/urandom >"$MNT/bulk/b$i"
	done
	head -c $((48 * 1024 * 1024)) /dev/urandom >"$MNT/bulk/large"
	local bulk_sums
	bulk_sums=$(cd "$MNT/bulk" && sha256sum b* large)
	for i in 1 2 3; do
		printf 'rec 0 start\n' >"$MNT/log$i"
	done
	rk_add_gen 2
	rk_reload_to 2

	BG_PIDS=""
	for i in 1 2 3; do
		appender "$i" &
		BG_PIDS="$BG_PIDS $!"
	done
	churn &
	BG_PIDS="$BG_PIDS $!"
	sleep 0.2
	run "$REKEYFS_REKEY" --keyring "$KR" --jobs 1 --json -q "$BACK"
	echo "$output"
	local rc=$status out=$output
	: >"$RK_TMP/rekey.done"
	# let churn finish, then stop the appenders
	for i in $(seq 1 200); do
		[ -e "$RK_TMP/churn.done" ] && break
		sleep 0.05
	done
	: >"$RK_TMP/stop"
	local p
	for p in $BG_PIDS; do
		wait "$p"
	done
	BG_PIDS=""
	[ -e "$RK_TMP/churn.done" ]
	echo "# $(cat "$RK_TMP/churn.done") of 60 churn rounds overlapped the rekey" >&3

	# the appenders' files were open throughout: busy, exit 1
	[ "$rc" -eq 1 ]
	echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
busy = sorted(b["path"] for b in d["busy_files"])
assert busy == ["log1", "log2", "log3"], busy
assert all(b["reason"] == "open in a mount" for b in d["busy_files"])
assert d["failed"] == 0, d["failed_files"]
assert d["migrated"] > 400, d["migrated"]
'
	# every record is there, in order, with a valid checksum
	for i in 1 2 3; do
		local n
		n=$(cat "$RK_TMP/count$i")
		awk -v n="$n" -v w="$i" '
			NR == 1 { next }
			$1 != "rec" || $2 != NR - 1 || $3 != ($2 * 7919 + w) % 1000003 { bad = 1 }
			END { if (bad || NR - 1 != n) { print "log" w ": " NR - 1 " of " n; exit 1 } }
		' "$MNT/log$i"
		[ "$(rk_header_gen "$BACK/log$i")" = 1 ]
	done
	# renamed files live at their new names only; the names hold the new files
	for i in $(seq 1 60); do
		[ "$(cat "$MNT/r$i.moved")" = "rename me $i" ]
		[ "$(cat "$MNT/r$i")" = "created $i" ]
		[ "$(cat "$MNT/c$i")" = "fresh $i" ]
		[ ! -e "$MNT/u$i" ]
		[ ! -e "$BACK/u$i" ]
	done
	[ "$(cd "$MNT/bulk" && sha256sum b* large)" = "$bulk_sums" ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]

	# writers closed: a second run finishes the busy ones
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["busy"] == 0 and d["failed"] == 0 and d["remaining"] == 0, d
assert d["migrated"] >= 3, d["migrated"]
'
	local f
	while IFS= read -r -d '' f; do
		[ "$(rk_header_gen "$f")" = 2 ]
	done < <(find "$BACK" -type f ! -name '.rekeyfs*' -print0)
	for i in 1 2 3; do
		[ "$(wc -l <"$MNT/log$i")" -eq $(($(cat "$RK_TMP/count$i") + 1)) ]
	done
}

@test "rekey online: --wait retries a busy file until it is closed" {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'held open' >"$MNT/held"
	printf 'free' >"$MNT/free"
	rk_add_gen 2
	rk_reload_to 2
	# hold the file open through the mount for about a second
	(exec 3<"$MNT/held"; sleep 1) &
	local holder=$!
	sleep 0.2
	run "$REKEYFS_REKEY" --keyring "$KR" --wait 20 --json -q "$BACK"
	wait "$holder"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["migrated"], d["busy"])')" = "2 0" ]
	[ "$(rk_header_gen "$BACK/held")" = 2 ]
	[ "$(cat "$MNT/held")" = 'held open' ]
	# without --wait the same situation is busy and exits 1
	rk_add_gen 3
	rk_reload_to 3
	(exec 3<"$MNT/held"; sleep 1) &
	holder=$!
	sleep 0.2
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	wait "$holder"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"BUSY: held: open in a mount"* ]]
	[ "$(rk_header_gen "$BACK/held")" = 2 ]
	[ "$(rk_header_gen "$BACK/free")" = 3 ]
}
