/*
 * File I/O of the mount: open and create, read, write, truncate,
 * fallocate, SEEK_DATA/SEEK_HOLE, fsync, release.  Each regular-file node
 * holds the encrypted-file state (struct rkfs_file) while the file is open
 * and a rwlock: reads shared; writes, truncates and key changes exclusive.
 *
 * The rekey protocol: every open backing fd holds LOCK_SH for as long as
 * it is open.  A file is opened through its node's fd (/proc/self/fd/N,
 * which names the node's inode), then locked; if rekeyfs-rekey replaced it
 * while the lock was awaited (the inode has no links left), the node is
 * rebound to the new file and the open is retried.  The file state is
 * loaded afresh by the first open, so an in-place rewrite of a hard-linked
 * file between two opens is seen.
 */
#include "fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "rekeyfs/error.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/rekey.h"

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rkfs_sealer *sealer;

/* New write-only files are written directly (op_create). */
static bool direct_new_files;

void rkfs_io_setup(unsigned proto_minor)
{
	/* From protocol 7.39 (Linux 6.6) the kernel drops the pages other
	 * handles cached for a direct write's range; before, they would
	 * stay stale (direct_handle()). */
	direct_new_files = proto_minor >= 39;
	if (sealer == NULL && rkfs_sealer_start(&sealer, 1) < 0)
		sealer = NULL; /* large writes then run on one thread */
}

void rkfs_io_teardown(void)
{
	rkfs_sealer_stop(sealer);
	sealer = NULL;
}

/* Re-derive the node's key if the keyring changed.  Needs the write lock. */
static int node_sync_locked(struct node *n, const struct rkfs_keyring *kr)
{
	if (!n->loaded || n->file.serial >= kr->serial)
		return 0;
	return rkfs_file_use_keyring(&n->file, kr);
}

/* Take the node's lock shared, with its key current for kr. */
static int node_rdlock(struct node *n, const struct rkfs_keyring *kr)
{
	int ret;

	pthread_rwlock_rdlock(&n->lock);
	if (!n->loaded || n->file.serial >= kr->serial)
		return 0;
	pthread_rwlock_unlock(&n->lock);
	pthread_rwlock_wrlock(&n->lock);
	ret = node_sync_locked(n, kr);
	pthread_rwlock_unlock(&n->lock);
	if (ret < 0)
		return ret;
	pthread_rwlock_rdlock(&n->lock);
	return 0;
}

static int node_wrlock(struct node *n, const struct rkfs_keyring *kr)
{
	int ret;

	pthread_rwlock_wrlock(&n->lock);
	ret = node_sync_locked(n, kr);
	if (ret < 0)
		pthread_rwlock_unlock(&n->lock);
	return ret;
}

/*
 * Causes already logged, so a bad file is logged once and not on every
 * read, even across reopens (which create a new node).  An entry goes away
 * when the file reads fine again, so a new failure is logged again.
 */
struct logged {
	dev_t dev;
	ino_t ino;
	int err;
	uint64_t what;
};

#define LOGGED_MAX 64

static struct logged logged[LOGGED_MAX];
static unsigned logged_next, logged_count;

static bool logged_seen(const struct node *n, int err, uint64_t what)
{
	for (unsigned i = 0; i < LOGGED_MAX; i++) {
		const struct logged *l = &logged[i];

		if (l->err == err && l->what == what && l->dev == n->dev &&
		    l->ino == n->ino)
			return true;
	}
	return false;
}

/*
 * Map a core error to what the caller sees.  Corruption and unusable
 * generations become EIO with one log line per file and cause.  Called
 * with the node locked.
 */
/*
 * A name for the log: names come from users, so control characters and
 * backslashes are written as \ooo (a newline in a name cannot forge a
 * log line).  Takes and returns malloc'd strings.
 */
