#!/usr/bin/env bats
# rekeyfs-key against a running mount: add/promote picked up without a
# remount while a writer keeps writing; disable makes reads fail with EIO
# and a log line; enable restores them.

load helpers

setup() {
	rk_setup
	K=$REKEYFS_KEY
	[ -x "$K" ] || skip "rekeyfs-key not built"
	"$K" init --keyring "$KR" >/dev/null
	rk_mount
}

teardown() {
	rk_teardown
}

# wait_for CMD...: poll (bounded, ~3 s) until CMD succeeds.
wait_for() {
	local i
	for i in $(seq 1 60); do
		"$@" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "timed out waiting for: $*" >&2
	cat "$LOG" >&2
	return 1
}

# new_file_gen_is GEN: a freshly created file gets generation GEN.
# The probe is removed again, so that it never counts as a file on an
# older generation.
new_file_gen_is() {
	local f g
	f=probe.$RANDOM$RANDOM
	echo probe > "$MNT/$f" || return 1
	g=$(rk_header_gen "$BACK/$f")
	rm "$MNT/$f" || return 1
	[ "$g" -eq "$1" ]
}

# start_writer: a background writer that keeps rewriting and re-reading 25
# files (bounded: at most 4000 rounds) until stop_writer; every failed or
# wrong operation is recorded.
start_writer() {
	rm -f "$RK_TMP/stop" "$RK_TMP/writer.out"
	python3 - "$MNT" "$RK_TMP/stop" "$RK_TMP/writer.out" <<'PY' &
import os, sys
mnt, stop, report = sys.argv[1:4]
errors, n = [], 0
for i in range(4000):
    if os.path.exists(stop):
        break
    p = "%s/w%d" % (mnt, i % 25)
    data = (b"%d " % i) * 700
    try:
        with open(p, "wb") as f:
            f.write(data)
        with open(p, "rb") as f:
            if f.read() != data:
                errors.append("%s: content differs" % p)
    except OSError as e:
        errors.append("%s: %s" % (p, e))
    n += 1
with open(report, "w") as f:
    f.write("%d\n" % n)
    f.write("".join(e + "\n" for e in errors))
PY
	WRITER=$!
	sleep 0.2
}

# stop_writer: stop it and check it wrote and nothing failed.
stop_writer() {
	sleep 0.2
	touch "$RK_TMP/stop"
	wait "$WRITER"
	cat "$RK_TMP/writer.out"
	[ "$(head -1 "$RK_TMP/writer.out")" -gt 0 ]
	[ "$(wc -l < "$RK_TMP/writer.out")" -eq 1 ]
}

@test "live: add + promote reach the mount while a writer keeps writing" {
	echo "on one" > "$MNT/one"
	[ "$(rk_header_gen "$BACK/one")" -eq 1 ]
	start_writer
	"$K" add --keyring "$KR"
	"$K" promote 2 --keyring "$KR"
	wait_for new_file_gen_is 2
	"$K" add --primary --keyring "$KR"
	wait_for new_file_gen_is 3
	stop_writer
	# old files still read, with their own generation
	[ "$(cat "$MNT/one")" = "on one" ]
	[ "$(rk_header_gen "$BACK/one")" -eq 1 ]
	! grep -qi "reload.*failed" "$LOG" || false
}

@test "live: disable gives EIO and a log line; enable restores" {
	echo "generation one data" > "$MNT/old"
	"$K" add --primary --keyring "$KR"
	wait_for new_file_gen_is 2
	echo "generation two data" > "$MNT/new"
	cp "$BACK/old" "$RK_TMP/old.before"
	# the scan sees the file and refuses
	run "$K" disable 1 --source "$BACK" --keyring "$KR"
	[ "$status" -eq 1 ]
	[[ "$output" == *"1 file still uses generation 1: old"* ]]
	# the writer's files are all on generation 2: it never notices
	start_writer
	run "$K" disable 1 --force --source "$BACK" --keyring "$KR"
	[ "$status" -eq 0 ]
	cat_fails() { ! cat "$MNT/old" >/dev/null 2>&1; }
	wait_for cat_fails
	run cat "$MNT/old"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Input/output error"* ]]
	grep -q "generation 1 is disabled" "$LOG"
	[ "$(cat "$MNT/new")" = "generation two data" ]
	cmp "$BACK/old" "$RK_TMP/old.before"
	run "$K" enable 1 --keyring "$KR"
	[ "$status" -eq 0 ]
	cat_works() { [ "$(cat "$MNT/old")" = "generation one data" ]; }
	wait_for cat_works
	stop_writer
}

@test "live: a sealed keyring reloads with the passphrase given at mount" {
	rk_unmount
	export REKEYFS_KDF_OPS=1 REKEYFS_KDF_MEM=8M
	printf 'mount secret\n' > "$RK_TMP/pass"
	chmod 600 "$RK_TMP/pass"
	"$K" protect --passphrase-file "$RK_TMP/pass" --keyring "$KR"
	rk_mount --passphrase-file "$RK_TMP/pass"
	echo data > "$MNT/a"
	[ "$(rk_header_gen "$BACK/a")" -eq 1 ]
	"$K" add --primary --passphrase-file "$RK_TMP/pass" --keyring "$KR"
	wait_for new_file_gen_is 2
	[ "$(cat "$MNT/a")" = data ]
	# a wrong passphrase refuses to mount
	rk_unmount
	printf 'other\n' > "$RK_TMP/bad"
	chmod 600 "$RK_TMP/bad"
	run "$REKEYFS" -f --keyring "$KR" --passphrase-file "$RK_TMP/bad" "$BACK" "$MNT"
	[ "$status" -ne 0 ]
	[[ "$output" == *"wrong passphrase"* ]]
	! mountpoint -q "$MNT" || false
}

@test "live: a passphrase change reaches the mount through its passphrase file" {
	rk_unmount
	export REKEYFS_KDF_OPS=1 REKEYFS_KDF_MEM=8M
	printf 'first\n' > "$RK_TMP/pass"
	printf 'second\n' > "$RK_TMP/pass2"
	chmod 600 "$RK_TMP/pass" "$RK_TMP/pass2"
	"$K" protect --passphrase-file "$RK_TMP/pass" --keyring "$KR"
	rk_mount --passphrase-file "$RK_TMP/pass"
	# new passphrase, but the mount's file still holds the old one
	"$K" protect --passphrase-file "$RK_TMP/pass" \
		--new-passphrase-file "$RK_TMP/pass2" --keyring "$KR"
	"$K" add --primary --passphrase-file "$RK_TMP/pass2" --keyring "$KR"
	log_says_wrong() { grep -q "wrong passphrase" "$LOG"; }
	wait_for log_says_wrong
	new_file_gen_is 1
	# the file gets the new passphrase: the next change goes through
	cp "$RK_TMP/pass2" "$RK_TMP/pass"
	"$K" add --primary --passphrase-file "$RK_TMP/pass2" --keyring "$KR"
	wait_for new_file_gen_is 3
}
