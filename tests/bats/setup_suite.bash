# Suite-wide checks: a run that leaves a rekeyfs mount behind fails.
# Each run tags its temp directories, so concurrent runs don't blame each
# other.

setup_suite() {
	export BATS_NO_PARALLELIZE_WITHIN_FILE=true
	RK_RUN_TAG=$$
	export RK_RUN_TAG
}

teardown_suite() {
	local left
	left=$(grep -E ' fuse\.rekeyfs ' /proc/mounts |
		grep -F " /tmp/rekeyfs-test.$RK_RUN_TAG." || true)
	if [ -n "$left" ]; then
		echo "rekeyfs mounts left behind by the tests:" >&2
		echo "$left" >&2
		return 1
	fi
}
