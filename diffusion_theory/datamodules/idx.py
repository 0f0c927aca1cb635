"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), gzipped or not: one reader for all sources.

    magic: 2 zero bytes, a type byte (0x08 = uint8, the only type these data sets use), the number of dimensions
    sizes: one big-endian uint32 per dimension
    data:  prod(sizes) values, row-major

Sources (``find_idx_files``): any folder holding the four standard files (``train-images-idx3-ubyte`` and friends,
each with or without ``.gz``), also under ``<folder>/MNIST/raw`` or ``<folder>/FashionMNIST/raw`` where
torchvision downloads them. Fashion-MNIST without internet: Debian's package ``dataset-fashion-mnist`` installs it
under /usr/share/datasets/fashion-mnist (``make data``).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TORCHVISION_SUBDIRS = ("", "MNIST/raw", "FashionMNIST/raw")
UINT8 = 0x08


class MissingDataError(FileNotFoundError):
    """The IDX files of a data set are not where they were looked for."""


def read_idx(path: str | Path) -> Tensor:
    """The array of one IDX file (gzipped when the name ends in .gz) as a uint8 tensor of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be zero)")
    dtype, ndim = data[2], data[3]
    if dtype != UINT8:
        raise ValueError(f"{path}: IDX type 0x{dtype:02x} is not supported (MNIST-format files are uint8, 0x08)")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape)) if ndim else 1
    if len(data) - header != count:
        raise ValueError(
            f"{path}: header says shape {tuple(shape)} ({count} values) but the file holds {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def write_idx(path: str | Path, array: Tensor | np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz); the inverse of ``read_idx``."""
    path = Path(path)
    array = np.asarray(array, dtype=np.uint8)
    payload = bytes([0, 0, UINT8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path


def _candidates(folder: Path, stem: str) -> list[Path]:
    return [folder / sub / f"{stem}{suffix}" for sub in TORCHVISION_SUBDIRS for suffix in ("", ".gz")]


def find_idx_files(folder: str | Path, split: str, how_to_get: str = "") -> tuple[Path, Path]:
    """(images, labels) files of ``split`` ("train" or "test") in ``folder`` (or its torchvision subfolders).

    Raises ``MissingDataError`` naming the missing files, the folders looked in and ``how_to_get``."""
    folder = Path(folder)
    found, missing = [], []
    for stem in SPLIT_FILES[split]:
        hit = next((p for p in _candidates(folder, stem) if p.is_file()), None)
        (found if hit is not None else missing).append(hit if hit is not None else stem)
    if missing:
        looked = ", ".join(str(folder / sub) if sub else str(folder) for sub in TORCHVISION_SUBDIRS)
        raise MissingDataError(
            f"missing {', '.join(f'{m}[.gz]' for m in missing)}: looked in {looked}. {how_to_get}".strip()
        )
    return found[0], found[1]


def load_split(folder: str | Path, split: str, how_to_get: str = "") -> tuple[Tensor, Tensor]:
    """Images (n, H, W) uint8 and labels (n,) int64 of ``split``, checked for matching lengths."""
    images_path, labels_path = find_idx_files(folder, split, how_to_get)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dim() != 3 or labels.dim() != 1:
        raise ValueError(
            f"{images_path}: expected images (n, H, W) and labels (n,); got {tuple(images.shape)} and "
            f"{tuple(labels.shape)} ({labels_path})"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} holds {images.shape[0]} images but {labels_path} {labels.shape[0]} labels")
    return images, labels.long()
