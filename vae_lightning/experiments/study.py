"""The sweep's engine: an Optuna study whose trials are CLI runs.

The study lives in Optuna's RDB storage, a SQLite file beside the runs unless ``--storage``
names another database, so any number of processes or machines can work on one study and a
stopped sweep resumes. Optuna does the bookkeeping:

- **A grid is a queue.** Each setting x seed that no trial holds yet is queued
  (``study.enqueue_trial``); every worker ``optimize``s, and Optuna hands each queued trial to
  one worker. Should two workers queue the same point at the same moment, the later copy is
  pruned untrained when it starts (``duplicate_of``).
- **A range search** draws from Optuna's default sampler (TPE) until ``n_trials`` have run.
- **Dead workers.** A running trial beats a heartbeat; one silent for the grace period is failed
  and queued again by ``RetryHeartbeatStaleTrialCallback``, for whichever worker comes next.
- **Resuming.** Finished trials count, runs that failed for a reason of their own (a NaN loss:
  ``fail_reason``) too; a trial cut off by Ctrl-C is queued again by the next ``run``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import time
import warnings
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState
from optuna_integration import PyTorchLightningPruningCallback
from tqdm import tqdm

from vae_lightning.experiments.runner import TRIALS_DIR, TrainingFailed, TrialHyperparameters, check_args, output_to, run_training, trial_args, trial_version
from vae_lightning.experiments.spec import Experiment, Range, format_value, short_key

#: The Optuna parameter (grid) or user attribute (search) that holds a trial's seed.
SEED = "seed"
#: How often a worker with nothing to start looks at the trials the others run (seconds).
POLL_S = 2.0


def study_name(experiment: Experiment, fast: bool) -> str:
    return f"{experiment.name}_fast" if fast else experiment.name


def storage_url(experiment: Experiment, fast: bool, storage: str | None) -> str:
    """``storage``, or ``sqlite:///<run folder>/study.db`` beside the runs."""
    if storage is None:
        experiment.run_dir(fast).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(experiment.run_dir(fast) / 'study.db').resolve()}"
    if storage.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + storage.removeprefix("postgresql://")  # the driver of the postgres extra
    return storage


