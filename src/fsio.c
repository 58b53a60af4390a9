#include "rekeyfs/fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

ssize_t rkfs_pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int rkfs_pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int rkfs_write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int rkfs_read_small_file(char **data, size_t *len, int dirfd,
			 const char *path, size_t max, bool secure)
{
	struct stat st;
	char *buf = NULL;
	size_t cap, used = 0;
	int fd, ret;

	*data = NULL;
	*len = 0;
	if (path == NULL)
		fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	else
		fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if ((size_t)st.st_size > max) {
		ret = -EFBIG;
		goto out;
	}
	cap = max + 1;
	buf = secure ? sodium_malloc(cap) : malloc(cap);
	if (buf == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + used, cap - used);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used == cap) {
			ret = -EFBIG;
			goto fail;
		}
	}
	buf[used] = '\0';
	*data = buf;
	*len = used;
	ret = 0;
	goto out;
fail:
	if (secure) {
		sodium_free(buf);
	} else {
		free(buf);
	}
out:
	close(fd);
	return ret;
}

/* Owned by us or root, and no one else may write it (see fsio.h). */
static bool dir_safe(const struct stat *st)
{
	if (st->st_uid != geteuid() && st->st_uid != 0)
		return false;
	if (!(st->st_mode & 022))
		return true;
	return (st->st_mode & S_ISVTX) && st->st_uid == 0;
}

/* Check the directory holding path and every directory above it. */
static int check_dirs(const char *path, const char *what, const char *pfx,
		      struct rkfs_error *err)
{
	char *dir = NULL, *base = NULL, *real = NULL;
	struct stat st;
	int ret;

