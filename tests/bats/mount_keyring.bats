#!/usr/bin/env bats
# rekeyfs mount: keyring reload (SIGHUP and file changes), failed reloads,
# disabled and missing generations.

load helpers

PY=/usr/bin/python3

setup() {
	rk_setup
	rk_keyring "$KR" "" 1
	rk_mount
}

teardown() {
	rk_teardown
}

# set_state N STATE: change generation N's state in place
set_state() {
	"$PY" - "$KR" "$1" "$2" <<'EOF'
import os, re, sys
path, gen, state = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
parts = re.split(r"(?m)^(?=\[)", text)
for i, p in enumerate(parts):
    if p.startswith("[generation %s]" % gen):
        parts[i] = re.sub(r"(?m)^state = \w+", "state = " + state, p)
tmp = path + ".new"
with open(tmp, "w") as f:
    f.write("".join(parts))
os.chmod(tmp, 0o600)
os.rename(tmp, path)
EOF
}

# wait_log PATTERN [COUNT]: wait (bounded) until LOG has COUNT lines matching
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

@test "SIGHUP reload: new files use the new primary, both generations read" {
	echo "first file" > "$MNT/A"
	rk_add_gen 2
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keyring reloaded (SIGHUP)"
	echo "second file" > "$MNT/B"
	[ "$(rk_header_gen "$BACK/A")" -eq 1 ]
	[ "$(rk_header_gen "$BACK/B")" -eq 2 ]
	rk_unmount
	rk_mount
	[ "$(cat "$MNT/A")" = "first file" ]
	[ "$(cat "$MNT/B")" = "second file" ]
	# the new generation was recorded in the metadata
	grep -q '^\[generation 2\]' "$BACK/.rekeyfs.conf"
	# a partial write keeps the old file's generation; truncate to zero
	# moves it to the primary
	printf 'X' | dd of="$MNT/A" bs=1 seek=2 conv=notrunc status=none
	[ "$(rk_header_gen "$BACK/A")" -eq 1 ]
	[ "$(cat "$MNT/A")" = "fiXst file" ]
	echo rewritten > "$MNT/A"
	[ "$(rk_header_gen "$BACK/A")" -eq 2 ]
}

@test "a keyring replaced by rename is picked up without a signal" {
	echo one > "$MNT/A"
	cp "$KR" "$RK_TMP/kr.new"
	printf '\n[generation 2]\nstate = enabled\nkey = %s\n' "$(rk_genkey)" >> "$RK_TMP/kr.new"
	chmod 600 "$RK_TMP/kr.new"
	mv "$RK_TMP/kr.new" "$KR"
	wait_log "keyring reloaded (keyring file changed): primary generation 2"
	echo two > "$MNT/B"
	[ "$(rk_header_gen "$BACK/B")" -eq 2 ]
	[ "$(cat "$MNT/A")" = one ]
}

@test "promote while writing: every operation succeeds across the switch" {
	rk_add_gen 2
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keyring reloaded"
	# a writer keeps going while generation 3 arrives and becomes primary
	"$PY" - "$MNT" <<'EOF' &
import os, sys
mnt = sys.argv[1]
for i in range(300):
    p = "%s/w%d" % (mnt, i % 30)
    with open(p, "wb") as f:
        f.write(b"x" * 5000)
    with open(p, "rb") as f:
        assert f.read() == b"x" * 5000
EOF
	writer=$!
	cp "$KR" "$RK_TMP/kr.new"
	printf '\n[generation 3]\nstate = enabled\nkey = %s\n' "$(rk_genkey)" >> "$RK_TMP/kr.new"
	chmod 600 "$RK_TMP/kr.new"
	mv "$RK_TMP/kr.new" "$KR"
	wait "$writer"
	wait_log "primary generation 3"
	echo z > "$MNT/last"
	[ "$(rk_header_gen "$BACK/last")" -eq 3 ]
	! grep -q "failed" "$LOG" || false
	! grep -q "Input/output" "$LOG" || false
}

