#!/usr/bin/env bats
# rekeyfs-key: every command and state transition, list output, generate,
# exit codes, the keyring lock under concurrent adds.

load helpers

setup() {
	rk_setup_tools
	K=$REKEYFS_KEY
}

teardown() {
	rk_teardown
}

# field NAME GEN: a value of [generation GEN] in the keyring file.
field() {
	awk -v sec="[generation $2]" -v k="$1" '
		/^\[/ { in_sec = ($0 == sec) }
		in_sec && $1 == k { print $3 }' "$KR"
}

primary() {
	awk '$1 == "primary" { print $3 }' "$KR"
}

@test "init: generation 1, primary, inline key, check value, mode 0600" {
	run "$K" init --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(stat -c %a "$KR")" = 600 ]
	[ "$(primary)" = 1 ]
	[ "$(field state 1)" = enabled ]
	[[ "$(field key 1)" == base64:* ]]
	[ "$(field check 1 | wc -c)" -eq 33 ]
	[ -n "$(field created 1)" ]
	# the key never reaches stdout
	! grep -qF "$(field key 1 | cut -c8-)" <<<"$output" || false
}

@test "init refuses to overwrite an existing keyring" {
	"$K" init --keyring "$KR"
	cp "$KR" "$RK_TMP/before"
	run "$K" init --keyring "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"already exists"* ]]
	cmp "$KR" "$RK_TMP/before"
	echo "not a keyring" > "$RK_TMP/other"
	run "$K" init --keyring "$RK_TMP/other"
	[ "$status" -eq 2 ]
	[ "$(cat "$RK_TMP/other")" = "not a keyring" ]
}

@test "add: next number, enabled, not primary; --primary promotes" {
	"$K" init --keyring "$KR"
	run "$K" add --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"generation 2"* ]]
	[ "$(field state 2)" = enabled ]
	[ "$(primary)" = 1 ]
	[ "$(field key 1)" != "$(field key 2)" ]
	run "$K" add --primary --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(primary)" = 3 ]
	[ "$(stat -c %a "$KR")" = 600 ]
}

@test "add after destroy never reuses a number" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" destroy 3 --force --keyring "$KR"
	"$K" add --keyring "$KR"
	[ "$(field state 3)" = destroyed ]
	[ "$(field state 4)" = enabled ]
}

@test "promote: enabled generation becomes primary; disabled/destroyed/unknown refused" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" add --keyring "$KR"
	run "$K" promote 2 --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(primary)" = 2 ]
	run "$K" promote 2 --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"already primary"* ]]
	"$K" disable 3 --keyring "$KR"
	cp "$KR" "$RK_TMP/before"
	run "$K" promote 3 --keyring "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"generation 3 is disabled"* ]]
	run "$K" promote 9 --keyring "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"no generation 9"* ]]
	cmp "$KR" "$RK_TMP/before"
	"$K" destroy 3 --force --keyring "$KR"
	run "$K" promote 3 --keyring "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"destroyed"* ]]
}

@test "disable / enable round trip keeps the key; the primary cannot be disabled" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	local key2
	key2=$(field key 2)
	run "$K" disable 2 --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"no --source"* ]]
	[ "$(field state 2)" = disabled ]
	[ "$(field key 2)" = "$key2" ]
	run "$K" disable 2 --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"already disabled"* ]]
	run "$K" enable 2 --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(field state 2)" = enabled ]
	[ "$(field key 2)" = "$key2" ]
	cp "$KR" "$RK_TMP/before"
	run "$K" disable 1 --keyring "$KR"
	[ "$status" -eq 1 ]
	[[ "$output" == *"primary"* ]]
	run "$K" disable 1 --force --keyring "$KR"
	[ "$status" -eq 1 ]
	cmp "$KR" "$RK_TMP/before"
}

@test "destroy: needs --source or --force, keeps a tombstone, is final" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" add --keyring "$KR"
	cp "$KR" "$RK_TMP/before"
	run "$K" destroy 2 --keyring "$KR"
	[ "$status" -eq 1 ]
	[[ "$output" == *"irreversible"* ]]
	cmp "$KR" "$RK_TMP/before"
	run "$K" destroy 1 --force --keyring "$KR"
	[ "$status" -eq 1 ]
	[[ "$output" == *"primary"* ]]
	cmp "$KR" "$RK_TMP/before"
	run "$K" destroy 2 --force --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(field state 2)" = destroyed ]
	[ -z "$(field key 2)" ]
	[ -n "$(field check 2)" ]
	run "$K" enable 2 --keyring "$KR"
	[ "$status" -eq 2 ]
	[[ "$output" == *"destroyed"* ]]
	run "$K" disable 2 --keyring "$KR"
	[ "$status" -eq 2 ]
	# a disabled generation can be destroyed too
	"$K" disable 3 --keyring "$KR"
	run "$K" destroy 3 --force --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(field state 3)" = destroyed ]
}

