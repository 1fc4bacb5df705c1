"""One trial = one ordinary run of the project's CLI (``vae_lightning.cli.main``): the experiment's
base config, its fixed overrides, the trial's setting and seed, its own TensorBoard version
folder, and its console output kept in that folder's ``log.txt``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vae_lightning.cli import main
from vae_lightning.errors import NonFiniteLossError, UserError
from vae_lightning.experiments.spec import Experiment, ExperimentError, format_value, short_key

#: Folder, under an experiment's run folder, with one TensorBoard version folder per trial.
TRIALS_DIR = "trials"
#: Final validation metrics, as the study stores them and TensorBoard's HParams tab shows them.
METRICS = {"val_loss": "val/loss", "val_rl": "val/rl", "val_kl": "val/kl"}


class TrainingFailed(RuntimeError):
    """A trial's run diverged (non-finite loss) or raised; the message is the reason recorded."""


class TrialHyperparameters(Callback):
    """Logs a trial's varied options and seed as TensorBoard hyperparameters, beside its final
    ``hp/val_loss``, ``hp/val_rl`` and ``hp/val_kl``, so the HParams tab lines trials up.

    Args:
        hparams: option name -> value for this trial.
    """

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(self.hparams, {f"hp/{name}": math.nan for name in METRICS})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {f"hp/{name}": float(trainer.callback_metrics[tag]) for name, tag in METRICS.items() if tag in trainer.callback_metrics}
        if trainer.logger is not None and metrics:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)


def trial_version(number: int, setting: dict[str, Any], seed: int) -> str:
    """The trial's folder name, readable in TensorBoard: ``trial_003_gradient_clip_val=0.5_seed=1``."""
    parts = [f"trial_{number:03d}", *(f"{short_key(k)}={format_value(v)}" for k, v in setting.items()), f"seed={seed}"]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(parts))


def trial_args(experiment: Experiment, setting: dict[str, Any], seed: int, fast: bool, extra_args: list[str], version: str) -> list[str]:
    """The trial's CLI arguments, later ones winning: base config, the experiment's overrides, the
    command line's extra options, the setting, then seed, epochs, batches and log folder."""
    def option(key: str, value: Any) -> str:
        return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"  # None -> null

    args = ["--config", str(experiment.base_config), *(option(k, v) for k, v in experiment.overrides.items()), *extra_args]
    args += [option(k, v) for k, v in setting.items()]
    args += [f"--seed_everything={seed}", f"--trainer.max_epochs={experiment.fast.epochs if fast else experiment.epochs}"]
    if fast:
        args += [f"--trainer.limit_train_batches={experiment.fast.limit_train_batches}", f"--trainer.limit_val_batches={experiment.fast.limit_val_batches}"]
    logger = "--trainer.logger.init_args"
    return args + [f"{logger}.save_dir={experiment.run_dir(fast)}", f"{logger}.name={TRIALS_DIR}", f"{logger}.version={version}", f"{logger}.default_hp_metric=false"]


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send all this process prints meanwhile (Python's streams, logging, warnings, C libraries)
    to ``path``; each trial shows its warnings again, in its own log."""
    outer = (sys.stdout, sys.stderr)
    for stream in outer:
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            yield
        finally:
            for stream in outer:
                stream.flush()
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)


def check_args(args: list[str]) -> None:
    """Build one trial's configuration without training, so a misspelt key or wrongly typed value
    stops the sweep before it starts. Errors a run raises later are that trial's failure."""
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "log.txt"
        try:
            with output_to(log):
                main([*args, f"--trainer.logger.init_args.save_dir={scratch}"], run=False)
        except SystemExit as err:
            detail = "\n".join(log.read_text().strip().splitlines()[-3:]) or f"exit status {err.code}"
            raise ExperimentError(
                f"the CLI refuses the options of this experiment ({' '.join(args)}):\n{detail}\n"
                "Fix the key or value in the experiment file (or the extra command-line options)."
            ) from None
        except Exception:  # noqa: BLE001 - a setting that fails to build is that trial's failure
            pass


def run_training(args: list[str], callbacks: list[Callback]) -> dict[str, float]:
    """``fit`` through the project's CLI; returns the final validation metrics, epochs and wall
    time, or raises :class:`TrainingFailed` when the loss stops being finite or the run raises."""
    stop_on_nan = EarlyStopping(monitor="val/loss", patience=10**9, check_finite=True, strict=False)
    start = time.perf_counter()
    try:
        trainer = main(["fit", *args], trainer_defaults={"callbacks": [stop_on_nan, *callbacks]}).trainer
    except (KeyboardInterrupt, SIGTERMException) as err:
        # cut off, not failed: the trial is left without a reason and runs again on resume
        raise KeyboardInterrupt(f"trial interrupted ({type(err).__name__})") from err
    except SystemExit as err:
        raise TrainingFailed(f"the CLI refused the trial's options (exit status {err.code}; see its log.txt)") from err
    except optuna.TrialPruned:
        raise
    except NonFiniteLossError as err:
        raise TrainingFailed(str(err)) from err
    except UserError as err:  # missing or corrupt data, ...: every trial would fail alike
        raise ExperimentError(str(err)) from err
    except Exception as err:
        raise TrainingFailed(f"{type(err).__name__}: {err}") from err
    metrics = {name: float(trainer.callback_metrics[tag]) for name, tag in METRICS.items() if tag in trainer.callback_metrics}
    if stop_on_nan.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:
        raise TrainingFailed(f"epoch {trainer.current_epoch}: {stop_on_nan.stopping_reason_message}")
    if "val_loss" not in metrics or not all(map(math.isfinite, metrics.values())):
        raise TrainingFailed(f"no finite val/loss at the end: {metrics}")
    return {**metrics, "epochs": trainer.current_epoch, "wall_time_s": time.perf_counter() - start}
