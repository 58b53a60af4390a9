/* Intent records: format, strict parse, MAC, legacy versions. */
#include "rekeyfs/intent.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"

static unsigned char key[RKFS_KEY_LEN], other[RKFS_KEY_LEN];

static void sample(struct rkfs_intent *in)
{
	memset(in, 0, sizeof(*in));
	in->generation = 7;
	in->dev = 2049;
	in->ino = 1234567;
	in->size = 32 + 4136 * 3;
	in->times[0].tv_sec = -5;
	in->times[0].tv_nsec = 999999999;
	in->times[1].tv_sec = 1700000000;
	in->times[1].tv_nsec = 0;
	memset(in->old_hdr, 0xa1, sizeof(in->old_hdr));
	memset(in->new_hdr, 0xb2, sizeof(in->new_hdr));
	in->target = (char *)"dir/sub/file name";
	in->temp = (char *)"dir/sub/.rekeyfs-tmp.0011223344556677";
}

static void test_roundtrip(void)
{
	struct rkfs_intent in, out;
	char *text;
	size_t len;

	sample(&in);
	CHECK_EQ(rkfs_intent_format(&text, &len, &in, key), 0);
	CHECK_EQ(strlen(text), len);
	CHECK_EQ(rkfs_intent_parse(&out, text, len), 0);
	CHECK_EQ(out.version, 3);
	CHECK_EQ(out.generation, 7);
	CHECK_EQ(out.dev, in.dev);
	CHECK_EQ(out.ino, in.ino);
	CHECK_EQ(out.size, in.size);
	CHECK_EQ(out.times[0].tv_sec, -5);
	CHECK_EQ(out.times[0].tv_nsec, 999999999);
	CHECK_EQ(out.times[1].tv_sec, 1700000000);
	CHECK(memcmp(out.old_hdr, in.old_hdr, RKFS_HEADER_LEN) == 0);
	CHECK(memcmp(out.new_hdr, in.new_hdr, RKFS_HEADER_LEN) == 0);
	CHECK(strcmp(out.target, in.target) == 0);
	CHECK(strcmp(out.temp, in.temp) == 0);
	CHECK_EQ(rkfs_intent_verify(&out, text, key), 0);
	CHECK_EQ(rkfs_intent_verify(&out, text, other), -EBADMSG);
	rkfs_intent_free(&out);
	free(text);
}

/* Every single-byte change to a signed record is refused. */
static void test_tamper(void)
{
	struct rkfs_intent in, out;
	size_t len, parsed = 0, verified = 0;
	char *text;

	sample(&in);
	SETUP(rkfs_intent_format(&text, &len, &in, key) == 0);
	for (size_t i = 0; i < len; i++) {
		char saved = text[i];

		text[i] = (char)(saved ^ 0x01);
		if (rkfs_intent_parse(&out, text, len) == 0) {
			parsed++;
			if (rkfs_intent_verify(&out, text, key) == 0)
				verified++;
			rkfs_intent_free(&out);
		}
		text[i] = saved;
	}
	CHECK(parsed > 0); /* many edits still parse ... */
	CHECK_EQ(verified, 0); /* ... none authenticates */
	/* cut short, or something after "end" */
	CHECK_EQ(rkfs_intent_parse(&out, text, len - 1), -EINVAL);
	CHECK_EQ(rkfs_intent_parse(&out, text, len - 4), -EINVAL);
	free(text);
}

