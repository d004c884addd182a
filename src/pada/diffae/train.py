"""Train a DiffAE (semantic encoder + conditional UNet) on a folder of aligned images.

``pada train diffae --data DIR --preset pada64 --out runs/x --steps N [--batch-size B] [--bf16] ...``

The recipe is the official DiffAE autoencoder training: images in [-1, 1] with random horizontal flips;
for each image a timestep ``t ~ U{0..T-1}`` (T = 1000, linear β schedule) and noise ``ε ~ N(0, I)``;
``z_sem = Enc(x0)`` from the clean image; loss ``‖ε_θ(x_t, t, z_sem) − ε‖²`` with
``x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε`` (paper Eq. 1), encoder and UNet trained jointly end to end;
Adam (lr 1e-4, no weight decay), EMA of the weights (decay 0.9999) used for sampling and export.

Outputs under ``--out``: ``checkpoints/step_*.pt`` (resumable, see :mod:`pada.training.engine`),
``tb/`` (TensorBoard), ``metrics.jsonl``, ``samples/step_*_samples.png`` (DDIM renders from fresh noise
with the semantic codes of held-out images; top row the images themselves), ``samples/step_*_recon.png``
(held-out images, top, and their reconstructions ``encode -> encode_stochastic -> render``, bottom) with
the reconstruction PSNR in ``samples/step_*.json``, and the final export ``diffae_ema.safetensors``
(EMA weights, config and training metadata; load with :func:`pada.networks.checkpoint.load_diffae`).

``--data synthetic:blobs[:N[:SEED]]`` trains on :mod:`pada.training.synthetic` images instead of a folder.
``--recipe NAME`` starts from a training recipe (:mod:`pada.recipes`; the shipped DiffAE's stages are
``diffae-demo64-*``); the recipe is recorded in the checkpoints and the export metadata (``recipe_file``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from pada import recipes, validation
from pada.diffae.model import DiffAE
from pada.errors import PadaError
from pada.evaluation.metrics import psnr  # the one PSNR (dB, images in [-1, 1]); re-exported here
from pada.frozen import freeze
from pada.training.engine import TrainConfig, Trainer, TrainTask, add_train_args, config_from_args

EXPORT_NAME = "diffae_ema.safetensors"
SYNTHETIC_PREFIX = "synthetic:blobs"


@dataclass
class DiffAETaskConfig:
    """What to train (the trainer's :class:`TrainConfig` says how)."""

    data: str                                   # image folder, or "synthetic:blobs[:N[:SEED]]"
    preset: str = "pada64"
    model_overrides: list[str] = field(default_factory=list)  # DiffAEConfig "key=value" changes
    T: int = 1000                               # diffusion steps of the training schedule  # noqa: N815
    flip: bool = True                           # random horizontal flips (official DiffAE)
    holdout: int = 8                            # held-out images shown in the grids
    test_fraction: float = 0.05                 # image folders: share held out by file-name hash
    sample_steps: int = 20                      # DDIM steps of the sample grid
    encode_steps: int = 50                      # DDIM steps of encode_stochastic and render in the recon grid
    grid_seed: int = 1234                       # noise of the sample grid (the same at every step)
    high_t_fraction: float = 0.0                # share of each batch with t ~ U{T/2..T-1} instead of
                                                # U{0..T-1} (0 = official; more signal where only z helps)
    init_from: str = ""                         # warm start: weights of a pada DiffAE file / registry
                                                # name / training checkpoint (EMA); fresh optimiser
    diffusion_weight: float = 1.0               # weight of the ε/v loss (0: train only the coarse path)
    coarse_weight: float = 1.0                  # weight of the coarse-image loss (coarse_size networks)
    z_noise: float = 0.0                        # denoising noise on z before the coarse decoder
    feature_loss: dict[str, float] = field(default_factory=dict)  # critic name -> weight (FaceFeatureLoss)
    feature_t_min: int = 500                    # the feature loss scores rows with t >= this only
    feature_chain_t: int = 0                    # > 0: also score x̂0 one re-noising later, at
                                                # U{this..t-1} (DiffAE.chain_x0); 0 = off


#: critics ``--feature-loss`` accepts (frozen, differentiable, offline weights; :mod:`pada.critics`)
FEATURE_CRITICS = ("sface", "dlib-age", "dlib-gender")


def parse_feature_loss(items: Sequence[str]) -> dict[str, float]:
    """``["sface=0.5", "dlib-age=0.5"]`` -> ``{"sface": 0.5, "dlib-age": 0.5}`` (bad items: PadaError)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in FEATURE_CRITICS:
            raise PadaError(f"--feature-loss {item}: expected CRITIC=WEIGHT with CRITIC one of "
                            f"{', '.join(FEATURE_CRITICS)}")
        try:
            w = float(value)
        except ValueError:
            raise PadaError(f"--feature-loss {item}: the weight {value!r} is not a number") from None
        if not 0.0 <= w < float("inf"):
            raise PadaError(f"--feature-loss {item}: the weight must be a finite number >= 0")
        out[name] = w
    return out


def _features(out: Any) -> Tensor:
    """A critic's output as (B, F): the age critic's ``.features`` (its logits), else the tensor itself."""
    return (out.features if hasattr(out, "features") else out).flatten(1).float()


class FaceFeatureLoss(nn.Module):
    """Design (c) of the DiffAE bake-off (docs/diffae.md): frozen face critics score the clean image x̂0 that
    the network implies at noisy t against the real image, ``Σ_c w_c · mean(1 − cos(c(x̂0), c(x0)))`` over
    the rows with ``t >= t_min``. At high t only z (and the coarse image it draws) can tell the UNet whose
    face it is, so the loss asks the decoder to render the person's identity, age and gender from z, where
    the pixel MSE accepts a blurred mean face. Each term is also returned alone as ``feat_<critic>``.

    ``critics``: name -> frozen module (``images (B, 3, H, W) in [-1, 1] -> (B, F)`` or an ``AgeOutput``).
    """

    def __init__(self, critics: dict[str, nn.Module], weights: dict[str, float], t_min: int = 500) -> None:
        super().__init__()
        if set(critics) != set(weights):
            raise PadaError(f"feature loss: critics {sorted(critics)} do not match weights {sorted(weights)}")
        self.critics = nn.ModuleDict(critics)
        self.weights = dict(weights)
        self.t_min = int(t_min)
        freeze(self.critics)

    def forward(self, x0_pred: Tensor, x0: Tensor, t: Tensor) -> dict[str, Tensor]:
        rows = t >= self.t_min
        scored = bool(rows.any())
        out: dict[str, Tensor] = {}
        total = x0_pred.new_zeros(())
        for name, critic in self.critics.items():
            if not scored:
                term = x0_pred.sum() * 0.0  # still in the graph
            else:
                with torch.no_grad():
                    ref = _features(critic(x0[rows]))
                pred = _features(critic(x0_pred[rows]))
                term = (1.0 - torch.nn.functional.cosine_similarity(pred, ref, dim=1)).mean()
            out[f"feat_{name}"] = term
            total = total + self.weights[name] * term
        out["feature_total"] = total
        return out

    def train(self, mode: bool = True) -> FaceFeatureLoss:  # the critics stay in eval mode
        super().train(mode)
        self.critics.eval()
        return self


def parse_model_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["model_channels=16", "channel_mult=1,2"]`` -> typed values (JSON, or comma lists of numbers)."""
    pairs = (validation.split_key_value(item, "--model-set") for item in items)  # the one key=value parser
    return {key: validation.parse_literal(text) for key, text in pairs}


def build_model_config(preset: str, overrides: Sequence[str]):
    """The :class:`~pada.networks.config.DiffAEConfig` of ``preset`` with ``overrides`` applied."""
    from pada.networks.config import DiffAEConfig, load_preset

    cfg = load_preset(preset)
    changes = parse_model_overrides(overrides)
    if not changes:
        return cfg
    data = {**cfg.to_dict(), **changes}
    return DiffAEConfig.from_dict(data, source=f"preset {preset} with --model-set")


def reconstruct(unet: nn.Module, x0: Tensor, steps: int = 50, schedule=None) -> Tensor:
    """DiffAE autoencoding of ``x0`` (B,3,H,W) in [-1,1]: ``z = encode(x0)``,
    ``x_T = encode_stochastic(x0, z, T=steps)`` (DDIM inversion), ``render(x_T, z, T=steps)``."""

    model = DiffAE(unet, schedule)
    with torch.no_grad():
        z = model.encode(x0)
    return model.render(model.encode_stochastic(x0, z, T=steps), z, T=steps)


def _save_grid(rows: list[Tensor], path: Path) -> Path:
    from pada.faces.grid import save_grid  # the one grid writer

    return save_grid(torch.cat(rows), path, nrow=rows[0].shape[0])


class DiffAETask(TrainTask):
    """The DiffAE autoencoder as a :class:`TrainTask` (trainable module ``"unet"``)."""

    name = "diffae"

    def __init__(self, config: DiffAETaskConfig, recipe: str = "", recipe_file: dict | None = None):
        self.cfg = config
        self.recipe = recipe  # the command line
        self.recipe_file = recipe_file  # the --recipe used (pada.recipes.Recipe.record), if any
        self.model_config = build_model_config(config.preset, config.model_overrides)
        self._train: Dataset | None = None
        self._grid: Tensor | None = None
        self.data_hash = ""

    # -- data --------------------------------------------------------------------------------------
    def _load_data(self) -> None:
        size = self.model_config.image_size
        spec = self.cfg.data
        if spec.startswith(SYNTHETIC_PREFIX):
            from pada.training.synthetic import BlobImages

            parts = spec[len(SYNTHETIC_PREFIX):].lstrip(":").split(":")
            try:
                n = int(parts[0]) if parts[0] else 512
                seed = int(parts[1]) if len(parts) > 1 else 0
            except ValueError:
                raise PadaError(f"--data {spec}: expected synthetic:blobs[:N[:SEED]]") from None
            train = BlobImages(n, size, seed)
            self._train = train
            self._grid = BlobImages(self.cfg.holdout, size, seed, offset=n).images
            self.data_hash = train.fingerprint()
            return
        from pada.data.datasets import AlignedFaceDataset

        root = Path(spec)
        if not root.is_dir():
            raise PadaError(f"{root}: --data must be a folder of aligned images or synthetic:blobs")
        train = AlignedFaceDataset(root, size=size, split="train", test_fraction=self.cfg.test_fraction)
        try:
            test = AlignedFaceDataset(root, size=size, split="test", test_fraction=self.cfg.test_fraction)
        except PadaError:  # too few files for a test split: show training images instead
            test = train
        k = min(self.cfg.holdout, len(test))
        self._grid = torch.stack([test[i]["image"] for i in range(k)])
        self._train = train
        h = hashlib.sha256()
        for rel in train.files:  # the listing (names and sizes), not the pixels: fast on 70k files
            h.update(f"{rel}\t{(root / rel).stat().st_size}\n".encode())
        self.data_hash = h.hexdigest()

    # -- TrainTask -----------------------------------------------------------------------------------
    def build(self) -> None:
        from pada.diffusion import linear_schedule
        from pada.networks.unet import DiffAEUNet

        self.unet = DiffAEUNet(self.model_config)
        fitted, self.pca_fit = False, {}
        if self.cfg.init_from:
            state = init_weights(self.cfg.init_from, self.unet)
            fitted = bool(state.get("coarse.pca.mean", torch.zeros(1)).any())  # zeros until fitted
            self.unet.load_state_dict(state)
        if self.model_config.coarse_pca and not fitted:
            self.pca_fit = fit_eigenface_code(self.unet, self.dataset())
        self.schedule = linear_schedule(self.cfg.T)
        self.diffae = DiffAE(self.unet, self.schedule)  # shares self.unet (the trained module)
        self.feature_loss = None
        if self.cfg.feature_loss:
            from pada.critics.registry import load_critic

            critics = {name: load_critic(name) for name in self.cfg.feature_loss}
            self.feature_loss = FaceFeatureLoss(critics, self.cfg.feature_loss, self.cfg.feature_t_min)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def dataset(self) -> Dataset:
        if self._train is None:
            self._load_data()
        assert self._train is not None
        return self._train

    def loss(self, batch: Any, generator: torch.Generator) -> dict[str, Tensor]:
        """ε-prediction MSE at uniform random t (official DiffAE ``training_losses``); v-MSE for a
        ``prediction=v`` network (logged as ``loss/v_mse``).

        batch["image"]: (B, 3, H, W) in [-1, 1]. Randomness (flip, t, ε) comes from ``generator``.
        """
        x0 = batch["image"]
        if self.cfg.flip:
            flip = (torch.rand(x0.shape[0], generator=generator, device=generator.device) < 0.5).to(x0.device)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = None  # None: the loss draws t ~ U{0..T-1}, then ε, from the generator
        if self.cfg.high_t_fraction > 0:
            t = self.draw_timesteps(x0.shape[0], generator).to(x0.device)
        feat = self.feature_loss is not None and self.cfg.diffusion_weight > 0
        terms = self.diffae.loss_terms(x0, generator, t=t, diffusion_weight=self.cfg.diffusion_weight,
                                       coarse_weight=self.cfg.coarse_weight, z_noise=self.cfg.z_noise,
                                       return_x0=feat)
        if feat:
            assert self.feature_loss is not None
            self.feature_loss.to(x0.device)
            x0_pred, t, z = terms.pop("x0_pred"), terms.pop("t"), terms.pop("z")
            coarse = terms.pop("coarse", None)
            extra = self.feature_loss(x0_pred, x0, t)
            terms["total"] = terms["total"] + extra.pop("feature_total")
            terms.update(extra)
            if self.cfg.feature_chain_t > 0:
                chain = self.chain_terms(x0_pred, x0, t, z, coarse, generator)
                terms["total"] = terms["total"] + chain.pop("chain_total")
                terms.update(chain)
        return {k: v if k == "total" else v.detach() for k, v in terms.items()}

    def chain_terms(self, x0_pred: Tensor, x0: Tensor, t: Tensor, z: Tensor, coarse: Tensor | None,
                    generator: torch.Generator) -> dict[str, Tensor]:
        """``--feature-chain-t``: the feature loss once more on the x̂0 implied one re-noising later
        (:meth:`DiffAE.chain_x0`), for the rows the feature loss scored. Logged as ``chain_<critic>``; the
        caller adds ``chain_total`` (weighted as the feature loss) to the loss. The pixel losses do not see
        these rows again."""
        assert self.feature_loss is not None
        rows = t >= max(self.cfg.feature_t_min, self.cfg.feature_chain_t + 1)
        if not bool(rows.any()):
            zero = x0_pred.sum() * 0.0
            return {"chain_total": zero, **{f"chain_{n}": zero.detach() for n in self.feature_loss.weights}}
        x0_2, _ = self.diffae.chain_x0(x0_pred[rows], z[rows], t[rows], self.cfg.feature_chain_t, generator,
                                       coarse=None if coarse is None else coarse[rows])
        scored = self.feature_loss(x0_2, x0[rows], t[rows])
        out = {f"chain_{k[5:]}": v for k, v in scored.items() if k.startswith("feat_")}
        out["chain_total"] = scored["feature_total"]
        return out

    def draw_timesteps(self, batch: int, generator: torch.Generator) -> Tensor:
        """(batch,) t: U{0..T-1}, except a ``high_t_fraction`` share drawn from U{T/2..T-1}. At high t the
        image is mostly noise and only z can tell the decoder whose face it is, so this puts more of the
        training signal on the semantic code (a pada option for small CPU runs; official DiffAE: 0)."""
        T, dev = self.cfg.T, generator.device  # noqa: N806
        t = torch.randint(0, T, (batch,), generator=generator, device=dev)
        high = torch.randint(T // 2, T, (batch,), generator=generator, device=dev)
        pick = torch.rand(batch, generator=generator, device=dev) < self.cfg.high_t_fraction
        return torch.where(pick, high, t)

    def sample_grids(self, step: int, out_dir: Path, modules: nn.ModuleDict) -> list[Path]:

        model = DiffAE(modules["unet"], self.schedule)
        if self._grid is None:
            self._load_data()
        assert self._grid is not None
        dev = next(model.parameters()).device
        x = self._grid.to(dev)
        g = torch.Generator(device=dev).manual_seed(self.cfg.grid_seed)
        with torch.no_grad():
            z = model.encode(x)
        samples = model.render(model.sample_noise(x.shape[0], g, dev), z, T=self.cfg.sample_steps)
        k = self.cfg.encode_steps
        recon = model.render(model.encode_stochastic(x, z, T=k), z, T=k)
        p = psnr(recon, x)
        stem = out_dir / f"step_{step:08d}"
        paths = [_save_grid([x, samples], stem.with_name(stem.name + "_samples.png")),
                 _save_grid([x, recon], stem.with_name(stem.name + "_recon.png"))]
        stats = {"step": step, "recon_psnr_mean": float(p.mean()), "recon_psnr": [float(v) for v in p],
                 "encode_steps": self.cfg.encode_steps, "sample_steps": self.cfg.sample_steps}
        stem.with_suffix(".json").write_text(json.dumps(stats, indent=1) + "\n")
        return paths

    def config_dict(self) -> dict[str, Any]:
        return {"data": self.cfg.data, "preset": self.cfg.preset, "T": self.cfg.T, "flip": self.cfg.flip,
                "model": self.model_config.to_dict(), "init_from": self.cfg.init_from,
                "high_t_fraction": self.cfg.high_t_fraction, "diffusion_weight": self.cfg.diffusion_weight,
                "coarse_weight": self.cfg.coarse_weight, "z_noise": self.cfg.z_noise,
                "feature_loss": dict(self.cfg.feature_loss), "feature_t_min": self.cfg.feature_t_min,
                "feature_chain_t": self.cfg.feature_chain_t}

    def state_dict(self) -> dict[str, Any]:
        """The ``--recipe`` of the run that wrote a checkpoint travels in it (for ``--export-from``)."""
        return {"recipe_file": self.recipe_file} if self.recipe_file else {}

    def export(self, modules: nn.ModuleDict, out_dir: Path, info: dict[str, Any]) -> list[Path]:
        from pada.networks.checkpoint import save_diffae

        meta = {"recipe": self.recipe, "data": self.cfg.data, "data_hash": self.data_hash,
                "preset": self.cfg.preset, "steps": info["steps"], "images_seen": info["images_seen"],
                "final_losses": info["final_losses"], "train_config": info["train_config"],
                "world_size": info["world_size"], "T": self.cfg.T}
        if self.pca_fit:  # a measurement of this run's eigenface fit, not a setting: kept out of config_dict
            meta["pca_fit"] = self.pca_fit
        if self.recipe_file:
            meta["recipe_file"] = self.recipe_file
        return [save_diffae(modules["unet"], out_dir / EXPORT_NAME, metadata=meta)]


def init_weights(spec: str, unet: nn.Module) -> dict[str, Tensor]:
    """The state dict of ``spec`` for warm-starting ``unet``: a ``pada train diffae`` checkpoint ``*.pt``
    (its EMA), or a pada DiffAE safetensors file / registry name. The architectures must match key for key
    (one-line :class:`~pada.errors.CheckpointError` otherwise); ``prediction`` may differ, so an ε-network
    can be fine-tuned into a v-network."""
    from pada.networks.checkpoint import check_state_dict

    if spec.endswith(".pt"):
        src, _ = load_checkpoint_ema(spec)
    else:

        src = DiffAE.from_pretrained(spec).unet
    state = {k: v.float() for k, v in src.state_dict().items()}
    cfg, src_cfg = unet.config, src.config
    if cfg.coarse_size and (not src_cfg.coarse_size or cfg.coarse_pca != src_cfg.coarse_pca):
        state = _add_coarse_path(unet, state)
    check_state_dict(unet, state, spec, f"DiffAE config {unet.config.name!r} (--init-from)")
    return state


def _add_coarse_path(unet: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Warm start a coarse-path network from one without (or with a different ``coarse_pca``): the first
    convolution gets zero weights for the extra coarse-image channels (the network starts out computing
    exactly what the source computed); with ``coarse_pca = k`` the encoder keeps its first
    ``enc_out_channels - k`` outputs (the eigenface code takes the last k entries of z); the coarse
    decoder keeps its fresh initialisation (its eigenface buffers are fitted by the training task)."""
    state = dict(state)
    own = unet.state_dict()
    for key in ("input_blocks.0.0.weight", "encoder.out.3.weight", "encoder.out.3.bias"):
        w, want = state[key], own[key].shape
        if key.startswith("input_blocks") and want[1] > w.shape[1]:
            state[key] = torch.cat([w, w.new_zeros(w.shape[0], want[1] - w.shape[1], *w.shape[2:])], dim=1)
        elif key.startswith("encoder") and want[0] < w.shape[0]:
            state[key] = w[: want[0]].clone()
    for k, v in own.items():
        if k.startswith("coarse."):
            state[k] = v.detach().clone().float()
    return state


@torch.no_grad()
def fit_eigenface_code(unet: nn.Module, data: Dataset, limit: int = 4096) -> dict[str, float]:
    """Fit the eigenface code (``coarse.pca``, see :class:`pada.networks.unet.EigenfaceCode`) of a
    ``coarse_pca`` network to up to ``limit`` training images and their mirror images, scaled to the
    root-mean-square entry of the learned part of z on the same images. Returns the fit's report."""
    n = min(len(data), max(1, limit // 2))
    x = torch.stack([data[i]["image"] for i in range(n)]).float()
    x = torch.cat([x, x.flip(-1)])
    was = unet.training
    unet.eval()
    z = torch.cat([unet.encoder(x[i:i + 256]) for i in range(0, len(x), 256)])
    unet.train(was)
    report = unet.coarse.pca.fit(x, float(z.square().mean().sqrt()))
    print(f"pada train diffae: eigenface code fitted on {len(x)} images: {unet.config.coarse_pca} components "
          f"keep {100 * report['variance_kept']:.1f}% of the coarse variance, {report['psnr']:.1f} dB",
          file=sys.stderr)
    return report


def load_checkpoint_ema(path: str | os.PathLike, ema: bool = True):
    """The DiffAE UNet (eval mode) of a ``pada train diffae`` training checkpoint ``step_*.pt``.

    Takes the EMA weights (``ema=False``: the online weights), so a run can be inspected or exported at any
    checkpoint without finishing it. Returns ``(unet, info)`` with ``info`` = step and task config.
    """
    from pada.networks.config import DiffAEConfig
    from pada.networks.unet import DiffAEUNet
    from pada.training.checkpointing import load_checkpoint

    state = load_checkpoint(Path(path))
    task = state.get("task", {})
    if task.get("name") != "diffae":
        raise PadaError(f"{path}: not a `pada train diffae` checkpoint (task {task.get('name')!r})")
    model_cfg = dict(task["config"]["model"])
    unet = DiffAEUNet(DiffAEConfig.from_dict(model_cfg))
    weights = state["ema" if ema else "model"]
    unet.load_state_dict({k.removeprefix("unet."): v for k, v in weights.items()})
    return unet.eval(), {"step": int(state["step"]), "task": task["config"], "train": state.get("config", {}),
                         "recipe_file": (state.get("task_state") or {}).get("recipe_file")}


DEFAULTS = TrainConfig(out_dir="runs/diffae", batch_size=64, lr=1e-4, ema_decay=0.9999, log_every=50,
                       sample_every=5000, ckpt_every=5000, keep_last=2)


def build_parser() -> argparse.ArgumentParser:
    p = validation.ArgumentParser(prog="pada train diffae", description=__doc__.split("\n\n")[0],
                                epilog="Export the EMA weights of any training checkpoint without training: "
                                       "pada train diffae --export-from RUN/checkpoints/step_N.pt --out FILE "
                                       "[--fp16-export]")
    p.add_argument("--data", required=True,
                   help="folder of aligned images (PNG/JPG), or synthetic:blobs[:N[:SEED]]")
    p.add_argument("--preset", default="pada64", help="network preset (tiny32, pada64, ffhq128_autoenc, ...)")
    p.add_argument("--model-set", dest="model_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a DiffAEConfig field of the preset, e.g. --model-set model_channels=16")
    p.add_argument("--holdout", type=validation.int_option(0, 1024), default=8,
                   help="held-out images in the sample/recon grids")
    p.add_argument("--sample-steps", type=validation.int_option(1, validation.LIMITS["steps"]), default=20,
                   help="DDIM steps of the sample grid")
    p.add_argument("--encode-steps", type=validation.int_option(1, validation.LIMITS["steps"]), default=50,
                   help="DDIM steps of the reconstruction grid")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--high-t-fraction", type=validation.float_option(0.0, 1.0), default=0.0, metavar="F",
                   help="share of each batch with t from the noisier half U{T/2..T-1} (default 0: official)")
    p.add_argument("--init-from", default="", metavar="WEIGHTS",
                   help="warm start from a DiffAE file, registry name or training checkpoint (EMA weights); "
                        "a network without a coarse path can warm-start one with it")
    p.add_argument("--diffusion-weight", type=float, default=1.0, metavar="W",
                   help="weight of the eps/v loss; 0 trains only the coarse path (its autoencoder)")
    p.add_argument("--coarse-weight", type=float, default=1.0, metavar="W",
                   help="weight of the coarse-image loss of a coarse_size network")
    p.add_argument("--z-noise", type=float, default=0.0, metavar="S",
                   help="denoising noise on z (fraction of its std) before the coarse decoder")
    p.add_argument("--feature-loss", action="append", default=[], metavar="CRITIC=W",
                   help="face-feature loss on the x̂0 the network implies at noisy t: 1 - cos of a frozen "
                        "critic's features of x̂0 and of the image, weight W (repeatable; CRITIC: "
                        f"{', '.join(FEATURE_CRITICS)})")
    p.add_argument("--feature-t-min", type=validation.int_option(0, 999), default=500, metavar="T",
                   help="the feature loss scores only rows with t >= T (default 500)")
    p.add_argument("--feature-chain-t", type=validation.int_option(0, 998), default=0, metavar="T2",
                   help="with --feature-loss: also score the x̂0 implied after re-noising the network's own "
                        "x̂0 to a t2 in [T2, t), as the mid-t sampling steps see it (0 = off)")
    recipes.add_recipe_argument(p)
    add_train_args(p, DEFAULTS)
    return p


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, fp16: bool = False,
                      ema: bool = True) -> Path:
    """Export the EMA weights of training checkpoint ``ckpt`` as a pada DiffAE safetensors file ``out``.

    ``ema=False`` exports the online weights instead: early in a run the EMA still carries a large share of
    the random initialisation (decay 0.999 keeps 0.999**step of it when ``ema_warmup`` is off).

    The metadata records the run: its data folder and listing hash, preset, steps, images seen, the last
    logged losses (``metrics.jsonl`` of the run) and the training config, like the end-of-run export.
    """
    from pada.networks.checkpoint import save_diffae

    ckpt = Path(ckpt)
    unet, info = load_checkpoint_ema(ckpt, ema=ema)
    task, train = info["task"], info["train"]
    run_dir = ckpt.parent.parent
    last: dict[str, Any] = {}
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= info["step"]:
                last = row
    data_hash = ""
    root = Path(task.get("data", ""))
    if root.is_dir():
        tmp = DiffAETask(DiffAETaskConfig(data=str(root), preset=task.get("preset", "pada64")))
        tmp.model_config = unet.config
        tmp._load_data()
        data_hash = tmp.data_hash
    meta = {"recipe": f"pada train diffae (run {run_dir}), exported with --export-from {ckpt.name}",
            "data": task.get("data", ""), "data_hash": data_hash, "preset": task.get("preset", ""),
            "steps": info["step"], "images_seen": info["step"] * int(train.get("batch_size", 0)),
            "final_losses": {k.removeprefix("loss/"): v for k, v in last.items() if k.startswith("loss/")},
            "train_config": train, "T": task.get("T", 1000), "weights": "ema" if ema else "online"}
    if info["recipe_file"]:
        meta["recipe_file"] = info["recipe_file"]
    return save_diffae(unet, Path(out), metadata=meta, fp16=fp16)


def main(argv: Sequence[str] | None = None) -> int:
    """``pada train diffae ...`` (callable from tests with a list of arguments)."""
    argv = list(argv) if argv is not None else None
    if argv is None:
        argv = sys.argv[1:]
    if "--export-from" in argv:  # export only: --export-from CKPT --out FILE [--fp16-export]
        ex = validation.ArgumentParser(prog="pada train diffae --export-from")
        ex.add_argument("--export-from", required=True, help="training checkpoint step_*.pt")
        ex.add_argument("--out", required=True, help="output .safetensors file")
        ex.add_argument("--fp16-export", action="store_true", help="store the weights in float16")
        ex.add_argument("--online", action="store_true", help="export the online weights instead of the EMA")
        a = ex.parse_args(argv)
        path = export_checkpoint(a.export_from, a.out, fp16=a.fp16_export, ema=not a.online)
        print(f"exported {path}")
        return 0
    args, recipe_used = recipes.parse_with_recipe(build_parser(), argv, "diffae")
    if args.feature_chain_t and not args.feature_loss:
        raise PadaError("--feature-chain-t needs --feature-loss (its critics score the chained x̂0)")
    train_cfg = config_from_args(args, DEFAULTS)
    task_cfg = DiffAETaskConfig(data=args.data, preset=args.preset,
                                model_overrides=list(args.model_overrides), flip=not args.no_flip,
                                holdout=args.holdout, sample_steps=args.sample_steps,
                                encode_steps=args.encode_steps, init_from=args.init_from,
                                high_t_fraction=args.high_t_fraction,
                                diffusion_weight=args.diffusion_weight, coarse_weight=args.coarse_weight,
                                z_noise=args.z_noise, feature_loss=parse_feature_loss(args.feature_loss),
                                feature_t_min=args.feature_t_min, feature_chain_t=args.feature_chain_t)
    recipe = "pada train diffae " + shlex.join(argv if argv is not None else [])
    task = DiffAETask(task_cfg, recipe=recipe, recipe_file=recipe_used.record() if recipe_used else None)
    result = Trainer(task, train_cfg).fit()
    for path in result.exported:
        print(f"exported {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PadaError as exc:  # one line, as `pada train diffae` prints it
        sys.exit(f"error: {exc}")
