"""The feature network of the sample metrics: a small convolutional classifier, and the weights file
that pins it.

FIDs computed with different extractors are not comparable, so a weights file is named by its
SHA-256 wherever a score is shown. A file written by ``python -m vae_lightning.quality.train_features``
holds the weights and what they were trained on (dataset, image shape, classes, test accuracy); a
JSON file beside it records the same with the checksum and the command. Loading checks the file
against that checksum, and never runs pickled code (``weights_only``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vae_lightning.runtime.errors import UserError

#: Where the shipped weights live: ``<name>.pt`` and ``<name>.json`` (``feature_network: mnist``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class FeatureNetwork(nn.Module):
    """Three 3x3 convolutions (16, 32, 64 channels), each with a ReLU and 2x2 max-pooling, and a
    fully connected layer give ``num_features`` = 128 features per image (the layer's outputs), the
    input of FID, KID and precision/recall; a linear layer on them classifies, which is what
    training fits.

    Args:
        in_channels: channels of the images (1 for MNIST, 3 for CIFAR-10).
        num_classes: classes of the labelled training split.
        height: image height (28 for MNIST, 32 for CIFAR-10).
        width: image width.
    """

    num_features = 128

    def __init__(self, in_channels: int = 1, num_classes: int = 10, height: int = 28, width: int = 28) -> None:
        super().__init__()
        if min(height, width) < 8:
            raise ValueError(f"the feature network needs images of at least 8 x 8 pixels, got {height} x {width}")
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (height // 8) * (width // 8), self.num_features),  # three poolings: 28 -> 3
        )  # fmt: skip
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, 128) of float images (B, C, H, W) with pixels in [0, 1]."""
        return self.body(x)

    def classify(self, x: Tensor) -> Tensor:
        """Class logits (B, num_classes)."""
        return self.classifier(self.body(x))


def sha256(path: Path) -> str:
    """The SHA-256 of a file, as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class LoadedFeatureNetwork:
    """A feature network ready to use (eval mode, no gradients) and what identifies it."""

    network: FeatureNetwork
    path: Path
    sha256: str
    dataset: str
    image_shape: tuple[int, int, int]
    test_accuracy: float

    def describe(self) -> str:
        """The line printed with every score: which extractor, so scores are compared only with their kind."""
        return f"feature network {self.path.name} ({self.dataset}, test accuracy {self.test_accuracy:.2%}, sha256 {self.sha256})"


def save_feature_network(network: FeatureNetwork, path: Path, about: dict[str, Any]) -> str:
    """Write the weights and ``about`` (dataset, image_shape, num_classes, test_accuracy) to ``path``;
    returns the file's SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": network.state_dict(), **about}, path)
    return sha256(path)


def resolve_weights(name_or_path: str) -> Path:
    """``mnist`` (a shipped file's name) or the path of a ``.pt`` file written by ``train_features``."""
    shipped = WEIGHTS_DIR / f"{name_or_path}.pt"
    if "/" not in name_or_path and not name_or_path.endswith(".pt") and shipped.is_file():
        return shipped
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        names = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise UserError(
            f"evaluation.feature_network: no weights at {name_or_path!r}; give one of the shipped names {names}, "
            "the .pt file written by `python -m vae_lightning.quality.train_features`, or null for no sample metrics"
        )
    return path


def load_feature_network(name_or_path: str, map_location: str | torch.device = "cpu") -> LoadedFeatureNetwork:
    """Load a feature network by shipped name or path; where a JSON record lies beside the file,
    its SHA-256 must match the file's."""
    path = resolve_weights(name_or_path)
    digest = sha256(path)
    record = path.with_suffix(".json")
    if record.is_file():
        expected = json.loads(record.read_text()).get("sha256")
        if expected and expected != digest:
            raise UserError(f"{path}: its SHA-256 {digest} is not the {expected} recorded in {record}; the file changed, train it again")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
        shape = tuple(saved["image_shape"])
        network = FeatureNetwork(shape[0], saved["num_classes"], shape[1], shape[2])
        network.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError, ValueError, OSError) as err:
        raise UserError(f"{path} is not a feature network written by `python -m vae_lightning.quality.train_features`: {err}") from err
    network.eval().requires_grad_(False)
    return LoadedFeatureNetwork(network, path, digest, saved["dataset"], shape, float(saved["test_accuracy"]))
