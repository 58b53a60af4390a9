/*
 * fsx: randomized differential file exerciser.
 *
 *   fsx [-s SEED] [-n OPS] [-S MAXSIZE] [-N FILES] [-c EVERY] [-X N] [-q]
 *       TEST REF
 *
 * Applies the same random operations (pwrite, append, ftruncate, pread,
 * close/reopen with O_APPEND or O_TRUNC, fsync, mmap reads and writes,
 * fallocate, SEEK_DATA/SEEK_HOLE) to files under TEST and under REF and
 * compares results, sizes and contents.  TEST and REF are either two
 * directories (FILES files are created in each, default 3) or two file
 * paths.  On any difference it prints the last operations, the first
 * differing byte, and exits 1.  Exit 0 prints one summary line; exit 2 is
 * a usage or setup error.
 *
 * -X N corrupts one byte of a REF file after operation N, which must make
 * the run fail: it proves the comparison works.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "splitmix.h"

#define BS 4096
#define MAX_FILES 8
#define LOG_LEN 20
#define LOG_MSG 160
#define MAX_WRITE (300 * 1024)

struct side {
	int fd[2];
	int flags[2];
};

struct xfile {
	char *path[2]; /* 0: TEST, 1: REF */
	struct side s[2];
};

static struct xfile files[MAX_FILES];
static int nfiles;
static uint64_t maxsize = 1024 * 1024;
static uint64_t opno;
static int cur; /* index of the file the current operation works on */
static bool quiet;
static uint8_t *buf_t, *buf_r, *wbuf;
static char oplog[LOG_LEN][LOG_MSG];
static bool mmap_ok = true, falloc_ok[2] = {true, true}, seek_ok = true;

static struct {
	uint64_t write, append, trunc, read, reopen, fsync, mapread, mapwrite,
	    falloc, seek, check;
} stats;

/* ---- PRNG (splitmix64): reproducible from the seed ----------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* ---- logging and failure ------------------------------------------------- */

static void logop(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logop(const char *fmt, ...)
{
	char *slot = oplog[opno % LOG_LEN];
	va_list ap;
	int n;

	n = snprintf(slot, LOG_MSG, "%" PRIu64 ": file %d: ", opno, cur);
	va_start(ap, fmt);
	vsnprintf(slot + n, LOG_MSG - (size_t)n, fmt, ap);
	va_end(ap);
	if (!quiet && getenv("FSX_TRACE"))
		fprintf(stderr, "%s\n", slot);
}

static void fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;
	uint64_t first = opno >= LOG_LEN - 1 ? opno - (LOG_LEN - 1) : 0;

	fprintf(stderr, "fsx: MISMATCH at op %" PRIu64 ": ", opno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nfsx: last operations:\n");
	for (uint64_t i = first; i <= opno; i++)
		if (oplog[i % LOG_LEN][0])
			fprintf(stderr, "  %s\n", oplog[i % LOG_LEN]);
	exit(1);
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "fsx: %s %s: %s\n", what, path, strerror(errno));
	exit(2);
}

/* ---- helpers ---------------------------------------------------------------
 */

