#include "rekeyfs/file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/fsio.h"
#include "file_i.h"

#define CHUNK_BLOCKS 256 /* 1 MiB of plaintext per streaming step */

/*
 * Per-thread scratch space, so the I/O path never allocates per block or
 * per request once a thread has warmed up.
 */
struct scratch {
	uint8_t *cbuf;
	size_t ccap;
	uint8_t block[RKFS_BLOCK_SIZE];
	uint8_t *plain; /* sodium_malloc()ed block for whole-file walks */
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct scratch *s = p;

	if (s) {
		free(s->cbuf);
		sodium_memzero(s->block, sizeof(s->block));
		if (s->plain)
			sodium_free(s->plain);
		free(s);
	}
}

static void scratch_init(void)
{
	(void)pthread_key_create(&scratch_key, scratch_free);
}

static struct scratch *scratch_get(size_t need)
{
	struct scratch *s;

	pthread_once(&scratch_once, scratch_init);
	s = pthread_getspecific(scratch_key);
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return NULL;
		if (pthread_setspecific(scratch_key, s) != 0) {
			free(s);
			return NULL;
		}
	}
	if (s->ccap < need) {
		uint8_t *n = realloc(s->cbuf, need);

		if (n == NULL)
			return NULL;
		s->cbuf = n;
		s->ccap = need;
	}
	return s;
}

/* Ciphertext length of block i in a file of plain bytes. */
static size_t cblock_len(uint64_t plain, uint64_t i)
{
	uint64_t start = i * RKFS_BLOCK_SIZE;
	uint64_t left = plain - start;

	return (left >= RKFS_BLOCK_SIZE ? RKFS_BLOCK_SIZE : (size_t)left) +
	       RKFS_BLOCK_OVERHEAD;
}

static uint64_t final_index(uint64_t plain)
{
	return (plain - 1) / RKFS_BLOCK_SIZE;
}

/*
 * Holes (rekeyfs/format.h): with RKFS_FLAG_HOLE_AUTH, the mark of the
 * final block says whether an all-zero inner block is a hole or a zeroed
 * block.  f->holes caches that mark once a final block has opened;
 * readers under shared access may store it concurrently, and they store
 * what the same on-disk block proves.
 */
static bool hole_auth(const struct rkfs_file *f)
{
	return (f->hdr.flags & RKFS_FLAG_HOLE_AUTH) != 0;
}

static int holes_get(const struct rkfs_file *f)
{
	return __atomic_load_n(&f->holes, __ATOMIC_RELAXED);
}

static void holes_note(const struct rkfs_file *f, int mark)
{
	__atomic_store_n((int *)&f->holes, mark, __ATOMIC_RELAXED);
}

/* The mark to seal a new final block of f with. */
static int final_mark(const struct rkfs_file *f, bool holes)
{
	if (!hole_auth(f) || !holes)
		return RKFS_MARK_FINAL;
	return RKFS_MARK_FINAL_HOLES;
}

/*
 * Open the final block i: with the mark f is known to use first, then
 * the other one; which one opens tells whether f may have holes.
 */
static int open_final(const struct rkfs_file *f, uint8_t *out,
		      const uint8_t *cb, size_t cl, uint64_t i)
{
	int mark, other;

	if (!hole_auth(f))
		return rkfs_block_open(out, cb, cl, i, RKFS_MARK_FINAL, &f->hdr,
				       f->key);
	mark = holes_get(f) == RKFS_MARK_FINAL_HOLES ? RKFS_MARK_FINAL_HOLES
						     : RKFS_MARK_FINAL;
	other =
	    mark == RKFS_MARK_FINAL ? RKFS_MARK_FINAL_HOLES : RKFS_MARK_FINAL;
	if (rkfs_block_open(out, cb, cl, i, mark, &f->hdr, f->key) < 0) {
		mark = other;
		if (rkfs_block_open(out, cb, cl, i, mark, &f->hdr, f->key) < 0)
			return -EBADMSG;
	}
	holes_note(f, mark);
	return 0;
}

static int open_block(const struct rkfs_file *f, uint8_t *out,
		      const uint8_t *cb, size_t cl, uint64_t i, bool final)
{
	if (final)
		return open_final(f, out, cb, cl, i);
	return rkfs_block_open(out, cb, cl, i, RKFS_MARK_INNER, &f->hdr,
			       f->key);
}

int rkfs_file_open_block(const struct rkfs_file *f, uint8_t *out,
			 const uint8_t *cb, size_t cl, uint64_t i, bool final)
{
	return open_block(f, out, cb, cl, i, final);
}

/*
 * A block that failed to open as the size says, tried as an older final
 * version of itself (rkfs_block_open_short()).  One sealed with
 * RKFS_MARK_FINAL_HOLES proves that f may have holes (the permission is
 * never taken back for a file id, format.h); one sealed with
 * RKFS_MARK_FINAL is older than the final block and proves nothing about
 * it, so it is not noted.
 */
static int open_short(const struct rkfs_file *f, uint8_t *out, size_t *len,
		      const uint8_t *cb, size_t cl, uint64_t i, size_t maxlen)
{
	int mark;

	if (rkfs_block_open_short(out, len, &mark, cb, cl,
				  rkfs_block_offset(i), i, maxlen, &f->hdr,
				  f->key) < 0)
		return -EBADMSG;
	if (mark == RKFS_MARK_FINAL_HOLES)
		holes_note(f, mark);
	return 0;
}

/*
 * How far back from a final block that proves nothing the mount looks for
 * the last block before it that holds anything (the final block before
 * an append or extension that a crash left in place, or the new final
 * block of a truncate whose cut did not reach the disk).  A proof further
 * back is found by the repair, which reads every block.
 */
#define PROOF_LOOKBACK 64

/* The first block before i that is not all zero, as an older final. */
static int older_final_proof(const struct rkfs_file *f, int fd, uint64_t i,
			     uint8_t *cb, uint8_t *pb)
{
	uint64_t stop = i > PROOF_LOOKBACK ? i - PROOF_LOOKBACK : 0;
	size_t sl;
	ssize_t n;

	while (i-- > stop) {
		n = rkfs_pread_full(fd, cb, RKFS_CBLOCK_SIZE,
				    (off_t)rkfs_block_offset(i));
		if (n < 0)
			return (int)n;
		if (n != RKFS_CBLOCK_SIZE)
			return 0;
		if (rkfs_is_zero(cb, RKFS_CBLOCK_SIZE))
			continue;
		if (open_block(f, pb, cb, RKFS_CBLOCK_SIZE, i, false) < 0)
			(void)open_short(f, pb, &sl, cb, RKFS_CBLOCK_SIZE, i,
					 RKFS_BLOCK_SIZE);
		return 0;
	}
	return 0;
}

