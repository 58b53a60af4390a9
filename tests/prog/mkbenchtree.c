/*
 * mkbenchtree: write a backing tree for the rekey benchmark with the core
 * library, much faster than through a mount.
 *
 *   mkbenchtree KEYRING BACKING GEN COUNT SIZE [PERDIR]
 *
 * KEYRING holds generation GEN (its key loaded); BACKING is initialised if
 * empty (its metadata records every loaded generation).  COUNT files of
 * SIZE plaintext bytes are written under generation GEN: one file is
 * BACKING/big; several go PERDIR to a directory (BACKING/dNNNNN/fNNNNNNN;
 * PERDIR 0: all in BACKING/flat/).  Nothing is fsynced file by file; one
 * syncfs() at the end makes the tree durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/file.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"
#include "splitmix.h"

#define PIECE (1u << 20)

static void die(const char *what, int err)
{
	fprintf(stderr, "mkbenchtree: %s: %s\n", what, strerror(err));
	exit(1);
}

static void put(int dfd, const char *name, uint64_t size, uint8_t *buf,
		struct rkfs_keyring *kr, uint64_t *seed)
{
	struct rkfs_file f;
	uint64_t off, bad;
	int fd, ret;

	fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		die(name, errno);
	ret = rkfs_file_load(&f, fd, kr);
	if (ret == 0)
		ret = rkfs_file_init_empty(&f, fd, kr);
	for (off = 0; ret == 0 && off < size;) {
		size_t n = size - off < PIECE ? (size_t)(size - off) : PIECE;
		ssize_t w;

		for (size_t i = 0; i < n; i += 8) {
			uint64_t r = splitmix64(seed);

			memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
		}
		w = rkfs_file_write(&f, fd, buf, n, off, kr, &bad);
		ret = w < 0 ? (int)w : 0;
		off += n;
	}
	if (ret < 0)
		die(name, -ret);
	rkfs_file_release(&f);
	if (close(fd) < 0)
		die(name, errno);
}

int main(int argc, char **argv)
{
	struct rkfs_keyring *kr = NULL;
	struct rkfs_error err = {0};
	struct rkfs_meta *m = NULL;
	unsigned long long count, size, perdir = 1000;
	uint64_t seed = 42;
	uint8_t *buf;
	char name[64];
	int rootfd, dfd = -1, ret;

	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: mkbenchtree KEYRING BACKING GEN COUNT "
				"SIZE [PERDIR]\n");
		return 2;
	}
	count = strtoull(argv[4], NULL, 10);
	size = strtoull(argv[5], NULL, 10);
	if (argc == 7)
		perdir = strtoull(argv[6], NULL, 10);
	if (rkfs_crypt_init() < 0)
		die("libsodium", ENOSYS);
	ret = rkfs_keyring_load(&kr, argv[1], RKFS_KR_LOAD_KEYS, &err);
	if (ret < 0) {
		fprintf(stderr, "mkbenchtree: %s\n", err.msg);
		return 1;
	}
	kr->primary = (uint32_t)strtoul(argv[3], NULL, 10);
	if (mkdir(argv[2], 0700) < 0 && errno != EEXIST)
		die(argv[2], errno);
	rootfd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		die(argv[2], errno);
	ret = rkfs_meta_open(&m, rootfd, argv[2], kr,
			     RKFS_META_CREATE | RKFS_META_RECORD, &err);
	for (uint32_t g = 1; ret == 0 && g <= 64; g++)
		if (rkfs_keyring_key(kr, g, &(int){0}))
			ret = rkfs_meta_record(m, rootfd, kr, g, argv[2], &err);
	if (ret < 0) {
		fprintf(stderr, "mkbenchtree: %s\n", err.msg);
		return 1;
	}
	rkfs_meta_free(m);
	buf = malloc(PIECE);
	if (buf == NULL)
		die("malloc", ENOMEM);
	if (count == 1) {
		put(rootfd, "big", size, buf, kr, &seed);
	} else {
		for (unsigned long long i = 0; i < count; i++) {
			if (perdir ? i % perdir == 0 : i == 0) {
				if (dfd >= 0)
					close(dfd);
				if (perdir)
					snprintf(name, sizeof(name), "d%05llu",
						 i / perdir);
				else
					snprintf(name, sizeof(name), "flat");
				if (mkdirat(rootfd, name, 0755) < 0 &&
				    errno != EEXIST)
					die(name, errno);
				dfd = openat(rootfd, name,
					     O_RDONLY | O_DIRECTORY);
				if (dfd < 0)
					die(name, errno);
			}
			snprintf(name, sizeof(name), "f%07llu", i);
			put(dfd, name, size, buf, kr, &seed);
		}
	}
	if (syncfs(rootfd) < 0)
		die("syncfs", errno);
	free(buf);
	rkfs_keyring_wipe(kr);
	return 0;
}
