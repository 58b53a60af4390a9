/*
 * Keyring parsing and loading: every parse error names file:line and
 * leaves nothing behind; key_file and key_command sources; check values;
 * format -> parse round trips; atomic save at mode 0600.
 */
#include "rekeyfs/keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/config.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/passphrase.h"

#define NAME "kr.ini"

/* Keys of 0x00..0x1f, all 0x11, all 0x22. */
#define K0 "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define K1 "base64:ERERERERERERERERERERERERERERERERERERERERERE="
#define K2 "base64:IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI="

static char tmpdir[64];

static int parse(struct rkfs_keyring **kr, const char *text, unsigned flags,
		 struct rkfs_error *err)
{
	memset(err, 0, sizeof(*err));
	return rkfs_keyring_parse(kr, text, strlen(text), NAME, tmpdir, flags,
				  err);
}

/*
 * text must fail with code, and the message must start with
 * "kr.ini:<line>: " for one of the lines given (0-terminated list), and
 * contain word.
 */
static void expect_fail_at(int line, const char *file, const char *text,
			   int code, const char *word, ...)
{
	struct rkfs_keyring *kr = (struct rkfs_keyring *)0x1;
	struct rkfs_error err;
	char prefix[64];
	bool at = false;
	va_list ap;
	int ret, l;

	ret = parse(&kr, text, RKFS_KR_LOAD_KEYS, &err);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "%s:%d: %s\n", file, line, err.msg);
	va_start(ap, word);
	while ((l = va_arg(ap, int)) != 0) {
		/* -1: a whole-file problem, named without a line */
		if (l < 0)
			snprintf(prefix, sizeof(prefix), NAME ": ");
		else
			snprintf(prefix, sizeof(prefix), NAME ":%d: ", l);
		if (strncmp(err.msg, prefix, strlen(prefix)) == 0)
			at = true;
	}
	va_end(ap);
	if (ret != code || kr != NULL || !at ||
	    (word && strstr(err.msg, word) == NULL)) {
		check_failed++;
		fprintf(stderr,
			"%s:%d: keyring should fail with %d at the given "
			"line(s) mentioning '%s'; got %d: %s\n",
			file, line, code, word ? word : "", ret, err.msg);
		rkfs_keyring_free(kr == (struct rkfs_keyring *)0x1 ? NULL : kr);
	} else {
		check_passed++;
	}
}

#define FAIL_AT(text, code, word, ...)                                         \
	expect_fail_at(__LINE__, __FILE__, text, code, word, __VA_ARGS__, 0)

