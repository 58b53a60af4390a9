/*
 * Crash-state enumeration of the file layer's write paths.
 *
 * Each case builds a base file, fsyncs it, and runs one operation on it
 * (append, extension by truncate, overwrite inside a block, truncate down,
 * the rekey's re-encrypt copy).  fsync/fdatasync/ftruncate are wrapped
 * here (the executable's definitions take precedence over libc's for the
 * core library too), so the operation's barriers split it into epochs:
 * everything before a barrier is durable.  For every epoch, the crash
 * states are: the image at its start with any subset of the 4 KiB pages
 * that differ at its end replaced by their new contents, and a file size
 * that is the size at the start or the end, any size set by an ftruncate
 * in between, or (when the file grows) any page boundary in between.
 * Subsets are all of them up to 2^FULL_PAGES; beyond that, every subset
 * of at most 2 pages, every subset missing at most 2 pages, and
 * RANDOM_SUBSETS random ones.
 *
 * Every state is loaded and read through the file layer, block by block:
 * - bytes that were durable before the operation and that it does not
 *   change must read back (no EIO), unless the block holding them was
 *   re-sealed in place and the crash tore it (its old ciphertext partly or
 *   wholly overwritten, its new one incomplete): the documented exposure
 *   of in-place re-sealing;
 * - every byte that reads is its old value, its new value, or (past the
 *   old end of the file, or in a range truncated away) zero.
 */
#include "rekeyfs/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/repair.h"

#define PAGE 4096
#define FULL_PAGES 12
#define RANDOM_SUBSETS 400
#define MAX_EPOCHS 8
#define MAX_SIZES 64

/* --- barrier recording ------------------------------------------------- */

struct image {
	uint8_t *b;
	size_t len;
};

static int track_fd = -1;
static struct image epochs[MAX_EPOCHS + 1];
static int nepochs;
static uint64_t tsizes[MAX_EPOCHS][MAX_SIZES];
static int ntsizes[MAX_EPOCHS];

static void snap(struct image *im, int fd)
{
	struct stat st;

	SETUP(fstat(fd, &st) == 0);
	im->len = (size_t)st.st_size;
	im->b = calloc(1, im->len + 1);
	SETUP(im->b != NULL);
	SETUP(rkfs_pread_full(fd, im->b, im->len, 0) == (ssize_t)im->len);
}

static long nbarriers;

static void barrier(int fd)
{
	nbarriers++;
	if (fd != track_fd)
		return;
	SETUP(nepochs < MAX_EPOCHS);
	snap(&epochs[++nepochs], fd);
}

int fsync(int fd)
{
	barrier(fd);
	return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd)
{
	barrier(fd);
	return (int)syscall(SYS_fdatasync, fd);
}

int ftruncate(int fd, off_t len)
{
	int r = (int)syscall(SYS_ftruncate, fd, len);

	if (r == 0 && fd == track_fd && ntsizes[nepochs] < MAX_SIZES)
		tsizes[nepochs][ntsizes[nepochs]++] = (uint64_t)len;
	return r;
}

/* --- set-up ------------------------------------------------------------ */

static struct rkfs_keyring *make_keyring(void)
{
	char text[256], e1[80];
	unsigned char k[RKFS_KEY_LEN];
	struct rkfs_keyring *kr;
	struct rkfs_error err = { 0 };

