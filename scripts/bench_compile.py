"""``model.compile: true`` against eager, registered in scripts/bench.py:

    python scripts/bench.py --only compile

compile   one training step (forward + backward + Adam, float32, one thread) of ``DiffusionModule`` with
          ``compile=True`` against the same module eager, same weights and same batches, interleaved
          repetitions (the fastest of each; the median ratio is printed too), for
          - the theory transformer of paper 1 (MTGM) eq. (1) at paper scale (d = 64, P = 256, T = 50, batch 64);
          - paper 2's DiT-GP (Appendix F: 12 blocks, tokens [z; e] of 16 + 16, N = 128, d = 8, batch 64).
          The first compiled call (the compilation itself, inductor's on-disk cache warm or not) is timed
          apart and reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _modules(name: str):
    """(eager, compiled) DiffusionModules with identical weights, and a (B, ...) batch shape."""
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule, LinearBetaSchedule
    from diffusion_theory.models.diffusion_module import DiffusionModule
    from diffusion_theory.networks.dit import DiT_GP
    from diffusion_theory.networks.theory_transformer import OneLayerTransformer

    def build(compile: bool):
        torch.manual_seed(0)
        if name == "theory_transformer":
            return DiffusionModule(OneLayerTransformer(d=64, T=50), LinearAlphaSchedule(T=50), compile=compile)
        return DiffusionModule(DiT_GP(input_shape=(128, 8)), LinearBetaSchedule(T=1000), compile=compile)

    shape = (64, 256, 64) if name == "theory_transformer" else (64, 128, 8)
    return build(False), build(True), shape


def _step_timer(module, shape: tuple[int, ...], steps: int) -> Callable[[], float]:
    """A function running ``steps`` training steps on fixed batches; returns seconds per step."""
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(shape, generator=g),
            module.schedule.sample_times(shape[0], generator=g),
            torch.randn(shape, generator=g),
        )
        for _ in range(steps)
    ]
    opt = torch.optim.Adam(module.network.parameters(), lr=1e-4)

    def run() -> float:
        start = time.perf_counter()
        for x0, t, noise in batches:
            loss = module.diffusion_loss(x0, t, noise)[0].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - start) / steps

    return run


def bench_compile(report, steps: int = 5, repeats: int = 5) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in ("theory_transformer", "dit_gp"):
            eager, compiled, shape = _modules(name)
            run_eager, run_compiled = _step_timer(eager, shape, steps), _step_timer(compiled, shape, steps)
            start = time.perf_counter()
            run_compiled()  # compiles (forward and backward graphs) on the first call
            compile_s = time.perf_counter() - start
            run_eager()  # warm-up
            t_eager, t_compiled = [], []
            for _ in range(repeats):  # interleaved, so drifts of the shared machine hit both
                t_eager.append(run_eager())
                t_compiled.append(run_compiled())
            speedup = min(t_eager) / min(t_compiled)
            median = statistics.median(e / c for e, c in zip(t_eager, t_compiled))
            report(
                f"compile_speedup_{name}",
                speedup,
                "x",
                "> 1 (informative)",
                speedup > 1,
                f"eager {min(t_eager) * 1e3:.1f} ms/step, compiled {min(t_compiled) * 1e3:.1f} ms/step (best of "
                f"{repeats}; median ratio {median:.2f}); first compiled step {compile_s:.0f} s; batch {shape[0]}, "
                f"float32, 1 thread",
            )
    finally:
        torch.set_num_threads(threads)


def benchmarks(report) -> dict[str, Callable[[], None]]:
    """name -> benchmark for scripts/bench.py's BENCHMARKS, each reporting through ``report``."""
    return {"compile": lambda: bench_compile(report)}
