/*
 * The encrypted file layer against a plain in-memory model: random writes,
 * truncates and reads, plus holes, generations and tampering.
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
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"

#define MAXSZ (300 * 1024)

static struct rkfs_keyring *make_keyring(int primary)
{
	char text[512];
	unsigned char k[RKFS_KEY_LEN];
	char e1[80], e2[80];
	struct rkfs_keyring *kr;
	struct rkfs_error err = { 0 };

	memset(k, 0x11, sizeof(k));
	rkfs_key_encode(e1, sizeof(e1), k);
	memset(k, 0x22, sizeof(k));
	rkfs_key_encode(e2, sizeof(e2), k);
	snprintf(text, sizeof(text),
		 "[keyring]\nprimary = %d\n[generation 1]\nkey = %s\n"
		 "[generation 2]\nkey = %s\n",
		 primary, e1, e2);
	SETUP(rkfs_keyring_parse(&kr, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	return kr;
}

static uint64_t xrand(uint64_t n)
{
	return n ? randombytes_uniform((uint32_t)n) : 0;
}

static void test_model(void)
{
	struct rkfs_keyring *kr = make_keyring(1);
	struct rkfs_file f;
	uint8_t *model = calloc(1, MAXSZ), *buf = malloc(MAXSZ),
		*got = malloc(MAXSZ);
	uint64_t msize = 0, bad;
	int fd = tmpfile_fd();

	SETUP(model && buf && got);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK(!f.has_header);
	for (int op = 0; op < 3000; op++) {
		int kind = (int)xrand(10);

		if (kind < 5) {
			uint64_t off = xrand(MAXSZ - 1);
			size_t len = (size_t)xrand(MAXSZ - off) % 40000 + 1;

			randombytes_buf(buf, len);
			CHECK_EQ(rkfs_file_write(&f, fd, buf, len, off, kr, &bad),
				 (ssize_t)len);
			memcpy(model + off, buf, len);
			if (off + len > msize)
				msize = off + len;
		} else if (kind < 7) {
			uint64_t ns = xrand(4) == 0 ? 0 : xrand(MAXSZ);

			CHECK_EQ(rkfs_file_truncate(&f, fd, ns, kr, &bad), 0);
			if (ns < msize)
				memset(model + ns, 0, msize - ns);
			msize = ns;
		} else if (kind < 9) {
			uint64_t off = xrand(msize + 10);
			size_t len = (size_t)xrand(70000) + 1;
			ssize_t want = off >= msize ? 0
				     : (ssize_t)(len < msize - off ? len : msize - off);

			CHECK_EQ(rkfs_file_read(&f, fd, got, len, off, &bad), want);
			if (want > 0)
				CHECK(memcmp(got, model + off, (size_t)want) == 0);
		} else {
			/* reopen: everything must follow from the backing file */
			rkfs_file_release(&f);
			SETUP(rkfs_file_load(&f, fd, kr) == 0);
			CHECK_EQ(f.size, msize);
		}
		struct stat st;
		SETUP(fstat(fd, &st) == 0);
		/* A file never written has no header yet: 0 bytes. */
		CHECK_EQ((uint64_t)st.st_size,
			 f.has_header ? rkfs_size_to_cipher(msize) : 0);
		if (check_failed > 20)
			break;
	}
	CHECK_EQ(rkfs_file_read(&f, fd, got, MAXSZ, 0, &bad), (ssize_t)msize);
	CHECK(memcmp(got, model, msize) == 0);
	rkfs_file_release(&f);
	close(fd);
	free(model);
	free(buf);
	free(got);
	rkfs_keyring_free(kr);
}

