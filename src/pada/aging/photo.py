"""Whole photos: every face of a photo, several targets, labelled grids and seamless paste-back.

What ``pada age`` and the web app run on top of :class:`~pada.aging.pipeline.AgingPipeline` (which ages one
aligned face):

* :class:`Target` -- a target as a user thinks of it: a number of years (``--age 65``, turned into the
  description of its age group for the face's gender, the text the vision-language side was trained on),
  a free text, a reference face, or a text and a reference together;
* :class:`FaceCritics` -- estimated age and gender of each input face and each result, and the identity
  similarity of a result to its input (the offline critics: dlib age / gender, SFace);
* :func:`age_faces` -- every (face, target) pair aged into N results;
* :func:`compose_photo` -- the whole photo with the i-th result of a target pasted on every face
  (:func:`pada.faces.align.paste_back` with the face-region mask and colour matching);
* :func:`face_grid` -- one row per target, the input then the N results, each tile captioned
  (:func:`pada.faces.grid.labelled_grid`, re-exported here); a result whose skin lost its structure
  against the input (:func:`pada.evaluation.scores.structure_change` above
  :data:`~pada.evaluation.scores.STRUCTURE_LIMIT`, the score that agrees with a person's eye on broken
  faces) is marked ``!`` in its caption (:func:`result_caption`), so a likely broken result is never
  handed over unmarked.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pada.data.groups import GENDERS, description, group_of_age
from pada.errors import PadaError
from pada.evaluation.scores import STRUCTURE_LIMIT, structure_change
from pada.faces.grid import labelled_grid
from pada.validation import require_finite

#: Ages a target may ask for (years).
AGE_RANGE = (0.0, 110.0)


def age_text(age: float, gender: str) -> str:
    """The description of ``age``'s group for ``gender`` (e.g. 65, "male" -> "man's face in his sixties").

    The vision-language models were trained on the 14 group descriptions (paper §4), so a number is
    turned into the nearest of those rather than into a free sentence they have never seen.
    """
    return description(group_of_age(float(age)), gender)


def parse_ages(spec: str, option: str = "--age") -> list[float]:
    """``"10,30,50,70"`` -> ``[10.0, 30.0, 50.0, 70.0]``; one-line :class:`PadaError` on anything else."""
    out = []
    for part in str(spec).split(","):
        part = part.strip()
        try:
            v = float(part)
        except ValueError:
            raise PadaError(f"{option} {spec}: {part!r} is not a number of years "
                            "(give e.g. --age 65 or --age 10,30,50,70)") from None
        if not math.isfinite(v) or not AGE_RANGE[0] <= v <= AGE_RANGE[1]:
            raise PadaError(f"{option} {spec}: ages must be between {AGE_RANGE[0]:g} and {AGE_RANGE[1]:g}, "
                            f"got {part}")
        out.append(v)
    return out


@dataclass(frozen=True)
class Target:
    """One target. ``age``: years (text chosen per face gender); ``text``: a fixed description;
    ``ref``: use the reference face (alone, or with the text / age)."""

    age: float | None = None
    text: str | None = None
    ref: bool = False

    @property
    def label(self) -> str:
        if self.age is not None:
            core = f"age {self.age:g}"
        elif self.text is not None:
            core = self.text
        else:
            core = "reference"
        return f"{core} + reference" if self.ref and (self.age is not None or self.text) else core

    def text_for(self, gender: str | None) -> str | None:
        """The text given to the pipeline for a face of ``gender`` (None: reference only)."""
        if self.age is not None:
            return age_text(self.age, gender if gender in GENDERS else "female")
        return self.text


def make_targets(texts: Sequence[str] = (), ages: Sequence[float] = (), ref: bool = False) -> list[Target]:
    """Targets in the order given: ages first, then texts; a reference joins each (or stands alone)."""
    targets = [Target(age=a, ref=ref) for a in ages] + [Target(text=t, ref=ref) for t in texts]
    if not targets and ref:
        targets = [Target(ref=True)]
    seen, out = set(), []
    for t in targets:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


class FaceCritics:
    """Offline critics for reports: age (dlib), gender (dlib), identity (SFace). Loaded on first use;
    when their weight packages are missing, :meth:`load` returns None and says so once."""

    def __init__(self, age, gender, identity, device: torch.device | str = "cpu") -> None:
        self.age, self.gender, self.identity, self.device = age, gender, identity, torch.device(device)

    @classmethod
    def load(cls, device: torch.device | str = "cpu") -> FaceCritics | None:
        from pada.critics import load_critic

        try:
            return cls(load_critic("dlib-age", device=device), load_critic("dlib-gender", device=device),
                       load_critic("sface", device=device), device)
        except (PadaError, OSError, ValueError) as exc:
            warnings.warn(f"age / gender / identity estimates unavailable ({str(exc).splitlines()[0]})",
                          stacklevel=2)
            return None

    @torch.no_grad()
    def describe(self, images: torch.Tensor) -> list[tuple[float, str]]:
        """(estimated age, gender) of each aligned face ``images (B, 3, S, S)`` in [-1, 1]."""
        x = images.float().to(self.device)
        ages = self.age(x).age.cpu().tolist()
        probs = self.gender(x).cpu()
        return [(float(a), GENDERS[int(p.argmax())]) for a, p in zip(ages, probs)]

    @torch.no_grad()
    def ages(self, images: torch.Tensor) -> list[float]:
        return [float(a) for a in self.age(images.float().to(self.device)).age.cpu().tolist()]

    @torch.no_grad()
    def identity_similarity(self, source: torch.Tensor, outputs: torch.Tensor) -> list[float]:
        """Cosine similarity of each output's identity embedding to the source's (``source (1, 3, S, S)``)."""
        e_src = self.identity(source.float().to(self.device))
        e_out = self.identity(outputs.float().to(self.device))
        return [float(v) for v in (e_out @ e_src[0]).cpu()]


@dataclass
class FaceResult:
    """One input face and its results. ``outputs[j]``: (N, 3, S, S) in [-1, 1] for ``targets[j]``;
    ``texts[j]`` the text the pipeline was given; ``out_ages[j]`` / ``identity[j]`` per result (empty when
    no critics were given); ``edit_scales[j]``: each result's edit length after the blotch back-off
    (``AgingResult.edit_scales``; None when the back-off was off); ``structure[j]``: each result's
    :func:`~pada.evaluation.scores.structure_change` against the input at the model's size (always
    measured; no network). With a sharper crop of the face
    (``image_hr`` (3, S', S'), and for a photo ``face_hr``, its :class:`~pada.faces.align.AlignedFace` at
    S'), ``outputs_hr[j]`` (N, 3, S', S') are the results carried onto it
    (:func:`pada.aging.detail.transfer_edit`); grids, pasted photos and the critics' scores then use them."""

    index: int
    face: object  # AlignedFace, or None for an already aligned input
    image: torch.Tensor  # (3, S, S) in [-1, 1]
    est_age: float | None = None
    est_gender: str | None = None
    image_hr: torch.Tensor | None = None
    face_hr: object = None
    outputs: list[torch.Tensor] = field(default_factory=list)
    outputs_hr: list[torch.Tensor] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    out_ages: list[list[float]] = field(default_factory=list)
    identity: list[list[float]] = field(default_factory=list)
    edit_scales: list[list[float] | None] = field(default_factory=list)
    structure: list[list[float]] = field(default_factory=list)

    def shown(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(results of target ``j``, input) as written: the sharp-crop versions when there are some."""
        if self.outputs_hr:
            return self.outputs_hr[j], self.image_hr
        return self.outputs[j], self.image

    def summary(self) -> str:
        """``face 0: box 120,80 210x250, est. age 34, female`` (for the list printed by ``pada age``)."""
        parts = [f"face {self.index}"]
        if self.face is not None:
            x, y, w, h = (int(round(float(v))) for v in self.face.face.box)
            parts.append(f"box {x},{y} {w}x{h}")
        if self.est_age is not None:
            parts.append(f"est. age {self.est_age:.0f}, {self.est_gender}")
        return ": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def sharp_crop(original: np.ndarray, face, out_size: int, size: int):
    """(tensor (3, S, S) in [-1, 1], AlignedFace or None): the crop of ``face`` (an
    :class:`~pada.faces.align.AlignedFace` of ``original``) at ``out_size`` px, for
    :attr:`FaceResult.image_hr`. ``face`` None: ``original`` already is an aligned crop; it is resized, never
    enlarged (its own side if smaller), and (None, None) comes back when that is not above the model's
    ``size``."""
    from pada.faces.align import align_face, aligned_crop
    from pada.faces.io import to_tensor

    if face is None:
        side = min(int(out_size), int(original.shape[0]))
        return (to_tensor(aligned_crop(original, side))[0], None) if side > size else (None, None)
    big = align_face(original, face.face, int(out_size), source=face.source)
    return to_tensor(big.image)[0], big


def age_faces(pipe, faces: Sequence[FaceResult], targets: Sequence[Target], *, n: int, ref=None,
              seed: int = 0, gender: str | None = None, critics: FaceCritics | None = None,
              progress: bool = False, what: str = "result", **age_kwargs) -> list[FaceResult]:
    """Age every face for every target (``pipe.age``, N results each); fills ``outputs`` (and the critics'
    scores). ``gender`` fixes the gender used to turn ages into text (default: each face's estimate, else
    the vision-language model's zero-shot guess). Non-finite results raise :class:`PadaError` naming
    ``what`` (the output file) instead of giving a black image."""
    if not targets:
        raise PadaError("give a target: --age 70, --text \"man's face in his sixties\" or --ref FACE.jpg")
    for fr in faces:
        g = gender or fr.est_gender
        if g is None and any(t.age is not None for t in targets):
            g = pipe.infer_gender(fr.image[None])
        fr.outputs, fr.outputs_hr, fr.texts, fr.out_ages, fr.identity, fr.edit_scales = [], [], [], [], [], []
        fr.structure = []
        for t in targets:
            text = t.text_for(g)
            if progress:
                age_kwargs["progress"] = True
            sharp = {} if fr.image_hr is None else {"image_hr": fr.image_hr[None]}  # this face's own crop
            res = pipe.age(fr.image[None], text=text, ref=ref if t.ref else None, n=n, seed=seed,
                           **age_kwargs, **sharp)
            images = res.images.float().cpu()
            require_finite(images, what)
            fr.outputs.append(images)
            fr.structure.append([float(v) for v in structure_change(images, fr.image[None].float().cpu())])
            if getattr(res, "images_hr", None) is not None:
                require_finite(res.images_hr, what)
                fr.outputs_hr.append(res.images_hr.float().cpu())
            fr.texts.append(text)
            fr.edit_scales.append(getattr(res, "edit_scales", None))
            if critics is not None:  # the images the user gets
                shown, source = fr.shown(len(fr.outputs) - 1)
                fr.out_ages.append(critics.ages(shown))
                fr.identity.append(critics.identity_similarity(source[None], shown))
    return faces


def compose_photo(original: np.ndarray, faces: Sequence[FaceResult], target_index: int,
                  result_index: int) -> np.ndarray:
    """The whole photo with result ``result_index`` of target ``target_index`` pasted on every face
    (feathered mask, colour-matched to the photo). The mask is the face region
    (:data:`~pada.faces.align.FACE_ELLIPSE`) for a model-size result, whose background is the model's own;
    for a result carried onto the photo's crop (``outputs_hr``) it is the head, hair included
    (:data:`~pada.faces.align.HEAD_ELLIPSE`), so greying hair reaches the photo."""
    from pada.faces.align import paste_back
    from pada.faces.io import to_uint8

    out = original
    for fr in faces:
        crop = to_uint8(fr.shown(target_index)[0][result_index])
        sharp = bool(fr.outputs_hr) and fr.face_hr is not None
        out = paste_back(out, fr.face_hr if sharp else fr.face, crop, feather=0.12,
                         mask_shape="head" if sharp else "face", color_match=True)
    return out


def result_caption(fr: FaceResult, j: int, i: int) -> str:
    """``#1 ~52``: result ``i`` of target ``j`` with its estimated age, ``x0.5`` when the back-off rendered it
    with a shorter edit (so it ages less than its siblings), and ``!`` when its skin lost its structure
    (:func:`structure_broken`: likely a pale mask or smeared features)."""
    cap = f"#{i}"
    if fr.out_ages:
        cap += f" ~{fr.out_ages[j][i]:.0f}"
    scales = fr.edit_scales[j] if j < len(fr.edit_scales) else None
    if scales is not None and scales[i] < 1.0:
        cap += f" x{scales[i]:g}"
    if structure_broken(fr, j, i):
        cap += " !"
    return cap


def structure_broken(fr: FaceResult, j: int, i: int) -> bool:
    """Whether result ``i`` of target ``j`` lost more of its skin's structure than
    :data:`~pada.evaluation.scores.STRUCTURE_LIMIT` (False when it was not measured)."""
    return j < len(fr.structure) and fr.structure[j][i] > STRUCTURE_LIMIT


def count_broken(faces: Sequence[FaceResult]) -> int:
    """How many results of ``faces`` are marked ``!`` (:func:`structure_broken`)."""
    return sum(structure_broken(fr, j, i)
               for fr in faces for j, s in enumerate(fr.structure) for i in range(len(s)))


def mark_broken_frames(labels: Sequence[str], frames: torch.Tensor,
                       image: torch.Tensor) -> tuple[list[str], int]:
    """A lifespan's frame captions, ``!`` put in front of each frame's (F, 3, S, S) whose skin lost its
    structure against the input ``image`` ((1, 3, S, S) or (3, S, S)) (above
    :data:`~pada.evaluation.scores.STRUCTURE_LIMIT`), and how many frames that is."""
    scores = structure_change(frames.float().cpu(), image.reshape(-1, *image.shape[-3:])[:1].float().cpu())
    broken = [float(v) > STRUCTURE_LIMIT for v in scores]
    # in front: a long caption is cut at the tile's width, and the mark must stay
    return [f"! {lab}".strip() if b else lab for lab, b in zip(labels, broken)], sum(broken)


#: what ``pada age`` prints when some results are marked (``{n}``: how many)
BROKEN_NOTE = ("note: {n} result(s) marked '!' lost the skin's local structure against the input (structure "
               f"change above {STRUCTURE_LIMIT:g}): a pale mask or smeared features are likely; "
               "--structure-guard 0.13 renders such results again with a shorter edit")


def face_grid(fr: FaceResult, targets: Sequence[Target], ref_tile: np.ndarray | None = None) -> np.ndarray:
    """The labelled grid of one face: a row per target with the input (and reference), then N results."""
    from pada.faces.io import to_uint8

    src = to_uint8(fr.shown(0)[1]) if targets else to_uint8(fr.image)
    src_cap = "input" + (f" ~{fr.est_age:.0f}" if fr.est_age is not None else "")
    rows = []
    for j, t in enumerate(targets):
        results = fr.shown(j)[0]
        tiles = [src] + ([ref_tile] if ref_tile is not None and t.ref else []) + list(to_uint8(results))
        caps = [src_cap] + (["reference"] if ref_tile is not None and t.ref else [])
        caps += [result_caption(fr, j, i) for i in range(results.shape[0])]
        text = fr.texts[j]
        title = t.label if text in (None, t.label) else f"{t.label}: \"{text}\""
        rows.append((title, tiles, caps))
    return labelled_grid(rows)


def lifespan_grid(images: torch.Tensor, labels: Sequence[str]) -> np.ndarray:
    """One labelled row of a lifespan sweep (frames captioned with their anchor description)."""
    from pada.faces.io import to_uint8

    caps = [lab.replace("'s face", "").replace("a toddler ", "toddler ") for lab in labels]
    return labelled_grid([("lifespan", list(to_uint8(images)), caps)])
