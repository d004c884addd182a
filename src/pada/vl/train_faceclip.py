"""``pada train faceclip``: train FaceCLIP's heads on the demo faces (CPU, minutes).

Pipeline (all deterministic for a seed):

1. read ``<data>/labels.csv`` and the aligned crops ``<data>/aligned/<size>``; hash them (``data_sha256``);
2. split by file-name hash (:func:`pada.data.datasets.split_of`, ``--test-fraction`` 0.2; pada's 5 % test
   split is a subset of it, so PADA's test faces are never FaceCLIP training faces);
3. run the frozen critics once on every image and its mirror image and cache the features by file content
   (``<cache>/critic-features-<blocks>.pt``); embed every caption of :func:`pada.vl.captions.caption_bank`
   with MiniLM once (``<cache>/bank-<hash>.pt``);
4. train :class:`~pada.vl.faceclip.FaceCLIPHeads` with

   * ``L_nce``: symmetric InfoNCE between a batch of faces and one caption per face (30 % its paper
     description, else a random caption that fits its age ± ``tol`` and gender) plus ``--extra-negatives``
     random bank captions (any age, children included). Targets are *label-aware*: every caption that fits
     a face counts as a positive for it (row-normalised), so two 43-year-old men are not pushed apart;
   * ``L_text``: text-text InfoNCE over random bank captions (the 14 descriptions always included): captions
     of overlapping ages and compatible gender are positives, so the cosine structure of the text space
     follows age over 0-100 years, children included;
   * ``L_age``: the linear age read-out of the embedding regresses the face's age and, text-only, lands
     inside each caption's interval (a squared hinge, plus a weak pull to its centre) for random bank
     captions over 0-100 years; ``L_ord``: read-outs of captions with disjoint intervals keep their order;
   * ``L_gender``: the gender read-out (logistic) on confidently labelled faces and on gendered captions;

5. evaluate on the held-out faces and the open-world phrases (:mod:`pada.vl.evaluation`), write the heads
   (safetensors, config and recipe in the metadata) and ``<out>.json`` with the report.

The text-only terms (``L_text``, and ``L_age``/``L_ord`` on captions) are what place child descriptions,
which no demo face matches, at the young end of the joint space (docs/vision_language.md).

Why its own loop and not the shared engine (:mod:`pada.training.engine`): FaceCLIP trains a few small heads
on features cached once per image, on CPU in minutes, from one seed; it needs no EMA, accelerator, mixed
precision, resumable checkpoints or sample grids, and its recipe is recorded in the weight file. Its settings
are :class:`FaceClipTrainConfig` (named apart from the engine's ``TrainConfig``; the old name
``pada.vl.train_faceclip.TrainConfig`` still works with a ``DeprecationWarning``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pada import recipes, validation
from pada.data.groups import AGE_GROUPS, DESCRIPTIONS, GENDERS, group_of_age
from pada.deprecation import renamed
from pada.errors import PadaError
from pada.vl.captions import Caption, caption_bank
from pada.vl.faceclip import FaceCLIPConfig, FaceCLIPHeads, save_heads


@dataclass(frozen=True)
class FaceClipTrainConfig:
    """Optimisation settings of FaceCLIP training (all recorded in the weight file's recipe)."""

    steps: int = 1000
    batch: int = 128
    extra_negatives: int = 128
    text_batch: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    tol: float = 1.0  # years of slack when matching a face's age to a caption interval
    p_paper: float = 0.3  # probability that a face's caption is its paper description
    min_gender_conf: float = 0.75  # faces below this gender confidence match captions of either gender
    w_age: float = 1.0
    w_ord: float = 0.5
    w_gender: float = 0.5
    w_text: float = 1.0  # text-text contrastive term over the whole bank (children included)
    max_logit_scale: float = 100.0
    seed: int = 0


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------
@dataclass
class FaceData:
    files: list[str]
    ages: torch.Tensor  # (N,)
    genders: list[str | None]  # None when the gender label is not confident
    label_genders: list[str]
    groups: list[int]
    feats: torch.Tensor  # (N, 2, F): original and mirrored


def _image_dir(data: Path, size: int) -> Path:
    for d in (data / "aligned" / str(size), data / "aligned" / "256", data):
        if d.is_dir() and any(d.glob("*.png")) or (d.is_dir() and any(d.glob("*.jpg"))):
            return d
    raise PadaError(f"{data}: no aligned images (expected {data / 'aligned' / str(size)}/*.png); "
                    f"build the demo set with `pada data demo --out {data}`")


def read_rows(data: Path) -> list[dict[str, Any]]:
    from pada.data.labels import load_labels

    rows = load_labels(data)
    if not rows:
        raise PadaError(f"{data}: labels table is empty")
    return rows


def data_sha256(image_dir: Path, rows: list[dict[str, Any]]) -> str:
    """sha256 over (file name, file bytes' sha256, age, gender) of every labelled image, sorted by name."""
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r["file"]):
        p = image_dir / r["file"]
        if not p.is_file():
            raise PadaError(f"{p}: image listed in the labels table is missing")
        h.update(f"{r['file']}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\t{float(r['age']):.3f}\t"
                 f"{r['gender']}\n".encode())
    return h.hexdigest()


