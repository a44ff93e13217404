"""A fake Azure Machine Learning workspace (management API, run history, blob storage, scoring) for tests."""
from .fake import ExpiredCredential, FakeAzureML, FakeCredential

__all__ = ["ExpiredCredential", "FakeAzureML", "FakeCredential"]
