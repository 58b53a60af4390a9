#include "rekeyfs/keyring.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#include "rekeyfs/format.h"
#include "rekeyfs/fsio.h"

#define KEYRING_MAX_SIZE (1024 * 1024)
#define KEY_TEXT_MAX 4096

#define SALT_LEN crypto_pwhash_SALTBYTES
#define PASS_CHECK_LEN 16
#define MAC_LEN 32
#define SEAL_CTX "rkfskeyr"
#define SEAL_AD "rekeyfs keyring key"
#define SEALED_BIN_LEN                                                        \
	(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + RKFS_KEY_LEN +        \
	 crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define KDF_OPS_MAX 64ULL
#define KDF_MEM_MAX (4ULL << 30)

struct rkfs_seal {
	uint8_t salt[SALT_LEN];
	unsigned long long ops;
	size_t mem;
	uint8_t pass_check[PASS_CHECK_LEN];
	unsigned char *keys; /* sodium_malloc: K_enc || K_mac */
};

static bool allow_unsealed;
static bool require_sealed;
static rkfs_passphrase_fn passphrase_fn;
static rkfs_passphrase_ex_fn passphrase_ex_fn;
static void *passphrase_arg;
static uint64_t next_serial = 1;
static pthread_mutex_t seal_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rkfs_seal seal_cache; /* last derived keys, keys NULL if none */

void rkfs_keyring_set_passphrase_source(rkfs_passphrase_fn fn, void *arg)
{
	passphrase_ex_fn = NULL;
	passphrase_fn = fn;
	passphrase_arg = arg;
}

void rkfs_keyring_set_passphrase_source_ex(rkfs_passphrase_ex_fn fn,
					   void *arg)
{
	passphrase_fn = NULL;
	passphrase_ex_fn = fn;
	passphrase_arg = arg;
}

void rkfs_keyring_allow_unsealed(bool allow)
{
	allow_unsealed = allow;
}

void rkfs_keyring_require_sealed(bool require)
{
	require_sealed = require;
}

int rkfs_keyring_check_sealed(const struct rkfs_keyring *kr, bool tree_sealed,
			      const char *root, struct rkfs_error *err)
{
	const char *name = kr->path ? kr->path : "keyring";

	if (kr->sealed || (!tree_sealed && !require_sealed))
		return 0;
	if (allow_unsealed) {
		rkfs_log(LOG_WARNING,
			 "%s: accepting the unsealed keyring %s although %s "
			 "(--allow-unsealed)",
			 root ? root : name, name,
			 tree_sealed ? "the tree recorded a passphrase-sealed "
				       "one" :
				       "a passphrase source was given");
		return 0;
	}
	if (tree_sealed)
		return rkfs_error_set(
			err, -EPERM,
			"%s: refusing the unsealed keyring %s: this tree was "
			"used with a passphrase-sealed keyring (a replaced "
			"keyring?); seal it with rekeyfs-key protect, or give "
			"--allow-unsealed if the change is intended",
			root ? root : name, name);
	return rkfs_error_set(err, -EPERM,
			      "%s: keyring is not sealed with a passphrase, "
			      "but a passphrase source was given (a replaced "
			      "keyring?); give --allow-unsealed if this is "
			      "intended",
			      name);
}

int rkfs_keyring_check_downgrade(const struct rkfs_keyring *old,
				 const struct rkfs_keyring *new,
				 const uint32_t *in_use, size_t n_in_use,
				 struct rkfs_error *err)
{
	const char *name = new->path ? new->path : "keyring";

	if (old->sealed && !new->sealed)
		return rkfs_error_set(err, -EPERM,
				      "%s: refusing an unsealed keyring in "
				      "place of the passphrase-sealed one this "
				      "mount loaded",
				      name);
	for (size_t i = 0; i < n_in_use; i++) {
		const struct rkfs_generation *g =
			rkfs_keyring_find(new, in_use[i]);

		if (g == NULL)
			return rkfs_error_set(err, -EPERM,
					      "%s: refusing a keyring without "
					      "generation %" PRIu32
					      ", which files open in this "
					      "mount still use",
					      name, in_use[i]);
		if (g->state == RKFS_GEN_DESTROYED)
			return rkfs_error_set(err, -EPERM,
					      "%s: refusing a keyring that "
					      "destroys generation %" PRIu32
					      ", which files open in this "
					      "mount still use",
					      name, in_use[i]);
	}
	return 0;
}

static void seal_free(struct rkfs_seal *s)
{
	if (s == NULL)
		return;
	if (s->keys)
		sodium_free(s->keys);
	free(s);
}

void rkfs_keyring_forget_passphrases(void)
{
	pthread_mutex_lock(&seal_cache_lock);
	if (seal_cache.keys)
		sodium_free(seal_cache.keys);
	memset(&seal_cache, 0, sizeof(seal_cache));
	pthread_mutex_unlock(&seal_cache_lock);
}

/* s->salt/ops/mem set: derive s->keys and s->pass_check from pass. */
static int seal_derive(struct rkfs_seal *s, const char *pass, size_t len)
{
	unsigned char *master;
	unsigned char check_key[32];
	int ret = 0;

	s->keys = sodium_malloc(2 * RKFS_KEY_LEN);
	master = sodium_malloc(RKFS_KEY_LEN);
	if (s->keys == NULL || master == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	if (crypto_pwhash(master, RKFS_KEY_LEN, pass, len, s->salt, s->ops,
			  s->mem, crypto_pwhash_ALG_ARGON2ID13) != 0) {
		ret = -ENOMEM;
		goto out;
	}
	crypto_kdf_derive_from_key(s->keys, RKFS_KEY_LEN, 1, SEAL_CTX, master);
	crypto_kdf_derive_from_key(s->keys + RKFS_KEY_LEN, RKFS_KEY_LEN, 2,
				   SEAL_CTX, master);
	crypto_kdf_derive_from_key(check_key, sizeof(check_key), 3, SEAL_CTX,
				   master);
	crypto_generichash(s->pass_check, PASS_CHECK_LEN,
			   (const unsigned char *)"rekeyfs keyring passphrase",
			   26, check_key, sizeof(check_key));
	sodium_memzero(check_key, sizeof(check_key));
out:
	if (master)
		sodium_free(master);
	if (ret < 0 && s->keys) {
		sodium_free(s->keys);
		s->keys = NULL;
	}
	return ret;
}

static int seal_params_check(unsigned long long ops, size_t mem)
{
	if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > KDF_OPS_MAX)
		return -EINVAL;
	if (mem < crypto_pwhash_MEMLIMIT_MIN || mem > KDF_MEM_MAX)
		return -EINVAL;
	return 0;
}

int rkfs_keyring_seal(struct rkfs_keyring *kr, const char *pass, size_t len,
		      unsigned long long ops, size_t mem,
		      struct rkfs_error *err)
{
	struct rkfs_seal *s;
	int ret;

	if (ops == 0)
		ops = RKFS_KDF_OPS_DEFAULT;
	if (mem == 0)
		mem = RKFS_KDF_MEM_DEFAULT;
	if (seal_params_check(ops, mem) < 0)
		return rkfs_error_set(err, -EINVAL,
				      "kdf parameters out of range: ops must "
				      "be 1..%llu, mem %u..%llu bytes",
				      KDF_OPS_MAX,
				      (unsigned)crypto_pwhash_MEMLIMIT_MIN,
				      KDF_MEM_MAX);
	if (len == 0)
		return rkfs_error_set(err, -EINVAL, "the passphrase is empty");
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	randombytes_buf(s->salt, sizeof(s->salt));
	s->ops = ops;
	s->mem = mem;
	ret = seal_derive(s, pass, len);
	if (ret < 0) {
		free(s);
		return rkfs_error_set(err, ret,
				      "cannot derive the passphrase key (%zu "
				      "bytes of memory): %s",
				      mem, strerror(-ret));
	}
	seal_free(kr->seal);
	kr->seal = s;
	kr->sealed = true;
	return 0;
}

int rkfs_keyring_seal_params(const struct rkfs_keyring *kr,
			     unsigned long long *ops, size_t *mem)
{
	if (!kr->sealed || kr->seal == NULL)
		return -ENOENT;
	*ops = kr->seal->ops;
	*mem = kr->seal->mem;
	return 0;
}

void rkfs_keyring_unseal(struct rkfs_keyring *kr)
{
	seal_free(kr->seal);
	kr->seal = NULL;
	kr->sealed = false;
}

static void mac_field(crypto_generichash_state *st, const void *p, size_t len)
{
	uint8_t be[4];

	be[0] = (uint8_t)(len >> 24);
	be[1] = (uint8_t)(len >> 16);
	be[2] = (uint8_t)(len >> 8);
	be[3] = (uint8_t)len;
	crypto_generichash_update(st, be, sizeof(be));
	if (len)
		crypto_generichash_update(st, p, len);
}

static void mac_str(crypto_generichash_state *st, const char *s)
{
	mac_field(st, s ? s : "", s ? strlen(s) : 0);
}

static void mac_num(crypto_generichash_state *st, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", v);
	mac_str(st, buf);
}

/* texts[i]: the sealed text of generation i when it is inline. */
static void mac_compute(uint8_t out[MAC_LEN], const struct rkfs_keyring *kr,
			const struct rkfs_seal *s, char *const *texts)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, s->keys + RKFS_KEY_LEN, RKFS_KEY_LEN,
				MAC_LEN);
	mac_str(&st, "rekeyfs keyring v1 argon2id");
	mac_field(&st, s->salt, sizeof(s->salt));
	mac_num(&st, s->ops);
	mac_num(&st, s->mem);
	mac_field(&st, s->pass_check, sizeof(s->pass_check));
	mac_num(&st, kr->primary_explicit ? kr->primary : 0);
	mac_num(&st, kr->count);
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];

		mac_num(&st, g->number);
		mac_str(&st, rkfs_gen_state_name(g->state));
		mac_str(&st, g->created ? g->created : "-");
		mac_num(&st, g->source);
		switch (g->source) {
		case RKFS_KEY_INLINE:
			mac_str(&st, texts[i]);
			break;
		case RKFS_KEY_FILE:
			mac_str(&st, g->key_file);
			break;
		case RKFS_KEY_COMMAND:
			mac_str(&st, g->key_command);
			break;
		case RKFS_KEY_NONE:
			mac_str(&st, "");
			break;
		}
		mac_num(&st, g->key_command_timeout);
		mac_field(&st, g->check, g->has_check ? sizeof(g->check) : 0);
	}
	crypto_generichash_final(&st, out, MAC_LEN);
	sodium_memzero(&st, sizeof(st));
}

