"""Draws docs/diagnostics/*.png from the TensorBoard events of short runs with different clipping.

The runs (2 epochs of 200 batches each, the default config otherwise, every step checked for
clipping, a log every 5 steps)::

    for setting in "0.01 value" "1.0 value" "1.0 norm" "0 value"; do set -- $setting
      python -m vae_lightning fit --config configs/default.yaml --data.data_dir ../shared/data \\
        --trainer.max_epochs 2 --trainer.limit_train_batches 200 --trainer.limit_val_batches 10 \\
        --trainer.log_every_n_steps 5 --trainer.gradient_clip_val $1 --trainer.gradient_clip_algorithm $2 \\
        --trainer.logger.init_args.save_dir runs/clipping/$2_$1
    done
    python docs/diagnostics/make_figures.py runs/clipping/value_0 runs/clipping/value_1.0 runs/clipping/value_0.01 runs/clipping/norm_1.0

(with ``count_every_step: true`` in the config's GradientDiagnostics). Prints the numbers of
the table in docs/diagnostics.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

OUT = Path(__file__).resolve().parent
LABELS = {
    "value_0.01": "clip value 0.01",
    "value_1.0": "clip value 1.0",
    "norm_1.0": "clip norm 1.0",
    "value_0": "no clipping",
    "none": "no clipping",
}


def scalars(run: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar of the run's (single) TensorBoard log: tag -> (steps, values)."""
    (log_dir,) = list(run.glob("lightning_logs/version_*"))
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: ([e.step for e in events.Scalars(tag)], [e.value for e in events.Scalars(tag)]) for tag in events.Tags()["scalars"]}


def main(runs: list[Path]) -> None:
    data = {LABELS.get(run.name, run.name): scalars(run) for run in runs}
    colors = {label: f"C{i}" for i, label in enumerate(data)}  # one colour per run in every panel
    panels = [
        ("grad/norm_before_clip", "gradient norm before clipping", "log"),
        ("grad/norm_after_clip", "gradient norm after clipping", "log"),
        ("grad/clipped_element_fraction", "fraction of elements clipped (by value)", "linear"),
        ("train/loss_step", "training loss (RL + KL)", "log"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex=True)
    for ax, (tag, title, scale) in zip(axes.flat, panels):
        for label, runs_scalars in data.items():
            if tag in runs_scalars:
                steps, values = runs_scalars[tag]
                ax.plot(steps, values, label=label, lw=1, color=colors[label])
        ax.set_title(title, fontsize=10)
        ax.set_yscale(scale)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "clipping.png", dpi=80)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, layer in zip(axes, ("model.encoder.hidden.0", "model.decoder.layers.2")):
        for label, runs_scalars in data.items():
            steps, values = runs_scalars[f"grad/update_ratio/{layer}"]
            ax.plot(steps, values, label=label, lw=1, color=colors[label])
        ax.set_title(f"update / weight, {layer}", fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "update_ratio.png", dpi=80)

    for label, runs_scalars in data.items():
        summary = {tag: runs_scalars[tag][1][-1] for tag in ("val/loss", "val/rl", "val/kl", "latent/active_units") if tag in runs_scalars}
        fraction = runs_scalars.get("grad/clipped_step_fraction", ([], [float("nan")]))[1]
        norm = runs_scalars["grad/norm_before_clip"][1]
        print(
            f"{label}: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items())
            + f", clipped steps {sum(fraction) / len(fraction):.2f}, median pre-clip norm {sorted(norm)[len(norm) // 2]:.1f}"
        )


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
