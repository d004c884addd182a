"""Execution options of the DiffAE sampling loops: compiled network, bf16 autocast, device coefficient
tables (tiny random models on the CPU; the GPU numbers come from benchmarks/bench_gpu.sh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pada import diffusion as D
from pada.diffae import DiffAE
from pada.diffusion.schedule import extract
from pada.errors import PadaError
from pada.networks.config import DiffAEConfig
from pada.networks.unet import DiffAEUNet


def _small_diffae() -> DiffAE:
    """A one-level DiffAE with attention: every block type, few ops (quick to trace)."""
    cfg = DiffAEConfig(image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                       embed_channels=32, attention_resolutions=(8,), enc_out_channels=16,
                       enc_channel_mult=(1,), dropout=0.0)
    torch.manual_seed(0)
    unet = DiffAEUNet(cfg).eval()
    with torch.no_grad():
        for p in unet.parameters():  # no zero-initialised output: outputs depend on every block
            p.add_(0.05 * torch.randn_like(p))
    return DiffAE(unet).eval()


def _face_and_code(d: DiffAE, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.inference_mode():
        return x, d.encode(x)


def test_compiled_sampling_loops_trace_as_one_graph_and_match():
    d = _small_diffae()
    x, z = _face_and_code(d, 0)
    ref_inv, ref_out = d.encode_stochastic(x, z, T=3), d.render(x, z, T=3)
    d.compile_unet(backend="eager")  # fullgraph=True: a graph break would raise here
    assert list(d.state_dict()) == [f"unet.{k}" for k in d.unet.state_dict()]
    inv, out = d.encode_stochastic(x, z, T=3), d.render(x, z, T=3)
    assert torch.allclose(inv, ref_inv, atol=1e-6) and torch.allclose(out, ref_out, atol=1e-6)


def test_coarse_image_computed_once_per_sampling_loop():
    """A coarse-path network: coarse(z) depends on z only; the loops compute it once, same result."""
    d = _small_diffae()
    cfg = d.config.replace(coarse_size=8, coarse_channels=32)
    torch.manual_seed(1)
    d = DiffAE(DiffAEUNet(cfg).eval()).eval()
    with torch.no_grad():
        for p in d.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, z = _face_and_code(d, 2)
    calls = []
    d.unet.coarse.register_forward_hook(lambda *a: calls.append(1))
    out = d.render(x, z, T=3)
    assert len(calls) == 1
    with torch.inference_mode():
        per_step = D.ddim_sample(lambda xx, tt: d.eps(xx, tt, z), x, D.resolve_steps(3, d.schedule))
    assert len(calls) == 4 and torch.allclose(out, per_step, atol=1e-6)


def test_bf16_precision_option():
    d = _small_diffae()
    x, z = _face_and_code(d, 1)
    ref = d.render(x, z, T=3)
    out = d.set_precision("bf16").render(x, z, T=3)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)  # the network really ran in bf16
    assert (out - ref).abs().max() < 0.2  # ... and still computes the same function, coarsely
    assert torch.equal(d.render(x, z, T=3, bf16=True), out)
    inv = d.encode_stochastic(x, z, T=3)
    assert torch.equal(inv, d.set_precision("fp32").encode_stochastic(x, z, T=3, bf16=True))
    with pytest.raises(PadaError, match="precision 'fp16' unknown"):
        d.set_precision("fp16")


def test_extract_table_on_device_matches_numpy():
    sched = D.resolve_steps(10)
    idx = torch.tensor([9, 0, 4])
    want = torch.from_numpy(np.asarray(sched.alphas_cumprod)[[9, 0, 4]]).float().reshape(3, 1, 1, 1)
    assert torch.equal(extract(sched.alphas_cumprod, idx, 4), want)
    meta = extract(sched.alphas_cumprod, idx.to("meta"), 4)  # non-CPU path: indexed on the device
    assert meta.shape == (3, 1, 1, 1) and meta.device.type == "meta"


def _load_benchmark(name: str):
    import importlib.util
    import sys
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        spec = importlib.util.spec_from_file_location(name, bench_dir / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench_dir))
    return mod


def test_gpu_benchmark_runs_at_toy_scale_on_cpu(tmp_path, capsys):
    """benchmarks/bench_gpu.py --tiny: the job and training code paths of the GPU script, on the CPU."""
    import json

    bench = _load_benchmark("bench_gpu")
    out = tmp_path / "gpu.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert bench.main(["--tiny", "--variants", "fp32,bf16_cl", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rep = json.loads(out.read_text())
    job = rep["job"]
    assert job["tflop"] > 0 and job["flop_limit_s"] > 0
    assert job["variants"]["fp32"]["median_s"] > 0
    # bf16 really ran (images differ; random weights amplify it through the 2-step chains) in [-1, 1]
    assert 0 < job["variants"]["bf16_cl"]["max_abs_diff_vs_first"] <= 2
    for run in rep["train"]["runs"].values():
        assert run["img_per_s"] > 0 and np.isfinite(run["loss_total_last"])
    assert "tiny" in rep["train"]["frozen"]
    assert json.loads(capsys.readouterr().out)["job"]["n"] == 2
