#!/usr/bin/env bats
# The mount keeps one inode per backing file: hard links are one file to
# every name at once, a file unlinked while open lives on through its
# handle alone, a rekey does not change the inode numbers programs see, and
# the daemon's descriptors per inode stay within a budget.

load helpers

PY=/usr/bin/python3

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
}

teardown() {
	exec 7<&- 8>&-
	rk_teardown
}

# links DIR: hard-link changes through one name, each followed at once
# (no sleep) by a stat of every name; prints what a program sees.
links() {
	local d=$1
	cd "$d"
	show() {
		local n m
		for n in a b c b2; do
			[ -e "$n" ] || continue
			# mtime: the one set, or recent (a run's clock differs)
			m=$(stat -c %Y "$n")
			[ "$m" = 1000000000 ] || m=$(($(date +%s) - m < 10 ? 1 : m))
			printf '%s %s %s %s\n' "$(stat -c '%n %h %a %U %G %s' "$n")" "$m" \
				"$(sha256sum <"$n" | cut -c1-12)" \
				"$([ "$(stat -c %i "$n")" = "$(stat -c %i a 2>/dev/null)" ] && echo same-as-a)"
		done
		echo "-- $1"
	}
	echo one >a
	show create
	ln a b
	show "link a b"
	ln a c
	show "link a c"
	chmod 600 b
	show "chmod b"
	chown nobody:nogroup c
	show "chown c"
	touch -m -d @1000000000 a
	show "mtime a"
	touch -a -d @1100000000 b
	stat -c '%n atime %X' a c
	truncate -s 10000 c
	show "truncate c"
	echo 'new content' >a
	show "rewrite a"
	echo more >>b
	show "append b"
	# a write through a descriptor of one name, seen by the others
	exec 6<>c
	printf 'XY' >&6
	exec 6>&-
	show "write c"
	rm c
	show "unlink c"
	echo other >o
	mv o b
	show "rename over b"
	ln a b2
	show "link a b2"
	# rename between two names of one file does nothing
	"$PY" -c 'import os; os.rename("a", "b2")'
	show "rename a b2"
	rm b2
	show "unlink b2"
	cd - >/dev/null
}

@test "hard links: every name shows a change through another at once" {
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	rk_mount
	local plain mnt
	mkdir "$RK_TMP/plain"
	plain=$(links "$RK_TMP/plain")
	echo "$plain"
	mnt=$(links "$MNT")
	if [ "$plain" != "$mnt" ]; then
		diff <(echo "$plain") <(echo "$mnt") >&2
		false
	fi
}

@test "an open file unlinked lives on through its handle and leaves nothing behind" {
	rk_mount
	run "$PY" - "$MNT" "$BACK" <<'PY'
import os, sys, time
mnt, back = sys.argv[1], sys.argv[2]
bad = []
for i in range(200):
    d, bd = "%s/u%d" % (mnt, i), "%s/u%d" % (back, i)
    os.mkdir(d)
    fd = os.open(d + "/f", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"x" * 5000)
    os.unlink(d + "/f")
    if os.listdir(d):
        bad.append("%d: mount lists %s while open" % (i, os.listdir(d)))
    if os.listdir(bd):
        bad.append("%d: backing lists %s while open" % (i, os.listdir(bd)))
    if os.pread(fd, 10, 4995) != b"xxxxx":
        bad.append("%d: read back wrong" % i)
    os.pwrite(fd, b"y" * 100, 6000)
    if os.pread(fd, 8, 5998) != b"\0\0yyyyyy":
        bad.append("%d: read of the new write wrong" % i)
    st = os.fstat(fd)
    if st.st_size != 6100 or st.st_nlink != 0:
        bad.append("%d: fstat size %d nlink %d" % (i, st.st_size, st.st_nlink))
    if i == 0:
        # after the attribute cache has expired
        time.sleep(1.2)
        st = os.fstat(fd)
        if st.st_size != 6100:
            bad.append("late fstat size %d" % st.st_size)
        os.pwrite(fd, b"z", 6100)
        if os.fstat(fd).st_size != 6101 or os.pread(fd, 2, 6099) != b"yz":
            bad.append("late write lost")
    os.close(fd)
    left = os.listdir(bd)
    if left:
        bad.append("%d: backing keeps %s after close" % (i, left))
    try:
        os.rmdir(d)
    except OSError as e:
        bad.append("%d: rmdir after close: %s" % (i, e.strerror))
for b in bad[:20]:
    print(b)
print("failures", len(bad))
sys.exit(1 if bad else 0)
PY
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$(find "$BACK" -name '.fuse_hidden*')" ]
}

