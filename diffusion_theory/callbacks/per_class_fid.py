"""Per-class FID over training: paper 1 (MTGM), Sec. 5.2, Fig. 3 (FID of each class) and Fig. 5 (samples).

Every ``every_n_epochs`` validations, ``n_samples`` images are generated from fixed seeds (chunk k of
``chunk_size`` rows is drawn with the generator seeded by (seed, k): the same noise at every epoch and in every
run, so curves are comparable), then

    unconditional model   each image is labelled by the classifier's argmax (an auxiliary frozen model)
    conditional model     image i is generated for class index i mod K (classifier-free guidance when
                          ``guidance_scale`` is set); the classifier's label is still used for the shares

and each class's generated images are compared with that class's held-out real images (``metrics.fid``; FID over
the features of ``features``: the classifier's penultimate layer, default, or Inception-v3 via torch-fidelity).
Logged, with c the data's own label (``val/fid/class_2`` is the minority):

    val/fid/class_<c>        FID of the images of class c against the held-out images of c
    val/fid/all              all generated images against the held-out set in the training class proportions
    val/gen_share/class_<c>  share of generated images the classifier labels c (does the model under-generate c?)
    val/classifier_confidence  mean max-softmax probability of the classifier on the generated images
    val/label_agreement      (conditional only) share of images the classifier labels as the class asked for

A class with fewer than 2 generated images has no FID that epoch: a warning names it and the value is not
logged (never a NaN). Figures: ``fig3_per_class_fid`` (FID per class over training), ``fig5_generated_grid``
(images per class), ``class_shares`` (shares over training). Beside each FID, ``per_class_fid.jsonl`` in the run
folder records the extractor and a hash of its weights, the classifier checkpoint's hash, the numbers of generated
and real images per class, the sampler, steps, guidance scale and seed.

DDP: rank r draws chunks r, r + w, ... and takes every w-th real image of each class; the FID states (float64
sums, torchmetrics' ``FrechetInceptionDistance``) and the counts sync in ``compute`` on every rank, so the values
equal one process's on the same generated set. Real statistics are computed once per run (kept across resets).
The classifier and the extractor live on this callback: never in the diffusion model's checkpoint, optimiser or EMA.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from diffusion_theory import plotting
from diffusion_theory.callbacks.auxiliary import UsesAuxiliaryModel, freeze, load_auxiliary
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.callbacks.generation_diagnostic import GenerationDiagnostic
from diffusion_theory.diffusion.generation import current_ranks, for_each_chunk
from diffusion_theory.diffusion.samplers import default_steps, resolve_sampler
from diffusion_theory.metrics.fid import fidelity_metrics, streaming_fid
from diffusion_theory.networks.fid_features import ClassifierFeatures, InceptionFeatures, file_hash
from diffusion_theory.plotting.samples import image_grid_figure

FeatureKind = Literal["classifier", "inception"]


# ----------------------------------------------------------------------------------------
# Capabilities
# ----------------------------------------------------------------------------------------


@runtime_checkable
class HasClassImages(Protocol):
    """Data with labelled classes and held-out real images per class (``datamodules.images``)."""

    def class_labels(self) -> list[int]: ...

    def real_images(self) -> dict[int, Tensor]: ...

    def class_counts(self) -> dict[int, int]: ...


@runtime_checkable
class LabelsImages(Protocol):
    """A classifier (``networks.classifier.ImageClassifier``): logits by ``forward``, penultimate ``features``."""

    def features(self, x: Tensor) -> Tensor: ...


def load_classifier(path: str | Path, field: str) -> nn.Module:
    """A frozen classifier from an auxiliary checkpoint (``<run>/classifier.pt``) or a Lightning checkpoint of
    ``ClassifierModule`` (its ``network`` config and ``network.*`` weights), both loaded with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{field}: no such file {str(path)!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if isinstance(hp.get("network"), dict) and "class_path" in hp["network"] and "state_dict" in ckpt:
        from lightning.pytorch.cli import instantiate_class

        network = instantiate_class((), hp["network"])
        network.load_state_dict(
            {k[len("network.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("network.")}
        )
        return freeze(network)
    return load_auxiliary(path, field)


class GenerationStats(Metric):
    """Counts over generated images, summed across ranks: per class index the images given to each FID
    (``fid_counts``, (K,)) and labelled by the classifier (``pred_counts``, (K,)); confidence and agreement sums."""

    full_state_update = False

    def __init__(self, num_classes: int):
        super().__init__()
        for name in ("fid_counts", "pred_counts"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("confidence_sum", "agreement_sum", "n"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, fid_index: Tensor, pred: Tensor, confidence: Tensor) -> None:
        k = self.fid_counts.numel()
        self.fid_counts += torch.bincount(fid_index, minlength=k).double()
        self.pred_counts += torch.bincount(pred, minlength=k).double()
        self.confidence_sum += confidence.double().sum()
        self.agreement_sum += (pred == fid_index).double().sum()
        self.n += pred.numel()

    def compute(self) -> dict[str, Tensor]:
        return {
            "fid_counts": self.fid_counts,
            "pred_counts": self.pred_counts,
            "confidence": self.confidence_sum / self.n.clamp(min=1),
            "agreement": self.agreement_sum / self.n.clamp(min=1),
        }


# ----------------------------------------------------------------------------------------
# The diagnostic
# ----------------------------------------------------------------------------------------


class PerClassFID(UsesAuxiliaryModel, GenerationDiagnostic):
    """FID per class of generated images over training (paper 1 (MTGM), Sec. 5.2, Fig. 3 and 5).

    Args:
        aux_checkpoint: the classifier: ``<run>/classifier.pt`` of a ``ClassifierModule`` fit (or its .ckpt).
        every_n_epochs: generate at every n-th validation.
        n_samples: images generated per evaluation (conditional: n_samples / K per class, i mod K).
        features: FID features: ``classifier`` (penultimate layer; offline) or ``inception`` (Inception-v3 pool,
            torch-fidelity).
        inception_weights: a local file of torch-fidelity's Inception-v3 weights (null: download where allowed).
        guidance_scale: classifier-free guidance of a conditional model (null: plain conditional sampling).
        sampler, n_steps, sampler_options: the sampler (``auto`` = ancestral DDPM over all steps), its steps.
        chunk_size: images per generated batch, the unit split across DDP ranks.
        seed: generation seed: chunk k is drawn with (seed, k) at every evaluation.
        grid_per_class: images per class in the Fig. 5 grid (0: no grid).
        feature_batch_size: real images per feature batch.
        fidelity_check: also compute torch-fidelity's FID, KID and precision / recall per class on the same features
            (an independent implementation; keeps every generated feature, so meant for ``scripts/evaluate.py``):
            ``val/fidelity/{fid,kid,precision,recall}/class_<c>``.
    """

    requires = (("data", HasClassImages), ("auxiliary", LabelsImages))

    def __init__(
        self,
        aux_checkpoint: str | None = None,
        every_n_epochs: int = 1,
        n_samples: int = 400,
        features: FeatureKind = "classifier",
        inception_weights: str | None = None,
        guidance_scale: float | None = None,
        sampler: str = "auto",
        n_steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        chunk_size: int = 200,
        seed: int = 0,
        grid_per_class: int = 8,
        feature_batch_size: int = 500,
        fidelity_check: bool = False,
    ):
        super().__init__(
            every_n_epochs=every_n_epochs,
            n_samples=n_samples,
            sampler=sampler,
            n_steps=n_steps,
            sampler_options=sampler_options,
            chunk_size=chunk_size,
            seed=seed,
        )
        if features not in ("classifier", "inception"):
            raise ValueError(f"PerClassFID.features must be 'classifier' or 'inception'; got {features!r}")
        if int(n_samples) < 2:
            raise ValueError(f"PerClassFID.n_samples must be >= 2 (an FID needs a covariance); got {n_samples}")
        if grid_per_class < 0 or feature_batch_size < 1:
            raise ValueError(
                f"PerClassFID: grid_per_class must be >= 0 and feature_batch_size >= 1; got "
                f"{grid_per_class}, {feature_batch_size}"
            )
        self.init_auxiliary(aux_checkpoint)
        self.features, self.inception_weights = features, inception_weights
        self.guidance_scale = None if guidance_scale is None else float(guidance_scale)
        self.grid_per_class, self.feature_batch_size = int(grid_per_class), int(feature_batch_size)
        self.fidelity_check = bool(fidelity_check)
        self._extractor: nn.Module | None = None
        self._real_done = False
        self.history: list[dict[str, Any]] = []
        self._grid: dict[int, list[Tensor]] = {}

    # -- models --------------------------------------------------------------------------------------
    def auxiliary_model(self, device: torch.device | str | None = None) -> nn.Module:
        if self._aux is None:
            if self.aux_checkpoint is None:
                raise ValueError(
                    "PerClassFID.aux_checkpoint: set the classifier's checkpoint (<run>/classifier.pt of "
                    "scripts/fit.py --config configs/fashion_classifier.yaml)"
                )
            self._aux = load_classifier(self.aux_checkpoint, "PerClassFID.aux_checkpoint")
        if device is not None:
            self._aux.to(device)
        return freeze(self._aux)

    def extractor(self, device: torch.device | str | None = None) -> nn.Module:
        """The frozen feature extractor (built once; the classifier's features or Inception-v3)."""
        if self._extractor is None:
            if self.features == "classifier":
                self._extractor = ClassifierFeatures(self.auxiliary_model(), file_hash(self.aux_checkpoint))
            else:
                self._extractor = InceptionFeatures(self.inception_weights)
        if device is not None:
            self._extractor.to(device)
        return freeze(self._extractor)

    # -- set-up ----------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # checks requires: loads the classifier
        dm = trainer.datamodule
        self.labels = [int(c) for c in dm.class_labels()]
        trained_on = [int(c) for c in getattr(self.auxiliary_model(), "class_labels", [])]
        if trained_on != self.labels:
            raise ValueError(
                f"PerClassFID.aux_checkpoint: the classifier {self.aux_checkpoint} was trained on classes "
                f"{trained_on} but the data has classes {self.labels}; train one on these classes "
                f"(scripts/fit.py with data.init_args.classes={self.labels})"
            )
        self.conditional = bool(getattr(pl_module, "condition_keys", []))
        if self.conditional and list(pl_module.condition_keys) != ["y"]:
            raise ValueError(
                f"PerClassFID: a conditional model must be conditioned on the class label y alone; "
                f"got condition_keys={list(pl_module.condition_keys)}"
            )
        if self.guidance_scale is not None and not self.conditional:
            raise ValueError("PerClassFID.guidance_scale needs a class-conditional model (model.condition_keys: [y])")
        k = len(self.labels)
        if self.conditional and self.resolve_n(trainer) < 2 * k:
            raise ValueError(
                f"PerClassFID.n_samples must be >= 2 K = {2 * k} for a conditional model (at least 2 "
                f"images per class); got {self.resolve_n(trainer)}"
            )
        self.extractor()  # a missing Inception-v3 weights file fails here, before any training
        dim = int(self._extractor.num_features)
        self.fids = [streaming_fid(dim) for _ in range(k)]
        self.fid_all = streaming_fid(dim)
        self.stats = GenerationStats(k)
        self._real_done = False
        self._real_counts: dict[int, int] = {}

    # -- real statistics (once per run) ----------------------------------------------------------------
    def _batched_features(self, x: Tensor, device: torch.device) -> Tensor:
        ext = self.extractor(device)
        return (
            torch.cat(
                [
                    ext(x[i : i + self.feature_batch_size].to(device)).double()
                    for i in range(0, x.shape[0], self.feature_batch_size)
                ]
            )
            if x.shape[0]
            else torch.zeros(0, ext.num_features, dtype=torch.float64, device=device)
        )

    def _update_real(self, trainer: pl.Trainer, dm: Any, device: torch.device) -> None:
        ranks = current_ranks(trainer)
        real = dm.real_images()
        counts = dm.class_counts()
        top = max(counts.values())
        for k, c in enumerate(self.labels):
            images = real[c]
            if images.shape[0] < 2:
                raise ValueError(
                    f"PerClassFID: the data has {images.shape[0]} held-out image(s) of class {c}; an FID "
                    f"needs at least 2"
                )
            # "all": the held-out images in the training proportions (the first n_c p_c / max p of class c)
            n_all = max(1, int(images.shape[0] * counts[c] / top))
            self._real_counts[c] = int(images.shape[0])
            mine = torch.arange(ranks.rank, images.shape[0], ranks.world)  # every w-th image: no image twice
            feats = self._batched_features(images[mine], device)
            if feats.shape[0]:
                self.fids[k].update(feats, real=True)
                in_all = mine < n_all
                if in_all.any():
                    self.fid_all.update(feats[in_all], real=True)
        self._real_done = True

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        device = pl_module.device
        for metric in (*self.fids, self.fid_all, self.stats):
            metric.to(device)
        if not self._real_done:
            self._update_real(trainer, trainer.datamodule, device)
        classifier, extractor = self.auxiliary_model(device), self.extractor(device)
        k_classes = len(self.labels)
        kwargs = self.sample_kwargs()
        self._grid = {}
        keep_grid = trainer.is_global_zero and self.grid_per_class > 0
        n_total = self.resolve_n(trainer)
        if self.fidelity_check:  # every generated feature at its row, zero elsewhere: summed across ranks below
            all_feats = torch.zeros(n_total, extractor.num_features, dtype=torch.float64, device=device)
            all_index = torch.zeros(n_total, dtype=torch.long, device=device)  # class index + 1 (0: another rank's)

        def draw(k: int, start: int, rows: int, generator: torch.Generator) -> None:
            if self.conditional:
                asked = torch.arange(start, start + rows, device=device) % k_classes  # (rows,)
                x = pl_module.sample(
                    rows, generator=generator, cond={"y": asked}, guidance_scale=self.guidance_scale, **kwargs
                )
            else:
                x = pl_module.sample(rows, generator=generator, **kwargs)
            x = x.clamp(-1, 1)  # (rows, C, H, W)
            probs = classifier(x).softmax(-1)  # (rows, K)
            confidence, pred = probs.max(-1)
            index = asked if self.conditional else pred
            feats = extractor(x).double()  # (rows, F)
            self.stats.update(index, pred, confidence)
            for c in range(k_classes):
                mask = index == c
                if mask.any():
                    self.fids[c].update(feats[mask], real=False)
                    if keep_grid:
                        kept = self._grid.setdefault(c, [])
                        kept.extend(list(x[mask][: self.grid_per_class - len(kept)].cpu()))
            self.fid_all.update(feats, real=False)
            if self.fidelity_check:
                all_feats[start : start + rows], all_index[start : start + rows] = feats, index + 1

        for_each_chunk(trainer, pl_module, n_total, self.chunk_size, self.seed, draw)
        stats = self.stats.compute()  # synced: identical on every rank, so the FIDs computed below match
        fid_counts = stats["fid_counts"].round().long().tolist()
        total = max(1.0, float(stats["pred_counts"].sum()))
        values: dict[str, float] = {}
        for c_idx, c in enumerate(self.labels):
            values[f"val/gen_share/class_{c}"] = float(stats["pred_counts"][c_idx]) / total
            if fid_counts[c_idx] >= 2:
                values[f"val/fid/class_{c}"] = float(self.fids[c_idx].compute())
            elif trainer.is_global_zero:
                warnings.warn(
                    f"PerClassFID: {fid_counts[c_idx]} generated image(s) of class {c} (of "
                    f"{self.resolve_n(trainer)}) at step {trainer.global_step}: an FID needs at least 2, "
                    f"so val/fid/class_{c} is not logged this time; raise n_samples",
                    stacklevel=2,
                )
        values["val/fid/all"] = float(self.fid_all.compute())
        values["val/classifier_confidence"] = float(stats["confidence"])
        if self.conditional:
            values["val/label_agreement"] = float(stats["agreement"])
        if self.fidelity_check:
            ranks = current_ranks(trainer)
            values.update(
                self._fidelity(trainer, ranks.all_reduce_sum(all_feats), ranks.all_reduce_sum(all_index) - 1, device)
            )
        for metric in (*self.fids, self.fid_all, self.stats):
            metric.reset()  # the real statistics stay (reset_real_features=False)
        self._write_record(trainer, pl_module, values, fid_counts)
        return values

    def _fidelity(self, trainer: pl.Trainer, feats: Tensor, index: Tensor, device: torch.device) -> dict[str, float]:
        """torch-fidelity's FID, KID and precision / recall per class on the same features (every rank, no collective)."""
        real = trainer.datamodule.real_images()
        out = {}
        for k, c in enumerate(self.labels):
            gen = feats[index == k]
            if gen.shape[0] < 2:
                continue
            m = fidelity_metrics(gen.cpu(), self._batched_features(real[c], device).cpu(), seed=self.seed)
            out.update(
                {
                    f"val/fidelity/fid/class_{c}": m["frechet_inception_distance"],
                    f"val/fidelity/kid/class_{c}": m["kernel_inception_distance_mean"],
                    f"val/fidelity/precision/class_{c}": m["precision"],
                    f"val/fidelity/recall/class_{c}": m["recall"],
                }
            )
        return out

    # -- reproducibility record ------------------------------------------------------------------------
    def record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, fid_counts: list[int]) -> dict[str, Any]:
        """What makes the FIDs of this evaluation reproducible."""
        schedule = pl_module.schedule
        sampler = resolve_sampler(self.sampler, bool(schedule.discrete))
        steps = self.n_steps if self.n_steps is not None else default_steps(schedule, sampler)
        if steps is None:
            steps = int(getattr(schedule, "T", 0)) or None
        return {
            **self.extractor().describe(),
            "classifier_checkpoint": self.aux_checkpoint,
            "classifier_hash": file_hash(self.aux_checkpoint),
            "conditional": self.conditional,
            "n_generated": {str(c): int(n) for c, n in zip(self.labels, fid_counts)},
            "n_real": {str(c): n for c, n in self._real_counts.items()},
            "sampler": sampler,
            "steps": steps,
            "sampler_options": self.sampler_options,
            "guidance_scale": self.guidance_scale,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "n_samples": self.resolve_n(trainer),
        }

    def _write_record(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float], fid_counts: list[int]
    ) -> None:
        entry = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "values": values,
            "record": self.record(trainer, pl_module, fid_counts),
        }
        self.last_record = entry
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "per_class_fid.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    # -- figures (rank zero, no collectives) -----------------------------------------------------------
    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        self.history.append({"step": trainer.global_step, **values})
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        names = {
            c: f"class {c} ({dm.class_name(c)})" if hasattr(dm, "class_name") else f"class {c}" for c in self.labels
        }
        for key, title, fig_name in (
            ("val/fid/class_", "Per-class FID (paper 1, Fig. 3)", "fig3_per_class_fid"),
            ("val/gen_share/class_", "Share of generated images per class", "class_shares"),
        ):
            steps, curves = {}, {}
            for c in self.labels:
                points = [(h["step"], h[f"{key}{c}"]) for h in self.history if f"{key}{c}" in h]
                steps[names[c]], curves[names[c]] = [p[0] for p in points], [p[1] for p in points]
            save_figure(trainer, plotting.curves_figure(steps, curves, title, ylabel=key.split("/")[1]), fig_name)
        if self._grid:
            order = [c for c in range(len(self.labels)) if c in self._grid]
            images = torch.stack([img for c in order for img in self._grid[c]]).numpy()  # (n, C, H, W)
            labels = np.array([self.labels[c] for c in order for _ in self._grid[c]])
            title = f"Generated images per class, step {trainer.global_step} (paper 1, Fig. 5)"
            save_figure(trainer, image_grid_figure(images, title, labels, max_items=len(labels)), "fig5_generated_grid")


__all__ = ["PerClassFID"]
