"""Data modules of paper 2's bouncing-ball videos (Sec. 6.2, Appendix F): frames for the VAE, latent sequences
for the DiT.

``BallFramesDataModule``: single 64 x 64 frames of the ball at uniform positions (the ball's stationary law;
paper: 20,000 frames), batches {x0: (B, 1, L, L), pos: (B, 2), index}, for ``models.vae_module.VAEModule``.

``BallLatentDataModule``: videos (paper: 10,000 of 240 frames) encoded frame by frame by a frozen VAE into
latent sequences (frames, k), one DiT token per frame. As fast-DiT caches latents, they are encoded once into
``cache_dir`` and reused while the VAE checkpoint (its SHA-256) and the data settings are unchanged; a changed
VAE or setting rebuilds the cache, and the message (``cache_reason``) says which changed. Encoding runs in
``prepare_data`` (once per node, before the processes of a DDP job load the cache in ``setup``). The latents
are the posterior means mu(x), standardised per coordinate over the training videos (the DiT sees
zero-mean unit-variance tokens); ``to_vae_latents`` undoes it before decoding.

What diagnostics may ask (``diffusion_theory.protocols``): ``true_covariance`` (KnowsCovariance), for paper 2's
Fig. 6(a) and the attention diagnostics of the Gaussian-process experiment, is the Appendix F Kronecker
estimate Gamma (x) Sigma (Sigma the mean per-frame covariance, Gamma the projection of
``metrics.covariance.estimate_kernel``) from ``n_reference`` further videos of their own seed, the best available
truth for a law that is not Gaussian; held out, so that CovarianceError's reference, the first n training
videos, is not part of the "truth" it is compared with.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from diffusion_theory.callbacks.auxiliary import load_auxiliary
from diffusion_theory.datamodules.streams import CycledBatches, ShardedBatches
from diffusion_theory.distributions.bouncing_ball import BouncingBall, validate_geometry
from diffusion_theory.metrics.covariance import estimate_kernel

EVAL_SEED_OFFSET = 1_000_003  # the evaluation set never shares the training stream's seed
REFERENCE_SEED_OFFSET = 2_000_006  # nor the reference videos of the covariance
CACHE_VERSION = 1  # bump when the cache's content changes for the same settings


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if int(value) != value or value < minimum:
        raise ValueError(f"data.{name} must be an integer >= {minimum}; got {value}")


class BallFramesDataModule(pl.LightningDataModule):
    """Frames of a ball at uniform random positions, for the VAE (paper 2, Sec. 6.2: 20,000 frames).

    Args:
        size: frame side L (paper: 64).
        radius: ball radius in pixels (0 < radius < size / 2).
        n_frames: training frames (paper: 20,000).
        seed: seed of the training frames.
        n_eval: frames of the fixed evaluation set (their own seed).
        batch_size: frames per training step (per process).
        steps_per_epoch: training steps between two validations.
        eval_batch_size: evaluation frames per batch.
    """

    def __init__(
        self,
        size: int = 64,
        radius: float = 6.0,
        n_frames: int = 20000,
        seed: int = 0,
        n_eval: int = 512,
        batch_size: int = 64,
        steps_per_epoch: int = 200,
        eval_batch_size: int = 256,
    ):
        super().__init__()
        validate_geometry(size, radius, 1.0, prefix="data.")
        for name, value in (
            ("n_frames", n_frames),
            ("n_eval", n_eval),
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("eval_batch_size", eval_batch_size),
        ):
            _check_int(name, value)
        self.save_hyperparameters()
        self.ball = BouncingBall(size, radius, 1.0)
        self._train: dict[str, Tensor] | None = None
        self._eval: dict[str, Tensor] | None = None

    def frames(self, n: int, seed: int) -> dict[str, Tensor]:
        pos = self.ball.uniform_positions(n, seed)  # (n, 2)
        return {"x0": self.ball.render(pos)[:, None], "pos": pos.float(), "index": torch.arange(n)}

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (1, self.hparams.size, self.hparams.size)

    @property
    def evaluation_set(self) -> dict[str, Tensor]:
        if self._eval is None:
            self._eval = self.frames(self.hparams.n_eval, self.hparams.seed + EVAL_SEED_OFFSET)
        return self._eval

    def setup(self, stage: str | None = None) -> None:
        self.evaluation_set  # noqa: B018
        if self._train is None:
            self._train = self.frames(self.hparams.n_frames, self.hparams.seed)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        step = lambda: self.trainer.global_step if self.trainer is not None else 0  # noqa: E731
        return DataLoader(CycledBatches(self._train, hp.batch_size, hp.steps_per_epoch, hp.seed, step), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self.evaluation_set, self.hparams.eval_batch_size), batch_size=None)


# ----------------------------------------------------------------------------------------
# Latent sequences
# ----------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Why a cache for ``new`` had to be built, given the key of the previous build ``old`` (or None)."""
    if old is None:
        return "no latent cache yet"
    changes = []
    if old.get("vae_sha256") != new["vae_sha256"]:
        changes.append(
            f"the VAE checkpoint changed (sha256 {str(old.get('vae_sha256'))[:12]} -> {new['vae_sha256'][:12]})"
        )
    changed = [
        f"{k} {old.get('settings', {}).get(k)!r} -> {v!r}"
        for k, v in new["settings"].items()
        if old.get("settings", {}).get(k) != v
    ]
    if changed:
        changes.append("data settings changed: " + ", ".join(changed))
    return "; ".join(changes) or "the cache file of this key is missing"


