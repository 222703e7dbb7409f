#!/usr/bin/env bash
# Build the qsmapp image (docker, podman or buildah, whichever works here) and the SIF (apptainer or
# singularity), from the public sources or from local copies of every external input.
#
#   docker/build.sh                                   # public sources: Docker Hub base, GitHub, OSF, TemplateFlow
#   docker/build.sh --offline --base localhost/py311 --nextqsm-weights ~/nextqsm-weights.tar \
#       --templateflow ~/.cache/templateflow --fastsurfer ~/FastSurfer --fastsurfer-checkpoints ~/ckpt
#
# Options (an input given as "none" is skipped: the image records its absence in /opt/qsmapp/manifest.json
# and qsmapp says so when a step needs it):
#   --base IMAGE                 Python base image (PYTHON_IMAGE; default python:3.11.10-slim-bookworm); any
#                                image with python3 and its venv module
#   --fastsurfer URL|DIR|ARCHIVE|none   FastSurfer: git URL (default GitHub), a checkout, or a .tar[.gz] of one
#   --fastsurfer-version TAG     git tag to clone (default: the Dockerfile's)
#   --fastsurfer-checkpoints DIR|none   folder of FastSurfer *.pkl checkpoints (default: download missing ones)
#   --torch-variant cpu|cuXXX    FastSurfer's torch (default cpu)
#   --nextqsm-weights DIR|ARCHIVE|none  NeXtQSM weight files, or the authors' nextqsm-weights.tar (default OSF)
#   --templateflow DIR|none      a TemplateFlow folder holding tpl-MNI152NLin2009cAsym (default: download)
#   --pip-conf FILE              pip settings for the build (index URL, ...); used in build stages only
#   --ca-bundle FILE             CA bundle for pip inside the build (e.g. behind a TLS-inspecting proxy)
#   --extra nextqsm|nextqsm-gpu  qsmapp extra (default nextqsm: CPU TensorFlow)
#   --offline                    every input not given above is "none" (nothing fetched but pip packages)
#   --engine docker|podman|buildah   default: the first that works
#   --network MODE               build network (e.g. host), passed to the engine
#   --tag NAME                   image name (default qsmapp:$(cat version))
#   --sif FILE                   also build this SIF (default qsmapp.sif when apptainer/singularity exists)
#   --no-sif                     do not build the SIF
#   --dry-run                    print the commands, build nothing
# Environment: ENGINE (as --engine), APPTAINER (the apptainer/singularity command, e.g.
# tests/container/sandbox-apptainer.sh).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
INPUTS="$REPO/docker/inputs"
VERSION=$(cat "$REPO/version")
TAG="qsmapp:$VERSION"
BASE="" FASTSURFER="" FASTSURFER_VERSION="" CHECKPOINTS="" WEIGHTS="" TEMPLATES="" PIP_CONF="" CA_BUNDLE=""
EXTRA=nextqsm TORCH_VARIANT=cpu OFFLINE=0 ENGINE="${ENGINE:-}" NETWORK="" SIF="" NO_SIF=0 DRY_RUN=0

die() { echo "build.sh: $*" >&2; exit 2; }
say() { echo "build.sh: $*" >&2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --base) BASE=$2; shift ;;
        --fastsurfer) FASTSURFER=$2; shift ;;
        --fastsurfer-version) FASTSURFER_VERSION=$2; shift ;;
        --fastsurfer-checkpoints) CHECKPOINTS=$2; shift ;;
        --torch-variant) TORCH_VARIANT=$2; shift ;;
        --nextqsm-weights) WEIGHTS=$2; shift ;;
        --templateflow) TEMPLATES=$2; shift ;;
        --pip-conf) PIP_CONF=$2; shift ;;
        --ca-bundle) CA_BUNDLE=$2; shift ;;
        --extra) EXTRA=$2; shift ;;
        --offline) OFFLINE=1 ;;
        --engine) ENGINE=$2; shift ;;
        --network) NETWORK=$2; shift ;;
        --tag) TAG=$2; shift ;;
        --sif) SIF=$2; shift ;;
        --no-sif) NO_SIF=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if [ "$OFFLINE" = 1 ]; then
    : "${FASTSURFER:=none}" "${CHECKPOINTS:=none}" "${WEIGHTS:=none}" "${TEMPLATES:=none}"
fi

# --- the engine --------------------------------------------------------------------------------------
works() { command -v "$1" >/dev/null 2>&1 && "$1" info >/dev/null 2>&1; }
if [ -z "$ENGINE" ]; then
    for candidate in docker podman buildah; do
        if works "$candidate"; then ENGINE=$candidate; break; fi
    done
fi
[ -n "$ENGINE" ] || die "no working container engine (docker, podman or buildah): install one, or start its daemon"
say "engine: $ENGINE ($("$ENGINE" --version 2>/dev/null | head -n 1))"

