#!/usr/bin/env bats
# rekeyfs mount: every namespace and metadata operation, with the errno
# values a local filesystem (ext4) gives.

load helpers

PY=/usr/bin/python3

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
	rk_mount
}

teardown() {
	rk_teardown
}

# errno_of PYTHON-EXPR: run an os call, print the errno name or OK
errno_of() {
	"$PY" -c '
import os, sys, errno, ctypes
libc = ctypes.CDLL(None, use_errno=True)
def renameat2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
try:
    exec(sys.argv[1])
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
' "$1"
}

@test "errno values match a local filesystem" {
	mkdir "$MNT/d" "$MNT/e"
	echo x > "$MNT/f"
	echo y > "$MNT/e/g"
	[ "$(errno_of "os.mkdir('$MNT/d')")" = EEXIST ]
	[ "$(errno_of "os.rmdir('$MNT/e')")" = ENOTEMPTY ]
	[ "$(errno_of "os.rmdir('$MNT/f')")" = ENOTDIR ]
	[ "$(errno_of "os.unlink('$MNT/d')")" = EISDIR ]
	[ "$(errno_of "os.unlink('$MNT/nope')")" = ENOENT ]
	[ "$(errno_of "open('$MNT/f/x', 'w')")" = ENOTDIR ]
	[ "$(errno_of "open('$MNT/d', 'w')")" = EISDIR ]
	[ "$(errno_of "os.open('$MNT/f', os.O_CREAT | os.O_EXCL | os.O_WRONLY)")" = EEXIST ]
	[ "$(errno_of "os.rename('$MNT/d', '$MNT/f')")" = ENOTDIR ]
	[ "$(errno_of "os.rename('$MNT/f', '$MNT/d')")" = EISDIR ]
	[ "$(errno_of "os.rename('$MNT/d', '$MNT/e')")" = ENOTEMPTY ]
	[ "$(errno_of "os.rename('$MNT/d', '$MNT/d/sub')")" = EINVAL ]
	[ "$(errno_of "os.link('$MNT/d', '$MNT/dl')")" = EPERM ]
	[ "$(errno_of "os.link('$MNT/f', '$MNT/e/g')")" = EEXIST ]
	[ "$(errno_of "os.readlink('$MNT/f')")" = EINVAL ]
	[ "$(errno_of "os.open('$MNT/' + 'a' * 256, os.O_CREAT | os.O_WRONLY)")" = ENAMETOOLONG ]
	[ "$(errno_of "os.getxattr('$MNT/f', 'user.none')")" = ENODATA ]
	[ "$(errno_of "os.open('$MNT/f', os.O_RDONLY | os.O_DIRECTORY)")" = ENOTDIR ]
}

@test "rename, RENAME_NOREPLACE and RENAME_EXCHANGE" {
	echo one > "$MNT/a"
	echo two > "$MNT/b"
	mkdir "$MNT/dir"
	[ "$(errno_of "renameat2('$MNT/a', '$MNT/b', 1)")" = EEXIST ]
	[ "$(cat "$MNT/a")" = one ]
	[ "$(errno_of "renameat2('$MNT/a', '$MNT/b', 2)")" = OK ]
	[ "$(cat "$MNT/a")" = two ]
	[ "$(cat "$MNT/b")" = one ]
	[ "$(errno_of "renameat2('$MNT/a', '$MNT/c', 2)")" = ENOENT ]
	[ "$(errno_of "renameat2('$MNT/a', '$MNT/c', 1)")" = OK ]
	[ "$(errno_of "renameat2('$MNT/c', '$MNT/dir/c', 0)")" = OK ]
	[ "$(cat "$MNT/dir/c")" = two ]
	# plain rename over an existing file
	mv -f "$MNT/b" "$MNT/dir/c"
	[ "$(cat "$MNT/dir/c")" = one ]
	[ ! -e "$MNT/b" ]
	# exchange a file and a directory
	echo f > "$MNT/x"
	[ "$(errno_of "renameat2('$MNT/x', '$MNT/dir', 2)")" = OK ]
	[ -d "$MNT/x" ] && [ -f "$MNT/dir" ]
	[ "$(cat "$MNT/x/c")" = one ]
}

