"""Convert a dataset into LitData's chunked format, for ``data.dataset streaming``:

    python -m vae_lightning.data.optimize --dataset mnist --data_dir ../shared/data --out mnist-litdata

writes ``<out>/train``, ``<out>/val`` and ``<out>/test`` with ``litdata.optimize``, each item the
uint8 pixels (C, H, W) and the label, losslessly. The images are read by the datamodule's own
readers (``sources.py``), so they are the pixels a run on the dataset itself trains on; ``val``
holds the images the datamodule holds out for validation (``--val_size`` and ``--split_seed``, as
``data.val_size`` and ``data.split_seed``; CelebA: its published validation split) and ``train``
the rest. An image folder is decoded image by image in the workers (``--workers``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import litdata
from torch import Tensor

from vae_lightning.data.datamodule import ImageDataModule
from vae_lightning.data.holdout import check_val_size, train_val_split
from vae_lightning.data.loader import Split
from vae_lightning.data.sources import DatasetName, image_folder_reader, image_folder_samples
from vae_lightning.data.streaming import OPTIMIZE_COMMAND, SPLITS, is_remote, split_location
from vae_lightning.runtime.errors import UserError, run_reporting_user_errors

DEFAULT_CHUNK_BYTES = "64MB"  # LitData's usual chunk size: a few chunks per worker in flight


@dataclass(frozen=True)
class TensorItems:
    """Item ``i`` of a split held in memory: row ``rows[i]`` of its uint8 images and labels."""

    split: Split

    def __call__(self, index: int) -> dict[str, Any]:
        row = index if self.split.rows is None else int(self.split.rows[index])
        return {"image": self.split.all_images[row].clone(), "label": int(self.split.all_labels[row])}


@dataclass(frozen=True)
class FolderItems:
    """Item ``i`` of a split of an image folder, decoded when a worker asks for it."""

    samples: list[tuple[str, int]]
    decode: Callable[[str], Tensor]

    def __call__(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        return {"image": self.decode(path), "label": int(label)}


def split_items(
    dataset: DatasetName, data_dir: Path, val_size: int | float | None, split_seed: int,
    channels: int | None, image_size: int | None, download: bool,
) -> dict[str, tuple[int, Callable[[int], dict[str, Any]]]]:
    """Each split's item count and the function that gives item ``i``: the datamodule's splits
    (its readers, its validation images) for the datasets it holds in memory, the folder's
    ``(path, label)`` list and its decoder for an image folder."""
    if dataset == "image_folder":
        _, decode = image_folder_reader(data_dir, channels, image_size)
        train = image_folder_samples(data_dir, train=True)
        train_rows, val_rows = train_val_split(len(train), val_size, split_seed, dataset)
        samples = {
            "train": [train[i] for i in train_rows.tolist()],
            "val": [train[i] for i in val_rows.tolist()],
            "test": image_folder_samples(data_dir, train=False),
        }
        return {name: (len(items), FolderItems(items, decode)) for name, items in samples.items()}
    try:
        data = ImageDataModule(
            str(data_dir), dataset, val_size=val_size, split_seed=split_seed, channels=channels, image_size=image_size,
            download=download,
        )
    except ValueError as err:  # a setting the dataset refuses (CelebA's val_size), as the datamodule names it
        raise UserError(f"{err} (here: the option of the same name, --{str(err).split()[0].removeprefix('data.')})") from err
    if download:
        data.prepare_data()
    data.setup()
    return {name: (len(data.splits[name]), TensorItems(data.splits[name])) for name in SPLITS}


def check_output(out: str) -> None:
    """Refuse to write into a split folder that already holds files."""
    if is_remote(out):
        return
    for split in SPLITS:
        folder = Path(split_location(out, split))
        if folder.is_dir() and any(folder.iterdir()):
            raise UserError(
                f"{folder} already holds files: {OPTIMIZE_COMMAND} writes into empty folders only. "
                "Delete it, or choose another --out."
            )


def convert(args: argparse.Namespace) -> dict[str, int]:
    """Write every split of ``args.dataset`` under ``args.out``; returns the item counts."""
    check_output(args.out)
    items = split_items(
        args.dataset, Path(args.data_dir).expanduser(), check_val_size(args.val_size), args.split_seed,
        args.channels, args.image_size, args.download,
    )
    counts = {}
    for split, (count, item) in items.items():
        print(f"{split}: {count:,} images -> {split_location(args.out, split)}", file=sys.stderr)
        litdata.optimize(
            fn=item,
            inputs=list(range(count)),
            output_dir=split_location(args.out, split),
            num_workers=args.workers,
            chunk_bytes=args.chunk_bytes,
            start_method="fork" if sys.platform == "linux" else None,  # the workers share the images read
            verbose=True,  # LitData's progress bar
        )
        counts[split] = count
    print(f"wrote {args.out}: train it with --data.dataset streaming --data.data_dir {args.out}", file=sys.stderr)
    return counts


def _count_or_fraction(text: str) -> int | float:
    """``5000`` as a count of images, ``0.1`` as a fraction of them, as ``data.val_size`` reads them."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=OPTIMIZE_COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=get_args(DatasetName), default="mnist")
    parser.add_argument("--data_dir", default="data", help="as data.data_dir of a run on the dataset itself")
    parser.add_argument("--out", required=True, help="the folder (or s3://... URL) to write train/, val/ and test/ into")
    parser.add_argument(
        "--val_size", type=_count_or_fraction, default=None,
        help="as data.val_size: training images held out into val/ (a count, a fraction such as 0.1; not given: "
        "5,000 or a tenth, whichever is fewer)",
    )  # fmt: skip
    parser.add_argument("--split_seed", type=int, default=42, help="as data.split_seed: which images go to val/")
    parser.add_argument("--image_size", type=int, default=None, help="as data.image_size: resize as read")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None, help="as data.channels: convert as read")
    parser.add_argument("--download", action="store_true", help="fetch the dataset into data_dir when it is missing")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes writing chunks")
    parser.add_argument("--chunk_bytes", default=DEFAULT_CHUNK_BYTES, help="the size of each chunk file, e.g. 64MB")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_reporting_user_errors(lambda a: convert(parse(a)), argv)


if __name__ == "__main__":
    sys.exit(main())
