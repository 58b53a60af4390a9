/*
 * Online rekey engine: move every file of a backing tree to the keyring's
 * primary generation while mounts of the tree stay live.  FUSE-free; used
 * by tools/rekeyfs-rekey.c.
 *
 * Coordination with the daemon (all locks are flock):
 *
 *   - One rekey per tree: LOCK_EX|LOCK_NB on RKFS_LOCK_NAME in the backing
 *     root for the whole run.  With it held, leftovers of a crashed run
 *     (RKFS_TMP_PREFIX names anywhere in the tree) are finished or removed.
 *   - The daemon holds LOCK_SH on the backing fd of every open file.  The
 *     engine takes LOCK_EX|LOCK_NB on a file before touching it; a file
 *     that is open in a mount is busy, retried until the wait runs out, and
 *     reported.
 *   - Speed: a large file is split into slices rewritten by several
 *     threads at once; small files of one directory go in batches: each
 *     is locked, rewritten into its temp and unlocked, the batch's temps
 *     are made durable together (one syncfs), then each file is locked
 *     again, checked to be unchanged (inode, size, ctime and a hash of its
 *     ciphertext), and renamed as below without a directory fsync; one
 *     fsync of the directory ends the batch.  No file lock is held across
 *     the batch's syncfs, so a mount opening a file never waits for it.
 *   - A file with one link is rewritten into a hidden temp file in its own
 *     directory (decrypting and authenticating every block first; holes
 *     stay holes), fsynced, given the old file's owner, mode, xattrs and
 *     times, and renamed over the old name while the engine holds LOCK_EX
 *     on the directory and has re-checked that the name still refers to
 *     the locked inode.  The daemon takes LOCK_SH on directories around
 *     create, link, unlink, rename and metadata changes, so none of those
 *     can interleave with the check and the rename.
 *   - A file with several hard links cannot be swapped by one rename
 *     without splitting its names, so it is rewritten in place under a
 *     journal: the new ciphertext is written to a temp file next to it and
 *     fsynced, then an intent record (RKFS_TMP_PREFIX<id>.intent in the
 *     backing root, written atomically, mode 0600, signed with a key
 *     derived from the new generation: see intent.h) names the target
 *     inode, its path, its old and new headers and the temp, and only then
 *     are the temp's bytes copied over the original inode (holes punched,
 *     size set, times restored, fsync).  The record is removed, then the
 *     temp.  A run that finds a record replays the copy (idempotent)
 *     before anything else; so does rkfs_rekey_recover(), which a mount of
 *     the tree calls at mount time and when a read of a multiply-linked
 *     file fails authentication.  Readers see the old or the new version.
 *   - Anyone who can write in the backing tree can drop files there, so a
 *     record is acted on only if it sits in the backing root, is owned by
 *     the replaying process's user (or root) with mode 0600 and one link,
 *     and authenticates under the generation that signed it; its data
 *     temp must be ours in the same way, carry the recorded new header and
 *     authenticate in full; the target must be the recorded inode at the
 *     recorded path, which is resolved with openat2 beneath the root
 *     without symlinks or mount crossings.  Unauthenticated records of
 *     older builds (version 2) are honoured only when root owns the record
 *     and its temp; version 1 records are refused.  A record that is ours
 *     but cannot be replayed (signing generation disabled or destroyed, bad
 *     MAC, target moved, new version damaged) is kept and reported with
 *     how to finish by hand; records of other users are ignored (the tool
 *     removes them like any stray temp file).
 *
 * Every function returns 0 or -errno; fatal problems (lock held, wrong
 * keyring, unreadable root) also fill err.  Per-file problems are not
 * fatal: they are counted and listed in the report.
 */
#ifndef RKFS_REKEY_H
#define RKFS_REKEY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rekeyfs/error.h"
#include "rekeyfs/keyring.h"

enum rkfs_rekey_mode {
	RKFS_REKEY_REWRITE = 0, /* rewrite files not on the primary */
	RKFS_REKEY_DRY_RUN, /* list what would be rewritten, write nothing */
	RKFS_REKEY_VERIFY,  /* authenticate every block, rewrite nothing */
	RKFS_REKEY_STATUS,  /* header-only scan, write nothing */
};

/*
 * Live counters, updated atomically by the engine while it runs, for a
 * progress display on another thread.  The walk of the tree and the work
 * overlap: the totals grow while walking is set, and are final once it
 * is clear (and again while a later walk finds files renamed mid-run).
 */
#define RKFS_REKEY_SLOTS 64
struct rkfs_rekey_progress {
	volatile uint64_t files_total;
	volatile uint64_t bytes_total;
	volatile uint64_t files_done;
	volatile uint64_t bytes_done; /* of finished files */
	volatile int phase;	      /* 0 starting, 1 working, 2 finished */
	volatile int walking;	      /* 1: the totals may still grow */
	/* temp file of each worker's rewrite in flight, fd + 1 (0: none) */
	volatile int inflight[RKFS_REKEY_SLOTS];
};

/*
 * Bytes done including the part of the files in flight already written
 * (an estimate from the temp files' sizes; for display only).
 */
uint64_t rkfs_rekey_progress_bytes(const struct rkfs_rekey_progress *p)
    __attribute__((nonnull));

struct rkfs_rekey_opts {
	enum rkfs_rekey_mode mode;
	unsigned jobs; /* worker threads; 0 = number of CPUs */
	double wait;   /* seconds to keep retrying busy files */
	bool list;     /* STATUS: list files on list_generation */
	uint32_t list_generation;
	bool repair;   /* VERIFY: repair what a crash left (rekeyfs/repair.h) */
	struct rkfs_rekey_progress *progress; /* may be NULL */
	volatile sig_atomic_t *stop;	      /* set: stop after in-flight */
	uint64_t max_rate; /* bytes rewritten per second at most; 0: no cap */
};