def open_study(experiment: Experiment, fast: bool = False, storage: str | None = None, grace_period: int = 60) -> optuna.Study:
    """Create the experiment's study, or load it (how a sweep resumes and workers share one).
    A running trial whose heartbeat is older than ``grace_period`` seconds is queued again."""
    url = storage_url(experiment, fast, storage)
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: what the sweep relies on
                rdb = RDBStorage(
                    url,
                    engine_kwargs={"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None,
                    heartbeat_interval=max(1, grace_period // 6),
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
                )
            pruner = optuna.pruners.MedianPruner() if experiment.pruning else optuna.pruners.NopPruner()
            return optuna.create_study(study_name=study_name(experiment, fast), storage=rdb, pruner=pruner, load_if_exists=True)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:  # workers started together race to create the tables and the study
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def is_result(trial: FrozenTrial) -> bool:
    """The trial settled its setting: finished, pruned by the pruner, or failed for a reason of
    its own. Duplicates and cut-off trials settle nothing."""
    return (
        trial.state == TrialState.COMPLETE
        or (trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs)
        or (trial.state == TrialState.PRUNED and "duplicate_of" not in trial.user_attrs)
    )


def holds(trial: FrozenTrial) -> bool:
    """The trial has, or will have, a result: it is queued, running or settled."""
    return trial.state in (TrialState.WAITING, TrialState.RUNNING) or is_result(trial)


def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's parameters; while it waits in the queue, those it was queued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def trial_seed(trial: FrozenTrial) -> int | None:
    seed = trial.params.get(SEED, trial.user_attrs.get(SEED))
    return None if seed is None else int(seed)


def describe(trial: FrozenTrial) -> str:
    """``gradient_clip_val=0.5, seed 1``."""
    setting = [f"{short_key(k)}={format_value(v)}" for k, v in trial.params.items() if k != SEED]
    return ", ".join([*setting, f"seed {trial_seed(trial)}"])


class Progress:
    """The sweep on the console: a bar over the study's settled trials (done/total, elapsed, time
    left, best so far, all workers' trials counted) and a line per trial this worker finished."""

    def __init__(self, study: optuna.Study, total: int, disable: bool) -> None:
        done = sum(map(is_result, study.get_trials(deepcopy=False)))
        self.bar = tqdm(total=total, initial=done, desc=study.study_name, unit="trial", smoothing=0, disable=disable, dynamic_ncols=True)

    def update(self, trials: list[FrozenTrial]) -> None:
        self.bar.n = min(sum(map(is_result, trials)), self.bar.total)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            best = min(complete, key=lambda t: t.value)
            self.bar.set_postfix_str(f"best {best.value:.2f} ({describe(best)})", refresh=False)
        self.bar.refresh()

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's callback after each trial of this worker."""
        if "duplicate_of" not in trial.user_attrs:
            outcome = {
                TrialState.COMPLETE: lambda: f"val loss {trial.value:.2f}",
                TrialState.PRUNED: lambda: "pruned",
                TrialState.FAIL: lambda: f"failed: {trial.user_attrs.get('fail_reason', 'interrupted')}",
            }[trial.state]()
            seconds = trial.duration.total_seconds() if trial.duration else 0.0
            self.bar.write(f"trial {trial.number}  {describe(trial)}  {outcome}  ({seconds:.0f} s)")
        self.update(study.get_trials(deepcopy=False))

    def close(self) -> None:
        self.bar.close()


class Sweep:
    """Runs an experiment's trials in this process, alongside any other workers on the study.

    Args:
        experiment: the experiment file's contents.
        study: the study to work on (see :func:`open_study`).
        fast: the reduced runs of ``experiment.fast``.
        extra_args: CLI options added to every trial (e.g. ``--data.data_dir=../shared/data``).
        max_trials: train at most this many trials in this process, then stop (``None``: all).
        verbose: show each trial's own output on the console instead of only in its ``log.txt``.
    """

    def __init__(
        self,
        experiment: Experiment,
        study: optuna.Study,
        fast: bool = False,
        extra_args: list[str] | None = None,
        max_trials: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.experiment, self.study, self.fast = experiment, study, fast
        self.extra_args = list(extra_args or [])
        self.max_trials, self.verbose = max_trials, verbose
        self.trained = 0

    def enqueue_missing(self) -> None:
        """Queue each grid point (setting x seed) that no trial holds: all of them in a new
        study, and any whose trial was cut off."""
        held = {frozenset(trial_params(t).items()) for t in self.study.get_trials(deepcopy=False) if holds(t)}
        for setting in self.experiment.grid_settings():
            for seed in self.experiment.seeds:
                if frozenset((point := {**setting, SEED: seed}).items()) not in held:
                    self.study.enqueue_trial(point)

    def objective(self, trial: Trial) -> float:
        setting = {key: _suggest(trial, key, values) for key, values in self.experiment.vary.items()}
        if self.experiment.is_grid:
            seed = trial.suggest_categorical(SEED, self.experiment.seeds)
            mine = frozenset(trial.params.items())
            for other in self.study.get_trials(deepcopy=False):
                if other.number < trial.number and holds(other) and frozenset(trial_params(other).items()) == mine:
                    trial.set_user_attr("duplicate_of", other.number)
                    raise optuna.TrialPruned(f"trial {other.number} holds this setting and seed")
        else:
            seed = self.experiment.seeds[trial.number % len(self.experiment.seeds)]
            trial.set_user_attr(SEED, seed)
        return self._train(trial, setting, int(seed))

    def _train(self, trial: Trial, setting: dict[str, Any], seed: int) -> float:
        version = trial_version(trial.number, setting, seed)
        run_dir = self.experiment.run_dir(self.fast) / TRIALS_DIR / version
        run_dir.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        callbacks: list[Any] = [TrialHyperparameters({**setting, SEED: seed})]
        if self.experiment.pruning:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val/loss"))
        self.trained += 1
        try:
            with contextlib.nullcontext() if self.verbose else output_to(run_dir / "log.txt"):
                result = run_training(trial_args(self.experiment, setting, seed, self.fast, self.extra_args, version), callbacks)
        except TrainingFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        for name, value in result.items():
            trial.set_user_attr(name, value)
        return result["val_loss"]

    def check_config(self) -> None:
        """Refuse the sweep before any training when the CLI rejects its options: each varied
        option once with a value of each type it takes (``0.5`` and ``null`` for a clip value),
        the others at their first value."""
        first = {k: (int(v.low) if v.type == "int" else v.low) if isinstance(v, Range) else v[0] for k, v in self.experiment.vary.items()}
        settings = [first]
        for key, values in self.experiment.vary.items():
            if isinstance(values, list):
                settings += [{**first, key: value} for value in {type(v): v for v in reversed(values)}.values() if type(value) is not type(first[key])]
        for setting in settings:
            check_args(trial_args(self.experiment, setting, self.experiment.seeds[0], self.fast, self.extra_args, "check"))

    def run(self) -> None:
        """Work on the study until every trial is settled (or this worker's budget is spent)."""
        self.check_config()
        progress = Progress(self.study, self.experiment.total_trials(), disable=self.verbose)
        try:
            while self.max_trials is None or self.trained < self.max_trials:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    fail_stale_trials(self.study)  # dead workers' trials go back to the queue
                if self.experiment.is_grid:
                    self.enqueue_missing()
                trials = self.study.get_trials(deepcopy=False)
                progress.update(trials)
                started = sum(map(holds, trials))
                if any(t.state == TrialState.WAITING for t in trials) or (not self.experiment.is_grid and started < self.experiment.total_trials()):
                    self.study.optimize(self.objective, n_trials=1, catch=(TrainingFailed,), callbacks=[progress.trial_done], gc_after_trial=True)
                elif any(t.state == TrialState.RUNNING for t in trials):
                    time.sleep(POLL_S)  # other workers' trials: wait for them, and rerun them if their worker dies
                else:
                    break
        finally:
            progress.close()


def _suggest(trial: Trial, key: str, values: list[Any] | Range) -> Any:
    if isinstance(values, list):
        return trial.suggest_categorical(key, values)
    if values.type == "int":
        return trial.suggest_int(key, int(values.low), int(values.high), step=int(values.step or 1), log=values.log)
    return trial.suggest_float(key, values.low, values.high, step=values.step, log=values.log)
