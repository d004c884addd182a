"""The DiffAE model family in one package.

* :mod:`pada.diffae.model` — :class:`DiffAE`, the diffusion autoencoder with the official method names
  (``encode``, ``encode_stochastic``, ``render``) and its training loss (``loss`` / ``loss_terms``).
* :mod:`pada.diffae.train` — its training task on the generic engine (:mod:`pada.training`), the data
  spec, warm starts, the eigenface fit, checkpoint reading and export, ``pada train diffae``.
* :mod:`pada.diffae.benchmark` — training throughput (``python -m pada.diffae.benchmark``).

The network itself (:class:`pada.networks.unet.DiffAEUNet`, presets, checkpoint files) lives in
:mod:`pada.networks`, the schedules and samplers it runs with in :mod:`pada.diffusion`. Importing this
package loads only the model, not the trainer.
"""

from pada.diffae.model import PRECISIONS, DiffAE

__all__ = ["PRECISIONS", "DiffAE"]
