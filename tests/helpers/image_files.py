"""Small datasets written in the real on-disk formats, for tests that cannot download any:
IDX files (MNIST, Fashion-MNIST, KMNIST), CIFAR-10's pickled batches, CelebA's faces and image folders."""

from __future__ import annotations

import hashlib
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torchvision
from PIL import Image, ImageDraw

#: The colours and shapes of the two classes of :func:`write_shapes_folder`.
SHAPE_CLASSES = ("circles", "squares")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file of uint8 ``array``: magic 0x0000 08 <ndim>, big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_idx_dataset(data_dir: Path, folder: str, num_train: int, num_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The four IDX files of ``<data_dir>/<folder>/raw`` (``folder``: MNIST, FashionMNIST or KMNIST)
    with random 28x28 images and labels 0-9; returns the arrays written, by split."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        write_idx(data_dir / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data_dir / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"] = images, labels
    return arrays


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(data_dir: Path, per_batch: int, seed: int = 0) -> dict[str, list[list[str]] | dict[str, str]]:
    """``<data_dir>/cifar-10-batches-py`` as published: five training batches, a test batch and
    ``batches.meta``, pickled dicts of ``data`` (N, 3072) uint8 rows (R, G, B planes) and ``labels``.
    Returns the files' MD5 sums in the shape of ``torchvision.datasets.CIFAR10``'s ``train_list``,
    ``test_list`` and ``meta``, to stand in for the published ones."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)

    def dump(name: str, entry: dict) -> list[str]:
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f)
        return [name, md5(folder / name)]

    train_list = [
        dump(
            f"data_batch_{i}",
            {
                "batch_label": f"training batch {i} of 5",
                "labels": rng.integers(0, 10, size=per_batch).tolist(),
                "data": rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8),
                "filenames": [f"image_{i}_{j}.png" for j in range(per_batch)],
            },
        )
        for i in range(1, 6)
    ]
    test_list = [
        dump(
            "test_batch",
            {
                "batch_label": "testing batch 1 of 1",
                "labels": rng.integers(0, 10, size=per_batch).tolist(),
                "data": rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8),
                "filenames": [f"test_{j}.png" for j in range(per_batch)],
            },
        )
    ]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta_name, meta_md5 = dump("batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072})
    return {"train_list": train_list, "test_list": test_list, "meta": {"filename": meta_name, "key": "label_names", "md5": meta_md5}}


def write_image(path: Path, array: np.ndarray) -> None:
    """A PNG of a uint8 (H, W) or (H, W, 3) array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_image_folder(
    data_dir: Path, classes: Sequence[str], per_class: int, size: tuple[int, int] = (8, 8), mode: str = "RGB", seed: int = 0
) -> None:
    """``<data_dir>/{train,test}/<class>/<i>.png`` of random images (``size`` is width, height)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    for split in ("train", "test"):
        for name in classes:
            for i in range(per_class):
                write_image(data_dir / split / name / f"{i:04d}.png", rng.integers(0, 256, size=shape, dtype=np.uint8))


def shape_image(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A red disc or a blue square of random size and place on a dark background."""
    image = Image.new("RGB", (size, size), (16, 16, 16))
    r = int(rng.integers(size // 6, size // 3))
    cx, cy = (int(c) for c in rng.integers(r, size - r, size=2))
    box = (cx - r, cy - r, cx + r, cy + r)
    draw = ImageDraw.Draw(image)
    if kind == "circles":
        draw.ellipse(box, fill=(230, 40, 40))
    else:
        draw.rectangle(box, fill=(40, 60, 230))
    return image


def write_shapes_folder(data_dir: Path, train_per_class: int, test_per_class: int, size: int = 32, seed: int = 0) -> None:
    """An RGB image folder of two classes, red discs and blue squares, ``size`` x ``size`` PNGs."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for kind in SHAPE_CLASSES:
            folder = data_dir / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape_image(kind, rng, size).save(folder / f"{i:04d}.png")


#: CelebA's 40 attribute names, the header of ``list_attr_celeba.txt``.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def write_celeba(data_dir: Path, splits: Sequence[int], seed: int = 0) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    """``<data_dir>/celeba`` as published, with ``splits[i]`` images of partition ``i`` (0 train,
    1 validation, 2 test): ``img_align_celeba/000001.jpg``... 178x218 JPEGs of random colour blocks,
    ``list_eval_partition.txt``, ``identity_CelebA.txt``, ``list_attr_celeba.txt``,
    ``list_bbox_celeba.txt`` and ``list_landmarks_align_celeba.txt``. Returns each image's
    identity by file name, and the files' MD5 sums in the shape of
    ``torchvision.datasets.CelebA.file_list``, to stand in for the published ones."""
    folder = data_dir / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = [f"{i + 1:06d}.jpg" for i in range(sum(splits))]
    partition = [p for p, count in enumerate(splits) for _ in range(count)]
    identities = {name: int(rng.integers(1, 10178)) for name in names}
    for name in names:  # smooth 8x8 blocks, so JPEG keeps them close to what was written
        blocks = rng.integers(0, 256, size=(28, 23, 3), dtype=np.uint8)
        Image.fromarray(blocks.repeat(8, axis=0).repeat(8, axis=1)[:218, :178]).save(folder / "img_align_celeba" / name, quality=95)

    def table(file: str, header: str | None, rows: list[str]) -> None:
        lines = ([str(len(rows)), header] if header is not None else []) + rows
        (folder / file).write_text("\n".join(lines) + "\n")

    table("list_eval_partition.txt", None, [f"{n} {p}" for n, p in zip(names, partition)])
    table("identity_CelebA.txt", None, [f"{n} {identities[n]}" for n in names])
    table("list_attr_celeba.txt", " ".join(CELEBA_ATTRIBUTES) + " ",
          [n + "".join(f" {v:2d}" for v in rng.choice([-1, 1], size=40)) for n in names])
    table("list_bbox_celeba.txt", "image_id x_1 y_1 width height", [f"{n} 95 71 226 313" for n in names])
    landmarks = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    table("list_landmarks_align_celeba.txt", landmarks, [f"{n} 69 109 106 113 77 142 73 152 108 154" for n in names])
    file_list = [
        (file_id, md5(folder / name) if (folder / name).is_file() else published, name)
        for file_id, published, name in torchvision.datasets.CelebA.file_list
    ]
    return identities, file_list
