/*
 * rekeyfs keyrings: numbered key generations in an INI file (inih).
 *
 *   [keyring]
 *   primary = 3                  ; optional; default: highest enabled
 *
 *   [generation 2]
 *   state = enabled              ; enabled | disabled | destroyed
 *   created = 2026-11-01T00:00:00Z
 *   key = base64:...             ; or key_file = PATH, or key_command = CMD
 *   check = 0123...              ; optional check value (hex), verified
 *   key_command_timeout = 10     ; optional, seconds (1..3600)
 *
 * Generations are listed in increasing order and numbers are never reused:
 * a destroyed generation stays as a tombstone with no key material.
 * Enabled generations decrypt; exactly one of them is primary and encrypts
 * all new data; disabled generations keep their key source but are never
 * used (their key is not even loaded).
 *
 * Key material lives in sodium_malloc() memory and is wiped by
 * rkfs_keyring_free().  No function here prints or logs key material.
 *
 * Passphrase-sealed keyrings.  [keyring] then also holds
 *
 *   sealed = argon2id            ; the only sealing scheme of version 1
 *   kdf_salt = <32 hex>          ; crypto_pwhash salt, new on every seal
 *   kdf_ops = 3                  ; crypto_pwhash opslimit (1..64)
 *   kdf_mem = 268435456          ; crypto_pwhash memlimit, bytes (8 KiB..4 GiB)
 *   pass_check = <32 hex>        ; tells a wrong passphrase from an edit
 *   mac = <64 hex>               ; authenticates the whole keyring
 *
 * and every inline key is written "key = sealed:<base64>" instead of
 * "key = base64:...".  From the passphrase P:
 *
 *   M       = Argon2id13(P, kdf_salt, kdf_ops, kdf_mem), 32 bytes
 *   K_enc   = crypto_kdf_derive_from_key(id 1, ctx "rkfskeyr", M)
 *   K_mac   = crypto_kdf_derive_from_key(id 2, ctx "rkfskeyr", M)
 *   pass_check = BLAKE2b-128(key = crypto_kdf(id 3, "rkfskeyr", M),
 *                            "rekeyfs keyring passphrase")
 *   sealed key = base64(nonce(24) || XChaCha20-Poly1305-IETF(K_enc, nonce,
 *                key(32), AD = "rekeyfs keyring key" || u32 BE number))
 *   mac = BLAKE2b-256(key = K_mac, canonical content)
 *
 * The canonical content is every parsed field except mac, each written as
 * u32 BE length || bytes: a version tag, kdf_salt, kdf_ops, kdf_mem,
 * pass_check, the explicit primary (0 if none), the number of generations,
 * then per generation its number, state, created, key source and value
 * (the sealed text for inline keys), key_command_timeout and check.
 * Comments and whitespace are not covered; any change of meaning (a state,
 * the primary, a key_file path, a dropped or added generation) fails the
 * mac.  key_file and key_command sources stay external: their
 * key material is not in the keyring, only their (authenticated) names.
 * Loading a sealed keyring asks the passphrase source (see
 * rkfs_keyring_set_passphrase_source_ex()); the derived keys are cached
 * per salt for the life of the process, so a daemon reload of a keyring
 * whose passphrase did not change does not ask again.
 */
#ifndef RKFS_KEYRING_H
#define RKFS_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rekeyfs/crypt.h"
#include "rekeyfs/error.h"

enum rkfs_gen_state {
	RKFS_GEN_ENABLED = 0,
	RKFS_GEN_DISABLED,
	RKFS_GEN_DESTROYED,
};

enum rkfs_key_source {
	RKFS_KEY_NONE = 0, /* destroyed */
	RKFS_KEY_INLINE,   /* key = base64:... */
	RKFS_KEY_FILE,     /* key_file = PATH */
	RKFS_KEY_COMMAND,  /* key_command = CMD */
};

struct rkfs_generation {
	uint32_t number;
	enum rkfs_gen_state state;
	enum rkfs_key_source source;
	char *created;     /* as written; may be NULL */
	char *key_file;    /* RKFS_KEY_FILE: the path as written */
	char *key_command; /* RKFS_KEY_COMMAND: the command as written */
	/*
	 * RKFS_KEY_LEN bytes in sodium_malloc() memory, or NULL when the key
	 * was not loaded (disabled, destroyed, or loaded without
	 * RKFS_KR_LOAD_KEYS).  RKFS_KEY_INLINE keys are always held here.
	 */
	unsigned char *key;
	bool has_check;
	uint8_t check[RKFS_CHECK_LEN];
	unsigned line; /* line of its [generation N] header, 0 if none */
	unsigned key_command_timeout; /* seconds; 0: the default */
	char *sealed_text; /* while parsing a sealed keyring; internal */
};