static void test_parse_errors(void)
{
	char longline[400];

	FAIL_AT("[keyring]\n[bogus]\nx = 1\n[generation 1]\nkey = " K0 "\n",
		-EINVAL, "bogus", 2);
	FAIL_AT("[generation 1]\nkey = " K0 "\nfoo = bar\n", -EINVAL, "foo", 3);
	FAIL_AT("[keyring]\nprimary = 1\nfoo = 2\n[generation 1]\nkey = " K0
		"\n",
		-EINVAL, "foo", 3);
	FAIL_AT("[generation 1]\nstate = retired\nkey = " K0 "\n", -EINVAL,
		"retired", 2);
	FAIL_AT("[generation 1]\nkey = " K0 "\n[generation 2]\nkey = " K1
		"\n[generation 1]\nkey = " K2 "\n",
		-EINVAL, "twice", 5);
	FAIL_AT("[generation 2]\nkey = " K0 "\n[generation 1]\nkey = " K1 "\n",
		-EINVAL, "increasing", 3);
	FAIL_AT("[generation 0]\nkey = " K0 "\n", -EINVAL, "generation", 1);
	FAIL_AT("[generation x1]\nkey = " K0 "\n", -EINVAL, "generation", 1);
	/* Missing key source: the generation's own line. */
	FAIL_AT("[keyring]\nprimary = 1\n\n[generation 1]\nstate = enabled\n"
		"created = 2026-01-01T00:00:00Z\n",
		-EINVAL, "no key", 4);
	FAIL_AT("[generation 1]\nkey = " K0 "\nkey_file = /nonexistent\n",
		-EINVAL, "exactly one", 3);
	FAIL_AT("[generation 1]\nkey_command = true\nkey = " K0 "\n", -EINVAL,
		"exactly one", 3);
	/* Short (16 bytes), long (48 bytes), invalid, unprefixed keys. */
	FAIL_AT("[generation 1]\nkey = base64:AAECAwQFBgcICQoLDA0ODw==\n",
		-EINVAL, "32 bytes", 2);
	FAIL_AT("[generation 1]\nkey = base64:AAECAwQFBgcICQoLDA0ODxAREhMU"
		"FRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\n",
		-EINVAL, "32 bytes", 2);
	FAIL_AT("[generation 1]\nkey = base64:!!!!ECAwQFBgcICQoLDA0ODxAREhMU"
		"FRYXGBkaGxwdHh8=\n",
		-EINVAL, "32 bytes", 2);
	FAIL_AT("[generation 1]\nkey = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBka"
		"GxwdHh8=\n",
		-EINVAL, "base64:", 2);
	/* Primary pointing at a disabled generation. */
	FAIL_AT("[keyring]\nprimary = 2\n[generation 1]\nkey = " K0
		"\n[generation 2]\nstate = disabled\nkey = " K1 "\n",
		-EINVAL, "disabled", 2, 5, 6);
	FAIL_AT("[keyring]\nprimary = 1\n[generation 1]\nstate = destroyed\n"
		"[generation 2]\nkey = " K1 "\n",
		-EINVAL, "destroyed", 2, 3, 4);
	FAIL_AT("[generation 1]\nstate = destroyed\nkey = " K0 "\n", -EINVAL,
		"destroyed", 1);
	FAIL_AT("[generation 1]\nstate = destroyed\n"
		"[generation 2]\nstate = disabled\nkey = " K0 "\n",
		-EINVAL, "enabled", -1);
	FAIL_AT("[generation 1]\nkey = " K0 "\nstate = enabled\n"
		"state = disabled\n",
		-EINVAL, "twice", 4);
	FAIL_AT("[keyring]\nprimary = two\n[generation 1]\nkey = " K0 "\n",
		-EINVAL, "primary", 2);
	FAIL_AT("[keyring]\nprimary = 1\n[keyring]\nprimary = 1\n"
		"[generation 1]\nkey = " K0 "\n",
		-EINVAL, "twice", 3);
	FAIL_AT("key = " K0 "\n[generation 1]\nkey = " K0 "\n", -EINVAL, NULL,
		1);
	FAIL_AT("[generation 1]\nkey = " K0 "\nthis line has no equals sign\n",
		-EINVAL, "syntax", 3);
	/* An unclosed section header: the line is right, whatever it says. */
	FAIL_AT("[generation 1]\nkey = " K0 "\n[generation 2\nkey = " K1 "\n",
		-EINVAL, NULL, 3);
	/* The same generation twice in a row. */
	FAIL_AT("[generation 1]\nkey = " K0 "\n[generation 1]\nkey = " K1 "\n",
		-EINVAL, "twice", 3);
	FAIL_AT("[generation 1]\nkey = " K0 "\ncheck = 12zz\n", -EINVAL,
		"check", 3);

	/* A line longer than inih accepts. */
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "created = ", 10);
	longline[300] = '\0';
	{
		char text[600];

		snprintf(text, sizeof(text),
			 "[keyring]\n\n[generation 1]\nkey = %s\n%s\n", K0,
			 longline);
		FAIL_AT(text, -EINVAL, "longer", 5);
	}
}

