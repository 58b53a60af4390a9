/*
 * Authenticated holes (rekeyfs/format.h): a file that never had a hole
 * refuses all-zero blocks (zeroed on disk or punched out of the backing
 * file) on read, on read-modify-write, on verify and on the rekey copy;
 * files that really get holes (a write past the end, truncate and
 * fallocate growing them) read them as zeros, across reloads and after
 * writes that re-seal the final block; the flag cannot be taken off; files
 * written before the flag existed keep their rules; the rekey copy carries
 * the flag and claims holes only when it has one.
 */
#include "rekeyfs/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"

#define B RKFS_BLOCK_SIZE
#define CB RKFS_CBLOCK_SIZE

static struct rkfs_keyring *kr;
static uint8_t data[16 * B], out[16 * B];

static struct rkfs_keyring *make_keyring(void)
{
	char text[256], e1[80];
	unsigned char k[RKFS_KEY_LEN];
	struct rkfs_keyring *r;
	struct rkfs_error err = {0};

	memset(k, 0x66, sizeof(k));
	rkfs_key_encode(e1, sizeof(e1), k);
	snprintf(text, sizeof(text),
		 "[keyring]\nprimary = 4\n[generation 4]\nkey = %s\n", e1);
	sodium_memzero(k, sizeof(k));
	SETUP(rkfs_keyring_parse(&r, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	return r;
}

/* A file written through the file layer: len bytes of data at off. */
static int make(uint64_t off, size_t len)
{
	struct rkfs_file f;
	int fd = tmpfile_fd();

	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, data + off, len, off, kr, NULL) ==
	      (ssize_t)len);
	rkfs_file_release(&f);
	return fd;
}

static void zero_block(int fd, uint64_t i)
{
	static const uint8_t z[CB];

	SETUP(rkfs_pwrite_full(fd, z, CB, (off_t)rkfs_block_offset(i)) == 0);
}

/* Read len bytes at off from a freshly loaded f (nothing cached). */
static ssize_t read_fresh(int fd, uint64_t off, size_t len, uint64_t *bad)
{
	struct rkfs_file f;
	ssize_t n;

	*bad = UINT64_MAX;
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	n = rkfs_file_read(&f, fd, out, len, off, bad);
	rkfs_file_release(&f);
	return n;
}

static int verify_fresh(int fd, uint64_t *bad)
{
	struct rkfs_file f;
	int ret;

	*bad = UINT64_MAX;
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	ret = rkfs_file_verify(&f, fd, bad);
	rkfs_file_release(&f);
	return ret;
}

/* The mark the final block of fd was sealed with (-1: neither opens). */
static int final_mark(int fd)
{
	struct rkfs_file f;
	uint8_t cb[CB], pb[B];
	uint64_t i;
	size_t cl;
	int mark = -1;

	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(f.size > 0);
	i = (f.size - 1) / B;
	cl = (size_t)(rkfs_size_to_cipher(f.size) - rkfs_block_offset(i));
	SETUP(rkfs_pread_full(fd, cb, cl, (off_t)rkfs_block_offset(i)) ==
	      (ssize_t)cl);
	for (int m = RKFS_MARK_FINAL; m <= RKFS_MARK_FINAL_HOLES; m++)
		if (rkfs_block_open(pb, cb, cl, i, m, &f.hdr, f.key) == 0)
			mark = m;
	rkfs_file_release(&f);
	return mark;
}

static bool zeros(const uint8_t *p, size_t len)
{
	return rkfs_is_zero(p, len);
}

