/*
 * posixsem: POSIX-semantics checks whose output must not depend on the
 * filesystem they run on.
 *
 *   posixsem [-l] DIR
 *
 * Runs many small, independent checks, each in a fresh subdirectory of
 * DIR, and prints one line per check: "who/group.case: outcome", where the
 * outcome is "ok", an errno name, or values that do not depend on where
 * DIR lives (modes in octal, owners as names, link counts, sizes, which
 * timestamps advanced, times the check set itself).  Run it on a rekeyfs
 * mount and on a plain directory and diff the two outputs.
 *
 * It must run as root: each check runs in a child process that switches
 * between root and the unprivileged identities below with setresuid(),
 * keeping saved uid 0 so it can switch back.  Generic groups run twice, as
 * "root/" and as user A ("user/"); cross-user groups ("x/") run once and
 * switch between root, A, B and C themselves.  -l lists the groups.
 *
 * Exit status: 0 when every check ran (whatever its outcome), 1 when a
 * check's setup failed or its child died, 2 on bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* Identities.  A is in group S, B in none, C in S: S is the shared group,
 * G a group none of them is in. */
enum who { ROOT, UA, UB, UC, NWHO };

#define UID_A 65534
#define UID_B 65533
#define UID_C 65530
#define GID_A 65534
#define GID_B 65533
#define GID_C 65530
#define GID_G 65532
#define GID_S 65531

static const struct ident {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[2];
} ids[NWHO] = {
    [ROOT] = {0, 0, 0, {0, 0}},
    [UA] = {UID_A, GID_A, 2, {GID_A, GID_S}},
    [UB] = {UID_B, GID_B, 1, {GID_B, 0}},
    [UC] = {UID_C, GID_C, 2, {GID_C, GID_S}},
};

static enum who self; /* the identity a generic group runs as */
static const char *prefix = "";
static const char *group = "";

/* ---- output --------------------------------------------------------------
 */

static void say(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("%s%s.%s: ", prefix, group, name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static const char *ename(int e)
{
	const char *n;

	if (e == 0)
		return "ok";
	n = strerrorname_np(e);
	return n ? n : "E?";
}

/* A small ring of buffers for the string-returning formatters. */
static char *tmpbuf(void)
{
	static char ring[16][512];
	static int next;

	return ring[next++ % 16];
}

static const char *tfmt(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static const char *tfmt(const char *fmt, ...)
{
	char *b = tmpbuf();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, 512, fmt, ap);
	va_end(ap);
	return b;
}

/* 0 for success (any non-negative result), -errno for failure. */
static int E(long r)
{
	return r < 0 ? -errno : 0;
}

/* Like E, for calls that return an fd: closes it. */
static int F(int fd)
{
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static void rc(const char *name, int r)
{
	say(name, "%s", ename(-r));
}

/* Setup steps must work; a failure ends the group with a line saying
 * where. */
static void setup_fail(int line, const char *what)
{
	int e = errno;

	printf("%s%s: SETUP FAILED at line %d (%s): %s\n", prefix, group, line,
	       what, ename(e));
	fflush(stdout);
	_exit(1);
}

#define X(call)                                                                \
	do {                                                                   \
		if ((long)(call) < 0)                                          \
			setup_fail(__LINE__, #call);                           \
	} while (0)

/* ---- identities ----------------------------------------------------------
 */

static void as(enum who w)
{
	const struct ident *id = &ids[w];

	if (setresuid(0, 0, 0) < 0 || setresgid(0, 0, 0) < 0 ||
	    setgroups((size_t)id->ngroups, id->groups) < 0 ||
	    setresgid(id->gid, id->gid, 0) < 0 ||
	    setresuid(id->uid, id->uid, 0) < 0)
		setup_fail(__LINE__, "switch identity");
}

static const char *uname_of(uid_t u)
{
	switch (u) {
	case 0:
		return "root";
	case UID_A:
		return "A";
	case UID_B:
		return "B";
	case UID_C:
		return "C";
	}
	return tfmt("%u", (unsigned)u);
}

static const char *gname_of(gid_t g)
{
	switch (g) {
	case 0:
		return "root";
	case GID_A:
		return "A";
	case GID_B:
		return "B";
	case GID_C:
		return "C";
	case GID_G:
		return "G";
	case GID_S:
		return "S";
	}
	return tfmt("%u", (unsigned)g);
}

/* ---- stat formatters -----------------------------------------------------
 */

static const char *mode_s(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return ename(errno);
	return tfmt("%o", (unsigned)st.st_mode);
}

static const char *fmode_s(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return ename(errno);
	return tfmt("%o", (unsigned)st.st_mode);
}

static const char *own_s(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return ename(errno);
	return tfmt("%s:%s", uname_of(st.st_uid), gname_of(st.st_gid));
}

/* mode of what path resolves to */
static const char *smode_s(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return ename(errno);
	return tfmt("%o", (unsigned)st.st_mode);
}

/* owner, group and mode in one */
static const char *om_s(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return ename(errno);
	return tfmt("%s:%s %o", uname_of(st.st_uid), gname_of(st.st_gid),
		    (unsigned)st.st_mode);
}

static const char *nlink_s(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return ename(errno);
	return tfmt("%lu", (unsigned long)st.st_nlink);
}

static long nlink_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -1;
	return (long)st.st_nlink;
}

static const char *size_s(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return ename(errno);
	return tfmt("%lld", (long long)st.st_size);
}

static const char *fsize_s(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return ename(errno);
	return tfmt("%lld", (long long)st.st_size);
}

/* "exists" or the errno name of lstat */
static const char *ex_s(const char *path)
{
	struct stat st;

	return lstat(path, &st) < 0 ? ename(errno) : "exists";
}

/* The first bytes of a file as text, or an errno name. */
static const char *content_s(const char *path)
{
	char *b = tmpbuf();
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return ename(errno);
	n = read(fd, b, 100);
	close(fd);
	if (n < 0)
		return ename(errno);
	b[n] = '\0';
	return tfmt("'%s'", b);
}

/* ---- times ---------------------------------------------------------------
 */

struct tsnap {
	struct timespec a, m, c;
	int err;
};

static struct tsnap tsnap_of(const struct stat *st)
{
	struct tsnap s = {st->st_atim, st->st_mtim, st->st_ctim, 0};

	return s;
}

static struct tsnap tget(const char *path)
{
	struct stat st;
	struct tsnap s = {{0, 0}, {0, 0}, {0, 0}, 0};

	if (lstat(path, &st) < 0) {
		s.err = errno;
		return s;
	}
	return tsnap_of(&st);
}

static struct tsnap tgetfd(int fd)
{
	struct stat st;
	struct tsnap s = {{0, 0}, {0, 0}, {0, 0}, 0};

	if (fstat(fd, &st) < 0) {
		s.err = errno;
		return s;
	}
	return tsnap_of(&st);
}

static int tcmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

/*
 * Wait until the coarse clock (the one file timestamps come from) has
 * passed every time in s, so that whatever the next operation stamps is
 * strictly later.
 */
static void settle(const struct tsnap *s)
{
	struct timespec now, nap = {0, 500000};
	const struct timespec *t[3] = {&s->a, &s->m, &s->c};

	for (int i = 0; i < 3; i++) {
		for (;;) {
			clock_gettime(CLOCK_REALTIME_COARSE, &now);
			if (tcmp(&now, t[i]) > 0)
				break;
			nanosleep(&nap, NULL);
		}
	}
}

/* A snapshot of path taken after the clock has moved past its times. */
static struct tsnap tbefore(const char *path)
{
	struct tsnap s = tget(path);

	settle(&s);
	return s;
}

static const char *rel1(const struct timespec *b, const struct timespec *a)
{
	int c = tcmp(a, b);

	return c > 0 ? "advanced" : c == 0 ? "unchanged" : "went back";
}

/* "atime X, mtime Y, ctime Z" for a before/after pair */
static const char *trel(const struct tsnap *b, const struct tsnap *a)
{
	if (b->err || a->err)
		return tfmt("stat %s/%s", ename(b->err), ename(a->err));
	return tfmt("atime %s, mtime %s, ctime %s", rel1(&b->a, &a->a),
		    rel1(&b->m, &a->m), rel1(&b->c, &a->c));
}

/* mtime and ctime only, for directories (their atime depends on reads) */
static const char *trel_mc(const struct tsnap *b, const struct tsnap *a)
{
	if (b->err || a->err)
		return tfmt("stat %s/%s", ename(b->err), ename(a->err));
	return tfmt("mtime %s, ctime %s", rel1(&b->m, &a->m),
		    rel1(&b->c, &a->c));
}

/*
 * A time the check set itself, exactly; one within a day of the clock
 * (not set by the check, so it differs from run to run) as "now".
 */
static const char *ts_s(const struct timespec *t)
{
	time_t now = time(NULL);

	if (t->tv_sec > now - 86400 && t->tv_sec < now + 86400)
		return "now";
	return tfmt("%lld.%09ld", (long long)t->tv_sec, t->tv_nsec);
}

static int set_times(const char *path, time_t as, long ans, time_t ms, long mns,
		     int flags)
{
	struct timespec ts[2] = {{as, ans}, {ms, mns}};

	return E(utimensat(AT_FDCWD, path, ts, flags));
}

/* ---- object creation (setup: must succeed) -------------------------------
 */

static void mkf(const char *path, mode_t mode, const char *data)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, mode);
	size_t len = strlen(data);

	if (fd < 0)
		setup_fail(__LINE__, path);
	if (len && write(fd, data, len) != (ssize_t)len)
		setup_fail(__LINE__, path);
	close(fd);
}

static void mkd(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0)
		setup_fail(__LINE__, path);
	/* mkdir drops sgid from the mode; chmod sets exactly what is asked */
	if ((mode & S_ISGID) && chmod(path, mode) < 0)
		setup_fail(__LINE__, path);
}

static void mkf_size(const char *path, off_t size)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);

	if (fd < 0 || ftruncate(fd, size) < 0)
		setup_fail(__LINE__, path);
	close(fd);
}

static void fill(char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (char)('a' + (i * 7 + seed + i / 4096) % 26);
}

/* Is the range all zero bytes ("zeros"), or what? */
static const char *zeros_s(int fd, off_t off, size_t len)
{
	char *b = malloc(len);
	ssize_t n;
	size_t i;

	if (b == NULL)
		setup_fail(__LINE__, "malloc");
	n = pread(fd, b, len, off);
	if (n < 0) {
		free(b);
		return ename(errno);
	}
	for (i = 0; i < (size_t)n && b[i] == 0; i++)
		;
	free(b);
	if ((size_t)n != len)
		return tfmt("short read %zd", n);
	return i == len ? "zeros" : tfmt("nonzero at +%zu", i);
}

static char name255[256], name256[257];

/* ---- generic groups: run as root and as user A ---------------------------
 */

static void g_open(void)
{
	char p[300];
	int fd;

	mkf("f", 0644, "hello");
	mkd("d", 0755);
	X(symlink("f", "sl"));
	X(symlink("nowhere", "dangle"));
	X(symlink("l2", "l1"));
	X(symlink("l1", "l2"));
	X(mkfifo("p", 0644));
	rc("enoent", F(open("nope", O_RDONLY)));
	rc("creat_missing_parent",
	   F(open("nodir/f", O_CREAT | O_WRONLY, 0644)));
	rc("excl_exists", F(open("f", O_CREAT | O_EXCL | O_WRONLY, 0644)));
	rc("excl_dir", F(open("d", O_CREAT | O_EXCL | O_RDONLY, 0644)));
	rc("excl_dangling_symlink",
	   F(open("dangle", O_CREAT | O_EXCL | O_WRONLY, 0644)));
	rc("creat_through_dangling_symlink",
	   F(open("dangle", O_CREAT | O_WRONLY, 0640)));
	say("creat_through_dangling_symlink_target", "%s", mode_s("nowhere"));
	rc("dir_wronly", F(open("d", O_WRONLY)));
	rc("dir_rdwr", F(open("d", O_RDWR)));
	rc("dir_rdonly", F(open("d", O_RDONLY)));
	rc("dir_creat", F(open("d", O_CREAT | O_WRONLY, 0644)));
	rc("dir_creat_rdonly", F(open("d", O_CREAT | O_RDONLY, 0644)));
	rc("notdir_component", F(open("f/x", O_RDONLY)));
	rc("notdir_component_creat", F(open("f/x", O_CREAT | O_WRONLY, 0644)));
	rc("o_directory_on_file", F(open("f", O_RDONLY | O_DIRECTORY)));
	rc("o_directory_on_dir", F(open("d", O_RDONLY | O_DIRECTORY)));
	rc("nofollow_symlink", F(open("sl", O_RDONLY | O_NOFOLLOW)));
	rc("nofollow_file", F(open("f", O_RDONLY | O_NOFOLLOW)));
	rc("follow_symlink", F(open("sl", O_RDONLY)));
	rc("symlink_loop", F(open("l1", O_RDONLY)));
	rc("trailing_slash_file", F(open("f/", O_RDONLY)));
	rc("trailing_slash_creat", F(open("new/", O_CREAT | O_WRONLY, 0644)));
	say("trailing_slash_creat_left", "%s", ex_s("new"));
	rc("name_255_creat", F(open(name255, O_CREAT | O_WRONLY, 0644)));
	rc("name_255_stat", E(access(name255, F_OK)));
	rc("name_256_creat", F(open(name256, O_CREAT | O_WRONLY, 0644)));
	rc("name_256_open", F(open(name256, O_RDONLY)));
	snprintf(p, sizeof(p), "%s/x", name256);
	rc("name_256_component", F(open(p, O_RDONLY)));
	rc("fifo_nonblock_rd", F(open("p", O_RDONLY | O_NONBLOCK)));
	rc("fifo_nonblock_wr_noreader", F(open("p", O_WRONLY | O_NONBLOCK)));

	/* O_CREAT without write access: a new, empty, read-only fd */
	fd = open("cr", O_CREAT | O_RDONLY, 0644);
	rc("creat_rdonly", E(fd));
	if (fd >= 0) {
		char c;

		rc("creat_rdonly_write", E(write(fd, "x", 1)));
		say("creat_rdonly_read", "%zd", read(fd, &c, 1));
		close(fd);
	}
	say("creat_rdonly_mode", "%s", mode_s("cr"));
	/* an existing file's mode is not changed by O_CREAT */
	rc("creat_existing", F(open("f", O_CREAT | O_WRONLY, 0600)));
	say("creat_existing_mode", "%s", mode_s("f"));
	say("creat_existing_size", "%s", size_s("f"));
	rc("rdonly_trunc", F(open("f", O_RDONLY | O_TRUNC)));
	say("rdonly_trunc_size", "%s", size_s("f"));

	/* permission bits of one's own file */
	mkf("z", 0, "zzz");
	rc("mode000_rd", F(open("z", O_RDONLY)));
	rc("mode000_wr", F(open("z", O_WRONLY)));
	mkf("r", 0444, "rrr");
	rc("mode444_wr", F(open("r", O_WRONLY)));
	rc("mode444_trunc", F(open("r", O_RDONLY | O_TRUNC)));
	say("mode444_trunc_size", "%s", size_s("r"));
	mkd("dx", 0600);
	mkf("dx2", 0644, "");
	rc("dir_noexec_lookup", F(open("dx/any", O_RDONLY)));
	mkd("dw", 0555);
	rc("dir_nowrite_creat", F(open("dw/new", O_CREAT | O_WRONLY, 0644)));
}

