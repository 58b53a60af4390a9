#!/usr/bin/env bats
# Depth below the mount is unlimited: in a directory chain whose path from
# the mount root is far beyond PATH_MAX (reached with chdir, one level at a
# time, as programs that walk deep trees do), every operation works as on
# a plain directory.  Names of 255 bytes work; 256 bytes is ENAMETOOLONG.

load helpers

PY=/usr/bin/python3

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
	rk_mount
	PLAIN=$RK_TMP/plain
	mkdir -p "$PLAIN"
	cat >"$RK_TMP/deep.py" <<'PY'
import errno, os, stat, sys

def step(what, fn):
    try:
        r = fn()
    except OSError as e:
        print(what, errno.errorcode[e.errno])
        return None
    print(what, "ok" if r is None else r)
    return r

os.chdir(sys.argv[1])
levels, width = 40, 200
for i in range(levels):
    name = ("%02d" % i) * (width // 2)
    try:
        os.mkdir(name)
        os.chdir(name)
    except OSError as e:
        print("chain stops at level", i, errno.errorcode[e.errno])
        sys.exit(0)
depth = levels * (width + 1)
print("depth", depth > 8000)
step("cwd below the root", lambda: len(os.getcwd()) > 8000)

def create():
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"deep data\n")
    os.close(fd)
step("create", create)
step("stat", lambda: os.stat("f").st_size)
step("read", lambda: open("f", "rb").read())
step("chmod", lambda: os.chmod("f", 0o600))
step("stat mode", lambda: oct(stat.S_IMODE(os.stat("f").st_mode)))
step("utime", lambda: os.utime("f", (1000000000, 1000000000)))
step("stat mtime", lambda: os.stat("f").st_mtime)
step("truncate", lambda: os.truncate("f", 4))
step("read after truncate", lambda: open("f", "rb").read())
step("setxattr", lambda: os.setxattr("f", "user.deep", b"v"))
step("getxattr", lambda: os.getxattr("f", "user.deep"))
step("listxattr", lambda: sorted(os.listxattr("f")))
step("rename", lambda: os.rename("f", "g"))
step("link", lambda: os.link("g", "h"))
step("nlink", lambda: os.stat("g").st_nlink)
step("symlink", lambda: os.symlink("g", "s"))
step("readlink", lambda: os.readlink("s"))
step("read through symlink", lambda: open("s", "rb").read())
step("mkfifo", lambda: os.mkfifo("p", 0o600))
step("mkdir", lambda: os.mkdir("d", 0o700))
step("rename dir", lambda: os.rename("d", "e"))
step("listdir", lambda: sorted(os.listdir(".")))
step("unlink", lambda: os.unlink("h"))
step("unlink symlink", lambda: os.unlink("s"))
step("unlink fifo", lambda: os.unlink("p"))
step("unlink last", lambda: os.unlink("g"))
step("rmdir", lambda: os.rmdir("e"))
step("listdir empty", lambda: os.listdir("."))
# climb back up, removing the chain
for i in range(levels):
    os.chdir("..")
    step("rmdir level", lambda: os.rmdir(("%02d" % (levels - 1 - i)) * (width // 2)))
step("chain gone", lambda: os.listdir("."))
PY
	cat >"$RK_TMP/names.py" <<'PY'
import errno, os, sys

def step(what, fn):
    try:
        r = fn()
    except OSError as e:
        print(what, errno.errorcode[e.errno])
        return
    print(what, "ok" if r is None else r)

os.chdir(sys.argv[1])
n255, n256 = "a" * 255, "b" * 256
step("create 255", lambda: os.close(os.open(n255, os.O_CREAT | os.O_WRONLY, 0o644)))
step("stat 255", lambda: os.stat(n255).st_size)
step("mkdir 255", lambda: os.mkdir("d" * 255))
step("symlink 255", lambda: os.symlink(n255, "s" * 255))
step("rename to 255", lambda: os.rename(n255, "c" * 255))
step("listdir", lambda: sorted(len(n) for n in os.listdir(".")))
step("create 256", lambda: os.close(os.open(n256, os.O_CREAT | os.O_WRONLY, 0o644)))
step("stat 256", lambda: os.stat(n256))
step("mkdir 256", lambda: os.mkdir(n256))
step("symlink 256", lambda: os.symlink("x", n256))
step("rename to 256", lambda: os.rename("c" * 255, n256))
step("link to 256", lambda: os.link("c" * 255, n256))
PY
}

teardown() {
	rk_teardown
}

same() {
	if [ "$1" != "$2" ]; then
		diff <(echo "$1") <(echo "$2") >&2
		return 1
	fi
}

@test "a chain far beyond PATH_MAX below the mount works as on a plain directory" {
	local plain mnt
	plain=$("$PY" "$RK_TMP/deep.py" "$PLAIN")
	echo "$plain"
	# the plain run did everything
	! echo "$plain" | grep -E ' E[A-Z]+$'
	mnt=$("$PY" "$RK_TMP/deep.py" "$MNT")
	same "$plain" "$mnt"
	[ -z "$(ls -A "$BACK" | grep -v '^\.rekeyfs')" ]
}

@test "a file at the bottom of a deep chain survives a remount" {
	"$PY" - "$MNT" <<'PY'
import os, sys
os.chdir(sys.argv[1])
for i in range(30):
    os.mkdir("x" * 250)
    os.chdir("x" * 250)
with open("f", "w") as f:
    f.write("bottom\n")
PY
	rk_unmount
	rk_mount
	run "$PY" - "$MNT" <<'PY'
import os, sys
os.chdir(sys.argv[1])
for i in range(30):
    os.chdir("x" * 250)
print(open("f").read(), end="")
print(os.stat("f").st_size)
PY
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "$(printf 'bottom\n7')" ]
}

@test "names of 255 bytes work, 256 bytes give ENAMETOOLONG" {
	local plain mnt
	plain=$("$PY" "$RK_TMP/names.py" "$PLAIN")
	echo "$plain"
	[ "$(echo "$plain" | grep -c ENAMETOOLONG)" -eq 6 ]
	mnt=$("$PY" "$RK_TMP/names.py" "$MNT")
	same "$plain" "$mnt"
}
