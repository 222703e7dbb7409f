#!/usr/bin/env bash
# Build stage "fastsurfer" of the Dockerfile: FastSurfer in its own environment, or a recorded absence.
# Inputs: /inputs/fastsurfer (a checkout) else git clone of FASTSURFER_SOURCE at FASTSURFER_VERSION ("none":
# skip); /inputs/fastsurfer-checkpoints/*.pkl, the rest downloaded unless FASTSURFER_CHECKPOINTS=none;
# TORCH_VARIANT chooses FastSurfer's requirements file (cpu: requirements.cpu.txt, cuXXX: requirements.txt,
# which FastSurfer writes for one CUDA variant) and is checked after the install.
set -euo pipefail
STATUS=/opt/fastsurfer-status.json
HOME_DIR=/opt/FastSurfer
VENV=/opt/fastsurfer-venv
mkdir -p "$HOME_DIR" "$VENV"
if [ -f /inputs/pip.conf ]; then export PIP_CONFIG_FILE=/inputs/pip.conf; fi
if [ -f /inputs/ca.crt ]; then  # a CA bundle for pip, git, requests (docker/build.sh --ca-bundle)
    export PIP_CERT=/inputs/ca.crt REQUESTS_CA_BUNDLE=/inputs/ca.crt SSL_CERT_FILE=/inputs/ca.crt GIT_SSL_CAINFO=/inputs/ca.crt
fi

record() {  # record KEY=VALUE... as JSON (values are strings, "true"/"false" are booleans)
    python3 - "$@" > "$STATUS" <<'PY'
import hashlib, json, sys
from pathlib import Path
out = {}
for item in sys.argv[1:]:
    key, _, value = item.partition("=")
    out[key] = {"true": True, "false": False}.get(value, value)
    if key == "checkpoints_dir":
        out["checkpoints"] = {p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
                              for p in sorted(Path(value).glob("*.pkl"))}
print(json.dumps(out, indent=1))
PY
}

skip() {
    echo "qsmapp build: FastSurfer SKIPPED ($1); the image has no FastSurfer (--seg-backend fastsurfer unavailable)" >&2
    record installed=false "reason=$1"
    exit 0
}

if [ -d /inputs/fastsurfer ] && [ -n "$(ls -A /inputs/fastsurfer)" ]; then
    cp -a /inputs/fastsurfer/. "$HOME_DIR/"
    origin="local checkout"
elif [ "${FASTSURFER_SOURCE}" = none ]; then
    skip "FASTSURFER_SOURCE=none and no docker/inputs/fastsurfer"
else
    apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/*
    git clone --depth 1 --branch "${FASTSURFER_VERSION}" "${FASTSURFER_SOURCE}" "$HOME_DIR"
    origin="${FASTSURFER_SOURCE}@${FASTSURFER_VERSION}"
fi
[ -f "$HOME_DIR/run_fastsurfer.sh" ] || { echo "qsmapp build: $origin has no run_fastsurfer.sh" >&2; exit 1; }
commit=$(git -C "$HOME_DIR" rev-parse HEAD 2>/dev/null || echo unknown)
rm -rf "$HOME_DIR/.git"

case "${TORCH_VARIANT}" in
    cpu) requirements="$HOME_DIR/requirements.cpu.txt" ;;
    *) requirements="$HOME_DIR/requirements.txt" ;;
esac
[ -f "$requirements" ] || { echo "qsmapp build: FastSurfer has no $(basename "$requirements")" >&2; exit 1; }
if ! grep -q "download.pytorch.org/whl/${TORCH_VARIANT}\b" "$requirements"; then
    echo "qsmapp build: $(basename "$requirements") of FastSurfer is not for TORCH_VARIANT=${TORCH_VARIANT}:" >&2
    grep -i "index-url" "$requirements" >&2 || true
    exit 1
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir -r "$requirements"
torch=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
cuda=$("$VENV/bin/python" -c "import torch; print(torch.version.cuda or 'none')")
if [ "${TORCH_VARIANT}" = cpu ]; then
    if [ "$cuda" != none ] || "$VENV/bin/pip" list 2>/dev/null | grep -qi '^nvidia-'; then
        echo "qsmapp build: TORCH_VARIANT=cpu but torch $torch (CUDA $cuda) / nvidia-* wheels were installed" >&2
        exit 1
    fi
fi

mkdir -p "$HOME_DIR/checkpoints"
if [ -d /inputs/fastsurfer-checkpoints ]; then
    find /inputs/fastsurfer-checkpoints -maxdepth 1 -name '*.pkl' -exec cp {} "$HOME_DIR/checkpoints/" \;
fi
if [ "${FASTSURFER_CHECKPOINTS}" != none ]; then
    (cd "$HOME_DIR" && PYTHONPATH="$HOME_DIR" "$VENV/bin/python" FastSurferCNN/download_checkpoints.py --all)  # --seg_only runs VINN, CerebNet and HypVINN
fi
checkpoints=$(cd "$HOME_DIR/checkpoints" && ls ./*.pkl 2>/dev/null | tr '\n' ' ' || true)
if [ -z "$checkpoints" ]; then
    echo "qsmapp build: FastSurfer checkpoints ABSENT (FASTSURFER_CHECKPOINTS=none, none in docker/inputs)" >&2
fi
chmod -R a+rX "$HOME_DIR" "$VENV"
record installed=true "origin=$origin" "version=${FASTSURFER_VERSION}" "commit=$commit" "torch=$torch" \
    "torch_cuda=$cuda" "torch_variant=${TORCH_VARIANT}" "checkpoints_dir=$HOME_DIR/checkpoints"
