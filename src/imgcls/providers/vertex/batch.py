"""Scoring a large test split with one batch prediction job instead of thousands of online requests.

The job reads a JSONL of `{"content": gs-uri, "mimeType": …}` and writes predictions_*.jsonl, which we
map back by instance content URI. Results are kept in the run (work/batch_scores.json) for the same
model, so evaluating again does not start another job. Job and files are recorded for `down`.
"""
from __future__ import annotations

import json

from ...errors import ProviderError
from ...runs import write_json
from . import bodies, staging
from .provider import RUNNING, SUCCEEDED


def scores(provider, model, test) -> dict[str, dict[str, float]]:
    """gs:// uri -> label -> score, for every test image."""
    s, client, run = provider.settings, provider.client, provider.run
    uris = sorted(set(staging.gcs_uris(s, test).values()))
    cache = run.file("work", "batch_scores.json")
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("model") == model.model_id and set(uris) <= set(saved.get("scores", {})):
            return saved["scores"]
    labels = run.step("import")["labels"]
    folder = s.name("runs", run.id, "batch")
    display = f"{run.id}-test"
    # A job of this model the run started before it stopped (recorded, or found by its display name)
    # is waited on again, not started twice.
    provider.reconcile("batch_job", display)
    job = next((j for j in reversed(run.resources("batch_job")) if j.get("model") == model.model_id), None)
    if job is not None and _state(client, job["id"]) in RUNNING | SUCCEEDED:
        job = {"name": job["id"]}
        provider.progress.log(f"waiting for batch prediction job {job['name']}, which this run started before")
    else:
        run.record("prefix", f"gs://{s.bucket}/{folder}/", role="batch prediction files")
        instances = f"{folder}/instances.jsonl"
        client.upload_bytes(s.bucket, instances, staging.batch_instances(uris).encode(), "application/jsonl")
        run.intend("batch_job", display, display_name=display, model=model.model_id)
        job = client.create_batch_job(bodies.batch_prediction_job(
            display, run.id, model.model_id, f"gs://{s.bucket}/{instances}", f"gs://{s.bucket}/{folder}/output",
            len(labels), s.service_account))
        run.record("batch_job", job["name"], name=display, display_name=display, model=model.model_id)
        provider.progress.log(f"scoring {len(uris)} test images with batch prediction job {job['name']}")

    def look():
        j = client.get_batch_job(job["name"])
        state = j.get("state", "")
        if state in RUNNING:
            return "running", {"status": state.removeprefix("JOB_STATE_").lower()}
        return ("succeeded" if state in SUCCEEDED else "failed"), j

    state, done = provider.wait(look, "batch prediction", None,
                                resume_hint=f"`imgcls evaluate --run {run.id}` starts it again")
    if state != "succeeded":
        raise ProviderError(f"the batch prediction job {job['name']} ended "
                            f"{done.get('state', '?').removeprefix('JOB_STATE_').lower()}: "
                            f"{(done.get('error') or {}).get('message', 'no message')}",
                            hint=f"run `imgcls evaluate --run {run.id}` again")
    out_dir = (done.get("outputInfo") or {}).get("gcsOutputDirectory", "")
    bucket, _, prefix = out_dir.removeprefix("gs://").partition("/")
    names = [n for n in client.list_names(bucket, prefix.rstrip("/") + "/")
             if n.rsplit("/", 1)[-1].startswith(("predictions_", "errors_")) and n.endswith(".jsonl")]
    found, errors = staging.read_predictions({n: client.download(bucket, n) for n in names})
    missing = [u for u in uris if u not in found]
    if missing:
        detail = "; ".join(errors[:3]) or f"no prediction for {missing[0]}"
        raise ProviderError(f"the batch prediction job scored {len(uris) - len(missing)} of {len(uris)} test "
                            f"images: {detail}", hint=f"see {out_dir}")
    write_json(cache, {"model": model.model_id, "scores": found})
    return found


def _state(client, name: str) -> str | None:
    from .client import Missing
    try:
        return client.get_batch_job(name).get("state")
    except Missing:
        return None
