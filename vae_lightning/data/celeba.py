"""CelebA (Liu et al. 2015, "Deep Learning Face Attributes in the Wild") read through torchvision's
``CelebA`` class: the aligned faces ``<data_dir>/celeba/img_align_celeba/*.jpg`` (178x218 JPEGs),
in the splits published in ``list_eval_partition.txt`` (162,770 training, 19,867 validation and
19,962 test images), labelled by identity (``identity_CelebA.txt``).

Each face is centre-cropped to 148x148 and resized to 64x64 (or ``image_size``) as it is read: the
CelebA-64 of VAE papers, as PyTorch-VAE's ``CenterCrop(148)``, ``Resize(64)``. torchvision checks
its five list files against their published MD5 sums (it has no sums for the images, which a
broken JPEG shows as it is read); the zip archive may be deleted once extracted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor
from torchvision import datasets
from torchvision.datasets.utils import check_integrity
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from vae_lightning.runtime.errors import CorruptDataError, DataNotFoundError, UserError

Split = Literal["train", "valid", "test"]

#: ``<data_dir>/celeba``, where torchvision reads (and downloads) the files.
FOLDER = datasets.CelebA.base_folder
IMAGES = "img_align_celeba"
#: side of the centre square cut out of each 178x218 face before it is resized
CROP = 148
#: side of the served images when ``image_size`` is not set
IMAGE_SIZE = 64


def _list_files() -> list[tuple[str, str]]:
    """``(name, md5)`` of the list files torchvision checks (not the zip archive, which may be gone)."""
    return [(name, md5) for _, md5, name in datasets.CelebA.file_list if not name.endswith((".zip", ".7z"))]


def _corrupt_file(folder: Path) -> Path | None:
    """The first list file in ``folder`` whose MD5 sum is not the published one."""
    paths = ((folder / name, md5) for name, md5 in _list_files())
    return next((path for path, md5 in paths if path.is_file() and not check_integrity(str(path), md5)), None)


def _missing_files(folder: Path) -> list[str]:
    """What torchvision needs that ``folder`` lacks: list files and the image folder."""
    missing = [name for name, _ in _list_files() if not (folder / name).is_file()]
    return missing + ([f"{IMAGES}/"] if not (folder / IMAGES).is_dir() else [])


@contextmanager
def _explained(data_dir: Path, download: bool) -> Iterator[None]:
    """torchvision's "Dataset not found or corrupted" (or a failed download) as the file at fault."""
    try:
        yield
    except UserError:
        raise
    except (RuntimeError, OSError) as err:
        folder = data_dir / FOLDER
        refetch = f" (fetching a fresh copy failed: {err})" if download else ""
        if (bad := _corrupt_file(folder)) is not None:
            raise CorruptDataError(
                f"CelebA file {bad} is corrupt: its MD5 sum is not the published one{refetch}. Delete it and run "
                f"with --data.download true to fetch a fresh copy, or copy it again from a good source."
            ) from err
        missing = _missing_files(folder)
        if not missing and not download:
            raise
        files = f"{FOLDER}/{IMAGES}/*.jpg and {FOLDER}/list_eval_partition.txt with the other list files"
        looked = f"looked for its files in {folder}" + (f" (missing: {', '.join(missing)})" if missing else "")
        if download:
            raise DataNotFoundError(
                f"could not download CelebA into {folder}: {str(err).rstrip('.')}; {looked}. Copy its files there "
                f"by hand (Google Drive often refuses the download), or point --data.data_dir at a folder that holds {files}."
            ) from err
        raise DataNotFoundError(
            f"CelebA not found: {looked}. Point --data.data_dir at the folder that holds {files}, "
            f"or pass --data.download true to fetch it (with the gdown package)."
        ) from err


def _face(image: Image.Image, size: int) -> Tensor:
    """uint8 (3, size, size): the centre 148x148 of an aligned face, resized."""
    image = TF.center_crop(image.convert("RGB"), [CROP, CROP])
    return TF.pil_to_tensor(TF.resize(image, [size, size], antialias=True))


def read(data_dir: Path, split: Split, image_size: int | None) -> tuple[Tensor, Tensor]:
    """``(images, identities)`` of a published split: uint8 (N, 3, S, S), int64 (N,).

    Missing files, a corrupt list file or an unreadable image are errors naming them.
    """
    size = image_size or IMAGE_SIZE
    with _explained(data_dir, download=False):
        faces = datasets.CelebA(str(data_dir), split=split, target_type="identity", download=False)
    images = torch.empty((len(faces), 3, size, size), dtype=torch.uint8)
    folder = Path(faces.root) / FOLDER / IMAGES
    for i in tqdm(range(len(faces)), desc=f"CelebA {split}", unit="img", mininterval=2, disable=None):
        try:
            image, _ = faces[i]
            images[i] = _face(image, size)
        except OSError as err:  # a missing, cut short or foreign JPEG
            raise CorruptDataError(
                f"cannot read CelebA image {folder / faces.filename[i]} (listed in list_eval_partition.txt): {err}. "
                f"Copy {IMAGES} again from a good source, or delete it and run with --data.download true."
            ) from err
    return images, faces.identity[:, 0].long()


def download(data_dir: Path) -> None:
    """Fetch the files into ``<data_dir>/celeba`` unless they are there and intact (torchvision
    downloads from Google Drive with the ``gdown`` package)."""
    with _explained(data_dir, download=True):
        datasets.CelebA(str(data_dir), split="test", target_type=[], download=True)
