/*
 * rekeyfs-key: manage the key generations of a rekeyfs keyring.
 *
 * Every change runs under an exclusive flock on KEYRING.lock (next to the
 * keyring) from before the keyring is read until it has been replaced
 * atomically, so concurrent runs never lose an update.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "rekeyfs/config.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"
#include "rekeyfs/passphrase.h"

enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,
	EXIT_ERROR = 2,
};

#define SCAN_NAMES 5

static const char usage_text[] =
    "usage: rekeyfs-key COMMAND [ARGS] (--keyring FILE | --config FILE) "
    "[OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  init                 create a keyring: generation 1, primary, fresh "
    "random key,\n"
    "                       mode 0600; refuses to overwrite an existing "
    "file\n"
    "  add                  add generation (highest ever + 1) with a fresh "
    "random key:\n"
    "                       enabled, not primary unless --primary\n"
    "  add --from SNIPPET   add the [generation N] sections of an INI "
    "snippet (key,\n"
    "                       key_file or key_command); N must be above every "
    "existing\n"
    "                       generation; relative key_file paths are made "
    "absolute\n"
    "  promote N            make enabled generation N the primary\n"
    "  disable N            keep N's key but stop using it (reversible)\n"
    "  enable N             use disabled generation N again\n"
    "  destroy N            remove N's key material for good; a tombstone "
    "keeps the\n"
    "                       number; needs --source (checked) or --force; an "
    "external\n"
    "                       key_file or key_command is not touched\n"
    "  list [--json]        generations: state, primary, created, key "
    "source, check\n"
    "                       value (never key material)\n"
    "  check                does the keyring fit the tree in --source?\n"
    "  generate             print a fresh random key (base64) for a "
    "key_file\n"
    "  protect              seal the keyring's keys under a passphrase "
    "(Argon2id);\n"
    "                       on a sealed keyring: change the passphrase\n"
    "  unprotect            remove the passphrase sealing\n"
    "\n"
    "Options:\n"
    "  --keyring FILE       the keyring\n"
    "  --config FILE        a mount config: its [mount] keyring, backing "
    "(default\n"
    "                       --source) and passphrase settings are used\n"
    "  --source DIR         backing directory: disable/destroy refuse while "
    "files there\n"
    "                       use the generation (header scan); check compares "
    "it\n"
    "  --force              disable/destroy without a --source scan or "
    "despite files\n"
    "                       still using the generation (never the "
    "primary)\n"
    "  --primary            add: make the new (highest) generation primary\n"
    "  --from FILE          add: generation snippet\n"
    "  --json               list: JSON output\n"
    "  --passphrase         init: seal the new keyring under a passphrase\n"
    "  --passphrase-file F  passphrase of a sealed keyring (or the new one "
    "for\n"
    "                       init --passphrase and protect)\n"
    "  --passphrase-command CMD   same, from a command's stdout; the "
    "command line is\n"
    "                       visible to every user in /proc/PID/cmdline (ps): "
    "prefer\n"
    "                       passphrase_command in the --config file\n"
    "  --allow-unsealed     accept an unsealed keyring although a passphrase "
    "source\n"
    "                       is given or --source recorded a sealed one "
    "(logged)\n"
    "  --new-passphrase-file F, --new-passphrase-command CMD\n"
    "                       protect on a sealed keyring: the new "
    "passphrase\n"
    "  --kdf-ops N, --kdf-mem BYTES[K|M|G]   Argon2id cost (default 3, 256M;"
    "\n"
    "                       env REKEYFS_KDF_OPS, REKEYFS_KDF_MEM)\n"
    "Without a passphrase file or command, a sealed keyring asks on the "
    "terminal.\n"
    "disable without --source or --force is allowed (it is reversible) but "
    "warns.\n"
    "\n"
    "Exit status:\n"
    "  0  done (also when nothing had to change)\n"
    "  1  refused: files still use the generation, the keyring does not fit "
    "the\n"
    "     tree, the generation is the primary, destroy without --source/"
    "--force,\n"
    "     or an unsealed keyring where a sealed one is expected\n"
    "  2  usage error, or a keyring, snippet, config or passphrase error; "
    "nothing\n"
    "     was changed\n";

struct opts {
	const char *cmd;
	uint32_t number;
	const char *keyring;
	const char *config;
	const char *source;
	const char *from;
	const char *pass_file, *pass_command;
	const char *new_pass_file, *new_pass_command;
	unsigned long long kdf_ops;
	size_t kdf_mem;
	bool json, force, primary, passphrase, allow_unsealed;
};

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void msg(const char *fmt, ...)
{
	va_list ap;

	fputs("rekeyfs-key: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int fail(struct rkfs_error *err, int code, const char *fallback)
{
	msg("%s", err->msg[0] ? err->msg : fallback);
	return code;
}

static int parse_size(size_t *out, const char *s)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'G':
	case 'g':
		shift = 30;
		end++;
		break;
	case 'M':
	case 'm':
		shift = 20;
		end++;
		break;
	case 'K':
	case 'k':
		shift = 10;
		end++;
		break;
	}
	/* "16777216T" or "20000000000G" must not wrap to a small number. */
	if (*end || v > (ULLONG_MAX >> shift) || (v << shift) > SIZE_MAX)
		return -ERANGE;
	*out = (size_t)(v << shift);
	return 0;
}

