"""The four short clipping runs of docs/diagnostics.md: trains them, draws the page's figures from
their TensorBoard events and writes its table as a result file.

    python -m tools.clipping_figures                 # from the repository root; about 10 min on 2 CPU cores
    python -m tools.clipping_figures --skip-training # figures and results again from the stored runs

Each run (into ``runs/docs/clipping/<name>/``) is the default config for 2 epochs of 200 batches,
validated on 10 batches, with the gradients logged every 5 steps and every step checked for
clipping; only the clipping differs::

    python -m vae_lightning fit --config configs/default.yaml --config runs/docs/clipping/count_every_step.yaml \\
        --data.data_dir ../shared/data --trainer.max_epochs 2 --trainer.limit_train_batches 200 \\
        --trainer.limit_val_batches 10 --trainer.log_every_n_steps 5 \\
        --trainer.gradient_clip_val <value> --trainer.gradient_clip_algorithm <value|norm>

``count_every_step.yaml`` is the default config's ``trainer.callbacks`` with
``count_every_step: true`` in GradientDiagnostics, written by this script. Writes
``clipping.png``, ``update_ratio.png``, ``results.json`` (every number docs/diagnostics.md
quotes, per run) and ``table.md`` (the page's table) beside itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import yaml
from matplotlib.figure import Figure

from vae_lightning.models import MLPVAE
from vae_lightning.runs import read_events

from tools.common import ROOT, cli, machine, rounded, run, write_json

HERE = ROOT / "docs/diagnostics"

OUT = Path("runs/docs/clipping")
# name -> (label, gradient_clip_val, gradient_clip_algorithm)
RUNS = {
    "none": ("no clipping", "null", "value"),
    "value_1.0": ("clip value 1.0", "1.0", "value"),
    "value_0.01": ("clip value 0.01", "0.01", "value"),
    "norm_1.0": ("clip norm 1.0", "1.0", "norm"),
}
FIRST_LAYER, OUTPUT_LAYER = "network.encoder.0", "network.decoder.2"
TRAIN_ARGS = [
    "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "200", "--trainer.limit_val_batches", "10",
    "--trainer.log_every_n_steps", "5",
]


def write_overlay() -> Path:
    """configs/default.yaml's callbacks with ``count_every_step: true`` in GradientDiagnostics."""
    callbacks = yaml.safe_load((ROOT / "configs/default.yaml").read_text())["trainer"]["callbacks"]
    for callback in callbacks:
        if callback["class_path"].endswith("GradientDiagnostics"):
            callback["init_args"]["count_every_step"] = True
    path = ROOT / OUT / "count_every_step.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}, sort_keys=False))
    return path


def train(data_dir: str) -> dict[str, dict]:
    """Train the four runs (each into a fresh folder); returns each command with its wall time."""
    overlay = write_overlay().relative_to(ROOT)
    timings = {}
    for name, (_, clip_val, algorithm) in RUNS.items():
        save_dir = OUT / name
        shutil.rmtree(ROOT / save_dir, ignore_errors=True)
        timings[name] = run(
            cli("fit", "--config", "configs/default.yaml", "--config", str(overlay), "--data.data_dir", data_dir, *TRAIN_ARGS,
                "--trainer.gradient_clip_val", clip_val, "--trainer.gradient_clip_algorithm", algorithm,
                "--trainer.default_root_dir", str(save_dir)),
            ROOT / save_dir / "fit.log",
        )
    return timings


def run_scalars(name: str) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar of the run's (single) TensorBoard log: tag -> (steps, values)."""
    (log_dir,) = list((ROOT / OUT / name).glob("lightning_logs/version_*"))
    events = read_events(log_dir)
    series = {tag: sorted((e.step, e.value) for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]}
    return {tag: ([s for s, _ in pairs], [v for _, v in pairs]) for tag, pairs in series.items()}


def figures(data: dict[str, dict]) -> None:
    labels = {name: RUNS[name][0] for name in data}
    colors = {name: f"C{i}" for i, name in enumerate(data)}  # one colour per run in every panel
    panels = [
        ("grad/norm_before_clip", "gradient norm before clipping", "log"),
        ("grad/norm_after_clip", "gradient norm after clipping", "log"),
        ("grad/clipped_element_fraction", "fraction of elements clipped (by value)", "linear"),
        ("train/loss_step", "training loss (RL + KL)", "log"),
    ]
    fig = Figure(figsize=(9, 6.2))
    axes = fig.subplots(2, 2, sharex=True)
    for ax, (tag, title, scale) in zip(axes.flat, panels):
        for name, tags in data.items():
            if tag in tags:
                ax.plot(*tags[tag], label=labels[name], lw=1, color=colors[name])
        ax.set_title(title, fontsize=10)
        ax.set_yscale(scale)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "clipping.png", dpi=80)

    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, layer in zip(axes, (FIRST_LAYER, OUTPUT_LAYER)):
        for name, tags in data.items():
            ax.plot(*tags[f"grad/update_ratio/{layer}"], label=labels[name], lw=1, color=colors[name])
        ax.set_title(f"update / weight, {layer}", fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "update_ratio.png", dpi=80)


def value_at(tags: dict, tag: str, step: int) -> float:
    """The logged value of ``tag`` at the first logged step >= ``step``."""
    steps, values = tags[tag]
    return next(v for s, v in zip(steps, values) if s >= step)


