"""PerClassFID (paper 1 (MTGM), Sec. 5.2, Fig. 3 and 5): labelling, per-class FID against a direct computation,
conditional generation, bad input, 2-process DDP equal to one process, and a real fit + evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import ROOT, subprocess_env
from image_fixtures import train_tiny_classifier, write_tiny_idx
from per_class_fid_worker import make, stub_trainer

from diffusion_theory.diffusion.generation import chunk_generator, chunk_plan
from diffusion_theory.metrics.fid import fid_from_features
from diffusion_theory.models.classifier_module import export_classifier

WORKER = Path(__file__).resolve().parent / "per_class_fid_worker.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(IDX folder, classifier checkpoint) of the tiny four-class data."""
    from diffusion_theory.datamodules.images import ImageClassesDataModule

    root = write_tiny_idx(tmp_path_factory.mktemp("idx"), n_train=60, n_test=40)
    dm = ImageClassesDataModule(dataset="folder", root=str(root), classes=[0, 1, 2, 3], keep_fraction={}, image_size=8)
    path = export_classifier(train_tiny_classifier(dm, feature_dim=8), root / "classifier.pt")
    return str(root), str(path)


def drawn(module, n: int, chunk: int, seed: int):
    """The images and true classes the stand-in draws for chunks 0.. (one process)."""
    xs, ys = [], []
    for k, _start, rows in chunk_plan(n, chunk, 0, 1):
        x, y = module.draw(rows, chunk_generator(seed, k, torch.device("cpu")))
        xs.append(x), ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def test_labels_shares_and_per_class_fid_of_an_unconditional_model(tiny, tmp_path):
    idx, clf = tiny
    dm, module, cb = make(idx, clf, conditional=False, fidelity_check=True)
    trainer = stub_trainer(dm, 0, 1, str(tmp_path))
    cb.setup(trainer, module, "fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = cb.evaluate(trainer, module)
    # class 3 is never generated: a message, no value (never a NaN)
    assert any("0 generated image(s) of class 3" in str(w.message) for w in caught)
    assert "val/fid/class_3" not in values and all(v == v for v in values.values())
    x, y = drawn(module, 300, 40, 5)
    with torch.no_grad():
        classifier = cb.auxiliary_model()
        pred = classifier(x).argmax(-1)
    assert (pred == y).float().mean() > 0.97  # the classifier labels the tiny classes
    for k in range(4):  # the logged share is the classifier's labelling
        assert values[f"val/gen_share/class_{k}"] == pytest.approx(float((pred == k).double().mean()), abs=1e-12)
    assert values["val/gen_share/class_0"] == pytest.approx(0.5, abs=0.1)
    # per-class FID equals a direct computation on the same features (generated with label k vs real class k)
    ext = cb.extractor()
    with torch.no_grad():
        real = {k: ext(v) for k, v in dm.real_images().items()}
        fake = ext(x)
    for k in range(3):
        assert values[f"val/fid/class_{k}"] == pytest.approx(fid_from_features(fake[pred == k], real[k]), rel=1e-6)
    assert values["val/classifier_confidence"] > 0.5
    # torch-fidelity's FID on the same features agrees; KID and precision / recall come with it
    for k in range(3):
        assert values[f"val/fidelity/fid/class_{k}"] == pytest.approx(values[f"val/fid/class_{k}"], rel=1e-6)
        assert 0 <= values[f"val/fidelity/precision/class_{k}"] <= 1 and f"val/fidelity/kid/class_{k}" in values
    rec = cb.last_record["record"]
    assert rec["n_generated"] == {str(k): int((pred == k).sum()) for k in range(4)}
    assert rec["n_real"] == {str(k): 40 for k in range(4)} and rec["sampler"] == "ddpm" and rec["seed"] == 5
    assert rec["extractor"] == "classifier-penultimate" and len(rec["classifier_hash"]) == 16
    line = json.loads((tmp_path / "per_class_fid.jsonl").read_text().splitlines()[-1])
    assert line["values"] == pytest.approx(values)
    # figures: per-class FID over training, grid per class, shares
    cb.after_epoch(trainer, module, values)
    for name in ("fig3_per_class_fid", "fig5_generated_grid", "class_shares"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    # real statistics are computed once: a second evaluation gives the same values (same seeds, same model)
    assert cb.evaluate(trainer, module) == pytest.approx(values)


def test_conditional_model_generates_each_class(tiny, tmp_path):
    idx, clf = tiny
    dm, module, cb = make(idx, clf, conditional=True, n_samples=200, guidance_scale=2.0)
    trainer = stub_trainer(dm, 0, 1, str(tmp_path))
    cb.setup(trainer, module, "fit")
    values = cb.evaluate(trainer, module)
    assert cb.last_record["record"]["n_generated"] == {str(k): 50 for k in range(4)}  # image i asks for i mod 4
    assert cb.last_record["record"]["guidance_scale"] == 2.0
    assert values["val/label_agreement"] > 0.97 and all(f"val/fid/class_{k}" in values for k in range(4))


def test_bad_input_is_one_clear_error(tiny, tmp_path):
    from diffusion_theory.callbacks.per_class_fid import PerClassFID
    from diffusion_theory.networks.classifier import ImageClassifier

    idx, clf = tiny
    other = export_classifier(ImageClassifier((1, 8, 8), class_labels=[0, 1, 2, 5]), tmp_path / "other.pt")
    dm, module, cb = make(idx, str(other), conditional=False)
    with pytest.raises(ValueError, match=r"trained on classes \[0, 1, 2, 5\] but the data has classes \[0, 1, 2, 3\]"):
        cb.setup(stub_trainer(dm, 0, 1, str(tmp_path)), module, "fit")
    dm, module, cb = make(idx, clf, conditional=False, guidance_scale=2.0)
    with pytest.raises(ValueError, match="guidance_scale needs a class-conditional model"):
        cb.setup(stub_trainer(dm, 0, 1, str(tmp_path)), module, "fit")
    dm, module, cb = make(idx, clf, conditional=True, n_samples=6)
    with pytest.raises(ValueError, match="n_samples must be >= 2 K = 8"):
        cb.setup(stub_trainer(dm, 0, 1, str(tmp_path)), module, "fit")
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        PerClassFID(aux_checkpoint=clf, n_samples=1)
    with pytest.raises(ValueError, match="features must be 'classifier' or 'inception'"):
        PerClassFID(aux_checkpoint=clf, features="vgg")
    with pytest.raises(FileNotFoundError, match="aux_checkpoint: no such file"):
        PerClassFID(aux_checkpoint=str(tmp_path / "none.pt")).auxiliary_model()


def test_two_processes_give_the_single_process_values(tiny, tmp_path):
    idx, clf = tiny
    results = {}
    for world in (1, 2):
        out = tmp_path / f"w{world}.json"
        proc = subprocess.run(
            [sys.executable, str(WORKER), idx, clf, str(out), str(world)],
            cwd=ROOT,
            env=subprocess_env({"OMP_NUM_THREADS": "1"}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[world] = json.loads(out.read_text())
    one, two = results[1], results[2]
    assert one["record"]["n_generated"] == two["record"]["n_generated"]  # no image counted twice or lost
    assert sum(one["record"]["n_generated"].values()) == 300
    assert set(one["values"]) == set(two["values"])
    for name, value in one["values"].items():
        assert two["values"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