static int parse_gen(uint32_t *out, const char *s)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static void now_utc(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *source_name(enum rkfs_key_source s)
{
	switch (s) {
	case RKFS_KEY_INLINE:
		return "inline";
	case RKFS_KEY_FILE:
		return "file";
	case RKFS_KEY_COMMAND:
		return "command";
	case RKFS_KEY_NONE:
		break;
	}
	return "none";
}

static void set_check(struct rkfs_generation *g)
{
	rkfs_crypt_check_value(g->check, g->key);
	g->has_check = true;
}

/* ---- the keyring lock ---------------------------------------------------- */

static int lock_keyring(const char *path)
{
	char *lock;
	int fd;

	if (asprintf(&lock, "%s.lock", path) < 0)
		return -ENOMEM;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		msg("%s: cannot create the lock file: %s", lock,
		    strerror(errno));
		free(lock);
		return -1;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			msg("%s: cannot lock: %s", lock, strerror(errno));
			close(fd);
			free(lock);
			return -1;
		}
	}
	free(lock);
	return fd;
}

/* ---- header scan -----------------------------------------------------------
 */

struct scan {
	uint32_t gen;
	unsigned long count;
	char *names[SCAN_NAMES];
	unsigned long errors;
};

static void scan_note(struct scan *sc, const char *rel)
{
	if (sc->count < SCAN_NAMES)
		sc->names[sc->count] = strdup(rel);
	sc->count++;
}

static void scan_dir(struct scan *sc, int dirfd, const char *rel, int depth)
{
	DIR *d;
	struct dirent *de;

	if (depth > 512) {
		sc->errors++;
		return;
	}
	d = fdopendir(dirfd);
	if (d == NULL) {
		close(dirfd);
		sc->errors++;
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char *path;
		int fd;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    rkfs_name_reserved(de->d_name))
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			sc->errors++;
			continue;
		}
		if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
			continue;
		if (asprintf(&path, "%s%s%s", rel, *rel ? "/" : "",
			     de->d_name) < 0) {
			sc->errors++;
			continue;
		}
		fd = openat(dirfd, de->d_name,
			    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
				O_NONBLOCK |
				(S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
		if (fd < 0) {
			sc->errors++;
		} else if (S_ISDIR(st.st_mode)) {
			scan_dir(sc, fd, path, depth + 1);
		} else {
			uint8_t buf[RKFS_HEADER_LEN];
			struct rkfs_header h;
			ssize_t n = rkfs_pread_full(fd, buf, sizeof(buf), 0);

			if (n == (ssize_t)sizeof(buf) &&
			    rkfs_header_parse(&h, buf, sizeof(buf)) == 0) {
				if (h.generation == sc->gen)
					scan_note(sc, path);
			} else if (n != 0) {
				sc->errors++;
			}
			close(fd);
		}
		free(path);
	}
	closedir(d);
}

/* 0: nothing uses the generation; 1: refused (reported); 2: error. */
static int scan_refuses(const char *source, uint32_t gen, const char *what,
			bool force)
{
	struct scan sc = {.gen = gen};
	int fd, ret = EXIT_OK;

	fd = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		msg("%s: %s", source, strerror(errno));
		return EXIT_ERROR;
	}
	if (faccessat(fd, RKFS_META_NAME, F_OK, 0) < 0) {
		msg("%s: not a rekeyfs backing directory (no %s)", source,
		    RKFS_META_NAME);
		close(fd);
		return EXIT_ERROR;
	}
	scan_dir(&sc, fd, "", 0);
	if (sc.errors)
		msg("%s: warning: %lu entries could not be read or have no "
		    "valid header",
		    source, sc.errors);
	if (sc.count) {
		fprintf(stderr,
			"rekeyfs-key: %s: %lu file%s still use%s generation "
			"%" PRIu32 ":",
			source, sc.count, sc.count == 1 ? "" : "s",
			sc.count == 1 ? "s" : "", gen);
		for (size_t i = 0; i < SCAN_NAMES && i < sc.count; i++)
			fprintf(stderr, " %s", sc.names[i] ? sc.names[i] : "?");
		fprintf(stderr, "%s\n", sc.count > SCAN_NAMES ? " ..." : "");
		if (force) {
			msg("--force: %s generation %" PRIu32 " anyway", what,
			    gen);
		} else {
			msg("refusing to %s generation %" PRIu32
			    "; run rekeyfs-rekey first, or use --force",
			    what, gen);
			ret = EXIT_REFUSED;
		}
	}
	for (size_t i = 0; i < SCAN_NAMES; i++)
		free(sc.names[i]);
	return ret;
}

/* ---- commands --------------------------------------------------------------
 */

static unsigned long long kdf_ops(const struct opts *o)
{
	const char *env = getenv("REKEYFS_KDF_OPS");
	size_t v;

	if (o->kdf_ops)
		return o->kdf_ops;
	if (env && parse_size(&v, env) == 0)
		return v;
	return 0;
}

static size_t kdf_mem(const struct opts *o)
{
	const char *env = getenv("REKEYFS_KDF_MEM");
	size_t v;

	if (o->kdf_mem)
		return o->kdf_mem;
	if (env && parse_size(&v, env) == 0)
		return v;
	return 0;
}

/*
 * Below libsodium's interactive limits a stolen sealed keyring is cheap to
 * attack by guessing passphrases: allowed (tests, small machines), but said.
 */
