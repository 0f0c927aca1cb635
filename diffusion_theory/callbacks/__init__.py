"""Diagnostics: each asks the data and the network for capabilities (``diffusion_theory.protocols``)."""
from diffusion_theory.callbacks.attention_sampling import AttentionAlongSampling
from diffusion_theory.callbacks.covariance_error import CovarianceError
from diffusion_theory.callbacks.curves import TrainingCurves
from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.callbacks.oracle_risk import OracleRisk
from diffusion_theory.callbacks.output_scale import OutputScale
from diffusion_theory.callbacks.pattern_attention import PatternAttention
from diffusion_theory.callbacks.qk_block_norms import QKBlockNorms
from diffusion_theory.callbacks.score_error import ScoreError
from diffusion_theory.callbacks.theory_quantities import TheoryQuantities

__all__ = ["AttentionAlongSampling", "CovarianceError", "Diagnostic", "OracleRisk", "OutputScale", "PatternAttention",
           "QKBlockNorms", "ScoreError", "TheoryQuantities", "TrainingCurves"]
