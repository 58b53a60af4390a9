#!/usr/bin/env python3
"""Namespace exerciser: threads make, fill, rename, move and remove
directories and files in a rekeyfs mount at once, each keeping a model of
its own subtree, then compare every model with the backing tree.

  nsx.py MNT BACKING SEED SECONDS [THREADS]

Directory renames and removals race with work in other directories (the
daemon keeps directory fds open for its rekey-protocol locks); any change
that lands in the wrong backing directory shows up as a difference.

A file unlinked before its last close is still open in the daemon for a
moment (the kernel sends RELEASE asynchronously), and libfuse keeps it as
a .fuse_hidden* name until then: such names are waited for, not counted.
"""

import os
import random
import sys
import threading
import time

HIDDEN = ".fuse_hidden"


def listing(path):
    return [n for n in os.listdir(path) if not n.startswith(HIDDEN)]


def rmdir(path, back):
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except OSError as e:
            # only hidden (still-open) files left: wait for their release
            if e.errno != 39 or listing(back):
                raise
            time.sleep(0.02)
    os.rmdir(path)


def worker(w, mnt, back, seed, secs, errors):
    rnd = random.Random(seed * 1000 + w)
    root = "w%d" % w
    os.mkdir(os.path.join(mnt, root))
    model = {"": set()}  # directory below root -> its files
    step = 0
    end = time.monotonic() + secs

    def m(*p):
        return os.path.join(mnt, root, *p)

    def b(*p):
        return os.path.join(back, root, *p)

    while time.monotonic() < end:
        step += 1
        dirs = sorted(model)
        d = rnd.choice(dirs)
        r = rnd.random()
        try:
            if r < 0.2 and len(dirs) < 12:
                nd = os.path.join(d, "d%d" % step)
                os.mkdir(m(nd))
                model[nd] = set()
            elif r < 0.5:
                f = "f%d" % step
                fd = os.open(m(d, f), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                os.write(fd, f.encode())
                os.close(fd)
                model[d].add(f)
            elif r < 0.65 and model[d]:
                f = rnd.choice(sorted(model[d]))
                os.unlink(m(d, f))
                model[d].discard(f)
            elif r < 0.85 and d:
                # move d (with its subtree) under a directory outside it
                out = [x for x in dirs if x != d and not x.startswith(d + "/")]
                nd = os.path.join(rnd.choice(out), "r%d" % step)
                os.rename(m(d), m(nd))
                for x in [x for x in dirs if x == d or x.startswith(d + "/")]:
                    model[nd + x[len(d):]] = model.pop(x)
            elif r < 0.95 and d and not model[d] and \
                    not any(x.startswith(d + "/") for x in dirs):
                rmdir(m(d), b(d))
                del model[d]
            elif model[d]:
                f = rnd.choice(sorted(model[d]))
                t = rnd.choice(dirs)
                nf = "m%d" % step
                os.rename(m(d, f), m(t, nf))
                model[d].discard(f)
                model[t].add(nf)
        except OSError as e:
            errors.append("thread %d step %d: %s" % (w, step, e))
            return

    # released files leave their hidden names within a moment
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(n.startswith(HIDDEN) for d in model for n in os.listdir(b(d))):
            break
        time.sleep(0.05)
    found = {}
    for path, subdirs, files in os.walk(b()):
        rel = os.path.relpath(path, b())
        found["" if rel == "." else rel] = set(files)
    if found != model:
        for d in sorted(set(found) | set(model)):
            if found.get(d) != model.get(d):
                errors.append("thread %d, %s: backing %s, expected %s" % (
                    w, d or ".", sorted(found.get(d, ["<none>"]))[:6],
                    sorted(model.get(d, ["<none>"]))[:6]))
    for d, files in model.items():
        for f in files:
            with open(m(d, f)) as fh:
                if fh.read() != "f" + f[1:] and not f.startswith("m"):
                    errors.append("thread %d: %s/%s: wrong content" % (w, d, f))


def main():
    mnt, back, seed, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    print("nsx: seed %d, %d threads, %.0f s" % (seed, n, secs))
    errors = []
    threads = [threading.Thread(target=worker, args=(w, mnt, back, seed, secs, errors))
               for w in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print(e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
