/*
 * libFuzzer harness: the mount configuration parser, from memory
 * (rkfs_config_parse()): no file is read, and nothing it names (keyring,
 * passphrase_file, passphrase_command) is opened or run.  What parses
 * must keep the promises of rekeyfs/config.h: no empty value, and every
 * path absolute once made relative to the config's directory.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "rekeyfs/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_log();
	return 0;
}

static void path_ok(const char *p)
{
	FUZZ_CHECK(p == NULL || p[0] == '/');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rkfs_error err = { 0 };
	struct rkfs_config *c;
	int ret;

	ret = rkfs_config_parse(&c, (const char *)data, size,
				"/etc/rekeyfs/fuzz.conf", "/etc/rekeyfs", &err);
	if (ret != 0) {
		FUZZ_CHECK(ret == -EINVAL && c == NULL && err.msg[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(strcmp(c->path, "/etc/rekeyfs/fuzz.conf") == 0);
	path_ok(c->backing);
	path_ok(c->mountpoint);
	path_ok(c->keyring);
	path_ok(c->passphrase_file);
	FUZZ_CHECK(c->options == NULL || c->options[0] != '\0');
	FUZZ_CHECK(c->passphrase_command == NULL ||
		   c->passphrase_command[0] != '\0');
	rkfs_config_free(c);
	return 0;
}