static void test_strict(void)
{
	struct rkfs_intent in, out;
	static const char *bad_paths[] = {"",	  "/abs",   "a/",  "a//b",
					  "./a", "a/../b", "..",  ".",
					  NULL};
	char *text;
	size_t len;

	sample(&in);
	for (int i = 0; bad_paths[i]; i++) {
		in.target = (char *)bad_paths[i];
		CHECK_EQ(rkfs_intent_format(&text, &len, &in, key), -EINVAL);
	}
	sample(&in);
	in.temp = (char *)"dir/not-a-temp";
	CHECK_EQ(rkfs_intent_format(&text, &len, &in, key), -EINVAL);

	/* fields out of order, repeated, signed numbers, junk */
	static const char *bad[] = {
	    "rekeyfs-intent 3\nend\n",
	    "rekeyfs-intent 4\n",
	    "rekeyfs-intent 03\n",
	    "rekeyfs-intent 2\ndev 1\nino 2\nsize 3\natime 1 0\nmtime 1 0\n"
	    "old 00\ntarget 61\ntemp 2e72656b657966732d746d702e78\nend\n",
	    "rekeyfs-intent 1\ndev -1\nino 2\nsize 3\natime 1 0\nmtime 1 0\n"
	    "name 61\nend\n",
	    "rekeyfs-intent 1\ndev 1\nino 2\nsize 3\natime 1 1000000000\n"
	    "mtime 1 0\nname 61\nend\n",
	    "rekeyfs-intent 1\ndev 1\ndev 1\nino 2\nsize 3\natime 1 0\n"
	    "mtime 1 0\nname 61\nend\n",
	    "rekeyfs-intent 1\ndev 1\nino 2\nsize 3\natime 1 0\nmtime 1 0\n"
	    "name 612f62\nend\n", /* "a/b": v1 names one file */
	    "rekeyfs-intent 1\ndev 1\nino 2\nsize 3\natime 1 0\nmtime 1 0\n"
	    "name 61\nend\nx",
	    "rekeyfs-intent 1\ndev 1\nino 2\nsize 99999999999999999999\n"
	    "atime 1 0\nmtime 1 0\nname 61\nend\n",
	    NULL,
	};
	for (int i = 0; bad[i]; i++) {
		CHECK_EQ(rkfs_intent_parse(&out, bad[i], strlen(bad[i])),
			 -EINVAL);
		CHECK(out.target == NULL && out.temp == NULL);
	}

	/* an unknown version that is otherwise a whole record */
	sample(&in);
	CHECK_EQ(rkfs_intent_format(&text, &len, &in, key), 0);
	for (char v = '4'; v <= '9'; v++) {
		text[strlen("rekeyfs-intent ")] = v;
		CHECK_EQ(rkfs_intent_parse(&out, text, len), -EINVAL);
	}
	free(text);
}

/* Older formats parse (the caller decides) but never verify. */
static void test_legacy(void)
{
	static const char v1[] =
	    "rekeyfs-intent 1\ndev 1\nino 2\nsize 3\natime 4 5\nmtime 6 7\n"
	    "name 61\nend\n";
	static const char v2[] =
	    "rekeyfs-intent 2\ndev 1\nino 2\nsize 3\natime 4 5\nmtime 6 7\n"
	    "old "
	    "0000000000000000000000000000000000000000000000000000000000000000"
	    "\ntarget 612f62\ntemp 612f2e72656b6579"
	    "66732d746d702e3031\nend\n";
	struct rkfs_intent out;

	CHECK_EQ(rkfs_intent_parse(&out, v1, strlen(v1)), 0);
	CHECK_EQ(out.version, 1);
	CHECK(out.target && strcmp(out.target, "a") == 0);
	CHECK(out.temp == NULL);
	CHECK_EQ(rkfs_intent_verify(&out, v1, key), -EINVAL);
	rkfs_intent_free(&out);
	CHECK_EQ(rkfs_intent_parse(&out, v2, strlen(v2)), 0);
	CHECK_EQ(out.version, 2);
	CHECK(out.target && strcmp(out.target, "a/b") == 0);
	CHECK(out.temp && strcmp(out.temp, "a/.rekeyfs-tmp.01") == 0);
	CHECK_EQ(rkfs_intent_verify(&out, v2, key), -EINVAL);
	rkfs_intent_free(&out);
}

int main(void)
{
	SETUP(rkfs_crypt_init() == 0);
	randombytes_buf(key, sizeof(key));
	randombytes_buf(other, sizeof(other));
	test_roundtrip();
	test_tamper();
	test_strict();
	test_legacy();
	return check_report("test_intent");
}
