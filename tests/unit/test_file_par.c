/*
 * The parallel writer: every rkfs_file_write_mt() leaves the same
 * plaintext, size, dense flag and backing size as rkfs_file_write() does
 * for the same write (growing writes, writes past the end that leave
 * holes, writes into holes, unaligned ends), the file authenticates, and
 * the helper really took part.  Partial blocks that fail to authenticate
 * fail the write before anything is written, on either half; on a full
 * disk (a small tmpfs, when it can be mounted) nothing already in the
 * file is lost.
 */
#include "rekeyfs/file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"
#include "../../src/file_i.h"

#define MAXSZ (3 * 1024 * 1024)
#define KIB 1024

static struct rkfs_keyring *make_keyring(void)
{
	char text[256], e1[80];
	unsigned char k[RKFS_KEY_LEN];
	struct rkfs_keyring *kr;
	struct rkfs_error err = { 0 };

	memset(k, 0x44, sizeof(k));
	rkfs_key_encode(e1, sizeof(e1), k);
	snprintf(text, sizeof(text),
		 "[keyring]\nprimary = 1\n[generation 1]\nkey = %s\n", e1);
	sodium_memzero(k, sizeof(k));
	SETUP(rkfs_keyring_parse(&kr, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	return kr;
}

static int tmpfile_in(const char *dir)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/rkfs-unit-XXXXXX", dir);
	fd = mkstemp(path);
	SETUP(fd >= 0);
	unlink(path);
	return fd;
}

static uint64_t xrand(uint64_t n)
{
	return n ? randombytes_uniform((uint32_t)n) : 0;
}

/* One file written by rkfs_file_write (a), one by write_mt (b), a model. */
struct pair {
	struct rkfs_file a, b;
	int fa, fb;
	uint8_t *model;
	uint64_t msize;
	uint8_t *got;
};

static void pair_open(struct pair *p, const struct rkfs_keyring *kr)
{
	p->fa = tmpfile_in("/tmp");
	p->fb = tmpfile_in("/tmp");
	p->model = calloc(1, MAXSZ);
	p->got = malloc(MAXSZ);
	p->msize = 0;
	SETUP(p->model && p->got);
	SETUP(rkfs_file_load(&p->a, p->fa, kr) == 0);
	SETUP(rkfs_file_load(&p->b, p->fb, kr) == 0);
}

static void pair_close(struct pair *p)
{
	rkfs_file_release(&p->a);
	rkfs_file_release(&p->b);
	close(p->fa);
	close(p->fb);
	free(p->model);
	free(p->got);
}

/* The whole of f reads back as the model. */
static void check_content(struct pair *p, struct rkfs_file *f, int fd)
{
	uint64_t bad = UINT64_MAX;

	CHECK_EQ(f->size, p->msize);
	memset(p->got, 0xa5, MAXSZ);
	CHECK_EQ(rkfs_file_read(f, fd, p->got, MAXSZ, 0, &bad),
		 (ssize_t)p->msize);
	CHECK(memcmp(p->got, p->model, p->msize) == 0); /* not secret */
}

static void check_pair(struct pair *p)
{
	uint64_t bad = UINT64_MAX;

	CHECK_EQ(p->a.size, p->msize);
	CHECK_EQ(p->b.size, p->msize);
	CHECK_EQ(p->a.dense, p->b.dense);
	CHECK_EQ(backing_size(p->fa), backing_size(p->fb));
	check_content(p, &p->b, p->fb);
	CHECK_EQ(rkfs_file_verify(&p->b, p->fb, &bad), 0);
}

static void pair_write(struct pair *p, const uint8_t *buf, size_t len,
		       uint64_t off, const struct rkfs_keyring *kr,
		       struct rkfs_sealer *s)
{
	uint64_t bad = UINT64_MAX;

