"""Running the project as a user does: the default config on one CPU with real MNIST, in-process
(``main(["fit", *cpu_run_args(...)])``) or in a fresh process (:func:`run_command`)."""

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


def cpu_run_args(data_dir: Path, root_dir: Path) -> list[str]:
    """The default config on one CPU with real MNIST, writing only under ``root_dir``
    (``root_dir/lightning_logs/version_N``); put a subcommand before it and overrides after it."""
    return [
        "--config",
        str(DEFAULT_CONFIG),
        f"--data.data_dir={data_dir}",
        "--data.download=false",
        f"--trainer.default_root_dir={root_dir}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_model_summary=false",
    ]


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