static void test_parse_misc(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_error err;
	int e;

	/* No generations at all: an error without a line, allowed on request.
	 */
	CHECK_EQ(parse(&kr, "[keyring]\n", 0, &err), -EINVAL);
	CHECK(strstr(err.msg, NAME) == err.msg);
	CHECK(kr == NULL);
	CHECK_EQ(parse(&kr, "[keyring]\n", RKFS_KR_ALLOW_EMPTY, &err), 0);
	rkfs_keyring_free(kr);
	/* A NUL byte. */
	CHECK_EQ(
	    rkfs_keyring_parse(&kr, "[keyring]\0x", 11, NAME, NULL, 0, &err),
	    -EINVAL);

	/* Primary defaults to the highest enabled generation; states. */
	SETUP(parse(&kr,
		    "; comment\n[keyring]\n"
		    "[generation 1]\nstate = destroyed\n"
		    "[generation 2]\nkey = " K0 "\n"
		    "[generation 3]\nstate = enabled\nkey = " K1 "\n"
		    "[generation 4]\nstate = disabled\nkey = " K2 "\n",
		    RKFS_KR_LOAD_KEYS, &err) == 0);
	CHECK_EQ(kr->primary, 3);
	CHECK(!kr->primary_explicit);
	CHECK_EQ(kr->count, 4);
	CHECK_EQ(rkfs_keyring_max_generation(kr), 4);
	CHECK(rkfs_keyring_key(kr, 1, &e) == NULL);
	CHECK_EQ(e, -ENOKEY);
	CHECK(rkfs_keyring_key(kr, 2, &e) != NULL);
	CHECK_EQ(e, 0);
	CHECK_EQ(rkfs_keyring_key(kr, 3, &e)[0], 0x11);
	CHECK(rkfs_keyring_key(kr, 4, &e) == NULL);
	CHECK_EQ(e, -EKEYREVOKED);
	CHECK(rkfs_keyring_key(kr, 5, &e) == NULL);
	CHECK_EQ(e, -ENOKEY);
	CHECK(rkfs_keyring_find(kr, 4) != NULL);
	CHECK(rkfs_keyring_find(kr, 5) == NULL);
	rkfs_keyring_free(kr);

	/* Explicit primary below the highest. */
	SETUP(parse(&kr,
		    "[keyring]\nprimary = 1\n[generation 1]\nkey = " K0
		    "\n[generation 2]\nkey = " K1 "\n",
		    0, &err) == 0);
	CHECK_EQ(kr->primary, 1);
	CHECK(kr->primary_explicit);
	rkfs_keyring_free(kr);

	/* Keyrings loaded separately get distinct serials. */
	{
		struct rkfs_keyring *a, *b;

		SETUP(parse(&a, "[generation 1]\nkey = " K0 "\n", 0, &err) ==
		      0);
		SETUP(parse(&b, "[generation 1]\nkey = " K0 "\n", 0, &err) ==
		      0);
		CHECK(a->serial != b->serial);
		rkfs_keyring_free(a);
		rkfs_keyring_free(b);
	}
}

/* Primary naming a generation that is not listed: the file is named. */
static void test_primary_missing(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_error err;

	CHECK_EQ(parse(&kr,
		       "[keyring]\nprimary = 5\n[generation 1]\nkey = " K0 "\n",
		       0, &err),
		 -EINVAL);
	CHECK(kr == NULL);
	CHECK(strstr(err.msg, "5") != NULL);
	if (strncmp(err.msg, NAME ":", strlen(NAME ":")) != 0) {
		check_failed++;
		fprintf(stderr,
			"%s:%d: primary error does not name the keyring: %s\n",
			__FILE__, __LINE__, err.msg);
	}
}

