#include "rekeyfs/meta.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"

#define META_MAX_SIZE (256 * 1024)

void rkfs_meta_free(struct rkfs_meta *m)
{
	if (m) {
		free(m->gens);
		free(m);
	}
}

const struct rkfs_meta_gen *rkfs_meta_find(const struct rkfs_meta *m,
					   uint32_t gen)
{
	for (size_t i = 0; i < m->count; i++)
		if (m->gens[i].number == gen)
			return &m->gens[i];
	return NULL;
}

static int add_gen(struct rkfs_meta *m, uint32_t number, const uint8_t *check)
{
	struct rkfs_meta_gen *g;
	size_t pos = m->count;

	g = realloc(m->gens, (m->count + 1) * sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	m->gens = g;
	while (pos > 0 && m->gens[pos - 1].number > number) {
		m->gens[pos] = m->gens[pos - 1];
		pos--;
	}
	memset(&m->gens[pos], 0, sizeof(m->gens[pos]));
	m->gens[pos].number = number;
	memcpy(m->gens[pos].check, check, RKFS_CHECK_LEN);
	m->count++;
	return 0;
}

/*
 * auth = BLAKE2b-256(key = crypto_kdf(id 1, "rkfsmeta", K_generation),
 *                    "rekeyfs meta v1" || tree id || u32 BE number ||
 *                    check || u8 sealed)
 * Only a holder of generation N's key can write it, and it covers the
 * tree's sealed record, so dropping "keyring = sealed" while an auth line
 * stays is seen by anyone, and a changed auth by a holder of the key.
 */
static void meta_auth(uint8_t out[RKFS_META_AUTH_LEN], const struct rkfs_meta *m,
		      const struct rkfs_meta_gen *mg, const unsigned char *key)
{
	static const char tag[] = "rekeyfs meta v1";
	crypto_generichash_state st;
	unsigned char sub[crypto_kdf_KEYBYTES];
	uint8_t num[4], sealed = m->sealed ? 1 : 0;

	crypto_kdf_derive_from_key(sub, sizeof(sub), 1, "rkfsmeta", key);
	crypto_generichash_init(&st, sub, sizeof(sub), RKFS_META_AUTH_LEN);
	crypto_generichash_update(&st, (const unsigned char *)tag,
				  sizeof(tag) - 1);
	crypto_generichash_update(&st, m->id, sizeof(m->id));
	rkfs_put_be32(num, mg->number);
	crypto_generichash_update(&st, num, sizeof(num));
	crypto_generichash_update(&st, mg->check, sizeof(mg->check));
	crypto_generichash_update(&st, &sealed, 1);
	crypto_generichash_final(&st, out, RKFS_META_AUTH_LEN);
	sodium_memzero(sub, sizeof(sub));
	sodium_memzero(&st, sizeof(st));
}

struct meta_parse {
	struct rkfs_meta *m;
	struct rkfs_error *err;
	int code;
	int lines_seen;
	bool have_format, have_id;
	uint32_t cur;
	char section[64];
};

static int meta_handler(void *user, const char *section, const char *name,
			const char *value)
{
	struct meta_parse *mp = user;
	size_t binlen;

	if (mp->code)
		return 0;
	if (strcmp(section, "rekeyfs") == 0) {
		if (strcmp(name, "format") == 0) {
			char *end;
			unsigned long v = strtoul(value, &end, 10);

			if (*end || v == 0 || v > UINT32_MAX)
				goto bad;
			mp->m->format = (uint32_t)v;
			mp->have_format = true;
			return 1;
		}
		if (strcmp(name, "keyring") == 0) {
			if (strcmp(value, "sealed") != 0 || mp->m->sealed)
				goto bad;
			mp->m->sealed = true;
			return 1;
		}
		if (strcmp(name, "id") == 0) {
			if (strlen(value) != 32 ||
			    sodium_hex2bin(mp->m->id, sizeof(mp->m->id), value,
					   32, NULL, &binlen, NULL) != 0 ||
			    binlen != sizeof(mp->m->id))
				goto bad;
			mp->have_id = true;
			return 1;
		}
		goto bad;
	}
	if (strncmp(section, "generation ", 11) == 0 &&
	    strcmp(name, "auth") == 0) {
		struct rkfs_meta_gen *g;
		char *end;
		unsigned long v = strtoul(section + 11, &end, 10);

		/* Written after its generation's check line. */
		if (*end || v == 0 || v > UINT32_MAX)
			goto bad;
		g = (struct rkfs_meta_gen *)rkfs_meta_find(mp->m, (uint32_t)v);
		if (g == NULL || g->has_auth ||
		    strlen(value) != 2 * RKFS_META_AUTH_LEN ||
		    sodium_hex2bin(g->auth, sizeof(g->auth), value,
				   strlen(value), NULL, &binlen, NULL) != 0 ||
		    binlen != sizeof(g->auth))
			goto bad;
		g->has_auth = true;
		return 1;
	}
	if (strncmp(section, "generation ", 11) == 0 &&
	    strcmp(name, "check") == 0) {
		uint8_t check[RKFS_CHECK_LEN];
		char *end;
		unsigned long v = strtoul(section + 11, &end, 10);

		if (*end || v == 0 || v > UINT32_MAX ||
		    rkfs_meta_find(mp->m, (uint32_t)v))
			goto bad;
		if (strlen(value) != 2 * RKFS_CHECK_LEN ||
		    sodium_hex2bin(check, sizeof(check), value, strlen(value),
				   NULL, &binlen, NULL) != 0 ||
		    binlen != sizeof(check))
			goto bad;
		if (add_gen(mp->m, (uint32_t)v, check) < 0) {
			mp->code = -ENOMEM;
			return 0;
		}
		return 1;
	}
bad:
	mp->code = -EINVAL;
	return 0;
}

int rkfs_meta_parse(struct rkfs_meta **out, const char *text, size_t len,
		    struct rkfs_error *err)
{
	struct meta_parse mp = { .err = err };
	char *copy;
	int ret, line;

	*out = NULL;
	/* inih reads a C string: a NUL byte would hide what follows it. */
	if (memchr(text, '\0', len))
		return rkfs_error_set(err, -EINVAL, "%s: holds a NUL byte",
				      RKFS_META_NAME);
	copy = strndup(text, len);
	mp.m = calloc(1, sizeof(*mp.m));
	if (copy == NULL || mp.m == NULL) {
		free(copy);
		free(mp.m);
		return -ENOMEM;
	}
	line = ini_parse_string(copy, meta_handler, &mp);
	free(copy);
	if (mp.code == -ENOMEM) {
		ret = -ENOMEM;
	} else if (line != 0 || mp.code) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%d: malformed backing-directory "
				     "metadata",
				     RKFS_META_NAME, line);
	} else if (!mp.have_format || !mp.have_id) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s: format or id missing", RKFS_META_NAME);
	} else if (mp.m->format != RKFS_FORMAT_VERSION) {
		ret = rkfs_error_set(err, -EPROTONOSUPPORT,
				     "%s: format %" PRIu32
				     " is not supported by rekeyfs %s (knows %d)",
				     RKFS_META_NAME, mp.m->format, RKFS_VERSION,
				     RKFS_FORMAT_VERSION);
	} else {
		*out = mp.m;
		return 0;
	}
	rkfs_meta_free(mp.m);
	return ret;
}

