"""Reliability, end to end through the real CLI on real MNIST: runs survive Ctrl-C, SIGTERM and
crashes and resume exactly; the same seed gives the same run; a diverging loss, a corrupt data
file, a bad config value or a bad checkpoint each stop with an error naming the problem and the
fix, before any work is lost. docs/reliability.md lists every case."""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.recorders import StepLosses
from helpers.runs import conf_args, cpu_run_args, with_callback
from lightning.pytorch import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vae_lightning.callbacks import NonFiniteLossGuard
from vae_lightning.cli import main
from vae_lightning.data import ImageDataModule, TensorBatchLoader
from vae_lightning.data.integrity import _md5, verify_raw_files
from vae_lightning.data.loader import PixelBatch
from vae_lightning.models import MLPVAE
from vae_lightning.module import VAEModule
from vae_lightning.runtime.errors import (
    CheckpointError,
    CorruptDataError,
    NonFiniteLossError,
)

#: 3 epochs of 4 batches of 32 (12 optimizer steps), two validation batches per epoch.
SHORT_RUN = conf_args("short_run")


def fit_args(mnist_dir: Path, save_dir: Path, *extra: str) -> list[str]:
    """``fit`` with the default config on CPU, writing under ``save_dir``."""
    return ["fit", *cpu_run_args(mnist_dir, save_dir), *extra]



class SignalAt(Callback):
    """Sends ``signum`` to this process (a real signal), ``times`` times, while optimizer step
    ``step`` is being computed; after one signal the run is to stop once that step is done."""

    def __init__(self, step: int, signum: int, times: int = 1) -> None:
        self.step, self.signum, self.times = step, signum, times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


class CrashAt(Callback):
    """Raises an ordinary error at the start of optimizer step ``step`` (a bug, an OOM...)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class PoisonBatchAt(Callback):
    """Turns the batch of step ``step`` into NaNs, and keeps the weights before and after it."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.weights: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in (self.step, self.step + 1):
            self.weights[trainer.global_step] = torch.nn.utils.parameters_to_vector(pl_module.parameters()).clone()
        if trainer.global_step == self.step:
            batch[0].fill_(float("nan"))


def find_callback(cli, kind: type) -> Any:
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, kind)]
    return callback


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)


