"""Speed targets of the Gaussian-process experiment (paper 2), registered in scripts/bench.py:

    python scripts/bench.py --only gp_sampling --only cov_rel_error --only dit_vs_diffusers
    python scripts/bench.py --only dit_vs_diffusers_compiled

gp_sampling       10,000 sequences (N = 128, d = 8) by Kronecker sampling X = L_Gamma G L_Sigma^T against
                  torch.distributions.MultivariateNormal on the full (Nd) x (Nd) = 1024 x 1024 covariance,
                  side by side (construction included for both; float64, one thread, best of interleaved
                  repetitions for both). nu = 1 (l = 64): the
                  paper's default nu = 2 makes Gamma numerically singular and MultivariateNormal's
                  Cholesky fails (checked and reported), while the eigendecomposition handles it.
cov_rel_error     Appendix F's relative error for n = 10,000 generated and 10,000 training sequences.
dit_vs_diffusers  one DiT training step (forward + backward + Adam) against diffusers' DiTTransformer2DModel
                  at the same depth / width / heads / tokens / batch (class-conditional adaLN-Zero, 4 x 32 x 32
                  inputs in 2 x 2 patches = 256 tokens), the fastest of interleaved repetitions, one thread
                  (diffusers' adaLN-Zero blocks each hold their own timestep / label embedder, so it has
                  more parameters at the same depth and width), in float32 and under bf16 autocast
                  (both networks alike; the loss in float32). diffusers is
                  the optional ``bench`` extra (pip install -e ".[bench]"); without it the benchmark says so.
dit_vs_diffusers_compiled  the same under bf16 autocast with both networks compiled (``nn.Module.compile()``,
                  torch.compile's defaults) and Adam's fused kernel (``fused=True``); the first (compiling)
                  steps are timed apart.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_gp_sampling(report, n: int = 10_000, repeats: int = 3) -> None:
    from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences, kernel_matrix

    def ours():
        gp = GaussianProcessSequences(N=128, d=8, length_scale=64.0, nu=1.0, seed=0)
        return gp.sample(n, generator=0, dtype=torch.float64)

    gp = GaussianProcessSequences(N=128, d=8, length_scale=64.0, nu=1.0, seed=0)
    full_cov = torch.kron(gp.gamma, gp.sigma)  # (1024, 1024)

    def reference():
        mvn = torch.distributions.MultivariateNormal(torch.zeros(1024, dtype=torch.float64), covariance_matrix=full_cov)
        torch.manual_seed(0)
        return mvn.sample((n,)).reshape(n, 128, 8)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # both single-threaded: on a shared machine 2 threads mostly measure the neighbours
    try:
        t_ours, t_ref = [], []
        for _ in range(repeats):  # interleaved
            t_ours.append(_best_of(ours, 1))
            t_ref.append(_best_of(reference, 1))
    finally:
        torch.set_num_threads(threads)
    ratio = min(t_ref) / min(t_ours)
    singular = torch.kron(kernel_matrix(128, 64.0, 2.0), gp.sigma)
    try:
        torch.distributions.MultivariateNormal(torch.zeros(1024, dtype=torch.float64), covariance_matrix=singular)
        nu2 = "MultivariateNormal accepts nu=2"
    except (ValueError, RuntimeError):
        nu2 = "at nu=2 MultivariateNormal fails (singular Gamma), ours does not"
    report(
        "gp_sampling",
        ratio,
        "x",
        ">= 50 x MultivariateNormal",
        ratio >= 50,
        f"ours {min(t_ours) * 1e3:.0f} ms, MultivariateNormal {min(t_ref) * 1e3:.0f} ms (best of {repeats}, 1 thread) "
        f"for {n} sequences (N=128, d=8, nu=1, l=64, float64, construction included); {nu2}",
    )


def bench_cov_rel_error(report, n: int = 10_000) -> None:
    from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences
    from diffusion_theory.metrics.covariance import covariance_relative_error

    gp = GaussianProcessSequences(N=128, d=8, length_scale=64.0, nu=2.0, seed=0)
    generated, training = gp.sample(n, generator=1), gp.sample(n, generator=2)
    start = time.perf_counter()
    eps = covariance_relative_error(generated, training, gp.gamma, gp.sigma).epsilon
    seconds = time.perf_counter() - start
    report(
        "cov_rel_error",
        seconds,
        "s",
        "< 5 s (n = 10,000)",
        seconds < 5,
        f"eps = {float(eps):.3f} for true samples against training data (N=128, d=8, {torch.get_num_threads()} threads)",
    )


def dit_pair(depth: int = 4, hidden: int = 384, heads: int = 6, image: int = 32, channels: int = 4, patch: int = 2):
    """Our DiT and diffusers' DiTTransformer2DModel at the same configuration (seeded)."""
    from diffusers import DiTTransformer2DModel

    from diffusion_theory.networks.dit import DiT

    torch.manual_seed(0)
    ours = DiT(
        input_shape=(channels, image, image),
        patch_size=patch,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        num_classes=1000,
        null_class=True,
        pos_embed_mode="add",
    )
    theirs = DiTTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=hidden // heads,
        in_channels=channels,
        out_channels=channels,
        num_layers=depth,
        sample_size=image,
        patch_size=patch,
        num_embeds_ada_norm=1000,
    )
    return ours, theirs


