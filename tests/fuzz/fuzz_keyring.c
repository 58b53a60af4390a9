/*
 * libFuzzer harness: the keyring and generation-snippet parser and the
 * keyring writer.  Every input is parsed as a keyring and as a snippet;
 * whatever parses and passes rkfs_keyring_check_values() must survive
 * rkfs_keyring_format() and a second parse unchanged (a keyring that
 * rekeyfs-key saves must load again), and formatting it again must give
 * the same text (unsealed keyrings; sealed ones take fresh nonces).
 *
 * Keys are never loaded (no RKFS_KR_LOAD_KEYS): no key_file is opened and
 * no key_command runs.  No passphrase source is set while fuzzing: a
 * sealed keyring opens only when its salt, Argon2id parameters and
 * pass_check are those of the seed corpus/keyring/sealed (passphrase
 * "fuzz", made by mkseeds.c), whose derived keys LLVMFuzzerInitialize()
 * puts in the process's passphrase cache; any other sealed input fails
 * with -ENOKEY before Argon2id could run with fuzzed parameters.
 */
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"

/* corpus/keyring/sealed less its comments (which the mac does not cover) */
static const char sealed_seed[] =
	"\n"
	"[keyring]\n"
	"primary = 2\n"
	"sealed = argon2id\n"
	"kdf_salt = 98e3913d7449371be31e2369daa77eec\n"
	"kdf_ops = 1\n"
	"kdf_mem = 8192\n"
	"pass_check = 4dd6be709d4b3316befa691a48cb0ec7\n"
	"mac = 57901aca82881bc6cc80fbb2b74741eb3773a94b18161e089b999097b3aaebd5\n"
	"\n"
	"[generation 1]\n"
	"state = enabled\n"
	"created = 2026-11-01T00:00:00Z\n"
	"key = sealed:IXvBCWvOqa51g46UZGvVOY/zH7LdQZCpRcA3tu8cY3Fjt1zpDfdKpOEAvFRJ5Tm7fNw6r3MQZBMeuSmSmdqFtCTpjs/ECeBS\n"
	"check = 78f718410cec3b5ad858e848ecf43d28\n"
	"\n"
	"[generation 2]\n"
	"state = enabled\n"
	"created = 2026-11-02T00:00:00Z\n"
	"key = sealed:DUgIJAAK4gX4fzYpHEt0afPixEZipKByJyONJAqo7WkAYwauPvchIqKt/egw6LgiYdwdkxGLRqr5BeckbkUMCL/bGd84LxO+\n"
	"check = 7602f4d27f966467c147b14acfd301f5\n";

static int seed_pass(char *buf, size_t size, const char *keyring,
		     struct rkfs_error *err, void *arg)
{
	snprintf(buf, size, "fuzz");
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct rkfs_error err = { 0 };
	struct rkfs_keyring *kr;

