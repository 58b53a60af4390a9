/*
 * rekeyfs block cryptography: XChaCha20-Poly1305-IETF from libsodium.
 *
 * No function here allocates.  Key buffers passed in are owned by the
 * caller and should live in sodium_malloc() memory.
 */
#ifndef RKFS_CRYPT_H
#define RKFS_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "rekeyfs/format.h"

#define RKFS_CHECK_LEN 16

/* sodium_init() once per process.  Returns 0 or -ENOSYS. */
int rkfs_crypt_init(void) __attribute__((warn_unused_result));

/*
 * len <= RKFS_RANDOM_MAX bytes of system randomness (randombytes_buf()),
 * for nonces and file ids: drawn from a per-thread buffer that one
 * system call refills every few hundred bytes.  Every byte is handed out
 * once, and a child process starts with an empty buffer.
 */
#define RKFS_RANDOM_MAX 64
void rkfs_crypt_random(void *out, size_t len) __attribute__((nonnull));

/*
 * Derive the per-file key: BLAKE2b-256 keyed with the generation key over
 * "rekeyfs v1 content" || file id.  out must hold RKFS_KEY_LEN bytes.
 */
void rkfs_crypt_file_key(unsigned char *out, const uint8_t *file_id,
			 const unsigned char *gen_key) __attribute__((nonnull));

/*
 * Check value of a generation key: BLAKE2b-128 keyed with it over
 * "rekeyfs v1 check".  Not secret; identifies a key without revealing it.
 */
void rkfs_crypt_check_value(uint8_t out[RKFS_CHECK_LEN],
			    const unsigned char *gen_key)
	__attribute__((nonnull));

/*
 * Seal one block.  out receives nonce || ciphertext || tag, that is
 * len + RKFS_BLOCK_OVERHEAD bytes; 1 <= len <= RKFS_BLOCK_SIZE.  out and
 * plain must not overlap.  final is the block's mark (RKFS_MARK_INNER,
 * RKFS_MARK_FINAL or RKFS_MARK_FINAL_HOLES, see rekeyfs/format.h); any
 * other value is bound into the AAD as given and opens only with itself.
 */
void rkfs_block_seal(uint8_t *out, const uint8_t *plain, size_t len,
		     uint64_t index, int final, const struct rkfs_header *h,
		     const unsigned char *file_key) __attribute__((nonnull));

/*
 * Open one sealed block of inlen bytes (RKFS_BLOCK_OVERHEAD < inlen <=
 * RKFS_CBLOCK_SIZE) into plain (inlen - RKFS_BLOCK_OVERHEAD bytes).
 * final is the mark it must have been sealed with.  Returns 0, or
 * -EBADMSG if it fails to authenticate (plain is then zeroed).
 */
int rkfs_block_open(uint8_t *plain, const uint8_t *in, size_t inlen,
		    uint64_t index, int final, const struct rkfs_header *h,
		    const unsigned char *file_key)
	__attribute__((warn_unused_result, nonnull));

#endif /* RKFS_CRYPT_H */
