"""Streaming through LitData (vae_lightning/data/streaming.py, python -m vae_lightning.data.optimize):
a dataset converted and read back gives the pixels and labels of the datamodule's own path, split
for split; a run trains on the converted folder through the CLI; a run stopped mid-epoch resumes
to the weights of one that was not (one process, and two under DDP); a folder that is not a LitData
directory, and a store that cannot be reached, end with an ``error:`` naming the fix."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.compare import assert_same_weights, weights
from helpers.faults import CrashAt, SignalAt
from helpers.image_files import write_shapes_folder
from helpers.runs import TRACEBACK, cpu_run_args, in_process, run_command, with_callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vae_lightning.cli import main
from vae_lightning.data import ImageDataModule
from vae_lightning.data import optimize as optimize_module
from vae_lightning.data import streaming
from vae_lightning.runtime.errors import STOPPED_EXIT_CODE

TRAIN_PER_CLASS, TEST_PER_CLASS, VAL_SIZE = 80, 20, 32  # 160 training images: 128 to train on, 32 to validate
BATCH = 32  # 4 whole batches per epoch: every epoch ends where LitData's does


def optimize(*args: str) -> int:
    """``python -m vae_lightning.data.optimize`` in this process; its exit status."""
    return optimize_module.main(list(args))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG folder of 16x16 red discs and blue squares, 160 training and 40 test images."""
    folder = tmp_path_factory.mktemp("shapes") / "images"
    write_shapes_folder(folder, TRAIN_PER_CLASS, TEST_PER_CLASS, size=16)
    return folder


