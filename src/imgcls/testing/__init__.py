"""The test kit for provider authors: the contract suite every provider passes, as a class to subclass.

    from imgcls.testing import ProviderContract

    class TestMyProvider(ProviderContract):
        @pytest.fixture
        def harness(self, tmp_path, monkeypatch):
            with my_fake() as fake:          # your fake service, started per test
                yield MyHarness(fake)        # .provider, .config (YAML for your section), .leftovers(run)

The pytest plugin (`imgcls.testing.plugin`, entry point `pytest11`) adds the fixtures `imgcls_workdir` and
`imgcls_dataset` for a provider's own tests. See docs/providers.md.
"""
from __future__ import annotations

from .contract import Harness, ProviderContract, contract_config
from .images import make_dataset, make_image

__all__ = ["Harness", "ProviderContract", "contract_config", "make_dataset", "make_image"]
