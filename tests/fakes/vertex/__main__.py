"""`python -m tests.fakes.vertex --port 8123`: serve the fake until Ctrl-C and print how to use it."""
from __future__ import annotations

import argparse
import time

from tests.fakes.vertex import FakeVertex


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.vertex", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--project", default="test-project")
    parser.add_argument("--location", default="us-central1")
    parser.add_argument("--pipeline-seconds", type=float, default=5.0,
                        help="how long a training pipeline runs (default 5)")
    parser.add_argument("--bucket", action="append", default=[],
                        help="create this bucket at start (repeatable)")
    args = parser.parse_args()
    with FakeVertex(args.project, args.location, host=args.host, port=args.port,
                    pipeline_seconds=args.pipeline_seconds) as fake:
        for bucket in args.bucket:
            fake.gcs.create_bucket(bucket)
        print(f"fake Vertex AI + Cloud Storage at {fake.url}\n\n"
              f"export STORAGE_EMULATOR_HOST={fake.gcs_url}\n\n"
              f"from google.auth.credentials import AnonymousCredentials\n"
              f"aiplatform.init(project={args.project!r}, location={args.location!r}, "
              f"api_endpoint={fake.url!r}, api_transport=\"rest\", credentials=AnonymousCredentials())\n\n"
              f"Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