static void seal_ad(uint8_t *ad, uint32_t number)
{
	memcpy(ad, SEAL_AD, sizeof(SEAL_AD) - 1);
	rkfs_put_be32(ad + sizeof(SEAL_AD) - 1, number);
}

/* Seal one key into a malloc'd "sealed:<base64>" string (not secret). */
static char *seal_key(const struct rkfs_seal *s, uint32_t number,
		      const unsigned char *key)
{
	uint8_t bin[SEALED_BIN_LEN], ad[sizeof(SEAL_AD) - 1 + 4];
	size_t b64len = sodium_base64_ENCODED_LEN(
		SEALED_BIN_LEN, sodium_base64_VARIANT_ORIGINAL);
	char *out = malloc(7 + b64len);

	if (out == NULL)
		return NULL;
	seal_ad(ad, number);
	randombytes_buf(bin, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
		bin + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL, key,
		RKFS_KEY_LEN, ad, sizeof(ad), NULL, bin, s->keys);
	memcpy(out, "sealed:", 7);
	sodium_bin2base64(out + 7, b64len, bin, sizeof(bin),
			  sodium_base64_VARIANT_ORIGINAL);
	return out;
}

static int unseal_key(unsigned char *key, const struct rkfs_seal *s,
		      uint32_t number, const char *text)
{
	uint8_t bin[SEALED_BIN_LEN], ad[sizeof(SEAL_AD) - 1 + 4];
	size_t binlen = 0;

	if (sodium_base642bin(bin, sizeof(bin), text, strlen(text), NULL,
			      &binlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != sizeof(bin))
		return -EINVAL;
	seal_ad(ad, number);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    key, NULL, NULL,
		    bin + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		    sizeof(bin) - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		    ad, sizeof(ad), bin, s->keys) != 0)
		return -EBADMSG;
	return 0;
}

/*
 * Derive (or take from the cache) the keys for s, asking the passphrase
 * source.  s->salt/ops/mem come from the file; s->pass_check holds the
 * recorded value on entry and is verified.
 */
static int seal_unlock(struct rkfs_seal *s, const char *name,
		       struct rkfs_error *err)
{
	uint8_t want[PASS_CHECK_LEN];
	struct rkfs_seal t = { 0 };
	char *pass;
	int ret;

	memcpy(want, s->pass_check, sizeof(want));
	pthread_mutex_lock(&seal_cache_lock);
	if (seal_cache.keys && seal_cache.ops == s->ops &&
	    seal_cache.mem == s->mem &&
	    sodium_memcmp(seal_cache.salt, s->salt, SALT_LEN) == 0 &&
	    sodium_memcmp(seal_cache.pass_check, want, PASS_CHECK_LEN) == 0) {
		s->keys = sodium_malloc(2 * RKFS_KEY_LEN);
		if (s->keys)
			memcpy(s->keys, seal_cache.keys, 2 * RKFS_KEY_LEN);
		pthread_mutex_unlock(&seal_cache_lock);
		return s->keys ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&seal_cache_lock);
	if (passphrase_fn == NULL && passphrase_ex_fn == NULL)
		return rkfs_error_set(err, -ENOKEY,
				      "%s: keyring is sealed with a passphrase "
				      "and no passphrase source was given",
				      name);
	pass = sodium_malloc(RKFS_PASSPHRASE_MAX);
	if (pass == NULL)
		return -ENOMEM;
	pass[0] = '\0';
	if (passphrase_ex_fn)
		ret = passphrase_ex_fn(pass, RKFS_PASSPHRASE_MAX, name, err,
				       passphrase_arg);
	else
		ret = passphrase_fn(pass, RKFS_PASSPHRASE_MAX, passphrase_arg);
	if (ret < 0) {
		rkfs_error_set(err, ret, "%s: cannot read the passphrase: %s",
			       name, strerror(-ret));
		goto out;
	}
	pass[RKFS_PASSPHRASE_MAX - 1] = '\0';
	ret = seal_derive(s, pass, strlen(pass));
	if (ret < 0) {
		rkfs_error_set(err, ret,
			       "%s: cannot derive the passphrase key (%zu "
			       "bytes of memory): %s",
			       name, s->mem, strerror(-ret));
		goto out;
	}
	if (sodium_memcmp(s->pass_check, want, PASS_CHECK_LEN) != 0) {
		sodium_free(s->keys);
		s->keys = NULL;
		ret = rkfs_error_set(err, -EACCES,
				     "%s: wrong passphrase for this sealed "
				     "keyring (or its kdf_ or pass_check "
				     "lines were edited)",
				     name);
		goto out;
	}
	t = *s;
	t.keys = sodium_malloc(2 * RKFS_KEY_LEN);
	if (t.keys) {
		memcpy(t.keys, s->keys, 2 * RKFS_KEY_LEN);
		pthread_mutex_lock(&seal_cache_lock);
		if (seal_cache.keys)
			sodium_free(seal_cache.keys);
		seal_cache = t;
		pthread_mutex_unlock(&seal_cache_lock);
	}
out:
	sodium_free(pass);
	return ret;
}

int rkfs_protect_process(void)
{
	struct rlimit rl = { 0, 0 };
	int ret = 0;

	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		ret = -errno;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 && ret == 0)
		ret = -errno;
	return ret;
}

/* Pages one sodium_malloc() region of a key occupies (and locks). */
static size_t lock_need(const struct rkfs_keyring *kr)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t regions = 8; /* seal keys, the seal cache, parser buffers */

	if (kr)
		regions += kr->count;
	return regions * page;
}