static void warn_weak_kdf(const struct rkfs_keyring *kr)
{
	unsigned long long ops = 0;
	size_t mem = 0;

	if (rkfs_keyring_seal_params(kr, &ops, &mem) < 0)
		return;
	if (ops < crypto_pwhash_OPSLIMIT_INTERACTIVE ||
	    mem < crypto_pwhash_MEMLIMIT_INTERACTIVE)
		msg("warning: Argon2id cost kdf_ops = %llu, kdf_mem = %zu is "
		    "below libsodium's interactive minimum (%llu, %zu); "
		    "guessing the passphrase of a stolen keyring is cheap",
		    ops, mem, (unsigned long long)crypto_pwhash_OPSLIMIT_INTERACTIVE,
		    (size_t)crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

/* Seal kr under a new passphrase from file/command or the terminal. */
static int seal_new(struct rkfs_keyring *kr, const struct opts *o,
		    const char *file, const char *command)
{
	struct rkfs_error err = {0};
	char *pass = sodium_malloc(RKFS_PASSPHRASE_MAX);
	int ret;

	if (pass == NULL)
		return -ENOMEM;
	ret = rkfs_passphrase_read(pass, RKFS_PASSPHRASE_MAX, file, command,
				   "New passphrase: ", true, &err);
	if (ret == 0)
		ret = rkfs_keyring_seal(kr, pass, strlen(pass), kdf_ops(o),
					kdf_mem(o), &err);
	sodium_free(pass);
	if (ret < 0) {
		msg("%s", err.msg[0] ? err.msg : strerror(-ret));
		return ret;
	}
	warn_weak_kdf(kr);
	return 0;
}

static int new_inline_gen(struct rkfs_generation *g, uint32_t number)
{
	char created[32];

	memset(g, 0, sizeof(*g));
	now_utc(created, sizeof(created));
	g->number = number;
	g->state = RKFS_GEN_ENABLED;
	g->source = RKFS_KEY_INLINE;
	g->created = strdup(created);
	g->key = sodium_malloc(RKFS_KEY_LEN);
	if (g->created == NULL || g->key == NULL) {
		free(g->created);
		if (g->key)
			sodium_free(g->key);
		return -ENOMEM;
	}
	randombytes_buf(g->key, RKFS_KEY_LEN);
	set_check(g);
	return 0;
}

static int save(struct rkfs_keyring *kr, const char *path)
{
	struct rkfs_error err = {0};
	int ret = rkfs_keyring_resolve_primary(kr, &err);

	if (ret == 0)
		ret = rkfs_keyring_save(kr, path, &err);
	if (ret < 0)
		return fail(&err, EXIT_ERROR, strerror(-ret));
	return EXIT_OK;
}

static int cmd_init(const struct opts *o)
{
	struct rkfs_keyring *kr;
	struct rkfs_generation g;
	struct stat st;
	int lock, ret;

	lock = lock_keyring(o->keyring);
	if (lock < 0)
		return EXIT_ERROR;
	if (lstat(o->keyring, &st) == 0 || errno != ENOENT) {
		msg("%s: already exists; refusing to overwrite a keyring",
		    o->keyring);
		close(lock);
		return EXIT_ERROR;
	}
	kr = rkfs_keyring_new();
	if (kr == NULL || new_inline_gen(&g, 1) < 0 ||
	    rkfs_keyring_append(kr, &g, NULL) < 0) {
		msg("out of memory");
		ret = EXIT_ERROR;
		goto out;
	}
	kr->primary = 1;
	kr->primary_explicit = true;
	if (o->passphrase &&
	    seal_new(kr, o, o->pass_file, o->pass_command) < 0) {
		ret = EXIT_ERROR;
		goto out;
	}
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK)
		printf("created %s: generation 1, primary%s\n", o->keyring,
		       kr->sealed ? ", sealed with a passphrase" : "");
out:
	rkfs_keyring_free(kr);
	close(lock);
	return ret;
}

static int load(struct rkfs_keyring **kr, const char *path, unsigned flags)
{
	struct rkfs_error err = {0};
	int ret = rkfs_keyring_load(kr, path, flags, &err);

	if (ret < 0)
		return fail(&err, EXIT_ERROR, strerror(-ret));
	return EXIT_OK;
}

/* Load and verify one generation's key (key_file / key_command). */
static int load_gen_key(struct rkfs_keyring *kr, struct rkfs_generation *g)
{
	struct rkfs_error err = {0};
	uint8_t cv[RKFS_CHECK_LEN];
	char *dir = NULL, *base = NULL;
	int ret;

	ret = rkfs_path_split(&dir, &base, kr->path);
	if (ret == 0)
		ret = rkfs_keyring_load_key(g, kr->path, dir, &err);
	free(dir);
	free(base);
	if (ret < 0)
		return fail(&err, EXIT_ERROR, strerror(-ret));
	if (g->has_check) {
		rkfs_crypt_check_value(cv, g->key);
		if (sodium_memcmp(cv, g->check, sizeof(cv)) != 0) {
			msg("%s:%u: generation %" PRIu32
			    ": the key does not match its check value; this is "
			    "not the key that was recorded for this generation",
			    kr->path, g->line, g->number);
			return EXIT_ERROR;
		}
	}
	return EXIT_OK;
}

static int add_from(struct rkfs_keyring *kr, const struct opts *o,
		    uint32_t *last)
{
	struct rkfs_error err = {0};
	struct rkfs_keyring *snip = NULL;
	uint32_t max = rkfs_keyring_max_generation(kr);
	char *dir = NULL, *base = NULL, *absdir = NULL;
	struct stat st;
	int ret = EXIT_ERROR;
	bool inline_keys = false;

	if (stat(o->from, &st) < 0) {
		msg("%s: %s", o->from, strerror(errno));
		return EXIT_ERROR;
	}
	if (rkfs_keyring_load(&snip, o->from,
			      RKFS_KR_NO_MODE_CHECK | RKFS_KR_SNIPPET,
			      &err) < 0)
		return fail(&err, EXIT_ERROR, "cannot read snippet");
	if (snip->count == 0) {
		msg("%s: no [generation N] sections", o->from);
		goto out;
	}
	if (snip->primary_explicit || snip->sealed) {
		msg("%s: a snippet holds only [generation N] sections; use "
		    "--primary or rekeyfs-key promote to set the primary",
		    o->from);
		goto out;
	}
	if (rkfs_path_split(&dir, &base, o->from) < 0 ||
	    (absdir = realpath(dir, NULL)) == NULL) {
		msg("%s: %s", o->from, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];

		if (g->number <= max) {
			msg("%s:%u: [generation %" PRIu32
			    "] is not above the highest generation %" PRIu32
			    " of %s; numbers only grow and are never reused",
			    o->from, g->line, g->number, max, kr->path);
			goto out;
		}
		if (g->state == RKFS_GEN_DESTROYED) {
			msg("%s:%u: generation %" PRIu32
			    ": a new generation cannot be destroyed",
			    o->from, g->line, g->number);
			goto out;
		}
		if (g->source == RKFS_KEY_INLINE)
			inline_keys = true;
	}
	if (inline_keys && (st.st_mode & 077)) {
		msg("%s: holds an inline key but is readable or writable by "
		    "group or others (mode %04o); run: chmod 600 %s",
		    o->from, (unsigned)(st.st_mode & 07777), o->from);
		goto out;
	}
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];
		uint8_t cv[RKFS_CHECK_LEN];

		if (rkfs_keyring_load_key(g, o->from, absdir, &err) < 0 &&
		    g->key == NULL) {
			fail(&err, EXIT_ERROR, "cannot load the key");
			goto out;
		}
		if (g->has_check) {
			rkfs_crypt_check_value(cv, g->key);
			if (sodium_memcmp(cv, g->check, sizeof(cv)) != 0) {
				msg("%s:%u: generation %" PRIu32
				    ": the key does not match its check value",
				    o->from, g->line, g->number);
				goto out;
			}
		} else {
			set_check(g);
		}
		if (g->source == RKFS_KEY_FILE && g->key_file[0] != '/') {
			char *abs;

			if (asprintf(&abs, "%s/%s", absdir, g->key_file) < 0)
				goto out;
			free(g->key_file);
			g->key_file = abs;
		}
		if (g->created == NULL) {
			char created[32];

			now_utc(created, sizeof(created));
			g->created = strdup(created);
		}
	}
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation g = snip->gens[i];

		g.line = 0;
		memset(&snip->gens[i], 0, sizeof(snip->gens[i]));
		if (rkfs_keyring_append(kr, &g, &err) < 0) {
			fail(&err, EXIT_ERROR, "out of memory");
			goto out;
		}
		*last = kr->gens[kr->count - 1].number;
	}
	ret = EXIT_OK;
