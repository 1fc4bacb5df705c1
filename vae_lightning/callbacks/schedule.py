"""What the callbacks that act after validation share: when they are due, and where pictures go."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger


def tensorboard_writers(trainer: Trainer) -> list[Any]:
    """The ``SummaryWriter`` of every TensorBoard logger of ``trainer`` (pictures go only there)."""
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def checked_every_n_epochs(every_n_epochs: int) -> int:
    """``every_n_epochs`` of a per-validation callback, refused when negative (0: never)."""
    if every_n_epochs < 0:
        raise ValueError(f"every_n_epochs must be at least 1, or 0 to turn the callback off; got {every_n_epochs}")
    return every_n_epochs


def due_after_validation(trainer: Trainer, every_n_epochs: int) -> bool:
    """Whether a per-validation callback acts this epoch: every n-th epoch (never for 0), never in the sanity check."""
    return every_n_epochs > 0 and not trainer.sanity_checking and (trainer.current_epoch + 1) % every_n_epochs == 0
