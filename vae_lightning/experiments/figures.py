"""The sweep's figures (matplotlib, written as PNG): validation-loss curves per setting, final
loss against the setting, the value ranges of mu and sigma per latent dimension (the report's
second panel), gradient norms before and after clipping, and the best model's samples (the
report's Figure 4)."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (and none on a server)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vae_lightning.experiments.results import GRAD_TAGS, SettingResult, TrialResult  # noqa: E402
from vae_lightning.experiments.spec import format_value, short_key  # noqa: E402
from vae_lightning.images import grid_rows, image_grid  # noqa: E402
from vae_lightning.module import VAEModule  # noqa: E402

DPI = 100


def _axis_name(settings: list[SettingResult]) -> str:
    """The varied option's short name (``gradient_clip_val``), or "setting" for several."""
    keys = list(settings[0].setting) if settings else []
    return short_key(keys[0]) if len(keys) == 1 else "setting"


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _colors(n: int) -> list:
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def plot_val_curves(settings: list[SettingResult], title: str, path: Path) -> Path:
    """Validation loss per epoch: the mean over seeds per setting, with a band from the lowest
    to the highest seed."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = 0
    for color, setting in zip(_colors(len(settings)), settings):
        curves = [t.val_curve for t in setting.completed if t.val_curve]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        values = np.array([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.plot(epochs, values.mean(axis=0), color=color, marker="o", markersize=3, label=f"{setting.label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)
        drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (RL + KL)")
    ax.set_title(f"{title}: validation loss per epoch\n(mean over seeds, band: min-max)")
    if drawn:
        ax.legend(title=_axis_name(settings), fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_final_loss(settings: list[SettingResult], title: str, path: Path) -> Path:
    """Final validation loss against the setting: mean and std over seeds, each seed as a dot,
    settings whose runs failed marked at the top."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positions = np.arange(len(settings))
    means = [s.mean("val_loss") for s in settings]
    finite = [m for m in means if math.isfinite(m)]
    top = max((v for s in settings for v in s.values("val_loss")), default=1.0)
    ax.errorbar(
        positions,
        means,
        yerr=[s.std("val_loss") if math.isfinite(s.std("val_loss")) else 0 for s in settings],
        fmt="o",
        color="C0",
        capsize=4,
        label="mean ± std over seeds",
    )
    for x, setting in zip(positions, settings):
        seeds = setting.values("val_loss")
        ax.scatter([x] * len(seeds), seeds, color="C1", s=12, alpha=0.7, zorder=3, label="single seed" if x == 0 else None)
        if setting.failed:
            ax.scatter([x], [top], marker="x", color="C3", s=60, zorder=4, label="failed run(s)" if not any(s.failed for s in settings[: int(x)]) else None)
            ax.annotate(f"{len(setting.failed)} failed", (x, top), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8, color="C3")
    if finite:
        best = int(np.nanargmin(np.array(means, dtype=float)))
        ax.scatter([best], [means[best]], s=180, facecolors="none", edgecolors="C2", linewidths=2, zorder=5, label="best")
    ax.set_xticks(positions, [s.label for s in settings], rotation=30 if len(settings) > 8 else 0)
    ax.set_xlabel(_axis_name(settings))
    ax.set_ylabel("final validation loss")
    ax.set_title(f"{title}: final validation loss per setting")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _latent_dims(settings: list[SettingResult]) -> int:
    keys = {k for s in settings for t in s.completed for k in t.latent}
    dims = [int(m.group(1)) for k in keys if (m := re.fullmatch(r"mu(\d+)_min", k))]
    return max(dims, default=0)