int rkfs_file_holes_allowed(const struct rkfs_file *f, int fd)
{
	uint8_t cb[RKFS_CBLOCK_SIZE], pb[RKFS_BLOCK_SIZE];
	uint64_t i;
	size_t cl, sl;
	ssize_t n;
	int ret = 0;

	if (holes_get(f) == 0 && f->key != NULL && f->size > 0) {
		i = final_index(f->size);
		cl = cblock_len(f->size, i);
		n = rkfs_pread_full(fd, cb, cl, (off_t)rkfs_block_offset(i));
		if (n < 0)
			return (int)n;
		/*
		 * A final block that does not open proves nothing: no
		 * holes, unless a crash left an older final version of it,
		 * or of the last block before it, sealed with mark 2
		 * (format.h, "Crashes and holes").
		 */
		if ((size_t)n == cl && open_final(f, pb, cb, cl, i) < 0) {
			if (cl > RKFS_BLOCK_OVERHEAD + 1)
				(void)open_short(f, pb, &sl, cb, cl, i,
						 cl - RKFS_BLOCK_OVERHEAD - 1);
			if (holes_get(f) == 0)
				ret = older_final_proof(f, fd, i, cb, pb);
		}
		sodium_memzero(pb, sizeof(pb));
		if (ret < 0)
			return ret;
	}
	return holes_get(f) == RKFS_MARK_FINAL_HOLES;
}

/*
 * Per-file keys come from slabs of sodium_malloc() memory (guarded,
 * mlocked, kept out of core dumps) carved into key-sized slots: one
 * sodium_malloc() per file costs about ten system calls, which showed in
 * every small-file open.  Free slots are wiped and chained through their
 * first bytes.
 */
#define KEY_SLAB_SLOTS 128

struct key_slot {
	struct key_slot *next;
};

static pthread_mutex_t key_slab_mu = PTHREAD_MUTEX_INITIALIZER;
static struct key_slot *key_free_list;

static unsigned char *key_alloc(void)
{
	struct key_slot *s;

	pthread_mutex_lock(&key_slab_mu);
	if (key_free_list == NULL) {
		unsigned char *slab =
			sodium_malloc((size_t)KEY_SLAB_SLOTS * RKFS_KEY_LEN);

		for (size_t i = 0; slab && i < KEY_SLAB_SLOTS; i++) {
			s = (struct key_slot *)(void *)(slab + i * RKFS_KEY_LEN);
			s->next = key_free_list;
			key_free_list = s;
		}
	}
	s = key_free_list;
	if (s)
		key_free_list = s->next;
	pthread_mutex_unlock(&key_slab_mu);
	return (unsigned char *)s;
}

static void key_release(unsigned char *key)
{
	struct key_slot *s = (struct key_slot *)(void *)key;

	sodium_memzero(key, RKFS_KEY_LEN);
	pthread_mutex_lock(&key_slab_mu);
	s->next = key_free_list;
	key_free_list = s;
	pthread_mutex_unlock(&key_slab_mu);
}

static int set_key(struct rkfs_file *f, const unsigned char *gen_key)
{
	if (f->key == NULL) {
		f->key = key_alloc();
		if (f->key == NULL)
			return -ENOMEM;
	}
	rkfs_crypt_file_key(f->key, f->hdr.file_id, gen_key);
	f->key_err = 0;
	return 0;
}

static void drop_key(struct rkfs_file *f, int why)
{
	if (f->key) {
		key_release(f->key);
		f->key = NULL;
	}
	f->key_err = why;
}

void rkfs_file_release(struct rkfs_file *f)
{
	drop_key(f, 0);
	memset(f, 0, sizeof(*f));
}

int rkfs_file_plain_size(uint64_t *plain, uint64_t cipher_size)
{
	return rkfs_size_to_plain(plain, cipher_size);
}

uint32_t rkfs_file_generation(const struct rkfs_file *f)
{
	return f->has_header ? f->hdr.generation : 0;
}

int rkfs_file_use_keyring(struct rkfs_file *f, const struct rkfs_keyring *kr)
{
	const unsigned char *gk;
	int err;

	f->serial = kr->serial;
	if (!f->has_header) {
		drop_key(f, 0);
		return 0;
	}
	gk = rkfs_keyring_key(kr, f->hdr.generation, &err);
	if (gk == NULL) {
		drop_key(f, err);
		return 0;
	}
	return set_key(f, gk);
}

int rkfs_file_load(struct rkfs_file *f, int fd, const struct rkfs_keyring *kr)
{
	uint8_t raw[RKFS_HEADER_LEN];
	struct stat st;
	ssize_t n;
	int ret;

	memset(f, 0, sizeof(*f));
	if (fstat(fd, &st) < 0)
		return -errno;
	/* A size no valid file has, past the header, is a tail torn by a
	 * crash: the whole blocks before it still read (rkfs_file_verify()
	 * reports it). */
	ret = rkfs_size_to_plain(&f->size, (uint64_t)st.st_size);
	if (ret < 0 && st.st_size > RKFS_HEADER_LEN)
		f->size = rkfs_file_stat_size((uint64_t)st.st_size);
	else if (ret < 0)
		return ret;
	f->dense = st.st_size == 0 || lseek(fd, 0, SEEK_HOLE) >= st.st_size;
	if (st.st_size == 0)
		return rkfs_file_use_keyring(f, kr);
	n = rkfs_pread_full(fd, raw, sizeof(raw), 0);
	if (n < 0)
		return (int)n;
	ret = rkfs_header_parse(&f->hdr, raw, (size_t)n);
	if (ret < 0)
		return -EBADMSG;
	f->has_header = true;
	if (!hole_auth(f))
		f->holes = RKFS_MARK_FINAL_HOLES;
	else if (f->size == 0)
		f->holes = RKFS_MARK_FINAL;
	ret = rkfs_file_use_keyring(f, kr);
	if (ret < 0)
		rkfs_file_release(f);
	return ret;
}

/* Start the file afresh under kr's primary: new header written at 0. */
static int new_header(struct rkfs_file *f, int fd, const struct rkfs_keyring *kr)
{
	const unsigned char *gk;
	struct rkfs_header h;
	int err, ret;

	gk = rkfs_keyring_key(kr, kr->primary, &err);
	if (gk == NULL)
		return err;
	rkfs_header_init(&h, kr->primary);
	ret = rkfs_pwrite_full(fd, h.raw, sizeof(h.raw), 0);
	if (ret < 0)
		return ret;
	f->hdr = h;
	f->has_header = true;
	f->size = 0;
	f->dense = true;
	f->holes = RKFS_MARK_FINAL;
	f->serial = kr->serial;
	return set_key(f, gk);
}