class BallLatentDataModule(pl.LightningDataModule):
    """Latent sequences (frames, k) of bouncing-ball videos through a frozen VAE (paper 2, Sec. 6.2).

    Args:
        vae_checkpoint: the VAE's auxiliary checkpoint (``VAEModule`` writes ``<run folder>/vae.pt``).
        latent_dim: k, must equal the VAE's latent size (paper: 2); the DiT's input_shape follows it.
        frames: frames per video, one token each (paper: 240).
        size, radius, speed: the simulator (``distributions.bouncing_ball``; paper: 64 x 64).
        n_videos: training videos (paper: 10,000).
        seed: seed of the training videos.
        n_eval: videos of the fixed evaluation set (own seed), also the "real" reference of the video diagnostics.
        n_reference: videos (own seed) whose latents estimate the covariance Gamma (x) Sigma (``true_covariance``).
        batch_size: sequences per training step (per process).
        steps_per_epoch: training steps between two validations.
        eval_batch_size: evaluation sequences per batch.
        cache_dir: folder of the latent caches.
        encode_batch_size: frames per VAE forward pass while encoding.
    """

    sample_shape_fields = ("frames", "latent_dim")

    def __init__(
        self,
        vae_checkpoint: str,
        latent_dim: int = 2,
        frames: int = 240,
        size: int = 64,
        radius: float = 6.0,
        speed: float = 3.0,
        n_videos: int = 10000,
        seed: int = 0,
        n_eval: int = 256,
        n_reference: int = 2000,
        batch_size: int = 64,
        steps_per_epoch: int = 200,
        eval_batch_size: int = 64,
        cache_dir: str = "runs/cache/ball_latents",
        encode_batch_size: int = 4096,
    ):
        super().__init__()
        validate_geometry(size, radius, speed, prefix="data.")
        for name, value in (
            ("latent_dim", latent_dim),
            ("frames", frames),
            ("n_videos", n_videos),
            ("n_eval", n_eval),
            ("n_reference", n_reference),
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("eval_batch_size", eval_batch_size),
            ("encode_batch_size", encode_batch_size),
        ):
            _check_int(name, value)
        path = Path(vae_checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"data.vae_checkpoint: no such file {str(path)!r} (train the VAE first: "
                f"python scripts/fit.py --config configs/ball_vae.yaml writes <run folder>/vae.pt)"
            )
        vae = load_auxiliary(path, "data.vae_checkpoint")
        got = getattr(vae, "latent_dim", None)
        if got != latent_dim:
            raise ValueError(
                f"data.vae_checkpoint: the VAE at {str(path)!r} has latent size {got}, but "
                f"data.latent_dim = {latent_dim} (and the DiT's input_shape [frames, latent_dim] follows "
                f"it); set data.latent_dim={got} or use a VAE with latent size {latent_dim}"
            )
        if getattr(vae, "size", size) != size:
            raise ValueError(f"data.size = {size} but the VAE at {str(path)!r} takes {vae.size} x {vae.size} frames")
        self.save_hyperparameters()
        self.ball = BouncingBall(size, radius, speed)
        self._vae = vae
        self.cache_reason: str | None = None  # "reused ..." or "built: <why>", set by prepare_data
        self._data: dict[str, Tensor] | None = None

    # -- the cache ---------------------------------------------------------------------------------
    def cache_key(self) -> dict[str, Any]:
        hp = self.hparams
        settings = {
            k: hp[k]
            for k in ("frames", "size", "radius", "speed", "n_videos", "seed", "n_eval", "n_reference", "latent_dim")
        }
        return {"version": CACHE_VERSION, "vae_sha256": file_sha256(Path(hp.vae_checkpoint)), "settings": settings}

    def cache_path(self, key: dict[str, Any] | None = None) -> Path:
        key = key or self.cache_key()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return Path(self.hparams.cache_dir) / f"ball_latents_{digest}.pt"

    @torch.no_grad()
    def encode_videos(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """(latents (n, frames, k) float32 posterior means, centres (n, frames, 2) float32), rendered and encoded in
        chunks of ``encode_batch_size`` frames (paper scale never holds all frames in memory)."""
        hp = self.hparams
        centres = self.ball.sample_trajectories(n, hp.frames, seed).float()  # (n, F, 2)
        flat = centres.reshape(-1, 2)
        out = torch.empty(flat.shape[0], hp.latent_dim)
        for start in range(0, flat.shape[0], hp.encode_batch_size):
            frames = self.ball.render(flat[start : start + hp.encode_batch_size])[:, None]  # (b, 1, L, L)
            out[start : start + frames.shape[0]] = self._vae.encode(frames)[0]
        return out.reshape(n, hp.frames, hp.latent_dim), centres

    def prepare_data(self) -> None:
        """Build the cache unless one for this VAE and these settings exists (once per node, before ``setup``)."""
        key = self.cache_key()
        path = self.cache_path(key)
        manifest = Path(self.hparams.cache_dir) / "last_build.json"
        if path.is_file():
            self.cache_reason = f"reused {path}"
            rank_zero_info(f"[ball latents] {self.cache_reason}")
            return
        old = json.loads(manifest.read_text()) if manifest.is_file() else None
        reason = describe_change(old, key)
        rank_zero_info(
            f"[ball latents] encoding {self.hparams.n_videos} + {self.hparams.n_eval} + "
            f"{self.hparams.n_reference} videos into {path}: {reason}"
        )
        t0 = time.perf_counter()
        hp = self.hparams
        train, _ = self.encode_videos(hp.n_videos, hp.seed)
        eval_latents, eval_centres = self.encode_videos(hp.n_eval, hp.seed + EVAL_SEED_OFFSET)
        shift = train.mean((0, 1))  # (k,)
        scale = train.std((0, 1)).clamp_min(1e-8)  # (k,)
        train_std, eval_std = (train - shift) / scale, (eval_latents - shift) / scale
        reference = (self.encode_videos(hp.n_reference, hp.seed + REFERENCE_SEED_OFFSET)[0] - shift) / scale
        centred = reference.double() - reference.double().mean(0)  # (n_ref, F, k)
        sigma = torch.einsum("nia,nib->ab", centred, centred) / (centred.shape[0] * centred.shape[1])  # (k, k)
        gamma = estimate_kernel(reference, sigma).gamma_hat  # (F, F)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "key": key,
                "reason": reason,
                "train": train_std,
                "eval": eval_std,
                "eval_centres": eval_centres,
                "shift": shift,
                "scale": scale,
                "gamma": gamma,
                "sigma": sigma,
            },
            tmp,
        )
        tmp.replace(path)  # atomic: a killed build never leaves a half-written cache under the key's name
        manifest.write_text(json.dumps(key, indent=1))
        self.cache_reason = f"built: {reason} ({time.perf_counter() - t0:.1f} s)"

    def setup(self, stage: str | None = None) -> None:
        if self._data is None:
            path = self.cache_path()
            if not path.is_file():  # outside a Trainer (tests, notebooks) nobody called prepare_data
                self.prepare_data()
            elif self.cache_reason is None:  # built or checked by prepare_data in another process (DDP rank 0)
                self.cache_reason = f"reused {path}"
            self._data = torch.load(path, map_location="cpu", weights_only=True)

    @property
    def data(self) -> dict[str, Tensor]:
        if self._data is None:
            self.setup()
        return self._data

    # -- what the DiT and the diagnostics see -------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, int]:
        """(frames, latent_dim): one token per frame; the DiT's input_shape must equal it."""
        return (self.hparams.frames, self.hparams.latent_dim)

    @property
    def evaluation_set(self) -> dict[str, Tensor]:
        """x0 (n_eval, frames, k) standardised latents of the evaluation videos, index (n_eval,)."""
        return {"x0": self.data["eval"], "index": torch.arange(self.hparams.n_eval)}

    def evaluation_centres(self) -> Tensor:
        """True ball centres (n_eval, frames, 2) of the evaluation videos."""
        return self.data["eval_centres"]

    def to_vae_latents(self, z: Tensor) -> Tensor:
        """Standardised latents (..., k) back to the VAE's latent space."""
        return z * self.data["scale"].to(z) + self.data["shift"].to(z)

    def ball_geometry(self) -> dict[str, float]:
        """{size, radius, speed} of the simulator: what the physics metrics check against."""
        hp = self.hparams
        return {"size": float(hp.size), "radius": float(hp.radius), "speed": float(hp.speed)}

    def true_covariance(self) -> tuple[Tensor, Tensor]:
        """(Gamma (F, F), Sigma (k, k)) float64: the Appendix F estimate from the reference videos (module docstring)."""
        return self.data["gamma"], self.data["sigma"]

    def training_sequences(self, n: int) -> Tensor:
        """The first n training latent sequences (n, frames, k) (KnowsCovariance)."""
        if n > self.hparams.n_videos:
            raise ValueError(f"training_sequences: asked for {n} sequences; data.n_videos = {self.hparams.n_videos}")
        return self.data["train"][:n]

    def training_set_size(self) -> int:
        return int(self.hparams.n_videos)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        step = lambda: self.trainer.global_step if self.trainer is not None else 0  # noqa: E731
        return DataLoader(
            CycledBatches({"x0": self.data["train"]}, hp.batch_size, hp.steps_per_epoch, hp.seed, step), batch_size=None
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self.evaluation_set, self.hparams.eval_batch_size), batch_size=None)
