"""The experiment file: which base config to train, which options to vary, seeds, epochs, where
runs go. Read from YAML and checked up front, so a typo fails before any training starts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

#: Values a varied option may take on a grid: what Optuna's GridSampler stores (``None`` is
#: how an experiment says "option off", e.g. no gradient clipping).
GridValue = str | int | float | bool | None

_TOP_KEYS = {
    "name",
    "title",
    "base_config",
    "overrides",
    "vary",
    "seeds",
    "epochs",
    "output_dir",
    "n_trials",
    "pruning",
    "fast",
}
_RANGE_KEYS = {"low", "high", "log", "step", "type"}
_FAST_KEYS = {"epochs", "limit_train_batches", "limit_val_batches"}


class ExperimentError(ValueError):
    """The experiment file (or a command-line choice about it) is wrong; the message says how."""


@dataclass(frozen=True)
class Range:
    """A continuous or integer interval for Optuna's default sampler (TPE)."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] = "float"


@dataclass(frozen=True)
class FastMode:
    """The reduced run used by ``--fast``: few batches and epochs, same code path."""

    epochs: int = 1
    limit_train_batches: int | float = 20
    limit_val_batches: int | float = 5


@dataclass(frozen=True)
class Experiment:
    """One sweep: ``vary`` holds, per dotted CLI key, either a list of values (a grid over all
    combinations times ``seeds``, run by Optuna's GridSampler) or a :class:`Range` (searched by
    Optuna's default sampler for ``n_trials`` trials, seeds taken in turn)."""

    name: str
    base_config: Path
    vary: dict[str, list[GridValue] | Range]
    seeds: list[int]
    epochs: int
    output_dir: Path
    title: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    n_trials: int | None = None
    pruning: bool = False
    fast: FastMode = field(default_factory=FastMode)
    source: Path | None = None

    @property
    def is_grid(self) -> bool:
        """Every varied option has a list of values: the sweep is a grid."""
        return all(isinstance(values, list) for values in self.vary.values())

    @property
    def display_title(self) -> str:
        return self.title or self.name

    def run_dir(self, fast: bool = False) -> Path:
        """Where this experiment's trials and default study live (a separate folder for --fast)."""
        return self.output_dir / (f"{self.name}_fast" if fast else self.name)

    def grid_settings(self) -> list[dict[str, GridValue]]:
        """Every combination of the varied values, in the file's order (seeds not included)."""
        settings: list[dict[str, GridValue]] = [{}]
        for key, values in self.vary.items():
            assert isinstance(values, list)
            settings = [{**setting, key: value} for setting in settings for value in values]
        return settings

    def total_trials(self) -> int:
        """Trials a complete sweep runs: grid size times seeds, or ``n_trials`` for a search."""
        if self.is_grid:
            return len(self.grid_settings()) * len(self.seeds)
        assert self.n_trials is not None
        return self.n_trials


def _fail(source: Path | str, message: str) -> ExperimentError:
    return ExperimentError(f"{source}: {message}")


