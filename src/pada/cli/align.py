"""``pada align INPUT... --out DIR``: detect and FFHQ-align faces in photos (:mod:`pada.faces`).

Inputs are image files or folders (searched recursively for .jpg/.jpeg/.png/.webp/.bmp/.tif/.tiff; the
sub-folder layout is kept under ``--out``). For each photo the largest face (or with ``--all-faces`` every
face, largest first) is aligned and written as ``<stem>.png`` (``<stem>_<k>.png`` with ``--all-faces``).
``DIR/transforms.json`` records, per written crop, the source file, the quad, the original -> crop affine
matrix, the box, score and landmarks, so that :func:`pada.faces.paste_back` can put an edited crop back into
the photo later (docs/faces.md). Records of an earlier run into the same folder are kept. Records are also
appended to ``DIR/transforms.json.part`` as each file is done: a run that is interrupted (even killed)
loses none, and running the same command again skips the files it finished.

A file that cannot be read or has no face gets one line on stderr (``<file>: no face found``) and the run
goes on; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from pada.errors import NoFaceError, PadaError, one_line
from pada.validation import LIMITS, float_option, int_option

TRANSFORMS_FILE = "transforms.json"
JOURNAL_FILE = "transforms.json.part"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "align",
        help="detect and FFHQ-align faces (writes crops + transforms.json for paste-back)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--size", type=int_option(8, LIMITS["crop_size"]), default=256,
                   help="side of the aligned crops in pixels (default 256)")
    p.add_argument("--all-faces", action="store_true", help="align every face, not only the largest")
    p.add_argument("--ext", default="png", choices=["png", "jpg", "webp"], help="output format (default png)")
    p.add_argument("--score-threshold", type=float_option(0.0, 1.0, lo_open=True), default=0.7,
                   help="detector confidence (default 0.7)")
    p.add_argument("--max-megapixels", type=float_option(0.0, LIMITS["megapixels"], lo_open=True),
                   default=100.0, help="refuse larger images (decompression-bomb guard, default 100, at most "
                   f"{LIMITS['megapixels']:g})")
    p.set_defaults(func=run)
    return p


def collect_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(file, relative output stem path)`` pairs from files and folders, plus one-line problems."""
    from pada.faces.io import IMAGE_EXTENSIONS

    items: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                problems.append(f"{raw}: no image files found in this folder")
            items.extend((f, f.relative_to(p).with_suffix("")) for f in found)
        else:
            items.append((p, Path(p.stem)))  # a missing file is reported by load_image
    return items, problems


