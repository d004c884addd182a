"""Counts of a labels table per age group × gender, as text and as a bar chart (``pada data stats``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pada.data.groups import AGE_GROUPS, GENDERS


def count_groups(rows: Iterable[dict[str, Any]]) -> np.ndarray:
    """``(7, 2)`` int64 counts: row = age group index, column = gender (female, male)."""
    counts = np.zeros((len(AGE_GROUPS), len(GENDERS)), dtype=np.int64)
    for r in rows:
        counts[int(r["group"]), GENDERS.index(r["gender"])] += 1
    return counts


def counts_dict(counts: np.ndarray) -> dict[str, dict[str, int]]:
    """``{"0-5": {"female": n, "male": n}, ...}`` (JSON-friendly)."""
    return {g.name: {s: int(counts[g.index, j]) for j, s in enumerate(GENDERS)} for g in AGE_GROUPS}


def format_counts(counts: np.ndarray) -> str:
    """A plain-text table: one line per age group with female, male, total and share, then totals."""
    total = int(counts.sum())
    lines = [f"{'group':>6} {'female':>7} {'male':>7} {'total':>7} {'share':>7}"]
    for g in AGE_GROUPS:
        f, m = (int(v) for v in counts[g.index])
        share = f"{100.0 * (f + m) / total:6.1f}%" if total else "     -"
        lines.append(f"{g.name:>6} {f:7d} {m:7d} {f + m:7d} {share:>7}")
    lines.append(f"{'all':>6} {int(counts[:, 0].sum()):7d} {int(counts[:, 1].sum()):7d} {total:7d}")
    return "\n".join(lines)


def plot_counts(counts: np.ndarray, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write a grouped bar chart (age groups on x, one bar per gender) as PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # figure without pyplot: no global state, no GUI backend

    fig = Figure(figsize=(7.0, 3.6), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(AGE_GROUPS))
    width = 0.38
    colors = ("#d0587e", "#3f7cac")
    for j, gender in enumerate(GENDERS):
        bars = ax.bar(x + (j - 0.5) * width, counts[:, j], width, label=gender, color=colors[j])
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, [g.name for g in AGE_GROUPS])
    ax.set_xlabel("age group")
    ax.set_ylabel("images")
    ax.set_title(title or f"{int(counts.sum())} images by age group and gender")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.12)
    fig.tight_layout()
    from pada.outputs import atomic_path

    out = Path(path)
    with atomic_path(out) as tmp:  # all or nothing, umask mode, one-line OSError
        fig.savefig(tmp, format="png")
    return out