static void g_creat(void)
{
	int fd;

	mkf("f", 0640, "some data");
	mkd("d", 0755);
	fd = creat("f", 0600);
	rc("existing", E(fd));
	if (fd >= 0) {
		rc("existing_write", E(write(fd, "ab", 2)));
		close(fd);
	}
	say("existing_size", "%s", size_s("f"));
	say("existing_mode", "%s", mode_s("f"));
	rc("new", F(creat("n", 0751)));
	say("new_mode", "%s", mode_s("n"));
	rc("missing_parent", F(creat("nodir/n", 0644)));
	rc("on_dir", F(creat("d", 0644)));
	rc("name_256", F(creat(name256, 0644)));
	rc("trunc_existing_wronly", F(open("n", O_WRONLY | O_TRUNC)));
	say("trunc_existing_wronly_mode", "%s", mode_s("n"));
}

static void g_mkdir(void)
{
	struct stat st;

	mkf("f", 0644, "");
	mkd("d", 0755);
	X(symlink("nowhere", "dangle"));
	rc("exists_dir", E(mkdir("d", 0755)));
	rc("exists_file", E(mkdir("f", 0755)));
	rc("exists_symlink", E(mkdir("dangle", 0755)));
	rc("missing_parent", E(mkdir("nodir/x", 0755)));
	rc("notdir_component", E(mkdir("f/x", 0755)));
	rc("trailing_slash", E(mkdir("t/", 0755)));
	say("trailing_slash_mode", "%s", mode_s("t"));
	rc("dot", E(mkdir(".", 0755)));
	rc("dotdot_in_sub", E(mkdir("d/..", 0755)));
	rc("name_256", E(mkdir(name256, 0755)));
	rc("name_255", E(mkdir(name255, 0755)));
	rc("nested", E(mkdir("d/e", 0700)));
	say("nested_mode", "%s", mode_s("d/e"));
	say("new_nlink", "%s", nlink_s("d/e"));
	X(lstat("d", &st));
	say("parent_nlink", "%lu", (unsigned long)st.st_nlink);
	mkd("dw", 0555);
	rc("in_nowrite_dir", E(mkdir("dw/x", 0755)));
}

static void g_mknod(void)
{
	struct stat st;

	mkf("f", 0644, "");
	rc("fifo", E(mkfifo("p", 0640)));
	say("fifo_mode", "%s", mode_s("p"));
	rc("fifo_exists", E(mkfifo("p", 0640)));
	rc("fifo_over_file", E(mkfifo("f", 0640)));
	rc("fifo_missing_parent", E(mkfifo("nodir/p", 0640)));
	rc("fifo_notdir", E(mkfifo("f/p", 0640)));
	rc("mknod_fifo", E(mknod("p2", S_IFIFO | 0600, 0)));
	say("mknod_fifo_mode", "%s", mode_s("p2"));
	rc("mknod_reg", E(mknod("r", S_IFREG | 0604, 0)));
	say("mknod_reg_mode", "%s", mode_s("r"));
	say("mknod_reg_size", "%s", size_s("r"));
	rc("mknod_type0", E(mknod("r0", 0644, 0)));
	say("mknod_type0_mode", "%s", mode_s("r0"));
	rc("mknod_sock", E(mknod("s", S_IFSOCK | 0755, 0)));
	say("mknod_sock_mode", "%s", mode_s("s"));
	rc("mknod_dir", E(mknod("dd", S_IFDIR | 0755, 0)));
	rc("mknod_chr", E(mknod("c", S_IFCHR | 0640, makedev(1, 3))));
	if (lstat("c", &st) == 0)
		say("mknod_chr_stat", "%o %u:%u", (unsigned)st.st_mode,
		    major(st.st_rdev), minor(st.st_rdev));
	else
		say("mknod_chr_stat", "%s", ename(errno));
	rc("mknod_blk", E(mknod("b", S_IFBLK | 0640, makedev(7, 0))));
	say("mknod_blk_mode", "%s", mode_s("b"));
	say("fifo_nlink", "%s", nlink_s("p"));
	say("fifo_size", "%s", size_s("p"));
}

static void g_symlink(void)
{
	char big[4100], buf[4200];
	ssize_t n;

	mkf("f", 0644, "");
	mkd("d", 0755);
	rc("new", E(symlink("target/x", "s")));
	say("mode", "%s", mode_s("s"));
	say("size", "%s", size_s("s"));
	say("nlink", "%s", nlink_s("s"));
	n = readlink("s", buf, sizeof(buf));
	say("readback", "%s", n < 0 ? ename(errno) : tfmt("%.*s", (int)n, buf));
	rc("exists", E(symlink("x", "s")));
	rc("over_file", E(symlink("x", "f")));
	rc("over_dir", E(symlink("x", "d")));
	rc("missing_parent", E(symlink("x", "nodir/s")));
	rc("notdir_component", E(symlink("x", "f/s")));
	rc("empty_target", E(symlink("", "e")));
	rc("name_256", E(symlink("x", name256)));
	memset(big, 'y', 4095);
	big[4095] = '\0';
	rc("target_4095", E(symlink(big, "big")));
	say("target_4095_size", "%s", size_s("big"));
	n = readlink("big", buf, sizeof(buf));
	say("target_4095_readlink", "%zd", n < 0 ? (ssize_t)-errno : n);
	big[4095] = 'y';
	big[4096] = '\0';
	rc("target_4096", E(symlink(big, "big2")));
	rc("to_dir", E(symlink("d", "sd")));
	rc("to_dir_traverse", F(open("sd/", O_RDONLY | O_DIRECTORY)));
	say("stat_follows", "%s", smode_s("sd"));
	rc("absolute", E(symlink("/nonexistent/abs", "abs")));
	n = readlink("abs", buf, sizeof(buf));
	say("absolute_readback", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, buf));
	rc("dangling_stat", E(access("s", F_OK)));
	mkd("dw", 0555);
	rc("in_nowrite_dir", E(symlink("x", "dw/s")));
}

static void g_link(void)
{
	mkf("f", 0644, "data");
	mkd("d", 0755);
	X(symlink("f", "sl"));
	X(symlink("nowhere", "dangle"));
	X(mkfifo("p", 0600));
	rc("new", E(link("f", "g")));
	say("new_nlink", "%s/%s", nlink_s("f"), nlink_s("g"));
	say("new_content", "%s", content_s("g"));
	rc("exists", E(link("f", "g")));
	rc("over_dir", E(link("f", "d")));
	rc("missing_src", E(link("nope", "h")));
	rc("missing_parent", E(link("f", "nodir/h")));
	rc("notdir_component", E(link("f", "f/h")));
	rc("dir", E(link("d", "d2")));
	rc("symlink_itself", E(linkat(AT_FDCWD, "sl", AT_FDCWD, "sl2", 0)));
	say("symlink_itself_mode", "%s", mode_s("sl2"));
	rc("symlink_follow",
	   E(linkat(AT_FDCWD, "sl", AT_FDCWD, "f2", AT_SYMLINK_FOLLOW)));
	say("symlink_follow_mode", "%s", mode_s("f2"));
	say("symlink_follow_nlink", "%s", nlink_s("f"));
	rc("dangling_follow",
	   E(linkat(AT_FDCWD, "dangle", AT_FDCWD, "x", AT_SYMLINK_FOLLOW)));
	rc("fifo", E(link("p", "p2")));
	say("fifo_nlink", "%s", nlink_s("p"));
	rc("name_256", E(link("f", name256)));
	rc("into_subdir", E(link("f", "d/f")));
	say("into_subdir_nlink", "%s", nlink_s("d/f"));
	mkd("dw", 0555);
	rc("in_nowrite_dir", E(link("f", "dw/f")));
}

static void g_unlink(void)
{
	mkf("f", 0644, "");
	mkd("d", 0755);
	mkf("t", 0644, "target");
	X(symlink("t", "sl"));
	X(mkfifo("p", 0600));
	rc("dir", E(unlink("d")));
	rc("missing", E(unlink("nope")));
	rc("notdir_component", E(unlink("f/x")));
	rc("trailing_slash_file", E(unlink("f/")));
	rc("dot", E(unlink(".")));
	rc("symlink", E(unlink("sl")));
	say("symlink_gone", "%s", ex_s("sl"));
	say("symlink_target_kept", "%s", content_s("t"));
	rc("fifo", E(unlink("p")));
	rc("file", E(unlink("f")));
	say("file_gone", "%s", ex_s("f"));
	rc("again", E(unlink("f")));
	mkf("ro", 0444, "");
	rc("readonly_file", E(unlink("ro")));
	mkd("dw", 0755);
	mkf("dw/x", 0644, "");
	X(chmod("dw", 0555));
	rc("in_nowrite_dir", E(unlink("dw/x")));
	X(chmod("dw", 0755));
}

static void g_rmdir(void)
{
	mkd("d", 0755);
	mkd("full", 0755);
	mkf("full/x", 0644, "");
	mkd("hid", 0755);
	mkf("hid/.h", 0644, "");
	mkf("f", 0644, "");
	X(symlink("d", "sl"));
	rc("notempty", E(rmdir("full")));
	rc("notempty_hidden", E(rmdir("hid")));
	rc("file", E(rmdir("f")));
	rc("dot", E(rmdir(".")));
	rc("sub_dot", E(rmdir("d/.")));
	rc("dotdot", E(rmdir("..")));
	rc("missing", E(rmdir("nope")));
	rc("symlink_to_dir", E(rmdir("sl")));
	rc("symlink_to_dir_slash", E(rmdir("sl/")));
	rc("notdir_component", E(rmdir("f/x")));
	rc("empty", E(rmdir("d")));
	say("empty_gone", "%s", ex_s("d"));
	say("symlink_after", "%s", ex_s("sl"));
	mkd("t", 0755);
	rc("trailing_slash", E(rmdir("t/")));
	mkd("dw", 0755);
	mkd("dw/x", 0755);
	X(chmod("dw", 0555));
	rc("in_nowrite_dir", E(rmdir("dw/x")));
	X(chmod("dw", 0755));
}

static void g_rename(void)
{
	mkf("f", 0644, "ffff");
	mkf("g", 0644, "gggg");
	mkd("d", 0755);
	mkd("e", 0755);
	mkd("full", 0755);
	mkf("full/x", 0644, "");
	mkd("d/sub", 0755);
	rc("file_over_dir", E(rename("f", "d")));
	rc("dir_over_file", E(rename("d", "f")));
	rc("dir_over_nonempty", E(rename("e", "full")));
	rc("dir_into_own_subdir", E(rename("d", "d/sub/x")));
	rc("dir_into_itself", E(rename("d", "d/x")));
	rc("subdir_over_ancestor", E(rename("d/sub", "d")));
	rc("missing", E(rename("nope", "x")));
	rc("missing_dst_parent", E(rename("f", "nodir/x")));
	rc("notdir_dst_component", E(rename("f", "g/x")));
	rc("dot", E(rename(".", "x")));
	rc("dotdot", E(rename("..", "x")));
	rc("to_dot", E(rename("f", ".")));
	rc("name_256", E(rename("f", name256)));
	rc("file_trailing_slash", E(rename("f/", "x")));
	rc("file_to_trailing_slash", E(rename("f", "x/")));
	rc("same_file", E(rename("f", "f")));
	say("same_file_content", "%s", content_s("f"));
	rc("file_over_file", E(rename("f", "g")));
	say("file_over_file_src", "%s", ex_s("f"));
	say("file_over_file_dst", "%s", content_s("g"));
	rc("dir_over_empty_dir", E(rename("e", "d/sub")));
	say("dir_over_empty_dir_src", "%s", ex_s("e"));
	say("dir_over_empty_dir_dst", "%s", mode_s("d/sub"));
	rc("dir_trailing_slash", E(rename("d/", "dd/")));
	say("dir_trailing_slash_dst", "%s", mode_s("dd"));
	/* two names of one inode: rename does nothing */
	X(link("g", "h"));
	rc("hardlink_pair", E(rename("g", "h")));
	say("hardlink_pair_both", "%s/%s", ex_s("g"), ex_s("h"));
	say("hardlink_pair_nlink", "%s", nlink_s("h"));
	X(symlink("g", "sl"));
	mkf("k", 0600, "kkkk");
	rc("file_over_symlink", E(rename("k", "sl")));
	say("file_over_symlink_dst", "%s", mode_s("sl"));
	X(symlink("h", "sl2"));
	rc("symlink", E(rename("sl2", "sl3")));
	say("symlink_dst", "%s", mode_s("sl3"));
	say("symlink_dst_content", "%s", content_s("sl3"));
	X(mkfifo("p", 0600));
	rc("fifo", E(rename("p", "dd/p")));
	say("fifo_dst", "%s", mode_s("dd/p"));
	rc("across_dirs", E(rename("h", "dd/h")));
	say("across_dirs_content", "%s", content_s("dd/h"));
	rc("dir_across_dirs", E(rename("full", "dd/full")));
	say("dir_across_dirs_child", "%s", ex_s("dd/full/x"));
	mkd("dw", 0755);
	mkf("dw/x", 0644, "");
	X(chmod("dw", 0555));
	rc("from_nowrite_dir", E(rename("dw/x", "x")));
	rc("into_nowrite_dir", E(rename("g", "dw/g")));
	X(chmod("dw", 0755));
}

