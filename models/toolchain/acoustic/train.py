"""Training loops: hard labels (synthetic speech) and distillation (teacher soft labels)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

THREADS = 2


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)


def spec_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One frequency mask (≤ 6 bins) and one time mask (≤ 15 frames) per example, set to the mean."""
    n, f, t = x.shape
    x = x.clone()
    fill = x.mean(dim=(1, 2), keepdim=True)
    f0 = torch.randint(0, f - 6, (n,), generator=gen)
    fw = torch.randint(0, 7, (n,), generator=gen)
    t0 = torch.randint(0, t - 15, (n,), generator=gen)
    tw = torch.randint(0, 16, (n,), generator=gen)
    fi = torch.arange(f).view(1, f, 1)
    ti = torch.arange(t).view(1, 1, t)
    fmask = (fi >= f0.view(n, 1, 1)) & (fi < (f0 + fw).view(n, 1, 1))
    tmask = (ti >= t0.view(n, 1, 1)) & (ti < (t0 + tw).view(n, 1, 1))
    mask = fmask | tmask
    return torch.where(mask, fill.expand_as(x), x)


def fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    lr: float = 3e-3,
    batch: int = 128,
    soft: np.ndarray | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    weights: np.ndarray | None = None,
    log: bool = True,
) -> nn.Module:
    """AdamW + one-cycle. With `soft` (teacher probabilities at `temperature`), the loss is
    alpha * T² * KL(teacher || student) + (1 - alpha) * CE(hard); rows with y < 0 are soft-only.
    `weights` scales each row's loss (e.g. to balance unlabelled real audio against synthetic)."""
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    st = None if soft is None else torch.from_numpy(soft.astype(np.float32))
    wt = torch.ones(len(x)) if weights is None else torch.from_numpy(weights.astype(np.float32))
    counts = np.bincount(y[y >= 0], minlength=int(model.head.out_features)).astype(np.float64)
    class_w = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            xb, yb, wb = spec_augment(xt[idx], gen), yt[idx], wt[idx]
            logits = model(xb)
            has_label = yb >= 0
            ce = F.cross_entropy(
                logits, yb.clamp(min=0), weight=class_w, reduction="none", label_smoothing=0.05
            )
            ce = torch.where(has_label, ce, torch.zeros_like(ce))
            if st is None:
                loss_rows = ce
            else:
                kl = F.kl_div(F.log_softmax(logits / temperature, dim=1), st[idx], reduction="none").sum(1)
                hard_w = torch.where(has_label, torch.full_like(ce, 1 - alpha), torch.zeros_like(ce))
                loss_rows = alpha * temperature**2 * kl + hard_w * ce
            loss = (loss_rows * wb).sum() / wb.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb)[has_label].sum())
            seen += int(has_label.sum())
        if log:
            acc = correct / max(1, seen)
            print(f"  epoch {epoch + 1}/{epochs} loss {total / len(x):.4f} train acc {acc:.3f}", flush=True)
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    return np.concatenate(
        [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    )
