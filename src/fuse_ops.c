/*
 * rekeyfs FUSE callbacks (libfuse3 high-level API, path based).
 *
 * Backing paths are relative to the backing root fd (path + 1, or "." for
 * "/"); namespace changes are made on the base name relative to the
 * parent directory's fd, which carries its rekey-protocol lock
 * (fuse_dirlock.c).  Regular files are served through per-inode nodes keyed by
 * the backing (st_dev, st_ino); each node holds a struct rkfs_file and a
 * rwlock (reads shared; writes, truncates and key changes exclusive).
 *
 * Limits of the high-level API, kept on purpose: each name of a hard-linked
 * file is its own kernel inode, so a size change made through one name
 * shows through the others once their 1 s attribute cache expires; and
 * with hard_remove off, a file unlinked while open lives on as a
 * .fuse_hidden* name until its last close (so fstat and I/O on it work).
 */
#include "fuse_rekeyfs_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>

#include <sodium.h>

#include "rekeyfs/error.h"
#include "rekeyfs/file.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/rekey.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* ---- keyring references ---- */

/*
 * The current keyring is swapped on reload; operations hold a reference
 * for their duration so an in-flight one never sees its keyring freed.
 */
struct kref {
	struct rkfs_keyring *kr;
	unsigned refs;
};

static struct rkfs_mount_state *ms;
static struct kref *cur_kr;
static pthread_mutex_t kr_mu = PTHREAD_MUTEX_INITIALIZER;

static struct kref *kr_get(void)
{
	struct kref *k;

	pthread_mutex_lock(&kr_mu);
	k = cur_kr;
	k->refs++;
	pthread_mutex_unlock(&kr_mu);
	return k;
}

static void kr_put(struct kref *k)
{
	bool last;

	pthread_mutex_lock(&kr_mu);
	last = --k->refs == 0;
	pthread_mutex_unlock(&kr_mu);
	if (last) {
		rkfs_keyring_free(k->kr);
		free(k);
	}
}

static int kr_install(struct rkfs_keyring *kr)
{
	struct kref *k = calloc(1, sizeof(*k)), *old;

	if (k == NULL)
		return -ENOMEM;
	k->kr = kr;
	k->refs = 1;
	pthread_mutex_lock(&kr_mu);
	old = cur_kr;
	cur_kr = k;
	pthread_mutex_unlock(&kr_mu);
	if (old)
		kr_put(old);
	return 0;
}

/* ---- nodes ---- */

struct node {
	struct node *next;
	dev_t dev;
	ino_t ino;
	unsigned refs; /* under table_mu */
	char *hidden;  /* .fuse_hidden* path libfuse gave it (table_mu) */
	bool loaded;   /* file is valid; under lock (write) */
	pthread_rwlock_t lock;
	struct rkfs_file file;
};

#define NODE_BUCKETS 4096

static struct node *table[NODE_BUCKETS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t node_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev;

	return (size_t)(h >> 20) % NODE_BUCKETS;
}

/* The node of a backing inode, if it has one.  table_mu held. */
static struct node *node_find(const struct stat *st)
{
	struct node *n = table[node_hash(st->st_dev, st->st_ino)];

	while (n && (n->dev != st->st_dev || n->ino != st->st_ino))
		n = n->next;
	return n;
}

static struct node *node_ref(const struct stat *st)
{
	size_t b = node_hash(st->st_dev, st->st_ino);
	struct node *n;

	pthread_mutex_lock(&table_mu);
	n = node_find(st);
	if (n) {
		n->refs++;
	} else {
		n = calloc(1, sizeof(*n));
		if (n) {
			n->dev = st->st_dev;
			n->ino = st->st_ino;
			n->refs = 1;
			pthread_rwlock_init(&n->lock, NULL);
			n->next = table[b];
			table[b] = n;
		}
	}
	pthread_mutex_unlock(&table_mu);
	return n;
}

static void unlink_hidden(const char *path);

