"""Bad-input catalogue, part 3: hostile model files given to ``pada age --model``.

A model file is untrusted input. Missing, empty, random, truncated, pickled (never unpickled), wrongly shaped,
NaN-holding files and files whose metadata is malformed, wrongly typed or asks for a huge network are all
refused with one ``error:`` line naming the file, before anything big is allocated; the output folder stays as
it was. The same holds for the DiffAE file a PADA model names. Files are tiny random-weight models written
to tmp_path.
"""

from __future__ import annotations

import json
import pickle
import resource
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bad_inputs_helpers import assert_one_line_failure, assert_untouched, out_folder, run_cli, write_png
from pada.aging.model import FORMAT, PadaModel
from pada.networks.checkpoint import META_KEY, save_diffae
from test_aging_helpers import tiny_diffae, tiny_model


class _Payload:
    """Unpickling this would create the marker file: proof that a pickle is never run."""

    marker = ""

    def __reduce__(self):
        return (Path(self.marker).touch, ())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    diffae = save_diffae(tiny_diffae().unet, root / "diffae.safetensors")
    good = tiny_model(diffae=str(diffae), vl="faceclip")
    good_path = good.save(root / "good.safetensors")
    return {"root": root, "diffae": diffae, "good": good_path, "model": good}


def _pada_file(path: Path, state: dict, config) -> Path:
    cfg = config if isinstance(config, str) else json.dumps(config)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"format": FORMAT, "pada_config": cfg})
    return path


def _state(files) -> dict:
    return {k: v.clone() for k, v in files["model"].state_dict().items()}


def _cfg(files, **changes) -> dict:
    return {**files["model"].cfg.to_dict(), **changes}


def _pickle_file(path: Path, marker: Path) -> Path:
    _Payload.marker = str(marker)
    path.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    return path


# name -> (maker(files, folder) -> model path, words of the error line)
PADA_CASES = {
    "missing": (lambda f, d: d / "nope.safetensors", "no such PADA model file"),
    "empty": (lambda f, d: _write(d / "empty.safetensors", b""), "not a readable safetensors file"),
    "random-bytes": (lambda f, d: _write(d / "random.safetensors", bytes(range(256)) * 40),
                     "not a readable safetensors file"),
    "truncated": (lambda f, d: _write(d / "cut.safetensors", _half(f["good"])),
                  "not a readable safetensors file"),
    "pickle-payload": (lambda f, d: _pickle_file(d / "evil.safetensors", d / "PWNED"),
                       "not a readable safetensors file"),
    "pickle-payload-pt": (lambda f, d: _pickle_file(d / "evil.pt", d / "PWNED"),
                          "not a readable safetensors file"),
    "not-a-pada-model": (lambda f, d: f["diffae"], "not a PADA aging model"),
    "metadata-not-json": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), "{e_dim: 32"),
                          "not valid JSON"),
    "metadata-a-list": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), "[1, 2]"),
                        "must be a JSON object"),
    "wrong-type-string": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, e_dim="32")),
                          "PadaConfig.e_dim must be a whole number"),
    "wrong-type-bool": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, mod_layers=True)),
                        "PadaConfig.mod_layers must be a whole number"),
    "negative-size": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, z_dim=-64)),
                      "PadaConfig.z_dim must be at least 1"),
    "nan-in-config": (lambda f, d: _pada_file(d / "m.safetensors", _state(f),
                                              _cfg(f, sigma_init=float("nan"))),
                      "sigma_init nan is not a finite number"),
    "unknown-choice": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, stats="median")),
                       "stats must be one of"),
    "unknown-key": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, layers_extra=3)),
                    "unknown keys ['layers_extra']"),
    "huge-layer": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, enc_hidden=10**7)),
                   "PadaConfig.enc_hidden must be at most"),
    "huge-network": (lambda f, d: _pada_file(d / "m.safetensors", _state(f),
                                             _cfg(f, enc_hidden=16384, mod_hidden=16384, enc_layers=32,
                                                  mod_layers=32)),
                     "parameters, over the limit"),
    "wrong-shapes": (lambda f, d: _pada_file(d / "m.safetensors", _state(f), _cfg(f, enc_hidden=48)),
                     "weights do not fit its PADA config"),
    "missing-tensor": (lambda f, d: _pada_file(d / "m.safetensors",
                                               dict(list(_state(f).items())[1:]), _cfg(f)), "1 missing keys"),
    "nan-weights": (lambda f, d: _pada_file(d / "m.safetensors", _poison(_state(f), float("nan")), _cfg(f)),
                    "weights contain NaN or infinite values"),
    "inf-weights": (lambda f, d: _pada_file(d / "m.safetensors", _poison(_state(f), float("inf")), _cfg(f)),
                    "weights contain NaN or infinite values"),
}


