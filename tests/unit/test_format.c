/*
 * The v1 on-disk format pinned down: known-answer vectors for key
 * derivation, check values, the header and sealed blocks (computed
 * independently by tests/fixtures/kat/mkvectors.py), size arithmetic at
 * every boundary, and every kind of tampering failing authentication.
 */
#include "rekeyfs/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/file.h"
#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"

/* ---- known answers (see tests/fixtures/kat/mkvectors.py) --------------- */

static const char kat_file_key[] =
    "d7641ad74969c0efe919171fc36010c68ccfe48cb1e488aba8a3a253781d12bf";
static const char kat_check[] = "e73eedfe88b3efb756696a67184e9f7f";
static const char kat_header[] =
    "524b45594653010101020304a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000000";
static const char kat_pt1[] =
    "72656b65796673207631206b6e6f776e2d616e7377657220626c6f636b0a";
/* index 0, final 1 */
static const char kat_block1[] =
    "404142434445464748494a4b4c4d4e4f5051525354555657"
    "32865ee9cbac86d779a35fb411e45e2a038ebda84913eda665ea5b5acd12"
    "7275384f0dfd7ee714cea448600eb5ed";
static const char kat_pt2[] =
    "030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dc"
    "e3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bc";
/* index 0x0102030405060708, final 0 */
static const char kat_block2[] =
    "606162636465666768696a6b6c6d6e6f7071727374757677"
    "58cede2d44b77b5b002d0b4737ce17c7cc0794024ca118a38e457c3502728dee"
    "b68ebd6e42b005da34f722437bbaad5da60303d9b18a0c25b1da30ba6b7f2f25"
    "115eeeae13d7672dfe59680073f943dc";

static size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
	size_t len = 0;

	SETUP(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &len, NULL) ==
	      0);
	return len;
}

static void gen_key(unsigned char *k)
{
	for (int i = 0; i < RKFS_KEY_LEN; i++)
		k[i] = (unsigned char)i;
}

static void test_kdf(void)
{
	unsigned char gk[RKFS_KEY_LEN], fk[RKFS_KEY_LEN], want[RKFS_KEY_LEN];
	uint8_t id[RKFS_FILE_ID_LEN], cv[RKFS_CHECK_LEN], wcv[RKFS_CHECK_LEN];

	gen_key(gk);
	for (int i = 0; i < RKFS_FILE_ID_LEN; i++)
		id[i] = (uint8_t)(0xa0 + i);
	rkfs_crypt_file_key(fk, id, gk);
	CHECK_EQ(unhex(want, sizeof(want), kat_file_key), RKFS_KEY_LEN);
	CHECK(memcmp(fk, want, sizeof(fk)) == 0);
	rkfs_crypt_check_value(cv, gk);
	CHECK_EQ(unhex(wcv, sizeof(wcv), kat_check), RKFS_CHECK_LEN);
	CHECK(memcmp(cv, wcv, sizeof(cv)) == 0);

	/* Each input matters. */
	id[15] ^= 1;
	rkfs_crypt_file_key(fk, id, gk);
	CHECK(memcmp(fk, want, sizeof(fk)) != 0);
	id[15] ^= 1;
	gk[31] ^= 0x80;
	rkfs_crypt_file_key(fk, id, gk);
	CHECK(memcmp(fk, want, sizeof(fk)) != 0);
	rkfs_crypt_check_value(cv, gk);
	CHECK(memcmp(cv, wcv, sizeof(cv)) != 0);
}

