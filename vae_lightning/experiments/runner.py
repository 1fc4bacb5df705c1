"""One trial = one ordinary run of the project's CLI (``vae_lightning.cli.main``), with the
experiment's base config, its fixed overrides, the trial's setting and seed, and its own
TensorBoard version folder. This module turns a setting into CLI arguments and a finished
run into the numbers the study stores."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vae_lightning.cli import main
from vae_lightning.experiments.spec import Experiment, ExperimentError, GridValue, format_value, short_key

#: Folder, under an experiment's run folder, that holds one TensorBoard version folder per trial.
TRIALS_DIR = "trials"
#: Scalars the HParams tab shows beside each trial's options (final validation metrics).
HPARAM_METRICS = {"hp/val_loss": "val/loss", "hp/val_rl": "val/rl", "hp/val_kl": "val/kl"}


class TrainingFailed(RuntimeError):
    """A trial's run diverged (non-finite loss) or raised; the message is the reason recorded."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run leaves in the study: final validation metrics, epochs, wall time."""

    val_loss: float
    val_rl: float
    val_kl: float
    epochs: int
    wall_time_s: float
    run_dir: str


class TrialHyperparameters(Callback):
    """Logs a trial's varied options (and seed) as TensorBoard hyperparameters, so the HParams tab
    lines trials up by setting; the final validation metrics fill its ``hp/...`` columns.

    Args:
        hparams: option name -> value for this trial.
    """

    def __init__(self, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.hparams = hparams

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(self.hparams, {name: float("nan") for name in HPARAM_METRICS})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {name: float(trainer.callback_metrics[tag]) for name, tag in HPARAM_METRICS.items() if tag in trainer.callback_metrics}
        if trainer.logger is not None and metrics:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)


def cli_value(value: Any) -> str:
    """A YAML/JSON-style command-line value: ``None`` -> ``null``, ``True`` -> ``true``."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def trial_version(number: int, setting: dict[str, GridValue], seed: int) -> str:
    """The trial's TensorBoard version folder, readable in TensorBoard's run list:
    ``trial_003_gradient_clip_val=0.5_seed=1``."""
    parts = [f"{short_key(key)}={format_value(value)}" for key, value in setting.items()]
    name = "_".join([f"trial_{number:03d}", *parts, f"seed={seed}"])
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)


def trial_args(
    experiment: Experiment,
    setting: dict[str, Any],
    seed: int,
    fast: bool,
    extra_args: list[str],
    save_dir: Path,
    version: str,
) -> list[str]:
    """The CLI arguments of one trial, later ones winning: base config, the experiment's fixed
    overrides, the command line's extra overrides, then the trial's setting, seed, epochs and
    log folder."""
    args = ["--config", str(experiment.base_config)]
    args += [f"--{key}={cli_value(value)}" for key, value in experiment.overrides.items()]
    args += list(extra_args)
    args += [f"--{key}={cli_value(value)}" for key, value in setting.items()]
    epochs = experiment.fast.epochs if fast else experiment.epochs
    args += [f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}"]
    if fast:
        args += [
            f"--trainer.limit_train_batches={experiment.fast.limit_train_batches}",
            f"--trainer.limit_val_batches={experiment.fast.limit_val_batches}",
        ]
    args += [
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.logger.init_args.name={TRIALS_DIR}",
        f"--trainer.logger.init_args.version={version}",
        "--trainer.logger.init_args.default_hp_metric=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    return args


def check_args(args: list[str]) -> None:
    """Parse (and build) one trial's configuration without training, turning jsonargparse's
    refusal of a misspelt key or wrongly typed value into an :class:`ExperimentError`. Errors a
    run itself raises later are the trial's own failure, not the experiment's."""
    stderr = io.StringIO()
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stderr(stderr):
        try:
            main([*args, f"--trainer.logger.init_args.save_dir={scratch}"], run=False)
        except SystemExit as err:
            message = stderr.getvalue().strip().splitlines()
            detail = "\n".join(message[-3:]) if message else f"exit status {err.code}"
            raise ExperimentError(
                f"the CLI refuses the options of this experiment ({' '.join(args)}):\n{detail}\n"
                "Fix the key or value in the experiment file (or the extra command-line overrides)."
            ) from None
        except Exception:  # noqa: BLE001 - a setting that fails to build is that trial's failure
            pass


def run_training(args: list[str], callbacks: list[Callback]) -> RunResult:
    """Run ``fit`` through the project's CLI; raise :class:`TrainingFailed` with the reason when
    the loss stops being finite or the run raises."""
    stop_on_nan = EarlyStopping(monitor="val/loss", mode="min", patience=10**9, check_finite=True, strict=False)
    start = time.perf_counter()
    try:
        cli = main(["fit", *args], trainer_defaults={"callbacks": [stop_on_nan, *callbacks]})
    except optuna.TrialPruned:
        raise
    except (KeyboardInterrupt, SIGTERMException) as err:
        # Ctrl-C or SIGTERM: the trial did not fail, it was cut off; Optuna records it as
        # failed without a reason and the next `run` queues it again.
        raise KeyboardInterrupt(f"trial interrupted ({type(err).__name__})") from err
    except SystemExit as err:  # jsonargparse refused this setting's options
        raise TrainingFailed(f"the CLI refused the trial's options (exit status {err.code}; its message is in the log)") from err
    except Exception as err:
        raise TrainingFailed(f"{type(err).__name__}: {err}") from err
    wall_time = time.perf_counter() - start
    trainer = cli.trainer
    metrics = {tag: float(trainer.callback_metrics[tag]) for tag in ("val/loss", "val/rl", "val/kl") if tag in trainer.callback_metrics}
    if stop_on_nan.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:
        raise TrainingFailed(f"epoch {trainer.current_epoch}: {stop_on_nan.stopping_reason_message}")
    if "val/loss" not in metrics:
        raise TrainingFailed("the run logged no val/loss (no validation epoch ran)")
    if not all(math.isfinite(value) for value in metrics.values()):
        raise TrainingFailed(f"non-finite validation metrics at the end: {metrics}")
    return RunResult(
        val_loss=metrics["val/loss"],
        val_rl=metrics.get("val/rl", math.nan),
        val_kl=metrics.get("val/kl", math.nan),
        epochs=trainer.current_epoch,
        wall_time_s=wall_time,
        run_dir=str(trainer.logger.log_dir) if trainer.logger is not None else "",
    )
