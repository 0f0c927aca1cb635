"""Datasets shared by the synthetic data modules.

- ``FreshSampleStream``: a new batch from the distribution at every step (the population loss
  of paper 1), seeded by (seed, rank, global step) so that DDP ranks draw different data and a
  resumed run continues with new data instead of replaying the start.
- ``ShardedBatches``: fixed tensors (an evaluation set or a finite training set) cut into batches,
  each rank taking a disjoint contiguous shard with no padding, so that a metric averaged over
  ranks equals the single-process value exactly.
- ``CycledBatches``: a finite training set read in reshuffled passes, ``steps`` batches per
  epoch whatever its size, so that validation comes every ``steps`` optimiser steps for any n
  (the n-sweep of paper 2, Fig. 4(a)); batches are a pure function of the global step.
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

    def __init__(
        self,
        sample_fn: Callable[[int, torch.Generator], dict[str, Tensor]],
        batch_size: int,
        steps: int,
        seed: int,
        step_fn: Callable[[], int] = lambda: 0,
    ):
        self.sample_fn, self.batch_size, self.steps, self.seed, self.step_fn = (
            sample_fn,
            batch_size,
            steps,
            seed,
            step_fn,
        )

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rank, _ = current_rank_and_world()
        worker = get_worker_info()
        wid = worker.id if worker is not None else 0
        g = torch.Generator().manual_seed(hash((self.seed, rank, wid, self.step_fn())) % (2**62))
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
            return order[rank * per_rank : (rank + 1) * per_rank]
        return order[rank * self.n // world : (rank + 1) * self.n // world]

    def __len__(self) -> int:
        _, world = current_rank_and_world()
        return -(-(self.n // world) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rows = self._shard()
        for start in range(0, rows.numel(), self.batch_size):
            idx = rows[start : start + self.batch_size]
            yield {k: v[idx] for k, v in self.tensors.items()}


class CycledBatches(IterableDataset):
    """``steps`` batches per pass from a finite set of n rows, read as one endless stream of passes.

    The stream is perm_0, perm_1, ... (perm_k a permutation of the n rows seeded by (seed, k));
    global step s on rank r of w takes stream positions [(s w + r) B, (s w + r + 1) B). So every
    row is seen once per pass of the whole job, ranks share no row within a step (unless the step
    straddles two passes), and the batch of a step does not depend on how the run got there (a
    resumed run continues the stream).
    ``step_fn`` returns the trainer's global step when a pass starts (0 outside a trainer).
    """

    def __init__(
        self, tensors: dict[str, Tensor], batch_size: int, steps: int, seed: int, step_fn: Callable[[], int] = lambda: 0
    ):
        sizes = {v.shape[0] for v in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"CycledBatches: tensors must share their first dimension; got {sizes}")
        self.tensors, self.batch_size, self.steps, self.seed, self.step_fn = tensors, batch_size, steps, seed, step_fn
        self.n = sizes.pop()
        self._perms: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return self.steps

    def _perm(self, k: int) -> Tensor:
        if k not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            g = torch.Generator().manual_seed(self.seed * 7919 + k)
            self._perms[k] = torch.randperm(self.n, generator=g)
        return self._perms[k]

    def rows(self, step: int, rank: int, world: int) -> Tensor:
        """Row indices of the batch of ``rank`` at global ``step``: (batch_size,)."""
        pos = (step * world + rank) * self.batch_size + torch.arange(self.batch_size)  # stream positions
        passes, offsets = pos // self.n, pos % self.n
        # positions ascend, so grouping by pass (ascending) keeps their order
        return torch.cat([self._perm(int(k))[offsets[passes == k]] for k in passes.unique()])

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rank, world = current_rank_and_world()
        start = self.step_fn()
        for s in range(start, start + self.steps):
            idx = self.rows(s, rank, world)
            yield {k: v[idx] for k, v in self.tensors.items()}
