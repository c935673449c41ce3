"""Structured (channel) pruning: remove whole conv channels and rebuild a smaller network.

Unstructured masks leave the tensors their original size, so onnxruntime runs them no faster;
dropping channels shrinks every kernel that touches them. Fine-tuning afterwards is the caller's.

`prune_sequential` handles a (nested) `nn.Sequential` of Conv / BatchNorm / parameter-free layers
(activations, pooling, dropout, flatten) ending in Linear layers. The slicing helpers below it let a
pipeline prune other topologies by hand.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

Criterion = Literal["l1", "bn"]
_Conv = nn.Conv1d | nn.Conv2d
_Norm = nn.BatchNorm1d | nn.BatchNorm2d


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def leaves(model: nn.Sequential) -> list[nn.Module]:
    """The layers of a nested Sequential, in execution order."""
    out: list[nn.Module] = []
    for layer in model:
        out.extend(leaves(layer) if isinstance(layer, nn.Sequential) else [layer])
    return out


def channel_scores(conv: _Conv, norm: _Norm | None, criterion: Criterion = "l1") -> torch.Tensor:
    """Importance of each output channel: L1 norm of its filter, or |gamma| of the following BN."""
    if criterion == "bn" and norm is not None:
        return norm.weight.detach().abs()
    return conv.weight.detach().abs().flatten(1).sum(dim=1)


def keep_count(channels: int, keep_ratio: float, multiple_of: int = 1) -> int:
    """How many channels survive, rounded to a multiple that kernels like (at least one multiple)."""
    wanted = round(channels * keep_ratio / multiple_of) * multiple_of
    return min(channels, max(multiple_of, wanted))


def top_channels(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest scores, in their original order."""
    return torch.sort(torch.topk(scores, count).indices).values


def slice_conv(conv: _Conv, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> _Conv:
    """A new conv with only the chosen output/input channels (depthwise: one index set for both)."""
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if conv.groups > 1 and not depthwise:
        raise NotImplementedError("grouped convolutions other than depthwise are not handled")
    weight = conv.weight.detach()
    if depthwise:
        idx = in_idx if in_idx is not None else out_idx
        if idx is not None:
            weight = weight[idx]
        out_ch = in_ch = groups = weight.shape[0]
        bias_idx = idx
    else:
        if out_idx is not None:
            weight = weight[out_idx]
        if in_idx is not None:
            weight = weight[:, in_idx]
        out_ch, in_ch, groups = weight.shape[0], weight.shape[1], 1
        bias_idx = out_idx
    new = type(conv)(
        in_ch,
        out_ch,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    new.weight.data.copy_(weight)
    if conv.bias is not None and new.bias is not None:
        bias = conv.bias.detach()
        new.bias.data.copy_(bias if bias_idx is None else bias[bias_idx])
    return new


def slice_norm(norm: _Norm, idx: torch.Tensor) -> _Norm:
    """A BatchNorm over the kept channels, statistics included."""
    new = type(norm)(len(idx), eps=norm.eps, momentum=norm.momentum, affine=norm.affine)
    if norm.affine:
        new.weight.data.copy_(norm.weight.detach()[idx])
        new.bias.data.copy_(norm.bias.detach()[idx])
    if norm.running_mean is not None and norm.running_var is not None:
        assert new.running_mean is not None and new.running_var is not None
        new.running_mean.copy_(norm.running_mean[idx])
        new.running_var.copy_(norm.running_var[idx])
    return new


def slice_linear_inputs(linear: nn.Linear, channels: torch.Tensor, per_channel: int) -> nn.Linear:
    """A Linear reading only the kept channels of a channel-major flattened feature map."""
    offsets = torch.arange(per_channel)
    features = (channels[:, None] * per_channel + offsets[None, :]).reshape(-1)
    new = nn.Linear(len(features), linear.out_features, bias=linear.bias is not None)
    new.weight.data.copy_(linear.weight.detach()[:, features])
    if linear.bias is not None and new.bias is not None:
        new.bias.data.copy_(linear.bias.detach())
    return new


def _input_shapes(layers: list[nn.Module], example: torch.Tensor) -> list[torch.Size]:
    shapes = []
    x = example
    with torch.no_grad():
        for layer in layers:
            shapes.append(x.shape)
            x = layer(x)
    return shapes


def prune_sequential(
    model: nn.Sequential,
    keep_ratio: float,
    example: torch.Tensor,
    criterion: Criterion = "l1",
    multiple_of: int = 1,
) -> nn.Sequential:
    """A flat Sequential keeping `keep_ratio` of every conv's output channels (scored per layer).

    `example` is one input batch, used to learn the spatial size at the Flatten before a Linear.
    The output shape is unchanged: Linear outputs are never pruned.
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError("keep_ratio must be in (0, 1]")
    was_training = model.training
    layers = leaves(model)
    model.eval()
    shapes = _input_shapes(layers, example)
    kept: torch.Tensor | None = None  # channel indices of the current feature map (None = all)
    per_channel = 1  # elements per channel once flattened
    new_layers: list[nn.Module] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv1d | nn.Conv2d):
            if layer.groups > 1:
                new_layers.append(slice_conv(layer, None, kept))
                continue
            following = layers[i + 1] if i + 1 < len(layers) else None
            norm = following if isinstance(following, nn.BatchNorm1d | nn.BatchNorm2d) else None
            scores = channel_scores(layer, norm, criterion)
            out_idx = top_channels(scores, keep_count(layer.out_channels, keep_ratio, multiple_of))
            new_layers.append(slice_conv(layer, out_idx, kept))
            kept = out_idx
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            new_layers.append(slice_norm(layer, kept) if kept is not None else copy.deepcopy(layer))
        elif isinstance(layer, nn.Flatten):
            shape = shapes[i]
            per_channel = int(torch.tensor(shape[2:]).prod().item()) if len(shape) > 2 else 1
            new_layers.append(copy.deepcopy(layer))
        elif isinstance(layer, nn.Linear):
            if kept is not None:
                new_layers.append(slice_linear_inputs(layer, kept, per_channel))
                kept = None
            else:
                new_layers.append(copy.deepcopy(layer))
        elif any(True for _ in layer.parameters(recurse=True)):
            raise NotImplementedError(f"cannot prune through {type(layer).__name__}")
        else:
            new_layers.append(copy.deepcopy(layer))
    pruned = nn.Sequential(*new_layers)
    model.train(was_training)
    pruned.train(was_training)
    return pruned
