"""Variational Autoencoders on MNIST with PyTorch Lightning."""

from vae_lightning.data import MNISTDataModule
from vae_lightning.model import VAE
from vae_lightning.module import VAEModule

__all__ = ["MNISTDataModule", "VAE", "VAEModule"]
