"""Every dataset the datamodule reads, on small files written in the real formats: KMNIST's IDX
files, CIFAR-10's pickled batches and image folders. Images come out as (B, C, H, W) float
pixels in [0, 1] with their labels; a bad file or folder is refused naming it."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers.image_files import (
    write_cifar10,
    write_idx,
    write_idx_dataset,
    write_image,
    write_image_folder,
)
from helpers.runs import cpu_run_args
from PIL import Image

from vae_lightning.cli import run_cli
from vae_lightning.data import CorruptDataError, DataNotFoundError, ImageDataModule
from vae_lightning.runtime.errors import UserError


def loaded(data_dir: Path, dataset: str, **kwargs) -> ImageDataModule:
    """A datamodule with every split read."""
    dm = ImageDataModule(data_dir=str(data_dir), dataset=dataset, download=False, **kwargs)
    dm.setup()
    return dm


def first_batch(dm: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(dm.train_dataloader()))


def assert_pixel_batch(x: torch.Tensor, shape: tuple[int, int, int], batch_size: int) -> None:
    assert x.shape == (batch_size, *shape) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1


# --- KMNIST (IDX files) -------------------------------------------------------------------------


@pytest.fixture
def kmnist_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_idx_dataset(tmp_path, "KMNIST", num_train=40, num_test=12)


def test_kmnist_idx_files_are_read_pixel_for_pixel_with_their_labels(kmnist_dir) -> None:
    data_dir, written = kmnist_dir
    dm = loaded(data_dir, "kmnist", val_size=8, batch_size=16)
    test_images, test_labels = dm.splits["test"]
    assert test_images.dtype == torch.uint8 and test_images.shape == (12, 1, 28, 28)
    assert torch.equal(test_images[:, 0], torch.from_numpy(written["t10k_images"]))
    assert torch.equal(test_labels, torch.from_numpy(written["t10k_labels"]).long())
    # the seeded split holds out 8 of the 40 training images, each image keeping its label
    (train_x, train_y), (val_x, val_y) = dm.splits["train"], dm.splits["val"]
    assert (len(train_x), len(val_x)) == (32, 8)
    by_image = {image.tobytes(): label for image, label in zip(written["train_images"], written["train_labels"])}
    for images, labels in ((train_x, train_y), (val_x, val_y)):
        assert [by_image[image[0].numpy().tobytes()] for image in images] == labels.tolist()
    x, y = first_batch(dm)
    assert_pixel_batch(x, (1, 28, 28), 16)
    assert y.dtype == torch.int64
    assert dm.image_shape == (1, 28, 28)


def test_kmnist_is_converted_to_the_channels_and_size_asked_for(kmnist_dir) -> None:
    data_dir, written = kmnist_dir
    dm = loaded(data_dir, "kmnist", val_size=8, batch_size=4, channels=3, image_size=32)
    x, _ = first_batch(dm)
    assert dm.image_shape == (3, 32, 32)
    assert_pixel_batch(x, (3, 32, 32), 4)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey copied to R, G and B


def test_a_truncated_kmnist_file_is_refused_naming_it(kmnist_dir) -> None:
    data_dir, _ = kmnist_dir
    images = data_dir / "KMNIST" / "raw" / "t10k-images-idx3-ubyte"
    os.truncate(images, 1000)
    dm = ImageDataModule(data_dir=str(data_dir), dataset="kmnist", download=False)
    with pytest.raises(CorruptDataError, match="truncated: 1,000 bytes, expected 9,424") as err:
        dm.setup("test")  # 16 header bytes + 12 images of 28 x 28
    assert str(images) in str(err.value) and "--data.download true" in str(err.value)


def test_kmnist_images_and_labels_of_different_counts_are_refused(kmnist_dir) -> None:
    data_dir, _ = kmnist_dir
    write_idx(data_dir / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    dm = ImageDataModule(data_dir=str(data_dir), dataset="kmnist", download=False)
    with pytest.raises(CorruptDataError, match="t10k-images-idx3-ubyte holds 12 images, t10k-labels-idx1-ubyte 11 labels"):
        dm.setup("test")


def test_a_file_that_is_not_idx_is_refused_by_its_magic_number(kmnist_dir) -> None:
    data_dir, _ = kmnist_dir
    labels = data_dir / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"<html>Not found</html>")  # what a failed download may leave
    dm = ImageDataModule(data_dir=str(data_dir), dataset="kmnist", download=False)
    with pytest.raises(CorruptDataError, match=f"{labels} is not an IDX file"):
        dm.setup("test")


def test_val_size_as_large_as_the_training_images_is_refused(kmnist_dir) -> None:
    data_dir, _ = kmnist_dir
    dm = ImageDataModule(data_dir=str(data_dir), dataset="kmnist", download=False, val_size=40)
    with pytest.raises(UserError, match="data.val_size must be between 1 and 39 for the 40 training images of kmnist, got 40"):
        dm.setup("fit")


# --- CIFAR-10 (pickled batches) -----------------------------------------------------------------


@pytest.fixture
def cifar_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CIFAR-10's layout with 6 images per batch; torchvision checks the files against the sums of
    the files written here instead of the published ones (which only the real files have)."""
    sums = write_cifar10(tmp_path, per_batch=6)
    for name, value in sums.items():
        monkeypatch.setattr(torchvision.datasets.CIFAR10, name, value)
    return tmp_path