/* ---- key sources --------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	SETUP(fd >= 0);
	SETUP(rkfs_pwrite_full(fd, data, len, 0) == 0);
	SETUP(fchmod(fd, mode) == 0);
	close(fd);
}

static int load_with(struct rkfs_keyring **kr, const char *source_line,
		     struct rkfs_error *err)
{
	char text[1024];

	snprintf(text, sizeof(text), "[keyring]\n\n[generation 7]\n%s\n",
		 source_line);
	return parse(kr, text, RKFS_KR_LOAD_KEYS, err);
}

static void test_key_file(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_error err;
	unsigned char raw[RKFS_KEY_LEN];
	char path[128], line[256], lnk[128];
	int e;

	for (int i = 0; i < RKFS_KEY_LEN; i++)
		raw[i] = (unsigned char)(0x80 + i); /* not printable text */
	snprintf(path, sizeof(path), "%s/k.key", tmpdir);
	snprintf(line, sizeof(line), "key_file = %s", path);

	/* Raw 32 bytes at 0600. */
	write_file(path, raw, sizeof(raw), 0600);
	CHECK_EQ(load_with(&kr, line, &err), 0);
	if (kr) {
		const unsigned char *k = rkfs_keyring_key(kr, 7, &e);

		CHECK(k != NULL && memcmp(k, raw, sizeof(raw)) == 0);
		CHECK_EQ(kr->gens[0].source, RKFS_KEY_FILE);
		rkfs_keyring_free(kr);
	}
	/* Relative to the keyring's directory. */
	CHECK_EQ(load_with(&kr, "key_file = k.key", &err), 0);
	if (kr) {
		CHECK(memcmp(rkfs_keyring_key(kr, 7, &e), raw, 32) == 0);
		rkfs_keyring_free(kr);
	}
	/* Without RKFS_KR_LOAD_KEYS the file is not read. */
	SETUP(parse(&kr, "[generation 7]\nkey_file = k.key\n", 0, &err) == 0);
	CHECK(rkfs_keyring_key(kr, 7, &e) == NULL);
	CHECK_EQ(e, -ENOKEY);
	CHECK_EQ(rkfs_keyring_load_key(&kr->gens[0], NAME, tmpdir, &err), 0);
	CHECK(rkfs_keyring_key(kr, 7, &e) != NULL);
	rkfs_keyring_free(kr);

	/* base64 line, with and without prefix. */
	write_file(path, K1 "\n", strlen(K1) + 1, 0600);
	CHECK_EQ(load_with(&kr, line, &err), 0);
	if (kr) {
		CHECK_EQ(rkfs_keyring_key(kr, 7, &e)[5], 0x11);
		rkfs_keyring_free(kr);
	}
	write_file(path, K2 + 7, strlen(K2 + 7), 0600);
	CHECK_EQ(load_with(&kr, line, &err), 0);
	if (kr) {
		CHECK_EQ(rkfs_keyring_key(kr, 7, &e)[31], 0x22);
		rkfs_keyring_free(kr);
	}

	/* Mode 0644 and 0640 refused, naming file:line and the key file. */
	write_file(path, raw, sizeof(raw), 0644);
	CHECK_EQ(load_with(&kr, line, &err), -EPERM);
	CHECK(kr == NULL);
	CHECK(strncmp(err.msg, NAME ":3:", 9) == 0 ||
	      strncmp(err.msg, NAME ":4:", 9) == 0);
	CHECK(strstr(err.msg, path) != NULL);
	write_file(path, raw, sizeof(raw), 0640);
	CHECK_EQ(load_with(&kr, line, &err), -EPERM);

	/* Wrong sizes: 31 and 33 raw bytes, empty. */
	write_file(path, raw, 31, 0600);
	CHECK_EQ(load_with(&kr, line, &err), -EINVAL);
	CHECK(strstr(err.msg, "32") != NULL);
	CHECK(strncmp(err.msg, NAME ":", strlen(NAME ":")) == 0);
	{
		unsigned char r33[33];

		memcpy(r33, raw, 32);
		r33[32] = 0x99;
		write_file(path, r33, sizeof(r33), 0600);
		CHECK_EQ(load_with(&kr, line, &err), -EINVAL);
	}
	write_file(path, "", 0, 0600);
	CHECK_EQ(load_with(&kr, line, &err), -EINVAL);
	CHECK(kr == NULL);

	/* Missing file, a directory, a symlink. */
	unlink(path);
	CHECK_EQ(load_with(&kr, line, &err), -ENOENT);
	CHECK(strstr(err.msg, path) != NULL);
	snprintf(line, sizeof(line), "key_file = %s", tmpdir);
	CHECK(load_with(&kr, line, &err) < 0);
	CHECK(kr == NULL);
	write_file(path, raw, sizeof(raw), 0600);
	snprintf(lnk, sizeof(lnk), "%s/link.key", tmpdir);
	unlink(lnk);
	SETUP(symlink(path, lnk) == 0);
	snprintf(line, sizeof(line), "key_file = %s", lnk);
	CHECK(load_with(&kr, line, &err) < 0);
	CHECK(kr == NULL);
	unlink(lnk);
	unlink(path);
}

