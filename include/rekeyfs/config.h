/*
 * Mount configuration (no secrets): an INI file with one [mount] section,
 * read by rekeyfs --config and by the tools' --config.
 *
 *   [mount]
 *   backing = /srv/vault.enc        ; the encrypted backing directory
 *   mountpoint = /srv/vault         ; where the plaintext view appears
 *   keyring = /etc/rekeyfs/vault.keyring
 *   options = allow_other,default_permissions   ; FUSE -o options
 *   passphrase_file = /etc/rekeyfs/vault.pass   ; for a sealed keyring
 *   passphrase_command = ...                    ; alternative to the above
 *
 * Relative paths are taken relative to the config file's directory.
 */
#ifndef RKFS_CONFIG_H
#define RKFS_CONFIG_H

#include <stddef.h>

#include "rekeyfs/error.h"

struct rkfs_config {
	char *path; /* the file it came from */
	char *backing;
	char *mountpoint;
	char *keyring;
	char *options;
	char *passphrase_file;
	char *passphrase_command;
};

/*
 * Load a config file.  Errors name "file:line: what is wrong" (unknown
 * section or key, duplicate key, empty value) and return -EINVAL, or
 * -errno if the file cannot be read.  Missing keys are not an error here:
 * each caller checks what it needs.  Free with rkfs_config_free().
 */
int rkfs_config_load(struct rkfs_config **out, const char *path,
		     struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2)));

/*
 * Same, from len bytes of text in memory (need not be NUL-terminated);
 * name stands for the file in messages and in c->path, and relative paths
 * are taken relative to dir (NULL: kept as written).  Reads no file.
 */
int rkfs_config_parse(struct rkfs_config **out, const char *text,
		      size_t len, const char *name, const char *dir,
		      struct rkfs_error *err)
	__attribute__((warn_unused_result, nonnull(1, 2, 4)));

void rkfs_config_free(struct rkfs_config *c);

#endif /* RKFS_CONFIG_H */
