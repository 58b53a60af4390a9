/*
 * rekeyfs: the FUSE daemon.  Options, start-up checks (all before
 * daemonising, so that errors reach the terminal), the mount, and the
 * keyring reload triggers (SIGHUP and inotify on the keyring's directory).
 * The filesystem itself is libfuse's low-level API (fuse_ops.c).
 *
 * Exit codes: 0 clean unmount, 1 usage or config error, 2 keyring error,
 * 3 backing directory or metadata error, 4 mountpoint error, 5 FUSE error.
 */
#include "fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <linux/openat2.h>
#include <sys/syscall.h>

#include "rekeyfs/config.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/meta.h"
#include "rekeyfs/passphrase.h"
#include "rekeyfs/rekey.h"

enum {
	EXIT_USAGE = 1,
	EXIT_KEYRING = 2,
	EXIT_BACKING = 3,
	EXIT_MOUNTPOINT = 4,
	EXIT_FUSE = 5,
};

struct opts {
	const char *config;
	const char *backing;
	const char *mountpoint;
	const char *keyring;
	const char *passphrase_file;
	const char *passphrase_command;
	char *fuse_opts; /* comma list, malloc'd */
	bool foreground;
	bool debug;
	bool single;
	bool ro;
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: rekeyfs [options] BACKING MOUNTPOINT\n"
	    "       rekeyfs --config FILE [options]\n"
	    "\n"
	    "Mount the encrypted backing directory BACKING at MOUNTPOINT.\n"
	    "\n"
	    "  --keyring FILE             keyring (required unless in the "
	    "config)\n"
	    "  --config FILE              read [mount] settings from FILE\n"
	    "  --passphrase-file FILE     passphrase of a sealed keyring\n"
	    "  --passphrase-command CMD   command printing that passphrase; the\n"
	    "                             command line is visible to every user\n"
	    "                             in /proc/PID/cmdline (ps): prefer\n"
	    "                             passphrase_command in the --config file\n"
	    "  --allow-unsealed           accept an unsealed keyring although a\n"
	    "                             passphrase source is given or the tree\n"
	    "                             recorded a sealed one (logged)\n"
	    "  -f                         stay in the foreground\n"
	    "  -d                         debug output (implies -f)\n"
	    "  -s                         single-threaded\n"
	    "  -o OPT[,OPT...]            FUSE mount options (allow_other,\n"
	    "                             default_permissions, ro, ...);\n"
	    "                             allow_other implies\n"
	    "                             default_permissions\n"
	    "  -h, --help                 this help\n"
	    "  -V, --version              print the version\n"
	    "\n"
	    "Send SIGHUP (or change the keyring file) to reload the "
	    "keyring.\n");
}

/* ---- logging ---- */

static bool log_to_stderr = true;
static bool log_to_syslog;

static void log_sink(int level, const char *msg)
{
	if (log_to_syslog)
		syslog(level, "%s", msg);
	if (log_to_stderr)
		fprintf(stderr, "rekeyfs: %s\n", msg);
}