	CHECK_EQ(rkfs_file_write(&p->a, p->fa, buf, len, off, kr, &bad),
		 (ssize_t)len);
	CHECK_EQ(rkfs_file_write_mt(&p->b, p->fb, buf, len, off, kr, &bad, s),
		 (ssize_t)len);
	memcpy(p->model + off, buf, len);
	if (off + len > p->msize)
		p->msize = off + len;
}

static void pair_truncate(struct pair *p, uint64_t size,
			  const struct rkfs_keyring *kr)
{
	uint64_t bad = UINT64_MAX;

	CHECK_EQ(rkfs_file_truncate(&p->a, p->fa, size, kr, &bad), 0);
	CHECK_EQ(rkfs_file_truncate(&p->b, p->fb, size, kr, &bad), 0);
	if (size < p->msize)
		memset(p->model + size, 0, p->msize - size);
	p->msize = size;
}

/* The cases named in the header comment, one by one, then at random. */
static void test_same_as_write(const struct rkfs_keyring *kr,
			       struct rkfs_sealer *s, bool helped)
{
	static const struct {
		uint64_t off;
		size_t len;
	} cases[] = {
		{ 0, 1024 * KIB },		  /* new file, header first */
		{ 2048 * KIB + 123, 600 * KIB },  /* past the end: a hole */
		{ 1280 * KIB + 77, 700 * KIB },	  /* into the hole, unaligned */
		{ 100 * KIB + 5, 300 * KIB },	  /* overwrite, both ends partial */
		{ 2600 * KIB, 256 * KIB },	  /* grows from the final block */
		{ 256 * KIB, 256 * KIB },	  /* aligned overwrite */
		{ 0, 4096 * 64 + 1 },		  /* 65 blocks, the last of 1 byte */
	};
	struct pair p;
	uint8_t *buf = malloc(MAXSZ);
	unsigned long runs = rkfs_sealer_runs(s);

	SETUP(buf);
	pair_open(&p, kr);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		randombytes_buf(buf, cases[i].len);
		pair_write(&p, buf, cases[i].len, cases[i].off, kr, s);
		check_pair(&p);
	}
	/* Each large write ran on the helper: a seal and then a write, or
	 * one job that seals and writes when the file grows (3 of them). */
	CHECK_EQ(rkfs_sealer_runs(s) - runs,
		 helped ? 2 * sizeof(cases) / sizeof(cases[0]) - 3 : 0);
	CHECK(!p.b.dense);

	/* The old final block re-sealed separately: a write that starts
	 * two blocks past an unaligned end. */
	pair_truncate(&p, 1000 * KIB + 10, kr);
	check_pair(&p);
	randombytes_buf(buf, 400 * KIB);
	pair_write(&p, buf, 400 * KIB, 1000 * KIB + 2 * 4096 + 1, kr, s);
	check_pair(&p);

	for (int op = 0; op < 150; op++) {
		uint64_t off, len;

		if (xrand(8) == 0) {
			pair_truncate(&p, xrand(MAXSZ), kr);
		} else {
			off = xrand(MAXSZ - 1);
			if (xrand(3) == 0)
				off -= off % 4096;
			len = xrand(2) ? 256 * KIB + xrand(1024 * KIB)
				       : 1 + xrand(40000);
			if (len > MAXSZ - off)
				len = MAXSZ - off;
			randombytes_buf(buf, len);
			pair_write(&p, buf, len, off, kr, s);
		}
		CHECK_EQ(p.a.size, p.b.size);
		CHECK_EQ(p.a.dense, p.b.dense);
		if (op % 10 == 9)
			check_pair(&p);
	}
	check_pair(&p);
	check_content(&p, &p.a, p.fa);

	/* Loaded afresh, the file is what the model says. */
	rkfs_file_release(&p.b);
	SETUP(rkfs_file_load(&p.b, p.fb, kr) == 0);
	check_content(&p, &p.b, p.fb);
	pair_close(&p);
	free(buf);
}

/*
 * A partial block that fails to authenticate fails the write with
 * -EBADMSG and its index, whichever half it is in, and nothing is
 * written: the backing file is byte for byte what it was.
 */
static void test_bad_block(const struct rkfs_keyring *kr,
			   struct rkfs_sealer *s)
{
	static const uint64_t which[] = { 10, 300 }; /* first, last block */
	size_t len = 1300 * KIB, clen;
	uint8_t *buf = malloc(len), *before, *after;
	struct rkfs_file f;
	int fd = tmpfile_in("/tmp");

