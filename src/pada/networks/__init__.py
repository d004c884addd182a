"""DiffAE networks: config dataclass + presets, the official-layout UNet/encoder, checkpoint IO."""

from pada.networks.config import DiffAEConfig, list_presets, load_preset
from pada.networks.unet import DiffAEUNet

__all__ = ["DiffAEConfig", "DiffAEUNet", "list_presets", "load_preset"]