@test "destroy of a key_file generation leaves the file and says so" {
	"$K" init --keyring "$KR"
	"$K" generate > "$RK_TMP/g2.key"
	chmod 600 "$RK_TMP/g2.key"
	printf '[generation 2]\nkey_file = %s\n' "$RK_TMP/g2.key" > "$RK_TMP/g2.ini"
	"$K" add --from "$RK_TMP/g2.ini" --keyring "$KR"
	run "$K" destroy 2 --force --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"key file $RK_TMP/g2.key was not touched"* ]]
	[ -f "$RK_TMP/g2.key" ]
	[ -z "$(field key_file 2)" ]
}

@test "list shows state, primary, created, source and check, never keys" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" generate > "$RK_TMP/g3.key"
	chmod 600 "$RK_TMP/g3.key"
	printf '[generation 3]\nkey_file = %s\n[generation 4]\nkey_command = cat %s\n' \
		"$RK_TMP/g3.key" "$RK_TMP/g3.key" > "$RK_TMP/s.ini"
	"$K" add --from "$RK_TMP/s.ini" --keyring "$KR"
	"$K" disable 2 --keyring "$KR"
	run "$K" list --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "${lines[1]}" =~ ^1\ +enabled\ +yes\ +[0-9T:-]+Z\ +$(field check 1)\ +inline$ ]]
	[[ "${lines[2]}" =~ ^2\ +disabled\ +-\ + ]]
	[[ "${lines[3]}" == *"file $RK_TMP/g3.key" ]]
	[[ "${lines[4]}" == *"command cat $RK_TMP/g3.key" ]]
	local g
	for g in 1 2; do
		! grep -qF "$(field key "$g" | cut -c8-)" <<<"$output" || false
	done
	! grep -qF "$(cut -c1-40 "$RK_TMP/g3.key")" <<<"$output" || false
}

@test "list --json parses and carries every field" {
	"$K" init --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" destroy 2 --force --keyring "$KR"
	printf '[generation 3]\nkey_command = %s\n' \
		"printf '%s' \"$("$K" generate)\"" > "$RK_TMP/s.ini"
	"$K" add --from "$RK_TMP/s.ini" --keyring "$KR"
	run "$K" list --json --keyring "$KR"
	[ "$status" -eq 0 ]
	python3 - "$output" "$(field check 1)" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
assert d["sealed"] is False and d["primary"] == 1, d
g = {x["generation"]: x for x in d["generations"]}
assert sorted(g) == [1, 2, 3], g
assert g[1]["state"] == "enabled" and g[1]["primary"] is True
assert g[1]["source"] == "inline" and g[1]["check"] == sys.argv[2]
assert g[1]["created"].endswith("Z")
assert g[2]["state"] == "destroyed" and g[2]["source"] == "none"
assert g[3]["source"] == "command" and g[3]["key_command"].startswith("printf '%s' \"")
assert g[3]["primary"] is False
assert "key" not in g[1]
PY
}

