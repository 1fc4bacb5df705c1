"""Shared fixtures: real MNIST from ../shared/data, CPU, no progress bar, runs under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import postgres_server, postgres_url  # noqa: F401 - fixtures: a PostgreSQL server, a database

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIGS / "default.yaml"
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


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


def cpu_run_args(data_dir: Path, save_dir: Path) -> list[str]:
    """The default config on one CPU with real MNIST, writing only under ``save_dir``;
    put a subcommand before it and overrides after it."""
    return [
        "--config",
        str(DEFAULT_CONFIG),
        f"--data.data_dir={data_dir}",
        "--data.download=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_model_summary=false",
    ]


def run_command(module: str, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a fresh process, as a user runs it from the repository root;
    it can import the test files' modules (callbacks named in ``--trainer.callbacks``)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT)])}
    environment.pop("VAE_LIGHTNING_TRACEBACK", None)
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


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
