#include "rekeyfs/rekey.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <sodium.h>

#include "rekeyfs/file.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/intent.h"
#include "rekeyfs/meta.h"
#include "rekeyfs/repair.h"
#include "walk_i.h"

#define COPY_CHUNK (1u << 20)
#define SPLIT_MIN (8u << 20)	    /* plaintext: larger files are split */
#define SLICE_BLOCKS 1024u	    /* 4 MiB of plaintext a slice */
#define BATCH_FILES 1024	    /* small files made durable together */
#define BATCH_BYTES (16u << 20)	    /* plaintext of one batch at most */
#define BATCH_MAX_FILE (1u << 20)   /* larger files go one by one */
#define DIR_LOCK_TIMEOUT 5.0 /* seconds before a directory counts as busy */
#define MAX_PASSES 3	     /* scans that pick up files renamed mid-run */

enum outcome {
	R_NONE = 0,
	R_MIGRATED,
	R_CURRENT,
	R_VERIFIED,
	R_BUSY,
	R_FAILED,
	R_SKIPPED,
	R_REPAIRED,
};

enum hdr_state { H_OK = 0, H_NONE, H_BAD };

struct item {
	char *path;	 /* relative to the root */
	size_t base_off; /* start of the last component */
	dev_t dev;
	ino_t ino;
	uint64_t plain;
	uint32_t gen;
	enum hdr_state hdr;
	enum outcome result;
	char *reason;
	bool counted; /* bytes added to the progress */
};

struct workq;

struct ctx {
	const char *root;
	int rootfd;
	dev_t rootdev;
	const struct rkfs_keyring *kr;
	const struct rkfs_rekey_opts *o;
	struct rkfs_rekey_report *rep;
	/* rep, done, keep, retry and err, shared by the threads of a pass */
	pthread_mutex_t mu;
	struct rkfs_inoset done; /* failed inodes: not retried in later passes */
	struct rkfs_rekey_list keep; /* leftovers that must stay */
	struct item **retry;	     /* busy, to be tried again */
	size_t nretry, capretry;
	double deadline; /* of the retries of busy files */
	int err;	 /* first error recording a result (-ENOMEM) */
	pthread_mutex_t rate_mu;
	double rate_next; /* --max-rate: when the bytes so far are paid for */
	size_t batch_cap; /* batch_files(), worked out once a run */
};

/* One walk of the tree (see run_pass()) and what it counted. */
struct pass {
	struct ctx *c;
	struct workq *q; /* NULL: count only */
	int no;		 /* 0: the first walk of the run */
	struct rkfs_rekey_gen_count *gens;
	size_t ngens;
	uint64_t files, bad, remaining, queued;
};

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_sec(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};

	nanosleep(&ts, NULL);
}

static bool stopping(const struct ctx *c)
{
	return c->o->stop && *c->o->stop;
}

static void progress_add(struct ctx *c, uint64_t files, uint64_t bytes)
{
	struct rkfs_rekey_progress *p = c->o->progress;

	if (p == NULL)
		return;
	__atomic_add_fetch(&p->files_done, files, __ATOMIC_RELAXED);
	__atomic_add_fetch(&p->bytes_done, bytes, __ATOMIC_RELAXED);
}

static void inflight_set(struct ctx *c, int slot, int fd)
{
	if (c->o->progress && slot >= 0)
		__atomic_store_n(&c->o->progress->inflight[slot], fd + 1,
				 __ATOMIC_RELAXED);
}

uint64_t rkfs_rekey_progress_bytes(const struct rkfs_rekey_progress *p)
{
	uint64_t b = __atomic_load_n(&p->bytes_done, __ATOMIC_RELAXED);
	struct stat st;

	for (int i = 0; i < RKFS_REKEY_SLOTS; i++) {
		int fd = __atomic_load_n(&p->inflight[i], __ATOMIC_RELAXED) - 1;

		/* the fd may be closed meanwhile: only a display glitch */
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size > RKFS_HEADER_LEN)
			b += (uint64_t)(st.st_size - RKFS_HEADER_LEN) /
			     RKFS_CBLOCK_SIZE * RKFS_BLOCK_SIZE;
	}
	return b;
}

static char *xasprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* --- directory lock stripes hash ------------------------------------ */

static uint64_t ino_hash(uint64_t dev, uint64_t ino)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull ^ dev * 0xc2b2ae3d27d4eb4full;

	return h ^ (h >> 29);
}

/* --- report lists ----------------------------------------------------- */

static int list_add(struct rkfs_rekey_list *l, const char *path,
		    const char *reason)
{
	struct rkfs_rekey_entry *e;

	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct rkfs_rekey_entry *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	e = &l->v[l->count];
	e->path = strdup(path);
	e->reason = reason ? strdup(reason) : NULL;
	if (e->path == NULL || (reason && e->reason == NULL)) {
		free(e->path);
		free(e->reason);
		return -ENOMEM;
	}
	l->count++;
	return 0;
}

static void list_free(struct rkfs_rekey_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->v[i].path);
		free(l->v[i].reason);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void rkfs_rekey_report_free(struct rkfs_rekey_report *rep)
{
	if (rep == NULL)
		return;
	list_free(&rep->failed);
	list_free(&rep->busy);
	list_free(&rep->skipped);
	list_free(&rep->repaired);
	list_free(&rep->listed);
	free(rep->before);
	free(rep->after);
	rep->before = rep->after = NULL;
	rep->nbefore = rep->nafter = 0;
}

bool rkfs_rekey_partial(const struct rkfs_rekey_report *rep)
{
	return rep->failed.count || rep->busy.count || rep->interrupted ||
	       rep->repaired.count ||
	       (rep->mode == RKFS_REKEY_REWRITE && rep->remaining);
}

/* --- directories ------------------------------------------------------ */

/*
 * Open the directory part of path (everything before base_off) one
 * component at a time without following symlinks or leaving the root's
 * filesystem.  Every call returns a new open file description, so a flock
 * on it excludes the daemon and the engine's other threads alike.
 */
