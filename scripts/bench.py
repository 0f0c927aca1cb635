#!/usr/bin/env python
"""Speed targets of the project, measured side by side in one process. Results go in the README.

    python scripts/bench.py                    # every benchmark except the long demo run
    python scripts/bench.py --only bayes_risk  # one of: lightning_overhead, bf16, bayes_risk, demo
    python scripts/bench.py --demo             # also time `configs/mtgm.yaml` end to end (minutes)
    python scripts/bench.py --json out.json    # machine-readable results

Each benchmark prints its measurement, its target and whether the target is met. Timings on a
shared machine are noisy: comparisons are ratios of interleaved repetitions (median of several).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS: list[dict] = []


def report(name: str, value: float, unit: str, target: str, ok: bool, detail: str = "") -> None:
    RESULTS.append({"benchmark": name, "value": value, "unit": unit, "target": target, "met": ok, "detail": detail})
    print(f"{name:<28} {value:>10.4g} {unit:<6} target {target:<22} {'OK' if ok else 'MISSED'}  {detail}", flush=True)


# ----------------------------------------------------------------------------------------
# Lightning overhead on the paper-scale MTGM step
# ----------------------------------------------------------------------------------------


def paper_scale_mtgm(batch_size: int = 64):
    from diffusion_theory.datamodules.mtgm import MTGMDataModule
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
    from diffusion_theory.models.diffusion_module import DiffusionModule
    from diffusion_theory.networks.theory_transformer import OneLayerTransformer

    dm = MTGMDataModule(d=64, M=8, K=4, P=256, rho=0.3, batch_size=batch_size)
    module = DiffusionModule(OneLayerTransformer(d=64, T=50), LinearAlphaSchedule(T=50))
    return dm, module


def bench_lightning_overhead(steps: int = 60, warmup: int = 10, repeats: int = 3) -> None:
    """A training step in Lightning against the same step in a hand-written loop (same batches, same process)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    dm, _ = paper_scale_mtgm()
    g = torch.Generator().manual_seed(0)
    batches = [{"x0": dm.train_dist.sample(64, generator=g).x0} for _ in range(steps)]

    def hand_loop() -> float:
        _, module = paper_scale_mtgm()
        opt = torch.optim.Adam(module.parameters(), lr=1e-2)
        for i, batch in enumerate(batches):
            if i == warmup:
                start = time.perf_counter()
            loss = module.training_step(batch, i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - start) / (steps - warmup)

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self.per_step = (time.perf_counter() - self.start) / (steps - warmup)

    def lightning_loop() -> float:
        _, module = paper_scale_mtgm()
        module.configure_optimizers = lambda: torch.optim.Adam(module.parameters(), lr=1e-2)
        timer = StepTimer()
        trainer = pl.Trainer(
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[timer],
            accelerator="cpu",
            devices=1,
        )
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        return timer.per_step

    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    hand, light = [], []
    for _ in range(repeats):  # interleaved, so drifts of the shared machine hit both
        hand.append(hand_loop())
        light.append(lightning_loop())
    ratio = statistics.median(l / h for l, h in zip(light, hand))
    report(
        "lightning_overhead",
        ratio,
        "x",
        "<= 1.05 x hand loop",
        ratio <= 1.05,
        f"hand {statistics.median(hand) * 1e3:.1f} ms/step, Lightning {statistics.median(light) * 1e3:.1f} ms/step "
        f"(d=64, P=256, batch 64)",
    )


def bench_bf16(steps: int = 40, warmup: int = 5, repeats: int = 3) -> None:
    """The paper-scale MTGM training step in bf16-mixed autocast against float32 (hand loop, same batches)."""
    dm, _ = paper_scale_mtgm()
    g = torch.Generator().manual_seed(0)
    batches = [{"x0": dm.train_dist.sample(64, generator=g).x0} for _ in range(steps)]

    def loop(dtype) -> float:
        _, module = paper_scale_mtgm()
        opt = torch.optim.Adam(module.parameters(), lr=1e-2)
        for i, batch in enumerate(batches):
            if i == warmup:
                start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                loss = module.training_step(batch, i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - start) / (steps - warmup)

    fp32, bf16 = [], []
    for _ in range(repeats):
        fp32.append(loop("fp32"))
        bf16.append(loop("bf16"))
    speedup = statistics.median(a / b for a, b in zip(fp32, bf16))
    report(
        "bf16_speedup_mtgm_step",
        speedup,
        "x",
        "> 1 (informative)",
        speedup > 1,
        f"fp32 {statistics.median(fp32) * 1e3:.1f} ms/step, bf16-mixed {statistics.median(bf16) * 1e3:.1f} ms/step",
    )


