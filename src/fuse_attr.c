/*
 * Attributes, ownership and xattrs.  Metadata changes act on the node's
 * own fd: fchownat(fd, "", AT_EMPTY_PATH), and chmod, times and xattrs
 * through /proc/self/fd/N of it (an O_PATH fd cannot be fchmod'ed), which
 * names exactly that inode: a symlink swapped in at its name later is
 * never followed.  They hold LOCK_SH on the directory the node was seen
 * in, because rekeyfs-rekey copies metadata to its temp before it renames
 * the temp over the name.
 */
#include "fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/fsuid.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Is the caller of req in group gid? */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[RKFS_MAX_GROUPS];
	int n;

	if (ctx->gid == gid)
		return true;
	n = fuse_req_getgroups(req, RKFS_MAX_GROUPS, groups);
	for (int i = 0; i < n && i < RKFS_MAX_GROUPS; i++)
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
 *    that sets nothing; it is honoured unless the caller has CAP_FSETID,
 *    so the reply carries the new mode and the kernel's cached one is
 *    right;
 *  - fallocate carries no flag, so the caller is asked about directly.
 *
 * Without v2 the kernel clears the bits itself before writes and
 * truncates; the O_TRUNC flag is honoured either way.
 */

/*
 * Does the caller of req hold CAP_FSETID?  Read from /proc only when a
 * file with suid/sgid is modified, which is rare; uid 0 stands in when
 * the caller's status cannot be read (another pid namespace, an exited
 * process).
 */
static bool caller_has_fsetid(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
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
static mode_t suidgid_to_drop(fuse_req_t req, const struct stat *st,
			      enum rkfs_kill why)
{
	mode_t kill = 0;

	if (why == RKFS_KILL_NONE || !S_ISREG(st->st_mode))
		return 0;
	if (st->st_mode & S_ISUID)
		kill |= S_ISUID;
	if ((st->st_mode & S_ISGID) &&
	    ((st->st_mode & S_IXGRP) || !caller_in_group(req, st->st_gid)))
		kill |= S_ISGID;
	if (kill && why == RKFS_KILL_UNLESS_FSETID && caller_has_fsetid(req))
		kill = 0;
	return kill;
}

int drop_suidgid(fuse_req_t req, int fd, enum rkfs_kill why)
{
	struct stat st;
	mode_t kill;

	if (why == RKFS_KILL_NONE || fstat(fd, &st) < 0)
		return 0;
	kill = suidgid_to_drop(req, &st, why);
	if (kill == 0)
		return 0;
	if (fchmod(fd, st.st_mode & 07777 & ~kill) < 0)
		return -errno;
	return 1;
}

/* chmod of any fd, O_PATH included. */
static int chmod_fd(int fd, mode_t mode)
{
	char proc[PROC_FD_LEN];

	proc_fd_path(proc, sizeof(proc), fd);
	/* A /proc/self/fd link: names the fd's inode, not a path. */
	if (fchmodat(AT_FDCWD, proc, mode, 0) < 0)
		return -errno;
	return 0;
}

/*
 * New objects are made with the caller's filesystem ids and groups, so
 * they are the caller's from the first instant, with the backing
 * filesystem applying the usual rules (setgid directories, the parent's
 * permissions): nothing is ever made as root and given away afterwards,
 * which a user renaming things in their own backing directory at the
 * right moment could otherwise steer onto another object.  setfsuid,
 * setfsgid and the raw setgroups system call act on this thread alone.
 */
static gid_t own_groups[RKFS_MAX_GROUPS];
static int own_ngroups = -1;

int creds_enter(fuse_req_t req, struct creds *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[RKFS_MAX_GROUPS];
	int n;

	c->on = false;
	if (rkfs_ms->euid != 0 ||
	    (ctx->uid == rkfs_ms->euid && ctx->gid == rkfs_ms->egid))
		return 0;
	if (__atomic_load_n(&own_ngroups, __ATOMIC_ACQUIRE) < 0) {
		n = getgroups(RKFS_MAX_GROUPS, own_groups);
		__atomic_store_n(&own_ngroups, n < 0 ? 0 : n,
				 __ATOMIC_RELEASE);
	}
	n = fuse_req_getgroups(req, RKFS_MAX_GROUPS, groups);
	if (n < 0)
		n = 0; /* not known: the primary group only */
	if (n > RKFS_MAX_GROUPS)
		n = RKFS_MAX_GROUPS;
	if (syscall(SYS_setgroups, (size_t)n, groups) < 0)
		return -errno;
	(void)setfsgid(ctx->gid);
	(void)setfsuid(ctx->uid);
	c->on = true;
	return 0;
}

void creds_leave(struct creds *c)
{
	if (!c->on)
		return;
	(void)setfsuid(rkfs_ms->euid);
	(void)setfsgid(rkfs_ms->egid);
	(void)syscall(SYS_setgroups,
		      (size_t)__atomic_load_n(&own_ngroups, __ATOMIC_ACQUIRE),
		      own_groups);
	c->on = false;
}

/* ---- getattr / setattr ---- */

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int ret;

	(void)fi;
	ret = node_stat(node_of(ino), &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, RKFS_ATTR_TIMEOUT);
}

