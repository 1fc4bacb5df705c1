"""A conditional VAE: the encoder and decoder both see the image's class (Sohn et al. 2015).

References:
    Sohn, Lee & Yan, "Learning Structured Output Representation using Deep Conditional Generative
    Models", NeurIPS 2015: q(z|x, y), p(x|z, y) and the prior N(0, I) independent of y; the ELBO
    of eq. 4 is the VAE's with y given to both networks.

A network conditions when it declares ``num_classes`` (K); it then takes, after x or z, the
one-hot classes ``condition`` (..., K). The module builds that argument in one place
(:func:`network_condition`) and passes it to every call; a network that does not declare
``num_classes`` (today's and users' own) is never given it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vae_lightning.models.interface import ImageShape, VAENetwork
from vae_lightning.runtime.errors import UserError

Classes = Sequence[int] | Tensor


def conditioning_classes(network: nn.Module) -> int | None:
    """K, the classes ``network`` conditions on; ``None`` for a network that does not condition."""
    return getattr(network, "num_classes", None)


def network_condition(network: nn.Module, labels: Tensor | None) -> tuple[Tensor, ...]:
    """The arguments ``network`` takes besides x or z: the one-hot codes (..., K) of ``labels``
    (...) for a conditional network, none for one that does not condition."""
    num_classes = conditioning_classes(network)
    if num_classes is None:
        return ()
    if labels is None:
        raise ValueError(f"model.network {type(network).__name__} conditions on the class: pass the images' labels")
    return (F.one_hot(labels.long(), num_classes).float(),)


def drawn_classes(network: nn.Module, num_images: int, classes: Classes | None = None) -> Tensor | None:
    """The class of each of ``num_images`` draws: ``classes`` repeated in turn (each class in turn
    when ``None``); ``None`` for a network that does not condition, which takes no ``classes``."""
    num_classes = conditioning_classes(network)
    if num_classes is None:
        if classes is not None:
            raise ValueError(f"classes: model.network {type(network).__name__} does not condition on the class")
        return None
    order = torch.arange(num_classes) if classes is None else torch.as_tensor(classes, dtype=torch.long).flatten()
    if len(order) == 0 or order.min() < 0 or order.max() >= num_classes:
        raise ValueError(f"classes must be class indices from 0 to {num_classes - 1}, got {order.tolist()}")
    return order.repeat(math.ceil(num_images / len(order)))[:num_images]


def check_conditioning(network: nn.Module, data_classes: int | None, dataset: str) -> None:
    """A ``UserError`` naming both settings when a conditional network cannot train on the data:
    a dataset without labels (fewer than two classes) or another number of classes."""
    num_classes = conditioning_classes(network)
    if num_classes is None:
        return
    name = type(network).__name__
    if data_classes is None or data_classes < 2:
        has = "no class labels" if data_classes is None else f"{data_classes} class (one class folder)"
        raise UserError(
            f"model.network {name} conditions on the class, but data.dataset {dataset} has {has}: train it on "
            "labelled images (an image_folder with a subfolder per class), or choose a network that does not condition"
        )
    if num_classes != data_classes:
        raise UserError(
            f"model.network.init_args.num_classes is {num_classes}, but data.dataset {dataset} has {data_classes} "
            f"classes: set --model.network.init_args.num_classes {data_classes}"
        )


class ConditionalMLPVAE(VAENetwork):
    """The report's MLPs with the one-hot class appended to the encoder's input (the flattened
    pixels) and to z: q(z|x, y) and p(x|z, y), the prior N(0, I) as before.

    Args:
        image_shape: (channels, height, width) of the images; set from the data by the CLI.
        num_classes: K, the classes of the data (10 for MNIST); must match the dataset's.
        hidden_dims: encoder hidden widths, first to last; the decoder mirrors them.
        latent_dim: size of z, d.
        deterministic: a conditional autoencoder (z = mu, no KL, no log-variance head).
    """

    def __init__(
        self,
        image_shape: ImageShape = (1, 28, 28),
        num_classes: int = 10,
        hidden_dims: Sequence[int] = (512, 256),
        latent_dim: int = 2,
        deterministic: bool = False,
    ) -> None:
        super().__init__(image_shape, latent_dim, deterministic)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if len(hidden_dims) == 0 or any(h <= 0 for h in hidden_dims):
            raise ValueError(f"hidden_dims must be a non-empty list of positive widths, got {list(hidden_dims)}")
        self.num_classes = num_classes
        encoder_dims = [math.prod(self.image_shape) + num_classes, *hidden_dims]
        decoder_dims = [latent_dim + num_classes, *reversed(hidden_dims)]
        self.encoder = _mlp(encoder_dims)
        self.mu = nn.Linear(encoder_dims[-1], latent_dim)
        self.logvar = None if deterministic else nn.Linear(encoder_dims[-1], latent_dim)
        self.decoder = nn.Sequential(_mlp(decoder_dims), nn.Linear(decoder_dims[-1], math.prod(self.image_shape)))

    def encode(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` (B, d) of q(z|x, y) for images (B, C, H, W) and one-hot classes (B, K)."""
        h = self.encoder(torch.cat([x.flatten(-3), condition], dim=-1))  # (B, D + K) -> (B, h)
        mu = self.mu(h)
        return mu, self.point_mass_logvar(mu) if self.logvar is None else self.logvar(h)

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """Logits (..., C, H, W) of p(x|z, y) for z (..., d) and one-hot classes broadcast to it
        ((B, K) for z of (N, B, d))."""
        condition = condition.expand(*z.shape[:-1], condition.shape[-1])
        return self.decoder(torch.cat([z, condition], dim=-1)).unflatten(-1, self.image_shape)


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers of widths ``dims``, each followed by a ReLU."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)
