#include "rekeyfs/passphrase.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "rekeyfs/fsio.h"
#include "rekeyfs/keyring.h"

static char *source_file;
static char *source_command;

static void strip_newline(char *buf, size_t *len)
{
	if (*len && buf[*len - 1] == '\n')
		buf[--*len] = '\0';
	if (*len && buf[*len - 1] == '\r')
		buf[--*len] = '\0';
}

/*
 * "-": standard input, read to its end once.  A run may need the same
 * passphrase twice (a check, then the unlock), so it is kept, in locked
 * memory, until rkfs_passphrase_forget().
 */
static char *stdin_pass;
static size_t stdin_len;

static int read_stdin(size_t max, struct rkfs_error *err)
{
	char *text = sodium_malloc(max + 1);
	size_t len = 0;

	if (text == NULL)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, text + len, max + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			sodium_free(text);
			return rkfs_error_set(err, -e,
					      "passphrase from standard input: "
					      "%s", strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			sodium_free(text);
			return rkfs_error_set(err, -EFBIG,
					      "passphrase from standard input: "
					      "longer than the passphrase "
					      "limit");
		}
	}
	text[len] = '\0';
	stdin_pass = text;
	stdin_len = len;
	return 0;
}

void rkfs_passphrase_forget(void)
{
	if (stdin_pass)
		sodium_free(stdin_pass);
	stdin_pass = NULL;
	stdin_len = 0;
}

static int from_file(char *buf, size_t size, const char *path,
		     struct rkfs_error *err)
{
	char *text = NULL;
	size_t len;
	int ret;

	if (strcmp(path, "-") == 0) {
		if (stdin_pass == NULL) {
			ret = read_stdin(size - 1, err);
			if (ret < 0)
				return ret;
		}
		len = stdin_len;
		if (memchr(stdin_pass, '\0', len))
			return rkfs_error_set(err, -EINVAL,
					      "the passphrase on standard "
					      "input holds a NUL byte");
		if (len + 1 > size)
			return -EFBIG;
		memcpy(buf, stdin_pass, len + 1);
		strip_newline(buf, &len);
		if (len == 0)
			return rkfs_error_set(err, -EINVAL,
					      "the passphrase on standard "
					      "input is empty");
		return 0;
	}
	ret = rkfs_secret_read(&text, &len, path, size - 1, true,
			       RKFS_SECRET_PRIVATE, "passphrase file", NULL,
			       err);
	if (ret == -EFBIG) {
		rkfs_error_clear(err);
		return rkfs_error_set(err, ret,
				      "passphrase file %s: longer than the "
				      "passphrase limit",
				      path);
	}
	if (ret < 0)
		return ret;
	/* A NUL would silently cut the passphrase short. */
	if (memchr(text, '\0', len)) {
		ret = rkfs_error_set(err, -EINVAL,
				     "passphrase file %s holds a NUL byte; a "
				     "passphrase is text without NUL bytes",
				     path);
		goto out;
	}
	strip_newline(text, &len);
	if (len == 0) {
		ret = rkfs_error_set(err, -EINVAL,
				     "passphrase file %s is empty", path);
		goto out;
	}
	memcpy(buf, text, len + 1);
out:
	sodium_free(text);
	return ret;
}

static int from_command(char *buf, size_t size, const char *cmd,
			struct rkfs_error *err)
{
	size_t used = 0;
	int status = 0, ret;

	ret = rkfs_run_secret_command(
	    buf, size, &used, cmd, RKFS_PASSPHRASE_COMMAND_TIMEOUT_MS, &status);
	if (ret == -ETIME)
		return rkfs_error_set(
		    err, ret, "passphrase command timed out after %d s",
		    RKFS_PASSPHRASE_COMMAND_TIMEOUT_MS / 1000);
	if (ret == -EFBIG)
		return rkfs_error_set(err, -EINVAL,
				      "passphrase command printed more than "
				      "%zu bytes",
				      size - 2);
	if (ret < 0)
		return rkfs_error_set(err, ret,
				      "cannot run the passphrase command: %s",
				      strerror(-ret));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		sodium_memzero(buf, size);
		return rkfs_error_set(
		    err, -EINVAL, "passphrase command failed (%s %d)",
		    WIFEXITED(status) ? "exit status" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
	strip_newline(buf, &used);
	if (used == 0 || strlen(buf) != used) {
		sodium_memzero(buf, size);
		return rkfs_error_set(err, -EINVAL,
				      "passphrase command printed %s",
				      used ? "a NUL byte" : "nothing");
	}
	return 0;
}

static volatile sig_atomic_t tty_signal;

static void on_tty_signal(int sig)
{
	tty_signal = sig;
}

/* One line from the terminal with echo off; 0, -EINTR or -errno. */
static int tty_line(int fd, char *buf, size_t size, const char *prompt)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
	struct sigaction sa = {.sa_handler = on_tty_signal}, old[5];
	struct termios t, saved;
	size_t n = 0;
	int ret = 0, have_term;
	char c;

