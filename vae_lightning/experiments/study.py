"""The sweep's engine: an Optuna study whose trials are ordinary runs of the project's CLI
(trials.py), in the study's storage (storage.py), each recording what it was run with (record.py).

Optuna does the bookkeeping: each grid point (setting x seed) that no trial holds is queued with
``enqueue_trial`` (its point and context in the trial's user attributes) and every worker
``optimize``s, Optuna handing each queued trial to one worker (should two workers queue a point
at the same moment, the later copy is pruned untrained, ``duplicate_of``; a queued point since
taken out of the grid is pruned untrained too, ``not_in_grid``, and so is a worker's trial that
finds the queue emptied by another worker between its look and its start, ``nothing_queued``); a range search draws from TPE
until ``n_trials`` have run. A running trial beats a heartbeat; one silent for the grace period
(a dead worker) is queued again by ``RetryHeartbeatStaleTrialCallback``. Finished trials count,
runs that failed for a reason of their own (a NaN loss: ``fail_reason``) too; a trial cut off by
Ctrl-C runs again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback
from optuna.exceptions import ExperimentalWarning
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState
from optuna_integration import PyTorchLightningPruningCallback
from tqdm import tqdm

from vae_lightning.cli import main
from vae_lightning.experiments.record import (
    SEED,
    SETTING,
    check_context,
    context,
    grid_points,
    point_key,
    trial_point,
    trial_seed,
    trial_setting,
)
from vae_lightning.experiments.spec import Experiment, ExperimentError, Range, format_value, short_key
from vae_lightning.experiments.storage import TRIALS_FOLDER, open_study
from vae_lightning.experiments.trials import (
    HParamsTab,
    TrainingFailed,
    output_to,
    run_training,
    trial_args,
    trial_logger,
    trial_version,
)

__all__ = ["SEED", "Sweep", "counted", "describe", "holds", "is_result", "open_study"]

#: What a grid trial pruned before training records: a second copy of a point, a point the grid no
#: longer holds, or nothing left to take when it started (two workers racing for the last point).
UNTRAINED_MARKS = ("duplicate_of", "not_in_grid", "nothing_queued")

#: How often a worker with nothing to start looks at the trials the others run (seconds).
POLL_S = 2.0


def is_result(trial: FrozenTrial) -> bool:
    """The trial settled its setting: finished, pruned by the pruner, or failed for a reason of its own."""
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs
    untrained = any(mark in trial.user_attrs for mark in UNTRAINED_MARKS)
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and not untrained)


def holds(trial: FrozenTrial) -> bool:
    """The trial has, or will have, a result: it is queued, running or settled."""
    return trial.state in (TrialState.WAITING, TrialState.RUNNING) or is_result(trial)


def counted(experiment: Experiment, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that hold a point of the grid as the experiment now reads (a search: all that hold)."""
    if not experiment.is_grid:
        return [t for t in trials if holds(t)]
    points = grid_points(experiment)
    return [t for t in trials if holds(t) and trial_point(t) in points]


