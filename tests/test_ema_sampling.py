"""EMA in DiffusionModule (updated per optimiser step, checkpointed, used by validation) and sample()."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.generation import chunk_plan
from diffusion_theory.diffusion.schedules import LinearBetaSchedule
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_module(ema_decay=0.9, schedule=None) -> DiffusionModule:
    torch.manual_seed(0)
    net = DiT(input_shape=(6, 2), hidden_size=16, depth=1, num_heads=2, pos_embed_mode="concat", pos_dim=8)
    return DiffusionModule(net, schedule or ContinuousVPSchedule(n_eval_times=3), ema_decay=ema_decay)


def tiny_data() -> GaussianProcessDataModule:
    return GaussianProcessDataModule(
        N=6, d=2, length_scale=4.0, n_train=16, batch_size=4, steps_per_epoch=3, n_eval=4, eval_batch_size=2
    )


def test_ema_is_updated_per_step_saved_in_the_checkpoint_and_restored(tmp_path):
    module = tiny_module(ema_decay=0.9)
    module.configure_optimizers = lambda: torch.optim.Adam(module.network.parameters(), lr=1e-2)
    trainer = pl.Trainer(
        max_steps=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=tiny_data())
    assert int(module.ema.num_updates) == 3
    w, w_ema = module.network.final_layer.linear.weight, module.ema.module.final_layer.linear.weight
    assert not torch.allclose(w, w_ema)  # trained away from zero; the EMA lags behind
    assert 0 < w_ema.abs().sum() < w.abs().sum()
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert torch.equal(state["ema.module.final_layer.linear.weight"], w_ema)
    assert int(state["ema.num_updates"]) == 3
    restored = DiffusionModule.load_from_checkpoint(
        path, network=tiny_module().network, schedule=ContinuousVPSchedule(n_eval_times=3), ema_decay=0.9
    )
    assert torch.equal(restored.ema.module.final_layer.linear.weight, w_ema)
    alone = DiffusionModule.load_from_checkpoint(path)  # the checkpoint's plain config rebuilds network and schedule
    assert torch.equal(alone.ema.module.final_layer.linear.weight, w_ema) and alone.hparams.ema_decay == 0.9


def test_validation_uses_the_ema_network_and_none_keeps_the_trained_one():
    dm = tiny_data()
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    for ema_decay in (0.5, None):
        module = tiny_module(ema_decay)
        with torch.no_grad():  # the trained network moves; the EMA copy stays at the initial weights
            module.network.final_layer.linear.weight.normal_()
        module.eval()
        out = module.validation_step(batch, 0)
        expected_net = module.ema.module if ema_decay is not None else module.network
        assert module.inference_network is expected_net
        with torch.no_grad():
            direct = expected_net(out["x_t"], module.schedule.model_time(out["t"]))
        assert torch.allclose(out["eps_hat"], direct)
        if ema_decay is not None:
            assert out["eps_hat"].abs().max() == 0  # adaLN-Zero init: the untouched EMA copy outputs 0
    assert "ema.module.final_layer.linear.weight" not in tiny_module(None).state_dict()
    module = tiny_module(0.5)
    module.train()  # training mode: the trained network, never the EMA
    with torch.no_grad():
        module.network.final_layer.linear.weight.normal_()
    assert module.denoise(batch["x0"], torch.ones(2)).abs().max() > 0
    with pytest.raises(ValueError, match="model.ema_decay"):
        tiny_module(1.0)


def test_sample_uses_the_ema_network_calls_back_and_checks_the_sampler():
    module = tiny_module(0.5)
    with torch.no_grad():
        module.network.final_layer.linear.weight.normal_()
    seen = []
    g = torch.Generator().manual_seed(0)
    x = module.sample(3, n_steps=4, generator=g, callback=lambda k, t, x_t: seen.append((k, x_t.shape)), progress=False)
    assert x.shape == (3, 6, 2) and [k for k, _ in seen] == [0, 1, 2, 3, 4]
    # the EMA network outputs 0 (untrained adaLN-Zero), so x follows the SDE with zero score: x_T scaled by e^{(T - t0)/2}
    # up to the noise; the same run with the trained network differs
    module_no_ema = tiny_module(None)
    module_no_ema.network.load_state_dict(module.network.state_dict())
    y = module_no_ema.sample(3, n_steps=4, generator=torch.Generator().manual_seed(0), progress=False)
    x_again = module.sample(3, n_steps=4, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(x, x_again) and not torch.allclose(x, y)
    with pytest.raises(ValueError, match="does not fit a continuous schedule"):
        module.sample(2, sampler="ddpm")
    discrete = tiny_module(None, schedule=LinearBetaSchedule(T=20))
    assert discrete.sample(2, n_steps=5, progress=False).shape == (2, 6, 2)  # auto = ddpm
    assert discrete.sample(2, sampler="ddim", n_steps=5, progress=False).shape == (2, 6, 2)


@pytest.mark.parametrize("n, chunk, world", [(10, 3, 1), (10, 3, 2), (7, 7, 3), (1, 4, 2)])
def test_chunks_partition_the_rows_whatever_the_world_size(n, chunk, world):
    rows = [(start, count) for r in range(world) for _, start, count in chunk_plan(n, chunk, r, world)]
    covered = sorted(i for start, count in rows for i in range(start, start + count))
    assert covered == list(range(n))


def test_paper1_diagnostics_read_the_ema_network(tmp_path):
    """PatternAttention and OutputScale measure ``inference_network``: with an EMA they must give exactly the
    values of an EMA-free module whose network is the EMA copy, and differ from the perturbed trained network."""
    from diffusion_theory.callbacks.output_scale import OutputScale
    from diffusion_theory.callbacks.pattern_attention import PatternAttention
    from diffusion_theory.datamodules.mtgm import MTGMDataModule
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
    from diffusion_theory.networks.theory_transformer import OneLayerTransformer

    def validate(module: DiffusionModule) -> dict[str, float]:
        data = MTGMDataModule(d=8, M=4, K=2, P=8, rho=0.3, n_eval=8, eval_batch_size=4, batch_size=4)
        trainer = pl.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            default_root_dir=tmp_path,
            enable_checkpointing=False,
            callbacks=[PatternAttention(n_time_bins=0), OutputScale()],
        )
        trainer.validate(module, datamodule=data, verbose=False)
        return {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k in ("val/same_pattern_attention", "val/output_scale_error")
        }

    def mtgm_module(ema_decay):
        torch.manual_seed(0)
        return DiffusionModule(OneLayerTransformer(d=8, T=10), LinearAlphaSchedule(T=10), ema_decay=ema_decay)

    with_ema = mtgm_module(0.5)
    with torch.no_grad():  # the trained weights move away from the EMA copy (W(0) = 0: uniform attention)
        with_ema.network.W.copy_(5 * torch.eye(8))  # mean denoising: attends to tokens of the query's pattern
        with_ema.network.v.add_(1.0)
    ema_only = mtgm_module(None)
    ema_only.network.load_state_dict(with_ema.ema.module.state_dict())
    raw_only = mtgm_module(None)
    raw_only.network.load_state_dict(with_ema.network.state_dict())
    measured, expected, raw = validate(with_ema), validate(ema_only), validate(raw_only)
    assert set(measured) == {"val/same_pattern_attention", "val/output_scale_error"}
    assert measured == expected
    assert raw["val/same_pattern_attention"] > measured["val/same_pattern_attention"] + 0.05
    assert abs(raw["val/output_scale_error"] - measured["val/output_scale_error"]) > 0.1
