"""Torch networks for keyword spotting on [N,40,101] log-mel features.

`KwsCnn` is a plain conv net whose widths are constructor arguments, so structured pruning can
rebuild it with fewer channels and copy the surviving weights across.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureNorm(nn.Module):
    """Per-utterance mean removal per mel bin (cepstral mean normalisation), then a fixed scale.

    Removes the channel's colouring (telephone vs. wideband microphone) before any learning.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=2, keepdim=True)) * 0.25


def conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class KwsCnn(nn.Module):
    """Conv stack -> global average pool -> linear. widths[i] = output channels of conv i."""

    STRIDES = (2, 2, 1, 2, 1)

    def __init__(self, widths: tuple[int, ...], n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.norm = FeatureNorm()
        layers = []
        cin = 1
        for w, s in zip(widths, self.STRIDES, strict=True):
            layers.append(conv_bn(cin, w, s))
            cin = w
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.norm(x).unsqueeze(1))
        return self.head(self.drop(h.mean(dim=(2, 3))))


class KwsTcn(nn.Module):
    """Temporal conv net (mel bins as channels, 1-D convs over time) -> average pool -> linear.

    A few MMACs per second of audio, plain convs only (INT8-friendly, unlike depthwise/SE), and
    widths[i] = output channels of conv i so pruning can rebuild it narrower.
    """

    KERNELS = (3, 5, 5, 5, 5)
    STRIDES = (1, 2, 2, 1, 2)

    def __init__(self, widths: tuple[int, ...], n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.norm = FeatureNorm()
        layers: list[nn.Module] = []
        cin = 40
        for w, k, s in zip(widths, self.KERNELS, self.STRIDES, strict=True):
            layers += [
                nn.Conv1d(cin, w, k, stride=s, padding=k // 2, bias=False),
                nn.BatchNorm1d(w),
                nn.ReLU(),
            ]
            cin = w
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.norm(x))
        return self.head(self.drop(h.mean(dim=2)))


class WithSoftmax(nn.Module):
    """Exports a classifier with its softmax baked in (the gate answers probabilities directly)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
