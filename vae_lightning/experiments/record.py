"""What each trial was run with, kept in its Optuna user attributes, and the check that a rerun
trains (or a report shows) only trials of the experiment as it now reads.

A trial records its grid point (``setting``: the varied values; ``seed``) and the context every
trial of the study shares (:data:`CONTEXT`): the experiment's overrides, the extra command-line
options, a SHA-256 digest of the base config's content, epochs and batch limits, and which options
are varied (for a range search, the ranges and seeds too). Grid points live in user attributes,
not in Optuna parameters, so a grid that grows or shrinks never meets Optuna's fixed value space
for a categorical parameter. A changed grid or seed list is no change of context: the missing
points are queued, and points taken out are not reported. Any change of context is refused by
:func:`check_context`, naming what changed and the two ways on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from optuna.trial import FrozenTrial

from vae_lightning.experiments.spec import Experiment, ExperimentError, Range

#: The trial's seed: a user attribute of every trial.
SEED = "seed"
#: The trial's varied values (option -> value): a user attribute of every trial.
SETTING = "setting"
#: User attributes shared by every trial of a study, and how the refusal names each.
CONTEXT = {
    "overrides": "overrides (experiment file)",
    "extra_args": "extra command-line options",
    "base_config_sha256": "content of the base config",
    "training": "epochs, batch limits or pruning",
    "varied": "varied options (for a search: ranges and seeds)",
}


def _plain(value: Any) -> Any:
    """``value`` as the study stores it (a JSON round trip), so stored and new records compare equal."""
    return json.loads(json.dumps(value))


def context(experiment: Experiment, fast: bool, extra_args: list[str]) -> dict[str, Any]:
    """The user attributes (:data:`CONTEXT`) that every trial of this run records."""
    limits = experiment.fast if fast else None
    training = {"epochs": limits.epochs if limits else experiment.epochs, "pruning": experiment.pruning}
    if limits:
        training |= {"limit_train_batches": limits.limit_train_batches, "limit_val_batches": limits.limit_val_batches}
    varied: dict[str, Any] = {"options": list(experiment.vary)}
    if not experiment.is_grid:  # a search's trials draw from the ranges: changing them changes the study
        varied = {"vary": {k: dataclasses.asdict(v) if isinstance(v, Range) else v for k, v in experiment.vary.items()},
                  "seeds": experiment.seeds}
    return _plain({
        "overrides": experiment.overrides,
        "extra_args": list(extra_args),
        "base_config_sha256": hashlib.sha256(experiment.base_config.read_bytes()).hexdigest(),
        "training": training,
        "varied": varied,
    })


def point_key(setting: dict[str, Any], seed: int) -> str:
    """One grid point as a string: ``1``, ``1.0``, ``true`` and ``null`` stay distinct."""
    return json.dumps({SETTING: _plain(setting), SEED: seed}, sort_keys=True)


def trial_setting(trial: FrozenTrial) -> dict[str, Any]:
    """The varied values the trial was (or is queued to be) run with."""
    if SETTING in trial.user_attrs:
        return dict(trial.user_attrs[SETTING])
    return {k: v for k, v in (trial.params or trial.system_attrs.get("fixed_params", {})).items() if k != SEED}


def trial_seed(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(SEED, trial.params.get(SEED, -1)))


def trial_point(trial: FrozenTrial) -> str:
    """:func:`point_key` of the trial."""
    return point_key(trial_setting(trial), trial_seed(trial))


def grid_points(experiment: Experiment) -> set[str]:
    """Every point of the experiment's grid as it now reads (every setting x seed)."""
    return {point_key(setting, seed) for setting in experiment.grid_settings() for seed in experiment.seeds}


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _difference(name: str, old: Any, new: Any, experiment: Experiment) -> str:
    """One line of the refusal: what ``name`` was in the study's trials, and what it is now."""
    if old is None:
        return f"{CONTEXT[name]}: not recorded"
    if name == "base_config_sha256":
        return f"{CONTEXT[name]} {str(experiment.base_config)!r}: edited since (SHA-256 {old[:12]}… now {new[:12]}…)"
    if isinstance(old, dict) and isinstance(new, dict):
        changed = [f"{k} {_show(old[k]) if k in old else '(unset)'} -> {_show(new[k]) if k in new else '(unset)'}"
                   for k in sorted(set(old) | set(new)) if old.get(k, ...) != new.get(k, ...)]
        return f"{CONTEXT[name]}: " + "; ".join(changed)
    return f"{CONTEXT[name]}: {_show(old)} -> {_show(new)}"


def check_context(experiment: Experiment, trials: list[FrozenTrial], current: dict[str, Any], study_name: str,
                  compare_extra_args: bool = True) -> None:
    """Refuse (:class:`ExperimentError`) when a trial that counts was run with another context than
    ``current``. ``compare_extra_args=False`` (``report``, which takes no trial options) only
    requires the trials to agree among themselves on them."""
    names = list(CONTEXT) if compare_extra_args else [n for n in CONTEXT if n != "extra_args"]
    lines: list[str] = []
    seen_args: list[Any] = []
    for trial in trials:
        if not any(name in trial.user_attrs for name in CONTEXT):
            line = "the trials do not record what they were run with (run by an earlier version of the sweep)"
            lines += [line] if line not in lines else []
            continue
        for name in names:
            old = trial.user_attrs.get(name)
            if old != current[name]:
                line = _difference(name, old, current[name], experiment)
                lines += [line] if line not in lines else []
        if not compare_extra_args and "extra_args" in trial.user_attrs and trial.user_attrs["extra_args"] not in seen_args:
            seen_args.append(trial.user_attrs["extra_args"])
    if len(seen_args) > 1:
        lines.append(f"{CONTEXT['extra_args']}: the trials differ ({' vs '.join(map(_show, seen_args))})")
    if lines:
        changes = "\n".join(f"  - {line}" for line in lines)
        raise ExperimentError(
            f"study {study_name!r} holds trials run with other settings than this run's:\n{changes}\n"
            "Its report would mix the two. Either give the experiment a new name (name: in the experiment file) "
            "for a study of its own, or run again with --restart to discard the old trials (their run folders "
            f"stay on disk in {experiment.output_dir / study_name}).")
