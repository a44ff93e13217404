"""`predict --batch` on Azure ML: the run's batch endpoint and its one deployment of the registered model
on the run's compute cluster (each recorded as pending before it is asked for, as the run's once made),
the images uploaded to a folder of their own under the run's prefix (content-addressed: a rerun sends
nothing twice), one scoring job per set of images (named by their hashes, so a rerun after a kill waits
on the job it started), and the job's output file read back and mapped to the inputs. `down` deletes
the endpoint, its deployment and the run's files; the cluster is shared as for training.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json

from ...data import manifest
from ...errors import DataError, ProviderError
from . import naming
from .dataset import CONTENT_TYPES, suffix_of

OUTPUT_FILE = "predictions.csv"   # one row per image: file name, probs (JSON list), labels (JSON list)
FAILED = {"Failed", "Canceled"}


def predict(provider, model, paths: list[str]) -> dict[str, dict[str, float]]:
    """Input path -> label -> score for each of `paths` (distinct local image files)."""
    run, client, progress = provider.run, provider.client, provider.progress
    remote = [p for p in paths if "://" in p]
    if remote:
        raise DataError(f"{remote[0]}: Azure ML batch prediction scores a folder imgcls uploads; it cannot take "
                        "remote images", hint="download them and give the local files")
    if not model.model_id:
        raise ProviderError(f"run {run.id} has no registered model to score with",
                            hint=f"run `imgcls train --run {run.id}` first")
    df = manifest.build([{"uri": p, "labels": []} for p in paths])
    unread = [u for u, h in zip(df["uri"], df["sha256"]) if not h]
    if unread:
        raise DataError(f"cannot read {unread[0]} to upload it", hint="check the file")
    blob_of = {u: f"{h}{suffix_of(u, f)}" for u, h, f in zip(df["uri"], df["sha256"], df["format"])}
    key = hashlib.sha256("\n".join(sorted(set(blob_of.values()))).encode()).hexdigest()[:12]

    endpoint = _endpoint(provider)
    deployment = _deployment(provider, endpoint, model)
    container, datastore, folder = _upload(provider, blob_of, key)
    job = _job(provider, endpoint, deployment, key, f"azureml://datastores/{datastore}/paths/{folder}inputs/",
               f"azureml://datastores/{datastore}/paths/{folder}output/")

    def look():
        j = client.job(job)
        status = (j or {}).get("status")
        if j is None or status in FAILED:
            return "failed", {"status": status or "gone"}
        return ("succeeded" if status == "Completed" else "running"), {"status": status}

    state, details = provider.wait(look, "batch prediction", None,
                                   resume_hint=f"`imgcls predict --batch --run {run.id}` with the same images "
                                               "waits for it")
    if state != "succeeded":
        reason = client.run_error(job) or f"it ended {details['status']}"
        raise ProviderError(f"the batch scoring job {job} failed: {reason}",
                            hint=f"see the job in Azure ML studio; `imgcls predict --batch --run {run.id}` "
                                 "starts another")
    names = sorted(n for n in client.blob_names(container, f"{folder}output/") if n.endswith(f"/{OUTPUT_FILE}"))
    if not names:
        raise ProviderError(f"the batch scoring job {job} wrote no {OUTPUT_FILE} under {folder}output/")
    scores = read_output(b"".join(client.get_blob(container, n) for n in names), names[0])
    progress.log(f"batch scoring job {job}: {len(scores)} images scored")
    missing = sorted({b for b in blob_of.values() if b not in scores})
    if missing:
        raise ProviderError(f"the batch scoring job {job} scored {len(set(blob_of.values())) - len(missing)} of "
                            f"{len(set(blob_of.values()))} images; none for {missing[0]}",
                            hint="a file the scorer could not read is skipped: check the images")
    return {p: scores[blob_of[p]] for p in paths}


def read_output(data: bytes, where: str) -> dict[str, dict[str, float]]:
    """The deployment's output file -> file name -> label -> score."""
    out = {}
    for n, row in enumerate(csv.reader(io.StringIO(data.decode("utf-8"))), 1):
        if not row:
            continue
        try:
            name, probs, labels = row[0].rsplit("/", 1)[-1], json.loads(row[1]), json.loads(row[2])
            out[name] = {str(label): float(p) for label, p in zip(labels, probs, strict=True)}
        except (IndexError, ValueError, TypeError) as exc:
            raise ProviderError(f"{where} line {n}: not `file,probs,labels` ({type(exc).__name__}: {exc})",
                                hint="is the deployed model an AutoML image classification model?") from None
    return out


