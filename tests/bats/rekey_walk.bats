#!/usr/bin/env bats
# rekeyfs-rekey's walk of the tree: exact counts over many directories and
# odd entries, a large directory rewritten while it is being listed, and
# peak memory that does not follow the number of files.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
	MKTREE=$RK_BUILD/tests/mkbenchtree
	[ -x "$MKTREE" ] || skip "mkbenchtree not built"
	[ -x /usr/bin/time ] || skip "no /usr/bin/time"
	# one pair of keys, two keyrings: primary 1 and primary 2
	rk_keyring "$KR" 1 1 2
	KR2=$RK_TMP/vault2.keyring
	sed 's/^primary = 1$/primary = 2/' "$KR" >"$KR2"
	chmod 600 "$KR2"
}

teardown() {
	rk_teardown
}

json_get() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

@test "rekey walk: --status counts every file exactly once over many directories and odd entries" {
	"$MKTREE" "$KR" "$BACK" 1 2000 100 40
	mkdir -p "$BACK/n1/n2/n3"
	cp -a "$BACK/d00000/f0000000" "$BACK/n1/a"
	cp -a "$BACK/d00001/f0000040" "$BACK/n1/n2/b"
	cp -a "$BACK/d00002/f0000080" "$BACK/n1/n2/n3/c"
	: >"$BACK/n1/empty"
	head -c 100 /dev/urandom >"$BACK/n1/garbage"
	# never counted: another name of a counted file, symlinks, a fifo
	ln "$BACK/d00003/f0000120" "$BACK/n1/n2/hardlink"
	ln -s ../d00004/f0000160 "$BACK/n1/filelink"
	ln -s ../d00005 "$BACK/n1/dirlink"
	ln -s /etc "$BACK/n1/n2/outside"
	mkfifo "$BACK/n1/n2/fifo"
	run "$REKEYFS_REKEY" --status --json --keyring "$KR2" "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["files"], d["bad_headers"], d["remaining"]')" = "(2005, 1, 2004)" ]
	[ "$(echo "$output" | json_get '[(g["generation"], g["files"], g["bytes"]) for g in d["before"]]')" = "[(0, 1, 0), (1, 2003, 200300)]" ]
	run "$REKEYFS_REKEY" --status --generation 1 --keyring "$KR2" "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | wc -l)" -eq 2003 ]
	[ "$(echo "$output" | sort -u | wc -l)" -eq 2003 ]
	echo "$output" | grep -qx 'n1/n2/n3/c'
	! echo "$output" | grep -q 'link\|fifo\|outside'
	run "$REKEYFS_REKEY" --status --generation 0 --keyring "$KR2" "$BACK"
	[ "$output" = "n1/empty" ]
}

@test "rekey walk: a directory of many files rewritten while it is listed: each file once, counts exact" {
	"$MKTREE" "$KR" "$BACK" 1 6000 0 0
	"$MKTREE" "$KR" "$BACK/sub" 1 1000 5000 250
	run "$REKEYFS_REKEY" --json -j 2 --keyring "$KR2" "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["files"], d["migrated"], d["current"], d["skipped"], d["failed"], d["remaining"]')" = "(7000, 7000, 0, 0, 0, 0)" ]
	[ "$(echo "$output" | json_get '[(g["generation"], g["files"]) for g in d["before"]]')" = "[(1, 7000)]" ]
	[ "$(echo "$output" | json_get '[(g["generation"], g["files"]) for g in d["after"]]')" = "[(2, 7000)]" ]
	[ "$(find "$BACK" -name '.rekeyfs-tmp*' | wc -l)" -eq 0 ]
	for f in "$BACK/flat/f0000000" "$BACK/flat/f0005999" "$BACK/sub/d00003/f0000999"; do
		[ "$(rk_header_gen "$f")" = 2 ]
	done
	# again: nothing to do, every file counted once as current
	run "$REKEYFS_REKEY" --json --keyring "$KR2" "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["files"], d["migrated"], d["current"]')" = "(7000, 0, 7000)" ]
}

@test "rekey walk: leftover temps of a crashed run are removed while the walk goes on, the run's own are not" {
	"$MKTREE" "$KR" "$BACK" 1 3000 0 300
	for d in d00000 d00004 d00009; do
		head -c 64 /dev/urandom >"$BACK/$d/.rekeyfs-tmp.00112233deadbeef"
	done
	run "$REKEYFS_REKEY" --json -j 2 --keyring "$KR2" "$BACK"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | json_get 'd["temps_removed"], d["migrated"], d["failed"], d["skipped"]')" = "(3, 3000, 0, 0)" ]
	[ "$(find "$BACK" -name '.rekeyfs-tmp*' | wc -l)" -eq 0 ]
}

# peak_kib ARGS...: the peak resident memory of rekeyfs-rekey ARGS, in KiB
peak_kib() {
	/usr/bin/time -f '%M' -o "$RK_TMP/time" "$REKEYFS_REKEY" "$@" >/dev/null 2>&1
	tail -n 1 "$RK_TMP/time"
}

@test "rekey walk: peak memory of --status and of a rekey does not grow with the number of files" {
	"$MKTREE" "$KR" "$RK_TMP/small" 1 2000 0 0
	"$MKTREE" "$KR" "$RK_TMP/large" 1 20000 0 0
	local mode s l
	for mode in status rekey; do
		if [ "$mode" = status ]; then
			s=$(peak_kib --status "$RK_TMP/small")
			l=$(peak_kib --status "$RK_TMP/large")
		else
			s=$(peak_kib -q --keyring "$KR" "$RK_TMP/small")
			l=$(peak_kib -q --keyring "$KR" "$RK_TMP/large")
		fi
		echo "# $mode: $s KiB for 2000 files, $l KiB for 20000" >&3
		# a walk that held every path would need about twice as much
		# here; the margin leaves room for ASan's quarantine
		[ $((l * 100)) -le $((s * 140)) ]
	done
}
