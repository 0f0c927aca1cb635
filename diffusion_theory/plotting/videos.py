"""Figures and files of videos (paper 2, Sec. 6.2): frame strips (Fig. 13), latent trajectories (Fig. 6), the
VAE's reconstructions and latent map, and animated GIFs (written with Pillow, no video codec needed).

Frames are numpy arrays in [0, 1]: a video (F, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from diffusion_theory.plotting.figure import new_figure


def strip_indices(n_frames: int, n_shown: int = 36) -> np.ndarray:
    """min(n_shown, n_frames) frame indices spread evenly over the video, first and last included (Fig. 13: 36 of 240)."""
    k = min(int(n_shown), int(n_frames))
    return np.unique(np.round(np.linspace(0, n_frames - 1, k)).astype(int))


def frame_strip_figure(video: np.ndarray, title: str, n_shown: int = 36, columns: int = 12) -> Figure:
    """Fig. 13: ``n_shown`` frames of ``video`` (F, H, W) spread evenly over it, in rows of ``columns``."""
    idx = strip_indices(video.shape[0], n_shown)
    rows = -(-len(idx) // columns)
    fig = new_figure((0.9 * columns, 0.95 * rows + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(idx):
            ax.axis("off")
            continue
        ax.imshow(np.clip(video[idx[i]], 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{idx[i]}", fontsize=6, pad=1)
    fig.suptitle(title, fontsize=8)
    return fig


def latent_trajectories_figure(generated: np.ndarray, real: np.ndarray, title: str, max_paths: int = 6) -> Figure:
    """Fig. 6 (ours: paths): latent sequences (n, F, k) generated against real, as paths in the (z_1, z_2) plane and
    as z_1, z_2 against the frame index."""
    fig = new_figure((12, 6.5))
    axes = fig.subplots(2, 3)
    for row, (name, z) in enumerate((("generated", generated), ("real", real))):
        z = z[:max_paths]
        ax = axes[row, 0]
        for path in z:
            ax.plot(path[:, 0], path[:, 1 % path.shape[1]], lw=0.9, marker=".", ms=2)
            ax.plot(path[0, 0], path[0, 1 % path.shape[1]], "k^", ms=4)
        ax.set_title(f"{name}: latent paths (start ^)", fontsize=9)
        ax.set_xlabel("z_1")
        ax.set_ylabel("z_2")
        for c in range(min(2, z.shape[2])):
            ax = axes[row, 1 + c]
            for path in z:
                ax.plot(path[:, c], lw=0.9)
            ax.set_title(f"{name}: z_{c + 1} against frame", fontsize=9)
            ax.set_xlabel("frame")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def reconstruction_figure(originals: np.ndarray, reconstructions: np.ndarray, title: str) -> Figure:
    """Frames (n, H, W) above their reconstructions (n, H, W)."""
    n = originals.shape[0]
    fig = new_figure((1.1 * n, 2.6))
    axes = fig.subplots(2, n, squeeze=False)
    for r, frames in enumerate((originals, reconstructions)):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(np.clip(frames[i], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel("frame" if r == 0 else "recon", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def latent_map_figure(latents: np.ndarray, positions: np.ndarray, size: float, title: str) -> Figure:
    """The encoder's map of positions: latents (n, k) coloured by the ball's x and by its y (positions (n, 2))."""
    fig = new_figure((10, 4.4))
    axes = fig.subplots(1, 2)
    for c, name in enumerate(("x", "y")):
        ax = axes[c]
        sc = ax.scatter(
            latents[:, 0], latents[:, 1 % latents.shape[1]], c=positions[:, c], s=5, cmap="viridis", vmin=0, vmax=size
        )
        fig.colorbar(sc, ax=ax, label=f"ball {name} (pixels)")
        ax.set_xlabel("mu_1")
        ax.set_ylabel("mu_2")
        ax.set_title(f"latent means coloured by the ball's {name}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def save_gif(video: np.ndarray, path: str | Path, fps: int = 12, scale: int = 2) -> Path:
    """An animated GIF of ``video`` (F, H, W) in [0, 1], each pixel shown as scale x scale, looping."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = (np.clip(video, 0, 1) * 255).round().astype(np.uint8)
    if scale > 1:
        frames = frames.repeat(scale, 1).repeat(scale, 2)
    images = [Image.fromarray(f, mode="L") for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return path