@pytest.fixture(scope="module")
def streamed(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shapes`` converted by two workers into LitData's format, 32 training images held out."""
    out = tmp_path_factory.mktemp("streamed") / "shapes-litdata"
    assert optimize("--dataset", "image_folder", "--data_dir", str(shapes), "--out", str(out),
                    "--val_size", str(VAL_SIZE), "--workers", "2") == 0
    return out


def digests(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[str, int]]:
    """Each uint8 image's SHA-256 with its label, sorted: a split as a multiset of items."""
    return sorted((hashlib.sha256(image.numpy().tobytes()).hexdigest(), int(y)) for image, y in zip(images, labels))


def streamed_split(out: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of a split, as its StreamingDataLoader serves it (float pixels back to uint8)."""
    loader = streaming.streaming_loader(streaming.open_split(str(out), split), batch_size=50, num_workers=0)
    batches = list(loader)
    pixels, labels = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    assert pixels.dtype == torch.float32 and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    return (pixels * 255).round().to(torch.uint8), labels


def test_an_optimized_image_folder_streams_the_datamodules_pixels_and_labels_split_for_split(shapes: Path, streamed: Path) -> None:
    data = ImageDataModule(str(shapes), "image_folder", val_size=VAL_SIZE, download=False, cache=False)
    data.setup()
    for split in streaming.SPLITS:
        images, labels = streamed_split(streamed, split)
        expected = data.splits[split].tensors()
        assert images.shape[1:] == (3, 16, 16)
        assert len(images) == len(expected[0])
        assert digests(images, labels) == digests(*expected), split
    assert set(labels.tolist()) == {0, 1}  # both classes, by their folders' order


def test_optimized_mnist_streams_the_datamodules_pixels_and_labels_split_for_split(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnist-litdata"
    assert optimize("--dataset", "mnist", "--data_dir", str(mnist_dir), "--out", str(out), "--workers", "2") == 0
    data = ImageDataModule(str(mnist_dir), "mnist", download=False)
    data.setup()
    for split in ("val", "test"):  # 5,000 and 10,000 images; the training rows are the rest
        images, labels = streamed_split(out, split)
        assert digests(images, labels) == digests(*data.splits[split].tensors()), split
    index = streaming.open_split(str(out), "train")
    assert len(index) == len(data.splits["train"]) == 55000


def fit_args(out: Path | str, root: Path, *extra: str) -> list[str]:
    """``fit`` of the default config on the streamed folder: 3 epochs of 4 batches of 32."""
    return [
        "fit", *cpu_run_args(out, root), "--data.dataset=streaming", f"--data.batch_size={BATCH}",  # type: ignore[arg-type]
        "--trainer.max_epochs=3", "--trainer.num_sanity_val_steps=0", "--progress_bar.refresh_rate=0", *extra,
    ]


@pytest.fixture(scope="module")
def reference(streamed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted streamed run: its weights and steps."""
    cli = main(fit_args(streamed, tmp_path_factory.mktemp("reference")))
    return {"weights": weights(cli.model), "steps": cli.trainer.global_step, "val_loss": float(cli.trainer.callback_metrics["val/loss"])}


def test_a_streamed_run_trains_through_the_cli_on_images_of_the_streamed_shape(reference: dict[str, Any], streamed: Path) -> None:
    assert reference["steps"] == 3 * 4
    assert reference["weights"]["network.encoder.0.weight"].shape[1] == 3 * 16 * 16  # the shape read from the data
    assert torch.isfinite(torch.tensor(reference["val_loss"]))


def test_a_streamed_run_stopped_mid_epoch_resumes_to_the_weights_of_one_that_was_not(
    reference: dict[str, Any], streamed: Path, tmp_path: Path
) -> None:
    with pytest.raises(SIGTERMException):
        main(fit_args(streamed, tmp_path, with_callback(SignalAt, step=6, signum=int(signal.SIGTERM))))
    run_dir = tmp_path / "lightning_logs" / "version_0"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 6  # 2 batches into epoch 1
    (position,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert position["num_samples_yielded"] == 2 * BATCH  # LitData's own position in the epoch

    cli = main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path=last"])

    assert cli.trainer.global_step == reference["steps"]
    assert_same_weights(weights(cli.model), reference["weights"])


def test_a_streamed_run_with_loader_workers_stopped_mid_epoch_resumes_to_the_weights_of_one_that_was_not(
    streamed: Path, tmp_path: Path
) -> None:
    workers = "--data.num_workers=2"  # LitData splits each shard between the workers: another order
    whole = main(fit_args(streamed, tmp_path / "whole", workers))
    with pytest.raises(SIGTERMException):
        main(fit_args(streamed, tmp_path / "stopped", workers, with_callback(SignalAt, step=6, signum=int(signal.SIGTERM))))
    run_dir = tmp_path / "stopped" / "lightning_logs" / "version_0"

    cli = main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path=last"])

    assert cli.trainer.global_step == whole.trainer.global_step == 12
    assert_same_weights(weights(cli.model), weights(whole.model))


def test_a_streamed_run_resumed_from_an_epoch_end_checkpoint_continues_at_the_next_epochs_order(
    reference: dict[str, Any], streamed: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(fit_args(streamed, tmp_path, with_callback(CrashAt, step=9)))
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 8  # the end of epoch 1
    assert checkpoint["streaming_loader"]["num_samples_yielded"] == 4 * BATCH  # ExactResume's copy

    cli = main(fit_args(streamed, tmp_path, f"--ckpt_path={last}"))

    assert_same_weights(weights(cli.model), reference["weights"])


def test_a_folder_that_is_not_a_litdata_directory_says_so_and_names_the_optimize_command(
    shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = in_process(fit_args(shapes, tmp_path), capsys)
    assert status == 2
    assert err.count("error:") == 1
    assert f"{shapes / 'train' / 'index.json'} does not exist" in err
    assert "python -m vae_lightning.data.optimize" in err


def test_a_store_whose_client_package_is_missing_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import google.cloud.storage  # noqa: F401
        pytest.skip("google-cloud-storage is installed here: the missing-package message cannot show")
    except ImportError:
        pass
    status, err = in_process(fit_args("gs://no-such-bucket/shapes", tmp_path), capsys)
    assert status == 2
    assert "error: cannot stream gs://no-such-bucket/shapes/train: a package for gs:// is missing" in err
    assert "google.cloud.storage" in err


def test_a_store_without_credentials_says_which_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("boto3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup
    status, err = in_process(fit_args("s3://no-such-bucket/shapes", tmp_path), capsys)
    assert status == 2
    assert "error: cannot stream s3://no-such-bucket/shapes/train: no credentials for s3:// were found" in err
    assert "AWS_ACCESS_KEY_ID" in err


def test_optimize_refuses_a_folder_that_already_holds_a_split(streamed: Path, shapes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = optimize("--dataset", "image_folder", "--data_dir", str(shapes), "--out", str(streamed))
    err = capsys.readouterr().err
    assert status == 2 and TRACEBACK not in err
    assert f"error: {streamed / 'train'} already holds files" in err


def test_a_streamed_ddp_run_stopped_mid_epoch_resumes_to_the_weights_of_one_that_was_not(streamed: Path, tmp_path: Path) -> None:
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", f"--data.batch_size={BATCH // 2}"]
    whole = run_command("vae_lightning", fit_args(streamed, tmp_path / "whole", *ddp))
    assert whole.returncode == 0, whole.stderr[-3000:]
    stopped = run_command("vae_lightning", fit_args(streamed, tmp_path / "stopped", *ddp,
                                                    with_callback(SignalAt, step=6, signum=int(signal.SIGTERM))))
    assert stopped.returncode == STOPPED_EXIT_CODE, stopped.stderr[-3000:]
    run_dir = tmp_path / "stopped" / "lightning_logs" / "version_0"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6

    resumed = run_command("vae_lightning", ["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path=last"])

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(tmp_path / "stopped" / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    reference = torch.load(tmp_path / "whole" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == reference["global_step"] == 12
    assert_same_weights(final["state_dict"], reference["state_dict"])
