"""Physical consistency of bouncing-ball videos (ours, beyond paper 2 Sec. 6.2, which shows Fig. 13 only).

Pure functions of tensors. A video is tracked frame by frame (``track_centroids``) and its path p_k (F, 2) is
checked against the simulator's physics (``distributions.bouncing_ball``: constant speed, elastic reflection
at the walls of the box [r, L - r]^2 the ball's centre lives in):

    steps         v_k = p_{k+1} - p_k, k = 0 .. F-2
    flips         a bounce in coordinate c between steps k and k+1: v_{k,c} v_{k+1,c} < 0
                  (the step that contains the wall contact, "folded", is k or k+1)
    clean steps   steps adjacent to no flip, except the first and last (a bounce there may have its flip outside
                  the video): whole steps of free flight, |v_k| = s exactly for the simulator
    speed error   mean over clean steps of | |v_k| - m | / m, m the video's mean clean speed (0 = constant speed)
    reflection    a flip at k whose neighbouring steps v_in = v_{k-1} and v_out = v_{k+2} are clean (others, e.g.
                  two bounces in three frames, are not evaluated) is correct when they satisfy the law of
                  reflection in direction, v_out ~ R v_in (R flips every coordinate with a flip at k-1, k or k+1:
                  angle in = angle out) within ``angle_tol_deg`` (speed is the speed error's job), AND the ball is at the wall
                  it bounced off: |p_{k+1,c} - wall_c| <= |v_in| + ``wall_tol`` (wall_c = L - r moving up, r down)
    out of box    per frame max_c max(0, r - p_c, p_c - (L - r)) in pixels: how far the centre leaves the box
                  (a ball cut by the frame edge pulls its centroid inward, so this under-reads real excursions)

``physics_sums`` returns additive sums (float64) so that the metrics of a set of videos split across processes
are the sums' ratios after an all-reduce, equal to one process on the whole set; ``physics_summary`` turns
them into the reported values.
"""

from __future__ import annotations

import torch
from torch import Tensor

SUM_KEYS = (
    "videos",
    "frames",
    "lost_frames",
    "clean_steps",
    "speed_sum",
    "speed_dev_sum",
    "bounces",
    "bounces_ok",
    "excursion_sum",
    "excursion_max",
)


def track_centroids(frames: Tensor, threshold: float = 0.25) -> tuple[Tensor, Tensor]:
    """Intensity-weighted centroids of frames (..., H, W): ((..., 2) as (x, y) in pixel coordinates, valid (...,)).

    Weights max(I - threshold, 0) at pixel centres (j + 1/2, i + 1/2); a frame with no pixel above the
    threshold is not valid (its centroid is NaN)."""
    H, W = frames.shape[-2:]
    w = (frames.float() - threshold).clamp_min(0)  # (..., H, W)
    total = w.sum((-2, -1))  # (...,)
    xs = torch.arange(W, dtype=w.dtype, device=w.device) + 0.5
    ys = torch.arange(H, dtype=w.dtype, device=w.device) + 0.5
    cx = (w.sum(-2) * xs).sum(-1)  # (...,)
    cy = (w.sum(-1) * ys).sum(-1)
    valid = total > 0
    safe = torch.where(valid, total, torch.ones_like(total))
    centre = torch.stack([cx / safe, cy / safe], -1)
    centre = torch.where(valid[..., None], centre, torch.full_like(centre, float("nan")))
    return centre.to(torch.float64), valid


