/*
 * LOCK_SH on backing directories around namespace changes (the daemon's
 * half of the online-rekey protocol: rekeyfs-rekey replaces a file only
 * while it holds LOCK_EX on the file's directory).
 *
 * Opening the directory, locking it and closing it again cost three
 * system calls and a path walk on every create, unlink, rename and link.
 * Instead a few directory fds stay open, keyed by their path below the
 * root.  The threads working in one directory share its fd: the first
 * takes LOCK_SH, the last one out drops it, so the lock is held exactly
 * while some thread is inside, as with an open description per thread.
 *
 * Only the mount renames and removes directories (rekeyfs-rekey renames
 * files only), and it tells us: rkfs_dirlock_forget() retires every
 * cached directory at or below a path that was renamed, replaced or
 * removed.  libfuse's path locking keeps requests below a directory
 * from running while that directory is renamed or removed, so no thread
 * is inside a retired directory by the time it is forgotten; a slot in
 * use is closed by its last user all the same.
 */
#include "fuse_rekeyfs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define SLOTS 16

struct slot {
	char *dir;	   /* below the root, "" for the root; NULL: free */
	size_t len;
	int fd;
	bool retired;	   /* dir no longer names this directory */
	unsigned users;	   /* threads that took the slot (table lock) */
	unsigned holders;  /* of them, inside LOCK_SH (slot lock) */
	uint64_t used;	   /* last taken, for eviction */
	pthread_mutex_t lock; /* serialises the flock transitions */
};

static struct slot slots[SLOTS];
static pthread_mutex_t table = PTHREAD_MUTEX_INITIALIZER;
static uint64_t clock_now;
static int rootfd = -1;

void rkfs_dirlock_init(int root)
{
	rootfd = root;
	for (int i = 0; i < SLOTS; i++) {
		slots[i].fd = -1;
		pthread_mutex_init(&slots[i].lock, NULL);
	}
}

int rkfs_flock_retry(int fd, int how)
{
	while (flock(fd, how) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static void slot_free(struct slot *s)
{
	close(s->fd);
	free(s->dir);
	s->dir = NULL;
	s->fd = -1;
	s->retired = false;
}

/* Table lock held. */
static struct slot *find(const char *dir, size_t len)
{
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];

		if (s->dir && !s->retired && s->len == len &&
		    strncmp(s->dir, dir, len) == 0)
			return s;
	}
	return NULL;
}

/* Table lock held: a free slot, or the least recently used idle one
 * emptied; NULL if every slot is in use. */
static struct slot *claim(void)
{
	struct slot *lru = NULL;

	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];

		if (s->dir == NULL)
			return s;
		if (s->users == 0 && (lru == NULL || s->used < lru->used))
			lru = s;
	}
	if (lru)
		slot_free(lru);
	return lru;
}

/* Table lock held. */
static struct slot *slot_of(int fd)
{
	for (int i = 0; i < SLOTS; i++) {
		if (slots[i].dir && slots[i].fd == fd && slots[i].users > 0)
			return &slots[i];
	}
	return NULL;
}

static void release(struct slot *s)
{
	pthread_mutex_lock(&table);
	if (--s->users == 0 && s->retired)
		slot_free(s);
	pthread_mutex_unlock(&table);
}

/* Take a slot for dir (opening the directory if no slot has it).
 * Returns the slot; or NULL with *fdp an fd of the caller's own (every
 * slot busy) or -errno. */
static struct slot *take(const char *dir, size_t len, int *fdp)
{
	struct slot *s;
	char *copy;
	int fd;

	*fdp = -1;
	pthread_mutex_lock(&table);
	s = find(dir, len);
	if (s)
		goto got;
	pthread_mutex_unlock(&table);

	/* Open outside the table lock: the backing filesystem may be slow. */
	copy = strndup(dir, len);
	if (copy == NULL) {
		*fdp = -ENOMEM;
		return NULL;
	}
	fd = openat(rootfd, len ? copy : ".",
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		*fdp = -errno;
		free(copy);
		return NULL;
	}
	pthread_mutex_lock(&table);
	s = find(dir, len); /* another thread may have opened it meanwhile */
	if (s) {
		close(fd);
		free(copy);
		goto got;
	}
	s = claim();
	if (s == NULL) {
		pthread_mutex_unlock(&table);
		free(copy);
		*fdp = fd;
		return NULL;
	}
	s->dir = copy;
	s->len = len;
	s->fd = fd;
got:
	s->users++;
	s->used = ++clock_now;
	pthread_mutex_unlock(&table);
	return s;
}

int rkfs_dirlock_get(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash && slash > path ? (size_t)(slash - path - 1) : 0;
	struct slot *s;
	int fd, ret = 0;

	s = take(path + 1, len, &fd);
	if (s == NULL) {
		if (fd < 0)
			return fd;
		ret = rkfs_flock_retry(fd, LOCK_SH);
		if (ret < 0) {
			close(fd);
			return ret;
		}
		return fd;
	}
	pthread_mutex_lock(&s->lock);
	if (s->holders == 0)
		ret = rkfs_flock_retry(s->fd, LOCK_SH);
	if (ret == 0)
		s->holders++;
	pthread_mutex_unlock(&s->lock);
	if (ret < 0) {
		release(s);
		return ret;
	}
	return s->fd;
}

void rkfs_dirlock_put(int fd)
{
	struct slot *s;

	if (fd < 0)
		return;
	pthread_mutex_lock(&table);
	s = slot_of(fd);
	pthread_mutex_unlock(&table);
	if (s == NULL) {
		close(fd); /* an uncached fd: closing it unlocks */
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (--s->holders == 0)
		(void)flock(s->fd, LOCK_UN);
	pthread_mutex_unlock(&s->lock);
	release(s);
}

void rkfs_dirlock_forget(const char *path)
{
	size_t len = strlen(path + 1);

	pthread_mutex_lock(&table);
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];

		if (s->dir == NULL || s->retired || s->len < len ||
		    strncmp(s->dir, path + 1, len) != 0 ||
		    (s->len > len && s->dir[len] != '/'))
			continue;
		if (s->users == 0)
			slot_free(s);
		else
			s->retired = true;
	}
	pthread_mutex_unlock(&table);
}

void rkfs_dirlock_clear(void)
{
	pthread_mutex_lock(&table);
	for (int i = 0; i < SLOTS; i++) {
		if (slots[i].dir && slots[i].users == 0)
			slot_free(&slots[i]);
	}
	pthread_mutex_unlock(&table);
}
