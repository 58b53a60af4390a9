/*
 * mkseeds DIR: write the seeds of the fuzz corpora that need keys to make
 * (DIR/keyring, DIR/meta, DIR/intent), all under the fixture keyring's
 * public keys.  The rest of the corpora are copies of tests/fixtures and
 * etc/ files (see tests/fuzz/README.md).  Sealing uses the fixed
 * passphrase FUZZ_PASSPHRASE with the cheapest Argon2id parameters, which
 * fuzz_keyring.c knows.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fuzz.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/intent.h"
#include "rekeyfs/meta.h"

#define FUZZ_PASSPHRASE "fuzz"

static void put(const char *dir, const char *sub, const char *name,
		const char *text, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "w");
	FUZZ_CHECK(f != NULL);
	FUZZ_CHECK(fwrite(text, 1, len, f) == len);
	FUZZ_CHECK(fclose(f) == 0);
}

int main(int argc, char **argv)
{
	struct rkfs_error err = { 0 };
	struct rkfs_keyring *kr;
	struct rkfs_meta *m = NULL;
	struct rkfs_intent in = { 0 };
	char tmpl[] = "/tmp/rkfs-mkseeds.XXXXXX";
	char *text;
	size_t len;
	int rootfd;

	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR\n");
		return 2;
	}
	mkdir(argv[1], 0755);
	kr = fuzz_fixture_load();

	/* intent: a version 3 record signed with generation 2's key */
	in.generation = 2;
	in.dev = 2049;
	in.ino = 131073;
	in.size = 4209;
	in.times[0].tv_sec = 1793491200;
	in.times[0].tv_nsec = 5;
	in.times[1].tv_sec = -1;
	in.times[1].tv_nsec = 999999999;
	memcpy(in.old_hdr, "RKEYFS\1\1\0\0\0\1abcdefghijklmnop\0\0\0\0", 32);
	memcpy(in.new_hdr, "RKEYFS\1\1\0\0\0\2ponmlkjihgfedcba\0\0\0\0", 32);
	in.target = "sub/dir/file";
	in.temp = ".rekeyfs-tmp.AbCdEf";
	FUZZ_CHECK(rkfs_intent_format(&text, &len, &in,
				      rkfs_keyring_find(kr, 2)->key) == 0);
	put(argv[1], "intent", "v3", text, len);
	free(text);

	/* keyring: sealed (tree metadata below records it) */
	FUZZ_CHECK(rkfs_keyring_seal(kr, FUZZ_PASSPHRASE,
				     strlen(FUZZ_PASSPHRASE), 1, 8192,
				     &err) == 0);
	FUZZ_CHECK(rkfs_keyring_format(&text, &len, kr) == 0);
	put(argv[1], "keyring", "sealed", text, len);
	printf("sealed keyring:\n%s", text);
	sodium_free(text);

	/* meta: a tree that recorded the sealed keyring, with auth lines */
	FUZZ_CHECK(mkdtemp(tmpl) != NULL);
	rootfd = open(tmpl, O_RDONLY | O_DIRECTORY);
	FUZZ_CHECK(rootfd >= 0);
	if (rkfs_meta_open(&m, rootfd, tmpl, kr,
			   RKFS_META_CREATE | RKFS_META_RECORD, &err) != 0) {
		fprintf(stderr, "meta: %s\n", err.msg);
		return 1;
	}
	FUZZ_CHECK(rkfs_meta_record(m, rootfd, kr, 1, tmpl, &err) == 0);
	FUZZ_CHECK(rkfs_meta_format(&text, &len, m) == 0);
	put(argv[1], "meta", "sealed", text, len);
	free(text);
	rkfs_meta_free(m);
	unlinkat(rootfd, RKFS_META_NAME, 0);
	unlinkat(rootfd, RKFS_LOCK_NAME, 0);
	close(rootfd);
	rmdir(tmpl);
	rkfs_keyring_free(kr);
	return 0;
}