DIT_SETTINGS = {  # name -> (bf16 autocast, torch.compile + fused Adam), given to both networks alike
    "fp32": (False, False),
    "bf16": (True, False),
    "bf16_compiled": (True, True),
}


def bench_dit_vs_diffusers(
    report,
    settings: tuple[str, ...] = ("fp32", "bf16"),
    batch: int = 8,
    steps: int = 3,
    warmup: int = 1,
    repeats: int = 5,
) -> None:
    """Ours against diffusers under each setting of ``DIT_SETTINGS``, both networks given the same options;
    the settings' repetitions are interleaved too, so every ratio comes from the same stretch of machine time."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print(
            "dit_vs_diffusers             skipped: the optional dependency diffusers is not installed "
            '(pip install -e ".[bench]")',
            flush=True,
        )
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 4, 32, 32, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        y = torch.randint(0, 1000, (batch,), generator=g)
        target = torch.randn(batch, 4, 32, 32, generator=g)
        ours_fwd = lambda m: m(x, t.float(), y)  # noqa: E731
        theirs_fwd = lambda m: m(x, timestep=t, class_labels=y).sample  # noqa: E731

        def timer(model, forward, bf16: bool, fused: bool) -> Callable[[], float]:
            opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=fused or None)

            def timed() -> float:  # seconds per step (forward + backward + Adam) after warm-up steps
                for i in range(warmup + steps):
                    if i == warmup:
                        start = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        out = forward(model)
                    loss = (out.float() - target).pow(2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                return (time.perf_counter() - start) / steps

            return timed

        runs, compile_s, n_params = {}, {}, None
        for setting in settings:
            bf16, compiled = DIT_SETTINGS[setting]
            ours, theirs = dit_pair()
            n_params = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, theirs)]
            runs[setting] = (timer(ours, ours_fwd, bf16, compiled), timer(theirs, theirs_fwd, bf16, compiled))
            if compiled:  # the same torch.compile call (nn.Module.compile, defaults) for both; first run compiles
                compile_s[setting] = []
                for model, run in zip((ours, theirs), runs[setting]):
                    model.compile()
                    start = time.perf_counter()
                    run()
                    compile_s[setting].append(time.perf_counter() - start)
        times = {setting: ([], []) for setting in settings}
        for _ in range(repeats):  # interleaved: ours and diffusers, every setting, in turn
            for setting in settings:
                for run, out in zip(runs[setting], times[setting]):
                    out.append(run())
        for setting in settings:
            t_ours, t_theirs = times[setting]
            ratio = min(t_ours) / min(t_theirs)  # fastest of the interleaved repetitions: the least disturbed
            median = statistics.median(o / h for o, h in zip(t_ours, t_theirs))
            target = "<= 1.0 x diffusers" if setting == "fp32" else "<= 0.75 x diffusers"
            extra = (
                f"; first steps (compilation) {compile_s[setting][0]:.0f} s vs {compile_s[setting][1]:.0f} s"
                if setting in compile_s
                else ""
            )
            report(
                f"dit_vs_diffusers_{setting}",
                ratio,
                "x",
                target,
                ratio <= (1.0 if setting == "fp32" else 0.75),
                f"ours {min(t_ours) * 1e3:.0f} ms/step, diffusers {diffusers.__version__} {min(t_theirs) * 1e3:.0f} "
                f"ms/step (best of {repeats}; median ratio {median:.3f}){extra}; depth 4, width 384, 6 heads, "
                f"256 tokens, batch {batch}, 1 thread; {n_params[0] / 1e6:.2f}M vs {n_params[1] / 1e6:.2f}M params "
                f"(diffusers embeds t and y again in every block)",
            )
    finally:
        torch.set_num_threads(threads)


def benchmarks(report) -> dict[str, Callable[[], None]]:
    """name -> benchmark for scripts/bench.py's BENCHMARKS, each reporting through ``report``."""
    return {
        "gp_sampling": lambda: bench_gp_sampling(report),
        "cov_rel_error": lambda: bench_cov_rel_error(report),
        "dit_vs_diffusers": lambda: bench_dit_vs_diffusers(report),
        "dit_vs_diffusers_compiled": lambda: bench_dit_vs_diffusers(report, settings=("bf16_compiled",)),
    }