def _load_records(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PadaError(f"{path}: existing transforms file is unreadable ({exc}); move it away") from None
    return files


def _write_records(path: Path, records: dict, size: int) -> None:
    from pada.outputs import write_text

    payload = {"format": "pada-align-transforms", "version": 1, "size": size,
               "note": "matrix maps original pixel coords (x, y, 1) to crop pixel coords; pixel centres at "
                       "integers. quad corners: top-left, bottom-left, bottom-right, top-right.",
               "files": dict(sorted(records.items()))}
    write_text(path, json.dumps(payload, indent=1))


class Journal:
    """``DIR/transforms.json.part``: the records of a run as it goes, one JSON line per finished input file
    (written after its crops are in place), so a run killed at any point (even ``kill -9``) loses no record,
    and a rerun with the same options skips the files done before. The first line holds the options; a torn
    last line is dropped. :func:`run` merges it into ``transforms.json`` and removes it at the end."""

    def __init__(self, path: Path, options: dict) -> None:
        self.path, self.options = path, options
        self.done: dict[str, dict] = {}     # source (absolute path) -> {key: record}, same options only
        self.records: dict[str, dict] = {}  # every record found, whatever the options
        if not path.exists():
            return
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PadaError(f"{path}: unreadable journal of an earlier run ({exc}); move it away") \
                from None
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                break  # a line torn by a kill: everything before it is intact
            if not isinstance(entry, dict):
                break
            entries.append(entry)
        same = bool(entries) and entries[0].get("options") == options
        for e in entries[1:]:
            recs = e.get("records")
            if isinstance(recs, dict) and isinstance(e.get("source"), str):
                self.records.update(recs)
                if same:
                    self.done[e["source"]] = recs

    def start(self) -> None:
        """(Re)write the journal: this run's options and the files already done under them."""
        from pada.outputs import write_text

        lines = [json.dumps({"format": "pada-align-journal", "version": 1, "options": self.options})]
        lines += [json.dumps({"source": s, "records": r}) for s, r in self.done.items()]
        write_text(self.path, "".join(x + "\n" for x in lines))
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def add(self, source: str, records: dict) -> None:
        self._fh.write(json.dumps({"source": source, "records": records}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if getattr(self, "_fh", None) is not None:
            self._fh.close()


def run(args: argparse.Namespace) -> int:
    import cv2

    from pada.faces.detect import FaceDetector

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise PadaError(f"{out}: exists and is not a folder")
    items, problems = collect_inputs(args.inputs)
    detector = FaceDetector(score_threshold=args.score_threshold)  # missing weights -> one error line
    _make_folder(out)
    tpath = out / TRANSFORMS_FILE
    records = _load_records(tpath)
    journal = Journal(out / JOURNAL_FILE, {"size": args.size, "ext": args.ext, "all_faces": args.all_faces})
    if journal.records:  # a run was killed: keep its records before the journal starts again
        records.update(journal.records)
        _write_records(tpath, records, args.size)
    journal.start()
    max_pixels = int(args.max_megapixels * 1e6)

    for line in problems:
        print(line, file=sys.stderr)
    failed = len(problems)
    n_faces = n_ok = n_resumed = 0
    used: set[str] = set()
    complete = False
    try:
        for path, stem in tqdm(items, desc="align", unit="file", disable=None, file=sys.stderr):
            source = os.path.abspath(path)
            earlier = journal.done.get(source)
            if earlier is not None and all((out / key).is_file() for key in earlier):
                used.update(earlier)  # same output names as in the killed run
                n_resumed += 1
                n_faces += len(earlier)
                n_ok += 1
                continue
            try:
                done = _align_file(args, detector, path, stem, source, used, max_pixels)
                n_faces += len(done)
                records.update(done)
                journal.add(source, done)  # the crops are in place: record them now
                n_ok += 1
            except PadaError as exc:
                failed += 1
                tqdm.write(one_line(str(exc)), file=sys.stderr)
            except (cv2.error, MemoryError, ValueError) as exc:
                failed += 1
                detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                tqdm.write(one_line(f"{path}: could not align ({detail})"), file=sys.stderr)
        complete = True
    finally:
        journal.close()
        if records:
            _write_records(tpath, records, args.size)
        if complete:  # an interrupted run keeps its journal, so the next run resumes
            (out / JOURNAL_FILE).unlink(missing_ok=True)
    return _summary(out, tpath if records else None, n_faces, n_ok, len(items), n_resumed, failed)


# The steps of run.
def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from pada.outputs import write_error

        raise write_error(out, exc, "cannot create the output folder") from None


def _align_file(args: argparse.Namespace, detector, path, stem: Path, source: str, used: set[str],
                max_pixels: int) -> dict[str, dict]:
    """Align the largest (``--all-faces``: every) face of one input and write the crops; returns
    ``{crop file name: transform record}``. Names already in ``used`` get a ``-2``, ``-3`` ... suffix."""
    from pada.faces.align import align_face
    from pada.faces.io import load_image, save_image

    img = load_image(path, max_pixels=max_pixels)
    faces = detector.detect(img)
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    if not args.all_faces:
        faces = faces[:1]
    done: dict[str, dict] = {}
    for k, face in enumerate(faces):
        name = stem.as_posix() + (f"_{k}" if args.all_faces else "")
        key, n = f"{name}.{args.ext}", 2
        while key in used:  # two inputs with the same stem
            key, n = f"{name}-{n}.{args.ext}", n + 1
        used.add(key)
        aligned = align_face(img, face, args.size, source=source)
        save_image(args.out / key, aligned.image)
        done[key] = {**aligned.to_record(), "face_index": k}
    return done


def _summary(out: Path, tpath: Path | None, n_faces: int, n_ok: int, n_items: int, n_resumed: int,
             failed: int) -> int:
    """Print what the run did; exit status 1 when an input failed."""
    resumed = f" ({n_resumed} file(s) done by an earlier, interrupted run)" if n_resumed else ""
    print(f"aligned {n_faces} face(s) from {n_ok} of {n_items} file(s) into {out}{resumed}"
          + (f" (transforms: {tpath})" if tpath is not None else ""))
    if failed:
        print(f"{failed} input(s) failed; see the lines above", file=sys.stderr)
        return 1
    return 0
