"""Diffusion transformer (DiT, Peebles & Xie 2023) for sequences of frames and for images.

Follows facebookresearch/DiT ``models.py``: adaLN-Zero blocks, a sinusoidal timestep embedding
followed by an MLP, optional class conditioning with a null class for classifier-free guidance,
and zero-initialised modulation / output layers so that the network outputs exactly 0 at init.

Class conditioning is never implicit: a class-conditional DiT (num_classes > 0) called without labels
raises, unless the null class is asked for (``drop_labels=True``, or a (B,) mask of the rows to drop).
Label dropout for classifier-free guidance training is drawn by the trainer
(``DiffusionModule.label_dropout``, from its checkpointed generator) and passed as that mask; the
network itself never draws random numbers.

Additions for paper 2 (Sec. 6.1, Appendix F):

* input adapters: a sequence x of shape (B, N, d) becomes N tokens, one per time index, by a
  linear projection of each frame ("each time step being a patch"); an image (B, C, H, W)
  becomes (H/p)(W/p) tokens of p x p patches (DiT's patchify);
* position (time-index) embedding ``add`` (DiT's fixed sin-cos table added to the tokens) or
  ``concat``: token y_i = [z_i; e_i] with z_i the projected frame (hidden_size - pos_dim) and e_i
  the index embedding (pos_dim), as in Appendix F (16 + 16 = 32), so that every Q / K / V weight
  splits into a frame block (columns [0, hidden_size - pos_dim)) and an embedding block
  (columns [hidden_size - pos_dim, hidden_size));
* attention recording: with ``model.record_attention(True)`` (or ``with model.recording_attention():``)
  each block also stores its per-head Q y_i, K y_j, the UNSCALED score matrix
  S = (Q Y)^T (K Y), S_ij = <q_i, k_j> (paper 2 (GP) eq. (1)), and the probabilities
  softmax(S / sqrt(head_dim)). Recording never changes the outputs: they come from the same attention
  kernel whether recording is on or off.

Attention kernel (``attention``): ``sdpa`` is PyTorch's fused ``scaled_dot_product_attention``;
``matmul`` is softmax(Q K^T / sqrt(hd)) V written as two batched matrix products around a softmax
(the T x T score matrix is materialised, which costs B H T^2 numbers). On this CPU the fused kernel
is slightly faster in float32 but 2.5 times slower under bfloat16 autocast at T = 256 (its bf16 path
does not use the bf16 matrix units), so ``auto`` (default) takes ``matmul`` on the CPU in bf16 / fp16
up to T = 1024 tokens and ``sdpa`` elsewhere (float32, GPUs, long sequences). Both give the same
outputs to rounding (tests/test_dit.py).

Shapes: B batch, T tokens, D = hidden_size, H heads, hd = D / H head size.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusion_theory.init_config import RecordsInitArgs

__all__ = ["DiT", "DiT_GP", "DiT_models", "build_dit"]  # the network configs name by short name: DiT

PosEmbedMode = Literal["add", "concat"]
RecordReduce = Literal["none", "mean"]
AttentionKernel = Literal["auto", "sdpa", "matmul"]
MATMUL_ATTENTION_MAX_TOKENS = 1024  # ``auto``: the largest T for which the CPU uses the matmul kernel


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation: x (B, T, D), shift / scale (B, D) -> x * (1 + scale) + shift (one fused addcmul)."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


#################################################################################
#               Embedding Layers for Timesteps and Class Labels                 #
#################################################################################


class TimestepEmbedder(nn.Module):
    """Embeds scalar timesteps into vectors: sinusoidal features followed by a 2-layer MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
        """Sinusoidal features of (possibly fractional) timesteps t (B,) -> (B, dim).

        [cos(t w_k), sin(t w_k)] with w_k = max_period^{-k / (dim/2)}, k = 0..dim/2 - 1 (GLIDE / DiT).
        """
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]  # (B, half)
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 half)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, D)
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Embeds class labels 0 .. num_classes - 1; with ``use_null_class`` an extra "null" class (index
    num_classes) exists, the unconditional input of classifier-free guidance (DiT's ``token_drop``)."""

    def __init__(self, num_classes: int, hidden_size: int, use_null_class: bool):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(use_null_class), hidden_size)
        self.num_classes = num_classes
        self.use_null_class = use_null_class

    @property
    def null_class(self) -> int:
        return self.num_classes

    def token_drop(self, labels: Tensor, drop: Tensor) -> Tensor:
        """Replace labels by the null class where the (B,) bool mask ``drop`` is True."""
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def forward(self, labels: Tensor, drop: Tensor | None = None) -> Tensor:  # (B,) -> (B, D)
        if drop is not None:
            labels = self.token_drop(labels, drop)
        return self.embedding_table(labels)


