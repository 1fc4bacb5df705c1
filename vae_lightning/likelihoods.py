"""Observation models p(x|z) as small classes handed to the module (``model.likelihood`` in YAML).

The decoder returns logits l; each likelihood owns its link from logits to the mean image, its
reconstruction term RL of the loss, and its log-likelihood log p(x|z) in nats per image (summed
over the D pixels), which the IWAE bound uses:

- :class:`MSE` (the report's loss): RL = sum_i (x_i - x_hat_i)^2 is the negative log-density of a
  Gaussian with variance 1/2 per pixel, because -log N(x; m, s^2) = (x - m)^2 / (2 s^2)
  + 1/2 log(2 pi s^2), and s^2 = 1/2 makes this (x - m)^2 + 1/2 log(pi). So
  log p(x|z) = -RL - D/2 log(pi), a density on R^D (-448.7 nats for D = 784 at a perfect fit).
- :class:`Gaussian`: log N(x; x_hat, sigma^2 I) with sigma fixed or learned (one sigma for all
  pixels: a sigma per pixel collapses to 0 on the always-black border and the density diverges).
- :class:`Bernoulli`: log prod_i Bernoulli(x_i; sigmoid(l_i)) = -BCE(l, x), a probability of binary
  pixels (Burda et al. 2015 and most MNIST likelihood tables); computed from the logits with
  ``binary_cross_entropy_with_logits``, which is stable where sigmoid(l) rounds to 0 or 1.

The Gaussian numbers are densities of continuous pixels and can exceed 0; only the Bernoulli
numbers on binarized images compare with published MNIST log-likelihoods.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vae_lightning.losses import reconstruction_loss, sum_over_pixels

#: How the decoder's output becomes the mean image: ``sigmoid`` keeps it in [0, 1] (the report's
#: decoder); ``identity`` uses it as it is (the linear autoencoder).
Link = Literal["sigmoid", "identity"]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, log_std: Tensor | float) -> Tensor:
    """log N(x; mean, sigma^2 I) summed over the pixels of each image.

    Args:
        x: images, (B, C, H, W); broadcast against ``mean``.
        mean: mean images, (B, C, H, W) or (N, B, C, H, W).
        log_std: log sigma, a scalar shared by all pixels.

    Returns:
        (B,) or (N, B) log-densities in nats per image.
    """
    log_std = torch.as_tensor(log_std, dtype=mean.dtype, device=mean.device)
    z = (x - mean) * torch.exp(-log_std)
    return sum_over_pixels(-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI)


class Likelihood(nn.Module):
    """p(x|z) given the decoder's logits. A module, so a learned parameter trains and moves with the model."""

    def mean(self, logits: Tensor) -> Tensor:
        """The mean image x_hat."""
        raise NotImplementedError

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x|z) in nats per image, (N, B) for (N, B, C, H, W) logits and (B, C, H, W) images."""
        raise NotImplementedError

    def reconstruction_loss(self, x: Tensor, logits: Tensor) -> Tensor:
        """RL, averaged over the samples of z and the batch: -log p(x|z) unless a subclass says otherwise."""
        return -self.log_likelihood(x, logits).mean()


class _Linked(Likelihood):
    """A likelihood whose mean is the decoder's output through ``link``."""

    def __init__(self, link: Link = "sigmoid") -> None:
        super().__init__()
        if link not in ("sigmoid", "identity"):
            raise ValueError(f"link must be 'sigmoid' or 'identity', got {link!r}")
        self.link = link

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.link == "sigmoid" else logits


class MSE(_Linked):
    """The report's squared error: RL = sum over pixels of (x - x_hat)^2, which is -log p(x|z) of a
    Gaussian with variance 1/2 less the constant D/2 log(pi), so runs keep the report's numbers.

    Args:
        link: ``sigmoid``: x_hat = sigmoid(decoder output), the report's; ``identity``: the output
            itself (the linear autoencoder).
    """

    #: log sigma of the Gaussian whose negative log-density is the squared error (sigma^2 = 1/2).
    LOG_STD = 0.5 * math.log(0.5)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        return gaussian_log_likelihood(x, self.mean(logits), self.LOG_STD)

    def reconstruction_loss(self, x: Tensor, logits: Tensor) -> Tensor:
        return reconstruction_loss(x, self.mean(logits))


class Gaussian(_Linked):
    """log N(x; x_hat, sigma^2 I), one sigma for all pixels.

    Args:
        std: sigma (its initial value when learned).
        learn_std: learn log sigma with the network.
        link: ``sigmoid`` or ``identity``, as for :class:`MSE`.
    """

    def __init__(self, std: float = 0.1, learn_std: bool = False, link: Link = "sigmoid") -> None:
        super().__init__(link)
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        log_std = torch.tensor(math.log(std))
        if learn_std:
            self.log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_std", log_std)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        return gaussian_log_likelihood(x, self.mean(logits), self.log_std)


class Bernoulli(Likelihood):
    """log prod_i Bernoulli(x_i; sigmoid(l_i)): binary cross-entropy on the logits, for binary
    (or binarized, ``data.binarize``) pixels."""

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        target = x.expand_as(logits)
        return -sum_over_pixels(F.binary_cross_entropy_with_logits(logits, target, reduction="none"))
