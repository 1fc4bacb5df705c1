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
from optuna.trial import FrozenTrial, TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning.data import ImageDataModule
from vae_lightning.experiments.spec import Experiment, setting_label
from vae_lightning.experiments.study import is_result, trial_seed
from vae_lightning.latent import latent_statistics
from vae_lightning.module import VAEModule

#: Gradient-norm scalars (logged by the gradient diagnostics when enabled).
GRAD_TAGS = ("grad/norm_before_clip", "grad/norm_after_clip")


@dataclass
class TrialResult:
    """One settled trial: its setting, seed, outcome and logs."""

    number: int
    setting: dict[str, Any]
    seed: int
    state: str  # "complete", "failed" or "pruned"
    val_loss: float = math.nan
    val_rl: float = math.nan
    val_kl: float = math.nan
    epochs: int | None = None
    wall_time_s: float | None = None
    run_dir: Path | None = None
    fail_reason: str | None = None
    val_curve: list[float] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    latent: dict[str, float] = field(default_factory=dict)


@dataclass
class SettingResult:
    """All seeds of one setting, and their spread."""

    setting: dict[str, Any]
    label: str
    trials: list[TrialResult]

    @property
    def completed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state == "complete"]

    @property
    def failed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state == "failed"]

    def values(self, name: str) -> list[float]:
        return [v for t in self.completed if (v := getattr(t, name)) is not None and math.isfinite(v)]

    def mean(self, name: str) -> float:
        values = self.values(name)
        return statistics.fmean(values) if values else math.nan

    def std(self, name: str) -> float:
        values = self.values(name)
        return statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan


def read_scalars(run_dir: Path, tags: list[str], prefix: str) -> dict[str, list[float]]:
    """The values of each of ``tags`` and of every tag starting with ``prefix`` in the run's
    events, in step order (a tag logged per step is found under its ``_step`` name too)."""
    if not run_dir.is_dir():
        return {}
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    available = set(events.Tags().get("scalars", []))
    found: dict[str, list[float]] = {}
    for tag in [*tags, *sorted(t for t in available if t.startswith(prefix))]:
        if name := next((n for n in (tag, f"{tag}_step") if n in available), None):
            found[tag] = [e.value for e in sorted(events.Scalars(name), key=lambda e: e.step)]
    return found


def latent_ranges_from_checkpoint(checkpoint: Path) -> dict[str, float]:
    """``latent_statistics`` of q(z|x) over the validation split the run trained against, its
    datamodule rebuilt from the hyperparameters in the checkpoint."""
    model = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    hparams = torch.load(checkpoint, map_location="cpu", weights_only=True).get("datamodule_hyper_parameters", {})
    data = ImageDataModule(**{**hparams, "data_on_device": False})
    data.setup("validate")
    images = torch.cat([x for x, _ in data.val_dataloader()])  # (N, C, H, W) in [0, 1]
    with torch.no_grad():
        mu, logvar = model.network.encode(images)
    return {name: float(value) for name, value in latent_statistics(mu, logvar).items()}


def trial_result(experiment: Experiment, trial: FrozenTrial, read_logs: bool = True) -> TrialResult:
    """A settled trial's numbers from the study and, when ``read_logs``, its run folder."""
    attrs = trial.user_attrs
    result = TrialResult(
        number=trial.number,
        setting={key: trial.params[key] for key in experiment.vary if key in trial.params},
        seed=trial_seed(trial) if trial_seed(trial) is not None else -1,
        state={TrialState.COMPLETE: "complete", TrialState.FAIL: "failed", TrialState.PRUNED: "pruned"}[trial.state],
        **{name: attrs[name] for name in ("val_loss", "val_rl", "val_kl", "epochs", "wall_time_s", "fail_reason") if name in attrs},
        run_dir=Path(attrs["run_dir"]) if attrs.get("run_dir") else None,
    )
    if not read_logs or result.run_dir is None:
        return result
    scalars = read_scalars(result.run_dir, ["val/loss", *GRAD_TAGS], prefix="latent/")
    result.val_curve = scalars.get("val/loss", [])
    result.grad_norms = {tag: scalars[tag] for tag in GRAD_TAGS if tag in scalars}
    result.latent = {tag.removeprefix("latent/"): values[-1] for tag, values in scalars.items() if tag.startswith("latent/") and values}
    checkpoint = result.run_dir / "checkpoints" / "last.ckpt"
    if not result.latent and result.state == "complete" and checkpoint.is_file():
        result.latent = latent_ranges_from_checkpoint(checkpoint)
    return result


def collect(experiment: Experiment, study: optuna.Study, read_logs: bool = True) -> list[SettingResult]:
    """The settled trials grouped by setting, seeds in order, settings in the experiment's order
    (grid) or by first trial (search)."""
    groups: dict[str, SettingResult] = {}
    for trial in sorted((t for t in study.get_trials(deepcopy=False) if is_result(t)), key=lambda t: t.number):
        result = trial_result(experiment, trial, read_logs)
        label = setting_label(result.setting)
        groups.setdefault(label, SettingResult(result.setting, label, [])).trials.append(result)
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