static int open_parent(const struct ctx *c, const char *path, size_t base_off)
{
	char *dir, *p, *comp, *save = NULL;
	int fd, nfd;
	struct stat st;

	fd = openat(c->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || base_off == 0)
		return fd < 0 ? -errno : fd;
	dir = strndup(path, base_off - 1);
	if (dir == NULL) {
		close(fd);
		return -ENOMEM;
	}
	for (p = dir; (comp = strtok_r(p, "/", &save)) != NULL; p = NULL) {
		nfd = openat(fd, comp,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (nfd < 0) {
			fd = -errno;
			break;
		}
		fd = nfd;
		if (fstat(fd, &st) < 0 || st.st_dev != c->rootdev) {
			close(fd);
			fd = -EXDEV;
			break;
		}
	}
	free(dir);
	return fd;
}

/* Per-thread state: the last parent directory opened, progress slot. */
struct dcache {
	char *dir;
	int fd;
	int slot; /* index into progress->inflight, or -1 */
};

static int dcache_get(struct dcache *d, const struct ctx *c, const char *path,
		      size_t base_off)
{
	if (d->fd >= 0 && d->dir && strlen(d->dir) == base_off &&
	    strncmp(d->dir, path, base_off) == 0)
		return d->fd;
	if (d->fd >= 0)
		close(d->fd);
	free(d->dir);
	d->dir = NULL;
	d->fd = open_parent(c, path, base_off);
	if (d->fd < 0)
		return d->fd;
	d->dir = strndup(path, base_off);
	if (d->dir == NULL) {
		close(d->fd);
		d->fd = -1;
		return -ENOMEM;
	}
	return d->fd;
}

static void dcache_drop(struct dcache *d)
{
	if (d->fd >= 0)
		close(d->fd);
	free(d->dir);
	d->dir = NULL;
	d->fd = -1;
}

/*
 * The engine's own threads queue on an in-process mutex per directory (by
 * inode, hashed), so that only the daemon can make the flock below wait.
 */
#define DIR_STRIPES 64
static pthread_mutex_t dir_mu[DIR_STRIPES] = {[0 ... DIR_STRIPES - 1] =
						  PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *dir_stripe(int dfd)
{
	struct stat st;

	if (fstat(dfd, &st) < 0)
		return &dir_mu[0];
	return &dir_mu[ino_hash(st.st_dev, st.st_ino) % DIR_STRIPES];
}

/*
 * LOCK_EX on a directory.  Polled rather than blocking, so a directory
 * that stays locked makes the file busy instead of hanging the run.
 * Returns with the stripe mutex held on success.
 */
static int lock_dir(int dfd, pthread_mutex_t **held)
{
	double until = now_sec() + DIR_LOCK_TIMEOUT;
	double pause = 0.0002;
	pthread_mutex_t *mu = dir_stripe(dfd);

	pthread_mutex_lock(mu);
	for (;;) {
		if (flock(dfd, LOCK_EX | LOCK_NB) == 0) {
			*held = mu;
			return 0;
		}
		if ((errno != EWOULDBLOCK && errno != EINTR) ||
		    now_sec() > until) {
			int e = errno == EINTR ? EWOULDBLOCK : errno;

			pthread_mutex_unlock(mu);
			return -e;
		}
		sleep_sec(pause);
		if (pause < 0.01)
			pause *= 2;
	}
}

static void unlock_dir(int dfd, pthread_mutex_t *held)
{
	(void)flock(dfd, LOCK_UN);
	pthread_mutex_unlock(held);
}

static int fsync_fd_dir(int dfd)
{
	if (fsync(dfd) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

/* Does dfd/name still refer to the inode of st? */
static bool same_inode(int dfd, const char *name, const struct stat *st)
{
	struct stat now;

	if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	return now.st_dev == st->st_dev && now.st_ino == st->st_ino;
}

/*
 * Temp names are RKFS_TMP_PREFIX, then 4 bytes (hex) that are the same
 * for every temp this process makes, then 4 random bytes.  The walk that
 * removes a crashed run's temps runs while this process's workers make
 * their own, and must tell them apart without keeping a list of them.
 */
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;
static char tag_hex[9];

static void tag_init(void)
{
	unsigned char t[4];

	randombytes_buf(t, sizeof(t));
	snprintf(tag_hex, sizeof(tag_hex), "%02x%02x%02x%02x", t[0], t[1],
		 t[2], t[3]);
}

/* Was name (a reserved name) made by this process? */
static bool temp_is_mine(const char *name)
{
	size_t pl = strlen(RKFS_TMP_PREFIX);

	pthread_once(&tag_once, tag_init);
	return strncmp(name, RKFS_TMP_PREFIX, pl) == 0 &&
	       strncmp(name + pl, tag_hex, 8) == 0;
}

static int make_temp(int dfd, char *name, size_t size)
{
	unsigned char rnd[4];
	int fd, tries;

	pthread_once(&tag_once, tag_init);
	for (tries = 0; tries < 8; tries++) {
		randombytes_buf(rnd, sizeof(rnd));
		snprintf(name, size, RKFS_TMP_PREFIX "%s%02x%02x%02x%02x",
			 tag_hex, rnd[0], rnd[1], rnd[2], rnd[3]);
		fd = openat(dfd, name,
			    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		if (fd >= 0 || errno != EEXIST)
			return fd < 0 ? -errno : fd;
	}
	return -EEXIST;
}

/* --- what a walk found ------------------------------------------------ */

static char *join(const char *dir, const char *name, size_t *base_off)
{
	char *p;

	if (*dir == '\0') {
		*base_off = 0;
		return strdup(name);
	}
	p = xasprintf("%s/%s", dir, name);
	*base_off = strlen(dir) + 1;
	return p;
}

static void free_item(struct item *it)
{
	free(it->path);
	free(it->reason);
	free(it);
}

/* The header state of a file from what the walk read of it. */
static void classify(struct item *it, const struct rkfs_walk_file *f)
{
	struct rkfs_header h;

	it->dev = f->dev;
	it->ino = f->ino;
	it->gen = 0;
	it->hdr = H_BAD;
	if (rkfs_size_to_plain(&it->plain, (uint64_t)f->size) < 0)
		return;
	if (f->size == 0) {
		it->hdr = H_NONE;
		return;
	}
	if (f->nhdr == RKFS_HEADER_LEN &&
	    rkfs_header_parse(&h, f->hdr, RKFS_HEADER_LEN) == 0) {
		it->gen = h.generation;
		it->hdr = H_OK;
	}
}

/* Add to the per-generation counts, kept ascending by generation. */
static int gens_add(struct rkfs_rekey_gen_count **v, size_t *n, uint32_t g,
		    uint64_t files, uint64_t bytes)
{
	struct rkfs_rekey_gen_count *nv;
	size_t j;

	for (j = 0; j < *n && (*v)[j].generation < g; j++)
		;
	if (j == *n || (*v)[j].generation != g) {
		nv = realloc(*v, (*n + 1) * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		memmove(nv + j + 1, nv + j, (*n - j) * sizeof(*nv));
		nv[j] = (struct rkfs_rekey_gen_count){g, 0, 0};
		*v = nv;
		(*n)++;
	}
	(*v)[j].files += files;
	(*v)[j].bytes += bytes;
	return 0;
}

/* --- metadata copy ---------------------------------------------------- */

static int copy_xattrs(int from, int to, char **why)
{
	char *names = NULL, *val = NULL;
	ssize_t len, vlen;
	size_t vcap = 0;
	int ret = 0;

	len = flistxattr(from, NULL, 0);
	if (len < 0)
		return errno == ENOTSUP ? 0 : -errno;
	if (len == 0)
		return 0;
	names = malloc((size_t)len);
	if (names == NULL)
		return -ENOMEM;
	len = flistxattr(from, names, (size_t)len);
	if (len < 0) {
		ret = -errno;
		goto out;
	}
	for (char *n = names; n < names + len; n += strlen(n) + 1) {
		vlen = fgetxattr(from, n, NULL, 0);
		if (vlen < 0)
			goto bad;
		if ((size_t)vlen + 1 > vcap) {
			char *nv = realloc(val, (size_t)vlen + 1);

			if (nv == NULL) {
				ret = -ENOMEM;
				goto out;
			}
			val = nv;
			vcap = (size_t)vlen + 1;
		}
		vlen = fgetxattr(from, n, val, vcap);
		if (vlen < 0)
			goto bad;
		if (fsetxattr(to, n, val, (size_t)vlen, 0) == 0)
			continue;
	bad:
		if (strncmp(n, "security.", 9) == 0 &&
		    (errno == EPERM || errno == ENOTSUP || errno == EACCES))
			continue;
		ret = -errno;
		*why =
		    xasprintf("cannot copy xattr %s: %s", n, strerror(errno));
		goto out;
	}
out:
	free(names);
	free(val);
	return ret;
}

/* Give the temp file the old file's owner, mode, xattrs and times. */
static int copy_meta(int from, int to, const struct stat *st, char **why)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int ret;

	if (fchown(to, st->st_uid, st->st_gid) < 0) {
		*why = xasprintf("cannot keep owner %u:%u: %s",
				 (unsigned)st->st_uid, (unsigned)st->st_gid,
				 strerror(errno));
		return -errno;
	}
	/* after chown, which clears set-id bits */
	if (fchmod(to, st->st_mode & 07777) < 0) {
		*why = xasprintf("cannot keep mode: %s", strerror(errno));
		return -errno;
	}
	ret = copy_xattrs(from, to, why);
	if (ret < 0)
		return ret;
	if (futimens(to, ts) < 0) {
		*why = xasprintf("cannot keep times: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* --- rate cap and parallel rewrite of large files --------------------- */

/*
 * --max-rate: account bytes rewritten and sleep as long as the run is
 * ahead of the cap.  Half a second of credit builds up at most, so an idle
 * spell does not turn into a burst.
 */
static void throttle(struct ctx *c, uint64_t bytes)
{
	double t, wait;

	if (c->o->max_rate == 0 || bytes == 0)
		return;
	pthread_mutex_lock(&c->rate_mu);
	t = now_sec();
	if (c->rate_next < t - 0.5)
		c->rate_next = t - 0.5;
	c->rate_next += (double)bytes / (double)c->o->max_rate;
	wait = c->rate_next - t;
	pthread_mutex_unlock(&c->rate_mu);
	if (wait > 0)
		sleep_sec(wait);
}

static unsigned job_count(const struct ctx *c)
{
	long cpus;

	if (c->o->jobs)
		return c->o->jobs;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? (unsigned)cpus : 1;
}

struct split {
	struct ctx *c;
	struct rkfs_file *f;
	int src, dst;
	const struct rkfs_header *nh;
	const unsigned char *gk;
	uint64_t nblocks;
	uint64_t next; /* next slice to take; atomic */
	unsigned threads;
	pthread_mutex_t mu;
	int ret; /* first error */
	uint64_t bad;
};

/*
 * Take slices in file order until none is left: read-ahead is asked for
 * the slice the threads will take next, and the written range is handed to
 * writeback at once, so reading, sealing and writing overlap and the final
 * fsync finds little left to do.
 */
static void *split_worker(void *arg)
{
	struct split *sp = arg;

	for (;;) {
		uint64_t k = __atomic_fetch_add(&sp->next, 1, __ATOMIC_RELAXED);
		uint64_t first = k * SLICE_BLOCKS, ahead, n, bad = UINT64_MAX;
		off_t cs, ce;
		int ret;

		if (first >= sp->nblocks ||
		    __atomic_load_n(&sp->ret, __ATOMIC_RELAXED) < 0)
			break;
		n = sp->nblocks - first < SLICE_BLOCKS ? sp->nblocks - first
						       : SLICE_BLOCKS;
		ahead = first + (uint64_t)sp->threads * SLICE_BLOCKS;
		if (ahead < sp->nblocks)
			(void)posix_fadvise(
			    sp->src, (off_t)rkfs_block_offset(ahead),
			    (off_t)SLICE_BLOCKS * RKFS_CBLOCK_SIZE,
			    POSIX_FADV_WILLNEED);
		ret = rkfs_file_reencrypt_range(sp->f, sp->src, sp->dst, sp->nh,
						sp->gk, first, n, &bad);
		if (ret < 0) {
			pthread_mutex_lock(&sp->mu);
			if (sp->ret == 0 || bad < sp->bad) {
				sp->ret = ret;
				sp->bad = bad;
			}
			pthread_mutex_unlock(&sp->mu);
			break;
		}
		cs = (off_t)rkfs_block_offset(first);
		ce = (off_t)rkfs_block_offset(first + n);
		(void)sync_file_range(sp->dst, cs, ce - cs,
				      SYNC_FILE_RANGE_WRITE);
		throttle(sp->c, n * RKFS_BLOCK_SIZE);
	}
	return NULL;
}

/*
 * rkfs_file_reencrypt() for the engine: a large file is split into slices
 * rewritten by job_count() threads (the caller one of them).
 */
static int reencrypt_file(struct ctx *c, struct rkfs_file *f, int src,
			  int dst, const struct rkfs_header *nh,
			  const unsigned char *gk, uint64_t *bad)
{
	struct split sp = {.c = c, .f = f, .src = src, .dst = dst, .nh = nh,
			   .gk = gk, .bad = UINT64_MAX};
	pthread_t th[RKFS_REKEY_SLOTS];
	unsigned started = 0;
	int ret;

	sp.threads = job_count(c);
	if (f->size < SPLIT_MIN || sp.threads < 2) {
		ret = rkfs_file_reencrypt(f, src, dst, nh, gk, bad);
		if (ret == 0)
			throttle(c, f->size);
		return ret;
	}
	if (sp.threads > RKFS_REKEY_SLOTS)
		sp.threads = RKFS_REKEY_SLOTS;
	sp.nblocks = rkfs_block_count(f->size);
	(void)posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
	ret = rkfs_pwrite_full(dst, nh->raw, RKFS_HEADER_LEN, 0);
	if (ret < 0)
		return ret;
	pthread_mutex_init(&sp.mu, NULL);
	for (; started + 1 < sp.threads; started++)
		if (pthread_create(&th[started], NULL, split_worker, &sp) != 0)
			break;
	split_worker(&sp);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&sp.mu);
	if (sp.ret < 0) {
		*bad = sp.bad;
		return sp.ret;
	}
	if (ftruncate(dst, (off_t)rkfs_size_to_cipher(f->size)) < 0)
		return -errno;
	return 0;
}

/* --- in-place copy (hard-linked files) -------------------------------- */

static int punch_or_zero(int fd, uint64_t off, uint64_t len, uint8_t *buf)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) == 0)
		return 0;
	memset(buf, 0, COPY_CHUNK);
	while (len) {
		size_t n = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;
		int ret = rkfs_pwrite_full(fd, buf, n, (off_t)off);

		if (ret < 0)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Make dst byte-for-byte the first size bytes of src: data ranges copied,
 * hole ranges punched, size set, times set, fsynced.  Idempotent, so an
 * interrupted copy is finished by running it again.
 */
static int copy_in_place(int dst, int src, uint64_t size,
			 const struct timespec times[2])
{
	uint64_t off = 0;
	uint8_t *buf;
	int ret = 0;

	buf = malloc(COPY_CHUNK);
	if (buf == NULL)
		return -ENOMEM;
	while (off < size) {
		off_t d = lseek(src, (off_t)off, SEEK_DATA), h;

		if (d < 0)
			d = errno == ENXIO ? (off_t)size : (off_t)off;
		if ((uint64_t)d > size)
			d = (off_t)size;
		if ((uint64_t)d > off) {
			ret = punch_or_zero(dst, off, (uint64_t)d - off, buf);
			if (ret < 0)
				goto out;
		}
		if ((uint64_t)d >= size)
			break;
		h = lseek(src, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > size)
			h = (off_t)size;
		for (off = (uint64_t)d; off < (uint64_t)h;) {
			size_t n = (uint64_t)h - off < COPY_CHUNK
				       ? (size_t)((uint64_t)h - off)
				       : COPY_CHUNK;
			ssize_t got = rkfs_pread_full(src, buf, n, (off_t)off);

			if (got < 0 || (size_t)got != n) {
				ret = got < 0 ? (int)got : -EIO;
				goto out;
			}
			ret = rkfs_pwrite_full(dst, buf, n, (off_t)off);
			if (ret < 0)
				goto out;
			off += n;
		}
	}
	if (ftruncate(dst, (off_t)size) < 0 || futimens(dst, times) < 0 ||
	    fsync(dst) < 0)
		ret = -errno;
out:
	free(buf);
	return ret;
}

/* --- per-file work ---------------------------------------------------- */

static void set_result(struct item *it, enum outcome r, char *reason)
{
	free(it->reason);
	it->result = r;
	it->reason = reason;
}

/*
 * LOCK_EX|LOCK_NB on a file about to be rewritten.  A file a mount holds
 * open is busy; any other failure fails it.  False (result set) when the
 * lock was not taken.
 */
static bool lock_for_rewrite(struct item *it, int fd)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return true;
	if (errno == EWOULDBLOCK)
		set_result(it, R_BUSY, xasprintf("open in a mount"));
	else
		set_result(it, R_FAILED,
			   xasprintf("flock: %s", strerror(errno)));
	return false;
}

static char *key_reason(const struct ctx *c, uint32_t gen, int err)
{
	const struct rkfs_generation *g = rkfs_keyring_find(c->kr, gen);

	if (g == NULL)
		return xasprintf("generation %u is not in the keyring", gen);
	if (g->state == RKFS_GEN_DESTROYED)
		return xasprintf("generation %u is destroyed", gen);
	if (g->state == RKFS_GEN_DISABLED || err == -EKEYREVOKED)
		return xasprintf("generation %u is disabled", gen);
	return xasprintf("generation %u has no key loaded", gen);
}

static char *auth_reason(int ret, uint64_t bad)
{
	if (ret != -EBADMSG)
		return xasprintf("%s", strerror(-ret));
	if (bad == UINT64_MAX)
		return xasprintf("corrupt: impossible size or bad header");
	return xasprintf("block %" PRIu64 " fails authentication", bad);
}

/*
 * Rewrite a file with one link: temp file, metadata, directory lock,
 * inode re-check, rename.  Returns R_* or -EAGAIN when the file gained a
 * link meanwhile and must go the in-place way.
 */
/*
 * Close a temp file and count its item's bytes as done right away: the
 * close of the replaced file that follows can take a while for a large one.
 */
static void close_tmp(struct ctx *c, int slot, int tfd, struct item *it)
{
	if (!it->counted)
		progress_add(c, 0, it->plain);
	it->counted = true;
	inflight_set(c, slot, -1);
	close(tfd);
}

static int rewrite_rename(struct ctx *c, struct item *it, int dfd, int fd,
			  struct rkfs_file *f, int slot)
{
	const char *base = it->path + it->base_off;
	pthread_mutex_t *held = NULL;
	char tmp[64], *why = NULL;
	const unsigned char *gk;
	struct rkfs_header nh;
	uint64_t bad = UINT64_MAX;
	struct stat st;
	int tfd, ret, e;

	gk = rkfs_keyring_key(c->kr, c->kr->primary, &e);
	if (gk == NULL) {
		set_result(it, R_FAILED, key_reason(c, c->kr->primary, e));
		return R_FAILED;
	}
	tfd = make_temp(dfd, tmp, sizeof(tmp));
	if (tfd < 0) {
		set_result(
		    it, R_FAILED,
		    xasprintf("cannot create temp file: %s", strerror(-tfd)));
		return R_FAILED;
	}
	rkfs_header_init(&nh, c->kr->primary);
	inflight_set(c, slot, tfd);
	ret = reencrypt_file(c, f, fd, tfd, &nh, gk, &bad);
	if (ret < 0) {
		set_result(it, R_FAILED, auth_reason(ret, bad));
		goto discard;
	}
	if (fsync(tfd) < 0) {
		set_result(it, R_FAILED,
			   xasprintf("fsync: %s", strerror(errno)));
		goto discard;
	}
	ret = lock_dir(dfd, &held);
	if (ret < 0) {
		set_result(it, ret == -EWOULDBLOCK ? R_BUSY : R_FAILED,
			   xasprintf("directory lock: %s", strerror(-ret)));
		goto discard;
	}
	if (fstat(fd, &st) < 0 || !same_inode(dfd, base, &st)) {
		set_result(it, R_SKIPPED,
			   xasprintf("renamed, removed or replaced in a mount "
				     "during the rewrite"));
		goto unlock_discard;
	}
	if (st.st_nlink > 1) {
		unlock_dir(dfd, held);
		unlinkat(dfd, tmp, 0);
		close_tmp(c, slot, tfd, it);
		return -EAGAIN;
	}
	ret = copy_meta(fd, tfd, &st, &why);
	if (ret < 0) {
		set_result(it, R_FAILED, why);
		goto unlock_discard;
	}
	ret = rkfs_rename_durable(dfd, tmp, dfd, base, 0);
	unlock_dir(dfd, held);
	close_tmp(c, slot, tfd, it);
	if (ret < 0) {
		unlinkat(dfd, tmp, 0);
		set_result(it, R_FAILED,
			   xasprintf("rename: %s", strerror(-ret)));
		return R_FAILED;
	}
	set_result(it, R_MIGRATED, NULL);
	return R_MIGRATED;
unlock_discard:
	unlock_dir(dfd, held);
discard:
	unlinkat(dfd, tmp, 0);
	close_tmp(c, slot, tfd, it);
	return it->result;
}

/*
 * Rewrite a hard-linked file in place under an intent record.  Order, each
 * step durable before the next: data temp (next to the file) written and
 * fsynced; intent record in the root written atomically; the temp's bytes
 * copied over the locked inode and fsynced; the record removed; the temp
 * removed.  A crash anywhere leaves the old file, the new file, or a
 * complete record that a rekey run or a mount (rkfs_rekey_recover) replays.
 */
static int rewrite_in_place(struct ctx *c, struct item *it, int dfd, int fd,
			    struct rkfs_file *f, const struct stat *st,
			    int slot)
{
	const char *base = it->path + it->base_off;
	char tmp[64], iname[80], *text = NULL;
	const unsigned char *gk;
	struct rkfs_header nh;
	struct rkfs_error err = {{0}};
	struct rkfs_intent in;
	size_t tlen = 0;
	uint64_t bad = UINT64_MAX;
	int tfd, ret, e;

	memset(&in, 0, sizeof(in));
	gk = rkfs_keyring_key(c->kr, c->kr->primary, &e);
	if (gk == NULL) {
		set_result(it, R_FAILED, key_reason(c, c->kr->primary, e));
		return R_FAILED;
	}
	if (strlen(base) > NAME_MAX) {
		set_result(it, R_FAILED, xasprintf("name too long"));
		return R_FAILED;
	}
	tfd = make_temp(dfd, tmp, sizeof(tmp));
	if (tfd < 0) {
		set_result(
		    it, R_FAILED,
		    xasprintf("cannot create temp file: %s", strerror(-tfd)));
		return R_FAILED;
	}
	snprintf(iname, sizeof(iname), "%s" RKFS_INTENT_SUFFIX, tmp);
	rkfs_header_init(&nh, c->kr->primary);
	inflight_set(c, slot, tfd);
	ret = reencrypt_file(c, f, fd, tfd, &nh, gk, &bad);
	if (ret < 0) {
		set_result(it, R_FAILED, auth_reason(ret, bad));
		goto discard;
	}
	/* the temp's data and its name are durable before a record names it */
	if (fsync(tfd) < 0 || fsync_fd_dir(dfd) < 0) {
		set_result(it, R_FAILED,
			   xasprintf("fsync: %s", strerror(errno)));
		goto discard;
	}
	in.generation = c->kr->primary;
	in.dev = (uint64_t)st->st_dev;
	in.ino = (uint64_t)st->st_ino;
	in.size = rkfs_size_to_cipher(f->size);
	in.times[0] = st->st_atim;
	in.times[1] = st->st_mtim;
	memcpy(in.old_hdr, f->hdr.raw, RKFS_HEADER_LEN);
	memcpy(in.new_hdr, nh.raw, RKFS_HEADER_LEN);
	in.target = it->path;
	in.temp = xasprintf("%.*s%s", (int)it->base_off, it->path, tmp);
	/* signed with the new generation: the replay needs its key anyway */
	ret = in.temp ? rkfs_intent_format(&text, &tlen, &in, gk) : -ENOMEM;
	free(in.temp);
	if (ret < 0) {
		set_result(it, R_FAILED,
			   xasprintf("cannot make intent record: %s",
				     strerror(-ret)));
		goto discard;
	}
	/* From here on the intent, not this process, owns the outcome. */
	ret = rkfs_write_atomic(c->rootfd, iname, text, tlen, 0600, &err);
	free(text);
	if (ret < 0) {
		set_result(it, R_FAILED,
			   xasprintf("cannot write intent: %s", err.msg));
		goto discard;
	}
	ret = copy_in_place(fd, tfd, in.size, in.times);
	if (ret < 0) {
		/* the intent stays: the next run or a mount finishes it */
		set_result(it, R_FAILED,
			   xasprintf("in-place copy failed (the next run "
				     "finishes it): %s",
				     strerror(-ret)));
		close_tmp(c, slot, tfd, it);
		return R_FAILED;
	}
	/* the record goes first: a temp without a record is plain garbage */
	unlinkat(c->rootfd, iname, 0);
	(void)fsync_fd_dir(c->rootfd);
	unlinkat(dfd, tmp, 0);
	close_tmp(c, slot, tfd, it);
	(void)fsync_fd_dir(dfd);
	set_result(it, R_MIGRATED, NULL);
	return R_MIGRATED;
discard:
	unlinkat(dfd, tmp, 0);
	close_tmp(c, slot, tfd, it);
	return it->result;
}

/* Is the file at fd empty or on the primary already (header only)? */
static bool on_primary(const struct ctx *c, int fd)
{
	uint8_t raw[RKFS_HEADER_LEN];
	struct rkfs_header h;
	ssize_t n = rkfs_pread_full(fd, raw, sizeof(raw), 0);

	if (n == 0)
		return true;
	return n == (ssize_t)sizeof(raw) &&
	       rkfs_header_parse(&h, raw, sizeof(raw)) == 0 &&
	       h.generation == c->kr->primary;
}

/* A file that failed verify, under its LOCK_EX: repair what a crash left. */
static void repair_item(struct ctx *c, struct item *it, int fd, char *why)
{
	struct rkfs_repair_result res;
	int ret = rkfs_repair_file(&res, fd, c->kr, true);

	if (ret < 0)
		set_result(it, R_FAILED,
			   xasprintf("%s; repair failed (run again): %s", why,
				     strerror(-ret)));
	else if (res.action == RKFS_REPAIR_REPAIRED)
		set_result(it, R_REPAIRED, xasprintf("%s", res.msg));
	else if (res.action == RKFS_REPAIR_REFUSED)
		set_result(it, R_FAILED,
			   xasprintf("%s; not repaired: %s", why, res.msg));
	else
		set_result(it, R_VERIFIED, NULL);
	free(why);
}

/* Open, lock and re-check one file, then rewrite or verify it. */
static void process_item(struct ctx *c, struct item *it, struct dcache *dc)
{
	const char *base = it->path + it->base_off;
	bool rdwr = c->o->repair;
	struct rkfs_file f;
	struct stat st;
	int dfd, fd = -1, ret, attempt;
	uint64_t bad = UINT64_MAX;

	set_result(it, R_NONE, NULL);
	for (attempt = 0; attempt < 4; attempt++) {
		dfd = dcache_get(dc, c, it->path, it->base_off);
		if (dfd < 0) {
			set_result(
			    it, R_SKIPPED,
			    xasprintf("directory gone: %s", strerror(-dfd)));
			return;
		}
		/* O_NOATIME: our reads must not change the atime we keep */
		fd = openat(dfd, base,
			    (rdwr ? O_RDWR : O_RDONLY) | O_NOFOLLOW |
				O_NONBLOCK | O_CLOEXEC | O_NOATIME);
		if (fd < 0 && errno == EPERM)
			fd = openat(dfd, base,
				    (rdwr ? O_RDWR : O_RDONLY) | O_NOFOLLOW |
					O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT || errno == ELOOP)
				set_result(it, R_SKIPPED,
					   xasprintf("removed or renamed in a "
						     "mount during the run"));
			else
				set_result(
				    it, R_FAILED,
				    xasprintf("open: %s", strerror(errno)));
			return;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			set_result(it, R_SKIPPED,
				   xasprintf("no longer a regular file"));
			goto out;
		}
		if (st.st_dev != it->dev || st.st_ino != it->ino) {
			/* another file at the name now: the next scan finds it */
			set_result(it, R_SKIPPED,
				   xasprintf("renamed, removed or replaced in a "
					     "mount during the run"));
			goto out;
		}
		if (c->o->mode == RKFS_REKEY_REWRITE && st.st_nlink > 1 &&
		    !rdwr) {
			/* never opened for writing when already current */
			if (on_primary(c, fd)) {
				set_result(it, R_CURRENT, NULL);
				goto out;
			}
			close(fd);
			rdwr = true;
			attempt--;
			continue;
		}
		if (!lock_for_rewrite(it, fd))
			goto out;
		if (same_inode(dfd, base, &st))
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		set_result(it, R_SKIPPED,
			   xasprintf("keeps changing in a mount"));
		return;
	}
	/* the size may have changed since the scan */
	if (rkfs_size_to_plain(&it->plain, (uint64_t)st.st_size) < 0)
		it->plain = 0;
	ret = rkfs_file_load(&f, fd, c->kr);
	if (ret < 0) {
		set_result(it, R_FAILED, auth_reason(ret, UINT64_MAX));
		goto out;
	}
	if (c->o->mode == RKFS_REKEY_VERIFY) {
		if (f.has_header && f.key == NULL) {
			set_result(it, R_FAILED,
				   key_reason(c, f.hdr.generation, f.key_err));
		} else {
			char *why = NULL;

			ret = rkfs_file_verify(&f, fd, &bad);
			if (ret == -EBADMSG && bad != UINT64_MAX &&
			    bad + 1 < rkfs_block_count(f.size) &&
			    rkfs_file_zero_block(&f, fd, bad) == 1)
				why = xasprintf("block %" PRIu64
						" is all zero in a file that "
						"may not have holes",
						bad);
			else if (ret < 0)
				why = auth_reason(ret, bad);
			if (ret == -EBADMSG && c->o->repair)
				repair_item(c, it, fd, why);
			else if (ret < 0)
				set_result(it, R_FAILED, why);
			else
				set_result(it, R_VERIFIED, NULL);
		}
		rkfs_file_release(&f);
		goto out;
	}
	if (!f.has_header || f.hdr.generation == c->kr->primary) {
		set_result(it, R_CURRENT, NULL);
		rkfs_file_release(&f);
		goto out;
	}
	if (f.key == NULL) {
		set_result(it, R_FAILED,
			   key_reason(c, f.hdr.generation, f.key_err));
		rkfs_file_release(&f);
		goto out;
	}
	if (st.st_nlink > 1) {
		ret = rewrite_in_place(c, it, dfd, fd, &f, &st, dc->slot);
	} else {
		ret = rewrite_rename(c, it, dfd, fd, &f, dc->slot);
		if (ret == -EAGAIN) {
			/* gained a link: start over the in-place way */
			rkfs_file_release(&f);
			close(fd);
			process_item(c, it, dc);
			return;
		}
	}
	rkfs_file_release(&f);
out:
	if (fd >= 0)
		close(fd); /* releases the file lock */
}

/* --- batches of small files ------------------------------------------- */

/* A small file rewritten into its temp, waiting for the batch's syncfs. */
struct staged {
	struct item *it;
	char tmp[64];
	int tfd;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec ctime;
	uint8_t sum[crypto_generichash_BYTES];
};

static int open_item(int dfd, const char *base)
{
	/* O_NOATIME: our reads must not change the atime we keep */
	int fd = openat(dfd, base,
			O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
			    O_NOATIME);

	if (fd < 0 && errno == EPERM)
		fd = openat(dfd, base,
			    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void open_failed(struct item *it, int e)
{
	if (e == -ENOENT || e == -ELOOP)
		set_result(it, R_SKIPPED,
			   xasprintf("removed or renamed in a mount during "
				     "the run"));
	else
		set_result(it, R_FAILED, xasprintf("open: %s", strerror(-e)));
}

/* BLAKE2b of the first size bytes of fd (ciphertext: not secret). */
static int hash_fd(int fd, off_t size, uint8_t out[crypto_generichash_BYTES])
{
	crypto_generichash_state st;
	uint8_t buf[65536];
	off_t off = 0;

	crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES);
	while (off < size) {
		size_t n = size - off < (off_t)sizeof(buf) ? (size_t)(size - off)
							   : sizeof(buf);
		ssize_t got = rkfs_pread_full(fd, buf, n, off);

		if (got < 0)
			return (int)got;
		if ((size_t)got != n)
			return -EIO;
		crypto_generichash_update(&st, buf, n);
		off += (off_t)n;
	}
	crypto_generichash_final(&st, out, crypto_generichash_BYTES);
	return 0;
}

/*
 * First half of a batched rewrite: lock the file, rewrite it into a temp
 * (not yet durable), remember what it was, unlock.  Returns 1 when staged,
 * 0 when the item has its result (current, failed, busy, skipped), or
 * -EAGAIN when it must go the one-by-one way (hard links, grew, moved).
 */
static int stage_item(struct ctx *c, struct item *it, struct dcache *dc,
		      struct staged *sg)
{
	const char *base = it->path + it->base_off;
	const unsigned char *gk;
	struct rkfs_header nh;
	uint64_t bad = UINT64_MAX;
	struct rkfs_file f;
	struct stat st;
	int dfd, fd, ret, e;

	set_result(it, R_NONE, NULL);
	dfd = dcache_get(dc, c, it->path, it->base_off);
	if (dfd < 0) {
		set_result(it, R_SKIPPED,
			   xasprintf("directory gone: %s", strerror(-dfd)));
		return 0;
	}
	fd = open_item(dfd, base);
	if (fd < 0) {
		open_failed(it, fd);
		return 0;
	}
	ret = 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		set_result(it, R_SKIPPED, xasprintf("no longer a regular file"));
		goto out;
	}
	if (st.st_dev != it->dev || st.st_ino != it->ino) {
		/* another file at the name now: the next scan finds it */
		set_result(it, R_SKIPPED,
			   xasprintf("renamed, removed or replaced in a mount "
				     "during the run"));
		goto out;
	}
	if (st.st_nlink > 1 ||
	    (uint64_t)st.st_size > rkfs_size_to_cipher(BATCH_MAX_FILE)) {
		ret = -EAGAIN;
		goto out;
	}
	if (!lock_for_rewrite(it, fd))
		goto out;
	if (!same_inode(dfd, base, &st)) {
		ret = -EAGAIN;
		goto out;
	}
	if (rkfs_size_to_plain(&it->plain, (uint64_t)st.st_size) < 0)
		it->plain = 0;
	e = rkfs_file_load(&f, fd, c->kr);
	if (e < 0) {
		set_result(it, R_FAILED, auth_reason(e, UINT64_MAX));
		goto out;
	}
	if (!f.has_header || f.hdr.generation == c->kr->primary) {
		set_result(it, R_CURRENT, NULL);
		goto release;
	}
	if (f.key == NULL) {
		set_result(it, R_FAILED,
			   key_reason(c, f.hdr.generation, f.key_err));
		goto release;
	}
	gk = rkfs_keyring_key(c->kr, c->kr->primary, &e);
	if (gk == NULL) {
		set_result(it, R_FAILED, key_reason(c, c->kr->primary, e));
		goto release;
	}
	sg->tfd = make_temp(dfd, sg->tmp, sizeof(sg->tmp));
	if (sg->tfd < 0) {
		set_result(it, R_FAILED,
			   xasprintf("cannot create temp file: %s",
				     strerror(-sg->tfd)));
		goto release;
	}
	rkfs_header_init(&nh, c->kr->primary);
	e = rkfs_file_reencrypt(&f, fd, sg->tfd, &nh, gk, &bad);
	if (e == 0)
		e = hash_fd(fd, st.st_size, sg->sum);
	if (e < 0) {
		set_result(it, R_FAILED, auth_reason(e, bad));
		unlinkat(dfd, sg->tmp, 0);
		close(sg->tfd);
		goto release;
	}
	throttle(c, it->plain);
	sg->it = it;
	sg->dev = st.st_dev;
	sg->ino = st.st_ino;
	sg->size = st.st_size;
	sg->ctime = st.st_ctim;
	ret = 1;
release:
	rkfs_file_release(&f);
out:
	close(fd); /* releases the file lock: the batch's syncfs runs without */
	return ret;
}

static void discard_staged(struct staged *sg, int dfd)
{
	unlinkat(dfd, sg->tmp, 0);
	close(sg->tfd);
	sg->tfd = -1;
}

/*
 * Second half, after the batch's temps are durable: lock the file again,
 * check that it is the file staged and unchanged since, and rename the
 * temp over it under the directory lock (as rewrite_rename() does, without
 * the directory fsync).  Returns 0 with the item's result set, or -EAGAIN
 * (temp removed) when it must go the one-by-one way.
 */
/*
 * The last close of a replaced file is when the filesystem frees it: with
 * ext4's discard option a wait on the device, tens to hundreds of
 * microseconds a file, which a worker need not spend.  Its lock is
 * dropped at once (a mount waiting for it goes on to the new file), and a
 * closer thread closes it; when the queue holds limit files (the share of
 * the descriptor limit batch_files() leaves over: c->batch_cap), or the
 * thread cannot start, the worker closes it itself.  closer_drain() waits until every
 * queued file is closed.
 */
#define CLOSER_SLOTS 1024


static struct {
	pthread_mutex_t mu;
	pthread_cond_t more, idle;
	int fds[CLOSER_SLOTS];
	size_t head, n;
	bool started, failed, busy;
} closer = {.mu = PTHREAD_MUTEX_INITIALIZER,
	    .more = PTHREAD_COND_INITIALIZER,
	    .idle = PTHREAD_COND_INITIALIZER};

static void *closer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&closer.mu);
	for (;;) {
		int fd;

		while (closer.n == 0) {
			closer.busy = false;
			pthread_cond_broadcast(&closer.idle);
			pthread_cond_wait(&closer.more, &closer.mu);
		}
		closer.busy = true;
		fd = closer.fds[closer.head];
		closer.head = (closer.head + 1) % CLOSER_SLOTS;
		closer.n--;
		pthread_mutex_unlock(&closer.mu);
		close(fd);
		pthread_mutex_lock(&closer.mu);
	}
	return NULL;
}

static void close_replaced(int fd, size_t limit)
{
	bool queued = false;
	pthread_t t;

	(void)flock(fd, LOCK_UN);
	pthread_mutex_lock(&closer.mu);
	if (!closer.started && !closer.failed) {
		if (pthread_create(&t, NULL, closer_main, NULL) == 0) {
			pthread_detach(t);
			closer.started = true;
		} else {
			closer.failed = true;
		}
	}
	if (closer.started && closer.n < CLOSER_SLOTS && closer.n < limit) {
		closer.fds[(closer.head + closer.n) % CLOSER_SLOTS] = fd;
		closer.n++;
		queued = true;
		pthread_cond_signal(&closer.more);
	}
	pthread_mutex_unlock(&closer.mu);
	if (!queued)
		close(fd);
}

static void closer_drain(void)
{
	pthread_mutex_lock(&closer.mu);
	while (closer.started && (closer.n > 0 || closer.busy))
		pthread_cond_wait(&closer.idle, &closer.mu);
	pthread_mutex_unlock(&closer.mu);
}

static int commit_item(struct ctx *c, struct staged *sg, int dfd)
{
	struct item *it = sg->it;
	const char *base = it->path + it->base_off;
	pthread_mutex_t *held = NULL;
	uint8_t sum[crypto_generichash_BYTES];
	char *why = NULL;
	struct stat st;
	int fd, ret = 0;

	fd = open_item(dfd, base);
	if (fd < 0) {
		open_failed(it, fd);
		discard_staged(sg, dfd);
		return 0;
	}
	if (fstat(fd, &st) < 0 || st.st_dev != sg->dev ||
	    st.st_ino != sg->ino) {
		set_result(it, R_SKIPPED,
			   xasprintf("renamed, removed or replaced in a mount "
				     "during the rewrite"));
		goto discard;
	}
	if (!lock_for_rewrite(it, fd))
		goto discard;
	/*
	 * Written since it was staged: start over with what it is now.  Size
	 * and ctime alone cannot tell: a write in the same timestamp tick as
	 * the last change before staging leaves ctime as it was on
	 * filesystems with coarse timestamps, and that write would be lost.
	 * Hashing 4 KiB..1 MiB of cached ciphertext costs little next to the
	 * rest of a file's rewrite.
	 */
	if (st.st_nlink > 1 || st.st_size != sg->size ||
	    st.st_ctim.tv_sec != sg->ctime.tv_sec ||
	    st.st_ctim.tv_nsec != sg->ctime.tv_nsec ||
	    hash_fd(fd, st.st_size, sum) < 0 ||
	    sodium_memcmp(sum, sg->sum, sizeof(sum)) != 0) {
		ret = -EAGAIN;
		goto discard;
	}
	ret = lock_dir(dfd, &held);
	if (ret < 0) {
		set_result(it, ret == -EWOULDBLOCK ? R_BUSY : R_FAILED,
			   xasprintf("directory lock: %s", strerror(-ret)));
		ret = 0;
		goto discard;
	}
	if (fstat(fd, &st) < 0 || !same_inode(dfd, base, &st)) {
		set_result(it, R_SKIPPED,
			   xasprintf("renamed, removed or replaced in a mount "
				     "during the rewrite"));
		goto unlock_discard;
	}
	if (st.st_nlink > 1) {
		ret = -EAGAIN;
		goto unlock_discard;
	}
	if (copy_meta(fd, sg->tfd, &st, &why) < 0) {
		set_result(it, R_FAILED, why);
		goto unlock_discard;
	}
	ret = rkfs_rename_nosync(dfd, sg->tmp, base);
	unlock_dir(dfd, held);
	close(sg->tfd);
	sg->tfd = -1;
	if (ret == 0)
		close_replaced(fd, c->batch_cap);
	else
		close(fd);
	if (ret < 0) {
		unlinkat(dfd, sg->tmp, 0);
		set_result(it, R_FAILED,
			   xasprintf("rename: %s", strerror(-ret)));
		return 0;
	}
	set_result(it, R_MIGRATED, NULL);
	return 0;
unlock_discard:
	unlock_dir(dfd, held);
discard:
	discard_staged(sg, dfd);
	close(fd);
	return ret;
}

/*
 * Rewrite n small files of one directory: stage each, make the temps
 * durable with one syncfs, commit each, then one directory fsync.  A file
 * that cannot be batched goes through process_item().
 */
static void run_batch(struct ctx *c, struct item **v, size_t n,
		      struct dcache *dc)
{
	struct staged *sg = calloc(n, sizeof(*sg));
	size_t ns = 0, i;
	int dfd, ret;

	if (sg == NULL) {
		/* no memory for the batch: one by one */
		for (i = 0; i < n && !stopping(c); i++)
			process_item(c, v[i], dc);
		return;
	}
	for (i = 0; i < n && !stopping(c); i++) {
		ret = stage_item(c, v[i], dc, &sg[ns]);
		if (ret == 1)
			ns++;
		else if (ret == -EAGAIN)
			process_item(c, v[i], dc);
	}
	if (ns == 0)
		goto out;
	dfd = dcache_get(dc, c, sg[0].it->path, sg[0].it->base_off);
	if (dfd < 0) {
		for (i = 0; i < ns; i++) {
			close(sg[i].tfd);
			set_result(sg[i].it, R_SKIPPED,
				   xasprintf("directory gone: %s",
					     strerror(-dfd)));
		}
		goto out;
	}
	/* one flush for the batch instead of one fsync per file */
	ret = ns == 1 ? fsync(sg[0].tfd) : syncfs(sg[0].tfd);
	if (ret < 0) {
		int e = errno;

		for (i = 0; i < ns; i++) {
			discard_staged(&sg[i], dfd);
			set_result(sg[i].it, R_FAILED,
				   xasprintf("fsync: %s", strerror(e)));
		}
		goto out;
	}
	for (i = 0; i < ns; i++)
		if (commit_item(c, &sg[i], dfd) == -EAGAIN)
			process_item(c, sg[i].it, dc);
	/* the batch's renames, durable together */
	dfd = dcache_get(dc, c, sg[0].it->path, sg[0].it->base_off);
	if (dfd >= 0)
		(void)fsync_fd_dir(dfd);
out:
	free(sg);
}

/* --- worker pool ------------------------------------------------------ */

/*
 * Items reach the workers through a bounded queue, in groups of one
 * directory as the walk found them, so that memory holds a window of the
 * tree and never all of it.
 */
#define QUEUE_ITEMS (4 * BATCH_FILES) /* queued for the workers at most */

struct group {
	struct group *next;
	size_t n;
	struct item *v[];
};

struct workq {
	struct ctx *c;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct group *head, *tail;
	size_t items; /* queued */
	bool closed;
	int workers; /* ids handed out, for progress slots */
	pthread_t *th;
	unsigned started;
};

/*
 * Files one batch may hold.  A batch keeps every staged temp open until
 * its commit: the limit, less 128 for everything else, is shared out
 * evenly among the workers' batches and the closer's queue.  Batches are large so that, in a tree of directories
 * with many files each, the workers rewrite different directories: the
 * files created in one directory queue on its inode lock, which made a
 * second worker in the same directory add nothing.
 */
static size_t batch_files(const struct ctx *c)
{
	struct rlimit rl;
	size_t cap = BATCH_FILES;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		uint64_t spare = rl.rlim_cur > 128 ? rl.rlim_cur - 128 : 0;

		spare /= job_count(c) + 1;
		if (spare < cap)
			cap = spare > 16 ? (size_t)spare : 16;
	}
	return cap;
}

/*
 * How many items from v[0] on go together: a run of small files in one
 * directory when rewriting, else one.
 */
static size_t batch_len(const struct ctx *c, struct item *const *v, size_t n)
{
	const struct item *a = v[0];
	size_t cap = c->batch_cap;
	uint64_t bytes = 0;
	size_t k;

	if (c->o->mode != RKFS_REKEY_REWRITE)
		return 1;
	for (k = 0; k < n && k < cap; k++) {
		const struct item *b = v[k];

		if (b->plain > BATCH_MAX_FILE || bytes + b->plain > BATCH_BYTES ||
		    b->base_off != a->base_off ||
		    strncmp(a->path, b->path, a->base_off) != 0)
			break;
		bytes += b->plain;
	}
	return k ? k : 1;
}

static bool in_busy(const struct rkfs_rekey_report *rep, const char *path)
{
	for (size_t b = 0; b < rep->busy.count; b++)
		if (strcmp(rep->busy.v[b].path, path) == 0)
			return true;
	return false;
}

/* Count a finished item in the report.  Under c->mu. */
static int record_item(struct ctx *c, struct item *it)
{
	struct rkfs_rekey_report *rep = c->rep;

	switch (it->result) {
	case R_MIGRATED:
		rep->migrated++;
		rep->bytes_rewritten += it->plain;
		return 0;
	case R_CURRENT:
		rep->current++;
		return 0;
	case R_VERIFIED:
		rep->verified++;
		return 0;
	case R_BUSY:
		return list_add(&rep->busy, it->path, it->reason);
	case R_FAILED:
		(void)rkfs_inoset_add(&c->done, it->dev, it->ino);
		return list_add(&rep->failed, it->path, it->reason);
	case R_SKIPPED:
		return list_add(&rep->skipped, it->path, it->reason);
	case R_REPAIRED:
		return list_add(&rep->repaired, it->path, it->reason);
	case R_NONE:
		break;
	}
	return 0;
}

/*
 * An item is done with: recorded and freed, or kept for another try when
 * it was busy and --wait has time left.
 */
static void finish_item(struct ctx *c, struct item *it)
{
	int ret = 0;

	pthread_mutex_lock(&c->mu);
	if (it->result == R_BUSY && c->o->wait > 0 && !stopping(c) &&
	    now_sec() < c->deadline) {
		if (c->nretry == c->capretry) {
			size_t cap = c->capretry ? c->capretry * 2 : 16;
			struct item **v = realloc(c->retry, cap * sizeof(*v));

			if (v) {
				c->retry = v;
				c->capretry = cap;
			}
		}
		if (c->nretry < c->capretry) {
			c->retry[c->nretry++] = it;
			pthread_mutex_unlock(&c->mu);
			return;
		}
	}
	ret = record_item(c, it);
	if (ret < 0 && c->err == 0)
		c->err = ret;
	pthread_mutex_unlock(&c->mu);
	free_item(it);
}

/*
 * When rewriting, the groups queued next from the same directory join g,
 * up to what one batch may hold: one syncfs for all of them, and the
 * other workers go to other directories instead of queueing on this
 * one's inode lock for their creates.  Under q->mu.
 */
static struct group *wq_merge(struct workq *q, struct group *g)
{
	size_t cap = q->c->batch_cap;

	if (q->c->o->mode != RKFS_REKEY_REWRITE)
		return g;
	while (q->head && g->n + q->head->n <= cap) {
		struct group *h = q->head, *m;
		const struct item *a = g->v[0], *b = h->v[0];

		if (a->base_off != b->base_off ||
		    strncmp(a->path, b->path, a->base_off) != 0)
			break;
		m = realloc(g, sizeof(*g) + (g->n + h->n) * sizeof(g->v[0]));
		if (m == NULL)
			break;
		g = m;
		memcpy(g->v + g->n, h->v, h->n * sizeof(h->v[0]));
		g->n += h->n;
		q->head = h->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->items -= h->n;
		free(h);
	}
	return g;
}

static struct group *wq_pop(struct workq *q)
{
	struct group *g;

	pthread_mutex_lock(&q->mu);
	while (q->head == NULL && !q->closed)
		pthread_cond_wait(&q->cv, &q->mu);
	g = q->head;
	if (g) {
		q->head = g->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->items -= g->n;
		g = wq_merge(q, g);
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	return g;
}

/* Queue a group; waits while the queue is full (the walk slows down). */
static void wq_push(struct workq *q, struct group *g)
{
	pthread_mutex_lock(&q->mu);
	while (q->items >= QUEUE_ITEMS && q->head)
		pthread_cond_wait(&q->cv, &q->mu);
	g->next = NULL;
	if (q->tail)
		q->tail->next = g;
	else
		q->head = g;
	q->tail = g;
	q->items += g->n;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static void *worker(void *arg)
{
	struct workq *q = arg;
	struct ctx *c = q->c;
	struct dcache dc = {NULL, -1, -1};
	int id = __atomic_fetch_add(&q->workers, 1, __ATOMIC_RELAXED);
	struct group *g;

	dc.slot = id < RKFS_REKEY_SLOTS ? id : -1;
	while ((g = wq_pop(q)) != NULL) {
		size_t i = 0, n;

		for (; i < g->n && !stopping(c); i += n) {
			n = batch_len(c, g->v + i, g->n - i);
			if (n == 1)
				process_item(c, g->v[i], &dc);
			else
				run_batch(c, g->v + i, n, &dc);
			for (size_t j = i; j < i + n; j++) {
				struct item *it = g->v[j];

				if (it->result != R_BUSY && it->result != R_NONE)
					progress_add(c, 1,
						     it->counted ? 0 : it->plain);
				it->counted = false;
				finish_item(c, it);
			}
		}
		for (; i < g->n; i++)
			free_item(g->v[i]); /* stopped: not started */
		free(g);
	}
	dcache_drop(&dc);
	return NULL;
}

static void pool_start(struct workq *q, struct ctx *c)
{
	unsigned jobs = job_count(c);

	memset(q, 0, sizeof(*q));
	q->c = c;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->th = calloc(jobs, sizeof(*q->th));
	if (q->th)
		for (; q->started < jobs; q->started++)
			if (pthread_create(&q->th[q->started], NULL, worker,
					   q) != 0)
				break;
}

/* No more groups: let the workers finish what is queued, and end. */
static void pool_finish(struct workq *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	if (q->started == 0)
		worker(q); /* no threads: do it here */
	for (unsigned i = 0; i < q->started; i++)
		pthread_join(q->th[i], NULL);
	free(q->th);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
}

/*
 * Queue v[0..n) in groups of one directory (consecutive items), taking
 * them over.  With no worker threads, run each group at once.
 */
static int queue_items(struct workq *q, struct item **v, size_t n)
{
	struct rkfs_rekey_progress *p = q->c->o->progress;

	for (size_t i = 0; i < n;) {
		size_t k = batch_len(q->c, v + i, n - i);
		struct group *g = malloc(sizeof(*g) + k * sizeof(g->v[0]));

		if (g == NULL) {
			for (; i < n; i++)
				free_item(v[i]);
			return -ENOMEM;
		}
		g->n = k;
		memcpy(g->v, v + i, k * sizeof(g->v[0]));
		if (p)
			for (size_t j = 0; j < k; j++) {
				__atomic_add_fetch(&p->files_total, 1,
						   __ATOMIC_RELAXED);
				__atomic_add_fetch(&p->bytes_total,
						   v[i + j]->plain,
						   __ATOMIC_RELAXED);
			}
		i += k;
		if (q->started == 0) {
			pthread_mutex_lock(&q->mu);
			g->next = q->head;
			q->head = g;
			q->items += g->n;
			q->closed = true;
			pthread_mutex_unlock(&q->mu);
			worker(q);
			q->closed = false;
		} else {
			wq_push(q, g);
		}
	}
	return 0;
}

/*
 * Files that were busy, again and again until none is or --wait runs out
 * (a pause between rounds); what stays busy is recorded as busy.
 */
static int retry_busy(struct ctx *c)
{
	struct workq q;
	struct item **v;
	size_t n;
	int ret = 0;

	for (;;) {
		pthread_mutex_lock(&c->mu);
		v = c->retry;
		n = c->nretry;
		c->retry = NULL;
		c->nretry = c->capretry = 0;
		pthread_mutex_unlock(&c->mu);
		if (n == 0)
			break;
		if (stopping(c) || now_sec() >= c->deadline || ret < 0) {
			/* out of time: busy it is */
			c->deadline = 0;
			for (size_t i = 0; i < n; i++)
				finish_item(c, v[i]);
			free(v);
			continue;
		}
		sleep_sec(0.25);
		pool_start(&q, c);
		ret = queue_items(&q, v, n);
		pool_finish(&q);
		free(v);
	}
	return ret;
}

/* --- interrupted in-place rewrites ------------------------------------ */

/*
 * Open a path read from a record (untrusted) beneath the root: no "..",
 * no symlink in any component, no magic link, no other filesystem.
 */
static int open_beneath(int rootfd, const char *path, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		       RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd;
	int tries = 0;

	/* EAGAIN: a rename elsewhere raced the lookup; try again */
	do
		fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && ++tries < 8);
	return fd < 0 ? -errno : (int)fd;
}

/* The directory holding path (relative to the root), opened beneath it. */
static int open_dir_beneath(int rootfd, const char *path)
{
	const char *s = strrchr(path, '/');
	char *dir;
	int fd;

	if (s == NULL)
		return open_beneath(rootfd, ".", O_RDONLY | O_DIRECTORY);
	dir = strndup(path, (size_t)(s - path));
	if (dir == NULL)
		return -ENOMEM;
	fd = open_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY);
	free(dir);
	return fd;
}

static const char *last_part(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/*
 * Can only this process's user (or root, with root_only root alone) have
 * written the file?  Single link (no hard link to someone else's file),
 * mode 0600.
 */
static bool ours(const struct stat *st, bool root_only)
{
	return S_ISREG(st->st_mode) && st->st_nlink == 1 &&
	       (st->st_mode & 07777) == 0600 &&
	       (st->st_uid == 0 || (!root_only && st->st_uid == geteuid()));
}

/* 1 if the first size bytes of a and b are equal (and both that long). */
static int files_equal(int a, int b, uint64_t size)
{
	uint8_t *x = malloc(COPY_CHUNK), *y = malloc(COPY_CHUNK);
	struct stat st;
	uint64_t off;
	int ret = 1;

	if (x == NULL || y == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	if (fstat(a, &st) < 0 || (uint64_t)st.st_size != size) {
		ret = 0;
		goto out;
	}
	for (off = 0; off < size && ret == 1;) {
		size_t n = size - off < COPY_CHUNK ? (size_t)(size - off)
						   : COPY_CHUNK;
		ssize_t ga = rkfs_pread_full(a, x, n, (off_t)off);
		ssize_t gb = rkfs_pread_full(b, y, n, (off_t)off);

		if (ga < 0 || gb < 0)
			ret = ga < 0 ? (int)ga : (int)gb;
		else if ((size_t)ga != n || (size_t)gb != n ||
			 memcmp(x, y, n) != 0) /* not secret: ciphertext */
			ret = 0;
		off += n;
	}
out:
	free(x);
	free(y);
	return ret;
}

/* Does fd authenticate completely under its own header? */
static bool file_intact(const struct rkfs_keyring *kr, int fd)
{
	struct rkfs_file f;
	uint64_t bad = UINT64_MAX;
	bool ok;

	if (kr == NULL || rkfs_file_load(&f, fd, kr) < 0)
		return false;
	ok = !(f.has_header && f.key == NULL) &&
	     rkfs_file_verify(&f, fd, &bad) == 0;
	rkfs_file_release(&f);
	return ok;
}

/*
 * Open the record's data temp and check that it is the new version the
 * record's writer made: written by us (root_only: by root), the recorded
 * size and (version 3) header, every block authentic under a generation
 * the keyring enables (version 3: the signing one).  Returns the fd or
 * -errno (-EBADMSG: there, but not the new version).
 */
static int temp_open(const struct ctx *c, const struct rkfs_intent *in,
		     bool root_only)
{
	uint8_t h[RKFS_HEADER_LEN];
	uint64_t bad = UINT64_MAX;
	struct rkfs_file f;
	struct stat st;
	int fd, ret = -EBADMSG;

	fd = open_beneath(c->rootfd, in->temp, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !ours(&st, root_only) ||
	    (uint64_t)st.st_size != in->size ||
	    rkfs_pread_full(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    (in->version >= 3 &&
	     memcmp(h, in->new_hdr, sizeof(h)) != 0)) /* not secret */
		goto bad;
	if (c->kr == NULL || rkfs_file_load(&f, fd, c->kr) < 0)
		goto bad;
	if (f.has_header && f.key != NULL &&
	    (in->version < 3 || f.hdr.generation == in->generation) &&
	    rkfs_file_verify(&f, fd, &bad) == 0)
		ret = 0;
	rkfs_file_release(&f);
	if (ret == 0)
		return fd;
bad:
	close(fd);
	return ret;
}

struct search {
	uint64_t dev, ino;
	pthread_mutex_t mu;
	char *path;
};

static int on_search(void *arg, const struct rkfs_walk_dir *d,
		     struct rkfs_walk_file *v, size_t n)
{
	struct search *s = arg;
	size_t off;

	for (size_t i = 0; i < n; i++) {
		if ((uint64_t)v[i].dev != s->dev ||
		    (uint64_t)v[i].ino != s->ino)
			continue;
		pthread_mutex_lock(&s->mu);
		if (s->path == NULL)
			s->path = join(d->path, v[i].name, &off);
		pthread_mutex_unlock(&s->mu);
		return -ECANCELED; /* found: the walk can end */
	}
	return 0;
}

/* Where the record's target inode is in the tree now (malloc()ed), or NULL. */
static char *find_target(struct ctx *c, const struct rkfs_intent *in)
{
	struct search s = {.dev = in->dev, .ino = in->ino,
			   .mu = PTHREAD_MUTEX_INITIALIZER};
	struct rkfs_walk_ops o = {.files = on_search, .arg = &s};
	int e;

	/* -ECANCELED when found; any other end: not found (NULL) */
	e = rkfs_walk(c->rootfd, &o);
	(void)e;
	pthread_mutex_destroy(&s.mu);
	return s.path;
}

/* How to finish a record's copy by hand, for messages. */
static char *by_hand(const char *what, const char *rec,
		     const struct rkfs_intent *in)
{
	if (in->target == NULL || in->temp == NULL)
		return xasprintf("%s: not replayed; remove %s once every file "
				 "reads back (README: Interrupted rewrites)",
				 what, rec);
	return xasprintf(
	    "%s: not replayed. If %s does not read back, finish by hand with "
	    "the tree unmounted: cp --sparse=always '%s' '%s' (keeps its "
	    "inode), then remove '%s' and '%s' (README: Interrupted rewrites)",
	    what, in->target, in->temp, in->target, rec, in->temp);
}

enum replay {
	RP_DONE,     /* the target now holds the new version */
	RP_NOTHING,  /* nothing to finish: drop the record and its temp */
	RP_FOREIGN,  /* not a record of ours: never acted on */
	RP_REFUSED,  /* ours, but not replayable: kept, why says how */
	RP_BUSY,     /* the target stays open in a mount */
	RP_FAILED,   /* the copy failed: kept for the next try */
};

/*
 * Finish one interrupted in-place rewrite whose record is rootfd/name.
 * The record must be ours (ours()) and, in version 3, authenticate under
 * the generation that signed it; a version 2 record from an older build
 * is honoured only when it and its temp are root's, as nothing else can
 * have written them then; version 1 is refused.  The data temp must be
 * the new version (temp_open()), the target the recorded inode at the
 * recorded path.
 *
 * The target's current bytes then decide: equal to the temp, the copy is
 * done (times and fsync are redone); a header that is neither the
 * recorded old one nor the new one, or a file that authenticates
 * completely, means the copy never started or the file was rewritten
 * since: left alone.  Anything else is the mix a crash leaves: the copy is
 * replayed.  in is filled as far as parsed (release it either way); why
 * (malloc()ed) says what went wrong for RP_FOREIGN, RP_REFUSED, RP_FAILED.
 */
static enum replay replay_record(struct ctx *c, const char *name, bool force,
				 double wait, struct rkfs_intent *in,
				 char **why)
{
	uint8_t th[RKFS_HEADER_LEN], nh[RKFS_HEADER_LEN];
	double until = now_sec() + wait;
	const unsigned char *gk;
	enum replay res = RP_NOTHING;
	char *text = NULL, *msg = NULL;
	struct stat rst, st;
	size_t len;
	int rfd, tfd = -1, fd = -1, e;

	memset(in, 0, sizeof(*in));
	*why = NULL;
	rfd = openat(c->rootfd, name,
		     O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (rfd < 0)
		return errno == ENOENT ? RP_NOTHING : RP_FOREIGN;
	if (fstat(rfd, &rst) < 0 || !ours(&rst, false)) {
		*why = xasprintf("intent record not written by rekeyfs-rekey "
				 "(owner uid %u, mode %04o, %u links): ignored",
				 (unsigned)rst.st_uid,
				 (unsigned)rst.st_mode & 07777,
				 (unsigned)rst.st_nlink);
		close(rfd);
		return RP_FOREIGN;
	}
	e = rkfs_read_small_file(&text, &len, rfd, NULL, RKFS_INTENT_MAX,
				 false);
	close(rfd);
	if (e < 0 || rkfs_intent_parse(in, text, len) < 0) {
		*why = by_hand("intent record cannot be parsed", name, in);
		res = RP_REFUSED;
		goto out;
	}
	if (in->version == 1) {
		in->temp = strndup(name, strlen(name) -
					     strlen(RKFS_INTENT_SUFFIX));
		*why = by_hand("intent record of an older rekeyfs-rekey "
			       "(version 1)",
			       name, in);
		res = RP_REFUSED;
		goto out;
	}
	if (in->version == 2 && rst.st_uid != 0) {
		*why = by_hand("unauthenticated intent record of an older "
			       "rekeyfs-rekey not owned by root",
			       name, in);
		res = RP_REFUSED;
		goto out;
	}
	if (in->version >= 3) {
		gk = c->kr ? rkfs_keyring_key(c->kr, in->generation, &e)
			   : NULL;
		if (gk == NULL) {
			char *kr_why = c->kr ? key_reason(c, in->generation, e)
					     : xasprintf("no keyring");

			msg = xasprintf("intent record signed by generation "
					"%" PRIu32 " cannot be authenticated "
					"(%s); make that generation usable "
					"again and rerun, or",
					in->generation,
					kr_why ? kr_why : "no key");
			free(kr_why);
			*why = by_hand(msg ? msg : "no key", name, in);
			res = RP_REFUSED;
			goto out;
		}
		if (rkfs_intent_verify(in, text, gk) < 0) {
			*why = by_hand("intent record does not authenticate "
				       "(forged, damaged, or another keyring)",
				       name, in);
			res = RP_REFUSED;
			goto out;
		}
	}
	tfd = temp_open(c, in, in->version < 3);
	if (tfd >= 0 &&
	    rkfs_pread_full(tfd, nh, sizeof(nh), 0) != (ssize_t)sizeof(nh)) {
		close(tfd);
		tfd = -EIO;
	}
	fd = open_beneath(c->rootfd, in->target,
			  O_RDWR | O_NONBLOCK | O_NOATIME);
	if (fd == -EPERM)
		fd = open_beneath(c->rootfd, in->target, O_RDWR | O_NONBLOCK);
	if (fd >= 0 &&
	    (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	     (uint64_t)st.st_dev != in->dev || (uint64_t)st.st_ino != in->ino)) {
		close(fd);
		fd = -ENOENT;
	}
	if (fd < 0) {
		char *where = find_target(c, in);

		if (where == NULL)
			goto out; /* the file was removed: nothing to finish */
		msg = xasprintf("the recorded path %s no longer leads to "
				"the file (inode %" PRIu64 ", now at %s)",
				in->target, in->ino, where);
		/* by hand, through the path that is known to be safe */
		free(in->target);
		in->target = where;
		*why = by_hand(msg ? msg : "the file moved", name, in);
		res = RP_REFUSED;
		goto out;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			*why = xasprintf("flock: %s", strerror(errno));
			res = RP_FAILED;
			goto out;
		}
		if (force)
			break;
		if (now_sec() >= until || stopping(c)) {
			res = RP_BUSY;
			goto out;
		}
		sleep_sec(0.1);
	}
	if (rkfs_pread_full(fd, th, sizeof(th), 0) != (ssize_t)sizeof(th) ||
	    (memcmp(th, in->old_hdr, sizeof(th)) != 0 && /* not secret */
	     (in->version < 3 ||
	      memcmp(th, in->new_hdr, sizeof(th)) != 0) && /* not secret */
	     (tfd < 0 || memcmp(th, nh, sizeof(th)) != 0))) /* not secret */
		goto out; /* rewritten since: not ours to touch */
	if (tfd < 0) {
		if (file_intact(c->kr, fd))
			goto out; /* the copy never started */
		*why = by_hand("the new version is missing or does not "
			       "authenticate, and the file is half copied",
			       name, in);
		res = RP_REFUSED;
		goto out;
	}
	e = files_equal(fd, tfd, in->size);
	if (e < 0) {
		*why = xasprintf("read: %s", strerror(-e));
		res = RP_FAILED;
		goto out;
	}
	if (e == 0 && file_intact(c->kr, fd))
		goto out;
	e = copy_in_place(fd, tfd, in->size, in->times);
	if (e < 0) {
		*why = xasprintf("copy: %s", strerror(-e));
		res = RP_FAILED;
		goto out;
	}
	res = RP_DONE;
out:
	if (fd >= 0)
		close(fd); /* releases the file lock */
	if (tfd >= 0)
		close(tfd);
	free(text);
	free(msg);
	return res;
}

/*
 * A record outside the root (dfd/path + base_off): never written there by
 * this version.  One of ours of version 1 (older builds kept it next to
 * its target) is refused with the way to finish it by hand; anything else
 * is a stray file.
 */
static bool legacy_record(struct ctx *c, int dfd, const char *path,
			  size_t base_off, char **why)
{
	struct rkfs_intent in;
	char *text = NULL;
	struct stat st;
	size_t len;
	bool ours_v1 = false;
	int fd;

	*why = NULL;
	fd = openat(dfd, path + base_off,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && ours(&st, false) &&
	    rkfs_read_small_file(&text, &len, fd, NULL, RKFS_INTENT_MAX,
				 false) == 0 &&
	    rkfs_intent_parse(&in, text, len) == 0) {
		ours_v1 = in.version == 1;
		free(in.target);
		in.target = xasprintf("%.*s%s", (int)base_off, path,
				      in.target ? in.target : "");
		in.temp = strndup(path, strlen(path) -
					    strlen(RKFS_INTENT_SUFFIX));
		if (ours_v1)
			*why = by_hand("intent record of an older "
				       "rekeyfs-rekey (version 1)",
				       path, &in);
		else
			*why = xasprintf("intent record outside the backing "
					 "root: ignored and removed");
		rkfs_intent_free(&in);
	} else {
		*why = xasprintf("intent record not written by rekeyfs-rekey "
				 "outside the backing root: ignored and "
				 "removed");
	}
	free(text);
	close(fd);
	(void)c;
	return ours_v1;
}

static bool kept(const struct ctx *c, const char *path)
{
	for (size_t i = 0; i < c->keep.count; i++)
		if (strcmp(c->keep.v[i].path, path) == 0)
			return true;
	return false;
}

/*
 * A reserved name met by the first walk of a run that holds the tree
 * lock: a temp file or record left by a crashed run is removed, unless a
 * record that could not be replayed still needs it.  Temps of this
 * process (its workers run meanwhile) and the records in the root (dealt
 * with before the walk, by replay_intents()) are left alone.  Everything
 * else with RKFS_TMP_PREFIX is a crashed run's: the tree lock excludes
 * any other run.
 */
static int on_reserved(void *arg, const struct rkfs_walk_dir *d,
		       const char *name)
{
	struct ctx *c = ((struct pass *)arg)->c;
	size_t len = strlen(name), sl = strlen(RKFS_INTENT_SUFFIX), off;
	bool intent, keep;
	char *path, *why = NULL;

	if (strncmp(name, RKFS_TMP_PREFIX, strlen(RKFS_TMP_PREFIX)) != 0 ||
	    temp_is_mine(name))
		return 0;
	intent = len > sl && strcmp(name + len - sl, RKFS_INTENT_SUFFIX) == 0;
	if (intent && *d->path == '\0')
		return 0;
	path = join(d->path, name, &off);
	if (path == NULL)
		return -ENOMEM;
	if (intent) {
		keep = legacy_record(c, d->fd, path, off, &why);
	} else {
		/* the data temp of a kept record, here or beside it */
		char *rec = xasprintf("%s" RKFS_INTENT_SUFFIX, path);
		struct stat st;

		keep = kept(c, path);
		if (!keep && rec &&
		    fstatat(d->fd, rec + off, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			keep = legacy_record(c, d->fd, rec, off, &why);
			free(why);
			why = NULL;
		}
		free(rec);
	}
	pthread_mutex_lock(&c->mu);
	if (intent && why)
		(void)list_add(keep ? &c->rep->failed : &c->rep->skipped, path,
			       why);
	pthread_mutex_unlock(&c->mu);
	if (!keep && unlinkat(d->fd, name, 0) == 0) {
		(void)fsync_fd_dir(d->fd);
		pthread_mutex_lock(&c->mu);
		c->rep->temps_removed++;
		pthread_mutex_unlock(&c->mu);
	}
	free(why);
	free(path);
	return 0;
}

/* Names of the intent records in the root directory. */
static int list_intents(int rootfd, char ***names, size_t *n)
{
	size_t pl = strlen(RKFS_TMP_PREFIX), sl = strlen(RKFS_INTENT_SUFFIX);
	struct dirent *de;
	size_t cap = 0;
	int fd, ret = 0;
	DIR *d;

	*names = NULL;
	*n = 0;
	fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len <= pl + sl ||
		    strncmp(de->d_name, RKFS_TMP_PREFIX, pl) != 0 ||
		    strcmp(de->d_name + len - sl, RKFS_INTENT_SUFFIX) != 0)
			continue;
		if (*n == cap) {
			char **v;

			cap = cap ? cap * 2 : 4;
			v = realloc(*names, cap * sizeof(*v));
			if (v == NULL) {
				ret = -ENOMEM;
				break;
			}
			*names = v;
		}
		(*names)[*n] = strdup(de->d_name);
		if ((*names)[*n] == NULL) {
			ret = -ENOMEM;
			break;
		}
		(*n)++;
	}
	closedir(d);
	return ret;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/*
 * Before the first walk of a run that holds the tree lock: finish the
 * interrupted in-place rewrites their records (in the root) describe.  A
 * record that cannot be replayed is kept, with its data temp, and its
 * target is not rewritten in this run; every other record is removed
 * here, and its data temp by the walk like any stray temp.
 */
static int replay_intents(struct ctx *c)
{
	double wait = c->o->wait > 10 ? c->o->wait : 10;
	char **names = NULL;
	size_t n = 0;
	int ret;

	ret = list_intents(c->rootfd, &names, &n);
	for (size_t i = 0; i < n && ret == 0; i++) {
		struct rkfs_intent in;
		char *why = NULL;
		enum replay r;

		r = replay_record(c, names[i], false, wait, &in, &why);
		if (r == RP_DONE)
			c->rep->resumed++;
		if (r == RP_FOREIGN && why)
			ret = list_add(&c->rep->skipped, names[i], why);
		if (r == RP_BUSY || r == RP_REFUSED || r == RP_FAILED) {
			ret = list_add(&c->keep, names[i], NULL);
			if (ret == 0 && in.temp)
				ret = list_add(&c->keep, in.temp, NULL);
			if (ret == 0 && in.ino)
				ret = rkfs_inoset_add(&c->done, (dev_t)in.dev,
						      (ino_t)in.ino);
			if (ret >= 0)
				ret = list_add(
				    &c->rep->failed, names[i],
				    r == RP_BUSY
					? "interrupted rewrite cannot be "
					  "finished: the file is open in a "
					  "mount"
				    : why ? why
					  : "interrupted rewrite cannot be "
					    "finished");
		} else if (unlinkat(c->rootfd, names[i], 0) == 0) {
			c->rep->temps_removed++;
			(void)fsync_fd_dir(c->rootfd);
		}
		free(why);
		rkfs_intent_free(&in);
	}
	free_names(names, n);
	return ret < 0 ? ret : 0;
}

/* Remove a handled intent record, then its data temp. */
static void drop_intent(struct ctx *c, const char *iname,
			const struct rkfs_intent *in)
{
	int dfd;

	if (unlinkat(c->rootfd, iname, 0) < 0)
		return;
	(void)fsync_fd_dir(c->rootfd);
	if (in->temp == NULL)
		return;
	dfd = open_dir_beneath(c->rootfd, in->temp);
	if (dfd < 0)
		return;
	if (unlinkat(dfd, last_part(in->temp), 0) == 0)
		(void)fsync_fd_dir(dfd);
	close(dfd);
}

int rkfs_rekey_recover(int rootfd, const char *root,
		       const struct rkfs_keyring *kr, unsigned flags,
		       unsigned *replayed, struct rkfs_error *err)
{
	static const struct rkfs_rekey_opts ropts = {.mode = RKFS_REKEY_VERIFY};
	struct rkfs_rekey_report rep;
	struct ctx c = {.root = root, .kr = kr, .o = &ropts, .rep = &rep,
			.mu = PTHREAD_MUTEX_INITIALIZER,
			.rate_mu = PTHREAD_MUTEX_INITIALIZER};
	char **names = NULL;
	size_t n = 0;
	struct stat st;
	int lockfd = -1, ret;

	memset(&rep, 0, sizeof(rep));
	if (replayed)
		*replayed = 0;
	/* the common case, nothing to do: one listing of the root */
	ret = list_intents(rootfd, &names, &n);
	if (ret < 0)
		return rkfs_error_set(err, ret, "%s: cannot list: %s", root,
				      strerror(-ret));
	if (n == 0)
		return 0;
	free_names(names, n);
	names = NULL;
	n = 0;
	c.rootfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0 || fstat(c.rootfd, &st) < 0) {
		ret = rkfs_error_set(err, -errno, "%s: %s", root,
				     strerror(errno));
		goto out;
	}
	c.rootdev = st.st_dev;
	lockfd = openat(c.rootfd, RKFS_LOCK_NAME,
			O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lockfd < 0) {
		ret = rkfs_error_set(err, -errno, "%s/%s: cannot open: %s",
				     root, RKFS_LOCK_NAME, strerror(errno));
		goto out;
	}
	if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		/* a rekey run holds it: it replays the records itself */
		ret = errno == EWOULDBLOCK
			  ? 0
			  : rkfs_error_set(err, -errno, "%s/%s: flock: %s",
					   root, RKFS_LOCK_NAME,
					   strerror(errno));
		goto out;
	}
	/* again under the lock: a run may have finished meanwhile */
	ret = list_intents(c.rootfd, &names, &n);
	if (ret < 0) {
		rkfs_error_set(err, ret, "%s: cannot list: %s", root,
			       strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct rkfs_intent in;
		char *why = NULL;
		enum replay r;

		r = replay_record(&c, names[i],
				  flags & RKFS_REKEY_RECOVER_IN_MOUNT, 0, &in,
				  &why);
		if (r == RP_DONE && replayed)
			(*replayed)++;
		if (r == RP_DONE || r == RP_NOTHING)
			drop_intent(&c, names[i], &in);
		else if (r != RP_BUSY && ret == 0)
			/* foreign records stay for the tool to remove */
			ret = rkfs_error_set(
			    err, r == RP_FAILED ? -EIO : -EPERM,
			    "%s/%s: %s", root, names[i],
			    why ? why
				: "cannot finish the interrupted rewrite");
		free(why);
		rkfs_intent_free(&in);
	}
out:
	free_names(names, n);
	if (lockfd >= 0)
		close(lockfd);
	rkfs_inoset_free(&c.done);
	rkfs_rekey_report_free(&rep);
	if (c.rootfd >= 0)
		close(c.rootfd);
	return ret;
}

/* --- passes ----------------------------------------------------------- */

/*
 * One walk of the tree: counts what it finds and, when it works, hands
 * the files that need work to the workers as it goes.  Nothing is kept of
 * a file that needs none.
 *
 * Renames into a directory while it is being listed.  The workers rename
 * a temp over a name the walk has already listed (they only get what the
 * walk found), so a listing in progress sees that name's directory entry
 * change its inode.  On ext4 and XFS the entry keeps its place in the
 * listing (hash or offset order), so it is not listed again; where a
 * filesystem does list it again (it gives the renamed name a new place,
 * as btrfs before 6.5 does), it comes with the new inode, which is on the
 * primary: it is counted but never queued again, so no file is rewritten
 * twice.  Queued twice anyway (a listing that repeats an entry for
 * another reason), the second rewrite finds the inode changed and skips
 * it.  Renames by the workers never move other entries, so they make no
 * file be missed; files that users rename during the run may be, and the
 * walks after the first (up to MAX_PASSES) pick them up under their new
 * names.  The temps themselves are reserved names: never files to the
 * walk.
 */

static bool needs_work(const struct ctx *c, const struct item *it)
{
	switch (c->o->mode) {
	case RKFS_REKEY_VERIFY:
		return it->hdr != H_NONE;
	case RKFS_REKEY_REWRITE:
		return it->hdr == H_BAD ||
		       (it->hdr == H_OK && it->gen != c->kr->primary);
	default:
		return false;
	}
}

/* STATUS and DRY_RUN: the lists and counts of one file.  Under c->mu. */
static int look_at(struct ctx *c, const struct item *it,
		   const struct rkfs_walk_dir *d, const char *name)
{
	const struct rkfs_rekey_opts *o = c->o;
	const struct rkfs_keyring *kr = c->kr;
	struct rkfs_rekey_report *rep = c->rep;
	char *path, *why = NULL;
	size_t off;
	int e, ret = 0;

	if (o->mode == RKFS_REKEY_DRY_RUN &&
	    (it->hdr == H_NONE || (it->hdr == H_OK && it->gen == kr->primary)))
		rep->current++;
	if (!(o->mode == RKFS_REKEY_STATUS && o->list &&
	      ((it->hdr == H_OK && it->gen == o->list_generation) ||
	       (it->hdr == H_NONE && o->list_generation == 0))) &&
	    !(o->mode == RKFS_REKEY_DRY_RUN &&
	      (it->hdr == H_BAD ||
	       (it->hdr == H_OK && it->gen != kr->primary))))
		return 0;
	path = join(d->path, name, &off);
	if (path == NULL)
		return -ENOMEM;
	if (o->mode == RKFS_REKEY_STATUS) {
		ret = list_add(&rep->listed, path, NULL);
	} else if (it->hdr == H_BAD) {
		ret = list_add(&rep->failed, path,
			       "corrupt: impossible size or bad header");
	} else if (rkfs_keyring_find(kr, it->gen) == NULL ||
		   (rkfs_keyring_key(kr, it->gen, &e) == NULL &&
		    rkfs_keyring_find(kr, it->gen)->state !=
			RKFS_GEN_ENABLED)) {
		why = key_reason(c, it->gen, -ENOKEY);
		ret = list_add(&rep->failed, path, why);
	} else {
		why = xasprintf("generation %u -> %u", it->gen, kr->primary);
		ret = list_add(&rep->listed, path, why);
		rep->would_rewrite++;
	}
	free(why);
	free(path);
	return ret;
}

static int on_files(void *arg, const struct rkfs_walk_dir *d,
		    struct rkfs_walk_file *v, size_t n)
{
	struct pass *p = arg;
	struct ctx *c = p->c;
	struct item **todo = NULL, it;
	size_t nt = 0;
	int ret = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < n && ret == 0; i++) {
		struct item *w;

		memset(&it, 0, sizeof(it));
		classify(&it, &v[i]);
		p->files++;
		if (it.hdr == H_BAD)
			p->bad++;
		else
			ret = gens_add(&p->gens, &p->ngens,
				       it.hdr == H_OK ? it.gen : 0, 1, it.plain);
		if (it.hdr == H_BAD ||
		    (c->kr && it.hdr == H_OK && it.gen != c->kr->primary))
			p->remaining++;
		if (ret == 0 && (c->o->mode == RKFS_REKEY_STATUS ||
				 c->o->mode == RKFS_REKEY_DRY_RUN))
			ret = look_at(c, &it, d, v[i].name);
		if (ret < 0 || p->q == NULL ||
		    rkfs_inoset_has(&c->done, it.dev, it.ino))
			continue;
		if (!needs_work(c, &it)) {
			if (c->o->mode == RKFS_REKEY_REWRITE && p->no == 0)
				c->rep->current++;
			continue;
		}
		/* stopped: still counted, no longer queued */
		if (stopping(c))
			continue;
		w = malloc(sizeof(*w));
		if (w)
			*w = it;
		if (w == NULL ||
		    (w->path = join(d->path, v[i].name, &w->base_off)) ==
			NULL) {
			free(w);
			ret = -ENOMEM;
			break;
		}
		/* busy until --wait ran out: not again in this run */
		if (p->no > 0 && in_busy(c->rep, w->path)) {
			free_item(w);
			continue;
		}
		if (todo == NULL) {
			todo = malloc(n * sizeof(*todo));
			if (todo == NULL) {
				free_item(w);
				ret = -ENOMEM;
				break;
			}
		}
		todo[nt++] = w;
	}
	p->queued += nt;
	pthread_mutex_unlock(&c->mu);
	/* outside c->mu: the workers need it to record results */
	if (nt && ret == 0)
		ret = queue_items(p->q, todo, nt);
	else
		for (size_t i = 0; i < nt; i++)
			free_item(todo[i]);
	free(todo);
	return ret;
}

/*
 * One walk; with work, the workers run alongside and busy files are
 * retried after it.  Counts land in p.
 */
static int run_pass(struct ctx *c, struct pass *p, bool work, bool clean)
{
	struct rkfs_rekey_progress *pr = c->o->progress;
	struct rkfs_walk_ops o = {
	    .files = on_files,
	    .reserved = clean ? on_reserved : NULL,
	    .hdr_len = RKFS_HEADER_LEN,
	};
	struct workq q;
	int ret, e;

	p->c = c;
	o.arg = p;
	if (work) {
		pool_start(&q, c);
		p->q = &q;
		if (pr) {
			pr->walking = 1;
			pr->phase = 1;
		}
	}
	ret = rkfs_walk(c->rootfd, &o);
	if (work) {
		pool_finish(&q);
		p->q = NULL;
		e = retry_busy(c);
		if (ret == 0)
			ret = e;
		if (pr)
			pr->walking = 0;
	}
	if (ret == 0)
		ret = c->err;
	return ret;
}

static void pass_free(struct pass *p)
{
	free(p->gens);
	p->gens = NULL;
	p->ngens = 0;
}

/* --- entry point ------------------------------------------------------ */

static int take_lock(struct ctx *c, int *lockfd, struct rkfs_error *err)
{
	int fd = openat(c->rootfd, RKFS_LOCK_NAME,
			O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return rkfs_error_set(err, -errno, "%s/%s: cannot open: %s",
				      c->root, RKFS_LOCK_NAME, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			return rkfs_error_set(
			    err, -EWOULDBLOCK,
			    "%s: another rekeyfs-rekey is running on this "
			    "tree (%s is locked); wait for it to finish",
			    c->root, RKFS_LOCK_NAME);
		return rkfs_error_set(err, -e, "%s/%s: flock: %s", c->root,
				      RKFS_LOCK_NAME, strerror(e));
	}
	*lockfd = fd;
	return 0;
}

static int check_keyring(struct ctx *c, struct rkfs_meta **m,
			 struct rkfs_error *err)
{
	const unsigned char *gk;
	int e, ret;

	if (c->kr == NULL) {
		if (c->o->mode != RKFS_REKEY_STATUS)
			return rkfs_error_set(err, -EINVAL,
					      "a keyring is required");
		ret = rkfs_meta_load(m, c->rootfd, err);
		if (ret == -ENOENT)
			return rkfs_error_set(err, ret,
					      "%s: not a rekeyfs backing "
					      "directory (no %s)",
					      c->root, RKFS_META_NAME);
		return ret;
	}
	ret = rkfs_meta_open(m, c->rootfd, c->root, c->kr, 0, err);
	if (ret < 0)
		return ret;
	if (c->o->mode == RKFS_REKEY_REWRITE) {
		if (c->kr->primary == 0)
			return rkfs_error_set(err, -ENOKEY,
					      "%s: the keyring has no primary "
					      "generation",
					      c->kr->path ? c->kr->path
							  : "keyring");
		gk = rkfs_keyring_key(c->kr, c->kr->primary, &e);
		if (gk == NULL)
			return rkfs_error_set(
			    err, e,
			    "%s: primary generation %u has no "
			    "usable key",
			    c->kr->path ? c->kr->path : "keyring",
			    c->kr->primary);
	}
	return 0;
}

int rkfs_rekey_run(struct rkfs_rekey_report *rep, const char *root,
		   const struct rkfs_keyring *kr,
		   const struct rkfs_rekey_opts *opts, struct rkfs_error *err)
{
	struct ctx c = {.root = root, .kr = kr, .o = opts, .rep = rep,
			.mu = PTHREAD_MUTEX_INITIALIZER,
			.rate_mu = PTHREAD_MUTEX_INITIALIZER};
	bool work = opts->mode == RKFS_REKEY_REWRITE ||
		    opts->mode == RKFS_REKEY_VERIFY;
	struct rkfs_meta *m = NULL;
	struct pass p = {0};
	struct stat st;
	double t0 = now_sec();
	int lockfd = -1, ret;

	memset(rep, 0, sizeof(*rep));
	rep->mode = opts->mode;
	rep->target = kr ? kr->primary : 0;
	c.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0)
		return rkfs_error_set(err, -errno, "%s: %s", root,
				      strerror(errno));
	if (fstat(c.rootfd, &st) < 0) {
		ret = rkfs_error_set(err, -errno, "%s: %s", root,
				     strerror(errno));
		goto out;
	}
	c.rootdev = st.st_dev;
	c.batch_cap = batch_files(&c);
	ret = check_keyring(&c, &m, err);
	if (ret < 0)
		goto out;
	if (work) {
		ret = take_lock(&c, &lockfd, err);
		if (ret < 0)
			goto out;
		if (opts->mode == RKFS_REKEY_REWRITE) {
			ret = rkfs_meta_record(m, c.rootfd, kr, kr->primary,
					       root, err);
			if (ret < 0)
				goto out;
		}
		/* records first: they own their data temp until replayed */
		ret = replay_intents(&c);
		if (ret < 0) {
			rkfs_error_set(err, ret, "%s: %s", root,
				       strerror(-ret));
			goto out;
		}
	}
	c.deadline = now_sec() + (opts->wait > 0 ? opts->wait : 0);
	/* the first walk: the "before" counts, and the work */
	ret = run_pass(&c, &p, work, lockfd >= 0);
	if (ret < 0)
		goto fail;
	rep->files = p.files;
	rep->bad_headers = p.bad;
	rep->before = p.gens;
	rep->nbefore = p.ngens;
	p.gens = NULL;
	if (opts->mode == RKFS_REKEY_STATUS || opts->mode == RKFS_REKEY_DRY_RUN)
		rep->remaining = p.remaining;
	/*
	 * REWRITE: walks that find files renamed mid-run under their new
	 * names and rewrite them too, until one finds nothing to do; the
	 * last walk's counts are the "after" counts.
	 */
	for (int no = 1; opts->mode == RKFS_REKEY_REWRITE; no++) {
		bool again = no < MAX_PASSES && !stopping(&c);

		memset(&p, 0, sizeof(p));
		p.no = no;
		ret = run_pass(&c, &p, again, false);
		if (ret < 0)
			goto fail;
		if (!again || p.queued == 0) {
			rep->after = p.gens;
			rep->nafter = p.ngens;
			rep->remaining = p.remaining;
			p.gens = NULL;
			break;
		}
		pass_free(&p);
	}
fail:
	if (ret < 0)
		rkfs_error_set(err, ret, "%s: scan: %s", root, strerror(-ret));
	rep->interrupted = stopping(&c);
out:
	closer_drain();
	if (opts->progress)
		opts->progress->phase = 2;
	rep->elapsed = now_sec() - t0;
	pass_free(&p);
	for (size_t i = 0; i < c.nretry; i++)
		free_item(c.retry[i]);
	free(c.retry);
	list_free(&c.keep);
	rkfs_inoset_free(&c.done);
	rkfs_meta_free(m);
	if (lockfd >= 0)
		close(lockfd);
	close(c.rootfd);
	return ret;
}