def plot_latent_ranges(settings: list[SettingResult], title: str, path: Path, max_dims: int = 4) -> Path:
    """For mu_i and sigma_i of each latent dimension i: per setting, a thin line from the smallest
    to the largest value over the validation images, a thick bar for mean ± std, a dot at the mean
    (each averaged over seeds)."""
    dims = min(_latent_dims(settings), max_dims)
    if dims == 0:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.text(0.5, 0.5, "no latent statistics (no completed run with a checkpoint)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(f"{title}: value ranges of mu and sigma")
        return _save(fig, path)
    fig, axes = plt.subplots(2, dims, figsize=(3.6 * dims, 6.5), squeeze=False)
    positions = np.arange(len(settings))
    for row, name in enumerate(("mu", "sigma")):
        for col in range(dims):
            ax = axes[row][col]
            key = f"{name}{col + 1}"

            def avg(stat: str, setting: SettingResult, key: str = key) -> float:
                values = [t.latent[f"{key}_{stat}"] for t in setting.completed if f"{key}_{stat}" in t.latent]
                return statistics.fmean(values) if values else math.nan

            lows = [avg("min", s) for s in settings]
            highs = [avg("max", s) for s in settings]
            means = [avg("mean", s) for s in settings]
            stds = [avg("std", s) for s in settings]
            ax.vlines(positions, lows, highs, color="C0", linewidth=1.2, label="min-max")
            ax.vlines(positions, np.subtract(means, stds), np.add(means, stds), color="C0", linewidth=6, alpha=0.5, label="mean ± std")
            ax.plot(positions, means, "o", color="C1", markersize=4, label="mean")
            ax.set_xticks(positions, [s.label for s in settings], rotation=45, fontsize=8)
            ax.set_title(f"{name}{col + 1}")
            ax.set_xlabel(_axis_name(settings), fontsize=8)
            ax.set_ylabel(f"{name}{col + 1} over validation images", fontsize=8)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(
        f"{title}: value ranges of mu and sigma per latent dimension\n"
        "(posterior mean and std on the validation set, averaged over seeds)",
        fontsize=10,
    )
    return _save(fig, path)


def plot_grad_norms(settings: list[SettingResult], title: str, path: Path) -> Path:
    """The global gradient norm before and after clipping, per setting: the median over all
    logged steps of all seeds, with a bar from the 10th to the 90th percentile. Says "not
    logged" when no run logged the gradient diagnostics."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positions = np.arange(len(settings))
    any_logged = False
    for offset, (tag, label, color) in zip((-0.12, 0.12), zip(GRAD_TAGS, ("before clipping", "after clipping"), ("C3", "C0"))):
        med, low, high, xs = [], [], [], []
        for x, setting in zip(positions, settings):
            values = [v for t in setting.trials for v in t.grad_norms.get(tag, []) if math.isfinite(v)]
            if not values:
                continue
            q10, q50, q90 = np.percentile(values, [10, 50, 90])
            xs.append(x + offset)
            med.append(q50)
            low.append(q50 - q10)
            high.append(q90 - q50)
        if xs:
            any_logged = True
            ax.errorbar(xs, med, yerr=[low, high], fmt="o", color=color, capsize=3, label=f"{label} (median, 10-90%)")
    ax.set_title(f"{title}: gradient norm before and after clipping")
    ax.set_xticks(positions, [s.label for s in settings], rotation=30 if len(settings) > 8 else 0)
    ax.set_xlabel(_axis_name(settings))
    ax.set_ylabel("global gradient L2 norm per step")
    if any_logged:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, "not logged\n(the runs have no grad/norm_before_clip, grad/norm_after_clip)",
            ha="center", va="center", transform=ax.transAxes,
        )
    return _save(fig, path)


def plot_best_samples(trial: TrialResult | None, title: str, path: Path, num_images: int = 64, seed: int = 0) -> Path:
    """Images decoded from z ~ N(0, I) by the best trial's best checkpoint (the report's Figure 4)."""
    fig, ax = plt.subplots(figsize=(6, 6.4))
    ax.set_axis_off()
    checkpoint = _best_checkpoint(trial)
    if trial is None or checkpoint is None:
        ax.text(0.5, 0.5, "no completed run with a checkpoint", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{title}: samples from the best model")
        return _save(fig, path)
    model = VAEModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    images = model.generate(num_images, generator=torch.Generator().manual_seed(seed))
    grid = image_grid(images, nrow=grid_rows(num_images))  # (3, H, W) in [0, 1]
    ax.imshow(grid.permute(1, 2, 0).numpy())
    setting = ", ".join(f"{short_key(k)}={format_value(v)}" for k, v in trial.setting.items())
    ax.set_title(f"{title}: {num_images} samples z ~ N(0, I) from the best model\n({setting}, seed {trial.seed}, val loss {trial.val_loss:.2f})", fontsize=9)
    return _save(fig, path)


def _best_checkpoint(trial: TrialResult | None) -> Path | None:
    if trial is None or trial.run_dir is None:
        return None
    folder = trial.run_dir / "checkpoints"
    best = sorted(folder.glob("best-*.ckpt"))
    if best:
        return best[-1]
    last = folder / "last.ckpt"
    return last if last.is_file() else None
