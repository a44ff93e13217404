"""Training for the local engine: `quick` fits a linear head on cached frozen features; `best` starts
from that head and fine-tunes the whole network with augmentation, early stopping and a time budget.

Run it under tcmalloc (LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4, Debian package
libtcmalloc-minimal4): torch on glibc malloc measured 2-4x slower here. `allocator` in the result says.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from imgcls.errors import DataError, MissingDependency, UsageError
from imgcls.providers.local.backbone import BACKBONES, build_features, load_backbone
from imgcls.providers.local.preprocess import (
    Preprocessing,
    augment,
    batches,
    center_crop,
    load_image,
    normalize,
    resize_shorter,
)

try:
    import torch
    from torch import nn
except ImportError:
    raise MissingDependency("local", "torch") from None

PRESETS = ("quick", "best")
# Chosen on validation splits carved from flowers-dev train/ (numbers in bench/results/local.json).
QUICK = {"backbone": "lite0", "weight_decays": (1e-4, 1e-3, 1e-2)}
BEST = {"backbone": "lite0", "batch_size": 32, "lr": 2e-4, "weight_decay": 0.05, "label_smoothing": 0.1,
        "dropout": 0.2, "max_epochs": 30, "patience": 10, "min_scale": 0.25, "freeze_bn": True, "frozen_stages": 3}
CALIBRATION_IMAGES = 64  # training images kept for calibrating the INT8 export
CACHE_VERSION = "v1"  # part of the cache folder name: bump it when the cached preprocessing changes
BATCH = 32


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
    if not val_items:
        train_items, val_items = carve_validation(train_items, seed)
    y_train, y_val = encode_targets(train_items, labels, multilabel), encode_targets(val_items, labels, multilabel)
    progress = progress or (lambda stage, done, total: None)
    cfg = QUICK if preset == "quick" else BEST
    torch.manual_seed(seed)
    summary = {"backbone": cfg["backbone"], "preset": preset, "n_train": len(train_items),
               "n_val": len(val_items), "allocator": allocator(), "resumed": False, "epochs": 0,
               "cache_hits": 0, "cache_misses": 0}
    fingerprint = _fingerprint(cfg["backbone"], preset, labels, multilabel, train_items, val_items, seed)
    ckpt = _load_checkpoint(workdir / "checkpoint.pt", fingerprint) if preset == "best" else None
    if ckpt is None:
        f_train, f_val = (cached_features(items, cfg["backbone"], cache_dir, progress, summary)
                          for items in (train_items, val_items))
        head, fit = fit_head(f_train, y_train, f_val, y_val, len(labels), multilabel, QUICK["weight_decays"],
                             progress)
        summary.update(fit, best_val_accuracy=fit["head_val_accuracy"])
        if preset == "quick":
            if len(val_items):  # the weight decay is chosen; the final head learns from every image
                head, _ = fit_head(np.concatenate([f_train, f_val]), np.concatenate([y_train, y_val]),
                                   None, None, len(labels), multilabel, (fit["weight_decay"],), None)
            _save_model(workdir, cfg["backbone"], preset, labels, multilabel, head, None)
            _save_calibration(workdir, train_items, cfg["backbone"])
            return {**summary, "seconds": round(time.monotonic() - start, 2)}
        ckpt = {"fingerprint": fingerprint, "epoch": 0, "seconds": time.monotonic() - start,
                "head": head.state_dict(), "lp": fit}
    else:
        summary.update(ckpt["lp"], resumed=True)
    summary["start_epoch"] = ckpt["epoch"]
    model, fit = finetune(ckpt, train_items, y_train, val_items, y_val, labels, multilabel,
                          budget_minutes * 60, workdir, progress, seed)
    _save_model(workdir, cfg["backbone"], preset, labels, multilabel, model.head, model.features)
    _save_calibration(workdir, train_items, cfg["backbone"])
    seconds = fit.pop("seconds_total")
    return {**summary, **fit, "seconds": round(seconds, 2)}


def carve_validation(items, seed: int = 0, fraction: float = 0.1):
    """A deterministic 10% of `items`, stratified by label and ordered by content hash: (train, val)."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(min(item[2], default=""), []).append(i)
    chosen: set[int] = set()
    for group in groups.values():
        group.sort(key=lambda i: hashlib.sha256(f"{seed}:{items[i][1]}".encode()).hexdigest())
        # A label with under 5 images gives none away: it needs them all to be learnt at all.
        chosen.update(group[:max(1, round(len(group) * fraction))] if len(group) >= 5 else [])
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


