"""Structured pruning of `KwsTcn`: drop whole conv channels and rebuild a narrower network.

Scores are the |gamma| of each channel's BatchNorm (a channel the network has scaled to ~0
contributes ~nothing); the surviving weights are copied into a `KwsTcn` with the new widths,
which is then fine-tuned by the caller. Uses the generic slicing helpers of models.toolchain.prune.
"""

from __future__ import annotations

import torch
from torch import nn

from models.toolchain.prune import channel_scores, keep_count, slice_conv, slice_linear_inputs, slice_norm

from .nets import KwsTcn


def _convs_and_norms(model: KwsTcn) -> list[tuple[nn.Conv1d, nn.BatchNorm1d]]:
    layers = list(model.body)
    return [(layers[i], layers[i + 1]) for i in range(0, len(layers), 3)]  # type: ignore[misc]


def prune_tcn(model: KwsTcn, keep_ratio: float, multiple_of: int = 8) -> KwsTcn:
    """A new KwsTcn keeping `keep_ratio` of every conv's channels (by BN |gamma|), weights copied."""
    pairs = _convs_and_norms(model)
    kept: list[torch.Tensor] = []
    for conv, norm in pairs:
        scores = channel_scores(conv, norm, "bn")
        count = keep_count(conv.out_channels, keep_ratio, multiple_of)
        kept.append(torch.sort(torch.topk(scores, count).indices).values)
    small = KwsTcn(tuple(len(k) for k in kept), model.head.out_features, dropout=model.drop.p)
    new_pairs = _convs_and_norms(small)
    prev: torch.Tensor | None = None
    for (conv, norm), (new_conv, new_norm), idx in zip(pairs, new_pairs, kept, strict=True):
        sliced = slice_conv(conv, idx, prev)
        new_conv.weight.data.copy_(sliced.weight.data)
        s_norm = slice_norm(norm, idx)
        new_norm.load_state_dict(s_norm.state_dict())
        prev = idx
    assert prev is not None
    head = slice_linear_inputs(model.head, prev, 1)
    small.head.load_state_dict(head.state_dict())
    return small
