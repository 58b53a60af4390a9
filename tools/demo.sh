#!/usr/bin/env bash
# make demo: rekeyfs end to end in a temporary directory.
#
# Creates a keyring, mounts an encrypted vault, writes files, rotates the
# key while the vault stays mounted, shows files of both generations
# readable side by side, moves every file to the new generation with
# rekeyfs-rekey, and unmounts.  Always unmounts and cleans up, even when a
# step fails; DEMO_KEEP=1 keeps the directory for a look afterwards.

set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${REKEYFS_BUILD:-$TOP/build}
REKEYFS=$BUILD/rekeyfs
KEYTOOL=$BUILD/rekeyfs-key
REKEY=$BUILD/rekeyfs-rekey

die() {
	echo "demo: $*" >&2
	exit 1
}

[ -x "$REKEYFS" ] || die "$REKEYFS is not built; run 'make' first"
[ -c /dev/fuse ] || die "/dev/fuse is missing: load the fuse module (modprobe fuse)"
command -v fusermount3 >/dev/null || die "fusermount3 is missing: run 'make deps'"

DEMO=$(mktemp -d /tmp/rekeyfs-demo.XXXXXX)
chmod 755 "$DEMO"
BACK=$DEMO/vault.enc
MNT=$DEMO/vault
KR=$DEMO/vault.keyring
LOG=$DEMO/rekeyfs.log
ORIG=$DEMO/originals
mkdir -p "$BACK" "$MNT" "$ORIG"
PID=

cleanup() {
	local rc=$? i
	if mountpoint -q "$MNT" 2>/dev/null; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	if [ -n "$PID" ]; then
		for i in $(seq 1 50); do
			kill -0 "$PID" 2>/dev/null || break
			sleep 0.1
		done
		kill "$PID" 2>/dev/null || true
	fi
	if [ $rc != 0 ]; then
		echo
		echo "demo: FAILED (exit $rc)." >&2
		[ -s "$LOG" ] && { echo "demo: daemon log:" >&2; sed 's/^/  /' "$LOG" >&2; }
	fi
	if [ "${DEMO_KEEP:-0}" = 1 ]; then
		echo "demo: kept $DEMO"
	else
		rm -rf "$DEMO"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STEP=0
say() {
	STEP=$((STEP + 1))
	echo
	echo "== $STEP. $*"
}
run() {
	echo "   \$ $*" | sed "s|$DEMO|\$DEMO|g; s|$BUILD/|build/|g"
	"$@" 2>&1 | sed "s|$DEMO|\$DEMO|g; s/^/     /"
}

# gen_of FILE: the key generation in a backing file's header (bytes 8..11).
gen_of() {
	od -An -tu1 -j8 -N4 "$1" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}'
}

