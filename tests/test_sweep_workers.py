"""Several worker processes on one study, started as docs/experiments.md starts them: on the default SQLite
file and on a PostgreSQL server, every setting x seed trained exactly once (also when two race on a
grid grown since its first trials), a killed worker's trial run again by the other, each worker's
console (a progress bar and a line per trial, Lightning's own output only in each trial's
log.txt), and the same report from either database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState
from helpers.runs import REPO_ROOT
from helpers.sweeps import CLIP, grid_points, table_rows, write_experiment

from vae_lightning.experiments.cli import main as experiments_main

#: 2 settings x 2 seeds, each trial a --fast run of 2 training batches
GRID, SEEDS = {CLIP: [0.5, None]}, [0, 1]
EVERY_POINT_ONCE = Counter({(0.5, 0): 1, (0.5, 1): 1, (None, 0): 1, (None, 1): 1})
#: Lightning's own console output, which belongs in the trials' log.txt files
LIGHTNING_OUTPUT = ("GPU available", "TPU available", "LitLogger", "Epoch 0", "log_every_n_steps")


def start_worker(experiment_file: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "vae_lightning.experiments", "run", str(experiment_file), "--fast", "--threads", "1", "--no-report", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(worker: subprocess.Popen) -> tuple[str, str]:
    out, err = worker.communicate(timeout=240)
    assert worker.returncode == 0, err
    return out, err


@pytest.fixture(scope="module")
def sqlite_sweep(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> tuple[Path, list[tuple[int, str, str]]]:
    """The grid run by two workers on the default SQLite study: its experiment file, and each
    worker's process id, stdout and stderr."""
    experiment_file = write_experiment(tmp_path_factory.mktemp("sqlite"), mnist_dir, GRID, SEEDS)
    workers = [start_worker(experiment_file) for _ in range(2)]
    return experiment_file, [(worker.pid, *finish(worker)) for worker in workers]


def test_two_workers_on_sqlite_train_each_setting_once_each_showing_its_progress(sqlite_sweep) -> None:
    experiment_file, consoles = sqlite_sweep
    study = optuna.load_study(study_name="sweep_fast", storage=f"sqlite:///{experiment_file.parent / 'runs' / 'sweep_fast' / 'study.db'}")
    assert grid_points(study) == EVERY_POINT_ONCE
    assert all(t.state == TrialState.COMPLETE or {"duplicate_of", "nothing_queued"} & set(t.user_attrs) for t in study.trials)
    by_worker = {pid: {t.number for t in study.trials if t.user_attrs.get("worker", "").endswith(f":{pid}")} for pid, _, _ in consoles}
    assert sorted(n for numbers in by_worker.values() for n in numbers) == sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)

    for pid, out, err in consoles:
        # one line per trial this worker ran: its setting, seed, final loss and time
        lines = re.findall(r"^trial (\d+)  gradient_clip_val=(0\.5|none), seed ([01])  val loss (\d+\.\d\d)  \(\d+ s\)$", out, re.MULTILINE)
        assert {int(n) for n, *_ in lines} == by_worker[pid] and len(lines) == len(by_worker[pid])
        for number, value, seed, loss in lines:
            trial = study.trials[int(number)]
            assert (trial.user_attrs["setting"][CLIP], trial.user_attrs["seed"]) == ({"0.5": 0.5, "none": None}[value], int(seed))
            assert f"{trial.value:.2f}" == loss
        # the bar over the whole study: it waited for the other worker, so it ends at 4/4
        assert re.search(r"sweep_fast: 100%\|.*\| 4/4 \[\d\d:\d\d<.*best \d+\.\d\d \(gradient_clip_val=", err)
        for text in LIGHTNING_OUTPUT:
            assert text not in out + err, text

    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            log = (Path(trial.user_attrs["run_dir"]) / "log.txt").read_text()
            assert all(text in log for text in LIGHTNING_OUTPUT[:2] + ("Epoch 0",)), log[:2000]


