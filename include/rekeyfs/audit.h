/*
 * The audit trail of key events.
 *
 * Every change to a keyring (add, promote, disable, enable, destroy,
 * protect, unprotect, init) and every rekey run (start, and finish with
 * the file counts per generation before and after) is recorded as one
 * line: to syslog (facility LOG_AUTHPRIV, level LOG_NOTICE, ident the
 * program's name; the journal collects it), so an auditor can tell when a
 * key was introduced, when it became primary and when the last file
 * stopped using it.  Lines name the keyring by path and generations by
 * number; they never hold key material or a passphrase.
 *
 * Line format: "EVENT key=value key=value ...".  Values that are not
 * plain words (paths with spaces, control characters, quotes) are
 * double-quoted with '"' and '\\' backslash-escaped and control bytes as
 * \xNN, so one event is always one line.  Every line also carries
 * uid=UID (the real uid) and, when set, sudo_user=NAME.
 *
 * For tests, the environment variable REKEYFS_AUDIT_LOG=FILE makes every
 * event also be appended to FILE (created mode 0600), as "PROGRAM: LINE".
 */
#ifndef RKFS_AUDIT_H
#define RKFS_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct rkfs_audit; /* one event being built; internal */

/*
 * Start an event named event (a word such as "key-add") by program prog
 * (e.g. "rekeyfs-key").  Returns NULL only when out of memory, and every
 * other function accepts NULL, so callers need not check.
 */
struct rkfs_audit *rkfs_audit_begin(const char *prog, const char *event)
	__attribute__((nonnull));

/* Add key=value (value quoted as above when needed; NULL: skipped). */
void rkfs_audit_str(struct rkfs_audit *a, const char *key, const char *value)
	__attribute__((nonnull(2)));

/* Add key=number. */
void rkfs_audit_num(struct rkfs_audit *a, const char *key, uint64_t value)
	__attribute__((nonnull(2)));

/*
 * Add key=G:N,G:N,... from n pairs (generation[i], count[i]); "none" when
 * n is 0.
 */
void rkfs_audit_counts(struct rkfs_audit *a, const char *key,
		       const uint32_t *generation, const uint64_t *count,
		       size_t n) __attribute__((nonnull(2)));

/*
 * Record the event (syslog, and REKEYFS_AUDIT_LOG when set) and free it.
 * Returns 0, or -errno when the REKEYFS_AUDIT_LOG file could not be
 * written (syslog itself reports nothing).
 */
int rkfs_audit_end(struct rkfs_audit *a);

#endif /* RKFS_AUDIT_H */
