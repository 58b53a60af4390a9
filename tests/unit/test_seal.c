/*
 * Passphrase-sealed keyrings: format -> parse round trips, every field
 * covered by the mac, wrong passphrases, the per-salt key cache, and the
 * key_command_timeout setting.
 */
#include "rekeyfs/keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/meta.h"

#define NAME "sealed.ini"
#define OPS 1ULL
#define MEM (8UL << 20)

static const char *passphrase = "correct horse";
static int asked;

static int source(char *buf, size_t size, const char *keyring,
		  struct rkfs_error *err, void *arg)
{
	asked++;
	snprintf(buf, size, "%s", passphrase);
	return 0;
}

static int parse(struct rkfs_keyring **kr, const char *text,
		 struct rkfs_error *err)
{
	memset(err, 0, sizeof(*err));
	return rkfs_keyring_parse(kr, text, strlen(text), NAME, NULL, 0, err);
}

/* A sealed keyring text with generations 1 (inline), 2 (key_file),
 * 3 (inline, disabled) and 4 (destroyed); primary 1. */
static char *make_sealed(void)
{
	struct rkfs_keyring *kr = rkfs_keyring_new();
	struct rkfs_error err = {0};
	char *text, *copy;
	size_t len;

	SETUP(kr != NULL);
	for (uint32_t n = 1; n <= 4; n++) {
		struct rkfs_generation g = {.number = n};

		g.created = strdup("2026-11-01T00:00:00Z");
		if (n == 1 || n == 3) {
			g.source = RKFS_KEY_INLINE;
			g.key = sodium_malloc(RKFS_KEY_LEN);
			SETUP(g.key != NULL);
			memset(g.key, (int)n, RKFS_KEY_LEN);
			rkfs_crypt_check_value(g.check, g.key);
			g.has_check = true;
		} else if (n == 2) {
			g.source = RKFS_KEY_FILE;
			g.key_file = strdup("/nonexistent/vault-2.key");
		}
		g.state = n == 3   ? RKFS_GEN_DISABLED
			  : n == 4 ? RKFS_GEN_DESTROYED
				   : RKFS_GEN_ENABLED;
		SETUP(rkfs_keyring_append(kr, &g, &err) == 0);
	}
	kr->primary = 1;
	kr->primary_explicit = true;
	SETUP(rkfs_keyring_seal(kr, passphrase, strlen(passphrase), OPS, MEM,
				&err) == 0);
	SETUP(rkfs_keyring_format(&text, &len, kr) == 0);
	copy = strndup(text, len);
	SETUP(copy != NULL);
	sodium_free(text);
	rkfs_keyring_free(kr);
	return copy;
}

/* Replace the first occurrence of from with to (to may be longer). */
static char *edit(const char *text, const char *from, const char *to)
{
	const char *p = strstr(text, from);
	char *out;

	SETUP(p != NULL);
	SETUP(asprintf(&out, "%.*s%s%s", (int)(p - text), text, to,
		       p + strlen(from)) > 0);
	return out;
}

static void test_round_trip(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_error err;
	unsigned char want[RKFS_KEY_LEN];
	char *text = make_sealed(), *again;
	size_t len;
	int e;

	CHECK(strstr(text, "base64:") == NULL);
	CHECK(strstr(text, "sealed = argon2id\n") != NULL);
	CHECK(strstr(text, "kdf_ops = 1\n") != NULL);
	CHECK(strstr(text, "kdf_mem = 8388608\n") != NULL);
	CHECK(strstr(text, "key = sealed:") != NULL);
	rkfs_keyring_forget_passphrases();
	asked = 0;
	CHECK_EQ(parse(&kr, text, &err), 0);
	CHECK_EQ(asked, 1);
	if (kr == NULL)
		goto out;
	CHECK(kr->sealed);
	CHECK_EQ(kr->primary, 1);
	memset(want, 1, sizeof(want));
	CHECK(rkfs_keyring_key(kr, 1, &e) != NULL &&
	      sodium_memcmp(rkfs_keyring_key(kr, 1, &e), want, 32) == 0);
	memset(want, 3, sizeof(want));
	CHECK(rkfs_keyring_find(kr, 3)->key != NULL &&
	      sodium_memcmp(rkfs_keyring_find(kr, 3)->key, want, 32) == 0);
	CHECK(rkfs_keyring_key(kr, 3, &e) == NULL && e == -EKEYREVOKED);
	CHECK_EQ(rkfs_keyring_find(kr, 4)->state, RKFS_GEN_DESTROYED);
	CHECK(strcmp(rkfs_keyring_find(kr, 2)->key_file,
		     "/nonexistent/vault-2.key") == 0);
	/* Formatting again re-seals with fresh nonces: the text differs but
	 * still opens, from the cache (no second question). */
	CHECK_EQ(rkfs_keyring_format(&again, &len, kr), 0);
	rkfs_keyring_free(kr);
	if (again == NULL)
		goto out;
	CHECK(strcmp(again, text) != 0);
	CHECK_EQ(parse(&kr, again, &err), 0);
	CHECK_EQ(asked, 1);
	rkfs_keyring_free(kr);
	/* Unsealing writes plain keys. */
	CHECK_EQ(parse(&kr, again, &err), 0);
	sodium_free(again);
	if (kr) {
		rkfs_keyring_unseal(kr);
		CHECK_EQ(rkfs_keyring_format(&again, &len, kr), 0);
		CHECK(strstr(again, "sealed") == NULL);
		CHECK(strstr(again, "key = base64:") != NULL);
		sodium_free(again);
		rkfs_keyring_free(kr);
	}
out:
	free(text);
}

