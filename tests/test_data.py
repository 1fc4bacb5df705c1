"""The datamodule on real MNIST: shapes, range, split, sharding, binarization and its error on a missing folder."""

from pathlib import Path

import pytest
import torch

from vae_lightning.data import DataNotFoundError, ImageDataModule, TensorBatchLoader
from vae_lightning.data.loader import PixelBatch


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> ImageDataModule:
    dm = ImageDataModule(data_dir=str(mnist_dir), batch_size=256, download=False)  # val_size's default: 5,000
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_batches_are_images_of_pixels_in_unit_range_with_labels(mnist: ImageDataModule) -> None:
    x, y = next(iter(mnist.train_dataloader()))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (256,)
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    assert mnist.image_shape == (1, 28, 28)
    # held as bytes, 4x smaller than float pixels; MNIST's known mean pixel intensity checks
    # that the files were read as they are
    images = mnist.splits["train"][0]
    assert images.dtype == torch.uint8
    assert abs(images.float().mean().item() / 255 - 0.1307) < 0.002


def test_split_sizes_and_disjoint_train_and_val(mnist: ImageDataModule) -> None:
    train_x, _ = mnist.splits["train"]
    val_x, _ = mnist.splits["val"]
    test_x, _ = mnist.splits["test"]
    assert (len(train_x), len(val_x), len(test_x)) == (55_000, 5_000, 10_000)
    assert sum(len(b[0]) for b in mnist.val_dataloader()) == 5_000
    # no validation image is also a training image
    train_keys = {image.numpy().tobytes() for image in train_x}
    assert not any(image.numpy().tobytes() in train_keys for image in val_x[:1000])


def test_split_is_seeded(mnist_dir: Path) -> None:
    a = ImageDataModule(data_dir=str(mnist_dir), split_seed=1, download=False)
    b = ImageDataModule(data_dir=str(mnist_dir), split_seed=1, download=False)
    c = ImageDataModule(data_dir=str(mnist_dir), split_seed=2, download=False)
    for dm in (a, b, c):
        dm.setup("fit")
    assert torch.equal(a.splits["val"][1], b.splits["val"][1])
    assert not torch.equal(a.splits["val"][1], c.splits["val"][1])


def test_training_order_changes_each_epoch_and_covers_every_image() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    loader = TensorBatchLoader(images, torch.arange(10), batch_size=4, shuffle=True, pixels=PixelBatch(), seed=0)
    loader.sampler.set_epoch(0)
    first = torch.cat([y for _, y in loader])
    loader.sampler.set_epoch(1)
    second = torch.cat([y for _, y in loader])
    assert len(loader) == 3
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)


def test_each_process_gets_its_own_shard() -> None:
    images = torch.zeros(12, 1, 1, 1, dtype=torch.uint8)
    shards = [
        torch.cat([y for _, y in TensorBatchLoader(images, torch.arange(12), 4, True, PixelBatch(), seed=0, num_replicas=2, rank=r)])
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0].flatten().tolist()).isdisjoint(shards[1].flatten().tolist())


def test_missing_folder_names_where_it_looked_and_how_to_fix_it(tmp_path: Path) -> None:
    dm = ImageDataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "--data.data_dir" in message


def test_binarization_is_fresh_per_training_batch_and_fixed_for_validation(mnist_dir: Path) -> None:
    dm = ImageDataModule(data_dir=str(mnist_dir), batch_size=512, binarize=True, download=False)
    dm.setup("fit")
    val = [next(iter(dm.val_dataloader()))[0] for _ in range(2)]
    assert torch.equal(val[0], val[1])  # the same binary images every epoch
    assert set(val[0].unique().tolist()) == {0.0, 1.0}
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    first = next(iter(loader))[0]
    second = next(iter(loader))[0]  # the same images, drawn again
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # each pixel is 1 with probability equal to its intensity: the share of ones is MNIST's mean intensity
    assert abs(first.mean().item() - 0.1307) < 0.01


def test_image_size_and_channels_convert_the_images_as_they_are_read(mnist_dir: Path) -> None:
    dm = ImageDataModule(data_dir=str(mnist_dir), image_size=16, channels=3, batch_size=8, download=False)
    assert dm.image_shape == (3, 16, 16)
    dm.setup("test")
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 1])  # grey digits, now in three equal channels