int rkfs_keyring_lock_check(const struct rkfs_keyring *kr,
			    struct rkfs_error *err)
{
	size_t need = lock_need(kr);
	struct rlimit rl = { 0, 0 };
	void *p;
	int ret = 0;

	/* A real attempt: root with CAP_IPC_LOCK passes whatever the limit. */
	p = mmap(NULL, need, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* The system calls themselves: sanitizers turn mlock() into a no-op. */
	if (syscall(SYS_mlock, p, need) < 0)
		ret = -errno;
	else
		syscall(SYS_munlock, p, need);
	munmap(p, need);
	if (ret == 0)
		return 0;
	getrlimit(RLIMIT_MEMLOCK, &rl);
	return rkfs_error_set(
		err, ret,
		"cannot lock key memory in RAM (%s; RLIMIT_MEMLOCK is %llu "
		"KiB, about %zu KiB are needed): keys may be written to swap. "
		"Raise the limit (ulimit -l, or LimitMEMLOCK= in a systemd "
		"unit) or run as root",
		strerror(-ret),
		rl.rlim_cur == RLIM_INFINITY ?
			0ULL :
			(unsigned long long)rl.rlim_cur / 1024,
		need / 1024);
}

int rkfs_keyring_relock(const struct rkfs_keyring *kr)
{
	int ret = 0;

	for (size_t i = 0; i < kr->count; i++)
		if (kr->gens[i].key &&
		    sodium_mlock(kr->gens[i].key, RKFS_KEY_LEN) < 0 && !ret)
			ret = -errno;
	if (kr->seal && kr->seal->keys &&
	    sodium_mlock(kr->seal->keys, 2 * RKFS_KEY_LEN) < 0 && !ret)
		ret = -errno;
	pthread_mutex_lock(&seal_cache_lock);
	if (seal_cache.keys &&
	    sodium_mlock(seal_cache.keys, 2 * RKFS_KEY_LEN) < 0 && !ret)
		ret = -errno;
	pthread_mutex_unlock(&seal_cache_lock);
	return ret;
}

const char *rkfs_gen_state_name(enum rkfs_gen_state s)
{
	switch (s) {
	case RKFS_GEN_ENABLED:
		return "enabled";
	case RKFS_GEN_DISABLED:
		return "disabled";
	case RKFS_GEN_DESTROYED:
		return "destroyed";
	}
	return "?";
}

void rkfs_wipe_stack(void)
{
	unsigned char pad[16384];

	sodium_memzero(pad, sizeof(pad));
	__asm__ __volatile__("" : : "r"(pad) : "memory");
}

static void gen_clear(struct rkfs_generation *g)
{
	free(g->created);
	free(g->key_file);
	free(g->key_command);
	free(g->sealed_text);
	if (g->key)
		sodium_free(g->key);
	memset(g, 0, sizeof(*g));
}

void rkfs_keyring_free(struct rkfs_keyring *kr)
{
	if (kr == NULL)
		return;
	for (size_t i = 0; i < kr->count; i++)
		gen_clear(&kr->gens[i]);
	free(kr->gens);
	free(kr->path);
	seal_free(kr->seal);
	free(kr);
}

struct rkfs_keyring *rkfs_keyring_new(void)
{
	struct rkfs_keyring *kr = calloc(1, sizeof(*kr));

	if (kr)
		kr->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
	return kr;
}

struct rkfs_generation *rkfs_keyring_find(const struct rkfs_keyring *kr,
					  uint32_t gen)
{
	for (size_t i = 0; i < kr->count; i++)
		if (kr->gens[i].number == gen)
			return &kr->gens[i];
	return NULL;
}

uint32_t rkfs_keyring_max_generation(const struct rkfs_keyring *kr)
{
	return kr->count ? kr->gens[kr->count - 1].number : 0;
}

const unsigned char *rkfs_keyring_key(const struct rkfs_keyring *kr,
				      uint32_t gen, int *err)
{
	const struct rkfs_generation *g = rkfs_keyring_find(kr, gen);

	*err = 0;
	if (g == NULL || g->state == RKFS_GEN_DESTROYED) {
		*err = -ENOKEY;
		return NULL;
	}
	if (g->state == RKFS_GEN_DISABLED) {
		*err = -EKEYREVOKED;
		return NULL;
	}
	if (g->key == NULL) {
		*err = -ENOKEY;
		return NULL;
	}
	return g->key;
}

/* ---- key text ---------------------------------------------------------- */

int rkfs_key_decode(unsigned char *key, const char *text, size_t len)
{
	const char *b64 = text;
	size_t b64len = len, binlen = 0;

	if (len == RKFS_KEY_LEN && memchr(text, '\n', len) == NULL &&
	    strncmp(text, "base64:", 7) != 0) {
		/* Raw bytes: only if it does not also look like base64 text. */
		size_t printable = 0;

		for (size_t i = 0; i < len; i++)
			printable += isprint((unsigned char)text[i]) != 0;
		if (printable != len) {
			memcpy(key, text, RKFS_KEY_LEN);
			return 0;
		}
	}
	while (b64len && isspace((unsigned char)b64[b64len - 1]))
		b64len--;
	while (b64len && isspace((unsigned char)*b64)) {
		b64++;
		b64len--;
	}
	if (b64len >= 7 && strncmp(b64, "base64:", 7) == 0) {
		b64 += 7;
		b64len -= 7;
	}
	if (b64len == 0)
		return -EINVAL;
	if (sodium_base642bin(key, RKFS_KEY_LEN, b64, b64len, NULL, &binlen,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != RKFS_KEY_LEN) {
		sodium_memzero(key, RKFS_KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

void rkfs_key_encode(char *out, size_t size, const unsigned char *key)
{
	char b64[sodium_base64_ENCODED_LEN(RKFS_KEY_LEN,
					   sodium_base64_VARIANT_ORIGINAL)];

	sodium_bin2base64(b64, sizeof(b64), key, RKFS_KEY_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, size, "base64:%s", b64);
	sodium_memzero(b64, sizeof(b64));
}

static char *resolve_path(const char *base_dir, const char *path)
{
	char *out;

	if (path[0] == '/' || base_dir == NULL)
		return strdup(path);
	if (asprintf(&out, "%s/%s", base_dir, path) < 0)
		return NULL;
	return out;
}

static int load_key_file(unsigned char *key, const struct rkfs_generation *g,
			 const char *name, const char *base_dir,
			 struct rkfs_error *err)
{
	char *path = resolve_path(base_dir, g->key_file);
	char *text = NULL, pfx[512];
	size_t len;
	int ret;

	if (path == NULL)
		return -ENOMEM;
	snprintf(pfx, sizeof(pfx), "%s:%u: generation %" PRIu32 ": ", name,
		 g->line, g->number);
	ret = rkfs_secret_read(&text, &len, path, KEY_TEXT_MAX, true,
			       RKFS_SECRET_PRIVATE, "key_file", pfx, err);
	if (ret < 0)
		goto out;
	ret = rkfs_key_decode(key, text, len);
	if (ret < 0)
		rkfs_error_set(err, -EINVAL,
			       "%s:%u: generation %" PRIu32
			       ": key_file %s must hold 32 raw bytes or one "
			       "base64 line encoding 32 bytes",
			       name, g->line, g->number, path);
out:
	if (text)
		sodium_free(text);
	free(path);
	return ret;
}

static long ms_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 +
	       (now.tv_nsec - start->tv_nsec) / 1000000;
}

/*
 * Wait for pid until deadline_ms after start; kill its process group when
 * the deadline passes.  Returns true if it had to be killed.
 */
static bool reap_or_kill(pid_t pid, int *status, const struct timespec *start,
			 long deadline_ms)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid || (r < 0 && errno != EINTR))
			return false;
		if (ms_since(start) >= deadline_ms)
			break;
		usleep(5000);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	return true;
}

/*
 * The environment of a key or passphrase command: PATH, HOME and LANG of
 * ours and nothing else, so that nothing the caller's environment holds
 * (LD_PRELOAD, IFS, ENV, BASH_ENV, secrets of other programs) reaches it.
 * Built before fork(): the child may only make async-signal-safe calls.
 */
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static void env_free(char **envp)
{
	for (size_t i = 0; envp[i]; i++)
		free(envp[i]);
}

static int env_build(char **envp, size_t n)
{
	static const char *const keep[] = { "PATH", "HOME", "LANG" };
	size_t used = 0;

	memset(envp, 0, n * sizeof(*envp));
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		const char *v = getenv(keep[i]);

		if (v == NULL && strcmp(keep[i], "PATH") == 0)
			v = SAFE_PATH;
		if (v == NULL)
			continue;
		if (asprintf(&envp[used], "%s=%s", keep[i], v) < 0) {
			envp[used] = NULL;
			env_free(envp);
			return -ENOMEM;
		}
		used++;
	}
	return 0;
}

int rkfs_run_secret_command(char *out, size_t size, size_t *used,
			    const char *cmd, long limit_ms, int *status)
{
	int pipefd[2], ret = 0;
	pid_t pid;
	struct timespec start;
	bool timed_out = false, too_long = false;
	char *argv[] = { (char *)"sh", (char *)"-c", (char *)cmd, NULL };
	char *envp[4];
	sigset_t none;

	*used = 0;
	*status = 0;
	if (env_build(envp, 4) < 0)
		return -ENOMEM;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		ret = -errno;
		env_free(envp);
		return ret;
	}
	sigemptyset(&none);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		env_free(envp);
		return ret;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		/*
		 * stdin from /dev/null, stdout to the pipe, stderr shared and
		 * nothing else; exec replaces the copy of our memory (and its
		 * keys) at once.  Only async-signal-safe calls until then:
		 * the daemon forks from a threaded process.
		 */
		if (devnull < 0 || dup2(devnull, 0) < 0 ||
		    dup2(pipefd[1], 1) < 0)
			_exit(127);
		closefrom(3);
		setpgid(0, 0);
		/* Whatever it writes (a fetched key, a log) is private. */
		umask(077);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve("/bin/sh", argv, envp);
		_exit(127);
	}
	env_free(envp);
	/* Also here, so that a kill of the group cannot miss the child. */
	setpgid(pid, pid);
	close(pipefd[1]);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
		long elapsed = ms_since(&start);
		ssize_t r;
		int n;

		if (elapsed >= limit_ms) {
			timed_out = true;
			break;
		}
		n = poll(&pfd, 1, (int)(limit_ms - elapsed));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			timed_out = n == 0;
			break;
		}
		r = read(pipefd[0], out + *used, size - 1 - *used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		*used += (size_t)r;
		if (*used == size - 1) {
			too_long = true;
			break;
		}
	}
	close(pipefd[0]);
	out[*used] = '\0';
	if (timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, status, 0) < 0 && errno == EINTR)
			;
	} else {
		/* Output is complete; the command still has to exit in time. */
		timed_out = reap_or_kill(pid, status, &start, limit_ms);
	}
	if (timed_out)
		return -ETIME;
	if (too_long)
		return -EFBIG;
	return 0;
}

