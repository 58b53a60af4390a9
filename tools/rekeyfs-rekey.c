/*
 * rekeyfs-rekey: move every file of a backing tree to the keyring's
 * primary generation, online; report per-generation status; verify.
 * A thin CLI over the engine in src/rekey.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rekeyfs/config.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/keyring.h"
#include "rekeyfs/passphrase.h"
#include "rekeyfs/rekey.h"

#ifndef RKFS_VERSION
#define RKFS_VERSION "0.0.0"
#endif

#define EXIT_DONE 0
#define EXIT_PARTIAL 1
#define EXIT_USAGE 2

static const char usage_text[] =
"Usage: rekeyfs-rekey [OPTIONS] --keyring FILE BACKING_DIR\n"
"       rekeyfs-rekey [OPTIONS] --config FILE [BACKING_DIR]\n"
"\n"
"Rewrite every file of the encrypted backing directory that is not on the\n"
"keyring's primary generation so that it is, while mounts stay live.\n"
"\n"
"Modes (default: rekey):\n"
"      --status           files and bytes per generation (reads 32 bytes per\n"
"                         file; the keyring is optional and needs no keys)\n"
"      --generation N     with --status: list the files on generation N\n"
"                         (backing-relative paths; 0 = empty, no header)\n"
"  -n, --dry-run          list what would be rewritten; write nothing\n"
"      --verify           authenticate every block of every file; rewrite\n"
"                         nothing (an fsck)\n"
"      --repair           with --verify: repair what a crash left (an\n"
"                         unreadable tail is cut after the last block that\n"
"                         authenticates; an interrupted append is completed\n"
"                         with zeros), reporting exactly what was lost; files\n"
"                         with bad blocks in the middle are left alone\n"
"\n"
"Options:\n"
"  -k, --keyring FILE     the keyring (its primary is the target generation)\n"
"  -c, --config FILE      a [mount] config: keyring, backing, passphrase\n"
"      --passphrase-file FILE   passphrase of a sealed keyring\n"
"      --passphrase-command CMD command printing that passphrase; the\n"
"                         command line is visible to every user in\n"
"                         /proc/PID/cmdline (ps): prefer passphrase_command\n"
"                         in the --config file\n"
"      --allow-unsealed   accept an unsealed keyring for a tree that\n"
"                         recorded a passphrase-sealed one (logged)\n"
"  -j, --jobs N           files rewritten in parallel (default: CPUs)\n"
"  -w, --wait SECONDS     keep retrying files that are open in a mount for\n"
"                         up to SECONDS (default 0: report them as busy)\n"
"      --json             print the report as one JSON object on stdout\n"
"  -q, --quiet            no progress line\n"
"  -h, --help             this help\n"
"  -V, --version          print the version\n"
"\n"
"How it works: one run per tree (a lock on BACKING/.rekeyfs.lock; a second\n"
"run is refused).  A file open in a mount is busy and never rewritten under\n"
"its writer.  Each file is decrypted and authenticated completely into a\n"
"hidden temp file in its directory, fsynced, given the old owner, mode,\n"
"xattrs and times, and renamed over the old name after re-checking under a\n"
"directory lock that the name still refers to it.  Hard-linked files are\n"
"rewritten in place instead (all names stay one inode) under an intent\n"
"record in the backing root: a mount of the tree finishes an interrupted\n"
"in-place copy itself (at mount time, and when it next reads that file),\n"
"so readers see the old or the new version; the next run (rekey or\n"
"--verify) does too.\n"
"Files already on the primary are not touched; a file that fails\n"
"authentication or whose generation is not in the keyring is reported and\n"
"left as it was.  Holes stay holes; symlinks, fifos, sockets and devices\n"
"are left alone.  If the run is killed, every file is its old or its new\n"
"version and the next run removes the leftovers and finishes; SIGINT and\n"
"SIGTERM stop after the files in flight.\n"
"\n"
"Exit status:\n"
"  0  done: every file is on the primary (--verify: every file is intact)\n"
"  1  partial: some files were busy, failed, or the run was interrupted\n"
"     (--verify: some files failed or were repaired;\n"
"     --dry-run/--status: never)\n"
"  2  usage error, unusable or wrong keyring, not a rekeyfs tree, or\n"
"     another rekeyfs-rekey holds the lock\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void die_usage(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "rekeyfs-rekey: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'rekeyfs-rekey --help'.\n");
	exit(EXIT_USAGE);
}

static unsigned long long parse_num(const char *s, const char *opt,
				    unsigned long long max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (*s == '\0' || *s == '-')
		die_usage("%s needs a non-negative number", opt);
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v > max)
		die_usage("%s: invalid number", opt);
	return v;
}

static double parse_seconds(const char *s)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= 0) || v > 1e7)
		die_usage("--wait needs a number of seconds, not '%s'", s);
	return v;
}

/* --- output helpers --------------------------------------------------- */

