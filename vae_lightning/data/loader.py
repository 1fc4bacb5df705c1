"""Batches cut from preloaded uint8 tensors by index: one gather and one conversion per batch,
no per-image work (torchvision's ``ToTensor`` pipeline spends most of a CPU epoch on that)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

from vae_lightning.corruption import binarize


def to_pixels(images: Tensor) -> Tensor:
    """uint8 images -> float pixels in [0, 1] (a new tensor)."""
    return images.float().div_(255.0)


class PixelBatch:
    """uint8 images -> float pixels in [0, 1], binarized afresh for each batch when ``binarize``
    (dynamic binarization, drawn from the global random state, which checkpoints store).

    Also the ``collate_fn`` of a worker ``DataLoader``: a list of ``(image, label)`` -> a batch.
    """

    def __init__(self, binarize: bool = False) -> None:
        self.binarize = binarize

    def __call__(self, images: Tensor) -> Tensor:
        pixels = to_pixels(images)
        return binarize(pixels) if self.binarize else pixels

    def collate(self, samples: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        images, labels = zip(*samples)
        return self(torch.stack(images)), torch.stack(labels)


@dataclass(frozen=True)
class Split:
    """A split: rows ``rows`` (all when ``None``) of uint8 images (N, C, H, W) and their labels.

    The rows are taken batch by batch, so a split of a memory-mapped cache (read-only: never
    write into ``all_images``) is served without a copy of its images in each process. Unpacks
    as ``images, labels``: a copy of the split's rows, for code that wants the tensors.
    """

    all_images: Tensor
    all_labels: Tensor
    rows: Tensor | None = None

    def __len__(self) -> int:
        return len(self.all_images if self.rows is None else self.rows)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(images, labels)`` of the split's rows."""
        if self.rows is None:
            return self.all_images, self.all_labels
        return self.all_images.index_select(0, self.rows), self.all_labels.index_select(0, self.rows)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.tensors())

    def __getitem__(self, i: int) -> Tensor:
        return self.tensors()[i]

    def to(self, device: torch.device) -> Split:
        return Split(self.all_images.to(device), self.all_labels.to(device), None if self.rows is None else self.rows.to(device))


class TensorBatchLoader:
    """Batches of ``(pixels, labels)`` cut from preloaded tensors by index, one gather per batch.

    Shuffling and sharding across processes come from ``DistributedSampler`` (a single
    replica when not distributed): Lightning calls its ``set_epoch`` each epoch, so every
    epoch has its own seeded order and each rank its own disjoint shard.

    The loader is stateful (``state_dict``/``load_state_dict``, which Lightning stores in
    checkpoints): a run resumed from a mid-epoch checkpoint skips the batches already served
    in that epoch, so it sees the same batches in the same order as an uninterrupted run.

    Args:
        images: uint8 images (N, C, H, W).
        labels: (N,) labels.
        batch_size: images per batch.
        shuffle: a new seeded order each epoch.
        pixels: turns a batch of uint8 images into what the model sees.
        seed: seed of the order.
        num_replicas: processes sharing the data (DDP).
        rank: this process's shard.
        rows: serve these rows of ``images`` and ``labels`` (all when ``None``).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool,
        pixels: PixelBatch,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        rows: Tensor | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.rows = rows
        self.batch_size = batch_size
        self.pixels = pixels
        self.batch_sampler = None  # DataLoader's interface, which Lightning inspects
        self.sampler = DistributedSampler(
            images if rows is None else rows, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self._served = 0  # batches served in the current pass
        self._resume: dict[str, int] | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        skip, self._resume = self._batches_to_skip(), None
        order = torch.as_tensor(list(self.sampler), device=self.images.device)
        self._served = skip
        for batch_indices in order.split(self.batch_size)[skip:]:
            self._served += 1
            if self.rows is not None:
                batch_indices = self.rows.index_select(0, batch_indices)
            # index_select copies whole images; on a CPU it takes a few microseconds where
            # indexing with a tensor (images[batch_indices]) takes 0.1 to 0.5 ms per batch
            yield self.pixels(self.images.index_select(0, batch_indices)), self.labels.index_select(0, batch_indices)

    def _batches_to_skip(self) -> int:
        """Batches already served in this epoch by the run a checkpoint was saved from."""
        if self._resume is None or self._resume["epoch"] != self.sampler.epoch:
            return 0  # no checkpoint, or one saved at an epoch's end: start the epoch afresh
        return self._resume["batches_served"]

    def state_dict(self) -> dict[str, int]:
        """Position in the data: the epoch (which fixes the order) and batches served in it."""
        return {"epoch": self.sampler.epoch, "batches_served": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume at ``state_dict``'s position on the next pass of the same epoch."""
        self._resume = dict(state_dict)
