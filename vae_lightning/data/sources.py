"""Reading a dataset's split once into memory: uint8 images (N, C, H, W) and int64 labels.

- ``mnist``, ``fashion_mnist``, ``kmnist``: torchvision's classes over the IDX files in
  ``<data_dir>/<MNIST|FashionMNIST|KMNIST>/raw`` (sizes against their IDX headers, and MNIST's
  MD5 sums, checked first);
- ``cifar10``: torchvision's class over ``<data_dir>/cifar-10-batches-py``, whose files
  torchvision checks against their published MD5 sums;
- ``celeba``: torchvision's class over ``<data_dir>/celeba`` (aligned faces, centre-cropped to
  148x148 and resized to 64x64; its published training, validation and test splits), see
  :mod:`vae_lightning.data.celeba`;
- ``image_folder``: torchvision's ``ImageFolder`` layout, ``<data_dir>/train/<class>/*.png`` and
  ``<data_dir>/test/<class>/*.png`` (any format PIL reads), the class folders of both splits,
  sorted by name, giving the labels; every image takes the first training image's shape.

``image_size`` and ``channels`` resize and convert the images as they are read (for every
dataset), so a network for 3x32x32 images can train on MNIST, or one for 1x28x28 on photos.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision import datasets
from torchvision.transforms.v2 import functional as TF

from vae_lightning.data import celeba
from vae_lightning.data.integrity import verify_raw_files
from vae_lightning.runtime.errors import CorruptDataError, DataNotFoundError, UserError

DatasetName = Literal["mnist", "fashion_mnist", "kmnist", "cifar10", "celeba", "image_folder"]
ImageShape = tuple[int, int, int]

_IDX_CLASSES: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
    "kmnist": datasets.KMNIST,
}
#: (channels, height, width) of each dataset as published (image folders: read from the files).
NATIVE_SHAPES: dict[str, ImageShape] = {name: (1, 28, 28) for name in _IDX_CLASSES} | {
    "cifar10": (3, 32, 32),
    "celeba": (3, celeba.IMAGE_SIZE, celeba.IMAGE_SIZE),  # as cropped and resized
}
#: datasets whose validation images are a published split, not held out of the training images
PUBLISHED_VALIDATION = ("celeba",)
SPLIT_FOLDERS = {True: "train", False: "test"}  # image_folder's split -> subfolder
#: Classes of each dataset's labels as published (image folders: their class folders). CelebA's
#: labels are the identities of its people, not classes to condition on, so it has none here.
NATIVE_CLASSES: dict[str, int] = {name: 10 for name in (*_IDX_CLASSES, "cifar10")}


def dataset_folder(dataset: DatasetName, data_dir: Path) -> Path:
    """The folder the dataset's files are read from, for messages."""
    if dataset in _IDX_CLASSES:
        return data_dir / _IDX_CLASSES[dataset].__name__ / "raw"
    if dataset == "cifar10":
        return data_dir / datasets.CIFAR10.base_folder
    if dataset == "celeba":
        return data_dir / celeba.FOLDER
    return data_dir


def adapt(images: Tensor, channels: int | None, image_size: int | None) -> Tensor:
    """Images (N, C, H, W) with ``channels`` (1: grayscale, 3: RGB) and ``image_size`` x
    ``image_size`` pixels; ``None`` keeps what the images have."""
    if channels is not None and channels != images.shape[-3]:
        images = TF.rgb_to_grayscale(images) if channels == 1 else images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        images = TF.resize(images, [image_size, image_size], antialias=True)
    return images.contiguous()