out:
	free(dir);
	free(base);
	free(absdir);
	rkfs_keyring_free(snip);
	return ret;
}

static int cmd_add(struct rkfs_keyring *kr, const struct opts *o)
{
	uint32_t before = rkfs_keyring_max_generation(kr), last = 0;
	int ret;

	if (o->from) {
		ret = add_from(kr, o, &last);
		if (ret != EXIT_OK)
			return ret;
	} else {
		struct rkfs_generation g;

		last = before + 1;
		if (last == 0 || new_inline_gen(&g, last) < 0 ||
		    rkfs_keyring_append(kr, &g, NULL) < 0) {
			msg("cannot add a generation");
			return EXIT_ERROR;
		}
	}
	if (o->primary) {
		struct rkfs_generation *g = rkfs_keyring_find(kr, last);

		if (g->state != RKFS_GEN_ENABLED) {
			msg("--primary: generation %" PRIu32
			    " is %s; the primary must be enabled",
			    last, rkfs_gen_state_name(g->state));
			return EXIT_ERROR;
		}
		kr->primary = last;
		kr->primary_explicit = true;
	}
	ret = save(kr, o->keyring);
	if (ret != EXIT_OK)
		return ret;
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];

		if (g->number > before)
			printf("added generation %" PRIu32 " (%s, %s key)\n",
			       g->number, rkfs_gen_state_name(g->state),
			       source_name(g->source));
	}
	if (o->primary)
		printf("generation %" PRIu32 " is now primary\n", last);
	return EXIT_OK;
}

static struct rkfs_generation *need_gen(struct rkfs_keyring *kr,
					uint32_t number)
{
	struct rkfs_generation *g = rkfs_keyring_find(kr, number);

	if (g == NULL)
		msg("%s: no generation %" PRIu32 " (generations %s%" PRIu32 ")",
		    kr->path, number, kr->count ? "1.." : "",
		    rkfs_keyring_max_generation(kr));
	return g;
}

