/*
 * mkfixture: write a golden backing tree with the core library.
 *
 *   mkfixture OUTDIR
 *
 * Creates OUTDIR/keyring (two generations, primary 2), OUTDIR/backing (the
 * encrypted tree), OUTDIR/MANIFEST (sha256 of every plaintext file, in
 * sha256sum format, relative to the mount root) and OUTDIR/SYMLINKS
 * ("path -> target").  Files whose name starts with "g1-" are written
 * under generation 1, every other file under generation 2.
 *
 * The plaintext is fixed (seeded), the ciphertext is not (random file ids
 * and nonces).  Used once per format version; see tests/fixtures/README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/file.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"
#include "splitmix.h"

static struct rkfs_keyring *kr;
static int rootfd;
static FILE *manifest;

static void die(const char *what, int err)
{
	fprintf(stderr, "mkfixture: %s: %s\n", what, strerror(err));
	exit(1);
}

static uint64_t seed_state;

static uint8_t next_byte(void)
{
	return (uint8_t)(splitmix64(&seed_state) >> 24);
}

static void record(const char *path, const uint8_t *data, size_t len)
{
	uint8_t h[crypto_hash_sha256_BYTES];
	char hex[sizeof(h) * 2 + 1];

	crypto_hash_sha256(h, data, len);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	fprintf(manifest, "%s  ./%s\n", hex, path);
}

/*
 * Write one file.  Pieces: (offset, length) ranges of data; the rest is a
 * hole.  size is the final plaintext size.
 */
static void put(const char *path, const uint8_t *data, uint64_t size,
		const uint64_t (*ranges)[2], int nranges)
{
	const char *base = strrchr(path, '/');
	uint32_t gen = strncmp(base ? base + 1 : path, "g1-", 3) == 0 ? 1 : 2;
	struct rkfs_file f;
	uint64_t bad;
	int fd, ret;

	kr->primary = gen;
	fd = openat(rootfd, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path, errno);
	ret = rkfs_file_load(&f, fd, kr);
	if (ret == 0)
		ret = rkfs_file_init_empty(&f, fd, kr);
	for (int i = 0; ret == 0 && i < nranges; i++) {
		ssize_t n = rkfs_file_write(&f, fd, data + ranges[i][0],
					    (size_t)ranges[i][1], ranges[i][0],
					    kr, &bad);

		ret = n < 0 ? (int)n : 0;
	}
	if (ret == 0 && f.size != size)
		ret = rkfs_file_truncate(&f, fd, size, kr, &bad);
	if (ret < 0)
		die(path, -ret);
	rkfs_file_release(&f);
	if (fsync(fd) < 0 || close(fd) < 0)
		die(path, errno);
	record(path, data, (size_t)size);
}

static void put_plain(const char *path, uint64_t size, uint64_t seed)
{
	uint8_t *data = malloc(size ? size : 1);
	uint64_t r[1][2] = {{0, size}};

	if (data == NULL)
		die(path, ENOMEM);
	seed_state = seed;
	for (uint64_t i = 0; i < size; i++)
		data[i] = next_byte();
	put(path, data, size, r, size ? 1 : 0);
	free(data);
}

static void put_text(const char *path, const char *text)
{
	uint64_t len = strlen(text);
	uint64_t r[1][2] = {{0, len}};

	put(path, (const uint8_t *)text, len, r, 1);
}