/*
 * Like new_header() for a file that is empty anyway: on a full disk the
 * file stays a valid 0-byte empty file (no header) and 0 is returned; its
 * first write then reports the error.
 */
static int new_header_or_empty(struct rkfs_file *f, int fd,
			       const struct rkfs_keyring *kr)
{
	int ret = new_header(f, fd, kr);

	if ((ret == -ENOSPC || ret == -EDQUOT) && ftruncate(fd, 0) == 0) {
		drop_key(f, 0);
		f->has_header = false;
		f->size = 0;
		f->serial = kr->serial;
		ret = 0;
	}
	return ret;
}

int rkfs_file_init_empty(struct rkfs_file *f, int fd,
			 const struct rkfs_keyring *kr)
{
	if (f->has_header)
		return 0;
	return new_header_or_empty(f, fd, kr);
}

/*
 * Decrypt block i of a file whose plaintext size is plain into out (which
 * receives the block's plaintext length, returned in *len).  Holes read as
 * zeros.  Used for read-modify-write of partial blocks.  Only the first
 * need bytes must authenticate: a block left by a crash that gives at
 * least that many is accepted, the rest of out zeroed.
 */
static int read_block_need(const struct rkfs_file *f, int fd, uint64_t i,
			   uint64_t plain, uint8_t *out, size_t *len,
			   size_t need, uint64_t *bad_block)
{
	uint8_t cb[RKFS_CBLOCK_SIZE];
	size_t cl = cblock_len(plain, i), sl;
	int final = i == final_index(plain);
	ssize_t n;

	*len = cl - RKFS_BLOCK_OVERHEAD;
	n = rkfs_pread_full(fd, cb, cl, (off_t)rkfs_block_offset(i));
	if (n < 0)
		return (int)n;
	if ((size_t)n != cl) {
		if (bad_block)
			*bad_block = i;
		return -EBADMSG;
	}
	if (!final && rkfs_is_zero(cb, cl)) {
		int ok = rkfs_file_holes_allowed(f, fd);

		if (ok < 0)
			return ok;
		if (ok) {
			memset(out, 0, *len);
			return 0;
		}
	} else if (open_block(f, out, cb, cl, i, final) == 0) {
		return 0;
	}
	/* a block left by a crash (see rkfs_file_read()) serves a caller
	 * that needs only its own bytes */
	if (open_short(f, out, &sl, cb, cl, i,
		       final ? *len - 1 : RKFS_BLOCK_SIZE) == 0 &&
	    (sl >= need || (!final && rkfs_file_grew_past(f, fd, i)))) {
		memset(out + sl, 0, *len - sl);
		return 0;
	}
	if (bad_block)
		*bad_block = i;
	return -EBADMSG;
}

/* The whole block: see read_block_need(). */
static int read_block(const struct rkfs_file *f, int fd, uint64_t i,
		      uint64_t plain, uint8_t *out, size_t *len,
		      uint64_t *bad_block)
{
	return read_block_need(f, fd, i, plain, out, len,
			       cblock_len(plain, i) - RKFS_BLOCK_OVERHEAD,
			       bad_block);
}

/*
 * Small random I/O: when the backing pages of a small read or overwrite
 * are not cached, start reading the aligned 1 MiB window around them, so
 * that the neighbouring small requests that usually follow find their
 * pages cached instead of each waiting on a small synchronous read (as
 * the kernel reads around a page fault).  Overwrites need this too: sealed
 * blocks are 4136 bytes, so they straddle page boundaries and the backing
 * filesystem reads the pages at both ends first.  The probe is a
 * non-blocking one-byte read of each end.
 */
#define WARM_WINDOW (1U << 20)
static bool warm_unsupported;

static bool page_cached(int fd, uint64_t off)
{
	char c;
	struct iovec v = {&c, 1};

	if (preadv2(fd, &v, 1, (off_t)off, RWF_NOWAIT) >= 0)
		return true;
	if (errno == EOPNOTSUPP || errno == EINVAL)
		__atomic_store_n(&warm_unsupported, true, __ATOMIC_RELAXED);
	return false;
}

/* Start reading the aligned window around off. */
static void warm_window(int fd, uint64_t off)
{
	uint64_t start = off & ~(uint64_t)(WARM_WINDOW - 1);

	(void)posix_fadvise(fd, (off_t)start, WARM_WINDOW, POSIX_FADV_WILLNEED);
}

static void warm_around(int fd, uint64_t off, size_t len)
{
	if (len > WARM_WINDOW / 2 ||
	    __atomic_load_n(&warm_unsupported, __ATOMIC_RELAXED))
		return;
	if (page_cached(fd, off) && page_cached(fd, off + len - 1))
		return;
	warm_window(fd, off);
}

/*
 * rkfs_pread_full() for reads, with warm_around() folded in: a small read
 * first tries a non-blocking read of the whole range, which is all it
 * takes when the pages are cached; only when that comes up short is the
 * window around them started before the blocking read of the rest.
 */
static ssize_t read_warm(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	struct iovec v = {buf, len};
	ssize_t n = 0, r;

	if (len <= WARM_WINDOW / 2 &&
	    !__atomic_load_n(&warm_unsupported, __ATOMIC_RELAXED)) {
		n = preadv2(fd, &v, 1, (off_t)off, RWF_NOWAIT);
		if (n == (ssize_t)len)
			return n;
		if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL))
			__atomic_store_n(&warm_unsupported, true,
					 __ATOMIC_RELAXED);
		if (n < 0)
			n = 0; /* the blocking read below reports errors */
		warm_window(fd, off);
	}
	r = rkfs_pread_full(fd, buf + n, len - (size_t)n, (off_t)(off + n));
	return r < 0 ? r : n + r;
}

