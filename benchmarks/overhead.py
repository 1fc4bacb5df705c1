"""Where the project's epoch goes beyond the model's own compute, piece by piece, on the CPU.

1. Per step and per epoch, in one process, round-robin: the floor's training steps, Lightning's
   bare loop (``loops.run_lightning``'s module and Trainer) and the project (the default
   config), each timed step by step (the low quartile and the median of the step times, which
   a busy machine moves less than an epoch's total), and for the Lightning loops the
   validation and the end of the epoch (checkpoints) apart; each loop's fastest run counts.
2. Microbenchmarks (the fastest of several repeats) of what runs around a step: dispatching
   one hook to the config's callbacks and to the module (with the config's ``NullProfiler`` and
   with Lightning's ``PassThroughProfiler``), the callbacks' own per-step work, the gradient
   diagnostics of a logged step, a checkpoint write, and cutting a batch from the images.

    python benchmarks/overhead.py --out benchmarks/results/cpu   # writes overhead_cpu.json there
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

import loops
from settings import REPO_ROOT, load

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def _best_us(fn, number: int = 200, repeat: int = 7) -> float:
    """Microseconds per call of ``fn``: the fastest of ``repeat`` timings of ``number`` calls."""
    return round(min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6, 2)


def _quantiles_ms(steps: list[float]) -> dict[str, float]:
    ordered = sorted(steps)
    return {"p25_ms": round(1000 * ordered[len(ordered) // 4], 3), "median_ms": round(1000 * statistics.median(ordered), 3)}


class Marks(Callback):
    """Records the start of each training step and of the epoch's validation and its end."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.phases: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append(time.perf_counter())

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.steps.append(time.perf_counter())  # the last step's end
            self.phases = [time.perf_counter()]

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.phases.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.phases.append(time.perf_counter())

    def last_epoch(self, steps: int) -> dict[str, float]:
        """The last epoch's step-time quantiles, its validation (with the callbacks' per-validation
        work) and what follows until fit ends (checkpoints, epoch-end logging), in seconds."""
        last = self.steps[-(steps + 1):]
        val_start, val_end, end = self.phases
        return {**_quantiles_ms([b - a for a, b in zip(last[:-1], last[1:])]),
                "validation_s": round(val_end - val_start, 4), "epoch_end_s": round(end - val_end, 4)}


def _floor(data_dir: str, steps: int) -> dict[str, float]:
    settings = load()
    train_x, val_x = loops.mnist_split(data_dir, settings, "cpu")
    training = loops.PlainTraining(settings, tuple(train_x.shape[1:]), "cpu")
    batches = loops.Batches(train_x, settings.batch_size, shuffle=True, limit=steps)
    for _ in range(2):
        marks = []
        for x in batches:
            marks.append(time.perf_counter())
            training.step(x)
        marks.append(time.perf_counter())
        with torch.no_grad():
            sum(training.loss(x) * len(x) for x in loops.Batches(val_x, settings.batch_size, shuffle=False))
        marks.append(time.perf_counter())
    return {**_quantiles_ms([b - a for a, b in zip(marks[:-2], marks[1:-1])]), "validation_s": round(marks[-1] - marks[-2], 4)}


def _lightning_loop(run, data_dir: str, steps: int, cli_args: list[str]) -> dict[str, float]:
    marks = Marks()
    spec = {"device": "cpu", "epochs": 2, "limit_batches": steps, "data_dir": data_dir, "cli_args": cli_args}
    run(spec, load(), callbacks=(marks,))  # limit_batches: all 40 validation batches
    return marks.last_epoch(steps)


def per_step(data_dir: str, steps: int, first: int) -> dict[str, dict[str, float]]:
    """One measurement of each loop, starting with the ``first``-th (the order rotates from run
    to run): 2 epochs of ``steps`` training steps and the whole validation, the second timed."""
    measures = {
        "floor": lambda: _floor(data_dir, steps),
        "lightning": lambda: _lightning_loop(loops.run_lightning, data_dir, steps, []),
        "project": lambda: _lightning_loop(loops.run_project, data_dir, steps, ["--trainer.num_sanity_val_steps=0"]),
    }
    names = list(measures)
    order = names[first % 3:] + names[: first % 3]
    return {name: measures[name]() for name in order}


