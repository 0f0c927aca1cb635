"""Oracle risk, for data that knows the latent variables: paper 1 (MTGM) eqs. (13), (14), (33).

val/oracle_risk = loss_scale * E_t E ||E - E[E | X^t, M_Y]||^2 / (dP)      (``metrics.risks.denoising_risk``)
val/excess_risk = val/ddpm_loss - val/oracle_risk       (paper 1 (MTGM) Sec. 5.1, Fig. 2B-D)
"""

from __future__ import annotations

from diffusion_theory.callbacks.diagnostic import BatchDiagnostic
from diffusion_theory.metrics.risks import denoising_risk
from diffusion_theory.protocols import KnowsOracleNoise


class OracleRisk(BatchDiagnostic):
    """Needs data implementing ``oracle_eps``; logs val/oracle_risk and val/excess_risk."""

    requires = (("data", KnowsOracleNoise),)

    def metric_names(self, trainer, pl_module) -> list[str]:
        return ["val/oracle_risk", "val/excess_risk"]

    def measure(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        oracle = trainer.datamodule.oracle_eps(outputs["x_t"], outputs["abar"], outputs).float()
        risk = denoising_risk(outputs["noise"].float(), oracle, pl_module.loss_scale)  # (B n_t,)
        self.update("val/oracle_risk", risk)
        self.update("val/excess_risk", outputs["loss"] - risk)
