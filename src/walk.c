/*
 * The parallel, streaming walk of a backing tree (see walk_i.h for what
 * it guarantees): directory readers, a pool of threads that open files and
 * read their headers, and bounded queues between them.
 */
#include "walk_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rekeyfs/fsio.h"

#define DENTS_BUF (256u << 10) /* one getdents64 call, the top reader */
#define DENTS_BUF_DEEP (32u << 10) /* a reader that descends itself */
#define WALK_THREADS 16	       /* opens and reads in flight at once */
#define WALK_GROUP 64	       /* files a task, a callback (default) */
#define WALK_GROUP_MAX 128
#define MAX_QUEUED_FILES 2048  /* listed, not yet opened */
#define MAX_QUEUED_TASKS 32    /* each holds its directory open */
#define MAX_QUEUED_DIRS 128    /* beyond: the reader descends itself */

/* --- (dev, ino) set --------------------------------------------------- */

static uint64_t ino_hash(uint64_t dev, uint64_t ino)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull ^ dev * 0xc2b2ae3d27d4eb4full;

	return h ^ (h >> 29);
}

bool rkfs_inoset_has(const struct rkfs_inoset *s, dev_t dev, ino_t ino)
{
	size_t i;

	if (s->cap == 0)
		return false;
	for (i = ino_hash(dev, ino) & (s->cap - 1);;
	     i = (i + 1) & (s->cap - 1)) {
		const uint64_t *k = s->keys + 2 * i;

		if (k[0] == 0 && k[1] == 0)
			return false;
		if (k[0] == (uint64_t)dev + 1 && k[1] == (uint64_t)ino)
			return true;
	}
}

int rkfs_inoset_add(struct rkfs_inoset *s, dev_t dev, ino_t ino)
{
	size_t i;

	if (rkfs_inoset_has(s, dev, ino))
		return 0;
	if ((s->n + 1) * 2 > s->cap) {
		struct rkfs_inoset g = {.cap = s->cap ? s->cap * 2 : 64};

		g.keys = calloc(g.cap, 2 * sizeof(uint64_t));
		if (g.keys == NULL)
			return -ENOMEM;
		for (i = 0; i < s->cap; i++) {
			uint64_t *k = s->keys + 2 * i;

			if (k[0] || k[1])
				(void)rkfs_inoset_add(&g, (dev_t)(k[0] - 1),
						      (ino_t)k[1]);
		}
		free(s->keys);
		*s = g;
	}
	for (i = ino_hash(dev, ino) & (s->cap - 1);;
	     i = (i + 1) & (s->cap - 1)) {
		uint64_t *k = s->keys + 2 * i;

		if (k[0] == 0 && k[1] == 0) {
			k[0] = (uint64_t)dev + 1;
			k[1] = (uint64_t)ino;
			s->n++;
			return 1;
		}
	}
}

void rkfs_inoset_free(struct rkfs_inoset *s)
{
	free(s->keys);
	memset(s, 0, sizeof(*s));
}

/* --- the walk --------------------------------------------------------- */

/* A directory shared by its reader, its file tasks and its subdirs. */
struct wdir {
	struct rkfs_walk_dir pub;
	char *path;
	int refs;
};

/* Files of one directory to open and read, names packed after v. */
struct ftask {
	struct ftask *next;
	struct wdir *dir;
	size_t n;
	struct fent {
		uint64_t ino;
		const char *name;
	} v[];
};

/* A subdirectory to read. */
struct dtask {
	struct dtask *next;
	struct wdir *parent;
	char name[];
};

struct walk {
	const struct rkfs_walk_ops *o;
	dev_t rootdev;
	size_t group;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ftask *fhead, *ftail;
	size_t nfiles, ntasks; /* queued */
	struct dtask *dirs;    /* a stack: depth first keeps few dirs open */
	size_t ndirs;
	unsigned running; /* threads inside a task */
	int err;
	pthread_mutex_t links_mu;
	struct rkfs_inoset links;
};

static bool walk_over(struct walk *w)
{
	return __atomic_load_n(&w->err, __ATOMIC_RELAXED) != 0 ||
	       (w->o->stop && *w->o->stop);
}

