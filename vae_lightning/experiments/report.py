"""The report of one experiment, (re)made from the stored study and the runs' logs without
training: figures, and a Markdown table with one row per setting (mean ± std over seeds), the
best marked and the failed runs listed with their reasons."""

from __future__ import annotations

from pathlib import Path

import optuna

from vae_lightning.experiments import figures
from vae_lightning.experiments.results import (
    SettingResult,
    best_setting,
    best_trial,
    collect,
)
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
    for s in settings:
        pruned = sum(t.state == "pruned" for t in s.trials)
        runs = f"{len(s.completed)}/{len(s.trials)}" + (f" ({len(s.failed)} failed)" if s.failed else "")
        runs += f" ({pruned} pruned)" if pruned else ""
        loss = _mean_std(s, "val_loss") if s.completed else "failed"
        label, loss = (f"**{s.label}** (best)", f"**{loss}**") if s is best else (s.label, loss)
        epochs = ", ".join(map(str, sorted({t.epochs for t in s.completed if t.epochs is not None}))) or "–"
        cells = [label, loss, _mean_std(s, "val_rl"), _mean_std(s, "val_kl"), epochs, _mean_std(s, "wall_time_s", 0), runs]
        lines.append("| " + " | ".join(cells) + " |")
    if failed := [(s, t) for s in settings for t in s.failed]:
        lines += ["", "Failed runs:", ""]
        for s, t in failed:
            lines.append(f"- {option} = {s.label}, seed {t.seed} (trial {t.number}): {(t.fail_reason or 'unknown').replace(chr(10), ' ')}")
    return "\n".join(lines) + "\n"


def summary_line(settings: list[SettingResult], option: str) -> str:
    """One sentence naming the best setting and its loss."""
    if (best := best_setting(settings)) is None:
        return "No run completed."
    spread = f" ± {best.std('val_loss'):.2f}" if len(best.completed) > 1 else ""
    loss = f"{best.mean('val_loss'):.2f}{spread}"
    return f"Best {option}: **{best.label}**, final validation loss {loss} over {len(best.completed)} seed(s)."


def make_report(experiment: Experiment, study: optuna.Study, out_dir: Path, fast: bool = False) -> Path:
    """Write ``<name>_*.png`` and ``<name>.md`` into ``out_dir``; returns the Markdown file."""
    settings = collect(experiment, study)
    title = (experiment.title or experiment.name) + (" (fast mode)" if fast else "")
    option = next(iter(experiment.vary)) if len(experiment.vary) == 1 else "setting"
    figure = out_dir / experiment.name
    paths = [
        figures.plot_val_curves(settings, title, Path(f"{figure}_val_loss.png")),
        figures.plot_final_loss(settings, title, Path(f"{figure}_final_loss.png")),
        figures.plot_latent_ranges(settings, title, Path(f"{figure}_latent_ranges.png")),
        figures.plot_grad_norms(settings, title, Path(f"{figure}_grad_norms.png")),
        figures.plot_best_samples(best_trial(settings), title, Path(f"{figure}_best_samples.png")),
    ]
    markdown = out_dir / f"{experiment.name}.md"
    images = [f"![{path.stem.removeprefix(experiment.name + '_')}]({path.name})" for path in paths]
    markdown.write_text("\n".join([f"# {title}", "", summary_line(settings, option), "", results_table(settings, option), "", *images]) + "\n")
    return markdown