static void test_wrong_passphrase(void)
{
	struct rkfs_keyring *kr = (struct rkfs_keyring *)0x1;
	struct rkfs_error err;
	char *text = make_sealed();

	rkfs_keyring_forget_passphrases();
	passphrase = "wrong horse";
	CHECK_EQ(parse(&kr, text, &err), -EACCES);
	CHECK(kr == NULL);
	CHECK(strstr(err.msg, NAME ": wrong passphrase") == err.msg);
	CHECK(strstr(err.msg, "horse") == NULL);
	passphrase = "correct horse";
	/* No source at all. */
	rkfs_keyring_forget_passphrases();
	rkfs_keyring_set_passphrase_source_ex(NULL, NULL);
	CHECK_EQ(parse(&kr, text, &err), -ENOKEY);
	CHECK(strstr(err.msg, "no passphrase source") != NULL);
	rkfs_keyring_set_passphrase_source_ex(source, NULL);
	free(text);
}

/* Each edit changes meaning and must be refused; none leaks the key. */
static void test_edits(void)
{
	static const char *const edits[][2] = {
	    {"primary = 1\n", "primary = 2\n"},
	    {"state = disabled\n", "state = enabled\n"},
	    {"state = enabled\n", "state = disabled\n"},
	    {"created = 2026-11-01T00:00:00Z\nkey_file",
	     "created = 2026-11-02T00:00:00Z\nkey_file"},
	    {"key_file = /nonexistent/vault-2.key",
	     "key_file = /nonexistent/vault-9.key"},
	    {"\ncheck = ", "\ncheck = 0"}, /* one digit dropped below */
	    {"kdf_ops = 1\n", "kdf_ops = 2\n"},
	    {"[generation 4]\nstate = destroyed\n",
	     "[generation 4]\nstate = destroyed\n"
	     "key_command_timeout = 5\n"},
	    {"[generation 4]\n", "[generation 5]\n"},
	};
	char *text = make_sealed();

	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		struct rkfs_keyring *kr = (struct rkfs_keyring *)0x1;
		struct rkfs_error err;
		char *bad = edit(text, edits[i][0], edits[i][1]);
		int ret;

		if (i == 5) {
			/* keep 32 hex digits: drop the last one (of this
			 * check, not of a pass_check that starts with 0) */
			char *nl = strchr(strstr(bad, "\ncheck = 0") + 1, '\n');

			memmove(nl - 1, nl, strlen(nl) + 1);
		}
		ret = parse(&kr, bad, &err);
		/* kdf parameters derive another key: "wrong passphrase" */
		CHECK_EQ(ret, i == 6 ? -EACCES : -EBADMSG);
		CHECK(kr == NULL);
		CHECK(strstr(err.msg,
			     i == 6 ? "kdf" : "modified outside rekeyfs-key") !=
		      NULL);
		free(bad);
	}
	/* Moving the sealed key of generation 3 into generation 1. */
	{
		struct rkfs_keyring *kr;
		struct rkfs_error err;
		char *k1 = strstr(text, "key = sealed:");
		char *k3 = strstr(k1 + 1, "key = sealed:");
		char *a = strndup(k1, strcspn(k1, "\n"));
		char *b = strndup(k3, strcspn(k3, "\n"));
		char *t1 = edit(text, a, "@@A@@");
		char *t2 = edit(t1, b, a);
		char *t3 = edit(t2, "@@A@@", b);

		CHECK_EQ(parse(&kr, t3, &err), -EBADMSG);
		free(a);
		free(b);
		free(t1);
		free(t2);
		free(t3);
	}
	/* A plain key added by hand. */
	{
		struct rkfs_keyring *kr;
		struct rkfs_error err;
		char *bad;

		SETUP(asprintf(&bad,
			       "%s\n[generation 9]\nkey = base64:"
			       "ERERERERERERERERERERERERERERERERERERERE"
			       "RERE=\n",
			       text) > 0);
		CHECK_EQ(parse(&kr, bad, &err), -EINVAL);
		CHECK(strstr(err.msg, "plain key in a sealed keyring") != NULL);
		free(bad);
	}
	/* A sealed key in an unsealed keyring. */
	{
		struct rkfs_keyring *kr;
		struct rkfs_error err;
		char *bad = edit(text, "sealed = argon2id\n", "");

		CHECK_EQ(parse(&kr, bad, &err), -EINVAL);
		CHECK(strstr(err.msg, "needs sealed") != NULL ||
		      strstr(err.msg, "has a sealed key") != NULL);
		free(bad);
	}
	free(text);
}