static int rename2(const char *a, const char *b, unsigned flags)
{
	return E(renameat2(AT_FDCWD, a, AT_FDCWD, b, flags));
}

static void g_rename2(void)
{
	mkf("f", 0644, "ffff");
	mkf("g", 0600, "gggg");
	mkd("d", 0755);
	mkd("d/sub", 0755);
	mkd("e", 0700);
	mkf("e/x", 0644, "exex");
	rc("noreplace_exists", rename2("f", "g", RENAME_NOREPLACE));
	rc("noreplace_dir_exists", rename2("f", "d", RENAME_NOREPLACE));
	rc("noreplace_same", rename2("f", "f", RENAME_NOREPLACE));
	rc("noreplace_absent", rename2("f", "f2", RENAME_NOREPLACE));
	say("noreplace_absent_result", "%s %s", ex_s("f"), content_s("f2"));
	rc("exchange_files", rename2("f2", "g", RENAME_EXCHANGE));
	say("exchange_files_result", "%s %s %s %s", content_s("f2"),
	    mode_s("f2"), content_s("g"), mode_s("g"));
	rc("exchange_file_dir", rename2("g", "e", RENAME_EXCHANGE));
	say("exchange_file_dir_result", "%s %s %s", mode_s("g"), mode_s("e"),
	    content_s("g/x"));
	rc("exchange_missing", rename2("f2", "nope", RENAME_EXCHANGE));
	rc("exchange_missing_src", rename2("nope", "f2", RENAME_EXCHANGE));
	rc("exchange_noreplace",
	   rename2("f2", "e", RENAME_EXCHANGE | RENAME_NOREPLACE));
	rc("exchange_into_own_subdir", rename2("d", "d/sub", RENAME_EXCHANGE));
	rc("exchange_across_dirs", rename2("f2", "d/sub", RENAME_EXCHANGE));
	say("exchange_across_dirs_result", "%s %s", mode_s("f2"),
	    content_s("d/sub"));
	rc("exchange_same", rename2("e", "e", RENAME_EXCHANGE));
	rc("bad_flag", rename2("e", "x", 1u << 10));
}

static void g_truncate(void)
{
	char b[16384];
	int fd;

	mkd("d", 0755);
	fill(b, sizeof(b), 3);
	mkf("f", 0644, "");
	fd = open("f", O_WRONLY);
	X(fd);
	X(write(fd, b, 10000));
	close(fd);
	X(mkfifo("p", 0644));
	X(symlink("f", "sl"));
	rc("dir", E(truncate("d", 0)));
	rc("negative", E(truncate("f", -1)));
	rc("missing", E(truncate("nope", 0)));
	rc("notdir_component", E(truncate("f/x", 0)));
	rc("fifo", E(truncate("p", 0)));
	fd = open("f", O_RDONLY);
	X(fd);
	rc("ftruncate_rdonly_fd", E(ftruncate(fd, 0)));
	close(fd);
	fd = open("d", O_RDONLY);
	X(fd);
	rc("ftruncate_dir_fd", E(ftruncate(fd, 0)));
	close(fd);
	fd = open("f", O_RDWR);
	X(fd);
	rc("ftruncate_negative", E(ftruncate(fd, -5)));
	rc("shrink", E(ftruncate(fd, 5000)));
	say("shrink_size", "%s", fsize_s(fd));
	rc("extend", E(ftruncate(fd, 12000)));
	say("extend_size", "%s", fsize_s(fd));
	say("extend_old_tail", "%s", zeros_s(fd, 5000, 7000));
	{
		char c[8];
		ssize_t n = pread(fd, c, 8, 4992);

		say("shrink_kept", "%s",
		    n == 8 && memcmp(c, b + 4992, 8) == 0 ? "same" : "differs");
	}
	rc("to_zero", E(ftruncate(fd, 0)));
	say("to_zero_size", "%s", fsize_s(fd));
	rc("extend_empty", E(ftruncate(fd, 3 * 4096)));
	say("extend_empty_read", "%s", zeros_s(fd, 0, 3 * 4096));
	rc("block_boundary", E(ftruncate(fd, 4096)));
	say("block_boundary_size", "%s", fsize_s(fd));
	close(fd);
	rc("via_symlink", E(truncate("sl", 100)));
	say("via_symlink_size", "%s", size_s("f"));
	say("via_symlink_link", "%s", mode_s("sl"));
	rc("large", E(truncate("f", 1LL << 30)));
	say("large_size", "%s", size_s("f"));
	fd = open("f", O_RDONLY);
	X(fd);
	say("large_tail", "%s", zeros_s(fd, (1LL << 30) - 100, 100));
	close(fd);
	mkf("ro", 0444, "readonly");
	rc("readonly_file", E(truncate("ro", 1)));
	say("readonly_file_size", "%s", size_s("ro"));
}

static const mode_t some_modes[] = {0,	   0644, 0777,	04755, 02755, 01755,
				    07777, 0600, 02745, 0151,  01777};

static void g_modes(void)
{
	char n[32];

	for (size_t i = 0; i < sizeof(some_modes) / sizeof(some_modes[0]);
	     i++) {
		mode_t m = some_modes[i];

		snprintf(n, sizeof(n), "f%o", (unsigned)m);
		if (open(n, O_CREAT | O_EXCL | O_WRONLY, m) < 0)
			say(tfmt("open_creat_%04o", (unsigned)m), "%s",
			    ename(errno));
		else
			say(tfmt("open_creat_%04o", (unsigned)m), "%s",
			    mode_s(n));
		snprintf(n, sizeof(n), "d%o", (unsigned)m);
		if (mkdir(n, m) < 0)
			say(tfmt("mkdir_%04o", (unsigned)m), "%s",
			    ename(errno));
		else
			say(tfmt("mkdir_%04o", (unsigned)m), "%s", mode_s(n));
		snprintf(n, sizeof(n), "p%o", (unsigned)m);
		if (mkfifo(n, m) < 0)
			say(tfmt("mkfifo_%04o", (unsigned)m), "%s",
			    ename(errno));
		else
			say(tfmt("mkfifo_%04o", (unsigned)m), "%s", mode_s(n));
	}
	rc("symlink", E(symlink("x", "s")));
	say("symlink_mode", "%s", mode_s("s"));
	rc("open_creat_excess_bits",
	   F(open("big", O_CREAT | O_WRONLY, 0177777)));
	say("open_creat_excess_bits_mode", "%s", mode_s("big"));
}

static const mode_t chmod_modes[] = {0,	    04755, 02755, 01755,
				     07777, 0644,  02745, 0};

static void g_chmod(void)
{
	int fd;

	mkf("f", 0644, "");
	mkd("d", 0755);
	X(symlink("f", "sl"));
	X(mkfifo("p", 0644));
	for (size_t i = 0; i < sizeof(chmod_modes) / sizeof(chmod_modes[0]);
	     i++) {
		mode_t m = chmod_modes[i];
		int r = E(chmod("f", m));

		say(tfmt("file_%zu_%04o", i, (unsigned)m), "%s %s", ename(-r),
		    mode_s("f"));
		r = E(chmod("d", m));
		say(tfmt("dir_%zu_%04o", i, (unsigned)m), "%s %s", ename(-r),
		    mode_s("d"));
	}
	X(chmod("d", 0755));
	rc("fifo", E(chmod("p", 04600)));
	say("fifo_mode", "%s", mode_s("p"));
	rc("via_symlink", E(chmod("sl", 0640)));
	say("via_symlink_target", "%s", mode_s("f"));
	say("via_symlink_link", "%s", mode_s("sl"));
	rc("nofollow_symlink",
	   E(fchmodat(AT_FDCWD, "sl", 0600, AT_SYMLINK_NOFOLLOW)));
	rc("missing", E(chmod("nope", 0644)));
	rc("notdir_component", E(chmod("f/x", 0644)));
	fd = open("f", O_RDONLY);
	X(fd);
	rc("fchmod_rdonly_fd", E(fchmod(fd, 0604)));
	say("fchmod_rdonly_fd_mode", "%s", fmode_s(fd));
	close(fd);
	fd = open("f", O_PATH);
	X(fd);
	rc("fchmod_opath_fd", E(fchmod(fd, 0600)));
	close(fd);
	fd = open("d", O_RDONLY | O_DIRECTORY);
	X(fd);
	rc("fchmod_dir_fd", E(fchmod(fd, 0711)));
	say("fchmod_dir_fd_mode", "%s", mode_s("d"));
	close(fd);
	rc("excess_bits", E(chmod("f", 0170644)));
	say("excess_bits_mode", "%s", mode_s("f"));
}

/* suid/sgid after a modification: kept for root (CAP_FSETID), cleared for
 * a user. */
static void g_suid(void)
{
	int fd;

	mkf("w", 06755, "");
	fd = open("w", O_WRONLY);
	X(fd);
	X(write(fd, "x", 1));
	say("write_06755", "%s", fmode_s(fd));
	close(fd);
	mkf("w0", 06755, "");
	fd = open("w0", O_WRONLY);
	X(fd);
	X(write(fd, "", 0));
	say("write_zero_06755", "%s", fmode_s(fd));
	close(fd);
	mkf("w2", 02755, "");
	fd = open("w2", O_WRONLY);
	X(fd);
	X(pwrite(fd, "x", 1, 100));
	say("pwrite_02755", "%s", fmode_s(fd));
	close(fd);
	mkf("w3", 02745, "");
	fd = open("w3", O_WRONLY | O_APPEND);
	X(fd);
	X(write(fd, "x", 1));
	say("append_02745", "%s", fmode_s(fd));
	close(fd);
	mkf("w4", 04644, "");
	fd = open("w4", O_RDWR);
	X(fd);
	X(write(fd, "x", 1));
	say("write_04644", "%s", fmode_s(fd));
	close(fd);
	mkf("t", 06755, "abc");
	X(truncate("t", 1));
	say("truncate_06755", "%s", mode_s("t"));
	mkf("t2", 06755, "abc");
	fd = open("t2", O_WRONLY);
	X(fd);
	X(ftruncate(fd, 10));
	say("ftruncate_06755", "%s", fmode_s(fd));
	close(fd);
	mkf("t3", 06755, "abc");
	X(F(open("t3", O_WRONLY | O_TRUNC)));
	say("o_trunc_06755", "%s", mode_s("t3"));
	mkf("c", 06755, "");
	X(chown("c", ids[self].uid, ids[self].gid));
	say("chown_same_06755", "%s", mode_s("c"));
	mkf("c2", 06755, "");
	X(chown("c2", (uid_t)-1, (gid_t)-1));
	say("chown_none_06755", "%s", mode_s("c2"));
	mkf("c3", 02745, "");
	X(chown("c3", (uid_t)-1, GID_S));
	say("chgrp_02745", "%s", mode_s("c3"));
	mkd("d", 02755);
	X(chown("d", ids[self].uid, ids[self].gid));
	say("chown_dir_02755", "%s", mode_s("d"));
	mkf("u", 06755, "");
	X(utimensat(AT_FDCWD, "u", NULL, 0));
	say("utimens_06755", "%s", mode_s("u"));
	mkf("x", 06755, "");
	X(setxattr("x", "user.k", "v", 1, 0));
	say("setxattr_06755", "%s", mode_s("x"));
	mkf("r", 06755, "abc");
	fd = open("r", O_RDONLY);
	X(fd);
	{
		char c[4];

		X(read(fd, c, 3));
	}
	close(fd);
	say("read_06755", "%s", mode_s("r"));
}

static void g_own(void)
{
	int fd;

	mkf("f", 0644, "");
	say("file_owner", "%s", own_s("f"));
	mkd("d", 0755);
	say("dir_owner", "%s", own_s("d"));
	X(mkfifo("p", 0644));
	say("fifo_owner", "%s", own_s("p"));
	X(symlink("f", "sl"));
	say("symlink_owner", "%s", own_s("sl"));
	X(mknod("r", S_IFREG | 0644, 0));
	say("mknod_owner", "%s", own_s("r"));
	X(link("f", "h"));
	say("hardlink_owner", "%s", own_s("h"));
	X(symlink("t", "dangle"));
	X(F(open("dangle", O_CREAT | O_WRONLY, 0600)));
	say("creat_via_symlink_owner", "%s", own_s("t"));
	X(F(creat("c", 0644)));
	say("creat_owner", "%s", own_s("c"));
	X(mkdir("d/e", 0755));
	say("nested_dir_owner", "%s", own_s("d/e"));
	/* changing ownership */
	rc("chgrp_member", E(chown("f", (uid_t)-1, GID_S)));
	say("chgrp_member_owner", "%s", own_s("f"));
	rc("chgrp_other", E(chown("f", (uid_t)-1, GID_G)));
	say("chgrp_other_owner", "%s", own_s("f"));
	rc("chown_other", E(chown("c", UID_B, (gid_t)-1)));
	say("chown_other_owner", "%s", own_s("c"));
	rc("chown_self", E(chown("d", ids[self].uid, (gid_t)-1)));
	say("chown_self_owner", "%s", own_s("d"));
	rc("lchown_symlink", E(lchown("sl", (uid_t)-1, GID_S)));
	say("lchown_symlink_owner", "%s %s", own_s("sl"), own_s("h"));
	rc("chown_via_symlink", E(chown("sl", (uid_t)-1, ids[self].gid)));
	say("chown_via_symlink_owner", "%s %s", own_s("sl"), own_s("h"));
	fd = open("r", O_RDONLY);
	X(fd);
	rc("fchown_rdonly_fd", E(fchown(fd, (uid_t)-1, GID_S)));
	say("fchown_rdonly_fd_owner", "%s", own_s("r"));
	close(fd);
	rc("chown_missing", E(chown("nope", 0, 0)));
}

/* ---- timestamps ----------------------------------------------------------
 */

/* Run op and print which times changed, from the object at path before to
 * the one at path2 after. */
#define TIMED2(name, path, path2, op)                                          \
	do {                                                                   \
		struct tsnap b_ = tbefore(path), a_;                           \
		int r_ = (op);                                                 \
		a_ = tget(path2);                                              \
		if (r_ < 0)                                                    \
			say(name, "%s", ename(-r_));                           \
		else                                                           \
			say(name, "%s", trel(&b_, &a_));                       \
	} while (0)
#define TIMED(name, path, op) TIMED2(name, path, path, op)

