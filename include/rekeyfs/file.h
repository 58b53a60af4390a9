/*
 * Encrypted file I/O over a backing file descriptor.
 *
 * struct rkfs_file is the per-inode state: the parsed header, the derived
 * per-file key and the cached plaintext size.  The backing fd is passed to
 * each call, so several open handles (each with its own fd and flock) can
 * share one rkfs_file.
 *
 * Locking is the caller's job: rkfs_file_read() and rkfs_file_seek() may
 * run concurrently with other reads; rkfs_file_write(),
 * rkfs_file_write_mt(), rkfs_file_truncate(), rkfs_file_allocate() and
 * rkfs_file_use_keyring() need exclusive access to the rkfs_file.
 *
 * Everything that depends on the block layout (sizes for stat, the
 * backing range of a plaintext range, holes, reservations) is answered
 * here, so code above this layer needs no rekeyfs/format.h arithmetic.
 *
 * Errors: -EBADMSG for corruption (bad header, impossible size, a block
 * that fails to authenticate); -ENOKEY when the file's generation is not in
 * the keyring or destroyed; -EKEYREVOKED when it is disabled; -errno from
 * the backing file otherwise.  Nothing is modified when an error is
 * returned before the first backing write.
 */
#ifndef RKFS_FILE_H
#define RKFS_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rekeyfs/format.h"
#include "rekeyfs/keyring.h"

struct rkfs_file {
	bool has_header;        /* false: the backing file is 0 bytes long */
	struct rkfs_header hdr; /* valid when has_header */
	unsigned char *key;     /* per-file key (sodium_malloc), or NULL */
	int key_err;            /* why key is NULL: -ENOKEY / -EKEYREVOKED */
	uint64_t size;          /* plaintext size */
	uint64_t serial;        /* serial of the keyring key was derived from */
	bool dense;             /* known to have no holes: overwrites inside
				 * the file need no space reserved */
	int holes;              /* may an all-zero inner block read as a
				 * hole (rekeyfs/format.h)?  RKFS_MARK_FINAL:
				 * no, RKFS_MARK_FINAL_HOLES: yes (always,
				 * for files without RKFS_FLAG_HOLE_AUTH),
				 * 0: not known until the final block is
				 * opened.  Shared readers may set it. */
	uint64_t final_seq;     /* writes of the final block so far */
	uint64_t synced_seq;    /* final_seq at the last completed sync */
};

/* Does writing at off leave a hole after the end of a file of size? */
static inline bool rkfs_write_leaves_hole(uint64_t size, uint64_t off)
{
	return off / RKFS_BLOCK_SIZE > rkfs_block_count(size);
}

/*
 * Initialise f from the backing fd: fstat, read and parse the header,
 * derive the key from kr.  A file whose generation has no usable key still
 * loads (f->key == NULL, f->key_err set) so that stat and unlink work; its
 * reads and writes then fail with f->key_err.  Returns 0 or -EBADMSG /
 * -errno.  On error f needs no rkfs_file_release().
 */
int rkfs_file_load(struct rkfs_file *f, int fd, const struct rkfs_keyring *kr)
	__attribute__((warn_unused_result, nonnull));

/*
 * Re-derive the key from a (reloaded) keyring.  Returns 0 even if the
 * generation became unusable (then f->key is NULL and f->key_err set).
 */
int rkfs_file_use_keyring(struct rkfs_file *f, const struct rkfs_keyring *kr)
	__attribute__((warn_unused_result, nonnull));

/*
 * Read up to len bytes at off into buf.  Returns bytes read (0 at or past
 * EOF) or -errno.  On -EBADMSG from a block, *bad_block (if not NULL)
 * receives its index (UINT64_MAX for a header/size problem).  An all-zero
 * inner block reads as zeros only in a file that may have holes; in any
 * other it is -EBADMSG like a block that fails to authenticate.
 */
ssize_t rkfs_file_read(struct rkfs_file *f, int fd, void *buf, size_t len,
		       uint64_t off, uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1, 3)));

/*
 * Write len bytes at off.  A file without a header gets one for kr's
 * primary generation first; otherwise the file keeps its generation.
 * Returns len or -errno.
 */
ssize_t rkfs_file_write(struct rkfs_file *f, int fd, const void *buf,
			size_t len, uint64_t off, const struct rkfs_keyring *kr,
			uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1, 3, 6)));

/*
 * Set the plaintext size.  Truncating to zero starts the file afresh:
 * new file id, kr's primary generation.  Growing leaves a hole (sparse
 * backing file) and seals a real final block; the file may have holes
 * from then on.
 */
