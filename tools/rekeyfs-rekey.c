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

#include "rekeyfs/audit.h"
#include "rekeyfs/config.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/json.h"
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
"                         file; the keyring is optional and needs no keys:\n"
"                         a sealed one is read without its passphrase)\n"
"      --generation N     with --status: list the files on generation N\n"
"                         (backing-relative paths; 0 = empty, no header)\n"
"  -n, --dry-run          list what would be rewritten; write nothing\n"
"      --verify           authenticate every block of every file; rewrite\n"
"                         nothing (an fsck).  Reports zeroed blocks of\n"
"                         files that have no holes.  Cannot tell a file cut\n"
"                         to 0 bytes or to its 32-byte header from an empty\n"
"                         file, nor a file replaced by another whole file\n"
"                         of the tree (README: threat model)\n"
"      --repair           with --verify: repair what a crash left (an\n"
"                         unreadable tail is cut after the last block that\n"
"                         authenticates; an interrupted append is completed\n"
"                         with zeros), reporting exactly what was lost; files\n"
"                         with bad blocks in the middle (zeroed blocks of a\n"
"                         file that may not have holes among them) are left\n"
"                         alone\n"
"\n"
"Options:\n"
"  -k, --keyring FILE     the keyring (its primary is the target generation;\n"
"                         default: $REKEYFS_KEYRING); overrides the config's\n"
"  -c, --config FILE      a [mount] config: keyring, backing, passphrase\n"
"                         (default: $REKEYFS_CONFIG, without -k either)\n"
"      --passphrase-file FILE   passphrase of a sealed keyring\n"
"      --passphrase-command CMD command printing that passphrase; the\n"
"                         command line is visible to every user in\n"
"                         /proc/PID/cmdline (ps): prefer passphrase_command\n"
"                         in the --config file\n"
"      --allow-unsealed   accept an unsealed keyring for a tree that\n"
"                         recorded a passphrase-sealed one (logged)\n"
"  -j, --jobs N           files rewritten in parallel (default: CPUs)\n"
"      --max-rate RATE    rewrite at most RATE bytes per second (suffix K,\n"
"                         M or G: KiB, MiB, GiB), leaving the disk to the\n"
"                         mounts; default: no cap\n"
"  -w, --wait SECONDS     keep retrying files that are open in a mount for\n"
"                         up to SECONDS (default 0: report them as busy)\n"
"      --json             print the report as one JSON object on stdout\n"
"                         (errors too)\n"
"  -q, --quiet            no progress line and no report; --status and\n"
"                         --dry-run still print theirs; errors go to stderr\n"
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
"Each rekey run is recorded in the audit trail (syslog, facility authpriv):\n"
"its start, and its end with the files per generation before and after.\n"
"\n"
"Exit status:\n"
"  0  done: every file is on the primary (--verify: every file is intact)\n"
"  1  partial: some files were busy, failed, or the run was interrupted\n"
"     (--verify: some files failed or were repaired;\n"
"     --dry-run/--status: never)\n"
"  2  usage error, unusable or wrong keyring, not a rekeyfs tree, or\n"
"     another rekeyfs-rekey holds the lock\n";

