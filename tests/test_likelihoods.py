"""The observation models p(x|z) (likelihoods.py): MSE, Gaussian and Bernoulli against
torch.distributions, their links, a learned standard deviation, saturated logits, bad settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli as BernoulliDistribution
from torch.distributions import Normal

from vae_lightning.likelihoods import MSE, Bernoulli, Gaussian
from vae_lightning.losses import reconstruction_loss
from vae_lightning.module import VAEModule

SHAPE = (1, 28, 28)
D = 784


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(-3).sum(-1)


def test_gaussian_and_bernoulli_likelihoods_match_torch_distributions() -> None:
    torch.manual_seed(0)
    x = torch.rand(5, *SHAPE)
    logits = torch.randn(3, 5, *SHAPE)  # 3 samples of z
    mean = torch.sigmoid(logits)
    gaussian = Gaussian(std=0.2).log_likelihood(x, logits)
    assert torch.allclose(gaussian, _per_image(Normal(mean, 0.2).log_prob(x)), rtol=1e-5)
    binary = torch.bernoulli(x)
    bernoulli = Bernoulli().log_likelihood(binary, logits)
    assert bernoulli.shape == (3, 5)
    assert torch.allclose(bernoulli, _per_image(BernoulliDistribution(logits=logits).log_prob(binary)), rtol=1e-5)


def test_mse_is_the_log_density_of_a_gaussian_with_variance_one_half() -> None:
    torch.manual_seed(0)
    x, logits = torch.rand(4, *SHAPE), torch.randn(4, *SHAPE)
    x_hat = torch.sigmoid(logits)
    expected = _per_image(Normal(x_hat, math.sqrt(0.5)).log_prob(x))
    likelihood = MSE()
    assert torch.allclose(likelihood.log_likelihood(x, logits), expected, rtol=1e-5)
    # ... whose negative is the report's squared error plus D/2 log(pi) = 448.7 nats
    squared_error = _per_image((x - x_hat).pow(2))
    assert torch.allclose(-expected, squared_error + D / 2 * math.log(math.pi), rtol=1e-5)
    assert torch.isclose(likelihood.reconstruction_loss(x, logits), reconstruction_loss(x, x_hat))


def test_the_identity_link_scores_the_decoder_output_itself() -> None:
    x, output = torch.rand(2, *SHAPE), torch.randn(2, *SHAPE)
    likelihood = MSE(link="identity")
    assert torch.equal(likelihood.mean(output), output)
    assert torch.isclose(likelihood.reconstruction_loss(x, output), reconstruction_loss(x, output))


def test_a_learned_gaussian_std_is_a_parameter_of_the_module_and_trains() -> None:
    module = VAEModule(likelihood=Gaussian(std=0.5, learn_std=True))
    names = [name for name, _ in module.named_parameters()]
    assert "likelihood.log_std" in names
    optimizer = module.configure_optimizers()
    x = torch.rand(16, *SHAPE)
    before = module.likelihood.log_std.item()
    module.likelihood.reconstruction_loss(x, module.network.decode(module.network.encode(x)[0])).backward()
    optimizer.step()
    assert module.likelihood.log_std.item() != before


def test_bernoulli_likelihood_stays_finite_for_saturated_logits() -> None:
    x = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    logits = torch.tensor([200.0, -200.0]).view(1, 1, 1, 2)
    assert torch.isclose(Bernoulli().log_likelihood(x, logits), torch.tensor([0.0]))
    assert torch.isclose(Bernoulli().log_likelihood(1 - x, logits), torch.tensor([-400.0]))


def test_bad_likelihood_settings_are_refused_with_the_option_named() -> None:
    with pytest.raises(ValueError, match="std must be positive"):
        Gaussian(std=0)
    with pytest.raises(ValueError, match="link"):
        MSE(link="tanh")  # type: ignore[arg-type]
