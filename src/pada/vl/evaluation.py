"""Evaluation of a vision-language backbone on age: zero-shot groups and open-world phrases.

* **Zero-shot age groups** — each held-out face gets the description (of the 14, :data:`DESCRIPTIONS`) with
  the highest cosine similarity; the group and gender of that description are the prediction. Reported: top-1
  group accuracy, within-one-group accuracy (``|pred - true| <= 1``) and gender accuracy.
* **Open-world phrases** — for each phrase of :data:`pada.vl.captions.OPEN_WORLD_PHRASES` (never seen in
  training), the description with the highest cosine similarity must belong to a group that overlaps the
  phrase's expected age interval ("ordered correctly"); for gendered phrases the gender is reported
  separately.

Everything works on embeddings, so the same functions score FaceCLIP, the raw-MiniLM baseline and open_clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pada.data.groups import AGE_GROUPS, DESCRIPTIONS, GENDERS
from pada.vl.captions import OPEN_WORLD_PHRASES, Caption, parse_groups


def zero_shot_groups(image_emb: torch.Tensor, desc_emb: torch.Tensor, groups: Sequence[int],
                     genders: Sequence[str]) -> dict[str, Any]:
    """Zero-shot FFHQ-AT classification.

    Args:
        image_emb: ``(N, D)`` unit image embeddings.
        desc_emb: ``(14, D)`` unit embeddings of :data:`DESCRIPTIONS` (in that order).
        groups: ``N`` true group indices; genders: ``N`` true genders.
    """
    sims = image_emb @ desc_emb.T  # (N, 14)
    best = sims.argmax(dim=1)
    pred_group = (best // 2).tolist()
    pred_gender = [GENDERS[int(i) % 2] for i in best]
    true = torch.tensor(list(groups))
    pg = torch.tensor(pred_group)
    n = len(true)
    confusion = torch.zeros(len(AGE_GROUPS), len(AGE_GROUPS), dtype=torch.long)
    for t, p in zip(true.tolist(), pg.tolist()):
        confusion[t, p] += 1
    return {
        "n": n,
        "top1": float((pg == true).float().mean()),
        "within_one": float(((pg - true).abs() <= 1).float().mean()),
        "gender_acc": float(sum(a == b for a, b in zip(pred_gender, genders)) / max(n, 1)),
        "confusion": confusion.tolist(),
    }


def open_world(text_encode, phrases: Sequence[Caption] = OPEN_WORLD_PHRASES) -> dict[str, Any]:
    """Score the open-world phrases with ``text_encode(list[str]) -> (N, D)`` unit vectors."""
    desc = text_encode(list(DESCRIPTIONS))
    emb = text_encode([p.text for p in phrases])
    sims = emb @ desc.T
    rows = []
    for p, s in zip(phrases, sims):
        best = int(s.argmax())
        ok_groups = parse_groups(p)
        gender_ok = p.gender is None or GENDERS[best % 2] == p.gender
        rows.append({"phrase": p.text, "expected_ages": [p.lo, p.hi], "top_description": DESCRIPTIONS[best],
                     "group_ok": best // 2 in ok_groups, "gender_ok": gender_ok,
                     "cos": round(float(s[best]), 4)})
    n = len(rows)
    return {"n": n, "group_correct": sum(r["group_ok"] for r in rows),
            "group_correct_frac": sum(r["group_ok"] for r in rows) / n,
            "group_and_gender_correct": sum(r["group_ok"] and r["gender_ok"] for r in rows),
            "phrases": rows}
