/*
 * Minimal unit-test harness: CHECK() records a failure and carries on;
 * tests exit 0 (pass), 1 (fail), 77 (skip) or 99 (setup error), and print
 * a closing "N passed, N failed" line.
 */
#ifndef RKFS_TEST_CHECK_H
#define RKFS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int check_passed, check_failed;

#define CHECK(expr)                                                           \
	do {                                                                  \
		if (expr) {                                                   \
			check_passed++;                                       \
		} else {                                                      \
			check_failed++;                                       \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,  \
				__LINE__, #expr);                             \
		}                                                             \
	} while (0)

#define CHECK_EQ(a, b)                                                        \
	do {                                                                  \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
		if (check_a_ == check_b_) {                                   \
			check_passed++;                                       \
		} else {                                                      \
			check_failed++;                                       \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s "     \
					"(%lld != %lld)\n",                   \
				__FILE__, __LINE__, #a, #b, check_a_, check_b_); \
		}                                                             \
	} while (0)

#define SETUP(expr)                                                           \
	do {                                                                  \
		if (!(expr)) {                                                \
			fprintf(stderr, "%s:%d: setup failed: %s\n", __FILE__, \
				__LINE__, #expr);                             \
			exit(99);                                             \
		}                                                             \
	} while (0)

/* A read-write temp file, already unlinked. */
static inline int tmpfile_fd(void)
{
	char path[] = "/tmp/rkfs-unit-XXXXXX";
	int fd = mkstemp(path);

	SETUP(fd >= 0);
	unlink(path);
	return fd;
}

/* The size of the file behind fd. */
static inline off_t backing_size(int fd)
{
	struct stat st;

	SETUP(fstat(fd, &st) == 0);
	return st.st_size;
}

static inline int check_report(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
