/*
 * The shared JSON writer: escaping of every kind of byte, nesting and
 * commas, and the audit line quoting.
 */
#include "rekeyfs/json.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "rekeyfs/audit.h"

/* The writer's output for one string, in a static buffer. */
static const char *esc(const char *s, size_t len)
{
	static char buf[512];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	SETUP(f != NULL);
	CHECK(rkfs_json_put_string(f, s, len) == 0);
	fclose(f);
	return buf;
}

#define ESC(lit) esc(lit, sizeof(lit) - 1)

static void test_strings(void)
{
	CHECK(strcmp(ESC("plain"), "\"plain\"") == 0);
	CHECK(strcmp(ESC("q\"b\\"), "\"q\\\"b\\\\\"") == 0);
	CHECK(strcmp(ESC("a\nb\tc\001\177"), "\"a\\nb\\tc\\u0001\\u007f\"") == 0);
	/* valid UTF-8 passes through */
	CHECK(strcmp(ESC("caf\xc3\xa9 \xf0\x9f\x94\x91"),
		     "\"caf\xc3\xa9 \xf0\x9f\x94\x91\"") == 0);
	/* invalid bytes: surrogateescape */
	CHECK(strcmp(ESC("a\xff" "b"), "\"a\\udcffb\"") == 0);
	CHECK(strcmp(ESC("\xc3"), "\"\\udcc3\"") == 0);        /* truncated */
	CHECK(strcmp(ESC("\xc0\xaf"), "\"\\udcc0\\udcaf\"") == 0); /* overlong */
	CHECK(strcmp(ESC("\xed\xa0\x80"), "\"\\udced\\udca0\\udc80\"") == 0);
	CHECK(strcmp(ESC("\xf4\x90\x80\x80"),
		     "\"\\udcf4\\udc90\\udc80\\udc80\"") == 0); /* > 10FFFF */
	/* line and paragraph separators are escaped */
	CHECK(strcmp(ESC("\xe2\x80\xa8\xe2\x80\xa9"), "\"\\u2028\\u2029\"") == 0);
	/* an embedded NUL is data when a length is given */
	CHECK(strcmp(ESC("a\0b"), "\"a\\u0000b\"") == 0);
}

static void test_nesting(void)
{
	char buf[512];
	struct rkfs_json j;
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	SETUP(f != NULL);
	rkfs_json_begin_document(&j, f);
	rkfs_json_begin_object(&j, NULL);
	rkfs_json_string(&j, "s", "x");
	rkfs_json_string(&j, "n", NULL);
	rkfs_json_uint(&j, "u", 18446744073709551615ULL);
	rkfs_json_int(&j, "i", -3);
	rkfs_json_bool(&j, "b", true);
	rkfs_json_seconds(&j, "t", 1.5);
	rkfs_json_begin_array(&j, "a");
	rkfs_json_uint(&j, NULL, 1);
	rkfs_json_begin_object(&j, NULL);
	rkfs_json_end_object(&j);
	rkfs_json_begin_array(&j, NULL);
	rkfs_json_end_array(&j);
	rkfs_json_null(&j, NULL);
	rkfs_json_end_array(&j);
	rkfs_json_end_object(&j);
	CHECK(rkfs_json_end_document(&j) == 0);
	fclose(f);
	CHECK(strcmp(buf, "{\"s\":\"x\",\"n\":null,\"u\":18446744073709551615,"
			  "\"i\":-3,\"b\":true,\"t\":1.500,"
			  "\"a\":[1,{},[],null]}\n") == 0);

	/* unbalanced nesting is reported */
	f = fmemopen(buf, sizeof(buf), "w");
	SETUP(f != NULL);
	rkfs_json_begin_document(&j, f);
	rkfs_json_begin_object(&j, NULL);
	CHECK(rkfs_json_end_document(&j) < 0);
	fclose(f);
}

static void test_audit(void)
{
	char path[] = "/tmp/rkfs-audit-XXXXXX", line[512];
	struct rkfs_audit *a;
	uint32_t g[2] = {1, 2};
	uint64_t c[2] = {0, 7};
	FILE *f;
	int fd = mkstemp(path);

	SETUP(fd >= 0);
	close(fd);
	SETUP(setenv("REKEYFS_AUDIT_LOG", path, 1) == 0);
	unsetenv("SUDO_USER");
	a = rkfs_audit_begin("test", "ev");
	rkfs_audit_str(a, "p", "/a b/\"c\"\n");
	rkfs_audit_str(a, "w", "word");
	rkfs_audit_str(a, "skipped", NULL);
	rkfs_audit_num(a, "n", 42);
	rkfs_audit_counts(a, "c", g, c, 2);
	rkfs_audit_counts(a, "e", g, c, 0);
	CHECK(rkfs_audit_end(a) == 0);
	f = fopen(path, "r");
	SETUP(f != NULL);
	CHECK(fgets(line, sizeof(line), f) != NULL);
	CHECK(strncmp(line,
		      "test: ev p=\"/a b/\\\"c\\\"\\x0a\" w=word n=42 c=1:0,2:7 "
		      "e=none uid=",
		      strlen("test: ev p=\"/a b/\\\"c\\\"\\x0a\" w=word n=42 "
			     "c=1:0,2:7 e=none uid=")) == 0);
	CHECK(fgets(line, sizeof(line), f) == NULL); /* one line */
	fclose(f);
	unlink(path);
	unsetenv("REKEYFS_AUDIT_LOG");
}

int main(void)
{
	test_strings();
	test_nesting();
	test_audit();
	return check_report("test_json");
}
