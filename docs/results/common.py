"""Shared helpers of the measurement scripts in docs/results/: run a command of the project's CLI
and time it, record the machine and its load, read a run's TensorBoard scalars, write results.

Every script here runs from the repository root, writes its runs under ``runs/docs/`` (not kept
in git) and its result file beside itself; the docs quote the result files, and
``tests/test_docs_numbers.py`` checks that they agree.
"""

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

RESULTS = Path(__file__).resolve().parent
ROOT = RESULTS.parents[1]


def uptime() -> str:
    """The output of ``uptime``: load averages over 1, 5 and 15 minutes."""
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
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
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


def run(args: list[str], log: Path) -> dict[str, Any]:
    """Run ``args`` from the repository root, output into ``log``; returns the command as text, its
    wall time in seconds and the machine's load (``uptime`` before and after, sampled 1-minute load).
    Raises if the command fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    before = uptime()
    start = time.perf_counter()
    with LoadSampler() as load, log.open("w") as out:
        done = subprocess.run(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
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


def cli(*args: str) -> list[str]:
    """``python -m vae_lightning <args>`` with this interpreter."""
    return [sys.executable, "-m", "vae_lightning", *args]


def scalars(version_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of one run folder's TensorBoard events: tag -> [(step, value), ...] in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(version_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def per_epoch(values: list[tuple[int, float]]) -> list[float]:
    """The values of an epoch-level scalar (one per epoch, in order)."""
    return [v for _, v in values]


def test_metrics(version_dir: Path, digits: int = 4) -> dict[str, float]:
    """The ``test/...`` scalars of a ``test`` run folder, without the prefix: name -> value."""
    return {tag.removeprefix("test/"): rounded(pairs[-1][1], digits) for tag, pairs in scalars(version_dir).items() if tag.startswith("test/")}


def timed_commands(folder: Path, commands: dict[str, tuple[list[str], Path]] | None) -> dict[str, dict[str, Any]]:
    """Run each named command (``{name: (args, log)}``) and store what :func:`run` returns in
    ``folder/timings.json``; with ``commands=None`` read that file back instead (a summary of
    the runs already made)."""
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


def shrink_png(path: Path, colors: int = 128) -> None:
    """Rewrite a PNG with a palette of ``colors`` colours: a third of the size or less for plots
    and digit grids, with no visible change."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=colors, dither=Image.Dither.NONE).save(path, optimize=True)


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON, the way every result file here is written."""
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def rounded(x: float, digits: int = 2) -> float:
    return round(float(x), digits)