static void test_key_command(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_error err;
	struct timespec t0, t1;
	int e;

	CHECK_EQ(load_with(&kr, "key_command = printf '%s\\n' '" K1 "'", &err),
		 0);
	if (kr) {
		const unsigned char *k = rkfs_keyring_key(kr, 7, &e);

		CHECK(k != NULL && k[0] == 0x11 && k[31] == 0x11);
		CHECK_EQ(kr->gens[0].source, RKFS_KEY_COMMAND);
		rkfs_keyring_free(kr);
	} else {
		fprintf(stderr, "key_command: %s\n", err.msg);
	}
	/* Raw bytes on stdout (octal escapes, no newline). */
	CHECK_EQ(
	    load_with(&kr,
		      "key_command = printf '\\201\\202\\203\\204\\205\\206"
		      "\\207\\210\\211\\212\\213\\214\\215\\216\\217\\220"
		      "\\221\\222\\223\\224\\225\\226\\227\\230\\231\\232"
		      "\\233\\234\\235\\236\\237\\240'",
		      &err),
	    0);
	if (kr) {
		const unsigned char *k = rkfs_keyring_key(kr, 7, &e);

		CHECK(k != NULL && k[0] == 0x81 && k[31] == 0xa0);
		rkfs_keyring_free(kr);
	}
	/* The command runs with stdin from /dev/null. */
	CHECK_EQ(load_with(&kr, "key_command = cat; echo " K0, &err), 0);
	rkfs_keyring_free(kr);

	CHECK_EQ(load_with(&kr, "key_command = echo " K0 "; exit 3", &err),
		 -EINVAL);
	CHECK(kr == NULL);
	CHECK(strncmp(err.msg, NAME ":", strlen(NAME ":")) == 0);
	CHECK(strstr(err.msg, "3") != NULL);
	CHECK(strstr(err.msg, K0 + 7) == NULL);
	CHECK_EQ(load_with(&kr, "key_command = echo not-a-key", &err), -EINVAL);
	CHECK(kr == NULL);
	CHECK_EQ(load_with(&kr, "key_command = kill -9 $$", &err), -EINVAL);
	CHECK(strstr(err.msg, "signal") != NULL);

	/* A command that never answers is killed after the timeout. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ(load_with(&kr, "key_command = sleep 60", &err), -ETIME);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(kr == NULL);
	CHECK(strstr(err.msg, "timed out") != NULL);
	CHECK(strncmp(err.msg, NAME ":", strlen(NAME ":")) == 0);
	/* Bounded: well under the 60 s the command wanted. */
	CHECK(t1.tv_sec - t0.tv_sec < 30);
	CHECK(t1.tv_sec - t0.tv_sec >= RKFS_KEY_COMMAND_TIMEOUT_MS / 1000 - 1);
	/* A per-generation limit; a command that printed its key but does
	 * not exit counts as timed out too. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ(load_with(&kr,
			   "key_command_timeout = 1\nkey_command = echo " K0
			   "; sleep 60",
			   &err),
		 -ETIME);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(kr == NULL);
	CHECK(t1.tv_sec - t0.tv_sec < 5);
}

/* ---- check values, round trips, files -------------------------------------
 */

static void test_check_value(void)
{
	struct rkfs_keyring *kr;
	struct rkfs_error err;
	unsigned char k[RKFS_KEY_LEN];
	uint8_t cv[RKFS_CHECK_LEN];
	char hex[RKFS_CHECK_LEN * 2 + 1], text[512];

	for (int i = 0; i < RKFS_KEY_LEN; i++)
		k[i] = (unsigned char)i;
	rkfs_crypt_check_value(cv, k);
	sodium_bin2hex(hex, sizeof(hex), cv, sizeof(cv));

	snprintf(text, sizeof(text),
		 "[generation 1]\nkey = " K0 "\ncheck = %s\n", hex);
	CHECK_EQ(parse(&kr, text, RKFS_KR_LOAD_KEYS, &err), 0);
	if (kr) {
		CHECK(kr->gens[0].has_check);
		CHECK(memcmp(kr->gens[0].check, cv, sizeof(cv)) == 0);
		rkfs_keyring_free(kr);
	}
	snprintf(text, sizeof(text),
		 "[generation 1]\nkey = " K0 "\n\n[generation 2]\nkey = " K1
		 "\ncheck = %s\n",
		 hex);
	CHECK_EQ(parse(&kr, text, RKFS_KR_LOAD_KEYS, &err), -EKEYREJECTED);
	CHECK(kr == NULL);
	CHECK(strncmp(err.msg, NAME ":4:", 9) == 0 ||
	      strncmp(err.msg, NAME ":5:", 9) == 0);
	CHECK(strstr(err.msg, "generation 2") != NULL);
}

static void test_round_trip(void)
{
	static const char text[] =
	    "[keyring]\nprimary = 3\n"
	    "[generation 1]\nstate = destroyed\ncreated = "
	    "2025-01-01T00:00:00Z\n"
	    "[generation 2]\nstate = disabled\nkey = " K0 "\n"
	    "[generation 3]\ncreated = 2026-11-01T00:00:00Z\nkey = " K1 "\n"
	    "[generation 4]\nkey_file = /etc/rekeyfs/keys/four.key\n"
	    "check = 00112233445566778899aabbccddeeff\n"
	    "[generation 9]\nkey_command = echo " K2 "\n";
	struct rkfs_keyring *a, *b;
	struct rkfs_error err;
	char *t1, *t2;
	size_t l1, l2;

	SETUP(parse(&a, text, 0, &err) == 0);
	SETUP(rkfs_keyring_format(&t1, &l1, a) == 0);
	CHECK_EQ(strlen(t1), l1);
	CHECK_EQ(rkfs_keyring_parse(&b, t1, l1, NAME, NULL, 0, &err), 0);
	if (b) {
		CHECK_EQ(b->count, 5);
		CHECK_EQ(b->primary, 3);
		CHECK(b->primary_explicit);
		for (size_t i = 0; i < a->count && i < b->count; i++) {
			struct rkfs_generation *x = &a->gens[i],
					       *y = &b->gens[i];

			CHECK_EQ(x->number, y->number);
			CHECK_EQ(x->state, y->state);
			CHECK_EQ(x->source, y->source);
			CHECK_EQ(x->has_check, y->has_check);
			CHECK(memcmp(x->check, y->check, sizeof(x->check)) ==
			      0);
			CHECK((x->created == NULL) == (y->created == NULL));
			if (x->created && y->created)
				CHECK(strcmp(x->created, y->created) == 0);
			CHECK((x->key == NULL) == (y->key == NULL));
			if (x->key && y->key)
				CHECK(memcmp(x->key, y->key, RKFS_KEY_LEN) ==
				      0);
		}
		CHECK(strcmp(b->gens[3].key_file,
			     "/etc/rekeyfs/keys/four.key") == 0);
		CHECK(strcmp(b->gens[4].key_command, "echo " K2) == 0);
		SETUP(rkfs_keyring_format(&t2, &l2, b) == 0);
		CHECK_EQ(l1, l2);
		CHECK(l1 == l2 && memcmp(t1, t2, l1) == 0);
		sodium_free(t2);
		rkfs_keyring_free(b);
	}
	sodium_free(t1);
	rkfs_keyring_free(a);
}

static void test_files(void)
{
	struct rkfs_keyring *a, *b;
	struct rkfs_error err = {0};
	char path[128];
	struct stat st;
	int e;

	snprintf(path, sizeof(path), "%s/vault.keyring", tmpdir);
	SETUP(parse(&a,
		    "[generation 1]\nkey = " K0 "\n[generation 2]\nkey = " K1
		    "\n",
		    0, &err) == 0);
	CHECK_EQ(rkfs_keyring_save(a, path, &err), 0);
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(rkfs_keyring_load(&b, path, RKFS_KR_LOAD_KEYS, &err), 0);
	if (b) {
		CHECK_EQ(b->primary, 2);
		CHECK(b->path && strcmp(b->path, path) == 0);
		CHECK_EQ(rkfs_keyring_key(b, 1, &e)[3], 3);
		rkfs_keyring_free(b);
	}
	/* Group-readable keyring refused; allowed with the flag. */
	SETUP(chmod(path, 0640) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), -EPERM);
	CHECK(b == NULL);
	CHECK(strstr(err.msg, path) != NULL);
	CHECK(strstr(err.msg, "chmod 600") != NULL);
	CHECK_EQ(rkfs_keyring_load(&b, path, RKFS_KR_NO_MODE_CHECK, &err), 0);
	rkfs_keyring_free(b);
	/* Saving again restores 0600 and replaces the file. */
	CHECK_EQ(rkfs_keyring_save(a, path, &err), 0);
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	/* A parse error through load names the path and line. */
	write_file(path, "[generation 1]\nkey = " K0 "\nbad = 1\n",
		   strlen("[generation 1]\nkey = " K0 "\nbad = 1\n"), 0600);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), -EINVAL);
	{
		char want[160];

		snprintf(want, sizeof(want), "%s:3: ", path);
		CHECK(strncmp(err.msg, want, strlen(want)) == 0);
	}
	unlink(path);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), -ENOENT);
	CHECK(strstr(err.msg, path) != NULL);
	rkfs_keyring_free(a);
}

