#!/usr/bin/env bats
# rekeyfs-key bad input: every error names file:line and what is wrong,
# exits 2 (or 1 for a refusal), never shows key material, and leaves the
# keyring byte-identical.

load helpers

setup() {
	rk_setup_tools
	K=$REKEYFS_KEY
	"$K" init --keyring "$KR" >/dev/null
	"$K" add --keyring "$KR" >/dev/null
	KEYS=$(awk '$1 == "key" { sub(/^base64:/, "", $3); print $3 }' "$KR")
}

teardown() {
	rk_teardown
}

# fails STATUS CMD...: run a command that must fail with STATUS, leave the
# keyring byte-identical and print no key material.
fails() {
	local want=$1
	shift
	cp -p "$KR" "$RK_TMP/kr.before"
	run "$@"
	echo "status $status: $output"
	[ "$status" -eq "$want" ]
	cmp "$KR" "$RK_TMP/kr.before"
	local k
	for k in $KEYS; do
		! grep -qF "$k" <<<"$output" || false
	done
}

snippet() {
	printf "$@" > "$RK_TMP/gen.ini"
	chmod 600 "$RK_TMP/gen.ini"
}

@test "malformed keyring: syntax error names its line" {
	printf 'this is not ini\n' >> "$KR"
	fails 2 "$K" add --keyring "$KR"
	[[ "$output" == *"$KR:$(wc -l < "$KR"): syntax error"* ]]
	fails 2 "$K" list --keyring "$KR"
	[[ "$output" == *"$KR:$(wc -l < "$KR"):"* ]]
}

@test "malformed keyring: unknown key, bad state, duplicate section" {
	sed -i 's/^state = enabled$/state = retired/' "$KR"
	local line
	line=$(grep -n 'state = retired' "$KR" | head -1 | cut -d: -f1)
	fails 2 "$K" promote 2 --keyring "$KR"
	[[ "$output" == *"$KR:$line: generation 1: state must be enabled, disabled or destroyed, not 'retired'"* ]]
	sed -i 's/^state = retired$/colour = blue/' "$KR"
	fails 2 "$K" add --keyring "$KR"
	[[ "$output" == *"$KR:$line: generation 1: unknown key 'colour'"* ]]
	sed -i 's/^colour = blue$/state = enabled/' "$KR"
	printf '\n[generation 2]\nstate = enabled\n' >> "$KR"
	fails 2 "$K" add --keyring "$KR"
	[[ "$output" == *"$KR:$(($(wc -l < "$KR") - 1)): [generation 2] is listed twice"* ]]
}

@test "group- or world-readable keyring is refused" {
	chmod 644 "$KR"
	fails 2 "$K" add --keyring "$KR"
	[[ "$output" == *"mode 0644"*"chmod 600"* ]]
	[ "$(stat -c %a "$KR")" = 644 ]
}

@test "short and malformed inline keys" {
	snippet '[generation 3]\nkey = base64:AAECAwQFBgcICQoLDA0ODw==\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:2: generation 3: key is not base64 of exactly 32 bytes"* ]]
	snippet '[generation 3]\nkey = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:2: generation 3: key must be written as base64:"* ]]
}

@test "snippet generation numbers: duplicate, decreasing, not above the keyring" {
	# a number the keyring holds: compared by key (a conflict here)
	snippet '[generation 2]\nkey = %s\n' "$("$K" generate)"
	chmod 600 "$RK_TMP/gen.ini"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: conflict: generation 2 is already in"*"with a different key"* ]]
	snippet '[generation 1]\nkey = %s\n' "$("$K" generate)"
	chmod 600 "$RK_TMP/gen.ini"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: conflict: generation 1 "* ]]
	snippet '[generation 4]\nkey_command = true\n\n[generation 4]\nkey_command = true\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:4: [generation 4] is listed twice"* ]]
	snippet '[generation 5]\nkey_command = true\n[generation 4]\nkey_command = true\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:3: [generation 4] comes after [generation 5]"* ]]
	snippet '[generation 0]\nkey_command = true\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: [generation 0]"* ]]
}

@test "snippet structure: [keyring], destroyed, no key, syntax, missing file" {
	snippet '[generation 3]\nkey_command = true\n[keyring]\nprimary = 3\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:3: a generation snippet holds only [generation N] sections"* ]]
	snippet '[generation 3]\nstate = destroyed\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: a new generation cannot be destroyed"* ]]
	snippet '[generation 3]\nstate = enabled\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3 has no key, key_file or key_command"* ]]
	snippet '[generation 3]\nkey_command true\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:2: syntax error"* ]]
	snippet '[generation 3]\nkey_file = a\nkey_command = b\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:3: generation 3: give exactly one of key, key_file, key_command"* ]]
	fails 2 "$K" add --from "$RK_TMP/nope.ini" --keyring "$KR"
	[[ "$output" == *"nope.ini"* ]]
}

@test "snippet with an inline key must not be group/world readable" {
	snippet '[generation 3]\nkey = %s\n' "$("$K" generate)"
	chmod 644 "$RK_TMP/gen.ini"
	KEYS="$KEYS $(awk '{ sub(/^base64:/, "", $3); print $3 }' "$RK_TMP/gen.ini" | tail -1)"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini: holds an inline key but is readable"* ]]
}