static int run_key_command(unsigned char *key, const struct rkfs_generation *g,
			   const char *name, struct rkfs_error *err)
{
	int status = 0, ret;
	char *out;
	size_t used = 0;
	long limit = g->key_command_timeout ?
			     (long)g->key_command_timeout * 1000 :
			     RKFS_KEY_COMMAND_TIMEOUT_MS;

	out = sodium_malloc(KEY_TEXT_MAX + 1);
	if (out == NULL)
		return -ENOMEM;
	ret = rkfs_run_secret_command(out, KEY_TEXT_MAX + 1, &used,
				      g->key_command, limit, &status);
	if (ret == -ETIME) {
		rkfs_error_set(err, -ETIME,
			       "%s:%u: generation %" PRIu32
			       ": key_command timed out after %ld s "
			       "(key_command_timeout)",
			       name, g->line, g->number, limit / 1000);
	} else if (ret == -EFBIG) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%u: generation %" PRIu32
				     ": key_command printed more than %d bytes",
				     name, g->line, g->number, KEY_TEXT_MAX);
	} else if (ret < 0) {
		rkfs_error_set(err, ret,
			       "%s:%u: generation %" PRIu32
			       ": cannot run key_command: %s",
			       name, g->line, g->number, strerror(-ret));
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		ret = rkfs_error_set(
			err, -EINVAL,
			"%s:%u: generation %" PRIu32 ": key_command failed (%s %d)",
			name, g->line, g->number,
			WIFEXITED(status) ? "exit status" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	} else {
		ret = rkfs_key_decode(key, out, used);
		if (ret < 0)
			rkfs_error_set(err, -EINVAL,
				       "%s:%u: generation %" PRIu32
				       ": key_command must print 32 raw bytes "
				       "or one base64 line encoding 32 bytes",
				       name, g->line, g->number);
	}
	sodium_free(out);
	return ret;
}

int rkfs_keyring_load_key(struct rkfs_generation *g, const char *name,
			  const char *base_dir, struct rkfs_error *err)
{
	unsigned char *key;
	int ret;

	if (g->key)
		return 0;
	if (g->source != RKFS_KEY_FILE && g->source != RKFS_KEY_COMMAND)
		return -ENOKEY;
	key = sodium_malloc(RKFS_KEY_LEN);
	if (key == NULL)
		return -ENOMEM;
	if (g->source == RKFS_KEY_FILE)
		ret = load_key_file(key, g, name, base_dir, err);
	else
		ret = run_key_command(key, g, name, err);
	if (ret < 0) {
		sodium_free(key);
		return ret;
	}
	g->key = key;
	return 0;
}

/* ---- parsing ----------------------------------------------------------- */

struct parse_state {
	struct rkfs_keyring *kr;
	const char *name;
	struct rkfs_error *err;
	/* reader */
	const char *text;
	size_t len, pos;
	unsigned line;
	unsigned long_line; /* first line longer than inih accepts */
	unsigned section_line; /* line of the last [section] header */
	bool new_section;      /* a header was read since the last key */
	/* handler */
	char section[128];
	struct rkfs_generation *cur; /* current generation section */
	bool in_keyring;
	bool seen_keyring;
	bool failed;
	/* seen keys of the current section, to refuse duplicates */
	unsigned seen_mask;
	/* [keyring] sealing fields */
	unsigned keyring_line;
	unsigned flags;
	unsigned seal_seen; /* SEEN_* bits of the sealing fields */
	struct rkfs_seal seal;
	uint8_t mac[MAC_LEN];
};

static char *reader(char *str, int num, void *stream)
{
	struct parse_state *ps = stream;
	size_t n = 0;

	if (ps->pos >= ps->len)
		return NULL;
	ps->line++;
	while (ps->pos < ps->len) {
		char c = ps->text[ps->pos++];

		if (c == '\n')
			break;
		if (n + 1 < (size_t)num)
			str[n++] = c;
		else if (!ps->long_line)
			ps->long_line = ps->line;
	}
	str[n++] = '\n';
	if (n < (size_t)num)
		str[n] = '\0';
	else
		str[num - 1] = '\0';
	/* inih reports a section with its first key: remember the header. */
	for (size_t i = 0; i < n; i++) {
		if (str[i] == '[') {
			ps->section_line = ps->line;
			ps->new_section = true;
		}
		if (!isspace((unsigned char)str[i]))
			break;
	}
	return str;
}

#define FAIL(ps, code, ...)                                                   \
	do {                                                                  \
		if (!(ps)->failed) {                                          \
			rkfs_error_set((ps)->err, (code), __VA_ARGS__);       \
			(ps)->failed = true;                                  \
		}                                                             \
		return 0;                                                     \
	} while (0)

#define SECTION_LINE(ps) ((ps)->section_line ? (ps)->section_line : (ps)->line)

static int parse_u32(uint32_t *out, const char *s)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_hex(uint8_t *out, size_t outlen, const char *s)
{
	size_t binlen = 0;

	if (strlen(s) != outlen * 2 ||
	    sodium_hex2bin(out, outlen, s, strlen(s), NULL, &binlen, NULL) != 0 ||
	    binlen != outlen)
		return -EINVAL;
	return 0;
}

