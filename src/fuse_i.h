/*
 * Internal interface of the rekeyfs daemon, split by concern:
 *
 *   fuse_main.c   options, start-up checks, the session, reload triggers
 *   fuse_loop.c   the request loop: worker threads reading the channel
 *   fuse_ops.c    the operations table, INIT and DESTROY
 *   fuse_node.c   the node table: backing inodes, lookup counts, names,
 *                 rebinding after a rekey, directory locks, the fd budget
 *   fuse_ns.c     namespace: lookup, forget, mkdir, mknod, symlink, link,
 *                 unlink, rmdir, rename, readdir(plus)
 *   fuse_attr.c   attributes, ownership, suid/sgid, xattrs, statfs
 *   fuse_io.c     open, create, read, write and the rest of file I/O
 *   fuse_keys.c   the current keyring and its reloads
 *   fuse_wire.c   what libfuse 3.14 cannot negotiate (KILLPRIV_V2)
 *   fuse_idle.c   -o idle: unmount after a time without use
 *
 * Every backing access is relative to a node's fd, one name component at
 * a time, and never follows a symlink; see fuse_node.c.
 */
#ifndef RKFS_FUSE_I_H
#define RKFS_FUSE_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "rekeyfs/file.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"

struct rkfs_mount_state {
	int rootfd;		/* O_DIRECTORY fd of the backing root */
	const char *root;	/* backing path, for messages */
	const char *keyring;	/* absolute keyring path, for reloads */
	bool ro;		/* -o ro: never record or create metadata */
	bool single;		/* -s: one thread serves every request */
	uid_t euid;		/* the daemon's own ids */
	gid_t egid;
	struct rkfs_meta *meta; /* owned; changed only by reloads */
};

extern struct rkfs_mount_state *rkfs_ms;
/* The session, for notifications to the kernel (NULL before the mount). */
extern struct fuse_session *rkfs_se;

/*
 * Readahead of the mount, in KiB: raised to this as root (fuse_main.c),
 * and the most the INIT reply lets the kernel use (fuse_ops.c); the kernel
 * keeps the smaller of the two.
 */
#define RKFS_READAHEAD_KB 4096

/* Seconds the kernel may cache names and attributes. */
#define RKFS_ENTRY_TIMEOUT 10.0
#define RKFS_ATTR_TIMEOUT 1.0

/* ---- nodes (fuse_node.c) ---- */

/*
 * A node is one backing inode the kernel knows: hard links share it.
 * Fields marked (T) are under the table mutex; (F) under fdmu; (D) under
 * dmu; (L) under lock.  Lock order: fdmu of a file, table mutex; fdmu
 * of a directory is never taken for writing (directories never rebind).
 */
struct node {
	struct node *next;	/* (T) chain by (dev, ino) */
	struct node *name_next; /* (T) chain by (parent, name) */
	struct node *shown_next; /* (T) chain of rebound nodes by shown_ino */
	dev_t dev;		/* (T) backing inode the fd is open on */
	ino_t ino;		/* (T) */
	uint64_t shown_ino;	/* st_ino the mount reports; fixed */
	mode_t type;		/* S_IFMT bits; fixed */
	int fd;			/* (F) O_PATH | O_NOFOLLOW on the inode */
	pthread_rwlock_t fdmu;	/* (F) read: using fd; write: rebinding */
	bool rebound;		/* (T) shown_ino is no longer ino */
	bool removed;		/* (T) the mount removed its last link */
	bool used;		/* (T) looked up since the pruner last looked */
	uint64_t nlookup;	/* (T) the kernel's references */
	unsigned refs;		/* (T) the daemon's own references */
	struct node *parent;	/* (T) where it was last seen, referenced */
	char *name;		/* (T) its name there; NULL once removed */

	/* directories: a real fd for flock and readdir, and LOCK_SH held
	 * while any thread works inside (the rekey protocol) */
	pthread_mutex_t dmu;
	int dfd;		/* (D) -1 until first needed */
	unsigned dlocks;	/* (D) threads inside */

