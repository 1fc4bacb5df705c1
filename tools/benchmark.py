"""The paired benchmark: an epoch of the project against the fair floor, a plain PyTorch loop with
the same model, numerics and batches, timed in the same moments of the machine.

    python -m tools.benchmark                 # from the repository root; writes docs/results/benchmark.json

Every loop is built by the CLI itself (``vae_lightning.cli.main(..., run=False)`` parsing
``configs/default.yaml``), so the project row is what users run and nothing here reads the config
a second way:

* the floor: the CLI's own module, optimizer and clipping, stepped by hand on batches cut from
  the datamodule's uint8 images (``module.loss_terms``: the project's loss, not a copy);
* ``lightning``: the same module's ``loss_terms`` in the smallest LightningModule and a bare
  Trainer (no callbacks, logger, progress bar or checkpoints): Lightning's own loop;
* ``project``: the CLI's Trainer and module, every callback, the logger and checkpoints;
* ``project, Lightning's callbacks only``: the same without the project's own callbacks.

After each training step of a Lightning loop one floor step runs and is timed apart
(:class:`PairedFloor`): the machine's drift, which moves whole runs by a third, moves both alike
and their step-by-step ratio holds still. The first epoch is a warm-up; each ratio is the median
over the steps, then over ``--repeats`` runs in alternating order. The project's ``self.log``
calls are timed inside its training steps, which prices the logging of the step's terms.
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from vae_lightning.cli import main as cli_main
from vae_lightning.data.loader import to_pixels

from tools.common import RESULTS, ROOT, machine, uptime, write_json

PROJECT_LIGHTNING_CALLBACKS = "project, Lightning's callbacks only"


def build(data_dir: str, root: str, *args: str):
    """The CLI's objects (model, datamodule, trainer) for ``configs/default.yaml`` plus ``args``."""
    return cli_main(["--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={data_dir}", "--data.download=false",
                     f"--trainer.default_root_dir={root}", "--trainer.num_sanity_val_steps=0", *args], run=False)


class Floor:
    """The fair floor: the CLI's module, optimizer and clipping stepped by hand, no Trainer."""

    def __init__(self, data_dir: str, root: str, *args: str) -> None:
        cli = build(data_dir, root, *args)
        self.module, self.datamodule = cli.model, cli.datamodule
        datamodule = self.datamodule
        datamodule.setup("fit")
        self.train_x, self.val_x = datamodule.splits["train"][0], datamodule.splits["val"][0]
        self.batch_size = datamodule.batch_size
        self.optimizer = self.module.configure_optimizers()
        self.clip_val, self.clip_algorithm = cli.trainer.gradient_clip_val, cli.trainer.gradient_clip_algorithm
        self._order = iter(())

    def _next_batch(self) -> torch.Tensor:
        idx = next(self._order, None)
        if idx is None:
            self._order = iter(torch.randperm(len(self.train_x)).split(self.batch_size))
            idx = next(self._order)
        return to_pixels(self.train_x.index_select(0, idx))

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        """Forward, backward, clipping and the update, in the order Lightning runs them; the loss."""
        self.module.train()
        loss = self.module.loss_terms(x)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_val:
            params = list(self.module.parameters())
            if self.clip_algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(params, self.clip_val)
            else:
                torch.nn.utils.clip_grad_value_(params, self.clip_val)
        self.optimizer.step()
        return loss.detach()

    def step(self) -> float:
        """One training step on the next batch (cut and converted as the project does); its milliseconds."""
        start = time.perf_counter()
        self.train_step(self._next_batch())
        return 1000 * (time.perf_counter() - start)

    @torch.no_grad()
    def validate(self) -> float:
        """One pass over the validation images; its seconds."""
        start = time.perf_counter()
        self.module.eval()
        for x in self.val_x.split(self.batch_size):
            self.module.loss_terms(to_pixels(x))
        return time.perf_counter() - start


