"""One readable description of how a state_dict differs from what a network expects.

Used by every loader (DiffAE checkpoints, critics, vision-language weights) so a wrong file always gives the
same kind of one-line error: counts of missing / unexpected / wrong-shaped keys with the first few names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _first(names: list[str], n: int) -> str:
    more = f", +{len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def describe_mismatch(state: Mapping[str, Any], expected: Mapping[str, Iterable[int]],
                      optional: Iterable[str] = ()) -> str:
    """``""`` when ``state`` has exactly the ``expected`` keys and shapes, else a short description.

    ``expected`` maps key -> shape; keys in ``optional`` may be absent (e.g. ``num_batches_tracked``).
    """
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)}!={tuple(expected[k])}"
             for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {_first(missing, 3)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {_first(unexpected, 3)})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes (first: {_first(wrong, 2)})")
    return "; ".join(problems)