/* Print a path for people: control characters and backslashes escaped. */
static void put_path(FILE *f, const char *p)
{
	for (; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '\\')
			fputs("\\\\", f);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\x%02x", ch);
		else
			fputc(ch, f);
	}
}

/* Length of a valid UTF-8 sequence at p, or 0. */
static int utf8_len(const unsigned char *p)
{
	int n, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string; bytes that are not UTF-8 become U+0080..U+00FF. */
static void put_json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		int n = utf8_len(p);

		if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p++, f);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p++);
		} else if (n == 0) {
			fprintf(f, "\\u%04x", *p++);
		} else {
			fwrite(p, 1, (size_t)n, f);
			p += n;
		}
	}
	fputc('"', f);
}

static const char *gen_state(const struct rkfs_keyring *kr, uint32_t gen)
{
	const struct rkfs_generation *g;

	if (gen == 0)
		return "empty";
	if (kr == NULL)
		return "unknown";
	g = rkfs_keyring_find(kr, gen);
	if (g == NULL)
		return "missing";
	return rkfs_gen_state_name(g->state);
}

static const char *mode_name(enum rkfs_rekey_mode m)
{
	switch (m) {
	case RKFS_REKEY_DRY_RUN:
		return "dry-run";
	case RKFS_REKEY_VERIFY:
		return "verify";
	case RKFS_REKEY_STATUS:
		return "status";
	default:
		return "rekey";
	}
}

static void json_gens(FILE *f, const struct rkfs_rekey_gen_count *v, size_t n,
		      const struct rkfs_keyring *kr)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		uint32_t g = v[i].generation;
		bool primary = kr && g && g == kr->primary;

		fprintf(f,
			"%s{\"generation\":%u,\"state\":\"%s\",\"primary\":%s,"
			"\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
			i ? "," : "", g, gen_state(kr, g),
			primary ? "true" : "false", v[i].files, v[i].bytes);
	}
	fputc(']', f);
}

static void json_list(FILE *f, const char *key, const struct rkfs_rekey_list *l,
		      bool reasons)
{
	fprintf(f, ",\"%s\":[", key);
	for (size_t i = 0; i < l->count; i++) {
		fputs(i ? "," : "", f);
		if (reasons) {
			fputs("{\"path\":", f);
			put_json_str(f, l->v[i].path);
			fputs(",\"reason\":", f);
			put_json_str(f, l->v[i].reason ? l->v[i].reason : "");
			fputc('}', f);
		} else {
			put_json_str(f, l->v[i].path);
		}
	}
	fputc(']', f);
}

