"""Running the project as a user does: the default config on one CPU with real MNIST, in-process
(``main(["fit", *cpu_run_args(...)])``) or in a fresh process (:func:`run_command`). The tests'
own settings are small YAML files in tests/conf/ (:func:`conf_args`), put on top with
``--config``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
CONFIGS = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIGS / "default.yaml"
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
TEST_CONFIGS = TESTS / "conf"


def conf_args(name: str) -> list[str]:
    """``--config tests/conf/<name>.yaml``: one of the tests' small overlays."""
    path = TEST_CONFIGS / f"{name}.yaml"
    assert path.is_file(), f"no test config {path}"
    return ["--config", str(path)]


def cpu_run_args(data_dir: Path, root_dir: Path) -> list[str]:
    """The default config on one CPU with real MNIST (tests/conf/cpu.yaml), writing only under
    ``root_dir`` (``root_dir/lightning_logs/version_N``); put a subcommand before it and
    overrides (more ``--config`` files, options) after it."""
    return [
        "--config",
        str(DEFAULT_CONFIG),
        *conf_args("cpu"),
        f"--data.data_dir={data_dir}",
        f"--trainer.default_root_dir={root_dir}",
    ]


def short_fit_args(data_dir: Path, root_dir: Path, *extra: str) -> list[str]:
    """``fit`` of tests/conf/short_run.yaml (3 epochs of 4 batches of 32: 12 optimizer steps) on
    top of :func:`cpu_run_args`, then ``extra``: the run that resume, determinism, guard and
    checkpoint tests interrupt and compare."""
    return ["fit", *cpu_run_args(data_dir, root_dir), *conf_args("short_run"), *extra]


def with_callback(callback_class: type, **init_args: Any) -> str:
    """The option that appends a callback of the tests' own to the config's ``trainer.callbacks``."""
    entry = {"class_path": f"{callback_class.__module__}.{callback_class.__qualname__}", "init_args": init_args}
    return f"--trainer.callbacks+={json.dumps(entry)}"


def run_command(module: str, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a fresh process, as a user runs it from the repository root;
    it can import the tests' modules (callbacks and networks named by class path)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO_ROOT)])}
    environment.pop("VAE_LIGHTNING_TRACEBACK", None)
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


#: How Python begins a traceback: what a user's error must not show.
TRACEBACK = "Traceback (most recent call last)"


def in_process(args: list[str], capsys: Any) -> tuple[int, str]:
    """The command line's exit status and its stderr (``capsys``: pytest's fixture), run in this
    process; the stderr holds no traceback."""
    from vae_lightning.cli import run_cli

    try:
        status = run_cli(args)
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    assert TRACEBACK not in err, err[-3000:]
    return int(status or 0), err
