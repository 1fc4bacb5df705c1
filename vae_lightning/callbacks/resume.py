"""Stopping and resuming without losing or changing anything: ``ExactResume`` stores the random
states in every checkpoint and makes Ctrl-C and SIGTERM stop at the end of the current batch
and write ``last.ckpt`` there, so ``fit --ckpt_path last`` resumes exactly where the run stopped."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


def _rng_states() -> dict[str, Any]:
    """The global random states (torch, CUDA, Python, NumPy) in types ``weights_only`` loads."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    np.random.set_state(
        ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"], numpy_state["has_gauss"],
         numpy_state["cached_gaussian"])
    )
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(Callback):
    """Makes a resumed run continue exactly as if it had not stopped, and makes Ctrl-C and
    SIGTERM stop cleanly at the end of the current batch with ``last.ckpt`` written there.

    What a checkpoint needs for an exact resume: the weights and optimizer state (momentum),
    the loops' progress (Lightning), the data position (``TensorBatchLoader.state_dict``) and
    the global random states, which draw the noise eps of z = mu + sigma * eps. Lightning
    does not store the last; this callback adds them to every checkpoint and restores them.

    Lightning already turns SIGTERM into a stop between batches (``SIGTERMException``, sent to
    every process under DDP); the first Ctrl-C is routed the same way. At that clean point the
    checkpoint is written next to ``ModelCheckpoint``'s. A second Ctrl-C stops at once, as
    usual, and saves nothing (the state may be half-way through a step); neither does any
    other exception, so a crash or a diverged run leaves the last checkpoint written before it.

    Args:
        filename: checkpoint written on Ctrl-C/SIGTERM, without ``.ckpt``, in
            ``ModelCheckpoint``'s folder (``last``: the file ``--ckpt_path last`` finds).
    """

    def __init__(self, filename: str = ModelCheckpoint.CHECKPOINT_NAME_LAST) -> None:
        super().__init__()
        if not filename:
            raise ValueError("ExactResume filename must not be empty")
        self.filename = filename
        self.saved_path: str | None = None
        self._previous_sigint: Any = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng_states" in state_dict:
            _set_rng_states(state_dict["rng_states"])

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        rank_zero_info("Ctrl-C: stopping after the current batch and saving the checkpoint (Ctrl-C again: stop now)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.raise_signal(signal.SIGTERM)  # Lightning's graceful stop, coordinated across processes

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        try:
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous_sigint = None

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            try:
                signal.signal(signal.SIGINT, self._previous_sigint)
            except ValueError:
                pass
            self._previous_sigint = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            path = str(Path(callback.dirpath) / f"{self.filename}{callback.FILE_EXTENSION}")
        else:
            path = str(Path(trainer.default_root_dir) / "checkpoints" / f"{self.filename}.ckpt")
        trainer.save_checkpoint(path, weights_only=False)  # the full state, optimizer included
        self.saved_path = path
        rank_zero_info(f"Stopped at step {trainer.global_step}; saved {path}. Resume with --ckpt_path {path}")
