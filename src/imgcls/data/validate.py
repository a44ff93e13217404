"""Offline checks of a manifest before anything is uploaded: always-on checks plus a provider's Limits.

Each finding names the image and the fix. `clean()` drops what the findings say must go, never
touching the user's files.
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..providers.base import Limits


@dataclass(frozen=True)
class Finding:
    level: str          # "error" | "warning"
    code: str
    message: str
    fix: str
    files: tuple[str, ...] = ()
    label: str | None = None
    drop: tuple[str, ...] = ()   # uris --fix removes
    merge: tuple[tuple[str, str], ...] = ()  # (label, into): labels --fix renames

    def to_json(self) -> dict:
        d = asdict(self)
        d["files"], d["drop"] = list(self.files), list(self.drop)
        d["merge"] = [list(m) for m in self.merge]
        return d


def decode_error(uri: str) -> str | None:
    """Why a local image cannot be used, or None. Decodes fully: truncated files fail here, not in training."""
    if "://" in uri:
        return None
    try:
        with open(uri, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if not data:
        return "empty file (0 bytes)"
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


def check(df: pd.DataFrame, limits: Limits, provider: str, multilabel: bool,
          remote_uris: tuple[str, ...] | None = None) -> list[Finding]:
    """Every finding about `df` for `provider`; `remote_uris` defaults to the schemes the provider declares."""
    if remote_uris is None:
        from ..providers import registry
        remote_uris = registry.get(provider).capabilities.remote_uris
    found: list[Finding] = []
    found += _remote(df, provider, remote_uris)
    found += _unreadable(df)
    found += _case_twins(df)
    found += _unlabelled(df, multilabel)
    found += _duplicates(df)
    found += _label_counts(df, limits, provider)
    found += _training_counts(df)
    found += _limits(df, limits, provider)
    return _fold_warnings(found)


def _fold_warnings(found: list[Finding], keep: int = 3) -> list[Finding]:
    """Many warnings of one kind become one line naming a few files and the count (errors stay one by one)."""
    out, by_code = [], {}
    for f in found:
        if f.level == "warning":
            by_code.setdefault(f.code, []).append(f)
        else:
            out.append(f)
    for code, group in by_code.items():
        if len(group) <= keep:
            out += group
            continue
        files = tuple(x for f in group for x in f.files)
        first = group[0]
        # "uri: what is wrong" reads as "what is wrong" once the uris are listed; other messages stay whole
        example = first.message.removeprefix(f"{first.files[0]}: ") if first.files else first.message
        out.append(Finding("warning", code, f"{len(group)} findings, e.g. {', '.join(files[:keep])}: {example}",
                           first.fix, files=files, drop=tuple(u for f in group for u in f.drop)))
    return out


def _unreadable(df: pd.DataFrame) -> list[Finding]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = list(pool.map(decode_error, df["uri"]))
    origins = df.attrs.get("origins", {})
    out = []
    for uri, err in zip(df["uri"], errors):
        if err is None:
            continue
        code = "empty-file" if err.startswith("empty") else ("missing-file" if "not found" in err else "corrupt-image")
        where = f" (listed at {origins[uri]})" if uri in origins else ""
        out.append(Finding("error", code, f"{uri}: {err}{where}",
                           "replace or delete the file, or run `imgcls validate --fix` to leave it out",
                           files=(uri,), drop=(uri,)))
    return out


def _remote(df: pd.DataFrame, provider: str, schemes: tuple[str, ...]) -> list[Finding]:
    """URIs the provider cannot read: refused now, not when training fails on them."""
    origins = df.attrs.get("origins", {})
    out = []
    for uri in df["uri"]:
        if "://" not in uri:
            continue
        scheme = uri.split("://", 1)[0].lower()
        if scheme in schemes:
            continue
        where = f"{origins[uri]}: " if uri in origins else ""
        can = (f"it reads {', '.join(s + '://' for s in schemes)} and local files" if schemes
               else "it reads local files only")
        out.append(Finding("error", "remote-uri", f"{where}{uri}: {provider} cannot read {scheme}:// URIs; {can}",
                           "download the images and list their local paths (or use a provider that reads "
                           f"{scheme}://); --fix leaves the row out", files=(uri,), drop=(uri,)))
    return out


def _case_twins(df: pd.DataFrame) -> list[Finding]:
    """Labels that differ only in case (Cat/, cat/) are one label a person typed twice."""
    uris: dict[str, list[str]] = {}
    for uri, labels in zip(df["uri"], df["labels"]):
        for label in labels:
            uris.setdefault(label, []).append(uri)
    by_fold: dict[str, list[str]] = {}
    for label in sorted(uris):
        by_fold.setdefault(label.casefold(), []).append(label)
    out = []
    for twins in by_fold.values():
        if len(twins) < 2:
            continue
        # the spelling with the most images wins; on a tie, the lower-case one
        into = min(twins, key=lambda l: (-len(uris[l]), l != l.lower(), l))
        where = " and ".join(f"{_label_folder(l, uris[l])} ({len(uris[l])} images)" for l in twins)
        out.append(Finding("error", "case-twin-labels",
                           f"labels {' and '.join(repr(l) for l in twins)} differ only in case: {where}",
                           f"rename the folders (or labels) to one spelling, or run `imgcls validate --fix` to "
                           f"merge them into '{into}'", files=tuple(u for l in twins for u in uris[l][:1]),
                           label=into, merge=tuple((l, into) for l in twins if l != into)))
    return out


def _label_folder(label: str, uris: list[str]) -> str:
    """The folder a label's images are in, when it is named after the label (a folder dataset), else the label."""
    folders = sorted({str(p) for u in uris if "://" not in u for p in Path(u).parents if p.name == label})
    if not folders:
        return f"label '{label}'"
    return folders[0] + "/" + (f" (and {len(folders) - 1} more)" if len(folders) > 1 else "")


