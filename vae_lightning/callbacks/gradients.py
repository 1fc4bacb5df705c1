"""What gradient clipping does to each step, for TensorBoard (``grad/...`` scalars).

Clipping stays the Trainer's (``gradient_clip_val``, ``gradient_clip_algorithm``); the callback
only looks at the gradients on either side of it. Lightning's order within one optimizer step
(``lightning/pytorch/plugins/precision/precision.py``, ``_after_closure``) is: backward,
``on_before_optimizer_step`` (gradients as computed, already unscaled under AMP), the module's
``configure_gradient_clipping`` (the Trainer's clipping), ``optimizer.step()``,
``on_train_batch_end``. The gradients stay in ``.grad`` until the next step's closure zeroes them,
so ``on_train_batch_end`` reads the clipped gradients and the updated weights.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from torch.nn.utils import get_total_norm


def _layer_name(parameter_name: str) -> str:
    """``encoder.hidden.0.weight`` -> ``encoder.hidden.0``: a layer's weight and bias share a name."""
    head, _, last = parameter_name.rpartition(".")
    return head if head and last in ("weight", "bias") else parameter_name


def _max_abs(tensors: list[Tensor]) -> Tensor:
    """Largest |element| of all ``tensors``; ``aminmax`` is several times faster on a CPU than
    ``get_total_norm(..., norm_type=inf)`` and ``abs().max()``, which allocate or loop more."""
    return torch.stack([torch.stack(torch.aminmax(t)) for t in tensors]).abs().max()


class GradientDiagnostics(Callback):
    """Logs, every ``every_n_steps`` optimizer steps, the gradient before and after the Trainer's
    clipping and the size of the update it led to.

    Metrics (TensorBoard scalars, x-axis: the optimizer step):

    - ``grad/norm_before_clip``, ``grad/norm_after_clip``: global 2-norm of all gradients
      (``torch.nn.utils.get_total_norm``) on the logged step.
    - ``grad/clipped_step_fraction``: the fraction of steps whose gradient the clipping changed
      (clip by value: some element was beyond +-clip value; clip by norm: the norm was above it).
      0 when the Trainer does not clip.
    - ``grad/clipped_element_fraction``: clip by value only, the fraction of the logged step's
      gradient elements that were beyond +-clip value.
    - ``grad/update_ratio/<layer>``: ||W_after - W_before|| / ||W_before|| over the layer's
      weight and bias, the step's relative change of the layer (about 1e-3 is the usual
      healthy range for SGD; much smaller: the layer hardly learns).

    Cost: on steps that are not logged, nothing, or with ``count_every_step`` one fused norm
    of the gradients and a device-side tally (no host sync); the logged step copies the weights
    once and makes one host sync. Under DDP the gradients are already all-reduced, so only
    rank 0 computes and logs.

    Args:
        every_n_steps: log every n-th optimizer step (steps n-1, 2n-1, ..., where Lightning
            logs ``train/loss_step`` for the same n). ``None``: the Trainer's ``log_every_n_steps``;
            0: off (nothing is computed).
        count_every_step: check every step for clipping, so ``grad/clipped_step_fraction``
            covers all steps since the previous log. ``False``: only the logged steps, so each
            logged value is 0 or 1 (TensorBoard's smoothing averages them) and steps between
            logs cost nothing.
        update_ratio: log ``grad/update_ratio/<layer>`` (copies the weights on logged steps).
    """

    def __init__(self, every_n_steps: int | None = None, count_every_step: bool = False, update_ratio: bool = True) -> None:
        super().__init__()
        if every_n_steps is not None and every_n_steps < 0:
            raise ValueError(
                f"every_n_steps must be at least 1, null for the Trainer's log_every_n_steps, or 0 to turn the "
                f"gradient diagnostics off; got {every_n_steps}"
            )
        self.every_n_steps = every_n_steps
        self.count_every_step = count_every_step
        self.update_ratio = update_ratio
        self._reset_tallies()
        self._pending: dict[str, Any] | None = None

    def _reset_tallies(self) -> None:
        self._steps = 0
        self._clipped_steps: Tensor | int = 0  # a device tensor once a step is counted: no host sync

    def _interval(self, trainer: Trainer) -> int:
        return self.every_n_steps if self.every_n_steps is not None else trainer.log_every_n_steps

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset_tallies()
        self._pending = None

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer) -> None:
        interval = self._interval(trainer)
        if not trainer.is_global_zero or interval == 0:
            return
        due = (trainer.global_step + 1) % interval == 0  # the steps Lightning logs train/loss_step on
        if not (due or self.count_every_step):
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        clip_val = trainer.gradient_clip_val or 0.0
        value_clipping = clip_val > 0 and trainer.gradient_clip_algorithm == "value"
        norm = get_total_norm(grads) if due or (clip_val > 0 and not value_clipping) else None
        self._steps += 1
        if clip_val > 0:
            # what the Trainer's clipping will change: an element beyond +-clip_val, or the 2-norm above it
            largest = _max_abs(grads) if value_clipping else norm
            self._clipped_steps = self._clipped_steps + (largest > clip_val).long()
        if due:
            names = {id(p): name for name, p in pl_module.named_parameters()}
            self._pending = {
                "step": trainer.global_step,
                "norm_before_clip": norm,
                "params": params,
                "names": [names.get(id(p), f"param{i}") for i, p in enumerate(params)],
                "weights_before": [p.detach().clone() for p in params] if self.update_ratio else None,
                "clipped_element_fraction": (
                    torch.stack([(g.abs() > clip_val).sum() for g in grads]).sum() / sum(g.numel() for g in grads)
                    if value_clipping
                    else None
                ),
            }

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        params = pending["params"]
        device = pending["norm_before_clip"].device
        metrics: dict[str, Tensor] = {
            "grad/norm_before_clip": pending["norm_before_clip"],
            "grad/norm_after_clip": get_total_norm([p.grad for p in params if p.grad is not None]),
            "grad/clipped_step_fraction": torch.as_tensor(self._clipped_steps, device=device) / self._steps,
        }
        if pending["clipped_element_fraction"] is not None:
            metrics["grad/clipped_element_fraction"] = pending["clipped_element_fraction"]
        if pending["weights_before"] is not None:
            metrics.update(self._update_ratios(params, pending["names"], pending["weights_before"]))
        self._reset_tallies()
        values = torch.stack([v.detach().float().to(device) for v in metrics.values()]).tolist()  # the one host sync
        for logger in trainer.loggers:
            logger.log_metrics(dict(zip(metrics, values)), step=pending["step"])

    @staticmethod
    def _update_ratios(params: list[Tensor], names: list[str], before: list[Tensor]) -> dict[str, Tensor]:
        """||W_after - W_before|| / ||W_before|| per layer, weight and bias together."""
        update_sq: dict[str, list[Tensor]] = defaultdict(list)
        weight_sq: dict[str, list[Tensor]] = defaultdict(list)
        for p, name, old in zip(params, names, before):
            layer = _layer_name(name)
            update_sq[layer].append((p.detach() - old).pow(2).sum())
            weight_sq[layer].append(old.pow(2).sum())
        return {
            f"grad/update_ratio/{layer}": torch.stack(update_sq[layer]).sum().sqrt() / torch.stack(weight_sq[layer]).sum().sqrt()
            for layer in update_sq
        }
