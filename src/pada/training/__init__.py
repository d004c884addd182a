"""Training: one generic Accelerate trainer (:mod:`.engine`) and the DiffAE task (:mod:`.diffae_task`).

Other trainers (PADA's age encoder + modulation, FaceCLIP) subclass :class:`TrainTask` and run through
the same :class:`Trainer`; see docs/training.md.
"""

from pada.training.engine import (
    TrainConfig,
    Trainer,
    TrainResult,
    TrainTask,
    add_train_args,
    config_from_args,
)

__all__ = ["TrainConfig", "TrainResult", "TrainTask", "Trainer", "add_train_args", "config_from_args"]
