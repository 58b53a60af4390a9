#!/usr/bin/env bats
# Modifying a file drops privileges exactly as on a local filesystem: a
# write, truncate, O_TRUNC open or fallocate by a user without CAP_FSETID
# clears suid (and sgid when group-executable or the writer is outside the
# group), root keeps them, chown clears them, and any write drops
# security.capability.  The daemon does this itself (the kernel leaves it
# to it), so the kernel need not ask for security.capability before every
# write.

load helpers

setup() {
	rk_setup
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other
	chmod 1777 "$MNT"
	PLAIN=$RK_TMP/plain
	mkdir -p "$PLAIN"
	chmod 1777 "$PLAIN"
}

teardown() {
	rk_teardown
}

as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- /bin/sh -c "$1"
}

# check DIR MODE WANT CMD: set DIR/f to MODE, run CMD (F is the file), and
# require mode WANT both at once (the kernel's cached view) and in the
# backing file.
check() {
	local dir=$1 mode=$2 want=$3 cmd=$4 f=$1/f got
	chmod "$mode" "$f"
	F=$f eval "$cmd"
	got=$(stat -c %a "$f")
	if [ "$got" != "$want" ]; then
		echo "$dir: after '$cmd' on $mode: mode $got, want $want" >&2
		return 1
	fi
	if [ "$dir" = "$MNT" ]; then
		got=$(stat -c %a "$BACK/f")
		[ "$got" = "$want" ] || {
			echo "backing: after '$cmd' on $mode: $got, want $want" >&2
			return 1
		}
	fi
}

# cases DIR: every case, on DIR
cases() {
	local d=$1
	echo data >"$d/f"
	chown root:root "$d/f"
	check "$d" 6777 777 'as_nobody "echo x >> $F"'
	check "$d" 6777 777 'as_nobody "truncate -s 1 $F"'
	check "$d" 6777 777 'as_nobody ": > $F"'
	check "$d" 6777 777 'as_nobody "fallocate -l 100000 $F"'
	check "$d" 4777 777 'as_nobody "echo x >> $F"'
	check "$d" 6777 6777 'echo root >> $F'
	check "$d" 6777 6777 'truncate -s 5 $F'
	check "$d" 6777 6777 ': > $F'
	check "$d" 6777 777 'chown nobody $F; chown root $F'
	# sgid without group-execute: kept for a writer in the group only
	check "$d" 2767 767 'as_nobody "echo x >> $F"'
	chgrp nogroup "$d/f"
	check "$d" 2767 2767 'as_nobody "echo x >> $F"'
	check "$d" 2777 777 'as_nobody "echo x >> $F"'
}

@test "suid and sgid are cleared as on a local filesystem" {
	command -v fallocate >/dev/null || skip "no fallocate(1)"
	cases "$PLAIN"
	cases "$MNT"
	# the same operations left the same contents
	cmp "$PLAIN/f" "$MNT/f"
	[ "$(cat "$MNT/f")" = "$(printf 'x\nx\nx')" ]
}

@test "a write drops security.capability" {
	command -v setfattr >/dev/null || skip "no setfattr"
	local cap=0x0000000200200000000000000000000000000000
	echo data >"$MNT/prog"
	setfattr -n security.capability -v "$cap" "$MNT/prog"
	[ "$(getfattr -n security.capability -e hex --only-values "$MNT/prog" | od -An -tx1 | tr -d ' \n')" != "" ]
	echo more >>"$MNT/prog"
	run getfattr -n security.capability "$MNT/prog"
	[ "$status" -ne 0 ]
	run getfattr -n security.capability "$BACK/prog"
	[ "$status" -ne 0 ]
	[ "$(cat "$MNT/prog")" = "$(printf 'data\nmore')" ]
}

