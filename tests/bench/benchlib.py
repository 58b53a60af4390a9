#!/usr/bin/env python3
"""Measurement and reporting helpers for tests/bench/bench.sh.

  benchlib.py small PHASE DIR N     run one small-file phase, print files/s
  benchlib.py fio-iops JSON RW      print the IOPS of a fio JSON report
  benchlib.py mktree TAR SRC N      write a tarball of N files from SRC
  benchlib.py table TSV             print the results table (Markdown)

Every number printed is "higher is better" (MiB/s, IOPS, files/s), so the
table can compare targets row by row without caring about units.
"""

import json
import os
import shutil
import statistics
import sys
import tarfile
import time

SMALL_SIZE = 1024


def small_names(d, n):
    sub = os.path.join(d, "small")
    return sub, [os.path.join(sub, "f%05d" % i) for i in range(n)]


def small(phase, d, n):
    sub, names = small_names(d, n)
    payload = os.urandom(SMALL_SIZE)
    if phase == "create" and os.path.isdir(sub):
        # left by an earlier round that ran no delete row
        shutil.rmtree(sub)
    t0 = time.perf_counter()
    if phase == "create":
        os.makedirs(sub, exist_ok=True)
        for p in names:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, payload)
            os.close(fd)
    elif phase == "stat":
        for p in names:
            if os.stat(p).st_size != SMALL_SIZE:
                sys.exit("%s: wrong size" % p)
    elif phase == "read":
        for p in names:
            fd = os.open(p, os.O_RDONLY)
            data = os.read(fd, 2 * SMALL_SIZE)
            os.close(fd)
            if len(data) != SMALL_SIZE:
                sys.exit("%s: short read" % p)
    elif phase == "delete":
        for p in names:
            os.unlink(p)
        os.rmdir(sub)
    else:
        sys.exit("unknown phase %s" % phase)
    dt = time.perf_counter() - t0
    print("%.1f" % (n / dt))


def fio_iops(path, rw):
    with open(path) as f:
        text = f.read()
    # fio may print warnings before the JSON object.
    rep = json.loads(text[text.index("{"):])
    # one entry per job (no group_reporting): the jobs ran at once
    print("%.0f" % sum(j[rw]["iops"] for j in rep["jobs"]))


