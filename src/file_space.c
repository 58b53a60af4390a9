/*
 * The file layer's answers about space: sizes for stat, backing ranges for
 * I/O hints, reservations (fallocate) and holes (SEEK_DATA / SEEK_HOLE).
 */
#include "rekeyfs/file.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "file_i.h"

uint64_t rkfs_file_stat_size(uint64_t cipher_size)
{
	uint64_t plain, full, rem;

	if (rkfs_size_to_plain(&plain, cipher_size) == 0)
		return plain;
	if (cipher_size < RKFS_HEADER_LEN)
		return 0;
	full = (cipher_size - RKFS_HEADER_LEN) / RKFS_CBLOCK_SIZE;
	rem = (cipher_size - RKFS_HEADER_LEN) % RKFS_CBLOCK_SIZE;
	plain = full * RKFS_BLOCK_SIZE;
	if (rem > RKFS_BLOCK_OVERHEAD)
		plain += rem - RKFS_BLOCK_OVERHEAD;
	return plain;
}

void rkfs_file_backing_range(uint64_t off, uint64_t len, uint64_t *cstart,
			     uint64_t *cend)
{
	uint64_t end;

	if (off > RKFS_FILE_MAX_PLAIN)
		off = RKFS_FILE_MAX_PLAIN;
	end = len > RKFS_FILE_MAX_PLAIN - off ? RKFS_FILE_MAX_PLAIN : off + len;
	*cstart = rkfs_block_offset(off / RKFS_BLOCK_SIZE);
	*cend = rkfs_block_offset(rkfs_block_count(end));
	if (len == 0)
		*cend = *cstart;
}

int rkfs_file_allocate(struct rkfs_file *f, int fd, uint64_t off, uint64_t len,
		       bool keep_size, const struct rkfs_keyring *kr,
		       uint64_t *bad_block)
{
	uint64_t end, cstart, cend;
	int ret;

	if (len == 0 || off > INT64_MAX || len > INT64_MAX)
		return -EINVAL;
	if (off > RKFS_FILE_MAX_PLAIN || len > RKFS_FILE_MAX_PLAIN - off)
		return -EFBIG;
	end = off + len;
	/* Unwritten blocks are zero on disk; past the end they are never
	 * read, and inside the file they are holes already.  The
	 * reservation alone changes nothing a reader sees. */
	rkfs_file_backing_range(off, len, &cstart, &cend);
	ret = rkfs_file_reserve(fd, cstart, cend - cstart);
	if (ret < 0 || keep_size || end <= f->size)
		return ret;
	return rkfs_file_truncate(f, fd, end, kr, bad_block);
}

/* Is block i of a file of plain bytes a hole (all-zero, not final)? */
static int block_is_hole(int fd, uint64_t i, uint64_t plain)
{
	uint8_t cb[RKFS_CBLOCK_SIZE];
	ssize_t n;

	if (i >= (plain - 1) / RKFS_BLOCK_SIZE)
		return 0;
	n = rkfs_pread_full(fd, cb, sizeof(cb), (off_t)rkfs_block_offset(i));
	if (n < 0)
		return (int)n;
	return (size_t)n == sizeof(cb) && rkfs_is_zero(cb, sizeof(cb));
}

#define SEEK_SCAN_MAX 1024 /* blocks examined one by one per call */

/*
 * The backing file's own SEEK_DATA skips unallocated ranges; blocks inside
 * allocated pages are then checked for the all-zero hole marker.  A scan
 * that gives up reports data (SEEK_DATA) or the backing's next hole, which
 * is always correct, only less precise.
 */
off_t rkfs_file_seek(const struct rkfs_file *f, int fd, off_t off, int whence)
{
	uint64_t size = f->size, blk, nblocks, c;
	int hole;
	off_t r;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	if (off < 0 || (uint64_t)off >= size)
		return -ENXIO;
	/* In a file that may have no holes, every block is data. */
	hole = rkfs_file_holes_allowed(f, fd);
	if (hole < 0)
		return hole;
	if (hole == 0)
		return whence == SEEK_DATA ? off : (off_t)size;
	nblocks = rkfs_block_count(size);
	blk = (uint64_t)off / RKFS_BLOCK_SIZE;
	for (int scanned = 0; scanned < SEEK_SCAN_MAX && blk < nblocks;
	     scanned++) {
		if (whence == SEEK_DATA) {
			r = lseek(fd, (off_t)rkfs_block_offset(blk), SEEK_DATA);
			if (r < 0)
				return -errno;
			c = (uint64_t)r < RKFS_HEADER_LEN
				    ? 0
				    : ((uint64_t)r - RKFS_HEADER_LEN) /
					      RKFS_CBLOCK_SIZE;
			if (c > blk)
				blk = c;
		}
		hole = block_is_hole(fd, blk, size);
		if (hole < 0)
			return hole;
		if (hole == (whence == SEEK_HOLE))
			break;
		blk++;
	}
	if (blk >= nblocks)
		return whence == SEEK_DATA ? -ENXIO : (off_t)size;
	c = blk * RKFS_BLOCK_SIZE;
	return (off_t)(c < (uint64_t)off ? (uint64_t)off : c);
}
