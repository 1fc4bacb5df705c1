"""``predict`` to pictures: PNG grids (and optionally one PNG per image) of what predict_step returns.

``VAEModule.predict_step`` returns ``{"samples", "inputs", "reconstructions"}`` for each batch
of the datamodule's predict split (the first ``data.predict_size`` test images). This writer
collects them over the epoch and saves them, so a headless run (a Docker container, a cluster
job) produces pictures without TensorBoard. For a conditional model it also draws
``class_samples.png``, one row per class asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchvision.utils import save_image

from vae_lightning.pictures.grids import class_rows, grid_rows, save_image_grid
from vae_lightning.runtime.errors import UserError

Kind = Literal["samples", "inputs", "reconstructions"]
KINDS: tuple[str, ...] = ("samples", "inputs", "reconstructions")


class ImagePredictionWriter(BasePredictionWriter):
    """Writes ``<kind>.png`` grids, and optionally ``<kind>/<index>.png``, after ``predict``.

    The grids of ``inputs`` and ``reconstructions`` share their layout, so cell (r, c) of one
    is the same test image as cell (r, c) of the other. Nothing happens during fit, validate
    or test. In a multi-process run each process writes its own share into ``rank<N>/``.

    Args:
        output_dir: folder for the PNGs; ``None``: ``predictions/`` inside the run's log
            folder (``lightning_logs/version_N/predictions``, beside the run's config.yaml).
        individual: also write each image as its own PNG, ``<kind>/<index>.png``.
        kinds: which outputs of predict_step to write: ``samples`` (decoded draws of
            z from the model's prior), ``inputs`` (the test images), ``reconstructions`` (their decoded
            posterior means).
        nrow: images per grid row; ``None``: a near-square grid.
        classes: a conditional model's ``class_samples.png``: one row of draws for each of these
            classes; ``None``: every class (a model that does not condition: no such grid).
        samples_per_class: draws in each row of ``class_samples.png``.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        individual: bool = False,
        kinds: Sequence[Kind] = KINDS,
        nrow: int | None = None,
        classes: Sequence[int] | None = None,
        samples_per_class: int = 8,
    ) -> None:
        super().__init__(write_interval="batch_and_epoch")
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty list drawn from {list(KINDS)}, got {list(kinds)}")
        if nrow is not None and nrow < 1:
            raise ValueError(f"nrow must be at least 1 (or null for a square grid), got {nrow}")
        if samples_per_class < 1:
            raise ValueError(f"samples_per_class must be at least 1, got {samples_per_class}")
        self.output_dir = output_dir
        self.individual = individual
        self.kinds = list(dict.fromkeys(kinds))
        self.nrow = nrow
        self.classes = None if classes is None else [int(c) for c in classes]
        self.samples_per_class = samples_per_class
        self._batches: dict[str, list[Tensor]] = {}

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        num_classes = getattr(pl_module, "num_classes", None)
        if self.classes is not None and num_classes is None:
            raise UserError(
                f"prediction.classes {self.classes}: model.network {type(pl_module.network).__name__} does not condition "
                "on the class; leave prediction.classes null, or predict with a conditional network"
            )
        if self.classes is not None and not all(0 <= c < num_classes for c in self.classes):
            raise UserError(f"prediction.classes {self.classes}: the model's classes are 0 to {num_classes - 1}")
        self._batches = {kind: [] for kind in self.kinds}

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Tensor],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep this batch's images (on the CPU) until the epoch ends."""
        for kind in self.kinds:
            self._batches[kind].append(prediction[kind].detach().float().cpu())

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any], batch_indices: Sequence[Any]
    ) -> None:
        """Write one grid per kind (and the single images) from the batches collected."""
        folder = self.resolve_dir(trainer)
        for kind, batches in self._batches.items():
            if not batches:
                continue
            images = torch.cat(batches)
            save_image_grid(images, folder / f"{kind}.png", nrow=self.nrow or grid_rows(len(images)))
            if self.individual:
                (folder / kind).mkdir(parents=True, exist_ok=True)
                for index, image in enumerate(images):
                    save_image(image, folder / kind / f"{index:05d}.png")
        self._batches = {}
        written = self.kinds + (["class_samples"] if self._class_samples(pl_module, folder) else [])
        rank_zero_info(f"Predicted images ({', '.join(written)}) written to {folder}")

    def _class_samples(self, pl_module: LightningModule, folder: Path) -> bool:
        """Write ``class_samples.png`` for a conditional model, one row per class; whether it did."""
        num_classes = getattr(pl_module, "num_classes", None)
        if num_classes is None:
            return False
        labels = class_rows(range(num_classes) if self.classes is None else self.classes, self.samples_per_class)
        save_image_grid(pl_module.generate(len(labels), classes=labels), folder / "class_samples.png", nrow=self.samples_per_class)
        return True

    def resolve_dir(self, trainer: Trainer) -> Path:
        """The folder this process writes to."""
        base = Path(self.output_dir) if self.output_dir is not None else Path(trainer.log_dir or ".") / "predictions"
        return base / f"rank{trainer.global_rank}" if trainer.world_size > 1 else base
