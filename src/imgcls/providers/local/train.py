"""Training for the local engine: `quick` fits a linear head on cached frozen features, its weight decay
and temperature chosen by cross-validation; `best` starts from that head and fine-tunes the network
(finetune.py) with early stopping on the validation split, then calibrates on that split.

`allocator` in the result names the C allocator path in effect (allocator.py tunes glibc's malloc).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from imgcls.errors import DataError, UsageError
from imgcls.providers.local import allocator
from imgcls.providers.local.backbone import FEATURE_DIM, build_features, feature_extractor
from imgcls.providers.local.finetune import BEST, average_weights, finetune
from imgcls.providers.local.model import (
    Classifier,
    Head,
    accuracy,
    atomic_save,
    fit_temperature,
    head_loss,
    preprocessing_for,
    torch,
)
from imgcls.providers.local.preprocess import Preprocessing, batches, load_image
from imgcls.runs import atomic_write

PRESETS = ("quick", "best")
QUICK = {"backbone": "lite0", "weight_decays": (1e-4, 1e-3, 1e-2)}  # chosen on flowers-dev train/ splits
CALIBRATION_IMAGES = 64  # training images kept for calibrating the INT8 export
CACHE_VERSION = "v1"  # part of the cache folder name: bump it when the cached preprocessing changes
BATCH = 32
CV_FOLDS = 5  # quick's head: folds of the cross-validation that picks its weight decay and temperature


def train(train_items, val_items, labels, *, multilabel: bool, preset: str, budget_minutes: float,
          workdir: Path, cache_dir: Path, seed: int = 0, progress=None) -> dict:
    """Train on `(path, sha256, labels)` items; writes workdir/model.pt and returns a summary."""
    start = time.monotonic()
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}", hint=f"choose one of: {', '.join(PRESETS)}")
    if not train_items:
        raise DataError("there are no training images")
    labels, workdir, cache_dir = list(labels), Path(workdir), Path(cache_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    if preset == "quick":  # cross-validation replaces the validation split: the head learns from every image
        train_items, val_items = train_items + val_items, []
    y_train = encode_targets(train_items, labels, multilabel)
    encode_targets(val_items, labels, multilabel)  # an unknown label fails now, not after an hour
    progress = progress or (lambda stage, done, total: None)
    cfg = QUICK if preset == "quick" else BEST
    torch.manual_seed(seed)
    summary = {"backbone": cfg["backbone"], "preset": preset, "n_train": len(train_items),
               "n_val": len(val_items), "allocator": allocator.configure(), "resumed": False, "epochs": 0,
               "cache_hits": 0, "cache_misses": 0}
    if preset == "best":
        return _train_best(train_items, val_items, labels, multilabel, budget_minutes * 60, workdir, cache_dir,
                           seed, progress, summary)
    feats = cached_features(train_items, cfg["backbone"], cache_dir, progress, summary)
    head, fit = fit_head(feats, y_train, len(labels), multilabel, QUICK["weight_decays"], seed, progress)
    head.sharpen(fit["temperature"])
    prep = preprocessing_for(cfg["backbone"])
    _save_model(workdir, cfg["backbone"], preset, labels, multilabel, head, None, prep)
    _save_calibration(workdir, train_items, prep)
    return {**summary, **fit, "seconds": round(time.monotonic() - start, 2)}


def _train_best(train_items, val_items, labels, multilabel, budget_s, workdir, cache_dir, seed, progress,
                summary) -> dict:
    """Up to BEST["members"] fine-tunings, each from its own linear-probe head with its own seed and,
    unless the dataset has a validation split, its own 10% of the training images held out for early
    stopping; then their kept weights averaged into one network (a uniform "model soup", Wortsman et
    al. 2022: the accuracy of an ensemble at the inference cost of one model), calibrated on the
    members' held-out logits. How many members is decided after the first epoch (`members_for`).
    Every member's progress is checkpointed; a resumed run skips finished members."""
    path, cfg, began = workdir / "checkpoint.pt", BEST, time.monotonic()
    fingerprint = _fingerprint(cfg["backbone"], "best", labels, multilabel, train_items, val_items, seed)
    ckpt = _load_checkpoint(path, fingerprint) or {"fingerprint": fingerprint, "done": [], "current": None}
    summary["resumed"] = bool(ckpt["done"] or ckpt["current"])
    base = (ckpt["current"] or (ckpt["done"] or [{"seconds": 0.0}])[-1])["seconds"]
    elapsed = lambda: base + time.monotonic() - began
    planned = lambda: ckpt.get("members", cfg["members"])  # decided during the first member's first epoch
    # Member m's end: an equal share of what is left; until the count is decided, the first may have it all.
    share_end = lambda start, m: start + (budget_s - start) / (planned() - m if "members" in ckpt else 1)
    splits = ([(train_items, val_items)] * cfg["members"] if val_items
              else [carve_validation(train_items, seed, fold=m) for m in range(cfg["members"])])
    summary["start_epoch"] = sum(d["summary"]["epochs"] for d in ckpt["done"]) + (ckpt["current"] or {}).get("epoch", 0)
    feats = index = model = None
    while len(ckpt["done"]) < planned():
        m = len(ckpt["done"])
        tr, va = splits[m]
        y_tr, y_va = encode_targets(tr, labels, multilabel), encode_targets(va, labels, multilabel)
        member = ckpt["current"]
        if member is None:  # a new member starts from a linear probe on its own training images
            if feats is None:
                feats = cached_features(train_items, cfg["backbone"], cache_dir, progress, summary)
                index = {it[1]: i for i, it in enumerate(train_items)}
            head, fit = fit_head(feats[[index[it[1]] for it in tr]], y_tr, len(labels), multilabel,
                                 QUICK["weight_decays"], seed + m, progress)
            fit["head_temperature"] = fit.pop("temperature")  # fine-tuning starts from the head as fitted
            now = elapsed()
            member = {"seconds": now, "budget_end": share_end(now, m), "epoch": 0, "head": head.state_dict(),
                      "lp": fit}
        finished = sum(d["summary"]["epochs"] for d in ckpt["done"])

        def save(state, member=member):
            if "members" not in ckpt and state["state"]["epoch_seconds"]:
                ckpt["members"] = members_for(budget_s - member["seconds"], state["state"]["epoch_seconds"])
                member["budget_end"] = state["budget_end"] = share_end(member["seconds"], 0)
            ckpt["current"] = state
            atomic_save(ckpt, path)

        def member_progress(stage, done, total, finished=finished, m=m):
            if stage != "epoch":
                return progress(stage, done, total)
            progress("epoch", finished + done, finished + total * (planned() - m))

        torch.manual_seed(seed + m)
        model, val_logits, fit = finetune(member, tr, y_tr, va, y_va, labels, multilabel, save, member_progress,
                                          seed + m)
        model.head.fold_standardisation()
        ckpt.setdefault("members", 1)  # no epoch fitted the budget: nothing left for a second member
        ckpt["done"].append({"model": model.state_dict(), "val_logits": val_logits, "seconds": elapsed(),
                             "summary": {**member["lp"], **fit, "n_train": len(tr), "n_val": len(va)}})
        ckpt["current"] = None
        atomic_save(ckpt, path)
    if model is None:  # every member was done before this resume
        model = Classifier(build_features(cfg["backbone"])[0], Head(FEATURE_DIM, len(labels)))
    members, splits = ckpt["done"], splits[:len(ckpt["done"])]
    prep = preprocessing_for(cfg["backbone"], cfg["image_size"])
    val = val_items or [item for _, va in splits for item in va]
    soup = average_weights(model, [d["model"] for d in members], [prep.crop(p) for p, _, _ in val],
                           encode_targets(val, labels, multilabel), prep, multilabel)
    y_val = torch.from_numpy(np.concatenate([encode_targets(va, labels, multilabel) for _, va in splits]))
    member_logits = torch.cat([d["val_logits"] for d in members]) if val else torch.zeros(0, len(labels))
    temperature = fit_temperature(member_logits, y_val, multilabel)  # on held-out logits only
    model.head.sharpen(temperature)
    _save_model(workdir, cfg["backbone"], "best", labels, multilabel, model.head, model.features, prep)
    _save_calibration(workdir, train_items, prep)
    per_member = [{k: v for k, v in d["summary"].items() if k != "history"} for d in members]
    return {**summary, **soup, "temperature": temperature, "members": per_member,
            "history": [d["summary"]["history"] for d in members],
            "epochs": sum(d["summary"]["epochs"] for d in members),
            "members_val_accuracy": round(accuracy(member_logits, y_val, multilabel), 4) if val else None,
            "seconds": round(elapsed(), 2)}


