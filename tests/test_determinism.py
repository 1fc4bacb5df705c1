"""The same seed gives the same run, step by step; another seed a different one (``seed_everything``
and the seeded loader, through the real CLI on real MNIST)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.compare import find_callback
from helpers.recorders import StepLosses
from helpers.runs import short_fit_args, with_callback

from vae_lightning.cli import main


def test_the_same_seed_gives_identical_losses_and_another_seed_different_ones(
    reference_run: dict[str, Any], mnist_dir: Path, tmp_path: Path
) -> None:
    one_epoch = ["--trainer.max_epochs=1", with_callback(StepLosses)]
    same = main(short_fit_args(mnist_dir, tmp_path / "same", *one_epoch))
    other = main(short_fit_args(mnist_dir, tmp_path / "other", *one_epoch, "--seed_everything=1"))

    assert find_callback(same, StepLosses).losses == reference_run["losses"][:4]
    other_losses = find_callback(other, StepLosses).losses
    assert all(abs(a - b) > 1e-3 for a, b in zip(other_losses, reference_run["losses"]))
