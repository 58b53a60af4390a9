/*
 * Error messages and logging shared by the core, the daemon and the tools.
 *
 * Core functions return 0 or -errno.  Those that can fail for a reason a
 * person must read (a keyring parse error, a wrong key) also fill a
 * struct rkfs_error with "file:line: what is wrong".  Messages never hold
 * key material.
 */
#ifndef RKFS_ERROR_H
#define RKFS_ERROR_H

#include <stdarg.h>

#define RKFS_ERROR_MAX 1024

struct rkfs_error {
	char msg[RKFS_ERROR_MAX];
};

/* Set err->msg (if err is not NULL and no message was set yet) and return
 * code unchanged, so that "return rkfs_error_set(err, -EINVAL, ...)" works. */
int rkfs_error_set(struct rkfs_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Clear a message. */
void rkfs_error_clear(struct rkfs_error *err);

/*
 * Log sink.  Levels are syslog's (LOG_ERR, LOG_WARNING, LOG_INFO,
 * LOG_DEBUG).  The default sink writes "rekeyfs: message" to stderr; the
 * daemon installs one that also goes to syslog once it has daemonised.
 */
typedef void (*rkfs_log_fn)(int level, const char *msg);
void rkfs_log_set_sink(rkfs_log_fn fn);
void rkfs_log_set_level(int max_level);
void rkfs_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* RKFS_ERROR_H */
