"""Datasets: create, get, list, delete, and import of image classification files from the fake GCS.

Import reads CSV (`[ML_USE,]GCS_URI,LABEL[,LABEL...]`) or JSONL lines as the Vertex ioformat
schemas define them, checks that every image exists and decodes, and reports bad lines as
the operation's partial failures, like the service.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import json

from tests.fakes.toymodel import is_image
from tests.fakes.vertex.state import ApiError, DataItem, Dataset, matches_filter, now, ordered, page

SCHEMA = "gs://google-cloud-aiplatform/schema/dataset/"
IMAGE_METADATA = SCHEMA + "metadata/image_1.0.0.yaml"
SINGLE_LABEL = SCHEMA + "ioformat/image_classification_single_label_io_format_1.0.0.yaml"
MULTI_LABEL = SCHEMA + "ioformat/image_classification_multi_label_io_format_1.0.0.yaml"
ML_USE = "aiplatform.googleapis.com/ml_use"
ML_USES = {"training", "validation", "test"}
MAX_IMAGE_BYTES = 30 * 1024 * 1024
# An export writes one folder per annotation set, named after the schema's title and version.
SET_TITLES = {SINGLE_LABEL: "image_classification_single_label_1.0.0",
              MULTI_LABEL: "image_classification_multi_label_1.0.0"}
ANNOTATION_SCHEMA = "image_classification_1.0.0.yaml"


def get(fake, dataset_id: str) -> Dataset:
    dataset = fake.state.datasets.get(dataset_id)
    if dataset is None:
        raise ApiError("NOT_FOUND", f"The Dataset does not exist: "
                                    f"{fake.state.parent}/datasets/{dataset_id}")
    return dataset


def create(fake, req, m):
    body = req.json()
    if not body.get("displayName"):
        raise ApiError("INVALID_ARGUMENT", "Dataset.display_name is required.")
    if body.get("metadataSchemaUri") != IMAGE_METADATA:
        # The real service knows tabular, text and video too; this fake only does images.
        raise ApiError("INVALID_ARGUMENT", f"fake Vertex supports only {IMAGE_METADATA}, "
                                           f"got {body.get('metadataSchemaUri')!r}.")
    dataset_id = fake.state.new_id()
    name = f"{fake.state.parent}/datasets/{dataset_id}"
    stamp = now()
    resource = {"name": name, "displayName": body["displayName"], "metadataSchemaUri": IMAGE_METADATA,
                "metadata": {"dataItemSchemaUri": SCHEMA + "dataitem/image_1.0.0.yaml"},
                "labels": body.get("labels", {}), "createTime": stamp, "updateTime": stamp,
                "etag": "AMEw9yN", "dataItemCount": "0"}
    if body.get("description"):
        resource["description"] = body["description"]
    if body.get("encryptionSpec"):
        resource["encryptionSpec"] = body["encryptionSpec"]
    fake.state.datasets[dataset_id] = Dataset(resource)
    return fake.state.operation(name, "CreateDatasetOperationMetadata",
                                response=resource, response_type="Dataset")


def read(fake, req, m):
    return get(fake, m["id"]).resource


def list_(fake, req, m):
    found = [d.resource for d in fake.state.datasets.values()
             if matches_filter(d.resource, req.query.get("filter"))]
    return page(ordered(found, req.query), req.query, "datasets")


def delete(fake, req, m):
    dataset = get(fake, m["id"])
    del fake.state.datasets[m["id"]]
    return fake.state.operation(dataset.resource["name"], "DeleteOperationMetadata")


def import_data(fake, req, m):
    dataset = get(fake, m["id"])
    configs = req.json().get("importConfigs") or []
    if not configs:
        raise ApiError("INVALID_ARGUMENT", "import_configs is required.")
    failures, imported = [], 0
    for config in configs:
        schema = config.get("importSchemaUri")
        if schema not in (SINGLE_LABEL, MULTI_LABEL):
            raise ApiError("INVALID_ARGUMENT", f"fake Vertex imports only image classification "
                                               f"(single/multi label) files, got {schema!r}.")
        uris = (config.get("gcsSource") or {}).get("uris") or []
        if not uris:
            raise ApiError("INVALID_ARGUMENT", "gcs_source.uris is required.")
        base_labels = dict(config.get("dataItemLabels") or {})
        for source in _expand(fake, uris):
            for line_no, row in _rows(fake.gcs.read(source), source):
                try:
                    uri, labels, resource_labels = _parse(row, schema == MULTI_LABEL)
                    _check_image(fake, uri)
                except ApiError as e:
                    failures.append({"code": e.grpc_code, "message": f"{source} line {line_no}: {e.message}"})
                    continue
                _add(fake, dataset, uri, labels, {**base_labels, **resource_labels}, SET_TITLES[schema])
                imported += 1
    dataset.resource["dataItemCount"] = str(len(dataset.items))
    dataset.resource["updateTime"] = now()
    error = None
    if not imported:
        error = ApiError("INVALID_ARGUMENT", "No valid data items were found in the import files"
                         + (f"; first error: {failures[0]['message']}" if failures else "."))
    return fake.state.operation(dataset.resource["name"], "ImportDataOperationMetadata",
                                response_type="ImportDataResponse", error=error,
                                partial_failures=failures)


def _expand(fake, uris: list[str]) -> list[str]:
    """Import uris may hold wildcards; each must match at least one object."""
    sources = []
    for uri in uris:
        if "*" in uri or "?" in uri:
            bucket, pattern = fake.gcs.split(uri)
            found = [f"gs://{bucket}/{n}" for n in sorted(fake.gcs.buckets.get(bucket, {}))
                     if fnmatch.fnmatchcase(n, pattern)]
        else:
            found = [uri] if fake.gcs.exists(uri) else []
        if not found:
            raise ApiError("NOT_FOUND", f"No files found matching {uri}.")
        sources.extend(found)
    return sources


def _rows(data: bytes, source: str):
    """(line number, CSV fields or JSON object) for each non-blank line of an import file."""
    text = data.decode("utf-8-sig")
    if source.endswith(".jsonl") or text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except ValueError:
                    yield n, ["<invalid JSON>"]
    else:
        for n, fields in enumerate(csv.reader(io.StringIO(text)), 1):
            if any(f.strip() for f in fields):
                yield n, [f.strip() for f in fields]


def _parse(row, multi_label: bool) -> tuple[str, list[str], dict[str, str]]:
    if isinstance(row, dict):
        uri = row.get("imageGcsUri")
        if multi_label:
            annotations = row.get("classificationAnnotations") or []
        else:
            one = row.get("classificationAnnotation")
            annotations = [one] if one else []
        labels = [a.get("displayName", "") for a in annotations]
        resource_labels = dict(row.get("dataItemResourceLabels") or {})
    else:
        fields = list(row)
        resource_labels = {}
        if fields and not fields[0].startswith("gs://"):
            resource_labels[ML_USE] = fields.pop(0).lower()
        uri, labels = (fields[0] if fields else None), [f for f in fields[1:] if f]
    if not uri or not str(uri).startswith("gs://"):
        raise ApiError("INVALID_ARGUMENT", f"Invalid image uri {uri!r}.")
    if resource_labels.get(ML_USE, "training") not in ML_USES:
        raise ApiError("INVALID_ARGUMENT", f"Invalid ml_use {resource_labels[ML_USE]!r}.")
    if not multi_label and len(labels) > 1:
        raise ApiError("INVALID_ARGUMENT", f"{uri} has {len(labels)} labels in a single-label import.")
    if any(not label for label in labels):
        raise ApiError("INVALID_ARGUMENT", f"{uri} has an empty label.")
    return uri, labels, resource_labels


def _check_image(fake, uri: str):
    if not fake.gcs.exists(uri):
        raise ApiError("NOT_FOUND", f"Image {uri} does not exist.")
    data = fake.gcs.read(uri)
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError("INVALID_ARGUMENT", f"Image {uri} is larger than 30 MB.")
    if not is_image(data):
        raise ApiError("INVALID_ARGUMENT", f"Image {uri} is not a valid image.")


def _add(fake, dataset: Dataset, uri: str, labels: list[str], resource_labels: dict, label_set: str):
    for label in labels:
        if label not in dataset.specs:
            dataset.specs[label] = fake.state.new_id()
    item = dataset.items.get(uri)
    if item is None:
        item = dataset.items[uri] = DataItem(fake.state.new_id(), uri, labels, resource_labels, now())
    else:  # importing the same image again updates it rather than duplicating it
        item.labels = sorted(set(item.labels) | set(labels))
        item.resource_labels.update(resource_labels)
    dataset.sets.setdefault(label_set, fake.state.new_id())
    if labels or label_set not in item.label_sets:
        # a single-label set keeps the latest label of an image; a multi-label set gathers them
        known = item.label_sets.get(label_set, []) if label_set == SET_TITLES[MULTI_LABEL] else []
        item.label_sets[label_set] = sorted(set(known) | set(labels))


def export_data(fake, req, m):
    """ExportData: one folder per annotation set under gcsDestination.outputUriPrefix, each with its JSON
    lines in the set's import/export format (image URI, annotation(s), the item's resource labels, ml_use
    among them) and a schema.yaml; the operation's response lists the data files."""
    dataset = get(fake, m["id"])
    config = req.json().get("exportConfig") or {}
    prefix = (config.get("gcsDestination") or {}).get("outputUriPrefix") or ""
    if not prefix:
        raise ApiError("INVALID_ARGUMENT", "export_config.gcs_destination.output_uri_prefix is required.")
    if not prefix.startswith("gs://") or not fake.gcs.split(prefix.rstrip("/") + "/")[0]:
        raise ApiError("INVALID_ARGUMENT", f"Invalid Cloud Storage URI {prefix!r}.")
    if any(config.get(k) for k in ("fractionSplit", "filterSplit", "savedQueryId", "annotationSchemaUri")) or \
            config.get("exportUse", "EXPORT_USE_UNSPECIFIED") != "EXPORT_USE_UNSPECIFIED":
        raise ApiError("INVALID_ARGUMENT", "fake Vertex exports whole datasets only (no split, saved query, "
                                           "annotation schema or custom-training export).")
    stamp = now()[:23] + "Z"  # YYYY-MM-DDThh:mm:ss.sssZ, as the folder name spells it
    folder = f"{prefix.rstrip('/')}/export-data-{dataset.resource['displayName']}-{stamp}/"
    bucket = fake.gcs.split(folder)[0]
    if bucket not in fake.gcs.buckets:
        return fake.state.operation(dataset.resource["name"], "ExportDataOperationMetadata",
                                    response_type="ExportDataResponse",
                                    error=ApiError("NOT_FOUND", f"Bucket {bucket} does not exist."))
    items = list(dataset.items.values())
    sets = sorted({s for i in items for s in i.label_sets}) or [SET_TITLES[SINGLE_LABEL]]
    files = []
    for title in sets:
        lines = [_exported(i, title, dataset) for i in items]
        uri = f"{folder}{title}/data-00001-of-00001.jsonl"
        fake.gcs.write(uri, "".join(json.dumps(x) + "\n" for x in lines).encode(), "application/jsonl")
        schema = next(k for k, v in SET_TITLES.items() if v == title).rsplit("/", 1)[-1]
        fake.gcs.write(f"{folder}{title}/schema.yaml", f"# {SCHEMA}ioformat/{schema}\n".encode(), "text/yaml")
        files.append(uri)
    return fake.state.operation(dataset.resource["name"], "ExportDataOperationMetadata",
                                metadata={"gcsOutputDirectory": folder},
                                response={"exportedFiles": files}, response_type="ExportDataResponse")


