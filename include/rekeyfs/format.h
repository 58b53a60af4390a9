/*
 * rekeyfs on-disk format, version 1.
 *
 * Every regular file in the backing directory is a 32-byte header followed
 * by fixed-size encrypted blocks:
 *
 *   header (32 bytes)
 *     0   6  magic "RKEYFS"
 *     6   1  format version (1)
 *     7   1  cipher id (1 = XChaCha20-Poly1305-IETF)
 *     8   4  key generation, u32 big-endian
 *    12  16  file id, random per file (new on every rewrite)
 *    28   4  flags, u32 big-endian; none are defined in v1, so it must be 0
 *
 *   block i (i = 0, 1, ...) at offset 32 + i * 4136
 *     nonce (24) || ciphertext (1..4096) || tag (16)
 *     AAD = header (32 bytes) || u64 big-endian i || u8 final
 *
 * "final" is 1 for the last block of the file and 0 for every other block,
 * so cutting the ciphertext at a block boundary is detected: the new last
 * block was sealed as non-final and fails to authenticate.  Appending to a
 * file therefore re-seals its old last block.
 *
 * A backing file of 0 bytes is an empty file that has no header yet (an
 * interrupted create, or a truncate to zero in progress); one of exactly 32
 * bytes is an empty file.  Only the final block may be shorter than 4096
 * plaintext bytes, and it holds at least one byte.  Any other size cannot be
 * produced by rekeyfs and is corruption.
 *
 * Holes: a non-final block whose 4136 ciphertext bytes are all zero reads as
 * 4096 zero bytes without authentication, so sparse files stay sparse.  The
 * final block is always real ciphertext (a zero final block is corruption).
 *
 * Per-file key: BLAKE2b-256(key = generation key,
 *                           "rekeyfs v1 content" || file id).
 *
 * Crashes.  After a power loss, any subset of the 4 KiB pages written since
 * the last fsync may be on disk, and the size may be the old one, the new
 * one, or (for a file that grew) a page boundary in between.  Blocks are
 * sealed in place, so the rules below keep every byte that was durable
 * before the crash readable, except for the one exposure at the end.
 *
 * - Reading.  A block that does not authenticate as the size says it must
 *   (non-final and 4096 bytes, or final of the implied length) is tried as
 *   a *final* block of the same index that ends earlier in its slot: the
 *   block that was the end of the file before an append or extension whose
 *   re-seal never reached the disk, or before the size grew past it.  What
 *   follows it in its page was past the end of the file (zeros); later
 *   pages of the slot may hold part of the unfinished re-seal.  So its end
 *   lies just after the last non-zero byte before one of the slot's page
 *   boundaries (allowing for a tag that ends in up to 7 zero bytes): a few
 *   dozen tries, made only for a block that failed.  Such a block gives its
 *   own bytes.  The rest of it reads as the zeros its re-seal would have
 *   written if a later block authenticates (the next one, or the last one
 *   when the next is a hole): only a key holder can have written that
 *   block, so the file did grow past this one.  Otherwise (and always for
 *   the last block) the rest is EIO; the mount reads whole pages, so the
 *   page holding both then fails too.  Verify still reports such a block,
 *   and `rekeyfs-rekey --verify --repair` completes or cuts it.
 * - A torn tail.  A size no valid file has (1..40 bytes into a slot) does
 *   not fail the load: the whole blocks before it read, the tail is EIO,
 *   stat shows the plaintext of the whole blocks.  A size that implies a
 *   last block the disk does not hold reads as EIO from that block on.
 * - Appending or extending past a final block that may be durable (not
 *   written since the last sync) writes the new blocks, fdatasyncs, and
 *   only then re-seals the old final block as non-final: the disk must
 *   never hold the re-sealed block at the end of the old size, which is
 *   exactly what a truncation looks like and reads as EIO.
 * - Truncating down writes the new final block with the rest of its slot
 *   zeroed (so that until the cut it is found as above), fdatasyncs, then
 *   cuts; the cut can never reach the disk before the new final block.
 *
 * An attacker gains nothing: a block accepted by the rule above
 * authenticated under the file key, with its own index and the final
 * flag, so it is a version of that block this very file once had as its
 * last one.  Showing it is the rollback of one block, which the format
 * already accepts (any older version of a block authenticates); the zeros
 * after it are what the file held there when it grew past that version
 * (or, after a crash, a write that never became durable).  Without a later
 * block that authenticates, the bytes after it are EIO, not data, so
 * growing a file without the key never shows zeros; and the end of the
 * file is still checked:
 * the last block must authenticate as final, so a file cut at a block
 * boundary still reads as EIO there, and a file grown by anyone but the
 * file layer has an EIO tail.
 *
 * The exposure: a block re-sealed in place (partly overwritten, appended
 * to inside its slot, re-sealed as non-final when the file grows past it,
 * or as final by a truncate) is one 4136-byte write straddling two or
 * three pages; a crash that keeps some of those pages but not the others,
 * or the block but not the size it needs, leaves neither version, and the
 * block's unchanged bytes are lost (EIO) with its new ones.  Closing it
 * needs a journal or copy-on-write with a barrier before every in-place
 * re-seal (gocryptfs has the same exposure).
 */