def file_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def reference_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted short run the interrupted-and-resumed ones must reproduce."""
    save_dir = tmp_path_factory.mktemp("reference")
    cli = main(fit_args(mnist_dir, save_dir, *SHORT_RUN, with_callback(StepLosses)))
    return {
        "weights": weights(cli.model),
        "val_loss": float(cli.trainer.callback_metrics["val/loss"]),
        "losses": find_callback(cli, StepLosses).losses,
        "checkpoint": save_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt",
    }


# --- 1. Resume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "during_step", "stopped_at", "position"),
    [
        (signal.SIGTERM, 6, 6, {"epoch": 1, "batches_served": 2}),
        (signal.SIGINT, 6, 6, {"epoch": 1, "batches_served": 2}),
        # during the epoch's last batch: its validation and epoch-end checkpoint first, then one more batch
        (signal.SIGTERM, 4, 5, {"epoch": 1, "batches_served": 1}),
    ],
    ids=["SIGTERM", "Ctrl-C", "SIGTERM in an epoch's last batch"],
)
def test_a_signalled_run_saves_last_ckpt_mid_epoch_and_resumes_to_the_same_weights(
    signum: int, during_step: int, stopped_at: int, position: dict[str, int],
    reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path,
) -> None:
    with pytest.raises(SIGTERMException):  # Lightning's clean stop between batches
        main(fit_args(mnist_dir, tmp_path, *SHORT_RUN, with_callback(SignalAt, step=during_step, signum=int(signum))))
    run_dir = tmp_path / "lightning_logs" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == stopped_at  # stopped between two batches of epoch 1
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [position]
    before = file_digests(run_dir)

    cli = main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path=last"])

    assert cli.trainer.global_step == 12
    assert_same_weights(weights(cli.model), reference_run["weights"])
    assert float(cli.trainer.callback_metrics["val/loss"]) == pytest.approx(reference_run["val_loss"], abs=1e-5)
    assert file_digests(run_dir) == before  # the stopped run's files are untouched
    assert (tmp_path / "lightning_logs" / "version_1" / "config.yaml").is_file()  # the resumed run has its own


def test_a_second_ctrl_c_stops_at_once_and_saves_nothing_mid_step(mnist_dir: Path, tmp_path: Path) -> None:
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_info:  # Lightning's exit after a KeyboardInterrupt
            twice = with_callback(SignalAt, step=6, signum=int(signal.SIGINT), times=2)
            main(fit_args(mnist_dir, tmp_path, *SHORT_RUN, twice))
    finally:
        signal.signal(signal.SIGINT, handler)
    assert exit_info.value.code == 1
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4  # the end of epoch 0 only


def test_a_crash_in_a_later_epoch_keeps_the_epoch_end_checkpoint_which_resumes_exactly(
    reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(fit_args(mnist_dir, tmp_path, *SHORT_RUN, with_callback(CrashAt, step=9)))
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8  # end of epoch 1

    cli = main(fit_args(mnist_dir, tmp_path, *SHORT_RUN, f"--ckpt_path={last}"))

    assert_same_weights(weights(cli.model), reference_run["weights"])


def small_loader(num_images: int, batch_size: int, **options: Any) -> TensorBatchLoader:
    """A loader over ``num_images`` one-pixel uint8 images whose label is their index."""
    images = torch.arange(num_images, dtype=torch.uint8).view(num_images, 1, 1, 1)
    return TensorBatchLoader(images, torch.arange(num_images), batch_size, pixels=PixelBatch(), **options)


def test_the_loader_resumes_mid_epoch_at_the_next_batch_and_starts_later_epochs_afresh() -> None:
    first = small_loader(20, 3, shuffle=True, seed=5)
    first.sampler.set_epoch(2)
    batches = [y.tolist() for _, y in first]
    partial = iter(first)
    next(partial), next(partial)
    state = first.state_dict()
    assert state == {"epoch": 2, "batches_served": 2}

    resumed = small_loader(20, 3, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)  # Lightning sets the epoch before the first batch
    assert [y.tolist() for _, y in resumed] == batches[2:]
    resumed.sampler.set_epoch(3)
    assert len(list(resumed)) == len(batches)  # the next epoch is whole

    after_epoch_end = small_loader(20, 3, shuffle=True, seed=5)
    after_epoch_end.load_state_dict({"epoch": 2, "batches_served": len(batches)})
    after_epoch_end.sampler.set_epoch(3)
    assert len(list(after_epoch_end)) == len(batches)


# --- 2. Determinism --------------------------------------------------------------------------


def test_the_same_seed_gives_identical_losses_and_another_seed_different_ones(
    reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path
) -> None:
    one_epoch = [*SHORT_RUN, "--trainer.max_epochs=1", with_callback(StepLosses)]
    same = main(fit_args(mnist_dir, tmp_path / "same", *one_epoch))
    other = main(fit_args(mnist_dir, tmp_path / "other", *one_epoch, "--seed_everything=1"))

    assert find_callback(same, StepLosses).losses == reference_run["losses"][:4]
    other_losses = find_callback(other, StepLosses).losses
    assert all(abs(a - b) > 1e-3 for a, b in zip(other_losses, reference_run["losses"]))


# --- 3. Non-finite loss ----------------------------------------------------------------------


def test_a_diverging_run_stops_naming_the_step_and_cause_and_keeps_the_last_good_checkpoint(
    mnist_dir: Path, tmp_path: Path
) -> None:
    diverging = ["--model.optimizer.init_args.lr=1.0", "--trainer.gradient_clip_val=null"]
    with pytest.raises(NonFiniteLossError) as error:
        main(fit_args(mnist_dir, tmp_path, *SHORT_RUN, "--trainer.max_epochs=4", *diverging))
    message = str(error.value)
    assert "non-finite training loss (nan) at step 5 (epoch 1, batch 1)" in message
    assert "learning rate is too high (lr = 1.0" in message and "gradient clipping is off" in message

    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert f"the last good checkpoint, {checkpoints / 'last.ckpt'}, is kept" in message
    for path in checkpoints.iterdir():  # nothing non-finite reached the disk
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint["global_step"] == 4
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_skip_mode_drops_a_non_finite_step_with_a_warning_and_trains_on(mnist_dir: Path, tmp_path: Path) -> None:
    callbacks = [
        {"class_path": "vae_lightning.callbacks.NonFiniteLossGuard", "init_args": {"action": "skip"}},
        {"class_path": f"{__name__}.PoisonBatchAt", "init_args": {"step": 2}},
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(fit_args(mnist_dir, tmp_path, *SHORT_RUN, f"--trainer.callbacks={json.dumps(callbacks)}"))
    assert any("non-finite training loss (nan) at step 2" in str(w.message) for w in caught)
    assert find_callback(cli, NonFiniteLossGuard).skipped_steps == [2]
    poison = find_callback(cli, PoisonBatchAt)
    assert torch.equal(poison.weights[2], poison.weights[3])  # the bad step changed nothing
    assert cli.trainer.global_step == 12
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


# --- 4. Bad data -----------------------------------------------------------------------------


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


# --- 5. Bad config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        ("--model.network.init_args.latent_dim=0", "latent_dim must be positive, got 0"),
        ("--model.network.init_args.hidden_dims=[]", "hidden_dims must be a non-empty list"),
        ("--model.mc_samples=0", "mc_samples must be at least 1, got 0"),
        ("--trainer.gradient_clip_algorithm=sometimes", "`gradient_clip_algorithm` sometimes is invalid"),
        ("--model.optimizer.init_args.lr=-0.1", "model.optimizer: Invalid learning rate: -0.1"),
        ("--model.latent_size=3", "latent_size"),
    ],
)
def test_an_invalid_value_is_refused_before_training_naming_the_key(
    argument: str, named: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(mnist_dir, tmp_path, argument))
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()  # refused before any run folder was made


# --- 6. Bad checkpoints ----------------------------------------------------------------------


BAD_CHECKPOINTS = ["missing", "not a checkpoint", "a few bytes", "pickled object", "other architecture"]


def bad_checkpoints(tmp_path: Path, reference_checkpoint: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (path, extra CLI arguments, what the error must say)."""
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    few_bytes = tmp_path / "few_bytes.ckpt"
    few_bytes.write_bytes(b"hi\n")  # the weights-only unpickler fails on these with a KeyError
    pickled_object = tmp_path / "object.ckpt"
    torch.save({"state_dict": argparse.Namespace(x=1)}, pickled_object)  # loading it would run pickled code
    weights_only = tmp_path / "weights.ckpt"  # a checkpoint without its settings, so the CLI cannot take them
    checkpoint = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    torch.save({key: value for key, value in checkpoint.items() if key != "hyper_parameters"}, weights_only)
    return {
        "missing": (tmp_path / "missing.ckpt", [], "missing.ckpt does not exist"),
        "not a checkpoint": (text, [], "is not a checkpoint that can be loaded safely"),
        "a few bytes": (few_bytes, [], "is not a checkpoint that can be loaded safely (KeyError)"),
        "pickled object": (pickled_object, [], "is not a checkpoint that can be loaded safely"),
        "other architecture": (
            weights_only,
            ["--model.network.init_args.latent_dim=3"],
            "is for a different architecture than the configured model "
            "(network.mu.weight: (2, 256) in the checkpoint, (3, 256) here",
        ),
    }


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_refused_by_the_cli_before_the_run_starts(
    case: str, reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, extra, expected = bad_checkpoints(tmp_path, reference_run["checkpoint"])[case]
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(mnist_dir, tmp_path, *extra, f"--ckpt_path={path}"))
    assert exit_info.value.code == 2
    assert expected in " ".join(capsys.readouterr().err.split())  # the usage error wraps long lines
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_refused_by_load_from_checkpoint(
    case: str, reference_run: dict[str, Any], tmp_path: Path
) -> None:
    path, extra, _ = bad_checkpoints(tmp_path, reference_run["checkpoint"])[case]
    overrides = {"network": MLPVAE(latent_dim=3)} if extra else {}
    with pytest.raises(CheckpointError, match="does not exist|cannot|not a checkpoint|does not fit"):
        VAEModule.load_from_checkpoint(path, map_location="cpu", **overrides)


