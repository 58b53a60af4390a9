/*
 * The sealer: a few helper threads that large writes hand half of their
 * sealing and writing to (see write_range() in file.c).  Each helper
 * serves one writer at a time; a writer that finds none idle runs alone.
 */
#include "file_i.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

struct rkfs_helper {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool busy;   /* claimed by a writer; atomic */
	bool posted; /* fn is to run */
	bool done;   /* fn ran, ret holds its result */
	bool quit;
	int (*fn)(void *);
	void *arg;
	int ret;
	unsigned long runs; /* functions run, for the tests */
};

struct rkfs_sealer {
	unsigned n; /* helpers started */
	struct rkfs_helper h[];
};

static void *helper_main(void *p)
{
	struct rkfs_helper *h = p;
	int r;

	(void)pthread_setname_np(pthread_self(), "rekeyfs-sealer");
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->posted && !h->quit)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->quit)
			break;
		h->posted = false;
		pthread_mutex_unlock(&h->mu);
		r = h->fn(h->arg);
		pthread_mutex_lock(&h->mu);
		h->ret = r;
		h->runs++;
		h->done = true;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

void rkfs_sealer_stop(struct rkfs_sealer *s)
{
	if (s == NULL)
		return;
	for (unsigned i = 0; i < s->n; i++) {
		struct rkfs_helper *h = &s->h[i];

		pthread_mutex_lock(&h->mu);
		h->quit = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
		pthread_join(h->thread, NULL);
		pthread_cond_destroy(&h->cv);
		pthread_mutex_destroy(&h->mu);
	}
	free(s);
}

int rkfs_sealer_start(struct rkfs_sealer **sp, unsigned threads)
{
	struct rkfs_sealer *s;
	sigset_t all, old;
	int ret = 0;

	*sp = NULL;
	if (threads > 64)
		return -EINVAL;
	s = calloc(1, sizeof(*s) + threads * sizeof(s->h[0]));
	if (s == NULL)
		return -ENOMEM;
	/* Signals are for the threads that asked for them, not helpers. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < threads; i++) {
		struct rkfs_helper *h = &s->h[i];

		pthread_mutex_init(&h->mu, NULL);
		pthread_cond_init(&h->cv, NULL);
		ret = -pthread_create(&h->thread, NULL, helper_main, h);
		if (ret < 0) {
			pthread_cond_destroy(&h->cv);
			pthread_mutex_destroy(&h->mu);
			break;
		}
		s->n++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0) {
		rkfs_sealer_stop(s);
		return ret;
	}
	*sp = s;
	return 0;
}

struct rkfs_helper *rkfs_sealer_claim(struct rkfs_sealer *s)
{
	if (s == NULL)
		return NULL;
	for (unsigned i = 0; i < s->n; i++) {
		bool idle = false;

		if (__atomic_compare_exchange_n(&s->h[i].busy, &idle, true,
						false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return &s->h[i];
	}
	return NULL;
}

void rkfs_helper_run(struct rkfs_helper *h, int (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&h->mu);
	h->fn = fn;
	h->arg = arg;
	h->done = false;
	h->posted = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

int rkfs_helper_wait(struct rkfs_helper *h)
{
	int r;

	pthread_mutex_lock(&h->mu);
	while (!h->done)
		pthread_cond_wait(&h->cv, &h->mu);
	r = h->ret;
	pthread_mutex_unlock(&h->mu);
	return r;
}

void rkfs_helper_release(struct rkfs_helper *h)
{
	__atomic_store_n(&h->busy, false, __ATOMIC_RELEASE);
}

unsigned long rkfs_sealer_runs(struct rkfs_sealer *s)
{
	unsigned long n = 0;

	for (unsigned i = 0; s && i < s->n; i++) {
		pthread_mutex_lock(&s->h[i].mu);
		n += s->h[i].runs;
		pthread_mutex_unlock(&s->h[i].mu);
	}
	return n;
}
