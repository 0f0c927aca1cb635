"""Frechet distance between feature distributions (FID; Heusel et al. 2017), per class as in paper 1 (MTGM),
Sec. 5.2 (Fig. 3: FID of each digit's generated images against that digit's real images).

    FID = ||mu_1 - mu_2||^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1 S_2)^{1/2}),
    Tr((S_1 S_2)^{1/2}) = sum_i sqrt(lambda_i(S_1 S_2))      (S_1 S_2 is similar to a PSD matrix: lambda_i >= 0)

with mu, S the mean and unbiased covariance (n - 1) of each set's features, in float64.

``streaming_fid`` is torchmetrics' ``FrechetInceptionDistance`` with a custom feature module, the
``FeaturePassthrough`` (the features are computed once upstream, by ``metrics.fid_features``, and shared by the
per-class metrics): float64 states (sums of features and of their outer products) that torchmetrics syncs across
DDP ranks in ``compute``, and real statistics kept across resets (``reset_real_features=False``: computed once
per run). ``fidelity_metrics`` is torch-fidelity's feature-level FID, KID and precision / recall: an independent
implementation to cross-check against (``scripts/evaluate.py``, tests).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (n, F), in float64; n >= 2."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics: need features (n, F) with n >= 2; got shape {tuple(features.shape)}")
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (module docstring), float64 scalar."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    eig = torch.linalg.eigvals(sigma1 @ sigma2)  # complex; real parts >= 0 up to rounding
    tr_sqrt = eig.sqrt().real.sum()
    return (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt


def fid_from_features(a: Tensor, b: Tensor) -> float:
    """FID between two feature sets (n_a, F) and (n_b, F)."""
    return float(frechet_distance(*feature_statistics(a), *feature_statistics(b)))


class FeaturePassthrough(nn.Module):
    """The custom feature module of ``streaming_fid``: features computed upstream pass through, as float64."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: Tensor) -> Tensor:  # (B, F) -> (B, F) float64
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"FID: expected features (B, {self.num_features}); got {tuple(features.shape)}")
        return features.double()


def streaming_fid(num_features: int) -> FrechetInceptionDistance:
    """torchmetrics FID over precomputed features (B, num_features): float64, real statistics kept across resets.

    ``update(features, real=True/False)``; ``compute()`` syncs the states across DDP ranks (every rank must call)."""
    metric = FrechetInceptionDistance(feature=FeaturePassthrough(num_features), reset_real_features=False)
    metric.set_dtype(torch.float64)
    return metric


def fidelity_metrics(
    generated: Tensor, real: Tensor, kid_subset_size: int | None = None, prc_neighborhood: int = 3, seed: int = 0
) -> dict[str, float]:
    """torch-fidelity's FID, KID (mean, std) and precision / recall / F-score on the same features.

    generated (n_g, F), real (n_r, F), n_g, n_r >= 2; KID subsets of ``kid_subset_size`` (default min(n_g, n_r, 1000))
    rows; precision / recall with k = min(prc_neighborhood, n_g - 1, n_r - 1) nearest neighbours."""
    if generated.shape[0] < 2 or real.shape[0] < 2:
        raise ValueError(
            f"fidelity_metrics: need at least 2 generated and 2 real feature rows; got {generated.shape[0]} "
            f"and {real.shape[0]}"
        )
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    generated, real = generated.detach().double().cpu(), real.detach().double().cpu()
    subset = kid_subset_size or min(generated.shape[0], real.shape[0], 1000)
    out = dict(
        fid_statistics_to_metric(fid_features_to_statistics(generated), fid_features_to_statistics(real), verbose=False)
    )
    out.update(
        kid_features_to_metric(generated, real, kid_subsets=100, kid_subset_size=subset, rng_seed=seed, verbose=False)
    )
    k = min(prc_neighborhood, generated.shape[0] - 1, real.shape[0] - 1)  # k-NN balls need k + 1 points per set
    out.update(
        prc_features_to_metric(
            generated.float(), real.float(), prc_neighborhood=k, prc_batch_size=10000, save_cpu_ram=False, verbose=False
        )
    )
    return {k: float(v) for k, v in out.items()}