static int start_generation(struct parse_state *ps, const char *section)
{
	struct rkfs_keyring *kr = ps->kr;
	struct rkfs_generation *g, *grown;
	uint32_t number;

	if (parse_u32(&number, section + strlen("generation ")) < 0)
		FAIL(ps, -EINVAL,
		     "%s:%u: [%s]: generation numbers are whole numbers from 1 "
		     "to 4294967295",
		     ps->name, SECTION_LINE(ps), section);
	if (kr->count && kr->gens[0].number == 0)
		FAIL(ps, -EINVAL,
		     "%s:%u: [generation] without a number must be the "
		     "snippet's only section",
		     ps->name, SECTION_LINE(ps));
	if (rkfs_keyring_find(kr, number))
		FAIL(ps, -EINVAL, "%s:%u: [generation %" PRIu32 "] is listed twice",
		     ps->name, SECTION_LINE(ps), number);
	if (kr->count && kr->gens[kr->count - 1].number > number)
		FAIL(ps, -EINVAL,
		     "%s:%u: [generation %" PRIu32 "] comes after [generation %" PRIu32
		     "]: list generations in increasing order",
		     ps->name, SECTION_LINE(ps), number, kr->gens[kr->count - 1].number);
	grown = realloc(kr->gens, (kr->count + 1) * sizeof(*kr->gens));
	if (grown == NULL)
		FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	kr->gens = grown;
	g = &kr->gens[kr->count++];
	memset(g, 0, sizeof(*g));
	g->number = number;
	g->state = RKFS_GEN_ENABLED;
	g->line = ps->section_line ? ps->section_line : ps->line;
	ps->cur = g;
	return 1;
}

/* "[generation]" in a snippet: number 0, the caller picks the number. */
static int start_unnumbered(struct parse_state *ps)
{
	struct rkfs_keyring *kr = ps->kr;
	struct rkfs_generation *g;

	if (kr->count)
		FAIL(ps, -EINVAL,
		     "%s:%u: [generation] without a number must be the "
		     "snippet's only section",
		     ps->name, SECTION_LINE(ps));
	kr->gens = calloc(1, sizeof(*kr->gens));
	if (kr->gens == NULL)
		FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	g = &kr->gens[kr->count++];
	g->number = 0;
	g->state = RKFS_GEN_ENABLED;
	g->line = ps->section_line ? ps->section_line : ps->line;
	ps->cur = g;
	return 1;
}

enum {
	SEEN_STATE = 1,
	SEEN_CREATED = 2,
	SEEN_SOURCE = 4,
	SEEN_CHECK = 8,
	SEEN_PRIMARY = 16,
	SEEN_SEALED = 32,
	SEEN_SALT = 64,
	SEEN_OPS = 128,
	SEEN_MEM = 256,
	SEEN_PASS_CHECK = 512,
	SEEN_MAC = 1024,
	SEEN_TIMEOUT = 2048,
	SEEN_ALL_SEAL = SEEN_SEALED | SEEN_SALT | SEEN_OPS | SEEN_MEM |
			SEEN_PASS_CHECK | SEEN_MAC,
};

static int parse_ull(unsigned long long *out, const char *s)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

static int keyring_seal_field(struct parse_state *ps, const char *name,
			      const char *value)
{
	static const struct {
		const char *name;
		unsigned bit;
	} fields[] = {
		{ "sealed", SEEN_SEALED },   { "kdf_salt", SEEN_SALT },
		{ "kdf_ops", SEEN_OPS },     { "kdf_mem", SEEN_MEM },
		{ "pass_check", SEEN_PASS_CHECK }, { "mac", SEEN_MAC },
	};
	unsigned bit = 0;
	unsigned long long v;

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strcmp(name, fields[i].name) == 0)
			bit = fields[i].bit;
	if (bit == 0)
		FAIL(ps, -EINVAL,
		     "%s:%u: unknown key '%s' in [keyring] (expected primary, "
		     "sealed, kdf_salt, kdf_ops, kdf_mem, pass_check or mac)",
		     ps->name, ps->line, name);
	if (ps->seal_seen & bit)
		FAIL(ps, -EINVAL, "%s:%u: %s is set twice", ps->name, ps->line,
		     name);
	ps->seal_seen |= bit;
	switch (bit) {
	case SEEN_SEALED:
		if (strcmp(value, "argon2id") != 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: sealed must be argon2id, not '%s'",
			     ps->name, ps->line, value);
		break;
	case SEEN_SALT:
		if (parse_hex(ps->seal.salt, SALT_LEN, value) < 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: kdf_salt must be %d hex digits", ps->name,
			     ps->line, SALT_LEN * 2);
		break;
	case SEEN_OPS:
		if (parse_ull(&v, value) < 0 ||
		    v < crypto_pwhash_OPSLIMIT_MIN || v > KDF_OPS_MAX)
			FAIL(ps, -EINVAL,
			     "%s:%u: kdf_ops must be a number from %u to %llu",
			     ps->name, ps->line,
			     (unsigned)crypto_pwhash_OPSLIMIT_MIN, KDF_OPS_MAX);
		ps->seal.ops = v;
		break;
	case SEEN_MEM:
		if (parse_ull(&v, value) < 0 ||
		    v < crypto_pwhash_MEMLIMIT_MIN || v > KDF_MEM_MAX)
			FAIL(ps, -EINVAL,
			     "%s:%u: kdf_mem must be a byte count from %u to "
			     "%llu",
			     ps->name, ps->line,
			     (unsigned)crypto_pwhash_MEMLIMIT_MIN, KDF_MEM_MAX);
		ps->seal.mem = (size_t)v;
		break;
	case SEEN_PASS_CHECK:
		if (parse_hex(ps->seal.pass_check, PASS_CHECK_LEN, value) < 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: pass_check must be %d hex digits",
			     ps->name, ps->line, PASS_CHECK_LEN * 2);
		break;
	case SEEN_MAC:
		if (parse_hex(ps->mac, MAC_LEN, value) < 0)
			FAIL(ps, -EINVAL, "%s:%u: mac must be %d hex digits",
			     ps->name, ps->line, MAC_LEN * 2);
		break;
	}
	return 1;
}

