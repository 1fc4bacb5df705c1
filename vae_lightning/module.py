"""The LightningModule: wires a network and a likelihood to the RL + KL loss, the steps and logging.

What the network is (the report's MLP, a ConvVAE, one of your own), how pixels are scored (the
report's squared error, a Gaussian, a Bernoulli) and how the model is evaluated at test time
(``vae_lightning.evaluation.Evaluator``) are objects chosen in YAML; this module only runs
    x -> encode -> (mu, log sigma^2) -> z = mu + sigma * eps -> decode -> logits -> RL, KL
and logs ``{stage}/loss``, ``{stage}/rl`` and ``{stage}/kl``.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins import hparams_mixin
from torch import Tensor, nn

from vae_lightning.checkpoints import CheckpointError, read_checkpoint
from vae_lightning.corruption import InputNoise
from vae_lightning.latent import reparameterize
from vae_lightning.likelihoods import MSE, Likelihood
from vae_lightning.losses import kl_divergence
from vae_lightning.models import MLPVAE, check_network

#: SGD with the report's best momentum. The learning rate came from 5-epoch runs of the default
#: config at 1e-3, 3e-3, 1e-2 and 3e-2 (docs/training.md, "Choosing the learning rate").
DEFAULT_LR = 3e-3
DEFAULT_MOMENTUM = 0.9

Batch = tuple[Tensor, Tensor]

#: The loss terms logged for every stage: ``{stage}/loss`` is always RL + KL.
TERM_NAMES = ("loss", "rl", "kl")


def default_optimizer(params) -> torch.optim.Optimizer:
    """SGD(lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM): the report's optimizer."""
    return torch.optim.SGD(params, lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM)


def _objects_built_in_python(**arguments: object) -> list[str]:
    """The names of the arguments that are objects built in Python rather than by the CLI. Under
    LightningCLI the saved hyperparameters are the run's configuration (class paths and init
    args), from which ``load_from_checkpoint`` rebuilds the objects; objects built in Python
    would be pickled into the checkpoint instead, which ``weights_only`` loading refuses, so they
    are left out and given again to ``load_from_checkpoint``."""
    given = getattr(hparams_mixin, "_given_hyperparameters", None)
    if given is not None and given.get() is not None:
        return []
    return [name for name, value in arguments.items() if value is not None]


