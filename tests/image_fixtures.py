"""Tiny MNIST-format data for the image tests: IDX files written here, classes that a small CNN separates.

Class c of ``CLASSES`` (8 x 8 grey images): uniform noise in [0, 60] plus a bright 4 x 4 block at quadrant c
(c = 0..3) or centred (c = 4). ``write_tiny_idx`` writes the four standard files (train: ``n_train`` per class,
test: ``n_test`` per class) into a folder; ``train_tiny_classifier`` fits an ``ImageClassifier`` on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffusion_theory.datamodules.idx import write_idx
from diffusion_theory.networks.classifier import ImageClassifier

CLASSES = (0, 1, 2, 3, 4)
SIZE = 8
CORNERS = {0: (0, 0), 1: (0, 4), 2: (4, 0), 3: (4, 4), 4: (2, 2)}


def tiny_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 (n, 8, 8): noise plus the class's bright block."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 61, size=(labels.size, SIZE, SIZE)).astype(np.int64)
    for i, c in enumerate(labels):
        r, col = CORNERS[int(c)]
        images[i, r : r + 4, col : col + 4] += 160 + rng.integers(0, 35, size=(4, 4))
    return np.clip(images, 0, 255).astype(np.uint8)


def write_tiny_idx(
    folder: Path,
    n_train: int = 40,
    n_test: int = 30,
    gz: bool = True,
    classes: tuple[int, ...] = CLASSES,
    seed: int = 0,
) -> Path:
    """The four IDX files of a tiny data set in ``folder`` (labels interleaved: 0, 1, .., 4, 0, 1, ...)."""
    suffix = ".gz" if gz else ""
    for split, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        labels = np.tile(np.array(classes, dtype=np.uint8), n)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", tiny_images(labels, s))
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return folder


def train_tiny_classifier(dm, steps: int = 60, feature_dim: int = 8, seed: int = 0) -> ImageClassifier:
    """An ImageClassifier fitted with Adam on the data module's training set (a few seconds on a CPU)."""
    torch.manual_seed(seed)
    dm.setup("fit")
    net = ImageClassifier(
        input_shape=dm.sample_shape, class_labels=dm.class_labels(), width=8, feature_dim=feature_dim, dropout=0.0
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = dm.train_set["x0"], dm.train_set["y"]
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, y.numel(), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()
