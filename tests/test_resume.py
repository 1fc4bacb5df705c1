"""Resuming, end to end through the real CLI on real MNIST (callbacks/resume.py, ExactResume, and
the loader's state): a run stopped by SIGTERM or Ctrl-C mid-epoch, or crashed in a later epoch,
resumes to the weights of the run that never stopped (the ``reference_run`` fixture);
docs/reliability.md lists every case."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.compare import assert_same_weights, file_digests, weights
from helpers.faults import CrashAt, SignalAt
from helpers.runs import short_fit_args, with_callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vae_lightning.cli import main
from vae_lightning.data import TensorBatchLoader
from vae_lightning.data.loader import PixelBatch


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
        main(short_fit_args(mnist_dir, tmp_path, with_callback(SignalAt, step=during_step, signum=int(signum))))
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
            main(short_fit_args(mnist_dir, tmp_path, twice))
    finally:
        signal.signal(signal.SIGINT, handler)
    assert exit_info.value.code == 1
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4  # the end of epoch 0 only


def test_a_crash_in_a_later_epoch_keeps_the_epoch_end_checkpoint_which_resumes_exactly(
    reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(short_fit_args(mnist_dir, tmp_path, with_callback(CrashAt, step=9)))
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8  # end of epoch 1

    cli = main(short_fit_args(mnist_dir, tmp_path, f"--ckpt_path={last}"))

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