def allocator() -> str:
    try:
        return "tcmalloc" if "tcmalloc" in Path("/proc/self/maps").read_text() else "glibc"
    except OSError:
        return "unknown"


def preprocessing_for(backbone: str) -> Preprocessing:
    return Preprocessing.for_input(BACKBONES[backbone][3])


def cached_features(items, backbone: str, cache_dir: Path, progress, counts: dict) -> np.ndarray:
    """(n, 2, D) pooled features of the center crop and its mirror, cached per (backbone, sha256)."""
    folder = Path(cache_dir) / f"{backbone}-{CACHE_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    out, missing = np.zeros((len(items), 2, 1280), np.float32), []
    for i, (_, sha, _) in enumerate(items):
        try:
            out[i] = np.load(folder / f"{sha}.npy")
        except (OSError, ValueError):
            missing.append(i)
    counts["cache_hits"] += len(items) - len(missing)
    counts["cache_misses"] += len(missing)
    if not missing:
        return out
    model = load_backbone(backbone)[0].to(memory_format=torch.channels_last)
    prep = preprocessing_for(backbone)
    decode = lambda i: prep.apply(load_image(items[i][0], draft_size=prep.resize))
    done = 0
    with ThreadPoolExecutor(2) as pool, torch.inference_mode():
        for arrays in batches(pool, decode, missing, BATCH):
            x = torch.from_numpy(np.stack(arrays))
            feats = model(torch.cat([x, x.flip(3)]).contiguous(memory_format=torch.channels_last)).numpy()
            for j, i in enumerate(missing[done:done + len(arrays)]):
                out[i] = feats[[j, j + len(arrays)]]
                tmp = folder / f".{items[i][1]}.{os.getpid()}.npy"
                np.save(tmp, out[i])
                os.replace(tmp, folder / f"{items[i][1]}.npy")
            done += len(arrays)
            progress("features", done, len(missing))
    return out


class Head(nn.Module):
    """Standardise the pooled features with training statistics, then one linear layer."""

    def __init__(self, dim: int, n_labels: int, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, n_labels)

    def forward(self, feats):
        return self.fc(self.dropout((feats - self.mean) * self.scale))


class Classifier(nn.Module):
    """Backbone + head; returns logits."""

    def __init__(self, features: nn.Module, head: Head):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):
        return self.head(self.features(x))


def head_loss(logits, targets, multilabel: bool, smoothing: float = 0.0):
    if multilabel:  # summed over labels so the weight decay means the same for any label count
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    return nn.functional.cross_entropy(logits, targets, label_smoothing=smoothing)


def accuracy(logits, targets, multilabel: bool) -> float:
    """Multiclass: top-1 accuracy. Multilabel: exact-match accuracy at threshold 0.5."""
    if multilabel:
        return float(((logits > 0) == (targets > 0.5)).all(dim=1).float().mean())
    return float((logits.argmax(1) == targets).float().mean())


def fit_head(f_train, y_train, f_val, y_val, n_labels, multilabel, decays, progress):
    """Full-batch L-BFGS on both views; the weight decay with the best validation accuracy wins."""
    d = f_train.shape[-1]
    x = torch.from_numpy(f_train.reshape(-1, d))
    y = torch.from_numpy(np.repeat(y_train, 2, axis=0))
    mean, scale = x.mean(0), 1 / (x.std(0) + 1e-6)
    best = None
    for k, wd in enumerate(decays):
        head = Head(d, n_labels)
        head.mean.copy_(mean)
        head.scale.copy_(scale)
        _lbfgs(head, x, y, multilabel, wd)
        score = (1.0, 0.0)
        if f_val is not None and len(f_val):
            with torch.no_grad():
                logits = head(torch.from_numpy(f_val[:, 0]))
                yv = torch.from_numpy(y_val)
                score = (accuracy(logits, yv, multilabel), -float(head_loss(logits, yv, multilabel)))
        if best is None or score > best[0]:
            best = (score, wd, head)
        if progress:
            progress("head", k + 1, len(decays))
    (acc, neg_loss), wd, head = best
    return head, {"weight_decay": wd, "head_val_accuracy": round(acc, 4), "head_val_loss": round(-neg_loss, 4)}