	/* regular files: the encrypted-file state while open */
	pthread_rwlock_t lock;
	struct fhandle *handles; /* (L, write) the open handles */
	bool loaded;		/* (L) file is valid */
	struct rkfs_file file;	/* (L) */
};

/* The generations of the files open in the mount (may repeat); *out is
 * malloc'd (NULL if none or out of memory).  Returns their count. */
size_t rkfs_nodes_open_generations(uint32_t **out);

/* Rebind every node whose file a rekey replaced (see fuse_node.c). */
void rkfs_nodes_sweep(void);

/*
 * The pruner: near the fd limit, ask the kernel to forget names of files
 * it holds but nobody uses (see fuse_node.c).  start: 0 or -errno.
 */
int rkfs_nodes_prune_start(struct fuse_session *se);
void rkfs_nodes_prune_stop(void);
/* Past the pruner's mark: listings give names without nodes. */
bool nodes_budget_tight(void);

/* Set up the table with the root directory; 0 or -errno. */
int rkfs_nodes_init(int rootfd);
void rkfs_nodes_clear(void);

/* The node's fd, held against rebinding until node_fd_put(). */
int node_fd_get(struct node *n);
void node_fd_put(struct node *n);
/* A real O_RDONLY fd of directory node d, waiting for the pruner when out
 * of fds; -1 with errno set. */
int node_open_dir(struct node *d);

/* The node of a FUSE inode number (a node the kernel holds). */
struct node *node_of(fuse_ino_t ino);
fuse_ino_t node_id(const struct node *n);

/* Take / drop one of the daemon's own references. */
void node_hold(struct node *n);
void node_put(struct node *n);

/*
 * Find or create the node for the object named name in parent, given an
 * O_PATH fd of it (ownership passes: stored or closed) and its fstat() in
 * st.  Adds one kernel reference and fills e (attributes with the shown
 * inode number and plaintext size).  may_rebind: the name was looked up
 * (not just made), so a node a rekey left on the replaced file may be
 * moved to it (node_refresh()).  Returns the node or NULL with *err set
 * (-EXDEV for an object on another filesystem).
 */
struct node *node_enter(struct node *parent, const char *name, int fd,
			const struct stat *st, bool may_rebind,
			struct fuse_entry_param *e, int *err);

/* Look name up in parent and enter it (node_enter); 0 or -errno. */
int node_lookup(struct node *parent, const char *name,
		struct fuse_entry_param *e, struct node **np);

/* Drop n kernel references. */
void node_forget(struct node *n, uint64_t nlookup);

/*
 * A regular file replaced by rekeyfs-rekey (a temp renamed over its name)
 * leaves the node's fd on an inode with no links.  Move the node to the
 * file now at its name, keeping its shown inode number, if that file is
 * the tool's replacement (same owner, group and mode; the node not open).
 * Returns 1 if moved, 0 if there is nothing to do (still linked, or
 * removed through the mount and open), -ESTALE when the node's inode has
 * no links and no replacement is known (the kernel then looks the name up
 * again), or -errno.
 */
int node_refresh(struct node *n);

/* fstat of the node's inode (after node_refresh), as the mount shows it:
 * shown inode number, plaintext size.  0 or -errno. */
int node_stat(struct node *n, struct stat *st);

/* The shown inode number for a backing (dev, ino) seen in a listing. */
uint64_t node_shown_ino(dev_t dev, ino_t ino);

/*
 * Before a namespace change at parent/name (caller holds the directory
 * lock): a node still bound to the file a rekey replaced at that name is
 * rebound to the file now there first, so that the change is recorded on
 * it (node_moved()/node_removed() find nodes by the backing inode).
 */
void node_settle(struct node *parent, const char *name);

/* Record namespace changes made through the mount. */
void node_removed(struct node *parent, const char *name, const struct stat *st);
void node_moved(struct node *from, const char *name, struct node *to,
		const char *newname, const struct stat *st);
void node_exchanged(struct node *p1, const char *name1, struct node *p2,
		    const char *name2);

/* The node's path below the root, for messages (malloc'd; may be NULL). */
char *node_path(struct node *n);

