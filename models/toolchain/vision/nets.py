"""The vision networks, as flat-ish `nn.Sequential` Conv-BN-ReLU stacks so `prune` can shrink them."""

from __future__ import annotations

from torch import nn


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def teacher() -> nn.Sequential:
    """About 0.39 M parameters, ~8 M MACs: 2× the student's channels and a wide hidden head."""
    return nn.Sequential(
        _block(1, 32, pool=True),
        _block(32, 64, pool=True),
        _block(64, 128, pool=True),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(128 * 3 * 3, 256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, 10),
    )


def student() -> nn.Sequential:
    """About 0.06 M parameters and ~4 M MACs: one 3×3 conv per resolution, linear head."""
    return nn.Sequential(
        _block(1, 24, pool=True),
        _block(24, 48, pool=True),
        _block(48, 96, pool=True),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(96 * 3 * 3, 10),
    )