/*
 * The secret-file policy: one open with O_NOFOLLOW, checks on that fd, the
 * directory chain, and the same rules for keyrings, key files, passphrase
 * files and configs.
 */
static void test_secret_policy(void)
{
	struct rkfs_keyring *a, *b = NULL;
	struct rkfs_config *cfg = NULL;
	struct rkfs_error err = {0};
	char dir[128], path[160], link[160], fifo[160], cpath[160];
	char *pass;
	int ret;

	snprintf(dir, sizeof(dir), "%s/pol", tmpdir);
	snprintf(path, sizeof(path), "%s/vault.keyring", dir);
	snprintf(link, sizeof(link), "%s/link.keyring", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo.keyring", dir);
	snprintf(cpath, sizeof(cpath), "%s/vault.conf", dir);
	SETUP(mkdir(dir, 0700) == 0);
	SETUP(parse(&a, "[generation 1]\nkey = " K0 "\n", 0, &err) == 0);
	CHECK_EQ(rkfs_keyring_save(a, path, &err), 0);
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), 0);
	rkfs_keyring_free(b);

	/* A symbolic link is refused, not followed. */
	SETUP(symlink("vault.keyring", link) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, link, 0, &err), -ELOOP);
	CHECK(strstr(err.msg, "symbolic link") != NULL);

	/* A fifo is refused at once instead of blocking the open. */
	SETUP(mkfifo(fifo, 0600) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, fifo, 0, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a regular file") != NULL);

	/* Owned by another user: refused even at mode 0600. */
	SETUP(chown(path, 1234, 1234) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), -EPERM);
	CHECK(strstr(err.msg, "owner uid 1234") != NULL);
	SETUP(chown(path, 0, 0) == 0);

	/* A directory others may write: refused; sticky and root's: fine. */
	SETUP(chmod(dir, 0777) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), -EPERM);
	CHECK(strstr(err.msg, "directory") != NULL);
	SETUP(chmod(dir, 01777) == 0);
	CHECK_EQ(rkfs_keyring_load(&b, path, 0, &err), 0);
	rkfs_keyring_free(b);
	SETUP(chmod(dir, 0700) == 0);

	/* Config: may be world-readable, not group-writable. */
	write_file(cpath, "[mount]\nkeyring = vault.keyring\n", 32, 0644);
	CHECK_EQ(rkfs_config_load(&cfg, cpath, &err), 0);
	rkfs_config_free(cfg);
	cfg = NULL;
	SETUP(chmod(cpath, 0664) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_config_load(&cfg, cpath, &err), -EPERM);
	CHECK(cfg == NULL);
	CHECK(strstr(err.msg, "writable") != NULL);
	SETUP(chmod(cpath, 0644) == 0);
	unlink(link);
	SETUP(symlink("vault.conf", link) == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_config_load(&cfg, link, &err), -ELOOP);

	/* Passphrase files: no symlink, and a NUL byte is refused. */
	pass = sodium_malloc(RKFS_PASSPHRASE_MAX);
	SETUP(pass != NULL);
	write_file(cpath, "secret\0more\n", 12, 0600);
	memset(&err, 0, sizeof(err));
	ret = rkfs_passphrase_read(pass, RKFS_PASSPHRASE_MAX, cpath, NULL,
				   NULL, false, &err);
	CHECK_EQ(ret, -EINVAL);
	CHECK(strstr(err.msg, "NUL") != NULL);
	write_file(cpath, "secret\n", 7, 0600);
	CHECK_EQ(rkfs_passphrase_read(pass, RKFS_PASSPHRASE_MAX, cpath, NULL,
				      NULL, false, &err), 0);
	CHECK(strcmp(pass, "secret") == 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ(rkfs_passphrase_read(pass, RKFS_PASSPHRASE_MAX, link, NULL,
				      NULL, false, &err), -ELOOP);
	sodium_free(pass);

	unlink(link);
	unlink(fifo);
	unlink(cpath);
	unlink(path);
	rmdir(dir);
	rkfs_keyring_free(a);
}

