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

#include "rekeyfs/audit.h"
#include "rekeyfs/config.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/json.h"
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
    "Usage: rekeyfs-key COMMAND [ARGS] (--keyring FILE | --config FILE) "
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
    "                       key_file or key_command; '-': standard input); "
    "N must be\n"
    "                       above every existing generation, or left out "
    "([generation],\n"
    "                       the only section) for the next number; a "
    "generation already\n"
    "                       there with the same key is success, with "
    "another key a\n"
    "                       conflict; relative key_file paths are made "
    "absolute\n"
    "  promote N            make enabled generation N the primary\n"
    "  disable N            keep N's key but stop using it (reversible)\n"
    "  enable N             use disabled generation N again\n"
    "  destroy N            remove N's key material for good; a tombstone "
    "keeps the\n"
    "                       number; needs --source (checked) or --force; an "
    "external\n"
    "                       key_file or key_command is not touched\n"
    "  list                 generations: state, primary, created, key "
    "source, check\n"
    "                       value (never key material)\n"
    "  check                does the keyring fit the tree in --source?\n"
    "  generate             print a fresh random key as base64:..., ready "
    "for key = or\n"
    "                       a key_file\n"
    "  protect              seal the keyring's keys under a passphrase "
    "(Argon2id);\n"
    "                       on a sealed keyring: change the passphrase\n"
    "  unprotect            remove the passphrase sealing\n"
    "\n"
    "Options:\n"
    "  -k, --keyring FILE   the keyring (default: $REKEYFS_KEYRING)\n"
    "  -c, --config FILE    a mount config: its [mount] keyring, backing "
    "(default\n"
    "                       --source) and passphrase settings are used "
    "(default:\n"
    "                       $REKEYFS_CONFIG, when --keyring is not given "
    "either)\n"
    "      --source DIR     backing directory: disable/destroy refuse while "
    "files there\n"
    "                       use the generation (header scan); check compares "
    "it\n"
    "      --force          disable/destroy without a --source scan or "
    "despite files\n"
    "                       still using the generation (never the "
    "primary)\n"
    "      --primary        add: make the new (highest) generation primary\n"
    "      --from FILE      add: generation snippet ('-': standard input)\n"
    "      --json           one JSON object on stdout, whatever the "
    "outcome\n"
    "  -q, --quiet          print nothing on success but the data asked for "
    "(list,\n"
    "                       generate); errors and warnings still go to "
    "stderr\n"
    "      --passphrase     init: seal the new keyring under a passphrase\n"
    "      --passphrase-file F  passphrase of a sealed keyring (or the new "
    "one for\n"
    "                       init --passphrase and protect); '-': standard "
    "input\n"
    "      --passphrase-command CMD   same, from a command's stdout; the "
    "command line is\n"
    "                       visible to every user in /proc/PID/cmdline (ps): "
    "prefer\n"
    "                       passphrase_command in the --config file\n"
    "      --allow-unsealed accept an unsealed keyring although a passphrase "
    "source\n"
    "                       is given or --source recorded a sealed one "
    "(logged)\n"
    "      --new-passphrase-file F, --new-passphrase-command CMD\n"
    "                       protect on a sealed keyring: the new "
    "passphrase\n"
    "      --kdf-ops N, --kdf-mem BYTES[K|M|G]   Argon2id cost (default 3, "
    "256M;\n"
    "                       env REKEYFS_KDF_OPS, REKEYFS_KDF_MEM)\n"
    "  -h, --help           this help\n"
    "  -V, --version        print the version\n"
    "Without a passphrase file or command, a sealed keyring asks on the "
    "terminal.\n"
    "disable without --source or --force is allowed (it is reversible) but "
    "warns.\n"
    "Every change is recorded in the audit trail (syslog, facility authpriv):"
    "\n"
    "the event, the keyring's path and the generation numbers, never a "
    "key.\n"
    "\n"
    "Exit status:\n"
    "  0  done (also when nothing had to change)\n"
    "  1  refused: files still use the generation, the keyring does not fit "
    "the\n"
    "     tree, the generation is the primary, destroy without --source/"
    "--force,\n"
    "     or an unsealed keyring where a sealed one is expected\n"
    "  2  usage error, or a keyring, snippet, config or passphrase error "
    "(also a\n"
    "     conflicting snippet); nothing was changed\n";

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
	bool json, quiet, force, primary, passphrase, allow_unsealed;
};