ssize_t rkfs_file_read(struct rkfs_file *f, int fd, void *buf, size_t len,
		       uint64_t off, uint64_t *bad_block)
{
	uint64_t plain = f->size, first, last, flast, coff, cend;
	uint8_t *out = buf;
	struct scratch *s;
	ssize_t n;

	if (off >= plain || len == 0)
		return 0;
	if (f->key == NULL)
		return f->key_err ? f->key_err : -ENOKEY;
	if (len > plain - off)
		len = (size_t)(plain - off);
	first = off / RKFS_BLOCK_SIZE;
	last = (off + len - 1) / RKFS_BLOCK_SIZE;
	flast = final_index(plain);
	coff = rkfs_block_offset(first);
	cend = rkfs_block_offset(last) + cblock_len(plain, last);
	s = scratch_get((size_t)(cend - coff));
	if (s == NULL)
		return -ENOMEM;
	n = read_warm(fd, s->cbuf, (size_t)(cend - coff), coff);
	if (n < 0)
		return n;
	if ((uint64_t)n != cend - coff) {
		if (bad_block)
			*bad_block = first + (uint64_t)n / RKFS_CBLOCK_SIZE;
		return -EBADMSG;
	}
	for (uint64_t i = first; i <= last; i++) {
		const uint8_t *cb = s->cbuf + (i - first) * RKFS_CBLOCK_SIZE;
		size_t cl = cblock_len(plain, i);
		size_t pl = cl - RKFS_BLOCK_OVERHEAD;
		uint64_t bstart = i * RKFS_BLOCK_SIZE;
		uint64_t from = off > bstart ? off : bstart;
		uint64_t to = off + len < bstart + pl ? off + len : bstart + pl;
		uint8_t *dst = out + (from - off);
		int final = i == flast;
		size_t sl;

		if (!final && rkfs_is_zero(cb, cl)) {
			int ok = rkfs_file_holes_allowed(f, fd);

			if (ok < 0)
				return ok;
			if (!ok)
				goto bad;
			memset(dst, 0, (size_t)(to - from));
			continue;
		}
		if (to - from == pl) {
			if (open_block(f, dst, cb, cl, i, final) == 0)
				continue;
		} else if (open_block(f, s->block, cb, cl, i, final) == 0) {
			memcpy(dst, s->block + (from - bstart), (size_t)(to - from));
			continue;
		}
		/* left by a crash: an older final version of the block
		 * gives its own bytes; the rest reads as zeros only if a
		 * later block proves the file grew past it (format.h) */
		if (open_short(f, s->block, &sl, cb, cl, i,
			       final ? pl - 1 : RKFS_BLOCK_SIZE) == 0 &&
		    (to - bstart <= sl ||
		     (!final && rkfs_file_grew_past(f, fd, i)))) {
			memset(s->block + sl, 0, pl - sl);
			memcpy(dst, s->block + (from - bstart), (size_t)(to - from));
			continue;
		}
bad:
		if (bad_block)
			*bad_block = i;
		return -EBADMSG;
	}
	return (ssize_t)len;
}

/*
 * Re-seal the old final block oflast of a file of plain bytes as a full,
 * non-final block (zero padded), because the file grows past it.
 */
static int reseal_old_final(const struct rkfs_file *f, int fd,
			    uint64_t plain, uint64_t *bad_block)
{
	uint8_t pb[RKFS_BLOCK_SIZE], cb[RKFS_CBLOCK_SIZE];
	uint64_t i = final_index(plain);
	size_t len;
	int ret;

	ret = read_block(f, fd, i, plain, pb, &len, bad_block);
	if (ret < 0)
		goto out;
	memset(pb + len, 0, sizeof(pb) - len);
	rkfs_block_seal(cb, pb, RKFS_BLOCK_SIZE, i, RKFS_MARK_INNER, &f->hdr,
			f->key);
	ret = rkfs_pwrite_full(fd, cb, sizeof(cb), (off_t)rkfs_block_offset(i));
out:
	sodium_memzero(pb, sizeof(pb));
	return ret;
}

uint64_t rkfs_file_sync_begin(const struct rkfs_file *f)
{
	return __atomic_load_n(&f->final_seq, __ATOMIC_ACQUIRE);
}

