/*
 * The node table: one node per backing inode the kernel holds, keyed by
 * the backing (st_dev, st_ino), so hard links are one node and one kernel
 * inode.  A node keeps an O_PATH fd on its inode; every backing call the
 * daemon makes is relative to such an fd, on one name component, without
 * following symlinks, or goes through /proc/self/fd/N of the fd, which
 * names exactly that inode.  A user who swaps a backing file or directory
 * for a symlink between two requests therefore changes nothing the
 * daemon acts on: the fd still names the old inode, and new lookups open
 * the symlink itself (O_NOFOLLOW), never its target.
 *
 * Rekeyed files.  rekeyfs-rekey replaces a file with one link by renaming
 * a temp over its name.  The node's fd then pins the replaced inode (no
 * links left) and the kernel sends no LOOKUP while its entry is cached.
 * So each node remembers a (parent, name) it was last seen at, and a
 * regular file whose pinned inode has no links, and which was not removed
 * through the mount, is rebound to the file now at that name: on getattr,
 * open, metadata changes and on LOOKUP of that name (node_refresh()).  The
 * node keeps the inode number it showed (shown_ino), so open handles,
 * find -inum and hard-link detection in tar or rsync see no change while
 * the mount stays up.  A rebound node's old number is free on the backing
 * filesystem and may be reused by a new file; such a file gets a number
 * from a range ext4 never hands out (RKFS_SYNTH_INO) for as long as its
 * node lives, so two live nodes never show the same number.  After a
 * remount every file shows its backing inode number again.  Multiply-
 * linked files are rewritten in place by the tool and keep their inode.
 *
 * The fd budget.  The kernel decides how many nodes it holds (every
 * cached dentry keeps one), and each costs the daemon an fd.  A tree
 * walked or written through the mount can hold more than the fd limit
 * allows long before memory pressure makes the kernel forget them.  So
 * when the live nodes pass three quarters of the limit, a pruner thread
 * picks files (never directories, open files or rebound nodes, whose
 * shown inode number must last) not looked up since its last pass,
 * clock-wise, until half the limit would remain, and asks the kernel to
 * prune them (FUSE_NOTIFY_PRUNE; entry invalidations on kernels before
 * 6.18): their unused dentries go, their FORGETs follow, and their fds
 * close.  Nodes the kernel still uses (a mapped file) stay.  Listings
 * give names without nodes meanwhile, and a lookup that meets the limit
 * waits for the pruner (fd_budget_retry()).  Only when the nodes in use
 * alone fill the limit do new lookups fail with EMFILE
 * (fd_budget_exhausted()).
 */
#include "fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <linux/fuse.h>

#include "rekeyfs/error.h"

#define NODE_BUCKETS 65536
#define RKFS_SYNTH_INO (1ULL << 62)

static struct node *by_ino[NODE_BUCKETS];
static struct node *by_name[NODE_BUCKETS];
static struct node *by_shown[NODE_BUCKETS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static struct node root;
static uint64_t synth_next = RKFS_SYNTH_INO;
static size_t nodes_live;
static size_t prune_high, prune_low; /* live nodes; 0: no pruner */
static atomic_bool prune_tight;	     /* nodes_live > prune_high */
static uint64_t nodes_freed;	     /* (T) ever */
static unsigned fd_waiters;	     /* (T) in fd_budget_wait() */
static uint64_t prune_empty_passes;  /* (T) passes that found nothing */
static pthread_cond_t fd_cv = PTHREAD_COND_INITIALIZER; /* with table_mu */
static void prune_wake(void);
static void fd_budget_exhausted(void);

static void table_unlock(void);

static size_t ino_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev;

	return (size_t)(h >> 32) % NODE_BUCKETS;
}

