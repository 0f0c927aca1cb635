"""DiT: adaLN-Zero init, adapters, concat token layout, attention recording, class conditioning."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffusion_theory.metrics.attention import qk_block_norms, score_kernel_similarity, value_emphasis
from diffusion_theory.networks.dit import DiT, DiT_models, ImagePatchAdapter, build_dit, sincos_1d


def small_sequence_dit(**kwargs) -> DiT:
    base = dict(input_shape=(16, 3), hidden_size=32, depth=2, num_heads=4, pos_embed_mode="concat", pos_dim=8)
    base.update(kwargs)
    return DiT(**base)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Move the weights away from the zero init so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize(
    "kwargs, x_shape",
    [
        (dict(input_shape=(16, 3)), (5, 16, 3)),
        (dict(input_shape=(16, 3), pos_embed_mode="add"), (5, 16, 3)),
        (dict(input_shape=(3, 8, 8), patch_size=2, pos_embed_mode="add"), (5, 3, 8, 8)),
        (dict(input_shape=(3, 8, 8), patch_size=4, num_classes=10), (5, 3, 8, 8)),
    ],
)
def test_output_is_exactly_zero_at_init(kwargs, x_shape):
    model = small_sequence_dit(**kwargs)
    x = torch.randn(x_shape)
    y = torch.randint(0, 10, (5,)) if kwargs.get("num_classes") else None
    out = model(x, torch.rand(5) * 1000, y)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))


def test_patchify_unpatchify_round_trip_and_patch_contents():
    adapter = ImagePatchAdapter(in_channels=3, height=8, width=12, patch_size=4)
    x = torch.randn(2, 3, 8, 12)
    tokens = adapter.patchify(x)
    assert tokens.shape == (2, 6, 48)
    assert torch.equal(adapter.unpatchify(tokens), x)
    # token (r, c) = 1 (second row), 2 (third column) holds the (p, p, C)-ordered pixels of that patch
    r, c = 1, 2
    patch = x[:, :, 4 * r : 4 * (r + 1), 4 * c : 4 * (c + 1)]  # (B, C, p, p)
    assert torch.equal(tokens[:, r * 3 + c], patch.permute(0, 2, 3, 1).reshape(2, -1))


def test_recording_does_not_change_outputs_and_matches_sdpa():
    model = small_sequence_dit()
    randomize(model)
    x, t = torch.randn(3, 16, 3), torch.rand(3) * 1000
    plain = model(x, t)
    with model.recording_attention():
        recorded_out = model(x, t)
        records = model.attention_records()
    assert torch.equal(plain, recorded_out)
    assert len(records) == 2 and all(a.recorded is None for a in model.attention_modules())  # cleared on exit
    attn = model.blocks[0].attn
    rec = records[0]
    B, H, T, hd = rec["q"].shape
    assert (B, H, T, hd) == (3, 4, 16, 8) and rec["scores"].shape == (3, 4, 16, 16)
    assert torch.allclose(rec["scores"], rec["q"] @ rec["k"].transpose(-2, -1))  # unscaled (QY)^T KY
    assert torch.allclose(rec["probs"], torch.softmax(rec["scores"] / math.sqrt(hd), dim=-1), atol=1e-6)
    # the recorded probabilities reproduce the fused attention output of the first block
    h0 = model.embed_tokens(x)
    c = model.conditioning(t, None, 3, x.device)
    shift, scale = model.blocks[0].adaLN_modulation(c).chunk(6, dim=1)[:2]
    y = model.blocks[0].norm1(h0) * (1 + scale[:, None]) + shift[:, None]
    v = attn.qkv(y).reshape(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)[2]  # (B, H, T, hd)
    q, k = rec["q"], rec["k"]
    assert torch.allclose(rec["probs"] @ v, F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    # the Q rows returned by head_weights are the ones used: q = Q^h y + b
    W = attn.head_weights()
    q_manual = y @ W["q"][1].T + attn.qkv.bias[8:16]
    assert torch.allclose(q[:, 1], q_manual, atol=1e-5)


def test_attention_logits_protocol():
    from diffusion_theory.protocols import ExposesAttention

    model = small_sequence_dit()
    randomize(model)
    assert isinstance(model, ExposesAttention)
    x, t = torch.randn(3, 16, 3), torch.rand(3) * 1000
    logits = model.attention_logits(x, t, layer=1)
    with model.recording_attention():
        model(x, t)
        probs = model.attention_records()[1]["probs"]  # (B, H, T, T)
    assert logits.shape == (3, 16, 16) and all(a.record is False for a in model.attention_modules())
    # head-averaged logits; per head, softmax of the logits is the recorded probability
    scores = probs.log()  # = logits_h - logsumexp_h per row
    assert torch.allclose(
        (scores - scores.mean(-1, keepdim=True)).mean(1), logits - logits.mean(-1, keepdim=True), atol=1e-4
    )


def test_recording_can_average_over_the_batch():
    model = small_sequence_dit()
    randomize(model)
    x, t = torch.randn(4, 16, 3), torch.rand(4) * 1000
    with model.recording_attention():
        model(x, t)
        full = [r["scores"].clone() for r in model.attention_records()]
    model.record_attention(True, reduce="mean")
    model(x, t)
    mean = model.attention_records()
    model.record_attention(False)
    assert mean[1]["scores"].shape == (4, 16, 16)
    assert torch.allclose(mean[1]["scores"], full[1].mean(0), atol=1e-5)
    with pytest.raises(RuntimeError, match="record_attention"):
        model.attention_records()


def test_concat_token_layout():
    model = small_sequence_dit(learned_pos_embed=False)
    randomize(model)
    x = torch.randn(2, 16, 3)
    tokens = model.embed_tokens(x)  # (B, T, D)
    assert tokens.shape == (2, 16, 32)
    assert model.frame_slice == slice(0, 24) and model.embedding_slice == slice(24, 32)
    # z = linear projection of each frame; e = fixed sin-cos index embedding, identical across the batch
    assert torch.allclose(tokens[..., :24], model.x_embedder(x))
    assert torch.allclose(tokens[0, :, 24:], sincos_1d(8, torch.arange(16)))
    assert torch.equal(tokens[0, :, 24:], tokens[1, :, 24:])
    assert not model.pos_embed.requires_grad
    assert small_sequence_dit(learned_pos_embed=True).pos_embed.requires_grad
    # add mode: tokens = projection + table
    add = small_sequence_dit(pos_embed_mode="add")
    assert torch.allclose(add.embed_tokens(x), add.x_embedder(x) + sincos_1d(32, torch.arange(16)))


def test_qk_block_norms_and_value_emphasis_from_the_model_weights():
    model = small_sequence_dit()
    randomize(model)
    w = model.attention_weights()
    assert w["q"].shape == (2, 4, 8, 32) and w["proj"].shape == (2, 4, 32, 8)
    norms = qk_block_norms(w["q"], w["k"], model.frame_slice, model.embedding_slice)
    assert norms.embed_embed.shape == (2, 4)
    # brute force for layer 1, head 3
    Q, K = w["q"][1, 3].double(), w["k"][1, 3].double()
    M = Q.T @ K
    assert norms.embed_embed[1, 3].item() == pytest.approx(M[24:, 24:].norm().item(), rel=1e-10)
    assert norms.frame_embed[1, 3].item() == pytest.approx(M[:24, 24:].norm().item(), rel=1e-10)
    blocks = norms.as_matrix()[1, 3] ** 2
    assert blocks.sum().item() == pytest.approx((M**2).sum().item(), rel=1e-10)
    ve = value_emphasis(w["v"], model.frame_slice, model.embedding_slice)
    assert ve.frame[0, 2].item() == pytest.approx(w["v"][0, 2, :, :24].double().norm().item(), rel=1e-10)
    # a V that ignores e has frame_share 1
    v_frame_only = w["v"].clone()
    v_frame_only[..., 24:] = 0
    assert torch.allclose(
        value_emphasis(v_frame_only, model.frame_slice, model.embedding_slice).frame_share,
        torch.ones(2, 4, dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="concat"):
        qk_block_norms(w["q"], w["k"], slice(0, 32), slice(32, 32))


def test_score_kernel_similarity():
    h = torch.arange(12.0)
    gamma = torch.exp(-((h[:, None] - h[None]) ** 2) / 16)
    scores = torch.stack([3 * gamma - 1, torch.randn(12, 12, generator=torch.Generator().manual_seed(0))])
    sim = score_kernel_similarity(scores, gamma)
    assert sim[0].item() == pytest.approx(1.0) and abs(sim[1].item()) < 0.3
    assert score_kernel_similarity(-gamma, gamma, exclude_diagonal=True).item() == pytest.approx(-1.0)


def test_class_conditioning_null_class_and_cfg():
    model = small_sequence_dit(num_classes=5, null_class=True)
    randomize(model)
    x, t = torch.randn(6, 16, 3), torch.rand(6) * 1000
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    model.train()  # no random label dropout inside the network, in either mode
    out_y = model(x, t, y)
    assert out_y.shape == x.shape and torch.equal(out_y, model(x, t, y))
    model.eval()
    assert torch.equal(out_y, model(x, t, y))
    assert not torch.allclose(out_y, model(x, t, (y + 1) % 5))  # labels matter
    # no labels is an error, never a silent null class; the null class is asked for explicitly
    with pytest.raises(ValueError, match="class-conditional"):
        model(x, t)
    with pytest.raises(ValueError, match=r"\[0, num_classes\)"):
        model(x, t, torch.full_like(y, 5))  # the null index itself is not a label
    null_embedding = model.y_embedder.embedding_table.weight[5]
    uncond = model(x, t, drop_labels=True)
    c_null = model.t_embedder(t) + null_embedding  # the conditioning vector of the null class, by hand
    assert torch.allclose(model.conditioning(t, None, 6, x.device, drop_labels=True), c_null)
    # a mask drops exactly those rows: each row equals the all-null or the labelled prediction
    mask = torch.tensor([True, False, True, False, False, False])
    mixed = model(x, t, y, drop_labels=mask)
    assert torch.allclose(mixed[mask], uncond[mask], atol=1e-6) and torch.allclose(
        mixed[~mask], out_y[~mask], atol=1e-6
    )
    # CFG: uncond + s (cond - uncond); s = 1 is the conditional output, s = 0 the unconditional one
    cfg = model.forward_with_cfg(x, t, y, cfg_scale=3.0)
    assert torch.allclose(cfg, uncond + 3.0 * (out_y - uncond), atol=1e-5)
    assert torch.allclose(model.forward_with_cfg(x, t, y, 1.0), out_y, atol=1e-5)
    assert torch.allclose(model.forward_with_cfg(x, t, y, 0.0), uncond, atol=1e-5)
    no_null = small_sequence_dit(num_classes=5, null_class=False)
    assert no_null.y_embedder.embedding_table.num_embeddings == 5 and not no_null.has_null_class
    with pytest.raises(ValueError, match="null_class"):
        no_null.forward_with_cfg(x, t, y, 2.0)
    with pytest.raises(ValueError, match="null_class"):
        no_null(x, t, drop_labels=True)
    unconditional = small_sequence_dit()
    assert unconditional.condition_names == () and model.condition_names == ("y",)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(x, t, y)


def test_forward_backward_trains_every_parameter_group():
    model = small_sequence_dit(num_classes=3)
    x, t, y = torch.randn(4, 16, 3), torch.rand(4) * 1000, torch.tensor([0, 1, 2, 0])
    eps = torch.randn_like(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = F.mse_loss(model(x, t, y), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # adaLN-Zero: at the zero init only the output linear gets a gradient; a few steps later every block does
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.x_embedder.weight.grad.abs().sum() > 0


def test_registry_and_validation():
    gp_model = DiT_models["DiT-GP"](input_shape=(128, 8))
    assert (gp_model.depth, gp_model.hidden_size, gp_model.pos_embed_mode, gp_model.pos_dim) == (12, 32, "concat", 16)
    image_model = build_dit("DiT-S/4", input_shape=(3, 16, 16), depth=1)
    assert image_model.adapter.patch_size == 4 and image_model.hidden_size == 384
    assert {"DiT-XL/2", "DiT-B/8", "DiT-L"} <= set(DiT_models)
    with pytest.raises(ValueError, match="num_heads"):
        DiT(hidden_size=32, num_heads=5)
    with pytest.raises(ValueError, match="pos_dim"):
        DiT(hidden_size=32, pos_embed_mode="concat", pos_dim=32)
    with pytest.raises(ValueError, match="patch_size"):
        DiT(input_shape=(3, 10, 10), patch_size=4)
    with pytest.raises(ValueError, match="input_shape"):
        DiT(input_shape=(8,))
    with pytest.raises(ValueError, match="unknown model name"):
        build_dit("DiT-XXL")
    with pytest.raises(ValueError, match=r"\(B, 16, 3\)"):
        small_sequence_dit()(torch.randn(2, 15, 3), torch.rand(2))


@pytest.mark.parametrize(
    "x_shape, kwargs",
    [((3, 16, 3), {}), ((2, 3, 8, 8), {"input_shape": (3, 8, 8), "patch_size": 2, "pos_embed_mode": "add"})],
)
def test_attention_kernels_agree_in_outputs_gradients_and_records(x_shape, kwargs):
    """softmax(q k^T / sqrt(hd)) v through the matmul kernel equals the fused scaled_dot_product_attention
    (float32: to rounding; bf16 autocast: to bf16 precision), gradients included; recording works for both."""
    nets = {}
    for kernel in ("sdpa", "matmul", "auto"):
        nets[kernel] = small_sequence_dit(attention=kernel, **kwargs)
        randomize(nets[kernel])
    x, t = torch.randn(x_shape), torch.rand(x_shape[0]) * 1000
    auto = nets["auto"].blocks[0].attn
    assert auto.uses_matmul(torch.zeros(1, 4, 16, 8, dtype=torch.bfloat16))  # CPU, bf16, short sequence
    assert not auto.uses_matmul(torch.zeros(1, 4, 16, 8))  # float32: the fused kernel
    assert not auto.uses_matmul(torch.zeros(1, 4, 1025, 8, dtype=torch.bfloat16))
    assert not nets["sdpa"].blocks[0].attn.uses_matmul(torch.zeros(1, 4, 16, 8, dtype=torch.bfloat16))
    assert nets["matmul"].blocks[0].attn.uses_matmul(torch.zeros(1, 4, 16, 8))
    outs, grads = {}, {}
    for kernel, net in nets.items():
        out = net(x, t)
        out.pow(2).sum().backward()
        outs[kernel], grads[kernel] = out.detach(), net.blocks[0].attn.qkv.weight.grad.clone()
    for kernel in ("matmul", "auto"):
        torch.testing.assert_close(outs[kernel], outs["sdpa"], rtol=1e-5, atol=1e-5)
        # float32 rounding relative to the gradient's scale (entries near zero carry the others' rounding)
        assert (grads[kernel] - grads["sdpa"]).abs().max() <= 1e-5 * grads["sdpa"].abs().max()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = {kernel: nets[kernel](x, t).float() for kernel in ("sdpa", "matmul", "auto")}
    scale = outs["sdpa"].abs().max()
    assert (low["matmul"] - outs["sdpa"]).abs().max() < 0.05 * scale  # bf16 has 8 significant bits
    assert (low["matmul"] - low["sdpa"]).abs().max() < 0.05 * scale
    assert torch.equal(low["auto"], low["matmul"])  # auto runs the matmul kernel under bf16 autocast
    records = {}
    for kernel in ("sdpa", "matmul"):
        with nets[kernel].recording_attention():
            assert torch.equal(nets[kernel](x, t), outs[kernel])
            records[kernel] = nets[kernel].attention_records()[1]
    for name in ("q", "k", "scores", "probs"):  # layer 1: its inputs carry layer 0's float32 rounding
        difference = (records["matmul"][name] - records["sdpa"][name]).abs().max()
        assert difference <= 1e-5 * records["sdpa"][name].abs().max(), name
    with pytest.raises(ValueError, match="dit.attention"):
        small_sequence_dit(attention="flash")
