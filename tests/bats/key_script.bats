#!/usr/bin/env bats
# Scripting keys as configuration management does: idempotent snippets,
# standard input, one JSON writer and a real -q in both tools, one style of
# usage errors, environment defaults, --status without keys, and the audit
# trail of every key event.

load helpers

setup() {
	rk_setup_tools
	K=$REKEYFS_KEY
	R=$REKEYFS_REKEY
	export REKEYFS_KDF_OPS=1 REKEYFS_KDF_MEM=8M
	export REKEYFS_AUDIT_LOG=$RK_TMP/audit.log
	unset REKEYFS_KEYRING REKEYFS_CONFIG
}

teardown() {
	rk_teardown
}

# valid_json: stdin is exactly one valid JSON document.
valid_json() {
	python3 -m json.tool >/dev/null
}

# jget EXPR: evaluate EXPR on the JSON document d read from stdin.
jget() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

@test "add --from is idempotent: same key succeeds, another key is a conflict" {
	"$K" init -k "$KR" -q
	printf '[generation 2]\nkey = %s\n' "$("$K" generate)" > "$RK_TMP/g2.ini"
	chmod 600 "$RK_TMP/g2.ini"
	run "$K" add --from "$RK_TMP/g2.ini" -k "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"added generation 2"* ]]
	cp -p "$KR" "$RK_TMP/kr.before"
	run "$K" add --from "$RK_TMP/g2.ini" -k "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"generation 2 is already in the keyring with this key"*"nothing to do"* ]]
	cmp "$KR" "$RK_TMP/kr.before"
	# the same number with another key: a conflict, nothing changes
	printf '[generation 2]\nkey = %s\n' "$("$K" generate)" > "$RK_TMP/other.ini"
	chmod 600 "$RK_TMP/other.ini"
	run "$K" add --from "$RK_TMP/other.ini" -k "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"other.ini:1: conflict: generation 2 is already in"*"different key"* ]]
	cmp "$KR" "$RK_TMP/kr.before"
	# the same key under another number: a conflict too
	sed 's/generation 2/generation 5/' "$RK_TMP/g2.ini" > "$RK_TMP/g5.ini"
	chmod 600 "$RK_TMP/g5.ini"
	run "$K" add --from "$RK_TMP/g5.ini" -k "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"is already generation 2"* ]]
	cmp "$KR" "$RK_TMP/kr.before"
	# a key file snippet re-run, with --json
	"$K" generate > "$RK_TMP/g3.key"
	chmod 600 "$RK_TMP/g3.key"
	printf '[generation 3]\nkey_file = g3.key\n' > "$RK_TMP/g3.ini"
	run "$K" add --from "$RK_TMP/g3.ini" -k "$KR" --json
	[ "$status" -eq 0 ]
	echo "$output" | valid_json
	[ "$(echo "$output" | jget 'd["changed"], d["generations"]')" = "(True, [3])" ]
	run "$K" add --from "$RK_TMP/g3.ini" -k "$KR" --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'd["changed"], d["generations"]')" = "(False, [3])" ]
	# a destroyed generation is never re-added
	"$K" destroy 2 --force -k "$KR" -q
	run "$K" add --from "$RK_TMP/g2.ini" -k "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"generation 2 of"*"is destroyed; its number is never reused"* ]]
}

@test "add --from - reads standard input; [generation] gets the next number" {
	"$K" init -k "$KR" -q
	"$K" add -k "$KR" -q
	local key
	key=$("$K" generate)
	run "$K" add --from - -k "$KR" <<<"[generation]
key = $key"
	[ "$status" -eq 0 ]
	[[ "$output" == *"added generation 3 (enabled, inline key)"* ]]
	grep -qF "key = $key" "$KR"
	# the same snippet again: found by its key, nothing added
	run "$K" add --from - -k "$KR" <<<"[generation]
key = $key"
	[ "$status" -eq 0 ]
	[[ "$output" == *"generation 3 already holds this key"* ]]
	[ "$("$K" list -k "$KR" --json | jget 'len(d["generations"])')" = 3 ]
	# --primary with an unnumbered snippet: the number is in the JSON
	run "$K" add --from - --primary -k "$KR" --json <<<"[generation]
key = $("$K" generate)"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'd["generations"]')" = "[4]" ]
	[ "$("$K" list -k "$KR" --json | jget 'd["primary"]')" = 4 ]
	# errors name <stdin> and its line
	run "$K" add --from - -k "$KR" <<<"[generation]
