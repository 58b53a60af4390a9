#!/usr/bin/env bats
# Passphrase-sealed keyrings: init --passphrase, protect, unprotect,
# passphrase sources, wrong passphrase, edits detected by the mac.

load helpers

setup() {
	rk_setup_tools
	K=$REKEYFS_KEY
	# cheap Argon2id for tests; the defaults are checked separately
	export REKEYFS_KDF_OPS=1 REKEYFS_KDF_MEM=8M
	PW=$RK_TMP/pass
	printf 'correct horse battery staple\n' > "$PW"
	chmod 600 "$PW"
	BAD=$RK_TMP/bad
	printf 'wrong horse\n' > "$BAD"
	chmod 600 "$BAD"
}

teardown() {
	rk_teardown
}

kv() {
	awk -v k="$1" '$1 == k { print $3; exit }' "$KR"
}

# fails STATUS CMD...: must fail with STATUS and leave the keyring as it was.
fails() {
	local want=$1
	shift
	cp -p "$KR" "$RK_TMP/kr.before"
	run "$@"
	echo "status $status: $output"
	[ "$status" -eq "$want" ]
	cmp "$KR" "$RK_TMP/kr.before"
}

# plain keys of an unsealed keyring
plain_keys() {
	awk '$1 == "key" { sub(/^base64:/, "", $3); print $3 }' "$1"
}

@test "init --passphrase seals: no plain key, all fields, mode 0600" {
	run "$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(stat -c %a "$KR")" = 600 ]
	[ "$(kv sealed)" = argon2id ]
	[ "$(kv kdf_ops)" = 1 ]
	[ "$(kv kdf_mem)" = 8388608 ]
	[ "$(kv kdf_salt | wc -c)" -eq 33 ]
	[ "$(kv mac | wc -c)" -eq 65 ]
	[[ "$(kv key)" == sealed:* ]]
	! grep -q 'base64:' "$KR" || false
	run "$K" list --json --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["sealed"] and d["primary"] == 1' "$output"
}

@test "a sealed keyring stays sealed through add, promote, disable, destroy" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	"$K" add --passphrase-file "$PW" --keyring "$KR"
	"$K" add --passphrase-file "$PW" --keyring "$KR"
	"$K" promote 3 --passphrase-file "$PW" --keyring "$KR"
	"$K" disable 2 --passphrase-file "$PW" --keyring "$KR"
	"$K" destroy 1 --force --passphrase-file "$PW" --keyring "$KR"
	[ "$(kv sealed)" = argon2id ]
	! grep -q 'base64:' "$KR" || false
	[ "$(grep -c '^key = sealed:' "$KR")" -eq 2 ]
	run "$K" list --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "${lines[1]}" =~ ^1\ +destroyed ]]
	[[ "${lines[2]}" =~ ^2\ +disabled ]]
	[[ "${lines[3]}" =~ ^3\ +enabled\ +yes ]]
	# keys survive: unprotect gives back the same check values
	local before
	before=$(awk '$1 == "check"' "$KR")
	"$K" unprotect --passphrase-file "$PW" --keyring "$KR"
	[ "$(awk '$1 == "check"' "$KR")" = "$before" ]
}

@test "wrong passphrase: clear error, exit 2, nothing changed" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	fails 2 "$K" add --passphrase-file "$BAD" --keyring "$KR"
	[[ "$output" == *"$KR: wrong passphrase"* ]]
	fails 2 "$K" list --passphrase-command "echo wrong" --keyring "$KR"
	[[ "$output" == *"wrong passphrase"* ]]
	! grep -q "wrong horse" <<<"$output" || false
}

@test "passphrase sources: command, failing command, unsafe file, none" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	run "$K" add --passphrase-command "cat $PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	fails 2 "$K" add --passphrase-command "exit 5" --keyring "$KR"
	[[ "$output" == *"passphrase command failed (exit status 5)"* ]]
	chmod 644 "$PW"
	fails 2 "$K" add --passphrase-file "$PW" --keyring "$KR"
	[[ "$output" == *"passphrase file $PW must be owned by uid 0 and not readable by group or others"* ]]
	chmod 600 "$PW"
	: > "$RK_TMP/empty"
	chmod 600 "$RK_TMP/empty"
	fails 2 "$K" add --passphrase-file "$RK_TMP/empty" --keyring "$KR"
	[[ "$output" == *"is empty"* ]]
	# no file, no command, no terminal
	fails 2 setsid -w "$K" add --keyring "$KR" </dev/null
	[[ "$output" == *"no terminal"*"--passphrase-file"* ]]
	fails 2 "$K" add --passphrase-file "$PW" --passphrase-command true --keyring "$KR"
	[[ "$output" == *"not both"* ]]
}