# The daemon keeps directory fds open for its directory locks; these
# check that every change lands in the directory that has the name now.
@test "after a directory is renamed, replaced, exchanged or removed, new entries land in the one at the name" {
	mkdir "$MNT/a"
	touch "$MNT/a/1"
	mv "$MNT/a" "$MNT/b"
	mkdir "$MNT/a"
	touch "$MNT/a/2"
	ln -s t "$MNT/a/s"
	mkdir "$MNT/a/d"
	mv "$MNT/b/1" "$MNT/a/3"
	ln "$MNT/a/2" "$MNT/a/4"
	[ "$(ls "$BACK/b" | tr '\n' ' ')" = "" ]
	[ "$(ls "$BACK/a" | tr '\n' ' ')" = "2 3 4 d s " ]
	# a parent renamed
	mkdir -p "$MNT/p/q"
	touch "$MNT/p/q/1"
	mv "$MNT/p" "$MNT/r"
	mkdir -p "$MNT/p/q"
	touch "$MNT/p/q/2"
	[ "$(ls "$BACK/r/q" | tr '\n' ' ')" = "1 " ]
	[ "$(ls "$BACK/p/q" | tr '\n' ' ')" = "2 " ]
	# an empty directory replaced by rename
	mkdir "$MNT/s" "$MNT/t"
	touch "$MNT/s/1" "$MNT/t/1"
	rm "$MNT/t/1"
	mv -T "$MNT/s" "$MNT/t"
	touch "$MNT/t/2"
	[ ! -e "$MNT/s" ]
	[ "$(ls "$BACK/t" | tr '\n' ' ')" = "1 2 " ]
	# two directories exchanged
	mkdir "$MNT/x" "$MNT/y"
	touch "$MNT/x/from-x" "$MNT/y/from-y"
	[ "$(errno_of "renameat2('$MNT/x', '$MNT/y', 2)")" = OK ]
	touch "$MNT/x/new-x" "$MNT/y/new-y"
	rm "$MNT/x/from-y"
	[ "$(ls "$BACK/x" | tr '\n' ' ')" = "new-x " ]
	[ "$(ls "$BACK/y" | tr '\n' ' ')" = "from-x new-y " ]
	# removed and made again
	mkdir "$MNT/c"
	touch "$MNT/c/1"
	rm "$MNT/c/1"
	rmdir "$MNT/c"
	mkdir "$MNT/c"
	touch "$MNT/c/2"
	[ "$(ls "$BACK/c" | tr '\n' ' ')" = "2 " ]
	[ "$(ls "$MNT/c" | tr '\n' ' ')" = "2 " ]
}

@test "work in more directories than the daemon keeps open; no directory stays locked" {
	local i j
	for i in $(seq 1 40); do mkdir "$MNT/d$i"; done
	for j in 1 2 3; do
		for i in $(seq 1 40); do echo "$i.$j" > "$MNT/d$i/f$j"; done
	done
	for i in $(seq 1 40); do
		rm "$MNT/d$i/f2"
		mv "$MNT/d$i/f3" "$MNT/d$(((i % 40) + 1))/g$i"
	done
	for i in $(seq 1 40); do
		[ "$(cat "$MNT/d$i/f1")" = "$i.1" ]
		[ ! -e "$BACK/d$i/f2" ]
		j=$((((i + 38) % 40) + 1))
		[ "$(cat "$MNT/d$i/g$j")" = "$j.3" ]
		[ "$(ls "$BACK/d$i" | wc -l)" = 2 ]
		# the shared lock went with the last operation
		flock -x -n "$BACK/d$i" true
	done
	flock -x -n "$BACK" true
}

