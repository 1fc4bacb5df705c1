"""The networks' shapes, the reparameterization, tied weights, the deterministic variant and the
refusal of bad sizes."""

import pytest
import torch

from vae_lightning.latent import reparameterize
from vae_lightning.losses import kl_divergence, kl_divergence_per_dim
from vae_lightning.models import MLPVAE, VAENetwork


def test_mlp_takes_images_and_returns_logits_of_their_shape_per_sample() -> None:
    network = MLPVAE(image_shape=(1, 28, 28), hidden_dims=[64, 32], latent_dim=3)
    x = torch.rand(8, 1, 28, 28)
    mu, logvar = network.encode(x)
    assert mu.shape == logvar.shape == (8, 3)
    logits = network.decode(reparameterize(mu, logvar, samples=5))
    assert logits.shape == (5, 8, 1, 28, 28)


def test_mlp_sizes_its_input_layer_from_the_image_shape() -> None:
    network = MLPVAE(image_shape=(3, 8, 6), hidden_dims=[16], latent_dim=2)
    assert network.encoder[0].in_features == 3 * 8 * 6
    assert network.decode(torch.zeros(4, 2)).shape == (4, 3, 8, 6)


def test_encoder_and_decoder_have_one_hidden_layer_per_hidden_dim() -> None:
    network = MLPVAE(hidden_dims=[300, 200, 100], latent_dim=2)
    assert [layer.out_features for layer in network.encoder] == [300, 200, 100]
    assert [layer.out_features for layer in network.decoder] == [100, 200, 300, 784]


def test_reparameterization_has_the_posterior_mean_and_spread() -> None:
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.log(torch.tensor([[0.25, 4.0]]))
    z = reparameterize(mu, logvar, samples=200_000)
    assert torch.allclose(z.mean(dim=(0, 1)), mu[0], atol=0.02)
    assert torch.allclose(z.std(dim=(0, 1)), torch.tensor([0.5, 2.0]), atol=0.02)


def test_tied_decoder_reuses_encoder_weights_transposed() -> None:
    untied = MLPVAE(hidden_dims=[64, 32], latent_dim=2)
    tied = MLPVAE(hidden_dims=[64, 32], latent_dim=2, tied_weights=True)
    decoder_params = [p for name, p in tied.named_parameters() if name.startswith("decoder")]
    # the tied decoder owns only its biases: 32 + 64 + 784 parameters
    assert sum(p.numel() for p in decoder_params) == 32 + 64 + 784
    assert sum(p.numel() for p in tied.parameters()) < sum(p.numel() for p in untied.parameters())
    # changing an encoder weight changes the decoder's output
    z = torch.randn(4, 2)
    before = tied.decode(z)
    with torch.no_grad():
        tied.encoder[0].weight.add_(0.5)
    assert not torch.allclose(before, tied.decode(z))
    # and the decoder's loss sends gradient into the encoder's first-layer weights
    tied.decode(z).sum().backward()
    assert tied.encoder[0].weight.grad is not None
    assert tied.encoder[0].weight.grad.abs().sum() > 0


def test_a_deterministic_network_is_a_plain_autoencoder() -> None:
    network = MLPVAE(hidden_dims=[16], latent_dim=2, deterministic=True)
    assert network.logvar is None  # no head that would get no gradient
    mu, logvar = network.encode(torch.rand(3, 1, 28, 28))
    assert torch.equal(reparameterize(mu, logvar, samples=4), mu.expand(4, *mu.shape))  # z = mu, every draw
    assert kl_divergence(mu, logvar) == 0 and kl_divergence_per_dim(mu, logvar).tolist() == [0.0, 0.0]
    assert torch.all(torch.isneginf(logvar))  # a point mass: sigma = 0


def test_linear_network_is_linear_in_its_input() -> None:
    network = MLPVAE(hidden_dims=[16, 8], latent_dim=2, linear=True, deterministic=True)
    a, b = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    mu = lambda x: network.encode(x)[0]  # noqa: E731
    bias = mu(torch.zeros_like(a))
    assert torch.allclose(mu(a + b) - bias, (mu(a) - bias) + (mu(b) - bias), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"hidden_dims": []}, "hidden_dims"),
        ({"hidden_dims": [64, 0]}, "hidden_dims"),
        ({"image_shape": (28, 28)}, "image_shape"),
    ],
)
def test_bad_sizes_are_refused_with_the_option_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLPVAE(**kwargs)


def test_the_base_class_says_what_a_subclass_must_implement() -> None:
    with pytest.raises(NotImplementedError):
        VAENetwork().encode(torch.rand(1, 1, 28, 28))