void rkfs_file_sync_done(struct rkfs_file *f, uint64_t token)
{
	uint64_t cur = __atomic_load_n(&f->synced_seq, __ATOMIC_RELAXED);

	while (cur < token &&
	       !__atomic_compare_exchange_n(&f->synced_seq, &cur, token, false,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

/* May the final block be on disk already, written before the last sync? */
static bool final_durable(const struct rkfs_file *f)
{
	return __atomic_load_n(&f->synced_seq, __ATOMIC_ACQUIRE) ==
	       f->final_seq;
}

int rkfs_file_reserve(int fd, uint64_t off, uint64_t len)
{
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0 &&
	    errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return 0;
}

/*
 * One write: blocks [first, last] sealed into cbuf (block i at
 * (i - first) * RKFS_CBLOCK_SIZE) for a file that goes from plain to
 * nplain bytes.  Everything here is fixed before sealing starts, so a
 * helper thread may seal and write the run [i0, i1] while the writer does
 * the blocks before it: each block is read (partial blocks), sealed and
 * written by one thread only, and neither touches *f.
 */
struct wrange {
	const struct rkfs_file *f;
	int fd;
	const uint8_t *in;
	uint64_t off, end, plain, nplain, nflast, first;
	int fin; /* mark of the new final block */
	uint8_t *cbuf;
	uint64_t i0, i1; /* the helper's run */
	uint64_t bad;    /* the helper's bad block */
};

/* Plaintext length of block i once written. */
static size_t wr_blen(const struct wrange *w, uint64_t i)
{
	return i < w->nflast ? RKFS_BLOCK_SIZE
			     : (size_t)(w->nplain - i * RKFS_BLOCK_SIZE);
}

static size_t wr_cpos(const struct wrange *w, uint64_t i)
{
	return (size_t)(i - w->first) * RKFS_CBLOCK_SIZE;
}

/* Sealed length of blocks [i0, i1]: only the last can be short. */
static size_t wr_clen(const struct wrange *w, uint64_t i0, uint64_t i1)
{
	return wr_cpos(w, i1) - wr_cpos(w, i0) + wr_blen(w, i1) +
	       RKFS_BLOCK_OVERHEAD;
}

static int seal_run(const struct wrange *w, uint64_t i0, uint64_t i1,
		    uint64_t *bad_block)
{
	uint8_t pb[RKFS_BLOCK_SIZE];
	bool used = false;
	int ret = 0;

	for (uint64_t i = i0; i <= i1; i++) {
		uint64_t bstart = i * RKFS_BLOCK_SIZE;
		size_t nlen = wr_blen(w, i);
		uint64_t from = w->off > bstart ? w->off : bstart;
		uint64_t to = w->end < bstart + nlen ? w->end : bstart + nlen;
		const uint8_t *src;

		if (from == bstart && to == bstart + nlen) {
			src = w->in + (bstart - w->off);
		} else {
			size_t olen = 0;

			used = true;
			if (bstart < w->plain) {
				ret = read_block(w->f, w->fd, i, w->plain, pb,
						 &olen, bad_block);
				if (ret < 0)
					break;
			}
			if (olen < nlen)
				memset(pb + olen, 0, nlen - olen);
			memcpy(pb + (from - bstart), w->in + (from - w->off),
			       (size_t)(to - from));
			src = pb;
		}
		rkfs_block_seal(w->cbuf + wr_cpos(w, i), src, nlen, i,
				i == w->nflast ? w->fin : RKFS_MARK_INNER,
				&w->f->hdr, w->f->key);
	}
	if (used)
		sodium_memzero(pb, sizeof(pb));
	return ret;
}

static int seal_job(void *arg)
{
	struct wrange *w = arg;

	return seal_run(w, w->i0, w->i1, &w->bad);
}

static int seal_write_job(void *arg)
{
	struct wrange *w = arg;
	int ret = seal_run(w, w->i0, w->i1, &w->bad);

	if (ret == 0)
		ret = rkfs_pwrite_full(w->fd, w->cbuf + wr_cpos(w, w->i0),
				       wr_clen(w, w->i0, w->i1),
				       (off_t)rkfs_block_offset(w->i0));
	return ret;
}

static int write_job(void *arg)
{
	struct wrange *w = arg;

	return rkfs_pwrite_full(w->fd, w->cbuf + wr_cpos(w, w->i0),
				wr_clen(w, w->i0, w->i1),
				(off_t)rkfs_block_offset(w->i0));
}

/*
 * Make the space a re-sealed old final block grows into, between the old
 * end of the file and the new blocks right after it, part of the file:
 * zeros, which read as the hole a crash would otherwise leave there.  The
 * re-seal then only overwrites space the file has, and a full disk fails
 * here, before any old data is touched (and the file is cut back).
 * Unlike fallocate, this leaves the space to the filesystem's delayed
 * allocation, in one extent with the blocks written after it.  Only for a
 * write that starts at the block after the old final one: a write that
 * leaves a hole reserves instead, keeping the hole sparse.
 */
static int fill_reseal_gap(int fd, uint64_t old_end, uint64_t coff)
{
	static const uint8_t zeros[RKFS_CBLOCK_SIZE];
	int ret;

	if (coff <= old_end)
		return 0;
	ret = rkfs_pwrite_full(fd, zeros, (size_t)(coff - old_end),
			       (off_t)old_end);
	/* A short write moved the end: the old final block must end the
	 * file again. */
	if (ret < 0 && ftruncate(fd, (off_t)old_end) < 0)
		ret = -EIO;
	return ret;
}

/*
 * Large writes are split on a block boundary: a helper of the sealer
 * seals the second half while this thread seals the first; once both
 * are sealed (so an unreadable partial block still fails the write before
 * anything is written) and the space is reserved, each writes its half.
 */
#define PAR_MIN (256 * 1024)

static ssize_t write_range(struct rkfs_file *f, int fd, const void *buf,
			   size_t len, uint64_t off,
			   const struct rkfs_keyring *kr, uint64_t *bad_block,
			   struct rkfs_sealer *sealer)
{
	struct wrange w = { .f = f, .fd = fd, .in = buf, .off = off,
			    .bad = UINT64_MAX };
	struct rkfs_helper *h = NULL;
	uint64_t last, mid, coff, old_end;
	bool grows, reseal, adjacent;
	struct scratch *s;
	size_t clen, pre;
	int ret, hret;

	if (len == 0)
		return 0;
	if (off > RKFS_FILE_MAX_PLAIN || len > RKFS_FILE_MAX_PLAIN - off)
		return -EFBIG;
	if (!f->has_header) {
		ret = new_header(f, fd, kr);
		/* The file was empty: leave it a valid 0-byte file. */
		if (ret < 0 && ftruncate(fd, 0) < 0)
			ret = -errno;
		if (ret < 0)
			return ret;
	}
	if (f->key == NULL)
		return f->key_err ? f->key_err : -ENOKEY;
	w.plain = f->size;
	w.end = off + len;
	w.nplain = w.end > w.plain ? w.end : w.plain;
	grows = w.nplain > w.plain;
	w.first = off / RKFS_BLOCK_SIZE;
	last = (w.end - 1) / RKFS_BLOCK_SIZE;
	w.nflast = final_index(w.nplain);
	/* The old final block stops being final; if it lies before the
	 * written range it must be re-sealed separately. */
	reseal = grows && w.plain > 0 && final_index(w.plain) < w.first;
	/* The new final block keeps the file's permission for holes, and
	 * grants it if this write leaves one. */
	if (last == w.nflast) {
		ret = rkfs_write_leaves_hole(w.plain, off);
		if (ret == 0 && w.plain > 0 && hole_auth(f))
			ret = rkfs_file_holes_allowed(f, fd);
		if (ret < 0)
			return ret;
		w.fin = final_mark(f, ret);
	}

	s = scratch_get((size_t)(last - w.first + 1) * RKFS_CBLOCK_SIZE);
	if (s == NULL)
		return -ENOMEM;
	w.cbuf = s->cbuf;
	clen = wr_clen(&w, w.first, last);
	if (len >= PAR_MIN && last > w.first)
		h = rkfs_sealer_claim(sealer);
	mid = h ? w.first + (last - w.first + 1) / 2 : last + 1;
	coff = rkfs_block_offset(w.first);
	old_end = rkfs_size_to_cipher(w.plain);
	adjacent = reseal && w.first == final_index(w.plain) + 1;
	if (h && grows) {
		/*
		 * Growing (a sequential writer): whatever fails, the file is
		 * cut back to its old size, so each half is written as soon
		 * as it is sealed and the crypto of one overlaps the I/O of
		 * the other.  What needs space is reserved first, as below.
		 */
		pre = !reseal && w.plain > 0 ? old_end - coff : 0;
		ret = 0;
		if (reseal && adjacent)
			ret = fill_reseal_gap(fd, old_end, coff);
		else if (reseal)
			ret = rkfs_file_reserve(
			    fd, rkfs_block_offset(final_index(w.plain)),
			    RKFS_CBLOCK_SIZE);
		else if (pre > wr_cpos(&w, mid))
			ret = rkfs_file_reserve(fd, coff, clen);
		else if (pre && !f->dense) /* holes among the old data */
			ret = rkfs_file_reserve(fd, coff, pre);
		if (ret < 0)
			goto out;
		if (pre > wr_cpos(&w, mid))
			pre = 0; /* reserved: one pass */
		w.i0 = mid;
		w.i1 = last;
		rkfs_helper_run(h, seal_write_job, &w);
		ret = seal_run(&w, w.first, mid - 1, bad_block);
		if (ret == 0)
			ret = rkfs_pwrite_full(fd, w.cbuf + pre,
					       wr_cpos(&w, mid) - pre,
					       (off_t)(coff + pre));
		hret = rkfs_helper_wait(h);
		if (ret == 0 && hret < 0) {
			ret = hret;
			if (bad_block && w.bad != UINT64_MAX)
				*bad_block = w.bad;
		}
		if (ret == 0 && pre)
			ret = rkfs_pwrite_full(fd, w.cbuf, pre, (off_t)coff);
		goto written;
	}
	if (h) {
		w.i0 = mid;
		w.i1 = last;
		rkfs_helper_run(h, seal_job, &w);
	}
	ret = seal_run(&w, w.first, mid - 1, bad_block);
	if (h) {
		hret = rkfs_helper_wait(h);
		if (ret == 0 && hret < 0) {
			ret = hret;
			if (bad_block)
				*bad_block = w.bad;
		}
	}
	if (ret < 0)
		goto out;
	/*
	 * A full disk must fail the write before anything already in the
	 * file is overwritten.  Blocks past the old end need nothing
	 * reserved: if writing them fails, the file is cut back to its old
	 * size.  A range that starts inside the old data and grows the file
	 * is written in two parts, the part past the old end first: only
	 * that part needs new space, and the part over old data is written
	 * once it is in.  (Reserving instead, with fallocate, allocates each
	 * write's blocks on the spot, away from the delayed allocation of
	 * the rest: a file written in small appends ends up in one extent a
	 * write, and deleting it costs a discard per extent.)  The re-sealed
	 * old final block grows into the space after it: fill_reseal_gap().
	 * Holes being filled, in either part, are reserved first.  Overwrites
	 * of existing blocks need nothing.
	 */
	pre = 0;
	if (reseal && adjacent)
		ret = fill_reseal_gap(fd, old_end, coff);
	else if (reseal)
		ret = rkfs_file_reserve(fd, rkfs_block_offset(final_index(w.plain)),
			      RKFS_CBLOCK_SIZE);
	else if (grows && w.plain > 0) {
		pre = old_end - coff;
		if (!f->dense) /* holes among the old data need space */
			ret = rkfs_file_reserve(fd, coff, pre);
	}
	else if (!grows && !f->dense)
		ret = rkfs_file_reserve(fd, coff, clen);
	else if (!grows)
		warm_around(fd, coff, clen);
	if (ret < 0)
		goto out;
	if (pre) { /* h is NULL: growing writes with a helper are above */
		ret = rkfs_pwrite_full(fd, w.cbuf + pre, clen - pre,
				       (off_t)(coff + pre));
		if (ret == 0)
			ret = rkfs_pwrite_full(fd, w.cbuf, pre, (off_t)coff);
		goto written;
	}
	if (h)
		rkfs_helper_run(h, write_job, &w);
	ret = rkfs_pwrite_full(fd, w.cbuf, h ? wr_cpos(&w, mid) : clen,
			       (off_t)coff);
	if (h) {
		hret = rkfs_helper_wait(h);
		if (ret == 0)
			ret = hret;
	}
written:
	if (ret < 0) {
		if (grows &&
		    ftruncate(fd, (off_t)rkfs_size_to_cipher(w.plain)) < 0)
			ret = -EIO;
		if (hole_auth(f))
			holes_note(f, 0); /* whatever is on disk now */
		goto out;
	}
	/*
	 * A durable old final block is re-sealed only once the new blocks
	 * and the new size are on disk: before that, a crash could leave it
	 * re-sealed at the end of the old size, unreadable (a non-final
	 * block at the end is what a truncation looks like).  A block
	 * written since the last sync is not durable and needs no barrier.
	 */
	if (reseal && final_durable(f) && fdatasync(fd) < 0) {
		ret = -errno;
		if (ftruncate(fd, (off_t)rkfs_size_to_cipher(w.plain)) < 0)
			ret = -EIO;
		goto out;
	}
	if (reseal) {
		ret = reseal_old_final(f, fd, w.plain, bad_block);
		if (ret < 0) {
			if (ftruncate(fd, (off_t)rkfs_size_to_cipher(w.plain)) < 0)
				ret = -EIO;
			goto out;
		}
	}
	if (rkfs_write_leaves_hole(w.plain, off))
		f->dense = false;
	if (last == w.nflast && hole_auth(f))
		holes_note(f, w.fin);
	if (grows || last >= final_index(w.plain))
		__atomic_add_fetch(&f->final_seq, 1, __ATOMIC_RELEASE);
	f->size = w.nplain;
out:
	if (h)
		rkfs_helper_release(h);
	return ret < 0 ? ret : (ssize_t)len;
}

ssize_t rkfs_file_write(struct rkfs_file *f, int fd, const void *buf,
			size_t len, uint64_t off, const struct rkfs_keyring *kr,
			uint64_t *bad_block)
{
	return write_range(f, fd, buf, len, off, kr, bad_block, NULL);
}

ssize_t rkfs_file_write_mt(struct rkfs_file *f, int fd, const void *buf,
			   size_t len, uint64_t off,
			   const struct rkfs_keyring *kr, uint64_t *bad_block,
			   struct rkfs_sealer *s)
{
	return write_range(f, fd, buf, len, off, kr, bad_block, s);
}

int rkfs_file_truncate(struct rkfs_file *f, int fd, uint64_t size,
		       const struct rkfs_keyring *kr, uint64_t *bad_block)
{
	uint8_t pb[RKFS_BLOCK_SIZE], cb[RKFS_CBLOCK_SIZE];
	uint64_t plain = f->size, i, clen;
	size_t olen, nlen;
	ssize_t w;
	int ret, mark;

	if (size == 0) {
		struct stat st;

		if (f->has_header && plain == 0 &&
		    f->hdr.generation == kr->primary)
			return 0;
		/* Not on a file that is empty already (a new one, opened
		 * with O_TRUNC): ext4 takes truncate-then-write for a
		 * rewrite and allocates the blocks at close (auto_da_alloc),
		 * which would cost every new file's creation and deletion. */
		if ((fstat(fd, &st) < 0 || st.st_size != 0) &&
		    ftruncate(fd, 0) < 0)
			return -errno;
		drop_key(f, 0);
		f->has_header = false;
		f->size = 0;
		f->dense = true;
		return new_header_or_empty(f, fd, kr);
	}
	if (size == plain)
		return 0;
	if (size > plain) {
		static const uint8_t zero;

		w = rkfs_file_write(f, fd, &zero, 1, size - 1, kr, bad_block);
		return w < 0 ? (int)w : 0;
	}
	if (f->key == NULL)
		return f->key_err ? f->key_err : -ENOKEY;
	i = final_index(size);
	nlen = (size_t)(size - i * RKFS_BLOCK_SIZE);
	ret = read_block_need(f, fd, i, plain, pb, &olen, nlen, bad_block);
	if (ret < 0)
		goto out;
	/* after the read: an older final block it met may prove holes */
	mark = rkfs_file_holes_allowed(f, fd);
	if (mark < 0) {
		ret = mark;
		goto out;
	}
	mark = final_mark(f, mark);
	/* The new final block goes over the old block i (a hole needs space:
	 * reserve it first) and only then is the rest cut off, so a full
	 * disk leaves the file as it was. */
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)rkfs_block_offset(i),
		      (off_t)(nlen + RKFS_BLOCK_OVERHEAD)) < 0 &&
	    errno != EOPNOTSUPP && errno != ENOSYS) {
		ret = -errno;
		goto out;
	}
	/*
	 * Crash safety: the rest of the slot (up to the old end) is zeroed
	 * in the same write, so that until the cut below, the new final
	 * block is found by its end (rkfs_block_open_short()) and the data
	 * it keeps reads; the barrier keeps the cut from reaching the disk
	 * before the new final block does, which would leave the old block
	 * at the new end, where it does not authenticate.
	 */
	rkfs_block_seal(cb, pb, nlen, i, mark, &f->hdr, f->key);
	clen = rkfs_size_to_cipher(plain) - rkfs_block_offset(i);
	if (clen > RKFS_CBLOCK_SIZE)
		clen = RKFS_CBLOCK_SIZE;
	memset(cb + nlen + RKFS_BLOCK_OVERHEAD, 0,
	       clen - nlen - RKFS_BLOCK_OVERHEAD);
	ret = rkfs_pwrite_full(fd, cb, clen, (off_t)rkfs_block_offset(i));
	if (ret == 0 && fdatasync(fd) < 0)
		ret = -errno;
	if (ret == 0)
		rkfs_file_sync_done(f, f->final_seq);
	if (ret == 0 &&
	    ftruncate(fd, (off_t)rkfs_size_to_cipher(size)) < 0)
		ret = -errno;
	if (ret == 0)
		f->size = size;
	if (hole_auth(f))
		holes_note(f, ret == 0 ? mark : 0);
out:
	sodium_memzero(pb, sizeof(pb));
	return ret;
}