@test "rekey with open and hard-linked files keeps inode numbers and writes" {
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
	rk_mount
	mkdir "$MNT/sub"
	printf 'single one\n' >"$MNT/s1"
	head -c 20000 /dev/urandom >"$MNT/s2"
	printf 'linked\n' >"$MNT/h1"
	ln "$MNT/h1" "$MNT/h2"
	ln "$MNT/h1" "$MNT/sub/h3"
	printf 'held open\n' >"$MNT/held"
	printf 'writer\n' >"$MNT/w"
	local names="s1 s2 h1 h2 sub/h3 held w" n
	local sums ino
	sums=$(cd "$MNT" && sha256sum $names)
	ino=$(cd "$MNT" && stat -c '%n %i' $names)
	exec 7<"$MNT/held"
	exec 8>>"$MNT/w"
	rk_add_gen 2
	rk_reload_to 2
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	echo "$output"
	# the open files may be reported busy (exit 1), nothing fails
	[ "$status" -eq 0 ] || [ "$status" -eq 1 ]
	[[ "$output" != *FAIL* ]]
	# not open during the rekey: on the new generation
	for n in s1 s2 h1; do
		[ "$(rk_header_gen "$BACK/$n")" = 2 ]
	done
	[ "$(cd "$MNT" && stat -c '%n %i' $names)" = "$ino" ]
	[ "$(cd "$MNT" && sha256sum $names)" = "$sums" ]
	# also once the attribute cache has expired
	sleep 1.2
	[ "$(cd "$MNT" && stat -c '%n %i' $names)" = "$ino" ]
	[ "$(cd "$MNT" && sha256sum $names)" = "$sums" ]
	[ "$(find "$MNT" -inum "$(echo "$ino" | awk '$1 == "s1" {print $2}')")" = "$MNT/s1" ]
	[ "$(find "$MNT" -inum "$(echo "$ino" | awk '$1 == "h1" {print $2}')" | sort | tr '\n' ' ')" = "$MNT/h1 $MNT/h2 $MNT/sub/h3 " ]
	# the held file still reads through its descriptor
	[ "$(cat <&7)" = "held open" ]
	# writes after the rekey land in the files
	printf 'after\n' >>"$MNT/s1"
	printf 'after link\n' >>"$MNT/h2"
	printf 'after w\n' >&8
	exec 7<&- 8>&-
	rk_unmount
	rk_mount
	[ "$(cat "$MNT/s1")" = "$(printf 'single one\nafter')" ]
	[ "$(cat "$MNT/sub/h3")" = "$(printf 'linked\nafter link')" ]
	[ "$(cat "$MNT/w")" = "$(printf 'writer\nafter w')" ]
	[ "$(cat "$MNT/held")" = "held open" ]
}

# mount_limited NOFILE: mount with the daemon's descriptor limit at NOFILE
# (soft and hard) and without CAP_SYS_RESOURCE, so it cannot raise it.
mount_limited() {
	setpriv --bounding-set=-sys_resource --inh-caps=-sys_resource -- \
		prlimit --nofile="$1:$1" -- \
		"$REKEYFS" -f --keyring "$KR" "$BACK" "$MNT" >>"$LOG" 2>&1 &
	LIMITED_PID=$!
	RK_PIDS+=("$LIMITED_PID")
	local i
	for i in $(seq 1 100); do
		mountpoint -q "$MNT" && return 0
		kill -0 "$LIMITED_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$LOG" >&2
	return 1
}

