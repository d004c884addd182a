"""DiffAE training task: CLI run and its outputs, exact resume with the real network, image folders,
and (slow) that a tiny DiffAE learns synthetic blobs well enough to reconstruct held-out images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pada.diffae.train import EXPORT_NAME, main, psnr, reconstruct
from pada.errors import PadaError
from pada.networks.checkpoint import load_diffae, read_safetensors_metadata
from pada.training import checkpointing as ckpt
from pada.training.synthetic import BlobImages, blob_image

FAST = ["--preset", "tiny32", "--batch-size", "4", "--no-progress", "--holdout", "2", "--sample-steps", "2",
        "--encode-steps", "2", "--log-every", "1", "--ema-decay", "0.9"]



def test_synthetic_blobs_are_deterministic():
    a, b = BlobImages(3, 32, seed=5), BlobImages(3, 32, seed=5)
    assert torch.equal(a.images, b.images) and a.images.shape == (3, 3, 32, 32)
    assert torch.equal(BlobImages(2, 32, seed=5, offset=1).images[0], a.images[1])
    assert not torch.equal(blob_image(0, 32, 5), blob_image(0, 32, 6))
    assert -1 <= a.images.min() and a.images.max() <= 1 and a.images.std() > 0.2


def test_cli_run_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    assert main(["--data", "synthetic:blobs:16", "--out", str(out), "--steps", "4", "--sample-every", "2",
                 "--ckpt-every", "2", *FAST]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(0 < r["loss/eps_mse"] < 5 for r in rows)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    for step in (2, 4):
        for suffix in ("_samples.png", "_recon.png"):
            img = Image.open(out / "samples" / f"step_{step:08d}{suffix}")
            assert img.size[0] > 2 * 32 and img.size[1] > 2 * 32  # 2 rows x 2 images with padding
        stats = json.loads((out / "samples" / f"step_{step:08d}.json").read_text())
        assert len(stats["recon_psnr"]) == 2
    assert [s for s, _ in ckpt.find_checkpoints(out / "checkpoints")] == [2, 4]
    # the export holds the EMA weights of the last checkpoint, with config and metadata
    unet = load_diffae(out / EXPORT_NAME)
    state = ckpt.load_checkpoint(out / "checkpoints" / "step_00000004.pt")
    for k, v in unet.state_dict().items():
        assert torch.equal(v, state["ema"][f"unet.{k}"]), k
    meta = read_safetensors_metadata(out / EXPORT_NAME)["metadata"]
    assert meta["steps"] == 4 and meta["images_seen"] == 16 and meta["data"] == "synthetic:blobs:16"
    assert meta["recipe"].startswith("pada train diffae --data synthetic:blobs:16")
    assert len(meta["data_hash"]) == 64 and set(meta["final_losses"]) == {"total", "eps_mse"}
    assert state["task"]["config"]["model"]["name"] == "tiny32"


def test_export_from_a_training_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["--data", "synthetic:blobs:16", "--out", str(out), "--steps", "4", "--ckpt-every", "2",
                 *FAST]) == 0
    step2 = out / "checkpoints" / "step_00000002.pt"
    dest = tmp_path / "mid.safetensors"
    assert main(["--export-from", str(step2), "--out", str(dest)]) == 0
    unet = load_diffae(dest)
    state = ckpt.load_checkpoint(step2)
    for k, v in unet.state_dict().items():  # the EMA weights of that step, not of the end of the run
        assert torch.equal(v, state["ema"][f"unet.{k}"]), k
    meta = read_safetensors_metadata(dest)["metadata"]
    assert meta["steps"] == 2 and meta["images_seen"] == 8 and meta["preset"] == "tiny32"
    assert set(meta["final_losses"]) == {"total", "eps_mse"}
    half = tmp_path / "half.safetensors"
    assert main(["--export-from", str(step2), "--out", str(half), "--fp16-export"]) == 0
    assert half.stat().st_size < 0.6 * dest.stat().st_size
    online = tmp_path / "online.safetensors"
    assert main(["--export-from", str(step2), "--out", str(online), "--online"]) == 0
    for k, v in load_diffae(online).state_dict().items():
        assert torch.equal(v, state["model"][f"unet.{k}"]), k
    assert read_safetensors_metadata(online)["metadata"]["weights"] == "online"
    with pytest.raises(PadaError, match="not found"):
        main(["--export-from", str(tmp_path / "nope.pt"), "--out", str(dest)])


def test_cli_resume_is_exact(tmp_path):
    args = ["--data", "synthetic:blobs:12", "--ckpt-every", "0", *FAST]  # 3 steps per epoch
    main([*args, "--out", str(tmp_path / "a"), "--steps", "4"])
    main([*args, "--out", str(tmp_path / "b"), "--steps", "2"])
    main([*args, "--out", str(tmp_path / "b"), "--steps", "4", "--resume"])
    a = ckpt.load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000004.pt")
    b = ckpt.load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000004.pt")
    for part in ("model", "ema"):  # dropout (global RNG), flips, t and noise all replayed exactly
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"
    with pytest.raises(PadaError, match="task config differs"):
        main([*args, "--out", str(tmp_path / "b"), "--steps", "5", "--resume", "--model-set", "dropout=0.0"])


def test_image_folder_data(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "faces"
    data.mkdir()
    for i in range(10):
        arr = (rng.random((40 + i, 48, 3)) * 255).astype("uint8")  # odd sizes: resized to 32x32
        Image.fromarray(arr).save(data / f"img_{i:02d}.{'png' if i % 2 else 'jpg'}")
    out = tmp_path / "run"
    main(["--data", str(data), "--out", str(out), "--steps", "2", *FAST])
    meta = read_safetensors_metadata(out / EXPORT_NAME)["metadata"]
    assert meta["data"] == str(data) and len(meta["data_hash"]) == 64
    with pytest.raises(PadaError, match="not-there"):
        main(["--data", str(tmp_path / "not-there"), "--out", str(out), "--steps", "1", *FAST])


@pytest.mark.slow
def test_tiny_diffae_learns_and_reconstructs_held_out_blobs(tmp_path):
    """tiny32 on 256 synthetic blob images: the loss falls and encode -> encode_stochastic -> render
    reconstructs 8 held-out images at >= 25 dB (an untrained network gives ~14 dB)."""
    out = tmp_path / "learn"
    main(["--data", "synthetic:blobs:256", "--preset", "tiny32", "--out", str(out), "--steps", "60",
          "--batch-size", "16", "--lr", "3e-3", "--ema-decay", "0.99", "--set", "ema_warmup=true",
          "--log-every", "10", "--ckpt-every", "0", "--holdout", "8", "--sample-steps", "10",
          "--encode-steps", "30", "--no-progress", "--seed", "0"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss/eps_mse"] < 0.4 * rows[0]["loss/eps_mse"], rows
    unet = load_diffae(out / EXPORT_NAME)  # the exported EMA network
    held_out = BlobImages(8, 32, seed=0, offset=256).images  # never in the training set
    p = psnr(reconstruct(unet, held_out, steps=30), held_out)
    assert p.mean() >= 25.0, p
    stats = json.loads((out / "samples" / "step_00000060.json").read_text())
    assert stats["recon_psnr_mean"] == pytest.approx(float(p.mean()), abs=1e-3)  # the grid saw the same


def test_warm_start_from_a_checkpoint_into_a_v_network(tmp_path):
    a = tmp_path / "a"
    assert main(["--data", "synthetic:blobs:8", "--out", str(a), "--steps", "2", "--ckpt-every", "2",
                 *FAST]) == 0
    step2 = a / "checkpoints" / "step_00000002.pt"
    b = tmp_path / "b"
    assert main(["--data", "synthetic:blobs:8", "--out", str(b), "--steps", "1", "--ckpt-every", "0", *FAST,
                 "--model-set", "prediction=v", "--init-from", str(step2), "--lr", "0"]) == 0
    src, dst = ckpt.load_checkpoint(step2), ckpt.load_checkpoint(b / "checkpoints" / "step_00000001.pt")
    for k, v in src["ema"].items():  # lr 0: still the warm-start weights (the EMA of run a)
        assert torch.equal(dst["model"][k], v), k
    assert dst["task"]["config"]["model"]["prediction"] == "v"
    rows = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert "loss/v_mse" in rows[0]
    assert load_diffae(b / EXPORT_NAME).config.prediction == "v"
    with pytest.raises(PadaError, match="do not fit"):  # another architecture: one line naming the file
        main(["--data", "synthetic:blobs:8", "--out", str(tmp_path / "c"), "--steps", "1", *FAST,
              "--model-set", "num_res_blocks=1", "--init-from", str(step2)])


def test_high_t_fraction_moves_that_share_of_timesteps_to_the_noisy_half():
    from pada.diffae.train import DiffAETask, DiffAETaskConfig

    def draw(frac):
        task = DiffAETask(DiffAETaskConfig(data="synthetic:blobs:4", preset="tiny32", high_t_fraction=frac))
        return task.draw_timesteps(4000, torch.Generator().manual_seed(0))

    t0, t1, th = draw(0.0), draw(1.0), draw(0.5)
    assert 0 <= int(t0.min()) and int(t0.max()) <= 999 and 0.45 < float((t0 >= 500).float().mean()) < 0.55
    assert int(t1.min()) >= 500 and int(t1.max()) <= 999
    assert 0.7 < float((th >= 500).float().mean()) < 0.8  # 0.5 + 0.5 * 0.5
    assert torch.equal(th, draw(0.5))  # reproducible from the generator
