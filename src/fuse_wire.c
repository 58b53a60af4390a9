/*
 * The daemon's end of the /dev/fuse channel, installed as libfuse custom
 * I/O.  Requests and replies pass through unchanged, with two additions
 * that libfuse 3.14 has no interface for (3.17 adds both as
 * FUSE_CAP_HANDLE_KILLPRIV_V2 and the kill flags of setattr/write/open;
 * with it this file goes):
 *
 *  - The INIT reply accepts FUSE_HANDLE_KILLPRIV_V2 when the kernel offers
 *    it.  Without it the kernel asks getxattr("security.capability")
 *    before every write to see whether there are privileges to drop: one
 *    extra round trip per write, half the cost of a small write.  With it
 *    the kernel marks the superblock SB_NOSEC, asks once per inode, and
 *    instead flags each write, truncate and O_TRUNC open by a caller
 *    without CAP_FSETID; the daemon then clears suid/sgid itself.  (The
 *    backing filesystem drops security.capability on the daemon's own
 *    writes, as it does for any writer.)
 *  - Those flags are kept, with the request's opcode and node id, for the
 *    thread that read it: the daemon's loop (fuse_loop.c) and libfuse's
 *    single-threaded one process a request on the thread that read it.
 *    The handler names the opcode and node it is serving, so a loop that
 *    ever handed a request to another thread would make the flags not
 *    match, and the daemon would fall back to asking the caller's
 *    capabilities, never clear bits for the wrong request.
 *
 * Splice is off on this channel (no splice hooks), so every request is
 * one read() into memory and every reply one writev().
 */
#include "fuse_i.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <linux/fuse.h>

/* Set by the read hook for the request this thread reads next. */
static __thread enum rkfs_kill req_kill;
static __thread uint32_t req_opcode;
static __thread uint64_t req_nodeid;

/* SETATTR bits that change an attribute. */
#define FATTR_CHANGES                                                     \
	(FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_ATIME |  \
	 FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW | FATTR_CTIME)

/*
 * INIT comes first and alone: the kernel sends nothing else until it has
 * the reply.  Atomics only because the reply may go out on a thread that
 * libfuse started meanwhile.
 */
static _Atomic uint64_t init_unique;
static atomic_bool init_pending;
static atomic_bool init_offers_v2;
static atomic_bool killpriv_v2;

enum rkfs_kill rkfs_wire_kill_suidgid(uint32_t op, fuse_ino_t nodeid)
{
	if (req_opcode != op || req_nodeid != nodeid) {
		/* Not the request this thread read: ask about the caller. */
		return killpriv_v2 && op != FUSE_SETATTR
			   ? RKFS_KILL_UNLESS_FSETID
			   : RKFS_KILL_NONE;
	}
	return req_kill;
}

/* The request body after its header, if at least len bytes long. */
static const void *body(const void *buf, ssize_t n, size_t len)
{
	if ((size_t)n < sizeof(struct fuse_in_header) + len)
		return NULL;
	return (const uint8_t *)buf + sizeof(struct fuse_in_header);
}

static void inspect(const void *buf, ssize_t n)
{
	const struct fuse_in_header *in = buf;
	const struct fuse_write_in *w;
	const struct fuse_setattr_in *sa;
	const struct fuse_open_in *o;
	const struct fuse_create_in *c;
	const struct fuse_init_in *init;

	req_kill = RKFS_KILL_NONE;
	req_opcode = 0;
	if ((size_t)n < sizeof(*in))
		return;
	req_opcode = in->opcode;
	req_nodeid = in->nodeid;
	switch (in->opcode) {
	case FUSE_WRITE:
		w = body(buf, n, sizeof(*w));
		if (w && (w->write_flags & FUSE_WRITE_KILL_SUIDGID))
			req_kill = RKFS_KILL_FLAGGED;
		break;
	case FUSE_SETATTR:
		/* A SETATTR that sets nothing is the kernel dropping
		 * privileges before a write: under v2 it no longer says
		 * which, nor whether the caller may keep them. */
		sa = body(buf, n, sizeof(*sa));
		if (sa && (sa->valid & FATTR_KILL_SUIDGID))
			req_kill = RKFS_KILL_FLAGGED;
		else if (sa && !(sa->valid & FATTR_CHANGES) && killpriv_v2)
			req_kill = RKFS_KILL_UNLESS_FSETID;
		break;
	case FUSE_OPEN:
		o = body(buf, n, sizeof(*o));
		if (o && (o->open_flags & FUSE_OPEN_KILL_SUIDGID))
			req_kill = RKFS_KILL_FLAGGED;
		break;
	case FUSE_CREATE:
		c = body(buf, n, sizeof(*c));
		if (c && (c->open_flags & FUSE_OPEN_KILL_SUIDGID))
			req_kill = RKFS_KILL_FLAGGED;
		break;
	case FUSE_INIT:
		/* major, minor, max_readahead, flags: the first 16 bytes */
		init = body(buf, n, offsetof(struct fuse_init_in, flags) +
					sizeof(init->flags));
		if (init && init->major == FUSE_KERNEL_VERSION) {
			init_unique = in->unique;
			init_pending = true;
			init_offers_v2 =
			    (init->flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
		}
		break;
	default:
		break;
	}
}

static ssize_t wire_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	if (n > 0) {
		inspect(buf, n);
		if ((size_t)n >= sizeof(struct fuse_in_header))
			rkfs_idle_touch(((const struct fuse_in_header *)buf)->opcode,
					((const struct fuse_in_header *)buf)->nodeid);
	}
	return n;
}

/*
 * The INIT reply, with FUSE_HANDLE_KILLPRIV_V2 added when the kernel
 * offered it.  Anything unexpected is sent as it is.
 */
static ssize_t send_init_reply(int fd, struct iovec *iov, int count)
{
	uint8_t msg[sizeof(struct fuse_out_header) +
		    sizeof(struct fuse_init_out)];
	const struct fuse_out_header *out = (const void *)msg;
	size_t len = 0, flags_at;
	uint32_t flags;
	int i;

	for (i = 0; i < count; i++) {
		if (iov[i].iov_len > sizeof(msg) - len)
			return writev(fd, iov, count);
		memcpy(msg + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	flags_at = sizeof(*out) + offsetof(struct fuse_init_out, flags);
	if (len < flags_at + sizeof(flags) || out->error != 0 ||
	    out->len != len)
		return write(fd, msg, len);
	memcpy(&flags, msg + flags_at, sizeof(flags));
	flags |= FUSE_HANDLE_KILLPRIV_V2;
	memcpy(msg + flags_at, &flags, sizeof(flags));
	killpriv_v2 = true;
	return write(fd, msg, len);
}

static ssize_t wire_writev(int fd, struct iovec *iov, int count,
			   void *userdata)
{
	const struct fuse_out_header *out;

	(void)userdata;
	if (count < 1 || iov[0].iov_len < sizeof(*out))
		return writev(fd, iov, count);
	out = iov[0].iov_base;
	/* a reply: its worker is about to be free, and counts so before
	 * the caller can ask again (a no-op for notifications, unique 0) */
	rkfs_loop_replying(out->unique);
	if (init_pending && out->unique == init_unique) {
		init_pending = false;
		if (init_offers_v2)
			return send_init_reply(fd, iov, count);
	}
	return writev(fd, iov, count);
}

int rkfs_wire_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
	    .read = wire_read,
	    .writev = wire_writev,
	};

	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