/*
 * What a run says.  Errors and warnings go to stderr (also with -q); the
 * lines that report what was done go to stdout unless -q.  With --json,
 * both are collected and printed in one JSON object at the end, so stdout
 * holds exactly one JSON document whatever happens.
 */
struct lines {
	char **v;
	size_t n;
};

static struct {
	bool json, quiet;
	bool data_printed;  /* list/generate printed their own JSON */
	bool changed;       /* the keyring was written */
	const char *command;
	const char *keyring;
	struct lines said, diagnostics;
	uint32_t gens[64];  /* generations the command acted on */
	size_t ngens;
} out;

static void lines_add(struct lines *l, char *line)
{
	char **grown;
	size_t len = strlen(line);

	while (len && line[len - 1] == '\n')
		line[--len] = '\0';
	grown = realloc(l->v, (l->n + 1) * sizeof(*l->v));
	if (grown == NULL) {
		free(line);
		return;
	}
	l->v = grown;
	l->v[l->n++] = line;
}

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void note_gen(uint32_t g)
{
	for (size_t i = 0; i < out.ngens; i++)
		if (out.gens[i] == g)
			return;
	if (out.ngens < sizeof(out.gens) / sizeof(out.gens[0]))
		out.gens[out.ngens++] = g;
}

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void msg(const char *fmt, ...)
{
	va_list ap;
	char *line;

	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	va_end(ap);
	if (line == NULL)
		return;
	fprintf(stderr, "rekeyfs-key: %s\n", line);
	if (out.json)
		lines_add(&out.diagnostics, line);
	else
		free(line);
}

/* A line of the report on stdout (fmt ends in a newline). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;
	char *text, *p, *nl;

	va_start(ap, fmt);
	if (out.quiet && !out.json) {
		va_end(ap);
		return;
	}
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	if (text == NULL)
		return;
	if (!out.json) {
		fputs(text, stdout);
		free(text);
		return;
	}
	for (p = text; *p; p = nl + 1) {
		nl = strchrnul(p, '\n');
		lines_add(&out.said, strndup(p, (size_t)(nl - p)));
		if (*nl == '\0')
			break;
	}
	free(text);
}

static void json_lines(struct rkfs_json *j, const char *key,
		       const struct lines *l)
{
	rkfs_json_begin_array(j, key);
	for (size_t i = 0; i < l->n; i++)
		rkfs_json_string(j, NULL, l->v[i]);
	rkfs_json_end_array(j);
}

/* The --json answer of every command that has no data of its own. */
static void print_json_result(int status)
{
	struct rkfs_json j;

	rkfs_json_begin_document(&j, stdout);
	rkfs_json_begin_object(&j, NULL);
	rkfs_json_string(&j, "command", out.command);
	rkfs_json_string(&j, "keyring", out.keyring);
	rkfs_json_int(&j, "exit_status", status);
	rkfs_json_bool(&j, "changed", out.changed);
	rkfs_json_begin_array(&j, "generations");
	for (size_t i = 0; i < out.ngens; i++)
		rkfs_json_uint(&j, NULL, out.gens[i]);
	rkfs_json_end_array(&j);
	json_lines(&j, "messages", &out.said);
	json_lines(&j, "diagnostics", &out.diagnostics);
	rkfs_json_end_object(&j);
	(void)rkfs_json_end_document(&j);
}

/* Record a key event in the audit trail (see rekeyfs/audit.h). */
static struct rkfs_audit *audit(const char *event, const char *keyring)
{
	struct rkfs_audit *a = rkfs_audit_begin("rekeyfs-key", event);

	rkfs_audit_str(a, "keyring", keyring);
	return a;
}