static void walk_fail(struct walk *w, int err)
{
	int zero = 0;

	(void)__atomic_compare_exchange_n(&w->err, &zero, err, false,
					  __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static void dir_put(struct wdir *d)
{
	if (__atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	close(d->pub.fd);
	free(d->path);
	free(d);
}

static void dir_get(struct wdir *d)
{
	__atomic_add_fetch(&d->refs, 1, __ATOMIC_RELAXED);
}

/* Errors that mean "this entry is not (or no longer) there to read". */
static bool vanished(int e)
{
	return e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENXIO ||
	       e == EACCES || e == EPERM || e == ESTALE;
}

static int open_file(int dfd, const char *name)
{
	/* O_NOATIME: the walk must not change the times the rekey keeps */
	int fl = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	int fd = openat(dfd, name, fl | O_NOATIME);

	if (fd < 0 && errno == EPERM)
		fd = openat(dfd, name, fl);
	return fd < 0 ? -errno : fd;
}

/* Open and read the files of one task; hand the regular ones on. */
static void run_files(struct walk *w, struct ftask *t)
{
	struct rkfs_walk_file v[WALK_GROUP_MAX];
	int dfd = t->dir->pub.fd;
	size_t k = 0;
	int ret = 0;

	for (size_t i = 0; i < t->n && !walk_over(w); i++) {
		struct rkfs_walk_file *f = &v[k];
		int fd = open_file(dfd, t->v[i].name);
		struct stat st;

		f->name = t->v[i].name;
		f->nhdr = 0;
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM) {
			walk_fail(w, fd);
			break;
		}
		if (fd < 0) {
			/*
			 * Gone, now a symlink or a socket: skipped.  Anything
			 * else (EIO, ...) is reported as a file that cannot be
			 * read, if it still is a regular file.
			 */
			if (fd == -ENOENT || fd == -ELOOP || fd == -ENXIO ||
			    fstatat(dfd, f->name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			f->nhdr = fd;
		} else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(fd); /* a fifo or device by now: not ours */
			continue;
		}
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->size = st.st_size;
		f->nlink = st.st_nlink;
		if (f->nlink > 1) {
			pthread_mutex_lock(&w->links_mu);
			ret = rkfs_inoset_add(&w->links, f->dev, f->ino);
			pthread_mutex_unlock(&w->links_mu);
			if (ret <= 0) {
				if (fd >= 0)
					close(fd);
				if (ret < 0) {
					walk_fail(w, ret);
					break;
				}
				continue; /* another name of a file reported */
			}
		}
		if (fd >= 0 && f->size > 0 && w->o->hdr_len) {
			ssize_t got = rkfs_pread_full(fd, f->hdr,
						      w->o->hdr_len, 0);

			f->nhdr = (int)got;
		}
		if (fd >= 0)
			close(fd);
		k++;
	}
	if (k && !walk_over(w)) {
		ret = w->o->files(w->o->arg, &t->dir->pub, v, k);
		if (ret < 0)
			walk_fail(w, ret);
	}
	dir_put(t->dir);
	free(t);
}

/* Take the oldest file task off the queue (w->mu held, queue not empty). */
static struct ftask *pop_files(struct walk *w)
{
	struct ftask *t = w->fhead;

	w->fhead = t->next;
	if (w->fhead == NULL)
		w->ftail = NULL;
	w->nfiles -= t->n;
	w->ntasks--;
	return t;
}

/* Queue a file task; a reader ahead of the openers helps them instead. */
static void push_files(struct walk *w, struct ftask *t)
{
	pthread_mutex_lock(&w->mu);
	if (w->ftail)
		w->ftail->next = t;
	else
		w->fhead = t;
	w->ftail = t;
	w->nfiles += t->n;
	w->ntasks++;
	pthread_cond_signal(&w->cv);
	while ((w->nfiles > MAX_QUEUED_FILES ||
		w->ntasks > MAX_QUEUED_TASKS) &&
	       w->fhead) {
		struct ftask *h = pop_files(w);

		pthread_mutex_unlock(&w->mu);
		run_files(w, h);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
}

/* An entry of one listing: into the getdents buffer, until queued. */
struct fref {
	uint64_t ino;
	const char *name;
};

static int cmp_ino(const void *a, const void *b)
{
	const struct fref *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Copy files [0, n) of one listing into tasks, in inode order. */
static int queue_files(struct walk *w, struct wdir *d, struct fref *f,
		       size_t n)
{
	qsort(f, n, sizeof(*f), cmp_ino);
	for (size_t i = 0; i < n;) {
		size_t m = n - i < w->group ? n - i : w->group, bytes = 0;
		struct ftask *t;
		char *p;

		for (size_t j = 0; j < m; j++)
			bytes += strlen(f[i + j].name) + 1;
		t = malloc(sizeof(*t) + m * sizeof(t->v[0]) + bytes);
		if (t == NULL)
			return -ENOMEM;
		t->next = NULL;
		t->n = m;
		t->dir = d;
		dir_get(d);
		p = (char *)&t->v[m];
		for (size_t j = 0; j < m; j++, i++) {
			size_t len = strlen(f[i].name) + 1;

			memcpy(p, f[i].name, len);
			t->v[j].ino = f[i].ino;
			t->v[j].name = p;
			p += len;
		}
		push_files(w, t);
	}
	return 0;
}

static void read_dir(struct walk *w, struct wdir *d, int depth);

/*
 * Enter parent/name if it is a directory on the root's filesystem.  The
 * caller's reference to parent is kept.
 */
static void enter_dir(struct walk *w, struct wdir *parent, const char *name,
		      int depth)
{
	struct wdir *d;
	struct stat st;
	int fd;

	fd = openat(parent->pub.fd, name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (!vanished(errno))
			walk_fail(w, -errno);
		return;
	}
	if (fstat(fd, &st) < 0 || st.st_dev != w->rootdev) {
		close(fd); /* another mount: not ours */
		return;
	}
	d = calloc(1, sizeof(*d));
	if (d)
		d->path = *parent->path
			      ? malloc(strlen(parent->path) + strlen(name) + 2)
			      : strdup(name);
	if (d == NULL || d->path == NULL) {
		if (d)
			free(d);
		close(fd);
		walk_fail(w, -ENOMEM);
		return;
	}
	if (*parent->path)
		strcat(strcat(strcpy(d->path, parent->path), "/"), name);
	d->pub.path = d->path;
	d->pub.fd = fd;
	d->refs = 1;
	read_dir(w, d, depth);
	dir_put(d);
}

static int queue_dir(struct walk *w, struct wdir *parent, const char *name,
		     int depth)
{
	size_t len = strlen(name);
	struct dtask *t;

	pthread_mutex_lock(&w->mu);
	if (w->ndirs >= MAX_QUEUED_DIRS) {
		pthread_mutex_unlock(&w->mu);
		enter_dir(w, parent, name, depth + 1);
		return 0;
	}
	pthread_mutex_unlock(&w->mu);
	t = malloc(sizeof(*t) + len + 1);
	if (t == NULL)
		return -ENOMEM;
	memcpy(t->name, name, len + 1);
	t->parent = parent;
	dir_get(parent);
	pthread_mutex_lock(&w->mu);
	t->next = w->dirs;
	w->dirs = t;
	w->ndirs++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

/*
 * List one directory batch by batch.  Only one batch of names is held at
 * a time: regular files go to tasks (copied), subdirectories to the
 * stack (or are read right here when it is full), reserved names to the
 * callback.
 */
static void read_dir(struct walk *w, struct wdir *d, int depth)
{
	size_t size = depth ? DENTS_BUF_DEEP : DENTS_BUF;
	size_t maxf = size / 24 + 1; /* the smallest dirent64 */
	size_t total = size + maxf * sizeof(struct fref);
	/*
	 * mmap()ed, not malloc()ed: freed, malloc would keep the space in
	 * its heap, and the peak memory would follow how many directories
	 * happened to be read at once.  Files fill f from the front,
	 * subdirectories from the back.
	 */
	char *buf = mmap(NULL, total, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fref *f = (struct fref *)(buf + size), *sub = f + maxf;
	int ret = 0;

	if (buf == MAP_FAILED) {
		walk_fail(w, -ENOMEM);
		return;
	}
	while (ret == 0 && !walk_over(w)) {
		long got = syscall(SYS_getdents64, d->pub.fd, buf, size);
		size_t nf = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			/* the directory was removed while being read */
			if (errno != ENOENT)
				ret = -errno;
			break;
		}
		if (got == 0)
			break;
		for (long off = 0; off < got && ret == 0;) {
			struct dirent64 *de = (struct dirent64 *)(buf + off);
			const char *name = de->d_name;
			unsigned char type = de->d_type;
			struct stat st;

			off += de->d_reclen;
			if (name[0] == '.' &&
			    (name[1] == '\0' ||
			     (name[1] == '.' && name[2] == '\0')))
				continue;
			if (rkfs_name_reserved(name)) {
				if (w->o->reserved)
					ret = w->o->reserved(w->o->arg, &d->pub,
							     name);
				continue;
			}
			if (w->o->ignore_dtype)
				type = DT_UNKNOWN;
			if (type == DT_UNKNOWN) {
				if (fstatat(d->pub.fd, name, &st,
					    AT_SYMLINK_NOFOLLOW) < 0)
					continue; /* gone since the listing */
				type = S_ISDIR(st.st_mode)   ? DT_DIR
				       : S_ISREG(st.st_mode) ? DT_REG
							     : DT_LNK;
			}
			if (type == DT_REG)
				f[nf++] = (struct fref){de->d_ino, name};
			else if (type == DT_DIR)
				*--sub = (struct fref){de->d_ino, name};
			/* symlinks, fifos, sockets, devices: left alone */
		}
		if (ret == 0)
			ret = queue_files(w, d, f, nf);
		for (; sub < f + maxf && ret == 0 && !walk_over(w); sub++)
			ret = queue_dir(w, d, sub->name, depth);
		sub = f + maxf;
	}
	if (ret < 0)
		walk_fail(w, ret);
	munmap(buf, total);
}

static void *walk_thread(void *arg)
{
	struct walk *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		if (walk_over(w))
			break;
		if (w->fhead) {
			struct ftask *t = pop_files(w);

			w->running++;
			pthread_mutex_unlock(&w->mu);
			run_files(w, t);
			pthread_mutex_lock(&w->mu);
			w->running--;
		} else if (w->dirs) {
			struct dtask *t = w->dirs;

			w->dirs = t->next;
			w->ndirs--;
			w->running++;
			pthread_mutex_unlock(&w->mu);
			enter_dir(w, t->parent, t->name, 0);
			dir_put(t->parent);
			free(t);
			pthread_mutex_lock(&w->mu);
			w->running--;
		} else if (w->running == 0) {
			break; /* nothing queued, nobody to queue more */
		} else {
			pthread_cond_wait(&w->cv, &w->mu);
		}
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* After an early end: drop what is still queued. */
static void drain(struct walk *w)
{
	while (w->fhead) {
		struct ftask *t = w->fhead;

		w->fhead = t->next;
		dir_put(t->dir);
		free(t);
	}
	while (w->dirs) {
		struct dtask *t = w->dirs;

		w->dirs = t->next;
		dir_put(t->parent);
		free(t);
	}
}

int rkfs_walk(int rootfd, const struct rkfs_walk_ops *o)
{
	struct walk w = {.o = o,
			 .group = o->group && o->group < WALK_GROUP_MAX
				      ? o->group
				      : o->group ? WALK_GROUP_MAX : WALK_GROUP,
			 .mu = PTHREAD_MUTEX_INITIALIZER,
			 .cv = PTHREAD_COND_INITIALIZER,
			 .links_mu = PTHREAD_MUTEX_INITIALIZER};
	unsigned n = o->threads ? o->threads : WALK_THREADS, started = 0;
	pthread_t *th = NULL;
	struct wdir *root;
	struct stat st;
	int fd;

	if (o->hdr_len > RKFS_WALK_HDR_MAX)
		return -EINVAL;
	fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	w.rootdev = st.st_dev;
	root = calloc(1, sizeof(*root));
	if (root == NULL || (root->path = strdup("")) == NULL) {
		free(root);
		close(fd);
		return -ENOMEM;
	}
	root->pub.path = root->path;
	root->pub.fd = fd;
	root->refs = 1;
	/*
	 * The root is read here, counted as running from the start so that
	 * no thread sees an empty queue and quits before it fills.
	 */
	w.running = 1;
	th = calloc(n, sizeof(*th));
	if (th)
		for (; started < n; started++)
			if (pthread_create(&th[started], NULL, walk_thread,
					   &w) != 0)
				break;
	read_dir(&w, root, 0);
	dir_put(root);
	pthread_mutex_lock(&w.mu);
	w.running--;
	pthread_cond_broadcast(&w.cv);
	pthread_mutex_unlock(&w.mu);
	if (started == 0)
		walk_thread(&w); /* no threads: do it all here */
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	drain(&w);
	rkfs_inoset_free(&w.links);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.links_mu);
	return w.err;
}
