"""Ball data modules: frames for the VAE, latent sequences through a frozen VAE with an on-disk cache that is reused
while the VAE and the settings are unchanged and rebuilt (saying why) when either changes; clear errors first."""

from __future__ import annotations

import pytest
import torch

from diffusion_theory.callbacks.auxiliary import save_auxiliary
from diffusion_theory.datamodules.ball import BallFramesDataModule, BallLatentDataModule
from diffusion_theory.datamodules.shapes import SampleShapeError, check_sample_shape
from diffusion_theory.networks.dit import DiT
from diffusion_theory.networks.vae import ConvVAE


def write_vae(path, latent_dim: int = 2, seed: int = 0, size: int = 32):
    torch.manual_seed(seed)
    vae = ConvVAE(size=size, latent_dim=latent_dim, channels=4, decoder_width=8, decoder_depth=1)
    return save_auxiliary(vae, path, vae.aux_init_args()), vae


def latent_data(vae_path, cache_dir, **kw):
    args = dict(
        frames=8,
        size=32,
        radius=3.0,
        speed=2.0,
        n_videos=20,
        n_eval=4,
        n_reference=12,
        cache_dir=str(cache_dir),
        encode_batch_size=50,
    )
    return BallLatentDataModule(str(vae_path), **{**args, **kw})


def test_frames_data_module():
    dm = BallFramesDataModule(size=32, radius=3.0, n_frames=40, n_eval=8, batch_size=8, steps_per_epoch=3)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["x0"].shape == (8, 1, 32, 32) and batch["pos"].shape == (8, 2)
    assert dm.evaluation_set["x0"].shape == (8, 1, 32, 32)
    with pytest.raises(ValueError, match="data.radius"):
        BallFramesDataModule(size=32, radius=16.0)


def test_latents_are_the_vae_posterior_means_standardised(tmp_path):
    path, vae = write_vae(tmp_path / "vae.pt")
    dm = latent_data(path, tmp_path / "cache")
    dm.setup()
    assert dm.sample_shape == (8, 2) and dm.evaluation_set["x0"].shape == (4, 8, 2)
    videos, centres = dm.ball.sample_videos(20, 8, seed=0)
    with torch.no_grad():
        mu = vae.encode(videos.reshape(-1, 1, 32, 32))[0].reshape(20, 8, 2)
    assert torch.allclose(dm.to_vae_latents(dm.training_sequences(20)), mu, atol=1e-5)
    train = dm.training_sequences(20)
    assert torch.allclose(train.mean((0, 1)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(train.std((0, 1)), torch.ones(2), atol=1e-4)
    gamma, sigma = dm.true_covariance()
    assert gamma.shape == (8, 8) and sigma.shape == (2, 2) and torch.allclose(gamma, gamma.T)
    assert dm.ball_geometry() == {"size": 32.0, "radius": 3.0, "speed": 2.0}


def test_cache_reused_then_rebuilt_when_the_vae_or_a_setting_changes(tmp_path):
    cache = tmp_path / "cache"
    path, _ = write_vae(tmp_path / "vae.pt", seed=0)
    first = latent_data(path, cache)
    first.prepare_data()
    assert first.cache_reason.startswith("built: no latent cache yet")
    again = latent_data(path, cache)
    again.prepare_data()
    assert again.cache_reason.startswith("reused")
    again.setup()
    assert torch.equal(again.training_sequences(20), first.training_sequences(20))

    write_vae(path, seed=1)  # retrained VAE: same file name, new weights
    changed = latent_data(path, cache)
    changed.prepare_data()
    assert "the VAE checkpoint changed" in changed.cache_reason
    changed.setup()
    assert not torch.equal(changed.training_sequences(20), first.training_sequences(20))

    other = latent_data(path, cache, radius=4.0)
    other.prepare_data()
    assert "data settings changed: radius 3.0 -> 4.0" in other.cache_reason
    assert len(list(cache.glob("ball_latents_*.pt"))) == 3


def test_errors_before_any_work(tmp_path):
    path, _ = write_vae(tmp_path / "vae.pt", latent_dim=3)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="latent size 3, but data.latent_dim = 2"):
        latent_data(path, cache)
    with pytest.raises(FileNotFoundError, match="data.vae_checkpoint"):
        latent_data(tmp_path / "missing.pt", cache)
    with pytest.raises(ValueError, match="data.speed"):
        latent_data(path, cache, latent_dim=3, speed=0.0)
    with pytest.raises(ValueError, match="data.frames"):
        latent_data(path, cache, latent_dim=3, frames=0)
    with pytest.raises(ValueError, match="data.radius"):
        latent_data(path, cache, latent_dim=3, radius=20.0)
    assert not cache.exists()  # nothing was encoded
    dm = latent_data(path, cache, latent_dim=3)
    with pytest.raises(SampleShapeError, match="latent_dim = 3"):  # the DiT's latent size differs from the VAE's
        check_sample_shape(
            dm, DiT(input_shape=(8, 2), hidden_size=16, pos_embed_mode="concat", pos_dim=8, depth=1, num_heads=2)
        )
    assert not cache.exists()