struct rkfs_seal; /* sealing parameters and derived keys; internal */

struct rkfs_keyring {
	char *path;           /* file it was loaded from; may be NULL */
	uint64_t serial;      /* unique per loaded keyring in this process */
	uint32_t primary;     /* effective primary generation, 0 if none */
	bool primary_explicit; /* "primary =" was written in [keyring] */
	unsigned primary_line; /* its line when parsed, else 0 */
	size_t count;
	struct rkfs_generation *gens; /* sorted by number, ascending */
	/* Passphrase sealing: see the top of this file. */
	bool sealed;
	struct rkfs_seal *seal; /* non-NULL when sealed and unlocked */
};

/* Load flags. */
#define RKFS_KR_LOAD_KEYS 0x1    /* resolve key_file / key_command now */
#define RKFS_KR_NO_MODE_CHECK 0x2 /* accept a group/world-readable file */
#define RKFS_KR_ALLOW_EMPTY 0x4  /* a keyring without generations is fine */
/*
 * A generation snippet (rekeyfs-key add --from): only [generation N]
 * sections ([keyring] is an error with its line), no primary is resolved,
 * and keys are not loaded.
 */
#define RKFS_KR_SNIPPET 0x8
/*
 * With RKFS_KR_SNIPPET: also accept one section "[generation]" without a
 * number (it must be the snippet's only section); it is returned with
 * number 0, for the caller to number.
 */
#define RKFS_KR_UNNUMBERED 0x10
/*
 * Read a sealed keyring without unlocking it: no passphrase is asked, the
 * mac is not verified and inline keys stay sealed (key NULL); sealed is
 * true and seal NULL.  Its states, primary and check values are then not
 * authenticated: for reports that need no key (rekeyfs-rekey --status).
 * Such a keyring cannot be saved (rkfs_keyring_format() fails -ENOKEY).
 * Unsealed keyrings load as usual.
 */
#define RKFS_KR_NO_UNSEAL 0x20

/*
 * Key command limits: the command runs as "/bin/sh -c CMD" with stdin from
 * /dev/null, no inherited descriptors beyond stderr, umask 077 and an
 * environment of PATH, HOME and LANG only (PATH defaults to a system path
 * when unset; nothing else is passed on), and must print the key
 * (32 raw bytes or one base64 line) and exit within the generation's
 * key_command_timeout, by default RKFS_KEY_COMMAND_TIMEOUT_MS; then its
 * whole process group is killed.  Output beyond 4 KiB is an error.
 */
#define RKFS_KEY_COMMAND_TIMEOUT_MS 10000

/*
 * Read a passphrase for a sealed keyring into buf (NUL-terminated).  Set
 * with rkfs_keyring_set_passphrase_source(); returns 0 or -errno.
 */
typedef int (*rkfs_passphrase_fn)(char *buf, size_t size, void *arg);
void rkfs_keyring_set_passphrase_source(rkfs_passphrase_fn fn, void *arg);

/*
 * Same with context: keyring names the keyring asked for (for a prompt),
 * and err receives a message when the passphrase cannot be read.  Replaces
 * any source set with rkfs_keyring_set_passphrase_source().  NULL fn: no
 * source (loading a sealed keyring then fails with -ENOKEY).
 */
typedef int (*rkfs_passphrase_ex_fn)(char *buf, size_t size,
				     const char *keyring,
				     struct rkfs_error *err, void *arg);
void rkfs_keyring_set_passphrase_source_ex(rkfs_passphrase_ex_fn fn,
					   void *arg);

#define RKFS_PASSPHRASE_MAX 1024 /* bytes, including the NUL */
#define RKFS_KDF_OPS_DEFAULT 3ULL /* crypto_pwhash_OPSLIMIT_MODERATE */
#define RKFS_KDF_MEM_DEFAULT (256UL << 20) /* ..._MEMLIMIT_MODERATE */

/*
 * Seal kr under passphrase pass (len bytes) with Argon2id parameters ops
 * and mem (0: the defaults): a fresh salt, and from now on
 * rkfs_keyring_format/save write it sealed.  Also re-seals an already
 * sealed keyring under a new passphrase.  Returns 0, -EINVAL (parameters
 * out of range, empty passphrase) or -ENOMEM, with err.
 */
