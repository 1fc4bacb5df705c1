"""The data: a LightningDataModule over torchvision's datasets and image folders, held in memory
(image folders mapped from their decoded cache), or streamed from LitData's format (streaming.py)."""

from vae_lightning.data.datamodule import ImageDataModule
from vae_lightning.data.holdout import train_val_split, validation_count
from vae_lightning.data.loader import TensorBatchLoader, to_pixels
from vae_lightning.data.sources import DatasetName
from vae_lightning.runtime.errors import CorruptDataError, DataNotFoundError

__all__ = [
    "CorruptDataError",
    "DataNotFoundError",
    "DatasetName",
    "ImageDataModule",
    "TensorBatchLoader",
    "to_pixels",
    "train_val_split",
    "validation_count",
]
