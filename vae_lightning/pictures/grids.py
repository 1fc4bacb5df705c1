"""Image batches to pictures: one place for the grid style (torchvision's ``make_grid``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

#: Pixels between the cells of a grid.
GRID_PADDING = 2


def image_grid(images: Tensor, nrow: int = 8) -> Tensor:
    """A (3, H', W') grid of ``images`` (B, C, H, W) with pixels in [0, 1], clamped for display."""
    images = images.detach().float().cpu().clamp(0.0, 1.0)
    return make_grid(images, nrow=nrow, padding=GRID_PADDING, value_range=(0, 1), normalize=False, pad_value=1.0)


def save_image_grid(images: Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write ``images`` (B, C, H, W) as one PNG grid; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(images, nrow=nrow), path)
    return path


def class_rows(classes: Sequence[int], per_class: int) -> Tensor:
    """The class of each image of a grid with one row per class and ``per_class`` images a row."""
    return torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(per_class)


def grid_rows(num_images: int) -> int:
    """Images per row for a near-square grid."""
    return max(1, math.isqrt(max(num_images, 1)))
