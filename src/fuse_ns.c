/*
 * Namespace operations: lookup and forget, making and removing names,
 * rename, link, and directory listings.  Each acts on one name component
 * relative to the parent directory node's fd, never following a symlink,
 * and holds LOCK_SH on the directories involved (the rekey protocol: the
 * tool replaces files by rename under LOCK_EX on their directory).  A new
 * object is reopened as O_PATH without following symlinks and must have
 * the type just made before it is given to the caller or entered as a
 * node; anything else is an error, never an action on what a swapped-in
 * symlink points to.
 */
#include "fuse_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static void reply_entry(fuse_req_t req, struct node *n,
			const struct fuse_entry_param *e, int err)
{
	if (err < 0) {
		fuse_reply_err(req, -err);
		return;
	}
	if (fuse_reply_entry(req, e) != 0)
		node_forget(n, 1); /* interrupted: the kernel has no entry */
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct node *n;
	int ret;

	if (reserved_name(name)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	ret = node_lookup(node_of(parent), name, &e, &n);
	reply_entry(req, n, &e, ret);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_forget(node_of(ino), nlookup);
	fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count,
		     struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		node_forget(node_of(forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

/*
 * The object just made at dfd/name by the caller: reopen it without
 * following, and check it is what was made (its type, and the caller's,
 * which only an object they made or own can be).  Returns an O_PATH fd
 * (st filled) or -errno.
 */
static int made(fuse_req_t req, int dfd, const char *name, mode_t type,
		struct stat *st)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	unsigned tries = 0;
	int pfd, ret = 0;

	do
		pfd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	while (pfd < 0 && fd_budget_retry(errno, &tries));
	if (pfd < 0)
		return -errno;
	if (fstat(pfd, st) < 0)
		ret = -errno;
	else if ((st->st_mode & S_IFMT) != type ||
		 (rkfs_ms->euid == 0 && st->st_uid != ctx->uid))
		ret = -EIO; /* replaced under us */
	if (ret < 0) {
		close(pfd);
		return ret;
	}
	return pfd;
}

/*
 * A new regular file gets its header at once (an empty file of the mount
 * is a header alone).  Returns an O_PATH fd of it (st filled) or -errno;
 * on failure nothing is left at the name.
 */
static int make_file(int dfd, const char *name, mode_t mode, struct stat *st)
{
	char proc[PROC_FD_LEN];
	struct rkfs_file f;
	struct kref *k;
	int fd, pfd = -1, ret = 0;

	fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
				   O_CLOEXEC,
		    mode & 07777);
	if (fd < 0)
		return -errno;
	/* A brand-new file: nobody else can hold its lock. */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		k = kr_get();
		memset(&f, 0, sizeof(f));
		ret = rkfs_file_init_empty(&f, fd, k->kr);
		rkfs_file_release(&f);
		kr_put(k);
	}
	if (ret == 0 && fstat(fd, st) < 0)
		ret = -errno;
	if (ret == 0) {
		proc_fd_path(proc, sizeof(proc), fd);
		/* A /proc/self/fd link: the file just made. */
		pfd = open(proc, O_PATH | O_CLOEXEC);
		if (pfd < 0)
			ret = -errno;
	}
	if (ret < 0)
		(void)unlinkat(dfd, name, 0);
	close(fd);
	return ret < 0 ? ret : pfd;
}

enum make_kind { MAKE_DIR, MAKE_NOD, MAKE_LINK };

static void make(fuse_req_t req, fuse_ino_t parent, const char *name,
		 enum make_kind kind, mode_t mode, dev_t rdev,
		 const char *target)
{
	struct node *p = node_of(parent), *n = NULL;
	struct fuse_entry_param e;
	struct creds cr;
	struct stat st;
	mode_t type;
	int dfd, pfd = 0, ret;

	if (reserved_name(name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	dfd = dir_lock(p);
	if (dfd < 0) {
		fuse_reply_err(req, -dfd);
		return;
	}
	ret = creds_enter(req, &cr);
	if (ret == 0) {
		switch (kind) {
		case MAKE_DIR:
			type = S_IFDIR;
			if (mkdirat(dfd, name, mode & 07777) < 0)
				ret = -errno;
			break;
		case MAKE_LINK:
			type = S_IFLNK;
			if (symlinkat(target, dfd, name) < 0)
				ret = -errno;
			break;
		default:
			type = mode & S_IFMT;
			if (S_ISREG(mode))
				pfd = make_file(dfd, name, mode, &st);
			else if (mknodat(dfd, name, mode, rdev) < 0)
				ret = -errno;
			break;
		}
		creds_leave(&cr);
	}
	if (ret == 0 && pfd == 0)
		pfd = made(req, dfd, name, type, &st);
	dir_unlock(p);
	if (ret < 0 || pfd < 0) {
		fuse_reply_err(req, ret < 0 ? -ret : -pfd);
		return;
	}
	n = node_enter(p, name, pfd, &st, false, &e, &ret);
	reply_entry(req, n, &e, ret);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
	      mode_t mode)
{
	make(req, parent, name, MAKE_DIR, mode, 0, NULL);
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
	      mode_t mode, dev_t rdev)
{
	make(req, parent, name, MAKE_NOD, mode, rdev, NULL);
}

void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		const char *name)
{
	make(req, parent, name, MAKE_LINK, 0777, 0, link);
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
	     const char *newname)
{
	struct node *n = node_of(ino), *np = node_of(newparent), *sp = NULL, *e_n;
	char proc[PROC_FD_LEN];
	struct fuse_entry_param e;
	struct stat st;
	int dfd, fd, pfd, ret;

	if (reserved_name(newname)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	/* The source's directory too: a rekey must not replace the file
	 * between the refresh and the link. */
	ret = parent_lock(n, &sp);
	if (ret == 0)
		ret = node_refresh(n);
	dfd = ret < 0 ? ret : dir_lock(np);
	if (dfd < 0) {
		parent_unlock(sp);
		fuse_reply_err(req, -dfd);
		return;
	}
	fd = node_fd_get(n);
	proc_fd_path(proc, sizeof(proc), fd);
	/* A /proc/self/fd link: links the node's inode itself. */
	ret = linkat(AT_FDCWD, proc, dfd, newname, AT_SYMLINK_FOLLOW) < 0
		  ? -errno
		  : 0;
	node_fd_put(n);
	pfd = ret < 0 ? ret : openat(dfd, newname,
				     O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && fstat(pfd, &st) < 0)
		ret = -errno;
	if (ret == 0 && (st.st_dev != n->dev || st.st_ino != n->ino))
		ret = -EIO; /* replaced under us */
	dir_unlock(np);
	parent_unlock(sp);
	if (ret < 0) {
		if (pfd >= 0)
			close(pfd);
		fuse_reply_err(req, -ret);
		return;
	}
	e_n = node_enter(np, newname, pfd, &st, false, &e, &ret);
	reply_entry(req, e_n, &e, ret);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name,
			int flags)
{
	struct node *p = node_of(parent);
	struct stat st;
	bool known;
	int dfd, ret = 0;

	if (reserved_name(name)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	dfd = dir_lock(p);
	if (dfd < 0) {
		fuse_reply_err(req, -dfd);
		return;
	}
	node_settle(p, name);
	known = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (unlinkat(dfd, name, flags) < 0)
		ret = -errno;
	else if (known)
		node_removed(p, name, &st);
	dir_unlock(p);
	fuse_reply_err(req, -ret);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, 0);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, AT_REMOVEDIR);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
	       fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct node *p = node_of(parent), *np = node_of(newparent);
	struct stat st1, st2;
	bool has1, has2;
	int d1, d2, ret = 0;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (reserved_name(name) || reserved_name(newname)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	d1 = dir_lock(p);
	if (d1 < 0) {
		fuse_reply_err(req, -d1);
		return;
	}
	d2 = np == p ? d1 : dir_lock(np);
	if (d2 < 0) {
		dir_unlock(p);
		fuse_reply_err(req, -d2);
		return;
	}
	node_settle(p, name);
	node_settle(np, newname);
	has1 = fstatat(d1, name, &st1, AT_SYMLINK_NOFOLLOW) == 0;
	has2 = fstatat(d2, newname, &st2, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat2(d1, name, d2, newname, flags) < 0) {
		ret = -errno;
	} else if (flags & RENAME_EXCHANGE) {
		node_exchanged(p, name, np, newname);
	} else {
		if (has2 && has1 &&
		    (st2.st_dev != st1.st_dev || st2.st_ino != st1.st_ino))
			node_removed(np, newname, &st2);
		node_moved(p, name, np, newname, has1 ? &st1 : NULL);
	}
	if (np != p)
		dir_unlock(np);
	dir_unlock(p);
	fuse_reply_err(req, -ret);
}

/* ---- listings ---- */

struct dhandle {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(ino);
	struct dhandle *d = calloc(1, sizeof(*d));
	int dfd;

	if (d == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	dfd = node_open_dir(n);
	if (dfd < 0 || (d->dp = fdopendir(dfd)) == NULL) {
		int e = errno;

		if (dfd >= 0)
			close(dfd);
		free(d);
		fuse_reply_err(req, e);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) != 0) {
		closedir(d->dp);
		free(d);
	}
}

static bool dot_or_dotdot(const char *name)
{
	return name[0] == '.' &&
	       (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi, bool plus)
{
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;
	struct node *dn = node_of(ino);
	char *buf = malloc(size ? size : 1), *p = buf;
	size_t rem = size;
	int err = 0;

	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	for (;;) {
		struct fuse_entry_param e;
		struct node *en = NULL;
		const char *name;
		size_t entsize;
		off_t next;
		bool bare;

		if (d->entry == NULL) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (d->entry == NULL) {
				err = errno;
				break;
			}
		}
		next = d->entry->d_off;
		name = d->entry->d_name;
		if (reserved_name(name))
			goto skip;
		memset(&e, 0, sizeof(e));
		/* Near the fd limit, or out of fds, a listing gives names
		 * alone (node id 0, as READDIR does) and leaves the fds to
		 * the lookups of names in use. */
		bare = !plus || dot_or_dotdot(name) || nodes_budget_tight();
		if (!bare) {
			int ret = node_lookup(dn, name, &e, &en);

			if (ret == -ENOENT)
				goto skip; /* gone meanwhile */
			bare = ret == -EMFILE || ret == -ENFILE;
			if (ret < 0 && !bare) {
				err = -ret;
				break;
			}
		}
		if (bare) {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = dot_or_dotdot(name)
					    ? d->entry->d_ino
					    : (ino_t)node_shown_ino(
						  dn->dev, d->entry->d_ino);
			e.attr.st_mode = (mode_t)d->entry->d_type << 12;
		}
		entsize = plus ? fuse_add_direntry_plus(req, p, rem, name, &e,
							next)
			       : fuse_add_direntry(req, p, rem, name, &e.attr,
						   next);
		if (entsize > rem) {
			if (en)
				node_forget(en, 1);
			break;
		}
		p += entsize;
		rem -= entsize;
skip:
		d->entry = NULL;
		d->offset = next;
	}
	/* An error after some entries: send those, the next call sees it. */
	if (err && rem == size)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;

	(void)ino;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi)
{
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;
	int fd = dirfd(d->dp);

	(void)ino;
	fuse_reply_err(req,
		       (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0);
}