static void print_json(const struct rkfs_rekey_report *r, const char *backing,
		       const struct rkfs_keyring *kr, int status)
{
	FILE *f = stdout;

	fprintf(f, "{\"mode\":\"%s\",\"backing\":", mode_name(r->mode));
	put_json_str(f, backing);
	fprintf(f, ",\"target_generation\":%u,\"exit_status\":%d", r->target,
		status);
	fprintf(f, ",\"files\":%" PRIu64 ",\"migrated\":%" PRIu64
		   ",\"current\":%" PRIu64 ",\"verified\":%" PRIu64
		   ",\"would_rewrite\":%" PRIu64 ",\"busy\":%zu,\"failed\":%zu"
		   ",\"skipped\":%zu,\"bytes_rewritten\":%" PRIu64
		   ",\"temps_removed\":%" PRIu64 ",\"resumed\":%" PRIu64
		   ",\"bad_headers\":%" PRIu64 ",\"remaining\":%" PRIu64
		   ",\"interrupted\":%s,\"elapsed_seconds\":%.3f",
		r->files, r->migrated, r->current, r->verified,
		r->would_rewrite, r->busy.count, r->failed.count,
		r->skipped.count, r->bytes_rewritten, r->temps_removed,
		r->resumed, r->bad_headers, r->remaining,
		r->interrupted ? "true" : "false", r->elapsed);
	fputs(",\"before\":", f);
	json_gens(f, r->before, r->nbefore, kr);
	if (r->mode == RKFS_REKEY_REWRITE) {
		fputs(",\"after\":", f);
		json_gens(f, r->after, r->nafter, kr);
	}
	json_list(f, "failed_files", &r->failed, true);
	json_list(f, "busy_files", &r->busy, true);
	json_list(f, "skipped_files", &r->skipped, true);
	if (r->mode == RKFS_REKEY_VERIFY)
		json_list(f, "repaired_files", &r->repaired, true);
	if (r->mode == RKFS_REKEY_DRY_RUN)
		json_list(f, "would_rewrite_files", &r->listed, true);
	if (r->mode == RKFS_REKEY_STATUS)
		json_list(f, "listed_files", &r->listed, false);
	fputs("}\n", f);
}

static void human_bytes(char *out, size_t size, uint64_t b)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void text_gens(FILE *f, const char *title,
		      const struct rkfs_rekey_gen_count *v, size_t n,
		      const struct rkfs_keyring *kr)
{
	fprintf(f, "%s:\n  %-10s  %-18s %10s %14s\n", title, "generation",
		"state", "files", "bytes");
	for (size_t i = 0; i < n; i++) {
		char st[40];

		snprintf(st, sizeof(st), "%s%s", gen_state(kr, v[i].generation),
			 kr && v[i].generation &&
					 v[i].generation == kr->primary ?
				 ", primary" : "");
		if (v[i].generation)
			fprintf(f, "  %-10u  %-18s %10" PRIu64 " %14" PRIu64
				   "\n",
				v[i].generation, st, v[i].files, v[i].bytes);
		else
			fprintf(f, "  %-10s  %-18s %10" PRIu64 " %14" PRIu64
				   "\n",
				"-", "empty, no header", v[i].files,
				v[i].bytes);
	}
	if (n == 0)
		fprintf(f, "  (no files)\n");
}

static void text_list(FILE *f, const char *tag, const struct rkfs_rekey_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		fprintf(f, "%s: ", tag);
		put_path(f, l->v[i].path);
		if (l->v[i].reason)
			fprintf(f, ": %s", l->v[i].reason);
		fputc('\n', f);
	}
}

