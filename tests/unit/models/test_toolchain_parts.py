"""`ontime models build P --only PART`: one part of a pipeline's toolchain, alone and without torch."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

pytest.importorskip("onnx")

from models.toolchain import build, cli


def test_cli_takes_only_part() -> None:
    parser = argparse.ArgumentParser()
    cli.register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", "build", "acoustic", "--only", "frontend"])
    assert (args.target, args.only) == ("acoustic", "frontend")
    assert parser.parse_args(["models", "build", "acoustic"]).only is None


def test_unknown_or_whole_build_parts_fail_clearly() -> None:
    with pytest.raises(SystemExit, match="no part 'nosuch' in the 'acoustic' model toolchain"):
        build.part_module("acoustic", "nosuch")
    with pytest.raises(SystemExit, match="no part 'frontend' in the 'nosuch' model toolchain"):
        build.part_module("nosuch", "frontend")
    with pytest.raises(SystemExit, match="is the whole build: drop --only"):
        build.part_module("acoustic", "build")
    with pytest.raises(SystemExit, match="cannot be built on its own"):
        build.part_module("acoustic", "features")  # a module without build()


def test_acoustic_front_end_part_does_not_need_torch() -> None:
    probe = (
        "import sys; from models.toolchain import build; "
        "m = build.part_module('acoustic', 'frontend'); print(callable(m.build), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True False"
