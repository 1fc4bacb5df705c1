"""One trial as an ordinary run of the project's CLI: its arguments (base config, overrides, extra
options, the setting, seed and epochs), its TensorBoard folder, its console output in that
folder's ``log.txt``, and the final validation metrics it returns."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vae_lightning.cli import main
from vae_lightning.experiments.spec import Experiment, ExperimentError, format_value, short_key
from vae_lightning.runtime.errors import NonFiniteLossError, UserError

#: Final validation metrics, as the study stores them (and the HParams tab shows: ``hp/<name>``).
METRICS = {"val_loss": "val/loss", "val_rl": "val/rl", "val_kl": "val/kl"}


class TrainingFailed(RuntimeError):
    """A trial's run diverged (non-finite loss) or raised; the message is the reason recorded."""


def trial_version(number: int, setting: dict[str, Any], seed: int) -> str:
    """The trial's folder, readable in TensorBoard: ``trial_003_gradient_clip_val=0.5_seed=1``."""
    parts = [f"trial_{number:03d}", *(f"{short_key(k)}={format_value(v)}" for k, v in setting.items()), f"seed={seed}"]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(parts))


def trial_args(experiment: Experiment, setting: dict[str, Any], seed: int, fast: bool, extra_args: list[str], version: str,
               folder: str = "trials") -> list[str]:
    """The trial's CLI arguments, later ones winning: base config, the experiment's overrides, the
    command line's extra options, the setting, then seed, epochs, batches and log folder
    (``<run folder>/<folder>/<version>``)."""
    def option(key: str, value: Any) -> str:
        return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"  # None -> null

    args = ["--config", str(experiment.base_config), *(option(k, v) for k, v in experiment.overrides.items()), *extra_args]
    args += [*(option(k, v) for k, v in setting.items()), f"--seed_everything={seed}"]
    limits = experiment.fast if fast else None
    args += [f"--trainer.max_epochs={limits.epochs if limits else experiment.epochs}"]
    if limits:
        args += [f"--trainer.limit_train_batches={limits.limit_train_batches}", f"--trainer.limit_val_batches={limits.limit_val_batches}"]
    return args + [trial_logger(experiment.run_dir(fast), version, folder)]


def trial_logger(save_dir: Path | str, version: str, folder: str = "trials") -> str:
    """The trial's TensorBoard logger, ``<save_dir>/<folder>/<version>``, without Lightning's
    placeholder ``hp_metric`` (the HParams tab shows the trial's ``hp/val_*``)."""
    init_args = {"save_dir": str(save_dir), "name": folder, "version": version, "default_hp_metric": False}
    return f"--trainer.logger={json.dumps({'class_path': 'lightning.pytorch.loggers.TensorBoardLogger', 'init_args': init_args})}"


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send all this process prints meanwhile (Python's streams, logging, warnings, C libraries)
    to ``path``; each trial shows its warnings again, in its own log."""
    outer, saved = (sys.stdout, sys.stderr), [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
        try:
            for fd, stream in zip((1, 2), outer):
                stream.flush()
                os.dup2(log.fileno(), fd)
            yield
        finally:
            for fd, stream, old in zip((1, 2), outer, saved):
                stream.flush()
                os.dup2(old, fd)
                os.close(old)


class HParamsTab(Callback):
    """Shows a trial's options and seed in TensorBoard's HParams tab, beside its final ``hp/val_*``."""

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(self.hparams, {f"hp/{name}": math.nan for name in METRICS})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {f"hp/{name}": float(trainer.callback_metrics[tag]) for name, tag in METRICS.items() if tag in trainer.callback_metrics}
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)


def run_training(args: list[str], callbacks: list[Callback]) -> dict[str, float]:
    """``fit`` through the project's CLI; returns the final validation metrics, epochs and wall
    time, or raises :class:`TrainingFailed` when the loss stops being finite or the run raises."""
    start = time.perf_counter()
    try:
        trainer = main(["fit", *args], trainer_defaults={"callbacks": callbacks}).trainer
    except (KeyboardInterrupt, SIGTERMException) as err:  # cut off, not failed: it runs again on resume
        raise KeyboardInterrupt(f"trial interrupted ({type(err).__name__})") from err
    except optuna.TrialPruned:
        raise
    except UserError as err:  # a diverged run is the trial's result; missing data would fail every trial
        raise (TrainingFailed(str(err)) if isinstance(err, NonFiniteLossError) else ExperimentError(str(err))) from err
    except SystemExit as err:
        raise TrainingFailed(f"the CLI refused the trial's options (exit status {err.code}; see its log.txt)") from err
    except Exception as err:
        raise TrainingFailed(f"{type(err).__name__}: {err}") from err
    metrics = {name: float(trainer.callback_metrics[tag]) for name, tag in METRICS.items() if tag in trainer.callback_metrics}
    if "val_loss" not in metrics or not all(map(math.isfinite, metrics.values())):
        raise TrainingFailed(f"no finite validation loss at the end: {metrics}")
    return {**metrics, "epochs": trainer.current_epoch, "wall_time_s": time.perf_counter() - start}
