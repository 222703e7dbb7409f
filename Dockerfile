# qsmapp BIDS App container (see README "Containers"). One command builds it, and the SIF, from the public
# sources or from local copies of every external input: docker/build.sh --help.
#   docker build -t qsmapp:$(cat version) --build-arg VERSION=$(cat version) .
#   docker run --rm --read-only --tmpfs /tmp -u $(id -u):$(id -g) \
#       -v /data/bids:/bids:ro -v /data/out:/out qsmapp:<version> /bids /out participant
# Local inputs are read from docker/inputs/ (filled by docker/build.sh); a stage whose input is absent and whose
# source is "none" is skipped with a message, and /opt/qsmapp/manifest.json records what the image lacks.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

# --- FastSurfer (segmentation backend): its own environment, it pins numpy < 2 and needs torch ------
FROM ${PYTHON_IMAGE} AS fastsurfer
ARG FASTSURFER_VERSION=v2.4.2
# a git URL; docker/inputs/fastsurfer (a checkout) wins when present; "none" skips FastSurfer.
ARG FASTSURFER_SOURCE=https://github.com/Deep-MI/FastSurfer.git
# "download" fetches the checkpoints missing from docker/inputs/fastsurfer-checkpoints; "none" does not.
ARG FASTSURFER_CHECKPOINTS=download
# cpu (FastSurfer's requirements.cpu.txt), or the CUDA variant of its requirements.txt (e.g. cu124).
ARG TORCH_VARIANT=cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY docker/inputs/ /inputs/
COPY docker/stage_fastsurfer.sh /tmp/stage_fastsurfer.sh
RUN bash /tmp/stage_fastsurfer.sh

# --- qsmapp in a virtual environment, its templates, the NeXtQSM weights, a warm numba cache ------------
FROM ${PYTHON_IMAGE} AS build
ARG VERSION=0.1.0
# "nextqsm" installs tensorflow-cpu; "nextqsm-gpu" installs TensorFlow with CUDA (run with --gpus all).
ARG QSMAPP_EXTRA=nextqsm
# "download" fetches what docker/inputs/{templateflow,nextqsm-weights} lacks; "none" skips it.
ARG TEMPLATEFLOW_SOURCE=download
ARG NEXTQSM_WEIGHTS_SOURCE=download
ARG OSFCLIENT_VERSION=0.0.5
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TEMPLATEFLOW_HOME=/opt/templateflow TEMPLATEFLOW_AUTOUPDATE=0
COPY docker/inputs/ /inputs/
WORKDIR /src
COPY version pyproject.toml README.md constraints.txt ./
COPY bids_app ./bids_app
# The README's install command (one constraints file, one pip call) with the NeXtQSM extra, into /opt/venv
# (any base with python3 and its venv module, e.g. Debian's). Build-only pip settings: docker/inputs/pip.conf.
RUN if [ -f /inputs/pip.conf ]; then export PIP_CONFIG_FILE=/inputs/pip.conf; fi \
    && if [ -f /inputs/ca.crt ]; then export PIP_CERT=/inputs/ca.crt; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints.txt ".[${QSMAPP_EXTRA}]" \
    && mkdir -p /opt/qsmapp && cp version constraints.txt /opt/qsmapp/
COPY docker/stage_build.sh docker/warm_cache.py docker/write_manifest.py docker/fetch_nextqsm_weights.py /tmp/stage/
COPY --from=fastsurfer /opt/fastsurfer-status.json /tmp/stage/fastsurfer-status.json
RUN VERSION="${VERSION}" QSMAPP_EXTRA="${QSMAPP_EXTRA}" bash /tmp/stage/stage_build.sh

# --- the image: the environments and data above, nothing else ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG CONSTRAINTS_SHA256=unknown
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    TMPDIR=/tmp \
    QSMAPP_PER_RUN_DIRS=1 \
    QSMAPP_CACHE_SEED=/opt/qsmapp/cache \
    QSMAPP_MANIFEST=/opt/qsmapp/manifest.json \
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

COPY --from=fastsurfer /opt/FastSurfer /opt/FastSurfer
COPY --from=fastsurfer /opt/fastsurfer-venv /opt/fastsurfer-venv
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/templateflow /opt/templateflow
COPY --from=build /opt/nextqsm/weights /opt/nextqsm/weights
COPY --from=build /opt/qsmapp /opt/qsmapp
COPY --from=build /opt/qsmapp/version /version

LABEL org.opencontainers.image.title="qsmapp" \
      org.opencontainers.image.description="BIDS App for QSM, SWI, T2*/R2* mapping and segmentation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/qsmapp/qsmapp" \
      org.opencontainers.image.licenses="MIT" \
      io.github.qsmapp.constraints.sha256="${CONSTRAINTS_SHA256}"

# Runs as any UID: all writable state lives under /tmp (a tmpfs with --read-only); qsmapp makes a private
# HOME and caches there for each run, seeded from the read-only warm cache in /opt/qsmapp/cache.
WORKDIR /tmp
USER 65534:65534
ENTRYPOINT ["qsmapp"]
