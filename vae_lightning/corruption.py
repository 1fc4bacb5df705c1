"""Corruptions of the input images: Gaussian noise (the denoising autoencoder, in training as
``VAEModule``'s ``noise_std`` and at test time for the denoising metrics) and stochastic
binarization (binarized MNIST, ``data.binarize``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``: the same corruption of a batch every time."""
    return torch.Generator(device=device).manual_seed(seed)


def add_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """x + std * eps with eps ~ N(0, I): the noisy input of a denoising autoencoder (not clamped)."""
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each pixel 1 with probability equal to its intensity (stochastic binarization)."""
    return torch.bernoulli(x, generator=generator)


class InputNoise(nn.Module):
    """Adds Gaussian noise of ``std`` in training mode only (like dropout): the encoder of a
    denoising VAE sees noisy images while its reconstruction is scored against the clean ones.

    Args:
        std: standard deviation of the noise, > 0.
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        if std <= 0:
            raise ValueError(f"noise std must be positive, got {std}")
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        return add_noise(x, self.std) if self.training else x
