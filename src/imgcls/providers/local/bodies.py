"""The local endpoint's request and answer bodies as pydantic models, in the clouds' shapes (Vertex AI
`instances`, Azure ML `input_data`, Custom Vision's answer to raw bytes), and `render`, which fills them."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

UNKNOWN_BODY = ('unknown body: expected {"instances": [{"content": <base64>}, ...]} (Vertex AI) or '
                '{"input_data": {"columns": ["image"], "data": [<base64>, ...]}} (Azure ML), as application/json; '
                'or the image itself as application/octet-stream or image/*')


class Body(BaseModel):
    # An unknown key is a mistake worth naming (`contents`, `parameter`), not something to ignore.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class VertexInstance(Body):
    content: str = Field(description="The image file (JPEG, PNG, BMP, GIF, WebP or TIFF), base64-encoded.")
    mimeType: str | None = Field(None, description="Accepted and ignored: the image's own header tells its format.")


class VertexParameters(Body):
    confidenceThreshold: float = Field(0.0, ge=0, le=1, description="Leave out labels scored below this.")
    maxPredictions: int = Field(10, ge=0, le=2**31 - 1, description="Most labels per image, best first.")


class VertexRequest(Body):
    """Vertex AI's online prediction body for AutoML image classification."""
    instances: list[VertexInstance] = Field(min_length=1)
    parameters: VertexParameters | None = None


class AzureMLTable(Body):
    columns: list[str] = Field(default_factory=lambda: ["image"],
                               description='Column names; the image is the column named "image", or the only one.')
    index: list[int | str] | None = Field(None, description="Accepted and ignored (pandas' split orient).")
    data: list[str | list[Any]] = Field(min_length=1, description="Rows: a base64 string each, or one cell per column.")

    @model_validator(mode="after")
    def _rows_fit_columns(self):
        if "image" not in self.columns and len(self.columns) != 1:
            raise ValueError(f'input_data.columns {self.columns} has no "image" column')
        column = self.image_column
        for i, row in enumerate(self.data):
            if isinstance(row, list):
                if len(row) != len(self.columns):
                    raise ValueError(f"input_data.data[{i}] has {len(row)} cells for {len(self.columns)} columns")
                if not isinstance(row[column], str):
                    raise ValueError(f"input_data.data[{i}][{column}] must be a base64 string, "
                                     f"not {type(row[column]).__name__}")
            elif len(self.columns) != 1:
                raise ValueError(f"input_data.data[{i}] is a plain string but there are {len(self.columns)} "
                                 f"columns: send a row with one cell per column")
        return self

    @property
    def image_column(self) -> int:
        return self.columns.index("image") if "image" in self.columns else 0

    def images(self) -> list[str]:
        return [row[self.image_column] if isinstance(row, list) else row for row in self.data]


class AzureMLRequest(Body):
    """Azure ML's managed online endpoint body (MLflow `input_data`, pandas split orient)."""
    input_data: AzureMLTable


def _shape(body: Any) -> str | None:
    if isinstance(body, dict):
        if "instances" in body:
            return "vertex"
        if "input_data" in body:
            return "azureml"
    return None


PredictRequest = Annotated[
    Annotated[VertexRequest, Tag("vertex")] | Annotated[AzureMLRequest, Tag("azureml")],
    Discriminator(_shape, custom_error_type="unknown_body", custom_error_message=UNKNOWN_BODY)]
REQUEST = TypeAdapter(PredictRequest)


# -- answers --------------------------------------------------------------------------------------
class VertexPrediction(BaseModel):
    ids: list[str]
    displayNames: list[str]
    confidences: list[float]


class VertexAnswer(BaseModel):
    """To a Vertex AI body: labels per image, best first, filtered by the parameters."""
    predictions: list[VertexPrediction]
    deployedModelId: str


class AzureMLRow(BaseModel):
    """To an Azure ML body (a list of these, one per row): every label's probability."""
    probs: list[float]
    labels: list[str]


class TagPrediction(BaseModel):
    probability: float
    tagId: str
    tagName: str


class ImagePrediction(BaseModel):
    """To raw image bytes: Custom Vision's answer to classify/iterations/{name}/image, best first."""
    id: str
    project: str
    iteration: str
    created: str
    predictions: list[TagPrediction]


class ErrorAnswer(BaseModel):
    error: str = Field(description="What is wrong, naming the field or image.")
    code: int
    detail: list[dict] | None = Field(None, description="pydantic's errors: loc (the field's path), msg, type.")


class Health(BaseModel):
    status: str
    labels: list[str]
    model: dict
    limits: dict = Field(description="deploy.limits of this server; clients size their requests by them.")
    in_flight: int = Field(0, description="Prediction requests being answered now (at most limits.max_concurrent).")


def render(kind: str, labels: list[str], probs: list[np.ndarray], params: VertexParameters | None):
    if kind == "azureml":
        return [{"probs": [round(float(p), 6) for p in row], "labels": labels} for row in probs]
    if kind == "raw":
        row = probs[0]
        order = np.argsort(-row, kind="stable")
        return {"id": str(uuid.uuid4()), "project": "local", "iteration": "local",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "predictions": [{"probability": round(float(row[i]), 6), "tagId": str(i), "tagName": labels[i]}
                                for i in order]}
    params = params or VertexParameters()
    predictions = []
    for row in probs:
        order = [i for i in np.argsort(-row, kind="stable") if row[i] >= params.confidenceThreshold]
        order = order[:params.maxPredictions]
        predictions.append({"ids": [str(i) for i in order], "displayNames": [labels[i] for i in order],
                            "confidences": [round(float(row[i]), 6) for i in order]})
    return {"predictions": predictions, "deployedModelId": "local"}