int rkfs_meta_load(struct rkfs_meta **out, int rootfd, struct rkfs_error *err)
{
	char *text;
	size_t len;
	int ret;

	*out = NULL;
	ret = rkfs_read_small_file(&text, &len, rootfd, RKFS_META_NAME,
				   META_MAX_SIZE, false);
	if (ret == -ENOENT)
		return ret;
	if (ret < 0)
		return rkfs_error_set(err, ret, "%s: %s", RKFS_META_NAME,
				      strerror(-ret));
	ret = rkfs_meta_parse(out, text, len, err);
	free(text);
	return ret;
}

int rkfs_meta_format(char **text, size_t *len, const struct rkfs_meta *m)
{
	char hex[2 * RKFS_CHECK_LEN + 1], idhex[33];
	FILE *f;

	*text = NULL;
	*len = 0;
	f = open_memstream(text, len);
	if (f == NULL)
		return -ENOMEM;
	sodium_bin2hex(idhex, sizeof(idhex), m->id, sizeof(m->id));
	fprintf(f,
		"# rekeyfs backing-directory metadata. Not secret; do not "
		"edit.\n[rekeyfs]\nformat = %" PRIu32 "\nid = %s\n",
		m->format, idhex);
	if (m->sealed)
		fprintf(f, "keyring = sealed\n");
	for (size_t i = 0; i < m->count; i++) {
		sodium_bin2hex(hex, sizeof(hex), m->gens[i].check,
			       RKFS_CHECK_LEN);
		fprintf(f, "\n[generation %" PRIu32 "]\ncheck = %s\n",
			m->gens[i].number, hex);
		if (m->gens[i].has_auth) {
			char ahex[2 * RKFS_META_AUTH_LEN + 1];

			sodium_bin2hex(ahex, sizeof(ahex), m->gens[i].auth,
				       RKFS_META_AUTH_LEN);
			fprintf(f, "auth = %s\n", ahex);
		}
	}
	if (fclose(f) != 0) {
		free(*text);
		*text = NULL;
		*len = 0;
		return -ENOMEM;
	}
	return 0;
}

