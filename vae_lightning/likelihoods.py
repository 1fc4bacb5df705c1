"""Observation models p(x|z) as small pure functions of the decoder's output.

The decoder returns logits l (pre-sigmoid); the mean image is x_hat = sigmoid(l) (the logits
themselves for the linear model). Each model gives log p(x|z) in nats per image, summed over
the D pixels:

- ``mse`` (the report's loss): RL = sum_i (x_i - x_hat_i)^2 is the negative log-density of a
  Gaussian with variance 1/2 per pixel, because -log N(x; m, s^2) = (x - m)^2 / (2 s^2)
  + 1/2 log(2 pi s^2), and s^2 = 1/2 makes this (x - m)^2 + 1/2 log(pi). So
  log p(x|z) = -RL - D/2 log(pi), a density on R^D (-448.7 nats for D = 784 at a perfect fit).
- ``gaussian``: log N(x; x_hat, sigma^2 I) with sigma fixed or learned (one sigma for all
  pixels: a sigma per pixel collapses to 0 on the always-black border and the density diverges).
- ``bernoulli``: log prod_i Bernoulli(x_i; sigmoid(l_i)) = -BCE(l, x), a probability of binary
  pixels (Burda et al. 2015 and most MNIST likelihood tables); computed from the logits with
  ``binary_cross_entropy_with_logits``, which is stable where sigmoid(l) rounds to 0 or 1.

The Gaussian numbers are densities of continuous pixels and can exceed 0; only the Bernoulli
numbers on binarized images compare with published MNIST log-likelihoods.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from vae_lightning.losses import reconstruction_loss

Likelihood = Literal["mse", "gaussian", "bernoulli"]
LIKELIHOODS: tuple[str, ...] = ("mse", "gaussian", "bernoulli")

#: log sigma of the Gaussian whose negative log-density is the report's squared error (sigma^2 = 1/2).
MSE_LOG_STD = 0.5 * math.log(0.5)
_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, log_std: Tensor | float) -> Tensor:
    """log N(x; mean, sigma^2 I) summed over the last (pixel) dimension.

    Args:
        x: images, (B, D); broadcast against ``mean``.
        mean: mean images, (B, D) or (N, B, D).
        log_std: log sigma, a scalar shared by all pixels.

    Returns:
        (B,) or (N, B) log-densities in nats per image.
    """
    log_std = torch.as_tensor(log_std, dtype=mean.dtype, device=mean.device)
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(dim=-1)


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """log prod_i Bernoulli(x_i; sigmoid(logits_i)) = -BCE summed over pixels, from the logits.

    Args:
        x: pixels in [0, 1] (binary for a proper probability), (B, D); broadcast against ``logits``.
        logits: decoder output before the sigmoid, (B, D) or (N, B, D).

    Returns:
        (B,) or (N, B) log-probabilities in nats per image.
    """
    target = x.expand_as(logits)
    return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=-1)


def observation_mean(logits: Tensor, linear: bool = False) -> Tensor:
    """The mean image x_hat: sigmoid(logits), or the logits themselves for the linear model."""
    return logits if linear else torch.sigmoid(logits)


def log_likelihood(
    x: Tensor,
    logits: Tensor,
    likelihood: Likelihood = "mse",
    log_std: Tensor | float | None = None,
    linear: bool = False,
) -> Tensor:
    """log p(x|z) in nats per image under the chosen observation model (see the module docstring).

    Args:
        x: images, (B, D).
        logits: decoder output, (B, D) or (N, B, D).
        likelihood: ``mse``, ``gaussian`` or ``bernoulli``.
        log_std: log sigma of the ``gaussian`` model (ignored by the others).
        linear: the decoder output is the mean itself (no sigmoid); not for ``bernoulli``.

    Returns:
        (B,) or (N, B).
    """
    if likelihood == "bernoulli":
        return bernoulli_log_likelihood(x, logits)
    mean = observation_mean(logits, linear)
    if likelihood == "mse":
        return gaussian_log_likelihood(x, mean, MSE_LOG_STD)
    if likelihood == "gaussian":
        if log_std is None:
            raise ValueError("the gaussian likelihood needs log_std (log of its standard deviation)")
        return gaussian_log_likelihood(x, mean, log_std)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def reconstruction_term(
    x: Tensor,
    logits: Tensor,
    likelihood: Likelihood = "mse",
    log_std: Tensor | float | None = None,
    linear: bool = False,
) -> Tensor:
    """RL, the loss's reconstruction term, averaged over samples of z and over the batch.

    For ``mse`` it is the report's sum of squared errors (eq. 16), which is -log p(x|z) less
    the constant D/2 log(pi), so default runs keep the report's numbers; for ``gaussian`` and
    ``bernoulli`` it is the full -log p(x|z).
    """
    if likelihood == "mse":
        return reconstruction_loss(x, observation_mean(logits, linear))
    return -log_likelihood(x, logits, likelihood, log_std, linear).mean()
