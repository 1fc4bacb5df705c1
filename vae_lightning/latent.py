"""Statistics of the posterior q(z|x) over a set of images: the report's "value range" of mu
and sigma per latent dimension, and the active units of Burda et al. (2015)."""

from __future__ import annotations

import torch
from torch import Tensor


def latent_statistics(mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
    """Min, max, mean and std over the images of mu_i and sigma_i for each latent dimension i
    (numbered from 1, as in the report's mu1, mu2, sigma1, sigma2), and the mean log-variance.

    Args:
        mu: posterior means, (B, d).
        logvar: posterior log-variances, (B, d).

    Returns:
        Scalars keyed ``mu{i}_min``, ``mu{i}_max``, ``mu{i}_mean``, ``mu{i}_std``, the same for
        ``sigma{i}``, and ``logvar_mean``.
    """
    sigma = torch.exp(0.5 * logvar)
    stats: dict[str, Tensor] = {}
    for name, values in (("mu", mu), ("sigma", sigma)):
        for i in range(values.shape[1]):
            column = values[:, i]
            stats[f"{name}{i + 1}_min"] = column.min()
            stats[f"{name}{i + 1}_max"] = column.max()
            stats[f"{name}{i + 1}_mean"] = column.mean()
            stats[f"{name}{i + 1}_std"] = column.std(unbiased=False)
    stats["logvar_mean"] = logvar.mean()
    return stats


def active_units(mu: Tensor, threshold: float = 1e-2) -> Tensor:
    """Latent dimensions whose posterior mean varies across the data: Var_x(E_q[z_i]) > threshold
    (Burda et al. 2015, sec. 5.2). A collapsed dimension ignores x and counts 0."""
    return (mu.var(dim=0, unbiased=False) > threshold).sum()
