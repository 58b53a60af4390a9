#!/usr/bin/env bats
# rekeyfs mount: data round trips, sparse files, headers, directories,
# names, concurrency, mmap and descriptor hygiene.

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

# backing size for a plaintext size
csize() {
	local p=$1
	if [ "$p" -eq 0 ]; then echo 32; return; fi
	local full=$((p / 4096)) rem=$((p % 4096))
	local s=$((32 + full * 4136))
	[ "$rem" -gt 0 ] && s=$((s + rem + 40))
	echo "$s"
}

@test "round trips of empty and boundary-sized files" {
	local n
	for n in 0 1 4095 4096 4097 8192 12289 1048576 1048577; do
		head -c "$n" /dev/urandom > "$RK_TMP/src.$n"
		cp "$RK_TMP/src.$n" "$MNT/f.$n"
	done
	# drop the kernel's cache of the mount: remount
	rk_unmount
	rk_mount
	for n in 0 1 4095 4096 4097 8192 12289 1048576 1048577; do
		cmp "$RK_TMP/src.$n" "$MNT/f.$n"
		[ "$(stat -c %s "$MNT/f.$n")" -eq "$n" ]
		[ "$(stat -c %s "$BACK/f.$n")" -eq "$(csize "$n")" ]
		# the plaintext is not in the backing file
		if [ "$n" -ge 4096 ]; then
			! cmp -s <(head -c 64 "$RK_TMP/src.$n") <(tail -c +33 "$BACK/f.$n" | head -c 64) || false
		fi
	done
}

@test "an empty new file is a header alone" {
	touch "$MNT/empty"
	[ "$(stat -c %s "$BACK/empty")" -eq 32 ]
	[ "$(head -c 6 "$BACK/empty")" = RKEYFS ]
	[ "$(stat -c %s "$MNT/empty")" -eq 0 ]
}

@test "a 20 MiB file round-trips (checksum)" {
	head -c $((20 * 1024 * 1024)) /dev/urandom > "$RK_TMP/big"
	want=$(sha256sum < "$RK_TMP/big")
	dd if="$RK_TMP/big" of="$MNT/big" bs=1M status=none
	rk_unmount
	rk_mount
	[ "$(sha256sum < "$MNT/big")" = "$want" ]
	# partial overwrite in the middle, across block boundaries
	printf 'XYZ' | dd of="$MNT/big" bs=1 seek=4095 conv=notrunc status=none
	printf 'XYZ' | dd of="$RK_TMP/big" bs=1 seek=4095 conv=notrunc status=none
	cmp "$RK_TMP/big" "$MNT/big"
}

@test "as root the mount reads ahead 4 MiB, so sequential reads keep several requests in flight" {
	# The INIT reply's max_readahead caps what the daemon set before it.
	[ "$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb")" = 4096 ]
}

@test "sparse files stay sparse and read as zeros" {
	truncate -s 100M "$MNT/sparse"
	printf 'end' >> "$MNT/sparse"
	[ "$(stat -c %s "$MNT/sparse")" -eq $((100 * 1024 * 1024 + 3)) ]
	# backing allocation stays tiny
	[ "$(du -k "$BACK/sparse" | cut -f1)" -lt 256 ]
	[ "$(stat -c %b "$BACK/sparse")" -lt 512 ]
	# a hole reads as zeros
	[ "$(dd if="$MNT/sparse" bs=4096 skip=1000 count=1 status=none | tr -d '\0' | wc -c)" -eq 0 ]
	[ "$(tail -c 3 "$MNT/sparse")" = end ]
	# a write in the middle of a hole
	printf 'mid' | dd of="$MNT/sparse" bs=1 seek=50000000 conv=notrunc status=none
	[ "$(dd if="$MNT/sparse" bs=1 skip=50000000 count=3 status=none)" = mid ]
	[ "$(stat -c %b "$BACK/sparse")" -lt 512 ]
}