def test_cifar10_batches_are_read_as_rgb_images_in_their_published_pixel_order(cifar_dir: Path) -> None:
    dm = loaded(cifar_dir, "cifar10", val_size=5, batch_size=8)
    with (cifar_dir / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        batch = pickle.load(f)
    # each row is the red plane, then green, then blue, each 32 x 32 row-major
    expected = torch.from_numpy(batch["data"]).reshape(6, 3, 32, 32)
    assert torch.equal(dm.splits["test"][0], expected)
    assert dm.splits["test"][1].tolist() == batch["labels"]
    assert (len(dm.splits["train"][0]), len(dm.splits["val"][0])) == (25, 5)  # 5 batches of 6
    assert dm.image_shape == (3, 32, 32)
    assert_pixel_batch(first_batch(dm)[0], (3, 32, 32), 8)


def test_cifar10_is_converted_to_grey_and_resized_when_asked(cifar_dir: Path) -> None:
    dm = loaded(cifar_dir, "cifar10", val_size=5, batch_size=8, channels=1, image_size=16)
    assert dm.image_shape == (1, 16, 16) and dm.splits["test"][0].shape == (6, 1, 16, 16)
    assert_pixel_batch(first_batch(dm)[0], (1, 16, 16), 8)


def test_a_cifar10_file_whose_md5_does_not_match_is_refused_naming_it(cifar_dir: Path) -> None:
    changed = cifar_dir / "cifar-10-batches-py" / "data_batch_3"
    with changed.open("r+b") as f:
        f.seek(500)
        f.write(b"\x00\x01\x02\x03")  # four changed bytes inside the pixels
    dm = ImageDataModule(data_dir=str(cifar_dir), dataset="cifar10", download=False)
    with pytest.raises(CorruptDataError) as err:
        dm.setup("test")  # torchvision checks every file, whichever split is read
    message = str(err.value)
    assert f"CIFAR-10 file {changed} is corrupt: its MD5 sum is not the published one" in message
    assert "--data.download true" in message


def test_files_that_are_not_the_published_cifar10_are_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=2)  # checked against torchvision's published sums
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="cifar10", download=False)
    with pytest.raises(CorruptDataError, match=r"cifar-10-batches-py/data_batch_1 is corrupt"):
        dm.setup("fit")


def test_missing_cifar10_names_the_folder_it_looked_in(tmp_path: Path) -> None:
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="cifar10", download=False)
    with pytest.raises(DataNotFoundError, match=f"CIFAR-10 not found: looked for its files in {tmp_path / 'cifar-10-batches-py'}"):
        dm.setup("test")


# --- Image folders ------------------------------------------------------------------------------