int rkfs_keyring_seal(struct rkfs_keyring *kr, const char *pass, size_t len,
		      unsigned long long ops, size_t mem,
		      struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/*
 * The Argon2id parameters of a sealed keyring.  Returns 0, or -ENOENT if
 * kr is not sealed (or not unlocked).
 */
int rkfs_keyring_seal_params(const struct rkfs_keyring *kr,
			     unsigned long long *ops, size_t *mem)
	__attribute__((warn_unused_result, nonnull));

/* Drop the sealing: the keyring is written with plain inline keys again. */
void rkfs_keyring_unseal(struct rkfs_keyring *kr) __attribute__((nonnull));

/*
 * Downgrade protection.  A passphrase-sealed keyring cannot be replaced
 * by someone without the passphrase; an unsealed one can be written by
 * anyone who can write the file.  So an unsealed keyring is refused
 * (-EPERM) where a sealed one is expected:
 *   - by a process that was given a passphrase source (a file or a
 *     command: rkfs_passphrase_setup() calls
 *     rkfs_keyring_require_sealed(true));
 *   - for a tree that recorded a sealed keyring (see rekeyfs/meta.h;
 *     rkfs_meta_check() applies this);
 *   - by a running mount that loaded a sealed keyring
 *     (rkfs_keyring_check_downgrade(), whatever the flags).
 * rkfs_keyring_allow_unsealed(true) is the operator's explicit override
 * (--allow-unsealed) of the first two; each use is logged (LOG_WARNING).
 */
void rkfs_keyring_allow_unsealed(bool allow);
void rkfs_keyring_require_sealed(bool require);

/*
 * The first two rules for kr (tree_sealed: the tree's record; root names
 * the tree in messages, may be NULL).  Returns 0 (kr is sealed, nothing
 * requires it, or the override is set: logged) or -EPERM with a message.
 */
int rkfs_keyring_check_sealed(const struct rkfs_keyring *kr, bool tree_sealed,
			      const char *root, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1)));

/*
 * For a running mount's reload: may new replace old?  in_use lists the
 * n_in_use generations that files open in this mount still use (may be
 * NULL when 0).  Returns 0, or -EPERM with a message for the log when old
 * is sealed and new is not (never overridden), or when new lacks or
 * destroys a generation in in_use.  The caller keeps old on an error.
 */
int rkfs_keyring_check_downgrade(const struct rkfs_keyring *old,
				 const struct rkfs_keyring *new,
				 const uint32_t *in_use, size_t n_in_use,
				 struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/* Wipe the cache of derived passphrase keys (see the top of this file). */
void rkfs_keyring_forget_passphrases(void);

/*
 * Load and validate the keyring at path.  Refuses (-EPERM) a file that is
 * group- or world-readable unless RKFS_KR_NO_MODE_CHECK.  Errors carry
 * "path:line: what is wrong" in err and change nothing:
 *   -ENOENT/-EACCES  file cannot be read
 *   -EINVAL          syntax or validation error
 *   -EPERM           unsafe permissions (keyring or key_file)
 *   -EKEYREJECTED    a key does not match its recorded check value
 *   -ETIME           a key_command timed out
 *   -ENOKEY          sealed keyring and no passphrase source
 *   -EACCES          sealed keyring: wrong passphrase
 *   -EBADMSG         sealed keyring: modified outside rekeyfs-key
 * On success *out is owned by the caller: rkfs_keyring_free().
 */
int rkfs_keyring_load(struct rkfs_keyring **out, const char *path,
		      unsigned flags, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/*
 * Same, from text in memory; name is used in messages.  Relative key_file
 * paths are resolved against base_dir (NULL: the current directory).
 */
int rkfs_keyring_parse(struct rkfs_keyring **out, const char *text,
		       size_t len, const char *name, const char *base_dir,
		       unsigned flags, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2, 4)));

/* A new, empty keyring (no generations). */
struct rkfs_keyring *rkfs_keyring_new(void) __attribute__((warn_unused_result));

/*
 * Key of generation gen for use: returns RKFS_KEY_LEN bytes, or NULL with
 * *err set to -ENOKEY (no such generation, destroyed, or key not loaded)
 * or -EKEYREVOKED (disabled).
 */
const unsigned char *rkfs_keyring_key(const struct rkfs_keyring *kr,
				      uint32_t gen, int *err)
	__attribute__((nonnull));

/* The generation entry for gen, or NULL. */
struct rkfs_generation *rkfs_keyring_find(const struct rkfs_keyring *kr,
					  uint32_t gen) __attribute__((nonnull));

/* Highest generation number ever listed (tombstones count), 0 if none. */
uint32_t rkfs_keyring_max_generation(const struct rkfs_keyring *kr)
	__attribute__((nonnull));

/*
 * Recompute the effective primary (explicit one, else highest enabled).
 * Returns 0 or -EINVAL (with err) if the explicit primary is not an
 * enabled generation, or if no generation is enabled.
 */
int rkfs_keyring_resolve_primary(struct rkfs_keyring *kr,
				 struct rkfs_error *err)
	__attribute__((nonnull(1)));

