"""FID of samples from the prior during training, logged beside the loss (``val/fid``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from vae_lightning.callbacks.schedule import checked_every_n_epochs, due_after_validation
from vae_lightning.quality import SampleQuality, load_feature_network
from vae_lightning.quality.metrics import METRIC_NAMES, checked_image_count


class SampleQualityMonitor(Callback):
    """After every n-th validation, logs ``val/fid`` (and any other of ``metrics``) between
    ``num_images`` decoded draws from the prior (the same draws each time) and the first
    ``num_images`` validation images, in the features of ``feature_network``; the network's
    SHA-256 is printed when training starts.

    Args:
        every_n_epochs: measure after every n-th validation epoch; 0: off.
        num_images: prior samples and validation images compared (per process).
        feature_network: ``mnist`` (shipped) or a ``.pt`` file from
            ``python -m vae_lightning.quality.train_features``.
        metrics: which of ``fid``, ``kid``, ``precision``, ``recall`` to log as ``val/<name>``.
        seed: seed of the fixed latent draws.
    """

    def __init__(
        self,
        every_n_epochs: int = 0,
        num_images: int = 1000,
        feature_network: str = "mnist",
        metrics: Sequence[str] = ("fid",),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if unknown := set(metrics) - set(METRIC_NAMES):
            raise ValueError(f"metrics must be among {list(METRIC_NAMES)}, got {sorted(unknown)}")
        self.every_n_epochs = checked_every_n_epochs(every_n_epochs)
        self.num_images = checked_image_count("num_images", num_images)
        self.feature_network = feature_network
        self.metrics = list(metrics)
        self.seed = seed
        self.quality: SampleQuality | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_epochs == 0 or self.quality is not None:
            return
        features = load_feature_network(self.feature_network)
        self.quality = SampleQuality(features.network).to(pl_module.device)
        rank_zero_info(f"SampleQualityMonitor: val/{', val/'.join(self.metrics)} every {self.every_n_epochs} epochs, {features.describe()}")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.quality is not None and not trainer.sanity_checking and (room := self.num_images - self.quality.count()) > 0:
            self.quality.update(real=batch[0][:room])  # the validation images are not shuffled: the same ones each epoch

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.quality is None or self.quality.count() < self.quality.min_images or not due_after_validation(trainer, self.every_n_epochs):
            return
        self.quality.add_prior_samples(pl_module.generate, torch.Generator().manual_seed(self.seed + trainer.global_rank))
        scores = self.quality.compute("samples", self.metrics)
        pl_module.log_dict({f"val/{name}": value.to(pl_module.device) for name, value in scores.items()}, sync_dist=False)
        self.quality.reset(real=False)
