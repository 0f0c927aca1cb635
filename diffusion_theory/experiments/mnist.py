"""Paper 1 (MTGM), Sec. 5.2: the minority class is learned later and worse (Fig. 3: per-class FID over training).

    python scripts/reproduce.py mnist                   # CPU scale: Fashion-MNIST classes 0-3, 3 seeds (~35 min)
    python scripts/reproduce.py mnist --scale paper     # MNIST digits 0-3 (GPU)
    python scripts/reproduce.py mnist --scale smoke --seeds 2   # seconds: checks the code

Runs (grid ``configs/sweeps/mnist.yaml``): one classifier (``classifier_config``; its ``classifier.pt`` labels the
generated images and gives the FID features of every seed), then the unconditional DiT (``config``) at each seed,
its ``PerClassFID`` pointed at that classifier. The report section ``mnist-fig3`` gives, over the seeds (mean and
95 % t-interval), each class's FID at the last evaluation and its share of generated images, whether the minority's
FID is above every other class's (paired over seeds: the interval of FID_minority - FID_c excludes 0), and the
first evaluation step at which each class's FID falls below twice its final value ("learned later"); figure: the
mean per-class FID curves over training with their seed bands, beside the paper's Fig. 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import yaml

from diffusion_theory.experiments.common import Experiment, Report, Run, Seeds, Sweep, fmt_iv, g3, seeds_note
from diffusion_theory.plotting.bands import band_figure

PAPER_CLAIM = (
    "Paper 1 (MTGM), Sec. 5.2 and Fig. 3: with digit 2 kept at 30 %, its FID stays above the other digits' "
    "throughout training (learned later and worse); Fig. 5 shows the generated digits."
)


class MNISTExperiment(Experiment):
    """The minority-class experiment of paper 1 (MTGM), Sec. 5.2 (one study, ``fig3``)."""

    name: ClassVar[str] = "mnist"
    studies: ClassVar[tuple[str, ...]] = ("fig3",)

    def scale(self, scale: str) -> dict[str, Any]:
        cfg = dict(self.grid["scales"][scale])
        for key in ("config", "classifier_config"):
            if not cfg.get(key):
                raise ValueError(f"configs/sweeps/mnist.yaml: scale {scale!r} needs `{key}`")
        return cfg

    def fit_classifier(self, scale: str, sweep: Sweep) -> Path:
        """The classifier run (trained once per scale, reused); returns its ``classifier.pt``."""
        cfg = self.scale(scale)
        clf_sweep = Sweep(sweep.root.parent / f"{sweep.root.name}_classifier", wandb=sweep.wandb)
        run = clf_sweep.fit(
            cfg["classifier_config"], "classifier", Run("classifier", list(cfg.get("classifier_overrides") or [])), []
        )
        path = clf_sweep.run_dir(run) / "classifier.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"the classifier run {clf_sweep.run_dir(run)} has no classifier.pt (it is written at "
                f"the end of the fit); delete the folder to train it again"
            )
        acc = run.final("val/acc")
        print(f"[reproduce] classifier: val/acc {acc:.4f} -> {path}", flush=True)
        self.classifier_acc = acc
        return path

    def reproduce(self, scale: str, only: list[str] | None, sweep: Sweep, report: Report) -> None:
        cfg = self.scale(scale)
        classifier = self.fit_classifier(scale, sweep)
        common = [*cfg.get("overrides", []), f"--trainer.callbacks.init_args.aux_checkpoint={classifier}"]
        seeds = sweep.fit_seeds(cfg["config"], "fig3", Run("dit", []), common)
        report.write_section(self.section("fig3"), self.fig3_text(seeds, report, scale, sweep.run_dir(seeds.runs[0])))

    # -- the report ----------------------------------------------------------------------------------
    @staticmethod
    def class_labels(seeds: Seeds) -> list[int]:
        keys = {k for r in seeds.runs for row in r.metrics for k in row if k.startswith("val/gen_share/class_")}
        return sorted(int(k.rsplit("_", 1)[1]) for k in keys)

    @staticmethod
    def logged_last(run: Run, metric: str) -> bool:
        """Whether ``metric`` was logged at the run's last evaluation (a class may have too few images for an FID)."""
        evals = [r for r in run.metrics if r.get("val/fid/all") not in (None, "")]
        return bool(evals) and evals[-1].get(metric) not in (None, "")

    @staticmethod
    def first_below(run: Run, metric: str, factor: float = 2.0) -> int:
        """The first evaluation step at which ``metric`` is at most ``factor`` times its final value."""
        steps, values = run.curve(metric)
        return next(s + 1 for s, v in zip(steps, values) if v <= factor * values[-1])

    def fig3_text(self, seeds: Seeds, report: Report, scale: str, first_run_dir: Path) -> str:
        from diffusion_theory.metrics.intervals import paired_difference

        minority = int(self.grid.get("minority", 2))
        labels = self.class_labels(seeds)
        # a class the model did not generate (fewer than 2 images) has no FID at that evaluation: None per seed
        fid = {
            c: [
                r.final(f"val/fid/class_{c}") if self.logged_last(r, f"val/fid/class_{c}") else None for r in seeds.runs
            ]
            for c in labels
        }
        share = {c: seeds.finals(f"val/gen_share/class_{c}") for c in labels}
        when = {
            c: [
                float(self.first_below(r, f"val/fid/class_{c}")) for r in seeds.runs if r.curve(f"val/fid/class_{c}")[1]
            ]
            for c in labels
        }

        def cell(values: list[float | None], f) -> str:
            have = [v for v in values if v is not None]
            missing = len(values) - len(have)
            text = fmt_iv(have, f) if have else "none"
            return text + (f" ({missing} seed(s): fewer than 2 images generated)" if missing else "")

        data = yaml.safe_load((first_run_dir / "config.yaml").read_text())["data"]["init_args"]
        source = (
            f"Data: `{data.get('dataset')}` classes {data.get('classes')}, kept fractions "
            f"{data.get('keep_fraction')}, {data.get('image_size')} x {data.get('image_size')} pixels"
            + (
                " (Fashion-MNIST's t-shirt, trouser, pullover, dress stand in for digits 0-3: no MNIST on a "
                "machine without internet; the paper-scale grid names MNIST)."
                if data.get("dataset") == "fashion-mnist"
                else "."
            )
        )
        lines = [
            f"### Minority class (paper 1, Sec. 5.2, Fig. 3), scale `{scale}`",
            "",
            PAPER_CLAIM,
            "",
            source,
            "",
            seeds_note(len(seeds.runs)),
            "",
            f"Classifier (labels and FID features): held-out accuracy {self.classifier_acc:.4f}.",
            "",
            "| class | final FID | share of generated images | first step with FID <= 2 x final |",
            "|---|---|---|---|",
        ]
        for c in labels:
            tag = " (minority)" if c == minority else ""
            lines.append(f"| {c}{tag} | {cell(fid[c], g3)} | {fmt_iv(share[c])} | {cell(when[c], g3)} |")
        lines.append("")
        if minority in labels:
            verdicts = []
            for c in labels:
                if c == minority:
                    continue
                pairs = [(a, b) for a, b in zip(fid[c], fid[minority]) if a is not None and b is not None]
                if not pairs:
                    verdicts.append(f"class {c}: no seed with both FIDs (not resolved)")
                    continue
                diff = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
                verdict = (
                    "above" if diff.excludes(0) and diff.mean > 0 else "below" if diff.excludes(0) else "not resolved"
                )
                verdicts.append(f"class {c}: FID_{minority} - FID_{c} = {diff.format(g3)} ({verdict})")
            above = all(v.endswith("(above)") for v in verdicts)
            lines += [
                f"Minority FID against each other class, paired over seeds: {'; '.join(verdicts)}. "
                f"Ordering of the paper (minority worst): "
                f"{'reproduced' if above else 'not resolved at this scale'}.",
                "",
            ]
            later = []
            for c in labels:
                if c == minority or len(when[c]) != len(when[minority]) or len(when[c]) < 2:
                    continue
                diff = paired_difference(when[c], when[minority])
                verdict = (
                    "later" if diff.excludes(0) and diff.mean > 0 else "earlier" if diff.excludes(0) else "not resolved"
                )
                later.append(f"class {c}: {diff.format(g3)} steps ({verdict})")
            if later:
                learned_later = all(v.endswith("(later)") for v in later)
                lines += [
                    f"Minority learned later (first step with FID <= 2 x final, minority minus each class, "
                    f"paired over seeds; the FID is measured every {int(data.get('steps_per_epoch', 0))} "
                    f"steps, so this resolves no finer): {'; '.join(later)}. "
                    f"Claim of the paper (learned later): "
                    f"{'reproduced' if learned_later else 'not resolved at this scale'}.",
                    "",
                ]
        bands = {}
        for c in labels:
            if not all(r.curve(f"val/fid/class_{c}")[1] for r in seeds.runs):
                continue
            name = f"class {c}" + (" (minority)" if c == minority else "")
            bands[name] = seeds.band(f"val/fid/class_{c}")  # (steps, mean, lo, hi)
        link = report.save(
            band_figure(
                bands,
                f"Per-class FID, mean and 95 % interval over {len(seeds.runs)} seeds (paper 1, Fig. 3)",
                ylabel="FID",
                logy=False,
            ),
            f"mnist_{scale}_fig3_per_class_fid",
        )
        grid = report.copy_figure(first_run_dir, "fig5_generated_grid", f"mnist_{scale}_fig5_grid")
        lines += [f"![per-class FID]({link})", "", f"![generated images, seed 0]({grid})"]
        return "\n".join(lines)