def physics_sums(
    positions: Tensor, size: float, radius: float, angle_tol_deg: float = 15.0, wall_tol: float = 1.0
) -> dict[str, Tensor]:
    """Additive sums over videos of the quantities in the module docstring; positions (n, F, 2), NaN = lost frame.

    Returns {key: 0-d float64 tensor} for ``SUM_KEYS`` (``excursion_max`` is a max, not a sum)."""
    p = positions.to(torch.float64)
    n, F, _ = p.shape
    valid = ~torch.isnan(p).any(-1)  # (n, F)
    out: dict[str, Tensor] = {k: torch.zeros((), dtype=torch.float64, device=p.device) for k in SUM_KEYS}
    out["videos"] += n
    out["frames"] += valid.sum()
    out["lost_frames"] += (~valid).sum()

    lo, hi = radius, size - radius
    excursion = torch.maximum(lo - p, p - hi).clamp_min(0).amax(-1)  # (n, F)
    excursion = torch.where(valid, excursion, torch.zeros_like(excursion))
    out["excursion_sum"] += excursion.sum()
    out["excursion_max"] = excursion.max() if excursion.numel() else out["excursion_max"]
    if F < 2:
        return out

    v = p[:, 1:] - p[:, :-1]  # (n, F-1, 2)
    v_ok = valid[:, 1:] & valid[:, :-1]  # (n, F-1)
    v = torch.where(v_ok[..., None], v, torch.zeros_like(v))
    flip = (v[:, :-1] * v[:, 1:] < 0) & (v_ok[:, :-1] & v_ok[:, 1:])[..., None]  # (n, F-2, 2)
    any_flip = flip.any(-1)  # (n, F-2)
    pad = torch.zeros(n, 1, dtype=torch.bool, device=p.device)
    near_flip = torch.cat([pad, any_flip], 1) | torch.cat([any_flip, pad], 1)  # (n, F-1): flip at s-1 or s
    clean = v_ok & ~near_flip  # (n, F-1)
    clean[:, 0] = False  # the first and last steps may hold a bounce whose flip lies outside the video
    clean[:, -1] = False

    speed = v.norm(dim=-1)  # (n, F-1)
    n_clean = clean.sum(1)  # (n,)
    mean_speed = (speed * clean).sum(1) / n_clean.clamp_min(1)  # (n,)
    dev = (speed - mean_speed[:, None]).abs() / mean_speed.clamp_min(1e-12)[:, None]
    out["clean_steps"] += n_clean.sum()
    out["speed_sum"] += (speed * clean).sum()
    out["speed_dev_sum"] += (dev * clean).sum()

    # reflections: flip at k (between steps k and k+1), v_in = v_{k-1}, v_out = v_{k+2}, for 1 <= k <= F-4
    if F >= 5:
        k = torch.arange(1, F - 3, device=p.device)  # flip indices with both neighbours' neighbours present
        events = flip[:, k]  # (n, K, 2)
        window = flip[:, k - 1] | flip[:, k] | flip[:, k + 1]  # (n, K, 2): coordinates reflected near k
        v_in, v_out = v[:, k - 1], v[:, k + 2]  # (n, K, 2)
        evaluable = (clean[:, k - 1] & clean[:, k + 2])[..., None] & events  # (n, K, 2): free flight in and out
        expected = torch.where(window, -v_in, v_in)  # R v_in
        cos = (expected * v_out).sum(-1) / (expected.norm(dim=-1) * v_out.norm(dim=-1)).clamp_min(1e-12)
        angle_ok = torch.rad2deg(torch.acos(cos.clamp(-1, 1))) <= angle_tol_deg  # (n, K)
        wall = torch.where(v_in > 0, torch.full_like(v_in, hi), torch.full_like(v_in, lo))  # (n, K, 2)
        at_wall = (p[:, k + 1] - wall).abs() <= v_in.norm(dim=-1, keepdim=True) + wall_tol  # (n, K, 2)
        ok = evaluable & angle_ok[..., None] & at_wall
        out["bounces"] += evaluable.sum()
        out["bounces_ok"] += ok.sum()
    return out


def physics_summary(sums: dict[str, Tensor | float]) -> dict[str, float]:
    """The reported values from (all-reduced) ``physics_sums``:

    speed_error (mean relative deviation from the video's speed, clean steps), mean_speed (pixels per frame),
    reflection_ok (share of bounces obeying the law of reflection at a wall; NaN without bounces),
    bounces_per_video, out_of_box (mean over frames, pixels), out_of_box_max (pixels), lost_frames (share)."""
    s = {k: float(v) for k, v in sums.items()}
    nan = float("nan")
    return {
        "speed_error": s["speed_dev_sum"] / s["clean_steps"] if s["clean_steps"] else nan,
        "mean_speed": s["speed_sum"] / s["clean_steps"] if s["clean_steps"] else nan,
        "reflection_ok": s["bounces_ok"] / s["bounces"] if s["bounces"] else nan,
        "bounces_per_video": s["bounces"] / s["videos"] if s["videos"] else nan,
        "out_of_box": s["excursion_sum"] / s["frames"] if s["frames"] else nan,
        "out_of_box_max": s["excursion_max"],
        "lost_frames": s["lost_frames"] / (s["frames"] + s["lost_frames"]) if s["videos"] else nan,
    }


def merge_sums(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
    """Sums of two sets of videos (``excursion_max``: the max)."""
    return {k: torch.maximum(a[k], b[k]) if k == "excursion_max" else a[k] + b[k] for k in SUM_KEYS}


def video_physics(
    frames: Tensor,
    size: float,
    radius: float,
    threshold: float = 0.25,
    angle_tol_deg: float = 15.0,
    wall_tol: float = 1.0,
) -> dict[str, float]:
    """Track videos (n, F, H, W) and summarise their physics in one call (``physics_summary``)."""
    positions, _ = track_centroids(frames, threshold)
    return physics_summary(physics_sums(positions, size, radius, angle_tol_deg, wall_tol))