static int set_times(int fd, struct fhandle *h, const struct stat *attr,
		     int to_set)
{
	struct timespec tv[2];
	char proc[PROC_FD_LEN];

	tv[0].tv_sec = tv[1].tv_sec = 0;
	tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	if (h)
		return futimens(h->fd, tv) < 0 ? -errno : 0;
	proc_fd_path(proc, sizeof(proc), fd);
	/* A /proc/self/fd link: names the fd's inode (a symlink's own). */
	return utimensat(AT_FDCWD, proc, tv, 0) < 0 ? -errno : 0;
}

#define SET_CHANGES                                                       \
	(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |     \
	 FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | \
	 FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)

static int setattr_meta(fuse_req_t req, struct node *n, struct fhandle *h,
			const struct stat *attr, int to_set)
{
	enum rkfs_kill kill = rkfs_wire_kill_suidgid(FUSE_SETATTR, node_id(n));
	struct stat st;
	int fd, ret = 0;

	fd = node_fd_get(n);
	if (to_set & FUSE_SET_ATTR_MODE) {
		if (S_ISLNK(n->type))
			ret = -EOPNOTSUPP;
		else if (h)
			ret = fchmod(h->fd, attr->st_mode & 07777) < 0 ? -errno
								       : 0;
		else
			ret = chmod_fd(fd, attr->st_mode & 07777);
	}
	if (ret == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid
							 : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid
							 : (gid_t)-1;

		if (fchownat(fd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			ret = -errno;
	}
	if (ret == 0 &&
	    (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
		       FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)))
		ret = set_times(fd, h, attr, to_set);
	if (ret == 0 && !(to_set & SET_CHANGES) && fstat(fd, &st) == 0) {
		/*
		 * A SETATTR that sets nothing: the kernel dropping privileges
		 * before a write to a file with suid/sgid, or chown(f, -1,
		 * -1), which only marks the change.  On a file without those
		 * bits it can only be the latter.
		 */
		mode_t drop = suidgid_to_drop(req, &st, kill);

		if (drop)
			ret = chmod_fd(fd, st.st_mode & 07777 & ~drop);
		else if (fchownat(fd, "", (uid_t)-1, (gid_t)-1,
				  AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			ret = -errno;
	}
	node_fd_put(n);
	return ret;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi)
{
	struct node *n = node_of(ino), *p = NULL;
	struct fhandle *h = S_ISREG(n->type) ? fhandle_of(fi) : NULL;
	struct fhandle *t = NULL;
	struct stat st;
	struct fhandle *pinned = NULL;
	int ret = 0;

	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (S_ISDIR(n->type))
			ret = -EISDIR;
		else if (!S_ISREG(n->type))
			ret = -EINVAL;
		else if (!h || (h->flags & O_ACCMODE) == O_RDONLY)
			/* Before the directory lock: the rekey tool takes
			 * that while it holds a file's lock. */
			ret = io_open(req, n, O_RDWR, &t);
	}
	/* (io_truncate() takes the node's lock for writing) */
	if (ret == 0 && !(to_set & FUSE_SET_ATTR_SIZE))
		pinned = io_pin(n);
	if (ret == 0 && !pinned)
		ret = parent_lock(n, &p);
	if (ret == 0 && !pinned)
		ret = node_refresh(n);
	if (ret >= 0 && (to_set & FUSE_SET_ATTR_SIZE))
		ret = io_truncate(req, t ? t : h, attr->st_size);
	if (ret >= 0)
		ret = setattr_meta(req, n, h ? h : pinned, attr, to_set);
	if (pinned)
		io_unpin(n);
	parent_unlock(p);
	io_close(t);
	if (ret >= 0)
		ret = node_stat(n, &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, RKFS_ATTR_TIMEOUT);
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	mode_t bits;
	int ret = node_stat(node_of(ino), &st);

	if (ret < 0 || mask == F_OK)
		goto out;
	if (ctx->uid == 0) {
		if ((mask & X_OK) && !S_ISDIR(st.st_mode) &&
		    !(st.st_mode & 0111))
			ret = -EACCES;
		goto out;
	}
	if (ctx->uid == st.st_uid)
		bits = (st.st_mode >> 6) & 7;
	else if (caller_in_group(req, st.st_gid))
		bits = (st.st_mode >> 3) & 7;
	else
		bits = st.st_mode & 7;
	if (((mode_t)mask & bits) != (mode_t)mask)
		ret = -EACCES;
out:
	fuse_reply_err(req, ret < 0 ? -ret : 0);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_of(ino);
	char buf[PATH_MAX + 1];
	ssize_t len;
	int fd;

	fd = node_fd_get(n);
	len = readlinkat(fd, "", buf, sizeof(buf) - 1);
	if (len < 0)
		len = -errno;
	node_fd_put(n);
	if (len < 0) {
		fuse_reply_err(req, (int)-len);
		return;
	}
	buf[len] = '\0';
	fuse_reply_readlink(req, buf);
}

void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	(void)ino;
	if (fstatvfs(rkfs_ms->rootfd, &st) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &st);
}

/* ---- xattrs, through /proc/self/fd of the node's fd ---- */

/*
 * Names the mount does not support: it answers EOPNOTSUPP, as a
 * filesystem without them does, and leaves them out of listings.
 *  - POSIX ACLs: the kernel checks permissions on the mount from the mode
 *    bits alone (rekeyfs does not declare FUSE_CAP_POSIX_ACL), so an ACL
 *    stored through it would grant or deny nothing, only seem to; and an
 *    ACL on a backing file acts on the backing tree, not on the mount.
 *  - security.selinux: with SELinux on, the kernel answers for a FUSE
 *    mount's labels itself (from the policy) and never asks the daemon;
 *    with it off, the name means nothing.
 * EOPNOTSUPP also tells programs to stop asking: `ls -l` and `cp -a`
 * remember it per filesystem instead of asking every file twice.
 */
static bool xattr_unsupported(const char *name)
{
	return strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0 ||
	       strcmp(name, "security.selinux") == 0;
}

/* Drop the unsupported names from a listxattr buffer; the new length. */
static size_t xattr_filter(char *buf, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		size_t n = strnlen(buf + in, len - in);

		if (!xattr_unsupported(buf + in)) {
			memmove(buf + out, buf + in, n);
			buf[out + n] = '\0';
			out += n + 1;
		}
		in += n + 1;
	}
	return out;
}