def _endpoint(provider) -> str:
    run, client = provider.run, provider.client
    name = naming.batch_endpoint(run)
    provider.reconcile("batch_endpoint", name)                 # created just before a kill, never recorded
    found = client.batch_endpoint(name)
    if found is None or found["state"] != "Succeeded":
        run.intend("batch_endpoint", name)
        provider.progress.log(f"creating batch endpoint {name}; `imgcls down` removes it")
        client.create_batch_endpoint(name, description=f"imgcls run {run.id}", tags={"imgcls.run": run.id})
    run.record("batch_endpoint", name, name=name, ours=True)
    return name


def _deployment(provider, endpoint: str, model) -> str:
    run, client, az = provider.run, provider.client, provider.config.azureml
    name, rid = naming.DEPLOYMENT, f"{endpoint}/{naming.DEPLOYMENT}"
    recorded = next((r for r in run.resources("batch_deployment") if r["id"] == rid), None)
    if recorded and recorded.get("model_id") == model.model_id and client.batch_deployment(endpoint, name):
        return name
    provider._ensure_compute()                                  # batch jobs run on the run's cluster
    provider.reconcile("batch_deployment", name)
    found = client.batch_deployment(endpoint, name)
    if found is None or found["state"] != "Succeeded" or found["model"] != model.model_id:
        run.intend("batch_deployment", name, endpoint=endpoint)
        provider.progress.log(f"deploying {model.model_id.rsplit('/models/', 1)[-1]} to batch endpoint "
                              f"{endpoint} on {provider.compute_name}")
        client.create_batch_deployment(endpoint, name, model.model_id, provider.compute_name,
                                       az.batch_instance_count, az.batch_mini_batch_size, OUTPUT_FILE)
    run.record("batch_deployment", rid, name=name, endpoint=endpoint, model_id=model.model_id,
               compute=provider.compute_name)
    return name


def _upload(provider, blob_of: dict[str, str], key: str) -> tuple:
    """The images into {run prefix}batch/{key}/inputs/, those not there already; the run prefix is
    recorded (dataset-import did so too) so `down` deletes them with the output."""
    run, client, progress = provider.run, provider.client, provider.progress
    ds = client.default_datastore()
    account_url = (provider.config.azureml.storage_account_url
                   or f"{ds['protocol']}://{ds['account']}.blob.{ds['endpoint']}").rstrip("/")
    container = client.container(account_url, ds["container"], ds["credential"])
    prefix = naming.run_prefix(run)
    run.record("blob", prefix, container=ds["container"], account_url=account_url, datastore=ds["name"])
    folder = f"{prefix}batch/{key}/"
    present = {n.rsplit("/", 1)[-1] for n in client.blob_names(container, f"{folder}inputs/")}
    todo = {b: p for p, b in blob_of.items() if b not in present}
    if todo:
        progress.log(f"uploading {len(todo)} images to {account_url}/{ds['container']}/{folder}inputs/")
    for n, (blob, path) in enumerate(sorted(todo.items()), 1):
        with open(path, "rb") as fh:
            client.put_blob(container, f"{folder}inputs/{blob}", fh.read(),
                            CONTENT_TYPES.get(blob[blob.rfind("."):], "image/jpeg"), overwrite=True)
        progress.advance("uploading", n, len(todo))
    return container, ds["name"], folder


def _job(provider, endpoint: str, deployment: str, key: str, inputs: str, output: str) -> str:
    """The scoring job of these images: one of the run's own still running or done is used again (a
    rerun, or a kill after it started); a failed one is followed by the next attempt's name."""
    run, client = provider.run, provider.client
    attempt = 1
    while True:
        name = naming.batch_job(run, key, attempt)
        found = client.job(name)
        if found is None:
            break
        if found["status"] not in FAILED:
            provider.progress.log(f"waiting for batch scoring job {name}, which this run started before")
            run.record("job", name, name=name, role="batch prediction", endpoint=endpoint)
            return name
        attempt += 1
    run.intend("job", name, role="batch prediction", endpoint=endpoint)
    client.invoke_batch(endpoint, deployment, name, inputs, output)
    run.record("job", name, name=name, role="batch prediction", endpoint=endpoint)
    provider.progress.log(f"batch scoring job {name} started on {endpoint}/{deployment}")
    return name


def delete(provider, resource: dict) -> str | None:
    client = provider.client
    if not resource.get("ours", True):
        return "released"
    if resource["kind"] == "batch_endpoint":
        client.delete_batch_endpoint(resource["id"])    # its deployments go with it
    else:
        client.delete_batch_deployment(resource["endpoint"], resource["name"])
    return None
