"""What the fake Custom Vision service remembers (projects, tags, images, iterations, exports)
and how each thing looks on the wire (the camelCase JSON of the SDK's models)."""
from __future__ import annotations

import hashlib
import io
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from PIL import Image as PILImage

from tests.fakes.toymodel import ToyModel

# Limits the service documents: 6 MB per training image, 4 MB per prediction image,
# 64 images and 20 tags per upload batch, 256 ids per list query.
MAX_TRAINING_IMAGE_BYTES = 6 * 1024 * 1024
MAX_PREDICTION_IMAGE_BYTES = 4 * 1024 * 1024
MAX_BATCH_IMAGES = 64
MAX_BATCH_TAGS = 20
MAX_TAKE = 256
MAX_IMAGE_SIDE = 10240
MIN_IMAGES_PER_TAG = 5
IMAGE_FORMATS = {"JPEG", "PNG", "BMP", "GIF"}

_CLASSIFICATION_EXPORTS = ["CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino"]
_DETECTION_EXPORTS = ["CoreML", "TensorFlow", "DockerFile", "ONNX", "OpenVino"]
# Flavors each platform accepts; None means the platform takes no flavor.
EXPORT_FLAVORS = {
    "ONNX": {None, "ONNX10", "ONNX12"},
    "DockerFile": {None, "Linux", "Windows", "ARM"},
    "TensorFlow": {None, "TensorFlowNormal", "TensorFlowLite"},
    "CoreML": {None}, "VAIDK": {None}, "OpenVino": {None},
}


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    type: str
    exportable_platforms: tuple[str, ...] = ()

    @property
    def exportable(self) -> bool:
        return bool(self.exportable_platforms)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.type, "exportable": self.exportable,
                "enabled": True, "exportablePlatforms": list(self.exportable_platforms),
                "modelInformation": None}


# The ids, names and order GET /domains returns on the real service; only compact domains export.
DOMAINS = [
    Domain("2e37d7fb-3a54-486a-b4d6-cfc369af0018", "General [A2]", "Classification"),
    Domain("a8e3c40f-fb4a-466f-832a-5e457ae4a344", "General [A1]", "Classification"),
    Domain("ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", "Classification"),
    Domain("c151d5b5-dd07-472a-acc8-15d29dea8518", "Food", "Classification"),
    Domain("ca455789-012d-4b50-9fec-5bb63841c793", "Landmarks", "Classification"),
    Domain("b30a91ae-e3c1-4f73-a81e-c270bff27c39", "Retail", "Classification"),
    Domain("45badf75-3591-4f26-a705-45678d3e9f5f", "Adult", "Classification"),
    Domain("a1db07ca-a19a-4830-bae8-e004a42dc863", "General (compact) [S1]", "Classification",
           tuple(_CLASSIFICATION_EXPORTS)),
    Domain("0732100f-1a38-4e49-a514-c9b44c697ab5", "General (compact)", "Classification",
           tuple(_CLASSIFICATION_EXPORTS)),
    Domain("8882951b-82cd-4c32-970b-d5f8cb8bf6d7", "Food (compact)", "Classification",
           tuple(_CLASSIFICATION_EXPORTS)),
    Domain("b5cfd229-2ac7-4b2b-8d0a-2b0661344894", "Landmarks (compact)", "Classification",
           tuple(_CLASSIFICATION_EXPORTS)),
    Domain("6b4faeda-8396-481b-9f8b-177b9fa3097f", "Retail (compact)", "Classification",
           tuple(_CLASSIFICATION_EXPORTS)),
    Domain("9c616dff-2e7d-ea11-af59-1866da359ce6", "General [A1]", "ObjectDetection"),
    Domain("da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", "ObjectDetection"),
    Domain("1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4", "Logo", "ObjectDetection"),
    Domain("3780a898-81c3-4516-81ae-3a139614e1f3", "Products on Shelves", "ObjectDetection"),
    Domain("7ec2ac80-887b-48a6-8df9-8b1357765430", "General (compact) [S1]", "ObjectDetection",
           tuple(_DETECTION_EXPORTS)),
    Domain("a27d5ca5-bb19-49d8-a70a-fec086c47f5b", "General (compact)", "ObjectDetection",
           tuple(_DETECTION_EXPORTS)),
]
DOMAINS_BY_ID = {d.id: d for d in DOMAINS}
GENERAL_DOMAIN_ID = "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


