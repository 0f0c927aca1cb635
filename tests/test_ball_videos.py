"""BallVideos' auxiliary VAE: required, checked against the DiT's latent size before any generation, decoded
frames equal the VAE's own decoding of the data's latents, and the animated GIF / frame strip helpers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_ball_data import latent_data, write_vae

from diffusion_theory.callbacks.ball_videos import BallVideos
from diffusion_theory.networks.dit import DiT
from diffusion_theory.plotting.videos import save_gif, strip_indices
from diffusion_theory.protocols import check_requirements


def dit(latent: int) -> DiT:
    return DiT(input_shape=(8, latent), hidden_size=16, pos_embed_mode="concat", pos_dim=8, depth=1, num_heads=2)


class LatentVideos:
    def to_vae_latents(self, z):
        return z

    def ball_geometry(self):
        return {"size": 32.0, "radius": 3.0, "speed": 2.0}


def test_the_vae_is_required():
    with pytest.raises(ValueError, match="BallVideos.aux_checkpoint: this diagnostic needs an auxiliary model"):
        check_requirements(BallVideos(n_samples=4), LatentVideos(), dit(2))


def test_vae_latent_size_must_match_the_dit(tmp_path):
    path, _ = write_vae(tmp_path / "vae3.pt", latent_dim=3)
    dm = latent_data(path, tmp_path / "cache", latent_dim=3)
    cb = BallVideos(n_samples=4, aux_checkpoint=str(path))
    with pytest.raises(ValueError, match=r"latent size 3, but the DiT's input_shape is \[8, 2\]"):
        cb.setup(SimpleNamespace(datamodule=dm), SimpleNamespace(network=dit(2)), "fit")
    assert not (tmp_path / "cache").exists()  # failed before encoding anything


def test_decoding_goes_through_the_frozen_vae(tmp_path):
    path, vae = write_vae(tmp_path / "vae.pt")
    dm = latent_data(path, tmp_path / "cache")
    cb = BallVideos(n_samples=4, aux_checkpoint=str(path), decode_batch_size=7)
    module = SimpleNamespace(network=dit(2), device=torch.device("cpu"))
    trainer = SimpleNamespace(datamodule=dm)
    cb.setup(trainer, module, "fit")
    z = dm.evaluation_set["x0"]  # (4, 8, 2) standardised
    frames = cb.decode_videos(z, trainer, module)
    with torch.no_grad():
        direct = vae.decode(dm.to_vae_latents(z).reshape(-1, 2))[:, 0].reshape(4, 8, 32, 32)
    assert torch.allclose(frames, direct, atol=1e-6)
    assert not any(p.requires_grad for p in cb.auxiliary_model().parameters())


def test_gif_and_strip(tmp_path):
    video = np.random.default_rng(0).random((20, 16, 16))
    path = save_gif(video, tmp_path / "v.gif", fps=10, scale=2)
    with Image.open(path) as im:
        assert im.n_frames == 20 and im.size == (32, 32)
    assert list(strip_indices(240, 36))[:3] == [0, 7, 14] and len(strip_indices(240, 36)) == 36
    assert list(strip_indices(12, 36)) == list(range(12))