static int cmd_promote(struct rkfs_keyring *kr, const struct opts *o)
{
	struct rkfs_generation *g = need_gen(kr, o->number);
	int ret;

	if (g == NULL)
		return EXIT_ERROR;
	if (g->state != RKFS_GEN_ENABLED) {
		msg("%s:%u: generation %" PRIu32
		    " is %s; only an enabled generation can be primary%s",
		    kr->path, g->line, g->number, rkfs_gen_state_name(g->state),
		    g->state == RKFS_GEN_DISABLED ? " (enable it first)" : "");
		return EXIT_ERROR;
	}
	ret = load_gen_key(kr, g);
	if (ret != EXIT_OK)
		return ret;
	if (kr->primary_explicit && kr->primary == g->number) {
		printf("generation %" PRIu32 " is already primary\n",
		       g->number);
		return EXIT_OK;
	}
	if (!g->has_check)
		set_check(g);
	kr->primary = g->number;
	kr->primary_explicit = true;
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK)
		printf("generation %" PRIu32 " is now primary\n", g->number);
	return ret;
}

static int cmd_enable(struct rkfs_keyring *kr, const struct opts *o)
{
	struct rkfs_generation *g = need_gen(kr, o->number);
	int ret;

	if (g == NULL)
		return EXIT_ERROR;
	if (g->state == RKFS_GEN_DESTROYED) {
		msg("%s:%u: generation %" PRIu32
		    " is destroyed; its key is gone for good",
		    kr->path, g->line, g->number);
		return EXIT_ERROR;
	}
	ret = load_gen_key(kr, g);
	if (ret != EXIT_OK)
		return ret;
	if (g->state == RKFS_GEN_ENABLED) {
		printf("generation %" PRIu32 " is already enabled\n",
		       g->number);
		return EXIT_OK;
	}
	g->state = RKFS_GEN_ENABLED;
	if (!g->has_check)
		set_check(g);
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK)
		printf("generation %" PRIu32 " enabled\n", g->number);
	return ret;
}

/* Common checks of disable and destroy. */
static int retire_check(struct rkfs_keyring *kr, struct rkfs_generation *g,
			const struct opts *o, const char *what)
{
	if (g->number == kr->primary) {
		msg("%s: generation %" PRIu32
		    " is the primary; promote another generation first",
		    kr->path, g->number);
		return EXIT_REFUSED;
	}
	if (o->source)
		return scan_refuses(o->source, g->number, what, o->force);
	return EXIT_OK;
}

static int cmd_disable(struct rkfs_keyring *kr, const struct opts *o)
{
	struct rkfs_generation *g = need_gen(kr, o->number);
	int ret;

	if (g == NULL)
		return EXIT_ERROR;
	if (g->state == RKFS_GEN_DESTROYED) {
		msg("%s:%u: generation %" PRIu32 " is destroyed", kr->path,
		    g->line, g->number);
		return EXIT_ERROR;
	}
	if (g->state == RKFS_GEN_DISABLED) {
		printf("generation %" PRIu32 " is already disabled\n",
		       g->number);
		return EXIT_OK;
	}
	ret = retire_check(kr, g, o, "disable");
	if (ret != EXIT_OK)
		return ret;
	if (!o->source && !o->force)
		msg("warning: no --source given, so no tree was checked for "
		    "files on generation %" PRIu32
		    "; reads of such files fail until it is enabled again",
		    g->number);
	g->state = RKFS_GEN_DISABLED;
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK)
		printf("generation %" PRIu32 " disabled\n", g->number);
	return ret;
}