static char *log_name(char *raw)
{
	char *out, *p;

	if (raw == NULL)
		return NULL;
	out = malloc(strlen(raw) * 4 + 1);
	if (out) {
		p = out;
		for (const unsigned char *c = (unsigned char *)raw; *c; c++) {
			if (*c < 0x20 || *c == 0x7f || *c == '\\')
				p += snprintf(p, 5, "\\%03o", *c);
			else
				*p++ = (char)*c;
		}
		*p = '\0';
	}
	free(raw);
	return out;
}

static int report(struct node *n, int err, uint64_t bad)
{
	char *path;
	const char *name;
	uint64_t what;
	bool log;

	if (err != -EBADMSG && err != -ENOKEY && err != -EKEYREVOKED)
		return err;
	what = err == -EBADMSG ? bad : rkfs_file_generation(&n->file);
	pthread_mutex_lock(&log_mu);
	log = !logged_seen(n, err, what);
	if (log) {
		if (logged[logged_next].err == 0)
			__atomic_store_n(&logged_count, logged_count + 1,
					 __ATOMIC_RELAXED);
		logged[logged_next] =
		    (struct logged){n->dev, n->ino, err, what};
		logged_next = (logged_next + 1) % LOGGED_MAX;
	}
	pthread_mutex_unlock(&log_mu);
	if (!log)
		return -EIO;
	path = log_name(node_path(n));
	name = path ? path : "(unlinked file)";
	if (err == -EBADMSG && bad == UINT64_MAX)
		rkfs_log(LOG_ERR, "%s: header or size is invalid", name);
	else if (err == -EBADMSG)
		rkfs_log(LOG_ERR, "%s: block %" PRIu64 " fails authentication",
			 name, bad);
	else if (err == -EKEYREVOKED)
		rkfs_log(LOG_ERR,
			 "%s: generation %" PRIu32
			 " is disabled in the keyring",
			 name, rkfs_file_generation(&n->file));
	else
		rkfs_log(LOG_ERR,
			 "%s: generation %" PRIu32 " is not in the keyring "
			 "(or destroyed)",
			 name, rkfs_file_generation(&n->file));
	free(path);
	return -EIO;
}

static void report_clear(struct node *n)
{
	if (__atomic_load_n(&logged_count, __ATOMIC_RELAXED) == 0)
		return;
	pthread_mutex_lock(&log_mu);
	for (unsigned i = 0; i < LOGGED_MAX; i++) {
		if (logged[i].err && logged[i].dev == n->dev &&
		    logged[i].ino == n->ino) {
			memset(&logged[i], 0, sizeof(logged[i]));
			__atomic_store_n(&logged_count, logged_count - 1,
					 __ATOMIC_RELAXED);
		}
	}
	pthread_mutex_unlock(&log_mu);
}


static bool unknown_generation(const struct node *n)
{
	return n->loaded && n->file.has_header && n->file.key == NULL &&
	       n->file.key_err == -ENOKEY;
}

/*
 * Lock n shared or exclusive with its key current for *kp; if its
 * generation is unknown, give a newer keyring file one chance first.
 */
static int node_lock_current(struct node *n, struct kref **kp, bool write)
{
	int ret = write ? node_wrlock(n, (*kp)->kr) : node_rdlock(n, (*kp)->kr);

	if (ret < 0 || !unknown_generation(n))
		return ret;
	pthread_rwlock_unlock(&n->lock);
	if (reload_if_stale()) {
		kr_put(*kp);
		*kp = kr_get();
	}
	return write ? node_wrlock(n, (*kp)->kr) : node_rdlock(n, (*kp)->kr);
}

static pthread_mutex_t recover_mu = PTHREAD_MUTEX_INITIALIZER;

/*
 * A multiply-linked file that fails authentication may be in the middle of
 * an in-place rewrite that a killed rekeyfs-rekey left: finish it and
 * reload.  Called with n->lock held exclusively.  Returns 1 if the file was
 * reloaded.
 */
