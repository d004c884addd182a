"""DiffAE checkpoint IO: pickle refusal, Lightning layout, strict loading, safetensors export."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import torch

from pada.errors import CheckpointError, PadaError
from pada.networks.checkpoint import (
    load_diffae,
    load_state_dict_file,
    read_safetensors_metadata,
    save_diffae,
)
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet


def _tiny(seed: int = 0) -> DiffAEUNet:
    torch.manual_seed(seed)
    model = DiffAEUNet(load_preset("tiny32")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def _lightning(model: DiffAEUNet, extra: dict | None = None) -> dict:
    sd = {"x_T": torch.zeros(1, 3, 32, 32)}
    sd.update({f"model.{k}": torch.zeros_like(v) for k, v in model.state_dict().items()})
    sd.update({f"ema_model.{k}": v for k, v in model.state_dict().items()})
    return {"state_dict": sd, "global_step": 5, "epoch": 0, **(extra or {})}


def test_lightning_layout_takes_ema(tmp_path: Path) -> None:
    model = _tiny()
    path = tmp_path / "last.ckpt"
    torch.save(_lightning(model), path)
    sd = load_state_dict_file(path)
    assert set(sd) == set(model.state_dict())
    loaded = load_diffae(path, preset="tiny32")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    raw = load_state_dict_file(path, prefix="model.")
    assert all(v.abs().sum() == 0 for v in raw.values())


def test_pickle_refused_then_trusted(tmp_path: Path) -> None:
    model = _tiny()
    path = tmp_path / "hp.ckpt"
    # Lightning stores hyper-parameters as arbitrary Python objects, e.g. a Namespace
    torch.save(_lightning(model, {"hyper_parameters": argparse.Namespace(lr=1e-4)}), path)
    with pytest.raises(CheckpointError) as err:
        load_diffae(path, preset="tiny32")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and "refused" in msg and "trust_pickle=True" in msg and "--trust-pickle" in msg
    loaded = load_diffae(path, preset="tiny32", trust_pickle=True)
    assert torch.equal(loaded.out[2].weight, model.out[2].weight)


def test_wrong_preset_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save(_lightning(_tiny()), path)
    with pytest.raises(CheckpointError) as err:
        load_diffae(path, preset="pada64")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "pada64" in msg
    assert "mis-shaped" in msg or "missing" in msg
    with pytest.raises(CheckpointError, match="pass a preset"):
        load_diffae(path)
    with pytest.raises(CheckpointError, match="unknown DiffAE preset"):
        load_diffae(path, preset="no_such_preset")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_file(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_state_dict_file(junk)
    junk_st = tmp_path / "junk.safetensors"
    junk_st.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_state_dict_file(junk_st)


def test_safetensors_round_trip_with_config(tmp_path: Path) -> None:
    model = _tiny(3)
    path = save_diffae(model, tmp_path / "m.safetensors", metadata={"step": 7, "note": "x"})
    meta = read_safetensors_metadata(path)
    assert meta["metadata"] == {"step": 7, "note": "x"}
    assert meta["config"]["model_channels"] == model.config.model_channels
    loaded = load_diffae(path)  # no preset needed: config travels with the file
    assert loaded.config == model.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([1, 900])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, loaded.encode(x)), model(x, t, model.encode(x)))
    # deterministic bytes
    again = save_diffae(model, tmp_path / "m2.safetensors", metadata={"note": "x", "step": 7})
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    with pytest.raises(PadaError, match="safetensors"):
        save_diffae(model, tmp_path / "m.pt")


def test_fp16_export(tmp_path: Path) -> None:
    model = _tiny(4)
    full = save_diffae(model, tmp_path / "f32.safetensors")
    half = save_diffae(model, tmp_path / "f16.safetensors", fp16=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_diffae(half)
    w = loaded.input_blocks[1][0].in_layers[2].weight
    assert w.dtype == torch.float32
    ref = model.input_blocks[1][0].in_layers[2].weight.detach()
    assert torch.equal(w, ref.half().float())
    assert not torch.equal(w, ref)
