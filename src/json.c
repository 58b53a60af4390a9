#include "rekeyfs/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values above U+10FFFF are invalid. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

int rkfs_json_put_string(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + len;
	int bad = 0;

	if (putc('"', f) == EOF)
		return -EIO;
	while (p < end) {
		size_t n = utf8_len(p, (size_t)(end - p));

		if (n == 0) {
			bad |= fprintf(f, "\\udc%02x", *p) < 0;
			p++;
		} else if (*p == '"' || *p == '\\') {
			bad |= putc('\\', f) == EOF || putc(*p, f) == EOF;
			p++;
		} else if (*p == '\n') {
			bad |= fputs("\\n", f) == EOF;
			p++;
		} else if (*p == '\t') {
			bad |= fputs("\\t", f) == EOF;
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			bad |= fprintf(f, "\\u%04x", *p) < 0;
			p++;
		} else if (n == 3 && p[0] == 0xe2 && p[1] == 0x80 &&
			   (p[2] == 0xa8 || p[2] == 0xa9)) {
			bad |= fprintf(f, "\\u%04x", 0x2000 | (p[2] - 0x80)) < 0;
			p += 3;
		} else {
			bad |= fwrite(p, 1, n, f) != n;
			p += n;
		}
	}
	bad |= putc('"', f) == EOF;
	return bad ? -EIO : 0;
}

/* Comma and key before a value at the current level. */
static void member(struct rkfs_json *j, const char *key)
{
	if (j->depth > 0) {
		if (!j->first[j->depth - 1] && putc(',', j->f) == EOF)
			j->failed = true;
		j->first[j->depth - 1] = false;
	}
	if (key) {
		if (rkfs_json_put_string(j->f, key, strlen(key)) < 0 ||
		    putc(':', j->f) == EOF)
			j->failed = true;
	}
}

static void open_level(struct rkfs_json *j, const char *key, char c)
{
	member(j, key);
	if (j->depth >= RKFS_JSON_MAX_DEPTH) {
		j->failed = true;
		return;
	}
	if (putc(c, j->f) == EOF)
		j->failed = true;
	j->first[j->depth++] = true;
}

static void close_level(struct rkfs_json *j, char c)
{
	if (j->depth == 0) {
		j->failed = true;
		return;
	}
	j->depth--;
	if (putc(c, j->f) == EOF)
		j->failed = true;
}

void rkfs_json_begin_document(struct rkfs_json *j, FILE *f)
{
	j->f = f;
	j->depth = 0;
	j->failed = false;
}

int rkfs_json_end_document(struct rkfs_json *j)
{
	if (putc('\n', j->f) == EOF || fflush(j->f) != 0)
		j->failed = true;
	return j->failed || j->depth != 0 ? -EIO : 0;
}

void rkfs_json_begin_object(struct rkfs_json *j, const char *key)
{
	open_level(j, key, '{');
}

void rkfs_json_end_object(struct rkfs_json *j)
{
	close_level(j, '}');
}

void rkfs_json_begin_array(struct rkfs_json *j, const char *key)
{
	open_level(j, key, '[');
}

void rkfs_json_end_array(struct rkfs_json *j)
{
	close_level(j, ']');
}

void rkfs_json_string(struct rkfs_json *j, const char *key, const char *s)
{
	member(j, key);
	if (s == NULL) {
		if (fputs("null", j->f) == EOF)
			j->failed = true;
	} else if (rkfs_json_put_string(j->f, s, strlen(s)) < 0) {
		j->failed = true;
	}
}

void rkfs_json_uint(struct rkfs_json *j, const char *key, uint64_t v)
{
	member(j, key);
	if (fprintf(j->f, "%" PRIu64, v) < 0)
		j->failed = true;
}

void rkfs_json_int(struct rkfs_json *j, const char *key, int64_t v)
{
	member(j, key);
	if (fprintf(j->f, "%" PRId64, v) < 0)
		j->failed = true;
}

void rkfs_json_bool(struct rkfs_json *j, const char *key, bool v)
{
	member(j, key);
	if (fputs(v ? "true" : "false", j->f) == EOF)
		j->failed = true;
}

void rkfs_json_null(struct rkfs_json *j, const char *key)
{
	member(j, key);
	if (fputs("null", j->f) == EOF)
		j->failed = true;
}

void rkfs_json_seconds(struct rkfs_json *j, const char *key, double v)
{
	member(j, key);
	/* JSON has no NaN or infinity. */
	if (!isfinite(v))
		v = 0;
	if (fprintf(j->f, "%.3f", v) < 0)
		j->failed = true;
}
