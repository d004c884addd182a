"""pada: an open implementation of PADA, the Pluralistic Aging Diffusion Autoencoder (ICCV 2023)."""

__version__ = "0.1.0"
