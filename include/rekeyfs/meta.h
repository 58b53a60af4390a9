/*
 * Backing-directory metadata: the non-secret file RKFS_META_NAME in the
 * root of every backing tree.
 *
 *   [rekeyfs]
 *   format = 1                    ; on-disk format version of this tree
 *   id = <32 hex digits>          ; random filesystem id
 *
 *   [generation N]                ; one per generation ever used here
 *   check = <32 hex digits>       ; check value of that generation's key
 *
 * Mount, rekeyfs-rekey and rekeyfs-key check compare a keyring against the
 * recorded check values and refuse a keyring whose generation N is not the
 * key that wrote this tree's generation-N files.
 */
#ifndef RKFS_META_H
#define RKFS_META_H

#include <stddef.h>
#include <stdint.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/keyring.h"

#define RKFS_META_NAME ".rekeyfs.conf"
#define RKFS_LOCK_NAME ".rekeyfs.lock"
/* Rekey temp files: RKFS_TMP_PREFIX + random suffix, in any directory. */
#define RKFS_TMP_PREFIX ".rekeyfs-tmp."

struct rkfs_meta_gen {
	uint32_t number;
	uint8_t check[RKFS_CHECK_LEN];
};

struct rkfs_meta {
	uint32_t format;
	uint8_t id[16];
	size_t count;
	struct rkfs_meta_gen *gens; /* ascending by number */
};

/* rkfs_meta_open() flags */
#define RKFS_META_CREATE 0x1 /* initialise an empty backing directory */
#define RKFS_META_RECORD 0x2 /* record the primary's check value */

/*
 * Load the metadata of the backing tree at rootfd.  Returns 0, -ENOENT if
 * there is none, -EINVAL (with "file:line: ...") if it is malformed, or
 * -EPROTONOSUPPORT for an unknown format.
 */
int rkfs_meta_load(struct rkfs_meta **out, int rootfd, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1)));

/*
 * Everything a mount or tool does at start: load the metadata (creating it
 * if RKFS_META_CREATE and the directory is empty, which also makes the
 * directory mode 0700; a non-empty directory without metadata is refused
 * with -ENOTEMPTY), check kr against it
 * (-EKEYREJECTED on a mismatch), and with RKFS_META_RECORD record kr's
 * primary generation.  root names the directory in messages.
 */
int rkfs_meta_open(struct rkfs_meta **out, int rootfd, const char *root,
		   const struct rkfs_keyring *kr, unsigned flags,
		   struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 3, 4)));

/*
 * Compare every loaded key of kr with the recorded check values.
 * Returns 0 or -EKEYREJECTED naming the first mismatching generation.
 */
int rkfs_meta_check(const struct rkfs_meta *m, const struct rkfs_keyring *kr,
		    const char *root, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2, 3)));

/*
 * Record generation gen's check value (from kr, whose key must be loaded)
 * if it is not recorded yet, and save atomically.  Returns 0, -ENOKEY,
 * -EKEYREJECTED (recorded value differs) or -errno.
 */
int rkfs_meta_record(struct rkfs_meta *m, int rootfd,
		     const struct rkfs_keyring *kr, uint32_t gen,
		     const char *root, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 3, 5)));

const struct rkfs_meta_gen *rkfs_meta_find(const struct rkfs_meta *m,
					   uint32_t gen) __attribute__((nonnull));

void rkfs_meta_free(struct rkfs_meta *m);

#endif /* RKFS_META_H */