static int meta_save(const struct rkfs_meta *m, int rootfd,
		     struct rkfs_error *err)
{
	char *text;
	size_t size;
	int ret;

	ret = rkfs_meta_format(&text, &size, m);
	if (ret < 0)
		return ret;
	ret = rkfs_write_atomic(rootfd, RKFS_META_NAME, text, size, 0644, err);
	free(text);
	return ret;
}

static int dir_is_empty(int rootfd)
{
	int fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int ret = 1;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		/* A crashed first mount may leave the lock or a temp file. */
		if (rkfs_name_reserved(de->d_name))
			continue;
		ret = 0;
		break;
	}
	closedir(d);
	return ret;
}

int rkfs_meta_check(const struct rkfs_meta *m, const struct rkfs_keyring *kr,
		    const char *root, struct rkfs_error *err)
{
	bool any_auth = false;
	int ret;

	for (size_t i = 0; i < m->count; i++) {
		const struct rkfs_generation *g =
			rkfs_keyring_find(kr, m->gens[i].number);
		uint8_t cv[RKFS_CHECK_LEN], auth[RKFS_META_AUTH_LEN];

		any_auth |= m->gens[i].has_auth;
		if (g == NULL || g->key == NULL)
			continue;
		rkfs_crypt_check_value(cv, g->key);
		if (sodium_memcmp(cv, m->gens[i].check, sizeof(cv)) != 0)
			return rkfs_error_set(
				err, -EKEYREJECTED,
				"%s: wrong keyring: its generation %" PRIu32
				" is not the key that wrote this tree's "
				"generation-%" PRIu32 " files",
				root, g->number, g->number);
		if (!m->gens[i].has_auth)
			continue;
		meta_auth(auth, m, &m->gens[i], g->key);
		if (sodium_memcmp(auth, m->gens[i].auth, sizeof(auth)) != 0)
			return rkfs_error_set(
				err, -EBADMSG,
				"%s: %s was edited: the auth value of "
				"generation %" PRIu32 " does not match (was "
				"the sealed-keyring record removed?)",
				root, RKFS_META_NAME, g->number);
	}
	/* Auth values are only written with the sealed record. */
	if (any_auth && !m->sealed)
		return rkfs_error_set(err, -EBADMSG,
				      "%s: %s was edited: it has auth values "
				      "but no \"keyring = sealed\" record",
				      root, RKFS_META_NAME);
	ret = rkfs_keyring_check_sealed(kr, m->sealed, root, err);
	if (ret < 0)
		return ret;
	return 0;
}

/*
 * The tree records that it is used with a sealed keyring, with an auth
 * value for every recorded generation whose key kr holds.  Saves only
 * when something changed.
 */
static int meta_record_sealed(struct rkfs_meta *m, int rootfd,
			      const struct rkfs_keyring *kr,
			      struct rkfs_error *err)
{
	bool changed = !m->sealed;

