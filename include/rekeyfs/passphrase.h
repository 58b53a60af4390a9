/*
 * Passphrase sources for sealed keyrings, shared by the daemon and the
 * tools: a file, a command, or a prompt on the controlling terminal.
 *
 *   file     the whole file is the passphrase, one trailing newline
 *            removed; it must be a regular file owned by the caller and
 *            not readable by group or others.  The name "-" is standard
 *            input, read to its end the first time it is needed and kept
 *            (in sodium_malloc() memory) until rkfs_passphrase_forget().
 *   command  "/bin/sh -c CMD" as for key_command (stdin /dev/null, no
 *            inherited descriptors, RKFS_PASSPHRASE_COMMAND_TIMEOUT_MS);
 *            its stdout, one trailing newline removed, is the passphrase.
 *   terminal /dev/tty with echo off; fails with -ENXIO when there is no
 *            controlling terminal.
 *
 * The passphrase never appears in messages.  Buffers handed out should be
 * sodium_malloc() memory of RKFS_PASSPHRASE_MAX bytes.
 */
#ifndef RKFS_PASSPHRASE_H
#define RKFS_PASSPHRASE_H

#include <stdbool.h>
#include <stddef.h>

#include "rekeyfs/error.h"

#define RKFS_PASSPHRASE_COMMAND_TIMEOUT_MS 60000

/*
 * Choose where passphrases come from (at most one of file and command;
 * both NULL: the terminal) and install that source for sealed keyrings
 * with rkfs_keyring_set_passphrase_source_ex().  The strings are copied.
 * A file or command also means a sealed keyring is expected:
 * rkfs_keyring_require_sealed() is set accordingly (see keyring.h).
 * Returns 0, -EINVAL (both given, with err) or -ENOMEM.
 */
int rkfs_passphrase_setup(const char *file, const char *command,
			  struct rkfs_error *err)
    __attribute__((warn_unused_result));

/*
 * Read a passphrase from the given source (file, command, or with both
 * NULL the terminal, showing prompt; with confirm the terminal asks twice
 * and the answers must match).  buf gets a NUL-terminated passphrase of at
 * least one byte.  Returns 0 or -errno with a message in err.
 */
int rkfs_passphrase_read(char *buf, size_t size, const char *file,
			 const char *command, const char *prompt, bool confirm,
			 struct rkfs_error *err)
    __attribute__((warn_unused_result, nonnull(1)));

/* Wipe a passphrase kept from standard input. */
void rkfs_passphrase_forget(void);

#endif /* RKFS_PASSPHRASE_H */
