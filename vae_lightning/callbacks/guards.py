"""A run that diverges keeps its work: ``NonFiniteLossGuard`` stops (or, when configured, skips a
step) on a NaN or infinite loss before the bad update reaches the weights or a checkpoint."""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from vae_lightning.runtime.errors import NonFiniteLossError


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
            clipping = f"clipping by {getattr(trainer.gradient_clip_algorithm, 'value', trainer.gradient_clip_algorithm) or 'norm'} at {clip} was not enough"
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
