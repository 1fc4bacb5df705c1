"""Where the project's epoch goes beyond the model's own compute, piece by piece, on the CPU.

1. Step by step, paired: Lightning's bare loop (``loops.run_lightning``'s module and Trainer),
   the project (the default config) and the project with only the config's Lightning
   callbacks (checkpoints, progress bar: what the project's own callbacks cost), each with a
   floor step run and timed after every one of its training steps (:class:`PairedFloor`), so
   both see the same moments of a machine whose speed drifts; the median of the step-by-step
   ratios, over alternating runs. Per epoch, the validation (the loop's and the floor's) and
   the end of the epoch (checkpoints).
2. Microbenchmarks (the fastest of several repeats) of what runs around a step: dispatching
   one hook to the config's callbacks and to the module (with the config's ``NullProfiler`` and
   with Lightning's ``PassThroughProfiler``), the callbacks' own per-step work, the gradient
   diagnostics of a logged step, a checkpoint write, and cutting a batch from the images.

    python benchmarks/overhead.py --out benchmarks/results/cpu   # writes overhead_cpu.json there
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback

import loops
from settings import DEFAULT_DATA_DIR, REPO_ROOT, load

#: MNIST's training file; the config's ``val_size`` of them are held out for validation.
MNIST_TRAIN_IMAGES = 60_000


def _best_us(fn, number: int = 200, repeat: int = 7) -> float:
    """Microseconds per call of ``fn``: the fastest of ``repeat`` timings of ``number`` calls."""
    return round(min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6, 2)


class PairedFloor(Callback):
    """Runs one step of the floor (its own copy of the model, its own batch, cut as the floor cuts
    it) after each training step of the Lightning loop it is given to, and times the two apart;
    after the loop's validation, the floor's validation pass. The two alternate within
    milliseconds, so the machine's drift, which moves whole runs by up to a third, moves both
    alike and their ratio step by step holds still. The first epoch is a warm-up."""

    def __init__(self, data_dir: str) -> None:
        settings = load()
        train_x, self.val_x = loops.mnist_split(data_dir, settings, "cpu")
        self.training = loops.PlainTraining(settings, tuple(train_x.shape[1:]), "cpu")
        self.batches = loops.Batches(train_x, settings.batch_size, shuffle=True)
        self.batch_size = settings.batch_size
        self._batch_iter = iter(self.batches)
        self._mark: float | None = None
        self.cycles_ms: list[float] = []  # the Lightning loop's steps, batch end to batch end
        self.floor_ms: list[float] = []
        self.phases: dict[str, float] = {}

    def _floor_step(self) -> float:
        start = time.perf_counter()
        x = next(self._batch_iter, None)
        if x is None:
            self._batch_iter = iter(self.batches)
            x = next(self._batch_iter)
        self.training.train()
        self.training.step(x)
        return 1000 * (time.perf_counter() - start)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = None  # the first step of an epoch follows the validation: not a step's cycle

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        measured = trainer.current_epoch > 0 and self._mark is not None
        floor_ms = self._floor_step()
        if measured:
            self.cycles_ms.append(1000 * (now - self._mark))
            self.floor_ms.append(floor_ms)
        self._mark = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.phases["validation_start"] = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.phases["validation_s"] = time.perf_counter() - self.phases.pop("validation_start")
        start = time.perf_counter()
        self.training.validation_loss(loops.Batches(self.val_x, self.batch_size, shuffle=False))
        self.phases["floor_validation_s"] = time.perf_counter() - start
        self.phases["validation_end"] = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.phases["epoch_end_s"] = time.perf_counter() - self.phases.pop("validation_end")

    def summary(self) -> dict[str, float]:
        """The loop's and the floor's step times (medians), the median of their step-by-step
        ratios, and the last epoch's validation (the loop's and the floor's) and end (checkpoints)."""
        ratios = [c / f for c, f in zip(self.cycles_ms, self.floor_ms)]
        return {
            "steps_measured": len(ratios),
            "step_ms": round(statistics.median(self.cycles_ms), 3),
            "floor_step_ms": round(statistics.median(self.floor_ms), 3),
            "step_over_floor": round(statistics.median(ratios), 4),
            "step_over_floor_p25_p75": [round(q, 4) for q in statistics.quantiles(ratios, n=4)[::2]],
            **{k: round(v, 4) for k, v in self.phases.items()},
        }


