"""The results table of a sweep, in Markdown: one row per setting with mean ± std over seeds,
the best setting marked, and the failed runs listed with their reasons."""

from __future__ import annotations

import math

from vae_lightning.experiments.results import SettingResult, best_setting


def _mean_std(setting: SettingResult, name: str, digits: int = 2) -> str:
    values = setting.values(name)
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{setting.mean(name):.{digits}f} ± {setting.std(name):.{digits}f}"


def results_table(settings: list[SettingResult], option: str) -> str:
    """``| option | val loss | RL | KL | epochs | wall time (s) | runs |``, the best row in bold,
    followed by the list of failed runs (when any)."""
    best = best_setting(settings)
    lines = [
        f"| {option} | final val loss | RL | KL | epochs | wall time per run (s) | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting in settings:
        epochs = sorted({t.epochs for t in setting.completed if t.epochs is not None})
        runs = f"{len(setting.completed)}/{len(setting.trials)}"
        if setting.failed:
            runs += f" ({len(setting.failed)} failed)"
        pruned = len([t for t in setting.trials if t.state == "pruned"])
        if pruned:
            runs += f" ({pruned} pruned)"
        label = setting.label
        loss = _mean_std(setting, "val_loss") if setting.completed else "failed"
        if setting is best:
            label, loss = f"**{label}** (best)", f"**{loss}**"
        cells = [
            label,
            loss,
            _mean_std(setting, "val_rl"),
            _mean_std(setting, "val_kl"),
            ", ".join(map(str, epochs)) or "–",
            _mean_std(setting, "wall_time_s", digits=0),
            runs,
        ]
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
    loss, std = best.mean("val_loss"), best.std("val_loss")
    spread = f" ± {std:.2f}" if math.isfinite(std) and len(best.completed) > 1 else ""
    return f"Best {option}: **{best.label}**, final validation loss {loss:.2f}{spread} over {len(best.completed)} seed(s)."