static void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("rekeyfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- options ---- */

static int add_fuse_opts(struct opts *o, const char *list)
{
	char *n;

	if (list == NULL || list[0] == '\0')
		return 0;
	if (o->fuse_opts == NULL)
		n = strdup(list);
	else if (asprintf(&n, "%s,%s", o->fuse_opts, list) < 0)
		n = NULL;
	if (n == NULL)
		return -ENOMEM;
	free(o->fuse_opts);
	o->fuse_opts = n;
	return 0;
}

/* Is opt one of the comma-separated words of list? */
static bool has_opt(const char *list, const char *opt)
{
	size_t len = strlen(opt);
	const char *p = list;

	while (p && *p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == len && strncmp(p, opt, len) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	enum { OPT_KEYRING = 256, OPT_CONFIG, OPT_PFILE, OPT_PCMD, OPT_UNSEALED };
	static const struct option longopts[] = {
	    {"keyring", required_argument, NULL, OPT_KEYRING},
	    {"config", required_argument, NULL, OPT_CONFIG},
	    {"passphrase-file", required_argument, NULL, OPT_PFILE},
	    {"passphrase-command", required_argument, NULL, OPT_PCMD},
	    {"allow-unsealed", no_argument, NULL, OPT_UNSEALED},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "+fdso:hV", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case OPT_KEYRING:
			o->keyring = optarg;
			break;
		case OPT_CONFIG:
			o->config = optarg;
			break;
		case OPT_PFILE:
			o->passphrase_file = optarg;
			break;
		case OPT_PCMD:
			o->passphrase_command = optarg;
			break;
		case OPT_UNSEALED:
			rkfs_keyring_allow_unsealed(true);
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = true;
			o->foreground = true;
			break;
		case 's':
			o->single = true;
			break;
		case 'o':
			if (add_fuse_opts(o, optarg) < 0)
				return -ENOMEM;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("rekeyfs %s (libfuse %s)\n", RKFS_VERSION,
			       fuse_pkgversion());
			exit(0);
		default:
			fputs("Try 'rekeyfs --help'.\n", stderr);
			return -EINVAL;
		}
	}
	if (argc - optind == 2) {
		o->backing = argv[optind];
		o->mountpoint = argv[optind + 1];
	} else if (argc - optind != 0 || o->config == NULL) {
		die_msg("expected BACKING and MOUNTPOINT (or --config FILE)");
		fputs("Try 'rekeyfs --help'.\n", stderr);
		return -EINVAL;
	}
	return 0;
}

/* Fill in what the command line left open from the config file. */
static int apply_config(struct opts *o, struct rkfs_config **cfgp)
{
	struct rkfs_error err = {{0}};
	struct rkfs_config *cfg;
	char *cli_opts;
	int ret;

	*cfgp = NULL;
	if (o->config == NULL)
		return 0;
	ret = rkfs_config_load(&cfg, o->config, &err);
	if (ret < 0) {
		die_msg("%s", err.msg[0] ? err.msg : strerror(-ret));
		return ret;
	}
	*cfgp = cfg;
	if (o->backing == NULL)
		o->backing = cfg->backing;
	if (o->mountpoint == NULL)
		o->mountpoint = cfg->mountpoint;
	if (o->keyring == NULL)
		o->keyring = cfg->keyring;
	if (o->passphrase_file == NULL && o->passphrase_command == NULL) {
		o->passphrase_file = cfg->passphrase_file;
		o->passphrase_command = cfg->passphrase_command;
	}
	/* Command-line options come last so they win. */
	cli_opts = o->fuse_opts;
	o->fuse_opts = NULL;
	ret = add_fuse_opts(o, cfg->options);
	if (ret == 0)
		ret = add_fuse_opts(o, cli_opts);
	free(cli_opts);
	if (o->backing == NULL || o->mountpoint == NULL) {
		die_msg("%s: [mount] needs backing and mountpoint (or give "
			"them on the command line)",
			o->config);
		return -EINVAL;
	}
	return ret;
}

/*
 * Passphrase source for passphrase-sealed keyrings: a file, a command, or
 * (neither given) the terminal.  Must run before the keyring is loaded.
 */
static int setup_passphrase(const struct opts *o)
{
	struct rkfs_error err = {{0}};
	int ret;

	if (o->passphrase_file && o->passphrase_command) {
		die_msg(
		    "give either --passphrase-file or --passphrase-command, "
		    "not both");
		return -EINVAL;
	}
	ret = rkfs_passphrase_setup(o->passphrase_file, o->passphrase_command,
				    &err);
	if (ret < 0)
		die_msg("%s", err.msg[0] ? err.msg : strerror(-ret));
	return ret;
}

/* An absolute form of path (not resolving symlinks), malloc'd. */
static char *absolute(const char *path)
{
	char *cwd, *out;

	if (path[0] == '/')
		return strdup(path);
	cwd = getcwd(NULL, 0);
	if (cwd == NULL)
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		out = NULL;
	free(cwd);
	return out;
}

static int check_mountpoint(const char *mnt)
{
	struct statx stx;

	if (statx(AT_FDCWD, mnt, 0, STATX_TYPE, &stx) < 0) {
		int e = errno;

		if (e == ENOTCONN)
			die_msg("mountpoint %s: a dead FUSE mount is still "
				"there; run fusermount3 -u %s",
				mnt, mnt);
		else
			die_msg("mountpoint %s: %s", mnt, strerror(e));
		return -e;
	}
	if (!S_ISDIR(stx.stx_mode)) {
		die_msg("mountpoint %s: not a directory", mnt);
		return -ENOTDIR;
	}
	if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	    (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
		die_msg("mountpoint %s: something is already mounted there "
			"(busy); unmount it first",
			mnt);
		return -EBUSY;
	}
	return 0;
}

/* Escape ',' and '\' for a libfuse -o value. */
static char *opt_escape(const char *s)
{
	char *out = malloc(strlen(s) * 2 + 1), *p = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

/* ---- keyring reload triggers ---- */

static int hup_pipe[2] = {-1, -1};
static int inotify_fd = -1;
static const char *keyring_base;
static pthread_t reload_thread;
static bool reload_running;

static void on_sighup(int sig)
{
	char c = 'h';
	int saved = errno;

	(void)sig;
	if (write(hup_pipe[1], &c, 1) < 0) {
		/* a reload is already pending */
	}
	errno = saved;
}

/* Did the inotify events in buf touch the keyring's name? */
static bool events_touch_keyring(const char *buf, ssize_t len)
{
	const char *p = buf;
	bool hit = false;

	while (p < buf + len) {
		const struct inotify_event *ev = (const void *)p;

		if (ev->len && strcmp(ev->name, keyring_base) == 0)
			hit = true;
		p += sizeof(*ev) + ev->len;
	}
	return hit;
}

static void *reload_main(void *arg)
{
	char buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd pfd[2];

	(void)arg;
	pfd[0].fd = hup_pipe[0];
	pfd[0].events = POLLIN;
	pfd[1].fd = inotify_fd;
	pfd[1].events = POLLIN;
	for (;;) {
		const char *why = NULL;
		/* Every half minute without events: let go of the files
		 * a rekey replaced (fuse_node.c). */
		int n = poll(pfd, inotify_fd >= 0 ? 2 : 1, 30000);

		if (n == 0) {
			rkfs_nodes_sweep();
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rkfs_log(LOG_ERR, "reload thread: poll: %s",
				 strerror(errno));
			return NULL;
		}
		if (pfd[0].revents & POLLIN) {
			char c[64];
			ssize_t r = read(hup_pipe[0], c, sizeof(c));

			if (r > 0 && memchr(c, 'q', (size_t)r))
				return NULL;
			why = "SIGHUP";
		}
		if (inotify_fd >= 0 && (pfd[1].revents & POLLIN)) {
			bool hit = false;

			/* Coalesce a burst of events (create, write, close)
			 * into one reload of the finished file. */
			for (int i = 0; i < 5; i++) {
				ssize_t r = read(inotify_fd, buf, sizeof(buf));

				if (r > 0 && events_touch_keyring(buf, r))
					hit = true;
				if (!hit || poll(&pfd[1], 1, 20) <= 0)
					break;
			}
			if (hit && !why)
				why = "keyring file changed";
		}
		if (why)
			(void)rkfs_fs_reload(why);
	}
}

/*
 * Runs before the mount appears: from then on a SIGHUP only queues a reload
 * (served once the reload thread runs) and can no longer kill the daemon.
 */
static int start_watchers(const char *keyring)
{
	struct sigaction sa;
	char *dir, *base;
	int ret;

	if (pipe2(hup_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGHUP, &sa, NULL) < 0)
		return -errno;
	ret = rkfs_path_split(&dir, &base, keyring);
	if (ret < 0)
		return ret;
	keyring_base = base;
	inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (inotify_fd >= 0 &&
	    inotify_add_watch(inotify_fd, dir,
			      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
		rkfs_log(LOG_WARNING,
			 "cannot watch %s for keyring changes (%s); reload "
			 "with SIGHUP",
			 dir, strerror(errno));
		close(inotify_fd);
		inotify_fd = -1;
	}
	free(dir);
	return 0;
}

static int start_reload_thread(void)
{
	int ret;

	ret = pthread_create(&reload_thread, NULL, reload_main, NULL);
	if (ret != 0)
		return -ret;
	reload_running = true;
	return 0;
}

static void stop_reload_thread(void)
{
	char c = 'q';

	signal(SIGHUP, SIG_IGN);
	if (reload_running) {
		if (write(hup_pipe[1], &c, 1) < 0) {
			/* pipe full: the thread wakes up anyway */
		}
		pthread_join(reload_thread, NULL);
		reload_running = false;
	}
	if (inotify_fd >= 0)
		close(inotify_fd);
	if (hup_pipe[0] >= 0) {
		close(hup_pipe[0]);
		close(hup_pipe[1]);
	}
	free((char *)keyring_base);
}

/*
 * The kernel caps FUSE readahead at its bdi default (128 KiB), so large
 * sequential reads arrive as 128 KiB requests, one or two at a time.  As
 * root, raise the mount's bdi readahead to 4 MiB (before the kernel has
 * the INIT reply, which then keeps it; see op_init): a sequential reader
 * then keeps several 1 MiB requests in flight, which the worker threads
 * decrypt in parallel while the backing reads run ahead.  Found through
 * mountinfo, not stat(), so no request to this very filesystem is needed.
 * Best effort.
 */
static void raise_readahead(const char *mnt)
{
	char *line = NULL, *esc, *p, path[128];
	unsigned major, minor;
	size_t cap = 0;
	FILE *mi;
	int fd;

	if (geteuid() != 0)
		return;
	esc = malloc(strlen(mnt) * 4 + 1);
	if (esc == NULL)
		return;
	for (p = esc; *mnt; mnt++) {
		if (*mnt == ' ' || *mnt == '\t' || *mnt == '\n' || *mnt == '\\')
			p += snprintf(p, 5, "\\%03o", (unsigned char)*mnt);
		else
			*p++ = *mnt;
	}
	*p = '\0';
	mi = fopen("/proc/self/mountinfo", "re");
	while (mi && getline(&line, &cap, mi) > 0) {
		char point[4096];

		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &minor,
			   point) != 3 ||
		    strcmp(point, esc) != 0)
			continue;
		snprintf(path, sizeof(path),
			 "/sys/class/bdi/%u:%u/read_ahead_kb", major, minor);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (dprintf(fd, "%d", RKFS_READAHEAD_KB) < 0)
				rkfs_log(LOG_DEBUG, "%s: %s", path,
					 strerror(errno));
			close(fd);
		}
	}
	if (mi)
		fclose(mi);
	free(line);
	free(esc);
}

