"""The latent-space figures (``vae_lightning.pictures.latent_space``) in TensorBoard's Images tab during training."""

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
from vae_lightning.pictures.latent_space import latent_figures

#: The figures drawn for TensorBoard.
TENSORBOARD_FIGURES = ("scatter", "manifold", "interpolations")


class LatentSpaceFigures(Callback):
    """Logs the latent-space figures to TensorBoard as ``latent_space/scatter``, ``manifold`` (a
    2-D latent space) and ``interpolations`` every few validations (the image-grid callbacks
    show samples and reconstructions).

    The first ``num_images`` validation images (the loader is not shuffled, so the same ones
    every epoch) are kept as they pass; drawing happens only on due epochs, after validation.

    Args:
        every_n_epochs: draw after every n-th validation epoch (drawing takes about a second); 0: off.
        num_images: validation images in the scatter plot (and the pool of interpolation pairs).
        seed: seed of the interpolation pairs.
    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 2000, seed: int = 0) -> None:
        super().__init__()
        self.every_n_epochs = checked_every_n_epochs(every_n_epochs)
        self.num_images = num_images
        self.seed = seed
        self._images: list[Tensor] = []
        self._labels: list[Tensor] = []

    def _kept(self) -> int:
        return sum(len(chunk) for chunk in self._images)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        missing = self.num_images - self._kept()
        if missing > 0 and self.every_n_epochs > 0 and not trainer.sanity_checking:
            images, labels = batch
            self._images.append(images[:missing].detach().cpu().clone())
            self._labels.append(labels[:missing].detach().cpu().clone())

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._images or not due_after_validation(trainer, self.every_n_epochs):
            return
        writers = tensorboard_writers(trainer)
        if not writers:
            return
        images, labels = torch.cat(self._images), torch.cat(self._labels)
        figures = latent_figures(pl_module, images, labels, seed=self.seed, names=TENSORBOARD_FIGURES)
        for name, figure in figures.items():
            for writer in writers:
                writer.add_figure(f"latent_space/{name}", figure, global_step=trainer.global_step, close=False)
