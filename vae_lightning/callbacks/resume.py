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
from litdata import StreamingDataLoader

#: the checkpoint's entry holding a ``StreamingDataLoader``'s ``state_dict()``
STREAMING_LOADER_KEY = "streaming_loader"


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

    ``data.dataset streaming``: this callback stores LitData's ``StreamingDataLoader.state_dict()``
    (its epoch and the samples served in it) in every checkpoint and hands it back to the loader's
    ``load_state_dict`` on resume. Lightning restores it too, but only from a mid-epoch checkpoint;
    from one written at an epoch's end the loader would start again at its first epoch's order.
    The loader forgets that it is resuming only when its iterator runs out, and Lightning stops
    asking for batches once an epoch's count is reached: the epoch after the resumed one would
    replay it and serve nothing. So at the end of the resumed epoch this callback tells the loader
    it is over (``restore = False``), and the next epoch starts afresh, as in a run never stopped.

    During training the first Ctrl-C or SIGTERM only asks to stop. At the end of the batch the
    processes agree (under DDP, a stop asked of any one process stops them all, after the same
    step) and Lightning's graceful stop (``SIGTERMException``) ends the run there, on every
    process; this callback then writes the checkpoint next to ``ModelCheckpoint``'s. A batch
    after which validation may run is finished with its validation and epoch-end checkpoint
    first, so the stop lands between two training batches. (Lightning's own SIGTERM handler,
    replaced while training, broadcasts from inside the signal handler: a 2-process run
    signalled mid-epoch hung with it.) A second Ctrl-C stops at once and
    saves nothing (the state may be half-way through a step); neither does any other
    exception, so a crash or a diverged run leaves the last checkpoint written before it.

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
        self.stop_requested = False
        self._previous_handlers: dict[int, Any] = {}
        self._loader_state: dict[str, Any] | None = None  # a streaming loader's, from the checkpoint

    @staticmethod
    def _streaming_loader(trainer: Trainer) -> StreamingDataLoader | None:
        loader = trainer.train_dataloader
        return loader if isinstance(loader, StreamingDataLoader) else None

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng_states" in state_dict:
            _set_rng_states(state_dict["rng_states"])

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if (loader := self._streaming_loader(trainer)) is not None:
            checkpoint[STREAMING_LOADER_KEY] = loader.state_dict()

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._loader_state = checkpoint.get(STREAMING_LOADER_KEY)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Only note the request: no collective call, no exception, whatever the process is doing."""
        if signum == signal.SIGINT:
            rank_zero_info("Ctrl-C: stopping after the current batch and saving the checkpoint (again: stop now)")
            signal.signal(signal.SIGINT, signal.default_int_handler)
        else:
            rank_zero_info("SIGTERM: stopping after the current batch and saving the checkpoint")
        self.stop_requested = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.stop_requested = False
        loader, state, self._loader_state = self._streaming_loader(trainer), self._loader_state, None
        if loader is not None and state is not None and not loader.restore:  # not restored by Lightning
            loader.load_state_dict(state)  # the loaders exist by now; their first pass is yet to come
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread: leave the signals alone
                break

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        batches = batch_idx + 1
        every = trainer.val_check_batch
        if batches >= trainer.num_training_batches or (isinstance(every, int) and every > 0 and batches % every == 0):
            return  # validation may follow this batch: stop after the next one (the same on every process)
        if trainer.strategy.reduce_boolean_decision(self.stop_requested, all=False):  # any process asked
            # Lightning's graceful stop, the flag its own SIGTERM handler sets (no public setter):
            # SIGTERMException once this batch's loop iteration is done, on every process
            trainer._signal_connector.received_sigterm = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loader = self._streaming_loader(trainer)
        if loader is not None and loader.restore:
            loader.restore = False  # the resumed epoch is over: the next iteration is a new epoch

    def _restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, TypeError):
                pass
        self._previous_handlers = {}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_signals()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_signals()
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
