"""Contract harness for `azureml`: azure-ai-ml, azure-identity and azure-storage-blob against the stateful
fake workspace (tests/fakes/azureml). The workspace comes from the config's azureml: section, the
credential through the explicit IMGCLS_AZURE_CREDENTIAL seam, uploads through the fake's blob proxy."""
from __future__ import annotations

import contextlib

from tests.fakes.azureml import FakeAzureML

SUB, RG, WS = "11111111-2222-3333-4444-555555555555", "imgcls-rg", "imgcls-ws"
TERMINAL = {"Completed", "Failed", "Canceled"}


class AzureMLHarness:
    provider = "azureml"
    # report: false only to keep the suite fast (matplotlib); nothing in the contract reads the report
    config = (f"azureml:\n  subscription_id: {SUB}\n  resource_group: {RG}\n  workspace: {WS}\n"
              "  compute: cpu-cluster\n  vm_size: Standard_DS3_v2\n"
              "evaluate:\n  report: false\n")

    def __init__(self, fake: FakeAzureML):
        self.fake = fake

    def leftovers(self, run) -> list[str]:
        return leftovers(self.fake, run)


def leftovers(fake: FakeAzureML, run) -> list[str]:
    """What the fake still holds that the run created: billable computes/endpoints/deployments, batch
    endpoints and deployments, model and
    data versions not archived, jobs still running, the run's own blobs."""
    res = run.ledger["resources"]
    ids = lambda kind: [r for r in res if r["kind"] == kind]
    left = []
    state = fake.state
    with state.lock:
        left += [f"compute {r['id']}" for r in ids("compute") if r.get("ours") and r["id"] in state.computes]
        left += [f"endpoint {r['id']}" for r in ids("endpoint") if r["id"] in state.endpoints]
        left += [f"deployment {e}/{d}" for e, d in state.deployments
                 if any(r["id"] == f"{e}/{d}" or r["id"] == e for r in ids("deployment") + ids("endpoint"))]
        left += [f"batch endpoint {r['id']}" for r in ids("batch_endpoint") if r["id"] in state.batch_endpoints]
        left += [f"batch deployment {e}/{d}" for e, d in state.batch_deployments
                 if any(r["id"] == f"{e}/{d}" or r["id"] == e for r in ids("batch_deployment") + ids("batch_endpoint"))]
        for kind, store in (("model", state.models), ("data", state.data)):
            for r in ids(kind):
                version = store.get(r["name"], {}).get(r["version"])
                if version and not version["properties"].get("isArchived"):
                    left.append(f"{kind} {r['id']}")
        left += [f"job {r['id']} ({state.jobs[r['id']].status})" for r in ids("job")
                 if r["id"] in state.jobs and state.jobs[r["id"]].status not in TERMINAL]
    prefix = f"imgcls/runs/{run.id}/"
    left += [f"blob {name}" for _, name in fake.blobs if name.startswith(prefix)]
    return left


@contextlib.contextmanager
def start(tmp_path, monkeypatch):
    with FakeAzureML(SUB, RG, WS, job_seconds=0.3, lro_polls=1, poll_seconds=0.05) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("IMGCLS_AZURE_CREDENTIAL", "tests.fakes.azureml:FakeCredential")
        yield AzureMLHarness(fake)
