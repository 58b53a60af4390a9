/*
 * libFuzzer harness: the file header parser and the block opener, through
 * the file layer (rkfs_file_load/read/seek/verify) over a memfd backing
 * file, with the fixture keyring.  The first input byte picks the mode:
 *
 * even: the rest is a backing file as found on disk.  Whatever it holds,
 *   nothing may crash, and a file that verifies must read back whole.
 *
 * odd: the rest is a program of 6-byte operations [op a_hi a_lo b_hi b_lo
 *   v] run through the file layer against a plain-text model: writes,
 *   truncates and fallocates (byte 1, bit 0: write new files under
 *   generation 1 instead of 2); the file must then verify, read back as
 *   the model, and load again the same.  Then the ciphertext is tampered
 *   with (byte flips, a zeroed block, a cut), and every byte a read still
 *   returns must be the model's byte, or zero from a block that is all
 *   zero on disk (a hole): never other data.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "rekeyfs/file.h"
#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"

#define MODEL_MAX (64 * 1024)  /* plaintext bytes the program may reach */
#define BACKING_MAX (96 * 1024)
#define OPS_MAX 48

static struct rkfs_keyring *kr2, *kr1; /* primary 2 (fixture) and 1 */
static int fd = -1;
static uint8_t model[MODEL_MAX], got[MODEL_MAX + RKFS_BLOCK_SIZE];
static uint8_t disk[BACKING_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char p1[] = "[keyring]\nprimary = 1\n";
	struct rkfs_error err = { 0 };
	const char *gens = strstr(fuzz_fixture_keyring, "\n[generation");
	char text[sizeof(fuzz_fixture_keyring) + sizeof(p1)];

	fuzz_quiet_log();
	kr2 = fuzz_fixture_load();
	snprintf(text, sizeof(text), "%s%s", p1, gens);
	FUZZ_CHECK(rkfs_keyring_parse(&kr1, text, strlen(text), "fixture-1",
				      NULL, 0, &err) == 0);
	fd = memfd_create("rekeyfs-fuzz", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	return 0;
}

static void backing_set(const uint8_t *buf, size_t len)
{
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(rkfs_pwrite_full(fd, buf, len, 0) == 0);
}

static size_t backing_size(void)
{
	struct stat st;

	FUZZ_CHECK(fstat(fd, &st) == 0);
	return (size_t)st.st_size;
}

/*
 * Read the whole file in chunks of chunk bytes into got; returns the
 * bytes read, or a negative errno from the first failing read.
 */
static ssize_t read_all(struct rkfs_file *f, size_t chunk)
{
	uint64_t off = 0, bad;
	ssize_t n;

	while (off < sizeof(got)) {
		size_t want = sizeof(got) - off < chunk ? sizeof(got) - off
							  : chunk;

		n = rkfs_file_read(f, fd, got + off, want, off, &bad);
		if (n < 0)
			return n;
		FUZZ_CHECK((size_t)n <= want);
		if (n == 0)
			break;
		off += (uint64_t)n;
	}
	return (ssize_t)off;
}

static void seeks(struct rkfs_file *f, uint64_t at)
{
	uint8_t small[17];
	ssize_t n;

	/* and a short read there, as a page cache miss would make */
	n = rkfs_file_read(f, fd, small, 1 + at % 17, at,
			   NULL);
	FUZZ_CHECK(n <= (ssize_t)(1 + at % 17));

	for (int whence = SEEK_DATA; whence <= SEEK_HOLE; whence++) {
		off_t o = rkfs_file_seek(f, fd, (off_t)at, whence);

		FUZZ_CHECK(o < 0 || (uint64_t)o >= at);
		FUZZ_CHECK(o < 0 || (uint64_t)o <= f->size);
	}
}

static void raw_mode(const uint8_t *data, size_t size, size_t chunk)
{
	struct rkfs_file f;
	uint64_t bad;
	ssize_t n;

	if (size > BACKING_MAX)
		return;
	backing_set(data, size);
	if (rkfs_file_load(&f, fd, kr2) != 0)
		return;
	(void)rkfs_file_stat_size(size);
	n = read_all(&f, chunk);
	seeks(&f, size ? data[size - 1] * 97u : 0);
	if (rkfs_file_verify(&f, fd, &bad) == 0) {
		FUZZ_CHECK(n >= 0 && (uint64_t)n == f.size);
		FUZZ_CHECK(f.size <= sizeof(got));
	}
	rkfs_file_release(&f);
}

/* A block on disk (in disk[], len bytes) that is all zero. */
static bool zero_block(size_t len, uint64_t index)
{
	uint64_t start = rkfs_block_offset(index);
	size_t n = RKFS_CBLOCK_SIZE;

	if (start >= len)
		return false;
	if (start + n > len)
		n = len - start;
	return rkfs_is_zero(disk + start, n);
}

static void program_mode(const uint8_t *data, size_t size, size_t chunk)
{
	const struct rkfs_keyring *kw = size && (data[0] & 1) ? kr1 : kr2;
	uint64_t msize = 0, bad;
	struct rkfs_file f;
	size_t ops = 0, len;
	ssize_t n;

	backing_set(NULL, 0);
	memset(model, 0, sizeof(model));
	FUZZ_CHECK(rkfs_file_load(&f, fd, kw) == 0);
	if (size)
		data++, size--;
	for (; size >= 6 && ops < OPS_MAX; data += 6, size -= 6, ops++) {
		uint64_t a = (uint64_t)data[1] << 8 | data[2];
		uint64_t b = (uint64_t)data[3] << 8 | data[4];
		uint8_t v = data[5], buf[9000];

		switch (data[0] % 8) {
		case 0: case 1: case 2: case 3: /* write a, b % 9000 bytes */
			len = b % sizeof(buf);
			if (a + len > MODEL_MAX)
				len = MODEL_MAX - a;
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)(v + i * (data[0] | 1));
			n = rkfs_file_write(&f, fd, buf, len, a, kw, &bad);
			FUZZ_CHECK(n == (ssize_t)len);
			memcpy(model + a, buf, len);
			if (len && a + len > msize)
				msize = a + len;
			break;
		case 4: /* truncate to a */
			FUZZ_CHECK(rkfs_file_truncate(&f, fd, a, kw, &bad) == 0);
			if (a < msize)
				memset(model + a, 0, msize - a);
			msize = a;
			break;
		case 5: /* fallocate a, b (keep size if v odd) */
			if (b == 0 || a + b > MODEL_MAX)
				break;
			FUZZ_CHECK(rkfs_file_allocate(&f, fd, a, b, v & 1, kw,
						      &bad) == 0);
			if (!(v & 1) && a + b > msize)
				msize = a + b;
			break;
		default: /* tamper ops: run below */
			goto tamper;
		}
		FUZZ_CHECK(f.size == msize);
	}
tamper:
	FUZZ_CHECK(rkfs_file_verify(&f, fd, &bad) == 0);
	n = read_all(&f, chunk);
	FUZZ_CHECK(n == (ssize_t)msize && memcmp(got, model, msize) == 0);
	seeks(&f, msize / 2);
	rkfs_file_release(&f);
	FUZZ_CHECK(rkfs_file_load(&f, fd, kr2) == 0);
	FUZZ_CHECK(f.size == msize);
	n = read_all(&f, RKFS_BLOCK_SIZE);
	FUZZ_CHECK(n == (ssize_t)msize && memcmp(got, model, msize) == 0);
	rkfs_file_release(&f);

	len = backing_size();
	FUZZ_CHECK(len <= sizeof(disk));
	FUZZ_CHECK(rkfs_pread_full(fd, disk, len, 0) == (ssize_t)len);
	if (size < 6)
		return;
	for (; size >= 6 && ops < OPS_MAX; data += 6, size -= 6, ops++) {
		uint64_t pos = ((uint64_t)data[1] << 16 | data[2] << 8 |
				data[3]);
		uint8_t v = data[5];

		if (len == 0)
			break;
		if (data[0] % 2 == 0) { /* flip bits of one byte */
			disk[pos % len] ^= v | 1;
		} else if (v & 1) { /* zero a block */
			uint64_t nb = (len - RKFS_HEADER_LEN) /
					      RKFS_CBLOCK_SIZE + 1;
			uint64_t s = rkfs_block_offset(pos % nb);

			if (s < len)
				memset(disk + s, 0,
				       len - s < RKFS_CBLOCK_SIZE
					       ? len - s
					       : RKFS_CBLOCK_SIZE);
		} else { /* cut */
			len = pos % (len + 1);
		}
	}
	backing_set(disk, len);
	if (rkfs_file_load(&f, fd, kr2) != 0)
		return;
	FUZZ_CHECK(f.size <= sizeof(got));
	for (uint64_t off = 0; off < f.size; off += chunk) {
		n = rkfs_file_read(&f, fd, got, chunk, off, &bad);
		if (n <= 0)
			continue;
		for (size_t i = 0; i < (size_t)n; i++) {
			uint64_t p = off + i;

			FUZZ_CHECK(p < msize);
			if (got[i] == model[p])
				continue;
			FUZZ_CHECK(got[i] == 0 &&
				   zero_block(len, p / RKFS_BLOCK_SIZE));
		}
	}
	rkfs_file_release(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t chunk;

	if (size < 2)
		return 0;
	/* Reads of 1 byte over a whole file would take most of the time. */
	chunk = 509 + (size_t)(data[1] * 37u) % (2 * RKFS_BLOCK_SIZE);
	if (data[0] & 1)
		program_mode(data + 1, size - 1, chunk);
	else
		raw_mode(data + 2, size - 2, chunk);
	return 0;
}