class PairedFloor(Callback):
    """A floor step after each training step of the loop it is given to, both timed; after the
    loop's validation, the floor's; the first epoch is a warm-up."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self._mark: float | None = None
        self.loop_ms: list[float] = []
        self.floor_ms: list[float] = []
        self.phases: dict[str, float] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = None  # an epoch's first step follows the validation, not a step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        floor_ms = self.floor.step()
        if trainer.current_epoch > 0 and self._mark is not None:
            self.loop_ms.append(1000 * (now - self._mark))
            self.floor_ms.append(floor_ms)
        self._mark = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.phases["validation_start"] = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.phases["validation_s"] = time.perf_counter() - self.phases.pop("validation_start")
        self.phases["floor_validation_s"] = self.floor.validate()
        self.phases["validation_end"] = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.phases["epoch_end_s"] = time.perf_counter() - self.phases.pop("validation_end")

    def summary(self) -> dict[str, Any]:
        ratios = [a / b for a, b in zip(self.loop_ms, self.floor_ms)]
        return {
            "steps_measured": len(ratios),
            "step_ms": round(statistics.median(self.loop_ms), 3),
            "floor_step_ms": round(statistics.median(self.floor_ms), 3),
            "step_over_floor": round(statistics.median(ratios), 4),
            **{k: round(v, 4) for k, v in self.phases.items()},
        }


class LogClock:
    """Wraps a module's ``log`` and adds up its seconds during training steps (after the first
    epoch); ``log_dict`` calls ``log`` once per key, so it is counted through it, once."""

    def __init__(self, module: LightningModule) -> None:
        self.seconds, self.steps = 0.0, 0
        module.log = self._timed(module.log, module)

    def _timed(self, method, module: LightningModule):
        def timed(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            method(*args, **kwargs)
            if module.training and module.current_epoch > 0:
                self.seconds += time.perf_counter() - start
        return timed


class BareModule(LightningModule):
    """Lightning's own loop around the floor's loss: ``loss_terms`` in the steps, no logging."""

    def __init__(self, floor: Floor) -> None:
        super().__init__()
        self.vae, self.optimizer = floor.module, floor.optimizer

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.vae.loss_terms(batch[0])["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        self.vae.loss_terms(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer


def paired(data_dir: str, steps: int, first: int) -> dict[str, dict[str, Any]]:
    """The three Lightning loops, 2 epochs of ``steps`` steps and the whole validation each, with
    the floor paired step by step; the order alternates from run to run."""
    limits = ["--trainer.max_epochs=2", f"--trainer.limit_train_batches={steps}"]
    names = ["lightning", "project", PROJECT_LIGHTNING_CALLBACKS]
    out: dict[str, dict[str, Any]] = {}
    for name in names if first % 2 == 0 else names[::-1]:
        with tempfile.TemporaryDirectory() as root:
            pairing = PairedFloor(Floor(data_dir, root))
            if name == "lightning":
                floor = Floor(data_dir, root)
                trainer = Trainer(max_epochs=2, limit_train_batches=steps, accelerator="cpu", devices=1, logger=False,
                                  gradient_clip_val=floor.clip_val, gradient_clip_algorithm=floor.clip_algorithm,
                                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                  num_sanity_val_steps=0, callbacks=[pairing])
                trainer.fit(BareModule(floor), datamodule=floor.datamodule)
                out[name] = pairing.summary()
                continue
            cli = build(data_dir, root, *limits)
            if name == PROJECT_LIGHTNING_CALLBACKS:  # checkpoints and the progress bar, none of the project's own
                cli.trainer.callbacks = [c for c in cli.trainer.callbacks if type(c).__module__.startswith("lightning.")]
            clock = LogClock(cli.model)
            cli.trainer.callbacks.append(pairing)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            out[name] = pairing.summary()
            out[name]["self_log_ms_per_step"] = round(1000 * clock.seconds / steps, 4)
    return out


def epoch_over_floor(loop: dict[str, float], steps_per_epoch: int) -> float:
    """An epoch of the loop over one of the floor: its steps, validation and, for the loop, its end."""
    loop_s = steps_per_epoch * loop["step_ms"] / 1000 + loop["validation_s"] + loop["epoch_end_s"]
    floor_s = steps_per_epoch * loop["floor_step_ms"] / 1000 + loop["floor_validation_s"]
    return round(loop_s / floor_s, 4)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data", help="folder holding MNIST/raw")
    parser.add_argument("--steps", type=int, default=300, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the three loops in alternating order; the median is kept")
    parser.add_argument("--out", type=Path, default=RESULTS / "benchmark.json", help="the result file")
    args = parser.parse_args(argv)
    before = uptime()
    runs = [paired(args.data_dir, args.steps, first=i) for i in range(args.repeats)]
    keys = ("step_over_floor", "step_ms", "floor_step_ms", "validation_s", "floor_validation_s", "epoch_end_s")
    combined = {loop: {k: round(statistics.median(run[loop][k] for run in runs), 4) for k in keys} for loop in runs[0]}
    with tempfile.TemporaryDirectory() as root:
        datamodule = build(args.data_dir, root).datamodule
        datamodule.setup("fit")
        steps_per_epoch = math.ceil(len(datamodule.splits["train"][0]) / datamodule.batch_size)
    log_ms = statistics.median(run["project"]["self_log_ms_per_step"] for run in runs)
    result = {
        "command": shlex.join(["python", "-m", "tools.benchmark", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "steps": args.steps, "repeats": args.repeats,
        "uptime_before": before, "uptime_after": uptime(),
        "paired": combined,
        "epoch_over_floor": {loop: epoch_over_floor(combined[loop], steps_per_epoch) for loop in combined},
        "project_step_over_lightning_step": round(combined["project"]["step_over_floor"] / combined["lightning"]["step_over_floor"], 4),
        "self_log_ms_per_step": round(log_ms, 4),
        "self_log_share_of_project_step": round(log_ms / combined["project"]["step_ms"], 4),
        "runs": runs,
    }
    write_json(ROOT / args.out, result)
    return result


if __name__ == "__main__":
    main()
