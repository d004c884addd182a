"""Caption bank and open-world phrases (pada.vl.captions)."""

from __future__ import annotations

import re

import pytest

from pada.data.groups import AGE_GROUPS, DESCRIPTIONS
from pada.vl import captions as cap
from pada.vl.captions import OPEN_WORLD_PHRASES, Caption, caption_bank, normalise


def test_open_world_phrases_never_in_training_captions():
    bank = [normalise(c.text) for c in caption_bank()]
    for p in OPEN_WORLD_PHRASES:
        needle = normalise(p.text)
        hits = [t for t in bank if re.search(rf"(^|\W){re.escape(needle)}($|\W)", t) or t == needle]
        assert not hits, f"open-world phrase {p.text!r} appears in training captions: {hits[:3]}"


def test_training_sampler_only_uses_the_bank():
    # the trainer draws captions only from caption_bank(); the bank has no duplicates
    bank = caption_bank()
    texts = [normalise(c.text) for c in bank]
    assert len(texts) == len(set(texts))
    assert len(bank) > 1000


def test_open_world_list_is_large_and_valid():
    assert len(OPEN_WORLD_PHRASES) >= 20
    for p in OPEN_WORLD_PHRASES:
        assert p.lo <= p.hi
        assert p.gender in (None, "female", "male")
        assert p.groups(), p


def test_paper_descriptions_first_with_group_intervals():
    bank = caption_bank()
    assert [c.text for c in bank[:14]] == list(DESCRIPTIONS)
    sixties_man = bank[DESCRIPTIONS.index("man's face in his sixties")]
    assert (sixties_man.lo, sixties_man.hi, sixties_man.gender) == (51, 70, "male")
    toddler = bank[0]
    assert toddler.gender == "female" and toddler.hi == 5


def test_bank_covers_whole_age_range_and_the_requested_styles():
    bank = caption_bank()
    texts = {c.text for c in bank}
    for must in ("woman's face in her forties", "a 43-year-old man", "an elderly woman", "a teenage girl",
                 "a grandmother", "a middle-aged man", "a senior citizen", "a young adult", "a toddler boy"):
        assert must in texts, must
    for a in range(0, 100, 5):
        assert any(c.lo <= a <= c.hi for c in bank), a
    kids = [c for c in bank if c.hi <= 12]
    assert len(kids) > 100  # text-only anchoring needs child captions


def test_caption_fits_and_groups():
    c = Caption("x", 40, 60, "male")
    assert c.fits(45, "male") and c.fits(45, None) and not c.fits(45, "female")
    assert not c.fits(62, "male") and c.fits(62, "male", tol=2)
    assert c.groups() == (4, 5)
    assert Caption("y", 95, 110).groups() == (AGE_GROUPS[-1].index,)


def test_bank_refuses_a_clashing_template(monkeypatch):
    monkeypatch.setattr(cap, "OPEN_WORLD_PHRASES", (Caption("a teenage girl", 13, 19, "female"),))
    cap.caption_bank.cache_clear()
    try:
        with pytest.raises(AssertionError, match="open-world"):
            cap.caption_bank()
    finally:
        monkeypatch.undo()
        cap.caption_bank.cache_clear()
