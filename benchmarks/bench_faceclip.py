"""Evaluate FaceCLIP (and the raw-MiniLM baseline) on held-out demo faces and open-world phrases; print JSON.

    python benchmarks/bench_faceclip.py --data data/demo [--weights PATH] [--json out.json]

Reports, for the committed FaceCLIP (or ``--weights``):

* zero-shot FFHQ-AT age groups on the held-out faces (file-hash split, the fraction used in training): top-1
  and within-one-group accuracy, gender accuracy, confusion matrix;
* open-world phrases (:data:`pada.vl.captions.OPEN_WORLD_PHRASES`, never in training): how many rank a
  description of an overlapping age group first;
* the text age read-out of the 14 descriptions; wall time of ``encode_image``/``encode_text`` on this CPU.

Raw-MiniLM baseline: the text space is MiniLM's own (no projection). Open-world uses MiniLM embeddings
directly (text only). Zero-shot classification needs an image tower, so one is trained against the *frozen*
raw MiniLM space with the same recipe (``FaceCLIPConfig(text_projection="none")``, same seed and steps): the
difference measures what the trained text projection adds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from pada.data.groups import DESCRIPTIONS
from pada.vl.evaluation import open_world, zero_shot_groups
from pada.vl.faceclip import FaceCLIPConfig, load_heads
from pada.vl.minilm import MiniLMEncoder
from pada.vl.train_faceclip import FaceClipTrainConfig, embed_bank, load_face_data, train_heads


def _summary(zs: dict, ow: dict) -> dict:
    return {"zero_shot_top1": round(zs["top1"], 4), "zero_shot_within_one": round(zs["within_one"], 4),
            "gender_acc": round(zs["gender_acc"], 4), "n_test": zs["n"],
            "open_world_correct": ow["group_correct"], "open_world_n": ow["n"],
            "open_world_frac": round(ow["group_correct_frac"], 4),
            "open_world_group_and_gender": ow["group_and_gender_correct"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="demo folder (default $PADA_DEMO_DIR or data/demo)")
    ap.add_argument("--weights", default=None, help="FaceCLIP heads (default: the committed ones)")
    ap.add_argument("--cache", default="runs/faceclip/cache", help="critic-feature / caption cache folder")
    ap.add_argument("--no-baseline", action="store_true", help="skip training the raw-MiniLM image tower")
    ap.add_argument("--check-images", type=int, default=16,
                    help="held-out images also run end to end through encode_image (consistency check)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pada import weights
    from pada.data.demo import default_demo_dir
    from pada.vl.faceclip import FaceCLIP
    from pada.vl.train_faceclip import _image_dir, _load_image

    data = Path(args.data) if args.data else default_demo_dir()
    wfile = weights.resolve("faceclip", args.weights)
    heads, meta = load_heads(wfile)
    recipe = json.loads(meta.get("recipe", "{}"))
    test_fraction = float(recipe.get("test_fraction", 0.2))
    size = int(recipe.get("size", 256))
    cache = Path(args.cache)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    train, test, digest = load_face_data(data, size, test_fraction, cache, heads.cfg.features,
                                         float(recipe.get("train_config", {}).get("min_gender_conf", 0.75)),
                                         log=log)
    minilm = MiniLMEncoder()
    out: dict = {"weights": str(wfile), "data": str(data), "data_sha256": digest,
                 "same_data_as_training": digest == recipe.get("data_sha256"), "test_fraction": test_fraction}

    # ---- FaceCLIP
    model = FaceCLIP(heads, text_encoder=minilm)
    with torch.no_grad():
        desc = model.encode_text(list(DESCRIPTIONS))
        img = heads.embed_features(test.feats[:, 0])
        zs = zero_shot_groups(img, desc, test.groups, test.label_genders)
        ow = open_world(model.encode_text)
        n = min(args.check_images, len(test.files))
        image_dir = _image_dir(data, size)
        x = torch.stack([_load_image(image_dir / f) for f in test.files[:n]])
        t0 = time.perf_counter()
        e2e = model.encode_image(x)
        t_img = (time.perf_counter() - t0) / max(n, 1)
        t0 = time.perf_counter()
        model.encode_text([f"a {a}-year-old person, new" for a in range(32)])
        t_txt = (time.perf_counter() - t0) / 32
        desc_age = model.predict_age(desc)
        img_age = model.predict_age(img)
    out["faceclip"] = {**_summary(zs, ow), "confusion": zs["confusion"],
                       "image_age_readout_mae": round(float((img_age - test.ages).abs().mean()), 2),
                       "description_age_readout": {d: round(float(a), 1)
                                                   for d, a in zip(DESCRIPTIONS, desc_age)},
                       "open_world_phrases": ow["phrases"],
                       "end_to_end_max_abs_diff": float((e2e - img[:n]).abs().max()) if n else None,
                       "encode_image_ms_per_image": round(1000 * t_img, 1),
                       "encode_text_ms_per_text": round(1000 * t_txt, 1)}

    # ---- raw MiniLM baseline
    with torch.no_grad():
        ow_raw = open_world(minilm)
    base = {"open_world_correct": ow_raw["group_correct"], "open_world_n": ow_raw["n"],
            "open_world_frac": round(ow_raw["group_correct_frac"], 4),
            "open_world_group_and_gender": ow_raw["group_and_gender_correct"],
            "open_world_phrases": ow_raw["phrases"]}
    if not args.no_baseline:
        tc = recipe.get("train_config", {})
        known = FaceClipTrainConfig.__dataclass_fields__
        tcfg = FaceClipTrainConfig(**{k: v for k, v in tc.items() if k in known})
        bank, bank_emb = embed_bank(cache, minilm, log=log)
        cfg = FaceCLIPConfig(text_projection="none", features=heads.cfg.features,
                             image_hidden=heads.cfg.image_hidden)
        t0 = time.time()
        raw_heads, _ = train_heads(cfg, tcfg, train, bank, bank_emb, log=log)
        with torch.no_grad():
            zs_raw = zero_shot_groups(raw_heads.embed_features(test.feats[:, 0]), minilm(list(DESCRIPTIONS)),
                                      test.groups, test.label_genders)
        base.update({k: v for k, v in _summary(zs_raw, ow_raw).items()
                     if k.startswith(("zero", "gender", "n_"))})
        base["confusion"] = zs_raw["confusion"]
        base["image_tower_train_seconds"] = round(time.time() - t0, 1)
    out["raw_minilm"] = base
    out["targets"] = {"within_one_ge_0.80": out["faceclip"]["zero_shot_within_one"] >= 0.8,
                      "open_world_ge_0.90": out["faceclip"]["open_world_frac"] >= 0.9}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
