"""The sweep's engine: an Optuna study whose trials are ordinary runs of the project's CLI, each
in its own TensorBoard version folder with its console output in that folder's ``log.txt``.

The study lives in Optuna's RDB storage (a SQLite file beside the runs unless ``--storage``
names another database), so any number of processes or machines can work on one study and a
stopped sweep resumes. Optuna does the bookkeeping: each grid point (setting x seed) that no
trial holds is queued with ``enqueue_trial`` and every worker ``optimize``s, Optuna handing each
queued trial to one worker (should two workers queue a point at the same moment, the later copy
is pruned untrained, ``duplicate_of``); a range search draws from TPE until ``n_trials`` have run.
A running trial beats a heartbeat; one silent for the grace period (a dead worker) is queued
again by ``RetryHeartbeatStaleTrialCallback``. Finished trials count, runs that failed for a
reason of their own (a NaN loss: ``fail_reason``) too; a trial cut off by Ctrl-C runs again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from optuna.exceptions import ExperimentalWarning
from optuna.storages import (
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
    fail_stale_trials,
)
from optuna.trial import FrozenTrial, Trial, TrialState
from optuna_integration import PyTorchLightningPruningCallback
from tqdm import tqdm

from vae_lightning.cli import main
from vae_lightning.experiments.spec import (
    Experiment,
    ExperimentError,
    Range,
    format_value,
    short_key,
)
from vae_lightning.runtime.errors import NonFiniteLossError, UserError

#: The trial's seed: a user attribute of every trial, and the grid's last parameter.
SEED = "seed"
#: Final validation metrics, as the study stores them (and the HParams tab shows: ``hp/<name>``).
METRICS = {"val_loss": "val/loss", "val_rl": "val/rl", "val_kl": "val/kl"}
#: How often a worker with nothing to start looks at the trials the others run (seconds).
POLL_S = 2.0


class TrainingFailed(RuntimeError):
    """A trial's run diverged (non-finite loss) or raised; the message is the reason recorded."""


def open_study(experiment: Experiment, fast: bool = False, storage: str | None = None, grace_period: int = 60) -> optuna.Study:
    """Create the experiment's study, or load it (how a sweep resumes and workers share one), by
    default in ``<run folder>/study.db``. A trial whose worker has been silent for
    ``grace_period`` seconds is queued again."""
    if storage is None:
        experiment.run_dir(fast).mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(experiment.run_dir(fast) / 'study.db').resolve()}"
    elif storage.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        storage = "postgresql+psycopg://" + storage.removeprefix("postgresql://")  # the postgres extra's driver
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: what the sweep relies on
                rdb = RDBStorage(
                    storage,
                    engine_kwargs={"connect_args": {"timeout": 120}} if storage.startswith("sqlite") else None,  # wait on a busy file
                    heartbeat_interval=max(1, grace_period // 6),
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
                )
            pruner = optuna.pruners.MedianPruner() if experiment.pruning else optuna.pruners.NopPruner()
            return optuna.create_study(study_name=experiment.run_dir(fast).name, storage=rdb, pruner=pruner, load_if_exists=True)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:  # workers started together race to create the tables and the study
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def is_result(trial: FrozenTrial) -> bool:
    """The trial settled its setting: finished, pruned by the pruner, or failed for a reason of its own."""
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and "duplicate_of" not in trial.user_attrs)


def holds(trial: FrozenTrial) -> bool:
    """The trial has, or will have, a result: it is queued, running or settled."""
    return trial.state in (TrialState.WAITING, TrialState.RUNNING) or is_result(trial)


def grid_point(trial: FrozenTrial) -> frozenset:
    """The trial's setting and seed; while it waits in the queue, those it was queued with."""
    return frozenset((trial.params or trial.system_attrs.get("fixed_params", {})).items())


def describe(trial: FrozenTrial) -> str:
    """``gradient_clip_val=0.5, seed 1``."""
    setting = [f"{short_key(k)}={format_value(v)}" for k, v in trial.params.items() if k != SEED]
    return ", ".join([*setting, f"seed {trial.user_attrs.get(SEED)}"])


