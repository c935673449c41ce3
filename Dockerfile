# syntax=docker/dockerfile:1
# ontime stage worker image: `docker build -t ontime .` (the last stage, `worker`, is the default).
#   builder   - builds the ontime wheel and installs it with its runtime dependencies only
#               (no dev, no toolchain extra: no torch, no compiler in any image that runs)
#   simulator - the device fleet for docker-compose: adds the real recordings (Debian packages)
#   worker    - non-root, models baked in and sha256-verified at every start, entrypoint `ontime worker`
# Pinned to the Debian release the recordings packages are tested on (the dev machine's).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workers ./workers
COPY pipelines ./pipelines
COPY schemas ./schemas
COPY models ./models
# Every wheel once, then two virtualenvs from them without touching an index again:
# the worker's (runtime + OTLP exporter) and the simulator's (+ audio decoding).
RUN pip wheel --wheel-dir /wheels '.[otlp,audio]' \
 && python -m venv /opt/ontime/venv \
 && /opt/ontime/venv/bin/pip install --no-index --find-links /wheels 'ontime[otlp]' \
 && python -m venv /opt/ontime/sim-venv \
 && /opt/ontime/sim-venv/bin/pip install --no-index --find-links /wheels 'ontime[otlp,audio]' \
 && ! /opt/ontime/venv/bin/python -c 'import torch' 2>/dev/null

FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 ontime \
 && useradd --system --uid 10001 --gid ontime --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin ontime
# The served models, read-only for the worker user; workers and `ontime models verify` read them here.
COPY --chown=root:root models/acoustic /opt/ontime/models/acoustic
COPY --chown=root:root models/vision /opt/ontime/models/vision
COPY --chown=root:root --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/ontime-entrypoint
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ONTIME_MODELS_DIR=/opt/ontime/models \
    ONTIME_WORKER__LOG_JSON=true
WORKDIR /opt/ontime

FROM base AS simulator
# Real human recordings and real background noise the simulated microphones publish.
RUN apt-get update \
 && apt-get install -y --no-install-recommends asterisk-core-sounds-en-wav sonic-pi-samples klettres-data \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/ontime/sim-venv /opt/ontime/sim-venv
ENV PATH=/opt/ontime/sim-venv/bin:$PATH
USER 10001:10001
ENTRYPOINT ["ontime"]
CMD ["devices", "simulate", "--devices", "8", "--rate", "2", "--duration", "86400"]

FROM base AS worker
COPY --from=builder /opt/ontime/venv /opt/ontime/venv
ENV PATH=/opt/ontime/venv/bin:$PATH \
    ONTIME_WORKER__METRICS_PORT=9400
USER 10001:10001
EXPOSE 9400
# /metrics, /livez, /readyz on 9400; SIGTERM drains (finish batch, deliver, commit, leave).
ENTRYPOINT ["/usr/local/bin/ontime-entrypoint"]
CMD ["--stage", "preprocess"]
