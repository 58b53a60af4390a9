#!/usr/bin/env python3
"""Measurement and reporting helpers for tests/bench/bench.sh.

  benchlib.py small PHASE DIR N     run one small-file phase, print files/s
  benchlib.py fio-iops JSON RW      print the IOPS of a fio JSON report
  benchlib.py table TSV             print the results table (Markdown)

Every number printed is "higher is better" (MiB/s, IOPS, files/s), so the
table can compare targets row by row without caring about units.
"""

import json
import os
import statistics
import sys
import time

SMALL_SIZE = 1024


def small_names(d, n):
    sub = os.path.join(d, "small")
    return sub, [os.path.join(sub, "f%05d" % i) for i in range(n)]


def small(phase, d, n):
    sub, names = small_names(d, n)
    payload = os.urandom(SMALL_SIZE)
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
    print("%.0f" % rep["jobs"][0][rw]["iops"])


ROWS = [
    ("seq_write", "sequential write", "MiB/s"),
    ("seq_read", "sequential read (cold)", "MiB/s"),
    ("rand_read", "random 4 KiB read", "IOPS"),
    ("rand_write", "random 4 KiB write", "IOPS"),
    ("small_create", "small files: create", "files/s"),
    ("small_stat", "small files: stat (cold)", "files/s"),
    ("small_read", "small files: read (cold)", "files/s"),
    ("small_delete", "small files: delete", "files/s"),
]
TARGETS = ["plain", "rekeyfs", "gocryptfs", "securefs"]
PEERS = ["gocryptfs", "securefs"]
SEQ_GOAL = 1.25


def fmt(v):
    if v is None:
        return "n/a"
    if v >= 100:
        return "%.0f" % v
    return "%.1f" % v


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
    present = [t for t in TARGETS
               if any(k[0] == t for k in list(vals) + list(failed))]
    med = {k: statistics.median(v) for k, v in vals.items()}

    head = ["row", "unit"] + present + [
        "rekeyfs/gocryptfs", "rekeyfs/best peer", "goal"]
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 3) +
                          ["---"]) + "|"]
    met = total = 0
    for key, label, unit in ROWS:
        cells = [label, unit]
        for t in present:
            if (t, key) in failed:
                cells.append("FAILED")
            else:
                cells.append(fmt(med.get((t, key))))
        rk = med.get(("rekeyfs", key))
        go = med.get(("gocryptfs", key))
        peers = [med[(p, key)] for p in PEERS if (p, key) in med]
        best = max(peers) if peers else None
        r_go = rk / go if rk is not None and go else None
        r_best = rk / best if rk is not None and best else None
        cells.append("%.2f" % r_go if r_go is not None else "n/a")
        cells.append("%.2f" % r_best if r_best is not None else "n/a")
        verdict = "n/a"
        if r_best is not None:
            ok = r_best >= 1.0
            if key.startswith("seq_"):
                ok = ok and r_go is not None and r_go >= SEQ_GOAL
            verdict = "met" if ok else "not met"
            total += 1
            met += ok
        cells.append(verdict)
        out.append("| " + " | ".join(cells) + " |")
    print("\n".join(out))
    print()
    print("medians of %d round(s); higher is better in every row" %
          len(rounds))
    print("goal: rekeyfs >= the best peer on every row; "
          "sequential rows also >= %.2fx gocryptfs" % SEQ_GOAL)
    if total:
        print("speed goals: %d of %d rows met" % (met, total))
    else:
        print("speed goals: not evaluated "
              "(needs rekeyfs and at least one peer)")
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "small":
        small(argv[2], argv[3], int(argv[4]))
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
