/*
 * The request loop: worker threads that read requests off the channel
 * and serve them, each request on the thread that read it (fuse_wire.c
 * relies on that).
 *
 * Why not libfuse 3.14's multi-threaded loop: every idle worker of it
 * waits in read() on the channel, and the kernel hands a request to the
 * reader that has waited longest.  So one-at-a-time requests (an rm -rf,
 * a single reader) rotate over every idle thread, and each wake-up lands
 * on a thread and often a CPU gone cold: with ten idle workers an rm -rf
 * ran at half the speed of the single-threaded loop.  Told to keep fewer
 * idle workers, that loop ends each surplus thread as it finishes and
 * starts a new one as soon as two requests overlap, so two steady
 * writers pay a thread start and exit every few requests.
 *
 * This loop keeps only as many idle workers on the channel as the load
 * asks for (readers_wanted(): two for one caller at a time, three for
 * two) and parks the others, each on its own condition variable.  When
 * the last idle reader takes a request, the worker parked most recently
 * (the warmest) is woken to read in its place, or, with none parked, a
 * new one is started, up to MAX_WORKERS.  Workers are never ended before
 * the loop is: past the first burst, overlapping requests cost a wake-up
 * at most.
 *
 * Ending: a signal handler (fuse_set_signal_handlers()), an unmount
 * (the read fails with ENODEV) or a channel error marks the session
 * exited and wakes the main thread (chain_signals()).  It then wakes
 * the parked workers and cancels the rest; cancellation is enabled only
 * while a worker waits for a request, so none is cancelled while it
 * serves one.
 */
#include "fuse_i.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include "rekeyfs/error.h"

/* libfuse's default cap on workers. */
#define MAX_WORKERS 10
/* Idle workers kept on the channel at the least; the rest are parked. */
#define READERS 2

struct loop;

struct worker {
	struct loop *lp;
	pthread_t tid;
	pthread_cond_t wake;
	bool woken;
	struct worker *next_parked;
	struct worker *next;
	struct fuse_buf buf;
};

struct loop {
	struct fuse_session *se;
	pthread_mutex_t lock;
	sem_t finish;
	struct worker *all;
	struct worker *parked; /* a stack: the last parked on top */
	unsigned workers;
	/*
	 * Workers neither serving nor parked, counted two ways: idle as
	 * soon as a worker's reply goes out, ready once it is back from
	 * serving.  Changed without the lock on the paths every request
	 * takes; see rkfs_loop_replying().
	 */
	atomic_uint idle;
	atomic_uint ready;
	/* requests being served, and its moving average (x 256) as seen
	 * by each request taken: how many callers wait at once */
	atomic_uint busy;
	atomic_uint load;
	atomic_bool exit;
	int error;
};

static void *work(void *arg);

/* The termination signals: blocked in workers, chained by
 * chain_signals() to wake the main thread. */
#define N_WAKE 4
static const int wake_signals[N_WAKE] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP};

/* The worker this thread is, while its request is not yet answered,
 * and that request's unique id. */
static __thread struct worker *serving;
static __thread uint64_t serving_unique;

