"""A study's results for the figures and tables: each settled trial's numbers from the study, its
curves from its TensorBoard events, and the posterior's value ranges on the validation set
(the logged ``latent/`` scalars, or measured from the final checkpoint)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from vae_lightning.experiments.spec import Experiment, setting_label
from vae_lightning.experiments.record import trial_seed, trial_setting
from vae_lightning.experiments.study import counted, is_result
from vae_lightning.latent import latent_statistics
from vae_lightning.runs import load_run, read_scalars

#: Gradient-norm scalars (logged by the gradient diagnostics when enabled).
GRAD_TAGS = ("grad/norm_before_clip", "grad/norm_after_clip")


@dataclass
class TrialResult:
    """One settled trial: its setting, seed, outcome (``state``: complete, fail or pruned) and logs."""

    number: int
    setting: dict[str, Any]
    seed: int
    state: str
    val_loss: float = math.nan
    val_rl: float = math.nan
    val_kl: float = math.nan
    epochs: int | None = None
    wall_time_s: float | None = None
    fail_reason: str | None = None
    run_dir: Path | None = None
    val_curve: list[float] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    latent: dict[str, float] = field(default_factory=dict)


@dataclass
class SettingResult:
    """All seeds of one setting, and their spread over the completed ones."""

    setting: dict[str, Any]
    label: str
    trials: list[TrialResult]

    @property
    def completed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state == "complete"]

    @property
    def failed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state == "fail"]

    def values(self, name: str) -> list[float]:
        return [v for t in self.completed if (v := getattr(t, name)) is not None and math.isfinite(v)]

    def mean(self, name: str) -> float:
        return statistics.fmean(values) if (values := self.values(name)) else math.nan

    def std(self, name: str) -> float:
        values = self.values(name)
        return statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan


def latent_ranges_from_checkpoint(checkpoint: Path) -> dict[str, float]:
    """``latent_statistics`` of q(z|x) over the run's validation split (model and data rebuilt
    from the checkpoint)."""
    model, data = load_run(checkpoint)
    data.setup("validate")
    with torch.no_grad():
        mu, logvar = map(torch.cat, zip(*(model.encode(x, y) for x, y in data.val_dataloader())))  # x: (B, C, H, W)
    return {name: float(value) for name, value in latent_statistics(mu, logvar).items()}


def trial_result(experiment: Experiment, trial: FrozenTrial, read_logs: bool = True) -> TrialResult:
    """A settled trial's numbers from the study and, when ``read_logs``, from its run folder."""
    attrs = trial.user_attrs
    result = TrialResult(
        number=trial.number,
        setting={key: value for key, value in trial_setting(trial).items() if key in experiment.vary},
        seed=trial_seed(trial),
        state=trial.state.name.lower(),
        run_dir=Path(attrs["run_dir"]) if "run_dir" in attrs else None,
        **{name: attrs[name] for name in ("val_loss", "val_rl", "val_kl", "epochs", "wall_time_s", "fail_reason") if name in attrs},
    )
    if read_logs and result.run_dir is not None and result.run_dir.is_dir():
        logged = read_scalars(result.run_dir)
        tags = sorted(logged, key=lambda tag: not tag.endswith("_step"))  # a per-step tag, unless logged plainly
        scalars = {tag.removesuffix("_step"): logged[tag] for tag in tags}
        result.val_curve = scalars.get("val/loss", [])
        result.grad_norms = {tag: scalars[tag] for tag in GRAD_TAGS if tag in scalars}
        result.latent = {tag.removeprefix("latent/"): values[-1] for tag, values in scalars.items() if tag.startswith("latent/") and values}
        checkpoint = result.run_dir / "checkpoints" / "last.ckpt"
        if not result.latent and result.state == "complete" and checkpoint.is_file():
            result.latent = latent_ranges_from_checkpoint(checkpoint)
    return result


def collect(experiment: Experiment, study: optuna.Study, read_logs: bool = True) -> list[SettingResult]:
    """The settled trials of the grid as the experiment now reads (a value taken out is left out)
    grouped by setting, seeds in order, settings in the experiment's order (grid) or by first
    trial (search)."""
    groups: dict[str, SettingResult] = {}
    for trial in sorted((t for t in counted(experiment, study.get_trials(deepcopy=False)) if is_result(t)), key=lambda t: t.number):
        result = trial_result(experiment, trial, read_logs)
        groups.setdefault(setting_label(result.setting), SettingResult(result.setting, setting_label(result.setting), [])).trials.append(result)
    for group in groups.values():
        group.trials.sort(key=lambda t: t.seed)
    order = [setting_label(s) for s in experiment.grid_settings()] if experiment.is_grid else []
    return sorted(groups.values(), key=lambda g: order.index(g.label) if g.label in order else len(order))


def best_setting(settings: list[SettingResult]) -> SettingResult | None:
    """The setting with the lowest mean final validation loss over its completed seeds."""
    return min((s for s in settings if s.completed), key=lambda s: s.mean("val_loss"), default=None)


def best_trial(settings: list[SettingResult]) -> TrialResult | None:
    """The best setting's seed with the lowest final validation loss."""
    best = best_setting(settings)
    return None if best is None else min(best.completed, key=lambda t: t.val_loss)