static size_t name_hash(const struct node *parent, const char *name)
{
	uint64_t h = (uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ULL;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return (size_t)(h >> 32) % NODE_BUCKETS;
}

static size_t shown_hash(uint64_t shown)
{
	return (size_t)((shown * 0x9e3779b97f4a7c15ULL) >> 32) % NODE_BUCKETS;
}

void proc_fd_path(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/*
 * Users who can reach the backing tree can flock() the backing files and
 * directories they can open, and so hold the locks of the rekey protocol
 * forever.  A daemon thread therefore never waits without bound: the
 * tool holds a lock for as long as one file's rewrite takes, so a wait
 * longer than RKFS_LOCK_WAIT_MS gives up with EAGAIN (logged once a
 * minute) and frees the thread.
 */
#define RKFS_LOCK_WAIT_MS 10000

int rkfs_flock_retry(int fd, int how)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static time_t last;
	struct timespec t0, now, nap = {0, 200 * 1000};
	time_t secs;
	long waited;

	if (flock(fd, how | LOCK_NB) == 0)
		return 0;
	if (errno != EWOULDBLOCK && errno != EINTR)
		return -errno;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		nanosleep(&nap, NULL);
		if (flock(fd, how | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - t0.tv_sec) * 1000 +
			 (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (waited >= RKFS_LOCK_WAIT_MS)
			break;
		if (nap.tv_nsec < 20 * 1000 * 1000)
			nap.tv_nsec *= 2;
	}
	secs = time(NULL);
	pthread_mutex_lock(&mu);
	if (last == 0 || secs - last >= 60) {
		last = secs;
		rkfs_log(LOG_WARNING,
			 "a backing file or directory stayed locked for %d s "
			 "(a long rekey, or a user holding flock on the backing "
			 "tree); the request fails with EAGAIN",
			 RKFS_LOCK_WAIT_MS / 1000);
	}
	pthread_mutex_unlock(&mu);
	return -EAGAIN;
}

/*
 * Out of fds: have the pruner run and wait (100 ms at most) until a node
 * is freed.  False at once when the pruner found nothing to prune (every
 * node in use), when there is no pruner, and single-threaded.
 */
static bool fd_budget_wait(void)
{
	struct timespec until;
	uint64_t freed, empty;
	bool more;

	if (rkfs_ms && rkfs_ms->single) {
		/* the FORGETs that free nodes wait for this very thread */
		prune_wake();
		return false;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 100000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&table_mu);
	if (prune_high == 0) {
		table_unlock();
		return false;
	}
	freed = nodes_freed;
	empty = prune_empty_passes;
	fd_waiters++;
	prune_wake();
	while (nodes_freed == freed && prune_empty_passes == empty &&
	       pthread_cond_timedwait(&fd_cv, &table_mu, &until) == 0)
		;
	more = nodes_freed != freed;
	fd_waiters--;
	table_unlock();
	return more;
}

bool fd_budget_retry(int err, unsigned *tries)
{
	int saved = errno;
	bool again = false;

	if (err != EMFILE && err != ENFILE)
		return false;
	if ((*tries)++ < 8)
		again = fd_budget_wait();
	if (!again)
		fd_budget_exhausted();
	errno = saved;
	return again;
}

static void fd_budget_exhausted(void)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static time_t last;
	struct rlimit rl = {0, 0};
	time_t now = time(NULL);
	size_t live;
	bool log;

	pthread_mutex_lock(&mu);
	log = last == 0 || now - last >= 60;
	if (log)
		last = now;
	pthread_mutex_unlock(&mu);
	if (!log)
		return;
	pthread_mutex_lock(&table_mu);
	live = nodes_live;
	table_unlock();
	prune_wake();
	(void)getrlimit(RLIMIT_NOFILE, &rl);
	rkfs_log(LOG_ERR,
		 "out of file descriptors: the kernel holds %zu nodes, too "
		 "few of them unused, and the file descriptor limit is %llu; "
		 "requests for new files fail with EMFILE until files are "
		 "closed (raise the limit: ulimit -n, LimitNOFILE=)",
		 live, (unsigned long long)rl.rlim_cur);
}

/* ---- the table (table_mu held) ---- */

static struct node *find_ino(dev_t dev, ino_t ino)
{
	struct node *n = by_ino[ino_hash(dev, ino)];

	while (n && (n->dev != dev || n->ino != ino))
		n = n->next;
	return n;
}

static void unlink_chain(struct node **head, struct node *n, size_t off)
{
	struct node **pp = head;

	while (*pp && *pp != n)
		pp = (struct node **)((char *)*pp + off);
	if (*pp)
		*pp = *(struct node **)((char *)n + off);
}

#define CHAIN_OFF(field) offsetof(struct node, field)

static struct node *find_name(const struct node *parent, const char *name)
{
	struct node *n = by_name[name_hash(parent, name)];

	while (n && (n->parent != parent || strcmp(n->name, name) != 0))
		n = n->name_next;
	return n;
}

static bool shown_taken(uint64_t shown)
{
	struct node *n = by_shown[shown_hash(shown)];

	while (n && n->shown_ino != shown)
		n = n->shown_next;
	return n != NULL;
}

static void node_free_locked(struct node *n);

static void drop_locked(struct node *n)
{
	while (n && --n->refs == 0 && n->nlookup == 0 && n != &root) {
		struct node *p = n->parent; /* its reference: the loop's */

		node_free_locked(n);
		n = p;
	}
}

/* Forget where n was seen.  Its parent's reference is dropped. */
static void clear_name_locked(struct node *n)
{
	struct node *p = n->parent;

	if (n->name)
		unlink_chain(&by_name[name_hash(p, n->name)], n,
			     CHAIN_OFF(name_next));
	free(n->name);
	n->name = NULL;
	n->parent = NULL;
	drop_locked(p);
}

/* Remember that n is parent/name.  Returns -ENOMEM or 0 (n unchanged). */
static int set_name_locked(struct node *n, struct node *parent,
			   const char *name)
{
	char *copy;

	if (n == &root || parent == NULL)
		return 0;
	if (n->parent == parent && n->name && strcmp(n->name, name) == 0)
		return 0;
	copy = strdup(name);
	if (copy == NULL)
		return -ENOMEM;
	parent->refs++;
	clear_name_locked(n);
	n->parent = parent;
	n->name = copy;
	n->name_next = by_name[name_hash(parent, copy)];
	by_name[name_hash(parent, copy)] = n;
	return 0;
}

/*
 * Nodes freed while table_mu is held wait here, on the freeing thread,
 * until table_unlock(): closing the last fd of an unlinked backing file
 * is when the backing filesystem releases its blocks (tens of
 * microseconds, more under journal pressure), and every other request
 * would queue behind it on table_mu.
 */
static __thread struct node *graveyard;

static void node_free_locked(struct node *n)
{
	unlink_chain(&by_ino[ino_hash(n->dev, n->ino)], n, CHAIN_OFF(next));
	if (n->rebound)
		unlink_chain(&by_shown[shown_hash(n->shown_ino)], n,
			     CHAIN_OFF(shown_next));
	if (n->name)
		unlink_chain(&by_name[name_hash(n->parent, n->name)], n,
			     CHAIN_OFF(name_next));
	nodes_live--;
	nodes_freed++;
	if (fd_waiters)
		pthread_cond_broadcast(&fd_cv);
	if (nodes_live <= prune_high)
		atomic_store_explicit(&prune_tight, false, memory_order_relaxed);
	n->next = graveyard;
	graveyard = n;
}

static void node_destroy(struct node *n)
{
	free(n->name);
	if (n->fd >= 0)
		close(n->fd);
	if (n->dfd >= 0)
		close(n->dfd);
	if (n->loaded)
		rkfs_file_release(&n->file);
	pthread_rwlock_destroy(&n->fdmu);
	pthread_rwlock_destroy(&n->lock);
	pthread_mutex_destroy(&n->dmu);
	free(n);
}

/* Unlock the table, then destroy the nodes freed while it was held. */
static void table_unlock(void)
{
	struct node *dead = graveyard;

	graveyard = NULL;
	pthread_mutex_unlock(&table_mu);
	while (dead) {
		struct node *n = dead;

		dead = n->next;
		node_destroy(n);
	}
}

static void node_init(struct node *n, int fd, const struct stat *st)
{
	n->fd = fd;
	n->dfd = -1;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	n->shown_ino = st->st_ino;
	n->type = st->st_mode & S_IFMT;
	pthread_rwlock_init(&n->fdmu, NULL);
	pthread_rwlock_init(&n->lock, NULL);
	pthread_mutex_init(&n->dmu, NULL);
}

/* ---- public ---- */

int rkfs_nodes_init(int rootfd)
{
	struct stat st;
	int fd = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	node_init(&root, fd, &st);
	root.nlookup = 1;
	root.refs = 1;
	pthread_mutex_lock(&table_mu);
	root.next = by_ino[ino_hash(st.st_dev, st.st_ino)];
	by_ino[ino_hash(st.st_dev, st.st_ino)] = &root;
	table_unlock();
	return 0;
}

void rkfs_nodes_clear(void)
{
	struct node *all = NULL;

	/* At exit: no request runs any more; free every node but root. */
	pthread_mutex_lock(&table_mu);
	for (size_t b = 0; b < NODE_BUCKETS; b++) {
		while (by_ino[b]) {
			struct node *n = by_ino[b];

			by_ino[b] = n->next;
			if (n != &root) {
				n->next = all;
				all = n;
			}
		}
		by_name[b] = NULL;
		by_shown[b] = NULL;
	}
	while (all) {
		struct node *n = all;

		all = n->next;
		n->name = (free(n->name), NULL);
		n->rebound = false;
		n->next = NULL;
		node_free_locked(n);
	}
	table_unlock();
	if (root.fd >= 0)
		close(root.fd);
	if (root.dfd >= 0)
		close(root.dfd);
	root.fd = root.dfd = -1;
}

struct node *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root : (struct node *)(uintptr_t)ino;
}

