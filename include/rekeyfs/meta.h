/*
 * Backing-directory metadata: the non-secret file RKFS_META_NAME in the
 * root of every backing tree.
 *
 *   [rekeyfs]
 *   format = 1                    ; on-disk format version of this tree
 *   id = <32 hex digits>          ; random filesystem id
 *
 *   keyring = sealed              ; optional: see below
 *
 *   [generation N]                ; one per generation ever used here
 *   check = <32 hex digits>       ; check value of that generation's key
 *   auth = <64 hex digits>        ; optional: see below
 *
 * Mount, rekeyfs-rekey and rekeyfs-key check compare a keyring against the
 * recorded check values and refuse a keyring whose generation N is not the
 * key that wrote this tree's generation-N files.
 *
 * The sealed record.  Once a read-write mount (or a reload) uses a
 * passphrase-sealed keyring, the tree records "keyring = sealed", and
 * every recorded generation whose key that keyring holds gets
 *
 *   auth = BLAKE2b-256(key = crypto_kdf_derive_from_key(id 1, "rkfsmeta",
 *                            K_generation),
 *                      "rekeyfs meta v1" || tree id || u32 BE N ||
 *                      check || u8 sealed)
 *
 * From then on a mount or tool given an unsealed keyring for this tree
 * refuses it (-EPERM) unless the operator allowed it explicitly
 * (rkfs_keyring_allow_unsealed(), logged).  Auth values are only ever
 * written together with the sealed record, so removing "keyring = sealed"
 * while any auth line remains is refused by everyone (-EBADMSG), and a
 * keyring holding generation N's key detects any change of N's auth or of
 * the sealed bit it covers.  What no record can stop: someone who can
 * write this file and who removes the record together with every auth
 * line, and then offers a keyring that holds none of the tree's recorded
 * keys (such a keyring can verify nothing here).  A mount or tool given a
 * passphrase source refuses an unsealed keyring whatever the tree says,
 * and a running mount never accepts one in place of a sealed one
 * (rkfs_keyring_check_downgrade()).  Files without these lines (every
 * tree written before them) stay valid and are read as unsealed.
 */
#ifndef RKFS_META_H
#define RKFS_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"
#include "rekeyfs/keyring.h"

#define RKFS_META_NAME ".rekeyfs.conf"
#define RKFS_LOCK_NAME ".rekeyfs.lock"
/* Rekey temp files: RKFS_TMP_PREFIX + random suffix, in any directory. */
#define RKFS_TMP_PREFIX ".rekeyfs-tmp."

#define RKFS_META_AUTH_LEN 32

struct rkfs_meta_gen {
	uint32_t number;
	uint8_t check[RKFS_CHECK_LEN];
	bool has_auth;
	uint8_t auth[RKFS_META_AUTH_LEN];
};

struct rkfs_meta {
	uint32_t format;
	uint8_t id[16];
	bool sealed; /* "keyring = sealed" recorded */
	size_t count;
	struct rkfs_meta_gen *gens; /* ascending by number */
};

/* rkfs_meta_open() flags */
#define RKFS_META_CREATE 0x1 /* initialise an empty backing directory */
#define RKFS_META_RECORD 0x2 /* record the primary's check value */

/*
 * Load the metadata of the backing tree at rootfd.  Returns 0, -ENOENT if
 * there is none, -EINVAL (with "file:line: ...") if it is malformed, or
 * -EPROTONOSUPPORT for an unknown format.
 */
int rkfs_meta_load(struct rkfs_meta **out, int rootfd, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1)));

/*
 * Same, from len bytes of text in memory (need not be NUL-terminated; a
 * NUL byte in it is -EINVAL).  Reads no file.
 */
int rkfs_meta_parse(struct rkfs_meta **out, const char *text, size_t len,
		    struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/*
 * The text rkfs_meta_load() reads back as m (what is saved to
 * RKFS_META_NAME).  *text is malloc()ed and NUL-terminated, *len excludes
 * the NUL.  Returns 0 or -ENOMEM.
 */
int rkfs_meta_format(char **text, size_t *len, const struct rkfs_meta *m)
	__attribute__((warn_unused_result, nonnull));

/*
 * Everything a mount or tool does at start: load the metadata (creating it
 * if RKFS_META_CREATE and the directory is empty, which also makes the
 * directory mode 0700; a non-empty directory without metadata is refused
 * with -ENOTEMPTY), check kr against it (rkfs_meta_check()), and with
 * RKFS_META_RECORD record kr's primary generation and, if kr is sealed,
 * the sealed record.  root names the directory in messages.
 */
int rkfs_meta_open(struct rkfs_meta **out, int rootfd, const char *root,
		   const struct rkfs_keyring *kr, unsigned flags,
		   struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 3, 4)));

/*
 * Compare every loaded key of kr with the recorded check values and auth
 * values, and apply the sealed-keyring rules (see the top of this file and
 * rkfs_keyring_check_sealed()).  Returns 0, -EKEYREJECTED naming the first
 * mismatching generation, -EBADMSG (the file was edited: an auth value
 * does not match, or auth values without the sealed record) or -EPERM
 * (an unsealed keyring where a sealed one is required).
 */
int rkfs_meta_check(const struct rkfs_meta *m, const struct rkfs_keyring *kr,
		    const char *root, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2, 3)));

/*
 * Record generation gen's check value (from kr, whose key must be loaded)
 * if it is not recorded yet, and save atomically; with a sealed kr (or a
 * tree already sealed) also the sealed record and auth values.  Returns
 * 0, -ENOKEY, -EKEYREJECTED (recorded value differs) or -errno.
 */
int rkfs_meta_record(struct rkfs_meta *m, int rootfd,
		     const struct rkfs_keyring *kr, uint32_t gen,
		     const char *root, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 3, 5)));

const struct rkfs_meta_gen *rkfs_meta_find(const struct rkfs_meta *m,
					   uint32_t gen) __attribute__((nonnull));

void rkfs_meta_free(struct rkfs_meta *m);

#endif /* RKFS_META_H */