static void test_params(void)
{
	struct rkfs_keyring *kr = rkfs_keyring_new();
	struct rkfs_error err = {0};

	SETUP(kr != NULL);
	CHECK_EQ(rkfs_keyring_seal(kr, "x", 1, 0, 1024, &err), -EINVAL);
	CHECK(strstr(err.msg, "out of range") != NULL);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_seal(kr, "x", 1, 1000, MEM, &err), -EINVAL);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_seal(kr, "", 0, OPS, MEM, &err), -EINVAL);
	CHECK(!kr->sealed);
	rkfs_keyring_free(kr);
}

static void test_timeout(void)
{
	static const char text[] = "[generation 1]\nkey_command = sleep 20\n"
				   "key_command_timeout = 1\n";
	struct rkfs_keyring *kr;
	struct rkfs_error err = {0};

	CHECK_EQ(rkfs_keyring_parse(&kr, text, strlen(text), NAME, NULL,
				    RKFS_KR_LOAD_KEYS, &err),
		 -ETIME);
	CHECK(strstr(err.msg, NAME ":1: generation 1: key_command timed out "
				   "after 1 s") != NULL);
}

/* The sealed and unsealed keyrings of make_sealed()'s keys. */
static void both(struct rkfs_keyring **sealed, struct rkfs_keyring **plain)
{
	struct rkfs_error err = {0};
	char *text = make_sealed();
	char *ptext;
	size_t len;

	SETUP(parse(sealed, text, &err) == 0);
	SETUP(parse(plain, text, &err) == 0);
	rkfs_keyring_unseal(*plain);
	SETUP(rkfs_keyring_format(&ptext, &len, *plain) == 0);
	rkfs_keyring_free(*plain);
	SETUP(parse(plain, ptext, &err) == 0);
	SETUP(!(*plain)->sealed);
	sodium_free(ptext);
	free(text);
}

static void test_downgrade(void)
{
	struct rkfs_keyring *sealed, *plain;
	struct rkfs_error err = {0};
	struct rkfs_generation *g;
	uint32_t in_use[] = { 1, 3 };

	both(&sealed, &plain);
	CHECK_EQ(rkfs_keyring_check_downgrade(sealed, sealed, in_use, 2, &err),
		 0);
	CHECK_EQ(rkfs_keyring_check_downgrade(plain, sealed, NULL, 0, &err),
		 0);
	CHECK_EQ(rkfs_keyring_check_downgrade(sealed, plain, NULL, 0, &err),
		 -EPERM);
	CHECK(strstr(err.msg, "unsealed keyring in place of the "
			      "passphrase-sealed one") != NULL);
	/* Even the operator's override does not let a running mount go. */
	rkfs_keyring_allow_unsealed(true);
	CHECK_EQ(rkfs_keyring_check_downgrade(sealed, plain, NULL, 0, &err),
		 -EPERM);
	rkfs_keyring_allow_unsealed(false);
	/* Destroying or dropping a generation that open files use. */
	g = rkfs_keyring_find(plain, 3);
	g->state = RKFS_GEN_DESTROYED;
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_check_downgrade(plain, plain, in_use, 2, &err),
		 -EPERM);
	CHECK(strstr(err.msg, "destroys generation 3") != NULL);
	g->number = 9;
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_check_downgrade(plain, plain, in_use, 2, &err),
		 -EPERM);
	CHECK(strstr(err.msg, "without generation 3") != NULL);
	CHECK_EQ(rkfs_keyring_check_downgrade(plain, plain, in_use, 1, &err),
		 0);
	/* A passphrase source given: an unsealed keyring is refused. */
	CHECK_EQ(rkfs_keyring_check_sealed(plain, false, NULL, &err), 0);
	rkfs_keyring_require_sealed(true);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_check_sealed(plain, false, NULL, &err), -EPERM);
	CHECK(strstr(err.msg, "passphrase source was given") != NULL);
	CHECK_EQ(rkfs_keyring_check_sealed(sealed, false, NULL, &err), 0);
	rkfs_keyring_allow_unsealed(true);
	CHECK_EQ(rkfs_keyring_check_sealed(plain, false, NULL, &err), 0);
	rkfs_keyring_allow_unsealed(false);
	rkfs_keyring_require_sealed(false);
	rkfs_keyring_free(sealed);
	rkfs_keyring_free(plain);
}

