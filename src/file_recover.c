/*
 * Blocks left behind by a crash: a block that does not authenticate as
 * what the file size says may still be an older *final* version of
 * itself, shorter than its slot (see "Crashes" in rekeyfs/format.h).
 */
#include "file_i.h"

#include <errno.h>
#include <stdint.h>

#include <sodium.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"

#define PAGE 4096
/*
 * Zero bytes a tag may end with and still be found: the search starts at
 * the last non-zero byte, so a tag ending in more than TAG_ZEROS zero
 * bytes (probability 2^-64) is not found and its block stays unreadable.
 */
#define TAG_ZEROS 7

/*
 * The first e bytes of the slot as a final block, with each final mark a
 * file with header h may use (files without RKFS_FLAG_HOLE_AUTH know only
 * RKFS_MARK_FINAL); *mark gets the one that opened.
 */
static int try_end(uint8_t *plain, int *mark, const uint8_t *cb, size_t e,
		   uint64_t i, size_t maxlen, const struct rkfs_header *h,
		   const unsigned char *key)
{
	int last = (h->flags & RKFS_FLAG_HOLE_AUTH) ? RKFS_MARK_FINAL_HOLES
						     : RKFS_MARK_FINAL;

	if (e <= RKFS_BLOCK_OVERHEAD || e - RKFS_BLOCK_OVERHEAD > maxlen)
		return -EBADMSG;
	for (*mark = RKFS_MARK_FINAL; *mark <= last; (*mark)++)
		if (rkfs_block_open(plain, cb, e, i, *mark, h, key) == 0)
			return 0;
	*mark = 0;
	return -EBADMSG;
}

int rkfs_block_open_short(uint8_t *plain, size_t *len, int *mark,
			  const uint8_t *cb, size_t avail, uint64_t coff,
			  uint64_t i, size_t maxlen,
			  const struct rkfs_header *h, const unsigned char *key)
{
	size_t tried_lo = 0, tried_hi = 0; /* ends [lo, hi) tried already */
	size_t b, z, e;

	*len = 0;
	*mark = 0;
	if (avail > RKFS_CBLOCK_SIZE)
		avail = RKFS_CBLOCK_SIZE;
	if (maxlen > RKFS_BLOCK_SIZE)
		maxlen = RKFS_BLOCK_SIZE;
	/*
	 * The old block ends at some e; what follows it in its page is
	 * zero (it was the end of the file), so e lies just after the last
	 * non-zero byte before one of the page boundaries inside the slot
	 * (or before the slot's end): later pages may hold anything.
	 */
	b = (size_t)(PAGE - coff % PAGE);
	for (;; b += PAGE) {
		if (b > avail)
			b = avail;
		for (z = b; z > 0 && cb[z - 1] == 0; z--)
			;
		for (e = z; e <= z + TAG_ZEROS && e <= b; e++) {
			if (e >= tried_lo && e < tried_hi)
				continue;
			if (try_end(plain, mark, cb, e, i, maxlen, h,
				    key) == 0) {
				*len = e - RKFS_BLOCK_OVERHEAD;
				return 0;
			}
		}
		tried_lo = z;
		tried_hi = e;
		if (b == avail)
			break;
	}
	return -EBADMSG;
}

/*
 * The file really grew past block i if a later block authenticates as
 * itself: the next one, or the last one if the next is a hole the file
 * may have.  Only a holder of the key can have written it after block i
 * stopped being final.
 */
bool rkfs_file_grew_past(const struct rkfs_file *f, int fd, uint64_t i)
{
	uint8_t cb[RKFS_CBLOCK_SIZE], pb[RKFS_BLOCK_SIZE];
	uint64_t flast, j;
	size_t cl;
	ssize_t n;
	bool ok = false;

	if (f->size == 0 || f->key == NULL)
		return false;
	flast = (f->size - 1) / RKFS_BLOCK_SIZE;
	for (j = i + 1; j <= flast; j = flast) {
		cl = j < flast ? RKFS_CBLOCK_SIZE
			       : (size_t)(f->size - flast * RKFS_BLOCK_SIZE) +
					 RKFS_BLOCK_OVERHEAD;
		n = rkfs_pread_full(fd, cb, cl, (off_t)rkfs_block_offset(j));
		if (n != (ssize_t)cl)
			break;
		/* a zero block where the file may not have holes is no
		 * hole: it proves nothing */
		if (j < flast && rkfs_is_zero(cb, cl)) {
			if (rkfs_file_holes_allowed(f, fd) > 0)
				continue;
			break;
		}
		ok = rkfs_file_open_block(f, pb, cb, cl, j, j == flast) == 0;
		break;
	}
	sodium_memzero(pb, sizeof(pb));
	return ok;
}
