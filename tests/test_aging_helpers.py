"""Shared tiny models for the PADA tests (no tests here; imported by tests/test_aging*.py)."""

from __future__ import annotations

import contextlib

import torch

from pada.aging.config import PadaConfig
from pada.aging.model import PadaModel
from pada.aging.testing import TinyAgeCritic, TinyIdentityCritic, TinyVL, randomize_zero_params
from pada.data.groups import AGE_GROUPS, description
from pada.diffae import DiffAE
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: tiny models are far faster so on a shared, busy CPU (no thread spinning)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def tiny_diffae(seed: int = 0) -> DiffAE:
    """tiny32 DiffAE with random weights whose zero-initialised layers are re-drawn (so ε depends on z)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = DiffAEUNet(load_preset("tiny32"))
    randomize_zero_params(unet, std=0.05, seed=seed)
    return DiffAE(unet.eval())


def tiny_model(init_gain: float = 1e-3, **kw) -> PadaModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(kw.pop("seed", 0))
        cfg = PadaConfig(e_dim=32, z_dim=64, enc_hidden=32, mod_hidden=32, init_gain=init_gain, **kw)
        return PadaModel(cfg)


def frozen_set():
    return tiny_diffae(), TinyVL(dim=32), TinyAgeCritic(), TinyIdentityCritic()


def faces(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """Smooth random 'images' in [-1, 1] (low-frequency, so the tiny DiffAE sees structure)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 4, 4), generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)


def pair_batch(n: int = 6, seed: int = 0) -> dict:
    """A collated AgingPairDataset-style batch: rows alternate image / text refs; row 0 has ref = source."""
    src, ref = faces(n, seed), faces(n, seed + 100)
    same = torch.zeros(n, dtype=torch.bool)
    same[0] = True
    ref[0] = src[0]
    src_group = torch.tensor([i % 7 for i in range(n)])
    tar_group = torch.tensor([(i * 3 + 2) % 7 for i in range(n)])
    tar_group[0] = src_group[0]
    genders = ["female" if i % 2 else "male" for i in range(n)]
    centre = torch.tensor([g.center for g in AGE_GROUPS])
    src_age = centre[src_group] + 1.5  # labels a little off their groups' centres
    ref_age = torch.where(same, src_age, centre[tar_group] - 2.0)
    return {
        "source": src, "reference": ref, "ref_is_source": same,
        "mode": ["image" if i % 2 == 0 else "text" for i in range(n)],
        "source_group": src_group, "target_group": tar_group,
        "source_age": src_age, "reference_age": ref_age,
        "source_gender": genders,
        "source_description": [description(int(g), s) for g, s in zip(src_group, genders)],
        "target_description": [description(int(g), s) for g, s in zip(tar_group, genders)],
    }


class PairDataset(torch.utils.data.Dataset):
    """Synthetic map-style dataset with AgingPairDataset items (for engine runs)."""

    def __init__(self, n: int = 8, seed: int = 0):
        self.batch = pair_batch(n, seed)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: (v[i] if not isinstance(v, torch.Tensor) else v[i].clone()) for k, v in self.batch.items()}