/*
 * First backing offset >= from that holds data, or UINT64_MAX if there is
 * none; filesystems without SEEK_DATA report everything as data.
 */
static uint64_t next_data(int fd, uint64_t from)
{
	off_t d = lseek(fd, (off_t)from, SEEK_DATA);

	if (d < 0)
		return errno == ENXIO ? UINT64_MAX : from;
	return (uint64_t)d;
}

/* Block i is all zero: 0 if f may have holes, else -EBADMSG or -errno. */
static int hole_or_bad(const struct rkfs_file *f, int fd, uint64_t i,
		       uint64_t *bad_block)
{
	int ok = rkfs_file_holes_allowed(f, fd);

	if (ok > 0)
		return 0;
	if (ok == 0) {
		if (bad_block)
			*bad_block = i;
		ok = -EBADMSG;
	}
	return ok;
}

/*
 * Walk every non-hole block of f in chunks: decrypt each into plain and
 * call emit(arg, index, plain, len, final).  Holes are skipped with
 * SEEK_DATA, then confirmed block by block (all-zero ciphertext); in a
 * file that may have no holes, either is -EBADMSG at the first such block.
 */
typedef int (*emit_fn)(void *arg, uint64_t index, const uint8_t *plain,
		       size_t len, int final);

static int walk_range(struct rkfs_file *f, int fd, uint64_t first,
		      uint64_t end, emit_fn emit, void *arg,
		      uint64_t *bad_block)
{
	uint64_t plain = f->size, nblocks, i = first, flast;
	struct scratch *s;
	uint8_t *pbuf;
	int ret = 0;

	if (!f->has_header || plain == 0)
		return 0;
	if (f->key == NULL)
		return f->key_err ? f->key_err : -ENOKEY;
	nblocks = rkfs_block_count(plain);
	flast = nblocks - 1;
	if (end > nblocks)
		end = nblocks;
	nblocks = end; /* the loop's end; flast stays the file's */
	if (i >= nblocks)
		return 0;
	s = scratch_get((size_t)CHUNK_BLOCKS * RKFS_CBLOCK_SIZE);
	if (s == NULL)
		return -ENOMEM;
	/*
	 * Kept per thread: a sodium_malloc() per walk costs about ten
	 * system calls, and its mprotect()s flush the TLBs of every CPU the
	 * process runs on, which dominated the rewrite of small files.
	 */
	if (s->plain == NULL)
		s->plain = sodium_malloc(RKFS_BLOCK_SIZE);
	pbuf = s->plain;
	if (pbuf == NULL)
		return -ENOMEM;
	while (i < nblocks) {
		uint64_t d = next_data(fd, rkfs_block_offset(i)), n, cstart, cend;
		ssize_t got;

		if (d == UINT64_MAX || d > rkfs_block_offset(flast))
			d = rkfs_block_offset(flast);
		if (d >= rkfs_block_offset(i + 1)) {
			ret = hole_or_bad(f, fd, i, bad_block);
			if (ret < 0)
				break;
			if (d >= rkfs_block_offset(nblocks))
				break; /* a hole up to the end of the range */
			i = (d - RKFS_HEADER_LEN) / RKFS_CBLOCK_SIZE;
		}
		n = nblocks - i < CHUNK_BLOCKS ? nblocks - i : CHUNK_BLOCKS;
		cstart = rkfs_block_offset(i);
		cend = rkfs_block_offset(i + n - 1) + cblock_len(plain, i + n - 1);
		got = rkfs_pread_full(fd, s->cbuf, (size_t)(cend - cstart),
				      (off_t)cstart);
		if (got < 0) {
			ret = (int)got;
			break;
		}
		if ((uint64_t)got != cend - cstart) {
			if (bad_block)
				*bad_block = i + (uint64_t)got / RKFS_CBLOCK_SIZE;
			ret = -EBADMSG;
			break;
		}
		for (uint64_t j = 0; j < n; j++, i++) {
			const uint8_t *cb = s->cbuf + j * RKFS_CBLOCK_SIZE;
			size_t cl = cblock_len(plain, i);
			int final = i == flast;

			if (!final && rkfs_is_zero(cb, cl)) {
				ret = hole_or_bad(f, fd, i, bad_block);
				if (ret < 0)
					goto out;
				continue;
			}
			if (open_block(f, pbuf, cb, cl, i, final) < 0) {
				if (bad_block)
					*bad_block = i;
				ret = -EBADMSG;
				goto out;
			}
			ret = emit(arg, i, pbuf, cl - RKFS_BLOCK_OVERHEAD, final);
			if (ret < 0)
				goto out;
		}
	}
out:
	sodium_memzero(pbuf, RKFS_BLOCK_SIZE);
	return ret;
}

