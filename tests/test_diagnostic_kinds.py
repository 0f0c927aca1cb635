"""One base, three kinds of diagnostics; every requirement declared; the auxiliary (frozen model) role."""

from __future__ import annotations

import pydoc
from typing import Protocol, runtime_checkable

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torchmetrics import MeanMetric

from diffusion_theory import callbacks, registry
from diffusion_theory.callbacks.auxiliary import UsesAuxiliaryModel, load_auxiliary, save_auxiliary
from diffusion_theory.callbacks.diagnostic import KINDS, BatchDiagnostic, Diagnostic
from diffusion_theory.callbacks.generation_diagnostic import StreamingGenerationDiagnostic
from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.generation import generate_across_ranks
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT
from diffusion_theory.protocols import (
    ROLES,
    HasOutputScales,
    HasPatternGroups,
    HasTheoryQuantities,
    KnowsCovariance,
    KnowsOracleOutputScale,
    MissingCapabilityError,
    check_requirements,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------
# Kinds and requirements
# ----------------------------------------------------------------------------------------


def test_every_builtin_diagnostic_has_a_kind_and_declares_its_requirements():
    diagnostics = [getattr(callbacks, n) for n in callbacks.__all__ if issubclass(getattr(callbacks, n), Diagnostic)]
    assert len(diagnostics) == 8
    for cls in diagnostics:
        assert cls.kind in KINDS, cls
        assert cls.requires and all(role in ROLES for role, _ in cls.requires), cls
    kinds = {cls.__name__: cls.kind for cls in diagnostics}
    assert kinds == {
        "ScoreError": "batch",
        "OracleRisk": "batch",
        "PatternAttention": "batch",
        "OutputScale": "weights",
        "QKBlockNorms": "weights",
        "TheoryQuantities": "weights",
        "CovarianceError": "generation",
        "AttentionAlongSampling": "generation",
    }
    # what used to be checked in setup, by hasattr or by reading hparams is now declared
    assert set(callbacks.OutputScale.requires) == {("network", HasOutputScales), ("data", KnowsOracleOutputScale)}
    assert callbacks.TheoryQuantities.requires == (("data", HasTheoryQuantities),)
    assert ("data", HasPatternGroups) in callbacks.PatternAttention.requires
    assert "training_set_size" in dir(KnowsCovariance)


def component_block(text: str, name: str) -> str:
    """The lines of one component in ``--list``: its name line and the indented lines under it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {name} "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("   ")), len(lines))
    return "\n".join(lines[start:end])


def test_list_shows_the_needs_of_every_diagnostic():
    registry.load_components()
    text = registry.format_components()
    for name, need in (
        ("OutputScale", "output_scales (HasOutputScales)"),
        ("TheoryQuantities", "theory_quantities (HasTheoryQuantities)"),
        ("PatternAttention", "extreme_patterns (HasPatternGroups)"),
        ("CovarianceError", "training_set_size"),
    ):
        assert need in component_block(text, name), name
    for base in ("BatchDiagnostic", "WeightDiagnostic", "StreamingGenerationDiagnostic"):  # bases are not components
        assert f"  {base} " not in text


def test_list_shows_each_diagnostic_kind_next_to_its_needs():
    registry.load_components()
    text = registry.format_components()
    classes = {c.name: pydoc.locate(c.class_path) for c in registry.list_components()["Callbacks"]}
    diagnostics = {name: cls for name, cls in classes.items() if issubclass(cls, Diagnostic)}
    assert {"ScoreError", "QKBlockNorms", "CovarianceError"} <= set(diagnostics)
    for name, cls in diagnostics.items():
        block = component_block(text, name).splitlines()
        kind_line = next(i for i, line in enumerate(block) if line.startswith("      kind:     "))
        assert block[kind_line].split()[1] == cls.kind, name  # the class's own kind, not a guess
        if cls.requires:  # the needs follow the kind line directly
            assert block[kind_line + 1].startswith("      needs:    "), name
    assert "      kind:     batch " in component_block(text, "ScoreError")
    assert "      kind:     weights " in component_block(text, "QKBlockNorms")
    assert "      kind:     generation " in component_block(text, "CovarianceError")
    assert "kind:" not in component_block(text, "TrainingCurves")  # a callback that is not a diagnostic


def test_check_requirements_names_the_role_and_rejects_unknown_roles():
    class NeedsScales(BatchDiagnostic):
        requires = (("network", HasOutputScales),)

        def metric_names(self, trainer, pl_module):
            return []

        def measure(self, *args):
            pass

    with pytest.raises(MissingCapabilityError, match=r"NeedsScales needs the network to implement HasOutputScales"):
        check_requirements(NeedsScales(), object(), nn.Linear(2, 2))

    class BadRole(NeedsScales):
        requires = (("optimizer", HasOutputScales),)

    with pytest.raises(ValueError, match=r"BadRole.requires: role must be one of data, network, auxiliary"):
        check_requirements(BadRole(), object(), nn.Linear(2, 2))

    class NoLoader(NeedsScales):
        requires = (("auxiliary", HasOutputScales),)

    with pytest.raises(MissingCapabilityError, match=r"NoLoader requires an auxiliary model"):
        check_requirements(NoLoader(), object(), nn.Linear(2, 2))


def test_kind_must_be_one_of_three():
    with pytest.raises(TypeError, match=r"kind must be one of batch, weights, generation"):

        class Odd(Diagnostic):  # noqa: F841
            kind = "epoch"


def test_time_bin_helper_matches_brute_force():
    class Probe(BatchDiagnostic):
        def metric_names(self, trainer, pl_module):
            return ["val/x"] + self.time_bin_names("val/x")

        def measure(self, *args):
            pass

    probe = Probe(n_time_bins=3)
    assert probe.time_bin_names("val/x") == ["val/x/t_bin_0", "val/x/t_bin_1", "val/x/t_bin_2"]
    probe.metrics = {name: MeanMetric() for name in probe.metric_names(None, None)}
    n_t, B = 7, 4  # items are sample-major: item i is at grid position i % n_t
    values = torch.arange(B * n_t, dtype=torch.float32) ** 1.5
    outputs = {"t": torch.zeros(B * n_t), "n_times": torch.tensor(n_t)}
    probe.update_with_time_bins("val/x", values, outputs)
    assert float(probe.metrics["val/x"].compute()) == pytest.approx(float(values.mean()))
    for k in range(3):
        positions = [i for i in range(B * n_t) if (i % n_t) * 3 // n_t == k]  # equal bins of the grid
        assert float(probe.metrics[f"val/x/t_bin_{k}"].compute()) == pytest.approx(float(values[positions].mean()))


# ----------------------------------------------------------------------------------------
# The auxiliary role
# ----------------------------------------------------------------------------------------


class TinyFeatures(nn.Module):
    """A frozen 'classifier': features of a (B, N, d) sequence; has dropout and batch norm, which differ in
    train mode, so a model left in train mode would change the measured values."""

    def __init__(self, N: int, d: int, width: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(N * d, width), nn.BatchNorm1d(width), nn.Dropout(0.5))

    def forward(self, x):
        return self.net(x)

    def features(self, x):
        return self.forward(x)


@runtime_checkable
class ExtractsFeatures(Protocol):
    def features(self, x: torch.Tensor) -> torch.Tensor: ...


class GeneratedFeatureMean(UsesAuxiliaryModel, StreamingGenerationDiagnostic):
    """Test diagnostic: the mean auxiliary feature of generated samples, streamed through a torchmetrics state."""

    requires = (("auxiliary", ExtractsFeatures),)

    def __init__(self, aux_checkpoint: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.init_auxiliary(aux_checkpoint)

    def sample_metrics(self, trainer, pl_module):
        return {"val/aux_feature_mean": MeanMetric()}

    def update_samples(self, samples, start, trainer, pl_module):
        self.states["val/aux_feature_mean"].update(self.auxiliary_model(pl_module.device).features(samples))


def tiny_setup(tmp_path, ema_decay=0.9):
    dm = GaussianProcessDataModule(
        N=8, d=2, length_scale=4.0, n_train=16, n_eval=4, eval_batch_size=4, batch_size=8, steps_per_epoch=2
    )
    net = DiT(input_shape=(8, 2), hidden_size=16, depth=1, num_heads=2, pos_embed_mode="concat", pos_dim=8)
    module = DiffusionModule(net, ContinuousVPSchedule(n_eval_times=2), ema_decay=ema_decay)
    aux = TinyFeatures(8, 2)
    with torch.no_grad():
        aux.net[2].running_mean.fill_(0.3)  # a non-default buffer, so a load must restore it
    path = save_auxiliary(aux, tmp_path / "aux.pt", {"N": 8, "d": 2})
    return dm, module, aux, path


def test_auxiliary_checkpoint_round_trip_is_safe_and_frozen(tmp_path):
    _, _, aux, path = tiny_setup(tmp_path)
    raw = torch.load(path, weights_only=True)  # plain config and tensors: loads without unpickling objects
    assert raw["class_path"].endswith("TinyFeatures") and raw["init_args"] == {"N": 8, "d": 2}
    loaded = load_auxiliary(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for (k, v), (k2, v2) in zip(aux.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(FileNotFoundError, match=r"aux_checkpoint: no such file"):
        load_auxiliary(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"aux_checkpoint: .* is not an auxiliary checkpoint"):
        load_auxiliary(tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"GeneratedFeatureMean.aux_checkpoint: this diagnostic needs"):
        GeneratedFeatureMean(n_samples=4).auxiliary_model()


def test_auxiliary_model_stays_out_of_the_trained_model_and_in_eval_mode(tmp_path):
    dm, module, aux, path = tiny_setup(tmp_path)
    diag = GeneratedFeatureMean(aux_checkpoint=str(path), n_samples=6, chunk_size=4, seed=3, n_steps=5)
    trainer = pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[diag],
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=dm)
    model = diag.auxiliary_model()
    assert model is diag._aux and model is not None
    aux_params = {id(p) for p in model.parameters()}
    # not in the trained model: its state dict, its parameters, the optimiser, the EMA
    assert not any(k.startswith(("_aux", "aux")) or "net.2.running_mean" == k for k in module.state_dict())
    assert not aux_params & {id(p) for p in module.parameters()}
    assert not aux_params & {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not aux_params & {id(p) for p in module.ema.module.parameters()}
    assert diag.state_dict() == {}  # nothing of it in the callback's checkpoint state either
    # frozen, in eval mode after a fit (Lightning switched the module between train and eval around validation)
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert next(model.parameters()).device == module.device
    # the logged value is the eval-mode feature mean of the very samples the diagnostic generated
    samples = generate_across_ranks(trainer, module, 6, 4, 3, sampler="auto", n_steps=5, progress=False)
    want = load_auxiliary(path).features(samples).mean()
    assert float(trainer.callback_metrics["val/aux_feature_mean"]) == pytest.approx(float(want), rel=1e-5)
    # generation-only diagnostics: validation skipped the noisy grid
    assert "val/ddpm_loss" not in trainer.callback_metrics


def test_auxiliary_requirement_is_checked_against_the_loaded_model(tmp_path):
    _, _, _, path = tiny_setup(tmp_path)

    @runtime_checkable
    class Decodes(Protocol):
        def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    class NeedsDecoder(GeneratedFeatureMean):
        requires = (("auxiliary", Decodes),)

    with pytest.raises(MissingCapabilityError, match=r"NeedsDecoder needs the auxiliary to implement Decodes"):
        check_requirements(NeedsDecoder(aux_checkpoint=str(path), n_samples=2), object(), nn.Linear(1, 1))
    check_requirements(GeneratedFeatureMean(aux_checkpoint=str(path), n_samples=2), object(), nn.Linear(1, 1))


def test_streamed_generation_metric_is_the_same_in_two_processes(tmp_path):
    """Each rank draws its own chunks (6 samples in chunks of 2: ranks draw 2 and 1 chunks) and updates its
    torchmetrics state; compute() syncs them: the value equals the single-process one."""
    _, _, _, path = tiny_setup(tmp_path)
    values = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        pl.seed_everything(0)  # the same network weights in both runs
        dm, module, _, _ = tiny_setup(tmp_path)
        diag = GeneratedFeatureMean(aux_checkpoint=str(path), n_samples=6, chunk_size=2, seed=3, n_steps=5)
        trainer = pl.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=devices,
            strategy=strategy,
            callbacks=[diag],
            default_root_dir=tmp_path,
        )
        trainer.validate(module, datamodule=dm, verbose=False)
        values[devices] = float(trainer.callback_metrics["val/aux_feature_mean"])
    assert values[2] == pytest.approx(values[1], rel=1e-5)
