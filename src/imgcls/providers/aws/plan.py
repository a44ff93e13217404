"""What a Rekognition Custom Labels run would create and cost (`imgcls plan`), from the config alone, and
the read-only pre-flight `plan` runs when credentials are found."""
from __future__ import annotations

from ..planning import HOURS_PER_DAY, Plan, PlannedResource, prices, unknown
from . import settings as settings_mod


def plan(cfg) -> Plan:
    s, table = settings_mod.resolve(cfg, "<run-id>"), prices(__package__)
    units = s.max_units or s.min_units
    name = "imgcls-<run-id>" if s.creates_bucket else s.bucket
    bucket = PlannedResource("bucket", name, "create" if s.creates_bucket else "use",
                             "the run's own bucket; `down` deletes it" if s.creates_bucket
                             else "aws.bucket: must exist; left alone")
    resources = [
        bucket,
        PlannedResource("objects", f"s3://{name}/{s.prefix}/", "create",
                        "images, Ground Truth manifests, training output"),
        PlannedResource("project", "<run-id>", "create", "Custom Labels project"),
        PlannedResource("datasets", "<run-id>/TRAIN, <run-id>/TEST", "create", "from our split"),
        PlannedResource("model", "<run-id>", "create", "a project version (training)"),
        PlannedResource("running model", "<run-id>", "create",
                        f"the model started on {s.min_units}"
                        + (f"-{s.max_units}" if s.max_units else "") + " inference unit(s): the deployment"),
    ]
    where = "aws.region, or $AWS_REGION"
    rate, why = table.price(s.region, "training_hour", where)
    training = unknown("Custom Labels picks its training time itself (AWS documents 30 minutes to 24 hours)"
                       + (f"; ${rate:g} per training hour in {s.region}" if rate is not None else f"; {why}"))
    endpoint = table.cost(s.region, "inference_unit_hour", HOURS_PER_DAY * units,
                          f"inference unit hours ({units} unit(s) x 24 h)", where)
    notes = list(table.notes)
    if s.max_units:
        notes.append(f"the endpoint estimate is at deploy.max_replicas ({s.max_units} units, auto scaling)")
    return Plan("aws", s.region, resources,
                {"amount": cfg.train.budget_minutes, "unit": "minutes imgcls waits",
                 "note": "Custom Labels has no training budget; train.budget_minutes is how long imgcls waits"},
                training, endpoint, table.as_of, table.sources, notes)


def preflight(cfg) -> list[str]:
    """A bucket the config names must exist (one HEAD)."""
    from .client import AwsClient
    s = settings_mod.resolve(cfg, "preflight")
    if s.creates_bucket:
        return []
    if not AwsClient(s).bucket_exists(s.bucket):
        return [f"the bucket s3://{s.bucket} (aws.bucket) does not exist or is not yours: dataset-import would stop"]
    return []