static int wr_at(const char *path, const char *data, off_t off)
{
	int fd = open(path, O_WRONLY);
	int r;

	if (fd < 0)
		return -errno;
	r = E(pwrite(fd, data, strlen(data), off));
	close(fd);
	return r;
}

static int rd1(const char *path)
{
	char c;
	int fd = open(path, O_RDONLY);
	int r;

	if (fd < 0)
		return -errno;
	r = E(read(fd, &c, 1));
	close(fd);
	return r;
}

static void g_times_file(void)
{
	int fd;

	mkf("f", 0644, "0123456789");
	TIMED("write", "f", wr_at("f", "ab", 3));
	TIMED("write_zero", "f", wr_at("f", "", 3));
	TIMED("write_extend", "f", wr_at("f", "xyz", 20));
	fd = open("f", O_WRONLY | O_APPEND);
	X(fd);
	TIMED("append", "f", E(write(fd, "tail", 4)));
	close(fd);
	TIMED("read", "f", rd1("f"));
	TIMED("open_rdwr_close", "f", F(open("f", O_RDWR)));
	TIMED("truncate_shrink", "f", E(truncate("f", 5)));
	TIMED("truncate_same", "f", E(truncate("f", 5)));
	fd = open("f", O_WRONLY);
	X(fd);
	TIMED("ftruncate_grow", "f", E(ftruncate(fd, 9000)));
	TIMED("ftruncate_same", "f", E(ftruncate(fd, 9000)));
	TIMED("fsync", "f", E(fsync(fd)));
	close(fd);
	TIMED("o_trunc", "f", F(open("f", O_WRONLY | O_TRUNC)));
	TIMED("o_trunc_empty", "f", F(open("f", O_WRONLY | O_TRUNC)));
	TIMED("o_creat_existing", "f", F(open("f", O_WRONLY | O_CREAT, 0644)));
	TIMED("chmod", "f", E(chmod("f", 0600)));
	TIMED("chmod_same", "f", E(chmod("f", 0600)));
	TIMED("chown_same", "f", E(chown("f", ids[self].uid, ids[self].gid)));
	TIMED("chown_none", "f", E(chown("f", (uid_t)-1, (gid_t)-1)));
	TIMED("chgrp", "f", E(chown("f", (uid_t)-1, GID_S)));
	TIMED("setxattr", "f", E(setxattr("f", "user.t", "1", 1, 0)));
	TIMED("getxattr", "f", ({
		      char v[8];
		      E(getxattr("f", "user.t", v, sizeof(v)));
	      }));
	TIMED("removexattr", "f", E(removexattr("f", "user.t")));
	TIMED("link", "f", E(link("f", "g")));
	TIMED("unlink_other_link", "f", E(unlink("g")));
	TIMED2("rename", "f", "f1", E(rename("f", "f1")));
	mkd("d", 0755);
	TIMED2("rename_across", "f1", "d/f2", E(rename("f1", "d/f2")));
	TIMED2("rename_back", "d/f2", "f2", E(rename("d/f2", "f2")));
	TIMED("stat", "f2", ({
		      struct stat st;
		      E(stat("f2", &st));
	      }));
	TIMED("utimens_now", "f2", E(utimensat(AT_FDCWD, "f2", NULL, 0)));
	TIMED("access", "f2", E(access("f2", R_OK)));
	X(symlink("f2", "sl"));
	TIMED("write_via_symlink", "f2", wr_at("sl", "s", 0));
	TIMED("symlink_to_it", "f2", E(symlink("f2", "sl2")));
	TIMED("open_rdonly", "f2", F(open("f2", O_RDONLY)));
	mkd("e", 0755);
	TIMED("dir_setxattr", "e", E(setxattr("e", "user.t", "1", 1, 0)));
	TIMED("dir_chmod", "e", E(chmod("e", 0700)));
	TIMED("symlink_lchown", "sl", E(lchown("sl", (uid_t)-1, GID_S)));
}

