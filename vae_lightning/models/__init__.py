"""The networks: plain ``nn.Module``s handed to ``VAEModule`` (``model.network`` in YAML).

- :class:`MLPVAE`: the report's MLP VAE (tied weights, linear and deterministic variants).
- :class:`ConvVAE`: convolutional encoder, transposed-convolution decoder.
- :class:`ConditionalMLPVAE`: the MLPs given the image's class too (a conditional VAE).
- :class:`VAENetwork`: the base class for a network of your own.
"""

from vae_lightning.models.conditional import ConditionalMLPVAE
from vae_lightning.models.conv import ConvVAE
from vae_lightning.models.interface import ImageShape, VAENetwork, check_network
from vae_lightning.models.mlp import MLPVAE

__all__ = ["ConditionalMLPVAE", "ConvVAE", "ImageShape", "MLPVAE", "VAENetwork", "check_network"]