def summary(name: str, tags: dict) -> dict:
    """The numbers docs/diagnostics.md quotes for one run."""
    last = {tag: values[-1] for tag, (_, values) in tags.items()}
    before, after = tags["grad/norm_before_clip"][1], tags["grad/norm_after_clip"][1]
    steps_clipped = tags["grad/clipped_step_fraction"][1]
    latent_dim = sum(1 for tag in last if tag.startswith("latent/kl_dim"))
    loss_steps, losses = tags["train/loss_step"]
    result = {
        "label": RUNS[name][0],
        "gradient_clip_val": RUNS[name][1],
        "gradient_clip_algorithm": RUNS[name][2],
        "median_norm_before_clip": rounded(statistics.median(before), 1),
        "median_norm_after_clip": rounded(statistics.median(after), 1),
        "norm_before_clip_range": [rounded(min(before), 1), rounded(max(before), 1)],
        "norm_before_clip_range_after_step_50": [rounded(min(v for s, v in zip(tags["grad/norm_before_clip"][0], before) if s >= 50), 1),
                                                 rounded(max(v for s, v in zip(tags["grad/norm_before_clip"][0], before) if s >= 50), 1)],
        "clipped_step_fraction": rounded(sum(steps_clipped) / len(steps_clipped), 3),
        "val_loss": rounded(last["val/loss"]),
        "val_rl": rounded(last["val/rl"]),
        "val_kl": rounded(last["val/kl"]),
        "active_units": int(last["latent/active_units"]),
        "kl_dim": [rounded(last[f"latent/kl_dim{i}"]) for i in range(1, latent_dim + 1)],
        "mu_std": [rounded(last[f"latent/mu{i}_std"]) for i in range(1, latent_dim + 1)],
        "sigma_mean": [rounded(last[f"latent/sigma{i}_mean"]) for i in range(1, latent_dim + 1)],
        "train_loss_at_step": {
            **{str(s): rounded(value_at(tags, "train/loss_step", s), 1) for s in (20, 60, 100, 200)},
            str(loss_steps[-1]): rounded(losses[-1], 1),
        },
        "first_step_train_loss_below_60": next((s for s, v in zip(loss_steps, losses) if v < 60), None),
        "update_ratio_first_layer": {
            "first_logged": float(f"{tags[f'grad/update_ratio/{FIRST_LAYER}'][1][0]:.2g}"),
            "last_logged": float(f"{tags[f'grad/update_ratio/{FIRST_LAYER}'][1][-1]:.2g}"),
        },
    }
    if "grad/clipped_element_fraction" in tags:
        element_steps, elements = tags["grad/clipped_element_fraction"]
        result["clipped_element_fraction_mean"] = float(f"{sum(elements) / len(elements):.2g}")
        result["clipped_element_fraction_max"] = float(f"{max(elements):.2g}")
        later = [v for s, v in zip(element_steps, elements) if s >= 50]
        result["clipped_element_fraction_range_after_step_50"] = [float(f"{min(later):.2g}"), float(f"{max(later):.2g}")]
    return result


def percent(fraction: float) -> str:
    """0.23 -> "23%", 0.086 -> "8.6%", 2.1e-6 -> "0.00021%": two significant digits below 10%."""
    value = 100 * fraction
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.2g}%"


def table(rows: dict[str, dict]) -> str:
    """The Markdown table of docs/diagnostics.md."""
    lines = [
        "| clipping | median ‖g‖ before | median ‖g‖ after | steps clipped | elements clipped (mean, max) | val/loss | val RL | val KL | active units |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        if "clipped_element_fraction_mean" in row:
            elements = f"{percent(row['clipped_element_fraction_mean'])}, {percent(row['clipped_element_fraction_max'])}"
        else:
            elements = "-"
        lines.append(
            f"| {row['label']} | {row['median_norm_before_clip']:.1f} | {row['median_norm_after_clip']:.1f} | "
            f"{percent(row['clipped_step_fraction'])} | {elements} | {row['val_loss']:.2f} | {row['val_rl']:.2f} | "
            f"{row['val_kl']:.2f} | {row['active_units']} |"
        )
    return "\n".join(lines) + "\n"


def main(data_dir: str, skip_training: bool) -> None:
    timings = None if skip_training else train(data_dir)
    data = {name: run_scalars(name) for name in RUNS}
    figures(data)
    rows = {name: summary(name, tags) for name, tags in data.items()}
    results_path = HERE / "results.json"
    if timings is None and results_path.exists():  # keep the commands and timings of the stored runs
        stored = json.loads(results_path.read_text())
        timings, machine_info = stored.get("runs_commands"), stored.get("machine")
    else:
        machine_info = machine()
    write_json(results_path, {
        "description": "four runs of configs/default.yaml, 2 epochs of 200 batches, validated on 10 batches, "
        "gradients logged every 5 steps with every step checked for clipping; only the clipping differs",
        "script": "python -m tools.clipping_figures",
        "machine": machine_info,
        "runs_commands": timings,
        "parameters": sum(p.numel() for p in MLPVAE().parameters()),  # the default network's weights and biases
        "runs": rows,
    })
    (HERE / "table.md").write_text(
        "<!-- written by python -m tools.clipping_figures; numbers from results.json -->\n\n" + table(rows)
    )
    print(table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data", help="folder holding MNIST/raw")
    parser.add_argument("--skip-training", action="store_true", help="only figures and results, from the stored runs")
    args = parser.parse_args()
    main(args.data_dir, args.skip_training)
