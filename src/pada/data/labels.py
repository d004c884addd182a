"""FFHQ-AT relabeling: age and gender critics over aligned faces → one of the 14 descriptions (PADA §4).

The paper predicts each FFHQ image's age with DEX and annotates it "according to the absolute difference
between the predicted age and the pre-defined age" with one of 7 age groups × 2 genders. Here the age
critic is pluggable (offline: ``dlib-age``; full scale: ``dex``), gender comes from ``dlib-gender``, and
the group is :func:`pada.data.groups.group_of_age` (closest pre-defined age).

The table has one row per image (``LABEL_COLUMNS``):

=============  =====================================================================
``file``       path relative to the image folder, POSIX separators (``00000/00012.png``)
``age``        predicted age in years (float)
``gender``     ``"female"`` or ``"male"`` (argmax of the gender critic)
``gender_conf``probability of that gender, in [0.5, 1]
``group``      age-group index 0..6 (:data:`pada.data.groups.AGE_GROUPS`)
``group_name`` ``"0-5"`` ... ``"70+"``
``description``one of the 14 :data:`pada.data.groups.DESCRIPTIONS`
``det_score``  face-detector score on the aligned image (0 = no face found; empty = detection off)
=============  =====================================================================

**Scaling and resuming.** :func:`relabel` streams the folder through a ``DataLoader`` (decoding,
resizing and detection run in worker processes), runs the critics on batches, and appends the rows of
every batch to a journal ``<out>.part`` (one ``write`` of whole CSV lines, flushed and fsynced). On a
restart, rows already in the journal or in the finished table are read back and those files are skipped,
so no work is redone; a line torn by a crash is cut off (it is at most one batch). When every image is
labelled, the table is written sorted by file with an atomic rename and the journal is removed. Files
that cannot be read are listed in ``<out>.errors.txt`` and tried again on the next run.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pada.data.groups import AGE_GROUPS, GENDERS, description, group_of_age
from pada.deprecation import renamed
from pada.errors import BadImageError, PadaError

LABEL_COLUMNS = ("file", "age", "gender", "gender_conf", "group", "group_name", "description", "det_score")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TABLE_NAMES = ("labels.csv", "labels.parquet")

# Age critics by the short name the CLI takes: --critic NAME -> (age critic, gender critic) registry names.
CRITIC_SETS = {"dlib": ("dlib-age", "dlib-gender"), "dex": ("dex", "dlib-gender")}


# ----------------------------------------------------------------------------------------------------
# The labelling rule
# ----------------------------------------------------------------------------------------------------

def label_row(file: str, age: float, p_male: float, det_score: float | None = None) -> dict[str, Any]:
    """One table row from a predicted age and the probability of "male" (the paper's rule).

    The group is the one whose pre-defined age is closest to ``age`` (:func:`group_of_age`); the
    description is that group's text for the more probable gender.
    """
    if not math.isfinite(age):
        raise ValueError(f"{file}: predicted age is {age}")
    gender = GENDERS[1] if p_male >= 0.5 else GENDERS[0]
    g = group_of_age(age)
    return {
        "file": file,
        "age": float(age),
        "gender": gender,
        "gender_conf": float(max(p_male, 1.0 - p_male)),
        "group": g.index,
        "group_name": g.name,
        "description": description(g, gender),
        "det_score": None if det_score is None else float(det_score),
    }


# ----------------------------------------------------------------------------------------------------
# Reading and writing tables
# ----------------------------------------------------------------------------------------------------

def _fmt(value: Any, key: str) -> str:
    if value is None:
        return ""
    if key in ("age",):
        return f"{value:.2f}"
    if key in ("gender_conf", "det_score"):
        return f"{value:.4f}"
    return str(value)


def _csv_text(rows: Iterable[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(LABEL_COLUMNS)
    for r in rows:
        w.writerow([_fmt(r.get(k), k) for k in LABEL_COLUMNS])
    return buf.getvalue()


def _typed(raw: dict[str, str], where: str) -> dict[str, Any]:
    try:
        det = raw.get("det_score", "")
        group = int(raw["group"])
        row = {
            "file": raw["file"],
            "age": float(raw["age"]),
            "gender": raw["gender"],
            "gender_conf": float(raw["gender_conf"]),
            "group": group,
            "group_name": raw.get("group_name") or AGE_GROUPS[group].name,
            "description": raw["description"],
            "det_score": float(det) if det not in ("", None) else None,
        }
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise PadaError(f"{where}: malformed labels row ({exc!r}): {raw}") from None
    if row["gender"] not in GENDERS or not 0 <= group < len(AGE_GROUPS):
        raise PadaError(f"{where}: malformed labels row (gender/group out of range): {raw}")
    return row


def _read_csv_text(text: str, where: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("file", "age", "gender", "gender_conf", "group", "description") if c not in
               (reader.fieldnames or [])]
    if missing:
        raise PadaError(f"{where}: not a labels table (missing columns {', '.join(missing)})")
    return [_typed(r, f"{where}:{i + 2}") for i, r in enumerate(reader)]


def find_table(path: str | os.PathLike) -> Path:
    """The labels table at ``path``: the file itself, or ``labels.csv``/``labels.parquet`` in a folder."""
    p = Path(path)
    if p.is_dir():
        for name in TABLE_NAMES:
            if (p / name).is_file():
                return p / name
        raise PadaError(f"{p}: no labels table ({' or '.join(TABLE_NAMES)}) in this folder; "
                        f"run `pada label {p}` first")
    if not p.is_file():
        raise PadaError(f"{p}: labels table not found")
    return p


def load_labels(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a labels table (CSV or Parquet; a folder means its ``labels.csv``/``labels.parquet``).

    Returns a list of dicts with the keys of ``LABEL_COLUMNS`` and Python types (``age`` float,
    ``group`` int, ``det_score`` float or None).
    """
    p = find_table(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            raw = pq.read_table(p).to_pylist()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise PadaError(f"{p}: cannot read Parquet table ({exc})") from None
        return [_typed({k: ("" if v is None else str(v)) for k, v in r.items()}, str(p)) for r in raw]
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PadaError(f"{p}: cannot read labels table ({exc})") from None
    return _read_csv_text(text, str(p))


def _write_atomic(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from pada.outputs import atomic_path

    with atomic_path(path, fsync=True) as tmp:  # all or nothing, umask mode, one-line OSError
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            cols = {k: [r.get(k) for r in rows] for k in LABEL_COLUMNS}
            schema = pa.schema([
                ("file", pa.string()), ("age", pa.float64()), ("gender", pa.string()),
                ("gender_conf", pa.float64()), ("group", pa.int64()), ("group_name", pa.string()),
                ("description", pa.string()), ("det_score", pa.float64())])
            pq.write_table(pa.table(cols, schema=schema), tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(_csv_text(rows, header=True))


def write_labels(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows as a CSV or Parquet table (by suffix), sorted by file, with an atomic rename."""
    p = Path(path)
    _write_atomic(p, sorted(rows, key=lambda r: r["file"]))
    return p


class _Journal:
    """Append-only CSV of finished rows, safe against interruption (see module docstring)."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def read(self) -> list[dict[str, Any]]:
        """Rows already written; a torn last line (no newline) is cut off the file first."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # interrupted in the middle of a write: drop the partial line
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
            data = data[:end]
        if not data:
            return []
        return _read_csv_text(data.decode("utf-8"), str(self.path))

    def open(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", encoding="utf-8", newline="")
        try:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock
            pass
        except OSError:
            self._fh.close()
            raise PadaError(f"{self.path}: another `pada label` run is writing this table") from None
        if new:
            self._write(_csv_text([], header=True))

    def _write(self, text: str) -> None:
        assert self._fh is not None
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._write(_csv_text(rows, header=False))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ----------------------------------------------------------------------------------------------------
# Streaming images
# ----------------------------------------------------------------------------------------------------

def list_images(root: str | os.PathLike) -> list[str]:
    """Image files under ``root`` (recursive), as sorted POSIX paths relative to ``root``.

    Hidden files/folders and names with a newline are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise PadaError(f"{root}: not a folder of images")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or "\n" in name or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 ``(H, W, 3)`` image to ``(size, size, 3)`` (antialiased; a no-op at that size)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def uint8_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` → float32 ``(3, H, W)`` in ``[-1, 1]``."""
    arr = img if img.flags.writeable and img.flags.c_contiguous else np.array(img)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def worker_init(_: int = 0) -> None:
    """DataLoader ``worker_init_fn``: one torch and one OpenCV thread per worker (workers are the
    parallelism; more threads per worker only oversubscribe the cores)."""
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


def loader_options(num_workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments for ``num_workers`` worker processes.

    Workers are *spawned*, not forked: a process that has already used OpenCV's or OpenMP's thread pools
    (any earlier detection or torch op) cannot be forked safely — the child deadlocks inside the
    inherited pool (observed: ``cv2.setNumThreads`` hanging in a forked DataLoader worker). Spawning costs
    one interpreter start per worker and is safe whatever the parent did before; a script calling this
    with workers needs the ``if __name__ == "__main__":`` guard.
    """
    if num_workers <= 0:
        return {"num_workers": 0}
    import multiprocessing

    return {"num_workers": num_workers, "multiprocessing_context": multiprocessing.get_context("spawn"),
            "worker_init_fn": worker_init, "prefetch_factor": 4}


def default_detector_factory():
    """The face toolkit's detector (created inside each DataLoader worker)."""
    from pada.faces.detect import FaceDetector

    return FaceDetector()


class FolderImages(Dataset):
    """Images of a folder as ``{"file", "image" (3,S,S) [-1,1], "det_score", "error"}`` items.

    Decoding, resizing and (optionally) face detection happen here, i.e. in DataLoader workers. A file
    that cannot be read gives ``error`` (its message) and a zero image instead of raising, so one bad file
    does not stop a 70k-image run.
    """

    def __init__(self, root: str | os.PathLike, files: Sequence[str], size: int,
                 detector_factory: Callable[[], Any] | None = None):
        self.root = Path(root)
        self.files = list(files)
        self.size = int(size)
        self.detector_factory = detector_factory
        self._detector = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from pada.faces.io import load_image

        name = self.files[i]
        try:
            img = resize_square(load_image(self.root / name), self.size)
        except (BadImageError, OSError) as exc:
            return {"file": name, "image": torch.zeros(3, self.size, self.size), "det_score": float("nan"),
                    "error": str(exc) or type(exc).__name__}
        det = float("nan")
        if self.detector_factory is not None:
            if self._detector is None:
                self._detector = self.detector_factory()
            faces = self._detector.detect(img)
            det = float(faces[0].score) if faces else 0.0
        return {"file": name, "image": uint8_to_tensor(img), "det_score": det, "error": ""}


# ----------------------------------------------------------------------------------------------------
# Critics
# ----------------------------------------------------------------------------------------------------

def predict_age(critic: Any, images: torch.Tensor) -> torch.Tensor:
    """Ages ``(B,)`` from an age critic called on images ``(B, 3, H, W)`` in [-1, 1].

    Accepts critics returning an object with ``.age`` (pada's ``AgeOutput``) or a ``(B,)`` tensor.
    """
    out = critic(images)
    age = getattr(out, "age", out)
    return torch.as_tensor(age).detach().float().reshape(-1).cpu()


def predict_p_male(critic: Any, images: torch.Tensor) -> torch.Tensor:
    """Probability of "male" ``(B,)`` from a gender critic returning probs ``(B, 2)`` [female, male]."""
    out = critic(images)
    probs = getattr(out, "probs", out)
    probs = torch.as_tensor(probs).detach().float().cpu()
    if probs.ndim != 2 or probs.shape[1] != 2:
        raise PadaError(f"gender critic returned shape {tuple(probs.shape)}, expected (B, 2) [female, male]")
    return probs[:, 1]


def load_label_critics(name: str = "dlib", device: str = "cpu", age_weights: str | None = None,
                 gender_weights: str | None = None) -> tuple[Any, Any]:
    """(age critic, gender critic) for ``--critic NAME`` (``dlib`` offline, ``dex`` when you have it).

    Called ``load_critics`` before (still importable here, with a DeprecationWarning); the evaluation's
    critics are :func:`pada.evaluation.runner.load_critics`.
    """
    if name not in CRITIC_SETS:
        raise PadaError(f"unknown critic {name!r}; choose one of {', '.join(CRITIC_SETS)}")
    from pada.critics.registry import load_critic

    age_name, gender_name = CRITIC_SETS[name]
    age = load_critic(age_name, path=age_weights, device=device)
    gender = load_critic(gender_name, path=gender_weights, device=device)
    for c in (age, gender):
        if hasattr(c, "eval"):
            c.eval()
    return age, gender


# ----------------------------------------------------------------------------------------------------
# Relabeling
# ----------------------------------------------------------------------------------------------------

@dataclass
class RelabelResult:
    table: Path | None  # the finished table (None when the run was stopped early)
    total: int  # images in the folder
    already: int  # rows found from an earlier run (not redone)
    labelled: int  # rows added by this run
    bad: list[str] = field(default_factory=list)  # "file: problem" for unreadable images
    seconds: float = 0.0  # wall time of this run's labelling loop

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else float("nan")


def default_table_path(root: str | os.PathLike) -> Path:
    return Path(root) / "labels.csv"


def relabel(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    age_critic: Any,
    gender_critic: Any,
    detector_factory: Callable[[], Any] | None = None,
    size: int = 256,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    files: Sequence[str] | None = None,
    progress: bool = True,
    max_batches: int | None = None,
) -> RelabelResult:
    """Label every image in ``root`` and write the table ``out`` (default ``root/labels.csv``).

    Args:
        root: folder of aligned face images (searched recursively).
        out: table path; ``.csv`` or ``.parquet``. The journal is ``<out>.part``.
        age_critic: callable on images ``(B, 3, size, size)`` in [-1, 1] returning ages (``.age`` or tensor).
        gender_critic: callable returning ``(B, 2)`` probabilities [female, male] (or ``.probs``).
        detector_factory: builds a detector with ``detect(uint8 HWC) -> faces`` (``faces[0].score``);
            None = no detection (``det_score`` left empty).
        size: side the images are resized to before the critics (they resize further as they need).
        batch_size, num_workers: DataLoader settings (workers decode, resize and detect).
        device: where the critics run.
        files: label only these relative paths (default: every image under ``root``).
        progress: show a tqdm bar on stderr.
        max_batches: stop after this many batches (the table is then left unfinished; for tests/benchmarks).

    Returns:
        A :class:`RelabelResult`. Stopping early (``max_batches``, Ctrl-C, a crash) keeps every row
        already written; the next call continues where this one stopped.
    """
    root = Path(root)
    table = Path(out) if out is not None else default_table_path(root)
    if table.suffix not in (".csv", ".parquet"):
        raise PadaError(f"{table}: labels table must end in .csv or .parquet")
    if not root.is_dir():
        raise PadaError(f"{root}: not a folder of images")
    all_files = list(files) if files is not None else list_images(root)
    table.parent.mkdir(parents=True, exist_ok=True)
    journal = _Journal(table.with_name(table.name + ".part"))
    done = _rows_done(table, journal)
    todo = [f for f in all_files if f not in done]
    result = RelabelResult(table=None, total=len(all_files), already=len(all_files) - len(todo), labelled=0)
    bad_files: set[str] = set()
    if todo:
        loader = DataLoader(FolderImages(root, todo, size, detector_factory), batch_size=batch_size,
                            shuffle=False, **loader_options(num_workers))
        _label_into_journal(loader, journal, done, bad_files, result, age_critic, gender_critic, device,
                            progress, max_batches)
    _write_errors(table.with_name(table.name + ".errors.txt"), result.bad)
    if all(f in done or f in bad_files for f in all_files):  # finished: the journal becomes the table
        if todo or journal.path.exists() or not table.exists():
            write_labels(table, list(done.values()))
        if journal.path.exists():
            journal.path.unlink()
        result.table = table
    return result


# The steps of relabel.
def _rows_done(table: Path, journal: _Journal) -> dict[str, dict[str, Any]]:
    """Rows of an earlier run, by file: the finished table, then the journal of an interrupted run."""
    done: dict[str, dict[str, Any]] = {}
    if table.exists():
        done.update((r["file"], r) for r in load_labels(table))
    done.update((r["file"], r) for r in journal.read())
    return done


def _label_into_journal(loader: DataLoader, journal: _Journal, done: dict[str, dict[str, Any]],
                        bad_files: set[str], result: RelabelResult, age_critic: Any, gender_critic: Any,
                        device: str | torch.device, progress: bool, max_batches: int | None) -> None:
    """Label the loader's batches; each batch's rows are appended to the journal (flushed + fsynced) and to
    ``done``; unreadable files go to ``result.bad`` and ``bad_files``."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=result.total, initial=result.already, unit="img", desc="label", file=sys.stderr,
                   dynamic_ncols=True)
    journal.open()
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for b, batch in enumerate(loader):
                if max_batches is not None and b >= max_batches:
                    break
                errors = [(batch["file"][i], e) for i, e in enumerate(batch["error"]) if e]
                result.bad += [f"{f}: {e}" for f, e in errors]
                bad_files.update(f for f, _ in errors)
                rows = _label_batch(batch, age_critic, gender_critic, device)
                journal.append(rows)  # flushed + fsynced: survives anything after this line
                done.update((r["file"], r) for r in rows)
                result.labelled += len(rows)
                if bar is not None:
                    bar.update(len(batch["file"]))
    finally:
        result.seconds = time.perf_counter() - t0
        journal.close()
        if bar is not None:
            bar.close()


def _label_batch(batch: dict[str, Any], age_critic: Any, gender_critic: Any,
                 device: str | torch.device) -> list[dict[str, Any]]:
    """Label rows of the readable images of one :class:`FolderImages` batch."""
    ok = [i for i, e in enumerate(batch["error"]) if not e]
    if not ok:
        return []
    images = batch["image"][ok].to(device)
    ages = predict_age(age_critic, images)
    p_male = predict_p_male(gender_critic, images)
    rows = []
    for j, i in enumerate(ok):
        det = float(batch["det_score"][i])
        rows.append(label_row(batch["file"][i], float(ages[j]), float(p_male[j]),
                              None if math.isnan(det) else det))
    return rows


def _write_errors(path: Path, bad: Sequence[str]) -> None:
    """``"file: problem"`` lines of this run's unreadable images (no file when there are none)."""
    if bad:
        path.write_text("".join(b + "\n" for b in bad), encoding="utf-8")
    elif path.exists():
        path.unlink()


def labels_by_file(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["file"]: r for r in rows}


__getattr__ = renamed(__name__, {"load_critics": "load_label_critics"})
