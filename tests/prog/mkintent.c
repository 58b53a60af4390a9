/*
 * mkintent: print a signed intent record, as rekeyfs-rekey writes one in
 * the middle of an in-place rewrite, for tests that stage a crash.
 *
 *   mkintent KEYRING BACKING TARGET TEMP
 *
 * TARGET and TEMP are paths relative to BACKING: the file being rewritten
 * (its current header is recorded as the old one, its inode and times as
 * the target's) and the data temp holding the new version (its header and
 * size are recorded; its generation signs the record).  The record goes to
 * standard output; the caller puts it in place with the owner and mode it
 * wants.  Exit 0, or 1 with a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/intent.h"
#include "rekeyfs/keyring.h"

static void die(const char *what, int err)
{
	fprintf(stderr, "mkintent: %s: %s\n", what, strerror(err));
	exit(1);
}

/* Open dir/path (following symlinks: the test decides), read its header. */
static void header_of(uint8_t *hdr, struct stat *st, const char *dir,
		      const char *path)
{
	char *full;
	int fd;

	if (asprintf(&full, "%s/%s", dir, path) < 0)
		die("asprintf", ENOMEM);
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(full, errno);
	if (fstat(fd, st) < 0)
		die(full, errno);
	if (rkfs_pread_full(fd, hdr, RKFS_HEADER_LEN, 0) != RKFS_HEADER_LEN)
		die(full, EINVAL);
	close(fd);
	free(full);
}

int main(int argc, char **argv)
{
	struct rkfs_error err = {{0}};
	struct rkfs_keyring *kr = NULL;
	struct rkfs_intent in;
	struct rkfs_header h;
	const unsigned char *gk;
	struct stat tst, dst;
	char *text;
	size_t len;
	int ret, e;

	if (argc != 5) {
		fprintf(stderr,
			"usage: mkintent KEYRING BACKING TARGET TEMP\n");
		return 1;
	}
	if (rkfs_crypt_init() < 0)
		die("libsodium", EIO);
	ret = rkfs_keyring_load(&kr, argv[1], RKFS_KR_LOAD_KEYS, &err);
	if (ret < 0) {
		fprintf(stderr, "mkintent: %s\n", err.msg);
		return 1;
	}
	memset(&in, 0, sizeof(in));
	header_of(in.old_hdr, &tst, argv[2], argv[3]);
	header_of(in.new_hdr, &dst, argv[2], argv[4]);
	if (rkfs_header_parse(&h, in.new_hdr, RKFS_HEADER_LEN) < 0)
		die(argv[4], EBADMSG);
	in.generation = h.generation;
	gk = rkfs_keyring_key(kr, in.generation, &e);
	if (gk == NULL)
		die("key of the temp's generation", -e);
	in.dev = (uint64_t)tst.st_dev;
	in.ino = (uint64_t)tst.st_ino;
	in.size = (uint64_t)dst.st_size;
	in.times[0] = tst.st_atim;
	in.times[1] = tst.st_mtim;
	in.target = argv[3];
	in.temp = argv[4];
	ret = rkfs_intent_format(&text, &len, &in, gk);
	if (ret < 0)
		die("format", -ret);
	fwrite(text, 1, len, stdout);
	free(text);
	rkfs_keyring_free(kr);
	return fflush(stdout) == 0 ? 0 : 1;
}
