"""Networks of a user's own, chosen only by their class path in YAML (``model.network.class_path:
helpers.networks.TinyVAE``): one subclasses ``VAENetwork``, one is a plain ``nn.Module`` with the
interface alone, and one lacks ``decode``."""

from __future__ import annotations

import math

from torch import Tensor, nn

from vae_lightning.models import ImageShape, VAENetwork


class TinyVAE(VAENetwork):
    """One hidden layer each way: the smallest VAE a user might write.

    Args:
        image_shape: (channels, height, width); set from the data by the CLI.
        latent_dim: size of z.
        hidden_dim: width of the one hidden layer.
    """

    def __init__(self, image_shape: ImageShape = (1, 28, 28), latent_dim: int = 2, hidden_dim: int = 64) -> None:
        super().__init__(image_shape, latent_dim)
        pixels = math.prod(self.image_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, pixels))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(-1, self.image_shape)


class PlainVAE(nn.Module):
    """No base class: ``encode``, ``decode`` and ``latent_dim`` are all the module needs; it gives
    such a network the Gaussian posterior's reparameterization and KL term.

    Args:
        image_shape: (channels, height, width); set from the data by the CLI.
        latent_dim: size of z.
    """

    def __init__(self, image_shape: ImageShape = (1, 28, 28), latent_dim: int = 2) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        pixels = math.prod(self.image_shape)
        self.mu = nn.Linear(pixels, latent_dim)
        self.logvar = nn.Linear(pixels, latent_dim)
        self.decoder = nn.Linear(latent_dim, pixels)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = x.flatten(-3)
        return self.mu(h), self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(-1, self.image_shape)


class EncoderOnly(nn.Module):
    """An encoder without a decoder, which the module must refuse.

    Args:
        image_shape: (channels, height, width); set from the data by the CLI.
        latent_dim: size of z.
    """

    def __init__(self, image_shape: ImageShape = (1, 28, 28), latent_dim: int = 2) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.mu = nn.Linear(math.prod(image_shape), latent_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.mu(x.flatten(-3))
        return mu, mu.new_zeros(mu.shape)
