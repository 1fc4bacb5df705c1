"""Pictures of a trained VAE's latent space as matplotlib figures, for TensorBoard and PNG files.

- ``scatter``: posterior means of labelled images coloured by class (latent_dim 2 as is, larger
  latent_dim projected on its first two principal components);
- ``manifold`` (latent_dim 2, a model that does not condition on the class): images decoded from
  a grid of z at the quantiles of the prior's marginals (N(0, 1) for the standard prior, as in
  Kingma & Welling 2014, Fig. 4);
- ``interpolations``: decoded straight lines between the posterior means of pairs of images (a
  conditional model decodes each line as the first image's class);
- ``samples``: decoded draws from the model's prior (``model.prior``);
- ``reconstructions``: images above their reconstructions (decoded posterior means).

Each takes the ``VAEModule`` (its ``encode``, ``decode``, ``generate``, ``reconstruct``) and
images of any shape (B, C, H, W). The figures use ``matplotlib.figure.Figure`` directly (no pyplot
state), so they can be drawn in a training process. TensorBoard gets the first three
(``LatentSpaceFigures``; the image-grid callbacks already show samples and reconstructions),
``python -m vae_lightning.explore`` writes all five as PNG files.
"""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from vae_lightning.pictures.grids import GRID_PADDING, grid_rows, image_grid

FIGURE_NAMES = ("scatter", "manifold", "interpolations", "samples", "reconstructions")


def _grid_figure(images: Tensor, nrow: int, title: str, width: float = 7.0) -> tuple[Figure, Any]:
    """A figure showing ``images`` (B, C, H, W) as one grid of ``nrow`` per row, axes without ticks."""
    grid = image_grid(images, nrow=nrow).permute(1, 2, 0).numpy()  # (H, W, 3)
    height = width * grid.shape[0] / grid.shape[1] + 0.8
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax


def _cell_centres(count: int, side: int) -> list[float]:
    """Pixel coordinates of the centres of ``count`` grid cells of ``side`` pixels along one axis."""
    step = side + GRID_PADDING
    return [GRID_PADDING + i * step + side / 2 for i in range(count)]


def _encode_means(module: Any, images: Tensor, labels: Tensor) -> Tensor:
    return module.encode(images.to(module.device), labels.to(module.device))[0]


