/*
 * Golden fixtures: every file of every committed backing tree still reads,
 * through the core library alone, to the plaintext recorded in its
 * MANIFEST.  Fixtures are never regenerated (tests/fixtures/README.md).
 *
 * The fixture root is $REKEYFS_FIXTURES or tests/fixtures (run from the
 * top of the source tree, as make check does).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/file.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"

#define MAX_ENTRIES 256

struct entry {
	char path[1024];
	char want[1024]; /* sha256 hex, or symlink target */
	bool seen;
};

static struct entry files[MAX_ENTRIES], links[MAX_ENTRIES];
static size_t nfiles, nlinks;
static uint32_t want_flags; /* header flags of every file of the tree */

static size_t load_list(struct entry *e, const char *path, bool manifest)
{
	char line[1024];
	size_t n = 0;
	FILE *fp = fopen(path, "r");

	SETUP(fp != NULL);
	while (fgets(line, sizeof(line), fp)) {
		char *nl = strchr(line, '\n'), *sep;

		if (nl)
			*nl = '\0';
		if (line[0] == '\0')
			continue;
		SETUP(n < MAX_ENTRIES);
		if (manifest) {
			SETUP(strlen(line) > 66 && line[64] == ' ' &&
			      line[65] == ' ');
			memcpy(e[n].want, line, 64);
			e[n].want[64] = '\0';
			snprintf(e[n].path, sizeof(e[n].path), "%s", line + 66);
		} else {
			sep = strstr(line, " -> ");
			SETUP(sep != NULL);
			*sep = '\0';
			snprintf(e[n].path, sizeof(e[n].path), "%s", line);
			snprintf(e[n].want, sizeof(e[n].want), "%s", sep + 4);
		}
		n++;
	}
	fclose(fp);
	return n;
}

static struct entry *find(struct entry *e, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].path, path) == 0)
			return &e[i];
	return NULL;
}

/* Generation the fixture generator used for rel: "g1-*" is 1, else 2. */
static uint32_t expected_gen(const char *rel)
{
	const char *base = strrchr(rel, '/');

	return strncmp(base ? base + 1 : rel, "g1-", 3) == 0 ? 1 : 2;
}

static void check_file(int dirfd, const char *name, const char *rel,
		       const struct rkfs_keyring *kr, unsigned *gens)
{
	struct entry *e = find(files, nfiles, rel);
	struct rkfs_file f;
	uint8_t h[crypto_hash_sha256_BYTES], *buf;
	char hex[sizeof(h) * 2 + 1];
	uint64_t bad = 0;
	ssize_t n;
	int fd;

	if (e == NULL) {
		check_failed++;
		fprintf(stderr, "%s: not in MANIFEST\n", rel);
		return;
	}
	e->seen = true;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	SETUP(fd >= 0);
	if (rkfs_file_load(&f, fd, kr) != 0) {
		check_failed++;
		fprintf(stderr, "%s: does not load\n", rel);
		close(fd);
		return;
	}
	if (f.has_header) {
		CHECK_EQ(f.hdr.flags, want_flags);
		CHECK_EQ(f.hdr.generation, expected_gen(rel));
		gens[f.hdr.generation & 3]++;
	}
	CHECK_EQ(rkfs_file_verify(&f, fd, &bad), 0);
	buf = malloc(f.size + 1);
	SETUP(buf != NULL);
	n = rkfs_file_read(&f, fd, buf, f.size + 1, 0, &bad);
	CHECK_EQ(n, (ssize_t)f.size);
	if (n >= 0) {
		crypto_hash_sha256(h, buf, (size_t)n);
		sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
		if (strcmp(hex, e->want) != 0) {
			check_failed++;
			fprintf(stderr, "%s: sha256 %s, MANIFEST says %s\n",
				rel, hex, e->want);
		} else {
			check_passed++;
		}
	}
	free(buf);
	rkfs_file_release(&f);
	close(fd);
}

static void walk(int dirfd, const char *rel, const struct rkfs_keyring *kr,
		 unsigned *gens)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;

	SETUP(d != NULL);
	while ((de = readdir(d)) != NULL) {
		char path[1024], target[1024];
		struct stat st;
		ssize_t n;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (rkfs_name_reserved(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", rel, de->d_name);
		SETUP(fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
		      0);
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			SETUP(sub >= 0);
			walk(sub, path, kr, gens);
		} else if (S_ISLNK(st.st_mode)) {
			struct entry *e = find(links, nlinks, path);

			n = readlinkat(dirfd, de->d_name, target,
				       sizeof(target) - 1);
			SETUP(n >= 0);
			target[n] = '\0';
			CHECK(e != NULL);
			if (e) {
				e->seen = true;
				CHECK(strcmp(e->want, target) == 0);
			}
		} else if (S_ISREG(st.st_mode)) {
			check_file(dirfd, de->d_name, path, kr, gens);
		} else {
			check_failed++;
			fprintf(stderr, "%s: unexpected file type\n", path);
		}
	}
	closedir(d);
}

