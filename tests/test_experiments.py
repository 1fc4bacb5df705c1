"""Sweeps end to end on real MNIST in --fast mode: each trial a real CLI run, the study in SQLite,
figures and tables from the logs; resuming, failing runs, bad experiment files. Several worker
processes on one study: test_sweep_workers.py."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import matplotlib.image
import numpy as np
import optuna
import pytest
from helpers.runs import DEFAULT_CONFIG, REPO_ROOT
from helpers.sweeps import CLIP, grid_points, load_study, one_torch_thread, table_rows, write_experiment  # noqa: F401 - one_torch_thread: an autouse fixture
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from vae_lightning.experiments import ExperimentError, load_experiment
from vae_lightning.experiments.cli import main as experiments_main
from vae_lightning.experiments.results import latent_ranges_from_checkpoint
from vae_lightning.experiments.spec import parse_experiment
from vae_lightning.experiments.study import Sweep, is_result, open_study


def hparams_of(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return set(HParamsPluginData.FromString(content).session_start_info.hparams)


def test_fast_sweep_runs_every_trial_and_writes_a_table_row_per_setting_and_figures(tmp_path: Path, mnist_dir: Path) -> None:
    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.5, None]}, seeds=[0, 1])
    assert experiments_main(["run", str(experiment_file), "--fast"]) == 0

    study = load_study(experiment_file)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert grid_points(study) == Counter({(0.5, 0): 1, (0.5, 1): 1, (None, 0): 1, (None, 1): 1})
    # every trial is its own CLI run, with its own TensorBoard version folder and checkpoint
    run_dirs = {Path(t.user_attrs["run_dir"]) for t in study.trials}
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert (run_dir / "config.yaml").is_file()
        assert {CLIP, "seed"} <= hparams_of(run_dir)  # TensorBoard's HParams tab
        assert "Epoch 0" in (run_dir / "log.txt").read_text()  # the run's own progress bar, kept in its folder
    # without logged latent/ scalars, the report measures the posterior from the final checkpoint
    latent = latent_ranges_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    for name in ("mu1", "mu2", "sigma1", "sigma2"):
        assert latent[f"{name}_min"] <= latent[f"{name}_mean"] <= latent[f"{name}_max"] and latent[f"{name}_std"] > 0
    assert 0 < latent["sigma1_min"] and math.isfinite(latent["logvar_mean"])

    report = tmp_path / "runs" / "sweep_fast" / "report"
    rows = table_rows((report / "sweep.md").read_text())
    assert [row[0].split(" ")[0].strip("*") for row in rows] == ["0.5", "none"]
    for row in rows:
        for cell in row[1:4]:  # val loss, RL, KL: mean ± std over the two seeds
            mean, std = (float(x) for x in cell.strip("*").split(" ± "))
            assert np.isfinite(mean) and np.isfinite(std) and mean >= 0
        assert row[4] == "1" and row[6] == "2/2"
    assert sum("(best)" in row[0] for row in rows) == 1

    for figure in ("val_loss", "final_loss", "latent_ranges", "grad_norms", "best_samples"):
        image = matplotlib.image.imread(report / f"sweep_{figure}.png")
        assert image.shape[0] > 200 and image.shape[1] > 300, figure
        assert image[..., :3].std() > 0.05, f"{figure} is blank"


def test_a_sweep_stopped_part_way_resumes_without_rerunning_finished_trials(tmp_path: Path, mnist_dir: Path) -> None:
    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.1, 0.5, None]}, seeds=[0])
    experiment = load_experiment(experiment_file)
    Sweep(experiment, open_study(experiment, fast=True), fast=True, max_trials=1).run()
    study = load_study(experiment_file)
    (first,) = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 2  # the rest of the grid, queued
    first_files = sorted(p.name for p in Path(first.user_attrs["run_dir"]).rglob("*"))
    # a trial cut off by Ctrl-C is left failed without a reason of its own: it must run again
    cut_off = study.ask()
    study.tell(cut_off, state=TrialState.FAIL)

    Sweep(experiment, open_study(experiment, fast=True), fast=True).run()
    study = load_study(experiment_file)
    assert grid_points(study) == Counter({(0.1, 0): 1, (0.5, 0): 1, (None, 0): 1})
    assert study.trials[first.number].datetime_complete == first.datetime_complete
    assert sorted(p.name for p in Path(first.user_attrs["run_dir"]).rglob("*")) == first_files
    assert len(list((tmp_path / "runs" / "sweep_fast" / "trials").iterdir())) == 3


def test_a_diverging_run_is_recorded_as_failed_with_its_reason_and_the_sweep_goes_on(tmp_path: Path, mnist_dir: Path) -> None:
    lr = "model.optimizer.init_args.lr"
    experiment_file = write_experiment(tmp_path, mnist_dir, {lr: [1.0e30, 0.003]}, seeds=[0], overrides={CLIP: None})
    assert experiments_main(["run", str(experiment_file), "--fast"]) == 0

    study = load_study(experiment_file)
    by_lr = {t.user_attrs["setting"][lr]: t for t in study.trials}
    assert by_lr[1.0e30].state == TrialState.FAIL
    assert "nan" in by_lr[1.0e30].user_attrs["fail_reason"].lower()
    assert by_lr[0.003].state == TrialState.COMPLETE
    markdown = (tmp_path / "runs" / "sweep_fast" / "report" / "sweep.md").read_text()
    assert re.search(r"\| 1e\+30 \| failed \|.*\| 0/1 \(1 failed\) \|", markdown)
    assert re.search(r"- model\.optimizer\.init_args\.lr = 1e\+30, seed 0 \(trial \d+\): .*nan", markdown, re.IGNORECASE)


def test_a_misspelt_option_stops_the_sweep_before_any_training(tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture) -> None:
    experiment_file = write_experiment(tmp_path, mnist_dir, {"model.network.init_args.latent_dims": [2, 3]}, seeds=[0])
    assert experiments_main(["run", str(experiment_file), "--fast"]) == 2
    error = capsys.readouterr().err
    assert "latent_dims" in error and "experiment file" in error
    assert not (tmp_path / "runs" / "sweep_fast" / "trials").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vary": {CLIP: []}}, "vary.trainer.gradient_clip_val is an empty list"),
        ({"vary": {CLIP: [[1, 2]]}}, "grid values must be finite numbers, strings, booleans or null"),
        ({"vary": {"model.optimizer.init_args.momentum": {"low": 0.5, "high": 0.99}}}, "n_trials: a search over ranges needs it"),
        ({"vary": {CLIP: {"low": 1.0, "high": 0.5}}, "n_trials": 3}, "vary.trainer.gradient_clip_val: low (1.0) must be below high (0.5)"),
        ({"vary": {CLIP: {"low": 0.1, "hi": 0.5}}, "n_trials": 3}, "Option 'hi' is not accepted"),
        ({"seeds": []}, "seeds: must be a non-empty list of distinct integers"),
        ({"epochs": 0}, 'Parser key "epochs"'),
        ({"epoch": 3}, "Option 'epoch' is not accepted"),
        ({"base_config": "configs/missing.yaml"}, "base_config: 'configs/missing.yaml' not found"),
    ],
)
def test_a_wrong_experiment_file_is_refused_with_the_field_named(change: dict, message: str) -> None:
    spec = {"name": "x", "base_config": str(DEFAULT_CONFIG), "vary": {CLIP: [1.0, None]}, "seeds": [0], "epochs": 1, **change}
    with pytest.raises(ExperimentError) as error:
        parse_experiment(spec, "x.yaml")
    assert str(error.value).startswith("x.yaml: ") and message in str(error.value)


def test_the_report_experiment_files_cover_the_report_settings_with_three_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)  # their base_config is relative to the repository root
    clip_value = load_experiment(REPO_ROOT / "configs" / "experiments" / "clip_value.yaml")
    assert {0.01, 0.1, 0.25, 0.5, 0.75, 1.0, None} <= set(clip_value.vary[CLIP])
    assert clip_value.overrides["trainer.gradient_clip_algorithm"] == "value"
    clip_norm = load_experiment(REPO_ROOT / "configs" / "experiments" / "clip_norm.yaml")
    assert {1.0, None} <= set(clip_norm.vary[CLIP]) and clip_norm.overrides["trainer.gradient_clip_algorithm"] == "norm"
    momentum = load_experiment(REPO_ROOT / "configs" / "experiments" / "momentum.yaml")
    assert {0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99} <= set(momentum.vary["model.optimizer.init_args.momentum"])
    for experiment in (clip_value, clip_norm, momentum):
        assert experiment.is_grid and len(experiment.seeds) >= 3


def test_a_grid_trial_started_after_another_worker_took_the_last_queued_point_trains_nothing(tmp_path: Path, mnist_dir: Path) -> None:
    """Two workers both see one queued point; the slower one's trial finds the queue empty."""
    experiment_file = write_experiment(tmp_path, mnist_dir, {CLIP: [0.5]}, seeds=[0])
    experiment = load_experiment(experiment_file)
    study = open_study(experiment, fast=True)
    late = study.ask()  # nothing queued: Optuna starts a trial without a point
    with pytest.raises(optuna.TrialPruned, match="another worker started the last queued trial first"):
        Sweep(experiment, study, fast=True).objective(late)
    assert late.user_attrs == {"nothing_queued": True} and not (tmp_path / "runs" / "sweep_fast" / "trials").exists()
    study.tell(late, state=TrialState.PRUNED)
    assert not is_result(study.trials[late.number])
