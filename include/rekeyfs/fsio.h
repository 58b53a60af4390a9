/*
 * Low-level I/O helpers: full read/write loops and atomic replacement.
 * All return 0 (or a byte count) on success and -errno on failure.
 */
#ifndef RKFS_FSIO_H
#define RKFS_FSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "rekeyfs/error.h"

/*
 * Read up to len bytes at off, retrying short reads and EINTR.  Returns the
 * number of bytes read (less than len only at end of file) or -errno.
 */
ssize_t rkfs_pread_full(int fd, void *buf, size_t len, off_t off)
	__attribute__((warn_unused_result));

/* Write all len bytes at off.  Returns 0 or -errno (-ENOSPC, -EIO, ...). */
int rkfs_pwrite_full(int fd, const void *buf, size_t len, off_t off)
	__attribute__((warn_unused_result));

/* Write all of buf to a stream fd (pipes, terminals).  0 or -errno. */
int rkfs_write_all(int fd, const void *buf, size_t len)
	__attribute__((warn_unused_result));

/*
 * Read a whole small file (at most max bytes; -EFBIG beyond).  With secure,
 * the buffer comes from sodium_malloc() and must be released with
 * sodium_free(); otherwise with free().  The buffer is NUL-terminated
 * (*len excludes the NUL).  dirfd may be AT_FDCWD; with path NULL, dirfd
 * itself is read from its current offset.
 */
int rkfs_read_small_file(char **data, size_t *len, int dirfd,
			 const char *path, size_t max, bool secure)
	__attribute__((warn_unused_result));

/*
 * Replace dirfd/name atomically with data: create a temp file with O_EXCL
 * in the same directory at mode, write, fsync, close, rename over name,
 * fsync the directory.  On any error the temp file is removed and name is
 * untouched.  dirfd may be AT_FDCWD.
 */
int rkfs_write_atomic(int dirfd, const char *name, const void *data,
		      size_t len, mode_t mode, struct rkfs_error *err)
	__attribute__((warn_unused_result));

/*
 * Same, and the new file gets owner uid:gid before it takes name's place
 * (uid (uid_t)-1: keep the creator's).
 */
int rkfs_write_atomic_owned(int dirfd, const char *name, const void *data,
			    size_t len, mode_t mode, uid_t uid, gid_t gid,
			    struct rkfs_error *err)
	__attribute__((warn_unused_result));

/*
 * Rename dirfd/from over dirfd2/to and fsync the target directory: the one
 * place the core renames files.  flags as for renameat2().
 */
int rkfs_rename_durable(int dirfd, const char *from, int dirfd2,
			const char *to, unsigned flags)
	__attribute__((warn_unused_result));

/* Split path into a newly allocated directory part and its last component.
 * "a/b/c" -> "a/b", "c"; "c" -> ".", "c".  Returns 0 or -ENOMEM. */
int rkfs_path_split(char **dir, char **base, const char *path)
	__attribute__((warn_unused_result));

/*
 * Is name reserved for rekeyfs' own files in every directory of the
 * backing tree (metadata, the rekey lock, rekey temp files: names that
 * start with ".rekeyfs", RKFS_RESERVED_PREFIX in rekeyfs/format.h)?  The
 * mount never lists them and refuses to create them.
 */
bool rkfs_name_reserved(const char *name) __attribute__((nonnull));

#endif /* RKFS_FSIO_H */