def _read_idx(dataset_class: type[datasets.MNIST], data_dir: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    name = dataset_class.__name__
    raw_folder = data_dir / name / "raw"
    verify_raw_files(raw_folder, train)  # a wrong file is an error here, not wrong training
    try:
        ds = dataset_class(str(data_dir), train=train, download=download)
    except RuntimeError as err:
        raise _not_found(name, raw_folder, download, f"{name}/raw", err) from err
    return ds.data.unsqueeze(1), ds.targets.clone()


def _read_cifar10(data_dir: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    try:
        ds = datasets.CIFAR10(str(data_dir), train=train, download=download)
    except (RuntimeError, OSError) as err:  # torchvision's "Dataset not found or corrupted", or a failed download
        error = _cifar10_error(data_dir / datasets.CIFAR10.base_folder, download, err)
        if error is None:
            raise
        raise error from err
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.tensor(ds.targets)


def _cifar10_error(folder: Path, download: bool, err: Exception) -> UserError | None:
    """What is wrong with CIFAR-10's files: the first corrupt one, else where they were looked for;
    ``None`` when every file is present and intact (the error is then not the files')."""
    cls = datasets.CIFAR10
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    present = [(name, md5) for name, md5 in files if (folder / name).is_file()]
    bad = next((name for name, md5 in present if not datasets.utils.check_integrity(str(folder / name), md5)), None)
    if bad is not None:
        refetch = f" (fetching a fresh copy failed: {err})" if download else ""
        return CorruptDataError(
            f"CIFAR-10 file {folder / bad} is corrupt: its MD5 sum is not the published one{refetch}. Delete it and run "
            f"with --data.download true to fetch a fresh copy, or copy it again from a good source."
        )
    if len(present) < len(files):
        return _not_found("CIFAR-10", folder, download, cls.base_folder, err)
    return None


def _read_celeba(data_dir: Path, split: celeba.Split, channels: int | None, image_size: int | None) -> tuple[Tensor, Tensor]:
    images, labels = celeba.read(data_dir, split, image_size)  # cropped and resized as read
    return adapt(images, channels, None), labels


def _not_found(name: str, folder: Path, download: bool, layout: str, err: Exception) -> DataNotFoundError:
    if download:
        return DataNotFoundError(
            f"could not download {name} into {folder}: {err}. Copy its files there by hand, or point "
            f"--data.data_dir at a folder that holds {layout}."
        )
    return DataNotFoundError(
        f"{name} not found: looked for its files in {folder}. Point --data.data_dir at the folder that holds "
        f"{layout} (e.g. --data.data_dir ../shared/data), or pass --data.download true to fetch it."
    )


def _class_folders(folder: Path) -> list[str]:
    """The names of ``folder``'s subfolders (none when it does not exist)."""
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir()) if folder.is_dir() else []


def image_folder_classes(data_dir: Path) -> list[str]:
    """The class names of an ``ImageFolder`` layout: the class folders of both splits, sorted."""
    return sorted({name for split in SPLIT_FOLDERS.values() for name in _class_folders(data_dir / split)})


def image_folder_samples(data_dir: Path, train: bool) -> list[tuple[str, int]]:
    """``[(path, label)]`` of a split of an ``ImageFolder`` layout, or a clear error. Labels index
    the class folders of both splits together, sorted by name, so a class has one label even
    when a split lacks some classes."""
    folder = data_dir / SPLIT_FOLDERS[train]
    if not folder.is_dir():
        raise DataNotFoundError(
            f"image folder {folder} does not exist. data.dataset image_folder reads "
            f"<data_dir>/train/<class>/*.png and <data_dir>/test/<class>/*.png: point --data.data_dir at their parent."
        )
    labels = {name: i for i, name in enumerate(image_folder_classes(data_dir))}
    classes = _class_folders(folder)
    try:
        if not classes:
            raise FileNotFoundError("it has no class folders")
        return datasets.folder.make_dataset(
            str(folder), {name: labels[name] for name in classes}, extensions=datasets.folder.IMG_EXTENSIONS
        )
    except FileNotFoundError as err:  # an empty class folder
        raise DataNotFoundError(
            f"no images found in {folder}: {str(err).strip(' .')}. Put each class's images in a subfolder, "
            f"{folder}/<class>/<image>.png (extensions: {', '.join(datasets.folder.IMG_EXTENSIONS)})."
        ) from err


def _open_image(path: str, channels: int | None) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise CorruptDataError(f"cannot read image {path}: {err}. Delete or replace the file.") from err
    if image.mode.startswith("I;16"):  # 16-bit grey: scale to 8 bits (PIL's convert would clip at 255)
        image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8))
    if channels is None:
        channels = 1 if image.mode in ("1", "L", "LA", "I", "F") else 3
    return image.convert("L" if channels == 1 else "RGB")


def _first_training_image(data_dir: Path, channels: int | None) -> tuple[str, Image.Image]:
    """The path and image (converted to ``channels``) whose shape every image of both splits takes."""
    path = image_folder_samples(data_dir, train=True)[0][0]
    return path, _open_image(path, channels)