	memset(k, 0x5a, sizeof(k));
	rkfs_key_encode(e1, sizeof(e1), k);
	snprintf(text, sizeof(text), "[generation 1]\nkey = %s\n", e1);
	SETUP(rkfs_keyring_parse(&kr, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	return kr;
}

static int tmpfd(void)
{
	char path[] = "/tmp/rkfs-crash-XXXXXX";
	int fd = mkstemp(path);

	SETUP(fd >= 0);
	unlink(path);
	return fd;
}

static uint8_t *read_all(struct rkfs_file *f, int fd, uint64_t *len)
{
	uint8_t *p = calloc(1, f->size + 1);
	uint64_t bad;

	SETUP(p != NULL);
	SETUP(rkfs_file_read(f, fd, p, f->size, 0, &bad) == (ssize_t)f->size);
	*len = f->size;
	return p;
}

/* --- one operation ----------------------------------------------------- */

enum op_kind { OP_WRITE, OP_TRUNCATE, OP_REKEY };

struct op {
	const char *name;
	uint64_t base;     /* base plaintext size */
	enum op_kind kind;
	uint64_t off, len; /* OP_WRITE range; OP_TRUNCATE: off is the size */
	uint64_t gap_lo, gap_hi; /* base: a hole there (block aligned), which
				  * gives the file mark 2 */
};

struct run {
	const struct op *op;
	uint8_t *p0, *p1; /* plaintext before and after the operation */
	uint64_t n0, n1;
	uint64_t dlo, dhi; /* plaintext range the operation writes */
	struct rkfs_keyring *kr;
	long states, failures;
};

static bool page_changed(const struct image *a, const struct image *b,
			 size_t pg)
{
	size_t lo = pg * PAGE;

	for (size_t x = lo; x < lo + PAGE; x++) {
		uint8_t u = x < a->len ? a->b[x] : 0;
		uint8_t v = x < b->len ? b->b[x] : 0;

		if (u != v)
			return true;
	}
	return false;
}

static uint64_t plain_of(size_t cipher)
{
	return rkfs_file_stat_size(cipher);
}

/* Ciphertext bytes of block j in a file of plain bytes (0 past its end). */
static uint64_t cl_of(uint64_t plain, uint64_t j)
{
	uint64_t start = j * RKFS_BLOCK_SIZE;

	if (start >= plain)
		return 0;
	return (plain - start >= RKFS_BLOCK_SIZE ? RKFS_BLOCK_SIZE
						 : plain - start) +
	       RKFS_BLOCK_OVERHEAD;
}

/*
 * Block j torn by the crash: some of its old ciphertext is overwritten,
 * and its new ciphertext is not complete (pages missing, or cut by the
 * size).
 */
static bool torn(const struct image *a, const struct image *b,
		 const size_t *pages, size_t np, const bool *in, uint64_t j,
		 uint64_t size)
{
	uint64_t o = rkfs_block_offset(j);
	uint64_t ocl = cl_of(plain_of(a->len), j);
	uint64_t ncl = cl_of(plain_of(b->len), j);
	bool old_hit = false, old_kept = false, new_missing = false;

	if (ocl == 0)
		return false;
	for (size_t k = 0; k < np; k++) {
		uint64_t plo = (uint64_t)pages[k] * PAGE, phi = plo + PAGE;

		if (plo < o + ocl && phi > o) {
			if (in[k])
				old_hit = true;
			else
				old_kept = true;
		}
		if (plo < o + ncl && phi > o && !in[k])
			new_missing = true;
	}
	if (o + ncl > size)
		new_missing = true; /* cut by a size not yet on disk */
	return old_hit && (old_kept || new_missing);
}

/* Report the first few failures of each operation only. */
#define SAY(r, ...)                                                           \
	do {                                                                  \
		if ((r)->failures < 3)                                        \
			fprintf(stderr, __VA_ARGS__);                         \
	} while (0)

static bool byte_ok(const struct run *r, uint64_t x, uint8_t v)
{
	if (x < r->n0 && v == r->p0[x])
		return true;
	if (x < r->n1 && v == r->p1[x])
		return true;
	return v == 0 && (x >= r->n0 || x >= r->n1);
}

/*
 * Set per state: the final block (old or new) is torn, so nothing may
 * prove that the file may have holes, and its holes may read as EIO (the
 * exposure format.h names).
 */
static bool proof_torn;

/* Must byte x read back (durable before, untouched by the operation)? */
static bool must_read(const struct run *r, uint64_t x)
{
	if (proof_torn && x >= r->op->gap_lo && x < r->op->gap_hi)
		return false;
	return x < r->n0 && x < r->n1 && !(x >= r->dlo && x < r->dhi);
}

static void check_state(struct run *r, const struct image *a,
			const struct image *b, const size_t *pages, size_t np,
			const bool *in, uint64_t size)
{
	static uint8_t *img;
	static size_t imgcap;
	uint8_t buf[RKFS_BLOCK_SIZE];
	static int fd = -1;
	struct rkfs_file f;
	bool fail = false;
	int ret;

	if (fd < 0)
		fd = tmpfd();
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);

	if (imgcap < size + PAGE) {
		free(img);
		imgcap = size + PAGE;
		img = malloc(imgcap);
		SETUP(img != NULL);
	}
	for (uint64_t x = 0; x < size; x++)
		img[x] = x < a->len ? a->b[x] : 0;
	for (size_t k = 0; k < np; k++) {
		uint64_t lo = (uint64_t)pages[k] * PAGE;

		if (!in[k])
			continue;
		for (uint64_t x = lo; x < lo + PAGE && x < size; x++)
			img[x] = x < b->len ? b->b[x] : 0;
	}
	SETUP(rkfs_pwrite_full(fd, img, size, 0) == 0);
	r->states++;
	proof_torn = r->op->gap_hi &&
		     (torn(a, b, pages, np, in, (r->n0 - 1) / RKFS_BLOCK_SIZE,
			   size) ||
		      torn(a, b, pages, np, in, (r->n1 - 1) / RKFS_BLOCK_SIZE,
			   size));
	ret = rkfs_file_load(&f, fd, r->kr);
	if (ret < 0) {
		for (uint64_t x = 0; x < r->n0 && !fail; x++)
			fail = must_read(r, x);
		if (fail)
			SAY(r, "%s: size %llu: load failed: %d\n",
				r->op->name, (unsigned long long)size, ret);
		goto out;
	}
	for (uint64_t x = 0; x < r->n0 && x < r->n1; x++) {
		if (must_read(r, x) && x >= f.size) {
			SAY(r, "%s: size %llu: plaintext %llu short\n",
				r->op->name, (unsigned long long)size,
				(unsigned long long)f.size);
			fail = true;
			goto done;
		}
	}
	for (uint64_t j = 0; j * RKFS_BLOCK_SIZE < f.size && !fail; j++) {
		uint64_t lo = j * RKFS_BLOCK_SIZE;
		uint64_t hi = lo + RKFS_BLOCK_SIZE < f.size ? lo + RKFS_BLOCK_SIZE
							  : f.size;
		bool t = torn(a, b, pages, np, in, j, size);
		uint64_t bad;
		ssize_t n;

		/* every run of bytes that must read, on its own */
		for (uint64_t x = lo; x < hi && !t;) {
			uint64_t e = x;

			if (!must_read(r, x)) {
				x++;
				continue;
			}
			while (e < hi && must_read(r, e))
				e++;
			n = rkfs_file_read(&f, fd, buf, e - x, x, &bad);
			if (n != (ssize_t)(e - x) ||
			    memcmp(buf, r->p0 + x, e - x) != 0) {
				SAY(r,
					"%s: size %llu: durable [%llu, %llu) "
					"lost (%zd)\n",
					r->op->name, (unsigned long long)size,
					(unsigned long long)x,
					(unsigned long long)e, n);
				fail = true;
				break;
			}
			x = e;
		}
		n = rkfs_file_read(&f, fd, buf, hi - lo, lo, &bad);
		if (n == (ssize_t)(hi - lo)) {
			for (uint64_t x = lo; x < hi && !fail; x++) {
				if (!byte_ok(r, x, buf[x - lo])) {
					SAY(r,
						"%s: size %llu: wrong byte at "
						"%llu\n",
						r->op->name,
						(unsigned long long)size,
						(unsigned long long)x);
					fail = true;
				}
			}
		}
	}
done:
	rkfs_file_release(&f);
out:
	if (fail)
		r->failures++;
}

static void run_epoch(struct run *r, int e)
{
	const struct image *a = &epochs[e], *b = &epochs[e + 1];
	size_t maxlen = a->len > b->len ? a->len : b->len;
	size_t npg = (maxlen + PAGE - 1) / PAGE, np = 0;
	size_t *pages = calloc(npg + 1, sizeof(*pages));
	bool *in = calloc(npg + 1, sizeof(*in));
	uint64_t sizes[MAX_SIZES * 2 + 4];
	int ns = 0;
	uint64_t lo, hi;

	SETUP(pages && in);
	for (size_t pg = 0; pg < npg; pg++)
		if (page_changed(a, b, pg))
			pages[np++] = pg;
	sizes[ns++] = a->len;
	if (b->len != a->len)
		sizes[ns++] = b->len;
	for (int k = 0; k < ntsizes[e]; k++)
		sizes[ns++] = tsizes[e][k];
	lo = a->len < b->len ? a->len : b->len;
	hi = a->len < b->len ? b->len : a->len;
	if (b->len > a->len)
		for (uint64_t s = (lo / PAGE + 1) * PAGE; s < hi &&
		     ns < (int)(sizeof(sizes) / sizeof(sizes[0]));
		     s += PAGE)
			sizes[ns++] = s;

	for (int si = 0; si < ns; si++) {
		bool dup = false;

		for (int k = 0; k < si; k++)
			dup |= sizes[k] == sizes[si];
		if (dup)
			continue;
		if (np <= FULL_PAGES) {
			for (uint64_t m = 0; m < (1ULL << np); m++) {
				for (size_t k = 0; k < np; k++)
					in[k] = m >> k & 1;
				check_state(r, a, b, pages, np, in, sizes[si]);
			}
			continue;
		}
		/* at most two pages in, at most two out, then random */
		for (int kind = 0; kind < 2; kind++) {
			for (size_t p = 0; p <= np; p++) {
				for (size_t q = p; q <= np; q++) {
					for (size_t k = 0; k < np; k++)
						in[k] = (k == p || k == q) ^ kind;
					check_state(r, a, b, pages, np, in,
						    sizes[si]);
				}
			}
		}
		for (int k = 0; k < RANDOM_SUBSETS; k++) {
			for (size_t x = 0; x < np; x++)
				in[x] = randombytes_uniform(2);
			check_state(r, a, b, pages, np, in, sizes[si]);
		}
	}
	free(pages);
	free(in);
}

static void run_op(const struct op *op, long *total)
{
	struct run r = { .op = op };
	struct rkfs_file f;
	uint8_t *data;
	uint64_t bad;
	int fd = tmpfd();

	r.kr = make_keyring();
	data = malloc(op->base + op->len + 1);
	SETUP(data != NULL);
	randombytes_buf(data, op->base + op->len + 1);
	SETUP(rkfs_file_load(&f, fd, r.kr) == 0);
	if (op->gap_hi) {
		memset(data + op->gap_lo, 0, op->gap_hi - op->gap_lo);
		SETUP(rkfs_file_write(&f, fd, data, op->gap_lo, 0, r.kr,
				      &bad) == (ssize_t)op->gap_lo);
		SETUP(rkfs_file_write(&f, fd, data + op->gap_hi,
				      op->base - op->gap_hi, op->gap_hi, r.kr,
				      &bad) == (ssize_t)(op->base - op->gap_hi));
		SETUP(f.holes == RKFS_MARK_FINAL_HOLES);
	} else {
		SETUP(rkfs_file_write(&f, fd, data, op->base, 0, r.kr,
				      &bad) == (ssize_t)op->base);
	}
	SETUP(syscall(SYS_fsync, fd) == 0);
	rkfs_file_sync_done(&f, rkfs_file_sync_begin(&f));
	r.p0 = read_all(&f, fd, &r.n0);

	nepochs = 0;
	memset(ntsizes, 0, sizeof(ntsizes));
	snap(&epochs[0], fd);
	track_fd = fd;
	switch (op->kind) {
	case OP_WRITE:
		SETUP(rkfs_file_write(&f, fd, data + op->base, op->len, op->off,
				      r.kr, &bad) == (ssize_t)op->len);
		r.dlo = op->off;
		r.dhi = op->off + op->len;
		break;
	case OP_TRUNCATE:
		SETUP(rkfs_file_truncate(&f, fd, op->off, r.kr, &bad) == 0);
		r.dlo = op->off < op->base ? op->off : op->base;
		r.dhi = op->off < op->base ? op->base : op->off;
		break;
	case OP_REKEY: {
		/* the copy goes to a new file that replaces the name only
		 * after its fsync: the source is never written */
		struct rkfs_header nh;
		int dst = tmpfd();
		uint8_t *p;
		uint64_t n;
		struct rkfs_file g;

		rkfs_header_init(&nh, 1);
		SETUP(rkfs_file_reencrypt(&f, fd, dst, &nh,
					  rkfs_keyring_key(r.kr, 1, &(int){0}),
					  &bad) == 0);
		SETUP(syscall(SYS_fsync, dst) == 0);
		SETUP(rkfs_file_load(&g, dst, r.kr) == 0);
		p = read_all(&g, dst, &n);
		CHECK(n == r.n0 && memcmp(p, r.p0, n) == 0);
		r.states++;
		free(p);
		rkfs_file_release(&g);
		close(dst);
		r.dlo = r.dhi = 0;
		break;
	}
	}
	track_fd = -1;
	snap(&epochs[++nepochs], fd);
	r.p1 = read_all(&f, fd, &r.n1);

	for (int e = 0; e < nepochs; e++)
		run_epoch(&r, e);
	printf("  %-28s %3d epoch(s) %7ld states, %ld failed\n", op->name,
	       nepochs, r.states, r.failures);
	CHECK_EQ(r.failures, 0);
	*total += r.states;

	for (int e = 0; e <= nepochs; e++)
		free(epochs[e].b);
	rkfs_file_release(&f);
	rkfs_keyring_free(r.kr);
	free(r.p0);
	free(r.p1);
	free(data);
	close(fd);
}

/*
 * Torn tails as a crash (or an attacker) leaves them: what reads, what is
 * EIO, and what verify says.
 */
static void test_tails(void)
{
	struct rkfs_keyring *kr = make_keyring();
	uint8_t data[9000], out[9000], junk[64];
	struct rkfs_file f;
	uint64_t bad;
	struct stat st;
	int fd = tmpfd();

	randombytes_buf(data, sizeof(data));
	memset(junk, 0, sizeof(junk));
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 5000, 0, kr, &bad) == 5000);
	rkfs_file_release(&f);

	/* Size grown inside the final block's slot: the old block still
	 * gives its bytes, the bytes past it are EIO, stat shows the size. */
	SETUP(fstat(fd, &st) == 0);
	SETUP(rkfs_pwrite_full(fd, junk, 10, st.st_size) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(f.size, 5010);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 5000, 0, &bad), 5000);
	CHECK(memcmp(out, data, 5000) == 0);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 20, 4990, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), -EBADMSG);
	/* truncating to the good part heals it */
	CHECK_EQ(rkfs_file_truncate(&f, fd, 5000, kr, &bad), 0);
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	rkfs_file_release(&f);

	/* A size no valid file has: the whole blocks before it read,
	 * verify reports the tail. */
	SETUP(ftruncate(fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 8192, 0, kr, &bad) == 8192);
	rkfs_file_release(&f);
	SETUP(rkfs_pwrite_full(fd, junk, 20, rkfs_size_to_cipher(8192)) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(f.size, 8192);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 8192, 0, &bad), 8192);
	CHECK(memcmp(out, data, 8192) == 0);
	bad = 0;
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), -EBADMSG);
	CHECK_EQ(bad, 2);
	rkfs_file_release(&f);

	/* A block that authenticates as final in the middle of the file
	 * (an append whose re-seal never reached the disk) reads its own
	 * bytes; verify flags it. */
	SETUP(ftruncate(fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 3000, 0, kr, &bad) == 3000);
	{
		uint8_t old[3040];

		SETUP(rkfs_pread_full(fd, old, sizeof(old), 32) == 3040);
		SETUP(rkfs_file_write(&f, fd, data + 3000, 4000, 5000, kr,
				      &bad) == 4000);
		SETUP(rkfs_pwrite_full(fd, old, sizeof(old), 32) == 0);
		memset(junk, 0, sizeof(junk));
		for (int k = 0; k < 1096; k += 64)
			SETUP(rkfs_pwrite_full(fd, junk,
					       k + 64 > 1096 ? 1096 - k : 64,
					       32 + 3040 + k) == 0);
	}
	CHECK_EQ(rkfs_file_read(&f, fd, out, 3000, 0, &bad), 3000);
	CHECK(memcmp(out, data, 3000) == 0);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 4000, 5000, &bad), 4000);
	CHECK(memcmp(out, data + 3000, 4000) == 0);
	/* the rest of it is the zeros its re-seal would have written, as
	 * long as a later block proves the file grew past it */
	CHECK_EQ(rkfs_file_read(&f, fd, out, 10, 2995, &bad), 10);
	CHECK(memcmp(out, data + 2995, 5) == 0 && rkfs_is_zero(out + 5, 5));
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), -EBADMSG);
	CHECK_EQ(bad, 0);
	SETUP(rkfs_pwrite_full(fd, "\x01\x02\x03\x04\x05\x06\x07\x08", 8,
			       rkfs_block_offset(1) + 100) == 0);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 3000, 0, &bad), 3000);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 10, 2995, &bad), -EBADMSG);
	CHECK_EQ(bad, 0);
	rkfs_file_release(&f);
	rkfs_keyring_free(kr);
	close(fd);
}