static int recover_locked(struct node *n, int fd, const struct rkfs_keyring *kr)
{
	struct rkfs_error err = {{0}};
	struct stat st;
	unsigned cnt = 0;
	int ret;

	if (fstat(fd, &st) < 0 || st.st_nlink < 2)
		return 0;
	pthread_mutex_lock(&recover_mu);
	ret = rkfs_rekey_recover(rkfs_ms->rootfd, rkfs_ms->root, kr,
				 RKFS_REKEY_RECOVER_IN_MOUNT, &cnt, &err);
	pthread_mutex_unlock(&recover_mu);
	if (ret < 0) {
		rkfs_log(LOG_WARNING, "%s", err.msg);
		return 0;
	}
	/* Another thread's call may have finished it: reload either way. */
	rkfs_file_release(&n->file);
	n->loaded = rkfs_file_load(&n->file, fd, kr) == 0;
	return n->loaded;
}

/*
 * Sequential readers: keep the backing file read ahead of the requests.
 * The kernel sends a large sequential read as several requests at once
 * and the worker threads read the backing file for them out of order,
 * which the backing filesystem's readahead takes for random access; so
 * for large reads that continue near where the last one ended, the daemon
 * asks for the next window itself.  Races between threads only make a
 * window be asked for twice.
 */
#define SEQ_MIN_IO (128U << 10)
#define SEQ_SLACK (8ULL << 20)
#define SEQ_WINDOW (8ULL << 20)

/* Does a request at backing offset cstart continue one that ended at last?
 * (Out of order by up to SEQ_SLACK either way, as concurrent requests are.) */
static bool continues(uint64_t cstart, uint64_t last)
{
	return cstart + SEQ_SLACK >= last && cstart <= last + SEQ_SLACK;
}

static void read_ahead(struct fhandle *h, uint64_t off, size_t size)
{
	uint64_t cstart, cend, last, until;

	rkfs_file_backing_range(off, size, &cstart, &cend);
	last = __atomic_load_n(&h->seq_end, __ATOMIC_RELAXED);
	until = __atomic_load_n(&h->ra_until, __ATOMIC_RELAXED);
	if (cend > last)
		__atomic_store_n(&h->seq_end, cend, __ATOMIC_RELAXED);
	if (size < SEQ_MIN_IO || !continues(cstart, last))
		return;
	if (until > cend + SEQ_WINDOW / 2)
		return;
	if (until < cend)
		until = cend;
	__atomic_store_n(&h->ra_until, until + SEQ_WINDOW, __ATOMIC_RELAXED);
	(void)posix_fadvise(h->fd, (off_t)until, (off_t)SEQ_WINDOW,
			    POSIX_FADV_WILLNEED);
}

/*
 * Set the size; a truncate always marks the file modified, even to the
 * size it has (the file layer then writes nothing).
 */
static int truncate_touch(struct node *n, int fd, uint64_t size,
			  const struct rkfs_keyring *kr, uint64_t *bad)
{
	static const struct timespec now[2] = {{0, UTIME_OMIT},
					       {0, UTIME_NOW}};
	struct stat before, after;
	int ret;

	if (fstat(fd, &before) < 0)
		return -errno;
	ret = rkfs_file_truncate(&n->file, fd, size, kr, bad);
	if (ret == 0 && fstat(fd, &after) == 0 &&
	    after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	    after.st_mtim.tv_nsec == before.st_mtim.tv_nsec &&
	    futimens(fd, now) < 0)
		ret = -errno;
	return ret;
}

/* Backing open flags for a caller's open flags. */
static int backing_flags(int flags)
{
	int acc = flags & O_ACCMODE;
	int out = flags & (O_SYNC | O_DSYNC);

	/* Writes are read-modify-write of whole blocks. */
	if (acc == O_WRONLY || acc == O_RDWR || (flags & O_TRUNC))
		out |= O_RDWR;
	else
		out |= O_RDONLY;
	return out;
}

