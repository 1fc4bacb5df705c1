"""The report's loss terms as small pure functions, so each can be checked against its equation.

loss = RL + KL, both per image, averaged over the batch:
    RL (eq. 16): sum over the D pixels of (x - x_hat)^2, averaged over the N samples of z.
    KL (eq. 19): KL(q(z|x) || N(0, I)) in closed form, summed over the d latent dimensions
    (Kingma & Welling 2014, Appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2)).
Both are per-image sums, so they share a scale and need no weight to balance them.
"""

from __future__ import annotations

from torch import Tensor


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Squared error summed over pixels, averaged over samples and batch.

    Args:
        x: targets, (B, D).
        x_hat: reconstructions, (B, D) or (N, B, D) for N Monte-Carlo samples of z.
    """
    return (x_hat - x).pow(2).sum(dim=-1).mean()


def kl_divergence_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for each latent dimension, averaged over the batch: (d,)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(dim=0)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the batch (eq. 19)."""
    return kl_divergence_per_dim(mu, logvar).sum()


def elbo_terms(x: Tensor, x_hat: Tensor, mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
    """``{"loss", "rl", "kl"}`` for one batch, the quantities logged in every stage."""
    rl = reconstruction_loss(x, x_hat)
    kl = kl_divergence(mu, logvar)
    return {"loss": rl + kl, "rl": rl, "kl": kl}


