#!/usr/bin/env bats
# Whose files are trusted: the keyring, the mount config, passphrase files
# and key files follow one policy (no symbolic link, a regular file owned
# by the caller or root, nobody else may write it or its directories), and
# a tree that used a passphrase-sealed keyring refuses an unsealed one.

load helpers

setup() {
	rk_setup
	K=$REKEYFS_KEY
	export REKEYFS_KDF_OPS=1 REKEYFS_KDF_MEM=8M
	rk_keyring "$KR" "" 1
	PW=$RK_TMP/pass
	printf 'correct horse battery staple\n' > "$PW"
	chmod 600 "$PW"
}

teardown() {
	rk_teardown
}

# try ARGS...: run rekeyfs in the foreground; it must fail before mounting
try() {
	run timeout 10 "$REKEYFS" -f "$@"
	echo "status $status: $output"
	! mountpoint -q "$MNT" || false
}

@test "a 0600 keyring owned by another user is refused by root" {
	chown 1234 "$KR"
	run "$K" list --keyring "$KR"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"keyring $KR must be owned by uid 0"*"owner uid 1234"* ]]
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"owner uid 1234"* ]]
	[ ! -e "$BACK/.rekeyfs.conf" ]
}

@test "a symbolic link to the keyring is refused by the mount" {
	mv "$KR" "$RK_TMP/real.keyring"
	ln -s real.keyring "$KR"
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"symbolic link"* ]]
}

@test "a keyring in a directory others can write is refused" {
	mkdir -m 777 "$RK_TMP/open"
	cp -p "$KR" "$RK_TMP/open/vault.keyring"
	run "$K" list --keyring "$RK_TMP/open/vault.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"directory $RK_TMP/open"*"not writable by group or others"* ]]
	# a root-owned sticky directory (like /tmp) is fine
	chmod 1777 "$RK_TMP/open"
	run "$K" list --keyring "$RK_TMP/open/vault.keyring"
	[ "$status" -eq 0 ]
}

@test "the mount config is checked: owner, group/other write, symlink" {
	printf "[mount]\nkeyring = %s\nbacking = %s\nmountpoint = %s\n" "$KR" "$BACK" "$MNT" > "$RK_TMP/m.conf"
	chmod 644 "$RK_TMP/m.conf"
	run "$K" list --config "$RK_TMP/m.conf"
	[ "$status" -eq 0 ]
	chmod 664 "$RK_TMP/m.conf"
	run "$K" list --config "$RK_TMP/m.conf"
	[ "$status" -eq 2 ]
	[[ "$output" == *"config $RK_TMP/m.conf must be owned by uid 0 and not writable by group or others"* ]]
	try --config "$RK_TMP/m.conf"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not writable by group or others"* ]]
	chmod 644 "$RK_TMP/m.conf"
	chown 1234 "$RK_TMP/m.conf"
	run "$REKEYFS_REKEY" --status --config "$RK_TMP/m.conf"
	[ "$status" -eq 2 ]
	[[ "$output" == *"owner uid 1234"* ]]
	chown 0 "$RK_TMP/m.conf"
	ln -s m.conf "$RK_TMP/l.conf"
	run "$K" list --config "$RK_TMP/l.conf"
	[ "$status" -eq 2 ]
	[[ "$output" == *"symbolic link"* ]]
}

@test "passphrase files: no symlink, no NUL byte, no fifo hang" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$RK_TMP/s.keyring"
	ln -s pass "$RK_TMP/pass.link"
	run "$K" list --passphrase-file "$RK_TMP/pass.link" --keyring "$RK_TMP/s.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"passphrase file $RK_TMP/pass.link is a symbolic link"* ]]
	printf 'correct horse\0battery staple\n' > "$RK_TMP/nul"
	chmod 600 "$RK_TMP/nul"
	run "$K" list --passphrase-file "$RK_TMP/nul" --keyring "$RK_TMP/s.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"passphrase file $RK_TMP/nul holds a NUL byte"* ]]
	mkfifo -m 600 "$RK_TMP/fifo"
	run timeout 10 "$K" list --passphrase-file "$RK_TMP/fifo" --keyring "$RK_TMP/s.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"not a regular file"* ]]
	run "$K" list --passphrase-file "$PW" --keyring "$RK_TMP/s.keyring"
	[ "$status" -eq 0 ]
}

