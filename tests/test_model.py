"""The VAE's shapes, its reparameterization, its tied weights and its refusal of bad sizes."""

import pytest
import torch

from vae_lightning.model import VAE


def test_forward_returns_logits_per_mc_sample_and_posterior_parameters() -> None:
    model = VAE(input_dim=784, hidden_dims=[64, 32], latent_dim=3, mc_samples=5)
    x = torch.rand(8, 784)
    logits, mu, logvar = model(x)
    assert logits.shape == (5, 8, 784)
    assert mu.shape == logvar.shape == (8, 3)
    assert torch.all((model.decode(mu) >= 0) & (model.decode(mu) <= 1))


def test_encoder_and_decoder_have_one_hidden_layer_per_hidden_dim() -> None:
    model = VAE(hidden_dims=[300, 200, 100], latent_dim=2)
    assert [layer.out_features for layer in model.encoder.hidden] == [300, 200, 100]
    assert [layer.out_features for layer in model.decoder.layers] == [100, 200, 300, 784]


def test_reparameterization_has_the_posterior_mean_and_spread() -> None:
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.log(torch.tensor([[0.25, 4.0]]))
    z = VAE.reparameterize(mu, logvar, samples=200_000)
    assert torch.allclose(z.mean(dim=(0, 1)), mu[0], atol=0.02)
    assert torch.allclose(z.std(dim=(0, 1)), torch.tensor([0.5, 2.0]), atol=0.02)


def test_tied_decoder_reuses_encoder_weights_transposed() -> None:
    untied = VAE(hidden_dims=[64, 32], latent_dim=2)
    tied = VAE(hidden_dims=[64, 32], latent_dim=2, tied_weights=True)
    # the tied decoder owns only its biases: 32 + 64 + 784 parameters
    assert sum(p.numel() for p in tied.decoder.parameters()) == 32 + 64 + 784
    assert sum(p.numel() for p in tied.parameters()) < sum(p.numel() for p in untied.parameters())
    # changing an encoder weight changes the decoder's output
    z = torch.randn(4, 2)
    before = tied.decode(z)
    with torch.no_grad():
        tied.encoder.hidden[0].weight.add_(0.5)
    assert not torch.allclose(before, tied.decode(z))
    # and the decoder's loss sends gradient into the encoder's first-layer weights
    tied.decode(z).sum().backward()
    assert tied.encoder.hidden[0].weight.grad is not None
    assert tied.encoder.hidden[0].weight.grad.abs().sum() > 0


def test_sample_with_a_seeded_generator_is_reproducible() -> None:
    model = VAE(hidden_dims=[16], latent_dim=2)
    a = model.sample(6, generator=torch.Generator().manual_seed(3))
    b = model.sample(6, generator=torch.Generator().manual_seed(3))
    assert a.shape == (6, 784)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"hidden_dims": []}, "hidden_dims"),
        ({"hidden_dims": [64, 0]}, "hidden_dims"),
        ({"mc_samples": 0}, "mc_samples"),
    ],
)
def test_bad_sizes_are_refused_with_the_option_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)
