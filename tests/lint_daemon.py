#!/usr/bin/env python3
"""make lint: the easy regressions of the daemon's backing access.

Every backing call in src/fuse_*.c acts on one name component relative to
a node's fd and never follows a symlink.  This finds calls that do not say
so: an *at() call without its no-follow flag, a path-taking call on a name
that is not a /proc/self/fd/N link, or a literal path of more than one
component.  A call may be waived by a comment on its line or the line
before that says why it is safe ("/proc/self/fd" link or "safe:").

Also: no src/fuse_*.c includes format.h or does block arithmetic; that
belongs to the file layer.
"""
import re
import sys

# call -> flag that must appear in the call (None: the name must be safe)
NOFOLLOW = {
    "openat": ("O_NOFOLLOW",),
    "fstatat": ("AT_SYMLINK_NOFOLLOW",),
    "fchownat": ("AT_SYMLINK_NOFOLLOW",),
    "statx": ("AT_SYMLINK_NOFOLLOW",),
}
# calls that follow their path: only /proc/self/fd links may be given
FOLLOWING = ("open", "fchmodat", "utimensat", "linkat", "getxattr",
             "setxattr", "listxattr", "removexattr", "chmod", "chown",
             "truncate", "stat", "lstat", "lgetxattr", "lsetxattr",
             "llistxattr", "lremovexattr", "opendir", "access", "faccessat")
# calls that act on the name itself: only single components
NAMING = ("mkdirat", "mknodat", "symlinkat", "unlinkat", "renameat2",
          "renameat", "readlinkat")
FORMAT = re.compile(r'#include\s+"rekeyfs/format\.h"|\bRKFS_(C?BLOCK_SIZE|'
                    r'HEADER_LEN|BLOCK_OVERHEAD)\b|\brkfs_(block_offset|'
                    r'block_count|size_to_plain|size_to_cipher)\b')
WAIVE = re.compile(r"/proc/self/fd|safe:")


def calls(text, name):
    """(line number, call text) of each call of name in text."""
    for m in re.finditer(r"(?<![\w.>])%s\s*\(" % re.escape(name), text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        yield text.count("\n", 0, m.start()) + 1, text[m.start():i + 1]


def main(paths):
    bad = []
    for path in paths:
        raw = open(path, encoding="utf-8").read()
        lines = raw.split("\n")
        # Calls are looked for in code only: comments blanked, lines kept.
        text = re.sub(r"/\*.*?\*/",
                      lambda m: re.sub(r"[^\n]", " ", m.group(0)), raw,
                      flags=re.S)

        def waived(ln):
            near = lines[max(0, ln - 3):ln]
            return any(WAIVE.search(l) for l in near)

        for ln, l in enumerate(lines, 1):
            if FORMAT.search(l):
                bad.append("%s:%d: format knowledge in the daemon: %s" %
                           (path, ln, l.strip()))
        for fn, flags in NOFOLLOW.items():
            for ln, call in calls(text, fn):
                if '"."' in call and "O_DIRECTORY" in call:
                    continue  # the directory of an fd itself
                if not any(f in call for f in flags) and not waived(ln):
                    bad.append("%s:%d: %s() without %s" %
                               (path, ln, fn, "/".join(flags)))
        for fn in FOLLOWING:
            for ln, call in calls(text, fn):
                if not waived(ln):
                    bad.append("%s:%d: %s() follows its path: give it a "
                               "/proc/self/fd link and say so" %
                               (path, ln, fn))
        for fn in NAMING + tuple(NOFOLLOW) + FOLLOWING:
            for ln, call in calls(text, fn):
                for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', call):
                    if "/" in lit and not lit.startswith("/proc/self/fd"):
                        bad.append("%s:%d: %s() on a path of several "
                                   "components: \"%s\"" % (path, ln, fn,
                                                           lit))
    for b in bad:
        print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    # fuse_main.c and fuse_keys.c open only what the administrator named
    # (keyring, config, mountpoint, the backing root): no backing tree.
    sys.exit(main([p for p in sys.argv[1:]
                   if not p.endswith(("fuse_main.c", "fuse_keys.c"))]))
