"""FID (paper 1 (MTGM), Sec. 5.2 metric): closed form, torch-fidelity equality, classifier features, extractors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_fixtures import train_tiny_classifier, write_tiny_idx

from diffusion_theory.datamodules.images import ImageClassesDataModule
from diffusion_theory.metrics.fid import (
    feature_statistics,
    fid_from_features,
    fidelity_metrics,
    frechet_distance,
    streaming_fid,
)
from diffusion_theory.networks.fid_features import ClassifierFeatures, InceptionFeatures, to_uint8_rgb


def test_frechet_distance_closed_form_for_commuting_covariances():
    # diagonal covariances commute: FID = |mu1 - mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    s1, s2 = (
        torch.rand(6, generator=g, dtype=torch.float64) + 0.1,
        torch.rand(6, generator=g, dtype=torch.float64) + 0.1,
    )
    expected = (mu1 - mu2).square().sum() + (s1.sqrt() - s2.sqrt()).square().sum()
    assert float(frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2))) == pytest.approx(
        float(expected), rel=1e-10
    )
    # and a rotated pair (non-diagonal, still commuting): invariant under the same rotation
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    got = frechet_distance(q @ mu1, q @ torch.diag(s1) @ q.T, q @ mu2, q @ torch.diag(s2) @ q.T)
    assert float(got) == pytest.approx(float(expected), rel=1e-8)
    assert float(frechet_distance(mu1, torch.diag(s1), mu1, torch.diag(s1))) == pytest.approx(0, abs=1e-10)


def test_feature_statistics_are_mean_and_unbiased_covariance():
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    mu, sigma = feature_statistics(f)
    assert torch.allclose(mu, f.double().mean(0)) and torch.allclose(sigma, torch.cov(f.double().T))
    with pytest.raises(ValueError, match="n >= 2"):
        feature_statistics(f[:1])


def test_streaming_fid_equals_torch_fidelity_on_the_same_features():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(300, 10, generator=g), 1.3 * torch.randn(200, 10, generator=g) + 0.4
    theirs = fid_statistics_to_metric(
        fid_features_to_statistics(fake.double()), fid_features_to_statistics(real.double()), verbose=False
    )["frechet_inception_distance"]
    metric = streaming_fid(10)
    for chunk in real.split(64):  # streamed in chunks: sums, not stored features
        metric.update(chunk, real=True)
    for chunk in fake.split(50):
        metric.update(chunk, real=False)
    ours = metric.compute()
    assert ours.dtype == torch.float64
    assert float(ours) == pytest.approx(theirs, rel=1e-9)
    assert fid_from_features(fake, real) == pytest.approx(theirs, rel=1e-9)
    assert fidelity_metrics(fake, real)["frechet_inception_distance"] == pytest.approx(theirs, rel=1e-9)
    # real statistics survive a reset (computed once per run)
    metric.reset()
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(theirs, rel=1e-9)


def test_fidelity_metrics_kid_and_precision_recall_behave():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g)
    same, far = fidelity_metrics(a, b), fidelity_metrics(a + 5, b)
    assert abs(same["kernel_inception_distance_mean"]) < 0.05 < far["kernel_inception_distance_mean"]
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and far["precision"] < 0.05


@pytest.fixture(scope="module")
def tiny_classes(tmp_path_factory):
    root = write_tiny_idx(tmp_path_factory.mktemp("idx"), n_train=60, n_test=200)
    dm = ImageClassesDataModule(dataset="folder", root=str(root), classes=[0, 1, 2, 3], keep_fraction={}, image_size=8)
    return dm, train_tiny_classifier(dm, feature_dim=8)


def test_classifier_features_fid_near_zero_within_a_class_and_large_between_classes(tiny_classes):
    dm, classifier = tiny_classes
    real = dm.real_images()  # 200 held-out images per class
    ext = ClassifierFeatures(classifier)
    with torch.no_grad():
        feats = {c: ext(x) for c, x in real.items()}
    assert feats[0].shape == (200, 8)
    within = fid_from_features(feats[0][:100], feats[0][100:])
    between = min(fid_from_features(feats[0][:100], feats[c][100:]) for c in (1, 2, 3))
    assert within < 0.05 * between, (within, between)
    # the classifier labels the held-out images (the labelling of generated images uses the same argmax)
    with torch.no_grad():
        acc = np.mean([(classifier(x).argmax(-1) == k).float().mean().item() for k, x in enumerate(real.values())])
    assert acc > 0.95


def test_inception_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="inception_weights: no file .*download"):
        InceptionFeatures(str(tmp_path / "missing.pth"))
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(fe, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="could not be downloaded.*inception_weights.*features: classifier"):
        InceptionFeatures(None)


def test_uint8_rgb_conversion_of_minus_one_one_images():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, 0].flatten().tolist() == [0, 128, 255, 255] and torch.equal(out[0, 0], out[0, 2])
