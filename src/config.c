#include "rekeyfs/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "rekeyfs/fsio.h"

#define CONFIG_MAX_SIZE (64 * 1024)

void rkfs_config_free(struct rkfs_config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->backing);
	free(c->mountpoint);
	free(c->keyring);
	free(c->options);
	free(c->passphrase_file);
	free(c->passphrase_command);
	free(c);
}

struct cfg_parse {
	struct rkfs_config *c;
	const char *dir;
	struct rkfs_error *err;
	const char *text;
	size_t len, pos;
	unsigned line;
	int code;
};

static char *cfg_reader(char *str, int num, void *stream)
{
	struct cfg_parse *cp = stream;
	size_t n = 0;

	if (cp->pos >= cp->len)
		return NULL;
	cp->line++;
	while (cp->pos < cp->len) {
		char ch = cp->text[cp->pos++];

		if (ch == '\n')
			break;
		if (n + 2 < (size_t)num)
			str[n++] = ch;
		else if (!cp->code)
			cp->code = rkfs_error_set(cp->err, -EINVAL,
						  "%s:%u: line is too long",
						  cp->c->path, cp->line);
	}
	str[n++] = '\n';
	str[n] = '\0';
	return str;
}

static char *abspath(const char *dir, const char *value)
{
	char *out;

	if (value[0] == '/' || dir == NULL)
		return strdup(value);
	if (asprintf(&out, "%s/%s", dir, value) < 0)
		return NULL;
	return out;
}

static int cfg_handler(void *user, const char *section, const char *name,
		       const char *value)
{
	struct cfg_parse *cp = user;
	struct {
		const char *name;
		char **slot;
		bool path;
	} keys[] = {
		{ "backing", &cp->c->backing, true },
		{ "mountpoint", &cp->c->mountpoint, true },
		{ "keyring", &cp->c->keyring, true },
		{ "options", &cp->c->options, false },
		{ "passphrase_file", &cp->c->passphrase_file, true },
		{ "passphrase_command", &cp->c->passphrase_command, false },
	};

	if (cp->code)
		return 0;
	if (strcmp(section, "mount") != 0) {
		cp->code = rkfs_error_set(cp->err, -EINVAL,
					  "%s:%u: unknown section [%s] (expected "
					  "[mount])",
					  cp->c->path, cp->line, section);
		return 0;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(name, keys[i].name) != 0)
			continue;
		if (*keys[i].slot) {
			cp->code = rkfs_error_set(cp->err, -EINVAL,
						  "%s:%u: %s is set twice",
						  cp->c->path, cp->line, name);
			return 0;
		}
		if (*value == '\0') {
			cp->code = rkfs_error_set(cp->err, -EINVAL,
						  "%s:%u: %s is empty",
						  cp->c->path, cp->line, name);
			return 0;
		}
		*keys[i].slot = keys[i].path ? abspath(cp->dir, value)
					     : strdup(value);
		if (*keys[i].slot == NULL)
			cp->code = -ENOMEM;
		return cp->code == 0;
	}
	cp->code = rkfs_error_set(cp->err, -EINVAL,
				  "%s:%u: unknown key '%s' in [mount] (expected "
				  "backing, mountpoint, keyring, options, "
				  "passphrase_file or passphrase_command)",
				  cp->c->path, cp->line, name);
	return 0;
}

int rkfs_config_parse(struct rkfs_config **out, const char *text,
		      size_t len, const char *name, const char *dir,
		      struct rkfs_error *err)
{
	struct cfg_parse cp = { .err = err, .dir = dir, .text = text,
				.len = len };
	int ret, line;

	*out = NULL;
	cp.c = calloc(1, sizeof(*cp.c));
	if (cp.c == NULL || (cp.c->path = strdup(name)) == NULL) {
		rkfs_config_free(cp.c);
		return -ENOMEM;
	}
	line = ini_parse_stream(cfg_reader, &cp, cfg_handler, &cp);
	if (cp.code) {
		ret = cp.code;
	} else if (line != 0) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%d: syntax error (expected [mount] or "
				     "name = value)",
				     name, line);
	} else {
		*out = cp.c;
		return 0;
	}
	rkfs_config_free(cp.c);
	return ret;
}

int rkfs_config_load(struct rkfs_config **out, const char *path,
		     struct rkfs_error *err)
{
	char *text = NULL, *dir = NULL, *base = NULL;
	size_t len;
	int ret;

	*out = NULL;
	/* It names the keyring and may name a command run as this user. */
	ret = rkfs_secret_read(&text, &len, path, CONFIG_MAX_SIZE, false, 0,
			       "config", NULL, err);
	if (ret < 0)
		return ret;
	if (rkfs_path_split(&dir, &base, path) < 0)
		ret = -ENOMEM;
	else
		ret = rkfs_config_parse(out, text, len, path, dir, err);
	free(text);
	free(dir);
	free(base);
	return ret;
}