	have_term = tcgetattr(fd, &saved) == 0;
	tty_signal = 0;
	for (size_t i = 0; i < 5; i++)
		sigaction(sigs[i], &sa, &old[i]);
	if (have_term) {
		t = saved;
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		t.c_lflag |= ICANON;
		tcsetattr(fd, TCSAFLUSH, &t);
	}
	ret = rkfs_write_all(fd, prompt, strlen(prompt));
	for (; ret == 0;) {
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR && !tty_signal)
			continue;
		if (r < 0) {
			ret = tty_signal ? -EINTR : -errno;
			break;
		}
		if (r == 0 || c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = '\0';
	c = 0;
	if (have_term)
		tcsetattr(fd, TCSAFLUSH, &saved);
	if (rkfs_write_all(fd, "\n", 1) < 0 && ret == 0)
		ret = -EIO;
	for (size_t i = 0; i < 5; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (tty_signal)
		raise(tty_signal);
	return ret;
}

static int from_tty(char *buf, size_t size, const char *prompt, bool confirm,
		    struct rkfs_error *err)
{
	char *again = NULL;
	int fd, ret;

	fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return rkfs_error_set(err, -ENXIO,
				      "no terminal to ask for the passphrase; "
				      "use --passphrase-file or "
				      "--passphrase-command");
	ret = tty_line(fd, buf, size, prompt ? prompt : "Passphrase: ");
	if (ret < 0) {
		rkfs_error_set(err, ret, "cannot read the passphrase: %s",
			       strerror(-ret));
		goto out;
	}
	if (buf[0] == '\0') {
		ret = rkfs_error_set(err, -EINVAL, "the passphrase is empty");
		goto out;
	}
	if (confirm) {
		again = sodium_malloc(size);
		if (again == NULL) {
			ret = -ENOMEM;
			goto out;
		}
		ret = tty_line(fd, again, size, "Repeat the passphrase: ");
		if (ret == 0 && (strlen(buf) != strlen(again) ||
				 sodium_memcmp(buf, again, strlen(buf)) != 0))
			ret = rkfs_error_set(err, -EINVAL,
					     "the passphrases do not match");
		else if (ret < 0)
			rkfs_error_set(err, ret,
				       "cannot read the passphrase: %s",
				       strerror(-ret));
		sodium_free(again);
	}
out:
	if (ret < 0)
		sodium_memzero(buf, size);
	close(fd);
	return ret;
}

int rkfs_passphrase_read(char *buf, size_t size, const char *file,
			 const char *command, const char *prompt, bool confirm,
			 struct rkfs_error *err)
{
	if (size < 2)
		return -EINVAL;
	buf[0] = '\0';
	if (file && command)
		return rkfs_error_set(err, -EINVAL,
				      "give a passphrase file or a passphrase "
				      "command, not both");
	if (file)
		return from_file(buf, size, file, err);
	if (command)
		return from_command(buf, size, command, err);
	return from_tty(buf, size, prompt, confirm, err);
}

static int keyring_source(char *buf, size_t size, const char *keyring,
			  struct rkfs_error *err, void *arg)
{
	char prompt[512];

	snprintf(prompt, sizeof(prompt),
		 "Passphrase for %s: ", keyring ? keyring : "the keyring");
	return rkfs_passphrase_read(buf, size, source_file, source_command,
				    prompt, false, err);
}

int rkfs_passphrase_setup(const char *file, const char *command,
			  struct rkfs_error *err)
{
	char *f = NULL, *c = NULL;

	if (file && command)
		return rkfs_error_set(err, -EINVAL,
				      "give a passphrase file or a passphrase "
				      "command, not both");
	if ((file && (f = strdup(file)) == NULL) ||
	    (command && (c = strdup(command)) == NULL)) {
		free(f);
		return -ENOMEM;
	}
	free(source_file);
	free(source_command);
	source_file = f;
	source_command = c;
	rkfs_keyring_set_passphrase_source_ex(keyring_source, NULL);
	/* Whoever configures a passphrase expects a sealed keyring. */
	rkfs_keyring_require_sealed(file || command);
	return 0;
}