#: The project with the config's Lightning callbacks (checkpoints, progress bar) and none of its own.
PROJECT_LIGHTNING_CALLBACKS = "project, Lightning's callbacks only"


def _lightning_callbacks() -> list[dict[str, Any]]:
    """The entries of ``configs/default.yaml``'s ``trainer.callbacks`` that are Lightning's own."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "default.yaml").read_text())
    return [c for c in config["trainer"]["callbacks"] if c["class_path"].startswith("lightning.")]


def paired(data_dir: str, steps: int, first: int) -> dict[str, dict[str, float]]:
    """Lightning's bare loop, the project, and the project without its own callbacks, each for
    2 epochs of ``steps`` training steps and the whole validation, with the floor paired step
    by step (:class:`PairedFloor`); the order alternates from run to run."""
    no_sanity = ["--trainer.num_sanity_val_steps=0"]
    runs = {
        "lightning": (loops.run_lightning, []),
        "project": (loops.run_project, no_sanity),
        PROJECT_LIGHTNING_CALLBACKS: (loops.run_project, [*no_sanity, f"--trainer.callbacks={json.dumps(_lightning_callbacks())}"]),
    }
    order = list(runs) if first % 2 == 0 else list(runs)[::-1]
    out = {}
    for name in order:
        run, cli_args = runs[name]
        pairing = PairedFloor(data_dir)
        spec = {"device": "cpu", "epochs": 2, "limit_batches": steps, "data_dir": data_dir, "cli_args": cli_args}
        run(spec, load(), callbacks=(pairing,))
        out[name] = pairing.summary()
    return out


def microbenchmarks(data_dir: str) -> dict[str, Any]:
    """Hook dispatch, the callbacks' own per-step work, diagnostics, checkpoints and batch cutting."""
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer import call

    from vae_lightning.callbacks import GradientDiagnostics
    from vae_lightning.cli import main
    from vae_lightning.data import to_pixels
    from vae_lightning.runtime.profiler import NullProfiler

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
    from vae_lightning.runtime.profiler import NullProfiler

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


def _epoch_ratio(loop: dict[str, float], train_images: int, batch_size: int) -> float:
    """An epoch of the loop over one of the floor, from the paired step times and the per-epoch
    parts: the training images' steps, the validation and, for the loop, the epoch's end."""
    steps = math.ceil(train_images / batch_size)
    loop_s = steps * loop["step_ms"] / 1000 + loop["validation_s"] + loop["epoch_end_s"]
    floor_s = steps * loop["floor_step_ms"] / 1000 + loop["floor_validation_s"]
    return round(loop_s / floor_s, 4)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per timed epoch")
    p.add_argument("--repeats", type=int, default=5, help="runs of the three loops, in alternating order; each ratio is the median over the runs")
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
    runs = [paired(args.data_dir, args.steps, first=i) for i in range(args.repeats)]
    # each loop's step-by-step ratio to the floor, the median over the runs (each ratio is already steady)
    combined = {
        loop: {key: round(statistics.median(run[loop][key] for run in runs), 4)
               for key in ("step_over_floor", "step_ms", "floor_step_ms", "validation_s", "floor_validation_s", "epoch_end_s")}
        for loop in runs[0]
    }
    result = {
        "command": "python benchmarks/overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": torch.get_num_threads(), "steps": args.steps, "repeats": args.repeats,
        "load_average_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "paired": combined, "runs": runs,
        "project_step_over_lightning_step": round(combined["project"]["step_over_floor"] / combined["lightning"]["step_over_floor"], 4),
        "epoch_over_floor_from_paired_steps": {loop: _epoch_ratio(combined[loop], MNIST_TRAIN_IMAGES - settings.val_size, settings.batch_size) for loop in combined},
        "micro": microbenchmarks(args.data_dir),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead_cpu.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("paired", "project_step_over_lightning_step", "epoch_over_floor_from_paired_steps", "micro")}, indent=2))
    return result


if __name__ == "__main__":
    main()