/*
 * Is a new handle of n with these open flags written past the page cache?
 * want: op_create asks for it (a file it made, opened write-only).  Under
 * n's write lock, so that a handle attached at the same time is seen.
 *
 * The kernel drops the pages others cached for a direct write's range
 * before it sends the write, and again once it is written (from Linux
 * 6.19, and in stable kernels that took that fix, as this one's tests
 * show): a read or a fault that lands in between does not keep the old
 * bytes.  No drop can save a page dirtied through a shared writable map
 * in that window, though: written back, it would put the old bytes over
 * the new ones.  So the file is written directly only when nothing else
 * has it open, and while it is, every handle opened read-write (the only
 * kind that can map it shared and writable) is direct as well: no page
 * of it is ever dirty in the cache.  Such a handle maps only privately
 * (a shared map fails with ENODEV); a read-only handle keeps the cache.
 *
 * The daemon does not drop the range itself after the write, for kernels
 * without that fix: a drop waits for the lock of a page a reader is
 * reading in, until its READ is answered, and a READ that the loop took
 * as it was ending is never answered, so a SIGTERM would leave the daemon
 * and the reader hung for good.
 */
static bool direct_handle(const struct node *n, int flags, bool want)
{
	if (want)
		return n->handles == NULL;
	if ((flags & O_ACCMODE) != O_RDWR)
		return false;
	for (const struct fhandle *o = n->handles; o; o = o->next_open) {
		if (o->direct)
			return true;
	}
	return false;
}

/*
 * Attach a locked backing fd of n to a new handle: load the file state if
 * this is the first open, apply O_TRUNC, give a new file its header.  On
 * success the handle owns fd; on failure fd is closed.
 */
static int attach(fuse_req_t req, struct node *n, int fd, int flags,
		  bool created, bool direct, uint32_t op, struct fhandle **hp)
{
	struct fhandle *h = calloc(1, sizeof(*h));
	uint64_t bad = UINT64_MAX;
	struct kref *k = kr_get();
	bool dropped = false;
	int ret = 0;

	*hp = NULL;
	if (h == NULL) {
		close(fd);
		kr_put(k);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&n->lock);
	if (n->handles == NULL || !n->loaded) {
		if (n->loaded)
			rkfs_file_release(&n->file);
		ret = rkfs_file_load(&n->file, fd, k->kr);
		if (ret == -EBADMSG && (flags & O_TRUNC)) {
			/* Truncating starts afresh: a damaged file can be
			 * overwritten. */
			memset(&n->file, 0, sizeof(n->file));
			ret = 0;
		}
		n->loaded = ret == 0;
	} else {
		ret = node_sync_locked(n, k->kr);
	}
	/* A file this request created is empty already. */
	if (created)
		flags &= ~O_TRUNC;
	if (ret == 0 && (flags & O_TRUNC)) {
		ret = drop_suidgid(req, fd,
				   rkfs_wire_kill_suidgid(op, node_id(n)));
		dropped = ret > 0;
	}
	if (ret >= 0 && (flags & O_TRUNC))
		ret = truncate_touch(n, fd, 0, k->kr, &bad);
	else if (ret == 0 && created && !n->file.has_header)
		ret = rkfs_file_init_empty(&n->file, fd, k->kr);
	if (ret < 0) {
		ret = report(n, ret, bad);
	} else {
		h->fd = fd;
		h->flags = flags;
		h->direct = direct_handle(n, flags, direct);
		h->node = n;
		h->next_open = n->handles;
		n->handles = h;
	}
	if (n->handles == NULL && n->loaded) {
		rkfs_file_release(&n->file);
		n->loaded = false;
	}
	pthread_rwlock_unlock(&n->lock);
	kr_put(k);
	if (ret < 0) {
		close(fd);
		free(h);
		return ret;
	}
	node_hold(n);
	*hp = h;
	/* The kernel does not refetch attributes after an O_TRUNC open. */
	if (dropped && rkfs_se)
		(void)fuse_lowlevel_notify_inval_inode(rkfs_se, node_id(n), -1,
						       0);
	return 0;
}

/*
 * Open n's backing file with the given caller flags and take LOCK_SH.
 * The node's fd names its inode; a rekey may replace the file while the
 * lock is awaited, and then the node is rebound and the open retried.
 */
