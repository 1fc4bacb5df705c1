"""Turning flat pixel vectors back into pictures: one place for the image shape and grid style."""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor
from torchvision.utils import make_grid, save_image


def as_images(flat: Tensor) -> Tensor:
    """(B, D) pixels in [0, 1] -> (B, 1, H, W) square single-channel images (28x28 for MNIST)."""
    side = math.isqrt(flat.shape[-1])
    if side * side != flat.shape[-1]:
        raise ValueError(f"cannot view {flat.shape[-1]} pixels as a square image")
    return flat.reshape(-1, 1, side, side)


def image_grid(flat: Tensor, nrow: int = 8) -> Tensor:
    """A (3, H', W') grid of the images in ``flat``, values clamped to [0, 1] for display."""
    images = as_images(flat.detach().float().cpu())
    return make_grid(images, nrow=nrow, padding=2, value_range=(0, 1), normalize=False, pad_value=1.0)


def save_image_grid(flat: Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write ``flat`` as one PNG grid; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(flat, nrow=nrow), path)
    return path


def grid_rows(num_images: int) -> int:
    """Images per row for a near-square grid."""
    return max(1, math.isqrt(max(num_images, 1)))


