"""The report's loss terms as small pure functions, so each can be checked against its equation.

loss = RL + KL, both per image, averaged over the batch:
    RL (eq. 16): sum over the D pixels of (x - x_hat)^2, averaged over the N samples of z.
    KL (eq. 19): KL(q(z|x) || N(0, I)) in closed form, summed over the d latent dimensions
    (Kingma & Welling 2014, Appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2)).
Both are per-image sums, so they share a scale and need no weight to balance them.
A deterministic encoder (a plain autoencoder) gives log sigma^2 = -inf, a point mass: it has no
KL term, and its dimensions count 0.
Images are (..., C, H, W); the D = C * H * W pixels are the last three dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sum_over_pixels(values: Tensor) -> Tensor:
    """(..., C, H, W) -> (...): one number per image."""
    return values.flatten(-3).sum(dim=-1)


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Squared error summed over pixels, averaged over samples and batch.

    Args:
        x: targets, (B, C, H, W).
        x_hat: reconstructions, (B, C, H, W) or (N, B, C, H, W) for N Monte-Carlo samples of z.
    """
    return sum_over_pixels((x_hat - x).pow(2)).mean()


def kl_divergence_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for each latent dimension, averaged over the batch: (d,);
    0 where sigma = 0 (log sigma^2 = -inf), the point mass of a plain autoencoder."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return torch.where(torch.isneginf(logvar), 0.0, kl).mean(dim=0)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the batch (eq. 19)."""
    return kl_divergence_per_dim(mu, logvar).sum()


def kl_weight_at(progress: int, kl_weight: float, warmup: int) -> float:
    """beta after ``progress`` steps (or epochs) of a linear warm-up from 0 to ``kl_weight`` over
    ``warmup`` of them; ``kl_weight`` from the start when ``warmup`` is 0."""
    return kl_weight * min(1.0, progress / warmup) if warmup > 0 else kl_weight
