"""PADA: probabilistic aging embedding, adaptive modulation, the six losses, training and inference.

See docs/pada_method.md. Main entry points:

* :class:`~pada.aging.model.PadaModel` — E_age (§3.2.1) + adaptive modulation (§3.2.2), safetensors I/O;
* :class:`~pada.aging.objective.PadaObjective` — the losses of §3.3 (Eq. 7–12) on one batch;
* :mod:`pada.aging.train` — ``pada train pada`` on the shared training engine;
* :class:`~pada.aging.pipeline.AgingPipeline` — inference (N pluralistic results, lifespan sweeps);
* :class:`~pada.aging.baseline.LinearBaselinePipeline` — the DiffAE linear age-direction baseline.
"""

from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline
from pada.aging.config import LOSS_NAMES, LossConfig, PadaConfig
from pada.aging.model import PadaModel
from pada.aging.objective import Frozen, PadaObjective
from pada.aging.pipeline import AgingPipeline, AgingResult, LifespanResult

__all__ = [
    "LOSS_NAMES",
    "AgingPipeline",
    "AgingResult",
    "Frozen",
    "LifespanResult",
    "LinearAgeDirection",
    "LinearBaselinePipeline",
    "LossConfig",
    "PadaConfig",
    "PadaModel",
    "PadaObjective",
]
