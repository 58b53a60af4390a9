#include "rekeyfs/keyring.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#include "rekeyfs/fsio.h"

#define KEYRING_MAX_SIZE (1024 * 1024)
#define KEY_TEXT_MAX 4096

static rkfs_passphrase_fn passphrase_fn;
static void *passphrase_arg;
static uint64_t next_serial = 1;

void rkfs_keyring_set_passphrase_source(rkfs_passphrase_fn fn, void *arg)
{
	passphrase_fn = fn;
	passphrase_arg = arg;
}

const char *rkfs_gen_state_name(enum rkfs_gen_state s)
{
	switch (s) {
	case RKFS_GEN_ENABLED:
		return "enabled";
	case RKFS_GEN_DISABLED:
		return "disabled";
	case RKFS_GEN_DESTROYED:
		return "destroyed";
	}
	return "?";
}

void rkfs_wipe_stack(void)
{
	unsigned char pad[16384];

	sodium_memzero(pad, sizeof(pad));
	__asm__ __volatile__("" : : "r"(pad) : "memory");
}

static void gen_clear(struct rkfs_generation *g)
{
	free(g->created);
	free(g->key_file);
	free(g->key_command);
	if (g->key)
		sodium_free(g->key);
	memset(g, 0, sizeof(*g));
}

void rkfs_keyring_free(struct rkfs_keyring *kr)
{
	if (kr == NULL)
		return;
	for (size_t i = 0; i < kr->count; i++)
		gen_clear(&kr->gens[i]);
	free(kr->gens);
	free(kr->path);
	free(kr);
}

struct rkfs_keyring *rkfs_keyring_new(void)
{
	struct rkfs_keyring *kr = calloc(1, sizeof(*kr));

	if (kr)
		kr->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
	return kr;
}

struct rkfs_generation *rkfs_keyring_find(const struct rkfs_keyring *kr,
					  uint32_t gen)
{
	for (size_t i = 0; i < kr->count; i++)
		if (kr->gens[i].number == gen)
			return &kr->gens[i];
	return NULL;
}

uint32_t rkfs_keyring_max_generation(const struct rkfs_keyring *kr)
{
	return kr->count ? kr->gens[kr->count - 1].number : 0;
}

const unsigned char *rkfs_keyring_key(const struct rkfs_keyring *kr,
				      uint32_t gen, int *err)
{
	const struct rkfs_generation *g = rkfs_keyring_find(kr, gen);

	*err = 0;
	if (g == NULL || g->state == RKFS_GEN_DESTROYED) {
		*err = -ENOKEY;
		return NULL;
	}
	if (g->state == RKFS_GEN_DISABLED) {
		*err = -EKEYREVOKED;
		return NULL;
	}
	if (g->key == NULL) {
		*err = -ENOKEY;
		return NULL;
	}
	return g->key;
}

/* ---- key text ---------------------------------------------------------- */