#################################################################################
#                      Sine/Cosine Position Embedding Tables                    #
#################################################################################


def sincos_1d(embed_dim: int, positions: Tensor) -> Tensor:
    """(M,) positions -> (M, embed_dim) table [sin(p w_k), cos(p w_k)], w_k = 10000^{-k/(embed_dim/2)}."""
    if embed_dim % 2:
        raise ValueError(f"dit: a sin-cos position table needs an even width; got {embed_dim}")
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0))  # (D/2,)
    out = positions.to(torch.float64)[:, None] * omega[None]  # (M, D/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()  # (M, D)


def sincos_2d(embed_dim: int, grid_h: int, grid_w: int) -> Tensor:
    """(grid_h * grid_w, embed_dim) table: half the width encodes the row, half the column (MAE / DiT)."""
    if embed_dim % 4:
        raise ValueError(f"dit: a 2-D sin-cos position table needs a width divisible by 4; got {embed_dim}")
    rows = torch.arange(grid_h).repeat_interleave(grid_w)  # (H W,) row index of each token
    cols = torch.arange(grid_w).repeat(grid_h)  # (H W,)
    return torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1)


#################################################################################
#                                Input Adapters                                 #
#################################################################################


class SequenceAdapter(nn.Module):
    """x (B, N, d) <-> N tokens of width d: one token per time index (paper 2, Appendix F)."""

    def __init__(self, seq_len: int, frame_dim: int):
        super().__init__()
        self.seq_len, self.frame_dim = seq_len, frame_dim
        self.num_tokens = seq_len
        self.token_in_dim = frame_dim
        self.token_out_dim = frame_dim

    def to_tokens(self, x: Tensor) -> Tensor:  # (B, N, d) -> (B, N, d)
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.seq_len, self.frame_dim):
            raise ValueError(
                f"dit: expected sequences of shape (B, {self.seq_len}, {self.frame_dim}); got {tuple(x.shape)}"
            )
        return x

    def from_tokens(self, tokens: Tensor) -> Tensor:  # (B, N, d) -> (B, N, d)
        return tokens

    def position_table(self, width: int) -> Tensor:  # (N, width), positions 0..N-1
        return sincos_1d(width, torch.arange(self.seq_len))


class ImagePatchAdapter(nn.Module):
    """x (B, C, H, W) <-> (H/p)(W/p) tokens of width p*p*C (DiT's patchify / unpatchify).

    Token (r, c) (row-major) holds x[:, :, r p:(r+1) p, c p:(c+1) p] flattened in (p, p, C) order.
    """

    def __init__(self, in_channels: int, height: int, width: int, patch_size: int):
        super().__init__()
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"dit.patch_size must divide the image size; got patch_size={patch_size} for {height} x {width}"
            )
        self.in_channels, self.height, self.width, self.patch_size = in_channels, height, width, patch_size
        self.grid_h, self.grid_w = height // patch_size, width // patch_size
        self.num_tokens = self.grid_h * self.grid_w
        self.token_in_dim = patch_size * patch_size * in_channels
        self.token_out_dim = self.token_in_dim

    def patchify(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, T, p*p*C)
        B, C, H, W = x.shape
        p = self.patch_size
        x = x.reshape(B, C, H // p, p, W // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)  # (B, H/p, W/p, p, p, C)
        return x.reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, tokens: Tensor) -> Tensor:  # (B, T, p*p*C) -> (B, C, H, W)
        B = tokens.shape[0]
        p, c, h, w = self.patch_size, self.in_channels, self.grid_h, self.grid_w
        x = tokens.reshape(B, h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)  # (B, C, H/p, p, W/p, p)
        return x.reshape(B, c, h * p, w * p)

    def to_tokens(self, x: Tensor) -> Tensor:
        expected = (self.in_channels, self.height, self.width)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"dit: expected images of shape (B, {', '.join(map(str, expected))}); got {tuple(x.shape)}"
            )
        return self.patchify(x)

    def from_tokens(self, tokens: Tensor) -> Tensor:
        return self.unpatchify(tokens)

    def position_table(self, width: int) -> Tensor:  # (T, width)
        return sincos_2d(width, self.grid_h, self.grid_w)


