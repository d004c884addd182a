"""The FFHQ-AT age groups and the paper's 14 text descriptions (PADA §4, "Datasets").

Seven groups: 0-5, 6-15, 16-25, 26-35, 36-50, 51-70, 70+; each has one description per gender, e.g.
"a toddler girl's face" or "man's face in his sixties".

The paper labels an image "according to the absolute difference between the predicted age and the
pre-defined age". It does not publish the pre-defined ages, so we pick them such that the
nearest-anchor rule gives exactly the group intervals: consecutive anchors are symmetric about each
group boundary (5.5, 15.5, 25.5, 35.5, 50.5, 70.5), starting from 2.5 for toddlers. ``center`` is the
midpoint of the interval (80 for 70+) and is what evaluation uses as the target age of a group.
"""

from __future__ import annotations

from dataclasses import dataclass

GENDERS = ("female", "male")


@dataclass(frozen=True)
class AgeGroup:
    index: int
    lo: int
    hi: int | None  # inclusive; None = open-ended
    word: str  # the decade word used in descriptions ("toddler", "tens", ...)
    anchor: float  # pre-defined age for the nearest-anchor labelling rule
    center: float  # target age used by evaluation

    @property
    def name(self) -> str:
        return f"{self.lo}+" if self.hi is None else f"{self.lo}-{self.hi}"

    def contains(self, age: float) -> bool:
        """True when the labelling rule (:func:`group_of_age`) puts ``age`` in this group."""
        return group_of_age(age).index == self.index


AGE_GROUPS: tuple[AgeGroup, ...] = (
    AgeGroup(0, 0, 5, "toddler", 2.5, 2.5),
    AgeGroup(1, 6, 15, "tens", 8.5, 10.5),
    AgeGroup(2, 16, 25, "twenties", 22.5, 20.5),
    AgeGroup(3, 26, 35, "thirties", 28.5, 30.5),
    AgeGroup(4, 36, 50, "forties", 42.5, 43.0),
    AgeGroup(5, 51, 70, "sixties", 58.5, 60.5),
    AgeGroup(6, 70, None, "eighties", 82.5, 80.0),
)


def description(group: int | AgeGroup, gender: str) -> str:
    """The paper's text for a group and gender ("female"/"male")."""
    g = AGE_GROUPS[group] if isinstance(group, int) else group
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    female = gender == "female"
    if g.word == "toddler":
        return f"a toddler {'girl' if female else 'boy'}'s face"
    return f"{'woman' if female else 'man'}'s face in {'her' if female else 'his'} {g.word}"


# The 14 descriptions, ordered (group 0 female, group 0 male, group 1 female, ...).
DESCRIPTIONS: tuple[str, ...] = tuple(description(g, s) for g in AGE_GROUPS for s in GENDERS)


def group_of_age(age: float) -> AgeGroup:
    """Group whose anchor is closest to ``age`` (the paper's rule; equals the interval rule).

    Anchors are symmetric about the boundaries 5.5, 15.5, 25.5, 35.5, 50.5 and 70.5; an age exactly on
    a boundary goes to the older group, so each group covers ``[boundary_below, boundary_above)``.
    """
    return min(AGE_GROUPS, key=lambda g: (abs(age - g.anchor), -g.index))


def parse_description(text: str) -> tuple[AgeGroup, str] | None:
    """Inverse of :func:`description` for the 14 canonical texts (None for any other text)."""
    for g in AGE_GROUPS:
        for s in GENDERS:
            if description(g, s) == text.strip():
                return g, s
    return None


def group_by_word(word: str) -> AgeGroup:
    """Group for a decade word such as "sixties" (also accepts the group name "51-70")."""
    for g in AGE_GROUPS:
        if word in (g.word, g.name):
            return g
    raise ValueError(f"unknown age group {word!r}; known: {', '.join(g.word for g in AGE_GROUPS)}")