/*
 * Append a generation (number must exceed every listed one) and take
 * ownership of g's strings and key.  Returns 0, -EINVAL or -ENOMEM.
 */
int rkfs_keyring_append(struct rkfs_keyring *kr, struct rkfs_generation *g,
			struct rkfs_error *err) __attribute__((nonnull(1, 2)));

/*
 * Serialise to INI text (malloc'd in sodium_malloc() memory because it may
 * hold inline keys; release with sodium_free()).  Returns 0 or -ENOMEM.
 */
int rkfs_keyring_format(char **text, size_t *len,
			const struct rkfs_keyring *kr)
	__attribute__((warn_unused_result, nonnull));

/*
 * Check that every free-text value (created, key_file, key_command) would
 * parse back unchanged: inih has no quoting, so a value with leading or
 * trailing white space, a control character (newline), a leading ';' or
 * '#', an inline " ;" or " #", or a line too long for the parser is
 * refused.  Returns 0 or -EINVAL with "generation N: FIELD ..." in err.
 * rkfs_keyring_save() calls it before writing anything.
 */
int rkfs_keyring_check_values(const struct rkfs_keyring *kr,
			      struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1)));

/*
 * Atomically write kr to path at mode 0600 (temp, fsync, rename, fsync of
 * the directory).  A keyring that exists keeps its owner and group (when
 * the caller may set them; otherwise the save fails and changes nothing).
 * A value that would not parse back is refused first (-EINVAL, see
 * rkfs_keyring_check_values()).
 */
int rkfs_keyring_save(const struct rkfs_keyring *kr, const char *path,
		      struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/* Resolve one key source into a fresh sodium_malloc()'d key (for tools). */
int rkfs_keyring_load_key(struct rkfs_generation *g, const char *name,
			  const char *base_dir, struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/*
 * Run "/bin/sh -c cmd" as for key_command and collect its stdout into out
 * (size bytes, NUL-terminated; *used excludes the NUL; out should be
 * sodium_malloc() memory).  Returns 0 (check *status, as from waitpid),
 * -ETIME if it did not finish within limit_ms (it is killed), -EFBIG if it
 * printed size - 1 bytes or more, or -errno.
 */
int rkfs_run_secret_command(char *out, size_t size, size_t *used,
			    const char *cmd, long limit_ms, int *status)
	__attribute__((warn_unused_result, nonnull));

/* Parse "base64:..." / raw-32-byte / one-base64-line key text. */
int rkfs_key_decode(unsigned char *key, const char *text, size_t len)
	__attribute__((warn_unused_result, nonnull));

/* Encode a key as "base64:..." into out (at least 64 bytes). */
void rkfs_key_encode(char *out, size_t size, const unsigned char *key)
	__attribute__((nonnull));

/*
 * What every process that holds keys does first: no core dumps
 * (RLIMIT_CORE 0) and not dumpable (PR_SET_DUMPABLE 0: no core, no
 * ptrace by other processes of the same user, /proc/PID owned by root).
 * Returns 0 or the first -errno.
 */
int rkfs_protect_process(void);

/*
 * Can this process lock key memory?  sodium_malloc() quietly carries on
 * when mlock() fails (RLIMIT_MEMLOCK, often 64 KiB or 8 MiB for users
 * without CAP_IPC_LOCK), leaving keys swappable.  Tries to lock about as
 * many pages as kr's keys and the sealing keys take (kr may be NULL).
 * Returns 0, or -errno with a message for the operator in err (say it
 * once, at start).
 */
int rkfs_keyring_lock_check(const struct rkfs_keyring *kr,
			    struct rkfs_error *err)
	__attribute__((warn_unused_result));

/*
 * Lock kr's secret regions again: generation keys, its sealing keys and
 * the cache of derived passphrase keys.  mlock() does not survive
 * fork(), so a daemon calls this after it daemonises.  Returns 0 or the
 * first -errno (the rest are still tried).
 */
int rkfs_keyring_relock(const struct rkfs_keyring *kr) __attribute__((nonnull));

/* Name of a state ("enabled"...). */
const char *rkfs_gen_state_name(enum rkfs_gen_state s);

/* Wipe every key, free everything.  NULL is fine. */
void rkfs_keyring_free(struct rkfs_keyring *kr);

/* Alias kept for the tools: wipe and free. */
static inline void rkfs_keyring_wipe(struct rkfs_keyring *kr)
{
	rkfs_keyring_free(kr);
}

/* Overwrite a chunk of stack so parser temporaries that held keys vanish. */
void rkfs_wipe_stack(void);

#endif /* RKFS_KEYRING_H */