def microbenchmarks(data_dir: str) -> dict[str, Any]:
    """Hook dispatch, the callbacks' own per-step work, diagnostics, checkpoints and batch cutting."""
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer import call

    from vae_lightning.callbacks import GradientDiagnostics
    from vae_lightning.cli import main
    from vae_lightning.data import to_pixels
    from vae_lightning.profiler import NullProfiler

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as save_dir:
        spec = {"device": "cpu", "epochs": 1, "limit_batches": 3, "data_dir": data_dir}
        cli = main(loops.project_args(spec, load(), save_dir), run=False)
        trainer, module = cli.trainer, cli.model
        trainer.fit(module, datamodule=cli.datamodule)  # 3 steps and 3 validation batches: a trainer in its fit state
        out["profiled_calls_per_training_step"] = _profiled_calls_per_step(data_dir)
        out["callbacks"] = [type(c).__name__ for c in trainer.callbacks]

        optimizer = trainer.optimizers[0]
        x = to_pixels(cli.datamodule.splits["train"][0][:128])
        batch = (x, torch.zeros(128, dtype=torch.long))
        loss = module.training_step(batch, 0)
        loss.backward()
        step_hooks = [("on_train_batch_start", (batch, 0)), ("on_before_backward", (loss,)), ("on_after_backward", ()),
                      ("on_before_optimizer_step", (optimizer,)), ("on_before_zero_grad", (optimizer,)),
                      ("on_train_batch_end", ({"loss": loss.detach()}, batch, 0))]
        for name, profiler in (("null_profiler", NullProfiler()), ("passthrough_profiler", PassThroughProfiler())):
            trainer.profiler = profiler
            out[f"callback_hooks_per_step_us_{name}"] = round(sum(
                _best_us(lambda: call._call_callback_hooks(trainer, hook, *args)) for hook, args in step_hooks), 1)
            out[f"module_hook_us_{name}"] = _best_us(lambda: call._call_lightning_module_hook(trainer, "on_before_zero_grad", optimizer))
        out["callbacks_own_per_step_us"] = round(sum(
            _best_us(lambda: getattr(cb, hook)(trainer, module, *args)) for cb in trainer.callbacks for hook, args in step_hooks), 1)

        diagnostics = next(c for c in trainer.callbacks if isinstance(c, GradientDiagnostics))

        def logged_step() -> None:
            diagnostics.every_n_steps = trainer.global_step + 1  # make this step a logged one
            diagnostics.on_before_optimizer_step(trainer, module, optimizer)
            diagnostics.on_train_batch_end(trainer, module, {"loss": loss.detach()}, batch, 0)

        out["gradient_diagnostics_logged_step_ms"] = round(_best_us(logged_step, number=20) / 1000, 2)
        path = Path(save_dir) / "timed.ckpt"
        out["checkpoint_write_ms"] = round(_best_us(lambda: trainer.save_checkpoint(path), number=5, repeat=5) / 1000, 1)
        out["checkpoint_mb"] = round(path.stat().st_size / 2**20, 1)

    images = cli.datamodule.splits["train"][0]
    floats = to_pixels(images)
    idx = torch.randperm(len(images))[:128]
    out["batch_us"] = {
        "uint8 index_select, converted (the project's)": _best_us(lambda: to_pixels(images.index_select(0, idx))),
        "uint8 images[idx], converted (before)": _best_us(lambda: to_pixels(images[idx])),
        "float preloaded, index_select": _best_us(lambda: floats.index_select(0, idx)),
        "float preloaded, images[idx]": _best_us(lambda: floats[idx]),
    }
    out["data_mb"] = {"uint8": round(images.numel() / 2**20, 1), "float": round(floats.numel() * 4 / 2**20, 1)}
    return out


def _profiled_calls_per_step(data_dir: str) -> float:
    """Hook calls Lightning makes per training step of the default config (each one wrapped in
    ``profiler.profile``), counted over fits of 2 and 6 steps without validation."""
    from vae_lightning.cli import main
    from vae_lightning.profiler import NullProfiler

    calls = []
    for steps in (2, 6):
        counter = {"n": 0}

        class Counting(NullProfiler):
            def profile(self, action_name: str):
                counter["n"] += 1
                return super().profile(action_name)

        with tempfile.TemporaryDirectory() as save_dir:
            spec = {"device": "cpu", "epochs": 1, "limit_batches": steps, "data_dir": data_dir,
                    "cli_args": ["--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0"]}
            cli = main(loops.project_args(spec, load(), save_dir), run=False)
            cli.trainer.profiler = Counting()
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        calls.append(counter["n"])
    return (calls[1] - calls[0]) / 4


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per timed epoch")
    p.add_argument("--repeats", type=int, default=5, help="round-robin runs of the three loops; the fastest of each counts")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load()
    torch.set_flush_denormal(settings.flush_denormal)  # the project's numerics for all three loops
    torch.set_float32_matmul_precision(settings.matmul_precision)
    load_start = round(os.getloadavg()[0], 2)
    runs = [per_step(args.data_dir, args.steps, first=i) for i in range(args.repeats)]
    # each loop's fastest run: the machine's noise moves whole runs and only ever slows them down
    combined = {loop: min((run[loop] for run in runs), key=lambda r: r["p25_ms"]) for loop in ("floor", "lightning", "project")}
    result = {
        "command": "python benchmarks/overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": torch.get_num_threads(), "steps": args.steps, "repeats": args.repeats,
        "load_average_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "per_step": combined, "runs": runs,
        "over_floor_ms": {loop: {k: round(combined[loop][k] - combined["floor"][k], 3) for k in ("p25_ms", "median_ms")}
                          for loop in ("lightning", "project")},
        "over_floor_percent": {loop: {k: round(100 * (combined[loop][k] / combined["floor"][k] - 1), 1) for k in ("p25_ms", "median_ms")}
                               for loop in ("lightning", "project")},
        "micro": microbenchmarks(args.data_dir),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead_cpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("per_step", "over_floor_ms", "micro")}, indent=2))
    return result


if __name__ == "__main__":
    main()