static void print_text(const struct rkfs_rekey_report *r, const char *backing,
		       const struct rkfs_keyring *kr)
{
	FILE *f = stdout;
	char hb[32];

	if (r->mode == RKFS_REKEY_STATUS) {
		fprintf(f, "backing: ");
		put_path(f, backing);
		if (kr)
			fprintf(f, "\nprimary generation: %u", kr->primary);
		fprintf(f, "\nfiles: %" PRIu64 "\n", r->files);
		text_gens(f, "per generation", r->before, r->nbefore, kr);
		if (r->bad_headers)
			fprintf(f, "unreadable headers: %" PRIu64 "\n",
				r->bad_headers);
		if (kr)
			fprintf(f, "not on the primary: %" PRIu64 "\n",
				r->remaining);
		return;
	}
	fprintf(f, "%s of ", mode_name(r->mode));
	put_path(f, backing);
	fprintf(f, " (target generation %u)\n", r->target);
	switch (r->mode) {
	case RKFS_REKEY_REWRITE:
		human_bytes(hb, sizeof(hb), r->bytes_rewritten);
		fprintf(f, "migrated:        %" PRIu64 " (%" PRIu64
			   " bytes, %s rewritten)\n",
			r->migrated, r->bytes_rewritten, hb);
		fprintf(f, "already current: %" PRIu64 "\n", r->current);
		break;
	case RKFS_REKEY_VERIFY:
		fprintf(f, "verified:        %" PRIu64 "\n", r->verified);
		break;
	case RKFS_REKEY_DRY_RUN:
		fprintf(f, "would rewrite:   %" PRIu64 "\n", r->would_rewrite);
		fprintf(f, "already current: %" PRIu64 "\n", r->current);
		break;
	default:
		break;
	}
	fprintf(f, "busy:            %zu\n", r->busy.count);
	fprintf(f, "failed:          %zu\n", r->failed.count);
	if (r->skipped.count)
		fprintf(f, "skipped:         %zu\n", r->skipped.count);
	if (r->repaired.count)
		fprintf(f, "repaired:        %zu\n", r->repaired.count);
	if (r->temps_removed || r->resumed)
		fprintf(f, "leftovers:       %" PRIu64 " temp files removed, %"
			   PRIu64 " interrupted rewrites finished\n",
			r->temps_removed, r->resumed);
	if (r->mode == RKFS_REKEY_REWRITE && r->remaining)
		fprintf(f, "remaining:       %" PRIu64
			   " files not on generation %u\n",
			r->remaining, r->target);
	if (r->interrupted)
		fprintf(f, "interrupted:     yes (stopped by a signal)\n");
	fprintf(f, "elapsed:         %.2f s\n", r->elapsed);
	text_gens(f, "before", r->before, r->nbefore, kr);
	if (r->mode == RKFS_REKEY_REWRITE)
		text_gens(f, "after", r->after, r->nafter, kr);
	if (r->mode == RKFS_REKEY_DRY_RUN)
		text_list(f, "would rewrite", &r->listed);
	text_list(f, "FAILED", &r->failed);
	text_list(f, "BUSY", &r->busy);
	text_list(f, "skipped", &r->skipped);
	text_list(f, "REPAIRED", &r->repaired);
}

/* A fatal error: on stderr, and with --json also as a JSON object. */
static void fatal(bool json, const char *msg)
{
	fprintf(stderr, "rekeyfs-rekey: %s\n", msg);
	if (json) {
		fputs("{\"error\":", stdout);
		put_json_str(stdout, msg);
		printf(",\"exit_status\":%d}\n", EXIT_USAGE);
	}
}

/* --- progress --------------------------------------------------------- */

struct progress_ctx {
	struct rkfs_rekey_progress p;
	bool tty;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	double t0;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_line(struct progress_ctx *pc)
{
	uint64_t fd = __atomic_load_n(&pc->p.files_done, __ATOMIC_RELAXED);
	uint64_t bd = rkfs_rekey_progress_bytes(&pc->p);
	uint64_t ft = pc->p.files_total, bt = pc->p.bytes_total;
	double t = mono() - pc->t0, rate = t > 0 ? (double)bd / t : 0;
	char a[32], b[32], r[32], eta[32] = "?";

	if (pc->p.phase == 0) {
		fprintf(stderr, "%sscanning...%s", pc->tty ? "\r\033[K" : "",
			pc->tty ? "" : "\n");
		return;
	}
	human_bytes(a, sizeof(a), bd);
	human_bytes(b, sizeof(b), bt);
	human_bytes(r, sizeof(r), (uint64_t)rate);
	if (rate > 0 && bt >= bd)
		snprintf(eta, sizeof(eta), "%.0f s",
			 (double)(bt - bd) / rate);
	fprintf(stderr,
		"%s%" PRIu64 "/%" PRIu64 " files, %s/%s, %s/s, ETA %s%s",
		pc->tty ? "\r\033[K" : "", fd, ft, a, b, r, eta,
		pc->tty ? "" : "\n");
}

static void *progress_thread(void *arg)
{
	struct progress_ctx *pc = arg;
	double period = pc->tty ? 0.25 : 5.0;

	pthread_mutex_lock(&pc->mu);
	while (!pc->done) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)((period - (double)(long)period) * 1e9);
		ts.tv_sec += (time_t)period + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&pc->cv, &pc->mu, &ts);
		if (!pc->done)
			progress_line(pc);
	}
	pthread_mutex_unlock(&pc->mu);
	if (pc->tty)
		fputs("\r\033[K", stderr);
	return NULL;
}

