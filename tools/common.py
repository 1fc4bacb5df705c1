"""What every measuring script shares: run a command of the CLI and time it with the machine's
load, the machine's facts, a run's TensorBoard scalars (read through ``vae_lightning.runs``), and
writing a result file. Runs go under ``runs/docs/`` (not kept in git); results into
``docs/results/``, which the docs quote and ``tests/test_docs_numbers.py`` checks."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vae_lightning.runs import read_scalars

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results"


def uptime() -> str:
    """The 1, 5 and 15-minute load averages, as ``uptime`` prints them."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, Any]:
    """The CPU, its cores, the Python, torch and Lightning versions of a measurement."""
    import lightning
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
    }


class LoadSampler:
    """Samples the 1-minute load average every ``interval`` seconds while a command runs."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"load_1min_mean": round(sum(s) / len(s), 2), "load_1min_max": round(max(s), 2)}


def cli(*args: str) -> list[str]:
    """``python -m vae_lightning <args>`` with this interpreter."""
    return [sys.executable, "-m", "vae_lightning", *args]


def run(args: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``args`` from the repository root (in ``env``, else this process's environment),
    output into ``log``; returns the command as text, its wall time and the machine's load
    around it. Raises if the command fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    before = uptime()
    start = time.perf_counter()
    with LoadSampler() as load, log.open("w") as out:
        done = subprocess.run(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed with status {done.returncode}; see {log}")
    return {
        "command": shlex.join(["python" if a == sys.executable else a for a in args]),
        "wall_time_s": round(wall, 1),
        "uptime_before": before,
        "uptime_after": uptime(),
        **load.summary(),
    }


def timed_commands(folder: Path, commands: dict[str, tuple[list[str], Path]] | None) -> dict[str, dict[str, Any]]:
    """Run each named command (``{name: (args, log)}``), storing what :func:`run` returns in
    ``folder/timings.json``; with ``commands=None`` read that file back (a summary of runs made)."""
    path = folder / "timings.json"
    if commands is None:
        if not path.is_file():
            raise SystemExit(f"no stored runs in {folder}: run without --summarize-only first")
        return json.loads(path.read_text())
    timings = {}
    for name, (args, log) in commands.items():
        timings[name] = run(args, log)
        path.write_text(json.dumps(timings, indent=2) + "\n")
    return timings


def test_metrics(version_dir: Path, digits: int = 4) -> dict[str, float]:
    """The last ``test/...`` scalars of a ``test`` run folder, without the prefix: name -> value."""
    return {tag.removeprefix("test/"): rounded(values[-1], digits) for tag, values in read_scalars(version_dir).items() if tag.startswith("test/")}


def shrink_png(path: Path, colors: int = 128) -> None:
    """Rewrite a PNG with a palette of ``colors`` colours: a third of the size for plots and digit
    grids, with no visible change."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=colors, dither=Image.Dither.NONE).save(path, optimize=True)


def shown(path: Path) -> Path:
    """``path`` as a command line or a message shows it: relative to the repository root, where
    :func:`run` runs commands, when it lies inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON, the way every result file is written."""
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {shown(path)}")


def rounded(x: float, digits: int = 2) -> float:
    return round(float(x), digits)


def script_parser(doc: str | None, summarize: bool = True):
    """The command line the result scripts share: ``--data_dir`` and (where the script can write
    its result again from stored runs) ``--summarize-only``."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data", help="folder holding MNIST/raw")
    if summarize:
        parser.add_argument("--summarize-only", action="store_true", help="write the result file again from the stored runs")
    return parser
