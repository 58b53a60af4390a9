/*
 * Shared by the libFuzzer harnesses in tests/fuzz/: a check that aborts
 * (libFuzzer then saves the input as a crash), and the golden fixture
 * keyring (tests/fixtures/v1/keyring: public test data, inline keys only)
 * for the harnesses that need keys.
 *
 * No harness loads keys from key_file or key_command sources, nor sets a
 * passphrase source while it parses fuzz input: keyrings are parsed
 * without RKFS_KR_LOAD_KEYS, which is what keeps every key_file unopened
 * and every key_command unrun.
 */
#ifndef RKFS_FUZZ_H
#define RKFS_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/keyring.h"

#define FUZZ_CHECK(cond)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: check failed: %s\n",          \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

static const char fuzz_fixture_keyring[] =
	"[keyring]\n"
	"primary = 2\n"
	"\n"
	"[generation 1]\n"
	"state = enabled\n"
	"created = 2026-11-01T00:00:00Z\n"
	"key = base64:RD1moRZYtdKq52TERfmCfOLzVVIKF/7DcWejDI+xDqE=\n"
	"check = 78f718410cec3b5ad858e848ecf43d28\n"
	"\n"
	"[generation 2]\n"
	"state = enabled\n"
	"created = 2026-11-02T00:00:00Z\n"
	"key = base64:KS0SR4qm39gBqVujQtISjqwDwyjRuy4i9qflzq0icAM=\n"
	"check = 7602f4d27f966467c147b14acfd301f5\n";

static void fuzz_log_sink(int level, const char *msg)
{
	(void)level;
	(void)msg;
}

/*
 * Log lines are formatted (so their format strings are fuzzed too) but
 * dropped: a harness prints only what made it fail.
 */
static inline void fuzz_quiet_log(void)
{
	rkfs_log_set_sink(fuzz_log_sink);
}

/* The fixture keyring; aborts if it does not load. */
static inline struct rkfs_keyring *fuzz_fixture_load(void)
{
	struct rkfs_error err = { 0 };
	struct rkfs_keyring *kr = NULL;

	FUZZ_CHECK(rkfs_crypt_init() == 0);
	if (rkfs_keyring_parse(&kr, fuzz_fixture_keyring,
			       sizeof(fuzz_fixture_keyring) - 1, "fixture",
			       NULL, 0, &err) != 0) {
		fprintf(stderr, "fixture keyring: %s\n", err.msg);
		abort();
	}
	return kr;
}

#endif /* RKFS_FUZZ_H */