/* Files and plaintext bytes on one generation (0 = no header yet). */
struct rkfs_rekey_gen_count {
	uint32_t generation;
	uint64_t files;
	uint64_t bytes;
};

/* A path (relative to the backing root) with a reason, for the report. */
struct rkfs_rekey_entry {
	char *path;
	char *reason; /* may be NULL for plain listings */
};

struct rkfs_rekey_list {
	size_t count, cap;
	struct rkfs_rekey_entry *v;
};

struct rkfs_rekey_report {
	enum rkfs_rekey_mode mode;
	uint32_t target;	/* primary generation (0 if no keyring) */
	uint64_t files;		/* regular files in the first scan */
	uint64_t migrated;	/* rewritten (REWRITE) */
	uint64_t current;	/* already on the target, not touched */
	uint64_t verified;	/* authenticated (VERIFY) */
	uint64_t would_rewrite; /* DRY_RUN */
	uint64_t bytes_rewritten;
	uint64_t temps_removed; /* leftover temp files removed at start */
	uint64_t resumed;	/* interrupted in-place rewrites replayed */
	uint64_t bad_headers;	/* files whose header cannot be parsed */
	uint64_t remaining;	/* files not on the target after the run */
	bool interrupted;	/* stopped by opts->stop */
	double elapsed;		/* seconds */
	struct rkfs_rekey_list failed;	/* path + reason */
	struct rkfs_rekey_list busy;	/* path + reason */
	struct rkfs_rekey_list skipped; /* changed under us, path + reason */
	struct rkfs_rekey_list repaired; /* VERIFY with repair: path + what
					  * was lost */
	struct rkfs_rekey_list listed;	/* STATUS --generation, DRY_RUN */
	size_t nbefore, nafter;
	struct rkfs_rekey_gen_count *before; /* ascending by generation */
	struct rkfs_rekey_gen_count *after;  /* REWRITE only */
};

/*
 * Run one rekey operation on the backing directory root.
 *
 * kr: REWRITE needs a keyring with keys loaded (RKFS_KR_LOAD_KEYS); VERIFY
 * needs the keys of every generation in use; STATUS and DRY_RUN accept
 * NULL or a keyring without keys.  A keyring is always checked against the
 * tree's metadata first (-EKEYREJECTED with err set on a mismatch); only
 * REWRITE records the primary's check value.
 *
 * REWRITE and VERIFY take the tree lock (-EWOULDBLOCK with err set when
 * another rekey holds it) and finish or remove leftovers of a crashed run.
 * STATUS and DRY_RUN write nothing, not even the lock file.
 *
 * Returns 0 when the run completed (per-file failures, busy files and an
 * interruption are in rep), or -errno for a fatal error (err set).  rep
 * must be released with rkfs_rekey_report_free() in both cases.
 */
int rkfs_rekey_run(struct rkfs_rekey_report *rep, const char *root,
		   const struct rkfs_keyring *kr,
		   const struct rkfs_rekey_opts *opts, struct rkfs_error *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 4)));

/*
 * Finish in-place rewrites interrupted by a crash (intent records in the
 * backing root), for a mount of the tree.  rootfd is the backing root, root
 * its name for messages; kr authenticates the records and the new versions
 * (NULL: nothing can be authenticated, nothing is replayed).
 *
 * Cheap when there is nothing to do: one listing of the root directory,
 * nothing written.  Otherwise takes LOCK_EX|LOCK_NB on RKFS_LOCK_NAME (if
 * a rekey run holds it, returns 0 at once: that run replays the records
 * itself), replays every acceptable record (see above) with the same code
 * as the rekey run, removes each finished record and its temp, and
 * unlocks.  A target that already authenticates completely on its own
 * (the copy never started, or the file was rewritten in a mount since) or
 * whose header is neither the recorded old one nor the new one is left as
 * it is and its record dropped, so nothing written since is overwritten.
 * Records that are not acceptable are left in place for the tool.
 *
 * A target that is open elsewhere (its LOCK_EX cannot be taken) is left
 * for later, unless flags has RKFS_REKEY_RECOVER_IN_MOUNT: the caller is a
 * mount that may hold LOCK_SH on the target through its own open handles
 * and has stopped its own writers to the file for the duration of the call;
 * the copy is then done without the file lock (a writer in another mount
 * of the same tree is then not excluded; its writes to a half-copied file
 * may be overwritten by the copy).
 *
 * *replayed (may be NULL) counts the copies finished.  Returns 0, or for
 * the first record that was not replayed and not busy, with err set to a
 * message naming it: -EPERM (not ours, or refused; the message says how
 * to finish by hand) or -EIO (the copy failed); also -errno for an
 * unusable root.  The other records are still processed.  Callers in one
 * process serialize their calls with a mutex: a second call while one
 * runs would find the lock taken and return at once.
 */
#define RKFS_REKEY_RECOVER_IN_MOUNT 1u
int rkfs_rekey_recover(int rootfd, const char *root,
		       const struct rkfs_keyring *kr, unsigned flags,
		       unsigned *replayed, struct rkfs_error *err)
    __attribute__((warn_unused_result, nonnull(2)));

/* True if the run left work undone: busy, failed, remaining, interrupted. */
bool rkfs_rekey_partial(const struct rkfs_rekey_report *rep)
    __attribute__((nonnull));

void rkfs_rekey_report_free(struct rkfs_rekey_report *rep);

#endif /* RKFS_REKEY_H */