@torch.no_grad()
def scatter_figure(mu: Tensor, labels: Tensor) -> Figure:
    """Posterior means (N, d) coloured by label: the plane of z for d = 2, else the first two
    principal components of the means (with the share of their variance each explains)."""
    mu, labels = mu.detach().float().cpu(), labels.detach().cpu()
    d = mu.shape[1]
    if d <= 2:
        points = mu if d == 2 else torch.cat([mu, labels[:, None].float()], dim=1)
        xlabel, ylabel = ("$z_1$", "$z_2$") if d == 2 else ("$z_1$", "class")
        title = f"Posterior means $\\mu(x)$ (latent_dim={d})"
    else:
        centred = mu - mu.mean(dim=0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        points = centred @ vh[:2].T
        share = s.pow(2) / s.pow(2).sum()
        xlabel, ylabel = (f"PC{i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2))
        title = f"Posterior means $\\mu(x)$, first two principal components (latent_dim={d})"
    classes = int(labels.max()) + 1 if len(labels) else 1
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    cmap = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "viridis"
    paths = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, vmin=-0.5, vmax=classes - 0.5, s=4, alpha=0.7)
    colorbar = fig.colorbar(paths, ax=ax, ticks=range(0, classes, max(1, classes // 10)))
    colorbar.set_label("class")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


@torch.no_grad()
def manifold_figure(module: Any, steps: int = 20) -> Figure:
    """Images decoded from z on a ``steps`` x ``steps`` grid of the prior's marginal quantiles
    (5% to 95%); z_1 grows to the right, z_2 upwards. Only for a 2-D latent space."""
    latent_dim = module.latent_dim
    if latent_dim != 2:
        raise ValueError(f"the decoded manifold needs latent_dim 2, this model has {latent_dim}")
    grid = module.prior.quantiles(torch.linspace(0.05, 0.95, steps)).cpu()  # (steps, 2)
    z2, z1 = torch.meshgrid(grid[:, 1].flip(0), grid[:, 0], indexing="ij")  # top row: largest z_2
    z = torch.stack([z1.flatten(), z2.flatten()], dim=1)
    images = module.decode(z.to(module.device)).cpu()
    fig, ax = _grid_figure(images, steps, f"Decoded manifold: $z$ on a grid of quantiles of the prior, {module.prior.label}", width=8.0)
    height, width = images.shape[-2:]
    shown = range(0, steps, max(1, steps // 5))
    ax.set_xticks([_cell_centres(steps, width)[i] for i in shown], [f"{grid[i, 0]:.2f}" for i in shown])
    ax.set_yticks([_cell_centres(steps, height)[i] for i in shown], [f"{grid[:, 1].flip(0)[i]:.2f}" for i in shown])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return fig


@torch.no_grad()
def interpolation_figure(module: Any, starts: Tensor, ends: Tensor, labels: tuple[Tensor, Tensor], steps: int = 10) -> Figure:
    """One row per pair: the start image, decodings of (1 - t) mu(start) + t mu(end) for t from 0
    to 1, and the end image."""
    first, last = labels
    mu_start, mu_end = _encode_means(module, starts, first), _encode_means(module, ends, last)
    t = torch.linspace(0.0, 1.0, steps, device=mu_start.device)[None, :, None]  # (1, steps, 1)
    path = (1 - t) * mu_start[:, None] + t * mu_end[:, None]  # (pairs, steps, d)
    decoded = module.decode(path, first.to(path.device)[:, None].expand(-1, steps)).cpu()  # (pairs, steps, C, H, W)
    rows = torch.cat([starts.cpu()[:, None], decoded, ends.cpu()[:, None]], dim=1)  # (pairs, steps + 2, C, H, W)
    fig, ax = _grid_figure(
        rows.flatten(0, 1), steps + 2, "Interpolation between posterior means (first and last column: the images)"
    )
    height, width = rows.shape[-2:]
    ax.set_yticks(_cell_centres(len(rows), height), [f"{int(a)} → {int(b)}" for a, b in zip(first, last)])
    ax.set_xticks(_cell_centres(steps + 2, width)[1:-1:3], [f"t={v:.2f}" for v in t.flatten()[::3].tolist()])
    return fig


@torch.no_grad()
def samples_figure(module: Any, num_images: int = 64, seed: int = 0) -> Figure:
    """Decoded draws of z from the model's prior."""
    images = module.generate(num_images, generator=torch.Generator().manual_seed(seed)).cpu()
    fig, _ = _grid_figure(images, grid_rows(num_images), f"{num_images} samples from the prior, {module.prior.label}")
    return fig


@torch.no_grad()
def reconstructions_figure(module: Any, images: Tensor, labels: Tensor, per_row: int = 8) -> Figure:
    """Rows of images, each above a row of their reconstructions (decoded posterior means)."""
    reconstructions = module.reconstruct(images.to(module.device), labels.to(module.device)).cpu()
    rows = []
    for start in range(0, len(images), per_row):
        rows += [images[start : start + per_row].cpu(), reconstructions[start : start + per_row]]
    fig, ax = _grid_figure(torch.cat(rows), per_row, "Images and their reconstructions", width=5.0)
    ax.set_yticks(_cell_centres(len(rows), images.shape[-2]), ["original", "reconstruction"] * (len(rows) // 2))
    return fig


@torch.no_grad()
def latent_figures(
    module: Any, images: Tensor, labels: Tensor, seed: int = 0, names: tuple[str, ...] = FIGURE_NAMES
) -> dict[str, Figure]:
    """The figures ``names`` (of :data:`FIGURE_NAMES`; ``manifold`` only for a 2-D latent space
    of a model that does not condition on the class) of ``module`` on labelled ``images`` (N, C, H, W)."""
    unknown = sorted(set(names) - set(FIGURE_NAMES))
    if unknown:
        raise ValueError(f"unknown figures {unknown}; choose from {list(FIGURE_NAMES)}")
    was_training = module.training
    module.eval()
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(len(images), generator=generator)[:16].view(2, -1)
    draw = {
        "scatter": lambda: scatter_figure(
            torch.cat([_encode_means(module, *chunk).cpu() for chunk in zip(images.split(1000), labels.split(1000))]), labels
        ),
        "manifold": lambda: manifold_figure(module),
        "interpolations": lambda: interpolation_figure(
            module, images[pairs[0]], images[pairs[1]], (labels[pairs[0]], labels[pairs[1]])
        ),
        "samples": lambda: samples_figure(module, seed=seed),
        "reconstructions": lambda: reconstructions_figure(module, images[:32], labels[:32]),
    }
    has_manifold = module.latent_dim == 2 and getattr(module, "num_classes", None) is None
    figures = {name: draw[name]() for name in names if name != "manifold" or has_manifold}
    module.train(was_training)
    return figures