class ServiceError(Exception):
    """An error the Custom Vision service itself answers: a top-level {"code", "message"} body,
    which is the shape the SDK's CustomVisionError model deserializes."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(404, code, message)


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def inspect_image(data: bytes) -> tuple[str | None, int, int]:
    """(error status or None, width, height) for uploaded bytes, as the service classifies them."""
    if len(data) > MAX_TRAINING_IMAGE_BYTES:
        return "ErrorImageSize", 0, 0
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format, im.size
            im.verify()
    except Exception:
        return "ErrorImageFormat", 0, 0
    if fmt not in IMAGE_FORMATS:
        return "ErrorImageFormat", 0, 0
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        return "ErrorImageDimensions", width, height
    return None, width, height


@dataclass
class Tag:
    id: str
    name: str
    description: str | None
    type: str = "Regular"

    def to_json(self, image_count: int) -> dict:
        return {"id": self.id, "name": self.name, "description": self.description, "type": self.type,
                "imageCount": image_count}


@dataclass
class Image:
    id: str
    data: bytes
    width: int
    height: int
    created: float
    tag_ids: dict[str, float] = field(default_factory=dict)  # tag id -> when it was applied
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Export:
    platform: str
    flavor: str | None
    token: str
    ready_at: float
    data: bytes  # the zip served at downloadUri once Done
    status: str = "Exporting"

    def advance(self, now: float) -> None:
        if self.status == "Exporting" and now >= self.ready_at:
            self.status = "Done"


@dataclass
class Iteration:
    id: str
    name: str
    project_id: str
    domain_id: str
    classification_type: str | None
    training_type: str
    reserved_budget_in_hours: int
    created: float
    ready_at: float
    fail_details: str | None  # set when fault injection decided this training fails
    tags: dict[str, Tag]  # the tags as they were when training started
    examples: list[tuple[str, list[str]]]  # (image id, tag ids) the model was trained on
    signature: frozenset
    status: str = "Training"
    last_modified: float = 0.0
    trained_at: float | None = None
    model: ToyModel | None = None  # fitted when training starts, served once Completed
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # image id -> tag id -> score
    publish_name: str | None = None
    publish_resource_id: str | None = None
    exports: list[Export] = field(default_factory=list)
    error_details: str | None = None

    def advance(self, now: float) -> None:
        """Training finishes when the clock passes ready_at; read paths call this so no thread is needed."""
        if self.status != "Training" or now < self.ready_at:
            return
        if self.fail_details:
            self.status, self.error_details = "Failed", self.fail_details
            self.model, self.scores = None, {}
        else:
            self.status, self.trained_at = "Completed", now
        self.last_modified = now

    @property
    def exportable_to(self) -> list[str]:
        return list(DOMAINS_BY_ID[self.domain_id].exportable_platforms)

    def to_json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "status": self.status,
            "created": iso(self.created), "lastModified": iso(self.last_modified or self.created),
            "trainedAt": iso(self.trained_at), "projectId": self.project_id,
            "exportable": self.status == "Completed" and bool(self.exportable_to),
            "exportableTo": self.exportable_to, "domainId": self.domain_id,
            "classificationType": self.classification_type, "trainingType": self.training_type,
            "reservedBudgetInHours": self.reserved_budget_in_hours,
            "trainingTimeInMinutes": max(1, round((self.ready_at - self.created) / 60)),
            "publishName": self.publish_name, "originalPublishResourceId": self.publish_resource_id,
            "customBaseModelInfo": None, "trainingErrorDetails": self.error_details,
        }


@dataclass
class Project:
    id: str
    name: str
    description: str | None
    domain_id: str
    classification_type: str | None
    target_export_platforms: list[str]
    created: float
    last_modified: float
    tags: dict[str, Tag] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    iterations: dict[str, Iteration] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)  # stored prediction results (not /nostore)
    iterations_created: int = 0  # names go on counting after deletes: "Iteration 3" stays 3

    @property
    def domain(self) -> Domain:
        return DOMAINS_BY_ID[self.domain_id]

    def to_json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "description": self.description,
            "settings": {
                "domainId": self.domain_id, "classificationType": self.classification_type,
                "targetExportPlatforms": list(self.target_export_platforms), "useNegativeSet": True,
                "detectionParameters": None, "imageProcessingSettings": None,
                "exportModelContainerUri": None, "notificationQueueUri": None,
            },
            "created": iso(self.created), "lastModified": iso(self.last_modified), "thumbnailUri": None,
            "drModeEnabled": False, "status": "Succeeded",
        }

    def image_json(self, image: Image, base_url: str) -> dict:
        # Three signed blob links, as the service returns: only the original holds the uploaded bytes;
        # the resized copy and the thumbnail are re-encoded by the service.
        uri = f"{base_url}/_fake/images/{self.id}/{image.id}"
        tags = [{"tagId": tid, "tagName": self.tags[tid].name, "created": iso(ts)}
                for tid, ts in image.tag_ids.items() if tid in self.tags]
        return {"id": image.id, "created": iso(image.created), "width": image.width,
                "height": image.height, "resizedImageUri": f"{uri}/resized", "thumbnailUri": f"{uri}/thumbnail",
                "originalImageUri": uri, "tags": tags or None, "regions": None,
                "metadata": image.metadata or None}

    def find_duplicate(self, data: bytes) -> Image | None:
        digest = hashlib.sha256(data).hexdigest()
        return next((im for im in self.images.values() if im.sha256 == digest), None)

    def tag_image_count(self, tag_id: str) -> int:
        return sum(1 for im in self.images.values() if tag_id in im.tag_ids)

    def published(self) -> list[Iteration]:
        return [it for it in self.iterations.values() if it.publish_name]


@dataclass
class State:
    projects: dict[str, Project] = field(default_factory=dict)

    def project(self, project_id: str) -> Project:
        project = self.projects.get(project_id.lower())
        if project is None:
            raise not_found("NotFoundProject", f"Project not found: {project_id}")
        return project

    def advance(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for project in self.projects.values():
            for iteration in project.iterations.values():
                iteration.advance(now)
                for export in iteration.exports:
                    export.advance(now)

    def is_empty(self) -> bool:
        return not self.projects