# --- stage the local inputs in docker/inputs (copied into build stages only) -------------------------------
run() { if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi; }
find "$INPUTS" -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +
stage_tree() {  # stage_tree SOURCE NAME: a folder is copied, an archive extracted (one top folder stripped)
    local source=$1 dest="$INPUTS/$2"
    mkdir -p "$dest"
    if [ -d "$source" ]; then
        cp -a "$source/." "$dest/"
    elif [ -f "$source" ]; then
        case "$source" in
            *.tar|*.tar.gz|*.tgz|*.tar.bz2|*.tar.xz)
                if [ "$(tar -tf "$source" | cut -d/ -f1 | sort -u | wc -l)" = 1 ] && [ "$2" = fastsurfer ]; then
                    tar -xf "$source" -C "$dest" --strip-components 1
                else
                    cp "$source" "$dest/"   # the weights script reads the archive itself
                fi ;;
            *) die "$source: expected a folder or a .tar[.gz] archive" ;;
        esac
    else
        die "$source does not exist"
    fi
}
BUILD_ARGS=(--build-arg "VERSION=$VERSION" --build-arg "QSMAPP_EXTRA=$EXTRA" --build-arg "TORCH_VARIANT=$TORCH_VARIANT"
            --build-arg "CONSTRAINTS_SHA256=sha256:$(sha256sum "$REPO/constraints.txt" | cut -d' ' -f1)")
[ -n "$BASE" ] && BUILD_ARGS+=(--build-arg "PYTHON_IMAGE=$BASE")
[ -n "$FASTSURFER_VERSION" ] && BUILD_ARGS+=(--build-arg "FASTSURFER_VERSION=$FASTSURFER_VERSION")
case "$FASTSURFER" in
    "") ;;
    none) BUILD_ARGS+=(--build-arg FASTSURFER_SOURCE=none); say "FastSurfer: none (skipped)" ;;
    *://*|git@*) BUILD_ARGS+=(--build-arg "FASTSURFER_SOURCE=$FASTSURFER") ;;
    *) stage_tree "$FASTSURFER" fastsurfer; say "FastSurfer: local $FASTSURFER" ;;
esac
case "$CHECKPOINTS" in
    "") ;;
    none) BUILD_ARGS+=(--build-arg FASTSURFER_CHECKPOINTS=none); say "FastSurfer checkpoints: none (skipped)" ;;
    *) stage_tree "$CHECKPOINTS" fastsurfer-checkpoints; BUILD_ARGS+=(--build-arg FASTSURFER_CHECKPOINTS=none)
       say "FastSurfer checkpoints: local $CHECKPOINTS" ;;
esac
case "$WEIGHTS" in
    "") ;;
    none) BUILD_ARGS+=(--build-arg NEXTQSM_WEIGHTS_SOURCE=none); say "NeXtQSM weights: none (skipped)" ;;
    *) stage_tree "$WEIGHTS" nextqsm-weights; say "NeXtQSM weights: local $WEIGHTS" ;;
esac
case "$TEMPLATES" in
    "") ;;
    none) BUILD_ARGS+=(--build-arg TEMPLATEFLOW_SOURCE=none); say "TemplateFlow: none (skipped)" ;;
    *) stage_tree "$TEMPLATES" templateflow; say "TemplateFlow: local $TEMPLATES" ;;
esac
[ -z "$PIP_CONF" ] || cp "$PIP_CONF" "$INPUTS/pip.conf"
[ -z "$CA_BUNDLE" ] || cp "$CA_BUNDLE" "$INPUTS/ca.crt"
NET_ARGS=()
[ -z "$NETWORK" ] || NET_ARGS=(--network "$NETWORK")

# --- the image ------------------------------------------------------------------------------------------
start=$(date +%s)
case "$ENGINE" in
    docker) run docker build "${NET_ARGS[@]}" "${BUILD_ARGS[@]}" -t "$TAG" -f "$REPO/Dockerfile" "$REPO" ;;
    # --format docker: the OCI format drops SHELL (podman/buildah warn and run RUN with /bin/sh)
    podman) run podman build --format docker "${NET_ARGS[@]}" "${BUILD_ARGS[@]}" -t "$TAG" -f "$REPO/Dockerfile" "$REPO" ;;
    buildah) run buildah bud --format docker "${NET_ARGS[@]}" "${BUILD_ARGS[@]}" -t "$TAG" -f "$REPO/Dockerfile" "$REPO" ;;
    *) die "unknown engine $ENGINE" ;;
esac
image_seconds=$(( $(date +%s) - start ))
say "image $TAG built in ${image_seconds} s"
[ "$DRY_RUN" = 1 ] || "$ENGINE" run --rm "$TAG" --version --verbose 2>/dev/null \
    || "$ENGINE" run --rm --entrypoint cat "$TAG" /opt/qsmapp/manifest.json 2>/dev/null | head -n 5 || true

# --- the SIF -----------------------------------------------------------------------------------------------
[ "$NO_SIF" = 1 ] && exit 0
APPTAINER=${APPTAINER:-$(command -v apptainer || command -v singularity || true)}
if [ -z "$APPTAINER" ]; then
    [ -z "$SIF" ] || die "no apptainer/singularity here to build $SIF"
    say "no apptainer/singularity: SIF not built (the image is done)"
    exit 0
fi
SIF=${SIF:-$REPO/qsmapp.sif}
start=$(date +%s)
if [ "$ENGINE" = docker ]; then
    run "$APPTAINER" build --force --build-arg "IMAGE=$TAG" "$SIF" "$REPO/singularity.def"
else  # podman/buildah storage is not a Docker daemon: go through an OCI archive
    archive=$(mktemp -d)/qsmapp-oci.tar
    run "$ENGINE" push "$TAG" "oci-archive:$archive"
    run "$APPTAINER" build --force --build-arg BOOTSTRAP=oci-archive --build-arg "IMAGE=$archive" "$SIF" \
        "$REPO/singularity.def"
    rm -rf "$(dirname "$archive")"
fi
say "SIF $SIF built in $(( $(date +%s) - start )) s"
