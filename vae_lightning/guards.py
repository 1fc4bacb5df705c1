"""Callbacks that keep a run's work when it goes wrong: a diverging loss, Ctrl-C, SIGTERM.

``NonFiniteLossGuard`` stops (or, when configured, skips a step) on a NaN or infinite loss
before the bad update reaches the weights or a checkpoint. ``ExactResume`` stores the random
states in every checkpoint and makes Ctrl-C and SIGTERM stop at the end of the current batch
and write ``last.ckpt`` there, so ``fit --ckpt_path last`` resumes exactly where the run stopped.

Both are plain callbacks listed in ``configs/default.yaml`` (``trainer.callbacks``).
"""

from __future__ import annotations

import copy
import math
import random
import signal
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or weights) and was stopped."""


def _last_checkpoint(trainer: Trainer) -> str | None:
    """Path of the newest checkpoint ``ModelCheckpoint`` has written in this run, if any."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint):
        return callback.last_model_path or callback.best_model_path or None
    return None


class NonFiniteLossGuard(Callback):
    """Stops training on a NaN or infinite loss with an error naming the step and the likely
    cause, before the bad step updates the weights; or skips such steps with a warning.

    The loss is checked before each backward pass (one host sync per step; under DDP the
    processes agree first, so all stop or skip together), the weights and the validation loss
    before each checkpoint is written, so a checkpoint never holds non-finite weights: the last
    checkpoint on disk is the last good one.

    Args:
        action: ``stop`` raises ``NonFiniteLossError``; ``skip`` drops the step with a warning
            (the weights and the optimizer's state, momentum included, are put back as they
            were before it) and goes on.
        max_consecutive_skips: with ``skip``, stop anyway after this many bad steps in a row
            (the run has diverged rather than hit one bad batch).
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop", max_consecutive_skips: int = 10) -> None:
        super().__init__()
        if action not in ("stop", "skip"):
            raise ValueError(f"NonFiniteLossGuard action must be 'stop' or 'skip', got {action!r}")
        if max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be at least 1, got {max_consecutive_skips}")
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps: list[int] = []
        self._consecutive = 0
        self._skip_this_step = False
        self._saved: tuple[list[Tensor], list[Tensor], dict[str, Any], Any] | None = None
        self._batch_idx = 0

    def _diagnosis(self, trainer: Trainer, what: str) -> str:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        clip = trainer.gradient_clip_val
        if not clip:
            clipping = "gradient clipping is off (set --trainer.gradient_clip_val, e.g. 1.0)"
        else:
            clipping = f"clipping by {trainer.gradient_clip_algorithm or 'norm'} at {clip} was not enough"
        checkpoint = _last_checkpoint(trainer)
        kept = f"the last good checkpoint, {checkpoint}, is kept" if checkpoint else "no checkpoint had been written yet"
        return (
            f"{what} at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx}): "
            f"training diverged. Likely causes: the learning rate is too high (lr = {lr}; lower "
            f"--model.optimizer.init_args.lr) or {clipping}. Training stopped; {kept}."
        )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        finite_here = bool(torch.isfinite(loss))
        # Under DDP every process takes the same decision, or the others would wait in backward.
        if trainer.strategy.reduce_boolean_decision(finite_here, all=True):
            self._consecutive = 0
            return
        what = f"non-finite training loss ({loss.item()})" if not finite_here else "non-finite training loss on another process"
        if self.action == "stop" or self._consecutive >= self.max_consecutive_skips:
            if self.action == "skip":
                what += f" after {self._consecutive} skipped steps in a row"
            raise NonFiniteLossError(self._diagnosis(trainer, what))
        self._consecutive += 1
        self._skip_this_step = True
        self.skipped_steps.append(trainer.global_step)
        rank_zero_warn(
            f"{what} at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx}): "
            f"skipping this step (no weight update)."
        )

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not self._skip_this_step:
            return
        # Keep the weights and the optimizer's state (momentum) as they are now and put them back
        # after the step; zero gradients keep clipping and the gradient diagnostics well-defined.
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self._saved = (params, [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict()), optimizer)
        for param in params:
            if param.grad is not None:
                param.grad.zero_()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._saved is None:
            return
        params, values, optimizer_state, optimizer = self._saved
        self._saved, self._skip_this_step = None, False
        with torch.no_grad():
            for param, value in zip(params, values):
                param.copy_(value)
        optimizer.load_state_dict(optimizer_state)

    def _check_weights(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bad = [name for name, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(self._diagnosis(trainer, f"non-finite weights in {', '.join(bad[:3])}"))
        val_loss = trainer.callback_metrics.get("val/loss")
        if val_loss is not None and not math.isfinite(float(val_loss)):
            raise NonFiniteLossError(self._diagnosis(trainer, f"non-finite validation loss ({float(val_loss)})"))

    # Checkpoint callbacks run after all others, so these checks come before any save.
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_weights(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = list(state_dict.get("skipped_steps", []))


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
