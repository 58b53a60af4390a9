/*
 * Repair of a file a crash left partly unreadable (`rekeyfs-rekey --verify
 * --repair`).  See "Crashes" in rekeyfs/format.h for the states a crash
 * can leave.
 *
 * The file's blocks are classified one by one: a block that authenticates
 * as itself (non-final and full), a hole (4136 zero bytes, not last), a
 * block that authenticates only as an older *final* version of itself
 * (its first L bytes), or a bad block.  Let t be the last block that
 * authenticates at all.  Then:
 * - every bad block before t, or no block authenticating at all while the
 *   file has some: the file cannot be accounted for and is left alone
 *   (a bad block in the middle is damage or tampering, not a crash; a file
 *   whose blocks all fail is more likely under another key);
 * - an older final version before t (an append whose re-seal did not reach
 *   the disk) is completed: re-sealed as a full non-final block, its bytes
 *   past L zero (they were never durable);
 * - everything after t is dropped, and t becomes the final block: re-sealed
 *   as final if it was not, the file cut right after it.
 * A file whose blocks all authenticate as the size says is left alone.
 *
 * Crash safety: each in-place re-seal is first written, as the sealed
 * block it will become, to a scratch slot past the blocks that are kept
 * (past the end of the file, or in the tail being dropped) and synced;
 * only then is it written in place and synced, and the file is cut last.
 * A block torn by a crash during the repair is restored from that copy by
 * the next run, so an interrupted repair is finished by running it again
 * and loses nothing more.  The caller holds the file's lock (LOCK_EX), so
 * no mount has it open meanwhile.
 */
#ifndef RKFS_REPAIR_H
#define RKFS_REPAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "rekeyfs/keyring.h"

enum rkfs_repair_action {
	RKFS_REPAIR_CLEAN,    /* nothing to do */
	RKFS_REPAIR_REPAIRED, /* repaired (or would be, without apply) */
	RKFS_REPAIR_REFUSED,  /* cannot be accounted for: left alone */
};

struct rkfs_repair_result {
	enum rkfs_repair_action action;
	uint64_t old_size;    /* plaintext size before (as stat showed it) */
	uint64_t new_size;    /* plaintext size after */
	uint64_t lost_bytes;  /* bytes dropped from the tail plus bytes of
			       * completed blocks that are now zero */
	uint64_t first_dropped, last_dropped; /* blocks dropped from the
					       * tail; UINT64_MAX if none */
	uint64_t completed;   /* older final versions completed */
	uint64_t restored;    /* blocks restored from a scratch copy */
	uint64_t bad_block;   /* REFUSED: the first bad block, or UINT64_MAX */
	char msg[256];        /* one line: what was lost, or why refused */
};

/*
 * Examine the backing file fd (open read-write when apply) under kr and,
 * when apply is set and the action is RKFS_REPAIR_REPAIRED, repair it as
 * described above.  *res is always filled.  Returns 0, -ENOKEY or
 * -EKEYREVOKED (the file's generation is unusable: nothing done),
 * -ENOMEM, or -errno from the backing file (the file is then as a crash
 * would leave it at that point: run again).
 */
int rkfs_repair_file(struct rkfs_repair_result *res, int fd,
		     const struct rkfs_keyring *kr, bool apply)
	__attribute__((warn_unused_result, nonnull));

#endif /* RKFS_REPAIR_H */