fuse_ino_t node_id(const struct node *n)
{
	return n == &root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

int node_fd_get(struct node *n)
{
	pthread_rwlock_rdlock(&n->fdmu);
	return n->fd;
}

void node_fd_put(struct node *n)
{
	pthread_rwlock_unlock(&n->fdmu);
}

/*
 * An O_PATH fd of name in directory node d (a symlink's own, never its
 * target's), waiting for the pruner when out of fds (fd_budget_retry()).
 * The fd, or -1 with errno set.
 */
static int node_open_name(struct node *d, const char *name)
{
	unsigned tries = 0;
	int dfd, fd;

	do {
		dfd = node_fd_get(d);
		fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		node_fd_put(d);
	} while (fd < 0 && fd_budget_retry(errno, &tries));
	return fd;
}

int node_open_dir(struct node *d)
{
	unsigned tries = 0;
	int nfd, fd;

	do {
		nfd = node_fd_get(d);
		fd = openat(nfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		node_fd_put(d);
	} while (fd < 0 && fd_budget_retry(errno, &tries));
	return fd;
}

void node_hold(struct node *n)
{
	pthread_mutex_lock(&table_mu);
	n->refs++;
	table_unlock();
}

void node_put(struct node *n)
{
	pthread_mutex_lock(&table_mu);
	drop_locked(n);
	table_unlock();
}

void node_forget(struct node *n, uint64_t nlookup)
{
	pthread_mutex_lock(&table_mu);
	if (n != &root) {
		n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
		/* drop_locked() frees at refs 0: count the kernel's
		 * references as one of ours for the call. */
		n->refs++;
		drop_locked(n);
	}
	table_unlock();
}

static void fill_entry(struct fuse_entry_param *e, const struct node *n,
		       const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = node_id(n);
	e->attr = *st;
	e->attr.st_ino = (ino_t)n->shown_ino;
	if (S_ISREG(st->st_mode))
		e->attr.st_size = (off_t)rkfs_file_stat_size(
		    (uint64_t)st->st_size);
	e->attr_timeout = RKFS_ATTR_TIMEOUT;
	e->entry_timeout = RKFS_ENTRY_TIMEOUT;
}

/*
 * Is c, the node last seen at the name now holding another file, a rebind
 * candidate: a regular file whose pinned inode has no links left?
 */
static bool pinned_unlinked(struct node *c)
{
	struct stat st;
	int fd;
	bool gone;

	if (c->type != S_IFREG)
		return false;
	fd = node_fd_get(c);
	gone = fstat(fd, &st) == 0 && st.st_nlink == 0;
	node_fd_put(c);
	return gone;
}

struct node *node_enter(struct node *parent, const char *name, int pfd,
			const struct stat *st, bool may_rebind,
			struct fuse_entry_param *e, int *err)
{
	struct node *n, *cand = NULL;
	bool tried = !may_rebind;

	if (st->st_dev != root.dev) {
		/* Another filesystem mounted in the backing tree: never
		 * entered (a user's own FUSE mount could hang the daemon). */
		close(pfd);
		*err = -EXDEV;
		return NULL;
	}
again:
	pthread_mutex_lock(&table_mu);
	n = find_ino(st->st_dev, st->st_ino);
	if (n == NULL && !tried && parent && S_ISREG(st->st_mode)) {
		cand = find_name(parent, name);
		if (cand && cand->type == S_IFREG) {
			cand->refs++;
		} else {
			cand = NULL;
		}
	}
	if (cand) {
		/* Perhaps the file a rekey replaced: rebind, look again. */
		table_unlock();
		tried = true;
		if (pinned_unlinked(cand))
			(void)node_refresh(cand); /* -ESTALE: a new node */
		node_put(cand);
		cand = NULL;
		goto again;
	}
	if (n) {
		if (n->type != (st->st_mode & S_IFMT)) {
			/* Cannot be: the node's fd pins its inode. */
			table_unlock();
			close(pfd);
			*err = -EIO;
			return NULL;
		}
		n->nlookup++;
		n->used = true;
		(void)set_name_locked(n, parent, name);
		table_unlock();
		close(pfd);
		fill_entry(e, n, st);
		return n;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		table_unlock();
		close(pfd);
		*err = -ENOMEM;
		return NULL;
	}
	node_init(n, pfd, st);
	if (shown_taken(n->shown_ino))
		n->shown_ino = synth_next++;
	n->nlookup = 1;
	n->next = by_ino[ino_hash(n->dev, n->ino)];
	by_ino[ino_hash(n->dev, n->ino)] = n;
	nodes_live++;
	n->used = true;
	(void)set_name_locked(n, parent, name);
	if (prune_high && nodes_live > prune_high) {
		atomic_store_explicit(&prune_tight, true, memory_order_relaxed);
		prune_wake();
	}
	table_unlock();
	fill_entry(e, n, st);
	return n;
}

int node_lookup(struct node *parent, const char *name,
		struct fuse_entry_param *e, struct node **np)
{
	struct stat st;
	int pfd, err = 0;

	*np = NULL;
	pfd = node_open_name(parent, name);
	if (pfd < 0) {
		err = -errno;
		return err;
	}
	if (fstat(pfd, &st) < 0) {
		err = -errno;
		close(pfd);
		return err;
	}
	*np = node_enter(parent, name, pfd, &st, true, e, &err);
	return err;
}

/*
 * Is nst, the file now at the name of a node whose inode lost its last
 * link, what rekeyfs-rekey put there?  The tool gives its temp the old
 * file's owner, group and mode before the rename; a file with anything
 * else (another user's file renamed there by whoever owns the backing
 * directory) is not taken for it.  Nor is any file while the node is
 * open: the tool never replaces a file open in a mount.
 */
static bool is_replacement(struct node *n, const struct stat *old,
			   const struct stat *nst)
{
	bool open;

	if (!S_ISREG(nst->st_mode) || nst->st_uid != old->st_uid ||
	    nst->st_gid != old->st_gid ||
	    (nst->st_mode & 07777) != (old->st_mode & 07777))
		return false;
	pthread_rwlock_rdlock(&n->lock);
	open = n->handles != NULL;
	pthread_rwlock_unlock(&n->lock);
	return !open;
}

int node_refresh(struct node *n)
{
	struct node *parent;
	struct stat st, nst;
	char *name = NULL;
	bool removed;
	int pfd, err, old = -1, ret = -ESTALE;

	if (n->type != S_IFREG || n == &root)
		return 0;
	pthread_rwlock_wrlock(&n->fdmu);
	if (fstat(n->fd, &st) < 0 || st.st_nlink > 0) {
		ret = 0;
		goto out;
	}
	pthread_mutex_lock(&table_mu);
	removed = n->removed;
	parent = n->parent;
	if (!removed && n->name && parent) {
		name = strdup(n->name);
		parent->refs++;
	}
	table_unlock();
	if (removed) {
		ret = 0; /* unlinked through the mount, still open */
		goto out;
	}
	if (name == NULL)
		goto out; /* where it is now is unknown: look it up again */
	pfd = node_open_name(parent, name);
	err = errno; /* node_put() may close a freed node's fd */
	node_put(parent);
	if (pfd < 0) {
		if (err == EMFILE || err == ENFILE)
			ret = -err;
		goto out;
	}
	if (fstat(pfd, &nst) < 0 || nst.st_dev != n->dev ||
	    !is_replacement(n, &st, &nst)) {
		close(pfd);
		goto out;
	}
	pthread_mutex_lock(&table_mu);
	if (find_ino(nst.st_dev, nst.st_ino) != NULL) {
		table_unlock();
		close(pfd);
		goto out;
	}
	unlink_chain(&by_ino[ino_hash(n->dev, n->ino)], n, CHAIN_OFF(next));
	n->dev = nst.st_dev;
	n->ino = nst.st_ino;
	n->next = by_ino[ino_hash(n->dev, n->ino)];
	by_ino[ino_hash(n->dev, n->ino)] = n;
	if (!n->rebound && n->shown_ino != (uint64_t)nst.st_ino) {
		n->rebound = true;
		n->shown_next = by_shown[shown_hash(n->shown_ino)];
		by_shown[shown_hash(n->shown_ino)] = n;
	}
	old = n->fd;
	n->fd = pfd;
	table_unlock();
	ret = 1;
out:
	pthread_rwlock_unlock(&n->fdmu);
	if (old >= 0)
		close(old);
	free(name);
	return ret;
}

int node_stat(struct node *n, struct stat *st)
{
	int fd, ret = 0;

	for (int tries = 0; tries < 2; tries++) {
		fd = node_fd_get(n);
		if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) <
		    0)
			ret = -errno;
		node_fd_put(n);
		if (ret < 0)
			return ret;
		if (!S_ISREG(st->st_mode) || st->st_nlink > 0)
			break;
		ret = node_refresh(n);
		if (ret < 0)
			return ret;
		if (ret == 0)
			break;
		ret = 0;
	}
	st->st_ino = (ino_t)n->shown_ino;
	if (S_ISREG(st->st_mode))
		st->st_size = (off_t)rkfs_file_stat_size((uint64_t)st->st_size);
	return 0;
}