@test "fd budget: a tree of many more files than descriptors works throughout" {
	rk_mount # sets the backing directory up
	rk_unmount
	: >"$LOG"
	mount_limited 256
	grep -E '^Max open files +256 +256 ' "/proc/$LIMITED_PID/limits"
	# 1,500 files, each the kernel keeps a node of: the daemon has the
	# kernel forget unused ones and never runs out
	run "$PY" - "$MNT" "$LIMITED_PID" <<'PY'
import os, sys
mnt, pid = sys.argv[1], sys.argv[2]
most = 0
def fds():
    global most
    most = max(most, len(os.listdir("/proc/%s/fd" % pid)))
for d in range(3):
    os.mkdir("%s/d%d" % (mnt, d))
    for i in range(500):
        with open("%s/d%d/f%d" % (mnt, d, i), "w") as f:
            f.write("file %d %d\n" % (d, i))
        if i % 50 == 0:
            fds()
# stat, list and read everything, twice
for _ in range(2):
    for d in range(3):
        names = os.listdir("%s/d%d" % (mnt, d))
        assert len(names) == 500, len(names)
        for i in range(500):
            p = "%s/d%d/f%d" % (mnt, d, i)
            assert os.stat(p).st_size == len("file %d %d\n" % (d, i))
            with open(p) as f:
                assert f.read() == "file %d %d\n" % (d, i), p
            if i % 50 == 0:
                fds()
print("most fds", most)
PY
	echo "$output"
	[ "$status" -eq 0 ]
	# ls -l (READDIRPLUS, then a lookup of every name) and du as well
	[ "$(ls -l "$MNT"/d0 "$MNT"/d1 "$MNT"/d2 | grep -c '^-')" -eq 1500 ]
	du -s "$MNT"
	find "$MNT" -type f | wc -l | grep -qx 1500
	kill -0 "$LIMITED_PID"
	! grep -i 'file descriptor' "$LOG"
	rm -r "$MNT"/d0 "$MNT"/d1 "$MNT"/d2
	[ -z "$(ls -A "$MNT")" ]
	rk_unmount
	wait "$LIMITED_PID"
	# the backing tree holds the files' own names only
	[ "$(find "$BACK" -mindepth 1 ! -name '.rekeyfs*' | wc -l)" -eq 0 ]
}

@test "fd budget: files held open past the limit fail with EMFILE, then work again" {
	rk_mount
	mkdir "$MNT/many"
	(cd "$MNT/many" && for i in $(seq 1 400); do : >"f$i"; done)
	rk_unmount
	: >"$LOG"
	mount_limited 256
	# open files cannot be forgotten: each takes a node and a handle,
	# so holding them all open must run out, with EMFILE only
	run "$PY" - "$MNT/many" <<'PY'
import errno, os, sys
held, emfile = [], 0
for i in range(1, 401):
    try:
        held.append(os.open("%s/f%d" % (sys.argv[1], i), os.O_RDONLY))
    except OSError as e:
        if e.errno != errno.EMFILE:
            print("f%d: %s" % (i, e.strerror))
            sys.exit(1)
        emfile += 1
print("open", len(held), "EMFILE", emfile)
assert emfile > 0 and len(held) > 50
for fd in held:
    os.close(fd)
PY
	echo "# $output" >&3
	[ "$status" -eq 0 ]
	kill -0 "$LIMITED_PID"
	grep -i 'file descriptor' "$LOG"
	# closed again, every file opens and reads
	run "$PY" - "$MNT/many" <<'PY'
import os, sys
for i in range(1, 401):
    with open("%s/f%d" % (sys.argv[1], i)) as f:
        assert f.read() == ""
PY
	echo "$output"
	[ "$status" -eq 0 ]
	kill -0 "$LIMITED_PID"
	rk_unmount
	wait "$LIMITED_PID"
}
