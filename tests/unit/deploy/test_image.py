"""The image's invariants, read with BuildKit's parser: what `docker build` would build."""

from __future__ import annotations

import re

from tests.deploykit.image import ROOT, stages

RUNTIME_STAGES = ("worker", "simulator")


def test_last_stage_is_the_worker_so_a_plain_docker_build_makes_it() -> None:
    assert [s.name for s in stages()][-1] == "worker"


def test_every_stage_starts_from_python_311_slim() -> None:
    for s in stages():
        assert s.base in {"builder", "base"} or re.fullmatch(r"python:3\.11-slim(-\w+)?", s.base), s


def test_runtime_stages_run_as_a_numeric_non_root_user() -> None:
    by_name = {s.name: s for s in stages()}
    for name in RUNTIME_STAGES:
        user = by_name[name].user
        assert user is not None, name
        uid = user.split(":")[0]
        # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
        assert uid.isdigit() and int(uid) != 0, (name, user)


def test_worker_entrypoint_verifies_models_then_execs_ontime_worker() -> None:
    worker = next(s for s in stages() if s.name == "worker")
    assert worker.entrypoint == ["/usr/local/bin/ontime-entrypoint"]
    assert worker.cmd[:1] == ["--stage"]
    script = (ROOT / "deploy/docker/entrypoint.sh").read_text()
    verify = script.index("ontime models verify")
    run = script.index('exec ontime worker "$@"')
    assert verify < run
    assert "set -eu" in script  # a failed verify stops the container before the worker starts
    copied = [dst for flags, (src, dst) in next(s for s in stages() if s.name == "base").copies if src]
    assert "/usr/local/bin/ontime-entrypoint" in copied


def test_models_are_baked_in_where_the_worker_reads_them() -> None:
    worker = next(s for s in stages() if s.name == "worker")
    models_dir = worker.env["ONTIME_MODELS_DIR"]
    base = next(s for s in stages() if s.name == "base")
    assert any(dst.startswith(models_dir) for _flags, (_src, dst) in base.copies)
    assert (ROOT / "models/acoustic/student-int8/model.onnx").is_file()


def test_only_runtime_dependencies_are_installed() -> None:
    installs = " ".join(run for s in stages() for run in s.runs)
    for banned in ("torch", "toolchain", "[dev", ",dev", "gcc", "build-essential"):
        assert banned not in installs.replace("import torch", ""), banned
    worker = next(s for s in stages() if s.name == "worker")
    # The worker copies only the runtime venv from the builder, never the sources or the wheels.
    assert [c for c in worker.copies] == [(("--from=builder",), ("/opt/ontime/venv", "/opt/ontime/venv"))]


def test_worker_serves_metrics_and_health_on_the_exposed_port() -> None:
    worker = next(s for s in stages() if s.name == "worker")
    assert worker.env["ONTIME_WORKER__METRICS_PORT"] in worker.exposed


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # deny by default: no .venv, .git, caches or run output in the context
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    from_context = [
        src
        for s in stages()
        for flags, value in s.copies
        if not any("--from" in f for f in flags)
        for src in value[:-1]
    ]
    assert from_context
    for src in from_context:
        assert any(src == a or src.startswith(a + "/") for a in allowed), src