def test_the_cli_takes_the_model_settings_from_the_checkpoint_and_says_which_differ(
    reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path
) -> None:
    checkpoint = reference_run["checkpoint"]
    with pytest.warns(UserWarning, match=r"replace the configured ones: network.latent_dim=2 \(configured: 3\)"):
        cli = main(
            fit_args(mnist_dir, tmp_path, *SHORT_RUN, "--model.network.init_args.latent_dim=3", f"--ckpt_path={checkpoint}")
        )
    assert cli.model.network.latent_dim == 2
    assert_same_weights(weights(cli.model), reference_run["weights"])  # already at max_epochs: nothing to do


def test_a_good_checkpoint_loads_with_weights_only(reference_run: dict[str, Any]) -> None:
    model = VAEModule.load_from_checkpoint(reference_run["checkpoint"], map_location="cpu")
    assert_same_weights(weights(model), reference_run["weights"])


# --- 7. Soak ---------------------------------------------------------------------------------


class ResidentMemory(Callback):
    """At the end of every training epoch: this process's resident set size (MB), and, after a
    garbage collection, the live Python objects and the live tensors (count and MB)."""

    def __init__(self) -> None:
        self.rss_mb: list[float] = []
        self.objects: list[int] = []
        self.tensors: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        gc.collect()
        objects = gc.get_objects()
        tensors = [o for o in objects if torch.is_tensor(o)]
        self.objects.append(len(objects))
        self.tensors.append((len(tensors), sum(t.numel() * t.element_size() for t in tensors) / 2**20))
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        self.rss_mb.append(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)


@pytest.mark.slow
def test_memory_stays_flat_over_a_30_epoch_run(mnist_dir: Path, tmp_path: Path) -> None:
    """30 epochs of 20 batches with every default callback each epoch (image grids, gradient and
    latent diagnostics, checkpoints): after the first epochs' one-off imports and allocator
    warm-up, nothing accumulates."""
    cli = main(
        fit_args(
            mnist_dir,
            tmp_path,
            "--trainer.max_epochs=30",
            "--trainer.limit_train_batches=20",
            "--trainer.limit_val_batches=5",
            "--trainer.log_every_n_steps=5",
            with_callback(ResidentMemory),
        )
    )
    memory = find_callback(cli, ResidentMemory)
    print("RSS per epoch (MB):", " ".join(f"{r:.0f}" for r in memory.rss_mb))
    print("live tensors (count, MB):", memory.tensors[4], "->", memory.tensors[-1])
    print("Python objects:", memory.objects[4], "->", memory.objects[-1])
    assert memory.tensors[-1] == memory.tensors[4]  # no tensor kept from epoch to epoch
    assert abs(memory.objects[-1] - memory.objects[4]) < 1000
    assert max(memory.rss_mb[5:]) - memory.rss_mb[4] < 100  # MB: allocator noise, no trend
