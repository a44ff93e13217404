"""What a Custom Vision run would create and cost (`imgcls plan`), from the config alone, and the
read-only pre-flight (the project quota) `plan` runs when the keys are found."""
from __future__ import annotations

import math
import re
from urllib.parse import urlparse

from ..planning import Plan, PlannedResource, free, prices, unknown
from . import settings as settings_mod

# Projects per resource (learn.microsoft.com …/custom-vision-service/limits-and-quotas)
PROJECT_LIMITS = {"F0": 2, "S0": 100}


def region_of(cfg) -> str | None:
    section = cfg.customvision
    if section.region:
        return section.region
    endpoint = settings_mod.resolve(section).training_endpoint or ""
    m = re.match(r"^([a-z0-9]+)\.api\.cognitive\.microsoft\.com$", urlparse(endpoint).hostname or "")
    return m.group(1) if m else None


def training_type(cfg) -> tuple[str, int | None]:
    """(Regular|Advanced, the hours Advanced reserves) — as the provider will train."""
    kind = cfg.customvision.training_type or ("Advanced" if cfg.train.preset == "best" else "Regular")
    if kind == "Regular":
        return kind, None
    return kind, max(1, math.ceil(cfg.train.node_hours or 1))


def plan(cfg) -> Plan:
    section, table = cfg.customvision, prices(__package__)
    region = region_of(cfg)
    kind, hours = training_type(cfg)
    if section.project_id:
        project = PlannedResource("project", section.project_id, "use",
                                  "customvision.project_id: trained in, never deleted; the run's images and "
                                  "tags in it are removed by `down`")
    else:
        project = PlannedResource("project", section.project_name or cfg.name, "create",
                                  f"domain {section.domain}; holds the uploaded images and tags")
    resources = [
        PlannedResource("training resource", settings_mod.resolve(section).training_endpoint or "?", "use",
                        "the Custom Vision training resource the keys belong to"),
        PlannedResource("prediction resource", settings_mod.resolve(section).prediction_resource_id or "?", "use",
                        "publishing makes the iteration answer on it"),
        project,
        PlannedResource("images and tags", "<the dataset>", "create", "uploaded into the project"),
        PlannedResource("iteration", "<run-id>", "create", f"{kind} training"
                        + (f", {hours} hour(s) reserved" if hours else "")),
        PlannedResource("publication", section.publish_name or f"{cfg.name}-<run short id>", "create",
                        "the published iteration (the prediction endpoint)"),
    ]
    where = "customvision.region, or a regional training endpoint"
    if hours:
        training = table.cost(region, "training_compute_hour", hours, "compute hours (reserved)", where)
        budget = {"amount": hours, "unit": "training hours", "note": "Advanced training reserves train.node_hours"}
    else:
        rate, why = table.price(region, "training_compute_hour", where)
        training = unknown("Regular training bills the compute time it takes, not known before it runs"
                           + (f" (${rate:g} per compute hour in {region})" if rate is not None else f"; {why}")
                           + "; Advanced training (train.preset: best, train.node_hours) reserves a budget")
        budget = {"amount": None, "unit": "training hours", "note": "Regular training: Custom Vision decides"}
    rate, why = table.price(region, "predictions_per_1000", where)
    endpoint = free(f"a publication has no hourly charge; predictions bill ${rate:g} per 1,000 (S0, {region})"
                    if rate is not None else f"a publication has no hourly charge; predictions bill per 1,000 "
                                             f"(price unknown: {why})")
    notes = list(table.notes) + ["prices are S0's; on F0 (free) the estimate is an upper bound"]
    return Plan("customvision", region, resources, budget, training, endpoint, table.as_of, table.sources, notes)


def preflight(cfg) -> list[str]:
    """The resource's project count against the tier's limit (one read: list projects)."""
    from .client import Client
    if cfg.customvision.project_id:
        return []
    count = len(Client(settings_mod.resolve(cfg.customvision)).projects())
    warnings = []
    if count >= PROJECT_LIMITS["S0"]:
        warnings.append(f"the training resource already has {count} projects: S0 allows {PROJECT_LIMITS['S0']}, "
                        "so creating the run's project would fail; `imgcls down` old runs or set "
                        "customvision.project_id")
    elif count >= PROJECT_LIMITS["F0"]:
        warnings.append(f"the training resource has {count} projects: on the free tier (F0, "
                        f"{PROJECT_LIMITS['F0']} projects) creating another would fail; S0 allows "
                        f"{PROJECT_LIMITS['S0']}")
    return warnings