static void test_header(void)
{
	uint8_t raw[RKFS_HEADER_LEN], bad[RKFS_HEADER_LEN];
	struct rkfs_header h, h2;

	CHECK_EQ(unhex(raw, sizeof(raw), kat_header), RKFS_HEADER_LEN);
	CHECK_EQ(rkfs_header_parse(&h, raw, sizeof(raw)), 0);
	CHECK_EQ(h.version, 1);
	CHECK_EQ(h.cipher, 1);
	CHECK_EQ(h.generation, 0x01020304);
	CHECK_EQ(h.flags, 0);
	CHECK_EQ(h.file_id[0], 0xa0);
	CHECK_EQ(h.file_id[15], 0xaf);
	CHECK(memcmp(h.raw, raw, sizeof(raw)) == 0);

	/* A header built by the library has exactly the documented layout. */
	rkfs_header_init(&h2, 0x01020304);
	CHECK(memcmp(h2.raw, raw, 12) == 0);
	CHECK(memcmp(h2.raw + 12, h2.file_id, RKFS_FILE_ID_LEN) == 0);
	/* flags: a new header authenticates its holes */
	CHECK_EQ(rkfs_get_be32(h2.raw + 28), RKFS_FLAG_HOLE_AUTH);
	CHECK_EQ(h2.flags, RKFS_FLAG_HOLE_AUTH);
	CHECK(!rkfs_is_zero(h2.file_id, RKFS_FILE_ID_LEN));
	CHECK_EQ(rkfs_header_parse(&h, h2.raw, sizeof(h2.raw)), 0);
	CHECK(memcmp(&h.raw, &h2.raw, sizeof(h.raw)) == 0);
	CHECK(memcmp(h.file_id, h2.file_id, RKFS_FILE_ID_LEN) == 0);
	CHECK_EQ(h.generation, 0x01020304);
	rkfs_header_init(&h, 0x01020304);
	CHECK(memcmp(h.file_id, h2.file_id, RKFS_FILE_ID_LEN) != 0);

	/* Rejections, and *h zeroed on failure. */
	CHECK_EQ(rkfs_header_parse(&h, raw, RKFS_HEADER_LEN - 1), -EBADMSG);
	CHECK_EQ(h.generation, 0);
	CHECK_EQ(rkfs_header_parse(&h, raw, 0), -EBADMSG);
	memcpy(bad, raw, sizeof(bad));
	bad[0] = 'r';
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EBADMSG);
	memcpy(bad, raw, sizeof(bad));
	bad[5] = 'X';
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EBADMSG);
	memcpy(bad, raw, sizeof(bad));
	bad[6] = 2;
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EPROTONOSUPPORT);
	bad[6] = 0;
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EPROTONOSUPPORT);
	memcpy(bad, raw, sizeof(bad));
	bad[7] = 2;
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EPROTONOSUPPORT);
	for (int i = 28; i < 32; i++) {
		memcpy(bad, raw, sizeof(bad));
		bad[i] = i == 31 ? 0x02 : 0x01; /* every bit but HOLE_AUTH */
		CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)),
			 -EPROTONOSUPPORT);
	}
	memcpy(bad, raw, sizeof(bad));
	bad[31] = 0x01;
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), 0);
	CHECK_EQ(h.flags, RKFS_FLAG_HOLE_AUTH);
	memcpy(bad, raw, sizeof(bad));
	memset(bad + 12, 0, RKFS_FILE_ID_LEN);
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EBADMSG);
	CHECK_EQ(h.generation, 0);
	memset(bad, 0, sizeof(bad));
	CHECK_EQ(rkfs_header_parse(&h, bad, sizeof(bad)), -EBADMSG);
}

