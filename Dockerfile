# qsmapp BIDS App container.
#   docker build -t qsmapp:$(cat version) .
#   docker run --rm -v /data/bids:/bids:ro -v /data/out:/out qsmapp:<version> /bids /out participant
FROM python:3.11.10-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp/home \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

WORKDIR /opt/qsmapp
# The same install command as the README and CI: one constraints file, one pip call.
COPY version pyproject.toml README.md constraints.txt ./
COPY bids_app ./bids_app
RUN pip install -c constraints.txt . \
    && cp version /version \
    && chmod -R a+rX /opt/qsmapp

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="qsmapp" \
      org.opencontainers.image.description="BIDS App for QSM, SWI, T2*/R2* mapping and segmentation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

WORKDIR /tmp
ENTRYPOINT ["qsmapp"]
