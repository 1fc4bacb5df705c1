"""Callbacks that do to a run what the world does to it (a signal, a crash, a bad batch), at a
chosen optimizer step; tests add them with :func:`helpers.runs.with_callback`."""

from __future__ import annotations

import os

import torch
from lightning.pytorch import Callback


class SignalAt(Callback):
    """Rank 0 sends ``signum`` to its own process (a real signal, as ``kill <pid>`` or Ctrl-C
    does), ``times`` times, while optimizer step ``step`` is being computed; after one signal the
    run is to stop once that step is done."""

    def __init__(self, step: int, signum: int, times: int = 1) -> None:
        self.step, self.signum, self.times = step, signum, times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1 and trainer.global_rank == 0:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


class CrashAt(Callback):
    """Raises an ordinary error at the start of optimizer step ``step`` (a bug, an OOM...)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class PoisonBatchAt(Callback):
    """Turns the batch of step ``step`` into NaNs, and keeps the weights before and after it."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.weights: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in (self.step, self.step + 1):
            self.weights[trainer.global_step] = torch.nn.utils.parameters_to_vector(pl_module.parameters()).clone()
        if trainer.global_step == self.step:
            batch[0].fill_(float("nan"))