	SETUP(buf);
	randombytes_buf(buf, len);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, buf, len, 0, kr, NULL) == (ssize_t)len);
	clen = (size_t)backing_size(fd);
	before = malloc(clen);
	after = malloc(clen);
	SETUP(before && after);
	for (size_t k = 0; k < 2; k++) {
		uint64_t bad = UINT64_MAX, off = rkfs_block_offset(which[k]) + 40;
		uint8_t c;

		SETUP(pread(fd, &c, 1, (off_t)off) == 1);
		c ^= 1;
		SETUP(pwrite(fd, &c, 1, (off_t)off) == 1);
		SETUP(rkfs_pread_full(fd, before, clen, 0) == (ssize_t)clen);
		/* Blocks 10 .. 300, both ends partial. */
		CHECK_EQ(rkfs_file_write_mt(&f, fd, buf, 290 * 4096,
					    10 * 4096 + 7, kr, &bad, s),
			 -EBADMSG);
		CHECK_EQ(bad, which[k]);
		CHECK_EQ(f.size, len);
		SETUP(rkfs_pread_full(fd, after, clen, 0) == (ssize_t)clen);
		CHECK(memcmp(before, after, clen) == 0); /* not secret */
		c ^= 1;
		SETUP(pwrite(fd, &c, 1, (off_t)off) == 1);
	}
	CHECK_EQ(rkfs_file_verify(&f, fd, NULL), 0);
	rkfs_file_release(&f);
	close(fd);
	free(before);
	free(after);
	free(buf);
}

/* With the only helper claimed, or no sealer, write_mt runs alone. */
static void test_alone(const struct rkfs_keyring *kr, struct rkfs_sealer *s)
{
	struct rkfs_helper *h = rkfs_sealer_claim(s);
	unsigned long runs = rkfs_sealer_runs(s);
	struct pair p;
	uint8_t *buf = malloc(MAXSZ);

	SETUP(h && buf);
	CHECK(rkfs_sealer_claim(s) == NULL);
	pair_open(&p, kr);
	randombytes_buf(buf, 900 * KIB);
	pair_write(&p, buf, 900 * KIB, 3, kr, s);
	pair_write(&p, buf, 500 * KIB, 1500 * KIB, kr, NULL);
	check_pair(&p);
	CHECK_EQ(rkfs_sealer_runs(s), runs);
	rkfs_helper_release(h);
	pair_close(&p);
	free(buf);
}

/*
 * Two writers share one sealer: at most one has the helper at a time and
 * both succeed.  (No CHECK on these threads: its counters are not atomic.)
 */
struct writer {
	const struct rkfs_keyring *kr;
	struct rkfs_sealer *s;
	struct pair p;
	uint8_t *buf;
	int fails;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t len = 512 * KIB;

	for (int i = 0; i < 20; i++) {
		uint64_t off = xrand(MAXSZ / 2);

		if (rkfs_file_write(&w->p.a, w->p.fa, w->buf + off, len, off,
				    w->kr, NULL) != (ssize_t)len ||
		    rkfs_file_write_mt(&w->p.b, w->p.fb, w->buf + off, len,
				       off, w->kr, NULL, w->s) != (ssize_t)len)
			w->fails++;
		memcpy(w->p.model + off, w->buf + off, len);
		if (off + len > w->p.msize)
			w->p.msize = off + len;
	}
	return NULL;
}

static void test_two_writers(const struct rkfs_keyring *kr,
			     struct rkfs_sealer *s)
{
	struct writer w[2];
	pthread_t t[2];

	for (int i = 0; i < 2; i++) {
		w[i].kr = kr;
		w[i].s = s;
		w[i].fails = 0;
		w[i].buf = malloc(MAXSZ);
		SETUP(w[i].buf);
		randombytes_buf(w[i].buf, MAXSZ);
		pair_open(&w[i].p, kr);
		SETUP(pthread_create(&t[i], NULL, writer_main, &w[i]) == 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].fails, 0);
		check_pair(&w[i].p);
		pair_close(&w[i].p);
		free(w[i].buf);
	}
}

