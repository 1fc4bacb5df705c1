"""Test-time measures of a trained VAE, as one callback (``trainer.callbacks`` in YAML): the
importance-weighted log-likelihood bound, the quality of reconstructions and of denoising, and the
quality of samples from the prior (FID, KID, precision/recall, ``vae_lightning.quality``).

IWAE bound (Burda et al. 2015, "Importance Weighted Autoencoders", eq. 8): with z_k ~ q(z|x),

    log p(x) >= L_K = E[ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) ],

L_1 is the ELBO, L_K grows with K and tends to log p(x). Burda et al. report L_5000. p(z) is the
model's configured prior (``model.prior``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from vae_lightning.corruption import add_noise, seeded_generator
from vae_lightning.latent import log_posterior, posterior_std
from vae_lightning.quality import SampleQuality, load_feature_network
from vae_lightning.quality.metrics import checked_image_count
from vae_lightning.quality.network import LoadedFeatureNetwork


@torch.no_grad()
def iwae_bounds(
    module: Any,
    x: Tensor,
    ks: Sequence[int],
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
    labels: Tensor | None = None,
) -> dict[int, Tensor]:
    """L_K for each K in ``ks``, per image, in nats.

    One set of max(ks) importance samples serves every K (L_K uses the first K of them), and
    the samples are decoded ``chunk_size`` at a time with a running log-sum-exp, so memory
    stays at chunk_size x B x D whatever K is.

    Args:
        module: the ``VAEModule``: its ``encode`` gives q(z|x), its ``log_likelihood`` log p(x|z),
            its ``prior`` log p(z).
        x: images as the model sees them, (B, C, H, W).
        ks: numbers of importance samples, each >= 1.
        chunk_size: samples of z decoded at once.
        generator: seeds the draws of z (on the CPU), for repeatable estimates.
        labels: the images' classes (B,), which a conditional network is given (log p(x|y)).

    Returns:
        ``{K: (B,) tensor of L_K}``.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"iwae_samples must be a non-empty list of sample counts >= 1, got {list(ks)}")
    if chunk_size < 1:
        raise ValueError(f"iwae_chunk_size must be at least 1, got {chunk_size}")
    mu, logvar = module.encode(x, labels)
    std = posterior_std(logvar)
    k_max = max(ks)
    totals = {k: torch.full_like(mu[:, 0], -math.inf) for k in ks}  # running log sum_k w_k
    for start in range(0, k_max, chunk_size):
        n = min(chunk_size, k_max - start)
        eps = torch.randn((n, *mu.shape), generator=generator).to(mu)
        z = mu + std * eps  # (n, B, d)
        log_w = module.log_likelihood(x, z, labels) + module.prior.log_prob(z) - log_posterior(z, mu, logvar)  # (n, B)
        for k in ks:
            if k > start:
                totals[k] = torch.logaddexp(totals[k], torch.logsumexp(log_w[: k - start], dim=0))
    return {k: total - math.log(k) for k, total in totals.items()}


