"""MNIST (or Fashion-MNIST) as preloaded tensors, served in batches with no per-image work.

The images are read once from torchvision's IDX files into one float tensor, scaled to
[0, 1] and flattened to 784 pixels: the decoder's sigmoid output and the squared-error
reconstruction loss both need targets in [0, 1], so no mean/std standardisation is done.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torchvision import datasets

from vae_lightning.integrity import verify_raw_files

DatasetName = Literal["mnist", "fashion_mnist"]
_DATASETS: dict[str, type[datasets.MNIST]] = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}


def train_val_split(num_images: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices ``(train, val)`` of the seeded split of the training images, shared by every
    consumer of the split (the datamodule, the benchmarks) so they hold out the same images."""
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def to_pixels(images: Tensor) -> Tensor:
    """uint8 images -> float pixels in [0, 1] (a new tensor)."""
    return images.float().div_(255.0)


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not where the datamodule looked, and it may not download them."""


class TensorBatchLoader:
    """Batches of ``(images, labels)`` cut from preloaded tensors by index, one gather per batch.

    Shuffling and sharding across processes come from ``DistributedSampler`` (a single
    replica when not distributed): Lightning calls its ``set_epoch`` each epoch, so every
    epoch has its own seeded order and each rank its own disjoint shard.

    The loader is stateful (``state_dict``/``load_state_dict``, which Lightning stores in
    checkpoints): a run resumed from a mid-epoch checkpoint skips the batches already served
    in that epoch, so it sees the same batches in the same order as an uninterrupted run.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.batch_sampler = None  # DataLoader's interface, which Lightning inspects
        self.sampler = DistributedSampler(
            images, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
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
            yield self.images[batch_indices], self.labels[batch_indices]

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


class MNISTDataModule(LightningDataModule):
    """MNIST digits as (B, 784) float pixels in [0, 1] with their labels.

    ``fit`` and ``validate`` use a seeded split of the 60k training images; ``test`` and
    ``predict`` use the 10k test images.

    Args:
        data_dir: folder holding ``MNIST/raw`` (or ``FashionMNIST/raw``) with the IDX files.
        dataset: ``mnist`` or ``fashion_mnist`` (same layout through torchvision's classes).
        batch_size: images per batch (per process when distributed).
        val_size: training images held out for validation.
        num_workers: 0 serves batches in-process from tensors (fastest); more uses a
            ``DataLoader`` with that many worker processes.
        download: fetch the files into ``data_dir`` when they are missing.
        split_seed: seed of the train/validation split and of the shuffling order.
        predict_size: test images served to ``predict`` (one generated image each).
        data_on_device: hold the tensors on the accelerator and index batches there, so no
            host-to-device copy happens per step (MNIST is 188 MB as float32).
    """

    def __init__(
        self,
        data_dir: str = "data",
        dataset: DatasetName = "mnist",
        batch_size: int = 128,
        val_size: int = 5000,
        num_workers: int = 0,
        download: bool = False,
        split_seed: int = 42,
        predict_size: int = 64,
        data_on_device: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
        if not 0 < val_size < 60_000:
            raise ValueError(f"data.val_size must be between 1 and 59999, got {val_size}")
        if dataset not in _DATASETS:
            raise ValueError(f"data.dataset must be one of {sorted(_DATASETS)}, got {dataset!r}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir).expanduser()
        self.dataset = dataset
        self.batch_size = batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.download = download
        self.split_seed = split_seed
        self.predict_size = predict_size
        self.data_on_device = data_on_device
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def raw_folder(self) -> Path:
        """Where torchvision looks for the IDX files."""
        return self.data_dir / _DATASETS[self.dataset].__name__ / "raw"

    def prepare_data(self) -> None:
        """Download the files once (on one process) when allowed and missing."""
        if self.download:
            for train in (True, False):
                self._read(train, download=True)

    def _read(self, train: bool, download: bool = False) -> tuple[Tensor, Tensor]:
        """``(images, labels)``: images as stored, uint8 (N, 784), so a split is cut before the
        4x larger float copy is made (one float copy at peak, not two)."""
        dataset_class = _DATASETS[self.dataset]
        verify_raw_files(self.raw_folder, train)  # a wrong file is an error here, not wrong training
        try:
            ds = dataset_class(str(self.data_dir), train=train, download=download)
        except RuntimeError as err:
            if download:
                raise DataNotFoundError(
                    f"could not download {dataset_class.__name__} into {self.raw_folder}: {err}. "
                    f"Copy the four IDX files there by hand, or point --data.data_dir at a folder "
                    f"that holds {dataset_class.__name__}/raw."
                ) from err
            raise DataNotFoundError(
                f"{dataset_class.__name__} not found: looked for its IDX files in {self.raw_folder}. "
                f"Point --data.data_dir at the folder that holds {dataset_class.__name__}/raw "
                f"(e.g. --data.data_dir ../shared/data), or pass --data.download true to fetch it."
            ) from err
        return ds.data.reshape(len(ds.data), -1), ds.targets.clone()

    def setup(self, stage: str | None = None) -> None:
        """Load the tensors for ``stage`` once; later calls reuse them."""
        if stage in (None, "fit", "validate") and "train" not in self.splits:
            images, labels = self._read(train=True)
            train_idx, val_idx = train_val_split(len(images), self.val_size, self.split_seed)
            self.splits["train"] = (to_pixels(images[train_idx]), labels[train_idx])
            self.splits["val"] = (to_pixels(images[val_idx]), labels[val_idx])
        if stage in (None, "test", "predict") and "test" not in self.splits:
            images, labels = self._read(train=False)
            self.splits["test"] = (to_pixels(images), labels)
        if self.data_on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}

    def _loader(self, split: str, shuffle: bool, limit: int | None = None) -> TensorBatchLoader | DataLoader:
        images, labels = self.splits[split]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        if self.num_workers > 0:
            return DataLoader(
                TensorDataset(images, labels),
                batch_size=self.batch_size,
                shuffle=shuffle,
                num_workers=self.num_workers,
                persistent_workers=True,
            )
        trainer = self.trainer
        return TensorBatchLoader(
            images,
            labels,
            self.batch_size,
            shuffle=shuffle,
            seed=self.split_seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )

    def train_dataloader(self) -> TensorBatchLoader | DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> TensorBatchLoader | DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorBatchLoader | DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatchLoader | DataLoader:
        return self._loader("test", shuffle=False, limit=self.predict_size)