static void node_put(struct node *n)
{
	size_t b = node_hash(n->dev, n->ino);
	struct node **pp;
	bool last;

	pthread_mutex_lock(&table_mu);
	last = --n->refs == 0;
	if (last) {
		for (pp = &table[b]; *pp; pp = &(*pp)->next) {
			if (*pp == n) {
				*pp = n->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&table_mu);
	if (last) {
		if (n->hidden) {
			unlink_hidden(n->hidden);
			free(n->hidden);
		}
		if (n->loaded)
			rkfs_file_release(&n->file);
		pthread_rwlock_destroy(&n->lock);
		free(n);
	}
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
static int report(struct node *n, const char *name, int err, uint64_t bad)
{
	uint64_t what;
	bool log;

	if (err != -EBADMSG && err != -ENOKEY && err != -EKEYREVOKED)
		return err;
	what = err == -EBADMSG ? bad : n->file.hdr.generation;
	if (name == NULL || name[0] == '\0')
		name = "(unlinked file)";
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
	if (err == -EBADMSG && bad == UINT64_MAX)
		rkfs_log(LOG_ERR, "%s: header or size is invalid", name);
	else if (err == -EBADMSG)
		rkfs_log(LOG_ERR, "%s: block %" PRIu64 " fails authentication",
			 name, bad);
	else if (err == -EKEYREVOKED)
		rkfs_log(LOG_ERR,
			 "%s: generation %" PRIu32
			 " is disabled in the keyring",
			 name, n->file.hdr.generation);
	else
		rkfs_log(LOG_ERR,
			 "%s: generation %" PRIu32 " is not in the keyring "
			 "(or destroyed)",
			 name, n->file.hdr.generation);
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

/* ---- handles ---- */

enum { H_FILE = 1, H_DIR = 2 };

struct fhandle {
	int kind;
	int fd;
	int flags; /* the caller's open flags */
	struct node *node;
	char *name; /* path at open, for messages */
	uint64_t seq_end;  /* end of the furthest read (backing offset) */
	uint64_t ra_until; /* backing read ahead up to here */
	uint64_t wb_end;   /* end of the last write (backing offset) */
	uint64_t wb_from;  /* writeback not yet started from here */
};

struct dhandle {
	int kind;
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

static inline void *handle_of(struct fuse_file_info *fi)
{
	return fi ? (void *)(uintptr_t)fi->fh : NULL;
}

static struct fhandle *fhandle_of(struct fuse_file_info *fi)
{
	struct fhandle *h = handle_of(fi);

	return h && h->kind == H_FILE ? h : NULL;
}

/* ---- paths and locks ---- */

static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static bool reserved(const char *path)
{
	const char *b = base_name(path);

	return b[0] && rkfs_name_reserved(b);
}

/*
 * LOCK_SH on path's parent directory: the rekey tool replaces files while
 * holding LOCK_EX there.  Returns the directory's fd, locked, for *at()
 * calls on the base name (the fd belongs to fuse_dirlock.c; give it back
 * with dir_unlock()), or -errno.
 */
static int dir_lock(const char *path)
{
	return rkfs_dirlock_get(path);
}

static void dir_unlock(int fd)
{
	rkfs_dirlock_put(fd);
}

static bool same_dir(const char *a, const char *b)
{
	const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');

	return sa - a == sb - b && strncmp(a, b, (size_t)(sa - a)) == 0;
}

/*
 * Open the backing file of path and take LOCK_SH on it (blocking).  The
 * rekey tool may have replaced the file by rename while we waited, so the
 * fd's inode is compared with the one now at path; on a mismatch reopen.
 */
static int open_locked(const char *path, int oflags, int *fdp, struct stat *stp)
{
	struct stat pst;
	int fd, ret;

	*fdp = -1;
	for (int tries = 0; tries < 64; tries++) {
		fd = openat(ms->rootfd, rel(path),
			    oflags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (fd < 0)
			return -errno;
		ret = rkfs_flock_retry(fd, LOCK_SH);
		if (ret == 0 && fstat(fd, stp) < 0)
			ret = -errno;
		if (ret < 0) {
			close(fd);
			return ret;
		}
		if (fstatat(ms->rootfd, rel(path), &pst, AT_SYMLINK_NOFOLLOW) <
			0 ||
		    (pst.st_dev == stp->st_dev && pst.st_ino == stp->st_ino)) {
			/* Gone from its name (unlinked): still the file the
			 * caller opened. */
			*fdp = fd;
			return 0;
		}
		close(fd);
	}
	return -EIO;
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

/* ---- ownership of new objects ---- */

/*
 * The daemon creates everything as itself; when it runs as root on behalf
 * of another user, give the new object to that user the way a local
 * filesystem would: caller's uid, caller's gid or the parent's gid if the
 * parent is setgid (new directories then keep setgid), mode exactly as
 * requested (chown clears suid/sgid, so re-apply them).
 */
static int set_owner(int dirfd, const char *path, mode_t mode)
{
	struct fuse_context *ctx = fuse_get_context();
	const char *name = base_name(path);
	struct stat pst, st;
	gid_t gid;
	mode_t want;

	if (ms->euid != 0 || ctx == NULL ||
	    (ctx->uid == ms->euid && ctx->gid == ms->egid))
		return 0; /* already the caller's, mode exact (umask 0) */
	if (fstat(dirfd, &pst) < 0 ||
	    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	gid = (pst.st_mode & S_ISGID) ? pst.st_gid : ctx->gid;
	if (st.st_uid != ctx->uid || st.st_gid != gid) {
		if (fchownat(dirfd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) <
		    0)
			return -errno;
	}
	if (S_ISLNK(st.st_mode))
		return 0;
	want = mode & 07777;
	if (S_ISDIR(st.st_mode) && (pst.st_mode & S_ISGID))
		want |= S_ISGID;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if ((st.st_mode & 07777) != want &&
	    fchmodat(dirfd, name, want, 0) < 0)
		return -errno;
	return 0;
}

/* ---- attributes ---- */

/*
 * Plaintext size for stat.  A backing size no valid file can have is
 * corruption: reads of it fail with EIO and log; stat still succeeds (so
 * the file can be listed, renamed and removed) and reports the size the
 * whole blocks present would hold.
 */
static off_t stat_size(off_t cipher)
{
	uint64_t plain, c = (uint64_t)cipher, full, rem;

	if (rkfs_size_to_plain(&plain, c) == 0)
		return (off_t)plain;
	if (c < RKFS_HEADER_LEN)
		return 0;
	full = (c - RKFS_HEADER_LEN) / RKFS_CBLOCK_SIZE;
	rem = (c - RKFS_HEADER_LEN) % RKFS_CBLOCK_SIZE;
	plain = full * RKFS_BLOCK_SIZE;
	if (rem > RKFS_BLOCK_OVERHEAD)
		plain += rem - RKFS_BLOCK_OVERHEAD;
	return (off_t)plain;
}

/* Is the caller of the current request in group gid? */
static bool caller_in_group(gid_t gid)
{
	struct fuse_context *ctx = fuse_get_context();
	gid_t groups[64];
	int n;

	if (ctx->gid == gid)
		return true;
	n = fuse_getgroups(64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/* ---- suid/sgid on modification ---- */

/*
 * A write, truncate or O_TRUNC open by a caller without CAP_FSETID clears
 * suid, and sgid where the kernel would (group-executable, or the caller
 * outside the file's group), as on any local filesystem.  The daemon
 * writes backing files as root, so the backing filesystem keeps the bits;
 * the daemon clears them.  Under FUSE_HANDLE_KILLPRIV_V2 the kernel leaves
 * this to the daemon entirely and tells it which requests
 * (rkfs_wire_kill_suidgid()):
 *
 *  - WRITE, truncating SETATTR and O_TRUNC OPEN/CREATE carry a flag when
 *    the caller lacks CAP_FSETID;
 *  - before a write to a file with suid/sgid the kernel sends a SETATTR
 *    that sets nothing, which libfuse answers with getattr alone; it is
 *    honoured there (op_getattr()) unless the caller has CAP_FSETID, so
 *    the reply carries the new mode and the kernel's cached one is right;
 *  - fallocate carries no flag, so the caller is asked about directly.
 *
 * Without v2 the kernel clears the bits itself before writes and
 * truncates; the O_TRUNC flag is honoured either way.
 */

/*
 * Does the caller of the current request hold CAP_FSETID?  Read from
 * /proc only when a file with suid/sgid is modified, which is rare; uid 0
 * stands in when the caller's status cannot be read (another pid
 * namespace, an exited process).
 */
static bool caller_has_fsetid(void)
{
	struct fuse_context *ctx = fuse_get_context();
	unsigned long long caps;
	char path[64], line[256];
	bool has = ctx->uid == 0;
	FILE *f;

	if (ctx->pid <= 0)
		return has;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)ctx->pid);
	f = fopen(path, "re");
	if (f == NULL)
		return has;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1) {
			has = (caps >> 4) & 1; /* CAP_FSETID */
			break;
		}
	fclose(f);
	return has;
}

/* The bits a modification of st by the caller clears, given its request. */
static mode_t suidgid_to_drop(const struct stat *st, enum rkfs_kill why)
{
	mode_t kill = 0;

	if (why == RKFS_KILL_NONE || !S_ISREG(st->st_mode))
		return 0;
	if (st->st_mode & S_ISUID)
		kill |= S_ISUID;
	if ((st->st_mode & S_ISGID) &&
	    ((st->st_mode & S_IXGRP) || !caller_in_group(st->st_gid)))
		kill |= S_ISGID;
	if (kill && why == RKFS_KILL_UNLESS_FSETID && caller_has_fsetid())
		kill = 0;
	return kill;
}

/* Clear them on an open backing file.  1 if it changed, 0, or -errno. */
static int drop_suidgid(int fd, enum rkfs_kill why)
{
	struct stat st;
	mode_t kill;

	if (why == RKFS_KILL_NONE || fstat(fd, &st) < 0)
		return 0;
	kill = suidgid_to_drop(&st, why);
	if (kill == 0)
		return 0;
	if (fchmod(fd, st.st_mode & 07777 & ~kill) < 0)
		return -errno;
	return 1;
}

static int meta_lock(const char *path);

/* The bare SETATTR case: clear the bits and report the new mode in st. */
static int getattr_drop_suidgid(const char *path, int fd, struct stat *st)
{
	mode_t kill = suidgid_to_drop(st, rkfs_wire_kill_suidgid());
	mode_t mode = st->st_mode & 07777 & ~kill;
	int dfd, ret = 0;

	if (kill == 0)
		return 0;
	if (fd >= 0) {
		if (fchmod(fd, mode) < 0)
			return -errno;
	} else {
		dfd = meta_lock(path);
		if (dfd < -1)
			return dfd;
		if (fchmodat(ms->rootfd, rel(path), mode, 0) < 0)
			ret = -errno;
		dir_unlock(dfd);
		if (ret < 0)
			return ret;
	}
	st->st_mode &= ~kill;
	return 0;
}

static int op_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	void *hv = handle_of(fi);
	int fd = -1;

	if (hv && ((struct fhandle *)hv)->kind == H_FILE) {
		fd = ((struct fhandle *)hv)->fd;
		if (fstat(fd, st) < 0)
			return -errno;
	} else if (hv && ((struct dhandle *)hv)->kind == H_DIR) {
		if (fstat(dirfd(((struct dhandle *)hv)->dp), st) < 0)
			return -errno;
	} else {
		if (path == NULL)
			return -ESTALE;
		if (reserved(path))
			return -ENOENT;
		if (fstatat(ms->rootfd, rel(path), st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (rkfs_wire_kill_suidgid() != RKFS_KILL_NONE) {
		int ret = getattr_drop_suidgid(path, fd, st);

		if (ret < 0)
			return ret;
	}
	if (S_ISREG(st->st_mode))
		st->st_size = stat_size(st->st_size);
	return 0;
}

static int op_access(const char *path, int mask)
{
	struct fuse_context *ctx = fuse_get_context();
	struct stat st;
	mode_t bits;

	if (reserved(path))
		return -ENOENT;
	if (fstatat(ms->rootfd, rel(path), &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (mask == F_OK)
		return 0;
	if (ctx->uid == 0) {
		if ((mask & X_OK) && !S_ISDIR(st.st_mode) &&
		    !(st.st_mode & 0111))
			return -EACCES;
		return 0;
	}
	if (ctx->uid == st.st_uid)
		bits = (st.st_mode >> 6) & 7;
	else if (caller_in_group(st.st_gid))
		bits = (st.st_mode >> 3) & 7;
	else
		bits = st.st_mode & 7;
	return ((mode_t)mask & bits) == (mode_t)mask ? 0 : -EACCES;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	if (size == 0)
		return -EINVAL;
	n = readlinkat(ms->rootfd, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/* ---- directories ---- */

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct dhandle *d;
	int fd;

	if (reserved(path))
		return -ENOENT;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	fd = openat(ms->rootfd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		goto fail;
	d->dp = fdopendir(fd);
	if (d->dp == NULL) {
		int e = errno;

		close(fd);
		errno = e;
		goto fail;
	}
	d->kind = H_DIR;
	fi->fh = (uintptr_t)d;
	return 0;
fail:
	free(d);
	return -errno;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		      off_t offset, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct dhandle *d = handle_of(fi);

	if (d == NULL || d->kind != H_DIR)
		return -EBADF;
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		off_t next;

		if (d->entry == NULL) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (d->entry == NULL) {
				if (errno)
					return -errno;
				break;
			}
		}
		next = telldir(d->dp);
		if (!rkfs_name_reserved(d->entry->d_name)) {
			memset(&st, 0, sizeof(st));
			st.st_ino = d->entry->d_ino;
			st.st_mode = (mode_t)d->entry->d_type << 12;
			if (filler(buf, d->entry->d_name, &st, next, 0))
				break;
		}
		d->entry = NULL;
		d->offset = next;
	}
	return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct dhandle *d = handle_of(fi);

	if (d && d->kind == H_DIR) {
		closedir(d->dp);
		free(d);
	}
	return 0;
}

static int op_fsyncdir(const char *path, int datasync,
		       struct fuse_file_info *fi)
{
	struct dhandle *d = handle_of(fi);

	if (d == NULL || d->kind != H_DIR)
		return -EBADF;
	if ((datasync ? fdatasync(dirfd(d->dp)) : fsync(dirfd(d->dp))) < 0)
		return -errno;
	return 0;
}

/* ---- namespace operations (LOCK_SH on the parent directories) ---- */

static int op_mkdir(const char *path, mode_t mode)
{
	int dfd, ret = 0;

	if (reserved(path))
		return -EPERM;
	dfd = dir_lock(path);
	if (dfd < 0)
		return dfd;
	if (mkdirat(dfd, base_name(path), mode & 07777) < 0)
		ret = -errno;
	else
		ret = set_owner(dfd, path, mode);
	dir_unlock(dfd);
	return ret;
}

static int init_header(int fd)
{
	struct kref *k = kr_get();
	struct rkfs_file f;
	int ret;

	memset(&f, 0, sizeof(f));
	ret = rkfs_file_init_empty(&f, fd, k->kr);
	rkfs_file_release(&f);
	kr_put(k);
	return ret;
}

static int op_mknod(const char *path, mode_t mode, dev_t rdev)
{
	int dfd, fd, ret = 0;

	if (reserved(path))
		return -EPERM;
	dfd = dir_lock(path);
	if (dfd < 0)
		return dfd;
	if (S_ISREG(mode)) {
		fd = openat(dfd, base_name(path),
			    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    mode & 07777);
		if (fd < 0) {
			ret = -errno;
			goto out;
		}
		/* A brand-new file: nobody else can hold its lock. */
		if (flock(fd, LOCK_SH | LOCK_NB) == 0)
			ret = init_header(fd);
		close(fd);
	} else if (mknodat(dfd, base_name(path), mode, rdev) < 0) {
		ret = -errno;
	}
	if (ret == 0)
		ret = set_owner(dfd, path, mode);
out:
	dir_unlock(dfd);
	return ret;
}

static int op_symlink(const char *target, const char *path)
{
	int dfd, ret = 0;

	if (reserved(path))
		return -EPERM;
	dfd = dir_lock(path);
	if (dfd < 0)
		return dfd;
	if (symlinkat(target, dfd, base_name(path)) < 0)
		ret = -errno;
	else
		ret = set_owner(dfd, path, 0777);
	dir_unlock(dfd);
	return ret;
}

static int op_unlink(const char *path)
{
	int dfd, ret = 0;

	if (reserved(path))
		return -ENOENT;
	dfd = dir_lock(path);
	if (dfd < 0)
		return dfd;
	if (unlinkat(dfd, base_name(path), 0) < 0)
		ret = -errno;
	dir_unlock(dfd);
	return ret;
}

static int op_rmdir(const char *path)
{
	int dfd, ret = 0;

	if (reserved(path))
		return -ENOENT;
	dfd = dir_lock(path);
	if (dfd < 0)
		return dfd;
	if (unlinkat(dfd, base_name(path), AT_REMOVEDIR) < 0)
		ret = -errno;
	else
		rkfs_dirlock_forget(path);
	dir_unlock(dfd);
	return ret;
}

/*
 * Files unlinked while open.  libfuse (hard_remove off) renames such a
 * file to a .fuse_hidden* name and unlinks that name at the last release,
 * so I/O and fstat on the open file keep working.  But libfuse 3.14 lets
 * the two race: when the release is handled while the unlink is between
 * its "still open?" check and the rename, neither removes the hidden
 * name, and it stays in the backing directory for good (its directory
 * can no longer be removed).  So the daemon tracks hidden names too: the
 * node of a file that is still open remembers its hidden path and
 * removes it when its last handle goes; a file whose handles are already
 * gone is removed at once.  libfuse's own later unlink then finds
 * nothing, which it ignores.
 */
static bool hiding(const char *to)
{
	const char *b = base_name(to);

	return strncmp(b, ".fuse_hidden", 12) == 0 && rkfs_wire_hiding(b);
}

static void adopt_hidden(int dfd, const char *to)
{
	struct stat st;
	struct node *n;
	char *copy;

	if (fstatat(dfd, base_name(to), &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(st.st_mode))
		return;
	copy = strdup(to);
	pthread_mutex_lock(&table_mu);
	n = node_find(&st);
	if (n && copy) {
		free(n->hidden);
		n->hidden = copy;
		copy = NULL;
	}
	pthread_mutex_unlock(&table_mu);
	if (n == NULL) /* released meanwhile: nobody will remove it */
		(void)unlinkat(dfd, base_name(to), 0);
	free(copy);
}

static void unlink_hidden(const char *path)
{
	int dfd = dir_lock(path);

	if (dfd < 0)
		return;
	(void)unlinkat(dfd, base_name(path), 0);
	dir_unlock(dfd);
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	int d1, d2 = -1, ret = 0;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (reserved(from) || reserved(to))
		return -EPERM;
	d1 = dir_lock(from);
	if (d1 < 0)
		return d1;
	if (!same_dir(from, to)) {
		d2 = dir_lock(to);
		if (d2 < 0) {
			dir_unlock(d1);
			return d2;
		}
	}
	if (renameat2(d1, base_name(from), d2 < 0 ? d1 : d2, base_name(to),
		      flags) < 0) {
		ret = -errno;
	} else {
		/* A directory moved or replaced: its old names are stale. */
		rkfs_dirlock_forget(from);
		rkfs_dirlock_forget(to);
		if (flags == 0 && hiding(to))
			adopt_hidden(d2 < 0 ? d1 : d2, to);
	}
	dir_unlock(d2);
	dir_unlock(d1);
	return ret;
}

static int op_link(const char *from, const char *to)
{
	int dfd, sfd = -1, ret = 0;

	if (reserved(to))
		return -EPERM;
	if (reserved(from))
		return -ENOENT;
	/* Both directories: the source name must not be swapped by a rekey
	 * replace halfway through. */
	dfd = dir_lock(to);
	if (dfd < 0)
		return dfd;
	if (!same_dir(from, to)) {
		sfd = dir_lock(from);
		if (sfd < 0) {
			dir_unlock(dfd);
			return sfd;
		}
	}
	if (linkat(sfd < 0 ? dfd : sfd, base_name(from), dfd, base_name(to),
		   0) < 0)
		ret = -errno;
	dir_unlock(sfd);
	dir_unlock(dfd);
	/* The high-level API gives the new name its own kernel inode, so
	 * the old name's cached link count must be dropped by hand.  Not
	 * with -s: the invalidation may wait for a read of that file, which
	 * only this thread could answer. */
	if (ret == 0 && !ms->single)
		(void)fuse_invalidate_path(fuse_get_context()->fuse, from);
	return ret;
}

/* ---- metadata changes (LOCK_SH on the parent: rekey copies metadata) ---- */

static int meta_lock(const char *path)
{
	if (path == NULL || path[1] == '\0')
		return -1; /* no lock needed / possible */
	return dir_lock(path);
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	int dfd, ret = 0;

	if (path == NULL && h == NULL)
		return -ESTALE;
	dfd = meta_lock(path);
	if (dfd < -1)
		return dfd;
	if (h ? fchmod(h->fd, mode & 07777) < 0
	      : fchmodat(ms->rootfd, rel(path), mode & 07777, 0) < 0)
		ret = -errno;
	dir_unlock(dfd);
	return ret;
}

static int op_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	int dfd, ret = 0;

	if (path == NULL && h == NULL)
		return -ESTALE;
	dfd = meta_lock(path);
	if (dfd < -1)
		return dfd;
	if (h ? fchown(h->fd, uid, gid) < 0
	      : fchownat(ms->rootfd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW) <
		    0)
		ret = -errno;
	dir_unlock(dfd);
	return ret;
}

static int op_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	int dfd, ret = 0;

	if (path == NULL && h == NULL)
		return -ESTALE;
	dfd = meta_lock(path);
	if (dfd < -1)
		return dfd;
	if (h ? futimens(h->fd, tv) < 0
	      : utimensat(ms->rootfd, rel(path), tv, AT_SYMLINK_NOFOLLOW) < 0)
		ret = -errno;
	dir_unlock(dfd);
	return ret;
}

/* xattrs go through /proc/self/fd of an O_PATH fd: there are no *at()
 * xattr calls, and this also reaches symlinks and special files without
 * opening them. */
static int xopen(const char *path, char *proc, size_t size)
{
	int fd = openat(ms->rootfd, rel(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	snprintf(proc, size, "/proc/self/fd/%d", fd);
	return fd;
}

static int op_setxattr(const char *path, const char *name, const char *value,
		       size_t size, int flags)
{
	char proc[64];
	int fd, dfd, ret = 0;

	if (reserved(path))
		return -ENOENT;
	dfd = meta_lock(path);
	if (dfd < -1)
		return dfd;
	fd = xopen(path, proc, sizeof(proc));
	if (fd < 0) {
		ret = fd;
	} else {
		if (setxattr(proc, name, value, size, flags) < 0)
			ret = -errno;
		close(fd);
	}
	dir_unlock(dfd);
	return ret;
}

/*
 * Reading xattrs needs no fd: one l*xattr() call on the path below the
 * root fd's /proc/self/fd link (the last component is not followed, as
 * with the O_PATH fd of xopen()).  The kernel asks for
 * security.capability on the first write to every new file, so this is
 * on the path of every small-file create.
 */
static int proc_path(char *buf, size_t size, const char *path)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d/%s", ms->rootfd,
			 rel(path));

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int op_getxattr(const char *path, const char *name, char *value,
		       size_t size)
{
	char proc[PATH_MAX + 32];
	ssize_t n;
	int ret;

	if (reserved(path))
		return -ENOENT;
	ret = proc_path(proc, sizeof(proc), path);
	if (ret < 0)
		return ret;
	n = lgetxattr(proc, name, value, size);
	return n < 0 ? -errno : (int)n;
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	char proc[PATH_MAX + 32];
	ssize_t n;
	int ret;

	if (reserved(path))
		return -ENOENT;
	ret = proc_path(proc, sizeof(proc), path);
	if (ret < 0)
		return ret;
	n = llistxattr(proc, list, size);
	return n < 0 ? -errno : (int)n;
}

static int op_removexattr(const char *path, const char *name)
{
	char proc[64];
	int fd, dfd, ret = 0;

	if (reserved(path))
		return -ENOENT;
	dfd = meta_lock(path);
	if (dfd < -1)
		return dfd;
	fd = xopen(path, proc, sizeof(proc));
	if (fd < 0) {
		ret = fd;
	} else {
		if (removexattr(proc, name) < 0)
			ret = -errno;
		close(fd);
	}
	dir_unlock(dfd);
	return ret;
}

static int op_statfs(const char *path, struct statvfs *st)
{
	if (fstatvfs(ms->rootfd, st) < 0)
		return -errno;
	return 0;
}

/* ---- regular files ---- */

/*
 * Attach a locked backing fd to its node, load the node if it is new, and
 * apply O_TRUNC.  On success the handle owns fd.
 */
static int attach(const char *path, int fd, const struct stat *st, int flags,
		  bool created, struct fuse_file_info *fi)
{
	struct fhandle *h = calloc(1, sizeof(*h));
	uint64_t bad = UINT64_MAX;
	struct kref *k = kr_get();
	struct node *n = NULL;
	bool dropped = false;
	int ret = 0;

	if (h)
		h->name = strdup(rel(path));
	if (h == NULL || h->name == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	n = node_ref(st);
	if (n == NULL) {
		ret = -ENOMEM;
		goto fail;
	}
	pthread_rwlock_wrlock(&n->lock);
	if (!n->loaded) {
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
	if (ret == 0 && (flags & O_TRUNC)) {
		ret = drop_suidgid(fd, rkfs_wire_kill_suidgid());
		dropped = ret > 0;
	}
	if (ret >= 0 && (flags & O_TRUNC))
		ret = rkfs_file_truncate(&n->file, fd, 0, k->kr, &bad);
	else if (ret == 0 && created && !n->file.has_header)
		ret = rkfs_file_init_empty(&n->file, fd, k->kr);
	if (ret < 0)
		ret = report(n, h->name, ret, bad);
	pthread_rwlock_unlock(&n->lock);
	if (ret < 0)
		goto fail;
	h->kind = H_FILE;
	h->fd = fd;
	h->flags = flags;
	h->node = n;
	fi->fh = (uintptr_t)h;
	kr_put(k);
	/* The kernel does not refetch attributes after an O_TRUNC open. */
	if (dropped)
		(void)fuse_invalidate_path(fuse_get_context()->fuse, path);
	return 0;
fail:
	if (n)
		node_put(n);
	if (h)
		free(h->name);
	free(h);
	close(fd);
	kr_put(k);
	return ret;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct stat st;
	int fd, ret;

	if (reserved(path))
		return -ENOENT;
	ret = open_locked(path, backing_flags(fi->flags), &fd, &st);
	if (ret < 0)
		return ret;
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	return attach(path, fd, &st, fi->flags, false, fi);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int bflags = backing_flags(fi->flags) | O_NOFOLLOW | O_CLOEXEC;
	const char *name = base_name(path);
	bool created = true, locked = false;
	struct stat st, pst;
	int dfd, fd, ret;

	if (reserved(path))
		return -EPERM;
	dfd = dir_lock(path);
	if (dfd < 0)
		return dfd;
	fd = openat(dfd, name, bflags | O_CREAT | O_EXCL, mode & 07777);
	if (fd < 0 && errno == EEXIST && !(fi->flags & O_EXCL)) {
		created = false;
		fd = openat(dfd, name, bflags);
	}
	if (fd < 0) {
		ret = -errno;
		dir_unlock(dfd);
		return ret;
	}
	ret = created ? set_owner(dfd, path, mode) : 0;
	/* Under the directory lock the name cannot be replaced, so a file
	 * lock taken now needs no re-check.  Only try it: the rekey tool
	 * takes the directory lock while it holds a file lock, so waiting
	 * for the file here could deadlock with it. */
	if (ret == 0)
		locked = flock(fd, LOCK_SH | LOCK_NB) == 0;
	dir_unlock(dfd);
	if (ret == 0 && !locked)
		ret = rkfs_flock_retry(fd, LOCK_SH);
	if (ret == 0 && fstat(fd, &st) < 0)
		ret = -errno;
	if (ret < 0) {
		close(fd);
		return ret;
	}
	if (!locked &&
	    fstatat(ms->rootfd, rel(path), &pst, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (pst.st_dev != st.st_dev || pst.st_ino != st.st_ino)) {
		/* Replaced while we waited for the lock. */
		close(fd);
		created = false;
		ret = open_locked(path, backing_flags(fi->flags), &fd, &st);
		if (ret < 0)
			return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	return attach(path, fd, &st, fi->flags, created, fi);
}

/*
 * Large writes are sealed on two threads: a helper takes the second half
 * of the range while the request's thread does the first.  The halves are
 * split on a block boundary and the file is grown to its final size first,
 * so each half is a plain overwrite of whole blocks that never touches the
 * other's blocks or the final-block flag (both store the unchanged size).
 * One helper for the whole mount: a write that finds it busy runs alone.
 * Reads need no helper: kernel readahead already sends several requests
 * at once, and they decrypt on separate threads under the shared lock.
 */
#define PAR_MIN (256 * 1024)

struct par {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool started, busy, posted, done, quit;
	struct rkfs_file *f;
	int fd;
	const char *buf;
	size_t len;
	uint64_t off;
	const struct rkfs_keyring *kr;
	uint64_t bad;
	ssize_t ret;
};

static struct par par = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
};

static void *par_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&par.mu);
	for (;;) {
		while (!par.posted && !par.quit)
			pthread_cond_wait(&par.cv, &par.mu);
		if (par.quit)
			break;
		pthread_mutex_unlock(&par.mu);
		par.ret = rkfs_file_write(par.f, par.fd, par.buf, par.len,
					  par.off, par.kr, &par.bad);
		pthread_mutex_lock(&par.mu);
		par.posted = false;
		par.done = true;
		pthread_cond_broadcast(&par.cv);
	}
	pthread_mutex_unlock(&par.mu);
	return NULL;
}

static bool par_claim(void)
{
	bool ok = false;

	pthread_mutex_lock(&par.mu);
	if (par.started && !par.busy) {
		par.busy = true;
		ok = true;
	}
	pthread_mutex_unlock(&par.mu);
	return ok;
}

/* Called with the node's write lock held and the helper claimed. */
static ssize_t write_parallel(struct rkfs_file *f, int fd, const char *buf,
			      size_t len, uint64_t off,
			      const struct rkfs_keyring *kr, uint64_t *bad)
{
	uint64_t end = off + len, mid, cstart, cend;
	/* Growing through a truncate leaves a hole for a moment; the two
	 * halves fill it. */
	bool dense = f->dense && !rkfs_write_leaves_hole(f->size, off);
	ssize_t r1, r2;
	int ret = 0;

	mid = (off + len / 2) / RKFS_BLOCK_SIZE * RKFS_BLOCK_SIZE;
	if (end > f->size) {
		/* Reserve the space first so a full disk fails before
		 * anything changes, then grow to the final size. */
		cstart = rkfs_block_offset(off / RKFS_BLOCK_SIZE);
		cend = rkfs_size_to_cipher(end);
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)cstart,
			      (off_t)(cend - cstart)) < 0 &&
		    errno != EOPNOTSUPP && errno != ENOSYS)
			ret = -errno;
		if (ret == 0)
			ret = rkfs_file_truncate(f, fd, end, kr, bad);
	}
	pthread_mutex_lock(&par.mu);
	if (ret == 0) {
		par.f = f;
		par.fd = fd;
		par.buf = buf + (mid - off);
		par.len = (size_t)(end - mid);
		par.off = mid;
		par.kr = kr;
		par.bad = UINT64_MAX;
		par.done = false;
		par.posted = true;
		pthread_cond_broadcast(&par.cv);
	}
	pthread_mutex_unlock(&par.mu);
	if (ret < 0) {
		r1 = ret;
		r2 = 0;
		goto out;
	}
	r1 = rkfs_file_write(f, fd, buf, (size_t)(mid - off), off, kr, bad);
	pthread_mutex_lock(&par.mu);
	while (!par.done)
		pthread_cond_wait(&par.cv, &par.mu);
	r2 = par.ret;
	if (r1 >= 0 && r2 < 0)
		*bad = par.bad;
	pthread_mutex_unlock(&par.mu);
out:
	pthread_mutex_lock(&par.mu);
	par.busy = false;
	pthread_mutex_unlock(&par.mu);
	if (r1 < 0)
		return r1;
	if (r2 < 0)
		return r2;
	f->dense = dense;
	return (ssize_t)len;
}

static bool reload_if_stale(void);

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
	ret = rkfs_rekey_recover(ms->rootfd, ms->root, kr,
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
	uint64_t cstart = rkfs_block_offset(off / RKFS_BLOCK_SIZE);
	uint64_t cend = rkfs_block_offset((off + size) / RKFS_BLOCK_SIZE);
	uint64_t last = __atomic_load_n(&h->seq_end, __ATOMIC_RELAXED);
	uint64_t until = __atomic_load_n(&h->ra_until, __ATOMIC_RELAXED);

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

static int op_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	uint64_t bad = UINT64_MAX;
	struct kref *k;
	struct node *n;
	ssize_t r;

	if (h == NULL)
		return -EBADF;
	n = h->node;
	k = kr_get();
	r = node_lock_current(n, &k, false);
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
			r = report(n, h->name, (int)r, bad);
		pthread_rwlock_unlock(&n->lock);
		if (r >= 0)
			report_clear(n);
	}
	kr_put(k);
	return (int)r;
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
	uint64_t cstart = rkfs_block_offset(off / RKFS_BLOCK_SIZE);
	uint64_t cend = rkfs_block_offset((off + size) / RKFS_BLOCK_SIZE);
	bool seq = continues(cstart, h->wb_end);

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

static int op_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	uint64_t bad = UINT64_MAX;
	struct kref *k;
	struct node *n;
	ssize_t r;

	if (h == NULL)
		return -EBADF;
	n = h->node;
	k = kr_get();
	r = node_lock_current(n, &k, true);
	if (r == 0) {
		/* O_APPEND writes at the size under the exclusive lock, so
		 * two appending handles never overwrite each other.  Page
		 * writeback carries its own offset. */
		if ((h->flags & O_APPEND) && !fi->writepage)
			off = (off_t)n->file.size;
		/* Normally already done by the SETATTR before it; this
		 * covers a kernel that skipped that check.  Its cached mode
		 * then catches up when its attributes expire. */
		r = drop_suidgid(h->fd, rkfs_wire_kill_suidgid());
		if (r < 0)
			; /* nothing written */
		else if (size >= PAR_MIN && n->file.has_header &&
			 n->file.key && par_claim())
			r = write_parallel(&n->file, h->fd, buf, size,
					   (uint64_t)off, k->kr, &bad);
		else
			r = rkfs_file_write(&n->file, h->fd, buf, size,
					    (uint64_t)off, k->kr, &bad);
		if (r < 0)
			r = report(n, h->name, (int)r, bad);
		else
			write_behind(h, (uint64_t)off, size);
		pthread_rwlock_unlock(&n->lock);
	}
	kr_put(k);
	return (int)r;
}

static int file_truncate(struct fhandle *h, int fd, struct node *n,
			 const char *name, off_t size)
{
	uint64_t bad = UINT64_MAX;
	struct kref *k;
	int ret;

	if (size < 0)
		return -EINVAL;
	k = kr_get();
	pthread_rwlock_wrlock(&n->lock);
	if (!n->loaded) {
		ret = rkfs_file_load(&n->file, fd, k->kr);
		if (ret == -EBADMSG && size == 0) {
			memset(&n->file, 0, sizeof(n->file));
			ret = 0;
		}
		n->loaded = ret == 0;
	} else {
		ret = node_sync_locked(n, k->kr);
	}
	if (ret == 0)
		ret = drop_suidgid(fd, rkfs_wire_kill_suidgid());
	if (ret >= 0)
		ret = rkfs_file_truncate(&n->file, fd, (uint64_t)size, k->kr,
					 &bad);
	if (ret < 0)
		ret = report(n, name, ret, bad);
	pthread_rwlock_unlock(&n->lock);
	kr_put(k);
	(void)h;
	return ret;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	struct stat st;
	struct node *n;
	int fd, ret;

	if (h && (h->flags & O_ACCMODE) != O_RDONLY)
		return file_truncate(h, h->fd, h->node, h->name, size);
	if (path == NULL)
		return -ESTALE;
	if (reserved(path))
		return -ENOENT;
	ret = open_locked(path, O_RDWR, &fd, &st);
	if (ret < 0)
		return ret;
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	n = node_ref(&st);
	if (n == NULL) {
		close(fd);
		return -ENOMEM;
	}
	ret = file_truncate(NULL, fd, n, rel(path), size);
	node_put(n);
	close(fd);
	return ret;
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	uint64_t bad = UINT64_MAX, end, cstart, cend;
	struct kref *k;
	struct node *n;
	int ret;

	if (h == NULL)
		return -EBADF;
	if (mode & ~FALLOC_FL_KEEP_SIZE)
		return -EOPNOTSUPP;
	if (off < 0 || len <= 0)
		return -EINVAL;
	end = (uint64_t)off + (uint64_t)len;
	n = h->node;
	k = kr_get();
	ret = node_wrlock(n, k->kr);
	if (ret < 0)
		goto out;
	/* Reserve the ciphertext of the range; unwritten blocks are zero on
	 * disk and read as holes. */
	cstart = rkfs_block_offset((uint64_t)off / RKFS_BLOCK_SIZE);
	cend = rkfs_block_offset(rkfs_block_count(end));
	ret = drop_suidgid(h->fd, RKFS_KILL_UNLESS_FSETID);
	if (ret > 0)
		ret = 0;
	if (ret == 0 &&
	    fallocate(h->fd, FALLOC_FL_KEEP_SIZE, (off_t)cstart,
		      (off_t)(cend - cstart)) < 0 &&
	    errno != EOPNOTSUPP)
		ret = -errno;
	if (ret == 0 && !(mode & FALLOC_FL_KEEP_SIZE) && end > n->file.size)
		ret = rkfs_file_truncate(&n->file, h->fd, end, k->kr, &bad);
	if (ret < 0)
		ret = report(n, h->name, ret, bad);
	pthread_rwlock_unlock(&n->lock);
out:
	kr_put(k);
	return ret;
}

/* Is block i of a file of size plain a hole (all-zero, not final)? */
static int block_is_hole(int fd, uint64_t i, uint64_t plain)
{
	uint8_t cb[RKFS_CBLOCK_SIZE];
	ssize_t n;

	if (i >= rkfs_block_count(plain) - 1)
		return 0;
	n = rkfs_pread_full(fd, cb, sizeof(cb), (off_t)rkfs_block_offset(i));
	if (n < 0)
		return (int)n;
	return (size_t)n == sizeof(cb) && rkfs_is_zero(cb, sizeof(cb));
}

#define SEEK_SCAN_MAX 1024 /* blocks examined one by one per call */

/*
 * SEEK_DATA / SEEK_HOLE in whole plaintext blocks.  The backing file's
 * own SEEK_DATA skips unallocated ranges; blocks inside allocated pages
 * are then checked for the all-zero hole marker.  A scan that gives up
 * reports data (SEEK_DATA) or the backing's next hole, which is always
 * correct, only less precise.
 */
static off_t op_lseek(const char *path, off_t off, int whence,
		      struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);
	uint64_t size, blk, nblocks, c;
	off_t r, ret;
	int hole;

	if (h == NULL)
		return -EBADF;
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	pthread_rwlock_rdlock(&h->node->lock);
	size = h->node->file.size;
	if (off < 0 || (uint64_t)off >= size) {
		ret = -ENXIO;
		goto out;
	}
	nblocks = rkfs_block_count(size);
	blk = (uint64_t)off / RKFS_BLOCK_SIZE;
	for (int scanned = 0; scanned < SEEK_SCAN_MAX && blk < nblocks;
	     scanned++) {
		if (whence == SEEK_DATA) {
			r = lseek(h->fd, (off_t)rkfs_block_offset(blk),
				  SEEK_DATA);
			if (r < 0) {
				ret = errno == ENXIO ? -ENXIO : -errno;
				goto out;
			}
			c = (uint64_t)r < RKFS_HEADER_LEN
				? 0
				: ((uint64_t)r - RKFS_HEADER_LEN) /
				      RKFS_CBLOCK_SIZE;
			if (c > blk)
				blk = c;
		}
		hole = block_is_hole(h->fd, blk, size);
		if (hole < 0) {
			ret = hole;
			goto out;
		}
		if (hole == (whence == SEEK_HOLE))
			break;
		blk++;
	}
	if (blk >= nblocks) {
		ret = whence == SEEK_DATA ? -ENXIO : (off_t)size;
		goto out;
	}
	c = blk * RKFS_BLOCK_SIZE;
	ret = (off_t)(c < (uint64_t)off ? (uint64_t)off : c);
out:
	pthread_rwlock_unlock(&h->node->lock);
	return ret;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);

	if (h == NULL)
		return -EBADF;
	if ((datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0)
		return -errno;
	return 0;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct fhandle *h = fhandle_of(fi);

	if (h == NULL)
		return 0;
	/* Node first: once the fd is closed the inode may be freed and its
	 * number reused by a new file, which must not find this node. */
	node_put(h->node);
	close(h->fd); /* drops the LOCK_SH */
	free(h->name);
	free(h);
	return 0;
}

/* ---- lifecycle ---- */

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 1;
	cfg->nullpath_ok = 1;
	cfg->hard_remove = 0;
	/* Names change only through the mount: rekeyfs-rekey keeps every
	 * name (it renames a hidden copy over it, and path-based requests
	 * then reach the new file), so the kernel may keep names for 10 s
	 * and skip a LOOKUP before most unlinks and opens.  Attributes (a
	 * rekeyed file's inode number, sizes seen through other hard links)
	 * expire after 1 s, and a missing name is never cached. */
	cfg->entry_timeout = 10.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0.0;
	/* Ask for 1 MiB requests; libfuse derives max_pages from this.  The
	 * kernel sets the mount's readahead to the smaller of this and what
	 * it is when the reply arrives (raised already, as root). */
	conn->max_write = 1U << 20;
	conn->max_readahead = RKFS_READAHEAD_KB * 1024U;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	pthread_mutex_lock(&par.mu);
	if (!par.started &&
	    pthread_create(&par.thread, NULL, par_main, NULL) == 0)
		par.started = true;
	pthread_mutex_unlock(&par.mu);
	return NULL;
}

/*
 * No flush: the daemon has nothing to do at close(), and the first FLUSH
 * answered ENOSYS makes the kernel stop sending them, one round trip less
 * per close().  Data is written through on every write, so nothing waits
 * for a flush.
 */
static const struct fuse_operations ops = {
    .init = op_init,
    .getattr = op_getattr,
    .access = op_access,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .chmod = op_chmod,
    .chown = op_chown,
    .truncate = op_truncate,
    .utimens = op_utimens,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .statfs = op_statfs,
    .release = op_release,
    .fsync = op_fsync,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
};

const struct fuse_operations *rkfs_fs_operations(void)
{
	return &ops;
}

/*
 * Identity of the keyring file as of the last load attempt, so that a
 * file in an unknown generation triggers at most one extra reload per
 * change of the file.  Under reload_mu.
 */
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;
static struct stat kr_seen;

static bool keyring_file_changed(const struct stat *st)
{
	return st->st_dev != kr_seen.st_dev || st->st_ino != kr_seen.st_ino ||
	       st->st_size != kr_seen.st_size ||
	       st->st_mtim.tv_sec != kr_seen.st_mtim.tv_sec ||
	       st->st_mtim.tv_nsec != kr_seen.st_mtim.tv_nsec;
}

void rkfs_fs_setup(struct rkfs_mount_state *state, struct rkfs_keyring *kr)
{
	ms = state;
	ms->euid = geteuid();
	ms->egid = getegid();
	rkfs_dirlock_init(ms->rootfd);
	if (stat(ms->keyring, &kr_seen) < 0)
		memset(&kr_seen, 0, sizeof(kr_seen));
	if (kr_install(kr) < 0) {
		rkfs_log(LOG_ERR, "out of memory");
		abort();
	}
}

static int reload_locked(const char *why);

int rkfs_fs_reload(const char *why)
{
	int ret;

	pthread_mutex_lock(&reload_mu);
	ret = reload_locked(why);
	pthread_mutex_unlock(&reload_mu);
	return ret;
}

/*
 * A file names a generation this mount does not know.  A rotation may have
 * reached the keyring file (and the rekey tool) before the asynchronous
 * reload did, so if the file changed since it was last read, reload now.
 * Returns true if a new keyring was installed.
 */
static bool reload_if_stale(void)
{
	struct stat st;
	bool done = false;

	pthread_mutex_lock(&reload_mu);
	if (stat(ms->keyring, &st) == 0 && keyring_file_changed(&st))
		done = reload_locked("a file uses a generation this mount did "
				     "not know yet") == 0;
	pthread_mutex_unlock(&reload_mu);
	return done;
}

static int reload_locked(const char *why)
{
	struct rkfs_keyring *kr = NULL;
	struct rkfs_error err = {{0}};
	uint32_t old_primary;
	struct kref *k;
	int ret;

	if (stat(ms->keyring, &kr_seen) < 0)
		memset(&kr_seen, 0, sizeof(kr_seen));
	ret = rkfs_keyring_load(&kr, ms->keyring, RKFS_KR_LOAD_KEYS, &err);
	if (ret == 0)
		ret = rkfs_meta_check(ms->meta, kr, ms->root, &err);
	if (ret == 0 && !ms->ro && kr->primary)
		ret = rkfs_meta_record(ms->meta, ms->rootfd, kr, kr->primary,
				       ms->root, &err);
	if (ret < 0) {
		rkfs_log(LOG_ERR,
			 "keyring reload (%s) failed, keeping the old keyring: "
			 "%s",
			 why, err.msg[0] ? err.msg : strerror(-ret));
		rkfs_keyring_free(kr);
		return ret;
	}
	k = kr_get();
	old_primary = k->kr->primary;
	kr_put(k);
	ret = kr_install(kr);
	if (ret < 0) {
		rkfs_log(LOG_ERR, "keyring reload (%s) failed: out of memory",
			 why);
		rkfs_keyring_free(kr);
		return ret;
	}
	rkfs_log(LOG_INFO,
		 "keyring reloaded (%s): primary generation %" PRIu32
		 " (was %" PRIu32 ")",
		 why, kr->primary, old_primary);
	return 0;
}

void rkfs_fs_relock_keys(void)
{
	struct kref *k = kr_get();

	for (size_t i = 0; i < k->kr->count; i++)
		if (k->kr->gens[i].key)
			(void)sodium_mlock(k->kr->gens[i].key, RKFS_KEY_LEN);
	kr_put(k);
}

void rkfs_fs_teardown(void)
{
	struct kref *k;

	rkfs_dirlock_clear();
	if (par.started) {
		pthread_mutex_lock(&par.mu);
		par.quit = true;
		pthread_cond_broadcast(&par.cv);
		pthread_mutex_unlock(&par.mu);
		pthread_join(par.thread, NULL);
		par.started = false;
	}

	pthread_mutex_lock(&kr_mu);
	k = cur_kr;
	cur_kr = NULL;
	pthread_mutex_unlock(&kr_mu);
	if (k)
		kr_put(k);
}
