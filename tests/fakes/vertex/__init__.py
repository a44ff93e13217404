"""A local, stateful fake of Vertex AI (v1 REST, as google-cloud-aiplatform sends it) and of the
Cloud Storage JSON API, for tests and for trying the vertex provider offline."""
from tests.fakes.vertex.server import FakeVertex

__all__ = ["FakeVertex"]