@test "SEEK_DATA and SEEK_HOLE see the holes" {
	truncate -s 10M "$MNT/s"
	printf 'x' | dd of="$MNT/s" bs=1 seek=5000000 conv=notrunc status=none
	run "$PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
d = os.lseek(fd, 0, os.SEEK_DATA)
h = os.lseek(fd, d, os.SEEK_HOLE)
print(d, h)
' "$MNT/s"
	[ "$status" -eq 0 ]
	read -r d h <<< "$output"
	# the first data is the block holding offset 5000000
	[ "$d" -le 5000000 ] && [ "$d" -gt 4000000 ]
	[ "$h" -gt 5000000 ]
}

@test "backing header shows the primary generation" {
	echo data > "$MNT/f"
	[ "$(rk_header_gen "$BACK/f")" -eq 1 ]
	[ "$(head -c 6 "$BACK/f")" = RKEYFS ]
}

@test "directories: mkdir, nested files, rmdir, large directory listing" {
	mkdir -p "$MNT/a/b/c"
	echo x > "$MNT/a/b/c/f"
	[ "$(cat "$MNT/a/b/c/f")" = x ]
	run rmdir "$MNT/a/b"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not empty"* ]]
	rm "$MNT/a/b/c/f"
	rmdir "$MNT/a/b/c" "$MNT/a/b"
	[ ! -e "$MNT/a/b" ]
	mkdir "$MNT/big"
	(cd "$MNT/big" && seq -f 'file-%05g' 1 3000 | xargs touch)
	[ "$(ls -1 "$MNT/big" | wc -l)" -eq 3000 ]
	[ "$(ls -1a "$MNT/big" | wc -l)" -eq 3002 ]
	[ "$(find "$MNT/big" -type f | wc -l)" -eq 3000 ]
}

