"""The VAE of the report as plain ``nn.Module``s: MLP encoder, reparameterization, MLP decoder.

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", 2014.
    "Variational Autoencoder" (report, 2022): encoder with t ReLU hidden layers and two
    linear heads (mu, log sigma^2), z = mu + sigma * eps, decoder with t ReLU hidden
    layers and a sigmoid output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Encoder(nn.Module):
    """q(z|x): ``len(hidden_dims)`` hidden layers ``ReLU(W x + b)``, then linear heads mu and log sigma^2.

    Args:
        input_dim: pixels per image, D.
        hidden_dims: width of each hidden layer, first to last.
        latent_dim: size of z, d.
        linear: no hidden nonlinearity (the linear autoencoder that spans the PCA subspace).
    """

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], latent_dim: int, linear: bool = False) -> None:
        super().__init__()
        dims = [input_dim, *hidden_dims]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.mu = nn.Linear(dims[-1], latent_dim)
        self.logvar = nn.Linear(dims[-1], latent_dim)
        self.linear = linear

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mu, logvar)``, each (B, d)."""
        h = x
        for layer in self.hidden:
            h = layer(h)
            if not self.linear:
                h = F.relu(h)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """p(x|z): ``len(hidden_dims)`` hidden ReLU layers, then a linear output whose sigmoid is x_hat.

    ``forward`` returns the logits (pre-sigmoid): the Bernoulli likelihood needs them for a
    numerically stable cross-entropy, and ``VAE.decode`` applies the sigmoid.

    Args:
        latent_dim: size of z, d.
        hidden_dims: widths of the hidden layers in the decoder's own order (the mirror of
            the encoder's, e.g. ``[256, 512]`` for an encoder ``[512, 256]``).
        output_dim: pixels per image, D.
        tied_to: encoder layers whose weights the decoder reuses transposed, one per decoder
            layer in decoder order (the report's decoder that "shares the same parameters as
            the encoder"); each decoder layer keeps its own bias. ``None``: untied.
        linear: no hidden nonlinearity.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        tied_to: Sequence[nn.Linear] | None = None,
        linear: bool = False,
    ) -> None:
        super().__init__()
        dims = [latent_dim, *hidden_dims, output_dim]
        self.linear = linear
        self.num_layers = len(dims) - 1
        self.tied_to = None if tied_to is None else list(tied_to)
        if self.tied_to is None:
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        else:
            if len(self.tied_to) != self.num_layers:
                raise ValueError(f"tied_to needs {self.num_layers} encoder layers, got {len(self.tied_to)}")
            self.layers = nn.ModuleList()
            self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in dims[1:])

    def _weight_and_bias(self, i: int) -> tuple[Tensor, Tensor]:
        if self.tied_to is None:
            layer = self.layers[i]
            return layer.weight, layer.bias
        return self.tied_to[i].weight.t(), self.biases[i]

    def forward(self, z: Tensor) -> Tensor:
        """Return the logits of x_hat, shape (..., D)."""
        h = z
        last = self.num_layers - 1
        for i in range(self.num_layers):
            weight, bias = self._weight_and_bias(i)
            h = F.linear(h, weight, bias)
            if i < last and not self.linear:
                h = F.relu(h)
        return h


class VAE(nn.Module):
    """Encoder, reparameterization and decoder, wired as in the report (eqs. 1-13).

    Args:
        input_dim: pixels per image, D (784 for MNIST).
        hidden_dims: encoder hidden widths, first to last; the decoder mirrors them.
            One entry per hidden layer (the report's t = ``len(hidden_dims)``).
        latent_dim: size of z, d (2 in the report's figures).
        mc_samples: Monte-Carlo samples of z per image, N in eq. 15.
        tied_weights: the decoder reuses the encoder's weight matrices transposed (its
            first layer the mu head's, then the hidden layers' in mirror order), with biases
            of its own. Off by default.
        linear: no nonlinearity anywhere: no hidden ReLU, and ``decode`` returns the decoder's
            output without the sigmoid (with a deterministic latent, the linear autoencoder
            whose decoder spans the PCA subspace).
    """

    def __init__(
        self,
        input_dim: int = 784,
        hidden_dims: Sequence[int] = (512, 256),
        latent_dim: int = 2,
        mc_samples: int = 1,
        tied_weights: bool = False,
        linear: bool = False,
    ) -> None:
        super().__init__()
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        if len(hidden_dims) == 0 or any(h <= 0 for h in hidden_dims):
            raise ValueError(f"hidden_dims must be a non-empty list of positive widths, got {list(hidden_dims)}")
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        if mc_samples < 1:
            raise ValueError(f"mc_samples must be at least 1, got {mc_samples}")
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.mc_samples = mc_samples
        self.linear = linear
        self.encoder = Encoder(input_dim, hidden_dims, latent_dim, linear=linear)
        tied_to = [self.encoder.mu, *reversed(self.encoder.hidden)] if tied_weights else None
        self.decoder = Decoder(latent_dim, list(reversed(hidden_dims)), input_dim, tied_to=tied_to, linear=linear)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(mu, logvar)`` of q(z|x), each (B, d)."""
        return self.encoder(x)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, samples: int = 1) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling, sec. 2.4); shape (samples, B, d)."""
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((samples, *mu.shape), dtype=mu.dtype, device=mu.device)
        return mu + std * eps

    def decode_logits(self, z: Tensor) -> Tensor:
        """Pre-sigmoid decoder output, (..., D)."""
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """x_hat = Sigmoid(decoder(z)), pixels in [0, 1], (..., D); decoder(z) itself when ``linear``."""
        logits = self.decoder(z)
        return logits if self.linear else torch.sigmoid(logits)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(logits, mu, logvar)``; logits are (N, B, D) for N = ``mc_samples``."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, self.mc_samples)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def sample(self, num_images: int, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``num_images`` draws of z ~ N(0, I) into images in [0, 1], (num_images, D)."""
        param = next(self.parameters())
        z = torch.randn(num_images, self.latent_dim, generator=generator)  # on the CPU, so a seed gives the same z anywhere
        return self.decode(z.to(param))
