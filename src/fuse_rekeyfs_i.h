/*
 * Internal interface between the rekeyfs daemon's main program
 * (fuse_main.c: options, mount, keyring reload triggers) and its FUSE
 * callbacks (fuse_ops.c).
 */
#ifndef RKFS_FUSE_REKEYFS_I_H
#define RKFS_FUSE_REKEYFS_I_H

#include <stdbool.h>
#include <sys/types.h>

#include <fuse.h>

#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"

struct rkfs_mount_state {
	int rootfd;		/* O_DIRECTORY fd of the backing root */
	const char *root;	/* backing path, for messages */
	const char *keyring;	/* absolute keyring path, for reloads */
	bool ro;		/* -o ro: never record or create metadata */
	bool single;		/* -s: one thread serves every request */
	uid_t euid;		/* the daemon's own ids (set by rkfs_fs_setup) */
	gid_t egid;
	struct rkfs_meta *meta; /* owned; changed only by reloads */
};

/*
 * Readahead of the mount, in KiB: raised to this as root (fuse_main.c),
 * and the most the INIT reply lets the kernel use (fuse_ops.c); the kernel
 * keeps the smaller of the two.
 */
#define RKFS_READAHEAD_KB 4096

/*
 * Hand the mount state and the initial keyring (ownership passes) to the
 * FUSE layer.  Call once before fuse_new().
 */
void rkfs_fs_setup(struct rkfs_mount_state *ms, struct rkfs_keyring *kr);

/* The operations table. */
const struct fuse_operations *rkfs_fs_operations(void);

/*
 * Re-read the keyring file, check it against the tree's metadata, record
 * its primary and only then make it current.  On failure the old keyring
 * stays and one log line says why.  why names the trigger for the log.
 * Returns 0 or -errno.  Reloads are serialised; the reload thread and
 * reads of files in a generation the mount does not know yet call it.
 */
int rkfs_fs_reload(const char *why);

/* Relock the current keyring's key pages (mlock is lost across fork). */
void rkfs_fs_relock_keys(void);

/* Drop the keyring and all state at exit. */
void rkfs_fs_teardown(void);

/*
 * fuse_dirlock.c: LOCK_SH on the backing directory that holds path's last
 * component.  rkfs_dirlock_get() returns that directory's fd, locked (or
 * -errno); hand it back with rkfs_dirlock_put(), and never close it.
 * After a directory is renamed, replaced or removed through the mount,
 * rkfs_dirlock_forget() it (with everything below it).
 */
void rkfs_dirlock_init(int rootfd);
int rkfs_dirlock_get(const char *path);
void rkfs_dirlock_put(int fd);
void rkfs_dirlock_forget(const char *path);
void rkfs_dirlock_clear(void);
/* flock(), retried on EINTR.  0 or -errno. */
int rkfs_flock_retry(int fd, int how);

/*
 * fuse_wire.c: the /dev/fuse channel as libfuse custom I/O.  Install
 * right after mounting; returns 0 or -errno.  rkfs_wire_kill_suidgid()
 * says what the request this thread is handling asks of suid/sgid:
 */
enum rkfs_kill {
	RKFS_KILL_NONE,		/* nothing */
	RKFS_KILL_FLAGGED,	/* clear: the caller lacks CAP_FSETID */
	RKFS_KILL_UNLESS_FSETID /* clear unless the caller has CAP_FSETID */
};
struct fuse_session;
int rkfs_wire_install(struct fuse_session *se);
enum rkfs_kill rkfs_wire_kill_suidgid(void);

/*
 * Whether a rename to the name to (a .fuse_hidden* name) is libfuse
 * hiding a file that is still open, rather than the caller's own rename:
 * true while handling an UNLINK, or a RENAME whose new name is not to.
 */
bool rkfs_wire_hiding(const char *to);

#endif /* RKFS_FUSE_REKEYFS_I_H */