/* The same tree under a keyring whose generation 2 is another key. */
static void check_wrong_key(int rootfd, const char *backing)
{
	static const char text[] =
	    "[keyring]\nprimary = 2\n"
	    "[generation 1]\nkey = "
	    "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
	    "[generation 2]\nkey = "
	    "base64:ERERERERERERERERERERERERERERERERERERERERERE=\n";
	struct rkfs_keyring *bad_kr;
	struct rkfs_meta *m = NULL;
	struct rkfs_error err = {0};
	struct rkfs_file f;
	uint8_t buf[64];
	uint64_t bad;
	int fd;

	SETUP(rkfs_keyring_parse(&bad_kr, text, strlen(text), "wrong", NULL, 0,
				 &err) == 0);
	CHECK_EQ(rkfs_meta_open(&m, rootfd, backing, bad_kr, 0, &err),
		 -EKEYREJECTED);
	rkfs_meta_free(m);
	fd = openat(rootfd, "b4097", O_RDONLY | O_CLOEXEC);
	SETUP(fd >= 0);
	SETUP(rkfs_file_load(&f, fd, bad_kr) == 0);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(rkfs_file_read(&f, fd, buf, sizeof(buf), 0, &bad), -EBADMSG);
	CHECK(rkfs_is_zero(buf, sizeof(buf)));
	rkfs_file_release(&f);
	close(fd);
	rkfs_keyring_free(bad_kr);
}

/*
 * A copy of name with block 0 zeroed: read as a hole where the tree's
 * files keep the older rules (flags 0), refused where holes are
 * authenticated.
 */
static void check_zeroed(int rootfd, const char *name,
			 const struct rkfs_keyring *kr)
{
	char path[] = "/tmp/rkfs-fixture-XXXXXX";
	static uint8_t buf[4 * RKFS_CBLOCK_SIZE];
	struct rkfs_file f;
	uint8_t out[RKFS_BLOCK_SIZE];
	uint64_t bad = 0;
	ssize_t n;
	int src, fd;

	src = openat(rootfd, name, O_RDONLY | O_CLOEXEC);
	SETUP(src >= 0);
	n = rkfs_pread_full(src, buf, sizeof(buf), 0);
	close(src);
	SETUP(n > (ssize_t)rkfs_block_offset(1));
	memset(buf + rkfs_block_offset(0), 0, RKFS_CBLOCK_SIZE);
	fd = mkstemp(path);
	SETUP(fd >= 0);
	unlink(path);
	SETUP(rkfs_pwrite_full(fd, buf, (size_t)n, 0) == 0);
	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	if (want_flags & RKFS_FLAG_HOLE_AUTH) {
		CHECK_EQ(rkfs_file_read(&f, fd, out, sizeof(out), 0, &bad),
			 -EBADMSG);
		CHECK_EQ(bad, 0);
	} else {
		CHECK_EQ(rkfs_file_read(&f, fd, out, sizeof(out), 0, &bad),
			 RKFS_BLOCK_SIZE);
		CHECK(rkfs_is_zero(out, sizeof(out)));
	}
	rkfs_file_release(&f);
	close(fd);
}

static void check_version(const char *root, const char *v, uint32_t flags)
{
	char path[1024];
	struct rkfs_keyring *kr;
	struct rkfs_meta *m = NULL;
	struct rkfs_error err = {0};
	unsigned gens[4] = {0};
	int rootfd;

	snprintf(path, sizeof(path), "%s/%s/MANIFEST", root, v);
	nfiles = load_list(files, path, true);
	snprintf(path, sizeof(path), "%s/%s/SYMLINKS", root, v);
	nlinks = load_list(links, path, false);
	/* git does not keep mode 0600, so the mode check is waived here. */
	snprintf(path, sizeof(path), "%s/%s/keyring", root, v);
	if (rkfs_keyring_load(&kr, path,
			      RKFS_KR_LOAD_KEYS | RKFS_KR_NO_MODE_CHECK,
			      &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		SETUP(0);
	}
	snprintf(path, sizeof(path), "%s/%s/backing", root, v);
	rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	SETUP(rootfd >= 0);
	CHECK_EQ(rkfs_meta_open(&m, rootfd, path, kr, 0, &err), 0);
	if (m) {
		CHECK_EQ(m->format, 1);
		CHECK_EQ(m->count, 2);
		rkfs_meta_free(m);
	}
	check_wrong_key(rootfd, path);
	want_flags = flags;
	walk(dup(rootfd), ".", kr, gens);
	check_zeroed(rootfd, "b8192", kr);
	for (size_t i = 0; i < nfiles; i++)
		if (!files[i].seen) {
			check_failed++;
			fprintf(stderr, "%s: in MANIFEST but missing\n",
				files[i].path);
		}
	for (size_t i = 0; i < nlinks; i++)
		CHECK(links[i].seen);
	/* Both generations are present side by side. */
	CHECK(gens[1] >= 3);
	CHECK(gens[2] >= 3);
	CHECK(nfiles >= 15);
	close(rootfd);
	rkfs_keyring_free(kr);
	printf("fixtures %s: %zu files, %zu symlinks, %u in generation 1, "
	       "%u in generation 2\n",
	       v, nfiles, nlinks, gens[1], gens[2]);
}

int main(void)
{
	const char *root = getenv("REKEYFS_FIXTURES");
	struct stat st;

	if (root == NULL)
		root = "tests/fixtures";
	SETUP(rkfs_crypt_init() == 0);
	if (stat(root, &st) != 0) {
		fprintf(stderr,
			"%s: %s (run from the top of the tree, or set "
			"REKEYFS_FIXTURES)\n",
			root, strerror(errno));
		return 99;
	}
	check_version(root, "v1", 0);
	check_version(root, "v1-holeauth", RKFS_FLAG_HOLE_AUTH);
	return check_report("test_fixtures");
}
