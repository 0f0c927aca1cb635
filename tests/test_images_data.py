"""The IDX reader and the image data module (paper 1 (MTGM), Sec. 5.2 data) on tiny IDX files written here."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from image_fixtures import CLASSES, write_tiny_idx

from diffusion_theory.datamodules.idx import MissingDataError, find_idx_files, load_split, read_idx, write_idx
from diffusion_theory.datamodules.images import ImageClassesDataModule, keep_counts, to_pixels


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    arr = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", arr)
    assert torch.equal(read_idx(path), torch.from_numpy(arr))
    labels = np.arange(7, dtype=np.uint8)
    assert read_idx(write_idx(tmp_path / f"y-idx1-ubyte{suffix}", labels)).tolist() == list(range(7))


def test_idx_header_bytes_are_the_standard_format(tmp_path):
    # hand-written file: magic 0x00000801 (uint8, 1 dimension), size 3 big-endian, values 7 8 9
    path = tmp_path / "labels.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    assert read_idx(path).tolist() == [7, 8, 9]


def test_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 4, 5]))
    with pytest.raises(ValueError, match="holds 1"):
        read_idx(tmp_path / "short")
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="not supported"):
        read_idx(tmp_path / "float")


def test_files_are_found_in_torchvision_subfolders_gz_or_not(tmp_path):
    write_tiny_idx(tmp_path / "MNIST" / "raw", gz=False)
    images, labels = find_idx_files(tmp_path, "train")
    assert images.name == "train-images-idx3-ubyte" and images.parent == tmp_path / "MNIST" / "raw"
    x, y = load_split(tmp_path, "test")
    assert x.shape == (30 * len(CLASSES), 8, 8) and y.dtype == torch.int64


def test_missing_data_names_files_folder_and_ways_to_get_them(tmp_path):
    dm = ImageClassesDataModule(dataset="fashion-mnist", root=str(tmp_path / "nothing"), download=False)
    with pytest.raises(MissingDataError) as err:
        dm.setup("fit")
    text = str(err.value)
    assert "t10k-images-idx3-ubyte" in text and str(tmp_path / "nothing") in text
    assert "make data" in text and "dataset-fashion-mnist" in text and "download" in text
    dm = ImageClassesDataModule(dataset="folder", root=str(tmp_path / "nothing"))
    with pytest.raises(MissingDataError, match="train-images-idx3-ubyte.*looked in"):
        dm.train_set  # noqa: B018


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "MNIST", offline)
    dm = ImageClassesDataModule(dataset="mnist", root=str(tmp_path), download=True)
    with pytest.raises(MissingDataError, match="download failed.*network unreachable.*MNIST/raw"):
        dm.setup("fit")


def test_exact_class_counts_seeded_subsets_and_pixels(tmp_path):
    write_tiny_idx(tmp_path, n_train=40, n_test=30)
    dm = ImageClassesDataModule(
        dataset="folder",
        root=str(tmp_path),
        classes=[0, 2, 3],
        keep_fraction={2: 0.3, 3: 0.55},
        image_size=8,
        n_real_per_class=20,
    )
    dm.setup("fit")
    assert dm.class_counts() == {0: 40, 2: 12, 3: 22}  # round(0.3 * 40), round(0.55 * 40)
    train = dm.train_set
    assert train["x0"].shape == (74, 1, 8, 8) and train["y"].tolist() == [0] * 40 + [1] * 12 + [2] * 22
    assert train["x0"].min() >= -1 and train["x0"].max() <= 1
    # the kept images of class 2 are real training images of class 2, drawn without repetition
    raw, labels = load_split(tmp_path, "train")
    pool = to_pixels(raw[labels == 2], 8).flatten(1)
    kept = train["x0"][train["y"] == 1].flatten(1)
    matches = (kept[:, None] == pool[None]).all(-1)  # (12, 40)
    assert (matches.sum(1) == 1).all() and matches.any(0).sum() == 12
    # seeded: the same subset again, another with another seed
    again = ImageClassesDataModule(
        dataset="folder", root=str(tmp_path), classes=[0, 2, 3], keep_fraction={2: 0.3, 3: 0.55}, image_size=8
    )
    assert torch.equal(again.train_set["x0"], train["x0"])
    other = ImageClassesDataModule(
        dataset="folder",
        root=str(tmp_path),
        classes=[0, 2, 3],
        keep_fraction={2: 0.3, 3: 0.55},
        image_size=8,
        subset_seed=1,
    )
    assert not torch.equal(other.train_set["x0"], train["x0"])
    # held-out set: n_real_per_class test images of each class
    real = dm.real_images()
    assert {c: v.shape[0] for c, v in real.items()} == {0: 20, 2: 20, 3: 20}
    assert dm.evaluation_set["x0"].shape[0] == 60 and dm.sample_shape == (1, 8, 8)


def test_pixels_scale_to_minus_one_one_and_pool_by_block_means():
    raw = torch.tensor([[[0, 255, 0, 0], [255, 255, 0, 0], [0, 0, 51, 51], [0, 0, 51, 51]]], dtype=torch.uint8)
    full = to_pixels(raw, 4)
    assert full[0, 0, 0, 0] == -1 and full[0, 0, 0, 1] == 1
    pooled = to_pixels(raw, 2)  # 2 x 2 block means of raw / 255, then 2 v - 1
    expected = torch.tensor([[0.75, 0.0], [0.0, 0.2]]) * 2 - 1
    assert torch.allclose(pooled[0, 0], expected, atol=1e-6)
    with pytest.raises(ValueError, match="image_size must divide"):
        to_pixels(raw, 3)


def test_bad_configs_are_one_clear_error(tmp_path):
    write_tiny_idx(tmp_path)
    folder = {"dataset": "folder", "root": str(tmp_path), "image_size": 8}
    with pytest.raises(ValueError, match=r"keep_fraction\[2\] must lie in \(0, 1\]; got 1.5"):
        ImageClassesDataModule(**folder, keep_fraction={2: 1.5})
    with pytest.raises(ValueError, match=r"keep_fraction\[2\] must lie in \(0, 1\]; got 0.0"):
        ImageClassesDataModule(**folder, keep_fraction={2: 0.0})
    with pytest.raises(ValueError, match="names class 7, which is not in data.classes"):
        ImageClassesDataModule(**folder, keep_fraction={7: 0.5})
    with pytest.raises(ValueError, match="class 7 is not in the (test|train) split"):
        ImageClassesDataModule(**folder, classes=[0, 7], keep_fraction={}).setup("fit")
    with pytest.raises(ValueError, match="class 2 would be left empty"):
        ImageClassesDataModule(**folder, keep_fraction={2: 0.01}).setup("fit")  # round(0.01 * 40) = 0
    with pytest.raises(ValueError, match="n_real_per_class must be >= 2"):
        ImageClassesDataModule(**folder, n_real_per_class=1)
    with pytest.raises(ValueError, match="needs the folder"):
        ImageClassesDataModule(dataset="folder")
    with pytest.raises(ValueError, match="left empty"):
        keep_counts({0: 3}, {0: 0.1})


def test_batches_cycle_the_kept_set(tmp_path):
    write_tiny_idx(tmp_path)
    dm = ImageClassesDataModule(dataset="folder", root=str(tmp_path), image_size=4, batch_size=16, steps_per_epoch=3)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and batches[0]["x0"].shape == (16, 1, 4, 4) and batches[0]["y"].max() < 5
    val = list(dm.val_dataloader())
    assert sum(b["y"].numel() for b in val) == dm.evaluation_set["y"].numel()
