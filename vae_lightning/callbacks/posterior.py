"""What the posterior q(z|x) looks like after each validation epoch, for TensorBoard
(``latent/...`` scalars and histograms): the report's value ranges of mu and sigma, the KL per
latent dimension and the active units, so that posterior collapse shows."""

from __future__ import annotations

from collections.abc import Mapping
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
from vae_lightning.latent import active_units, latent_statistics, posterior_std


class LatentDiagnostics(Callback):
    """Logs, after each validation epoch, statistics of the posterior q(z|x) over all validation
    images: the report's "value range" of mu and sigma, the KL per latent dimension and the
    active units, so that posterior collapse shows in TensorBoard.

    Metrics (TensorBoard scalars, dimensions numbered from 1 as in the report's mu1, mu2):

    - ``latent/mu{i}_{min,max,mean,std}``, ``latent/sigma{i}_{min,max,mean,std}``,
      ``latent/logvar_mean`` (``vae_lightning.latent.latent_statistics``);
    - ``latent/kl_dim{i}``: KL(q(z_i|x) || p(z_i)) against the model's prior, averaged over the
      images (``Prior.kl_divergence_per_dim``); for N(0, I) they sum to ``val/kl``, for a mixture
      prior they are one-draw estimates against its marginals. A dimension with KL near 0
      carries no information about x;
    - ``latent/active_units``: dimensions whose mean varies across the images,
      Var_x(mu_i) > ``active_threshold`` (Burda et al. 2015; ``vae_lightning.latent.active_units``);
    - with ``histograms``, TensorBoard histograms ``latent/mu{i}`` and ``latent/sigma{i}``.

    The callback keeps the (images, d) means and log-variances that ``validation_step`` returns
    (``outputs["mu"]``, ``outputs["logvar"]``; a module whose step returns no such outputs gets
    its batches encoded here) until the epoch ends; under DDP it gathers them from every rank,
    so the statistics cover the whole validation set. The sanity check is skipped.

    Args:
        every_n_epochs: log after every n-th validation epoch.
        active_threshold: variance of mu_i across the images above which dimension i is active.
        histograms: also write histograms of mu_i and sigma_i.
    """

    def __init__(self, every_n_epochs: int = 1, active_threshold: float = 1e-2, histograms: bool = False) -> None:
        super().__init__()
        self.every_n_epochs = checked_every_n_epochs(every_n_epochs)
        self.active_threshold = active_threshold
        self.histograms = histograms
        self._mu: list[Tensor] = []
        self._logvar: list[Tensor] = []
        self._collecting = False

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mu, self._logvar = [], []
        self._collecting = due_after_validation(trainer, self.every_n_epochs)

    @torch.no_grad()
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._collecting:
            return
        if isinstance(outputs, Mapping) and "mu" in outputs:
            mu, logvar = outputs["mu"], outputs["logvar"]
        else:
            mu, logvar = pl_module.encode(batch[0], batch[1])
        self._mu.append(mu.detach().float())
        self._logvar.append(logvar.detach().float())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._collecting or not self._mu:
            return
        self._collecting = False
        mu = _gather_rows(pl_module, torch.cat(self._mu))
        logvar = _gather_rows(pl_module, torch.cat(self._logvar))
        self._mu, self._logvar = [], []
        metrics = {f"latent/{key}": value for key, value in latent_statistics(mu, logvar).items()}
        for i, kl in enumerate(pl_module.prior.kl_divergence_per_dim(mu, logvar), start=1):
            metrics[f"latent/kl_dim{i}"] = kl
        metrics["latent/active_units"] = active_units(mu, self.active_threshold).float()
        # Every rank holds the same gathered values, so no further reduction is needed.
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)
        if self.histograms:
            self._log_histograms(trainer, mu, logvar)

    @rank_zero_only
    def _log_histograms(self, trainer: Trainer, mu: Tensor, logvar: Tensor) -> None:
        sigma = posterior_std(logvar)
        for writer in tensorboard_writers(trainer):
            for i in range(mu.shape[1]):
                writer.add_histogram(f"latent/mu{i + 1}", mu[:, i], global_step=trainer.global_step)
                writer.add_histogram(f"latent/sigma{i + 1}", sigma[:, i], global_step=trainer.global_step)


def _gather_rows(pl_module: LightningModule, rows: Tensor) -> Tensor:
    """All ranks' ``rows`` (n_rank, d) concatenated, (sum n_rank, d); ranks may hold different n."""
    if pl_module.trainer.world_size == 1:
        return rows
    counts = pl_module.all_gather(torch.tensor(rows.shape[0], device=rows.device))  # (world,)
    padded = rows.new_zeros(int(counts.max()), rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = pl_module.all_gather(padded)  # (world, max n, d)
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(counts.tolist())])