@test "generate prints one base64:... line of 32 bytes, fresh every time" {
	run "$K" generate
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == base64:* ]]
	[ "$(printf '%s' "${output#base64:}" | base64 -d | wc -c)" -eq 32 ]
	local a b
	a=$("$K" generate)
	b=$("$K" generate)
	[ "$a" != "$b" ]
}

@test "--help documents the commands and the exit codes" {
	run "$K" --help
	[ "$status" -eq 0 ]
	local w
	for w in init add promote disable enable destroy list check generate \
		protect unprotect --passphrase-file --passphrase-command --force \
		--source "Exit status" "  0  done" "  1  refused" "  2  usage"; do
		[[ "$output" == *"$w"* ]]
	done
}

@test "usage errors exit 2" {
	run "$K"
	[ "$status" -eq 2 ]
	run "$K" frobnicate --keyring "$KR"
	[ "$status" -eq 2 ]
	run "$K" list
	[ "$status" -eq 2 ]
	[[ "$output" == *"--keyring"* ]]
	run "$K" promote --keyring "$KR"
	[ "$status" -eq 2 ]
	run "$K" promote x7 --keyring "$KR"
	[ "$status" -eq 2 ]
	run "$K" list --keyring "$KR" --bogus
	[ "$status" -eq 2 ]
	run "$K" list --keyring "$RK_TMP/missing.keyring"
	[ "$status" -eq 2 ]
	[[ "$output" == *"missing.keyring"* ]]
}

@test "--config takes the keyring (and passphrase settings) from [mount]" {
	"$K" init --keyring "$KR"
	printf '[mount]\nbacking = back\nmountpoint = mnt\nkeyring = vault.keyring\n' \
		> "$RK_TMP/vault.conf"
	run "$K" add --config "$RK_TMP/vault.conf"
	[ "$status" -eq 0 ]
	[ "$(field state 2)" = enabled ]
	printf '[mount]\nkeyring = vault.keyring\nbogus = 1\n' > "$RK_TMP/bad.conf"
	run "$K" list --config "$RK_TMP/bad.conf"
	[ "$status" -eq 2 ]
	[[ "$output" == *"bad.conf:3"* ]]
}

@test "ten concurrent adds lose nothing" {
	"$K" init --keyring "$KR"
	local i pids=()
	for i in $(seq 1 10); do
		"$K" add --keyring "$KR" > "$RK_TMP/add.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i"
	done
	run "$K" list --json --keyring "$KR"
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
nums = [g["generation"] for g in d["generations"]]
assert nums == list(range(1, 12)), nums
checks = [g["check"] for g in d["generations"]]
assert len(set(checks)) == 11, checks
' "$output"
	# every run reported a distinct number
	[ "$(cat "$RK_TMP"/add.* | grep -o 'generation [0-9]*' | sort -u | wc -l)" -eq 10 ]
	[ "$(stat -c %a "$KR")" = 600 ]
	# no temp files left next to the keyring
	[ "$(ls "$RK_TMP" | grep -c tmp)" -eq 0 ]
}

@test "a held lock makes a change wait; nothing is lost" {
	"$K" init --keyring "$KR"
	exec 9>"$KR.lock"
	flock 9
	"$K" add --keyring "$KR" &
	local pid=$!
	sleep 0.3
	# still waiting: the keyring is unchanged
	kill -0 "$pid"
	[ -z "$(field state 2)" ]
	flock -u 9
	exec 9>&-
	wait "$pid"
	[ "$(field state 2)" = enabled ]
}

@test "etc examples parse: the keyring and the generation snippet" {
	local etc=$BATS_TEST_DIRNAME/../../etc
	# the keyring example, with its key sources pointed at real keys
	"$K" generate > "$RK_TMP/k2"
	"$K" generate > "$RK_TMP/k3"
	chmod 600 "$RK_TMP/k2" "$RK_TMP/k3"
	sed -e "s|/etc/rekeyfs/keys/vault-2.key|$RK_TMP/k2|" \
		-e "s|/usr/local/bin/fetch-vault-key 3|cat $RK_TMP/k3|" \
		-e '/^check = 45977d/d' "$etc/vault.keyring.example" > "$KR"
	chmod 600 "$KR"
	run "$K" list --json --keyring "$KR"
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
s = {g["generation"]: (g["state"], g["source"]) for g in d["generations"]}
assert s == {1: ("destroyed", "none"), 2: ("disabled", "file"), 3: ("enabled", "command")}, s
assert d["primary"] == 3
' "$output"
	run "$K" promote 3 --keyring "$KR"
	[ "$status" -eq 0 ]
	# the snippet adds generation 7 once the keyring is at 6
	"$K" add --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" add --keyring "$KR"
	"$K" generate > "$RK_TMP/k7"
	chmod 600 "$RK_TMP/k7"
	sed "s|/etc/rekeyfs/keys/vault-7.key|$RK_TMP/k7|" "$etc/gen7.ini.example" > "$RK_TMP/gen7.ini"
	run "$K" add --from "$RK_TMP/gen7.ini" --keyring "$KR"
	[ "$status" -eq 0 ]
	[[ "$output" == *"added generation 7 (enabled, file key)"* ]]
	run "$K" promote 7 --keyring "$KR"
	[ "$status" -eq 0 ]
}

@test "a symlinked keyring is updated in place, the link stays" {
	mkdir "$RK_TMP/real"
	"$K" init --keyring "$RK_TMP/real/vault.keyring"
	ln -s real/vault.keyring "$KR"
	run "$K" add --keyring "$KR"
	[ "$status" -eq 0 ]
	[ -L "$KR" ]
	[ "$(field state 2)" = enabled ]
	[ -e "$RK_TMP/real/vault.keyring.lock" ]
}

@test "a change keeps the keyring's owner and mode 0600" {
	"$K" init --keyring "$KR"
	chown 0:5678 "$KR"
	chmod 600 "$KR"
	run "$K" add --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(stat -c %u:%g:%a "$KR")" = 0:5678:600 ]
	[ "$(field state 2)" = enabled ]
	[ "$(ls "$RK_TMP" | grep -c tmp)" -eq 0 ]
}

@test "add to a keyring without primary = keeps the effective primary" {
	rk_keyring "$KR" "" 1 2
	run "$K" add --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(primary)" = 2 ]
	run "$K" list --json --keyring "$KR"
	python3 -c 'import json,sys; assert json.loads(sys.argv[1])["primary"] == 2' "$output"
}