	m->sealed = true;
	for (size_t i = 0; i < m->count; i++) {
		struct rkfs_meta_gen *mg = &m->gens[i];
		const struct rkfs_generation *g =
			rkfs_keyring_find(kr, mg->number);

		if (g == NULL || g->key == NULL || mg->has_auth)
			continue;
		meta_auth(mg->auth, m, mg, g->key);
		mg->has_auth = true;
		changed = true;
	}
	return changed ? meta_save(m, rootfd, err) : 0;
}

int rkfs_meta_record(struct rkfs_meta *m, int rootfd,
		     const struct rkfs_keyring *kr, uint32_t gen,
		     const char *root, struct rkfs_error *err)
{
	const struct rkfs_meta_gen *mg = rkfs_meta_find(m, gen);
	uint8_t cv[RKFS_CHECK_LEN];
	const unsigned char *key;
	int kerr, ret;

	key = rkfs_keyring_key(kr, gen, &kerr);
	if (key == NULL)
		return rkfs_error_set(err, kerr,
				      "%s: generation %" PRIu32
				      " has no usable key",
				      root, gen);
	rkfs_crypt_check_value(cv, key);
	if (mg) {
		if (sodium_memcmp(cv, mg->check, sizeof(cv)) != 0)
			return rkfs_error_set(err, -EKEYREJECTED,
					      "%s: wrong keyring: its generation "
					      "%" PRIu32 " is not the key that "
					      "wrote this tree's generation-%" PRIu32
					      " files",
					      root, gen, gen);
		if (kr->sealed && !m->sealed)
			return meta_record_sealed(m, rootfd, kr, err);
		return 0;
	}
	ret = add_gen(m, gen, cv);
	if (ret < 0)
		return ret;
	if (m->sealed || kr->sealed)
		return meta_record_sealed(m, rootfd, kr, err);
	return meta_save(m, rootfd, err);
}

int rkfs_meta_open(struct rkfs_meta **out, int rootfd, const char *root,
		   const struct rkfs_keyring *kr, unsigned flags,
		   struct rkfs_error *err)
{
	struct rkfs_meta *m = NULL;
	int ret;

	*out = NULL;
	ret = rkfs_meta_load(&m, rootfd, err);
	if (ret == -ENOENT) {
		if (!(flags & RKFS_META_CREATE))
			return rkfs_error_set(err, -ENOENT,
					      "%s: not a rekeyfs backing "
					      "directory (no %s)",
					      root, RKFS_META_NAME);
		ret = dir_is_empty(rootfd);
		if (ret < 0)
			return rkfs_error_set(err, ret, "%s: %s", root,
					      strerror(-ret));
		if (ret == 0)
			return rkfs_error_set(
				err, -ENOTEMPTY,
				"%s: not empty and has no %s; rekeyfs only "
				"initialises an empty backing directory",
				root, RKFS_META_NAME);
		/* Users own their backing files but need not reach them
		 * directly: only root goes through the backing root unless
		 * the owner opens it up (a chmod of the mount's root). */
		if (fchmod(rootfd, 0700) < 0) {
			ret = -errno;
			return rkfs_error_set(err, ret, "%s: chmod: %s", root,
					      strerror(-ret));
		}
		m = calloc(1, sizeof(*m));
		if (m == NULL)
			return -ENOMEM;
		m->format = RKFS_FORMAT_VERSION;
		randombytes_buf(m->id, sizeof(m->id));
		ret = meta_save(m, rootfd, err);
		if (ret < 0)
			goto fail;
	} else if (ret < 0) {
		return ret;
	}
	ret = rkfs_meta_check(m, kr, root, err);
	if (ret < 0)
		goto fail;
	if ((flags & RKFS_META_RECORD) && kr->primary) {
		ret = rkfs_meta_record(m, rootfd, kr, kr->primary, root, err);
		if (ret < 0)
			goto fail;
	}
	if ((flags & RKFS_META_RECORD) && kr->sealed) {
		ret = meta_record_sealed(m, rootfd, kr, err);
		if (ret < 0)
			goto fail;
	}
	*out = m;
	return 0;
fail:
	rkfs_meta_free(m);
	return ret;
}
