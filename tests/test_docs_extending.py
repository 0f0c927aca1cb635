"""docs/extending.md runs as written: its Python blocks are executed in order in one namespace, and what they
compute is checked against independent computations (the logged diagnostics, classifier-free guidance, the
sweep's report section); its plugin excerpts match examples/plugin_example and ``--list``."""

from __future__ import annotations

import importlib
import os
import re

import pytest
import torch
from conftest import ROOT
from test_plugins import PLUGIN_DIR, plugin_importable, plugin_installed, plugin_on_path  # noqa: F401 (fixtures)

from diffusion_theory import registry
from diffusion_theory.callbacks.auxiliary import load_auxiliary
from diffusion_theory.diffusion.evaluation import evaluation_noise
from diffusion_theory.diffusion.generation import generate_across_ranks
from diffusion_theory.experiments.common import Report, Run

DOC = ROOT / "docs" / "extending.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    """The namespace after running every Python block of the page (in a scratch folder: it writes probe.pt)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cwd = tmp_path_factory.mktemp("extending")
    old = os.getcwd()
    os.chdir(cwd)
    namespace = {"__name__": "docs_extending", "__cwd__": cwd}
    try:
        for code in blocks("python"):
            exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 (the page's own code)
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    return namespace


def test_the_page_has_runnable_blocks_for_every_kind(doc):
    assert len(blocks("python")) >= 8
    for name in ("DenoiserCosine", "QKFrobenius", "SamplePower", "ProjectedSampleMean", "ErrorAgainstN"):
        assert name in doc
    assert {doc[n].kind for n in ("DenoiserCosine", "QKFrobenius", "SamplePower")} == {"batch", "weights", "generation"}
    assert doc["message"].startswith("callback OutputScale needs the network to implement HasOutputScales")


def test_the_diagnostics_log_what_an_independent_computation_gives(doc):
    trainer, module, dm, values = doc["trainer"], doc["module"], doc["dm"], doc["values"]
    names = ["val/eps_cosine"] + [f"val/eps_cosine/t_bin_{k}" for k in range(5)]
    assert set(names + ["val/qk_frobenius", "val/sample_power", "val/probe_mean"]) <= set(values)
    module.eval()
    with torch.no_grad():
        # batch: cosine of eps_hat and the exact E[E | X^t] over the evaluation set at every grid time
        ev, times = dm.evaluation_set, module.schedule.eval_times()
        x0 = ev["x0"]  # (n, N, d)
        noise = evaluation_noise(ev["index"], times.numel(), tuple(x0.shape[1:]), module.eval_noise_seed)
        cosines = []
        for k, t in enumerate(times):
            tt = t.expand(x0.shape[0])
            x_t = module.schedule.add_noise(x0, tt, noise[:, k])
            exact = dm.exact_eps(x_t, module.schedule.alpha_bar(tt), {})
            eps_hat = module.denoise(x_t, tt)
            cosines.append(torch.nn.functional.cosine_similarity(eps_hat.flatten(1), exact.flatten(1), dim=1))
        cos = torch.stack(cosines, 1)  # (n, n_t)
        assert values["val/eps_cosine"] == pytest.approx(float(cos.mean()), rel=1e-4, abs=1e-6)
        for k in range(5):  # 5 times, 5 bins: bin k is time k
            assert values[f"val/eps_cosine/t_bin_{k}"] == pytest.approx(float(cos[:, k].mean()), rel=1e-4, abs=1e-6)
        # weights: sqrt(sum over layers and heads of ||Q_h^T K_h||_F^2), head by head
        w = module.inference_network.attention_weights()
        total = sum(
            float((w["q"][l, h].T @ w["k"][l, h]).pow(2).sum())
            for l in range(w["q"].shape[0])
            for h in range(w["q"].shape[1])
        )
        assert values["val/qk_frobenius"] == pytest.approx(total**0.5, rel=1e-5)
        # generation: the same 8 samples (seed 0, chunks of 4), their mean square entry and the probe's mean
        samples = generate_across_ranks(trainer, module, 8, 4, 0, sampler="auto", n_steps=5, progress=False)
        assert values["val/sample_power"] == pytest.approx(float(samples.pow(2).mean()), rel=1e-5)
        probe = load_auxiliary(doc["__cwd__"] / doc["probe_path"])
        assert values["val/probe_mean"] == pytest.approx(float(probe(samples).mean()), rel=1e-5, abs=1e-7)
    # the auxiliary model stayed out of the trained model
    assert not {id(p) for p in doc["diagnostics"][3].auxiliary_model().parameters()} & {
        id(p) for p in module.parameters()
    }


def test_the_conditioning_block_is_classifier_free_guidance(doc):
    module, x_t, t, y = doc["cond_module"], doc["x_t"], doc["t"], doc["y"]
    assert doc["samples"].shape == (6, 8, 2) and doc["eps_cfg"].shape == (4, 8, 2)
    assert doc["no_labels"].startswith("denoise: the network is conditional on ['y'] (model.condition_keys)")
    with torch.no_grad():  # away from the adaLN-zero initialisation (zero outputs), so the identity is not 0 = 0
        for p in module.network.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.2)
        eps_y = module.denoise(x_t, t, {"y": y})
        eps_null = module.denoise(x_t, t, drop_labels=True)
        assert not torch.allclose(eps_y, eps_null)
        torch.testing.assert_close(
            module.denoise(x_t, t, {"y": y}, guidance_scale=2.0),
            eps_null + 2.0 * (eps_y - eps_null),
            rtol=1e-4,
            atol=1e-5,
        )
        torch.testing.assert_close(module.denoise(x_t, t, {"y": y}, guidance_scale=1.0), eps_y, rtol=1e-4, atol=1e-5)


def test_the_sweep_block_writes_its_table(doc, tmp_path):
    class RecordedSweep:
        """Sweep.fit's contract without training: the run with the metrics a finished run would hold."""

        def __init__(self):
            self.fitted = []

        def fit(self, config, study, run: Run, common):
            self.fitted.append((config, study, run.overrides))
            run.metrics = [{"step": "9", "val/cov_rel_error": str(1.0 + len(self.fitted))}]
            return run

    sweep, report = RecordedSweep(), Report(tmp_path / "report.md")
    doc["experiment"].reproduce("cpu", None, sweep, report)
    assert sweep.fitted == [
        ("configs/gp.yaml", "table", ["--data.init_args.n_train=32"]),
        ("configs/gp.yaml", "table", ["--data.init_args.n_train=320"]),
    ]
    text = report.path.read_text()
    assert "<!-- error_vs_n-table:start -->" in text and "| n=32 | 2" in text and "| n=320 | 3" in text
    with pytest.raises(ValueError, match="--scale: error_vs_n has scales cpu; got 'paper'"):
        doc["experiment"].check("paper", None)


@pytest.mark.usefixtures("plugin_importable")
def test_the_plugin_excerpts_match_the_example(doc):
    (toml,) = blocks("toml")
    assert toml in (PLUGIN_DIR / "pyproject.toml").read_text()
    example = importlib.import_module("dt_plugin_example")
    assert doc["components"]() == example.components()
    registry.load_components()
    listing = registry.format_components()
    excerpt = next(b for b in blocks("text") if "LagOneCorrelation" in b)
    for line in excerpt.splitlines()[1:]:  # the component's lines, as --list prints them
        assert line in listing.splitlines(), line
