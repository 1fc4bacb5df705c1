"""RL and KL against hand computations and torch.distributions."""

import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from vae_lightning.losses import (
    kl_divergence,
    kl_divergence_per_dim,
    reconstruction_loss,
)


def test_reconstruction_loss_sums_pixels_and_averages_images() -> None:
    x = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 1.0]]).view(2, 1, 1, 3)
    x_hat = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 1.0]]).view(2, 1, 1, 3)
    # image 1: 0.25 + 0.25 + 0 = 0.5; image 2: 0 + 1 + 0 = 1.0; mean = 0.75
    assert torch.isclose(reconstruction_loss(x, x_hat), torch.tensor(0.75))


def test_reconstruction_loss_sums_over_channels_and_both_image_axes() -> None:
    x = torch.zeros(1, 3, 2, 2)
    assert torch.isclose(reconstruction_loss(x, torch.ones(1, 3, 2, 2)), torch.tensor(12.0))  # 3 x 2 x 2 pixels


def test_reconstruction_loss_averages_over_monte_carlo_samples() -> None:
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.stack([torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), 0.5)])  # N=2 samples
    # sample 1: 4 per image, sample 2: 1 per image -> mean 2.5
    assert torch.isclose(reconstruction_loss(x, x_hat), torch.tensor(2.5))


def test_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(16, 5), torch.randn(16, 5)
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch_kl(q, p).sum(dim=1).mean()
    assert torch.isclose(kl_divergence(mu, logvar), expected, atol=1e-5)
    assert torch.allclose(kl_divergence_per_dim(mu, logvar), torch_kl(q, p).mean(dim=0), atol=1e-5)


def test_kl_is_zero_at_the_prior_and_known_for_a_shifted_mean() -> None:
    zeros = torch.zeros(3, 2)
    assert kl_divergence(zeros, zeros) == 0
    # KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 per dimension: (1 + 4) / 2 = 2.5
    mu = torch.tensor([[1.0, 2.0]])
    assert torch.isclose(kl_divergence(mu, torch.zeros(1, 2)), torch.tensor(2.5))
