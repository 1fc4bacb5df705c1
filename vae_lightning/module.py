"""The LightningModule: wires a network and a likelihood to the RL + KL loss, the steps and logging.

What the network is (the report's MLP, a ConvVAE, one of your own) and how pixels are scored (the
report's squared error, a Gaussian, a Bernoulli) are objects chosen in YAML; this module runs

    x -> encode -> (mu, log sigma^2) -> z = mu + sigma * eps -> decode -> logits -> RL, KL

in one place (:meth:`VAEModule.loss_terms`) for every stage (a conditional network, one that declares
``num_classes``, is also given the batch's labels: Sohn et al. 2015). The prior p(z) and the objective
trained on (RL + beta * KL, or the IWAE bound) are objects too (``vae_lightning.priors``,
``vae_lightning.objectives``): the steps hand the work to them and log
``{stage}/loss`` (always RL + KL), ``{stage}/rl`` and ``{stage}/kl`` (and the objective's own
terms, such as IWAE's ``{stage}/iwae_loss``) through Lightning's
``self.log``: ``train/*_step`` on the steps the Trainer writes, ``train/*_epoch``, ``val/*`` and
``test/*`` as batch-size weighted means over the epoch (over every process under DDP).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from vae_lightning.corruption import InputNoise
from vae_lightning.latent import reparameterize
from vae_lightning.likelihoods import MSE, Likelihood
from vae_lightning.losses import kl_weight_at
from vae_lightning.models import MLPVAE, check_network
from vae_lightning.models.conditional import Classes, conditioning_classes, drawn_classes, network_condition
from vae_lightning.objectives import ELBO, Objective
from vae_lightning.priors import Prior, StandardNormal
from vae_lightning.runtime.checkpoints import checkpoint_error

#: SGD with the report's best momentum. The learning rate came from 5-epoch runs of the default
#: config at 1e-3, 3e-3, 1e-2 and 3e-2 (docs/training.md, "Choosing the learning rate").
DEFAULT_LR = 3e-3
DEFAULT_MOMENTUM = 0.9

Batch = tuple[Tensor, Tensor]

#: The arguments that are objects: under LightningCLI their saved hyperparameters are the run's
#: configuration (class paths and init args), from which ``load_from_checkpoint`` rebuilds them.
_OBJECT_ARGUMENTS = ("network", "likelihood", "optimizer", "prior", "objective")


def default_optimizer(params) -> torch.optim.Optimizer:
    """SGD(lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM): the report's optimizer."""
    return torch.optim.SGD(params, lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM)


def checked_optimizer(factory: Callable[[Any], torch.optim.Optimizer]) -> Callable[[Any], torch.optim.Optimizer]:
    """``factory`` once it has built an optimizer over a probe parameter, so that a value the
    optimizer refuses (a negative learning rate) stops the run when the model is built, before
    any run folder is written, rather than when training starts."""
    try:
        factory([nn.Parameter(torch.zeros(1))])
    except ValueError as err:
        raise ValueError(f"model.optimizer: {err}") from None
    return factory


