"""Capabilities: what a diagnostic may ask of the data, of the network and of an auxiliary model.

A diagnostic names the capabilities it needs, ``requires`` = ((role, protocol), ...), role one of
``ROLES``: ``data`` (the LightningDataModule), ``network`` (``pl_module.network``) or ``auxiliary`` (a
frozen model the diagnostic loads from a checkpoint, ``callbacks.auxiliary.UsesAuxiliaryModel``).
``check_requirements`` checks them all when the fit starts (``DiffusionCLI.check_capabilities``) and in
each diagnostic's ``setup``, so a diagnostic attached to data that cannot answer fails at once with a
clear message, not mid-run. Any data module or network (ours or a plugin's) gets a diagnostic by
implementing its methods.

Data capabilities (methods of the LightningDataModule):
    KnowsPosteriorNoise.exact_eps(x_t, abar, batch) -> E[E | X^t]      score error, Bayes risk
    KnowsOracleNoise.oracle_eps(x_t, abar, batch)   -> E[E | X^t, latent]  oracle risk
    HasTokenLabels.token_labels(batch)              -> (B, P) latent class of each token
    HasPatternGroups.extreme_patterns()             -> {group name: pattern}, e.g. {min_pi: u, max_pi: v}
    HasTheoryQuantities.theory_quantities()         -> {name: float}, logged once
    KnowsOracleOutputScale.oracle_output_scale(abar) -> the ideal per-step output scale
    KnowsCovariance.true_covariance()               -> (Gamma (N, N), Sigma (d, d)): Cov = Gamma (x) Sigma
    KnowsCovariance.training_sequences(n)           -> (n, N, d): the first n of the training stream
    KnowsCovariance.training_set_size()             -> n_train, or None for fresh draws every step

Network capabilities (methods of ``pl_module.network``):
    ExposesAttention.attention_logits(x_t, t)       -> (B, P, P) pre-softmax scores, query rows
    HasOutputScales.output_scales()                  -> (T,) per-step output scales v_t
    ExposesAttentionWeights.attention_weights()      -> {q, k, v: (L, H, hd, D), proj: (L, H, D, hd)},
        with ``frame_slice`` / ``embedding_slice``: the token coordinates of the data z and the index embedding e
    RecordsAttention.recording_attention(reduce)     -> context in which forward passes record per-layer
        {q, k, scores, probs}; ``attention_records()`` returns them
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class KnowsPosteriorNoise(Protocol):
    def exact_eps(self, x_t: Tensor, abar: Tensor, batch: dict[str, Tensor]) -> Tensor: ...


@runtime_checkable
class KnowsOracleNoise(Protocol):
    def oracle_eps(self, x_t: Tensor, abar: Tensor, batch: dict[str, Tensor]) -> Tensor: ...


@runtime_checkable
class HasTokenLabels(Protocol):
    def token_labels(self, batch: dict[str, Tensor]) -> Tensor: ...


@runtime_checkable
class HasPatternGroups(Protocol):
    """Named latent patterns whose query-key products are reported (paper 1 (MTGM) Fig. 4: min and max pi~)."""

    def extreme_patterns(self) -> dict[str, int]: ...


@runtime_checkable
class HasTheoryQuantities(Protocol):
    def theory_quantities(self) -> dict[str, float]: ...


@runtime_checkable
class KnowsOracleOutputScale(Protocol):
    def oracle_output_scale(self, abar: Tensor) -> Tensor: ...


@runtime_checkable
class KnowsCovariance(Protocol):
    """Data with covariance Gamma (x) Sigma (paper 2, Sec. 2) and a nested training stream."""

    def true_covariance(self) -> tuple[Tensor, Tensor]: ...

    def training_sequences(self, n: int) -> Tensor: ...

    def training_set_size(self) -> int | None: ...


@runtime_checkable
class ExposesAttention(Protocol):
    def attention_logits(self, x_t: Tensor, t: Tensor) -> Tensor: ...


@runtime_checkable
class HasOutputScales(Protocol):
    def output_scales(self) -> Tensor: ...


@runtime_checkable
class ExposesAttentionWeights(Protocol):
    """Per-head attention weights and the token layout [z; e] (paper 2, Fig. 4(b), Figs. 10-11)."""

    frame_slice: slice
    embedding_slice: slice

    def attention_weights(self) -> dict[str, Tensor]: ...


@runtime_checkable
class RecordsAttention(Protocol):
    """A network whose forward passes can record their attention scores (paper 2, Figs. 5 and 12)."""

    def recording_attention(self, reduce: str = "none") -> Any: ...

    def attention_records(self) -> list[dict[str, Tensor]]: ...


class MissingCapabilityError(TypeError):
    """A diagnostic was attached to a data module or network that cannot answer it."""


ROLES = ("data", "network", "auxiliary")


def check_requirements(diagnostic: Any, datamodule: Any, network: Any) -> None:
    """Check every (role, protocol) of ``diagnostic.requires``: ``data`` against ``datamodule``, ``network``
    against ``network``, ``auxiliary`` against ``diagnostic.auxiliary_model()`` (loaded on the CPU if not yet)."""
    name = type(diagnostic).__name__
    for role, protocol in getattr(diagnostic, "requires", ()):
        if role == "data":
            obj = datamodule
        elif role == "network":
            obj = network
        elif role == "auxiliary":
            if not callable(getattr(diagnostic, "auxiliary_model", None)):
                raise MissingCapabilityError(
                    f"callback {name} requires an auxiliary model but has no "
                    f"auxiliary_model(); derive it from callbacks.auxiliary.UsesAuxiliaryModel"
                )
            obj = diagnostic.auxiliary_model()
        else:
            raise ValueError(f"{name}.requires: role must be one of {', '.join(ROLES)}; got {role!r}")
        require(obj, protocol, name, role)


def require(obj: Any, protocol: type, diagnostic: str, role: str) -> None:
    """Raise ``MissingCapabilityError`` naming the diagnostic, the object and the missing methods."""
    if isinstance(obj, protocol):
        return
    methods = [m for m in protocol.__dict__ if not m.startswith("_") and callable(getattr(protocol, m, None))]
    raise MissingCapabilityError(
        f"callback {diagnostic} needs the {role} to implement {protocol.__name__} "
        f"({', '.join(f'{m}()' for m in methods)}); {type(obj).__name__} does not. "
        f"Remove the callback from the config or use a {role} that provides it."
    )