def members_for(seconds_left: float, epoch_seconds: float) -> int:
    """How many fine-tunings the budget allows: as many as can each run 80% of the BEST["max_epochs"]
    schedule at the first epoch's pace (which runs a little slow), at least one. A short budget goes to
    one long fine-tuning: on a flowers-dev hold-out with a 3-minute budget, one member of 15 epochs
    scored 0.93 where two averaged members of 7 epochs each scored 0.91. With 15 minutes on flowers-dev
    (first epoch 14 s, 875 s left) it makes two members of about 30 epochs."""
    fits = int(seconds_left / (0.8 * BEST["max_epochs"] * epoch_seconds))
    return max(1, min(BEST["members"], fits))


def carve_validation(items, seed: int = 0, fraction: float = 0.1, fold: int = 0):
    """A deterministic 10% of `items`, stratified by label and ordered by content hash: (train, val).
    Folds 0, 1, ... hold out disjoint tenths (while there are images left to hold out)."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(min(item[2], default=""), []).append(i)
    chosen: set[int] = set()
    for group in groups.values():
        group.sort(key=lambda i: hashlib.sha256(f"{seed}:{items[i][1]}".encode()).hexdigest())
        # A label with under 5 images gives none away: it needs them all to be learnt at all.
        size = max(1, round(len(group) * fraction))
        first = fold * size % len(group)
        chosen.update(group[first:first + size] if len(group) >= 5 else [])
    return ([it for i, it in enumerate(items) if i not in chosen],
            [it for i, it in enumerate(items) if i in chosen])


def encode_targets(items, labels, multilabel: bool) -> np.ndarray:
    """Class indices (multiclass) or a multi-hot float matrix (multilabel)."""
    index = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(items), len(labels)), np.float32) if multilabel else np.zeros(len(items), np.int64)
    for row, (path, _, item_labels) in enumerate(items):
        unknown = [label for label in item_labels if label not in index]
        if unknown:
            raise DataError(f"{path}: label {unknown[0]!r} is not one of the task's labels", path=path)
        if multilabel:
            out[row, [index[label] for label in item_labels]] = 1
        elif len(item_labels) != 1:
            raise DataError(f"{path}: a multiclass image needs exactly one label, it has {len(item_labels)}",
                            hint="use a multilabel task for images with several labels", path=path)
        else:
            out[row] = index[item_labels[0]]
    return out


def cached_features(items, backbone: str, cache_dir: Path, progress, counts: dict) -> np.ndarray:
    """(n, 2, D) pooled features of the center crop and its mirror, cached per (backbone, sha256)."""
    folder = Path(cache_dir) / f"{backbone}-{CACHE_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    out, missing = np.zeros((len(items), 2, FEATURE_DIM), np.float32), []
    for i, (_, sha, _) in enumerate(items):
        try:
            out[i] = np.load(folder / f"{sha}.npy")
        except (OSError, ValueError):
            missing.append(i)
    counts["cache_hits"] += len(items) - len(missing)
    counts["cache_misses"] += len(missing)
    if not missing:
        return out
    extract = feature_extractor(backbone, Path(cache_dir) / "onnx")
    prep = preprocessing_for(backbone)
    decode = lambda i: prep.apply(load_image(items[i][0], draft_size=prep.resize))
    done = 0
    with ThreadPoolExecutor(2) as pool:
        for arrays in batches(pool, decode, missing, BATCH):
            x = np.stack(arrays)
            feats = extract(np.concatenate([x, x[..., ::-1]]))
            for j, i in enumerate(missing[done:done + len(arrays)]):
                out[i] = feats[[j, j + len(arrays)]]
                # atomic, but unlike runs.atomic_write not fsynced: a cache file lost to a crash is recomputed
                tmp = folder / f".{items[i][1]}.{os.getpid()}.npy"
                np.save(tmp, out[i])
                os.replace(tmp, folder / f"{items[i][1]}.npy")
            done += len(arrays)
            progress("features", done, len(missing))
    return out


def fit_head(feats, targets, n_labels: int, multilabel: bool, decays, seed: int, progress,
             folds: int = CV_FOLDS):
    """A linear head on (n, 2, D) features of both views, and a summary.

    The weight decay is chosen by stratified k-fold cross-validation (out-of-fold accuracy, then loss):
    every image votes, where a 10% validation split of a small dataset holds a handful and picked
    over-confident heads. The temperature is fitted on the same out-of-fold logits and returned, not
    applied; the head itself learns from every image."""
    y = torch.from_numpy(targets)
    if len(feats) < 2 * folds or len(decays) == 1:  # too few to cross-validate: the middle decay
        wd = decays[len(decays) // 2]
        return _fit(feats, targets, n_labels, multilabel, wd), {"weight_decay": wd, "temperature": 1.0}
    order = np.random.default_rng(seed).permutation(len(feats))
    if not multilabel:
        order = order[np.argsort(targets[order], kind="stable")]
    fold = np.empty(len(feats), np.int64)
    fold[order] = np.arange(len(feats)) % folds
    scores, previous = [], {}
    # The strongest decay first: each fold's solution then starts the next, weaker decay near its optimum.
    for k, wd in enumerate(sorted(decays, reverse=True)):
        logits = torch.zeros(len(feats), n_labels)
        for f in range(folds):
            head = previous[f] = _fit(feats[fold != f], targets[fold != f], n_labels, multilabel, wd, previous.get(f))
            with torch.no_grad():
                logits[fold == f] = head(torch.from_numpy(feats[fold == f, 0]))
        scores.append((accuracy(logits, y, multilabel), -float(head_loss(logits, y, multilabel)), wd, logits))
        progress("head", k + 1, len(decays))
    acc, neg_loss, wd, logits = max(scores, key=lambda score: score[:2])
    return _fit(feats, targets, n_labels, multilabel, wd), {
        "weight_decay": wd, "head_cv_accuracy": round(acc, 4), "head_cv_loss": round(-neg_loss, 4),
        "cv_folds": folds, "temperature": fit_temperature(logits, y, multilabel)}


def _fit(feats, targets, n_labels: int, multilabel: bool, wd: float, start: Head | None = None) -> Head:
    """Full-batch L-BFGS on both views, features standardised with their own statistics; from `start`'s
    weights when given (a warm start), else from zero."""
    x = torch.from_numpy(feats.reshape(-1, feats.shape[-1]))
    head = Head(x.shape[1], n_labels)
    head.mean.copy_(x.mean(0))
    head.scale.copy_(1 / (x.std(0) + 1e-6))
    _lbfgs(head, x, torch.from_numpy(np.repeat(targets, 2, axis=0)), multilabel, wd, start)
    return head


def _lbfgs(head: Head, x, y, multilabel: bool, wd: float, start: Head | None = None) -> None:
    feats = (x - head.mean) * head.scale
    w, b = head.fc.weight, head.fc.bias
    with torch.no_grad():
        if start is None:
            w.zero_(), b.zero_()
        else:
            w.copy_(start.fc.weight), b.copy_(start.fc.bias)
    # Tolerances of 1e-5/1e-6, not torch's 1e-7/1e-9: the same heads to the 4th decimal of the loss and
    # the same test accuracy on flowers-bench, in half the time (42 s instead of 78 for quick's grid).
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe", tolerance_grad=1e-5,
                            tolerance_change=1e-6)

    def closure():
        opt.zero_grad()
        loss = head_loss(feats @ w.T + b, y, multilabel) + wd * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)


def _fingerprint(backbone, preset, labels, multilabel, train_items, val_items, seed) -> str:
    key = [backbone, preset, labels, multilabel, [it[1] for it in train_items], [it[1] for it in val_items],
           seed, BEST if preset == "best" else QUICK]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()


def _load_checkpoint(path: Path, fingerprint: str):
    """The checkpoint of this very run (same data, labels, preset, seed), else None: start afresh."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):  # absent, or from an older engine
        return None
    return ckpt if isinstance(ckpt, dict) and ckpt.get("fingerprint") == fingerprint else None


def _save_calibration(workdir: Path, items, prep: Preprocessing) -> None:
    """Center crops (uint8 NHWC) of a spread of training images, for export's INT8 calibration."""
    chosen = sorted(items, key=lambda it: it[1])[::max(1, len(items) // CALIBRATION_IMAGES)][:CALIBRATION_IMAGES]
    buffer = io.BytesIO()
    np.save(buffer, np.stack([prep.crop(p) for p, _, _ in chosen]))
    atomic_write(Path(workdir) / "calibration.npy", buffer.getvalue())


def _save_model(workdir, backbone, preset, labels, multilabel, head, features, prep: Preprocessing) -> None:
    atomic_save({"format": 1, "backbone": backbone, "preset": preset, "labels": list(labels),
                 "multilabel": multilabel, "preprocessing": asdict(prep),
                 "head": head.state_dict(), "features": None if features is None else features.state_dict()},
                Path(workdir) / "model.pt")
