"""Runs the rows: each in a fresh Python process (this file is that process's entry point), so
its peak memory is its own, and several rows round-robin for ratios a drifting machine moves less.

A row is a dict (``rows.py``): its ``kind`` picks the loop (``loops.RUNNERS``), the rest says
what it changes from the default run. The memory of a row on CPU is its process's peak
resident set (VmHWM, imports included) and its peak above the resident set reached after the
imports (the kernel's counter is reset there through ``/proc/self/clear_refs``); on GPU it is
``torch.cuda.max_memory_allocated``. Seconds per epoch are the median over the epochs after
the warm-up; images/s counts training images.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from settings import REPO_ROOT, Settings, load

#: What a row's output keeps of its spec (the rest is how it was run).
PRIVATE_KEYS = ("data_dir", "quiet", "log_suffix")


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Memory:
    """Peak memory of the running row from its creation on: host RSS on CPU, tensors on GPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.device = device
        self.rss_after_imports_kb = _status_kb("VmRSS")
        self.process_peak_before_kb = _status_kb("VmHWM")
        try:  # make the kernel's peak-RSS counter (VmHWM) restart from the current RSS (Linux)
            Path("/proc/self/clear_refs").write_text("5")
            self.reset_ok = True
        except OSError:
            self.reset_ok = False
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def report(self) -> dict[str, float | None]:
        import torch

        peak_kb = _status_kb("VmHWM")
        out: dict[str, float | None] = {"peak_rss_mb": None, "peak_rss_above_imports_mb": None}
        if peak_kb is not None:
            out["peak_rss_mb"] = round(max(peak_kb, self.process_peak_before_kb or 0) / 1024, 1)
            if self.reset_ok and self.rss_after_imports_kb is not None:
                out["peak_rss_above_imports_mb"] = round((peak_kb - self.rss_after_imports_kb) / 1024, 1)
        if self.device == "cuda":
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out


def settings_for(spec: dict[str, Any]) -> Settings:
    """The config's settings with the row's overlays, batch size and network arguments."""
    settings = load(spec.get("configs", ()))
    return replace(settings, batch_size=spec["batch_size"]).with_network(**spec.get("network", {}))


def apply_numerics(spec: dict[str, Any], settings: Settings) -> None:
    """Threads, and for the plain loops the config's numerics unless the row says otherwise (the
    project's CLI sets its own). Denormal flushing first, before any parallel work, so that every
    CPU thread inherits it."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec["kind"] == "project":
        return
    torch.set_float32_matmul_precision(spec.get("matmul_precision", settings.matmul_precision))
    torch.set_flush_denormal(spec.get("flush_denormal", settings.flush_denormal))


def summarise(timings: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Median wall seconds per epoch after the warm-up, and the process CPU seconds (all threads)
    of the same epochs: on a busy machine the CPU seconds move far less than the wall time."""
    times, cpu = timings["times"], timings["cpu"]
    seconds = statistics.median(times[warmup:] or times[-1:])
    return {
        "epoch_seconds": [round(t, 4) for t in times],
        "seconds_per_epoch": round(seconds, 4),
        "cpu_seconds_per_epoch": round(statistics.median(cpu[warmup:] or cpu[-1:]), 4),
        "train_images_per_epoch": timings["train_images"],
        "images_per_s": round(timings["train_images"] / seconds, 1),
        "val_loss": round(timings["val_loss"], 3),
    }


def run_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one row in this process and return its measurements."""
    import lightning  # noqa: F401  (imports first, so the memory baseline includes them)
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import loops
    import vae_lightning.cli  # noqa: F401
    from vae_lightning.runtime.numerics import denormal_flush_share

    settings = settings_for(spec)
    apply_numerics(spec, settings)
    memory = Memory(spec["device"])
    timings = loops.RUNNERS[spec["kind"]](spec, settings)
    return {**summarise(timings, spec["warmup"]), **memory.report(), "denormal_flush_share": denormal_flush_share()}


def public(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in PRIVATE_KEYS}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have run so far (user, nice, system; /proc/stat)."""
    try:
        user, nice, system = Path("/proc/stat").read_text().split()[1:4]
    except (OSError, ValueError):
        return None
    return (int(user) + int(nice) + int(system)) / os.sysconf("SC_CLK_TCK")


