#include "rekeyfs/crypt.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <sodium.h>

static const char content_ctx[] = "rekeyfs v1 content";
static const char check_ctx[] = "rekeyfs v1 check";

/*
 * A getrandom() call per sealed 4 KiB block cost about a tenth as much as
 * sealing it; the buffer makes that one call per ten nonces.  Bytes
 * [pool_used, POOL_LEN) are unused; a forked child empties the buffer of
 * the thread that forked (the only one it has), so parent and child never
 * hand out the same bytes.
 */
#define POOL_LEN 240 /* libsodium fetches at most 256 bytes per call */
static __thread uint8_t pool[POOL_LEN];
static __thread size_t pool_used = POOL_LEN;

static void pool_drop(void)
{
	sodium_memzero(pool, sizeof(pool));
	pool_used = POOL_LEN;
}

static void register_fork_handler(void)
{
	(void)pthread_atfork(NULL, NULL, pool_drop);
}

int rkfs_crypt_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	if (sodium_init() < 0)
		return -ENOSYS;
	pthread_once(&once, register_fork_handler);
	return 0;
}

void rkfs_crypt_random(void *out, size_t len)
{
	if (len > RKFS_RANDOM_MAX) {
		randombytes_buf(out, len);
		return;
	}
	if (len > POOL_LEN - pool_used) {
		randombytes_buf(pool, POOL_LEN);
		pool_used = 0;
	}
	memcpy(out, pool + pool_used, len);
	sodium_memzero(pool + pool_used, len);
	pool_used += len;
}

void rkfs_crypt_file_key(unsigned char *out, const uint8_t *file_id,
			 const unsigned char *gen_key)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, gen_key, RKFS_KEY_LEN, RKFS_KEY_LEN);
	crypto_generichash_update(&st, (const unsigned char *)content_ctx,
				  sizeof(content_ctx) - 1);
	crypto_generichash_update(&st, file_id, RKFS_FILE_ID_LEN);
	crypto_generichash_final(&st, out, RKFS_KEY_LEN);
	sodium_memzero(&st, sizeof(st));
}

void rkfs_crypt_check_value(uint8_t out[RKFS_CHECK_LEN],
			    const unsigned char *gen_key)
{
	crypto_generichash(out, RKFS_CHECK_LEN,
			   (const unsigned char *)check_ctx,
			   sizeof(check_ctx) - 1, gen_key, RKFS_KEY_LEN);
}

static void build_aad(uint8_t aad[RKFS_AAD_LEN], const struct rkfs_header *h,
		      uint64_t index, int mark)
{
	memcpy(aad, h->raw, RKFS_HEADER_LEN);
	rkfs_put_be64(aad + RKFS_HEADER_LEN, index);
	aad[RKFS_HEADER_LEN + 8] = (uint8_t)mark;
}

void rkfs_block_seal(uint8_t *out, const uint8_t *plain, size_t len,
		     uint64_t index, int final, const struct rkfs_header *h,
		     const unsigned char *file_key)
{
	uint8_t aad[RKFS_AAD_LEN];

	build_aad(aad, h, index, final);
	rkfs_crypt_random(out, RKFS_NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
		out + RKFS_NONCE_LEN, out + RKFS_NONCE_LEN + len, NULL, plain,
		len, aad, sizeof(aad), NULL, out, file_key);
}

int rkfs_block_open(uint8_t *plain, const uint8_t *in, size_t inlen,
		    uint64_t index, int final, const struct rkfs_header *h,
		    const unsigned char *file_key)
{
	uint8_t aad[RKFS_AAD_LEN];
	size_t len;

	if (inlen <= RKFS_BLOCK_OVERHEAD || inlen > RKFS_CBLOCK_SIZE)
		return -EBADMSG;
	len = inlen - RKFS_BLOCK_OVERHEAD;
	build_aad(aad, h, index, final);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
		    plain, NULL, in + RKFS_NONCE_LEN, len,
		    in + RKFS_NONCE_LEN + len, aad, sizeof(aad), in,
		    file_key) != 0) {
		memset(plain, 0, len);
		return -EBADMSG;
	}
	return 0;
}