key = $key
[generation 9]
key = $key"
	[ "$status" -eq 2 ]
	[[ "$output" == *"<stdin>:3: [generation] without a number must be the snippet's only section"* ]]
	# relative key_file paths from stdin are relative to the caller
	"$K" generate > "$RK_TMP/k.key"
	chmod 600 "$RK_TMP/k.key"
	(cd "$RK_TMP" && "$K" add --from - -k "$KR" -q <<<"[generation 7]
key_file = k.key")
	grep -qF "key_file = $RK_TMP/k.key" "$KR"
}

@test "generate prints a value that can follow key = as is" {
	local key
	key=$("$K" generate)
	[[ "$key" == base64:* ]]
	printf '[keyring]\n[generation 1]\nkey = %s\n' "$key" > "$KR"
	chmod 600 "$KR"
	run "$K" list -k "$KR"
	[ "$status" -eq 0 ]
	# and a key_file may hold the same line
	"$K" generate > "$RK_TMP/f.key"
	chmod 600 "$RK_TMP/f.key"
	printf '[generation 2]\nkey_file = %s\n' "$RK_TMP/f.key" > "$RK_TMP/g.ini"
	"$K" add --from "$RK_TMP/g.ini" -k "$KR" -q
}

@test "--passphrase-file - reads the passphrase from standard input" {
	printf 'secret words\n' | "$K" init --passphrase --passphrase-file - -k "$KR" -q
	run "$K" list -k "$KR" --passphrase-file - --json <<<"secret words"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'd["sealed"]')" = True ]
	run "$K" add -k "$KR" --passphrase-file - <<<"wrong words"
	[ "$status" -eq 2 ]
	[[ "$output" == *"wrong passphrase"* ]]
	# stdin feeds one thing only
	run "$K" add --from - --passphrase-file - -k "$KR" </dev/null
	[ "$status" -eq 2 ]
	[[ "$output" == *"standard input ('-') can feed only one"* ]]
	[[ "$output" == *"Try 'rekeyfs-key --help'."* ]]
}

@test "--json: every rekeyfs-key command prints one valid JSON object, errors too" {
	printf 'pw words\n' > "$RK_TMP/pw"
	chmod 600 "$RK_TMP/pw"
	local c out rc
	for c in "init" "add" "promote 2" "disable 1 --force" "enable 1" \
		"list" "check --source $RK_TMP/nope" "generate" \
		"destroy 1 --force" "protect --passphrase-file $RK_TMP/pw" \
		"unprotect --passphrase-file $RK_TMP/pw" "frobnicate" \
		"promote 99" "list --no-such-option"; do
		rc=0
		# shellcheck disable=SC2086
		out=$("$K" $c -k "$KR" --json 2>/dev/null </dev/null) || rc=$?
		echo "$c: $rc: $out"
		# stdout holds exactly one document, with the exit status
		echo "$out" | valid_json
		[ "$(echo "$out" | jget 'd["exit_status"]')" = "$rc" ]
	done
	out=$("$K" list -k "$KR" --json)
	[ "$(echo "$out" | jget '[g["state"] for g in d["generations"]]')" = "['destroyed', 'enabled']" ]
	out=$("$K" promote 99 -k "$KR" --json 2>/dev/null) || true
	[[ "$(echo "$out" | jget 'd["diagnostics"][0]')" == *"no generation 99"* ]]
}

