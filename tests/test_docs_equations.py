"""docs/equations.md stays true: every function it names imports, every test it names exists, every implemented
row names both. Also the closed-form checks the page cites for paper 1 (MTGM) eqs. (2)-(4) and paper 2 (GP)
eqs. (2) and (6), which no other test covers directly."""

from __future__ import annotations

import ast
import importlib
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from torch import Tensor, nn

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.theory_transformer import OneLayerTransformer

EQUATIONS = ROOT / "docs" / "equations.md"
FUNCTION = re.compile(r"`(diffusion_theory(?:\.\w+)+)`")
TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


# ----------------------------------------------------------------------------------------
# The tables
# ----------------------------------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every markdown table with the columns ref | what | implemented by | tested by."""
    rows, in_table = [], False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells[:4] == ["ref", "what", "implemented by", "tested by"]:
            in_table = True
        elif in_table and not set("".join(cells)) <= set("-: "):
            assert len(cells) == 4, line
            rows.append(cells)
    return rows


def resolve(path: str) -> object:
    """``package.module.Class.attr`` -> the object: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)  # AttributeError names the missing piece
        return obj
    raise ModuleNotFoundError(path)


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
    }


def test_every_row_names_importable_functions_and_existing_tests():
    rows = table_rows(EQUATIONS.read_text())
    assert len(rows) >= 40  # both papers' equations and figures
    refs = {r[0] for r in rows}
    for ref in ("eq. (1)", "eq. (6)", "eq. (33)", "Fig. 2A", "Fig. 1", "Figs. 5, 12"):
        assert ref in refs, ref
    tests: dict[Path, set[str]] = {}
    for ref, _what, implemented, tested in rows:
        functions, named_tests = FUNCTION.findall(implemented), TEST.findall(tested)
        if "*not implemented*" in implemented and not functions:
            assert not named_tests, ref
            continue
        assert functions and named_tests, f"{ref}: an implemented row names its function and its test"
        for fn in functions:
            assert callable(resolve(fn)), fn
        for file, name in named_tests:
            path = ROOT / file
            assert path.is_file(), file
            assert name in tests.setdefault(path, defined_tests(path)), f"{file}::{name}"


def test_the_table_parser_sees_a_broken_name():
    text = (
        "| ref | what | implemented by | tested by |\n|---|---|---|---|\n"
        "| eq. (1) | x | `diffusion_theory.metrics.risks.no_such_function` | `tests/test_mtgm_metrics.py::test_x` |\n"
    )
    (row,) = table_rows(text)
    with pytest.raises(AttributeError):
        resolve(FUNCTION.findall(row[2])[0])
    assert "test_x" not in defined_tests(ROOT / "tests" / "test_mtgm_metrics.py")


# ----------------------------------------------------------------------------------------
# Paper 1 (MTGM) eqs. (2)-(4)
# ----------------------------------------------------------------------------------------


def test_forward_marginal_is_paper1_eq2():
    s = LinearAlphaSchedule(T=20, alpha_1=0.99, alpha_T=0.9)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 4, 3, generator=g), torch.randn(6, 4, 3, generator=g)
    t = torch.tensor([1, 3, 7, 11, 19, 20])
    alphas = [0.99 - (0.99 - 0.9) * k / 19 for k in range(20)]  # alpha_1 .. alpha_T, linear
    for i, step in enumerate(t.tolist()):
        abar = math.prod(alphas[:step])
        want = math.sqrt(abar) * x0[i] + math.sqrt(1 - abar) * noise[i]
        torch.testing.assert_close(s.add_noise(x0[i : i + 1], t[i : i + 1], noise[i : i + 1])[0], want)


def test_ddpm_loss_is_paper1_eq3_per_sample():
    d, P, T = 4, 5, 10
    net = OneLayerTransformer(d=d, T=T, init_seed=3)
    with torch.no_grad():
        net.W.copy_(torch.randn(d, d, generator=torch.Generator().manual_seed(1)))
    module = DiffusionModule(net, LinearAlphaSchedule(T=T), loss_scale=0.5)
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(3, P, d, generator=g), torch.randn(3, P, d, generator=g)
    t = torch.tensor([1, 5, 10])
    per_sample, x_t, _ = module.diffusion_loss(x0, t, noise)
    for i in range(3):  # ||f(X^t, t) - E||_F^2 / (2 d P) for each sample, its network called on its own
        f = net(x_t[i : i + 1], t[i : i + 1])[0]
        assert per_sample[i].item() == pytest.approx((f - noise[i]).pow(2).sum().item() / (2 * d * P), rel=1e-5)


def test_one_layer_transformer_starts_as_paper1_eq4():
    d, T = 64, 400
    net = OneLayerTransformer(d=d, T=T, init_seed=0)
    assert torch.equal(net.W.detach(), torch.zeros(d, d))  # W(0) = 0
    v = net.output_scales().detach().double()  # v_t(0) ~ N(0, 1/d), T independent draws
    se = math.sqrt(1 / d / T)  # standard error of the mean of T draws
    assert abs(v.mean().item()) < 4 * se
    var_se = (1 / d) * math.sqrt(2 / (T - 1))  # standard error of the sample variance of a normal sample
    assert abs(v.var().item() - 1 / d) < 4 * var_se
    assert not torch.equal(v, OneLayerTransformer(d=d, T=T, init_seed=1).output_scales().detach().double())


# ----------------------------------------------------------------------------------------
# Paper 2 (GP) eqs. (2) and (6)
# ----------------------------------------------------------------------------------------


def test_vp_process_is_paper2_eq2():
    s = ContinuousVPSchedule(T=10.0, t0=1e-3)
    t = torch.tensor([1e-3, 0.1, 1.0, 4.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(s.alpha(t), torch.exp(-t / 2))
    torch.testing.assert_close(s.sigma(t), torch.sqrt(1 - torch.exp(-t)))
    torch.testing.assert_close(s.alpha_bar(t), torch.exp(-t))
    x0, noise = torch.randn(5, 3, 2, dtype=torch.float64), torch.randn(5, 3, 2, dtype=torch.float64)
    want = torch.exp(-t / 2).view(-1, 1, 1) * x0 + torch.sqrt(1 - torch.exp(-t)).view(-1, 1, 1) * noise
    torch.testing.assert_close(s.add_noise(x0, t, noise), want)


class LinearInTime(nn.Module):
    """eps_hat = (1 + model_time) A x: a deterministic stand-in network for a continuous schedule."""

    def __init__(self, d: int):
        super().__init__()
        self.A = nn.Parameter(torch.randn(d, d, generator=torch.Generator().manual_seed(0)) / d)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # (B, N, d), (B,) -> (B, N, d)
        return (1 + t.view(-1, 1, 1) / 1000) * (x @ self.A.T)


def test_noise_prediction_loss_is_paper2_eq6():
    s = ContinuousVPSchedule(T=10.0, t0=0.01)
    t = s.sample_times(20000, generator=torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.01 and float(t.max()) <= 10.0  # t ~ Unif[t0, T]
    assert float(t.mean()) == pytest.approx((10.0 + 0.01) / 2, abs=4 * (10.0 - 0.01) / math.sqrt(12 * 20000))
    N, d = 6, 3
    module = DiffusionModule(LinearInTime(d), s, loss_scale=1.0)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, N, d, generator=g), torch.randn(4, N, d, generator=g)
    times = torch.tensor([0.01, 0.5, 2.0, 9.0])
    per_sample, x_t, eps_hat = module.diffusion_loss(x0, times, noise)
    alpha, sigma = torch.exp(-times / 2).view(-1, 1, 1), torch.sqrt(1 - torch.exp(-times)).view(-1, 1, 1)
    score = -eps_hat / sigma  # the network's score
    target = (alpha * x0 - x_t) / sigma**2  # eq. (6)'s regression target
    dsm = sigma.flatten() ** 2 * (score - target).pow(2).flatten(1).sum(1) / (N * d)  # sigma_t^2-weighted eq. (6)
    torch.testing.assert_close(per_sample, dsm, rtol=1e-4, atol=1e-6)
