"""The datamodule on real MNIST: shapes, range, split, sharding and its error on a missing folder."""

from pathlib import Path

import pytest
import torch

from vae_lightning.data import DataNotFoundError, MNISTDataModule, TensorBatchLoader


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=str(mnist_dir), batch_size=256, val_size=5000)
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_batches_are_flat_pixels_in_unit_range_with_labels(mnist: MNISTDataModule) -> None:
    x, y = next(iter(mnist.train_dataloader()))
    assert x.shape == (256, 784) and x.dtype == torch.float32
    assert y.shape == (256,)
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    # MNIST's known mean pixel intensity, a check that the files were read as they are
    assert abs(mnist.splits["train"][0].mean().item() - 0.1307) < 0.002


def test_split_sizes_and_disjoint_train_and_val(mnist: MNISTDataModule) -> None:
    train_x, _ = mnist.splits["train"]
    val_x, _ = mnist.splits["val"]
    test_x, _ = mnist.splits["test"]
    assert (len(train_x), len(val_x), len(test_x)) == (55_000, 5_000, 10_000)
    assert sum(len(b[0]) for b in mnist.val_dataloader()) == 5_000
    # no validation image is also a training image
    train_keys = {image.numpy().tobytes() for image in train_x}
    assert not any(image.numpy().tobytes() in train_keys for image in val_x[:1000])


def test_split_is_seeded(mnist_dir: Path) -> None:
    a = MNISTDataModule(data_dir=str(mnist_dir), split_seed=1)
    b = MNISTDataModule(data_dir=str(mnist_dir), split_seed=1)
    c = MNISTDataModule(data_dir=str(mnist_dir), split_seed=2)
    for dm in (a, b, c):
        dm.setup("fit")
    assert torch.equal(a.splits["val"][1], b.splits["val"][1])
    assert not torch.equal(a.splits["val"][1], c.splits["val"][1])


def test_training_order_changes_each_epoch_and_covers_every_image() -> None:
    images = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    loader = TensorBatchLoader(images, torch.arange(10), batch_size=4, shuffle=True, seed=0)
    loader.sampler.set_epoch(0)
    first = torch.cat([x for x, _ in loader]).flatten()
    loader.sampler.set_epoch(1)
    second = torch.cat([x for x, _ in loader]).flatten()
    assert len(loader) == 3
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)


def test_each_process_gets_its_own_shard() -> None:
    images = torch.arange(12, dtype=torch.float32).unsqueeze(1)
    shards = [
        torch.cat([x for x, _ in TensorBatchLoader(images, torch.arange(12), 4, True, seed=0, num_replicas=2, rank=r)])
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0].flatten().tolist()).isdisjoint(shards[1].flatten().tolist())


def test_missing_folder_names_where_it_looked_and_how_to_fix_it(tmp_path: Path) -> None:
    dm = MNISTDataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "--data.data_dir" in message
