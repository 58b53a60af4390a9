#!/usr/bin/env bats
# Installed like a real package: make install/uninstall into a DESTDIR,
# man pages that render, bash completion, and a Debian package that
# unpacks and runs.

load helpers

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)

# The tests share the build directory's stripped/, man/ and deb/.
setup_file() {
	export BATS_NO_PARALLELIZE_WITHIN_FILE=true
}

setup() {
	rk_setup_tools
	command -v make >/dev/null || skip "no make"
	D=$RK_TMP/dest
}

teardown() {
	rk_teardown
}

# mk ARGS...: make in the source tree, with this run's build directory.
mk() {
	make -s --no-print-directory -C "$REPO" BUILD="$RK_BUILD" "$@"
}

# What install must put below PREFIX (p), one path a line, sorted.
expected_tree() {
	local p=$1 f
	for f in rekeyfs rekeyfs-key rekeyfs-rekey; do
		echo "$p/bin/$f"
		echo "$p/share/bash-completion/completions/$f"
		echo "/usr/lib/debug$p/bin/$f.debug"
	done
	for f in rekeyfs rekeyfs-key rekeyfs-rekey; do
		echo "$p/share/man/man8/$f.8"
	done
	echo "$p/share/man/man5/rekeyfs.conf.5"
	echo "$p/share/man/man5/rekeyfs-keyring.5"
	echo "$p/share/doc/rekeyfs/README.md"
	for f in "$REPO"/doc/*.md "$REPO"/etc/*.example; do
		[ -e "$f" ] && echo "$p/share/doc/rekeyfs/$(basename "$f")"
	done
	for f in "$REPO"/etc/*.service; do
		[ -e "$f" ] && echo "$p/lib/systemd/system/$(basename "$f")"
	done
	true
}

@test "make install puts exactly the documented tree in DESTDIR; uninstall removes it" {
	local p
	for p in /usr/local /usr; do
		mk install DESTDIR="$D" PREFIX="$p"
		diff <(cd "$D" && find . ! -type d | sed 's/^\.//' | sort) \
			<(expected_tree "$p" | sort)
		# programs: stripped, their debug info split off and linked
		local f
		for f in rekeyfs rekeyfs-key rekeyfs-rekey; do
			[ -x "$D$p/bin/$f" ]
			! readelf -S "$D$p/bin/$f" | grep -q '\.debug_info' || false
			readelf -S "$D$p/bin/$f" | grep -q '\.gnu_debuglink'
			readelf -S "$D/usr/lib/debug$p/bin/$f.debug" | grep -q '\.debug_info'
			"$D$p/bin/$f" --version | grep -q "$(cat "$REPO/VERSION")"
		done
		mk uninstall DESTDIR="$D" PREFIX="$p"
		[ -z "$(ls -A "$D")" ]
	done
	# without the debug files
	mk install DESTDIR="$D" INSTALL_DEBUG=0
	[ ! -e "$D/usr/lib/debug" ]
	mk uninstall DESTDIR="$D" INSTALL_DEBUG=0
	[ -z "$(ls -A "$D")" ]
}

@test "man pages render without warnings and carry the version" {
	command -v man >/dev/null || skip "no man"
	mk install DESTDIR="$D" INSTALL_DEBUG=0
	local m out
	for m in "$D"/usr/local/share/man/man*/*; do
		out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null)
		[ -z "$out" ] || { echo "$m: $out"; false; }
		LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$m" 2>/dev/null | grep -q "rekeyfs $(cat "$REPO/VERSION")"
		if command -v mandoc >/dev/null; then
			mandoc -T lint -W warning "$m"
		fi
	done
	# every option of --help is in the man page
	local o
	for o in $("$REKEYFS_KEY" --help | grep -oE -- '--[a-z-]+' | sort -u); do
		MANWIDTH=200 man -l "$D/usr/local/share/man/man8/rekeyfs-key.8" 2>/dev/null | grep -q -- "$o" ||
			{ echo "rekeyfs-key.8 lacks $o"; false; }
	done
	for o in $("$REKEYFS_REKEY" --help | grep -oE -- '--[a-z-]+' | sort -u); do
		MANWIDTH=200 man -l "$D/usr/local/share/man/man8/rekeyfs-rekey.8" 2>/dev/null | grep -q -- "$o" ||
			{ echo "rekeyfs-rekey.8 lacks $o"; false; }
	done
}

@test "bash completion completes commands, options and generation numbers" {
	local c=$REPO/contrib/bash-completion/rekeyfs
	"$REKEYFS_KEY" init -k "$KR" -q
	"$REKEYFS_KEY" add -k "$KR" -q
	run bash -c '
		# the two bash-completion helpers the functions use, reduced
		_init_completion() {
			cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
			words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
		}
		_filedir() { COMPREPLY=(FILE); }
		_command() { COMPREPLY=(CMD); }
		compopt() { :; }
		. "$1"
		t() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
		      "$(complete -p "$1" | sed "s/.*-F \([^ ]*\) .*/\1/")"
		      echo "${COMPREPLY[*]}"; }
		t rekeyfs-key pro
		t rekeyfs-key -k "$2" destroy ""
		t rekeyfs-key --from ""
		t rekeyfs-key add --pri
		t rekeyfs-rekey --sta
		t rekeyfs --ini
		t rekeyfs -o allow_other,auto_
	' _ "$c" "$KR"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "promote protect" ]
	[ "${lines[1]}" = "1 2" ]
	[ "${lines[2]}" = "FILE -" ]
	[ "${lines[3]}" = "--primary" ]
	[ "${lines[4]}" = "--status" ]
	[ "${lines[5]}" = "--init" ]
	[ "${lines[6]}" = "allow_other,auto_unmount" ]
}

@test "make deb builds a package that installs into a scratch root and runs" {
	command -v dpkg-deb >/dev/null || skip "no dpkg-deb"
	command -v dpkg-shlibdeps >/dev/null || skip "no dpkg-shlibdeps (dpkg-dev)"
	run mk deb
	echo "$output"
	[ "$status" -eq 0 ]
	local deb
	deb=$(ls "$RK_BUILD"/rekeyfs_"$(cat "$REPO/VERSION")"_*.deb)
	dpkg-deb -I "$deb" | grep -q '^ Package: rekeyfs$'
	dpkg-deb -I "$deb" | grep -q '^ Depends: .*libfuse3.*fuse3'
	# unpacked: the programs run from there
	dpkg -x "$deb" "$RK_TMP/x"
	"$RK_TMP/x/usr/bin/rekeyfs" --version | grep -q "^rekeyfs $(cat "$REPO/VERSION")"
	"$RK_TMP/x/usr/bin/rekeyfs-key" --version
	"$RK_TMP/x/usr/bin/rekeyfs-rekey" --version
	[ -f "$RK_TMP/x/usr/share/man/man8/rekeyfs.8.gz" ]
	man -l "$RK_TMP/x/usr/share/man/man8/rekeyfs.8.gz" >/dev/null 2>&1
	# installed by dpkg into an empty root of its own
	local r=$RK_TMP/root
	mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates"
	: > "$r/var/lib/dpkg/status"
	dpkg --root="$r" --force-depends --force-script-chrootless -i "$deb"
	dpkg --root="$r" -s rekeyfs | grep -q '^Status: install ok installed'
	"$r/usr/bin/rekeyfs" --version
	dpkg --root="$r" -L rekeyfs | grep -q '/usr/share/bash-completion/completions/rekeyfs-key'
	dpkg --root="$r" -r rekeyfs
	[ ! -e "$r/usr/bin/rekeyfs" ]
}
