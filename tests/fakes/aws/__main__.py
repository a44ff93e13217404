"""`python -m tests.fakes.aws --port 8125`: serve the fake until Ctrl-C; prints the environment boto3 needs."""
from __future__ import annotations

import argparse
import time

from tests.fakes.aws import FakeAws


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.aws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8125)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--train-seconds", type=float, default=5.0, help="how long training runs (default 5)")
    parser.add_argument("--start-seconds", type=float, default=2.0, help="how long a model takes to start")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket at start (repeatable)")
    args = parser.parse_args()
    with FakeAws(args.region, args.host, args.port, args.train_seconds, args.start_seconds) as fake:
        for bucket in args.bucket:
            fake.state.buckets[bucket] = {}
        for name, value in fake.env().items():
            print(f"export {name}={value}")
        print(flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