/* A file that never had a hole: every way of zeroing a block is caught. */
static void test_dense(void)
{
	struct rkfs_file f;
	uint64_t bad;
	int fd = make(0, 3 * B + 100);

	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL);
	zero_block(fd, 1);
	/* read, cold and with the state cached by an earlier read */
	CHECK_EQ(read_fresh(fd, B, 10, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 3 * B + 100, 0, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 10, 3 * B, &bad), 10);
	CHECK_EQ(f.holes, RKFS_MARK_FINAL);
	CHECK_EQ(rkfs_file_read(&f, fd, out, B, B, &bad), -EBADMSG);
	CHECK_EQ(rkfs_file_read(&f, fd, out, B, 0, &bad), B);
	CHECK(memcmp(out, data, B) == 0);
	/* A partial write must not re-seal the zeros as authentic. */
	bad = UINT64_MAX;
	CHECK_EQ(rkfs_file_write(&f, fd, data, 10, B + 5, kr, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);
	/* No holes to seek to: the zeroed block is data (that fails). */
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_HOLE), 3 * B + 100);
	CHECK_EQ(rkfs_file_seek(&f, fd, B, SEEK_DATA), B);
	/* Truncating or appending keeps the file without holes. */
	CHECK_EQ(rkfs_file_truncate(&f, fd, 3 * B + 50, kr, &bad), 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 100, 3 * B + 50, kr, &bad), 100);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL);
	CHECK_EQ(read_fresh(fd, B, 10, &bad), -EBADMSG);
	CHECK_EQ(verify_fresh(fd, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_zero_block(&f, fd, 1), 1);
	CHECK_EQ(rkfs_file_zero_block(&f, fd, 0), 0);
	CHECK_EQ(rkfs_file_zero_block(&f, fd, 99), 0);
	/* A full overwrite of the zeroed block repairs it. */
	CHECK_EQ(rkfs_file_write(&f, fd, data + B, B, B, kr, &bad), B);
	rkfs_file_release(&f);
	CHECK_EQ(verify_fresh(fd, &bad), 0);
	CHECK_EQ(read_fresh(fd, 0, 3 * B + 150, &bad), 3 * B + 150);
	CHECK(memcmp(out, data, 3 * B) == 0);
	close(fd);

	/* A range punched out of the backing file: verify's SEEK_DATA skip
	 * and the read both refuse it. */
	fd = make(0, 8 * B);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)rkfs_block_offset(1), 5 * CB) == 0) {
		CHECK_EQ(verify_fresh(fd, &bad), -EBADMSG);
		CHECK_EQ(bad, 1);
		CHECK_EQ(read_fresh(fd, 3 * B, 10, &bad), -EBADMSG);
		CHECK_EQ(bad, 3);
	}
	close(fd);

	/* Taking the flag off the header breaks every block. */
	fd = make(0, 2 * B);
	{
		uint8_t hdr[RKFS_HEADER_LEN];

		SETUP(rkfs_pread_full(fd, hdr, sizeof(hdr), 0) == sizeof(hdr));
		hdr[31] &= (uint8_t)~RKFS_FLAG_HOLE_AUTH;
		SETUP(rkfs_pwrite_full(fd, hdr, sizeof(hdr), 0) == 0);
		zero_block(fd, 0);
		CHECK_EQ(read_fresh(fd, 0, 2 * B, &bad), -EBADMSG);
		CHECK_EQ(bad, 1);
		CHECK_EQ(verify_fresh(fd, &bad), -EBADMSG);
	}
	close(fd);

	/* A file that ends on its first block never needs a hole. */
	fd = make(0, 100);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL);
	close(fd);
}

