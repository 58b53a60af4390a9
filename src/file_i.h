/*
 * Internal to the file layer (file.c, file_par.c, file_space.c): shared
 * limits and helpers, and the sealer's helper threads as file.c uses them.
 * A writer claims one idle helper, hands it one function at a time
 * and waits for its result; the helper is the writer's until released.
 */
#ifndef RKFS_FILE_I_H
#define RKFS_FILE_I_H

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
 * block that fails to authenticate proves nothing and gives 0.  Shared
 * access is enough.
 */
int rkfs_file_holes_allowed(const struct rkfs_file *f, int fd);

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
