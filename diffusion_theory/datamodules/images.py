"""Class-imbalanced images in MNIST format: the data of paper 1 (MTGM), Sec. 5.2 (Fig. 3 and 5).

Paper 1 trains on MNIST digits 0-3 with digit 2 as a minority class, 30 % of its training images kept. This
module reads any MNIST-format data (``datamodules.idx``): MNIST (downloaded by torchvision where the network
allows), Fashion-MNIST (Debian's ``dataset-fashion-mnist`` under /usr/share/datasets/fashion-mnist, or
torchvision), or any folder of the four standard IDX files.

    training set   for each class c of ``classes``: round(keep_fraction[c] N_c) of its N_c training images
                   (exact counts), a seeded random subset (seed ``subset_seed``, independent per class)
    held-out set   the test split's images of the classes (at most ``n_real_per_class`` each, the first in a
                   seeded order): the real images of the per-class FID (``held_out_set``)
    evaluation set ``n_eval`` images of the held-out set (all when null), the validation batches
    pixels         uint8 / 255, average-pooled to ``image_size`` (28 -> 14: 2 x 2 means), scaled to [-1, 1]
    batches        {x0: (B, 1, S, S) float, y: (B,) class index into ``classes`` (0 .. K-1), index: (B,)}

The class index y is the DiT's label and the classifier's target; metric names use the data's own label
(``classes[y]``), so the minority is ``val/fid/class_2`` in both MNIST and Fashion-MNIST (2 = pullover).
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from diffusion_theory.datamodules.idx import MissingDataError, load_split
from diffusion_theory.datamodules.streams import CycledBatches, ShardedBatches

Dataset = Literal["fashion-mnist", "mnist", "folder"]
DEFAULT_ROOTS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "data/mnist"}
FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def how_to_get(dataset: str, root: str) -> str:
    """The ways to get a data set's IDX files, for the missing-data error."""
    if dataset == "fashion-mnist":
        return (
            f"Get Fashion-MNIST with `make data` (apt-get install dataset-fashion-mnist: files under "
            f"/usr/share/datasets/fashion-mnist), or data.init_args.download: true where the network allows "
            f"(torchvision writes {root}/FashionMNIST/raw), or copy the four files into {root}."
        )
    if dataset == "mnist":
        return (
            f"Get MNIST with data.init_args.download: true where the network allows (torchvision writes "
            f"{root}/MNIST/raw), or copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz into {root}."
        )
    return f"Put the four MNIST-format IDX files (train-images-idx3-ubyte[.gz] and friends) into {root}."