static bool is_dir(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Run op and print which times changed on each of the paths. */
static void timed_dirs(const char *name, int (*op)(void), const char *p1,
		       const char *p2, const char *p3)
{
	const char *p[3] = {p1, p2, p3};
	struct tsnap b[3], a[3];
	char out[400] = "";
	int r;

	char before[3][64];
	const char *after[3];

	/* "old>new": the object at old before the op, at new after it */
	for (int i = 0; i < 3; i++) {
		const char *gt;

		if (!p[i])
			continue;
		gt = strchr(p[i], '>');
		snprintf(before[i], sizeof(before[i]), "%.*s",
			 gt ? (int)(gt - p[i]) : (int)strlen(p[i]), p[i]);
		after[i] = gt ? gt + 1 : p[i];
		b[i] = tbefore(before[i]);
	}
	r = op();
	if (r < 0) {
		say(name, "%s", ename(-r));
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (!p[i])
			continue;
		a[i] = tget(after[i]);
		/* a directory's atime depends on who listed it: left out */
		snprintf(out + strlen(out), sizeof(out) - strlen(out),
			 "%s%s: %s", i ? "; " : "", after[i],
			 is_dir(after[i]) ? trel_mc(&b[i], &a[i])
					  : trel(&b[i], &a[i]));
	}
	say(name, "%s", out);
}

static int op_create(void)
{
	return F(open("d/nf", O_CREAT | O_EXCL | O_WRONLY, 0644));
}
static int op_create_existing(void)
{
	return F(open("d/nf", O_CREAT | O_WRONLY, 0644));
}
static int op_create_fail(void)
{
	int r = F(open("d/nf", O_CREAT | O_EXCL | O_WRONLY, 0644));

	return r == -EEXIST ? 0 : -EPROTO;
}
static int op_mkdir(void)
{
	return E(mkdir("d/nd", 0755));
}
static int op_rmdir(void)
{
	return E(rmdir("d/nd"));
}
static int op_mkfifo(void)
{
	return E(mkfifo("d/np", 0644));
}
static int op_symlink(void)
{
	return E(symlink("x", "d/ns"));
}
static int op_link(void)
{
	return E(link("d/f", "d/fl"));
}
static int op_unlink_link(void)
{
	return E(unlink("d/fl"));
}
static int op_rename_in(void)
{
	return E(rename("d/f", "d/f1"));
}
static int op_rename_across(void)
{
	return E(rename("d/f1", "e/f"));
}
static int op_rename_back(void)
{
	return E(rename("e/f", "d/f"));
}
static int op_rename_over(void)
{
	return E(rename("d/g", "d/f"));
}
static int op_rename_dir_across(void)
{
	return E(rename("d/sub", "e/sub"));
}
static int op_exchange(void)
{
	return rename2("d/f", "e/f3", RENAME_EXCHANGE);
}
static int op_write(void)
{
	return wr_at("d/f", "w", 0);
}
static int op_chmod(void)
{
	return E(chmod("d/f", 0600));
}
static int op_unlink(void)
{
	return E(unlink("d/f"));
}
static int op_failed_unlink(void)
{
	return E(unlink("d/nope")) == -ENOENT ? 0 : -EPROTO;
}

static void g_times_dir(void)
{
	mkd("d", 0755);
	mkd("e", 0755);
	mkd("d/sub", 0755);
	mkf("d/f", 0644, "f");
	mkf("d/g", 0644, "g");
	mkf("e/f3", 0644, "f3");
	timed_dirs("create", op_create, "d", NULL, NULL);
	timed_dirs("create_existing", op_create_existing, "d", NULL, NULL);
	timed_dirs("create_excl_fails", op_create_fail, "d", NULL, NULL);
	timed_dirs("mkdir", op_mkdir, "d", NULL, NULL);
	timed_dirs("rmdir", op_rmdir, "d", NULL, NULL);
	timed_dirs("mkfifo", op_mkfifo, "d", NULL, NULL);
	timed_dirs("symlink", op_symlink, "d", NULL, NULL);
	timed_dirs("link", op_link, "d", "d/f", NULL);
	timed_dirs("unlink_link", op_unlink_link, "d", "d/f", NULL);
	timed_dirs("failed_unlink", op_failed_unlink, "d", NULL, NULL);
	timed_dirs("rename_in_dir", op_rename_in, "d", "d/f>d/f1", NULL);
	timed_dirs("rename_across", op_rename_across, "d", "e", "d/f1>e/f");
	timed_dirs("rename_back", op_rename_back, "e", "d", "e/f>d/f");
	X(link("d/f", "e/flink"));
	timed_dirs("rename_over", op_rename_over, "d", "d/g>d/f", "e/flink");
	say("rename_over_nlink", "%s", nlink_s("e/flink"));
	timed_dirs("rename_dir_across", op_rename_dir_across, "d", "e",
		   "d/sub>e/sub");
	timed_dirs("exchange", op_exchange, "d", "e", "d/f>e/f3");
	timed_dirs("write_child", op_write, "d", "d/f", NULL);
	timed_dirs("chmod_child", op_chmod, "d", NULL, NULL);
	X(link("d/f", "e/f4"));
	timed_dirs("unlink", op_unlink, "d", "e/f4", NULL);
}

static void g_utimens(void)
{
	struct timespec ts[2];
	struct stat st;
	struct tsnap b, a;
	int fd;

	mkf("f", 0644, "x");
	mkd("d", 0755);
#define SHOW(name, path)                                                       \
	do {                                                                   \
		if (lstat(path, &st) < 0)                                      \
			say(name, "%s", ename(errno));                         \
		else                                                           \
			say(name, "atime %s mtime %s", ts_s(&st.st_atim),      \
			    ts_s(&st.st_mtim));                                \
	} while (0)
	/* a symlink's atime moves whenever it is followed: mtime only */
#define SHOW_M(name, path)                                                     \
	do {                                                                   \
		if (lstat(path, &st) < 0)                                      \
			say(name, "%s", ename(errno));                         \
		else                                                           \
			say(name, "mtime %s", ts_s(&st.st_mtim));              \
	} while (0)
	rc("ns",
	   set_times("f", 1000000000, 123456789, 1200000000, 987654321, 0));
	SHOW("ns_values", "f");
	rc("ns_zero", set_times("f", 1000000001, 0, 1200000001, 0, 0));
	SHOW("ns_zero_values", "f");
	rc("ns_max",
	   set_times("f", 1000000002, 999999999, 1200000002, 999999999, 0));
	SHOW("ns_max_values", "f");
	rc("ns_too_big", set_times("f", 1, 1000000000, 1, 0, 0));
	rc("ns_negative", set_times("f", 1, -1, 1, 0, 0));
	rc("negative_seconds",
	   set_times("f", -100000000, 5, -200000000, 500000000, 0));
	SHOW("negative_seconds_values", "f");
	rc("year_2242", set_times("f", 8589934592LL, 1, 8589934592LL, 2, 0));
	SHOW("year_2242_values", "f");
	X(set_times("f", 1000000000, 111, 1200000000, 222, 0));
	b = tbefore("f");
	rc("omit_atime", set_times("f", 5, UTIME_OMIT, 1300000000, 333, 0));
	a = tget("f");
	SHOW("omit_atime_values", "f");
	say("omit_atime_ctime", "%s", rel1(&b.c, &a.c));
	rc("omit_mtime", set_times("f", 1100000000, 444, 5, UTIME_OMIT, 0));
	SHOW("omit_mtime_values", "f");
	b = tbefore("f");
	rc("omit_both", set_times("f", 5, UTIME_OMIT, 5, UTIME_OMIT, 0));
	a = tget("f");
	say("omit_both_times", "%s", trel(&b, &a));
	b = tbefore("f");
	rc("now_both", set_times("f", 5, UTIME_NOW, 5, UTIME_NOW, 0));
	a = tget("f");
	say("now_both_times", "%s", trel(&b, &a));
	say("now_both_atime_eq_mtime", "%s",
	    tcmp(&a.a, &a.m) == 0 ? "yes" : "no");
	X(set_times("f", 1000000000, 111, 1200000000, 222, 0));
	b = tbefore("f");
	rc("now_atime_omit_mtime",
	   set_times("f", 5, UTIME_NOW, 5, UTIME_OMIT, 0));
	a = tget("f");
	say("now_atime_omit_mtime_times", "%s", trel(&b, &a));
	X(set_times("f", 1000000000, 111, 1200000000, 222, 0));
	b = tbefore("f");
	rc("null", E(utimensat(AT_FDCWD, "f", NULL, 0)));
	a = tget("f");
	say("null_times", "%s", trel(&b, &a));
	/* a symlink's own times */
	X(set_times("f", 1000000000, 0, 1000000000, 0, 0));
	X(symlink("f", "sl"));
	rc("nofollow_symlink", set_times("sl", 1400000000, 11, 1400000000, 22,
					 AT_SYMLINK_NOFOLLOW));
	SHOW_M("nofollow_symlink_link", "sl");
	SHOW("nofollow_symlink_target", "f");
	rc("follow_symlink",
	   set_times("sl", 1500000000, 33, 1500000000, 44, 0));
	SHOW_M("follow_symlink_link", "sl");
	SHOW("follow_symlink_target", "f");
	rc("dir", set_times("d", 1600000000, 55, 1600000000, 66, 0));
	SHOW("dir_values", "d");
	rc("missing", set_times("nope", 1, 0, 1, 0, 0));
	rc("notdir_component", set_times("f/x", 1, 0, 1, 0, 0));
	fd = open("f", O_WRONLY);
	X(fd);
	ts[0] = (struct timespec){1700000000, 77};
	ts[1] = (struct timespec){1700000001, 88};
	rc("futimens", E(futimens(fd, ts)));
	SHOW("futimens_values", "f");
	close(fd);
	fd = open("f", O_RDONLY);
	X(fd);
	ts[0] = (struct timespec){1700000002, 99};
	ts[1] = (struct timespec){0, UTIME_OMIT};
	rc("futimens_rdonly_fd", E(futimens(fd, ts)));
	SHOW("futimens_rdonly_fd_values", "f");
	b = tbefore("f");
	rc("futimens_null", E(futimens(fd, NULL)));
	a = tgetfd(fd);
	say("futimens_null_times", "%s", trel(&b, &a));
	close(fd);
	/* setting times then writing: mtime moves on from the set value */
	X(set_times("f", 1000000000, 0, 1000000000, 0, 0));
	X(wr_at("f", "y", 0));
	X(lstat("f", &st));
	say("write_after_set", "mtime %s", ts_s(&st.st_mtim));
	say("write_after_set_atime", "%s", ts_s(&st.st_atim));
	/* own read-only file: explicit times are fine for the owner */
	mkf("ro", 0444, "");
	rc("readonly_own_explicit",
	   set_times("ro", 1000000000, 1, 1000000000, 2, 0));
	rc("readonly_own_now", E(utimensat(AT_FDCWD, "ro", NULL, 0)));
#undef SHOW
#undef SHOW_M
}

/* ---- link counts, hard links ---------------------------------------------
 */

static void g_nlink(void)
{
	long before;
	int fd;

	mkf("f", 0644, "");
	mkd("d", 0755);
	mkd("e", 0755);
	say("file", "%s", nlink_s("f"));
	say("dir", "%s", nlink_s("d"));
	X(link("f", "g"));
	say("after_link", "%s %s", nlink_s("f"), nlink_s("g"));
	X(link("f", "d/h"));
	say("after_second_link", "%s", nlink_s("g"));
	X(unlink("g"));
	say("after_unlink", "%s %s", nlink_s("f"), nlink_s("d/h"));
	mkf("o", 0644, "other");
	X(link("f", "g"));
	X(rename("o", "g"));
	say("rename_over_link", "%s %s", nlink_s("f"), nlink_s("g"));
	X(rename("f", "d/h"));
	say("rename_link_onto_sibling", "%s %s %s", ex_s("f"), nlink_s("d/h"),
	    content_s("d/h"));
	before = nlink_of(".");
	X(mkdir("s", 0755));
	say("mkdir_parent_delta", "%+ld", nlink_of(".") - before);
	say("mkdir_new", "%s", nlink_s("s"));
	X(mkdir("s/t", 0755));
	say("mkdir_sub", "%s", nlink_s("s"));
	before = nlink_of("s");
	X(rmdir("s/t"));
	say("rmdir_parent_delta", "%+ld", nlink_of("s") - before);
	before = nlink_of("d");
	mkf("d/plain", 0644, "");
	X(mkfifo("d/p", 0644));
	X(symlink("x", "d/sl"));
	say("nondir_children_delta", "%+ld", nlink_of("d") - before);
	say("fifo_symlink", "%s %s", nlink_s("d/p"), nlink_s("d/sl"));
	mkd("d/m", 0755);
	{
		long bd = nlink_of("d"), be = nlink_of("e");

		X(rename("d/m", "e/m"));
		say("rename_dir_across_delta", "%+ld %+ld", nlink_of("d") - bd,
		    nlink_of("e") - be);
	}
	mkd("d/m2", 0755);
	{
		long bd = nlink_of("d"), be = nlink_of("e");

		X(rename("d/m2", "e/m"));
		say("rename_dir_over_empty_delta", "%+ld %+ld",
		    nlink_of("d") - bd, nlink_of("e") - be);
	}
	fd = open("d/h", O_RDWR);
	X(fd);
	X(unlink("d/h"));
	{
		struct stat st;

		X(fstat(fd, &st));
		say("open_after_unlink", "%lu", (unsigned long)st.st_nlink);
	}
	close(fd);
}

/* What one name shows right after a change made through another. */
static void g_share(void)
{
	char v[16];
	ssize_t n;
	int fd;

	mkf("f", 0644, "abc");
	X(link("f", "g"));
	say("stat_before", "%s %s", size_s("g"), mode_s("g"));
	X(chmod("f", 0600));
	say("chmod", "%s", mode_s("g"));
	X(wr_at("f", "0123456789", 0));
	say("write_size", "%s", size_s("g"));
	say("write_content", "%s", content_s("g"));
	X(truncate("g", 4));
	say("truncate_size", "%s", size_s("f"));
	say("truncate_content", "%s", content_s("f"));
	X(chown("f", (uid_t)-1, GID_S));
	say("chgrp", "%s", own_s("g"));
	X(set_times("f", 1000000000, 5, 1100000000, 6, 0));
	{
		struct stat st;

		X(lstat("g", &st));
		say("utimens", "%s", ts_s(&st.st_mtim));
	}
	X(setxattr("f", "user.s", "xv", 2, 0));
	n = getxattr("g", "user.s", v, sizeof(v));
	say("xattr", "%s", n < 0 ? ename(errno) : tfmt("%.*s", (int)n, v));
	fd = open("g", O_RDONLY);
	X(fd);
	X(wr_at("f", "longer content", 0));
	say("open_fd_size", "%s", fsize_s(fd));
	{
		char b[32];

		n = pread(fd, b, sizeof(b), 0);
		say("open_fd_read", "%s",
		    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	}
	close(fd);
	X(chmod("g", 04755));
	say("chmod_suid", "%s", mode_s("f"));
	X(wr_at("g", "x", 0));
	say("write_clears_suid", "%s %s", mode_s("f"), mode_s("g"));
	X(link("g", "h"));
	say("nlink_third", "%s", nlink_s("f"));
	X(unlink("h"));
	say("nlink_after_unlink", "%s", nlink_s("f"));
}

/* ---- xattrs --------------------------------------------------------------
 */

/* the user.* names, sorted, or an errno name */
static const char *xlist_s(const char *path)
{
	char buf[4096], *names[64], *out = tmpbuf();
	ssize_t n = llistxattr(path, buf, sizeof(buf));
	int k = 0;

	if (n < 0)
		return ename(errno);
	for (char *p = buf; p < buf + n && k < 64; p += strlen(p) + 1)
		if (strncmp(p, "user.", 5) == 0)
			names[k++] = p;
	for (int i = 0; i < k; i++)
		for (int j = i + 1; j < k; j++)
			if (strcmp(names[j], names[i]) < 0) {
				char *t = names[i];

				names[i] = names[j];
				names[j] = t;
			}
	strcpy(out, "[");
	for (int i = 0; i < k; i++)
		snprintf(out + strlen(out), 512 - strlen(out), "%s%s",
			 i ? " " : "", names[i]);
	strcat(out, "]");
	return out;
}

static const char *xget_s(const char *path, const char *name)
{
	char v[256];
	ssize_t n = lgetxattr(path, name, v, sizeof(v));

	if (n < 0)
		return ename(errno);
	return tfmt("'%.*s'", (int)n, v);
}

static void g_xattr(void)
{
	char big[70000], b[8], lname[300];
	ssize_t n;
	int fd;

	mkf("f", 0644, "");
	mkd("d", 0755);
	X(symlink("f", "sl"));
	X(mkfifo("p", 0644));
	rc("set", E(setxattr("f", "user.a", "v1", 2, 0)));
	say("get", "%s", xget_s("f", "user.a"));
	say("size_query", "%zd", getxattr("f", "user.a", NULL, 0));
	say("list", "%s", xlist_s("f"));
	rc("create_exists", E(setxattr("f", "user.a", "v2", 2, XATTR_CREATE)));
	rc("replace_missing",
	   E(setxattr("f", "user.b", "v2", 2, XATTR_REPLACE)));
	rc("replace", E(setxattr("f", "user.a", "value2", 6, XATTR_REPLACE)));
	say("replace_get", "%s", xget_s("f", "user.a"));
	rc("create", E(setxattr("f", "user.b", "bb", 2, XATTR_CREATE)));
	say("create_list", "%s", xlist_s("f"));
	rc("both_flags",
	   E(setxattr("f", "user.a", "x", 1, XATTR_CREATE | XATTR_REPLACE)));
	rc("bad_flags", E(setxattr("f", "user.a", "x", 1, 8)));
	rc("get_missing", E(getxattr("f", "user.zz", b, sizeof(b))));
	n = getxattr("f", "user.a", b, 1);
	rc("get_small_buffer", E(n));
	rc("list_small_buffer", E(listxattr("f", b, 1)));
	rc("empty_value", E(setxattr("f", "user.e", "", 0, 0)));
	say("empty_value_get", "%s", xget_s("f", "user.e"));
	say("empty_value_size", "%zd", getxattr("f", "user.e", NULL, 0));
	rc("remove", E(removexattr("f", "user.e")));
	rc("remove_missing", E(removexattr("f", "user.e")));
	say("remove_list", "%s", xlist_s("f"));
	memset(big, 'q', sizeof(big));
	rc("value_4000", E(setxattr("f", "user.big", big, 4000, 0)));
	say("value_4000_size", "%zd", getxattr("f", "user.big", NULL, 0));
	X(removexattr("f", "user.big"));
	rc("value_8000", E(setxattr("f", "user.big", big, 8000, 0)));
	rc("value_65537", E(setxattr("f", "user.big", big, 65537, 0)));
	memset(lname, 'n', sizeof(lname));
	memcpy(lname, "user.", 5);
	lname[255] = '\0';
	rc("name_255", E(setxattr("f", lname, "v", 1, 0)));
	lname[255] = 'n';
	lname[256] = '\0';
	rc("name_256", E(setxattr("f", lname, "v", 1, 0)));
	rc("name_empty_user", E(setxattr("f", "user.", "v", 1, 0)));
	rc("unknown_namespace", E(setxattr("f", "foo.bar", "v", 1, 0)));
	rc("trusted", E(setxattr("f", "trusted.rkt", "v", 1, 0)));
	say("trusted_get", "%s", xget_s("f", "trusted.rkt"));
	rc("dir", E(setxattr("d", "user.d", "dv", 2, 0)));
	say("dir_get", "%s", xget_s("d", "user.d"));
	rc("symlink_nofollow", E(lsetxattr("sl", "user.l", "v", 1, 0)));
	say("symlink_nofollow_get", "%s", xget_s("sl", "user.l"));
	rc("symlink_follow", E(setxattr("sl", "user.l", "lv", 2, 0)));
	say("symlink_follow_get", "%s", xget_s("f", "user.l"));
	rc("fifo", E(lsetxattr("p", "user.p", "v", 1, 0)));
	say("fifo_get", "%s", xget_s("p", "user.p"));
	fd = open("f", O_RDONLY);
	X(fd);
	rc("fsetxattr_rdonly_fd", E(fsetxattr(fd, "user.fd", "fv", 2, 0)));
	n = fgetxattr(fd, "user.fd", b, sizeof(b));
	say("fgetxattr", "%s", n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	rc("fremovexattr", E(fremovexattr(fd, "user.fd")));
	close(fd);
	X(rename("f", "f2"));
	say("after_rename", "%s %s", xlist_s("f2"), xget_s("f2", "user.b"));
	rc("missing_file", E(setxattr("nope", "user.a", "v", 1, 0)));
	rc("list_missing_file", E(listxattr("nope", b, sizeof(b))));
	mkf("ro", 0444, "");
	rc("readonly_own", E(setxattr("ro", "user.a", "v", 1, 0)));
	mkf("z", 0, "");
	say("unreadable_own_get", "%s", xget_s("z", "user.a"));
	say("unreadable_own_list", "%s", xlist_s("z"));
}

/* ---- file I/O ------------------------------------------------------------
 */

static void g_io(void)
{
	static char big[300000], back[300000];
	char b[64];
	ssize_t n;
	int fd, fd2;

	mkf("a", 0644, "abc");
	fd = open("a", O_WRONLY | O_APPEND);
	X(fd);
	rc("append_write", E(write(fd, "de", 2)));
	say("append_size", "%s", fsize_s(fd));
	X(lseek(fd, 0, SEEK_SET));
	rc("append_after_seek0", E(write(fd, "f", 1)));
	rc("append_pwrite0", E(pwrite(fd, "g", 1, 0)));
	say("append_offset", "%lld", (long long)lseek(fd, 0, SEEK_CUR));
	close(fd);
	say("append_content", "%s", content_s("a"));
	fd = open("a", O_RDWR | O_APPEND);
	X(fd);
	n = pread(fd, b, 2, 0);
	say("append_rdwr_pread", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	close(fd);
	rc("o_trunc", F(open("a", O_WRONLY | O_TRUNC)));
	say("o_trunc_size", "%s", size_s("a"));

	mkf("h", 0644, "");
	fd = open("h", O_RDWR);
	X(fd);
	rc("pwrite_past_eof", E(pwrite(fd, "x", 1, 10000)));
	say("pwrite_past_eof_size", "%s", fsize_s(fd));
	say("hole_reads_zeros", "%s", zeros_s(fd, 0, 10000));
	rc("pwrite_aligned_hole", E(pwrite(fd, "y", 1, 5 * 4096)));
	say("aligned_hole_zeros", "%s", zeros_s(fd, 10001, 5 * 4096 - 10001));
	n = pread(fd, b, 10, 5 * 4096 + 1);
	say("pread_at_eof", "%zd", n);
	n = pread(fd, b, 10, 1 << 20);
	say("pread_past_eof", "%zd", n);
	n = pread(fd, b, 10, 5 * 4096 - 4);
	say("pread_across_eof", "%zd", n);
	rc("pwrite_negative", E(pwrite(fd, "x", 1, -1)));
	rc("pread_negative", E(pread(fd, b, 1, -1)));
	rc("lseek_negative", E(lseek(fd, -1, SEEK_SET)));
	rc("lseek_end_negative", E(lseek(fd, -100000, SEEK_END)));
	say("lseek_end", "%lld", (long long)lseek(fd, 0, SEEK_END));
	say("lseek_past_end", "%lld", (long long)lseek(fd, 100000, SEEK_SET));
	rc("write_after_lseek_past_end", E(write(fd, "z", 1)));
	say("write_after_lseek_past_end_size", "%s", fsize_s(fd));
	close(fd);

	/* patterns across block boundaries */
	fill(big, sizeof(big), 1);
	mkf("p", 0644, "");
	fd = open("p", O_RDWR);
	X(fd);
	n = write(fd, big, sizeof(big));
	say("large_write", "%zd", n);
	n = pread(fd, back, sizeof(back), 0);
	say("large_readback", "%s",
	    n == (ssize_t)sizeof(back) && !memcmp(big, back, sizeof(back))
		? "same"
		: "differs");
	fill(b, sizeof(b), 9);
	X(pwrite(fd, b, 40, 4096 - 20));
	memcpy(big + 4096 - 20, b, 40);
	X(pwrite(fd, b, 7, 8191));
	memcpy(big + 8191, b, 7);
	n = pread(fd, back, 20000, 3);
	say("overwrite_across_blocks", "%s",
	    n == 20000 && !memcmp(big + 3, back, 20000) ? "same" : "differs");
	n = pread(fd, back, 5, 4094);
	say("small_read_across_block", "%s",
	    n == 5 && !memcmp(big + 4094, back, 5) ? "same" : "differs");
	fd2 = open("p", O_RDONLY);
	X(fd2);
	X(pwrite(fd, "NEW", 3, 12345));
	n = pread(fd2, b, 3, 12345);
	say("second_fd_sees_write", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	close(fd2);
	close(fd);
	fd = open("p", O_RDONLY);
	X(fd);
	fd2 = dup(fd);
	X(read(fd, b, 10));
	say("dup_shares_offset", "%lld", (long long)lseek(fd2, 0, SEEK_CUR));
	close(fd2);
	rc("write_rdonly_fd", E(write(fd, "x", 1)));
	close(fd);
	fd = open("p", O_WRONLY);
	X(fd);
	rc("read_wronly_fd", E(read(fd, b, 1)));
	close(fd);
	mkd("d", 0755);
	fd = open("d", O_RDONLY);
	X(fd);
	rc("read_dir_fd", E(read(fd, b, 1)));
	close(fd);
	X(mkfifo("fifo", 0644));
	fd = open("fifo", O_RDONLY | O_NONBLOCK);
	X(fd);
	rc("lseek_fifo", E(lseek(fd, 0, SEEK_SET)));
	rc("pread_fifo", E(pread(fd, b, 1, 0)));
	close(fd);
	mkf("g", 0644, "");
	fd = open("g", O_RDWR);
	X(fd);
	rc("pwrite_1gib", E(pwrite(fd, "end", 3, 1LL << 30)));
	say("pwrite_1gib_size", "%s", fsize_s(fd));
	n = pread(fd, b, 3, 1LL << 30);
	say("pwrite_1gib_read", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	say("pwrite_1gib_hole", "%s", zeros_s(fd, (1LL << 30) - 8192, 8192));
	close(fd);
}

static const char *seek_s(int fd, off_t off, int whence)
{
	off_t r = lseek(fd, off, whence);

	return r < 0 ? ename(errno) : tfmt("%lld", (long long)r);
}

static void g_seek(void)
{
	const off_t M = 1 << 20;
	char blk[4096];
	off_t r;
	int fd;

	memset(blk, 'd', sizeof(blk));
	mkf("s", 0644, "");
	fd = open("s", O_RDWR);
	X(fd);
	X(pwrite(fd, blk, 4096, 0));
	X(pwrite(fd, blk, 4096, M));
	say("data_from_0", "%s", seek_s(fd, 0, SEEK_DATA));
	r = lseek(fd, 0, SEEK_HOLE);
	say("hole_from_0", "%s",
	    r < 0		  ? ename(errno)
	    : r == M + 4096	  ? "at EOF"
	    : r >= 4096 && r <= M ? "in the hole"
				  : tfmt("other %lld", (long long)r));
	r = lseek(fd, 8192, SEEK_DATA);
	say("data_from_hole", "%s",
	    r < 0	? ename(errno)
	    : r == 8192 ? "same offset"
	    : r == M	? "next data"
			: tfmt("other %lld", (long long)r));
	say("data_in_data", "%s", seek_s(fd, M + 100, SEEK_DATA));
	say("hole_in_last_data", "%s", seek_s(fd, M + 100, SEEK_HOLE));
	say("data_at_eof", "%s", seek_s(fd, M + 4096, SEEK_DATA));
	say("hole_at_eof", "%s", seek_s(fd, M + 4096, SEEK_HOLE));
	say("data_past_eof", "%s", seek_s(fd, M + 5000, SEEK_DATA));
	say("data_negative", "%s", seek_s(fd, -1, SEEK_DATA));
	close(fd);
	mkf_size("e", 0);
	fd = open("e", O_RDONLY);
	X(fd);
	say("empty_data", "%s", seek_s(fd, 0, SEEK_DATA));
	say("empty_hole", "%s", seek_s(fd, 0, SEEK_HOLE));
	close(fd);
	mkf("t", 0644, "");
	fd = open("t", O_RDWR);
	X(fd);
	X(pwrite(fd, blk, 100, 0));
	say("short_file_hole", "%s", seek_s(fd, 0, SEEK_HOLE));
	say("short_file_data", "%s", seek_s(fd, 50, SEEK_DATA));
	close(fd);
}

static void g_sync(void)
{
	int fd;

	mkf("f", 0644, "data");
	mkd("d", 0755);
	fd = open("f", O_WRONLY);
	X(fd);
	X(write(fd, "more", 4));
	rc("fsync", E(fsync(fd)));
	rc("fdatasync", E(fdatasync(fd)));
	rc("syncfs", E(syncfs(fd)));
	close(fd);
	fd = open("f", O_RDONLY);
	X(fd);
	rc("fsync_rdonly", E(fsync(fd)));
	rc("fdatasync_rdonly", E(fdatasync(fd)));
	close(fd);
	fd = open("d", O_RDONLY | O_DIRECTORY);
	X(fd);
	rc("fsync_dir", E(fsync(fd)));
	rc("fdatasync_dir", E(fdatasync(fd)));
	close(fd);
	fd = open("f", O_WRONLY | O_SYNC);
	rc("o_sync_open", E(fd));
	if (fd >= 0) {
		rc("o_sync_write", E(write(fd, "s", 1)));
		close(fd);
	}
	fd = open("f", O_WRONLY | O_DSYNC);
	rc("o_dsync_open", E(fd));
	if (fd >= 0) {
		rc("o_dsync_write", E(write(fd, "s", 1)));
		close(fd);
	}
	say("content", "%s", content_s("f"));
}

/* ---- directories ---------------------------------------------------------
 */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *dtype_s(unsigned char t)
{
	switch (t) {
	case DT_REG:
		return "reg";
	case DT_DIR:
		return "dir";
	case DT_LNK:
		return "lnk";
	case DT_FIFO:
		return "fifo";
	case DT_SOCK:
		return "sock";
	case DT_UNKNOWN:
		return "unknown";
	}
	return "other";
}

/* sorted "name/type" entries of a directory, or an errno name */
static const char *ls_s(const char *path, bool types)
{
	char *ents[64], *out = tmpbuf();
	struct dirent *de;
	DIR *d = opendir(path);
	int k = 0;

	if (d == NULL)
		return ename(errno);
	while ((de = readdir(d)) != NULL && k < 64)
		ents[k++] = strdup(
		    types ? tfmt("%s/%s", de->d_name, dtype_s(de->d_type))
			  : de->d_name);
	closedir(d);
	qsort(ents, (size_t)k, sizeof(ents[0]), cmp_str);
	out[0] = '\0';
	for (int i = 0; i < k; i++) {
		snprintf(out + strlen(out), 512 - strlen(out), "%s%s",
			 i ? " " : "", ents[i]);
		free(ents[i]);
	}
	return out;
}

static int count_entries(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int k = 0;

	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL)
		k++;
	closedir(d);
	return k;
}

static void g_readdir(void)
{
	char n[64];
	DIR *d;

	mkd("d", 0755);
	say("empty", "%s", ls_s("d", false));
	mkf("d/f", 0644, "");
	mkd("d/sub", 0755);
	X(symlink("f", "d/sl"));
	X(mkfifo("d/p", 0644));
	X(link("d/f", "d/h"));
	X(mknod("d/s", S_IFSOCK | 0644, 0));
	say("types", "%s", ls_s("d", true));
	X(unlink("d/h"));
	X(rename("d/f", "d/g"));
	X(rmdir("d/sub"));
	say("after_changes", "%s", ls_s("d", false));
	d = opendir("d");
	if (d == NULL)
		setup_fail(__LINE__, "opendir");
	while (readdir(d) != NULL)
		;
	mkf("d/late", 0644, "");
	rewinddir(d);
	{
		int k = 0, late = 0;
		struct dirent *de;

		while ((de = readdir(d)) != NULL) {
			k++;
			late |= strcmp(de->d_name, "late") == 0;
		}
		say("rewind_sees_new", "%d %s", k, late ? "yes" : "no");
	}
	closedir(d);
	mkd("many", 0755);
	for (int i = 0; i < 300; i++) {
		snprintf(n, sizeof(n), "many/entry-%03d-with-a-longer-name", i);
		mkf(n, 0644, "");
	}
	say("many", "%d", count_entries("many"));
	for (int i = 0; i < 300; i += 2) {
		snprintf(n, sizeof(n), "many/entry-%03d-with-a-longer-name", i);
		X(unlink(n));
	}
	say("many_after_unlink", "%d", count_entries("many"));
	mkd("long", 0755);
	X(F(open(tfmt("long/%s", name255), O_CREAT | O_WRONLY, 0644)));
	say("long_name", "%d", count_entries("long"));
	mkf("file", 0644, "");
	say("opendir_file", "%s", opendir("file") ? "ok" : ename(errno));
	say("opendir_missing", "%s", opendir("nope") ? "ok" : ename(errno));
	mkd("noread", 0311);
	say("opendir_noread", "%s", ls_s("noread", false));
	X(chmod("noread", 0755));
}

static const char *acc_s(const char *path)
{
	int r = access(path, F_OK);

	if (r < 0)
		return ename(errno);
	return tfmt("%c%c%c", access(path, R_OK) == 0 ? 'r' : '-',
		    access(path, W_OK) == 0 ? 'w' : '-',
		    access(path, X_OK) == 0 ? 'x' : '-');
}

static const mode_t acc_modes[] = {0,	 0400, 0200, 0100, 0755,
				   0644, 0070, 0007, 0001, 0010};

static void g_access(void)
{
	char n[32];

	for (size_t i = 0; i < sizeof(acc_modes) / sizeof(acc_modes[0]); i++) {
		snprintf(n, sizeof(n), "f%o", (unsigned)acc_modes[i]);
		mkf(n, acc_modes[i], "");
		say(tfmt("file_%04o", (unsigned)acc_modes[i]), "%s", acc_s(n));
		snprintf(n, sizeof(n), "d%o", (unsigned)acc_modes[i]);
		mkd(n, acc_modes[i]);
		say(tfmt("dir_%04o", (unsigned)acc_modes[i]), "%s", acc_s(n));
	}
	rc("missing", E(access("nope", F_OK)));
	rc("notdir_component", E(access("f0/x", F_OK)));
	rc("no_search_permission", E(access("d0/x", F_OK)));
	X(symlink("f400", "sl"));
	say("via_symlink", "%s", acc_s("sl"));
	rc("nofollow", E(faccessat(AT_FDCWD, "sl", W_OK, AT_SYMLINK_NOFOLLOW)));
	rc("eaccess", E(faccessat(AT_FDCWD, "f400", R_OK, AT_EACCESS)));
	rc("eaccess_w", E(faccessat(AT_FDCWD, "f400", W_OK, AT_EACCESS)));
	rc("bad_mode", E(access("f400", 8)));
}

/* An open file outlives its last name. */
static void g_unlinked(void)
{
	char b[16];
	ssize_t n;
	int fd, fd2;

	mkf("f", 0644, "before");
	fd = open("f", O_RDWR);
	X(fd);
	X(unlink("f"));
	say("gone", "%s", ex_s("f"));
	rc("write", E(pwrite(fd, "after", 5, 6)));
	n = pread(fd, b, sizeof(b), 0);
	say("read", "%s", n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	say("size", "%s", fsize_s(fd));
	rc("ftruncate", E(ftruncate(fd, 3)));
	say("ftruncate_size", "%s", fsize_s(fd));
	rc("fchmod", E(fchmod(fd, 0600)));
	say("fchmod_mode", "%s", fmode_s(fd));
	rc("fsetxattr", E(fsetxattr(fd, "user.u", "v", 1, 0)));
	rc("fsync", E(fsync(fd)));
	say("create_same_name", "%s",
	    ename(-F(open("f", O_CREAT | O_EXCL | O_WRONLY, 0644))));
	say("new_file_empty", "%s", size_s("f"));
	close(fd);
	/* rename over an open file: the old fd keeps the old content */
	mkf("g", 0644, "old content");
	mkf("n", 0644, "new");
	fd = open("g", O_RDONLY);
	X(fd);
	X(rename("n", "g"));
	n = pread(fd, b, sizeof(b), 0);
	say("renamed_over_read", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	say("renamed_over_nlink", "%s", ({
		    struct stat st;
		    fstat(fd, &st) < 0
			? ename(errno)
			: tfmt("%lu", (unsigned long)st.st_nlink);
	    }));
	fd2 = open("g", O_RDONLY);
	X(fd2);
	n = pread(fd2, b, sizeof(b), 0);
	say("renamed_over_new", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	close(fd2);
	close(fd);
	/* a directory removed while it is the cwd of nobody but an fd */
	mkd("d", 0755);
	fd = open("d", O_RDONLY | O_DIRECTORY);
	X(fd);
	X(rmdir("d"));
	rc("removed_dir_openat_creat",
	   F(openat(fd, "x", O_CREAT | O_WRONLY, 0644)));
	rc("removed_dir_fstat", ({
		   struct stat st;
		   E(fstat(fd, &st));
	   }));
	close(fd);
}

static void g_readlink(void)
{
	char b[64];
	ssize_t n;
	int fd;

	mkf("f", 0644, "");
	mkd("d", 0755);
	X(symlink("abcdefgh", "sl"));
	X(symlink("d", "sd"));
	rc("file", E(readlink("f", b, sizeof(b))));
	rc("dir", E(readlink("d", b, sizeof(b))));
	rc("missing", E(readlink("nope", b, sizeof(b))));
	rc("notdir_component", E(readlink("f/x", b, sizeof(b))));
	n = readlink("sl", b, 3);
	say("small_buffer", "%s",
	    n < 0 ? ename(errno) : tfmt("%zd %.*s", n, (int)n, b));
	rc("slash_follows", E(readlink("sd/", b, sizeof(b))));
	fd = open("sl", O_PATH | O_NOFOLLOW);
	X(fd);
	n = readlinkat(fd, "", b, sizeof(b));
	say("empty_path_on_opath", "%s",
	    n < 0 ? ename(errno) : tfmt("%.*s", (int)n, b));
	close(fd);
	rc("zero_buffer", E(readlink("sl", b, 0)));
}

static void g_stat(void)
{
	struct stat st, st2;
	int fd;

	mkf("f", 0640, "12345");
	X(symlink("f", "sl"));
	X(symlink("d", "sd"));
	mkd("d", 0700);
	rc("missing", E(stat("nope", &st)));
	rc("notdir_component", E(stat("f/x", &st)));
	rc("trailing_slash_file", E(stat("f/", &st)));
	rc("trailing_slash_symlink_dir", E(lstat("sd/", &st)));
	say("trailing_slash_symlink_dir_mode", "%s", mode_s("sd/"));
	rc("empty_path", E(stat("", &st)));
	X(symlink("nowhere", "dangle"));
	rc("dangling", E(stat("dangle", &st)));
	rc("dangling_lstat", E(lstat("dangle", &st)));
	X(stat("sl", &st));
	say("follows", "%o %lld", (unsigned)st.st_mode, (long long)st.st_size);
	X(lstat("sl", &st));
	say("nofollow", "%o %lld", (unsigned)st.st_mode, (long long)st.st_size);
	fd = open("f", O_RDONLY);
	X(fd);
	X(fstat(fd, &st));
	X(stat("f", &st2));
	say("fstat_matches_stat", "%s",
	    st.st_ino == st2.st_ino && st.st_dev == st2.st_dev &&
		    st.st_mode == st2.st_mode && st.st_size == st2.st_size &&
		    st.st_nlink == st2.st_nlink
		? "yes"
		: "no");
	close(fd);
	fd = open("sl", O_PATH | O_NOFOLLOW);
	X(fd);
	X(fstatat(fd, "", &st, AT_EMPTY_PATH));
	say("opath_symlink", "%o", (unsigned)st.st_mode);
	close(fd);
	X(lstat("f", &st));
	X(lstat("sl", &st2));
	say("symlink_distinct_inode", "%s",
	    st.st_ino != st2.st_ino ? "yes" : "no");
	X(link("f", "h"));
	X(lstat("h", &st2));
	say("hardlink_same_inode", "%s",
	    st.st_ino == st2.st_ino ? "yes" : "no");
	say("blksize_positive", "%s", st.st_blksize > 0 ? "yes" : "no");
	say("dot_is_dir", "%s", mode_s("."));
}

/* ---- cross-user groups: start as root in a root-owned 0755 directory -----
 */

static void mkd_as(enum who w, const char *path, mode_t mode)
{
	as(ROOT);
	mkd(path, 0700);
	X(chown(path, ids[w].uid, ids[w].gid));
	X(chmod(path, mode));
}

/* A's files and directories as seen by B and root. */
static void x_perm(void)
{
	char b[4];

	mkd_as(UA, "a", 0755);
	as(UA);
	mkf("a/f600", 0600, "secret");
	mkf("a/f644", 0644, "public");
	mkf("a/f666", 0666, "shared");
	mkf("a/f000", 0, "none");
	mkd("a/d700", 0700);
	mkf("a/d700/x", 0644, "");
	mkd("a/d711", 0711);
	mkf("a/d711/x", 0644, "x");
	mkd("a/d755", 0755);
	mkf("a/d755/x", 0644, "");
	mkd("a/d755/sub", 0755);
	mkd("a/d777", 0777);
	mkf("a/d777/x", 0644, "");
	mkd("a/d777/sub", 0755);
	mkd("a/d300", 0300);
	mkf("a/d300/x", 0644, "");
	as(UB);
	rc("other_read_600", F(open("a/f600", O_RDONLY)));
	rc("other_write_600", F(open("a/f600", O_WRONLY)));
	rc("other_read_644", F(open("a/f644", O_RDONLY)));
	rc("other_write_644", F(open("a/f644", O_WRONLY)));
	rc("other_rdwr_644", F(open("a/f644", O_RDWR)));
	rc("other_trunc_644", F(open("a/f644", O_RDONLY | O_TRUNC)));
	rc("other_truncate_644", E(truncate("a/f644", 0)));
	rc("other_creat_existing_644",
	   F(open("a/f644", O_CREAT | O_WRONLY, 0666)));
	rc("other_excl_existing_644",
	   F(open("a/f644", O_CREAT | O_EXCL | O_WRONLY, 0666)));
	rc("other_write_666", F(open("a/f666", O_WRONLY)));
	rc("other_truncate_666", E(truncate("a/f666", 2)));
	say("other_truncate_666_size", "%s", size_s("a/f666"));
	rc("other_stat_in_700", E(access("a/d700/x", F_OK)));
	rc("other_open_in_700", F(open("a/d700/x", O_RDONLY)));
	rc("other_list_700", E(count_entries("a/d700")));
	rc("other_chdir_700", E(chdir("a/d700")));
	rc("other_stat_in_711", E(access("a/d711/x", F_OK)));
	say("other_read_in_711", "%s", content_s("a/d711/x"));
	rc("other_list_711", E(count_entries("a/d711")));
	rc("other_create_in_755",
	   F(open("a/d755/n", O_CREAT | O_WRONLY, 0644)));
	rc("other_mkdir_in_755", E(mkdir("a/d755/n", 0755)));
	rc("other_mkfifo_in_755", E(mkfifo("a/d755/n", 0644)));
	rc("other_symlink_in_755", E(symlink("x", "a/d755/n")));
	rc("other_link_in_755", E(link("a/f666", "a/d755/n")));
	rc("other_unlink_in_755", E(unlink("a/d755/x")));
	rc("other_rmdir_in_755", E(rmdir("a/d755/sub")));
	rc("other_rename_in_755", E(rename("a/d755/x", "a/d755/y")));
	rc("other_create_in_777",
	   F(open("a/d777/b", O_CREAT | O_WRONLY, 0644)));
	say("other_create_in_777_owner", "%s", om_s("a/d777/b"));
	rc("other_unlink_in_777", E(unlink("a/d777/x")));
	rc("other_rename_dir_in_777", E(rename("a/d777/sub", "a/d777/sub2")));
	mkd("a/d777/bd", 0755);
	rc("other_rename_dir_out_of_777",
	   E(rename("a/d777/sub2", "a/d777/bd/sub")));
	rc("other_create_in_300",
	   F(open("a/d300/b", O_CREAT | O_WRONLY, 0644)));
	rc("other_list_300", E(count_entries("a/d300")));
	rc("other_read_in_300", F(open("a/d300/x", O_RDONLY)));
	as(UA);
	rc("owner_read_000", F(open("a/f000", O_RDONLY)));
	rc("owner_chmod_000", E(chmod("a/f000", 0400)));
	say("owner_read_400", "%s", content_s("a/f000"));
	rc("owner_rename_dir_out_of_777", E(rename("a/d777/bd", "a/d755/bd")));
	as(ROOT);
	rc("root_read_600", F(open("a/f600", O_RDONLY)));
	rc("root_write_644", F(open("a/f644", O_WRONLY)));
	X(chmod("a/f000", 0));
	rc("root_read_000", F(open("a/f000", O_RDONLY)));
	rc("root_list_700", E(count_entries("a/d700")));
	rc("root_create_in_755", F(open("a/d755/r", O_CREAT | O_WRONLY, 0644)));
	say("root_create_in_755_owner", "%s", om_s("a/d755/r"));
	rc("root_unlink_in_300", E(unlink("a/d300/x")));
	(void)b;
}

/* Group and owner classes: C shares group S with A, B does not. */
static void x_groups(void)
{
	mkd_as(UA, "a", 0755);
	as(UA);
	mkf("a/g640", 0640, "g640");
	mkf("a/g460", 0460, "g460");
	mkf("a/g604", 0604, "g604");
	mkf("a/g060", 0060, "g060");
	X(chown("a/g640", (uid_t)-1, GID_S));
	X(chown("a/g460", (uid_t)-1, GID_S));
	X(chown("a/g604", (uid_t)-1, GID_S));
	X(chown("a/g060", (uid_t)-1, GID_S));
	mkd("a/gd", 0070);
	X(chown("a/gd", (uid_t)-1, GID_S));
	rc("owner_read_460", F(open("a/g460", O_RDONLY)));
	rc("owner_write_460", F(open("a/g460", O_WRONLY)));
	rc("owner_read_060", F(open("a/g060", O_RDONLY)));
	rc("owner_enter_070_dir", E(access("a/gd/.", F_OK)));
	as(UC);
	rc("member_read_640", F(open("a/g640", O_RDONLY)));
	rc("member_write_640", F(open("a/g640", O_WRONLY)));
	rc("member_read_460", F(open("a/g460", O_RDONLY)));
	rc("member_write_460", F(open("a/g460", O_WRONLY)));
	rc("member_read_604", F(open("a/g604", O_RDONLY)));
	rc("member_write_060", F(open("a/g060", O_WRONLY)));
	rc("member_create_in_070_dir",
	   F(open("a/gd/c", O_CREAT | O_WRONLY, 0644)));
	say("member_create_in_070_dir_owner", "%s", om_s("a/gd/c"));
	as(UB);
	rc("other_read_640", F(open("a/g640", O_RDONLY)));
	rc("other_read_604", F(open("a/g604", O_RDONLY)));
	rc("other_read_060", F(open("a/g060", O_RDONLY)));
	rc("other_enter_070_dir", E(access("a/gd/.", F_OK)));
	as(UC);
	say("member_access_640", "%s", acc_s("a/g640"));
	say("member_access_604", "%s", acc_s("a/g604"));
	as(UB);
	say("other_access_640", "%s", acc_s("a/g640"));
	say("other_access_604", "%s", acc_s("a/g604"));
	as(UA);
	say("owner_access_460", "%s", acc_s("a/g460"));
	say("owner_access_060", "%s", acc_s("a/g060"));
}

static void x_chown(void)
{
	mkd_as(UA, "a", 0777);
	as(UA);
	mkf("a/f", 0644, "");
	mkf("a/f666", 0666, "");
	X(symlink("f", "a/sl"));
	mkd("a/d", 0755);
	as(UB);
	rc("other_chmod", E(chmod("a/f", 0777)));
	rc("other_chmod_666", E(chmod("a/f666", 0777)));
	{
		int fd = open("a/f666", O_WRONLY);

		X(fd);
		rc("other_fchmod_666", E(fchmod(fd, 0777)));
		rc("other_fchown_666", E(fchown(fd, UID_B, (gid_t)-1)));
		close(fd);
	}
	rc("other_chown_to_self", E(chown("a/f", UID_B, (gid_t)-1)));
	rc("other_chgrp_to_own_group", E(chown("a/f", (uid_t)-1, GID_B)));
	rc("other_chown_none", E(chown("a/f", (uid_t)-1, (gid_t)-1)));
	rc("other_lchown_symlink", E(lchown("a/sl", (uid_t)-1, GID_B)));
	rc("other_chmod_dir", E(chmod("a/d", 0777)));
	say("other_after", "%s %s", om_s("a/f"), om_s("a/d"));
	as(UA);
	rc("owner_give_away", E(chown("a/f", UID_B, (gid_t)-1)));
	rc("owner_chgrp_member", E(chown("a/f", (uid_t)-1, GID_S)));
	rc("owner_chgrp_nonmember", E(chown("a/f", (uid_t)-1, GID_G)));
	rc("owner_chgrp_root", E(chown("a/f", (uid_t)-1, 0)));
	rc("owner_chown_self", E(chown("a/f", UID_A, GID_A)));
	say("owner_after", "%s", om_s("a/f"));
	/* sgid on a file whose group the owner is not in is dropped */
	as(ROOT);
	X(chown("a/f", UID_A, GID_G));
	as(UA);
	rc("owner_chmod_sgid_nonmember_group", E(chmod("a/f", 02755)));
	say("owner_chmod_sgid_nonmember_group_mode", "%s", mode_s("a/f"));
	rc("owner_chmod_sgid_nonmember_dir", E(chmod("a/d", 0755)));
	as(ROOT);
	X(chown("a/d", UID_A, GID_G));
	as(UA);
	rc("owner_chmod_sgid_nonmember_dir2", E(chmod("a/d", 02775)));
	say("owner_chmod_sgid_nonmember_dir_mode", "%s", mode_s("a/d"));
	X(chown("a/f666", (uid_t)-1, GID_S));
	rc("owner_chmod_sgid_member_group", E(chmod("a/f666", 02755)));
	say("owner_chmod_sgid_member_group_mode", "%s", mode_s("a/f666"));
	as(ROOT);
	X(chmod("a/f666", 06755));
	rc("root_chown", E(chown("a/f666", UID_B, GID_B)));
	say("root_chown_after", "%s", om_s("a/f666"));
	X(chmod("a/d", 02755));
	rc("root_chown_dir", E(chown("a/d", UID_B, GID_B)));
	say("root_chown_dir_after", "%s", om_s("a/d"));
	as(UA);
	rc("old_owner_chmod", E(chmod("a/f666", 0600)));
	as(UB);
	rc("new_owner_chmod", E(chmod("a/f666", 0600)));
	say("new_owner_chmod_mode", "%s", om_s("a/f666"));
}

/* utimensat by someone who does not own the file */
static void x_utimes(void)
{
	struct tsnap b, a;

	mkd_as(UA, "a", 0755);
	as(UA);
	mkf("a/f644", 0644, "");
	mkf("a/f666", 0666, "");
	mkf("a/f444", 0444, "");
	X(symlink("f666", "a/sl"));
	as(UB);
	rc("other_explicit_644",
	   set_times("a/f644", 1000000000, 0, 1000000000, 0, 0));
	rc("other_now_644", set_times("a/f644", 0, UTIME_NOW, 0, UTIME_NOW, 0));
	rc("other_null_644", E(utimensat(AT_FDCWD, "a/f644", NULL, 0)));
	rc("other_explicit_666",
	   set_times("a/f666", 1000000000, 0, 1000000000, 0, 0));
	b = tbefore("a/f666");
	rc("other_now_666", set_times("a/f666", 0, UTIME_NOW, 0, UTIME_NOW, 0));
	a = tget("a/f666");
	say("other_now_666_times", "%s", trel(&b, &a));
	rc("other_null_666", E(utimensat(AT_FDCWD, "a/f666", NULL, 0)));
	rc("other_now_omit_666",
	   set_times("a/f666", 0, UTIME_NOW, 0, UTIME_OMIT, 0));
	rc("other_omit_omit_666",
	   set_times("a/f666", 0, UTIME_OMIT, 0, UTIME_OMIT, 0));
	rc("other_explicit_symlink_nofollow",
	   set_times("a/sl", 1, 0, 1, 0, AT_SYMLINK_NOFOLLOW));
	{
		int fd = open("a/f666", O_WRONLY);

		X(fd);
		rc("other_futimens_null", E(futimens(fd, NULL)));
		rc("other_futimens_explicit",
		   E(futimens(fd, ((struct timespec[]){{1, 0}, {1, 0}}))));
		close(fd);
	}
	as(UA);
	rc("owner_explicit_444",
	   set_times("a/f444", 1000000000, 7, 1000000000, 8, 0));
	rc("owner_null_444", E(utimensat(AT_FDCWD, "a/f444", NULL, 0)));
	as(ROOT);
	rc("root_explicit",
	   set_times("a/f644", 1300000000, 9, 1300000000, 10, 0));
	say("root_explicit_owner", "%s", own_s("a/f644"));
}

/* sticky directories */
static void x_sticky(void)
{
	mkd_as(ROOT, "t", 01777);
	as(UA);
	mkf("t/a", 0666, "A's");
	mkf("t/a644", 0644, "A's");
	mkd("t/ad", 0777);
	mkf("t/ae", 0666, "");
	as(UB);
	mkf("t/b", 0644, "B's");
	rc("other_unlink", E(unlink("t/a")));
	rc("other_rename", E(rename("t/a", "t/x")));
	rc("other_rename_over", E(rename("t/b", "t/a")));
	rc("other_exchange", rename2("t/b", "t/a", RENAME_EXCHANGE));
	rc("other_rmdir", E(rmdir("t/ad")));
	rc("other_rename_dir", E(rename("t/ad", "t/y")));
	rc("other_write", wr_at("t/a", "b", 0));
	rc("other_creat_existing", F(open("t/a", O_CREAT | O_WRONLY, 0666)));
	rc("other_link_rw", E(link("t/a", "t/bl")));
	rc("other_link_ro", E(link("t/a644", "t/bl2")));
	rc("other_create_same_name", E(mkfifo("t/a", 0644)));
	rc("other_create_in_subdir",
	   F(open("t/ad/b", O_CREAT | O_WRONLY, 0644)));
	rc("other_setxattr_on_dir", E(setxattr("t", "user.x", "1", 1, 0)));
	rc("own_rename", E(rename("t/b", "t/b2")));
	rc("own_unlink", E(unlink("t/b2")));
	as(UA);
	rc("owner_unlink", E(unlink("t/a")));
	rc("owner_rmdir_nonempty", E(rmdir("t/ad")));
	as(ROOT);
	rc("root_unlink", E(unlink("t/ae")));
	/* the directory's owner may remove anything in it */
	mkd_as(UB, "u", 01777);
	as(UA);
	mkf("u/a", 0644, "");
	as(UB);
	rc("dir_owner_unlink", E(unlink("u/a")));
	/* sticky on a plain file changes nothing */
	as(UA);
	mkd("t/plain", 0777);
	mkf("t/plain/s", 01666, "");
	as(UB);
	rc("sticky_file_unlink", E(unlink("t/plain/s")));
	as(UA);
	say("dir_mode", "%s", mode_s("t"));
}

/* setgid directories */
static void x_setgid(void)
{
	mkd_as(ROOT, "sg", 02777);
	as(ROOT);
	X(chown("sg", 0, GID_G));
	X(chmod("sg", 02777));
	as(UA);
	X(F(open("sg/f", O_CREAT | O_WRONLY, 0644)));
	say("file", "%s", om_s("sg/f"));
	X(F(open("sg/s", O_CREAT | O_WRONLY, 02755)));
	say("file_sgid_nonmember", "%s", om_s("sg/s"));
	X(F(open("sg/s2", O_CREAT | O_WRONLY, 02644)));
	say("file_sgid_noexec_nonmember", "%s", om_s("sg/s2"));
	X(mkdir("sg/d", 0755));
	say("dir", "%s", om_s("sg/d"));
	X(mkdir("sg/d/e", 0700));
	say("dir_nested", "%s", om_s("sg/d/e"));
	X(mkfifo("sg/p", 0644));
	say("fifo", "%s", om_s("sg/p"));
	X(symlink("x", "sg/l"));
	say("symlink", "%s", own_s("sg/l"));
	X(mknod("sg/r", S_IFREG | 0600, 0));
	say("mknod", "%s", om_s("sg/r"));
	mkd_as(UA, "home", 0755);
	as(UA);
	mkf("home/m", 0644, "");
	X(rename("home/m", "sg/m"));
	say("moved_in", "%s", om_s("sg/m"));
	mkf("home/k", 0644, "");
	X(link("home/k", "sg/k"));
	say("linked_in", "%s", om_s("sg/k"));
	X(rename("sg/d", "home/d"));
	say("moved_out_dir", "%s", om_s("home/d"));
	X(mkdir("home/d/x", 0755));
	say("moved_out_dir_new", "%s", om_s("home/d/x"));
	rc("owner_chmod_clear", E(chmod("sg/d/e", 0755)));
	rc("owner_chmod_set_nonmember", E(chmod("home/d/x", 02755)));
	say("owner_chmod_set_nonmember_mode", "%s", mode_s("home/d/x"));
	as(ROOT);
	X(F(open("sg/rf", O_CREAT | O_WRONLY, 02755)));
	say("root_file", "%s", om_s("sg/rf"));
	X(mkdir("sg/rd", 0755));
	say("root_dir", "%s", om_s("sg/rd"));
	/* a group A is in */
	mkd_as(ROOT, "ss", 02777);
	as(ROOT);
	X(chown("ss", 0, GID_S));
	X(chmod("ss", 02777));
	as(UA);
	X(F(open("ss/s", O_CREAT | O_WRONLY, 02755)));
	say("file_sgid_member", "%s", om_s("ss/s"));
	X(mkdir("ss/d", 0751));
	say("dir_member", "%s", om_s("ss/d"));
	X(mkfifo("ss/p", 02644));
	say("fifo_sgid_member", "%s", om_s("ss/p"));
	as(UB);
	X(F(open("ss/b", O_CREAT | O_WRONLY, 02711)));
	say("file_sgid_other", "%s", om_s("ss/b"));
	X(mkfifo("ss/bp", 02666));
	say("fifo_sgid_noexec_other", "%s", om_s("ss/bp"));
}

/* suid/sgid on writes by non-root users */
static void x_suid(void)
{
	mkd_as(UA, "a", 0777);
	as(UA);
	mkf("a/f1", 06777, "");
	mkf("a/f2", 06777, "");
	mkf("a/f3", 04777, "abc");
	mkf("a/f4", 02747, "");
	mkf("a/f5", 06777, "");
	mkf("a/f6", 06777, "");
	mkf("a/f7", 06777, "");
	mkf("a/f8", 06777, "abc");
	as(UB);
	rc("other_o_trunc", F(open("a/f8", O_WRONLY | O_TRUNC)));
	say("other_o_trunc_mode", "%s", mode_s("a/f8"));
	rc("other_write", wr_at("a/f1", "x", 0));
	say("other_write_mode", "%s", mode_s("a/f1"));
	rc("other_truncate", E(truncate("a/f3", 1)));
	say("other_truncate_mode", "%s", mode_s("a/f3"));
	rc("other_write_sgid_noexec", wr_at("a/f4", "x", 0));
	say("other_write_sgid_noexec_mode", "%s", mode_s("a/f4"));
	rc("other_setxattr", E(setxattr("a/f5", "user.x", "1", 1, 0)));
	say("other_setxattr_mode", "%s", mode_s("a/f5"));
	as(UA);
	rc("owner_write", wr_at("a/f2", "x", 0));
	say("owner_write_mode", "%s", mode_s("a/f2"));
	rc("owner_chgrp", E(chown("a/f6", (uid_t)-1, GID_S)));
	say("owner_chgrp_mode", "%s", om_s("a/f6"));
	as(ROOT);
	rc("root_write", wr_at("a/f7", "x", 0));
	say("root_write_mode", "%s", mode_s("a/f7"));
	mkf("a/r", 06777, "");
	as(UA);
	rc("user_write_roots", wr_at("a/r", "x", 0));
	say("user_write_roots_mode", "%s", om_s("a/r"));
	as(ROOT);
	rc("root_chown_to_same", E(chown("a/f7", UID_A, GID_A)));
	say("root_chown_to_same_mode", "%s", mode_s("a/f7"));
}

static void x_xattr(void)
{
	mkd_as(UA, "a", 0755);
	as(UA);
	mkf("a/f644", 0644, "");
	mkf("a/f600", 0600, "");
	mkf("a/f666", 0666, "");
	X(setxattr("a/f644", "user.a", "va", 2, 0));
	X(setxattr("a/f600", "user.a", "va", 2, 0));
	as(UB);
	say("other_get_644", "%s", xget_s("a/f644", "user.a"));
	rc("other_set_644", E(setxattr("a/f644", "user.b", "1", 1, 0)));
	rc("other_remove_644", E(removexattr("a/f644", "user.a")));
	say("other_list_644", "%s", xlist_s("a/f644"));
	say("other_get_600", "%s", xget_s("a/f600", "user.a"));
	rc("other_set_666", E(setxattr("a/f666", "user.b", "vb", 2, 0)));
	say("other_set_666_get", "%s", xget_s("a/f666", "user.b"));
	rc("other_trusted", E(setxattr("a/f666", "trusted.x", "1", 1, 0)));
	rc("other_remove_666", E(removexattr("a/f666", "user.b")));
	as(ROOT);
	say("root_get_600", "%s", xget_s("a/f600", "user.a"));
	rc("root_set_600", E(setxattr("a/f600", "user.r", "vr", 2, 0)));
	say("root_set_600_list", "%s", xlist_s("a/f600"));
}

/* rename and link across users' directories */
static void x_rename(void)
{
	mkd_as(UA, "a", 0755);
	mkd_as(UB, "b", 0755);
	mkd_as(ROOT, "w", 0777);
	as(UA);
	mkf("a/f", 0644, "A");
	mkd("w/ad", 0755);
	mkf("w/af", 0644, "");
	as(UB);
	mkf("b/f", 0644, "B");
	rc("into_other_dir", E(rename("b/f", "a/f")));
	rc("out_of_other_dir", E(rename("a/f", "b/g")));
	rc("other_dir_same_parent", E(rename("w/ad", "w/ad2")));
	rc("other_dir_other_parent", E(rename("w/ad2", "b/ad")));
	rc("other_file_other_parent", E(rename("w/af", "b/af")));
	say("other_file_other_parent_owner", "%s", om_s("b/af"));
	rc("other_hardlink", E(link("a/f", "b/l")));
	as(UA);
	rc("owner_dir_other_parent", E(rename("w/ad2", "a/ad")));
}

/* ---- runner --------------------------------------------------------------
 */

enum { GENERIC, CROSS };

static const struct check_group {
	const char *name;
	void (*fn)(void);
	int kind;
} groups[] = {
    {"open", g_open, GENERIC},
    {"creat", g_creat, GENERIC},
    {"mkdir", g_mkdir, GENERIC},
    {"mknod", g_mknod, GENERIC},
    {"symlink", g_symlink, GENERIC},
    {"link", g_link, GENERIC},
    {"unlink", g_unlink, GENERIC},
    {"rmdir", g_rmdir, GENERIC},
    {"rename", g_rename, GENERIC},
    {"rename2", g_rename2, GENERIC},
    {"truncate", g_truncate, GENERIC},
    {"modes", g_modes, GENERIC},
    {"chmod", g_chmod, GENERIC},
    {"suid", g_suid, GENERIC},
    {"own", g_own, GENERIC},
    {"times", g_times_file, GENERIC},
    {"dirtimes", g_times_dir, GENERIC},
    {"utimens", g_utimens, GENERIC},
    {"nlink", g_nlink, GENERIC},
    {"share", g_share, GENERIC},
    {"xattr", g_xattr, GENERIC},
    {"io", g_io, GENERIC},
    {"seek", g_seek, GENERIC},
    {"sync", g_sync, GENERIC},
    {"readdir", g_readdir, GENERIC},
    {"access", g_access, GENERIC},
    {"unlinked", g_unlinked, GENERIC},
    {"readlink", g_readlink, GENERIC},
    {"stat", g_stat, GENERIC},
    {"perm", x_perm, CROSS},
    {"groups", x_groups, CROSS},
    {"chown", x_chown, CROSS},
    {"utimes", x_utimes, CROSS},
    {"sticky", x_sticky, CROSS},
    {"setgid", x_setgid, CROSS},
    {"suid", x_suid, CROSS},
    {"xattr", x_xattr, CROSS},
    {"rename", x_rename, CROSS},
};

/* Run one group in a child, in a fresh subdirectory of the current one. */
static int run_group(const struct check_group *g, enum who w, int n)
{
	char dir[32];
	int status;
	pid_t pid;

	snprintf(dir, sizeof(dir), "c%03d", n);
	if (mkdir(dir, 0755) < 0 || chown(dir, ids[w].uid, ids[w].gid) < 0) {
		printf("%s: cannot make %s: %s\n", g->name, dir, ename(errno));
		return 1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("posixsem: fork");
		exit(2);
	}
	if (pid == 0) {
		self = w;
		prefix = g->kind == CROSS ? "x/"
			 : w == ROOT	  ? "root/"
					  : "user/";
		group = g->name;
		alarm(60);
		if (chdir(dir) < 0)
			setup_fail(__LINE__, dir);
		as(w);
		g->fn();
		fflush(stdout);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFSIGNALED(status))
		printf("%s: child killed by signal %d\n", g->name,
		       WTERMSIG(status));
	return 1;
}

int main(int argc, char **argv)
{
	const size_t ng = sizeof(groups) / sizeof(groups[0]);
	const char *only = getenv("POSIXSEM_ONLY");
	int n = 0, bad = 0;

	if (argc == 2 && strcmp(argv[1], "-l") == 0) {
		for (size_t i = 0; i < ng; i++)
			printf("%s %s\n",
			       groups[i].kind == CROSS ? "cross" : "generic",
			       groups[i].name);
		return 0;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: posixsem [-l] DIR\n");
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "posixsem: must run as root\n");
		return 2;
	}
	if (chdir(argv[1]) < 0) {
		fprintf(stderr, "posixsem: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	umask(0);
	memset(name255, 'n', 255);
	memset(name256, 'n', 256);
	for (size_t i = 0; i < ng; i++) {
		if (only && strcmp(only, groups[i].name) != 0)
			continue;
		if (groups[i].kind == CROSS) {
			bad |= run_group(&groups[i], ROOT, n++);
		} else {
			bad |= run_group(&groups[i], ROOT, n++);
			bad |= run_group(&groups[i], UA, n++);
		}
	}
	return bad;
}
