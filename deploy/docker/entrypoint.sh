#!/bin/sh
# Container entrypoint of a stage worker: refuse to start on a model whose sha256 differs from its
# card (a clear error and exit 1 beats a crash loop deep in onnxruntime), then become
# `ontime worker "$@"` as PID 1 so SIGTERM reaches the worker and drains it.
set -eu
if [ "${ONTIME_SKIP_MODEL_VERIFY:-false}" != "true" ]; then
  ontime models verify
fi
exec ontime worker "$@"
