"""What ``VAEModule`` needs of a network, and a base class that gives it the common parts.

A network is a plain ``nn.Module`` with:

- ``latent_dim``: the size d of z;
- ``encode(x)``: images (B, C, H, W) -> ``(mu, logvar)``, each (B, d), the parameters of the
  diagonal Gaussian q(z|x);
- ``decode(z)``: latent codes (..., d) -> logits (..., C, H, W), the decoder's output before
  the likelihood's link (a sigmoid for the default likelihood), so a Bernoulli likelihood can
  use them directly;
- ``num_classes`` (optional): K, for a network that conditions on the image's class; its
  ``encode`` and ``decode`` then take the one-hot classes (..., K) as a second argument
  (``vae_lightning.models.conditional``). A network without it is never given one.

The module draws z = mu + sigma * eps and scores the KL term itself (``vae_lightning.latent``,
``vae_lightning.losses``), so a network only encodes and decodes. Subclassing :class:`VAENetwork`
adds ``image_shape`` (linked from the data by the CLI) and the ``deterministic`` option that turns
any network into a plain autoencoder (log sigma^2 = -inf: z = mu and no KL term);
:func:`check_network` is the one place that states what a network must have.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

#: Images as (channels, height, width), e.g. (1, 28, 28) for MNIST or (3, 32, 32) for CIFAR-10.
ImageShape = tuple[int, int, int]

_REQUIRED = ("encode", "decode", "latent_dim")


class VAENetwork(nn.Module):
    """Base class of the networks: subclasses build their layers and implement ``encode`` and ``decode``.

    Args:
        image_shape: (channels, height, width) of the images; set from the data by the CLI.
        latent_dim: size of z, d (2 in the report's figures).
        deterministic: a plain autoencoder: z = mu, no KL term and no log-variance head. Its
            posterior is a point mass, so ``encode`` returns log sigma^2 = -inf
            (:meth:`point_mass_logvar`).
    """

    #: K, the classes a conditional network takes as its second argument; ``None``: it does not condition.
    num_classes: int | None = None

    def __init__(self, image_shape: ImageShape = (1, 28, 28), latent_dim: int = 2, deterministic: bool = False) -> None:
        super().__init__()
        if len(image_shape) != 3 or any(int(n) < 1 for n in image_shape):
            raise ValueError(f"image_shape must be (channels, height, width), got {tuple(image_shape)}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.image_shape: ImageShape = tuple(int(n) for n in image_shape)  # type: ignore[assignment]
        self.latent_dim = latent_dim
        self.deterministic = deterministic

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(mu, logvar)`` of q(z|x), each (B, d), for images (B, C, H, W)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Logits (..., C, H, W) of p(x|z) for latent codes (..., d)."""
        raise NotImplementedError

    def point_mass_logvar(self, mu: Tensor) -> Tensor:
        """log sigma^2 of a deterministic encoder: -inf, sigma = 0."""
        return mu.new_full(mu.shape, float("-inf"))


def check_network(network: Any) -> nn.Module:
    """``network`` if it has what the module needs; otherwise a ``TypeError`` naming what is missing."""
    if not isinstance(network, nn.Module):
        raise TypeError(f"model.network must be a torch.nn.Module, got {type(network).__name__}")
    missing = [name for name in _REQUIRED if not hasattr(network, name)]
    if missing:
        raise TypeError(
            f"model.network {type(network).__name__} lacks {', '.join(missing)}: a network needs encode(x) -> "
            "(mu, logvar), decode(z) -> logits and latent_dim (subclass vae_lightning.models.VAENetwork)"
        )
    return network