/* Values without a safe INI spelling are refused before anything is written. */
static void test_value_quoting(void)
{
	static const char *const bad[] = {
		"a ;b", "a #b", ";a", "#a", " a", "a ", "a\nprimary = 9",
		"a\tb\t", "",
	};
	struct rkfs_keyring *kr;
	struct rkfs_error err = {0};
	char path[128], longv[300];
	struct stat st;

	snprintf(path, sizeof(path), "%s/q.keyring", tmpdir);
	SETUP(parse(&kr, "[generation 1]\nkey = " K0 "\n", 0, &err) == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(kr->gens[0].created);
		kr->gens[0].created = strdup(bad[i]);
		memset(&err, 0, sizeof(err));
		CHECK_EQ(rkfs_keyring_save(kr, path, &err), -EINVAL);
		CHECK(strstr(err.msg, "generation 1: created") != NULL);
		CHECK(stat(path, &st) < 0);
	}
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	free(kr->gens[0].created);
	kr->gens[0].created = strdup(longv);
	CHECK_EQ(rkfs_keyring_save(kr, path, &err), -EINVAL);
	/* Inner ';', '#' and '=' are fine, and round-trip. */
	free(kr->gens[0].created);
	kr->gens[0].created = strdup("a;b#c=d");
	CHECK_EQ(rkfs_keyring_save(kr, path, &err), 0);
	rkfs_keyring_free(kr);
	CHECK_EQ(rkfs_keyring_load(&kr, path, 0, &err), 0);
	if (kr) {
		CHECK(strcmp(kr->gens[0].created, "a;b#c=d") == 0);
		rkfs_keyring_free(kr);
	}
	unlink(path);
}