@test "a failed reload keeps the old keyring and logs file:line" {
	echo before > "$MNT/A"
	cp "$KR" "$RK_TMP/kr.good"
	printf '\n[generation two]\nstate = enabled\n' >> "$KR"
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keyring reload (SIGHUP) failed, keeping the old keyring"
	grep -E "failed, keeping the old keyring: .*vault.keyring:[0-9]+:" "$LOG"
	echo after > "$MNT/B"
	[ "$(rk_header_gen "$BACK/B")" -eq 1 ]
	[ "$(cat "$MNT/A")" = before ]
	# a keyring with a different key for generation 1 is refused too
	rk_keyring "$KR" "" 1
	kill -HUP "$(rk_daemon_pid)"
	wait_log "generation 1 is not the key"
	[ "$(cat "$MNT/B")" = after ]
	# a world-readable keyring is refused
	cp "$RK_TMP/kr.good" "$KR"
	chmod 644 "$KR"
	kill -HUP "$(rk_daemon_pid)"
	wait_log "failed, keeping the old keyring" 3
	[ "$(cat "$MNT/A")" = before ]
}

@test "disabled generation: EIO and a log line, nothing modified, re-enable restores" {
	echo "gen one data" > "$MNT/A"
	rk_add_gen 2
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keyring reloaded"
	echo "gen two data" > "$MNT/B"
	cp "$BACK/A" "$RK_TMP/A.before"
	# an open descriptor that has not read yet
	exec 5< "$MNT/A"
	set_state 1 disabled
	wait_log "keyring reloaded (keyring file changed)" 1
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keyring reloaded (SIGHUP)" 2
	run cat "$MNT/A"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
	grep -q "A: generation 1 is disabled in the keyring" "$LOG"
	run "$PY" -c 'import os; os.pread(5, 100, 0)'
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
	# writes fail too and change nothing
	run sh -c "echo more >> '$MNT/A'"
	[ "$status" -ne 0 ]
	run truncate -s 3 "$MNT/A"
	[ "$status" -ne 0 ]
	cmp "$RK_TMP/A.before" "$BACK/A"
	# other files keep working
	[ "$(cat "$MNT/B")" = "gen two data" ]
	set_state 1 enabled
	kill -HUP "$(rk_daemon_pid)"
	wait_log "keyring reloaded (SIGHUP)" 3
	[ "$(cat "$MNT/A")" = "gen one data" ]
	[ "$("$PY" -c 'import os; print(os.pread(5, 100, 0).decode(), end="")')" = "gen one data" ]
	exec 5<&-
}

@test "a generation missing from the keyring reads as EIO naming it" {
	echo data > "$MNT/A"
	rk_unmount
	# rewrite the header's generation to 7 (not in the keyring): the
	# header is authenticated, so this must never decrypt
	printf '\x00\x00\x00\x07' | dd of="$BACK/A" bs=1 seek=8 conv=notrunc status=none
	rk_mount
	run cat "$MNT/A"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
	grep -q "A: generation 7 is not in the keyring" "$LOG"
	# logged once per node, not once per read
	cat "$MNT/A" 2>/dev/null || true
	[ "$(grep -c "generation 7" "$LOG")" -eq 1 ]
}

@test "corrupt blocks read as EIO with the block number; other files fine" {
	head -c 20000 /dev/urandom > "$MNT/A"
	echo ok > "$MNT/B"
	rk_unmount
	# flip one bit in block 2
	off=$((32 + 2 * 4136 + 100))
	b=$(od -An -tu1 -j "$off" -N1 "$BACK/A" | tr -d ' ')
	printf "\\$(printf %03o $((b ^ 1)))" | dd of="$BACK/A" bs=1 seek="$off" conv=notrunc status=none
	rk_mount
	run cat "$MNT/A"
	[ "$status" -ne 0 ]
	grep -q "A: block 2 fails authentication" "$LOG"
	# blocks before it still read
	[ "$(dd if="$MNT/A" bs=4096 count=2 status=none | wc -c)" -eq 8192 ]
	[ "$(cat "$MNT/B")" = ok ]
	# an impossible size reads as EIO but can be listed and removed
	head -c 5 /dev/zero >> "$BACK/B"
	run cat "$MNT/B"
	[ "$status" -ne 0 ]
	ls -l "$MNT/B"
	rm "$MNT/B"
	[ ! -e "$BACK/B" ]
}
