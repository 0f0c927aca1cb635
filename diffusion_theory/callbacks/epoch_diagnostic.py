"""DDP plumbing for generating samples in diagnostics (``GenerationDiagnostic``, ``AttentionAlongSampling``).

Generation under DDP (``generate_across_ranks``, ``for_each_chunk``): the n samples are cut into
fixed chunks, chunk k drawn with its own generator seeded by (seed, k); rank r of w draws chunks
r, r + w, ...; the rows are reassembled by an all-reduce sum of zero-padded tensors (exact: x + 0 = x),
so every rank holds all n samples, identical to what one process would draw.
``EpochEndDiagnostic`` (the base of weight and generation diagnostics) lives in ``callbacks.diagnostic``.
"""
from __future__ import annotations

from diffusion_theory.callbacks.diagnostic import EpochEndDiagnostic  # noqa: F401  (re-exported)
# The plumbing itself lives in diffusion.generation (one module for callbacks and scripts); re-exported here.
from diffusion_theory.diffusion.generation import (all_reduce_sum, for_each_chunk,  # noqa: F401
                                                   generate_across_ranks)