static void test_block_kat(void)
{
	unsigned char gk[RKFS_KEY_LEN], fk[RKFS_KEY_LEN];
	uint8_t raw[RKFS_HEADER_LEN], cb[256], want[256], pt[256];
	uint8_t sealed[RKFS_CBLOCK_SIZE], big[RKFS_BLOCK_SIZE];
	struct rkfs_header h;
	size_t cl, pl;

	gen_key(gk);
	SETUP(unhex(raw, sizeof(raw), kat_header) == RKFS_HEADER_LEN);
	SETUP(rkfs_header_parse(&h, raw, sizeof(raw)) == 0);
	rkfs_crypt_file_key(fk, h.file_id, gk);

	cl = unhex(cb, sizeof(cb), kat_block1);
	pl = unhex(want, sizeof(want), kat_pt1);
	CHECK_EQ(cl, pl + RKFS_BLOCK_OVERHEAD);
	memset(pt, 0xee, sizeof(pt));
	CHECK_EQ(rkfs_block_open(pt, cb, cl, 0, 1, &h, fk), 0);
	CHECK(memcmp(pt, want, pl) == 0);
	/* The same bytes under another index or final flag do not open,
	 * and a failed open leaves no plaintext behind. */
	CHECK_EQ(rkfs_block_open(pt, cb, cl, 0, 0, &h, fk), -EBADMSG);
	CHECK(rkfs_is_zero(pt, pl));
	CHECK_EQ(rkfs_block_open(pt, cb, cl, 1, 1, &h, fk), -EBADMSG);

	cl = unhex(cb, sizeof(cb), kat_block2);
	pl = unhex(want, sizeof(want), kat_pt2);
	CHECK_EQ(cl, pl + RKFS_BLOCK_OVERHEAD);
	CHECK_EQ(rkfs_block_open(pt, cb, cl, 0x0102030405060708ULL, 0, &h, fk),
		 0);
	CHECK(memcmp(pt, want, pl) == 0);
	CHECK_EQ(rkfs_block_open(pt, cb, cl, 0x0102030405060708ULL, 1, &h, fk),
		 -EBADMSG);
	CHECK_EQ(rkfs_block_open(pt, cb, cl, 0x0807060504030201ULL, 0, &h, fk),
		 -EBADMSG);

	/* Impossible lengths. */
	CHECK_EQ(rkfs_block_open(pt, cb, RKFS_BLOCK_OVERHEAD, 0, 0, &h, fk),
		 -EBADMSG);
	CHECK_EQ(rkfs_block_open(pt, cb, 0, 0, 0, &h, fk), -EBADMSG);

	/* Seal/open round trip at 1 and 4096 bytes; fresh nonces. */
	randombytes_buf(big, sizeof(big));
	rkfs_block_seal(sealed, big, 1, 5, 1, &h, fk);
	CHECK_EQ(
	    rkfs_block_open(pt, sealed, 1 + RKFS_BLOCK_OVERHEAD, 5, 1, &h, fk),
	    0);
	CHECK_EQ(pt[0], big[0]);
	rkfs_block_seal(sealed, big, sizeof(big), 7, 0, &h, fk);
	memcpy(cb, sealed, RKFS_NONCE_LEN);
	{
		static uint8_t out[RKFS_BLOCK_SIZE];

		CHECK_EQ(
		    rkfs_block_open(out, sealed, sizeof(sealed), 7, 0, &h, fk),
		    0);
		CHECK(memcmp(out, big, sizeof(big)) == 0);
		rkfs_block_seal(sealed, big, sizeof(big), 7, 0, &h, fk);
		CHECK(memcmp(cb, sealed, RKFS_NONCE_LEN) != 0);
	}
}

/*
 * The buffered randomness behind nonces and file ids: no nonce repeats
 * across many refills, and after fork() parent and child draw different
 * bytes (an inherited buffer would hand both the same nonces).
 */
static int cmp_nonce(const void *a, const void *b)
{
	return memcmp(a, b, RKFS_NONCE_LEN);
}