def test_image_folder_pixels_and_labels_come_from_the_files_and_class_folders(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["cats", "dogs", "owls"], per_class=4, size=(10, 6))
    dm = loaded(tmp_path, "image_folder", val_size=3, batch_size=5)
    images, labels = dm.splits["test"]
    assert images.shape == (12, 3, 6, 10) and images.dtype == torch.uint8  # width 10, height 6
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # class folders in name order
    with Image.open(tmp_path / "test" / "dogs" / "0002.png") as written:
        assert torch.equal(images[6], torch.from_numpy(np.array(written)).permute(2, 0, 1))
    assert dm.image_shape == (3, 6, 10)
    x, _ = first_batch(dm)
    assert_pixel_batch(x, (3, 6, 10), 5)
    served = torch.cat([x for x, _ in dm.val_dataloader()])  # in order: the stored images / 255
    assert torch.equal(served, dm.splits["val"][0].float() / 255)
    assert (len(dm.splits["train"][0]), len(dm.splits["val"][0])) == (9, 3)


def test_a_class_missing_from_one_split_keeps_every_label_the_same(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a", "b", "c"], per_class=2)
    shutil.rmtree(tmp_path / "test" / "a")
    dm = loaded(tmp_path, "image_folder", val_size=1)
    assert dm.splits["test"][1].tolist() == [1, 1, 2, 2]  # b and c keep their training labels


def test_image_folder_images_are_resized_and_converted_to_the_channels_asked_for(tmp_path: Path) -> None:
    red = np.zeros((20, 12, 3), dtype=np.uint8)
    red[..., 0] = 255
    for split in ("train", "test"):
        for i in range(3):
            write_image(tmp_path / split / "red" / f"{i}.png", red)
    dm = loaded(tmp_path, "image_folder", val_size=1, batch_size=2, channels=1, image_size=8)
    assert dm.image_shape == (1, 8, 8)
    x, _ = first_batch(dm)
    assert_pixel_batch(x, (1, 8, 8), 2)
    assert torch.allclose(x, torch.full_like(x, 76 / 255))  # ITU-R 601 luma of pure red: 0.299 * 255


def test_grey_images_are_given_three_channels_when_asked(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a"], per_class=3, mode="L")
    assert ImageDataModule(data_dir=str(tmp_path), dataset="image_folder").image_shape == (1, 8, 8)
    dm = loaded(tmp_path, "image_folder", val_size=1, batch_size=2, channels=3)
    x, _ = first_batch(dm)
    assert_pixel_batch(x, (3, 8, 8), 2)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_images_of_mixed_sizes_are_refused_naming_both_unless_resized(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a"], per_class=3, size=(8, 8))
    odd = tmp_path / "train" / "a" / "0001.png"
    write_image(odd, np.zeros((9, 8, 3), dtype=np.uint8))
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="image_folder", download=False, val_size=1)
    with pytest.raises(CorruptDataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"{tmp_path / 'train' / 'a' / '0000.png'} is 8x8, {odd} is 8x9" in message
    assert "--data.image_size" in message
    assert loaded(tmp_path, "image_folder", val_size=1, image_size=8).splits["train"][0].shape == (2, 3, 8, 8)


def test_test_images_of_another_size_than_the_training_images_are_refused(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a"], per_class=2, size=(8, 8))
    write_image(tmp_path / "test" / "a" / "0000.png", np.zeros((16, 16, 3), dtype=np.uint8))
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="image_folder", download=False)
    with pytest.raises(CorruptDataError, match="test/a/0000.png is 16x16"):
        dm.setup("test")


def test_an_unreadable_image_is_refused_naming_it(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a"], per_class=3)
    broken = tmp_path / "test" / "a" / "0001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but cut short")
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="image_folder", download=False)
    with pytest.raises(CorruptDataError, match=f"cannot read image {broken}"):
        dm.setup("test")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("nothing", "image folder {root}/train does not exist"),
        ("no_test_folder", "image folder {root}/test does not exist"),
        ("images_without_class_folders", "no images found in {root}/train: it has no class folders"),
        ("empty_class_folder", "no images found in {root}/train: Found no valid file for the classes b"),
        ("no_image_files", "no images found in {root}/train: Found no valid file for the classes a"),
    ],
)
def test_a_bad_image_folder_is_refused_naming_the_folder(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "images"
    if layout != "nothing":
        write_image_folder(root, ["a", "b"], per_class=2)
    if layout == "no_test_folder":
        shutil.rmtree(root / "test")
    elif layout == "images_without_class_folders":
        for path in list((root / "train").rglob("*.png")):
            path.rename(root / "train" / f"{path.parent.name}{path.name}")
        for name in ("a", "b"):
            (root / "train" / name).rmdir()
    elif layout == "empty_class_folder":
        for path in (root / "train" / "b").iterdir():
            path.unlink()
    elif layout == "no_image_files":
        for path in (root / "train" / "a").iterdir():
            path.rename(path.with_suffix(".txt"))
    dm = ImageDataModule(data_dir=str(root), dataset="image_folder", download=False, val_size=1)
    with pytest.raises(DataNotFoundError, match=message.format(root=root)):
        dm.setup()


def test_the_command_line_refuses_val_size_beyond_the_data_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_image_folder(tmp_path / "images", ["a", "b"], per_class=5)
    args = [*cpu_run_args(tmp_path / "images", tmp_path), "--data.dataset=image_folder", "--data.val_size=5000"]
    assert run_cli(["fit", *args]) == 2
    error = capsys.readouterr().err
    assert "error: data.val_size must be between 1 and 9 for the 10 training images of image_folder, got 5000" in error
    assert "Traceback" not in error


# --- data.val_size: a count, a fraction, or the default ----------------------------------------


def test_a_small_image_folder_holds_out_a_tenth_of_its_images_by_default(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a", "b"], per_class=15)  # 30 training images, far below 5,000
    dm = loaded(tmp_path, "image_folder", batch_size=4)
    train, val = dm.splits["train"][0], dm.splits["val"][0]
    assert (len(train), len(val)) == (27, 3)
    served = {image.numpy().tobytes() for x, _ in dm.train_dataloader() for image in (x * 255).round().to(torch.uint8)}
    assert not served & {image.numpy().tobytes() for image in val}  # no validation image is trained on


def test_a_folder_too_small_for_the_default_val_size_is_refused_naming_the_setting(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a", "b"], per_class=2)  # a tenth of 4 images rounds to none
    dm = ImageDataModule(data_dir=str(tmp_path), dataset="image_folder", download=False)
    with pytest.raises(UserError, match=re.escape("of image_folder, got null (as 0 images): set --data.val_size to a count")):
        dm.setup("fit")


def test_val_size_as_a_fraction_holds_out_that_share_of_the_training_images(kmnist_dir) -> None:
    data_dir, written = kmnist_dir
    dm = loaded(data_dir, "kmnist", val_size=0.25)
    train, val = dm.splits["train"][0], dm.splits["val"][0]
    assert (len(train), len(val)) == (30, 10)  # a quarter of the 40 training images
    together = sorted(image.numpy().tobytes() for image in torch.cat([train, val])[:, 0])
    assert together == sorted(image.tobytes() for image in written["train_images"])  # a split, nothing lost


@pytest.mark.parametrize(
    ("val_size", "message"),
    [
        (0, "data.val_size must be at least 1, got 0"),
        (1.5, "data.val_size as a fraction must be between 0 and 1, got 1.5: give a fraction of the training images such as 0.1"),
        (0.0, "data.val_size as a fraction must be between 0 and 1, got 0.0"),
        ("10%", "data.val_size must be a count of images, a fraction such as 0.1, or null; got '10%'"),
    ],
)
def test_a_val_size_that_fits_no_dataset_is_refused_at_once(tmp_path: Path, val_size, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ImageDataModule(data_dir=str(tmp_path), dataset="image_folder", val_size=val_size)


def test_the_command_line_reads_a_fraction_and_refuses_one_that_holds_out_no_image(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_image_folder(tmp_path / "images", ["a", "b"], per_class=5)
    args = [*cpu_run_args(tmp_path / "images", tmp_path), "--data.dataset=image_folder", "--data.val_size=0.01"]
    assert run_cli(["fit", *args]) == 2
    error = capsys.readouterr().err
    assert (
        "error: data.val_size must be between 1 and 9 for the 10 training images of image_folder, got 0.01 (as 0 images): "
        "set --data.val_size to a count in that range or a fraction such as 0.1"
    ) in error
    assert "Traceback" not in error


def test_16_bit_grey_images_are_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    levels = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(levels).save(tmp_path / split / "a" / f"{i}.png")  # a 16-bit PNG
    dm = loaded(tmp_path, "image_folder", val_size=1)
    assert dm.image_shape == (1, 2, 2)
    assert dm.splits["test"][0][0, 0].tolist() == [[0, 64], [128, 255]]
