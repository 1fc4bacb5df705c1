"""Where a sweep's study lives: Optuna's RDB storage (a SQLite file beside the runs unless
``--storage`` names another database), shared by every worker, so a stopped sweep resumes and
several processes or machines work on one study. ``--restart`` deletes the stored study and
creates it afresh; the old trials' run folders stay on disk, and the new study writes its trials
into a folder of its own (``trials_2``, ``trials_3``, ...) so none of them is touched."""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from vae_lightning.experiments.spec import Experiment

#: The study's user attribute naming the folder (under the run folder) its trials write to.
TRIALS_FOLDER = "trials_folder"


def storage_url(experiment: Experiment, fast: bool, storage: str | None) -> str:
    """``storage``, or the default ``sqlite:///<run folder>/study.db`` (the folder made)."""
    if storage is None:
        experiment.run_dir(fast).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(experiment.run_dir(fast) / 'study.db').resolve()}"
    if storage.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + storage.removeprefix("postgresql://")  # the postgres extra's driver
    return storage


def _rdb(url: str, grace_period: int) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: what the sweep relies on
        return RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None,  # wait on a busy file
            heartbeat_interval=max(1, grace_period // 6),
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
        )


def free_trials_folder(run_dir: Path, after: str | None = None) -> str:
    """The first of ``trials``, ``trials_2``, ... not on disk (and past ``after``, a discarded study's)."""
    names = ["trials", *(f"trials_{n}" for n in range(2, 10_000))]
    start = names.index(after) + 1 if after in names else 0
    return next(name for name in names[start:] if not (run_dir / name).exists())


def open_study(experiment: Experiment, fast: bool = False, storage: str | None = None, grace_period: int = 60,
               restart: bool = False) -> optuna.Study:
    """Create the experiment's study, or load it (how a sweep resumes and workers share one). A
    trial whose worker has been silent for ``grace_period`` seconds is queued again. ``restart``
    deletes a stored study of that name first."""
    url, name = storage_url(experiment, fast, storage), experiment.run_dir(fast).name
    pruner = optuna.pruners.MedianPruner() if experiment.pruning else optuna.pruners.NopPruner()
    for attempt in range(5):
        try:
            rdb = _rdb(url, grace_period)
            discarded = None
            if restart and name in optuna.get_all_study_names(rdb):
                discarded = optuna.load_study(study_name=name, storage=rdb).user_attrs.get(TRIALS_FOLDER, "trials")
                optuna.delete_study(study_name=name, storage=rdb)
            study = optuna.create_study(study_name=name, storage=rdb, pruner=pruner, load_if_exists=True)
            if TRIALS_FOLDER not in study.user_attrs:  # a study from before trials folders were recorded used "trials"
                folder = free_trials_folder(experiment.run_dir(fast), discarded) if not study.trials else "trials"
                study.set_user_attr(TRIALS_FOLDER, folder)
            return study
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:  # workers started together race to create the tables and the study
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")