def _lbfgs(head: Head, x, y, multilabel: bool, wd: float) -> None:
    feats = (x - head.mean) * head.scale
    w, b = head.fc.weight, head.fc.bias
    with torch.no_grad():
        w.zero_(), b.zero_()
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = head_loss(feats @ w.T + b, y, multilabel) + wd * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)


def finetune(ckpt, train_items, y_train, val_items, y_val, labels, multilabel, budget_s, workdir, progress,
             seed):
    """Fine-tune everything from the checkpoint (or from the linear-probe head) with early stopping."""
    cfg, run_start, base_seconds = BEST, time.monotonic(), ckpt["seconds"]
    features = (build_features if "model" in ckpt else load_backbone)(cfg["backbone"])[0]
    model = Classifier(features, Head(1280, len(labels), cfg["dropout"]))
    model.head.load_state_dict(ckpt["head"])
    model = model.to(memory_format=torch.channels_last)
    freeze_early_stages(features, cfg["frozen_stages"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]  # no weight decay on BN and biases
    rest = [p for p in trainable if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg["lr"])
    prep = preprocessing_for(cfg["backbone"])
    pool = ThreadPoolExecutor(2)
    val_crops = [np.asarray(center_crop(resize_shorter(load_image(p, draft_size=prep.resize), prep.resize),
                                        prep.size)) for p, _, _ in val_items]
    if "model" in ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
    else:
        acc, loss = evaluate(model, val_crops, y_val, prep, multilabel)
        state = {"epoch": 0, "planned": cfg["max_epochs"], "bad_epochs": 0, "epoch_seconds": None,
                 "best": {"epoch": 0, "accuracy": acc, "loss": loss, "model": _copy(model.state_dict())},
                 "history": [{"epoch": 0, "val_accuracy": acc, "val_loss": loss}]}
    seconds = lambda: base_seconds + time.monotonic() - run_start
    reserve = max(10.0, 0.02 * budget_s)  # time kept for writing the model after the last epoch
    stopped = "schedule"
    try:
        while state["epoch"] < state["planned"]:
            if seconds() + (state["epoch_seconds"] or 0) + reserve > budget_s:
                stopped = "budget"
                break
            began = time.monotonic()
            run_epoch(model, opt, train_items, y_train, state["epoch"], state["planned"], pool, prep, seed,
                      multilabel)
            acc, loss = evaluate(model, val_crops, y_val, prep, multilabel)
            state["epoch"] += 1
            state["epoch_seconds"] = time.monotonic() - began
            state["history"].append({"epoch": state["epoch"], "val_accuracy": acc, "val_loss": loss,
                                     "seconds": round(state["epoch_seconds"], 1)})
            # Without validation images (labels with under 5 images) the latest epoch is the best guess.
            if not val_crops or (acc, -loss) > (state["best"]["accuracy"], -state["best"]["loss"]):
                state["best"] = {"epoch": state["epoch"], "accuracy": acc, "loss": loss,
                                 "model": _copy(model.state_dict())}
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            # Fit the cosine schedule to the budget from the mean epoch time so far (one slow epoch on a
            # busy machine must not cut the schedule short).
            mean_epoch = np.mean([h["seconds"] for h in state["history"][1:]])
            fits = state["epoch"] + int((budget_s - reserve - seconds()) / mean_epoch)
            state["planned"] = max(state["epoch"], min(cfg["max_epochs"], fits))
            _save_checkpoint(workdir, ckpt, model, opt, state, seconds())
            progress("epoch", state["epoch"], state["planned"])
            if state["bad_epochs"] >= cfg["patience"]:
                stopped = "early"
                break
    except KeyboardInterrupt:
        _save_checkpoint(workdir, ckpt, model, opt, state, seconds())
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    model.load_state_dict(state["best"]["model"])
    return model.eval(), {"epochs": state["epoch"], "planned_epochs": state["planned"], "stopped": stopped,
                          "best_epoch": state["best"]["epoch"],
                          "best_val_accuracy": round(state["best"]["accuracy"], 4),
                          "best_val_loss": round(state["best"]["loss"], 4), "history": state["history"],
                          "seconds_total": seconds()}


def freeze_early_stages(features, stages: int) -> None:
    """Keep the stem and the first `stages` stages as pretrained: generic edges and textures that small
    data can only spoil, and the high-resolution layers whose activations cost most memory and time."""
    net = features.net
    frozen, widths = [net._conv_stem, net._bn0], []
    for block in net._blocks:
        if block._block_args.output_filters not in widths:  # a new stage starts
            widths.append(block._block_args.output_filters)
        if len(widths) > stages:
            break
        frozen.append(block)
    for module in frozen if stages else []:
        module.requires_grad_(False)


def learning_rate(t: float, planned: int) -> float:
    """Linear warm-up over the first epoch, then cosine decay to zero at `planned` epochs."""
    if t < 1:
        return BEST["lr"] * (0.1 + 0.9 * t)
    span = max(planned - 1, 1)
    return BEST["lr"] * 0.5 * (1 + np.cos(np.pi * min(t - 1, span) / span))


def run_epoch(model, opt, items, targets, epoch, planned, pool, prep, seed, multilabel) -> None:
    cfg = BEST
    model.train()
    if cfg["freeze_bn"]:  # 32-image batches give noisy statistics; the ImageNet ones transfer well
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    order = np.random.default_rng([seed, epoch]).permutation(len(items))

    def view(i):
        img = load_image(items[i][0], draft_size=prep.resize)
        rng = np.random.default_rng([seed, epoch, int(i)])  # same views after a resume
        return normalize(augment(img, prep.size, rng, cfg["min_scale"]), prep.mean, prep.std)

    size = cfg["batch_size"]
    n_batches = -(-len(items) // size)
    for b, arrays in enumerate(batches(pool, view, list(order), size)):
        for group in opt.param_groups:
            group["lr"] = learning_rate(epoch + b / n_batches, planned)
        x = torch.from_numpy(np.stack(arrays)).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(targets[order[b * size:(b + 1) * size]])
        loss = head_loss(model(x), y, multilabel, 0.0 if multilabel else cfg["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def evaluate(model, crops, targets, prep: Preprocessing, multilabel: bool) -> tuple[float, float]:
    """(accuracy, loss) on center crops; (0, 0) without validation images."""
    if not crops:
        return 0.0, 0.0
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(np.stack([normalize(c, prep.mean, prep.std)
                                                              for c in crops[i:i + 64]]))
                                  .contiguous(memory_format=torch.channels_last))
                            for i in range(0, len(crops), 64)])
        y = torch.from_numpy(targets)
        return round(accuracy(logits, y, multilabel), 4), round(float(head_loss(logits, y, multilabel)), 4)


def _copy(state_dict):
    return {k: v.detach().clone() for k, v in state_dict.items()}


def _fingerprint(backbone, preset, labels, multilabel, train_items, val_items, seed) -> str:
    key = [backbone, preset, labels, multilabel, [it[1] for it in train_items], [it[1] for it in val_items],
           seed, BEST if preset == "best" else QUICK]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_checkpoint(workdir, ckpt, model, opt, state, seconds) -> None:
    _atomic_save({"fingerprint": ckpt["fingerprint"], "epoch": state["epoch"], "seconds": seconds,
                  "head": ckpt["head"], "lp": ckpt["lp"], "model": model.state_dict(),
                  "optimizer": opt.state_dict(), "state": state}, Path(workdir) / "checkpoint.pt")


def _load_checkpoint(path: Path, fingerprint: str):
    """The checkpoint of this very run (same data, labels, preset, seed), else None: start afresh."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    return ckpt if isinstance(ckpt, dict) and ckpt.get("fingerprint") == fingerprint else None


def _save_calibration(workdir: Path, items, backbone: str) -> None:
    """Center crops (uint8 NHWC) of a spread of training images, for export's INT8 calibration."""
    prep = preprocessing_for(backbone)
    chosen = sorted(items, key=lambda it: it[1])[::max(1, len(items) // CALIBRATION_IMAGES)][:CALIBRATION_IMAGES]
    crops = np.stack([np.asarray(center_crop(resize_shorter(load_image(p, draft_size=prep.resize), prep.resize),
                                             prep.size)) for p, _, _ in chosen])
    tmp = Path(workdir) / f".calibration.{os.getpid()}.npy"
    np.save(tmp, crops)
    os.replace(tmp, Path(workdir) / "calibration.npy")


def _save_model(workdir, backbone, preset, labels, multilabel, head, features) -> None:
    _atomic_save({"format": 1, "backbone": backbone, "preset": preset, "labels": list(labels),
                  "multilabel": multilabel, "preprocessing": asdict(preprocessing_for(backbone)),
                  "head": head.state_dict(), "features": None if features is None else features.state_dict()},
                 Path(workdir) / "model.pt")
