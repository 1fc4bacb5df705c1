"""The report's VAE: MLP encoder with t ReLU hidden layers and two linear heads (mu, log sigma^2),
MLP decoder with t ReLU hidden layers whose sigmoid output is the image (eqs. 1-13).

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", 2014.
    "Variational Autoencoder" (report, 2022): the decoder may "share the same parameters as the
    encoder" (``tied_weights``), and a linear autoencoder with squared error spans the PCA
    subspace (``linear`` with ``deterministic``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vae_lightning.models.interface import ImageShape, VAENetwork


class MLPVAE(VAENetwork):
    """Flattens each image to its D = C x H x W pixels and runs the report's MLPs on them.

    Args:
        image_shape: (channels, height, width) of the images; set from the data by the CLI.
        hidden_dims: encoder hidden widths, first to last, one per hidden layer (the report's
            t = ``len(hidden_dims)``); the decoder mirrors them.
        latent_dim: size of z, d (2 in the report's figures).
        tied_weights: the decoder reuses the encoder's weight matrices transposed (its first
            layer the mu head's, then the hidden layers' in mirror order), with biases of its own.
        linear: no hidden ReLU: with ``deterministic`` and the identity link of the likelihood,
            the linear autoencoder whose decoder spans the top principal subspace.
        deterministic: a plain autoencoder (z = mu, no KL, no log-variance head).
    """

    def __init__(
        self,
        image_shape: ImageShape = (1, 28, 28),
        hidden_dims: Sequence[int] = (512, 256),
        latent_dim: int = 2,
        tied_weights: bool = False,
        linear: bool = False,
        deterministic: bool = False,
    ) -> None:
        super().__init__(image_shape, latent_dim, deterministic)
        if len(hidden_dims) == 0 or any(h <= 0 for h in hidden_dims):
            raise ValueError(f"hidden_dims must be a non-empty list of positive widths, got {list(hidden_dims)}")
        pixels = math.prod(self.image_shape)
        dims = [pixels, *hidden_dims]
        self.activation = nn.Identity() if linear else nn.ReLU()
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.mu = nn.Linear(dims[-1], latent_dim)
        self.logvar = None if deterministic else nn.Linear(dims[-1], latent_dim)
        decoder_dims = [latent_dim, *reversed(dims)]
        if tied_weights:  # decoder layer i uses the transpose of the matching encoder layer
            self.tied_to: list[nn.Linear] | None = [self.mu, *reversed(self.encoder)]
            self.decoder = nn.ModuleList()
            self.decoder_biases = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in decoder_dims[1:])
        else:
            self.tied_to = None
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(decoder_dims[:-1], decoder_dims[1:]))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)``, each (B, d), for images (B, C, H, W)."""
        h = x.flatten(-3)  # (B, D)
        for layer in self.encoder:
            h = self.activation(layer(h))
        mu = self.mu(h)
        return mu, self.point_mass_logvar(mu) if self.logvar is None else self.logvar(h)

    def _decoder_layer(self, i: int) -> tuple[Tensor, Tensor]:
        if self.tied_to is None:
            return self.decoder[i].weight, self.decoder[i].bias
        return self.tied_to[i].weight.t(), self.decoder_biases[i]

    def decode(self, z: Tensor) -> Tensor:
        """Logits (..., C, H, W) for z (..., d): hidden layers with ReLU, a linear output layer."""
        h = z
        last = len(self.encoder)
        for i in range(last + 1):
            h = F.linear(h, *self._decoder_layer(i))
            if i < last:
                h = self.activation(h)
        return h.unflatten(-1, self.image_shape)
