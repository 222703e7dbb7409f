#!/usr/bin/env bash
# Container smoke test: build the image (and the SIF) from a local debootstrap base, run the example dataset
# in it the way users do, compare with the same run on the host. One command, as root:
#
#   tests/container/smoke.sh            # build + run; the report is $WORK/report.json
#
# Environment: WORK (default /tmp/qsmapp-smoke), HOST_PYTHON (a python with qsmapp installed, default
# .venv/bin/python; the host comparison is skipped without one), APPTAINER (the apptainer command, default
# `apptainer`, e.g. tests/container/sandbox-apptainer.sh where only a chroot of Debian sid has it),
# SKIP_BUILD=1 (reuse the image), SKIP_SIF=1, N_PROCS (default 2), HOST_ROUNDS (default "cold warm": the host
# run with an empty numba cache, then again with it filled), TIMING_CHECK=report (record the run times
# without failing when the container is slower than the host's first run).
# Prints one line per check and closes with "N passed, N failed"; exits 0 when nothing failed. When podman
# cannot be installed or run here it prints why and exits 0 (nothing checked).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=$(cat "$REPO/version")
WORK=${WORK:-/tmp/qsmapp-smoke}
HOST_PYTHON=${HOST_PYTHON:-$REPO/.venv/bin/python}
N_PROCS=${N_PROCS:-2}
IMAGE=localhost/qsmapp:$VERSION
DEBIAN_BASE=localhost/qsmapp-test/debian-minbase:bookworm
PYTHON_BASE=localhost/qsmapp-test/python:3.11-bookworm
UID_A=1234 UID_B=5678
PASSED=0 FAILED=0
declare -A REPORT

log() { echo "smoke: $*" >&2; }
exec 3>&1  # the verdicts go to the original stdout, even when a check's command output is redirected to a log
check() {  # check NAME COMMAND...: run it, count it
    local name=$1; shift
    if "$@"; then PASSED=$((PASSED + 1)); echo "PASS $name" >&3; else FAILED=$((FAILED + 1)); echo "FAIL $name" >&3; fi
}
finish() {
    {
        echo "{"
        for key in "${!REPORT[@]}"; do echo "  \"$key\": \"${REPORT[$key]}\","; done
        echo "  \"passed\": $PASSED, \"failed\": $FAILED"
        echo "}"
    } > "$WORK/report.json"
    cat "$WORK/report.json"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
    exit $?
}
skip_all() { echo "container smoke test SKIPPED: $*"; exit 0; }
seconds() { local start=$1; echo $(( $(date +%s) - start )); }

mkdir -p "$WORK"
# --- tools: podman (+ debootstrap), installed with apt when missing ------------------------------------
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
    [ "$(id -u)" = 0 ] || skip_all "podman/debootstrap missing and not root to install them"
    log "installing podman, debootstrap with apt"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah debootstrap runc \
        uidmap fuse-overlayfs; } > "$WORK/apt.log" 2>&1 || skip_all "apt-get could not install podman (see $WORK/apt.log)"
fi
if ! podman run --rm --help >/dev/null 2>&1 || ! podman info >/dev/null 2>&1; then
    skip_all "podman does not run here"
