#!/usr/bin/env bats
# rekeyfs-rekey killed with SIGKILL at random moments: every file stays its
# old or its new version, the mount never shows temp files, and the next run
# finishes the job.  20 kills in CI, 100 with REKEYFS_STRESS=1.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
	MKINTENT=$RK_BUILD/tests/mkintent
}

teardown() {
	rk_teardown
}

sums() {
	(cd "$MNT" && find . -type f -exec sha256sum {} + | sort -k2)
}

@test "rekey crash: SIGKILL at random moments never loses a file" {
	local rounds=20
	[ -n "${REKEYFS_STRESS:-}" ] && rounds=100
	rk_keyring "$KR" "" 1
	rk_mount
	local i
	mkdir "$MNT/d1" "$MNT/d2"
	for i in $(seq 1 40); do
		head -c $((i * 9973)) /dev/urandom >"$MNT/d$((i % 2 + 1))/f$i"
	done
	head -c $((3 * 1024 * 1024)) /dev/urandom >"$MNT/big1"
	head -c $((2 * 1024 * 1024 + 7)) /dev/urandom >"$MNT/d1/big2"
	truncate -s 32M "$MNT/sparse"
	printf 'tail' >>"$MNT/sparse"
	# hard links: rewritten in place under an intent record
	head -c $((3 * 1024 * 1024 + 5)) /dev/urandom >"$MNT/linked"
	ln "$MNT/linked" "$MNT/d2/linked2"
	ln "$MNT/linked" "$MNT/d1/linked3"
	printf 'small pair' >"$MNT/pair"
	ln "$MNT/pair" "$MNT/d2/pair2"
	local want ino_linked ino_pair
	want=$(sums)
	ino_linked=$(stat -c %i "$BACK/linked")
	ino_pair=$(stat -c %i "$BACK/pair")

	local gen=1 killed=0 pid delay resumed=0 temps=0
	for i in $(seq 1 "$rounds"); do
		gen=$((gen + 1))
		rk_add_gen "$gen"
		rk_reload_to "$gen"
		"$REKEYFS_REKEY" --keyring "$KR" --jobs 2 -q "$BACK" >/dev/null 2>&1 &
		pid=$!
		delay=$(printf '0.%03d' $((RANDOM % 80)))
		sleep "$delay"
		if kill -9 "$pid" 2>/dev/null; then
			killed=$((killed + 1))
		fi
		wait "$pid" || true
		# the mount never shows rekey temp files
		[ -z "$(find "$MNT" -name '.rekeyfs*')" ]
		# finish interrupted in-place copies, authenticate everything
		run "$REKEYFS_REKEY" --verify --json --keyring "$KR" -q "$BACK"
		if [ "$status" -ne 0 ]; then
			echo "round $i (after ${delay}s): verify failed" >&2
			echo "$output" >&2
			return 1
		fi
		resumed=$((resumed + $(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"])')))
		temps=$((temps + $(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["temps_removed"])')))
		# every file reads back its original content through the mount
		[ "$(sums)" = "$want" ]
		[ "$(stat -c %i "$BACK/linked")" = "$ino_linked" ]
		[ "$(stat -c %i "$BACK/d2/linked2")" = "$ino_linked" ]
		[ "$(stat -c %h "$BACK/linked")" = 3 ]
		[ "$(stat -c %i "$BACK/d2/pair2")" = "$ino_pair" ]
		[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	done
	echo "# killed $killed of $rounds runs mid-way; $temps temp files removed, $resumed in-place copies replayed" >&3
	# a kill that lands after a run finished proves nothing: most must hit
	[ "$killed" -ge $((rounds / 4)) ]

	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	[ "$status" -eq 0 ]
	local f
	while IFS= read -r -d '' f; do
		[ "$(rk_header_gen "$f")" = "$gen" ]
	done < <(find "$BACK" -type f ! -name '.rekeyfs*' -print0)
	[ "$(sums)" = "$want" ]
	[ "$(stat -c %b "$BACK/sparse")" -lt 2048 ]
}

@test "rekey crash: SIGKILL during batched small-file rewrites, with a writer in the mount, never loses a file" {
	local rounds=12
	[ -n "${REKEYFS_STRESS:-}" ] && rounds=60
	rk_keyring "$KR" "" 1
	rk_mount
	local i d
	for d in a b c; do
		mkdir "$MNT/$d"
		for i in $(seq 1 150); do
			head -c $(((i * 131) % 9000 + 1)) /dev/urandom >"$MNT/$d/f$i"
		done
	done
	for i in $(seq 1 8); do
		printf 'w%s start\n' "$i" >"$MNT/b/w$i"
	done
	local want
	want=$(cd "$MNT" && find . -type f ! -name 'w*' -exec sha256sum {} + | sort -k2)

	local gen=1 killed=0 pid wpid delay n=0 t0 span
	# How long a whole run takes here: the kills land at random moments
	# within it (a fixed window would miss once the rekey got faster).
	gen=$((gen + 1))
	rk_add_gen "$gen"
	rk_reload_to "$gen"
	t0=$EPOCHREALTIME
	"$REKEYFS_REKEY" --keyring "$KR" --jobs 2 -q "$BACK" >/dev/null 2>&1
	span=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
	[ "$span" -ge 20 ] || span=20
	echo "# a whole run takes ${span} ms" >&3
	for i in $(seq 1 "$rounds"); do
		gen=$((gen + 1))
		rk_add_gen "$gen"
		rk_reload_to "$gen"
		# the writer rewrites w1..w8 through the mount between the
		# batch's staging and its renames; the last content written
		# to each is in RK_TMP/wlog
		rm -f "$RK_TMP/wstop"
		(
			while [ ! -e "$RK_TMP/wstop" ]; do
				n=$((n + 1))
				f=w$((n % 8 + 1))
				printf '%s round %s write %s\n' "$f" "$i" "$n" >"$MNT/b/$f"
				echo "$f $n" >>"$RK_TMP/wlog"
			done
		) &
		wpid=$!
		"$REKEYFS_REKEY" --keyring "$KR" --jobs 2 -q "$BACK" >/dev/null 2>&1 &
		pid=$!
		delay=$(awk -v ms=$((RANDOM % span)) 'BEGIN { printf "%.3f", ms / 1000 }')
		sleep "$delay"
		if kill -9 "$pid" 2>/dev/null; then
			killed=$((killed + 1))
		fi
		wait "$pid" || true
		touch "$RK_TMP/wstop"
		wait "$wpid"
		[ -z "$(find "$MNT" -name '.rekeyfs*')" ]
		run "$REKEYFS_REKEY" --verify --json --keyring "$KR" -q "$BACK"
		if [ "$status" -ne 0 ]; then
			echo "round $i (after ${delay}s): verify failed" >&2
			echo "$output" >&2
			return 1
		fi
		[ "$(cd "$MNT" && find . -type f ! -name 'w*' -exec sha256sum {} + | sort -k2)" = "$want" ]
		# every writer file holds the last write that returned
		local f last
		for f in w1 w2 w3 w4 w5 w6 w7 w8; do
			last=$(awk -v f="$f" '$1 == f {n = $2} END {print n}' "$RK_TMP/wlog")
			[ -z "$last" ] || [ "$(cat "$MNT/b/$f")" = "$f round $i write $last" ]
		done
		: >"$RK_TMP/wlog"
		[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	done
	echo "# killed $killed of $rounds batched runs mid-way" >&3
	[ "$killed" -ge $((rounds / 4)) ]
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	[ "$status" -eq 0 ]
	while IFS= read -r -d '' f; do
		[ "$(rk_header_gen "$f")" = "$gen" ]
	done < <(find "$BACK" -type f ! -name '.rekeyfs*' -print0)
	[ "$(cd "$MNT" && find . -type f ! -name 'w*' -exec sha256sum {} + | sort -k2)" = "$want" ]
}

@test "rekey crash: a version 1 intent of an older build is refused with how to finish by hand" {
	rk_keyring "$KR" "" 1
	rk_mount
	head -c 100000 /dev/urandom >"$MNT/a"
	ln "$MNT/a" "$MNT/b"
	printf 'plain' >"$MNT/c"
	local want
	want=$(sums)
	rk_add_gen 2
	rk_reload_to 2
	rk_unmount
	# the state an older build left when killed mid-copy: the new version
	# (made by a real run on a copy of the tree), an unauthenticated
	# version 1 record next to the file, half the new bytes copied
	cp -a "$BACK" "$RK_TMP/copy"
	"$REKEYFS_REKEY" --keyring "$KR" -q "$RK_TMP/copy" >/dev/null
	local ino size tmp=.rekeyfs-tmp.00000000deadbeef
	ino=$(stat -c %i "$BACK/a")
	size=$(stat -c %s "$BACK/a")
	cp "$RK_TMP/copy/a" "$BACK/$tmp"
	chmod 600 "$BACK/$tmp"
	printf 'rekeyfs-intent 1\ndev %s\nino %s\nsize %s\natime %s 0\nmtime %s 0\nname 61\nend\n' \
		"$(stat -c %d "$BACK/a")" "$ino" "$size" "$(stat -c %X "$BACK/a")" \
		"$(stat -c %Y "$BACK/a")" >"$BACK/$tmp.intent"
	chmod 600 "$BACK/$tmp.intent"
	dd if="$RK_TMP/copy/a" of="$BACK/a" bs=4136 count=12 conv=notrunc status=none
	cp "$BACK/a" "$RK_TMP/half"
	# and a stale plain temp in a subdirectory
	mkdir -p "$BACK/sub"
	printf 'junk' >"$BACK/sub/.rekeyfs-tmp.0123456789abcdef"
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"], d["temps_removed"])')" = "0 1" ]
	echo "$output" | grep -q "version 1.*not replayed.*finish by hand.*cp --sparse=always '$tmp' 'a'"
	# nothing was touched: the record, its temp and the half copy stay
	[ -e "$BACK/$tmp.intent" ]
	cmp "$BACK/$tmp" "$RK_TMP/copy/a"
	cmp "$BACK/a" "$RK_TMP/half"
	[ ! -e "$BACK/sub/.rekeyfs-tmp.0123456789abcdef" ]
	# the README's way by hand finishes it
	(cd "$BACK" && cp --sparse=always "$tmp" a && rm "$tmp.intent" "$tmp")
	[ "$(stat -c %i "$BACK/a")" = "$ino" ]
	[ "$(stat -c %i "$BACK/b")" = "$ino" ]
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	[ "$status" -eq 0 ]
	rk_mount
	[ "$(sums)" = "$want" ]
}

@test "rekey crash: SIGTERM stops after the files in flight, with a summary and exit 1" {
	rk_keyring "$KR" "" 1
	rk_mount
	local i
	for i in $(seq 1 300); do
		head -c 65536 /dev/urandom >"$MNT/f$i"
	done
	head -c $((64 * 1024 * 1024)) /dev/urandom >"$MNT/large"
	local want
	want=$(sums)
	rk_add_gen 2
	rk_reload_to 2
	"$REKEYFS_REKEY" --keyring "$KR" --jobs 1 "$BACK" >"$RK_TMP/out" 2>"$RK_TMP/err" &
	local pid=$!
	# stop it once it has started rewriting
	for i in $(seq 1 200); do
		[ -n "$(find "$BACK" -maxdepth 1 -name '.rekeyfs-tmp*' -print -quit)" ] && break
		sleep 0.01
	done
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	cat "$RK_TMP/out" "$RK_TMP/err"
	if [ "$rc" -eq 0 ]; then
		skip "the run finished before SIGTERM arrived"
	fi
	[ "$rc" -eq 1 ]
	grep -q '^interrupted:     yes' "$RK_TMP/out"
	grep -q '^migrated: ' "$RK_TMP/out"
	grep -q 'incomplete: .*interrupted; run again to finish' "$RK_TMP/err"
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	[ "$(sums)" = "$want" ]
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	[ "$status" -eq 0 ]
	[ "$(sums)" = "$want" ]
}

# hex STRING: the bytes of STRING as lowercase hex, as intent records hold
# paths.
hex() {
	printf '%s' "$1" | xxd -p | tr -d '\n'
}

# stage_inplace [HOW [FORMAT]]: build, on an unmounted tree, the state a
# SIGKILL leaves in the middle of an in-place rewrite of the hard-linked
# file sub/a (also named b): the new version in a data temp next to it, a
# complete signed intent record in the backing root (FORMAT=v2: the
# unauthenticated record of older builds), and the first 12 blocks of the
# new version already over the old inode (HOW=none: nothing copied yet).
# Sets WANT (sha256 listing through a mount) and INO.
stage_inplace() {
	rk_keyring "$KR" "" 1
	rk_mount
	mkdir "$MNT/sub"
	head -c 300000 /dev/urandom >"$MNT/sub/a"
	ln "$MNT/sub/a" "$MNT/b"
	printf 'plain' >"$MNT/c"
	WANT=$(sums)
	rk_add_gen 2
	rk_reload_to 2
	rk_unmount
	# the new version, made by a real run on a copy of the tree
	cp -a "$BACK" "$RK_TMP/copy"
	"$REKEYFS_REKEY" --keyring "$KR" -q "$RK_TMP/copy" >/dev/null
	[ "$(rk_header_gen "$RK_TMP/copy/sub/a")" = 2 ]
	INO=$(stat -c %i "$BACK/sub/a")
	local tmp=.rekeyfs-tmp.00000000cafef00d
	cp "$RK_TMP/copy/sub/a" "$BACK/sub/$tmp"
	chmod 600 "$BACK/sub/$tmp"
	if [ "${2:-}" = v2 ]; then
		# unauthenticated, as builds before version 3 records wrote it
		printf 'rekeyfs-intent 2\ndev %s\nino %s\nsize %s\natime %s 0\nmtime %s 0\nold %s\ntarget %s\ntemp %s\nend\n' \
			"$(stat -c %d "$BACK/sub/a")" "$INO" "$(stat -c %s "$BACK/sub/a")" \
			"$(stat -c %X "$BACK/sub/a")" "$(stat -c %Y "$BACK/sub/a")" \
			"$(head -c 32 "$BACK/sub/a" | xxd -p | tr -d '\n')" \
			"$(hex sub/a)" "$(hex "sub/$tmp")" >"$BACK/$tmp.intent"
	else
		${STAGE_HOOK:-true}
		"$MKINTENT" "$KR" "$BACK" "${INTENT_TARGET:-sub/a}" "sub/$tmp" \
			>"$BACK/$tmp.intent"
	fi
	chmod 600 "$BACK/$tmp.intent"
	cp "$BACK/sub/a" "$RK_TMP/old_a"
	if [ "${1:-}" != none ]; then
		dd if="$RK_TMP/copy/sub/a" of="$BACK/sub/a" bs=4136 count=12 \
			conv=notrunc status=none
		# half old, half new: unreadable as it is
		! cmp -s "$BACK/sub/a" "$RK_TMP/old_a" || false
		! cmp -s "$BACK/sub/a" "$RK_TMP/copy/sub/a" || false
	fi
}

# check_finished: sub/a and b are the new version on the same inode, no
# leftovers, and a mount reads every file as before.
check_finished() {
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	[ "$(stat -c %i "$BACK/sub/a")" = "$INO" ]
	[ "$(stat -c %i "$BACK/b")" = "$INO" ]
	[ "$(stat -c %h "$BACK/b")" = 2 ]
	[ "$(rk_header_gen "$BACK/b")" = 2 ]
	cmp "$BACK/sub/a" "$RK_TMP/copy/sub/a"
}

@test "rekey crash: --verify replays an interrupted in-place copy recorded in the backing root" {
	stage_inplace
	run "$REKEYFS_REKEY" --verify --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"], d["temps_removed"], d["failed"])')" = "1 2 0" ]
	check_finished
	rk_mount
	[ "$(sums)" = "$WANT" ]
}

@test "rekey crash: a rekey run replays an interrupted in-place copy, then migrates the rest" {
	stage_inplace
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"], d["temps_removed"], d["migrated"])')" = "1 2 1" ]
	check_finished
	[ "$(rk_header_gen "$BACK/c")" = 2 ]
	rk_mount
	[ "$(sums)" = "$WANT" ]
}

@test "rekey crash: an intent whose copy never started leaves the old file as it is" {
	stage_inplace none
	run "$REKEYFS_REKEY" --verify --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"], d["temps_removed"])')" = "0 2" ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	cmp "$BACK/sub/a" "$RK_TMP/old_a"
	[ "$(rk_header_gen "$BACK/b")" = 1 ]
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/b")" = 2 ]
	[ "$(stat -c %i "$BACK/b")" = "$INO" ]
	rk_mount
	[ "$(sums)" = "$WANT" ]
}

@test "rekey crash: a fresh mount finishes an interrupted in-place copy without the tool" {
	stage_inplace
	rk_mount
	# no rekeyfs-rekey ran: the mount itself finished the copy
	[ "$(sums)" = "$WANT" ]
	[ "$(sha256sum <"$MNT/b")" = "$(sha256sum <"$MNT/sub/a")" ]
	check_finished
}

@test "rekey crash: an older build's interrupted in-place copy (root's record and temp) is still finished" {
	stage_inplace "" v2
	run "$REKEYFS_REKEY" --verify --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"], d["temps_removed"], d["failed"])')" = "1 2 0" ]
	check_finished
	rk_mount
	[ "$(sums)" = "$WANT" ]
}

@test "rekey crash: a fresh mount finishes an older build's interrupted in-place copy" {
	stage_inplace "" v2
	rk_mount
	[ "$(sums)" = "$WANT" ]
	check_finished
}

# not_replayed: sub/a is still the half copy, record and temp are kept.
not_replayed() {
	cmp "$BACK/sub/a" "$RK_TMP/half"
	[ -e "$BACK/.rekeyfs-tmp.00000000cafef00d.intent" ]
	[ -e "$BACK/sub/.rekeyfs-tmp.00000000cafef00d" ]
}

@test "rekey crash: an intent record with a bad MAC is refused by the tool and by a mount" {
	stage_inplace
	cp "$BACK/sub/a" "$RK_TMP/half"
	local rec=$BACK/.rekeyfs-tmp.00000000cafef00d.intent
	# one bit of the MAC flipped
	python3 - "$rec" <<'PY'
import sys
p = sys.argv[1]
t = open(p).read()
i = t.index('\nmac ') + 5
t = t[:i] + ('1' if t[i] == '0' else '0') + t[i + 1:]
open(p, 'w').write(t)
PY
	run "$REKEYFS_REKEY" --verify --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"])')" = 0 ]
	echo "$output" | grep -q 'intent record does not authenticate.*not replayed.*finish by hand'
	not_replayed
	rk_mount
	grep -q 'intent record does not authenticate' "$LOG"
	! cat "$MNT/b" >/dev/null 2>&1 || false
	not_replayed
}

@test "rekey crash: an intent record whose path has a symlinked component is refused" {
	STAGE_HOOK="ln -s sub $BACK/link" INTENT_TARGET=link/a stage_inplace
	cp "$BACK/sub/a" "$RK_TMP/half"
	run "$REKEYFS_REKEY" --verify --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"])')" = 0 ]
	echo "$output" | grep -Eq "the recorded path link/a no longer leads to the file.*now at (b|sub/a)\).*cp --sparse=always 'sub/.rekeyfs-tmp.00000000cafef00d' '(b|sub/a)'"
	not_replayed
	rk_mount
	! cat "$MNT/sub/a" >/dev/null 2>&1 || false
	not_replayed
}

