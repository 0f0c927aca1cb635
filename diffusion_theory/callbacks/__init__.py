"""Diagnostics of three kinds (batch, weights, generation; ``callbacks.diagnostic``): each declares the
capabilities it asks of the data, the network or an auxiliary model (``diffusion_theory.protocols``)."""

from diffusion_theory.callbacks.attention_sampling import AttentionAlongSampling
from diffusion_theory.callbacks.auxiliary import UsesAuxiliaryModel  # noqa: F401  (a base for writing diagnostics)
from diffusion_theory.callbacks.covariance_error import CovarianceError
from diffusion_theory.callbacks.curves import TrainingCurves
from diffusion_theory.callbacks.diagnostic import BatchDiagnostic, Diagnostic, WeightDiagnostic  # noqa: F401
from diffusion_theory.callbacks.generation_diagnostic import (  # noqa: F401  (bases)
    GenerationDiagnostic,
    StreamingGenerationDiagnostic,
)
from diffusion_theory.callbacks.oracle_risk import OracleRisk
from diffusion_theory.callbacks.output_scale import OutputScale
from diffusion_theory.callbacks.pattern_attention import PatternAttention
from diffusion_theory.callbacks.qk_block_norms import QKBlockNorms
from diffusion_theory.callbacks.score_error import ScoreError
from diffusion_theory.callbacks.theory_quantities import TheoryQuantities

# The components ``--list`` shows (the bases above are for writing diagnostics, not for configs).
__all__ = [
    "AttentionAlongSampling",
    "CovarianceError",
    "OracleRisk",
    "OutputScale",
    "PatternAttention",
    "QKBlockNorms",
    "ScoreError",
    "TheoryQuantities",
    "TrainingCurves",
]
