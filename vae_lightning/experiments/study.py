"""The sweep's engine: an Optuna study whose trials are CLI runs.

A grid (every varied option a list of values) goes through Optuna's ``GridSampler`` over
setting x seed; ranges go through Optuna's default sampler (TPE). The study lives in Optuna's
RDB storage: a SQLite file beside the runs unless ``--storage`` names another database, so any
number of processes or machines can work on one study and an interrupted sweep resumes.

What Optuna leaves to us, and this module adds:

- **Each grid point exactly once.** ``GridSampler`` hands a point that another worker is still
  running to a new trial once every point has been started, and two workers can both take a
  point being re-run. Before training, a trial looks at the lower-numbered trials: if one
  already holds its setting and seed (finished, running or queued), the trial is pruned as a
  duplicate (``user_attrs["duplicate_of"]``) without training.
- **Resuming.** Finished trials count as done, including runs that failed for a reason of their
  own (NaN loss: ``user_attrs["fail_reason"]``). Trials cut off by Ctrl-C, or whose worker died
  (its heartbeat older than ``GRACE_PERIOD_S``), are queued again with the same setting.
- **Waiting for the others.** A worker with nothing left to start waits for the trials other
  workers are running, so that the report it writes at the end covers the whole study.
"""

from __future__ import annotations

import logging
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from vae_lightning.experiments.runner import (
    TRIALS_DIR,
    TrainingFailed,
    TrialHyperparameters,
    check_args,
    run_training,
    trial_args,
    trial_version,
)
from vae_lightning.experiments.spec import Experiment, GridValue, Range

#: A worker records that it is alive this often while running a trial (seconds).
HEARTBEAT_INTERVAL_S = 10
#: A running trial whose heartbeat is older than this is taken as dead and queued again.
GRACE_PERIOD_S = 60
#: How often a worker with nothing to start checks on the trials the others are running.
POLL_S = 3.0
#: The Optuna parameter that carries a grid trial's seed.
SEED_PARAM = "seed"

_log = logging.getLogger(__name__)

Point = tuple[Any, ...]


def study_name(experiment: Experiment, fast: bool) -> str:
    return f"{experiment.name}_fast" if fast else experiment.name


def default_storage_url(experiment: Experiment, fast: bool) -> str:
    """``sqlite:///<run folder>/study.db``: the study beside its runs."""
    path = (experiment.run_dir(fast) / "study.db").resolve()
    return f"sqlite:///{path}"


def make_storage(url: str) -> RDBStorage:
    """Optuna's RDB storage with heartbeats (so dead workers' trials are noticed); SQLite waits
    on a busy file instead of failing when several processes write at once."""
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S)


class RequeueAwareGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, for a study that also holds re-queued trials: those carry fixed
    parameters and no ``grid_id`` (their grid point is the cut-off trial's), which
    ``GridSampler.after_trial`` would look up and fail on."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        if "grid_id" in trial.system_attrs:
            super().after_trial(study, trial, state, values)


def grid_search_space(experiment: Experiment) -> dict[str, list[GridValue]]:
    """The GridSampler's space: every varied option's values, and the seeds."""
    space: dict[str, list[GridValue]] = {key: list(values) for key, values in experiment.vary.items()}  # type: ignore[arg-type]
    space[SEED_PARAM] = list(experiment.seeds)
    return space


def open_study(experiment: Experiment, fast: bool = False, storage: str | None = None) -> optuna.Study:
    """Create the experiment's study, or load it when it exists (that is how a sweep resumes and
    how several workers share one)."""
    if storage is None:
        experiment.run_dir(fast).mkdir(parents=True, exist_ok=True)
        storage = default_storage_url(experiment, fast)
    if experiment.is_grid:
        sampler: optuna.samplers.BaseSampler = RequeueAwareGridSampler(grid_search_space(experiment))
    else:
        sampler = optuna.samplers.TPESampler()
    pruner = optuna.pruners.MedianPruner() if experiment.pruning else optuna.pruners.NopPruner()
    for attempt in range(5):
        try:
            return optuna.create_study(
                study_name=study_name(experiment, fast),
                storage=make_storage(storage),
                sampler=sampler,
                pruner=pruner,
                direction="minimize",
                load_if_exists=True,
            )
        except sqlalchemy.exc.SQLAlchemyError:
            # Workers started together race to create the database's tables or the study;
            # the loser finds them made on its next try.
            if attempt == 4:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def is_result(trial: FrozenTrial) -> bool:
    """The trial settled its setting: finished, pruned by the pruner, or failed for a reason of
    its own. Duplicates and interrupted trials settle nothing."""
    if trial.state == TrialState.COMPLETE:
        return True
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs
    if trial.state == TrialState.PRUNED:
        return "duplicate_of" not in trial.user_attrs
    return False


def trial_seed(trial: FrozenTrial) -> int | None:
    seed = trial.params.get(SEED_PARAM, trial.user_attrs.get(SEED_PARAM))
    return None if seed is None else int(seed)


def trial_setting(experiment: Experiment, trial: FrozenTrial) -> dict[str, Any]:
    """The varied options' values of a trial (empty keys are left out while it starts)."""
    return {key: trial.params[key] for key in experiment.vary if key in trial.params}


class Sweep:
    """Runs an experiment's trials in this process, alongside any other workers on the study.

    Args:
        experiment: the experiment file's contents.
        study: the study to work on (see :func:`open_study`).
        fast: the reduced runs of ``experiment.fast``.
        extra_args: CLI overrides added to every trial (e.g. ``--data.data_dir=../shared/data``).
        max_trials: run at most this many trials in this process, then stop (``None``: all).
    """

    def __init__(
        self,
        experiment: Experiment,
        study: optuna.Study,
        fast: bool = False,
        extra_args: list[str] | None = None,
        max_trials: int | None = None,
    ) -> None:
        self.experiment = experiment
        self.study = study
        self.fast = fast
        self.extra_args = list(extra_args or [])
        self.max_trials = max_trials
        self.trained = 0

    # -- the study's state -------------------------------------------------------------
    def _point(self, trial: FrozenTrial) -> Point | None:
        """A grid trial's (setting..., seed), from its parameters or, while it waits in the
        queue, from the parameters it was queued with; ``None`` while still incomplete."""
        params = trial.params if trial.state != TrialState.WAITING else trial.system_attrs.get("fixed_params", {})
        keys = [*self.experiment.vary, SEED_PARAM]
        if not all(key in params for key in keys):
            return None
        return tuple(params[key] for key in keys)

    def grid_points(self) -> list[Point]:
        return [(*setting.values(), seed) for setting in self.experiment.grid_settings() for seed in self.experiment.seeds]

    def _claimed(self, trials: list[FrozenTrial]) -> set[Point]:
        return {p for t in trials if (is_result(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)) and (p := self._point(t)) is not None}

    def _budget_spent(self) -> bool:
        return self.max_trials is not None and self.trained >= self.max_trials

    # -- trials ------------------------------------------------------------------------
    def objective(self, trial: Trial) -> float:
        """Suggest the trial's setting and seed, make sure no other trial holds them, train."""
        setting: dict[str, Any] = {}
        for key, values in self.experiment.vary.items():
            if isinstance(values, Range):
                if values.type == "int":
                    step = int(values.step or 1)
                    setting[key] = trial.suggest_int(key, int(values.low), int(values.high), step=step, log=values.log)
                else:
                    setting[key] = trial.suggest_float(key, values.low, values.high, step=values.step, log=values.log)
            else:
                setting[key] = trial.suggest_categorical(key, values)
        if self.experiment.is_grid:
            seed = int(trial.suggest_categorical(SEED_PARAM, self.experiment.seeds))
            self._claim(trial, (*setting.values(), seed))
        else:
            seed = self.experiment.seeds[trial.number % len(self.experiment.seeds)]
            trial.set_user_attr(SEED_PARAM, seed)
        return self._train(trial, setting, seed)

    def _claim(self, trial: Trial, mine: Point) -> None:
        """Prune ``trial`` as a duplicate when a lower-numbered trial holds its setting and seed.
        Lower-numbered trials still writing their parameters are waited for, so of two workers
        that drew the same point at once exactly one trains it."""
        deadline = time.monotonic() + GRACE_PERIOD_S + 2 * HEARTBEAT_INTERVAL_S
        while True:
            earlier = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
            holders = [t for t in earlier if self._point(t) == mine and (is_result(t) or t.state in (TrialState.RUNNING, TrialState.WAITING))]
            if holders:
                trial.set_user_attr("duplicate_of", holders[0].number)
                raise optuna.TrialPruned(f"setting {mine} is already taken by trial {holders[0].number}")
            starting = [t for t in earlier if t.state == TrialState.RUNNING and self._point(t) is None]
            if not starting or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def _train(self, trial: Trial, setting: dict[str, Any], seed: int) -> float:
        save_dir = self.experiment.run_dir(self.fast)
        version = trial_version(trial.number, setting, seed)
        trial.set_user_attr("run_dir", str(save_dir / TRIALS_DIR / version))
        trial.set_user_attr("host", socket.gethostname())
        args = trial_args(self.experiment, setting, seed, self.fast, self.extra_args, save_dir, version)
        callbacks: list[Any] = [TrialHyperparameters({**setting, SEED_PARAM: seed})]
        if self.experiment.pruning:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val/loss"))
        self.trained += 1
        try:
            result = run_training(args, callbacks)
        except TrainingFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        for name in ("val_loss", "val_rl", "val_kl", "epochs", "wall_time_s"):
            trial.set_user_attr(name, getattr(result, name))
        return result.val_loss

    # -- the worker's loop ---------------------------------------------------------------
    def _requeue_interrupted(self) -> None:
        """Queue again the grid points whose only trials were cut off (Ctrl-C, dead worker)."""
        trials = self.study.get_trials(deepcopy=False)
        claimed = self._claimed(trials)
        for t in trials:
            point = self._point(t)
            if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs and point is not None and point not in claimed:
                params = dict(zip([*self.experiment.vary, SEED_PARAM], point))
                self.study.enqueue_trial(params, user_attrs={"rerun_of": t.number})
                claimed.add(point)

    def _after_grid_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Stop ``optimize`` when this worker's budget is spent or no point is left to start,
        rather than letting GridSampler hand out points that other workers are running."""
        self._requeue_interrupted()
        if self._budget_spent() or set(self.grid_points()) <= self._claimed(study.get_trials(deepcopy=False)):
            study.stop()

    def _after_search_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        started = sum(is_result(t) or t.state == TrialState.RUNNING for t in trials)
        assert self.experiment.n_trials is not None
        if self._budget_spent() or started >= self.experiment.n_trials:
            study.stop()

    def check_config(self) -> None:
        """Refuse the sweep before any training when the CLI rejects its options: each varied
        option is tried once with a value of each type it takes (``0.5`` and ``null`` for a
        clip value), the others at their first value, which catches misspelt keys and wrongly
        typed values without building every setting."""
        save_dir = self.experiment.run_dir(self.fast)
        first = {key: (int(v.low) if v.type == "int" else v.low) if isinstance(v, Range) else v[0] for key, v in self.experiment.vary.items()}
        settings = [first]
        for key, values in self.experiment.vary.items():
            if isinstance(values, list):
                by_type = {type(value): value for value in reversed(values)}  # the first value of each type
                settings += [{**first, key: value} for value in by_type.values() if value != first[key] or type(value) is not type(first[key])]
        for setting in settings:
            check_args(trial_args(self.experiment, setting, self.experiment.seeds[0], self.fast, self.extra_args, save_dir, "check"))

    def run(self, progress: Callable[[str], None] = _log.info) -> None:
        """Work on the study until every setting has a result (or this worker's budget is spent)."""
        self.check_config()
        optimize = dict(catch=(TrainingFailed,), gc_after_trial=True)
        if not self.experiment.is_grid:
            trials = self.study.get_trials(deepcopy=False)
            started = sum(is_result(t) or t.state == TrialState.RUNNING for t in trials)
            assert self.experiment.n_trials is not None
            remaining = self.experiment.n_trials - started
            if self.max_trials is not None:
                remaining = min(remaining, self.max_trials)
            if remaining > 0:
                self.study.optimize(self.objective, n_trials=remaining, callbacks=[self._after_search_trial], **optimize)
            return
        idle_passes = 0
        last_message = ""
        while not self._budget_spent():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(self.study)
            self._requeue_interrupted()
            trials = self.study.get_trials(deepcopy=False)
            settled = {p for t in trials if is_result(t) and (p := self._point(t)) is not None}
            todo = [p for p in self.grid_points() if p not in settled]
            if not todo:
                break
            claimed = self._claimed(trials)
            if all(p in claimed for p in todo) and not any(t.state == TrialState.WAITING for t in trials):
                message = f"{len(todo)} trial(s) still running in other workers; waiting for them"
                if message != last_message:
                    progress(message)
                    last_message = message
                time.sleep(POLL_S)
                continue
            before = self.trained
            self.study.optimize(self.objective, callbacks=[self._after_grid_trial], **optimize)
            if self.trained == before:
                idle_passes += 1
                if idle_passes >= 3 and not any(t.state == TrialState.RUNNING for t in self.study.get_trials(deepcopy=False)):
                    progress(f"no trial could be started for {todo}; the grid sampler considers them done")
                    break
                time.sleep(POLL_S)
            else:
                idle_passes = 0


def settled_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that settled a setting (one per grid point; duplicates and cut-off trials out)."""
    return [t for t in study.get_trials(deepcopy=False) if is_result(t)]