/* Start a worker; under lp->lock.  0 or -errno. */
static int start_worker(struct loop *lp)
{
	sigset_t block, old;
	struct worker *w;
	int ret;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->lp = lp;
	pthread_cond_init(&w->wake, NULL);
	/* Termination signals go to the main thread (see the top). */
	sigemptyset(&block);
	for (size_t i = 0; i < N_WAKE; i++)
		sigaddset(&block, wake_signals[i]);
	/* Counted before it runs: it may take a request at once. */
	atomic_fetch_add(&lp->idle, 1);
	atomic_fetch_add(&lp->ready, 1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	ret = pthread_create(&w->tid, NULL, work, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret != 0) {
		atomic_fetch_sub(&lp->idle, 1);
		atomic_fetch_sub(&lp->ready, 1);
		pthread_cond_destroy(&w->wake);
		free(w);
		return -ret;
	}
	w->next = lp->all;
	lp->all = w;
	lp->workers++;
	return 0;
}

/* No idle worker is left on the channel: put one there; under lp->lock. */
static void add_reader(struct loop *lp)
{
	struct worker *w = lp->parked;
	int ret;

	/* a worker that replied meanwhile reads again */
	if (atomic_load(&lp->idle) > 0 || atomic_load(&lp->exit))
		return;
	if (w != NULL) {
		lp->parked = w->next_parked;
		w->woken = true;
		atomic_fetch_add(&lp->idle, 1);
		atomic_fetch_add(&lp->ready, 1);
		pthread_cond_signal(&w->wake);
		return;
	}
	if (lp->workers >= MAX_WORKERS)
		return;
	ret = start_worker(lp);
	if (ret < 0 && lp->workers == 1)
		rkfs_log(LOG_WARNING, "cannot start a worker thread: %s",
			 strerror(-ret));
}

/*
 * Park w until add_reader() or the end wakes it; under lp->lock.  Never
 * the last idle worker: workers take requests without the lock, and one
 * that took the second-last saw an idle worker left and woke nobody.
 * Of a parker and a taker, whichever brings idle from 1 to 0 acts: the
 * parker does not park, the taker calls add_reader(), which waits for
 * the lock until the parker waits and then wakes it.
 */
static void park(struct loop *lp, struct worker *w)
{
	unsigned idle = atomic_load(&lp->idle);

	do {
		if (idle <= 1)
			return;
	} while (!atomic_compare_exchange_weak(&lp->idle, &idle, idle - 1));
	atomic_fetch_sub(&lp->ready, 1);
	w->woken = false;
	w->next_parked = lp->parked;
	lp->parked = w;
	while (!w->woken && !atomic_load(&lp->exit))
		pthread_cond_wait(&w->wake, &lp->lock);
}

/*
 * A request was taken: fold the number now being served into the moving
 * average (over about the last 16 requests).  Updates that race may be
 * lost; the average stays a fair estimate.
 */
static void note_busy(struct loop *lp)
{
	unsigned now = atomic_fetch_add(&lp->busy, 1) + 1;
	int l = (int)atomic_load_explicit(&lp->load, memory_order_relaxed);

	l += ((int)(now << 8) - l) / 16;
	atomic_store_explicit(&lp->load, (unsigned)l, memory_order_relaxed);
}

/* The request this worker served is answered. */
static void done_serving(struct loop *lp)
{
	atomic_fetch_sub(&lp->busy, 1);
	atomic_fetch_add(&lp->idle, 1);
}

/*
 * Idle workers to keep on the channel: one more than the callers that
 * usually wait at once, counting an average from 1.25 up as two.  One
 * caller at a time needs two (the one that answered and another already
 * reading); two steady callers, whose average is about 1.5, ran a third
 * faster, 80,000 to 105,000 4 KiB writes/s instead of 58,000 to 65,000
 * (fio, two jobs, on 2 CPUs), and a fourth no faster.  An rm -rf, an
 * untar or one reader stays near 1.0.
 */
static unsigned readers_wanted(const struct loop *lp)
{
	unsigned load = atomic_load_explicit(&lp->load, memory_order_relaxed);
	unsigned k = 1 + (load + 192) / 256;

	return k < READERS ? READERS : k > MAX_WORKERS ? MAX_WORKERS : k;
}

/*
 * The unique id of the request in buf, or 0 for FORGETs: they need no
 * reply and take no time, so they never call for another reader
 * (libfuse's loop counts them the same way).
 */
static uint64_t request_unique(const struct fuse_buf *buf)
{
	const struct fuse_in_header *in = buf->mem;

	if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(*in))
		return 0;
	if (in->opcode == FUSE_FORGET || in->opcode == FUSE_BATCH_FORGET)
		return 0;
	return in->unique;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct loop *lp = w->lp;
	bool stop = false;

	(void)pthread_setname_np(pthread_self(), "rekeyfs-worker");
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!stop) {
		uint64_t unique;
		bool forget;
		int res;

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(lp->se, &w->buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR)
			continue;
		if (res <= 0) {
			/* 0: unmounted (libfuse marked the session exited) */
			pthread_mutex_lock(&lp->lock);
			if (res < 0 && lp->error == 0)
				lp->error = res;
			pthread_mutex_unlock(&lp->lock);
			fuse_session_exit(lp->se);
			break;
		}
		unique = request_unique(&w->buf);
		forget = unique == 0;
		if (!forget) {
			note_busy(lp);
			atomic_fetch_sub(&lp->ready, 1);
			if (atomic_fetch_sub(&lp->idle, 1) == 1) {
				pthread_mutex_lock(&lp->lock);
				add_reader(lp);
				pthread_mutex_unlock(&lp->lock);
			}
		}

		serving = forget ? NULL : w;
		serving_unique = unique;
		fuse_session_process_buf(lp->se, &w->buf);
		if (serving != NULL) /* answered without a reply */
			done_serving(lp);
		serving = NULL;

		if (!forget &&
		    atomic_fetch_add(&lp->ready, 1) + 1 > readers_wanted(lp)) {
			pthread_mutex_lock(&lp->lock);
			if (atomic_load(&lp->ready) > readers_wanted(lp) &&
			    !atomic_load(&lp->exit))
				park(lp, w);
			pthread_mutex_unlock(&lp->lock);
		}
		stop = atomic_load(&lp->exit) || fuse_session_exited(lp->se);
	}
	sem_post(&lp->finish);
	return NULL;
}