static char *read_meta(int fd)
{
	char *text;
	size_t len;

	SETUP(rkfs_read_small_file(&text, &len, fd, RKFS_META_NAME, 1 << 16,
				   false) == 0);
	return text;
}

static void write_meta(int fd, const char *text)
{
	SETUP(rkfs_write_atomic(fd, RKFS_META_NAME, text, strlen(text), 0644,
				NULL) == 0);
}

/* The tree records a sealed keyring; dropping the record is seen. */
static void test_meta_sealed(void)
{
	struct rkfs_keyring *sealed, *plain;
	struct rkfs_error err = {0};
	struct rkfs_meta *m = NULL;
	char dir[] = "/tmp/rkfs-seal-XXXXXX";
	char *text, *edited;
	int fd;

	both(&sealed, &plain);
	SETUP(mkdtemp(dir) != NULL);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	SETUP(fd >= 0);

	/* An unsealed tree stays in the old format, readable by all. */
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, plain,
				RKFS_META_CREATE | RKFS_META_RECORD, &err),
		 0);
	rkfs_meta_free(m);
	text = read_meta(fd);
	CHECK(strstr(text, "keyring = sealed") == NULL);
	CHECK(strstr(text, "auth =") == NULL);
	free(text);
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, plain, 0, &err), 0);
	rkfs_meta_free(m);

	/* A read-write open with the sealed keyring records it. */
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, sealed, RKFS_META_RECORD, &err),
		 0);
	CHECK(m && m->sealed);
	rkfs_meta_free(m);
	text = read_meta(fd);
	CHECK(strstr(text, "keyring = sealed\n") != NULL);
	CHECK(strstr(text, "auth = ") != NULL);

	/* From now on the unsealed keyring is refused ... */
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, plain, RKFS_META_RECORD, &err),
		 -EPERM);
	CHECK(m == NULL);
	CHECK(strstr(err.msg, "passphrase-sealed") != NULL);
	/* ... unless the operator says so. */
	rkfs_keyring_allow_unsealed(true);
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, plain, 0, &err), 0);
	rkfs_meta_free(m);
	rkfs_keyring_allow_unsealed(false);

	/* Deleting the record while an auth value stays: refused by all. */
	edited = edit(text, "keyring = sealed\n", "");
	write_meta(fd, edited);
	free(edited);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, plain, 0, &err), -EBADMSG);
	CHECK(strstr(err.msg, "was edited") != NULL);
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, sealed, 0, &err), -EBADMSG);
	/* Also when no key of the tree is at hand to verify anything. */
	edited = edit(text, "keyring = sealed\n", "");
	{
		char *a = strstr(edited, "[generation 1]");

		SETUP(a != NULL);
		memcpy(a, "[generation 7]", 14);
	}
	write_meta(fd, edited);
	free(edited);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, plain, 0, &err), -EBADMSG);
	CHECK(strstr(err.msg, "no \"keyring = sealed\" record") != NULL);

	/* A changed auth value is seen by a holder of the key. */
	edited = strdup(text);
	SETUP(edited != NULL);
	{
		char *a = strstr(edited, "auth = ") + 7;

		*a = *a == '0' ? '1' : '0';
	}
	write_meta(fd, edited);
	free(edited);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, sealed, 0, &err), -EBADMSG);
	CHECK(strstr(err.msg, "auth value of generation 1") != NULL);

	/* Restored, it opens again with the sealed keyring. */
	write_meta(fd, text);
	CHECK_EQ(rkfs_meta_open(&m, fd, dir, sealed, 0, &err), 0);
	rkfs_meta_free(m);
	free(text);

	unlinkat(fd, RKFS_META_NAME, 0);
	close(fd);
	rmdir(dir);
	rkfs_keyring_free(sealed);
	rkfs_keyring_free(plain);
}

int main(void)
{
	SETUP(rkfs_crypt_init() == 0);
	rkfs_keyring_set_passphrase_source_ex(source, NULL);
	test_round_trip();
	test_wrong_passphrase();
	test_edits();
	test_params();
	test_timeout();
	test_downgrade();
	test_meta_sealed();
	rkfs_keyring_forget_passphrases();
	return check_report("test_seal");
}