static const struct op ops[] = {
	{ "append past the final block", 8192 + 100, OP_WRITE, 12288, 5000, 0,
	  0 },
	{ "append past a full final", 8192, OP_WRITE, 8192, 9000, 0, 0 },
	{ "append inside the final", 5000, OP_WRITE, 5000, 6000, 0, 0 },
	{ "append after a gap", 5000, OP_WRITE, 20000, 3000, 0, 0 },
	{ "append 64 KiB", 3000, OP_WRITE, 4096, 65536, 0, 0 },
	{ "extend by truncate", 5000, OP_TRUNCATE, 30000, 0, 0, 0 },
	{ "overwrite inside a block", 20000, OP_WRITE, 6000, 100, 0, 0 },
	{ "overwrite across blocks", 20000, OP_WRITE, 4000, 5000, 0, 0 },
	{ "truncate down", 20000, OP_TRUNCATE, 9000, 0, 0, 0 },
	{ "truncate down to a boundary", 20000, OP_TRUNCATE, 8192, 0, 0, 0 },
	{ "truncate down, same block", 7000, OP_TRUNCATE, 5000, 0, 0, 0 },
	{ "rekey copy", 20000, OP_REKEY, 0, 0, 0, 0 },
	/* a file with no header yet (0 bytes): its first write brings it,
	 * in the same write as block 0 when that is where it starts */
	{ "first write, small", 0, OP_WRITE, 0, 1000, 0, 0 },
	{ "first write, 3 blocks", 0, OP_WRITE, 100, 9000, 0, 0 },
	{ "first write after a gap", 0, OP_WRITE, 5000, 1000, 0, 0 },
	{ "truncate to zero", 9000, OP_TRUNCATE, 0, 0, 0, 0 },
	/* files that may have holes: the proof (mark 2) must survive */
	{ "holes: append inside final", 12788, OP_WRITE, 12788, 2000, 4096,
	  12288 },
	{ "holes: append past final", 12788, OP_WRITE, 20480, 3000, 4096,
	  12288 },
	{ "holes: extend by truncate", 12788, OP_TRUNCATE, 30000, 0, 4096,
	  12288 },
	{ "holes: truncate down", 20288, OP_TRUNCATE, 12388, 0, 4096,
	  12288 },
	{ "holes: overwrite the final", 12788, OP_WRITE, 12300, 400, 4096,
	  12288 },
};

