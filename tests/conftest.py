"""Shared fixtures: real MNIST from ../shared/data, CPU, no progress bar, runs under tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIGS / "default.yaml"
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI is driven through ``args=``; pytest's own flags must not look like CLI input."""
    monkeypatch.setattr(sys, "argv", ["vae_lightning"])


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The local MNIST copy; the tests that need it fail (not skip) where it is missing."""
    raw = DATA_DIR / "MNIST" / "raw"
    assert raw.is_dir(), f"real MNIST is expected in {raw} (see README, 'Data')"
    return DATA_DIR


@pytest.fixture
def cli_args(mnist_dir: Path, tmp_path: Path) -> list[str]:
    """Arguments that run the default config quickly on CPU, writing only under ``tmp_path``."""
    return [
        "--config",
        str(DEFAULT_CONFIG),
        f"--data.data_dir={mnist_dir}",
        "--data.download=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