/*
 * LOCK_SH on a directory node for the rekey protocol.  Returns the
 * directory's real fd (for *at() calls), locked, or -errno; release with
 * dir_unlock().  dir_lock2 locks two (possibly equal) directories.
 */
int dir_lock(struct node *d);
void dir_unlock(struct node *d);

/*
 * LOCK_SH on the directory a node was last seen in, for metadata changes
 * (the rekey tool copies metadata before its rename).  *pp is the locked
 * parent (referenced), or NULL when there is none (the root, a removed
 * node); release with parent_unlock().  0 or -errno.
 */
int parent_lock(struct node *n, struct node **pp);
void parent_unlock(struct node *p);

/* "/proc/self/fd/N" for fd: names exactly that inode, never a symlink
 * swapped in later (the kernel jumps to the fd's inode). */
void proc_fd_path(char *buf, size_t size, int fd);
#define PROC_FD_LEN 32

/* After a call failed with err: true when the pruner freed a node and the
 * call is worth another try (*tries counts them); else false, and out of
 * fds is logged (at most once a minute) if err says so.  errno is kept. */
bool fd_budget_retry(int err, unsigned *tries);

/* flock(), retried on EINTR.  0 or -errno. */
int rkfs_flock_retry(int fd, int how);

/* ---- keyring (fuse_keys.c) ---- */

struct kref {
	struct rkfs_keyring *kr;
	unsigned refs;
};

struct kref *kr_get(void);
void kr_put(struct kref *k);
void rkfs_fs_keys_setup(struct rkfs_keyring *kr);
void rkfs_fs_keys_teardown(void);
/* A file names an unknown generation: reload if the keyring file changed.
 * True if a new keyring was installed. */
bool reload_if_stale(void);

/*
 * Re-read the keyring file, check it against the tree's metadata, record
 * its primary and only then make it current.  On failure the old keyring
 * stays and one log line says why.  why names the trigger for the log.
 * Returns 0 or -errno.  Reloads are serialised.
 */
int rkfs_fs_reload(const char *why);

/* Relock the current keyring's key pages (mlock is lost across fork). */
void rkfs_fs_relock_keys(void);

/* ---- attributes (fuse_attr.c) ---- */

void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi);
void op_access(fuse_req_t req, fuse_ino_t ino, int mask);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_statfs(fuse_req_t req, fuse_ino_t ino);
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		 const char *value, size_t size, int flags);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		 size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/*
 * Make new objects as the caller: between creds_enter() and creds_leave()
 * this thread's filesystem uid, gid and groups are the caller's (when the
 * daemon runs as root on behalf of someone else).  0 or -errno.
 */
#define RKFS_MAX_GROUPS 256
struct creds {
	bool on;
};
int creds_enter(fuse_req_t req, struct creds *c);
void creds_leave(struct creds *c);

/* suid/sgid clearing on modification (see fuse_attr.c). */
enum rkfs_kill {
	RKFS_KILL_NONE,		/* nothing */
	RKFS_KILL_FLAGGED,	/* clear: the caller lacks CAP_FSETID */
	RKFS_KILL_UNLESS_FSETID /* clear unless the caller has CAP_FSETID */
};
/* Clear them on an open backing file.  1 if it changed, 0, or -errno. */
int drop_suidgid(fuse_req_t req, int fd, enum rkfs_kill why);

/* ---- file I/O (fuse_io.c) ---- */

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
	       mode_t mode, struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	     struct fuse_file_info *fi);
void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	      off_t off, struct fuse_file_info *fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
		  off_t len, struct fuse_file_info *fi);
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	      struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	      struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* An open file of the mount. */
struct fhandle {
	int fd;	   /* real backing fd, LOCK_SH held */
	int flags; /* the caller's open flags */
	bool direct; /* written past the kernel's page cache (direct_handle) */
	struct node *node;
	struct fhandle *next_open; /* node->handles, under node->lock */
	uint64_t seq_end;  /* end of the furthest read (backing offset) */
	uint64_t ra_until; /* backing read ahead up to here */
	uint64_t wb_end;   /* end of the last write (backing offset) */
	uint64_t wb_from;  /* writeback not yet started from here */
};