static int set_source(struct parse_state *ps, struct rkfs_generation *g,
		      const char *name, const char *value)
{
	if (ps->seen_mask & SEEN_SOURCE)
		FAIL(ps, -EINVAL,
		     "%s:%u: generation %" PRIu32
		     ": give exactly one of key, key_file, key_command",
		     ps->name, ps->line, g->number);
	ps->seen_mask |= SEEN_SOURCE;
	if (*value == '\0')
		FAIL(ps, -EINVAL, "%s:%u: generation %" PRIu32 ": %s is empty",
		     ps->name, ps->line, g->number, name);
	if (strcmp(name, "key") == 0 && strncmp(value, "sealed:", 7) == 0) {
		g->source = RKFS_KEY_INLINE;
		g->sealed_text = strdup(value + 7);
		if (g->sealed_text == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	} else if (strcmp(name, "key") == 0) {
		g->source = RKFS_KEY_INLINE;
		if (strncmp(value, "base64:", 7) != 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": key must be written as base64:<44 characters>",
			     ps->name, ps->line, g->number);
		g->key = sodium_malloc(RKFS_KEY_LEN);
		if (g->key == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
		if (rkfs_key_decode(g->key, value, strlen(value)) < 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": key is not base64 of exactly 32 bytes",
			     ps->name, ps->line, g->number);
	} else if (strcmp(name, "key_file") == 0) {
		g->source = RKFS_KEY_FILE;
		g->key_file = strdup(value);
		if (g->key_file == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	} else {
		g->source = RKFS_KEY_COMMAND;
		g->key_command = strdup(value);
		if (g->key_command == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
	}
	return 1;
}

static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parse_state *ps = user;
	struct rkfs_generation *g;

	if (ps->failed)
		return 0;
	if (ps->new_section || strcmp(section, ps->section) != 0) {
		ps->new_section = false;
		/* inih calls us per key; a new section name means a new header.
		 * Empty sections are caught again after parsing. */
		snprintf(ps->section, sizeof(ps->section), "%s", section);
		ps->cur = NULL;
		ps->in_keyring = false;
		ps->seen_mask = 0;
		if (strcmp(section, "keyring") == 0 &&
		    (ps->flags & RKFS_KR_SNIPPET)) {
			FAIL(ps, -EINVAL,
			     "%s:%u: a generation snippet holds only "
			     "[generation N] sections, not [keyring]",
			     ps->name, SECTION_LINE(ps));
		} else if (strcmp(section, "keyring") == 0) {
			if (ps->seen_keyring)
				FAIL(ps, -EINVAL, "%s:%u: [keyring] is listed twice",
				     ps->name, SECTION_LINE(ps));
			ps->seen_keyring = true;
			ps->in_keyring = true;
			ps->keyring_line = SECTION_LINE(ps);
		} else if (strncmp(section, "generation ", 11) == 0) {
			if (!start_generation(ps, section))
				return 0;
		} else if (strcmp(section, "generation") == 0 &&
			   (ps->flags & RKFS_KR_UNNUMBERED)) {
			if (!start_unnumbered(ps))
				return 0;
		} else if (section[0] == '\0') {
			FAIL(ps, -EINVAL,
			     "%s:%u: '%s' is outside any section", ps->name,
			     ps->line, name);
		} else {
			FAIL(ps, -EINVAL,
			     "%s:%u: unknown section [%s] (expected [keyring] or "
			     "[generation N])",
			     ps->name, SECTION_LINE(ps), section);
		}
	}
	if (ps->in_keyring) {
		if (strcmp(name, "primary") == 0) {
			if (ps->seen_mask & SEEN_PRIMARY)
				FAIL(ps, -EINVAL, "%s:%u: primary is set twice",
				     ps->name, ps->line);
			ps->seen_mask |= SEEN_PRIMARY;
			if (parse_u32(&ps->kr->primary, value) < 0)
				FAIL(ps, -EINVAL,
				     "%s:%u: primary must be a generation number",
				     ps->name, ps->line);
			ps->kr->primary_explicit = true;
			ps->kr->primary_line = ps->line;
			return 1;
		}
		return keyring_seal_field(ps, name, value);
	}
	g = ps->cur;
	if (g == NULL)
		return 0;
	if (strcmp(name, "state") == 0) {
		if (ps->seen_mask & SEEN_STATE)
			FAIL(ps, -EINVAL, "%s:%u: state is set twice", ps->name,
			     ps->line);
		ps->seen_mask |= SEEN_STATE;
		if (strcmp(value, "enabled") == 0)
			g->state = RKFS_GEN_ENABLED;
		else if (strcmp(value, "disabled") == 0)
			g->state = RKFS_GEN_DISABLED;
		else if (strcmp(value, "destroyed") == 0)
			g->state = RKFS_GEN_DESTROYED;
		else
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": state must be enabled, disabled or destroyed, "
			     "not '%s'",
			     ps->name, ps->line, g->number, value);
		return 1;
	}
	if (strcmp(name, "created") == 0) {
		if (ps->seen_mask & SEEN_CREATED)
			FAIL(ps, -EINVAL, "%s:%u: created is set twice",
			     ps->name, ps->line);
		ps->seen_mask |= SEEN_CREATED;
		g->created = strdup(value);
		if (g->created == NULL)
			FAIL(ps, -ENOMEM, "%s: out of memory", ps->name);
		return 1;
	}
	if (strcmp(name, "key") == 0 || strcmp(name, "key_file") == 0 ||
	    strcmp(name, "key_command") == 0)
		return set_source(ps, g, name, value);
	if (strcmp(name, "key_command_timeout") == 0) {
		uint32_t t;

		if (ps->seen_mask & SEEN_TIMEOUT)
			FAIL(ps, -EINVAL,
			     "%s:%u: key_command_timeout is set twice",
			     ps->name, ps->line);
		ps->seen_mask |= SEEN_TIMEOUT;
		if (parse_u32(&t, value) < 0 || t > 3600)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": key_command_timeout must be 1 to 3600 seconds",
			     ps->name, ps->line, g->number);
		g->key_command_timeout = t;
		return 1;
	}
	if (strcmp(name, "check") == 0) {
		if (ps->seen_mask & SEEN_CHECK)
			FAIL(ps, -EINVAL, "%s:%u: check is set twice", ps->name,
			     ps->line);
		ps->seen_mask |= SEEN_CHECK;
		if (parse_hex(g->check, sizeof(g->check), value) < 0)
			FAIL(ps, -EINVAL,
			     "%s:%u: generation %" PRIu32
			     ": check must be %d hex digits",
			     ps->name, ps->line, g->number, RKFS_CHECK_LEN * 2);
		g->has_check = true;
		return 1;
	}
	FAIL(ps, -EINVAL,
	     "%s:%u: generation %" PRIu32 ": unknown key '%s' (expected state, "
	     "created, key, key_file, key_command, key_command_timeout or "
	     "check)",
	     ps->name, ps->line, g->number, name);
}

static int resolve_primary(struct rkfs_keyring *kr, const char *name,
			   struct rkfs_error *err)
{
	if (kr->primary_explicit) {
		struct rkfs_generation *g = rkfs_keyring_find(kr, kr->primary);

		if (g == NULL)
		{
			if (kr->primary_line)
				return rkfs_error_set(
					err, -EINVAL,
					"%s:%u: primary = %" PRIu32
					", but there is no [generation %" PRIu32
					"]",
					name, kr->primary_line, kr->primary,
					kr->primary);
			return rkfs_error_set(err, -EINVAL,
					      "%s: primary = %" PRIu32
					      ", but there is no [generation %" PRIu32
					      "]",
					      name, kr->primary, kr->primary);
		}
		if (g->state != RKFS_GEN_ENABLED)
			return rkfs_error_set(err, -EINVAL,
					      "%s:%u: primary generation %" PRIu32
					      " is %s; the primary must be enabled",
					      name, g->line, kr->primary,
					      rkfs_gen_state_name(g->state));
		return 0;
	}
	kr->primary = 0;
	for (size_t i = kr->count; i-- > 0;)
		if (kr->gens[i].state == RKFS_GEN_ENABLED) {
			kr->primary = kr->gens[i].number;
			return 0;
		}
	return rkfs_error_set(err, -EINVAL,
			      "%s: no enabled generation to encrypt with", name);
}

int rkfs_keyring_resolve_primary(struct rkfs_keyring *kr,
				 struct rkfs_error *err)
{
	return resolve_primary(kr, kr->path ? kr->path : "keyring", err);
}

static int validate(struct rkfs_keyring *kr, const char *name,
		    const char *base_dir, unsigned flags, struct rkfs_error *err)
{
	int ret;

	for (size_t i = 0; i < kr->count; i++) {
		struct rkfs_generation *g = &kr->gens[i];

		if (g->state == RKFS_GEN_DESTROYED) {
			if (g->source != RKFS_KEY_NONE)
				return rkfs_error_set(
					err, -EINVAL,
					"%s:%u: generation %" PRIu32
					" is destroyed but still names key "
					"material; remove it",
					name, g->line, g->number);
			continue;
		}
		if (g->source == RKFS_KEY_NONE)
			return rkfs_error_set(err, -EINVAL,
					      "%s:%u: generation %" PRIu32
					      " has no key, key_file or "
					      "key_command",
					      name, g->line, g->number);
		if (g->state == RKFS_GEN_DISABLED && g->source != RKFS_KEY_INLINE)
			continue;
		if ((flags & RKFS_KR_LOAD_KEYS) && g->state == RKFS_GEN_ENABLED) {
			ret = rkfs_keyring_load_key(g, name, base_dir, err);
			if (ret < 0)
				return ret;
		}
		if (g->key && g->has_check) {
			uint8_t cv[RKFS_CHECK_LEN];

			rkfs_crypt_check_value(cv, g->key);
			if (sodium_memcmp(cv, g->check, sizeof(cv)) != 0)
				return rkfs_error_set(
					err, -EKEYREJECTED,
					"%s:%u: generation %" PRIu32
					": the key does not match its check "
					"value; this is not the key that was "
					"recorded for this generation",
					name, g->line, g->number);
		}
	}
	if (flags & RKFS_KR_SNIPPET)
		return 0;
	if (kr->count == 0) {
		if (flags & RKFS_KR_ALLOW_EMPTY)
			return 0;
		return rkfs_error_set(err, -EINVAL,
				      "%s: no [generation N] sections", name);
	}
	return resolve_primary(kr, name, err);
}

/*
 * After parsing: a sealed keyring is unlocked, its mac verified and its
 * inline keys unsealed; an unsealed one must not hold sealed keys.
 */
static int open_sealed(struct parse_state *ps, struct rkfs_error *err)
{
	struct rkfs_keyring *kr = ps->kr;
	struct rkfs_seal *s;
	char **texts = NULL;
	uint8_t mac[MAC_LEN];
	int ret;

	if (ps->seal_seen == 0) {
		for (size_t i = 0; i < kr->count; i++)
			if (kr->gens[i].sealed_text)
				return rkfs_error_set(
					err, -EINVAL,
					"%s:%u: generation %" PRIu32
					" has a sealed key but [keyring] has "
					"no sealed = argon2id",
					ps->name, kr->gens[i].line,
					kr->gens[i].number);
		return 0;
	}
	if (ps->seal_seen != SEEN_ALL_SEAL)
		return rkfs_error_set(err, -EINVAL,
				      "%s:%u: a sealed keyring needs sealed, "
				      "kdf_salt, kdf_ops, kdf_mem, pass_check "
				      "and mac in [keyring]",
				      ps->name, ps->keyring_line);
	if (ps->flags & RKFS_KR_NO_UNSEAL) {
		kr->sealed = true;
		return 0;
	}
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];

		if (g->source == RKFS_KEY_INLINE && g->sealed_text == NULL)
			return rkfs_error_set(
				err, -EINVAL,
				"%s:%u: generation %" PRIu32
				" has a plain key in a sealed keyring; the "
				"keyring was modified outside rekeyfs-key",
				ps->name, g->line, g->number);
	}
	s = calloc(1, sizeof(*s));
	texts = calloc(kr->count + 1, sizeof(*texts));
	if (s == NULL || texts == NULL) {
		free(s);
		free(texts);
		return -ENOMEM;
	}
	*s = ps->seal;
	s->keys = NULL;
	ret = seal_unlock(s, ps->name, err);
	if (ret < 0)
		goto fail;
	for (size_t i = 0; i < kr->count; i++)
		if (kr->gens[i].source == RKFS_KEY_INLINE) {
			texts[i] = malloc(strlen(kr->gens[i].sealed_text) + 8);
			if (texts[i] == NULL) {
				ret = -ENOMEM;
				goto fail;
			}
			memcpy(texts[i], "sealed:", 7);
			strcpy(texts[i] + 7, kr->gens[i].sealed_text);
		}
	mac_compute(mac, kr, s, texts);
	if (sodium_memcmp(mac, ps->mac, MAC_LEN) != 0) {
		ret = rkfs_error_set(err, -EBADMSG,
				     "%s: the keyring was modified outside "
				     "rekeyfs-key (its mac does not match) or "
				     "the passphrase is wrong",
				     ps->name);
		goto fail;
	}
	for (size_t i = 0; i < kr->count; i++) {
		struct rkfs_generation *g = &kr->gens[i];

		if (g->source != RKFS_KEY_INLINE)
			continue;
		g->key = sodium_malloc(RKFS_KEY_LEN);
		if (g->key == NULL) {
			ret = -ENOMEM;
			goto fail;
		}
		if (unseal_key(g->key, s, g->number, g->sealed_text) < 0) {
			ret = rkfs_error_set(err, -EBADMSG,
					     "%s:%u: generation %" PRIu32
					     ": sealed key does not open; the "
					     "keyring was modified outside "
					     "rekeyfs-key",
					     ps->name, g->line, g->number);
			goto fail;
		}
		free(g->sealed_text);
		g->sealed_text = NULL;
	}
	kr->sealed = true;
	kr->seal = s;
	s = NULL;
	ret = 0;
