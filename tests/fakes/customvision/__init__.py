"""A stateful fake of Azure Custom Vision (training v3.0-v3.4-preview, prediction v3.0-v3.1) that the
real SDK talks to over HTTP; `python -m tests.fakes.customvision` serves it on its own."""
from tests.fakes.customvision.server import DEFAULT_PREDICTION_RESOURCE_ID, FakeCustomVision

__all__ = ["DEFAULT_PREDICTION_RESOURCE_ID", "FakeCustomVision"]
