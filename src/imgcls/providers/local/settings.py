"""The `local:` section: knobs of our own CPU engine that no cloud has."""
from __future__ import annotations

from pydantic import Field

from ...config import Section


class LocalConfig(Section):
    batch_size: int = Field(32, ge=1)
    tta: bool = Field(False, description="Test-time augmentation (flip) at predict time.")
