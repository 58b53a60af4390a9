/*
 * Repair of files a crash left with an unreadable tail or with older final
 * versions of blocks (rekeyfs/repair.h has the rules).
 */
#include "rekeyfs/repair.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/file.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "file_i.h"

/*
 * K_ZERO: all zero, not last; a hole only where the file may have holes
 * (decided once every block is classified), else K_BAD.
 */
enum kind { K_BAD, K_HOLE, K_OK, K_ZERO };

enum copy_at { C_NONE, C_NEXT, C_LAST };

struct slot {
	uint8_t kind;    /* enum kind */
	uint8_t final;   /* K_OK: sealed as final */
	uint8_t mark;    /* K_OK and final: the mark it was sealed with */
	uint8_t copy;    /* enum copy_at: restore from a scratch copy */
	uint16_t len;    /* K_OK: plaintext bytes */
};

struct rctx {
	int fd;
	uint64_t csize, n; /* backing size, slots */
	const struct rkfs_header *h;
	const unsigned char *key;
	uint8_t cb[RKFS_CBLOCK_SIZE], pb[RKFS_BLOCK_SIZE];
};

static size_t avail_of(const struct rctx *c, uint64_t j)
{
	uint64_t left = c->csize - rkfs_block_offset(j);

	return left > RKFS_CBLOCK_SIZE ? RKFS_CBLOCK_SIZE : (size_t)left;
}

static int read_slot(struct rctx *c, uint64_t k, size_t *a)
{
	ssize_t r;

	*a = avail_of(c, k);
	r = rkfs_pread_full(c->fd, c->cb, *a, (off_t)rkfs_block_offset(k));
	if (r < 0)
		return (int)r;
	if ((size_t)r != *a)
		return -EIO; /* changed under the lock: not ours to touch */
	return 0;
}

/*
 * The a bytes of slot k (in c->cb) as a version of block j: a full inner
 * block, a final block filling them, or an older final block ending
 * earlier (rkfs_block_open_short()); each final with the marks the header
 * allows.  Fills *s and c->pb, or returns -EBADMSG.
 */
static int open_as(struct rctx *c, uint64_t j, uint64_t k, size_t a,
		   struct slot *s)
{
	int last = (c->h->flags & RKFS_FLAG_HOLE_AUTH) ? RKFS_MARK_FINAL_HOLES
						       : RKFS_MARK_FINAL;
	size_t l;
	int m;

	memset(s, 0, sizeof(*s));
	if (a <= RKFS_BLOCK_OVERHEAD)
		return -EBADMSG;
	s->kind = K_OK;
	if (a == RKFS_CBLOCK_SIZE &&
	    rkfs_block_open(c->pb, c->cb, a, j, RKFS_MARK_INNER, c->h,
			    c->key) == 0) {
		s->len = RKFS_BLOCK_SIZE;
		return 0;
	}
	s->final = 1;
	for (m = RKFS_MARK_FINAL; m <= last; m++) {
		if (rkfs_block_open(c->pb, c->cb, a, j, m, c->h, c->key) == 0) {
			s->mark = (uint8_t)m;
			s->len = (uint16_t)(a - RKFS_BLOCK_OVERHEAD);
			return 0;
		}
	}
	if (rkfs_block_open_short(c->pb, &l, &m, c->cb, a,
				  rkfs_block_offset(k), j, RKFS_BLOCK_SIZE,
				  c->h, c->key) == 0) {
		s->mark = (uint8_t)m;
		s->len = (uint16_t)l;
		return 0;
	}
	memset(s, 0, sizeof(*s));
	return -EBADMSG;
}

static void classify(struct rctx *c, uint64_t j, size_t a, struct slot *s)
{
	if (j + 1 < c->n && a == RKFS_CBLOCK_SIZE && rkfs_is_zero(c->cb, a)) {
		memset(s, 0, sizeof(*s));
		s->kind = K_ZERO;
		return;
	}
	(void)open_as(c, j, j, a, s);
}