static void test_random(void)
{
	enum { N = 1000 };
	static uint8_t n[N][RKFS_NONCE_LEN];
	uint8_t mine[RKFS_NONCE_LEN], child[RKFS_NONCE_LEN], big[100];
	int dup = 0, fds[2], st;
	pid_t pid;

	for (int i = 0; i < N; i++)
		rkfs_crypt_random(n[i], RKFS_NONCE_LEN);
	qsort(n, N, RKFS_NONCE_LEN, cmp_nonce);
	for (int i = 1; i < N; i++)
		dup += memcmp(n[i - 1], n[i], RKFS_NONCE_LEN) == 0;
	CHECK_EQ(dup, 0);
	/* more than the buffer takes at once: straight from libsodium */
	memset(big, 0, sizeof(big));
	rkfs_crypt_random(big, sizeof(big));
	CHECK(!rkfs_is_zero(big + 90, 10));

	rkfs_crypt_random(mine, 1); /* leave the buffer partly used */
	SETUP(pipe(fds) == 0);
	pid = fork();
	SETUP(pid >= 0);
	if (pid == 0) {
		rkfs_crypt_random(child, sizeof(child));
		_exit(write(fds[1], child, sizeof(child)) == sizeof(child) ? 0
									   : 1);
	}
	rkfs_crypt_random(mine, sizeof(mine));
	CHECK_EQ(read(fds[0], child, sizeof(child)), sizeof(child));
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0);
	CHECK(memcmp(mine, child, sizeof(mine)) != 0);
	close(fds[0]);
	close(fds[1]);
}

/* ---- size arithmetic ---------------------------------------------------- */

static void check_size(uint64_t plain, uint64_t cipher)
{
	uint64_t p = 12345;

	CHECK_EQ(rkfs_size_to_cipher(plain), cipher);
	CHECK_EQ(rkfs_size_to_plain(&p, cipher), 0);
	CHECK_EQ(p, plain);
}

static void test_sizes(void)
{
	const uint64_t C = RKFS_CBLOCK_SIZE;
	uint64_t p, c;

	CHECK_EQ(C, 4136);
	check_size(0, 32);
	CHECK_EQ(rkfs_size_to_plain(&p, 0), 0);
	CHECK_EQ(p, 0);
	check_size(1, 32 + 41);
	check_size(4095, 32 + 4095 + 40);
	check_size(4096, 32 + C);
	check_size(4097, 32 + C + 41);
	check_size(8191, 32 + C + 4135);
	check_size(8192, 32 + 2 * C);
	check_size(8193, 32 + 2 * C + 41);
	check_size(1ULL << 30, 32 + (1ULL << 18) * C);
	check_size((1ULL << 40) + 1, 32 + (1ULL << 28) * C + 41);
	check_size((1ULL << 50) - 1, 32 + ((1ULL << 38) - 1) * C + 4135);

	for (c = 1; c < 32; c++) {
		p = 99;
		CHECK_EQ(rkfs_size_to_plain(&p, c), -EBADMSG);
		CHECK_EQ(p, 0);
	}
	for (c = 33; c <= 72; c++)
		CHECK_EQ(rkfs_size_to_plain(&p, c), -EBADMSG);
	for (c = 32 + C + 1; c <= 32 + C + 40; c++)
		CHECK_EQ(rkfs_size_to_plain(&p, c), -EBADMSG);
	for (c = 32 + 7 * C + 1; c <= 32 + 7 * C + 40; c++)
		CHECK_EQ(rkfs_size_to_plain(&p, c), -EBADMSG);
	CHECK_EQ(rkfs_size_to_plain(&p, 32 + (1ULL << 28) * C + 40), -EBADMSG);

	/* Every cipher size in the first blocks: valid ones round-trip. */
	for (c = 1; c <= 32 + 3 * C + 100; c++) {
		int ret = rkfs_size_to_plain(&p, c);

		if (ret == 0)
			CHECK_EQ(rkfs_size_to_cipher(p), c);
		else
			CHECK_EQ(ret, -EBADMSG);
	}
	/* Every plain size in the first blocks and many random large ones. */
	for (p = 0; p <= 3 * 4096 + 10; p++) {
		uint64_t q;

		c = rkfs_size_to_cipher(p);
		if (rkfs_size_to_plain(&q, c) != 0 || q != p) {
			CHECK(0);
			break;
		}
	}
	for (int i = 0; i < 100000; i++) {
		uint64_t q, x;

		randombytes_buf(&x, sizeof(x));
		x >>= 14; /* up to 2^50 */
		c = rkfs_size_to_cipher(x);
		if (rkfs_size_to_plain(&q, c) != 0 || q != x) {
			CHECK(0);
			break;
		}
	}
	CHECK_EQ(rkfs_block_count(0), 0);
	CHECK_EQ(rkfs_block_count(1), 1);
	CHECK_EQ(rkfs_block_count(4096), 1);
	CHECK_EQ(rkfs_block_count(4097), 2);
	CHECK_EQ(rkfs_block_offset(0), 32);
	CHECK_EQ(rkfs_block_offset(3), 32 + 3 * C);
}

