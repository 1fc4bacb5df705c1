"""The sweep's figures (PNG): validation-loss curves per setting, final loss per setting, the value
ranges of mu and sigma per latent dimension (the report's second panel), gradient norms before
and after clipping, and samples from the best model (the report's Figure 4)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vae_lightning.experiments.results import GRAD_TAGS, SettingResult, TrialResult
from vae_lightning.experiments.spec import setting_label, short_key
from vae_lightning.module import VAEModule
from vae_lightning.pictures import grid_rows, image_grid


def _figure(width: float, height: float, rows: int = 1, columns: int = 1) -> tuple[Figure, Any]:
    """A figure with its axes, drawn without pyplot (no global state, no display), as every
    picture of the project is."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, columns, squeeze=rows == columns == 1)


def _by_setting(ax: Axes, settings: list[SettingResult]) -> np.ndarray:
    """Settings along x, named by the varied option (or "setting" for several)."""
    keys = list(settings[0].setting) if settings else []
    ax.set_xticks(range(len(settings)), [s.label for s in settings], rotation=30 if len(settings) > 8 else 0)
    ax.set_xlabel(short_key(keys[0]) if len(keys) == 1 else "setting")
    return np.arange(len(settings))


def _save(fig: Figure, path: Path, empty: str | None = None) -> Path:
    """Write the figure; ``empty`` says, in place of the plot, why there is nothing to show."""
    if empty is not None:
        fig.axes[0].text(0.5, 0.5, empty, ha="center", va="center", transform=fig.axes[0].transAxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_val_curves(settings: list[SettingResult], title: str, path: Path) -> Path:
    """Validation loss per epoch: the mean over seeds per setting, a band from lowest to highest."""
    fig, ax = _figure(8, 4.5)
    ax.set(title=f"{title}: validation loss per epoch\n(mean over seeds, band: min-max)", xlabel="epoch", ylabel="val loss (RL + KL)")
    drawn = [s for s in settings if any(t.val_curve for t in s.completed)]
    for color, setting in zip(matplotlib.colormaps["viridis"](np.linspace(0, 1, max(len(drawn), 1))), drawn):
        curves = [t.val_curve for t in setting.completed if t.val_curve]
        values = np.array([c[: min(map(len, curves))] for c in curves])
        epochs = np.arange(1, values.shape[1] + 1)
        ax.plot(epochs, values.mean(axis=0), color=color, marker="o", markersize=3, label=f"{setting.label} (n={len(curves)})")
        ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)
    if drawn:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path, None if drawn else "no completed runs")