/* ---- safety checks ---- */

/*
 * The tools resolve paths read from the backing tree with openat2()
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS ...), which the mount's recovery
 * of interrupted rewrites shares; on a kernel without it (before 5.6)
 * nothing would keep such a path inside the tree, so refuse to run.
 */
static int check_openat2(int rootfd)
{
	struct open_how how = {
	    .flags = O_PATH | O_CLOEXEC,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		       RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd = syscall(SYS_openat2, rootfd, ".", &how, sizeof(how));

	if (fd < 0) {
		die_msg("this kernel has no openat2() (%s); rekeyfs needs "
			"Linux 5.6 or later to keep every backing access "
			"inside the backing directory",
			strerror(errno));
		return -errno;
	}
	close((int)fd);
	return 0;
}

/*
 * One O_PATH fd per node the kernel holds, plus a directory fd per
 * directory in use and one per open file: raise the soft fd limit to the
 * hard one (as root, the hard one to the kernel's nr_open first).  When
 * even that runs out, requests for new nodes fail with EMFILE and one log
 * line says so (fd_budget_exhausted()); the kernel forgets nodes under
 * memory pressure or on drop_caches, and the mount recovers.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	unsigned long long max = 0;
	FILE *f;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (geteuid() == 0) {
		f = fopen("/proc/sys/fs/nr_open", "re");
		if (f) {
			if (fscanf(f, "%llu", &max) != 1)
				max = 0;
			fclose(f);
		}
		if (max > (1ULL << 20))
			max = 1ULL << 20;
		if (max > rl.rlim_max) {
			struct rlimit more = {max, max};

			if (setrlimit(RLIMIT_NOFILE, &more) == 0)
				return;
		}
	}
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

/*
 * With allow_other, users other than the backing directory's owner must
 * not reach the backing tree: whoever can write their own backing files
 * there can change them under the daemon (which is safe, but leaks
 * ciphertext sizes and names and invites denial of service).  Warn when a
 * component of the path lets others traverse it.
 */
static void warn_reachable(const char *backing)
{
	char *p = strdup(backing), *slash;
	struct stat st;
	mode_t self;

	if (p == NULL || stat(p, &st) < 0)
		goto out;
	self = st.st_mode;
	if (!(self & (S_IXGRP | S_IXOTH)))
		goto out;
	/* ... and every directory above it lets others pass. */
	while ((slash = strrchr(p, '/')) != NULL) {
		slash[slash == p ? 1 : 0] = '\0';
		if (stat(p, &st) < 0 || !(st.st_mode & S_IXOTH))
			goto out;
		if (slash == p)
			break;
	}
	rkfs_log(LOG_WARNING,
		 "allow_other: other users can reach the backing directory "
		 "%s (mode %04o); make it 0700 so that only its owner can "
		 "see or change the ciphertext",
		 backing, (unsigned)(self & 07777));
out:
	free(p);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	struct rkfs_mount_state state = {.rootfd = -1};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct rkfs_error err = {{0}};
	struct rkfs_keyring *kr = NULL;
	struct rkfs_config *cfg = NULL;
	char *backing = NULL, *mnt = NULL, *keyring = NULL, *o = NULL;
	struct fuse_session *se = NULL;
	struct rlimit rl = {0, 0};
	struct opts opt = {0};
	struct stat st;
	int ret, code = EXIT_USAGE;
	unsigned mflags;

	umask(0);
	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rkfs_log_set_sink(log_sink);

	if (parse_args(&opt, argc, argv) < 0 || apply_config(&opt, &cfg) < 0)
		goto out;
	if (opt.keyring == NULL) {
		die_msg("no keyring: give --keyring FILE (or keyring = in the "
			"config)");
		goto out;
	}
	opt.ro = opt.fuse_opts && has_opt(opt.fuse_opts, "ro");
	/* The daemon opens every file with its own rights: when other users
	 * may enter the mount, the kernel must check their permissions. */
	if (opt.fuse_opts && has_opt(opt.fuse_opts, "allow_other") &&
	    !has_opt(opt.fuse_opts, "default_permissions") &&
	    add_fuse_opts(&opt, "default_permissions") < 0) {
		die_msg("out of memory");
		goto out;
	}
	if (opt.debug)
		rkfs_log_set_level(LOG_DEBUG);
	if (rkfs_crypt_init() < 0) {
		die_msg("libsodium failed to initialise");
		goto out;
	}
	if (setup_passphrase(&opt) < 0)
		goto out;

	/* The daemon runs from "/", so everything gets an absolute path. */
	code = EXIT_KEYRING;
	keyring = absolute(opt.keyring);
	if (keyring == NULL) {
		die_msg("keyring %s: %s", opt.keyring, strerror(errno));
		goto out;
	}
	ret = rkfs_keyring_load(&kr, keyring, RKFS_KR_LOAD_KEYS, &err);
	if (ret < 0) {
		die_msg("%s", err.msg[0] ? err.msg : strerror(-ret));
		goto out;
	}
	if (rkfs_keyring_lock_check(kr, &err) < 0)
		rkfs_log(LOG_WARNING, "%s", err.msg);

	code = EXIT_BACKING;
	if (stat(opt.backing, &st) < 0) {
		die_msg("backing directory %s: %s", opt.backing,
			strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		die_msg("backing directory %s: not a directory", opt.backing);
		goto out;
	}
	backing = realpath(opt.backing, NULL);
	if (backing == NULL) {
		die_msg("backing directory %s: %s", opt.backing,
			strerror(errno));
		goto out;
	}
	state.rootfd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (state.rootfd < 0) {
		die_msg("backing directory %s: %s", backing, strerror(errno));
		goto out;
	}
	if (check_openat2(state.rootfd) < 0)
		goto out;
	raise_fd_limit();
	if (opt.fuse_opts && has_opt(opt.fuse_opts, "allow_other"))
		warn_reachable(backing);
	mflags = opt.ro ? 0 : RKFS_META_CREATE | RKFS_META_RECORD;
	ret = rkfs_meta_open(&state.meta, state.rootfd, backing, kr, mflags,
			     &err);
	if (ret < 0) {
		die_msg("%s", err.msg[0] ? err.msg : strerror(-ret));
		if (ret == -EKEYREJECTED)
			code = EXIT_KEYRING;
		goto out;
	}

	if (!opt.ro) {
		struct rkfs_error rerr = {{0}};
		unsigned nrec = 0;

		/* Finish in-place rewrites that a killed rekeyfs-rekey left. */
		if (rkfs_rekey_recover(state.rootfd, backing, kr, 0, &nrec,
				       &rerr) < 0)
			rkfs_log(LOG_WARNING, "%s", rerr.msg);
		else if (nrec)
			rkfs_log(LOG_NOTICE,
				 "finished %u interrupted in-place rewrite(s)",
				 nrec);
	}
	code = EXIT_MOUNTPOINT;
	if (check_mountpoint(opt.mountpoint) < 0)
		goto out;
	mnt = realpath(opt.mountpoint, NULL);
	if (mnt == NULL) {
		die_msg("mountpoint %s: %s", opt.mountpoint, strerror(errno));
		goto out;
	}

	code = EXIT_FUSE;
	o = opt_escape(backing);
	if (o == NULL)
		goto out;
	{
		char *fsname;

		if (asprintf(&fsname, "subtype=rekeyfs,fsname=%s", o) < 0)
			goto out;
		free(o);
		o = fsname;
	}
	if (fuse_opt_add_arg(&args, argv[0]) < 0 ||
	    (opt.debug && fuse_opt_add_arg(&args, "-d") < 0) ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, o) < 0 ||
	    (opt.fuse_opts && (fuse_opt_add_arg(&args, "-o") < 0 ||
			       fuse_opt_add_arg(&args, opt.fuse_opts) < 0)))
		goto out;

	state.root = backing;
	state.keyring = keyring;
	state.ro = opt.ro;
	state.single = opt.single;
	ret = rkfs_fs_setup(&state, kr);
	kr = NULL; /* owned by the FUSE layer now */
	if (ret < 0) {
		die_msg("backing directory %s: %s", backing, strerror(-ret));
		goto out_fs;
	}

	se = fuse_session_new(&args, rkfs_fs_operations(),
			      sizeof(struct fuse_lowlevel_ops), NULL);
	if (se == NULL) {
		die_msg("cannot set up FUSE (bad -o option?)");
		goto out_fs;
	}
	if (start_watchers(keyring) < 0) {
		die_msg("cannot set up keyring reload");
		goto out_destroy;
	}
	if (fuse_session_mount(se, mnt) != 0) {
		die_msg("cannot mount on %s", mnt);
		goto out_destroy;
	}
	if (rkfs_wire_install(se) != 0) {
		die_msg("cannot set up the FUSE channel");
		goto out_unmount;
	}
	if (fuse_daemonize(opt.foreground) != 0)
		goto out_unmount;
	rkfs_se = se;
	openlog("rekeyfs", LOG_PID, LOG_DAEMON);
	log_to_syslog = true;
	log_to_stderr = opt.foreground;
	/* mlock does not survive fork(). */
	rkfs_fs_relock_keys();
	if (fuse_set_signal_handlers(se) != 0)
		goto out_unmount;
	if (start_reload_thread() < 0)
		rkfs_log(LOG_WARNING, "keyring reload on SIGHUP unavailable");
	raise_readahead(mnt);
	rkfs_log(LOG_INFO, "mounted %s on %s", backing, mnt);

	if (opt.single) {
		ret = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *lc = fuse_loop_cfg_create();

		if (lc == NULL) {
			ret = -ENOMEM;
		} else {
			fuse_loop_cfg_set_clone_fd(lc, 0);
			fuse_loop_cfg_set_idle_threads(lc, 10);
			ret = fuse_session_loop_mt(se, lc);
			fuse_loop_cfg_destroy(lc);
		}
	}
	code = ret == 0 ? 0 : EXIT_FUSE;
	stop_reload_thread();
	fuse_remove_signal_handlers(se);
	rkfs_log(LOG_INFO, "unmounted %s from %s", backing, mnt);
out_unmount:
	rkfs_se = NULL;
	fuse_session_unmount(se);
out_destroy:
	fuse_session_destroy(se);
out_fs:
	rkfs_fs_teardown();
out:
	rkfs_keyring_free(kr);
	rkfs_keyring_forget_passphrases();
	rkfs_meta_free(state.meta);
	if (state.rootfd >= 0)
		close(state.rootfd);
	fuse_opt_free_args(&args);
	rkfs_config_free(cfg);
	free(opt.fuse_opts);
	free(backing);
	free(mnt);
	free(keyring);
	free(o);
	return code;
}
