"""Shared fixtures: real MNIST from ../shared/data, CPU, no progress bar, runs under tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures: a PostgreSQL server, a database
from helpers.runs import DATA_DIR, cpu_run_args


@pytest.fixture(autouse=True, scope="session")
def _plain_argv() -> Iterator[None]:
    """The CLI is driven through ``args=``; pytest's own flags must not look like CLI input."""
    saved, sys.argv = sys.argv, ["vae_lightning"]
    yield
    sys.argv = saved


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The local MNIST copy; the tests that need it fail (not skip) where it is missing."""
    raw = DATA_DIR / "MNIST" / "raw"
    assert raw.is_dir(), f"real MNIST is expected in {raw} (see docs/training.md, 'Data')"
    return DATA_DIR


@pytest.fixture
def cli_args(mnist_dir: Path, tmp_path: Path) -> list[str]:
    """Arguments that run the default config quickly on CPU, writing only under ``tmp_path``."""
    return cpu_run_args(mnist_dir, tmp_path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """One short real training run with the default config (3 epochs of 150 batches), shared by
    every test that needs a trained model; returns its ``lightning_logs/version_0`` folder, which
    holds ``checkpoints/last.ckpt``, ``config.yaml`` and the TensorBoard events."""
    from vae_lightning.cli import main

    save_dir = tmp_path_factory.mktemp("trained_run")
    main(
        [
            "fit",
            *cpu_run_args(mnist_dir, save_dir),
            "--trainer.max_epochs=3",
            "--trainer.limit_train_batches=150",
            "--trainer.limit_val_batches=10",
        ]
    )
    (run_dir,) = (save_dir / "lightning_logs").iterdir()
    return run_dir


@pytest.fixture(scope="session")
def reference_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted short run (tests/conf/short_run.yaml, 12 optimizer steps) that the
    interrupted-and-resumed ones must reproduce: its final weights, validation loss, step losses
    and ``last.ckpt``."""
    from helpers.compare import find_callback, weights
    from helpers.recorders import StepLosses
    from helpers.runs import short_fit_args, with_callback

    from vae_lightning.cli import main

    save_dir = tmp_path_factory.mktemp("reference")
    cli = main(short_fit_args(mnist_dir, save_dir, with_callback(StepLosses)))
    return {
        "weights": weights(cli.model),
        "val_loss": float(cli.trainer.callback_metrics["val/loss"]),
        "losses": find_callback(cli, StepLosses).losses,
        "checkpoint": save_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt",
    }
