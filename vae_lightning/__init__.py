"""Variational Autoencoders with PyTorch Lightning: any network, likelihood and image dataset from YAML."""

from vae_lightning.data import ImageDataModule
from vae_lightning.models import MLPVAE, ConvVAE, VAENetwork
from vae_lightning.module import VAEModule

__all__ = ["ConvVAE", "ImageDataModule", "MLPVAE", "VAEModule", "VAENetwork"]
