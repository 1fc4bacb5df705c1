"""Callbacks that record what a run did, for tests that compare runs."""

from __future__ import annotations

from lightning.pytorch import Callback


class StepLosses(Callback):
    """Records the loss each training step returned."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