@test "a value that would not parse back is refused when written" {
	"$K" init --keyring "$RK_TMP/v.keyring"
	cp -p "$RK_TMP/v.keyring" "$RK_TMP/v.before"
	mkdir "$RK_TMP/we ;ird"
	"$K" generate > "$RK_TMP/we ;ird/g2.key"
	chmod 600 "$RK_TMP/we ;ird/g2.key"
	# a relative key_file is made absolute: the directory has " ;"
	printf '[generation 2]\nkey_file = g2.key\n' > "$RK_TMP/we ;ird/gen.ini"
	run "$K" add --from "$RK_TMP/we ;ird/gen.ini" --keyring "$RK_TMP/v.keyring"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"generation 2: key_file holds white space followed by ';' or '#'"* ]]
	cmp "$RK_TMP/v.keyring" "$RK_TMP/v.before"
	# '#' is not a comment inside a snippet value for inih, but would be
	# for other readers: refused as well
	printf '[generation 2]\ncreated = today #1\nkey_command = %s generate\n' "$K" > "$RK_TMP/gen.ini"
	run "$K" add --from "$RK_TMP/gen.ini" --keyring "$RK_TMP/v.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"generation 2: created holds white space followed by"* ]]
	cmp "$RK_TMP/v.keyring" "$RK_TMP/v.before"
	# the keyring still loads
	run "$K" list --keyring "$RK_TMP/v.keyring"
	[ "$status" -eq 0 ]
}

@test "--kdf-mem overflow is refused; weak Argon2id parameters warn" {
	run "$K" init --passphrase --passphrase-file "$PW" --kdf-mem 17179869184G --keyring "$RK_TMP/s.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"--kdf-mem: '17179869184G' is too large"* ]]
	[ ! -e "$RK_TMP/s.keyring" ]
	run "$K" init --passphrase --passphrase-file "$PW" --kdf-ops 1 --kdf-mem 8M --keyring "$RK_TMP/s.keyring"
	[ "$status" -eq 0 ]
	[[ "$output" == *"warning: Argon2id cost kdf_ops = 1, kdf_mem = 8388608 is below libsodium's interactive minimum"* ]]
	run "$K" init --passphrase --passphrase-file "$PW" --kdf-ops 2 --kdf-mem 64M --keyring "$RK_TMP/s2.keyring"
	[ "$status" -eq 0 ]
	[[ "$output" != *"warning"* ]]
}

@test "the tools disable core dumps and are not dumpable" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$RK_TMP/s.keyring"
	mkdir -m 700 "$RK_TMP/nb"
	cp "$RK_TMP/s.keyring" "$PW" "$RK_TMP/nb/"
	chown -R nobody "$RK_TMP/nb"
	# the passphrase command looks at its parent, the tool
	local probe="stat -c %u /proc/\$PPID/status > $RK_TMP/nb/owner; grep 'core file' /proc/\$PPID/limits > $RK_TMP/nb/core; cat $RK_TMP/nb/pass"
	run setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
		"$K" list --passphrase-command "$probe" --keyring "$RK_TMP/nb/s.keyring"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(awk '{ print $5, $6 }' "$RK_TMP/nb/core")" = "0 0" ]
	# not dumpable: /proc/PID/status belongs to root, not to the user
	[ "$(cat "$RK_TMP/nb/owner")" = 0 ]
}

@test "a tool that cannot lock key memory says so once" {
	mkdir -m 700 "$RK_TMP/nb"
	cp -p "$KR" "$RK_TMP/nb/k.keyring"
	chown -R nobody "$RK_TMP/nb"
	run prlimit --memlock=0:0 setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
		"$K" list --keyring "$RK_TMP/nb/k.keyring"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c 'cannot lock key memory' <<<"$output")" -eq 1 ]
	[[ "$output" == *"RLIMIT_MEMLOCK is 0 KiB"*"ulimit -l"* ]]
	# root (CAP_IPC_LOCK) is not limited
	run prlimit --memlock=0:0 "$K" list --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" != *"cannot lock"* ]]
}

@test "--help of the tools warns that --passphrase-command is visible to all" {
	run "$K" --help
	[[ "$output" == *"/proc/PID/cmdline"*"prefer"*"passphrase_command in the --config file"* ]]
	run "$REKEYFS_REKEY" --help
	[[ "$output" == *"/proc/PID/cmdline"*"passphrase_command"*"--config file"* ]]
}

wait_log() {
	local i n=${2:-1}
	for i in $(seq 1 100); do
		[ "$(grep -c -- "$1" "$LOG")" -ge "$n" ] && return 0
		sleep 0.05
	done
	echo "log never showed '$1':" >&2
	cat "$LOG" >&2
	return 1
}

