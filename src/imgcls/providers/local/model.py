"""The local classifier as torch modules — backbone features, a standardising linear head — and the
loss and accuracy that training and fine-tuning share."""
from __future__ import annotations

import io
import math

from imgcls.errors import MissingDependency
from imgcls.providers.local import allocator
from imgcls.providers.local.backbone import BACKBONES
from imgcls.providers.local.preprocess import Preprocessing
from imgcls.runs import atomic_write

# Every torch module of the engine imports torch from here: tune malloc before torch allocates anything.
allocator.configure()
try:
    import torch
    from torch import nn
except ImportError:
    raise MissingDependency("local", "torch") from None

MIN_CALIBRATION_IMAGES = 20


def preprocessing_for(backbone: str, size: int | None = None) -> Preprocessing:
    """The backbone's own input size unless `size` says otherwise (the network is fully convolutional)."""
    return Preprocessing.for_input(size or BACKBONES[backbone][3])


class Head(nn.Module):
    """Standardise the pooled features with training statistics, then one linear layer."""

    def __init__(self, dim: int, n_labels: int, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, n_labels)

    def forward(self, feats):
        return self.fc(self.dropout((feats - self.mean) * self.scale))

    def fold_standardisation(self) -> None:
        """Move the standardisation into the linear layer (same logits), so that heads trained on
        different images, with different feature statistics, can be averaged weight by weight."""
        with torch.no_grad():
            self.fc.weight.mul_(self.scale)
            self.fc.bias.sub_(self.fc.weight @ self.mean)
            self.mean.zero_()
            self.scale.fill_(1.0)

    def sharpen(self, temperature: float) -> None:
        """Divide the logits by `temperature` for good: argmax and the 0-logit threshold stay, the
        probabilities become calibrated."""
        with torch.no_grad():
            self.fc.weight.div_(temperature)
            self.fc.bias.div_(temperature)


class Classifier(nn.Module):
    """Backbone + head; returns logits."""

    def __init__(self, features: nn.Module, head: Head):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):
        return self.head(self.features(x))


def head_loss(logits, targets, multilabel: bool, smoothing: float = 0.0):
    if multilabel:  # summed over labels so the weight decay means the same for any label count
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    return nn.functional.cross_entropy(logits, targets, label_smoothing=smoothing)


def accuracy(logits, targets, multilabel: bool) -> float:
    """Multiclass: top-1 accuracy. Multilabel: exact-match accuracy at threshold 0.5."""
    if multilabel:
        return float(((logits > 0) == (targets > 0.5)).all(dim=1).float().mean())
    return float((logits.argmax(1) == targets).float().mean())


def fit_temperature(logits, targets, multilabel: bool) -> float:
    """The temperature T in [1/3, 3] minimising the validation loss of logits / T; 1 with fewer than
    MIN_CALIBRATION_IMAGES validation images, too few to tell calibration from luck.

    Fine-tuning with label smoothing leaves the softmax under-confident (recall at 0.5 fell well below
    accuracy); a weakly regularised head can be over-confident. One scalar fixes either without
    changing a single decision."""
    if len(logits) < MIN_CALIBRATION_IMAGES:
        return 1.0
    grid = torch.exp(torch.linspace(-math.log(3), math.log(3), 45))
    with torch.no_grad():
        losses = [float(head_loss(logits / t, targets, multilabel)) for t in grid]
    return round(float(grid[int(torch.tensor(losses).argmin())]), 4)


def atomic_save(obj, path) -> None:
    """torch.save through runs.atomic_write: a crash never leaves half a model or checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())
