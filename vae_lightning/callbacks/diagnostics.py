"""Training diagnostics for TensorBoard: what gradient clipping does to each step, and what the
posterior q(z|x) looks like after each validation epoch.

Both are Lightning callbacks, configured in ``configs/default.yaml``'s ``trainer.callbacks``.
Clipping stays the Trainer's (``gradient_clip_val``, ``gradient_clip_algorithm``); the callbacks
only look at the gradients on either side of it. Lightning's order within one optimizer step
(``lightning/pytorch/plugins/precision/precision.py``, ``_after_closure``) is: backward,
``on_before_optimizer_step`` (gradients as computed, already unscaled under AMP), the module's
``configure_gradient_clipping`` (the Trainer's clipping), ``optimizer.step()``,
``on_train_batch_end``. The gradients stay in ``.grad`` until the next step's closure zeroes them,
so ``on_train_batch_end`` reads the clipped gradients and the updated weights.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.nn.utils import get_total_norm

from vae_lightning.callbacks.schedule import checked_every_n_epochs, due_after_validation, tensorboard_writers
from vae_lightning.latent import active_units, latent_statistics, posterior_std
from vae_lightning.losses import kl_divergence_per_dim


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
            logs ``train/loss_step`` for the same n). ``None``: the Trainer's ``log_every_n_steps``.
        count_every_step: check every step for clipping, so ``grad/clipped_step_fraction``
            covers all steps since the previous log. ``False``: only the logged steps, so each
            logged value is 0 or 1 (TensorBoard's smoothing averages them) and steps between
            logs cost nothing.
        update_ratio: log ``grad/update_ratio/<layer>`` (copies the weights on logged steps).
    """

    def __init__(self, every_n_steps: int | None = None, count_every_step: bool = False, update_ratio: bool = True) -> None:
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(
                f"every_n_steps must be at least 1 (or null for the Trainer's log_every_n_steps), got {every_n_steps}; "
                "to turn the gradient diagnostics off, leave GradientDiagnostics out of trainer.callbacks"
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
        if not trainer.is_global_zero:
            return
        due = (trainer.global_step + 1) % self._interval(trainer) == 0  # the steps Lightning logs train/loss_step on
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


class LatentDiagnostics(Callback):
    """Logs, after each validation epoch, statistics of the posterior q(z|x) over all validation
    images: the report's "value range" of mu and sigma, the KL per latent dimension and the
    active units, so that posterior collapse shows in TensorBoard.

    Metrics (TensorBoard scalars, dimensions numbered from 1 as in the report's mu1, mu2):

    - ``latent/mu{i}_{min,max,mean,std}``, ``latent/sigma{i}_{min,max,mean,std}``,
      ``latent/logvar_mean`` (``vae_lightning.latent.latent_statistics``);
    - ``latent/kl_dim{i}``: KL(q(z_i|x) || N(0, 1)) averaged over the images
      (``vae_lightning.losses.kl_divergence_per_dim``); they sum to ``val/kl``. A dimension
      with KL near 0 carries no information about x;
    - ``latent/active_units``: dimensions whose mean varies across the images,
      Var_x(mu_i) > ``active_threshold`` (Burda et al. 2015; ``vae_lightning.latent.active_units``);
    - with ``histograms``, TensorBoard histograms ``latent/mu{i}`` and ``latent/sigma{i}``.

    The callback keeps the (images, d) means and log-variances that ``validation_step`` returns
    (``outputs["mu"]``, ``outputs["logvar"]``; a module whose step returns no such outputs gets
    its batches encoded here) until the epoch ends; under DDP it gathers them from every rank,
    so the statistics cover the whole validation set. The sanity check is skipped.

    Args:
        every_n_epochs: log after every n-th validation epoch.
        active_threshold: variance of mu_i across the images above which dimension i is active.
        histograms: also write histograms of mu_i and sigma_i.
    """

    def __init__(self, every_n_epochs: int = 1, active_threshold: float = 1e-2, histograms: bool = False) -> None:
        super().__init__()
        self.every_n_epochs = checked_every_n_epochs(every_n_epochs)
        self.active_threshold = active_threshold
        self.histograms = histograms
        self._mu: list[Tensor] = []
        self._logvar: list[Tensor] = []
        self._collecting = False

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mu, self._logvar = [], []
        self._collecting = due_after_validation(trainer, self.every_n_epochs)

    @torch.no_grad()
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._collecting:
            return
        if isinstance(outputs, Mapping) and "mu" in outputs:
            mu, logvar = outputs["mu"], outputs["logvar"]
        else:
            mu, logvar = pl_module.network.encode(batch[0])
        self._mu.append(mu.detach().float())
        self._logvar.append(logvar.detach().float())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._collecting or not self._mu:
            return
        self._collecting = False
        mu = _gather_rows(pl_module, torch.cat(self._mu))
        logvar = _gather_rows(pl_module, torch.cat(self._logvar))
        self._mu, self._logvar = [], []
        metrics = {f"latent/{key}": value for key, value in latent_statistics(mu, logvar).items()}
        for i, kl in enumerate(kl_divergence_per_dim(mu, logvar), start=1):
            metrics[f"latent/kl_dim{i}"] = kl
        metrics["latent/active_units"] = active_units(mu, self.active_threshold).float()
        # Every rank holds the same gathered values, so no further reduction is needed.
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)
        if self.histograms:
            self._log_histograms(trainer, mu, logvar)

    @rank_zero_only
    def _log_histograms(self, trainer: Trainer, mu: Tensor, logvar: Tensor) -> None:
        sigma = posterior_std(logvar)
        for writer in tensorboard_writers(trainer):
            for i in range(mu.shape[1]):
                writer.add_histogram(f"latent/mu{i + 1}", mu[:, i], global_step=trainer.global_step)
                writer.add_histogram(f"latent/sigma{i + 1}", sigma[:, i], global_step=trainer.global_step)


def _gather_rows(pl_module: LightningModule, rows: Tensor) -> Tensor:
    """All ranks' ``rows`` (n_rank, d) concatenated, (sum n_rank, d); ranks may hold different n."""
    if pl_module.trainer.world_size == 1:
        return rows
    counts = pl_module.all_gather(torch.tensor(rows.shape[0], device=rows.device))  # (world,)
    padded = rows.new_zeros(int(counts.max()), rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = pl_module.all_gather(padded)  # (world, max n, d)
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(counts.tolist())])
