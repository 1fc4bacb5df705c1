"""The non-finite loss guard (callbacks/guards.py) on real runs: a diverging run stops naming the
step and the likely cause and keeps its last good checkpoint; ``action: skip`` drops the bad step."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from helpers.compare import find_callback
from helpers.faults import PoisonBatchAt
from helpers.runs import short_fit_args

from vae_lightning.callbacks import NonFiniteLossGuard
from vae_lightning.cli import main
from vae_lightning.runtime.errors import NonFiniteLossError


def test_a_diverging_run_stops_naming_the_step_and_cause_and_keeps_the_last_good_checkpoint(
    mnist_dir: Path, tmp_path: Path
) -> None:
    diverging = ["--model.optimizer.init_args.lr=1.0", "--trainer.gradient_clip_val=null"]
    with pytest.raises(NonFiniteLossError) as error:
        main(short_fit_args(mnist_dir, tmp_path, "--trainer.max_epochs=4", *diverging))
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
        {"class_path": f"{PoisonBatchAt.__module__}.PoisonBatchAt", "init_args": {"step": 2}},
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(short_fit_args(mnist_dir, tmp_path, f"--trainer.callbacks={json.dumps(callbacks)}"))
    assert any("non-finite training loss (nan) at step 2" in str(w.message) for w in caught)
    assert find_callback(cli, NonFiniteLossGuard).skipped_steps == [2]
    poison = find_callback(cli, PoisonBatchAt)
    assert torch.equal(poison.weights[2], poison.weights[3])  # the bad step changed nothing
    assert cli.trainer.global_step == 12
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
