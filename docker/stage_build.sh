#!/usr/bin/env bash
# Build stage "build" of the Dockerfile, after qsmapp is installed in /opt/venv: the TemplateFlow templates,
# the NeXtQSM weights, a warm numba/matplotlib cache and /opt/qsmapp/manifest.json.
# Local inputs in /inputs win; else TEMPLATEFLOW_SOURCE / NEXTQSM_WEIGHTS_SOURCE = download | none.
set -euo pipefail
STAGE=/tmp/stage
PY=/opt/venv/bin/python
if [ -f /inputs/pip.conf ]; then export PIP_CONFIG_FILE=/inputs/pip.conf; fi
if [ -f /inputs/ca.crt ]; then  # a CA bundle for pip, git, requests (docker/build.sh --ca-bundle)
    export PIP_CERT=/inputs/ca.crt REQUESTS_CA_BUNDLE=/inputs/ca.crt SSL_CERT_FILE=/inputs/ca.crt GIT_SSL_CAINFO=/inputs/ca.crt
fi
mkdir -p /opt/templateflow /opt/nextqsm/weights /opt/qsmapp/cache
nonempty() { [ -d "$1" ] && [ -n "$(ls -A "$1")" ]; }

# TemplateFlow: the atlas segmentation backend's default (T1w, brain mask, Harvard-Oxford subcortical labels
# and their table) and the group level's optional MNI registration target; never downloaded at run time.
if nonempty /inputs/templateflow; then
    cp -a /inputs/templateflow/. /opt/templateflow/
    echo "qsmapp build: TemplateFlow templates from docker/inputs/templateflow"
elif [ "${TEMPLATEFLOW_SOURCE}" = none ]; then
    echo "qsmapp build: TemplateFlow templates SKIPPED (TEMPLATEFLOW_SOURCE=none): the atlas backend needs" \
         "--seg-template or a mounted TEMPLATEFLOW_HOME" >&2
else
    # templateflow is no qsmapp dependency (see pyproject.toml): a throwaway venv, pinned by constraints.txt
    python3 -m venv /tmp/tf-venv
    /tmp/tf-venv/bin/pip install -c /opt/qsmapp/constraints.txt templateflow
    /tmp/tf-venv/bin/python -c "from templateflow import api; \
api.get('MNI152NLin2009cAsym', resolution=1, suffix='T1w', desc=None); \
api.get('MNI152NLin2009cAsym', resolution=1, suffix='mask', desc='brain'); \
api.get('MNI152NLin2009cAsym', resolution=1, atlas='HOSPA', suffix='dseg', extension='.nii.gz'); \
api.get('MNI152NLin2009cAsym', atlas='HOSPA', suffix='dseg', extension='.tsv')"
    rm -rf /tmp/tf-venv
fi

# NeXtQSM weights: a folder or the authors' archive in /inputs/nextqsm-weights, else OSF.
if nonempty /inputs/nextqsm-weights; then
    archive=$(find /inputs/nextqsm-weights -maxdepth 1 -name '*.tar*' | head -n 1)
    if [ -n "$archive" ]; then
        "$PY" "$STAGE/fetch_nextqsm_weights.py" /opt/nextqsm/weights --tar "$archive"
    else
        "$PY" "$STAGE/fetch_nextqsm_weights.py" /opt/nextqsm/weights --from-dir /inputs/nextqsm-weights
    fi
elif [ "${NEXTQSM_WEIGHTS_SOURCE}" = none ]; then
    echo "qsmapp build: NeXtQSM weights SKIPPED (NEXTQSM_WEIGHTS_SOURCE=none): --qsm-algorithm nextqsm needs" \
         "--nextqsm-weights DIR at run time" >&2
else
    python3 -m venv /tmp/osf-venv
    /tmp/osf-venv/bin/pip install "osfclient==${OSFCLIENT_VERSION}"
    /tmp/osf-venv/bin/python "$STAGE/fetch_nextqsm_weights.py" /opt/nextqsm/weights
    rm -rf /tmp/osf-venv
fi

# Warm cache: one small participant run compiles every numba kernel of the default pipeline (and builds
# matplotlib's font list); qsmapp copies it into each run's private cache at start (the container runs as any UID, read-only).
NUMBA_CACHE_DIR=/opt/qsmapp/cache/numba MPLCONFIGDIR=/opt/qsmapp/cache/matplotlib HOME=/tmp/warm-home \
    "$PY" "$STAGE/warm_cache.py" /tmp/warm
rm -rf /tmp/warm /tmp/warm-home

"$PY" "$STAGE/write_manifest.py" /opt/qsmapp/manifest.json --fastsurfer "$STAGE/fastsurfer-status.json" \
    --constraints /opt/qsmapp/constraints.txt --extra "${QSMAPP_EXTRA}" --version "${VERSION}"
chmod -R a+rX /opt/venv /opt/templateflow /opt/nextqsm /opt/qsmapp