@test "edits of a sealed keyring are detected" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	"$K" add --passphrase-file "$PW" --keyring "$KR"
	"$K" add --passphrase-file "$PW" --keyring "$KR"
	cp -p "$KR" "$RK_TMP/orig"
	local edit
	for edit in 's/^primary = 1$/primary = 2/' \
		'0,/^state = enabled$/s//state = disabled/' \
		'/^created = /{y/0123456789/1234567890/}' \
		'/^check = /{s/^check = 0/check = 1/;t;s/^check = ./check = 0/}' \
		'/^kdf_ops = /s/1/2/'; do
		cp -p "$RK_TMP/orig" "$KR"
		sed -i "$edit" "$KR"
		# the edit must change something (a bare "! cmd" would not
		# fail the test)
		if cmp -s "$KR" "$RK_TMP/orig"; then
			echo "edit '$edit' changed nothing" >&2
			false
		fi
		fails 2 "$K" list --passphrase-file "$PW" --keyring "$KR"
		[[ "$output" == *"modified outside rekeyfs-key"* || "$output" == *"wrong passphrase"* ]]
	done
	# swap two sealed keys
	cp -p "$RK_TMP/orig" "$KR"
	local k1 k2
	k1=$(grep '^key = ' "$KR" | sed -n 1p)
	k2=$(grep '^key = ' "$KR" | sed -n 2p)
	awk -v a="$k1" -v b="$k2" '$0 == a { print b; next } $0 == b { print a; next } { print }' \
		"$RK_TMP/orig" > "$KR"
	fails 2 "$K" list --passphrase-file "$PW" --keyring "$KR"
	[[ "$output" == *"modified outside rekeyfs-key"* ]]
	# drop the last generation
	head -n -6 "$RK_TMP/orig" > "$KR"
	fails 2 "$K" list --passphrase-file "$PW" --keyring "$KR"
	[[ "$output" == *"modified outside rekeyfs-key"* ]]
	# add a plain generation by hand
	cp -p "$RK_TMP/orig" "$KR"
	printf '\n[generation 9]\nkey = %s\n' "$("$K" generate)" >> "$KR"
	fails 2 "$K" list --passphrase-file "$PW" --keyring "$KR"
	[[ "$output" == *"generation 9 has a plain key in a sealed keyring"* ]]
	# comments and blank lines are not meaning: still fine
	cp -p "$RK_TMP/orig" "$KR"
	printf '\n# a comment\n' >> "$KR"
	run "$K" list --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
}

@test "protect and unprotect an existing keyring; change the passphrase" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	local keys checks
	keys=$(plain_keys "$KR")
	checks=$(awk '$1 == "check"' "$KR")
	run "$K" protect --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	local k
	for k in $keys; do
		! grep -qF "$k" "$KR" || false
	done
	[ "$(awk '$1 == "check"' "$KR")" = "$checks" ]
	# change it: old from --passphrase-file, new from --new-passphrase-file
	printf 'second secret\n' > "$RK_TMP/pass2"
	chmod 600 "$RK_TMP/pass2"
	run "$K" protect --passphrase-file "$PW" --new-passphrase-file "$RK_TMP/pass2" --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"passphrase changed"* ]]
	fails 2 "$K" list --passphrase-file "$PW" --keyring "$KR"
	run "$K" unprotect --passphrase-file "$RK_TMP/pass2" --keyring "$KR"
	[ "$status" -eq 0 ]
	[ -z "$(kv sealed)" ]
	[ "$(plain_keys "$KR")" = "$keys" ]
	run "$K" list --keyring "$KR"
	[ "$status" -eq 0 ]
}

@test "unprotect with a wrong passphrase changes nothing" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	fails 2 "$K" unprotect --passphrase-file "$BAD" --keyring "$KR"
	[ "$(kv sealed)" = argon2id ]
}

@test "kdf parameters: options, defaults, range checks" {
	run "$K" init --passphrase --passphrase-file "$PW" --kdf-ops 2 --kdf-mem 16M --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(kv kdf_ops)" = 2 ]
	[ "$(kv kdf_mem)" = 16777216 ]
	run "$K" init --passphrase --passphrase-file "$PW" --kdf-mem 1K --keyring "$RK_TMP/kr2"
	[ "$status" -eq 2 ]
	[[ "$output" == *"kdf parameters out of range"* ]]
	[ ! -e "$RK_TMP/kr2" ]
	unset REKEYFS_KDF_OPS REKEYFS_KDF_MEM
	run "$K" init --passphrase --passphrase-file "$PW" --keyring "$RK_TMP/kr3"
	[ "$status" -eq 0 ]
	[ "$(awk '$1 == "kdf_ops" { print $3 }' "$RK_TMP/kr3")" = 3 ]
	[ "$(awk '$1 == "kdf_mem" { print $3 }' "$RK_TMP/kr3")" = 268435456 ]
	# a file claiming an absurd memory cost is refused with its line
	sed -i 's/^kdf_mem = .*/kdf_mem = 99999999999999/' "$KR"
	fails 2 "$K" list --passphrase-file "$PW" --keyring "$KR"
	[[ "$output" == *"$KR:$(grep -n '^kdf_mem' "$KR" | cut -d: -f1): kdf_mem must be a byte count"* ]]
}

