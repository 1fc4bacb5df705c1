"""Pictures of a VAE's latent space as matplotlib figures, and a callback that logs them.

- ``scatter``: posterior means of labelled images coloured by digit (latent_dim 2 as is,
  larger latent_dim projected on its first two principal components);
- ``manifold`` (latent_dim 2 only): images decoded from a grid of z at the quantiles of
  N(0, 1), as in Kingma & Welling 2014, Fig. 4;
- ``interpolations``: decoded straight lines between the posterior means of pairs of images;
- ``samples``: decoded draws from the prior N(0, I);
- ``reconstructions``: images above their reconstructions (decoded posterior means).

The figures use ``matplotlib.figure.Figure`` directly (no pyplot state), so they can be drawn
in a training process and written to TensorBoard or to PNG files alike.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure
from torch import Tensor
from torch.distributions import Normal

from vae_lightning.callbacks import checked_every_n_epochs, due_after_validation, tensorboard_writers
from vae_lightning.images import grid_rows, image_grid
from vae_lightning.model import VAE

FIGURE_NAMES = ("scatter", "manifold", "interpolations", "samples", "reconstructions")


def _grid_figure(flat: Tensor, nrow: int, title: str, width: float = 7.0) -> tuple[Figure, Any]:
    """A figure showing the images of ``flat`` (B, D) as one grid of ``nrow`` per row, axes without ticks."""
    grid = image_grid(flat, nrow=nrow).permute(1, 2, 0).numpy()  # (H, W, 3)
    height = width * grid.shape[0] / grid.shape[1] + 0.8
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax


def _cell_centres(count: int, side: int = 28, padding: int = 2) -> list[float]:
    """Pixel coordinates of the centres of ``count`` grid cells along one axis (make_grid's layout)."""
    step = side + padding
    return [padding + i * step + side / 2 for i in range(count)]


@torch.no_grad()
def scatter_figure(mu: Tensor, labels: Tensor) -> Figure:
    """Posterior means (N, d) coloured by label: the plane of z for d = 2, else the first two
    principal components of the means (with the share of their variance each explains)."""
    mu, labels = mu.detach().float().cpu(), labels.detach().cpu()
    d = mu.shape[1]
    if d <= 2:
        points = mu if d == 2 else torch.cat([mu, labels[:, None].float()], dim=1)
        xlabel, ylabel = ("$z_1$", "$z_2$") if d == 2 else ("$z_1$", "digit")
        title = f"Test-set posterior means $\\mu(x)$ (latent_dim={d})"
    else:
        centred = mu - mu.mean(dim=0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        points = centred @ vh[:2].T
        share = s.pow(2) / s.pow(2).sum()
        xlabel, ylabel = (f"PC{i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2))
        title = f"Test-set posterior means $\\mu(x)$, first two principal components (latent_dim={d})"
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    paths = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=4, alpha=0.7)
    colorbar = fig.colorbar(paths, ax=ax, ticks=range(10))
    colorbar.set_label("digit")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


@torch.no_grad()
def manifold_figure(model: VAE, steps: int = 20) -> Figure:
    """Images decoded from z on a ``steps`` x ``steps`` grid of N(0, 1) quantiles (5% to 95%);
    z_1 grows to the right, z_2 upwards. Only for a 2-D latent space."""
    if model.latent_dim != 2:
        raise ValueError(f"the decoded manifold needs latent_dim 2, this model has {model.latent_dim}")
    quantiles = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps))
    z2, z1 = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")  # top row: largest z_2
    z = torch.stack([z1.flatten(), z2.flatten()], dim=1)
    param = next(model.parameters())
    images = model.decode(z.to(param)).cpu()
    fig, ax = _grid_figure(images, steps, "Decoded manifold: $z$ on a grid of $N(0, 1)$ quantiles", width=8.0)
    centres = _cell_centres(steps)
    shown = range(0, steps, max(1, steps // 5))
    ax.set_xticks([centres[i] for i in shown], [f"{quantiles[i]:.2f}" for i in shown])
    ax.set_yticks([centres[i] for i in shown], [f"{quantiles.flip(0)[i]:.2f}" for i in shown])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return fig


@torch.no_grad()
def interpolation_figure(model: VAE, starts: Tensor, ends: Tensor, labels: tuple[Tensor, Tensor], steps: int = 10) -> Figure:
    """One row per pair: the start image, decodings of (1 - t) mu(start) + t mu(end) for t from 0
    to 1, and the end image."""
    param = next(model.parameters())
    mu_start, _ = model.encode(starts.to(param))
    mu_end, _ = model.encode(ends.to(param))
    t = torch.linspace(0.0, 1.0, steps, device=param.device)[None, :, None]  # (1, steps, 1)
    path = (1 - t) * mu_start[:, None] + t * mu_end[:, None]  # (pairs, steps, d)
    decoded = model.decode(path).cpu()
    rows = torch.cat([starts.cpu()[:, None], decoded, ends.cpu()[:, None]], dim=1)  # (pairs, steps + 2, D)
    fig, ax = _grid_figure(
        rows.flatten(0, 1), steps + 2, "Interpolation between posterior means (first and last column: the test images)"
    )
    first, last = labels
    ax.set_yticks(_cell_centres(len(rows)), [f"{int(a)} → {int(b)}" for a, b in zip(first, last)])
    ax.set_xticks(_cell_centres(steps + 2)[1:-1:3], [f"t={v:.2f}" for v in t.flatten()[::3].tolist()])
    return fig


@torch.no_grad()
def samples_figure(model: VAE, num_images: int = 64, seed: int = 0) -> Figure:
    """Decoded draws of z ~ N(0, I)."""
    images = model.sample(num_images, generator=torch.Generator().manual_seed(seed)).cpu()
    fig, _ = _grid_figure(images, grid_rows(num_images), f"{num_images} samples from the prior, $z \\sim N(0, I)$")
    return fig


@torch.no_grad()
def reconstructions_figure(model: VAE, images: Tensor, per_row: int = 8) -> Figure:
    """Rows of test images, each above a row of their reconstructions (decoded posterior means)."""
    param = next(model.parameters())
    mu, _ = model.encode(images.to(param))
    reconstructions = model.decode(mu).cpu()
    rows = []
    for start in range(0, len(images), per_row):
        rows += [images[start : start + per_row].cpu(), reconstructions[start : start + per_row]]
    fig, ax = _grid_figure(torch.cat(rows), per_row, "Test images and their reconstructions", width=5.0)
    ax.set_yticks(_cell_centres(len(rows)), ["original", "reconstruction"] * (len(rows) // 2))
    return fig


@torch.no_grad()
def latent_figures(model: VAE, images: Tensor, labels: Tensor, seed: int = 0) -> dict[str, Figure]:
    """Every figure of this module for ``model`` on labelled ``images`` (N, D), keyed by
    :data:`FIGURE_NAMES` (``manifold`` only for a 2-D latent space)."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    mu = torch.cat([model.encode(chunk.to(param))[0].cpu() for chunk in images.split(1000)])
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(len(images), generator=generator)[:16].view(2, 8)
    figures = {"scatter": scatter_figure(mu, labels)}
    if model.latent_dim == 2:
        figures["manifold"] = manifold_figure(model)
    figures["interpolations"] = interpolation_figure(
        model, images[pairs[0]], images[pairs[1]], (labels[pairs[0]], labels[pairs[1]])
    )
    figures["samples"] = samples_figure(model, seed=seed)
    figures["reconstructions"] = reconstructions_figure(model, images[:32])
    model.train(was_training)
    return figures


class LatentSpaceFigures(Callback):
    """Logs the latent-space figures to TensorBoard as ``latent_space/<name>`` every few validations.

    The first ``num_images`` validation images (the loader is not shuffled, so the same ones
    every epoch) are kept as they pass; drawing happens only on due epochs, after validation.

    Args:
        every_n_epochs: draw after every n-th validation epoch (drawing takes about a second).
        num_images: validation images in the scatter plot (and the pool for the other figures).
        seed: seed of the interpolation pairs and the prior samples.
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
        if missing > 0 and not trainer.sanity_checking:
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
        figures = latent_figures(pl_module.model, torch.cat(self._images), torch.cat(self._labels), seed=self.seed)
        for name, figure in figures.items():
            for writer in writers:
                writer.add_figure(f"latent_space/{name}", figure, global_step=trainer.global_step, close=False)
