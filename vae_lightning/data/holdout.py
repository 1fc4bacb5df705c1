"""The validation images held out of the training images: ``data.val_size`` read as a count or a
fraction, and the seeded split that the datamodule and the LitData conversion both use, so that
every consumer holds out the same images."""

from __future__ import annotations

import torch
from torch import Tensor

from vae_lightning.runtime.errors import UserError


#: ``val_size: null`` holds out this many training images (MNIST's usual 5,000 of 60,000) ...
DEFAULT_VAL_IMAGES = 5000
#: ... or this fraction of them when that is fewer, so a small image folder works unchanged.
DEFAULT_VAL_FRACTION = 0.1

ValSize = int | float | None


def check_val_size(val_size: ValSize) -> ValSize:
    """``val_size`` with a whole number such as ``5000.0`` (the command line's reading of ``5000``)
    as a count; refuses one that fits no dataset: a count below 1 or a fraction outside (0, 1)."""
    if isinstance(val_size, bool) or not isinstance(val_size, int | float | None):
        raise ValueError(f"data.val_size must be a count of images, a fraction such as 0.1, or null; got {val_size!r}")
    if isinstance(val_size, float) and val_size >= 1 and val_size.is_integer():
        val_size = int(val_size)
    if isinstance(val_size, int) and val_size < 1:
        raise ValueError(f"data.val_size must be at least 1, got {val_size}")
    if isinstance(val_size, float) and not 0 < val_size < 1:
        raise ValueError(
            f"data.val_size as a fraction must be between 0 and 1, got {val_size}: "
            "give a fraction of the training images such as 0.1, or a whole count such as 5000"
        )
    return val_size


def validation_count(val_size: ValSize, num_images: int, dataset: str = "the dataset") -> int:
    """The number of the ``num_images`` training images held out: ``val_size`` as a count, as a
    fraction of them (rounded), or for ``None`` 5,000 or a tenth, whichever is fewer."""
    val_size = check_val_size(val_size)
    if val_size is None:
        count = min(DEFAULT_VAL_IMAGES, round(DEFAULT_VAL_FRACTION * num_images))
    elif isinstance(val_size, float):
        count = round(val_size * num_images)
    else:
        count = val_size
    if not 0 < count < num_images:
        asked = f"{val_size}" if isinstance(val_size, int) else f"{'null' if val_size is None else val_size} (as {count} images)"
        raise UserError(
            f"data.val_size must be between 1 and {num_images - 1} for the {num_images} training images "
            f"of {dataset}, got {asked}: set --data.val_size to a count in that range or a fraction such as 0.1"
        )
    return count


def train_val_split(num_images: int, val_size: ValSize, seed: int, dataset: str = "the dataset") -> tuple[Tensor, Tensor]:
    """Indices ``(train, val)`` of the seeded split of the training images, shared by every
    consumer of the split (the datamodule, the benchmarks) so they hold out the same images."""
    count = validation_count(val_size, num_images, dataset)
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))
    return order[count:], order[:count]
