/*
 * Internal to the rekey engine (rekey.c): a parallel, streaming walk of a
 * backing tree, and the (dev, ino) set it and the engine share.
 *
 * The walk reads each directory with getdents64 in large batches and
 * hands the regular files of each batch, in groups of one directory, to a
 * callback, after opening each file (openat relative to its directory,
 * O_NOFOLLOW) and reading the first bytes of it.  Many threads do the
 * opens and reads at once: on a cold cache the walk waits on the disk,
 * and the disk answers a deep queue much faster than one request at a
 * time.  Within a batch the files are taken in inode order, which on
 * most filesystems is close to the order of their inodes and data on
 * disk.
 *
 * Memory does not grow with the tree: a directory is never held whole
 * (its entries are passed on batch by batch, and the reader waits while
 * too many are queued), pending subdirectories are bounded (beyond the
 * bound a reader descends itself), and nothing is kept of a file once
 * its callback returns, except that files with several links are
 * remembered so that each is reported once.
 *
 * Safety: nothing is followed.  d_type only says what to try: a name the
 * directory calls a regular file is opened with O_NOFOLLOW|O_NONBLOCK and
 * kept only if fstat() of the open file says it is one; a directory is
 * opened with O_DIRECTORY|O_NOFOLLOW and entered only on the root's
 * filesystem; DT_UNKNOWN (filesystems without d_type) is resolved with
 * fstatat(AT_SYMLINK_NOFOLLOW) first.  Symlinks, fifos, sockets and
 * devices are never opened on purpose, and anything whose type changed
 * between the listing and the open is skipped.
 */
#ifndef RKFS_WALK_I_H
#define RKFS_WALK_I_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* A set of (dev, ino) pairs; zero-initialised is empty.  Not locked. */
struct rkfs_inoset {
	uint64_t *keys; /* pairs dev + 1, ino; 0, 0 = empty slot */
	size_t cap, n;
};

bool rkfs_inoset_has(const struct rkfs_inoset *s, dev_t dev, ino_t ino)
    __attribute__((nonnull));
/* 1 if added, 0 if it was there already, -ENOMEM. */
int rkfs_inoset_add(struct rkfs_inoset *s, dev_t dev, ino_t ino)
    __attribute__((nonnull));
void rkfs_inoset_free(struct rkfs_inoset *s) __attribute__((nonnull));

#define RKFS_WALK_HDR_MAX 32

/* A directory of the walk, valid during a callback about it. */
struct rkfs_walk_dir {
	const char *path; /* relative to the root, "" for the root itself */
	int fd;		  /* the directory, open */
};

/* One regular file, as the walk found it. */
struct rkfs_walk_file {
	const char *name;
	/* from fstat() of the opened file (or fstatat()) */
	dev_t dev;
	ino_t ino;
	off_t size;
	nlink_t nlink;
	/*
	 * Bytes read from offset 0 (at most hdr_len; 0 for an empty file),
	 * or -errno when the file could not be opened or read (the fields
	 * above are then from fstatat()).
	 */
	int nhdr;
	uint8_t hdr[RKFS_WALK_HDR_MAX];
};

struct rkfs_walk_ops {
	/*
	 * Regular files of one directory, n >= 1, each file reported once
	 * per walk (several names of one inode: the first found).  Called
	 * from the walk's threads, several at once; v may be changed.  A
	 * negative return stops the walk with that error.  May block (the
	 * walk then slows down; it does not need the callback to return to
	 * make progress elsewhere).
	 */
	int (*files)(void *arg, const struct rkfs_walk_dir *d,
		     struct rkfs_walk_file *v, size_t n);
	/*
	 * A name with the reserved prefix (rkfs_name_reserved()), any type,
	 * never opened by the walk.  Called from the thread reading d,
	 * which waits for it.  May be NULL.  Negative: stop, as above.
	 */
	int (*reserved)(void *arg, const struct rkfs_walk_dir *d,
			const char *name);
	void *arg;
	size_t hdr_len;	     /* bytes to read of each file, <= HDR_MAX */
	unsigned threads;    /* 0: a default for a cold disk */
	size_t group;	     /* files per callback at most; 0: a default */
	bool ignore_dtype;   /* act as on a filesystem without d_type */
	volatile sig_atomic_t *stop; /* set: the walk ends early; NULL */
};

/*
 * Walk the tree under rootfd (which stays the caller's).  Returns 0 when
 * the whole tree was walked (or stop was set), or the first negative
 * return of a callback, or -errno of a failure that would make the walk
 * incomplete (the root unreadable, out of memory or file descriptors, a
 * directory read failing midway).  Directories that vanish or cannot be
 * opened for lack of permission are skipped, as are files that vanish.
 */
int rkfs_walk(int rootfd, const struct rkfs_walk_ops *ops)
    __attribute__((warn_unused_result, nonnull));

#endif /* RKFS_WALK_I_H */