	FUZZ_CHECK(rkfs_crypt_init() == 0);
	fuzz_quiet_log();
	rkfs_keyring_set_passphrase_source_ex(seed_pass, NULL);
	if (rkfs_keyring_parse(&kr, sealed_seed, sizeof(sealed_seed) - 1,
			       "sealed seed", NULL, 0, &err) != 0) {
		fprintf(stderr, "sealed seed: %s\n", err.msg);
		abort();
	}
	rkfs_keyring_free(kr);
	rkfs_keyring_set_passphrase_source_ex(NULL, NULL);
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void same_keyring(const struct rkfs_keyring *a,
			 const struct rkfs_keyring *b, bool snippet)
{
	FUZZ_CHECK(a->count == b->count);
	FUZZ_CHECK(a->sealed == b->sealed);
	if (!snippet) {
		FUZZ_CHECK(a->primary == b->primary);
		FUZZ_CHECK(a->primary_explicit == b->primary_explicit);
	}
	if (a->sealed) {
		unsigned long long ops_a, ops_b;
		size_t mem_a, mem_b;

		FUZZ_CHECK(rkfs_keyring_seal_params(a, &ops_a, &mem_a) == 0);
		FUZZ_CHECK(rkfs_keyring_seal_params(b, &ops_b, &mem_b) == 0);
		FUZZ_CHECK(ops_a == ops_b && mem_a == mem_b);
	}
	for (size_t i = 0; i < a->count; i++) {
		const struct rkfs_generation *x = &a->gens[i], *y = &b->gens[i];

		FUZZ_CHECK(x->number == y->number);
		FUZZ_CHECK(x->state == y->state);
		FUZZ_CHECK(x->source == y->source);
		FUZZ_CHECK(str_eq(x->created, y->created));
		FUZZ_CHECK(str_eq(x->key_file, y->key_file));
		FUZZ_CHECK(str_eq(x->key_command, y->key_command));
		FUZZ_CHECK((x->key == NULL) == (y->key == NULL));
		FUZZ_CHECK(x->key == NULL ||
			   sodium_memcmp(x->key, y->key, RKFS_KEY_LEN) == 0);
		FUZZ_CHECK(x->has_check == y->has_check);
		FUZZ_CHECK(!x->has_check ||
			   memcmp(x->check, y->check, RKFS_CHECK_LEN) == 0);
		FUZZ_CHECK(x->key_command_timeout == y->key_command_timeout);
		if (i > 0)
			FUZZ_CHECK(x->number > a->gens[i - 1].number);
	}
}

/* What a loaded keyring promises its users. */
static void use_keyring(const struct rkfs_keyring *kr, bool snippet)
{
	const unsigned char *k;
	int e;

	if (!snippet && kr->count > 0) {
		const struct rkfs_generation *p =
			rkfs_keyring_find(kr, kr->primary);

		FUZZ_CHECK(p != NULL && p->state == RKFS_GEN_ENABLED);
	}
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];

		k = rkfs_keyring_key(kr, g->number, &e);
		FUZZ_CHECK(k == NULL || g->state == RKFS_GEN_ENABLED);
		FUZZ_CHECK(g->state != RKFS_GEN_DESTROYED ||
			   g->source == RKFS_KEY_NONE);
	}
	(void)rkfs_keyring_max_generation(kr);
}

static void round_trip(const uint8_t *data, size_t size, unsigned flags)
{
	struct rkfs_error err = { 0 };
	struct rkfs_keyring *kr = NULL, *kr2 = NULL;
	bool snippet = flags & RKFS_KR_SNIPPET;
	char *text = NULL, *text2 = NULL;
	const char *start;
	size_t len, len2;

	if (rkfs_keyring_parse(&kr, (const char *)data, size, "fuzz", NULL,
			       flags, &err) != 0)
		return;
	use_keyring(kr, snippet);
	if (rkfs_keyring_check_values(kr, &err) != 0)
		goto out;
	FUZZ_CHECK(rkfs_keyring_format(&text, &len, kr) == 0);
	FUZZ_CHECK(strlen(text) == len);
	/* A snippet has no [keyring] section: parse its generations alone. */
	start = text;
	if (snippet) {
		start = strstr(text, "\n[generation ");
		start = start ? start + 1 : text + len;
	}
	if (rkfs_keyring_parse(&kr2, start, len - (size_t)(start - text),
			       "fuzz (formatted)", NULL, flags, &err) != 0) {
		fprintf(stderr, "formatted keyring does not parse: %s\n%s\n",
			err.msg, text);
		abort();
	}
	same_keyring(kr, kr2, snippet);
	FUZZ_CHECK(rkfs_keyring_check_downgrade(kr, kr2, NULL, 0, &err) == 0);
	if (!kr->sealed) {
		FUZZ_CHECK(rkfs_keyring_format(&text2, &len2, kr2) == 0);
		FUZZ_CHECK(len == len2 && memcmp(text, text2, len) == 0);
		sodium_free(text2);
	}
	sodium_free(text);
out:
	rkfs_keyring_free(kr2);
	rkfs_keyring_free(kr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	round_trip(data, size, RKFS_KR_ALLOW_EMPTY);
	round_trip(data, size, RKFS_KR_SNIPPET);
	return 0;
}
