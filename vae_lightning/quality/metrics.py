"""FID, KID and precision/recall of generated images against real ones, in the space of a
:class:`~vae_lightning.quality.network.FeatureNetwork`.

- FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two sets of
  features, torchmetrics' ``FrechetInceptionDistance``;
- KID (Binkowski et al. 2018): the unbiased squared MMD with a cubic polynomial kernel, mean and
  std over random subsets, torchmetrics' ``KernelInceptionDistance``;
- precision and recall (Kynkaanniemi et al. 2019): the fraction of generated images inside the
  k-nearest-neighbour balls of the real ones (is each sample realistic?) and of real images inside
  those of the generated ones (is each kind of real image produced?), k = 3, torch-fidelity's
  ``prc_features_to_metric``.

Each image is passed through the feature network once and its features are kept (torchmetrics'
``CatMetric``, gathered across processes); the metrics are then computed from the kept features,
the real ones shared by every comparison. torchmetrics takes the features through a custom
``feature`` module that is the identity on them. torch-fidelity's own pipeline (a registered
extractor fed by datasets, with features cached on disk) is not used: its precision/recall function
on features is the same computation, without the files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch_fidelity.metric_prc import prc_features_to_metric
from torchmetrics import CatMetric
from torchmetrics.image import FrechetInceptionDistance, KernelInceptionDistance

from vae_lightning.quality.network import FeatureNetwork

#: What :meth:`SampleQuality.compute` can give, per comparison.
METRIC_NAMES = ("fid", "kid", "precision", "recall")


def checked_image_count(name: str, count: int, neighbourhood: int = 3) -> int:
    """``count`` if enough images for the metrics (precision and recall's ``neighbourhood``
    nearest neighbours and the image itself), else a ``ValueError`` naming ``name``."""
    if count < neighbourhood + 1:
        raise ValueError(
            f"{name} must be at least {neighbourhood + 1} (precision and recall's {neighbourhood} nearest neighbours and the image), got {count}"
        )
    return count


class _GivenFeatures(nn.Module):
    """The ``feature`` module of the torchmetrics metrics when they are given features, not images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


class SampleQuality(nn.Module):
    """Features of real images and of each kind of generated ones (``samples``, ``reconstructions``),
    and the metrics between them.

    Args:
        network: the feature network (kept in eval mode, without gradients).
        kinds: names of the sets of generated images compared with the real ones.
        kid_subset_size: images per KID subset (fewer when fewer were given); 100 subsets.
        neighbourhood: k of the precision/recall balls.
    """

    def __init__(self, network: FeatureNetwork, kinds: Sequence[str] = ("samples",), kid_subset_size: int = 1000, neighbourhood: int = 3) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.kid_subset_size = kid_subset_size
        self.neighbourhood = neighbourhood
        #: images each set needs: FID's covariances need 2, the k-nearest-neighbour balls k + 1
        self.min_images = neighbourhood + 1
        self.real = CatMetric()
        self.generated = nn.ModuleDict({kind: CatMetric() for kind in kinds})

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Features (B, F) of images (B, C, H, W), pixels clamped to [0, 1] as the network was trained on."""
        return self.network(images.clamp(0.0, 1.0).to(next(self.network.parameters()).dtype))

    def update(self, real: Tensor | None = None, **generated: Tensor) -> None:
        """Add real images and/or generated images by kind (``update(samples=images)``)."""
        if real is not None:
            self.real.update(self.features(real))
        for kind, images in generated.items():
            self.generated[kind].update(self.features(images))

    @torch.no_grad()
    def add_prior_samples(self, generate: Callable[[int, torch.Generator], Tensor], generator: torch.Generator, chunk: int = 1000) -> int:
        """Add ``samples`` from ``generate(n, generator)`` (a module's draws from its prior), ``chunk``
        at a time, until there are as many as real images; returns that count."""
        total = self.count()
        while (done := self.count("samples")) < total:
            self.update(samples=generate(min(chunk, total - done), generator))
        return total

    def count(self, kind: str | None = None) -> int:
        """Images added so far on this process: real ones, or of one generated kind."""
        metric = self.real if kind is None else self.generated[kind]
        return sum(len(v) for v in metric.value) if isinstance(metric.value, list) else len(metric.value)

    def compute(self, kind: str, metrics: Sequence[str] = METRIC_NAMES) -> dict[str, Tensor]:
        """``{name: value}`` for the names of ``metrics`` (and ``kid_std`` with ``kid``) between the
        real images and the generated ones of ``kind``, over every process."""
        real, fake = self.real.compute().double().cpu(), self.generated[kind].compute().double().cpu()
        if min(len(real), len(fake)) < self.min_images:
            raise ValueError(f"sample metrics need at least {self.min_images} real and generated images, got {len(real)} and {len(fake)}")
        scores: dict[str, Tensor] = {}
        num_features = real.shape[1]
        if "fid" in metrics:
            fid = FrechetInceptionDistance(feature=_GivenFeatures(num_features), sync_on_compute=False)
            fid.update(real, real=True)
            fid.update(fake, real=False)
            scores["fid"] = fid.compute().float()
        if "kid" in metrics:
            kid = KernelInceptionDistance(
                feature=_GivenFeatures(num_features), subset_size=min(self.kid_subset_size, len(real), len(fake)), sync_on_compute=False
            )
            kid.update(real, real=True)
            kid.update(fake, real=False)
            scores["kid"], scores["kid_std"] = (value.float() for value in kid.compute())
        if "precision" in metrics or "recall" in metrics:
            prc = prc_features_to_metric(
                fake.float(), real.float(), prc_neighborhood=self.neighbourhood, prc_batch_size=1000, save_cpu_ram=True, verbose=False
            )  # convention: generated first
            scores.update({name: torch.tensor(prc[name]) for name in ("precision", "recall") if name in metrics})
        return scores

    def reset(self, real: bool = True) -> None:
        """Forget the generated images added, and the real ones unless ``real`` is false."""
        if real:
            self.real.reset()
        for metric in self.generated.values():
            metric.reset()
