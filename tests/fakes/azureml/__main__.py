"""Serve the fake Azure ML workspace until Ctrl-C: python -m tests.fakes.azureml --port 8123"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading

from .fake import FakeAzureML


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--subscription-id", default="00000000-0000-0000-0000-000000000000")
    parser.add_argument("--resource-group", default="rg")
    parser.add_argument("--workspace", default="ws")
    parser.add_argument("--job-seconds", type=float, default=5.0)
    args = parser.parse_args()
    # SIGTERM (kill, timeout) leaves through the with-block too, so the certificate directory goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with FakeAzureML(args.subscription_id, args.resource_group, args.workspace, host=args.host,
                     port=args.port, job_seconds=args.job_seconds) as fake:
        print(f"Fake Azure ML workspace at {fake.url}", flush=True)
        print(f"  subscription {args.subscription_id}, resource group {args.resource_group}, "
              f"workspace {args.workspace}")
        print(f"  blob account URL {fake.blob_account_url} (account key {fake.storage_key})")
        print("Export these before starting Python:")
        for key, value in fake.env().items():
            print(f"export {key}={shlex.quote(value)}")
        print("Then: MLClient(tests.fakes.azureml.FakeCredential(), subscription_id, resource_group, workspace)"
              " - any bearer token is accepted. Ctrl-C stops.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