static void audit_end(struct rkfs_audit *a)
{
	int ret = rkfs_audit_end(a);

	if (ret < 0)
		msg("warning: audit log %s: %s",
		    getenv("REKEYFS_AUDIT_LOG") ? getenv("REKEYFS_AUDIT_LOG")
						: "(syslog)",
		    strerror(-ret));
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
		char names[1024] = "";
		size_t used = 0;

		for (size_t i = 0; i < SCAN_NAMES && i < sc.count; i++) {
			int n = snprintf(names + used, sizeof(names) - used,
					 " %s", sc.names[i] ? sc.names[i] : "?");

			if (n < 0 || (size_t)n >= sizeof(names) - used)
				break;
			used += (size_t)n;
		}
		msg("%s: %lu file%s still use%s generation %" PRIu32 ":%s%s",
		    source, sc.count, sc.count == 1 ? "" : "s",
		    sc.count == 1 ? "s" : "", gen, names,
		    sc.count > SCAN_NAMES ? " ..." : "");
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
	out.changed = true;
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
	if (ret == EXIT_OK) {
		struct rkfs_audit *a = audit("key-init", o->keyring);

		rkfs_audit_num(a, "generation", 1);
		rkfs_audit_num(a, "primary", 1);
		rkfs_audit_str(a, "sealed", kr->sealed ? "yes" : "no");
		audit_end(a);
		note_gen(1);
		say("created %s: generation 1, primary%s\n", o->keyring,
		    kr->sealed ? ", sealed with a passphrase" : "");
	}
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

/* Read a snippet from standard input into locked memory (it may hold keys). */
static int read_stdin_snippet(char **text, size_t *len)
{
	size_t cap = 64 * 1024, used = 0;
	char *buf = sodium_malloc(cap + 1);

	*text = NULL;
	if (buf == NULL) {
		msg("out of memory");
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf + used, cap - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			msg("standard input: %s", strerror(errno));
			sodium_free(buf);
			return -EIO;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used == cap) {
			msg("standard input: a snippet is at most %zu bytes",
			    cap - 1);
			sodium_free(buf);
			return -EFBIG;
		}
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	return 0;
}

/* The snippet named by --from: a file, or "-" for standard input. */
static int load_snippet(struct rkfs_keyring **snip, const char *from,
			char **absdir)
{
	struct rkfs_error err = {0};
	char *dir = NULL, *base = NULL, *text;
	bool inline_keys = false;
	struct stat st;
	size_t len;
	int ret;

	*snip = NULL;
	*absdir = NULL;
	if (strcmp(from, "-") == 0) {
		/* Relative key_file paths: relative to the caller. */
		*absdir = getcwd(NULL, 0);
		if (*absdir == NULL) {
			msg("cannot tell the current directory: %s",
			    strerror(errno));
			return EXIT_ERROR;
		}
		if (read_stdin_snippet(&text, &len) < 0)
			return EXIT_ERROR;
		ret = rkfs_keyring_parse(snip, text, len, "<stdin>", *absdir,
					 RKFS_KR_SNIPPET | RKFS_KR_UNNUMBERED,
					 &err);
		sodium_free(text);
		if (ret < 0)
			return fail(&err, EXIT_ERROR, "cannot read snippet");
		return EXIT_OK;
	}
	if (stat(from, &st) < 0) {
		msg("%s: %s", from, strerror(errno));
		return EXIT_ERROR;
	}
	if (rkfs_keyring_load(snip, from,
			      RKFS_KR_NO_MODE_CHECK | RKFS_KR_SNIPPET |
				  RKFS_KR_UNNUMBERED,
			      &err) < 0)
		return fail(&err, EXIT_ERROR, "cannot read snippet");
	if (rkfs_path_split(&dir, &base, from) < 0 ||
	    (*absdir = realpath(dir, NULL)) == NULL) {
		msg("%s: %s", from, strerror(errno));
		free(dir);
		free(base);
		return EXIT_ERROR;
	}
	free(dir);
	free(base);
	for (size_t i = 0; i < (*snip)->count; i++)
		if ((*snip)->gens[i].source == RKFS_KEY_INLINE)
			inline_keys = true;
	if (inline_keys && (st.st_mode & 077)) {
		msg("%s: holds an inline key but is readable or writable by "
		    "group or others (mode %04o); run: chmod 600 %s",
		    from, (unsigned)(st.st_mode & 07777), from);
		return EXIT_ERROR;
	}
	return EXIT_OK;
}

/* The check value a keyring generation is known by, or NULL. */
static const uint8_t *known_check(struct rkfs_generation *g)
{
	if (!g->has_check && g->key)
		set_check(g);
	return g->has_check ? g->check : NULL;
}

/*
 * Is snippet generation s (its key loaded and checked) already in kr?
 * 0: no, add it; 1: yes, same number and key, nothing to do (said);
 * -1: a conflict (reported).
 */
static int add_conflict(struct rkfs_keyring *kr, const struct rkfs_generation *s,
			const char *from)
{
	for (size_t i = 0; i < kr->count; i++) {
		struct rkfs_generation *g = &kr->gens[i];
		const uint8_t *cv = known_check(g);
		bool same = cv && sodium_memcmp(cv, s->check,
						RKFS_CHECK_LEN) == 0;

		if (s->number == 0 && same) {
			if (g->state == RKFS_GEN_DESTROYED) {
				msg("%s:%u: this key was generation %" PRIu32
				    ", which is destroyed; a destroyed key "
				    "is never added again",
				    from, s->line, g->number);
				return -1;
			}
			say("generation %" PRIu32 " already holds this key "
			    "(%s); nothing to do\n",
			    g->number, rkfs_gen_state_name(g->state));
			note_gen(g->number);
			return 1;
		}
		if (s->number == 0)
			continue;
		if (g->number == s->number) {
			if (g->state == RKFS_GEN_DESTROYED) {
				msg("%s:%u: generation %" PRIu32 " of %s is "
				    "destroyed; its number is never reused",
				    from, s->line, s->number, kr->path);
				return -1;
			}
			if (cv == NULL) {
				msg("%s:%u: generation %" PRIu32 " is already "
				    "in %s and has no check value to compare "
				    "with; run rekeyfs-key promote or enable "
				    "on it once to record one",
				    from, s->line, s->number, kr->path);
				return -1;
			}
			if (!same) {
				msg("%s:%u: conflict: generation %" PRIu32
				    " is already in %s with a different key; "
				    "a generation's key never changes (use "
				    "the next number, %" PRIu32 ", or leave "
				    "the number out)",
				    from, s->line, s->number, kr->path,
				    rkfs_keyring_max_generation(kr) + 1);
				return -1;
			}
			say("generation %" PRIu32 " is already in the keyring "
			    "with this key (%s); nothing to do\n",
			    g->number, rkfs_gen_state_name(g->state));
			note_gen(g->number);
			return 1;
		}
		if (same) {
			msg("%s:%u: conflict: the key of [generation %" PRIu32
			    "] is already generation %" PRIu32 " of %s; a "
			    "key belongs to one generation",
			    from, s->line, s->number, g->number, kr->path);
			return -1;
		}
	}
	return 0;
}

static int add_from(struct rkfs_keyring *kr, const struct opts *o,
		    uint32_t *last, bool *added)
{
	struct rkfs_error err = {0};
	struct rkfs_keyring *snip = NULL;
	uint32_t max = rkfs_keyring_max_generation(kr);
	char *absdir = NULL;
	const char *from = strcmp(o->from, "-") == 0 ? "<stdin>" : o->from;
	int ret = EXIT_ERROR;
	bool *skip = NULL;

	*added = false;
	ret = load_snippet(&snip, o->from, &absdir);
	if (ret != EXIT_OK)
		goto out;
	ret = EXIT_ERROR;
	if (snip->count == 0) {
		msg("%s: no [generation N] sections", from);
		goto out;
	}
	if (snip->primary_explicit || snip->sealed) {
		msg("%s: a snippet holds only [generation N] sections; use "
		    "--primary or rekeyfs-key promote to set the primary",
		    from);
		goto out;
	}
	skip = calloc(snip->count, sizeof(*skip));
	if (skip == NULL) {
		msg("out of memory");
		goto out;
	}
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];

		if (g->state == RKFS_GEN_DESTROYED) {
			msg("%s:%u: generation %" PRIu32
			    ": a new generation cannot be destroyed",
			    from, g->line, g->number);
			goto out;
		}
	}
	/* A number below the highest that the keyring does not hold. */
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];

		if (g->number && g->number <= max &&
		    rkfs_keyring_find(kr, g->number) == NULL) {
			msg("%s:%u: [generation %" PRIu32
			    "] is not above the highest generation %" PRIu32
			    " of %s; numbers only grow and are never reused",
			    from, g->line, g->number, max, kr->path);
			goto out;
		}
	}
	/* Every key is loaded and checked before anything is decided. */
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];
		uint8_t cv[RKFS_CHECK_LEN];

		if (rkfs_keyring_load_key(g, from, absdir, &err) < 0 &&
		    g->key == NULL) {
			fail(&err, EXIT_ERROR, "cannot load the key");
			goto out;
		}
		if (g->has_check) {
			rkfs_crypt_check_value(cv, g->key);
			if (sodium_memcmp(cv, g->check, sizeof(cv)) != 0) {
				msg("%s:%u: generation %" PRIu32
				    ": the key does not match its check value",
				    from, g->line, g->number);
				goto out;
			}
		} else {
			set_check(g);
		}
	}
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];
		int c = add_conflict(kr, g, from);

		if (c < 0)
			goto out;
		skip[i] = c == 1;
		if (skip[i])
			*last = g->number ? g->number : out.gens[out.ngens - 1];
		else if (g->number && g->number <= max) {
			msg("%s:%u: [generation %" PRIu32
			    "] is not above the highest generation %" PRIu32
			    " of %s; numbers only grow and are never reused",
			    from, g->line, g->number, max, kr->path);
			goto out;
		}
	}
	for (size_t i = 0; i < snip->count; i++) {
		struct rkfs_generation *g = &snip->gens[i];

		if (skip[i])
			continue;
		if (g->number == 0) {
			g->number = max + 1;
			if (g->number == 0) {
				msg("%s: no generation number is left", kr->path);
				goto out;
			}
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

		if (skip[i])
			continue;
		g.line = 0;
		memset(&snip->gens[i], 0, sizeof(snip->gens[i]));
		if (rkfs_keyring_append(kr, &g, &err) < 0) {
			fail(&err, EXIT_ERROR, "out of memory");
			goto out;
		}
		*last = kr->gens[kr->count - 1].number;
		*added = true;
	}
	ret = EXIT_OK;
out:
	free(skip);
	free(absdir);
	rkfs_keyring_free(snip);
	return ret;
}