@test "terminal prompt: no echo, asks twice for a new passphrase" {
	timeout 60 python3 - "$K" "$KR" <<'PY'
import os, pty, select, signal, sys, time

signal.alarm(50)

def read_until(fd, out, want, start):
    deadline = time.time() + 15
    while want not in out[start:] and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                return out
            if not chunk:
                return out
            out += chunk
    return out

def run(args, answers):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(args[0], args)
    out, start = b"", 0
    for a in answers:
        out = read_until(fd, out, b"assphrase: ", start)
        start = len(out)
        os.write(fd, a + b"\n")
    while True:
        r, _, _ = select.select([fd], [], [], 10)
        if not r:
            break
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode()

k, kr = sys.argv[1], sys.argv[2]
code, out = run([k, "init", "--passphrase", "--keyring", kr], [b"tty secret", b"tty secret"])
assert code == 0, out
assert "New passphrase:" in out and "Repeat the passphrase:" in out, out
assert "tty secret" not in out, out
code, out = run([k, "list", "--keyring", kr], [b"tty secret"])
assert code == 0 and "Passphrase for " in out and "tty secret" not in out, out
code, out = run([k, "list", "--keyring", kr], [b"nope"])
assert code == 2 and "wrong passphrase" in out, out
code, out = run([k, "init", "--passphrase", "--keyring", kr + ".2"], [b"one", b"two"])
assert code == 2 and "do not match" in out and not os.path.exists(kr + ".2"), out
PY
}

@test "add --from a snippet with an inline key into a sealed keyring seals it" {
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	local key
	key=$("$K" generate)
	printf '[generation 2]\nkey = %s\n' "$key" > "$RK_TMP/g2.ini"
	chmod 600 "$RK_TMP/g2.ini"
	run "$K" add --from "$RK_TMP/g2.ini" --passphrase-file "$PW" --keyring "$KR"
	[ "$status" -eq 0 ]
	! grep -qF "$key" "$KR" || false
	[ "$(grep -c '^key = sealed:' "$KR")" -eq 2 ]
	"$K" unprotect --passphrase-file "$PW" --keyring "$KR"
	grep -qF "key = $key" "$KR"
}

@test "mount and rekeyfs-rekey read the passphrase from a config file" {
	[ -x "$REKEYFS" ] && [ -c /dev/fuse ] || skip "needs the daemon and /dev/fuse"
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	printf '[mount]\nbacking = back\nmountpoint = mnt\nkeyring = vault.keyring\npassphrase_file = pass\n' \
		> "$RK_TMP/vault.conf"
	rk_mount_at "$BACK" "$MNT" --config "$RK_TMP/vault.conf"
	echo data > "$MNT/a"
	"$K" add --primary --config "$RK_TMP/vault.conf"
	rk_unmount
	[ "$(rk_header_gen "$BACK/a")" -eq 1 ]
	if [ -x "$REKEYFS_REKEY" ]; then
		run "$REKEYFS_REKEY" --config "$RK_TMP/vault.conf"
		echo "$output"
		[ "$status" -eq 0 ]
		[ "$(rk_header_gen "$BACK/a")" -eq 2 ]
	fi
	run "$K" check --config "$RK_TMP/vault.conf"
	[ "$status" -eq 0 ]
	rk_mount_at "$BACK" "$MNT" --config "$RK_TMP/vault.conf"
	[ "$(cat "$MNT/a")" = data ]
}

@test "the daemon asks for the passphrase on the terminal" {
	[ -x "$REKEYFS" ] && [ -c /dev/fuse ] || skip "needs the daemon and /dev/fuse"
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	"$REKEYFS" --init --passphrase-file "$PW" --keyring "$KR" "$BACK"
	timeout 60 python3 - "$REKEYFS" "$KR" "$BACK" "$MNT" <<'PY'
import os, pty, select, signal, sys, time
signal.alarm(50)
rk, kr, back, mnt = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execv(rk, [rk, "--keyring", kr, back, mnt])
out = b""
deadline = time.time() + 15
while b"assphrase" not in out and time.time() < deadline:
    if select.select([fd], [], [], 0.5)[0]:
        out += os.read(fd, 1024)
os.write(fd, b"correct horse battery staple\n")
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, out
assert b"battery" not in out, out
PY
	mountpoint -q "$MNT"
	echo hello > "$MNT/x"
	[ "$(cat "$MNT/x")" = hello ]
}

@test "rekeyfs-rekey takes --passphrase-file / --passphrase-command" {
	[ -x "$REKEYFS" ] && [ -c /dev/fuse ] || skip "needs the daemon and /dev/fuse"
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
	"$K" init --passphrase --passphrase-file "$PW" --keyring "$KR"
	rk_mount --passphrase-file "$PW"
	echo data > "$MNT/a"
	rk_unmount
	"$K" add --primary --passphrase-file "$PW" --keyring "$KR"
	run "$REKEYFS_REKEY" --passphrase-file "$BAD" --keyring "$KR" "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"wrong passphrase"* ]]
	[ "$(rk_header_gen "$BACK/a")" -eq 1 ]
	run "$REKEYFS_REKEY" --passphrase-command "cat $PW" --keyring "$KR" "$BACK"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(rk_header_gen "$BACK/a")" -eq 2 ]
}
