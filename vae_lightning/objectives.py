"""Training objectives as small classes handed to the module (``model.objective`` in YAML).

Both score a batch from the posterior q(z|x) = N(mu, sigma^2 I) of its images, the network's
decoder, the likelihood p(x|z) and the prior p(z) (the ``model`` argument: the ``VAEModule``):

- :class:`ELBO` (the report's loss, eqs. 15-19): RL + beta * KL with RL averaged over
  ``model.mc_samples`` draws of z and KL in closed form where the prior has one.
- :class:`IWAE` (Burda et al. 2015, "Importance Weighted Autoencoders", eq. 8): the negative
  importance-weighted bound -L_K = -log 1/K sum_k w_k, w_k = p(x|z_k) p(z_k)^beta / q(z_k|x)^beta,
  trained on K draws per image (``mc_samples`` independent sets of K draws, averaged). L_1 is the
  ELBO; L_K is tighter as K grows.

What is logged stays comparable across objectives: ``{stage}/loss`` is always the negative ELBO,
RL + KL (beta = 1), estimated from the draws the step made (for IWAE, all of its K draws); its
expectation does not depend on the objective or on K. IWAE adds ``{stage}/iwae_loss``, -L_K of the
same draws (beta = 1), the value it trains on, in the units of ``{stage}/loss`` (for the report's
squared error, less the same constant that RL leaves out); on average it lies below ``{stage}/loss``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from vae_lightning.latent import log_posterior, reparameterize


class Objective(nn.Module):
    """What the module trains on. A module, so a checkpoint of a module built in Python holds no
    pickled object."""

    #: The terms logged as ``{stage}/{name}`` each step.
    logged_terms: tuple[str, ...] = ("loss", "rl", "kl")

    #: Draws of z per image and Monte-Carlo sample of the module.
    draws_per_sample = 1

    def terms(self, model: Any, x: Tensor, mu: Tensor, logvar: Tensor, mc_samples: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        """RL, KL and loss = RL + KL of a batch (per-image sums averaged over the batch), with
        whatever :meth:`training_loss` needs; ``x`` (B, C, H, W) are the clean images, ``mu`` and
        ``logvar`` (B, d) their posteriors, ``labels`` (B,) their classes (for a conditional network)."""
        z = reparameterize(mu, logvar, mc_samples * self.draws_per_sample)  # (N, B, d)
        logits = model.logits(z, labels)  # (N, B, C, H, W)
        rl = model.likelihood.reconstruction_loss(x, logits)
        kl = model.prior.kl_divergence(mu, logvar, z)
        terms = {"loss": rl + kl, "rl": rl, "kl": kl, "mu": mu, "logvar": logvar}
        return terms | self.extra_terms(model, x, z, logits, terms)

    def extra_terms(self, model: Any, x: Tensor, z: Tensor, logits: Tensor, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """Further terms of the draws ``z`` (N, B, d), their ``logits`` and the ``terms`` above."""
        return {}

    def training_loss(self, terms: dict[str, Tensor], kl_weight: float) -> Tensor:
        """The scalar minimised in training with KL weight beta = ``kl_weight``."""
        raise NotImplementedError


class ELBO(Objective):
    """The negative evidence lower bound, RL + beta * KL (the report's loss at beta = 1); the draws
    per image are the module's ``mc_samples``."""

    def training_loss(self, terms: dict[str, Tensor], kl_weight: float) -> Tensor:
        return terms["rl"] + kl_weight * terms["kl"]


class IWAE(Objective):
    """The importance-weighted bound of Burda et al. 2015 with K draws of z per image in training.

    Args:
        k: K, the importance samples per image (5 and 50 in the paper's Table 1); 1 is the ELBO
            with a Monte-Carlo KL. With ``model.mc_samples`` M > 1, M bounds of K draws each are
            averaged (M * K decoder passes per image).
    """

    logged_terms = ("loss", "rl", "kl", "iwae_loss")

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"model.objective.init_args.k (IWAE's number of importance samples K) must be at least 1, got {k}")
        self.k = k
        self.draws_per_sample = k

    def extra_terms(self, model: Any, x: Tensor, z: Tensor, logits: Tensor, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        log_px = model.likelihood.log_likelihood(x, logits)  # (M * K, B)
        log_ratio = model.prior.log_prob(z) - log_posterior(z, terms["mu"], terms["logvar"])  # log p(z) - log q(z|x), (M * K, B)
        extra = {"log_px": log_px, "log_ratio": log_ratio}
        # in RL's units: the report's squared error leaves out a constant of -log p(x|z)
        # (D/2 log pi, vae_lightning.likelihoods.MSE), and so does iwae_loss
        constant = (-log_px.mean() - terms["rl"]).detach()
        extra["iwae_loss"] = self.training_loss(extra, 1.0).detach() - constant
        return extra

    def training_loss(self, terms: dict[str, Tensor], kl_weight: float) -> Tensor:
        log_w = terms["log_px"] + kl_weight * terms["log_ratio"]  # (M * K, B)
        log_w = log_w.reshape(-1, self.k, log_w.shape[-1])  # (M, K, B)
        return -(torch.logsumexp(log_w, dim=1) - math.log(self.k)).mean()