static int cmd_add(struct rkfs_keyring *kr, const struct opts *o)
{
	uint32_t before = rkfs_keyring_max_generation(kr), last = 0;
	bool added = true;
	int ret;

	if (o->from) {
		ret = add_from(kr, o, &last, &added);
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
		if (!added && kr->primary == last)
			return EXIT_OK;
		kr->primary = last;
		kr->primary_explicit = true;
	} else if (!added) {
		return EXIT_OK;
	}
	ret = save(kr, o->keyring);
	if (ret != EXIT_OK)
		return ret;
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];
		struct rkfs_audit *a;

		if (g->number <= before)
			continue;
		say("added generation %" PRIu32 " (%s, %s key)\n", g->number,
		    rkfs_gen_state_name(g->state), source_name(g->source));
		note_gen(g->number);
		a = audit("key-add", o->keyring);
		rkfs_audit_num(a, "generation", g->number);
		rkfs_audit_str(a, "state", rkfs_gen_state_name(g->state));
		rkfs_audit_str(a, "source", source_name(g->source));
		if (g->source == RKFS_KEY_FILE)
			rkfs_audit_str(a, "key_file", g->key_file);
		audit_end(a);
	}
	if (o->primary) {
		struct rkfs_audit *a = audit("key-promote", o->keyring);

		say("generation %" PRIu32 " is now primary\n", last);
		note_gen(last);
		rkfs_audit_num(a, "generation", last);
		audit_end(a);
	}
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
	uint32_t old;
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
		say("generation %" PRIu32 " is already primary\n",
		       g->number);
		return EXIT_OK;
	}
	if (!g->has_check)
		set_check(g);
	old = kr->primary;
	kr->primary = g->number;
	kr->primary_explicit = true;
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK) {
		struct rkfs_audit *a = audit("key-promote", o->keyring);

		rkfs_audit_num(a, "generation", g->number);
		if (old)
			rkfs_audit_num(a, "previous", old);
		audit_end(a);
		say("generation %" PRIu32 " is now primary\n", g->number);
	}
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
		say("generation %" PRIu32 " is already enabled\n",
		       g->number);
		return EXIT_OK;
	}
	g->state = RKFS_GEN_ENABLED;
	if (!g->has_check)
		set_check(g);
	ret = save(kr, o->keyring);
	if (ret == EXIT_OK) {
		struct rkfs_audit *a = audit("key-enable", o->keyring);

		rkfs_audit_num(a, "generation", g->number);
		audit_end(a);
		say("generation %" PRIu32 " enabled\n", g->number);
	}
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
		say("generation %" PRIu32 " is already disabled\n",
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
	if (ret == EXIT_OK) {
		struct rkfs_audit *a = audit("key-disable", o->keyring);

		rkfs_audit_num(a, "generation", g->number);
		rkfs_audit_str(a, "checked_source", o->source);
		if (o->force)
			rkfs_audit_str(a, "forced", "yes");
		audit_end(a);
		say("generation %" PRIu32 " disabled\n", g->number);
	}
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
		say("generation %" PRIu32 " is already destroyed\n",
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
		struct rkfs_audit *a = audit("key-destroy", o->keyring);

		rkfs_audit_num(a, "generation", g->number);
		rkfs_audit_str(a, "checked_source", o->source);
		if (o->force)
			rkfs_audit_str(a, "forced", "yes");
		audit_end(a);
		say("generation %" PRIu32
		    " destroyed; its number stays reserved\n",
		    g->number);
		if (src == RKFS_KEY_FILE)
			say("note: the key file %s was not touched; delete "
			       "it yourself if nothing else needs it\n",
			       external);
		else if (src == RKFS_KEY_COMMAND)
			say("note: the key_command (%s) was not touched; "
			       "retire its key at the source\n",
			       external);
	}
	free(external);
	return ret;
}

