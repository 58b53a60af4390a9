#include "rekeyfs/crypt.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

static const char content_ctx[] = "rekeyfs v1 content";
static const char check_ctx[] = "rekeyfs v1 check";

int rkfs_crypt_init(void)
{
	return sodium_init() < 0 ? -ENOSYS : 0;
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
		      uint64_t index, int final)
{
	memcpy(aad, h->raw, RKFS_HEADER_LEN);
	rkfs_put_be64(aad + RKFS_HEADER_LEN, index);
	aad[RKFS_HEADER_LEN + 8] = final ? 1 : 0;
}

void rkfs_block_seal(uint8_t *out, const uint8_t *plain, size_t len,
		     uint64_t index, int final, const struct rkfs_header *h,
		     const unsigned char *file_key)
{
	uint8_t aad[RKFS_AAD_LEN];

	build_aad(aad, h, index, final);
	randombytes_buf(out, RKFS_NONCE_LEN);
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
