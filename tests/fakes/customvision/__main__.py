"""Serve the fake Custom Vision service until Ctrl-C and print the environment to point clients at it."""
from __future__ import annotations

import argparse
import shlex
import threading

from tests.fakes.customvision import DEFAULT_PREDICTION_RESOURCE_ID, FakeCustomVision


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.customvision", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--training-key", default="fake-training-key")
    parser.add_argument("--prediction-key", default="fake-prediction-key")
    parser.add_argument("--prediction-resource-id", default=DEFAULT_PREDICTION_RESOURCE_ID)
    parser.add_argument("--train-seconds", type=float, default=5.0, help="how long a training takes")
    parser.add_argument("--export-seconds", type=float, default=2.0, help="how long an export takes")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    fake = FakeCustomVision(args.training_key, args.prediction_key, args.prediction_resource_id,
                            args.host, args.port, args.train_seconds, args.export_seconds, args.verbose)
    with fake:
        print(f"Fake Custom Vision listening on {fake.url}")
        for name, value in fake.env().items():
            print(f"export {name}={shlex.quote(value)}")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
