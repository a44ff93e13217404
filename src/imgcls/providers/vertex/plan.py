"""What a Vertex AI run would create and cost (`imgcls plan`), from the config alone, and the read-only
pre-flight `plan` runs when credentials are found."""
from __future__ import annotations

from ...errors import ConfigError
from ..planning import HOURS_PER_DAY, Plan, PlannedResource, prices
from . import settings as settings_mod


def plan(cfg) -> Plan:
    s = settings_mod.resolve(cfg)
    table = prices(__package__)
    notes = list(table.notes)
    try:
        bucket, prefix = settings_mod.staging(s.staging_bucket)
        staging = f"gs://{bucket}/{prefix}".rstrip("/")
    except ConfigError as exc:
        staging = "gs://?"
        notes.append(f"not runnable yet: {exc.message}")
    milli = settings_mod.budget(s.model_type, s.node_hours)      # out of range: the ConfigError train would give
    hours = milli / 1000
    resources = [
        PlannedResource("bucket", staging, "use", "must exist in the project; imgcls never creates or deletes it"),
        PlannedResource("objects", f"{staging}/images/", "create",
                        "content-addressed images, shared by runs; kept by `down` unless vertex.keep_images: false"),
        PlannedResource("objects", f"{staging}/runs/<run-id>/", "create", "the import file (and exports)"),
        PlannedResource("dataset", "<run-id>", "create", "ImageDataset"),
        PlannedResource("training pipeline", "<run-id>", "create",
                        f"AutoML {s.model_type}, budget {hours:g} node hours"),
        PlannedResource("model", "<run-id>", "create", "uploaded by the pipeline"),
        PlannedResource("endpoint", "<run-id>", "create",
                        f"the model deployed on {s.min_replicas}-{s.max_replicas} node(s)"),
        PlannedResource("batch prediction job", "<run-id>", "create",
                        f"only when the test split has more than {s.batch_predict_over} images (evaluate)"),
    ]
    sku = "training_edge_node_hour" if s.mobile else "training_node_hour"
    training = table.cost(s.location, sku, hours, "node hours", "vertex.location")
    endpoint = table.cost(s.location, "deployment_node_hour", HOURS_PER_DAY * s.max_replicas,
                          f"node hours ({s.max_replicas} node(s) x 24 h)", "vertex.location")
    if s.max_replicas > s.min_replicas:
        notes.append(f"the endpoint estimate is at deploy.max_replicas ({s.max_replicas}); at "
                     f"deploy.min_replicas ({s.min_replicas}) it is {s.min_replicas / s.max_replicas:.0%} of that")
    return Plan("vertex", s.location, resources,
                {"amount": hours, "unit": "node hours", "note": "train.node_hours (Vertex bills at most this)"},
                training, endpoint, table.as_of, table.sources, notes)


def preflight(cfg) -> list[str]:
    """The staging bucket must exist before anything is uploaded (read-only: one GET)."""
    from .client import VertexClient
    s = settings_mod.resolve(cfg)
    try:
        bucket = s.bucket
    except ConfigError as exc:
        return [exc.message]
    if not VertexClient(s).bucket_exists(bucket):
        return [f"the staging bucket gs://{bucket} does not exist or is not readable: dataset-import would stop"]
    return []