def _unlabelled(df: pd.DataFrame, multilabel: bool) -> list[Finding]:
    out = []
    for uri, labels in zip(df["uri"], df["labels"]):
        if not labels:
            out.append(Finding("error", "no-label", f"{uri}: image has no label",
                               "put it in a <label>/ folder or give it a label in the import file; --fix leaves it out",
                               files=(uri,), drop=(uri,)))
        elif not multilabel and len(labels) > 1:
            out.append(Finding("error", "several-labels",
                               f"{uri}: {len(labels)} labels ({', '.join(labels)}) in a multiclass task",
                               "set `task: multilabel`, or keep one label per image; --fix leaves it out",
                               files=(uri,), drop=(uri,)))
    return out


def _duplicates(df: pd.DataFrame) -> list[Finding]:
    out = []
    known = df[df["sha256"].notna()]
    for _, group in known.groupby("sha256", sort=True):
        if len(group) < 2:
            continue
        uris = tuple(group["uri"])
        splits = sorted(set(group["split"].dropna()))
        labelsets = {tuple(l) for l in group["labels"]}
        if len(splits) > 1:
            out.append(Finding("error", "duplicate-across-splits",
                               f"the same image is in {' and '.join(splits)}: {', '.join(uris)}",
                               "an image must be in one split only; --fix keeps the first copy",
                               files=uris, drop=uris[1:]))
        elif len(labelsets) > 1:
            out.append(Finding("error", "duplicate-conflicting-labels",
                               f"the same image has different labels: {', '.join(uris)}",
                               "delete all but one copy, with the right label; --fix keeps the first copy",
                               files=uris, drop=uris[1:]))
        else:
            # Same bytes, same label, same split: harmless to most trainers (it only weighs double), and
            # common in scraped data, so a warning; Custom Vision's own duplicate answer is handled at upload.
            out.append(Finding("warning", "duplicate", f"exact duplicate images: {', '.join(uris)}",
                               "delete the extra copies (they count twice in training); "
                               "--fix keeps the first copy", files=uris, drop=uris[1:]))
    return out


def _label_counts(df: pd.DataFrame, limits: Limits, provider: str) -> list[Finding]:
    out = []
    counts: dict[str, list[str]] = {}
    for uri, labels in zip(df["uri"], df["labels"]):
        for label in labels:
            counts.setdefault(label, []).append(uri)
    need = max(limits.min_images_per_label, 2)
    for label, uris in sorted(counts.items()):
        if len(uris) < need:
            why = f"{provider} needs at least {limits.min_images_per_label}" if limits.min_images_per_label >= 2 \
                else "a label needs images to train and to test on"
            out.append(Finding("error", "too-few-images",
                               f"label '{label}' has {len(uris)} image{'s' if len(uris) != 1 else ''}; {why}",
                               f"add at least {need - len(uris)} more '{label}' images, or remove the label "
                               "(--fix leaves its images out)", files=tuple(uris), label=label, drop=tuple(uris)))
        if limits.max_label_length and len(label) > limits.max_label_length:
            out.append(Finding("error", "label-too-long",
                               f"label '{label}' is {len(label)} characters; {provider} allows {limits.max_label_length}",
                               "rename the label folder (or the label in the import file)", label=label))
    if limits.max_labels and len(counts) > limits.max_labels:
        out.append(Finding("error", "too-many-labels", f"{len(counts)} labels; {provider} allows {limits.max_labels}",
                           "merge or drop labels"))
    if len(counts) == 1:
        out.append(Finding("error", "one-label", "only one label: a classifier needs two or more",
                           "add images of at least one more label"))
    return out