@test "--json: file names that are not UTF-8 are valid JSON in both tools" {
	rk_setup
	"$K" init -k "$KR" -q
	local odd
	odd=$(printf 'k\377\300ey "q"\\.key')
	"$K" generate > "$RK_TMP/$odd"
	chmod 600 "$RK_TMP/$odd"
	printf '[generation 2]\nkey_file = %s\n' "$RK_TMP/$odd" > "$RK_TMP/g.ini"
	"$K" add --from "$RK_TMP/g.ini" -k "$KR" -q
	run "$K" list -k "$KR" --json
	[ "$status" -eq 0 ]
	echo "$output" | valid_json
	# the name's bytes come back with os.fsencode (surrogateescape)
	python3 - "$output" "$RK_TMP/$odd" <<'PY'
import json, os, sys
d = json.loads(sys.argv[1])
kf = [g["key_file"] for g in d["generations"] if "key_file" in g][0]
assert os.fsencode(kf) == os.fsencode(sys.argv[2]), (kf, sys.argv[2])
PY
	rk_mount
	printf x > "$MNT/$(printf 'bad\377name')"
	printf y > "$MNT/$(printf 'ok\342\200\250line')"
	rk_unmount
	run "$R" --status --generation 1 --json "$BACK"
	[ "$status" -eq 0 ]
	echo "$output" | valid_json
	python3 - "$output" <<'PY'
import json, os, sys
d = json.loads(sys.argv[1])
names = sorted(os.fsencode(p) for p in d["listed_files"])
assert names == [b"bad\xffname", "ok\u2028line".encode()], names
PY
	"$R" -k "$KR" --json "$BACK" 2>/dev/null | valid_json
	run "$R" --bogus --json
	[ "$status" -eq 2 ]
	"$R" --bogus --json 2>/dev/null | valid_json || true
	[ "$("$R" --bogus --json 2>/dev/null | jget 'd["exit_status"]')" = 2 ]
}

@test "-q: nothing on stdout on success but the data asked for" {
	run "$K" init -k "$KR" -q
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	local c out
	for c in "add" "promote 2" "disable 1" "enable 1" "promote 1" \
		"destroy 2 --force" "protect --passphrase-file $RK_TMP/pw"; do
		printf 'pw words\n' > "$RK_TMP/pw"
		chmod 600 "$RK_TMP/pw"
		# shellcheck disable=SC2086
		out=$("$K" $c -k "$KR" -q 2>/dev/null)
		echo "$c: $out"
		[ -z "$out" ]
	done
	run "$K" generate -q
	[[ "$output" == base64:* ]]
	run "$K" list -q -k "$KR" --passphrase-file "$RK_TMP/pw"
	[[ "$output" == *GENERATION* ]]
	# errors still reach stderr
	run "$K" promote 9 -k "$KR" -q --passphrase-file "$RK_TMP/pw"
	[ "$status" -eq 2 ]
	[[ "$output" == *"no generation 9"* ]]
}

@test "usage errors look the same in the three programs; short options agree" {
	local p
	for p in "$REKEYFS" "$K" "$R"; do
		[ -x "$p" ] || continue
		run "$p" --no-such-option
		[ "$status" -ne 0 ]
		[[ "${lines[-1]}" == "Try '$(basename "$p") --help'." ]]
	done
	run "$K" list -k
	[ "$status" -eq 2 ]
	[[ "${lines[-1]}" == "Try 'rekeyfs-key --help'." ]]
	# -k, -c, -q, -h, -V mean the same in both tools
	"$K" init -k "$KR" -q
	printf '[mount]\nkeyring = %s\nbacking = %s\n' "$KR" "$BACK" > "$RK_TMP/v.conf"
	run "$K" list -c "$RK_TMP/v.conf"
	[ "$status" -eq 0 ]
	run "$R" --status -c "$RK_TMP/v.conf"
	[ "$status" -eq 2 ]
	[[ "$output" == *"not a rekeyfs backing directory"* ]]
	for p in "$K" "$R"; do
		"$p" -h | grep -q -- "-k, --keyring"
		"$p" -h | grep -q -- "-c, --config"
		"$p" -h | grep -q -- "-q, --quiet"
		"$p" -V | grep -q "$(cat "$BATS_TEST_DIRNAME/../../VERSION")"
	done
}

@test "REKEYFS_KEYRING and REKEYFS_CONFIG are the defaults" {
	REKEYFS_KEYRING=$KR "$K" init -q
	[ -f "$KR" ]
	run env REKEYFS_KEYRING="$KR" "$K" list --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget 'd["keyring"]')" = "$KR" ]
	printf '[mount]\nkeyring = %s\nbacking = %s\n' "$KR" "$BACK" > "$RK_TMP/v.conf"
	run env REKEYFS_CONFIG="$RK_TMP/v.conf" "$K" add -q
	[ "$status" -eq 0 ]
	[ "$("$K" list -k "$KR" --json | jget 'len(d["generations"])')" = 2 ]
	# an option wins over the environment
	run env REKEYFS_KEYRING="$RK_TMP/nope" "$K" list -k "$KR" -q
	[ "$status" -eq 0 ]
	run env REKEYFS_KEYRING="$RK_TMP/nope" "$K" list
	[ "$status" -eq 2 ]
	[[ "$output" == *"$RK_TMP/nope"* ]]
	run env REKEYFS_KEYRING="$RK_TMP/nope" "$R" --status "$BACK"
	[ "$status" -eq 2 ]
	[[ "$output" == *"$RK_TMP/nope"* ]]
}