uint64_t node_shown_ino(dev_t dev, ino_t ino)
{
	struct node *n;
	uint64_t shown = ino;

	pthread_mutex_lock(&table_mu);
	n = find_ino(dev, ino);
	if (n)
		shown = n->shown_ino;
	table_unlock();
	return shown;
}

void node_settle(struct node *parent, const char *name)
{
	struct node *c;

	pthread_mutex_lock(&table_mu);
	c = find_name(parent, name);
	if (c && c->type == S_IFREG)
		c->refs++;
	else
		c = NULL;
	table_unlock();
	if (c == NULL)
		return;
	if (pinned_unlinked(c))
		(void)node_refresh(c);
	node_put(c);
}

void node_removed(struct node *parent, const char *name,
		  const struct stat *st)
{
	struct node *n;

	pthread_mutex_lock(&table_mu);
	/* Whatever node was last seen at the name is not there any more,
	 * even if the name held another inode by now. */
	n = find_name(parent, name);
	if (n)
		clear_name_locked(n);
	n = find_ino(st->st_dev, st->st_ino);
	if (n) {
		if (n->parent == parent && n->name &&
		    strcmp(n->name, name) == 0)
			clear_name_locked(n);
		/* Its last link: an open file of it lives on unlinked. */
		if (S_ISDIR(st->st_mode) || st->st_nlink <= 1)
			n->removed = true;
	}
	table_unlock();
}

