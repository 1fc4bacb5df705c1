"""Sample quality on real MNIST: the shipped feature network, FID/KID/precision/recall validated
against real images and noise, the `test` subcommand's scores and checksum, FID during training,
and the command that trains a feature network."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from helpers.image_files import write_shapes_folder
from helpers.runs import TRACEBACK, cpu_run_args

from vae_lightning.cli import main, run_cli
from vae_lightning.data import ImageDataModule
from vae_lightning.quality import SampleQuality, load_feature_network
from vae_lightning.quality.network import WEIGHTS_DIR, sha256
from vae_lightning.quality.train_features import main as train_features
from vae_lightning.runs import load_run, read_events, read_scalars
from vae_lightning.runtime.errors import UserError

SAMPLE_METRICS = ["fid", "kid", "precision", "recall"]


@pytest.fixture(scope="module")
def mnist_test(mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 MNIST test images as float pixels in [0, 1], and their labels."""
    data = ImageDataModule(data_dir=str(mnist_dir), download=False)
    data.setup("test")
    images, labels = data.splits["test"]
    return images.float() / 255, labels


@pytest.fixture(scope="module")
def shipped():
    return load_feature_network("mnist")


def scores(features, real: torch.Tensor, generated: torch.Tensor) -> dict[str, float]:
    quality = SampleQuality(features.network)
    for start in range(0, max(len(real), len(generated)), 1000):
        quality.update(real=real[start : start + 1000], samples=generated[start : start + 1000])
    return {name: value.item() for name, value in quality.compute("samples").items()}


def test_the_shipped_mnist_network_classifies_the_test_set_as_its_record_says(shipped, mnist_test) -> None:
    record = json.loads((WEIGHTS_DIR / "mnist.json").read_text())
    assert record["sha256"] == sha256(WEIGHTS_DIR / "mnist.pt") == shipped.sha256
    assert record["test_accuracy"] >= 0.99 and record["command"].startswith("python -m vae_lightning.quality.train_features")
    images, labels = mnist_test
    with torch.no_grad():
        predicted = torch.cat([shipped.network.classify(chunk).argmax(1) for chunk in images.split(1000)])
    assert abs((predicted == labels).float().mean().item() - record["test_accuracy"]) < 1e-4


