"""Checkpoints (runtime/checkpoints.py) through the real CLI and ``load_from_checkpoint``: a missing,
unreadable, unsafe or mismatched checkpoint is refused before the run starts, naming the problem;
a good one loads with ``weights_only`` and its model settings replace the configured ones."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.compare import assert_same_weights, weights
from helpers.runs import cpu_run_args, short_fit_args

from vae_lightning.cli import main
from vae_lightning.models import MLPVAE
from vae_lightning.module import VAEModule
from vae_lightning.runtime.errors import CheckpointError

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
        main(["fit", *cpu_run_args(mnist_dir, tmp_path), *extra, f"--ckpt_path={path}"])
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
        cli = main(short_fit_args(mnist_dir, tmp_path, "--model.network.init_args.latent_dim=3", f"--ckpt_path={checkpoint}"))
    assert cli.model.network.latent_dim == 2
    assert_same_weights(weights(cli.model), reference_run["weights"])  # already at max_epochs: nothing to do


def test_a_good_checkpoint_loads_with_weights_only(reference_run: dict[str, Any]) -> None:
    model = VAEModule.load_from_checkpoint(reference_run["checkpoint"], map_location="cpu")
    assert_same_weights(weights(model), reference_run["weights"])
