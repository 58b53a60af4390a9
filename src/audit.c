#include "rekeyfs/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "rekeyfs/fsio.h"

struct rkfs_audit {
	char *prog;
	char *buf;
	size_t len, cap;
	bool oom;
};

static void put(struct rkfs_audit *a, const char *s, size_t n)
{
	if (a->oom)
		return;
	if (a->len + n + 1 > a->cap) {
		size_t cap = (a->cap + n + 1) * 2;
		char *b = realloc(a->buf, cap);

		if (b == NULL) {
			a->oom = true;
			return;
		}
		a->buf = b;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, s, n);
	a->len += n;
	a->buf[a->len] = '\0';
}

static void puts_(struct rkfs_audit *a, const char *s)
{
	put(a, s, strlen(s));
}

static bool plain(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\' ||
		    c == '=')
			return false;
	}
	return true;
}

static void quoted(struct rkfs_audit *a, const char *s)
{
	char x[8];

	puts_(a, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			x[0] = '\\';
			x[1] = (char)c;
			put(a, x, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(x, sizeof(x), "\\x%02x", c);
			puts_(a, x);
		} else {
			put(a, s, 1);
		}
	}
	puts_(a, "\"");
}

struct rkfs_audit *rkfs_audit_begin(const char *prog, const char *event)
{
	struct rkfs_audit *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->prog = strdup(prog);
	if (a->prog == NULL) {
		free(a);
		return NULL;
	}
	puts_(a, event);
	return a;
}

void rkfs_audit_str(struct rkfs_audit *a, const char *key, const char *value)
{
	if (a == NULL || value == NULL)
		return;
	puts_(a, " ");
	puts_(a, key);
	puts_(a, "=");
	if (plain(value))
		puts_(a, value);
	else
		quoted(a, value);
}

void rkfs_audit_num(struct rkfs_audit *a, const char *key, uint64_t value)
{
	char n[24];

	snprintf(n, sizeof(n), "%" PRIu64, value);
	rkfs_audit_str(a, key, n);
}

void rkfs_audit_counts(struct rkfs_audit *a, const char *key,
		       const uint32_t *generation, const uint64_t *count,
		       size_t n)
{
	char item[48];

	if (a == NULL)
		return;
	puts_(a, " ");
	puts_(a, key);
	puts_(a, "=");
	if (n == 0)
		puts_(a, "none");
	for (size_t i = 0; i < n; i++) {
		snprintf(item, sizeof(item), "%s%" PRIu32 ":%" PRIu64,
			 i ? "," : "", generation[i], count[i]);
		puts_(a, item);
	}
}

static int append_file(const char *path, const char *prog, const char *line)
{
	char *text;
	int fd, len, ret = 0;

	len = asprintf(&text, "%s: %s\n", prog, line);
	if (len < 0)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0) {
		ret = -errno;
	} else {
		/* One write per line: concurrent writers do not interleave. */
		if (rkfs_write_all(fd, text, (size_t)len) < 0)
			ret = -EIO;
		if (close(fd) < 0 && ret == 0)
			ret = -errno;
	}
	free(text);
	return ret;
}

int rkfs_audit_end(struct rkfs_audit *a)
{
	const char *file = getenv("REKEYFS_AUDIT_LOG");
	const char *sudo = getenv("SUDO_USER");
	int ret = 0;

	if (a == NULL)
		return -ENOMEM;
	rkfs_audit_num(a, "uid", (uint64_t)getuid());
	if (sudo && *sudo)
		rkfs_audit_str(a, "sudo_user", sudo);
	if (a->oom) {
		ret = -ENOMEM;
		goto out;
	}
	openlog(a->prog, LOG_PID, LOG_AUTHPRIV);
	syslog(LOG_NOTICE, "%s", a->buf);
	closelog();
	if (file && *file)
		ret = append_file(file, a->prog, a->buf);
out:
	free(a->prog);
	free(a->buf);
	free(a);
	return ret;
}
