"""A dataset streamed from LitData's chunked format (``python -m vae_lightning.data.optimize``
writes it): ``<data_dir>/train``, ``<data_dir>/val`` and ``<data_dir>/test``, each a LitData
directory (``index.json`` and its chunks) of items ``{"image": uint8 (C, H, W), "label": int}``,
on a local disk or in an object store (``s3://...``, ``gs://...``).

Each process reads only the chunks of its own shard, so a dataset larger than one machine's
memory or disk trains on many nodes; LitData's ``StreamingDataset`` does the sharding, the
shuffling and the download, and its ``StreamingDataLoader`` the batching and its position in an
epoch (``state_dict``), which a mid-epoch checkpoint keeps. Batches come out as the other
datasets' do: float pixels in [0, 1] (N, C, H, W) and int64 labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from litdata import StreamingDataLoader, StreamingDataset
from torch import Tensor

from vae_lightning.data.loader import PixelBatch
from vae_lightning.runtime.errors import DataNotFoundError, UserError

#: ``data.dataset``'s choice for a directory written by ``python -m vae_lightning.data.optimize``
StreamingName = Literal["streaming"]
STREAMING: StreamingName = "streaming"
#: the splits the optimize command writes, each a LitData directory of its own
SPLITS = ("train", "val", "test")
INDEX_FILE = "index.json"  # what makes a folder a LitData directory
OPTIMIZE_COMMAND = "python -m vae_lightning.data.optimize"


def is_remote(data_dir: str) -> bool:
    """Whether ``data_dir`` is an object-store URL (``s3://bucket/path``) rather than a local folder."""
    return "://" in data_dir


def split_location(data_dir: str, split: str) -> str:
    """The LitData directory of ``split`` under ``data_dir`` (a path or a URL)."""
    if is_remote(data_dir):
        return f"{data_dir.rstrip('/')}/{split}"
    return str(Path(data_dir).expanduser() / split)


def check_local_split(data_dir: str, split: str) -> None:
    """A clear error when a local ``data_dir`` has no LitData directory for ``split``."""
    if is_remote(data_dir):
        return
    index = Path(split_location(data_dir, split)) / INDEX_FILE
    if not index.is_file():
        raise DataNotFoundError(
            f"{Path(data_dir).expanduser()} is not a directory of LitData's format for data.dataset streaming: "
            f"{index} does not exist. Convert a dataset into it first, e.g. `{OPTIMIZE_COMMAND} --dataset mnist "
            f"--data_dir ../shared/data --out {data_dir}`, or point --data.data_dir at the folder that command wrote "
            "(it holds train/, val/ and test/)."
        )


def _remote_problem(location: str, err: Exception) -> UserError | None:
    """What a failed opening of a remote ``location`` lacks (a package, credentials), or ``None``."""
    scheme = location.split("://", 1)[0]
    if isinstance(err, ImportError):  # LitData's requirement check: "Requirement 'x' not met. HINT: ..."
        return UserError(
            f"cannot stream {location}: a package for {scheme}:// is missing ({err}). Install it into this "
            "environment, or copy the directory to a local disk and point --data.data_dir there."
        )
    if "credentials" in f"{type(err).__name__} {err}".lower():
        return UserError(
            f"cannot stream {location}: no credentials for {scheme}:// were found ({err}). Set them as the store's "
            "client expects (for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), "
            "or copy the directory to a local disk and point --data.data_dir there."
        )
    return None


def open_split(
    data_dir: str, split: str, shuffle: bool = False, seed: int = 42, cache_dir: str | None = None
) -> StreamingDataset:
    """LitData's ``StreamingDataset`` over ``split``, sharded across the processes that exist now
    (open it after DDP has started). ``drop_last`` is LitData's default: every item on one
    process; under DDP the remainder is dropped so each process serves as many batches."""
    check_local_split(data_dir, split)
    location = split_location(data_dir, split)
    try:
        return StreamingDataset(location, cache_dir=cache_dir, shuffle=shuffle, seed=seed)
    except Exception as err:
        problem = _remote_problem(location, err) if is_remote(data_dir) else None
        if problem is not None:
            raise problem from err
        failed_to_reach = isinstance(err, (OSError, ValueError, RuntimeError)) or type(err).__module__.startswith("botocore")
        if is_remote(data_dir) and failed_to_reach:
            raise DataNotFoundError(
                f"cannot stream {location}: {type(err).__name__}: {err}. Check the URL (it must hold the train/, val/ "
                f"and test/ folders that `{OPTIMIZE_COMMAND}` writes) and the store's credentials."
            ) from err
        raise


def collate(pixels: PixelBatch, samples: Sequence[dict[str, Any]]) -> tuple[Tensor, Tensor]:
    """LitData's items -> a batch: float pixels in [0, 1] (``pixels``) and int64 labels."""
    images = torch.stack([torch.as_tensor(sample["image"]) for sample in samples])
    labels = torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.int64)
    return pixels(images), labels


class StreamingCollate:
    """A picklable ``collate_fn`` (DataLoader workers receive it) of :func:`collate`."""

    def __init__(self) -> None:
        self.pixels = PixelBatch()

    def __call__(self, samples: Sequence[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        return collate(self.pixels, samples)


def streaming_loader(dataset: StreamingDataset, batch_size: int, num_workers: int, seed: int = 0) -> StreamingDataLoader:
    """LitData's loader of ``dataset``: batches of (pixels, labels), and a ``state_dict`` that
    says how far into the epoch it is.

    The loader has a generator of its own: a ``DataLoader`` draws its workers' base seed at every
    pass, from the global random state unless given one, and a resumed run, which restores that
    state mid-epoch and starts one pass more than the run it continues, would draw other noise."""
    return StreamingDataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=StreamingCollate(),
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def first_items(dataset: StreamingDataset, count: int) -> tuple[Tensor, Tensor]:
    """The first ``count`` items of ``dataset`` as uint8 images and labels (``predict``'s images)."""
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([torch.as_tensor(item["image"]) for item in items])
    return images, torch.tensor([int(item["label"]) for item in items], dtype=torch.int64)


def streamed_shape(data_dir: str, cache_dir: str | None = None) -> tuple[int, int, int]:
    """(channels, height, width) of the images, read from the first training item."""
    image = torch.as_tensor(open_split(data_dir, "train", cache_dir=cache_dir)[0]["image"])
    c, h, w = image.shape
    return int(c), int(h), int(w)
