#!/usr/bin/env bash
# CI step after the test suite: the container smoke test (tests/container/smoke.sh) without the SIF, when this
# machine can run it. It skips, with a line saying why and exit 0, when not root, when podman or debootstrap
# cannot be installed or run, when a package index could not be reached during the build, or when it runs past
# QSMAPP_CI_CONTAINER_TIMEOUT seconds (default 2700); QSMAPP_CI_CONTAINER=0 turns it off. Any other failure
# (the image does not build, a run fails, the Chimap differs from the host's) fails CI.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
say() { echo "container smoke test: $*"; }
if [ "${QSMAPP_CI_CONTAINER:-1}" = 0 ]; then say "skipped (QSMAPP_CI_CONTAINER=0)"; exit 0; fi
if [ "$(id -u)" != 0 ]; then say "skipped (needs root for podman and debootstrap)"; exit 0; fi
WORK=$(mktemp -d /tmp/qsmapp-ci-smoke.XXXXXX)
start=$(date +%s)
SKIP_SIF=1 TIMING_CHECK=report HOST_ROUNDS=cold WORK="$WORK" HOST_PYTHON="${HOST_PYTHON:-$REPO/.venv/bin/python}" \
    timeout --kill-after=60 "${QSMAPP_CI_CONTAINER_TIMEOUT:-2700}" bash "$REPO/tests/container/smoke.sh"
rc=$?
say "$(( $(date +%s) - start )) s"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "skipped: did not finish within ${QSMAPP_CI_CONTAINER_TIMEOUT:-2700} s (not counted as a failure)"
    rc=0
elif [ "$rc" != 0 ] && grep -qE "ConnectionError|ReadTimeoutError|Temporary failure in name resolution|Max retries exceeded|Could not resolve host|Failed to establish a new connection" "$WORK/build.log" 2>/dev/null; then
    say "skipped: a package index could not be reached during the build (see $WORK/build.log)"
    rc=0
fi
[ "$rc" = 0 ] && rm -rf "$WORK"
# Each build leaves its stages as dangling images (GBs): keep the disk from filling up run after run.
command -v podman >/dev/null && podman image prune -f >/dev/null 2>&1
exit "$rc"
