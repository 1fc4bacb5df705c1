"""The LightningModule: wires the VAE and its RL + KL loss to Lightning's steps and logging."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from vae_lightning.losses import elbo_terms
from vae_lightning.model import VAE

#: SGD with the report's best momentum. The learning rate came from 5-epoch runs of the default
#: config at 1e-3, 3e-3, 1e-2 and 3e-2 (README, "Choosing the learning rate").
DEFAULT_LR = 3e-3
DEFAULT_MOMENTUM = 0.9

Batch = tuple[Tensor, Tensor]


def default_optimizer(params) -> torch.optim.Optimizer:
    """SGD(lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM): the report's optimizer."""
    return torch.optim.SGD(params, lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM)


class VAEModule(LightningModule):
    """A VAE trained on RL + KL, with metrics named ``{stage}/{loss,rl,kl}`` for TensorBoard.

    Args:
        input_dim: pixels per image, D (784 for MNIST).
        hidden_dims: encoder hidden widths, first to last, one entry per hidden layer;
            the decoder mirrors them.
        latent_dim: size of the latent code z, d.
        mc_samples: Monte-Carlo samples of z per image for RL (N in eq. 15).
        tied_weights: decoder reuses the encoder's weights transposed (own biases).
        optimizer: builds the optimizer from the parameters; in YAML a ``class_path`` and
            ``init_args``. ``None``: SGD, lr 3e-3, momentum 0.9.
    """

    def __init__(
        self,
        input_dim: int = 784,
        hidden_dims: Sequence[int] = (512, 256),
        latent_dim: int = 2,
        mc_samples: int = 1,
        tied_weights: bool = False,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = VAE(
            input_dim=input_dim,
            hidden_dims=list(hidden_dims),
            latent_dim=latent_dim,
            mc_samples=mc_samples,
            tied_weights=tied_weights,
        )
        self.optimizer_factory = optimizer or default_optimizer

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_hat, mu, logvar)``; x_hat is (N, B, D) for N = ``mc_samples``."""
        logits, mu, logvar = self.model(x)
        return torch.sigmoid(logits), mu, logvar

    def _common_step(self, batch: Batch, stage: str) -> Tensor:
        """Loss terms for one batch, logged as ``{stage}/loss``, ``{stage}/rl``, ``{stage}/kl``."""
        x, _ = batch
        x_hat, mu, logvar = self(x)
        terms = elbo_terms(x, x_hat, mu, logvar)
        training = stage == "train"
        self.log_dict(
            {f"{stage}/{name}": value for name, value in terms.items()},
            on_step=training,
            on_epoch=True,
            prog_bar=False,
            batch_size=x.shape[0],
            sync_dist=not training,
        )
        return terms["loss"]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """New images from the prior, one per input image, and the inputs' reconstructions."""
        x, _ = batch
        return {"samples": self.generate(x.shape[0]), "inputs": x, "reconstructions": self.reconstruct(x)}

    @torch.no_grad()
    def generate(self, num_images: int, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``num_images`` draws from N(0, I): (num_images, D) pixels in [0, 1]."""
        return self.model.sample(num_images, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean of each image in ``x``: (B, D) pixels in [0, 1]."""
        mu, _ = self.model.encode(x)
        return self.model.decode(mu)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())
