"""DiffusionModule conditioning (condition_keys, denoise, label dropout) and checkpoints that rebuild their model."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.schedules import LinearAlphaSchedule, LinearBetaSchedule
from diffusion_theory.init_config import init_config
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT
from diffusion_theory.networks.theory_transformer import OneLayerTransformer


def conditional_dit(**kwargs) -> DiT:
    torch.manual_seed(0)
    net = DiT(
        input_shape=(4, 2),
        hidden_size=16,
        depth=1,
        num_heads=2,
        pos_embed_mode="concat",
        pos_dim=8,
        num_classes=3,
        **kwargs,
    )
    with torch.no_grad():  # away from the adaLN-Zero init, so outputs depend on the inputs
        for p in net.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.2)
    return net


def batch(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "x0": torch.randn(n, 4, 2, generator=g),
        "y": torch.randint(0, 3, (n,), generator=g),
        "index": torch.arange(n),
    }


def test_conditioning_is_checked_at_construction_and_in_every_call():
    with pytest.raises(ValueError, match=r"model.condition_keys.*\['y'\]"):
        DiffusionModule(conditional_dit(), ContinuousVPSchedule())  # a conditional network needs its labels named
    with pytest.raises(ValueError, match="model.condition_keys"):
        DiffusionModule(
            DiT(input_shape=(4, 2), hidden_size=16, depth=1, num_heads=2, pos_dim=8),
            ContinuousVPSchedule(),
            condition_keys=["y"],
        )  # ... and an unconditional one takes none
    with pytest.raises(ValueError, match="model.label_dropout"):
        DiffusionModule(
            conditional_dit(null_class=False), ContinuousVPSchedule(), condition_keys=["y"], label_dropout=0.1
        )
    with pytest.raises(ValueError, match="model.label_dropout"):
        DiffusionModule(conditional_dit(), ContinuousVPSchedule(), condition_keys=["y"], label_dropout=1.0)
    module = DiffusionModule(conditional_dit(), ContinuousVPSchedule(), condition_keys=["y"]).eval()
    b = batch()
    x, t = b["x0"], torch.full((6,), 0.5)
    with pytest.raises(ValueError, match="drop_labels=True"):
        module.denoise(x, t)  # no labels: an error, never a silent null class
    with pytest.raises(ValueError, match="not among model.condition_keys"):
        module.denoise(x, t, {"y": b["y"], "z": b["y"]})
    with pytest.raises(ValueError, match=r"batch has no entry \['y'\]"):
        module.training_step({"x0": x, "index": b["index"]}, 0)
    net = module.inference_network
    model_time = module.schedule.model_time(t)
    assert torch.equal(module.denoise(x, t, {"y": b["y"]}), net(x, model_time, b["y"]))
    assert torch.equal(module.denoise(x, t, None, drop_labels=True), net(x, model_time, drop_labels=True))
    guided = module.denoise(x, t, {"y": b["y"]}, guidance_scale=2.5)
    cond, null = net(x, model_time, b["y"]), net(x, model_time, drop_labels=True)
    assert torch.allclose(guided, null + 2.5 * (cond - null), atol=1e-5)
    # validation passes the labels of every evaluation sample at every time
    out = module.validation_step(b, 0)
    assert torch.equal(out["eps_hat"], net(out["x_t"], module.schedule.model_time(out["t"]), out["y"]))
    with pytest.raises(ValueError, match="guidance_scale needs a conditional model"):
        unconditional = DiffusionModule(
            DiT(input_shape=(4, 2), hidden_size=16, depth=1, num_heads=2, pos_dim=8), ContinuousVPSchedule()
        )
        unconditional.denoise(x, t, guidance_scale=2.0)


def test_label_dropout_is_drawn_from_the_checkpointed_generator():
    def masks(module: DiffusionModule, steps: int) -> list[torch.Tensor]:
        seen = []
        hook = module.network.register_forward_pre_hook(
            lambda m, args, kwargs: seen.append(kwargs["drop_labels"].clone()), with_kwargs=True
        )
        for _ in range(steps):
            module.training_step(batch(2000), 0)
        hook.remove()
        return seen

    def fresh() -> DiffusionModule:
        return DiffusionModule(conditional_dit(), ContinuousVPSchedule(), condition_keys=["y"], label_dropout=0.25)

    first = masks(fresh(), 2)
    again = fresh()
    assert all(torch.equal(a, b) for a, b in zip(first, masks(again, 2)))  # reproducible from noise_seed
    rate = torch.stack(first).float().mean().item()
    assert abs(rate - 0.25) < 4 * (0.25 * 0.75 / 4000) ** 0.5 and not torch.equal(first[0], first[1])
    # the generator's state travels in the checkpoint: a restored module continues the same stream
    state = {}
    again.trainer = pl.Trainer(logger=False, accelerator="cpu", enable_checkpointing=False)
    again.on_save_checkpoint(state)  # after 2 steps
    again.trainer = None
    continued = masks(again, 1)[0]
    restored = fresh()
    restored.on_load_checkpoint(state)
    assert torch.equal(masks(restored, 1)[0], continued)
    # without label dropout the network gets no mask, and the noise stream is the one of unconditional runs
    plain = DiffusionModule(conditional_dit(), ContinuousVPSchedule(), condition_keys=["y"])
    seen = []
    plain.network.register_forward_pre_hook(lambda m, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
    plain.training_step(batch(), 0)
    assert "drop_labels" not in seen[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: DiffusionModule(
            conditional_dit(), LinearBetaSchedule(T=20), condition_keys=["y"], label_dropout=0.1, ema_decay=0.5
        ),
        lambda: DiffusionModule(OneLayerTransformer(d=8, T=10), LinearAlphaSchedule(T=10, time_sampling="first")),
    ],
)
def test_checkpoint_rebuilds_its_model_alone_and_loads_weights_only(tmp_path, make):
    module = make()
    trainer = pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        max_steps=0,
    )
    trainer.strategy.connect(module)
    module.trainer = trainer
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)  # plain config only: no pickled objects
    hp = raw["hyper_parameters"]
    assert hp["network"]["class_path"] == f"{type(module.network).__module__}.{type(module.network).__qualname__}"
    assert hp["network"] == init_config(module.network) and hp["schedule"] == init_config(module.schedule)
    restored = DiffusionModule.load_from_checkpoint(path)  # no arguments
    assert type(restored.network) is type(module.network) and type(restored.schedule) is type(module.schedule)
    assert torch.equal(restored.schedule.alpha_bars, module.schedule.alpha_bars)
    assert (restored.condition_keys, restored.label_dropout) == (module.condition_keys, module.label_dropout)
    for (name, a), (_, b) in zip(module.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    assert DiffusionModule.load_from_checkpoint(path, loss_scale=0.25).loss_scale == 0.25  # overrides still work


def test_init_config_records_the_construction_arguments():
    net = DiT(input_shape=(4, 2), hidden_size=16, depth=1, num_heads=2, pos_dim=8, num_classes=3)
    config = init_config(net)
    assert config["class_path"] == "diffusion_theory.networks.dit.DiT"
    assert config["init_args"]["input_shape"] == [4, 2] and config["init_args"]["num_classes"] == 3
    assert config["init_args"]["mlp_ratio"] == 4.0  # defaults included
    rebuilt = DiT(**config["init_args"])
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]
    assert init_config(torch.nn.Linear(2, 2)) is None  # a class that does not record its arguments
