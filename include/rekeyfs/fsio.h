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
 * The secret-file policy, shared by keyrings, key files, passphrase files
 * and mount configs (the rules of OpenSSH's StrictModes).  The file is
 * opened once, with O_NOFOLLOW (a symbolic link as last component is
 * refused: name the file itself) and O_NONBLOCK (a fifo cannot hang the
 * open), and everything is checked on that descriptor:
 *   - it is a regular file;
 *   - it is owned by the effective uid or by root;
 *   - neither group nor others may write it; with RKFS_SECRET_PRIVATE
 *     (keyrings, key and passphrase files) neither may read it either;
 *   - its directory and every directory above it are owned by the
 *     effective uid or by root and not writable by group or others,
 *     except a sticky directory owned by root (such as /tmp), where no
 *     one else can rename or remove a file they do not own.
 * what names the file in messages ("keyring", "key_file", ...); msgpfx,
 * if not NULL, goes before it ("vault.keyring:12: generation 3: ").
 * Returns the open descriptor (O_CLOEXEC, blocking again) or -errno with
 * "[msgpfx]what PATH: rule broken" in err: -ELOOP (symbolic link), -EINVAL
 * (not a regular file), -EPERM (owner or mode), or the open's errno.
 */
#define RKFS_SECRET_PRIVATE 0x1

int rkfs_secret_open(const char *path, unsigned flags, const char *what,
		     const char *msgpfx, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 3)));

/*
 * rkfs_secret_open() and then read the whole file from that descriptor as
 * rkfs_read_small_file() does (max bytes, secure: sodium_malloc()).
 */
int rkfs_secret_read(char **data, size_t *len, const char *path, size_t max,
		     bool secure, unsigned flags, const char *what,
		     const char *msgpfx, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2, 3, 7)));

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

/*
 * Rename dirfd/from over dirfd/to without the directory fsync: for a batch
 * of renames in one directory that the caller makes durable together with
 * one fsync of dirfd afterwards.  Returns 0 or -errno.
 */
int rkfs_rename_nosync(int dirfd, const char *from, const char *to)
	__attribute__((warn_unused_result, nonnull(2, 3)));

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
