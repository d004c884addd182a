"""``pada train pada``: train PADA's age encoder and adaptive modulation on the shared engine.

The DiffAE (semantic encoder + conditional UNet), the age and identity critics and the vision-language
model are frozen; only :class:`~pada.aging.model.PadaModel` (E_age of §3.2.1 + the modulation of §3.2.2)
is optimised, with the losses of :class:`~pada.aging.objective.PadaObjective` (Eq. 7–12).

Paper defaults (§4, "Implementation Details"): Adam, lr 1e-4, β = (0.9, 0.999), batch 24, 20 epochs,
λ = (0.6, 0.01, 0.2, 0.01, 0.1), margin 0.15, ε = 1e-3, p(reference = source) = 0.167. No EMA and no
gradient clipping are mentioned, so both are off by default (``--ema-decay``, ``--set grad_clip=1``).

Example::

    pada train pada --data data/demo --diffae runs/diffae/diffae.safetensors --vl faceclip \\
        --age-critic dlib-age --id-critic sface --out runs/pada --bf16
    pada train pada ... --without L_id          # a Table 3 variant
    pada train pada --recipe pada-demo64-v4     # the shipped model's recipe (pada.recipes)

Outputs in ``--out``: checkpoints (exact resume with ``--resume``), ``metrics.jsonl`` and TensorBoard logs
of every loss term, sample grids, and ``pada.safetensors`` (the model, config in the metadata; with
``--recipe``, the recipe too: ``recipe_file``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pada import recipes, validation
from pada.aging.config import LOSS_NAMES, LossConfig, PadaConfig
from pada.aging.model import PadaModel
from pada.aging.objective import Frozen, PadaObjective
from pada.errors import PadaError
from pada.training.engine import (
    TrainConfig,
    Trainer,
    TrainTask,
    add_train_args,
    apply_overrides,
    config_from_args,
)

EXPORT_NAME = "pada.safetensors"

# Paper defaults for the engine (§4).
PADA_TRAIN_DEFAULTS = TrainConfig(out_dir="runs/pada", batch_size=24, epochs=20, lr=1e-4, betas=(0.9, 0.999),
                                  ema_decay=0.0, grad_clip=0.0, log_every=20, ckpt_every=1000)

# Age groups of the target descriptions shown in the sample grids (columns after the input).
SAMPLE_GROUPS = (1, 3, 5, 6)


@dataclass
class PadaTaskOptions:
    """What ``pada train pada`` trains on and with (stored in checkpoints; must match on resume)."""

    data: str = ""
    labels: str = ""
    diffae: str = ""
    diffae_preset: str = ""           # preset of an official last.ckpt (pada safetensors carry their config)
    vl: str = "faceclip"
    age_critic: str = "dlib-age"
    id_critic: str = "sface"
    size: int = 0                     # 0 = the DiffAE's image size
    p_same: float = 0.167
    p_text: float = 0.5
    text_groups: str = "present"      # "all": text rows may target groups with no image (AgingPairDataset)
    flip: bool = True
    stats_batches: int = 50           # batches of 16 used for dataset statistics (stats="dataset")
    sample_faces: int = 4
    sample_steps: int = 25
    pada: dict[str, Any] = field(default_factory=dict)   # PadaConfig overrides
    loss: dict[str, Any] = field(default_factory=dict)   # LossConfig overrides


def find_data(data: str, labels: str, size: int) -> tuple[Path, Path]:
    """(image folder, labels table) of a data folder.

    Images: ``DIR/aligned/<size>`` (the demo layout; else the smallest larger size folder, else the largest),
    else ``DIR/aligned``, else ``DIR``. Table: ``labels`` when given, else ``DIR/labels.csv|parquet``.
    """
    root = Path(data)
    if not root.is_dir():
        raise PadaError(f"{root}: no such data folder (build the demo set with `pada data demo` or point to "
                        "a folder of aligned faces with a labels table)")
    if labels:
        table = Path(labels)
        if not table.is_file():
            raise PadaError(f"{table}: no such labels table")
    else:
        found = [root / n for n in ("labels.csv", "labels.parquet") if (root / n).is_file()]
        if not found:
            raise PadaError(f"{root}: no labels.csv or labels.parquet (label the faces with `pada label` "
                            "first)")
        table = found[0]
    aligned = root / "aligned"
    if not aligned.is_dir():
        return root, table
    sizes = sorted(int(d.name) for d in aligned.iterdir() if d.is_dir() and d.name.isdigit())
    if not sizes:
        return aligned, table
    bigger = [s for s in sizes if s >= size]
    return aligned / str(bigger[0] if bigger else sizes[-1]), table


class PadaTask(TrainTask):
    """The PADA :class:`~pada.training.engine.TrainTask`.

    Frozen networks are loaded by name in :meth:`build` unless given to the constructor (tests inject tiny
    random ones); ``dataset`` can also be injected (any map-style dataset of AgingPairDataset items).
    """

    name = "pada"

    def __init__(self, options: PadaTaskOptions, *, diffae=None, vl=None, age_critic=None, id_critic=None,
                 dataset=None, trust_pickle: bool = False, recipe_file: dict | None = None) -> None:
        self.options = options
        self.recipe_file = recipe_file  # the --recipe used (pada.recipes.Recipe.record), if any
        self.trust_pickle = bool(trust_pickle)  # for --diffae files that need unpickling (not a task setting)
        self._diffae, self._vl, self._dataset = diffae, vl, dataset
        self._age, self._id = age_critic, id_critic
        self.loss_cfg = LossConfig(**options.loss)
        self.model: PadaModel | None = None
        self.objective: PadaObjective | None = None

    # ---------------------------------------------------------------------------------------- setup
    def build(self) -> None:
        o = self.options
        if self._dataset is None:
            find_data(o.data, o.labels, o.size)  # bad data paths fail before any model is loaded
        if self._diffae is None:
            if not o.diffae:
                raise PadaError("give the frozen DiffAE with --diffae PATH|name (train one with "
                                "`pada train diffae`)")
            from pada.diffae import DiffAE

            self._diffae = DiffAE.from_pretrained(o.diffae, preset=o.diffae_preset or None,
                                                  trust_pickle=self.trust_pickle)
        if self._vl is None:
            from pada.vl import load_vl

            self._vl = load_vl(o.vl)
        if self._age is None and self.loss_cfg.enabled("L_age"):
            from pada.critics.registry import load_critic

            self._age = load_critic(o.age_critic)
        if self._id is None and self.loss_cfg.enabled("L_id"):
            from pada.critics.registry import load_critic

            self._id = load_critic(o.id_critic)
        z_dim = int(self._diffae.unet.config.enc_out_channels)
        names = {"diffae": o.diffae, "diffae_preset": o.diffae_preset, "vl": o.vl, "age_critic": o.age_critic,
                 "id_critic": o.id_critic}
        cfg = PadaConfig(**{"e_dim": int(self._vl.dim), "z_dim": z_dim, **names, **o.pada})
        self.model = PadaModel(cfg)
        self.objective = PadaObjective(self.model, Frozen(self._diffae, self._vl, self._age, self._id),
                                       self.loss_cfg)
        if self.loss_cfg.train_hold and not cfg.hold_gender:
            raise PadaError("--loss-set train_hold=true needs --pada-set hold_gender=true")
        if self.loss_cfg.train_guard and not (cfg.tone_guard > 0 or cfg.background_guard > 0):
            raise PadaError("--loss-set train_guard=true needs --pada-set tone_guard=M or background_guard=M "
                            "(M > 0: the guard the losses are to see)")
        if self.loss_cfg.train_bound > 0 and getattr(self._diffae.unet, "coarse", None) is None:
            raise PadaError("--loss-set train_bound=R needs a DiffAE with a coarse image path "
                            f"(coarse_size > 0); {o.diffae!r} has none")
        if cfg.stats == "dataset":
            self._compute_stats()
        if cfg.shift_subspace or self.loss_cfg.lambda_dir > 0 or cfg.hold_gender:
            self._fit_code_priors()  # (shift_age_direction needs shift_subspace)

    def _image_size(self) -> int:
        return self.options.size or int(self._diffae.unet.config.image_size)

    def _base_dataset(self, split: str = "train"):
        from pada.data.datasets import AlignedFaceDataset

        o = self.options
        root, table = find_data(o.data, o.labels, self._image_size())
        return AlignedFaceDataset(root, table, size=self._image_size(), split=split,
                                  flip=o.flip and split == "train")

    def dataset(self):
        if self._dataset is None:
            from pada.data.datasets import AgingPairDataset

            o = self.options
            self._dataset = AgingPairDataset(self._base_dataset("train"), p_same=o.p_same, p_text=o.p_text,
                                             text_groups=o.text_groups)
        return self._dataset

    @torch.no_grad()
    def _compute_stats(self) -> None:
        from torch.utils.data import DataLoader

        from pada.aging.modulation import compute_latent_stats

        dev = next(self._diffae.unet.parameters()).device
        loader = DataLoader(self.dataset(), batch_size=16, shuffle=False)
        mean, std = compute_latent_stats(lambda x: self._diffae.encode(x.to(dev)), loader, image_key="source",
                                         max_batches=self.options.stats_batches)
        self.model.modulation.set_statistics(mean, std)

    @torch.no_grad()
    def _fit_code_priors(self, limit: int = 4096) -> None:
        """Priors from the frozen DiffAE's codes of up to ``limit`` training faces, before the first step:
        the shift basis (PadaConfig.shift_subspace; a resumed run then loads the same fitted buffer from
        its checkpoint), the linear age direction of L_dir (LossConfig.lambda_dir; refitted on resume) and
        the held gender direction (PadaConfig.hold_gender; training sees it only with
        LossConfig.train_hold)."""
        from pada.aging.baseline import LinearAgeDirection
        from pada.data.groups import AGE_GROUPS

        if self.loss_cfg.train_spread and not self.model.cfg.draw_spread:
            raise PadaError("--loss-set train_spread=true needs --pada-set draw_spread=S > 0 (the spread the "
                            "losses are to see)")
        data = self.dataset()
        dev = next(self._diffae.unet.parameters()).device
        n = min(len(data), limit)
        codes, ages, genders = [], [], []
        for i in range(0, n, 64):
            items = [data[j] for j in range(i, min(n, i + 64))]
            x = torch.stack([it["source"] for it in items]).to(dev)
            codes.append(self._diffae.encode(x).float().cpu())
            ages += [float(it["source_age"]) if "source_age" in it
                     else AGE_GROUPS[int(it["source_group"])].center for it in items]
            genders += [it.get("source_gender") for it in items]
        z = torch.cat(codes)
        w = fit = None
        mc = self.model.cfg
        if mc.hold_gender and any(g is None for g in genders):
            raise PadaError("--pada-set hold_gender=true needs gender labels (a labels table with a "
                            "'gender' column)")
        male = torch.tensor([g == "male" for g in genders])
        if self.loss_cfg.lambda_dir > 0 or mc.shift_age_direction or mc.has_spread_basis:
            held = male.double() if self.loss_cfg.train_hold else None  # with gender held (train_hold)
            fit = LinearAgeDirection.fit(z, torch.tensor(ages), covariates=held)
            w = fit.direction
        if self.model.cfg.shift_subspace:
            kept = self.model.modulation.set_subspace(z, w if self.model.cfg.shift_age_direction else None)
            extra = " (+ the age direction)" if self.model.cfg.shift_age_direction else ""
            print(f"pada train pada: shift subspace: {self.model.cfg.shift_subspace} leading directions of "
                  f"{n} training codes hold {100 * kept:.1f}% of their variance{extra}", file=sys.stderr)
        if self.model.cfg.has_spread_basis:  # across age: the age direction and the age read-out taken out
            rank = self.model.modulation.set_spread_basis(torch.stack([fit.direction, fit.reg_weight]))
            seen = "the losses see it" if self.loss_cfg.train_spread else "inference only"
            print(f"pada train pada: draw-spread basis: {rank} directions of the shift subspace across age "
                  f"(default spread {self.model.cfg.draw_spread:g} |z|, {seen})", file=sys.stderr)
        if mc.hold_gender:
            try:
                men, women = self.model.modulation.set_held_directions(z, male)
            except ValueError as exc:
                raise PadaError(f"hold_gender: {exc}") from None
            seen = "training and inference take" if self.loss_cfg.train_hold else "inference takes"
            print(f"pada train pada: gender direction fitted on {n} codes ({men} men, {women} women); "
                  f"{seen} it out of every shift", file=sys.stderr)
        if self.loss_cfg.lambda_dir > 0:
            self.objective.set_age_direction(w)
            rel = float(w.norm() * 50 / z.norm(dim=1).median())
            print(f"pada train pada: L_dir age direction fitted on {n} codes: 50 years = {rel:.3f} |z|",
                  file=sys.stderr)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"pada": self.model}

    def frozen_modules(self) -> dict[str, nn.Module]:
        mods = {"diffae": self._diffae if isinstance(self._diffae, nn.Module) else self._diffae.unet,
                "vl": self._vl, "age_critic": self._age, "id_critic": self._id}
        return {k: v for k, v in mods.items() if isinstance(v, nn.Module)}

    def loss(self, batch: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.objective(batch, generator)

    def config_dict(self) -> dict[str, Any]:
        return {"options": dataclasses.asdict(self.options), "loss": self.loss_cfg.to_dict()}

    # ---------------------------------------------------------------------------------- grids/export
    def sample_grids(self, step: int, out_dir: Path, modules: nn.ModuleDict) -> list[Path]:
        """Rows: the first few training faces; columns: the input, then the PAE mean for 4 target texts."""
        o = self.options
        if o.sample_faces <= 0:
            return []
        from pada.aging.pipeline import AgingPipeline, save_grid
        from pada.data.groups import description

        ds = self.dataset()
        dev = next(modules["pada"].parameters()).device
        pipe = AgingPipeline(self._diffae, self._vl, modules["pada"], device=dev, steps=o.sample_steps)
        rows = []
        for i in range(min(o.sample_faces, len(ds))):
            item = ds[i]
            img, gender = item["source"], item.get("source_gender", "female")
            row = [img[None].cpu()]
            for g in SAMPLE_GROUPS:
                row.append(pipe.age(img, text=description(g, gender), n=1, high_diversity=False).images)
            rows.append(torch.cat(row))
        return [save_grid(torch.cat(rows), out_dir / f"step_{step:07d}.png", nrow=1 + len(SAMPLE_GROUPS))]

    def state_dict(self) -> dict[str, Any]:
        """The ``--recipe`` of the run that wrote a checkpoint travels in it (for ``--export-from``)."""
        return {"recipe_file": self.recipe_file} if self.recipe_file else {}

    def export(self, modules: nn.ModuleDict, out_dir: Path, info: dict[str, Any]) -> list[Path]:
        meta = {"train_info": json.dumps(info, default=str),
                "loss_config": json.dumps(self.loss_cfg.to_dict())}
        if self.recipe_file:
            meta["recipe_file"] = json.dumps(self.recipe_file)
        return [modules["pada"].save(Path(out_dir) / EXPORT_NAME, extra_metadata=meta)]


# ------------------------------------------------------------------------------------------------- CLI
def _kv(items: Sequence[str], cls) -> dict[str, Any]:
    """``["key=value", ...]`` → the changed fields of dataclass ``cls`` (typed; unknown keys are errors)."""
    base = cls()
    out = apply_overrides(base, items)
    return {f.name: getattr(out, f.name) for f in dataclasses.fields(cls)
            if getattr(out, f.name) != getattr(base, f.name)}


def build_parser() -> argparse.ArgumentParser:
    p = validation.ArgumentParser(prog="pada train pada", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("PADA")
    g.add_argument("--data", required=True,
                   help="folder of aligned faces with labels.csv (e.g. the demo set)")
    g.add_argument("--labels", default="", help="labels table (default: DATA/labels.csv or .parquet)")
    g.add_argument("--diffae", required=True,
                   help="frozen DiffAE: a .safetensors / official last.ckpt path or a registry name")
    g.add_argument("--diffae-preset", default="",
                   help="network preset of an official DiffAE last.ckpt (e.g. ffhq256_autoenc)")
    g.add_argument("--trust-pickle", action="store_true",
                   help="allow a --diffae checkpoint that needs unpickling (runs code: only files you trust)")
    g.add_argument("--vl", default="faceclip", help="vision-language model (faceclip | openclip:ViT-B-32)")
    g.add_argument("--age-critic", default="dlib-age", help="age critic of L_age (dlib-age | dex)")
    g.add_argument("--id-critic", default="sface", help="identity critic of L_id (sface | arcface-irse50)")
    g.add_argument("--without", action="append", default=[], choices=LOSS_NAMES, metavar="LOSS",
                   help=f"switch a loss off (repeatable; {', '.join(LOSS_NAMES)})")
    g.add_argument("--size", type=validation.int_option(0, validation.LIMITS["crop_size"]), default=0,
                   help="image size (default: the DiffAE's)")
    g.add_argument("--p-text", type=validation.float_option(0.0, 1.0), default=0.5,
                   help="probability of a text reference (default 0.5)")
    g.add_argument("--text-groups", choices=("present", "all"), default="present",
                   help="target groups of text rows: those with images (default) or all seven, also "
                        "ages the data lacks (L_age skips those rows)")
    g.add_argument("--p-same", type=validation.float_option(0.0, 1.0), default=0.167,
                   help="probability that reference = source (paper 0.167)")
    g.add_argument("--stats", choices=("instance", "dataset"), default=None,
                   help="statistics of Eq. 6: per-vector (instance, default) or per-channel over the data")
    g.add_argument("--sample-faces", type=validation.int_option(0, 1024), default=4,
                   help="faces in the sample grids (0 = none)")
    g.add_argument("--sample-steps", type=validation.int_option(1, validation.LIMITS["steps"]), default=25,
                   help="DDIM steps of the sample grids")
    g.add_argument("--pada-set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a PadaConfig field, e.g. --pada-set eps=0.01 (repeatable)")
    g.add_argument("--loss-set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a LossConfig field, e.g. --loss-set margin=0.2 (repeatable)")
    recipes.add_recipe_argument(g)
    add_train_args(p, PADA_TRAIN_DEFAULTS)
    return p


def options_from_args(args: argparse.Namespace) -> PadaTaskOptions:
    pada = _kv(args.pada_set, PadaConfig)
    if args.stats:
        pada["stats"] = args.stats
    if any(k.startswith("disabled") for k in (s.split("=", 1)[0] for s in args.loss_set)):
        raise PadaError("--loss-set disabled=...: use --without LOSS instead")
    loss = _kv(args.loss_set, LossConfig)
    if args.without:
        loss["disabled"] = sorted(set(args.without))
    return PadaTaskOptions(data=args.data, labels=args.labels, diffae=args.diffae,
                           diffae_preset=args.diffae_preset, vl=args.vl,
                           age_critic=args.age_critic, id_critic=args.id_critic, size=args.size,
                           p_same=args.p_same, p_text=args.p_text, text_groups=args.text_groups,
                           sample_faces=args.sample_faces,
                           sample_steps=args.sample_steps, pada=pada, loss=loss)


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """Export the PADA model of a ``pada train pada`` training checkpoint ``step_*.pt`` as a model file.

    The config is rebuilt from the run's options (frozen-model names, ``--pada-set`` overrides) and the
    weight shapes (CLIP size D, latent size S); the EMA weights are taken when the run kept an EMA. The
    metadata records the checkpoint's step and the loss config, like the end-of-run export.
    """
    from pada.training.checkpointing import load_checkpoint

    ckpt = Path(ckpt)
    state = load_checkpoint(ckpt)
    task = state.get("task") or {}
    if task.get("name") != PadaTask.name:
        raise PadaError(f"{ckpt}: not a `pada train pada` checkpoint (task {task.get('name')!r})")
    opts = task["config"]["options"]
    weights = state.get("ema") or state["model"]
    weights = {k.removeprefix("pada."): v for k, v in weights.items()}
    names = {k: opts.get(k, "") for k in ("diffae", "diffae_preset", "vl", "age_critic", "id_critic")}
    cfg = PadaConfig(**{"e_dim": int(weights["age_encoder.mu_head.weight"].shape[0]),
                        "z_dim": int(weights["modulation.z_mean"].shape[0]), **names, **opts.get("pada", {})})
    model = PadaModel(cfg)
    model.load_state_dict(weights, strict=True)
    meta = {"train_info": json.dumps({"step": int(state["step"]), "exported_from": ckpt.name}),
            "loss_config": json.dumps(task["config"].get("loss", {}))}
    if (state.get("task_state") or {}).get("recipe_file"):
        meta["recipe_file"] = json.dumps(state["task_state"]["recipe_file"])
    return model.save(out, extra_metadata=meta)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    if "--export-from" in argv:  # export only: --export-from CKPT --out FILE
        ex = validation.ArgumentParser(prog="pada train pada --export-from")
        ex.add_argument("--export-from", required=True, help="training checkpoint step_*.pt")
        ex.add_argument("--out", required=True, help="output .safetensors file")
        a = ex.parse_args(argv)
        try:
            path = export_checkpoint(a.export_from, a.out)
        except PadaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"exported {path}")
        return 0
    try:
        args, recipe_used = recipes.parse_with_recipe(build_parser(), argv, "pada")
        options = options_from_args(args)
        cfg = config_from_args(args, PADA_TRAIN_DEFAULTS)
        task = PadaTask(options, trust_pickle=args.trust_pickle,
                        recipe_file=recipe_used.record() if recipe_used else None)
        result = Trainer(task, cfg).fit()
    except PadaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.exported:
        print(f"exported {result.exported[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