static int cmd_destroy(struct rkfs_keyring *kr, const struct opts *o)
{
	struct rkfs_generation *g = need_gen(kr, o->number);
	enum rkfs_key_source src;
	char *external = NULL;
	int ret;

	if (g == NULL)
		return EXIT_ERROR;
	if (g->state == RKFS_GEN_DESTROYED) {
		printf("generation %" PRIu32 " is already destroyed\n",
		       g->number);
		return EXIT_OK;
	}
	if (!o->source && !o->force) {
		msg("destroy is irreversible: give --source BACKING to check "
		    "that no file uses generation %" PRIu32 ", or --force",
		    g->number);
		return EXIT_REFUSED;
	}
	ret = retire_check(kr, g, o, "destroy");
	if (ret != EXIT_OK)
		return ret;
	src = g->source;
	if (src == RKFS_KEY_FILE)
		external = g->key_file;
	else if (src == RKFS_KEY_COMMAND)
		external = g->key_command;
	else
		free(g->key_file);
	if (src != RKFS_KEY_COMMAND)
		free(g->key_command);
	g->key_file = NULL;
	g->key_command = NULL;
	g->key_command_timeout = 0;
	if (g->key)
		sodium_free(g->key);
	g->key = NULL;
	g->source = RKFS_KEY_NONE;
	g->state = RKFS_GEN_DESTROYED;
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK) {
		printf("generation %" PRIu32
		       " destroyed; its number stays reserved\n",
		       g->number);
		if (src == RKFS_KEY_FILE)
			printf("note: the key file %s was not touched; delete "
			       "it yourself if nothing else needs it\n",
			       external);
		else if (src == RKFS_KEY_COMMAND)
			printf("note: the key_command (%s) was not touched; "
			       "retire its key at the source\n",
			       external);
	}
	free(external);
	return ret;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int cmd_list(struct rkfs_keyring *kr, const struct opts *o)
{
	char hex[RKFS_CHECK_LEN * 2 + 1];

	if (o->json) {
		printf("{\"keyring\": ");
		json_str(kr->path);
		printf(", \"sealed\": %s, \"primary\": %" PRIu32
		       ", \"generations\": [",
		       kr->sealed ? "true" : "false", kr->primary);
	} else {
		printf("%-10s %-9s %-7s %-20s %-32s %s\n", "GENERATION",
		       "STATE", "PRIMARY", "CREATED", "CHECK", "KEY SOURCE");
	}
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];
		const char *detail = g->source == RKFS_KEY_FILE ? g->key_file
				     : g->source == RKFS_KEY_COMMAND
					 ? g->key_command
					 : NULL;

		if (g->has_check)
			sodium_bin2hex(hex, sizeof(hex), g->check,
				       RKFS_CHECK_LEN);
		if (o->json) {
			printf("%s\n  {\"generation\": %" PRIu32
			       ", \"state\": \"%s\", \"primary\": %s, "
			       "\"created\": ",
			       i ? "," : "", g->number,
			       rkfs_gen_state_name(g->state),
			       g->number == kr->primary ? "true" : "false");
			if (g->created)
				json_str(g->created);
			else
				printf("null");
			printf(", \"source\": \"%s\"", source_name(g->source));
			if (g->source == RKFS_KEY_FILE) {
				printf(", \"key_file\": ");
				json_str(detail);
			} else if (g->source == RKFS_KEY_COMMAND) {
				printf(", \"key_command\": ");
				json_str(detail);
			}
			printf(", \"check\": ");
			if (g->has_check)
				json_str(hex);
			else
				printf("null");
			printf("}");
		} else {
			printf("%-10" PRIu32 " %-9s %-7s %-20s %-32s %s%s%s\n",
			       g->number, rkfs_gen_state_name(g->state),
			       g->number == kr->primary ? "yes" : "-",
			       g->created ? g->created : "-",
			       g->has_check ? hex : "-", source_name(g->source),
			       detail ? " " : "", detail ? detail : "");
		}
	}
	if (o->json)
		printf("\n]}\n");
	else if (kr->sealed)
		printf("(sealed with a passphrase)\n");
	return EXIT_OK;
}

static int cmd_check(struct rkfs_keyring *kr, const struct opts *o)
{
	struct rkfs_error err = {0};
	struct rkfs_meta *m = NULL;
	int fd, ret;

	if (o->source == NULL) {
		msg("check needs --source BACKING (or --config with backing "
		    "=)");
		return EXIT_ERROR;
	}
	fd = open(o->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		msg("%s: %s", o->source, strerror(errno));
		return EXIT_ERROR;
	}
	ret = rkfs_meta_load(&m, fd, &err);
	close(fd);
	if (ret == -ENOENT) {
		msg("%s: not a rekeyfs backing directory (no %s)", o->source,
		    RKFS_META_NAME);
		return EXIT_ERROR;
	}
	if (ret < 0)
		return fail(&err, EXIT_ERROR, strerror(-ret));
	if (rkfs_keyring_check_sealed(kr, m->sealed, o->source, &err) < 0) {
		rkfs_meta_free(m);
		return fail(&err, EXIT_REFUSED, "unsealed keyring refused");
	}
	ret = EXIT_OK;
	for (size_t i = 0; i < m->count; i++) {
		const struct rkfs_meta_gen *mg = &m->gens[i];
		const struct rkfs_generation *g =
		    rkfs_keyring_find(kr, mg->number);
		uint8_t cv[RKFS_CHECK_LEN];

		if (g == NULL) {
			printf("generation %" PRIu32
			       ": used by the tree, not in the keyring\n",
			       mg->number);
			continue;
		}
		if (g->key == NULL) {
			const uint8_t *have = g->has_check ? g->check : NULL;

			if (have && sodium_memcmp(have, mg->check,
						  RKFS_CHECK_LEN) != 0) {
				msg("%s: wrong keyring: generation %" PRIu32
				    " (%s) is not the key that wrote this "
				    "tree's generation-%" PRIu32 " files",
				    o->source, mg->number,
				    rkfs_gen_state_name(g->state), mg->number);
				ret = EXIT_REFUSED;
				continue;
			}
			printf("generation %" PRIu32 ": %s in the keyring%s\n",
			       mg->number, rkfs_gen_state_name(g->state),
			       have ? ", check value matches" : "");
			continue;
		}
		rkfs_crypt_check_value(cv, g->key);
		if (sodium_memcmp(cv, mg->check, RKFS_CHECK_LEN) != 0) {
			msg("%s: wrong keyring: its generation %" PRIu32
			    " is not the key that wrote this tree's "
			    "generation-%" PRIu32 " files",
			    o->source, mg->number, mg->number);
			ret = EXIT_REFUSED;
			continue;
		}
		printf("generation %" PRIu32 ": ok\n", mg->number);
	}
	rkfs_meta_free(m);
	if (ret == EXIT_OK)
		printf("%s fits %s\n", kr->path, o->source);
	return ret;
}

static int cmd_protect(struct rkfs_keyring *kr, const struct opts *o)
{
	bool was = kr->sealed;
	int ret;

	if (was) {
		if (seal_new(kr, o, o->new_pass_file, o->new_pass_command) < 0)
			return EXIT_ERROR;
	} else if (seal_new(kr, o, o->pass_file, o->pass_command) < 0) {
		return EXIT_ERROR;
	}
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK)
		printf("%s: %s\n", o->keyring,
		       was ? "passphrase changed"
			   : "keys sealed under a passphrase");
	return ret;
}