def _training_counts(df: pd.DataFrame) -> list[Finding]:
    """A label with images but none (or one) in the train split: it would be scored but never learnt,
    as when a test/ folder has a label that train/ lacks, or split fractions leave almost nothing."""
    if "split" not in df or df["split"].isna().all():
        return []
    splits: dict[str, dict[str, list[str]]] = {}
    for uri, labels, split in zip(df["uri"], df["labels"], df["split"]):
        for label in labels:
            splits.setdefault(label, {}).setdefault(split or "train", []).append(uri)
    out = []
    for label, by_split in sorted(splits.items()):
        n_train = len(by_split.get("train", []))
        elsewhere = ", ".join(f"{len(uris)} in {split}" for split, uris in sorted(by_split.items()) if split != "train")
        if n_train == 0:
            uris = tuple(u for group in by_split.values() for u in group)
            out.append(Finding("error", "no-training-images", f"label '{label}' has no training images ({elsewhere})",
                               f"add '{label}' images to the training data (e.g. a train/{label}/ folder), or remove "
                               "the label (--fix leaves its images out)", files=uris, label=label, drop=uris))
        elif n_train == 1 and elsewhere:
            out.append(Finding("warning", "one-training-image", f"label '{label}' has 1 training image ({elsewhere})",
                               "lower split.validation / split.test, or add images of the label",
                               files=tuple(by_split["train"]), label=label))
    return out


def _limits(df: pd.DataFrame, limits: Limits, provider: str) -> list[Finding]:
    out = []
    if limits.max_images and len(df) > limits.max_images:
        out.append(Finding("error", "too-many-images", f"{len(df)} images; {provider} allows {limits.max_images}",
                           "sample the dataset down"))
    for row in df.itertuples(index=False):
        if row.format and limits.formats and row.format not in limits.formats:
            out.append(Finding("error", "format", f"{row.uri}: {row.format.upper()} is not accepted by {provider}",
                               f"convert it to one of: {', '.join(f.upper() for f in limits.formats)}",
                               files=(row.uri,), drop=(row.uri,)))
        if limits.max_file_bytes and row.bytes and row.bytes > limits.max_file_bytes:
            mb = limits.max_file_bytes / 1e6
            if limits.downscales_large_files:
                out.append(Finding("warning", "large-file",
                                   f"{row.uri}: {row.bytes / 1e6:.1f} MB is over {provider}'s {mb:g} MB; "
                                   "it will be re-encoded smaller before upload", "nothing to do", files=(row.uri,)))
            else:
                out.append(Finding("error", "large-file",
                                   f"{row.uri}: {row.bytes / 1e6:.1f} MB is over {provider}'s {mb:g} MB limit",
                                   "downscale or re-encode it", files=(row.uri,), drop=(row.uri,)))
        if row.width and limits.min_side and min(row.width, row.height) < limits.min_side:
            out.append(Finding("warning", "small-image",
                               f"{row.uri}: {row.width}x{row.height} is below {provider}'s {limits.min_side} px; "
                               "the service scales it up, which costs accuracy", "use larger images",
                               files=(row.uri,)))
        if row.width and limits.max_side and max(row.width, row.height) > limits.max_side:
            out.append(Finding("warning" if limits.downscales_large_files else "error", "large-image",
                               f"{row.uri}: {row.width}x{row.height} is over {provider}'s {limits.max_side} px",
                               "downscale it", files=(row.uri,)))
    return out


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def clean(df: pd.DataFrame, findings: list[Finding]) -> tuple[pd.DataFrame, list[str]]:
    """The manifest without the images the findings drop (errors, and extra copies of duplicates), with
    labels that differ only in case merged."""
    drop = {u for f in findings for u in f.drop}
    kept = df[~df["uri"].isin(drop)].reset_index(drop=True)
    rename = {label: into for f in findings for label, into in f.merge}
    if rename:
        kept["labels"] = kept["labels"].map(lambda ls: sorted({rename.get(l, l) for l in ls}))
    return kept, sorted(drop)