fail:
	for (size_t i = 0; i < kr->count; i++)
		free(texts[i]);
	free(texts);
	seal_free(s);
	return ret;
}

int rkfs_keyring_parse(struct rkfs_keyring **out, const char *text,
		       size_t len, const char *name, const char *base_dir,
		       unsigned flags, struct rkfs_error *err)
{
	struct parse_state ps = { 0 };
	struct rkfs_keyring *kr;
	int line, ret;

	*out = NULL;
	kr = rkfs_keyring_new();
	if (kr == NULL)
		return -ENOMEM;
	ps.kr = kr;
	ps.flags = flags;
	ps.name = name;
	ps.err = err;
	ps.text = text;
	ps.len = len;
	if (memchr(text, '\0', len)) {
		ret = rkfs_error_set(err, -EINVAL, "%s: holds a NUL byte; not a "
						   "keyring", name);
		goto fail;
	}
	line = ini_parse_stream(reader, &ps, handler, &ps);
	rkfs_wipe_stack();
	if (ps.long_line && (line <= 0 || (unsigned)line >= ps.long_line)) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%u: line is longer than %d characters",
				     name, ps.long_line, INI_MAX_LINE - 2);
		goto fail;
	}
	if (ps.failed) {
		ret = -EINVAL;
		if (err && strstr(err->msg, "out of memory"))
			ret = -ENOMEM;
		goto fail;
	}
	if (line != 0) {
		ret = rkfs_error_set(err, -EINVAL,
				     "%s:%d: syntax error (expected [section] "
				     "or name = value)",
				     name, line);
		goto fail;
	}
	ret = open_sealed(&ps, err);
	if (ret < 0)
		goto fail;
	ret = validate(kr, name, base_dir, flags, err);
	if (ret < 0)
		goto fail;
	*out = kr;
	return 0;
fail:
	sodium_memzero(&ps.seal, sizeof(ps.seal));
	rkfs_keyring_free(kr);
	return ret;
}

int rkfs_keyring_load(struct rkfs_keyring **out, const char *path,
		      unsigned flags, struct rkfs_error *err)
{
	char *text = NULL, *dir = NULL, *base = NULL;
	size_t len;
	int ret;

	*out = NULL;
	if (flags & RKFS_KR_NO_MODE_CHECK) {
		ret = rkfs_read_small_file(&text, &len, AT_FDCWD, path,
					   KEYRING_MAX_SIZE, true);
		if (ret < 0)
			return rkfs_error_set(err, ret, "%s: %s", path,
					      strerror(-ret));
	} else {
		ret = rkfs_secret_read(&text, &len, path, KEYRING_MAX_SIZE,
				       true, RKFS_SECRET_PRIVATE, "keyring",
				       NULL, err);
		if (ret < 0)
			return ret;
	}
	ret = rkfs_path_split(&dir, &base, path);
	if (ret < 0)
		goto out;
	ret = rkfs_keyring_parse(out, text, len, path, dir, flags, err);
	if (ret == 0) {
		(*out)->path = strdup(path);
		if ((*out)->path == NULL) {
			rkfs_keyring_free(*out);
			*out = NULL;
			ret = -ENOMEM;
		}
	}
out:
	sodium_free(text);
	free(dir);
	free(base);
	return ret;
}

int rkfs_keyring_append(struct rkfs_keyring *kr, struct rkfs_generation *g,
			struct rkfs_error *err)
{
	struct rkfs_generation *grown;

	if (g->number == 0 || g->number <= rkfs_keyring_max_generation(kr))
		return rkfs_error_set(err, -EINVAL,
				      "generation %" PRIu32
				      " is not above the highest existing "
				      "generation %" PRIu32
				      "; numbers only grow",
				      g->number, rkfs_keyring_max_generation(kr));
	grown = realloc(kr->gens, (kr->count + 1) * sizeof(*kr->gens));
	if (grown == NULL)
		return -ENOMEM;
	kr->gens = grown;
	kr->gens[kr->count++] = *g;
	memset(g, 0, sizeof(*g));
	return 0;
}

/* ---- writing ----------------------------------------------------------- */