int rkfs_file_zero_block(const struct rkfs_file *f, int fd, uint64_t i)
{
	uint8_t cb[RKFS_CBLOCK_SIZE];
	size_t cl;
	ssize_t n;

	if (i >= rkfs_block_count(f->size))
		return 0;
	cl = cblock_len(f->size, i);
	n = rkfs_pread_full(fd, cb, cl, (off_t)rkfs_block_offset(i));
	if (n < 0)
		return (int)n;
	return n > 0 && rkfs_is_zero(cb, (size_t)n);
}

bool rkfs_file_legacy_holes(const struct rkfs_file *f)
{
	return f->has_header && !hole_auth(f);
}

static int walk_blocks(struct rkfs_file *f, int fd, emit_fn emit, void *arg,
		       uint64_t *bad_block)
{
	return walk_range(f, fd, 0, UINT64_MAX, emit, arg, bad_block);
}

static int emit_nothing(void *arg, uint64_t index, const uint8_t *plain,
			size_t len, int final)
{
	return 0;
}

int rkfs_file_verify(struct rkfs_file *f, int fd, uint64_t *bad_block)
{
	struct stat st;
	uint64_t plain;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (rkfs_size_to_plain(&plain, (uint64_t)st.st_size) < 0) {
		if (bad_block)
			*bad_block = rkfs_block_count(f->size);
		return -EBADMSG;
	}
	return walk_blocks(f, fd, emit_nothing, NULL, bad_block);
}