/* Files that really get holes read them as zeros, for good. */
static void test_sparse(void)
{
	struct rkfs_file f;
	uint64_t bad;
	int fd;

	/* A write that leaves whole blocks unwritten. */
	fd = make(5 * B + 7, 100);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL_HOLES);
	CHECK_EQ(read_fresh(fd, 0, 5 * B + 107, &bad), 5 * B + 107);
	CHECK(zeros(out, 5 * B + 7));
	CHECK(memcmp(out + 5 * B + 7, data + 5 * B + 7, 100) == 0);
	CHECK_EQ(verify_fresh(fd, &bad), 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_DATA), 5 * B);
	/* Fill one hole, append, overwrite the final block whole, with the
	 * state unknown each time: the permission stays. */
	CHECK_EQ(rkfs_file_write(&f, fd, data + B, B, B, kr, &bad), B);
	rkfs_file_release(&f);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 5 * B + 107, 0, kr, &bad),
		 5 * B + 107);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL_HOLES);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 2 * B, 6 * B, kr, &bad), 2 * B);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 3 * B + 1, kr, &bad), 0);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL_HOLES);
	/* What the permission cannot tell: a zeroed block of a file that
	 * may have holes reads as a hole (the documented limit). */
	zero_block(fd, 2);
	CHECK_EQ(read_fresh(fd, 2 * B, B, &bad), B);
	CHECK(zeros(out, B));
	/* With its final block damaged, nothing proves the permission. */
	{
		uint8_t c;

		SETUP(pread(fd, &c, 1, (off_t)rkfs_block_offset(3) + 30) == 1);
		c ^= 1;
		SETUP(pwrite(fd, &c, 1, (off_t)rkfs_block_offset(3) + 30) == 1);
	}
	CHECK_EQ(read_fresh(fd, 2 * B, B, &bad), -EBADMSG);
	CHECK_EQ(bad, 2);
	close(fd);

	/* Truncate and fallocate growing a file give it holes; fallocate
	 * with keep_size does not. */
	fd = make(0, 10);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 3 * B, kr, &bad), 0);
	CHECK_EQ(f.holes, RKFS_MARK_FINAL_HOLES);
	rkfs_file_release(&f);
	CHECK_EQ(read_fresh(fd, 0, 3 * B, &bad), 3 * B);
	CHECK(memcmp(out, data, 10) == 0 && zeros(out + 10, 3 * B - 10));
	close(fd);

	fd = make(0, 10);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_allocate(&f, fd, 0, 10 * B, true, kr, &bad), 0);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(f.holes, 0); /* not known until the final block opens */
	CHECK_EQ(rkfs_file_allocate(&f, fd, 0, 10 * B, false, kr, &bad), 0);
	CHECK_EQ(f.holes, RKFS_MARK_FINAL_HOLES);
	rkfs_file_release(&f);
	CHECK_EQ(read_fresh(fd, 0, 10 * B, &bad), 10 * B);
	CHECK_EQ(verify_fresh(fd, &bad), 0);
	close(fd);

	/* Growing into the next block only pads the old one: no hole. */
	fd = make(0, 10);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 2 * B - 1, kr, &bad), 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 5, 2 * B + 3, kr, &bad), 5);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL);
	close(fd);

	/* Truncating to zero starts afresh, without holes. */
	fd = make(4 * B, 10);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 0, kr, &bad), 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 2 * B, 0, kr, &bad), 2 * B);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(fd), RKFS_MARK_FINAL);
	close(fd);
}

/*
 * A file as rekeyfs wrote it before RKFS_FLAG_HOLE_AUTH: flags 0, final
 * mark 1, block i of len bytes at data + i * B, holes where hole[i].
 */
static int make_legacy(size_t nblocks, size_t last_len, const bool *hole)
{
	struct rkfs_header h;
	unsigned char fk[RKFS_KEY_LEN];
	uint8_t cb[CB];
	const unsigned char *gk;
	int fd = tmpfile_fd(), err;

	gk = rkfs_keyring_key(kr, 4, &err);
	SETUP(gk != NULL);
	rkfs_header_init(&h, 4);
	h.flags = 0;
	rkfs_put_be32(h.raw + 28, 0);
	rkfs_crypt_file_key(fk, h.file_id, gk);
	SETUP(rkfs_pwrite_full(fd, h.raw, sizeof(h.raw), 0) == 0);
	for (size_t i = 0; i < nblocks; i++) {
		bool last = i + 1 == nblocks;
		size_t len = last ? last_len : B;

		if (hole[i] && !last)
			continue;
		rkfs_block_seal(cb, data + i * B, len, i, last, &h, fk);
		SETUP(rkfs_pwrite_full(fd, cb, len + RKFS_BLOCK_OVERHEAD,
				       (off_t)rkfs_block_offset(i)) == 0);
	}
	sodium_memzero(fk, sizeof(fk));
	return fd;
}

