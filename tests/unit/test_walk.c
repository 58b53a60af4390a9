/*
 * The rekey engine's tree walk (src/walk.c): every regular file once, with
 * its first bytes; nothing else opened or followed; reserved names handed
 * over; the same with d_type ignored (filesystems without it); a large
 * directory with many subdirectories and few threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "../../src/walk_i.h"

struct seen {
	pthread_mutex_t mu;
	char **paths;
	size_t n, cap;
	size_t reserved, bad_hdr, callbacks;
};

static void add(struct seen *s, const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		exit(99);
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->paths = realloc(s->paths, s->cap * sizeof(*s->paths));
		SETUP(s->paths != NULL);
	}
	s->paths[s->n++] = p;
}

static int on_files(void *arg, const struct rkfs_walk_dir *d,
		    struct rkfs_walk_file *v, size_t n)
{
	struct seen *s = arg;

	pthread_mutex_lock(&s->mu);
	s->callbacks++;
	for (size_t i = 0; i < n; i++) {
		add(s, d->path, v[i].name);
		/* every file starts with its own name (or is empty) */
		if (v[i].size == 0 ? v[i].nhdr != 0
				   : v[i].nhdr < 1 ||
					 strncmp((char *)v[i].hdr, v[i].name,
						 (size_t)v[i].nhdr) != 0)
			s->bad_hdr++;
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int on_reserved(void *arg, const struct rkfs_walk_dir *d,
		       const char *name)
{
	struct seen *s = arg;

	pthread_mutex_lock(&s->mu);
	s->reserved++;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void put(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	SETUP(fd >= 0);
	SETUP(write(fd, name, strlen(name)) == (ssize_t)strlen(name));
	close(fd);
}

static void walk(int root, bool no_dtype, unsigned threads, size_t group,
		 struct seen *s)
{
	struct rkfs_walk_ops o = {.files = on_files,
				  .reserved = on_reserved,
				  .arg = s,
				  .hdr_len = RKFS_WALK_HDR_MAX,
				  .threads = threads,
				  .group = group,
				  .ignore_dtype = no_dtype};

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	CHECK_EQ(rkfs_walk(root, &o), 0);
	qsort(s->paths, s->n, sizeof(*s->paths), cmp);
}

static void release(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->paths[i]);
	free(s->paths);
	pthread_mutex_destroy(&s->mu);
}

/* A small tree with one of everything. */
static void test_kinds(const char *top)
{
	static const char *const want[] = {"a", "d/b", "d/e/c", "d/e/link2",
					   "empty"};
	/* sorted, "b-again" takes the place of "d/b" when found first */
	char outside[512];
	struct seen s;
	int root, d, e;

	snprintf(outside, sizeof(outside), "%s/outside", top);
	SETUP(mkdir(outside, 0755) == 0);
	put(open(outside, O_RDONLY | O_DIRECTORY), "secret");
	snprintf(outside, sizeof(outside), "%s/tree", top);
	SETUP(mkdir(outside, 0755) == 0);
	root = open(outside, O_RDONLY | O_DIRECTORY);
	SETUP(root >= 0);
	put(root, "a");
	SETUP(close(openat(root, "empty", O_CREAT | O_WRONLY, 0644)) == 0);
	SETUP(mkdirat(root, "d", 0755) == 0);
	d = openat(root, "d", O_RDONLY | O_DIRECTORY);
	put(d, "b");
	SETUP(mkdirat(d, "e", 0755) == 0);
	e = openat(d, "e", O_RDONLY | O_DIRECTORY);
	put(e, "c");
	/* a hard link: one inode, reported once under one of its names */
	SETUP(linkat(e, "c", e, "link2", 0) == 0);
	SETUP(unlinkat(e, "c", 0) == 0);
	put(e, "c");
	SETUP(linkat(d, "b", root, "b-again", 0) == 0);
	/* never opened nor followed */
	SETUP(symlinkat("../outside", root, "dirlink") == 0);
	SETUP(symlinkat("../outside/secret", root, "filelink") == 0);
	SETUP(mkfifoat(d, "fifo", 0644) == 0);
	put(root, ".rekeyfs-tmp.0011223344556677");
	put(e, ".rekeyfs-tmp.8899aabbccddeeff");
	for (int no_dtype = 0; no_dtype <= 1; no_dtype++) {
		walk(root, no_dtype, 0, 0, &s);
		/* b and b-again are one file: whichever name came first */
		CHECK_EQ(s.n, 5);
		for (size_t i = 0; i < s.n && i < 5; i++)
			CHECK(strcmp(s.paths[i], want[i]) == 0 ||
			      (i == 1 && strcmp(s.paths[i], "b-again") == 0 &&
			       strcmp(s.paths[0], "a") == 0));
		CHECK_EQ(s.reserved, 2);
		CHECK_EQ(s.bad_hdr, 1); /* link2 holds "c", not its name */
		release(&s);
	}
	close(e);
	close(d);
	close(root);
}

/* Many subdirectories and one large directory, with few threads. */
static void test_wide(const char *top)
{
	char path[512];
	struct seen s;
	int root, sub;

	snprintf(path, sizeof(path), "%s/wide", top);
	SETUP(mkdir(path, 0755) == 0);
	root = open(path, O_RDONLY | O_DIRECTORY);
	SETUP(root >= 0);
	for (int i = 0; i < 300; i++) {
		char name[32];

		snprintf(name, sizeof(name), "s%03d", i);
		SETUP(mkdirat(root, name, 0755) == 0);
		sub = openat(root, name, O_RDONLY | O_DIRECTORY);
		snprintf(name, sizeof(name), "f%03d", i);
		put(sub, name);
		close(sub);
	}
	SETUP(mkdirat(root, "big", 0755) == 0);
	sub = openat(root, "big", O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < 20000; i++) {
		char name[48];

		snprintf(name, sizeof(name), "file-with-a-longer-name-%05d", i);
		put(sub, name);
	}
	close(sub);
	for (unsigned threads = 1; threads <= 16; threads *= 4) {
		for (int no_dtype = 0; no_dtype <= 1; no_dtype++) {
			walk(root, no_dtype, threads, threads == 1 ? 7 : 0, &s);
			CHECK_EQ(s.n, 20300);
			CHECK_EQ(s.bad_hdr, 0);
			/* sorted, so a file reported twice sits twice in a row */
			for (size_t i = 1; i < s.n; i++)
				CHECK(strcmp(s.paths[i - 1], s.paths[i]) != 0);
			release(&s);
		}
	}
	close(root);
}

int main(void)
{
	char top[] = "/tmp/rkfs-test-walk.XXXXXX", cmd[600];

	SETUP(mkdtemp(top) != NULL);
	test_kinds(top);
	test_wide(top);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", top);
	return check_report("test_walk");
}
