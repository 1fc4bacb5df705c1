"""A sweep rerun after its experiment file (or its command line) changed, on real MNIST in --fast
mode with the study in SQLite: a grown grid or seed list trains exactly the missing points, a value
taken out is no longer reported, any other change is refused in one ``error:`` paragraph naming it
(the study untouched), and ``--restart`` discards the old trials while their run folders stay
byte-identical. The same grown grid raced by two workers on PostgreSQL: test_sweep_workers.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers.compare import file_digests
from optuna.trial import TrialState
from helpers.runs import DEFAULT_CONFIG
from helpers.sweeps import CLIP, grid_points, load_study, one_torch_thread, table_rows, write_experiment  # noqa: F401 - one_torch_thread: an autouse fixture

from vae_lightning.experiments.cli import main as experiments_main

LATENT = "model.network.init_args.latent_dim"


def run(experiment_file: Path, *options: str) -> int:
    return experiments_main(["run", str(experiment_file), "--fast", *options])


def report_rows(tmp_path: Path) -> list[list[str]]:
    return table_rows((tmp_path / "runs" / "sweep_fast" / "report" / "sweep.md").read_text())


def test_a_grown_grid_trains_only_the_missing_points_and_a_value_taken_out_is_not_reported(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    # one point trained, the other (clip 0.1) still queued when the worker stops
    assert run(write_experiment(tmp_path, mnist_dir, {CLIP: [0.5, 0.1]}, seeds=[0]), "--n-trials", "1", "--no-report") == 0
    study = load_study(tmp_path / "sweep.yaml")
    (first,) = [t for t in study.trials if t.state == TrialState.COMPLETE]
    first_files = file_digests(Path(first.user_attrs["run_dir"]))

    # a value swapped and a seed added: exactly the three missing points train, the queued 0.1 does not
    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.5, None]}, seeds=[0, 1])
    assert run(experiment_file) == 0
    study = load_study(experiment_file)
    assert grid_points(study) == Counter({(0.5, 0): 1, (0.5, 1): 1, (None, 0): 1, (None, 1): 1})
    (dropped,) = [t for t in study.trials if t.user_attrs["setting"][CLIP] == 0.1]
    assert dropped.state == TrialState.PRUNED and dropped.user_attrs["not_in_grid"] and "run_dir" not in dropped.user_attrs
    assert study.trials[first.number].datetime_complete == first.datetime_complete
    assert file_digests(Path(first.user_attrs["run_dir"])) == first_files
    assert sorted(p.name.split("_", 2)[2] for p in (tmp_path / "runs" / "sweep_fast" / "trials").iterdir()) == [
        "gradient_clip_val=0.5_seed=0", "gradient_clip_val=0.5_seed=1", "gradient_clip_val=none_seed=0", "gradient_clip_val=none_seed=1"]
    assert [row[0].split(" ")[0].strip("*") for row in report_rows(tmp_path)] == ["0.5", "none"]
    assert all(row[6] == "2/2" for row in report_rows(tmp_path))

    # a value taken out: nothing trains, and the report shows only what the file still asks for
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert run(write_experiment(tmp_path, mnist_dir, {CLIP: [None]}, seeds=[0, 1])) == 0
    assert sum(t.state == TrialState.COMPLETE for t in load_study(experiment_file).trials) == complete
    assert [row[0].split(" ")[0].strip("*") for row in report_rows(tmp_path)] == ["none"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_changed_override_option_or_base_config_is_refused_naming_it(tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(DEFAULT_CONFIG.read_text())
    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0], base_config=str(base))
    assert run(experiment_file) == 0
    report = (tmp_path / "runs" / "sweep_fast" / "report" / "sweep.md").read_text()
    capsys.readouterr()

    def refused(command: str, *options: str) -> str:
        assert experiments_main([command, str(experiment_file), "--fast", *options]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: study 'sweep_fast' holds trials run with other settings than this run's:\n") and err.count("error:") == 1
        assert "a new name" in err and "--restart" in err and "Traceback" not in err
        return err

    write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0], base_config=str(base), overrides={LATENT: 3})
    assert f"overrides (experiment file): {LATENT} (unset) -> 3" in refused("run")
    assert f"{LATENT} (unset) -> 3" in refused("report")

    write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0], base_config=str(base))
    assert f"extra command-line options: [] -> [\"--{LATENT}=3\"]" in refused("run", f"--{LATENT}=3")

    base.write_text(DEFAULT_CONFIG.read_text().replace("latent_dim: 2 ", "latent_dim: 3 "))
    assert f"content of the base config '{base}': edited since" in refused("run")

    # nothing was trained, recorded or rewritten meanwhile; put back, the sweep is complete as it was
    base.write_text(DEFAULT_CONFIG.read_text())
    assert run(experiment_file) == 0
    assert [t.state for t in load_study(experiment_file).trials] == [TrialState.COMPLETE]
    assert (tmp_path / "runs" / "sweep_fast" / "report" / "sweep.md").read_text().split("![")[0] == report.split("![")[0]


def test_restart_discards_the_old_trials_and_keeps_their_run_folders(tmp_path: Path, mnist_dir: Path) -> None:
    assert run(write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0])) == 0
    old_trials = tmp_path / "runs" / "sweep_fast" / "trials"
    old_files = file_digests(old_trials)

    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0], overrides={LATENT: 3})
    assert run(experiment_file) == 2
    assert run(experiment_file, "--restart") == 0

    (trial,) = load_study(experiment_file).trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["overrides"][LATENT] == 3
    run_dir = Path(trial.user_attrs["run_dir"])
    assert run_dir.parent == tmp_path / "runs" / "sweep_fast" / "trials_2"  # a folder of its own
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["network"]["init_args"]["latent_dim"] == 3
    assert file_digests(old_trials) == old_files
    assert [row[6] for row in report_rows(tmp_path)] == ["1/1"]


def test_a_study_whose_trials_record_nothing_is_refused_in_one_line(tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture) -> None:
    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0])
    study = load_study(experiment_file)  # trials as an earlier version stored them: the point in params only
    study.enqueue_trial({CLIP: 0.5, "seed": 0})
    assert run(experiment_file) == 2
    err = capsys.readouterr().err
    assert "  - the trials do not record what they were run with (run by an earlier version of the sweep)\n" in err
    assert err.count("  - ") == 1 and "--restart" in err
    assert [t.state for t in load_study(experiment_file).trials] == [TrialState.WAITING]  # nothing trained or failed