int rkfs_file_truncate(struct rkfs_file *f, int fd, uint64_t size,
		       const struct rkfs_keyring *kr, uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1, 4)));

/*
 * Give an empty (0-byte) backing file its header for kr's primary
 * generation.  Used right after create so an empty file is a header alone.
 */
int rkfs_file_init_empty(struct rkfs_file *f, int fd,
			 const struct rkfs_keyring *kr)
	__attribute__((warn_unused_result, nonnull));

/*
 * Durability of the final block, for crash safety: a write that grows the
 * file past a final block that may be on disk already (not written since
 * the last sync, or since the load) makes the new blocks durable before it
 * re-seals that block (see "Crashes" in rekeyfs/format.h).  Whoever syncs
 * the backing fd says so: token = rkfs_file_sync_begin(f) before the
 * fsync/fdatasync, rkfs_file_sync_done(f, token) after it succeeded.
 * Both are atomic and need only shared access to f.
 */
uint64_t rkfs_file_sync_begin(const struct rkfs_file *f)
	__attribute__((nonnull));
void rkfs_file_sync_done(struct rkfs_file *f, uint64_t token)
	__attribute__((nonnull));

/* Wipe and free the key.  f can be loaded again afterwards. */
void rkfs_file_release(struct rkfs_file *f) __attribute__((nonnull));

/*
 * Plaintext size of a backing file from fstat alone; for getattr.
 * Returns 0 or -EBADMSG.
 */
int rkfs_file_plain_size(uint64_t *plain, uint64_t cipher_size)
	__attribute__((warn_unused_result, nonnull));

/*
 * Plaintext size to report (stat) for a backing regular file of
 * cipher_size bytes: exact for every size a valid file can have; for any
 * other size (corruption), the plaintext the whole blocks present would
 * hold, so that the file can still be listed, renamed and removed while
 * its reads fail with -EBADMSG.  Never fails.
 */
uint64_t rkfs_file_stat_size(uint64_t cipher_size);

/* Key generation in the file's header; 0 if it has none (0-byte file). */
uint32_t rkfs_file_generation(const struct rkfs_file *f)
	__attribute__((nonnull));

/*
 * Backing byte range [*cstart, *cend) that holds the blocks of plaintext
 * [off, off+len) (all of them, the partial ones at both ends included):
 * for read-ahead and write-behind hints.  len 0 gives an empty range at
 * off's block; ranges past the largest possible file are clamped.
 */
void rkfs_file_backing_range(uint64_t off, uint64_t len, uint64_t *cstart,
			     uint64_t *cend) __attribute__((nonnull));

/*
 * lseek(2) SEEK_DATA / SEEK_HOLE in plaintext, in whole blocks: a hole is
 * a non-final block that was never written (or is all zero on disk) in a
 * file that may have holes; a file that may not has none.  The
 * backing file's own SEEK_DATA skips its unallocated ranges; blocks inside
 * allocated ones are examined one by one, at most 1024 per call, and a
 * scan that stops there reports data (SEEK_DATA) or the next hole it can
 * prove (SEEK_HOLE, at worst the end of the file): always correct, only
 * less precise.  f loaded; shared access is enough.  Returns the offset
 * (never below off), -ENXIO if off is negative or at/past the end, or
 * SEEK_DATA finds no data after it, -EINVAL for another whence, or -errno
 * from the backing file.
 */
off_t rkfs_file_seek(const struct rkfs_file *f, int fd, off_t off, int whence)
	__attribute__((warn_unused_result, nonnull));

/*
 * fallocate(2) of plaintext [off, off+len): reserve the backing space of
 * its blocks (unwritten blocks read as holes, so readers see no change);
 * unless keep_size, then grow the file to off+len if that is larger, as
 * rkfs_file_truncate() does (a hole up to a sealed final block).  A
 * backing filesystem without fallocate reserves nothing and still grows.
 * Exclusive access.  Returns 0, -EINVAL (len 0, or off or len above
 * INT64_MAX, i.e. negative as off_t), -EFBIG (the ciphertext would not fit
 * in an off_t), -ENOSPC / -EDQUOT, or the errors of rkfs_file_truncate()
 * when growing (*bad_block as there).
 */
int rkfs_file_allocate(struct rkfs_file *f, int fd, uint64_t off, uint64_t len,
		       bool keep_size, const struct rkfs_keyring *kr,
		       uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1, 6)));

/*
 * Parallel sealing of large writes.  A sealer is a set of helper threads
 * that large writes share (one sealer per mount); each helper serves one
 * write at a time.  rkfs_sealer_start() and rkfs_sealer_stop() are not
 * thread-safe with respect to each other; rkfs_file_write_mt() is, for
 * writes to different files (or to one file under its exclusive lock).
 * The helpers block every signal.
 */