def image_folder_reader(data_dir: Path, channels: int | None, image_size: int | None) -> tuple[ImageShape, Callable[[str], Tensor]]:
    """The shape the images of both splits will have, and the picklable function that decodes
    each of them to it. The first training image sets both: its channels (unless ``channels``
    says) and, without ``image_size``, its size, since the network is built for one shape."""
    first_path, first = _first_training_image(data_dir, channels)
    c = 1 if first.mode == "L" else 3
    shape = (c, image_size, image_size) if image_size is not None else (c, first.height, first.width)
    return shape, partial(decode_image, channels=c, image_size=image_size, size=first.size, first_path=first_path)


def image_folder_shape(data_dir: Path, channels: int | None, image_size: int | None) -> ImageShape:
    """The shape the images of both splits will have: the first training image's, resized to
    ``image_size`` and converted to ``channels`` when given."""
    return image_folder_reader(data_dir, channels, image_size)[0]


def decode_image(path: str, channels: int, image_size: int | None, size: tuple[int, int], first_path: str) -> Tensor:
    """One image of a folder as uint8 (C, H, W) with ``channels``, resized to ``image_size``;
    without it the image must have the first training image's ``size`` (width, height)."""
    image = TF.pil_to_tensor(_open_image(path, channels))
    if image_size is None and (image.shape[-1], image.shape[-2]) != size:
        raise CorruptDataError(
            f"images of different sizes in {Path(first_path).parents[2]}: {first_path} is {size[0]}x{size[1]}, "
            f"{path} is {image.shape[-1]}x{image.shape[-2]}. Set --data.image_size to resize them all."
        )
    return adapt(image, None, image_size)


def _read_image_folder(data_dir: Path, train: bool, channels: int | None, image_size: int | None) -> tuple[Tensor, Tensor]:
    samples = image_folder_samples(data_dir, train)
    _, decode = image_folder_reader(data_dir, channels, image_size)
    return torch.stack([decode(path) for path, _ in samples]), torch.tensor([label for _, label in samples])


def read_split(
    dataset: DatasetName, data_dir: Path, train: bool, download: bool, channels: int | None, image_size: int | None
) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of the training (``train``) or test split: uint8 (N, C, H, W), int64 (N,)."""
    if dataset == "image_folder":
        return _read_image_folder(data_dir, train, channels, image_size)
    if dataset == "celeba":
        return _read_celeba(data_dir, "train" if train else "test", channels, image_size)
    readers: dict[str, Callable[[Path, bool, bool], tuple[Tensor, Tensor]]] = {
        name: partial(_read_idx, cls) for name, cls in _IDX_CLASSES.items()
    } | {"cifar10": _read_cifar10}
    images, labels = readers[dataset](data_dir, train, download)
    return adapt(images, channels, image_size), labels


def read_validation(
    dataset: DatasetName, data_dir: Path, channels: int | None, image_size: int | None
) -> tuple[Tensor, Tensor] | None:
    """``(images, labels)`` of the dataset's published validation split (CelebA's); ``None`` for
    the others, whose validation images are held out of the training images."""
    if dataset != "celeba":
        return None
    return _read_celeba(data_dir, "valid", channels, image_size)


def download_split(dataset: DatasetName, data_dir: Path, train: bool) -> None:
    """Fetch the split's files into ``data_dir`` when missing (an image folder has none to fetch)."""
    if dataset == "celeba":  # one download holds every split, and reading it would decode each image
        if train:
            celeba.download(data_dir)
    elif dataset != "image_folder":
        read_split(dataset, data_dir, train, download=True, channels=None, image_size=None)


def image_shape(dataset: DatasetName, data_dir: Path, channels: int | None, image_size: int | None) -> ImageShape:
    """(channels, height, width) of the images as served, before any is read (image folders: from the first)."""
    if dataset == "image_folder":
        return image_folder_shape(data_dir, channels, image_size)
    c, h, w = NATIVE_SHAPES[dataset]
    return (channels or c, image_size or h, image_size or w)


def class_count(dataset: DatasetName, data_dir: Path) -> int | None:
    """K, the classes of the dataset's labels, before any image is read (an image folder's: the
    class folders of both splits together); ``None`` for labels that are not classes (CelebA's)."""
    if dataset == "image_folder":
        return len(image_folder_classes(data_dir))
    return NATIVE_CLASSES.get(dataset)