static void test_reserved(void)
{
	CHECK(rkfs_name_reserved(".rekeyfs"));
	CHECK(rkfs_name_reserved(".rekeyfs.conf"));
	CHECK(rkfs_name_reserved(".rekeyfs.lock"));
	CHECK(rkfs_name_reserved(".rekeyfs-tmp.abc123"));
	CHECK(rkfs_name_reserved(".rekeyfsx"));
	CHECK(!rkfs_name_reserved(""));
	CHECK(!rkfs_name_reserved("."));
	CHECK(!rkfs_name_reserved(".."));
	CHECK(!rkfs_name_reserved(".rekeyf"));
	CHECK(!rkfs_name_reserved("rekeyfs"));
	CHECK(!rkfs_name_reserved("x.rekeyfs"));
	CHECK(!rkfs_name_reserved(".Rekeyfs"));
	CHECK(!rkfs_name_reserved(" .rekeyfs"));
}

/* ---- tampering through the file layer ----------------------------------- */

static struct rkfs_keyring *keyring12(void)
{
	static const char text[] =
	    "[keyring]\nprimary = 1\n"
	    "[generation 1]\n"
	    "key = base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
	    "[generation 2]\n"
	    "key = base64:ERERERERERERERERERERERERERERERERERERERERERE=\n";
	struct rkfs_keyring *kr;
	struct rkfs_error err = {0};

	SETUP(rkfs_keyring_parse(&kr, text, strlen(text), "test", NULL, 0,
				 &err) == 0);
	return kr;
}

static int tmp_fd(void)
{
	char path[] = "/tmp/rkfs-fmt-XXXXXX";
	int fd = mkstemp(path);

	SETUP(fd >= 0);
	unlink(path);
	return fd;
}

/* A backing file with plain bytes of content written through the core. */
static int make_file(struct rkfs_keyring *kr, const uint8_t *data, size_t plain)
{
	struct rkfs_file f;
	uint64_t bad;
	int fd = tmp_fd();

	SETUP(rkfs_file_load(&f, fd, kr) == 0);
	SETUP(rkfs_file_init_empty(&f, fd, kr) == 0);
	if (plain)
		SETUP(rkfs_file_write(&f, fd, data, plain, 0, kr, &bad) ==
		      (ssize_t)plain);
	rkfs_file_release(&f);
	return fd;
}

static size_t fd_read_all(int fd, uint8_t *buf, size_t cap)
{
	ssize_t n = rkfs_pread_full(fd, buf, cap, 0);

	SETUP(n >= 0);
	return (size_t)n;
}

static int fd_from(const uint8_t *buf, size_t len)
{
	int fd = tmp_fd();

	SETUP(rkfs_pwrite_full(fd, buf, len, 0) == 0);
	return fd;
}

/*
 * Load the backing image and read [off, off+len).  Returns the read's
 * result or the load error; *bad gets the reported block.
 */
static ssize_t try_read(struct rkfs_keyring *kr, const uint8_t *img,
			size_t ilen, uint64_t off, size_t len, uint8_t *out,
			uint64_t *bad)
{
	struct rkfs_file f;
	int fd = fd_from(img, ilen);
	ssize_t n;
	int ret;

	*bad = UINT64_MAX - 1;
	ret = rkfs_file_load(&f, fd, kr);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	n = rkfs_file_read(&f, fd, out, len, off, bad);
	rkfs_file_release(&f);
	close(fd);
	return n;
}

