# Suite-wide checks: a run that leaves a rekeyfs mount behind fails.

setup_suite() {
	export BATS_NO_PARALLELIZE_WITHIN_FILE=true
}

teardown_suite() {
	local left
	left=$(grep -E ' fuse\.rekeyfs ' /proc/mounts | grep -E '/tmp/rekeyfs-test\.' || true)
	if [ -n "$left" ]; then
		echo "rekeyfs mounts left behind by the tests:" >&2
		echo "$left" >&2
		return 1
	fi
}
