/*
 * libFuzzer harness: the backing tree's metadata (.rekeyfs.conf).  What
 * parses must format and parse back the same, format the same text twice,
 * and go through rkfs_meta_check() against the fixture keyring (whose
 * keys check the recorded check and auth values) without a sanitizer
 * report.  The seed corpus/meta/sealed, made by mkseeds.c, records the
 * fixture keyring as sealed, with auth lines.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "rekeyfs/meta.h"

static struct rkfs_keyring *fixture;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_log();
	fixture = fuzz_fixture_load();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rkfs_error err = { 0 };
	struct rkfs_meta *m, *m2;
	char *text, *text2;
	size_t len, len2;
	int ret;

	if (rkfs_meta_parse(&m, (const char *)data, size, &err) != 0)
		return 0;
	FUZZ_CHECK(m->format == RKFS_FORMAT_VERSION);
	for (size_t i = 1; i < m->count; i++)
		FUZZ_CHECK(m->gens[i - 1].number < m->gens[i].number);
	FUZZ_CHECK(rkfs_meta_format(&text, &len, m) == 0);
	if (rkfs_meta_parse(&m2, text, len, &err) != 0) {
		fprintf(stderr, "formatted metadata does not parse: %s\n%s\n",
			err.msg, text);
		abort();
	}
	FUZZ_CHECK(m2->format == m->format && m2->sealed == m->sealed);
	FUZZ_CHECK(memcmp(m2->id, m->id, sizeof(m->id)) == 0);
	FUZZ_CHECK(m2->count == m->count);
	for (size_t i = 0; i < m->count; i++) {
		const struct rkfs_meta_gen *a = &m->gens[i], *b = &m2->gens[i];

		FUZZ_CHECK(a->number == b->number);
		FUZZ_CHECK(memcmp(a->check, b->check, sizeof(a->check)) == 0);
		FUZZ_CHECK(a->has_auth == b->has_auth);
		FUZZ_CHECK(!a->has_auth ||
			   memcmp(a->auth, b->auth, sizeof(a->auth)) == 0);
		FUZZ_CHECK(rkfs_meta_find(m2, a->number) == b);
	}
	FUZZ_CHECK(rkfs_meta_format(&text2, &len2, m2) == 0);
	FUZZ_CHECK(len == len2 && memcmp(text, text2, len) == 0);
	free(text2);
	free(text);

	ret = rkfs_meta_check(m, fixture, "fuzz", &err);
	FUZZ_CHECK(ret == 0 || ret == -EKEYREJECTED || ret == -EBADMSG ||
		   ret == -EPERM);
	rkfs_meta_free(m2);
	rkfs_meta_free(m);
	return 0;
}