int rkfs_key_decode(unsigned char *key, const char *text, size_t len)
{
	const char *b64 = text;
	size_t b64len = len, binlen = 0;

	if (len == RKFS_KEY_LEN && memchr(text, '\n', len) == NULL &&
	    strncmp(text, "base64:", 7) != 0) {
		/* Raw bytes: only if it does not also look like base64 text. */
		size_t printable = 0;

		for (size_t i = 0; i < len; i++)
			printable += isprint((unsigned char)text[i]) != 0;
		if (printable != len) {
			memcpy(key, text, RKFS_KEY_LEN);
			return 0;
		}
	}
	while (b64len && isspace((unsigned char)b64[b64len - 1]))
		b64len--;
	while (b64len && isspace((unsigned char)*b64)) {
		b64++;
		b64len--;
	}
	if (b64len >= 7 && strncmp(b64, "base64:", 7) == 0) {
		b64 += 7;
		b64len -= 7;
	}
	if (b64len == 0)
		return -EINVAL;
	if (sodium_base642bin(key, RKFS_KEY_LEN, b64, b64len, NULL, &binlen,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != RKFS_KEY_LEN) {
		sodium_memzero(key, RKFS_KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

void rkfs_key_encode(char *out, size_t size, const unsigned char *key)
{
	char b64[sodium_base64_ENCODED_LEN(RKFS_KEY_LEN,
					   sodium_base64_VARIANT_ORIGINAL)];

	sodium_bin2base64(b64, sizeof(b64), key, RKFS_KEY_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, size, "base64:%s", b64);
	sodium_memzero(b64, sizeof(b64));
}

static char *resolve_path(const char *base_dir, const char *path)
{
	char *out;

	if (path[0] == '/' || base_dir == NULL)
		return strdup(path);
	if (asprintf(&out, "%s/%s", base_dir, path) < 0)
		return NULL;
	return out;
}

static int load_key_file(unsigned char *key, const struct rkfs_generation *g,
			 const char *name, const char *base_dir,
			 struct rkfs_error *err)
{
	char *path = resolve_path(base_dir, g->key_file);
	char *text = NULL;
	size_t len;
	struct stat st;
	int fd = -1, ret;

	if (path == NULL)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0) {
		ret = rkfs_error_set(err, -errno,
				     "%s:%u: generation %" PRIu32
				     ": key_file %s: %s",
				     name, g->line, g->number, path,
				     strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%u: generation %" PRIu32
				     ": key_file %s is not a regular file",
				     name, g->line, g->number, path);
		goto out;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		ret = rkfs_error_set(
			err, -EPERM,
			"%s:%u: generation %" PRIu32
			": key_file %s must be owned by uid %u and not "
			"readable by group or others (chmod 600)",
			name, g->line, g->number, path, (unsigned)geteuid());
		goto out;
	}
	ret = rkfs_read_small_file(&text, &len, fd, NULL, KEY_TEXT_MAX, true);
	if (ret < 0) {
		rkfs_error_set(err, ret,
			       "%s:%u: generation %" PRIu32
			       ": key_file %s: %s",
			       name, g->line, g->number, path, strerror(-ret));
		goto out;
	}
	ret = rkfs_key_decode(key, text, len);
	if (ret < 0)
		rkfs_error_set(err, -EINVAL,
			       "%s:%u: generation %" PRIu32
			       ": key_file %s must hold 32 raw bytes or one "
			       "base64 line encoding 32 bytes",
			       name, g->line, g->number, path);
out:
	if (text)
		sodium_free(text);
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

static int run_key_command(unsigned char *key, const struct rkfs_generation *g,
			   const char *name, struct rkfs_error *err)
{
	int pipefd[2], status = 0, ret;
	char *out;
	size_t used = 0;
	pid_t pid;
	struct timespec start, now;
	bool timed_out = false;

	out = sodium_malloc(KEY_TEXT_MAX + 1);
	if (out == NULL)
		return -ENOMEM;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		ret = -errno;
		sodium_free(out);
		return ret;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		sodium_free(out);
		return ret;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		/* The child gets stdin from /dev/null, stdout to the pipe,
		 * stderr shared, and nothing else; exec replaces the copy of
		 * our memory (and its keys) at once. */
		if (devnull < 0 || dup2(devnull, 0) < 0 ||
		    dup2(pipefd[1], 1) < 0)
			_exit(127);
		closefrom(3);
		setpgid(0, 0);
		execl("/bin/sh", "sh", "-c", g->key_command, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
		long elapsed;
		int n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed = (now.tv_sec - start.tv_sec) * 1000 +
			  (now.tv_nsec - start.tv_nsec) / 1000000;
		if (elapsed >= RKFS_KEY_COMMAND_TIMEOUT_MS) {
			timed_out = true;
			break;
		}
		n = poll(&pfd, 1, (int)(RKFS_KEY_COMMAND_TIMEOUT_MS - elapsed));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			timed_out = n == 0;
			break;
		}
		ssize_t r = read(pipefd[0], out + used, KEY_TEXT_MAX - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		used += (size_t)r;
		if (used == KEY_TEXT_MAX)
			break;
	}
	close(pipefd[0]);
	if (timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out) {
		ret = rkfs_error_set(err, -ETIME,
				     "%s:%u: generation %" PRIu32
				     ": key_command timed out after %d s",
				     name, g->line, g->number,
				     RKFS_KEY_COMMAND_TIMEOUT_MS / 1000);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		ret = rkfs_error_set(
			err, -EINVAL,
			"%s:%u: generation %" PRIu32 ": key_command failed (%s %d)",
			name, g->line, g->number,
			WIFEXITED(status) ? "exit status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	} else {
		out[used] = '\0';
		ret = rkfs_key_decode(key, out, used);
		if (ret < 0)
			rkfs_error_set(err, -EINVAL,
				       "%s:%u: generation %" PRIu32
				       ": key_command must print 32 raw bytes "
				       "or one base64 line encoding 32 bytes",
				       name, g->line, g->number);
	}
	sodium_free(out);
	return ret;
}

int rkfs_keyring_load_key(struct rkfs_generation *g, const char *name,
			  const char *base_dir, struct rkfs_error *err)
{
	unsigned char *key;
	int ret;

	if (g->key)
		return 0;
	if (g->source != RKFS_KEY_FILE && g->source != RKFS_KEY_COMMAND)
		return -ENOKEY;
	key = sodium_malloc(RKFS_KEY_LEN);
	if (key == NULL)
		return -ENOMEM;
	if (g->source == RKFS_KEY_FILE)
		ret = load_key_file(key, g, name, base_dir, err);
	else
		ret = run_key_command(key, g, name, err);
	if (ret < 0) {
		sodium_free(key);
		return ret;
	}
	g->key = key;
	return 0;
}

/* ---- parsing ----------------------------------------------------------- */

struct parse_state {
	struct rkfs_keyring *kr;
	const char *name;
	struct rkfs_error *err;
	/* reader */
	const char *text;
	size_t len, pos;
	unsigned line;
	unsigned long_line; /* first line longer than inih accepts */
	/* handler */
	char section[128];
	struct rkfs_generation *cur; /* current generation section */
	bool in_keyring;
	bool seen_keyring;
	bool failed;
	/* seen keys of the current section, to refuse duplicates */
	unsigned seen_mask;
};

static char *reader(char *str, int num, void *stream)
{
	struct parse_state *ps = stream;
	size_t n = 0;

	if (ps->pos >= ps->len)
		return NULL;
	ps->line++;
	while (ps->pos < ps->len) {
		char c = ps->text[ps->pos++];

		if (c == '\n')
			break;
		if (n + 1 < (size_t)num)
			str[n++] = c;
		else if (!ps->long_line)
			ps->long_line = ps->line;
	}
	str[n++] = '\n';
	if (n < (size_t)num)
		str[n] = '\0';
	else
		str[num - 1] = '\0';
	return str;
}

#define FAIL(ps, code, ...)                                                   \
	do {                                                                  \
		if (!(ps)->failed) {                                          \
			rkfs_error_set((ps)->err, (code), __VA_ARGS__);       \
			(ps)->failed = true;                                  \
		}                                                             \
		return 0;                                                     \
	} while (0)

static int parse_u32(uint32_t *out, const char *s)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_hex(uint8_t *out, size_t outlen, const char *s)
{
	size_t binlen = 0;

	if (strlen(s) != outlen * 2 ||
	    sodium_hex2bin(out, outlen, s, strlen(s), NULL, &binlen, NULL) != 0 ||
	    binlen != outlen)
		return -EINVAL;
	return 0;
}

static int start_generation(struct parse_state *ps, const char *section)
{
	struct rkfs_keyring *kr = ps->kr;
	struct rkfs_generation *g, *grown;
	uint32_t number;

	if (parse_u32(&number, section + strlen("generation ")) < 0)
		FAIL(ps, -EINVAL,
		     "%s:%u: [%s]: generation numbers are whole numbers from 1 "
		     "to 4294967295",
		     ps->name, ps->line, section);
	if (rkfs_keyring_find(kr, number))
		FAIL(ps, -EINVAL, "%s:%u: [generation %" PRIu32 "] is listed twice",
		     ps->name, ps->line, number);
	if (kr->count && kr->gens[kr->count - 1].number > number)
		FAIL(ps, -EINVAL,
		     "%s:%u: [generation %" PRIu32 "] comes after [generation %" PRIu32
		     "]: list generations in increasing order",
		     ps->name, ps->line, number, kr->gens[kr->count - 1].number);
	grown = realloc(kr->gens, (kr->count + 1) * sizeof(*kr->gens));
	if (grown == NULL)
		FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	kr->gens = grown;
	g = &kr->gens[kr->count++];
	memset(g, 0, sizeof(*g));
	g->number = number;
	g->state = RKFS_GEN_ENABLED;
	g->line = ps->line;
	ps->cur = g;
	return 1;
}

enum {
	SEEN_STATE = 1,
	SEEN_CREATED = 2,
	SEEN_SOURCE = 4,
	SEEN_CHECK = 8,
	SEEN_PRIMARY = 16,
};

static int set_source(struct parse_state *ps, struct rkfs_generation *g,
		      const char *name, const char *value)
{
	if (ps->seen_mask & SEEN_SOURCE)
		FAIL(ps, -EINVAL,
		     "%s:%u: generation %" PRIu32
		     ": give exactly one of key, key_file, key_command",
		     ps->name, ps->line, g->number);
	ps->seen_mask |= SEEN_SOURCE;
	if (*value == '\0')
		FAIL(ps, -EINVAL, "%s:%u: generation %" PRIu32 ": %s is empty",
		     ps->name, ps->line, g->number, name);
	if (strcmp(name, "key") == 0) {
		g->source = RKFS_KEY_INLINE;
		if (strncmp(value, "base64:", 7) != 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": key must be written as base64:<44 characters>",
			     ps->name, ps->line, g->number);
		g->key = sodium_malloc(RKFS_KEY_LEN);
		if (g->key == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
		if (rkfs_key_decode(g->key, value, strlen(value)) < 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": key is not base64 of exactly 32 bytes",
			     ps->name, ps->line, g->number);
	} else if (strcmp(name, "key_file") == 0) {
		g->source = RKFS_KEY_FILE;
		g->key_file = strdup(value);
		if (g->key_file == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	} else {
		g->source = RKFS_KEY_COMMAND;
		g->key_command = strdup(value);
		if (g->key_command == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	}
	return 1;
}

static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parse_state *ps = user;
	struct rkfs_generation *g;

	if (ps->failed)
		return 0;
	if (strcmp(section, ps->section) != 0) {
		/* inih calls us per key; a new section name means a new header.
		 * Empty sections are caught again after parsing. */
		snprintf(ps->section, sizeof(ps->section), "%s", section);
		ps->cur = NULL;
		ps->in_keyring = false;
		ps->seen_mask = 0;
		if (strcmp(section, "keyring") == 0) {
			if (ps->seen_keyring)
				FAIL(ps, -EINVAL, "%s:%u: [keyring] is listed twice",
				     ps->name, ps->line);
			ps->seen_keyring = true;
			ps->in_keyring = true;
		} else if (strncmp(section, "generation ", 11) == 0) {
			if (!start_generation(ps, section))
				return 0;
		} else if (section[0] == '\0') {
			FAIL(ps, -EINVAL,
			     "%s:%u: '%s' is outside any section", ps->name,
			     ps->line, name);
		} else {
			FAIL(ps, -EINVAL,
			     "%s:%u: unknown section [%s] (expected [keyring] or "
			     "[generation N])",
			     ps->name, ps->line, section);
		}
	}
	if (ps->in_keyring) {
		if (strcmp(name, "primary") == 0) {
			if (ps->seen_mask & SEEN_PRIMARY)
				FAIL(ps, -EINVAL, "%s:%u: primary is set twice",
				     ps->name, ps->line);
			ps->seen_mask |= SEEN_PRIMARY;
			if (parse_u32(&ps->kr->primary, value) < 0)
				FAIL(ps, -EINVAL,
				     "%s:%u: primary must be a generation number",
				     ps->name, ps->line);
			ps->kr->primary_explicit = true;
			return 1;
		}
		FAIL(ps, -EINVAL, "%s:%u: unknown key '%s' in [keyring]",
		     ps->name, ps->line, name);
	}
	g = ps->cur;
	if (g == NULL)
		return 0;
	if (strcmp(name, "state") == 0) {
		if (ps->seen_mask & SEEN_STATE)
			FAIL(ps, -EINVAL, "%s:%u: state is set twice", ps->name,
			     ps->line);
		ps->seen_mask |= SEEN_STATE;
		if (strcmp(value, "enabled") == 0)
			g->state = RKFS_GEN_ENABLED;
		else if (strcmp(value, "disabled") == 0)
			g->state = RKFS_GEN_DISABLED;
		else if (strcmp(value, "destroyed") == 0)
			g->state = RKFS_GEN_DESTROYED;
		else
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": state must be enabled, disabled or destroyed, "
			     "not '%s'",
			     ps->name, ps->line, g->number, value);
		return 1;
	}
	if (strcmp(name, "created") == 0) {
		if (ps->seen_mask & SEEN_CREATED)
			FAIL(ps, -EINVAL, "%s:%u: created is set twice",
			     ps->name, ps->line);
		ps->seen_mask |= SEEN_CREATED;
		g->created = strdup(value);
		if (g->created == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
		return 1;
	}
	if (strcmp(name, "key") == 0 || strcmp(name, "key_file") == 0 ||
	    strcmp(name, "key_command") == 0)
		return set_source(ps, g, name, value);
	if (strcmp(name, "check") == 0) {
		if (ps->seen_mask & SEEN_CHECK)
			FAIL(ps, -EINVAL, "%s:%u: check is set twice", ps->name,
			     ps->line);
		ps->seen_mask |= SEEN_CHECK;
		if (parse_hex(g->check, sizeof(g->check), value) < 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": check must be %d hex digits",
			     ps->name, ps->line, g->number, RKFS_CHECK_LEN * 2);
		g->has_check = true;
		return 1;
	}
	FAIL(ps, -EINVAL,
	     "%s:%u: generation %" PRIu32 ": unknown key '%s' (expected state, "
	     "created, key, key_file, key_command or check)",
	     ps->name, ps->line, g->number, name);
}

int rkfs_keyring_resolve_primary(struct rkfs_keyring *kr,
				 struct rkfs_error *err)
{
	const char *name = kr->path ? kr->path : "keyring";

	if (kr->primary_explicit) {
		struct rkfs_generation *g = rkfs_keyring_find(kr, kr->primary);

		if (g == NULL)
			return rkfs_error_set(err, -EINVAL,
					      "%s: primary = %" PRIu32
					      ", but there is no [generation %" PRIu32
					      "]",
					      name, kr->primary, kr->primary);
		if (g->state != RKFS_GEN_ENABLED)
			return rkfs_error_set(err, -EINVAL,
					      "%s:%u: primary generation %" PRIu32
					      " is %s; the primary must be enabled",
					      name, g->line, kr->primary,
					      rkfs_gen_state_name(g->state));
		return 0;
	}
	kr->primary = 0;
	for (size_t i = kr->count; i-- > 0;)
		if (kr->gens[i].state == RKFS_GEN_ENABLED) {
			kr->primary = kr->gens[i].number;
			return 0;
		}
	return rkfs_error_set(err, -EINVAL,
			      "%s: no enabled generation to encrypt with", name);
}

static int validate(struct rkfs_keyring *kr, const char *name,
		    const char *base_dir, unsigned flags, struct rkfs_error *err)
{
	int ret;

	for (size_t i = 0; i < kr->count; i++) {
		struct rkfs_generation *g = &kr->gens[i];

		if (g->state == RKFS_GEN_DESTROYED) {
			if (g->source != RKFS_KEY_NONE)
				return rkfs_error_set(
					err, -EINVAL,
					"%s:%u: generation %" PRIu32
					" is destroyed but still names key "
					"material; remove it",
					name, g->line, g->number);
			continue;
		}
		if (g->source == RKFS_KEY_NONE)
			return rkfs_error_set(err, -EINVAL,
					      "%s:%u: generation %" PRIu32
					      " has no key, key_file or "
					      "key_command",
					      name, g->line, g->number);
		if (g->state == RKFS_GEN_DISABLED && g->source != RKFS_KEY_INLINE)
			continue;
		if ((flags & RKFS_KR_LOAD_KEYS) && g->state == RKFS_GEN_ENABLED) {
			ret = rkfs_keyring_load_key(g, name, base_dir, err);
			if (ret < 0)
				return ret;
		}
		if (g->key && g->has_check) {
			uint8_t cv[RKFS_CHECK_LEN];

			rkfs_crypt_check_value(cv, g->key);
			if (sodium_memcmp(cv, g->check, sizeof(cv)) != 0)
				return rkfs_error_set(
					err, -EKEYREJECTED,
					"%s:%u: generation %" PRIu32
					": the key does not match its check "
					"value; this is not the key that was "
					"recorded for this generation",
					name, g->line, g->number);
		}
	}
	if (kr->count == 0) {
		if (flags & RKFS_KR_ALLOW_EMPTY)
			return 0;
		return rkfs_error_set(err, -EINVAL,
				      "%s: no [generation N] sections", name);
	}
	return rkfs_keyring_resolve_primary(kr, err);
}

int rkfs_keyring_parse(struct rkfs_keyring **out, const char *text,
		       size_t len, const char *name, const char *base_dir,
		       unsigned flags, struct rkfs_error *err)
{
	struct parse_state ps = { 0 };
	struct rkfs_keyring *kr;
	int line, ret;

	*out = NULL;
	kr = rkfs_keyring_new();
	if (kr == NULL)
		return -ENOMEM;
	ps.kr = kr;
	ps.name = name;
	ps.err = err;
	ps.text = text;
	ps.len = len;
	if (memchr(text, '\0', len)) {
		ret = rkfs_error_set(err, -EINVAL, "%s: holds a NUL byte; not a "
						   "keyring", name);
		goto fail;
	}
	line = ini_parse_stream(reader, &ps, handler, &ps);
	rkfs_wipe_stack();
	if (ps.long_line && (line <= 0 || (unsigned)line >= ps.long_line)) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%u: line is longer than %d characters",
				     name, ps.long_line, INI_MAX_LINE - 2);
		goto fail;
	}
	if (ps.failed) {
		ret = -EINVAL;
		if (err && strstr(err->msg, "out of memory"))
			ret = -ENOMEM;
		goto fail;
	}
	if (line != 0) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%d: syntax error (expected [section] "
				     "or name = value)",
				     name, line);
		goto fail;
	}
	ret = validate(kr, name, base_dir, flags, err);
	if (ret < 0)
		goto fail;
	*out = kr;
	return 0;
fail:
	rkfs_keyring_free(kr);
	return ret;
}

int rkfs_keyring_load(struct rkfs_keyring **out, const char *path,
		      unsigned flags, struct rkfs_error *err)
{
	struct stat st;
	char *text = NULL, *dir = NULL, *base = NULL;
	size_t len;
	int ret;

	*out = NULL;
	if (stat(path, &st) < 0)
		return rkfs_error_set(err, -errno, "%s: %s", path,
				      strerror(errno));
	if (!(flags & RKFS_KR_NO_MODE_CHECK) && (st.st_mode & 077))
		return rkfs_error_set(err, -EPERM,
				      "%s: keyring is readable or writable by "
				      "group or others (mode %04o); run: chmod "
				      "600 %s",
				      path, (unsigned)(st.st_mode & 07777), path);
	ret = rkfs_read_small_file(&text, &len, AT_FDCWD, path,
				   KEYRING_MAX_SIZE, true);
	if (ret < 0)
		return rkfs_error_set(err, ret, "%s: %s", path, strerror(-ret));
	ret = rkfs_path_split(&dir, &base, path);
	if (ret < 0)
		goto out;
	ret = rkfs_keyring_parse(out, text, len, path, dir, flags, err);
	if (ret == 0) {
		(*out)->path = strdup(path);
		if ((*out)->path == NULL) {
			rkfs_keyring_free(*out);
			*out = NULL;
			ret = -ENOMEM;
		}
	}
out:
	sodium_free(text);
	free(dir);
	free(base);
	return ret;
}

int rkfs_keyring_append(struct rkfs_keyring *kr, struct rkfs_generation *g,
			struct rkfs_error *err)
{
	struct rkfs_generation *grown;

	if (g->number == 0 || g->number <= rkfs_keyring_max_generation(kr))
		return rkfs_error_set(err, -EINVAL,
				      "generation %" PRIu32
				      " is not above the highest existing "
				      "generation %" PRIu32
				      "; numbers only grow",
				      g->number, rkfs_keyring_max_generation(kr));
	grown = realloc(kr->gens, (kr->count + 1) * sizeof(*kr->gens));
	if (grown == NULL)
		return -ENOMEM;
	kr->gens = grown;
	kr->gens[kr->count++] = *g;
	memset(g, 0, sizeof(*g));
	return 0;
}

/* ---- writing ----------------------------------------------------------- */

struct sbuf {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = true;
			return;
		}
		if ((size_t)n < sb->cap - sb->len) {
			sb->len += (size_t)n;
			return;
		}
		size_t ncap = (sb->cap + (size_t)n + 1) * 2;
		char *nbuf = sodium_malloc(ncap);

		if (nbuf == NULL) {
			sb->oom = true;
			return;
		}
		memcpy(nbuf, sb->buf, sb->len);
		sodium_free(sb->buf);
		sb->buf = nbuf;
		sb->cap = ncap;
	}
}

int rkfs_keyring_format(char **text, size_t *len,
			const struct rkfs_keyring *kr)
{
	struct sbuf sb = { 0 };
	char keytext[80];

	*text = NULL;
	*len = 0;
	sb.cap = 1024;
	sb.buf = sodium_malloc(sb.cap);
	if (sb.buf == NULL)
		return -ENOMEM;
	sb_printf(&sb,
		  "# rekeyfs keyring: secret, keep at mode 0600.\n"
		  "# Managed by rekeyfs-key; edits by hand are fine but "
		  "comments are not kept.\n\n"
		  "[keyring]\n");
	if (kr->primary_explicit)
		sb_printf(&sb, "primary = %" PRIu32 "\n", kr->primary);
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];

		sb_printf(&sb, "\n[generation %" PRIu32 "]\nstate = %s\n",
			  g->number, rkfs_gen_state_name(g->state));
		if (g->created)
			sb_printf(&sb, "created = %s\n", g->created);
		switch (g->source) {
		case RKFS_KEY_INLINE:
			if (g->key == NULL) {
				sodium_free(sb.buf);
				return -ENOKEY;
			}
			rkfs_key_encode(keytext, sizeof(keytext), g->key);
			sb_printf(&sb, "key = %s\n", keytext);
			sodium_memzero(keytext, sizeof(keytext));
			break;
		case RKFS_KEY_FILE:
			sb_printf(&sb, "key_file = %s\n", g->key_file);
			break;
		case RKFS_KEY_COMMAND:
			sb_printf(&sb, "key_command = %s\n", g->key_command);
			break;
		case RKFS_KEY_NONE:
			break;
		}
		if (g->has_check) {
			char hex[RKFS_CHECK_LEN * 2 + 1];

			sodium_bin2hex(hex, sizeof(hex), g->check, RKFS_CHECK_LEN);
			sb_printf(&sb, "check = %s\n", hex);
		}
	}
	if (sb.oom) {
		sodium_free(sb.buf);
		return -ENOMEM;
	}
	*text = sb.buf;
	*len = sb.len;
	return 0;
}

int rkfs_keyring_save(const struct rkfs_keyring *kr, const char *path,
		      struct rkfs_error *err)
{
	char *text, *dir, *base;
	size_t len;
	int ret, dirfd;

	ret = rkfs_keyring_format(&text, &len, kr);
	if (ret < 0)
		return rkfs_error_set(err, ret, "%s: cannot format keyring: %s",
				      path, strerror(-ret));
	ret = rkfs_path_split(&dir, &base, path);
	if (ret < 0)
		goto out_text;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = rkfs_error_set(err, -errno, "%s: %s", dir, strerror(errno));
		goto out_path;
	}
	ret = rkfs_write_atomic(dirfd, base, text, len, 0600, err);
	close(dirfd);
out_path:
	free(dir);
	free(base);
out_text:
	sodium_free(text);
	return ret;
}
