"""PyTorch datasets over a folder of aligned faces and its labels table.

* :class:`AlignedFaceDataset` — images resized to ``size``, optional horizontal flip, a deterministic
  train/test split by hashing the file name, and the FFHQ-AT labels of each image. This is what DiffAE
  training and evaluation read.
* :class:`AgingPairDataset` — the pairs PADA training needs (paper §4, "Implementation details"): a
  source image with its description, and a reference with a target age group, given either as an image
  (reference-guided aging) or as one of the 14 descriptions (text-guided aging). With probability
  ``p_same = 0.167`` the reference *is* the source (the L_rec case: no aging requested).

Randomness. Nothing draws from the global RNG. Each item's random choices (flip, pairing) come from a
``torch.Generator`` seeded from ``(seed, epoch, index)``, so an item is the same whatever the number of
DataLoader workers or the order items are asked for, differs from epoch to epoch, and a whole epoch is
reproduced by the same seed. Call ``set_epoch(e)`` before each epoch (and shuffle the order with a
``DataLoader(generator=...)`` seeded the same way).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from pada.data.groups import AGE_GROUPS, GENDERS, description
from pada.data.labels import list_images, load_labels, resize_square, uint8_to_tensor
from pada.errors import PadaError

Split = Literal["train", "test", "all"]

# Paper §4: "we randomly set the reference images equal to the source images with the probability of 0.167".
P_REFERENCE_IS_SOURCE = 0.167


def hash_fraction(name: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by ``sha1(salt + name)`` (stable across machines and Python runs)."""
    digest = hashlib.sha1((salt + name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(name: str, test_fraction: float, salt: str = "") -> Literal["train", "test"]:
    """``"test"`` for about ``test_fraction`` of all names, ``"train"`` for the rest (by file-name hash).

    Adding or removing other files never moves a file between splits.
    """
    return "test" if hash_fraction(name, salt) < test_fraction else "train"


def item_generator(seed: int, epoch: int, index: int, stream: str = "") -> torch.Generator:
    """A generator seeded from (seed, epoch, index, stream): independent streams per item and epoch."""
    key = f"{seed}/{epoch}/{index}/{stream}".encode()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & ((1 << 63) - 1))
    return g


class AlignedFaceDataset(Dataset):
    """Aligned face images of a folder, with their FFHQ-AT labels when a table is given.

    Items are dicts:

    ``image``        float32 ``(3, size, size)`` in [-1, 1] (flipped left-right with probability 0.5 when
                     ``flip``)
    ``file``         path relative to ``root``
    ``index``        position in this dataset
    and with labels: ``age`` (float), ``gender`` (str), ``group`` (int), ``description`` (str).

    Args:
        root: folder of aligned square crops (searched recursively).
        labels: a labels table (path, or rows from :func:`pada.data.labels.load_labels`), or None. With a
            table, only labelled images are used (images without a row are skipped).
        size: output side; None keeps each file's size (they must then all be equal to batch them).
        split: ``"train"``, ``"test"`` or ``"all"``; the split is :func:`split_of` on the relative path.
        test_fraction: fraction of files in the test split.
        flip: random horizontal flip (training augmentation).
        seed: seed of the per-item generators (see module docstring).
        files: use exactly these relative paths instead of scanning ``root``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        labels: str | os.PathLike | Sequence[dict[str, Any]] | None = None,
        *,
        size: int | None = 256,
        split: Split = "all",
        test_fraction: float = 0.05,
        flip: bool = False,
        seed: int = 0,
        files: Sequence[str] | None = None,
    ):
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be train, test or all, got {split!r}")
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
        self.root = Path(root)
        self.size = size
        self.split = split
        self.test_fraction = test_fraction
        self.flip = flip
        self.seed = int(seed)
        self.epoch = 0
        names = list(files) if files is not None else list_images(self.root)
        self.labels: dict[str, dict[str, Any]] | None = None
        if labels is not None:
            rows = load_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
            self.labels = {r["file"]: r for r in rows}
            names = [n for n in names if n in self.labels]
        if split != "all":
            names = [n for n in names if split_of(n, test_fraction) == split]
        if not names:
            raise PadaError(f"{self.root}: no {'labelled ' if labels is not None else ''}images"
                            f"{'' if split == 'all' else f' in the {split} split'}")
        self.files = names

    @classmethod
    def from_demo(cls, demo_dir: str | os.PathLike, size: int = 256, **kwargs: Any) -> AlignedFaceDataset:
        """The demo set of :mod:`pada.data.demo` at ``size`` (its ``aligned/<size>`` folder when built)."""
        from pada.data.demo import aligned_dir

        demo_dir = Path(demo_dir)
        return cls(aligned_dir(demo_dir, size), demo_dir / "labels.csv", size=size, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, flip: bool = False) -> torch.Tensor:
        """Image ``index`` as float32 ``(3, S, S)`` in [-1, 1] (no randomness)."""
        from pada.faces.io import load_image

        img = load_image(self.root / self.files[index])
        if self.size is not None:
            img = resize_square(img, self.size)
        if flip:
            img = img[:, ::-1]
        return uint8_to_tensor(img)

    def label(self, index: int) -> dict[str, Any]:
        if self.labels is None:
            raise PadaError(f"{self.root}: this dataset has no labels table")
        return self.labels[self.files[index]]

    def __getitem__(self, index: int) -> dict[str, Any]:
        do_flip = False
        if self.flip:
            g = item_generator(self.seed, self.epoch, index, "flip")
            do_flip = bool(torch.rand((), generator=g) < 0.5)
        item: dict[str, Any] = {"image": self.load(index, do_flip), "file": self.files[index], "index": index}
        if self.labels is not None:
            r = self.labels[self.files[index]]
            item.update(age=float(r["age"]), gender=r["gender"], group=int(r["group"]),
                        description=r["description"])
        return item

    def group_counts(self) -> np.ndarray:
        """``(7, 2)`` counts of (age group, gender) over this dataset's files (gender order: female, male)."""
        counts = np.zeros((len(AGE_GROUPS), len(GENDERS)), dtype=np.int64)
        for i in range(len(self)):
            r = self.label(i)
            counts[r["group"], GENDERS.index(r["gender"])] += 1
        return counts


Mode = Literal["image", "text"]


class AgingPairDataset(Dataset):
    """Source/reference pairs for PADA training (paper §3-4).

    For item ``i`` the source is image ``i`` of ``base``. With probability ``p_same`` the reference is the
    source itself (``ref_is_source``; target group = source group). Otherwise (and then the reference is
    never the source) a target group is drawn —
    uniformly over the groups that have images (``target="balanced"``, so rare ages are seen as often as
    common ones) or as the group of a uniformly drawn image (``target="natural"``) — and the reference
    image is drawn from that group. The conditioning ``mode`` is ``"text"`` with probability ``p_text``,
    else ``"image"``:

    * text: the target description is that group's description with the *source's* gender (aging keeps
      the gender); the reference image is drawn from (target group, source gender) when such images exist.
    * image: the reference image is drawn from the target group (any gender) and its own label's
      description is the target description (what L_clip's text direction uses).

    A reference image is returned in both modes (text-guided losses such as L_age may want a real face of
    the target group); the trainer conditions on ``reference`` or ``target_description`` by ``mode``.

    ``text_groups="all"``: text rows draw their target uniformly from *all* age groups, also those with no
    image (a demo set without children can still ask for "a child" in words). Such a row has no real face of
    its target group: its ``reference`` is the source as a stand-in and ``reference_real`` is False, so
    losses that need a real reference (L_age) skip it while text and data-prior losses still apply.

    Items (all tensors unbatched):

    ``source``             float32 ``(3, S, S)`` [-1, 1]
    ``source_file``, ``source_age``, ``source_gender``, ``source_group``, ``source_description``
    ``reference``          float32 ``(3, S, S)`` [-1, 1] (identical to ``source`` when ``ref_is_source``)
    ``reference_file``, ``reference_group``, ``reference_description`` (the reference image's own label)
    ``target_group``       int, the group to age to
    ``target_description`` str, the text for that group (see modes above)
    ``ref_is_source``      bool
    ``reference_real``     bool, False only for the stand-in reference of ``text_groups="all"``
    ``reference_age``      float, the reference image's age label
    ``mode``               ``"image"`` or ``"text"``
    ``index``              int
    """

    def __init__(self, base: AlignedFaceDataset, *, p_same: float = P_REFERENCE_IS_SOURCE,
                 p_text: float = 0.5, target: Literal["balanced", "natural"] = "balanced",
                 seed: int | None = None, text_groups: Literal["present", "all"] = "present"):
        if base.labels is None:
            raise PadaError(f"{base.root}: pairing needs a labels table (run `pada label` first)")
        if not 0.0 <= p_same <= 1.0 or not 0.0 <= p_text <= 1.0:
            raise ValueError("p_same and p_text must be probabilities")
        if target not in ("balanced", "natural"):
            raise ValueError(f"target must be balanced or natural, got {target!r}")
        if text_groups not in ("present", "all"):
            raise ValueError(f"text_groups must be present or all, got {text_groups!r}")
        self.text_groups = text_groups
        self.base = base
        self.p_same = float(p_same)
        self.p_text = float(p_text)
        self.target = target
        self.seed = base.seed if seed is None else int(seed)
        self.epoch = 0
        self.by_group: list[list[int]] = [[] for _ in AGE_GROUPS]
        self.by_group_gender: dict[tuple[int, str], list[int]] = {}
        for i in range(len(base)):
            r = base.label(i)
            self.by_group[r["group"]].append(i)
            self.by_group_gender.setdefault((r["group"], r["gender"]), []).append(i)
        self.groups_present = [g for g, idx in enumerate(self.by_group) if idx]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    @staticmethod
    def _pick(pool: Sequence[int], g: torch.Generator, avoid: int | None = None) -> int:
        if avoid is not None and len(pool) > 1:
            k = int(torch.randint(len(pool) - 1, (), generator=g))
            j = pool[k]
            return pool[-1] if j == avoid else j  # uniform over pool minus ``avoid`` (pool has no repeats)
        return pool[int(torch.randint(len(pool), (), generator=g))]

    def draw(self, index: int) -> tuple[int, int, Mode, bool]:
        """The random choices for item ``index`` at the current epoch: (reference index, target group,
        mode, ref_is_source). Deterministic in (seed, epoch, index)."""
        g = item_generator(self.seed, self.epoch, index, "pair")
        u_same, u_mode = torch.rand(2, generator=g).tolist()
        mode: Mode = "text" if u_mode < self.p_text else "image"
        src = self.base.label(index)
        if u_same < self.p_same:
            return index, int(src["group"]), mode, True
        if len(self.base) < 2:  # nothing else to pair with
            return index, int(src["group"]), mode, True
        if mode == "text" and self.text_groups == "all":
            tg = int(torch.randint(len(AGE_GROUPS), (), generator=g))
            pool = self.by_group_gender.get((tg, src["gender"])) or self.by_group[tg]
            pool = [j for j in pool if j != index]
            if not pool:  # no face of that age: the source stands in (reference_real False)
                return index, tg, mode, False
            return self._pick(pool, g), tg, mode, False
        if self.target == "balanced":
            # groups holding some image other than the source (so ref == source only with p_same)
            cands = [t for t in self.groups_present if self.by_group[t] != [index]]
            tg = cands[int(torch.randint(len(cands), (), generator=g))]
        else:
            tg = int(self.base.label(self._pick(range(len(self.base)), g, avoid=index))["group"])
        pool = self.by_group[tg]
        if mode == "text":
            same_gender = self.by_group_gender.get((tg, src["gender"]), [])
            if any(j != index for j in same_gender):
                pool = same_gender
        ref = self._pick(pool, g, avoid=index)
        return ref, tg, mode, False

    def __getitem__(self, index: int) -> dict[str, Any]:
        ref_index, tg, mode, same = self.draw(index)
        src = self.base[index]
        ref = src if ref_index == index else self.base[ref_index]
        if mode == "text":
            target_text = description(tg, src["gender"])
        else:
            target_text = ref["description"]
        return {
            "source": src["image"],
            "source_file": src["file"],
            "source_age": src["age"],
            "source_gender": src["gender"],
            "source_group": src["group"],
            "source_description": src["description"],
            "reference": ref["image"],
            "reference_file": ref["file"],
            "reference_group": ref["group"],
            "reference_age": ref["age"],
            "reference_description": ref["description"],
            "target_group": tg,
            "target_description": target_text,
            "ref_is_source": same,
            "reference_real": same or ref_index != index,
            "mode": mode,
            "index": index,
        }