def trial_version(number: int, setting: dict[str, Any], seed: int) -> str:
    """The trial's folder, readable in TensorBoard: ``trial_003_gradient_clip_val=0.5_seed=1``."""
    parts = [f"trial_{number:03d}", *(f"{short_key(k)}={format_value(v)}" for k, v in setting.items()), f"seed={seed}"]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(parts))


def trial_args(experiment: Experiment, setting: dict[str, Any], seed: int, fast: bool, extra_args: list[str], version: str) -> list[str]:
    """The trial's CLI arguments, later ones winning: base config, the experiment's overrides, the
    command line's extra options, the setting, then seed, epochs, batches and log folder."""
    def option(key: str, value: Any) -> str:
        return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"  # None -> null

    args = ["--config", str(experiment.base_config), *(option(k, v) for k, v in experiment.overrides.items()), *extra_args]
    args += [*(option(k, v) for k, v in setting.items()), f"--seed_everything={seed}"]
    limits = experiment.fast if fast else None
    args += [f"--trainer.max_epochs={limits.epochs if limits else experiment.epochs}"]
    if limits:
        args += [f"--trainer.limit_train_batches={limits.limit_train_batches}", f"--trainer.limit_val_batches={limits.limit_val_batches}"]
    return args + [trial_logger(experiment.run_dir(fast), version)]


def trial_logger(save_dir: Path | str, version: str) -> str:
    """The trial's TensorBoard logger, ``<save_dir>/trials/<version>``, without Lightning's
    placeholder ``hp_metric`` (the HParams tab shows the trial's ``hp/val_*``)."""
    init_args = {"save_dir": str(save_dir), "name": "trials", "version": version, "default_hp_metric": False}
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


