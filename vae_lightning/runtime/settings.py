"""Checks of the command line's settings that jsonargparse does not make, run before anything is
built: each config file is valid YAML (the message names the file and line, where the parser
would say ``"<unicode string>"``), no number is NaN or infinite (a NaN learning rate would train
and then be reported as a divergence), and the run's output folder can be written (an existing
file there would end in a ``NotADirectoryError`` traceback once the run had started)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

#: How a config file's name ends; any other ``--config`` value may be inline YAML.
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")

#: How a non-finite number is written on a command line or in YAML.
NON_FINITE = {"nan", ".nan", "inf", ".inf", "+inf", "-inf", "-.inf", "+.inf", "infinity", "-infinity"}


def config_file_problem(args: Sequence[str]) -> str | None:
    """The first ``--config`` file in ``args`` that is missing or not valid YAML, described with its line."""
    for i, arg in enumerate(args):
        path = arg.removeprefix("--config=") if arg.startswith("--config=") else args[i + 1] if arg == "--config" and i + 1 < len(args) else None
        if path is not None and not Path(path).exists() and path.lower().endswith(CONFIG_SUFFIXES):
            return f"config file {path} does not exist. Pass the path of a YAML config file (e.g. --config configs/default.yaml)."
        if path is None or not Path(path).is_file():
            continue  # the option also takes inline YAML
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            return f"config file {path} is not valid YAML{where}: {problem}. Fix that line (or pass another --config)."
        except (OSError, UnicodeDecodeError) as err:
            return f"config file {path} cannot be read as text ({type(err).__name__}: {err}). Pass a YAML config file."
    return None


def non_finite_option(args: Sequence[str]) -> str | None:
    """A command-line option given NaN or infinity (``--model.optimizer.init_args.lr nan``)."""
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        key, equals, value = arg[2:].partition("=")
        if not equals and i + 1 < len(args):
            value = args[i + 1]
        if value.strip().lower() in NON_FINITE:
            return f"--{key} {value}: not a finite number. Give a finite value (e.g. --{key} 0.01)."
    return None


def _numbers(settings: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(settings, Namespace):
        settings = settings.as_dict()
    if isinstance(settings, Mapping):
        for key, value in settings.items():
            yield from _numbers(value, f"{prefix}{key}.")
    elif isinstance(settings, (list, tuple)):
        for i, value in enumerate(settings):
            yield from _numbers(value, f"{prefix}{i}.")
    elif isinstance(settings, float):
        yield prefix.rstrip("."), settings


def non_finite_setting(settings: Mapping[str, Any] | Namespace) -> str | None:
    """A parsed setting that is NaN or infinite (``.nan`` in a YAML file), named by its key."""
    for key, value in _numbers(settings):
        if not math.isfinite(value):
            return f"{key} is {value}, not a finite number. Give a finite value in the config file or with --{key}."
    return None


def negative_clip_value(trainer: Mapping[str, Any] | Namespace) -> str | None:
    """A negative ``gradient_clip_val``, which Lightning accepts and which would flip every
    clipped gradient's sign (norm clipping scales by the threshold over the norm)."""
    value = trainer.get("gradient_clip_val")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return (f"trainer.gradient_clip_val is {value}: a clipping threshold must be positive. Give one such as "
                "--trainer.gradient_clip_val 1.0, or null to switch clipping off.")
    return None


def unwritable_folder(path: str | Path | None, option: str, written: str = "") -> str | None:
    """Why the run could not write under ``path`` (an existing file, a read-only folder), or ``None``.
    ``written`` is the subfolder the run actually writes into (``lightning_logs`` under the root
    folder): a read-only root holding a writable one, as in the Docker image, is fine."""
    if path is None or "://" in str(path):
        return None
    path = Path(path)
    target = path / written
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"{option} {path}: {existing} is a file, not a folder. Pass a folder for the run's files (e.g. {option} runs)."
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{option} {path}: the folder {existing} cannot be written. Pass a folder you can write to (e.g. {option} runs)."
    return None


def _type_name(name: str) -> str:
    return {"NoneType": "null", "str": "string", "bool": "true/false"}.get(name, name.rsplit(".", 1)[-1])


def _split_types(listed: str) -> list[str]:
    """``typing.Literal[1, 3], <class 'NoneType'>`` as its members, split at the top-level commas."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(listed):
        if char in "[<(":
            depth += 1
        elif char in "]>)":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(listed[start:i].strip())
            start = i + 1
    return [part for part in (*parts, listed[start:].strip()) if part]


def _expected(description: str) -> list[str]:
    """How each member of a type description reads in a message: a class by its name, a
    ``Literal`` by its values."""
    if description.startswith("typing.Literal[") and description.endswith("]"):
        return _split_types(description[len("typing.Literal["):-1])
    return [_type_name(name) for name in re.findall(r"<class '([\w.]+)'>", description)]


def plain_type_error(message: str) -> str:
    """jsonargparse's report of a value of the wrong type (every member of a type union, nested
    per level) as one line naming the key, the types it takes and the value given; any other
    message unchanged."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if not keys:
        return message
    inner = message[message.rfind(f'Parser key "{keys[-1]}"'):]
    listed = re.search(r"Subtypes: \[(.*)\]\s*$", inner, flags=re.MULTILINE)
    single = re.match(r"\s*Expected a (.*?)\. Got value:", inner.split("\n", 2)[1]) if "\n" in inner else None
    description = listed.group(1) if listed else single.group(1) if single else inner.split("\n", 2)[1] if "\n" in inner else ""
    members = _split_types(description) if listed else [description]
    names = list(dict.fromkeys(name for member in members for name in _expected(member)))
    choices = any(member.startswith("typing.Literal[") for member in members)
    given = re.search(r"(?:Given value|Got value): ([^\n]*?)(?:\. Got value:.*)?$", inner, flags=re.MULTILINE)
    if not names or given is None:
        return message
    outer, *nested = dict.fromkeys(keys)  # a class's own arguments are reported one level down
    key = outer + "".join(f".init_args.{name}" for name in nested)
    expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if choices:
        return f"{key}: expected one of {expected}, got {given.group(1)!r}. Give one of those values (python -m vae_lightning fit --help lists each option's values)."
    return f"{key}: expected {expected}, got {given.group(1)!r}. Give a value of that type (python -m vae_lightning fit --help lists each option's type)."
