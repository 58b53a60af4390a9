/*
 * The one JSON writer of the tools: rekeyfs-key and rekeyfs-rekey print
 * every --json answer through it, so both escape text the same way.
 *
 * Output is compact (no white space) and a document ends with a newline.
 * Strings are written as UTF-8; '"', '\\' and control characters are
 * escaped, and so are DEL and U+2028/U+2029 (not all JSON readers accept
 * them raw).  File names on Linux are bytes, not text: a byte that is not
 * part of a valid UTF-8 sequence is written as the escape \udcXX (XX its
 * value), the lone low surrogate Python's "surrogateescape" uses (PEP 383),
 * so json.loads() followed by os.fsencode() gives the name's bytes back.
 * Valid UTF-8, including a surrogate that was encoded on purpose, never
 * takes that form: encoded surrogates (ED A0..BF xx) are themselves
 * invalid UTF-8 and escaped byte by byte.
 *
 * A writer tracks nesting and commas; the caller only says what comes
 * next.  Members of an object take a key; array elements and the top level
 * pass key NULL.  Write errors are remembered and reported by
 * rkfs_json_end_document().
 */
#ifndef RKFS_JSON_H
#define RKFS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RKFS_JSON_MAX_DEPTH 16

struct rkfs_json {
	FILE *f;
	int depth;
	bool first[RKFS_JSON_MAX_DEPTH]; /* nothing written at this level yet */
	bool failed;                     /* too deep or a write failed */
};

/* Start a document on f. */
void rkfs_json_begin_document(struct rkfs_json *j, FILE *f)
	__attribute__((nonnull));

/*
 * End the document: a newline and a flush.  Returns 0, or -EIO when a
 * write failed or the nesting was wrong (the output is then not valid).
 */
int rkfs_json_end_document(struct rkfs_json *j) __attribute__((nonnull));

/* Open and close an object or an array (key: see above). */
void rkfs_json_begin_object(struct rkfs_json *j, const char *key)
	__attribute__((nonnull(1)));
void rkfs_json_end_object(struct rkfs_json *j) __attribute__((nonnull));
void rkfs_json_begin_array(struct rkfs_json *j, const char *key)
	__attribute__((nonnull(1)));
void rkfs_json_end_array(struct rkfs_json *j) __attribute__((nonnull));

/* Scalars.  A NULL string is written as null. */
void rkfs_json_string(struct rkfs_json *j, const char *key, const char *s)
	__attribute__((nonnull(1)));
void rkfs_json_uint(struct rkfs_json *j, const char *key, uint64_t v)
	__attribute__((nonnull(1)));
void rkfs_json_int(struct rkfs_json *j, const char *key, int64_t v)
	__attribute__((nonnull(1)));
void rkfs_json_bool(struct rkfs_json *j, const char *key, bool v)
	__attribute__((nonnull(1)));
void rkfs_json_null(struct rkfs_json *j, const char *key)
	__attribute__((nonnull(1)));
/* A number with three decimals (durations in seconds). */
void rkfs_json_seconds(struct rkfs_json *j, const char *key, double v)
	__attribute__((nonnull(1)));

/*
 * The string escaping alone: s (len bytes, may hold any byte but is
 * read up to len) as a quoted JSON string on f.  Returns 0 or -EIO.
 */
int rkfs_json_put_string(FILE *f, const char *s, size_t len)
	__attribute__((nonnull));

#endif /* RKFS_JSON_H */