struct reenc {
	int dst;
	const struct rkfs_header *nh;
	const unsigned char *nkey;
	uint8_t *out;   /* a run of consecutive sealed blocks */
	uint64_t run_first;
	size_t run_len; /* bytes in out */
	size_t cap;
	uint64_t next; /* index after the last block emitted */
	bool gaps;     /* a hole before it */
	bool hdr;      /* nh->raw still to be written at 0 */
	uint64_t end;  /* end of the last run written */
};

/* pwritev() of all of v, a short write finished piece by piece. */
static int pwritev_full(int fd, const struct iovec *v, int n, off_t off)
{
	ssize_t done;

	do
		done = pwritev(fd, v, n, off);
	while (done < 0 && errno == EINTR);
	if (done < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		size_t len = v[i].iov_len;
		size_t skip = (size_t)done < len ? (size_t)done : len;
		int ret = 0;

		if (skip < len)
			ret = rkfs_pwrite_full(fd,
					       (const uint8_t *)v[i].iov_base +
						   skip,
					       len - skip, off + (off_t)skip);
		if (ret < 0)
			return ret;
		done -= (ssize_t)skip;
		off += (off_t)len;
	}
	return 0;
}

/* The header goes out with block 0 when there is one: one write less. */
static int reenc_flush(struct reenc *r)
{
	uint64_t off = rkfs_block_offset(r->run_first);
	int ret;

	if (r->run_len == 0)
		return 0;
	if (r->hdr && r->run_first == 0) {
		struct iovec v[2] = {
			{(void *)r->nh->raw, RKFS_HEADER_LEN},
			{r->out, r->run_len},
		};

		ret = pwritev_full(r->dst, v, 2, 0);
		r->hdr = false;
	} else {
		ret = rkfs_pwrite_full(r->dst, r->out, r->run_len, (off_t)off);
	}
	r->end = off + r->run_len;
	r->run_len = 0;
	return ret;
}

static int reenc_emit(void *arg, uint64_t index, const uint8_t *plain,
		      size_t len, int final)
{
	struct reenc *r = arg;
	int ret, mark = RKFS_MARK_INNER;

	if (r->run_len &&
	    (r->run_len + RKFS_CBLOCK_SIZE > r->cap ||
	     r->run_first + r->run_len / RKFS_CBLOCK_SIZE != index)) {
		ret = reenc_flush(r);
		if (ret < 0)
			return ret;
	}
	if (r->run_len == 0)
		r->run_first = index;
	if (index != r->next)
		r->gaps = true;
	r->next = index + 1;
	if (final)
		mark = (r->nh->flags & RKFS_FLAG_HOLE_AUTH) && r->gaps
			   ? RKFS_MARK_FINAL_HOLES
			   : RKFS_MARK_FINAL;
	rkfs_block_seal(r->out + r->run_len, plain, len, index, mark, r->nh,
			r->nkey);
	r->run_len += len + RKFS_BLOCK_OVERHEAD;
	return 0;
}

static int reencrypt(struct reenc *r, struct rkfs_file *sf, int src,
		     const unsigned char *nkey, uint64_t first, uint64_t count,
		     uint64_t *bad_block)
{
	uint64_t nb = rkfs_block_count(sf->size);
	unsigned char *fkey;
	size_t need;
	int ret;

	fkey = key_alloc();
	if (fkey == NULL)
		return -ENOMEM;
	rkfs_crypt_file_key(fkey, r->nh->file_id, nkey);
	r->nkey = fkey;
	/* a small file needs no 1 MiB buffer */
	need = (size_t)CHUNK_BLOCKS * RKFS_CBLOCK_SIZE;
	if (first < nb && nb - first < CHUNK_BLOCKS)
		need = (size_t)(nb - first) * RKFS_CBLOCK_SIZE;
	r->cap = need;
	r->out = malloc(r->cap);
	if (r->out == NULL) {
		key_release(fkey);
		return -ENOMEM;
	}
	ret = walk_range(sf, src, first,
			 count > UINT64_MAX - first ? UINT64_MAX : first + count,
			 reenc_emit, r, bad_block);
	if (ret == 0)
		ret = reenc_flush(r);
	free(r->out);
	key_release(fkey);
	return ret;
}

int rkfs_file_reencrypt_range(struct rkfs_file *sf, int src, int dst,
			      const struct rkfs_header *nh,
			      const unsigned char *nkey, uint64_t first,
			      uint64_t count, uint64_t *bad_block)
{
	struct reenc r = {.dst = dst, .nh = nh};

	return reencrypt(&r, sf, src, nkey, first, count, bad_block);
}

int rkfs_file_reencrypt(struct rkfs_file *sf, int src, int dst,
			const struct rkfs_header *nh, const unsigned char *nkey,
			uint64_t *bad_block)
{
	struct reenc r = {.dst = dst, .nh = nh, .hdr = true};
	uint64_t size = rkfs_size_to_cipher(sf->size);
	int ret = 0;

	if (sf->size)
		ret = reencrypt(&r, sf, src, nkey, 0, UINT64_MAX, bad_block);
	if (ret == 0 && r.hdr)
		ret = rkfs_pwrite_full(dst, nh->raw, RKFS_HEADER_LEN, 0);
	/* the final block is always written, so this is rarely needed */
	if (ret == 0 && r.end != size && ftruncate(dst, (off_t)size) < 0)
		ret = -errno;
	return ret;
}
