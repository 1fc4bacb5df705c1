"""The report of one experiment, (re)made from the stored study and the runs' logs without
training: figures, and a Markdown table with one row per setting (mean ± std over seeds), the
best marked and the failed runs listed with their reasons."""

from __future__ import annotations

import math
from pathlib import Path

import optuna

from vae_lightning.experiments import figures
from vae_lightning.experiments.results import SettingResult, best_setting, best_trial, collect
from vae_lightning.experiments.spec import Experiment


def _mean_std(setting: SettingResult, name: str, digits: int = 2) -> str:
    values = setting.values(name)
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "–"
    return f"{setting.mean(name):.{digits}f} ± {setting.std(name):.{digits}f}"


def results_table(settings: list[SettingResult], option: str) -> str:
    """``| option | final val loss | RL | KL | epochs | wall time per run (s) | runs |``."""
    best = best_setting(settings)
    lines = [f"| {option} | final val loss | RL | KL | epochs | wall time per run (s) | runs |", "|---|---|---|---|---|---|---|"]
    for setting in settings:
        runs = f"{len(setting.completed)}/{len(setting.trials)}"
        runs += f" ({len(setting.failed)} failed)" if setting.failed else ""
        pruned = sum(t.state == "pruned" for t in setting.trials)
        runs += f" ({pruned} pruned)" if pruned else ""
        label, loss = setting.label, _mean_std(setting, "val_loss") if setting.completed else "failed"
        if setting is best:
            label, loss = f"**{label}** (best)", f"**{loss}**"
        epochs = ", ".join(map(str, sorted({t.epochs for t in setting.completed if t.epochs is not None}))) or "–"
        cells = [label, loss, _mean_std(setting, "val_rl"), _mean_std(setting, "val_kl"), epochs, _mean_std(setting, "wall_time_s", 0), runs]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [(s, t) for s in settings for t in s.failed]
    if failed:
        lines += ["", "Failed runs:", ""]
        for setting, trial in failed:
            reason = (trial.fail_reason or "unknown").replace("\n", " ")
            lines.append(f"- {option} = {setting.label}, seed {trial.seed} (trial {trial.number}): {reason}")
    return "\n".join(lines) + "\n"


def summary_line(settings: list[SettingResult], option: str) -> str:
    """One sentence naming the best setting and its loss."""
    best = best_setting(settings)
    if best is None:
        return "No run completed."
    std = best.std("val_loss")
    spread = f" ± {std:.2f}" if math.isfinite(std) and len(best.completed) > 1 else ""
    return f"Best {option}: **{best.label}**, final validation loss {best.mean('val_loss'):.2f}{spread} over {len(best.completed)} seed(s)."


def make_report(experiment: Experiment, study: optuna.Study, out_dir: Path, fast: bool = False) -> Path:
    """Write ``<name>_*.png`` and ``<name>.md`` into ``out_dir``; returns the Markdown file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = collect(experiment, study)
    title = (experiment.title or experiment.name) + (" (fast mode)" if fast else "")
    option = next(iter(experiment.vary)) if len(experiment.vary) == 1 else "setting"
    paths = [
        figures.plot_val_curves(settings, title, out_dir / f"{experiment.name}_val_loss.png"),
        figures.plot_final_loss(settings, title, out_dir / f"{experiment.name}_final_loss.png"),
        figures.plot_latent_ranges(settings, title, out_dir / f"{experiment.name}_latent_ranges.png"),
        figures.plot_grad_norms(settings, title, out_dir / f"{experiment.name}_grad_norms.png"),
        figures.plot_best_samples(best_trial(settings), title, out_dir / f"{experiment.name}_best_samples.png"),
    ]
    images = [f"![{path.stem.removeprefix(experiment.name + '_')}]({path.name})" for path in paths]
    markdown = out_dir / f"{experiment.name}.md"
    markdown.write_text("\n".join([f"# {title}", "", summary_line(settings, option), "", results_table(settings, option), "", *images, ""]))
    return markdown
