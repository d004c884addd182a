"""Age-dependent gain on PADA's shift (a pada addition, applied at inference only).

A trained modulation gives a shift d = z_age − z_src per request; the pipeline renders
``z_src + g(a)·d``, where ``a`` is the request's target age and ``g`` a piecewise-linear curve through
the knots of ``PadaConfig.shift_gain`` (flat beyond the first and last knot). Why: on 12 train faces
``pada-demo64`` v7's shift looked too short for old targets ("sixties" read 47, "eighties" 52) and a longer
one bought more years per unit of identity than the linear baseline (``benchmarks/bench_shift_gain.py``);
on the 16 held-out faces the same gain did not (docs/pada_history.md, session 16), so the shipped model has
none. The option stays for models and data where the calibration holds.

Per-face calibration (``AgingPipeline.age(..., calibrate=True)``, ``pada age --calibrate``) scales each
request's edit instead by a factor picked for that face: the PAE-mean edit is rendered at the factors of
:data:`CALIBRATION_FACTORS`, the vision-language model reads each render's age (:func:`read_ages`), and
:func:`pick_factor` takes the factor whose reading is nearest the target, charging
:data:`CALIBRATION_COST` years per unit of lengthening (a longer edit costs identity), among the factors
whose render stays within :data:`CALIBRATION_HF_GUARD` times the input's high-frequency energy (and, with
``PadaConfig.patch_guard`` > 0, whose render's skin colour changes evenly enough,
:func:`pada.evaluation.scores.patch_change`).
Why: one trained shift gives every face nearly the same move for one target, so faces that already look
old overshoot and young-looking ones fall short; the per-face choice cut Age MAE by 1.0 (12 train faces)
and 1.3 years (16 held-out) at the same identity compared with one factor for all (docs/pada_history.md,
session 17).

The target age of a request comes from its PAE embedding: the age group whose text prototype (the
normalised mean of the group's female and male descriptions, :func:`group_prototypes`) is nearest in
the vision-language space, so text, reference-image and mixed requests all get one. Spec format:
``"AGE:GAIN,AGE:GAIN,..."`` with ages strictly increasing; ``""`` = off (gain 1 everywhere).
"""

from __future__ import annotations

import functools

import torch

from pada.data.groups import AGE_GROUPS
from pada.errors import PadaError

MAX_GAIN = 4.0
#: edit lengths a per-face calibration renders and chooses among (1 = the modulation's own edit)
CALIBRATION_FACTORS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
#: years of age error a calibration accepts per unit of lengthening beyond 1 (identity cost of a longer edit;
#: 8 was the best of 0 / 4 / 8 / 16 on 12 train faces at equal identity)
CALIBRATION_COST = 8.0
#: a calibration skips lengths whose render carries more than this times the input's high-frequency energy
#: (the texture check's limit is 1.5; the margin leaves room for the draw spread on top)
CALIBRATION_HF_GUARD = 1.3
#: with a young cap c > 0, a request whose target is younger than the face (as the VL model reads it) renders
#: these fractions of c instead of CALIBRATION_FACTORS: young edits darken the eyes and brows step by step and
#: the VL read-out takes that for youth, so without a cap it picks the long, broken lengths (session 43)
YOUNG_FRACTIONS: tuple[float, ...] = (0.5, 0.75, 1.0)
#: the largest young cap: the longest of CALIBRATION_FACTORS (a larger one would lengthen, not cap)
MAX_YOUNG_CAP = 1.5
#: sharpness of the VL age read-out's softmax over the age-group prototypes (cosine similarities)
READ_SCALE = 10.0


@functools.lru_cache(maxsize=32)
def parse_shift_gain(spec: str) -> tuple[tuple[float, float], ...]:
    """Knots ((age, gain), ...) of a ``shift_gain`` spec; () for ""; PadaError naming the problem."""
    spec = (spec or "").strip()
    if not spec:
        return ()
    knots = []
    for part in spec.split(","):
        age, sep, gain = part.partition(":")
        try:
            if not sep:
                raise ValueError
            a, g = float(age), float(gain)
        except ValueError:
            raise PadaError(f"shift_gain {spec!r}: {part.strip()!r} is not AGE:GAIN") from None
        if not (0.0 <= a <= 120.0):
            raise PadaError(f"shift_gain {spec!r}: age {a:g} is outside [0, 120]")
        if not (0.0 < g <= MAX_GAIN):
            raise PadaError(f"shift_gain {spec!r}: gain {g:g} is outside (0, {MAX_GAIN:g}]")
        if knots and a <= knots[-1][0]:
            raise PadaError(f"shift_gain {spec!r}: ages must increase ({a:g} after {knots[-1][0]:g})")
        knots.append((a, g))
    return tuple(knots)


def gain_at(knots: tuple[tuple[float, float], ...], age: float) -> float:
    """The piecewise-linear gain at ``age`` (flat beyond the end knots; 1 without knots)."""
    if not knots:
        return 1.0
    if age <= knots[0][0]:
        return knots[0][1]
    for (a0, g0), (a1, g1) in zip(knots, knots[1:]):
        if age <= a1:
            return g0 + (g1 - g0) * (age - a0) / (a1 - a0)
    return knots[-1][1]


