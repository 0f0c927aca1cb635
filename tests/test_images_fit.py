"""The image experiment end to end through scripts/fit.py's CLI and scripts/evaluate.py (paper 1 (MTGM), Sec. 5.2),
on tiny IDX files: the classifier's fit exports classifier.pt, a DiT run logs per-class FID with figures and never
stores the classifier in its checkpoint, evaluate gives the per-class table with torch-fidelity's cross-check."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, last_value, read_metrics, subprocess_env
from image_fixtures import write_tiny_idx

from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.evaluation_run import evaluate_checkpoint


def data_args(idx) -> list[str]:
    return [
        "--data=ImageClassesDataModule",
        "--data.init_args.dataset=folder",
        f"--data.init_args.root={idx}",
        "--data.init_args.classes=[0, 1, 2, 3]",
        "--data.init_args.image_size=8",
        "--data.init_args.batch_size=32",
        "--data.init_args.steps_per_epoch=5",
        "--data.init_args.n_eval=40",
        "--run.wandb_mode=disabled",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
    ]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    idx = write_tiny_idx(root / "idx", n_train=60, n_test=30)
    DiffusionCLI(
        args=[
            *data_args(idx),
            "--data.init_args.keep_fraction={}",
            "--model=ClassifierModule",
            "--model.init_args.network=ImageClassifier",
            "--model.init_args.network.init_args.input_shape=[1, 8, 8]",
            "--model.init_args.network.init_args.class_labels=[0, 1, 2, 3]",
            "--model.init_args.network.init_args.width=8",
            "--model.init_args.network.init_args.feature_dim=8",
            "--optimizer=torch.optim.Adam",
            "--optimizer.init_args.lr=0.01",
            "--trainer.max_steps=40",
            f"--run.root={root}",
            "--run.experiment=clf",
            "--run.name=c",
            "--run.monitor=val/acc",
            "--run.monitor_mode=max",
        ]
    )
    run = root / "clf" / "c"
    assert last_value(read_metrics(run), "val/acc") > 0.9
    return idx, run / "classifier.pt", root


def dit_args(idx, clf, root, name: str, conditional: bool) -> list[str]:
    args = [
        *data_args(idx),
        "--data.init_args.keep_fraction={2: 0.5}",
        "--model=DiffusionModule",
        "--model.init_args.loss_scale=1.0",
        "--model.init_args.network=DiT",
        "--model.init_args.network.init_args.input_shape=[1, 8, 8]",
        "--model.init_args.network.init_args.patch_size=4",
        "--model.init_args.network.init_args.hidden_size=16",
        "--model.init_args.network.init_args.depth=1",
        "--model.init_args.network.init_args.num_heads=2",
        "--model.init_args.network.init_args.pos_embed_mode=add",
        "--model.init_args.schedule=LinearBetaSchedule",
        "--model.init_args.schedule.init_args.T=50",
        "--trainer.max_steps=10",
        f"--run.root={root}",
        "--run.experiment=dit",
        f"--run.name={name}",
        "--run.monitor=val/fid/all",
        "--run.monitor_mode=min",
        "--trainer.callbacks=PerClassFID",
        f"--trainer.callbacks.init_args.aux_checkpoint={clf}",
        "--trainer.callbacks.init_args.n_samples=48",
        "--trainer.callbacks.init_args.sampler=ddim",
        "--trainer.callbacks.init_args.n_steps=3",
        "--trainer.callbacks.init_args.chunk_size=24",
    ]
    if conditional:
        args += [
            "--model.init_args.network.init_args.num_classes=4",
            "--model.init_args.condition_keys=[y]",
            "--model.init_args.label_dropout=0.1",
            "--trainer.callbacks.init_args.guidance_scale=2.0",
        ]
    return args


@pytest.mark.parametrize("conditional", [False, True])
def test_dit_run_logs_per_class_fid_and_evaluate_cross_checks(classifier, conditional):
    idx, clf, root = classifier
    name = "cond" if conditional else "uncond"
    DiffusionCLI(args=dit_args(idx, clf, root, name, conditional))
    run = root / "dit" / name
    rows = read_metrics(run)
    fid_rows = [r for r in rows if r.get("val/fid/all")]
    assert len(fid_rows) == 2  # two validations (every 5 steps), each with a per-class FID
    assert all(r.get(f"val/gen_share/class_{c}") not in (None, "") for r in fid_rows for c in range(4))
    if conditional:
        assert all(r.get(f"val/fid/class_{c}") for r in fid_rows for c in range(4))  # 12 images asked of each class
        assert last_value(rows, "val/label_agreement") >= 0
    for fig in ("fig3_per_class_fid", "fig5_generated_grid", "class_shares"):
        assert (run / "figures" / f"{fig}.png").stat().st_size > 1000
    record = json.loads((run / "per_class_fid.jsonl").read_text().splitlines()[-1])["record"]
    assert record["sampler"] == "ddim" and record["steps"] == 3 and record["extractor"] == "classifier-penultimate"
    assert record["guidance_scale"] == (2.0 if conditional else None) and sum(record["n_generated"].values()) == 48
    # the classifier never enters the diffusion checkpoint (state dict, optimiser, callbacks' state)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    clf_keys = set(torch.load(clf, weights_only=True)["state_dict"])
    assert not any(k.split(".", 1)[-1] in clf_keys or "classifier" in k for k in ckpt["state_dict"])
    n_params = sum(
        v.numel() for k, v in ckpt["state_dict"].items() if k.startswith("network.") and not k.endswith("pos_embed")
    )  # the fixed sin-cos table: no gradient
    n_opt = sum(s["exp_avg"].numel() for s in ckpt["optimizer_states"][0]["state"].values())
    assert n_opt == n_params
    assert not any(state for key, state in ckpt.get("callbacks", {}).items() if "PerClassFID" in key)
    # scripts/evaluate.py: the per-class table of the checkpoint, with torch-fidelity's numbers on the same features
    values = evaluate_checkpoint(
        run / "checkpoints" / "last.ckpt",
        overrides=["--trainer.callbacks.init_args.fidelity_check=true"],
        out_dir=run / "eval",
        print_table=False,
    )
    fids = {k: v for k, v in values.items() if k.startswith("val/fid/class_")}
    assert fids
    for name_, value in fids.items():
        assert values[name_.replace("val/fid/", "val/fidelity/fid/")] == pytest.approx(value, rel=1e-6)
    written = json.loads((run / "eval" / "metrics.json").read_text())["metrics"]
    assert written["val/fid/all"] == pytest.approx(values["val/fid/all"])


def test_evaluate_in_two_processes_equals_one(classifier):
    """scripts/evaluate.py under DDP (2 CPU processes): each draws its chunks and its share of the real images; the
    per-class FIDs equal the single-process values on the same generated set (same seeds), with no deadlock."""
    idx, clf, root = classifier
    run = root / "dit" / "uncond"
    if not (run / "checkpoints" / "last.ckpt").exists():
        DiffusionCLI(args=dit_args(idx, clf, root, "uncond", False))
    ckpt = run / "checkpoints" / "last.ckpt"
    one = evaluate_checkpoint(ckpt, out_dir=run / "eval1", print_table=False)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            "--ckpt",
            str(ckpt),
            "--out",
            str(run / "eval2"),
            "--trainer.strategy=ddp",
            "--trainer.devices=2",
            "--trainer.accelerator=cpu",
        ],
        cwd=ROOT,
        env=subprocess_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((run / "eval2" / "metrics.json").read_text())["metrics"]
    names = [k for k in one if k.startswith(("val/fid/", "val/gen_share/", "val/classifier_confidence"))]
    assert "val/fid/all" in names and set(names) <= set(two)
    for name in names:
        assert two[name] == pytest.approx(one[name], rel=1e-5, abs=1e-9), name
