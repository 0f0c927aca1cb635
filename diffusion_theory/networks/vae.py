"""A convolutional VAE with a low-dimensional latent for single frames: paper 2, Sec. 6.2 ("a 2D Variational
Autoencoder [...] sets the latent representation in R^2").

The paper gives no architecture; ours (nn.Module only, no Lightning):

    encoder   two strided 3x3 convolutions (L -> L/4), a spatial softmax per channel giving the expected cell
              coordinates ("keypoints", Finn et al. 2016), then an MLP to (mu, log sigma^2) in R^{2k}
    decoder   a spatial broadcast decoder (Watters et al. 2019) on an L/4 x L/4 grid: z is tiled over the grid,
              the cell coordinates are appended as two channels, and 1x1 convolutions (a per-cell MLP) give
              features that two stride-2 transposed convolutions turn into the L x L logits. Placing an object from
              its coordinates is what plain transposed convolutions from a vector do badly (Liu et al. 2018,
              CoordConv); the coordinate channels make it easy, at a sixteenth of a full-resolution MLP's compute.

Frames are (B, 1, L, L) in [0, 1]; ``decode`` returns intensities in [0, 1] (sigmoid of the logits), the
Bernoulli mean of the reconstruction loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from diffusion_theory.init_config import RecordsInitArgs


class ConvVAE(RecordsInitArgs, nn.Module):
    """Frames (B, 1, size, size) <-> latents (B, latent_dim).

    Args:
        size: frame side L, a power of two >= 8 (paper: 64).
        latent_dim: k, the latent dimension (paper: 2).
        channels: width of the encoder's convolutions (doubling up to 4 times this).
        decoder_width: hidden width of the per-pixel decoder MLP.
        decoder_depth: number of hidden 1x1 convolution layers of the decoder.
    """

    def __init__(
        self, size: int = 64, latent_dim: int = 2, channels: int = 8, decoder_width: int = 32, decoder_depth: int = 2
    ):
        super().__init__()
        if int(size) != size or size < 8 or size & (size - 1):
            raise ValueError(f"ConvVAE.size must be a power of two >= 8; got {size}")
        for name, value in (
            ("latent_dim", latent_dim),
            ("channels", channels),
            ("decoder_width", decoder_width),
            ("decoder_depth", decoder_depth),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"ConvVAE.{name} must be an integer >= 1; got {value}")
        self.size, self.latent_dim = int(size), int(latent_dim)
        c1, c2 = int(channels), 2 * int(channels)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1),
            nn.SiLU(),  # (B, c1, L/2, L/2)
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
        )  # (B, c2, L/4, L/4)
        self.to_moments = nn.Sequential(nn.Linear(2 * c2, 64), nn.SiLU(), nn.Linear(64, 2 * self.latent_dim))
        with torch.no_grad():  # start with little posterior noise: a decoder that first sees sigma ~ 1 noise around
            self.to_moments[-1].bias[self.latent_dim :] = -8.0  # near-constant means learns to ignore z (collapse)
        self.broadcast = self.size // 4  # the decoder's grid: L/4 x L/4, then two x2 up-convolutions
        dec: list[nn.Module] = [nn.Conv2d(self.latent_dim + 2 + min(2, self.latent_dim), decoder_width, 1), nn.SiLU()]
        for _ in range(int(decoder_depth) - 1):
            dec += [nn.Conv2d(decoder_width, decoder_width, 1), nn.SiLU()]
        dec += [
            nn.ConvTranspose2d(decoder_width, channels * 2, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(channels * 2, 1, 4, stride=2, padding=1),
        ]
        self.decoder = nn.Sequential(*dec)
        coords = (torch.arange(self.broadcast, dtype=torch.float32) + 0.5) / self.broadcast * 2 - 1  # cell centres
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        self.register_buffer("grid", torch.stack([xx, yy])[None], persistent=False)  # (1, 2, L/4, L/4)

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, log sigma^2), each (B, latent_dim), of frames (B, 1, L, L)."""
        mu, logvar = self.to_moments(self.keypoints(self.encoder(frames))).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)

    def keypoints(self, features: Tensor) -> Tensor:
        """Spatial softmax (Finn et al. 2016): per channel, the softmax-weighted mean cell coordinate:
        features (B, C, G, G) -> (B, 2C) in (-1, 1). Position-aware from initialisation on."""
        B, C, G, _ = features.shape
        weights = torch.softmax(features.flatten(2), -1)  # (B, C, G G)
        grid = self.grid.flatten(2).to(features.dtype)  # (1, 2, G G)
        return torch.einsum("bcp,xp->bcx", weights, grid[0]).reshape(B, 2 * C)

    def decode_logits(self, z: Tensor) -> Tensor:
        """Pixel logits (B, 1, L, L) of latents z (B, latent_dim)."""
        B = z.shape[0]
        G = self.broadcast
        tiled = z[:, :, None, None].expand(B, self.latent_dim, G, G)  # (B, k, L/4, L/4)
        grid = self.grid.expand(B, -1, -1, -1).to(z.dtype)  # (B, 2, G, G)
        m = min(2, self.latent_dim)
        return self.decoder(torch.cat([tiled, tiled[:, :m] - grid[:, :m], grid], 1))  # (B, 2k' + 2, G, G) -> logits

    def decode(self, z: Tensor) -> Tensor:
        """Frames (B, 1, L, L) in [0, 1] of latents z (B, latent_dim)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, frames: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction logits (B, 1, L, L), mu, logvar) with z = mu + sigma eps (reparameterisation)."""
        mu, logvar = self.encode(frames)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode_logits(mu + (0.5 * logvar).exp() * eps), mu, logvar

    def aux_init_args(self) -> dict:
        """The constructor arguments, for ``callbacks.auxiliary.save_auxiliary``."""
        return dict(self._init_args)
