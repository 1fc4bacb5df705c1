"""The latent Gaussian q(z|x) = N(mu, sigma^2 I): its sample, its spread, and statistics of it
over a set of images (the report's "value range" of mu and sigma per latent dimension, and the
active units of Burda et al. 2015)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def posterior_std(logvar: Tensor) -> Tensor:
    """sigma = exp(log sigma^2 / 2): the encoder predicts the log-variance, which may be any real."""
    return torch.exp(0.5 * logvar)


def reparameterize(mu: Tensor, logvar: Tensor, samples: int = 1) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling 2014, sec. 2.4): ``samples``
    draws per image, (samples, B, d), differentiable in mu and log sigma^2."""
    eps = torch.randn((samples, *mu.shape), dtype=mu.dtype, device=mu.device)
    return mu + posterior_std(logvar) * eps


def log_posterior(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log q(z|x) = log N(z; mu, sigma^2 I) summed over the d dimensions: (N, B) for draws z
    (N, B, d) of posteriors (B, d)."""
    return (-0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi))).sum(dim=-1)


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
    stats: dict[str, Tensor] = {}
    for name, values in (("mu", mu), ("sigma", posterior_std(logvar))):
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