def test_two_halves_of_the_test_set_score_near_zero_and_far_below_uniform_noise(shipped, mnist_test) -> None:
    # halves drawn at random: the file's first 5,000 digits are by other writers than its last 5,000
    images = mnist_test[0][torch.randperm(10000, generator=torch.Generator().manual_seed(0))]
    halves = scores(shipped, images[:5000], images[5000:])
    noise = scores(shipped, images[:5000], torch.rand(5000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert halves["fid"] < 0.03 * noise["fid"], (halves, noise)
    assert abs(halves["kid"]) < 0.1 * noise["kid"], (halves, noise)
    assert halves["precision"] > 0.8 and halves["recall"] > 0.8, halves
    # noise covers no kind of digit; its precision is not near 0: a few atypical test digits have
    # neighbourhoods wide enough to hold the noise (the weakness of k-NN precision, docs/evaluation.md)
    assert noise["recall"] < 0.05 and noise["precision"] < halves["precision"], noise


def test_a_trained_models_samples_score_between_real_images_and_noise(trained_run: Path, shipped, mnist_test, mnist_dir: Path) -> None:
    module, _ = load_run(trained_run / "checkpoints" / "last.ckpt", data_dir=str(mnist_dir))
    shuffled = mnist_test[0][torch.randperm(10000, generator=torch.Generator().manual_seed(0))]
    images = shuffled[:2000]
    samples = module.eval().generate(2000, torch.Generator().manual_seed(0))
    model = scores(shipped, images, samples)
    real = scores(shipped, images, shuffled[2000:4000])
    noise = scores(shipped, images, torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert real["fid"] < model["fid"] < noise["fid"], (real, model, noise)
    assert real["precision"] > model["precision"] and real["recall"] > model["recall"] >= noise["recall"], (real, model, noise)


def test_test_prints_and_logs_the_sample_metrics_with_the_networks_checksum(
    trained_run: Path, cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture, shipped
) -> None:
    caplog.set_level(logging.INFO, logger="lightning.pytorch")  # where Lightning's console messages go
    cli = main(["test", *cli_args, f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", "--evaluation.iwae_samples=[]",
                "--trainer.limit_test_batches=8"])  # fmt: skip
    metrics = cli.trainer.callback_metrics
    printed = capsys.readouterr()
    names = [f"test/{name}" for name in SAMPLE_METRICS] + [f"test/recon_{name}" for name in SAMPLE_METRICS]
    for name in names:
        assert name in metrics and name in printed.out, name
    assert f"sha256 {shipped.sha256}" in caplog.text
    assert "1024 prior samples" in caplog.text  # as many as the 8 batches of test images
    (log_dir,) = (tmp_path / "lightning_logs").iterdir()
    assert set(names) <= set(read_events(log_dir).Tags()["scalars"])
    # test/recon_* compare the first 1,024 test images with their reconstructions
    module, _ = load_run(trained_run / "checkpoints" / "last.ckpt")
    images = cli.datamodule.splits["test"][0][:1024].float() / 255
    expected = scores(shipped, images, module.reconstruct(images))
    for name in SAMPLE_METRICS:
        assert torch.isclose(metrics[f"test/recon_{name}"].cpu(), torch.tensor(expected[name]), rtol=1e-3, atol=1e-3), name


def test_no_feature_network_means_no_sample_metrics(trained_run: Path, cli_args: list[str]) -> None:
    cli = main(["test", *cli_args, f"--ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", "--evaluation.iwae_samples=[]",
                "--evaluation.feature_network=null", "--trainer.limit_test_batches=2"])  # fmt: skip
    assert "test/psnr" in cli.trainer.callback_metrics
    assert not any("fid" in name for name in cli.trainer.callback_metrics)


def test_a_missing_feature_network_is_an_error_naming_the_option(cli_args: list[str], capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["test", *cli_args, "--evaluation.feature_network=nowhere/features.pt", "--allow_untrained=true"]) == 2
    err = capsys.readouterr().err
    assert "error: evaluation.feature_network: no weights at 'nowhere/features.pt'" in err and "train_features" in err
    assert "Traceback" not in err


def test_a_feature_network_of_another_image_shape_is_not_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_shapes_folder(tmp_path / "shapes", train_per_class=4, test_per_class=4, size=16)
    args = ["test", *cpu_run_args(tmp_path / "shapes", tmp_path), "--data.dataset=image_folder", "--data.val_size=2",
            "--evaluation.iwae_samples=[]", "--allow_untrained=true"]  # fmt: skip
    with pytest.warns(UserWarning, match=r"no sample metrics: the feature network mnist.pt was trained on mnist images of \(1, 28, 28\)"):
        cli = main(args)
    assert "test/psnr" in cli.trainer.callback_metrics and "test/fid" not in cli.trainer.callback_metrics


def test_fid_logged_during_training_falls_as_the_model_learns(cli_args: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture, shipped) -> None:
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    main(["fit", *cli_args, "--sample_quality.every_n_epochs=1", "--sample_quality.metrics=[fid, kid]", "--trainer.max_epochs=4",
          "--trainer.limit_train_batches=40", "--trainer.limit_val_batches=8", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"])  # fmt: skip
    (log_dir,) = (tmp_path / "lightning_logs").iterdir()
    fid, kid = read_scalars(log_dir)["val/fid"], read_scalars(log_dir)["val/kid"]
    assert len(fid) == 4 and fid[-1] < 0.95 * fid[0] and fid == sorted(fid, reverse=True), fid
    assert kid[-1] < kid[0], kid
    assert f"sha256 {shipped.sha256}" in caplog.text


def test_train_features_writes_weights_whose_record_and_accuracy_hold(tmp_path: Path) -> None:
    write_shapes_folder(tmp_path / "shapes", train_per_class=40, test_per_class=10, size=16)
    out = tmp_path / "features" / "shapes.pt"
    argv = ["--dataset", "image_folder", "--data_dir", str(tmp_path / "shapes"), "--out", str(out), "--epochs", "8",
            "--batch_size", "16", "--val_size", "4", "--accelerator", "cpu"]  # fmt: skip
    assert train_features(argv) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    loaded = load_feature_network(str(out))
    assert record["sha256"] == loaded.sha256 and loaded.image_shape == (3, 16, 16) and record["num_classes"] == 2
    assert record["test_accuracy"] > 0.9, record  # red discs against blue squares
    out.write_bytes(out.read_bytes() + b"\0")  # a changed file no longer matches its record
    with pytest.raises(UserError, match="SHA-256"):
        load_feature_network(str(out))


def test_train_features_refuses_a_dataset_without_class_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "features" / "celeba.pt"
    assert train_features(["--dataset", "celeba", "--data_dir", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: --dataset celeba has no class labels, and the feature network is a classifier" in err
    assert "--evaluation.feature_network" in err and TRACEBACK not in err
    assert not out.parent.exists()