void node_moved(struct node *from, const char *name, struct node *to,
		const char *newname, const struct stat *st)
{
	struct node *n, *m;

	pthread_mutex_lock(&table_mu);
	/* The node the kernel moved is the one last seen at the old name,
	 * whichever inode the name held by then. */
	n = find_name(from, name);
	m = st ? find_ino(st->st_dev, st->st_ino) : NULL;
	if (n)
		(void)set_name_locked(n, to, newname);
	if (m && m != n && m->parent == from && m->name &&
	    strcmp(m->name, name) == 0)
		(void)set_name_locked(m, to, newname);
	table_unlock();
}

void node_exchanged(struct node *p1, const char *name1, struct node *p2,
		    const char *name2)
{
	struct node *a, *b;

	pthread_mutex_lock(&table_mu);
	a = find_name(p1, name1);
	b = find_name(p2, name2);
	if (a)
		a->refs++; /* set_name_locked may drop a parent */
	if (b)
		b->refs++;
	if (a)
		clear_name_locked(a);
	if (b)
		(void)set_name_locked(b, p1, name1);
	if (a)
		(void)set_name_locked(a, p2, name2);
	if (a)
		drop_locked(a);
	if (b)
		drop_locked(b);
	table_unlock();
}

char *node_path(struct node *n)
{
	const char *parts[256];
	size_t count = 0, len = 0;
	char *out, *p;

	pthread_mutex_lock(&table_mu);
	for (struct node *c = n; c && c != &root && count < 256;
	     c = c->parent) {
		if (c->name == NULL) {
			table_unlock();
			return NULL;
		}
		parts[count++] = c->name;
		len += strlen(c->name) + 1;
	}
	out = malloc(len + 2);
	if (out) {
		p = out;
		for (size_t i = count; i-- > 0;) {
			size_t l = strlen(parts[i]);

			memcpy(p, parts[i], l);
			p += l;
			*p++ = i ? '/' : '\0';
		}
		if (count == 0)
			strcpy(out, ".");
	}
	table_unlock();
	return out;
}