def _exported(item: DataItem, title: str, dataset: Dataset) -> dict:
    labels = item.label_sets.get(title, [])
    set_id = dataset.sets.get(title, "")
    notes = [{"displayName": label,
              "annotationResourceLabels": {"aiplatform.googleapis.com/annotation_set_name": set_id,
                                           "aiplatform.googleapis.com/payload_schema_filename": ANNOTATION_SCHEMA}}
             for label in labels]
    line: dict = {"imageGcsUri": item.gcs_uri}
    if title == SET_TITLES[MULTI_LABEL]:
        if notes:
            line["classificationAnnotations"] = notes
    elif notes:
        line["classificationAnnotation"] = notes[0]
    if item.resource_labels:
        line["dataItemResourceLabels"] = dict(item.resource_labels)
    return line


def list_items(fake, req, m):
    dataset = get(fake, m["id"])
    items = [{"name": f"{dataset.resource['name']}/dataItems/{i.id}", "createTime": i.create_time,
              "updateTime": i.create_time, "labels": i.resource_labels,
              "payload": {"imageGcsUri": i.gcs_uri, "mimeType": _mime(i.gcs_uri)}}
             for i in dataset.items.values()]
    return page(items, req.query, "dataItems")


def annotation_spec(fake, req, m):
    dataset = get(fake, m["id"])
    for label, spec_id in dataset.specs.items():
        if spec_id == m["spec"]:
            return {"name": f"{dataset.resource['name']}/annotationSpecs/{spec_id}",
                    "displayName": label, "createTime": dataset.resource["createTime"],
                    "updateTime": dataset.resource["updateTime"]}
    raise ApiError("NOT_FOUND", f"AnnotationSpec {m['spec']} does not exist.")


def _mime(uri: str) -> str:
    ext = uri.rsplit(".", 1)[-1].lower()
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
            "bmp": "image/bmp", "webp": "image/webp", "tif": "image/tiff", "tiff": "image/tiff",
            "ico": "image/vnd.microsoft.icon"}.get(ext, "image/jpeg")


def routes(p: str):
    ds = rf"{p}/datasets/(?P<id>[^/:]+)"
    return [
        ("POST", rf"{p}/datasets", create),
        ("GET", rf"{p}/datasets", list_),
        ("GET", ds, read),
        ("DELETE", ds, delete),
        ("POST", rf"{ds}:import", import_data),
        ("POST", rf"{ds}:export", export_data),
        ("GET", rf"{ds}/dataItems", list_items),
        ("GET", rf"{ds}/annotationSpecs/(?P<spec>[^/:]+)", annotation_spec),
    ]
