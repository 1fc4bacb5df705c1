"""The LightningModule: wires the VAE and its RL + KL loss to Lightning's steps and logging."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from vae_lightning.checkpoints import CheckpointError, read_checkpoint
from vae_lightning.evaluation import (
    add_noise,
    binarize,
    iwae_bounds,
    reconstruction_metrics,
    seeded_generator,
    update_image_metrics,
)
from vae_lightning.likelihoods import Likelihood, log_likelihood, observation_mean, reconstruction_term
from vae_lightning.losses import kl_divergence
from vae_lightning.model import VAE

#: SGD with the report's best momentum. The learning rate came from 5-epoch runs of the default
#: config at 1e-3, 3e-3, 1e-2 and 3e-2 (README, "Choosing the learning rate").
DEFAULT_LR = 3e-3
DEFAULT_MOMENTUM = 0.9

Batch = tuple[Tensor, Tensor]


#: The loss terms logged for every stage: ``{stage}/loss`` is always RL + KL.
TERM_NAMES = ("loss", "rl", "kl")


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
        likelihood: observation model p(x|z) (see ``vae_lightning.likelihoods``): ``mse`` the
            report's sum of squared errors (a Gaussian with variance 1/2), ``gaussian`` a
            Gaussian with std ``observation_std``, ``bernoulli`` cross-entropy on the logits.
        observation_std: std of the ``gaussian`` likelihood (its initial value when learned).
        learn_observation_std: learn the ``gaussian`` std (one for all pixels).
        binarize: dynamic binarization: each training batch is drawn afresh as binary pixels
            (1 with probability equal to the intensity); validation and test images are
            binarized with fixed seeds. For ``bernoulli``, as in the published MNIST numbers.
        noise_std: denoising: Gaussian noise of this std added to the encoder's input in
            training; RL still compares the output with the clean image. 0: off.
        linear: no nonlinearity (no hidden ReLU, no output sigmoid); with ``deterministic``,
            the linear autoencoder that spans the PCA subspace. Not with ``bernoulli``.
        deterministic: z = mu (no sampling) and no KL in the loss: a plain autoencoder.
        iwae_samples: the K of each importance-weighted bound on the test log-likelihood,
            logged as ``test/iwae_k{K}`` in nats per image; larger K is tighter and slower.
        iwae_chunk_size: importance samples decoded at once (memory ~ chunk x batch x D).
        denoise_std: std of the Gaussian noise added to test images for ``test/denoise_*``
            (the model's reconstruction of noisy images vs the clean ones) and
            ``test/noisy_*`` (the noisy images themselves). 0: off.
        kl_weight: beta, the weight of KL in the training objective RL + beta * KL. 1: the
            report's loss. ``{stage}/loss`` is always RL + KL, comparable across betas.
        kl_warmup: steps or epochs (``kl_warmup_interval``) over which the KL weight rises
            linearly from 0 to ``kl_weight``; logged as ``train/kl_weight``. 0: no warm-up.
        kl_warmup_interval: whether ``kl_warmup`` counts optimizer steps or epochs.
    """

    def __init__(
        self,
        input_dim: int = 784,
        hidden_dims: Sequence[int] = (512, 256),
        latent_dim: int = 2,
        mc_samples: int = 1,
        tied_weights: bool = False,
        optimizer: OptimizerCallable | None = None,
        likelihood: Likelihood = "mse",
        observation_std: float = 0.1,
        learn_observation_std: bool = False,
        binarize: bool = False,
        noise_std: float = 0.0,
        linear: bool = False,
        deterministic: bool = False,
        iwae_samples: Sequence[int] = (1, 50),
        iwae_chunk_size: int = 64,
        denoise_std: float = 0.5,
        kl_weight: float = 1.0,
        kl_warmup: int = 0,
        kl_warmup_interval: Literal["step", "epoch"] = "step",
    ) -> None:
        super().__init__()
        if likelihood == "bernoulli" and linear:
            raise ValueError("model.linear needs likelihood mse or gaussian: the bernoulli likelihood needs the sigmoid")
        if observation_std <= 0:
            raise ValueError(f"model.observation_std must be positive, got {observation_std}")
        if noise_std < 0 or denoise_std < 0:
            raise ValueError(f"model.noise_std and model.denoise_std must be >= 0, got {noise_std} and {denoise_std}")
        if not iwae_samples or min(iwae_samples) < 1:
            raise ValueError(f"model.iwae_samples must be a non-empty list of counts >= 1, got {list(iwae_samples)}")
        if kl_weight < 0 or kl_warmup < 0:
            raise ValueError(f"model.kl_weight and model.kl_warmup must be >= 0, got {kl_weight} and {kl_warmup}")
        # the test-time settings stay out of the checkpoint, so `test --ckpt_path` takes them
        # from its own command line instead of from the run that trained the model
        self.save_hyperparameters(ignore=["iwae_samples", "iwae_chunk_size", "denoise_std"])
        self.iwae_samples = list(iwae_samples)
        self.iwae_chunk_size = iwae_chunk_size
        self.denoise_std = denoise_std
        self.model = VAE(
            input_dim=input_dim,
            hidden_dims=list(hidden_dims),
            latent_dim=latent_dim,
            mc_samples=mc_samples,
            tied_weights=tied_weights,
            linear=linear,
        )
        if likelihood == "gaussian":
            log_std = torch.tensor(math.log(observation_std))
            if learn_observation_std:
                self.log_std = nn.Parameter(log_std)
            else:
                self.register_buffer("log_std", log_std)
        else:
            self.log_std = None
        self.test_reconstruction = reconstruction_metrics("test/")
        self.test_denoising = reconstruction_metrics("test/denoise_")
        self.test_noisy_input = reconstruction_metrics("test/noisy_")
        self.optimizer_factory = optimizer or default_optimizer
        self._epoch_totals: dict[str, tuple[Tensor, int]] = {}  # stage -> (weighted sums, images), see _accumulate_terms

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_hat, mu, logvar)``; x_hat is (N, B, D) for N = ``mc_samples`` (1 when deterministic)."""
        logits, mu, logvar = self._decode_posterior(x)
        return observation_mean(logits, self.hparams.linear), mu, logvar

    def _decode_posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, mu, logvar)``, logits (N, B, D) for N draws of z, or for z = mu when deterministic."""
        if not self.hparams.deterministic:
            return self.model(x)
        mu, logvar = self.model.encode(x)
        return self.model.decode_logits(mu.unsqueeze(0)), mu, logvar

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x|z) in nats per image under this model's likelihood, (N, B) for (N, B, D) logits."""
        return log_likelihood(x, logits, self.hparams.likelihood, self.log_std, self.hparams.linear)

    def _observed(self, x: Tensor, stage: str, batch_idx: int) -> Tensor:
        """The image the model encodes and reconstructs: ``x``, or its binarization when ``binarize``
        (fresh in training, seeded by the batch index otherwise, so each epoch scores the same data)."""
        if not self.hparams.binarize:
            return x
        return binarize(x, None if stage == "train" else seeded_generator(2 * batch_idx, x.device))

    def _common_step(self, batch: Batch, stage: str, batch_idx: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """``(objective, mu, logvar)`` of one batch; its loss terms are logged per epoch as
        ``{stage}/loss``, ``{stage}/rl``, ``{stage}/kl`` (``train/*_epoch``, and ``train/*_step``
        on the logged steps). The objective is RL + KL, in training RL + beta * KL."""
        x = self._observed(batch[0], stage, batch_idx)
        noisy = stage == "train" and self.hparams.noise_std > 0
        logits, mu, logvar = self._decode_posterior(add_noise(x, self.hparams.noise_std) if noisy else x)
        rl = reconstruction_term(x, logits, self.hparams.likelihood, self.log_std, self.hparams.linear)
        kl = rl.new_zeros(()) if self.hparams.deterministic else kl_divergence(mu, logvar)
        terms = dict(zip(TERM_NAMES, (rl + kl, rl, kl)))
        self._accumulate_terms(stage, terms, x.shape[0])
        if stage != "train":
            return terms["loss"], mu, logvar
        kl_weight = self.kl_weight_in_use()  # optimise RL + beta * KL; the logged train/loss stays RL + KL
        if self._step_is_logged():
            step_values = {f"train/{name}_step": value.detach() for name, value in terms.items()}
            self.log_dict({**step_values, "train/kl_weight": kl_weight}, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return rl + kl_weight * kl, mu, logvar

    def _accumulate_terms(self, stage: str, terms: dict[str, Tensor], batch_size: int) -> None:
        """Add the batch's terms, weighted by its size, to the stage's sums for the epoch. They stay
        on the device (no host sync) and are logged once, at the epoch's end (``_log_epoch_means``),
        with the names and values ``self.log(on_epoch=True)`` would write at a fraction of its cost:
        ``self.log`` costs more than this model's whole step on a CPU when called for every term
        of every batch. Train step values are logged only on the steps the Trainer writes."""
        weighted = torch.stack([value.detach() for value in terms.values()]) * batch_size
        sums, count = self._epoch_totals.get(stage, (0, 0))
        self._epoch_totals[stage] = (weighted + sums, count + batch_size)

    def _log_epoch_means(self, stage: str, name_format: str, across_processes: bool) -> None:
        """Log the epoch's batch-size weighted means of the stage's terms, named by ``name_format``
        (``{}``: the term); with ``across_processes``, over the batches of every DDP process."""
        if stage not in self._epoch_totals:
            return
        sums, count = self._epoch_totals.pop(stage)
        if across_processes:
            totals = torch.cat([sums, sums.new_tensor([count])])
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
            sums, count = totals[:-1], totals[-1]
        names = [name_format.format(name) for name in TERM_NAMES]
        self.log_dict(dict(zip(names, sums / count)), on_step=False, on_epoch=True, sync_dist=False)

    def _step_is_logged(self) -> bool:
        """Whether the Trainer writes this step's ``on_step`` values (its ``log_every_n_steps`` rule)."""
        every = self.trainer.log_every_n_steps
        return every > 0 and ((self.global_step + 1) % every == 0 or self.trainer.should_stop)

    # Each epoch starts its sums afresh (an interrupted epoch may have left some).
    def on_train_epoch_start(self) -> None:
        self._epoch_totals.pop("train", None)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_means("train", "train/{}_epoch", across_processes=False)

    def on_validation_epoch_start(self) -> None:
        self._epoch_totals.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val", "val/{}", across_processes=True)

    def on_test_epoch_start(self) -> None:
        self._epoch_totals.pop("test", None)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_means("test", "test/{}", across_processes=True)

    def kl_weight_in_use(self) -> float:
        """beta = ``kl_weight``, ramped linearly from 0 over the first ``kl_warmup`` steps or epochs."""
        warmup, beta = self.hparams.kl_warmup, self.hparams.kl_weight
        if warmup == 0:
            return beta
        progress = self.current_epoch if self.hparams.kl_warmup_interval == "epoch" else self.global_step
        return beta * min(1.0, progress / warmup)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The batch's loss and its posterior means and log-variances (B, d): callbacks such as
        ``LatentDiagnostics`` read them from ``outputs`` instead of encoding the batch again."""
        loss, mu, logvar = self._common_step(batch, "val", batch_idx)
        return {"loss": loss, "mu": mu.detach(), "logvar": logvar.detach()}

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._common_step(batch, "test", batch_idx)[0]
        self._log_test_metrics(self._observed(batch[0], "test", batch_idx), batch_idx)
        return loss

    def _log_test_metrics(self, x: Tensor, batch_idx: int) -> None:
        """IWAE bounds on log p(x), reconstruction quality, and denoising quality of one test batch."""
        if not self.hparams.deterministic:  # no posterior to importance-sample from
            generator = torch.Generator().manual_seed(batch_idx)
            bounds = iwae_bounds(
                self.model, x, self.iwae_samples, self.log_likelihood, self.iwae_chunk_size, generator
            )
            self.log_dict({f"test/iwae_k{k}": b.mean() for k, b in bounds.items()}, batch_size=x.shape[0], sync_dist=True)
        update_image_metrics(self.test_reconstruction, self.reconstruct(x), x)
        self.log_dict(self.test_reconstruction)
        if self.denoise_std > 0:
            noisy = add_noise(x, self.denoise_std, seeded_generator(2 * batch_idx + 1, x.device))
            update_image_metrics(self.test_denoising, self.reconstruct(noisy), x)
            update_image_metrics(self.test_noisy_input, noisy, x)
            self.log_dict(self.test_denoising)
            self.log_dict(self.test_noisy_input)

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

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, weights_only: bool | None = True, **kwargs) -> VAEModule:  # type: ignore[override]
        """Lightning's loader with ``weights_only=True`` (no pickled code from the file runs) and a
        ``CheckpointError`` naming the problem for a missing file, a file that is not a checkpoint,
        or weights that do not fit the model (e.g. ``latent_dim=...`` overridden in ``kwargs``)."""
        if "://" not in str(checkpoint_path):
            read_checkpoint(checkpoint_path)
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, weights_only=weights_only, **kwargs)
        except RuntimeError as err:
            details = " ".join(line.strip() for line in str(err).splitlines()[1:4])
            overrides = sorted(set(kwargs) - {"map_location", "hparams_file", "strict"})
            raise CheckpointError(
                f"checkpoint {checkpoint_path} does not fit the model built from its settings with the "
                f"overrides {overrides}: {details} Load it without overriding its architecture."
            ) from err
