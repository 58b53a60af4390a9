#include "rekeyfs/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static void default_sink(int level, const char *msg)
{
	(void)level;
	fprintf(stderr, "rekeyfs: %s\n", msg);
}

static rkfs_log_fn log_sink = default_sink;
static int log_level = LOG_INFO;

int rkfs_error_set(struct rkfs_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err->msg[0] != '\0')
		return code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void rkfs_error_clear(struct rkfs_error *err)
{
	if (err)
		err->msg[0] = '\0';
}

void rkfs_log_set_sink(rkfs_log_fn fn)
{
	log_sink = fn ? fn : default_sink;
}

void rkfs_log_set_level(int max_level)
{
	log_level = max_level;
}

void rkfs_log(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int saved = errno;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_sink(level, buf);
	errno = saved;
}