/*
 * A worker counts itself idle again as its reply goes out, not after:
 * the caller may ask again at once, and if the other idle reader took
 * that request while this worker still counted as busy, a parked worker
 * would be woken for nothing (often, on a loaded machine, where the
 * replying worker can be preempted right after its reply).  Whether it
 * parks is decided on the ready count, once it is back: counted at the
 * reply, two steady callers would briefly leave every worker idle and
 * park one at every round.
 */
void rkfs_loop_replying(uint64_t unique)
{
	struct worker *w = serving;

	/* not libfuse's answer to an earlier INTERRUPT, say */
	if (w == NULL || unique != serving_unique)
		return;
	serving = NULL;
	done_serving(w->lp);
}

/*
 * The termination signals' handlers (fuse_set_signal_handlers() and the
 * daemon's SIGHUP) run as before and then post the loop's semaphore: a
 * signal that lands between the main thread's look at the session and
 * its sem_wait(), or on a thread other than the main one, still wakes
 * it.  sem_post() is async-signal-safe.
 */
static struct sigaction wake_prev[N_WAKE];
static sem_t *wake_sem;

static void on_signal(int sig)
{
	int saved = errno;

	for (size_t i = 0; i < N_WAKE; i++)
		if (wake_signals[i] == sig)
			wake_prev[i].sa_handler(sig);
	if (wake_sem != NULL)
		sem_post(wake_sem);
	errno = saved;
}

/* Chain on_signal() onto each handler that is a function; or undo it. */
static void chain_signals(sem_t *sem)
{
	for (size_t i = 0; i < N_WAKE; i++) {
		struct sigaction sa;

		if (sem == NULL) {
			if (wake_prev[i].sa_handler != NULL)
				(void)sigaction(wake_signals[i], &wake_prev[i],
						NULL);
			continue;
		}
		memset(&wake_prev[i], 0, sizeof(wake_prev[i]));
		if (sigaction(wake_signals[i], NULL, &sa) < 0 ||
		    (sa.sa_flags & SA_SIGINFO) || sa.sa_handler == SIG_DFL ||
		    sa.sa_handler == SIG_IGN)
			continue;
		wake_prev[i] = sa;
		sa.sa_handler = on_signal;
		if (sigaction(wake_signals[i], &sa, NULL) < 0)
			memset(&wake_prev[i], 0, sizeof(wake_prev[i]));
	}
	wake_sem = sem;
}

int rkfs_loop_run(struct fuse_session *se)
{
	struct loop lp = {.se = se};
	struct worker *w;
	int ret;

	pthread_mutex_init(&lp.lock, NULL);
	sem_init(&lp.finish, 0, 0);
	chain_signals(&lp.finish);
	pthread_mutex_lock(&lp.lock);
	ret = start_worker(&lp);
	pthread_mutex_unlock(&lp.lock);
	if (ret == 0) {
		while (!fuse_session_exited(se))
			sem_wait(&lp.finish);
		pthread_mutex_lock(&lp.lock);
		atomic_store(&lp.exit, true);
		for (w = lp.all; w != NULL; w = w->next) {
			pthread_cond_signal(&w->wake);
			pthread_cancel(w->tid);
		}
		pthread_mutex_unlock(&lp.lock);
		ret = lp.error;
	}
	while ((w = lp.all) != NULL) {
		lp.all = w->next;
		pthread_join(w->tid, NULL);
		pthread_cond_destroy(&w->wake);
		free(w->buf.mem);
		free(w);
	}
	chain_signals(NULL);
	sem_destroy(&lp.finish);
	pthread_mutex_destroy(&lp.lock);
	fuse_session_reset(se);
	return ret;
}
