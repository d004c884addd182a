"""A tiny regression task for the trainer tests (imported by tests/test_training*.py, test_distributed*)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from pada.training.engine import TrainTask


class ToyData(Dataset):
    """``n`` fixed (x, y) pairs with y = A x + b, drawn from a seeded generator."""

    def __init__(self, n: int = 20, dim: int = 6, seed: int = 123):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        a = torch.randn(dim, 3, generator=g)
        self.y = self.x @ a + 0.5

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i], "index": torch.tensor(i)}


class ToyTask(TrainTask):
    """MLP regression; with ``noise > 0`` the loss adds input noise from the generator (tests RNG resume)."""

    name = "toy"

    def __init__(self, noise: float = 0.1, n: int = 20):
        self.noise, self.n = noise, n
        self.seen: list[int] = []

    def build(self) -> None:
        self.net = nn.Sequential(nn.Linear(6, 16), nn.SiLU(), nn.Linear(16, 3))

    def trainable_modules(self):
        return {"net": self.net}

    def dataset(self):
        return ToyData(self.n)

    def loss(self, batch, generator):
        x = batch["x"]
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator, device=generator.device)
        self.seen.extend(batch["index"].tolist())
        err = (self.net(x) - batch["y"]).pow(2)
        return {"total": err.mean(), "mse0": err[:, 0].mean()}

    def config_dict(self):
        return {"noise": self.noise, "n": self.n}