class VAEModule(LightningModule):
    """A VAE trained on its objective (RL + beta * KL by default), with metrics named ``{stage}/{loss,rl,kl}`` for TensorBoard.

    Args:
        network: encoder and decoder (``vae_lightning.models``: ``MLPVAE``, ``ConvVAE`` or your own
            ``VAENetwork``; ``ConditionalMLPVAE`` conditions on the class); in YAML a ``class_path``
            and ``init_args``. ``None``: the report's
            ``MLPVAE``. Its ``image_shape`` comes from the data.
        likelihood: observation model p(x|z) (``vae_lightning.likelihoods``: ``MSE``, the
            report's sum of squared errors; ``Gaussian``; ``Bernoulli``). ``None``: ``MSE``.
        optimizer: builds the optimizer from the parameters; in YAML a ``class_path`` and
            ``init_args``. ``None``: SGD, lr 3e-3, momentum 0.9.
        prior: p(z) (``vae_lightning.priors``: ``StandardNormal``, ``MixtureOfGaussians``,
            ``VampPrior``); used by the KL term, ``generate``, the IWAE bounds and the figures.
            ``None``: ``StandardNormal``, N(0, I).
        objective: what training minimises (``vae_lightning.objectives``: ``ELBO``, RL + beta * KL;
            ``IWAE``, the importance-weighted bound with K draws). ``None``: ``ELBO``.
        mc_samples: Monte-Carlo samples of z per image for RL (N in eq. 15); for ``IWAE``, sets
            of K draws whose bounds are averaged.
        noise_std: denoising: Gaussian noise of this std on the encoder's input in training; RL
            still compares the output with the clean image. 0: off.
        kl_weight: beta, the weight of KL in the training objective RL + beta * KL (for ``IWAE``,
            of log p(z) - log q(z|x) in each importance weight). 1: the
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
        prior: Prior | None = None,
        objective: Objective | None = None,
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
        with warnings.catch_warnings():  # Lightning's advice to ignore modules: done just below
            warnings.filterwarnings("ignore", message=r"Attribute '\w+' is an instance of `nn.Module`")
            self.save_hyperparameters()
        built_in_python = [name for name in _OBJECT_ARGUMENTS if isinstance(self.hparams.get(name), (nn.Module, Callable))]
        if built_in_python:
            # objects built in Python, not by the CLI: a checkpoint would have to pickle them, which
            # weights_only loading refuses, so they are left out and given again to load_from_checkpoint
            self.save_hyperparameters(ignore=built_in_python)
        self.network = check_network(MLPVAE() if network is None else network)
        self.likelihood = MSE() if likelihood is None else likelihood
        self.prior = StandardNormal() if prior is None else prior
        self.prior.bind(self.network)
        self.objective = ELBO() if objective is None else objective
        self.input_noise = InputNoise(noise_std) if noise_std > 0 else nn.Identity()
        self.optimizer_factory = checked_optimizer(optimizer or default_optimizer)

    # The model: what figures, evaluation, diagnostics and scripts use, in mean images.

    @property
    def latent_dim(self) -> int:
        """d, the size of z."""
        return self.network.latent_dim

    @property
    def num_classes(self) -> int | None:
        """K, the classes a conditional network is given; ``None`` for one that does not condition."""
        return conditioning_classes(self.network)

    # ``labels`` (B,): the images' classes, which only a conditional network is given (the same
    # code path for every network; vae_lightning.models.conditional).

    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The posterior q(z|x) of images (B, C, H, W): ``(mu, logvar)``, each (B, d)."""
        return self.network.encode(x, *network_condition(self.network, labels))

    def logits(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """The decoder's output for codes z (..., d), given the classes when the network conditions."""
        return self.network.decode(z, *network_condition(self.network, labels))

    def log_likelihood(self, x: Tensor, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """log p(x|z) in nats per image, (N, B), for images (B, C, H, W) and codes (N, B, d)."""
        return self.likelihood.log_likelihood(x, self.logits(z, labels))

    @torch.no_grad()
    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """The mean images (..., C, H, W) of p(x|z) for latent codes z (..., d) (and classes (...))."""
        return self.likelihood.mean(self.logits(z, labels))

    @torch.no_grad()
    def generate(self, num_images: int, generator: torch.Generator | None = None, classes: Classes | None = None) -> Tensor:
        """Decode ``num_images`` draws from the prior: mean images (num_images, C, H, W). A conditional
        model draws ``classes`` in turn (e.g. ``[3]``: all threes; ``None``: each class in turn)."""
        labels = drawn_classes(self.network, num_images, classes)
        z = self.prior.sample(num_images, generator=generator)  # noise drawn on the CPU: a seed gives the same z anywhere
        return self.decode(z.to(self.device), None if labels is None else labels.to(self.device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Decode the posterior mean of each image in ``x``: mean images (B, C, H, W)."""
        return self.decode(self.encode(x, labels)[0], labels)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_hat, mu, logvar)``; x_hat is (N, B, C, H, W) for N = ``mc_samples``."""
        mu, logvar = self.encode(x, labels)
        logits = self.logits(reparameterize(mu, logvar, self.hparams.mc_samples), labels)
        return self.likelihood.mean(logits), mu, logvar

    # The loss: one computation for every stage.

    def loss_terms(self, x: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """RL, KL and loss = RL + KL of a batch (per-image sums averaged over the batch, eqs. 15-19),
        with the posterior's ``mu`` and ``logvar`` (B, d) and the objective's own terms. In
        training mode the encoder sees the images with ``noise_std`` noise; RL always scores the clean ones."""
        mu, logvar = self.encode(self.input_noise(x), labels)
        return self.objective.terms(self, x, mu, logvar, self.hparams.mc_samples, labels)

    def kl_weight_in_use(self) -> float:
        """beta = ``kl_weight``, ramped linearly from 0 over the first ``kl_warmup`` steps or epochs."""
        progress = self.current_epoch if self.hparams.kl_warmup_interval == "epoch" else self.global_step
        return kl_weight_at(progress, self.hparams.kl_weight, self.hparams.kl_warmup)

    def _terms_logged(self, stage: str, terms: dict[str, Tensor], **log_options: Any) -> None:
        values = {f"{stage}/{name}": terms[name].detach() for name in self.objective.logged_terms}
        self.log_dict(values, batch_size=terms["mu"].shape[0], **log_options)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The objective's loss at KL weight beta (RL + beta * KL for the ELBO); ``train/loss`` stays RL + KL."""
        terms = self.loss_terms(*batch)
        beta = self.kl_weight_in_use()
        self._terms_logged("train", terms, on_step=True, on_epoch=True)
        self.log("train/kl_weight", beta, on_step=True, on_epoch=False)
        return self.objective.training_loss(terms, beta)

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """The batch's loss and its posterior means and log-variances (B, d): callbacks such as
        ``LatentDiagnostics`` read them from ``outputs`` instead of encoding the batch again."""
        terms = self.loss_terms(*batch)
        self._terms_logged("val", terms, on_epoch=True, sync_dist=True)
        return {"loss": terms["loss"], "mu": terms["mu"].detach(), "logvar": terms["logvar"].detach()}

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        terms = self.loss_terms(*batch)
        self._terms_logged("test", terms, on_epoch=True, sync_dist=True)
        return terms["loss"]

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """New images from the prior, one per input image, and the inputs' reconstructions."""
        x, labels = batch
        return {"samples": self.generate(x.shape[0]), "inputs": x, "reconstructions": self.reconstruct(x, labels)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the checkpoint's settings, which ``load_from_checkpoint`` needs once more."""
        self._loaded_hparams = checkpoint.get("hyper_parameters") or {}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, weights_only: bool | None = True, **kwargs) -> VAEModule:  # type: ignore[override]
        """Lightning's loader with ``weights_only=True`` (no pickled code from the file runs) and a
        ``CheckpointError`` naming the problem for a missing file, a file that is not a checkpoint,
        or weights that do not fit the model (e.g. a ``network=...`` override of another size)."""
        try:
            module = super().load_from_checkpoint(checkpoint_path, *args, weights_only=weights_only, **kwargs)
        except Exception as err:  # noqa: BLE001 - said again as what is wrong with the file, when it is the file
            overrides = sorted(set(kwargs) - {"map_location", "hparams_file", "strict"})
            raise checkpoint_error(checkpoint_path, err, overrides) from err
        # rebuilt from the saved configuration, the objects are again described by it, so a
        # checkpoint of the loaded module can be loaded in turn
        saved = getattr(module, "_loaded_hparams", {})
        module.hparams.update({name: saved[name] for name in _OBJECT_ARGUMENTS if name in saved and name not in kwargs})
        return module
