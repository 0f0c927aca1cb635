"""A checkpoint write that dies half-way leaves the previous checkpoint intact."""

import pytest
import torch

from diffusion_theory import checkpointing
from diffusion_theory.checkpointing import AtomicCheckpointIO


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpointing.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    restored = torch.load(path, weights_only=False)
    assert restored["global_step"] == 1 and torch.equal(restored["w"], torch.ones(3))
    io.save_checkpoint({"global_step": 3, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=False)["global_step"] == 3
