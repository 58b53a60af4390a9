#!/usr/bin/env bats
# Intent records come only from rekeyfs-rekey: a user who can write in the
# backing tree cannot make the tool or a mount "finish an interrupted
# rewrite" over someone else's file.

load helpers

setup() {
	rk_setup
	[ -x "$REKEYFS_REKEY" ] || skip "rekeyfs-rekey not built"
	id nobody >/dev/null 2>&1 || skip "no user nobody"
}

teardown() {
	rk_teardown
}

as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups -- /bin/sh -c "umask 077; $1"
}

hex() {
	printf '%s' "$1" | xxd -p | tr -d '\n'
}

# set_gen1 STATE: generation 1's state in KR (the keyring stays 0600).
set_gen1() {
	python3 - "$KR" "$1" <<'PY'
import re, sys
p, state = sys.argv[1], sys.argv[2]
t = open(p).read()
t = re.sub(r'(\[generation 1\]\nstate = )\w+', r'\g<1>' + state, t, count=1)
open(p, 'w').write(t)
PY
	chmod 600 "$KR"
}

# stage_victim: root's file "victim" on generation 1 and a file "u/mine"
# of nobody's; generation 2 primary and generation 1 disabled, so that
# the victim does not authenticate right now (the case a replay used to
# overwrite).  Sets VICTIM_SUM; the victim's backing bytes are in
# RK_TMP/victim.orig.
stage_victim() {
	rk_keyring "$KR" "" 1
	rk_mount
	printf 'precious data of root\n' >"$MNT/victim"
	mkdir "$MNT/u"
	head -c 50000 /dev/urandom >"$MNT/u/mine"
	VICTIM_SUM=$(sha256sum <"$MNT/victim")
	rk_unmount
	# A backing root others can reach (initialisation makes it 0700):
	# the setting where users own backing files they can edit.
	chmod 755 "$BACK"
	chown -R nobody:nogroup "$BACK/u"
	chmod 644 "$BACK/victim"
	cp "$BACK/victim" "$RK_TMP/victim.orig"
	rk_add_gen 2
	set_gen1 disabled
}

# forge DIR NAME: as nobody, drop a data temp (a copy of nobody's own
# ciphertext) and an intent record naming root's victim by dev/ino, with
# the victim's header as the "old" one, in BACK/DIR ("" = the root).
forge() {
	local d=${1:+$1/} tmp=.rekeyfs-tmp.$2
	as_nobody "cp '$BACK/u/mine' '$BACK/$d$tmp'"
	printf 'rekeyfs-intent 2\ndev %s\nino %s\nsize %s\natime 0 0\nmtime 0 0\nold %s\ntarget %s\ntemp %s\nend\n' \
		"$(stat -c %d "$BACK/victim")" "$(stat -c %i "$BACK/victim")" \
		"$(stat -c %s "$BACK/$d$tmp")" \
		"$(head -c 32 "$BACK/victim" | xxd -p | tr -d '\n')" \
		"$(hex victim)" "$(hex "$d$tmp")" >"$RK_TMP/forged"
	as_nobody "cat >'$BACK/$d$tmp.intent'" <"$RK_TMP/forged"
	[ "$(stat -c %U "$BACK/$d$tmp.intent")" = nobody ]
}

# victim_intact: the victim's backing bytes are as before, and it reads
# back through a mount once generation 1 is enabled again.
victim_intact() {
	cmp "$BACK/victim" "$RK_TMP/victim.orig"
	mountpoint -q "$MNT" && rk_unmount
	set_gen1 enabled
	rk_mount
	[ "$(sha256sum <"$MNT/victim")" = "$VICTIM_SUM" ]
}

@test "intent: a record forged by a user in the backing root is not replayed by rekeyfs-rekey" {
	stage_victim
	chmod 1777 "$BACK"
	forge "" 00000000000000aa
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	cmp "$BACK/victim" "$RK_TMP/victim.orig"
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"])')" = 0 ]
	echo "$output" | grep -q 'not written by rekeyfs-rekey (owner uid'
	# the forged files are stray leftovers: removed
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	victim_intact
}

@test "intent: a record forged by a user in a subdirectory is not replayed by rekeyfs-rekey" {
	stage_victim
	forge u 00000000000000bb
	run "$REKEYFS_REKEY" --verify --keyring "$KR" --json -q "$BACK"
	echo "$output"
	cmp "$BACK/victim" "$RK_TMP/victim.orig"
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"])')" = 0 ]
	echo "$output" | grep -q 'outside the backing root: ignored and removed'
	[ -z "$(find "$BACK" -name '.rekeyfs-tmp*')" ]
	run "$REKEYFS_REKEY" --keyring "$KR" -q "$BACK"
	victim_intact
}

@test "intent: records forged by a user are not replayed by a mount" {
	stage_victim
	chmod 1777 "$BACK"
	forge "" 00000000000000cc
	forge u 00000000000000dd
	rk_mount
	cmp "$BACK/victim" "$RK_TMP/victim.orig"
	grep -q 'not written by rekeyfs-rekey' "$LOG"
	# a read that fails authentication tries recovery again: still nothing
	! cat "$MNT/victim" >/dev/null 2>&1 || false
	ln "$MNT/victim" "$MNT/victim2"
	! cat "$MNT/victim2" >/dev/null 2>&1 || false
	# nothing of it was taken as a record: the forged files are still there
	[ -e "$BACK/.rekeyfs-tmp.00000000000000cc.intent" ]
	[ -e "$BACK/u/.rekeyfs-tmp.00000000000000dd.intent" ]
	victim_intact
}

@test "intent: an older build's record is honoured only when root wrote it and its temp" {
	stage_victim
	# nobody's own file on generation 2, so that the temp authenticates
	# and only whose it is can stop the replay
	set_gen1 enabled
	rk_mount
	rk_reload_to 2
	rm -f "$MNT/u/mine"
	head -c 50000 /dev/urandom >"$MNT/u/mine"
	rk_unmount
	chown -R nobody:nogroup "$BACK/u"
	set_gen1 disabled
	# a root-owned 0600 record, but the temp is nobody's
	forge u 00000000000000ee
	mv "$BACK/u/.rekeyfs-tmp.00000000000000ee.intent" "$BACK/.rekeyfs-tmp.00000000000000ee.intent"
	chown root:root "$BACK/.rekeyfs-tmp.00000000000000ee.intent"
	chmod 600 "$BACK/.rekeyfs-tmp.00000000000000ee.intent"
	rk_mount
	cmp "$BACK/victim" "$RK_TMP/victim.orig"
	rk_unmount
	run "$REKEYFS_REKEY" --keyring "$KR" --json -q "$BACK"
	echo "$output"
	[ "$(echo "$output" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["resumed"])')" = 0 ]
	echo "$output" | grep -q 'the new version is missing or does not authenticate'
	# refused, not removed: the operator decides
	[ -e "$BACK/.rekeyfs-tmp.00000000000000ee.intent" ]
	victim_intact
}
