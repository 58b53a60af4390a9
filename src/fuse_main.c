/*
 * rekeyfs: the FUSE daemon.  Options (the command line, the config file
 * and -o lists as mount.fuse3 passes them from /etc/fstab, all parsed
 * with fuse_opt), start-up checks (all before anything is written, and
 * before daemonising, so that errors reach the terminal), the mount,
 * systemd's readiness notification, and the keyring reload triggers
 * (SIGHUP and inotify on the keyring's directory).  rekeyfs --init sets
 * up a backing directory; a mount never does.  The filesystem itself is
 * libfuse's low-level API (fuse_ops.c).
 *
 * Exit codes: 0 clean unmount, 1 usage or config error, 2 keyring error,
 * 3 backing directory or metadata error, 4 mountpoint error, 5 FUSE error.
 */
#include "fuse_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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
	/* malloc'd, or NULL when not given */
	char *config;
	char *backing;
	char *mountpoint;
	char *keyring;
	char *passphrase_file;
	char *passphrase_command;
	char **fuse_opts; /* FUSE -o options in order, unescaped */
	size_t nfuse_opts;
	long long idle_ms; /* -o idle=: -1 when not given, 0 off */
	int npos;	   /* positional arguments seen */
	bool from_config;  /* parsing the config's options = line */
	bool help;
	bool version;
	bool init;
	bool allow_unsealed;
	bool foreground;
	bool debug;
	bool single;
	bool ro;
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: rekeyfs [options] BACKING MOUNTPOINT [options]\n"
	    "       rekeyfs --config FILE [options]\n"
	    "       rekeyfs --init [options] BACKING\n"
	    "\n"
	    "Mount the encrypted backing directory BACKING at MOUNTPOINT.\n"
	    "\n"
	    "  --init                     set up the empty directory BACKING as\n"
	    "                             a rekeyfs tree for the keyring, then\n"
	    "                             exit (a mount never does this)\n"
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
	    "  --idle DURATION            unmount after DURATION without use\n"
	    "  -f                         stay in the foreground, log to stderr\n"
	    "  -d                         debug output (implies -f)\n"
	    "  -s                         single-threaded\n"
	    "  -o OPT[,OPT...]            mount options, before or after the\n"
	    "                             paths (see below)\n"
	    "  -h, --help                 this help\n"
	    "  -V, --version              print the version\n"
	    "\n"
	    "Mount options (-o, or options = in the config; also what\n"
	    "mount -t fuse.rekeyfs and /etc/fstab pass):\n"
	    "  keyring=FILE, config=FILE, passphrase_file=FILE,\n"
	    "  passphrase_command=CMD, allow_unsealed   as the options above\n"
	    "  idle=DURATION       unmount after DURATION (30s, 10m, 2h, 1d;\n"
	    "                      no unit: seconds) without a request and\n"
	    "                      without an open file\n"
	    "  allow_other         let other users in; implies\n"
	    "                      default_permissions\n"
	    "  auto_unmount        unmount when the daemon exits, even if it\n"
	    "                      is killed (done by fusermount3)\n"
	    "  ro, rw              the last one given wins; the config's\n"
	    "                      options come before the command line's\n"
	    "  x-*, comment=*, defaults, auto, noauto, nofail, _netdev\n"
	    "                      fstab's own: ignored\n"
	    "  anything else goes to FUSE (dev, suid, noatime, ...)\n"
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

enum {
	K_HELP,
	K_VERSION,
	K_INIT,
	K_UNSEALED,
	K_IDLE,
	K_FOREGROUND,
	K_DEBUG,
	K_SINGLE,
};

#define OPT_STR(t, field) {t, offsetof(struct opts, field), 0}

/*
 * One table for the command line, -o lists and the config's options =
 * line.  The long options that take a value are rewritten into their -o
 * form first (normalise_args), so each setting has one spelling here.
 */