@test "rekeyfs-rekey --status counts per generation without asking a passphrase" {
	rk_setup
	printf 'pw words\n' > "$RK_TMP/pw"
	chmod 600 "$RK_TMP/pw"
	"$K" init --passphrase --passphrase-file "$RK_TMP/pw" -k "$KR" -q
	rk_mount --passphrase-file "$RK_TMP/pw"
	printf a > "$MNT/a"
	printf bb > "$MNT/b"
	rk_unmount
	"$K" add --primary --passphrase-file "$RK_TMP/pw" -k "$KR" -q
	# no passphrase source and no terminal: --status still works
	run setsid -w "$R" --status --json -k "$KR" "$BACK" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jget '[(g["generation"], g["files"], g["primary"]) for g in d["before"]]')" = "[(1, 2, False)]" ]
	[ "$(echo "$output" | jget 'd["remaining"]')" = 2 ]
	# a rekey does need it
	run setsid -w "$R" -k "$KR" "$BACK" </dev/null
	[ "$status" -eq 2 ]
	[[ "$output" == *"no terminal"* ]]
}

@test "audit trail: every key event with generation numbers, never a key" {
	rk_setup
	"$K" init -k "$KR" -q
	rk_mount
	printf data > "$MNT/f"
	rk_unmount
	"$K" add -k "$KR" -q
	"$K" promote 2 -k "$KR" -q
	"$K" disable 1 --force -k "$KR" -q
	"$K" enable 1 -k "$KR" -q
	"$R" -k "$KR" -q "$BACK"
	"$K" destroy 1 --source "$BACK" -k "$KR" -q
	printf 'pw words\n' > "$RK_TMP/pw"
	chmod 600 "$RK_TMP/pw"
	"$K" protect --passphrase-file "$RK_TMP/pw" -k "$KR" -q
	cat "$REKEYFS_AUDIT_LOG"
	local a=$REKEYFS_AUDIT_LOG
	grep -q "^rekeyfs-key: key-init keyring=$KR generation=1 primary=1 sealed=no uid=0" "$a"
	grep -q "^rekeyfs-key: key-add keyring=$KR generation=2 state=enabled source=inline uid=0" "$a"
	grep -q "^rekeyfs-key: key-promote keyring=$KR generation=2 previous=1 uid=0" "$a"
	grep -q "^rekeyfs-key: key-disable keyring=$KR generation=1 forced=yes" "$a"
	grep -q "^rekeyfs-key: key-enable keyring=$KR generation=1 " "$a"
	grep -q "^rekeyfs-rekey: rekey-start backing=$BACK keyring=$KR target=2 " "$a"
	grep -q "^rekeyfs-rekey: rekey-finish backing=$BACK keyring=$KR target=2 result=done migrated=1 busy=0 failed=0 before=1:1 after=2:1 " "$a"
	grep -q "^rekeyfs-key: key-destroy keyring=$KR generation=1 checked_source=$BACK uid=0" "$a"
	grep -q "^rekeyfs-key: key-protect keyring=$KR change=sealed" "$a"
	[ "$(wc -l < "$a")" -eq 9 ]
	# no key material: not the inline keys, not their sealed form
	local k
	for k in $(awk '$1 == "key" { sub(/^(base64|sealed):/, "", $3); print $3 }' "$KR"); do
		! grep -qF "${k:0:16}" "$a" || false
	done
	# a refused change is not an event
	run "$K" destroy 2 --force -k "$KR" --passphrase-file "$RK_TMP/pw"
	[ "$status" -eq 1 ]
	[ "$(wc -l < "$a")" -eq 9 ]
	# an odd path stays one line
	local odd="$RK_TMP/new
line.keyring"
	"$K" init -k "$odd" -q
	[ "$(wc -l < "$a")" -eq 10 ]
	tail -1 "$a" | grep -qF 'keyring="'"$RK_TMP"'/new\x0aline.keyring"'
}