/* Is slot k a copy of block j?  Then *s describes it. */
static int find_copy(struct rctx *c, uint64_t j, uint64_t k, struct slot *s)
{
	struct slot t;
	size_t a;
	int ret;

	if (k >= c->n || k == j)
		return 0;
	ret = read_slot(c, k, &a);
	if (ret < 0)
		return ret;
	if (open_as(c, j, k, a, &t) < 0)
		return 0;
	*s = t;
	return 1;
}

/* Write len bytes of c->cb, zero padded to pad bytes, at slot k; sync. */
static int put_sync(struct rctx *c, size_t len, size_t pad, uint64_t k)
{
	int ret;

	if (pad > len)
		memset(c->cb + len, 0, pad - len);
	else
		pad = len;
	ret = rkfs_pwrite_full(c->fd, c->cb, pad, (off_t)rkfs_block_offset(k));
	if (ret == 0 && fdatasync(c->fd) < 0)
		ret = -errno;
	return ret;
}

/*
 * Re-seal block j from its plaintext (c->pb, plen bytes) with mark:
 * first as a scratch copy at slot scratch, synced, then in place, synced.
 * Both are zero padded to the end of their slot (in place: to the end of
 * what the slot holds now), so that a final block shorter than its slot
 * is still found by its end (rkfs_block_open_short()) until the cut.
 */
static int reseal(struct rctx *c, uint64_t j, size_t plen, int mark,
		  uint64_t scratch)
{
	size_t len = plen + RKFS_BLOCK_OVERHEAD;
	int ret;

	rkfs_block_seal(c->cb, c->pb, plen, j, mark, c->h, c->key);
	ret = put_sync(c, len, RKFS_CBLOCK_SIZE, scratch);
	if (ret == 0)
		ret = put_sync(c, len, avail_of(c, j), j);
	return ret;
}

/* Plaintext of an authenticating block j into c->pb, zero padded. */
static int load_plain(struct rctx *c, uint64_t j, const struct slot *s)
{
	uint64_t k = j;
	struct slot t;
	size_t a;
	int ret;

	if (s->copy != C_NONE)
		k = s->copy == C_NEXT ? j + 1 : c->n - 1;
	ret = read_slot(c, k, &a);
	if (ret < 0)
		return ret;
	if (open_as(c, j, k, a, &t) < 0 || t.final != s->final ||
	    t.len != s->len || t.mark != s->mark)
		return -EIO;
	memset(c->pb + s->len, 0, RKFS_BLOCK_SIZE - s->len);
	return 0;
}

/* Is slot j all zero?  (For the message only.) */
static bool zero_slot(struct rctx *c, uint64_t j)
{
	size_t a;

	return read_slot(c, j, &a) == 0 && rkfs_is_zero(c->cb, a);
}

