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
 *    28   4  flags, u32 big-endian:
 *              bit 0  RKFS_FLAG_HOLE_AUTH: holes are authenticated (below)
 *              other bits must be 0
 *
 *   block i (i = 0, 1, ...) at offset 32 + i * 4136
 *     nonce (24) || ciphertext (1..4096) || tag (16)
 *     AAD = header (32 bytes) || u64 big-endian i || u8 mark
 *
 *   mark  0  not the last block (RKFS_MARK_INNER)
 *         1  the last block (RKFS_MARK_FINAL)
 *         2  the last block of a file that may have holes
 *            (RKFS_MARK_FINAL_HOLES; only with RKFS_FLAG_HOLE_AUTH)
 *
 * Marking the last block detects cutting the ciphertext at a block
 * boundary: the new last block was sealed as inner and fails to
 * authenticate.  Appending to a file therefore re-seals its old last block.
 *
 * A backing file of 0 bytes is an empty file that has no header yet (an
 * interrupted create, or a truncate to zero in progress); one of exactly 32
 * bytes is an empty file.  Only the final block may be shorter than 4096
 * plaintext bytes, and it holds at least one byte.  Any other size cannot be
 * produced by rekeyfs and is corruption.  Truncation to 0 bytes or to the
 * header alone is therefore not detectable from the file: it is an empty
 * file, exactly as if the file had been removed and created again, which
 * anyone who can write the backing directory can do anyway.
 *
 * Holes.  Sparse files stay sparse: a non-final block whose 4136 bytes are
 * all zero on disk (never written, or a hole in the backing file) is a
 * hole and reads as 4096 zero bytes.  A zero block carries no tag, so who
 * can write the backing file can zero blocks; what limits that is whether
 * the file may have holes at all:
 *
 *  - flags 0 (files written before RKFS_FLAG_HOLE_AUTH existed): every
 *    non-final all-zero block is a hole, as it always was.  The final
 *    block is sealed with mark 1.  These files are read and written by
 *    these rules for ever (writes keep flags 0 and mark 1); rekeying one
 *    rewrites it with the flag.
 *  - RKFS_FLAG_HOLE_AUTH (every file rekeyfs starts now: create, truncate
 *    to zero, rekey): the final block's mark says whether the file may
 *    have holes.  With mark 1 an all-zero non-final block is corruption
 *    (-EBADMSG), like any block that fails to authenticate; with mark 2 it
 *    is a hole.  A file gets mark 2 when a write starts past the block
 *    after its end (leaving whole blocks unwritten), which includes
 *    growing it by truncate and by fallocate; it keeps mark 2 until it is
 *    truncated to zero or rewritten by rekey (the rekey copy gets mark 2
 *    only if it really has a hole).  The flag itself cannot be removed:
 *    the header is in the AAD of every block.  An unknown flag bit is
 *    refused (-EPROTONOSUPPORT), so older rekeyfs versions refuse these
 *    files rather than misread them.
 *
 * Why the mark of the final block rather than a header flag "has holes":
 * every operation that can create a hole grows the file, and growing
 * re-seals the final block anyway, so the permission costs nothing where
 * it is granted.  A header flag set later would change the AAD of every
 * block: granting it would mean re-sealing the whole file in place, which
 * costs a full rewrite and leaves a file that a crash midway makes
 * unreadable (blocks under two different headers).  Materialising holes as
 * sealed zero blocks instead would give up sparse files.  The final
 * block is sealed with the file's key, so only a key holder can grant the
 * permission, and it is monotonic for a file id (never taken back until
 * the file starts afresh with a new id), so rolling back the final block
 * to an older version cannot grant it either; for the same reason any
 * block of the file that authenticates as a final block with mark 2 (an
 * older final block left in place by a crash, say) is proof enough.  A
 * file whose final block fails to authenticate proves nothing: its zero
 * blocks are refused, and a write or truncate that seals a new final block
 * seals it with mark 1.  So a crash that tears the final block of a file
 * with holes makes its holes unreadable as well as that block, and a
 * repair must not grant mark 2 without such proof.
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
 * Crashes and holes.  An older final version of a block (above) may
 * carry either final mark the file's header allows, so both are tried
 * (only mark 1 without RKFS_FLAG_HOLE_AUTH).  What it proves differs:
 *  - mark 2 proves the hole permission.  Only a key holder sealed it, for
 *    this file id, and the permission is never taken back for a file id:
 *    every final block sealed after it carried mark 2 too, so the file
 *    may have holes now, whatever block is its final one today.  So a
 *    read that meets one notes it, and when the final block proves
 *    nothing the mount also tries the final block as an older final
 *    version of itself and then the last block before it that is not all
 *    zero (at most 64 blocks back; the repair reads every block): the
 *    final block an append left in place, or the new final block of a
 *    truncate whose cut did not reach the disk.  Accepting it cannot grant
 *    what the file never had.
 *  - mark 1 proves nothing: it is older than the final block, and the
 *    file may have been granted mark 2 since (the very write that grew
 *    it past that block, leaving a hole, does so).  It is not noted, so
 *    it cannot revoke the permission: only a final block that opens at
 *    the file's own size with mark 1 says "no holes", as before.
 * So after a crash an all-zero inner block reads as a hole exactly when
 * some block proves mark 2; without a proof (the final block torn, no
 * older final version in reach) the holes are EIO, never wrong data.
 * `rekeyfs-rekey --verify --repair` uses the same test: in a file without
 * the flag an all-zero inner block is a hole; in a flagged one only if
 * some block (or a scratch copy of an interrupted repair) authenticates
 * as a final block with mark 2, and otherwise it is a bad block, which
 * makes the repair refuse the file.  The repair seals the new final block
 * with mark 2 only with that proof (with it, always: completing an older
 * final version or dropping the tail may remove the block that held the
 * proof, so the new final block takes it over, and is written before
 * they are).
 *
 * One gap in "never taken back": a write that would grant mark 2 and then
 * fails (an I/O error, or the barrier's fdatasync) is cut back to the old
 * size, whose final block still has mark 1, so the file goes on without
 * the permission; but its new final block with mark 2 was written, and
 * whoever read the backing file meanwhile can put it back at its own
 * index once the file is that long again.  That proves the permission,
 * and zeroed blocks of that file then read as holes (zeros, never other
 * data), as in any file that may have holes.
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
/* Header flags (bytes 28..31). */
#define RKFS_FLAG_HOLE_AUTH 0x1u
#define RKFS_FLAGS_KNOWN RKFS_FLAG_HOLE_AUTH
/* The last byte of a block's AAD. */
#define RKFS_MARK_INNER 0
#define RKFS_MARK_FINAL 1
#define RKFS_MARK_FINAL_HOLES 2
#define RKFS_FILE_ID_LEN 16
#define RKFS_KEY_LEN 32
#define RKFS_BLOCK_SIZE 4096
#define RKFS_NONCE_LEN 24
#define RKFS_TAG_LEN 16
#define RKFS_BLOCK_OVERHEAD (RKFS_NONCE_LEN + RKFS_TAG_LEN)
#define RKFS_CBLOCK_SIZE (RKFS_BLOCK_SIZE + RKFS_BLOCK_OVERHEAD)
/* header || u64 index || u8 mark */
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
 * an unknown version, cipher or flag bit.  *h is zeroed first.
 */
int rkfs_header_parse(struct rkfs_header *h, const uint8_t *buf, size_t len)
	__attribute__((warn_unused_result, nonnull));

/*
 * Build a fresh header for generation gen with a new random file id and
 * RKFS_FLAG_HOLE_AUTH.
 */
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
