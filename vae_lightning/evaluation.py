"""Test-time measures of a trained VAE: the importance-weighted log-likelihood bound, the
quality of reconstructions and of denoising, and the seeded input corruptions they use.

IWAE bound (Burda et al. 2015, "Importance Weighted Autoencoders", eq. 8): with z_k ~ q(z|x),

    log p(x) >= L_K = E[ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) ],

L_1 is the ELBO, L_K grows with K and tends to log p(x). Burda et al. report L_5000.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.distributions import Normal
from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from vae_lightning.images import as_images
from vae_lightning.model import VAE

LogLikelihoodFn = Callable[[Tensor, Tensor], Tensor]  # (x (B, D), logits (n, B, D)) -> (n, B)


@torch.no_grad()
def iwae_bounds(
    model: VAE,
    x: Tensor,
    ks: Sequence[int],
    log_likelihood_fn: LogLikelihoodFn,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
) -> dict[int, Tensor]:
    """L_K for each K in ``ks``, per image, in nats.

    One set of max(ks) importance samples serves every K (L_K uses the first K of them), and
    the samples are decoded ``chunk_size`` at a time with a running log-sum-exp, so memory
    stays at chunk_size x B x D whatever K is.

    Args:
        model: the VAE (its encoder gives q(z|x), its decoder the logits of p(x|z)).
        x: images as the model sees them, (B, D).
        ks: numbers of importance samples, each >= 1.
        log_likelihood_fn: log p(x|z) per image from ``(x, logits)``.
        chunk_size: samples of z decoded at once.
        generator: seeds the draws of z (on the CPU), for repeatable estimates.

    Returns:
        ``{K: (B,) tensor of L_K}``.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"iwae_samples must be a non-empty list of sample counts >= 1, got {list(ks)}")
    if chunk_size < 1:
        raise ValueError(f"iwae_chunk_size must be at least 1, got {chunk_size}")
    mu, logvar = model.encode(x)
    posterior = Normal(mu, torch.exp(0.5 * logvar))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    k_max = max(ks)
    totals = {k: torch.full_like(mu[:, 0], -math.inf) for k in ks}  # running log sum_k w_k
    for start in range(0, k_max, chunk_size):
        n = min(chunk_size, k_max - start)
        eps = torch.randn((n, *mu.shape), generator=generator).to(mu)
        z = posterior.loc + posterior.scale * eps  # (n, B, d)
        log_w = (
            log_likelihood_fn(x, model.decode_logits(z))
            + prior.log_prob(z).sum(dim=-1)
            - posterior.log_prob(z).sum(dim=-1)
        )  # (n, B)
        for k in ks:
            if k > start:
                totals[k] = torch.logaddexp(totals[k], torch.logsumexp(log_w[: k - start], dim=0))
    return {k: total - math.log(k) for k, total in totals.items()}


def reconstruction_metrics(prefix: str) -> MetricCollection:
    """PSNR and SSIM of 28x28 images (pixels in [0, 1]) and MSE per pixel, logged as
    ``{prefix}psnr``, ``{prefix}ssim``, ``{prefix}mse``. PSNR is that of the mean squared error
    over all images (10 log10(1 / MSE)); SSIM is averaged over images. Update with flat
    ``(B, D)`` images through :func:`update_image_metrics`."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            "mse": MeanSquaredError(),
        },
        prefix=prefix,
    )


def update_image_metrics(metrics: MetricCollection, predicted: Tensor, target: Tensor) -> None:
    """Feed flat (B, D) images to image metrics, the prediction clamped to the pixel range [0, 1]."""
    metrics.update(as_images(predicted.clamp(0.0, 1.0)), as_images(target))


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``: the same corruption of a batch every time."""
    return torch.Generator(device=device).manual_seed(seed)


def add_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """x + std * eps with eps ~ N(0, I): the noisy input of a denoising autoencoder (not clamped)."""
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each pixel 1 with probability equal to its intensity (stochastic binarization)."""
    return torch.bernoulli(x, generator=generator)