def measure(spec: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run ``spec`` in a fresh Python process; its output (progress bar, prints) goes to a log.
    ``others_cpu_share``: the share of the machine's cores that other processes kept busy
    meanwhile (0: the row had the machine to itself), from /proc/stat less the row's own CPU time."""
    log_path = log_dir / f"{_slug(spec['name'])}{spec.get('log_suffix', '')}.log"
    print(f"  {spec['name']:<44}", end="", flush=True)
    busy, own, start = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result, open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, __file__, json.dumps(spec), result.name],
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,
            env={**os.environ, **spec.get("env", {})},
        )
        text = Path(result.name).read_text()
    if proc.returncode != 0 or not text:
        print(f"failed (exit {proc.returncode}); see {log_path}")
        return {**public(spec), "error": f"exit {proc.returncode}"}
    row = {**public(spec), **json.loads(text)}
    if busy is not None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        own_seconds = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
        others = (_busy_cpu_seconds() - busy - own_seconds) / ((time.perf_counter() - start) * os.cpu_count())
        row["others_cpu_share"] = round(max(others, 0.0), 3)
    mem = row.get("peak_cuda_mb") if spec["device"] == "cuda" else row.get("peak_rss_mb")
    print(f"{row['seconds_per_epoch']:8.3f} s/epoch {row['images_per_s']:10.0f} img/s  {mem} MB  "
          f"others {row.get('others_cpu_share', 0):.0%}")
    return row


def measure_in_process(spec: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run ``spec`` in this process: quick, but each row's peak memory includes the earlier rows'."""
    print(f"  {spec['name']:<44}", flush=True)
    return {**public(spec), **run_row(spec)}


def measure_interleaved(specs: list[dict[str, Any]], repeats: int, run, log_dir: Path) -> list[dict[str, Any]]:
    """Run ``specs`` round-robin ``repeats`` times, in their order and then in reverse order by
    turns, and combine each row's runs: on a shared machine whose speed drifts over minutes, rows
    measured side by side, several times, give ratios that one pass cannot, and reversing the
    order cancels a steady drift between neighbours."""
    runs: dict[str, list[dict[str, Any]]] = {spec["name"]: [] for spec in specs}
    for i in range(repeats):
        for spec in specs if i % 2 == 0 else specs[::-1]:
            runs[spec["name"]].append(run({**spec, "log_suffix": f"_{i + 1}" if repeats > 1 else ""}, log_dir))
    return [combine_runs(row_runs) for row_runs in runs.values()]


def combine_runs(row_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of it: the fastest run's seconds per epoch (and CPU seconds),
    the highest peak memory, every run's values kept. The machine's noise only ever slows a run
    down, and on a shared virtual machine it moves a whole run (its epochs agree with each other
    to a few percent) by up to a third: the fastest run is the one closest to the row's own cost."""
    failed = [r for r in row_runs if "error" in r]
    if failed or len(row_runs) == 1:
        return failed[0] if failed else row_runs[0]
    row = dict(row_runs[0])
    for key in ("seconds_per_epoch", "cpu_seconds_per_epoch", "val_loss", "others_cpu_share"):
        if key in row:
            row[f"runs_{key}"] = [r[key] for r in row_runs]
    fastest = min(row_runs, key=lambda r: r["seconds_per_epoch"])
    row.update({key: fastest[key] for key in ("seconds_per_epoch", "cpu_seconds_per_epoch", "images_per_s")})
    for key in ("peak_rss_mb", "peak_rss_above_imports_mb", "peak_cuda_mb"):
        values = [r[key] for r in row_runs if r.get(key) is not None]
        if values:
            row[key] = max(values)
    row["epoch_seconds"] = [r["epoch_seconds"] for r in row_runs]
    return row


if __name__ == "__main__":  # a row's own process: measure.py SPEC_JSON RESULT_FILE
    Path(sys.argv[2]).write_text(json.dumps(run_row(json.loads(sys.argv[1]))))
