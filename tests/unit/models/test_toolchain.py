"""The generic toolchain steps: intervals, graph cost, cards, quantization, structured pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx  # the dev extra: present wherever the tests run
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.toolchain import cards, latency, quantize, render_cards, stats
from schemas.card import Interval, Lineage, ModelCard


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),  # reference values (e.g. statsmodels proportion_confint, wilson)
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (9000, 10000, 0.8940, 0.9057),
    ],
)
def test_wilson_interval_matches_reference(successes: int, n: int, low: float, high: float) -> None:
    interval = stats.wilson_interval(successes, n)
    assert interval.value == pytest.approx(successes / n)
    assert interval.low == pytest.approx(low, abs=1e-4)
    assert interval.high == pytest.approx(high, abs=1e-4)
    assert interval.n == n


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        stats.wilson_interval(3, 2)
    with pytest.raises(ValueError):
        stats.wilson_interval(0, 0)


def test_accuracy_from_predictions_and_drop() -> None:
    acc = stats.accuracy_from_logits(np.eye(4)[[0, 1, 2, 3]], [0, 1, 2, 0])
    assert (acc.value, acc.n) == (0.75, 4)
    parent = Interval(value=0.9, low=0.8, high=0.95, n=100)
    child = Interval(value=0.885, low=0.8, high=0.95, n=100)
    assert stats.drop_points(parent, child) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        stats.accuracy([1, 2], [1])


def tiny_classifier(path: Path) -> Path:
    """Conv(1→2, 3×3, pad 1) → Relu → Flatten → Gemm(32→3) on [N,1,4,4], fixed weights."""
    weight = (np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) - 9.0) / 10.0
    bias = np.array([0.1, -0.1], dtype=np.float32)
    fc = (np.arange(96, dtype=np.float32).reshape(3, 32) % 7 - 3.0) / 5.0
    fc_bias = np.zeros(3, dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(fc, "fc"),
            numpy_helper.from_array(fc_bias, "fcb"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_inputs() -> np.ndarray:
    return (np.arange(64 * 16, dtype=np.float32).reshape(64, 1, 4, 4) % 13) / 13.0


def test_graph_cost_counts_conv_and_gemm(tmp_path: Path) -> None:
    params, macs = latency.graph_cost(tiny_classifier(tmp_path / "tiny.onnx"))
    assert params == 18 + 2 + 96 + 3
    assert macs == 2 * 4 * 4 * 9 + 3 * 32


def test_card_assembly_on_tiny_graph(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "model.onnx")
    acc = stats.wilson_interval(90, 100)
    parent = stats.wilson_interval(92, 100)
    stat = latency.measure_latency(path, {"image": tiny_inputs()}, batches=(1, 8), warmup=1, runs=5, rounds=1)
    card = cards.assemble_card(
        path,
        name="tiny",
        version="0.0.1",
        labels=["a", "b", "c"],
        accuracy={"test": acc},
        parent_accuracy={"test": parent, "other": parent},
        latency=stat,
        lineage=Lineage(parent="tiny-fp32", quantization="none"),
        serving="primary",
    )
    assert card.inputs[0].model_dump() == {"name": "image", "dtype": "float32", "shape": ["N", 1, 4, 4]}
    assert card.outputs[0].model_dump() == {"name": "logits", "dtype": "float32", "shape": ["N", 3]}
    assert card.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert (card.parameters, card.macs, card.file_bytes) == (119, 384, path.stat().st_size)
    assert card.accuracy_drop_vs_parent == {"test": pytest.approx(2.0)}
    assert [(s.batch, s.threads) for s in card.latency] == [(1, 1), (8, 1)]

    cards.write_card(card, tmp_path)
    loaded = ModelCard.load(tmp_path)
    assert loaded == card
    assert getattr(loaded, "serving", None) == "primary"


def test_int8_quantization_keeps_tiny_graph_close(tmp_path: Path) -> None:
    fp32 = tiny_classifier(tmp_path / "fp32.onnx")
    pre = quantize.preprocess(fp32, tmp_path / "pre.onnx")
    opt = quantize.optimize(pre, tmp_path / "opt.onnx")
    x = tiny_inputs()
    int8 = quantize.quantize_int8(opt, tmp_path / "int8.onnx", quantize.batched("image", x, 16))
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    ref = latency.open_session(fp32).run(None, {"image": x})[0]
    got = latency.open_session(int8).run(None, {"image": x})[0]
    assert np.abs(ref - got).max() < 0.05 * np.abs(ref).max()
    assert latency.count_parameters(onnx.load(str(int8))) == 119  # scales are not parameters


def test_fp16_conversion_keeps_float32_io(tmp_path: Path) -> None:
    fp16 = quantize.convert_fp16(tiny_classifier(tmp_path / "fp32.onnx"), tmp_path / "fp16.onnx")
    inputs, outputs = cards.tensor_specs(onnx.load(str(fp16)))
    assert inputs[0].dtype == outputs[0].dtype == "float32"
    got = latency.open_session(fp16).run(None, {"image": tiny_inputs()})[0]
    assert got.shape == (64, 3)


def test_render_cards_lists_every_variant(tmp_path: Path) -> None:
    variant = tmp_path / "demo" / "student"
    variant.mkdir(parents=True)
    model = tiny_classifier(variant / "model.onnx")
    card = cards.assemble_card(model, "demo-student", "1", accuracy={"test": stats.wilson_interval(9, 10)})
    cards.write_card(card, variant)
    text = render_cards.render(tmp_path)
    assert "## demo" in text
    assert "`student`" in text
    assert "90.00% [59.58%, 98.21%] n=10" in text


def test_cli_registers_models_verbs_without_importing_torch() -> None:
    import argparse
    import subprocess
    import sys

    from models.toolchain import cli

    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="command", required=True)
    models_verbs = cli.register_cli(verbs)
    models_verbs.add_parser("verify")  # the caller can add its own verbs next to ours
    args = parser.parse_args(["models", "build", "vision", "--quick", "--out", "/tmp/x"])
    assert (args.target, args.quick, args.out) == ("vision", True, Path("/tmp/x"))
    assert callable(args.func)
    assert parser.parse_args(["models", "evaluate", "acoustic"]).target == "acoustic"
    assert parser.parse_args(["models", "verify"]).models_command == "verify"

    # Registering must not import torch, so `ontime --help` works without the toolchain extra.
    probe = (
        "import argparse, sys; from models.toolchain import cli; "
        "cli.register_cli(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_unknown_pipeline_fails_clearly() -> None:
    from models.toolchain import build

    with pytest.raises(SystemExit, match="no model toolchain for pipeline 'nosuch'"):
        build.pipeline_module("nosuch")


torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from models.toolchain import prune  # noqa: E402


def conv_stack() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 5),
    )


def test_pruning_builds_a_smaller_network_with_the_same_output_shape() -> None:
    model = conv_stack().eval()
    x = torch.rand(3, 1, 8, 8)
    pruned = prune.prune_sequential(model, keep_ratio=0.5, example=x)
    assert prune.parameter_count(pruned) < 0.5 * prune.parameter_count(model)
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 8]
    assert pruned(x).shape == model(x).shape == (3, 5)


def test_pruning_dead_channels_changes_nothing() -> None:
    model = conv_stack().eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():  # silence half the channels of every BN: they contribute exactly zero
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight[::2] = 0.0
            bn.bias[::2] = 0.0
    pruned = prune.prune_sequential(model, keep_ratio=0.5, example=x, criterion="bn")
    torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)
    assert prune.keep_count(30, 0.5, multiple_of=8) == 16