static const struct fuse_opt opt_spec[] = {
    OPT_STR("keyring=%s", keyring),
    OPT_STR("config=%s", config),
    OPT_STR("passphrase_file=%s", passphrase_file),
    OPT_STR("passphrase_command=%s", passphrase_command),
    FUSE_OPT_KEY("idle=", K_IDLE),
    FUSE_OPT_KEY("allow_unsealed", K_UNSEALED),
    FUSE_OPT_KEY("--allow-unsealed", K_UNSEALED),
    FUSE_OPT_KEY("--init", K_INIT),
    FUSE_OPT_KEY("-h", K_HELP),
    FUSE_OPT_KEY("--help", K_HELP),
    FUSE_OPT_KEY("-V", K_VERSION),
    FUSE_OPT_KEY("--version", K_VERSION),
    FUSE_OPT_KEY("-f", K_FOREGROUND),
    FUSE_OPT_KEY("-d", K_DEBUG),
    FUSE_OPT_KEY("debug", K_DEBUG),
    FUSE_OPT_KEY("-s", K_SINGLE),
    FUSE_OPT_END,
};

/* Long options with a value, and the -o option each one stands for. */
static const struct {
	const char *name;
	const char *opt;
} long_opts[] = {
    {"--keyring", "keyring"},
    {"--config", "config"},
    {"--passphrase-file", "passphrase_file"},
    {"--passphrase-command", "passphrase_command"},
    {"--idle", "idle"},
};

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

static int add_fuse_opt(struct opts *o, const char *opt)
{
	char **n = realloc(o->fuse_opts, (o->nfuse_opts + 1) * sizeof(*n));

	if (n == NULL)
		return -ENOMEM;
	o->fuse_opts = n;
	n[o->nfuse_opts] = strdup(opt);
	if (n[o->nfuse_opts] == NULL)
		return -ENOMEM;
	o->nfuse_opts++;
	return 0;
}

static bool has_opt(const struct opts *o, const char *opt)
{
	for (size_t i = 0; i < o->nfuse_opts; i++)
		if (strcmp(o->fuse_opts[i], opt) == 0)
			return true;
	return false;
}

/* The FUSE options as one escaped -o list (malloc'd; "" if none). */
static char *fuse_opt_list(const struct opts *o)
{
	char *list = strdup(""), *e, *n;

	for (size_t i = 0; list && i < o->nfuse_opts; i++) {
		e = opt_escape(o->fuse_opts[i]);
		if (e == NULL || asprintf(&n, "%s%s%s", list, i ? "," : "",
					  e) < 0)
			n = NULL;
		free(e);
		free(list);
		list = n;
	}
	return list;
}

/*
 * fstab's words that mean something to mount(8) or systemd, never to the
 * filesystem: mount.fuse3 drops some of them, but not when rekeyfs is run
 * by hand with a line copied from fstab.
 */
static bool fstab_only(const char *opt)
{
	static const char *const words[] = {"defaults", "auto", "noauto",
					    "nofail", "_netdev"};

	if (strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0)
		return true;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(opt, words[i]) == 0)
			return true;
	return false;
}

