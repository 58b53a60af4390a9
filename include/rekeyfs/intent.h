/*
 * Intent records of in-place rewrites (see rekey.h): what a crashed
 * rekeyfs-rekey leaves so that the next run, or a mount, can finish the
 * copy of a hard-linked file.  FUSE-free, no I/O: text in, text out.
 *
 * A record is text, written by rekeyfs-rekey into the backing root as
 * RKFS_TMP_PREFIX<id>RKFS_INTENT_SUFFIX, mode 0600.  Version 3, the only
 * one written, is authenticated, one field per line, in this order:
 *
 *   rekeyfs-intent 3
 *   generation N           generation that signed it: the new version's
 *   dev D                  target inode
 *   ino I
 *   size S                 backing size of the new version
 *   atime SEC NSEC         times to restore on the target
 *   mtime SEC NSEC
 *   old <64 hex>           target's header before the copy
 *   new <64 hex>           header of the new version (in the data temp)
 *   target <hex>           target path, relative to the root
 *   temp <hex>             data temp path, relative to the root
 *   mac <64 hex>           BLAKE2b-256 keyed with K_intent over every byte
 *   end                    of the record before this line
 *
 *   K_intent = BLAKE2b-256(key = K_generation N, "rekeyfs v1 intent record")
 *
 * Only a holder of generation N's key can make a record that verifies, and
 * the record binds the exact header (so file id and generation) of the new
 * version: a data temp whose header is that one and whose every block
 * authenticates is the new version the writer made, not a substitute.
 * Generation N is the rewrite's target (the primary at rewrite time), so it
 * is the one key the replay needs anyway to check the data temp.
 *
 * Versions 2 (in the root, same fields less generation, new and mac) and 1
 * (next to its target: "name <hex>" instead of target and temp, the data
 * temp being the record's name less the suffix) were written by older
 * builds without authentication; they parse, so that a caller can decide
 * under which conditions to honour them, but never verify.
 */
#ifndef RKFS_INTENT_H
#define RKFS_INTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "rekeyfs/format.h"

#define RKFS_INTENT_SUFFIX ".intent"
#define RKFS_INTENT_MAX 65536 /* bytes: larger files are not records */
#define RKFS_INTENT_MAC_LEN 32
#define RKFS_INTENT_VERSION 3

struct rkfs_intent {
	unsigned version;    /* 3; 2 or 1: legacy, unauthenticated */
	uint32_t generation; /* v3: signer, the new version's generation */
	uint64_t dev, ino, size;
	struct timespec times[2]; /* atime, mtime */
	uint8_t old_hdr[RKFS_HEADER_LEN]; /* v2, v3 */
	uint8_t new_hdr[RKFS_HEADER_LEN]; /* v3 */
	/*
	 * v2, v3: paths relative to the backing root, no empty, "." or ".."
	 * components, no leading or trailing '/'; temp's last component
	 * starts with RKFS_TMP_PREFIX.  v1: target is one name (in the
	 * record's directory) and temp is NULL.  malloc()ed.
	 */
	char *target;
	char *temp;
	size_t signed_len; /* v3: bytes covered by mac */
	uint8_t mac[RKFS_INTENT_MAC_LEN];
};

/*
 * Format a version 3 record of in (version, signed_len and mac ignored),
 * signed with gen_key, the RKFS_KEY_LEN-byte key of in->generation.
 * *text is malloc()ed and NUL-terminated, *len excludes the NUL.
 * Returns 0, -EINVAL (a path that would not parse back), -ENOMEM.
 */
int rkfs_intent_format(char **text, size_t *len, const struct rkfs_intent *in,
		       const unsigned char *gen_key)
    __attribute__((warn_unused_result, nonnull));

/*
 * Parse a record of any version from len bytes of text (need not be
 * NUL-terminated).  Fields must come in the order above, each exactly once,
 * and nothing may follow "end".  Parsing checks the form only: a version 3
 * record must still pass rkfs_intent_verify().  Returns 0 or -EINVAL;
 * on success release in with rkfs_intent_free(), on error it is zeroed.
 */
int rkfs_intent_parse(struct rkfs_intent *in, const char *text, size_t len)
    __attribute__((warn_unused_result, nonnull));

/*
 * Check a parsed version 3 record's MAC over text (the same bytes it was
 * parsed from) with gen_key, the key of in->generation; compared in
 * constant time.  Returns 0, -EBADMSG (wrong MAC), -EINVAL (not version 3).
 */
int rkfs_intent_verify(const struct rkfs_intent *in, const char *text,
		       const unsigned char *gen_key)
    __attribute__((warn_unused_result, nonnull));

void rkfs_intent_free(struct rkfs_intent *in);

#endif /* RKFS_INTENT_H */