class VAEModule(LightningModule):
    """A VAE trained on RL + beta * KL, with metrics named ``{stage}/{loss,rl,kl}`` for TensorBoard.

    Args:
        network: encoder and decoder (``vae_lightning.models``: ``MLPVAE``, ``ConvVAE`` or your own
            ``VAENetwork``); in YAML a ``class_path`` and ``init_args``. ``None``: the report's
            ``MLPVAE``. Its ``image_shape`` comes from the data.
        likelihood: observation model p(x|z) (``vae_lightning.likelihoods``: ``MSE``, the
            report's sum of squared errors; ``Gaussian``; ``Bernoulli``). ``None``: ``MSE``.
        optimizer: builds the optimizer from the parameters; in YAML a ``class_path`` and
            ``init_args``. ``None``: SGD, lr 3e-3, momentum 0.9.
        mc_samples: Monte-Carlo samples of z per image for RL (N in eq. 15).
        noise_std: denoising: Gaussian noise of this std on the encoder's input in training; RL
            still compares the output with the clean image. 0: off.
        kl_weight: beta, the weight of KL in the training objective RL + beta * KL. 1: the
            report's loss. ``{stage}/loss`` is always RL + KL, comparable across betas.
        kl_warmup: steps or epochs (``kl_warmup_interval``) over which the KL weight rises
            linearly from 0 to ``kl_weight``; logged as ``train/kl_weight``. 0: no warm-up.
        kl_warmup_interval: whether ``kl_warmup`` counts optimizer steps or epochs.
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        likelihood: Likelihood | None = None,
        optimizer: OptimizerCallable | None = None,
        mc_samples: int = 1,
        noise_std: float = 0.0,
        kl_weight: float = 1.0,
        kl_warmup: int = 0,
        kl_warmup_interval: Literal["step", "epoch"] = "step",
    ) -> None:
        super().__init__()
        if mc_samples < 1:
            raise ValueError(f"model.mc_samples must be at least 1, got {mc_samples}")
        if noise_std < 0:
            raise ValueError(f"model.noise_std must be >= 0, got {noise_std}")
        if kl_weight < 0 or kl_warmup < 0:
            raise ValueError(f"model.kl_weight and model.kl_warmup must be >= 0, got {kl_weight} and {kl_warmup}")
        self.save_hyperparameters(ignore=_objects_built_in_python(network=network, likelihood=likelihood, optimizer=optimizer))
        self.network = check_network(MLPVAE() if network is None else network)
        self.likelihood = MSE() if likelihood is None else likelihood
        self.input_noise = InputNoise(noise_std) if noise_std > 0 else nn.Identity()
        self.optimizer_factory = optimizer or default_optimizer
        # a network that does not subclass VAENetwork gets the Gaussian posterior's
        self._reparameterize = getattr(self.network, "reparameterize", reparameterize)
        self._kl_divergence = getattr(self.network, "kl_divergence", kl_divergence)
        self._epoch_totals: dict[str, tuple[Tensor, int]] = {}  # stage -> (weighted sums, images), see _accumulate_terms

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_hat, mu, logvar)``; x_hat is (N, B, C, H, W) for N = ``mc_samples``."""
        mu, logvar = self.network.encode(x)
        logits = self.network.decode(self._reparameterize(mu, logvar, self.hparams.mc_samples))
        return self.likelihood.mean(logits), mu, logvar

    def _common_step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor, Tensor]:
        """``(objective, mu, logvar)`` of one batch; its loss terms are logged per epoch as
        ``{stage}/loss``, ``{stage}/rl``, ``{stage}/kl`` (``train/*_epoch``, and ``train/*_step``
        on the logged steps). The objective is RL + KL, in training RL + beta * KL."""
        x = batch[0]
        mu, logvar = self.network.encode(self.input_noise(x))  # noise only in training mode
        logits = self.network.decode(self._reparameterize(mu, logvar, self.hparams.mc_samples))
        rl = self.likelihood.reconstruction_loss(x, logits)
        kl = self._kl_divergence(mu, logvar)
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
        loss, mu, logvar = self._common_step(batch, "val")
        return {"loss": loss, "mu": mu.detach(), "logvar": logvar.detach()}

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._common_step(batch, "test")[0]

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """New images from the prior, one per input image, and the inputs' reconstructions."""
        x, _ = batch
        return {"samples": self.generate(x.shape[0]), "inputs": x, "reconstructions": self.reconstruct(x)}

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """The mean images (..., C, H, W) of p(x|z) for latent codes z (..., d)."""
        return self.likelihood.mean(self.network.decode(z))

    @torch.no_grad()
    def generate(self, num_images: int, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``num_images`` draws from N(0, I): mean images (num_images, C, H, W)."""
        z = torch.randn(num_images, self.network.latent_dim, generator=generator)  # on the CPU: a seed gives the same z anywhere
        return self.decode(z.to(self.device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean of each image in ``x``: mean images (B, C, H, W)."""
        return self.decode(self.network.encode(x)[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, weights_only: bool | None = True, **kwargs) -> VAEModule:  # type: ignore[override]
        """Lightning's loader with ``weights_only=True`` (no pickled code from the file runs) and a
        ``CheckpointError`` naming the problem for a missing file, a file that is not a checkpoint,
        or weights that do not fit the model (e.g. a ``network=...`` override of another size)."""
        local = "://" not in str(checkpoint_path)
        saved = (read_checkpoint(checkpoint_path).get("hyper_parameters") or {}) if local else {}
        try:
            module = super().load_from_checkpoint(checkpoint_path, *args, weights_only=weights_only, **kwargs)
        except RuntimeError as err:
            details = " ".join(line.strip() for line in str(err).splitlines()[1:4])
            overrides = sorted(set(kwargs) - {"map_location", "hparams_file", "strict"})
            fix = (
                "Load it without overriding its architecture."
                if "network" in saved or not local
                else "Its module was built in Python, not by the CLI, so the checkpoint does not describe "
                "the network: pass it again, load_from_checkpoint(path, network=...)."
            )
            raise CheckpointError(
                f"checkpoint {checkpoint_path} does not fit the model built from its settings with the "
                f"overrides {overrides}: {details} {fix}"
            ) from err
        # rebuilt from the saved configuration, the objects are again described by it, so a
        # checkpoint of the loaded module can be loaded in turn
        module.hparams.update({name: saved[name] for name in ("network", "likelihood", "optimizer") if name in saved and name not in kwargs})
        return module