static int open_backing(struct node *n, int flags, int *fdp)
{
	char proc[PROC_FD_LEN];
	unsigned waits = 0;
	struct stat st;
	int fd, nfd, ret;

	*fdp = -1;
	if (S_ISDIR(n->type))
		return -EISDIR;
	if (!S_ISREG(n->type))
		return -EINVAL;
	for (int tries = 0; tries < 64; tries++) {
		ret = node_refresh(n);
		if (ret < 0)
			return ret;
		nfd = node_fd_get(n);
		proc_fd_path(proc, sizeof(proc), nfd);
		/* A writer's read-modify-write of blocks must not move the
		 * file's atime: O_NOATIME on read-write fds, where allowed.
		 * Reads through a read-only fd mark atime as the backing
		 * filesystem does (relatime), without touching ctime. */
		fd = open(proc, /* a /proc/self/fd link: the node's inode */
			  backing_flags(flags) | O_CLOEXEC | O_NONBLOCK |
			      (backing_flags(flags) & O_RDWR ? O_NOATIME : 0));
		if (fd < 0 && errno == EPERM) /* not the owner, not root */
			fd = open(proc, /* a /proc/self/fd link, as above */
				  backing_flags(flags) | O_CLOEXEC | O_NONBLOCK);
		ret = fd < 0 ? -errno : 0;
		node_fd_put(n);
		if (ret < 0 && fd_budget_retry(-ret, &waits))
			continue; /* the pruner freed an fd */
		if (ret < 0)
			return ret;
		ret = rkfs_flock_retry(fd, LOCK_SH);
		if (ret == 0 && fstat(fd, &st) < 0)
			ret = -errno;
		if (ret == 0 && !S_ISREG(st.st_mode))
			ret = -EIO;
		if (ret < 0) {
			close(fd);
			return ret;
		}
		ret = st.st_nlink > 0 ? 0 : node_refresh(n);
		if (ret == 0) {
			/* Linked, or removed through the mount and still
			 * open: the file the caller asked for either way. */
			*fdp = fd;
			return 0;
		}
		close(fd);
		if (ret < 0)
			return ret;
		/* replaced by a rekey meanwhile: open the new file */
	}
	return -EIO;
}

int io_open(fuse_req_t req, struct node *n, int flags, struct fhandle **hp)
{
	int fd, ret;

	*hp = NULL;
	ret = open_backing(n, flags, &fd);
	if (ret < 0)
		return ret;
	return attach(req, n, fd, flags & ~O_TRUNC, false, false, FUSE_OPEN,
		      hp);
}

void io_close(struct fhandle *h)
{
	struct node *n;

	if (h == NULL)
		return;
	n = h->node;
	pthread_rwlock_wrlock(&n->lock);
	for (struct fhandle **pp = &n->handles; *pp; pp = &(*pp)->next_open) {
		if (*pp == h) {
			*pp = h->next_open;
			break;
		}
	}
	if (n->handles == NULL && n->loaded) {
		rkfs_file_release(&n->file);
		n->loaded = false;
	}
	pthread_rwlock_unlock(&n->lock);
	close(h->fd); /* drops the LOCK_SH */
	node_put(n);
	free(h);
}

static struct fhandle *pin(struct node *n, bool wait)
{
	if (!S_ISREG(n->type))
		return NULL;
	if (wait)
		pthread_rwlock_rdlock(&n->lock);
	else if (pthread_rwlock_tryrdlock(&n->lock) != 0)
		return NULL;
	if (n->handles)
		return n->handles; /* io_close() waits for the write lock */
	pthread_rwlock_unlock(&n->lock);
	return NULL;
}

struct fhandle *io_pin(struct node *n)
{
	return pin(n, true);
}

struct fhandle *io_pin_nowait(struct node *n)
{
	return pin(n, false);
}

void io_unpin(struct node *n)
{
	pthread_rwlock_unlock(&n->lock);
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(ino);
	struct fhandle *h;
	int fd, ret;

	ret = open_backing(n, fi->flags, &fd);
	if (ret == 0)
		ret = attach(req, n, fd, fi->flags, false, false, FUSE_OPEN,
			     &h);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->direct_io = h->direct;
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0)
		io_close(h); /* interrupted: the kernel has no handle */
}