show_generations() {
	local f rel
	while IFS= read -r f; do
		rel=${f#"$BACK"/}
		printf '     %-22s generation %s\n' "$rel" "$(gen_of "$f")"
	done < <(find "$BACK" -type f ! -name '.rekeyfs*' | sort)
}

# write_file NAME: create NAME in the vault with fresh content, keep a copy.
write_file() {
	mkdir -p "$(dirname "$ORIG/$1")" "$(dirname "$MNT/$1")"
	cp "$ORIG/$1" "$MNT/$1"
}

check_all() {
	local f rel bad=0
	while IFS= read -r f; do
		rel=${f#"$ORIG"/}
		if cmp -s "$f" "$MNT/$rel"; then
			printf '     %-22s reads back identical\n' "$rel"
		else
			printf '     %-22s DIFFERS\n' "$rel"
			bad=1
		fi
	done < <(find "$ORIG" -type f | sort)
	[ $bad = 0 ] || die "a file did not read back as written"
}

echo "rekeyfs demo in \$DEMO=$DEMO"
echo "(backing directory \$DEMO/vault.enc, mountpoint \$DEMO/vault)"

say "Create a keyring: generation 1, primary, with a fresh random key"
if [ -x "$KEYTOOL" ]; then
	run "$KEYTOOL" init --keyring "$KR"
	run "$KEYTOOL" list --keyring "$KR"
else
	echo "   (build/rekeyfs-key is not built: writing the keyring by hand)"
	(
		umask 077
		printf '[keyring]\nprimary = 1\n\n[generation 1]\nstate = enabled\ncreated = %s\nkey = base64:%s\n' \
			"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(head -c 32 /dev/urandom | base64 -w0)" >"$KR"
	)
fi
echo "   keyring mode: $(stat -c %a "$KR") (key material never leaves it)"

say "Set up the empty backing directory for the keyring (a mount never does this)"
run "$REKEYFS" --init --keyring "$KR" "$BACK"

say "Mount the vault"
echo "   \$ build/rekeyfs --keyring \$DEMO/vault.keyring \$DEMO/vault.enc \$DEMO/vault"
"$REKEYFS" -f --keyring "$KR" "$BACK" "$MNT" >"$LOG" 2>&1 </dev/null &
PID=$!
for i in $(seq 1 100); do
	mountpoint -q "$MNT" && break
	kill -0 "$PID" 2>/dev/null || die "rekeyfs exited before mounting"
	sleep 0.1
done
mountpoint -q "$MNT" || die "the mount did not come up within 10 s"
echo "     mounted: $(grep " $MNT " /proc/mounts | awk '{print $3}')"

say "Write files through the mount (key generation 1)"
echo "rekeyfs demo: the quarterly numbers are in." >"$ORIG/notes.txt"
mkdir -p "$ORIG/photos"
head -c 1048576 /dev/urandom >"$ORIG/photos/beach.raw"
seq 1 20000 >"$ORIG/numbers.txt"
for f in notes.txt photos/beach.raw numbers.txt; do
	write_file "$f"
	printf '     wrote %-16s %8d bytes\n' "$f" "$(stat -c %s "$ORIG/$f")"
done
echo "   What the backing directory holds for notes.txt (header, then ciphertext):"
od -A d -t x1 -N 48 "$BACK/notes.txt" | sed 's/^/     /'
if grep -q "quarterly" "$BACK/notes.txt"; then
	die "plaintext found in the backing file"
fi
echo "   'quarterly' does not occur in the backing file; the mount shows:"
echo "     $(cat "$MNT/notes.txt")"
show_generations

say "Rotate the key while mounted: add generation 2, then make it primary"
if [ -x "$KEYTOOL" ]; then
	run "$KEYTOOL" add --keyring "$KR"
	run "$KEYTOOL" promote 2 --keyring "$KR"
	run "$KEYTOOL" list --keyring "$KR"
else
	echo "   (build/rekeyfs-key is not built: editing the keyring by hand)"
	tmp=$KR.new
	(
		umask 077
		sed 's/^primary = 1$/primary = 2/' "$KR" >"$tmp"
		printf '\n[generation 2]\nstate = enabled\ncreated = %s\nkey = base64:%s\n' \
			"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(head -c 32 /dev/urandom | base64 -w0)" >>"$tmp"
	)
	mv "$tmp" "$KR"
fi
# The mount notices the change by itself; wait for a new file to get gen 2.
picked=0
for i in $(seq 1 30); do
	echo probe >"$MNT/.probe"
	g=$(gen_of "$BACK/.probe")
	rm -f "$MNT/.probe"
	if [ "$g" = 2 ]; then
		picked=1
		break
	fi
	sleep 0.1
done
if [ $picked = 1 ]; then
	echo "   the running mount picked up generation 2 by itself (no remount)"
else
	echo "   the mount had not noticed yet; sending SIGHUP to reload the keyring"
	kill -HUP "$PID"
	sleep 0.5
fi

say "Write more files: new files use generation 2"
echo "written after the rotation" >"$ORIG/after-rotation.txt"
head -c 300000 /dev/urandom >"$ORIG/photos/sunset.raw"
for f in after-rotation.txt photos/sunset.raw; do
	write_file "$f"
	printf '     wrote %-16s %8d bytes\n' "$f" "$(stat -c %s "$ORIG/$f")"
done
show_generations
echo "   Both generations read back through the same mount:"
check_all
[ "$(gen_of "$BACK/notes.txt")" = 1 ] || die "notes.txt should still be generation 1"
[ "$(gen_of "$BACK/after-rotation.txt")" = 2 ] || die "after-rotation.txt should be generation 2"

if [ -x "$REKEY" ]; then
	say "Which files still use the old key? (header scan, writes nothing)"
	run "$REKEY" --status --keyring "$KR" "$BACK"

	say "Rekey: rewrite every generation-1 file to generation 2, online"
	run "$REKEY" --keyring "$KR" "$BACK"

	say "Status after the rekey"
	run "$REKEY" --status --keyring "$KR" "$BACK"
	show_generations
	while IFS= read -r f; do
		[ "$(gen_of "$f")" = 2 ] || die "${f#"$BACK"/} is still on generation $(gen_of "$f")"
	done < <(find "$BACK" -type f ! -name '.rekeyfs*')
	echo "   Every file is on generation 2 and still reads back through the mount:"
	check_all

	if [ -x "$KEYTOOL" ]; then
		say "Retire generation 1: destroy its key (refused while files still use it)"
		run "$KEYTOOL" destroy 1 --keyring "$KR" --source "$BACK"
		run "$KEYTOOL" list --keyring "$KR"
		sleep 0.5
		echo "   Nothing uses generation 1 any more: everything still reads back:"
		check_all
	fi
else
	say "Rekey skipped: build/rekeyfs-rekey is not built"
fi

say "Unmount"
run fusermount3 -u "$MNT"
for i in $(seq 1 50); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
mountpoint -q "$MNT" && die "still mounted"
echo "     unmounted; the backing directory keeps only ciphertext"

echo
echo "demo: done. The vault was encrypted under generation 1, rotated to"
echo "generation 2 while mounted, rekeyed online, and generation 1 retired."
