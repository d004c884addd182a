"""FaceCLIP training: losses, a small training run on synthetic features, reproducibility, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pada.data.groups import DESCRIPTIONS, GENDERS, group_of_age
from pada.vl.captions import Caption, caption_bank
from pada.vl.faceclip import FaceCLIPConfig, load_heads
from pada.vl.train_faceclip import (
    FaceClipTrainConfig,
    FaceData,
    compat_matrix,
    interval_loss,
    ordinal_loss,
    soft_info_nce,
    train_heads,
)


def test_compat_matrix_age_and_gender():
    bank = (Caption("a", 40, 49, "male"), Caption("b", 40, 49, None), Caption("c", 60, 70, "female"))
    ages = torch.tensor([45.0, 45.0, 50.0, 65.0])
    c = compat_matrix(ages, ["male", "female", None, "female"], bank, tol=1.0)
    assert c.tolist() == [[True, True, False], [False, True, False], [True, True, False],
                          [False, False, True]]


def test_soft_info_nce_prefers_matching_pairs():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    targets = torch.eye(4, dtype=torch.bool)
    scale = torch.tensor(10.0)
    aligned = soft_info_nce(img, img, targets, 4, scale)
    shuffled = soft_info_nce(img, img.roll(1, 0), targets, 4, scale)
    assert aligned < shuffled
    # two faces with the same label: label-aware targets do not reward pushing them apart, hard ones do
    same = torch.nn.functional.normalize(torch.ones(2, 8), dim=1)
    apart = torch.eye(8)[:2]
    both, eye = torch.ones(2, 2, dtype=torch.bool), torch.eye(2, dtype=torch.bool)
    assert soft_info_nce(same, same, both, 2, scale) <= soft_info_nce(apart, apart, both, 2, scale)
    assert soft_info_nce(apart, apart, eye, 2, scale) < soft_info_nce(same, same, eye, 2, scale)


def test_interval_and_ordinal_losses():
    lo, hi = torch.tensor([20.0]), torch.tensor([29.0])
    inside, outside = interval_loss(torch.tensor([24.5]), lo, hi), interval_loss(torch.tensor([40.0]), lo, hi)
    assert inside < 1e-6 < outside
    lo2, hi2 = torch.tensor([0.0, 60.0]), torch.tensor([4.0, 70.0])
    assert ordinal_loss(torch.tensor([2.0, 65.0]), lo2, hi2) == 0
    assert ordinal_loss(torch.tensor([65.0, 2.0]), lo2, hi2) > 0


def _synthetic(n: int, seed: int) -> FaceData:
    """Faces whose 'critic features' encode age and gender linearly (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    ages = torch.rand(n, generator=g) * 65 + 16
    male = torch.rand(n, generator=g) < 0.5
    basis = torch.randn(3, 338, generator=torch.Generator().manual_seed(99))
    z = torch.stack([ages / 20, male.float() * 2 - 1, (ages / 30) ** 2], dim=1)
    feats = (z @ basis)[:, None, :] + 0.1 * torch.randn(n, 2, 338, generator=g)
    genders = [GENDERS[int(m)] for m in male]
    groups = [group_of_age(float(a)).index for a in ages]
    return FaceData([f"{i}.png" for i in range(n)], ages, list(genders), genders, groups, feats)


@pytest.fixture(scope="module")
def small_bank():
    bank = caption_bank()
    idx = list(range(14)) + list(range(14, len(bank), 12))
    sub = tuple(bank[i] for i in idx)
    # synthetic text features: a fixed random code per (interval centre, gender) + noise, so texts with
    # similar meaning are similar, as MiniLM's are
    g = torch.Generator().manual_seed(5)
    age_basis, gender_basis = torch.randn(2, 384, generator=g), torch.randn(384, generator=g)
    sign = {None: 0.0, "female": -1.0, "male": 1.0}
    emb = torch.stack([math.cos(c.center / 40) * age_basis[0] + math.sin(c.center / 40) * age_basis[1]
                       + sign[c.gender] * gender_basis for c in sub])
    emb = emb + 0.3 * torch.randn(len(sub), 384, generator=g)
    return sub, torch.nn.functional.normalize(emb, dim=1)


def test_training_learns_and_is_reproducible(small_bank):
    from pada.vl.evaluation import zero_shot_groups

    bank, emb = small_bank
    cfg = FaceCLIPConfig(dim=64, text_hidden=64, image_hidden=64)
    tcfg = FaceClipTrainConfig(steps=150, batch=64, extra_negatives=32, text_batch=64, lr=3e-3, seed=3)
    train, test = _synthetic(300, 0), _synthetic(100, 1)
    logs: list[str] = []
    heads, final = train_heads(cfg, tcfg, train, bank, emb, log=logs.append)
    assert final["nce"] < float(logs[0].split("nce ")[1].split()[0])  # the contrastive loss went down
    desc = heads.embed_text(emb[:14])
    with torch.no_grad():
        zs = zero_shot_groups(heads.embed_features(test.feats[:, 0]), desc, test.groups, test.label_genders)
        assert zs["within_one"] > 0.6 and zs["gender_acc"] > 0.8  # chance: ~0.4 and 0.5
        age_mae = (heads.age(heads.embed_features(test.feats[:, 0])) - test.ages).abs().mean()
        assert age_mae < 12
    again, _ = train_heads(cfg, tcfg, train, bank, emb, log=lambda s: None)
    for (k, a), b in zip(heads.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    other, _ = train_heads(cfg, FaceClipTrainConfig(**{**tcfg.__dict__, "seed": 4, "steps": 6}), train, bank,
                           emb, log=lambda s: None)
    assert not torch.equal(other.image[0].weight, heads.image[0].weight)


@pytest.mark.slow
def test_cli_trains_and_writes_loadable_weights(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import pada.vl.train_faceclip as tf
    from pada.cli.main import main as pada_main
    from pada.vl import load_vl

    data = tmp_path / "demo"
    (data / "aligned" / "256").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file,age,gender,gender_conf,group,group_name,description,det_score"]
    for i, age in enumerate([18, 24, 31, 38, 45, 52, 63, 75]):
        name = f"{i:06d}.png"
        arr = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(arr).save(data / "aligned" / "256" / name)
        gender = GENDERS[i % 2]
        grp = group_of_age(age)
        desc = DESCRIPTIONS[2 * grp.index + i % 2]
        rows.append(f"{name},{age},{gender},0.99,{grp.index},{grp.name},\"{desc}\",0.9")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    bank = caption_bank()
    monkeypatch.setattr(tf, "caption_bank", lambda: bank[:14] + bank[14::60])
    out = tmp_path / "fc.safetensors"
    assert pada_main(["train", "faceclip", "--data", str(data), "--out", str(out), "--steps", "20",
                      "--batch", "8", "--extra-negatives", "8", "--text-batch", "16",
                      "--test-fraction", "0.3", "--seed", "7"]) == 0
    assert "computing critic features of 8 images" in capsys.readouterr().out
    heads, meta = load_heads(out)
    recipe = json.loads(meta["recipe"])
    assert recipe["seed"] == 7 and recipe["steps"] == 20 and len(recipe["data_sha256"]) == 64
    assert recipe["n_train"] + recipe["n_test"] == 8
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["report"]["open_world"]["n"] >= 20
    model = load_vl("faceclip", path=out)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    assert model.encode_image(x).shape == (1, 512)
    # the feature cache (default: <out folder>/cache) is reused: later runs compute no features
    assert tf.main(["--data", str(data), "--out", str(tmp_path / "fc2.safetensors"), "--cache",
                    str(tmp_path / "cache"), "--steps", "5", "--batch", "4", "--test-fraction", "0.3"]) == 0
    assert "computing critic features" not in capsys.readouterr().out


def test_bad_data_folder_is_one_line_error(tmp_path):
    from pada.errors import PadaError
    from pada.vl.train_faceclip import main

    with pytest.raises(PadaError, match="labels"):
        main(["--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"), "--steps", "1"])
