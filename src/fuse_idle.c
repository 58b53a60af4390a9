/*
 * -o idle=DURATION: unmount after DURATION without use, as gocryptfs
 * -idle and CryFS --unmount-idle do.  Use is a request from the kernel
 * (counted as fuse_wire.c reads it; a stat or statfs of the mount's root
 * alone is not use) or a file held open, even one that sees no requests.
 *
 * The unmount is an ordinary umount2() (fusermount3 -u when not root),
 * never a lazy one: when something still uses the mount (an open file, a
 * working directory inside it) the kernel refuses with EBUSY, and the
 * timer starts over.  Once it succeeds, the session loop ends as after
 * any unmount.
 */
#include "fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "rekeyfs/error.h"

extern char **environ;

static bool idle_on;
static atomic_uint_fast64_t requests;
static uint64_t idle_ms;
static char *idle_mnt;
static int quit_pipe[2] = {-1, -1};
static pthread_t idle_thread;

void rkfs_idle_touch(uint32_t op, uint64_t nodeid)
{
	/* Set before the session threads start; read-only after. */
	if (!idle_on)
		return;
	/* Not use: what mountpoint(1), df and shell prompts do to the
	 * mount's root, and what the kernel sends by itself. */
	if ((op == FUSE_GETATTR && nodeid == FUSE_ROOT_ID) ||
	    op == FUSE_STATFS || op == FUSE_FORGET ||
	    op == FUSE_BATCH_FORGET || op == FUSE_INTERRUPT)
		return;
	atomic_fetch_add_explicit(&requests, 1, memory_order_relaxed);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool files_open(void)
{
	uint32_t *gens;
	size_t n = rkfs_nodes_open_generations(&gens);

	free(gens);
	return n > 0;
}

/* 0, -EBUSY (still in use: try again later) or -errno. */
static int unmount_now(void)
{
	static char prog[] = "fusermount3", u[] = "-u", q[] = "-q";
	char *argv[] = {prog, u, q, idle_mnt, NULL};
	int status;
	pid_t pid;

	if (geteuid() == 0)
		return umount2(idle_mnt, UMOUNT_NOFOLLOW) < 0 ? -errno : 0;
	if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -ENOENT;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

static void *idle_main(void *arg)
{
	struct pollfd pfd = {.fd = quit_pipe[0], .events = POLLIN};
	/* A few looks per period; the unmount comes at most a tick late. */
	int tick = (int)(idle_ms / 8 < 100 ? 100
		   : idle_ms / 8 > 10000 ? 10000 : idle_ms / 8);
	uint64_t seen = atomic_load(&requests), last = now_ms();

	(void)arg;
	for (;;) {
		uint64_t now, cur;
		int n = poll(&pfd, 1, tick), ret;

		if (n > 0)
			return NULL;
		if (n < 0 && errno != EINTR)
			return NULL;
		now = now_ms();
		cur = atomic_load(&requests);
		if (cur != seen) {
			seen = cur;
			last = now;
			continue;
		}
		if (now - last < idle_ms)
			continue;
		/* Walks the node table: once per idle period at most. */
		if (files_open()) {
			last = now;
			continue;
		}
		rkfs_log(LOG_INFO, "unused for %llu s: unmounting %s",
			 (unsigned long long)(now - last) / 1000, idle_mnt);
		ret = unmount_now();
		if (ret == 0)
			return NULL;
		rkfs_log(ret == -EBUSY ? LOG_INFO : LOG_WARNING,
			 "idle unmount of %s: %s; trying again later",
			 idle_mnt, ret == -EBUSY ? "still in use" : strerror(-ret));
		last = now_ms();
		seen = atomic_load(&requests);
	}
}

int rkfs_idle_start(const char *mnt, uint64_t ms)
{
	int ret;

	idle_mnt = strdup(mnt);
	if (idle_mnt == NULL)
		return -ENOMEM;
	if (pipe2(quit_pipe, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail;
	}
	idle_ms = ms;
	idle_on = true;
	ret = -pthread_create(&idle_thread, NULL, idle_main, NULL);
	if (ret == 0)
		return 0;
	idle_on = false;
	close(quit_pipe[0]);
	close(quit_pipe[1]);
	quit_pipe[0] = quit_pipe[1] = -1;
fail:
	free(idle_mnt);
	idle_mnt = NULL;
	return ret;
}

void rkfs_idle_stop(void)
{
	char c = 'q';

	if (idle_mnt == NULL)
		return;
	if (write(quit_pipe[1], &c, 1) < 0) {
		/* the thread has returned already */
	}
	pthread_join(idle_thread, NULL);
	close(quit_pipe[0]);
	close(quit_pipe[1]);
	quit_pipe[0] = quit_pipe[1] = -1;
	free(idle_mnt);
	idle_mnt = NULL;
}
