#include "rekeyfs/format.h"
#include "rekeyfs/crypt.h"
#include "rekeyfs/fsio.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

int rkfs_header_parse(struct rkfs_header *h, const uint8_t *buf, size_t len)
{
	memset(h, 0, sizeof(*h));
	if (len < RKFS_HEADER_LEN)
		return -EBADMSG;
	if (memcmp(buf, RKFS_MAGIC, RKFS_MAGIC_LEN) != 0) /* not secret */
		return -EBADMSG;
	if (buf[6] != RKFS_FORMAT_VERSION || buf[7] != RKFS_CIPHER_XCHACHA20POLY1305)
		return -EPROTONOSUPPORT;
	if (rkfs_get_be32(buf + 28) & ~RKFS_FLAGS_KNOWN)
		return -EPROTONOSUPPORT;
	if (rkfs_is_zero(buf + 12, RKFS_FILE_ID_LEN))
		return -EBADMSG;
	h->version = buf[6];
	h->cipher = buf[7];
	h->generation = rkfs_get_be32(buf + 8);
	h->flags = rkfs_get_be32(buf + 28);
	memcpy(h->file_id, buf + 12, RKFS_FILE_ID_LEN);
	memcpy(h->raw, buf, RKFS_HEADER_LEN);
	return 0;
}

void rkfs_header_init(struct rkfs_header *h, uint32_t generation)
{
	memset(h, 0, sizeof(*h));
	h->version = RKFS_FORMAT_VERSION;
	h->cipher = RKFS_CIPHER_XCHACHA20POLY1305;
	h->generation = generation;
	h->flags = RKFS_FLAG_HOLE_AUTH;
	do
		rkfs_crypt_random(h->file_id, sizeof(h->file_id));
	while (rkfs_is_zero(h->file_id, sizeof(h->file_id)));
	memcpy(h->raw, RKFS_MAGIC, RKFS_MAGIC_LEN);
	h->raw[6] = h->version;
	h->raw[7] = h->cipher;
	rkfs_put_be32(h->raw + 8, generation);
	memcpy(h->raw + 12, h->file_id, RKFS_FILE_ID_LEN);
	rkfs_put_be32(h->raw + 28, h->flags);
}

int rkfs_size_to_plain(uint64_t *plain, uint64_t cipher_size)
{
	uint64_t body, full, rest;

	*plain = 0;
	if (cipher_size == 0 || cipher_size == RKFS_HEADER_LEN)
		return 0;
	if (cipher_size < RKFS_HEADER_LEN)
		return -EBADMSG;
	body = cipher_size - RKFS_HEADER_LEN;
	full = body / RKFS_CBLOCK_SIZE;
	rest = body % RKFS_CBLOCK_SIZE;
	if (rest != 0 && rest <= RKFS_BLOCK_OVERHEAD)
		return -EBADMSG;
	*plain = full * RKFS_BLOCK_SIZE + (rest ? rest - RKFS_BLOCK_OVERHEAD : 0);
	return 0;
}

uint64_t rkfs_size_to_cipher(uint64_t plain)
{
	uint64_t full = plain / RKFS_BLOCK_SIZE;
	uint64_t rest = plain % RKFS_BLOCK_SIZE;

	return RKFS_HEADER_LEN + full * RKFS_CBLOCK_SIZE +
	       (rest ? rest + RKFS_BLOCK_OVERHEAD : 0);
}

bool rkfs_is_zero(const uint8_t *buf, size_t len)
{
	/* Word-wise scan: this runs on every block read. */
	while (len >= sizeof(uint64_t)) {
		uint64_t w;

		memcpy(&w, buf, sizeof(w));
		if (w)
			return false;
		buf += sizeof(w);
		len -= sizeof(w);
	}
	while (len--)
		if (*buf++)
			return false;
	return true;
}

bool rkfs_name_reserved(const char *name)
{
	return strncmp(name, RKFS_RESERVED_PREFIX, RKFS_RESERVED_PREFIX_LEN) == 0;
}