static int cmd_list(struct rkfs_keyring *kr, const struct opts *o)
{
	char hex[RKFS_CHECK_LEN * 2 + 1];
	struct rkfs_json j;

	if (o->json) {
		rkfs_json_begin_document(&j, stdout);
		rkfs_json_begin_object(&j, NULL);
		rkfs_json_string(&j, "command", "list");
		rkfs_json_string(&j, "keyring", kr->path);
		rkfs_json_int(&j, "exit_status", EXIT_OK);
		rkfs_json_bool(&j, "sealed", kr->sealed);
		rkfs_json_uint(&j, "primary", kr->primary);
		rkfs_json_begin_array(&j, "generations");
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
			rkfs_json_begin_object(&j, NULL);
			rkfs_json_uint(&j, "generation", g->number);
			rkfs_json_string(&j, "state",
					 rkfs_gen_state_name(g->state));
			rkfs_json_bool(&j, "primary", g->number == kr->primary);
			rkfs_json_string(&j, "created", g->created);
			rkfs_json_string(&j, "source", source_name(g->source));
			if (g->source == RKFS_KEY_FILE)
				rkfs_json_string(&j, "key_file", detail);
			else if (g->source == RKFS_KEY_COMMAND)
				rkfs_json_string(&j, "key_command", detail);
			rkfs_json_string(&j, "check",
					 g->has_check ? hex : NULL);
			rkfs_json_end_object(&j);
		} else {
			printf("%-10" PRIu32 " %-9s %-7s %-20s %-32s %s%s%s\n",
			       g->number, rkfs_gen_state_name(g->state),
			       g->number == kr->primary ? "yes" : "-",
			       g->created ? g->created : "-",
			       g->has_check ? hex : "-", source_name(g->source),
			       detail ? " " : "", detail ? detail : "");
		}
	}
	if (o->json) {
		rkfs_json_end_array(&j);
		rkfs_json_end_object(&j);
		out.data_printed = true;
		return rkfs_json_end_document(&j) < 0 ? EXIT_ERROR : EXIT_OK;
	}
	if (kr->sealed)
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
			say("generation %" PRIu32
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
			say("generation %" PRIu32 ": %s in the keyring%s\n",
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
		say("generation %" PRIu32 ": ok\n", mg->number);
	}
	rkfs_meta_free(m);
	if (ret == EXIT_OK)
		say("%s fits %s\n", kr->path, o->source);
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
	if (ret == EXIT_OK) {
		struct rkfs_audit *a = audit("key-protect", o->keyring);

		rkfs_audit_str(a, "change",
			       was ? "passphrase-changed" : "sealed");
		audit_end(a);
		say("%s: %s\n", o->keyring,
		    was ? "passphrase changed" : "keys sealed under a passphrase");
	}
	return ret;
}