#################################################################################
#                                 Core DiT Model                                #
#################################################################################


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``, with optional recording.

    Head h uses Q^h = W_q[h] (hd, D), K^h, V^h (rows h*hd:(h+1)*hd of qkv.weight's three thirds)
    and the output projection columns proj.weight[:, h*hd:(h+1)*hd]. ``attention`` picks the kernel
    (``sdpa``, ``matmul`` or ``auto``; see the module docstring); all compute softmax(q k^T / sqrt(hd)) v.
    When ``record`` is True, ``recorded`` holds (detached) after each forward:
        q, k:   (B, H, T, hd)   q_i = Q^h y_i (+ bias), k_j = K^h y_j (+ bias)
        scores: (B, H, T, T)    S_ij = <q_i, k_j>, UNSCALED (paper 2's (QY)^T KY)
        probs:  (B, H, T, T)    softmax_j(S_ij / sqrt(hd)), the attention weights actually used
    with the batch dimension averaged out when ``record_reduce == 'mean'``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attention: AttentionKernel = "auto"):
        super().__init__()
        if attention not in ("auto", "sdpa", "matmul"):
            raise ValueError(f"dit.attention must be 'auto', 'sdpa' or 'matmul'; got {attention!r}")
        self.attention = attention
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.record = False
        self.record_reduce: RecordReduce = "none"
        self.recorded: dict[str, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
        q, k, v = qkv.unbind(0)  # (B, H, T, hd) each
        if self.uses_matmul(q):
            logits = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, T, T), S / sqrt(hd)
            probs = torch.softmax(logits, dim=-1)  # (B, H, T, T)
            out = probs @ v  # (B, H, T, hd)
            if self.record:
                self._record(q, k, probs)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, hd)
            if self.record:
                self._record(q, k)
        out = out.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.proj(out)

    def uses_matmul(self, q: Tensor) -> bool:
        """Whether the matmul kernel runs for queries q (B, H, T, hd): always for ``matmul``, never for ``sdpa``;
        ``auto``: on the CPU, in bfloat16 / float16 (autocast), with T <= MATMUL_ATTENTION_MAX_TOKENS."""
        if self.attention == "auto":
            return (
                q.device.type == "cpu"
                and q.dtype in (torch.bfloat16, torch.float16)
                and q.shape[-2] <= MATMUL_ATTENTION_MAX_TOKENS
            )
        return self.attention == "matmul"

    @torch.no_grad()
    def _record(self, q: Tensor, k: Tensor, probs: Tensor | None = None) -> None:
        """Stores q, k (B, H, T, hd), the unscaled scores and probs (B, H, T, T) (the kernel's own probs if given)."""
        scores = q @ k.transpose(-2, -1)  # (B, H, T, T), unscaled
        if probs is None:
            probs = torch.softmax(scores * self.scale, dim=-1)  # (B, H, T, T)
        record = {"q": q.detach(), "k": k.detach(), "scores": scores.detach(), "probs": probs.detach()}
        if self.record_reduce == "mean":
            record = {name: value.mean(0) for name, value in record.items()}  # drop the batch dimension
        self.recorded = record

    def head_weights(self) -> dict[str, Tensor]:
        """Per-head weight matrices (detached views): q, k, v (H, hd, D); proj (H, D, hd)."""
        D = self.qkv.in_features
        w = self.qkv.weight.detach()  # (3D, D)
        q, k, v = (w[i * D : (i + 1) * D].reshape(self.num_heads, self.head_dim, D) for i in range(3))
        proj = self.proj.weight.detach().reshape(D, self.num_heads, self.head_dim).permute(1, 0, 2)  # (H, D, hd)
        return {"q": q, "k": k, "v": v, "proj": proj}


