"""The `example:` section of a run config; imported to validate configs, so it imports no service client."""
from __future__ import annotations

import os

from pydantic import Field

from imgcls.config import Section

SERVICE_ENV = "EXAMPLE_SERVICE_DIR"


class ExampleConfig(Section):
    service: str | None = Field(None, description=f"Folder holding the service's state; unset: ${SERVICE_ENV}.")
    train_seconds: float = Field(0.3, ge=0, description="How long the service takes to train.")


def service_root(section: ExampleConfig | None) -> str | None:
    """Where the service is: the config's setting, else the environment (like a cloud's credential chain)."""
    return (section.service if section is not None else None) or os.environ.get(SERVICE_ENV) or None