bool reserved_name(const char *name)
{
	return rkfs_name_reserved(name);
}

/*
 * An O_PATH fd of the file open as fd (fstat'ed into st), which was opened
 * by name in dfd: taken by name when the name still leads to it (one
 * component, no symlink followed), else through fd's /proc/self/fd link.
 * The fd or -errno.
 */
static int path_fd_of(int dfd, const char *name, int fd, const struct stat *st)
{
	char proc[PROC_FD_LEN];
	struct stat pst;
	int pfd;

	pfd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd >= 0 && fstat(pfd, &pst) == 0 && pst.st_dev == st->st_dev &&
	    pst.st_ino == st->st_ino)
		return pfd;
	if (pfd >= 0)
		close(pfd);
	proc_fd_path(proc, sizeof(proc), fd);
	/* A /proc/self/fd link: the inode just opened. */
	pfd = open(proc, O_PATH | O_CLOEXEC);
	return pfd < 0 ? -errno : pfd;
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
	       mode_t mode, struct fuse_file_info *fi)
{
	struct node *p = node_of(parent), *n = NULL;
	int bflags = backing_flags(fi->flags) | O_NOFOLLOW | O_CLOEXEC;
	struct fuse_entry_param e;
	struct fhandle *h = NULL;
	bool created = true, locked = false, direct;
	unsigned tries = 0;
	struct creds cr;
	struct stat st;
	int dfd, fd = -1, pfd = -1, ret = 0;

	if (reserved_name(name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	dfd = dir_lock(p);
	if (dfd < 0) {
		fuse_reply_err(req, -dfd);
		return;
	}
	/* Made and opened as the caller (so an existing file is opened
	 * only if the caller may).  A new file is opened read-write
	 * whatever the caller asked for: it gets its header now. */
	ret = creds_enter(req, &cr);
	if (ret < 0)
		goto out_unlock;
	do {
		fd = openat(dfd, name,
			    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
				(bflags & (O_SYNC | O_DSYNC)),
			    mode & 07777);
		if (fd < 0 && errno == EEXIST && !(fi->flags & O_EXCL)) {
			created = false;
			fd = openat(dfd, name,
				    bflags | O_NOFOLLOW | O_NONBLOCK);
		}
		/* EMFILE comes before anything is made: try again once
		 * the pruner has freed an fd */
	} while (fd < 0 && fd_budget_retry(errno, &tries));
	ret = fd < 0 ? -errno : 0;
	creds_leave(&cr);
	if (ret < 0)
		goto out_unlock;
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode))
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	/* The node's own fd: by name (cheaper than a /proc/self/fd link)
	 * if that is still the file just opened, else from the open file. */
	if (ret == 0)
		pfd = path_fd_of(dfd, name, fd, &st);
	if (pfd < 0 && ret == 0)
		ret = pfd;
	/* Under the directory lock the name cannot be replaced, so a file
	 * lock taken now needs no re-check.  Only try it: the rekey tool
	 * takes the directory lock while it holds a file lock, so waiting
	 * for the file here could deadlock with it. */
	if (ret == 0)
		locked = flock(fd, LOCK_SH | LOCK_NB) == 0;
	else if (created && fd >= 0)
		(void)unlinkat(dfd, name, 0); /* nothing half-made stays */
out_unlock:
	dir_unlock(p);
	if (ret == 0) {
		n = node_enter(p, name, pfd, &st, false, &e, &ret);
		pfd = -1;
	}
	if (pfd >= 0)
		close(pfd);
	if (ret < 0) {
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, -ret);
		return;
	}
	/*
	 * A file made here and opened write-only is written past the
	 * kernel's page cache.  Through the cache, the kernel asks for
	 * security.capability before the first write to each file (it must
	 * know whether a write removes it): one more round trip for every
	 * new file, one in four that a small file costs.  Direct writes
	 * leave privileges to the daemon (op_write) and to the backing
	 * filesystem.  The handle cannot read or map the file, and the
	 * mount has no writeback cache, so only two things change: the
	 * bytes written are not left in the cache for a later reader, and
	 * a write() from a buffer that does not start on a page boundary
	 * is sent as two WRITEs when it spans more pages than one request
	 * carries (one block at the seam is then sealed twice).  How other
	 * handles stay coherent: direct_handle().  A file opened, not made,
	 * keeps the cache.
	 */
	direct = created && (fi->flags & O_ACCMODE) == O_WRONLY &&
		 direct_new_files;
	if (locked) {
		ret = attach(req, n, fd, fi->flags, created, direct,
			     FUSE_CREATE, &h);
	} else {
		/* Busy in a rekey: open it the long way, which waits. */
		close(fd);
		ret = open_backing(n, fi->flags, &fd);
		if (ret == 0)
			ret = attach(req, n, fd, fi->flags, false, direct,
				     FUSE_CREATE, &h);
	}
	if (ret == 0)
		ret = node_stat(n, &e.attr);
	if (ret < 0) {
		if (h)
			io_close(h);
		node_forget(n, 1);
		fuse_reply_err(req, -ret);
		return;
	}
	fi->direct_io = h->direct;
	fi->fh = (uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) != 0) {
		io_close(h);
		node_forget(n, 1);
	}
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	     struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	struct node *n = h->node;
	uint64_t bad = UINT64_MAX;
	struct kref *k;
	char *buf;
	ssize_t r;

	(void)ino;
	buf = malloc(size ? size : 1);
	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	k = kr_get();
	r = node_lock_current(n, &k, false);
	if (r == 0 && !n->loaded) {
		pthread_rwlock_unlock(&n->lock);
		r = -EIO; /* its state could not be reloaded */
	}
	if (r == 0) {
		read_ahead(h, (uint64_t)off, size);
		r = rkfs_file_read(&n->file, h->fd, buf, size, (uint64_t)off,
				   &bad);
		if (r == -EBADMSG) {
			pthread_rwlock_unlock(&n->lock);
			pthread_rwlock_wrlock(&n->lock);
			if (recover_locked(n, h->fd, k->kr) > 0)
				r = rkfs_file_read(&n->file, h->fd, buf, size,
						   (uint64_t)off, &bad);
		}
		if (r < 0)
			r = report(n, (int)r, bad);
		pthread_rwlock_unlock(&n->lock);
		if (r >= 0)
			report_clear(n);
	}
	kr_put(k);
	if (r < 0) {
		fuse_reply_err(req, (int)-r);
	} else {
		fuse_reply_buf(req, buf, (size_t)r);
	}
	free(buf);
}

