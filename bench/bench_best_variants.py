"""Variants of the `best` preset on a train/ + test/ folder dataset, each scored on test the way
bench_local.py scores the presets; merges one entry per variant into bench/results/best-variants.json.

    # a fine-tuning with some of finetune.BEST changed (here: no label smoothing), in this process
    python bench/bench_best_variants.py train no-smoothing label_smoothing=0.0
    # the same with another seed (another validation split, head and augmented views): a replicate
    python bench/bench_best_variants.py train --seed 1 no-smoothing-seed1 label_smoothing=0.0
    # test-time geometries (size/resize) of a trained workdir, each scored on the validation images the
    # fine-tuning held out (what a choice may be based on) and on test (what is reported)
    python bench/bench_best_variants.py geometry WORKDIR 224/256 256/292 288/320
    # trained workdirs scored alone and as one ensemble (probabilities averaged), with the test images
    # that every one of them gets wrong: how far more fine-tunings of this backbone could go
    python bench/bench_best_variants.py ensemble [--flip] WORKDIR WORKDIR ...
    # a linear probe (the `quick` preset) on another backbone's frozen features
    python bench/bench_best_variants.py probe lite1

These are the measurements behind the variant table in the README; the preset itself is benchmarked by
bench_local.py, in a fresh venv. The installed imgcls is used when there is one, else ./src.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# bench_local also puts ./src on the path when imgcls is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import ROOT, folder_items, quality

from imgcls.runs.store import write_json


def logits_of(model, items, prep, flip: bool = False):
    """The model's logits on the center crops of `items`, as the fine-tuning validates; with `flip`, the
    mean of the crops' and their mirror images' logits (test-time flips)."""
    from imgcls.providers.local.finetune import evaluate

    crops = [prep.crop(p) for p, _, _ in items]
    logits = evaluate(model, crops, np.zeros(len(items), np.int64), prep, False)[2]
    if flip:
        mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
        logits = (logits + evaluate(model, mirrored, np.zeros(len(items), np.int64), prep, False)[2]) / 2
    return logits


def test_probabilities(workdir, test_items, flip: bool = False):
    """(probabilities on test of the model trained in `workdir`, its preprocessing)."""
    from imgcls.providers.local.export import load_model
    from imgcls.providers.local.model import torch
    from imgcls.providers.local.preprocess import Preprocessing

    model, meta = load_model(workdir)
    prep = Preprocessing.from_dict(meta["preprocessing"])
    return torch.softmax(logits_of(model, test_items, prep, flip), 1).numpy(), prep


def train_variant(args, train_items, test_items, labels) -> dict:
    from imgcls.providers.local import finetune
    from imgcls.providers.local.train import train

    changes = {}
    for pair in args.changes:
        key, value = pair.split("=", 1)
        if key not in finetune.BEST:
            raise SystemExit(f"{key}: not a key of finetune.BEST ({', '.join(finetune.BEST)})")
        changes[key] = finetune.BEST[key] = ast.literal_eval(value)
    workdir = args.scratch / args.name
    began = time.monotonic()
    info = train(train_items, [], labels, multilabel=False, preset="best", budget_minutes=args.budget_minutes,
                 workdir=workdir, cache_dir=args.scratch / "cache", seed=args.seed)
    seconds = time.monotonic() - began
    probs = test_probabilities(workdir, test_items)[0]
    members = info.get("members") or [{}]
    return {"changes": changes, "seed": args.seed, "train_seconds": round(seconds, 1), "epochs": info.get("epochs"),
            "best_epoch": members[0].get("best_epoch"), "best_val_accuracy": members[0].get("best_val_accuracy"),
            "temperature": info.get("temperature"),
            "test": quality(probs, [it[2][0] for it in test_items], labels)}


def geometry_variants(args, train_items, test_items, labels) -> dict:
    from imgcls.providers.local.export import load_model
    from imgcls.providers.local.model import fit_temperature, head_loss, torch
    from imgcls.providers.local.preprocess import Preprocessing
    from imgcls.providers.local.train import carve_validation, encode_targets

    model, _ = load_model(args.workdir)
    val = carve_validation(train_items, 0, fold=0)[1]  # what the one-member fine-tuning held out (seed 0)
    y_val = torch.from_numpy(encode_targets(val, labels, False))
    out = {}
    for geometry in args.geometries:
        size, resize = map(int, geometry.split("/"))
        prep = Preprocessing(size=size, resize=resize)
        val_logits, test_logits = logits_of(model, val, prep), logits_of(model, test_items, prep)
        extra = fit_temperature(val_logits, y_val, False)  # the model's own temperature was fitted at its size
        out[geometry] = {
            "val_accuracy": round(float((val_logits.argmax(1) == y_val).float().mean()), 4),
            "val_loss": round(float(head_loss(val_logits / extra, y_val, False)), 4), "extra_temperature": extra,
            "test": quality(torch.softmax(test_logits / extra, 1).numpy(), [it[2][0] for it in test_items], labels)}
        print(geometry, json.dumps(out[geometry]), file=sys.stderr)
    return {"workdir": str(args.workdir), "geometries": out}


def ensemble(args, train_items, test_items, labels) -> dict:
    """Each workdir's model alone, then the mean of their probabilities; and the test images all miss."""
    truth = [it[2][0] for it in test_items]
    y = np.array([labels.index(t) for t in truth])
    alone, probs = {}, []
    for workdir in args.workdirs:
        probs.append(test_probabilities(workdir, test_items, args.flip)[0])
        alone[workdir.name] = quality(probs[-1], truth, labels)
        print(workdir.name, json.dumps(alone[workdir.name]), file=sys.stderr)
    wrong = np.array([p.argmax(1) != y for p in probs])
    missed = [{"image": str(Path(test_items[i][0]).relative_to(args.data)),
               "predicted": sorted({labels[p[i].argmax()] for p in probs})} for i in np.flatnonzero(wrong.all(0))]
    return {"workdirs": [str(w) for w in args.workdirs], "test_time_flips": args.flip, "alone": alone,
            "mean_of_probabilities": quality(np.mean(probs, 0), truth, labels),
            "missed_by_every_model": missed, "missed_by_any_model": int(wrong.any(0).sum())}