def _centres() -> torch.Tensor:
    """(7,) the age groups' centre ages, in the order of ``AGE_GROUPS`` (and of the prototypes)."""
    return torch.tensor([g.center for g in AGE_GROUPS], dtype=torch.float32)


def group_prototypes(descriptions: torch.Tensor) -> torch.Tensor:
    """(7, D): per age group, the normalised mean over genders of the VL embeddings of its descriptions
    ``descriptions`` (G, 7, D) (genders as :data:`pada.data.groups.GENDERS`, groups as ``AGE_GROUPS``)."""
    proto = descriptions.float().mean(0)
    return proto / proto.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def target_ages(prototypes: torch.Tensor, e_age: torch.Tensor) -> torch.Tensor:
    """(N,): the centre of the age group whose prototype (7, D) is nearest (cosine) to each e_age (N, D)."""
    e = e_age.float() / e_age.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    nearest = (e @ prototypes.to(e.device).T).argmax(-1)
    return _centres()[nearest.cpu()]


def read_ages(prototypes: torch.Tensor, e_img: torch.Tensor, scale: float = READ_SCALE) -> torch.Tensor:
    """(N,) ages read off image embeddings e_img (N, D): the age groups' centres weighted by a softmax of
    ``scale`` × the cosine to each group prototype (7, D). A soft read-out, so it moves continuously
    between groups (the nearest-prototype :func:`target_ages` would jump)."""
    e = e_img.float() / e_img.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w = torch.softmax(scale * (e @ prototypes.to(e.device).float().T), dim=-1)
    return (w * _centres().to(e.device)).sum(-1).cpu()


def young_cap_value(value: float) -> float:
    """``value`` as a young cap (``PadaConfig.young_cap``), a :class:`PadaError` naming it unless it lies in
    [0, :data:`MAX_YOUNG_CAP`] (0 = off)."""
    v = float(value)
    if not 0.0 <= v <= MAX_YOUNG_CAP:
        raise PadaError(f"young cap must be in [0, {MAX_YOUNG_CAP:g}], got {value}")
    return v


def calibration_factors(target_age: float, source_age: float | None,
                        young_cap: float = 0.0) -> tuple[float, ...]:
    """The edit lengths a calibration renders for a request of ``target_age`` on a face read as
    ``source_age``: :data:`CALIBRATION_FACTORS`, or ``young_cap`` × :data:`YOUNG_FRACTIONS` when the cap is
    on (> 0) and the target is younger than the face (``source_age`` None: the face's age is unknown, so no
    cap)."""
    cap = young_cap_value(young_cap)
    if cap > 0 and source_age is not None and float(target_age) < float(source_age):
        return tuple(cap * f for f in YOUNG_FRACTIONS)
    return CALIBRATION_FACTORS


def pick_factor(ages: torch.Tensor | list[float], target: float,
                factors: tuple[float, ...] = CALIBRATION_FACTORS, cost: float = CALIBRATION_COST,
                hf_ratios: torch.Tensor | list[float] | None = None,
                hf_guard: float = CALIBRATION_HF_GUARD,
                patches: torch.Tensor | list[float] | None = None, patch_guard: float = 0.0) -> float:
    """The factor of ``factors`` whose render read ``ages[k]`` minimises |age − target| + cost·max(0, f − 1)
    (ties: the first, so the shorter edit). With ``hf_ratios`` (each render's high-frequency energy over
    the input's), only factors whose ratio is at most ``hf_guard`` compete; with ``patches`` (each render's
    :func:`pada.evaluation.scores.patch_change`) and ``patch_guard`` > 0, only those whose score is at most
    ``patch_guard`` too. If none passes, the factor that exceeds its guards least (the largest of
    ratio / guard)."""
    ages = [float(a) for a in ages]
    if len(ages) != len(factors):
        raise ValueError(f"{len(ages)} ages for {len(factors)} factors")
    scores = [abs(a - target) + cost * max(0.0, f - 1.0) for a, f in zip(ages, factors)]
    over = [[] for _ in factors]  # per factor: each guard's score over its limit (<= 1 passes)
    for values, limit, what in ((hf_ratios, hf_guard, "high-frequency ratios"),
                                (patches if patch_guard > 0 else None, patch_guard, "patch scores")):
        if values is None:
            continue
        values = [float(v) for v in values]
        if len(values) != len(factors):
            raise ValueError(f"{len(values)} {what} for {len(factors)} factors")
        for k, v in enumerate(values):
            over[k].append(v / limit)
    keep = [k for k in range(len(factors)) if all(o <= 1.0 for o in over[k])]
    if not keep:
        keep = [min(range(len(factors)), key=lambda k: max(over[k]))]
    return factors[min(keep, key=scores.__getitem__)]


def shift_gains(knots: tuple[tuple[float, float], ...], ages: torch.Tensor) -> torch.Tensor:
    """(N,) gains of the target ages (N,)."""
    return torch.tensor([gain_at(knots, float(a)) for a in ages], dtype=torch.float32)


__all__ = ["CALIBRATION_COST", "CALIBRATION_FACTORS", "CALIBRATION_HF_GUARD", "MAX_GAIN", "READ_SCALE",
           "gain_at", "group_prototypes", "parse_shift_gain", "pick_factor", "read_ages", "shift_gains",
           "target_ages"]
