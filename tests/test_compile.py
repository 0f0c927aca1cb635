"""model.compile: the network compiled in place (torch.compile, inductor) trains like the eager one, keeps its
parameter names, EMA and checkpoint keys, and its checkpoints load into a non-compiled module."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
from diffusion_theory.diffusion.schedules import LinearAlphaSchedule, LinearBetaSchedule
from diffusion_theory.models.compile import compile_options
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT
from diffusion_theory.networks.theory_transformer import OneLayerTransformer


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def theory_module(compile) -> DiffusionModule:
    """Paper 1 (MTGM) eq. (1) network, d = 8, T = 10, moved off its W = 0 init so attention is not uniform."""
    net = OneLayerTransformer(d=8, T=10, init_seed=0)
    with torch.no_grad():
        net.W.copy_(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
    return DiffusionModule(net, LinearAlphaSchedule(T=10), ema_decay=0.9, compile=compile)


def dit_module(compile) -> DiffusionModule:
    """A tiny DiT (paper 2, Appendix F token layout) on (N, d) = (6, 2) sequences."""
    torch.manual_seed(0)
    net = DiT(input_shape=(6, 2), hidden_size=16, depth=2, num_heads=2, pos_embed_mode="concat", pos_dim=8)
    return DiffusionModule(net, LinearBetaSchedule(T=20), ema_decay=0.9, compile=compile)


def is_compiled(network: torch.nn.Module) -> bool:
    return getattr(network, "_compiled_call_impl", None) is not None


@pytest.mark.parametrize(
    "make, shape", [(theory_module, (4, 16, 8)), (dit_module, (4, 6, 2))], ids=["theory_transformer", "dit"]
)
def test_compiled_training_matches_eager_and_keeps_names(make, shape):
    eager, compiled = make(False), make(True)
    assert is_compiled(compiled.network) and not is_compiled(eager.network)
    assert not is_compiled(compiled.ema.module)  # the EMA copy is taken before compiling and runs eagerly
    assert list(compiled.state_dict()) == list(eager.state_dict())  # same keys, same order (EMA included)
    assert [n for n, _ in compiled.network.named_parameters()] == [n for n, _ in eager.network.named_parameters()]
    optimizers = [torch.optim.Adam(m.network.parameters(), lr=1e-2) for m in (eager, compiled)]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x0 = torch.randn(shape, generator=g)
        t = eager.schedule.sample_times(shape[0], generator=g)
        noise = torch.randn(shape, generator=g)
        losses = []
        for module, opt in zip((eager, compiled), optimizers):
            loss = module.diffusion_loss(x0, t, noise)[0].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            module.ema.update(module.network)  # what DiffusionModule.optimizer_step does after each step
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    assert losses[0] > 0
    for (name, p), q in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(q, p, rtol=1e-4, atol=1e-5), name
    # the EMA (compared above with the eager run's) moved away from the initial weights in 3 updates
    init, ema = make(False).network.state_dict(), compiled.ema.module.state_dict()
    trainable = [n for n, p in compiled.network.named_parameters() if p.requires_grad]
    assert any(not torch.allclose(ema[n], init[n]) for n in trainable)
    # the compiled module's weights load, strictly, into a non-compiled one and give the same predictions
    plain = make(False)
    plain.load_state_dict(compiled.state_dict(), strict=True)
    x_t, t = torch.randn(shape, generator=g), eager.schedule.sample_times(shape[0], generator=g)
    with torch.no_grad():
        torch.testing.assert_close(plain.denoise(x_t, t), compiled.denoise(x_t, t), rtol=1e-5, atol=1e-6)


def test_checkpoint_of_a_compiled_run_loads_without_compiling(tmp_path):
    module = dit_module(True)
    module.configure_optimizers = lambda: torch.optim.Adam(module.network.parameters(), lr=1e-2)
    data = GaussianProcessDataModule(
        N=6, d=2, length_scale=4.0, n_train=16, batch_size=4, steps_per_epoch=2, n_eval=4, eval_batch_size=2
    )
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=data)
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert list(state) == list(dit_module(False).state_dict())  # no "_orig_mod." prefixes
    restored = DiffusionModule.load_from_checkpoint(path, compile=False)
    assert not is_compiled(restored.network) and restored.hparams.compile is False
    for key, value in restored.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert int(restored.ema.num_updates) == 2
    assert is_compiled(DiffusionModule.load_from_checkpoint(path).network)  # the run's own setting is recorded


def test_compile_option_validation():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == {} and compile_options({"mode": "max-autotune"}) == {"mode": "max-autotune"}
    with pytest.raises(ValueError, match="model.compile must be true, false or a dict"):
        compile_options("yes")
    with pytest.raises(ValueError, match=r"unknown torch.compile option\(s\) \['fullgrph'\]"):
        compile_options({"fullgrph": True})
    with pytest.raises(ValueError, match="model.compile.mode must be one of"):
        compile_options({"mode": "fastest"})
    net = OneLayerTransformer(d=4, T=3)
    with pytest.raises(ValueError, match="model.compile"):  # checked before anything is built
        DiffusionModule(net, LinearAlphaSchedule(T=3), compile={"mode": "fastest"})
    assert not is_compiled(net)


def test_missing_cxx_compiler_is_reported(monkeypatch):
    import diffusion_theory.models.compile as compile_module

    monkeypatch.setattr(compile_module, "_cxx_compiler", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        compile_options(True)
    assert compile_options({"backend": "eager"}) == {"backend": "eager"}  # only inductor builds C++


def test_compiled_dit_is_one_graph_and_still_checks_labels():
    net = DiT(input_shape=(6, 2), hidden_size=16, depth=1, num_heads=2, num_classes=3, pos_dim=8)
    torch.manual_seed(0)
    with torch.no_grad():  # away from the adaLN-Zero init, whose output is exactly 0
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t, y = torch.randn(2, 6, 2), torch.rand(2) * 1000, torch.tensor([0, 2])
    assert torch._dynamo.explain(net)(x, t, y).graph_break_count == 0
    eager_out = net(x, t, y)
    net.compile()
    torch.testing.assert_close(net(x, t, y), eager_out, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match=r"labels y must lie in \[0, num_classes\) = \[0, 3\)"):
        net(x, t, torch.tensor([0, 3]))  # the null class index is not a label