def mktree(tar_path, src, n):
    """Write a tarball of exactly n regular files taken from src.

    The first n regular files of src in path order (symlinks left out);
    when src holds fewer, numbered copies (0/, 1/, ...) of the whole list
    follow, so every machine untars the same number of files.  Files and
    directories are stored as root's, mode 0644 and 0755.  Prints a
    one-line description of the tree.
    """
    files = []
    for root, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                files.append(os.path.relpath(p, src))
    if not files:
        sys.exit("%s holds no regular files" % src)
    copies = -(-n // len(files))
    picked = []
    for c in range(copies):
        for rel in files[:n - len(picked)]:
            arc = os.path.join(str(c), rel) if copies > 1 else rel
            picked.append((arc, rel))
    dirs = set()
    total = 0
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for arc, rel in picked:
            parts = arc.split(os.sep)[:-1]
            for i in range(1, len(parts) + 1):
                d = os.sep.join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    ti.mtime = int(time.time())
                    tar.addfile(ti)
            with open(os.path.join(src, rel), "rb") as f:
                ti = tar.gettarinfo(fileobj=f, arcname=arc)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = "root"
                ti.mode = 0o644
                total += ti.size
                tar.addfile(ti, f)
    print("%d files in %d directories, %.1f MiB, from %s%s" %
          (len(picked), len(dirs), total / 1048576.0, src,
           " (%d copies of its %d files)" % (copies, len(files))
           if copies > 1 else ""))


ROWS = [
    ("seq_write", "sequential write", "MiB/s"),
    ("seq_read", "sequential read (cold)", "MiB/s"),
    ("rand_read", "random 4 KiB read", "IOPS"),
    ("rand_write", "random 4 KiB write", "IOPS"),
    ("rand_write_2j", "random 4 KiB write, 2 jobs", "IOPS"),
    ("small_create", "small files: create", "files/s"),
    ("small_stat", "small files: stat (cold)", "files/s"),
    ("small_read", "small files: read (cold)", "files/s"),
    ("small_delete", "small files: delete", "files/s"),
    ("untar", "tree: untar", "files/s"),
    ("ls_lr", "tree: ls -lR (cold)", "files/s"),
    ("rm_rf", "tree: rm -rf", "files/s"),
]
TARGETS = ["plain", "passthrough_ll", "rekeyfs", "gocryptfs", "securefs"]
PEERS = ["gocryptfs", "securefs"]
# FUSE without crypto is the ceiling; on metadata rows rekeyfs should come
# close to it, as its crypto costs little there.
CEILING = "passthrough_ll"
META_ROWS = ["ls_lr", "rm_rf", "small_create", "untar"]
META_GOAL = 0.8


def fmt(v):
    if v is None:
        return "n/a"
    if v >= 100:
        return "%.0f" % v
    return "%.1f" % v


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "%.2f" % r if r is not None else "n/a"


def table(path):
    vals = {}
    failed = set()
    rounds = set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue
            rnd, tgt, row, val = parts
            rounds.add(rnd)
            if val == "fail":
                failed.add((tgt, row))
                continue
            vals.setdefault((tgt, row), []).append(float(val))
    seen = list(vals) + list(failed)
    present = [t for t in TARGETS if any(k[0] == t for k in seen)]
    rows = [r for r in ROWS if any(k[1] == r[0] for k in seen)]
    med = {k: statistics.median(v) for k, v in vals.items()}

    # ratio columns only for references that were measured
    cols = [(name, ref) for name, ref in (
        ("rekeyfs/gocryptfs", "gocryptfs"),
        ("rekeyfs/best peer", "peer"),
        ("rekeyfs/" + CEILING, CEILING))
        if ref in present or (ref == "peer" and set(PEERS) & set(present))]
    head = ["row", "unit"] + present + [c[0] for c in cols] + ["target"]
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 3) +
                          ["---"]) + "|"]
    met = total = 0
    partial = []
    for key, label, unit in rows:
        cells = [label, unit]
        for t in present:
            if (t, key) in failed:
                cells.append("FAILED")
            else:
                cells.append(fmt(med.get((t, key))))
        rk = med.get(("rekeyfs", key))
        peers = [med[(p, key)] for p in PEERS if (p, key) in med]
        r_go = ratio(rk, med.get(("gocryptfs", key)))
        r_best = ratio(rk, max(peers) if peers else None)
        r_ceil = ratio(rk, med.get((CEILING, key)))
        by_ref = {"gocryptfs": r_go, "peer": r_best, CEILING: r_ceil}
        cells += [fmt_ratio(by_ref[ref]) for _, ref in cols]
        # A row is judged on the goals whose reference was measured.
        goals = []
        missing = False
        for r, goal, applies in ((r_best, 1.0, True),
                                 (r_ceil, META_GOAL, key in META_ROWS)):
            if not applies:
                continue
            if r is None:
                missing = True
            else:
                goals.append(r >= goal)
        verdict = "n/a"
        if goals:
            ok = all(goals)
            verdict = "met" if ok else "not met"
            total += 1
            met += ok
            if missing:
                partial.append(label)
        cells.append(verdict)
        out.append("| " + " | ".join(cells) + " |")
    print("\n".join(out))
    print()
    print("medians of %d round(s); higher is better in every row" %
          len(rounds))
    print("targets: rekeyfs >= the best of gocryptfs and securefs on every "
          "row; metadata rows (ls -lR, rm -rf, small-file create, untar) "
          ">= %.1fx %s" % (META_GOAL, CEILING))
    if total:
        print("targets: %d of %d rows met" % (met, total))
        if partial:
            print("judged on part of the targets only (a reference target "
                  "is missing): %s" % ", ".join(partial))
    else:
        print("targets: not evaluated (needs rekeyfs and at least one of "
              "gocryptfs, securefs, %s)" % CEILING)
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "small":
        small(argv[2], argv[3], int(argv[4]))
        return 0
    if len(argv) == 5 and argv[1] == "mktree":
        mktree(argv[2], argv[3], int(argv[4]))
        return 0
    if len(argv) == 4 and argv[1] == "fio-iops":
        fio_iops(argv[2], argv[3])
        return 0
    if len(argv) == 3 and argv[1] == "table":
        return table(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
