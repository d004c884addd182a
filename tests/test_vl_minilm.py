"""The MiniLM text tower: lazy loading and the shipped table of the 14 age descriptions."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from pada.data.groups import DESCRIPTIONS
from pada.vl.minilm import MiniLMEncoder, read_sentence_table, write_sentence_table
from pada.weights import get, resolve, sha256_file


@pytest.fixture(scope="module")
def fresh():
    """Embeddings of the 14 descriptions computed by the tower itself (no table)."""
    enc = MiniLMEncoder(use_table=False)
    return enc(list(DESCRIPTIONS))


def test_the_shipped_table_equals_what_the_tower_computes(fresh):
    path = resolve("minilm-sentences")  # sha256-checked against the registry
    assert sha256_file(path) == get("minilm-sentences").sha256
    enc = MiniLMEncoder()
    got = enc(list(DESCRIPTIONS))
    assert not enc.loaded  # answered from the table: transformers never imported for these
    # the table was computed on one CPU; another CPU's kernels (or thread count) round differently, ~2e-7
    torch.testing.assert_close(got, fresh, atol=1e-5, rtol=0)


def test_the_tower_is_built_on_the_first_other_sentence_and_answers_the_same(fresh):
    enc = MiniLMEncoder()
    other = enc(["an old sailor with a white beard", DESCRIPTIONS[3]])
    assert enc.loaded and other.shape == (2, 384)
    assert torch.allclose(other.norm(dim=1), torch.ones(2), atol=1e-5)
    torch.testing.assert_close(other[1], fresh[3], atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.bert.training


def test_a_table_made_for_another_minilm_file_is_ignored(tmp_path, fresh):
    enc = MiniLMEncoder(use_table=False)
    good = write_sentence_table(tmp_path / "good.safetensors", texts=DESCRIPTIONS[:2])
    table = read_sentence_table(enc.folder, good)
    assert list(table) == list(DESCRIPTIONS[:2]) and torch.equal(table[DESCRIPTIONS[1]], fresh[1])
    meta = {"texts": json.dumps(list(DESCRIPTIONS[:2])), "weights_sha256": "0" * 64,
            "weights_bytes": str((enc.folder / "model.safetensors").stat().st_size)}
    save_file({"embeddings": torch.zeros(2, 384)}, str(tmp_path / "other.safetensors"), metadata=meta)
    assert read_sentence_table(enc.folder, tmp_path / "other.safetensors") == {}
    assert read_sentence_table(enc.folder, tmp_path / "missing.safetensors") == {}