/*
 * Sequential writers: start writing the backing file out behind them.
 * Left to itself the backing filesystem holds a large file's pages dirty
 * until memory pressure or the writer's fsync, which then waits for all
 * of it; starting the writeback of every finished 8 MiB keeps the disk
 * busy while the next blocks are encrypted.  Called under the node's
 * write lock.
 */
#define WB_CHUNK (8ULL << 20)

static void write_behind(struct fhandle *h, uint64_t off, size_t size)
{
	uint64_t cstart, cend;
	bool seq;

	rkfs_file_backing_range(off, size, &cstart, &cend);
	seq = continues(cstart, h->wb_end);
	h->wb_end = cend;
	if (size < SEQ_MIN_IO || !seq) {
		h->wb_from = cend;
		return;
	}
	if (cend < h->wb_from + WB_CHUNK)
		return;
	(void)sync_file_range(h->fd, (off_t)h->wb_from,
			      (off_t)(cend - h->wb_from),
			      SYNC_FILE_RANGE_WRITE);
	h->wb_from = cend;
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	      off_t off, struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	struct node *n = h->node;
	uint64_t bad = UINT64_MAX;
	bool dropped = false;
	struct kref *k;
	ssize_t r;

	k = kr_get();
	r = node_lock_current(n, &k, true);
	if (r == 0 && !n->loaded) {
		pthread_rwlock_unlock(&n->lock);
		r = -EIO; /* its state could not be reloaded */
	}
	if (r == 0) {
		/* O_APPEND writes at the size under the exclusive lock, so
		 * two appending handles never overwrite each other.  Page
		 * writeback carries its own offset. */
		if ((h->flags & O_APPEND) && !fi->writepage)
			off = (off_t)n->file.size;
		/* Normally already done by the SETATTR before it; this
		 * covers direct writes, which come with no SETATTR, and a
		 * kernel that skipped that check.  (File capabilities need
		 * nothing: the backing filesystem removes them on the
		 * daemon's own write, as on anyone's.) */
		r = drop_suidgid(req, h->fd,
				 rkfs_wire_kill_suidgid(FUSE_WRITE, ino));
		dropped = r > 0;
		if (r >= 0)
			r = rkfs_file_write_mt(&n->file, h->fd, buf, size,
					       (uint64_t)off, k->kr, &bad,
					       sealer);
		if (r < 0)
			r = report(n, (int)r, bad);
		else
			write_behind(h, (uint64_t)off, size);
		pthread_rwlock_unlock(&n->lock);
	}
	kr_put(k);
	/* The kernel keeps the mode it had cached: drop it, so that no
	 * exec or permission check meets the cleared bits. */
	if (dropped && rkfs_se)
		(void)fuse_lowlevel_notify_inval_inode(rkfs_se, ino, -1, 0);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

int io_truncate(fuse_req_t req, struct fhandle *h, off_t size)
{
	struct node *n = h->node;
	uint64_t bad = UINT64_MAX;
	struct kref *k;
	int ret;

	if (size < 0)
		return -EINVAL;
	k = kr_get();
	ret = node_lock_current(n, &k, true);
	if (ret < 0)
		goto out;
	if (!n->loaded) {
		ret = rkfs_file_load(&n->file, h->fd, k->kr);
		if (ret == -EBADMSG && size == 0) {
			memset(&n->file, 0, sizeof(n->file));
			ret = 0;
		}
		n->loaded = ret == 0;
	}
	if (ret == 0)
		ret = drop_suidgid(req, h->fd,
				   rkfs_wire_kill_suidgid(FUSE_SETATTR,
							  node_id(n)));
	if (ret >= 0)
		ret = truncate_touch(n, h->fd, (uint64_t)size, k->kr, &bad);
	if (ret < 0)
		ret = report(n, ret, bad);
	pthread_rwlock_unlock(&n->lock);
out:
	kr_put(k);
	return ret;
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
		  off_t len, struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	struct node *n = h->node;
	uint64_t bad = UINT64_MAX;
	struct kref *k;
	int ret;

	(void)ino;
	if (mode & ~FALLOC_FL_KEEP_SIZE) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	k = kr_get();
	ret = node_lock_current(n, &k, true);
	if (ret == 0 && !n->loaded) {
		pthread_rwlock_unlock(&n->lock);
		ret = -EIO;
	}
	if (ret == 0) {
		ret = drop_suidgid(req, h->fd, RKFS_KILL_UNLESS_FSETID);
		if (ret >= 0)
			ret = rkfs_file_allocate(
			    &n->file, h->fd, (uint64_t)off, (uint64_t)len,
			    (mode & FALLOC_FL_KEEP_SIZE) != 0, k->kr, &bad);
		if (ret < 0)
			ret = report(n, ret, bad);
		pthread_rwlock_unlock(&n->lock);
	}
	kr_put(k);
	fuse_reply_err(req, ret < 0 ? -ret : 0);
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	      struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	off_t r;

	(void)ino;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_rwlock_rdlock(&h->node->lock);
	r = h->node->loaded
		? rkfs_file_seek(&h->node->file, h->fd, off, whence)
		: -EIO;
	pthread_rwlock_unlock(&h->node->lock);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, r);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	      struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	uint64_t tok;
	int ret;

	(void)ino;
	tok = rkfs_file_sync_begin(&h->node->file);
	ret = (datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0 ? errno : 0;
	if (ret == 0)
		rkfs_file_sync_done(&h->node->file, tok);
	fuse_reply_err(req, ret);
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	io_close(fhandle_of(fi));
	fuse_reply_err(req, 0);
}