#define PLAIN (3 * RKFS_BLOCK_SIZE + 100) /* 3 full blocks + final */
#define CLEN                                                                   \
	(RKFS_HEADER_LEN + 3 * RKFS_CBLOCK_SIZE + 100 + RKFS_BLOCK_OVERHEAD)

static void test_tamper(void)
{
	struct rkfs_keyring *kr = keyring12();
	static uint8_t data[PLAIN], out[PLAIN + 8192];
	static uint8_t orig[CLEN + 8192], other[CLEN + 8192], img[CLEN + 8192];
	size_t olen, len;
	uint64_t bad;
	int fd;
	const size_t B = RKFS_CBLOCK_SIZE;
	const size_t offs[3] = {3, RKFS_NONCE_LEN + 100,
				RKFS_CBLOCK_SIZE - 2}; /* nonce, ct, tag */

	randombytes_buf(data, sizeof(data));
	fd = make_file(kr, data, PLAIN);
	olen = fd_read_all(fd, orig, sizeof(orig));
	close(fd);
	CHECK_EQ(olen, CLEN);
	fd = make_file(kr, data, PLAIN);
	CHECK_EQ(fd_read_all(fd, other, sizeof(other)), CLEN);
	close(fd);
	CHECK_EQ(orig[8 + 3], 1);

	/* Untouched: reads back. */
	CHECK_EQ(try_read(kr, orig, olen, 0, PLAIN, out, &bad), PLAIN);
	CHECK(memcmp(out, data, PLAIN) == 0);

	/* One flipped bit in nonce, ciphertext or tag of block 1. */
	for (int k = 0; k < 3; k++) {
		memcpy(img, orig, olen);
		img[rkfs_block_offset(1) + offs[k]] ^= 0x10;
		CHECK_EQ(try_read(kr, img, olen, 0, PLAIN, out, &bad),
			 -EBADMSG);
		CHECK_EQ(bad, 1);
		/* Blocks 0 and 2 are still fine. */
		CHECK_EQ(try_read(kr, img, olen, 0, 4096, out, &bad), 4096);
		CHECK(memcmp(out, data, 4096) == 0);
		CHECK_EQ(try_read(kr, img, olen, 8192, 4096, out, &bad), 4096);
		CHECK(memcmp(out, data + 8192, 4096) == 0);
	}
	/* Flipped bit in the final block's tag. */
	memcpy(img, orig, olen);
	img[olen - 1] ^= 1;
	CHECK_EQ(try_read(kr, img, olen, PLAIN - 1, 1, out, &bad), -EBADMSG);
	CHECK_EQ(bad, 3);

	/* Blocks 0 and 1 swapped. */
	memcpy(img, orig, olen);
	memcpy(img + rkfs_block_offset(0), orig + rkfs_block_offset(1), B);
	memcpy(img + rkfs_block_offset(1), orig + rkfs_block_offset(0), B);
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);
	CHECK_EQ(bad, 0);
	CHECK_EQ(try_read(kr, img, olen, 4096, 10, out, &bad), -EBADMSG);
	CHECK_EQ(bad, 1);

	/* Block 2 copied from another file with the same key and content. */
	memcpy(img, orig, olen);
	memcpy(img + rkfs_block_offset(2), other + rkfs_block_offset(2), B);
	CHECK_EQ(try_read(kr, img, olen, 8192, 10, out, &bad), -EBADMSG);
	CHECK_EQ(bad, 2);
	/* ... and the other file's whole header: every block then fails. */
	memcpy(img, orig, olen);
	memcpy(img, other, RKFS_HEADER_LEN);
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);

	/* Header edits. */
	memcpy(img, orig, olen);
	img[11] = 2; /* generation 1 -> 2: a key that exists, wrong file */
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);
	CHECK_EQ(bad, 0);
	img[11] = 9; /* a generation the keyring does not hold */
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -ENOKEY);
	memcpy(img, orig, olen);
	img[12 + 5] ^= 0x01; /* file id */
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);
	memcpy(img, orig, olen);
	img[6] = 2; /* version */
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);
	memcpy(img, orig, olen);
	img[31] ^= RKFS_FLAG_HOLE_AUTH; /* flags: cannot be taken off */
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);
	memcpy(img, orig, olen);
	img[0] = 'X'; /* magic */
	CHECK_EQ(try_read(kr, img, olen, 0, 10, out, &bad), -EBADMSG);

	/* Truncated at a block boundary: block 2 becomes "final". */
	len = rkfs_block_offset(3);
	CHECK_EQ(try_read(kr, orig, len, 0, 4096, out, &bad), 4096);
	CHECK_EQ(try_read(kr, orig, len, 8192, 4096, out, &bad), -EBADMSG);
	CHECK_EQ(bad, 2);
	/* Truncated mid-block: an impossible size, or a short final block
	 * that fails to authenticate. */
	CHECK_EQ(try_read(kr, orig, olen - 20, 3 * 4096, 10, out, &bad),
		 -EBADMSG);
	CHECK_EQ(bad, 3);
	CHECK_EQ(try_read(kr, orig, olen - 20, 0, 10, out, &bad), 10);
	CHECK_EQ(try_read(kr, orig, olen - 80, 8192, PLAIN, out, &bad),
		 -EBADMSG);
	CHECK_EQ(try_read(kr, orig, rkfs_block_offset(2) + 2000, 8192, 10, out,
			  &bad),
		 -EBADMSG);

	/* A zero block appended after the old final block. */
	{
		static uint8_t full[RKFS_HEADER_LEN + 3 * RKFS_CBLOCK_SIZE];
		size_t flen;

		fd = make_file(kr, data, 2 * RKFS_BLOCK_SIZE);
		flen = fd_read_all(fd, full, sizeof(full));
		close(fd);
		CHECK_EQ(flen, RKFS_HEADER_LEN + 2 * B);
		memset(full + flen, 0, B);
		CHECK_EQ(try_read(kr, full, flen + B, 0, 4096, out, &bad),
			 4096);
		/* The old final block still reads (what a crash leaves
		 * when an append's re-seal did not reach the disk); the
		 * tail, a zero final block, does not. */
		CHECK_EQ(try_read(kr, full, flen + B, 4096, 4096, out, &bad),
			 4096);
		CHECK(memcmp(out, data + 4096, 4096) == 0);
		CHECK_EQ(try_read(kr, full, flen + B, 8192, 4096, out, &bad),
			 -EBADMSG);
		CHECK_EQ(bad, 2);
		/* Final block zeroed: not a hole, corruption. */
		memset(full + RKFS_HEADER_LEN + B, 0, B);
		CHECK_EQ(try_read(kr, full, flen, 4096, 4096, out, &bad),
			 -EBADMSG);
		CHECK_EQ(bad, 1);
		/* A zeroed non-final block of a file that never had a
		 * hole is corruption too (test_holes.c has the rest). */
		fd = make_file(kr, data, 2 * RKFS_BLOCK_SIZE);
		CHECK_EQ(fd_read_all(fd, full, sizeof(full)), flen);
		close(fd);
		memset(full + RKFS_HEADER_LEN, 0, B);
		CHECK_EQ(try_read(kr, full, flen, 0, 8192, out, &bad),
			 -EBADMSG);
		CHECK_EQ(bad, 0);
		CHECK_EQ(try_read(kr, full, flen, 4096, 4096, out, &bad), 4096);
		CHECK(memcmp(out, data + 4096, 4096) == 0);
	}
	rkfs_keyring_free(kr);
}

int main(void)
{
	SETUP(rkfs_crypt_init() == 0);
	test_kdf();
	test_header();
	test_block_kat();
	test_random();
	test_sizes();
	test_reserved();
	test_tamper();
	return check_report("test_format");
}
