"""Checks that the IDX files on disk are the ones the datamodule expects, before any are read.

A truncated copy or a partly written download would otherwise either fail deep inside
torchvision's parser with an unrelated message, or (a corrupt but full-length file) train on
wrong pixels without a word. Every IDX file's size is checked against what its own header
declares (magic number, then the size of each dimension), and an images file against its labels
file; MNIST's files are also checked against their MD5 sums (about 0.1-0.3 s for its 55 MB, once
per process). Only the gzip archives of Fashion-MNIST and KMNIST have published sums, so their
uncompressed files get the header checks alone.
"""

from __future__ import annotations

import hashlib
import math
import struct
from functools import lru_cache
from pathlib import Path

from vae_lightning.runtime.errors import CorruptDataError

#: MD5 sums of the uncompressed IDX files per dataset folder: those of
#: ``../shared/data/MNIST/MD5SUMS`` (the originals, as torchvision extracts them).
PUBLISHED_MD5: dict[str, dict[str, str]] = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}

_UINT8 = 0x08  # IDX type code of unsigned bytes, the only one these datasets use


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


def _idx_dims(path: Path, ndim: int, dataset: str, fix: str) -> tuple[int, ...]:
    """The dimensions an uint8 IDX file of ``ndim`` dimensions declares, once its size is checked."""
    size = path.stat().st_size
    header_bytes = 4 * (ndim + 1)
    with path.open("rb") as f:
        header = f.read(header_bytes)
    if size < header_bytes:
        raise CorruptDataError(f"{dataset} file {path} is truncated: {size:,} bytes, shorter than its IDX header. {fix}")
    zero, kind, file_ndim = struct.unpack(">HBB", header[:4])
    if (zero, kind, file_ndim) != (0, _UINT8, ndim):
        raise CorruptDataError(
            f"{dataset} file {path} is not an IDX file of {ndim}-dimensional unsigned bytes "
            f"(its magic number is {header[:4].hex()}, expected 000008{ndim:02x}). {fix}"
        )
    dims = struct.unpack(f">{ndim}I", header[4:])
    expected = header_bytes + math.prod(dims)
    if size != expected:
        state = "truncated" if size < expected else "too long"
        raise CorruptDataError(f"{dataset} file {path} is {state}: {size:,} bytes, expected {expected:,}. {fix}")
    return dims


def verify_raw_files(raw_folder: Path, train: bool) -> None:
    """Raise ``CorruptDataError`` naming the file and the fix when a present file is wrong.

    Missing files are left to the caller (which may download them or say where it looked).
    ``raw_folder`` is ``<data_dir>/<MNIST, FashionMNIST or KMNIST>/raw``.
    """
    dataset = raw_folder.parent.name
    fix = (
        f"Delete it and run with --data.download true to fetch a fresh copy, or copy the file "
        f"again from a good source (e.g. ../shared/data/{dataset}/raw)."
    )
    counts = {}
    for name, ndim in zip(split_files(train), (3, 1)):
        path = raw_folder / name
        if not path.is_file():
            continue
        counts[name] = _idx_dims(path, ndim, dataset, fix)[0]
        md5 = PUBLISHED_MD5.get(dataset, {}).get(name)
        stat = path.stat()
        if md5 is not None and (actual := _md5(path, stat.st_size, stat.st_mtime_ns)) != md5:
            raise CorruptDataError(f"{dataset} file {path} is corrupt: MD5 {actual}, expected {md5}. {fix}")
    if len(counts) == 2 and len(set(counts.values())) == 2:
        (images, num_images), (labels, num_labels) = counts.items()
        raise CorruptDataError(
            f"{dataset} files in {raw_folder} do not match: {images} holds {num_images:,} images, "
            f"{labels} {num_labels:,} labels. Copy both again from a good source."
        )
