"""Runs PerClassFID once (set-up and one evaluation) in ``world`` processes (gloo), with a stand-in model that
"generates" by drawing tiny data images with each chunk's generator; rank zero writes the values as JSON.

    python tests/per_class_fid_worker.py IDX_FOLDER CLASSIFIER OUT_JSON WORLD [conditional]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))


class PoolModule:
    """A stand-in for ``DiffusionModule``: ``sample`` draws images of a fixed pool (per class when conditional)
    with the generator it is given, so the samples depend only on the chunk seeds, never on the processes."""

    def __init__(self, pools: dict[int, torch.Tensor], weights: list[float], conditional: bool = False):
        from diffusion_theory.diffusion.schedules import LinearBetaSchedule

        self.pools, self.weights, self.conditional = pools, torch.tensor(weights), conditional
        self.device = torch.device("cpu")
        self.condition_keys = ["y"] if conditional else []
        self.schedule = LinearBetaSchedule(T=10)
        self.network = torch.nn.Identity()

    def draw(
        self, n: int, generator: torch.Generator, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, 1, S, S), true class index (n,))."""
        classes = y if y is not None else torch.multinomial(self.weights, n, replacement=True, generator=generator)
        rows = torch.randint(0, 10**6, (n,), generator=generator)
        images = torch.stack([self.pools[int(c)][int(r) % self.pools[int(c)].shape[0]] for c, r in zip(classes, rows)])
        return images, classes

    def sample(self, n, generator=None, cond=None, guidance_scale=None, **kwargs):
        return self.draw(n, generator, (cond or {}).get("y"))[0]


def make(idx: str, classifier: str, conditional: bool, **kwargs):
    from diffusion_theory.callbacks.per_class_fid import PerClassFID
    from diffusion_theory.datamodules.images import ImageClassesDataModule

    dm = ImageClassesDataModule(dataset="folder", root=idx, classes=[0, 1, 2, 3], keep_fraction={2: 0.5}, image_size=8)
    dm.setup("fit")
    train = dm.train_set
    pools = {k: train["x0"][train["y"] == k] for k in range(4)}
    module = PoolModule(pools, [0.5, 0.3, 0.2, 0.0] if not conditional else [0.25] * 4, conditional)
    cb = PerClassFID(aux_checkpoint=classifier, **{"n_samples": 300, "chunk_size": 40, "seed": 5, **kwargs})
    return dm, module, cb


def _reduce(x: torch.Tensor, reduce_op: str = "sum") -> torch.Tensor:
    out = x.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def stub_trainer(dm, rank: int, world: int, root: str) -> SimpleNamespace:
    """The parts of a Trainer the diagnostic reads; its strategy's reduce is torch.distributed's all-reduce."""
    return SimpleNamespace(
        global_rank=rank,
        world_size=world,
        is_global_zero=rank == 0,
        datamodule=dm,
        default_root_dir=root,
        global_step=7,
        current_epoch=0,
        sanity_checking=False,
        loggers=[],
        strategy=SimpleNamespace(reduce=_reduce),
    )


def run(rank: int, world: int, idx: str, classifier: str, out: str, conditional: bool) -> None:
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    dm, module, cb = make(idx, classifier, conditional, fidelity_check=True)
    trainer = stub_trainer(dm, rank, world, str(Path(out).parent / f"run{world}"))
    cb.setup(trainer, module, "fit")
    values = cb.evaluate(trainer, module)
    if rank == 0:
        Path(out).write_text(json.dumps({"values": values, "record": cb.last_record["record"]}))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    idx, classifier, out, world = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    conditional = len(sys.argv) > 5 and sys.argv[5] == "conditional"
    if world == 1:
        run(0, 1, idx, classifier, out, conditional)
    else:
        os.environ["MASTER_PORT"] = str(29500 + os.getpid() % 1000)
        mp.spawn(run, args=(world, idx, classifier, out, conditional), nprocs=world)
