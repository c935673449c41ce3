"""Training loops for the vision nets: plain cross-entropy and distillation from teacher logits.

CPU only, one torch thread by default (the machine is shared), channels-last tensors (2× faster
convolutions here), seeded shuffling and flips so a build is repeatable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

Log = Callable[[str], None]


def seed_everything(seed: int, threads: int = 1) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right (clothes look alike mirrored)."""
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student, labels) (Hinton et al.)."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student, labels)


def fit(
    model: nn.Module,
    images: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    epochs: int,
    seed: int,
    lr: float = 3e-3,
    batch: int = 128,
    teacher_logits: npt.NDArray[np.float32] | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    log: Log = print,
) -> nn.Module:
    """Train in place with AdamW + one-cycle LR; distil when `teacher_logits` are given."""
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels)
    t_all = None if teacher_logits is None else torch.from_numpy(teacher_logits)
    model.to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    steps = epochs * ((len(images) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        start, total, seen = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), batch):
            idx = order[i : i + batch]
            x = _flip(x_all[idx], gen).contiguous(memory_format=torch.channels_last)
            out = model(x)
            if t_all is None:
                loss = F.cross_entropy(out, y_all[idx])
            else:
                loss = distillation_loss(out, t_all[idx], y_all[idx], temperature, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / seen:.4f} ({time.perf_counter() - start:.0f} s)")
    return model.eval()


@torch.no_grad()
def logits(model: nn.Module, images: npt.NDArray[np.float32], batch: int = 1000) -> npt.NDArray[np.float32]:
    """Eval-mode logits of every image (used as distillation targets)."""
    model.eval()
    out = [
        model(torch.from_numpy(images[i : i + batch]).contiguous(memory_format=torch.channels_last))
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out).numpy().astype(np.float32)