static volatile sig_atomic_t stop_flag;
static bool json_mode; /* --json: usage errors are JSON on stdout too */

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void fatal(bool json, const char *msg);
static void die_usage(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	char *line;

	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	va_end(ap);
	fatal(json_mode, line ? line : "usage error");
	free(line);
	fprintf(stderr, "Try 'rekeyfs-rekey --help'.\n");
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

/* A byte rate: a number with an optional K, M or G (binary) suffix. */
static uint64_t parse_rate(const char *s)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		die_usage("--max-rate needs a number of bytes per second");
	v = strtoull(s, &end, 10);
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (errno || *end != '\0' || v == 0 || v > (UINT64_MAX >> 30))
		die_usage("--max-rate: invalid rate '%s'", s);
	return (uint64_t)v << shift;
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

static void json_gens(struct rkfs_json *j, const char *key,
		      const struct rkfs_rekey_gen_count *v, size_t n,
		      const struct rkfs_keyring *kr)
{
	rkfs_json_begin_array(j, key);
	for (size_t i = 0; i < n; i++) {
		uint32_t g = v[i].generation;

		rkfs_json_begin_object(j, NULL);
		rkfs_json_uint(j, "generation", g);
		rkfs_json_string(j, "state", gen_state(kr, g));
		rkfs_json_bool(j, "primary", kr && g && g == kr->primary);
		rkfs_json_uint(j, "files", v[i].files);
		rkfs_json_uint(j, "bytes", v[i].bytes);
		rkfs_json_end_object(j);
	}
	rkfs_json_end_array(j);
}

static void json_list(struct rkfs_json *j, const char *key,
		      const struct rkfs_rekey_list *l, bool reasons)
{
	rkfs_json_begin_array(j, key);
	for (size_t i = 0; i < l->count; i++) {
		if (reasons) {
			rkfs_json_begin_object(j, NULL);
			rkfs_json_string(j, "path", l->v[i].path);
			rkfs_json_string(j, "reason",
					 l->v[i].reason ? l->v[i].reason : "");
			rkfs_json_end_object(j);
		} else {
			rkfs_json_string(j, NULL, l->v[i].path);
		}
	}
	rkfs_json_end_array(j);
}

/* Files (or plaintext bytes) handled per second of the run. */
static double throughput(const struct rkfs_rekey_report *r, bool bytes)
{
	uint64_t files = r->mode == RKFS_REKEY_REWRITE ? r->migrated
			 : r->mode == RKFS_REKEY_VERIFY ? r->verified
							: r->files;

	if (r->elapsed <= 0)
		return 0;
	if (bytes)
		return r->mode == RKFS_REKEY_REWRITE
			       ? (double)r->bytes_rewritten / r->elapsed
			       : 0;
	return (double)files / r->elapsed;
}

static void print_json(const struct rkfs_rekey_report *r, const char *backing,
		       const struct rkfs_keyring *kr, int status)
{
	struct rkfs_json j;

	rkfs_json_begin_document(&j, stdout);
	rkfs_json_begin_object(&j, NULL);
	rkfs_json_string(&j, "mode", mode_name(r->mode));
	rkfs_json_string(&j, "backing", backing);
	rkfs_json_string(&j, "keyring", kr ? kr->path : NULL);
	rkfs_json_uint(&j, "target_generation", r->target);
	rkfs_json_int(&j, "exit_status", status);
	rkfs_json_uint(&j, "files", r->files);
	rkfs_json_uint(&j, "migrated", r->migrated);
	rkfs_json_uint(&j, "current", r->current);
	rkfs_json_uint(&j, "verified", r->verified);
	rkfs_json_uint(&j, "would_rewrite", r->would_rewrite);
	rkfs_json_uint(&j, "busy", r->busy.count);
	rkfs_json_uint(&j, "failed", r->failed.count);
	rkfs_json_uint(&j, "skipped", r->skipped.count);
	rkfs_json_uint(&j, "bytes_rewritten", r->bytes_rewritten);
	rkfs_json_uint(&j, "temps_removed", r->temps_removed);
	rkfs_json_uint(&j, "resumed", r->resumed);
	rkfs_json_uint(&j, "bad_headers", r->bad_headers);
	rkfs_json_uint(&j, "remaining", r->remaining);
	rkfs_json_bool(&j, "interrupted", r->interrupted);
	rkfs_json_seconds(&j, "elapsed_seconds", r->elapsed);
	/* rates: one decimal is plenty, the writer's seconds format fits */
	rkfs_json_seconds(&j, "files_per_second", throughput(r, false));
	rkfs_json_seconds(&j, "bytes_per_second", throughput(r, true));
	json_gens(&j, "before", r->before, r->nbefore, kr);
	if (r->mode == RKFS_REKEY_REWRITE)
		json_gens(&j, "after", r->after, r->nafter, kr);
	json_list(&j, "failed_files", &r->failed, true);
	json_list(&j, "busy_files", &r->busy, true);
	json_list(&j, "skipped_files", &r->skipped, true);
	if (r->mode == RKFS_REKEY_VERIFY)
		json_list(&j, "repaired_files", &r->repaired, true);
	if (r->mode == RKFS_REKEY_DRY_RUN)
		json_list(&j, "would_rewrite_files", &r->listed, true);
	if (r->mode == RKFS_REKEY_STATUS)
		json_list(&j, "listed_files", &r->listed, false);
	rkfs_json_end_object(&j);
	(void)rkfs_json_end_document(&j);
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
	if (r->elapsed > 0) {
		char b[32];

		human_bytes(b, sizeof(b), (uint64_t)throughput(r, true));
		fprintf(f, "throughput:      %.0f files/s", throughput(r, false));
		if (r->mode == RKFS_REKEY_REWRITE)
			fprintf(f, ", %s/s", b);
		fputc('\n', f);
	}
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
	struct rkfs_json j;

	fprintf(stderr, "rekeyfs-rekey: %s\n", msg);
	if (json) {
		rkfs_json_begin_document(&j, stdout);
		rkfs_json_begin_object(&j, NULL);
		rkfs_json_string(&j, "error", msg);
		rkfs_json_int(&j, "exit_status", EXIT_USAGE);
		rkfs_json_end_object(&j);
		(void)rkfs_json_end_document(&j);
	}
}

/* --- audit trail ------------------------------------------------------ */

static void audit_counts(struct rkfs_audit *a, const char *key,
			 const struct rkfs_rekey_gen_count *v, size_t n)
{
	uint32_t gens[64];
	uint64_t files[64];
	size_t k = 0;

	for (size_t i = 0; i < n && k < 64; i++) {
		gens[k] = v[i].generation;
		files[k++] = v[i].files;
	}
	rkfs_audit_counts(a, key, gens, files, k);
}

static void audit_done(struct rkfs_audit *a)
{
	int ret = rkfs_audit_end(a);

	if (ret < 0)
		fprintf(stderr, "rekeyfs-rekey: warning: audit log: %s\n",
			strerror(-ret));
}

static void audit_start(const char *backing, const struct rkfs_keyring *kr)
{
	struct rkfs_audit *a = rkfs_audit_begin("rekeyfs-rekey",
						"rekey-start");

	rkfs_audit_str(a, "backing", backing);
	rkfs_audit_str(a, "keyring", kr->path);
	rkfs_audit_num(a, "target", kr->primary);
	audit_done(a);
}

/* The counts say when the last file left each generation. */
static void audit_finish(const char *backing, const struct rkfs_keyring *kr,
			 int ret, const struct rkfs_rekey_report *r,
			 const struct rkfs_error *err)
{
	struct rkfs_audit *a = rkfs_audit_begin("rekeyfs-rekey",
						"rekey-finish");

	rkfs_audit_str(a, "backing", backing);
	rkfs_audit_str(a, "keyring", kr->path);
	rkfs_audit_num(a, "target", kr->primary);
	if (ret < 0) {
		rkfs_audit_str(a, "result", "error");
		rkfs_audit_str(a, "error",
			       err->msg[0] ? err->msg : strerror(-ret));
		audit_done(a);
		return;
	}
	rkfs_audit_str(a, "result", rkfs_rekey_partial(r) ? "partial" : "done");
	rkfs_audit_num(a, "migrated", r->migrated);
	rkfs_audit_num(a, "busy", r->busy.count);
	rkfs_audit_num(a, "failed", r->failed.count);
	audit_counts(a, "before", r->before, r->nbefore);
	audit_counts(a, "after", r->after, r->nafter);
	audit_done(a);
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
	/* while the walk still finds files, the totals are lower bounds */
	bool more = pc->p.walking;

	human_bytes(a, sizeof(a), bd);
	human_bytes(b, sizeof(b), bt);
	human_bytes(r, sizeof(r), (uint64_t)rate);
	if (rate > 0 && bt >= bd && !more)
		snprintf(eta, sizeof(eta), "%.0f s",
			 (double)(bt - bd) / rate);
	fprintf(stderr,
		"%s%" PRIu64 "/%" PRIu64 "%s files, %s/%s%s, %s/s, ETA %s%s",
		pc->tty ? "\r\033[K" : "", fd, ft, more ? "+" : "", a, b,
		more ? "+" : "", r, eta, pc->tty ? "" : "\n");
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
		{ "max-rate", required_argument, NULL, 'R' },
		{ "status", no_argument, NULL, 'S' },
		{ "generation", required_argument, NULL, 'G' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verify", no_argument, NULL, 'v' },
		{ "repair", no_argument, NULL, 'F' },
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
	/* --json holds for errors in options that come before it, too. */
	for (int a = 1; a < argc && strcmp(argv[a], "--") != 0; a++)
		if (strcmp(argv[a], "--json") == 0)
			json_mode = true;
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
		case 'R':
			o.max_rate = parse_rate(optarg);
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
		case 'F':
			o.repair = true;
			break;
		case 'J':
			json = true;
			json_mode = true;
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
	/* The environment names a keyring or config when options do not. */
	if (keyring == NULL && config == NULL) {
		const char *k = getenv("REKEYFS_KEYRING");
		const char *c = getenv("REKEYFS_CONFIG");

		keyring = k && *k ? k : NULL;
		config = c && *c ? c : NULL;
	}
	if (config) {
		ret = rkfs_config_load(&cfg, config, &err);
		if (ret < 0) {
			fatal(json, err.msg[0] ? err.msg : strerror(-ret));
			return EXIT_USAGE;
		}
		/* --keyring overrides the config's keyring, as for rekeyfs-key. */
		if (keyring == NULL)
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
		/*
		 * --status reads headers only: a sealed keyring is read for
		 * its primary and states without asking the passphrase.
		 */
		unsigned fl = o.mode == RKFS_REKEY_REWRITE ||
					      o.mode == RKFS_REKEY_VERIFY ?
				      RKFS_KR_LOAD_KEYS :
			      o.mode == RKFS_REKEY_STATUS ? RKFS_KR_NO_UNSEAL
							  : 0;

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

	if (o.mode == RKFS_REKEY_REWRITE)
		audit_start(backing, kr);
	ret = rkfs_rekey_run(&rep, backing, kr, &o, &err);
	if (o.mode == RKFS_REKEY_REWRITE)
		audit_finish(backing, kr, ret, &rep, &err);
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
	} else if (quiet && o.mode != RKFS_REKEY_STATUS &&
		   o.mode != RKFS_REKEY_DRY_RUN) {
		/* -q: only the files that need attention. */
		text_list(stdout, "FAILED", &rep.failed);
		text_list(stdout, "BUSY", &rep.busy);
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
	rkfs_keyring_forget_passphrases();
	rkfs_passphrase_forget();
	rkfs_config_free(cfg);
	return status;
}
