/*
 * The file layer's answers about space: stat sizes for valid and corrupt
 * backing sizes, backing ranges, SEEK_DATA / SEEK_HOLE over holes and
 * data, fallocate with and without keep_size, and the header generation.
 */
#include "rekeyfs/file.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/format.h"
#include "rekeyfs/keyring.h"

#define B RKFS_BLOCK_SIZE
#define CB RKFS_CBLOCK_SIZE
#define H RKFS_HEADER_LEN
#define O RKFS_BLOCK_OVERHEAD

static struct rkfs_keyring *make_keyring(void)
{
	char text[256], e1[80];
	unsigned char k[RKFS_KEY_LEN];
	struct rkfs_keyring *kr;
	struct rkfs_error err = { 0 };

	memset(k, 0x55, sizeof(k));
	rkfs_key_encode(e1, sizeof(e1), k);
	snprintf(text, sizeof(text),
		 "[keyring]\nprimary = 3\n[generation 3]\nkey = %s\n", e1);
	sodium_memzero(k, sizeof(k));
	SETUP(rkfs_keyring_parse(&kr, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	return kr;
}

static void test_stat_size(void)
{
	/* Valid sizes: exact, and the inverse of rkfs_size_to_cipher(). */
	static const uint64_t plain[] = { 0, 1, B - 1, B, B + 1, 5 * B,
					  5 * B + 17, 1000000007 };

	CHECK_EQ(rkfs_file_stat_size(0), 0);
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		CHECK_EQ(rkfs_file_stat_size(rkfs_size_to_cipher(plain[i])),
			 plain[i]);
	/* Invalid: shorter than a header, a final block without plaintext,
	 * the whole blocks present. */
	CHECK_EQ(rkfs_file_stat_size(1), 0);
	CHECK_EQ(rkfs_file_stat_size(H - 1), 0);
	CHECK_EQ(rkfs_file_stat_size(H + 1), 0);
	CHECK_EQ(rkfs_file_stat_size(H + O), 0);
	CHECK_EQ(rkfs_file_stat_size(H + 2 * CB + O), 2 * B);
	CHECK_EQ(rkfs_file_stat_size(H + 2 * CB + 3), 2 * B);
}

static void test_backing_range(void)
{
	uint64_t s, e;

	rkfs_file_backing_range(0, B, &s, &e);
	CHECK_EQ(s, H);
	CHECK_EQ(e, H + CB);
	rkfs_file_backing_range(B - 1, 2, &s, &e); /* two partial blocks */
	CHECK_EQ(s, H);
	CHECK_EQ(e, H + 2 * CB);
	rkfs_file_backing_range(3 * B + 5, 10, &s, &e);
	CHECK_EQ(s, H + 3 * CB);
	CHECK_EQ(e, H + 4 * CB);
	rkfs_file_backing_range(2 * B, 256 * B, &s, &e);
	CHECK_EQ(s, H + 2 * CB);
	CHECK_EQ(e, H + 258 * CB);
	rkfs_file_backing_range(7 * B + 1, 0, &s, &e);
	CHECK_EQ(s, H + 7 * CB);
	CHECK_EQ(e, s);
	/* Clamped, never wrapped. */
	rkfs_file_backing_range(UINT64_MAX - 5, 100, &s, &e);
	CHECK(s <= e && e <= INT64_MAX);
	rkfs_file_backing_range(5, UINT64_MAX, &s, &e);
	CHECK(s == H && e <= INT64_MAX && e > s);
}

/*
 * A file of 40 blocks: data in 0-1, a hole in 2-9 (never written: no
 * backing pages), data in 10, a hole in 11 (inside allocated pages: an
 * all-zero block), data in 12-19, a hole in 20-38, a final block 39.
 */
static void test_seek(const struct rkfs_keyring *kr)
{
	uint8_t buf[8 * B], zero[CB] = { 0 };
	uint64_t bad = UINT64_MAX;
	struct rkfs_file f;
	int fd = tmpfile_fd();

	randombytes_buf(buf, sizeof(buf));
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_write(&f, fd, buf, 2 * B, 0, kr, &bad) == 2 * B);
	SETUP(rkfs_file_write(&f, fd, buf, 3 * B, 10 * B, kr, &bad) == 3 * B);
	SETUP(pwrite(fd, zero, CB, (off_t)rkfs_block_offset(11)) == CB);
	SETUP(rkfs_file_write(&f, fd, buf, 8 * B, 12 * B, kr, &bad) == 8 * B);
	SETUP(rkfs_file_write(&f, fd, buf, 100, 39 * B, kr, &bad) == 100);
	CHECK_EQ(f.size, 39 * B + 100);

	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_DATA), 0);
	CHECK_EQ(rkfs_file_seek(&f, fd, 5, SEEK_DATA), 5);
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_HOLE), 2 * B);
	CHECK_EQ(rkfs_file_seek(&f, fd, 2 * B + 3, SEEK_HOLE), 2 * B + 3);
	CHECK_EQ(rkfs_file_seek(&f, fd, 2 * B + 3, SEEK_DATA), 10 * B);
	CHECK_EQ(rkfs_file_seek(&f, fd, 10 * B, SEEK_HOLE), 11 * B);
	CHECK_EQ(rkfs_file_seek(&f, fd, 11 * B, SEEK_DATA), 12 * B);
	CHECK_EQ(rkfs_file_seek(&f, fd, 11 * B + 9, SEEK_HOLE), 11 * B + 9);
	CHECK_EQ(rkfs_file_seek(&f, fd, 12 * B, SEEK_HOLE), 20 * B);
	CHECK_EQ(rkfs_file_seek(&f, fd, 20 * B, SEEK_DATA), 39 * B);
	CHECK_EQ(rkfs_file_seek(&f, fd, 39 * B + 1, SEEK_DATA), 39 * B + 1);
	/* The final block is data; the end of the file is a hole. */
	CHECK_EQ(rkfs_file_seek(&f, fd, 39 * B, SEEK_HOLE), 39 * B + 100);
	CHECK_EQ(rkfs_file_seek(&f, fd, 39 * B + 100, SEEK_DATA), -ENXIO);
	CHECK_EQ(rkfs_file_seek(&f, fd, 39 * B + 100, SEEK_HOLE), -ENXIO);
	CHECK_EQ(rkfs_file_seek(&f, fd, -1, SEEK_DATA), -ENXIO);
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_SET), -EINVAL);
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_END), -EINVAL);

	/* An empty file has neither data nor holes. */
	CHECK_EQ(rkfs_file_truncate(&f, fd, 0, kr, &bad), 0);
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_DATA), -ENXIO);
	CHECK_EQ(rkfs_file_seek(&f, fd, 0, SEEK_HOLE), -ENXIO);
	rkfs_file_release(&f);
	close(fd);
}