def _check_grid_values(source: Path | str, key: str, values: list[Any]) -> list[GridValue]:
    if not values:
        raise _fail(source, f"vary.{key} is an empty list; give at least one value")
    for value in values:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise _fail(
                source,
                f"vary.{key} holds {value!r} ({type(value).__name__}); grid values must be numbers, "
                "strings, booleans or null (null switches the option off, e.g. no clipping)",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(source, f"vary.{key} holds {value}; use finite numbers")
    if len(set(map(repr, values))) != len(values):
        raise _fail(source, f"vary.{key} lists a value twice: {values}")
    return list(values)


def _check_range(source: Path | str, key: str, spec: dict[str, Any]) -> Range:
    unknown = set(spec) - _RANGE_KEYS
    if unknown:
        raise _fail(source, f"vary.{key} has unknown field(s) {sorted(unknown)}; a range takes {sorted(_RANGE_KEYS)}")
    if "low" not in spec or "high" not in spec:
        raise _fail(source, f"vary.{key} needs both 'low' and 'high' (or a list of values for a grid)")
    kind = spec.get("type", "float")
    if kind not in ("float", "int"):
        raise _fail(source, f"vary.{key}.type must be 'float' or 'int', got {kind!r}")
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (TypeError, ValueError):
        raise _fail(source, f"vary.{key}: 'low' and 'high' must be numbers, got {spec['low']!r}, {spec['high']!r}")
    if not low < high:
        raise _fail(source, f"vary.{key}: 'low' ({low}) must be below 'high' ({high})")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise _fail(source, f"vary.{key}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    return Range(low=low, high=high, log=log, step=None if step is None else float(step), type=kind)


def _positive_int(source: Path | str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(source, f"'{name}' must be a positive integer, got {value!r}")
    return value


def parse_experiment(data: Any, source: Path | str = "<experiment>") -> Experiment:
    """Check a loaded experiment mapping and build an :class:`Experiment`; raises
    :class:`ExperimentError` naming the field and the fix."""
    if not isinstance(data, dict):
        raise _fail(source, "an experiment file must be a YAML mapping (name:, base_config:, vary:, ...)")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for required in ("name", "base_config", "vary", "seeds", "epochs"):
        if required not in data:
            raise _fail(source, f"missing required key '{required}'")

    name = data["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise _fail(source, f"'name' must be a non-empty word without spaces or slashes, got {name!r}")

    base_config = Path(data["base_config"])
    if not base_config.is_file():
        raise _fail(
            source,
            f"base_config {str(base_config)!r} not found (paths are relative to the current "
            f"directory, {Path.cwd()}; run from the repository root or give an absolute path)",
        )

    vary_data = data["vary"]
    if not isinstance(vary_data, dict) or not vary_data:
        raise _fail(source, "'vary' must map at least one dotted option (e.g. trainer.gradient_clip_val) to values")
    vary: dict[str, list[GridValue] | Range] = {}
    for key, values in vary_data.items():
        if not isinstance(key, str) or "." not in key or key.startswith("-"):
            raise _fail(source, f"vary key {key!r} must be a dotted CLI option without dashes, e.g. trainer.gradient_clip_val")
        if key in ("seed_everything", "trainer.max_epochs"):
            raise _fail(source, f"vary.{key}: use the 'seeds' and 'epochs' keys instead")
        if isinstance(values, list):
            vary[key] = _check_grid_values(source, key, values)
        elif isinstance(values, dict):
            if "choices" in values:
                raise _fail(source, f"vary.{key}: write the choices as a plain list")
            vary[key] = _check_range(source, key, values)
        else:
            raise _fail(source, f"vary.{key} must be a list of values (grid) or a mapping with low/high (range), got {values!r}")

    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail(source, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(source, f"'seeds' lists a seed twice: {seeds}")

    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise _fail(source, "'overrides' must map dotted options to values")
    clash = set(overrides) & set(vary)
    if clash:
        raise _fail(source, f"{sorted(clash)} both fixed in 'overrides' and varied in 'vary'; keep one")

    experiment = Experiment(
        name=name,
        title=str(data.get("title") or ""),
        base_config=base_config,
        vary=vary,
        seeds=list(seeds),
        epochs=_positive_int(source, "epochs", data["epochs"]),
        output_dir=Path(data.get("output_dir", "runs/experiments")),
        overrides=dict(overrides),
        n_trials=None if data.get("n_trials") is None else _positive_int(source, "n_trials", data["n_trials"]),
        pruning=bool(data.get("pruning", False)),
        fast=_parse_fast(source, data.get("fast") or {}),
        source=Path(source) if not isinstance(source, Path) else source,
    )
    if not experiment.is_grid and experiment.n_trials is None:
        raise _fail(source, "a search over ranges needs 'n_trials' (how many trials to run in all)")
    return experiment


def _parse_fast(source: Path | str, data: Any) -> FastMode:
    if not isinstance(data, dict) or set(data) - _FAST_KEYS:
        raise _fail(source, f"'fast' must be a mapping with some of {sorted(_FAST_KEYS)}")
    return FastMode(**data)


def load_experiment(path: str | Path) -> Experiment:
    """Read and check the experiment file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"experiment file {str(path)!r} not found (e.g. configs/experiments/clip_value.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML: {err}") from err
    return parse_experiment(data, path)


def format_value(value: GridValue) -> str:
    """A setting's value as the tables and figures show it (``None`` reads as ``none``)."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def short_key(key: str) -> str:
    """The last part of a dotted key: ``model.optimizer.init_args.momentum`` -> ``momentum``."""
    return key.rsplit(".", 1)[-1]
