"""`vertex:<dataset id | projects/…/locations/…/datasets/ID>` as a dataset source: a managed image dataset's
images (gs:// URIs), labels and ML-use splits, read through the dataset's export.

Export is the service's documented way out of a managed dataset: JSON lines per annotation set, in the
import format, with each item's `aiplatform.googleapis.com/ml_use`. They are written under
vertex.staging_bucket (exports/<dataset id>/) and removed once read; image bytes come from Cloud Storage.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections import defaultdict

from ...data.sources.remote import RemoteImage
from ...errors import ConfigError, DataError, ImgclsError
from .settings import Settings, resolve, staging

_RESOURCE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/datasets/([0-9]+)$")
_ID = re.compile(r"^[0-9]+$")
_GS = re.compile(r"^gs://([^/]+)/(.+)$")
ML_USE = "aiplatform.googleapis.com/ml_use"
SPLITS = {"training": "train", "validation": "validation", "test": "test"}
IMAGE_SCHEMA = "/metadata/image_1.0.0.yaml"
DATASETS_HINT = "list them with `gcloud ai datasets list --region=LOCATION`; check vertex.project and vertex.location"


def list_images(ref: str, cfg) -> tuple[list[RemoteImage], str]:
    """Every data item of the dataset (untagged ones with no labels) and its task type."""
    source = f"vertex:{ref}"
    settings, name, dataset_id = _target(ref.strip(), cfg, source)
    from .client import VertexClient  # the SDK (1-1.5 s to import) only once a vertex: source is read

    client = VertexClient(settings)
    name = name or f"{client.parent}/datasets/{dataset_id}"
    dataset = client.get_dataset(name)
    if dataset is None:
        raise DataError(f"{source}: Vertex AI has no dataset {name}", hint=DATASETS_HINT)
    if not str(dataset.get("metadataSchemaUri", "")).endswith(IMAGE_SCHEMA):
        raise DataError(f"{source}: dataset {dataset.get('displayName', name)} is not an image dataset "
                        f"({dataset.get('metadataSchemaUri')})", hint="give the id of an image dataset")
    lines = _export(client, settings, name, dataset_id, source)
    return _images(client, lines, source)


def _target(ref: str, cfg, source: str) -> tuple[Settings, str | None, str]:
    """(settings, the dataset's resource name when given in full, its id)."""
    settings = resolve(cfg if cfg is not None else _default_config())
    m = _RESOURCE.match(ref)
    if m:
        # The resource name says where the dataset lives; the endpoint follows its region.
        project, location, dataset_id = m.groups()
        settings = dataclasses.replace(settings, project=settings.project or project, location=location)
        return settings, ref, dataset_id
    if not _ID.match(ref):
        raise DataError(f"{source}: not a Vertex AI dataset id or resource name",
                        hint="write vertex:1234567890 (the dataset's numeric id) or "
                             "vertex:projects/PROJECT/locations/REGION/datasets/ID")
    return settings, None, ref


def _default_config():
    # Without a config file the vertex: section's defaults apply (project from GOOGLE_CLOUD_PROJECT or the
    # credentials, location us-central1), as they do for the provider.
    from ...config import RunConfig
    return RunConfig.model_validate({"name": "vertex-source", "provider": "vertex",
                                     "dataset": {"source": "vertex:"}})


def _export(client, settings: Settings, name: str, dataset_id: str, source: str) -> dict[str, list[dict]]:
    """The export's JSON lines by annotation set (the folder each file is in); the export is removed after."""
    try:
        bucket, _ = staging(settings.staging_bucket)
    except ConfigError as exc:
        raise ConfigError(f"{source} is read through a dataset export, written under vertex.staging_bucket: "
                          f"{exc.message}", hint="set vertex.staging_bucket: gs://YOUR-BUCKET/imgcls (a bucket the "
                                                 "credentials may write; the export is deleted once read)") from None
    prefix = settings.gs("exports", dataset_id) + "/"
    from .client import Missing  # imported with the SDK, already loaded by the caller

    pending = client.export_data(name, prefix)
    try:
        response = pending.result()
    except Missing as exc:   # the dataset was there a moment ago: what is missing is the bucket
        raise ConfigError(f"{source}: Vertex AI could not export the dataset to {prefix}: {exc.message}",
                          hint="vertex.staging_bucket must name an existing bucket the Vertex AI service agent "
                               "may write") from None
    folder = pending.metadata().get("gcsOutputDirectory") or ""
    try:
        by_set: dict[str, list[dict]] = defaultdict(list)
        for uri in response.get("exportedFiles") or []:
            file_bucket, file_name = _split(uri, source)
            text = client.download(file_bucket, file_name).decode("utf-8-sig")
            annotation_set = file_name.rsplit("/", 2)[-2] if file_name.count("/") >= 1 else ""
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        by_set[annotation_set].append(json.loads(line))
                    except ValueError:
                        raise DataError(f"{source}: line {n} of the export {uri} is not JSON") from None
        return by_set
    finally:
        _remove(client, bucket, folder or prefix)


def _remove(client, bucket: str, folder: str) -> None:
    """Delete what the export wrote (best effort: a leftover export is a few small text files)."""
    m = _GS.match(folder)
    if not m or m.group(1) != bucket:
        return
    try:
        for object_name in sorted(client.list_names(bucket, m.group(2))):
            client.delete_object(bucket, object_name)
    except ImgclsError as exc:  # reading the dataset worked; a cleanup failure is only reported
        print(f"vertex: could not remove the dataset export under {folder}: {exc.message}", file=sys.stderr)


def _images(client, by_set: dict[str, list[dict]], source: str) -> tuple[list[RemoteImage], str]:
    labelled = {s: lines for s, lines in by_set.items() if any(_labels(x) for x in lines)}
    if len(labelled) > 1:
        raise DataError(f"{source}: the dataset has {len(labelled)} annotation sets with labels "
                        f"({', '.join(sorted(labelled))}); imgcls reads one",
                        hint="keep one annotation set with classification labels (or import the export of "
                             "the set you want as a JSONL file)")
    annotation_set, lines = next(iter(labelled.items())) if labelled else next(iter(by_set.items()), ("", []))
    multilabel = "multi_label" in annotation_set or any("classificationAnnotations" in x for x in lines)
    images, seen = [], set()
    for line in lines:
        uri = line.get("imageGcsUri")
        if not isinstance(uri, str) or uri in seen:
            continue
        seen.add(uri)
        bucket, object_name = _split(uri, source)
        use = (line.get("dataItemResourceLabels") or {}).get(ML_USE)
        images.append(RemoteImage(uri=uri, labels=_labels(line), split=SPLITS.get(str(use).lower()),
                                  read=lambda b=bucket, o=object_name: client.download(b, o)))
    return images, "multilabel" if multilabel else "multiclass"


def _labels(line: dict) -> tuple[str, ...]:
    notes = line.get("classificationAnnotations")
    if notes is None:
        notes = [line["classificationAnnotation"]] if line.get("classificationAnnotation") else []
    return tuple(dict.fromkeys(str(n["displayName"]) for n in notes if isinstance(n, dict) and n.get("displayName")))


def _split(uri: str, source: str) -> tuple[str, str]:
    m = _GS.match(uri)
    if not m:
        raise DataError(f"{source}: the export lists {uri!r}, not a gs:// URI")
    return m.group(1), m.group(2)