# attacker_keyring FILE: what someone who can write the keyring but does
# not know the passphrase can write: generation 1 destroyed, their own
# inline key as generation 2, the primary.
attacker_keyring() {
	printf '[keyring]\nprimary = 2\n\n[generation 1]\nstate = destroyed\n\n[generation 2]\nstate = enabled\nkey = %s\n' \
		"$(rk_genkey)" > "$1"
	chmod 600 "$1"
}

@test "a tree that used a sealed keyring refuses an unsealed one" {
	rm "$KR"; "$K" init --passphrase --passphrase-file "$PW" --keyring "$KR" >/dev/null 2>&1
	rk_mount --passphrase-file "$PW"
	echo data > "$MNT/a"
	rk_unmount
	grep -qx 'keyring = sealed' "$BACK/.rekeyfs.conf"
	grep -q '^auth = ' "$BACK/.rekeyfs.conf"
	cp -p "$KR" "$RK_TMP/kr.sealed"
	attacker_keyring "$KR"
	# a fresh mount without any passphrase option
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"refusing the unsealed keyring $KR: this tree was used with a passphrase-sealed keyring"* ]]
	# the tools
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"refusing the unsealed keyring"* ]]
	run "$K" check --keyring "$KR" --source "$BACK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"refusing the unsealed keyring"* ]]
	# deleting the record from the tree does not help
	sed -i '/^keyring = sealed$/d' "$BACK/.rekeyfs.conf"
	try --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *".rekeyfs.conf was edited"* ]]
	run "$REKEYFS_REKEY" --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *".rekeyfs.conf was edited"* ]]
	# nothing was written under the attacker's key
	[ "$(rk_header_gen "$BACK/a")" -eq 1 ]
	# the real keyring still mounts once the record is back
	printf 'keyring = sealed\n' > "$RK_TMP/line"
	sed -i "/^id = /r $RK_TMP/line" "$BACK/.rekeyfs.conf"
	cp -p "$RK_TMP/kr.sealed" "$KR"
	rk_mount --passphrase-file "$PW"
	[ "$(cat "$MNT/a")" = data ]
}

@test "an intended switch to an unsealed keyring needs --allow-unsealed, logged" {
	rm "$KR"; "$K" init --passphrase --passphrase-file "$PW" --keyring "$KR" >/dev/null 2>&1
	rk_mount --passphrase-file "$PW"
	echo data > "$MNT/a"
	rk_unmount
	"$K" unprotect --passphrase-file "$PW" --keyring "$KR"
	run "$REKEYFS_REKEY" --status --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	run "$REKEYFS_REKEY" --allow-unsealed --verify --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"accepting the unsealed keyring $KR although the tree recorded a passphrase-sealed one (--allow-unsealed)"* ]]
	run "$K" check --allow-unsealed --keyring "$KR" --source "$BACK"
	[ "$status" -eq 0 ]
	[[ "$output" == *"--allow-unsealed"* ]]
}

@test "a mount or tool given a passphrase source refuses an unsealed keyring" {
	# KR is unsealed (setup); the tree has never seen a sealed one
	"$REKEYFS" --init --keyring "$KR" "$BACK"
	try --passphrase-file "$PW" --keyring "$KR" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"keyring is not sealed with a passphrase, but a passphrase source was given"* ]]
	run "$REKEYFS_REKEY" --passphrase-file "$PW" --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"a passphrase source was given"* ]]
	run "$K" add --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 1 ]
	[[ "$output" == *"a passphrase source was given"* ]]
	run "$K" add --passphrase-file "$PW" --allow-unsealed --keyring "$KR"
	[ "$status" -eq 0 ]
	# protect is how an unsealed keyring gets its passphrase
	run "$K" protect --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	run "$K" list --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
}

@test "a running mount keeps its sealed keyring when an unsealed one replaces it" {
	rm "$KR"; "$K" init --passphrase --passphrase-file "$PW" --keyring "$KR" >/dev/null 2>&1
	rk_mount --passphrase-file "$PW"
	echo before > "$MNT/a"
	attacker_keyring "$RK_TMP/evil"
	mv "$RK_TMP/evil" "$KR"
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keeping the old keyring"
	echo after > "$MNT/b"
	[ "$(rk_header_gen "$BACK/b")" -eq 1 ]
	[ "$(cat "$MNT/a")" = before ]
}