class Mlp(nn.Module):
    """Token-wise 2-layer MLP with tanh-approximated GELU (DiT's choice)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """A DiT block with adaptive layer norm zero (adaLN-Zero) conditioning.

    x <- x + gate_msa * Attn(modulate(LN(x), shift_msa, scale_msa))
    x <- x + gate_mlp * MLP(modulate(LN(x), shift_mlp, scale_mlp))
    with the six (B, D) modulation vectors a linear function of SiLU(c), zero at init.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attention: AttentionKernel = "auto",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=qkv_bias, attention=attention)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # x (B, T, D), c (B, D) -> (B, T, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = torch.addcmul(x, gate_msa.unsqueeze(1), self.attn(modulate(self.norm1(x), shift_msa, scale_msa)))
        x = torch.addcmul(x, gate_mlp.unsqueeze(1), self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated layer norm and a linear map from D to the token output width (zero at init)."""

    def __init__(self, hidden_size: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_dim, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # (B, T, D), (B, D) -> (B, T, out_dim)
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(RecordsInitArgs, nn.Module):
    """Diffusion transformer predicting the noise of its input.

    Args:
        input_shape: (N, d) for sequences of N frames in R^d (one token per frame), or
            (C, H, W) for images (patches of patch_size x patch_size).
        patch_size: image patch side p (ignored for sequences).
        hidden_size: token width D.
        depth: number of DiT blocks (paper 2: 12).
        num_heads: attention heads; must divide hidden_size.
        mlp_ratio: MLP hidden width / D.
        num_classes: 0 for an unconditional model, else the number of classes of ``y``.
        null_class: with num_classes > 0, learn an extra null-class embedding (index num_classes): the input of
            dropped labels in training (``DiffusionModule.label_dropout``) and of ``drop_labels`` /
            ``forward_with_cfg`` (DiT's class_dropout_prob > 0).
        pos_embed_mode: ``add`` (position table of width D added to the projected tokens) or
            ``concat`` (token = [z; e], z = projected token of width D - pos_dim, e = position
            embedding of width pos_dim; paper 2, Appendix F: 16 + 16).
        pos_dim: width of e in ``concat`` mode (ignored by ``add``).
        learned_pos_embed: False: the fixed sin-cos table (DiT); True: a trainable table
            initialised from the sin-cos table.
        qkv_bias: biases in the Q/K/V projection (DiT: True). Paper 2 (GP) eq. (1) has none.
        attention: the attention kernel, ``auto`` (default), ``sdpa`` or ``matmul`` (module docstring); the
            outputs agree to rounding, only the speed differs.

    ``forward(x, t, y)`` takes t as a (B,) float tensor (the schedule's ``model_time``) and
    returns a tensor of x's shape. ``condition_names`` lists the conditioning inputs (``("y",)`` for a
    class-conditional model, else empty): what ``DiffusionModule.condition_keys`` must name.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (128, 8),
        patch_size: int = 2,
        hidden_size: int = 32,
        depth: int = 12,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        null_class: bool = True,
        pos_embed_mode: PosEmbedMode = "concat",
        pos_dim: int = 16,
        learned_pos_embed: bool = False,
        qkv_bias: bool = True,
        attention: AttentionKernel = "auto",
    ):
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) not in (2, 3) or min(input_shape) < 1:
            raise ValueError(
                f"dit.input_shape must be (N, d) for sequences or (C, H, W) for images, positive; got {input_shape}"
            )
        for name, value in (("hidden_size", hidden_size), ("depth", depth), ("num_heads", num_heads)):
            if value < 1:
                raise ValueError(f"dit.{name} must be >= 1; got {value}")
        if hidden_size % num_heads:
            raise ValueError(f"dit.num_heads must divide dit.hidden_size; got {num_heads} heads for {hidden_size}")
        if not mlp_ratio > 0:
            raise ValueError(f"dit.mlp_ratio must be > 0; got {mlp_ratio}")
        if num_classes < 0:
            raise ValueError(f"dit.num_classes must be >= 0 (0 = unconditional); got {num_classes}")
        if pos_embed_mode not in ("add", "concat"):
            raise ValueError(f"dit.pos_embed_mode must be 'add' or 'concat'; got {pos_embed_mode!r}")
        if pos_embed_mode == "concat" and not 0 < pos_dim < hidden_size:
            raise ValueError(
                f"dit.pos_dim must lie in (0, hidden_size) = (0, {hidden_size}) in concat mode; got {pos_dim}"
            )
        if patch_size < 1:
            raise ValueError(f"dit.patch_size must be >= 1; got {patch_size}")
        if attention not in ("auto", "sdpa", "matmul"):
            raise ValueError(f"dit.attention must be 'auto', 'sdpa' or 'matmul'; got {attention!r}")

        self.input_shape = input_shape
        self.hidden_size, self.depth, self.num_heads = hidden_size, depth, num_heads
        self.num_classes = num_classes
        self.pos_embed_mode: PosEmbedMode = pos_embed_mode
        self.pos_dim = pos_dim if pos_embed_mode == "concat" else hidden_size

        if len(input_shape) == 2:
            self.adapter: SequenceAdapter | ImagePatchAdapter = SequenceAdapter(*input_shape)
        else:
            self.adapter = ImagePatchAdapter(*input_shape, patch_size=patch_size)
        token_embed_dim = hidden_size - pos_dim if pos_embed_mode == "concat" else hidden_size
        self.x_embedder = nn.Linear(self.adapter.token_in_dim, token_embed_dim, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, bool(null_class)) if num_classes > 0 else None
        table = self.adapter.position_table(self.pos_dim)[None]  # (1, T, pos_dim)
        self.pos_embed = nn.Parameter(table, requires_grad=learned_pos_embed)
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio, qkv_bias, attention) for _ in range(depth)]
        )
        self.final_layer = FinalLayer(hidden_size, self.adapter.token_out_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform linears with zero bias, N(0, 0.02) timestep MLP and
        label table, and zeros in every adaLN modulation and in the output linear (adaLN-Zero)."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    # ------------------------------------------------------------------ token layout
    @property
    def frame_slice(self) -> slice:
        """Coordinates of the projected frame z in each token ([0, D - pos_dim) in concat mode, all in add mode)."""
        if self.pos_embed_mode == "concat":
            return slice(0, self.hidden_size - self.pos_dim)
        return slice(0, self.hidden_size)

    @property
    def embedding_slice(self) -> slice:
        """Coordinates of the index embedding e ([D - pos_dim, D) in concat mode; empty in add mode)."""
        if self.pos_embed_mode == "concat":
            return slice(self.hidden_size - self.pos_dim, self.hidden_size)
        return slice(self.hidden_size, self.hidden_size)

    def embed_tokens(self, x: Tensor) -> Tensor:
        """Input -> the first block's tokens (B, T, D): z + pos (add) or [z; e] (concat)."""
        z = self.x_embedder(self.adapter.to_tokens(x))  # (B, T, D) or (B, T, D - pos_dim)
        pos = self.pos_embed.to(z.dtype)  # (1, T, pos_dim)
        if self.pos_embed_mode == "add":
            return z + pos
        return torch.cat([z, pos.expand(z.shape[0], -1, -1)], dim=-1)  # (B, T, D)

    # ------------------------------------------------------------------ conditioning
    @property
    def condition_names(self) -> tuple[str, ...]:
        """The conditioning inputs of ``forward``: ("y",) for a class-conditional model, else ()."""
        return ("y",) if self.y_embedder is not None else ()

    @property
    def has_null_class(self) -> bool:
        """True when dropped labels (``drop_labels``) and classifier-free guidance are available."""
        return self.y_embedder is not None and self.y_embedder.use_null_class

    def _drop_mask(self, drop_labels: bool | Tensor, batch: int, device: torch.device) -> Tensor | None:
        """``drop_labels`` as a (B,) bool mask, or None when no row is dropped."""
        if isinstance(drop_labels, Tensor):
            if drop_labels.shape != (batch,):
                raise ValueError(
                    f"dit: drop_labels must be a bool or a ({batch},) mask; got shape {tuple(drop_labels.shape)}"
                )
            mask = drop_labels.to(device=device, dtype=torch.bool)
        elif drop_labels:
            mask = torch.ones(batch, dtype=torch.bool, device=device)
        else:
            return None
        if not self.has_null_class:
            raise ValueError("dit: drop_labels needs the null class: set dit.null_class: true (and num_classes > 0)")
        return mask

    def conditioning(
        self, t: Tensor, y: Tensor | None, batch: int, device: torch.device, drop_labels: bool | Tensor = False
    ) -> Tensor:
        """c = t_embedder(t) (+ y_embedder(y)), shape (B, D).

        A class-conditional model needs labels y (B,) in [0, num_classes), unless ``drop_labels`` is True
        (every row gets the null class; y may be None) or a (B,) bool mask (those rows get the null class).
        An unconditional model takes neither.
        """
        t = torch.as_tensor(t, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        c = self.t_embedder(t)  # (B, D)
        if self.y_embedder is None:
            if y is not None or (isinstance(drop_labels, Tensor) or drop_labels):
                raise ValueError("dit: labels y / drop_labels given to an unconditional DiT (num_classes = 0)")
            return c
        drop = self._drop_mask(drop_labels, batch, device)
        if y is None:
            if drop is None or not bool(drop.all()):
                raise ValueError(
                    f"dit: this DiT is class-conditional (num_classes = {self.num_classes}): pass labels "
                    f"y of shape ({batch},), or drop_labels=True for the null class (unconditional)"
                )
            y = torch.full((batch,), self.y_embedder.null_class, device=device, dtype=torch.long)
        else:
            y = torch.as_tensor(y, device=device)
            if y.shape != (batch,) or y.is_floating_point():
                raise ValueError(f"dit: labels y must be integers of shape ({batch},); got {y.dtype} {tuple(y.shape)}")
            self._check_label_range(y)
        return c + self.y_embedder(y, drop)

    def _check_label_range(self, y: Tensor) -> None:
        """ValueError unless every label of y (B,) lies in [0, num_classes). Under torch.compile the same rule is
        an assertion inside the graph (RuntimeError, same message), so the forward pass stays one graph."""
        if torch.compiler.is_compiling():
            torch._assert_async(
                ((y >= 0) & (y < self.num_classes)).all(),
                f"dit: labels y must lie in [0, num_classes) = [0, {self.num_classes}) (the null class "
                f"is asked for by drop_labels)",
            )
            return
        if bool(((y < 0) | (y >= self.num_classes)).any()):
            raise ValueError(
                f"dit: labels y must lie in [0, num_classes) = [0, {self.num_classes}); got "
                f"{y.min().item()} .. {y.max().item()} (the null class is asked for by drop_labels)"
            )

    # ------------------------------------------------------------------ forward passes
    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, drop_labels: bool | Tensor = False) -> Tensor:
        """x: (B, N, d) or (B, C, H, W); t: (B,) or scalar float timesteps; y: (B,) int labels (class-conditional
        model); drop_labels: True or a (B,) bool mask: the null class for those rows (see ``conditioning``)."""
        h = self.embed_tokens(x)  # (B, T, D)
        c = self.conditioning(t, y, x.shape[0], x.device, drop_labels)  # (B, D)
        for block in self.blocks:
            h = block(h, c)  # (B, T, D)
        out = self.final_layer(h, c)  # (B, T, token_out_dim)
        return self.adapter.from_tokens(out)  # x's shape

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float) -> Tensor:
        """Classifier-free guidance (Ho & Salimans 2022; DiT's ``forward_with_cfg``), one batched pass of 2B:

            eps = eps(x, t, null) + cfg_scale (eps(x, t, y) - eps(x, t, null))

        cfg_scale = 1 is the conditional prediction (up to rounding), 0 the unconditional one."""
        if not self.has_null_class:
            raise ValueError("dit: forward_with_cfg needs num_classes > 0 and dit.null_class: true (a null class)")
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(B) if t.dim() == 0 else t
        y = torch.as_tensor(y, device=x.device)
        drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(x.device)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, y]), drop_labels=drop)  # (2B, ...)
        cond, uncond = out[:B], out[B:]
        return uncond + cfg_scale * (cond - uncond)

    # ------------------------------------------------------------------ attention diagnostics
    def attention_modules(self) -> list[Attention]:
        return [block.attn for block in self.blocks]

    def record_attention(self, enabled: bool = True, reduce: RecordReduce = "none") -> None:
        """Switch recording of Q, K, scores and probabilities on or off in every block (off clears them)."""
        if reduce not in ("none", "mean"):
            raise ValueError(f"dit: record_attention reduce must be 'none' or 'mean'; got {reduce!r}")
        for attn in self.attention_modules():
            attn.record = enabled
            attn.record_reduce = reduce
            if not enabled:
                attn.recorded = None

    @contextlib.contextmanager
    def recording_attention(self, reduce: RecordReduce = "none") -> Iterator[DiT]:
        """``with model.recording_attention(): model(x, t)``; then read ``model.attention_records()``
        inside the block (recording is switched off and cleared on exit)."""
        self.record_attention(True, reduce)
        try:
            yield self
        finally:
            self.record_attention(False)

    def attention_records(self) -> list[dict[str, Tensor]]:
        """Per layer, the last recorded {q, k, scores, probs} (see ``Attention``)."""
        records = [attn.recorded for attn in self.attention_modules()]
        if any(r is None for r in records):
            raise RuntimeError("dit: no attention recorded; call model.record_attention(True) and run a forward pass")
        return records  # type: ignore[return-value]

    @torch.no_grad()
    def attention_logits(
        self, x: Tensor, t: Tensor, y: Tensor | None = None, layer: int = -1, drop_labels: bool | Tensor = False
    ) -> Tensor:
        """Pre-softmax logits S / sqrt(hd) of one layer, averaged over heads: (B, T, T), query rows.

        Runs one extra forward pass with recording on (``protocols.ExposesAttention``); t is the
        model time, as for ``forward``.
        """
        with self.recording_attention():
            self.forward(x, t, y, drop_labels)
            record = self.attention_records()[layer]
            return record["scores"].mean(1) * self.blocks[layer].attn.scale

    def attention_weights(self) -> dict[str, Tensor]:
        """Per-layer, per-head weights stacked over layers: q, k, v (L, H, hd, D); proj (L, H, D, hd).

        Columns follow the token layout: ``frame_slice`` acts on z, ``embedding_slice`` on e.
        """
        per_layer = [attn.head_weights() for attn in self.attention_modules()]
        return {name: torch.stack([w[name] for w in per_layer]) for name in ("q", "k", "v", "proj")}


