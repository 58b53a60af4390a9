/* Known violations for make lint's self-check: never compiled. */
#include "rekeyfs/format.h"

static void bad(int dfd, const char *name)
{
	struct stat st;

	openat(dfd, name, O_RDONLY);
	fstatat(dfd, name, &st, 0);
	fchmodat(dfd, name, 0600, 0);
	unlinkat(dfd, "a/b", 0);
	(void)RKFS_BLOCK_SIZE;
}