/* ---- directory locks ---- */

int dir_lock(struct node *d)
{
	int ret = 0;

	if (d->type != S_IFDIR)
		return -ENOTDIR;
	pthread_mutex_lock(&d->dmu);
	if (d->dfd < 0) {
		d->dfd = node_open_dir(d);
		if (d->dfd < 0)
			ret = -errno;
	}
	if (ret == 0 && d->dlocks == 0)
		ret = rkfs_flock_retry(d->dfd, LOCK_SH);
	if (ret == 0)
		d->dlocks++;
	pthread_mutex_unlock(&d->dmu);
	return ret < 0 ? ret : d->dfd;
}

void dir_unlock(struct node *d)
{
	pthread_mutex_lock(&d->dmu);
	if (d->dlocks > 0 && --d->dlocks == 0)
		(void)flock(d->dfd, LOCK_UN);
	pthread_mutex_unlock(&d->dmu);
}

int parent_lock(struct node *n, struct node **pp)
{
	int ret = -EAGAIN;

	*pp = NULL;
	for (int tries = 0; tries < 8; tries++) {
		struct node *p;
		bool same;

		pthread_mutex_lock(&table_mu);
		p = n->parent;
		if (p)
			p->refs++;
		table_unlock();
		if (p == NULL)
			return 0; /* the root, or removed: nothing to lock */
		ret = dir_lock(p);
		if (ret < 0) {
			node_put(p);
			return ret;
		}
		/* Renamed meanwhile?  Then lock where it is now. */
		pthread_mutex_lock(&table_mu);
		same = n->parent == p;
		table_unlock();
		if (same) {
			*pp = p;
			return 0;
		}
		dir_unlock(p);
		node_put(p);
	}
	return -EAGAIN;
}

void parent_unlock(struct node *p)
{
	if (p) {
		dir_unlock(p);
		node_put(p);
	}
}