def test_two_workers_on_postgres_train_each_setting_once_and_rerun_a_killed_workers_trial(
    sqlite_sweep, tmp_path: Path, mnist_dir: Path, postgres_url: str
) -> None:
    experiment_file = write_experiment(tmp_path, mnist_dir, GRID, SEEDS)
    killed, survivor = (start_worker(experiment_file, "--storage", postgres_url, "--grace-period", "3") for _ in range(2))
    try:
        study = wait_for_study(postgres_url)
        deadline, victim = time.monotonic() + 120, None
        while victim is None and time.monotonic() < deadline:  # kill the first worker in the middle of a trial
            running = [  # started half a second ago: its heartbeat has begun
                t for t in study.get_trials(states=(TrialState.RUNNING,))
                if t.user_attrs.get("worker", "").endswith(f":{killed.pid}") and datetime.now() - t.datetime_start > timedelta(seconds=0.5)
            ]
            if running:
                killed.kill()
                victim = running[0]
            time.sleep(0.05)
        assert victim is not None, "the first worker never started a trial"
        finish(survivor)
    finally:
        for worker in (killed, survivor):
            worker.kill()
            worker.communicate()

    assert grid_points(study) == EVERY_POINT_ONCE
    assert study.trials[victim.number].state == TrialState.FAIL and "fail_reason" not in study.trials[victim.number].user_attrs
    (rerun,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert rerun.state == TrialState.COMPLETE and rerun.user_attrs["worker"].endswith(f":{survivor.pid}")
    assert (rerun.user_attrs["setting"], rerun.user_attrs["seed"]) == (victim.user_attrs["setting"], victim.user_attrs["seed"])
    assert not (tmp_path / "runs" / "sweep_fast" / "study.db").exists()  # the PostgreSQL study only

    # the report from PostgreSQL gives the table of the same sweep on SQLite (wall times aside)
    tables = []
    for file, storage in ((experiment_file, ["--storage", postgres_url]), (sqlite_sweep[0], [])):
        assert experiments_main(["report", str(file), "--fast", *storage]) == 0
        rows = table_rows((file.parent / "runs" / "sweep_fast" / "report" / "sweep.md").read_text())
        tables.append([row[:5] + row[6:] for row in rows])
    assert tables[0] == tables[1] and len(tables[0]) == 2 and all(row[-1] == "2/2" for row in tables[0])


def wait_for_study(url: str) -> optuna.Study:
    """The workers' study, once one of them has created it."""
    storage = url.replace("postgresql://", "postgresql+psycopg://")
    for _ in range(600):
        try:
            return optuna.load_study(study_name="sweep_fast", storage=storage)
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # not created yet
            time.sleep(0.1)
    raise AssertionError("no worker created the study")


def test_two_workers_on_postgres_race_on_a_grown_grid_and_train_only_the_missing_points(
    tmp_path: Path, mnist_dir: Path, postgres_url: str
) -> None:
    assert experiments_main(["run", str(write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, [0])), "--fast", "--no-report",
                             "--storage", postgres_url]) == 0
    (first,) = wait_for_study(postgres_url).trials

    experiment_file = write_experiment(tmp_path, mnist_dir, GRID, SEEDS)  # a value and a seed added: three points missing
    workers = [start_worker(experiment_file, "--storage", postgres_url) for _ in range(2)]
    try:
        consoles = [finish(worker) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()

    study = wait_for_study(postgres_url)
    assert grid_points(study) == EVERY_POINT_ONCE
    assert study.trials[first.number].datetime_complete == first.datetime_complete
    assert all(t.state == TrialState.COMPLETE or {"duplicate_of", "nothing_queued"} & set(t.user_attrs) for t in study.trials)
    new = [t for t in study.trials if t.state == TrialState.COMPLETE and t.number != first.number]
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in new} <= {str(w.pid) for w in workers} and len(new) == 3
    assert len(list((tmp_path / "runs" / "sweep_fast" / "trials").iterdir())) == 4
    assert all("Traceback" not in err and "error:" not in err for _, err in consoles)