@test "key_file: short, world-readable, missing, symlink, wrong owner" {
	head -c 16 /dev/urandom > "$RK_TMP/short.key"
	chmod 600 "$RK_TMP/short.key"
	snippet '[generation 3]\nkey_file = short.key\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: key_file $RK_TMP/short.key must hold 32 raw bytes or one base64 line"* ]]
	"$K" generate > "$RK_TMP/g3.key"
	KEYS="$KEYS $(cat "$RK_TMP/g3.key")"
	chmod 644 "$RK_TMP/g3.key"
	snippet '[generation 3]\nkey_file = %s\n' "$RK_TMP/g3.key"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: key_file $RK_TMP/g3.key must be owned by uid 0 and not readable by group or others"* ]]
	chmod 600 "$RK_TMP/g3.key"
	chown 1234 "$RK_TMP/g3.key"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"must be owned by uid 0"* ]]
	chown 0 "$RK_TMP/g3.key"
	ln -s "$RK_TMP/g3.key" "$RK_TMP/link.key"
	snippet '[generation 3]\nkey_file = %s\n' "$RK_TMP/link.key"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"symbolic link"* ]]
	snippet '[generation 3]\nkey_file = %s\n' "$RK_TMP/none.key"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: key_file $RK_TMP/none.key: No such file"* ]]
	# and the good one goes in
	snippet '[generation 3]\nkey_file = %s\n' "$RK_TMP/g3.key"
	run "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[ "$status" -eq 0 ]
}

@test "key_command: failing, silent, wrong output, hanging" {
	snippet '[generation 3]\nkey_command = echo oops >&2; exit 3\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: key_command failed (exit status 3)"* ]]
	snippet '[generation 3]\nkey_command = true\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: key_command must print 32 raw bytes or one base64 line"* ]]
	snippet '[generation 3]\nkey_command = head -c 100000 /dev/zero\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"key_command printed more than"* ]]
	snippet '[generation 3]\nkey_command = sleep 30\nkey_command_timeout = 1\n'
	fails 2 timeout 20 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: key_command timed out after 1 s"* ]]
	# a command that prints the key and then lingers also times out
	# (a sleep length unique to this run, to find it again below)
	local nap="4$RANDOM.$$" i
	snippet '[generation 3]\nkey_command = %s generate; sleep %s\nkey_command_timeout = 1\n' "$K" "$nap"
	fails 2 timeout 20 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"timed out"* ]]
	# its sleep was killed with it (the whole process group)
	for i in $(seq 1 20); do
		pgrep -fx "sleep $nap" >/dev/null || break
		sleep 0.1
	done
	! pgrep -fx "sleep $nap" || false
	snippet '[generation 3]\nkey_command = true\nkey_command_timeout = 0\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:3: generation 3: key_command_timeout must be 1 to 3600 seconds"* ]]
}

@test "key_command sees no other descriptors and no keyring" {
	# The command lists its open descriptors: only 0, 1, 2 (+ the ls fd).
	snippet '[generation 3]\nkey_command = ls /proc/self/fd > %s; %s generate\n' \
		"$RK_TMP/fds" "$K"
	exec 7<"$KR"
	run "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	exec 7<&-
	[ "$status" -eq 0 ]
	[ "$(sort -n "$RK_TMP/fds" | tr '\n' ' ')" = "0 1 2 3 " ]
}

@test "key_command runs with umask 077 and only PATH, HOME and LANG" {
	snippet '[generation 3]\nkey_command = umask > %s; env > %s; %s generate\n' \
		"$RK_TMP/umask" "$RK_TMP/env" "$K"
	run env SECRET_TOKEN=leak LD_PRELOAD= LANG=C.UTF-8 HOME=/root \
		"$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[ "$status" -eq 0 ]
	[ "$(cat "$RK_TMP/umask")" = 0077 ]
	! grep -q SECRET_TOKEN "$RK_TMP/env" || false
	! grep -q LD_PRELOAD "$RK_TMP/env" || false
	grep -qx 'LANG=C.UTF-8' "$RK_TMP/env"
	grep -qx 'HOME=/root' "$RK_TMP/env"
	grep -q '^PATH=' "$RK_TMP/env"
	# dash adds PWD itself; nothing else is there
	[ "$(cut -d= -f1 "$RK_TMP/env" | grep -v '^PWD$' | sort | tr '\n' ' ')" = "HOME LANG PATH " ]
}

@test "a swapped key_file is detected by its recorded check value" {
	"$K" generate > "$RK_TMP/g3.key"
	chmod 600 "$RK_TMP/g3.key"
	snippet '[generation 3]\nkey_file = %s\n' "$RK_TMP/g3.key"
	"$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	"$K" generate > "$RK_TMP/g3.key"
	KEYS="$KEYS $(cat "$RK_TMP/g3.key")"
	fails 2 "$K" promote 3 --keyring "$KR"
	[[ "$output" == *"generation 3: the key does not match its check value"* ]]
	fails 2 "$K" check --source "$RK_TMP" --keyring "$KR"
	[[ "$output" == *"$KR:"*"generation 3: the key does not match its check value"* ]]
}

@test "snippet check value that does not match its key" {
	snippet '[generation 3]\nkey_command = %s generate\ncheck = 00000000000000000000000000000000\n' "$K"
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:1: generation 3: the key does not match its check value"* ]]
	snippet '[generation 3]\nkey_command = true\ncheck = 12zz\n'
	fails 2 "$K" add --from "$RK_TMP/gen.ini" --keyring "$KR"
	[[ "$output" == *"gen.ini:3: generation 3: check must be 32 hex digits"* ]]
}