def probe(args, train_items, test_items, labels) -> dict:
    """The `quick` preset (a linear head on frozen features) with another backbone, scored on test."""
    from imgcls.providers.local import train as engine

    engine.QUICK["backbone"] = args.backbone
    workdir = args.scratch / f"probe-{args.backbone}"
    began = time.monotonic()
    engine.train(train_items, [], labels, multilabel=False, preset="quick", budget_minutes=args.budget_minutes,
                 workdir=workdir, cache_dir=args.scratch / "cache")
    seconds = time.monotonic() - began
    probs, prep = test_probabilities(workdir, test_items)
    return {"backbone": args.backbone, "input_size": prep.size, "train_seconds": round(seconds, 1),
            "test": quality(probs, [it[2][0] for it in test_items], labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "best-variants.json")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/imgcls-best-variants"))
    parser.add_argument("--budget-minutes", type=float, default=15)
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("train", help="fine-tune with finetune.BEST changed: [--seed N] NAME KEY=VALUE ...")
    one.add_argument("name")
    one.add_argument("--seed", type=int, default=0, help="another seed: another validation split, head and views")
    one.add_argument("changes", nargs="*")
    geo = sub.add_parser("geometry", help="score a trained workdir at test-time geometries SIZE/RESIZE ...")
    geo.add_argument("workdir", type=Path)
    geo.add_argument("geometries", nargs="+")
    ens = sub.add_parser("ensemble", help="score trained workdirs alone and averaged: WORKDIR WORKDIR ...")
    ens.add_argument("workdirs", type=Path, nargs="+")
    ens.add_argument("--flip", action="store_true", help="score each model with test-time flips")
    pro = sub.add_parser("probe", help="a linear probe (quick) on another backbone: lite0, lite1 or lite2")
    pro.add_argument("backbone")
    args = parser.parse_args()
    load = os.getloadavg()
    train_items, test_items = folder_items(args.data / "train"), folder_items(args.data / "test")
    labels = sorted({it[2][0] for it in train_items})
    if args.mode == "train":
        name, result = args.name, train_variant(args, train_items, test_items, labels)
    elif args.mode == "geometry":
        name, result = f"geometry:{args.workdir.name}", geometry_variants(args, train_items, test_items, labels)
    elif args.mode == "ensemble":
        name = f"ensemble{'-flip' if args.flip else ''}:{'+'.join(w.name for w in args.workdirs)}"
        result = ensemble(args, train_items, test_items, labels)
    else:
        name, result = f"probe:{args.backbone}", probe(args, train_items, test_items, labels)
    result.update(measured=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average_at_start=load,
                  imgcls=str(Path(sys.modules["imgcls"].__file__).parent), dataset=str(args.data))
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[name] = result
    write_json(args.out, results)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