/* listxattr of the node's inode, through a real fd of it (fd >= 0) or its
 * /proc/self/fd link, without the unsupported names: the length of the
 * list, or -errno (-ERANGE when it does not fit size). */
static ssize_t list_xattr(int fd, const char *proc, char *out, size_t size)
{
	char *buf = NULL;
	ssize_t len;

	/* proc is a /proc/self/fd link: the node's inode (a symlink's own) */
	for (int tries = 0; tries < 8; tries++) {
		/* a /proc/self/fd link, as above */
		len = fd >= 0 ? flistxattr(fd, NULL, 0) : listxattr(proc, NULL, 0);
		if (len <= 0)
			return len < 0 ? -errno : 0;
		free(buf);
		buf = malloc((size_t)len);
		if (buf == NULL)
			return -ENOMEM;
		/* a /proc/self/fd link, as above */
		len = fd >= 0 ? flistxattr(fd, buf, (size_t)len)
			      : listxattr(proc, buf, (size_t)len);
		if (len >= 0 || errno != ERANGE)
			break;
	}
	if (len < 0) {
		len = -errno;
	} else {
		len = (ssize_t)xattr_filter(buf, (size_t)len);
		if (size && (size_t)len > size)
			len = -ERANGE;
		else if (size)
			memcpy(out, buf, (size_t)len);
	}
	free(buf);
	return len;
}

