"""Deterministic train/validation/test splits from content hash and seed.

An image's place depends only on its bytes, its labels and the seed: the same config and data give
the same split on every provider and machine, identical images always land together, and adding
images never moves existing ones between test and train more than stratification needs.
"""
from __future__ import annotations

import hashlib

import pandas as pd


def _score(sha256: str | None, uri: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sha256 or uri}".encode()).hexdigest()


def assign(df: pd.DataFrame, validation: float, test: float, seed: int = 0) -> pd.DataFrame:
    """Fill the split of rows that have none, stratified by label set.

    Rows whose split came from the source (a test/ folder, ML_USE) keep it. When the source named
    a test split, no further test images are drawn; likewise for validation.
    """
    df = df.copy()
    given = set(df["split"].dropna())
    test_frac = 0.0 if "test" in given else test
    val_frac = 0.0 if "validation" in given else validation
    from_source = df["split"].notna()
    # Images the source marked "train" may still give up a validation (and test) share.
    open_rows = df[~from_source | (df["split"] == "train")]
    df.loc[~from_source, "split"] = "train"
    groups = open_rows.groupby(open_rows["labels"].map(lambda ls: "\x1f".join(ls)), sort=True)
    for _, group in groups:
        order = sorted(group.index, key=lambda i: _score(df.at[i, "sha256"], df.at[i, "uri"], seed))
        n = len(order)
        n_test = _take(n, test_frac)
        n_val = _take(n - n_test, val_frac / (1 - test_frac) if test_frac < 1 else 0.0)
        for k, idx in enumerate(order):
            if k < n_test:
                df.at[idx, "split"] = "test"
            elif k < n_test + n_val:
                df.at[idx, "split"] = "validation"
    return _same_image_same_split(df, ~from_source)


def _take(n: int, frac: float) -> int:
    """Round, but keep at least one image on each side when a group has two or more."""
    if frac <= 0 or n < 2:
        return 0
    return min(max(1, round(n * frac)), n - 1)


def _same_image_same_split(df: pd.DataFrame, assigned: pd.Series) -> pd.DataFrame:
    """Copies of one image that we placed go together, so none is both trained and tested on.

    Copies placed apart by the source itself are left for validation to report.
    """
    rank = {"test": 0, "validation": 1, "train": 2}
    for _, group in df[df["sha256"].notna() & assigned].groupby("sha256"):
        if group["split"].nunique() > 1:
            keep = min(group["split"], key=rank.get)
            df.loc[group.index, "split"] = keep
    return df