@test "small writes do not make the kernel ask for security.capability each time" {
	rk_unmount
	: >"$LOG"
	rk_mount -d
	# read-write: written through the page cache, where the kernel would
	# ask before every write without FUSE_HANDLE_KILLPRIV_V2
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
for i in range(200):
    os.pwrite(fd, b"x" * 4096, i * 4096)
os.close(fd)
' "$MNT/many"
	[ "$(stat -c %s "$MNT/many")" = $((200 * 4096)) ]
	local writes asks
	writes=$(grep -c 'opcode: WRITE' "$LOG")
	asks=$(grep -c 'opcode: GETXATTR' "$LOG" || true)
	echo "writes $writes, getxattr $asks" >&2
	[ "$writes" -ge 200 ]
	[ "$asks" -le 2 ]
}

# newfile DIR: as nobody, make DIR/n with mode 06777 through a write-only
# O_CREAT handle, write, set 06777 again through it and write again; print
# the mode after each step, as the writer's own fstat sees it at once.
newfile_as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
		/usr/bin/python3 -c '
import os, sys
os.umask(0)
fd = os.open(sys.argv[1] + "/n", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o6777)
out = ["%o" % os.fstat(fd).st_mode]
os.write(fd, b"x")
out.append("%o" % os.fstat(fd).st_mode)
os.fchmod(fd, 0o6777)
os.pwrite(fd, b"y", 100)
out.append("%o" % os.fstat(fd).st_mode)
os.close(fd)
print(" ".join(out))
' "$1"
}

@test "a new file's write-only handle clears suid and sgid as on a local filesystem" {
	local plain mnt
	plain=$(newfile_as_nobody "$PLAIN")
	mnt=$(newfile_as_nobody "$MNT")
	echo "plain: $plain; mount: $mnt" >&2
	[ "$plain" = "106777 100777 100777" ]
	[ "$mnt" = "$plain" ]
	[ "$(stat -c %a "$BACK/n")" = 777 ]
	[ "$(stat -c %s "$MNT/n")" = 101 ]
	# root (CAP_FSETID) keeps them
	python3 -c '
import os, sys
os.umask(0)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o6777)
os.write(fd, b"x")
os.close(fd)
' "$MNT/r"
	[ "$(stat -c %a "$MNT/r")" = 6777 ]
}

@test "a new file's write-only handle drops security.capability on write" {
	python3 -c '
import errno, os, struct, sys
cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
for d in sys.argv[1:]:
    p = d + "/c"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    os.write(fd, b"a")
    os.setxattr(p, "security.capability", cap)
    assert os.getxattr(p, "security.capability") == cap, d
    os.write(fd, b"b")
    try:
        os.getxattr(p, "security.capability")
        sys.exit("%s: security.capability kept after a write" % d)
    except OSError as e:
        assert e.errno == errno.ENODATA, (d, e)
    os.close(fd)
' "$PLAIN" "$MNT"
	run getfattr -n security.capability "$BACK/c"
	[ "$status" -ne 0 ]
	[ "$(cat "$MNT/c")" = ab ]
}

@test "a suid file written through a new file's handle runs without the owner's ids" {
	[ -x /usr/bin/id ] || skip "no /usr/bin/id"
	id daemon >/dev/null 2>&1 || skip "no user daemon"
	rk_unmount
	rk_mount -o allow_other,suid
	chmod 1777 "$MNT"
	# nobody writes a program, makes it suid nobody, then writes one byte
	# more through the same handle, which clears suid; another user runs
	# it at once, with no stat in between to refresh the kernel's view
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
		/usr/bin/python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
with open("/usr/bin/id", "rb") as f:
    os.write(fd, f.read())
os.fchmod(fd, 0o4755)
os.write(fd, b"\0")
os.close(fd)
' "$MNT/prog"
	run setpriv --reuid=daemon --regid=daemon --clear-groups -- "$MNT/prog" -u
	[ "$status" -eq 0 ]
	[ "$output" = "$(id -u daemon)" ]
	[ "$(stat -c %a "$MNT/prog")" = 755 ]
}
