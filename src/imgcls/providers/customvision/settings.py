"""Where the Custom Vision endpoints and keys come from: the `customvision:` section, else the VISION_*
variables. Errors name both places and never show a key."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, SecretStr

from ...config import Section
from ...errors import AuthError, ConfigError

# setting -> the environment variable it falls back to
ENV = {"training_endpoint": "VISION_TRAINING_ENDPOINT", "training_key": "VISION_TRAINING_KEY",
       "prediction_endpoint": "VISION_PREDICTION_ENDPOINT", "prediction_key": "VISION_PREDICTION_KEY",
       "prediction_resource_id": "VISION_PREDICTION_RESOURCE_ID"}


def where(setting: str) -> str:
    """How a message names a setting: `customvision.training_key (or VISION_TRAINING_KEY)`."""
    return f"customvision.{setting} (or {ENV[setting]})"


@dataclass(frozen=True)
class Settings:
    training_endpoint: str | None
    training_key: str | None = field(repr=False)
    prediction_endpoint: str | None
    prediction_key: str | None = field(repr=False)
    prediction_resource_id: str | None
    retries: int = 5

    def require(self, *names: str) -> None:
        """Fail before any call when a setting this step needs is missing (keys: AuthError, exit 5)."""
        for name in names:
            if getattr(self, name):
                continue
            if name.endswith("_key"):
                raise AuthError(f"no Custom Vision {name.replace('_', ' ')}: {where(name)} is not set",
                                hint=f"export {ENV[name]}=… (the key of your Custom Vision "
                                     f"{name.split('_')[0]} resource), or write customvision.{name}: "
                                     f"${{{ENV[name]}}} in the config")
            raise ConfigError(f"no Custom Vision {name.replace('_', ' ')}: {where(name)} is not set",
                              hint=_HINTS[name])


_HINTS = {
    "training_endpoint": "export VISION_TRAINING_ENDPOINT=https://<resource>.cognitiveservices.azure.com",
    "prediction_endpoint": "export VISION_PREDICTION_ENDPOINT=https://<resource>-prediction.cognitiveservices.azure.com",
    "prediction_resource_id": "the prediction resource's id, as the Azure portal shows it under Properties: "
                              "/subscriptions/…/providers/Microsoft.CognitiveServices/accounts/<name>",
}


def _value(section, name: str) -> str | None:
    value = getattr(section, name, None) if section is not None else None
    if value is not None and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    value = (value or "").strip() or os.environ.get(ENV[name], "").strip()
    return value or None


def resolve(section) -> Settings:
    """The settings of a `customvision:` section (or None), each falling back to its variable."""
    values = {name: _value(section, name) for name in ENV}
    if values["training_endpoint"]:
        values["training_endpoint"] = values["training_endpoint"].rstrip("/")
    if values["prediction_endpoint"]:
        values["prediction_endpoint"] = values["prediction_endpoint"].rstrip("/")
    return Settings(**values, retries=getattr(section, "retries", 5) if section is not None else 5)


class CustomVisionConfig(Section):
    # Keys are excluded from dumps (the run folder's config.yaml, `config show`) and hidden from repr.
    training_endpoint: str | None = Field(None, description="https://<resource>.cognitiveservices.azure.com; "
                                                               "unset: $VISION_TRAINING_ENDPOINT.")
    training_key: SecretStr | None = Field(None, exclude=True, repr=False,
                                              description="Write ${VISION_TRAINING_KEY}; unset: $VISION_TRAINING_KEY. "
                                                          "Never written to the run folder.")
    prediction_endpoint: str | None = Field(None, description="unset: $VISION_PREDICTION_ENDPOINT.")
    prediction_key: SecretStr | None = Field(None, exclude=True, repr=False,
                                                description="Write ${VISION_PREDICTION_KEY}; unset: $VISION_PREDICTION_KEY.")
    prediction_resource_id: str | None = Field(None, description="Azure resource id of the prediction resource, "
                                                                    "needed to publish; unset: $VISION_PREDICTION_RESOURCE_ID.")
    project_name: str | None = Field(None, description="Defaults to the config name.")
    project_id: str | None = Field(None, description="Train in this existing project (`imgcls down` never deletes "
                                                        "it); unset: the run creates its own project.")
    domain: str = Field("General [A2]", description="Domain name, e.g. 'General [A2]' or 'General (compact)'.")
    training_type: Literal["Regular", "Advanced"] | None = Field(
        None, description="Unset: from train.preset (quick: Regular; best: Advanced with train.node_hours).")
    publish_name: str | None = Field(None, description="Defaults to <name>-<run short id>.")
    export_platforms: list[str] = Field(default_factory=list, description="e.g. [ONNX, TensorFlow] (compact domains); "
                                                                          "`imgcls export` defaults to ONNX.")
    retries: int = Field(5, ge=0, le=20, description="Retries of a throttled (429) or failed (5xx, dropped "
                                                     "connection) call, honouring Retry-After.")
    region: str | None = Field(None, description="Azure region of the Custom Vision resources (e.g. westeurope), "
                                                 "for `imgcls plan`'s prices; unset: read from a regional endpoint "
                                                 "(https://<region>.api.cognitive.microsoft.com), else unknown.")
