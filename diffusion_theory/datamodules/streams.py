"""Datasets shared by the synthetic data modules.

- ``FreshSampleStream``: a new batch from the distribution at every step (the population loss
  of paper 1), seeded by (seed, rank, global step) so that DDP ranks draw different data and a
  resumed run continues with new data instead of replaying the start.
- ``ShardedBatches``: fixed tensors (an evaluation set or a finite training set) cut into batches,
  each rank taking a disjoint contiguous shard with no padding, so that a metric averaged over
  ranks equals the single-process value exactly.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info


def current_rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FreshSampleStream(IterableDataset):
    """``steps`` batches of ``sample_fn(batch_size, generator) -> dict`` per pass.

    ``step_fn`` returns the trainer's global step when the pass starts (0 outside a trainer).
    """

    def __init__(self, sample_fn: Callable[[int, torch.Generator], dict[str, Tensor]], batch_size: int,
                 steps: int, seed: int, step_fn: Callable[[], int] = lambda: 0):
        self.sample_fn, self.batch_size, self.steps, self.seed, self.step_fn = sample_fn, batch_size, steps, seed, step_fn

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rank, _ = current_rank_and_world()
        worker = get_worker_info()
        wid = worker.id if worker is not None else 0
        g = torch.Generator().manual_seed(hash((self.seed, rank, wid, self.step_fn())) % (2 ** 62))
        for _ in range(self.steps):
            yield self.sample_fn(self.batch_size, g)


class ShardedBatches(IterableDataset):
    """Batches of a dict of equal-length tensors; rank r of w takes rows [r n / w, (r + 1) n / w).

    ``shuffle_seed``: if set, rows are permuted each pass by (shuffle_seed, pass number) before
    sharding (a finite training set); evaluation sets leave it None.
    """

    def __init__(self, tensors: dict[str, Tensor], batch_size: int, shuffle_seed: int | None = None):
        sizes = {v.shape[0] for v in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"ShardedBatches: tensors must share their first dimension; got {sizes}")
        self.tensors, self.batch_size, self.shuffle_seed = tensors, batch_size, shuffle_seed
        self.n = sizes.pop()
        self._passes = 0

    def _shard(self) -> Tensor:
        rank, world = current_rank_and_world()
        order = torch.arange(self.n)
        if self.shuffle_seed is not None:
            g = torch.Generator().manual_seed(self.shuffle_seed * 7919 + self._passes)
            order = torch.randperm(self.n, generator=g)
            self._passes += 1
            per_rank = self.n // world  # training: equal shards, so every rank runs the same number of steps
            return order[rank * per_rank:(rank + 1) * per_rank]
        return order[rank * self.n // world:(rank + 1) * self.n // world]

    def __len__(self) -> int:
        _, world = current_rank_and_world()
        return -(-(self.n // world) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rows = self._shard()
        for start in range(0, rows.numel(), self.batch_size):
            idx = rows[start:start + self.batch_size]
            yield {k: v[idx] for k, v in self.tensors.items()}