fi
# Restricted sandboxes (nested, no netns/cgroups of their own) need runc, fixed ulimits and no netns.
if ! podman run --rm "$DEBIAN_BASE" true >/dev/null 2>&1 && [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF=$REPO/tests/container/containers.conf
fi

# --- base images: debootstrap → podman import → python3 + venv ------------------------------------------
if ! podman image exists "$DEBIAN_BASE"; then
    log "debootstrap bookworm (minbase)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
        || skip_all "debootstrap failed (see $WORK/debootstrap.log)"
    tar -C "$WORK/rootfs" -c . | podman import - "$DEBIAN_BASE" >/dev/null || skip_all "podman import failed"
    rm -rf "$WORK/rootfs"
fi
if ! podman run --rm "$DEBIAN_BASE" true >/dev/null 2>&1; then
    skip_all "podman cannot run a container here (even with $REPO/tests/container/containers.conf)"
fi
if ! podman image exists "$PYTHON_BASE"; then
    podman build --network=host -t "$PYTHON_BASE" -f "$REPO/tests/container/python-base.Containerfile" \
        "$REPO/tests/container" > "$WORK/base.log" 2>&1 || { log "see $WORK/base.log"; FAILED=1; finish; }
fi

# --- the image -------------------------------------------------------------------------------------------
CA_ARGS=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && CA_ARGS=(--ca-bundle /etc/ssl/certs/ca-certificates.crt)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    start=$(date +%s)
    check "image builds from the local base (docker/build.sh, offline inputs)" \
        bash -c "'$REPO/docker/build.sh' --engine podman --network host --base '$PYTHON_BASE' --offline ${CA_ARGS[*]} \
                 --tag '$IMAGE' --no-sif > '$WORK/build.log' 2>&1"
    REPORT[build_seconds]=$(seconds "$start")
    [ "$FAILED" = 0 ] || { tail -30 "$WORK/build.log"; finish; }
fi
REPORT[image_size_bytes]=$(podman image inspect --format '{{.Size}}' "$IMAGE")
label=$(podman image inspect --format '{{index .Labels "io.github.qsmapp.constraints.sha256"}}' "$IMAGE")
check "label io.github.qsmapp.constraints.sha256 is constraints.txt's hash" \
    test "$label" = "sha256:$(sha256sum "$REPO/constraints.txt" | cut -d' ' -f1)"

# Every run below: read-only root, tmpfs /tmp, no network, an arbitrary UID, input read-only.
RUN=(podman run --rm --read-only --network=none)
check "--version prints the version" bash -c "[ \"\$(${RUN[*]} -u $UID_A:$UID_A --tmpfs /tmp $IMAGE --version)\" = 'qsmapp $VERSION' ]"
"${RUN[@]}" -u $UID_A:$UID_A --tmpfs /tmp "$IMAGE" --version --verbose > "$WORK/version.txt" 2>&1
check "--version --verbose lists what the offline image lacks" \
    grep -q "MISSING from this image: .*NeXtQSM weights.*FastSurfer" "$WORK/version.txt"

# --- the example dataset --------------------------------------------------------------------------------
rm -rf "$WORK/bids" "$WORK/out-"*
podman run --rm --network=none -u 0:0 -v "$WORK:/work" --entrypoint qsmapp-simulate "$IMAGE" /work/bids > /dev/null 2>&1
chmod -R a+rX "$WORK/bids"
TEMPLATE=/bids/derivatives/ground-truth/tpl-phantom
PARTICIPANT=(participant --outputs qsm swi r2s seg analysis --seg-template "$TEMPLATE" --n-procs "$N_PROCS"
             --omp-nthreads 1)
mkdir -p "$WORK/out-container" && chown $UID_A:$UID_A "$WORK/out-container"
start=$(date +%s)
check "participant level in the container (read-only, uid $UID_A, --network=none)" \
    "${RUN[@]}" -u $UID_A:$UID_A --tmpfs /tmp -v "$WORK/bids:/bids:ro" -v "$WORK/out-container:/out" "$IMAGE" \
        /bids /out "${PARTICIPANT[@]}" > "$WORK/participant-container.log" 2>&1
REPORT[participant_container_seconds]=$(seconds "$start")
check "group level in the container" \
    "${RUN[@]}" -u $UID_A:$UID_A --tmpfs /tmp -v "$WORK/bids:/bids:ro" -v "$WORK/out-container:/out" "$IMAGE" \
        /bids /out group --n-procs "$N_PROCS" > "$WORK/group-container.log" 2>&1
check "outputs are owned by the calling UID" \
    bash -c "[ -z \"\$(find '$WORK/out-container' ! -uid $UID_A | head -n 1)\" ] && [ -n \"\$(find '$WORK/out-container' -name '*_Chimap.nii.gz')\" ]"
check "group tables written" bash -c "ls '$WORK/out-container'/group/*.tsv >/dev/null 2>&1 || find '$WORK/out-container' -path '*group*' -name '*.tsv' | grep -q ."
check "DatasetLinks.raw is not the container path" \
    bash -c "! grep -q '\"raw\": \"../bids\"' '$WORK/out-container/dataset_description.json'"

# A shared /tmp (Apptainer's default): a second user after a first one must not trip on their caches.
mkdir -p "$WORK/shared-tmp" && chmod 1777 "$WORK/shared-tmp"
for uid in $UID_A $UID_B; do
    mkdir -p "$WORK/out-shared-$uid" && chown $uid:$uid "$WORK/out-shared-$uid"
    check "participant run as uid $uid with a /tmp shared with other users" \
        "${RUN[@]}" -u $uid:$uid -v "$WORK/shared-tmp:/tmp" -v "$WORK/bids:/bids:ro" -v "$WORK/out-shared-$uid:/out" \
            "$IMAGE" /bids /out participant --participant-label 01 --outputs qsm --skip-bids-validation \
            > "$WORK/shared-$uid.log" 2>&1
done
check "no run folder left in the shared /tmp" bash -c "[ -z \"\$(ls -A '$WORK/shared-tmp')\" ]"

# podman mounts a tmpfs on /tmp by itself with --read-only (docker does not): turn that off to see docker's case
"${RUN[@]}" --read-only-tmpfs=false -u $UID_A:$UID_A -v "$WORK/bids:/bids:ro" "$IMAGE" /bids /tmp/out participant \
    > "$WORK/no-tmpfs.log" 2>&1
code=$?
check "--read-only without --tmpfs: exit 64 and the hint" \
    bash -c "[ $code = 64 ] && grep -q -- '--tmpfs /tmp' '$WORK/no-tmpfs.log'"
mkdir -p "$WORK/out-nextqsm" && chown $UID_A:$UID_A "$WORK/out-nextqsm"
"${RUN[@]}" -u $UID_A:$UID_A --tmpfs /tmp -v "$WORK/bids:/bids:ro" -v "$WORK/out-nextqsm:/out" "$IMAGE" /bids /out \
    participant --participant-label 01 --outputs qsm --qsm-algorithm nextqsm --skip-bids-validation \
    > "$WORK/nextqsm.log" 2>&1
check "a step needing what the image lacks says so (NeXtQSM weights)" \
    grep -q "built without the NeXtQSM weights" "$WORK/nextqsm.log"

# --- the same run on the host, and the Chimaps compared ------------------------------------------------------
compare() {  # compare OUT_A OUT_B: max abs diff of every participant-level Chimap (ppm) <= 1e-5
    "$HOST_PYTHON" - "$1" "$2" <<'PY'
import sys
from pathlib import Path
import nibabel as nib
import numpy as np
a, b = Path(sys.argv[1]), Path(sys.argv[2])
worst, count = 0.0, 0
for path in sorted(a.glob("sub-*/**/*_Chimap.nii.gz")):  # not group/ (the host runs participant level only)
    if "_space-" in path.name:  # template-space maps the group level adds (the host runs participant level only)
        continue
    other = b / path.relative_to(a)
    diff = np.abs(np.asarray(nib.load(path).dataobj, float) - np.asarray(nib.load(other).dataobj, float)).max()
    worst, count = max(worst, float(diff)), count + 1
print(f"{worst:.3g}")
sys.exit(0 if count and worst <= 1e-5 else 1)
PY
}
if [ -x "$HOST_PYTHON" ] && "$HOST_PYTHON" -c "import bids_app" 2>/dev/null; then
    HOST_BIN=$(dirname "$HOST_PYTHON")
    for round in ${HOST_ROUNDS:-cold warm}; do
        rm -rf "$WORK/out-host"
        [ $round = cold ] && rm -rf "$WORK/host-numba"
        start=$(date +%s)
        env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_CACHE_DIR="$WORK/host-numba" \
            "$HOST_BIN/qsmapp" "$WORK/bids" "$WORK/out-host" participant --outputs qsm swi r2s seg analysis \
            --seg-template "$WORK/bids/derivatives/ground-truth/tpl-phantom" --n-procs "$N_PROCS" --omp-nthreads 1 \
            > "$WORK/participant-host-$round.log" 2>&1
        REPORT[participant_host_${round}_seconds]=$(seconds "$start")
    done
    diff=$(compare "$WORK/out-container" "$WORK/out-host")
    check "Chimap container vs host: max abs diff $diff ppm <= 1e-5" compare "$WORK/out-container" "$WORK/out-host"
    REPORT[chimap_max_abs_diff_container_host_ppm]=$diff
    # TIMING_CHECK=report (CI) records the times without judging them (a shared machine's load varies)
    if [ "${TIMING_CHECK:-check}" = check ]; then
        check "the container is not slower than the host's first run" \
            test "${REPORT[participant_container_seconds]}" -le "$(( REPORT[participant_host_cold_seconds] + 5 ))"
    fi
else
    log "no host qsmapp ($HOST_PYTHON): host comparison skipped"
fi

# --- the SIF -----------------------------------------------------------------------------------------------
APPTAINER=${APPTAINER:-apptainer}
if [ "${SKIP_SIF:-0}" = 1 ] || ! $APPTAINER --version >/dev/null 2>&1; then
    log "no apptainer ($APPTAINER): SIF checks skipped"
    finish
fi
SIF=$WORK/qsmapp.sif
start=$(date +%s)
rm -f "$WORK/qsmapp-oci.tar"
check "SIF builds from the image (singularity.def)" bash -c "
    podman push -q '$IMAGE' 'oci-archive:$WORK/qsmapp-oci.tar' && \
    $APPTAINER build --force --build-arg BOOTSTRAP=oci-archive --build-arg 'IMAGE=$WORK/qsmapp-oci.tar' '$SIF' \
        '$REPO/singularity.def' > '$WORK/sif-build.log' 2>&1"
REPORT[sif_build_seconds]=$(seconds "$start")
rm -f "$WORK/qsmapp-oci.tar"
[ -f "$SIF" ] || finish
REPORT[sif_size_bytes]=$(stat -c %s "$SIF")
check "apptainer test (the %test section: qsmapp --version --verbose)" \
    bash -c "$APPTAINER test '$SIF' > '$WORK/sif-test.log' 2>&1 && grep -q 'qsmapp $VERSION' '$WORK/sif-test.log'"
# APPTAINER_RUN_ARGS adds options (e.g. --unsquash where FUSE is not available to users); the sandbox
# wrapper runs it as AS_UID (a plain apptainer runs as whoever runs this script).
mkdir -p "$WORK/out-sif" && chown $UID_A:$UID_A "$WORK/out-sif"
start=$(date +%s)
check "SIF: apptainer run --cleanenv --containall -B, participant level" \
    env AS_UID=$UID_A $APPTAINER run --cleanenv --containall ${APPTAINER_RUN_ARGS:-} \
        -B "$WORK/bids:/bids:ro" -B "$WORK/out-sif:/out" "$SIF" /bids /out "${PARTICIPANT[@]}" \
        > "$WORK/participant-sif.log" 2>&1
REPORT[participant_sif_seconds]=$(seconds "$start")
if [ -x "$HOST_PYTHON" ]; then
    diff=$(compare "$WORK/out-sif" "$WORK/out-container")
    check "Chimap SIF vs image: max abs diff $diff ppm <= 1e-5" compare "$WORK/out-sif" "$WORK/out-container"
    REPORT[chimap_max_abs_diff_sif_container_ppm]=$diff
fi
finish
