/*
 * libFuzzer harness: intent records (rkfs_intent_parse, _verify,
 * _format).  A record that parses has a known version and paths of the
 * promised form; one that formats (every version 3 record must) parses
 * back to the same fields as a version 3 record that verifies under the
 * key it was signed with.  Records are signed with the fixture keyring's
 * generation 2 key, as is the seed corpus/intent/v3 (mkseeds.c).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "rekeyfs/intent.h"
#include "rekeyfs/meta.h"

static struct rkfs_keyring *fixture; /* kept for the whole run */
static const unsigned char *key;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_log();
	fixture = fuzz_fixture_load();
	key = rkfs_keyring_find(fixture, 2)->key;
	FUZZ_CHECK(key != NULL);
	return 0;
}

static void path_form(const char *p)
{
	size_t n = strlen(p);

	FUZZ_CHECK(n > 0 && p[0] != '/' && p[n - 1] != '/');
	FUZZ_CHECK(strstr(p, "//") == NULL);
	FUZZ_CHECK(strcmp(p, ".") != 0 && strcmp(p, "..") != 0);
	FUZZ_CHECK(strncmp(p, "./", 2) != 0 && strncmp(p, "../", 3) != 0);
	FUZZ_CHECK(strstr(p, "/./") == NULL && strstr(p, "/../") == NULL);
	FUZZ_CHECK(n < 2 || strcmp(p + n - 2, "/.") != 0);
	FUZZ_CHECK(n < 3 || strcmp(p + n - 3, "/..") != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rkfs_intent in, in2;
	const char *base;
	char *text, *copy;
	size_t len;
	int ret;

	/* verify() reads the record as a C string's bytes: own a copy. */
	copy = malloc(size + 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	copy[size] = '\0';
	if (rkfs_intent_parse(&in, copy, size) != 0) {
		free(copy);
		return 0;
	}
	FUZZ_CHECK(in.version >= 1 && in.version <= RKFS_INTENT_VERSION);
	FUZZ_CHECK(in.target != NULL);
	path_form(in.target);
	if (in.version == 1) {
		FUZZ_CHECK(in.temp == NULL && strchr(in.target, '/') == NULL);
	} else {
		FUZZ_CHECK(in.temp != NULL);
		path_form(in.temp);
		base = strrchr(in.temp, '/');
		base = base ? base + 1 : in.temp;
		FUZZ_CHECK(strncmp(base, RKFS_TMP_PREFIX,
				   strlen(RKFS_TMP_PREFIX)) == 0);
	}
	FUZZ_CHECK(in.times[0].tv_nsec >= 0 && in.times[0].tv_nsec < 1000000000);
	FUZZ_CHECK(in.times[1].tv_nsec >= 0 && in.times[1].tv_nsec < 1000000000);
	ret = rkfs_intent_verify(&in, copy, key);
	FUZZ_CHECK(in.version == 3 ? ret == 0 || ret == -EBADMSG
				   : ret == -EINVAL);
	FUZZ_CHECK(in.version != 3 || in.signed_len < size);

	ret = rkfs_intent_format(&text, &len, &in, key);
	if (in.version == 1) {
		FUZZ_CHECK(ret == -EINVAL);
		goto out;
	}
	FUZZ_CHECK(ret == 0);
	FUZZ_CHECK(rkfs_intent_parse(&in2, text, len) == 0);
	FUZZ_CHECK(in2.version == RKFS_INTENT_VERSION);
	FUZZ_CHECK(rkfs_intent_verify(&in2, text, key) == 0);
	FUZZ_CHECK(in2.generation == in.generation);
	FUZZ_CHECK(in2.dev == in.dev && in2.ino == in.ino &&
		   in2.size == in.size);
	for (int i = 0; i < 2; i++)
		FUZZ_CHECK(in2.times[i].tv_sec == in.times[i].tv_sec &&
			   in2.times[i].tv_nsec == in.times[i].tv_nsec);
	FUZZ_CHECK(memcmp(in2.old_hdr, in.old_hdr, RKFS_HEADER_LEN) == 0);
	FUZZ_CHECK(memcmp(in2.new_hdr, in.new_hdr, RKFS_HEADER_LEN) == 0);
	FUZZ_CHECK(strcmp(in2.target, in.target) == 0);
	FUZZ_CHECK(strcmp(in2.temp, in.temp) == 0);
	rkfs_intent_free(&in2);
	free(text);
out:
	rkfs_intent_free(&in);
	free(copy);
	return 0;
}
