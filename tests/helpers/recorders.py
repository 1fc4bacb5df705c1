"""Callbacks that record what a run did, for tests that compare runs."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import torch
from lightning.pytorch import Callback


class StepLosses(Callback):
    """Records the loss each training step returned."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class ResidentMemory(Callback):
    """At the end of every training epoch: this process's resident set size (MB), and, after a
    garbage collection, the live Python objects and the live tensors (count and MB)."""

    def __init__(self) -> None:
        self.rss_mb: list[float] = []
        self.objects: list[int] = []
        self.tensors: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        gc.collect()
        objects = gc.get_objects()
        tensors = [o for o in objects if torch.is_tensor(o)]
        self.objects.append(len(objects))
        self.tensors.append((len(tensors), sum(t.numel() * t.element_size() for t in tensors) / 2**20))
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        self.rss_mb.append(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)
