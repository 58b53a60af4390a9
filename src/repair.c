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

enum kind { K_BAD, K_HOLE, K_OK };

enum copy_at { C_NONE, C_NEXT, C_LAST };

struct slot {
	uint8_t kind;    /* enum kind */
	uint8_t final;   /* K_OK: sealed as final */
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

static int read_slot(struct rctx *c, uint64_t j, size_t *a)
{
	ssize_t r;

	*a = avail_of(c, j);
	r = rkfs_pread_full(c->fd, c->cb, *a, (off_t)rkfs_block_offset(j));
	if (r < 0)
		return (int)r;
	if ((size_t)r != *a)
		return -EIO; /* changed under the lock: not ours to touch */
	return 0;
}

static void classify(struct rctx *c, uint64_t j, size_t a, struct slot *s)
{
	size_t l;

	memset(s, 0, sizeof(*s));
	if (a <= RKFS_BLOCK_OVERHEAD)
		return;
	if (j + 1 < c->n && a == RKFS_CBLOCK_SIZE &&
	    rkfs_is_zero(c->cb, a)) {
		s->kind = K_HOLE;
		return;
	}
	if (a == RKFS_CBLOCK_SIZE &&
	    rkfs_block_open(c->pb, c->cb, a, j, 0, c->h, c->key) == 0) {
		s->kind = K_OK;
		s->len = RKFS_BLOCK_SIZE;
		return;
	}
	if (rkfs_block_open(c->pb, c->cb, a, j, 1, c->h, c->key) == 0) {
		l = a - RKFS_BLOCK_OVERHEAD;
	} else if (rkfs_block_open_short(c->pb, &l, c->cb, a,
					 rkfs_block_offset(j), j,
					 RKFS_BLOCK_SIZE, c->h, c->key) < 0) {
		return;
	}
	s->kind = K_OK;
	s->final = 1;
	s->len = (uint16_t)l;
}

/* Is the slot at k (held in c->cb after read_slot) a copy of block j? */
static int find_copy(struct rctx *c, uint64_t j, uint64_t k, struct slot *s)
{
	size_t a;
	int ret;

	if (k >= c->n || k == j)
		return 0;
	ret = read_slot(c, k, &a);
	if (ret < 0)
		return ret;
	if (a != RKFS_CBLOCK_SIZE)
		return 0;
	for (int fin = 0; fin <= 1; fin++) {
		if (rkfs_block_open(c->pb, c->cb, a, j, fin, c->h, c->key) == 0) {
			s->kind = K_OK;
			s->final = (uint8_t)fin;
			s->len = RKFS_BLOCK_SIZE;
			return 1;
		}
	}
	return 0;
}

/* Write a sealed block at slot k and sync it. */
static int put_sync(int fd, const uint8_t *cb, size_t len, uint64_t k)
{
	int ret = rkfs_pwrite_full(fd, cb, len, (off_t)rkfs_block_offset(k));

	if (ret == 0 && fdatasync(fd) < 0)
		ret = -errno;
	return ret;
}

/*
 * Re-seal block j from its plaintext (c->pb, len bytes, zero padded to
 * plen): first as a scratch copy at slot scratch, synced, then in place.
 */
static int reseal(struct rctx *c, uint64_t j, size_t plen, int final,
		  uint64_t scratch)
{
	int ret;

	rkfs_block_seal(c->cb, c->pb, plen, j, final, c->h, c->key);
	ret = put_sync(c->fd, c->cb, plen + RKFS_BLOCK_OVERHEAD, scratch);
	if (ret == 0)
		ret = put_sync(c->fd, c->cb, plen + RKFS_BLOCK_OVERHEAD, j);
	return ret;
}

/* Plaintext of an authenticating block j into c->pb, zero padded. */
static int load_plain(struct rctx *c, uint64_t j, const struct slot *s)
{
	size_t a, l;
	int ret;

	if (s->copy != C_NONE) {
		ret = read_slot(c, s->copy == C_NEXT ? j + 1 : c->n - 1, &a);
		if (ret == 0 && rkfs_block_open(c->pb, c->cb, a, j, s->final,
						c->h, c->key) < 0)
			ret = -EIO;
		return ret;
	}
	ret = read_slot(c, j, &a);
	if (ret < 0)
		return ret;
	if (!s->final) {
		if (rkfs_block_open(c->pb, c->cb, a, j, 0, c->h, c->key) < 0)
			return -EIO;
	} else if (rkfs_block_open(c->pb, c->cb, s->len + RKFS_BLOCK_OVERHEAD,
				   j, 1, c->h, c->key) < 0 &&
		   (rkfs_block_open_short(c->pb, &l, c->cb, a,
					  rkfs_block_offset(j), j,
					  RKFS_BLOCK_SIZE, c->h, c->key) < 0 ||
		    l != s->len)) {
		return -EIO;
	}
	memset(c->pb + s->len, 0, RKFS_BLOCK_SIZE - s->len);
	return 0;
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
	int ret, listed = 0;
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
			say(res, "block %llu is bad and blocks after it are "
				 "good: damage, not a crash; left alone",
			    (unsigned long long)j);
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
	    t + 1 == c->n &&
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
			ret = put_sync(c->fd, c->cb, a, j);
		if (ret < 0)
			return ret;
		s[j].copy = C_NONE;
	}
	/* 2. older final versions in the middle: complete them, each
	 * through a scratch copy past the end */
	for (j = 0; j < t; j++) {
		if (!(s[j].kind == K_OK && s[j].final))
			continue;
		ret = load_plain(c, j, &s[j]);
		if (ret == 0)
			ret = reseal(c, j, RKFS_BLOCK_SIZE, 0, scratch);
		if (ret < 0)
			return ret;
	}
	/* 3. the new final block, through a scratch copy right after it */
	if (!s[t].final) {
		ret = load_plain(c, t, &s[t]);
		if (ret == 0)
			ret = reseal(c, t, RKFS_BLOCK_SIZE, 1, t + 1);
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