/* Build the image of one crash state into fd. */
static void put_state(int fd, const struct image *a, const struct image *b,
		      const size_t *pages, size_t np, const bool *in,
		      uint64_t size)
{
	uint8_t *img = calloc(1, size + 1);

	SETUP(img != NULL);
	for (uint64_t x = 0; x < size; x++)
		img[x] = x < a->len ? a->b[x] : 0;
	for (size_t k = 0; k < np; k++) {
		uint64_t lo = (uint64_t)pages[k] * PAGE;

		if (!in[k])
			continue;
		for (uint64_t x = lo; x < lo + PAGE && x < size; x++)
			img[x] = x < b->len ? b->b[x] : 0;
	}
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_pwrite_full(fd, img, size, 0) == 0);
	free(img);
}

/*
 * The repair against its own crashes: run it on a damaged file, record its
 * barriers and pages; from every crash state of the run, running it again
 * must give exactly the repaired file.
 */
static long repair_crashes(const char *name, struct rkfs_keyring *kr, int fd,
			   const uint8_t *want, uint64_t wlen)
{
	struct rkfs_repair_result res;
	long states = 0, fails = 0;
	int sfd = tmpfd();

	nepochs = 0;
	memset(ntsizes, 0, sizeof(ntsizes));
	snap(&epochs[0], fd);
	track_fd = fd;
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, true), 0);
	track_fd = -1;
	CHECK_EQ(res.action, RKFS_REPAIR_REPAIRED);
	snap(&epochs[++nepochs], fd);
	for (int e = 0; e < nepochs; e++) {
		const struct image *a = &epochs[e], *b = &epochs[e + 1];
		size_t maxlen = a->len > b->len ? a->len : b->len;
		size_t npg = (maxlen + PAGE - 1) / PAGE, np = 0;
		size_t pages[64];
		bool in[64];
		uint64_t sizes[MAX_SIZES + 2];
		int ns = 0;

		for (size_t pg = 0; pg < npg; pg++)
			if (page_changed(a, b, pg)) {
				SETUP(np < 16);
				pages[np++] = pg;
			}
		sizes[ns++] = a->len;
		sizes[ns++] = b->len;
		for (int k = 0; k < ntsizes[e]; k++)
			sizes[ns++] = tsizes[e][k];
		for (int si = 0; si < ns; si++) {
			for (uint64_t m = 0; m < (1ULL << np); m++) {
				struct rkfs_file f;
				uint8_t *got;
				uint64_t bad, n;
				bool ok;

				for (size_t k = 0; k < np; k++)
					in[k] = m >> k & 1;
				put_state(sfd, a, b, pages, np, in, sizes[si]);
				states++;
				ok = rkfs_repair_file(&res, sfd, kr, true) == 0 &&
				     res.action != RKFS_REPAIR_REFUSED &&
				     rkfs_file_load(&f, sfd, kr) == 0;
				if (!ok) {
					fails++;
					continue;
				}
				got = read_all(&f, sfd, &n);
				if (rkfs_file_verify(&f, sfd, &bad) != 0 ||
				    n != wlen || memcmp(got, want, n) != 0) {
					if (fails < 3)
						fprintf(stderr,
							"%s: epoch %d size %llu"
							": wrong after rerun\n",
							name, e,
							(unsigned long long)
								sizes[si]);
					fails++;
				}
				free(got);
				rkfs_file_release(&f);
			}
		}
	}
	for (int e = 0; e <= nepochs; e++)
		free(epochs[e].b);
	printf("  %-28s %3d epoch(s) %7ld states, %ld failed\n", name,
	       nepochs, states, fails);
	CHECK_EQ(fails, 0);
	close(sfd);
	return states;
}

