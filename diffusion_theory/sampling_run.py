"""Samples of a trained checkpoint, in one process or many (``scripts/sample.py``).

    python scripts/sample.py --ckpt runs/gp/<run>/checkpoints/last.ckpt -n 1000 --sampler ode --steps 50
    torchrun --nproc-per-node=8 scripts/sample.py --ckpt ... -n 50000 --classes 0,1,2 --guidance_scale 4

The model is rebuilt from the checkpoint alone (``DiffusionModule.load_from_checkpoint``, weights only) and
sampled with its EMA network when it has one. The n samples are cut into chunks with their own seeds
(``diffusion.generation``), so the samples do not depend on the number of processes: under torchrun each
process draws its own chunks, and rank zero writes

    <out>.pt     the samples, a tensor (n_total, *sample shape), rows grouped by class with --classes
    <out>.json   the settings and the class label of each row
    <out>.png    a picture that fits the data (``plotting.samples``: image grid, sequence plots, scatter)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from diffusion_theory.diffusion.generation import current_ranks, generate_across_ranks
from diffusion_theory.diffusion.samplers import resolve_sampler
from diffusion_theory.models.diffusion_module import DiffusionModule


@dataclass
class SampleRequest:
    """What ``scripts/sample.py`` asks for (see its --help)."""

    ckpt: str
    n: int
    sampler: str = "auto"
    steps: int | None = None
    seed: int = 0
    classes: list[int] | None = None
    guidance_scale: float | None = None
    unconditional: bool = False
    out: str | None = None
    chunk_size: int = 256
    sampler_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def check(self) -> None:
        """One clear error per bad field, before any work."""
        if not Path(self.ckpt).is_file():
            raise ValueError(f"--ckpt: no checkpoint file at {self.ckpt}")
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"-n: must be an integer >= 1; got {self.n}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps: must be >= 1; got {self.steps}")
        if self.chunk_size < 1:
            raise ValueError(f"--chunk_size: must be >= 1; got {self.chunk_size}")
        if self.classes is not None and (not self.classes or any(c < 0 for c in self.classes)):
            raise ValueError(f"--classes: a comma-separated list of class indices >= 0; got {self.classes}")
        if self.unconditional and (self.classes is not None or self.guidance_scale is not None):
            raise ValueError("--unconditional (the null class) excludes --classes and --guidance_scale")
        if self.guidance_scale is not None and self.classes is None:
            raise ValueError("--guidance_scale: classifier-free guidance needs --classes")

    def out_path(self) -> Path:
        """``out`` without suffix; default: <run>/samples/<ckpt stem>_<sampler>_n<n>_seed<seed> next to the
        run's checkpoints/ folder (the checkpoint's own folder when it is not in one)."""
        if self.out:
            return Path(self.out).with_suffix("")
        ckpt = Path(self.ckpt).resolve()
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        return run / "samples" / f"{ckpt.stem}_{self.sampler}_n{self.n}_seed{self.seed}"


def init_distributed() -> torch.device:
    """Join torchrun's process group when launched by it (gloo on CPU, nccl on GPUs); this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def class_labels(classes: list[int] | None, n: int) -> Tensor | None:
    """n labels of each class in ``classes``, grouped: (n len(classes),) int64; None without classes."""
    if classes is None:
        return None
    return torch.tensor(classes, dtype=torch.long).repeat_interleave(int(n))


def conditioning(module: DiffusionModule, request: SampleRequest) -> tuple[dict[str, Tensor], int]:
    """The conditioning of every row and the number of rows, checked against the model."""
    keys = module.condition_keys
    if request.classes is not None:
        if len(keys) != 1:
            raise ValueError(
                f"--classes: the checkpoint's model takes {len(keys)} conditioning inputs "
                f"(model.condition_keys = {keys}); --classes needs exactly one (class labels)"
            )
        num_classes = getattr(module.inference_network, "num_classes", None)
        if num_classes is not None and max(request.classes) >= num_classes:
            raise ValueError(
                f"--classes: the model has {num_classes} classes (0 .. {num_classes - 1}); got {request.classes}"
            )
        labels = class_labels(request.classes, request.n)
        return {keys[0]: labels.to(module.device)}, labels.numel()
    if keys and not request.unconditional:
        raise ValueError(
            f"--classes: the checkpoint's model is conditional on {keys}; pass --classes, or "
            f"--unconditional for the null class"
        )
    if request.unconditional and not keys:
        raise ValueError("--unconditional: the checkpoint's model is unconditional already; drop the flag")
    return {}, request.n


def sample_checkpoint(request: SampleRequest) -> dict[str, Path] | None:
    """Draw the samples (every rank its chunks) and write them on rank zero; the written paths there, else None."""
    request.check()
    device = init_distributed()
    module = DiffusionModule.load_from_checkpoint(request.ckpt, map_location=device, weights_only=True).eval()
    cond, total = conditioning(module, request)
    kwargs: dict[str, Any] = {"sampler": request.sampler, "n_steps": request.steps, **request.sampler_options}
    if request.guidance_scale is not None:
        kwargs["guidance_scale"] = request.guidance_scale
    if request.unconditional:
        kwargs["drop_labels"] = True
    samples = generate_across_ranks(
        None, module, total, request.chunk_size, request.seed, cond=cond, progress=request.progress, **kwargs
    ).cpu()  # (total, *shape) on every rank
    ranks = current_ranks()
    if ranks.rank != 0:
        return None
    return write_samples(samples, cond, request, resolve_sampler(request.sampler, bool(module.schedule.discrete)))


def write_samples(samples: Tensor, cond: dict[str, Tensor], request: SampleRequest, sampler: str) -> dict[str, Path]:
    """<out>.pt (the tensor), <out>.json (settings and labels), <out>.png (the picture)."""
    from diffusion_theory.plotting.samples import samples_figure

    out = request.out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {"samples": out.with_suffix(".pt"), "settings": out.with_suffix(".json"), "figure": out.with_suffix(".png")}
    torch.save(samples, paths["samples"])
    labels = next(iter(cond.values())).cpu() if cond else None
    settings = {
        **asdict(request),
        "resolved_sampler": sampler,
        "shape": list(samples.shape),
        "labels": labels.tolist() if labels is not None else None,
    }
    paths["settings"].write_text(json.dumps(settings, indent=2))
    title = (
        f"{samples.shape[0]} samples of {Path(request.ckpt).name} ({sampler}"
        + (f", guidance {request.guidance_scale:g}" if request.guidance_scale is not None else "")
        + ")"
    )
    fig = samples_figure(samples.numpy(), title, labels.numpy() if labels is not None else None)
    fig.savefig(paths["figure"])
    return paths