static int cmd_unprotect(struct rkfs_keyring *kr, const struct opts *o)
{
	if (!kr->sealed) {
		printf("%s is not sealed\n", o->keyring);
		return EXIT_OK;
	}
	rkfs_keyring_unseal(kr);
	if (save(kr, o->keyring) != EXIT_OK)
		return EXIT_ERROR;
	printf("%s: passphrase sealing removed; keep the file at mode 0600\n"
	       "note: a backing tree that recorded the sealed keyring refuses "
	       "this one unless\n"
	       "      mounts and tools are given --allow-unsealed\n",
	       o->keyring);
	return EXIT_OK;
}

static int cmd_generate(void)
{
	unsigned char *key = sodium_malloc(RKFS_KEY_LEN);
	char b64[sodium_base64_ENCODED_LEN(RKFS_KEY_LEN,
					   sodium_base64_VARIANT_ORIGINAL)];
	int ret;

	if (key == NULL)
		return EXIT_ERROR;
	randombytes_buf(key, RKFS_KEY_LEN);
	sodium_bin2base64(b64, sizeof(b64), key, RKFS_KEY_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_free(key);
	ret = printf("%s\n", b64) < 0 || fflush(stdout) != 0 ? EXIT_ERROR
							     : EXIT_OK;
	sodium_memzero(b64, sizeof(b64));
	return ret;
}

/* ---- main ------------------------------------------------------------------
 */

static const struct {
	const char *name;
	int (*fn)(struct rkfs_keyring *, const struct opts *);
	bool number, modifies;
	unsigned flags;
} commands[] = {
    {"add", cmd_add, false, true, 0},
    {"promote", cmd_promote, true, true, 0},
    {"enable", cmd_enable, true, true, 0},
    {"disable", cmd_disable, true, true, 0},
    {"destroy", cmd_destroy, true, true, 0},
    {"list", cmd_list, false, false, 0},
    {"check", cmd_check, false, false, RKFS_KR_LOAD_KEYS},
    {"protect", cmd_protect, false, true, 0},
    {"unprotect", cmd_unprotect, false, true, 0},
};

enum {
	OPT_KEYRING = 256,
	OPT_CONFIG,
	OPT_SOURCE,
	OPT_FROM,
	OPT_JSON,
	OPT_FORCE,
	OPT_PRIMARY,
	OPT_PASSPHRASE,
	OPT_PASS_FILE,
	OPT_PASS_CMD,
	OPT_NEW_PASS_FILE,
	OPT_NEW_PASS_CMD,
	OPT_KDF_OPS,
	OPT_KDF_MEM,
	OPT_ALLOW_UNSEALED,
};

static const struct option long_opts[] = {
    {"keyring", required_argument, NULL, OPT_KEYRING},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"from", required_argument, NULL, OPT_FROM},
    {"json", no_argument, NULL, OPT_JSON},
    {"force", no_argument, NULL, OPT_FORCE},
    {"primary", no_argument, NULL, OPT_PRIMARY},
    {"passphrase", no_argument, NULL, OPT_PASSPHRASE},
    {"passphrase-file", required_argument, NULL, OPT_PASS_FILE},
    {"passphrase-command", required_argument, NULL, OPT_PASS_CMD},
    {"new-passphrase-file", required_argument, NULL, OPT_NEW_PASS_FILE},
    {"new-passphrase-command", required_argument, NULL, OPT_NEW_PASS_CMD},
    {"kdf-ops", required_argument, NULL, OPT_KDF_OPS},
    {"kdf-mem", required_argument, NULL, OPT_KDF_MEM},
    {"allow-unsealed", no_argument, NULL, OPT_ALLOW_UNSEALED},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("rekeyfs-key: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'rekeyfs-key --help'.\n", stderr);
	return EXIT_ERROR;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	size_t v;
	int c, ret;

	while ((c = getopt_long(argc, argv, "hV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KEYRING:
			o->keyring = optarg;
			break;
		case OPT_CONFIG:
			o->config = optarg;
			break;
		case OPT_SOURCE:
			o->source = optarg;
			break;
		case OPT_FROM:
			o->from = optarg;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_FORCE:
			o->force = true;
			break;
		case OPT_PRIMARY:
			o->primary = true;
			break;
		case OPT_PASSPHRASE:
			o->passphrase = true;
			break;
		case OPT_PASS_FILE:
			o->pass_file = optarg;
			break;
		case OPT_PASS_CMD:
			o->pass_command = optarg;
			break;
		case OPT_NEW_PASS_FILE:
			o->new_pass_file = optarg;
			break;
		case OPT_NEW_PASS_CMD:
			o->new_pass_command = optarg;
			break;
		case OPT_KDF_OPS:
			if (parse_size(&v, optarg) < 0 || v == 0)
				return usage_error("--kdf-ops: '%s' is not a "
						   "positive number",
						   optarg);
			o->kdf_ops = v;
			break;
		case OPT_KDF_MEM:
			ret = parse_size(&v, optarg);
			if (ret == -ERANGE)
				return usage_error("--kdf-mem: '%s' is too "
						   "large",
						   optarg);
			if (ret < 0 || v == 0)
				return usage_error("--kdf-mem: '%s' is not a "
						   "size (BYTES, or with K, M, "
						   "G)",
						   optarg);
			o->kdf_mem = v;
			break;
		case OPT_ALLOW_UNSEALED:
			o->allow_unsealed = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(EXIT_OK);
		case 'V':
			printf("rekeyfs-key %s\n", RKFS_VERSION);
			exit(EXIT_OK);
		default:
			fputs("Try 'rekeyfs-key --help'.\n", stderr);
			return EXIT_ERROR;
		}
	}
	if (optind >= argc)
		return usage_error("%s", "no command given");
	o->cmd = argv[optind++];
	if (optind < argc &&
	    (strcmp(o->cmd, "promote") == 0 || strcmp(o->cmd, "enable") == 0 ||
	     strcmp(o->cmd, "disable") == 0 ||
	     strcmp(o->cmd, "destroy") == 0)) {
		if (parse_gen(&o->number, argv[optind]) < 0)
			return usage_error("'%s' is not a generation number",
					   argv[optind]);
		optind++;
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->pass_file && o->pass_command)
		return usage_error("%s", "give --passphrase-file or "
					 "--passphrase-command, not both");
	if (o->new_pass_file && o->new_pass_command)
		return usage_error("%s", "give --new-passphrase-file or "
					 "--new-passphrase-command, not both");
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	struct rkfs_config *cfg = NULL;
	struct rkfs_error err = {0};
	struct rkfs_keyring *kr = NULL;
	char *resolved = NULL;
	struct stat st;
	int ret, lock = -1;
	size_t i;

	/* Before anything can hold a key: no core dumps, no ptrace. */
	(void)rkfs_protect_process();
	ret = parse_args(&o, argc, argv);
	if (ret != EXIT_OK)
		return ret;
	if (rkfs_crypt_init() < 0) {
		msg("cannot initialise libsodium");
		return EXIT_ERROR;
	}
	if (rkfs_keyring_lock_check(NULL, &err) < 0) {
		msg("warning: %s", err.msg);
		rkfs_error_clear(&err);
	}
	if (strcmp(o.cmd, "generate") == 0)
		return cmd_generate();
	if (o.config) {
		if (rkfs_config_load(&cfg, o.config, &err) < 0)
			return fail(&err, EXIT_ERROR, "cannot read config");
		if (o.keyring == NULL)
			o.keyring = cfg->keyring;
		if (o.source == NULL)
			o.source = cfg->backing;
		if (o.pass_file == NULL && o.pass_command == NULL) {
			o.pass_file = cfg->passphrase_file;
			o.pass_command = cfg->passphrase_command;
		}
	}
	if (o.keyring == NULL) {
		ret = usage_error("%s", "no keyring: give --keyring FILE or "
					"--config FILE with keyring =");
		goto out;
	}
	/* A symlinked keyring is changed where it lives, not replaced. */
	if (lstat(o.keyring, &st) == 0 && S_ISLNK(st.st_mode) &&
	    (resolved = realpath(o.keyring, NULL)) != NULL)
		o.keyring = resolved;
	if (o.number == 0 &&
	    (strcmp(o.cmd, "promote") == 0 || strcmp(o.cmd, "enable") == 0 ||
	     strcmp(o.cmd, "disable") == 0 || strcmp(o.cmd, "destroy") == 0)) {
		ret = usage_error("%s needs a generation number", o.cmd);
		goto out;
	}
	if ((o.from || o.primary) && strcmp(o.cmd, "add") != 0) {
		ret = usage_error("%s", "--from and --primary go with add");
		goto out;
	}
	if (o.passphrase && strcmp(o.cmd, "init") != 0) {
		ret = usage_error("%s", "--passphrase goes with init; use "
					"protect for an existing keyring");
		goto out;
	}
	if (rkfs_passphrase_setup(o.pass_file, o.pass_command, &err) < 0) {
		ret = fail(&err, EXIT_ERROR, "passphrase setup failed");
		goto out;
	}
	rkfs_keyring_allow_unsealed(o.allow_unsealed);
	if (strcmp(o.cmd, "init") == 0) {
		ret = cmd_init(&o);
		goto out;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(o.cmd, commands[i].name) == 0)
			break;
	if (i == sizeof(commands) / sizeof(commands[0])) {
		ret = usage_error("unknown command '%s'", o.cmd);
		goto out;
	}
	if (commands[i].modifies) {
		lock = lock_keyring(o.keyring);
		if (lock < 0) {
			ret = EXIT_ERROR;
			goto out;
		}
	}
	ret = load(&kr, o.keyring, commands[i].flags);
	/*
	 * A keyring without "primary =" uses its highest enabled generation;
	 * pin that, so that add or enable never switches the primary.
	 */
	if (ret == EXIT_OK && commands[i].modifies && !kr->primary_explicit &&
	    kr->primary)
		kr->primary_explicit = true;
	/* protect is how an unsealed keyring gets its passphrase. */
	if (ret == EXIT_OK && strcmp(o.cmd, "protect") != 0 &&
	    rkfs_keyring_check_sealed(kr, false, NULL, &err) < 0)
		ret = fail(&err, EXIT_REFUSED, "unsealed keyring refused");
	if (ret == EXIT_OK)
		ret = commands[i].fn(kr, &o);
out:
	rkfs_keyring_free(kr);
	rkfs_keyring_forget_passphrases();
	if (lock >= 0)
		close(lock);
	rkfs_config_free(cfg);
	free(resolved);
	fflush(stdout);
	return ret;
}
