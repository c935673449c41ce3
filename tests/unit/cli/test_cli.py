"""The `ontime` command line: flags into settings, config errors as exit 2, verbs without torch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workers.cli import main as cli
from workers.config.spec import PIPELINES_DIR
from workers.errors import ConfigError
from workers.stages.chain import parse_stages
from workers.stages.model import check_models

ROOT = Path(__file__).resolve().parents[3]


def _args(*argv: str) -> object:
    parser = cli.build_parser()
    return parser.parse_args([*argv, "topics", "list"])


def test_overrides_nest_on_dots_and_keep_librdkafka_keys_whole() -> None:
    out = cli.parse_overrides(
        [
            "pipeline.budget_ms=500",
            "pipeline.topics.raw=x.raw",
            "kafka.extra.linger.ms=0",
            "worker.metrics_port=null",
        ]
    )
    assert out == {
        "pipeline": {"budget_ms": "500", "topics": {"raw": "x.raw"}},
        "kafka": {"extra": {"linger.ms": "0"}},
        "worker": {"metrics_port": None},
    }


@pytest.mark.parametrize("bad", ["budget_ms", "=1", "pipeline..budget_ms=1"])
def test_malformed_override_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"KEY\.PATH=VALUE"):
        cli.parse_overrides([bad])


def test_flags_beat_environment_which_beats_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTIME_WORKER__POLL_TIMEOUT_MS", "70")
    monkeypatch.setenv("ONTIME_PIPELINE__BUDGET_MS", "400")
    monkeypatch.setenv("ONTIME_PIPELINE__TOPICS__DLQ", "env.dlq")
    args = _args(
        "--set",
        "worker.poll_timeout_ms=50",
        "--set",
        "pipeline.topics.raw=flag.raw",
        "--bootstrap",
        "10.1.1.1:9092",
    )
    settings = cli.settings_from_args(args)  # type: ignore[arg-type]
    assert settings.worker.poll_timeout_ms == 50
    assert settings.pipeline.budget_ms == 400
    # Nested sources merge key by key: flag, environment and YAML each keep their own topic.
    assert settings.pipeline.topics.raw == "flag.raw"
    assert settings.pipeline.topics.dlq == "env.dlq"
    assert settings.pipeline.topics.features == "acoustic.features"
    shipped = yaml.safe_load(Path("pipelines/acoustic/pipeline.yaml").read_text())
    assert settings.pipeline.stages["infer"].model == shipped["stages"]["infer"]["model"]
    assert settings.kafka.bootstrap_servers == "10.1.1.1:9092"


def test_invalid_setting_exits_2_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--set", "pipeline.stages.infer.batch.max_size=0", "topics", "list"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pipeline.stages.infer.batch.max_size" in err
    assert "Traceback" not in err


def test_worker_refuses_a_gap_in_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["worker", "--stage", "preprocess,postprocess"]) == 2
    assert "consecutive" in capsys.readouterr().err
    assert parse_stages("infer, postprocess") == ["infer", "postprocess"]
    with pytest.raises(ConfigError, match="unknown stage"):
        parse_stages("train")


def test_help_works_as_module_without_torch() -> None:
    code = (
        "import sys; from workers.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    helped = subprocess.run(
        [sys.executable, "-m", "workers.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for verb in ("worker", "topics", "models", "broker"):
        assert verb in helped.stdout


def _identity_model(directory: Path) -> str:
    """A one-node ONNX graph with its card: enough to check files against cards."""
    import onnx  # the dev extra

    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])],
    )
    blob = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(blob)
    card = {
        "name": directory.name,
        "version": "1",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [None, 4]}],
    }
    (directory / "card.json").write_text(json.dumps(card))
    return f"t/{directory.name}"


def test_models_verify_fails_loudly_on_a_changed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "models"
    refs = {name: _identity_model(root / "t" / name) for name in ("a", "b", "c", "d")}
    data = yaml.safe_load((PIPELINES_DIR / "acoustic" / "pipeline.yaml").read_text())
    for stage, ref in zip(("preprocess", "infer", "postprocess"), ("a", "b", "c"), strict=True):
        data["stages"][stage]["model"] = refs[ref]
    data["stages"]["infer"]["fallback"] = refs["d"]
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = cli.settings_from_args(_args("--pipeline", str(path)))  # type: ignore[arg-type]
    checks = check_models(settings.pipeline, root)
    assert [(c.stage, c.role, c.ok) for c in checks] == [
        ("preprocess", "primary", True),
        ("infer", "primary", True),
        ("infer", "fallback", True),
        ("postprocess", "primary", True),
    ]
    with (root / "t" / "d" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    failed = [c for c in check_models(settings.pipeline, root) if not c.ok]
    assert [(c.stage, c.role) for c in failed] == [("infer", "fallback")]
    assert "sha256" in failed[0].detail
    # The CLI verb against the bundled models dir: the refs do not exist there → exit 1, loudly.
    assert cli.main(["models", "verify", "--pipeline", str(path)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    assert "MODEL VERIFICATION FAILED" in captured.err


def test_log_lines_are_one_json_object_each_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from workers.telemetry.logs import event, setup_logging

    log = logging.getLogger("ontime.test")
    try:
        setup_logging("INFO", as_json=True)
        event(log, "assigned", stage="infer", partitions="t[0],t[1]")
        event(log, "dlq", logging.DEBUG, id="x")  # per-message detail stays below INFO
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1
        line = json.loads(lines[0])
        assert (line["event"], line["stage"], line["level"]) == ("assigned", "infer", "INFO")
        setup_logging("INFO")
        event(log, "stopped", stage="infer", error="two words")
        assert capsys.readouterr().err.strip().endswith('stopped stage=infer error="two words"')
    finally:
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