@test "long names (255 bytes) and a deep path near PATH_MAX" {
	name=$(printf 'n%.0s' $(seq 1 255))
	echo long > "$MNT/$name"
	[ "$(cat "$MNT/$name")" = long ]
	run touch "$MNT/${name}x"
	[ "$status" -ne 0 ]
	[[ "$output" == *"File name too long"* ]]
	# 60 levels of 60-byte names: about 3700 bytes of path
	comp=$(printf 'd%.0s' $(seq 1 60))
	"$PY" - "$MNT" "$comp" <<'EOF'
import os, sys
root, comp = sys.argv[1], sys.argv[2]
fd = os.open(root, os.O_RDONLY)
for i in range(60):
    os.mkdir(comp, dir_fd=fd)
    nfd = os.open(comp, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
f = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
os.write(f, b"deep")
os.close(f)
path = root + ("/" + comp) * 60 + "/leaf"
assert len(path) > 3600, len(path)
with open(path, "rb") as fh:
    assert fh.read() == b"deep"
EOF
}

@test "reserved names are hidden and refused" {
	[ -e "$BACK/.rekeyfs.conf" ]
	run ls -A "$MNT"
	[ "$status" -eq 0 ]
	[[ "$output" != *rekeyfs* ]]
	run stat "$MNT/.rekeyfs.conf"
	[ "$status" -ne 0 ]
	[[ "$output" == *"No such file"* ]]
	run touch "$MNT/.rekeyfs-tmp.abc"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Operation not permitted"* ]]
	run mkdir "$MNT/.rekeyfs.x"
	[[ "$output" == *"Operation not permitted"* ]]
	echo a > "$MNT/plain"
	run mv "$MNT/plain" "$MNT/.rekeyfs-tmp.x"
	[[ "$output" == *"Operation not permitted"* ]]
	run ln "$MNT/plain" "$MNT/.rekeyfs.lock"
	[[ "$output" == *"Operation not permitted"* ]]
	run ln -s plain "$MNT/.rekeyfsz"
	[[ "$output" == *"Operation not permitted"* ]]
	# in subdirectories too
	mkdir "$MNT/sub"
	: > "$BACK/sub/.rekeyfs-tmp.stale"
	[ "$(ls -A "$MNT/sub" | wc -l)" -eq 0 ]
	[ ! -e "$BACK/.rekeyfs-tmp.abc" ]
}

@test "O_APPEND from two handles never overwrites" {
	"$PY" - "$MNT/log" <<'EOF'
import os, sys
p = sys.argv[1]
a = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
b = os.open(p, os.O_WRONLY | os.O_APPEND)
for i in range(200):
    os.write(a, b"A" * 3000)
    os.write(b, b"B" * 5000)
os.close(a); os.close(b)
EOF
	[ "$(stat -c %s "$MNT/log")" -eq $((200 * 8000)) ]
	[ "$(tr -cd A < "$MNT/log" | wc -c)" -eq $((200 * 3000)) ]
	[ "$(tr -cd B < "$MNT/log" | wc -c)" -eq $((200 * 5000)) ]
}

@test "concurrent writers to one file do not corrupt blocks" {
	# 4 processes write disjoint 10000-byte stripes (unaligned), 2 more
	# write the same overlapping range with the same bytes
	"$PY" - "$MNT/shared" "$RK_TMP/expect" <<'EOF'
import os, sys
p, exp = sys.argv[1], sys.argv[2]
size = 4 * 10000 * 20
open(p, "wb").close()
pids = []
for w in range(6):
    pid = os.fork()
    if pid == 0:
        fd = os.open(p, os.O_WRONLY)
        for r in range(20):
            if w < 4:
                off = (r * 4 + w) * 10000
                os.pwrite(fd, bytes([65 + w]) * 10000, off)
            else:
                os.pwrite(fd, b"Z" * 7777, 123456)
        os.close(fd)
        os._exit(0)
    pids.append(pid)
for pid in pids:
    _, st = os.waitpid(pid, 0)
    assert st == 0
buf = bytearray(size)
for r in range(20):
    for w in range(4):
        off = (r * 4 + w) * 10000
        buf[off:off + 10000] = bytes([65 + w]) * 10000
with open(exp, "wb") as f:
    f.write(buf)
EOF
	# the overlap region is either the stripes or the Zs, block by block:
	# compare everything outside it, then check the region is well formed
	rk_unmount
	rk_mount
	cmp <(head -c 123456 "$MNT/shared") <(head -c 123456 "$RK_TMP/expect")
	cmp <(tail -c +$((123456 + 7777 + 1)) "$MNT/shared") <(tail -c +$((123456 + 7777 + 1)) "$RK_TMP/expect")
	# every byte of the file reads (no block fails authentication)
	[ "$(wc -c < "$MNT/shared")" -eq 800000 ]
	! grep -q "fails authentication" "$LOG" || false
}

@test "concurrent writers: interleaved pwrite of many sizes matches a model" {
	"$PY" - "$MNT/m" <<'EOF'
import os, sys, random, threading
p = sys.argv[1]
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
size = 300000
os.ftruncate(fd, size)
def worker(w):
    f = os.open(p, os.O_RDWR)
    rnd = random.Random(w)
    for i in range(150):
        # each thread owns offsets congruent to w modulo 8 KiB stripes
        stripe = rnd.randrange(size // 8192 // 4) * 4 + w
        off = stripe * 8192 + rnd.randrange(4000)
        ln = rnd.randrange(1, 4192)
        os.pwrite(f, bytes([97 + w]) * ln, off)
    os.close(f)
ts = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
data = os.pread(fd, size + 10, 0)
assert len(data) == size, len(data)
# each stripe holds only its owner's letter or zeros
for s in range(size // 8192):
    chunk = data[s * 8192:(s + 1) * 8192]
    allowed = {0, 97 + s % 4}
    assert set(chunk) <= allowed, (s, set(chunk))
EOF
}

@test "mmap writes are read back through read()" {
	"$PY" - "$MNT/mm" <<'EOF'
import mmap, os, sys
p = sys.argv[1]
with open(p, "wb") as f:
    f.write(b"\0" * 20000)
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, 20000)
m[4090:4110] = b"0123456789abcdefghij"
m[0:5] = b"hello"
m.flush()
m.close()
os.close(fd)
EOF
	rk_unmount
	rk_mount
	[ "$(head -c 5 "$MNT/mm")" = hello ]
	[ "$(dd if="$MNT/mm" bs=1 skip=4090 count=20 status=none)" = 0123456789abcdefghij ]
	"$PY" -c '
import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    assert m[4090:4110] == b"0123456789abcdefghij"
' "$MNT/mm"
}

# A file made write-only is written past the page cache (one round trip
# less per new file); readers that cached it must still see every write.
@test "writes through a new file's write-only handle reach readers and maps that cached it" {
	"$PY" - "$MNT/coh" <<'EOF'
import mmap, os, sys
p = sys.argv[1]
w = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(w, b"a" * 8192)
r = os.open(p, os.O_RDONLY)
assert os.pread(r, 8192, 0) == b"a" * 8192
m = mmap.mmap(r, 8192, prot=mmap.PROT_READ)
assert m[:] == b"a" * 8192
os.pwrite(w, b"b" * 8192, 0)
assert os.pread(r, 8192, 0) == b"b" * 8192
assert m[:] == b"b" * 8192
os.pwrite(w, b"d" * 10, 4000)
assert os.pread(r, 20, 3995) == b"bbbbb" + b"d" * 10 + b"bbbbb"
assert m[3995:4015] == b"bbbbb" + b"d" * 10 + b"bbbbb"
os.pwrite(w, b"c" * 100, 8192)
assert os.fstat(r).st_size == 8292
assert os.pread(r, 9000, 0)[8192:] == b"c" * 100
# O_APPEND on a new write-only file appends at the size others see
a = os.open(p + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.write(a, b"one\n")
with open(p + ".log", "ab") as f:
    f.write(b"two\n")
os.write(a, b"three\n")
os.close(a)
with open(p + ".log", "rb") as f:
    assert f.read() == b"one\ntwo\nthree\n"
m.close()
os.close(r)
os.close(w)
EOF
	rk_unmount
	rk_mount
	[ "$(head -c 4 "$MNT/coh")" = bbbb ]
	[ "$(stat -c %s "$MNT/coh")" = 8292 ]
	[ "$(cat "$MNT/coh.log")" = "$(printf 'one\ntwo\nthree')" ]
}

# The kernel drops other handles' pages before a direct write, and from
# Linux 6.19 (or a stable kernel with that fix) after it too: pages
# faulted in while the write is on its way must not keep the old bytes.
@test "maps that fault pages in while a direct write is on its way see it right after" {
	"$PY" - "$MNT/race" <<'EOF'
import mmap, os, struct, sys, time
p = sys.argv[1]
w = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(w, struct.pack("<Q", 0) * 512)
pid = os.fork()
if pid == 0:
    # keep faulting page 0 in through a map of its own
    fd = os.open(p, os.O_RDONLY)
    m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ)
    end = time.monotonic() + 30
    while time.monotonic() < end and not os.path.exists(p + ".stop"):
        m.madvise(mmap.MADV_DONTNEED)
        m[0:8]
    os._exit(0)
r = os.open(p, os.O_RDONLY)
m = mmap.mmap(r, 4096, prot=mmap.PROT_READ)
late = stuck = 0
for i in range(1, 3001):
    os.pwrite(w, struct.pack("<Q", i), 0)
    # the range is dropped right after the write's reply
    until = time.monotonic() + 2
    while True:
        m.madvise(mmap.MADV_DONTNEED)
        if struct.unpack("<Q", m[0:8])[0] == i:
            break
        if time.monotonic() > until:
            stuck += 1
            break
        late += 1
        time.sleep(0.001)
open(p + ".stop", "w").close()
os.waitpid(pid, 0)
print("old bytes seen right after a write: %d, for good: %d" % (late, stuck), file=sys.stderr)
assert stuck == 0
EOF
}

# Many new files written directly while readers keep faulting their
# pages in: every write lands and nothing stalls.
@test "many direct writers with readers faulting the same pages never stall the mount" {
	timeout 120 "$PY" - "$MNT" 12 3 <<'EOF'
import mmap, os, struct, sys, time
d, npairs, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = os.path.join(d, "stop")
readers, writers = [], []
for k in range(npairs):
    p = os.path.join(d, "f%02d" % k)
    w = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(w, b"\0" * 65536)
    pid = os.fork()
    if pid == 0:
        m = mmap.mmap(os.open(p, os.O_RDONLY), 65536, prot=mmap.PROT_READ)
        while not os.path.exists(stop):
            m.madvise(mmap.MADV_DONTNEED)
            for off in range(0, 65536, 4096):
                m[off:off + 8]
        os._exit(0)
    readers.append(pid)
    pid = os.fork()
    if pid == 0:
        i, end = 0, time.monotonic() + secs
        while time.monotonic() < end:
            i += 1
            for off in range(0, 65536, 4096):
                os.pwrite(w, struct.pack("<Q", i), off)
        r = os.open(p, os.O_RDONLY)
        for off in range(0, 65536, 4096):
            assert os.pread(r, 8, off) == struct.pack("<Q", i), (p, off)
        os._exit(0)
    writers.append(pid)
    os.close(w)
bad = sum(os.waitpid(pid, 0)[1] != 0 for pid in writers)
open(stop, "w").close()
for pid in readers:
    os.waitpid(pid, 0)
assert bad == 0, bad
EOF
}

# A SIGTERM in the middle of direct writes and faulting readers: the
# daemon exits and nobody hangs.  (A cache drop sent by the daemon waits
# for a reader's READ, which the ending loop may never answer: see
# direct_handle().)
@test "SIGTERM while direct writers and mapped readers are busy: the daemon exits, nobody hangs" {
	local pid conn wl i
	pid=$(rk_daemon_pid)
	conn=$(stat -c %d "$MNT")
	timeout 60 "$PY" - "$MNT" 8 >/dev/null 2>&1 <<'EOF' &
import mmap, os, struct, sys, time
d, npairs = sys.argv[1], int(sys.argv[2])
for k in range(npairs):
    p = os.path.join(d, "f%02d" % k)
    w = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(w, b"\0" * 65536)
    if os.fork() == 0:
        m = mmap.mmap(os.open(p, os.O_RDONLY), 65536, prot=mmap.PROT_READ)
        while True:
            m.madvise(mmap.MADV_DONTNEED)
            for off in range(0, 65536, 4096):
                m[off:off + 8]
    if os.fork() == 0:
        i = 0
        while True:
            i += 1
            for off in range(0, 65536, 4096):
                os.pwrite(w, struct.pack("<Q", i), off)
    os.close(w)
while True:
    os.wait()
EOF
	wl=$!
	sleep 2
	kill -TERM "$pid"
	for i in $(seq 1 150); do
		[ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -le 1 ] && break
		sleep 0.1
	done
	if [ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -gt 1 ]; then
		echo "the daemon hangs: $(cat /proc/$pid/task/*/wchan 2>/dev/null | tr '\0' ' ')" >&2
		kill -KILL -- "-$wl" 2>/dev/null || true
		mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections
		echo 1 >"/sys/fs/fuse/connections/$conn/abort"
		umount /sys/fs/fuse/connections || true
		false
	fi
	# timeout leads a process group of its own: the workload, all of it
	kill -KILL -- "-$wl" 2>/dev/null || true
	wait "$wl" 2>/dev/null || true
	grep -q "unmounted $BACK from $MNT" "$LOG"
	! mountpoint -q "$MNT" || false
}

# A termination signal can land on any thread that does not block it
# (the keyring watcher does not); the daemon must end all the same, on
# an idle mount where no request would wake a worker.
@test "SIGTERM delivered to a helper thread of an idle mount ends the daemon" {
	local pid
	pid=$(rk_daemon_pid)
	"$PY" - "$pid" <<'EOF'
import ctypes, os, signal, sys, time
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
target = None
for t in sorted(os.listdir("/proc/%d/task" % pid)):
    if int(t) == pid:
        continue
    with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
        if f.read().startswith("rekeyfs-"):
            continue  # workers and sealers block it
    with open("/proc/%d/task/%s/status" % (pid, t)) as f:
        blk = [l for l in f if l.startswith("SigBlk:")][0].split()[1]
    if not int(blk, 16) & (1 << (signal.SIGTERM - 1)):
        target = int(t)
        break
assert target is not None, "no helper thread takes SIGTERM"
SYS_tgkill = 234  # x86-64
assert libc.syscall(SYS_tgkill, pid, target, signal.SIGTERM) == 0
for _ in range(100):
    if not os.path.exists("/proc/%d/task/%d" % (pid, pid)) or \
       open("/proc/%d/stat" % pid).read().split()[2] == "Z":
        break
    time.sleep(0.05)
else:
    raise SystemExit("the daemon still runs 5 s after SIGTERM")
EOF
	for i in $(seq 1 50); do
		mountpoint -q "$MNT" || break
		sleep 0.1
	done
	! mountpoint -q "$MNT" || false
	grep -q "unmounted $BACK from $MNT" "$LOG"
}

# The daemon's own request loop (src/fuse_loop.c): idle workers beyond
# what the load asks for are parked, not left on the channel, so
# requests one at a time never rotate over every thread; and workers
# started by a burst stay, so overlapping requests later start and end
# no threads.
@test "workers: requests one at a time stay on two threads, and overlapping ones start and end none" {
	local pid
	pid=$(rk_daemon_pid)
	"$PY" - "$MNT" "$pid" <<'EOF'
import errno, os, sys, threading, time
d, pid = sys.argv[1], sys.argv[2]
def workers():
    out = {}
    for t in os.listdir("/proc/%s/task" % pid):
        try:
            with open("/proc/%s/task/%s/comm" % (pid, t)) as f:
                if f.read().strip() != "rekeyfs-worker":
                    continue
            with open("/proc/%s/task/%s/schedstat" % (pid, t)) as f:
                out[t] = int(f.read().split()[2])  # times it was run
        except FileNotFoundError:
            pass
    return out
def asks(path, n):
    for _ in range(n):
        try:
            os.getxattr(path, "user.none")  # no cache: one request each
        except OSError as e:
            assert e.errno == errno.ENODATA, e
paths = []
for k in range(16):
    p = os.path.join(d, "f%02d" % k)
    open(p, "w").close()
    paths.append(p)
# a burst of 16 callers at once starts workers
ts = [threading.Thread(target=asks, args=(p, 300)) for p in paths]
[t.start() for t in ts]
[t.join() for t in ts]
time.sleep(0.2)  # the last of the burst's workers park
before = workers()
assert 3 <= len(before) <= 10, "workers after a burst: %d" % len(before)
asks(paths[0], 3000)
after = workers()
# (a parked worker woken in a rare race is allowed)
runs = sorted((after[t] - before.get(t, 0) for t in after), reverse=True)
assert sum(runs[:2]) >= 0.9 * sum(runs), "one caller's requests ran on: %s" % runs
# two callers at once: the same workers serve them, none ends or starts
for _ in range(3):
    ts = [threading.Thread(target=asks, args=(p, 2000)) for p in paths[:2]]
    [t.start() for t in ts]
    [t.join() for t in ts]
    now = workers()
    assert set(now) == set(before), "workers %s, then %s" % (sorted(before), sorted(now))
EOF
}

# While the file's maker writes past the cache, a read-write handle does
# too: no page of the file is dirty in the cache for a direct write to
# miss, so a shared writable map waits for the maker's close.
@test "a read-write open of a file its maker writes directly is direct too and keeps every write" {
	rk_unmount
	: >"$LOG"
	rk_mount -d
	local minor
	"$PY" -c 'import os,sys; os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644))' "$MNT/probe"
	minor=$(sed -n 's/.*INIT: 7\.\([0-9]*\).*/\1/p' "$LOG" | head -n 1)
	[ -n "$minor" ] || { grep -m3 INIT "$LOG" >&2; false; }
	[ "$minor" -ge 39 ] || skip "kernel FUSE protocol 7.$minor"
	"$PY" - "$MNT/rw" <<'EOF'
import errno, mmap, os, sys
p = sys.argv[1]
w = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(w, b"a" * 8192)
b = os.open(p, os.O_RDWR)
try:
    mmap.mmap(b, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    raise SystemExit("a shared writable map while the maker writes directly")
except OSError as e:
    assert e.errno == errno.ENODEV, e
priv = mmap.mmap(b, 8192, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
assert priv[:] == b"a" * 8192
os.pwrite(b, b"B" * 100, 200)
os.pwrite(w, b"A" * 100, 0)
os.pwrite(b, b"C" * 100, 4000)
os.pwrite(w, b"D" * 10, 4050)
want = b"A" * 100 + b"a" * 100 + b"B" * 100 + b"a" * 3700 + b"C" * 50 + b"D" * 10 + b"C" * 40 + b"a" * 4092
assert os.pread(b, 8192, 0) == want
priv.close()
os.close(w)
# a direct handle makes the next read-write one direct, maker or not
c = os.open(p, os.O_RDWR)
try:
    mmap.mmap(c, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    raise SystemExit("a shared map while a direct handle is open")
except OSError as e:
    assert e.errno == errno.ENODEV, e
os.close(c)
os.close(b)
# with no direct handle left, maps are shared again
c = os.open(p, os.O_RDWR)
r = os.open(p, os.O_RDONLY)
m = mmap.mmap(c, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
assert m[:] == want
m[300:310] = b"M" * 10
m.flush()
assert os.pread(r, 10, 300) == b"M" * 10
m.close()
os.close(c)
os.close(r)
EOF
	[ "$(head -c 100 "$MNT/rw")" = "$(printf 'A%.0s' $(seq 100))" ]
	[ "$(dd if="$MNT/rw" bs=1 skip=300 count=10 status=none)" = MMMMMMMMMM ]
}

@test "a new file written write-only costs no security.capability round trip" {
	rk_unmount
	: >"$LOG"
	rk_mount -d
	"$PY" -c '
import os, sys
for i in range(50):
    fd = os.open("%s/n%02d" % (sys.argv[1], i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"x" * 1024)
    os.close(fd)
' "$MNT"
	local minor asks
	# direct writes keep other handles' caches right from protocol 7.39
	minor=$(sed -n 's/.*INIT: 7\.\([0-9]*\).*/\1/p' "$LOG" | head -n 1)
	[ -n "$minor" ] || { grep -m3 INIT "$LOG" >&2; false; }
	[ "$minor" -ge 39 ] || skip "kernel FUSE protocol 7.$minor"
	asks=$(grep -c 'opcode: GETXATTR' "$LOG" || true)
	echo "getxattr $asks for 50 new files" >&2
	[ "$asks" -le 2 ]
	[ "$(cat "$MNT"/n* | wc -c)" = $((50 * 1024)) ]
}

@test "unlinked open file stays readable and writable" {
	"$PY" - "$MNT/gone" <<'EOF'
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"x" * 10000)
os.unlink(p)
assert not os.path.exists(p)
os.pwrite(fd, b"tail", 10000)
assert os.pread(fd, 4, 10000) == b"tail"
assert os.fstat(fd).st_size == 10004
os.close(fd)
EOF
	[ ! -e "$MNT/gone" ]
}

@test "the daemon does not leak descriptors" {
	pid=$(rk_daemon_pid)
	echo x > "$MNT/f"
	mkdir "$MNT/d"
	cat "$MNT/f" > /dev/null
	before=$(ls /proc/"$pid"/fd | wc -l)
	for i in $(seq 1 200); do
		echo "$i" > "$MNT/d/f$i"
		cat "$MNT/d/f$i" > /dev/null
		ls "$MNT/d" > /dev/null
		mv "$MNT/d/f$i" "$MNT/d/g$i"
		setfattr -n user.k -v v "$MNT/d/g$i" 2>/dev/null || true
		truncate -s 5 "$MNT/d/g$i"
	done
	rm -r "$MNT/d"
	after=$(ls /proc/"$pid"/fd | wc -l)
	echo "before=$before after=$after"
	[ "$after" -le "$before" ]
}

@test "a file written in small appends is not cut into one extent a write" {
	command -v filefrag >/dev/null || skip "filefrag (e2fsprogs) is not installed"
	echo x > "$BACK/probe"
	filefrag "$BACK/probe" >/dev/null 2>&1 || skip "the backing filesystem has no FIEMAP"
	rm -f "$BACK/probe"
	# 300 appends of 1000 bytes: block-unaligned, each growing the file
	# past a short final block (rewritten) or starting the block after
	# it (re-sealed), as tar and most writers do
	python3 - "$MNT/f" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(300):
    os.write(fd, bytes([i % 251]) * 1000)
os.close(fd)
PY
	sync
	filefrag "$BACK/f"
	[ "$(filefrag "$BACK/f" | awk '{ print $(NF-2) }')" -le 4 ]
	python3 -c '
import sys
d = open(sys.argv[1], "rb").read()
assert d == b"".join(bytes([i % 251]) * 1000 for i in range(300))
' "$MNT/f"
}
