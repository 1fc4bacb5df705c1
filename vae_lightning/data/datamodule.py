"""The LightningDataModule: a dataset's images held in memory as uint8 tensors (an image
folder's mapped from its decoded cache, ``cache.py``), served as (B, C, H, W) float pixels in
[0, 1] with their labels, converted batch by batch.

Pixels are scaled to [0, 1] and not standardised: the decoder's sigmoid output and the squared
error need targets in [0, 1]. ``fit`` and ``validate`` use a seeded split of the training images;
``test`` and ``predict`` use the test images. ``streaming`` streams a directory that
``python -m vae_lightning.data.optimize`` wrote, through LitData (``streaming.py``), instead of
holding it in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from litdata import StreamingDataLoader
from torch.utils.data import DataLoader, Subset, TensorDataset

from vae_lightning.corruption import binarize as binarized
from vae_lightning.corruption import seeded_generator
from vae_lightning.data.cache import cache_folder, cached_split, image_folder_source
from vae_lightning.data.holdout import check_val_size, train_val_split
from vae_lightning.data.loader import PixelBatch, Split, TensorBatchLoader, to_pixels
from vae_lightning.data import streaming
from vae_lightning.data.streaming import STREAMING, StreamingName
from vae_lightning.data.sources import (
    PUBLISHED_VALIDATION,
    DatasetName,
    ImageShape,
    class_count,
    download_split,
    image_shape,
    read_split,
    read_validation,
)


class ImageDataModule(LightningDataModule):
    """Images as (B, C, H, W) float pixels in [0, 1] with their labels.

    Args:
        data_dir: folder holding the dataset: ``MNIST/raw`` (``FashionMNIST/raw``, ``KMNIST/raw``)
            with the IDX files, ``cifar-10-batches-py``, ``celeba`` (``img_align_celeba/`` and
            the list files), or for ``image_folder`` the folders ``train/<class>/`` and
            ``test/<class>/`` of images; for ``streaming`` the folder or object-store URL
            (``s3://bucket/path``) that ``python -m vae_lightning.data.optimize`` wrote.
        dataset: ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``, ``celeba`` (64x64 centre
            crops of the aligned faces), ``image_folder``, or ``streaming``: any of them converted
            into LitData's chunked format, streamed shard by shard to each process.
        batch_size: images per batch (per process when distributed).
        val_size: training images held out for validation: a count (``5000``), a fraction of
            the training images (``0.1``), or ``null``: 5,000 or a tenth of them, whichever is
            fewer (MNIST's 5,000 of 60,000; 300 of a folder of 3,000). CelebA has a published
            validation split, so ``null`` only; so has ``streaming``: its ``val/`` folder.
        num_workers: 0 serves batches in-process from tensors (fastest); more uses a
            ``DataLoader`` with that many worker processes.
        download: fetch the files into ``data_dir`` when they are missing (not ``image_folder``).
        split_seed: seed of the train/validation split, of the shuffling order and of the fixed
            binarization of the validation and test images.
        predict_size: test images served to ``predict`` (one generated image each).
        data_on_device: hold the tensors on the accelerator and index batches there, so no
            host-to-device copy happens per step (MNIST is 47 MB as uint8).
        image_size: resize every image to ``image_size`` x ``image_size`` as it is read; ``None``:
            as stored (an image folder's images must then share one size).
        channels: 1 (grayscale) or 3 (RGB), converting as the images are read; ``None``: as stored.
        binarize: dynamic binarization: each training batch is drawn afresh as binary pixels
            (1 with probability equal to the intensity), the validation and test images once with
            a fixed seed; the setting of the published MNIST log-likelihoods (``Bernoulli``).
        cache: ``image_folder``: decode each split once into a memory-mapped file that later
            runs and every DDP process map instead of decoding again (``vae_lightning/data/cache.py``);
            false: decode every image with PIL at every start.
        cache_dir: where the cache lives; ``None``: ``<data_dir>/.vae_lightning_cache``, or
            ``~/.cache/vae_lightning/<folder>-<hash>`` when the data folder is read-only.
            ``streaming``: where LitData keeps the chunks it downloads (``None``: its default).
    """

    def __init__(
        self,
        data_dir: str = "data",
        dataset: DatasetName | StreamingName = "mnist",
        batch_size: int = 128,
        val_size: int | float | None = None,
        num_workers: int = 0,
        download: bool = True,
        split_seed: int = 42,
        predict_size: int = 64,
        data_on_device: bool = False,
        image_size: int | None = None,
        channels: Literal[1, 3] | None = None,
        binarize: bool = False,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be 0 (batches served in-process) or more worker processes, got {num_workers}")
        if predict_size < 1:
            raise ValueError(f"data.predict_size must be at least 1 (test images served to predict), got {predict_size}")
        val_size = check_val_size(val_size)
        if dataset == STREAMING and (val_size is not None or image_size is not None or channels is not None or binarize):
            raise ValueError(
                "data.val_size, data.image_size and data.channels must be null, and data.binarize false, for streaming: "
                "the validation images and the image shape are fixed when the directory is written (pass them to "
                f"`{streaming.OPTIMIZE_COMMAND}`: --val_size, --image_size, --channels), and the fixed binarization of "
                "the validation images needs them in memory: train a binarized model on the dataset itself"
            )
        if dataset in PUBLISHED_VALIDATION and val_size is not None:
            raise ValueError(
                f"data.val_size must be null for {dataset}, got {val_size}: its validation images are its published "
                "validation split, not held out of the training images"
            )
        if image_size is not None and image_size < 1:
            raise ValueError(f"data.image_size must be at least 1 (or null), got {image_size}")
        if channels not in (None, 1, 3):
            raise ValueError(f"data.channels must be 1, 3 or null, got {channels}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir).expanduser()
        self.data_url = data_dir  # as given: a Path would turn s3://bucket into s3:/bucket
        self.dataset = dataset
        self.batch_size = batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.download = download
        self.split_seed = split_seed
        self.predict_size = predict_size
        self.data_on_device = data_on_device
        self.image_size = image_size
        self.channels = channels
        self.binarize = binarize
        self.cache = cache
        self.cache_dir = cache_dir
        self.splits: dict[str, Split] = {}  # name -> rows of the uint8 images, with their labels
        self._shape: ImageShape | None = None  # streaming: read once from the first training item

    @property
    def image_shape(self) -> ImageShape:
        """(channels, height, width) of the images served; the CLI hands it to the network."""
        if self.dataset == STREAMING:
            if self._shape is None:
                self._shape = streaming.streamed_shape(self.data_url, self.cache_dir)
            return self._shape
        return image_shape(self.dataset, self.data_dir, self.channels, self.image_size)

    @property
    def num_classes(self) -> int | None:
        """K, the classes of the labels served; a conditional network must have as many. ``None``
        when the labels are not classes (CelebA's identities), or not known before the data is
        read (``streaming``)."""
        if self.dataset == STREAMING:
            return None
        return class_count(self.dataset, self.data_dir)

    def prepare_data(self) -> None:
        """Download the files once (on one process) when allowed and missing."""
        if self.download and self.dataset != STREAMING:
            for train in (True, False):
                download_split(self.dataset, self.data_dir, train)

    def _read(self, train: bool) -> tuple[Tensor, Tensor]:
        """A split's uint8 images and labels: an image folder's mapped from its cache, when on."""
        if self.cache and self.dataset == "image_folder":
            source = image_folder_source(self.data_dir, train, self.channels, self.image_size)
            return cached_split(source, cache_folder(self.data_dir, self.cache_dir))
        return read_split(self.dataset, self.data_dir, train, False, self.channels, self.image_size)

    def _fixed(self, split: Split, seed: int) -> Split:
        """Validation/test images as scored every epoch: binarized once, with ``seed``, when ``binarize``."""
        if not self.binarize:
            return split
        images, labels = split
        return Split(binarized(to_pixels(images), seeded_generator(seed)).mul_(255).to(torch.uint8), labels)

    def setup(self, stage: str | None = None) -> None:
        """Load the tensors for ``stage`` once; later calls reuse them (``streaming``: check that
        the splits exist; the loaders open them)."""
        if self.dataset == STREAMING:
            names = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
            for name in names.get(stage or "", streaming.SPLITS):
                streaming.check_local_split(self.data_url, name)
            return
        if stage in (None, "fit", "validate") and "train" not in self.splits:
            images, labels = self._read(train=True)
            val = read_validation(self.dataset, self.data_dir, self.channels, self.image_size)  # CelebA's own
            if val is None:  # held out of the training images
                train_idx, val_idx = train_val_split(len(images), self.val_size, self.split_seed, self.dataset)
                self.splits["train"] = Split(images, labels, train_idx)
                self.splits["val"] = self._fixed(Split(images, labels, val_idx), self.split_seed)
            else:
                self.splits["train"] = Split(images, labels)
                self.splits["val"] = self._fixed(Split(*val), self.split_seed)
            counts = len(self.splits["train"]), len(self.splits["val"])
            rank_zero_info(f"{self.dataset}: {counts[0]} training and {counts[1]} validation images of {tuple(images.shape[1:])}")
        if stage in (None, "test", "predict") and "test" not in self.splits:
            images, labels = self._read(train=False)
            self.splits["test"] = self._fixed(Split(images, labels), self.split_seed + 1)
        if self.data_on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            self.splits = {name: split.to(device) for name, split in self.splits.items()}

    def _loader(self, split: str, shuffle: bool, limit: int | None = None) -> TensorBatchLoader | DataLoader:
        data = self.splits[split]
        rows = data.rows
        if limit is not None:
            rows = (torch.arange(len(data), device=data.all_images.device) if rows is None else rows)[:limit]
        images, labels = data.all_images, data.all_labels
        pixels = PixelBatch(binarize=self.binarize and split == "train")
        if self.num_workers > 0:
            dataset = TensorDataset(images, labels)
            return DataLoader(
                dataset if rows is None else Subset(dataset, rows.tolist()),
                batch_size=self.batch_size,
                shuffle=shuffle,
                num_workers=self.num_workers,
                persistent_workers=True,
                collate_fn=pixels.collate,
            )
        trainer = self.trainer
        return TensorBatchLoader(
            images,
            labels,
            self.batch_size,
            shuffle=shuffle,
            pixels=pixels,
            seed=self.split_seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            rows=rows,
        )

    def _stream(self, split: str, shuffle: bool) -> StreamingDataLoader:
        """LitData's loader of ``split``, opened now: after DDP has started, so each process streams its shard."""
        dataset = streaming.open_split(self.data_url, split, shuffle=shuffle, seed=self.split_seed, cache_dir=self.cache_dir)
        return streaming.streaming_loader(dataset, self.batch_size, self.num_workers, seed=self.split_seed)

    def train_dataloader(self) -> TensorBatchLoader | DataLoader:
        if self.dataset == STREAMING:
            return self._stream("train", shuffle=True)
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> TensorBatchLoader | DataLoader:
        if self.dataset == STREAMING:
            return self._stream("val", shuffle=False)
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorBatchLoader | DataLoader:
        if self.dataset == STREAMING:
            return self._stream("test", shuffle=False)
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatchLoader | DataLoader:
        if self.dataset == STREAMING and "test" not in self.splits:  # the first test images, read once
            first = streaming.first_items(streaming.open_split(self.data_url, "test", cache_dir=self.cache_dir), self.predict_size)
            self.splits["test"] = Split(*first)
        return self._loader("test", shuffle=False, limit=self.predict_size)
