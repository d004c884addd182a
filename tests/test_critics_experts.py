"""Full-scale critics (DEX VGG-16, IR-SE50) against the shared key lists and golden numbers.

The real weight files are not available here: the golden numbers in
``tests/fixtures/face_experts/face_experts.json`` were made with the official classes and weights that
the recipe rebuilds from the key list alone (``golden_recipe`` in that file; tests/fixtures/PROVENANCE.md).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from pada.critics import load_critic
from pada.critics.arcface import ArcFaceCritic, ArcFaceIRSE50
from pada.critics.dex import DexAgeCritic, DexVGG
from pada.critics.state_dicts import extract_state_dict, load_torch_file
from pada.errors import CheckpointError
from shared_fixtures import face_expert_fixtures

FIXTURES = face_expert_fixtures()


def _keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line.strip():
            m = re.fullmatch(r"(\S+) \((.*)\)", line.strip())
            out.append((m.group(1), tuple(int(v) for v in m.group(2).replace(" ", "").split(",") if v)))
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((FIXTURES / "face_experts.json").read_text())


def _recipe_state_dict(keys: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """Weights from the golden recipe: one generator, keys in file order."""
    g = torch.Generator().manual_seed(0)
    names = {k for k, _ in keys}
    sd = {}
    for key, shape in keys:
        module, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            sd[key] = torch.tensor(0, dtype=torch.long)
        elif leaf == "running_mean":
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif leaf == "running_var":
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "weight" and len(shape) >= 2:
            fan_in = math.prod(shape) / shape[0]
            sd[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif leaf == "weight" and f"{module}.running_mean" in names:
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif leaf == "weight":
            sd[key] = 0.25 + 0.1 * torch.randn(shape, generator=g)
        elif leaf == "bias":
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            raise AssertionError(f"no recipe for {key}")
    return sd


def _check_weights(sd, ref) -> None:
    for k, v in ref["per_key_sum"].items():
        assert sd[k].double().sum().item() == pytest.approx(v, rel=1e-5, abs=1e-4)
    for k, v in ref["per_key_first4"].items():
        np.testing.assert_allclose(sd[k].flatten()[:4].numpy(), v, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls,keyfile", [(DexVGG, "dex_vgg16_keys.txt"), (ArcFaceIRSE50, "ir_se50_keys.txt")])
def test_state_dict_keys_and_shapes_exact(cls, keyfile):
    keys = _keys(keyfile)
    sd = cls.empty().state_dict()
    assert list(sd) == [k for k, _ in keys]  # same names, same order
    assert [tuple(v.shape) for v in sd.values()] == [s for _, s in keys]


@pytest.mark.slow
def test_dex_golden_numbers(golden):
    ref = golden["golden"]["dex_vgg16"]
    tol = golden["golden_tolerance_advice"]
    assert "rtol 1e-3" in tol
    sd = _recipe_state_dict(_keys("dex_vgg16_keys.txt"))
    _check_weights(sd, ref["weights"])
    net = DexVGG.empty()
    net.load_state_dict(sd)
    net.eval()
    raw = ref["raw_224"]
    x = torch.randn((2, 3, 224, 224), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        acts = net(x, all_activations=True)
    for name, value in raw["activation_sums"].items():
        assert acts[name].double().sum().item() == pytest.approx(value, rel=1e-4)
    np.testing.assert_allclose(acts["fc8"].numpy(), raw["fc8_logits"], rtol=1e-3, atol=1e-4)
    critic = DexAgeCritic(net, recipe="sam")
    age = (acts["fc8"].softmax(1) @ torch.arange(101.0)).numpy()
    np.testing.assert_allclose(age, raw["expected_age"], atol=1e-3)
    assert acts["fc8"].argmax(1).tolist() == raw["argmax"]

    sam = ref["sam_aging_loss_path"]
    x = torch.rand((2, 3, 256, 256), generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert critic.input_adapter(x).double().sum().item() == pytest.approx(
            sam["resized_224_sum"], rel=1e-5
        )
        out = critic(x)
    np.testing.assert_allclose(out.logits[:, :8].numpy(), sam["fc8_logits_first8"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(out.logits.sum(1).numpy(), sam["fc8_sum"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out.age.numpy(), sam["predicted_age_years"], atol=1e-3)
    assert out.features.shape == (2, 101)

    hr = ref["hrfae_path"]
    x01 = torch.rand((2, 3, 256, 256), generator=torch.Generator().manual_seed(3))
    critic_h = DexAgeCritic(net, recipe="hrfae", feature_layer="penultimate")
    with torch.no_grad():
        vgg_in = critic_h.input_adapter(x01 * 2 - 1)
        out = critic_h(x01 * 2 - 1)
    assert vgg_in.double().sum().item() == pytest.approx(hr["vgg_input_sum"], rel=1e-5)
    np.testing.assert_allclose(vgg_in.mean(dim=(0, 2, 3)).numpy(), hr["vgg_input_channel_means"], rtol=1e-4)
    np.testing.assert_allclose(out.logits[:, :8].numpy(), hr["fc8_logits_first8"], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(out.logits.sum(1).numpy(), hr["fc8_sum"], rtol=1e-3)
    np.testing.assert_allclose(out.age.numpy(), hr["predicted_age_years"], atol=1e-2)
    assert out.features.shape == (2, 4096)


def _cos(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.slow
def test_arcface_golden_numbers(golden):
    """IR-SE50 against the golden numbers, computed in float64.

    The recipe network is ill-conditioned in its last stage: its activations reach ~1e7 and float32
    rounding differences (another conv kernel, e.g. one thread instead of several) are amplified ~1e5 by
    the last blocks, so the float32 golden embedding itself is ~1e-2 away from the exact value. In float32
    with the golden run's kernels this implementation matched every number to ~1e-9 (see docs/critics.md);
    here the check is platform-independent: float64, tight on the well-conditioned first 16 units (which
    exercise every kind of unit), and looser where the golden numbers carry float32 noise.
    """
    ref = golden["golden"]["ir_se50"]
    sd = _recipe_state_dict(_keys("ir_se50_keys.txt"))
    _check_weights(sd, ref["weights"])
    total = sum(v.double().sum().item() for v in sd.values() if v.is_floating_point())
    assert total == pytest.approx(ref["weights"]["sum_over_all_float_tensors"], rel=1e-6)
    net = ArcFaceIRSE50.empty()
    net.load_state_dict(sd)
    net.eval().double()
    raw = ref["raw_112"]
    x = torch.rand((2, 3, 112, 112), generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        h = net.input_layer(x.double())
        assert h.sum().item() == pytest.approx(raw["input_layer_out_sum"], rel=1e-6)
        for i, (unit, value) in enumerate(zip(net.body, raw["body_block_output_sums"], strict=True)):
            h = unit(h)
            # error of a float32 sum of large +/- activations scales with the sum of magnitudes
            scale = h.abs().sum().item()
            assert abs(h.sum().item() - value) <= (1e-5 if i < 16 else 1e-2) * scale, f"body.{i}"
        assert h.abs().sum().item() == pytest.approx(raw["body_out_abs_sum"], rel=1e-2)
        emb = net(x.double())
    assert _cos(emb[:, :16].numpy(), raw["embedding_first16"]).min() > 0.98
    assert (emb[0] @ emb[1]).item() == pytest.approx(raw["cosine_between_the_two"], abs=0.01)
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-12)

    sam = ref["sam_id_loss_path"]
    critic = ArcFaceCritic(net)
    x = torch.rand((2, 3, 256, 256), generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        pooled = critic.input_adapter(x.double())
        emb = critic(x.double())
    assert pooled.shape == (2, 3, 112, 112)
    assert pooled.sum().item() == pytest.approx(sam["pooled_sum"], rel=1e-6)
    np.testing.assert_allclose(pooled.flatten()[:4].numpy(), sam["pooled_first4"], atol=1e-6)
    assert _cos(emb[:, :16].numpy(), sam["embedding_first16"]).min() > 0.98
    assert (emb[0] @ emb[1]).item() == pytest.approx(sam["cosine_between_the_two"], abs=0.01)
    # frozen, gradients reach the input
    xg = x[:1].double().clone().requires_grad_(True)
    (critic(xg) * emb[1]).sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in critic.parameters()) and not critic.train().training


# ---------------------------------------------------------------- loading real files (tiny stand-ins)


def _constant_state_dict(keys, skip=()) -> dict[str, torch.Tensor]:
    """Tensors of the right shapes that share one-element storages, so the files stay tiny."""
    out = {}
    for i, (k, shape) in enumerate(keys):
        if k in skip:
            continue
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7, dtype=torch.long)
        else:
            out[k] = torch.full((1,), 0.01 * (i + 1)).expand(shape) if shape else torch.tensor(0.01 * (i + 1))
    return out


def _assert_loaded(net, ref: dict[str, torch.Tensor]) -> None:
    own = net.state_dict()
    for k, v in ref.items():
        assert torch.equal(own[k], v.to(own[k].dtype).expand_as(own[k])), k


@pytest.mark.slow
def test_dex_loads_sam_and_hrfae_containers(tmp_path):
    keys = _keys("dex_vgg16_keys.txt")
    sd = _constant_state_dict(keys)
    # SAM: {"state_dict": ...} (+ other entries); HRFAE: flat Caffe names with "fc8-101"; DataParallel
    sam_file, hr_file = tmp_path / "dex_age_classifier.pth", tmp_path / "dex_imdb_wiki.caffemodel.pt"
    mod_file = tmp_path / "m.pth"
    torch.save({"state_dict": sd, "epoch": 3}, sam_file)
    torch.save({k.replace("fc8_101", "fc8-101"): v for k, v in sd.items()}, hr_file)
    torch.save({"module." + k: v for k, v in sd.items()}, mod_file)
    for f in (sam_file, hr_file, mod_file):
        got = extract_state_dict(load_torch_file(f), f)
        assert list(got) == [k for k, _ in keys]
        assert all(torch.equal(got[k], sd[k]) for k in sd)
    # one real load (540 MB of parameters) through the registry, HRFAE recipe
    critic = load_critic("dex", path=hr_file, recipe="hrfae")
    assert isinstance(critic, DexAgeCritic) and critic.recipe == "hrfae"
    _assert_loaded(critic.net, sd)
    # a missing key / a wrong shape: one line naming the file
    bad = dict(sd)
    del bad["fc7.bias"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(
        CheckpointError, match=r"bad\.pth: not the expected weights: 1 missing keys \(first: fc7\.bias\)"
    ):
        DexVGG.from_file(tmp_path / "bad.pth")
    bad = dict(sd, **{"fc8_101.weight": torch.zeros(100, 4096)})
    torch.save(bad, tmp_path / "bad2.pth")
    with pytest.raises(CheckpointError, match="wrong shapes") as err:
        DexVGG.from_file(tmp_path / "bad2.pth")
    assert "\n" not in str(err.value)


def test_arcface_loads_with_and_without_num_batches_tracked(tmp_path):
    keys = _keys("ir_se50_keys.txt")
    nbt = [k for k, _ in keys if k.endswith("num_batches_tracked")]
    assert len(nbt) == 54
    full = _constant_state_dict(keys)
    old = _constant_state_dict(keys, skip=set(nbt))  # PyTorch 0.4-era file
    torch.save(full, tmp_path / "full.pth")
    torch.save(old, tmp_path / "model_ir_se50.pth")
    _assert_loaded(ArcFaceIRSE50.from_file(tmp_path / "full.pth"), full)
    critic = load_critic("arcface-irse50", path=tmp_path / "model_ir_se50.pth")
    assert isinstance(critic, ArcFaceCritic) and critic.dim == 512
    _assert_loaded(critic.net, old)
    assert all(critic.net.state_dict()[k].item() == 0 for k in nbt)


class _NotATensor:
    pass


def test_pickles_refused_unless_trusted(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1_1.weight": torch.zeros(1)}, "obj": _NotATensor()}, path)
    with pytest.raises(CheckpointError) as err:
        DexVGG.from_file(path)
    msg = str(err.value)
    assert "\n" not in msg and "evil.pth" in msg and "trust_pickle" in msg
    with pytest.raises(CheckpointError):
        load_critic("dex", path=path)
    # trusted: the pickle loads, then the key check speaks
    with pytest.raises(CheckpointError, match="missing keys"):
        DexVGG.from_file(path, trust_pickle=True)
    assert isinstance(load_torch_file(path, trust_pickle=True)["obj"], _NotATensor)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable torch weight file"):
        load_torch_file(tmp_path / "junk.pth")


def test_extract_state_dict_key_fixes():
    t = torch.zeros(1)
    assert extract_state_dict({"module.fc8-101.weight": t, "meta": "x"}, "f") == {"fc8_101.weight": t}
    assert extract_state_dict({"state_dict": {"a-b": t}, "epoch": 1}, "f") == {"a_b": t}
    with pytest.raises(CheckpointError, match="expected a dict"):
        extract_state_dict([t], "f")