/* Damaged files as crashes leave them, repaired; and what is refused. */
static long test_repair(void)
{
	struct rkfs_keyring *kr = make_keyring();
	struct rkfs_repair_result res;
	uint8_t data[20000], want[20000], junk[5000], *got;
	struct rkfs_file f;
	uint64_t bad, n;
	long states = 0;
	struct stat st;
	int fd = tmpfd();

	randombytes_buf(data, sizeof(data));
	randombytes_buf(junk, sizeof(junk));

	/* an unreadable tail: 9000 good bytes, then (as a crash leaves an
	 * append whose new blocks are torn) zeros to the end of the final
	 * block's slot and a block and a half of junk */
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 9000, 0, kr, &bad) == 9000);
	rkfs_file_release(&f);
	SETUP(rkfs_pwrite_full(fd, junk, 5000, rkfs_block_offset(3)) == 0);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, false), 0);
	CHECK_EQ(res.action, RKFS_REPAIR_REPAIRED);
	CHECK_EQ(res.new_size, 9000);
	CHECK_EQ(res.first_dropped, 3);
	CHECK_EQ(res.last_dropped, 4);
	CHECK_EQ(res.lost_bytes, res.old_size - 9000);
	SETUP(fstat(fd, &st) == 0);
	CHECK_EQ(st.st_size, rkfs_block_offset(3) + 5000); /* dry run */
	states += repair_crashes("repair: torn tail", kr, fd, data, 9000);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, true), 0);
	CHECK_EQ(res.action, RKFS_REPAIR_CLEAN);

	/* the tail ends with a full non-final block: re-sealed as final */
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 12000, 0, kr, &bad) == 12000);
	rkfs_file_release(&f);
	SETUP(syscall(SYS_ftruncate, fd, rkfs_block_offset(2)) == 0);
	states += repair_crashes("repair: non-final at the end", kr, fd, data,
				 8192);
	/* no proof of holes: the new final block is sealed with mark 1 */
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	CHECK_EQ(f.holes, RKFS_MARK_FINAL);
	rkfs_file_release(&f);

	/* an append whose re-seal never landed: block 0 is still final
	 * (3000 bytes), block 1 is good; block 0 is completed with zeros */
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 3000, 0, kr, &bad) == 3000);
	{
		uint8_t old[3040], z[1096] = { 0 };

		SETUP(rkfs_pread_full(fd, old, sizeof(old), 32) == 3040);
		SETUP(rkfs_file_write(&f, fd, data + 4096, 2000, 4096, kr,
				      &bad) == 2000);
		SETUP(rkfs_pwrite_full(fd, old, sizeof(old), 32) == 0);
		SETUP(rkfs_pwrite_full(fd, z, sizeof(z), 32 + 3040) == 0);
	}
	rkfs_file_release(&f);
	memcpy(want, data, 3000);
	memset(want + 3000, 0, 1096);
	memcpy(want + 4096, data + 4096, 2000);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, false), 0);
	CHECK_EQ(res.completed, 1);
	CHECK_EQ(res.lost_bytes, 1096);
	CHECK_EQ(res.new_size, 6096);
	states += repair_crashes("repair: interrupted append", kr, fd, want,
				 6096);

	/* a file with holes and a torn tail: its last good block proves
	 * mark 2, so the holes stay holes and the new end keeps mark 2 */
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 3000, 0, kr, &bad) == 3000);
	SETUP(rkfs_file_write(&f, fd, data + 12288, 3000, 12288, kr, &bad) ==
	      3000);
	rkfs_file_release(&f);
	SETUP(rkfs_pwrite_full(fd, junk, 5000, rkfs_block_offset(4)) == 0);
	memset(want, 0, sizeof(want));
	memcpy(want, data, 3000);
	memcpy(want + 12288, data + 12288, 3000);
	states += repair_crashes("repair: holes, torn tail", kr, fd, want,
				 15288);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	CHECK_EQ(f.holes, RKFS_MARK_FINAL_HOLES);
	rkfs_file_release(&f);

	/* a zeroed block in a file that may not have holes is no hole:
	 * refused like any bad block, and named */
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 12388, 0, kr, &bad) == 12388);
	rkfs_file_release(&f);
	{
		uint8_t z[RKFS_CBLOCK_SIZE] = { 0 };

		SETUP(rkfs_pwrite_full(fd, z, sizeof(z),
				       rkfs_block_offset(1)) == 0);
	}
	SETUP(rkfs_pwrite_full(fd, junk, 5000, rkfs_block_offset(3)) == 0);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, true), 0);
	CHECK_EQ(res.action, RKFS_REPAIR_REFUSED);
	CHECK_EQ(res.bad_block, 1);
	CHECK(strstr(res.msg, "all zero") != NULL);

	/* a bad block in the middle: refused, nothing written */
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 20000, 0, kr, &bad) == 20000);
	rkfs_file_release(&f);
	SETUP(rkfs_pwrite_full(fd, junk, 100, rkfs_block_offset(2) + 50) == 0);
	SETUP(rkfs_pwrite_full(fd, junk, 10, rkfs_size_to_cipher(20000)) ==
	      0);
	SETUP(fstat(fd, &st) == 0);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, true), 0);
	CHECK_EQ(res.action, RKFS_REPAIR_REFUSED);
	CHECK_EQ(res.bad_block, 2);
	{
		struct stat st2;

		SETUP(fstat(fd, &st2) == 0);
		CHECK_EQ(st2.st_size, st.st_size);
	}

	/* nothing authenticates (another key, or not ours): refused */
	SETUP(syscall(SYS_ftruncate, fd, 32) == 0);
	SETUP(rkfs_pwrite_full(fd, junk, 5000, 32) == 0);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, true), 0);
	CHECK_EQ(res.action, RKFS_REPAIR_REFUSED);
	SETUP(fstat(fd, &st) == 0);
	CHECK_EQ(st.st_size, 5032);

	/* a clean file is left alone */
	SETUP(syscall(SYS_ftruncate, fd, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 5000, 0, kr, &bad) == 5000);
	CHECK_EQ(rkfs_repair_file(&res, fd, kr, true), 0);
	CHECK_EQ(res.action, RKFS_REPAIR_CLEAN);
	got = read_all(&f, fd, &n);
	CHECK(n == 5000 && memcmp(got, data, n) == 0);
	free(got);
	rkfs_file_release(&f);
	rkfs_keyring_free(kr);
	close(fd);
	return states;
}

