"""Denoising risks of paper 1 (MTGM): score error, Bayes risk, oracle risk, output-scale error, time-averaged SNR.

Every function is pure torch on per-item tensors: a batch of B noisy items (each a (sample, time) pair of the
evaluation grid) with noise E (B, ...), a noise prediction (B, ...) and abar_t (B,). Per-item values are means
over the non-batch dimensions (the 1/(dP) of the papers' normalisations); averaging them over items gives the
expectation over X^0, E and t.
"""

from __future__ import annotations

from torch import Tensor


def mean_square(a: Tensor) -> Tensor:
    """||a_b||^2 / (number of entries) for each item b: (B, ...) -> (B,)."""
    return a.pow(2).flatten(1).mean(1)


def denoising_risk(noise: Tensor, eps_pred: Tensor, loss_scale: float = 0.5) -> Tensor:
    """loss_scale * ||E - eps_pred||^2 / (dP) per item: (B, ...), (B, ...) -> (B,).

    With eps_pred = E[E | X^t] this is the Bayes risk, paper 1 (MTGM) eq. (6); with eps_pred = E[E | X^t, M_Y]
    the oracle risk, paper 1 (MTGM) eq. (14); with the network's prediction, the DDPM loss, paper 1 (MTGM)
    eq. (3). loss_scale = 1/2 is the papers' 1/(2dP).
    """
    return loss_scale * mean_square(noise - eps_pred)


def score_error(eps_hat: Tensor, exact_eps: Tensor, abar: Tensor) -> Tensor:
    """||s_theta - s||^2 / (2dP) per item, paper 1 (MTGM) eq. (5): (B, ...), (B, ...), (B,) -> (B,).

    Scores of noise predictions: s_theta = -eps_hat / sqrt(1 - abar_t) and s = -E[E | X^t] / sqrt(1 - abar_t)
    (the score of the noisy law, as in paper 1 (MTGM) eq. (11)), so ||s_theta - s||^2 = ||eps_hat - E[E|X^t]||^2
    / (1 - abar_t).
    """
    return 0.5 * mean_square(eps_hat - exact_eps) / (1 - abar)


def output_scale_error(learned: Tensor, oracle: Tensor) -> Tensor:
    """mean_t |v_t - v*_t| over the given steps, paper 1 (MTGM) eq. (16): (n_t,), (n_t,) -> ().

    v*_t = sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t) is the coefficient of the oracle estimator
    (``MTGM.oracle_coefficient``).
    """
    return (learned - oracle).abs().mean()


def time_averaged_snr(abar: Tensor) -> float:
    """SNR = E_t[abar_t / (1 - abar_t)] over the given steps (uniform weights): paper 1 (MTGM), the definition
    after paper 1 (MTGM) eq. (8) used in Theorem 1 (v) (Luo, 2022's per-step SNR). abar: (n_t,)."""
    return float((abar / (1 - abar)).mean())
