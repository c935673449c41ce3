"""Export a torch module to ONNX with named tensors and a dynamic batch axis."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_name: str,
    opset: int = 17,
) -> Path:
    """Write `model` (in eval mode, contiguous weights) as ONNX; axis 0 of input and output is `N`.

    Uses the TorchScript exporter: the dynamo one needs onnxscript, which the toolchain does not carry.
    """
    was_training = model.training
    model = model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices
        torch.onnx.export(
            model,
            (example.contiguous(),),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}},
            opset_version=opset,
            dynamo=False,
        )
    model.train(was_training)
    return path
