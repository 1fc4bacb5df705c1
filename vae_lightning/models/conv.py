"""A convolutional VAE: strided convolutions down to a small feature map, linear heads for mu and
log sigma^2, and the mirror image with transposed convolutions back up (the layout of the
DCGAN-style VAEs of lightning-bolts and PyTorch-VAE). Works for any image size; each layer
halves the height and width (rounding down) and the decoder restores them exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vae_lightning.models.interface import ImageShape, VAENetwork


def _halved(size: int, layers: int) -> list[int]:
    """Sizes after each of ``layers`` convolutions with kernel 4, stride 2, padding 1: floor(n / 2)."""
    sizes = [size]
    for _ in range(layers):
        sizes.append(sizes[-1] // 2)
    return sizes


class ConvVAE(VAENetwork):
    """Encoder: ``len(channels)`` convolutions (kernel 4, stride 2, ReLU), a ReLU dense layer of
    ``hidden_dim``, linear heads mu and log sigma^2. Decoder: the mirror, ending in a transposed
    convolution to the image's channels (the logits).

    Args:
        image_shape: (channels, height, width), e.g. (1, 28, 28), (3, 32, 32) or (3, 64, 64);
            set from the data by the CLI.
        channels: output channels of each encoder convolution, first to last; the depth is
            ``len(channels)``, and the decoder mirrors them.
        hidden_dim: width of the dense layer between the feature map and the latent heads.
        latent_dim: size of z, d.
        deterministic: a plain autoencoder (z = mu, no KL, no log-variance head).
    """

    def __init__(
        self,
        image_shape: ImageShape = (1, 28, 28),
        channels: Sequence[int] = (32, 64),
        hidden_dim: int = 256,
        latent_dim: int = 2,
        deterministic: bool = False,
    ) -> None:
        super().__init__(image_shape, latent_dim, deterministic)
        if len(channels) == 0 or any(c <= 0 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive widths, got {list(channels)}")
        if hidden_dim <= 0:
            raise ValueError(f"hidden_dim must be positive, got {hidden_dim}")
        in_channels, height, width = self.image_shape
        heights, widths = _halved(height, len(channels)), _halved(width, len(channels))
        if heights[-1] < 1 or widths[-1] < 1:
            raise ValueError(
                f"{len(channels)} convolutions halve {height}x{width} images to nothing: use fewer channels entries"
            )
        self.feature_shape = (channels[-1], heights[-1], widths[-1])
        features = math.prod(self.feature_shape)
        widths_in = [in_channels, *channels]
        encoder: list[nn.Module] = []
        for a, b in zip(widths_in[:-1], widths_in[1:]):
            encoder += [nn.Conv2d(a, b, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(features, hidden_dim), nn.ReLU())
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = None if deterministic else nn.Linear(hidden_dim, latent_dim)
        decoder: list[nn.Module] = [nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, features), nn.ReLU()]
        decoder.append(nn.Unflatten(1, self.feature_shape))
        for i in range(len(channels), 0, -1):  # back up: feature map i -> i - 1
            # a transposed convolution doubles the size; output_padding adds the row/column
            # that the encoder's rounding down dropped
            padding = (heights[i - 1] - 2 * heights[i], widths[i - 1] - 2 * widths[i])
            decoder.append(
                nn.ConvTranspose2d(widths_in[i], widths_in[i - 1], kernel_size=4, stride=2, padding=1, output_padding=padding)
            )
            if i > 1:
                decoder.append(nn.ReLU())
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)``, each (B, d), for images (B, C, H, W)."""
        h = self.encoder(x)
        mu = self.mu(h)
        return mu, self.point_mass_logvar(mu) if self.logvar is None else self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """Logits (..., C, H, W) for z (..., d)."""
        leading = z.shape[:-1]
        logits = self.decoder(z.reshape(-1, z.shape[-1]))
        return logits.reshape(*leading, *self.image_shape)