@test "hard links share content and keep both names" {
	echo orig > "$MNT/a"
	ln "$MNT/a" "$MNT/b"
	[ "$(stat -c %h "$MNT/a")" -eq 2 ]
	[ "$(stat -c %i "$MNT/a")" = "$(stat -c %i "$MNT/b")" ]
	echo changed >> "$MNT/b"
	# each name is its own kernel inode (libfuse high-level API): the
	# other name sees the new size once its 1 s attribute cache expires
	sleep 1.1
	[ "$(cat "$MNT/a")" = "$(printf 'orig\nchanged')" ]
	rm "$MNT/a"
	[ "$(head -1 "$MNT/b")" = orig ]
	[ "$(stat -c %h "$MNT/b")" -eq 1 ]
}

@test "symlinks store their targets as-is" {
	echo data > "$MNT/t"
	ln -s t "$MNT/rel"
	ln -s /nonexistent/abs/path "$MNT/abs"
	long=$(printf 'x%.0s' $(seq 1 4000))
	ln -s "$long" "$MNT/long"
	[ "$(readlink "$MNT/rel")" = t ]
	[ "$(cat "$MNT/rel")" = data ]
	[ "$(readlink "$MNT/abs")" = /nonexistent/abs/path ]
	[ "$(readlink "$MNT/long")" = "$long" ]
	[ "$(readlink "$BACK/rel")" = t ]
	[ -L "$MNT/rel" ]
	run ln -s t "$MNT/rel"
	[ "$status" -ne 0 ]
}

@test "mknod: fifos and device nodes" {
	mkfifo -m 640 "$MNT/fifo"
	[ -p "$MNT/fifo" ]
	[ "$(stat -c %a "$MNT/fifo")" = 640 ]
	(echo through > "$MNT/fifo" &)
	[ "$(timeout 5 cat "$MNT/fifo")" = through ]
	mknod "$MNT/null" c 1 3
	[ -c "$MNT/null" ]
	[ "$(stat -c '%t,%T' "$MNT/null")" = "1,3" ]
	# a regular file made with mknod gets its header
	"$PY" -c 'import os,stat,sys; os.mknod(sys.argv[1], 0o600 | stat.S_IFREG)' "$MNT/reg"
	[ "$(stat -c %s "$BACK/reg")" -eq 32 ]
	echo hi >> "$MNT/reg"
	[ "$(cat "$MNT/reg")" = hi ]
}

@test "chmod and chown, modes exactly as asked" {
	"$PY" -c '
import os, sys
os.umask(0)
fd = os.open(sys.argv[1] + "/m", os.O_CREAT | os.O_WRONLY, 0o4751)
os.close(fd)
os.mkdir(sys.argv[1] + "/dm", 0o1777)
' "$MNT"
	[ "$(stat -c %a "$MNT/m")" = 4751 ]
	[ "$(stat -c %a "$BACK/m")" = 4751 ]
	[ "$(stat -c %a "$MNT/dm")" = 1777 ]
	chmod 0 "$MNT/m"
	[ "$(stat -c %a "$MNT/m")" = 0 ]
	chmod 2755 "$MNT/m"
	[ "$(stat -c %a "$MNT/m")" = 2755 ]
	chown 1234:5678 "$MNT/m"
	[ "$(stat -c %u:%g "$MNT/m")" = 1234:5678 ]
	[ "$(stat -c %u:%g "$BACK/m")" = 1234:5678 ]
	ln -s m "$MNT/lm"
	chown -h 42:43 "$MNT/lm"
	[ "$(stat -c %u:%g "$MNT/lm")" = 42:43 ]
	[ "$(stat -c %u:%g "$MNT/m")" = 1234:5678 ]
	# chmod through an open descriptor
	"$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fchmod(fd, 0o640)
os.close(fd)
' "$MNT/m"
	[ "$(stat -c %a "$MNT/m")" = 640 ]
}

