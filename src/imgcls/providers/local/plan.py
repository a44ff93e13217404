"""What a local run would create (`imgcls plan`): files under the run folder and, when deployed, a server
process on this machine. Nothing bills."""
from __future__ import annotations

from ..planning import Plan, PlannedResource, free


def plan(cfg) -> Plan:
    dep = cfg.deploy
    resources = [
        PlannedResource("run folder", f"{cfg.runs_dir}/<run-id>/", "create",
                        "manifest, ledger, model artifacts (ONNX), report"),
        PlannedResource("server process", f"http://{dep.host}:{dep.port or '<free port>'}", "create",
                        "deploy: a model server on this machine; `down` (or deploy.ttl) stops it"),
    ]
    return Plan("local", None, resources,
                {"amount": cfg.train.budget_minutes, "unit": "minutes on this machine's CPU",
                 "note": "train.budget_minutes"},
                free("this machine's CPU: no bill"), free("a process on this machine: no bill"))
