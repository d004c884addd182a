"""Age captions for FaceCLIP training and the open-world phrases held out from it.

A :class:`Caption` is a text with the age interval ``[lo, hi]`` (years, inclusive) it describes and its gender
(``"female"``, ``"male"`` or ``None`` when the text does not say). :func:`caption_bank` enumerates,
deterministically,
every caption the templates can produce:

* the paper's 14 descriptions (:data:`pada.data.groups.DESCRIPTIONS`) with their *group* intervals (so
  "man's face in his sixties" means 51-70, as in FFHQ-AT);
* decades with qualifiers ("woman's face in her forties", "a man in his late thirties", "a photo of a person
  in their early twenties");
* numbers ("a 43-year-old man", "a woman aged 43", "face of a 43 year old lady");
* words ("an elderly woman", "a teenage girl", "grandmother", "a middle-aged man", "a senior citizen",
  "a young adult", "a toddler boy", "a baby girl", ...), covering 0 to 100 years.

:data:`OPEN_WORLD_PHRASES` are ≥ 20 age phrases written to be *unlike* the templates (new words such as
"grandpa", "octogenarian", "retiree", numbers spelled out, other sentence shapes). None of them occurs in any
bank caption, not even as a substring (``tests/test_faceclip_captions.py`` checks the whole bank), so they
measure generalisation of the text tower, not memorisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pada.data.groups import AGE_GROUPS, DESCRIPTIONS, GENDERS, AgeGroup, parse_description

MAX_AGE = 100


@dataclass(frozen=True)
class Caption:
    """A caption and the ages (inclusive interval, years) and gender it describes (``None`` = any)."""

    text: str
    lo: float
    hi: float
    gender: str | None = None

    @property
    def center(self) -> float:
        return 0.5 * (self.lo + self.hi)

    def fits(self, age: float, gender: str | None, tol: float = 0.0) -> bool:
        """True when a face of ``age`` and ``gender`` matches this caption (``tol`` years of slack)."""
        if not self.lo - tol <= age <= self.hi + tol:
            return False
        return self.gender is None or gender is None or self.gender == gender

    def groups(self) -> tuple[int, ...]:
        """Indices of the FFHQ-AT groups whose interval overlaps ``[lo, hi]``."""
        return groups_overlapping(self.lo, self.hi)


def group_interval(g: AgeGroup) -> tuple[float, float]:
    return float(g.lo), float(MAX_AGE if g.hi is None else g.hi)


def groups_overlapping(lo: float, hi: float) -> tuple[int, ...]:
    out = []
    for g in AGE_GROUPS:
        glo, ghi = group_interval(g)
        if lo <= ghi + 0.5 and hi >= glo - 0.5:
            out.append(g.index)
    return tuple(out)


# --------------------------------------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------------------------------------
# Nouns for adults by gender, with the pronoun that goes with them.
ADULT_NOUNS = {"female": ("woman", "lady", "female"), "male": ("man", "gentleman", "guy", "male"),
               None: ("person", "adult", "individual")}
PRONOUN = {"female": "her", "male": "his", None: "their"}

DECADES = {"twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60, "seventies": 70,
           "eighties": 80, "nineties": 90}
QUALIFIERS = {"": (0, 9), "early ": (0, 3), "mid ": (3, 6), "mid-": (3, 6), "late ": (6, 9)}

# Word phrases: (template with {f}/{m} alternatives, lo, hi). "{noun}" is filled per gender below.
WORD_PHRASES: tuple[tuple[str, str | None, float, float], ...] = (
    # babies and small children (no image of them in the demo set: text-only anchoring, see faceclip.py)
    ("a baby girl", "female", 0, 2), ("a baby boy", "male", 0, 2), ("a baby", None, 0, 2),
    ("an infant", None, 0, 1), ("an infant girl", "female", 0, 1), ("an infant boy", "male", 0, 1),
    ("a toddler", None, 1, 4), ("a toddler girl", "female", 1, 4), ("a toddler boy", "male", 1, 4),
    ("a little girl", "female", 3, 9), ("a little boy", "male", 3, 9), ("a small child", None, 2, 7),
    ("a child", None, 2, 12), ("a kid", None, 4, 12), ("a young girl", "female", 5, 12),
    ("a young boy", "male", 5, 12), ("a schoolgirl", "female", 6, 14), ("a schoolboy", "male", 6, 14),
    ("a preteen girl", "female", 10, 12), ("a preteen boy", "male", 10, 12), ("a preschooler", None, 3, 5),
    # teenagers
    ("a teenage girl", "female", 13, 19), ("a teenage boy", "male", 13, 19), ("a teenager", None, 13, 19),
    ("an adolescent girl", "female", 12, 17), ("an adolescent boy", "male", 12, 17),
    ("an adolescent", None, 12, 17), ("a teen", None, 13, 19),
    # young adults
    ("a young woman", "female", 18, 32), ("a young man", "male", 18, 32), ("a young adult", None, 18, 30),
    ("a young lady", "female", 18, 30), ("a young gentleman", "male", 18, 30),
    ("a student", None, 17, 24), ("a girl in her teens", "female", 13, 19),
    ("a boy in his teens", "male", 13, 19),
    # middle age
    ("a middle-aged woman", "female", 40, 60), ("a middle-aged man", "male", 40, 60),
    ("a middle-aged person", None, 40, 60), ("a middle-aged lady", "female", 40, 60),
    ("a middle-aged gentleman", "male", 40, 60), ("a mother", "female", 25, 50), ("a father", "male", 25, 50),
    # old age
    ("a senior woman", "female", 60, 90), ("a senior man", "male", 60, 90),
    ("a senior citizen", None, 65, 95),
    ("an elderly woman", "female", 65, 100), ("an elderly lady", "female", 65, 100),
    ("an elderly gentleman", "male", 65, 100), ("an elderly person", None, 65, 100),
    ("an old woman", "female", 60, 100), ("an old man", "male", 60, 100), ("an old lady", "female", 60, 100),
    ("an old person", None, 60, 100), ("a grandmother", "female", 55, 95), ("a grandfather", "male", 55, 95),
    ("a retired woman", "female", 60, 85), ("a retired man", "male", 60, 85),
    ("an aging woman", "female", 50, 75), ("an aging man", "male", 50, 75),
)

# Frames put around a noun phrase ("{}" = the phrase, e.g. "a 43-year-old man").
FRAMES = ("{}", "a photo of {}", "the face of {}", "portrait of {}", "{}'s face", "a close-up photo of {}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou8" or word.startswith("11") or word.startswith("18") else "a"


def _frame(phrase: str, frame: str) -> str:
    if frame == "{}'s face":  # "a teenage girl" -> "a teenage girl's face"
        return phrase + "'s face"
    return frame.format(phrase)


def _decade_captions() -> list[Caption]:
    out: list[Caption] = []
    for word, base in DECADES.items():
        for q, (a, b) in QUALIFIERS.items():
            lo, hi = base + a, base + b
            for gender, nouns in ADULT_NOUNS.items():
                pron = PRONOUN[gender]
                for noun in nouns:
                    art = _article(noun)
                    out.append(Caption(f"{noun}'s face in {pron} {q}{word}", lo, hi, gender))
                    out.append(Caption(f"{art} {noun} in {pron} {q}{word}", lo, hi, gender))
                    out.append(Caption(f"a photo of {art} {noun} in {pron} {q}{word}", lo, hi, gender))
    # teens as a decade word
    for gender, noun in (("female", "girl"), ("male", "boy"), (None, "person")):
        out.append(Caption(f"{noun}'s face in {PRONOUN[gender]} teens", 13, 19, gender))
    return out


def _number_captions() -> list[Caption]:
    out: list[Caption] = []
    for age in range(0, MAX_AGE + 1):
        young = age < 13
        teen = 13 <= age < 18
        nouns = {"female": ("girl",) if young else (("girl", "woman") if teen else ("woman", "lady")),
                 "male": ("boy",) if young else (("boy", "man") if teen else ("man", "gentleman")),
                 None: ("child",) if young else ("person",)}
        for gender, ns in nouns.items():
            for noun in ns:
                art = _article(str(age))
                out.append(Caption(f"{art} {age}-year-old {noun}", age, age, gender))
                out.append(Caption(f"{_article(noun)} {noun} aged {age}", age, age, gender))
                out.append(Caption(f"face of {art} {age} year old {noun}", age, age, gender))
        out.append(Caption(f"age {age}", age, age, None))
        out.append(Caption(f"{age} years old", age, age, None))
    return out


def _word_captions() -> list[Caption]:
    out: list[Caption] = []
    for phrase, gender, lo, hi in WORD_PHRASES:
        for frame in FRAMES:
            out.append(Caption(_frame(phrase, frame), lo, hi, gender))
    return out


def paper_captions() -> list[Caption]:
    """The 14 descriptions with the FFHQ-AT interval of their group."""
    out = []
    for text in DESCRIPTIONS:
        parsed = parse_description(text)
        assert parsed is not None
        g, gender = parsed
        lo, hi = group_interval(g)
        out.append(Caption(text, lo, hi, gender))
    return out


def normalise(text: str) -> str:
    """Lower case, one space between words, no surrounding punctuation (for verbatim comparisons)."""
    return re.sub(r"\s+", " ", text.lower().strip().strip(".!?")).strip()


@lru_cache(maxsize=1)
def caption_bank() -> tuple[Caption, ...]:
    """Every training caption, deterministic order, unique texts (the paper's 14 come first)."""
    seen: set[str] = set()
    out: list[Caption] = []
    for c in paper_captions() + _decade_captions() + _word_captions() + _number_captions():
        key = normalise(c.text)
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
    banned = [normalise(p.text) for p in OPEN_WORLD_PHRASES]
    clash = [c.text for c in out for b in banned if b in normalise(c.text)]
    if clash:  # programming error: a template produces a held-out phrase
        raise AssertionError(f"caption bank contains open-world phrases: {clash[:5]}")
    return tuple(out)


# --------------------------------------------------------------------------------------------------------
# open-world phrases: never in training (see module docstring); expected age interval and gender
# --------------------------------------------------------------------------------------------------------
OPEN_WORLD_PHRASES: tuple[Caption, ...] = (
    Caption("a very old face", 70, 100),
    Caption("an elderly man", 65, 100, "male"),
    Caption("a face of teenager", 13, 19),
    Caption("someone in their early fifties", 50, 54),
    Caption("a wrinkled old grandpa", 65, 100, "male"),
    Caption("a granny with grey hair", 60, 100, "female"),
    Caption("a retiree", 60, 90),
    Caption("a pensioner", 65, 95),
    Caption("an octogenarian", 80, 89),
    Caption("a centenarian", 95, 110),
    Caption("a newborn", 0, 1),
    Caption("a kindergarten kid", 3, 6),
    Caption("a girl in primary school", 6, 11, "female"),
    Caption("a twelve-year-old boy", 12, 12, "male"),
    Caption("a high school student", 14, 18),
    Caption("a college student", 18, 23),
    Caption("a fresh university graduate", 21, 25),
    Caption("a woman who just turned thirty", 29, 31, "female"),
    Caption("someone in their late thirties", 37, 39),
    Caption("a man approaching retirement age", 58, 66, "male"),
    Caption("a lady in midlife", 40, 55, "female"),
    Caption("a man of seventy-five years", 75, 75, "male"),
    Caption("a youthful face in its twenties", 20, 29),
    Caption("a woman past eighty", 80, 100, "female"),
)


def parse_groups(c: Caption) -> tuple[int, ...]:
    """FFHQ-AT groups a phrase may be matched with (those overlapping its interval)."""
    return c.groups()


__all__ = ["Caption", "caption_bank", "paper_captions", "OPEN_WORLD_PHRASES", "normalise", "parse_groups",
           "groups_overlapping", "GENDERS"]