/*
 * Files a rekey replaced stay pinned by their nodes' fds (their space is
 * not freed) until the node is looked at again or forgotten.  A listing
 * of a large tree followed by a full rekey would pin every old file, so
 * the reload thread calls this now and then: it rebinds every such node.
 * Holds the table lock only while it gathers a batch.
 */
void rkfs_nodes_sweep(void)
{
	struct node *batch[512];
	size_t b = 0, count;

	while (b < NODE_BUCKETS) {
		count = 0;
		pthread_mutex_lock(&table_mu);
		for (; b < NODE_BUCKETS && count < 512 - 64; b++) {
			for (struct node *n = by_ino[b];
			     n && count < 512; n = n->next) {
				if (n->type == S_IFREG && n->name) {
					n->refs++;
					batch[count++] = n;
				}
			}
		}
		table_unlock();
		for (size_t i = 0; i < count; i++) {
			if (pinned_unlinked(batch[i]))
				(void)node_refresh(batch[i]);
			node_put(batch[i]);
		}
	}
}

size_t rkfs_nodes_open_generations(uint32_t **out)
{
	struct node **all = NULL;
	uint32_t *gens = NULL;
	size_t count = 0, cap = 0, ngens = 0;

	*out = NULL;
	/* Gather the regular files first: a node's lock is never taken
	 * under the table's. */
	pthread_mutex_lock(&table_mu);
	for (size_t b = 0; b < NODE_BUCKETS; b++) {
		for (struct node *n = by_ino[b]; n; n = n->next) {
			if (n->type != S_IFREG)
				continue;
			if (count == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				struct node **na =
				    realloc(all, ncap * sizeof(*na));

				if (na == NULL)
					goto gathered;
				all = na;
				cap = ncap;
			}
			n->refs++;
			all[count++] = n;
		}
	}
gathered:
	table_unlock();
	gens = calloc(count ? count : 1, sizeof(*gens));
	for (size_t i = 0; i < count; i++) {
		struct node *n = all[i];

		pthread_rwlock_rdlock(&n->lock);
		if (gens && n->handles && n->loaded &&
		    rkfs_file_generation(&n->file) != 0)
			gens[ngens++] = rkfs_file_generation(&n->file);
		pthread_rwlock_unlock(&n->lock);
		node_put(n);
	}
	free(all);
	*out = gens;
	return ngens;
}

/* ---- the pruner ---- */

bool nodes_budget_tight(void)
{
	return atomic_load_explicit(&prune_tight, memory_order_relaxed);
}

/* names invalidated in one pass at most */
#define PRUNE_BATCH 4096
/* the pause after a pass that found nothing to prune */
#define PRUNE_PAUSE_NS 5000000L

struct prune_victim {
	fuse_ino_t node;
	fuse_ino_t parent;
	char name[NAME_MAX + 1];
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool wanted, stop, running;
	pthread_t thread;
	struct fuse_session *se;
	bool no_prune_notify; /* the kernel has no FUSE_NOTIFY_PRUNE */
	size_t hand; /* (T) the bucket the clock is at */
} pruner = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* May be called with table_mu held (the pruner never waits for it under
 * its own mutex). */
static void prune_wake(void)
{
	pthread_mutex_lock(&pruner.mu);
	if (pruner.running && !pruner.wanted) {
		pruner.wanted = true;
		pthread_cond_signal(&pruner.cv);
	}
	pthread_mutex_unlock(&pruner.mu);
}

static bool prune_stopping(void)
{
	bool stop;

	pthread_mutex_lock(&pruner.mu);
	stop = pruner.stop;
	pthread_mutex_unlock(&pruner.mu);
	return stop;
}

static bool prunable(const struct node *n)
{
	return n->type != S_IFDIR && n->parent && n->name && !n->removed &&
	       !n->rebound && n->refs == 0;
}

/*
 * FUSE_NOTIFY_PRUNE (protocol 7.45, Linux 6.18): the kernel drops the
 * unused dentries of each node, by node id, without the directory locks
 * an entry invalidation takes and without detaching anything mounted on
 * them.  libfuse 3.14 has no call for it; the message is one header, a
 * count and the ids.  0 or -errno (-EINVAL: not known to this kernel).
 */
#define PRUNE_NOTIFY_IDS 256
#ifndef FUSE_NOTIFY_PRUNE
#define FUSE_NOTIFY_PRUNE 9
#endif

