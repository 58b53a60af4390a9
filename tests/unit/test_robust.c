/*
 * The encrypted file layer at the edges of the offset range: writes and
 * truncates whose ciphertext would not fit in an off_t fail with EFBIG and
 * change nothing; a file left 0 bytes long by a failed header write is a
 * valid empty file.
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
#include "rekeyfs/keyring.h"

static struct rkfs_keyring *make_keyring(void)
{
	char text[256], e1[80];
	unsigned char k[RKFS_KEY_LEN];
	struct rkfs_keyring *kr;
	struct rkfs_error err = { 0 };

	memset(k, 0x33, sizeof(k));
	rkfs_key_encode(e1, sizeof(e1), k);
	snprintf(text, sizeof(text),
		 "[keyring]\nprimary = 1\n[generation 1]\nkey = %s\n", e1);
	sodium_memzero(k, sizeof(k));
	SETUP(rkfs_keyring_parse(&kr, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	sodium_memzero(text, sizeof(text));
	sodium_memzero(e1, sizeof(e1));
	return kr;
}

int main(void)
{
	static const uint64_t huge[] = {
		UINT64_MAX - 3,		/* off + len wraps */
		(uint64_t)INT64_MAX - 3, /* plaintext fits, ciphertext not */
		(uint64_t)INT64_MAX / 4136 * 4096 + 1,
	};
	struct rkfs_keyring *kr;
	struct rkfs_file f;
	uint8_t data[5000], got[5000];
	uint64_t bad = UINT64_MAX;
	off_t before;
	int fd;

	SETUP(rkfs_crypt_init() == 0);
	kr = make_keyring();
	fd = tmpfile_fd();
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	randombytes_buf(data, sizeof(data));
	CHECK_EQ(rkfs_file_write(&f, fd, data, sizeof(data), 0, kr, &bad),
		 sizeof(data));
	before = backing_size(fd);

	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		CHECK_EQ(rkfs_file_write(&f, fd, data, 10, huge[i], kr, &bad),
			 -EFBIG);
		CHECK_EQ(rkfs_file_truncate(&f, fd, huge[i], kr, &bad),
			 -EFBIG);
		CHECK_EQ(f.size, sizeof(data));
		CHECK_EQ(backing_size(fd), before);
	}
	/* The data is untouched. */
	CHECK_EQ(rkfs_file_read(&f, fd, got, sizeof(got), 0, &bad),
		 sizeof(got));
	CHECK(memcmp(got, data, sizeof(data)) == 0); /* not secret */

	/* A 0-byte file is an empty file without header, and truncating it
	 * to zero again keeps it readable. */
	CHECK_EQ(ftruncate(fd, 0), 0);
	rkfs_file_release(&f);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	CHECK(!f.has_header);
	CHECK_EQ(rkfs_file_read(&f, fd, got, sizeof(got), 0, &bad), 0);
	CHECK_EQ(rkfs_file_truncate(&f, fd, 0, kr, &bad), 0);
	CHECK_EQ(rkfs_file_read(&f, fd, got, sizeof(got), 0, &bad), 0);

	rkfs_file_release(&f);
	close(fd);
	rkfs_keyring_free(kr);
	return check_report("test_robust");
}
