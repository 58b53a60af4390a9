#!/usr/bin/env bats
# POSIX semantics, differentially: tests/prog/posixsem runs ~1500 small
# checks (errno of every failure case, modes, owners, link counts, which
# timestamps move, xattrs, I/O, sticky and setgid directories) on an
# allow_other rekeyfs mount and on a plain directory of the same backing
# filesystem, as root, as user A (uid 65534) and, for the cross-user
# checks, as users B and C too.  Every line of output must be the same on
# both; the summary line gives the agreement count.

load helpers

setup() {
	rk_setup
	[ "$(id -u)" = 0 ] || skip "needs root (posixsem switches users)"
	PSX=$RK_BUILD/tests/posixsem
	[ -x "$PSX" ] || {
		echo "posixsem not built ($PSX)" >&2
		return 1
	}
	PLAIN=$RK_TMP/plain
	mkdir -m 755 "$PLAIN"
}

teardown() {
	rk_teardown
}

# psx_run DIR OUT: run posixsem in DIR (made 0755), output to OUT.
psx_run() {
	mkdir -m 755 "$1"
	"$PSX" "$1" >"$2"
}

# psx_agree A B: "CHECKS AGREE" over the union of check names in A and B.
psx_agree() {
	awk '
	{
		i = index($0, ": ")
		k = i ? substr($0, 1, i - 1) : $0
		v = i ? substr($0, i + 2) : ""
	}
	FNR == NR { a[k] = v; next }
	{ b[k] = v }
	END {
		for (k in a) {
			n++
			if ((k in b) && a[k] == b[k])
				m++
		}
		for (k in b)
			if (!(k in a))
				n++
		printf "%d %d\n", n, m
	}' "$1" "$2"
}

@test "posixsem: the output on a plain directory is the same run after run" {
	psx_run "$PLAIN/1" "$RK_TMP/run1.out"
	psx_run "$PLAIN/2" "$RK_TMP/run2.out"
	diff -u "$RK_TMP/run1.out" "$RK_TMP/run2.out"
	[ "$(wc -l <"$RK_TMP/run1.out")" -ge 300 ]
	if grep -E 'SETUP FAILED|child killed' "$RK_TMP/run1.out"; then
		false
	fi
}

@test "posixsem: an allow_other mount agrees with a plain directory" {
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other
	psx_run "$PLAIN/t" "$RK_TMP/plain.out"
	psx_run "$MNT/t" "$RK_TMP/mount.out" || true
	local n agree
	read -r n agree < <(psx_agree "$RK_TMP/plain.out" "$RK_TMP/mount.out")
	echo "# posix: $n checks, $agree agree" >&3
	diff -u "$RK_TMP/plain.out" "$RK_TMP/mount.out"
	[ "$n" -eq "$agree" ]
}