def _load_image(path: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001
        raise PadaError(f"{path}: cannot read image ({exc})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


@torch.no_grad()
def compute_features(images: list[Path], extractor: torch.nn.Module, batch: int = 32,
                     log=print) -> torch.Tensor:
    """``(N, 2, F)`` frozen features of each image and of its mirror image."""
    out = []
    t0 = time.time()
    for i in range(0, len(images), batch):
        x = torch.stack([_load_image(p) for p in images[i:i + batch]])
        f = extractor(torch.cat([x, x.flip(-1)]))
        out.append(torch.stack([f[:len(x)], f[len(x):]], dim=1))
        log(f"  features {min(i + batch, len(images))}/{len(images)} ({time.time() - t0:.0f}s)")
    return torch.cat(out)


def cached_features(images: list[Path], cache: Path, blocks: tuple[str, ...], log=print,
                    extractor: torch.nn.Module | None = None) -> torch.Tensor:
    """``(N, 2, F)`` critic features ``blocks`` of ``images`` (and mirrors), cached by file content.

    The cache (``<cache>/critic-features-<blocks>.pt``) maps the sha256 of each image file to its features, so
    it is reused whatever folder or labels table the images come with; missing images are computed and added.
    """
    from pada.vl.faceclip import CriticFeatureBlocks

    path = cache / f"critic-features-{'+'.join(blocks)}.pt"
    store: dict[str, torch.Tensor] = {}
    if path.is_file():
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if list(raw.get("blocks", [])) == list(blocks):
            store = dict(zip(raw["sha"], raw["feats"]))
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]
    todo = [i for i, h in enumerate(shas) if h not in store]
    if todo:
        log(f"computing critic features of {len(todo)} images (+ mirrors); cached in {path}")
        ext = extractor if extractor is not None else CriticFeatureBlocks(tuple(blocks))
        new = compute_features([images[i] for i in todo], ext, log=log)
        store.update({shas[i]: f for i, f in zip(todo, new)})
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(store)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save({"blocks": list(blocks), "sha": keys, "feats": torch.stack([store[k] for k in keys])}, tmp)
        os.replace(tmp, path)
    return torch.stack([store[h] for h in shas])


def bank_sha256(bank: tuple[Caption, ...]) -> str:
    text = "\n".join(f"{c.text}\t{c.lo}\t{c.hi}\t{c.gender}" for c in bank)
    return hashlib.sha256(text.encode()).hexdigest()


def load_or_compute(path: Path, fn):
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    value = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value


# ----------------------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------------------
def compat_matrix(ages: torch.Tensor, genders: list[str | None], bank: tuple[Caption, ...],
                  tol: float) -> torch.Tensor:
    """``(N, M)`` bool: face ``i`` fits caption ``j`` (age within ``[lo - tol, hi + tol]``, gender
    compatible)."""
    lo = torch.tensor([c.lo for c in bank]) - tol
    hi = torch.tensor([c.hi for c in bank]) + tol
    age_ok = (ages[:, None] >= lo[None]) & (ages[:, None] <= hi[None])
    cg = torch.tensor([{None: 0, "female": 1, "male": 2}[c.gender] for c in bank])
    fg = torch.tensor([{None: 0, "female": 1, "male": 2}[g] for g in genders])
    g_ok = (cg[None] == 0) | (fg[:, None] == 0) | (cg[None] == fg[:, None])
    return age_ok & g_ok


def soft_info_nce(img: torch.Tensor, txt: torch.Tensor, targets: torch.Tensor, n_pos: int,
                  logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with label-aware targets.

    Args:
        img: ``(B, D)`` unit image embeddings; txt: ``(C, D)`` unit caption embeddings, the first ``n_pos``
            = B being one positive caption per image, the rest extra negatives.
        targets: ``(B, C)`` bool, face fits caption.
        logit_scale: scalar, the inverse temperature (already exponentiated).
    """
    logits = logit_scale * img @ txt.T  # (B, C)
    t = targets.float()
    l_i2t = -(t / t.sum(1, keepdim=True) * logits.log_softmax(dim=1)).sum(1).mean()
    tp = t[:, :n_pos]  # every positive caption fits at least its own face
    l_t2i = -(tp / tp.sum(0, keepdim=True) * logits[:, :n_pos].log_softmax(dim=0)).sum(0).mean()
    return 0.5 * (l_i2t + l_t2i)


def caption_overlap(bank: tuple[Caption, ...], tol: float) -> torch.Tensor:
    """``(M, M)`` bool: captions describe overlapping ages (± ``tol``) and compatible genders."""
    lo = torch.tensor([c.lo for c in bank], dtype=torch.float32)
    hi = torch.tensor([c.hi for c in bank], dtype=torch.float32)
    age_ok = (lo[:, None] <= hi[None, :] + tol) & (lo[None, :] <= hi[:, None] + tol)
    cg = torch.tensor([{None: 0, "female": 1, "male": 2}[c.gender] for c in bank])
    g_ok = (cg[:, None] == 0) | (cg[None, :] == 0) | (cg[:, None] == cg[None, :])
    return age_ok & g_ok


def text_contrastive(emb: torch.Tensor, targets: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Text-text InfoNCE: each caption should be closer to the captions that fit the same ages.

    Args:
        emb: ``(T, D)`` unit caption embeddings; targets: ``(T, T)`` bool overlap (diagonal ignored).
    """
    eye = torch.eye(len(emb), dtype=torch.bool)
    t = (targets & ~eye).float()
    keep = t.sum(1) > 0
    if not keep.any():
        return emb.sum() * 0
    logits = (logit_scale * emb @ emb.T).masked_fill(eye, float("-inf"))
    logp = logits.log_softmax(dim=1).masked_fill(eye, 0.0)
    return -(t / t.sum(1, keepdim=True).clamp_min(1) * logp).sum(1)[keep].mean()


def interval_loss(pred: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                  center_weight: float = 0.1) -> torch.Tensor:
    """Squared hinge outside ``[lo, hi]`` plus a weak pull to the centre, in decades."""
    out = (F.relu(lo - pred) + F.relu(pred - hi)) / 10.0
    return (out.pow(2) + center_weight * ((pred - 0.5 * (lo + hi)) / 10.0).pow(2)).mean()


def ordinal_loss(pred: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, margin: float = 2.0) -> torch.Tensor:
    """Hinge on every pair with disjoint intervals (``hi_j < lo_k``): ``pred_j + margin <= pred_k``."""
    before = hi[:, None] < lo[None, :]  # (M, M)
    if not before.any():
        return pred.sum() * 0
    diff = pred[:, None] - pred[None, :] + margin
    return (F.relu(diff)[before] / 10.0).mean()


# ----------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------
def train_heads(cfg: FaceCLIPConfig, tcfg: FaceClipTrainConfig, data: FaceData, bank: tuple[Caption, ...],
                bank_emb: torch.Tensor, log=print) -> tuple[FaceCLIPHeads, dict[str, float]]:
    """Train the heads on cached features; returns the heads and the mean losses of the last 100 steps."""
    g = torch.Generator().manual_seed(tcfg.seed)
    torch.manual_seed(tcfg.seed)  # nn.Linear init draws from the global RNG: fix it for reproducibility
    heads = FaceCLIPHeads(cfg)
    flat = data.feats.reshape(-1, data.feats.shape[-1])
    heads.feat_mean.copy_(flat.mean(0))
    heads.feat_std.copy_(flat.std(0).clamp_min(1e-4))
    params = [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    if tcfg.steps < 5:
        raise PadaError(f"--steps must be at least 5, got {tcfg.steps}")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tcfg.lr, total_steps=tcfg.steps,
                                                pct_start=max(0.05, 2.0 / tcfg.steps))
    tables = _LabelTables.build(data, bank, tcfg.tol)
    hist: dict[str, list[float]] = {}
    t0 = time.time()
    for step in range(tcfg.steps):
        losses = _step_losses(heads, data, tables, bank_emb, tcfg, g)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        sched.step()
        for k, v in losses.items():
            hist.setdefault(k, []).append(float(v.detach()))
        if step % 500 == 0 or step == tcfg.steps - 1:
            last = {k: v[-1] for k, v in hist.items()}
            log(f"  step {step:5d}  " + "  ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "scale")
                + f"  scale {last['scale']:.1f}  ({time.time() - t0:.0f}s)")
    final = {k: sum(v[-100:]) / len(v[-100:]) for k, v in hist.items()}
    return heads, final


@dataclass
class _LabelTables:
    """What the labels say, computed once before training: which captions fit which face and caption."""

    compat: torch.Tensor  # (N, M) caption j fits face i
    counts: torch.Tensor  # (N,) captions that fit each face
    pos_table: torch.Tensor  # (N, max count) the fitting caption indices per face, padded
    own_paper: torch.Tensor  # (N,) each face's paper description in the bank
    lo: torch.Tensor  # (M,) caption age intervals
    hi: torch.Tensor
    male: torch.Tensor  # (M,) 1 male, 0 female, -1 either
    face_male: torch.Tensor  # (N,) same for the faces (-1: not confident)
    text_compat: torch.Tensor  # (M, M) captions of overlapping ages and compatible gender

    @classmethod
    def build(cls, data: FaceData, bank: tuple[Caption, ...], tol: float) -> _LabelTables:
        compat = compat_matrix(data.ages, data.genders, bank, tol)  # (N, M)
        paper_idx = {c.text: j for j, c in enumerate(bank)}
        own_paper = torch.tensor([paper_idx[DESCRIPTIONS[2 * grp + GENDERS.index(lg)]]
                                  for grp, lg in zip(data.groups, data.label_genders)])
        code = {None: -1.0, "female": 0.0, "male": 1.0}
        # compatible caption indices per face, padded: sampling a positive = one uniform draw per face
        counts = compat.sum(1)
        if (counts == 0).any():
            bad = data.files[int((counts == 0).nonzero()[0])]
            age = float(data.ages[counts == 0][0])
            raise PadaError(f"{bad}: no caption fits this face's label (age {age:.1f})")
        pos_table = torch.zeros(compat.shape[0], int(counts.max()), dtype=torch.long)
        for i in range(compat.shape[0]):
            ix = compat[i].nonzero().squeeze(1)
            pos_table[i, :len(ix)] = ix
        return cls(compat=compat, counts=counts, pos_table=pos_table, own_paper=own_paper,
                   lo=torch.tensor([c.lo for c in bank], dtype=torch.float32),
                   hi=torch.tensor([c.hi for c in bank], dtype=torch.float32),
                   male=torch.tensor([code[c.gender] for c in bank]),
                   face_male=torch.tensor([code[gd] for gd in data.genders]),
                   text_compat=caption_overlap(bank, tol))


def _step_losses(heads: FaceCLIPHeads, data: FaceData, t: _LabelTables, bank_emb: torch.Tensor,
                 tcfg: FaceClipTrainConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The losses of one step (module docstring), drawn with ``g``; ``"loss"`` is the weighted total."""
    n, m = t.compat.shape
    idx = torch.randint(0, n, (min(tcfg.batch, n),), generator=g)
    view = torch.randint(0, 2, (len(idx),), generator=g)
    feats = data.feats[idx, view]
    # one positive caption per face
    pick = (torch.rand(len(idx), generator=g) * t.counts[idx]).long().clamp(max=t.pos_table.shape[1] - 1)
    pos = t.pos_table[idx, pick]
    use_paper = torch.rand(len(idx), generator=g) < tcfg.p_paper
    pos = torch.where(use_paper, t.own_paper[idx], pos)
    extra = torch.randint(0, m, (tcfg.extra_negatives,), generator=g)
    cols = torch.cat([pos, extra])
    img = heads.embed_features(feats)
    txt = heads.embed_text(bank_emb[cols])
    scale = heads.logit_scale.exp().clamp(max=tcfg.max_logit_scale)
    l_nce = soft_info_nce(img, txt, t.compat[idx][:, cols], len(idx), scale)

    # text-only anchoring over the whole bank (0-100 years, children included); the 14 paper
    # descriptions are in every text batch
    tj = torch.cat([torch.arange(len(DESCRIPTIONS)), torch.randint(0, m, (tcfg.text_batch,), generator=g)])
    te = heads.embed_text(bank_emb[tj])
    l_txt = text_contrastive(te, t.text_compat[tj][:, tj], scale)
    t_age = heads.age(te)
    l_age_txt = interval_loss(t_age, t.lo[tj], t.hi[tj])
    l_ord = ordinal_loss(t_age, t.lo[tj], t.hi[tj])
    age_true = data.ages[idx]
    l_age_img = interval_loss(heads.age(img), age_true - tcfg.tol, age_true + tcfg.tol)
    tm, fm = t.male[tj], t.face_male[idx]
    l_g = torch.zeros(())
    if (tm >= 0).any():
        l_g = l_g + F.binary_cross_entropy_with_logits(heads.male_logit(te)[tm >= 0], tm[tm >= 0])
    if (fm >= 0).any():
        l_g = l_g + F.binary_cross_entropy_with_logits(heads.male_logit(img)[fm >= 0], fm[fm >= 0])
    loss = (l_nce + tcfg.w_text * l_txt + tcfg.w_age * (l_age_txt + l_age_img) + tcfg.w_ord * l_ord
            + tcfg.w_gender * l_g)
    return {"loss": loss, "nce": l_nce, "text": l_txt, "age_txt": l_age_txt, "age_img": l_age_img,
            "ord": l_ord, "gender": l_g, "scale": scale}


@torch.no_grad()
def evaluate_heads(heads: FaceCLIPHeads, test: FaceData, text_encoder) -> dict[str, Any]:
    """Zero-shot groups on held-out faces, open-world phrases, and text age read-outs of the 14
    descriptions."""
    from pada.vl.evaluation import open_world, zero_shot_groups

    def enc(texts):
        return heads.embed_text(text_encoder(texts))

    desc = enc(list(DESCRIPTIONS))
    img = heads.embed_features(test.feats[:, 0])
    zs = zero_shot_groups(img, desc, test.groups, test.label_genders)
    ow = open_world(enc)
    age_pred = heads.age(img)
    return {"zero_shot": zs, "open_world": ow,
            "image_age_readout_mae": float((age_pred - test.ages).abs().mean()),
            "description_age_readout": {d: round(float(a), 1) for d, a in zip(DESCRIPTIONS, heads.age(desc))}}


def load_face_data(data_dir: Path, size: int, test_fraction: float, cache: Path, features: tuple[str, ...],
                   min_gender_conf: float, log=print) -> tuple[FaceData, FaceData, str]:
    """Train and held-out :class:`FaceData` (features cached) and the data hash."""
    from pada.data.datasets import split_of

    rows = read_rows(data_dir)
    image_dir = _image_dir(data_dir, size)
    rows = [r for r in rows if (image_dir / r["file"]).is_file() or r["file"] is None]
    if not rows:
        raise PadaError(f"{image_dir}: none of the labelled images is there")
    rows.sort(key=lambda r: r["file"])
    digest = data_sha256(image_dir, rows)
    files = [r["file"] for r in rows]
    feats = cached_features([image_dir / f for f in files], cache, features, log=log)

    def subset(which: str) -> FaceData:
        ix = [i for i, f in enumerate(files) if split_of(f, test_fraction) == which]
        rs = [rows[i] for i in ix]
        ages = torch.tensor([float(r["age"]) for r in rs])
        label_g = [r["gender"] for r in rs]
        conf = [float(r.get("gender_conf") or 1.0) for r in rs]
        gs = [lg if c >= min_gender_conf else None for lg, c in zip(label_g, conf)]
        groups = [int(r["group"]) if r.get("group") is not None else group_of_age(a).index
                  for r, a in zip(rs, ages.tolist())]
        return FaceData([files[i] for i in ix], ages, gs, label_g, groups, feats[ix])

    return subset("train"), subset("test"), digest


def embed_bank(cache: Path, text_encoder, log=print) -> tuple[tuple[Caption, ...], torch.Tensor]:
    bank = caption_bank()
    key = bank_sha256(bank)[:16]

    def compute():
        log(f"embedding {len(bank)} captions with MiniLM ...")
        return text_encoder([c.text for c in bank])

    return bank, load_or_compute(cache / f"bank-{key}.pt", compute)


def build_parser() -> argparse.ArgumentParser:
    d = FaceClipTrainConfig()
    p = validation.ArgumentParser(prog="pada train faceclip", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None,
                   help="demo folder (labels.csv + aligned/<size>/); default $PADA_DEMO_DIR or data/demo")
    p.add_argument("--out", default="runs/faceclip/faceclip.safetensors", help="weight file to write")
    p.add_argument("--size", type=validation.int_option(8, validation.LIMITS["crop_size"]), default=256,
                   help="which aligned crop size to read")
    p.add_argument("--cache", default=None, help="feature cache folder (default: <out folder>/cache)")
    p.add_argument("--test-fraction", type=validation.float_option(0.0, 1.0, hi_open=True), default=0.2)
    p.add_argument("--text-projection", choices=("linear", "mlp", "none"), default="linear",
                   help="'none' = raw-MiniLM baseline: only the image tower is trained")
    p.add_argument("--features", default="age_penultimate,age_logits,gender_logodds",
                   help="critic features for the image tower (also: sface)")
    p.add_argument("--dim", type=validation.int_option(1, 8192), default=512)
    p.add_argument("--threads", type=validation.int_option(0, validation.LIMITS["threads"]), default=0,
                   help="torch CPU threads (0: torch's default)")
    for k in ("steps", "batch", "extra_negatives", "text_batch", "lr", "weight_decay", "tol", "p_paper",
              "min_gender_conf", "w_age", "w_ord", "w_gender", "w_text", "max_logit_scale", "seed"):
        v = getattr(d, k)
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    recipes.add_recipe_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args, recipe_used = recipes.parse_with_recipe(build_parser(), argv, "faceclip")
    from pada.data.demo import default_demo_dir
    from pada.vl.minilm import MiniLMEncoder

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data_dir = Path(args.data) if args.data else default_demo_dir()
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out.parent / "cache"
    features = tuple(f.strip() for f in args.features.split(",") if f.strip())
    try:
        cfg = FaceCLIPConfig(dim=args.dim, text_projection=args.text_projection, features=features)
    except ValueError as exc:
        raise PadaError(f"pada train faceclip: {exc}") from None
    tcfg = FaceClipTrainConfig(**{k: getattr(args, k) for k in FaceClipTrainConfig.__dataclass_fields__})
    t0 = time.time()
    train, test, digest = load_face_data(data_dir, args.size, args.test_fraction, cache, features,
                                         tcfg.min_gender_conf)
    print(f"{len(train.files)} training faces, {len(test.files)} held-out faces; data sha256 {digest[:16]}")
    minilm = MiniLMEncoder()
    bank, bank_emb = embed_bank(cache, minilm)
    heads, final = train_heads(cfg, tcfg, train, bank, bank_emb)
    report = evaluate_heads(heads, test, minilm)
    zs, ow = report["zero_shot"], report["open_world"]
    print(f"held-out zero-shot: top-1 {zs['top1']:.3f}, within-one {zs['within_one']:.3f}, gender "
          f"{zs['gender_acc']:.3f} (n={zs['n']}); open-world {ow['group_correct']}/{ow['n']}")
    recipe = {
        "command": "pada train faceclip " + " ".join(argv),
        "data_sha256": digest, "n_train": len(train.files), "n_test": len(test.files),
        "test_fraction": args.test_fraction, "size": args.size, "seed": tcfg.seed, "steps": tcfg.steps,
        "train_config": asdict(tcfg), "final_losses": {k: round(v, 5) for k, v in final.items()},
        "caption_bank": {"n": len(bank), "sha256": bank_sha256(bank)},
        "eval": {"zero_shot_top1": round(zs["top1"], 4), "zero_shot_within_one": round(zs["within_one"], 4),
                 "gender_acc": round(zs["gender_acc"], 4), "n_test": zs["n"],
                 "open_world_correct": f"{ow['group_correct']}/{ow['n']}"},
        "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__,
    }
    if recipe_used:
        recipe["recipe_file"] = recipe_used.record()
    save_heads(heads, out, extra={"recipe": json.dumps(recipe, sort_keys=True)})
    out.with_suffix(".json").write_text(json.dumps({"recipe": recipe, "report": report}, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


__getattr__ = renamed(__name__, {"TrainConfig": "FaceClipTrainConfig"})

__all__ = ["FaceClipTrainConfig", "train_heads", "evaluate_heads", "load_face_data", "embed_bank", "main",
           "soft_info_nce", "compat_matrix", "AGE_GROUPS"]
