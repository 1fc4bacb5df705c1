"""The IDX file checks (data/integrity.py) on copies of real MNIST files: a truncated or corrupt
file is refused naming the file and the fix, by its size or its MD5, and checking is fast."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from vae_lightning.data import ImageDataModule
from vae_lightning.data.integrity import _md5, verify_raw_files
from vae_lightning.runtime.errors import CorruptDataError


def copy_test_split(mnist_dir: Path, data_dir: Path, folder: str = "MNIST") -> Path:
    """A copy of the 10k test split's files in ``data_dir/<folder>/raw`` (the shared copy stays intact)."""
    raw = data_dir / folder / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copyfile(mnist_dir / "MNIST" / "raw" / name, raw / name)
    return raw


def test_a_truncated_mnist_file_is_refused_naming_the_file_and_the_fix(mnist_dir: Path, tmp_path: Path) -> None:
    raw = copy_test_split(mnist_dir, tmp_path)
    images = raw / "t10k-images-idx3-ubyte"
    os.truncate(images, 7_000_000)
    data = ImageDataModule(data_dir=str(tmp_path))
    with pytest.raises(CorruptDataError) as error:
        data.setup("test")
    message = str(error.value)
    assert str(images) in message and "truncated: 7,000,000 bytes, expected 7,840,016" in message
    assert "--data.download true" in message


def test_a_corrupt_mnist_file_of_the_right_size_is_refused_by_its_md5(mnist_dir: Path, tmp_path: Path) -> None:
    raw = copy_test_split(mnist_dir, tmp_path)
    images = raw / "t10k-images-idx3-ubyte"
    with images.open("r+b") as f:
        f.seek(5_000_000)
        f.write(b"\xff\xff\xff\xff")  # four wrong pixels
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte is corrupt: MD5 \w+, expected 2646ac"):
        ImageDataModule(data_dir=str(tmp_path)).setup("test")


def test_a_truncated_fashion_mnist_file_is_refused_by_its_size(mnist_dir: Path, tmp_path: Path) -> None:
    raw = copy_test_split(mnist_dir, tmp_path, folder="FashionMNIST")
    os.truncate(raw / "t10k-labels-idx1-ubyte", 5_000)
    with pytest.raises(CorruptDataError, match="FashionMNIST file .*t10k-labels-idx1-ubyte is truncated"):
        ImageDataModule(data_dir=str(tmp_path), dataset="fashion_mnist").setup("test")


def test_checking_all_four_mnist_files_takes_well_under_a_second(mnist_dir: Path) -> None:
    _md5.cache_clear()
    start = time.perf_counter()
    for train in (True, False):
        verify_raw_files(mnist_dir / "MNIST" / "raw", train)
    assert time.perf_counter() - start < 1.0
