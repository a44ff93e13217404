"""Batch prediction jobs: one job scores many images instead of thousands of online requests, for
`evaluate` (a large test split) and for `predict --batch`; both go through `run_job`.

The job reads a JSONL of `{"content": gs-uri, "mimeType": …}` and writes predictions_*.jsonl, which we
map back by instance content URI. Evaluate keeps its scores in the run (work/batch_scores.json) for the
same model, so evaluating again does not start another job. Jobs and files are recorded for `down`.
"""
from __future__ import annotations

import hashlib
import json

from ...errors import ProviderError
from ...runs import write_json
from . import bodies, staging
from .provider import RUNNING, SUCCEEDED


def scores(provider, model, test) -> dict[str, dict[str, float]]:
    """gs:// uri -> label -> score, for every test image (evaluate)."""
    s, run = provider.settings, provider.run
    uris = sorted(set(staging.gcs_uris(s, test).values()))
    cache = run.file("work", "batch_scores.json")
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("model") == model.model_id and set(uris) <= set(saved.get("scores", {})):
            return saved["scores"]
    found = run_job(provider, model, uris, display=f"{run.id}-test", folder=s.name("runs", run.id, "batch"),
                    what="test images", resume_hint=f"`imgcls evaluate --run {run.id}` starts it again")
    write_json(cache, {"model": model.model_id, "scores": found})
    return found


def predict(provider, model, paths: list[str]) -> dict[str, dict[str, float]]:
    """`predict --batch`: input path (or gs:// uri) -> label -> score. Local images are uploaded to the
    staging bucket under content-addressed names (what is there already is not sent again); gs:// ones
    are read where they are. The same images give the same job name, so a rerun after a kill waits on
    the job it started instead of starting another."""
    from ...data import manifest

    s, run = provider.settings, provider.run
    df = manifest.build([{"uri": p, "labels": []} for p in paths])
    staging.check_sources(df)
    staged = staging.stage_images(provider.client, s, df, provider.progress, provider.record_uploads)
    uris = sorted(set(staged.uris.values()))
    key = hashlib.sha256("\n".join(uris).encode()).hexdigest()[:12]
    found = run_job(provider, model, uris, display=f"{run.id}-predict-{key}",
                    folder=s.name("runs", run.id, "batch", f"predict-{key}"), what="images",
                    resume_hint=f"`imgcls predict --batch --run {run.id}` with the same images waits for it")
    return {p: found[staged.uris[p]] for p in paths}


def run_job(provider, model, uris: list[str], display: str, folder: str, what: str,
            resume_hint: str) -> dict[str, dict[str, float]]:
    """One batch prediction job of `model` over the gs:// `uris` (its files under `folder`): uri -> label ->
    score for each. A job of this model and display name the run started before it stopped (recorded, or
    found by its display name) is waited on again, not started twice."""
    s, client, run = provider.settings, provider.client, provider.run
    labels = run.step("import")["labels"]
    provider.reconcile("batch_job", display)
    job = next((j for j in reversed(run.resources("batch_job"))
                if j.get("model") == model.model_id and j.get("display_name", display) == display), None)
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
        provider.progress.log(f"scoring {len(uris)} {what} with batch prediction job {job['name']}")

    def look():
        j = client.get_batch_job(job["name"])
        state = j.get("state", "")
        if state in RUNNING:
            return "running", {"status": state.removeprefix("JOB_STATE_").lower()}
        return ("succeeded" if state in SUCCEEDED else "failed"), j

    state, done = provider.wait(look, "batch prediction", None, resume_hint=resume_hint)
    if state != "succeeded":
        raise ProviderError(f"the batch prediction job {job['name']} ended "
                            f"{done.get('state', '?').removeprefix('JOB_STATE_').lower()}: "
                            f"{(done.get('error') or {}).get('message', 'no message')}",
                            hint=resume_hint)
    out_dir = (done.get("outputInfo") or {}).get("gcsOutputDirectory", "")
    bucket, _, prefix = out_dir.removeprefix("gs://").partition("/")
    names = [n for n in client.list_names(bucket, prefix.rstrip("/") + "/")
             if n.rsplit("/", 1)[-1].startswith(("predictions_", "errors_")) and n.endswith(".jsonl")]
    found, errors = staging.read_predictions({n: client.download(bucket, n) for n in names})
    missing = [u for u in uris if u not in found]
    if missing:
        detail = "; ".join(errors[:3]) or f"no prediction for {missing[0]}"
        raise ProviderError(f"the batch prediction job scored {len(uris) - len(missing)} of {len(uris)} "
                            f"{what}: {detail}", hint=f"see {out_dir}")
    return {u: found[u] for u in uris}


def _state(client, name: str) -> str | None:
    from .client import Missing
    try:
        return client.get_batch_job(name).get("state")
    except Missing:
        return None