def _half(path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _poison(state: dict, value: float) -> dict:
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    state[key].view(-1)[3] = value
    return state


def _diffae_file(path: Path, files, config=None, poison=None) -> Path:
    state = {k: v.clone() for k, v in tiny_diffae().unet.state_dict().items()}
    if poison is not None:
        _poison(state, poison)
    cfg = tiny_diffae().unet.config.to_dict() if config is None else config
    meta = json.dumps({"config": cfg, "metadata": {}}) if not isinstance(config, str) else config
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={META_KEY: meta})
    return path


def _pada_naming(files, folder: Path, diffae: Path) -> Path:
    return _pada_file(folder / "pada.safetensors", _state(files), _cfg(files, diffae=str(diffae)))


DIFFAE_CASES = {
    "diffae-missing": (lambda f, d: d / "gone.safetensors", "neither a checkpoint file nor a registered"),
    "diffae-pickle": (lambda f, d: _pickle_file(d / "official.ckpt", d / "PWNED"), "refused to load"),
    "diffae-nan-weights": (lambda f, d: _diffae_file(d / "nan.safetensors", f, poison=float("nan")),
                           "weights contain NaN or infinite values"),
    "diffae-config-not-json": (lambda f, d: _diffae_file(d / "bad.safetensors", f, config="{oops"),
                               "corrupt pada metadata"),
    "diffae-huge-config": (lambda f, d: _diffae_file(d / "huge.safetensors", f,
                                                     {**tiny_diffae().unet.config.to_dict(),
                                                      "model_channels": 10**6}),
                           "DiffAEConfig.model_channels must be at most"),
    "diffae-wrong-type": (lambda f, d: _diffae_file(d / "typed.safetensors", f,
                                                    {**tiny_diffae().unet.config.to_dict(),
                                                     "channel_mult": "1,2"}),
                          "DiffAEConfig.channel_mult must be a list"),
    "diffae-wrong-shapes": (lambda f, d: _diffae_file(d / "shapes.safetensors", f,
                                                      {**tiny_diffae().unet.config.to_dict(),
                                                       "model_channels": 32}),
                            "weights do not fit"),
    "diffae-impossible-config": (lambda f, d: _diffae_file(d / "groups.safetensors", f,
                                                           {**tiny_diffae().unet.config.to_dict(),
                                                            "model_channels": 24}),
                                 "multiples of 32"),
}


@pytest.mark.parametrize("kind", sorted(PADA_CASES) + sorted(DIFFAE_CASES))
def test_hostile_model_file_is_one_line(tmp_path, capsys, files, kind):
    photo = write_png(tmp_path / "photo.png")
    folder, earlier = out_folder(tmp_path)
    if kind in PADA_CASES:
        make, problem = PADA_CASES[kind]
        model = make(files, tmp_path)
        named = model
    else:
        make, problem = DIFFAE_CASES[kind]
        named = make(files, tmp_path)
        model = _pada_naming(files, tmp_path, named)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    argv = ["age", photo, "--text", "x", "--model", model, "--device", "cpu", "--out", earlier]
    code, err, _ = run_cli(argv, capsys)
    assert_one_line_failure(code, err, str(named), problem)
    assert code == 1
    assert_untouched(folder, earlier)
    assert not (tmp_path / "PWNED").exists()  # the pickle never ran
    # nothing big was allocated on the way to the refusal
    assert time.perf_counter() - t0 < 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 500_000  # KiB


def test_good_model_file_loads(files):
    """The files the hostile ones are made from are fine (so each case fails for its own reason)."""
    model = PadaModel.load(files["good"])
    for k, v in files["model"].state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_non_finite_output_is_an_error(tmp_path, capsys, monkeypatch):
    """A model that produces NaN (here: a poisoned modulation) gives an error, not a black grid."""
    import pada.cli.age as age_cli
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyVL

    model = tiny_model(init_gain=0.3)
    with torch.no_grad():
        next(model.modulation.parameters()).fill_(float("nan"))
    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), model, steps=2)
    monkeypatch.setattr(age_cli, "load_pipeline", lambda *a, **k: pipe)
    crop = write_png(tmp_path / "crop.png", (32, 32))
    folder, earlier = out_folder(tmp_path)
    code, err, _ = run_cli(["age", crop, "--aligned", "--text", "x", "-n", "2", "--steps", "2",
                            "--out", earlier], capsys)
    assert_one_line_failure(code, err, str(earlier), "NaN or infinite values; nothing was written")
    assert_untouched(folder, earlier)
