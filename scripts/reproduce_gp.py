"""Paper 2 (Diffusion Transformer Captures Spatial-Temporal Dependencies), Sec. 6.1 and Appendix F, for
scripts/reproduce.py (registered there as the study ``gp``):

    python scripts/reproduce.py gp                      # CPU scale (N = 32, 4 blocks): 29 runs, ~1.5 h on 2 busy cores
    python scripts/reproduce.py gp --only attention     # one study: fig4a | attention | white
    python scripts/reproduce.py gp --scale paper        # N = 128, 12 blocks, the paper's n: 29 runs of 32k steps (GPU)
    python scripts/reproduce.py gp --scale smoke        # seconds: checks the script, not the paper

Studies:
  fig4a      Fig. 4(a): relative error eps (Appendix F) against the number of training sequences n, for
             nu in {1, 2^1/4, 2^1/2, 2^3/4, 2} at l = 64 and l in {4, 16, 64, 256, 1024} at nu = 2. Each run
             trains on the first n sequences of one stream (nested sets) and measures eps once, at the end.
  attention  Fig. 1, 4(b), 10, 11, 5/12 from one run of the base config (l = 64, nu = 2).
  white      the reviewer's control: the same run on data with Gamma = I; its attention scores against the
             GP kernel it never saw.
Runs are ordinary scripts/fit.py runs under <root>/<scale>/gp/<overrides>; an existing run is reused.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

NUS = [1.0, 2 ** 0.25, 2 ** 0.5, 2 ** 0.75, 2.0]
LENGTH_SCALES = [4.0, 16.0, 64.0, 256.0, 1024.0]

TINY_NET = ["--model.init_args.network.init_args.input_shape=[8,2]", "--data.init_args.N=8", "--data.init_args.d=2",
            "--model.init_args.network.init_args.hidden_size=16", "--model.init_args.network.init_args.pos_dim=8",
            "--model.init_args.network.init_args.depth=2", "--model.init_args.network.init_args.num_heads=2",
            "--data.init_args.n_eval=4", "--model.init_args.schedule.init_args.n_eval_times=3",
            "--data.init_args.batch_size=8"]

SCALES: dict[str, dict[str, Any]] = {
    # configs/gp.yaml: N = 32, d = 8, a 4-block DiT of width 16 + 16, Adam 2e-3, batch 64
    "cpu": dict(config="configs/gp.yaml", common=[], base=[], sweep_steps=4000, ns=[32, 320, 3200],
                nus=NUS, length_scales=LENGTH_SCALES,
                generation=dict(n_samples=500, sampler="ode", n_steps=50, sampler_options={"spacing": "log"})),
    # configs/gp_paper.yaml: N = 128, 12 blocks, DDPM 1000 steps; Sec. 6.1's n, 1000 generated sequences
    # (ours: every n trains 32k steps, the paper's 400 epochs of n = 10^4; the paper trains each n to convergence)
    "paper": dict(config="configs/gp_paper.yaml", common=[], base=[], sweep_steps=32000,
                  ns=[1000, 3200, 10000, 32000, 100000], nus=NUS, length_scales=LENGTH_SCALES,
                  generation=dict(n_samples=1000, sampler="ddpm", n_steps=None, sampler_options={})),
    "smoke": dict(config="configs/gp.yaml", common=TINY_NET, base=["--trainer.max_steps=20",
                  "--data.init_args.steps_per_epoch=5"], sweep_steps=10, ns=[16, 32], nus=[1.0, 2.0],
                  length_scales=[64.0], generation=dict(n_samples=40, sampler="ode", n_steps=8,
                                                              sampler_options={"spacing": "log"})),
}


def sweep_fragment(path: Path, generation: dict[str, Any]) -> Path:
    """The callbacks of a Fig. 4(a) run: the exact score error and the relative error, both at the end only."""
    import yaml

    cov = {"every_n_epochs": 1, "chunk_size": 500, "seed": 0, **generation}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by scripts/reproduce_gp.py: Fig. 4(a) runs validate once, at the end\n" + yaml.safe_dump(
        {"trainer": {"callbacks": [{"class_path": "ScoreError", "init_args": {"every_n_epochs": 1, "n_time_bins": 5}},
                                   {"class_path": "CovarianceError", "init_args": cov}]}}, sort_keys=False))
    return path


def monotone_decreasing(values: list[float]) -> bool:
    return all(b < a for a, b in zip(values, values[1:]))


def trend(values: list[float]) -> str:
    if monotone_decreasing(values):
        return "decreasing"
    return "increasing" if monotone_decreasing(values[::-1]) else "not monotone"


def study(helpers: ModuleType) -> Callable[[str, list[str] | None, Path, bool], None]:
    """The ``gp`` entry of scripts/reproduce.py's STUDIES, using that module's fit / Run / save / write_section."""
    Run, fit, fmt, write_section = helpers.Run, helpers.fit, helpers.fmt, helpers.write_section
    g3 = lambda x: f"{x:.3g}"  # noqa: E731  (eps spans orders of magnitude)

    def copy_figure(run_dir: Path, name: str, as_name: str) -> str:
        helpers.FIGURES.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "figures" / f"{name}.png", helpers.FIGURES / f"{as_name}.png")
        return f"figures/{as_name}.png"

    def reproduce_gp(scale: str, only: list[str] | None, root: Path, wandb: bool) -> None:
        from diffusion_theory import plotting, plotting_gp

        s = SCALES[scale]
        root = root / "gp"
        want = lambda key: only is None or key in only  # noqa: E731
        parts: dict[str, str] = {}
        parts["intro"] = (
            f"## Paper 2: diffusion transformers capture spatial-temporal dependencies (Gaussian processes)\n\n"
            f"Generated by `python scripts/reproduce.py gp --scale {scale}` from `{s['config']}`"
            f"{' with ' + '`' + ' '.join(s['common'] + s['base']) + '`' if s['common'] or s['base'] else ''}. "
            + ("CPU scale, not the paper's: N = 32 frames (paper 128), d = 8, a 4-block DiT (paper 12) with tokens "
               "[z; e] of 16 + 16, AdamW 2e-3, batch 64, EMA 0.995, the continuous process of Sec. 2 (T = 10, "
               "t0 = 1e-3); eps is measured on 500 generated sequences (paper: 1000) drawn with the probability-flow "
               "ODE (Heun, 50 log-spaced steps; with the exact score this gives eps ~ 1, like 1000 reverse-SDE "
               f"steps), and the Fig. 4(a) runs train {s['sweep_steps']} steps for n in "
               f"{{{', '.join(map(str, s['ns']))}}} (paper: to convergence, n in {{10^3 .. 10^5}})."
               if scale == "cpu" else "")
            + "\n\neps = 1 means the generated sequences estimate Gamma (x) Sigma as well as the same number of "
              "true sequences; its spread is wide even then: 10 draws of 500 true sequences against the 500 "
              "reference sequences (N = 32) give eps from 0.85 to 1.7.")

        if want("fig4a"):
            frag = sweep_fragment(root / "fig4a_callbacks.yaml", s["generation"])
            common = [*s["common"], "--config", str(frag), f"--data.init_args.steps_per_epoch={s['sweep_steps']}",
                      f"--trainer.max_steps={s['sweep_steps']}"]
            settings = [("nu", nu, 64.0, nu) for nu in s["nus"]] + [("l", 2.0, l, l) for l in s["length_scales"]]
            table: dict[tuple[str, float], list[tuple[int, float, float]]] = {}
            for kind, nu, l, label in settings:
                for n in s["ns"]:
                    run = Run(f"{kind}={label:g}_n={n}", [f"--data.init_args.nu={nu:.6g}",
                                                          f"--data.init_args.length_scale={l:g}",
                                                          f"--data.init_args.n_train={n}"])
                    fit(s["config"], "fig4a", run, common, root, wandb)
                    table.setdefault((kind, label), []).append((n, run.final("val/cov_rel_error"),
                                                                run.final("val/bayes_gap")))
            paths = {}
            for kind, title in (("nu", "l = 64, varying nu"), ("l", "nu = 2, varying l")):
                curves = {f"{kind} = {label:.4g}": ([n for n, _, _ in rows], [e for _, e, _ in rows])
                          for (k, label), rows in table.items() if k == kind}
                paths[kind] = helpers.save(plotting_gp.relative_error_figure(curves, f"Fig. 4(a): {title}"),
                                           f"gp_fig4a_{kind}")
            head = ("| setting | " + " | ".join(f"eps @ n={n}" for n in s["ns"]) + " | eps decreasing in n | "
                    + " | ".join(f"Bayes gap @ n={n}" for n in s["ns"]) + " | gap decreasing in n |")
            lines = [head, "|---" * (2 * len(s["ns"]) + 3) + "|"]
            eps_of = {key: [e for _, e, _ in rows] for key, rows in table.items()}  # per setting, over n
            gap_of = {key: [g for _, _, g in rows] for key, rows in table.items()}
            for (kind, label) in table:
                eps, gap = eps_of[(kind, label)], gap_of[(kind, label)]
                lines.append(f"| {'nu' if kind == 'nu' else 'l'} = {label:.4g} | " + " | ".join(g3(e) for e in eps)
                             + f" | {'yes' if monotone_decreasing(eps) else 'no'} | "
                             + " | ".join(fmt(g) for g in gap) + f" | {'yes' if monotone_decreasing(gap) else 'no'} |")
            nu_order = [eps_of[("nu", nu)][-1] for nu in s["nus"]]
            l_order = [eps_of[("l", l)][-1] for l in s["length_scales"]]
            n_dec = sum(map(monotone_decreasing, eps_of.values()))
            n_gap_dec = sum(map(monotone_decreasing, gap_of.values()))
            n_eps_ends = sum(e[-1] < e[0] for e in eps_of.values())
            n_gap_ends = sum(g[-1] < g[0] for g in gap_of.values())
            parts["fig4a"] = (
                "### Fig. 4(a): relative error against the number of training sequences\n\n"
                f"![nu]({paths['nu']}) ![l]({paths['l']})\n\n" + "\n".join(lines) + "\n\n"
                "| paper's claim | what we measured |\n|---|---|\n"
                f"| eps decreases as n grows | decreasing over n = {s['ns']} for {n_dec} of {len(table)} settings; "
                f"lower at n = {s['ns'][-1]} than at n = {s['ns'][0]} for {n_eps_ends} of {len(table)} |\n"
                f"| (ours, not in the paper) the score error on held-out sequences falls as n grows | Bayes gap "
                f"(eq. 6 loss minus the exact E[E \\| X^t] risk) decreasing over n for {n_gap_dec} of {len(table)} "
                f"settings; lower at n = {s['ns'][-1]} than at n = {s['ns'][0]} for {n_gap_ends} of {len(table)} |\n"
                f"| larger nu is better (l = 64) | eps at n = {s['ns'][-1]} for nu = "
                + ", ".join(f"{nu:.3g}" for nu in s["nus"]) + ": " + ", ".join(g3(e) for e in nu_order)
                + f" ({trend(nu_order)} in nu) |\n"
                f"| smaller l is better (nu = 2) | eps at n = {s['ns'][-1]} for l = "
                + ", ".join(f"{l:g}" for l in s["length_scales"]) + ": " + ", ".join(g3(e) for e in l_order)
                + f" ({trend(l_order)} in l) |")

        base_run = gp_run = None
        if want("attention") or want("white"):
            gp_run = fit(s["config"], "attention", Run("base", []), [*s["common"], *s["base"]], root, wandb)
            base_run = root / "base"
        if want("attention"):
            r = gp_run
            L = sum(1 for k in r.metrics[0] if k.startswith("val/v_frame_share/layer_"))
            steps = sorted(int(k.rsplit("_", 1)[1]) for k in r.metrics[0] if k.startswith("val/attn_gamma_corr/step_"))
            figs = {name: copy_figure(base_run, name, name if name.startswith("gp_") else f"gp_{name}") for name in
                    ("fig1_covariance", "fig4b_qk_matrix", "fig10_qk_matrices", "fig11_v_matrices",
                     "fig12_attention_scores", "fig4a_cov_rel_error", "gp_losses")}
            blocks = ("xx", "xe", "ex", "ee")
            qk_rows = "\n".join(f"| {layer + 1} | " + " | ".join(fmt(r.final(f"val/qk_norm/layer_{layer}/{b}")) for b in blocks)
                                + f" | {r.final(f'val/v_frame_share/layer_{layer}'):.2f} | "
                                f"{r.final(f'val/attn_gamma_corr/layer_{layer}'):.3f} |" for layer in range(L))
            eps_steps, eps_values = r.curve("val/cov_rel_error")
            parts["attention"] = (
                "### Fig. 1, 4(b), 10, 11, 5 and 12: one run of the base config (l = 64, nu = 2)\n\n"
                f"![Fig. 1]({figs['fig1_covariance']})\n\n![eps]({figs['fig4a_cov_rel_error']}) "
                f"![losses]({figs['gp_losses']})\n\n![Fig. 4(b)]({figs['fig4b_qk_matrix']}) "
                f"![Fig. 10]({figs['fig10_qk_matrices']})\n\n![Fig. 11]({figs['fig11_v_matrices']})\n\n"
                f"![Fig. 12]({figs['fig12_attention_scores']})\n\n"
                "| layer | Q_x^T K_x | Q_x^T K_e | Q_e^T K_x | Q_e^T K_e | V share on z | attention-Gamma corr. (end) |\n"
                "|---|---|---|---|---|---|---|\n" + qk_rows + "\n\n"
                "| paper's claim | what we measured |\n|---|---|\n"
                f"| generated sequences reproduce Gamma and Sigma (Fig. 1) | eps = "
                + " -> ".join(g3(e) for e in eps_values) + f" at steps {', '.join(str(x + 1) for x in eps_steps)} |\n"
                f"| Q_e^T K_e dominates Q^T K (Fig. 4(b), 10) | share of \\|\\|Q_e^T K_e\\|\\|^2 in \\|\\|Q^T K\\|\\|^2: "
                f"{r.curve('val/qk_ee_share')[1][0]:.2f} -> {r.final('val/qk_ee_share'):.2f} (0.25 = four equal blocks) |\n"
                f"| V emphasises the data part z (Fig. 11) | share of W_o V on z: {r.curve('val/v_frame_share')[1][0]:.2f} "
                f"-> {r.final('val/v_frame_share'):.2f} (0.5 = no preference) |\n"
                f"| the score matrices (QY)^T KY resemble Gamma, more so along the backward process (Fig. 5, 12) | "
                f"correlation with Gamma, mean over layers, at backward steps {', '.join(map(str, steps))}: "
                + ", ".join(f"{r.final(f'val/attn_gamma_corr/step_{k}'):.3f}" for k in steps) + "; best layer at the "
                f"end {r.final('val/attn_gamma_corr'):.3f} |\n"
                f"| the first layers are less structured (Fig. 5) | per layer at the end: "
                + ", ".join(f"{r.final(f'val/attn_gamma_corr/layer_{layer}'):.3f}" for layer in range(L)) + " |")

        if want("white"):
            white = fit(s["config"], "white", Run("white", ["--data.init_args.kernel=white"]),
                        [*s["common"], *s["base"]], root, wandb)
            L = sum(1 for k in white.metrics[0] if k.startswith("val/attn_ref_corr/layer_"))
            gp_corr = [gp_run.final(f"val/attn_gamma_corr/layer_{layer}") for layer in range(L)]
            ref_corr = [white.final(f"val/attn_ref_corr/layer_{layer}") for layer in range(L)]
            own_corr = [white.final(f"val/attn_gamma_corr/layer_{layer}") for layer in range(L)]
            fig = plotting.curves_figure(
                {"GP model vs its Gamma": list(range(1, L + 1)), "white-data model vs the GP Gamma": list(range(1, L + 1)),
                 "white-data model vs its Gamma = I": list(range(1, L + 1))},
                {"GP model vs its Gamma": gp_corr, "white-data model vs the GP Gamma": ref_corr,
                 "white-data model vs its Gamma = I": own_corr},
                "Attention scores vs Gamma per layer (end of sampling)", ylabel="Pearson r")
            fig.axes[0].set_xlabel("layer")
            fig.axes[0].set_xticks(range(1, L + 1))
            path = helpers.save(fig, "gp_white_control")
            white_dir = root / "kernel=white"
            fig12 = copy_figure(white_dir, "fig12_attention_scores", "gp_white_fig12_attention_scores")
            parts["white"] = (
                "### The reviewer's control: a model trained on data with no temporal correlation (Gamma = I)\n\n"
                f"![control]({path})\n\n![white Fig. 12]({fig12})\n\n"
                "| layer | GP model: corr. with its Gamma | white model: corr. with the GP Gamma | white model: corr. with I |\n"
                "|---|---|---|---|\n"
                + "\n".join(f"| {layer + 1} | {g:.3f} | {w:.3f} | {o:.3f} |"
                            for layer, (g, w, o) in enumerate(zip(gp_corr, ref_corr, own_corr)))
                + "\n\nIf the Gamma-like score matrices came from the sin-cos index embeddings alone, the white-data "
                  f"model would correlate with the GP kernel as strongly as the GP model does. Measured (best layer): "
                  f"GP model {max(gp_corr):.3f}, white-data model {max(ref_corr):.3f} against the GP kernel; "
                  f"qk e-e share {gp_run.final('val/qk_ee_share'):.2f} (GP) vs {white.final('val/qk_ee_share'):.2f} "
                  f"(white); eps of the white model's samples {g3(white.final('val/cov_rel_error'))}.")
        for key, text in parts.items():
            if key == "intro" or want(key):
                write_section(f"gp-{key}", text)
        print(f"[reproduce] wrote {helpers.REPORT}")

    return reproduce_gp