def reconstruction_metrics(prefix: str) -> MetricCollection:
    """PSNR and SSIM of images with pixels in [0, 1], and MSE per pixel, logged as ``{prefix}psnr``,
    ``{prefix}ssim``, ``{prefix}mse``. PSNR is that of the mean squared error over all images
    (10 log10(1 / MSE)); SSIM is averaged over images."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
            "mse": MeanSquaredError(),
        },
        prefix=prefix,
    )


class Evaluator(Callback):
    """During ``test``, logs per test set:

    - ``test/iwae_k{K}``: the IWAE bound L_K on log p(x) in nats per image, for each K of
      ``iwae_samples`` (not for a deterministic network, which has no posterior to sample);
    - ``test/psnr``, ``test/ssim``, ``test/mse``: reconstructions (decoded posterior means)
      against the test images;
    - ``test/denoise_{psnr,ssim,mse}``: reconstructions of the test images with Gaussian noise of
      ``denoise_std`` added, against the clean images; ``test/noisy_{...}``: the noisy images
      themselves, the baseline a denoiser must beat;
    - ``test/fid``, ``test/kid`` (and ``test/kid_std``), ``test/precision``, ``test/recall``: decoded
      draws from the prior against the test images, in the features of ``feature_network``;
      ``test/recon_{fid,kid,precision,recall}``: the test images' reconstructions against them.
      The feature network's SHA-256 is printed with the scores: FIDs from different feature
      networks do not compare.

    The noise and the importance samples are seeded by the batch index, so a test is repeatable.
    The settings live here, not in the checkpoint: ``test --ckpt_path`` takes them from its own
    command line (``--trainer.callbacks...`` or the YAML).

    Args:
        iwae_samples: the K of each bound; larger K is tighter and slower (K = 5000 on the
            10,000 MNIST test images is 50 million decoder passes). Empty: no bound.
        iwae_chunk_size: importance samples decoded at once (memory ~ chunk x batch x D).
        denoise_std: std of the noise for ``test/denoise_*`` and ``test/noisy_*``; 0: off.
        feature_network: the feature network of the sample metrics: ``mnist`` (shipped with the
            package), or the ``.pt`` file written by ``python -m vae_lightning.quality.train_features``
            for another dataset; ``None``: no sample metrics. A network trained on another dataset
            or image shape than the test's is not used (a warning says so).
        quality_images: the sample metrics compare this many prior samples and reconstructions with
            as many test images (the first ones; all of them when the test set is smaller).
    """

    def __init__(
        self,
        iwae_samples: Sequence[int] = (1, 50),
        iwae_chunk_size: int = 64,
        denoise_std: float = 0.5,
        feature_network: str | None = "mnist",
        quality_images: int = 10000,
    ) -> None:
        super().__init__()
        if iwae_samples and min(iwae_samples) < 1:
            raise ValueError(f"iwae_samples must be counts >= 1, got {list(iwae_samples)}")
        if iwae_chunk_size < 1:
            raise ValueError(f"iwae_chunk_size must be at least 1, got {iwae_chunk_size}")
        if denoise_std < 0:
            raise ValueError(f"denoise_std must be >= 0, got {denoise_std}")
        self.quality_images = checked_image_count("quality_images", quality_images)
        self.features: LoadedFeatureNetwork | None = load_feature_network(feature_network) if feature_network else None
        self.iwae_samples = list(iwae_samples)
        self.iwae_chunk_size = iwae_chunk_size
        self.denoise_std = denoise_std
        self.metrics = nn.ModuleDict(
            {
                "reconstruction": reconstruction_metrics("test/"),
                "denoising": reconstruction_metrics("test/denoise_"),
                "noisy_input": reconstruction_metrics("test/noisy_"),
            }
        )

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.metrics.to(pl_module.device)
        self._samples_posterior: bool | None = None  # known from the first batch
        self.quality = None
        if self.features is not None and _fits(self.features, trainer):
            self.quality = SampleQuality(self.features.network, kinds=("samples", "reconstructions")).to(pl_module.device)

    @torch.no_grad()
    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x, labels = batch[0], batch[1]
        if self._samples_posterior is None:
            self._samples_posterior = bool(self.iwae_samples) and self._has_posterior(pl_module, x, labels)
        if self._samples_posterior:
            bounds = iwae_bounds(pl_module, x, self.iwae_samples, self.iwae_chunk_size, torch.Generator().manual_seed(batch_idx), labels)
            pl_module.log_dict({f"test/iwae_k{k}": b.mean() for k, b in bounds.items()}, batch_size=x.shape[0], sync_dist=True)
        reconstructions = pl_module.reconstruct(x, labels)
        self._update("reconstruction", reconstructions, x)
        if self.quality is not None and (room := self.quality_images - self.quality.count()) > 0:
            self.quality.update(real=x[:room], reconstructions=reconstructions[:room])
        if self.denoise_std > 0:
            noisy = add_noise(x, self.denoise_std, seeded_generator(2 * batch_idx + 1, x.device))
            self._update("denoising", pl_module.reconstruct(noisy, labels), x)
            self._update("noisy_input", noisy, x)

    @staticmethod
    def _has_posterior(pl_module: LightningModule, x: Tensor, labels: Tensor) -> bool:
        """Whether q(z|x) can be sampled: not for a deterministic encoder (sigma = 0, a point mass)."""
        if torch.isneginf(pl_module.encode(x[:1], labels[:1])[1]).all():
            rank_zero_info("Evaluator: a deterministic network has no posterior to sample; no test/iwae_k* bounds")
            return False
        return True

    def _update(self, name: str, predicted: Tensor, target: Tensor) -> None:
        """Feed images to one metric collection, the prediction clamped to the pixel range [0, 1]."""
        self.metrics[name].update(predicted.clamp(0.0, 1.0), target)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the image metrics over the whole test set (torchmetrics gathers them across processes)."""
        used = ["reconstruction", "denoising", "noisy_input"] if self.denoise_std > 0 else ["reconstruction"]
        for name in used:
            pl_module.log_dict(self.metrics[name].compute(), sync_dist=False)
            self.metrics[name].reset()
        if self.quality is not None:
            if self.quality.count() >= self.quality.min_images:
                self._log_sample_quality(trainer, pl_module)
            else:
                rank_zero_warn(f"Evaluator: no sample metrics from {self.quality.count()} test images; they need {self.quality.min_images}")

    @torch.no_grad()
    def _log_sample_quality(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """As many prior samples as test images were kept, then the metrics of both comparisons."""
        quality = self.quality
        total = quality.add_prior_samples(pl_module.generate, torch.Generator().manual_seed(trainer.global_rank))
        scores = {f"test/{name}": value for name, value in quality.compute("samples").items()}
        scores |= {f"test/recon_{name}": value for name, value in quality.compute("reconstructions").items()}
        rank_zero_info(f"Evaluator: test/fid, kid, precision, recall of {total} prior samples (test/recon_*: of the reconstructions) "
                       f"against {total} test images per process, {self.features.describe()}")
        pl_module.log_dict({name: value.to(pl_module.device) for name, value in scores.items()}, sync_dist=False)
        quality.reset()


def _fits(features: LoadedFeatureNetwork, trainer: Trainer) -> bool:
    """Whether the feature network was trained on the test's dataset and image shape (as far as the
    datamodule says); a warning names the fix where not."""
    data = getattr(trainer, "datamodule", None)
    dataset, shape = getattr(data, "dataset", None), getattr(data, "image_shape", None)
    if (dataset is None or dataset == features.dataset) and (shape is None or tuple(shape) == features.image_shape):
        return True
    rank_zero_warn(
        f"Evaluator: no sample metrics: the feature network {features.path.name} was trained on {features.dataset} "
        f"images of {features.image_shape}, the test images are {dataset} of {shape}; train one with "
        f"`python -m vae_lightning.quality.train_features --dataset {dataset} --out <file>.pt` and pass "
        "--evaluation.feature_network <file>.pt (null: none)"
    )
    return False