static void test_tamper(void)
{
	struct rkfs_keyring *kr = make_keyring(2);
	struct rkfs_file f;
	uint8_t data[3 * 4096 + 100], got[sizeof(data)], byte;
	uint64_t bad = 0;
	int fd = tmpfile_fd();

	randombytes_buf(data, sizeof(data));
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, sizeof(data), 0, kr, &bad),
		 (ssize_t)sizeof(data));
	CHECK_EQ(f.hdr.generation, 2);
	/* flip one ciphertext bit in block 1 */
	SETUP(pread(fd, &byte, 1, (off_t)rkfs_block_offset(1) + 100) == 1);
	byte ^= 1;
	SETUP(pwrite(fd, &byte, 1, (off_t)rkfs_block_offset(1) + 100) == 1);
	CHECK_EQ(rkfs_file_read(&f, fd, got, 4096, 4096, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);
	CHECK_EQ(rkfs_file_read(&f, fd, got, 4096, 0, &bad), 4096);
	byte ^= 1;
	SETUP(pwrite(fd, &byte, 1, (off_t)rkfs_block_offset(1) + 100) == 1);
	CHECK_EQ(rkfs_file_read(&f, fd, got, sizeof(got), 0, &bad),
		 (ssize_t)sizeof(got));
	/* truncate the ciphertext at a block boundary: detected */
	SETUP(ftruncate(fd, (off_t)rkfs_block_offset(3)) == 0);
	rkfs_file_release(&f);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(f.size, 3 * 4096);
	CHECK_EQ(rkfs_file_read(&f, fd, got, 4096, 2 * 4096, &bad), -EBADMSG);
	rkfs_file_release(&f);
	close(fd);
	rkfs_keyring_free(kr);
}

static void test_generations(void)
{
	struct rkfs_keyring *k1 = make_keyring(1), *k2 = make_keyring(2);
	struct rkfs_file f;
	uint8_t data[5000], got[5000];
	uint64_t bad;
	int fd = tmpfile_fd();

	memset(data, 'x', sizeof(data));
	SETUP(rkfs_file_load(&f, fd, k1) == 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, sizeof(data), 0, k1, &bad), 5000);
	CHECK_EQ(f.hdr.generation, 1);
	/* partial write under a newer primary keeps generation 1 */
	CHECK_EQ(rkfs_file_use_keyring(&f, k2), 0);
	CHECK_EQ(rkfs_file_write(&f, fd, data, 10, 4090, k2, &bad), 10);
	CHECK_EQ(f.hdr.generation, 1);
	CHECK_EQ(rkfs_file_read(&f, fd, got, 5000, 0, &bad), 5000);
	CHECK(memcmp(got, data, 5000) == 0);
	/* truncate to zero moves it to the primary */
	CHECK_EQ(rkfs_file_truncate(&f, fd, 0, k2, &bad), 0);
	CHECK_EQ(f.hdr.generation, 2);
	rkfs_file_release(&f);
	close(fd);
	rkfs_keyring_free(k1);
	rkfs_keyring_free(k2);
}

static void test_sparse(void)
{
	struct rkfs_keyring *kr = make_keyring(1);
	struct rkfs_file f;
	uint8_t got[4096];
	uint64_t bad;
	struct stat st;
	int fd = tmpfile_fd();

	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 64 << 20, kr, &bad), 0);
	CHECK_EQ(f.size, 64 << 20);
	SETUP(fstat(fd, &st) == 0);
	CHECK(st.st_blocks * 512 < 1 << 20);
	CHECK_EQ(rkfs_file_read(&f, fd, got, 4096, 32 << 20, &bad), 4096);
	CHECK(rkfs_is_zero(got, 4096));
	CHECK_EQ(rkfs_file_read(&f, fd, got, 4096, (64 << 20) - 4096, &bad), 4096);
	CHECK(rkfs_is_zero(got, 4096));
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	rkfs_file_release(&f);
	close(fd);
	rkfs_keyring_free(kr);
}

int main(void)
{
	SETUP(rkfs_crypt_init() == 0);
	test_model();
	test_tamper();
	test_generations();
	test_sparse();
	return check_report("test_file");
}
