"""The contract suite (imgcls.testing) run by the built-in providers, each through its harness_<name>.py.

Cloud providers run through their real SDKs against the fakes in tests/fakes/.
"""
from __future__ import annotations

import importlib

import pytest

from imgcls.testing import ProviderContract, contract_config

PROVIDERS = ["local", "customvision", "vertex", "azureml", "aws"]

config_for = contract_config  # the name other tests import


class TestBuiltinProviders(ProviderContract):
    @pytest.fixture(params=PROVIDERS)
    def harness(self, request, tmp_path, monkeypatch):
        module = importlib.import_module(f"tests.contract.harness_{request.param}")
        with module.start(tmp_path, monkeypatch) as h:
            yield h
