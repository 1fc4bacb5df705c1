"""Sweeps for the tests: an experiment file over the default config on real MNIST, its study, the
grid points its trials settled and the rows of its report; one torch thread per tiny trial."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from helpers.runs import DEFAULT_CONFIG
from vae_lightning.experiments import load_experiment
from vae_lightning.experiments.study import is_result, open_study

CLIP = "trainer.gradient_clip_val"


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Trials here are tiny; one thread avoids thread contention on a shared 2-core machine.
    A test module that imports it runs each of its tests so."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def write_experiment(tmp_path: Path, mnist_dir: Path, vary: dict, seeds: list[int], name: str = "sweep", **extra) -> Path:
    """An experiment file over the default config, its runs under ``tmp_path``, fast = 2 batches."""
    spec = {
        "name": name,
        "title": "Test sweep",
        "base_config": str(DEFAULT_CONFIG),
        "overrides": {
            "data.data_dir": str(mnist_dir),
            "data.download": False,
            "trainer.num_sanity_val_steps": 0,
            "trainer.accelerator": "cpu",
            "trainer.devices": 1,
            **extra.pop("overrides", {}),
        },
        "vary": vary,
        "seeds": seeds,
        "epochs": 3,
        "output_dir": str(tmp_path / "runs"),
        "fast": {"epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def load_study(experiment_file: Path) -> optuna.Study:
    """The stored study of a ``--fast`` sweep of ``experiment_file``."""
    return open_study(load_experiment(experiment_file), fast=True)


def grid_points(study: optuna.Study, key: str = CLIP) -> Counter:
    """How many trials settled each (value, seed), as the trials record them."""
    return Counter((t.user_attrs["setting"][key], t.user_attrs["seed"]) for t in study.get_trials() if is_result(t))


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of a report's table rows (the header rows left out)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| trainer") and not line.startswith("| model")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