static void test_allocate(const struct rkfs_keyring *kr)
{
	uint8_t buf[3 * B + 50], got[sizeof(buf)];
	uint64_t bad = UINT64_MAX;
	struct rkfs_file f;
	struct stat st;
	int fd = tmpfile_fd();

	randombytes_buf(buf, sizeof(buf));
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_generation(&f), 0);
	SETUP(rkfs_file_write(&f, fd, buf, sizeof(buf), 0, kr, &bad) ==
	      sizeof(buf));
	CHECK_EQ(rkfs_file_generation(&f), 3);

	/* keep_size: backing space reserved, nothing else changes. */
	CHECK_EQ(rkfs_file_allocate(&f, fd, 10 * B + 1, 20 * B, true, kr,
				    &bad), 0);
	CHECK_EQ(f.size, sizeof(buf));
	CHECK_EQ(backing_size(fd), rkfs_size_to_cipher(sizeof(buf)));
	SETUP(fstat(fd, &st) == 0);
	CHECK((uint64_t)st.st_blocks * 512 >= 21 * CB);
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);

	/* Inside the file: nothing changes either. */
	CHECK_EQ(rkfs_file_allocate(&f, fd, 1, 2 * B, false, kr, &bad), 0);
	CHECK_EQ(f.size, sizeof(buf));

	/* Growing: the reserved blocks read as zeros, a real final block. */
	CHECK_EQ(rkfs_file_allocate(&f, fd, 10 * B + 1, 20 * B, false, kr,
				    &bad), 0);
	CHECK_EQ(f.size, 30 * B + 1);
	CHECK_EQ(backing_size(fd), rkfs_size_to_cipher(30 * B + 1));
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	CHECK_EQ(rkfs_file_read(&f, fd, got, sizeof(got), 0, &bad),
		 sizeof(got));
	CHECK(memcmp(got, buf, sizeof(buf)) == 0); /* not secret */
	CHECK_EQ(rkfs_file_read(&f, fd, got, sizeof(got), 20 * B, &bad),
		 sizeof(got));
	CHECK(rkfs_is_zero(got, sizeof(got)));
	/* Reserved blocks still count as holes. */
	CHECK_EQ(rkfs_file_seek(&f, fd, 5 * B, SEEK_DATA), 30 * B);

	/* Loaded afresh, the same size. */
	rkfs_file_release(&f);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(f.size, 30 * B + 1);

	/* Bad ranges change nothing. */
	CHECK_EQ(rkfs_file_allocate(&f, fd, 0, 0, false, kr, &bad), -EINVAL);
	CHECK_EQ(rkfs_file_allocate(&f, fd, (uint64_t)-1, 10, false, kr, &bad),
		 -EINVAL);
	CHECK_EQ(rkfs_file_allocate(&f, fd, 10, (uint64_t)-5, false, kr, &bad),
		 -EINVAL);
	CHECK_EQ(rkfs_file_allocate(&f, fd, INT64_MAX - 10, 5, false, kr,
				    &bad), -EFBIG);
	CHECK_EQ(f.size, 30 * B + 1);
	CHECK_EQ(backing_size(fd), rkfs_size_to_cipher(30 * B + 1));

	/* A file without a header gets one when allocate grows it. */
	CHECK_EQ(ftruncate(fd, 0), 0);
	rkfs_file_release(&f);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_allocate(&f, fd, 0, 5000, false, kr, &bad), 0);
	CHECK_EQ(f.size, 5000);
	CHECK_EQ(rkfs_file_generation(&f), 3);
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	rkfs_file_release(&f);
	close(fd);
}

int main(void)
{
	struct rkfs_keyring *kr;

	SETUP(rkfs_crypt_init() == 0);
	kr = make_keyring();
	test_stat_size();
	test_backing_range();
	test_seek(kr);
	test_allocate(kr);
	rkfs_keyring_free(kr);
	return check_report("test_file_space");
}