/* "30", "30s", "500ms", "10m", "2h", "1d" -> milliseconds. */
static int parse_duration(const char *s, long long *ms)
{
	static const struct {
		const char *unit;
		long long ms;
	} units[] = {{"", 1000}, {"s", 1000}, {"ms", 1},
		     {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	unsigned long long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		/* More than a few centuries is a typo. */
		if (v > (1ULL << 40) / (unsigned long long)units[i].ms)
			return -ERANGE;
		*ms = (long long)v * units[i].ms;
		return 0;
	}
	return -EINVAL;
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct opts *o = data;
	char **pos;

	(void)outargs;
	switch (key) {
	case K_HELP:
		o->help = true;
		return 0;
	case K_VERSION:
		o->version = true;
		return 0;
	case K_INIT:
		o->init = true;
		return 0;
	case K_UNSEALED:
		o->allow_unsealed = true;
		return 0;
	case K_FOREGROUND:
		o->foreground = true;
		return 0;
	case K_DEBUG:
		o->debug = true;
		o->foreground = true;
		return 0;
	case K_SINGLE:
		o->single = true;
		return 0;
	case K_IDLE:
		if (parse_duration(arg + 5, &o->idle_ms) < 0) {
			die_msg("idle=%s: not a duration (for example 90s, "
				"10m, 2h, 1d; no unit: seconds)",
				arg + 5);
			return -1;
		}
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (o->from_config || o->npos >= 2) {
			die_msg("unexpected argument '%s'", arg);
			return -1;
		}
		pos = o->npos++ == 0 ? &o->backing : &o->mountpoint;
		*pos = strdup(arg);
		return *pos ? 0 : -1;
	default:
		/* Anything libfuse knows is checked by fuse_session_new(). */
		if (arg[0] == '-') {
			die_msg("unknown option '%s'", arg);
			return -1;
		}
		if (fstab_only(arg))
			return 0;
		return add_fuse_opt(o, arg) < 0 ? -1 : 0;
	}
}

/*
 * argv with "--keyring FILE" and "--keyring=FILE" (and the other long
 * options with a value) turned into "-okeyring=FILE", escaped.
 */
static int normalise_args(struct fuse_args *out, int argc, char **argv)
{
	bool rest = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = NULL, *name = NULL;
		char *esc, *o;
		int ret;

		for (size_t j = 0; !rest && i > 0 &&
				   j < sizeof(long_opts) / sizeof(long_opts[0]);
		     j++) {
			size_t n = strlen(long_opts[j].name);

			if (strncmp(a, long_opts[j].name, n) != 0 ||
			    (a[n] != '\0' && a[n] != '='))
				continue;
			name = long_opts[j].opt;
			if (a[n] == '=') {
				val = a + n + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				die_msg("option '%s' needs a value", a);
				return -EINVAL;
			}
		}
		if (name == NULL) {
			if (strcmp(a, "--") == 0)
				rest = true;
			/* The value of -o is never an option itself. */
			if (!rest && strcmp(a, "-o") == 0 && i + 1 < argc &&
			    fuse_opt_add_arg(out, argv[i++]) < 0)
				return -ENOMEM;
			if (fuse_opt_add_arg(out, argv[i]) < 0)
				return -ENOMEM;
			continue;
		}
		esc = opt_escape(val);
		if (esc == NULL || asprintf(&o, "-o%s=%s", name, esc) < 0) {
			free(esc);
			return -ENOMEM;
		}
		free(esc);
		ret = fuse_opt_add_arg(out, o);
		free(o);
		if (ret < 0)
			return -ENOMEM;
	}
	return 0;
}

static void opts_free(struct opts *o)
{
	free(o->config);
	free(o->backing);
	free(o->mountpoint);
	free(o->keyring);
	free(o->passphrase_file);
	free(o->passphrase_command);
	for (size_t i = 0; i < o->nfuse_opts; i++)
		free(o->fuse_opts[i]);
	free(o->fuse_opts);
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	int ret;

	ret = normalise_args(&args, argc, argv);
	if (ret == 0 && fuse_opt_parse(&args, o, opt_spec, opt_proc) < 0)
		ret = -EINVAL;
	fuse_opt_free_args(&args);
	if (ret < 0 && !o->help)
		fputs("Try 'rekeyfs --help'.\n", stderr);
	return ret;
}

/* The config's options = line, in the same -o syntax. */
static int parse_config_options(struct opts *c, const char *path,
				const char *list)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	int ret = 0;

	c->from_config = true;
	c->idle_ms = -1;
	if (fuse_opt_add_arg(&args, "rekeyfs") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, list) < 0)
		ret = -ENOMEM;
	else if (fuse_opt_parse(&args, c, opt_spec, opt_proc) < 0)
		ret = -EINVAL;
	fuse_opt_free_args(&args);
	if (ret == 0 && c->config) {
		die_msg("%s: options: config= has no meaning in a config file",
			path);
		ret = -EINVAL;
	}
	if (ret == -EINVAL)
		die_msg("%s: bad options = line", path);
	return ret;
}

