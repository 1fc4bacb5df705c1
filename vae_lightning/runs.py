"""A run of ``fit`` read back: its model and data rebuilt from a checkpoint, and the TensorBoard
scalars it wrote. ``explore``, the sweep reports, the measuring tools and the tests all read runs
through these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning.data import ImageDataModule
from vae_lightning.module import VAEModule


def load_run(ckpt_path: str | Path, **data_overrides: Any) -> tuple[VAEModule, ImageDataModule]:
    """The model (on the CPU, in eval mode) and the datamodule of the run that wrote ``ckpt_path``,
    both rebuilt from the settings the checkpoint holds; ``data_overrides`` replace data settings
    (``data_dir="../shared/data"``). The data stays on the CPU whatever the run used."""
    module = VAEModule.load_from_checkpoint(ckpt_path, map_location="cpu").eval()
    datamodule = ImageDataModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True, **{"data_on_device": False, **data_overrides})
    return module, datamodule


def read_events(log_dir: str | Path) -> EventAccumulator:
    """Everything written under ``log_dir`` (all event files; scalars and images without sampling)."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalar_values(events: EventAccumulator, tag: str) -> list[float]:
    """The values of scalar ``tag`` in step order (empty when it was not logged)."""
    if tag not in events.Tags()["scalars"]:
        return []
    return [event.value for event in sorted(events.Scalars(tag), key=lambda event: event.step)]


def read_scalars(log_dir: str | Path) -> dict[str, list[float]]:
    """Every scalar written under ``log_dir``: its values by tag, in step order."""
    events = read_events(log_dir)
    return {tag: scalar_values(events, tag) for tag in events.Tags()["scalars"]}
