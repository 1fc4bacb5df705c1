"""Checks that the IDX files on disk are the ones the datamodule expects, before any are read.

A truncated copy or a partly written download would otherwise either fail deep inside
torchvision's parser with an unrelated message, or (a corrupt but full-length file) train on
wrong pixels without a word. Sizes are checked for every dataset; MNIST's files are also
checked against their MD5 sums (about 0.1-0.3 s for its 55 MB, once per process).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from vae_lightning.errors import CorruptDataError

#: Uncompressed IDX files per dataset folder: ``name -> (bytes, md5 or None)``. The MNIST
#: sums are those of ``../shared/data/MNIST/MD5SUMS`` (the originals, as torchvision extracts them).
EXPECTED_FILES: dict[str, dict[str, tuple[int, str | None]]] = {
    "MNIST": {
        "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
    },
}
# Fashion-MNIST and KMNIST have MNIST's IDX layout and counts, so its sizes; only the sums of
# their gzip archives are published, so the uncompressed files get the size check alone.
for _folder in ("FashionMNIST", "KMNIST"):
    EXPECTED_FILES[_folder] = {name: (size, None) for name, (size, _) in EXPECTED_FILES["MNIST"].items()}


def split_files(train: bool) -> tuple[str, str]:
    """The images and labels files of the training (60k) or test (10k) split."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


@lru_cache(maxsize=32)
def _md5(path: Path, size: int, mtime_ns: int) -> str:
    """MD5 of ``path``; cached on (path, size, mtime) so each process hashes a file once."""
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify_raw_files(raw_folder: Path, train: bool) -> None:
    """Raise ``CorruptDataError`` naming the file and the fix when a present file is wrong.

    Missing files are left to the caller (which may download them or say where it looked).
    ``raw_folder`` is ``<data_dir>/<MNIST or FashionMNIST>/raw``.
    """
    dataset = raw_folder.parent.name
    expected = EXPECTED_FILES.get(dataset, {})
    for name in split_files(train):
        path = raw_folder / name
        if name not in expected or not path.is_file():
            continue
        size, md5 = expected[name]
        stat = path.stat()
        fix = (
            f"Delete it and run with --data.download true to fetch a fresh copy, or copy the file "
            f"again from a good source (e.g. ../shared/data/{dataset}/raw)."
        )
        if stat.st_size != size:
            state = "truncated" if stat.st_size < size else "too long"
            raise CorruptDataError(
                f"{dataset} file {path} is {state}: {stat.st_size:,} bytes, expected {size:,}. {fix}"
            )
        if md5 is not None and (actual := _md5(path, stat.st_size, stat.st_mtime_ns)) != md5:
            raise CorruptDataError(f"{dataset} file {path} is corrupt: MD5 {actual}, expected {md5}. {fix}")