static int cmd_unprotect(struct rkfs_keyring *kr, const struct opts *o)
{
	if (!kr->sealed) {
		say("%s is not sealed\n", o->keyring);
		return EXIT_OK;
	}
	rkfs_keyring_unseal(kr);
	if (save(kr, o->keyring) != EXIT_OK)
		return EXIT_ERROR;
	audit_end(audit("key-unprotect", o->keyring));
	say("%s: passphrase sealing removed; keep the file at mode 0600\n"
	       "note: a backing tree that recorded the sealed keyring refuses "
	       "this one unless\n"
	       "      mounts and tools are given --allow-unsealed\n",
	       o->keyring);
	return EXIT_OK;
}

/*
 * A fresh key as "base64:...", the form a keyring's "key =" takes; a
 * key_file may hold the same line.
 */
static int cmd_generate(const struct opts *o)
{
	unsigned char *key = sodium_malloc(RKFS_KEY_LEN);
	char *text = sodium_malloc(128);
	struct rkfs_json j;
	int ret;

	if (key == NULL || text == NULL) {
		if (key)
			sodium_free(key);
		if (text)
			sodium_free(text);
		msg("out of memory");
		return EXIT_ERROR;
	}
	randombytes_buf(key, RKFS_KEY_LEN);
	rkfs_key_encode(text, 128, key);
	sodium_free(key);
	if (o->json) {
		rkfs_json_begin_document(&j, stdout);
		rkfs_json_begin_object(&j, NULL);
		rkfs_json_string(&j, "command", "generate");
		rkfs_json_int(&j, "exit_status", EXIT_OK);
		rkfs_json_string(&j, "key", text);
		rkfs_json_end_object(&j);
		ret = rkfs_json_end_document(&j) < 0 ? EXIT_ERROR : EXIT_OK;
		out.data_printed = true;
	} else {
		ret = printf("%s\n", text) < 0 || fflush(stdout) != 0
			  ? EXIT_ERROR
			  : EXIT_OK;
	}
	sodium_free(text);
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
	OPT_SOURCE = 256,
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
    {"keyring", required_argument, NULL, 'k'},
    {"config", required_argument, NULL, 'c'},
    {"quiet", no_argument, NULL, 'q'},
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
	char *line;

	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	va_end(ap);
	if (line) {
		msg("%s", line);
		free(line);
	}
	fputs("Try 'rekeyfs-key --help'.\n", stderr);
	return EXIT_ERROR;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	size_t v;
	int c, ret;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:c:qhV", long_opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'k':
			o->keyring = optarg;
			break;
		case 'c':
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
			out.json = true;
			break;
		case 'q':
			o->quiet = true;
			out.quiet = true;
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
		case ':':
			return usage_error("option '%s' needs an argument",
					   argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'",
					   argv[optind - 1]);
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
	if ((o->from && strcmp(o->from, "-") == 0) +
		(o->pass_file && strcmp(o->pass_file, "-") == 0) +
		(o->new_pass_file && strcmp(o->new_pass_file, "-") == 0) >
	    1)
		return usage_error("%s", "standard input ('-') can feed only "
					 "one of --from, --passphrase-file and "
					 "--new-passphrase-file");
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
	/* --json holds for errors in options that come before it, too. */
	for (int a = 1; a < argc && strcmp(argv[a], "--") != 0; a++)
		if (strcmp(argv[a], "--json") == 0)
			out.json = true;
	ret = parse_args(&o, argc, argv);
	out.command = o.cmd;
	if (ret != EXIT_OK)
		goto out;
	if (rkfs_crypt_init() < 0) {
		msg("cannot initialise libsodium");
		ret = EXIT_ERROR;
		goto out;
	}
	if (rkfs_keyring_lock_check(NULL, &err) < 0) {
		msg("warning: %s", err.msg);
		rkfs_error_clear(&err);
	}
	if (strcmp(o.cmd, "generate") == 0) {
		ret = cmd_generate(&o);
		goto out;
	}
	/* The environment names a keyring or config when options do not. */
	if (o.keyring == NULL && o.config == NULL) {
		const char *k = getenv("REKEYFS_KEYRING");
		const char *c = getenv("REKEYFS_CONFIG");

		o.keyring = k && *k ? k : NULL;
		o.config = c && *c ? c : NULL;
	}
	if (o.config) {
		if (rkfs_config_load(&cfg, o.config, &err) < 0) {
			ret = fail(&err, EXIT_ERROR, "cannot read config");
			goto out;
		}
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
					"--config FILE with keyring = (or set "
					"REKEYFS_KEYRING or REKEYFS_CONFIG)");
		goto out;
	}
	out.keyring = o.keyring;
	if (o.number)
		note_gen(o.number);
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
	rkfs_passphrase_forget();
	if (lock >= 0)
		close(lock);
	if (out.json && !out.data_printed)
		print_json_result(ret);
	lines_free(&out.said);
	lines_free(&out.diagnostics);
	rkfs_config_free(cfg);
	free(resolved);
	if (fflush(stdout) != 0 && ret == EXIT_OK)
		ret = EXIT_ERROR;
	return ret;
}
