"""Data modules: the public evaluation set and sample shape; the start-up check of the network's input_shape
against the data (configs/gp.yaml interpolates it from data.N and data.d)."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import ROOT, run_fit_subprocess

from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
from diffusion_theory.datamodules.mtgm import MTGMDataModule
from diffusion_theory.datamodules.shapes import SampleShapeError, check_sample_shape

GP_TINY = ["--config", str(ROOT / "configs/gp.yaml"), "--config", str(ROOT / "tests/configs/gp_tiny.yaml")]


def data_modules():
    return [
        MTGMDataModule(d=8, M=4, K=2, P=16, n_eval=6, eval_batch_size=4),
        GaussianProcessDataModule(N=6, d=2, length_scale=4.0, n_train=8, n_eval=5, eval_batch_size=2),
    ]


@pytest.mark.parametrize("dm", data_modules(), ids=["mtgm", "gp"])
def test_evaluation_set_is_what_validation_reads_and_is_fixed_by_its_seed(dm):
    eval_set = dm.evaluation_set
    assert eval_set["x0"].shape == (dm.hparams.n_eval, *dm.sample_shape)
    assert torch.equal(eval_set["index"], torch.arange(dm.hparams.n_eval))
    dm.setup("fit")
    assert dm.evaluation_set is eval_set  # drawn once; setup does not redraw it
    batches = list(dm.val_dataloader())
    for key, value in eval_set.items():
        assert torch.equal(torch.cat([b[key] for b in batches]), value), key
    again = type(dm)(**dm.hparams)
    assert torch.equal(again.evaluation_set["x0"], eval_set["x0"])
    other = type(dm)(**(dict(dm.hparams) | {"eval_seed": dm.hparams.eval_seed + 1}))
    assert not torch.allclose(other.evaluation_set["x0"], eval_set["x0"])


@pytest.mark.parametrize("dm", data_modules(), ids=["mtgm", "gp"])
def test_sample_shape_names_its_config_fields(dm):
    assert dm.sample_shape == tuple(dm.hparams[f] for f in dm.sample_shape_fields)


class Net:
    def __init__(self, input_shape):
        self.input_shape = input_shape


def test_check_sample_shape():
    dm = GaussianProcessDataModule(N=6, d=2, n_eval=2)
    check_sample_shape(dm, Net((6, 2)))
    check_sample_shape(dm, Net([6, 2]))
    check_sample_shape(dm, object())  # a network without a fixed input shape: nothing to check
    check_sample_shape(object(), Net((6, 2)))  # data without a declared sample shape
    with pytest.raises(SampleShapeError) as err:
        check_sample_shape(dm, Net((8, 2)))
    message = str(err.value)
    for part in (
        "model.init_args.network.init_args.input_shape = [8, 2]",
        "data.init_args.N = 6",
        "data.init_args.d = 2",
        "${data.init_args.N}",
    ):
        assert part in message, part


def test_gp_config_input_shape_follows_data_N(tmp_path):
    """configs/gp.yaml with --data.init_args.N=64 trains: input_shape is interpolated from the data."""
    res = run_fit_subprocess(
        [*GP_TINY, f"--run.root={tmp_path}", "--run.name=n64", "--data.init_args.N=64", "--trainer.max_steps=5"],
        env={"OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "gp" / "n64"
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["model"]["init_args"]["network"]["init_args"]["input_shape"] == [64, 2]
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_input_shape_mismatch_fails_before_the_run_exists(tmp_path):
    res = run_fit_subprocess(
        [
            *GP_TINY,
            f"--run.root={tmp_path}",
            "--run.name=bad",
            "--data.init_args.N=16",
            "--model.init_args.network.init_args.input_shape=[8,2]",
        ],
        env={"OMP_NUM_THREADS": "1"},
    )
    assert res.returncode != 0
    assert "input_shape = [8, 2]" in res.stderr and "data.init_args.N = 16" in res.stderr
    assert not (tmp_path / "gp").exists()  # no run folder, hence no W&B run
