/*
 * Internal to the file layer (file.c, file_par.c, file_space.c): shared
 * limits and helpers, and the sealer's helper threads as file.c uses them.
 * A writer claims one idle helper, hands it one function at a time
 * and waits for its result; the helper is the writer's until released.
 */
#ifndef RKFS_FILE_I_H
#define RKFS_FILE_I_H

#include <stdbool.h>
#include <stdint.h>

#include "rekeyfs/file.h"
#include "rekeyfs/format.h"

/*
 * Largest plaintext size whose ciphertext size still fits in an off_t
 * (whole blocks only, so the check needs no overflow care).
 */
#define RKFS_FILE_MAX_PLAIN                                                  \
	((uint64_t)((INT64_MAX - RKFS_HEADER_LEN) / RKFS_CBLOCK_SIZE) *      \
	 RKFS_BLOCK_SIZE)

/*
 * Reserve backing space [off, off+len) without changing the size (a
 * filesystem that cannot is left alone).  0 or -errno (-ENOSPC, ...).
 */
int rkfs_file_reserve(int fd, uint64_t off, uint64_t len);

/*
 * May an all-zero inner block of f read as a hole (rekeyfs/format.h)?
 * 1 yes, 0 no, -errno if reading the final block fails.  Learns it from
 * the final block (and caches it in f->holes) if not known yet; a final
 * block that fails to authenticate proves nothing and gives 0, unless it
 * opens as an older final version of itself with RKFS_MARK_FINAL_HOLES
 * (see rkfs_block_open_short()).  Shared access is enough.
 */
int rkfs_file_holes_allowed(const struct rkfs_file *f, int fd);

/*
 * Open block i of f as the file size says it is (final: with either final
 * mark the header allows, and a final block that opens tells f whether it
 * may have holes).  0 or -EBADMSG.  Shared access is enough.
 */
int rkfs_file_open_block(const struct rkfs_file *f, uint8_t *out,
			 const uint8_t *cb, size_t cl, uint64_t i, bool final)
	__attribute__((warn_unused_result, nonnull));

/*
 * Block i failed to authenticate as the file size says it should: try it
 * as a final block of at most maxlen bytes that ends before the rest of
 * its slot (the argument is in rekeyfs/format.h, "Crashes"), with each
 * final mark h allows (RKFS_MARK_FINAL, and RKFS_MARK_FINAL_HOLES if h has
 * RKFS_FLAG_HOLE_AUTH).  cb holds the first avail bytes of the slot, which
 * starts at backing offset coff.  Returns 0 with the block's plaintext in
 * plain, its length in *len (1..maxlen) and the mark it was sealed with
 * in *mark, or -EBADMSG (*len and *mark 0).  A few dozen tries per mark.
 * Only RKFS_MARK_FINAL_HOLES proves anything about holes (format.h).
 */
int rkfs_block_open_short(uint8_t *plain, size_t *len, int *mark,
			  const uint8_t *cb, size_t avail, uint64_t coff,
			  uint64_t i, size_t maxlen,
			  const struct rkfs_header *h, const unsigned char *key)
	__attribute__((warn_unused_result, nonnull));

/*
 * For a non-final block i that gave only a shorter final version of
 * itself: does a later block authenticate as itself (the next one, or the
 * last one when the next is a hole the file may have)?  Then the file
 * really grew past it and the rest of block i reads as the zeros its
 * re-seal would have written; otherwise the rest stays unreadable.  f
 * loaded, shared access.
 */
bool rkfs_file_grew_past(const struct rkfs_file *f, int fd, uint64_t i)
	__attribute__((nonnull));

struct rkfs_helper;

/* An idle helper of s, now the caller's; NULL if s is NULL or all busy. */
struct rkfs_helper *rkfs_sealer_claim(struct rkfs_sealer *s);

/* Start fn(arg) on h.  One call at a time: rkfs_helper_wait() first. */
void rkfs_helper_run(struct rkfs_helper *h, int (*fn)(void *), void *arg)
	__attribute__((nonnull));

/* Wait for the function started on h and return its result. */
int rkfs_helper_wait(struct rkfs_helper *h) __attribute__((nonnull));

/* Give h back to its sealer (nothing may be running on it). */
void rkfs_helper_release(struct rkfs_helper *h) __attribute__((nonnull));

/* Functions the helpers of s have run so far (for the tests). */
unsigned long rkfs_sealer_runs(struct rkfs_sealer *s);

#endif /* RKFS_FILE_I_H */