#################################################################################
#                                 DiT Configs                                   #
#################################################################################

# name -> (depth, hidden_size, num_heads). DiT-S/B/L/XL are Peebles & Xie's; DiT-GP is paper 2's
# Gaussian-process model (12 blocks, 32 = 16 + 16 wide tokens, Appendix F); its head count is
# not reported in the paper, 4 heads of width 8 is our choice.
DIT_SIZES: dict[str, tuple[int, int, int]] = {
    "DiT-GP": (12, 32, 4),
    "DiT-S": (12, 384, 6),
    "DiT-B": (12, 768, 12),
    "DiT-L": (24, 1024, 16),
    "DiT-XL": (28, 1152, 16),
}


def _size_config(name: str) -> dict:
    depth, hidden, heads = DIT_SIZES[name]
    return dict(depth=depth, hidden_size=hidden, num_heads=heads)


def DiT_GP(**kwargs) -> DiT:
    """Paper 2's DiT for (N, d) sequences: 12 blocks, tokens [z; e] with 16 + 16 coordinates.
    Keyword arguments override any of these."""
    config = _size_config("DiT-GP") | dict(pos_embed_mode="concat", pos_dim=16)
    return DiT(**(config | kwargs))


def build_dit(name: str, **kwargs) -> DiT:
    """A DiT from a registry name: ``DiT-GP``, ``DiT-S``, ``DiT-B``, ``DiT-L``, ``DiT-XL``, optionally with
    an image patch size as in DiT (``DiT-S/2``, ``DiT-XL/8``). Other arguments go to ``DiT``
    and override the named size (e.g. ``depth=4``)."""
    base, _, patch = name.partition("/")
    if base not in DIT_SIZES:
        raise ValueError(f"dit: unknown model name {name!r}; known sizes: {', '.join(DIT_SIZES)} (optionally '/p')")
    if patch:
        if not patch.isdigit():
            raise ValueError(f"dit: the patch size after '/' must be an integer; got {name!r}")
        kwargs["patch_size"] = int(patch)
    if base == "DiT-GP":
        return DiT_GP(**kwargs)
    return DiT(**(_size_config(base) | dict(pos_embed_mode="add") | kwargs))


def _named_factory(name: str):
    def factory(**kwargs) -> DiT:
        return build_dit(name, **kwargs)

    factory.__name__ = name.replace("-", "_").replace("/", "_")
    return factory


# DiT's registry style: name -> factory(**kwargs).
DiT_models = {
    name: _named_factory(name)
    for name in ["DiT-GP"]
    + [f"{size}{patch}" for size in ("DiT-S", "DiT-B", "DiT-L", "DiT-XL") for patch in ("", "/2", "/4", "/8")]
}