static void test_key_codec(void)
{
	unsigned char k[RKFS_KEY_LEN], k2[RKFS_KEY_LEN];
	char enc[80];

	randombytes_buf(k, sizeof(k));
	rkfs_key_encode(enc, sizeof(enc), k);
	CHECK(strncmp(enc, "base64:", 7) == 0);
	CHECK_EQ(strlen(enc), 7 + 44);
	CHECK_EQ(rkfs_key_decode(k2, enc, strlen(enc)), 0);
	CHECK(memcmp(k, k2, sizeof(k)) == 0);
	CHECK_EQ(rkfs_key_decode(k2, enc + 7, strlen(enc + 7)), 0);
	CHECK_EQ(rkfs_key_decode(k2, "base64:", 7), -EINVAL);
	CHECK_EQ(rkfs_key_decode(k2, "", 0), -EINVAL);
	CHECK_EQ(rkfs_key_decode(k2, enc, strlen(enc) - 4), -EINVAL);
}

int main(void)
{
	SETUP(rkfs_crypt_init() == 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/rkfs-kr-XXXXXX");
	SETUP(mkdtemp(tmpdir) != NULL);
	test_parse_errors();
	test_parse_misc();
	test_primary_missing();
	test_key_file();
	test_key_codec();
	test_check_value();
	test_round_trip();
	test_files();
	test_key_command();
	test_secret_policy();
	test_value_quoting();
	rmdir(tmpdir);
	return check_report("test_keyring");
}