/* getxattr of name, or listxattr when name is NULL. */
static void read_xattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		       size_t size)
{
	struct node *n = node_of(ino);
	char proc[PROC_FD_LEN], *buf = NULL;
	struct fhandle *h;
	ssize_t len;
	int fd;

	if (name && xattr_unsupported(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (size && (buf = malloc(size)) == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* An open file's handle is a real fd of its inode: no /proc/self/fd
	 * path to resolve.  (The kernel asks for security.capability before
	 * the first write to every file it has fresh attributes for.)  Not
	 * worth waiting for a write in progress to use it. */
	h = io_pin_nowait(n);
	if (h) {
		len = name ? fgetxattr(h->fd, name, buf, size)
			   : list_xattr(h->fd, NULL, buf, size);
		if (name && len < 0)
			len = -errno;
		io_unpin(n);
	} else {
		fd = node_fd_get(n);
		proc_fd_path(proc, sizeof(proc), fd);
		/* A /proc/self/fd link: the node's inode (a symlink's own). */
		len = name ? getxattr(proc, name, buf, size)
			   : list_xattr(-1, proc, buf, size);
		if (name && len < 0)
			len = -errno;
		node_fd_put(n);
	}
	if (len < 0)
		fuse_reply_err(req, (int)-len);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else
		fuse_reply_buf(req, buf, (size_t)len);
	free(buf);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		 size_t size)
{
	read_xattr(req, ino, name, size);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	read_xattr(req, ino, NULL, size);
}

/* setxattr, or removexattr when value is NULL. */
static int change_xattr(struct node *n, const char *name, const char *value,
			size_t size, int flags)
{
	char proc[PROC_FD_LEN];
	struct fhandle *pinned;
	struct node *p = NULL;
	int fd, ret;

	if (xattr_unsupported(name))
		return -EOPNOTSUPP;
	/* open: see io_pin() */
	pinned = io_pin(n);
	ret = pinned ? 0 : parent_lock(n, &p);
	if (ret == 0 && !pinned)
		ret = node_refresh(n);
	if (ret >= 0 && pinned) {
		ret = value ? fsetxattr(pinned->fd, name, value, size, flags)
			    : fremovexattr(pinned->fd, name);
		ret = ret < 0 ? -errno : 0;
	} else if (ret >= 0) {
		fd = node_fd_get(n);
		proc_fd_path(proc, sizeof(proc), fd);
		/* A /proc/self/fd link: the node's inode. */
		ret = value ? setxattr(proc, name, value, size, flags)
			    : removexattr(proc, name);
		ret = ret < 0 ? -errno : 0;
		node_fd_put(n);
	}
	if (pinned)
		io_unpin(n);
	parent_unlock(p);
	return ret;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		 const char *value, size_t size, int flags)
{
	int ret = change_xattr(node_of(ino), name, value ? value : "", size,
			       flags);

	fuse_reply_err(req, -ret);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -change_xattr(node_of(ino), name, NULL, 0, 0));
}