class Sweep:
    """Runs an experiment's trials in this process, alongside any other workers on the study:
    a progress bar over the study's settled trials (all workers' counted) and a line per trial.

    Args:
        experiment: the experiment file's contents.
        study: the study to work on (see :func:`open_study`).
        fast: the reduced runs of ``experiment.fast``.
        extra_args: CLI options added to every trial (e.g. ``--data.data_dir=../shared/data``).
        max_trials: train at most this many trials in this process, then stop (``None``: all).
        verbose: show each trial's own output on the console, not only in its ``log.txt``.
    """

    def __init__(self, experiment: Experiment, study: optuna.Study, fast: bool = False, extra_args: list[str] | None = None,
                 max_trials: int | None = None, verbose: bool = False) -> None:
        self.experiment, self.study, self.fast, self.extra_args = experiment, study, fast, list(extra_args or [])
        self.max_trials, self.verbose, self.trained = max_trials, verbose, 0

    def check_config(self) -> None:
        """Refuse the sweep before any training when the CLI rejects its options: each varied option
        once with a value of each type it takes (``0.5`` and ``null`` for a clip value)."""
        first = {k: (int(v.low) if v.type == "int" else v.low) if isinstance(v, Range) else v[0] for k, v in self.experiment.vary.items()}
        others = [{**first, k: v} for k, values in self.experiment.vary.items() if isinstance(values, list)
                  for v in {type(v): v for v in reversed(values)}.values() if type(v) is not type(first[k])]
        for setting in [first, *others]:
            args = trial_args(self.experiment, setting, self.experiment.seeds[0], self.fast, self.extra_args, "check")
            with tempfile.TemporaryDirectory() as scratch:
                try:
                    with output_to(Path(scratch) / "log.txt"):
                        main([*args, trial_logger(scratch, "check")], run=False)
                except SystemExit:
                    detail = "\n".join((Path(scratch) / "log.txt").read_text().strip().splitlines()[-3:])
                    raise ExperimentError(f"the CLI refuses the options of this experiment ({' '.join(args)}):\n{detail}\n"
                                          "Fix the key or value in the experiment file (or the extra options).") from None
                except Exception:  # noqa: BLE001 - a setting that fails to build is that trial's failure
                    pass

    def enqueue_missing(self) -> None:
        """Queue each grid point that no trial holds: all of them in a new study, and cut-off ones."""
        held = {grid_point(t) for t in self.study.get_trials(deepcopy=False) if holds(t)}
        for point in ({**setting, SEED: seed} for setting in self.experiment.grid_settings() for seed in self.experiment.seeds):
            if frozenset(point.items()) not in held:
                self.study.enqueue_trial(point)

    def objective(self, trial: Trial) -> float:
        setting = {key: _suggest(trial, key, values) for key, values in self.experiment.vary.items()}
        if self.experiment.is_grid:
            seed = trial.suggest_categorical(SEED, self.experiment.seeds)
            for other in self.study.get_trials(deepcopy=False):
                if other.number < trial.number and holds(other) and grid_point(other) == frozenset(trial.params.items()):
                    trial.set_user_attr("duplicate_of", other.number)
                    raise optuna.TrialPruned(f"trial {other.number} holds this setting and seed")
        else:
            seed = self.experiment.seeds[trial.number % len(self.experiment.seeds)]
        version = trial_version(trial.number, setting, seed)
        run_dir = self.experiment.run_dir(self.fast) / "trials" / version
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, value in {SEED: seed, "run_dir": str(run_dir), "worker": f"{socket.gethostname()}:{os.getpid()}"}.items():
            trial.set_user_attr(name, value)
        callbacks: list[Callback] = [HParamsTab({**setting, SEED: seed})]
        if self.experiment.pruning:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val/loss"))
        self.trained += 1
        try:
            with contextlib.nullcontext() if self.verbose else output_to(run_dir / "log.txt"):
                args = trial_args(self.experiment, setting, seed, self.fast, self.extra_args, version)
                result = run_training(args, callbacks)
        except TrainingFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        for name, value in result.items():
            trial.set_user_attr(name, value)
        return result["val_loss"]

    def show(self, study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        """A line for ``trial`` (Optuna's callback after each of this worker's trials), then the bar."""
        if trial is not None and "duplicate_of" not in trial.user_attrs:
            outcome = f"val loss {trial.value:.2f}" if trial.state == TrialState.COMPLETE else trial.state.name.lower()
            if trial.state == TrialState.FAIL:
                outcome = f"failed: {trial.user_attrs.get('fail_reason')}"
            seconds = trial.duration.total_seconds() if trial.duration else 0.0
            self.bar.write(f"trial {trial.number}  {describe(trial)}  {outcome}  ({seconds:.0f} s)")
        trials = study.get_trials(deepcopy=False)
        self.bar.n = min(sum(map(is_result, trials)), self.bar.total)
        if complete := [t for t in trials if t.state == TrialState.COMPLETE]:
            best = min(complete, key=lambda t: t.value)
            self.bar.set_postfix_str(f"best {best.value:.2f} ({describe(best)})", refresh=False)
        self.bar.refresh()

    def run(self) -> None:
        """Work on the study until every trial is settled (or this worker's budget is spent)."""
        self.check_config()
        done = sum(map(is_result, self.study.get_trials(deepcopy=False)))  # the time left follows this run's pace
        self.bar = tqdm(total=self.experiment.total_trials(), initial=done, desc=self.study.study_name, unit="trial", smoothing=0,
                        disable=self.verbose, dynamic_ncols=True)
        try:
            while self.max_trials is None or self.trained < self.max_trials:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    fail_stale_trials(self.study)  # dead workers' trials go back to the queue
                if self.experiment.is_grid:
                    self.enqueue_missing()
                trials = self.study.get_trials(deepcopy=False)
                self.show(self.study)
                if any(t.state == TrialState.WAITING for t in trials) or sum(map(holds, trials)) < self.experiment.total_trials():
                    self.study.optimize(self.objective, n_trials=1, catch=(TrainingFailed,), callbacks=[self.show], gc_after_trial=True)
                elif any(t.state == TrialState.RUNNING for t in trials):
                    time.sleep(POLL_S)  # other workers' trials: wait for them, and rerun them if their worker dies
                else:
                    break
        finally:
            self.bar.close()


def _suggest(trial: Trial, key: str, values: list[Any] | Range) -> Any:
    if isinstance(values, list):
        return trial.suggest_categorical(key, values)
    if values.type == "int":
        return trial.suggest_int(key, int(values.low), int(values.high), step=int(values.step or 1), log=values.log)
    return trial.suggest_float(key, values.low, values.high, step=values.step, log=values.log)