#ifndef RKFS_FORMAT_H
#define RKFS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RKFS_MAGIC "RKEYFS"
#define RKFS_MAGIC_LEN 6
#define RKFS_FORMAT_VERSION 1
#define RKFS_CIPHER_XCHACHA20POLY1305 1

#define RKFS_HEADER_LEN 32
#define RKFS_FILE_ID_LEN 16
#define RKFS_KEY_LEN 32
#define RKFS_BLOCK_SIZE 4096
#define RKFS_NONCE_LEN 24
#define RKFS_TAG_LEN 16
#define RKFS_BLOCK_OVERHEAD (RKFS_NONCE_LEN + RKFS_TAG_LEN)
#define RKFS_CBLOCK_SIZE (RKFS_BLOCK_SIZE + RKFS_BLOCK_OVERHEAD)
/* header || u64 index || u8 final */
#define RKFS_AAD_LEN (RKFS_HEADER_LEN + 8 + 1)

/*
 * Names that start with this prefix belong to rekeyfs in every directory of
 * the backing tree (metadata, the rekey lock, rekey temp files).  The mount
 * never lists them and refuses to create them; rkfs_name_reserved() in
 * rekeyfs/fsio.h tests a name.
 */
#define RKFS_RESERVED_PREFIX ".rekeyfs"
#define RKFS_RESERVED_PREFIX_LEN 8

/* A parsed file header.  raw holds the exact 32 bytes, bound into every AAD. */
struct rkfs_header {
	uint8_t version;
	uint8_t cipher;
	uint32_t generation;
	uint32_t flags;
	uint8_t file_id[RKFS_FILE_ID_LEN];
	uint8_t raw[RKFS_HEADER_LEN];
};

/*
 * Parse and validate a header.  Returns 0, -EBADMSG if the magic is wrong,
 * the file id is all zero or len < RKFS_HEADER_LEN, or -EPROTONOSUPPORT for
 * an unknown version, cipher or a non-zero flags word.  *h is zeroed first.
 */
int rkfs_header_parse(struct rkfs_header *h, const uint8_t *buf, size_t len)
	__attribute__((warn_unused_result, nonnull));

/* Build a fresh header for generation gen with a new random file id. */
void rkfs_header_init(struct rkfs_header *h, uint32_t generation)
	__attribute__((nonnull));

/*
 * Plaintext size of a backing file of cipher_size bytes.  0 -> 0 (no
 * header), 32 -> 0.  Returns -EBADMSG for a size no valid file can have.
 */
int rkfs_size_to_plain(uint64_t *plain, uint64_t cipher_size)
	__attribute__((warn_unused_result, nonnull));

/* Backing size of a file with plain bytes of content (always >= 32). */
uint64_t rkfs_size_to_cipher(uint64_t plain);

/* Backing offset of block i. */
static inline uint64_t rkfs_block_offset(uint64_t index)
{
	return RKFS_HEADER_LEN + index * (uint64_t)RKFS_CBLOCK_SIZE;
}

/* Number of blocks of a file of plain bytes. */
static inline uint64_t rkfs_block_count(uint64_t plain)
{
	return (plain + RKFS_BLOCK_SIZE - 1) / RKFS_BLOCK_SIZE;
}

/* True if the buffer is all zero bytes (a hole block). Not constant time. */
bool rkfs_is_zero(const uint8_t *buf, size_t len) __attribute__((nonnull));

/* Big-endian helpers. */
static inline void rkfs_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t rkfs_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline void rkfs_put_be64(uint8_t *p, uint64_t v)
{
	rkfs_put_be32(p, (uint32_t)(v >> 32));
	rkfs_put_be32(p + 4, (uint32_t)v);
}

#endif /* RKFS_FORMAT_H */
