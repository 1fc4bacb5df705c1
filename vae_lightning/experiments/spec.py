"""The experiment file: which base config to train, which options to vary, seeds, epochs, where
runs go. jsonargparse checks its keys and types against the dataclasses below, their
``__post_init__`` its values, so a mistake fails, naming the file and the key, before training."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import PositiveInt


class ExperimentError(ValueError):
    """The experiment file (or a command-line choice about it) is wrong; the message says how."""


@dataclass(frozen=True)
class Range:
    """An interval searched by Optuna's default sampler (TPE) instead of a grid."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] = "float"


@dataclass(frozen=True)
class FastMode:
    """``--fast``: the same sweep on a few batches and epochs, in its own study."""

    epochs: PositiveInt = 1
    limit_train_batches: PositiveInt | float = 20
    limit_val_batches: PositiveInt | float = 5


@dataclass(frozen=True)
class Experiment:
    """One sweep (docs/experiments.md, "Running a sweep"). ``vary`` maps dotted CLI options to a list of
    values (a grid: every combination x ``seeds``, each run once; ``null`` switches an option
    off) or to a :class:`Range` (searched for ``n_trials`` trials, seeds in turn). Paths are
    relative to the current directory."""

    name: str
    base_config: Path
    vary: dict[str, list[Any] | Range]
    seeds: list[int]
    epochs: PositiveInt
    title: str = ""
    output_dir: Path = Path("runs/experiments")
    overrides: dict[str, Any] = field(default_factory=dict)
    n_trials: PositiveInt | None = None
    pruning: bool = False
    fast: FastMode = field(default_factory=FastMode)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"name: must be a word without spaces or slashes, got {self.name!r}")
        if not self.base_config.is_file():
            raise ValueError(f"base_config: {str(self.base_config)!r} not found (relative to {Path.cwd()})")
        if not self.vary:
            raise ValueError("vary: give at least one dotted option (e.g. trainer.gradient_clip_val) and its values")
        for key, values in self.vary.items():
            if "." not in key or key in ("seed_everything", "trainer.max_epochs"):
                raise ValueError(f"vary.{key}: vary dotted CLI options; seeds and epochs have their own keys")
            _check_values(f"vary.{key}", values)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: must be a non-empty list of distinct integers, got {self.seeds}")
        if clash := sorted(set(self.overrides) & set(self.vary)):
            raise ValueError(f"{clash} both fixed in overrides and varied in vary; keep one")
        if not self.is_grid and self.n_trials is None:
            raise ValueError("n_trials: a search over ranges needs it (trials to run in all)")

    @property
    def is_grid(self) -> bool:
        return all(isinstance(values, list) for values in self.vary.values())

    def run_dir(self, fast: bool = False) -> Path:
        """The experiment's trials, default study and report (a separate folder for --fast)."""
        return self.output_dir / (f"{self.name}_fast" if fast else self.name)

    def grid_settings(self) -> list[dict[str, Any]]:
        """Every combination of the varied values, in the file's order (seeds not included)."""
        return [dict(zip(self.vary, values)) for values in itertools.product(*self.vary.values())]  # type: ignore[arg-type]

    def total_trials(self) -> int:
        """Trials of a complete sweep: settings x seeds, or ``n_trials`` for a search."""
        return len(self.grid_settings()) * len(self.seeds) if self.is_grid else int(self.n_trials or 0)


def _check_values(key: str, values: list[Any] | Range) -> None:
    if isinstance(values, Range):
        if not values.low < values.high or (values.log and values.low <= 0):
            raise ValueError(f"{key}: low ({values.low}) must be below high ({values.high}), and above 0 for a log range")
    elif not values:
        raise ValueError(f"{key} is an empty list; give at least one value")
    elif bad := [v for v in values if isinstance(v, (list, dict)) or (isinstance(v, float) and not math.isfinite(v))]:
        raise ValueError(f"{key} holds {bad[0]!r}; grid values must be finite numbers, strings, booleans or null")
    elif len(set(map(repr, values))) != len(values):
        raise ValueError(f"{key} lists a value twice: {values}")


def load_experiment(path: str | Path) -> Experiment:
    """Read and check the experiment file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"experiment file {str(path)!r} not found (e.g. configs/experiments/clip_value.yaml)")
    try:
        return parse_experiment(yaml.safe_load(path.read_text()), path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ExperimentError(f"experiment file {path} is not valid YAML{where}: {problem}. Fix that line.") from None


def parse_experiment(data: Any, source: str | Path = "<experiment>") -> Experiment:
    """Check a loaded experiment mapping and build the :class:`Experiment`."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(Experiment)
    try:
        if not isinstance(data, dict):
            raise ValueError("must be a YAML mapping (name:, base_config:, vary:, seeds:, epochs:)")
        config = parser.parse_object(data).as_dict()
        config["vary"] = {k: Range(**v) if isinstance(v, dict) else v for k, v in config["vary"].items()}
        return Experiment(**{**config, "fast": FastMode(**config["fast"])})
    except (ArgumentError, ValueError, TypeError) as err:  # a wrong key or type, or a value refused above
        unknown = re.search(r"Option '([^']+)' is not accepted", str(err))
        top_level = unknown is not None and isinstance(data, dict) and unknown.group(1) in data
        keys = f" (an experiment file's keys: {', '.join(f.name for f in fields(Experiment))})" if top_level else ""
        raise ExperimentError(f"{source}: {err}{keys}") from None


def format_value(value: Any) -> str:
    """A value as tables and figures show it (``None`` reads as ``none``)."""
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def short_key(key: str) -> str:
    """``model.optimizer.init_args.momentum`` -> ``momentum``."""
    return key.rsplit(".", 1)[-1]


def setting_label(setting: dict[str, Any]) -> str:
    """``0.5`` for one varied option; ``gradient_clip_val=0.5, momentum=0.9`` for several."""
    if len(setting) == 1:
        return format_value(next(iter(setting.values())))
    return ", ".join(f"{short_key(k)}={format_value(v)}" for k, v in setting.items())
