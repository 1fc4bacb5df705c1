"""TensorBoard image grids: samples from the prior and reconstructions of validation images."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from vae_lightning.callbacks.schedule import (
    checked_every_n_epochs,
    due_after_validation,
    tensorboard_writers,
)
from vae_lightning.pictures.grids import class_rows, grid_rows, image_grid


def _log_image(trainer: Trainer, tag: str, grid: Tensor) -> None:
    """Write ``grid`` to every TensorBoard logger of ``trainer`` at the current global step."""
    for writer in tensorboard_writers(trainer):
        writer.add_image(tag, grid, global_step=trainer.global_step)


class SampleGrid(Callback):
    """Decodes the same draws of z from the model's prior after each validation, so the grid shows progress.
    A conditional model's grid has one row per class, ``num_images // K`` draws each.

    Args:
        num_images: images in the grid (for a conditional model at least one per class).
        every_n_epochs: draw the grid after every n-th validation epoch.
        seed: seed of the fixed latent draws.
        tag: TensorBoard image tag.
    """

    def __init__(self, num_images: int = 64, every_n_epochs: int = 1, seed: int = 0, tag: str = "samples") -> None:
        super().__init__()
        self.num_images = num_images
        self.every_n_epochs = checked_every_n_epochs(every_n_epochs)
        self.seed = seed
        self.tag = tag

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not due_after_validation(trainer, self.every_n_epochs):
            return
        generator = torch.Generator().manual_seed(self.seed)
        num_classes = getattr(pl_module, "num_classes", None)
        if num_classes is None:
            images = pl_module.generate(self.num_images, generator=generator)
            _log_image(trainer, self.tag, image_grid(images, nrow=grid_rows(self.num_images)))
            return
        per_class = max(1, self.num_images // num_classes)
        classes = class_rows(range(num_classes), per_class)
        images = pl_module.generate(len(classes), generator=generator, classes=classes)
        _log_image(trainer, self.tag, image_grid(images, nrow=per_class))


class ReconstructionGrid(Callback):
    """Shows fixed validation images (odd columns) beside their reconstructions (even columns).

    The images are the first ones of the first validation batch, which is not shuffled,
    so they are the same every epoch.

    Args:
        num_images: images to reconstruct (the grid holds twice as many).
        every_n_epochs: draw the grid after every n-th validation epoch.
        tag: TensorBoard image tag.
    """

    def __init__(self, num_images: int = 32, every_n_epochs: int = 1, tag: str = "reconstructions") -> None:
        super().__init__()
        self.num_images = num_images
        self.every_n_epochs = checked_every_n_epochs(every_n_epochs)
        self.tag = tag
        self._images: Tensor | None = None
        self._labels: Tensor | None = None

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx == 0 and self._images is None:
            self._images = batch[0][: self.num_images].detach().clone()
            self._labels = batch[1][: self.num_images].detach().clone()

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._images is None or not due_after_validation(trainer, self.every_n_epochs):
            return
        images = self._images.to(pl_module.device)
        reconstructions = pl_module.reconstruct(images, self._labels.to(pl_module.device))
        pairs = torch.stack([images, reconstructions], dim=1).flatten(0, 1)  # (2n, C, H, W): original, reconstruction
        _log_image(trainer, self.tag, image_grid(pairs, nrow=2 * grid_rows(self.num_images)))