static void say(struct rkfs_repair_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(struct rkfs_repair_result *res, const char *fmt, ...)
{
	size_t used = strlen(res->msg);
	va_list ap;

	if (used >= sizeof(res->msg) - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(res->msg + used, sizeof(res->msg) - used, fmt, ap);
	va_end(ap);
}

static int plan_and_apply(struct rctx *c, struct slot *s,
			  struct rkfs_repair_result *res, bool apply)
{
	uint64_t t = UINT64_MAX, j, scratch = c->n, nsize;
	int ret, listed = 0, fin;
	bool holes;
	size_t a;

	for (j = 0; j < c->n; j++) {
		ret = read_slot(c, j, &a);
		if (ret < 0)
			return ret;
		classify(c, j, a, &s[j]);
	}
	/* blocks a repair interrupted by a crash left torn: their copy */
	for (j = 0; j < c->n; j++) {
		if (s[j].kind != K_BAD)
			continue;
		ret = find_copy(c, j, j + 1, &s[j]);
		if (ret > 0)
			s[j].copy = C_NEXT;
		else if (ret == 0 && j + 1 < c->n &&
			 (ret = find_copy(c, j, c->n - 1, &s[j])) > 0)
			s[j].copy = C_LAST;
		if (ret < 0)
			return ret;
		if (s[j].copy)
			res->restored++;
	}
	/*
	 * May the file have holes (rekeyfs/format.h)?  Files without the
	 * flag may; flagged ones only if a block authenticates as a final
	 * block with mark 2 (of any age: the permission is never taken back
	 * for a file id).  A zero block is a hole only then, and the new
	 * final block gets mark 2 only then.
	 */
	holes = !(c->h->flags & RKFS_FLAG_HOLE_AUTH);
	for (j = 0; j < c->n; j++)
		if (s[j].kind == K_OK && s[j].final &&
		    s[j].mark == RKFS_MARK_FINAL_HOLES)
			holes = true;
	fin = holes && (c->h->flags & RKFS_FLAG_HOLE_AUTH)
		      ? RKFS_MARK_FINAL_HOLES
		      : RKFS_MARK_FINAL;
	for (j = 0; j < c->n; j++)
		if (s[j].kind == K_ZERO)
			s[j].kind = holes ? K_HOLE : K_BAD;
	for (j = 0; j < c->n; j++)
		if (s[j].kind == K_OK)
			t = j;
	if (t == UINT64_MAX) {
		res->action = RKFS_REPAIR_REFUSED;
		say(res, "no block authenticates: left alone");
		return 0;
	}
	for (j = 0; j < t; j++) {
		if (s[j].kind == K_BAD) {
			res->action = RKFS_REPAIR_REFUSED;
			res->bad_block = j;
			say(res, "block %llu is %s and blocks after it are "
				 "good: damage, not a crash; left alone",
			    (unsigned long long)j,
			    zero_slot(c, j) ? "all zero in a file "
						      "that may not have holes"
						    : "bad");
			return 0;
		}
		if (s[j].kind == K_OK && s[j].final) {
			res->completed++;
			res->lost_bytes += RKFS_BLOCK_SIZE - s[j].len;
		}
	}
	nsize = t * RKFS_BLOCK_SIZE + s[t].len;
	res->new_size = nsize;
	if (res->old_size > nsize)
		res->lost_bytes += res->old_size - nsize;
	if (t + 1 < c->n) {
		res->first_dropped = t + 1;
		res->last_dropped = c->n - 1;
	}
	if (!res->restored && !res->completed && s[t].final &&
	    s[t].mark == fin && t + 1 == c->n &&
	    avail_of(c, t) == (size_t)s[t].len + RKFS_BLOCK_OVERHEAD) {
		res->action = RKFS_REPAIR_CLEAN;
		return 0;
	}
	res->action = RKFS_REPAIR_REPAIRED;
	say(res, "kept %llu of %llu bytes, lost %llu",
	    (unsigned long long)nsize, (unsigned long long)res->old_size,
	    (unsigned long long)res->lost_bytes);
	if (res->first_dropped != UINT64_MAX)
		say(res, "; blocks %llu-%llu dropped (bytes %llu-%llu)",
		    (unsigned long long)res->first_dropped,
		    (unsigned long long)res->last_dropped,
		    (unsigned long long)nsize,
		    (unsigned long long)res->old_size);
	for (j = 0; j < t; j++) {
		if (!(s[j].kind == K_OK && s[j].final))
			continue;
		if (listed++ < 4 && s[j].len < RKFS_BLOCK_SIZE)
			say(res, "; block %llu: bytes %llu-%llu now zero",
			    (unsigned long long)j,
			    (unsigned long long)(j * RKFS_BLOCK_SIZE +
						 s[j].len),
			    (unsigned long long)((j + 1) * RKFS_BLOCK_SIZE));
	}
	if (res->restored)
		say(res, "; %llu block(s) restored from an interrupted repair",
		    (unsigned long long)res->restored);
	if (!apply)
		return 0;

	/* 1. torn by an interrupted repair: put the synced copy back */
	for (j = 0; j <= t; j++) {
		if (s[j].copy == C_NONE)
			continue;
		ret = read_slot(c, s[j].copy == C_NEXT ? j + 1 : c->n - 1, &a);
		if (ret == 0)
			ret = put_sync(c, a, 0, j);
		if (ret < 0)
			return ret;
		s[j].copy = C_NONE;
	}
	/*
	 * 2. the new final block, through a scratch copy right after it:
	 * before the older final versions are completed, so that when one
	 * of them is what proves mark 2, the new final block carries the
	 * proof before it is gone
	 */
	if (!s[t].final || s[t].mark != fin) {
		ret = load_plain(c, t, &s[t]);
		if (ret == 0)
			ret = reseal(c, t, s[t].len, fin, t + 1);
		if (ret < 0)
			return ret;
	}
	/* 3. older final versions in the middle: complete them, each
	 * through a scratch copy past the end */
	for (j = 0; j < t; j++) {
		if (!(s[j].kind == K_OK && s[j].final))
			continue;
		ret = load_plain(c, j, &s[j]);
		if (ret == 0)
			ret = reseal(c, j, RKFS_BLOCK_SIZE, RKFS_MARK_INNER,
				     scratch);
		if (ret < 0)
			return ret;
	}
	/* 4. the cut, last */
	if (ftruncate(c->fd, (off_t)rkfs_size_to_cipher(nsize)) < 0 ||
	    fsync(c->fd) < 0)
		return -errno;
	return 0;
}

int rkfs_repair_file(struct rkfs_repair_result *res, int fd,
		     const struct rkfs_keyring *kr, bool apply)
{
	uint8_t raw[RKFS_HEADER_LEN];
	struct rkfs_header h;
	const unsigned char *gk;
	unsigned char *key = NULL;
	struct slot *s = NULL;
	struct rctx *c = NULL;
	struct stat st;
	ssize_t r;
	int ret, err;

	memset(res, 0, sizeof(*res));
	res->first_dropped = res->last_dropped = UINT64_MAX;
	res->bad_block = UINT64_MAX;
	res->action = RKFS_REPAIR_CLEAN;
	if (fstat(fd, &st) < 0)
		return -errno;
	res->old_size = res->new_size = rkfs_file_stat_size((uint64_t)st.st_size);
	if (st.st_size == 0 || st.st_size == RKFS_HEADER_LEN)
		return 0;
	r = rkfs_pread_full(fd, raw, sizeof(raw), 0);
	if (r < 0)
		return (int)r;
	if (r != RKFS_HEADER_LEN || rkfs_header_parse(&h, raw, sizeof(raw)) < 0) {
		res->action = RKFS_REPAIR_REFUSED;
		say(res, "the header does not parse: left alone");
		return 0;
	}
	gk = rkfs_keyring_key(kr, h.generation, &err);
	if (gk == NULL)
		return err;
	key = sodium_malloc(RKFS_KEY_LEN);
	c = calloc(1, sizeof(*c));
	if (key == NULL || c == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	rkfs_crypt_file_key(key, h.file_id, gk);
	c->fd = fd;
	c->csize = (uint64_t)st.st_size;
	c->n = (c->csize - RKFS_HEADER_LEN + RKFS_CBLOCK_SIZE - 1) /
	       RKFS_CBLOCK_SIZE;
	c->h = &h;
	c->key = key;
	s = calloc(c->n, sizeof(*s));
	if (s == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	ret = plan_and_apply(c, s, res, apply);
out:
	free(s);
	if (c)
		sodium_memzero(c->pb, sizeof(c->pb));
	free(c);
	if (key)
		sodium_free(key);
	return ret;
}
