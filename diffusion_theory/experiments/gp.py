"""Paper 2 (GP), Sec. 6.1 and Appendix F: Fig. 4(a), the training-time study, the attention figures, the white-noise
control and the measures from the checkpoints, from the grid configs/sweeps/gp.yaml.

    python scripts/reproduce.py gp                      # CPU scale (N = 32, 4 blocks), 3 seeds: 33 runs, ~1 h 50 min
                                                        # on one core (measured; docs/reproduction.md)
    python scripts/reproduce.py gp --only attention     # one study: fig4a | schedule | attention | white | measures
    python scripts/reproduce.py gp --scale paper        # N = 128, 12 blocks, the paper's n: 29 runs of 32k steps (GPU)
    python scripts/reproduce.py gp --scale smoke        # seconds: checks the code, not the paper
    python scripts/reproduce.py gp --only measures      # no training: kernel fits, per-frame variance, eps with
                                                        # an expected denominator, from the runs' checkpoints

Every sweep point runs ``--seeds`` seeds (default 3); tables give the mean and a 95 % t-interval, orderings only
where a paired t-test over seeds resolves them (``diffusion_theory.metrics.intervals``).

Writes the sections ``gp-intro`` and ``gp-<study>`` of the report. Runs are ordinary scripts/fit.py runs under
``<root>/<scale>/gp/<overrides>``; an existing run is reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusion_theory import plotting
from diffusion_theory.experiments.common import Experiment, Report, Run, Seeds, Sweep, fmt, fmt_iv, g3, seeds_note
from diffusion_theory.metrics.intervals import NOT_RESOLVED, log_log_slope, t_interval, trend_claim
from diffusion_theory.plotting.bands import errorbar_figure


def finite_iv(values: list[float], f=fmt) -> str:
    """``fmt_iv`` of the seeds whose value is a number; seeds without one (no kernel fit) are counted."""
    finite = [v for v in values if v == v]
    if not finite:
        return "no fit"
    missing = len(values) - len(finite)
    return fmt_iv(finite, f) + (f" ({missing} of {len(values)} seeds: no fit)" if missing else "")


def resolved_trend(series: list[list[float]]) -> str:
    """'increasing' / 'decreasing' (paired t-test over seeds, every neighbouring pair) or 'not resolved ...'."""
    if len(series) < 2:
        return "n/a (one value)"
    verdict = trend_claim(series, paired=True)
    if verdict == NOT_RESOLVED and len(series[0]) < 2:
        return f"{NOT_RESOLVED} (single seed)"
    return verdict


def sweep_fragment(path: Path, generation: dict[str, Any]) -> Path:
    """The callbacks of a Fig. 4(a) run: the exact score error and the relative error, both at the end only."""
    import yaml

    cov = {"every_n_epochs": 1, "chunk_size": 500, "seed": 0, **generation}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# written by scripts/reproduce.py gp: Fig. 4(a) runs validate once, at the end\n"
        + yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [
                        {"class_path": "ScoreError", "init_args": {"every_n_epochs": 1, "n_time_bins": 5}},
                        {"class_path": "CovarianceError", "init_args": cov},
                    ]
                }
            },
            sort_keys=False,
        )
    )
    return path


def fig4a_run(nu: float, length_scale: float, n: int, label: str) -> Run:
    return Run(
        label,
        [
            f"--data.init_args.nu={nu:.6g}",
            f"--data.init_args.length_scale={length_scale:g}",
            f"--data.init_args.n_train={n}",
        ],
    )


class GPExperiment(Experiment):
    """Paper 2, *Diffusion Transformer Captures Spatial-Temporal Dependencies: A Theory for Gaussian Process Data*."""

    name = "gp"
    studies = ("fig4a", "schedule", "attention", "white", "measures")

    def check(self, scale: str, only: list[str] | None) -> None:
        super().check(scale, only)
        if only and "schedule" in only and "schedule" not in self.grid["scales"][scale]:
            raise ValueError(
                f"--only schedule: scale {scale} has no `schedule` entry in its grid (the study compares the training "
                "times of the continuous process; a discrete-DDPM config already trains with the paper's)"
            )
        s, where = self.grid["scales"][scale], f"grid scales.{scale}"
        n_ord = s.get("orderings_n")
        if n_ord is not None and (int(n_ord) != n_ord or n_ord < 1):
            raise ValueError(
                f"{where}.orderings_n: must be a positive integer (the n every setting trains at); got {n_ord}"
            )
        settings = {(nu, l) for _, nu, l, _ in self.fig4a_settings(s)}
        for pair in s.get("n_sweep") or []:
            if not (isinstance(pair, list | tuple) and len(pair) == 2) or not any(
                abs(float(pair[0]) - nu) < 1e-9 and abs(float(pair[1]) - l) < 1e-9 for nu, l in settings
            ):
                raise ValueError(
                    f"{where}.n_sweep: every entry must be a [nu, l] of a Fig. 4(a) setting "
                    f"({', '.join(f'[{nu:g}, {l:g}]' for nu, l in sorted(settings))}); got {pair}"
                )
        study = s.get("schedule")
        if study is not None:
            bad = [ts for ts in study.get("time_samplings", []) if ts not in ("uniform", "ddpm_linear")]
            if bad or len(study.get("time_samplings", [])) < 2 or len(study.get("nus", [])) < 2:
                raise ValueError(
                    f"{where}.schedule: needs nus (at least 2) and time_samplings (at least 2 of uniform, ddpm_linear); "
                    f"got {study}"
                )

    def reproduce(self, scale: str, only: list[str] | None, sweep: Sweep, report: Report) -> None:
        s = self.grid["scales"][scale]
        want = lambda key: only is None or key in only  # noqa: E731
        parts: dict[str, str] = {}
        parts["intro"] = (
            f"## Paper 2: diffusion transformers capture spatial-temporal dependencies (Gaussian processes)\n\n"
            f"Generated by `python scripts/reproduce.py gp --scale {scale}` from `{s['config']}`"
            f"{' with ' + '`' + ' '.join(s['common'] + s['base']) + '`' if s['common'] or s['base'] else ''}. "
            + (
                "CPU scale, not the paper's: N = 32 frames (paper 128), d = 8, a 4-block DiT (paper 12) with tokens "
                "[z; e] of 16 + 16, AdamW 2e-3, batch 64, EMA 0.995, the continuous process of Sec. 2 (T = 10, "
                "t0 = 1e-3) trained with t ~ Unif[t0, T] (the paper trains a 1000-step DDPM; the `schedule` study "
                "below trains with its noise levels instead); eps is measured on 500 generated sequences (paper: 1000) drawn with the probability-flow "
                "ODE (Heun, 50 log-spaced steps; with the exact score this gives eps ~ 1, like 1000 reverse-SDE "
                f"steps), and the Fig. 4(a) runs train {s['sweep_steps']} steps for n in "
                f"{{{', '.join(map(str, s['ns']))}}} (paper: to convergence, n in {{10^3 .. 10^5}})."
                if scale == "cpu"
                else ""
            )
            + "\n\neps = 1 means the generated sequences estimate Gamma (x) Sigma as well as the same number of "
            "true sequences; its spread is wide even then: 10 draws of 500 true sequences against the 500 "
            "reference sequences (N = 32) give eps from 0.85 to 1.7."
        )

        if want("fig4a"):
            parts["fig4a"] = self.fig4a(s, sweep, report)
        if want("schedule") and "schedule" in s:
            parts["schedule"] = self.schedule(s, sweep, report)

        gp_run = None
        if want("attention") or want("white"):
            gp_pts = sweep.fit_seeds(s["config"], "attention", Run("base", []), [*s["common"], *s["base"]])
            gp_run = gp_pts.runs[0]
        if want("attention"):
            parts["attention"] = self.attention(gp_run, sweep.run_dir(gp_run), report) + (
                f"\n\nFigures and this table: seed 0; over the {sweep.seeds} seeds, final eps "
                f"{fmt_iv(gp_pts.finals('val/cov_rel_error'), g3)}, e-e share "
                f"{fmt_iv(gp_pts.finals('val/qk_ee_share'), lambda x: f'{x:.2f}')}, best-layer correlation with Gamma "
                f"{fmt_iv(gp_pts.finals('val/attn_gamma_corr'), lambda x: f'{x:.3f}')}. A correlation with Gamma does "
                "not single Gamma out (a linear decay 1 - |i - j| / N correlates 0.85+ with it): the `measures` study "
                "fits (nu, l) instead."
            )
        if want("white"):
            white_pts = sweep.fit_seeds(
                s["config"], "white", Run("white", ["--data.init_args.kernel=white"]), [*s["common"], *s["base"]]
            )
            white = white_pts.runs[0]
            parts["white"] = self.white(gp_run, white, sweep.run_dir(white), report) + (
                f"\n\nFigures and this table: seed 0; over the {sweep.seeds} seeds, best-layer correlation with the GP "
                f"kernel: GP model {fmt_iv(gp_pts.finals('val/attn_gamma_corr'), lambda x: f'{x:.3f}')}, white-data "
                f"model {fmt_iv(white_pts.finals('val/attn_ref_corr'), lambda x: f'{x:.3f}')}."
            )
        if want("measures"):
            parts["measures"] = self.measures(scale, sweep, report)
        for key, text in parts.items():
            report.write_section(self.section(key), text)
        print(f"[reproduce] wrote {report.path}")

    # -- Fig. 4(a) ----------------------------------------------------------------------------------
    def fig4a_settings(self, s: dict[str, Any]) -> list[tuple[str, float, float, float]]:
        """(kind, nu, l, label) of every Fig. 4(a) line: the nu sweep at fixed l, then the l sweep at fixed nu."""
        fixed = self.grid["fig4a"]
        l_fixed, nu_fixed = float(fixed["nu_sweep_length_scale"]), float(fixed["length_scale_sweep_nu"])
        return [("nu", float(nu), l_fixed, float(nu)) for nu in s["nus"]] + [
            ("l", nu_fixed, float(l), float(l)) for l in s["length_scales"]
        ]

    def fig4a_common(self, s: dict[str, Any], sweep: Sweep) -> list[str]:
        frag = sweep_fragment(sweep.root / "fig4a_callbacks.yaml", s["generation"])
        return [
            *s["common"],
            "--config",
            str(frag),
            f"--data.init_args.steps_per_epoch={s['sweep_steps']}",
            f"--trainer.max_steps={s['sweep_steps']}",
        ]

    @staticmethod
    def orderings_n(s: dict[str, Any]) -> int:
        """The n at which every Fig. 4(a) setting trains (the nu and l orderings are read there): the scale's
        ``orderings_n``, else the largest of ``ns``."""
        return int(s.get("orderings_n") or max(s["ns"]))

    def fig4a_points(self, s: dict[str, Any], kind_nu_l: tuple[str, float, float], label: float) -> list[int]:
        """The n values one Fig. 4(a) setting trains at: every n of ``ns`` for the settings in ``n_sweep`` (null: every
        setting), and ``orderings_n`` for all."""
        kind, nu, l = kind_nu_l
        sweep_all = s.get("n_sweep") is None
        in_sweep = sweep_all or any(abs(nu - a) < 1e-9 and abs(l - b) < 1e-9 for a, b in s["n_sweep"])
        return sorted(set(int(n) for n in s["ns"]) | {self.orderings_n(s)}) if in_sweep else [self.orderings_n(s)]

    def fig4a(self, s: dict[str, Any], sweep: Sweep, report: Report) -> str:
        fixed = self.grid["fig4a"]
        l_fixed, nu_fixed = float(fixed["nu_sweep_length_scale"]), float(fixed["length_scale_sweep_nu"])
        common = self.fig4a_common(s, sweep)
        n_ord = self.orderings_n(s)
        all_ns = sorted(set(int(n) for n in s["ns"]) | {n_ord})
        slope_min = int(s.get("slope_min_n", all_ns[0]))
        table: dict[tuple[str, float], dict[int, Seeds]] = {}  # setting -> {n: Seeds}
        # every setting at orderings_n first (the orderings), then the n sweep of the settings in n_sweep
        settings = self.fig4a_settings(s)
        for kind, nu, l, label in settings:
            table[(kind, label)] = {
                n_ord: sweep.fit_seeds(
                    s["config"], "fig4a", fig4a_run(nu, l, n_ord, f"{kind}={label:g}_n={n_ord}"), common
                )
            }
        for kind, nu, l, label in settings:
            for n in self.fig4a_points(s, (kind, nu, l), label):
                if n not in table[(kind, label)]:
                    table[(kind, label)][n] = sweep.fit_seeds(
                        s["config"], "fig4a", fig4a_run(nu, l, n, f"{kind}={label:g}_n={n}"), common
                    )
        paths = {}
        for kind, title in (("nu", f"l = {l_fixed:g}, varying nu"), ("l", f"nu = {nu_fixed:g}, varying l")):
            points = {}
            for (k, label), by_n in table.items():
                if k == kind:
                    ns = sorted(by_n)
                    ivs = [t_interval(by_n[n].finals("val/cov_rel_error")) for n in ns]
                    points[f"{kind} = {label:.4g}"] = (
                        ns,
                        [i.mean for i in ivs],
                        [i.lo for i in ivs],
                        [i.hi for i in ivs],
                    )
            fig = errorbar_figure(
                points,
                f"Fig. 4(a): {title} (95 % t-interval over seeds)",
                "relative error eps (Appendix F)",
                "training sequences n",
                logx=True,
                logy=True,
            )
            paths[kind] = report.save(fig, f"gp_fig4a_{kind}")
        head = (
            "| setting | "
            + " | ".join(f"eps @ n={n}" for n in all_ns)
            + f" | slope of log eps vs log n (n >= {slope_min}) | rel. squared Frobenius error @ n={n_ord} | "
            + " | ".join(f"Bayes gap @ n={n}" for n in all_ns)
            + " |"
        )
        lines = [head, "|---" * (2 * len(all_ns) + 3) + "|"]
        slopes = {}
        for (kind, label), by_n in table.items():
            use = [n for n in sorted(by_n) if n >= slope_min]
            xs = [float(n) for n in use for _ in by_n[n].runs]
            ys = [v for n in use for v in by_n[n].finals("val/cov_rel_error")]
            sl = log_log_slope(xs, ys) if len(set(xs)) >= 2 else None
            slopes[(kind, label)] = sl
            slope_txt = (
                "n/a (one n)"
                if sl is None
                else f"{sl.slope:.3f}"
                + (f" [{sl.lo:.3f}, {sl.hi:.3f}]" if sl.lo == sl.lo else " (2 points, no interval)")
            )

            def cell(n: int, metric: str, f, by_n=by_n) -> str:
                return fmt_iv(by_n[n].finals(metric), f) if n in by_n else "not run"

            lines.append(
                f"| {kind} = {label:.4g} | "
                + " | ".join(cell(n, "val/cov_rel_error", g3) for n in all_ns)
                + f" | {slope_txt} | {cell(n_ord, 'val/cov_error_generated', g3)} | "
                + " | ".join(cell(n, "val/bayes_gap", fmt) for n in all_ns)
                + " |"
            )
        nu_ord = [table[("nu", float(nu))][n_ord] for nu in s["nus"]]
        l_ord = [table[("l", float(l))][n_ord] for l in s["length_scales"]]
        # one slope per distinct run set (nu = 2 at l = 64 is in both sweeps)
        distinct = {
            tuple(str(sweep.run_dir(r)) for n in sorted(by_n) for r in by_n[n].runs): slopes[key]
            for key, by_n in table.items()
        }
        fitted = [sl for sl in distinct.values() if sl is not None]
        falling = sum(1 for sl in fitted if sl.hi == sl.hi and sl.hi < 0)
        rising = sum(1 for sl in fitted if sl.lo == sl.lo and sl.lo > 0)

        def ordering(points: list[Seeds]) -> str:
            return (
                f"eps {resolved_trend([p.finals('val/cov_rel_error') for p in points])}; relative squared Frobenius "
                f"error {resolved_trend([p.finals('val/cov_error_generated') for p in points])}"
            )

        return (
            "### Fig. 4(a): relative error against the number of training sequences\n\n"
            f"![nu]({paths['nu']}) ![l]({paths['l']})\n\n" + "\n".join(lines) + "\n\n"
            f"{seeds_note(sweep.seeds)} Every setting trains at n = {n_ord} (the orderings); "
            + (
                "every setting also trains at every n of the sweep"
                if s.get("n_sweep") is None
                else "only (nu, l) in "
                + ", ".join(f"({a:g}, {b:g})" for a, b in s["n_sweep"])
                + f" also train at n = {', '.join(str(n) for n in all_ns if n != n_ord)} (the slope; 'not run' "
                "elsewhere: CPU time)"
            )
            + f". The slope is a least-squares fit of log eps on log n over every (n, seed) with n >= {slope_min}, "
            "with its 95 % t-interval. eps divides by the error of one draw of as many true sequences (Appendix F); "
            "the relative squared Frobenius error ||Gamma_hat (x) Sigma_hat - Gamma (x) Sigma||_F^2 / ||Gamma (x) "
            "Sigma||_F^2 is its numerator alone, comparable across settings whose denominators differ."
            "\n\n| paper's claim | what we measured |\n|---|---|\n"
            f"| eps decreases as n grows | slope interval entirely below 0 for {falling} of {len(fitted)} settings with "
            f"a slope, entirely above 0 for {rising} |\n"
            f"| larger nu is better (l = {l_fixed:g}) | at n = {n_ord} along nu = "
            + ", ".join(f"{nu:.3g}" for nu in s["nus"])
            + f": {ordering(nu_ord)} in nu |\n"
            f"| smaller l is better (nu = {nu_fixed:g}) | at n = {n_ord} along l = "
            + ", ".join(f"{l:g}" for l in s["length_scales"])
            + f": {ordering(l_ord)} in l |"
        )

    # -- the nu ordering under the paper's noise-level weighting -----------------------------------------------
    def schedule(self, s: dict[str, Any], sweep: Sweep, report: Report) -> str:
        """Fig. 4(a)'s nu ordering trained with t ~ Unif[t0, T] and with the noise levels of the paper's 1000-step
        linear-beta DDPM (``ContinuousVPSchedule(time_sampling="ddpm_linear")``), all else equal."""
        from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
        from diffusion_theory.metrics.intervals import paired_difference

        study = s["schedule"]
        l_fixed = float(self.grid["fig4a"]["nu_sweep_length_scale"])
        n_ord = self.orderings_n(s)
        common = self.fig4a_common(s, sweep)
        nus = [float(nu) for nu in study["nus"]]
        key = "--model.init_args.schedule.init_args.time_sampling"
        results: dict[tuple[str, float], Seeds] = {}
        for ts in sorted(study["time_samplings"], key=lambda x: x == "uniform"):  # new runs first, shared ones last
            for nu in nus:
                run = fig4a_run(nu, l_fixed, n_ord, f"{ts}_nu={nu:g}")
                if ts != "uniform":
                    run.overrides.append(f"{key}={ts}")
                results[(ts, nu)] = sweep.fit_seeds(s["config"], "schedule", run, common)
        rows = []
        for ts in study["time_samplings"]:
            share = ContinuousVPSchedule(time_sampling=ts).fraction_above(0.9)
            eps = [results[(ts, nu)].finals("val/cov_rel_error") for nu in nus]
            frob = [results[(ts, nu)].finals("val/cov_error_generated") for nu in nus]
            diff = paired_difference(eps[0], eps[-1])
            rows.append(
                f"| {ts} | {share:.3f} | "
                + " | ".join(fmt_iv(e, g3) for e in eps)
                + f" | {diff.format(g3)} | {resolved_trend(eps)} | "
                + " | ".join(fmt_iv(f, g3) for f in frob)
                + f" | {resolved_trend(frob)} | "
                + " | ".join(fmt_iv(results[(ts, nu)].finals("val/bayes_gap")) for nu in nus)
                + " |"
            )
        base_ts = study["time_samplings"][0]
        cross = []
        for ts in study["time_samplings"][1:]:
            for nu in nus:
                cells = []
                for metric in ("val/bayes_gap", "val/cov_error_generated", "val/cov_rel_error"):
                    d = paired_difference(results[(base_ts, nu)].finals(metric), results[(ts, nu)].finals(metric))
                    verdict = "lower" if d.hi < 0 else "higher" if d.lo > 0 else "not resolved"
                    cells.append(f"{d.format(g3)} ({verdict})")
                cross.append(f"| {ts} - {base_ts}, nu = {nu:g} | " + " | ".join(cells) + " |")
        return (
            "### Fig. 4(a)'s nu ordering under the paper's noise-level weighting\n\n"
            f"The same runs as Fig. 4(a) (l = {l_fixed:g}, n = {n_ord}), trained with t ~ Unif[t0, T] (`uniform`, "
            "paper 2 (GP) eq. (6), our default) or with the noise levels of the paper's 1000-step DDPM with beta linear "
            "from 1e-4 to 0.02 (`ddpm_linear`: t = 0.1 u + 9.95 u^2, u uniform, the continuous limit of its "
            "-log abar; `ContinuousVPSchedule.time_sampling`); nothing else changes (sampler, evaluation, steps). "
            f"{seeds_note(sweep.seeds)}\n\n"
            "| training times | share with abar > 0.9 | "
            + " | ".join(f"eps, nu = {nu:g}" for nu in nus)
            + f" | eps(nu = {nus[-1]:g}) - eps(nu = {nus[0]:g}), paired | eps along nu | "
            + " | ".join(f"rel. sq. Frobenius error, nu = {nu:g}" for nu in nus)
            + " | the same along nu | "
            + " | ".join(f"Bayes gap, nu = {nu:g}" for nu in nus)
            + " |\n|---"
            + "|---" * (3 * len(nus) + 4)
            + "|\n"
            + "\n".join(rows)
            + "\n\nThe change from one training-time distribution to the other, paired over seeds:\n\n"
            "| change | held-out Bayes gap | rel. sq. Frobenius error | eps |\n|---|---|---|---|\n" + "\n".join(cross)
        )

    # -- measures from the checkpoints (no training) ---------------------------------------------------------
    def measures(self, scale: str, sweep: Sweep, report: Report) -> str:
        from diffusion_theory.experiments.gp_measures import measure_run

        s = self.grid["scales"][scale]
        m = s["measures"]
        common = self.fig4a_common(s, sweep)
        targets: list[tuple[str, Seeds]] = [
            (
                "base (l = 64, nu = 2)",
                sweep.fit_seeds(s["config"], "measures", Run("base", []), [*s["common"], *s["base"]]),
            ),
            (
                "white (Gamma = I)",
                sweep.fit_seeds(
                    s["config"], "measures", Run("white", ["--data.init_args.kernel=white"]), [*s["common"], *s["base"]]
                ),
            ),
        ]
        n_last = self.orderings_n(s)
        for kind, nu, l, label in self.fig4a_settings(s):
            targets.append(
                (
                    f"{kind} = {label:g}, n = {n_last}",
                    sweep.fit_seeds(s["config"], "fig4a", fig4a_run(nu, l, n_last, ""), common),
                )
            )
        seen, rows, var_rows = set(), [], []
        for name, pts in targets:
            key = tuple(str(sweep.run_dir(r)) for r in pts.runs)
            if key in seen:
                continue
            seen.add(key)
            per_seed = [
                measure_run(
                    sweep.run_dir(r),
                    int(m["n_generated"]),
                    int(m["denominator_draws"]),
                    int(m["attention_samples"]),
                    s["generation"],
                    seed=r.seed,
                )
                for r in pts.runs
            ]
            L = len(per_seed[0].fits)
            fits = " / ".join(
                f"{finite_iv([ms.fits[k].nu for ms in per_seed], lambda x: f'{x:.2f}')}, "
                f"{finite_iv([ms.fits[k].length_scale for ms in per_seed], g3)} "
                f"(res. {fmt_iv([ms.fits[k].rel_residual for ms in per_seed], lambda x: f'{x:.3f}')})"
                for k in range(L)
            )
            data = per_seed[0]
            truth = "Gamma = I" if data.kernel == "white" else f"{data.data_nu:g}, {data.data_length_scale:g}"
            rows.append(
                f"| {name} | {truth} | {fits} | "
                f"{fmt_iv([ms.eps.epsilon for ms in per_seed], g3)} | "
                f"{fmt_iv([ms.eps.frobenius_error for ms in per_seed], g3)} |"
            )
            N = len(data.variance_ratio)
            var_rows.append(
                f"| {name} | "
                + " | ".join(
                    fmt_iv([ms.variance_ratio[i] for ms in per_seed], lambda x: f"{x:.3f}")
                    for i in (0, 1, N // 2, N - 2, N - 1)
                )
                + " |"
            )
        boundary = self.boundary(targets[0][1], m, s["generation"], sweep)
        return (
            "### Paper 2 measures that discriminate (from the checkpoints, no training)\n\n"
            f"Per run: the layer-wise fit of a exp(-\\|i - j\\|^nu / l) + b to the score matrices averaged over heads and "
            f"{m['attention_samples']} generated sequences at the clean end (fitted nu, l and relative residual per "
            f"layer, first to last); eps of {m['n_generated']} generated sequences with the denominator averaged over "
            f"{m['denominator_draws']} draws of as many true sequences, beside the raw Frobenius error "
            "\\|\\|Gamma_hat (x) Sigma_hat - Gamma (x) Sigma\\|\\|_F (the denominator differs between settings). "
            f"{seeds_note(sweep.seeds)}\n\n"
            "| run | data nu, l | fitted nu, l per layer | eps (expected denominator) | Frobenius error |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "Per-frame variance of the generated sequences over the truth Gamma_ii tr Sigma (1 = exact):\n\n"
            "| run | frame 1 | frame 2 | middle frame | frame N-1 | frame N |\n|---|---|---|---|---|---|\n"
            + "\n".join(var_rows)
            + "\n\n"
            + boundary
        )

    @staticmethod
    def boundary(base: Seeds, m: dict[str, Any], generation: dict[str, Any], sweep: Sweep) -> str:
        """Where the base run's first/last-frame excess variance comes from (``experiments.gp_boundary``)."""
        from diffusion_theory.experiments.gp_boundary import measure_boundary

        n = int(m.get("boundary_samples", m["n_generated"]))
        per_seed = [measure_boundary(sweep.run_dir(r), n, generation, seed=r.seed) for r in base.runs]
        N = len(per_seed[0].sampler_ratio)
        frames = (0, 1, N // 2, N - 2, N - 1)
        f3 = lambda x: f"{x:.3f}"  # noqa: E731

        def row(name: str, get) -> str:
            return f"| {name} | " + " | ".join(fmt_iv([get(ms)[i] for ms in per_seed], f3) for i in frames) + " |"

        rows = [
            row("exact eps, same sampler and x_T: variance ratio", lambda ms: ms.sampler_ratio),
            row("trained model: variance ratio", lambda ms: ms.model_ratio),
        ]
        for k, (t_a, t_b) in enumerate(per_seed[0].bin_times):
            rows.append(
                row(
                    f"model excess over the exact eps, t in [{t_a:.3g}, {t_b:.3g}]",
                    lambda ms, k=k: ms.denoiser_excess[k],
                )
            )

        def edge_over_middle(ms, k: int) -> float:
            e = ms.denoiser_excess[k]
            return 0.5 * (e[0] + e[-1]) / e[N // 2]

        ratios = "; ".join(
            f"t in [{a:.3g}, {b:.3g}]: {fmt_iv([edge_over_middle(ms, k) for ms in per_seed], lambda x: f'{x:.2f}')}"
            for k, (a, b) in enumerate(per_seed[0].bin_times)
        )
        return (
            "Where the base run's excess variance at the first and last frames comes from "
            f"(`diffusion_theory/experiments/gp_boundary.py`, {n} sequences per sampler from one shared x_T per seed; "
            "the denoiser excess is E ||eps_hat_i - E[E_i | X^t]||^2 / d per frame on the evaluation set, in equal "
            "bins of the evaluation times, clean end first):\n\n"
            "| measure | frame 1 | frame 2 | middle frame | frame N-1 | frame N |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nDenoiser excess of the first and last frames over the middle frame's (mean of the two ends / "
            f"middle): {ratios}. {seeds_note(len(per_seed))}"
        )

    # -- Fig. 1, 4(b), 10, 11, 5, 12 --------------------------------------------------------------------
    @staticmethod
    def attention(r: Run, run_dir: Path, report: Report) -> str:
        L = sum(1 for k in r.metrics[0] if k.startswith("val/v_frame_share/layer_"))
        steps = sorted(int(k.rsplit("_", 1)[1]) for k in r.metrics[0] if k.startswith("val/attn_gamma_corr/step_"))
        figs = {
            name: report.copy_figure(run_dir, name, name if name.startswith("gp_") else f"gp_{name}")
            for name in (
                "fig1_covariance",
                "fig4b_qk_matrix",
                "fig10_qk_matrices",
                "fig11_v_matrices",
                "fig12_attention_scores",
                "fig4a_cov_rel_error",
                "gp_losses",
            )
        }
        blocks = ("xx", "xe", "ex", "ee")
        qk_rows = "\n".join(
            f"| {layer + 1} | "
            + " | ".join(fmt(r.final(f"val/qk_norm/layer_{layer}/{b}")) for b in blocks)
            + f" | {r.final(f'val/v_frame_share/layer_{layer}'):.2f} | "
            f"{r.final(f'val/attn_gamma_corr/layer_{layer}'):.3f} |"
            for layer in range(L)
        )
        eps_steps, eps_values = r.curve("val/cov_rel_error")
        return (
            "### Fig. 1, 4(b), 10, 11, 5 and 12: one run of the base config (l = 64, nu = 2)\n\n"
            f"![Fig. 1]({figs['fig1_covariance']})\n\n![eps]({figs['fig4a_cov_rel_error']}) "
            f"![losses]({figs['gp_losses']})\n\n![Fig. 4(b)]({figs['fig4b_qk_matrix']}) "
            f"![Fig. 10]({figs['fig10_qk_matrices']})\n\n![Fig. 11]({figs['fig11_v_matrices']})\n\n"
            f"![Fig. 12]({figs['fig12_attention_scores']})\n\n"
            "| layer | Q_x^T K_x | Q_x^T K_e | Q_e^T K_x | Q_e^T K_e | V share on z | attention-Gamma corr. (end) |\n"
            "|---|---|---|---|---|---|---|\n" + qk_rows + "\n\n"
            "| paper's claim | what we measured |\n|---|---|\n"
            "| generated sequences reproduce Gamma and Sigma (Fig. 1) | eps = "
            + " -> ".join(g3(e) for e in eps_values)
            + f" at steps {', '.join(str(x + 1) for x in eps_steps)} |\n"
            f"| Q_e^T K_e dominates Q^T K (Fig. 4(b), 10) | share of \\|\\|Q_e^T K_e\\|\\|^2 in \\|\\|Q^T K\\|\\|^2: "
            f"{r.curve('val/qk_ee_share')[1][0]:.2f} -> {r.final('val/qk_ee_share'):.2f} (0.25 = four equal blocks) |\n"
            f"| V emphasises the data part z (Fig. 11) | share of W_o V on z: {r.curve('val/v_frame_share')[1][0]:.2f} "
            f"-> {r.final('val/v_frame_share'):.2f} (0.5 = no preference) |\n"
            f"| the score matrices (QY)^T KY resemble Gamma, more so along the backward process (Fig. 5, 12) | "
            f"correlation with Gamma, mean over layers, at backward steps {', '.join(map(str, steps))}: "
            + ", ".join(f"{r.final(f'val/attn_gamma_corr/step_{k}'):.3f}" for k in steps)
            + "; best layer at the "
            f"end {r.final('val/attn_gamma_corr'):.3f} |\n"
            f"| the first layers are less structured (Fig. 5) | per layer at the end: "
            + ", ".join(f"{r.final(f'val/attn_gamma_corr/layer_{layer}'):.3f}" for layer in range(L))
            + " |"
        )

    # -- the white-noise control -------------------------------------------------------------------------
    @staticmethod
    def white(gp_run: Run, white: Run, white_dir: Path, report: Report) -> str:
        L = sum(1 for k in white.metrics[0] if k.startswith("val/attn_ref_corr/layer_"))
        gp_corr = [gp_run.final(f"val/attn_gamma_corr/layer_{layer}") for layer in range(L)]
        ref_corr = [white.final(f"val/attn_ref_corr/layer_{layer}") for layer in range(L)]
        own_corr = [white.final(f"val/attn_gamma_corr/layer_{layer}") for layer in range(L)]
        layers = list(range(1, L + 1))
        fig = plotting.curves_figure(
            {
                "GP model vs its Gamma": layers,
                "white-data model vs the GP Gamma": layers,
                "white-data model vs its Gamma = I": layers,
            },
            {
                "GP model vs its Gamma": gp_corr,
                "white-data model vs the GP Gamma": ref_corr,
                "white-data model vs its Gamma = I": own_corr,
            },
            "Attention scores vs Gamma per layer (end of sampling)",
            ylabel="Pearson r",
        )
        fig.axes[0].set_xlabel("layer")
        fig.axes[0].set_xticks(layers)
        path = report.save(fig, "gp_white_control")
        fig12 = report.copy_figure(white_dir, "fig12_attention_scores", "gp_white_fig12_attention_scores")
        return (
            "### The reviewer's control: a model trained on data with no temporal correlation (Gamma = I)\n\n"
            f"![control]({path})\n\n![white Fig. 12]({fig12})\n\n"
            "| layer | GP model: corr. with its Gamma | white model: corr. with the GP Gamma | white model: corr. with I |\n"
            "|---|---|---|---|\n"
            + "\n".join(
                f"| {layer + 1} | {g:.3f} | {w:.3f} | {o:.3f} |"
                for layer, (g, w, o) in enumerate(zip(gp_corr, ref_corr, own_corr))
            )
            + "\n\nIf the Gamma-like score matrices came from the sin-cos index embeddings alone, the white-data "
            f"model would correlate with the GP kernel as strongly as the GP model does. Measured (best layer): "
            f"GP model {max(gp_corr):.3f}, white-data model {max(ref_corr):.3f} against the GP kernel; "
            f"qk e-e share {gp_run.final('val/qk_ee_share'):.2f} (GP) vs {white.final('val/qk_ee_share'):.2f} "
            f"(white); eps of the white model's samples {g3(white.final('val/cov_rel_error'))}."
        )