struct sbuf {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = true;
			return;
		}
		if ((size_t)n < sb->cap - sb->len) {
			sb->len += (size_t)n;
			return;
		}
		size_t ncap = (sb->cap + (size_t)n + 1) * 2;
		char *nbuf = sodium_malloc(ncap);

		if (nbuf == NULL) {
			sb->oom = true;
			return;
		}
		memcpy(nbuf, sb->buf, sb->len);
		sodium_free(sb->buf);
		sb->buf = nbuf;
		sb->cap = ncap;
	}
}

int rkfs_keyring_format(char **text, size_t *len,
			const struct rkfs_keyring *kr)
{
	struct sbuf sb = { 0 };
	char keytext[80], **texts = NULL;
	const struct rkfs_seal *s = kr->seal;
	int ret = -ENOMEM;

	*text = NULL;
	*len = 0;
	if (kr->sealed && (s == NULL || s->keys == NULL))
		return -ENOKEY;
	for (size_t i = 0; i < kr->count; i++)
		if (kr->gens[i].source == RKFS_KEY_INLINE &&
		    kr->gens[i].key == NULL)
			return -ENOKEY;
	if (kr->sealed) {
		texts = calloc(kr->count + 1, sizeof(*texts));
		if (texts == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < kr->count; i++) {
			const struct rkfs_generation *g = &kr->gens[i];

			if (g->source != RKFS_KEY_INLINE)
				continue;
			texts[i] = seal_key(s, g->number, g->key);
			if (texts[i] == NULL)
				goto out;
		}
	}
	sb.cap = 1024;
	sb.buf = sodium_malloc(sb.cap);
	if (sb.buf == NULL)
		goto out;
	sb_printf(&sb,
		  "# rekeyfs keyring: secret, keep at mode 0600.\n"
		  "# Managed by rekeyfs-key; edits by hand are fine but "
		  "comments are not kept.\n\n"
		  "[keyring]\n");
	if (kr->primary_explicit)
		sb_printf(&sb, "primary = %" PRIu32 "\n", kr->primary);
	if (kr->sealed) {
		char salt[SALT_LEN * 2 + 1], pc[PASS_CHECK_LEN * 2 + 1];
		char machex[MAC_LEN * 2 + 1];
		uint8_t mac[MAC_LEN];

		mac_compute(mac, kr, s, texts);
		sodium_bin2hex(salt, sizeof(salt), s->salt, SALT_LEN);
		sodium_bin2hex(pc, sizeof(pc), s->pass_check, PASS_CHECK_LEN);
		sodium_bin2hex(machex, sizeof(machex), mac, MAC_LEN);
		sb_printf(&sb,
			  "# Sealed: inline keys are encrypted under a key "
			  "derived from a passphrase,\n"
			  "# and the mac below authenticates everything; "
			  "edit only with rekeyfs-key.\n"
			  "sealed = argon2id\nkdf_salt = %s\nkdf_ops = %llu\n"
			  "kdf_mem = %zu\npass_check = %s\nmac = %s\n",
			  salt, s->ops, s->mem, pc, machex);
	}
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];

		sb_printf(&sb, "\n[generation %" PRIu32 "]\nstate = %s\n",
			  g->number, rkfs_gen_state_name(g->state));
		if (g->created)
			sb_printf(&sb, "created = %s\n", g->created);
		switch (g->source) {
		case RKFS_KEY_INLINE:
			if (texts) {
				sb_printf(&sb, "key = %s\n", texts[i]);
				break;
			}
			rkfs_key_encode(keytext, sizeof(keytext), g->key);
			sb_printf(&sb, "key = %s\n", keytext);
			sodium_memzero(keytext, sizeof(keytext));
			break;
		case RKFS_KEY_FILE:
			sb_printf(&sb, "key_file = %s\n", g->key_file);
			break;
		case RKFS_KEY_COMMAND:
			sb_printf(&sb, "key_command = %s\n", g->key_command);
			break;
		case RKFS_KEY_NONE:
			break;
		}
		if (g->key_command_timeout)
			sb_printf(&sb, "key_command_timeout = %u\n",
				  g->key_command_timeout);
		if (g->has_check) {
			char hex[RKFS_CHECK_LEN * 2 + 1];

			sodium_bin2hex(hex, sizeof(hex), g->check, RKFS_CHECK_LEN);
			sb_printf(&sb, "check = %s\n", hex);
		}
	}
	if (sb.oom) {
		sodium_free(sb.buf);
		goto out;
	}
	*text = sb.buf;
	*len = sb.len;
	ret = 0;
out:
	if (texts) {
		for (size_t i = 0; i < kr->count; i++)
			free(texts[i]);
		free(texts);
	}
	return ret;
}

/*
 * inih has no quoting: a value survives a write and a parse only if it has
 * no leading or trailing white space, no control characters, does not
 * start a comment (';' or '#') and holds no inline comment (white space
 * then ';' or '#'), and its line fits the parser's line limit.
 */
static const char *value_problem(const char *key, const char *v)
{
	size_t len = strlen(v);

	if (len == 0)
		return "is empty";
	if (strlen(key) + 3 + len > INI_MAX_LINE - 2)
		return "is too long for one keyring line";
	if (isspace((unsigned char)v[0]) || isspace((unsigned char)v[len - 1]))
		return "starts or ends with white space";
	if (v[0] == ';' || v[0] == '#')
		return "starts with ';' or '#', which begins a comment";
	for (size_t i = 0; i < len; i++) {
		if (iscntrl((unsigned char)v[i]))
			return "holds a control character (such as a newline)";
		if (i && isspace((unsigned char)v[i - 1]) &&
		    (v[i] == ';' || v[i] == '#'))
			return "holds white space followed by ';' or '#', "
			       "which begins a comment";
	}
	return NULL;
}

int rkfs_keyring_check_values(const struct rkfs_keyring *kr,
			      struct rkfs_error *err)
{
	for (size_t i = 0; i < kr->count; i++) {
		const struct rkfs_generation *g = &kr->gens[i];
		const struct {
			const char *key, *value;
		} f[] = {
			{ "created", g->created },
			{ "key_file", g->key_file },
			{ "key_command", g->key_command },
		};

		for (size_t j = 0; j < sizeof(f) / sizeof(f[0]); j++) {
			const char *why;

			if (f[j].value == NULL)
				continue;
			why = value_problem(f[j].key, f[j].value);
			if (why)
				return rkfs_error_set(
					err, -EINVAL,
					"generation %" PRIu32 ": %s %s; the "
					"keyring could not be read back "
					"(INI values have no quoting)",
					g->number, f[j].key, why);
		}
	}
	return 0;
}

/*
 * The new keyring gets the owner of the one it replaces before it takes its
 * place, so that root changing a keyring that a user's mount reads does not
 * lock that mount out.
 */
static int write_keyring(int dirfd, const char *name, const char *data,
			 size_t len, struct rkfs_error *err)
{
	struct stat old;

	if (fstatat(dirfd, name, &old, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(old.st_mode) &&
	    (old.st_uid != geteuid() || old.st_gid != getegid()))
		return rkfs_write_atomic_owned(dirfd, name, data, len, 0600,
					       old.st_uid, old.st_gid, err);
	return rkfs_write_atomic(dirfd, name, data, len, 0600, err);
}

int rkfs_keyring_save(const struct rkfs_keyring *kr, const char *path,
		      struct rkfs_error *err)
{
	char *text, *dir, *base;
	size_t len;
	int ret, dirfd;

	ret = rkfs_keyring_check_values(kr, err);
	if (ret < 0)
		return ret;
	ret = rkfs_keyring_format(&text, &len, kr);
	if (ret < 0)
		return rkfs_error_set(err, ret, "%s: cannot format keyring: %s",
				      path, strerror(-ret));
	ret = rkfs_path_split(&dir, &base, path);
	if (ret < 0)
		goto out_text;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = rkfs_error_set(err, -errno, "%s: %s", dir, strerror(errno));
		goto out_path;
	}
	ret = write_keyring(dirfd, base, text, len, err);
	close(dirfd);
out_path:
	free(dir);
	free(base);
out_text:
	sodium_free(text);
	return ret;
}