def plot_final_loss(settings: list[SettingResult], title: str, path: Path) -> Path:
    """Final validation loss per setting: mean ± std over seeds, each seed a dot, the best ringed,
    failed runs marked at the top."""
    fig, ax = _figure(7, 4.5)
    ax.set(title=f"{title}: final validation loss per setting", ylabel="final validation loss")
    x = _by_setting(ax, settings)
    means = np.array([s.mean("val_loss") for s in settings], dtype=float)
    stds = [s.std("val_loss") if s.completed else 0 for s in settings]
    ax.errorbar(x, means, yerr=stds, fmt="o", color="C0", capsize=4, label="mean ± std over seeds")
    top = max((v for s in settings for v in s.values("val_loss")), default=1.0)
    for i, setting in enumerate(settings):
        seeds = setting.values("val_loss")
        ax.scatter([i] * len(seeds), seeds, color="C1", s=12, alpha=0.7, zorder=3, label=None if i else "single seed")
        if setting.failed:
            ax.annotate(f"x {len(setting.failed)} failed", (i, top), ha="center", fontsize=8, color="C3")
    if np.isfinite(means).any():
        best = int(np.nanargmin(means))
        ax.scatter([best], [means[best]], s=180, facecolors="none", edgecolors="C2", linewidths=2, zorder=5, label="best")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_latent_ranges(settings: list[SettingResult], title: str, path: Path, max_dims: int = 4) -> Path:
    """For mu_i and sigma_i of each latent dimension i, per setting (averaged over seeds): a thin
    line from the smallest to the largest value over the validation images, a thick bar for
    mean ± std, a dot at the mean."""
    keys = {k for s in settings for t in s.completed for k in t.latent}
    dims = min(sum(f"mu{i}_min" in keys for i in range(1, len(keys) + 1)), max_dims)
    fig, axes = _figure(3.6 * max(dims, 1), 6.5, rows=2, columns=max(dims, 1))
    fig.suptitle(f"{title}: value ranges of mu and sigma per latent dimension\n"
                 "(posterior mean and std on the validation set, averaged over seeds)", fontsize=10)
    for row, name in enumerate(("mu", "sigma")):
        for col in range(dims):
            ax, key = axes[row][col], f"{name}{col + 1}"

            def avg(stat: str) -> np.ndarray:
                per_setting = [[t.latent[f"{key}_{stat}"] for t in s.completed if f"{key}_{stat}" in t.latent] for s in settings]
                return np.array([statistics.fmean(v) if v else math.nan for v in per_setting])

            x = _by_setting(ax, settings)
            ax.vlines(x, avg("min"), avg("max"), color="C0", linewidth=1.2, label="min-max")
            ax.vlines(x, avg("mean") - avg("std"), avg("mean") + avg("std"), color="C0", linewidth=6, alpha=0.5, label="mean ± std")
            ax.plot(x, avg("mean"), "o", color="C1", markersize=4, label="mean")
            ax.set(title=key, ylabel=f"{key} over validation images")
    if dims:
        axes[0][0].legend(fontsize=7)
    return _save(fig, path, None if dims else "no latent statistics (no completed run with a checkpoint)")


def plot_grad_norms(settings: list[SettingResult], title: str, path: Path) -> Path:
    """The global gradient norm before and after clipping per setting: the median over all logged
    steps of all seeds, a bar from the 10th to the 90th percentile."""
    fig, ax = _figure(7, 4.5)
    ax.set(title=f"{title}: gradient norm before and after clipping", ylabel="global gradient L2 norm per step")
    x = _by_setting(ax, settings)
    for offset, tag, label, color in ((-0.12, GRAD_TAGS[0], "before clipping", "C3"), (0.12, GRAD_TAGS[1], "after clipping", "C0")):
        norms = [[g for t in s.trials for g in t.grad_norms.get(tag, []) if math.isfinite(g)] for s in settings]
        if logged := [i for i, v in enumerate(norms) if v]:
            low, median, high = np.array([np.percentile(norms[i], [10, 50, 90]) for i in logged]).T
            ax.errorbar(x[logged] + offset, median, yerr=[median - low, high - median], fmt="o", color=color, capsize=3,
                        label=f"{label} (median, 10-90%)")
    if ax.has_data():
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    return _save(fig, path, None if ax.has_data() else f"not logged\n(the runs have no {', '.join(GRAD_TAGS)})")


def plot_best_samples(trial: TrialResult | None, title: str, path: Path, num_images: int = 64, seed: int = 0) -> Path:
    """Images decoded from draws of the prior by the best trial's last checkpoint (the report's Figure 4)."""
    fig, ax = _figure(6, 6.4)
    ax.set_axis_off()
    ax.set_title(f"{title}: samples from the best model")
    checkpoint = trial.run_dir / "checkpoints" / "last.ckpt" if trial is not None and trial.run_dir is not None else None
    if trial is None or checkpoint is None or not checkpoint.is_file():
        return _save(fig, path, "no completed run with a checkpoint")
    model = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        images = model.generate(num_images, generator=torch.Generator().manual_seed(seed))  # (N, C, H, W) in [0, 1]
    ax.imshow(image_grid(images, nrow=grid_rows(num_images)).permute(1, 2, 0).numpy())
    setting = f"{setting_label(trial.setting)}, seed {trial.seed}, val loss {trial.val_loss:.2f}"
    ax.set_title(f"{title}: {num_images} samples from the prior of the best model\n({setting})", fontsize=9)
    return _save(fig, path)
