"""dataset-import on Azure ML: train+validation images into the workspace's default datastore under
content-addressed names (imgcls/images/<sha256><ext>, uploaded once for every run), the run's JSONL +
MLTable per split under imgcls/runs/<run>/, each split registered as an MLTable data asset. The test
split stays here: evaluate scores it through the endpoint, the same images on every provider."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ...data import exporters
from ...errors import DataError
from ...runs import atomic_write
from ..base import DatasetRef
from . import naming

UPLOAD_THREADS = 8
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
BY_FORMAT = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "gif": ".gif", "tiff": ".tiff", "webp": ".webp"}
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
                 ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp"}
SPLITS = ("train", "validation")


def suffix_of(uri: str, fmt: str | None) -> str:
    suffix = Path(uri).suffix.lower()
    return suffix if suffix in SUFFIXES else BY_FORMAT.get((fmt or "").lower(), ".jpg")


def record_path(run) -> Path:
    return run.file("artifacts", "azureml", "uploaded_images.json")


def upload(provider, manifest, labels: list[str]) -> DatasetRef:
    client, run, progress, config = provider.client, provider.run, provider.progress, provider.config
    rows = manifest[manifest["split"].isin(SPLITS)]
    remote = [u for u in rows["uri"] if "://" in u]
    foreign = [u for u in remote if not u.startswith("azureml://")]
    if foreign:
        raise DataError(f"Azure ML reads training images from its datastores; {len(foreign)} rows are other URIs, "
                        f"e.g. {foreign[0]}", hint="download them and point dataset.source at the local copies, "
                                                   "or list azureml://datastores/<name>/paths/… URIs")
    if not (rows["split"] == "train").any():
        raise DataError("the train split is empty", hint="give more images, or lower split.validation/split.test")

    ds = client.default_datastore()
    account_url = (config.azureml.storage_account_url
                   or f"{ds['protocol']}://{ds['account']}.blob.{ds['endpoint']}").rstrip("/")
    container = client.container(account_url, ds["container"], ds["credential"])
    where = {"container": ds["container"], "account_url": account_url, "datastore": ds["name"]}

    # Recorded before anything goes up, so `down` finds what an interrupted import left behind.
    run.record("blob", naming.IMAGES_PREFIX, **where, shared=True, record=str(record_path(run)))
    wanted = {}                                          # blob name -> local path
    for uri, sha, fmt in zip(rows["uri"], rows["sha256"], rows["format"]):
        if "://" not in uri:
            wanted[naming.image_blob(sha, suffix_of(uri, fmt))] = uri
    present = client.blob_names(container, naming.IMAGES_PREFIX)
    todo = sorted(set(wanted) - present)
    progress.log(f"uploading {len(todo)} of {len(wanted)} train+validation images to {account_url}/"
                 f"{ds['container']}/{naming.IMAGES_PREFIX} ({len(wanted) - len(todo)} already there); "
                 f"{int((manifest['split'] == 'test').sum())} test images stay local")
    uploaded = _upload_images(client, container, progress, {n: wanted[n] for n in todo}, run)

    def uri_of(row) -> str:
        if "://" in row["uri"]:
            return row["uri"]
        return f"azureml://datastores/{ds['name']}/paths/{naming.image_blob(row['sha256'], suffix_of(row['uri'], row['format']))}"

    prefix = naming.run_prefix(run)
    run.record("blob", prefix, **where)
    assets, version = {}, naming.data_version(run)
    for split in SPLITS:
        part = rows[rows["split"] == split]
        if part.empty:
            progress.log(f"no {split} images: AutoML holds out part of the training data instead")
            continue
        files = {f"{split}.jsonl": exporters.azureml_jsonl(part, uri_of, config.multilabel),
                 "MLTable": exporters.mltable(f"{split}.jsonl")}
        for fname, text in files.items():
            atomic_write(run.file("artifacts", "azureml", split, fname), text)
            client.put_blob(container, f"{prefix}{split}/{fname}", text.encode(),
                            "application/jsonl" if fname.endswith(".jsonl") else "text/yaml", overwrite=True)
        name = naming.data_asset(config.name, split)
        # The version is the run's own (its short id): one already there was registered by this run
        # before it stopped. Asset versions are immutable, so a resumed import skips it.
        if not client.data_exists(name, version):
            run.intend("data", name, version=version, split=split)
            client.register_data(name, version, f"azureml://datastores/{ds['name']}/paths/{prefix}{split}/",
                                 description=f"imgcls {split} split of run {run.id} ({len(part)} images)",
                                 tags={"imgcls.run": run.id, "imgcls.split": split})
        run.record("data", f"{name}:{version}", name=name, version=version, split=split)
        assets[split] = f"azureml:{name}:{version}"
        progress.log(f"registered data asset {name}:{version} ({len(part)} {split} images)")

    return DatasetRef(provider.name, assets["train"], len(manifest), labels, extra={
        "datastore": ds["name"], "container": ds["container"], "account_url": account_url,
        "train": assets["train"], "validation": assets.get("validation"), "prefix": prefix,
        "uploaded": len(uploaded), "already": len(wanted) - len(todo), "remote": len(remote),
        "test_images_kept_local": int((manifest["split"] == "test").sum())})


def _upload_images(client, container, progress, todo: dict[str, str], run) -> list[str]:
    """Parallel uploads; the names this run put there are written down (for keep_images: false) even
    when an upload fails half-way."""
    done: list[str] = []
    total = len(todo)

    def put(name: str, path: str) -> tuple[str, bool]:
        data = Path(path).read_bytes()
        return name, client.put_blob(container, name, data, CONTENT_TYPES.get(Path(name).suffix, "image/jpeg"))

    try:
        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            futures = [pool.submit(put, name, path) for name, path in todo.items()]
            for n, future in enumerate(as_completed(futures), 1):
                name, created = future.result()
                if created:
                    done.append(name)
                progress.advance("uploading", n, total)
    finally:
        previous = json.loads(record_path(run).read_text())["uploaded"] if record_path(run).exists() else []
        atomic_write(record_path(run), json.dumps({"uploaded": sorted(set(previous) | set(done))}, indent=1))
    return done