static void make_keyring(const char *out)
{
	unsigned char k[RKFS_KEY_LEN];
	uint8_t cv[RKFS_CHECK_LEN];
	char enc[80], hex[RKFS_CHECK_LEN * 2 + 1], path[4096];
	struct rkfs_error err = {0};
	FILE *fp;
	int ret;

	snprintf(path, sizeof(path), "%s/keyring", out);
	fp = fopen(path, "wx");
	if (fp == NULL)
		die(path, errno);
	fchmod(fileno(fp), 0600);
	fprintf(fp, "# Golden fixture keyring for rekeyfs format v1.  Not a "
		    "secret: it is public test data.\n"
		    "[keyring]\nprimary = 2\n");
	for (int g = 1; g <= 2; g++) {
		randombytes_buf(k, sizeof(k));
		rkfs_key_encode(enc, sizeof(enc), k);
		rkfs_crypt_check_value(cv, k);
		sodium_bin2hex(hex, sizeof(hex), cv, sizeof(cv));
		fprintf(
		    fp,
		    "\n[generation %d]\nstate = enabled\n"
		    "created = 2026-11-%02dT00:00:00Z\nkey = %s\ncheck = %s\n",
		    g, g, enc, hex);
	}
	sodium_memzero(k, sizeof(k));
	sodium_memzero(enc, sizeof(enc));
	if (fclose(fp) != 0)
		die(path, errno);
	ret = rkfs_keyring_load(&kr, path, RKFS_KR_LOAD_KEYS, &err);
	if (ret < 0) {
		fprintf(stderr, "mkfixture: %s\n", err.msg);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	char path[4096];
	struct rkfs_meta *m = NULL;
	struct rkfs_error err = {0};
	FILE *links;
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: mkfixture OUTDIR (must not exist)\n");
		return 2;
	}
	if (rkfs_crypt_init() < 0)
		die("libsodium", ENOSYS);
	if (mkdir(argv[1], 0755) < 0)
		die(argv[1], errno);
	make_keyring(argv[1]);
	snprintf(path, sizeof(path), "%s/backing", argv[1]);
	if (mkdir(path, 0755) < 0)
		die(path, errno);
	rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		die(path, errno);
	/* Record generation 1 then 2 (the primary) in the tree's metadata. */
	kr->primary = 1;
	ret = rkfs_meta_open(&m, rootfd, path, kr,
			     RKFS_META_CREATE | RKFS_META_RECORD, &err);
	if (ret == 0)
		ret = rkfs_meta_record(m, rootfd, kr, 2, path, &err);
	if (ret < 0) {
		fprintf(stderr, "mkfixture: %s (%s)\n", err.msg,
			strerror(-ret));
		return 1;
	}
	rkfs_meta_free(m);

	snprintf(path, sizeof(path), "%s/MANIFEST", argv[1]);
	manifest = fopen(path, "wx");
	if (manifest == NULL)
		die(path, errno);

	/* Empty: a header alone, and a 0-byte backing file. */
	put_plain("empty", 0, 0);
	if (close(openat(rootfd, "empty-noheader", O_WRONLY | O_CREAT | O_EXCL,
			 0644)) < 0)
		die("empty-noheader", errno);
	record("empty-noheader", (const uint8_t *)"", 0);
	put_plain("one-byte", 1, 1);
	put_plain("b4095", 4095, 2);
	put_plain("b4096", 4096, 3);
	put_plain("b4097", 4097, 4);
	put_plain("b8192", 8192, 5);
	put_plain("big-100k", 100 * 1024 + 123, 6);
	/* Generation 1, side by side with generation 2. */
	put_plain("g1-one-byte", 1, 11);
	put_plain("g1-b4097", 4097, 12);
	put_text("g1-notes.txt", "Written under generation 1.\n");
	put_plain("g1-big-100k", 100 * 1024 + 7, 13);
	/* Sparse: data, three hole blocks, data, hole, short final block. */
	{
		static uint8_t data[7 * 4096 + 100];
		const uint64_t r[3][2] = {
		    {0, 4096}, {4 * 4096 + 10, 50}, {7 * 4096, 100}};

		seed_state = 21;
		for (int i = 0; i < 3; i++)
			for (uint64_t j = 0; j < r[i][1]; j++)
				data[r[i][0] + j] = next_byte();
		put("sparse", data, sizeof(data), r, 3);
	}
	{
		/* Grown by truncate only: all hole but the final block. */
		static uint8_t data[3 * 4096 + 1];
		const uint64_t r[1][2] = {{0, 0}};

		put("sparse-grown", data, sizeof(data), r, 0);
	}
	/* No empty directory: git would not keep it. */
	if (mkdirat(rootfd, "sub", 0755) < 0 ||
	    mkdirat(rootfd, "sub/deeper", 0755) < 0)
		die("mkdir", errno);
	put_text("sub/hello.txt", "hello from rekeyfs v1\n");
	put_plain("sub/g1-in-sub", 5000, 31);
	put_plain("sub/deeper/nested.bin", 12345, 32);
	put_text("with space.txt", "a name with spaces\n");
	put_text("\xc3\xbcn\xc3\xaf"
		 "c\xc3\xb8"
		 "d\xc3\xa9-\xe5\x90\x8d\xe5\x89\x8d.txt",
		 "unicode name\n");
	put_text("-dash 'quote' \"dq\".txt", "odd characters\n");
	if (fclose(manifest) != 0)
		die("MANIFEST", errno);

	snprintf(path, sizeof(path), "%s/SYMLINKS", argv[1]);
	links = fopen(path, "wx");
	if (links == NULL)
		die(path, errno);
	if (symlinkat("one-byte", rootfd, "link-to-one") < 0 ||
	    symlinkat("../b4096", rootfd, "sub/link-up") < 0 ||
	    symlinkat("/nonexistent/target", rootfd, "dangling") < 0)
		die("symlink", errno);
	fprintf(links, "./dangling -> /nonexistent/target\n"
		       "./link-to-one -> one-byte\n"
		       "./sub/link-up -> ../b4096\n");
	fclose(links);
	close(rootfd);
	rkfs_keyring_free(kr);
	return 0;
}
