"""A study's results, gathered for figures and tables: each settled trial's numbers from the
study, its curves from its TensorBoard events, and the posterior's value ranges on the
validation set (logged ``latent/`` scalars, or measured from the final checkpoint)."""

from __future__ import annotations

import inspect
import math
import statistics
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning.data import MNISTDataModule
from vae_lightning.experiments.spec import Experiment, format_value, short_key
from vae_lightning.experiments.study import is_result, trial_seed, trial_setting
from vae_lightning.latent import latent_statistics
from vae_lightning.module import VAEModule

#: Gradient-norm scalars (logged by the training diagnostics when enabled).
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

    @property
    def ok(self) -> bool:
        return self.state == "complete"


@dataclass
class SettingResult:
    """All seeds of one setting, and their spread."""

    setting: dict[str, Any]
    label: str
    trials: list[TrialResult]

    @property
    def completed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.ok]

    @property
    def failed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state == "failed"]

    def values(self, name: str) -> list[float]:
        return [getattr(t, name) for t in self.completed if getattr(t, name) is not None and math.isfinite(getattr(t, name))]

    def mean(self, name: str) -> float:
        values = self.values(name)
        return statistics.fmean(values) if values else math.nan

    def std(self, name: str) -> float:
        values = self.values(name)
        return statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan


def setting_label(setting: dict[str, Any]) -> str:
    """``0.5`` for one varied option; ``gradient_clip_val=0.5, momentum=0.9`` for several."""
    if len(setting) == 1:
        return format_value(next(iter(setting.values())))
    return ", ".join(f"{short_key(k)}={format_value(v)}" for k, v in setting.items())


def read_scalars(run_dir: Path, tags: list[str], prefix: str | None = None) -> dict[str, list[float]]:
    """The logged values of each of ``tags``, and of every tag starting with ``prefix``, found in
    the run's events (in step order). A tag logged per step and per epoch is found under its
    ``_step`` name as well."""
    if not run_dir.is_dir():
        return {}
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    available = set(events.Tags().get("scalars", []))
    if prefix is not None:
        tags = [*tags, *sorted(t for t in available if t.startswith(prefix))]
    found: dict[str, list[float]] = {}
    for tag in tags:
        for name in (tag, f"{tag}_step"):
            if name in available:
                found[tag] = [e.value for e in sorted(events.Scalars(name), key=lambda e: e.step)]
                break
    return found


@cache
def _validation_data(hparams_key: tuple[tuple[str, Any], ...]) -> MNISTDataModule:
    data = MNISTDataModule(**dict(hparams_key))
    data.setup("validate")
    return data


def latent_ranges_from_checkpoint(checkpoint: Path) -> dict[str, float]:
    """``latent_statistics`` of q(z|x) over the validation split the run trained against
    (the datamodule is rebuilt from the hyperparameters stored in the checkpoint)."""
    model = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False).get("datamodule_hyper_parameters", {})
    accepted = inspect.signature(MNISTDataModule).parameters
    hparams = {k: v for k, v in dict(saved).items() if k in accepted}
    hparams["data_on_device"] = False
    data = _validation_data(tuple(sorted(hparams.items(), key=lambda kv: kv[0])))
    images, _ = data.splits["val"]
    with torch.no_grad():
        mu, logvar = model.model.encode(images)
    return {name: float(value) for name, value in latent_statistics(mu, logvar).items()}


def _trial_result(experiment: Experiment, trial: FrozenTrial) -> TrialResult:
    attrs = trial.user_attrs
    state = {TrialState.COMPLETE: "complete", TrialState.FAIL: "failed", TrialState.PRUNED: "pruned"}[trial.state]
    seed = trial_seed(trial)
    run_dir = Path(attrs["run_dir"]) if attrs.get("run_dir") else None
    return TrialResult(
        number=trial.number,
        setting=trial_setting(experiment, trial),
        seed=-1 if seed is None else seed,
        state=state,
        val_loss=attrs.get("val_loss", math.nan),
        val_rl=attrs.get("val_rl", math.nan),
        val_kl=attrs.get("val_kl", math.nan),
        epochs=attrs.get("epochs"),
        wall_time_s=attrs.get("wall_time_s"),
        run_dir=run_dir,
        fail_reason=attrs.get("fail_reason"),
    )


def _load_logs(result: TrialResult) -> None:
    """Fill in the trial's curves, gradient norms and latent value ranges from its run folder."""
    if result.run_dir is None:
        return
    scalars = read_scalars(result.run_dir, ["val/loss", *GRAD_TAGS], prefix="latent/")
    result.val_curve = scalars.get("val/loss", [])
    result.grad_norms = {tag: scalars[tag] for tag in GRAD_TAGS if tag in scalars}
    logged = {tag.removeprefix("latent/"): values[-1] for tag, values in scalars.items() if tag.startswith("latent/") and values}
    if logged:
        result.latent = logged
        return
    checkpoint = result.run_dir / "checkpoints" / "last.ckpt"
    if result.ok and checkpoint.is_file():
        result.latent = latent_ranges_from_checkpoint(checkpoint)


def collect(experiment: Experiment, study: optuna.Study, read_logs: bool = True) -> list[SettingResult]:
    """The settled trials grouped by setting, in the experiment's order (grid) or by trial
    number (search), with their logs read when ``read_logs``."""
    trials = [_trial_result(experiment, t) for t in study.get_trials(deepcopy=False) if is_result(t)]
    if read_logs:
        for result in trials:
            _load_logs(result)
    groups: dict[str, SettingResult] = {}
    order = [setting_label(s) for s in experiment.grid_settings()] if experiment.is_grid else []
    for result in sorted(trials, key=lambda t: (t.number)):
        label = setting_label(result.setting)
        groups.setdefault(label, SettingResult(result.setting, label, [])).trials.append(result)
    for group in groups.values():
        group.trials.sort(key=lambda t: t.seed)
    return sorted(groups.values(), key=lambda g: order.index(g.label) if g.label in order else len(order))


def best_setting(settings: list[SettingResult]) -> SettingResult | None:
    """The setting with the lowest mean final validation loss over its completed seeds."""
    candidates = [s for s in settings if s.completed]
    return min(candidates, key=lambda s: s.mean("val_loss"), default=None)


def best_trial(settings: list[SettingResult]) -> TrialResult | None:
    """The best setting's seed with the lowest final validation loss."""
    best = best_setting(settings)
    return None if best is None else min(best.completed, key=lambda t: t.val_loss)