# ----------------------------------------------------------------------------------------
# Exact Bayes risk over the evaluation set
# ----------------------------------------------------------------------------------------


def bench_bayes_risk(n_eval: int = 512) -> None:
    """Exact E[E | X^t] for 512 samples at all 50 steps (paper scale), posterior over all 70 subsets.

    Times what validation does, batch by batch (the data module's eval_batch_size): the fixed evaluation noise,
    the noising, the posterior (float32 path, ``MTGM.bayes_eps``) and the risk. The detail gives the posterior's
    own share."""
    from diffusion_theory.diffusion.evaluation import evaluation_noise
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule

    dm, _ = paper_scale_mtgm()
    dm.setup()
    schedule = LinearAlphaSchedule(T=50)
    x0 = dm.evaluation_set["x0"]
    t = schedule.eval_times()
    batch = dm.hparams.eval_batch_size
    start = time.perf_counter()
    total, posterior = 0.0, 0.0
    for lo in range(0, n_eval, batch):
        idx = torch.arange(lo, min(lo + batch, n_eval))
        noise = evaluation_noise(idx, t.numel(), (256, 64), seed=1234).flatten(0, 1)
        tt = t.repeat(idx.numel())
        abar = schedule.alpha_bar(tt)
        x_t = schedule.add_noise(x0[idx].repeat_interleave(t.numel(), 0), tt, noise)
        tick = time.perf_counter()
        eps = dm.exact_eps(x_t, abar, {})
        posterior += time.perf_counter() - tick
        total += 0.5 * (noise - eps).pow(2).mean((1, 2)).sum().item()
    seconds = time.perf_counter() - start
    report(
        "bayes_risk_512x50",
        seconds,
        "s",
        "< 5 s",
        seconds < 5,
        f"R_Bayes = {total / (n_eval * t.numel()):.5f}, posterior {posterior:.2f} s "
        f"(batches of {batch}, {torch.get_num_threads()} threads)",
    )


# ----------------------------------------------------------------------------------------
# The demo job
# ----------------------------------------------------------------------------------------


def bench_demo() -> None:
    """``configs/mtgm.yaml`` end to end (the `make demo` job), W&B offline, in a temporary run root."""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "WANDB_MODE": "offline"}
        start = time.perf_counter()
        res = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts/fit.py"),
                "--config",
                str(ROOT / "configs/mtgm.yaml"),
                f"--run.root={root}",
                "--run.name=bench",
                "--trainer.enable_progress_bar=false",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if res.returncode != 0:
            print(res.stderr[-3000:])
        import csv

        rows = list(csv.DictReader(open(Path(root) / "mtgm" / "bench" / "metrics.csv")))
        gap = [float(r["val/bayes_gap"]) for r in rows if r.get("val/bayes_gap")][-1]
    report(
        "demo_mtgm_yaml",
        seconds / 60,
        "min",
        "< 10 min",
        seconds < 600 and res.returncode == 0,
        f"final val/bayes_gap {gap:.4f}",
    )


BENCHMARKS = {
    "lightning_overhead": bench_lightning_overhead,
    "bf16": bench_bf16,
    "bayes_risk": bench_bayes_risk,
    "demo": bench_demo,
}
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/bench_gp.py, whatever the working directory
BENCHMARKS.update(__import__("bench_gp").benchmarks(report))  # paper 2: gp_sampling, cov_rel_error, dit_vs_diffusers
BENCHMARKS.update(__import__("bench_compile").benchmarks(report))  # model.compile against eager
BENCHMARKS.update(__import__("bench_images").benchmarks(report))  # paper 1 Sec. 5.2: image_sampling, fid_callback
BENCHMARKS.update(__import__("bench_ball").benchmarks(report))  # paper 2 Sec. 6.2: ball_simulator, ball_decode_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--demo", action="store_true", help="also time the demo run (minutes)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = args.only or [n for n in BENCHMARKS if n != "demo" or args.demo]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for name in names:
        BENCHMARKS[name]()
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2))


if __name__ == "__main__":
    main()
