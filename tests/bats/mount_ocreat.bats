#!/usr/bin/env bats
# open() with O_CREAT and every access mode, with and without O_EXCL and
# O_TRUNC, on a new name and on an existing file with content, as root and
# as another user: the result (descriptor or errno), what a write and a
# read through the descriptor do, and the file's size, mode and content
# afterwards are exactly what a plain directory gives.

load helpers

PY=/usr/bin/python3

setup() {
	rk_setup
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	getent group nogroup >/dev/null || skip "no group nogroup"
	rk_keyring "$KR" "" 1
	rk_mount -o allow_other
	chmod 1777 "$MNT"
	PLAIN=$RK_TMP/plain
	mkdir -p "$PLAIN"
	chmod 1777 "$PLAIN"
	cat >"$RK_TMP/ocreat.py" <<'PY'
import errno, hashlib, os, sys

d = sys.argv[1]
os.umask(0o022)
acc = {"O_RDONLY": os.O_RDONLY, "O_WRONLY": os.O_WRONLY,
       "O_RDWR": os.O_RDWR}
for an, a in acc.items():
    for excl in (0, os.O_EXCL):
        for trunc in (0, os.O_TRUNC):
            for exist in (False, True):
                name = "%s-%d-%d-%d" % (an, bool(excl), bool(trunc), exist)
                p = os.path.join(d, name)
                if exist:
                    with open(p, "wb") as f:
                        f.write(b"existing content\n")
                    os.chmod(p, 0o644)
                res = []
                try:
                    fd = os.open(p, os.O_CREAT | a | excl | trunc, 0o640)
                except OSError as e:
                    res.append("open " + errno.errorcode[e.errno])
                else:
                    res.append("open ok")
                    st = os.fstat(fd)
                    res.append("fstat %o %d" % (st.st_mode, st.st_size))
                    try:
                        res.append("write %d" % os.pwrite(fd, b"XY", 4))
                    except OSError as e:
                        res.append("write " + errno.errorcode[e.errno])
                    try:
                        res.append("read %r" % os.pread(fd, 64, 0))
                    except OSError as e:
                        res.append("read " + errno.errorcode[e.errno])
                    st = os.fstat(fd)
                    res.append("fstat %o %d" % (st.st_mode, st.st_size))
                    os.close(fd)
                try:
                    st = os.stat(p)
                    with open(p, "rb") as f:
                        data = f.read()
                    res.append("stat %o %d %d %s" % (st.st_mode, st.st_size,
                               st.st_uid, hashlib.sha256(data).hexdigest()[:12]))
                except OSError as e:
                    res.append("stat " + errno.errorcode[e.errno])
                print(name + ": " + "; ".join(res))
PY
}

teardown() {
	rk_teardown
}

as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
}

# same OUT_PLAIN OUT_MOUNT: both runs agree
same() {
	if [ "$1" != "$2" ]; then
		diff <(echo "$1") <(echo "$2") >&2
		return 1
	fi
}

@test "O_CREAT matrix as root matches a plain directory" {
	local plain mnt
	mkdir "$PLAIN/r" "$MNT/r"
	plain=$("$PY" "$RK_TMP/ocreat.py" "$PLAIN/r")
	mnt=$("$PY" "$RK_TMP/ocreat.py" "$MNT/r")
	echo "$plain"
	[ "$(echo "$plain" | wc -l)" -eq 24 ]
	same "$plain" "$mnt"
}

@test "O_CREAT matrix as another user matches a plain directory" {
	local plain mnt
	as_nobody mkdir "$PLAIN/u"
	as_nobody mkdir "$MNT/u"
	plain=$(as_nobody "$PY" "$RK_TMP/ocreat.py" "$PLAIN/u")
	mnt=$(as_nobody "$PY" "$RK_TMP/ocreat.py" "$MNT/u")
	echo "$plain"
	[ "$(echo "$plain" | wc -l)" -eq 24 ]
	same "$plain" "$mnt"
	# the new files belong to the user, in the backing directory too
	[ "$(stat -c %U "$BACK/u/O_RDONLY-0-0-0")" = nobody ]
}

@test "O_CREAT matrix matches after a remount (what reached the backing files)" {
	local plain mnt
	mkdir "$PLAIN/r" "$MNT/r"
	"$PY" "$RK_TMP/ocreat.py" "$PLAIN/r" >/dev/null
	"$PY" "$RK_TMP/ocreat.py" "$MNT/r" >/dev/null
	rk_unmount
	rk_mount -o allow_other
	plain=$(cd "$PLAIN/r" && for f in *; do stat -c "%n %a %s" "$f"; sha256sum <"$f"; done)
	mnt=$(cd "$MNT/r" && for f in *; do stat -c "%n %a %s" "$f"; sha256sum <"$f"; done)
	same "$plain" "$mnt"
}