static inline struct fhandle *fhandle_of(const struct fuse_file_info *fi)
{
	return fi ? (struct fhandle *)(uintptr_t)fi->fh : NULL;
}

/*
 * Open n's backing file for an operation without a handle (truncate):
 * the same locking and rekey checks as an open, and n's file state loaded.
 * Undo with io_close().
 */
int io_open(fuse_req_t req, struct node *n, int flags, struct fhandle **hp);
void io_close(struct fhandle *h);

/*
 * If n's file is open in the mount, keep it open (its handles' LOCK_SH
 * held) until io_unpin(n) and return one of its handles; else NULL.
 * While a backing file is locked LOCK_SH, rekeyfs-rekey cannot be between
 * copying its metadata and renaming its temp over it (it holds LOCK_EX on
 * the file for all of that), so a metadata change to a pinned node needs
 * neither the directory lock nor node_refresh().  The handle's fd is a
 * real fd of the node's inode: f*() calls on it need no /proc/self/fd
 * path lookup.  Not across io_truncate() or anything else that takes
 * n->lock for writing.  io_pin_nowait() gives up (NULL) rather than wait
 * for a writer.
 */
struct fhandle *io_pin(struct node *n);
struct fhandle *io_pin_nowait(struct node *n);
void io_unpin(struct node *n);
/* Set the size of an open file (truncate, O_TRUNC). */
int io_truncate(fuse_req_t req, struct fhandle *h, off_t size);

/* proto_minor: the kernel's FUSE protocol (fuse_conn_info) */
void rkfs_io_setup(unsigned proto_minor);
void rkfs_io_teardown(void);

/* ---- namespace (fuse_ns.c) ---- */

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count,
		     struct fuse_forget_data *forgets);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
	      mode_t mode);
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
	      mode_t mode, dev_t rdev);
void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		const char *name);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
	     const char *newname);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
	       fuse_ino_t newparent, const char *newname, unsigned int flags);
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi);

/* Is name reserved for rekeyfs's own files (never shown, never made)? */
bool reserved_name(const char *name);

/* ---- operations (fuse_ops.c) ---- */

const struct fuse_lowlevel_ops *rkfs_fs_operations(void);
/* Hand the mount state and the initial keyring (ownership passes) over;
 * once, before the session starts.  0 or -errno. */
int rkfs_fs_setup(struct rkfs_mount_state *ms, struct rkfs_keyring *kr);
void rkfs_fs_teardown(void);

/* ---- the channel (fuse_wire.c) ---- */

/*
 * Install the /dev/fuse channel as libfuse custom I/O, right after
 * mounting; 0 or -errno.  rkfs_wire_kill_suidgid() says what the request
 * of opcode op on node id nodeid asks of suid/sgid (RKFS_KILL_NONE when
 * the request this thread read is not that one).
 */
int rkfs_wire_install(struct fuse_session *se);
enum rkfs_kill rkfs_wire_kill_suidgid(uint32_t op, fuse_ino_t nodeid);

/* ---- the request loop (fuse_loop.c) ---- */

/*
 * Serve se's requests on worker threads until the session ends (a
 * termination signal, the unmount or a channel error).  0 or -errno.
 */
int rkfs_loop_run(struct fuse_session *se);
/* The request with this unique id is being answered (called by the
 * channel's writer for each reply; a no-op unless it is the request the
 * calling worker serves). */
void rkfs_loop_replying(uint64_t unique);

/* ---- -o idle (fuse_idle.c) ---- */

/* A request of opcode op on nodeid arrived (called for every request
 * read; cheap, and a no-op unless the idle timer runs). */
void rkfs_idle_touch(uint32_t op, uint64_t nodeid);

/*
 * Unmount mnt once ms milliseconds pass without a request and without an
 * open file; a mount still in use (EBUSY) restarts the wait.  Start once
 * the mount is up.  0 or -errno.
 */
int rkfs_idle_start(const char *mnt, uint64_t ms);
/* Stop the timer (no-op when it never started). */
void rkfs_idle_stop(void);

#endif /* RKFS_FUSE_I_H */