static void test_legacy(void)
{
	static const bool holes[4] = {false, true, false, false};
	static const bool none[4] = {false};
	struct rkfs_file f;
	uint64_t bad;
	int fd = make_legacy(4, 100, holes);

	/* Golden fixtures cover reading; here: writes keep the old rules. */
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK(rkfs_file_legacy_holes(&f));
	CHECK_EQ(f.hdr.flags, 0);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 3 * B + 100, 0, &bad),
		 3 * B + 100);
	CHECK(zeros(out + B, B));
	CHECK_EQ(rkfs_file_write(&f, fd, data, 50, 3 * B + 100, kr, &bad), 50);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 50, 9 * B, kr, &bad), 50);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 5 * B + 1, kr, &bad), 0);
	rkfs_file_release(&f);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(f.hdr.flags, 0);
	CHECK_EQ(rkfs_file_read(&f, fd, out, 5 * B + 1, 0, &bad), 5 * B + 1);
	CHECK(zeros(out + B, B) && zeros(out + 4 * B, B + 1));
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	rkfs_file_release(&f);
	close(fd);

	/* ... including the old weakness: a zeroed block reads as a hole. */
	fd = make_legacy(4, 100, none);
	zero_block(fd, 2);
	CHECK_EQ(read_fresh(fd, 2 * B, B, &bad), B);
	CHECK(zeros(out, B));
	close(fd);
}

/* Re-encrypt src into a new flagged file; returns the new fd or -errno. */
static int reencrypt(int src)
{
	struct rkfs_file f;
	struct rkfs_header nh;
	const unsigned char *gk;
	uint64_t bad;
	int dst = tmpfile_fd(), err, ret;

	gk = rkfs_keyring_key(kr, 4, &err);
	SETUP(gk != NULL);
	rkfs_header_init(&nh, 4);
	SETUP(rkfs_file_load(&f, src, kr) == 0);
	ret = rkfs_file_reencrypt(&f, src, dst, &nh, gk, &bad);
	rkfs_file_release(&f);
	if (ret < 0) {
		close(dst);
		return ret;
	}
	return dst;
}

static void test_reencrypt(void)
{
	static const bool holes[4] = {false, true, false, false};
	static const bool none[4] = {false};
	struct rkfs_file f;
	uint64_t bad;
	int src, dst;

	/* A legacy file with a hole: the copy has the flag and the hole. */
	src = make_legacy(4, 100, holes);
	dst = reencrypt(src);
	CHECK(dst >= 0);
	SETUP(rkfs_file_load(&f, dst, kr) == 0);
	CHECK_EQ(f.hdr.flags, RKFS_FLAG_HOLE_AUTH);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(dst), RKFS_MARK_FINAL_HOLES);
	CHECK_EQ(read_fresh(dst, 0, 3 * B + 100, &bad), 3 * B + 100);
	CHECK(zeros(out + B, B) && memcmp(out + 2 * B, data + 2 * B, B) == 0);
	close(src);
	close(dst);

	/* A legacy file without one: the copy refuses zero blocks. */
	src = make_legacy(4, 100, none);
	dst = reencrypt(src);
	CHECK(dst >= 0);
	CHECK_EQ(final_mark(dst), RKFS_MARK_FINAL);
	zero_block(dst, 1);
	CHECK_EQ(read_fresh(dst, B, 10, &bad), -EBADMSG);
	close(src);
	close(dst);

	/* A file that had holes and has none left: the copy is dense. */
	src = make(3 * B, 10);
	SETUP(rkfs_file_load(&f, src, kr) == 0);
	CHECK_EQ(rkfs_file_write(&f, src, data, 3 * B, 0, kr, &bad), 3 * B);
	rkfs_file_release(&f);
	CHECK_EQ(final_mark(src), RKFS_MARK_FINAL_HOLES);
	dst = reencrypt(src);
	CHECK(dst >= 0);
	CHECK_EQ(final_mark(dst), RKFS_MARK_FINAL);
	CHECK_EQ(read_fresh(dst, 0, 3 * B + 10, &bad), 3 * B + 10);
	CHECK(memcmp(out, data, 3 * B) == 0);
	close(src);
	close(dst);

	/* A file without holes and a zeroed block: no copy. */
	src = make(0, 3 * B);
	zero_block(src, 1);
	CHECK_EQ(reencrypt(src), -EBADMSG);
	close(src);
}

int main(void)
{
	SETUP(rkfs_crypt_init() == 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7 + i / B);
	kr = make_keyring();
	test_dense();
	test_sparse();
	test_legacy();
	test_reencrypt();
	rkfs_keyring_free(kr);
	return check_report("test_holes");
}
