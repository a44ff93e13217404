"""What an Azure ML run would create and cost (`imgcls plan`), from the config alone, and the read-only
pre-flight (the cluster's node limit) `plan` runs when credentials are found."""
from __future__ import annotations

from ..planning import HOURS_PER_DAY, Plan, PlannedResource, prices
from . import settings as settings_mod


def plan(cfg) -> Plan:
    az, table = cfg.azureml, prices(__package__)
    s = settings_mod.resolve(az)
    nodes = min(az.max_concurrent_trials, az.max_nodes)
    hours = cfg.train.budget_minutes / 60
    cluster = az.compute or "imgcls-<8 hex of the project folder>"
    resources = [
        PlannedResource("workspace", s.workspace or "?", "use", "azureml.workspace; never created or deleted"),
        PlannedResource("datastore", "workspace default blob store", "use",
                        "images go under imgcls/images/ (shared, kept unless azureml.keep_images: false), "
                        "the run's files under imgcls/runs/<run-id>/"),
        PlannedResource("data assets", f"{cfg.name}-train/-validation, version <run>", "create", "MLTable"),
        PlannedResource("compute", cluster, "create",
                        f"{az.vm_size}, 0-{az.max_nodes} nodes, if absent; an existing cluster is used and "
                        "left alone; removed by the `down` of the last run using it"),
        PlannedResource("training job", "<run-id>", "create",
                        f"AutoML image job, {az.max_trials} trial(s), timeout {cfg.train.budget_minutes:g} min"),
        PlannedResource("model", "<run-id>", "create", "registered from the best trial"),
        PlannedResource("online endpoint", "<name>-<hash of run id>", "create", "managed online endpoint"),
        PlannedResource("deployment", "<endpoint>/default", "create",
                        f"{az.instance_count} x {az.instance_type}, all traffic"),
    ]
    where = "azureml.location"
    training = table.cost(az.location, az.vm_size, round(hours * nodes, 3),
                          f"VM hours ({nodes} node(s) x the {cfg.train.budget_minutes:g} min job timeout)", where)
    endpoint = table.cost(az.location, az.instance_type, HOURS_PER_DAY * az.instance_count,
                          f"VM hours ({az.instance_count} instance(s) x 24 h)", where)
    notes = list(table.notes) + [
        "training is at most the job's timeout on every node it may use; it usually ends sooner",
        "azureml.compute naming a cluster that exists: that cluster's own VM size bills, not azureml.vm_size"]
    return Plan("azureml", az.location, resources,
                {"amount": cfg.train.budget_minutes, "unit": "compute-minutes per node",
                 "note": f"train.budget_minutes is the job's timeout; up to {nodes} node(s) at once"},
                training, endpoint, table.as_of, table.sources, notes)


def preflight(cfg) -> list[str]:
    """The named (or default-named) cluster: if it exists, its size and node limit against the config."""
    from .client import Client
    az = cfg.azureml
    if not az.compute:
        return []
    found = Client(settings_mod.resolve(az)).compute(az.compute)
    if found is None:
        return []
    warnings = []
    if found.get("max_nodes") and az.max_concurrent_trials > found["max_nodes"]:
        warnings.append(f"azureml.max_concurrent_trials = {az.max_concurrent_trials} but cluster {az.compute} "
                        f"has at most {found['max_nodes']} nodes: trials will queue")
    if found.get("size") and found["size"].lower() != az.vm_size.lower():
        warnings.append(f"cluster {az.compute} is {found['size']}, not azureml.vm_size {az.vm_size}: the training "
                        "estimate is for the wrong VM size")
    return warnings