static ssize_t pread_all(int fd, uint8_t *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
		    pread(fd, buf + done, len - done, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static uint64_t fsize(struct xfile *f, int side)
{
	struct stat st;

	if (fstat(f->s[side].fd[0], &st) < 0)
		fail("fstat %s: %s", f->path[side], strerror(errno));
	return (uint64_t)st.st_size;
}

static uint64_t check_sizes(struct xfile *f)
{
	uint64_t t = fsize(f, 0), r = fsize(f, 1);

	if (t != r)
		fail("%s: size %" PRIu64 ", but %s has %" PRIu64, f->path[0], t,
		     f->path[1], r);
	return t;
}

static void compare_range(struct xfile *f, const uint8_t *t, const uint8_t *r,
			  size_t len, uint64_t off, const char *how)
{
	if (memcmp(t, r, len) == 0)
		return;
	for (size_t i = 0; i < len; i++)
		if (t[i] != r[i])
			fail("%s: %s: first difference at byte %" PRIu64
			     " (test 0x%02x, ref 0x%02x)",
			     f->path[0], how, off + i, t[i], r[i]);
}

static void check_content(struct xfile *f)
{
	uint64_t size = check_sizes(f);
	ssize_t a, b;

	stats.check++;
	a = pread_all(f->s[0].fd[0], buf_t, (size_t)size, 0);
	b = pread_all(f->s[1].fd[0], buf_r, (size_t)size, 0);
	if (a < 0 || b < 0 || a != b)
		fail("%s: full read returned %zd (test) and %zd (ref)%s%s",
		     f->path[0], a, b, a < 0 ? ": " : "",
		     a < 0 ? strerror((int)-a) : "");
	compare_range(f, buf_t, buf_r, (size_t)a, 0, "full compare");
}

/* Both sides must agree on success or on the errno. */
static void same_result(struct xfile *f, const char *op, long t, int te, long r,
			int re)
{
	if ((t < 0) != (r < 0) || (t < 0 && te != re) || (t >= 0 && t != r))
		fail("%s: %s returned %ld (%s) on test but %ld (%s) on ref",
		     f->path[0], op, t, t < 0 ? strerror(te) : "ok", r,
		     r < 0 ? strerror(re) : "ok");
}

static int open_flags(void)
{
	int fl = O_RDWR;

	if (below(5) == 0)
		fl |= O_APPEND;
	if (below(12) == 0)
		fl |= O_TRUNC;
	return fl;
}

static void open_side(struct xfile *f, int side, int slot, int flags)
{
	int fd = open(f->path[side], flags | O_CLOEXEC);

	if (fd < 0)
		fail("open %s: %s", f->path[side], strerror(errno));
	f->s[side].fd[slot] = fd;
	f->s[side].flags[slot] = flags & ~O_TRUNC;
}

/* ---- choosing offsets and lengths -------------------------------------- */

static uint64_t pick_off(uint64_t size, uint64_t limit)
{
	uint64_t o;

	switch (below(10)) {
	case 0:
	case 1:
	case 2:
	case 3: /* a block boundary, or one byte either side */
		o = below(limit / BS + 1) * BS;
		o += below(3);
		o = o ? o - 1 : 0;
		break;
	case 4:
	case 5: /* near the current end */
		o = size + below(2 * BS + 1);
		o = o > BS ? o - BS : 0;
		break;
	default:
		o = below(limit + 1);
	}
	return o > limit ? limit : o;
}

static size_t pick_len(uint64_t room)
{
	uint64_t l;

	switch (below(10)) {
	case 0:
	case 1:
	case 2:
		l = below(64) + 1;
		break;
	case 3:
	case 4:
	case 5: /* whole blocks, or one byte either side */
		l = (below(8) + 1) * BS + below(3);
		l = l - 1;
		break;
	case 6:
		l = below(MAX_WRITE) + 1;
		break;
	default:
		l = below(3 * BS) + 1;
	}
	if (l > room)
		l = room;
	return (size_t)l;
}

/* ---- operations
 * -------------------------------------------------------------- */

static void op_write(struct xfile *f)
{
	int slot = f->s[0].fd[1] >= 0 ? (int)below(2) : 0;
	bool append = f->s[0].flags[slot] & O_APPEND;
	uint64_t size = check_sizes(f);
	uint64_t off = append ? size : pick_off(size, maxsize - 1);
	size_t len = pick_len(maxsize - off);
	ssize_t t, r;
	int te, re;

	if (len == 0)
		return;
	for (size_t i = 0; i < len; i++)
		wbuf[i] = (uint8_t)rnd();
	if (append) {
		stats.append++;
		logop("append %zu bytes (fd %d, size %" PRIu64 ")", len, slot,
		      size);
		t = write(f->s[0].fd[slot], wbuf, len);
		te = errno;
		r = write(f->s[1].fd[slot], wbuf, len);
		re = errno;
	} else {
		stats.write++;
		logop("pwrite %" PRIu64 " +%zu (fd %d, size %" PRIu64 ")", off,
		      len, slot, size);
		t = pwrite(f->s[0].fd[slot], wbuf, len, (off_t)off);
		te = errno;
		r = pwrite(f->s[1].fd[slot], wbuf, len, (off_t)off);
		re = errno;
	}
	same_result(f, "write", (long)t, te, (long)r, re);
}

static void op_truncate(struct xfile *f)
{
	uint64_t size = check_sizes(f), n;
	int t, r, te, re;

	switch (below(6)) {
	case 0:
		n = 0;
		break;
	case 1: /* shrink */
		n = below(size + 1);
		break;
	case 2: /* grow */
		n = size + below(maxsize - size + 1);
		break;
	case 3:
	case 4: /* a block boundary, or one byte either side */
		n = below(maxsize / BS + 1) * BS + below(3);
		n = n ? n - 1 : 0;
		break;
	default:
		n = size;
	}
	if (n > maxsize)
		n = maxsize;
	stats.trunc++;
	logop("ftruncate %" PRIu64 " -> %" PRIu64, size, n);
	t = ftruncate(f->s[0].fd[0], (off_t)n);
	te = errno;
	r = ftruncate(f->s[1].fd[0], (off_t)n);
	re = errno;
	same_result(f, "ftruncate", t, te, r, re);
}

static void op_read(struct xfile *f)
{
	int slot = f->s[0].fd[1] >= 0 ? (int)below(2) : 0;
	uint64_t size = check_sizes(f);
	uint64_t off = pick_off(size, size + BS);
	size_t len = pick_len(MAX_WRITE);
	ssize_t t, r;

	stats.read++;
	logop("pread %" PRIu64 " +%zu (fd %d, size %" PRIu64 ")", off, len,
	      slot, size);
	t = pread_all(f->s[0].fd[slot], buf_t, len, (off_t)off);
	r = pread_all(f->s[1].fd[slot], buf_r, len, (off_t)off);
	same_result(f, "pread", (long)t, t < 0 ? (int)-t : 0, (long)r,
		    r < 0 ? (int)-r : 0);
	if (t > 0)
		compare_range(f, buf_t, buf_r, (size_t)t, off, "pread");
}

static void op_reopen(struct xfile *f)
{
	int slot = (int)below(2), flags = open_flags();

	if (slot == 0 && f->s[0].fd[1] >= 0 && below(2)) {
		/* Drop the second descriptor instead. */
		stats.reopen++;
		logop("close second fd");
		for (int side = 0; side < 2; side++) {
			if (close(f->s[side].fd[1]) < 0)
				fail("close %s: %s", f->path[side],
				     strerror(errno));
			f->s[side].fd[1] = -1;
		}
		return;
	}
	stats.reopen++;
	logop("%s fd %d%s%s", f->s[0].fd[slot] >= 0 ? "reopen" : "open", slot,
	      flags & O_APPEND ? " O_APPEND" : "",
	      flags & O_TRUNC ? " O_TRUNC" : "");
	for (int side = 0; side < 2; side++) {
		if (f->s[side].fd[slot] >= 0 && close(f->s[side].fd[slot]) < 0)
			fail("close %s: %s", f->path[side], strerror(errno));
		f->s[side].fd[slot] = -1;
		open_side(f, side, slot, flags);
	}
}

static void op_fsync(struct xfile *f)
{
	bool data = below(2);
	int t, r, te, re;

	stats.fsync++;
	logop("%s", data ? "fdatasync" : "fsync");
	t = data ? fdatasync(f->s[0].fd[0]) : fsync(f->s[0].fd[0]);
	te = errno;
	r = data ? fdatasync(f->s[1].fd[0]) : fsync(f->s[1].fd[0]);
	re = errno;
	same_result(f, "fsync", t, te, r, re);
}

/* A page of a mapping that cannot be read raises SIGBUS: report it. */
static sigjmp_buf map_jmp;
static volatile sig_atomic_t in_map;

static void on_sigbus(int sig)
{
	if (in_map)
		siglongjmp(map_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void *map_range(int fd, uint64_t pa, size_t mlen, int prot)
{
	void *p = mmap(NULL, mlen, prot, MAP_SHARED, fd, (off_t)pa);

	return p == MAP_FAILED ? NULL : p;
}

static void op_mmap(struct xfile *f, bool writing)
{
	uint64_t size = check_sizes(f), off, pa;
	size_t len, mlen;
	uint8_t *pt, *pr;
	long pg = sysconf(_SC_PAGESIZE);
	int slot = 0;

	/* A writable shared map of an O_APPEND descriptor is refused. */
	if (writing && (f->s[0].flags[0] & O_APPEND))
		slot = 1;
	if (!mmap_ok || size == 0 || f->s[0].fd[slot] < 0 ||
	    (writing && (f->s[0].flags[slot] & O_APPEND)))
		return;
	off = below(size);
	len = pick_len(size - off);
	pa = off - off % (uint64_t)pg;
	mlen = (size_t)(off + len - pa);
	logop("mmap %s %" PRIu64 " +%zu (size %" PRIu64 ")",
	      writing ? "write" : "read", off, len, size);
	pt = map_range(f->s[0].fd[slot], pa, mlen,
		       PROT_READ | (writing ? PROT_WRITE : 0));
	if (pt == NULL) {
		if (errno == ENODEV || errno == EACCES || errno == EINVAL ||
		    errno == EOPNOTSUPP) {
			if (!quiet)
				fprintf(stderr,
					"fsx: mmap not supported by %s (%s); "
					"mmap operations off\n",
					f->path[0], strerror(errno));
			mmap_ok = false;
			return;
		}
		fail("mmap %s: %s", f->path[0], strerror(errno));
	}
	pr = map_range(f->s[1].fd[slot], pa, mlen,
		       PROT_READ | (writing ? PROT_WRITE : 0));
	if (pr == NULL)
		fail("mmap %s: %s", f->path[1], strerror(errno));
	if (sigsetjmp(map_jmp, 1)) {
		in_map = 0;
		fail("%s: SIGBUS touching the mapping of %" PRIu64 " +%zu "
		     "(a page could not be read or written)",
		     f->path[0], off, len);
	}
	in_map = 1;
	if (writing) {
		stats.mapwrite++;
		for (size_t i = 0; i < len; i++)
			wbuf[i] = (uint8_t)rnd();
		memcpy(pt + (off - pa), wbuf, len);
		memcpy(pr + (off - pa), wbuf, len);
		if (msync(pt, mlen, MS_SYNC) < 0)
			fail("msync %s: %s", f->path[0], strerror(errno));
		if (msync(pr, mlen, MS_SYNC) < 0)
			fail("msync %s: %s", f->path[1], strerror(errno));
	} else {
		stats.mapread++;
		compare_range(f, pt + (off - pa), pr + (off - pa), len, off,
			      "mmap read");
	}
	in_map = 0;
	munmap(pt, mlen);
	munmap(pr, mlen);
}

static void op_fallocate(struct xfile *f)
{
	int keep = (int)below(2), mode = keep ? FALLOC_FL_KEEP_SIZE : 0;
	uint64_t size = check_sizes(f);
	uint64_t off = pick_off(size, maxsize - 1);
	size_t len = pick_len(maxsize - off);
	int t, r, te, re;

	if (!falloc_ok[keep] || len == 0)
		return;
	logop("fallocate %s %" PRIu64 " +%zu (size %" PRIu64 ")",
	      keep ? "KEEP_SIZE" : "0", off, len, size);
	t = fallocate(f->s[0].fd[0], mode, (off_t)off, (off_t)len);
	te = errno;
	if (t < 0 && te == EOPNOTSUPP) {
		/* Not supported: fine, as long as it is never supported. */
		falloc_ok[keep] = false;
		if (!quiet)
			fprintf(stderr,
				"fsx: fallocate mode %s not supported by %s\n",
				keep ? "KEEP_SIZE" : "0", f->path[0]);
		return;
	}
	stats.falloc++;
	r = fallocate(f->s[1].fd[0], mode, (off_t)off, (off_t)len);
	re = errno;
	same_result(f, "fallocate", t, te, r, re);
}

/* Whatever SEEK_HOLE/SEEK_DATA call a hole must read as zeros. */
static void op_seek(struct xfile *f)
{
	uint64_t size = check_sizes(f), off, h, d, end;
	off_t o;
	int fd = f->s[0].fd[0];

	if (!seek_ok || size == 0)
		return;
	stats.seek++;
	off = below(size);
	logop("lseek SEEK_DATA/SEEK_HOLE from %" PRIu64 " (size %" PRIu64 ")",
	      off, size);
	o = lseek(fd, (off_t)off, SEEK_HOLE);
	if (o < 0) {
		if (errno == EINVAL || errno == EOPNOTSUPP) {
			seek_ok = false;
			return;
		}
		fail("SEEK_HOLE %" PRIu64 ": %s", off, strerror(errno));
	}
	h = (uint64_t)o;
	if (h < off || h > size)
		fail("SEEK_HOLE from %" PRIu64 " gave %" PRIu64
		     " (size %" PRIu64 ")",
		     off, h, size);
	if (h < size) {
		o = lseek(fd, (off_t)h, SEEK_DATA);
		if (o < 0 && errno != ENXIO)
			fail("SEEK_DATA %" PRIu64 ": %s", h, strerror(errno));
		end = o < 0 ? size : (uint64_t)o;
		if (end < h || end > size)
			fail("SEEK_DATA from %" PRIu64 " gave %" PRIu64, h,
			     end);
		if (end > h) {
			ssize_t n =
			    pread_all(f->s[1].fd[0], buf_r, end - h, (off_t)h);

			for (ssize_t i = 0; i < n; i++)
				if (buf_r[i])
					fail("hole %" PRIu64 "..%" PRIu64
					     " reported, but byte %" PRIu64
					     " is 0x%02x",
					     h, end, h + (uint64_t)i, buf_r[i]);
		}
	}
	o = lseek(fd, (off_t)off, SEEK_DATA);
	if (o < 0) {
		if (errno != ENXIO)
			fail("SEEK_DATA %" PRIu64 ": %s", off, strerror(errno));
		d = size;
	} else {
		d = (uint64_t)o;
	}
	if (d < off || d > size)
		fail("SEEK_DATA from %" PRIu64 " gave %" PRIu64, off, d);
	if (d > off) {
		ssize_t n =
		    pread_all(f->s[1].fd[0], buf_r, d - off, (off_t)off);

		for (ssize_t i = 0; i < n; i++)
			if (buf_r[i])
				fail("no data reported in %" PRIu64 "..%" PRIu64
				     ", but byte %" PRIu64 " is 0x%02x",
				     off, d, off + (uint64_t)i, buf_r[i]);
	}
}

/* Flip one byte of the REF file behind fsx's back (through its own fd,
 * as the regular ones may be O_APPEND). */
static void corrupt_ref(struct xfile *f)
{
	uint64_t size = check_sizes(f), at = size ? below(size) : 0;
	int fd = open(f->path[1], O_RDWR | O_CLOEXEC);
	uint8_t b = 0x5a;

	if (fd < 0 || (size && pread(fd, &b, 1, (off_t)at) != 1))
		die("corrupt", f->path[1]);
	b ^= 0x01;
	if (pwrite(fd, &b, 1, (off_t)at) != 1 || close(fd) < 0)
		die("corrupt", f->path[1]);
	logop("corrupting ref: %s byte %" PRIu64 " of %s",
	      size ? "flipped" : "wrote", at, f->path[1]);
}

/* ---- main
 * -------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: fsx [-s SEED] [-n OPS] [-S MAXSIZE] [-N FILES] "
			"[-c EVERY] [-X N] [-q] TEST REF\n"
			"  TEST, REF: two directories or two file paths\n");
	exit(2);
}

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		usage();
	return v;
}

static void setup_files(const char *test, const char *ref, int n)
{
	struct stat st;
	bool dirs = stat(test, &st) == 0 && S_ISDIR(st.st_mode);

	if (dirs != (stat(ref, &st) == 0 && S_ISDIR(st.st_mode))) {
		fprintf(stderr,
			"fsx: %s and %s must both be directories or "
			"both files\n",
			test, ref);
		exit(2);
	}
	nfiles = dirs ? n : 1;
	for (int i = 0; i < nfiles; i++) {
		struct xfile *f = &files[i];

		for (int side = 0; side < 2; side++) {
			const char *base = side ? ref : test;

			if (dirs) {
				if (asprintf(&f->path[side], "%s/fsx.%d", base,
					     i) < 0)
					exit(2);
			} else {
				f->path[side] = strdup(base);
			}
			f->s[side].fd[0] =
			    open(f->path[side],
				 O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (f->s[side].fd[0] < 0)
				die("cannot create", f->path[side]);
			f->s[side].flags[0] = O_RDWR;
			f->s[side].fd[1] = -1;
		}
	}
}

int main(int argc, char **argv)
{
	uint64_t seed, nops = 1000, every = 8, corrupt_at = 0;
	int opt, n = 3;

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	while ((opt = getopt(argc, argv, "s:n:S:N:c:X:q")) != -1) {
		switch (opt) {
		case 's':
			seed = num(optarg);
			break;
		case 'n':
			nops = num(optarg);
			break;
		case 'S':
			maxsize = num(optarg);
			break;
		case 'N':
			n = (int)num(optarg);
			break;
		case 'c':
			every = num(optarg);
			break;
		case 'X':
			corrupt_at = num(optarg);
			break;
		case 'q':
			quiet = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || n < 1 || n > MAX_FILES || maxsize < 1 ||
	    maxsize > 64ULL << 20 || every < 1)
		usage();
	rng_state = seed;
	printf("fsx: seed %" PRIu64 ", %" PRIu64 " ops, max size %" PRIu64 "\n",
	       seed, nops, maxsize);
	fflush(stdout);
	buf_t = malloc(maxsize + MAX_WRITE + BS);
	buf_r = malloc(maxsize + MAX_WRITE + BS);
	wbuf = malloc(maxsize + MAX_WRITE + BS);
	if (!buf_t || !buf_r || !wbuf)
		exit(2);
	setup_files(argv[optind], argv[optind + 1], n);
	signal(SIGBUS, on_sigbus);

	for (opno = 1; opno <= nops; opno++) {
		struct xfile *f;
		uint64_t k;

		oplog[opno % LOG_LEN][0] = '\0';
		cur = (int)below((uint64_t)nfiles);
		f = &files[cur];
		k = below(100);

		if (k < 30)
			op_write(f);
		else if (k < 42)
			op_truncate(f);
		else if (k < 62)
			op_read(f);
		else if (k < 70)
			op_reopen(f);
		else if (k < 74)
			op_fsync(f);
		else if (k < 80)
			op_mmap(f, false);
		else if (k < 86)
			op_mmap(f, true);
		else if (k < 92)
			op_fallocate(f);
		else
			op_seek(f);
		if (corrupt_at && opno == corrupt_at)
			corrupt_ref(f);
		check_sizes(f);
		if (opno % every == 0 || opno == corrupt_at)
			check_content(f);
	}
	opno = nops;
	for (int i = 0; i < nfiles; i++) {
		struct xfile *f = &files[i];

		check_content(f);
		for (int side = 0; side < 2; side++) {
			for (int slot = 0; slot < 2; slot++)
				if (f->s[side].fd[slot] >= 0 &&
				    close(f->s[side].fd[slot]) < 0)
					fail("close %s: %s", f->path[side],
					     strerror(errno));
			f->s[side].fd[0] = open(f->path[side], O_RDONLY);
			if (f->s[side].fd[0] < 0)
				fail("reopen %s: %s", f->path[side],
				     strerror(errno));
			f->s[side].fd[1] = -1;
		}
		/* After close, from a fresh open. */
		check_content(f);
		close(f->s[0].fd[0]);
		close(f->s[1].fd[0]);
		free(f->path[0]);
		free(f->path[1]);
	}
	printf("fsx: seed %" PRIu64 ": %" PRIu64 " ops ok (%" PRIu64
	       " pwrite, %" PRIu64 " append, %" PRIu64 " truncate, %" PRIu64
	       " read, %" PRIu64 " reopen, %" PRIu64 " fsync, %" PRIu64
	       " mmap read, %" PRIu64 " mmap write, %" PRIu64
	       " fallocate, %" PRIu64 " seek, %" PRIu64 " full compares)%s%s\n",
	       seed, nops, stats.write, stats.append, stats.trunc, stats.read,
	       stats.reopen, stats.fsync, stats.mapread, stats.mapwrite,
	       stats.falloc, stats.seek, stats.check,
	       mmap_ok ? "" : " [mmap off]",
	       falloc_ok[0] && falloc_ok[1] ? "" : " [some fallocate off]");
	free(buf_t);
	free(buf_r);
	free(wbuf);
	return 0;
}