/* *dst = a copy of src if *dst is still unset; 0 or -ENOMEM. */
static int fill(char **dst, const char *src)
{
	if (*dst != NULL || src == NULL)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/*
 * Fill in what the command line left open from the config file: the
 * command line wins, then the [mount] keys, then the options = line.
 * The config's FUSE options come before the command line's, so that the
 * last of ro and rw is the command line's.
 */
static int apply_config(struct opts *o, struct rkfs_config **cfgp)
{
	struct rkfs_error err = {{0}};
	struct opts c = {0};
	struct rkfs_config *cfg;
	char **cli;
	size_t ncli;
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
	if (cfg->options) {
		ret = parse_config_options(&c, o->config, cfg->options);
		if (ret < 0)
			goto out;
	}
	ret = -ENOMEM;
	if (fill(&o->backing, cfg->backing) < 0 ||
	    (!o->init && fill(&o->mountpoint, cfg->mountpoint) < 0) ||
	    fill(&o->keyring, cfg->keyring) < 0 ||
	    fill(&o->keyring, c.keyring) < 0)
		goto out;
	if (o->passphrase_file == NULL && o->passphrase_command == NULL) {
		const char *f = cfg->passphrase_file, *cmd = cfg->passphrase_command;

		if (f == NULL && cmd == NULL) {
			f = c.passphrase_file;
			cmd = c.passphrase_command;
		}
		if (fill(&o->passphrase_file, f) < 0 ||
		    fill(&o->passphrase_command, cmd) < 0)
			goto out;
	}
	if (o->idle_ms < 0)
		o->idle_ms = c.idle_ms;
	o->allow_unsealed |= c.allow_unsealed;
	o->debug |= c.debug;
	o->foreground |= c.debug;
	/* the config's FUSE options, then the command line's */
	cli = o->fuse_opts;
	ncli = o->nfuse_opts;
	o->fuse_opts = c.fuse_opts;
	o->nfuse_opts = c.nfuse_opts;
	c.fuse_opts = NULL;
	c.nfuse_opts = 0;
	ret = 0;
	for (size_t i = 0; i < ncli; i++) {
		if (ret == 0 && add_fuse_opt(o, cli[i]) < 0)
			ret = -ENOMEM;
		free(cli[i]);
	}
	free(cli);
	if (ret < 0)
		goto out;
	if (o->backing == NULL || (o->mountpoint == NULL && !o->init)) {
		die_msg("%s: [mount] needs backing and mountpoint (or give "
			"them on the command line)",
			o->config);
		ret = -EINVAL;
	}
out:
	if (ret == -ENOMEM)
		die_msg("out of memory");
	opts_free(&c);
	return ret;
}

/*
 * The kernel applies ro and rw in order, the last one winning: resolve
 * them here the same way and hand libfuse only the result, so that the
 * daemon's idea of a read-only mount is the kernel's.  allow_other
 * brings default_permissions: the daemon opens every file with its own
 * rights, so the kernel must check other users' permissions.
 */
static int resolve_options(struct opts *o)
{
	size_t j = 0;

	o->ro = false;
	for (size_t i = 0; i < o->nfuse_opts; i++) {
		if (strcmp(o->fuse_opts[i], "ro") == 0 ||
		    strcmp(o->fuse_opts[i], "rw") == 0) {
			o->ro = o->fuse_opts[i][1] == 'o';
			free(o->fuse_opts[i]);
			continue;
		}
		o->fuse_opts[j++] = o->fuse_opts[i];
	}
	o->nfuse_opts = j;
	if (o->ro && add_fuse_opt(o, "ro") < 0)
		return -ENOMEM;
	if (has_opt(o, "allow_other") && !has_opt(o, "default_permissions") &&
	    add_fuse_opt(o, "default_permissions") < 0)
		return -ENOMEM;
	return 0;
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

/* The backing directory as an absolute, resolved path (malloc'd). */
static char *backing_path(const char *given)
{
	struct stat st;
	char *p;

	if (stat(given, &st) < 0) {
		die_msg("backing directory %s: %s", given, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		die_msg("backing directory %s: not a directory", given);
		return NULL;
	}
	p = realpath(given, NULL);
	if (p == NULL)
		die_msg("backing directory %s: %s", given, strerror(errno));
	return p;
}

/*
 * mount.fuse3 with drop_privileges mounts by itself and passes the
 * /dev/fuse fd as "/dev/fd/N" (fuse_session_mount() knows the form).
 */
static bool is_fd_mountpoint(const char *p)
{
	unsigned fd;
	char c;

	return sscanf(p, "/dev/fd/%u%c", &fd, &c) == 1;
}

/* Is path equal to or below dir (both resolved)? */
static bool path_within(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * The mountpoint as an absolute, resolved path (malloc'd), after checking
 * it: a directory with nothing mounted on it, and neither the backing
 * directory, nor inside it (the mount would show its own ciphertext to
 * itself), nor above it (the mount would hide the backing directory).
 */
static char *mountpoint_path(const char *given, const char *backing)
{
	char *mnt;

	if (is_fd_mountpoint(given))
		return strdup(given);
	if (check_mountpoint(given) < 0)
		return NULL;
	mnt = realpath(given, NULL);
	if (mnt == NULL) {
		die_msg("mountpoint %s: %s", given, strerror(errno));
		return NULL;
	}
	if (strcmp(mnt, backing) == 0)
		die_msg("mountpoint %s is the backing directory itself; mount "
			"on another directory",
			mnt);
	else if (path_within(mnt, backing))
		die_msg("mountpoint %s is inside the backing directory %s; "
			"mount outside it",
			mnt, backing);
	else if (path_within(backing, mnt))
		die_msg("mountpoint %s is above the backing directory %s: the "
			"mount would hide it; mount elsewhere",
			mnt, backing);
	else
		return mnt;
	free(mnt);
	return NULL;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void mountinfo_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
				      (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/*
 * Two mounts of one tree are safe (the rekey protocol's locks work
 * across mounts), but each caches names and attributes without seeing
 * the other's changes: say so, it is rarely meant.
 */
static void warn_mounted_elsewhere(const char *backing)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *mi = fopen("/proc/self/mountinfo", "re");

	while (mi && getline(&line, &cap, mi) > 0) {
		char point[4096], type[64], source[4096];
		const char *dash = strstr(line, " - ");

		if (dash == NULL ||
		    sscanf(line, "%*u %*u %*s %*s %4095s", point) != 1 ||
		    sscanf(dash, " - %63s %4095s", type, source) != 2 ||
		    strcmp(type, "fuse.rekeyfs") != 0)
			continue;
		mountinfo_unescape(source);
		mountinfo_unescape(point);
		if (strcmp(source, backing) == 0)
			rkfs_log(LOG_WARNING,
				 "backing directory %s is already mounted on "
				 "%s; the two mounts see each other's changes "
				 "only once their caches expire",
				 backing, point);
	}
	if (mi)
		fclose(mi);
	free(line);
}

/* ---- systemd ---- */

static char *notify_socket;

/*
 * sd_notify(3) without libsystemd: the protocol is one datagram to the
 * AF_UNIX socket named by $NOTIFY_SOCKET ("@" for the abstract
 * namespace).  The variable is taken out of the environment so that
 * passphrase and key commands do not inherit it.
 */
static void notify_init(void)
{
	const char *p = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;

	if (p && (p[0] == '/' || p[0] == '@') &&
	    strlen(p) < sizeof(sa.sun_path))
		notify_socket = strdup(p);
	unsetenv("NOTIFY_SOCKET");
}

static void notify(const char *msg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n;
	int fd;

	if (notify_socket == NULL)
		return;
	n = strlen(notify_socket);
	memcpy(sa.sun_path, notify_socket, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		rkfs_log(LOG_WARNING, "cannot notify systemd (%s): %s",
			 notify_socket, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * A sealed keyring's passphrase at boot, without a terminal: a unit with
 * LoadCredential=passphrase:FILE (or LoadCredentialEncrypted=) puts it in
 * $CREDENTIALS_DIRECTORY/passphrase, used when no other source is given.
 */
static int use_credential(struct opts *o)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	struct stat st;
	char *path;

	if (o->passphrase_file || o->passphrase_command || dir == NULL ||
	    dir[0] != '/')
		return 0;
	if (asprintf(&path, "%s/passphrase", dir) < 0)
		return -ENOMEM;
	if (lstat(path, &st) == 0)
		o->passphrase_file = path;
	else
		free(path);
	return 0;
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
 * hard one (as root, the hard one to the kernel's nr_open first).  Near
 * it, the pruner has the kernel forget unused nodes (fuse_node.c); when
 * the nodes in use alone fill it, requests for new nodes fail with EMFILE
 * and one log line says so (fd_budget_retry()).
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

/* ---- set-up ---- */

/*
 * rekeyfs --init: make an empty directory a rekeyfs tree for the keyring
 * (rkfs_meta_open() with RKFS_META_CREATE: mode 0700, the metadata file,
 * the primary's check value).  A tree already set up for this keyring is
 * left alone and is not an error, so scripts may run it every time.
 */
static int do_init(const struct opts *o)
{
	struct rkfs_error err = {{0}};
	struct rkfs_keyring *kr = NULL;
	struct rkfs_meta *m = NULL;
	char *backing = NULL, *keyring = NULL;
	int rootfd = -1, ret, code = EXIT_USAGE;

	if (o->backing == NULL || o->npos > 1) {
		die_msg("--init takes the backing directory only: rekeyfs "
			"--init --keyring FILE BACKING");
		return EXIT_USAGE;
	}
	if (o->keyring == NULL) {
		die_msg("no keyring: give --keyring FILE (or keyring = in the "
			"config); rekeyfs-key init --keyring FILE creates one");
		return EXIT_USAGE;
	}
	code = EXIT_BACKING;
	backing = backing_path(o->backing);
	if (backing == NULL)
		goto out;
	code = EXIT_USAGE;
	if (rkfs_crypt_init() < 0) {
		die_msg("libsodium failed to initialise");
		goto out;
	}
	if (setup_passphrase(o) < 0)
		goto out;
	code = EXIT_KEYRING;
	keyring = absolute(o->keyring);
	if (keyring == NULL) {
		die_msg("keyring %s: %s", o->keyring, strerror(errno));
		goto out;
	}
	ret = rkfs_keyring_load(&kr, keyring, RKFS_KR_LOAD_KEYS, &err);
	if (ret < 0) {
		die_msg("%s", err.msg[0] ? err.msg : strerror(-ret));
		goto out;
	}
	code = EXIT_BACKING;
	rootfd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		die_msg("backing directory %s: %s", backing, strerror(errno));
		goto out;
	}
	ret = rkfs_meta_load(&m, rootfd, &err);
	if (ret == 0) {
		ret = rkfs_meta_check(m, kr, backing, &err);
		if (ret == 0)
			printf("%s is already set up, and the keyring fits; "
			       "nothing to do\n",
			       backing);
	} else if (ret == -ENOENT) {
		err.msg[0] = '\0';
		ret = rkfs_meta_open(&m, rootfd, backing, kr,
				     RKFS_META_CREATE | RKFS_META_RECORD, &err);
		if (ret == 0)
			printf("set up %s for keyring %s\nmount it with: "
			       "rekeyfs --keyring %s %s MOUNTPOINT\n",
			       backing, keyring, keyring, backing);
	}
	if (ret < 0) {
		die_msg("%s", err.msg[0] ? err.msg : strerror(-ret));
		if (ret == -EKEYREJECTED || ret == -EPERM)
			code = EXIT_KEYRING;
		goto out;
	}
	code = 0;
out:
	rkfs_meta_free(m);
	rkfs_keyring_free(kr);
	rkfs_keyring_forget_passphrases();
	if (rootfd >= 0)
		close(rootfd);
	free(backing);
	free(keyring);
	return code;
}

/* ---- main ---- */

/*
 * The session, created before anything is touched: fuse_session_new()
 * is what rejects an unknown mount option.  NULL on error.
 */
static struct fuse_session *new_session(const struct opts *o,
					const char *backing, const char *argv0,
					struct fuse_args *args)
{
	char *list = NULL, *esc, *fsname = NULL;
	struct fuse_session *se = NULL;

	esc = opt_escape(backing);
	list = fuse_opt_list(o);
	if (esc == NULL || list == NULL ||
	    asprintf(&fsname, "subtype=rekeyfs,fsname=%s", esc) < 0) {
		fsname = NULL;
		die_msg("out of memory");
		goto out;
	}
	if (fuse_opt_add_arg(args, argv0) < 0 ||
	    (o->debug && fuse_opt_add_arg(args, "-d") < 0) ||
	    fuse_opt_add_arg(args, "-o") < 0 ||
	    fuse_opt_add_arg(args, fsname) < 0 ||
	    (list[0] && (fuse_opt_add_arg(args, "-o") < 0 ||
			 fuse_opt_add_arg(args, list) < 0))) {
		die_msg("out of memory");
		goto out;
	}
	se = fuse_session_new(args, rkfs_fs_operations(),
			      sizeof(struct fuse_lowlevel_ops), NULL);
	if (se == NULL)
		die_msg("bad mount option in -o %s (see above); nothing was "
			"changed",
			list);
out:
	free(esc);
	free(list);
	free(fsname);
	return se;
}

int main(int argc, char **argv)
{
	struct rkfs_mount_state state = {.rootfd = -1};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct rkfs_error err = {{0}};
	struct rkfs_keyring *kr = NULL;
	struct rkfs_config *cfg = NULL;
	char *backing = NULL, *mnt = NULL, *keyring = NULL;
	struct fuse_session *se = NULL;
	struct rlimit rl = {0, 0};
	struct opts opt = {.idle_ms = -1};
	bool fs_ready = false, mounted = false, by_fd;
	int ret, code = EXIT_USAGE;
	unsigned mflags;

	umask(0);
	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rkfs_log_set_sink(log_sink);
	notify_init();

	if (parse_args(&opt, argc, argv) < 0)
		goto out;
	if (opt.help) {
		usage(stdout);
		code = 0;
		goto out;
	}
	if (opt.version) {
		printf("rekeyfs %s (libfuse %s)\n", RKFS_VERSION,
		       fuse_pkgversion());
		code = 0;
		goto out;
	}
	if (apply_config(&opt, &cfg) < 0)
		goto out;
	if (opt.allow_unsealed)
		rkfs_keyring_allow_unsealed(true);
	if (opt.debug)
		rkfs_log_set_level(LOG_DEBUG);
	if (use_credential(&opt) < 0)
		goto out;
	if (opt.init) {
		code = do_init(&opt);
		goto out;
	}
	if (opt.backing == NULL || opt.mountpoint == NULL) {
		die_msg("expected BACKING and MOUNTPOINT (or --config FILE)");
		usage(stderr);
		goto out;
	}
	if (opt.keyring == NULL) {
		die_msg("no keyring: give --keyring FILE (or keyring = in the "
			"config)");
		goto out;
	}
	if (resolve_options(&opt) < 0) {
		die_msg("out of memory");
		goto out;
	}

	/* Everything that can be refused is checked before the passphrase
	 * is asked for and before anything is written. */
	code = EXIT_BACKING;
	backing = backing_path(opt.backing);
	if (backing == NULL)
		goto out;
	code = EXIT_USAGE;
	se = new_session(&opt, backing, argv[0], &args);
	if (se == NULL)
		goto out;
	code = EXIT_MOUNTPOINT;
	mnt = mountpoint_path(opt.mountpoint, backing);
	if (mnt == NULL)
		goto out;
	by_fd = is_fd_mountpoint(mnt);
	warn_mounted_elsewhere(backing);
	if (opt.idle_ms > 0 && by_fd)
		rkfs_log(LOG_WARNING, "idle=: not available when mount.fuse3 "
				      "passes the mountpoint as %s",
			 mnt);

	code = EXIT_USAGE;
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
	state.rootfd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (state.rootfd < 0) {
		die_msg("backing directory %s: %s", backing, strerror(errno));
		goto out;
	}
	if (check_openat2(state.rootfd) < 0)
		goto out;
	raise_fd_limit();
	if (has_opt(&opt, "allow_other"))
		warn_reachable(backing);
	/* Never RKFS_META_CREATE: an unmounted disk is an empty directory
	 * too, and must not become a new, empty vault. */
	mflags = opt.ro ? 0 : RKFS_META_RECORD;
	ret = rkfs_meta_open(&state.meta, state.rootfd, backing, kr, mflags,
			     &err);
	if (ret == -ENOENT) {
		die_msg("%s; to set up an empty directory: rekeyfs --init "
			"--keyring %s %s",
			err.msg, opt.keyring, backing);
		goto out;
	}
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

	code = EXIT_FUSE;
	state.root = backing;
	state.keyring = keyring;
	state.ro = opt.ro;
	state.single = opt.single;
	ret = rkfs_fs_setup(&state, kr);
	kr = NULL; /* owned by the FUSE layer now */
	fs_ready = true;
	if (ret < 0) {
		die_msg("backing directory %s: %s", backing, strerror(-ret));
		goto out;
	}
	if (start_watchers(keyring) < 0) {
		die_msg("cannot set up keyring reload");
		goto out;
	}
	if (fuse_session_mount(se, mnt) != 0) {
		die_msg("cannot mount on %s", mnt);
		goto out;
	}
	mounted = true;
	if (rkfs_wire_install(se) != 0) {
		die_msg("cannot set up the FUSE channel");
		goto out;
	}
	if (fuse_daemonize(opt.foreground) != 0)
		goto out;
	rkfs_se = se;
	/* In the foreground (a systemd unit, a terminal) stderr is the log:
	 * the journal would get every line twice. */
	if (!opt.foreground) {
		openlog("rekeyfs", LOG_PID, LOG_DAEMON);
		log_to_syslog = true;
		log_to_stderr = false;
	}
	/* mlock does not survive fork(). */
	rkfs_fs_relock_keys();
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (start_reload_thread() < 0)
		rkfs_log(LOG_WARNING, "keyring reload on SIGHUP unavailable");
	if (rkfs_nodes_prune_start(se) < 0)
		rkfs_log(LOG_WARNING, "no node pruner: past the fd limit, "
				      "new files fail with EMFILE");
	if (!by_fd)
		raise_readahead(mnt);
	if (opt.idle_ms > 0 && !by_fd &&
	    rkfs_idle_start(mnt, (uint64_t)opt.idle_ms) < 0)
		rkfs_log(LOG_WARNING, "idle=: cannot start the idle timer");
	rkfs_log(LOG_INFO, "mounted %s on %s", backing, mnt);
	{
		char msg[64];

		snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%ld",
			 (long)getpid());
		notify(msg);
	}

	if (opt.single)
		ret = fuse_session_loop(se);
	else
		ret = rkfs_loop_run(se);
	code = ret == 0 ? 0 : EXIT_FUSE;
	/* Logged before STOPPING=1, so whoever watches for that finds
	 * the line already there. */
	rkfs_log(LOG_INFO, "unmounted %s from %s", backing, mnt);
	notify("STOPPING=1");
	rkfs_idle_stop();
	stop_reload_thread();
	fuse_remove_signal_handlers(se);
out:
	rkfs_se = NULL;
	if (mounted)
		fuse_session_unmount(se);
	/* After the unmount: an invalidation it is sending may wait for a
	 * directory a request nobody answers now holds until then. */
	rkfs_nodes_prune_stop();
	if (se)
		fuse_session_destroy(se);
	if (fs_ready)
		rkfs_fs_teardown();
	rkfs_keyring_free(kr);
	rkfs_keyring_forget_passphrases();
	rkfs_meta_free(state.meta);
	if (state.rootfd >= 0)
		close(state.rootfd);
	fuse_opt_free_args(&args);
	rkfs_config_free(cfg);
	opts_free(&opt);
	free(notify_socket);
	free(backing);
	free(mnt);
	free(keyring);
	return code;
}