/* An unnamed file in the directory dirfd. */
static int tmpfile_at(int dirfd)
{
	int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	SETUP(fd >= 0);
	return fd;
}

/* Fill the filesystem of dirfd with a filler file; returns its fd. */
static int fill(int dirfd)
{
	static uint8_t chunk[64 * KIB];
	int fd = tmpfile_at(dirfd);

	while (write(fd, chunk, sizeof(chunk)) > 0)
		;
	while (write(fd, chunk, 4096) > 0)
		;
	return fd;
}

/*
 * A full disk: a write into a hole, and a growing write that starts inside
 * the file, fail with -ENOSPC before anything is overwritten; one past the
 * end is cut back.  The file reads back whole and authenticates.
 */
static void test_enospc(const struct rkfs_keyring *kr, struct rkfs_sealer *s)
{
	char dir[] = "/tmp/rkfs-unit-nospc-XXXXXX";
	static const struct {
		uint64_t off;
		size_t len;
	} cases[] = {
		{ 1024 * KIB + 5, 700 * KIB },
		{ 1900 * KIB + 11, 600 * KIB },
		{ 2300 * KIB, 600 * KIB },
	};
	struct pair p;
	uint8_t *buf = malloc(MAXSZ);
	int dirfd, filler;

	SETUP(buf && mkdtemp(dir));
	if (mount("tmpfs", dir, "tmpfs", 0, "size=8m") < 0) {
		printf("test_file_par: no tmpfs (%s), ENOSPC part skipped\n",
		       strerror(errno));
		rmdir(dir);
		free(buf);
		return;
	}
	/* Detached at once: it lives while files on it are open and goes
	 * away with them, however this test ends. */
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	SETUP(umount2(dir, MNT_DETACH) == 0);
	rmdir(dir);
	SETUP(dirfd >= 0);
	pair_open(&p, kr);
	close(p.fb);
	rkfs_file_release(&p.b);
	p.fb = tmpfile_at(dirfd);
	SETUP(rkfs_file_load(&p.b, p.fb, kr) == 0);
	randombytes_buf(buf, 1024 * KIB);
	pair_write(&p, buf, 1024 * KIB, 0, kr, s);
	pair_write(&p, buf, 100 * KIB, 2048 * KIB, kr, s); /* hole before */
	filler = fill(dirfd);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t bad = UINT64_MAX;
		off_t size = backing_size(p.fb);

		randombytes_buf(buf, cases[i].len);
		CHECK_EQ(rkfs_file_write_mt(&p.b, p.fb, buf, cases[i].len,
					    cases[i].off, kr, &bad, s),
			 -ENOSPC);
		CHECK_EQ(backing_size(p.fb), size);
		check_content(&p, &p.b, p.fb);
		CHECK_EQ(rkfs_file_verify(&p.b, p.fb, &bad), 0);
	}
	/* With room again, the same writes go through. */
	close(filler);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		randombytes_buf(buf, cases[i].len);
		pair_write(&p, buf, cases[i].len, cases[i].off, kr, s);
	}
	check_pair(&p);
	pair_close(&p);
	close(dirfd);
	free(buf);
}

int main(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_sealer *s, *s0;

	SETUP(rkfs_crypt_init() == 0);
	kr = make_keyring();
	SETUP(rkfs_sealer_start(&s, 1) == 0);
	SETUP(rkfs_sealer_start(&s0, 0) == 0);
	test_same_as_write(kr, s, true);
	test_bad_block(kr, s);
	test_alone(kr, s);
	test_two_writers(kr, s);
	test_same_as_write(kr, s0, false);
	test_enospc(kr, s);
	rkfs_sealer_stop(s0);
	CHECK_EQ(rkfs_sealer_start(&s0, 65), -EINVAL);
	CHECK(s0 == NULL);
	rkfs_sealer_stop(NULL);
	rkfs_sealer_stop(s);
	rkfs_keyring_free(kr);
	return check_report("test_file_par");
}
