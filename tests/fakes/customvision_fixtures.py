"""pytest fixtures for the fake Custom Vision service; import them into a test module
(`from tests.fakes.customvision_fixtures import customvision_fake, customvision_clients`)."""
from __future__ import annotations

import pytest

from tests.fakes.customvision import FakeCustomVision


@pytest.fixture
def customvision_fake():
    """A running fake whose trainings and exports finish in a blink."""
    with FakeCustomVision(training_key="test-training-key", prediction_key="test-prediction-key",
                          train_seconds=0.05, export_seconds=0.05) as fake:
        yield fake


@pytest.fixture
def customvision_clients(customvision_fake):
    """(training client, prediction client) of the real SDK, pointed at the fake."""
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    fake = customvision_fake
    trainer = CustomVisionTrainingClient(
        fake.url, ApiKeyCredentials(in_headers={"Training-key": fake.training_key}))
    predictor = CustomVisionPredictionClient(
        fake.url, ApiKeyCredentials(in_headers={"Prediction-key": fake.prediction_key}))
    return trainer, predictor