@test "timestamps: nanoseconds, UTIME_OMIT, symlinks, getattr changes nothing" {
	echo x > "$MNT/f"
	touch -d '2020-01-02 03:04:05.123456789' "$MNT/f"
	[ "$(stat -c %y "$MNT/f")" = "2020-01-02 03:04:05.123456789 +0000" ] ||
		[ "$(TZ=UTC stat -c %y "$MNT/f")" = "2020-01-02 03:04:05.123456789 +0000" ]
	[ "$(stat -c %Y.%X "$MNT/f")" = "$(stat -c %Y.%X "$BACK/f")" ]
	# UTIME_OMIT on atime keeps it; mtime set exactly
	"$PY" -c '
import os, sys, ctypes
p = sys.argv[1]
before = os.stat(p)
os.utime(p, ns=(before.st_atime_ns, 1500000000987654321))
st = os.stat(p)
assert st.st_mtime_ns == 1500000000987654321, st.st_mtime_ns
assert st.st_atime_ns == before.st_atime_ns
# utimensat with UTIME_OMIT for mtime
class TS(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
UTIME_OMIT = (1 << 30) - 2
UTIME_NOW = (1 << 30) - 1
libc = ctypes.CDLL(None, use_errno=True)
ts = (TS * 2)(TS(1000, 5), TS(0, UTIME_OMIT))
assert libc.utimensat(-100, p.encode(), ts, 0) == 0
st = os.stat(p)
assert st.st_atime_ns == 1000 * 10**9 + 5, st.st_atime_ns
assert st.st_mtime_ns == 1500000000987654321
ts = (TS * 2)(TS(0, UTIME_OMIT), TS(0, UTIME_NOW))
assert libc.utimensat(-100, p.encode(), ts, 0) == 0
st = os.stat(p)
assert st.st_atime_ns == 1000 * 10**9 + 5
assert st.st_mtime_ns > 1600000000 * 10**9
' "$MNT/f"
	# touch -h sets the link's own time, not the target's
	ln -s f "$MNT/l"
	tgt=$(stat -c %Y "$MNT/f")
	touch -h -d '2001-01-01 00:00:00.5' "$MNT/l"
	[ "$(stat -c %Y "$MNT/l")" = "$(date -d '2001-01-01 00:00:00' +%s)" ]
	[ "$(stat -c %Y "$MNT/f")" = "$tgt" ]
	# stat and ls do not change any time
	touch -d '2019-05-05 05:05:05.5' "$MNT/f"
	before=$(stat -c '%X %Y %Z' "$BACK/f")
	sleep 1.1
	stat "$MNT/f" > /dev/null
	ls -l "$MNT" > /dev/null
	[ "$(stat -c '%X %Y %Z' "$BACK/f")" = "$before" ]
	# a write updates mtime
	echo more >> "$MNT/f"
	[ "$(stat -c %Y "$MNT/f")" -gt "$(date -d '2019-05-06' +%s)" ]
}

@test "extended attributes pass through" {
	echo x > "$MNT/f"
	mkdir "$MNT/d"
	setfattr -n user.color -v blue "$MNT/f"
	setfattr -n user.empty "$MNT/f"
	setfattr -n user.dir -v yes "$MNT/d"
	[ "$(getfattr --only-values -n user.color "$MNT/f")" = blue ]
	[ "$(getfattr --only-values -n user.color "$BACK/f")" = blue ]
	run getfattr -d "$MNT/f"
	[[ "$output" == *'user.color="blue"'* ]]
	[[ "$output" == *'user.empty'* ]]
	[ "$(getfattr --only-values -n user.dir "$MNT/d")" = yes ]
	setfattr -x user.color "$MNT/f"
	run getfattr -n user.color "$MNT/f"
	[ "$status" -ne 0 ]
	# XATTR_CREATE / XATTR_REPLACE
	[ "$(errno_of "os.setxattr('$MNT/f', 'user.empty', b'v', os.XATTR_CREATE)")" = EEXIST ]
	[ "$(errno_of "os.setxattr('$MNT/f', 'user.nope', b'v', os.XATTR_REPLACE)")" = ENODATA ]
	[ "$(errno_of "os.removexattr('$MNT/f', 'user.nope')")" = ENODATA ]
	# on the root, in a subdirectory, and on a symlink itself (not its target)
	setfattr -n user.top -v root "$MNT"
	[ "$(getfattr --only-values -n user.top "$MNT")" = root ]
	echo y > "$MNT/d/g"
	setfattr -n user.deep -v 1 "$MNT/d/g"
	[ "$(getfattr --only-values -n user.deep "$MNT/d/g")" = 1 ]
	ln -s f "$MNT/l"
	setfattr -h -n trusted.link -v own "$MNT/l"
	[ "$(getfattr -h --only-values -n trusted.link "$MNT/l")" = own ]
	run getfattr -n trusted.link "$MNT/f"
	[ "$status" -ne 0 ]
	run getfattr -h -d -m trusted "$MNT/l"
	[[ "$output" == *'trusted.link="own"'* ]]
	# a large value
	v=$(head -c 3000 /dev/zero | tr '\0' v)
	setfattr -n user.big -v "$v" "$MNT/f"
	[ "$(getfattr --only-values -n user.big "$MNT/f")" = "$v" ]
}

@test "xattrs and metadata of an open file go through its handle, never another file's" {
	# Reads and changes of an open file's xattrs, mode and times use one
	# of its open handles (a real fd).  Handles of this file and of
	# another one open and close all the time, so a descriptor used after
	# its handle closed would soon name the other file (the fd number is
	# reused at once) and show its value.
	echo x > "$MNT/a"
	echo y > "$MNT/b"
	setfattr -n user.who -v a "$MNT/a"
	setfattr -n user.who -v b "$MNT/b"
	"$PY" - "$MNT" <<'PYEOF'
import os, sys, threading, time
mnt = sys.argv[1]
a, b = mnt + "/a", mnt + "/b"
stop = time.time() + 4
bad = []
def churn(path, flags):
    while time.time() < stop:
        fd = os.open(path, flags)
        if flags != os.O_RDONLY:
            os.pwrite(fd, b"z", 0)
        os.close(fd)
def look():
    n = 0
    while time.time() < stop:
        v = os.getxattr(a, "user.who")
        if v != b"a":
            bad.append(v)
        if "user.who" not in os.listxattr(a):
            bad.append("list")
        os.setxattr(a, "user.n", str(n).encode())
        if os.getxattr(a, "user.n") != str(n).encode():
            bad.append("n")
        os.chmod(a, 0o600 | (n & 0o44))
        if os.stat(a).st_mode & 0o777 != 0o600 | (n & 0o44):
            bad.append("mode")
        n += 1
    if os.getxattr(b, "user.who") != b"b":
        bad.append("b")
ts = [threading.Thread(target=churn, args=(a, os.O_RDWR)),
      threading.Thread(target=churn, args=(a, os.O_RDONLY)),
      threading.Thread(target=churn, args=(b, os.O_RDWR)),
      threading.Thread(target=churn, args=(b, os.O_RDONLY)),
      threading.Thread(target=look)]
for t in ts: t.start()
for t in ts: t.join()
assert not bad, bad[:5]
PYEOF
	[ "$(getfattr --only-values -n user.who "$BACK/a")" = a ]
	[ "$(getfattr --only-values -n user.who "$BACK/b")" = b ]
	[ -z "$(getfattr --only-values -n user.n "$BACK/b" 2>/dev/null)" ]
	[ "$(stat -c %a "$BACK/b")" = 644 ]

	# while the file is open the daemon resolves no /proc/self/fd path
	# for it; once it is closed, it does
	command -v strace >/dev/null || skip "strace is not installed"
	local pid sp i
	pid=$(rk_daemon_pid)
	strace -f -e trace=getxattr,fgetxattr,setxattr,fsetxattr -p "$pid" -o "$RK_TMP/st" 2>/dev/null &
	sp=$!
	for i in $(seq 1 100); do
		grep -q "TracerPid:[[:space:]]*[1-9]" "/proc/$pid/status" && break
		sleep 0.05
	done
	sleep 0.3
	"$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
assert os.getxattr(sys.argv[1], "user.who") == b"a"
os.setxattr(sys.argv[1], "user.open", b"1")
os.close(fd)
' "$MNT/a"
	getfattr -n user.open "$MNT/a" >/dev/null
	sleep 0.2
	kill -INT "$sp"
	wait "$sp" || true
	cat "$RK_TMP/st"
	grep -q 'fgetxattr(.*"user.who"' "$RK_TMP/st"
	grep -q 'fsetxattr(.*"user.open"' "$RK_TMP/st"
	! grep -q '[^f]getxattr(.*"user.who"' "$RK_TMP/st"
	grep -q '[^f]getxattr("/proc/self/fd/[0-9]*", "user.open"' "$RK_TMP/st"
}

@test "ACLs and SELinux labels are not supported, and left out of listings" {
	echo x > "$MNT/f"
	mkdir "$MNT/d"
	# (a default ACL on a file is the kernel's business: it refuses or
	# ignores it before asking the filesystem)
	for what in f:system.posix_acl_access f:security.selinux \
		d:system.posix_acl_access d:system.posix_acl_default d:security.selinux; do
		obj=${what%%:*} name=${what#*:}
		{
			run errno_of "os.getxattr('$MNT/$obj', '$name')"
			[[ "$output" == EOPNOTSUPP || "$output" == ENOTSUP ]]
			run errno_of "os.setxattr('$MNT/$obj', '$name', b'\x02\x00\x00\x00', 0)"
			[[ "$output" == EOPNOTSUPP || "$output" == ENOTSUP ]]
			run errno_of "os.removexattr('$MNT/$obj', '$name')"
			[[ "$output" == EOPNOTSUPP || "$output" == ENOTSUP ]]
		}
	done
	# a label or an ACL put on the backing file directly is not shown,
	# and the size a listing asks for first matches the list
	setfattr -n security.selinux -v label "$BACK/f"
	setfattr -n user.kept -v 1 "$BACK/f"
	"$PY" -c '
import os, struct, sys
e = lambda tag, perm, id: struct.pack("<HHI", tag, perm, id)
acl = struct.pack("<I", 2) + e(1, 6, 0xffffffff) + e(2, 4, 65534) + \
    e(4, 4, 0xffffffff) + e(0x10, 4, 0xffffffff) + e(0x20, 4, 0xffffffff)
os.setxattr(sys.argv[1], "system.posix_acl_access", acl)
' "$BACK/f"
	getfattr -d -m - "$BACK/f" | grep -q posix_acl_access
	[ "$("$PY" -c "import os; print(os.listxattr('$MNT/f'))")" = "['user.kept']" ]
	[ "$("$PY" -c "
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
n = libc.listxattr(b'$MNT/f', None, 0)
buf = ctypes.create_string_buffer(n)
print(n, libc.listxattr(b'$MNT/f', buf, n), buf.raw)
")" = "10 10 b'user.kept\x00'" ]
	# only what is supported goes on
	setfattr -n user.a -v 1 "$MNT/d"
	[ "$(getfattr --only-values -n user.a "$MNT/d")" = 1 ]
}

@test "ls -l asks a filesystem once, not every file, for ACLs and labels" {
	command -v strace >/dev/null || skip "strace is not installed"
	mkdir "$MNT/d"
	for i in $(seq 1 40); do echo "$i" > "$MNT/d/f$i"; done
	strace -f -c -e trace=getxattr,lgetxattr -o "$RK_TMP/ls.strace" ls -l "$MNT/d" >/dev/null
	cat "$RK_TMP/ls.strace"
	calls=$(awk '$NF ~ /getxattr$/ { n += $4 } END { print n + 0 }' "$RK_TMP/ls.strace")
	[ "$calls" -le 4 ]
}

@test "truncate and ftruncate shrink and grow; O_TRUNC moves to the primary" {
	head -c 10000 /dev/urandom > "$RK_TMP/src"
	cp "$RK_TMP/src" "$MNT/f"
	truncate -s 5000 "$MNT/f"
	cmp <(head -c 5000 "$RK_TMP/src") "$MNT/f"
	truncate -s 9000 "$MNT/f"
	[ "$(stat -c %s "$MNT/f")" -eq 9000 ]
	cmp <(head -c 5000 "$RK_TMP/src"; head -c 4000 /dev/zero) "$MNT/f"
	"$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.ftruncate(fd, 4096)
assert os.fstat(fd).st_size == 4096
os.ftruncate(fd, 4097)
assert os.pread(fd, 10, 4090) == sys.stdin.buffer.read()[4090:4096] + b"\0"
os.close(fd)
' "$MNT/f" < "$RK_TMP/src"
	echo new > "$MNT/f"
	[ "$(cat "$MNT/f")" = new ]
	truncate -s 0 "$MNT/f"
	[ "$(stat -c %s "$BACK/f")" -eq 32 ]
}

@test "fallocate: mode 0 grows, KEEP_SIZE keeps, punch is refused" {
	echo abc > "$MNT/f"
	fallocate -l 1M "$MNT/f"
	[ "$(stat -c %s "$MNT/f")" -eq 1048576 ]
	[ "$(head -c 3 "$MNT/f")" = abc ]
	[ "$(tail -c +5 "$MNT/f" | tr -d '\0' | wc -c)" -eq 0 ]
	# backing space is reserved
	[ "$(stat -c %b "$BACK/f")" -ge 2048 ]
	fallocate -n -o 0 -l 4M "$MNT/f"
	[ "$(stat -c %s "$MNT/f")" -eq 1048576 ]
	run fallocate -p -o 0 -l 4096 "$MNT/f"
	[ "$status" -ne 0 ]
	[[ "$output" == *"unsupported"* ]]
	run fallocate -z -o 0 -l 4096 "$MNT/f"
	[ "$status" -ne 0 ]
	[ "$(head -c 3 "$MNT/f")" = abc ]
}

@test "statfs comes from the backing filesystem; access() works" {
	run stat -f -c '%b %S' "$MNT"
	[ "$status" -eq 0 ]
	[ "$output" = "$(stat -f -c '%b %S' "$BACK")" ]
	echo x > "$MNT/f"
	chmod 600 "$MNT/f"
	[ "$(errno_of "assert os.access('$MNT/f', os.R_OK | os.W_OK)")" = OK ]
	[ "$(errno_of "assert not os.access('$MNT/f', os.X_OK)")" = OK ]
	[ "$(errno_of "assert not os.access('$MNT/none', os.F_OK)")" = OK ]
}

@test "fsync and fdatasync succeed; data is durable in the backing file" {
	"$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"x" * 5000)
os.fsync(fd)
os.fdatasync(fd)
os.close(fd)
d = os.open(sys.argv[2], os.O_RDONLY)
os.fsync(d)
os.close(d)
' "$MNT/f" "$MNT"
	[ "$(stat -c %s "$BACK/f")" -eq $((32 + 4136 + 904 + 40)) ]
}

@test "read-only mount refuses writes and records nothing" {
	echo keep > "$MNT/f"
	rk_unmount
	cp "$BACK/.rekeyfs.conf" "$RK_TMP/meta.before"
	rk_keyring "$RK_TMP/kr2" "" 1
	# same generation 1 key as before, plus a new primary 2
	{ cat "$KR"; printf '\n[generation 2]\nstate = enabled\nkey = %s\n' "$(rk_genkey)"; } > "$RK_TMP/kr2"
	chmod 600 "$RK_TMP/kr2"
	rk_mount_at "$BACK" "$MNT" --keyring "$RK_TMP/kr2" -o ro
	[ "$(cat "$MNT/f")" = keep ]
	run touch "$MNT/new"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Read-only"* ]]
	cmp "$RK_TMP/meta.before" "$BACK/.rekeyfs.conf"
}

@test "nsx: threads renaming, moving and removing directories while others work in them" {
	local seed secs=3
	seed=$(od -An -tu4 -N4 /dev/urandom | tr -d ' ')
	[ "${REKEYFS_STRESS:-0}" = 1 ] && secs=30
	run "$PY" "$BATS_TEST_DIRNAME/../prog/nsx.py" "$MNT" "$BACK" "$seed" "$secs" 4
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"nsx: seed $seed"* ]]
}
