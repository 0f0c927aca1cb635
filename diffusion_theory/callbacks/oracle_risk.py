"""Oracle risk, for data that knows the latent variables: paper 1 eqs. (13), (14), (33).

    val/oracle_risk = loss_scale * E_t E ||E - E[E | X^t, M_Y]||^2 / (dP)
    val/excess_risk = val/ddpm_loss - val/oracle_risk       (Sec. 5.1, Fig. 2B-D)
"""
from __future__ import annotations

from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.protocols import KnowsOracleNoise


class OracleRisk(Diagnostic):
    """Needs data implementing ``oracle_eps``; logs val/oracle_risk and val/excess_risk."""

    requires = (("data", KnowsOracleNoise),)

    def metric_names(self, trainer, pl_module) -> list[str]:
        return ["val/oracle_risk", "val/excess_risk"]

    def measure(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        oracle = trainer.datamodule.oracle_eps(outputs["x_t"], outputs["abar"], outputs).float()
        risk = pl_module.loss_scale * (outputs["noise"].float() - oracle).pow(2).flatten(1).mean(1)
        self.update("val/oracle_risk", risk)
        self.update("val/excess_risk", outputs["loss"] - risk)
