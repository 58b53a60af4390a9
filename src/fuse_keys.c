/*
 * The mount's current keyring.  A reload swaps it; operations hold a
 * reference for their duration so an in-flight one never sees its keyring
 * freed.  Reloads come from SIGHUP and inotify (fuse_main.c) and from a
 * read of a file in a generation this mount does not know yet.
 */
#include "fuse_i.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include <sodium.h>

#include "rekeyfs/error.h"

static struct kref *cur_kr;
static pthread_mutex_t kr_mu = PTHREAD_MUTEX_INITIALIZER;

struct kref *kr_get(void)
{
	struct kref *k;

	pthread_mutex_lock(&kr_mu);
	k = cur_kr;
	k->refs++;
	pthread_mutex_unlock(&kr_mu);
	return k;
}

void kr_put(struct kref *k)
{
	bool last;

	pthread_mutex_lock(&kr_mu);
	last = --k->refs == 0;
	pthread_mutex_unlock(&kr_mu);
	if (last) {
		rkfs_keyring_free(k->kr);
		free(k);
	}
}

static int kr_install(struct rkfs_keyring *kr)
{
	struct kref *k = calloc(1, sizeof(*k)), *old;

	if (k == NULL)
		return -ENOMEM;
	k->kr = kr;
	k->refs = 1;
	pthread_mutex_lock(&kr_mu);
	old = cur_kr;
	cur_kr = k;
	pthread_mutex_unlock(&kr_mu);
	if (old)
		kr_put(old);
	return 0;
}

/*
 * Identity of the keyring file as of the last load attempt, so that a
 * file in an unknown generation triggers at most one extra reload per
 * change of the file.  Under reload_mu.
 */
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;
static struct stat kr_seen;

static bool keyring_file_changed(const struct stat *st)
{
	return st->st_dev != kr_seen.st_dev || st->st_ino != kr_seen.st_ino ||
	       st->st_size != kr_seen.st_size ||
	       st->st_mtim.tv_sec != kr_seen.st_mtim.tv_sec ||
	       st->st_mtim.tv_nsec != kr_seen.st_mtim.tv_nsec;
}

void rkfs_fs_keys_setup(struct rkfs_keyring *kr)
{
	if (stat(rkfs_ms->keyring, &kr_seen) < 0)
		memset(&kr_seen, 0, sizeof(kr_seen));
	if (kr_install(kr) < 0) {
		rkfs_log(LOG_ERR, "out of memory");
		abort();
	}
}

void rkfs_fs_keys_teardown(void)
{
	struct kref *k;

	pthread_mutex_lock(&kr_mu);
	k = cur_kr;
	cur_kr = NULL;
	pthread_mutex_unlock(&kr_mu);
	if (k)
		kr_put(k);
}

static int reload_locked(const char *why);

int rkfs_fs_reload(const char *why)
{
	int ret;

	pthread_mutex_lock(&reload_mu);
	ret = reload_locked(why);
	pthread_mutex_unlock(&reload_mu);
	return ret;
}

/*
 * A file names a generation this mount does not know.  A rotation may have
 * reached the keyring file (and the rekey tool) before the asynchronous
 * reload did, so if the file changed since it was last read, reload now.
 * Returns true if a new keyring was installed.
 */
bool reload_if_stale(void)
{
	struct stat st;
	bool done = false;

	pthread_mutex_lock(&reload_mu);
	if (stat(rkfs_ms->keyring, &st) == 0 && keyring_file_changed(&st))
		done = reload_locked("a file uses a generation this mount did "
				     "not know yet") == 0;
	pthread_mutex_unlock(&reload_mu);
	return done;
}

static int reload_locked(const char *why)
{
	struct rkfs_keyring *kr = NULL;
	struct rkfs_error err = {{0}};
	uint32_t old_primary;
	struct kref *k;
	int ret;

	if (stat(rkfs_ms->keyring, &kr_seen) < 0)
		memset(&kr_seen, 0, sizeof(kr_seen));
	ret = rkfs_keyring_load(&kr, rkfs_ms->keyring, RKFS_KR_LOAD_KEYS, &err);
	if (ret == 0) {
		/* Never a sealed keyring replaced by an unsealed one, nor a
		 * generation taken away from files open right now. */
		uint32_t *gens = NULL;
		size_t ngens = rkfs_nodes_open_generations(&gens);

		k = kr_get();
		ret = rkfs_keyring_check_downgrade(k->kr, kr, gens, ngens,
						   &err);
		kr_put(k);
		free(gens);
	}
	if (ret == 0)
		ret = rkfs_meta_check(rkfs_ms->meta, kr, rkfs_ms->root, &err);
	if (ret == 0 && !rkfs_ms->ro && kr->primary)
		ret = rkfs_meta_record(rkfs_ms->meta, rkfs_ms->rootfd, kr, kr->primary,
				       rkfs_ms->root, &err);
	if (ret < 0) {
		rkfs_log(LOG_ERR,
			 "keyring reload (%s) failed, keeping the old keyring: "
			 "%s",
			 why, err.msg[0] ? err.msg : strerror(-ret));
		rkfs_keyring_free(kr);
		return ret;
	}
	k = kr_get();
	old_primary = k->kr->primary;
	kr_put(k);
	ret = kr_install(kr);
	if (ret < 0) {
		rkfs_log(LOG_ERR, "keyring reload (%s) failed: out of memory",
			 why);
		rkfs_keyring_free(kr);
		return ret;
	}
	rkfs_log(LOG_INFO,
		 "keyring reloaded (%s): primary generation %" PRIu32
		 " (was %" PRIu32 ")",
		 why, kr->primary, old_primary);
	return 0;
}

void rkfs_fs_relock_keys(void)
{
	struct kref *k = kr_get();

	(void)rkfs_keyring_relock(k->kr);
	kr_put(k);
}

