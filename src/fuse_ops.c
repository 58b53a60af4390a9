/*
 * The operations table of the low-level API, INIT and DESTROY, and the
 * hand-over of the mount state from fuse_main.c.
 *
 * No flush: the daemon has nothing to do at close(), and the first FLUSH
 * answered ENOSYS makes the kernel stop sending them, one round trip less
 * per close().  Data is written through on every write.
 */
#include "fuse_i.h"

#include <errno.h>
#include <unistd.h>

struct rkfs_mount_state *rkfs_ms;
struct fuse_session *rkfs_se;

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Ask for 1 MiB requests.  The kernel sets the mount's readahead
	 * to the smaller of max_readahead and what it is when the reply
	 * arrives (raised already, as root). */
	conn->max_write = 1U << 20;
	conn->max_readahead = RKFS_READAHEAD_KB * 1024U;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* Listings carry attributes: no LOOKUP and GETATTR per entry.  The
	 * kernel decides per directory (READDIRPLUS_AUTO, libfuse's
	 * default) whether a listing is followed by stats. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* Locks stay local to the kernel: the daemon's own flocks are the
	 * rekey protocol's, not the callers'. */
	conn->want &= ~(unsigned)(FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_POSIX_LOCKS);
	rkfs_io_setup(conn->proto_minor);
}

static void op_destroy(void *userdata)
{
	(void)userdata;
	rkfs_io_teardown();
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .access = op_access,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
};

const struct fuse_lowlevel_ops *rkfs_fs_operations(void)
{
	return &ops;
}

int rkfs_fs_setup(struct rkfs_mount_state *state, struct rkfs_keyring *kr)
{
	int ret;

	rkfs_ms = state;
	rkfs_ms->euid = geteuid();
	rkfs_ms->egid = getegid();
	rkfs_fs_keys_setup(kr);
	ret = rkfs_nodes_init(rkfs_ms->rootfd);
	return ret;
}

void rkfs_fs_teardown(void)
{
	rkfs_io_teardown();
	rkfs_nodes_clear();
	rkfs_fs_keys_teardown();
}