/* --- main ------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "keyring", required_argument, NULL, 'k' },
		{ "config", required_argument, NULL, 'c' },
		{ "passphrase-file", required_argument, NULL, 'P' },
		{ "passphrase-command", required_argument, NULL, 'C' },
		{ "allow-unsealed", no_argument, NULL, 'U' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "wait", required_argument, NULL, 'w' },
		{ "status", no_argument, NULL, 'S' },
		{ "generation", required_argument, NULL, 'G' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verify", no_argument, NULL, 'v' },
		{ "repair", no_argument, NULL, 'R' },
		{ "json", no_argument, NULL, 'J' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct rkfs_rekey_opts o = { .mode = RKFS_REKEY_REWRITE };
	struct rkfs_rekey_report rep;
	struct progress_ctx pc = { .mu = PTHREAD_MUTEX_INITIALIZER,
				   .cv = PTHREAD_COND_INITIALIZER };
	struct rkfs_error err = { { 0 } };
	struct rkfs_config *cfg = NULL;
	struct rkfs_keyring *kr = NULL;
	const char *keyring = NULL, *config = NULL, *backing = NULL;
	const char *pass_file = NULL, *pass_command = NULL;
	bool json = false, quiet = false, have_gen = false;
	int nmodes = 0, ch, ret, status;
	pthread_t pth;
	bool pth_started = false;
	struct sigaction sa;

	/* Before anything can hold a key: no core dumps, no ptrace. */
	(void)rkfs_protect_process();
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":k:c:j:w:nqhV", longopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'k':
			keyring = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'P':
			pass_file = optarg;
			break;
		case 'C':
			pass_command = optarg;
			break;
		case 'U':
			rkfs_keyring_allow_unsealed(true);
			break;
		case 'j':
			o.jobs = (unsigned)parse_num(optarg, "--jobs", 1024);
			if (o.jobs == 0)
				die_usage("--jobs must be at least 1");
			break;
		case 'w':
			o.wait = parse_seconds(optarg);
			break;
		case 'S':
			o.mode = RKFS_REKEY_STATUS;
			nmodes++;
			break;
		case 'G':
			o.list_generation = (uint32_t)parse_num(
				optarg, "--generation", UINT32_MAX);
			have_gen = true;
			break;
		case 'n':
			o.mode = RKFS_REKEY_DRY_RUN;
			nmodes++;
			break;
		case 'v':
			o.mode = RKFS_REKEY_VERIFY;
			nmodes++;
			break;
		case 'R':
			o.repair = true;
			break;
		case 'J':
			json = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EXIT_DONE;
		case 'V':
			printf("rekeyfs-rekey %s\n", RKFS_VERSION);
			return EXIT_DONE;
		case ':':
			die_usage("option %s needs an argument",
				  argv[optind - 1]);
			break;
		default:
			die_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (nmodes > 1)
		die_usage("%s", "--status, --dry-run and --verify exclude each "
				"other");
	if (o.repair && o.mode != RKFS_REKEY_VERIFY)
		die_usage("%s", "--repair only goes with --verify");
	if (have_gen && o.mode != RKFS_REKEY_STATUS)
		die_usage("%s", "--generation only goes with --status");
	o.list = have_gen;
	if (optind < argc)
		backing = argv[optind++];
	if (optind < argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (keyring && config)
		die_usage("%s", "give --keyring or --config, not both");
	if (config) {
		ret = rkfs_config_load(&cfg, config, &err);
		if (ret < 0) {
			fatal(json, err.msg[0] ? err.msg : strerror(-ret));
			return EXIT_USAGE;
		}
		keyring = cfg->keyring;
		if (backing == NULL)
			backing = cfg->backing;
		if (keyring == NULL && o.mode != RKFS_REKEY_STATUS) {
			fprintf(stderr, "rekeyfs-rekey: %s: no keyring = in "
					"[mount]\n", config);
			rkfs_config_free(cfg);
			return EXIT_USAGE;
		}
	}
	if (backing == NULL)
		die_usage("no backing directory given");
	if (keyring == NULL && o.mode != RKFS_REKEY_STATUS)
		die_usage("--keyring FILE (or --config FILE) is required");

	status = EXIT_USAGE;
	if (rkfs_crypt_init() < 0) {
		fprintf(stderr, "rekeyfs-rekey: cannot initialise libsodium\n");
		goto out;
	}
	if (keyring && rkfs_keyring_lock_check(NULL, &err) < 0) {
		fprintf(stderr, "rekeyfs-rekey: warning: %s\n", err.msg);
		rkfs_error_clear(&err);
	}
	if (pass_file == NULL && pass_command == NULL && cfg) {
		pass_file = cfg->passphrase_file;
		pass_command = cfg->passphrase_command;
	}
	if (rkfs_passphrase_setup(pass_file, pass_command, &err) < 0) {
		fatal(json, err.msg);
		goto out;
	}
	if (keyring) {
		unsigned fl = o.mode == RKFS_REKEY_REWRITE ||
					      o.mode == RKFS_REKEY_VERIFY ?
				      RKFS_KR_LOAD_KEYS : 0;

		ret = rkfs_keyring_load(&kr, keyring, fl, &err);
		if (ret < 0) {
			fatal(json, err.msg[0] ? err.msg : strerror(-ret));
			goto out;
		}
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	o.stop = &stop_flag;

	if (!quiet && (o.mode == RKFS_REKEY_REWRITE ||
		       o.mode == RKFS_REKEY_VERIFY)) {
		pc.tty = isatty(STDERR_FILENO);
		pc.t0 = mono();
		o.progress = &pc.p;
		pth_started = pthread_create(&pth, NULL, progress_thread,
					     &pc) == 0;
	}

	ret = rkfs_rekey_run(&rep, backing, kr, &o, &err);
	if (pth_started) {
		pthread_mutex_lock(&pc.mu);
		pc.done = true;
		pthread_cond_signal(&pc.cv);
		pthread_mutex_unlock(&pc.mu);
		pthread_join(pth, NULL);
	}
	if (ret < 0) {
		fatal(json, err.msg[0] ? err.msg : strerror(-ret));
		rkfs_rekey_report_free(&rep);
		goto out;
	}
	status = rkfs_rekey_partial(&rep) ? EXIT_PARTIAL : EXIT_DONE;
	if (o.mode == RKFS_REKEY_STATUS || o.mode == RKFS_REKEY_DRY_RUN)
		status = EXIT_DONE;
	if (json) {
		print_json(&rep, backing, kr, status);
	} else if (o.mode == RKFS_REKEY_STATUS && o.list) {
		for (size_t i = 0; i < rep.listed.count; i++) {
			put_path(stdout, rep.listed.v[i].path);
			fputc('\n', stdout);
		}
	} else {
		print_text(&rep, backing, kr);
	}
	if (!json && status == EXIT_PARTIAL)
		fprintf(stderr, "rekeyfs-rekey: incomplete: %zu busy, %zu "
				"failed%s; run again to finish\n",
			rep.busy.count, rep.failed.count,
			rep.interrupted ? ", interrupted" : "");
	rkfs_rekey_report_free(&rep);
out:
	fflush(stdout);
	rkfs_keyring_wipe(kr);
	rkfs_config_free(cfg);
	return status;
}