@test "rekey crash: a mount finishes an interrupted in-place copy when it next reads the file" {
	stage_inplace
	# the record turns up only once the mount is up (as when a rekey run
	# is killed while the tree stays mounted): the read must finish it
	mv "$BACK/.rekeyfs-tmp.00000000cafef00d.intent" "$RK_TMP/intent"
	rk_mount
	mv "$RK_TMP/intent" "$BACK/.rekeyfs-tmp.00000000cafef00d.intent"
	[ "$(sums)" = "$WANT" ]
	check_finished
}

@test "rekey crash: after SIGKILL in an in-place copy the live mount reads every file without the tool" {
	local rounds=8
	[ -n "${REKEYFS_STRESS:-}" ] && rounds=30
	rk_keyring "$KR" "" 1
	rk_mount
	mkdir "$MNT/d"
	head -c $((64 * 1024 * 1024 + 3)) /dev/urandom >"$MNT/d/big"
	ln "$MNT/d/big" "$MNT/big2"
	head -c 100000 /dev/urandom >"$MNT/d/small"
	local want ino
	want=$(sums)
	ino=$(stat -c %i "$BACK/d/big")
	local gen=1 i pid n rec tmp hits=0 mixed=0
	for i in $(seq 1 "$rounds"); do
		gen=$((gen + 1))
		rk_add_gen "$gen"
		rk_reload_to "$gen"
		"$REKEYFS_REKEY" --keyring "$KR" --jobs 1 -q "$BACK" >/dev/null 2>&1 &
		pid=$!
		# wait for the intent record, then for the copy over the inode
		# to begin (the new header is in place), and kill the run there
		n=$((SECONDS + 60))
		rec=
		while [ "$SECONDS" -lt "$n" ] && kill -0 "$pid" 2>/dev/null; do
			rec=$(compgen -G "$BACK/.rekeyfs-tmp.*.intent" | head -n 1) || true
			[ -n "$rec" ] && break
		done
		tmp=
		[ -n "$rec" ] && tmp=$(sed -n 's/^temp //p' "$rec" | xxd -r -p)
		while [ -n "$tmp" ] && [ "$SECONDS" -lt "$n" ] &&
			kill -0 "$pid" 2>/dev/null &&
			! cmp -s -n 32 "$BACK/d/big" "$BACK/$tmp"; do
			:
		done
		if [ -n "$tmp" ] && kill -9 "$pid" 2>/dev/null; then
			hits=$((hits + 1))
			# the inode holds part new, part old bytes right now
			[ -e "$BACK/$tmp" ] && ! cmp -s "$BACK/d/big" "$BACK/$tmp" &&
				mixed=$((mixed + 1))
		fi
		wait "$pid" || true
		# no rekeyfs-rekey in between: the mount itself must show every
		# file as its old or new version (sha256 as written)
		[ -z "$(find "$MNT" -name '.rekeyfs*')" ]
		if [ "$(sums)" != "$want" ]; then
			echo "round $i: the mount reads something else" >&2
			return 1
		fi
		[ "$(stat -c %i "$BACK/big2")" = "$ino" ]
		[ "$(stat -c %h "$BACK/d/big")" = 2 ]
	done
	echo "# $hits of $rounds runs killed in an in-place copy, $mixed with the inode half copied" >&3
	# Where exactly a kill lands depends on the machine's load; the
	# half-copied state itself is staged deterministically by the tests
	# above, so here it is enough that kills landed in the copy phase.
	[ "$hits" -ge 1 ]
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/d/big")" = "$gen" ]
	[ "$(rk_header_gen "$BACK/d/small")" = "$gen" ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	[ "$(sums)" = "$want" ]
}

