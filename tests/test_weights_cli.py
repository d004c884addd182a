"""`pada weights list|verify|path` on a temporary registry."""

from __future__ import annotations

import hashlib
import json

import pytest

from pada import weights as wreg
from pada.cli.main import main


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    reg = tmp_path / "registry"
    reg.mkdir()
    store = tmp_path / "store"
    store.mkdir()
    good = b"good weights"
    (store / "good.bin").write_bytes(good)
    (store / "bad.bin").write_bytes(b"tampered")
    (store / "free.bin").write_bytes(b"user file")
    entries = [
        {"name": "good", "filename": "good.bin", "sha256": hashlib.sha256(good).hexdigest(),
         "how_to_get": "comes with the test."},
        {"name": "bad", "filename": "bad.bin", "sha256": hashlib.sha256(b"original").hexdigest(),
         "how_to_get": "comes with the test."},
        {"name": "free", "filename": "free.bin", "sha256": None, "how_to_get": "bring your own."},
        {"name": "absent", "filename": "absent.bin", "sha256": "0" * 64,
         "how_to_get": "pip install absent-weights."},
    ]
    for e in entries:
        (reg / f"{e['name']}.json").write_text(json.dumps(e))
    monkeypatch.setattr(wreg, "REGISTRY_DIR", reg)
    monkeypatch.setenv("PADA_WEIGHTS_DIR", str(store))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    wreg.registry.cache_clear()
    yield store
    wreg.registry.cache_clear()


def test_list_shows_paths_and_how_to_get(fake_registry, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(fake_registry / "good.bin") in out
    assert "absent" in out and "MISSING - pip install absent-weights." in out
    assert "3/4 weight files found" in out
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["good"]["found"] and not rows["absent"]["found"]
    assert rows["absent"]["path"] is None


def test_verify_reports_ok_and_mismatch(fake_registry, capsys):
    assert main(["weights", "verify", "good", "free"]) == 0
    out = capsys.readouterr().out
    assert "good:" in out and "OK" in out
    assert hashlib.sha256(b"user file").hexdigest() in out  # no reference: prints the digest
    assert main(["weights", "verify"]) == 1  # "bad" does not match; "absent" alone would not fail
    out = capsys.readouterr().out
    assert "bad:" in out and "MISMATCH" in out and "absent: missing" in out
    assert main(["weights", "verify", "absent"]) == 1


def test_path_prints_or_errors_in_one_line(fake_registry, capsys):
    assert main(["weights", "path", "good"]) == 0
    assert capsys.readouterr().out.strip() == str(fake_registry / "good.bin")
    assert main(["weights", "path", "absent"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: absent.bin") and "pip install absent-weights." in err
    assert len(err.splitlines()) == 1
    assert main(["weights", "path", "nope"]) == 1
    assert "unknown weight name 'nope'" in capsys.readouterr().err


def test_real_registry_lists_without_error(capsys):
    wreg.registry.cache_clear()
    assert main(["weights", "list", "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert "inception-fid" in names
