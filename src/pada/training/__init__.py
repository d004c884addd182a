"""Training: the generic Accelerate trainer (:mod:`.engine`, :mod:`.ema`, :mod:`.checkpointing`) and
:mod:`.synthetic` blob images for smoke runs. Nothing model-specific lives here.

Each model family brings its own task (a :class:`TrainTask`) and runs it through the one :class:`Trainer`:
the DiffAE in :mod:`pada.diffae.train`, PADA in :mod:`pada.aging.train`; see docs/training.md.
(:mod:`.diffae_task` and :mod:`.benchmark` are deprecated forwards to :mod:`pada.diffae`.)
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
