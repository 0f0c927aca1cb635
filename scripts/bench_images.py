"""Speed of the image experiment (paper 1 (MTGM), Sec. 5.2), registered in scripts/bench.py:

    python scripts/bench.py --only image_sampling --only fid_callback

image_sampling  images per second of DDIM (50 steps) against ancestral DDPM (all 1000 steps) with the CPU-scale
                DiT of configs/fashion_dit.yaml (14 x 14, patch 7, width 64, 6 layers, 4 heads), 64 images per
                batch, one process (weights untrained: the cost does not depend on them).
fid_callback    the wall time of one PerClassFID evaluation at the CPU-scale settings (400 images, DDIM 50 steps,
                classifier features and labels, Fashion-MNIST held-out statistics already computed), against the
                CPU-scale run's projected time (max_steps training steps at the measured step rate + one
                evaluation per validation); target: the evaluations take under 20 % of the run. Needs the
                Fashion-MNIST files (make data); without them the benchmark says so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "fashion_dit.yaml"


def cpu_scale_module():
    """The DiffusionModule of configs/fashion_dit.yaml (network and schedule as configured, untrained)."""
    from diffusion_theory.diffusion.schedules import LinearBetaSchedule
    from diffusion_theory.models.diffusion_module import DiffusionModule
    from diffusion_theory.networks.dit import DiT

    cfg = yaml.safe_load(CONFIG.read_text())
    net = dict(cfg["model"]["init_args"]["network"]["init_args"])
    torch.manual_seed(0)
    module = DiffusionModule(
        DiT(**net), LinearBetaSchedule(**cfg["model"]["init_args"]["schedule"]["init_args"]), loss_scale=1.0
    )
    return module.eval(), cfg


def bench_image_sampling(report, n: int = 64) -> None:
    module, _ = cpu_scale_module()
    rates = {}
    for sampler, steps in (("ddim", 50), ("ddpm", None)):
        start = time.perf_counter()
        module.sample(n, sampler=sampler, n_steps=steps, generator=torch.Generator().manual_seed(0), progress=False)
        rates[sampler] = n / (time.perf_counter() - start)
    report(
        "image_sampling_ddim50",
        rates["ddim"],
        "img/s",
        "> ddpm1000",
        rates["ddim"] > rates["ddpm"],
        f"DDPM (1000 steps): {rates['ddpm']:.3g} img/s; ratio {rates['ddim'] / rates['ddpm']:.3g}x",
    )


def train_step_rate(module, batch_size: int, steps: int = 30, warmup: int = 5) -> float:
    """Training steps per second of the DDPM objective (forward, backward, AdamW, EMA-free) on random images."""
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    x0 = torch.rand(batch_size, *module.network.input_shape) * 2 - 1
    g = torch.Generator().manual_seed(0)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        t = module.schedule.sample_times(batch_size, generator=g)
        loss = module.diffusion_loss(x0, t, torch.randn(x0.shape, generator=g))[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    return steps / (time.perf_counter() - start)


def bench_fid_callback(report) -> None:
    from diffusion_theory.callbacks.per_class_fid import PerClassFID
    from diffusion_theory.datamodules.idx import MissingDataError
    from diffusion_theory.datamodules.images import ImageClassesDataModule
    from diffusion_theory.models.classifier_module import export_classifier
    from diffusion_theory.networks.classifier import ImageClassifier

    module, cfg = cpu_scale_module()
    data_args = cfg["data"]["init_args"]
    dm = ImageClassesDataModule(**data_args)
    try:
        dm.setup("fit")
    except MissingDataError as err:
        report("fid_callback", float("nan"), "s", "< 20 % of run", False, f"skipped: {err}")
        return
    cb_args = dict(cfg["trainer"]["callbacks"][0]["init_args"])
    with tempfile.TemporaryDirectory() as tmp:
        clf_cfg = yaml.safe_load((ROOT / "configs" / "fashion_classifier.yaml").read_text())
        net_args = dict(clf_cfg["model"]["init_args"]["network"]["init_args"], class_labels=dm.class_labels())
        cb_args["aux_checkpoint"] = str(export_classifier(ImageClassifier(**net_args), Path(tmp) / "classifier.pt"))
        cb = PerClassFID(**cb_args)
        trainer = SimpleNamespace(
            global_rank=0,
            world_size=1,
            is_global_zero=True,
            datamodule=dm,
            default_root_dir=tmp,
            global_step=0,
            current_epoch=0,
            sanity_checking=False,
            loggers=[],
        )
        cb.setup(trainer, module, "fit")
        start = time.perf_counter()
        with torch.no_grad():
            cb.evaluate(trainer, module)  # the first call also computes the real statistics (once per run)
        first = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            cb.evaluate(trainer, module)
        call = time.perf_counter() - start
    rate = train_step_rate(module, int(data_args["batch_size"]))
    max_steps = int(cfg["trainer"]["max_steps"])
    n_evals = max_steps // int(data_args["steps_per_epoch"])
    run = max_steps / rate + n_evals * call + (first - call)
    share = (n_evals * call + first - call) / run
    report(
        "fid_callback",
        call,
        "s",
        "< 20 % of run",
        share < 0.2,
        f"first call (with real statistics) {first:.3g} s; {rate:.3g} train steps/s; projected CPU-scale run "
        f"{run / 60:.3g} min with {n_evals} evaluations = {100 * share:.3g} % of it",
    )


def benchmarks(report) -> dict[str, Callable[[], None]]:
    """name -> benchmark for scripts/bench.py's BENCHMARKS, each reporting through ``report``."""
    return {"image_sampling": lambda: bench_image_sampling(report), "fid_callback": lambda: bench_fid_callback(report)}
