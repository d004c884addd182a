"""``pada label DIR``: FFHQ-AT relabeling of a folder of aligned faces (:mod:`pada.data.labels`).

Runs the age and gender critics over every image under DIR (recursively) and writes a table with each
image's predicted age, gender (+ confidence), age group, description and face-detector score. The run
is resumable: interrupt it at any time and run the same command again to continue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pada.validation import LIMITS, int_option


def _run(args: argparse.Namespace) -> int:
    import torch

    from pada.data.labels import default_detector_factory, load_label_critics, relabel

    if args.threads:
        torch.set_num_threads(args.threads)
    age, gender = load_label_critics(args.critic, device=args.device, age_weights=args.age_weights,
                               gender_weights=args.gender_weights)
    res = relabel(args.dir, args.out, age_critic=age, gender_critic=gender,
                  detector_factory=None if args.no_detect else default_detector_factory,
                  size=args.size, batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                  progress=not args.quiet)
    summary = {"table": str(res.table), "images": res.total, "already_labelled": res.already,
               "labelled_now": res.labelled, "unreadable": len(res.bad), "seconds": round(res.seconds, 2),
               "images_per_second": round(res.images_per_second, 2) if res.labelled else None}
    if args.json:
        print(json.dumps(summary))
    else:
        speed = f" at {res.images_per_second:.1f} img/s" if res.labelled else ""
        print(f"{res.table}: {res.total} images ({res.already} from an earlier run, "
              f"{res.labelled} labelled now{speed})")
    if res.bad:
        print(f"warning: {len(res.bad)} unreadable images skipped (listed in {res.table}.errors.txt); "
              f"first: {res.bad[0]}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("label", help="relabel aligned faces with age group and description (FFHQ-AT)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="folder of aligned face images (searched recursively)")
    p.add_argument("--out", default=None, help="table to write, .csv or .parquet (default DIR/labels.csv)")
    p.add_argument("--critic", default="dlib", choices=("dlib", "dex"),
                   help="dlib (offline, default) or dex (needs the DEX weights; see pada weights list)")
    p.add_argument("--age-weights", default=None, help="explicit weight file of the age critic")
    p.add_argument("--gender-weights", default=None, help="explicit weight file of the gender critic")
    p.add_argument("--size", type=int_option(8, LIMITS["crop_size"]), default=256,
                   help="side the images are resized to (default 256)")
    p.add_argument("--batch-size", type=int_option(1, LIMITS["batch_size"]), default=64)
    p.add_argument("--workers", type=int_option(0, LIMITS["workers"]),
                   default=min(4, max(1, (os.cpu_count() or 2) - 1)),
                   help="DataLoader workers decoding and detecting (default: CPUs - 1, at most 4)")
    p.add_argument("--device", default="cpu", help="torch device of the critics (cpu, cuda, ...)")
    p.add_argument("--threads", type=int_option(0, LIMITS["threads"]), default=1,
                   help="torch CPU threads of the critics (default 1: the dlib critics are small and the "
                        "workers need the cores; raise it for dex on CPU; 0 = torch default)")
    p.add_argument("--no-detect", action="store_true", help="skip the face detector (det_score left empty)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