# kill_in_copy: start a rekey run to generation GEN on the unmounted tree
# and SIGKILL it once the in-place copy of d/big has begun.  Returns 1 if
# the run ended before.
kill_in_copy() {
	"$REKEYFS_REKEY" --keyring "$KR" --jobs 1 -q "$BACK" >/dev/null 2>&1 &
	local pid=$! n=$((SECONDS + 60)) rec= tmp=
	while [ "$SECONDS" -lt "$n" ] && kill -0 "$pid" 2>/dev/null; do
		rec=$(compgen -G "$BACK/.rekeyfs-tmp.*.intent" | head -n 1) || true
		[ -n "$rec" ] && break
	done
	[ -n "$rec" ] && tmp=$(sed -n 's/^temp //p' "$rec" | xxd -r -p)
	while [ -n "$tmp" ] && [ "$SECONDS" -lt "$n" ] &&
		kill -0 "$pid" 2>/dev/null &&
		! cmp -s -n 32 "$BACK/d/big" "$BACK/$tmp"; do
		:
	done
	local rc=1
	[ -n "$tmp" ] && kill -9 "$pid" 2>/dev/null && rc=0
	wait "$pid" || true
	return "$rc"
}

@test "rekey crash: after SIGKILL in an in-place copy the next run, or a fresh mount, finishes it" {
	rk_keyring "$KR" "" 1
	rk_mount
	mkdir "$MNT/d"
	head -c $((64 * 1024 * 1024 + 3)) /dev/urandom >"$MNT/d/big"
	ln "$MNT/d/big" "$MNT/big2"
	local want ino
	want=$(sums)
	ino=$(stat -c %i "$BACK/d/big")
	rk_add_gen 2
	rk_add_gen 3
	rk_unmount

	# the next run: signed with generation 3, replayed by the tool
	sed -i 's/^\[keyring\]$/[keyring]\nprimary = 2/' "$KR"
	kill_in_copy || skip "the run finished before the kill"
	[ -n "$(compgen -G "$BACK/.rekeyfs-tmp.*.intent")" ]
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/big2")" = 2 ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]

	# a fresh mount, no tool in between
	sed -i 's/^primary = 2$/primary = 3/' "$KR"
	kill_in_copy || skip "the run finished before the kill"
	[ -n "$(compgen -G "$BACK/.rekeyfs-tmp.*.intent")" ]
	rk_mount
	[ "$(sums)" = "$want" ]
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*.intent')" ]
	[ "$(stat -c %i "$BACK/big2")" = "$ino" ]
	[ "$(stat -c %h "$BACK/d/big")" = 2 ]
	rk_unmount
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/big2")" = 3 ]
	rk_mount
	[ "$(sums)" = "$want" ]
}