struct rkfs_sealer;

/*
 * Start threads helper threads (1 is the usual count; 0 gives a sealer
 * whose writes always run alone; at most 64).  Returns 0 (*sp set), or
 * -EINVAL / -ENOMEM / -EAGAIN (*sp NULL, nothing left running).
 */
int rkfs_sealer_start(struct rkfs_sealer **sp, unsigned threads)
	__attribute__((warn_unused_result, nonnull));

/*
 * Stop and join the helpers, free s.  No rkfs_file_write_mt() may be
 * using s.  NULL is a no-op.
 */
void rkfs_sealer_stop(struct rkfs_sealer *s);

/*
 * rkfs_file_write() with the same contract (return value, errors and
 * *bad_block, "nothing already in the file is overwritten before its
 * space is reserved" on a full disk, the final-block flag, holes,
 * f->size and f->dense after it), and the same bytes on disk: but a write
 * of 256 KiB or more is split on a block boundary between the calling
 * thread and an idle helper of s, each sealing and then writing its half.
 * Both halves are sealed (partial blocks read and authenticated) before
 * either is written, and the space is reserved before that.  With s NULL,
 * or every helper busy, the write runs alone.  Only the calling thread
 * reads or changes *f's mutable state; the helper reads the header and
 * key and the caller's buf.  Exclusive access to f, as for
 * rkfs_file_write().
 */
ssize_t rkfs_file_write_mt(struct rkfs_file *f, int fd, const void *buf,
			   size_t len, uint64_t off,
			   const struct rkfs_keyring *kr, uint64_t *bad_block,
			   struct rkfs_sealer *s)
	__attribute__((warn_unused_result, nonnull(1, 3, 6)));

/*
 * Stream-copy helpers for whole-file rewrites (rekey): decrypt every block
 * of src (loaded as sf) and write it to dst, encrypted under new header nh
 * with key nkey.  Holes (all-zero non-final blocks of a file that may have
 * them) stay holes; with RKFS_FLAG_HOLE_AUTH in nh, the copy's final block
 * says it may have holes only if it has one.  Any block that fails to
 * authenticate, and an all-zero block in a file that may have no holes,
 * aborts with -EBADMSG (*bad_block set).  dst must be empty.  Returns 0 or
 * -errno.
 */
int rkfs_file_reencrypt(struct rkfs_file *sf, int src, int dst,
			const struct rkfs_header *nh, const unsigned char *nkey,
			uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1, 4, 5)));

/*
 * One slice of rkfs_file_reencrypt(), for splitting a large file across
 * threads: blocks [first, first + count) of src (clamped to the file) are
 * decrypted, authenticated and written to dst at their own offsets under
 * nh / nkey; holes stay holes.  The header and the final size of dst are
 * the caller's (write nh->raw at 0, ftruncate to the ciphertext size of
 * sf->size).  Slices of one file may run concurrently on the same fds.
 * Returns 0, -EBADMSG (*bad_block set), or -errno.
 */
int rkfs_file_reencrypt_range(struct rkfs_file *sf, int src, int dst,
			      const struct rkfs_header *nh,
			      const unsigned char *nkey, uint64_t first,
			      uint64_t count, uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1, 4, 5)));

/*
 * Authenticate every block of a loaded file without writing anything.
 * Returns 0, -EBADMSG (*bad_block set), -ENOKEY/-EKEYREVOKED, or -errno.
 * An all-zero block (or an unallocated range of the backing file) in a
 * file that may have no holes is -EBADMSG; rkfs_file_zero_block() tells
 * that case apart.  A file truncated to 0 bytes or to its header is an
 * empty file and verifies (see rekeyfs/format.h).
 */
int rkfs_file_verify(struct rkfs_file *f, int fd, uint64_t *bad_block)
	__attribute__((warn_unused_result, nonnull(1)));

/*
 * Is block i of the loaded file f all zero on disk (a hole, or where one
 * may not be, a zeroed block)?  1 yes, 0 no (or i is past the end),
 * -errno on a read error.  For reports after rkfs_file_verify().
 */
int rkfs_file_zero_block(const struct rkfs_file *f, int fd, uint64_t i)
	__attribute__((warn_unused_result, nonnull));

/*
 * Does f keep the older rule that every all-zero inner block is a hole
 * without proof (no RKFS_FLAG_HOLE_AUTH in its header)?  Rekeying such a
 * file moves it to authenticated holes.
 */
bool rkfs_file_legacy_holes(const struct rkfs_file *f)
	__attribute__((nonnull));

#endif /* RKFS_FILE_H */