static int notify_prune(const struct prune_victim *v, size_t k)
{
	struct {
		struct fuse_out_header out;
		uint32_t count, padding;
		uint64_t spare;
	} head;
	uint64_t ids[PRUNE_NOTIFY_IDS];
	struct iovec iov[2];
	ssize_t n;

	for (size_t i = 0; i < k; i++)
		ids[i] = v[i].node;
	memset(&head, 0, sizeof(head));
	head.count = (uint32_t)k;
	head.out.error = FUSE_NOTIFY_PRUNE;
	head.out.unique = 0;
	head.out.len = (uint32_t)(sizeof(head) + k * sizeof(ids[0]));
	iov[0] = (struct iovec){&head, sizeof(head)};
	iov[1] = (struct iovec){ids, k * sizeof(ids[0])};
	n = writev(fuse_session_fd(pruner.se), iov, 2);
	return n < 0 ? -errno : 0;
}

/* One pass: pick up to PRUNE_BATCH victims and invalidate their names;
 * how many. */
static size_t prune_pass(struct prune_victim *v)
{
	size_t want, got = 0, steps;

	pthread_mutex_lock(&table_mu);
	want = nodes_live > prune_low ? nodes_live - prune_low : 0;
	if (want > PRUNE_BATCH)
		want = PRUNE_BATCH;
	/* twice round the clock: the first may only clear use bits */
	for (steps = 0; steps < 2 * NODE_BUCKETS && got < want; steps++) {
		struct node *n = by_ino[pruner.hand];

		pruner.hand = (pruner.hand + 1) % NODE_BUCKETS;
		for (; n && got < want; n = n->next) {
			if (!prunable(n))
				continue;
			if (n->used) {
				n->used = false;
				continue;
			}
			if (strlen(n->name) > NAME_MAX)
				continue;
			v[got].node = node_id(n);
			v[got].parent = node_id(n->parent);
			strcpy(v[got].name, n->name);
			got++;
		}
	}
	if (got == 0) {
		prune_empty_passes++;
		if (fd_waiters)
			pthread_cond_broadcast(&fd_cv);
	}
	table_unlock();
	if (!pruner.no_prune_notify) {
		for (size_t i = 0; i < got && !prune_stopping();
		     i += PRUNE_NOTIFY_IDS) {
			size_t k = got - i < PRUNE_NOTIFY_IDS ? got - i
							      : PRUNE_NOTIFY_IDS;

			if (notify_prune(v + i, k) == -EINVAL) {
				pruner.no_prune_notify = true;
				break;
			}
		}
		if (!pruner.no_prune_notify)
			return got;
	}
	/* Before Linux 6.18: entry invalidations, outside every lock (the
	 * kernel takes the directory's lock, which a request in flight
	 * there may hold until a worker answers it). */
	for (size_t i = 0; i < got && !prune_stopping(); i++)
		(void)fuse_lowlevel_notify_inval_entry(
		    pruner.se, v[i].parent, v[i].name, strlen(v[i].name));
	return got;
}

static void *prune_main(void *arg)
{
	struct prune_victim *v = arg;
	const struct timespec pause = {0, PRUNE_PAUSE_NS},
			      brief = {0, PRUNE_PAUSE_NS / 5};

	for (;;) {
		pthread_mutex_lock(&pruner.mu);
		while (!pruner.wanted && !pruner.stop)
			pthread_cond_wait(&pruner.cv, &pruner.mu);
		pruner.wanted = false;
		if (pruner.stop) {
			pthread_mutex_unlock(&pruner.mu);
			break;
		}
		pthread_mutex_unlock(&pruner.mu);
		/* The kernel skips nodes it still uses (mapped, mounted on):
		 * passes that keep finding those are spaced out, and one that
		 * found nothing at all waits longer for files to close. */
		nanosleep(prune_pass(v) ? &brief : &pause, NULL);
	}
	free(v);
	return NULL;
}

int rkfs_nodes_prune_start(struct fuse_session *se)
{
	struct rlimit rl;
	struct prune_victim *v;
	sigset_t all, old;
	size_t limit;
	int err;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1ULL << 30)
		    ? (size_t)1 << 30
		    : (size_t)rl.rlim_cur;
	v = malloc(PRUNE_BATCH * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	pruner.se = se;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&pruner.thread, NULL, prune_main, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		free(v);
		return -err;
	}
	pthread_mutex_lock(&pruner.mu);
	pruner.running = true;
	pthread_mutex_unlock(&pruner.mu);
	pthread_mutex_lock(&table_mu);
	prune_high = limit / 4 * 3;
	prune_low = limit / 2;
	table_unlock();
	return 0;
}

void rkfs_nodes_prune_stop(void)
{
	bool running;

	pthread_mutex_lock(&table_mu);
	prune_high = 0;
	table_unlock();
	pthread_mutex_lock(&pruner.mu);
	running = pruner.running;
	pruner.running = false;
	pruner.stop = true;
	pthread_cond_signal(&pruner.cv);
	pthread_mutex_unlock(&pruner.mu);
	if (running)
		pthread_join(pruner.thread, NULL);
}