def describe(trial: FrozenTrial) -> str:
    """``gradient_clip_val=0.5, seed 1``."""
    setting = [f"{short_key(k)}={format_value(v)}" for k, v in trial_setting(trial).items()]
    return ", ".join([*setting, f"seed {trial_seed(trial)}"])


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
        self.context = context(experiment, fast, self.extra_args)
        self.folder = str(study.user_attrs.get(TRIALS_FOLDER, "trials"))

    def check_context(self) -> None:
        """Refuse the sweep when the study's trials were run with other settings than this run's."""
        trials = [t for t in self.study.get_trials(deepcopy=False) if holds(t)]
        check_context(self.experiment, trials, self.context, self.study.study_name)

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
                    lines = (Path(scratch) / "log.txt").read_text().strip().splitlines()
                    start = max((i for i, line in enumerate(lines) if line.startswith("error: ")), default=len(lines) - 1)
                    detail = "\n".join(lines[start:]).removeprefix("error: ")  # the CLI's own reason, one error: paragraph in all
                    raise ExperimentError(f"the CLI refuses the options of this experiment ({' '.join(args)}):\n{detail}\n"
                                          "Fix the key or value in the experiment file (or the extra options).") from None
                except Exception:  # noqa: BLE001 - a setting that fails to build is that trial's failure
                    pass

    def enqueue_missing(self) -> None:
        """Queue each grid point that no trial holds: all of them in a new study, cut-off ones, and
        those a grown grid or seed list adds."""
        held = {trial_point(t) for t in self.study.get_trials(deepcopy=False) if holds(t)}
        for setting in self.experiment.grid_settings():
            for seed in self.experiment.seeds:
                if point_key(setting, seed) not in held:
                    self.study.enqueue_trial({}, user_attrs={**self.context, SETTING: setting, SEED: seed})

    def objective(self, trial: Trial) -> float:
        if self.experiment.is_grid:
            if SETTING not in trial.user_attrs:  # the queue emptied by another worker between look and start
                trial.set_user_attr("nothing_queued", True)
                raise optuna.TrialPruned("another worker started the last queued trial first")
            setting, seed = trial_setting(trial), trial_seed(trial)  # the point it was queued with
            point = point_key(setting, seed)
            if point not in grid_points(self.experiment):
                trial.set_user_attr("not_in_grid", True)
                raise optuna.TrialPruned("the experiment's grid no longer holds this setting and seed")
            for other in self.study.get_trials(deepcopy=False):
                if other.number < trial.number and holds(other) and trial_point(other) == point:
                    trial.set_user_attr("duplicate_of", other.number)
                    raise optuna.TrialPruned(f"trial {other.number} holds this setting and seed")
        else:
            setting = {key: _suggest(trial, key, values) for key, values in self.experiment.vary.items()}
            seed = self.experiment.seeds[trial.number % len(self.experiment.seeds)]
        version = trial_version(trial.number, setting, seed)
        run_dir = self.experiment.run_dir(self.fast) / self.folder / version
        run_dir.mkdir(parents=True, exist_ok=True)
        attrs = {**self.context, SETTING: setting, SEED: seed, "run_dir": str(run_dir), "worker": f"{socket.gethostname()}:{os.getpid()}"}
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        callbacks: list[Callback] = [HParamsTab({**setting, SEED: seed})]
        if self.experiment.pruning:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val/loss"))
        self.trained += 1
        try:
            with contextlib.nullcontext() if self.verbose else output_to(run_dir / "log.txt"):
                args = trial_args(self.experiment, setting, seed, self.fast, self.extra_args, version, self.folder)
                result = run_training(args, callbacks)
        except TrainingFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        for name, value in result.items():
            trial.set_user_attr(name, value)
        return result["val_loss"]

    def show(self, study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        """A line for ``trial`` (Optuna's callback after each of this worker's trials), then the bar."""
        if trial is not None and is_result(trial):
            outcome = f"val loss {trial.value:.2f}" if trial.state == TrialState.COMPLETE else trial.state.name.lower()
            if trial.state == TrialState.FAIL:
                outcome = f"failed: {trial.user_attrs.get('fail_reason')}"
            seconds = trial.duration.total_seconds() if trial.duration else 0.0
            self.bar.write(f"trial {trial.number}  {describe(trial)}  {outcome}  ({seconds:.0f} s)")
        trials = study.get_trials(deepcopy=False)
        self.bar.n = min(sum(map(is_result, counted(self.experiment, trials))), self.bar.total)
        if complete := [t for t in counted(self.experiment, trials) if t.state == TrialState.COMPLETE]:
            best = min(complete, key=lambda t: t.value)
            self.bar.set_postfix_str(f"best {best.value:.2f} ({describe(best)})", refresh=False)
        self.bar.refresh()

    def run(self) -> None:
        """Work on the study until every trial is settled (or this worker's budget is spent)."""
        self.check_context()
        self.check_config()
        done = sum(map(is_result, counted(self.experiment, self.study.get_trials(deepcopy=False))))  # the time left follows this run's pace
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
                if any(t.state == TrialState.WAITING for t in trials) or len(counted(self.experiment, trials)) < self.experiment.total_trials():
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