/*
 * The barrier before a re-seal is paid once per sync: only a final block
 * that may be durable needs it.
 */
static void test_barrier_cost(void)
{
	struct rkfs_keyring *kr = make_keyring();
	uint8_t data[4096] = { 1 };
	struct rkfs_file f;
	uint64_t bad;
	int fd = tmpfd();

	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data, 100, 0, kr, &bad) == 100);
	nbarriers = 0;
	for (int i = 1; i <= 5; i++)
		SETUP(rkfs_file_write(&f, fd, data, sizeof(data),
				      (uint64_t)i * 4096, kr, &bad) == 4096);
	CHECK_EQ(nbarriers, 0); /* never synced: nothing durable to protect */
	rkfs_file_sync_done(&f, rkfs_file_sync_begin(&f));
	for (int i = 6; i <= 10; i++)
		SETUP(rkfs_file_write(&f, fd, data, sizeof(data),
				      (uint64_t)i * 4096, kr, &bad) == 4096);
	CHECK_EQ(nbarriers, 1); /* the first re-seal after the sync only */
	SETUP(rkfs_file_write(&f, fd, data, 10, 3, kr, &bad) == 10);
	CHECK_EQ(nbarriers, 1); /* overwrites need none */
	rkfs_file_release(&f);
	rkfs_keyring_free(kr);
	close(fd);
}

int main(void)
{
	long total = 0;

	SETUP(rkfs_crypt_init() == 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		run_op(&ops[i], &total);
	total += test_repair();
	printf("crash states checked: %ld\n", total);
	test_tails();
	test_barrier_cost();
	return check_report("test_crash");
}