def to_pixels(images: Tensor, image_size: int) -> Tensor:
    """uint8 (n, H, W) -> float (n, 1, S, S) in [-1, 1]: /255, S x S average pooling of (H/S) x (W/S) blocks."""
    n, h, w = images.shape
    if h % image_size or w % image_size:
        raise ValueError(f"data.image_size must divide the stored size {h} x {w}; got {image_size}")
    x = images.float().div(255.0).unsqueeze(1)  # (n, 1, H, W) in [0, 1]
    if image_size != h or image_size != w:
        x = F.avg_pool2d(x, kernel_size=(h // image_size, w // image_size))  # (n, 1, S, S)
    return x.mul(2.0).sub(1.0)


def keep_counts(class_sizes: dict[int, int], keep_fraction: dict[int, float]) -> dict[int, int]:
    """Images kept per class: round(f_c N_c) (f_c = keep_fraction.get(c, 1)); an empty class is an error."""
    counts = {}
    for c, size in class_sizes.items():
        kept = int(round(keep_fraction.get(c, 1.0) * size))
        if kept < 1:
            raise ValueError(
                f"data.keep_fraction: class {c} would be left empty ({keep_fraction.get(c, 1.0)} of its "
                f"{size} training images); raise its fraction"
            )
        counts[c] = kept
    return counts


class ImageClassesDataModule(pl.LightningDataModule):
    """Images of a few classes of an MNIST-format data set, with minority classes (paper 1 (MTGM), Sec. 5.2).

    Args:
        dataset: ``fashion-mnist`` (CPU scale; Debian's package), ``mnist`` (the paper's) or ``folder`` (any folder
            of the four IDX files, given by ``root``).
        root: the folder of the IDX files (default: /usr/share/datasets/fashion-mnist, data/mnist; required for
            ``folder``).
        download: fetch MNIST / Fashion-MNIST with torchvision into ``root`` when the files are missing.
        classes: the data's labels to keep (paper: digits 0, 1, 2, 3).
        keep_fraction: {label: fraction in (0, 1] of its training images kept}; classes not named keep all
            (paper: {2: 0.3}).
        subset_seed: seed of the kept subsets and of the held-out order.
        image_size: side of the images after average pooling (28: as stored; 14: 2 x 2 means, CPU scale).
        n_real_per_class: held-out (test split) images per class for FID (null: all, about 1000).
        n_eval: images of the held-out set in the validation batches (null: all).
        batch_size: training images per step (per process under DDP).
        steps_per_epoch: training steps between two validations.
        eval_batch_size: images per validation batch.
    """

    def __init__(
        self,
        dataset: Dataset = "fashion-mnist",
        root: str | None = None,
        download: bool = True,
        classes: list[int] = [0, 1, 2, 3],  # noqa: B006 (jsonargparse shows it)
        keep_fraction: dict[int, float] = {2: 0.3},  # noqa: B006
        subset_seed: int = 0,
        image_size: int = 28,
        n_real_per_class: int | None = None,
        n_eval: int | None = 512,
        batch_size: int = 128,
        steps_per_epoch: int = 200,
        eval_batch_size: int = 256,
    ):
        super().__init__()
        if dataset not in ("fashion-mnist", "mnist", "folder"):
            raise ValueError(f"data.dataset must be fashion-mnist, mnist or folder; got {dataset!r}")
        if dataset == "folder" and not root:
            raise ValueError("data.root: dataset 'folder' needs the folder of the IDX files")
        classes = [int(c) for c in classes]
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"data.classes must be a non-empty list of distinct labels; got {classes}")
        keep_fraction = {int(c): float(f) for c, f in dict(keep_fraction).items()}
        for c, f in keep_fraction.items():
            if c not in classes:
                raise ValueError(f"data.keep_fraction names class {c}, which is not in data.classes = {classes}")
            if not 0 < f <= 1:
                raise ValueError(f"data.keep_fraction[{c}] must lie in (0, 1]; got {f}")
        for name, value in (
            ("image_size", image_size),
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("eval_batch_size", eval_batch_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"data.{name} must be an integer >= 1; got {value}")
        for name, value in (("n_real_per_class", n_real_per_class), ("n_eval", n_eval)):
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"data.{name} must be an integer >= 1 or null (all); got {value}")
        if n_real_per_class is not None and n_real_per_class < 2:
            raise ValueError(f"data.n_real_per_class must be >= 2 (an FID needs a covariance); got {n_real_per_class}")
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = str(root) if root else DEFAULT_ROOTS[dataset]
        self.classes = classes
        self.keep_fraction = keep_fraction
        self._train: dict[str, Tensor] | None = None
        self._held_out: dict[str, Tensor] | None = None

    # -- reading ---------------------------------------------------------------------------------
    def _load(self, split: str) -> tuple[Tensor, Tensor]:
        hint = how_to_get(self.dataset, self.root)
        try:
            return load_split(self.root, split, hint)
        except MissingDataError:
            if not (self.hparams.download and self.dataset in ("mnist", "fashion-mnist")):
                raise
            self._download(hint)
            return load_split(self.root, split, hint)

    def _download(self, hint: str) -> None:
        from torchvision import datasets

        cls = datasets.MNIST if self.dataset == "mnist" else datasets.FashionMNIST
        try:
            for train in (True, False):
                cls(self.root, train=train, download=True)
        except Exception as err:  # offline, or a mirror down: the files stay missing
            raise MissingDataError(
                f"{self.dataset}: the IDX files are not in {self.root} and the download failed "
                f"({type(err).__name__}: {err}). {hint}"
            ) from err

    def _select(self, images: Tensor, labels: Tensor, split: str) -> dict[int, Tensor]:
        """{label: indices of its images} in a seeded order, per class of ``classes``; a class absent is an error."""
        present = sorted(int(c) for c in labels.unique())
        out = {}
        for c in self.classes:
            idx = (labels == c).nonzero().flatten()
            if idx.numel() == 0:
                raise ValueError(
                    f"data.classes: class {c} is not in the {split} split of {self.root} (its labels: {present})"
                )
            g = torch.Generator().manual_seed(self.hparams.subset_seed * 1009 + c * 7 + (split == "test"))
            out[c] = idx[torch.randperm(idx.numel(), generator=g)]
        return out

    def _build(self, images: Tensor, labels: Tensor, chosen: dict[int, Tensor]) -> dict[str, Tensor]:
        idx = torch.cat([chosen[c] for c in self.classes])
        y = torch.cat([torch.full((chosen[c].numel(),), k, dtype=torch.long) for k, c in enumerate(self.classes)])
        return {"x0": to_pixels(images[idx], self.hparams.image_size), "y": y, "index": torch.arange(idx.numel())}

    @property
    def train_set(self) -> dict[str, Tensor]:
        """The kept training images: x0 (n, 1, S, S) in [-1, 1], y (n,) class index, index (n,)."""
        if self._train is None:
            images, labels = self._load("train")
            order = self._select(images, labels, "train")
            counts = keep_counts({c: order[c].numel() for c in self.classes}, self.keep_fraction)
            self._train = self._build(images, labels, {c: order[c][: counts[c]] for c in self.classes})
        return self._train

    @property
    def held_out_set(self) -> dict[str, Tensor]:
        """The test split's images of the classes (at most n_real_per_class each): x0, y, index."""
        if self._held_out is None:
            images, labels = self._load("test")
            order = self._select(images, labels, "test")
            n = self.hparams.n_real_per_class
            chosen = {c: order[c][:n] if n is not None else order[c] for c in self.classes}
            short = {c: v.numel() for c, v in chosen.items() if v.numel() < 2}
            if short:
                raise ValueError(
                    f"data: the test split of {self.root} has fewer than 2 images of classes {short}; "
                    f"an FID needs at least 2 real images per class"
                )
            self._held_out = self._build(images, labels, chosen)
        return self._held_out

    @property
    def evaluation_set(self) -> dict[str, Tensor]:
        """The validation images: the first n_eval of the held-out set in a seeded order (all when null)."""
        held = self.held_out_set
        n = held["y"].numel() if self.hparams.n_eval is None else min(self.hparams.n_eval, held["y"].numel())
        g = torch.Generator().manual_seed(self.hparams.subset_seed + 17)
        idx = torch.randperm(held["y"].numel(), generator=g)[:n].sort().values
        return {"x0": held["x0"][idx], "y": held["y"][idx], "index": torch.arange(n)}

    # -- what models and diagnostics ask ---------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(1, S, S): one grey-scale image."""
        return (1, self.hparams.image_size, self.hparams.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_labels(self) -> list[int]:
        """The data's label of each class index y = 0 .. K-1."""
        return list(self.classes)

    def class_counts(self) -> dict[int, int]:
        """{label: training images kept}."""
        y = self.train_set["y"]
        return {c: int((y == k).sum()) for k, c in enumerate(self.classes)}

    def real_images(self) -> dict[int, Tensor]:
        """{label: held-out images (n_c, 1, S, S)}: the real side of the per-class FID."""
        held = self.held_out_set
        return {c: held["x0"][held["y"] == k] for k, c in enumerate(self.classes)}

    def class_name(self, label: int) -> str:
        return FASHION_NAMES[label] if self.dataset == "fashion-mnist" and 0 <= label < 10 else str(label)

    def setup(self, stage: str | None = None) -> None:
        self.held_out_set  # noqa: B018  (read before any step: missing data fails at once)
        if stage in (None, "fit"):
            self.train_set  # noqa: B018

    def _step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        ds = CycledBatches(self.train_set, hp.batch_size, hp.steps_per_epoch, hp.subset_seed, self._step)
        return DataLoader(ds, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self.evaluation_set, self.hparams.eval_batch_size), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self.held_out_set, self.hparams.eval_batch_size), batch_size=None)


def describe_counts(dm: ImageClassesDataModule) -> str:
    """One line: label (name): kept training images, for logs and reports."""
    return ", ".join(f"{c} ({dm.class_name(c)}): {n}" for c, n in dm.class_counts().items())


__all__ = ["ImageClassesDataModule"]
