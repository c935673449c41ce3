"""faust's data directory goes where `aggregate.data_dir` says, never into the working directory."""

import os
from pathlib import Path

import pytest

from workers.aggregate.app import build_app
from workers.aggregate.names import app_id, data_dir
from workers.cli.main import build_parser
from workers.config.settings import load_settings


def test_the_app_keeps_its_data_under_the_setting_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ONTIME_AGGREGATE__DATA_DIR", str(tmp_path / "state" / "agg"))
    settings = load_settings(None)
    app = build_app(settings)
    assert Path(app.conf.datadir) == tmp_path / "state" / "agg" / app_id(settings) == data_dir(settings)
    assert (tmp_path / "state" / "agg").is_dir()  # faust itself creates only the last level
    assert os.listdir(cwd) == []


def test_the_default_is_under_the_run_directory() -> None:
    settings = load_settings(None)
    assert data_dir(settings).parts[:2] == (".ontime", "aggregate")
    args = build_parser().parse_args(["aggregate", "--data-dir", "/tmp/x"])
    assert args.data_dir == Path("/tmp/x")
