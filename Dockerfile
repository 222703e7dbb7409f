# syntax=docker/dockerfile:1
# qsmapp BIDS App container (see README "Containers").
#   docker build -t qsmapp:$(cat version) --build-arg VERSION=$(cat version) .
#   docker run --rm --read-only --tmpfs /tmp -u $(id -u):$(id -g) \
#       -v /data/bids:/bids:ro -v /data/out:/out qsmapp:<version> /bids /out participant
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

# --- FastSurfer (segmentation backend): its own environment, it pins numpy < 2 and needs torch ------
FROM ${PYTHON_IMAGE} AS fastsurfer
ARG FASTSURFER_VERSION=v2.4.2
ARG TORCH_VERSION=2.5.1
# cpu, or e.g. cu124 for a GPU image (with QSMAPP_EXTRA=nextqsm-gpu; run with --gpus all / --nv).
ARG TORCH_VARIANT=cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Build-time only: git fetches the pinned FastSurfer release (apt versions follow the pinned base image).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN git clone --depth 1 --branch "${FASTSURFER_VERSION}" https://github.com/Deep-MI/FastSurfer.git /opt/FastSurfer \
    && python -m venv /opt/fastsurfer-venv \
    && /opt/fastsurfer-venv/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" \
         --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
    && /opt/fastsurfer-venv/bin/pip install --no-cache-dir -r /opt/FastSurfer/requirements.txt
WORKDIR /opt/FastSurfer
RUN PYTHONPATH=/opt/FastSurfer /opt/fastsurfer-venv/bin/python FastSurferCNN/download_checkpoints.py --all

# --- NeXtQSM weights (the authors' OSF archive), checked against the files qsmapp loads --------------
FROM ${PYTHON_IMAGE} AS nextqsm-weights
ARG OSFCLIENT_VERSION=0.0.5
COPY docker/fetch_nextqsm_weights.py /tmp/fetch_nextqsm_weights.py
RUN pip install --no-cache-dir "osfclient==${OSFCLIENT_VERSION}" \
    && python /tmp/fetch_nextqsm_weights.py /opt/nextqsm/weights

# --- qsmapp and its templates ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
# "nextqsm" installs tensorflow-cpu; "nextqsm-gpu" installs TensorFlow with CUDA (run with --gpus all).
ARG QSMAPP_EXTRA=nextqsm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp/home \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    TMPDIR=/tmp \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    FASTSURFER_HOME=/opt/FastSurfer \
    FASTSURFER_PYTHON=/opt/fastsurfer-venv/bin/python \
    QSMAPP_NEXTQSM_WEIGHTS=/opt/nextqsm/weights \
    TF_CPP_MIN_LOG_LEVEL=2 \
    QSMAPP_CONTAINER_IMAGE=qsmapp:${VERSION} \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

WORKDIR /opt/qsmapp
COPY version pyproject.toml README.md constraints.txt ./
COPY bids_app ./bids_app
# The README's install command (one constraints file, one pip call) with the NeXtQSM extra.
RUN pip install -c constraints.txt ".[${QSMAPP_EXTRA}]" \
    && cp version /version

# Templates are fetched now so that nothing is downloaded at run time (TEMPLATEFLOW_AUTOUPDATE=0): the
# atlas segmentation backend's default (T1w, brain mask, Harvard-Oxford subcortical labels + their table)
# and the group level's optional MNI registration target.
RUN python -c "from templateflow import api; \
api.get('MNI152NLin2009cAsym', resolution=1, suffix='T1w', desc=None); \
api.get('MNI152NLin2009cAsym', resolution=1, suffix='mask', desc='brain'); \
api.get('MNI152NLin2009cAsym', resolution=1, atlas='HOSPA', suffix='dseg', extension='.nii.gz'); \
api.get('MNI152NLin2009cAsym', atlas='HOSPA', suffix='dseg', extension='.tsv')" \
    && chmod -R a+rX /opt/templateflow /opt/qsmapp

COPY --from=fastsurfer /opt/FastSurfer /opt/FastSurfer
COPY --from=fastsurfer /opt/fastsurfer-venv /opt/fastsurfer-venv
COPY --from=nextqsm-weights /opt/nextqsm/weights /opt/nextqsm/weights

LABEL org.opencontainers.image.title="qsmapp" \
      org.opencontainers.image.description="BIDS App for QSM, SWI, T2*/R2* mapping and segmentation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/qsmapp/qsmapp" \
      org.opencontainers.image.licenses="MIT"

# Runs as any UID: all writable state (HOME, caches, temp) lives under /tmp (a tmpfs with --read-only).
WORKDIR /tmp
USER 65534:65534
ENTRYPOINT ["qsmapp"]