	ret = rkfs_path_split(&dir, &base, path);
	if (ret < 0)
		return ret;
	real = realpath(dir, NULL);
	if (real == NULL) {
		ret = rkfs_error_set(err, -errno, "%s%s %s: directory %s: %s",
				     pfx, what, path, dir, strerror(errno));
		goto out;
	}
	for (;;) {
		char *slash;

		if (stat(real, &st) < 0) {
			ret = rkfs_error_set(err, -errno,
					     "%s%s %s: directory %s: %s", pfx,
					     what, path, real, strerror(errno));
			goto out;
		}
		if (!dir_safe(&st)) {
			ret = rkfs_error_set(
				err, -EPERM,
				"%s%s %s: directory %s (owner uid %u, mode "
				"%04o) must be owned by uid %u or root and not "
				"writable by group or others, or another user "
				"could replace the file",
				pfx, what, path, real, (unsigned)st.st_uid,
				(unsigned)(st.st_mode & 07777),
				(unsigned)geteuid());
			goto out;
		}
		slash = strrchr(real, '/');
		if (slash == NULL || strcmp(real, "/") == 0)
			break;
		if (slash == real)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	ret = 0;
out:
	free(real);
	free(dir);
	free(base);
	return ret;
}

int rkfs_secret_open(const char *path, unsigned flags, const char *what,
		     const char *msgpfx, struct rkfs_error *err)
{
	const char *pfx = msgpfx ? msgpfx : "";
	mode_t bad = (flags & RKFS_SECRET_PRIVATE) ? 077 : 022;
	uid_t me = geteuid();
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW |
				O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			return rkfs_error_set(err, -ELOOP,
					      "%s%s %s is a symbolic link; name "
					      "the file itself",
					      pfx, what, path);
		return rkfs_error_set(err, -errno, "%s%s %s: %s", pfx, what,
				      path, strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		ret = rkfs_error_set(err, -errno, "%s%s %s: %s", pfx, what,
				     path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s%s %s is not a regular file", pfx, what,
				     path);
		goto fail;
	}
	if ((st.st_uid != me && st.st_uid != 0) || (st.st_mode & bad)) {
		ret = rkfs_error_set(
			err, -EPERM,
			"%s%s %s must be owned by uid %u%s and not %s by group "
			"or others (owner uid %u, mode %04o; run: chmod %s %s)",
			pfx, what, path, (unsigned)me, me ? " or root" : "",
			bad == 077 ? "readable" : "writable",
			(unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
			bad == 077 ? "600" : "go-w", path);
		goto fail;
	}
	ret = check_dirs(path, what, pfx, err);
	if (ret < 0)
		goto fail;
	/* Only the open had to be non-blocking. */
	if (fcntl(fd, F_SETFL, 0) < 0) {
		ret = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

int rkfs_secret_read(char **data, size_t *len, const char *path, size_t max,
		     bool secure, unsigned flags, const char *what,
		     const char *msgpfx, struct rkfs_error *err)
{
	int fd, ret;

	*data = NULL;
	*len = 0;
	fd = rkfs_secret_open(path, flags, what, msgpfx, err);
	if (fd < 0)
		return fd;
	ret = rkfs_read_small_file(data, len, fd, NULL, max, secure);
	close(fd);
	if (ret < 0)
		return rkfs_error_set(err, ret, "%s%s %s: %s",
				      msgpfx ? msgpfx : "", what, path,
				      ret == -EFBIG ? "file is too large"
						    : strerror(-ret));
	return 0;
}

static int fsync_dir(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0 && errno != EINVAL)
		ret = -errno;
	close(fd);
	return ret;
}

int rkfs_path_split(char **dir, char **base, const char *path)
{
	const char *slash = strrchr(path, '/');

	*dir = NULL;
	*base = NULL;
	if (slash == NULL) {
		*dir = strdup(".");
		*base = strdup(path);
	} else if (slash == path) {
		*dir = strdup("/");
		*base = strdup(slash + 1);
	} else {
		*dir = strndup(path, (size_t)(slash - path));
		*base = strdup(slash + 1);
	}
	if (*dir == NULL || *base == NULL) {
		free(*dir);
		free(*base);
		*dir = *base = NULL;
		return -ENOMEM;
	}
	return 0;
}

int rkfs_rename_durable(int dirfd, const char *from, int dirfd2,
			const char *to, unsigned flags)
{
	char *dir, *base;
	int ret;

	if (renameat2(dirfd, from, dirfd2, to, flags) < 0)
		return -errno;
	ret = rkfs_path_split(&dir, &base, to);
	if (ret < 0)
		return ret;
	ret = fsync_dir(dirfd2, dir);
	free(dir);
	free(base);
	return ret;
}

int rkfs_rename_nosync(int dirfd, const char *from, const char *to)
{
	return renameat(dirfd, from, dirfd, to) < 0 ? -errno : 0;
}

int rkfs_write_atomic(int dirfd, const char *name, const void *data,
		      size_t len, mode_t mode, struct rkfs_error *err)
{
	return rkfs_write_atomic_owned(dirfd, name, data, len, mode,
				       (uid_t)-1, (gid_t)-1, err);
}

int rkfs_write_atomic_owned(int dirfd, const char *name, const void *data,
			    size_t len, mode_t mode, uid_t uid, gid_t gid,
			    struct rkfs_error *err)
{
	char tmp[PATH_MAX];
	unsigned char rnd[6];
	int fd, ret;

	randombytes_buf(rnd, sizeof(rnd));
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%02x%02x%02x%02x%02x%02x", name,
		     rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
		     rnd[5]) >= (int)sizeof(tmp))
		return rkfs_error_set(err, -ENAMETOOLONG, "%s: name too long",
				      name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    mode);
	if (fd < 0)
		return rkfs_error_set(err, -errno, "%s: cannot create: %s", tmp,
				      strerror(errno));
	if (uid != (uid_t)-1 && fchown(fd, uid, gid) < 0) {
		ret = rkfs_error_set(err, -errno,
				     "%s: cannot give it the owner %u:%u: %s",
				     tmp, (unsigned)uid, (unsigned)gid,
				     strerror(errno));
		goto fail;
	}
	if (fchmod(fd, mode) < 0) {
		ret = rkfs_error_set(err, -errno, "%s: chmod: %s", tmp,
				     strerror(errno));
		goto fail;
	}
	ret = rkfs_pwrite_full(fd, data, len, 0);
	if (ret < 0) {
		rkfs_error_set(err, ret, "%s: write: %s", tmp, strerror(-ret));
		goto fail;
	}
	if (fsync(fd) < 0) {
		ret = rkfs_error_set(err, -errno, "%s: fsync: %s", tmp,
				     strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		ret = rkfs_error_set(err, -errno, "%s: close: %s", tmp,
				     strerror(errno));
		goto fail;
	}
	fd = -1;
	ret = rkfs_rename_durable(dirfd, tmp, dirfd, name, 0);
	if (ret < 0) {
		rkfs_error_set(err, ret, "%s: rename: %s", name, strerror(-ret));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return ret;
}
